//! Sends again the signals that were pending at the checkpoint. The image keeps which signals
//! were pending (for the process, and for each thread), not their siginfo. Where exactly one
//! POSIX timer of the image sends that signal there (to that thread with `SIGEV_THREAD_ID`, or
//! to the process), the pending signal is taken for that timer's expiry and queued as the timer
//! queues it (`SI_TIMER`, its ID and `sigev_value`): glibc's helper thread for `SIGEV_THREAD`
//! timers acts only on such a siginfo (a plain signal 32 was dropped there, and that expiry
//! lost), and a handler that reads `si_value` finds it. Any other pending signal is sent
//! plainly (`kill`, `tgkill`).
//!
//! After the point of no return, like `restore`: no allocation, raw system calls only.

use ckpt_image::timers::{SIGEV_SIGNAL, SIGEV_THREAD_ID};
use ckpt_image::Image;
use ckpt_sigsafe::sys;

/// Sends the signals of `mask`, pending for the whole process at the checkpoint, to process `pid`.
pub fn to_process(image: &Image, pid: u32, mask: u64) {
    for sig in signals(mask) {
        let sent = timer_of(image, sig, None).is_some_and(|(id, v)| sys::queue_timer_signal(pid, None, sig, id, v).is_ok());
        if !sent {
            let _ = sys::kill(pid, sig);
        }
    }
}

/// Sends the signals of `mask`, pending at the checkpoint for the thread whose TID was `old`,
/// to that thread, thread `tid` of process `pid` now.
pub fn to_thread(image: &Image, pid: u32, old: u32, tid: u32, mask: u64) {
    for sig in signals(mask) {
        let sent = timer_of(image, sig, Some(old)).is_some_and(|(id, v)| sys::queue_timer_signal(pid, Some(tid), sig, id, v).is_ok());
        if !sent {
            let _ = sys::tgkill(pid, tid, sig);
        }
    }
}

/// The ID and `sigev_value` of the one timer of the image that sends `sig` to the thread that
/// had TID `old` (`None`: to the process); `None` when no timer does, or more than one (which
/// of them expired is not known then).
fn timer_of(image: &Image, sig: u32, old: Option<u32>) -> Option<(i32, u64)> {
    let mut found = None;
    for t in image.timers().flatten() {
        let aimed = match old {
            Some(tid) => t.notify == SIGEV_SIGNAL | SIGEV_THREAD_ID && t.tid == tid,
            None => t.notify == SIGEV_SIGNAL,
        };
        if aimed && t.signo == sig {
            if found.is_some() {
                return None;
            }
            found = Some((t.id, t.value));
        }
    }
    found
}

/// The signals of a mask (bit `n - 1` for signal `n`).
fn signals(mask: u64) -> impl Iterator<Item = u32> {
    (1..=64u32).filter(move |s| mask & 1 << (s - 1) != 0)
}
