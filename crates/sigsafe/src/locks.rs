//! The `lock:` lines of a `/proc/PID/fdinfo/FD` text: the file locks held through that
//! descriptor's open file description. The kernel shows there only the locks whose owner is
//! that description (`flock`, OFD) or the process that reads them (POSIX locks it set through
//! it), not other holders' locks on the same file; each line is laid out as in `/proc/locks`:
//! `lock:\tN: KIND MODE TYPE PID MAJ:MIN:INODE START END`, `END` being `EOF` for a lock to the
//! end of the file.

use crate::proctext::parse_dec;
use ckpt_image::locks::{LockKind, LockRecord, LOCK_MANDATORY, LOCK_WRITE};

/// The inode number of each lock line of a `/proc/locks` text (every lock of the system, of
/// every holder, and the requests waiting for one, `->` lines): which files are locked at all,
/// so that only their descriptors' fdinfo need be read. A line that does not parse is left
/// out: the caller reads every fdinfo if it cannot trust the list.
pub fn locked_inodes(text: &[u8]) -> impl Iterator<Item = Option<u64>> + '_ {
    text.split(|&c| c == b'\n').filter(|l| !l.is_empty()).map(|line| {
        let file = line.split(|c| c.is_ascii_whitespace()).find(|w| w.iter().filter(|&&c| c == b':').count() == 2)?;
        let colon = file.iter().rposition(|&c| c == b':')?;
        parse_dec(&file[colon + 1..])
    })
}

/// The locks of an fdinfo text, each as a record for descriptor `fd`; a `lock:` line that does
/// not parse comes as a lock of [`LockKind::Other`] (named, never taken again).
pub fn fd_locks(text: &[u8], fd: i32) -> impl Iterator<Item = LockRecord> + '_ {
    text.split(|&c| c == b'\n').filter_map(|line| line.strip_prefix(b"lock:")).map(move |rest| {
        parse_lock(rest, fd).unwrap_or(LockRecord { fd, kind: LockKind::Other, flags: 0, start: 0, len: 0 })
    })
}

fn parse_lock(rest: &[u8], fd: i32) -> Option<LockRecord> {
    let mut words = rest.split(|c| c.is_ascii_whitespace()).filter(|w| !w.is_empty());
    let _number = words.next()?.strip_suffix(b":")?;
    let kind = match words.next()? {
        b"FLOCK" => LockKind::Flock,
        b"POSIX" => LockKind::Posix,
        b"OFDLCK" => LockKind::Ofd,
        b"LEASE" => LockKind::Lease,
        _ => LockKind::Other,
    };
    let mode = words.next()?;
    let write = match words.next()? {
        b"WRITE" => true,
        b"READ" => false,
        _ => return Some(LockRecord { fd, kind: LockKind::Other, flags: 0, start: 0, len: 0 }),
    };
    let _pid = words.next()?;
    let _file = words.next()?;
    let start = parse_dec(words.next()?)?;
    let end = words.next()?;
    let mut flags = if write { LOCK_WRITE } else { 0 };
    if mode == b"MANDATORY" {
        flags |= LOCK_MANDATORY;
    }
    let len = match end {
        b"EOF" => 0,
        _ => parse_dec(end)?.checked_sub(start)?.checked_add(1)?,
    };
    // A `flock` lock covers the whole file, whatever the line says.
    let (start, len) = if kind == LockKind::Flock { (0, 0) } else { (start, len) };
    Some(LockRecord { fd, kind, flags, start, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_of_fdinfo() {
        let text = b"pos:\t0\nflags:\t02100002\nmnt_id:\t27\nino:\t10011317\n\
                     lock:\t1: FLOCK  ADVISORY  WRITE 20767 fe:00:10011316 0 EOF\n\
                     lock:\t2: POSIX  ADVISORY  WRITE 20767 fe:00:10011317 10 109\n\
                     lock:\t3: OFDLCK ADVISORY  READ -1 fe:00:10011317 500 EOF\n\
                     lock:\t4: LEASE  ACTIVE    READ 20767 fe:00:10011317 0 EOF\n\
                     lock:\t5: POSIX  MANDATORY WRITE 20767 fe:00:10011317 0 0\n\
                     lock:\t6: what is this\n";
        let mut it = fd_locks(text, 4);
        let mut next = || it.next().map(|l| (l.kind, l.flags, l.start, l.len));
        assert_eq!(next(), Some((LockKind::Flock, LOCK_WRITE, 0, 0)));
        assert_eq!(next(), Some((LockKind::Posix, LOCK_WRITE, 10, 100)));
        assert_eq!(next(), Some((LockKind::Ofd, 0, 500, 0)));
        assert_eq!(next(), Some((LockKind::Lease, 0, 0, 0)));
        assert_eq!(next(), Some((LockKind::Posix, LOCK_WRITE | LOCK_MANDATORY, 0, 1)));
        assert_eq!(next(), Some((LockKind::Other, 0, 0, 0)));
        assert_eq!(next(), None);
        assert_eq!(fd_locks(b"pos:\t0\n", 3).count(), 0);
    }

    #[test]
    fn inodes_of_proc_locks() {
        let text = b"1: OFDLCK ADVISORY  READ -1 fe:00:10011317 500 EOF\n\
                     2: POSIX  ADVISORY  WRITE 20767 fe:00:42 10 109\n\
                     2: -> POSIX  ADVISORY  WRITE 20800 fe:00:42 10 109\n\
                     3: garbled\n";
        let mut it = locked_inodes(text);
        assert_eq!([it.next(), it.next(), it.next(), it.next(), it.next()], [Some(Some(10011317)), Some(Some(42)), Some(Some(42)), Some(None), None]);
    }
}
