//! The terminal `ioctl`s on a pseudo-terminal pair that the checkpoint and the restart both
//! make, each as a safe call on a borrowed descriptor: the pair's number, lock and packet mode,
//! its termios (`TCGETS2`/`TCSETS2`, which keep every field and the exact speeds) and window
//! size, its session and foreground process group, and a descriptor of the slave opened from
//! the master (`TIOCGPTPEER`), which reaches the slave whatever mount namespace holds it.

use crate::sys;
use ckpt_image::pty::Termios;
use linux_raw_sys::general as k;
use linux_raw_sys::ioctl as io;
use rustix::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::io::Errno;

/// The major numbers of Unix98 pty slaves (`/dev/pts/N`): 136 to 143.
const SLAVE_MAJORS: core::ops::RangeInclusive<u32> = 136..=143;

/// What a character device `rdev` is: `Some(None)` for a pty master (`/dev/ptmx`, 5:2: its
/// number is asked with [`number`]), `Some(Some(n))` for the slave `/dev/pts/n`, `None` for
/// anything else.
pub fn pty_end(rdev: u64) -> Option<Option<u32>> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    if (major, minor) == (5, 2) {
        return Some(None);
    }
    SLAVE_MAJORS.contains(&major).then(|| Some((major - 136) * 256 + minor))
}

/// `ioctl(fd, request, &mut value)` for a request that reads or writes one `T`.
fn with<T>(fd: BorrowedFd, request: u32, value: &mut T) -> Result<usize, Errno> {
    // SAFETY: every request passed here reads or writes exactly one `T` (checked by its
    // caller below against the kernel's definition), which outlives the call.
    unsafe { sys::ioctl(fd.as_raw_fd(), request, value as *mut T as usize) }
}

/// `ioctl(fd, request, value)` for a request that takes an integer argument by value.
fn by_value(fd: BorrowedFd, request: u32, value: usize) -> Result<usize, Errno> {
    // SAFETY: every request passed here takes its argument by value, not as a pointer.
    unsafe { sys::ioctl(fd.as_raw_fd(), request, value) }
}

/// The pair's number (`TIOCGPTN`, on the master).
pub fn number(master: BorrowedFd) -> Result<u32, Errno> {
    let mut n = 0u32;
    with(master, io::TIOCGPTN, &mut n).map(|_| n)
}

/// Whether the slave is locked (`TIOCGPTLCK`, on the master).
pub fn locked(master: BorrowedFd) -> Result<bool, Errno> {
    let mut n = 0i32;
    with(master, io::TIOCGPTLCK, &mut n).map(|_| n != 0)
}

/// Locks or unlocks the slave (`TIOCSPTLCK`).
pub fn set_locked(master: BorrowedFd, lock: bool) -> Result<(), Errno> {
    let mut n = lock as i32;
    with(master, io::TIOCSPTLCK, &mut n).map(drop)
}

/// Whether the master is in packet mode (`TIOCGPKT`).
pub fn packet_mode(master: BorrowedFd) -> Result<bool, Errno> {
    let mut n = 0i32;
    with(master, io::TIOCGPKT, &mut n).map(|_| n != 0)
}

/// Sets packet mode (`TIOCPKT`).
pub fn set_packet_mode(master: BorrowedFd, on: bool) -> Result<(), Errno> {
    let mut n = on as i32;
    with(master, io::TIOCPKT, &mut n).map(drop)
}

/// The slave's termios (`TCGETS2`; on the master it reaches the slave's).
pub fn termios(fd: BorrowedFd) -> Result<Termios, Errno> {
    let mut t = k::termios2 { c_iflag: 0, c_oflag: 0, c_cflag: 0, c_lflag: 0, c_line: 0, c_cc: [0; 19], c_ispeed: 0, c_ospeed: 0 };
    with(fd, io::TCGETS2, &mut t)?;
    Ok(Termios { iflag: t.c_iflag, oflag: t.c_oflag, cflag: t.c_cflag, lflag: t.c_lflag, line: t.c_line, cc: t.c_cc, ispeed: t.c_ispeed, ospeed: t.c_ospeed })
}

