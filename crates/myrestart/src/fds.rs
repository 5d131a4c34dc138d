//! Descriptors and paths: the descriptors the plan holds ([`Parked`]), and the small helpers
//! that the modules which open things again (files, sockets, the namespaces) share.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart (and [`Parked`] and [`own_std`] after it):
//! no allocation, raw system calls only.

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
/// owns: made only by [`park`], which takes an [`OwnedFd`] (or by [`Parked::dup`] and
/// [`park_status_fd`]), and open until the parking area is closed as a whole after the plan's
/// last use of it (`restore.rs` once the program's descriptors are in place, `ids::drop_parked`
/// in a supervisor). The few closed before (a barrier's pipe ends once passed, a pipe end no
/// process had, another process's working directory) are closed by their one user, after its last use. The plan lives in a static
/// and moves with the program, so it holds the number, not an `OwnedFd`: copies are borrows of
/// the one descriptor the plan owns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Parked(i32);

impl Parked {
    /// The placeholder of a table slot or plan field not filled yet; never used as a descriptor.
    pub const NONE: Parked = Parked(-1);

    /// The descriptor, borrowed.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        assert!(self.0 >= 0, "myrestart: a parked descriptor used before it was made");
        // SAFETY: not NONE (refused above), so `park` (or `dup`, `park_status_fd`) made this
        // number: a descriptor the plan owns, open until after the plan's last use of it (see
        // the type).
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }

    /// Another parked descriptor on the same open file description, at or above `base`: the
    /// plan owns it too.
    pub fn dup(&self, base: i32) -> Result<Parked, Errno> {
        Ok(Parked(rustix::io::fcntl_dupfd_cloexec(self.as_fd(), base)?.into_raw_fd()))
    }

    /// Its number, where a number is wanted: a `dup3` onto the program's number, a path under
    /// `/proc/self/fd`, `PR_SET_MM_MAP`, the raw calls of `ckpt_sigsafe::sys`; or to close it.
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

/// myrestart's own standard descriptor `n` (0, 1 or 2), borrowed for a look or a write while
/// it is still its own (until `files::install` puts the program's descriptors there). A closed
/// one fails the call made with it.
pub fn own_std(n: i32) -> BorrowedFd<'static> {
    assert!((0..3).contains(&n), "myrestart: {n} is not a standard descriptor");
    // SAFETY: 0, 1 and 2 are not -1, and nothing in myrestart owns them (as an `OwnedFd` that
    // could close them) while they are borrowed: only `files::install` replaces them, after
    // the last such use.
    unsafe { BorrowedFd::borrow_raw(n) }
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
