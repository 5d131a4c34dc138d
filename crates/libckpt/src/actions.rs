//! The program's own actions for ckpt's two signals (the checkpoint signal and the thread-stop
//! signal), and the choice libckpt's handlers make on each delivery between a request of
//! ckpt's and a signal for the program.
//!
//! libckpt's handlers stay installed in the kernel for both signals, whatever the program
//! installs: a Go program built with cgo installs a handler for every signal, and the JVM uses
//! `SIGUSR2` to suspend its threads. The action the program sets through `sigaction` or
//! `signal` (interposed by `guard`) is recorded here and read back by the program as if it
//! were installed; the kernel gets libckpt's handler with what of the program's flags matters
//! on delivery: `SA_ONSTACK` (Go runs its handlers on each thread's alternate stack, and
//! refuses to run on any other), and `SA_RESTART` as the program asked for it (without it, a
//! system call a checkpoint interrupts may return `EINTR`, as the program's own signal would
//! make it). Its mask blocks every signal, so that none of the program's handlers runs in the
//! middle of a checkpoint; a signal passed on to the program's handler gets the mask the
//! kernel would have given it.
//!
//! On delivery the handler tells ckpt's requests by their `siginfo`: a checkpoint signal sent
//! with `sigqueue` and one of ckpt's values (`ckpt checkpoint`, `ckpt job`, a tree root's
//! request), a tick of libckpt's periodic timer; a thread-stop signal queued by libckpt itself.
//! Any other is the program's: its handler is called as the kernel would call it (with the
//! `siginfo` and `ucontext` for `SA_SIGINFO`, its `sa_mask` and, unless `SA_NODEFER`, the signal
//! itself blocked meanwhile, `SA_RESETHAND` honoured). A plain checkpoint signal (`kill -12`) to
//! a program that has no handler of its own for it (the default action, or ignored) is a
//! checkpoint, as it always was; a thread-stop signal that is not libckpt's and meets the
//! default action ends the process, as it would have (unless the thread asked to block it: it
//! is dropped then).
//!
//! Once the program installs a handler of its own for one of these signals, the masks it sets
//! reach the kernel as they are (`deliverable::taken`): the kernel holds its signals while it
//! blocks them, and ckpt's requests too (`ckpt checkpoint` delivers one with `ptrace` to a
//! program that blocks the signal in every thread; should a signal of the program's be pending
//! in that thread, that one is delivered in its place, and the handler takes the checkpoint and
//! queues the program's signal again, still blocked).
//!
//! Not covered: `SA_RESTART` for a checkpoint when the program's handler for one of these
//! signals lacks it (above: a checkpoint, or a thread's stop for one, may then end a system call
//! with `EINTR`); a request sent while a signal of the program's of the same
//! (non-real-time) number is pending for the process, which the kernel merges into it; a thread
//! that blocked the signal before the program installed its handler (but the one installing it)
//! has it unblocked; actions set past libc (`rt_sigaction` made directly), or with `sigset`,
//! `bsd_signal` or `sysv_signal`, which call the kernel inside libc.
//!
//! # Signal-safety fence
//! [`pass_on_checkpoint_signal`], [`pass_on_stop_signal`], [`queue_again`] and what they call
//! run in signal handlers; the recording side runs in the program's `sigaction`, which may
//! itself be called from a handler. All of it uses atomics and raw system calls only
//! (`rt_sigaction`, `rt_sigprocmask`, `rt_tgsigqueueinfo`, `tgkill`): no libc, no allocation,
//! no lock. Only [`take`], in the constructor, calls the C library (its `sigaction`, once).

use core::ffi::{c_int, c_void};
use core::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering::*};
use ckpt_sigsafe::sys;

/// The kernel's flag for an action that names its own return code (the C library's).
const SA_RESTORER: u64 = linux_raw_sys::general::SA_RESTORER as u64;

/// Slot of the checkpoint signal.
pub const CHECKPOINT: usize = 0;
/// Slot of the thread-stop signal.
pub const STOP: usize = 1;

/// A signal action as the kernel keeps it: handler (or `SIG_DFL`, `SIG_IGN`), flags, and the
/// mask of the 64 signals.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Action {
    pub handler: u64,
    pub flags: u64,
    pub mask: u64,
}

impl Action {
    /// Whether the program has a handler of its own (not the default action, not ignored).
    fn handles(&self) -> bool {
        self.handler != libc::SIG_DFL as u64 && self.handler != libc::SIG_IGN as u64
    }
}

