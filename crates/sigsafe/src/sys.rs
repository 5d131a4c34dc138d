//! System calls made by number, each kept here because rustix offers no stable call that does
//! the same job:
//! - calls rustix lacks (`kcmp`, `process_vm_readv`, `getitimer`/`setitimer`, POSIX timers,
//!   `signalfd4`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo`, `tgkill`, `close_range`, `clone`/`clone3`, `wait4` with
//!   `__WALL` or `__WCLONE`, `set_tid_address`, robust lists, `rseq`, `arch_prctl`, `brk`, the
//!   `prctl` of `PR_TIMER_CREATE_RESTORE_IDS`, and `PR_GET_NAME`, for which rustix allocates,
//!   `ptrace`, another thread's robust list, `process_vm_writev`) or
//!   offers only in its experimental `runtime` module (`exit_group`, `rt_sigprocmask`);
//! - calls whose rustix form takes a typed value that cannot carry what an image holds: a saved
//!   kernel `sigaction` record (`SIG_IGN`, say), any signal number, any `RLIMIT_*` number, a
//!   socket option or `ioctl` rustix has no type for, epoll events exactly as recorded;
//! - calls on memory by address rather than by slice (`pread_into`, `pwrite_from`), where a
//!   fault must become an error, and `dup3` onto a descriptor number no `OwnedFd` owns;
//! - `FIONREAD` (`bytes_to_read`) on descriptors the program owns, known only by number.
//!
//! Each wrapper is a direct `syscall` instruction; none touches libc, errno or TLS.
#![allow(clippy::missing_safety_doc)]

use core::arch::asm;
use linux_raw_sys::general as k;
use rustix::io::Errno;

/// System call numbers, from the kernel's headers (`linux-raw-sys`).
pub mod nr {
    use super::k;
    pub const RT_SIGACTION: usize = k::__NR_rt_sigaction as usize;
    pub const RT_SIGPROCMASK: usize = k::__NR_rt_sigprocmask as usize;
    pub const RT_SIGPENDING: usize = k::__NR_rt_sigpending as usize;
    pub const RT_SIGTIMEDWAIT: usize = k::__NR_rt_sigtimedwait as usize;
    pub const PPOLL: usize = k::__NR_ppoll as usize;
    pub const RT_SIGRETURN: usize = k::__NR_rt_sigreturn as usize;
    pub const GETITIMER: usize = k::__NR_getitimer as usize;
    pub const SETITIMER: usize = k::__NR_setitimer as usize;
    pub const MUNMAP: usize = k::__NR_munmap as usize;
    pub const ARCH_PRCTL: usize = k::__NR_arch_prctl as usize;
    pub const SET_ROBUST_LIST: usize = k::__NR_set_robust_list as usize;
    pub const GET_ROBUST_LIST: usize = k::__NR_get_robust_list as usize;
    pub const RSEQ: usize = k::__NR_rseq as usize;
    pub const CLOSE_RANGE: usize = k::__NR_close_range as usize;
    pub const DUP3: usize = k::__NR_dup3 as usize;
    pub const PREAD64: usize = k::__NR_pread64 as usize;
    pub const PWRITE64: usize = k::__NR_pwrite64 as usize;
    pub const BRK: usize = k::__NR_brk as usize;
    pub const EXIT_GROUP: usize = k::__NR_exit_group as usize;
    pub const SET_TID_ADDRESS: usize = k::__NR_set_tid_address as usize;
    pub const KCMP: usize = k::__NR_kcmp as usize;
    pub const GETPID: usize = k::__NR_getpid as usize;
    pub const KILL: usize = k::__NR_kill as usize;
    pub const PROCESS_VM_READV: usize = k::__NR_process_vm_readv as usize;
    pub const CLONE: usize = k::__NR_clone as usize;
    pub const WAIT4: usize = k::__NR_wait4 as usize;
    pub const TIMER_CREATE: usize = k::__NR_timer_create as usize;
    pub const TIMER_SETTIME: usize = k::__NR_timer_settime as usize;
    pub const CLONE3: usize = k::__NR_clone3 as usize;
    pub const SIGNALFD4: usize = k::__NR_signalfd4 as usize;
    pub const TGKILL: usize = k::__NR_tgkill as usize;
    pub const TKILL: usize = k::__NR_tkill as usize;
    pub const TIMER_GETTIME: usize = k::__NR_timer_gettime as usize;
    pub const PRLIMIT64: usize = k::__NR_prlimit64 as usize;
    pub const EPOLL_CTL: usize = k::__NR_epoll_ctl as usize;
    pub const PRCTL: usize = k::__NR_prctl as usize;
    pub const GETSOCKOPT: usize = k::__NR_getsockopt as usize;
    pub const SETSOCKOPT: usize = k::__NR_setsockopt as usize;
    pub const IOCTL: usize = k::__NR_ioctl as usize;
    pub const RT_SIGQUEUEINFO: usize = k::__NR_rt_sigqueueinfo as usize;
    pub const RT_TGSIGQUEUEINFO: usize = k::__NR_rt_tgsigqueueinfo as usize;
    pub const EXIT: usize = k::__NR_exit as usize;
    pub const FCNTL: usize = k::__NR_fcntl as usize;
    pub const PTRACE: usize = k::__NR_ptrace as usize;
    pub const SIGALTSTACK: usize = k::__NR_sigaltstack as usize;
    pub const PROCESS_VM_WRITEV: usize = k::__NR_process_vm_writev as usize;
}

// `arch_prctl` codes (asm/prctl.h); linux-raw-sys carries only ARCH_SET_FS.
pub const ARCH_SET_GS: usize = 0x1001;
pub const ARCH_SET_FS: usize = k::ARCH_SET_FS as usize;
pub const ARCH_GET_FS: usize = 0x1003;
pub const ARCH_GET_GS: usize = 0x1004;

