//! Keeps checkpoints invisible to sleeps and waits.
//!
//! The checkpoint signal (and the signal that stops the other threads) interrupts whatever
//! system call a thread is in. `SA_RESTART` resumes most of them, but not the ones with a
//! timeout (`nanosleep`, `clock_nanosleep`, `poll`, `ppoll`, `select`, `pselect`,
//! `epoll_wait`, `epoll_pwait`): those fail with `EINTR`, and `sleep` returns early. The
//! kernel's own resumption of such calls (`restart_syscall`) is cancelled by `rt_sigreturn`
//! once any handler has run, so it cannot help.
//!
//! These functions are interposed (this library is preloaded): each calls libc's, and when it
//! fails with `EINTR` while one of ckpt's handlers ran during the call (the count of their runs
//! moved), calls it again for the time that was left: the time the kernel reports left
//! (`nanosleep`'s remainder, `select`'s updated timeout), or the deadline on `CLOCK_MONOTONIC`
//! taken at the call, never more than the time asked for. In a restored process the same
//! happens: its threads come back inside these calls, which then see the `EINTR` of the
//! checkpoint and go on.
//!
//! The masks that `ppoll`, `pselect` and `epoll_pwait` are given lose ckpt's signals on the
//! way (see `deliverable`); `sigwaits` does the same for the calls that wait for signals.
//!
//! The count moves in the thread a signal of ckpt's interrupts, in that signal's handler: the
//! checkpoint handler (in the thread that took the checkpoint signal) and the thread-stop
//! handler (in each other thread) both bump it as they start, before the call they cut short
//! returns. Counting the checkpoint once, when it began, was not enough: a thread that entered
//! its call after that but before its stop signal came read the count already moved, and then
//! saw the stop signal's `EINTR` as its own. A thread stopped with ptrace instead (one that
//! blocks the stop signal: `checkpoint::seize`) runs no handler, so the coordinator counts
//! once more when every thread is stopped: restored, the call such a thread was in (perhaps
//! entered after every other count) returns `EINTR` with the count moved since.
//!
//! A checkpoint signal sent to the process wakes one thread of the kernel's choosing, and
//! another thread may take it first: the woken thread's wait (`epoll_wait`, `sigtimedwait`…)
//! then ends in `EINTR` though no handler ran in it, perhaps before the other thread's handler
//! has counted itself. So an `EINTR` that comes while a checkpoint runs in some thread
//! (`crate::turn`, which also counts a checkpoint signal still pending as it ends) is taken for
//! a checkpoint's too.
//!
//! A signal of the program's own that arrives during the same call still ends it with `EINTR`
//! unless one of ckpt's arrived in some thread in the same instant, or a checkpoint is under
//! way. Calls made with `syscall(2)` directly, and libc's internal calls, are not covered.
//!
//! Ordinary context (not signal-safe, not called from the handlers); [`bump`] is the handlers'
//! only use of this module (one atomic addition).

use core::ffi::{c_int, c_long, c_uint};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Runs of ckpt's handlers (checkpoint and thread stop) so far in this process.
static CHECKPOINTS: AtomicU64 = AtomicU64::new(0);

