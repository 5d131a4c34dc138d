//! `NT_CKPT_FILEMAPS`: regions that restart maps from their files again instead of storing them.
//!
//! A private mapping of a regular file whose pages the program never wrote (program text,
//! libraries, read-only data) holds nothing the file does not. Its region (flag
//! `RF_MAP_PRIVATE_FILE`, no stored bytes) names the file; this note says what the file was, so
//! that restart can tell it is still the same. A `MAP_SHARED` mapping of a file (flag
//! `RF_FROM_FILE`) is the file itself, changes and all; its record says whose it was and when
//! it was made, so that restart can tell it from a file put at its path since:
//!
//! ```text
//!   u32 count, u32 record size (64)
//!   count records, in region order, one for each region of either kind:
//!     u32 region        index of the region
//!     u32 reserved      0
//!     u64 size          the file's size
//!     u64 mtime_sec, mtime_nsec   its modification time
//!     u64 content_hash  xxh3-64 of the file's bytes the region maps (from its file offset to
//!                       the end of the region or of the file, whichever comes first); 0 for
//!                       a shared mapping, whose bytes are the file's business
//!     24 bytes          its owner and birth time (crate::fileid::Owner)
//! ```
//! The device and inode are in the region record. Restart refuses, by name, a private mapping's
//! file whose inode, birth time, size, time or contents differ, and a shared mapping's file that
//! was the restarting user's own and is another user's now.

use crate::bytes::{Reader, Records, Writer};
use crate::image::Image;
use crate::ImageError;

/// Where the checkpoint and the restart have always found it.
pub use crate::hash::content_hash;

pub const FILEMAP_RECORD_SIZE: usize = FILEMAP_RECORD_SIZE_V8 + crate::fileid::OWNER_SIZE;
/// A record in a version 8 image: no owner.
pub const FILEMAP_RECORD_SIZE_V8: usize = 40;
pub const FILEMAP_HEADER_SIZE: usize = crate::bytes::TABLE_HEADER_SIZE;

/// What the file behind a region was at checkpoint time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileMap {
    pub region: u32,
    pub size: u64,
    pub mtime_sec: u64,
    pub mtime_nsec: u64,
    pub content_hash: u64,
    pub owner: crate::fileid::Owner,
}

impl FileMap {
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.region);
        w.u32(0);
        w.u64(self.size);
        w.u64(self.mtime_sec);
        w.u64(self.mtime_nsec);
        w.u64(self.content_hash);
        self.owner.write(w);
    }

    pub fn read(r: &mut Reader) -> Result<FileMap, ImageError> {
        let m = FileMap::read_v8(r)?;
        Ok(FileMap { owner: crate::fileid::Owner::read(r)?, ..m })
    }

    /// A record of a version 8 image, whose owner is unknown.
    pub fn read_v8(r: &mut Reader) -> Result<FileMap, ImageError> {
        let region = r.u32()?;
        r.skip(4)?;
        let m = FileMap {
            region,
            size: r.u64()?,
            mtime_sec: r.u64()?,
            mtime_nsec: r.u64()?,
            content_hash: r.u64()?,
            owner: crate::fileid::Owner::UNKNOWN,
        };
        if m.mtime_nsec >= 1_000_000_000 {
            return Err(ImageError::Malformed("bad file mapping record"));
        }
        Ok(m)
    }

}

/// Bytes of an `NT_CKPT_FILEMAPS` descriptor with `count` records.
pub const fn note_len(count: usize) -> usize {
    FILEMAP_HEADER_SIZE + FILEMAP_RECORD_SIZE * count
}

pub fn write_header(w: &mut Writer, count: usize) {
    crate::bytes::write_table_header(w, count, FILEMAP_RECORD_SIZE);
}

/// The records of a descriptor of an image of format `version`, after checking its header.
pub fn records(desc: &[u8], version: u32) -> Result<Records<'_, FileMap>, ImageError> {
    let bad = "bad file mapping table";
    Ok(if version >= crate::FILE_IDS_SINCE {
        crate::bytes::table(desc, FILEMAP_RECORD_SIZE, crate::MAX_REGIONS, FileMap::read, bad)?.1
    } else {
        crate::bytes::table(desc, FILEMAP_RECORD_SIZE_V8, crate::MAX_REGIONS, FileMap::read_v8, bad)?.1
    })
}