/// The program's action for one signal, written by its `sigaction` calls and read by the
/// handler: a sequence lock (odd while written), so that the handler never reads a handler
/// with another's flags.
struct Recorded {
    seq: AtomicU32,
    handler: AtomicU64,
    flags: AtomicU64,
    mask: AtomicU64,
}

static RECORDED: [Recorded; 2] = [const { Recorded { seq: AtomicU32::new(0), handler: AtomicU64::new(0), flags: AtomicU64::new(0), mask: AtomicU64::new(0) } }; 2];
/// The signal of each slot, once libckpt's handler for it is installed (0 before).
static SIGNAL: [AtomicI32; 2] = [const { AtomicI32::new(0) }; 2];
/// libckpt's handler of each slot.
static OURS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// The restorer (`SA_RESTORER`) the C library gave libckpt's handlers, which actions
/// installed here with the system call reuse.
static RESTORER: AtomicU64 = AtomicU64::new(0);

/// How many times a reader or a writer tries before it takes what it has. A writer interrupted
/// by a handler on its own thread never finishes while that handler runs; the handler then reads
/// the record half written, which only a program that changes the action from a handler of the
/// same signal could see.
const TRIES: u32 = 1 << 16;

fn load(i: usize) -> Action {
    let r = &RECORDED[i];
    let read = || Action { handler: r.handler.load(Relaxed), flags: r.flags.load(Relaxed), mask: r.mask.load(Relaxed) };
    for _ in 0..TRIES {
        let before = r.seq.load(Acquire);
        if before & 1 == 0 {
            let a = read();
            fence(Acquire);
            if r.seq.load(Relaxed) == before {
                return a;
            }
        }
        core::hint::spin_loop();
    }
    read()
}

fn store(i: usize, a: Action) {
    let r = &RECORDED[i];
    let mut seq = r.seq.load(Relaxed);
    for _ in 0..TRIES {
        if seq & 1 == 0 {
            match r.seq.compare_exchange_weak(seq, seq + 1, Acquire, Relaxed) {
                Ok(_) => break,
                Err(now) => seq = now,
            }
        } else {
            core::hint::spin_loop();
            seq = r.seq.load(Relaxed);
        }
    }
    // Odd now (or, past the tries, taken over from a writer that does not finish).
    let odd = seq | 1;
    r.seq.store(odd, Relaxed);
    fence(Release);
    r.handler.store(a.handler, Relaxed);
    r.flags.store(a.flags, Relaxed);
    r.mask.store(a.mask, Relaxed);
    r.seq.store(odd.wrapping_add(1), Release);
}

/// The slot of `sig`, if it is one of ckpt's signals whose handler is installed.
pub fn slot(sig: c_int) -> Option<usize> {
    (0..2).find(|&i| sig > 0 && SIGNAL[i].load(Relaxed) == sig)
}

/// The kernel's action for slot `i` while the program's action is `a`: libckpt's handler,
/// every signal blocked while it runs, the program's `SA_ONSTACK`, and `SA_RESTART` unless the
/// program's own handler goes without.
fn kernel_action(i: usize, a: &Action) -> [u64; 4] {
    let onstack = a.flags & libc::SA_ONSTACK as u64;
    let restart = if a.handles() && a.flags & libc::SA_RESTART as u64 == 0 { 0 } else { libc::SA_RESTART as u64 };
    let flags = libc::SA_SIGINFO as u64 | SA_RESTORER | onstack | restart;
    [OURS[i].load(Relaxed), flags, RESTORER.load(Relaxed), !0]
}

/// Whether the program has a handler of its own in slot `i`.
pub fn program_handles(i: usize) -> bool {
    load(i).handles()
}

/// Puts slot `i`'s kernel action in line with the program's action `a`.
fn install(i: usize, a: &Action) -> Result<(), rustix::io::Errno> {
    let k = kernel_action(i, a);
    // SAFETY: the handler is libckpt's own, an SA_SIGINFO handler, with the C library's
    // restorer, which returns from it with `rt_sigreturn`.
    unsafe { sys::rt_sigaction(SIGNAL[i].load(Relaxed) as u32, Some(&k), None) }
}

