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

/// A descriptor of ours in the parking area (at or above the plan's `fd_base`), which the plan
/// owns: made only by [`park`], which takes an [`OwnedFd`], and open until the restore closes
/// the parking area (`files::install`, `ids::drop_parked`), after the plan's last use of it.
/// The plan lives in a static and moves with the program, so it holds the number, not an
/// `OwnedFd`: copies are borrows of the one descriptor the plan owns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Parked(i32);

impl Parked {
    /// The placeholder of a table slot or plan field not filled yet; never used as a descriptor.
    pub const NONE: Parked = Parked(-1);

    /// The descriptor, borrowed.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        assert!(self.0 >= 0, "myrestart: a parked descriptor used before it was made");
        // SAFETY: `park` made this number (NONE, the only other value, was refused above): a
        // descriptor the plan owns, open until the restore closes the parking area, after the
        // plan's last use of it.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }

    /// Another parked descriptor on the same open file description, at or above `base`: the
    /// plan owns it too.
    pub fn dup(&self, base: i32) -> Result<Parked, Errno> {
        Ok(Parked(rustix::io::fcntl_dupfd_cloexec(self.as_fd(), base)?.into_raw_fd()))
    }

    /// Its number, where the kernel wants one (a `dup3` onto the program's number, a path under
    /// `/proc/self/fd`, `prctl`), or to close it.
    pub fn raw(self) -> i32 {
        self.0
    }
}

/// Moves `fd` to the lowest free number at or above `base`, close-on-exec: the plan owns it now.
pub fn park(fd: OwnedFd, base: i32) -> Result<Parked, Errno> {
    let moved = rustix::io::fcntl_dupfd_cloexec(&fd, base)?;
    Ok(Parked(moved.into_raw_fd()))
}

/// A copy of the caller's descriptor `n` (`--status-fd`, not negative), parked: out of the way of
/// the program's numbers. The caller's own stays as it is.
pub fn park_status_fd(n: i32, base: i32) -> Result<Parked, Errno> {
    // SAFETY: borrowed only to duplicate it; `--status-fd` names a descriptor the caller passed
    // open (a closed one fails the duplication), which nothing here owns.
    let theirs = unsafe { BorrowedFd::borrow_raw(n) };
    Ok(Parked(rustix::io::fcntl_dupfd_cloexec(theirs, base)?.into_raw_fd()))
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
