//! The memory the writer never reads, kept out of its fork.
//!
//! Forking the writer copies the page tables of all the program's memory while the program is
//! stopped: 30 to 40 ms for 2 GiB here, most of an incremental checkpoint's pause. Yet an
//! incremental image stores only the pages written since the previous checkpoint and names the
//! others where the previous image holds them (`chain`): the writer reads none of those. And a
//! full image stores pages of zeros as holes: the writer reads them only to find them zero,
//! which costs it more than it costs here, where the program's page tables are warm (see
//! [`zeros`]). So that memory, in large anonymous regions, is marked `MADV_DONTFORK` just
//! before the writer is forked ([`mark`]) and `MADV_DOFORK` again as soon as it is
//! ([`unmark`]), before any thread of the program runs; the kernel merges the split mappings
//! again. The fork then copies the tables of the rest and little else: with 2 GiB, 3 to 4 ms
//! from the fork to the writer's first step instead of 30 to 50.
//!
//! What makes that safe:
//! - Unwritten memory only when the image builds on the previous one, and only memory whose
//!   region the previous image holds as plain data, as [`choose`] reads in its headers before
//!   the fork. The writer finds the same, records every page it lacks as left to a base or
//!   fails, so it never stores a page of that memory as zeros; should one be missing (the previous image replaced meanwhile),
//!   that checkpoint fails and every later writer of the process gets all the memory
//!   (`report::fork_all`).
//! - Memory of zeros only for a full image, not compressed (the compressing writer reads each
//!   region whole), found zero here with every thread stopped; the writer stores it as holes
//!   (`pages::PageSource::absent`) and never reads it.
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
//! `PAGEMAP_SCAN`, and for the zero test `clone`, `wait4`, `prctl`), reads of the program's
//! memory, and the scratch area; the zero test's helper, a process that shares the program's
//! memory, runs the same code on the writer's stack. No allocation, no locks, no libc.

use super::scratch::{Parts, WriterStack, MAX_UNFORKED};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
/// the writer is forked: fills `parts.unforked` with the memory the writer can do without.
/// That is memory the previous image holds, if this image builds on one; else, for a full
/// image, memory that holds only zeros ([`zeros`], `parts.unforked_zeros` set). Looks into the
/// large private anonymous regions of the layout (`write::unforked_candidates`, `exclude` the
/// scratch area); `threads` are the stopped threads, `image` the image's path.
pub fn choose(parts: &mut Parts, exclude: &core::ops::Range<usize>, threads: &[ThreadState], image: &[u8], stack: &mut WriterStack) {
    parts.nunforked = 0;
    parts.unforked_zeros = false;
    if crate::dropped::not_inherited_seen() || super::report::smaps_needed() || super::report::forks_all() {
        return;
    }
    // None at a first checkpoint (nothing tracked yet) and wherever the image will be full.
    let base = super::chain::previous_image(image, &parts.tracked, parts.base_meta, parts.base_state);
    // A compressed image's writer reads each region whole (`compress`): it gets all of it.
    if base.is_none() && crate::config::get().compress {
        return;
    }
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
    let mut out = Runs { out: &mut parts.unforked[..MAX_UNFORKED], n: 0 };
    let candidates = super::write::unforked_candidates(&parts.maps[..parts.maps_len], exclude);
    let full = base.is_none();
    let chosen = match base {
        Some(base) => {
            let dirty = &parts.dirty[..parts.tracked.ndirty.min(parts.dirty.len())];
            let held = (0..base.region_count()).map_while(|i| base.region(i).ok()).filter(|o| super::chain::holds_pages(&o.record)).map(|o| (o.record.start, o.record.end));
            unwritten(pm.as_raw_fd(), candidates, held, dirty, &kept, &mut out)
        }
        None => zeros(pm.as_raw_fd(), candidates, &kept, ZeroRoom { runs: parts.zero_runs, bits: parts.zero_bits }, stack, &mut out),
    };
    // Nothing is left out without knowing what is in memory.
    parts.nunforked = if chosen.is_ok() { out.n } else { 0 };
    parts.unforked_zeros = full;
}

