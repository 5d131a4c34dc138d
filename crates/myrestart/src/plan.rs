//! The plan: what the restore step follows without further decisions, as data. `planner.rs`
//! makes it, before the point of no return (reading the image and checking everything that can
//! be checked); `restore.rs` carries it out. Its tables are sized from the image (`tables.rs`).
//!
//! # Restrictions
//! Used before and after the point of no return in myrestart: no allocation; the plan lives in
//! a static, so that it moves with the program (`hole.rs`).

use crate::acts::Acts;
use crate::arena::{Arena, Table};
use crate::fds::Parked;
use ckpt_image::region::{RegionKind, RegionRecord};
use ckpt_image::tree::TreeRecord;
use ckpt_image::{Image, ProcessState, ThreadState};
use core::cell::UnsafeCell;

pub use myrestart::TASK_END;

/// One of the kernel's special mappings: where ours is, where the image needs it.
#[derive(Clone, Copy, Default)]
pub struct Special {
    pub present: bool,
    pub own_start: usize,
    pub target_start: usize,
    pub len: usize,
}

/// A descriptor to install at restore: `src` (parked above every target number) becomes
/// `target`.
#[derive(Clone, Copy)]
pub struct FdSlot {
    pub target: i32,
    pub src: Parked,
    pub cloexec: bool,
}

/// A pipe made again: the inode it had, its two ends (parked), and whether the image had each.
#[derive(Clone, Copy)]
pub struct PipeSlot {
    pub ino: u64,
    pub rd: Option<Parked>,
    pub wr: Option<Parked>,
    pub has_rd: bool,
    pub has_wr: bool,
    /// Made for the whole tree before its processes (already holding its bytes; an end no
    /// process has was closed then).
    pub pooled: bool,
}

/// A pseudo-terminal pair made again (`pty.rs`): its number at the checkpoint, its two ends
/// (parked), its termios, whether its slave is locked, and the session it is the controlling
/// terminal of with that session's foreground group (0: none).
#[derive(Clone, Copy)]
pub struct PtySlot {
    pub index: u32,
    pub master: Parked,
    pub slave: Parked,
    pub termios: ckpt_image::pty::Termios,
    pub locked: bool,
    pub sid: u32,
    pub fg_pgrp: u32,
    /// The bytes queued at the checkpoint are back in it.
    pub filled: bool,
}

pub const NO_PTY: PtySlot = PtySlot {
    index: 0,
    master: Parked::NONE,
    slave: Parked::NONE,
    termios: ckpt_image::pty::Termios { iflag: 0, oflag: 0, cflag: 0, lflag: 0, line: 0, cc: [0; 19], ispeed: 0, ospeed: 0 },
    locked: false,
    sid: 0,
    fg_pgrp: 0,
    filled: false,
};

/// A process of a tree image: its record, and its headers (read and checked by the plan).
#[derive(Clone, Copy)]
pub struct TreePart {
    pub rec: TreeRecord,
    pub meta: usize,
    pub meta_len: usize,
}

/// Shared memory of a tree, made once for every process that maps it or has it open: without a
/// descriptor (anonymous `MAP_SHARED`, a deleted POSIX semaphore or shm file), by the device and
/// inode its mappings name; a memfd or deleted file that a process had open, by its inode
/// (`dev` is then `u64::MAX`).
#[derive(Clone, Copy)]
pub struct SharedSlot {
    pub dev: u64,
    pub ino: u64,
    pub fd: Parked,
    /// Whether it has its size already (a POSIX shared memory object: its recorded size).
    pub sized: bool,
}

/// Most processes a tree image may hold.
pub const MAX_TREE: usize = ckpt_image::tree::MAX_TREE;

/// A socket pair made again: its two ends (parked) and the inodes they stand for.
#[derive(Clone, Copy)]
pub struct PairSlot {
    pub ino: [u64; 2],
    pub fd: [Parked; 2],
    /// Made for the whole tree before its processes, each end's queued bytes already back.
    pub pooled: bool,
}

