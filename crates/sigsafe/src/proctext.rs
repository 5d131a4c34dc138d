//! Fields of `/proc/self/status` and `/proc/self/stat` text, read without allocation.

/// What the kernel appends to the target of a `/proc/PID/fd/N` link (and to a name in
/// `/proc/PID/maps`) whose file was removed from its directory.
pub const DELETED_SUFFIX: &[u8] = b" (deleted)";

/// A `/proc` path with a number in it, `prefix` + `n` + `suffix` (`/proc/self/fd/`, 7, ``),
/// NUL-terminated in `buf` as system calls take it; `None` if it does not fit.
pub fn numbered_path<'b>(buf: &'b mut [u8; 64], prefix: &[u8], n: u64, suffix: &[u8]) -> Option<&'b core::ffi::CStr> {
    let mut w = ckpt_image::bytes::Writer::new(&mut buf[..]);
    w.bytes(prefix);
    w.decimal(n);
    w.bytes(suffix);
    w.u8(0);
    let len = w.finish()?;
    core::ffi::CStr::from_bytes_with_nul(&buf[..len]).ok()
}

/// A `/proc` path with two numbers in it, `/proc/` + `a` + `middle` + `b` + `suffix`
/// (`/proc/12/fd/4`, `/proc/12/task/13/children`), NUL-terminated in `buf`; `None` if it does
/// not fit.
pub fn proc_path2<'b>(buf: &'b mut [u8; 96], a: u64, middle: &[u8], b: u64, suffix: &[u8]) -> Option<&'b core::ffi::CStr> {
    let mut w = ckpt_image::bytes::Writer::new(&mut buf[..]);
    w.bytes(b"/proc/");
    w.decimal(a);
    w.bytes(middle);
    w.decimal(b);
    w.bytes(suffix);
    w.u8(0);
    let len = w.finish()?;
    core::ffi::CStr::from_bytes_with_nul(&buf[..len]).ok()
}

/// The signals thread `tid` of this process blocks now (`SigBlk` in its
/// `/proc/self/task/TID/status`); `None` if that cannot be read.
pub fn thread_blocked(tid: u64) -> Option<u64> {
    let mut path = [0u8; 64];
    let mut buf = [0u8; 2048];
    let p = numbered_path(&mut path, b"/proc/self/task/", tid, b"/status")?;
    let n = crate::file::read_start(p, &mut buf).ok()?;
    status_field(&buf[..n], b"SigBlk:").and_then(parse_hex)
}

/// The value after `key` on its line of a `/proc/self/status` text, trimmed.
pub fn status_field<'a>(status: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    status
        .split(|&c| c == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .map(|v| v.trim_ascii())
}

/// A thread's signal masks, from its `/proc/PID/task/TID/status`: the signals it blocks
/// (`SigBlk`), those pending for it alone (`SigPnd`) and for its whole process (`ShdPnd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalMasks {
    pub blocked: u64,
    pub pending: u64,
    pub shared_pending: u64,
}

/// The signal masks of a thread's status text, if it has all three.
pub fn signal_masks(status: &[u8]) -> Option<SignalMasks> {
    let hex = |key: &[u8]| status_field(status, key).and_then(parse_hex);
    Some(SignalMasks { blocked: hex(b"SigBlk:")?, pending: hex(b"SigPnd:")?, shared_pending: hex(b"ShdPnd:")? })
}

pub fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| c.is_ascii_digit().then(|| v * 10 + (c - b'0') as u64))
}

/// A decimal that may be negative (`-6`: a CPU-time clock's ID).
pub fn parse_signed(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(digits) => parse_dec(digits).filter(|&v| v <= i64::MAX as u64 + 1).map(|v| (v as i64).wrapping_neg()),
        None => parse_dec(s).filter(|&v| v <= i64::MAX as u64).map(|v| v as i64),
    }
}

pub fn parse_oct(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u32, |v, &c| (b'0'..=b'7').contains(&c).then(|| v * 8 + (c - b'0') as u32))
}

pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| (c as char).to_digit(16).map(|d| v << 4 | d as u64))
}