/// Raw six-argument system call; returns the kernel's result (negative errno on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; the kernel clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a1, in("rsi") a2, in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw system call's return value as a result: -4095..-1 is an errno.
pub(crate) fn check(r: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&r) {
        Err(Errno::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// `rt_sigaction(sig, new, old, 8)` with the kernel's own record layout
/// (`handler, flags, restorer, mask`).
///
/// # Safety
/// Installing a handler is only sound if it points at code that can run as one.
pub unsafe fn rt_sigaction(sig: u32, new: Option<&[u64; 4]>, old: Option<&mut [u64; 4]>) -> Result<(), Errno> {
    let new = new.map_or(0, |n| n as *const _ as usize);
    let old = old.map_or(0, |o| o as *mut _ as usize);
    // SAFETY: both pointers are null or point at 32-byte records, the size the kernel uses.
    check(unsafe { syscall6(nr::RT_SIGACTION, sig as usize, new, old, 8, 0, 0) }).map(drop)
}

/// `rt_sigprocmask(how, set, old, 8)` on a 64-bit mask.
pub fn rt_sigprocmask(how: usize, set: u64) -> Result<u64, Errno> {
    let mut old = 0u64;
    // SAFETY: both pointers point at 8-byte masks that live across the call.
    check(unsafe { syscall6(nr::RT_SIGPROCMASK, how, &set as *const u64 as usize, &mut old as *mut u64 as usize, 8, 0, 0) })?;
    Ok(old)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `rt_sigpending(set, 8)`: the signals pending for this thread or its process that it blocks.
pub fn rt_sigpending() -> Result<u64, Errno> {
    let mut set = 0u64;
    // SAFETY: the pointer points at an 8-byte mask that lives across the call.
    check(unsafe { syscall6(nr::RT_SIGPENDING, &mut set as *mut u64 as usize, 8, 0, 0, 0, 0) })?;
    Ok(set)
}

/// `rt_sigtimedwait(set, NULL, timeout, 8)` on a 64-bit mask of blocked signals: takes one of
/// them, waiting at most `timeout_ns`. Returns its number; `Err(EAGAIN)` when none came.
pub fn sigtimedwait(set: u64, timeout_ns: u64) -> Result<u32, Errno> {
    let t = [(timeout_ns / 1_000_000_000) as i64, (timeout_ns % 1_000_000_000) as i64];
    // SAFETY: the mask and the `struct timespec` live across the call; no siginfo is asked for.
    check(unsafe { syscall6(nr::RT_SIGTIMEDWAIT, &set as *const u64 as usize, 0, t.as_ptr() as usize, 8, 0, 0) }).map(|s| s as u32)
}

/// `getitimer(which)` as `[interval_sec, interval_usec, value_sec, value_usec]`.
pub fn getitimer(which: usize) -> Result<[i64; 4], Errno> {
    let mut v = [0i64; 4];
    // SAFETY: `v` has the layout of `struct itimerval`.
    check(unsafe { syscall6(nr::GETITIMER, which, v.as_mut_ptr() as usize, 0, 0, 0, 0) })?;
    Ok(v)
}

/// `setitimer(which, value, NULL)`.
pub fn setitimer(which: usize, v: &[i64; 4]) -> Result<(), Errno> {
    // SAFETY: `v` has the layout of `struct itimerval`.
    check(unsafe { syscall6(nr::SETITIMER, which, v.as_ptr() as usize, 0, 0, 0, 0) }).map(drop)
}

/// Names the anonymous memory `[addr, addr + len)` (`prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)`):
/// it shows as `[anon:NAME]` in `/proc/PID/maps`. Fails (`EINVAL`) on a kernel built without
/// anonymous VMA names.
pub fn name_anonymous(addr: usize, len: usize, name: &core::ffi::CStr) -> Result<(), Errno> {
    use linux_raw_sys::prctl::{PR_SET_VMA, PR_SET_VMA_ANON_NAME};
    // SAFETY: the kernel reads the NUL-terminated name, and changes nothing of the memory.
    check(unsafe { syscall6(nr::PRCTL, PR_SET_VMA as usize, PR_SET_VMA_ANON_NAME as usize, addr, len, name.as_ptr() as usize, 0) }).map(|_| ())
}

/// `arch_prctl(ARCH_GET_FS or ARCH_GET_GS)`.
pub fn arch_get(code: usize) -> Result<u64, Errno> {
    let mut v = 0u64;
    // SAFETY: the kernel writes one u64 to `v`.
    check(unsafe { syscall6(nr::ARCH_PRCTL, code, &mut v as *mut u64 as usize, 0, 0, 0, 0) })?;
    Ok(v)
}

/// `arch_prctl(ARCH_SET_FS or ARCH_SET_GS, base)`.
///
/// # Safety
/// Changes the thread pointer: code that uses TLS afterwards sees the new base.
pub unsafe fn arch_set(code: usize, base: u64) -> Result<(), Errno> {
    // SAFETY: the caller accepts the new thread pointer.
    check(unsafe { syscall6(nr::ARCH_PRCTL, code, base as usize, 0, 0, 0, 0) }).map(drop)
}

/// `get_robust_list(0)`: the calling thread's robust futex list head and length.
pub fn get_robust_list() -> Result<(u64, u64), Errno> {
    let (mut head, mut len) = (0u64, 0u64);
    // SAFETY: the kernel writes one pointer and one size.
    check(unsafe {
        syscall6(nr::GET_ROBUST_LIST, 0, &mut head as *mut u64 as usize, &mut len as *mut u64 as usize, 0, 0, 0)
    })?;
    Ok((head, len))
}

/// `get_robust_list(tid)`: the robust list head and length of thread `tid` (one of this
/// process's, or one the caller may trace).
pub fn get_robust_list_of(tid: u32) -> Result<(u64, u64), Errno> {
    let (mut head, mut len) = (0u64, 0u64);
    // SAFETY: the kernel writes one pointer and one size.
    check(unsafe {
        syscall6(nr::GET_ROBUST_LIST, tid as usize, &mut head as *mut u64 as usize, &mut len as *mut u64 as usize, 0, 0, 0)
    })?;
    Ok((head, len))
}

/// `set_robust_list(head, len)`.
///
/// # Safety
/// `head` must be the thread's robust list head (the kernel walks it at exit).
pub unsafe fn set_robust_list(head: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: the caller vouches for the list.
    check(unsafe { syscall6(nr::SET_ROBUST_LIST, head as usize, len as usize, 0, 0, 0, 0) }).map(drop)
}

/// `rseq(area, len, 0, sig)`: registers the calling thread's rseq area.
///
/// # Safety
/// `area` must stay valid, writable memory for the life of the thread.
pub unsafe fn rseq_register(area: u64, len: u32, sig: u32) -> Result<(), Errno> {
    // SAFETY: the caller vouches for the area.
    check(unsafe { syscall6(nr::RSEQ, area as usize, len as usize, 0, sig as usize, 0, 0) }).map(drop)
}

/// `close_range(first, u32::MAX, 0)`.
///
/// # Safety
/// The caller must own every descriptor from `first` on.
pub unsafe fn close_from(first: u32) -> Result<(), Errno> {
    // SAFETY: closing descriptors touches no memory; the caller owns them.
    check(unsafe { syscall6(nr::CLOSE_RANGE, first as usize, u32::MAX as usize, 0, 0, 0, 0) }).map(drop)
}


/// `pwrite64(fd, addr, len, offset)` straight from process memory. Memory that cannot be read
/// makes it fail with `EFAULT` (or write less) instead of raising a signal.
pub fn pwrite_from(fd: i32, addr: usize, len: usize, offset: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads `len` bytes at `addr`, checking every page itself.
    check(unsafe { syscall6(nr::PWRITE64, fd as usize, addr, len, offset as usize, 0, 0) })
}

/// `pread64(fd, addr, len, offset)` straight into process memory.
///
/// # Safety
/// `addr..addr+len` must be memory the caller may overwrite.
pub unsafe fn pread_into(fd: i32, addr: usize, len: usize, offset: u64) -> Result<usize, Errno> {
    // SAFETY: the caller owns the destination range.
    check(unsafe { syscall6(nr::PREAD64, fd as usize, addr, len, offset as usize, 0, 0) })
}


/// `pread` until `buf` is full or the file ends (interrupted calls are repeated); the bytes read.
pub fn pread_full(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the destination is the unfilled part of `buf`.
        match rustix::io::retry_on_intr(|| unsafe { pread_into(fd, buf.as_mut_ptr() as usize + done, buf.len() - done, off + done as u64) }) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `brk(0)`: the current program break.
pub fn current_brk() -> u64 {
    // SAFETY: brk(0) changes nothing; it only reports the break.
    unsafe { syscall6(nr::BRK, 0, 0, 0, 0, 0, 0) as u64 }
}

/// `exit_group(code)`. rustix has one only in its experimental `runtime` module, which it hides
/// from its documentation under a name that changes with each release: no stable API to build on.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: ends the process; no memory is involved.
    unsafe { syscall6(nr::EXIT_GROUP, code as usize, 0, 0, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

/// `set_tid_address(addr)`: returns the caller's TID.
///
/// # Safety
/// The kernel writes 0 to `addr` when the thread exits.
pub unsafe fn set_tid_address(addr: u64) -> u32 {
    // SAFETY: the caller vouches for the address.
    unsafe { syscall6(nr::SET_TID_ADDRESS, addr as usize, 0, 0, 0, 0, 0) as u32 }
}

/// `KCMP_FILE` and `KCMP_EPOLL_TFD` of `enum kcmp_type` (linux/kcmp.h), which linux-raw-sys
/// does not carry.
const KCMP_FILE: usize = 0;
const KCMP_EPOLL_TFD: usize = 7;

/// Whether descriptor `fd` of process `pid` is the file that epoll descriptor `epfd` watches
/// under the number `tfd` (`kcmp(KCMP_EPOLL_TFD)`): registrations outlive `close` and `dup`.
pub fn is_epoll_target(pid: u32, fd: i32, epfd: i32, tfd: i32) -> bool {
    let slot = [epfd as u32, tfd as u32, 0u32]; // struct kcmp_epoll_slot: efd, tfd, toff
    // SAFETY: kcmp only reads the 12-byte slot, which outlives the call.
    let r = unsafe { syscall6(nr::KCMP, pid as usize, pid as usize, KCMP_EPOLL_TFD, fd as usize, slot.as_ptr() as usize, 0) };
    r == 0
}

/// How the open file descriptions of descriptors `a` and `b` of process `pid` compare in the
/// kernel's own order (`kcmp(KCMP_FILE)`: `Equal` when they are one description, one `dup`ed
/// from the other). The order is total and stable while both stay open, so descriptions can be
/// kept sorted and searched. `None` if unknown (no kcmp, or a descriptor is not open).
pub fn compare_open_files(pid: u32, a: i32, b: i32) -> Option<core::cmp::Ordering> {
    // SAFETY: kcmp only compares kernel objects; no memory is passed.
    let r = unsafe { syscall6(nr::KCMP, pid as usize, pid as usize, KCMP_FILE, a as usize, b as usize, 0) };
    match r {
        0 => Some(core::cmp::Ordering::Equal),
        1 => Some(core::cmp::Ordering::Less),
        2 => Some(core::cmp::Ordering::Greater),
        _ => None,
    }
}


/// `dup3(old, new, flags)`: makes `new` refer to `old`'s open file description.
///
/// # Safety
/// Whatever `new` referred to is closed: the caller must own that slot, with no `OwnedFd` or
/// other owner still expecting it.
pub unsafe fn dup3(old: i32, new: i32, flags: u32) -> Result<(), Errno> {
    // SAFETY: descriptor numbers only; the caller owns `new`'s slot.
    check(unsafe { syscall6(nr::DUP3, old as usize, new as usize, flags as usize, 0, 0, 0) }).map(drop)
}

/// `ioctl(fd, request, arg)` with a pointer argument; returns the kernel's non-negative result.
///
/// # Safety
/// `arg` must point at the structure `request` reads and writes, valid for the whole call.
pub unsafe fn ioctl(fd: i32, request: u32, arg: usize) -> Result<usize, Errno> {
    // SAFETY: the caller passes the argument the request expects.
    check(unsafe { syscall6(nr::IOCTL, fd as usize, request as usize, arg, 0, 0, 0) })
}

/// Takes a byte-range lock on `fd` without waiting: `ofd` an OFD lock (`F_OFD_SETLK`, held by
/// the open file description), else a POSIX one (`F_SETLK`, held by the process); a write lock
/// if `write`, else a read lock; `len` 0 reaches to the end of the file. Another holder's
/// conflicting lock fails it with `EAGAIN` (or `EACCES`).
pub fn set_range_lock(fd: i32, ofd: bool, write: bool, start: u64, len: u64) -> Result<(), Errno> {
    let lock = k::flock {
        l_type: if write { k::F_WRLCK } else { k::F_RDLCK } as i16,
        l_whence: k::SEEK_SET as i16,
        l_start: start as i64,
        l_len: len as i64,
        l_pid: 0,
    };
    let cmd = if ofd { k::F_OFD_SETLK } else { k::F_SETLK };
    // SAFETY: the kernel only reads the `struct flock`, which outlives the call.
    check(unsafe { syscall6(nr::FCNTL, fd as usize, cmd as usize, &lock as *const k::flock as usize, 0, 0, 0) }).map(drop)
}

/// `close_range(first, last, 0)`.
///
/// # Safety
/// The caller must own every descriptor in the range.
pub unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: closing descriptors touches no memory; the caller owns them.
    unsafe { syscall6(nr::CLOSE_RANGE, first as usize, last as usize, 0, 0, 0, 0) };
}


/// Copies `len` bytes at `addr` of this process into `buf` without risking a fault: memory that
/// cannot be read (a file mapping past the end of its file, say) ends the copy early. Returns
/// the bytes copied.
pub fn copy_own_memory(addr: usize, len: usize, buf: &mut [u8]) -> usize {
    let len = len.min(buf.len());
    let local = [buf.as_mut_ptr() as usize, len];
    let remote = [addr, len];
    let pid = rustix::process::getpid().as_raw_nonzero().get() as usize;
    // SAFETY: the kernel writes at most `len` bytes into `buf` and reads `addr..addr+len` of
    // our own address space checking each page itself; the iovec arrays outlive the call.
    let r = unsafe { syscall6(nr::PROCESS_VM_READV, pid, local.as_ptr() as usize, 1, remote.as_ptr() as usize, 1, 0) };
    if r < 0 {
        0
    } else {
        r as usize
    }
}

/// Copies `buf.len()` bytes at `addr` of process `pid` (one the caller may trace) into `buf`;
/// returns whether every byte was read (memory that is not mapped readable makes it fail).
pub fn read_memory_of(pid: u32, addr: usize, buf: &mut [u8]) -> bool {
    let local = [buf.as_mut_ptr() as usize, buf.len()];
    let remote = [addr, buf.len()];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and reads process `pid`'s
    // memory checking each page itself; the iovecs outlive the call.
    let r = unsafe { syscall6(nr::PROCESS_VM_READV, pid as usize, local.as_ptr() as usize, 1, remote.as_ptr() as usize, 1, 0) };
    r >= 0 && r as usize == buf.len()
}

/// Sleeps `ns` nanoseconds (or less, if woken) without touching this thread's restart block,
/// which `nanosleep` and `clock_nanosleep` reset on entry: the thread may be another
/// program's, borrowed for a moment (the leader of a process `ckpt` attached to, stopped in a
/// sleep that the kernel will go on with through that block when it is let go). A futex wait
/// with a timeout would not do: a stop that cuts it short (a SIGSTOP, ckpt's interrupt when
/// its time is up) makes the kernel set the block up for the futex wait's own restart, and
/// the program's sleep would then restart as that wait. `ppoll` with no descriptors never
/// uses the block (cut short, it is made again from its registers).
pub fn sleep_ns(ns: u64) {
    let mut t = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    // SAFETY: the `struct timespec` lives across the call; no descriptors, no mask: the kernel
    // reads the timeout (and, cut short, writes the time left into it) and nothing else.
    let _ = unsafe { syscall6(nr::PPOLL, 0, 0, t.as_mut_ptr() as usize, 0, 8, 0) };
}

/// This thread's alternate signal stack (`sigaltstack`): its base, flags and size.
pub fn sigaltstack() -> Result<(u64, u32, u64), Errno> {
    let mut ss = [0u64; 3];
    // SAFETY: the kernel writes one `stack_t` (24 bytes) into `ss`, and sets nothing.
    check(unsafe { syscall6(nr::SIGALTSTACK, 0, ss.as_mut_ptr() as usize, 0, 0, 0, 0) })?;
    Ok((ss[0], ss[1] as u32, ss[2]))
}

/// Copies `bytes` to `addr` in process `pid` (this one, or one the caller may trace) without
/// risking a fault: memory that is not mapped writable makes it fail. Returns whether every
/// byte was written.
pub fn write_memory_of(pid: u32, addr: usize, bytes: &[u8]) -> bool {
    let local = [bytes.as_ptr() as usize, bytes.len()];
    let remote = [addr, bytes.len()];
    // SAFETY: the kernel reads `bytes` and writes `addr..addr+len` of process `pid`, checking
    // each page itself (an unmapped or read-only page fails the call); the iovecs outlive it.
    let r = unsafe { syscall6(nr::PROCESS_VM_WRITEV, pid as usize, local.as_ptr() as usize, 1, remote.as_ptr() as usize, 1, 0) };
    r >= 0 && r as usize == bytes.len()
}

const SIGCHLD: usize = k::SIGCHLD as usize;
const WCLONE: usize = k::__WCLONE as usize;

/// Starts a process that is nobody's child the caller could see, copying the address space
/// once: a `vfork`-style child (`CLONE_VM | CLONE_VFORK`, no exit signal) shares this process's
/// memory while the caller waits, forks the new process (with `SIGCHLD` to its parent, the
/// intermediate, which exits at once so that init or a subreaper inherits it), writes its PID
/// to `*pid` (or the negative errno) and exits. Returns 0 in the new process; in the caller,
/// the intermediate's PID, to be reaped with [`reap_quiet_child`].
///
/// The intermediate runs only the instructions of [`spawn`]'s block, on no stack, and touches no
/// memory but `*pid` (and reads the name, if one is given), so sharing the caller's memory and
/// stack is safe.
pub fn spawn_detached(pid: &mut i32) -> Result<u32, Errno> {
    spawn(pid, None)
}

/// [`spawn_detached`], with the new process named `name` (`comm`, at most 15 bytes) from its
/// very start: the intermediate names itself before it forks, and the new process inherits
/// the name. Whoever looks for the process by its name (a checkpoint asking whether the
/// previous writer is still at work, `ckpt` looking for the program among its processes) finds
/// it even before it has first run, which on a loaded machine can be a long while.
pub fn spawn_detached_named(pid: &mut i32, name: &core::ffi::CStr) -> Result<u32, Errno> {
    spawn(pid, Some(name))
}

/// Both of the above: the intermediate names itself first if `name` is set.
fn spawn(pid: &mut i32, name: Option<&core::ffi::CStr>) -> Result<u32, Errno> {
    let ret: isize;
    let name = name.map_or(core::ptr::null(), |n| n.as_ptr());
    // SAFETY: see above: the intermediate never leaves this block; the new process returns
    // from it like a forked child, with a copy of the caller's memory as it was. `name`, if not
    // null, is a NUL-terminated string that outlives the call, which the kernel only reads.
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "test r12, r12",
            "jz 3f",
            "mov eax, {prctl}",
            "mov edi, {set_name}",
            "mov rsi, r12",
            "syscall",
            "3:",
            "mov eax, {clone}",
            "mov edi, {sigchld}",
            "xor esi, esi",
            "xor edx, edx",
            "xor r10d, r10d",
            "xor r8d, r8d",
            "syscall",
            "test rax, rax",
            "jz 2f",
            "mov dword ptr [r9], eax",
            "mov eax, {exit}",
            "xor edi, edi",
            "syscall",
            "ud2",
            "2:",
            clone = const nr::CLONE,
            sigchld = const SIGCHLD,
            exit = const nr::EXIT,
            prctl = const nr::PRCTL,
            set_name = const linux_raw_sys::prctl::PR_SET_NAME,
            inlateout("rax") nr::CLONE as isize => ret,
            inout("rdi") (k::CLONE_VM | k::CLONE_VFORK) as usize => _,
            inout("rsi") 0usize => _,
            inout("rdx") 0usize => _,
            inout("r10") 0usize => _,
            inout("r8") 0usize => _,
            in("r9") pid as *mut i32,
            in("r12") name,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    check(ret).map(|p| p as u32)
}

/// Starts `f(arg)` beside the caller, on the other core: a process that shares the caller's
/// memory, descriptors and file-system context (`CLONE_VM | CLONE_FILES | CLONE_FS`), unseen by
/// any tracer (`CLONE_UNTRACED`), on the stack whose top is `stack_top`, every signal blocked
/// (none can run a handler of the caller's in it). It ends (`exit`) with `f`'s return value as
/// its status and sends no signal then: reap it with [`reap_quiet_child`]. Returns its PID.
///
/// # Safety
/// `stack_top` is 16-byte aligned, the top of writable memory deep enough for `f` that nothing
/// else uses until the helper is reaped; `f` runs with the caller's thread pointer, so it must
/// not use thread-local storage; whatever `arg` points to stays valid until the helper is reaped.
pub unsafe fn start_beside(stack_top: usize, f: extern "C" fn(usize) -> i32, arg: usize) -> Result<u32, Errno> {
    let flags = (k::CLONE_VM | k::CLONE_FILES | k::CLONE_FS | k::CLONE_UNTRACED) as usize;
    // The helper starts with the caller's signal mask: all of them, for the time of the clone.
    let old = rt_sigprocmask(k::SIG_BLOCK as usize, !0)?;
    let ret: isize;
    // SAFETY: the helper leaves this block only through `f`, on its own stack (`stack_top`,
    // which the kernel gives it; the `call` leaves it aligned as a function expects), and then
    // exits; the caller returns from it as from any system call.
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const nr::EXIT,
            inlateout("rax") nr::CLONE as isize => ret,
            in("rdi") flags,
            in("rsi") stack_top,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            in("r12") arg,
            in("r13") f as usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    let _ = rt_sigprocmask(k::SIG_SETMASK as usize, old);
    check(ret).map(|p| p as u32)
}

/// Lets this thread read memory of every protection key (`PKRU` 0), where the processor and
/// kernel have them; returns what to put back with [`restore_keys`]. A signal handler starts
/// with only key 0's memory accessible, and a process started with `clone` takes the caller's
/// rights with it.
pub fn open_all_keys() -> Option<u32> {
    // CPUID leaf 7: ECX bit 4, OSPKE (the kernel turned protection keys on).
    if core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) == 0 {
        return None;
    }
    let old: u32;
    // SAFETY: RDPKRU and WRPKRU exist when OSPKE is set (checked above); they read and write
    // this thread's access rights register only, which widening cannot make any access unsound.
    unsafe {
        asm!("rdpkru", out("eax") old, in("ecx") 0u32, lateout("edx") _, options(nomem, nostack, preserves_flags));
        asm!("wrpkru", in("eax") 0u32, in("ecx") 0u32, in("edx") 0u32, options(nostack, preserves_flags));
    }
    Some(old)
}

/// Puts back the access rights [`open_all_keys`] returned.
pub fn restore_keys(old: Option<u32>) {
    if let Some(v) = old {
        // SAFETY: as in `open_all_keys`, which found the instruction there.
        unsafe { asm!("wrpkru", in("eax") v, in("ecx") 0u32, in("edx") 0u32, options(nostack, preserves_flags)) };
    }
}

/// `fork()` as a bare `clone` system call, without libc's fork handlers (which are not
/// async-signal-safe). With `notify_parent` false the child's exit sends no signal and plain
/// `wait()` calls in the parent never see it. Returns 0 in the child, the child's PID in the
/// parent.
pub fn fork_raw(notify_parent: bool) -> Result<u32, Errno> {
    let flags = if notify_parent { SIGCHLD } else { 0 };
    // SAFETY: a clone without CLONE_VM gives the child its own copy of the address space, so
    // both sides continue on their own copy of this stack.
    check(unsafe { syscall6(nr::CLONE, flags, 0, 0, 0, 0, 0) }).map(|pid| pid as u32)
}

/// `clone(flags | SIGCHLD)` without `CLONE_VM`: a fork, with namespace flags such as
/// `CLONE_NEWUSER | CLONE_NEWPID`. Returns 0 in the child, the child's PID in the parent.
pub fn clone_raw(flags: usize) -> Result<u32, Errno> {
    // SAFETY: as for fork_raw: the child gets its own copy of the address space.
    check(unsafe { syscall6(nr::CLONE, flags | SIGCHLD, 0, 0, 0, 0, 0) }).map(|pid| pid as u32)
}

/// Waits for a child created by [`fork_raw`]`(false)` to exit, and reaps it; its wait status.
pub fn reap_quiet_child(pid: u32) -> Option<i32> {
    let mut status = 0i32;
    // SAFETY: `status` is a writable i32; no rusage.
    let r = rustix::io::retry_on_intr(|| check(unsafe { syscall6(nr::WAIT4, pid as usize, &mut status as *mut i32 as usize, WCLONE, 0, 0, 0) }));
    (r == Ok(pid as usize)).then_some(status)
}



/// `clone3` as a plain fork (a copy of the address space, `SIGCHLD` to the parent at exit) whose
/// child gets the PID `pid` in the caller's PID namespace for children. Needs
/// `CAP_CHECKPOINT_RESTORE` (or `CAP_SYS_ADMIN`) over that namespace. Returns 0 in the child,
/// the child's PID in the parent.
pub fn fork_with_pid(pid: u32) -> Result<u32, Errno> {
    let tids = [pid as i32];
    // SAFETY: clone_args is plain data; zero is a valid value of every field.
    let mut args: k::clone_args = unsafe { core::mem::zeroed() };
    args.exit_signal = k::SIGCHLD as u64;
    args.set_tid = tids.as_ptr() as u64;
    args.set_tid_size = 1;
    // SAFETY: without CLONE_VM the child runs on its own copy of this stack, as after fork; the
    // kernel only reads `args` and `tids`, which outlive the call.
    check(unsafe { syscall6(nr::CLONE3, &args as *const _ as usize, core::mem::size_of::<k::clone_args>(), 0, 0, 0, 0) })
        .map(|p| p as u32)
}

/// The `ptrace` requests a capture of a thread that blocks every signal makes (see libckpt's
/// `checkpoint::seize`), each on thread `tid`.
pub mod ptrace {
    use super::{check, nr, syscall6};
    use linux_raw_sys::ptrace as p;
    use rustix::io::Errno;

    fn request(req: u32, tid: u32, addr: usize, data: usize) -> Result<usize, Errno> {
        // SAFETY: every caller below passes for `addr` and `data` either plain values or the
        // address and size of a buffer it owns that outlives the call, as `req` expects.
        check(unsafe { syscall6(nr::PTRACE, req as usize, tid as usize, addr, data, 0, 0) })
    }

    /// `PTRACE_SEIZE`: trace `tid` without stopping it.
    pub fn seize(tid: u32) -> Result<(), Errno> {
        request(p::PTRACE_SEIZE, tid, 0, 0).map(drop)
    }

    /// `PTRACE_INTERRUPT`: stop a seized thread (it reports `PTRACE_EVENT_STOP`).
    pub fn interrupt(tid: u32) -> Result<(), Errno> {
        request(p::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
    }

    /// `PTRACE_CONT` with signal `sig` (0: none) delivered.
    pub fn cont(tid: u32, sig: u32) -> Result<(), Errno> {
        request(p::PTRACE_CONT, tid, 0, sig as usize).map(drop)
    }

    /// `PTRACE_DETACH`: the thread goes on (with signal `sig` delivered, 0: none).
    pub fn detach(tid: u32, sig: u32) -> Result<(), Errno> {
        request(p::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
    }

    /// `PTRACE_GETREGSET` of note type `nt` into `buf`; the bytes the kernel wrote.
    pub fn get_regset(tid: u32, nt: u32, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut iov = [buf.as_mut_ptr() as usize, buf.len()];
        request(p::PTRACE_GETREGSET, tid, nt as usize, iov.as_mut_ptr() as usize)?;
        Ok(iov[1])
    }

    /// `PTRACE_SETREGSET` of note type `nt` from `buf`.
    pub fn set_regset(tid: u32, nt: u32, buf: &[u8]) -> Result<(), Errno> {
        let iov = [buf.as_ptr() as usize, buf.len()];
        request(p::PTRACE_SETREGSET, tid, nt as usize, iov.as_ptr() as usize).map(drop)
    }

    /// `PTRACE_SYSCALL`: the thread goes on until it enters or leaves a system call.
    pub fn syscall(tid: u32) -> Result<(), Errno> {
        request(p::PTRACE_SYSCALL, tid, 0, 0).map(drop)
    }

    /// `PTRACE_SETSIGMASK`: sets the thread's blocked signals.
    pub fn set_sigmask(tid: u32, mask: u64) -> Result<(), Errno> {
        request(p::PTRACE_SETSIGMASK, tid, 8, &mask as *const u64 as usize).map(drop)
    }

    /// `PTRACE_GETSIGMASK`: the thread's blocked signals (bit `n - 1` for signal `n`).
    pub fn sigmask(tid: u32) -> Result<u64, Errno> {
        let mut mask = 0u64;
        request(p::PTRACE_GETSIGMASK, tid, 8, &mut mask as *mut u64 as usize)?;
        Ok(mask)
    }

    /// `PTRACE_GET_RSEQ_CONFIGURATION`: the thread's rseq area, its length and signature
    /// (address 0: none registered).
    pub fn rseq(tid: u32) -> Result<(u64, u32, u32), Errno> {
        let mut c = p::ptrace_rseq_configuration { rseq_abi_pointer: 0, rseq_abi_size: 0, signature: 0, flags: 0, pad: 0 };
        request(p::PTRACE_GET_RSEQ_CONFIGURATION, tid, core::mem::size_of_val(&c), &mut c as *mut _ as usize)?;
        Ok((c.rseq_abi_pointer, c.rseq_abi_size, c.signature))
    }
}

/// `signalfd4(-1, mask, 8, SFD_CLOEXEC)`: a descriptor that reads the signals of `mask` (which
/// the caller keeps blocked) as they arrive, 128 bytes each, `ssi_signo` first.
pub fn signalfd(mask: u64) -> Result<i32, Errno> {
    // SAFETY: the kernel reads 8 bytes of mask; no other memory is involved.
    check(unsafe { syscall6(nr::SIGNALFD4, usize::MAX, &mask as *const u64 as usize, 8, k::O_CLOEXEC as usize, 0, 0) })
        .map(|fd| fd as i32)
}

/// `wait4(pid, &status, options | __WALL)`: reaps a child (`pid` -1: any). `Ok(None)` when
/// `WNOHANG` finds none ready yet.
pub fn wait_child(pid: i32, nohang: bool) -> Result<Option<(u32, i32)>, Errno> {
    let mut status = 0i32;
    let opts = k::__WALL as usize | if nohang { k::WNOHANG as usize } else { 0 };
    // SAFETY: the kernel writes one i32 to `status`; no rusage.
    let r = check(unsafe { syscall6(nr::WAIT4, pid as isize as usize, &mut status as *mut i32 as usize, opts, 0, 0, 0) })?;
    Ok((r != 0).then_some((r as u32, status)))
}

/// The exit status a shell would report for a child's wait status: its exit code, or 128 plus
/// the signal that ended it.
pub fn shell_status(status: i32) -> i32 {
    let sig = status & 0x7f;
    if sig == 0 {
        (status >> 8) & 0xff
    } else {
        128 + sig
    }
}

/// `kill(pid, sig)` with a bare signal number (0: only whether `pid` exists). rustix's
/// `kill_process` takes a `Signal`, whose unchecked constructor forbids sending the numbers libc
/// keeps for itself; restarts pass on a program's own pending signals, whatever their number,
/// and the signal ckpt is told to use may be any. Named signals go through rustix.
pub fn kill(pid: u32, sig: u32) -> Result<(), Errno> {
    // SAFETY: sends a signal; no memory is involved.
    check(unsafe { syscall6(nr::KILL, pid as usize, sig as usize, 0, 0, 0, 0) }).map(drop)
}

/// `sigqueue(pid, sig, value)`: a signal to process `pid` carrying `value` (`si_code`
/// `SI_QUEUE`, with the sender's PID and UID, as glibc's `sigqueue` sends it).
pub fn sigqueue(pid: u32, sig: u32, value: u64) -> Result<(), Errno> {
    sigqueue_as(pid, sig, value, rustix::process::getpid().as_raw_nonzero().get() as u32)
}

/// [`sigqueue`] naming `sender` as the sending process (0 when passing on another's signal,
/// whose PID means nothing in the receiver's PID namespace).
pub fn sigqueue_as(pid: u32, sig: u32, value: u64, sender: u32) -> Result<(), Errno> {
    // The kernel's siginfo for SI_QUEUE: signo, errno, code, (padding), pid, uid, sigval.
    let mut info = [0u32; 32];
    info[0] = sig;
    info[2] = -1i32 as u32; // SI_QUEUE
    info[4] = sender;
    info[5] = rustix::process::getuid().as_raw();
    info[6] = value as u32;
    info[7] = (value >> 32) as u32;
    // SAFETY: the kernel reads the 128-byte siginfo, which outlives the call.
    check(unsafe { syscall6(nr::RT_SIGQUEUEINFO, pid as usize, sig as usize, info.as_ptr() as usize, 0, 0, 0) }).map(drop)
}

/// [`sigqueue`] to one thread `tid` of this process `pid` (`rt_tgsigqueueinfo`): `SI_QUEUE`,
/// this process as the sender, `value`.
pub fn tgsigqueue(pid: u32, tid: u32, sig: u32, value: u64) -> Result<(), Errno> {
    let mut info = [0u32; 32];
    info[0] = sig;
    info[2] = -1i32 as u32; // SI_QUEUE
    info[4] = rustix::process::getpid().as_raw_nonzero().get() as u32;
    info[5] = rustix::process::getuid().as_raw();
    info[6] = value as u32;
    info[7] = (value >> 32) as u32;
    // SAFETY: the kernel reads the 128-byte siginfo, which outlives the call.
    check(unsafe { syscall6(nr::RT_TGSIGQUEUEINFO, pid as usize, tid as usize, sig as usize, info.as_ptr() as usize, 0, 0) }).map(drop)
}

/// Queues signal `sig` again for thread `tid` of this process `pid`, with the `siginfo` it came
/// with (128 bytes at `info`). The kernel takes any `si_code` from a process for itself.
///
/// # Safety
/// `info` points at 128 readable bytes.
pub unsafe fn tgsigqueueinfo(pid: u32, tid: u32, sig: u32, info: *const u8) -> Result<(), Errno> {
    // SAFETY: the kernel reads 128 bytes at `info` (the caller's contract).
    check(unsafe { syscall6(nr::RT_TGSIGQUEUEINFO, pid as usize, tid as usize, sig as usize, info as usize, 0, 0) }).map(drop)
}

/// Queues signal `sig` as POSIX timer `timer` sends it when it expires (`si_code` `SI_TIMER`,
/// its ID, no overrun, its `sigev_value` `value`): to thread `tid` of process `pid`, or to the
/// process when `tid` is `None`. The kernel lets any process queue a siginfo whose code is
/// negative but `SI_TKILL`'s, as `SI_TIMER`'s is; it treats it as any queued signal (the
/// field it keeps for its own timers' signals is left zero).
pub fn queue_timer_signal(pid: u32, tid: Option<u32>, sig: u32, timer: i32, value: u64) -> Result<(), Errno> {
    // The kernel's siginfo for SI_TIMER: signo, errno, code, (padding), timer ID, overrun,
    // sigval, and the kernel's private word.
    let mut info = [0u32; 32];
    info[0] = sig;
    info[2] = k::SI_TIMER as u32;
    info[4] = timer as u32;
    info[6] = value as u32;
    info[7] = (value >> 32) as u32;
    let at = info.as_ptr() as usize;
    // SAFETY: the kernel reads the 128-byte siginfo, which outlives the call.
    let r = unsafe {
        match tid {
            Some(t) => syscall6(nr::RT_TGSIGQUEUEINFO, pid as usize, t as usize, sig as usize, at, 0, 0),
            None => syscall6(nr::RT_SIGQUEUEINFO, pid as usize, sig as usize, at, 0, 0, 0),
        }
    };
    check(r).map(drop)
}

/// `tgkill(pid, tid, sig)`: a signal to one thread.
pub fn tgkill(pid: u32, tid: u32, sig: u32) -> Result<(), Errno> {
    // SAFETY: sends a signal; no memory is involved.
    check(unsafe { syscall6(nr::TGKILL, pid as usize, tid as usize, sig as usize, 0, 0, 0) }).map(drop)
}

/// Whether a thread `tid` exists now, in any process (`tkill(tid, 0)`: only `ESRCH` says
/// none does).
pub fn thread_exists(tid: u32) -> bool {
    // SAFETY: signal 0 sends nothing; no memory is involved.
    check(unsafe { syscall6(nr::TKILL, tid as usize, 0, 0, 0, 0, 0) }) != Err(Errno::SRCH)
}

/// `prctl(PR_GET_NAME)`: the calling thread's name, NUL-padded.
pub fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: the kernel writes at most 16 bytes into `name`.
    let _ = unsafe { syscall6(nr::PRCTL, linux_raw_sys::prctl::PR_GET_NAME as usize, name.as_mut_ptr() as usize, 0, 0, 0, 0) };
    name
}

/// `timer_gettime(id)` as `[interval_sec, interval_nsec, value_sec, value_nsec]`.
pub fn timer_gettime(id: i32) -> Result<[i64; 4], Errno> {
    let mut v = [0i64; 4];
    // SAFETY: `v` has the layout of `struct itimerspec`.
    check(unsafe { syscall6(nr::TIMER_GETTIME, id as usize, v.as_mut_ptr() as usize, 0, 0, 0, 0) })?;
    Ok(v)
}

/// `timer_create(clock, sigevent, &id)` with `id` chosen by the caller when the process has
/// asked for that (`PR_TIMER_CREATE_RESTORE_IDS`). `notify` is `SIGEV_*`, `tid` the thread for
/// `SIGEV_THREAD_ID`. Returns the timer's ID.
pub fn timer_create_with(clock: i32, notify: u32, signo: u32, value: u64, tid: u32, id: i32) -> Result<i32, Errno> {
    // struct sigevent: sigev_value (8), sigev_signo (4), sigev_notify (4), then the union whose
    // first member is the thread ID for SIGEV_THREAD_ID.
    let mut sev = [0u8; 64];
    sev[..8].copy_from_slice(&value.to_ne_bytes());
    sev[8..12].copy_from_slice(&(signo as i32).to_ne_bytes());
    sev[12..16].copy_from_slice(&(notify as i32).to_ne_bytes());
    sev[16..20].copy_from_slice(&(tid as i32).to_ne_bytes());
    let mut out = id;
    // SAFETY: `sev` has the kernel's sigevent layout; the kernel reads and writes `out`.
    check(unsafe { syscall6(nr::TIMER_CREATE, clock as usize, sev.as_ptr() as usize, &mut out as *mut i32 as usize, 0, 0, 0) })?;
    Ok(out)
}

/// `timer_settime(id, 0, spec)` with a relative time.
pub fn timer_settime(id: i32, spec: &[i64; 4]) -> Result<(), Errno> {
    // SAFETY: `spec` is a struct itimerspec; no old value is requested.
    check(unsafe { syscall6(nr::TIMER_SETTIME, id as usize, 0, spec.as_ptr() as usize, 0, 0, 0) }).map(drop)
}

/// `timer_delete(id)`.
pub fn timer_delete(id: i32) {
    // SAFETY: deletes a timer of this process; no memory is involved.
    let _ = unsafe { syscall6(k::__NR_timer_delete as usize, id as usize, 0, 0, 0, 0, 0) };
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, on)`: whether `timer_create` takes the ID it is given.
pub fn timer_ids_chosen(on: bool) -> Result<(), Errno> {
    use linux_raw_sys::prctl as p;
    let arg = if on { p::PR_TIMER_CREATE_RESTORE_IDS_ON } else { p::PR_TIMER_CREATE_RESTORE_IDS_OFF };
    // SAFETY: a prctl without memory arguments.
    check(unsafe { syscall6(nr::PRCTL, p::PR_TIMER_CREATE_RESTORE_IDS as usize, arg as usize, 0, 0, 0, 0) }).map(drop)
}

/// How many `RLIMIT_*` resources there are (linux/resource.h).
pub const RLIM_NLIMITS: u32 = k::RLIM_NLIMITS;

/// `prlimit64(0, resource, new, &old)`: this process's `[soft, hard]` limit of `resource`,
/// after setting it to `new` if given.
pub fn prlimit(resource: u32, new: Option<[u64; 2]>) -> Result<[u64; 2], Errno> {
    let mut old = [0u64; 2];
    let new_ptr = new.as_ref().map_or(0, |n| n.as_ptr() as usize);
    // SAFETY: both pointers are null or point at `struct rlimit64` (two u64s) that outlive the call.
    check(unsafe { syscall6(nr::PRLIMIT64, 0, resource as usize, new_ptr, old.as_mut_ptr() as usize, 0, 0) })?;
    Ok(old)
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`, with the events exactly as recorded
/// (`EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE`, …).
pub fn epoll_add(epfd: i32, fd: i32, events: u32, data: u64) -> Result<(), Errno> {
    // struct epoll_event is packed on x86-64: events (4 bytes), then data (8 bytes).
    let mut ev = [0u8; 12];
    ev[..4].copy_from_slice(&events.to_ne_bytes());
    ev[4..].copy_from_slice(&data.to_ne_bytes());
    // SAFETY: the kernel reads 12 bytes of `ev`, which outlives the call.
    check(unsafe { syscall6(nr::EPOLL_CTL, epfd as usize, k::EPOLL_CTL_ADD as usize, fd as usize, ev.as_ptr() as usize, 0, 0) }).map(drop)
}

/// `getsockopt(fd, level, name)` into `buf`; returns the length the kernel wrote.
pub fn getsockopt_bytes(fd: i32, level: u32, name: u32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = buf.len() as u32;
    // SAFETY: the kernel writes at most `len` bytes into `buf` and the new length into `len`;
    // both outlive the call.
    check(unsafe {
        syscall6(nr::GETSOCKOPT, fd as usize, level as usize, name as usize, buf.as_mut_ptr() as usize, &mut len as *mut u32 as usize, 0)
    })?;
    Ok(len as usize)
}

/// An integer socket option (`SO_PEEK_OFF`, …) that `rustix` has no typed call for.
pub fn getsockopt_int(fd: i32, level: u32, name: u32) -> Result<i32, Errno> {
    let mut v = [0u8; 4];
    getsockopt_bytes(fd, level, name, &mut v)?;
    Ok(i32::from_ne_bytes(v))
}

pub fn setsockopt_int(fd: i32, level: u32, name: u32, value: i32) -> Result<(), Errno> {
    let v = value.to_ne_bytes();
    // SAFETY: the kernel reads 4 bytes of `v`, which outlives the call.
    check(unsafe { syscall6(nr::SETSOCKOPT, fd as usize, level as usize, name as usize, v.as_ptr() as usize, 4, 0) }).map(drop)
}

/// `ioctl(fd, TFD_IOC_SET_TICKS, &ticks)`: sets a timerfd's unread expirations (kernels built
/// with checkpoint/restore support).
pub fn timerfd_set_ticks(fd: i32, ticks: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads the u64, which outlives the call.
    check(unsafe { syscall6(nr::IOCTL, fd as usize, linux_raw_sys::ioctl::TFD_IOC_SET_TICKS as usize, &ticks as *const u64 as usize, 0, 0, 0) })
        .map(drop)
}

/// `ioctl(fd, SIOCOUTQNSD)`: bytes a TCP socket holds that it has not sent yet (the value is
/// `linux/sockios.h`'s, which `linux-raw-sys` does not carry).
pub fn bytes_not_sent(fd: i32) -> Result<u32, Errno> {
    const SIOCOUTQNSD: usize = 0x894b;
    let mut n = 0i32;
    // SAFETY: the kernel writes one int, which outlives the call.
    check(unsafe { syscall6(nr::IOCTL, fd as usize, SIOCOUTQNSD, &mut n as *mut i32 as usize, 0, 0, 0) })?;
    Ok(n as u32)
}

/// `ioctl(fd, SIOCOUTQ)`: bytes in a TCP socket's send queue, sent but not acknowledged or
/// not sent yet.
pub fn bytes_in_send_queue(fd: i32) -> Result<u32, Errno> {
    let mut n = 0i32;
    // SAFETY: the kernel writes one int, which outlives the call.
    check(unsafe { syscall6(nr::IOCTL, fd as usize, linux_raw_sys::ioctl::TIOCOUTQ as usize, &mut n as *mut i32 as usize, 0, 0, 0) })?;
    Ok(n as u32)
}

/// `ioctl(fd, FIONREAD)`: bytes waiting to be read (inotify events, socket data).
pub fn bytes_to_read(fd: i32) -> Result<u32, Errno> {
    let mut n = 0i32;
    // SAFETY: the kernel writes one int, which outlives the call.
    check(unsafe { syscall6(nr::IOCTL, fd as usize, linux_raw_sys::ioctl::FIONREAD as usize, &mut n as *mut i32 as usize, 0, 0, 0) })?;
    Ok(n as u32)
}
