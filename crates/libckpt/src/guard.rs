//! The program's `sigaction` and `signal`, and its signal masks.
//!
//! `sigaction` and `signal` are interposed (this library is preloaded, so the program's calls
//! reach these first). For ckpt's two signals (the checkpoint signal and the thread-stop
//! signal) the program's action is recorded by [`crate::actions`] and read back as if it were
//! installed, while libckpt's handler stays in the kernel and passes the program's signals on to
//! it: a program that needs these signals for itself (the JVM uses `SIGUSR2`, a Go program built
//! with cgo takes every signal) keeps them, and is checkpointed all the same.
//!
//! `sigprocmask`, `pthread_sigmask` and `sigaction` pass the masks they are given through
//! [`crate::deliverable`], which keeps ckpt's signals out of them.

use crate::config;
use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static REAL_PTHREAD_SIGMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGPROCMASK: AtomicUsize = AtomicUsize::new(0);

type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

unsafe extern "C" {
    /// `dlsym` at its first version, which every glibc has: in libdl.so.2 before glibc 2.34
    /// (libckpt.so names that library, see build.rs), in libc.so.6 since. Linked by plain name
    /// it would need version GLIBC_2.34 and not load on older systems.
    #[link_name = "dlsym@GLIBC_2.2.5"]
    fn dlsym_v1(handle: *mut core::ffi::c_void, name: *const core::ffi::c_char) -> *mut core::ffi::c_void;
}

/// `dlsym(handle, name)`.
pub fn dlsym(handle: *mut core::ffi::c_void, name: &core::ffi::CStr) -> *mut core::ffi::c_void {
    // SAFETY: dlsym only looks a symbol up; the name is NUL-terminated.
    unsafe { dlsym_v1(handle, name.as_ptr()) }
}

/// Looks up the next definition of `name` (libc's), once.
pub fn real(cache: &AtomicUsize, name: &core::ffi::CStr) -> usize {
    let mut f = cache.load(Ordering::Relaxed);
    if f == 0 {
        f = dlsym(libc::RTLD_NEXT, name) as usize;
        cache.store(f, Ordering::Relaxed);
    }
    f
}

/// Resolves libc's functions now, from the constructor, so that later calls (which may come
/// from signal handlers: `sigaction` is async-signal-safe) need no lookup.
pub fn prepare() {
    real(&REAL_SIGACTION, c"sigaction");
    real(&REAL_SIGNAL, c"signal");
    real(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask");
    real(&REAL_SIGPROCMASK, c"sigprocmask");
}

/// libckpt's handler `handler` becomes the thread-stop signal's (constructor only).
pub fn set_stop_handler(handler: usize) -> bool {
    let ok = crate::actions::take(crate::actions::STOP, crate::stop::STOP_SIGNAL, handler, real(&REAL_SIGACTION, c"sigaction"));
    if ok {
        crate::deliverable::set_stop_signal(crate::stop::STOP_SIGNAL);
        if crate::actions::program_handles(crate::actions::STOP) {
            crate::deliverable::taken(crate::stop::STOP_SIGNAL);
        }
    }
    ok
}

/// libckpt's handler `handler` becomes the checkpoint signal's (constructor only).
pub fn set_our_handler(handler: usize) -> bool {
    let sig = config::get().signal;
    let ok = crate::actions::take(crate::actions::CHECKPOINT, sig, handler, real(&REAL_SIGACTION, c"sigaction"));
    if ok {
        crate::deliverable::set_checkpoint_signal(sig);
        // A handler installed before this library's constructor ran (another library's).
        if crate::actions::program_handles(crate::actions::CHECKPOINT) {
            crate::deliverable::taken(sig);
        }
    }
    ok
}

/// The slot of `sig` in [`crate::actions`] if it is one of ckpt's signals, as this process sets
/// it. A `vfork` child, which shares the program's memory but has its own actions, resets its
/// handlers before it runs another program: that is not the program's doing, and goes to the
/// kernel as it is.
fn ckpt_slot(sig: c_int) -> Option<usize> {
    crate::actions::slot(sig).filter(|_| config::in_own_memory())
}

/// `sigaction(2)`, as the program calls it.
///
/// # Safety
/// As for libc's `sigaction`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    if let Some(i) = ckpt_slot(sig) {
        // SAFETY: act and old are null or the caller's valid sigactions.
        return match unsafe { crate::actions::sigaction(i, act, old) } {
            Ok(()) => 0,
            Err(e) => {
                // SAFETY: libc's thread-local errno.
                unsafe { *libc::__errno_location() = e.raw_os_error() };
                -1
            }
        };
    }
    let f = real(&REAL_SIGACTION, c"sigaction");
    if f == 0 {
        return -1;
    }
    let was_asked = crate::deliverable::handler_asked(sig);
    // The handler's mask without ckpt's signals (see `deliverable`).
    // SAFETY: act is null or the caller's valid sigaction.
    let copy = unsafe { crate::deliverable::handler_mask(sig, act) };
    let given = copy.as_ref().map_or(act, |c| c as *const libc::sigaction);
    // SAFETY: f is libc's sigaction, called with the caller's arguments or our copy of act.
    let r = unsafe { core::mem::transmute::<usize, SigactionFn>(f)(sig, given, old) };
    if r == 0 {
        // SAFETY: old is null or the sigaction libc just wrote.
        unsafe { crate::deliverable::show_handler_mask(old, was_asked) };
    }
    r
}

/// `signal(3)`, as the program calls it (libc's `signal` does not go through `sigaction`'s
/// public symbol, so it needs its own door).
///
/// # Safety
/// As for libc's `signal`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if let Some(i) = ckpt_slot(sig) {
        // What the C library's `signal` installs: BSD semantics (SA_RESTART), the signal itself
        // blocked in its handler.
        // SAFETY: a zeroed sigaction is valid; its mask is a valid sigset_t.
        let mut act: libc::sigaction = unsafe { core::mem::zeroed() };
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: as above.
        unsafe { libc::sigaddset(&mut act.sa_mask, sig) };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: both are valid sigactions of ours.
        return match unsafe { crate::actions::sigaction(i, &act, &mut old) } {
            Ok(()) => old.sa_sigaction,
            Err(_) => libc::SIG_ERR,
        };
    }
    let f = real(&REAL_SIGNAL, c"signal");
    if f == 0 {
        return libc::SIG_ERR;
    }
    // SAFETY: f is libc's signal, called with the caller's arguments.
    unsafe { core::mem::transmute::<usize, SignalFn>(f)(sig, handler) }
}

/// `pthread_sigmask(3)`, as the program calls it (see `deliverable`).
///
/// # Safety
/// As for libc's `pthread_sigmask`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_sigmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    // SAFETY: as the caller's contract.
    unsafe { crate::deliverable::set_mask(real(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask"), how, set, old) }
}

/// `sigprocmask(2)`, as the program calls it (see `deliverable`).
///
/// # Safety
/// As for libc's `sigprocmask`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigprocmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    // SAFETY: as the caller's contract.
    let r = unsafe { crate::deliverable::set_mask(real(&REAL_SIGPROCMASK, c"sigprocmask"), how, set, old) };
    // sigprocmask reports its errors in errno (pthread_sigmask returns them).
    if r > 0 {
        // SAFETY: libc's thread-local errno.
        unsafe { *libc::__errno_location() = r };
        return -1;
    }
    r
}
