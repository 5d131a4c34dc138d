//! `NT_CKPT_INOTIFY`: the watches of the process's inotify instances, each with the path it
//! watches (added again by path at restart, in watch-descriptor order) and the inode that path
//! named at checkpoint time. Records are [`WATCH_RECORD_SIZE`] bytes and the path, padded to 8.
//! The note is absent when there are none.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const WATCH_RECORD_SIZE: usize = 32;

/// One watch: inotify descriptor `fd` watches `path` as watch descriptor `wd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchRecord {
    pub fd: i32,
    pub wd: i32,
    /// The `IN_*` events watched, with the flags that shaped the watch.
    pub mask: u32,
    pub ino: u64,
    pub dev: u64,
}

impl WatchRecord {
    pub fn write(&self, w: &mut Writer, path: &[u8]) {
        w.u32(self.fd as u32);
        w.u32(self.wd as u32);
        w.u32(self.mask);
        w.u32(path.len() as u32);
        w.u64(self.ino);
        w.u64(self.dev);
        w.bytes(path);
        w.align(8);
    }

    pub fn read<'a>(r: &mut Reader<'a>) -> Result<(WatchRecord, &'a [u8]), ImageError> {
        let fd = r.u32()? as i32;
        let wd = r.u32()? as i32;
        let mask = r.u32()?;
        let len = r.u32()? as usize;
        let ino = r.u64()?;
        let dev = r.u64()?;
        let path = r.bytes(len)?;
        r.align(8)?;
        if fd < 0 || wd <= 0 || path.is_empty() || path.contains(&0) {
            return Err(ImageError::Malformed("bad inotify watch record"));
        }
        Ok((WatchRecord { fd, wd, mask, ino, dev }, path))
    }
}

/// The records of an `NT_CKPT_INOTIFY` descriptor, with their paths.
pub type WatchIter<'a> = Records<'a, (WatchRecord, &'a [u8])>;

pub fn records(desc: &[u8]) -> WatchIter<'_> {
    Records::new(desc, WatchRecord::read)
}

/// The records of an `NT_CKPT_INOTIFY` descriptor, each with where it starts (for
/// [`record_at`]): a reader that wants them in another order (by watch number) sorts these
/// places rather than reading every record again for each one.
pub fn placed(desc: &[u8]) -> impl Iterator<Item = (usize, Result<(WatchRecord, &[u8]), ImageError>)> {
    let mut r = Reader::new(desc);
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || r.remaining() == 0 {
            return None;
        }
        let at = desc.len() - r.remaining();
        let item = WatchRecord::read(&mut r);
        failed = item.is_err();
        Some((at, item))
    })
}

/// The record that starts at `at` (a place [`placed`] gave).
pub fn record_at(desc: &[u8], at: usize) -> Result<(WatchRecord, &[u8]), ImageError> {
    WatchRecord::read(&mut Reader::new(desc.get(at..).ok_or(ImageError::Truncated)?))
}
