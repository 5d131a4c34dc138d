//! The checkpoint's working memory: one anonymous mapping, made at the start of a checkpoint,
//! left out of the image, and removed at the end.
//!
//! Only the pages actually used cost anything (`MAP_NORESERVE`, touched on demand).

use ckpt_image::fds::FdRecord;
use ckpt_image::limits::{MAX_FDS, MAX_HEADERS, MAX_THREADS};
use super::slots::{RegionSlot, SLOTS};
use super::failure::Failure;
use ckpt_image::ProcessState;
use core::ops::Range;
use rustix::mm::{MapFlags, ProtFlags};

const MIB: usize = 1 << 20;
const STATE_AT: usize = 0;
const SMALL_AT: usize = 64 * 1024;
const FD_LIST_AT: usize = 2 * MIB;
/// One entry per descriptor: the checkpoint refuses a program with more than one image holds.
const FD_LIST_LEN: usize = MAX_FDS;
const COPY_AT: usize = 3 * MIB;
const COPY_LEN: usize = MIB;
const PAGEMAP_AT: usize = FD_LIST_AT + FD_LIST_LEN * 4;
/// 512 entries: regions are handled 2 MiB at a time.
const PAGEMAP_LEN: usize = 512;
const OUT_AT: usize = 4 * MIB;
const OUT_LEN: usize = 2 * MIB;
const MAPS_AT: usize = 6 * MIB;
const MAPS_LEN: usize = 26 * MIB;
const META_AT: usize = 32 * MIB;
const META_LEN: usize = MAX_HEADERS;
const SLOTS_AT: usize = META_AT + META_LEN;
/// Where, inside the headers' room (unused until the writer encodes them), the handler keeps
/// the ranges of memory a child does not inherit, found once in smaps (see `write::copy_len`).
pub const NOT_INHERITED_AT: usize = 8192 + MIB;
pub const NOT_INHERITED_LEN: usize = 64 * 1024;
const SLOTS_LEN: usize = SLOTS * core::mem::size_of::<RegionSlot>();
const TIDS_AT: usize = SLOTS_AT + SLOTS_LEN.next_multiple_of(MIB);
const TIDS_LEN: usize = MAX_THREADS * 4;
const TIMERS_AT: usize = TIDS_AT + TIDS_LEN.next_multiple_of(MIB);
const TIMERS_LEN: usize = MIB;
const PIPES_AT: usize = TIMERS_AT + TIMERS_LEN;
/// Most bytes in pipes and socket queues one checkpoint keeps.
const PIPE_DATA_LEN: usize = 16 * MIB;
/// Pipes (by inode) whose bytes were copied, at most.
pub const MAX_PIPES: usize = 4096;
const EPOLL_AT: usize = PIPES_AT + PIPE_DATA_LEN + MIB;
const EPOLL_LEN: usize = MIB;
const SOCKETS_AT: usize = EPOLL_AT + EPOLL_LEN;
const SOCKETS_LEN: usize = 2 * MIB;
const TIMERFDS_AT: usize = SOCKETS_AT + SOCKETS_LEN;
const TIMERFDS_LEN: usize = MIB;
const INOTIFY_AT: usize = TIMERFDS_AT + TIMERFDS_LEN;
const INOTIFY_LEN: usize = 4 * MIB;
const SHADOWS_AT: usize = INOTIFY_AT + INOTIFY_LEN;
/// Most shared memory regions a checkpoint copies.
pub const MAX_SHADOWS: usize = 4096;
const SHADOWS_LEN: usize = MAX_SHADOWS * core::mem::size_of::<Shadow>();
const SHARED_AT: usize = SHADOWS_AT + SHADOWS_LEN.next_multiple_of(MIB);
const SHARED_LEN: usize = ckpt_image::shared::note_len(ckpt_image::shared::MAX_SHARED_RUNS);
const FILEMAPS_AT: usize = SHARED_AT + SHARED_LEN.next_multiple_of(MIB);
const FILEMAPS_LEN: usize = ckpt_image::filemaps::note_len(SLOTS);
/// Where the copies of shared memory start (they take what the checkpoint needs beyond this).
const DIRTY_AT: usize = FILEMAPS_AT + FILEMAPS_LEN.next_multiple_of(MIB);
/// Ranges of written memory one checkpoint records (past that, the image is full).
pub const MAX_DIRTY: usize = 65536;
const DIRTY_LEN: usize = MAX_DIRTY * 16;
const CHAIN_AT: usize = DIRTY_AT + DIRTY_LEN.next_multiple_of(MIB);
const CHAIN_LEN: usize = ckpt_image::chain::note_len(ckpt_image::chain::MAX_BASES);
const BASE_STATE_AT: usize = CHAIN_AT + CHAIN_LEN.next_multiple_of(MIB);
const BASE_META_AT: usize = BASE_STATE_AT + MIB;
pub const BASE_META_LEN: usize = MAX_HEADERS;
/// The `NT_CKPT_FDS` records: room for the most descriptors an image holds, with paths of 112
/// bytes on average (the pages are touched only as records are written).
const FDS_AT: usize = BASE_META_AT + BASE_META_LEN;
const FDS_LEN: usize = MAX_FDS * FdRecord::encoded_len(112);
const TOTAL: usize = FDS_AT + FDS_LEN.next_multiple_of(MIB);