/// Said by ckpt's checkpoint handler and thread-stop handler as each starts, in the thread the
/// signal interrupted: the call that thread was in sees the count moved when it returns.
pub fn bump() {
    CHECKPOINTS.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn count() -> u64 {
    CHECKPOINTS.load(Ordering::SeqCst)
}

pub(crate) fn errno() -> c_int {
    // SAFETY: libc's thread-local errno, always valid to read.
    unsafe { *libc::__errno_location() }
}

fn now_ns() -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

fn ts_ns(t: &libc::timespec) -> i128 {
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

fn ns_ts(ns: i128) -> libc::timespec {
    let ns = ns.max(0);
    libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as c_long }
}

/// A timeout given when the call began, as a deadline: what is left of it now, between zero
/// and the whole of it (a restored process may find its clock anywhere).
struct Deadline {
    at: i128,
    whole: i128,
}

impl Deadline {
    fn new(whole_ns: i128) -> Deadline {
        Deadline { at: now_ns() + whole_ns, whole: whole_ns }
    }
    fn left_ns(&self) -> i128 {
        (self.at - now_ns()).clamp(0, self.whole)
    }
    fn left_ms(&self) -> c_int {
        // Rounded up, so that a wait does not end before its time.
        ((self.left_ns() + 999_999) / 1_000_000).min(c_int::MAX as i128) as c_int
    }
}

/// Where libc's definitions are, looked up once (by [`prepare`], from the constructor).
static NANOSLEEP: AtomicUsize = AtomicUsize::new(0);
static CLOCK_NANOSLEEP: AtomicUsize = AtomicUsize::new(0);
static POLL: AtomicUsize = AtomicUsize::new(0);
static PPOLL: AtomicUsize = AtomicUsize::new(0);
static SELECT: AtomicUsize = AtomicUsize::new(0);
static PSELECT: AtomicUsize = AtomicUsize::new(0);
static EPOLL_WAIT: AtomicUsize = AtomicUsize::new(0);
static EPOLL_PWAIT: AtomicUsize = AtomicUsize::new(0);

/// libc's definition of `name`, cached in `slot`.
macro_rules! real {
    ($slot:ident, $name:literal, $ty:ty) => {{
        let f = crate::guard::real(&$slot, $name);
        // SAFETY: the next definition of this libc function, whose type is `$ty`.
        unsafe { core::mem::transmute::<usize, $ty>(f) }
    }};
}

/// Whether a call that began at count `before` and failed with `errno` should go on: it was
/// interrupted, and one of ckpt's handlers ran meanwhile (in this thread, or in another at the
/// same moment), or a checkpoint is under way.
pub(crate) fn interrupted_by_checkpoint(before: &mut u64) -> bool {
    let now = count();
    if errno() == libc::EINTR && checkpoint_since(*before, now) {
        *before = now;
        return true;
    }
    false
}

/// Whether an `EINTR` of a call that began at count `before` (`now` since) is a checkpoint's:
/// a handler of ckpt's ran meanwhile, or a checkpoint runs in some thread now. The second is
/// for a checkpoint signal the kernel sent this thread out of its wait for, which another
/// thread then took: the call ends with no handler run here, and perhaps before the other
/// thread's has counted itself (see `crate::turn`).
fn checkpoint_since(before: u64, now: u64) -> bool {
    now != before || crate::turn::under_way()
}

/// Calls `call` with a timeout in milliseconds (`timeout`, negative for none), and again with
/// what is left of it each time a checkpoint cut it short.
fn with_ms_timeout(timeout: c_int, mut call: impl FnMut(c_int) -> c_int) -> c_int {
    let mut before = count();
    let deadline = (timeout > 0).then(|| Deadline::new(timeout as i128 * 1_000_000));
    let mut ms = timeout;
    loop {
        let r = call(ms);
        if r >= 0 || !interrupted_by_checkpoint(&mut before) {
            return r;
        }
        if let Some(d) = &deadline {
            ms = d.left_ms();
        }
    }
}

/// The same for a call that takes its timeout as a `timespec` it does not change (null for
/// none).
pub(crate) fn with_ts_timeout(timeout: *const libc::timespec, mut call: impl FnMut(*const libc::timespec) -> c_int) -> c_int {
    let mut before = count();
    // SAFETY: the caller's timeout, when not null, is a valid timespec.
    let deadline = (!timeout.is_null()).then(|| Deadline::new(ts_ns(unsafe { &*timeout })));
    let mut ts = deadline.as_ref().map(|d| ns_ts(d.whole));
    loop {
        let t = ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec);
        let r = call(t);
        if r >= 0 || !interrupted_by_checkpoint(&mut before) {
            return r;
        }
        ts = deadline.as_ref().map(|d| ns_ts(d.left_ns()));
    }
}

type NanosleepFn = unsafe extern "C" fn(*const libc::timespec, *mut libc::timespec) -> c_int;
type ClockNanosleepFn = unsafe extern "C" fn(libc::clockid_t, c_int, *const libc::timespec, *mut libc::timespec) -> c_int;
type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
type PpollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, *const libc::timespec, *const libc::sigset_t) -> c_int;
type SelectFn = unsafe extern "C" fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *mut libc::timeval) -> c_int;
type PselectFn =
    unsafe extern "C" fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *const libc::timespec, *const libc::sigset_t) -> c_int;
type EpollWaitFn = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int;
type EpollPwaitFn = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int;

/// # Safety
/// As libc's `nanosleep`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    let f = real!(NANOSLEEP, c"nanosleep", NanosleepFn);
    let mut before = count();
    if req.is_null() {
        // SAFETY: the caller's arguments, passed on (libc reports the error).
        return unsafe { f(req, rem) };
    }
    // SAFETY: the caller passes a valid timespec.
    let mut want = unsafe { *req };
    loop {
        let mut left = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid timespecs of ours.
        let r = unsafe { f(&want, &mut left) };
        if r == 0 || !interrupted_by_checkpoint(&mut before) {
            if r != 0 && !rem.is_null() {
                // SAFETY: the caller's remainder pointer, not null.
                unsafe { *rem = left };
            }
            return r;
        }
        want = left;
    }
}

/// # Safety
/// As libc's `clock_nanosleep`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    let f = real!(CLOCK_NANOSLEEP, c"clock_nanosleep", ClockNanosleepFn);
    let mut before = count();
    if req.is_null() {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { f(clock, flags, req, rem) };
    }
    // SAFETY: the caller passes a valid timespec.
    let mut want = unsafe { *req };
    loop {
        let mut left = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid timespecs of ours.
        let r = unsafe { f(clock, flags, &want, &mut left) };
        // clock_nanosleep returns the error number instead of setting errno.
        let again = r == libc::EINTR && checkpoint_since(before, count());
        if !again {
            if r == libc::EINTR && !rem.is_null() && flags & libc::TIMER_ABSTIME == 0 {
                // SAFETY: the caller's remainder pointer, not null.
                unsafe { *rem = left };
            }
            return r;
        }
        before = count();
        if flags & libc::TIMER_ABSTIME == 0 {
            want = left;
        }
    }
}

