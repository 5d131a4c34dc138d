//! Writes the image: region data first (page-aligned, zero pages left as holes, hashed as it
//! goes), then the contents of deleted-but-open files, then the headers and notes at the start
//! of the file, then `fsync` and an atomic `rename` over the old image. [`write_image`] is the
//! driver; the steps are named functions below it. Before the writer starts, the handler uses
//! the first part of this file: the regions as the image will have them, and the copies a
//! forked writer needs.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler and the writer: raw system calls, the scratch area and
//! its stack (kept small: buffers of a path or a page at most); no allocation, no locks, no libc.

use super::phases::{mark, Phase};
use super::procfs::monotonic_ns;
use super::auth::authenticate;
use super::imagefile::{Previous, TempImage};
use super::pages::{page_bytes, prefetch_ahead, read_in_memory, read_pagemap, write_all, PageSource, PAGE, PM_PRESENT, PM_SWAPPED};
use super::scratch::{Parts, Shadow};
use super::slots::{RegionSlot, Saved};
use super::failure::Failure;
use ckpt_image::bytes::Writer;
use ckpt_image::elf::{pflags_from_prot, Ehdr, Phdr, EHDR_SIZE, PHDR_SIZE, PT_LOAD, PT_NOTE};
use ckpt_image::fds::{self, FdKind};
use ckpt_image::frame::{write_prpsinfo, write_xstate, SigContext, FXSAVE_SIZE, PRPSINFO_SIZE, PRSTATUS_SIZE, UCONTEXT_SIZE};
use ckpt_image::note::{self, begin_note, note_size, write_note};
use ckpt_image::region::{self, RegionKind, RegionRecord, RF_COMPRESSED, RF_FILE, RF_FROM_FILE, RF_HAS_DATA, RF_MAP_PRIVATE_FILE, RF_SHARED, RF_SHARES_PAGES};
use ckpt_image::{is_zero_page, page_up, seal, Hasher, ProcessState, RegionHasher, ThreadState, CKPT_NOTE_NAME};
use ckpt_image::{NT_CKPT_IGNORABLE, NT_CKPT_PTYS, NT_CKPT_CHAIN, NT_CKPT_ORIGIN, NT_CKPT_EPOLL, NT_CKPT_FDS, NT_CKPT_FILEMAPS, NT_CKPT_INOTIFY, NT_CKPT_IPC, NT_CKPT_LOCKS, NT_CKPT_MAC, NT_CKPT_REGIONS, NT_CKPT_SHARED, NT_CKPT_SOCKETS, NT_CKPT_STATE, NT_CKPT_THREAD, NT_CKPT_TIMERFDS, NT_CKPT_TIMERS, NT_CKPT_TREE, PAGE_SIZE};
use ckpt_sigsafe::maps::{self, MapsEntry};
use ckpt_sigsafe::sys;
use core::ffi::CStr;
use core::ops::Range;
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};

const CORE: &[u8] = b"CORE";
const LINUX: &[u8] = b"LINUX";

/// The regions of `/proc/self/maps`, with the scratch range, a tree checkpoint's control
/// block and the cache of file hashes (`filecache`) cut out, and myrestart's resume page: a process restarted from an image of a process
/// that had no libckpt keeps the pages myrestart resumed it through (named `ckpt-resume`:
/// [`region::is_resume_page`]). They are the restarter's, not the program's: the next restart
/// makes its own, somewhere the image leaves free, so an image that held them would only hold a
/// stale copy, which would come back as memory the program never had.
fn regions<'a>(maps: &'a [u8], exclude: &'a Range<usize>) -> impl Iterator<Item = MapsEntry<'a>> + 'a {
    maps::entries(maps).filter(|e| e.name != super::tree::CONTROL_NAME && e.name != super::filecache::MAP_NAME && !region::is_resume_page(e.name)).flat_map(move |e| {
        let before = (e.start < exclude.start).then(|| MapsEntry { end: e.end.min(exclude.start), ..e });
        let after = (e.end > exclude.end).then(|| {
            let start = e.start.max(exclude.end);
            MapsEntry { start, offset: e.offset + (start - e.start) as u64, ..e }
        });
        before.into_iter().chain(after).filter(|r| r.start < r.end)
    })
}

fn kind_of(e: &MapsEntry) -> RegionKind {
    RegionKind::from_maps_name(e.name)
}

fn saved(e: &MapsEntry, pathbuf: &mut [u8]) -> Saved {
    // A POSIX shared memory object is memory, stored like any other shared memory (one object
    // for all its mappings, see `ckpt_image::region::stores_shared_file`).
    if e.shared && e.inode != 0 && is_same_regular_file(e, pathbuf) && !shm_object(e, pathbuf) {
        return Saved::FromFile;
    }
    if e.prot & 1 != 0 && !matches!(kind_of(e), RegionKind::Vvar | RegionKind::VvarVclock | RegionKind::Vsyscall) {
        Saved::Data
    } else {
        Saved::Nothing
    }
}

/// Shared memory whose bytes go into the image: the forked writer would see the program's
/// later writes to it, not the memory as it was, so it is copied while the program is stopped.
fn needs_copy(e: &MapsEntry, pathbuf: &mut [u8]) -> bool {
    e.shared && saved(e, pathbuf) == Saved::Data
}

/// Flags of `/proc/self/smaps` for memory a forked writer would not see as it is: `dc`
/// (`MADV_DONTFORK`: absent in the child) and `wf` (`MADV_WIPEONFORK`: zeros in the child).
const NOT_INHERITED: &[&[u8]] = &[b"dc", b"wf"];

/// Bytes that [`copy_for_writer`] will copy: shared memory, and memory a child process does not
/// inherit as it is. The ranges of the latter go into `ranges` (a count, then start and end of
/// each, u64s; a count of u64::MAX if they do not fit), so that smaps, which costs the kernel a
/// walk of all memory, is read once.
pub fn copy_len(maps: &[u8], exclude: &Range<usize>, pathbuf: &mut [u8], smaps_buf: &mut [u8], ranges: &mut [u8]) -> Result<usize, Failure> {
    let shared: usize = regions(maps, exclude).filter(|r| needs_copy(r, pathbuf)).map(|r| r.end - r.start).sum();
    let mut private = 0;
    let room = ranges.len() / 16 - 1;
    let mut n = 0usize;
    // smaps costs the kernel a walk of all memory: read only when the program marked memory so
    // (libc's madvise is interposed), or a writer found some marked without libc.
    // (An attached process's `madvise` calls were never seen: smaps is read.)
    if !crate::config::get().attached && !crate::dropped::not_inherited_seen() && !super::report::smaps_needed() {
        ranges[..8].copy_from_slice(&0u64.to_le_bytes());
        return Ok(shared);
    }
    maps::smaps_with_flags(c"/proc/self/smaps", smaps_buf, NOT_INHERITED, |s, e| {
        if e <= exclude.start || s >= exclude.end {
            private += e - s;
            if n < room {
                ranges[16 + 16 * n..24 + 16 * n].copy_from_slice(&(s as u64).to_le_bytes());
                ranges[24 + 16 * n..32 + 16 * n].copy_from_slice(&(e as u64).to_le_bytes());
            }
            n += 1;
        }
    })
    .map_err(|e| Failure::new("reading /proc/self/smaps", e))?;
    let count = if n <= room { n as u64 } else { u64::MAX };
    ranges[..8].copy_from_slice(&count.to_le_bytes());
    Ok(shared + private)
}

/// In a forked writer: checks that every region of the image's layout is in its own memory
/// (memory marked `MADV_DONTFORK` without libc's `madvise` is not, and was not copied for it),
/// but for the memory it was forked without on purpose (see `unforked`). If one is
/// missing, the checkpoint fails and every later one reads smaps.
pub fn check_inherited(parts: &mut Parts, exclude: &Range<usize>) -> Result<(), Failure> {
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", &mut parts.meta[..MAPS_CHECK_ROOM]).map_err(|e| Failure::new("reading /proc/self/maps", e))?;
    let mine = &parts.meta[..n];
    let unforked = &parts.unforked[..parts.nunforked];
    let mut have = maps::entries(mine).peekable();
    for r in regions(&parts.maps[..parts.maps_len], exclude) {
        if parts.shadows[..parts.nshadows].iter().any(|s| s.start == r.start) {
            continue;
        }
        // The region is covered by the writer's own regions and the memory left out of it.
        let mut at = r.start;
        while at < r.end {
            while have.next_if(|e| e.end <= at).is_some() {}
            if let Some(e) = have.peek().filter(|e| e.start <= at) {
                at = e.end;
            } else if let Some(u) = unforked.iter().find(|u| u[0] as usize <= at && at < u[1] as usize) {
                at = u[1] as usize;
            } else {
                super::report::need_smaps();
                return Err(Failure::plain("the program keeps memory from child processes (MADV_DONTFORK, set without libc); checkpoints look for such memory from now on"));
            }
        }
    }
    Ok(())
}

