//! `ckpt run` and `ckpt restart`: both end by `exec`ing, so the program (or the restored
//! process) keeps ckpt's PID and its exit status becomes ckpt's. (`ckpt job` starts the same
//! commands as its children instead.)

use crate::{locate, Outcome, EXIT_REFUSED};
use clap::Args;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Args)]
pub struct RunArgs {
    /// Where images go (default: myckpt in the current directory).
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Take a checkpoint every SECS seconds (fractions allowed: 0.5).
    #[arg(long, value_name = "SECS", value_parser = crate::checkpoint::seconds)]
    interval: Option<f64>,
    /// Older images to keep as IMAGE.1, IMAGE.2, … (default 2 with --interval, else 0).
    #[arg(long, value_name = "N")]
    keep: Option<u32>,
    /// The checkpoint signal (default USR2), by name or number.
    #[arg(long, value_name = "SIG")]
    pub signal: Option<String>,
    /// Write images with the program stopped, instead of in a forked writer.
    #[arg(long)]
    sync: bool,
    /// Compress memory in images (LZ4).
    #[arg(long)]
    compress: bool,
    /// Images carry the bytes of the program and its libraries too (CKPT_SELF_CONTAINED=1),
    /// instead of naming the files: they restart where those files differ (another node with
    /// other versions installed), at the cost of larger images.
    #[arg(long)]
    self_contained: bool,
    /// Authenticate images with the key in this file, which must be private (mode 0600;
    /// `ckpt key new FILE` makes one); restart them with the same `--key`. Without --key,
    /// CKPT_KEY in the environment names it, if set.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROG ARGS")]
    pub command: Vec<OsString>,
}

impl RunArgs {
    /// The checkpoint signal `--signal` names (SIGUSR2 without it), checked as libckpt would.
    pub fn checkpoint_signal(&self) -> Result<i32, (u8, String)> {
        match &self.signal {
            None => Ok(libc::SIGUSR2),
            Some(sig) => crate::checkpoint::signal_number(sig).ok_or((
                EXIT_REFUSED,
                format!("--signal {sig}: not a signal libckpt can use (a name such as USR1, HUP, RTMIN+3, or a number; not KILL, STOP, or one the kernel raises for faults)"),
            )),
        }
    }
}

/// `PROG` as the shell would find it.
pub fn resolve(prog: &Path) -> Option<PathBuf> {
    if prog.components().count() > 1 {
        return prog.exists().then(|| prog.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(prog)).find(|p| p.is_file()))
}

/// Whether `path` is an ELF executable without an interpreter (statically linked), which no
/// preloaded library can enter. Scripts and dynamic executables are fine.
fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    let data = std::fs::read(path)?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phnum) = (u64_at(32), u16_at(56));
    Ok(!(0..phnum).any(|i| {
        let at = phoff + i * 56;
        data.get(at..at + 4).is_some_and(|t| t == 3u32.to_le_bytes()) // PT_INTERP
    }))
}

pub fn run(a: RunArgs) -> Outcome {
    let (mut cmd, path) = run_command(a)?;
    let err = cmd.exec();
    Err((EXIT_REFUSED, format!("{}: {err}", crate::shown(&path))))
}

/// The image path `ckpt run` gives the program: `--image`, else myckpt, from the current
/// directory.
pub fn image_path(image: Option<&Path>) -> Result<PathBuf, (u8, String)> {
    let cwd = std::env::current_dir().map_err(|e| (EXIT_REFUSED, format!("current directory: {e}")))?;
    Ok(cwd.join(image.unwrap_or(Path::new("myckpt"))))
}

