//! `NT_CKPT_FDS`: the open file descriptors and how to bring each back.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

/// In a socket's `aux`: its queued messages carried descriptors (`SCM_RIGHTS`), not saved.
pub const LOST_PASSED_FDS: u64 = 1 << 63;

/// Descriptor numbers are below this (the kernel's largest `nr_open`).
pub const MAX_FD: i32 = 1 << 30;

/// Bytes of a record before its path.
pub const FD_RECORD_SIZE: usize = 128;

/// In a record's flags: the file's birth time is known ([`FdRecord::birth`]).
const HAS_BIRTH: u32 = 1;

/// How many bytes before a log's size at the checkpoint its tail hash covers (see
/// [`FdRecord::is_std_log`]).
pub const LOG_TAIL: u64 = 4096;

/// The tail hash of a log of `size` bytes: the xxh3-64 of its last `min(size, LOG_TAIL)` bytes
/// before `size`, read with `read(at, buf)` through `buf` (as
/// [`crate::hash::content_hash`] reads). `None` if the file ends before `size`. The
/// checkpoint and the restart hash a log through this one function.
pub fn log_tail_hash<E>(size: u64, buf: &mut [u8], read: impl FnMut(u64, &mut [u8]) -> Result<usize, E>) -> Result<Option<u64>, E> {
    let tail = size.min(LOG_TAIL);
    crate::hash::content_hash(size, size - tail, tail, buf, read)
}

/// What a descriptor was, and so how restart brings it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum FdKind {
    /// stdin/stdout/stderr on a terminal, pipe or socket: the restored process uses myrestart's.
    Inherit = 0,
    /// A regular file: reopened by path, at its offset; never truncated, but for a log's lines
    /// printed after the checkpoint (see [`FdRecord::is_std_log`]).
    File = 1,
    /// A regular file that was deleted while open: its contents are in the image.
    Deleted = 2,
    Directory = 3,
    /// A character device reopened by path (`/dev/null`, `/dev/urandom`, …).
    Device = 4,
    /// Netlink and packet sockets, FIFOs, …: not restored; the descriptor stays closed.
    Unsupported = 5,
    /// One end of a pipe: `ino` names the pipe, `size` is its capacity; the record of its
    /// lowest read end holds the bytes that were in it (`blob_*`). A pipe whose other end was
    /// outside the process comes back with that end closed.
    Pipe = 6,
    /// An eventfd: `offset` is its counter, `size` 1 in semaphore mode.
    EventFd = 7,
    /// An epoll instance; its registrations are in `NT_CKPT_EPOLL`.
    Epoll = 8,
    /// A socket, described by its record in `NT_CKPT_SOCKETS`; the bytes queued for it to
    /// read are the blob, as [`crate::sockets`] frames.
    Socket = 9,
    /// A timerfd, described by its record in `NT_CKPT_TIMERFDS`.
    TimerFd = 10,
    /// A signalfd: `aux` is its signal mask.
    SignalFd = 11,
    /// An inotify instance; its watches are in `NT_CKPT_INOTIFY`.
    Inotify = 12,
    /// A `memfd_create` file: the path is `/memfd:NAME (deleted)`, the blob its contents and
    /// `aux` its seals (`F_GET_SEALS`).
    MemFd = 13,
}

impl FdKind {
    fn from_u32(v: u32) -> Result<FdKind, ImageError> {
        Ok(match v {
            0 => FdKind::Inherit,
            1 => FdKind::File,
            2 => FdKind::Deleted,
            3 => FdKind::Directory,
            4 => FdKind::Device,
            5 => FdKind::Unsupported,
            6 => FdKind::Pipe,
            7 => FdKind::EventFd,
            8 => FdKind::Epoll,
            9 => FdKind::Socket,
            10 => FdKind::TimerFd,
            11 => FdKind::SignalFd,
            12 => FdKind::Inotify,
            13 => FdKind::MemFd,
            _ => return Err(ImageError::Malformed("unknown descriptor kind")),
        })
    }
}

/// One open descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdRecord {
    pub fd: i32,
    pub kind: FdKind,
    /// `fcntl(F_GETFL)`: access mode and status flags.
    pub open_flags: u32,
    /// `fcntl(F_GETFD)`: 1 for close-on-exec.
    pub fd_flags: u32,
    /// File offset (0 where there is none).
    pub offset: u64,
    /// A lower descriptor sharing this one's open file description (after `dup`), or -1.
    pub same_as: i32,
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    /// Where a deleted file's contents (or a pipe's bytes) are in the image, and their xxh3-64.
    pub blob_offset: u64,
    pub blob_len: u64,
    pub blob_hash: u64,
    /// Kind-specific: a signalfd's mask, a memfd's seals, for a socket the bytes queued for it
    /// that the image does not hold (a UDP socket's datagrams), with [`LOST_PASSED_FDS`] if
    /// descriptors passed in its queued messages were not saved; for a log
    /// ([`FdRecord::is_std_log`]) the [`log_tail_hash`] at `size` (0: none was taken, the file
    /// could not be read); 0 otherwise.
    pub aux: u64,
    /// The file's owner (`st_uid`).
    pub uid: u32,
    /// When the file was made (`statx` birth time: seconds, nanoseconds), where its file system
    /// keeps one.
    pub birth: Option<(i64, u32)>,
}