/// Room for the writer's own maps in the headers' buffer (unused until they are encoded).
const MAPS_CHECK_ROOM: usize = 32 << 20;

/// Reads the memory layout the image will have into `parts.maps`: the writer uses this text,
/// not its own (a forked writer lacks `MADV_DONTFORK` memory). An attached checkpoint's
/// layout leaves out what `leave_out` says.
pub fn read_layout(parts: &mut Parts, leave_out: Option<&LeaveOut>) -> Result<(), Failure> {
    let Some(leave_out) = leave_out else {
        parts.maps_len = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", parts.maps).map_err(|e| Failure::new("reading /proc/self/maps", e))?;
        return Ok(());
    };
    // The headers' room is free until the writer encodes them.
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", parts.meta).map_err(|e| Failure::new("reading /proc/self/maps", e))?;
    parts.maps_len = leave_out.apply(&parts.meta[..n], parts.maps).ok_or(Failure::plain("the program has too many memory regions for one image"))?;
    Ok(())
}

/// Most ranges a [`LeaveOut`] has.
pub const MAX_LEFT_OUT: usize = 16;

/// What the layout of an attached checkpoint (a process without libckpt, `crate::attached`)
/// leaves out: the ranges `ckpt` mapped into the process for the checkpoint (libckpt's code,
/// its stack, the arguments) and libckpt's report page, which are gone once it is over, and
/// the frames region of an earlier restart, whose threads have long left it (as
/// `earlier_frames` tells); not the frames region of this checkpoint (at `frames`), which the
/// restored threads resume through.
pub struct LeaveOut<'a> {
    pub ranges: &'a [Range<usize>],
    pub frames: usize,
    pub earlier_frames: fn(&MapsEntry, usize) -> bool,
}

impl LeaveOut<'_> {
    /// Writes `maps` without what is left out into `out`; returns its length, or `None` if it
    /// does not fit. A range may be a part of a region (the kernel merges an anonymous mapping
    /// with its neighbours): the rest of the region stays, as one or two entries.
    fn apply(&self, maps: &[u8], out: &mut [u8]) -> Option<usize> {
        // The ranges in address order, so that each region is cut from its start up.
        let mut sorted: [Range<usize>; MAX_LEFT_OUT] = core::array::from_fn(|_| 0..0);
        let sorted = sorted.get_mut(..self.ranges.len())?;
        sorted.clone_from_slice(self.ranges);
        sorted.sort_unstable_by_key(|r| r.start);
        let mut len = 0;
        for e in maps::entries(maps) {
            if (self.earlier_frames)(&e, self.frames) {
                continue;
            }
            let mut rest = Some(e);
            for r in sorted.iter().filter(|r| r.start < r.end) {
                let Some(e) = rest else { break };
                if r.end <= e.start || r.start >= e.end {
                    continue;
                }
                if e.start < r.start {
                    len += maps::write_line(&MapsEntry { end: r.start, ..e }, out.get_mut(len..)?)?;
                }
                rest = (r.end < e.end).then(|| MapsEntry { start: r.end, offset: e.offset + (r.end - e.start) as u64, ..e });
            }
            if let Some(e) = rest {
                len += maps::write_line(&e, out.get_mut(len..)?)?;
            }
        }
        Some(len)
    }
}

/// Refused past [`super::scratch::MAX_SHADOWS`].
const TOO_MANY_SHADOWS: &str = "the program has more than 4096 regions of shared memory (or memory a child does not inherit), more than one checkpoint copies";
const _: () = assert!(super::scratch::MAX_SHADOWS == 4096, "TOO_MANY_SHADOWS names the limit");

/// Copies into the scratch area (`parts.shadow_room`) the memory the forked writer would not
/// see as it is now: shared memory (the program goes on writing it) and memory a child does not
/// inherit (`MADV_DONTFORK`, `MADV_WIPEONFORK`). The writer reads these copies instead.
pub fn copy_for_writer(parts: &mut Parts, exclude: &Range<usize>) -> Result<(), Failure> {
    let Parts { maps, maps_len, pathbuf, shadows, nshadows, shadow_room, meta, not_inherited, .. } = parts;
    let mut at = 0usize;
    *nshadows = 0;
    let mut copy = |start: usize, end: usize| -> Result<(), Failure> {
        let len = end - start;
        if shadows[..*nshadows].iter().any(|s| s.start == start) {
            return Ok(());
        }
        if *nshadows == shadows.len() {
            return Err(Failure::plain(TOO_MANY_SHADOWS));
        }
        if at + len > shadow_room.len() {
            return Err(Failure::plain("the program's memory changed while it was copied"));
        }
        let room = &mut shadow_room[at..at + len];
        let copied = sys::copy_own_memory(start, len, room);
        room[copied..].fill(0);
        shadows[*nshadows] = Shadow { start, copy: room.as_ptr() as usize, len };
        *nshadows += 1;
        at += len;
        Ok(())
    };
    for r in regions(&maps[..*maps_len], exclude) {
        if needs_copy(&r, pathbuf) {
            copy(r.start, r.end)?;
        }
    }
    // Regions a child does not inherit, as `copy_len` found them in smaps, or read again if
    // they did not fit.
    let ranges = &not_inherited[..];
    let word = |i: usize| ckpt_image::bytes::le_u64_at(ranges, i).unwrap_or(0);
    let count = word(0);
    if count != u64::MAX {
        for k in 0..count as usize {
            copy(word(16 + 16 * k) as usize, word(24 + 16 * k) as usize)?;
        }
        return Ok(());
    }
    let mut result = Ok(());
    maps::smaps_with_flags(c"/proc/self/smaps", &mut meta[..1 << 20], NOT_INHERITED, |s, e| {
        if (e <= exclude.start || s >= exclude.end) && result.is_ok() {
            result = copy(s, e);
        }
    })
    .map_err(|e| Failure::new("reading /proc/self/smaps", e))?;
    result
}

/// In the handler: which private anonymous memory the program wrote since its previous
/// checkpoint (see `track`), into `parts.dirty` and `parts.tracked`.
pub fn track_changes(parts: &mut Parts, exclude: &Range<usize>) {
    parts.tracked = super::track::snapshot(tracked_regions(&parts.maps[..parts.maps_len], exclude), parts.dirty);
}

/// Once the writer has its copy of memory (or the handler has written the image), before the
/// program runs again: protects again what [`track_changes`] found.
pub fn protect_tracked(parts: &Parts, exclude: &Range<usize>) {
    super::track::protect(&parts.tracked, parts.dirty, tracked_regions(&parts.maps[..parts.maps_len], exclude));
}

/// The memory whose writes are tracked: private anonymous memory, and memory a restart mapped
/// from an image.
fn tracked_regions<'a>(maps: &'a [u8], exclude: &'a Range<usize>) -> impl Iterator<Item = (u64, u64)> + 'a {
    regions(maps, exclude).filter(|r| anonymous_private(r) || super::track::is_restored_memory(r)).map(|r| (r.start as u64, r.end as u64))
}

/// The regions a writer may be forked without the unwritten part, or the zeros, of (see
/// `unforked`): private anonymous ones of 32 MiB or more that the image stores (readable), but
/// not the main thread's `[stack]` nor the anonymous part of a loaded file (its `.bss`, right
/// after its mapping).
pub fn unforked_candidates<'a>(maps: &'a [u8], exclude: &'a Range<usize>) -> impl Iterator<Item = (u64, u64)> + 'a {
    const MIN_REGION: usize = 32 << 20;
    let mut file_end = 0usize;
    regions(maps, exclude).filter_map(move |r| {
        let after_file = file_end == r.start;
        file_end = if r.inode != 0 { r.end } else { 0 };
        let large = r.end - r.start >= MIN_REGION;
        (anonymous_private(&r) && r.prot & 1 != 0 && large && !after_file && r.name != b"[stack]").then_some((r.start as u64, r.end as u64))
    })
}

