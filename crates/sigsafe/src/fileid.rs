//! What tells a file apart from a later one at the same path, for the checkpoint that records
//! it and the restart that compares: device and inode alone do not, since a file system hands a
//! deleted file's inode number to a new file (ext4 at once), but the new one is born later.

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, StatxFlags};

/// When the file behind `fd` was made (`statx` birth time: seconds, nanoseconds), where its
/// file system keeps one.
pub fn birth_time(fd: BorrowedFd) -> Option<(i64, u32)> {
    let st = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::BTIME).ok()?;
    (st.stx_mask & StatxFlags::BTIME.bits() != 0).then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec))
}

/// The owner and birth time of the file behind `fd`, as a record keeps them.
pub fn owner(fd: BorrowedFd) -> ckpt_image::fileid::Owner {
    ckpt_image::fileid::Owner { uid: rustix::fs::fstat(fd).ok().map(|st| st.st_uid), birth: birth_time(fd) }
}

/// The file at `path` (symbolic links followed: `/proc/self/cwd` and `/proc/self/exe` are
/// what they lead to), as a record keeps it; unknown if it cannot be looked at.
pub fn file_id_at(path: &core::ffi::CStr) -> ckpt_image::fileid::FileId {
    use rustix::fs::{Mode, OFlags};
    let Ok(fd) = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) else { return ckpt_image::fileid::FileId::UNKNOWN };
    match rustix::fs::fstat(&fd) {
        Ok(st) => ckpt_image::fileid::FileId { dev: st.st_dev, ino: st.st_ino, owner: owner(fd.as_fd()) },
        Err(_) => ckpt_image::fileid::FileId::UNKNOWN,
    }
}

/// A file as `NT_CKPT_WRITTEN` keeps it (`ckpt_image::written`), from its `fstat`: the
/// checkpoint that records it and the restart that compares read it through this one function.
/// No hash: see [`bytes_hash`].
pub fn written_state(st: &rustix::fs::Stat) -> ckpt_image::written::FileState {
    ckpt_image::written::FileState {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        hash: None,
    }
}

/// The hash of the first `size` bytes of the file behind `fd` (open for reading), read through
/// `buf`; `None` if it cannot be read or ends before `size`.
pub fn bytes_hash(fd: BorrowedFd, size: u64, buf: &mut [u8]) -> Option<u64> {
    let read = |at: u64, into: &mut [u8]| rustix::io::retry_on_intr(|| rustix::io::pread(fd, &mut *into, at));
    ckpt_image::filemaps::content_hash(size, 0, size, buf, read).ok().flatten()
}
