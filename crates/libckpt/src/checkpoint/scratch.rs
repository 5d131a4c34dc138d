//! The checkpoint's working memory: one anonymous mapping, made at the start of a checkpoint,
//! left out of the image, and removed at the end.
//!
//! Only the pages actually used cost anything (`MAP_NORESERVE`, touched on demand).

use ckpt_image::fds::FdRecord;
use ckpt_image::limits::{MAX_FDS, MAX_HEADERS, MAX_THREADS};
use super::slots::{RegionSlot, SLOTS};
use super::failure::Failure;
use super::seize::Seized;
use ckpt_image::ProcessState;
use core::ops::Range;
use rustix::mm::{MapFlags, ProtFlags};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// One part of the scratch area: `len` bytes from offset `at`.
#[derive(Clone, Copy)]
struct Span {
    at: usize,
    len: usize,
}

impl Span {
    /// The first part, at the start of the area.
    const fn first(len: usize) -> Span {
        Span { at: 0, len }
    }

    /// The next part, `len` bytes on the first page boundary after this one: parts follow one
    /// another, so no two overlap, and each starts page-aligned (enough for every element type
    /// below, checked at the end of this file).
    const fn then(self, len: usize) -> Span {
        Span { at: (self.at + self.len).next_multiple_of(PAGE), len }
    }

    const fn end(self) -> usize {
        self.at + self.len
    }
}

const fn room_for<T>(n: usize) -> usize {
    n * core::mem::size_of::<T>()
}