/// Sets the slave's termios at once (`TCSETS2`: no draining, nothing flushed).
pub fn set_termios(fd: BorrowedFd, t: &Termios) -> Result<(), Errno> {
    let mut raw = k::termios2 { c_iflag: t.iflag, c_oflag: t.oflag, c_cflag: t.cflag, c_lflag: t.lflag, c_line: t.line, c_cc: t.cc, c_ispeed: t.ispeed, c_ospeed: t.ospeed };
    with(fd, io::TCSETS2, &mut raw).map(drop)
}

/// The window size: rows, columns, x and y pixels (`TIOCGWINSZ`).
pub fn winsize(fd: BorrowedFd) -> Result<[u16; 4], Errno> {
    let mut w = k::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    with(fd, io::TIOCGWINSZ, &mut w)?;
    Ok([w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel])
}

/// Sets the window size (`TIOCSWINSZ`).
pub fn set_winsize(fd: BorrowedFd, v: [u16; 4]) -> Result<(), Errno> {
    let mut w = k::winsize { ws_row: v[0], ws_col: v[1], ws_xpixel: v[2], ws_ypixel: v[3] };
    with(fd, io::TIOCSWINSZ, &mut w).map(drop)
}

/// The session whose controlling terminal the pair is (`TIOCGSID`). On a slave, only the
/// processes of that session get an answer (the others `ENOTTY`); on the master, anyone.
pub fn session(fd: BorrowedFd) -> Result<u32, Errno> {
    let mut n = 0i32;
    with(fd, io::TIOCGSID, &mut n).map(|_| n as u32)
}

/// The foreground process group (`TIOCGPGRP`), on the same terms as [`session`].
pub fn foreground(fd: BorrowedFd) -> Result<u32, Errno> {
    let mut n = 0i32;
    with(fd, io::TIOCGPGRP, &mut n).map(|_| n as u32)
}

/// Makes the slave `fd` the controlling terminal of the caller's session, of which the caller
/// must be the leader (`TIOCSCTTY`, never stealing it from another session).
pub fn make_controlling(fd: BorrowedFd) -> Result<(), Errno> {
    by_value(fd, io::TIOCSCTTY, 0).map(drop)
}

/// Makes `pgrp` the foreground process group of the caller's controlling terminal `fd`
/// (`TIOCSPGRP`).
pub fn set_foreground(fd: BorrowedFd, pgrp: u32) -> Result<(), Errno> {
    let mut n = pgrp as i32;
    with(fd, io::TIOCSPGRP, &mut n).map(drop)
}

/// A new descriptor of the slave of `master` (`TIOCGPTPEER`), opened with `flags` (close-on-exec,
/// no controlling terminal).
pub fn open_peer(master: BorrowedFd, flags: u32) -> Result<OwnedFd, Errno> {
    let fd = by_value(master, io::TIOCGPTPEER, (flags | k::O_NOCTTY | k::O_CLOEXEC) as usize)?;
    // SAFETY: the kernel just made this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Bytes the descriptor has to read (`FIONREAD`; on a canonical slave, only whole lines).
pub fn queued(fd: BorrowedFd) -> Result<u32, Errno> {
    let mut n = 0i32;
    with(fd, io::FIONREAD, &mut n).map(|_| n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_told_apart() {
        assert_eq!(pty_end(rustix::fs::makedev(5, 2)), Some(None));
        assert_eq!(pty_end(rustix::fs::makedev(136, 3)), Some(Some(3)));
        assert_eq!(pty_end(rustix::fs::makedev(137, 1)), Some(Some(257)));
        assert_eq!(pty_end(rustix::fs::makedev(1, 3)), None, "/dev/null");
        assert_eq!(pty_end(rustix::fs::makedev(5, 0)), None, "/dev/tty");
    }
}