/// One timer of `/proc/PID/timers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcTimer {
    pub id: i32,
    pub signo: u32,
    /// `sigev_value`.
    pub value: u64,
    /// `SIGEV_SIGNAL` (0), `SIGEV_NONE` (1) or `SIGEV_THREAD` (2) (the kernel's words
    /// "signal", "none", "thread"), and whether it targets one thread (`tid.N`) and which.
    pub notify: u32,
    pub to_thread: bool,
    pub target: u32,
    pub clock: i32,
}

/// The timers listed in a `/proc/PID/timers` text (`ID:`, `signal: N/VALUE`,
/// `notify: KIND/pid.N` or `KIND/tid.N`, `ClockID:` per timer). A record that does not parse
/// ends the list.
pub fn timers(text: &[u8]) -> impl Iterator<Item = ProcTimer> + '_ {
    let mut lines = text.split(|&c| c == b'\n').filter(|l| !l.is_empty());
    core::iter::from_fn(move || {
        let id = lines.next()?.strip_prefix(b"ID:")?.trim_ascii();
        let signal = lines.next()?.strip_prefix(b"signal:")?.trim_ascii();
        let notify = lines.next()?.strip_prefix(b"notify:")?.trim_ascii();
        let clock = lines.next()?.strip_prefix(b"ClockID:")?.trim_ascii();
        let slash = signal.iter().position(|&c| c == b'/')?;
        let nslash = notify.iter().position(|&c| c == b'/')?;
        let (kind, target) = (&notify[..nslash], &notify[nslash + 1..]);
        let dot = target.iter().position(|&c| c == b'.')?;
        Some(ProcTimer {
            id: parse_dec(id)? as i32,
            signo: parse_dec(&signal[..slash])? as u32,
            value: parse_hex(&signal[slash + 1..])?,
            notify: match kind {
                b"signal" => 0,
                b"none" => 1,
                b"thread" => 2,
                _ => return None,
            },
            to_thread: &target[..dot] == b"tid",
            target: parse_dec(&target[dot + 1..])? as u32,
            // Negative for a CPU-time clock: `(~PID << 3) | which`, with bit 2 for a thread's
            // (CLOCK_PROCESS_CPUTIME_ID shows as -6, CLOCK_THREAD_CPUTIME_ID as -2).
            clock: i32::try_from(parse_signed(clock)?).ok()?,
        })
    })
}

/// An eventfd's counter and whether it is in semaphore mode, from its fdinfo text
/// (`eventfd-count: %16llx`, hexadecimal; `eventfd-semaphore: %d`).
pub fn eventfd_info(text: &[u8]) -> Option<(u64, bool)> {
    let count = parse_hex(status_field(text, b"eventfd-count:")?)?;
    Some((count, status_field(text, b"eventfd-semaphore:").and_then(parse_dec) == Some(1)))
}

/// A signalfd's mask, from its fdinfo text (`sigmask:` in hexadecimal).
pub fn signalfd_mask(text: &[u8]) -> Option<u64> {
    parse_hex(status_field(text, b"sigmask:")?)
}

/// The registrations of an epoll descriptor's fdinfo text (`tfd: %8d events: %8x data: %16llx
/// …`): `(tfd, events, data)`; `None` for a `tfd:` line that does not parse.
pub fn epoll_registrations(text: &[u8]) -> impl Iterator<Item = Option<(i32, u32, u64)>> + '_ {
    text.split(|&c| c == b'\n').filter_map(|line| line.strip_prefix(b"tfd:")).map(|rest| {
        let mut words = rest.split(|&c| c == b' ' || c == b'\t').filter(|w| !w.is_empty());
        let tfd = parse_dec(words.next()?)? as i32;
        let events = parse_hex(words.nth(1)?)? as u32;
        let data = parse_hex(words.nth(1)?)?;
        Some((tfd, events, data))
    })
}

/// A timerfd as its `/proc/PID/fdinfo` text tells it (`clockid:`, `ticks:`, `settime flags:`,
/// `it_value: (S, NS)`, `it_interval: (S, NS)`). `it_value` is the time left, even for a timer
/// set with an absolute deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerFdInfo {
    pub clock: u32,
    pub ticks: u64,
    pub flags: u32,
    pub left: (i64, i64),
    pub interval: (i64, i64),
}

