//! Checking stored bytes against their hashes: region data and the saved contents of deleted
//! files. myrestart (before its point of no return), `ckpt inspect` and the tests all check an
//! image through these functions.
//!
//! They read the image file as one byte slice (in practice a read-only mapping of it), and take
//! the stretches of the file that may hold data from the caller, who holds the file descriptor
//! (`SEEK_DATA`/`SEEK_HOLE`): holes read as zeros and contribute nothing to a region's hash, so
//! they need not be read.

use crate::compress::check_stream;
use crate::fds::FdRecord;
use crate::image::{Image, RegionRef};
use crate::{hash, is_zero_page, ImageError, RegionHasher, CHUNK_PAGES, PAGE_SIZE};

/// What checking one region found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionCheck {
    /// Pages of plain (uncompressed) data that are not all zeros; for a compressed region, the
    /// pages its non-zero chunks cover.
    pub nonzero_pages: u64,
}

/// The stretches `(from, to)` of a file range that may hold data, in order.
pub trait Extents {
    fn extents(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)>;
}

/// A file without known holes: the whole range may hold data.
pub struct Dense;

impl Extents for Dense {
    fn extents(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> {
        core::iter::once((from, to)).filter(|&(a, b)| a < b)
    }
}

fn stored(file: &[u8], offset: u64, len: u64) -> Result<&[u8], ImageError> {
    let end = offset.checked_add(len).ok_or(ImageError::Truncated)?;
    file.get(offset as usize..end as usize).ok_or(ImageError::Truncated)
}

/// Checks the stored bytes of region `r` in `file` against the region's hash (and, for a
/// compressed region, that its stream is well formed). A region without stored bytes passes.
pub fn check_region(file: &[u8], r: &RegionRef, holes: &impl Extents) -> Result<RegionCheck, ImageError> {
    let rec = &r.record;
    if !rec.has_data() {
        return Ok(RegionCheck { nonzero_pages: 0 });
    }
    let mismatch = ImageError::DataChecksum { index: r.index };
    if rec.compressed() {
        let stream = stored(file, r.data_offset, rec.stored_len)?;
        let nonzero = check_stream(stream, rec.size())?;
        if hash(stream) != rec.data_hash {
            return Err(mismatch);
        }
        return Ok(RegionCheck { nonzero_pages: nonzero.div_ceil(PAGE_SIZE) });
    }
    let (digest, nonzero) = plain_digest(file, r, holes)?;
    if digest != rec.data_hash {
        return Err(mismatch);
    }
    Ok(RegionCheck { nonzero_pages: nonzero })
}

/// The [`RegionHasher`] hash of the plain data of region `r` in `file` (its `size` bytes at its
/// `data_offset`; holes and zero pages add nothing), and how many of its pages are not zeros.
pub fn plain_digest(file: &[u8], r: &RegionRef, holes: &impl Extents) -> Result<(u64, u64), ImageError> {
    let size = r.record.size();
    let data = stored(file, r.data_offset, size)?;
    let mut h = RegionHasher::new();
    let mut nonzero = 0;
    for (from, to) in holes.extents(r.data_offset, r.data_offset + size) {
        let (a, b) = ((from - r.data_offset) as usize, (to - r.data_offset) as usize);
        for (i, page) in data[a..b].chunks(PAGE_SIZE as usize).enumerate() {
            if !is_zero_page(page) {
                nonzero += 1;
                h.add_nonzero((a / PAGE_SIZE as usize + i) as u64, page);
            }
        }
    }
    Ok((h.digest(), nonzero))
}

/// Checks the saved contents of a deleted file (or the bytes of a pipe or socket) against
/// their hash; other records pass. Saved contents are written whole, so a hole in their range
/// (a size the file does not really hold) is refused before anything is read.
pub fn check_saved_file(file: &[u8], rec: &FdRecord, holes: &impl Extents) -> Result<(), ImageError> {
    if !rec.has_blob() {
        return Ok(());
    }
    check_saved_extent(rec, holes)?;
    if hash(stored(file, rec.blob_offset, rec.blob_len)?) != rec.blob_hash {
        return Err(ImageError::BlobChecksum { fd: rec.fd });
    }
    Ok(())
}

/// Saved contents are written whole: their range must hold data throughout (no hole), which
/// refuses at once a size the file does not really hold.
pub fn check_saved_extent(rec: &FdRecord, holes: &impl Extents) -> Result<(), ImageError> {
    if !rec.has_blob() || rec.blob_len == 0 {
        return Ok(());
    }
    let end = rec.blob_offset.checked_add(rec.blob_len).ok_or(ImageError::Truncated)?;
    let mut stretches = holes.extents(rec.blob_offset, end);
    if stretches.next() != Some((rec.blob_offset, end)) || stretches.next().is_some() {
        return Err(ImageError::Malformed("saved contents of a descriptor lie in a hole of the image"));
    }
    Ok(())
}

impl Image<'_> {
    /// [`check_saved_extent`] for every descriptor (cheap: no byte is read).
    pub fn check_saved_extents(&self, holes: &impl Extents) -> Result<(), ImageError> {
        for item in self.fds() {
            check_saved_extent(&item?.0, holes)?;
        }
        Ok(())
    }

    /// Checks every stored byte of the image: each region's data, then each saved file.
    pub fn check_data(&self, file: &[u8], holes: &impl Extents) -> Result<(), ImageError> {
        self.check_data_but(file, holes, |_| false)
    }