/// The ranges chosen so far, in address order, and the room for more.
struct Runs<'a> {
    out: &'a mut [[u64; 2]],
    n: usize,
}

impl Runs<'_> {
    fn full(&self) -> bool {
        self.n == self.out.len()
    }

    /// Adds `from..to`, if there is room.
    fn push(&mut self, from: u64, to: u64) {
        if from < to && !self.full() {
            self.out[self.n] = [from, to];
            self.n += 1;
        }
    }
}

/// The unwritten memory the previous image holds: where a candidate region and a region whose
/// pages the previous image holds (`held`, both in address order) meet, the gaps between the
/// written ranges (`dirty`), in memory, less what the writer reads (`kept`).
fn unwritten<K: Iterator<Item = (u64, u64)>>(
    pm: i32,
    mut candidates: impl Iterator<Item = (u64, u64)>,
    mut held: impl Iterator<Item = (u64, u64)>,
    dirty: &[[u64; 2]],
    kept: &impl Fn() -> K,
    out: &mut Runs,
) -> Result<(), rustix::io::Errno> {
    let mut di = 0usize;
    let (mut a, mut b) = (candidates.next(), held.next());
    while let (Some(c), Some(h)) = (a, b) {
        let (start, end) = (c.0.max(h.0), c.1.min(h.1));
        while di < dirty.len() && dirty[di][1] <= start {
            di += 1;
        }
        let mut at = start;
        while at < end && !out.full() {
            let gap_end = if di < dirty.len() && dirty[di][0] < end { dirty[di][0].max(at) } else { end };
            if gap_end - at >= RUN_ALIGN {
                in_memory(pm, at, gap_end, kept, &mut |from, to| out.push(from, to))?;
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
    Ok(())
}

/// Calls `f` with each run of whole 2 MiB blocks of `s..e` whose pages are all in memory (found
/// between the pages that are not), less what the writer reads (`kept`).
fn in_memory<K: Iterator<Item = (u64, u64)>>(pm: i32, s: u64, e: u64, kept: &impl Fn() -> K, f: &mut impl FnMut(u64, u64)) -> Result<(), rustix::io::Errno> {
    let mut present = |s: u64, e: u64| {
        let mut s = s;
        while s < e {
            let first = kept().filter(|k| k.0 < e && s < k.1).min_by_key(|k| k.0);
            let (from, to) = (s.next_multiple_of(RUN_ALIGN), first.map_or(e, |k| k.0.max(s)) & !(RUN_ALIGN - 1));
            if from < to {
                f(from, to);
            }
            s = first.map_or(e, |k| k.1.max(s));
        }
    };
    let mut from = s;
    ckpt_sigsafe::pagescan::scan(pm, s, e, ckpt_sigsafe::pagescan::NOT_PRESENT, |ns, ne, _| {
        present(from, ns.max(from));
        from = ne.max(from);
    })?;
    present(from, e);
    Ok(())
}

/// For a full image: the memory of the `candidates` that holds only zeros, in whole 2 MiB
/// blocks of pages in memory, less what the writer reads (`kept`). The writer stores it as
/// holes without reading it, and is forked without it.
///
/// The test reads the memory here, where the program's page tables are warm, rather than in the
/// writer, whose first read of each page costs it a page-table walk that marks the page
/// accessed (the fork left its entries old): 2 GiB of written zeros took the writer 110 to 240
/// ms. Here the blocks are shared out between this thread and a helper on the other core
/// (which the stopped program leaves idle), a batch at a time, into `room`'s bits: 2 GiB in
/// 65 to 90 ms, against 95 to 150 on one core (a C program's measure). A region is tested only if one of [`SAMPLED`]
/// blocks spread over it looks zero, and a block is tested whole only if it looks zero (a word
/// on each of a few of its pages is), so that memory of data costs few reads: each read of a
/// page the program has not touched for a while can cost a fault in the host of this virtual
/// machine, 20 µs. Blocks that fail the test after all are read in vain, at most [`WASTE`]
/// bytes of them a checkpoint.
fn zeros<K: Iterator<Item = (u64, u64)>>(pm: i32, candidates: impl Iterator<Item = (u64, u64)>, kept: &impl Fn() -> K, room: ZeroRoom, stack: &mut WriterStack, out: &mut Runs) -> Result<(), rustix::io::Errno> {
    // The runs of blocks to test, each with the index of its first block.
    let (mut nruns, mut nblocks) = (0usize, 0u64);
    let max_blocks = (room.bits.len() * 64) as u64;
    for (s, e) in candidates {
        let (first_run, first_block) = (nruns, nblocks);
        in_memory(pm, s, e, kept, &mut |from, to| {
            let blocks = ((to - from) / RUN_ALIGN).min(max_blocks - nblocks);
            if nruns < room.runs.len() && blocks > 0 {
                room.runs[nruns] = [from, from + blocks * RUN_ALIGN, nblocks];
                nruns += 1;
                nblocks += blocks;
            }
        })?;
        // A region where none of a few blocks spread over it looks zero is left to the writer:
        // its data is not read here, even a word a block (which can cost the host's fault each).
        let runs = &room.runs[first_run..nruns];
        let sampled = (0..SAMPLED).map(|k| first_block + (nblocks - first_block) * k / SAMPLED).filter(|&b| b < nblocks);
        if !sampled.into_iter().any(|b| looks_zero(block_at(runs, b))) {
            (nruns, nblocks) = (first_run, first_block);
        }
        if nruns == room.runs.len() || nblocks == max_blocks {
            break;
        }
    }
    room.bits.fill(0);
    // SAFETY: AtomicU64 has the size and alignment of u64 (x86_64), and `bits` is borrowed
    // mutably here, so nothing else reads or writes it meanwhile but through these atomics.
    let bits = unsafe { &*(room.bits as *mut [u64] as *const [AtomicU64]) };
    let parent = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let test = ZeroTest { runs: &room.runs[..nruns], blocks: nblocks, next: AtomicU64::new(0), wasted: AtomicU64::new(0), bits, parent };
    // The handler may read only memory of protection key 0 (as the kernel starts every
    // handler); the helper takes this thread's rights with it.
    let keys = ckpt_sigsafe::sys::open_all_keys();
    // Not worth starting a helper for a few blocks, nor where the program may use one core.
    let one_core = rustix::thread::sched_getaffinity(None).is_ok_and(|set| set.count() < 2);
    let helper = if nblocks >= 2 * BATCH && !one_core { stack.start_beside(help, &test) } else { None };
    test.run();
    let finished = helper.is_none_or(|h| h.wait());
    ckpt_sigsafe::sys::restore_keys(keys);
    if !finished {
        // It did not finish (it never fails otherwise): what it claimed is untested.
        return Err(rustix::io::Errno::CHILD);
    }
    // The runs of blocks found zero.
    for r in test.runs {
        let mut run = None;
        for b in 0..(r[1] - r[0]) / RUN_ALIGN {
            let at = r[0] + b * RUN_ALIGN;
            match (test.zero(r[2] + b), run) {
                (true, None) => run = Some(at),
                (false, Some(from)) => {
                    out.push(from, at);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(from) = run {
            out.push(from, r[1]);
        }
    }
    Ok(())
}

/// Room in the scratch area for [`zeros`].
pub struct ZeroRoom<'a> {
    pub runs: &'a mut [[u64; 3]],
    pub bits: &'a mut [u64],
}

/// The blocks [`zeros`] tests, shared with its helper: `runs` (start, end, index of the
/// first block) hold `blocks` blocks; each tester claims the next [`BATCH`] of them at a time
/// and sets the bit of each block found zero.
struct ZeroTest<'a> {
    runs: &'a [[u64; 3]],
    blocks: u64,
    next: AtomicU64,
    wasted: AtomicU64,
    bits: &'a [AtomicU64],
    /// The program's PID (the helper's parent).
    parent: u32,
}

/// Blocks a tester claims at a time (16 MiB).
const BATCH: u64 = 8;

impl ZeroTest<'_> {
    fn run(&self) {
        loop {
            let first = self.next.fetch_add(BATCH, Relaxed);
            if first >= self.blocks || self.wasted.load(Relaxed) >= WASTE {
                return;
            }
            for b in first..(first + BATCH).min(self.blocks) {
                match zero_block(block_at(self.runs, b)) {
                    Ok(()) => {
                        self.bits[(b / 64) as usize].fetch_or(1 << (b % 64), Relaxed);
                    }
                    Err(read) => {
                        self.wasted.fetch_add(read, Relaxed);
                    }
                }
            }
        }
    }

    fn zero(&self, b: u64) -> bool {
        self.bits[(b / 64) as usize].load(Relaxed) & (1 << (b % 64)) != 0
    }
}

/// The helper's part of [`zeros`]. It goes by a name of its own (`pgrep` never takes it for the
/// program, nor `ckpt` for a process of the program's tree), and dies with the program (it
/// would keep the program's memory and descriptors meanwhile).
extern "C" fn help(test: &ZeroTest) -> i32 {
    let _ = rustix::thread::set_name(HELPER_NAME);
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32) != test.parent {
        return 1;
    }
    test.run();
    0
}

/// The zero test's helper's name (`comm`).
const HELPER_NAME: &core::ffi::CStr = c"ckpt-zeros";

/// Most bytes of memory [`zeros`] reads in blocks that turn out to hold data, a checkpoint.
const WASTE: u64 = 64 << 20;

/// Blocks of a region [`looks_zero`] looks at before its blocks are tested one by one.
const SAMPLED: u64 = 16;

/// The address of block `b` of `runs` (start, end, index of the first block; in order).
fn block_at(runs: &[[u64; 3]], b: u64) -> u64 {
    let r = &runs[runs.partition_point(|r| r[2] <= b) - 1];
    r[0] + (b - r[2]) * RUN_ALIGN
}

/// The 2 MiB block at `at` (every page in memory, readable).
fn block<'a>(at: u64) -> &'a [u8] {
    // SAFETY: `at..at + RUN_ALIGN` is in a readable private anonymous region, every page of it
    // in memory (see `in_memory`), and every other thread of the process is stopped: reading it
    // cannot fault, and nothing unmaps it while the handler runs, which is as long as `zeros`
    // uses the slice.
    unsafe { core::slice::from_raw_parts(at as *const u8, RUN_ALIGN as usize) }
}

/// Whether a word on each of a few pages of the block at `at` is zero: whether it is worth
/// testing whole.
fn looks_zero(at: u64) -> bool {
    const PAGES: u64 = RUN_ALIGN / PAGE;
    let block = block(at);
    [0, PAGES / 4, PAGES / 2, 3 * PAGES / 4, PAGES - 1].into_iter().all(|page| block[(page * PAGE) as usize..][..8].iter().all(|&b| b == 0))
}

/// Whether the block at `at` holds only zeros; if not, how many of its bytes were read to find
/// out.
fn zero_block(at: u64) -> Result<(), u64> {
    if !looks_zero(at) {
        return Err(5 * 64);
    }
    match block(at).chunks_exact(PAGE as usize).position(|p| !ckpt_image::is_zero_page(p)) {
        None => Ok(()),
        Some(i) => Err((i as u64 + 1) * PAGE),
    }
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