/// Where the writer reads region `r` from: its copy, if it is shared memory, else the region.
fn read_address(shadows: &[Shadow], r: &MapsEntry) -> usize {
    shadows.iter().find(|s| s.start == r.start && s.len == r.end - r.start).map_or(r.start, |s| s.copy)
}

/// Private anonymous memory (heap, stacks, `malloc`'s mappings): the memory a child shares
/// with its parent after `fork` until either writes it, read straight from memory.
fn anonymous_private(r: &MapsEntry) -> bool {
    r.inode == 0 && !r.shared && !kind_of(r).is_kernel_special()
}

/// Calls `f` with each page of a region read straight from memory (`src.bounce` unset): its
/// index from `start` and its bytes, or `None` for a page known to be zero without reading it.
fn visit_pages(start: usize, len: usize, src: &PageSource, pm_buf: &mut [u64], mut f: impl FnMut(usize, Option<&[u8]>)) {
    let pages = len / PAGE;
    let mut p = 0;
    while p < pages {
        let n = (pages - p).min(pm_buf.len());
        let chunk_start = start + p * PAGE;
        let present = &mut pm_buf[..n];
        read_in_memory(src, chunk_start, present);
        for (i, &entry) in present.iter().enumerate() {
            prefetch_ahead(chunk_start + i * PAGE, start + len);
            f(p + i, page_bytes(chunk_start + i * PAGE, entry, src));
        }
        p += n;
    }
}

/// The regions this process stores, as both ends of page sharing walk them (see `share`).
struct Stored<'a> {
    maps: &'a [u8],
    exclude: &'a Range<usize>,
    slots: &'a [RegionSlot],
    shadows: &'a [Shadow],
    source: &'a dyn Fn(&MapsEntry) -> PageSource<'a>,
}

impl<'a> Stored<'a> {
    /// Each region whose bytes are stored: its index among the image's regions, its entry, and
    /// whether it is private anonymous memory (the only kind whose pages are shared).
    fn regions(&self) -> impl Iterator<Item = (usize, MapsEntry<'a>, bool)> + 'a {
        regions(self.maps, self.exclude).zip(self.slots).enumerate().filter(|(_, (_, s))| s.saved == Saved::Data).map(|(i, (r, _))| {
            let anonymous = anonymous_private(&r);
            (i, r, anonymous)
        })
    }

    /// [`visit_pages`] over the private anonymous region `r`, read where the writer reads it.
    fn pages(&self, r: &MapsEntry, pm_buf: &mut [u64], f: impl FnMut(usize, Option<&[u8]>)) {
        visit_pages(read_address(self.shadows, r), r.end - r.start, &(self.source)(r), pm_buf, f);
    }
}

/// In the root's writer: fills and publishes the table of its pages for the members (see
/// `share`): every private anonymous region it stores, where it will be, and the digest of
/// each page stored.
fn publish_pages(table: &mut super::share::Table, stored: &Stored, pm_buf: &mut [u64], data_start: u64) {
    let (mut nregions, mut npages) = (0, 0);
    for (_, r, _) in stored.regions().filter(|&(_, _, anonymous)| anonymous) {
        nregions += 1;
        npages += (r.end - r.start) / PAGE;
    }
    table.allocate(nregions, npages);
    // Where each region's bytes will be: as the writing loop places them, one after another.
    let mut off = data_start;
    for (_, r, anonymous) in stored.regions() {
        if anonymous {
            let Some(digests) = table.region(r.start, r.end, off) else { return };
            stored.pages(&r, pm_buf, |i, page| {
                if let Some(page) = page.filter(|p| !is_zero_page(p)) {
                    digests[i] = super::share::digest(page);
                }
            });
        }
        off += (r.end - r.start) as u64;
    }
    table.publish();
}

/// In a member's writer: waits for the root's table of pages and records, in `buf`, the pages
/// of its own private anonymous memory that the root stores alike at the same address. Returns
/// the length of the `NT_CKPT_SHARED` descriptor built there (0: nothing shared).
fn plan_sharing(joined: &super::tree::Joined, stored: &Stored, pm_buf: &mut [u64], buf: &mut [u8]) -> usize {
    let Some(mut root) = super::share::RootPages::open(joined) else { return 0 };
    let mut runs = super::runs::Runs::new(buf);
    for (i, r, _) in stored.regions().filter(|&(_, _, anonymous)| anonymous) {
        stored.pages(&r, pm_buf, |p, page| {
            let Some(page) = page.filter(|p| !is_zero_page(p)) else { return };
            if let Some((d, offset)) = root.lookup(r.start + p * PAGE) {
                if super::share::digest(page) == d {
                    runs.add(i as u32, p as u64, offset);
                }
            }
        });
    }
    runs.finish()
}

/// Whether no page of a private file mapping was written: each is either not in memory or
/// still the file's own page (pagemap: present pages are file pages, none is swapped out,
/// which only written copies can be).
fn unwritten(r: &MapsEntry, pagemap: Option<&OwnedFd>, pm_buf: &mut [u64]) -> bool {
    const PM_FILE: u64 = 1 << 61;
    let Some(pm) = pagemap else { return false };
    let src = PageSource { pagemap: Some(pm.as_raw_fd()), zeros: 0..0, bounce: false, absent: &[] };
    let pages = (r.end - r.start) / PAGE;
    let mut p = 0;
    while p < pages {
        let n = (pages - p).min(pm_buf.len());
        let entries = &mut pm_buf[..n];
        entries.fill(0);
        read_pagemap(&src, r.start + p * PAGE, entries);
        if entries.iter().any(|&e| e & PM_SWAPPED != 0 || (e & PM_PRESENT != 0 && e & PM_FILE == 0)) {
            return false;
        }
        p += n;
    }
    true
}

/// What the file behind region `r` (index `region`) is now, if it is a program or library:
/// size, time and a hash of the bytes the region maps, read from the file through `buf`;
/// `None` if it is something else or cannot be read.
fn file_identity(r: &MapsEntry, region: u32, pathbuf: &mut [u8], buf: &mut [u8], cache: usize) -> Option<ckpt_image::filemaps::FileMap> {
    if !is_same_regular_file(r, pathbuf) {
        return None;
    }
    let path = CStr::from_bytes_until_nul(pathbuf).ok()?;
    let file = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&file).ok()?;
    if st.st_ino != r.inode {
        return None;
    }
    // A file another user (root aside) owns, or others may write, could hold other bytes by
    // the restart, with the same hash (xxh3 is no defence against someone choosing bytes): its
    // pages go into the image instead.
    if ckpt_sigsafe::trust::doubt(st.st_uid, st.st_mode, rustix::process::geteuid().as_raw(), true).is_some() {
        return None;
    }
    // Programs and libraries only (ELF executables and shared objects): a data file, or a ckpt
    // image (an ELF core file) that a restored process maps, may well be gone or rewritten by
    // the time of a restart.
    let mut head = [0u8; 18];
    // SAFETY: `head` is 18 writable bytes.
    if unsafe { sys::pread_into(file.as_raw_fd(), head.as_mut_ptr() as usize, head.len(), 0) } != Ok(head.len())
        || head[..4] != *b"\x7fELF"
        || !matches!(u16::from_le_bytes([head[16], head[17]]), 2 | 3)
    {
        return None;
    }
    let mut m = ckpt_image::filemaps::FileMap {
        region,
        size: st.st_size as u64,
        mtime_sec: st.st_mtime as u64,
        mtime_nsec: st.st_mtime_nsec as u64,
        content_hash: 0,
        owner: ckpt_sigsafe::fileid::owner(file.as_fd()),
    };
    // The same file, unchanged, was hashed for an earlier image (see `filecache`).
    let key = super::filecache::Key {
        dev: st.st_dev,
        ino: st.st_ino,
        size: m.size,
        mtime: (m.mtime_sec, m.mtime_nsec),
        ctime: (st.st_ctime as u64, st.st_ctime_nsec as u64),
        offset: r.offset,
        len: (r.end - r.start) as u64,
    };
    if let Some(h) = super::filecache::get(cache, &key) {
        m.content_hash = h;
        return Some(m);
    }
    let read = |at: u64, into: &mut [u8]| rustix::io::retry_on_intr(|| rustix::io::pread(&file, &mut *into, at));
    m.content_hash = ckpt_image::filemaps::content_hash(m.size, r.offset, (r.end - r.start) as u64, buf, read).ok()??;
    // Kept for the next images only if no write could have been under way while it was hashed:
    // a write sets the file's times as it begins, then copies, so a hash taken meanwhile would
    // be kept under the file's final identity. The times still as they were and a change time
    // more than a second old rule that out.
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let settled = rustix::fs::fstat(&file).is_ok_and(|after| {
        (after.st_size, after.st_mtime, after.st_mtime_nsec, after.st_ctime, after.st_ctime_nsec) == (st.st_size, st.st_mtime, st.st_mtime_nsec, st.st_ctime, st.st_ctime_nsec)
            && after.st_ctime < now.tv_sec - 1
    });
    if settled {
        super::filecache::put(cache, &key, m.content_hash);
    }
    Some(m)
}

