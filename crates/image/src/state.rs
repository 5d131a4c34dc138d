//! `NT_CKPT_STATE`: the process state that is not memory and not registers.

use crate::bytes::{Reader, Writer};
use crate::fileid::{FileId, FILE_ID_SIZE};
use crate::{ImageError, FORMAT_VERSION, OLDEST_FORMAT, STATE_MAGIC};

/// Signals a process that is running (a checkpoint handler) never has pending, as a mask:
/// SIGKILL and SIGSTOP take effect at once.
pub const NEVER_PENDING: u64 = 1 << (9 - 1) | 1 << (19 - 1);

/// Offset of `meta_len` inside the state descriptor.
pub const META_LEN_OFFSET: usize = 16;
/// Offset of `meta_hash` inside the state descriptor (fixed across versions).
pub const META_HASH_OFFSET: usize = 24;
/// Longest path the state records (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Signals 1..=64 have a disposition each.
pub const NSIG: usize = 64;
/// Resource limits kept (`RLIM_NLIMITS`).
pub const RLIMITS: usize = 16;
/// A `flags` bit: the image is a *last* checkpoint, after which the program ended at once (it
/// printed nothing past it, so restart never cuts its logs: what follows in them is others').
pub const FLAG_LAST_CHECKPOINT: u32 = 1;
/// A `flags` bit: the process had no libckpt (`ckpt checkpoint` attached to it from outside):
/// the image names no resume trampolines, so myrestart resumes it with code of its own, and
/// restores its private anonymous memory eagerly (see [`FLAG_RAW_MADVISE`]).
pub const FLAG_ATTACHED: u32 = 2;
/// A `flags` bit: the program may call `madvise` past libc (the Go runtime does), where no
/// interposition sees it: its private anonymous memory must keep the kernel's semantics after a
/// restart (`MADV_DONTNEED` gives zeros), so it is restored eagerly, never mapped from the image.
pub const FLAG_RAW_MADVISE: u32 = 4;
/// Every `flags` bit a reader knows; any other is refused.
const KNOWN_FLAGS: u32 = FLAG_LAST_CHECKPOINT | FLAG_ATTACHED | FLAG_RAW_MADVISE;


/// The kernel's bookkeeping for the address space (`PR_SET_MM_MAP` fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

impl MmFields {
    pub fn as_array(&self) -> [u64; 11] {
        [
            self.start_code, self.end_code, self.start_data, self.end_data, self.start_brk, self.brk,
            self.start_stack, self.arg_start, self.arg_end, self.env_start, self.env_end,
        ]
    }
    pub fn from_array(a: [u64; 11]) -> Self {
        MmFields {
            start_code: a[0], end_code: a[1], start_data: a[2], end_data: a[3], start_brk: a[4], brk: a[5],
            start_stack: a[6], arg_start: a[7], arg_end: a[8], env_start: a[9], env_end: a[10],
        }
    }
}

/// One interval timer, as `struct itimerval` (seconds, microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Itimer {
    pub interval_sec: i64,
    pub interval_usec: i64,
    pub value_sec: i64,
    pub value_usec: i64,
}

impl Itimer {
    pub fn is_armed(&self) -> bool {
        self.value_sec != 0 || self.value_usec != 0
    }
}

/// A signal disposition exactly as the kernel stores it (`struct kernel_sigaction` on x86-64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// A path of at most [`PATH_MAX`] bytes, kept without allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct Path {
    pub len: u32,
    pub bytes: [u8; PATH_MAX],
}

impl Path {
    pub const EMPTY: Path = Path { len: 0, bytes: [0; PATH_MAX] };

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(PATH_MAX)]
    }

    /// Copies `s`; returns false (and stores nothing) if it is too long.
    pub fn set(&mut self, s: &[u8]) -> bool {
        if s.len() >= PATH_MAX {
            self.len = 0;
            return false;
        }
        self.bytes[..s.len()].copy_from_slice(s);
        self.bytes[s.len()] = 0;
        self.len = s.len() as u32;
        true
    }

    /// The path with its terminating NUL, for system calls.
    pub fn with_nul(&self) -> &[u8] {
        &self.bytes[..(self.len as usize + 1).min(PATH_MAX)]
    }
}

impl core::fmt::Debug for Path {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", core::str::from_utf8(self.as_bytes()).unwrap_or("<non-utf8>"))
    }
}

