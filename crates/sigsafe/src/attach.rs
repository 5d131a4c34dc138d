//! What `ckpt checkpoint` hands to libckpt's checkpoint code when it attaches to a process
//! that does not run libckpt (a static binary, a Go program, a job started without ckpt).
//!
//! `ckpt` stops the process's leader thread with ptrace, maps a copy of libckpt.so's code into
//! the process for the duration of the checkpoint, writes an [`AttachArgs`] block there, and
//! runs the entry named [`ENTRY`] on the leader thread with that block's address as its first
//! argument. The entry writes the image as libckpt's signal handler does (a forked writer with
//! a copy-on-write snapshot) and fills the block's results; `ckpt` then puts the leader's
//! registers back, removes everything it mapped, and detaches. This block is the only
//! agreement between the two: both sides read and write it as this structure, whose version
//! says which fields exist.

/// The block's first field, so that the entry refuses anything else.
pub const MAGIC: u64 = 0x4b43_5441_5441_4843; // "CHATATCK" read backwards: ckpt attach
/// Raised when a field is added (fields are only ever added at the end). Version 2 added the
/// tree fields (from `tree_root` on).
pub const VERSION: u32 = 2;
/// The entry's symbol in libckpt.so: `extern "C" fn(*mut AttachArgs) -> i64`.
pub const ENTRY: &core::ffi::CStr = c"ckpt_attached_checkpoint";
/// Room for the leader's XSAVE area (`PTRACE_GETREGSET` `NT_X86_XSTATE`); AMX needs ~11 KiB.
pub const XSTATE_MAX: usize = 16384;
/// Longest path.
pub const PATH_MAX: usize = 4096;
/// Most ranges `ckpt` mapped into the process.
pub const MAX_EXCLUDED: usize = 8;

/// `flags`: the last checkpoint: the process ends after it (`ckpt checkpoint --kill`); the
/// image is written before the entry returns, the process still stopped.
pub const FLAG_LAST: u32 = 1;
/// `flags`: write the image before returning (no forked writer).
pub const FLAG_SYNC: u32 = 2;
/// `flags`: compress region data (as `CKPT_COMPRESS`).
pub const FLAG_COMPRESS: u32 = 4;
/// `flags`: store libraries and program text instead of naming them (`CKPT_SELF_CONTAINED`).
pub const FLAG_SELF_CONTAINED: u32 = 8;

/// `flags`: the root of a tree `ckpt` attached to as a whole (the process and its descendants):
/// the entry stops the descendants with libckpt's tree protocol, publishing in `tree_ctl_fd`,
/// `tree_count` and `tree_pids` each process it needs to take part, whose entry `ckpt` then
/// starts with [`FLAG_TREE_MEMBER`].
pub const FLAG_TREE_ROOT: u32 = 16;
/// `flags`: a member of a tree whose root is `tree_root`: the entry joins the root's control
/// block (the root's descriptor `tree_ctl_fd`) and writes its part of the tree's image.
pub const FLAG_TREE_MEMBER: u32 = 32;
/// `flags`, with [`FLAG_LAST`]: hold the process instead of ending it (`ckpt checkpoint
/// --hold`): once the image is written, the entry stops the process (SIGSTOP, the tree's
/// members too) before it lets its other threads go, and `ckpt` leaves it stopped.
pub const FLAG_HOLD: u32 = 64;
/// Most processes a tree's root publishes (as many as one image holds).
pub const MAX_TREE: usize = ckpt_image::limits::MAX_TREE;

/// The block. Plain integers and byte arrays only, the same in both programs.
#[repr(C)]
pub struct AttachArgs {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// `FLAG_*`.
    pub flags: u32,
    /// Absolute path of the image, NUL-terminated.
    pub image: [u8; PATH_MAX],
    /// The key file images are authenticated with, NUL-terminated; empty for none.
    pub key_path: [u8; PATH_MAX],
    /// Older images to keep (`myckpt.1`, …).
    pub keep: u32,
    /// Bytes of `xstate` in use.
    pub xstate_len: u32,
    /// The leader's general registers as `PTRACE_GETREGSET` `NT_PRSTATUS` gives them (the
    /// kernel's `user_regs_struct`, indexed by `ckpt_image::frame::ureg`), at its ptrace stop:
    /// a system call it was in shows in `orig_rax`, its return value (maybe `-ERESTART…`) in
    /// `rax`.
    pub regs: [u64; 27],
    /// The leader's blocked signals (`PTRACE_GETSIGMASK`).
    pub sigmask: u64,
    /// The leader's rseq registration (`PTRACE_GET_RSEQ_CONFIGURATION`): area (0: none),
    /// length, signature, flags.
    pub rseq_abi: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    pub rseq_flags: u32,
    /// Ranges `[start, end)` that `ckpt` mapped into the process (the code, its stack, this
    /// block): never part of the image.
    pub nexcluded: u32,
    pub excluded: [[u64; 2]; MAX_EXCLUDED],
    /// The leader's XSAVE area (`PTRACE_GETREGSET` `NT_X86_XSTATE`).
    pub xstate: [u8; XSTATE_MAX],

    // Filled in by the entry.
    /// 0: the checkpoint was taken (and, with a forked writer, the writer started); otherwise
    /// it failed, and `message` says why.
    pub status: i64,
    /// The forked writer's PID (0 when the image was written before returning).
    pub writer_pid: u32,
    /// A descriptor, in the process, of the report page the writer reports its outcome in
    /// (libckpt's report page); `ckpt` opens it through `/proc/PID/fd` and closes it in the
    /// process before it detaches. -1: none.
    pub report_fd: i32,
    /// Why it failed, NUL-terminated (one line).
    pub message: [u8; 512],

    // Version 2: trees. Atomics (laid out as the plain integers they hold) because the root's
    // entry publishes them while it runs and `ckpt` reads them meanwhile (`process_vm_readv`).
    /// [`FLAG_TREE_MEMBER`]: the root's PID, set by `ckpt`.
    pub tree_root: u32,
    /// The root's descriptor of the tree's control block: published by the root's entry before
    /// any PID (-1 until then); for a member, set by `ckpt` from the root's.
    pub tree_ctl_fd: core::sync::atomic::AtomicI32,
    /// How many of `tree_pids` the root has published; each PID is stored before the count
    /// that covers it.
    pub tree_count: core::sync::atomic::AtomicU32,
    /// The processes the root waits for, in the order it found them: `ckpt` starts the entry
    /// of each (attaching first to one that appeared after it listed the tree).
    pub tree_pids: [core::sync::atomic::AtomicU32; MAX_TREE],
}
