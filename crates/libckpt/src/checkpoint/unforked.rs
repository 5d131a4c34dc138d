//! The memory an incremental image's writer never reads, kept out of its fork.
//!
//! Forking the writer copies the page tables of all the program's memory while the program is
//! stopped: 30 to 40 ms for 2 GiB here, most of an incremental checkpoint's pause. Yet an
//! incremental image stores only the pages written since the previous checkpoint and names the
//! others where the previous image holds them (`chain`): the writer reads none of those. So the
//! unwritten memory of large anonymous regions is marked `MADV_DONTFORK` just before the writer
//! is forked ([`mark`]) and `MADV_DOFORK` again as soon as it is ([`unmark`]),
//! before any thread of the program runs; the kernel merges the split mappings again. The fork
//! then copies the tables of the written memory and little else (2 ms for 2 GiB).
//!
//! What makes that safe:
//! - Only when the image builds on the previous one, as [`choose`] checks here before the fork.
//!   The writer checks again, and records every page it lacks as left to a base or fails, so it
//!   never stores a page it lacks as zeros; should one be missing, every later writer gets all
//!   the memory (`report::fork_all`).
//! - Only pages in memory or swapped out when [`choose`] scans them: the writer cannot look at
//!   pages it lacks, and takes those as such (a page never touched is stored as zeros, never
//!   left to a base, so it must not be left out).
//! - Never memory the writer reads: libckpt's stack and the stack this runs on, each thread's
//!   signal frame, libckpt's statics (the anonymous memory right after a loaded file's mapping,
//!   its `.bss`, is never a candidate, of any library), the scratch area (never tracked), a
//!   thread's `[stack]`.
//! - Never when the program marked memory `MADV_DONTFORK` itself (seen through libc, or by a
//!   writer that missed some): `MADV_DOFORK` afterwards would undo its mark.
//! - Only runs of 2 MiB or more in regions of 32 MiB or more, at most [`MAX_UNFORKED`] of
//!   them: each splits its region's mapping for the time of the fork.
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler, every other thread stopped: raw system calls (`madvise`,
//! `PAGEMAP_SCAN`) and the scratch area; no allocation, no locks, no libc.

use super::scratch::{Parts, MAX_UNFORKED};
use ckpt_image::ThreadState;
use ckpt_sigsafe::say;
use rustix::mm::Advice;

/// The shortest run left out.
const MIN_RUN: u64 = 2 << 20;
/// How much memory is left in around each address the writer reads on a stack (a signal
/// frame and what the kernel put with it, the handler's own frames).
const NEAR: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// In the handler, once tracking has found what the program wrote (`parts.dirty`) and before
/// the writer is forked: fills `parts.unforked` with the memory the writer can do without.
/// Looks into the large private anonymous regions of the layout (`write::unforked_candidates`,
/// `exclude` the scratch area); `threads` are the stopped threads, `image` the image's path.
pub fn choose(parts: &mut Parts, exclude: &core::ops::Range<usize>, threads: &[ThreadState], image: &[u8]) {
    parts.nunforked = 0;
    let cfg = crate::config::get();
    if cfg.attached || parts.tracked.prev == 0 || crate::dropped::not_inherited_seen() || super::report::smaps_needed() || super::report::forks_all() {
        return;
    }
    if !super::chain::builds_on_previous(image, &parts.tracked, parts.base_meta, parts.base_state) {
        return;
    }
    let Ok(pm) = rustix::fs::open(c"/proc/self/pagemap", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else { return };
    use rustix::fd::AsRawFd;
    // What the writer reads outside the scratch area: the stack this runs on (an address of
    // this frame), libckpt's own stack, the threads' slots and their signal frames.
    let here = &pm as *const _ as u64;
    let own = super::ownstack::in_use();
    let slots = threads.as_ptr() as u64..threads.as_ptr() as u64 + core::mem::size_of_val(threads) as u64;
    let near = |a: u64| (a.saturating_sub(NEAR) & !(PAGE - 1), (a + NEAR).next_multiple_of(PAGE));
    let kept = || {
        [near(here), (own.start as u64, own.end as u64), (slots.start & !(PAGE - 1), slots.end.next_multiple_of(PAGE))]
            .into_iter()
            .chain(threads.iter().map(|t| near(t.sigframe)))
    };
    let dirty = &parts.dirty[..parts.tracked.ndirty.min(parts.dirty.len())];
    let out = &mut parts.unforked[..MAX_UNFORKED];
    let mut n = 0usize;
    let mut di = 0usize;
    let regions = super::write::unforked_candidates(&parts.maps[..parts.maps_len], exclude);
    'regions: for (start, end) in regions {
        // The unwritten gaps between the region's written ranges.
        while di < dirty.len() && dirty[di][1] <= start {
            di += 1;
        }
        let mut at = start;
        while at < end {
            let gap_end = if di < dirty.len() && dirty[di][0] < end { dirty[di][0].max(at) } else { end };
            if gap_end - at >= MIN_RUN {
                // Its pages in memory, less what the writer reads.
                let scanned = ckpt_sigsafe::pagescan::scan(pm.as_raw_fd(), at, gap_end, ckpt_sigsafe::pagescan::IN_MEMORY, |s, e, _| {
                    let mut s = s;
                    while s < e && n < out.len() {
                        let first = kept().filter(|k| k.0 < e && s < k.1).min_by_key(|k| k.0);
                        let piece_end = first.map_or(e, |k| k.0.max(s));
                        if piece_end - s >= MIN_RUN {
                            out[n] = [s, piece_end];
                            n += 1;
                        }
                        s = first.map_or(e, |k| k.1.max(s));
                    }
                });
                if scanned.is_err() {
                    // Nothing is left out without knowing what is in memory.
                    parts.nunforked = 0;
                    return;
                }
            }
            if n == out.len() {
                break 'regions;
            }
            if gap_end >= end {
                break;
            }
            at = dirty[di][1].min(end);
            di += 1;
        }
    }
    parts.nunforked = n;
}

/// Just before the writer is forked: marks `ranges` (see [`choose`]) `MADV_DONTFORK`. Returns
/// how many are left out of the fork, all or none (if one cannot be marked, those that were are
/// marked again): the writer must be told (it reads the count in its copy of `parts`).
pub fn mark(ranges: &[[u64; 2]]) -> usize {
    for (i, r) in ranges.iter().enumerate() {
        if advise(r, Advice::LinuxDontFork).is_err() {
            unmark(&ranges[..i]);
            return 0;
        }
    }
    ranges.len()
}

/// In the program, once the writer is forked (or could not be) and before any of its threads
/// runs again: the program's own children inherit that memory again.
pub fn unmark(ranges: &[[u64; 2]]) {
    for r in ranges {
        // Clearing the mark may need the kernel to merge the mapping again, which in principle
        // can fail for want of memory: tried once more, then said.
        if advise(r, Advice::LinuxDoFork).is_err() && advise(r, Advice::LinuxDoFork).is_err() {
            say!("ckpt: memory at {:#x}..{:#x} could not be marked for children to inherit again (MADV_DOFORK); a child this program forks lacks it", r[0], r[1]);
        }
    }
}

fn advise(r: &[u64; 2], advice: Advice) -> Result<(), rustix::io::Errno> {
    // SAFETY: `r` is part of a private anonymous mapping of the program's (see `choose`), and the
    // advice changes only whether a fork copies it, never its contents or its mapping.
    unsafe { rustix::mm::madvise(r[0] as *mut _, (r[1] - r[0]) as usize, advice) }
}
