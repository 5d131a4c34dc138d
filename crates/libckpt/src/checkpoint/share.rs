//! Pages a tree's processes have in common, stored once.
//!
//! A child that has not written a page since `fork` holds the same bytes at the same address as
//! its parent. The root's writer publishes, before it writes anything, a digest (xxh3-128) of
//! each page of private anonymous memory it will store and where that page will be in the
//! image, in a table in a memfd. Each member's writer maps the table (through
//! `/proc/WRITER/fd/N`) and does not store a page of its own private anonymous memory whose
//! digest is the one the root's page at the same address has: a run in its `NT_CKPT_SHARED`
//! note points at the root's copy instead (see `ckpt_image::shared`). Restart then reads those
//! bytes once, and the root's process checks them.
//!
//! The table is for this checkpoint alone and is never stored:
//! ```text
//!   Header { regions, pages }
//!   regions × TableRegion { start, end, data_offset, first }   (address order)
//!   pages × [u64; 2]                                          digests, [0, 0]: nothing to share
//! ```
//!
//! # Signal-safety fence
//! Runs in the writers (forked from the checkpoint signal handler, or in the handler itself with
//! `CKPT_SYNC`): raw system calls, a mapping of its own and fixed buffers; no allocation, no
//! locks, no libc.

use super::tree::{Joined, Tree};
use ckpt_image::PAGE_SIZE;
use ckpt_sigsafe::proctext::proc_path2;
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// A page's digest; `[0, 0]` stands for "no page to share" (a real digest of zero only loses
/// the sharing of that page).
pub type Digest = [u64; 2];

pub fn digest(page: &[u8]) -> Digest {
    let d = xxhash_rust::xxh3::xxh3_128(page);
    [d as u64, (d >> 64) as u64]
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    regions: u64,
    pages: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TableRegion {
    start: u64,
    end: u64,
    /// Where the region's first page will be in the image.
    data_offset: u64,
    /// Index of the region's first page in the digests.
    first: u64,
}

const HEADER: usize = core::mem::size_of::<Header>();
const REGION: usize = core::mem::size_of::<TableRegion>();
const DIGEST: usize = core::mem::size_of::<Digest>();

fn table_len(regions: usize, pages: usize) -> Option<usize> {
    HEADER.checked_add(REGION.checked_mul(regions)?)?.checked_add(DIGEST.checked_mul(pages)?)
}

/// A mapping of a table, removed when dropped.
struct Mapping {
    addr: usize,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no slice into it outlives the value that owns it.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut _, self.len) };
    }
}

fn map(fd: &OwnedFd, len: usize, prot: ProtFlags) -> Result<Mapping, rustix::io::Errno> {
    // SAFETY: a shared mapping of a memfd of at least `len` bytes, at an address of the
    // kernel's choosing; owned by the returned value.
    let addr = unsafe { rustix::mm::mmap(core::ptr::null_mut(), len, prot, MapFlags::SHARED, fd.as_fd(), 0) }?;
    Ok(Mapping { addr: addr as usize, len })
}

// ---------------------------------------------------------------------------------------------
// The root's writer.

/// The root's table while the root's writer fills it, then (published) while the members read
/// it. Unless published, members are told at drop that there is no table, so that none waits.
pub struct Table<'t> {
    tree: &'t Tree,
    fd: Option<OwnedFd>,
    map: Option<Mapping>,
    regions: usize,
    pages: usize,
    next_region: usize,
    next_page: usize,
    published: bool,
}

