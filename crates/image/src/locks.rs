//! `NT_CKPT_LOCKS`: the file locks the process held at the checkpoint, one record each
//! ([`LOCK_RECORD_SIZE`] bytes): `flock` locks and OFD locks (held by an open file description),
//! POSIX record locks (held by the process), and the leases and locks a restart cannot take
//! again, so that it can name them. The note is absent when there are none.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const LOCK_RECORD_SIZE: usize = 32;

/// What kind of lock, as `/proc/PID/fdinfo` calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LockKind {
    /// `flock(2)`: the whole file, held by the open file description.
    Flock = 1,
    /// `fcntl(F_SETLK)`: a byte range, held by the process.
    Posix = 2,
    /// `fcntl(F_OFD_SETLK)`: a byte range, held by the open file description.
    Ofd = 3,
    /// `fcntl(F_SETLEASE)`: never taken again (named at checkpoint and restart).
    Lease = 4,
    /// Anything else the kernel shows (a delegation, a kind this version does not know): never
    /// taken again, named.
    Other = 5,
}

/// In a record's flags: a write (exclusive) lock; a read (shared) one without it.
pub const LOCK_WRITE: u32 = 1;
/// In a record's flags: the kernel showed it as mandatory (kernels before 5.15): never taken
/// again, named.
pub const LOCK_MANDATORY: u32 = 2;

/// One lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRecord {
    /// The lowest descriptor of the open file description the lock shows on.
    pub fd: i32,
    pub kind: LockKind,
    /// [`LOCK_WRITE`], [`LOCK_MANDATORY`].
    pub flags: u32,
    /// First byte locked.
    pub start: u64,
    /// Bytes locked; 0: from `start` to the end of the file, however long it grows (as
    /// `struct flock`'s `l_len` says it).
    pub len: u64,
}

impl LockRecord {
    pub fn write_lock(&self) -> bool {
        self.flags & LOCK_WRITE != 0
    }

    /// Whether a restart takes it again (on a descriptor it reopens by path): a `flock`,
    /// POSIX or OFD lock that is not mandatory.
    pub fn restorable(&self) -> bool {
        matches!(self.kind, LockKind::Flock | LockKind::Posix | LockKind::Ofd) && self.flags & LOCK_MANDATORY == 0
    }

    /// Why a restart does not take this lock again on a descriptor of kind `fd_kind`, if it
    /// does not (the checkpoint and the restart name it with these words).
    pub fn why_not_restored(&self, fd_kind: crate::fds::FdKind) -> Option<&'static str> {
        use crate::fds::FdKind;
        match fd_kind {
            FdKind::File | FdKind::Directory | FdKind::Device if self.restorable() => None,
            FdKind::File | FdKind::Directory | FdKind::Device => Some("ckpt cannot take such a lock again"),
            FdKind::Deleted | FdKind::MemFd => Some("the image stores the file rather than naming it"),
            FdKind::Inherit => Some("the descriptor comes back as myrestart's own"),
            _ => Some("ckpt takes locks again only on the files, directories and devices it reopens by path"),
        }
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.fd as u32);
        w.u32(self.kind as u32);
        w.u32(self.flags);
        w.u32(0);
        w.u64(self.start);
        w.u64(self.len);
    }

    pub fn read(r: &mut Reader) -> Result<LockRecord, ImageError> {
        let fd = r.u32()? as i32;
        let kind = match r.u32()? {
            1 => LockKind::Flock,
            2 => LockKind::Posix,
            3 => LockKind::Ofd,
            4 => LockKind::Lease,
            5 => LockKind::Other,
            _ => return Err(ImageError::Malformed("unknown lock kind")),
        };
        let flags = r.u32()?;
        let reserved = r.u32()?;
        let rec = LockRecord { fd, kind, flags, start: r.u64()?, len: r.u64()? };
        let whole = rec.kind == LockKind::Flock && (rec.start, rec.len) != (0, 0);
        let past_end = rec.start > i64::MAX as u64 || rec.len > i64::MAX as u64 || rec.start.checked_add(rec.len).is_none_or(|e| e > i64::MAX as u64 + 1);
        if !(0..crate::fds::MAX_FD).contains(&fd) || flags & !(LOCK_WRITE | LOCK_MANDATORY) != 0 || reserved != 0 || whole || past_end {
            return Err(ImageError::Malformed("bad lock record"));
        }
        Ok(rec)
    }
}

/// The records of an `NT_CKPT_LOCKS` descriptor.
pub type LockIter<'a> = Records<'a, LockRecord>;

pub fn records(desc: &[u8]) -> LockIter<'_> {
    Records::new(desc, LockRecord::read)
}

/// The locks of `locks`, each with the record of the descriptor it names (of `fds`, the same
/// image's), found in one walk over both notes: a checkpoint records each descriptor's locks
/// as it records the descriptor, so the locks come in the order of their descriptors' records
/// (and name the first descriptor of their open file description). A lock that names no
/// descriptor after the previous lock's is malformed: a lookup by descriptor costs no scan of
/// every descriptor for each lock.
pub fn on_descriptors<'a>(locks: LockIter<'a>, fds: crate::fds::FdIter<'a>) -> OnDescriptors<'a> {
    OnDescriptors { locks, fds, current: None }
}

/// See [`on_descriptors`].
pub struct OnDescriptors<'a> {
    locks: LockIter<'a>,
    fds: crate::fds::FdIter<'a>,
    current: Option<(crate::fds::FdRecord, &'a [u8])>,
}

impl<'a> Iterator for OnDescriptors<'a> {
    type Item = Result<(LockRecord, crate::fds::FdRecord, &'a [u8]), ImageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let lock = match self.locks.next()? {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        loop {
            if let Some((f, path)) = self.current.filter(|(f, _)| f.fd == lock.fd && f.same_as < 0) {
                return Some(Ok((lock, f, path)));
            }
            match self.fds.next() {
                Some(Ok(f)) => self.current = Some(f),
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.locks = records(&[]);
                    return Some(Err(ImageError::Malformed("a lock record names no descriptor, or not in the order of the descriptors")));
                }
            }
        }
    }
}

/// How the program took it, for messages: `flock write lock`, `fcntl read lock on bytes
/// 10-109`, `OFD write lock on bytes 500 to the end`, `lease (read)`.
impl core::fmt::Display for LockRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let rw = if self.write_lock() { "write" } else { "read" };
        let mand = if self.flags & LOCK_MANDATORY != 0 { "mandatory " } else { "" };
        let by = match self.kind {
            LockKind::Flock => return write!(f, "flock {rw} lock"),
            LockKind::Lease => return write!(f, "lease ({rw})"),
            LockKind::Other => return f.write_str("lock of a kind ckpt does not know"),
            LockKind::Posix => "fcntl",
            LockKind::Ofd => "OFD",
        };
        match (self.start, self.len) {
            (0, 0) => write!(f, "{mand}{by} {rw} lock on the whole file"),
            (s, 0) => write!(f, "{mand}{by} {rw} lock on bytes {s} to the end"),
            (s, l) => write!(f, "{mand}{by} {rw} lock on bytes {s}-{}", s + l - 1),
        }
    }
}
