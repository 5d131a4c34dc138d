//! The checkpoint's working memory: one anonymous mapping, made at the start of a checkpoint,
//! left out of the image, and removed at the end.
//!
//! Only the pages actually used cost anything (`MAP_NORESERVE`, touched on demand).

use super::write::{RegionSlot, SLOTS};
use super::Failure;
use ckpt_image::{ProcessState, ThreadState};
use core::ops::Range;
use rustix::mm::{MapFlags, ProtFlags};

const MIB: usize = 1 << 20;
const STATE_AT: usize = 0;
const SMALL_AT: usize = 64 * 1024;
const FDS_AT: usize = MIB;
const FDS_LEN: usize = MIB;
const FD_LIST_AT: usize = 2 * MIB;
const FD_LIST_LEN: usize = 65536;
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
const META_LEN: usize = 64 * MIB;
const SLOTS_AT: usize = META_AT + META_LEN;
const SLOTS_LEN: usize = SLOTS * core::mem::size_of::<RegionSlot>();
const TOTAL: usize = SLOTS_AT + SLOTS_LEN.next_multiple_of(MIB);

pub struct Scratch {
    base: usize,
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
    pub maps: &'a mut [u8],
    pub meta: &'a mut [u8],
    /// What the writer keeps of each region.
    pub slots: &'a mut [RegionSlot],
    /// The state of the thread that took the signal (the only one, in this version).
    pub thread: ThreadState,
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
        Ok(Scratch { base: p as usize })
    }

    /// The address range to leave out of the image.
    pub fn range(&self) -> Range<usize> {
        self.base..self.base + TOTAL
    }

    pub fn parts(&mut self) -> Parts<'_> {
        let b = self.base;
        // SAFETY: each slice is a distinct part of our own live read-write mapping, which
        // outlives the borrow of `self`; the state part is page-aligned, large enough and
        // initialised by the write before the reference is made. The rest is fresh anonymous
        // memory, all zeros, which is a valid value of every element type (u8, i32, u64 and
        // `RegionSlot`, whose all-zero value is documented as valid).
        unsafe {
            let state = (b + STATE_AT) as *mut ProcessState;
            state.write(ProcessState::ZERO);
            let s = |at: usize, len: usize| core::slice::from_raw_parts_mut((b + at) as *mut u8, len);
            Parts {
                state: &mut *state,
                auxv: s(SMALL_AT, 8192),
                text: s(SMALL_AT + 8192, 16384),
                cmdline: s(SMALL_AT + 24576, 8192),
                tmp_path: s(SMALL_AT + 32768, 8192),
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
                meta: s(META_AT, META_LEN),
                slots: core::slice::from_raw_parts_mut((b + SLOTS_AT) as *mut RegionSlot, SLOTS),
                thread: ThreadState::default(),
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no borrow of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.base as *mut _, TOTAL) };
    }
}

const _: () = assert!(core::mem::size_of::<ProcessState>() <= SMALL_AT);
