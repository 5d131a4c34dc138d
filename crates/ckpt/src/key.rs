//! Image keys: which key file a command uses, reading one (it must be private), and
//! `ckpt key new`.
//!
//! A key is configured by `--key FILE` or, without it, by `CKPT_KEY` in the environment: the
//! variable that makes libckpt authenticate images is also the key restarts and inspections
//! check them with, so that where it is set an image without a valid MAC (one someone stripped
//! of it, say) is refused.

use crate::{Outcome, EXIT_REFUSED};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The key file a command uses: `given` (`--key`), else `CKPT_KEY` from the environment.
pub fn configured(given: Option<&Path>) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| std::env::var_os("CKPT_KEY").filter(|k| !k.is_empty()).map(PathBuf::from))
}

/// The key in the file at `path`, which must be this user's and private (see
/// `ckpt_sigsafe::read_key`).
pub fn read(path: &Path) -> Result<ckpt_image::mac::Key, (u8, String)> {
    let refused = |why: String| (EXIT_REFUSED, format!("the key file {} {why}", crate::shown(path)));
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| refused("has a NUL byte in its name".into()))?;
    let mut buf = vec![0u8; ckpt_sigsafe::KEY_FILE_MAX + 1];
    ckpt_sigsafe::read_key(&c, &mut buf).map_err(|e| refused(e.to_string()))
}

/// `ckpt key new FILE`: a new key file of 256 random bits (as 64 hex digits), mode 0600,
/// never over an existing file.
pub fn new(file: &Path) -> Outcome {
    let mut secret = [0u8; 32];
    if !crate::os::random(&mut secret) {
        return Err((crate::EXIT_FAILED, format!("no random bytes from the kernel: {}", crate::io_message(&std::io::Error::last_os_error()))));
    }
    let text: String = secret.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n";
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AlreadyExists { "a file is there already (a key is never overwritten)".to_string() } else { crate::io_message(&e) };
        (EXIT_REFUSED, format!("{}: {why}", crate::shown(file)))
    })?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| (crate::EXIT_FAILED, format!("{}: {}", crate::shown(file), crate::io_message(&e))))?;
    eprintln!("ckpt: new key file {} (mode 0600): `ckpt run --key` and `ckpt restart --key` take it, or set CKPT_KEY to it", crate::shown(file));
    Ok(ExitCode::SUCCESS)
}
