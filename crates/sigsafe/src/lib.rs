//! Helpers for code that runs where almost nothing is allowed: libckpt's checkpoint signal
//! handler and myrestart before (and after) its point of no return.
//!
//! Everything here is async-signal-safe by construction: `no_std`, no allocator, no locks, no
//! libc. It uses only raw system calls (through `rustix` where it offers them, [`sys`] where it
//! does not) and buffers that the caller owns.
#![no_std]

pub mod cpu;
pub mod errno;
pub mod extents;
pub mod fileid;

/// The key of an image key file (`CKPT_KEY`, `myrestart --key`): derived from the file's
/// contents, read through `buf` (wiped after); `None` if it cannot be read or is empty.
pub fn read_key(path: &core::ffi::CStr, buf: &mut [u8]) -> Option<ckpt_image::mac::Key> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    let key = (len > 0).then(|| ckpt_image::mac::key_from(&buf[..len]));
    buf[..len].fill(0);
    key
}
pub mod maps;
pub mod out;
pub mod pagescan;
pub mod proctext;
pub mod signals;
pub mod sockets;
pub mod sys;

/// Page size on x86-64.
pub const PAGE: usize = 4096;

pub const fn page_down(v: usize) -> usize {
    v & !(PAGE - 1)
}

pub const fn page_up(v: usize) -> usize {
    (v + PAGE - 1) & !(PAGE - 1)
}
