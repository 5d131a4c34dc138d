//! System calls a ptrace stop cuts short with `EINTR`, and how a stopped thread is made to call
//! again: the one rule for `ckpt`'s attach (the leader thread it stops) and libckpt's capturing
//! process (`checkpoint::seize`, the threads it stops), so that a checkpoint the program never
//! asked for never shows in what its calls return.
//!
//! A thread stopped with `PTRACE_INTERRUPT` while it sleeps in a system call has the call cut
//! short. Most calls then return one of the kernel's restart codes, which the kernel turns into
//! the same call made again when the thread goes on with no handler to run. A few return
//! `EINTR` itself, as after a stop signal and `SIGCONT` (signal(7), "Interruption of system
//! calls and library functions by stop signals"): [`cut_short_by_stops`] lists them. For those,
//! [`call_again`] puts the thread back on its `syscall` instruction with the call's number, as
//! the kernel does for a restart code. Their timeouts are all relative (`epoll_wait`'s
//! milliseconds, `epoll_pwait2`'s, `sigtimedwait`'s and `semtimedop`'s timespecs, which the
//! kernel does not write back, a socket's `SO_RCVTIMEO`/`SO_SNDTIMEO`): the call made again
//! waits its whole timeout again, which the program cannot tell from a late wakeup.
//!
//! The rule for a real signal ([`signal_to_take`]): if, as the thread is let go, a signal is
//! pending that it would take then (one it does not block, that is not ignored), the `EINTR`
//! is left as it is: the call would have returned it for that signal anyway, and the handler
//! runs on the call's `EINTR`, as the program expects. A signal that comes after that check is
//! taken before the call is made again, with the mask the thread had outside the call: one it
//! could always have taken just before making the call. Signals the call itself unblocks
//! (`epoll_pwait`'s mask, `sigtimedwait`'s set) stay pending and end the call made again at
//! once, as they would have ended the first. A signal whose handler already ran shows no
//! `EINTR` in the registers (the thread is in its handler, rax 0), so it is never mistaken.
//!
//! Not in the list: calls whose `EINTR` only old kernels return (an inotify `read` before 3.8,
//! futex waits before 2.6.22, `msgrcv`/`msgsnd` before 2.6.9), calls that return a restart
//! code now, and `read`/`write` of a socket with a timeout (a `read` of other files may have
//! done its work before its `EINTR`, as `close` has).

use ckpt_image::frame::ureg;
use linux_raw_sys::general as k;

/// `-EINTR` as a system call returns it in rax.
const EINTR_RETURNED: u64 = -4i64 as u64;

/// Whether system call `nr` returns `EINTR`, not a restart code, when a stop cuts it short.
pub fn cut_short_by_stops(nr: u64) -> bool {
    const CALLS: [u32; 15] = [
        k::__NR_epoll_wait,
        k::__NR_epoll_pwait,
        k::__NR_epoll_pwait2,
        k::__NR_rt_sigtimedwait,
        k::__NR_semop,
        k::__NR_semtimedop,
        k::__NR_accept,
        k::__NR_accept4,
        k::__NR_recvfrom,
        k::__NR_recvmsg,
        k::__NR_recvmmsg,
        k::__NR_connect,
        k::__NR_sendto,
        k::__NR_sendmsg,
        k::__NR_sendmmsg,
    ];
    CALLS.iter().any(|&c| c as u64 == nr)
}

/// Whether `regs` (as `NT_PRSTATUS` gives them, of a thread at a ptrace stop) show one of
/// [`cut_short_by_stops`]'s calls returning `EINTR`.
pub fn cut_short(regs: &[u64; ureg::COUNT]) -> bool {
    (regs[ureg::ORIG_RAX] as i64) >= 0 && regs[ureg::RAX] == EINTR_RETURNED && cut_short_by_stops(regs[ureg::ORIG_RAX])
}

/// If [`cut_short`], changes `regs` so that the thread makes the call again when it goes on
/// (rip back over the two-byte `syscall`, rax the call's number) and returns true.
pub fn call_again(regs: &mut [u64; ureg::COUNT]) -> bool {
    if !cut_short(regs) {
        return false;
    }
    regs[ureg::RAX] = regs[ureg::ORIG_RAX];
    regs[ureg::RIP] = regs[ureg::RIP].wrapping_sub(2);
    true
}

/// Signals ignored when their action is the default one.
const IGNORED_BY_DEFAULT: u64 = bit(k::SIGCHLD) | bit(k::SIGCONT) | bit(k::SIGURG) | bit(k::SIGWINCH);