/// A regular file open in more than one process of a tree with one offset and the same flags:
/// an open file description they shared (since `fork`), opened once for all of them.
#[derive(Clone, Copy)]
pub struct SharedFile {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    pub flags: u32,
    pub fd: Parked,
    /// A log that was gone, made by the pool without a name: a process that had it open by
    /// itself (another description) opens it again through this one.
    pub gone: bool,
}

/// The open file behind region `region`, which is mapped from it: a file mapped `MAP_SHARED`,
/// or the memfd that stands for shared memory. With `fill`, the region's saved contents are
/// written into it after mapping.
#[derive(Clone, Copy)]
pub struct MapSlot {
    pub region: u32,
    pub fd: Parked,
    pub fill: bool,
    /// Mapped privately (a file the program never wrote), not shared.
    pub private: bool,
}

/// A log to cut back at the point of no return (see `files::plan_cut`).
#[derive(Clone, Copy)]
pub struct LogCut {
    /// The program's descriptor for it (1 or 2), for the message.
    pub target: i32,
    /// A descriptor of ours on the file (parked), opened to read and write, not appending.
    pub fd: Parked,
    pub dev: u64,
    pub ino: u64,
    /// Its length at the checkpoint.
    pub size: u64,
}

/// The pages myrestart's own resume code runs from (`resume_page.rs`): where they are, how
/// long, and where the leader and every other thread enter them.
#[derive(Clone, Copy)]
pub struct ResumePage {
    pub at: usize,
    pub len: usize,
    pub leader: usize,
    pub thread: usize,
}

/// A thread slot not yet filled.
pub const NO_THREAD: ThreadState = ThreadState {
    tid: 0, flags: 0, sigframe: 0, fs_base: 0, gs_base: 0, rseq_addr: 0, rseq_len: 0, rseq_sig: 0, tid_address: 0,
    robust_list: 0, robust_len: 0, comm: [0; 16], sigpending: 0,
};