impl FdRecord {
    /// The program's stdout or stderr in a regular file it writes (a log): the checkpoint
    /// records its tail hash in `aux`, and the restart is lenient with it (see myrestart).
    pub fn is_std_log(&self) -> bool {
        (self.fd == 1 || self.fd == 2) && self.kind == FdKind::File && self.open_flags & 3 != 0
    }

    /// Whether `dev`, `ino`, born at `birth`, is the file the descriptor had open: the same
    /// device and inode, and where both birth times are known, the same one (a file deleted
    /// since may leave its inode number to a new file, born later).
    pub fn is_same_file(&self, dev: u64, ino: u64, birth: Option<(i64, u32)>) -> bool {
        self.dev == dev && self.is_same_inode(ino, birth)
    }

    /// [`FdRecord::is_same_file`] but for the device, which another node numbers its own way
    /// (the same NFS file has another `st_dev` on each client): for a judgement that something
    /// else confirms (a hash of the file's bytes), or that only decides whether to say a file
    /// was replaced.
    pub fn is_same_inode(&self, ino: u64, birth: Option<(i64, u32)>) -> bool {
        self.ino == ino && !matches!((self.birth, birth), (Some(then), Some(now)) if then != now)
    }

    /// Whether the record carries saved bytes in the image (`blob_*`).
    pub fn has_blob(&self) -> bool {
        match self.kind {
            FdKind::Deleted | FdKind::MemFd => true,
            FdKind::Pipe | FdKind::Socket => self.blob_len > 0,
            _ => false,
        }
    }

    pub fn write(&self, w: &mut Writer, path: &[u8]) {
        self.write_fixed(w, path.len());
        w.bytes(path);
        w.align(8);
    }

    /// The fixed part of the record, before the path.
    fn write_fixed(&self, w: &mut Writer, path_len: usize) {
        w.u32(self.fd as u32);
        w.u32(self.kind as u32);
        w.u32(self.open_flags);
        w.u32(self.fd_flags);
        w.u64(self.offset);
        w.u32(self.same_as as u32);
        w.u32(self.mode);
        w.u64(self.dev);
        w.u64(self.ino);
        w.u64(self.size);
        w.u64(self.mtime_sec as u64);
        w.u64(self.mtime_nsec as u64);
        w.u64(self.blob_offset);
        w.u64(self.blob_len);
        w.u64(self.blob_hash);
        w.u64(self.aux);
        w.u32(path_len as u32);
        w.u32(self.uid);
        let (sec, nsec) = self.birth.unwrap_or((0, 0));
        w.u64(sec as u64);
        w.u32(nsec);
        w.u32(if self.birth.is_some() { HAS_BIRTH } else { 0 });
    }

    pub fn read<'a>(r: &mut Reader<'a>) -> Result<(FdRecord, &'a [u8]), ImageError> {
        let mut rec = FdRecord {
            fd: r.u32()? as i32,
            kind: FdKind::from_u32(r.u32()?)?,
            open_flags: r.u32()?,
            fd_flags: r.u32()?,
            offset: r.u64()?,
            same_as: r.u32()? as i32,
            mode: r.u32()?,
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_sec: r.u64()? as i64,
            mtime_nsec: r.u64()? as i64,
            blob_offset: r.u64()?,
            blob_len: r.u64()?,
            blob_hash: r.u64()?,
            aux: r.u64()?,
            uid: 0,
            birth: None,
        };
        if !(0..MAX_FD).contains(&rec.fd) || rec.same_as >= rec.fd || rec.same_as < -1 {
            return Err(ImageError::Malformed("bad descriptor number"));
        }
        let len = r.u32()? as usize;
        rec.uid = r.u32()?;
        let (sec, nsec, flags) = (r.u64()? as i64, r.u32()?, r.u32()?);
        if flags & !HAS_BIRTH != 0 || nsec >= 1_000_000_000 {
            return Err(ImageError::Malformed("bad descriptor record"));
        }
        rec.birth = (flags & HAS_BIRTH != 0).then_some((sec, nsec));
        let path = r.bytes(len)?;
        r.align(8)?;
        Ok((rec, path))
    }

    /// Bytes the record takes with a path of `path_len` bytes.
    pub const fn encoded_len(path_len: usize) -> usize {
        (FD_RECORD_SIZE + path_len).next_multiple_of(8)
    }
}

/// Lets `f` change each record of an encoded `NT_CKPT_FDS` descriptor in place (its path stays
/// as it is). Stops at the first error `f` returns, or at a record that does not decode.
pub fn update_records<E>(desc: &mut [u8], mut f: impl FnMut(&mut FdRecord, &[u8]) -> Result<(), E>) -> Result<(), E> {
    let mut pos = 0usize;
    while pos < desc.len() {
        let Ok((mut rec, path)) = FdRecord::read(&mut Reader::new(&desc[pos..])) else { break };
        let path_len = path.len();
        f(&mut rec, path)?;
        rec.write_fixed(&mut Writer::new(&mut desc[pos..pos + FD_RECORD_SIZE]), path_len);
        pos += FdRecord::encoded_len(path_len);
    }
    Ok(())
}

/// The records of an `NT_CKPT_FDS` descriptor, with their paths.
pub type FdIter<'a> = Records<'a, (FdRecord, &'a [u8])>;

/// The records of an encoded `NT_CKPT_FDS` descriptor.
pub fn records(desc: &[u8]) -> FdIter<'_> {
    Records::new(desc, FdRecord::read)
}
