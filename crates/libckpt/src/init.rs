//! The constructor: runs before the program's `main()`, in ordinary context.
//!
//! It decides where images go (`$CKPT_IMAGE`, or `myckpt` in the directory the program started
//! in), learns glibc's rseq layout, and installs the SIGUSR2 handler.

use crate::{checkpoint, config};
use ckpt_sigsafe::say;
use core::ffi::{c_int, c_void, CStr};

/// The environment variable that overrides the image path.
pub const IMAGE_ENV: &CStr = c"CKPT_IMAGE";
/// Set to 1 to write images synchronously, inside the signal handler.
pub const SYNC_ENV: &CStr = c"CKPT_SYNC";
/// Set to `lz4` to compress memory in images.
pub const COMPRESS_ENV: &CStr = c"CKPT_COMPRESS";

/// The value of an environment variable, if set (constructor only).
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv in a constructor, before any thread can call setenv.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null getenv result is a NUL-terminated string in the environment.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes())
}
/// The image's name when no path is given.
pub const DEFAULT_IMAGE: &[u8] = b"myckpt";
/// The checkpoint signal.
pub const CHECKPOINT_SIGNAL: c_int = libc::SIGUSR2;

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = ckpt_init;

extern "C" fn ckpt_init() {
    // SAFETY: we are the constructor: single-threaded, before the handler exists.
    let cfg = unsafe { config::get_mut() };
    if !set_image_path(cfg) {
        say!("ckpt: image path is too long; checkpoints are disabled");
        return;
    }
    find_rseq(cfg);
    cfg.sync = env(SYNC_ENV) == Some(b"1");
    cfg.compress = match env(COMPRESS_ENV) {
        None | Some(b"" | b"none" | b"0") => false,
        Some(b"lz4") => true,
        Some(_) => {
            say!("ckpt: CKPT_COMPRESS takes lz4 or none; images will not be compressed");
            false
        }
    };
    install_handler();
}

/// Fixes the absolute image path now, so that a later `chdir` in the program does not move it.
fn set_image_path(cfg: &mut config::Config) -> bool {
    let given: &[u8] = env(IMAGE_ENV).unwrap_or(DEFAULT_IMAGE);
    let given = if given.is_empty() { DEFAULT_IMAGE } else { given };
    let buf = &mut cfg.image;
    let mut len = 0;
    if given[0] != b'/' {
        // SAFETY: getcwd writes at most buf.len() bytes, NUL included.
        let cwd = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
        if cwd.is_null() {
            return false;
        }
        len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if len > 1 {
            buf[len] = b'/';
            len += 1;
        }
    }
    if len + given.len() >= buf.len() - 32 {
        return false;
    }
    buf[len..len + given.len()].copy_from_slice(given);
    len += given.len();
    buf[len] = 0;
    cfg.image_len = len;
    true
}

/// glibc (2.35+) registers an rseq area for each thread at `thread pointer + __rseq_offset`.
fn find_rseq(cfg: &mut config::Config) {
    // SAFETY: dlsym with RTLD_DEFAULT only looks symbols up; the names are NUL-terminated.
    let (off, size) = unsafe {
        (libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()), libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()))
    };
    if off.is_null() || size.is_null() {
        return;
    }
    // SAFETY: glibc defines these as `const ptrdiff_t __rseq_offset` and `const unsigned int __rseq_size`.
    unsafe {
        cfg.rseq_offset = *(off as *const isize);
        cfg.rseq_size = *(size as *const u32);
    }
}

fn install_handler() {
    // SAFETY: a zeroed sigaction is a valid starting point; we set every field we rely on.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = on_signal as *const () as usize;
    // SA_RESTART: system calls the checkpoint interrupts resume as if nothing happened.
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // Block every other signal while the checkpoint is written, so that no handler of the
    // program runs in the middle of it.
    // SAFETY: sa_mask is a valid sigset_t owned by `sa`.
    unsafe { libc::sigfillset(&mut sa.sa_mask) };
    // SAFETY: `on_signal` is an `extern "C"` SA_SIGINFO handler with the matching signature.
    if unsafe { libc::sigaction(CHECKPOINT_SIGNAL, &sa, core::ptr::null_mut()) } != 0 {
        say!("ckpt: cannot install the checkpoint signal handler; checkpoints are disabled");
    }
}

extern "C" fn on_signal(_sig: c_int, _info: *mut libc::siginfo_t, uc: *mut c_void) {
    checkpoint::on_checkpoint_signal(uc as usize);
}