// The layout, computed: each part placed after the one before it. Only the pages actually
// touched cost anything, so generous parts are free.
/// A page no code may touch, under the writer's stack: running past the stack's end faults
/// instead of writing over the other parts.
const GUARD: Span = Span::first(PAGE);
/// The stack the image is written on (see `ownstack::on_stack`): apart from every stack of the
/// program's, so none of them changes while the image is read from them.
const WRITER_STACK: Span = GUARD.then(2 * MIB);
const STATE: Span = WRITER_STACK.then(room_for::<ProcessState>(1));
/// `/proc/self/auxv`, `/proc/self/status` and `stat`, the cmdline.
const AUXV: Span = STATE.then(8192);
const TEXT: Span = AUXV.then(16384);
const CMDLINE: Span = TEXT.then(8192);
const PATHBUF: Span = CMDLINE.then(8192);
const TMP_PATH: Span = PATHBUF.then(16384);
/// One entry per descriptor: the checkpoint refuses a program with more than one image holds.
const FD_LIST: Span = TMP_PATH.then(room_for::<i32>(MAX_FDS));
/// 512 pagemap entries: regions are handled 2 MiB at a time.
const PAGEMAP_ENTRIES: usize = 512;
const PAGEMAP: Span = FD_LIST.then(room_for::<u64>(PAGEMAP_ENTRIES));
const COPY: Span = PAGEMAP.then(MIB);
const OUT: Span = COPY.then(2 * MIB);
const MAPS: Span = OUT.then(26 * MIB);
const META: Span = MAPS.then(MAX_HEADERS);
/// The ranges of memory a child does not inherit, found once in smaps by the handler before
/// the rest is cut up (see `write::copy_len`), read when the copies are made.
const NOT_INHERITED: Span = META.then(64 * 1024);
const SLOTS_PART: Span = NOT_INHERITED.then(room_for::<RegionSlot>(SLOTS));
const TIDS: Span = SLOTS_PART.then(room_for::<u32>(MAX_THREADS));
/// The threads seized with ptrace (see `seize`), and the capturing child's buffers (a thread's
/// FPU state and its frame: twice the largest XSAVE area, with room to spare).
const SEIZED: Span = TIDS.then(room_for::<Seized>(MAX_THREADS));
const SEIZE_BUF: Span = SEIZED.then(128 * 1024);
const TIMERS: Span = SEIZE_BUF.then(MIB);
/// Most bytes in pipes and socket queues one checkpoint keeps.
const PIPE_DATA: Span = TIMERS.then(16 * MIB);
/// Pipes (by inode) whose bytes were copied, at most.
pub use ckpt_image::limits::MAX_PIPES_COPIED as MAX_PIPES;
const PIPES: Span = PIPE_DATA.then(room_for::<u64>(MAX_PIPES));
const EPOLL: Span = PIPES.then(MIB);
const SOCKETS: Span = EPOLL.then(2 * MIB);
const TIMERFDS: Span = SOCKETS.then(MIB);
const INOTIFY: Span = TIMERFDS.then(4 * MIB);
/// The `NT_CKPT_LOCKS` records: room for the most locks an image holds.
const LOCKS: Span = INOTIFY.then(ckpt_image::limits::MAX_LOCKS * ckpt_image::locks::LOCK_RECORD_SIZE);
/// The inode numbers of the files locked on the system (`/proc/locks`), sorted.
pub const MAX_LOCKED_FILES: usize = 65536;
const LOCKED: Span = LOCKS.then(room_for::<u64>(MAX_LOCKED_FILES));
const PTYS: Span = LOCKED.then(4 * MIB);
/// Most shared memory regions a checkpoint copies.
pub use ckpt_image::limits::MAX_SHARED_COPIED as MAX_SHADOWS;
const SHADOWS: Span = PTYS.then(room_for::<Shadow>(MAX_SHADOWS));
const SHARED: Span = SHADOWS.then(ckpt_image::shared::note_len(ckpt_image::shared::MAX_SHARED_RUNS));
const FILEMAPS: Span = SHARED.then(ckpt_image::filemaps::note_len(SLOTS));
const SHMFILES: Span = FILEMAPS.then(ckpt_image::shmfiles::note_len(SLOTS));
/// Ranges of written memory one checkpoint records (past that, the image is full): 16 MiB, touched
/// only as far as ranges are recorded. A program writing 16 MiB/s at random pages of a large
/// heap makes about one range a page, 4,096 a second; this is room for over four minutes of it
/// between two checkpoints (a heap of 8 GiB written at every other page).
pub const MAX_DIRTY: usize = 1 << 20;
const DIRTY: Span = SHMFILES.then(room_for::<[u64; 2]>(MAX_DIRTY));
/// Ranges of memory kept out of the writer's fork (see `unforked`).
pub const MAX_UNFORKED: usize = 256;
const UNFORKED: Span = DIRTY.then(room_for::<[u64; 2]>(MAX_UNFORKED));
/// The zero test of a full image's memory (see `unforked::zeros`): the runs of blocks to test
/// (start, end, index of the first block), and one bit a block for its outcome.
pub const MAX_ZERO_BLOCKS: usize = 1 << 15;
const ZERO_RUNS: Span = UNFORKED.then(room_for::<[u64; 3]>(MAX_UNFORKED));
const ZERO_BITS: Span = ZERO_RUNS.then(room_for::<u64>(MAX_ZERO_BLOCKS / 64));
const CHAIN: Span = ZERO_BITS.then(ckpt_image::chain::note_len(ckpt_image::chain::MAX_BASES));
const BASE_STATE: Span = CHAIN.then(room_for::<ProcessState>(1));
const BASE_META: Span = BASE_STATE.then(MAX_HEADERS);
/// The `NT_CKPT_FDS` records: room for the most descriptors an image holds, with paths of 112
/// bytes on average (the pages are touched only as records are written).
const IPC: Span = BASE_META.then(ckpt_image::limits::MAX_IPC_BYTES);
const FDS: Span = IPC.then(MAX_FDS * FdRecord::encoded_len(112));
/// The `NT_CKPT_WRITTEN` records (a descriptor's or a mapping's file each, paths of 112 bytes
/// on average) and the files they name, by device and inode (a table with open addressing,
/// a power of two at least twice as long as the files one image names).
const WRITTEN: Span = FDS.then((MAX_FDS + SLOTS) * ckpt_image::written::WrittenRecord::encoded_len(112));
const WRITTEN_SEEN: Span = WRITTEN.then(room_for::<[u64; 2]>((2 * (MAX_FDS + SLOTS)).next_power_of_two()));
/// The fixed parts end here; the copies of shared memory follow (as much as they need).
const TOTAL: usize = WRITTEN_SEEN.end().next_multiple_of(PAGE);

