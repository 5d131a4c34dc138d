//! Reading the process's pages, and writing bytes into the image file: where a region's pages
//! are read from ([`PageSource`]), which pages are known to be zero without being read (the
//! pagemap), and [`write_all`].
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler and the writer: raw system calls (`pread`, `pwrite`,
//! `PAGEMAP_SCAN`) into caller-owned buffers; no allocation, no locks, no libc.

use super::failure::Failure;
use ckpt_image::PAGE_SIZE;
use ckpt_sigsafe::sys;
use core::ops::Range;
use rustix::io::Errno;

/// How a region's pages are read.
pub struct PageSource<'a> {
    /// `/proc/self/pagemap`, when the region is private anonymous memory: pages it reports as
    /// neither present nor swapped were never touched and are zero without being read.
    pub pagemap: Option<i32>,
    /// Pages in this range are stored as zeros: libckpt's own stack, which the checkpoint
    /// handler runs on (see `ownstack`), never more than its part of the region.
    pub zeros: Range<usize>,
    /// Copy the memory through `process_vm_readv` into a buffer first: for memory that may fault
    /// when read (file mappings past the end of the file), which ends the copy instead.
    pub bounce: bool,
    /// Memory of zeros the writer was forked without (see `unforked`), in address order: not
    /// there to read, stored as zeros.
    pub absent: &'a [[u64; 2]],
}

impl PageSource<'_> {
    /// Whether the page at `addr` is one the writer was forked without.
    fn is_absent(&self, addr: usize) -> bool {
        let i = self.absent.partition_point(|r| r[1] <= addr as u64);
        self.absent.get(i).is_some_and(|r| r[0] <= addr as u64)
    }
}

/// The page size, as an index.
pub const PAGE: usize = PAGE_SIZE as usize;
/// A pagemap entry's bits: the page is in memory; it is swapped out.
pub const PM_PRESENT: u64 = 1 << 63;
pub const PM_SWAPPED: u64 = 1 << 62;

/// For `out.len()` pages of private anonymous memory from `chunk_start`: `PM_PRESENT` for each
/// page in memory or swapped out, 0 for the others (never touched: zeros). One `PAGEMAP_SCAN`
/// where the kernel has it, else the pagemap's entries (all "present" without a pagemap).
pub fn read_in_memory(src: &PageSource, chunk_start: usize, out: &mut [u64]) {
    if let Some(pm) = src.pagemap {
        if ckpt_sigsafe::pagescan::in_memory(pm, chunk_start as u64, out, PM_PRESENT).is_ok() {
            return;
        }
    }
    read_pagemap(src, chunk_start, out)
}

/// Pagemap entries for `out.len()` pages from `chunk_start` (all "present" without a pagemap).
pub fn read_pagemap(src: &PageSource, chunk_start: usize, out: &mut [u64]) {
    out.fill(PM_PRESENT);
    if let Some(pm) = src.pagemap {
        let want = out.len() * 8;
        // SAFETY: `out` is out.len() u64s of writable memory.
        let got = unsafe { sys::pread_into(pm, out.as_mut_ptr() as usize, want, (chunk_start / PAGE * 8) as u64) };
        if got != Ok(want) {
            out.fill(PM_PRESENT);
        }
    }
}

/// How far ahead of the page being read [`prefetch_ahead`] reaches: 64 pages (256 KiB).
const AHEAD: usize = 64 * PAGE;

/// Asks the processor to start loading the page [`AHEAD`] of `addr`, if it is below `end`. In
/// the forked writer every page-table entry is "old" (fork leaves the child's so), and the
/// first read of each page waits for the walk that marks it accessed: 0.3 µs a page here,
/// three times the cost of reading the page. A prefetch makes that walk while the pages before
/// it are read (2 GiB of zeros scanned in 85 ms rather than 270 ms). A hint only: it never
/// faults, whatever the address.
#[inline(always)]
pub fn prefetch_ahead(addr: usize, end: usize) {
    let ahead = addr.wrapping_add(AHEAD);
    if ahead < end && ahead > addr {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch reads nothing the program can see and cannot fault, even for an
        // address that is not mapped.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ahead as *const i8)
        };
    }
}

/// The bytes of the page at `addr`, or `None` if it is known to be zero.
pub fn page_bytes<'s>(addr: usize, pagemap_entry: u64, src: &'s PageSource<'_>) -> Option<&'s [u8]> {
    if src.zeros.contains(&addr) || pagemap_entry & (PM_PRESENT | PM_SWAPPED) == 0 || src.is_absent(addr) {
        return None;
    }
    // SAFETY: private anonymous memory (the only kind read directly) listed readable in
    // /proc/self/maps cannot fault when read: an untouched page reads as zeros, a swapped one is
    // brought back. Nothing in this single-threaded process unmaps it meanwhile.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, PAGE) })
}

/// Writes `len` bytes from address `addr` into the image file `fd` at `off`, all of them.
pub fn write_all(fd: i32, mut addr: usize, mut len: usize, mut off: u64) -> Result<(), Failure> {
    while len > 0 {
        match rustix::io::retry_on_intr(|| sys::pwrite_from(fd, addr, len, off)) {
            Ok(0) => return Err(Failure::on_file("writing", Errno::NOSPC)),
            Ok(n) => {
                addr += n;
                len -= n;
                off += n as u64;
            }
            Err(e) => return Err(Failure::on_file("writing", e)),
        }
    }
    Ok(())
}