pub fn timerfd_info(text: &[u8]) -> Option<TimerFdInfo> {
    let pair = |key: &[u8]| -> Option<(i64, i64)> {
        let v = status_field(text, key)?.strip_prefix(b"(")?.strip_suffix(b")")?;
        let comma = v.iter().position(|&c| c == b',')?;
        Some((parse_dec(v[..comma].trim_ascii())? as i64, parse_dec(v[comma + 1..].trim_ascii())? as i64))
    };
    Some(TimerFdInfo {
        clock: parse_dec(status_field(text, b"clockid:")?)? as u32,
        ticks: parse_dec(status_field(text, b"ticks:")?)?,
        flags: parse_oct(status_field(text, b"settime flags:")?)?,
        left: pair(b"it_value:")?,
        interval: pair(b"it_interval:")?,
    })
}

/// One watch of an inotify descriptor's fdinfo (`inotify wd:HEX ino:HEX sdev:HEX mask:HEX …`:
/// every number in hexadecimal, the watch descriptor too).
/// `sdev` is the kernel's internal device number: major in the bits above 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InotifyWatch {
    pub wd: i32,
    pub ino: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub mask: u32,
}

/// The watches listed in an inotify descriptor's fdinfo text; a line that does not parse is
/// left out.
pub fn inotify_watches(text: &[u8]) -> impl Iterator<Item = InotifyWatch> + '_ {
    text.split(|&c| c == b'\n').filter_map(|line| {
        let rest = line.strip_prefix(b"inotify ")?;
        let field = |key: &[u8]| rest.split(|&c| c == b' ').find_map(|w| w.strip_prefix(key));
        let sdev = parse_hex(field(b"sdev:")?)?;
        Some(InotifyWatch {
            wd: parse_hex(field(b"wd:")?)? as i32,
            ino: parse_hex(field(b"ino:")?)?,
            dev_major: (sdev >> 20) as u32,
            dev_minor: (sdev & 0xfffff) as u32,
            mask: parse_hex(field(b"mask:")?)? as u32,
        })
    })
}

/// Field `n` (1-based, as in proc(5)) of `/proc/self/stat`. The command name (field 2) may
/// contain spaces, so fields are counted from the last `)`.
pub fn stat_field(stat: &[u8], n: usize) -> Option<u64> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    let rest = &stat[close + 1..];
    // Field 3 is the first after ')'.
    rest.split(|&c| c == b' ').filter(|f| !f.is_empty()).nth(n.checked_sub(3)?).and_then(|f| parse_dec(f.trim_ascii()))
}

/// The state letter of a `/proc/PID/stat` line (field 3: `R`, `S`, `Z`, …).
pub fn stat_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    stat.get(close + 2).copied()
}

/// Whether a `/proc/PID/stat` line is one of the kernel's own threads (`PF_KTHREAD` in its
/// flags, field 9), which run no program. An unreadable line is taken for one.
pub fn stat_kernel_thread(stat: &[u8]) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    stat_field(stat, 9).is_none_or(|flags| flags & PF_KTHREAD != 0)
}

/// The real user ID of a `/proc/PID/status` text (the first number of its `Uid:` line).
pub fn status_real_uid(status: &[u8]) -> Option<u32> {
    let uids = status_field(status, b"Uid:")?;
    let first = uids.split(|c| c.is_ascii_whitespace()).find(|w| !w.is_empty())?;
    u32::try_from(parse_dec(first)?).ok()
}

/// The command name of a `/proc/PID/stat` line (field 2, without its parentheses).
pub fn stat_comm(stat: &[u8]) -> &[u8] {
    let open = stat.iter().position(|&c| c == b'(').map_or(0, |i| i + 1);
    let close = stat.iter().rposition(|&c| c == b')').unwrap_or(stat.len());
    stat.get(open..close).unwrap_or(&[])
}