impl<'t> Table<'t> {
    /// No table yet: dropped as it is, it tells the members there is none.
    pub fn new(tree: &'t Tree) -> Table<'t> {
        Table { tree, fd: None, map: None, regions: 0, pages: 0, next_region: 0, next_page: 0, published: false }
    }

    /// Makes the table for `regions` regions of `pages` pages in all. If it cannot be made, the
    /// checkpoint goes on without sharing.
    pub fn allocate(&mut self, regions: usize, pages: usize) {
        let Some(len) = table_len(regions, pages) else { return };
        let Ok(fd) = rustix::fs::memfd_create(c"ckpt-pages", rustix::fs::MemfdFlags::CLOEXEC) else { return };
        if rustix::fs::ftruncate(&fd, len as u64).is_err() {
            return;
        }
        let Ok(m) = map(&fd, len, ProtFlags::READ | ProtFlags::WRITE) else { return };
        // SAFETY: the mapping is at least HEADER bytes, page-aligned and writable.
        unsafe { (m.addr as *mut Header).write(Header { regions: regions as u64, pages: pages as u64 }) };
        (self.fd, self.map, self.regions, self.pages) = (Some(fd), Some(m), regions, pages);
    }

    /// Adds the next region (in address order) and returns the room for its digests, or `None`
    /// when there is no table.
    pub fn region(&mut self, start: usize, end: usize, data_offset: u64) -> Option<&mut [Digest]> {
        let m = self.map.as_ref()?;
        let n = (end - start) / PAGE_SIZE as usize;
        if self.next_region >= self.regions || self.next_page + n > self.pages {
            return None;
        }
        let rec = TableRegion { start: start as u64, end: end as u64, data_offset, first: self.next_page as u64 };
        // SAFETY: record `next_region` lies inside the mapping (table_len counted `regions`
        // records after the header), which is aligned for u64 fields.
        unsafe { ((m.addr + HEADER + REGION * self.next_region) as *mut TableRegion).write(rec) };
        let digests = m.addr + HEADER + REGION * self.regions + DIGEST * self.next_page;
        self.next_region += 1;
        self.next_page += n;
        // SAFETY: `n` digests from `next_page` lie inside the mapping (checked above), and no
        // other slice of them is handed out.
        Some(unsafe { core::slice::from_raw_parts_mut(digests as *mut Digest, n) })
    }

    /// Lets the members read the table.
    pub fn publish(&mut self) {
        let whole = self.next_region == self.regions && self.next_page == self.pages;
        match &self.fd {
            Some(fd) if whole => {
                self.tree.publish_pages(rustix::process::getpid().as_raw_nonzero().get() as u32, fd.as_raw_fd());
                self.published = true;
            }
            _ => {}
        }
    }
}

impl Drop for Table<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.tree.publish_pages(0, -1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A member's writer.

/// The root's table, as a member's writer reads it.
pub struct RootPages {
    _map: Mapping,
    regions: &'static [TableRegion],
    digests: &'static [Digest],
    /// The region of the last lookup (lookups go up in address order).
    cursor: usize,
}

impl RootPages {
    /// Waits for the root's table and maps it; `None` if there is none.
    pub fn open(joined: &Joined) -> Option<RootPages> {
        let (pid, fd) = joined.root_pages()?;
        let mut path = [0u8; 96];
        let path = proc_path2(&mut path, pid as u64, b"/fd/", fd as u64, b"")?;
        let file = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let len = usize::try_from(rustix::fs::fstat(&file).ok()?.st_size).ok()?;
        if len < HEADER {
            return None;
        }
        let m = map(&file, len, ProtFlags::READ).ok()?;
        // SAFETY: the mapping holds at least a header, aligned for u64.
        let h = unsafe { (m.addr as *const Header).read() };
        let (regions, pages) = (usize::try_from(h.regions).ok()?, usize::try_from(h.pages).ok()?);
        if table_len(regions, pages)? != len {
            return None;
        }
        // SAFETY: the sizes were checked against the mapping's length just above; the mapping
        // lives as long as the returned value (in `_map`), which is the slices' only user, and
        // the root's writer no longer writes it once published.
        let (regions, digests) = unsafe {
            (
                core::slice::from_raw_parts((m.addr + HEADER) as *const TableRegion, regions),
                core::slice::from_raw_parts((m.addr + HEADER + REGION * regions) as *const Digest, pages),
            )
        };
        // The root's writer wrote the table; a bad one only loses sharing, never bytes.
        let sane = regions.iter().all(|r| {
            r.start < r.end
                && r.start % PAGE_SIZE == 0
                && r.end % PAGE_SIZE == 0
                && r.data_offset % PAGE_SIZE == 0
                && r.first.checked_add((r.end - r.start) / PAGE_SIZE).is_some_and(|e| e <= pages as u64)
        }) && regions.windows(2).all(|w| w[0].end <= w[1].start);
        sane.then_some(RootPages { _map: m, regions, digests, cursor: 0 })
    }

    /// The root's digest of the page at `addr` and where the root stores it.
    pub fn lookup(&mut self, addr: usize) -> Option<(Digest, u64)> {
        let a = addr as u64;
        if self.regions.get(self.cursor).is_some_and(|r| r.start > a) {
            self.cursor = 0;
        }
        while self.regions.get(self.cursor).is_some_and(|r| r.end <= a) {
            self.cursor += 1;
        }
        let r = self.regions.get(self.cursor).filter(|r| r.start <= a)?;
        let page = (a - r.start) / PAGE_SIZE;
        let d = self.digests[(r.first + page) as usize];
        (d != [0, 0]).then_some((d, r.data_offset + page * PAGE_SIZE))
    }
}
