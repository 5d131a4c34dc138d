//! `NT_CKPT_WRITTEN`: the files the program could write in place at the checkpoint, each as it
//! was then, and the one rule by which a restart decides that such a file changed since (so
//! that the program would go on from its memory at the checkpoint with its files as they are
//! later: a database's WAL and heap files, a build cache, a model checkpoint).
//!
//! Which files are watched ([`watches_descriptor`], [`watches_mapping`]): regular files the
//! program had open for writing (`O_WRONLY`, `O_RDWR`), and files it mapped `MAP_SHARED` and
//! writable. Not watched: POSIX shared memory objects mapped shared (`/dev/shm`, whose bytes the
//! image stores: [`crate::region::stores_shared_file`]), nor a descriptor of one so mapped, a descriptor opened `O_APPEND` (every write it makes goes to the end,
//! so nothing the program knows of the bytes before is written over: logs), and the program's
//! stdout and stderr in a regular file (its logs, which have their own rule: see
//! [`crate::fds::FdRecord::is_std_log`]). Files of the kernel's (/proc, /sys) are not recorded.
//!
//! What counts as a change ([`change`]): another file at the path (another inode; another
//! device only where the size or modification time differ too, since another node gives the
//! same NFS file another device number), a file shorter than it was, and then:
//! - a file of at most [`crate::limits::WRITTEN_HASH_MAX`] bytes (while the checkpoint's total
//!   [`crate::limits::WRITTEN_HASH_TOTAL`] lasts) carries the hash of its bytes: it changed if
//!   the bytes it had then differ now. It may have grown past them (records added at its end
//!   are not something the program's memory knows of, as with a log);
//! - a larger one carries no hash, and changed if its size, modification time or status change
//!   time differ (a write in the same clock tick as the last one before the checkpoint leaves
//!   the times as they were, and is not seen).
//!
//! ```text
//!   a record per file, 8-byte aligned, 72 bytes then the path:
//!     u64 dev, ino                the file (st_dev, st_ino)
//!     u64 size                    its size
//!     i64 mtime_sec, ctime_sec    its modification and status change times
//!     u32 mtime_nsec, ctime_nsec
//!     u64 hash                    xxh3-64 of its `size` bytes, if flags has HASHED
//!     u32 flags                   HASHED (1), MAPPED (2: written through a shared mapping)
//!     i32 fd                      the lowest descriptor open on it for writing, or -1
//!     u32 path_len, u32 reserved (0)
//!     path_len bytes              its path, then zeros to an 8-byte boundary
//! ```

use crate::bytes::{Reader, Records, Writer};
use crate::fds::{FdKind, FdRecord};
use crate::ImageError;

/// Bytes of a record before its path.
pub const WRITTEN_RECORD_SIZE: usize = 72;

const HASHED: u32 = 1;
const MAPPED: u32 = 2;
/// `O_ACCMODE` and `O_APPEND` as `fcntl(F_GETFL)` shows them (x86-64).
const O_ACCMODE: u32 = 3;
const O_APPEND: u32 = 0o2000;

/// A file as `fstat` shows it, and the hash of its bytes where it was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileState {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub hash: Option<u64>,
}

/// One watched file: its state at the checkpoint, how the program could write it, its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenRecord {
    pub state: FileState,
    /// Written through a `MAP_SHARED` writable mapping.
    pub mapped: bool,
    /// The lowest descriptor open on it for writing, or -1 (a mapping only).
    pub fd: i32,
}

impl WrittenRecord {
    pub fn write(&self, w: &mut Writer, path: &[u8]) {
        let s = &self.state;
        w.u64(s.dev);
        w.u64(s.ino);
        w.u64(s.size);
        w.u64(s.mtime.0 as u64);
        w.u64(s.ctime.0 as u64);
        w.u32(s.mtime.1);
        w.u32(s.ctime.1);
        w.u64(s.hash.unwrap_or(0));
        w.u32(if s.hash.is_some() { HASHED } else { 0 } | if self.mapped { MAPPED } else { 0 });
        w.u32(self.fd as u32);
        w.u32(path.len() as u32);
        w.u32(0);
        w.bytes(path);
        w.align(8);
    }

