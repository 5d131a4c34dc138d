//! A self-contained copy of an image (`ckpt copy`): one file that restarts without any of the
//! base images an incremental image names, for copying, archiving or moving.
//!
//! The copy is the image with every page it leaves to a base copied in, at that page's place in
//! the region's own span of the file (a hole in the image, which a verified image holds as
//! zeros). So the headers change only where they say where pages are: the `NT_CKPT_SHARED`
//! note goes (its runs all name bases), the `NT_CKPT_CHAIN` note lists no base (the image keeps
//! its identity: it is the same checkpoint), no region has `RF_SHARES_PAGES`, and a region that
//! took pages in gets the hash of all its contents (a region's hash covers only the pages the
//! file itself holds). The headers get shorter, so everything after them moves toward the start
//! by whole pages: region data and descriptors' saved bytes keep their order and alignment, and
//! holes stay holes.
//!
//! An image that names no base (a full image, a tree image, a compressed or keyed one) is its
//! own copy, byte for byte.
//!
//! This module says where each of the copy's bytes comes from ([`Standalone::moves`]) and lays
//! out its headers ([`Standalone::write_headers`]); the caller, who holds the files, moves the
//! bytes and hashes the regions that took pages in.

use crate::bytes::{Reader, Writer};
use crate::chain::Chain;
use crate::elf::{Ehdr, Phdr, EHDR_SIZE, PHDR_SIZE, PT_NOTE};
use crate::image::{Image, RegionRef};
use crate::note::{begin_note, note_size, Note, Notes};
use crate::region::{HEADER_SIZE, RECORD_SIZE, RF_SHARES_PAGES};
use crate::state::META_LEN_OFFSET;
use crate::{page_up, ImageError, CKPT_NOTE_NAME, NT_CKPT_CHAIN, NT_CKPT_FDS, NT_CKPT_MAC, NT_CKPT_REGIONS, NT_CKPT_SHARED, NT_CKPT_STATE, PAGE_SIZE};

/// A stretch of bytes the copy takes from one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// 0: the image itself; k ≥ 1: base k of its `NT_CKPT_CHAIN`.
    pub source: u32,
    /// Where the bytes are in that file.
    pub from: u64,
    /// Where they go in the copy.
    pub to: u64,
    pub len: u64,
}

/// The layout of the self-contained copy of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standalone {
    /// Whether the image names bases (else the copy is the image, byte for byte).
    chained: bool,
    meta_len: usize,
    /// Where the image's data starts (the page after its headers).
    old_start: u64,
    /// How far everything after the headers moves toward the start of the file.
    shift: u64,
    file_len: u64,
}

/// The length a note's descriptor has in the copy, or `None` if the copy leaves the note out.
fn copied_desc_len(note: &Note) -> Option<usize> {
    match (note.name == CKPT_NOTE_NAME, note.n_type) {
        (true, NT_CKPT_SHARED) => None,
        (true, NT_CKPT_CHAIN) => Some(crate::chain::note_len(0)),
        _ => Some(note.desc.len()),
    }
}

impl Standalone {
    /// Plans the copy of `image`, whose bases (in the order of its `NT_CKPT_CHAIN`) are
    /// `bases`: each must be the very image it was built on and hold the pages its runs name
    /// in its own bytes. (Their bytes are checked against their hashes by whoever holds them.)
    pub fn plan(image: &Image, bases: &[Image]) -> Result<Standalone, ImageError> {
        let chain = image.chain().transpose()?;
        let count = chain.as_ref().map_or(0, |c| c.count);
        if bases.len() != count {
            return Err(ImageError::Malformed("the copy of an image needs every base image it names"));
        }
        let Some(chain) = chain.filter(|c| c.count > 0) else {
            return Ok(Standalone { chained: false, meta_len: image.meta().len(), old_start: 0, shift: 0, file_len: image.file_len });
        };
        if image.tree().is_some() {
            return Err(ImageError::Malformed("a tree image names a base image"));
        }
        if image.note(CKPT_NOTE_NAME, NT_CKPT_MAC).is_some() {
            // The MAC could not be made again without the key; the writer never makes such an image.
            return Err(ImageError::Malformed("an authenticated image names a base image"));
        }
        for (k, (rec, base)) in chain.bases().zip(bases).enumerate() {
            if !rec?.is(base) {
                return Err(ImageError::Malformed("a base image is not the one the image was built on"));
            }
            crate::chain::check_against_base(image, k as u32 + 1, base)?;
        }
        for run in image.shared_runs() {
            if run?.source == 0 {
                return Err(ImageError::Malformed("the image says it shares pages with itself"));
            }
        }
        let phdrs_end = EHDR_SIZE + PHDR_SIZE * image.phnum();
        let mut meta_len = phdrs_end;
        for note in Notes::new(image.meta().get(phdrs_end..).ok_or(ImageError::Truncated)?) {
            let note = note?;
            meta_len += copied_desc_len(&note).map_or(0, |len| note_size(note.name, len));
        }
        let old_start = page_up(image.meta().len() as u64);
        let shift = old_start - page_up(meta_len as u64);
        let file_len = image.file_len.max(old_start) - shift;
        Ok(Standalone { chained: true, meta_len, old_start, shift, file_len })
    }

    /// Bytes of the copy's headers.
    pub fn meta_len(&self) -> usize {
        self.meta_len
    }

