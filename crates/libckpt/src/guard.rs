//! Notices when the program takes the checkpoint signal for itself.
//!
//! `sigaction` and `signal` are interposed (this library is preloaded, so the program's calls
//! reach these first). A program that installs its own handler for the checkpoint signal (the
//! JVM uses SIGUSR2 for its own purposes, for one) keeps it, since it needs it: checkpoints are
//! then disabled, the program is told once on stderr, the periodic timer is stopped, and a
//! marker mapping (`/memfd:ckpt-signal-taken`) shows in `/proc/PID/maps`, so that
//! `ckpt checkpoint` refuses to send a signal that would now reach the program's handler.
//!
//! `sigprocmask`, `pthread_sigmask` and `sigaction` pass the masks they are given through
//! [`crate::deliverable`], which keeps ckpt's signals out of them.

use crate::config;
use ckpt_sigsafe::say;
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The name the marker mapping carries.
pub const MARKER: &core::ffi::CStr = c"ckpt-signal-taken";

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);
/// Our handler's address, once installed.
static OUR_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The kernel timer of periodic checkpoints, if any, as its ID + 1 (0: none).
pub static TIMER: AtomicUsize = AtomicUsize::new(0);
static TAKEN: AtomicBool = AtomicBool::new(false);
/// Our handler for the thread-stop signal, once installed.
static STOP_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The program installed its own handler for the thread-stop signal.
static STOP_TAKEN: AtomicBool = AtomicBool::new(false);
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

pub fn set_stop_handler(addr: usize) {
    STOP_HANDLER.store(addr, Ordering::Relaxed);
    crate::deliverable::set_stop_signal(crate::stop::STOP_SIGNAL);
}

/// Whether the program took the thread-stop signal for itself (then only single-threaded
/// checkpoints can be taken: the signal would reach the program's handler).
pub fn stop_signal_taken() -> bool {
    STOP_TAKEN.load(Ordering::Relaxed)
}

pub fn set_our_handler(addr: usize) {
    OUR_HANDLER.store(addr, Ordering::Relaxed);
    crate::deliverable::set_checkpoint_signal(config::get().signal);
}

fn note_new_handler(sig: c_int, handler: usize) {
    // A `vfork` child resets the handlers of the memory it shares with the program before it
    // runs another program: not the program taking the signal.
    if !config::in_own_memory() {
        return;
    }
    let stop = STOP_HANDLER.load(Ordering::Relaxed);
    if stop != 0 && sig == crate::stop::STOP_SIGNAL && handler != stop && !STOP_TAKEN.swap(true, Ordering::Relaxed) {
        crate::deliverable::set_stop_signal(0);
        say!("ckpt: the program installed its own handler for signal {sig}, which ckpt uses to stop threads; it keeps it, and checkpoints of this program are refused while it has more than one thread");
    }
    let ours = OUR_HANDLER.load(Ordering::Relaxed);
    if ours == 0 || sig != config::get().signal || handler == ours || TAKEN.swap(true, Ordering::Relaxed) {
        return;
    }
    crate::deliverable::set_checkpoint_signal(0);
    say!(
        "ckpt: the program installed its own handler for signal {sig}, the checkpoint signal; checkpoints are disabled (choose another signal with CKPT_SIGNAL or `ckpt run --signal`)"
    );
    let timer = TIMER.swap(0, Ordering::Relaxed);
    if timer != 0 {
        // The interval timer, created by us (kept as its ID + 1), deleted once.
        ckpt_sigsafe::sys::timer_delete((timer - 1) as i32);
    }
    // SAFETY: memfd_create, ftruncate, mmap and close on objects we own; the mapping is never
    // unmapped, so that /proc/PID/maps keeps showing it.
    unsafe {
        let fd = libc::memfd_create(MARKER.as_ptr(), libc::MFD_CLOEXEC);
        if fd >= 0 {
            if libc::ftruncate(fd, 4096) == 0 {
                libc::mmap(core::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0);
            }
            libc::close(fd);
        }
    }
}

/// `sigaction(2)`, as the program calls it.
///
/// # Safety
/// As for libc's `sigaction`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let mut ours_handler = false;
    if !act.is_null() {
        // SAFETY: the caller passes a valid sigaction when act is not null.
        let handler = unsafe { (*act).sa_sigaction };
        note_new_handler(sig, handler);
        ours_handler = handler != 0 && (handler == OUR_HANDLER.load(Ordering::Relaxed) || handler == STOP_HANDLER.load(Ordering::Relaxed));
    }
    let f = real(&REAL_SIGACTION, c"sigaction");
    if f == 0 {
        return -1;
    }
    let was_asked = crate::deliverable::handler_asked(sig);
    // The handler's mask without ckpt's signals (see `deliverable`).
    // SAFETY: act is null or the caller's valid sigaction.
    let copy = unsafe { crate::deliverable::handler_mask(sig, act, ours_handler) };
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
    note_new_handler(sig, handler);
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
