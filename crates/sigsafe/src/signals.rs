//! Signal names as `CKPT_SIGNAL` and `ckpt run --signal` accept them, parsed the same way by
//! the library and the command.

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