    /// [`Image::check_data`] but for the regions `skip` names (bytes checked elsewhere: those a
    /// tree's process shares with the root's part, which the root checks).
    pub fn check_data_but(&self, file: &[u8], holes: &impl Extents, skip: impl Fn(&crate::RegionRecord) -> bool) -> Result<(), ImageError> {
        for i in 0..self.region_count() {
            let r = self.region(i)?;
            if !skip(&r.record) {
                check_region(file, &r, holes)?;
            }
        }
        for item in self.fds() {
            check_saved_file(file, &item?.0, holes)?;
        }
        Ok(())
    }

    /// The regions [`Image::check_data_but`] hashes page by page (plain data, not in `skip`),
    /// with the number of hash chunks of each: `f(region, chunks)`. Returns all their chunks.
    fn plain_regions(&self, skip: &impl Fn(&crate::RegionRecord) -> bool, mut f: impl FnMut(&RegionRef, u64) -> Result<(), ImageError>) -> Result<u64, ImageError> {
        let mut total = 0;
        for i in 0..self.region_count() {
            let r = self.region(i)?;
            if r.record.has_data() && !r.record.compressed() && !skip(&r.record) {
                let chunks = (r.record.size() / PAGE_SIZE).div_ceil(CHUNK_PAGES);
                f(&r, chunks)?;
                total += chunks;
            }
        }
        Ok(total)
    }

    /// How many hash chunks [`Image::chunk_digests`] numbers.
    pub fn plain_chunks(&self, skip: impl Fn(&crate::RegionRecord) -> bool) -> Result<u64, ImageError> {
        self.plain_regions(&skip, |_, _| Ok(()))
    }

    /// Computes the digests of chunks `from..to` of the plain data of the regions not in
    /// `skip`, numbered across them in order, into `out` (two u64s a chunk: 1 if it has a page
    /// that is not zeros, then its digest). The work of checking can so be shared.
    pub fn chunk_digests(&self, file: &[u8], holes: &impl Extents, skip: impl Fn(&crate::RegionRecord) -> bool, from: u64, to: u64, out: &mut [u64]) -> Result<(), ImageError> {
        let mut base = 0u64;
        self.plain_regions(&skip, |r, chunks| {
            let (first, last) = (from.max(base), to.min(base + chunks));
            if first < last {
                let data = stored(file, r.data_offset, r.record.size())?;
                let chunk_bytes = CHUNK_PAGES * PAGE_SIZE;
                let (a, b) = ((first - base) * chunk_bytes, ((last - base) * chunk_bytes).min(r.record.size()));
                for c in first..last {
                    out[2 * c as usize] = 0;
                }
                // The stretches that hold data, found once for the whole range (a hole search
                // per chunk would walk the file again and again), page by page into their chunks.
                let mut cur: Option<(u64, crate::Hasher)> = None;
                let mut finish = |cur: &mut Option<(u64, crate::Hasher)>| {
                    if let Some((k, h)) = cur.take() {
                        let at = 2 * (base + k) as usize;
                        out[at] = 1;
                        out[at + 1] = h.digest();
                    }
                };
                for (x, y) in holes.extents(r.data_offset + a, r.data_offset + b) {
                    let (x, y) = ((x - r.data_offset) as usize, (y - r.data_offset) as usize);
                    for (i, page) in data[x..y].chunks(PAGE_SIZE as usize).enumerate() {
                        if is_zero_page(page) {
                            continue;
                        }
                        let index = x as u64 / PAGE_SIZE + i as u64;
                        let k = index / CHUNK_PAGES;
                        if cur.as_ref().is_none_or(|(c, _)| *c != k) {
                            finish(&mut cur);
                            cur = Some((k, crate::Hasher::new()));
                        }
                        if let Some((_, h)) = cur.as_mut() {
                            crate::chunk_add(h, index, page);
                        }
                    }
                }
                finish(&mut cur);
            }
            base += chunks;
            Ok(())
        })?;
        Ok(())
    }

    /// [`Image::check_data_but`] with the chunk digests of its plain data already computed
    /// (all of [`Image::chunk_digests`]): puts them together and compares each region's hash;
    /// checks the compressed regions and the saved contents of descriptors itself.
    pub fn check_data_with(&self, file: &[u8], holes: &impl Extents, skip: impl Fn(&crate::RegionRecord) -> bool, digests: &[u64]) -> Result<(), ImageError> {
        let mut base = 0u64;
        self.plain_regions(&skip, |r, chunks| {
            let mut h = RegionHasher::new();
            for k in 0..chunks {
                let at = 2 * (base + k) as usize;
                if digests[at] != 0 {
                    h.add_chunk(k, digests[at + 1]);
                }
            }
            base += chunks;
            if h.digest() != r.record.data_hash {
                return Err(ImageError::DataChecksum { index: r.index });
            }
            Ok(())
        })?;
        for i in 0..self.region_count() {
            let r = self.region(i)?;
            if r.record.compressed() && !skip(&r.record) {
                check_region(file, &r, holes)?;
            }
        }
        for item in self.fds() {
            check_saved_file(file, &item?.0, holes)?;
        }
        Ok(())
    }

    /// Checks only what restart reads whole and could not check later: the structure and hash
    /// of compressed streams (with `--no-verify`, plain data is mapped unchecked, but a bad
    /// compressed chunk must still be found before anything is changed).
    pub fn check_compressed(&self, file: &[u8]) -> Result<(), ImageError> {
        for i in 0..self.region_count() {
            let r = self.region(i)?;
            if r.record.compressed() {
                check_region(file, &r, &Dense)?;
            }
        }
        Ok(())
    }
}