/// Everything in `NT_CKPT_STATE`: the process-wide state (each thread's own is in its
/// `NT_CKPT_THREAD` note, [`crate::thread::ThreadState`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    pub version: u32,
    /// [`FLAG_LAST_CHECKPOINT`], [`FLAG_ATTACHED`], [`FLAG_RAW_MADVISE`], or 0.
    pub flags: u32,
    /// Bytes at the start of the file covered by `meta_hash`.
    pub meta_len: u64,
    pub meta_hash: u64,
    pub created_unix_ns: u64,
    /// How long the checkpoint took to write, in nanoseconds (filled in by the writer).
    pub write_ns: u64,
    pub pid: u32,
    /// The process's parent at the checkpoint.
    pub ppid: u32,
    /// Address of libckpt's resume trampoline in the checkpointed process (for the leader).
    pub resume_trampoline: u64,
    /// Address of libckpt's trampoline for every other thread.
    pub thread_trampoline: u64,
    /// XSAVE feature mask of the saved FPU state, and its size.
    pub xfeatures: u64,
    pub xstate_size: u32,
    pub umask: u32,
    pub mm: MmFields,
    pub itimers: [Itimer; 3],
    pub sigactions: [SigAction; NSIG],
    pub cwd: Path,
    pub exe: Path,
    /// The checkpoint signal the library listens on.
    pub ckpt_signal: u32,
    /// Milliseconds between periodic checkpoints (0: none). The timer itself is one of the
    /// process's POSIX timers, restored with them.
    pub interval_ms: u32,
    /// `uname` release and machine of the kernel the image was taken on, NUL-padded.
    pub kernel: [u8; 72],
    /// Signals pending for the whole process (bit `n - 1` for signal `n`), sent again at restart.
    pub shared_pending: u64,
    /// Every resource limit, `[soft, hard]` (`u64::MAX`: unlimited), `RLIMIT_CPU` first.
    pub rlimits: [[u64; 2]; RLIMITS],
    /// What `cwd` and `exe` were (owner and birth time too), so that a restart can tell them
    /// from files put at their paths since ([`crate::fileid`]).
    pub cwd_id: FileId,
    pub exe_id: FileId,
}

impl ProcessState {
    pub const ZERO: ProcessState = ProcessState {
        version: FORMAT_VERSION,
        flags: 0,
        meta_len: 0,
        meta_hash: 0,
        created_unix_ns: 0,
        write_ns: 0,
        pid: 0,
        ppid: 0,
        resume_trampoline: 0,
        thread_trampoline: 0,
        xfeatures: 0,
        xstate_size: 0,
        umask: 0,
        mm: MmFields {
            start_code: 0, end_code: 0, start_data: 0, end_data: 0, start_brk: 0, brk: 0,
            start_stack: 0, arg_start: 0, arg_end: 0, env_start: 0, env_end: 0,
        },
        itimers: [Itimer { interval_sec: 0, interval_usec: 0, value_sec: 0, value_usec: 0 }; 3],
        sigactions: [SigAction { handler: 0, flags: 0, restorer: 0, mask: 0 }; NSIG],
        cwd: Path::EMPTY,
        exe: Path::EMPTY,
        ckpt_signal: 0,
        interval_ms: 0,
        kernel: [0; 72],
        shared_pending: 0,
        rlimits: [[u64::MAX; 2]; RLIMITS],
        cwd_id: FileId::UNKNOWN,
        exe_id: FileId::UNKNOWN,
    };

    /// Size of the encoded descriptor.
    pub const ENCODED_LEN: usize =
        8 + 4 + 4 + 8 * 4 + 4 + 4 + 8 + 8 + 8 + 4 + 4 + 8 * 11 + 32 * 3 + 32 * NSIG + 2 * (4 + PATH_MAX) + 4 + 4 + 72 + 8 + 16 * RLIMITS + 2 * FILE_ID_SIZE;

    /// Size of the descriptor in a version 8 image: no file identities at its end.
    pub const ENCODED_LEN_V8: usize = Self::ENCODED_LEN - 2 * FILE_ID_SIZE;

    /// Whether the program ended right after this checkpoint ([`FLAG_LAST_CHECKPOINT`]).
    pub fn is_last_checkpoint(&self) -> bool {
        self.flags & FLAG_LAST_CHECKPOINT != 0
    }

    /// Whether the process had no libckpt ([`FLAG_ATTACHED`]): myrestart resumes it with code
    /// of its own.
    pub fn is_attached(&self) -> bool {
        self.flags & FLAG_ATTACHED != 0
    }

    /// Whether the program's private anonymous memory must keep the kernel's `madvise`
    /// semantics after a restart ([`FLAG_RAW_MADVISE`], or [`FLAG_ATTACHED`]: no libckpt saw its
    /// calls): restored eagerly, never mapped from the image.
    pub fn needs_plain_anonymous_memory(&self) -> bool {
        self.flags & (FLAG_ATTACHED | FLAG_RAW_MADVISE) != 0
    }

    pub fn kernel_str(&self) -> &str {
        let n = self.kernel.iter().position(|&b| b == 0).unwrap_or(self.kernel.len());
        core::str::from_utf8(&self.kernel[..n]).unwrap_or("?")
    }

