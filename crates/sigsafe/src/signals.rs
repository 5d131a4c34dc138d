//! Signal names as `CKPT_SIGNAL` and `ckpt run --signal` accept them, parsed the same way by
//! the library and the command.

/// The value a checkpoint signal carries (sent with `sigqueue`) to ask for the *last*
/// checkpoint of a process: written with the process stopped, after which the process ends
/// (`SIGKILL`), if the image was written or an earlier image of this run of it exists. It
/// never runs past the moment its image holds, so nothing it does is done twice when it is
/// restarted, and it never ends with nothing saved. `ckpt job` and
/// `ckpt checkpoint --kill` send it; libckpt and myrestart's signal forwarding read it.
pub const LAST_CHECKPOINT: u64 = 0x434b_4c53 << 32;

/// The value a checkpoint signal carries (sent with `sigqueue`, or by libckpt's periodic timer
/// as its `sigev_value`) to ask for an ordinary checkpoint. libckpt's handler for the signal
/// stays installed even when the program installs its own: a signal carrying one of ckpt's
/// values (this one, [`LAST_CHECKPOINT`], a tree root's request) is a checkpoint, any other goes
/// to the program's handler. `ckpt checkpoint` and `ckpt job` send it; a plain `kill` is a
/// checkpoint only for a program that has no handler of its own for the signal.
pub const CHECKPOINT_REQUEST: u64 = 0x434b_5251 << 32;

/// The value of libckpt's own thread-stop signals (sent by the thread that takes a
/// checkpoint to each other thread, with `rt_tgsigqueueinfo`): any other signal of that number
/// is the program's.
pub const STOP_REQUEST: u64 = 0x434b_5354 << 32;

/// `si_code` of a signal sent by `sigqueue` (`SI_QUEUE`), and of a POSIX timer's (`SI_TIMER`).
pub const SI_QUEUE: i32 = -1;
pub const SI_TIMER: i32 = -2;

/// Whether a checkpoint signal whose `siginfo` holds `code` and `value` asks for a checkpoint by
/// itself: an ordinary or a last checkpoint queued by `ckpt`, or a tick of libckpt's periodic
/// timer. (A tree root's request is libckpt's to recognise. A signal `ckpt checkpoint`
/// delivered with `ptrace`, marked [`UNBLOCKED_FOR_CHECKPOINT`], is one of these; should the
/// thread have had a signal of the program's pending before it, that one is delivered instead,
/// marked, and stays the program's.)
pub fn is_checkpoint_request(code: i32, value: u64) -> bool {
    (code == SI_QUEUE && (value & !REDIRECT_MASK == CHECKPOINT_REQUEST || last_request(value).is_some())) || (code == SI_TIMER && value == CHECKPOINT_REQUEST)
}

/// Bits 8 to 31 of a value `ckpt checkpoint --to PATH` queues ([`CHECKPOINT_REQUEST`] or
/// [`LAST_CHECKPOINT`]): the number of the redirection it wrote into the process's report page
/// (`ckpt_image::report`, words `TO_SEQ`, `TO_LEN` and the path), never 0. This checkpoint
/// alone goes to that path, if the page still holds that number; a value without one (a
/// periodic checkpoint, another `ckpt checkpoint`, a plain `kill`) never takes the page's
/// path, however stale it is.
pub const REDIRECT_MASK: u64 = 0xff_ffff << 8;
const REDIRECT_SHIFT: u32 = 8;

/// The value of request `value` with redirection number `seq` (only its low 24 bits count; 0:
/// none).
pub fn with_redirect(value: u64, seq: u32) -> u64 {
    (value & !REDIRECT_MASK) | ((seq as u64) << REDIRECT_SHIFT & REDIRECT_MASK)
}

/// The redirection number a queued request value carries (0: none).
pub fn redirect_of(value: u64) -> u32 {
    ((value & REDIRECT_MASK) >> REDIRECT_SHIFT) as u32
}

/// A flag of [`LAST_CHECKPOINT`]'s value: if the image cannot be written and no image of this
/// run of the program exists, the program stops (SIGSTOP) instead of going on, alive, for the
/// caller to try again or let it go on (`ckpt job`). Without it, it goes on running. Either way
/// it never ends without an image.
pub const LAST_STOP_IF_UNSAVED: u64 = 1;