/// In the constructor: libckpt's handler `handler` becomes `sig`'s, as slot `i`, installed with
/// the C library's `sigaction` `real` (for its restorer). The action `sig` had (the default,
/// one ignored since before `exec`, or a handler another library's constructor installed) is
/// the program's.
pub fn take(i: usize, sig: c_int, handler: usize, real: usize) -> bool {
    let mut k = [0u64; 4];
    // SAFETY: reads the action into a 32-byte record.
    if unsafe { sys::rt_sigaction(sig as u32, None, Some(&mut k)) }.is_err() || real == 0 {
        return false;
    }
    store(i, Action { handler: k[0], flags: k[1] & !(SA_RESTORER), mask: k[3] });
    OURS[i].store(handler as u64, Relaxed);
    // SAFETY: a zeroed sigaction is valid; the C library's sigaction installs libckpt's handler,
    // an `extern "C"` SA_SIGINFO handler, with its own restorer.
    let installed = unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigfillset(&mut sa.sa_mask);
        type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
        core::mem::transmute::<usize, SigactionFn>(real)(sig, &sa, core::ptr::null_mut()) == 0
    };
    if !installed {
        return false;
    }
    // SAFETY: reads the action back into a 32-byte record.
    if unsafe { sys::rt_sigaction(sig as u32, None, Some(&mut k)) }.is_ok() && k[1] & SA_RESTORER != 0 {
        RESTORER.store(k[2], Relaxed);
    }
    SIGNAL[i].store(sig, Relaxed);
    // With the program's flags (its SA_ONSTACK, its SA_RESTART).
    let _ = install(i, &load(i));
    true
}

/// The program's `sigaction(sig, act, old)` for one of ckpt's signals (slot `i`): `act` is
/// recorded as the program's (the kernel keeps libckpt's handler, with the flags that matter),
/// and `old` shows the program's previous action. 0, or -1 with the error.
///
/// # Safety
/// `act` and `old` are null or point to valid `sigaction`s.
pub unsafe fn sigaction(i: usize, act: *const libc::sigaction, old: *mut libc::sigaction) -> Result<(), rustix::io::Errno> {
    let before = load(i);
    if !act.is_null() {
        // SAFETY: the caller's valid sigaction; its mask begins with the 64 signals the kernel has.
        let a = unsafe { Action { handler: (*act).sa_sigaction as u64, flags: (*act).sa_flags as u32 as u64, mask: *(&(*act).sa_mask as *const libc::sigset_t as *const u64) } };
        store(i, a);
        install(i, &a)?;
        if a.handles() {
            crate::deliverable::taken(SIGNAL[i].load(Relaxed));
        }
    }
    if !old.is_null() {
        // SAFETY: the caller's sigaction, written whole: zeroed, then the program's action in
        // it as the C library shows one (with its restorer).
        unsafe {
            core::ptr::write_bytes(old, 0, 1);
            (*old).sa_sigaction = before.handler as usize;
            let restorer = RESTORER.load(Relaxed);
            let shown = if restorer != 0 { before.flags | SA_RESTORER } else { before.flags };
            (*old).sa_flags = shown as u32 as c_int;
            (*old).sa_restorer = core::mem::transmute::<usize, Option<extern "C" fn()>>(restorer as usize);
            *(&mut (*old).sa_mask as *mut libc::sigset_t as *mut u64) = before.mask;
        }
    }
    Ok(())
}

/// Signal `sig` came to libckpt's checkpoint handler without asking for a checkpoint: if the
/// program has a handler of its own for it, the signal is the program's and is passed on
/// (true); if not, it is a checkpoint, as a plain `kill` always was (false).
///
/// # Safety
/// `info` and `uc` are what the kernel passed the handler.
pub unsafe fn pass_on_checkpoint_signal(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) -> bool {
    let a = load(CHECKPOINT);
    if !a.handles() {
        return false;
    }
    // SAFETY: the caller's contract.
    unsafe { deliver(CHECKPOINT, a, sig, info, uc) };
    true
}

/// A checkpoint signal of the program's, delivered by `ckpt checkpoint` with `ptrace` in place
/// of its request (the thread had it pending, blocked): it is queued again for the thread, where
/// it stays pending, blocked, as the program asked (the handler, taking the checkpoint, puts
/// the thread's mask back). Only for a program with a handler of its own for it (for any other,
/// the signal was a checkpoint anyway).
///
/// # Safety
/// `info` is what the kernel passed the handler.
pub unsafe fn queue_again(sig: c_int, info: *const libc::siginfo_t) {
    if info.is_null() || !load(CHECKPOINT).handles() {
        return;
    }
    let mut copy = [0u8; 128];
    // SAFETY: the kernel's siginfo is 128 bytes.
    unsafe { core::ptr::copy_nonoverlapping(info as *const u8, copy.as_mut_ptr(), 128) };
    // Without ckpt's mark (si_errno, the second word).
    copy[4..8].fill(0);
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    // SAFETY: `copy` holds a whole siginfo.
    let _ = unsafe { sys::tgsigqueueinfo(pid, tid, sig as u32, copy.as_ptr()) };
}