/// The ranges the writer was forked without (`Parts::unforked`), as the writer takes them:
/// those it leaves to the previous image, and those it stores as zeros (with `zeros`, which is
/// `Parts::unforked_zeros`, all of them: one checkpoint leaves out one kind; see `unforked`).
pub fn unforked_by_kind(ranges: &[[u64; 2]], zeros: bool) -> (&[[u64; 2]], &[[u64; 2]]) {
    if zeros { (&[], ranges) } else { (ranges, &[]) }
}

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
    /// The ranges of memory a child does not inherit (see `write::copy_len`).
    pub not_inherited: &'a mut [u8],
    /// What the writer keeps of each region.
    pub slots: &'a mut [RegionSlot],
    /// Room for the TIDs of the threads being stopped.
    pub tids: &'a mut [u32],
    /// The threads stopped with ptrace, and the capturing child's buffers.
    pub seized: &'a mut [Seized],
    pub seize_buf: &'a mut [u8],
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
    /// The `NT_CKPT_LOCKS` descriptor under construction.
    pub locks: &'a mut [u8],
    pub locks_len: usize,
    /// Room for the inode numbers of the files locked on the system (see `fds`).
    pub locked: &'a mut [u64],
    /// The `NT_CKPT_PTYS` descriptor under construction, and whether it has a master's record.
    pub ptys: &'a mut [u8],
    pub ptys_len: usize,
    pub ptys_master: bool,
    /// The `NT_CKPT_IPC` descriptor under construction.
    pub ipc: &'a mut [u8],
    pub ipc_len: usize,
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
    /// The `NT_CKPT_SHMFILES` descriptor under construction.
    pub shmfiles: &'a mut [u8],
    pub shadow_room: &'a mut [u8],
    /// Memory written since the previous checkpoint (see `track`), and what tracking learned.
    pub dirty: &'a mut [[u64; 2]],
    pub tracked: super::track::Tracked,
    /// Memory the writer is forked without, `nunforked` ranges (see `unforked`): memory the
    /// previous image holds, or with `unforked_zeros` memory that holds only zeros.
    pub unforked: &'a mut [[u64; 2]],
    pub nunforked: usize,
    pub unforked_zeros: bool,
    /// Room for the zero test (see `unforked::zeros`).
    pub zero_runs: &'a mut [[u64; 3]],
    pub zero_bits: &'a mut [u64],
    /// The `NT_CKPT_CHAIN` descriptor being built.
    pub chain: &'a mut [u8],
    /// The previous image's headers and state, read by the writer of an incremental image.
    pub base_state: &'a mut ProcessState,
    pub base_meta: &'a mut [u8],
    /// The `NT_CKPT_WRITTEN` descriptor under construction, and the files it names so far
    /// (all zeros: none; its length a power of two).
    pub written: &'a mut [u8],
    pub written_len: usize,
    pub written_seen: &'a mut [[u64; 2]],
    /// The `NT_CKPT_NODE` descriptor: this machine's host name and CPU features.
    pub node: [u8; ckpt_image::node::NODE_LEN],
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
        // SAFETY: four distinct parts of our own mapping, which outlives the borrow of `self`.
        unsafe { (self.bytes(MAPS), self.bytes(PATHBUF), self.bytes(Span { at: META.at, len: MIB }), self.bytes(NOT_INHERITED)) }
    }

    /// Part `span` as bytes.
    ///
    /// # Safety
    /// No other live borrow may cover `span`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes(&self, span: Span) -> &mut [u8] {
        // SAFETY: `span` lies inside the mapping (every part ends before TOTAL, checked below);
        // the caller vouches that nothing else borrows it.
        unsafe { core::slice::from_raw_parts_mut((self.base + span.at) as *mut u8, span.len) }
    }

    /// Part `span` as a table of `T`s, as many as fit.
    ///
    /// # Safety
    /// As for [`Scratch::bytes`]; all-zero bytes (or what the part already holds) must be a
    /// valid `T`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn table<T>(&self, span: Span) -> &mut [T] {
        // SAFETY: as for `bytes`; every part is page-aligned, enough for any T used here.
        unsafe { core::slice::from_raw_parts_mut((self.base + span.at) as *mut T, span.len / core::mem::size_of::<T>()) }
    }

    /// The process state at the start of part `span`, set to all zeros.
    ///
    /// # Safety
    /// As for [`Scratch::bytes`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn state(&self, span: Span) -> &mut ProcessState {
        let st = (self.base + span.at) as *mut ProcessState;
        // SAFETY: the part is page-aligned and sized for one ProcessState (see the layout); the
        // value is written before the reference is made.
        unsafe {
            st.write(ProcessState::ZERO);
            &mut *st
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

    /// The parts, and the stack the image is written on: once the area has its final size
    /// (`grow` moves it, and could not once the page under the stack is made inaccessible,
    /// here). Both borrow the area, so it outlives them and none of this is done twice.
    pub fn parts_and_stack(&mut self) -> (Parts<'_>, WriterStack<'_>) {
        // SAFETY: the guard page is ours, and nothing is ever stored in it. Should this fail,
        // the stack only goes without its guard.
        let _ = unsafe { rustix::mm::mprotect((self.base + GUARD.at) as *mut _, GUARD.len, rustix::mm::MprotectFlags::empty()) };
        let stack = WriterStack { top: self.base + WRITER_STACK.end(), _area: core::marker::PhantomData };
        (self.parts(), stack)
    }

    pub fn parts(&mut self) -> Parts<'_> {
        // SAFETY: every call below names a different part of the layout, and parts never
        // overlap (each is placed after the one before it), so the borrows are disjoint; they
        // live as long as the borrow of `self`. The mapping is fresh anonymous memory, all
        // zeros, a valid value of every element type (u8, i32, u32, u64, `Shadow` (plain
        // integers), `Seized` (plain integers) and `RegionSlot`, whose all-zero value is
        // documented as valid); the
        // not-inherited ranges hold what `copy_len` wrote, plain bytes.
        unsafe {
            Parts {
                state: self.state(STATE),
                auxv: self.bytes(AUXV),
                text: self.bytes(TEXT),
                cmdline: self.bytes(CMDLINE),
                tmp_path: self.bytes(TMP_PATH),
                pathbuf: self.bytes(PATHBUF),
                fd_list: self.table(FD_LIST),
                copybuf: self.bytes(COPY),
                pm_buf: self.table(PAGEMAP),
                outbuf: self.bytes(OUT),
                fds: self.bytes(FDS),
                fds_len: 0,
                auxv_len: 0,
                cmdline_len: 0,
                maps: self.bytes(MAPS),
                maps_len: 0,
                meta: self.bytes(META),
                not_inherited: self.bytes(NOT_INHERITED),
                slots: self.table(SLOTS_PART),
                tids: self.table(TIDS),
                seized: self.table(SEIZED),
                seize_buf: self.bytes(SEIZE_BUF),
                timers: self.bytes(TIMERS),
                ipc: self.bytes(IPC),
                ipc_len: 0,
                epoll: self.bytes(EPOLL),
                epoll_len: 0,
                sockets: self.bytes(SOCKETS),
                sockets_len: 0,
                timerfds: self.bytes(TIMERFDS),
                timerfds_len: 0,
                inotify: self.bytes(INOTIFY),
                inotify_len: 0,
                locks: self.bytes(LOCKS),
                locks_len: 0,
                locked: self.table(LOCKED),
                ptys: self.bytes(PTYS),
                ptys_len: 0,
                ptys_master: false,
                pipe_data: self.bytes(PIPE_DATA),
                pipes: self.table(PIPES),
                timers_len: 0,
                shadows: self.table(SHADOWS),
                nshadows: 0,
                shared: self.bytes(SHARED),
                filemaps: self.bytes(FILEMAPS),
                shmfiles: self.bytes(SHMFILES),
                shadow_room: self.bytes(Span { at: TOTAL, len: self.len - TOTAL }),
                dirty: self.table(DIRTY),
                tracked: super::track::Tracked::default(),
                unforked: self.table(UNFORKED),
                nunforked: 0,
                unforked_zeros: false,
                zero_runs: self.table(ZERO_RUNS),
                zero_bits: self.table(ZERO_BITS),
                chain: self.bytes(CHAIN),
                base_state: self.state(BASE_STATE),
                base_meta: self.bytes(BASE_META),
                written: self.bytes(WRITTEN),
                written_len: 0,
                written_seen: self.table(WRITTEN_SEEN),
                node: [0; ckpt_image::node::NODE_LEN],
            }
        }
    }
}