/// The command `ckpt run` executes (the program, with libckpt preloaded and its settings in
/// the environment), and the program's path.
pub fn run_command(a: RunArgs) -> Result<(Command, PathBuf), (u8, String)> {
    let prog = PathBuf::from(&a.command[0]);
    let path = resolve(&prog).ok_or((EXIT_REFUSED, format!("{}: command not found", crate::shown(&prog))))?;
    match is_static_elf(&path) {
        Ok(true) => {
            return Err((
                EXIT_REFUSED,
                format!("{} is statically linked: libckpt.so cannot be preloaded into it, and the checkpoint signal would kill it", crate::shown(&path)),
            ))
        }
        Ok(false) => {}
        Err(e) => return Err((EXIT_REFUSED, format!("{}: {e}", crate::shown(&path)))),
    }
    let lib = locate::libckpt()?;
    let image = image_path(a.image.as_deref())?;
    crate::imagefile::check_image_dir(&image)?;
    let origin = crate::origin::Started::new(&a.command, &path).and_then(|s| s.env_value()).map_err(|e| (EXIT_REFUSED, e))?;
    let mut preload = OsString::from(lib.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let mut cmd = Command::new(&path);
    // PROG is the process whose image this is, even when ckpt itself runs below one that
    // checkpoints (which marks what it runs as its descendants).
    cmd.arg0(&a.command[0]).args(&a.command[1..]).env("LD_PRELOAD", preload).env("CKPT_IMAGE", &image).env("CKPT_ORIGIN", origin).env_remove("CKPT_PARENT");
    if let Some(secs) = a.interval {
        // libckpt keeps it in milliseconds, in 32 bits.
        if secs * 1000.0 >= u32::MAX as f64 {
            return Err((EXIT_REFUSED, format!("--interval {secs}: at most {} seconds (49 days)", u32::MAX / 1000)));
        }
        cmd.env("CKPT_INTERVAL", secs.to_string());
        cmd.env("CKPT_KEEP", a.keep.unwrap_or(2).to_string());
    } else if let Some(keep) = a.keep {
        cmd.env("CKPT_KEEP", keep.to_string());
    }
    a.checkpoint_signal()?;
    if let Some(sig) = a.signal {
        cmd.env("CKPT_SIGNAL", sig);
    }
    if a.sync {
        cmd.env("CKPT_SYNC", "1");
    }
    // The key (--key, or CKPT_KEY inherited) is checked now, as libckpt would when the program
    // starts: a key file others may read is refused.
    if let Some(key) = crate::key::configured(a.key.as_deref()) {
        let key = std::path::absolute(&key).map_err(|e| (EXIT_REFUSED, format!("{}: {e}", crate::shown(&key))))?;
        crate::key::read(&key)?;
        cmd.env("CKPT_KEY", key);
    }
    if a.compress {
        cmd.env("CKPT_COMPRESS", "lz4");
    }
    if a.self_contained {
        cmd.env("CKPT_SELF_CONTAINED", "1");
    }
    Ok((cmd, path))
}

/// `ckpt restart`'s options, each passed on to myrestart.
#[derive(Default)]
pub struct RestartFlags {
    pub stopped: bool,
    pub eager: bool,
    pub no_verify: bool,
    pub new_ids: bool,
    pub inherit_stdio: bool,
    pub foreground: bool,
    pub trust_image: bool,
    pub allow_running: bool,
    pub keep_logs: bool,
    pub files_as_is: bool,
    pub key: Option<PathBuf>,
    /// A line of ckpt's own for stderr (`ckpt: restarting …`), which myrestart prints once the
    /// program's logs are in order: printed before, it could be cut from them with what the
    /// program printed after its checkpoint.
    pub say: Option<String>,
    /// A descriptor (open, inherited) myrestart tells what became of the restart
    /// (`--status-fd`: see `job`).
    pub status_fd: Option<i32>,
}

pub fn restart(image: &Path, f: &RestartFlags) -> Outcome {
    let (mut cmd, myrestart) = restart_command(image, f)?;
    let err = cmd.exec();
    Err((EXIT_REFUSED, format!("{}: {err}", crate::shown(&myrestart))))
}

/// The myrestart command that `ckpt restart` executes, and myrestart's path.
pub fn restart_command(image: &Path, f: &RestartFlags) -> Result<(Command, PathBuf), (u8, String)> {
    let myrestart = locate::myrestart()?;
    let mut cmd = Command::new(&myrestart);
    // Started as `ckpt restart`, myrestart speaks as ckpt (its messages begin `ckpt:`), says
    // which process the program is, and `ps` shows it (and the init below it) as that.
    cmd.arg0("ckpt").arg("restart");
    for (on, flag) in [
        (f.stopped, "--stopped"),
        (f.eager, "--eager"),
        (f.no_verify, "--no-verify"),
        (f.new_ids, "--new-ids"),
        (f.inherit_stdio, "--inherit-stdio"),
        (f.foreground, "--foreground"),
        (f.trust_image, "--trust-image"),
        (f.allow_running, "--allow-running"),
        (f.keep_logs, "--keep-logs"),
        (f.files_as_is, "--files-as-is"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    if let Some(key) = &f.key {
        cmd.arg("--key").arg(key);
    }
    cmd.arg(image);
    // Last, where myrestart blanks it out once read (`ps` need not show it).
    if let Some(line) = &f.say {
        cmd.arg("--say").arg(line);
    }
    if let Some(fd) = f.status_fd {
        cmd.arg("--status-fd").arg(fd.to_string());
    }
    Ok((cmd, myrestart))
}