/// Checks that the regions mapped from their files and the records match one to one: each
/// record names, in order, a private file mapping with no stored bytes or a shared mapping of
/// a file, and each such region has its record.
pub(crate) fn check(image: &Image) -> Result<(), ImageError> {
    let mut next = 0usize;
    for m in image.file_maps() {
        let m = m?;
        let i = m.region as usize;
        if i < next {
            return Err(ImageError::Malformed("file mapping records are out of order"));
        }
        for j in next..i {
            if has_record(&image.region(j)?.record, image.version) {
                return Err(ImageError::Malformed("a region mapped from its file has no record"));
            }
        }
        let rec = image.region(i)?.record;
        let private = rec.maps_private_file() && !rec.has_data() && !rec.is_shared();
        let shared = rec.from_file() && rec.is_shared() && !rec.maps_private_file() && image.version >= crate::FILE_IDS_SINCE;
        if !(private || shared) || rec.flags & crate::region::RF_FILE == 0 {
            return Err(ImageError::Malformed("a file mapping record names a region that is not mapped from its file"));
        }
        next = i + 1;
    }
    for j in next..image.region_count() {
        if has_record(&image.region(j)?.record, image.version) {
            return Err(ImageError::Malformed("a region mapped from its file has no record"));
        }
    }
    Ok(())
}

/// Whether a region is mapped from its file again at restart, privately or shared.
pub fn needs_record(rec: &crate::RegionRecord) -> bool {
    rec.maps_private_file() || rec.from_file()
}

/// Whether such a region has a record in `NT_CKPT_FILEMAPS` of an image of format `version`:
/// every one since [`crate::FILE_IDS_SINCE`], only private mappings before.
pub fn has_record(rec: &crate::RegionRecord, version: u32) -> bool {
    rec.maps_private_file() || (rec.from_file() && version >= crate::FILE_IDS_SINCE)
}

/// The record of region `i` in a descriptor of an image of format `version`, found by binary
/// search (records are in region order, which [`check`] holds the image to): a restart looks up
/// every mapped region's record, and 5,000 mappings made a linear search quadratic.
fn find(desc: &[u8], version: u32, i: usize) -> Option<FileMap> {
    type Read = fn(&mut Reader) -> Result<FileMap, ImageError>;
    let (size, read): (usize, Read) =
        if version >= crate::FILE_IDS_SINCE { (FILEMAP_RECORD_SIZE, FileMap::read) } else { (FILEMAP_RECORD_SIZE_V8, FileMap::read_v8) };
    let (count, _) = crate::bytes::table(desc, size, crate::MAX_REGIONS, read, "bad file mapping table").ok()?;
    let rec = |k: usize| desc.get(FILEMAP_HEADER_SIZE + k * size..FILEMAP_HEADER_SIZE + (k + 1) * size);
    let region = |k: usize| rec(k).and_then(|r| r.get(..4)).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match region(mid)?.cmp(&i) {
            core::cmp::Ordering::Equal => return read(&mut Reader::new(rec(mid)?)).ok(),
            core::cmp::Ordering::Less => lo = mid + 1,
            core::cmp::Ordering::Greater => hi = mid,
        }
    }
    None
}

/// How an image gives its `NT_CKPT_FILEMAPS` note.
impl<'a> Image<'a> {
    /// What the files of the regions mapped from them again were (`NT_CKPT_FILEMAPS`).
    pub fn file_maps(&self) -> crate::bytes::Records<'a, FileMap> {
        match self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_FILEMAPS).map(|n| records(n.desc, self.version)) {
            None => crate::bytes::Records::new(&[], FileMap::read),
            Some(Ok(r)) => r,
            Some(Err(_)) => crate::bytes::Records::new(&[0], |_| Err(ImageError::Malformed("bad file mapping table"))),
        }
    }

    /// The record of the file region `i` maps again (`NT_CKPT_FILEMAPS`). A shared mapping in a
    /// version 8 image, which recorded none, has one that knows only its region: its owner and
    /// birth time unknown. `None` if the image has none for it.
    pub fn file_map(&self, i: usize) -> Option<FileMap> {
        let found = self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_FILEMAPS).and_then(|n| find(n.desc, self.version, i));
        let unrecorded = self.region(i).is_ok_and(|r| needs_record(&r.record) && !has_record(&r.record, self.version));
        found.or(unrecorded.then(|| FileMap { region: i as u32, ..Default::default() }))
    }
}