    pub fn write(&self, w: &mut Writer) {
        w.bytes(&STATE_MAGIC);
        w.u32(self.version);
        w.u32(self.flags);
        w.u64(self.meta_len); // at META_LEN_OFFSET
        w.u64(self.meta_hash); // at META_HASH_OFFSET
        w.u64(self.created_unix_ns);
        w.u64(self.write_ns);
        w.u32(self.pid);
        w.u32(self.ppid);
        w.u64(self.resume_trampoline);
        w.u64(self.thread_trampoline);
        w.u64(self.xfeatures);
        w.u32(self.xstate_size);
        w.u32(self.umask);
        for v in self.mm.as_array() {
            w.u64(v);
        }
        for t in &self.itimers {
            w.u64(t.interval_sec as u64);
            w.u64(t.interval_usec as u64);
            w.u64(t.value_sec as u64);
            w.u64(t.value_usec as u64);
        }
        for a in &self.sigactions {
            w.u64(a.handler);
            w.u64(a.flags);
            w.u64(a.restorer);
            w.u64(a.mask);
        }
        for p in [&self.cwd, &self.exe] {
            w.u32(p.len);
            w.bytes(&p.bytes);
        }
        w.u32(self.ckpt_signal);
        w.u32(self.interval_ms);
        w.bytes(&self.kernel);
        w.u64(self.shared_pending);
        for l in &self.rlimits {
            w.u64(l[0]);
            w.u64(l[1]);
        }
        // Its version's layout: a version 8 state (rewritten by a test, say) has no identities.
        if self.version >= crate::FILE_IDS_SINCE {
            self.cwd_id.write(w);
            self.exe_id.write(w);
        }
    }

    /// Decodes the descriptor into `out` (large: the caller chooses where it lives).
    /// Checks magic and version before anything else.
    pub fn read_into(desc: &[u8], out: &mut ProcessState) -> Result<(), ImageError> {
        let mut r = Reader::new(desc);
        if r.array::<8>().map_err(|_| ImageError::Foreign)? != STATE_MAGIC {
            return Err(ImageError::Foreign);
        }
        let version = r.u32()?;
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&version) {
            return Err(ImageError::UnsupportedVersion(version));
        }
        let ids = version >= crate::FILE_IDS_SINCE;
        if desc.len() != if ids { Self::ENCODED_LEN } else { Self::ENCODED_LEN_V8 } {
            return Err(ImageError::Malformed("state note has the wrong size"));
        }
        out.version = version;
        out.flags = r.u32()?;
        if out.flags & !KNOWN_FLAGS != 0 {
            return Err(ImageError::Malformed("unknown process flags"));
        }
        out.meta_len = r.u64()?;
        out.meta_hash = r.u64()?;
        out.created_unix_ns = r.u64()?;
        out.write_ns = r.u64()?;
        out.pid = r.u32()?;
        out.ppid = r.u32()?;
        out.resume_trampoline = r.u64()?;
        out.thread_trampoline = r.u64()?;
        out.xfeatures = r.u64()?;
        out.xstate_size = r.u32()?;
        out.umask = r.u32()?;
        let mut mm = [0u64; 11];
        for v in &mut mm {
            *v = r.u64()?;
        }
        out.mm = MmFields::from_array(mm);
        for t in &mut out.itimers {
            t.interval_sec = r.u64()? as i64;
            t.interval_usec = r.u64()? as i64;
            t.value_sec = r.u64()? as i64;
            t.value_usec = r.u64()? as i64;
        }
        for a in &mut out.sigactions {
            a.handler = r.u64()?;
            a.flags = r.u64()?;
            a.restorer = r.u64()?;
            a.mask = r.u64()?;
        }
        for p in [&mut out.cwd, &mut out.exe] {
            p.len = r.u32()?;
            p.bytes = r.array()?;
            if p.len as usize >= PATH_MAX || p.bytes[p.len as usize] != 0 {
                return Err(ImageError::Malformed("path in state note is not terminated"));
            }
        }
        out.ckpt_signal = r.u32()?;
        out.interval_ms = r.u32()?;
        out.kernel = r.array()?;
        out.shared_pending = r.u64()?;
        if out.shared_pending & NEVER_PENDING != 0 {
            return Err(ImageError::Malformed("SIGKILL or SIGSTOP pending"));
        }
        for l in &mut out.rlimits {
            *l = [r.u64()?, r.u64()?];
            if l[0] > l[1] {
                return Err(ImageError::Malformed("a soft resource limit above its hard limit"));
            }
        }
        (out.cwd_id, out.exe_id) = if ids { (FileId::read(&mut r)?, FileId::read(&mut r)?) } else { (FileId::UNKNOWN, FileId::UNKNOWN) };
        if !is_id(out.pid) {
            return Err(ImageError::Malformed("the process ID is 0 or above 2^31 - 1"));
        }
        Ok(())
    }
}

/// Whether `id` can be a process or thread ID: a positive `pid_t`. (Whether it is below the
/// restarting system's `pid_max`, and unique, is for the restart to check.)
pub fn is_id(id: u32) -> bool {
    (1..=i32::MAX as u32).contains(&id)
}