/// # Safety
/// As libc's `usleep`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn usleep(us: libc::useconds_t) -> c_int {
    let ts = libc::timespec { tv_sec: (us / 1_000_000) as libc::time_t, tv_nsec: (us % 1_000_000) as c_long * 1000 };
    // SAFETY: a valid timespec of ours, no remainder wanted.
    unsafe { nanosleep(&ts, core::ptr::null_mut()) }
}

/// # Safety
/// As libc's `sleep`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    let ts = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: 0 };
    let mut left = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespecs of ours.
    if unsafe { nanosleep(&ts, &mut left) } == 0 {
        return 0;
    }
    // Interrupted by a signal of the program's: the seconds left, rounded as glibc does.
    (left.tv_sec + (left.tv_nsec >= 500_000_000) as libc::time_t) as c_uint
}

/// # Safety
/// As libc's `poll`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let f = real!(POLL, c"poll", PollFn);
    // SAFETY: the caller's array, passed on.
    with_ms_timeout(timeout, |ms| unsafe { f(fds, n, ms) })
}

/// # Safety
/// As libc's `ppoll`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ppoll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int {
    let f = real!(PPOLL, c"ppoll", PpollFn);
    // SAFETY: the caller's mask, valid when not null.
    let (mask, _) = unsafe { crate::deliverable::without_ours(mask) };
    let mask = crate::deliverable::ptr(&mask);
    // SAFETY: the caller's array, our copy of its mask, and a valid timespec (or null).
    with_ts_timeout(timeout, |t| unsafe { f(fds, n, t, mask) })
}

/// # Safety
/// As libc's `select`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn select(n: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, timeout: *mut libc::timeval) -> c_int {
    let f = real!(SELECT, c"select", SelectFn);
    let mut before = count();
    loop {
        // The sets are left as they were when the call fails, and Linux writes the time left
        // into `timeout`: calling again with the same arguments goes on where it was.
        // SAFETY: the caller's arguments, passed on.
        let ret = unsafe { f(n, r, w, e, timeout) };
        if ret >= 0 || !interrupted_by_checkpoint(&mut before) {
            return ret;
        }
    }
}

/// # Safety
/// As libc's `pselect`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pselect(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let f = real!(PSELECT, c"pselect", PselectFn);
    // SAFETY: the caller's mask, valid when not null.
    let (mask, _) = unsafe { crate::deliverable::without_ours(mask) };
    let mask = crate::deliverable::ptr(&mask);
    // SAFETY: the caller's sets, our copy of its mask, and a valid timespec (or null).
    with_ts_timeout(timeout, |t| unsafe { f(n, r, w, e, t, mask) })
}

/// # Safety
/// As libc's `epoll_wait`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn epoll_wait(ep: c_int, events: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int {
    let f = real!(EPOLL_WAIT, c"epoll_wait", EpollWaitFn);
    // SAFETY: the caller's arguments, passed on.
    with_ms_timeout(timeout, |ms| unsafe { f(ep, events, max, ms) })
}

/// # Safety
/// As libc's `epoll_pwait`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn epoll_pwait(ep: c_int, events: *mut libc::epoll_event, max: c_int, timeout: c_int, mask: *const libc::sigset_t) -> c_int {
    let f = real!(EPOLL_PWAIT, c"epoll_pwait", EpollPwaitFn);
    // SAFETY: the caller's mask, valid when not null.
    let (mask, _) = unsafe { crate::deliverable::without_ours(mask) };
    let mask = crate::deliverable::ptr(&mask);
    // SAFETY: the caller's arguments, with our copy of its mask.
    with_ms_timeout(timeout, |ms| unsafe { f(ep, events, max, ms, mask) })
}

/// Resolves libc's functions now, from the constructor, so that the first call of each does
/// not look it up.
pub fn prepare() {
    for (slot, name) in [
        (&NANOSLEEP, c"nanosleep"),
        (&CLOCK_NANOSLEEP, c"clock_nanosleep"),
        (&POLL, c"poll"),
        (&PPOLL, c"ppoll"),
        (&SELECT, c"select"),
        (&PSELECT, c"pselect"),
        (&EPOLL_WAIT, c"epoll_wait"),
        (&EPOLL_PWAIT, c"epoll_pwait"),
    ] {
        crate::guard::real(slot, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_never_gives_more_than_was_asked_or_less_than_nothing() {
        let d = Deadline { at: now_ns() + 5_000_000, whole: 5_000_000 };
        assert!(d.left_ns() <= 5_000_000 && d.left_ns() > 0);
        assert!(d.left_ms() <= 5 && d.left_ms() >= 1);
        let past = Deadline { at: now_ns() - 1, whole: 5_000_000 };
        assert_eq!(past.left_ns(), 0);
        // A clock that went back (another boot) gives at most the whole timeout.
        let far = Deadline { at: now_ns() + 1_000_000_000_000, whole: 5_000_000 };
        assert_eq!(far.left_ns(), 5_000_000);
        assert_eq!(ns_ts(1_500_000_000).tv_sec, 1);
        assert_eq!(ns_ts(-3).tv_nsec, 0);
    }
}
