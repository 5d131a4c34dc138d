//! `NT_CKPT_TREE`: the processes of a tree checkpoint, in the root process's image.
//!
//! A tree image is one file: the root's image from offset 0 (an ordinary image, which gdb
//! reads), then each other process's image, a whole image of its own starting on a page
//! boundary. Every offset inside a part counts from the start of the file (see [`rebase`]), so
//! a part is read like an image whose headers happen to start at `base`.
//!
//! ```text
//!   u32 count, u32 record size (56)
//!   count records:
//!     u32 pid, ppid, pgid, sid     as the root's PID namespace saw them (0: outside it)
//!     u32 state                    TREE_LIVE or TREE_ZOMBIE
//!     u32 wait_status              a zombie's status as wait() reports it
//!     u64 base, len                where its image is (0, 0 for a zombie)
//!     u64 meta_hash                its image's header checksum, binding part to table
//!     u64 reserved
//! ```
//! The first record is the root itself (base 0). A process's parent comes before it.

use crate::bytes::{Reader, Records, Writer};
use crate::elf::{Ehdr, Phdr, EHDR_SIZE, PHDR_SIZE, PT_LOAD};
use crate::fds::FdRecord;
use crate::note::Notes;
use crate::region::{RegionRecord, HEADER_SIZE, RECORD_SIZE};
use crate::{ImageError, CKPT_NOTE_NAME, NT_CKPT_FDS, NT_CKPT_REGIONS, PAGE_SIZE};

pub const TREE_RECORD_SIZE: usize = 56;
pub const TREE_HEADER_SIZE: usize = crate::bytes::TABLE_HEADER_SIZE;
pub use crate::limits::MAX_TREE;

pub const TREE_LIVE: u32 = 0;
pub const TREE_ZOMBIE: u32 = 1;

/// One process of the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeRecord {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub state: u32,
    pub wait_status: u32,
    pub base: u64,
    pub len: u64,
    pub meta_hash: u64,
}

impl TreeRecord {
    pub fn is_zombie(&self) -> bool {
        self.state == TREE_ZOMBIE
    }

    pub fn write(&self, w: &mut Writer) {
        for v in [self.pid, self.ppid, self.pgid, self.sid, self.state, self.wait_status] {
            w.u32(v);
        }
        w.u64(self.base);
        w.u64(self.len);
        w.u64(self.meta_hash);
        w.u64(0);
    }

    pub fn read(r: &mut Reader) -> Result<TreeRecord, ImageError> {
        let t = TreeRecord {
            pid: r.u32()?,
            ppid: r.u32()?,
            pgid: r.u32()?,
            sid: r.u32()?,
            state: r.u32()?,
            wait_status: r.u32()?,
            base: r.u64()?,
            len: r.u64()?,
            meta_hash: r.u64()?,
        };
        r.skip(8)?;
        if !crate::state::is_id(t.pid) || t.state > TREE_ZOMBIE || t.base % PAGE_SIZE != 0 || (t.is_zombie() && t.len != 0) {
            return Err(ImageError::Malformed("bad process tree record"));
        }
        Ok(t)
    }
}

/// Bytes of a tree note for `count` processes.
pub const fn note_len(count: usize) -> usize {
    TREE_HEADER_SIZE + TREE_RECORD_SIZE * count
}

pub fn write_header(w: &mut Writer, count: usize) {
    crate::bytes::write_table_header(w, count, TREE_RECORD_SIZE);
}

/// The records of a tree note's descriptor, checked as a whole: a known record size, the root
/// first at base 0, no PID twice, every parent before its children, parts that do not overlap
/// each other or the root's headers, and all within `file_len`.
pub fn records(desc: &[u8], file_len: u64) -> Result<Records<'_, TreeRecord>, ImageError> {
    let (count, _) = crate::bytes::table(desc, TREE_RECORD_SIZE, MAX_TREE, TreeRecord::read, "bad process tree table")?;
    if count == 0 {
        return Err(ImageError::Malformed("bad process tree table"));
    }
    let body = &desc[TREE_HEADER_SIZE..];
    let all = || Records::new(body, TreeRecord::read);
    for (i, t) in all().enumerate() {
        let t = t?;
        if i == 0 && (t.base != 0 || t.is_zombie()) {
            return Err(ImageError::Malformed("the process tree does not start with its root"));
        }
        let earlier = || all().take(i).filter_map(Result::ok);
        if earlier().any(|o| o.pid == t.pid) {
            return Err(ImageError::Malformed("a PID appears twice in the process tree"));
        }
        if i > 0 && !earlier().any(|o| o.pid == t.ppid && !o.is_zombie()) {
            return Err(ImageError::Malformed("a process comes before its parent in the process tree"));
        }
        if i > 0 && !t.is_zombie() {
            let end = t.base.checked_add(t.len).ok_or(ImageError::Truncated)?;
            if end > file_len || t.len < PAGE_SIZE {
                return Err(ImageError::Truncated);
            }
            let overlaps = earlier().skip(1).any(|o| !o.is_zombie() && o.base < end && t.base < o.base + o.len);
            if overlaps || t.base == 0 {
                return Err(ImageError::Malformed("process images overlap in the tree image"));
            }
        }
    }
    Ok(all())
}