const fn bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

/// Whether the thread whose `/proc/PID/task/TID/status` is `status` has a signal pending that
/// it would take if it went on now: pending for it or its process, not blocked (`SigBlk`, the
/// mask in force, which inside `epoll_pwait` is the call's), and neither ignored (`SigIgn`)
/// nor ignored by default without a handler (`SigCgt`). (A traced thread has even ignored
/// signals queued; the kernel drops them when it goes on.) A status it cannot parse counts as
/// a signal to take: the `EINTR` is then left alone.
pub fn signal_to_take(status: &[u8]) -> bool {
    let hex = |key: &[u8]| crate::proctext::status_field(status, key).and_then(crate::proctext::parse_hex);
    let (Some(m), Some(ignored), Some(caught)) = (crate::proctext::signal_masks(status), hex(b"SigIgn:"), hex(b"SigCgt:")) else { return true };
    let dropped = ignored | (IGNORED_BY_DEFAULT & !caught);
    (m.pending | m.shared_pending) & !m.blocked & !dropped != 0
}

/// [`signal_to_take`] for thread `tid` of process `pid`, from its status now; true if that
/// cannot be read.
pub fn thread_has_signal_to_take(pid: u32, tid: u32) -> bool {
    let mut path = [0u8; 96];
    let mut buf = [0u8; 2048];
    let Some(p) = crate::proctext::proc_path2(&mut path, pid as u64, b"/task/", tid as u64, b"/status") else { return true };
    match crate::file::read_start(p, &mut buf) {
        Ok(n) => signal_to_take(&buf[..n]),
        Err(_) => true,
    }
}

/// The registers thread `tid` of process `pid`, at a ptrace stop with registers `regs`, goes on
/// with (see the module's notes): `regs` made to call again if a stop cut a call short and no
/// signal waits for it; `None` if they stay as they are.
pub fn going_on(pid: u32, tid: u32, regs: &[u64; ureg::COUNT]) -> Option<[u64; ureg::COUNT]> {
    let mut again = *regs;
    (cut_short(regs) && !thread_has_signal_to_take(pid, tid) && call_again(&mut again)).then_some(again)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_calls_returning_eintr() {
        let mut r = [0u64; ureg::COUNT];
        r[ureg::ORIG_RAX] = k::__NR_epoll_wait as u64;
        r[ureg::RAX] = EINTR_RETURNED;
        r[ureg::RIP] = 0x1002;
        assert!(call_again(&mut r));
        assert_eq!((r[ureg::RAX], r[ureg::RIP]), (k::__NR_epoll_wait as u64, 0x1000));
        // Made again already: nothing more to do.
        assert!(!call_again(&mut r));
        r[ureg::ORIG_RAX] = k::__NR_close as u64;
        r[ureg::RAX] = EINTR_RETURNED;
        assert!(!call_again(&mut r));
        r[ureg::ORIG_RAX] = u64::MAX; // not in a system call: rax is the program's
        assert!(!call_again(&mut r));
    }

    #[test]
    fn signals_taken_or_not() {
        let check = |pnd: u64, shd: u64, blk: u64, ign: u64, cgt: u64| {
            let mut b = [0u8; 256];
            let mut n = 0;
            for (key, v) in [(b"SigPnd", pnd), (b"ShdPnd", shd), (b"SigBlk", blk), (b"SigIgn", ign), (b"SigCgt", cgt)] {
                let mut line = [b'0'; 25];
                line[..6].copy_from_slice(key);
                line[6] = b':';
                line[7] = b'\t';
                for i in 0..16 {
                    line[8 + i] = b"0123456789abcdef"[(v >> (60 - 4 * i)) as usize & 15];
                }
                line[24] = b'\n';
                b[n..n + 25].copy_from_slice(&line);
                n += 25;
            }
            signal_to_take(&b[..n])
        };
        let usr1 = bit(k::SIGUSR1);
        assert!(!check(0, 0, 0, 0, 0));
        assert!(check(usr1, 0, 0, 0, usr1));
        assert!(check(0, usr1, 0, 0, 0)); // default action: it ends the process
        assert!(!check(usr1, 0, usr1, 0, usr1)); // blocked
        assert!(!check(0, usr1, 0, usr1, 0)); // ignored
        assert!(!check(bit(k::SIGCHLD), 0, 0, 0, 0)); // ignored by default
        assert!(check(bit(k::SIGCHLD), 0, 0, 0, bit(k::SIGCHLD)));
        assert!(signal_to_take(b"garbage"));
    }
}
