//! Keeps ckpt's two signals (the checkpoint signal and the thread-stop signal) deliverable
//! whatever masks the program asks for, while the program sees the masks it asked for.
//!
//! A program that blocks every signal (`script(1)`, which reads its signals from a `signalfd`;
//! a server thread that waits in `sigwaitinfo`) would otherwise leave a checkpoint pending
//! forever, or take ckpt's signal as its own. So the sets the program hands the kernel lose
//! ckpt's signals on the way: thread masks (`sigprocmask`, `pthread_sigmask`), the masks of
//! its handlers (`sigaction`'s `sa_mask`), and the temporary masks and waited-for sets of
//! `sigsuspend`, `sigwait`, `sigwaitinfo`, `sigtimedwait`, `signalfd`, `ppoll`, `pselect`,
//! `epoll_pwait` and `epoll_pwait2` (those of this module and of `invisible`).
//!
//! What the program asked for is kept, so that it reads back exactly that: for each thread
//! that asked to block one of ckpt's signals, a slot of [`ASKED`] holds its thread ID and
//! which of the two it blocks (`sigprocmask`'s old set then shows them blocked); for each
//! signal, [`HANDLER_ASKED`] holds which of the two its handler's `sa_mask` named (the old
//! action returned by `sigaction` shows them). A forked child keeps its forking thread's
//! slot ([`after_fork_child`]). Not covered: a thread made by `pthread_create` starts seeing
//! ckpt's signals unblocked though its creator asked to block them; a mask put back without
//! libc's `sigprocmask` (a handler's return, `siglongjmp`) leaves the slot as it was; the masks that
//! `/proc/PID/status` shows; masks set by system calls made directly (`syscall(2)`, static
//! code, Go), or inside libc (`sigset`, `sighold`, `setcontext`); a thread that ended while
//! it asked leaves its slot until the table is full, and a new thread given its ID meanwhile
//! (once the kernel's thread IDs wrapped around) reads ckpt's signals back as blocked.
//!
//! A signal the program takes for itself (its own handler for it, which `actions` keeps and
//! passes its signals on to) is left to it from then on: its sets pass unchanged, so that the
//! kernel holds the program's signals while it blocks them, as it expects. A checkpoint asked
//! of a program that blocks it in every thread is delivered by `ckpt checkpoint` with `ptrace`.
//!
//! Ordinary context (not called from the checkpoint handler), but these functions may run in
//! the program's signal handlers: they do not allocate or lock.

use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

/// Bit of [`ASKED`] and [`HANDLER_ASKED`] for the checkpoint signal.
const CHECKPOINT_BIT: u8 = 1;
/// Bit for the thread-stop signal.
const STOP_BIT: u8 = 2;

/// Threads that asked to block one of ckpt's signals at the same time, at most: past that, a
/// thread's own `sigprocmask` shows them unblocked. The slot of a thread that ended is taken
/// over once the table is full (see [`set_asked_in`]).
const SLOTS: usize = 512;
/// One slot per thread that asks to block ckpt's signals: `tid << 8 | bits`, 0 when free.
static ASKED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// How many slots are taken (none: no need to look).
static TAKEN_SLOTS: AtomicUsize = AtomicUsize::new(0);
/// The thread that forks, noted before the fork for its child (see [`after_fork_child`]).
static FORKING: AtomicU64 = AtomicU64::new(0);
/// Per signal, which of ckpt's signals its handler's `sa_mask` named.
static HANDLER_ASKED: [AtomicU8; 65] = [const { AtomicU8::new(0) }; 65];

/// The checkpoint signal once its handler is installed, 0 before or once the program took it
/// for itself (`actions` says which).
static CHECKPOINT_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The thread-stop signal, likewise.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The checkpoint signal is ckpt's from now on (until [`taken`]).
pub fn set_checkpoint_signal(sig: c_int) {
    CHECKPOINT_SIGNAL.store(sig, Relaxed);
}

/// The thread-stop signal is ckpt's from now on (until [`taken`]).
pub fn set_stop_signal(sig: c_int) {
    STOP_SIGNAL.store(sig, Relaxed);
}

/// ckpt's signals that the program has not taken for itself (0 for one it took), with their
/// bits.
fn ours() -> [(c_int, u8); 2] {
    [(CHECKPOINT_SIGNAL.load(Relaxed), CHECKPOINT_BIT), (STOP_SIGNAL.load(Relaxed), STOP_BIT)]
}

/// `set` without ckpt's signals, and which of them it held.
///
/// # Safety
/// `set` is null or points to a valid `sigset_t`.
pub unsafe fn without_ours(set: *const libc::sigset_t) -> (Option<libc::sigset_t>, u8) {
    if set.is_null() {
        return (None, 0);
    }
    // SAFETY: the caller's valid sigset_t, copied.
    let mut copy = unsafe { *set };
    let mut had = 0;
    for (sig, bit) in ours() {
        // SAFETY: `copy` is a valid sigset_t; a signal number of 0 is never a member.
        if sig > 0 && unsafe { libc::sigismember(&copy, sig) } == 1 {
            had |= bit;
            // SAFETY: as above.
            unsafe { libc::sigdelset(&mut copy, sig) };
        }
    }
    (Some(copy), had)
}

