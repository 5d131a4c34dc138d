//! What every subcommand shares: what it returns ([`Outcome`]: an exit status, or one with a
//! one-line message), the exit statuses, how messages show errors and paths, and the directory
//! a file is in. The crate root re-exports them (`crate::Outcome`).

use std::process::ExitCode;

/// Exit status when the command cannot do what was asked (bad input, a refusal).
pub const EXIT_REFUSED: u8 = 2;
/// Exit status when the operation was tried and failed (checkpoint not written in time, …).
pub const EXIT_FAILED: u8 = 1;

/// An I/O error's description, without Rust's "(os error N)".
pub fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A path as messages show it: control characters escaped (`\x1b`), so that a name cannot
/// move the cursor or recolour the terminal, and bytes that are not UTF-8 shown as `\xNN`.
pub fn shown(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    shown_bytes(path.as_os_str().as_bytes())
}

/// Bytes from an image or a command line (a program's path, an argument) as messages show
/// them, escaped as [`shown`] escapes a path.
pub fn shown_bytes(bytes: &[u8]) -> String {
    ckpt_sigsafe::out::Lossy(bytes).to_string()
}

/// The directory a file is in (`.` for a bare name): where an image's bases and older images
/// are, and where a file beside it goes.
pub fn dir_of(path: &std::path::Path) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    let dir = ckpt_image::chain::image_dir(path.as_os_str().as_bytes());
    std::path::Path::new(dir.map_or(std::ffi::OsStr::new("."), std::ffi::OsStr::from_bytes))
}

/// What a subcommand returns: its exit status, or one that goes with a one-line message.
pub type Outcome = Result<ExitCode, (u8, String)>;