/// When a process started, in nanoseconds since the epoch: from its `/proc/PID/stat` (field
/// 22, clock ticks since boot; 100 a second, as on every x86-64 Linux), `/proc/uptime` (seconds
/// since boot, to hundredths) and the current time. Accurate to about 10 ms.
pub fn start_unix_ns(stat: &[u8], uptime: &[u8], now_unix_ns: u64) -> Option<u64> {
    let started = stat_field(stat, 22)?;
    let first = uptime.split(|c| c.is_ascii_whitespace()).next()?;
    let (whole, frac) = match first.iter().position(|&c| c == b'.') {
        Some(dot) => (&first[..dot], &first[dot + 1..]),
        None => (first, &b""[..]),
    };
    let mut hundredths = parse_dec(whole)? * 100;
    for (&d, weight) in frac.iter().zip([10, 1]) {
        hundredths += weight * (d as char).to_digit(10)? as u64;
    }
    let age_ns = hundredths.checked_sub(started)? * 10_000_000;
    now_unix_ns.checked_sub(age_ns)
}

/// The PIDs listed in a `/proc/PID/task/TID/children` file.
pub fn pid_list(text: &[u8]) -> impl Iterator<Item = u32> + '_ {
    text.split(|c| c.is_ascii_whitespace()).filter_map(|f| parse_dec(f).map(|v| v as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_masks_of_a_status() {
        let st = b"Name:\tscript\nSigQ:\t1/63432\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000800\nSigBlk:\tfffffffe7ffbfeff\nSigIgn:\t0\n";
        let m = signal_masks(st).unwrap();
        assert_eq!(m, SignalMasks { blocked: 0xfffffffe7ffbfeff, pending: 0, shared_pending: 0x800 });
        assert_eq!(signal_masks(b"SigPnd:\t0\nSigBlk:\t0\n"), None);
    }

    #[test]
    fn kernel_threads_and_real_users() {
        // kthreadd's flags (PF_KTHREAD set), then a program's (4194560: PF_RANDOMIZE and more).
        assert!(stat_kernel_thread(b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0"));
        assert!(!stat_kernel_thread(b"42 (a prog) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 1500 1000 10 0"));
        assert!(stat_kernel_thread(b"garbage"));
        assert_eq!(status_real_uid(b"Name:\tpostgres\nUid:\t65534\t0\t65534\t65534\nGid:\t0\t0\t0\t0\n"), Some(65534));
        assert_eq!(status_real_uid(b"Name:\tx\n"), None);
    }

    #[test]
    fn start_time_from_stat_and_uptime() {
        let stat = b"42 (a prog) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 1500 1000 10 0";
        // Up 20.5 s, started 15 s after boot: 5.5 s ago.
        assert_eq!(start_unix_ns(stat, b"20.50 30.00\n", 100_000_000_000), Some(94_500_000_000));
        assert_eq!(start_unix_ns(stat, b"20.5 30.0\n", 100_000_000_000), Some(94_500_000_000));
        assert_eq!(start_unix_ns(stat, b"10.00 1.00\n", 100_000_000_000), None);
        assert_eq!(start_unix_ns(b"garbage", b"20.50 1\n", 1), None);
    }

    #[test]
    fn eventfd_signalfd_and_epoll_fdinfo() {
        let e = b"pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\neventfd-count:               2a\neventfd-id: 3\neventfd-semaphore: 1\n";
        assert_eq!(eventfd_info(e), Some((42, true)));
        assert_eq!(signalfd_mask(b"pos:\t0\nsigmask:\t0000000000000200\n"), Some(0x200));
        let ep = b"pos:\t0\ntfd:        5 events:       19 data:                a  pos:0 ino:1 sdev:f\ntfd:       12 events: 80000001 data: ffffffffffffffff  pos:0 ino:2 sdev:f\n";
        let regs: [Option<(i32, u32, u64)>; 2] = {
            let mut it = epoll_registrations(ep);
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(regs, [Some((5, 0x19, 0xa)), Some((12, 0x8000_0001, u64::MAX))]);
    }

    #[test]
    fn stat_and_children() {
        let st = b"4242 (a) b (c)) Z 17 4242 17 0 -1 4194828";
        assert_eq!(stat_state(st), Some(b'Z'));
        assert_eq!(stat_comm(st), b"a) b (c)");
        assert_eq!(stat_field(st, 4), Some(17));
        let mut buf = [0u8; 96];
        assert_eq!(proc_path2(&mut buf, 12, b"/task/", 13, b"/children"), Some(c"/proc/12/task/13/children"));
        let mut it = pid_list(b"12 345 6 \n");
        assert_eq!([it.next(), it.next(), it.next(), it.next()], [Some(12), Some(345), Some(6), None]);
    }

    #[test]
    fn timerfd_and_inotify_fdinfo() {
        let t = b"pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\nclockid: 1\nticks: 3\nsettime flags: 01\nit_value: (0, 499912345)\nit_interval: (1, 0)\n";
        assert_eq!(timerfd_info(t), Some(TimerFdInfo { clock: 1, ticks: 3, flags: 1, left: (0, 499912345), interval: (1, 0) }));
        assert_eq!(timerfd_info(b"clockid: 1\n"), None);
        let i = b"pos:\t0\nflags:\t00\ninotify wd:1f ino:a0b3 sdev:800001 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:b3a00000\ninotify wd:10 ino:2 sdev:fd00000 mask:100 ignored_mask:0\n";
        let w: [InotifyWatch; 2] = {
            let mut it = inotify_watches(i);
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(w[0], InotifyWatch { wd: 31, ino: 0xa0b3, dev_major: 8, dev_minor: 1, mask: 0xfce });
        assert_eq!((w[1].wd, w[1].dev_major, w[1].dev_minor), (16, 0xfd, 0), "watch descriptors are hexadecimal too");
    }

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parens() {
        let stat = b"4242 (a b) c) S 1 4242 4242 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 123 4096 1 18446744073709551615 94 95 140";
        assert_eq!(stat_field(stat, 3), None, "the state letter is not a number");
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 26), Some(94));
        assert_eq!(stat_field(stat, 28), Some(140));
        assert_eq!(stat_field(stat, 29), None);
        assert_eq!(stat_field(b"no parens", 4), None);
    }

    #[test]
    fn numbered_paths() {
        let mut buf = [0u8; 64];
        assert_eq!(numbered_path(&mut buf, b"/proc/self/fd/", 0, b"").unwrap().to_bytes(), b"/proc/self/fd/0");
        assert_eq!(numbered_path(&mut buf, b"/proc/self/task/", 4242, b"/comm").unwrap().to_bytes(), b"/proc/self/task/4242/comm");
        assert!(numbered_path(&mut buf, &[b'x'; 50], u64::MAX, b"").is_none());
    }

    #[test]
    fn timers_of_proc() {
        let text = b"ID: 0\nsignal: 10/0000000000001234\nnotify: signal/pid.707\nClockID: 1\n\
                     ID: 3\nsignal: 34/0000000000000000\nnotify: signal/tid.709\nClockID: 0\n";
        let t: [ProcTimer; 2] = {
            let mut it = timers(text);
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(t[0], ProcTimer { id: 0, signo: 10, value: 0x1234, notify: 0, to_thread: false, target: 707, clock: 1 });
        assert_eq!((t[1].id, t[1].signo, t[1].to_thread, t[1].target, t[1].clock), (3, 34, true, 709, 0));
        assert_eq!(timers(b"ID: x\n").next(), None);
        // CPU-time clocks: the process's and a thread's of its own, and another process's.
        let cpu = b"ID: 1\nsignal: 36/0000000000000000\nnotify: signal/pid.707\nClockID: -6\n\
                    ID: 2\nsignal: 36/0000000000000000\nnotify: signal/pid.707\nClockID: -2\n\
                    ID: 4\nsignal: 36/0000000000000000\nnotify: signal/pid.707\nClockID: -5658\n";
        let clocks: [i32; 3] = core::array::from_fn(|i| timers(cpu).nth(i).unwrap().clock);
        assert_eq!(clocks, [-6, -2, -5658]);
        assert_eq!(parse_signed(b"-"), None);
        assert_eq!(parse_signed(b"--1"), None);
    }

    #[test]
    fn status_fields_and_numbers() {
        let status = b"Name:\tx\nUmask:\t0027\nThreads:\t3\n";
        assert_eq!(status_field(status, b"Threads:").and_then(parse_dec), Some(3));
        assert_eq!(status_field(status, b"Umask:").and_then(parse_oct), Some(0o27));
        assert_eq!(status_field(status, b"Missing:"), None);
        assert_eq!(parse_oct(b"8"), None);
        assert_eq!(parse_hex(b"0000000000000a01"), Some(0xa01));
        assert_eq!(parse_hex(b"x"), None);
        assert_eq!(parse_dec(b""), None);
    }
}