/// A thread-stop signal that libckpt did not send: the program's, delivered as its action says
/// (its handler, ignored, or the default action: the process ends).
///
/// # Safety
/// `info` and `uc` are what the kernel passed the handler.
pub unsafe fn pass_on_stop_signal(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    let a = load(STOP);
    if a.handler == libc::SIG_IGN as u64 {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { deliver(STOP, a, sig, info, uc) };
}

/// Delivers `sig` as the program's action `a` (slot `i`) says, in the handler that got it.
///
/// # Safety
/// `info` and `uc` are what the kernel passed the handler.
unsafe fn deliver(i: usize, a: Action, sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    if uc.is_null() || info.is_null() || !(1..=64).contains(&sig) {
        return;
    }
    let bit = 1u64 << (sig - 1);
    // SAFETY: the kernel built a whole ucontext at `uc`; its saved mask, which `rt_sigreturn`
    // puts back, begins with the kernel's 64-bit set.
    let saved = unsafe { *(core::ptr::addr_of!((*(uc as *const libc::ucontext_t)).uc_sigmask) as *const u64) };
    if a.handler == libc::SIG_DFL as u64 {
        if crate::deliverable::asks_to_block(sig) {
            // The kernel would have kept it pending; libckpt cannot, and a process that blocks
            // it is not ended by it.
            return;
        }
        // The default action of a real-time signal ends the process: it is given that action
        // and the signal again, unblocked.
        let k = [libc::SIG_DFL as u64, 0, 0, 0];
        // SAFETY: installs the default action, which runs no code of the process.
        let _ = unsafe { sys::rt_sigaction(sig as u32, Some(&k), None) };
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let _ = sys::tgkill(pid, tid, sig as u32);
        let _ = sys::rt_sigprocmask(linux_raw_sys::general::SIG_UNBLOCK as usize, bit);
        return;
    }
    if a.flags & libc::SA_RESETHAND as u64 != 0 {
        // Once delivered, the default action again (the kernel keeps the flags).
        let reset = Action { handler: libc::SIG_DFL as u64, ..a };
        store(i, reset);
        let _ = install(i, &reset);
    }
    // The mask the kernel would have given the program's handler: the thread's, its handler's
    // sa_mask (ckpt's signals left out unless the program took them, as `deliverable` leaves
    // them out of every mask), and the signal itself unless SA_NODEFER.
    let mut mask = saved | (a.mask & !crate::deliverable::untaken_bits());
    if a.flags & libc::SA_NODEFER as u64 == 0 {
        mask |= bit;
    }
    let _ = sys::rt_sigprocmask(linux_raw_sys::general::SIG_SETMASK as usize, mask);
    if a.flags & libc::SA_SIGINFO as u64 != 0 {
        // SAFETY: the program installed this address as an SA_SIGINFO handler.
        let f = unsafe { core::mem::transmute::<u64, extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)>(a.handler) };
        f(sig, info, uc);
    } else {
        // SAFETY: the program installed this address as a plain handler.
        let f = unsafe { core::mem::transmute::<u64, extern "C" fn(c_int)>(a.handler) };
        f(sig);
    }
    // Returning restores the mask saved in `uc` (which the program's handler may have changed).
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let a = Action { handler: 0x1234, flags: (libc::SA_SIGINFO | libc::SA_ONSTACK) as u64, mask: 1 << 9 };
        store(STOP, a);
        assert_eq!(load(STOP), a);
        store(STOP, Action { handler: 0, flags: 0, mask: 0 });
        assert_eq!(RECORDED[STOP].seq.load(Relaxed) & 1, 0);
    }

    #[test]
    fn the_kernel_keeps_the_flags_that_matter() {
        let go = Action { handler: 0x1234, flags: (libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART) as u64, mask: !0 };
        let k = kernel_action(CHECKPOINT, &go);
        assert_eq!(k[1] & (libc::SA_ONSTACK | libc::SA_RESTART | libc::SA_SIGINFO) as u64, (libc::SA_ONSTACK | libc::SA_RESTART | libc::SA_SIGINFO) as u64);
        assert_eq!(k[3], !0, "every signal blocked in libckpt's handler");
        let plain = Action { handler: 0x1234, flags: 0, mask: 0 };
        assert_eq!(kernel_action(CHECKPOINT, &plain)[1] & (libc::SA_RESTART | libc::SA_ONSTACK) as u64, 0);
        let default = Action { handler: libc::SIG_DFL as u64, flags: 0, mask: 0 };
        assert_ne!(kernel_action(CHECKPOINT, &default)[1] & libc::SA_RESTART as u64, 0, "every delivery is a checkpoint then");
    }
}
