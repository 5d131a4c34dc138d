//! The calls that wait for signals, or read them from a descriptor: `sigsuspend`, `sigwait`,
//! `sigwaitinfo`, `sigtimedwait`, `signalfd`, and `epoll_pwait2` (a wait with a mask).
//!
//! Each hands libc its set without ckpt's signals (see `deliverable`): a thread suspended
//! with every signal blocked still takes a checkpoint, and a thread waiting for every signal
//! never takes ckpt's signal as one of its own. ckpt's handlers then interrupt the wait, which
//! fails with `EINTR`; as in `invisible`, a wait cut short by a checkpoint (the count of their
//! runs moved) is made again, for the time that was left, so the program does not see it. (`sigwait` needs no such loop: libc's waits again by itself.)
//!
//! A program that waits for the checkpoint signal without a handler of its own (with
//! `sigwait` or a `signalfd`) no longer receives it: it takes checkpoints instead, and to keep
//! the signal for itself it runs with another checkpoint signal (`ckpt run --signal`).
//!
//! Ordinary context (not signal-safe, not called from the handler).

use crate::deliverable::{ptr, without_ours};
use crate::invisible::{count, interrupted_by_checkpoint, with_ts_timeout};
use core::ffi::c_int;
use core::sync::atomic::AtomicUsize;

static SIGSUSPEND: AtomicUsize = AtomicUsize::new(0);
static SIGWAIT: AtomicUsize = AtomicUsize::new(0);
static SIGWAITINFO: AtomicUsize = AtomicUsize::new(0);
static SIGTIMEDWAIT: AtomicUsize = AtomicUsize::new(0);
static SIGNALFD: AtomicUsize = AtomicUsize::new(0);
static EPOLL_PWAIT2: AtomicUsize = AtomicUsize::new(0);

type SigsuspendFn = unsafe extern "C" fn(*const libc::sigset_t) -> c_int;
type SigwaitFn = unsafe extern "C" fn(*const libc::sigset_t, *mut c_int) -> c_int;
type SigwaitinfoFn = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> c_int;
type SigtimedwaitFn = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t, *const libc::timespec) -> c_int;
type SignalfdFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, c_int) -> c_int;
type EpollPwait2Fn = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, *const libc::timespec, *const libc::sigset_t) -> c_int;

/// libc's definition of `name` (cached in `slot`), or None where this libc has none.
macro_rules! real_or_none {
    ($slot:ident, $name:literal, $ty:ty) => {{
        let f = crate::guard::real(&$slot, $name);
        // SAFETY: a non-zero address is the next definition of this libc function, of type `$ty`.
        (f != 0).then(|| unsafe { core::mem::transmute::<usize, $ty>(f) })
    }};
}

/// Fails as libc does for a function it does not have.
fn missing() -> c_int {
    // SAFETY: libc's thread-local errno.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// # Safety
/// As libc's `sigsuspend`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigsuspend(mask: *const libc::sigset_t) -> c_int {
    let Some(f) = real_or_none!(SIGSUSPEND, c"sigsuspend", SigsuspendFn) else { return missing() };
    // SAFETY: the caller's mask, valid when not null.
    let (copy, _) = unsafe { without_ours(mask) };
    let mask = ptr(&copy);
    let mut before = count();
    loop {
        // SAFETY: our copy of the caller's mask (or its null, which libc reports).
        let r = unsafe { f(mask) };
        // sigsuspend always ends with EINTR: after the checkpoint's handler alone, it goes on.
        if !interrupted_by_checkpoint(&mut before) {
            return r;
        }
    }
}

/// # Safety
/// As libc's `sigwait`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut c_int) -> c_int {
    let Some(f) = real_or_none!(SIGWAIT, c"sigwait", SigwaitFn) else { return libc::ENOSYS };
    // SAFETY: the caller's set, valid when not null.
    let (copy, _) = unsafe { without_ours(set) };
    // SAFETY: our copy of the caller's set, and its pointer for the signal.
    unsafe { f(ptr(&copy), sig) }
}

/// # Safety
/// As libc's `sigwaitinfo`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
    let Some(f) = real_or_none!(SIGWAITINFO, c"sigwaitinfo", SigwaitinfoFn) else { return missing() };
    // SAFETY: the caller's set, valid when not null.
    let (copy, _) = unsafe { without_ours(set) };
    let set = ptr(&copy);
    let mut before = count();
    loop {
        // SAFETY: our copy of the caller's set, and its pointer for the signal's information.
        let r = unsafe { f(set, info) };
        if r >= 0 || !interrupted_by_checkpoint(&mut before) {
            return r;
        }
    }
}

/// # Safety
/// As libc's `sigtimedwait`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigtimedwait(set: *const libc::sigset_t, info: *mut libc::siginfo_t, timeout: *const libc::timespec) -> c_int {
    let Some(f) = real_or_none!(SIGTIMEDWAIT, c"sigtimedwait", SigtimedwaitFn) else { return missing() };
    // SAFETY: the caller's set, valid when not null.
    let (copy, _) = unsafe { without_ours(set) };
    let set = ptr(&copy);
    // SAFETY: our copy of the caller's set, its pointer for the information, a valid timespec
    // (or null).
    with_ts_timeout(timeout, |t| unsafe { f(set, info, t) })
}

/// # Safety
/// As libc's `signalfd`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn signalfd(fd: c_int, mask: *const libc::sigset_t, flags: c_int) -> c_int {
    let Some(f) = real_or_none!(SIGNALFD, c"signalfd", SignalfdFn) else { return missing() };
    // SAFETY: the caller's mask, valid when not null.
    let (copy, _) = unsafe { without_ours(mask) };
    // SAFETY: the caller's descriptor and flags, our copy of its mask.
    unsafe { f(fd, ptr(&copy), flags) }
}

/// # Safety
/// As libc's `epoll_pwait2` (glibc 2.35 and later).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn epoll_pwait2(ep: c_int, events: *mut libc::epoll_event, max: c_int, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int {
    let Some(f) = real_or_none!(EPOLL_PWAIT2, c"epoll_pwait2", EpollPwait2Fn) else { return missing() };
    // SAFETY: the caller's mask, valid when not null.
    let (copy, _) = unsafe { without_ours(mask) };
    let mask = ptr(&copy);
    // SAFETY: the caller's arguments, our copy of its mask, a valid timespec (or null).
    with_ts_timeout(timeout, |t| unsafe { f(ep, events, max, t, mask) })
}

/// Resolves libc's functions now, from the constructor.
pub fn prepare() {
    for (slot, name) in [
        (&SIGSUSPEND, c"sigsuspend"),
        (&SIGWAIT, c"sigwait"),
        (&SIGWAITINFO, c"sigwaitinfo"),
        (&SIGTIMEDWAIT, c"sigtimedwait"),
        (&SIGNALFD, c"signalfd"),
        (&EPOLL_PWAIT2, c"epoll_pwait2"),
    ] {
        crate::guard::real(slot, name);
    }
}
