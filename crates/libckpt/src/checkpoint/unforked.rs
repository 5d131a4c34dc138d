//! The memory an incremental image's writer never reads, kept out of its fork.
//!
//! Forking the writer copies the page tables of all the program's memory while the program is
//! stopped: 30 to 40 ms for 2 GiB here, most of an incremental checkpoint's pause. Yet an
//! incremental image stores only the pages written since the previous checkpoint and names the
//! others where the previous image holds them (`chain`): the writer reads none of those. So the
//! unwritten memory of large anonymous regions is marked `MADV_DONTFORK` just before the writer
//! is forked ([`mark`]) and `MADV_DOFORK` again as soon as it is ([`unmark`]),
//! before any thread of the program runs; the kernel merges the split mappings again. The fork
//! then copies the tables of the written memory and little else: with 2 GiB, 3 to 4 ms from the
//! fork to the writer's first step instead of 30 to 50.
//!
//! What makes that safe:
//! - Only when the image builds on the previous one, and only memory whose region the previous
//!   image holds as plain data, as [`choose`] reads in its headers before the fork. The writer
//!   finds the same, records every page it lacks as left to a base or fails, so it never stores
//!   a page it lacks as zeros; should one be missing (the previous image replaced meanwhile),
//!   that checkpoint fails and every later writer of the process gets all the memory
//!   (`report::fork_all`).
//! - Only pages present when [`choose`] scans them, which the writer takes as such (it cannot
//!   look at pages it lacks). Not swapped-out ones: in memory write-protected for tracking, a
//!   page never touched or dropped since may hold the kernel's marker of a protected page,
//!   which reports as swapped out, and must be stored as zeros, not left to a base.
//! - Never memory the writer reads: the stack this runs on and libckpt's own, each thread's
//!   signal frame (a megabyte around each), the threads' slots, all of libckpt's segments
//!   (from its ELF header: restored eagerly they are anonymous memory, perhaps one region with
//!   the program's), the scratch area (never tracked).
//! - Never when the program marked memory `MADV_DONTFORK` itself through libc (or a writer
//!   found memory so marked): `MADV_DOFORK` afterwards would undo its mark. A mark made with the
//!   system call itself, which libckpt does not see, inside memory left out, is undone.
//! - Only runs of whole 2 MiB blocks in readable regions of 32 MiB or more (not the main
//!   thread's `[stack]`), at most [`MAX_UNFORKED`] of them: each splits its region's mapping for
//!   the time of the fork, never a transparent huge page.
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler, every other thread stopped: raw system calls (`madvise`,
//! `PAGEMAP_SCAN`) and the scratch area; no allocation, no locks, no libc.

use super::scratch::{Parts, MAX_UNFORKED};
use ckpt_image::ThreadState;
use ckpt_sigsafe::say;
use rustix::mm::Advice;

/// Runs left out start and end on this boundary, so that a transparent huge page is never
/// split by the marks; none is shorter.
const RUN_ALIGN: u64 = 2 << 20;
/// How much memory is left in around each address the writer reads on a stack (a signal
/// frame and what the kernel put with it, the handler's own frames).
const NEAR: u64 = 1 << 20;
const PAGE: u64 = 4096;

unsafe extern "C" {
    /// libckpt's own ELF header, which the linker places at the start of its first segment.
    static __ehdr_start: linux_raw_sys::elf_uapi::elf64_hdr;
}

/// All of libckpt's own segments, code and statics: after a restart that read memory back
/// eagerly they are anonymous memory like any other, which the kernel may show as one region
/// with the program's memory beside them.
fn own_span() -> (u64, u64) {
    use linux_raw_sys::elf_uapi::{elf64_phdr, PT_LOAD};
    // SAFETY: the linker defines `__ehdr_start` as this object's ELF header, mapped (and in a
    // restored process restored) with its first segment; its program headers are mapped too
    // (they follow it in that segment), `e_phnum` of them at `e_phoff`.
    let (base, phdrs) = unsafe {
        let ehdr = &raw const __ehdr_start;
        let base = ehdr as u64;
        let phdrs = core::slice::from_raw_parts((base + (*ehdr).e_phoff) as *const elf64_phdr, (*ehdr).e_phnum as usize);
        (base, phdrs)
    };
    let loads = phdrs.iter().filter(|p| p.p_type == PT_LOAD);
    let start = loads.clone().map(|p| p.p_vaddr).min().unwrap_or(0);
    let end = loads.map(|p| p.p_vaddr + p.p_memsz).max().unwrap_or(0);
    ((base + start) & !(PAGE - 1), (base + end).next_multiple_of(PAGE))
}

/// In the handler, once tracking has found what the program wrote (`parts.dirty`) and before
/// the writer is forked: fills `parts.unforked` with the memory the writer can do without,
/// memory the previous image holds. Looks into the large private anonymous regions of the
/// layout (`write::unforked_candidates`, `exclude` the scratch area); `threads` are the
/// stopped threads, `image` the image's path.
pub fn choose(parts: &mut Parts, exclude: &core::ops::Range<usize>, threads: &[ThreadState], image: &[u8]) {
    parts.nunforked = 0;
    if crate::dropped::not_inherited_seen() || super::report::smaps_needed() || super::report::forks_all() {
        return;
    }
    // None at a first checkpoint (nothing tracked yet) and wherever the image will be full.
    let Some(base) = super::chain::previous_image(image, &parts.tracked, parts.base_meta, parts.base_state) else { return };
    let Ok(pm) = rustix::fs::open(c"/proc/self/pagemap", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else { return };
    use rustix::fd::AsRawFd;
    // What the writer reads outside the scratch area: the stack this runs on (an address of
    // this frame), libckpt's own stack and segments, the threads' slots and signal frames.
    let here = &pm as *const _ as u64;
    let own = super::ownstack::in_use();
    let lib = own_span();
    let slots = threads.as_ptr() as u64..threads.as_ptr() as u64 + core::mem::size_of_val(threads) as u64;
    let near = |a: u64| (a.saturating_sub(NEAR) & !(PAGE - 1), (a + NEAR).next_multiple_of(PAGE));
    let kept = || {
        [near(here), (own.start as u64, own.end as u64), lib, (slots.start & !(PAGE - 1), slots.end.next_multiple_of(PAGE))]
            .into_iter()
            .chain(threads.iter().map(|t| near(t.sigframe)))
    };
    let dirty = &parts.dirty[..parts.tracked.ndirty.min(parts.dirty.len())];
    let out = &mut parts.unforked[..MAX_UNFORKED];
    let mut n = 0usize;
    let mut di = 0usize;
    // Where a candidate region and a region whose pages the previous image holds meet (both
    // lists in address order)...
    let mut candidates = super::write::unforked_candidates(&parts.maps[..parts.maps_len], exclude);
    let mut held = (0..base.region_count()).map_while(|i| base.region(i).ok()).filter(|o| super::chain::holds_pages(&o.record)).map(|o| (o.record.start, o.record.end));
    let (mut a, mut b) = (candidates.next(), held.next());
    while let (Some(c), Some(h)) = (a, b) {
        let (start, end) = (c.0.max(h.0), c.1.min(h.1));
        // ...the unwritten gaps between the written ranges...
        while di < dirty.len() && dirty[di][1] <= start {
            di += 1;
        }
        let mut at = start;
        while at < end && n < out.len() {
            let gap_end = if di < dirty.len() && dirty[di][0] < end { dirty[di][0].max(at) } else { end };
            if gap_end - at >= RUN_ALIGN {
                // ...their pages in memory (between those that are not), less what the writer
                // reads, in whole huge pages.
                let mut present = |s: u64, e: u64| {
                    let mut s = s;
                    while s < e && n < out.len() {
                        let first = kept().filter(|k| k.0 < e && s < k.1).min_by_key(|k| k.0);
                        let (from, to) = (s.next_multiple_of(RUN_ALIGN), first.map_or(e, |k| k.0.max(s)) & !(RUN_ALIGN - 1));
                        if from < to {
                            out[n] = [from, to];
                            n += 1;
                        }
                        s = first.map_or(e, |k| k.1.max(s));
                    }
                };
                let mut from = at;
                let scanned = ckpt_sigsafe::pagescan::scan(pm.as_raw_fd(), at, gap_end, ckpt_sigsafe::pagescan::NOT_PRESENT, |s, e, _| {
                    present(from, s.max(from));
                    from = e.max(from);
                });
                if scanned.is_err() {
                    // Nothing is left out without knowing what is in memory.
                    parts.nunforked = 0;
                    return;
                }
                present(from, gap_end);
            }
            if gap_end >= end {
                break;
            }
            // Past this written range (which may go on into the next part).
            at = dirty[di][1].clamp(at, end);
            if dirty[di][1] <= end {
                di += 1;
            }
        }
        if c.1 <= h.1 {
            a = candidates.next();
        } else {
            b = held.next();
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
            // This range too: the call may have marked part of it.
            unmark(&ranges[..=i]);
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
