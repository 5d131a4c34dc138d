//! `PAGEMAP_SCAN`, the `ioctl` on `/proc/self/pagemap` that reports ranges of pages by what they
//! are (in memory, swapped out, written since write-protected, …), a walk of the page tables
//! that is several times cheaper than reading the pagemap's per-page entries.
//!
//! Signal-safe: a raw `ioctl` and the caller's buffers only.

use crate::sys;
use linux_raw_sys::general as k;
use rustix::io::Errno;

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)` (linux/fs.h; linux-raw-sys has the
/// structure but not the request number).
pub const PAGEMAP_SCAN: u32 = 0xc000_0000 | ((core::mem::size_of::<k::pm_scan_arg>() as u32) << 16) | (b'f' as u32) << 8 | 16;

/// What to look for: pages whose categories, with `inverted` flipped, include all of `all` and
/// (if not 0) any of `any`; `flags` as `pm_scan_arg.flags` (`PM_SCAN_WP_MATCHING`: protect
/// the pages found again).
#[derive(Clone, Copy)]
pub struct Query {
    pub flags: u64,
    pub inverted: u64,
    pub all: u64,
    pub any: u64,
}

/// Walks `start..end` of the pagemap `pm` (as many calls as it takes), calling `f` with each
/// range of matching pages and their categories. `Err` if the kernel cannot scan (before 6.7).
pub fn scan(pm: i32, start: u64, end: u64, q: Query, mut f: impl FnMut(u64, u64, u64)) -> Result<(), Errno> {
    let mut vec = [k::page_region { start: 0, end: 0, categories: 0 }; 64];
    let mut at = start;
    while at < end {
        let mut arg = k::pm_scan_arg {
            size: core::mem::size_of::<k::pm_scan_arg>() as u64,
            flags: q.flags,
            start: at,
            end,
            walk_end: 0,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            max_pages: 0,
            category_inverted: q.inverted,
            category_mask: q.all,
            category_anyof_mask: q.any,
            return_mask: q.all | q.any,
        };
        // SAFETY: `arg` is a pm_scan_arg whose `vec` points at `vec.len()` page_regions.
        let n = unsafe { sys::ioctl(pm, PAGEMAP_SCAN, &mut arg as *mut _ as usize) }?;
        for r in &vec[..n.min(vec.len())] {
            f(r.start, r.end, r.categories);
        }
        if arg.walk_end <= at {
            return Err(Errno::IO);
        }
        at = arg.walk_end;
    }
    Ok(())
}

/// Pages in memory or swapped out (so not known to be zero).
pub const IN_MEMORY: Query = Query { flags: 0, inverted: 0, all: 0, any: (k::PAGE_IS_PRESENT | k::PAGE_IS_SWAPPED) as u64 };

/// Pages not in memory (the complement of the pages surely not zeros in memory registered for
/// asynchronous write-protection, where a page never touched can hold the kernel's marker of a
/// protected page, which reports as swapped out). The kernel reports few ranges where most
/// pages are present, and cheaply: a walk that reports every present page costs it several
/// times more.
pub const NOT_PRESENT: Query = Query { flags: 0, inverted: k::PAGE_IS_PRESENT as u64, all: k::PAGE_IS_PRESENT as u64, any: 0 };

/// Fills `out` (one entry per page from `start`) with `mark` for each page in memory or swapped
/// out and 0 for the others.
pub fn in_memory(pm: i32, start: u64, out: &mut [u64], mark: u64) -> Result<(), Errno> {
    out.fill(0);
    let end = start + out.len() as u64 * 4096;
    scan(pm, start, end, IN_MEMORY, |s, e, _| {
        let (a, b) = (((s - start) / 4096) as usize, ((e.min(end) - start) / 4096) as usize);
        out[a..b].fill(mark);
    })
}