    /// The copy's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Where an offset of the image's data is in the copy.
    fn moved(&self, offset: u64) -> Result<u64, ImageError> {
        offset.checked_sub(self.shift).ok_or(ImageError::Malformed("region data is misplaced"))
    }

    /// Where the copy's bytes come from, to be copied in this order (a later move fills what
    /// the earlier left as holes): first the image's own bytes after its headers, all in one
    /// move (only the stretches that hold data need copying), then each run's pages from its
    /// base. Then the headers, from [`Standalone::write_headers`]. An image without bases is
    /// one move, the whole file.
    pub fn moves<'i>(&self, image: &'i Image<'_>) -> impl Iterator<Item = Result<Move, ImageError>> + 'i {
        let own = Move { source: 0, from: self.old_start, to: self.old_start - self.shift, len: image.file_len.saturating_sub(self.old_start) };
        let plan = *self;
        let runs = image.shared_runs().filter(move |_| plan.chained).map(move |run| {
            let run = run?;
            let at = plan.moved(image.region(run.region as usize)?.data_offset)?;
            let to = at.checked_add(run.first_page * PAGE_SIZE).ok_or(ImageError::Truncated)?;
            Ok(Move { source: run.source, from: run.offset, to, len: run.bytes() })
        });
        core::iter::once(Ok(own)).filter(|m| m.as_ref().is_ok_and(|m| m.len > 0)).chain(runs)
    }

    /// Lays out the copy's headers in `out` ([`Standalone::meta_len`] bytes) and seals them.
    /// `rehash` is asked for the hash of each region that takes pages from a base, given the
    /// region as the copy has it (its data at its new place, where the moves have put it).
    pub fn write_headers(&self, image: &Image, mut rehash: impl FnMut(&RegionRef) -> Result<u64, ImageError>, out: &mut [u8]) -> Result<(), ImageError> {
        if out.len() != self.meta_len {
            return Err(ImageError::Malformed("the copy's headers have another length"));
        }
        let meta = image.meta();
        if !self.chained {
            out.copy_from_slice(meta);
            return Ok(());
        }
        let phnum = image.phnum();
        let phdrs_end = EHDR_SIZE + PHDR_SIZE * phnum;
        let count = image.region_count();
        let (mut state_at, mut fds_at) = (None, None);
        let mut w = Writer::new(out);
        Ehdr { phoff: EHDR_SIZE as u64, phnum: phnum as u16 }.write(&mut w);
        Phdr { p_type: PT_NOTE, offset: phdrs_end as u64, filesz: (self.meta_len - phdrs_end) as u64, align: 4, ..Phdr::default() }.write(&mut w);
        for i in 1..phnum {
            let at = EHDR_SIZE + PHDR_SIZE * i;
            let mut ph = Phdr::read(&mut Reader::new(meta.get(at..).ok_or(ImageError::Truncated)?))?;
            if ph.filesz > 0 {
                ph.offset = self.moved(ph.offset)?;
            }
            ph.write(&mut w);
        }
        for note in Notes::new(meta.get(phdrs_end..).ok_or(ImageError::Truncated)?) {
            let note = note?;
            let Some(len) = copied_desc_len(&note) else { continue };
            begin_note(&mut w, note.name, note.n_type, len);
            match (note.name == CKPT_NOTE_NAME, note.n_type) {
                (true, NT_CKPT_CHAIN) => crate::chain::write_header(&mut w, Chain::parse(note.desc)?.id, 0),
                (true, NT_CKPT_REGIONS) => {
                    crate::region::write_table_header(&mut w, count);
                    // Runs come ordered by region: one pass finds the regions that have any.
                    let mut runs = image.shared_runs().peekable();
                    for i in 0..count {
                        let mut takes_pages = false;
                        while let Some(run) = runs.next_if(|r| r.as_ref().map_or(true, |r| r.region as usize <= i)) {
                            takes_pages |= run?.region as usize == i;
                        }
                        let mut r = image.region(i)?;
                        if r.record.has_data() {
                            r.record.data_offset = self.moved(r.record.data_offset)?;
                            r.data_offset = r.record.data_offset;
                        }
                        if takes_pages {
                            r.record.data_hash = rehash(&r)?;
                        }
                        r.record.flags &= !RF_SHARES_PAGES;
                        r.record.write(&mut w);
                    }
                    w.bytes(note.desc.get(HEADER_SIZE + RECORD_SIZE * count..).ok_or(ImageError::Truncated)?);
                }
                (true, kind) => {
                    // The state's meta_len and the descriptors' offsets are set in place below.
                    if kind == NT_CKPT_STATE {
                        state_at = Some(w.pos());
                    } else if kind == NT_CKPT_FDS {
                        fds_at = Some(w.pos()..w.pos() + len);
                    }
                    w.bytes(note.desc);
                }
                (false, _) => w.bytes(note.desc),
            }
            w.align(4);
        }
        if w.finish() != Some(self.meta_len) {
            return Err(ImageError::Malformed("the copy's headers have another length"));
        }
        let state_at = state_at.ok_or(ImageError::Foreign)? + META_LEN_OFFSET;
        out.get_mut(state_at..state_at + 8).ok_or(ImageError::Truncated)?.copy_from_slice(&(self.meta_len as u64).to_le_bytes());
        if let Some(fds) = fds_at {
            crate::fds::update_records(&mut out[fds], |rec, _| {
                if rec.has_blob() {
                    rec.blob_offset = self.moved(rec.blob_offset)?;
                }
                Ok::<(), ImageError>(())
            })?;
        }
        crate::seal(out)
    }
}