/// The record of `MAP_SHARED` file region `r` (index `region`): whose the file is and when it
/// was made, so that a restart knows it from a file put at its path since (what it holds is
/// the program's business: no hash). Owner unknown if it cannot be looked at now.
fn shared_file_identity(r: &MapsEntry, region: u32, pathbuf: &mut [u8]) -> ckpt_image::filemaps::FileMap {
    let mut m = ckpt_image::filemaps::FileMap { region, ..Default::default() };
    let path = CStr::from_bytes_until_nul(pathbuf).ok();
    let file = path.and_then(|p| rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok());
    if let Some(st) = file.as_ref().and_then(|f| rustix::fs::fstat(f).ok().filter(|st| st.st_ino == r.inode).map(|st| (f, st))) {
        let (f, st) = st;
        (m.size, m.mtime_sec, m.mtime_nsec) = (st.st_size as u64, st.st_mtime as u64, st.st_mtime_nsec);
        m.owner = ckpt_sigsafe::fileid::owner(f.as_fd());
    }
    m
}

/// Whether the mapping, whose path [`is_same_regular_file`] left in `pathbuf`, is of a POSIX
/// shared memory object.
fn shm_object(e: &MapsEntry, pathbuf: &[u8]) -> bool {
    CStr::from_bytes_with_nul(&pathbuf[..e.name.len() + 1]).is_ok_and(ckpt_sigsafe::file::is_shm_object)
}

/// The record of region `r` (index `region`) if it maps a POSIX shared memory object, whose
/// bytes the image stores: its mode, owner and size, so that a restart can make it again.
fn shm_file_record(r: &MapsEntry, region: u32, pathbuf: &mut [u8]) -> Option<ckpt_image::shmfiles::ShmFile> {
    if !r.shared || r.inode == 0 || !is_same_regular_file(r, pathbuf) || !shm_object(r, pathbuf) {
        return None;
    }
    let path = CStr::from_bytes_until_nul(pathbuf).ok()?;
    let file = rustix::fs::open(path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&file).ok().filter(|st| st.st_ino == r.inode)?;
    Some(ckpt_image::shmfiles::ShmFile { region, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, size: st.st_size as u64 })
}

/// Whether the mapping's path still names the regular file that is mapped.
fn is_same_regular_file(e: &MapsEntry, pathbuf: &mut [u8]) -> bool {
    if !e.name.starts_with(b"/") || e.name.ends_with(ckpt_sigsafe::proctext::DELETED_SUFFIX) || e.name.len() >= pathbuf.len() {
        return false;
    }
    pathbuf[..e.name.len()].copy_from_slice(e.name);
    pathbuf[e.name.len()] = 0;
    let Ok(path) = CStr::from_bytes_with_nul(&pathbuf[..e.name.len() + 1]) else { return false };
    match rustix::fs::stat(path) {
        Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_ino == e.inode,
        Err(_) => false,
    }
}

/// The signal context of a stopped thread (its frame is live memory: the thread waits in its
/// handler, or this is the writer's snapshot of it).
fn context_of(t: &ThreadState) -> Result<SigContext, Failure> {
    // SAFETY: the kernel built a whole `ucontext` at `sigframe` for the handler the thread is in.
    let uc_bytes = unsafe { core::slice::from_raw_parts(t.sigframe as usize as *const u8, UCONTEXT_SIZE) };
    SigContext::parse(uc_bytes).map_err(|_| Failure::plain("reading a signal frame"))
}