/// `set`'s copy as the pointer to hand libc (null stays null).
pub fn ptr(copy: &Option<libc::sigset_t>) -> *const libc::sigset_t {
    copy.as_ref().map_or(core::ptr::null(), |c| c as *const libc::sigset_t)
}

/// Adds the signals of `bits` to `set`.
fn add_ours(set: &mut libc::sigset_t, bits: u8) {
    for (sig, bit) in ours() {
        if sig > 0 && bits & bit != 0 {
            // SAFETY: `set` is a valid sigset_t.
            unsafe { libc::sigaddset(set, sig) };
        }
    }
}

fn tid() -> u64 {
    rustix::thread::gettid().as_raw_nonzero().get() as u64
}

/// Where thread `tid`'s search for its slot begins (and its slot most often is).
fn first_slot(tid: u64) -> usize {
    (tid as usize).wrapping_mul(2654435761) % SLOTS
}

/// Thread `tid`'s slot, if it has one.
fn slot_of(tid: u64) -> Option<&'static AtomicU64> {
    if TAKEN_SLOTS.load(Relaxed) == 0 {
        return None;
    }
    let start = first_slot(tid);
    (0..SLOTS).map(|i| &ASKED[(start + i) % SLOTS]).find(|s| {
        let v = s.load(Relaxed);
        v != 0 && v >> 8 == tid
    })
}

/// Which of ckpt's signals thread `tid` asked to block.
fn asked_by(tid: u64) -> u8 {
    slot_of(tid).map_or(0, |s| s.load(Relaxed) as u8)
}

/// Notes that thread `tid`, whose slot is `slot`, now asks to block `bits` of ckpt's signals.
/// Only the thread itself writes its slot (or a forked child, alone in its process).
fn set_asked_in(tid: u64, slot: Option<&AtomicU64>, bits: u8) {
    let want = if bits == 0 { 0 } else { tid << 8 | bits as u64 };
    if let Some(slot) = slot {
        slot.store(want, Relaxed);
        if want == 0 {
            TAKEN_SLOTS.fetch_sub(1, Relaxed);
        }
        return;
    }
    if want == 0 {
        return;
    }
    let start = first_slot(tid);
    for i in 0..SLOTS {
        if ASKED[(start + i) % SLOTS].compare_exchange(0, want, Relaxed, Relaxed).is_ok() {
            TAKEN_SLOTS.fetch_add(1, Relaxed);
            return;
        }
    }
    // Full: a thread that ended while it asked (libc tells us of no thread's end) leaves its
    // slot, and a program whose short-lived workers each block every signal would fill the
    // table. Such a slot is taken over (a `vfork` child's parent still exists, in another
    // process: `thread_exists` looks at every process).
    for i in 0..SLOTS {
        let slot = &ASKED[(start + i) % SLOTS];
        let v = slot.load(Relaxed);
        if v != 0 && !ckpt_sigsafe::sys::thread_exists((v >> 8) as u32) && slot.compare_exchange(v, want, Relaxed, Relaxed).is_ok() {
            return;
        }
    }
}

/// The program installed a handler of its own for `sig`, one of ckpt's signals: from now on its
/// masks pass unchanged. If the calling thread asked to block it meanwhile, it is blocked now,
/// as asked (other threads that did read it back unblocked, and have it unblocked).
pub fn taken(sig: c_int) {
    for (i, (s, bit)) in ours().into_iter().enumerate() {
        if s != sig || sig <= 0 {
            continue;
        }
        let me = tid();
        let slot = slot_of(me);
        let before = slot.map_or(0, |s| s.load(Relaxed) as u8);
        if before & bit != 0 {
            let _ = ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK as usize, 1u64 << (sig - 1));
            set_asked_in(me, slot, before & !bit);
        }
        if i == 0 {
            CHECKPOINT_SIGNAL.store(0, Relaxed);
        } else {
            STOP_SIGNAL.store(0, Relaxed);
        }
    }
}

/// The 64-bit mask of ckpt's signals that the program has not taken.
pub fn untaken_bits() -> u64 {
    ours().iter().filter(|(s, _)| (1..=64).contains(s)).fold(0, |m, (s, _)| m | 1u64 << (s - 1))
}

/// Whether the calling thread asked to block `sig`, one of ckpt's signals that the program has
/// not taken (signal-safe: it runs in libckpt's handlers).
pub fn asks_to_block(sig: c_int) -> bool {
    let bits = asked_by(tid());
    ours().iter().any(|&(s, bit)| s == sig && bits & bit != 0)
}

fn set_asked(tid: u64, bits: u8) {
    set_asked_in(tid, slot_of(tid), bits);
}

