//! POSIX message queues by raw system call: whether a descriptor is one, its attributes, and
//! opening, receiving and sending (glibc's `mq_*` are thin wrappers of these; the kernel's
//! `mq_open` takes the name without its leading '/').
//!
//! # Restrictions
//! Used in libckpt's signal handler and in myrestart: no allocation, no libc, raw system calls
//! only.

use crate::sys::syscall6;
use linux_raw_sys::general as k;
use rustix::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::io::Errno;

/// `statfs` magic of the mqueue filesystem.
const MQUEUE_MAGIC: i64 = 0x1980_0202;

fn check(r: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&r) {
        Err(Errno::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// Whether `fd` is a POSIX message queue descriptor.
pub fn is_queue(fd: BorrowedFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type == MQUEUE_MAGIC)
}

/// A queue's attributes (the kernel's `mq_attr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    pub flags: i64,
    pub max_messages: i64,
    pub message_size: i64,
    pub current: i64,
}

/// The attributes of queue descriptor `fd`.
pub fn attr(fd: BorrowedFd) -> Result<Attr, Errno> {
    let mut a = [0i64; 8];
    // SAFETY: `a` is the kernel's 64-byte `mq_attr`, which it fills; no new attributes are set.
    check(unsafe { syscall6(k::__NR_mq_getsetattr as usize, fd.as_raw_fd() as usize, 0, a.as_mut_ptr() as usize, 0, 0, 0) })?;
    Ok(Attr { flags: a[0], max_messages: a[1], message_size: a[2], current: a[3] })
}

/// `mq_open(name, flags, mode, attr)`; `name` is NUL-terminated, without its leading '/'.
/// With `O_CREAT`, `sizes` gives the capacity and the largest message.
pub fn open(name: &core::ffi::CStr, flags: u32, mode: u32, sizes: Option<(i64, i64)>) -> Result<OwnedFd, Errno> {
    let a = sizes.map(|(max, size)| [0, max, size, 0, 0, 0, 0, 0i64]);
    let ap = a.as_ref().map_or(0, |a| a.as_ptr() as usize);
    // SAFETY: a NUL-terminated name and, when given, a whole `mq_attr` the kernel reads.
    let fd = check(unsafe { syscall6(k::__NR_mq_open as usize, name.as_ptr() as usize, (flags | k::O_CLOEXEC) as usize, mode as usize, ap, 0, 0) })?;
    // SAFETY: a new descriptor, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Takes the first message (highest priority, oldest) of non-blocking queue descriptor `fd`
/// into `buf` (at least the queue's message size): its length and priority.
pub fn receive(fd: BorrowedFd, buf: &mut [u8]) -> Result<(usize, u32), Errno> {
    let mut prio = 0u32;
    // SAFETY: `buf` is writable for its length, the most the kernel writes; `prio` a u32.
    let n = check(unsafe {
        syscall6(k::__NR_mq_timedreceive as usize, fd.as_raw_fd() as usize, buf.as_mut_ptr() as usize, buf.len(), &mut prio as *mut u32 as usize, 0, 0)
    })?;
    Ok((n, prio))
}

/// Queues `msg` with priority `prio` on non-blocking queue descriptor `fd`.
pub fn send(fd: BorrowedFd, msg: &[u8], prio: u32) -> Result<(), Errno> {
    // SAFETY: `msg` is readable for its length.
    check(unsafe { syscall6(k::__NR_mq_timedsend as usize, fd.as_raw_fd() as usize, msg.as_ptr() as usize, msg.len(), prio as usize, 0, 0) }).map(drop)
}
