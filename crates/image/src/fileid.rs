//! What tells a named file from another found at its path later, for files a record names by
//! path without a descriptor record of its own (`NT_CKPT_FDS` records carry the same facts):
//! the working directory and the program file (in the state note), and every file a region
//! maps (in `NT_CKPT_FILEMAPS`).
//!
//! ```text
//!   Owner, 24 bytes:
//!     u32 uid           the file's owner (st_uid), if flags has OWNER_KNOWN
//!     u32 flags         OWNER_KNOWN (1), BIRTH_KNOWN (2)
//!     i64 birth_sec     statx birth time, if flags has BIRTH_KNOWN
//!     u32 birth_nsec
//!     u32 reserved      0
//!   FileId, 40 bytes: u64 dev (st_dev), u64 ino, then an Owner
//! ```

use crate::bytes::{Reader, Writer};
use crate::ImageError;

const OWNER_KNOWN: u32 = 1;
const BIRTH_KNOWN: u32 = 2;

/// Bytes of an encoded [`Owner`].
pub const OWNER_SIZE: usize = 24;
/// Bytes of an encoded [`FileId`].
pub const FILE_ID_SIZE: usize = 16 + OWNER_SIZE;

/// A file's owner and birth time, as the checkpoint found them (each may be unknown: the
/// file could not be looked at, or its file system keeps no birth time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    /// `statx` birth time: seconds, nanoseconds.
    pub birth: Option<(i64, u32)>,
}

impl Owner {
    pub const UNKNOWN: Owner = Owner { uid: None, birth: None };

    /// Whether a file born at `now` may be the one recorded: where both birth times are
    /// known, they are the same (a file system hands a deleted file's inode number to the next
    /// new file, which is born later).
    pub fn same_birth(&self, now: Option<(i64, u32)>) -> bool {
        !matches!((self.birth, now), (Some(then), Some(now)) if then != now)
    }

    pub fn write(&self, w: &mut Writer) {
        let flags = if self.uid.is_some() { OWNER_KNOWN } else { 0 } | if self.birth.is_some() { BIRTH_KNOWN } else { 0 };
        let (sec, nsec) = self.birth.unwrap_or((0, 0));
        w.u32(self.uid.unwrap_or(0));
        w.u32(flags);
        w.u64(sec as u64);
        w.u32(nsec);
        w.u32(0);
    }

    pub fn read(r: &mut Reader) -> Result<Owner, ImageError> {
        let (uid, flags, sec, nsec) = (r.u32()?, r.u32()?, r.u64()? as i64, r.u32()?);
        r.skip(4)?;
        if flags & !(OWNER_KNOWN | BIRTH_KNOWN) != 0 || nsec >= 1_000_000_000 {
            return Err(ImageError::Malformed("bad file owner record"));
        }
        Ok(Owner { uid: (flags & OWNER_KNOWN != 0).then_some(uid), birth: (flags & BIRTH_KNOWN != 0).then_some((sec, nsec)) })
    }
}

/// A file by device and inode, with its [`Owner`]; all zeros and unknown where the checkpoint
/// could not look at it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub owner: Owner,
}

impl FileId {
    pub const UNKNOWN: FileId = FileId { dev: 0, ino: 0, owner: Owner::UNKNOWN };

    /// Whether the checkpoint recorded the file at all.
    pub fn is_known(&self) -> bool {
        self.owner.uid.is_some()
    }

    /// Whether `dev`, `ino`, born at `birth`, is the recorded file (see [`Owner::same_birth`]).
    pub fn is_same(&self, dev: u64, ino: u64, birth: Option<(i64, u32)>) -> bool {
        self.dev == dev && self.is_same_inode(ino, birth)
    }

    /// [`FileId::is_same`] but for the device, which another node numbers its own way (the
    /// same NFS directory has another `st_dev` on each client).
    pub fn is_same_inode(&self, ino: u64, birth: Option<(i64, u32)>) -> bool {
        self.ino == ino && self.owner.same_birth(birth)
    }

    pub fn write(&self, w: &mut Writer) {
        w.u64(self.dev);
        w.u64(self.ino);
        self.owner.write(w);
    }

    pub fn read(r: &mut Reader) -> Result<FileId, ImageError> {
        Ok(FileId { dev: r.u64()?, ino: r.u64()?, owner: Owner::read(r)? })
    }
}