/// A copy of a shared memory region, made while the program was stopped (the forked writer
/// shares such memory with the program instead of getting a snapshot of it).
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct Shadow {
    /// The region's address in the program.
    pub start: usize,
    /// Where its copy is, and its length.
    pub copy: usize,
    pub len: usize,
}

pub struct Scratch {
    base: usize,
    /// Bytes mapped: TOTAL plus the copies of shared memory.
    len: usize,
}

/// The scratch area cut into its uses.
pub struct Parts<'a> {
    pub state: &'a mut ProcessState,
    /// `/proc/self/auxv`.
    pub auxv: &'a mut [u8],
    /// `/proc/self/status` and `/proc/self/stat`, and the cmdline.
    pub text: &'a mut [u8],
    pub cmdline: &'a mut [u8],
    /// Temporary file path.
    pub tmp_path: &'a mut [u8],
    /// One page, for the stack page that holds the signal frame.
    pub page: &'a mut [u8],
    /// A path, NUL-terminated, for system calls.
    pub pathbuf: &'a mut [u8],
    /// Descriptors recorded so far (to find `dup`ed ones).
    pub fd_list: &'a mut [i32],
    /// Bounce buffer for copying deleted files into the image.
    pub copybuf: &'a mut [u8],
    /// Pagemap entries for one chunk of a region.
    pub pm_buf: &'a mut [u64],
    /// Compressed output for one chunk.
    pub outbuf: &'a mut [u8],
    /// `NT_CKPT_FDS` descriptor under construction.
    pub fds: &'a mut [u8],
    pub fds_len: usize,
    pub auxv_len: usize,
    pub cmdline_len: usize,
    /// The memory layout the image has (`/proc/self/maps` as the handler read it).
    pub maps: &'a mut [u8],
    pub maps_len: usize,
    pub meta: &'a mut [u8],
    /// What the writer keeps of each region.
    pub slots: &'a mut [RegionSlot],
    /// Room for the TIDs of the threads being stopped.
    pub tids: &'a mut [u32],
    /// The bytes in the program's pipes and socket queues, and which pipes (inodes) they come
    /// from.
    pub pipe_data: &'a mut [u8],
    pub pipes: &'a mut [u64],
    /// The `NT_CKPT_EPOLL` descriptor under construction.
    pub epoll: &'a mut [u8],
    pub epoll_len: usize,
    /// The `NT_CKPT_SOCKETS`, `NT_CKPT_TIMERFDS` and `NT_CKPT_INOTIFY` descriptors under
    /// construction.
    pub sockets: &'a mut [u8],
    pub sockets_len: usize,
    pub timerfds: &'a mut [u8],
    pub timerfds_len: usize,
    pub inotify: &'a mut [u8],
    pub inotify_len: usize,
    /// The `NT_CKPT_TIMERS` descriptor under construction.
    pub timers: &'a mut [u8],
    pub timers_len: usize,
    /// Copies of shared memory, `nshadows` of them, and the room for them.
    pub shadows: &'a mut [Shadow],
    pub nshadows: usize,
    /// A tree member's `NT_CKPT_SHARED` descriptor under construction.
    pub shared: &'a mut [u8],
    /// The `NT_CKPT_FILEMAPS` descriptor under construction.
    pub filemaps: &'a mut [u8],
    pub shadow_room: &'a mut [u8],
    /// Memory written since the previous checkpoint (see `track`), and what tracking learned.
    pub dirty: &'a mut [[u64; 2]],
    pub tracked: super::track::Tracked,
    /// The `NT_CKPT_CHAIN` descriptor being built.
    pub chain: &'a mut [u8],
    /// The previous image's headers and state, read by the writer of an incremental image.
    pub base_state: &'a mut ProcessState,
    pub base_meta: &'a mut [u8],
}

impl Scratch {
    pub fn map() -> Result<Scratch, Failure> {
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // overlaps nothing of the program.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                TOTAL,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| Failure::new("mapping scratch memory", e))?;
        Ok(Scratch { base: p as usize, len: TOTAL })
    }

    /// The address range to leave out of the image.
    pub fn range(&self) -> Range<usize> {
        self.base..self.base + self.len
    }