/// In the constructor, once the thread-stop handler is in place: a program started with the
/// thread-stop signal blocked (its parent blocked every signal before `exec`, or
/// `posix_spawn` was given such a mask) has it unblocked, and reads it back as blocked, as it
/// was started. (The checkpoint signal is `exec`'s: see `exec::unblock_after_exec`.)
pub fn adopt_inherited_mask() {
    let stop = STOP_SIGNAL.load(Relaxed);
    if stop == 0 {
        return;
    }
    let bit = 1u64 << (stop - 1);
    let blocked = ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK as usize, 0).unwrap_or(0);
    if blocked & bit != 0 && ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_UNBLOCK as usize, bit).is_ok() {
        set_asked(tid(), STOP_BIT);
    }
}

/// Before `fork`: which thread forks.
pub fn before_fork() {
    FORKING.store(tid(), Relaxed);
}

/// In a forked child (alone in it): its only thread is the one that forked, now with another
/// ID; every other slot belonged to threads the child does not have.
pub fn after_fork_child() {
    let bits = asked_by(FORKING.load(Relaxed));
    for s in ASKED.iter() {
        s.store(0, Relaxed);
    }
    TAKEN_SLOTS.store(0, Relaxed);
    set_asked(tid(), bits);
}

type SigmaskFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;

/// A thread's signal mask changed through libc's `f` (`pthread_sigmask` or `sigprocmask`):
/// the kernel gets `set` without ckpt's signals, the thread's slot what it asked, and `old`
/// the mask the program asked for before.
///
/// # Safety
/// As for libc's `pthread_sigmask`.
pub unsafe fn set_mask(f: usize, how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    if f == 0 {
        return libc::EINVAL;
    }
    // SAFETY: f is libc's function of this type.
    let f = unsafe { core::mem::transmute::<usize, SigmaskFn>(f) };
    // SAFETY: the caller's set, valid when not null.
    let (copy, named) = unsafe { without_ours(set) };
    // The thread's ID only when a slot may be involved (a system call saved otherwise).
    let me = if named != 0 || TAKEN_SLOTS.load(Relaxed) != 0 { tid() } else { 0 };
    let slot = if me != 0 { slot_of(me) } else { None };
    let before = slot.map_or(0, |s| s.load(Relaxed) as u8);
    let after = match how {
        _ if set.is_null() => before,
        libc::SIG_BLOCK => before | named,
        libc::SIG_UNBLOCK => before & !named,
        libc::SIG_SETMASK => named,
        _ => before,
    };
    // Unblocking passes the whole set: ckpt's signals are unblocked anyway, and a mask
    // inherited with them blocked lets them go.
    let given = if how == libc::SIG_UNBLOCK { set } else { ptr(&copy) };
    // SAFETY: libc's function, with the caller's pointers or our copy of the set.
    let r = unsafe { f(how, given, old) };
    if r != 0 {
        return r;
    }
    if !old.is_null() {
        // SAFETY: libc just wrote a valid sigset_t there.
        add_ours(unsafe { &mut *old }, before);
    }
    // (A `vfork` child, which shares the table with its parent, leaves a slot of its own there
    // until its thread ID is used again; checking for one would cost a system call each time.)
    if after != before && me != 0 {
        set_asked_in(me, slot, after);
    }
    r
}

/// `act` as handed to the kernel: its `sa_mask` without ckpt's signals. Notes what the program
/// asked for `sig`. (The actions of ckpt's own signals are `actions`'s.)
///
/// # Safety
/// `act` is null or points to a valid `sigaction`.
pub unsafe fn handler_mask(sig: c_int, act: *const libc::sigaction) -> Option<libc::sigaction> {
    if act.is_null() || !(1..=64).contains(&sig) {
        return None;
    }
    // SAFETY: the caller's valid sigaction, copied.
    let mut copy = unsafe { *act };
    // SAFETY: `copy.sa_mask` is a valid sigset_t.
    let (mask, named) = unsafe { without_ours(&copy.sa_mask) };
    copy.sa_mask = mask?;
    HANDLER_ASKED[sig as usize].store(named, Relaxed);
    Some(copy)
}

/// The old action `sigaction` returns for `sig`: its `sa_mask` as the program asked for it.
///
/// # Safety
/// `old` is null or points to the valid `sigaction` libc just wrote.
pub unsafe fn show_handler_mask(old: *mut libc::sigaction, was_asked: u8) {
    if !old.is_null() && was_asked != 0 {
        // SAFETY: the caller's contract.
        add_ours(unsafe { &mut (*old).sa_mask }, was_asked);
    }
}

/// What the program last asked `sig`'s handler to block of ckpt's signals.
pub fn handler_asked(sig: c_int) -> u8 {
    if (1..=64).contains(&sig) {
        HANDLER_ASKED[sig as usize].load(Relaxed)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_what_each_thread_asked() {
        assert_eq!(asked_by(4242), 0);
        set_asked(4242, CHECKPOINT_BIT | STOP_BIT);
        set_asked(4243, STOP_BIT);
        assert_eq!(asked_by(4242), CHECKPOINT_BIT | STOP_BIT);
        assert_eq!(asked_by(4243), STOP_BIT);
        set_asked(4242, 0);
        assert_eq!(asked_by(4242), 0);
        assert_eq!(asked_by(4243), STOP_BIT);
        set_asked(4243, 0);
        assert_eq!(TAKEN_SLOTS.load(Relaxed), 0);
    }
}
