//! The few calls into the C library the command makes that `std` does not offer: each one small,
//! with no pointer that outlives it. Descriptor and process work of `ckpt job` lives in `job`.

/// Fills `buf` from the kernel's random source (`getrandom(2)`); whether it filled all of it.
pub fn random(buf: &mut [u8]) -> bool {
    // SAFETY: getrandom(2) writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    n == buf.len() as isize
}

/// The effective user ID.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Whether this process may create and enter files in directory `dir` (`access(W_OK | X_OK)`).
pub fn may_write_in(dir: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: access(2) with a NUL-terminated path that outlives the call.
    if unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives `SIGPIPE` its default action back (Rust's runtime ignores it), so that the command
/// ends quietly when the reader of its output goes away.
pub fn default_sigpipe() {
    // SAFETY: restoring a default disposition; called before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