    /// The maps buffer, a path buffer and a buffer for reading smaps, for use before
    /// [`Scratch::parts`].
    pub fn prep_buffers(&mut self) -> (&mut [u8], &mut [u8], &mut [u8], &mut [u8]) {
        // SAFETY: disjoint ranges of our own mapping, all within TOTAL.
        unsafe {
            (
                core::slice::from_raw_parts_mut((self.base + MAPS_AT) as *mut u8, MAPS_LEN),
                core::slice::from_raw_parts_mut((self.base + META_AT) as *mut u8, 8192),
                core::slice::from_raw_parts_mut((self.base + META_AT + 8192) as *mut u8, MIB),
                core::slice::from_raw_parts_mut((self.base + META_AT + NOT_INHERITED_AT) as *mut u8, NOT_INHERITED_LEN),
            )
        }
    }

    pub fn grow(&mut self, extra: usize) -> Result<(), Failure> {
        if extra == 0 {
            return Ok(());
        }
        let new_len = TOTAL + extra.next_multiple_of(4096);
        // SAFETY: our own mapping, not borrowed (no Parts exist); its contents move with it.
        let p = unsafe { rustix::mm::mremap(self.base as *mut _, self.len, new_len, rustix::mm::MremapFlags::MAYMOVE) }
            .map_err(|e| Failure::new("mapping room to copy shared memory", e))?;
        self.base = p as usize;
        self.len = new_len;
        Ok(())
    }

    pub fn parts(&mut self) -> Parts<'_> {
        let b = self.base;
        // SAFETY: each slice is a distinct part of our own live read-write mapping, which
        // outlives the borrow of `self`; the state part is page-aligned, large enough and
        // initialised by the write before the reference is made. The rest is fresh anonymous
        // memory, all zeros, which is a valid value of every element type (u8, i32, u32, u64,
        // `Shadow` (plain integers) and `RegionSlot`, whose all-zero value is documented as
        // valid).
        unsafe {
            let state = (b + STATE_AT) as *mut ProcessState;
            state.write(ProcessState::ZERO);
            let s = |at: usize, len: usize| core::slice::from_raw_parts_mut((b + at) as *mut u8, len);
            Parts {
                state: &mut *state,
                auxv: s(SMALL_AT, 8192),
                text: s(SMALL_AT + 8192, 16384),
                cmdline: s(SMALL_AT + 24576, 8192),
                tmp_path: s(SMALL_AT + 53248, 16384),
                page: s(SMALL_AT + 40960, 4096),
                pathbuf: s(SMALL_AT + 45056, 8192),
                fd_list: core::slice::from_raw_parts_mut((b + FD_LIST_AT) as *mut i32, FD_LIST_LEN),
                copybuf: s(COPY_AT, COPY_LEN),
                pm_buf: core::slice::from_raw_parts_mut((b + PAGEMAP_AT) as *mut u64, PAGEMAP_LEN),
                outbuf: s(OUT_AT, OUT_LEN),
                fds: s(FDS_AT, FDS_LEN),
                fds_len: 0,
                auxv_len: 0,
                cmdline_len: 0,
                maps: s(MAPS_AT, MAPS_LEN),
                maps_len: 0,
                meta: s(META_AT, META_LEN),
                slots: core::slice::from_raw_parts_mut((b + SLOTS_AT) as *mut RegionSlot, SLOTS),
                tids: core::slice::from_raw_parts_mut((b + TIDS_AT) as *mut u32, MAX_THREADS),
                timers: s(TIMERS_AT, TIMERS_LEN),
                epoll: s(EPOLL_AT, EPOLL_LEN),
                epoll_len: 0,
                sockets: s(SOCKETS_AT, SOCKETS_LEN),
                sockets_len: 0,
                timerfds: s(TIMERFDS_AT, TIMERFDS_LEN),
                timerfds_len: 0,
                inotify: s(INOTIFY_AT, INOTIFY_LEN),
                inotify_len: 0,
                pipe_data: s(PIPES_AT, PIPE_DATA_LEN),
                pipes: core::slice::from_raw_parts_mut((b + PIPES_AT + PIPE_DATA_LEN) as *mut u64, MAX_PIPES),
                timers_len: 0,
                shadows: core::slice::from_raw_parts_mut((b + SHADOWS_AT) as *mut Shadow, MAX_SHADOWS),
                nshadows: 0,
                shared: s(SHARED_AT, SHARED_LEN),
                filemaps: s(FILEMAPS_AT, FILEMAPS_LEN),
                shadow_room: s(TOTAL, self.len - TOTAL),
                dirty: core::slice::from_raw_parts_mut((b + DIRTY_AT) as *mut [u64; 2], MAX_DIRTY),
                tracked: super::track::Tracked::default(),
                chain: s(CHAIN_AT, CHAIN_LEN),
                base_state: {
                    let st = (b + BASE_STATE_AT) as *mut ProcessState;
                    st.write(ProcessState::ZERO);
                    &mut *st
                },
                base_meta: s(BASE_META_AT, BASE_META_LEN),
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no borrow of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.base as *mut _, self.len) };
    }
}

const _: () = assert!(core::mem::size_of::<ProcessState>() <= SMALL_AT);
const _: () = assert!(core::mem::size_of::<ProcessState>() <= MIB);