/// Everything the restore step needs. Holds no pointers into myrestart itself (only into the
/// block, the target's address space, and the arena of its tables, which `hole` moves into the
/// block with it: see `tables`), so it stays valid when the program moves. Its tables are
/// sized from the image (`tables::fit`).
pub struct Plan {
    pub image_fd: Parked,
    /// The base images of an incremental image (`NT_CKPT_CHAIN`), in its order: run source
    /// k is `bases[k - 1]`.
    pub bases: [Parked; ckpt_image::chain::MAX_BASES],
    pub cwd_fd: Option<Parked>,
    pub exe_fd: Option<Parked>,
    pub meta: usize,
    pub meta_len: usize,
    pub file_len: u64,
    /// `[vvar, vvar_vclock, vdso]`.
    pub specials: [Special; 3],
    pub state: ProcessState,
    /// The thread-group leader (its TID is the PID): the thread myrestart's process becomes.
    pub thread: ThreadState,
    /// Every other thread, created by the leader at the end of the restore.
    pub others: Table<ThreadState>,
    pub nothers: usize,
    /// The process has its own PID again (a PID namespace of its own): threads get their TIDs.
    pub own_ids: bool,
    /// The image records System V IPC objects (`ipc::check`): the restart makes them in an
    /// IPC namespace of its own.
    pub ipc_wanted: bool,
    /// Init made them there (`ipc::make_all`), so segments are attached again (`ipc::attach`).
    pub own_ipc: bool,
    /// The block myrestart moves into, its stack top and the parking area for the specials.
    pub block: usize,
    pub block_len: usize,
    pub stack_top: usize,
    pub park: usize,
    /// Room for one compressed chunk read from the image.
    pub staging: usize,
    /// The resume page (`resume_page.rs`) the process resumes through, for an image of a
    /// process without libckpt; none: libckpt's trampolines in the restored memory.
    pub resume_page: Option<ResumePage>,
    pub image: Option<Image<'static>>,
    /// Every descriptor myrestart keeps open is at or above this number.
    pub fd_base: i32,
    pub fds: Table<FdSlot>,
    pub nfds: usize,
    /// stdin/stdout/stderr that were closed at checkpoint time.
    pub close_std: [bool; 3],
    pub file_maps: Table<MapSlot>,
    pub nfile_maps: usize,
    /// The pipes made again, by inode: their parked read and write ends.
    pub pipes: Table<PipeSlot>,
    pub npipes: usize,
    /// The pseudo-terminal pairs made again.
    pub ptys: Table<PtySlot>,
    pub nptys: usize,
    /// The socket pairs made again.
    pub pairs: Table<PairSlot>,
    pub npairs: usize,
    /// The processes of a tree image, the root first (none for a single process).
    pub tree: [TreePart; MAX_TREE],
    pub ntree: usize,
    /// Which of them this process becomes.
    pub member: usize,
    /// Open file descriptions shared between processes of the tree, opened once.
    pub files: Table<SharedFile>,
    pub nfiles: usize,
    /// Shared memory made once for the whole tree.
    pub shared: Table<SharedSlot>,
    pub nshared: usize,
    /// The tree's barriers (parked, see [`PLANNED`]), each a pair: say "ready" on the first
    /// descriptor, wait for "go" on the second.
    pub barrier: [Option<[Parked; 2]>; BARRIERS],
    /// The key the image must be authenticated with (`--key`).
    pub key: Option<ckpt_image::mac::Key>,
    /// Read all memory from the image instead of mapping the image file.
    pub eager: bool,
    /// Leave the restored process stopped (SIGSTOP) at its checkpointed state.
    pub stopped: bool,
    /// Say which PID the restored process has.
    pub announce: bool,
    /// Never cut a log: `--keep-logs`, or a last checkpoint (the program printed nothing past
    /// it, and what follows in its logs is others').
    pub keep_logs: bool,
    /// Each log of the image (a device and inode, see `files::plan_cut`) and the process (its
    /// index in `tree`) that cuts it: the first that has it, so that each log is cut once.
    pub log_owners: [(u64, u64, usize); 2 * MAX_TREE],
    pub nlog_owners: usize,
    /// This process's logs to cut at its point of no return.
    pub cuts: [LogCut; 2],
    pub ncuts: usize,
    /// myrestart's own stderr when it started, if a regular file (device, inode, length):
    /// what was written to it since is myrestart's own, and stays when that file is cut.
    pub own_stderr: Option<(u64, u64, u64)>,
    /// `--say`: lines for stderr once the logs are in order, escaped (control characters as
    /// `\xNN`), each with its newline.
    pub say: [u8; 4096],
    pub say_len: usize,
    /// A pipe's read end (parked) that reaches its end once the outer myrestart has said which
    /// process the program is (`--announce`, `--stopped`): logs are cut only then, so that its
    /// lines stay in one that is its stderr too. None without namespaces (nothing outside).
    pub said: Option<Parked>,
    /// A process restored alone in its namespaces: the pipe (parked) on which it tells the outer
    /// myrestart that it passed every check, so that the program is announced only then (its
    /// end closed unwritten: refused, and nothing is said to be restored).
    pub checked: Option<Parked>,
    /// Restored without namespaces: `--announce` and `--stopped` are said by this process itself,
    /// once every check has passed.
    pub say_when_checked: bool,
    /// `--status-fd`, parked: told "R" by the restoring root at its point of no
    /// return, and the program's wait status by the outer myrestart at the end.
    pub status: Option<Parked>,
    /// The changes outside the process the plan prepares, made once every check has passed.
    pub acts: Acts,
    /// The mapping that holds the tables above.
    pub arena: Arena,
}

pub const SPECIAL_KINDS: [RegionKind; 3] = [RegionKind::Vvar, RegionKind::VvarVclock, RegionKind::Vdso];

impl Plan {
    /// The one rule for how a region's stored bytes come back, for a region restored from the
    /// image (not from a file it was mapped from): whether it is mapped from the image file,
    /// copy-on-write (*mapped* restore: pages read when first touched), rather than made
    /// anonymous and read now (*eager*). Eager is for everything with `--eager` or an image
    /// read from a private copy (`--trust-image`), and always for a stack (`MAP_GROWSDOWN`, so
    /// that it can still grow), shared memory and compressed data; and for private anonymous
    /// memory when the program's `madvise` calls must keep the kernel's meaning
    /// ([`ProcessState::needs_plain_anonymous_memory`]): `MADV_DONTNEED` on a private mapping
    /// of the image would give back the image's bytes, where the program expects zeros, and
    /// no libckpt sees a call made past libc (the Go runtime's) to make up for it.
    pub fn maps_from_image(&self, rec: &RegionRecord) -> bool {
        let anonymous = !rec.is_file() && !rec.is_shared();
        let eager = self.eager
            || rec.kind == RegionKind::Stack
            || rec.is_shared()
            || rec.compressed()
            || (anonymous && self.state.needs_plain_anonymous_memory());
        rec.has_data() && !eager
    }
}