/// A flag of [`LAST_CHECKPOINT`]'s value (`ckpt checkpoint --hold`): once the image is in
/// place the program does not end but stops (SIGSTOP), every process of its tree with it,
/// until it is continued (SIGCONT: it goes on as if nothing happened) or killed. If the image
/// cannot be written it goes on running, whatever images of it exist.
pub const LAST_HOLD: u64 = 2;

/// The flags of a request for the last checkpoint, if the queued value `value` is one.
pub fn last_request(value: u64) -> Option<u64> {
    let flags = LAST_STOP_IF_UNSAVED | LAST_HOLD;
    (value & !(flags | REDIRECT_MASK) == LAST_CHECKPOINT).then_some(value & flags)
}

/// The `si_errno` that `ckpt checkpoint` gives a checkpoint signal it delivered with `ptrace`
/// to a thread that blocked it (every thread of the process did, with a system call libckpt
/// does not see): it unblocked the signal in that thread only for this delivery, and
/// libckpt's handler blocks it again in the context the thread goes back to, and that the
/// image holds. No signal sent by `kill` or `sigqueue` carries a non-zero `si_errno`.
pub const UNBLOCKED_FOR_CHECKPOINT: i32 = 0x434b_5542;

/// A signal by name (`USR1`, `SIGUSR1`, `HUP`, `RTMIN+2`) or number. `rtmin` is the C
/// library's `SIGRTMIN`. Signals the kernel raises on its own, or that cannot be caught, are
/// refused.
pub fn parse_signal(s: &str, rtmin: i32) -> Option<i32> {
    let s = s.trim();
    let s = s.strip_prefix("SIG").unwrap_or(s);
    let sig = match s {
        "USR1" => 10,
        "USR2" => 12,
        "HUP" => 1,
        "PWR" => 30,
        "WINCH" => 28,
        "URG" => 23,
        _ => match s.strip_prefix("RTMIN+") {
            Some(n) => rtmin + n.parse::<i32>().ok()?,
            None => s.parse().ok()?,
        },
    };
    // SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGCHLD.
    let forbidden = [9, 19, 11, 7, 4, 8, 17];
    (1..=64).contains(&sig).then_some(sig).filter(|s| !forbidden.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_others() {
        assert!(is_checkpoint_request(SI_QUEUE, CHECKPOINT_REQUEST));
        assert!(is_checkpoint_request(SI_QUEUE, LAST_CHECKPOINT | LAST_STOP_IF_UNSAVED));
        assert!(is_checkpoint_request(SI_TIMER, CHECKPOINT_REQUEST));
        assert!(!is_checkpoint_request(0, 0), "a plain kill");
        assert!(!is_checkpoint_request(SI_QUEUE, 7), "the program's own sigqueue");
        assert!(!is_checkpoint_request(SI_TIMER, 0), "the program's own timer");
        assert!(!is_checkpoint_request(0, CHECKPOINT_REQUEST), "a kill has no value");
        assert!(is_checkpoint_request(SI_QUEUE, with_redirect(CHECKPOINT_REQUEST, 7)));
        assert!(is_checkpoint_request(SI_QUEUE, with_redirect(LAST_CHECKPOINT | LAST_HOLD, 0xff_ffff)));
        assert!(!is_checkpoint_request(SI_TIMER, with_redirect(CHECKPOINT_REQUEST, 7)), "a timer never redirects");
        assert_eq!(redirect_of(with_redirect(LAST_CHECKPOINT | LAST_HOLD, 5)), 5);
        assert_eq!(last_request(with_redirect(LAST_CHECKPOINT | LAST_HOLD, 5)), Some(LAST_HOLD));
        assert_eq!(last_request(with_redirect(CHECKPOINT_REQUEST, 5)), None);
        assert_eq!(redirect_of(CHECKPOINT_REQUEST), 0);
    }

    #[test]
    fn names_numbers_and_refusals() {
        assert_eq!(parse_signal("USR2", 34), Some(12));
        assert_eq!(parse_signal(" SIGUSR1 ", 34), Some(10));
        assert_eq!(parse_signal("HUP", 34), Some(1));
        assert_eq!(parse_signal("RTMIN+2", 34), Some(36));
        assert_eq!(parse_signal("SIGRTMIN+0", 35), Some(35));
        assert_eq!(parse_signal("40", 34), Some(40));
        for bad in ["KILL", "9", "19", "11", "17", "0", "65", "RTMIN+x", "", "USR3"] {
            assert_eq!(parse_signal(bad, 34), None, "{bad:?}");
        }
    }
}