/// The stack the image is written on: a part of the scratch area (which the image leaves out),
/// made only with the area's parts (`Scratch::parts_and_stack`), none of which covers it.
pub struct WriterStack<'a> {
    top: usize,
    _area: core::marker::PhantomData<&'a mut Scratch>,
}

impl WriterStack<'_> {
    /// Runs `go` on this stack (see `ownstack::on_stack`) and returns what it returned (`None`
    /// only if it never came back, as a forked writer does not).
    pub fn run<R>(&mut self, go: impl FnOnce() -> R) -> Option<R> {
        let mut go = Some(go);
        let mut out = None;
        let mut call = || {
            if let Some(go) = go.take() {
                out = Some(go());
            }
        };
        // SAFETY: the stack part of the scratch area is writable and 2 MiB deep (a checkpoint's
        // writer uses some 40 KiB of it); the area stays mapped as long as this borrows it, and
        // nothing else uses that part: no part of `Parts` covers it, and this one `WriterStack`
        // of the area is borrowed mutably while `go` runs.
        unsafe { super::ownstack::on_stack(self.top, &mut call) };
        out
    }

    /// Runs `f(arg)` on this stack beside the caller, in a process that shares its memory (see
    /// `sys::start_beside`), until the [`Beside`] returned is dropped, which waits for it to
    /// end. `None` if it cannot be started.
    pub fn start_beside<'s, T: Sync>(&'s mut self, f: extern "C" fn(&T) -> i32, arg: &'s T) -> Option<Beside<'s>> {
        // SAFETY: the stack is as `run` says, and 16-byte aligned at its top (the end of a
        // page-aligned part); nothing else uses it while the helper runs: `Beside` borrows it
        // (and `arg`) until the helper is reaped. `f` takes `&T` as a pointer, the very
        // argument passed; it is libckpt's own code, which uses no thread-local storage.
        let pid = unsafe {
            let f: extern "C" fn(usize) -> i32 = core::mem::transmute(f);
            ckpt_sigsafe::sys::start_beside(self.top, f, arg as *const T as usize).ok()?
        };
        Some(Beside { pid, _borrows: core::marker::PhantomData })
    }
}