/// Moves an image's metadata `delta` bytes further into a file: every offset it holds (region
/// data in the program headers and region table, descriptor contents) grows by `delta`. The
/// caller copies the image's bytes to the new place and seals the headers again
/// ([`crate::seal`]).
pub fn rebase(meta: &mut [u8], delta: u64) -> Result<(), ImageError> {
    rebase_sharing(meta, delta, |_| None, |_, _| {})
}

/// [`rebase`], except that a region for which `shared` names an offset (where the same bytes
/// already are in the file: the root's copy of a region a child shares with it) points there
/// instead; `dropped` is told the old offset and length of each such region's own bytes, which
/// nothing refers to any more.
pub fn rebase_sharing(
    meta: &mut [u8],
    delta: u64,
    shared: impl Fn(&RegionRecord) -> Option<u64>,
    mut dropped: impl FnMut(u64, u64),
) -> Result<(), ImageError> {
    let ehdr = Ehdr::read(meta)?;
    let phnum = ehdr.phnum as usize;
    let notes_at = EHDR_SIZE + PHDR_SIZE * phnum;
    // Where the two tables are, found first (the iterator borrows `meta`).
    let (mut regions, mut fds) = (None, None);
    for note in Notes::new(meta.get(notes_at..).ok_or(ImageError::Truncated)?) {
        let note = note?;
        let range = notes_at + note.desc_offset..notes_at + note.desc_offset + note.desc.len();
        match (note.name == CKPT_NOTE_NAME, note.n_type) {
            (true, NT_CKPT_REGIONS) => regions = Some(range),
            (true, NT_CKPT_FDS) => fds = Some(range),
            _ => {}
        }
    }
    let regions = regions.ok_or(ImageError::Malformed("no region table"))?;
    let count = Reader::new(&meta[regions.clone()]).u32()? as usize;
    if count + 1 != phnum {
        return Err(ImageError::Malformed("region table does not match the program headers"));
    }
    for i in 0..count {
        let at = regions.start + HEADER_SIZE + RECORD_SIZE * i;
        let bytes = meta.get_mut(at..at + RECORD_SIZE).ok_or(ImageError::Truncated)?;
        let mut rec = RegionRecord::read(&mut Reader::new(bytes))?;
        if !rec.has_data() {
            continue;
        }
        // A region with some pages of its own and some of the root's keeps its own copy.
        let moved = match shared(&rec).filter(|_| !rec.shares_pages()) {
            Some(off) => {
                dropped(rec.data_offset, rec.stored_len);
                off
            }
            None => rec.data_offset.checked_add(delta).ok_or(ImageError::Truncated)?,
        };
        rec.data_offset = moved;
        rec.write(&mut Writer::new(bytes));
        // The region's program header (the one after the note's) says the same offset.
        let ph_at = EHDR_SIZE + PHDR_SIZE * (i + 1);
        let mut ph = Phdr::read(&mut Reader::new(meta.get(ph_at..ph_at + PHDR_SIZE).ok_or(ImageError::Truncated)?))?;
        if ph.p_type == PT_LOAD && ph.filesz > 0 {
            ph.offset = moved;
            ph.write(&mut Writer::new(&mut meta[ph_at..ph_at + PHDR_SIZE]));
        }
    }
    if let Some(fds) = fds {
        crate::fds::update_records(&mut meta[fds], |rec: &mut FdRecord, _| {
            if rec.has_blob() {
                rec.blob_offset = rec.blob_offset.checked_add(delta).ok_or(ImageError::Truncated)?;
            }
            Ok::<(), ImageError>(())
        })?;
    }
    Ok(())
}