/// Which image a writer writes.
pub enum Role<'t> {
    /// A process's own image.
    Single,
    /// The root of a tree checkpoint: its own image, then the other processes' parts.
    Root(&'t super::tree::Tree),
    /// A member of a tree checkpoint: its part, which the root's writer takes in.
    Member(&'t super::tree::Joined),
}

/// What the writer settles before it writes anything, so that the data and the headers agree.
struct Plan {
    /// How many regions the image has, and the length of all their names.
    count: usize,
    names_len: usize,
    /// Whether region data is compressed (`CKPT_COMPRESS`).
    compress: bool,
    /// The lengths of the notes made while planning (0: the note is left out).
    filemaps_len: usize,
    shmfiles_len: usize,
    shared_len: usize,
    chain_len: usize,
}

/// Where the headers end and the data begins, and the sizes the headers are made of.
struct Layout {
    /// Program headers: one `PT_NOTE`, then one `PT_LOAD` per region.
    phnum: usize,
    phdrs_end: usize,
    regions_desc_len: usize,
    notes_len: usize,
    /// The headers' length (program headers and notes), and the data's start after them.
    meta_len: usize,
    data_start: u64,
    /// Each frame's XSAVE area (0: none), and the length of the note made from it.
    xstate_len: usize,
    xstate_note_len: usize,
}

/// Writes the image of the process whose threads are `threads` (the one that took the
/// checkpoint signal first, running this code): the plan (what each region keeps, which pages
/// are stored elsewhere), the region data, the contents of deleted files (and, in a tree's
/// root, the members' parts), then the headers, and the commit. `cache` is the cache of file
/// hashes (see `filecache`; 0: none). Returns the image this one replaced, held until the
/// caller lets it go (see [`Previous`]).
#[allow(clippy::too_many_arguments)]
pub fn write_image(parts: &mut Parts, threads: &[ThreadState], started: u64, exclude: Range<usize>, file: TempImage, role: Role, cache: usize) -> Result<Previous, Failure> {
    let pagemap_file = rustix::fs::open(c"/proc/self/pagemap", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok();
    let (count, names_len, filemaps_len, shmfiles_len) = decide_regions(parts, &exclude, pagemap_file.as_ref(), cache)?;
    mark(Phase::Decided);
    let pagemap = pagemap_file.as_ref().map(|f| f.as_raw_fd());
    let compress = crate::config::get().compress;
    // The root's table of pages for its members: made below, or (dropped unpublished, on any
    // way out) the members are told there is none.
    let mut table = match role {
        Role::Root(t) => Some(super::share::Table::new(t)),
        _ => None,
    };
    let (to_base, absent) = super::scratch::unforked_by_kind(&parts.unforked[..parts.nunforked], parts.unforked_zeros);
    let source = |r: &MapsEntry| page_source(r, pagemap, absent);
    let mut image_buf = [0u8; ckpt_image::state::PATH_MAX + 32];
    let image_path: &[u8] = match role {
        Role::Member(_) => &[],
        _ => crate::config::this_process_image(&mut image_buf).ok_or(Failure::plain("image path is too long"))?,
    };
    let maps = &parts.maps[..parts.maps_len];
    let stored = Stored { maps, exclude: &exclude, slots: &parts.slots[..count], shadows: &parts.shadows[..parts.nshadows], source: &source };
    let bufs = super::chain::Bufs {
        tracked: parts.tracked,
        dirty: &parts.dirty[..],
        unforked: to_base,
        shared: &mut parts.shared[..],
        chain: &mut parts.chain[..],
        base_meta: &mut parts.base_meta[..],
        base_state: &mut *parts.base_state,
        pm_buf: &mut parts.pm_buf[..],
    };
    let (shared_len, chain_len, base_link) = plan_stored_elsewhere(&role, compress, &stored, image_path, pagemap, bufs)?;
    mark(Phase::Planned);
    let plan = Plan { count, names_len, compress, filemaps_len, shmfiles_len, shared_len, chain_len };
    let layout = lay_out(parts, threads, &role, &plan)?;
    let fd = file.fd.as_raw_fd();
    // The root's members learn, before it writes anything, which of its pages they may leave
    // to it (plain data only: where each region's bytes will be is known now).
    if let Some(t) = table.as_mut().filter(|_| !compress) {
        publish_pages(t, &stored, parts.pm_buf, layout.data_start);
    }
    let data_end = write_region_data(parts, fd, &exclude, pagemap, &plan, layout.data_start)?;
    mark(Phase::Data);
    let mut file_len = write_deleted_files(fd, &mut parts.fds[..parts.fds_len], data_end, parts.copybuf, parts.pipe_data)?;
    // The key, read once (a member's part is authenticated by the root's writer, after it
    // takes the part in).
    let key = match crate::config::get().key_file() {
        Some(path) if !matches!(role, Role::Member(_)) => {
            Some(ckpt_sigsafe::read_key(path, parts.copybuf).map_err(|_| Failure::plain("the key file (CKPT_KEY) cannot be read, or is no longer private"))?)
        }
        _ => None,
    };
    let mut tree_note: &[u8] = &[];
    if let Role::Root(tree) = role {
        (file_len, tree_note) = append_members(parts, tree, file.fd.as_fd(), &exclude, &plan, file_len.max(layout.data_start), key.as_ref())?;
    }
    // The headers last, when every offset and hash is known, sealed with their checksum.
    parts.state.meta_len = layout.meta_len as u64;
    parts.state.meta_hash = 0;
    parts.state.write_ns = monotonic_ns().saturating_sub(started);
    let meta = core::mem::take(&mut parts.meta);
    let meta = &mut meta[..layout.meta_len];
    write_headers(meta, parts, threads, &exclude, &plan, &layout, optional_notes(parts, &role, tree_note, &plan))?;
    seal(meta).map_err(|_| Failure::plain("sealing the image headers"))?;
    let total = file_len.max(layout.data_start);
    rustix::fs::ftruncate(&file.fd, total).map_err(|e| Failure::on_file("sizing", e))?;
    if let Some(key) = key {
        authenticate(file.fd.as_fd(), meta, total, &key, parts.state)?;
    }
    write_all(fd, meta.as_ptr() as usize, layout.meta_len, 0)?;
    mark(Phase::Headers);
    if let Some(b) = &base_link {
        super::chain::link(b, image_path)?;
    }
    let previous = file.commit()?;
    mark(Phase::Done);
    super::phases::say();
    Ok(previous)
}

/// After a checkpoint is written and its outcome reported: lets go of the image it replaced
/// and removes the base files no image kept needs any more. Both free files, which the
/// kernel takes milliseconds per 100 MB for: done once the checkpoint is over for the program
/// and for `ckpt checkpoint --wait`.
/// `member`: a tree member's writer, which wrote only its part (nothing to tidy).
pub fn tidy_up(parts: &mut Parts, previous: Previous, member: bool) {
    previous.release();
    if member {
        return;
    }
    let mut image_buf = [0u8; ckpt_image::state::PATH_MAX + 32];
    if let Some(image_path) = crate::config::this_process_image(&mut image_buf) {
        super::chain::remove_unneeded(image_path, crate::config::images_kept(), parts.base_meta, parts.base_state);
    }
}

/// Decides what each region keeps (its slot's [`Saved`]), once, so that the data and the
/// headers agree, and makes the `NT_CKPT_FILEMAPS` note of the file mappings named rather than
/// copied. Returns the number of regions, the length of their names and that note's length.
fn decide_regions(parts: &mut Parts, exclude: &Range<usize>, pagemap: Option<&OwnedFd>, cache: usize) -> Result<(usize, usize, usize, usize), Failure> {
    let maps = &parts.maps[..parts.maps_len];
    let by_file = !crate::config::get().self_contained;
    let mut filemaps = ckpt_image::bytes::Writer::new(&mut parts.filemaps[..]);
    let mut nfilemaps = 0usize;
    let mut shmfiles = ckpt_image::bytes::Writer::new(&mut parts.shmfiles[..]);
    let mut nshmfiles = 0usize;
    let mut count = 0usize;
    let mut names_len = 0usize;
    for r in regions(maps, exclude) {
        let Some(slot) = parts.slots.get_mut(count) else {
            return Err(Failure::plain("the program has too many memory regions for one image"));
        };
        let mut how = saved(&r, parts.pathbuf);
        // Code, libraries and read-only data the program never wrote: named, not copied. A
        // mapping of a file's start is still copied: it holds the ELF and program headers,
        // through which debuggers find the libraries in the image (as the kernel's core dumps
        // keep them).
        if how == Saved::Data && by_file && r.inode != 0 && !r.shared && r.offset != 0 && unwritten(&r, pagemap, parts.pm_buf) {
            if let Some(m) = file_identity(&r, count as u32, parts.pathbuf, parts.copybuf, cache) {
                if nfilemaps == 0 {
                    filemaps.zeros(ckpt_image::filemaps::FILEMAP_HEADER_SIZE);
                }
                m.write(&mut filemaps);
                nfilemaps += 1;
                how = Saved::PrivateFile;
            }
        }
        if how == Saved::FromFile {
            // `saved` left the region's path in `pathbuf`.
            if nfilemaps == 0 {
                filemaps.zeros(ckpt_image::filemaps::FILEMAP_HEADER_SIZE);
            }
            shared_file_identity(&r, count as u32, parts.pathbuf).write(&mut filemaps);
            nfilemaps += 1;
        }
        if how == Saved::Data {
            if let Some(m) = shm_file_record(&r, count as u32, parts.pathbuf) {
                if nshmfiles == 0 {
                    shmfiles.zeros(ckpt_image::bytes::TABLE_HEADER_SIZE);
                }
                m.write(&mut shmfiles);
                nshmfiles += 1;
            }
        }
        *slot = RegionSlot { saved: how, ..RegionSlot::EMPTY };
        count += 1;
        names_len += r.name.len();
    }
    let filemaps_len = if nfilemaps > 0 {
        ckpt_image::filemaps::write_header(&mut ckpt_image::bytes::Writer::new(&mut parts.filemaps[..]), nfilemaps);
        ckpt_image::filemaps::note_len(nfilemaps)
    } else {
        0
    };
    let shmfiles_len = if nshmfiles > 0 {
        ckpt_image::shmfiles::write_header(&mut ckpt_image::bytes::Writer::new(&mut parts.shmfiles[..]), nshmfiles);
        ckpt_image::shmfiles::note_len(nshmfiles)
    } else {
        0
    };
    Ok((count, names_len, filemaps_len, shmfiles_len))
}

/// How region `r`'s pages are read: through the pagemap if it is private anonymous memory
/// (else copied through a buffer), with libckpt's own stack as zeros (see `ownstack`), and the
/// memory of zeros the writer was forked without, `absent` (see `unforked`). Every
/// other stack, the frame's included, is stored as it is: the image is written on a stack of its
/// own (`ownstack::on_stack`), so below the frame only what the handler's first calls left there
/// lies (the checkpoint runs on libckpt's stack), unchanged meanwhile, and under it the
/// program's memory (a coroutine's stack in the heap).
fn page_source<'a>(r: &MapsEntry, pagemap: Option<i32>, absent: &'a [[u64; 2]]) -> PageSource<'a> {
    // Only the pages of libckpt's stack: the kernel shows it as one region with the program's
    // memory beside it when their flags agree, as they do in a restored process (its memory
    // mapped anew, all alike).
    let own = super::ownstack::in_use();
    let zeros = own.start.max(r.start)..own.end.min(r.end);
    PageSource {
        pagemap: if anonymous_private(r) { pagemap } else { None },
        zeros: if zeros.is_empty() { 0..0 } else { zeros },
        bounce: !anonymous_private(r),
        absent,
    }
}

/// Which pages are stored elsewhere, settled before anything is written, as the headers say it.
/// A member stores no page the root stores alike at the same address (`NT_CKPT_SHARED`). A
/// process checkpointed on its own stores no page that it did not write since its previous
/// image, which holds it (see `chain`); the region holding the signal frame too: what the
/// handler may write there after tracking looked is below the frame, dead once the program
/// resumes.
/// Returns the lengths of the shared and chain notes, and the base to name at commit (`Err`: the
/// writer lacks memory the previous image does not hold, see `unforked`).
fn plan_stored_elsewhere(role: &Role, compress: bool, stored: &Stored, image_path: &[u8], pagemap: Option<i32>, bufs: super::chain::Bufs) -> Result<(usize, usize, Option<super::chain::BaseLink>), Failure> {
    match role {
        Role::Member(j) if !compress => Ok((plan_sharing(j, stored, bufs.pm_buf, bufs.shared), 0, None)),
        Role::Single => {
            let mut candidates = regions(stored.maps, stored.exclude)
                .zip(stored.slots.iter())
                .enumerate()
                .filter(|(_, (r, s))| s.saved == Saved::Data && read_address(stored.shadows, r) == r.start)
                .filter_map(|(i, (r, _))| {
                    let restored = super::track::is_restored_memory(&r);
                    (anonymous_private(&r) || restored).then_some(super::chain::Candidate { index: i as u32, start: r.start as u64, end: r.end as u64, restored })
                });
            super::chain::plan(bufs, image_path, &mut candidates, pagemap)
        }
        _ => Ok((0, 0, None)),
    }
}

