//! One checkpoint at a time in a process.
//!
//! The handler blocks the checkpoint signal in the thread that took it only, and that thread
//! lets the others go before its handler is over: it still ends the capturing children
//! (`seize`), whose threads stay held until then, and unmaps its scratch area. A checkpoint
//! signal that comes meanwhile (the next request of `ckpt checkpoint`, which may come as soon
//! as the writer is done; the periodic timer) is taken by another thread, and a second
//! checkpoint would run beside the first. It found the first one's coordinator blocking every
//! signal, and the threads just let go still in the stop handler, blocking the stop signal,
//! and stopped them with ptrace: a thread the first checkpoint's capturing child still held
//! could not be (`PTRACE_SEIZE` fails with `EPERM`: one tracer per thread), one it signalled
//! never came (the stop signal stays pending in a thread held by a tracer), and each of these
//! checkpoints failed; the coordinator itself went into the image in the middle of its handler.
//!
//! So the thread that runs a checkpoint holds the turn ([`RUNNING`], its TID) from the start of
//! its handler to the end, and one that takes the checkpoint signal meanwhile waits for it
//! ([`wait`]) before anything else (its request counted, see `invisible`). While it waits it
//! takes the thread-stop signal, unblocked for the wait: a checkpoint still stopping the
//! threads stops it as any other, in the stop handler, and it goes on waiting once let go. The
//! wait is bounded ([`WAIT_S`], counted again after each such stop); past it, the checkpoint
//! fails and says why. A restored process, or a forked child, has no checkpoint under way
//! whatever its memory says ([`clear`]); and a turn is taken over
//! from a thread that is not in the checkpoint handler ([`in_handler`]): its memory came from a
//! process in the middle of a checkpoint by another way (a process restarted through
//! myrestart's own resume page, which runs no code of libckpt's; a child forked without libc's
//! `fork`).
//!
//! The turn also tells the interposed waits that a checkpoint runs ([`under_way`]): a
//! checkpoint signal that the kernel sent some thread out of its wait for may be taken by
//! another, and the wait's `EINTR` is then the checkpoint's though no handler ran in its
//! thread (`invisible`; see [`end`]).
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler (and [`under_way`] in the interposed waits): atomics,
//! futexes and raw system calls; no allocation, no locks, no libc.

use crate::stop::STOP_SIGNAL;
use ckpt_sigsafe::sys::monotonic_ns;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use rustix::io::Errno;
use rustix::thread::futex;
use rustix::time::Timespec;

/// How long a checkpoint waits for the one under way to end, at most (from the start of the
/// wait, or from the last stop that checkpoint made this thread take part in).
pub const WAIT_S: u64 = 60;

/// The TID of the thread whose checkpoint runs, 0 if none (a futex word: woken when it ends).
static RUNNING: AtomicU32 = AtomicU32::new(0);

/// This thread's turn to run a checkpoint, until [`end`].
pub struct Turn(());

/// Ends this thread's turn, if it has one. `signal` is the checkpoint signal, and `count_it`
/// counts a run of ckpt's handlers (`invisible`).
///
/// A checkpoint signal sent to the process while this thread blocks it (in its handler) wakes
/// a thread of the kernel's choosing, one in `epoll_wait` say, and another may take it before
/// that one does: this thread, as its handler returns, or one that puts its mask back. The
/// woken thread's call then ends in `EINTR` with no handler of ckpt's run yet, which
/// `invisible` takes for the checkpoint's while the turn is held. A checkpoint signal pending
/// as the turn ends is counted for such calls at once, before the turn ends and after (one
/// that came meanwhile).
pub fn end(turn: Option<Turn>, signal: i32, count_it: fn()) {
    let bit = 1u64 << (signal - 1);
    let pending = || ckpt_sigsafe::sys::rt_sigpending().is_ok_and(|p| p & bit != 0);
    if pending() {
        count_it();
    }
    if turn.is_some() {
        RUNNING.store(0, SeqCst);
        let _ = futex::wake(&RUNNING, futex::Flags::PRIVATE, i32::MAX as u32);
    }
    if pending() {
        count_it();
    }
}

/// Waits until no other checkpoint runs in this process, and takes the turn. `None` if the
/// one under way did not end within [`WAIT_S`].
///
/// A turn this thread holds already is taken again: left in memory restored through
/// myrestart's resume page, it names the thread that ran the checkpoint the image was taken
/// in, under the same TID in the restored process. (Else it would be a checkpoint signal
/// delivered into this thread's own handler, which blocks it: only `ckpt checkpoint`'s
/// delivery with ptrace could, and that checkpoint runs as it did before turns.)
pub fn wait() -> Option<Turn> {
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    let Err(mut holder) = RUNNING.compare_exchange(0, me, SeqCst, SeqCst) else { return Some(Turn(())) };
    if holder == me {
        return Some(Turn(()));
    }
    // The stop signal comes through while this thread waits, and is blocked again after (the
    // handler's mask blocks every signal).
    let stop = 1u64 << (STOP_SIGNAL - 1);
    let mask = ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_UNBLOCK as usize, stop);
    let mut start = monotonic_ns();
    let turn = loop {
        if holder != 0 && !in_handler(holder) {
            // Held by no checkpoint of this process (see the module's notes).
            match RUNNING.compare_exchange(holder, me, SeqCst, SeqCst) {
                Ok(_) => break Some(Turn(())),
                Err(h) => holder = h,
            }
            continue;
        }
        let waited = monotonic_ns().saturating_sub(start);
        if waited >= WAIT_S * 1_000_000_000 {
            break None;
        }
        // In slices, to look again whether the holder is still in the handler.
        let left = Timespec { tv_sec: 0, tv_nsec: (WAIT_S * 1_000_000_000 - waited).min(100_000_000) as i64 };
        if futex::wait(&RUNNING, futex::Flags::PRIVATE, holder, Some(&left)) == Err(Errno::INTR) {
            // The stop handler ran: the checkpoint under way had this thread stopped meanwhile.
            start = monotonic_ns();
        }
        match RUNNING.compare_exchange(0, me, SeqCst, SeqCst) {
            Ok(_) => break Some(Turn(())),
            Err(h) => holder = h,
        }
    };
    if let Ok(old) = mask {
        let _ = ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_SETMASK as usize, old);
    }
    turn
}

/// Whether a checkpoint runs in this process now (a thread of its holds the turn, in the
/// checkpoint handler).
pub fn under_way() -> bool {
    let holder = RUNNING.load(SeqCst);
    holder != 0 && in_handler(holder)
}

/// In a restored process, before any of its threads runs again (the checkpoint its image was
/// taken in is not under way there), and in a child forked by the program (its only thread
/// runs no checkpoint).
pub fn clear() {
    RUNNING.store(0, SeqCst);
}

/// Whether this thread holds the turn.
pub fn held_here() -> bool {
    RUNNING.load(SeqCst) == rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Whether thread `tid` is one of this process's, in the checkpoint handler: it blocks the
/// checkpoint signal, as the handler's mask does from its start to its end (outside it,
/// `deliverable` keeps the signal unblocked).
fn in_handler(tid: u32) -> bool {
    let bit = 1u64 << (crate::config::get().signal - 1);
    ckpt_sigsafe::proctext::thread_blocked(tid as u64).is_some_and(|m| m & bit != 0)
}