struct PlanCell(UnsafeCell<Plan>);
// SAFETY: myrestart is single-threaded and signals are blocked for its whole run; the one
// reference to the plan comes from `take`.
unsafe impl Sync for PlanCell {}

static PLAN: PlanCell = PlanCell(UnsafeCell::new(Plan {
    image_fd: Parked::NONE,
    bases: [Parked::NONE; ckpt_image::chain::MAX_BASES],
    cwd_fd: None,
    exe_fd: None,
    meta: 0,
    meta_len: 0,
    file_len: 0,
    specials: [Special { present: false, own_start: 0, target_start: 0, len: 0 }; 3],
    state: ProcessState::ZERO,
    thread: NO_THREAD,
    others: Table::EMPTY,
    nothers: 0,
    own_ids: false,
    ipc_wanted: false,
    own_ipc: false,
    block: 0,
    block_len: 0,
    stack_top: 0,
    park: 0,
    staging: 0,
    resume_page: None,
    image: None,
    fd_base: 3,
    fds: Table::EMPTY,
    nfds: 0,
    close_std: [false; 3],
    file_maps: Table::EMPTY,
    nfile_maps: 0,
    pipes: Table::EMPTY,
    npipes: 0,
    pairs: Table::EMPTY,
    ptys: Table::EMPTY,
    nptys: 0,
    files: Table::EMPTY,
    nfiles: 0,
    npairs: 0,
    tree: [TreePart { rec: TreeRecord { pid: 0, ppid: 0, pgid: 0, sid: 0, state: 0, wait_status: 0, base: 0, len: 0, meta_hash: 0 }, meta: 0, meta_len: 0 }; MAX_TREE],
    ntree: 0,
    member: 0,
    shared: Table::EMPTY,
    nshared: 0,
    barrier: [None; BARRIERS],
    key: None,
    eager: false,
    stopped: false,
    announce: false,
    keep_logs: false,
    log_owners: [(0, 0, 0); 2 * MAX_TREE],
    nlog_owners: 0,
    cuts: [LogCut { target: 0, fd: Parked::NONE, dev: 0, ino: 0, size: 0 }; 2],
    ncuts: 0,
    own_stderr: None,
    say: [0; 4096],
    say_len: 0,
    said: None,
    checked: None,
    say_when_checked: false,
    status: None,
    acts: Acts::NONE,
    arena: Arena::NONE,
}));

/// The plan, once: `entry` takes it and hands it down explicitly. It lives in a static (not on
/// the stack) so that it moves with the program when `hole` copies myrestart into its block.
///
/// # Safety
/// Call at most once per run (myrestart is single-threaded and runs with signals blocked), so
/// that the returned reference is the only one.
pub unsafe fn take() -> &'static mut Plan {
    // SAFETY: the caller calls this once, so no other reference to PLAN exists.
    unsafe { &mut *PLAN.0.get() }
}

/// Where the plan is in a copy of this program whose first byte is at `copy_base` (the
/// original's at `base`).
pub fn plan_in_copy(base: usize, copy_base: usize) -> usize {
    PLAN.0.get() as usize - base + copy_base
}

/// The barriers every live process of a tree reaches (`tree::barrier`), in order, and init lets
/// all pass at once:
/// each has made and checked its plan; each has made its changes outside that can be taken
/// back (`acts.rs`); each has replaced the dead socket files it replaces (its point of no
/// return follows); each is restored (the program runs next).
pub const PLANNED: usize = 0;
pub const CHANGED: usize = 1;
pub const REPLACED: usize = 2;
pub const RESTORED: usize = 3;
pub const BARRIERS: usize = 4;