/// The layout: headers, notes, then data from the first page boundary after them.
fn lay_out(parts: &Parts, threads: &[ThreadState], role: &Role, plan: &Plan) -> Result<Layout, Failure> {
    // The frame's XSAVE area, and the note made from it (as long as debuggers expect).
    let xstate_len = if parts.state.xfeatures != 0 { parts.state.xstate_size as usize } else { 0 };
    let xstate_note_len = ckpt_image::frame::core_xstate_len(parts.state.xfeatures);
    // Each thread's notes: its state, its registers, and (x86-64 frames always have one) its
    // FXSAVE and XSAVE areas.
    let mut thread_notes_len = 0;
    for t in threads {
        let has_fpu = context_of(t)?.fpstate != 0;
        thread_notes_len += note_size(CKPT_NOTE_NAME, ThreadState::ENCODED_LEN)
            + note_size(CORE, PRSTATUS_SIZE)
            + if has_fpu { note_size(CORE, FXSAVE_SIZE) } else { 0 }
            + if has_fpu && xstate_len > 0 { note_size(LINUX, xstate_note_len) } else { 0 };
    }
    let phnum = plan.count + 1;
    let phdrs_end = EHDR_SIZE + PHDR_SIZE * phnum;
    let regions_desc_len = region::table_len(plan.count, plan.names_len);
    let notes_len = note_size(CKPT_NOTE_NAME, ProcessState::ENCODED_LEN)
        + thread_notes_len
        + note_size(CORE, PRPSINFO_SIZE)
        + note_size(CORE, parts.auxv_len)
        + note_size(CKPT_NOTE_NAME, regions_desc_len)
        + note_size(CKPT_NOTE_NAME, parts.fds_len)
        + optional_notes(parts, role, &[], plan).iter().map(|&(_, len, _)| if len > 0 { note_size(CKPT_NOTE_NAME, len) } else { 0 }).sum::<usize>();
    let meta_len = phdrs_end + notes_len;
    if meta_len > parts.meta.len() {
        return Err(Failure::plain("the image headers do not fit in the scratch buffer"));
    }
    Ok(Layout { phnum, phdrs_end, regions_desc_len, notes_len, meta_len, data_start: page_up(meta_len as u64), xstate_len, xstate_note_len })
}

/// How many notes `optional_notes` lists (each present only when it has something to say).
const OPTIONAL_NOTES: usize = 17;

/// The notes written only when they have records, in image order, in one table: each one's
/// type, length (0: the note is left out) and descriptor. The layout takes the lengths from it
/// and the headers the descriptors, so the two cannot disagree. The tree note is made after the
/// layout, which knows only its length (`tree_note` is empty until then); `NT_CKPT_MAC` is
/// written as zeros, then filled in by [`authenticate`].
fn optional_notes<'a>(parts: &'a Parts, role: &Role, tree_note: &'a [u8], plan: &Plan) -> [(u32, usize, &'a [u8]); OPTIONAL_NOTES] {
    // A member's part has room for its MAC too, which the root's writer fills in.
    let keyed = crate::config::get().key_file().is_some();
    let origin = crate::origin::note();
    [
        (NT_CKPT_TIMERS, parts.timers_len, &parts.timers[..]),
        (NT_CKPT_EPOLL, parts.epoll_len, &parts.epoll[..]),
        (NT_CKPT_SOCKETS, parts.sockets_len, &parts.sockets[..]),
        (NT_CKPT_TIMERFDS, parts.timerfds_len, &parts.timerfds[..]),
        (NT_CKPT_INOTIFY, parts.inotify_len, &parts.inotify[..]),
        (NT_CKPT_LOCKS, parts.locks_len, &parts.locks[..]),
        // Slaves alone restore as before with a reader that skips the note; a master would
        // not (see `ckpt_image::pty`).
        (if parts.ptys_master { NT_CKPT_PTYS } else { NT_CKPT_PTYS | NT_CKPT_IGNORABLE }, parts.ptys_len, &parts.ptys[..]),
        (NT_CKPT_TREE, if let Role::Root(t) = role { t.note_len() } else { 0 }, tree_note),
        (NT_CKPT_SHARED, plan.shared_len, &parts.shared[..]),
        (NT_CKPT_FILEMAPS, plan.filemaps_len, &parts.filemaps[..]),
        (ckpt_image::NT_CKPT_SHMFILES, plan.shmfiles_len, &parts.shmfiles[..]),
        (NT_CKPT_CHAIN, plan.chain_len, &parts.chain[..]),
        (NT_CKPT_ORIGIN, origin.len(), origin),
        (NT_CKPT_IPC, parts.ipc_len, &parts.ipc[..]),
        (ckpt_image::NT_CKPT_WRITTEN, parts.written_len, &parts.written[..]),
        (ckpt_image::NT_CKPT_NODE, parts.node.len(), &parts.node[..]),
        (NT_CKPT_MAC, if keyed { ckpt_image::mac::MAC_LEN } else { 0 }, &[0u8; ckpt_image::mac::MAC_LEN]),
    ]
}

/// Writes the region data from `data_start`, each region's place, stored length and hash noted
/// in its slot (pages are read as [`page_source`] says, from `pagemap`). Returns where the data
/// ends.
fn write_region_data(parts: &mut Parts, fd: i32, exclude: &Range<usize>, pagemap: Option<i32>, plan: &Plan, data_start: u64) -> Result<u64, Failure> {
    let maps = &parts.maps[..parts.maps_len];
    let shadows = &parts.shadows[..parts.nshadows];
    let mut skip = super::runs::RunCursor::new(&parts.shared[..plan.shared_len]);
    let mut off = data_start;
    for (i, (r, slot)) in regions(maps, exclude).zip(parts.slots.iter_mut()).enumerate() {
        if slot.saved != Saved::Data {
            continue;
        }
        let len = r.end - r.start;
        let src = page_source(&r, pagemap, super::scratch::unforked_by_kind(&parts.unforked[..parts.nunforked], parts.unforked_zeros).1);
        slot.data_offset = off;
        let from = read_address(shadows, &r);
        if plan.compress {
            (slot.stored_len, slot.data_hash) = super::compress::write_region(fd, from, len, off, &src, parts.copybuf, parts.outbuf)?;
        } else {
            slot.data_hash = write_region(fd, from, len, off, &src, parts.pm_buf, parts.copybuf, (&mut skip, i as u32))?;
            slot.stored_len = len as u64;
        }
        off += slot.stored_len;
    }
    Ok(off)
}

/// In the root's writer, once its own image ends at `end`: takes in each member's part and
/// makes the tree note (see `Tree::append_parts`). Returns the file's new end and the note.
fn append_members<'t>(parts: &Parts, tree: &'t super::tree::Tree, img: rustix::fd::BorrowedFd<'_>, exclude: &Range<usize>, plan: &Plan, end: u64, key: Option<&ckpt_image::mac::Key>) -> Result<(u64, &'t [u8]), Failure> {
    let own = ckpt_image::tree::TreeRecord {
        pid: parts.state.pid,
        ppid: parts.state.ppid,
        pgid: rustix::process::getpgrp().as_raw_nonzero().get() as u32,
        sid: rustix::process::getsid(None).map_or(0, |p| p.as_raw_nonzero().get() as u32),
        len: end,
        ..Default::default()
    };
    // A part's region with the same bytes as one of the root's (a child's copy of code or
    // memory it never wrote since fork) points at the root's copy instead.
    let maps = &parts.maps[..parts.maps_len];
    let slots = &parts.slots[..plan.count];
    let in_root = |r: &RegionRecord| -> Option<u64> {
        if plan.compress || r.compressed() || r.shares_pages() {
            return None;
        }
        regions(maps, exclude)
            .zip(slots.iter())
            .find(|(m, s)| {
                (m.start as u64, m.end as u64) == (r.start, r.end) && s.saved == Saved::Data && (s.data_hash, s.stored_len) == (r.data_hash, r.stored_len)
            })
            .map(|(_, s)| s.data_offset)
    };
    tree.append_parts(img, end, key, own, &in_root)
}

