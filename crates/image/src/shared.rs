//! `NT_CKPT_SHARED`: pages an image does not store itself, and where they are instead: in a
//! tree part, the pages a process has in common with the root; in an incremental image, the
//! pages the program did not write since an older image (a base, see `chain`) that holds them.
//!
//! A child that has not written a page since `fork` holds the same bytes at the same address as
//! its parent. Such a page is stored once, in the root's copy of its region: the part's own copy
//! has a hole there, and a run here says where the root's bytes are. At restart the process maps
//! (or reads) the run from there, and the root's process checks those bytes as its own.
//!
//! ```text
//!   u32 count, u32 record size (32)
//!   count records, ordered by region, then page, none overlapping:
//!     u32 region        index of the region (flag RF_SHARES_PAGES)
//!     u32 source        0: the root's copy, in this file; k >= 1: base k of NT_CKPT_CHAIN
//!     u64 first_page    the run's first page, counted from the region's start
//!     u64 pages         how many pages (at least 1)
//!     u64 offset        where the copy of the first page is, in this file or in the base
//! ```
//! The root's copy must be in the root's own stored data for the same addresses (checked by
//! [`check_against_root`]); a base's likewise in the base's ([`crate::chain::check_against_base`]).

use crate::bytes::{Reader, Records, Writer};
use crate::image::Image;
use crate::{ImageError, PAGE_SIZE};

pub const SHARED_RECORD_SIZE: usize = 32;
pub const SHARED_HEADER_SIZE: usize = crate::bytes::TABLE_HEADER_SIZE;
/// Most runs one part holds (32 MiB of records, inside [`crate::limits::MAX_HEADERS`]). Scattered
/// writes between incremental checkpoints leave about one run per page written, so the table is
/// large; the restart still keeps the process's mappings few whatever the count (a region with
/// many runs is mapped once and the other pages read in, see myrestart's `restore.rs`), since a
/// process may have only so many (`vm.max_map_count`, 65530 by default).
pub const MAX_SHARED_RUNS: usize = 1 << 20;

/// Pages of one region whose bytes are the root's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedRun {
    pub region: u32,
    pub first_page: u64,
    pub pages: u64,
    pub offset: u64,
    /// 0: this file (the root's copy); k >= 1: base k of the image's `NT_CKPT_CHAIN`.
    pub source: u32,
}

impl SharedRun {
    /// Bytes the run covers.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }

    /// Where the run starts in a region that starts at `region_start`.
    pub fn addr(&self, region_start: u64) -> u64 {
        region_start + self.first_page * PAGE_SIZE
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.region);
        w.u32(self.source);
        w.u64(self.first_page);
        w.u64(self.pages);
        w.u64(self.offset);
    }

    pub fn read(r: &mut Reader) -> Result<SharedRun, ImageError> {
        let region = r.u32()?;
        let source = r.u32()?;
        let run = SharedRun { region, source, first_page: r.u64()?, pages: r.u64()?, offset: r.u64()? };
        if run.pages == 0 || run.offset % PAGE_SIZE != 0 || run.pages > u64::MAX / PAGE_SIZE || run.first_page > u64::MAX / PAGE_SIZE {
            return Err(ImageError::Malformed("bad shared page run"));
        }
        Ok(run)
    }
}

/// Bytes of an `NT_CKPT_SHARED` descriptor with `count` runs.
pub const fn note_len(count: usize) -> usize {
    SHARED_HEADER_SIZE + SHARED_RECORD_SIZE * count
}

pub fn write_header(w: &mut Writer, count: usize) {
    crate::bytes::write_table_header(w, count, SHARED_RECORD_SIZE);
}

/// The runs of a descriptor, after checking its header.
pub fn records(desc: &[u8]) -> Result<Records<'_, SharedRun>, ImageError> {
    if Reader::new(desc).u32().is_ok_and(|count| count as usize > MAX_SHARED_RUNS) {
        return Err(ImageError::Malformed(TOO_MANY_RUNS));
    }
    Ok(crate::bytes::table(desc, SHARED_RECORD_SIZE, MAX_SHARED_RUNS, SharedRun::read, "bad shared page table")?.1)
}

/// The refusal of a table longer than [`MAX_SHARED_RUNS`].
pub const TOO_MANY_RUNS: &str = "the table of pages stored elsewhere holds more than 2^20 runs (NT_CKPT_SHARED)";

/// Checks the runs of `image` against its own regions: each names a region that says it shares
/// pages and holds plain private data, lies inside it, and comes after the one before; its
/// bytes lie inside the file, or it names one of the image's `bases` (how many its chain note
/// lists).
pub(crate) fn check_runs(image: &Image, bases: usize) -> Result<(), ImageError> {
    let mut prev: Option<(u32, u64)> = None;
    for run in image.shared_runs() {
        let run = run?;
        let rec = image.region(run.region as usize)?.record;
        if !rec.shares_pages() || !rec.has_data() || rec.compressed() || rec.is_shared() || rec.kind.is_kernel_special() {
            return Err(ImageError::Malformed("a shared page run names a region that cannot share pages"));
        }
        let end_page = run.first_page.checked_add(run.pages).ok_or(ImageError::Truncated)?;
        if end_page > rec.size() / PAGE_SIZE {
            return Err(ImageError::Malformed("a shared page run goes past the end of its region"));
        }
        if prev.is_some_and(|(r, end)| (run.region, run.first_page) < (r, end)) {
            return Err(ImageError::Malformed("shared page runs overlap or are out of order"));
        }
        prev = Some((run.region, end_page));
        if run.source as usize > bases {
            return Err(ImageError::Malformed("a page run names a base image the image does not list"));
        }
        if run.offset.checked_add(run.bytes()).is_none_or(|end| run.source == 0 && end > image.file_len) {
            return Err(ImageError::Truncated);
        }
    }
    Ok(())
}