    pub fn read<'a>(r: &mut Reader<'a>) -> Result<(WrittenRecord, &'a [u8]), ImageError> {
        let (dev, ino, size) = (r.u64()?, r.u64()?, r.u64()?);
        let (msec, csec, mnsec, cnsec) = (r.u64()? as i64, r.u64()? as i64, r.u32()?, r.u32()?);
        let (hash, flags, fd, len) = (r.u64()?, r.u32()?, r.u32()? as i32, r.u32()? as usize);
        r.skip(4)?;
        // A hash of more bytes than a checkpoint hashes would have a restart read them all.
        let too_big = flags & HASHED != 0 && size > crate::limits::WRITTEN_HASH_MAX;
        if flags & !(HASHED | MAPPED) != 0 || mnsec >= 1_000_000_000 || cnsec >= 1_000_000_000 || !(-1..crate::fds::MAX_FD).contains(&fd) || too_big {
            return Err(ImageError::Malformed("bad written-file record"));
        }
        let path = r.bytes(len)?;
        r.align(8)?;
        let state = FileState { dev, ino, size, mtime: (msec, mnsec), ctime: (csec, cnsec), hash: (flags & HASHED != 0).then_some(hash) };
        Ok((WrittenRecord { state, mapped: flags & MAPPED != 0, fd }, path))
    }

    /// Bytes the record takes with a path of `path_len` bytes.
    pub const fn encoded_len(path_len: usize) -> usize {
        (WRITTEN_RECORD_SIZE + path_len).next_multiple_of(8)
    }
}

/// The records of an `NT_CKPT_WRITTEN` descriptor, with their paths.
pub type WrittenIter<'a> = Records<'a, (WrittenRecord, &'a [u8])>;

pub fn records(desc: &[u8]) -> WrittenIter<'_> {
    Records::new(desc, WrittenRecord::read)
}

/// Whether the file of descriptor record `rec` is watched: a regular file open for writing,
/// not to append, and not the program's stdout or stderr (see the module's notes).
pub fn watches_descriptor(rec: &FdRecord) -> bool {
    rec.kind == FdKind::File && rec.open_flags & O_ACCMODE != 0 && rec.open_flags & O_APPEND == 0 && !rec.is_std_log()
}

/// Whether a mapping of a regular file, shared (`MAP_SHARED`) and writable, is watched: always,
/// but for a POSIX shared memory object (`stored`: [`crate::region::stores_shared_file`]),
/// whose bytes the image holds and a restart puts back.
pub fn watches_mapping(shared: bool, writable: bool, stored: bool) -> bool {
    shared && writable && !stored
}

/// Whether a file of `size` bytes gets a hash of its bytes, `used` bytes of the checkpoint's
/// total having gone to the files before it.
pub fn hashes(size: u64, used: u64) -> bool {
    size <= crate::limits::WRITTEN_HASH_MAX && used.saturating_add(size) <= crate::limits::WRITTEN_HASH_TOTAL
}

/// Every record of an `NT_CKPT_WRITTEN` note well formed, and their hashes of no more bytes
/// in all than one checkpoint hashes ([`crate::limits::WRITTEN_HASH_TOTAL`]): a restart reads
/// those bytes again.
pub fn check_hashed_total(records: WrittenIter) -> Result<(), ImageError> {
    let mut hashed = 0u64;
    for r in records {
        let (rec, _) = r?;
        if rec.state.hash.is_some() {
            hashed = hashed.saturating_add(rec.state.size);
        }
    }
    if hashed > crate::limits::WRITTEN_HASH_TOTAL {
        return Err(ImageError::Malformed("written-file records hash more bytes than a checkpoint does"));
    }
    Ok(())
}

/// How a watched file changed since the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Another file is at its path.
    Replaced,
    /// It is shorter: `then` bytes, `now` bytes.
    Shrunk { then: u64, now: u64 },
    /// The bytes it had at the checkpoint differ now.
    Contents,
    /// Its size or times differ (a file too large to hash): `then` bytes, `now` bytes.
    Written { then: u64, now: u64 },
}