/// Encodes the headers into `meta`, once every offset and hash is known: the ELF header and
/// program headers, the process's and each thread's notes, the core-file notes, the regions,
/// the descriptors and the optional notes (`optional`, see [`optional_notes`]).
fn write_headers(meta: &mut [u8], parts: &Parts, threads: &[ThreadState], exclude: &Range<usize>, plan: &Plan, layout: &Layout, optional: [(u32, usize, &[u8]); OPTIONAL_NOTES]) -> Result<(), Failure> {
    let maps = &parts.maps[..parts.maps_len];
    let mut w = Writer::new(meta);
    Ehdr { phoff: EHDR_SIZE as u64, phnum: layout.phnum as u16 }.write(&mut w);
    Phdr { p_type: PT_NOTE, offset: layout.phdrs_end as u64, filesz: layout.notes_len as u64, align: 4, ..Phdr::default() }.write(&mut w);
    for (r, slot) in regions(maps, exclude).zip(parts.slots.iter()) {
        let len = (r.end - r.start) as u64;
        let plain = slot.saved == Saved::Data && !plan.compress;
        Phdr {
            p_type: PT_LOAD,
            flags: pflags_from_prot(r.prot),
            offset: if plain { slot.data_offset } else { 0 },
            vaddr: r.start as u64,
            filesz: if plain { len } else { 0 },
            memsz: len,
            align: PAGE_SIZE,
        }
        .write(&mut w);
    }

    begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_STATE, ProcessState::ENCODED_LEN);
    parts.state.write(&mut w);
    w.align(4);
    for th in threads {
        begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_THREAD, ThreadState::ENCODED_LEN);
        th.write(&mut w);
        w.align(4);
    }
    write_core_notes(&mut w, parts, threads, layout)?;
    write_regions_note(&mut w, parts, exclude, plan, layout.regions_desc_len);
    write_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_FDS, &parts.fds[..parts.fds_len]);
    for (ty, len, desc) in optional {
        if len > 0 {
            write_note(&mut w, CKPT_NOTE_NAME, ty, &desc[..len]);
        }
    }
    if w.finish() != Some(layout.meta_len) {
        return Err(Failure::plain("laying out the image headers"));
    }
    Ok(())
}

/// The core-file notes, thread by thread as debuggers expect them: each NT_PRSTATUS, then
/// that thread's FPU notes; NT_PRPSINFO after the first; NT_AUXV last.
fn write_core_notes(w: &mut Writer, parts: &Parts, threads: &[ThreadState], layout: &Layout) -> Result<(), Failure> {
    let st = &*parts.state;
    let xsave_layout = ckpt_sigsafe::cpu::xsave_layout();
    for (i, th) in threads.iter().enumerate() {
        let ctx = context_of(th)?;
        begin_note(w, CORE, note::NT_PRSTATUS, PRSTATUS_SIZE);
        ctx.write_prstatus(w, st.ckpt_signal, th.tid, st.ppid, th.fs_base, th.gs_base);
        w.align(4);
        if i == 0 {
            begin_note(w, CORE, note::NT_PRPSINFO, PRPSINFO_SIZE);
            // The start of the command line, its arguments separated by spaces.
            let mut args = [0u8; 80];
            let n = parts.cmdline_len.min(80);
            args[..n].copy_from_slice(&parts.cmdline[..n]);
            for c in args[..n].iter_mut() {
                if *c == 0 {
                    *c = b' ';
                }
            }
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            write_prpsinfo(w, st.pid, st.ppid, uid, gid, th.comm_bytes(), args[..n].trim_ascii_end());
            w.align(4);
        }
        if ctx.fpstate != 0 {
            // SAFETY: the frame's fpstate points at the FXSAVE area the kernel saved with it.
            let fx = unsafe { core::slice::from_raw_parts(ctx.fpstate as *const u8, FXSAVE_SIZE) };
            write_note(w, CORE, note::NT_FPREGSET, fx);
            if layout.xstate_len > 0 {
                // SAFETY: the software bytes of that area say an XSAVE area of this size follows it.
                let xs = unsafe { core::slice::from_raw_parts(ctx.fpstate as *const u8, layout.xstate_len) };
                begin_note(w, LINUX, note::NT_X86_XSTATE, layout.xstate_note_len);
                write_xstate(w, xs, st.xfeatures, &xsave_layout);
                w.align(4);
            }
        }
    }
    write_note(w, CORE, note::NT_AUXV, &parts.auxv[..parts.auxv_len]);
    Ok(())
}

/// The `NT_CKPT_REGIONS` note: a record per region (where its data is, how it is saved), then
/// the regions' names.
fn write_regions_note(w: &mut Writer, parts: &Parts, exclude: &Range<usize>, plan: &Plan, desc_len: usize) {
    let maps = &parts.maps[..parts.maps_len];
    begin_note(w, CKPT_NOTE_NAME, NT_CKPT_REGIONS, desc_len);
    region::write_table_header(w, plan.count);
    let mut name_off = 0u32;
    let mut sharing = super::runs::RunCursor::new(&parts.shared[..plan.shared_len]);
    for (i, (r, slot)) in regions(maps, exclude).zip(parts.slots.iter()).enumerate() {
        let mut flags = 0;
        if sharing.any_in(i as u32) {
            flags |= RF_SHARES_PAGES;
        }
        if r.shared {
            flags |= RF_SHARED;
        }
        match slot.saved {
            Saved::Data if plan.compress => flags |= RF_HAS_DATA | RF_COMPRESSED,
            Saved::Data => flags |= RF_HAS_DATA,
            Saved::FromFile => flags |= RF_FROM_FILE,
            Saved::PrivateFile => flags |= RF_MAP_PRIVATE_FILE,
            Saved::Nothing => {}
        }
        if r.inode != 0 {
            flags |= RF_FILE;
        }
        RegionRecord {
            start: r.start as u64,
            end: r.end as u64,
            prot: r.prot,
            kind: kind_of(&r),
            flags,
            file_offset: r.offset,
            dev: (r.dev_major as u64) << 32 | r.dev_minor as u64,
            inode: r.inode,
            data_hash: slot.data_hash,
            name_off,
            name_len: r.name.len() as u32,
            data_offset: slot.data_offset,
            stored_len: slot.stored_len,
        }
        .write(w);
        name_off += r.name.len() as u32;
    }
    for r in regions(maps, exclude) {
        w.bytes(r.name);
    }
    w.align(4);
}

/// Copies the contents of each deleted-but-open file after the region data, page-aligned, and
/// fills in where they are in its record of `fds_desc` (the encoded `NT_CKPT_FDS`). Returns
/// the end of the file.
fn write_deleted_files(img: i32, fds_desc: &mut [u8], data_end: u64, buf: &mut [u8], pipe_data: &[u8]) -> Result<u64, Failure> {
    let mut end = data_end;
    fds::update_records(fds_desc, |rec, _| {
        if matches!(rec.kind, FdKind::Deleted | FdKind::MemFd) {
            rec.blob_offset = page_up(end);
            (rec.blob_len, rec.blob_hash) = copy_deleted_file(rec.fd, img, rec.blob_offset, buf)?;
            end = rec.blob_offset + rec.blob_len;
        } else if rec.has_blob() {
            // A pipe's bytes or a socket's queue, copied by the handler: `blob_offset` is where in `pipe_data`.
            let bytes = &pipe_data[rec.blob_offset as usize..(rec.blob_offset + rec.blob_len) as usize];
            rec.blob_offset = page_up(end);
            write_all(img, bytes.as_ptr() as usize, bytes.len(), rec.blob_offset)?;
            rec.blob_hash = ckpt_image::hash(bytes);
            end = rec.blob_offset + rec.blob_len;
        }
        Ok(())
    })?;
    Ok(end)
}

/// Reads a deleted file through a fresh descriptor (so the program's offset does not move) and
/// appends it to the image at `at`. Returns its length and hash.
fn copy_deleted_file(fd: i32, img: i32, at: u64, buf: &mut [u8]) -> Result<(u64, u64), Failure> {
    let mut path = [0u8; 64];
    let path = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/fd/", fd as u64, b"").ok_or(Failure::plain("descriptor path"))?;
    let src = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Failure::new("reopening a deleted file to save it", e))?;
    let mut h = Hasher::new();
    let mut done = 0u64;
    loop {
        let got = match rustix::io::retry_on_intr(|| rustix::io::pread(&src, &mut *buf, done)) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Failure::new("reading a deleted file to save it", e)),
        };
        write_all(img, buf.as_ptr() as usize, got, at + done)?;
        h.update(&buf[..got]);
        done += got as u64;
    }
    Ok((done, h.digest()))
}