/// A process running on the writer's stack beside the handler (see
/// [`WriterStack::start_beside`]); dropped, it is waited for and reaped.
pub struct Beside<'s> {
    pid: u32,
    _borrows: core::marker::PhantomData<&'s mut ()>,
}

impl Beside<'_> {
    /// Waits for it to end; whether it ended normally with status 0.
    pub fn wait(self) -> bool {
        let status = ckpt_sigsafe::sys::reap_quiet_child(self.pid);
        core::mem::forget(self);
        status == Some(0)
    }
}

impl Drop for Beside<'_> {
    fn drop(&mut self) {
        ckpt_sigsafe::sys::reap_quiet_child(self.pid);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no borrow of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.base as *mut _, self.len) };
    }
}

// Every element type fits the page alignment each part starts at.
const _: () = assert!(core::mem::align_of::<ProcessState>() <= PAGE && core::mem::align_of::<RegionSlot>() <= PAGE);
const _: () = assert!(core::mem::align_of::<Shadow>() <= PAGE && core::mem::align_of::<[u64; 2]>() <= PAGE);
const _: () = assert!(core::mem::align_of::<Seized>() <= PAGE);
// The smaps buffer `prep_buffers` lends out of the headers' part fits in it.
const _: () = assert!(META.len >= MIB);