impl core::fmt::Display for Change {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Change::Replaced => f.write_str("another file is at its path now"),
            Change::Shrunk { then, now } => write!(f, "{then} bytes then, {now} now"),
            Change::Contents => f.write_str("bytes it had then differ now"),
            Change::Written { then, now } if then == now => write!(f, "{now} bytes, written since: its modification or change time differs"),
            Change::Written { then, now } => write!(f, "{then} bytes then, {now} now"),
        }
    }
}

/// The rule: whether a file recorded as `then` and found as `now` changed (see the module's
/// notes). `hash_now` hashes the file's first `then.size` bytes as they are now (through
/// [`crate::filemaps::content_hash`]), `None` if it cannot be read; asked only for a file that
/// carries a hash.
pub fn change(then: &FileState, now: &FileState, hash_now: impl FnOnce(u64) -> Option<u64>) -> Option<Change> {
    // Another device alone is not another file: another node numbers the same NFS file's
    // device its own way. With the inode, size and modification time the same, the rules
    // below (bytes or times) decide.
    let moved = then.dev != now.dev && (then.size, then.mtime) != (now.size, now.mtime);
    if then.ino != now.ino || moved {
        return Some(Change::Replaced);
    }
    if now.size < then.size {
        return Some(Change::Shrunk { then: then.size, now: now.size });
    }
    let same_times = now.size == then.size && now.mtime == then.mtime && now.ctime == then.ctime;
    match then.hash {
        Some(h) => match hash_now(then.size) {
            Some(n) if n == h => None,
            Some(_) => Some(Change::Contents),
            // Unreadable now: only the times can tell.
            None if same_times => None,
            None => Some(Change::Written { then: then.size, now: now.size }),
        },
        None if same_times => None,
        None => Some(Change::Written { then: then.size, now: now.size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(size: u64, t: i64, hash: Option<u64>) -> FileState {
        FileState { dev: 1, ino: 2, size, mtime: (t, 5), ctime: (t, 6), hash }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut buf = [0u8; 256];
        let rec = WrittenRecord { state: state(4096, 100, Some(77)), mapped: true, fd: -1 };
        let mut w = Writer::new(&mut buf);
        rec.write(&mut w, b"/tmp/data");
        rec.write(&mut w, b"");
        let len = w.finish().unwrap();
        assert_eq!(len, WrittenRecord::encoded_len(9) + WrittenRecord::encoded_len(0));
        let got: [_; 2] = core::array::from_fn(|_| ());
        let mut it = records(&buf[..len]);
        for _ in got {
            assert_eq!(it.next().unwrap().unwrap().0, rec);
        }
        assert!(it.next().is_none());
        buf[56] |= 8; // an unknown flag
        assert!(records(&buf[..len]).next().unwrap().is_err());
    }

    #[test]
    fn a_hash_of_more_than_a_checkpoint_hashes_is_malformed() {
        use crate::limits::WRITTEN_HASH_MAX;
        let mut buf = [0u8; 128];
        for (size, ok) in [(WRITTEN_HASH_MAX, true), (WRITTEN_HASH_MAX + 1, false), (u64::MAX, false)] {
            let len = {
                let mut w = Writer::new(&mut buf);
                WrittenRecord { state: state(size, 1, Some(7)), mapped: false, fd: 3 }.write(&mut w, b"/f");
                w.finish().unwrap()
            };
            assert_eq!(records(&buf[..len]).next().unwrap().is_ok(), ok, "{size}");
        }
        // Without a hash, any size is the file's.
        let mut w = Writer::new(&mut buf);
        WrittenRecord { state: state(u64::MAX, 1, None), mapped: false, fd: 3 }.write(&mut w, b"/f");
        let len = w.finish().unwrap();
        assert!(records(&buf[..len]).next().unwrap().is_ok());
    }

    #[test]
    fn hashed_sizes_within_the_total() {
        use crate::limits::{WRITTEN_HASH_MAX, WRITTEN_HASH_TOTAL};
        let mut buf = [0u8; 80 * 20];
        let mut w = Writer::new(&mut buf);
        let n = (WRITTEN_HASH_TOTAL / WRITTEN_HASH_MAX) as usize;
        for _ in 0..n {
            WrittenRecord { state: state(WRITTEN_HASH_MAX, 1, Some(7)), mapped: false, fd: 3 }.write(&mut w, b"/f");
        }
        let at_total = w.finish().unwrap();
        assert!(check_hashed_total(records(&buf[..at_total])).is_ok());
        let mut w = Writer::new(&mut buf[at_total..]);
        WrittenRecord { state: state(1, 1, Some(7)), mapped: false, fd: 3 }.write(&mut w, b"/f");
        let more = w.finish().unwrap();
        assert!(check_hashed_total(records(&buf[..at_total + more])).is_err());
    }

    #[test]
    fn which_descriptors_and_mappings_are_watched() {
        let rec = |fd, kind, flags| FdRecord {
            fd,
            kind,
            open_flags: flags,
            fd_flags: 0,
            offset: 0,
            same_as: -1,
            mode: 0,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            blob_offset: 0,
            blob_len: 0,
            blob_hash: 0,
            aux: 0,
            uid: 0,
            birth: None,
        };
        assert!(watches_descriptor(&rec(3, FdKind::File, 2)), "O_RDWR");
        assert!(watches_descriptor(&rec(3, FdKind::File, 1)), "O_WRONLY");
        assert!(!watches_descriptor(&rec(3, FdKind::File, 0)), "read only");
        assert!(!watches_descriptor(&rec(3, FdKind::File, 1 | O_APPEND)), "appended to");
        assert!(!watches_descriptor(&rec(1, FdKind::File, 1)), "stdout in a file");
        assert!(!watches_descriptor(&rec(3, FdKind::Deleted, 2)), "its bytes are in the image");
        assert!(watches_mapping(true, true, false) && !watches_mapping(true, false, false) && !watches_mapping(false, true, false) && !watches_mapping(true, true, true));
    }

    #[test]
    fn what_counts_as_a_change() {
        let never = |_| -> Option<u64> { panic!("no hash to compare") };
        // Too large to hash: any difference counts.
        assert_eq!(change(&state(10, 1, None), &state(10, 1, None), never), None);
        assert_eq!(change(&state(10, 1, None), &state(10, 2, None), never), Some(Change::Written { then: 10, now: 10 }));
        assert_eq!(change(&state(10, 1, None), &state(12, 2, None), never), Some(Change::Written { then: 10, now: 12 }));
        assert_eq!(change(&state(10, 1, None), &state(8, 2, None), never), Some(Change::Shrunk { then: 10, now: 8 }));
        let other = FileState { ino: 3, ..state(10, 1, None) };
        assert_eq!(change(&state(10, 1, None), &other, never), Some(Change::Replaced));
        // Another device (the same NFS file seen from another node): the same file while its
        // inode, size and time are; another file where they differ.
        let elsewhere = FileState { dev: 9, ..state(10, 1, None) };
        assert_eq!(change(&state(10, 1, None), &elsewhere, never), None);
        assert_eq!(change(&state(10, 1, Some(7)), &elsewhere, |_| Some(8)), Some(Change::Contents));
        assert_eq!(change(&state(10, 1, None), &FileState { dev: 9, ..state(10, 2, None) }, never), Some(Change::Replaced));
        // Hashed: the bytes it had decide; it may have grown.
        assert_eq!(change(&state(10, 1, Some(7)), &state(20, 2, None), |n| (n == 10).then_some(7)), None);
        assert_eq!(change(&state(10, 1, Some(7)), &state(10, 1, None), |_| Some(8)), Some(Change::Contents), "same times, other bytes");
        assert_eq!(change(&state(10, 1, Some(7)), &state(10, 1, None), |_| None), None);
        assert_eq!(change(&state(10, 1, Some(7)), &state(10, 2, None), |_| None), Some(Change::Written { then: 10, now: 10 }));
    }

    #[test]
    fn what_is_hashed() {
        use crate::limits::{WRITTEN_HASH_MAX, WRITTEN_HASH_TOTAL};
        assert!(hashes(0, 0) && hashes(WRITTEN_HASH_MAX, 0));
        assert!(!hashes(WRITTEN_HASH_MAX + 1, 0));
        assert!(!hashes(1, WRITTEN_HASH_TOTAL));
    }
}