/// Writes one region (region `skip.1` of the image): its non-zero pages, each at its place in
/// the region's span of the file, so that zero pages (and never-touched ones) are holes that
/// take no space, and so are the pages `skip.0` says the root stores. Returns the region's
/// [`RegionHasher`] hash (of the pages stored).
#[allow(clippy::too_many_arguments)]
fn write_region(
    img: i32,
    start: usize,
    len: usize,
    off: u64,
    src: &PageSource,
    pm_buf: &mut [u64],
    bounce: &mut [u8],
    skip: (&mut super::runs::RunCursor, u32),
) -> Result<u64, Failure> {
    let mut h = RegionHasher::new();
    let pages = len / PAGE;
    let mut p = 0;
    while p < pages {
        let n = (pages - p).min(pm_buf.len()).min(bounce.len() / PAGE);
        let chunk_start = start + p * PAGE;
        if skip.0.covers_all(skip.1, p as u64, n as u64) {
            // Pages stored elsewhere, all of them: nothing to read.
            p += n;
            continue;
        }
        let copied = if src.bounce { sys::copy_own_memory(chunk_start, n * PAGE, bounce) / PAGE } else { n };
        let present = &mut pm_buf[..n];
        read_in_memory(src, chunk_start, present);
        // Runs of non-zero pages are written with one call each.
        let mut run: Option<usize> = None;
        for i in 0..=n {
            let keep = i < n && {
                let addr = chunk_start + i * PAGE;
                if !src.bounce {
                    prefetch_ahead(addr, start + len);
                }
                let in_root = skip.0.covers(skip.1, ((addr - start) / PAGE) as u64);
                let page = if in_root {
                    None
                } else if src.bounce {
                    (i < copied).then(|| &bounce[i * PAGE..(i + 1) * PAGE])
                } else {
                    page_bytes(addr, present[i], src)
                };
                match page {
                    Some(bytes) if !is_zero_page(bytes) => {
                        h.add_nonzero(((addr - start) / PAGE) as u64, bytes);
                        true
                    }
                    _ => false,
                }
            };
            match (keep, run) {
                (true, None) => run = Some(i),
                // A run is written once it is as long as the cache holds well, its pages just
                // hashed: the kernel's copy into the file then reads them from the cache, not
                // from memory a second time.
                (true, Some(r)) if i - r == RUN_PAGES && !src.bounce => {
                    write_run(img, chunk_start, r, i, start, off)?;
                    run = Some(i);
                }
                (false, Some(r)) if src.bounce => {
                    let file_at = off + (chunk_start - start + r * PAGE) as u64;
                    write_all(img, bounce[r * PAGE..].as_ptr() as usize, (i - r) * PAGE, file_at)?;
                    run = None;
                }
                (false, Some(r)) => {
                    write_run(img, chunk_start, r, i, start, off)?;
                    run = None;
                }
                _ => {}
            }
        }
        p += n;
    }
    Ok(h.digest())
}

/// Most pages written with one call (256 KiB): few enough that pages hashed just before are
/// still in the core's cache when the kernel copies them.
const RUN_PAGES: usize = 64;

/// Writes pages `from..to` of the chunk at `chunk_start` (a run of non-zero pages).
fn write_run(img: i32, chunk_start: usize, from: usize, to: usize, start: usize, off: u64) -> Result<(), Failure> {
    let addr = chunk_start + from * PAGE;
    let len = (to - from) * PAGE;
    let file_at = off + (addr - start) as u64;
    write_all(img, addr, len, file_at)
}

/// In the writer: closes every descriptor but the image, stderr (for its messages) and the
/// files whose contents it copies (deleted files and memfds).
pub fn close_all_but_needed(parts: &mut Parts, image_fd: i32, also: impl Iterator<Item = i32>) {
    let keep = &mut parts.fd_list[..];
    let mut n = 0;
    let mut push = |fd: i32| {
        if n < keep.len() {
            keep[n] = fd;
            n += 1;
        }
    };
    push(image_fd);
    push(2);
    also.for_each(&mut push);
    for (rec, _) in fds::records(&parts.fds[..parts.fds_len]).filter_map(Result::ok) {
        if matches!(rec.kind, FdKind::Deleted | FdKind::MemFd) {
            push(rec.fd);
        }
    }
    let keep = &mut keep[..n];
    keep.sort_unstable();
    let mut from = 0u32;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > from {
            // SAFETY: the writer owns its copy of the descriptor table and uses none of these.
            unsafe { sys::close_range(from, fd - 1) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: as above.
    let _ = unsafe { sys::close_from(from) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attached_layout_leaves_out_ckpts_ranges_and_earlier_frames() {
        let maps = b"1000-5000 rw-p 00000000 00:00 0 [heap]
6000-7000 r-xp 00002000 fd:01 42 /bin/prog
7000-9000 rw-p 00000000 00:00 0 [anon:ckpt-frames]
9000-a000 rw-p 00000000 00:00 0 [anon:ckpt-frames]
c000-f000 rw-p 00000000 00:00 0 
";
        let ranges = [0x3000..0x4000, 0xd000..0x10000, 0x6000..0x7000, 0x1800..0x2000];
        let leave = LeaveOut { ranges: &ranges, frames: 0x9000, earlier_frames: |e, current| e.name == b"[anon:ckpt-frames]" && e.start != current };
        let mut out = [0u8; 4096];
        let n = leave.apply(maps, &mut out).unwrap();
        let kept: std::vec::Vec<(usize, usize, u64, &[u8])> = maps::entries(&out[..n]).map(|e| (e.start, e.end, e.offset, e.name)).collect();
        assert_eq!(
            kept,
            [
                (0x1000, 0x1800, 0, &b"[heap]"[..]),
                (0x2000, 0x3000, 0x1000, b"[heap]"),
                (0x4000, 0x5000, 0x3000, b"[heap]"),
                (0x9000, 0xa000, 0, b"[anon:ckpt-frames]"),
                (0xc000, 0xd000, 0, b""),
            ]
        );
        assert!(leave.apply(maps, &mut out[..40]).is_none());
    }

    #[test]
    fn the_scratch_area_is_cut_out_of_the_regions() {
        let maps = b"1000-5000 rw-p 00000000 00:00 0 \n\
                     5000-9000 r--p 00001000 08:01 42 /lib/x.so\n\
                     a000-b000 rw-p 00000000 00:00 0 \n";
        let cut = |exclude: Range<usize>| -> std::vec::Vec<(usize, usize, u64)> {
            regions(maps, &exclude).map(|r| (r.start, r.end, r.offset)).collect()
        };
        // Inside one region: it is split around the scratch area.
        assert_eq!(cut(0x2000..0x3000), [(0x1000, 0x2000, 0), (0x3000, 0x5000, 0x2000), (0x5000, 0x9000, 0x1000), (0xa000, 0xb000, 0)]);
        // Covering the end of one region and the start of the next: the file offset moves along.
        assert_eq!(cut(0x4000..0x6000), [(0x1000, 0x4000, 0), (0x6000, 0x9000, 0x2000), (0xa000, 0xb000, 0)]);
        // A whole region, and nothing at all.
        assert_eq!(cut(0xa000..0xb000), [(0x1000, 0x5000, 0), (0x5000, 0x9000, 0x1000)]);
        assert_eq!(cut(0..0).len(), 3);
    }

    #[test]
    fn an_earlier_restarts_resume_page_is_left_out() {
        let maps = b"1000-5000 rw-p 00000000 00:00 0 [heap]\n\
                     7000-8000 r-xp 00000000 00:00 0 [anon:ckpt-resume]\n\
                     8000-9000 rw-p 00000000 00:00 0 [anon:ckpt-resume]\n\
                     a000-b000 rw-p 00000000 00:00 0 [anon:other]\n\
                     c000-d000 r-xp 00000000 00:01 77 /memfd:ckpt-resume (deleted)\n\
                     d000-e000 rw-p 00001000 00:01 77 /memfd:ckpt-resume (deleted)\n\
                     e000-f000 rw-p 00000000 00:01 78 /memfd:ckpt-resumed (deleted)\n";
        let kept: std::vec::Vec<(usize, usize)> = regions(maps, &(0..0)).map(|r| (r.start, r.end)).collect();
        assert_eq!(kept, [(0x1000, 0x5000), (0xa000, 0xb000), (0xe000, 0xf000)]);
    }
}
