//! What tells a file apart from a later one at the same path, for the checkpoint that records
//! it and the restart that compares: device and inode alone do not, since a file system hands a
//! deleted file's inode number to a new file (ext4 at once), but the new one is born later.

use rustix::fd::BorrowedFd;
use rustix::fs::{AtFlags, StatxFlags};

/// When the file behind `fd` was made (`statx` birth time: seconds, nanoseconds), where its
/// file system keeps one.
pub fn birth_time(fd: BorrowedFd) -> Option<(i64, u32)> {
    let st = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::BTIME).ok()?;
    (st.stx_mask & StatxFlags::BTIME.bits() != 0).then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec))
}
