//! Descriptors and paths: the small helpers that the modules which open things again (files,
//! sockets, the namespaces) share.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use ckpt_image::fds::FdRecord;
use ckpt_image::sockets::SocketRecord;
use core::ffi::CStr;
use linux_raw_sys::general as k;
use linux_raw_sys::net as n;
use rustix::fd::{BorrowedFd, IntoRawFd, OwnedFd};
use rustix::fs::OFlags;
use rustix::io::Errno;

/// A path from the image as a C string, in `buf`.
pub(crate) fn cpath<'b>(path: &[u8], buf: &'b mut [u8; 4096]) -> Option<&'b CStr> {
    if path.len() >= buf.len() || path.contains(&0) {
        return None;
    }
    buf[..path.len()].copy_from_slice(path);
    buf[path.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..path.len() + 1]).ok()
}

/// Moves `fd` to the lowest free number at or above `base`, close-on-exec.
pub fn park(fd: OwnedFd, base: i32) -> Result<i32, Errno> {
    let moved = rustix::io::fcntl_dupfd_cloexec(&fd, base)?;
    Ok(moved.into_raw_fd())
}

/// Gives `fd` the non-blocking flag the saved descriptor had (and no other status flag).
pub(crate) fn set_nonblocking(fd: BorrowedFd, rec: &FdRecord) -> Result<(), Errno> {
    let flags = if rec.open_flags & k::O_NONBLOCK != 0 { OFlags::NONBLOCK } else { OFlags::empty() };
    rustix::fs::fcntl_setfl(fd, flags)
}

/// Whether the socket is a unix one.
pub fn unix(rec: &SocketRecord) -> bool {
    rec.family as u32 == n::AF_UNIX
}

/// The path a unix socket was bound to (none for an abstract or unnamed one).
pub fn unix_path(rec: &SocketRecord) -> Option<&[u8]> {
    let path = rec.addr().get(2..).filter(|_| unix(rec))?;
    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
    (end > 0).then(|| &path[..end])
}
