//! `NT_CKPT_SHMFILES`: the POSIX shared memory objects the process mapped `MAP_SHARED` (files
//! in `/dev/shm`, see [`crate::region::stores_shared_file`]). Their bytes are in the image like
//! any other shared memory's: each such region has `RF_SHARED`, `RF_HAS_DATA` and `RF_FILE`,
//! the object's device and inode, and its path as its name. This note says whose the object was
//! and how large, so that a restart puts it back at its path with the image's bytes: made again
//! with its mode and owner where the path is free, its contents replaced where the program's
//! own object is there now.
//!
//! ```text
//!   u32 count, u32 record size (24)
//!   count records, in region order, one for each region of a stored object:
//!     u32 region      index of the region
//!     u32 mode        the file's permission bits (at most 0o7777)
//!     u32 uid, gid    its owner and group
//!     u64 size        its size
//! ```
//! Not ignorable: a reader that skipped it would bring the memory back in an object of its own
//! that programs opening the path (`shm_open`) no longer share. At most
//! [`crate::limits::MAX_SHARED_COPIED`] records: each region is shared memory the checkpoint
//! copies, and no more of those fit one image.

use crate::bytes::{Reader, Records, Writer};
use crate::image::Image;
use crate::ImageError;

pub const SHMFILE_RECORD_SIZE: usize = 24;

/// A POSIX shared memory object as the checkpoint found it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShmFile {
    pub region: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

impl ShmFile {
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.region);
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u64(self.size);
    }

    pub fn read(r: &mut Reader) -> Result<ShmFile, ImageError> {
        let m = ShmFile { region: r.u32()?, mode: r.u32()?, uid: r.u32()?, gid: r.u32()?, size: r.u64()? };
        if m.mode & !0o7777 != 0 {
            return Err(ImageError::Malformed("bad shared memory object record"));
        }
        Ok(m)
    }
}

/// Bytes of an `NT_CKPT_SHMFILES` descriptor with `count` records.
pub const fn note_len(count: usize) -> usize {
    crate::bytes::TABLE_HEADER_SIZE + SHMFILE_RECORD_SIZE * count
}

pub fn write_header(w: &mut Writer, count: usize) {
    crate::bytes::write_table_header(w, count, SHMFILE_RECORD_SIZE);
}

/// The records of a descriptor, after checking its header.
pub fn records(desc: &[u8]) -> Result<Records<'_, ShmFile>, ImageError> {
    Ok(crate::bytes::table(desc, SHMFILE_RECORD_SIZE, crate::limits::MAX_SHARED_COPIED, ShmFile::read, "bad shared memory object table")?.1)
}

/// Whether region record `rec` named `name` can be a stored POSIX shared memory object.
pub fn stored_object(rec: &crate::RegionRecord, name: &[u8]) -> bool {
    use crate::region::RF_FILE;
    rec.is_shared() && rec.has_data() && rec.flags & RF_FILE != 0 && !rec.from_file() && !rec.maps_private_file() && crate::region::stores_shared_file(name, true)
}

/// Checks that each record names, in order and once, a region of a stored object.
pub(crate) fn check(image: &Image) -> Result<(), ImageError> {
    let mut next = 0usize;
    for m in image.shm_files() {
        let m = m?;
        let i = m.region as usize;
        if i < next {
            return Err(ImageError::Malformed("shared memory object records are out of order"));
        }
        let r = image.region(i)?;
        if !stored_object(&r.record, r.name) {
            return Err(ImageError::Malformed("a shared memory object record names a region that is not one"));
        }
        next = i + 1;
    }
    Ok(())
}

impl<'a> Image<'a> {
    /// The POSIX shared memory objects whose bytes the image stores (`NT_CKPT_SHMFILES`).
    pub fn shm_files(&self) -> Records<'a, ShmFile> {
        match self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_SHMFILES).map(|n| records(n.desc)) {
            None => Records::new(&[], ShmFile::read),
            Some(Ok(r)) => r,
            Some(Err(_)) => Records::new(&[0], |_| Err(ImageError::Malformed("bad shared memory object table"))),
        }
    }

    /// The record of region `i`, if it is a stored POSIX shared memory object: found by binary
    /// search (records are in region order, which [`check`] holds the image to), since a
    /// restart asks for each shared region.
    pub fn shm_file(&self, i: usize) -> Option<ShmFile> {
        let desc = self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_SHMFILES)?.desc;
        let (count, _) = crate::bytes::table(desc, SHMFILE_RECORD_SIZE, crate::limits::MAX_SHARED_COPIED, ShmFile::read, "bad shared memory object table").ok()?;
        let rec = |k: usize| desc.get(crate::bytes::TABLE_HEADER_SIZE + k * SHMFILE_RECORD_SIZE..crate::bytes::TABLE_HEADER_SIZE + (k + 1) * SHMFILE_RECORD_SIZE);
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let m = ShmFile::read(&mut Reader::new(rec(mid)?)).ok()?;
            match (m.region as usize).cmp(&i) {
                core::cmp::Ordering::Equal => return Some(m),
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }
}