/// Checks that every run of a tree part (`member`) points at the root's stored bytes for the
/// same addresses: inside one region of the root's that holds plain private data, at the
/// place in its data that matches the address. Those bytes are then checked with the root's.
pub fn check_against_root(member: &Image, root: &Image) -> Result<(), ImageError> {
    for run in member.shared_runs() {
        let run = run?;
        if run.source != 0 {
            return Err(ImageError::Malformed("a process of a tree names a base image"));
        }
        let addr = run.addr(member.region(run.region as usize)?.record.start);
        if holder(root, addr, run.bytes(), run.offset)?.is_none() {
            return Err(ImageError::Malformed("a shared page run does not point at the root's copy of the same pages"));
        }
    }
    Ok(())
}

/// The region of `other` whose own stored bytes for `addr..addr+len` are at file offset
/// `offset`: plain data of a private region covering those addresses, at the place in its data
/// that matches the address. Its index, if there is one. The regions are sorted and disjoint
/// (checked when the image was parsed), so only the last one that starts at or below `addr`
/// can hold it: found by bisection, as there may be a run for every other page.
pub(crate) fn holder(other: &Image, addr: u64, len: u64, offset: u64) -> Result<Option<usize>, ImageError> {
    let end = addr.checked_add(len).ok_or(ImageError::Truncated)?;
    let (mut lo, mut hi) = (0usize, other.region_count());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if other.region(mid)?.record.start <= addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if let Some(i) = lo.checked_sub(1) {
        let o = other.region(i)?;
        let rec = o.record;
        if rec.has_data()
            && !rec.compressed()
            && !rec.is_shared()
            && !rec.kind.is_kernel_special()
            && rec.start <= addr
            && end <= rec.end
            && o.data_offset.checked_add(addr - rec.start) == Some(offset)
        {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// How an image gives its `NT_CKPT_SHARED` note.
impl<'a> Image<'a> {
    /// The pages this tree part stores in the root's copy (`NT_CKPT_SHARED`; none elsewhere).
    pub fn shared_runs(&self) -> crate::bytes::Records<'a, SharedRun> {
        match self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_SHARED).map(|n| records(n.desc)) {
            None => crate::bytes::Records::new(&[], SharedRun::read),
            Some(Ok(r)) => r,
            // A bad header reads as one bad record, so every user sees the error.
            Some(Err(ImageError::Malformed(TOO_MANY_RUNS))) => crate::bytes::Records::new(&[0], |_| Err(ImageError::Malformed(TOO_MANY_RUNS))),
            Some(Err(_)) => crate::bytes::Records::new(&[0], |_| Err(ImageError::Malformed("bad shared page table"))),
        }
    }

    /// The runs of the `NT_CKPT_SHARED` note as a table read in place (empty without the note
    /// or with a bad header, which [`Image::shared_runs`] reports): found once, then looked up
    /// by index and by bisection, where a walk over every run for each question would cost
    /// too much with a run for every other page.
    pub fn shared_table(&self) -> SharedTable<'a> {
        let desc = self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_SHARED).map_or(&[][..], |n| n.desc);
        match crate::bytes::table(desc, SHARED_RECORD_SIZE, MAX_SHARED_RUNS, SharedRun::read, "bad shared page table") {
            Ok((count, _)) => SharedTable { body: &desc[SHARED_HEADER_SIZE..], count },
            Err(_) => SharedTable { body: &[], count: 0 },
        }
    }
}

/// The runs of an `NT_CKPT_SHARED` note, by index (see [`Image::shared_table`]).
#[derive(Clone, Copy)]
pub struct SharedTable<'a> {
    body: &'a [u8],
    count: usize,
}

impl<'a> SharedTable<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Run `i`.
    pub fn get(&self, i: usize) -> Result<SharedRun, ImageError> {
        let at = i.checked_mul(SHARED_RECORD_SIZE).ok_or(ImageError::Truncated)?;
        let rec = self.body.get(at..at + SHARED_RECORD_SIZE).ok_or(ImageError::Malformed("shared page run index out of range"))?;
        SharedRun::read(&mut Reader::new(rec))
    }

    /// The runs from index `i` on, in order.
    pub fn from(&self, i: usize) -> Records<'a, SharedRun> {
        Records::new(self.body.get(i.saturating_mul(SHARED_RECORD_SIZE)..).unwrap_or(&[]), SharedRun::read)
    }

    /// The index of the first run that ends after page `page` of region `region` (the run
    /// count if none does): the runs are ordered by region, then page, and do not overlap.
    pub fn first_after(&self, region: u32, page: u64) -> Result<usize, ImageError> {
        self.first_where(|r| Ok((r.region, r.first_page + r.pages) > (region, page)))
    }

    /// The index of the first run for which `past` holds (the run count if none does), `past`
    /// being false for every run before some index and true from there on.
    pub fn first_where(&self, past: impl Fn(&SharedRun) -> Result<bool, ImageError>) -> Result<usize, ImageError> {
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if past(&self.get(mid)?)? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }
}
