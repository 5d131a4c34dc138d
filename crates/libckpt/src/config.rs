//! Settings fixed once by the constructor and only read afterwards (by the signal handler).

use core::cell::UnsafeCell;
use ckpt_image::state::PATH_MAX;

/// Where images go and what the handler needs to know about glibc.
pub struct Config {
    /// Absolute path of the image, NUL-terminated.
    pub image: [u8; PATH_MAX],
    pub image_len: usize,
    /// glibc's `__rseq_offset` and `__rseq_size` (size 0 when rseq is not in use).
    pub rseq_offset: isize,
    pub rseq_size: u32,
    /// Write the image inside the signal handler instead of in a forked writer process.
    pub sync: bool,
    /// Compress region data with LZ4.
    pub compress: bool,
    /// `CKPT_SELF_CONTAINED=1`: store the bytes of libraries and program text too, instead of
    /// naming their files.
    pub self_contained: bool,
    /// The checkpoint signal.
    pub signal: i32,
    /// Milliseconds between periodic checkpoints (0: only on the signal).
    pub interval_ms: u32,
    /// How many older images to keep (`myckpt.1`, `myckpt.2`, …).
    pub keep: u32,
    /// `CKPT_INCREMENTAL`: most images in a chain (a full image and the incremental ones built
    /// on it); 0 or 1: every image is full.
    pub incremental: u32,
    /// The key file images are authenticated with (`CKPT_KEY`), NUL-terminated; empty for none.
    /// The key itself is read by each writer and never kept in the program's memory, so it is
    /// never in an image.
    pub key_path: [u8; PATH_MAX],
    pub key_path_len: usize,
    /// `CKPT_KEY` named a file that could not be read: no image is written without its key.
    pub key_unreadable: bool,
    /// The process does not run libckpt: `ckpt` mapped this copy of it there to take one
    /// checkpoint (`crate::attached`), and set these settings from its arguments instead of
    /// the constructor, which never ran. No signal, handler, interposed function or startup
    /// state of libckpt's exists in the process.
    pub attached: bool,
    /// The program calls `madvise` past libc (a Go program): its images say so
    /// (`ckpt_image::state::FLAG_RAW_MADVISE`).
    pub raw_madvise: bool,
    /// `CKPT_TIMES=1`: each image's writer says on stderr how long each step of the checkpoint
    /// took (`crate::checkpoint::phases`).
    pub times: bool,
}

impl Config {
    /// The key file's path, if images are authenticated.
    pub fn key_file(&self) -> Option<&core::ffi::CStr> {
        (self.key_path_len > 0).then(|| core::ffi::CStr::from_bytes_with_nul(&self.key_path[..self.key_path_len + 1]).ok()).flatten()
    }
}

impl Config {
    pub fn image_path(&self) -> &[u8] {
        &self.image[..self.image_len]
    }
}

struct Slot(UnsafeCell<Config>);

// SAFETY: written only by the constructor, before the signal handler is installed and before
// any other thread can exist; read-only afterwards.
unsafe impl Sync for Slot {}

static CONFIG: Slot = Slot(UnsafeCell::new(Config { image: [0; PATH_MAX], image_len: 0, rseq_offset: 0, rseq_size: 0, sync: false, compress: false, self_contained: false, signal: 12, interval_ms: 0, keep: 0, incremental: 8, key_path: [0; PATH_MAX], key_path_len: 0, key_unreadable: false, attached: false, raw_madvise: false, times: false }));

/// The settings. Valid once [`crate::init`] has run.
pub fn get() -> &'static Config {
    // SAFETY: see `Slot`: after the constructor nothing writes CONFIG.
    unsafe { &*CONFIG.0.get() }
}

/// The settings of an attached checkpoint (`crate::attached`), which takes the constructor's
/// place: the image path and key file (without their NULs), how many older images to keep, and
/// `ckpt_sigsafe::attach::FLAG_*`. Every image is full (the changes since an earlier one are
/// tracked by libckpt only where it runs all along), and no signal is ckpt's. Returns `false`
/// if a path is too long.
///
/// # Safety
/// Call only before the checkpoint starts, in a process where no other code of this copy of
/// libckpt runs (the attached entry, on the one thread that runs it).
pub unsafe fn set_attached(image: &[u8], key: &[u8], keep: u32, flags: u32) -> bool {
    use ckpt_sigsafe::attach::{FLAG_COMPRESS, FLAG_SELF_CONTAINED, FLAG_SYNC};
    // SAFETY: as the caller promises, nothing else of libckpt reads or writes CONFIG now.
    let cfg = unsafe { &mut *CONFIG.0.get() };
    if image.is_empty() || image.len() >= PATH_MAX || key.len() >= PATH_MAX {
        return false;
    }
    cfg.image[..image.len()].copy_from_slice(image);
    cfg.image[image.len()] = 0;
    cfg.image_len = image.len();
    cfg.key_path[..key.len()].copy_from_slice(key);
    cfg.key_path[key.len()] = 0;
    cfg.key_path_len = key.len();
    cfg.key_unreadable = false;
    cfg.keep = keep;
    cfg.sync = flags & FLAG_SYNC != 0;
    cfg.compress = flags & FLAG_COMPRESS != 0;
    cfg.self_contained = flags & FLAG_SELF_CONTAINED != 0;
    cfg.incremental = 0;
    cfg.interval_ms = 0;
    cfg.signal = 0;
    cfg.rseq_offset = 0;
    cfg.rseq_size = 0;
    cfg.attached = true;
    cfg.raw_madvise = crate::golang::is_go();
    true
}

/// Mutable access for the constructor only.
///
/// # Safety
/// Call only from the constructor, before the handler is installed.
pub unsafe fn get_mut() -> &'static mut Config {
    // SAFETY: the caller is the single-threaded constructor.
    unsafe { &mut *CONFIG.0.get() }
}

/// Set in a process that descends from the one that started with libckpt (forked from it, or
/// run by it with the library inherited through `LD_PRELOAD`): its images go to
/// `<image>-<PID>`, never over its ancestor's.
static DESCENDANT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The PID of the process that started with the library (set by the constructor).
static OWNER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The PID of the process whose memory this is: set when the library starts, in the child of a
/// `fork`, and in a restored process. A process that runs with another PID in this memory is a
/// `vfork` child (CPython's `subprocess` makes them), about to `exec`: what it does to its
/// signal handlers is not the program's doing.
static MEMORY_OWNER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

pub fn set_memory_owner() {
    MEMORY_OWNER.store(rustix::process::getpid().as_raw_nonzero().get() as u32, core::sync::atomic::Ordering::Relaxed);
}

/// Whether this process is the one whose memory this is (not a `vfork` child sharing it).
pub fn in_own_memory() -> bool {
    MEMORY_OWNER.load(core::sync::atomic::Ordering::Relaxed) == rustix::process::getpid().as_raw_nonzero().get() as u32
}

pub fn mark_descendant() {
    DESCENDANT.store(true, core::sync::atomic::Ordering::Relaxed);
}

pub fn set_owner(pid: u32) {
    OWNER.store(pid, core::sync::atomic::Ordering::Relaxed);
}

/// Whether this process descends from the one that started with the library: marked so (run
/// by it, or forked and through `fork`'s child handlers), or forked by it a moment ago, before
/// those handlers ran (another PID, whose parent is the owner). A process restored with new IDs
/// has another PID too, but not the owner as its parent.
pub fn is_descendant() -> bool {
    if DESCENDANT.load(core::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    let owner = OWNER.load(core::sync::atomic::Ordering::Relaxed);
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    owner != 0 && me != owner && parent == owner
}

/// This process's image path, written into `buf`: the configured one, or for a descendant
/// `<image>-<PID>`; during a checkpoint `ckpt checkpoint --to PATH` asked for, PATH
/// ([`redirect`]). `None` if it does not fit.
pub fn this_process_image(buf: &mut [u8]) -> Option<&[u8]> {
    let cfg = get();
    let mut w = ckpt_image::bytes::Writer::new(&mut buf[..]);
    if let Some(to) = redirected() {
        w.bytes(to);
        let len = w.finish()?;
        return Some(&buf[..len]);
    }
    w.bytes(cfg.image_path());
    if is_descendant() {
        w.u8(b'-');
        w.decimal(rustix::process::getpid().as_raw_nonzero().get() as u64);
    }
    let len = w.finish()?;
    Some(&buf[..len])
}

/// How many older images a commit keeps beside the image (`CKPT_KEEP`): none at a path `ckpt
/// checkpoint --to` gave, where each such checkpoint replaces the last.
pub fn images_kept() -> u32 {
    if redirected().is_some() {
        0
    } else {
        get().keep
    }
}

/// The path of `ckpt checkpoint --to PATH`, for the one checkpoint under way (its length in
/// [`REDIRECT_LEN`], 0 when there is none). Set by the thread that takes the checkpoint,
/// before anything of it reads the image path, and cleared when the handler is done (and in a
/// restored process, whose memory is the image's, taken while it was set); a forked writer
/// has its copy. The configuration itself never changes: later checkpoints go to the
/// process's own image path.
struct RedirectSlot(UnsafeCell<[u8; ckpt_image::report::TO_PATH_MAX]>);

// SAFETY: written only by `redirect`, which claims the slot first (see there).
unsafe impl Sync for RedirectSlot {}

static REDIRECT: RedirectSlot = RedirectSlot(UnsafeCell::new([0; ckpt_image::report::TO_PATH_MAX]));
static REDIRECT_LEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Sends the checkpoint under way to `path` (absolute, as `report::take_redirect` checks).
/// Returns `false` if it is too long, or a redirection is in force already (a checkpoint
/// taken in another thread at the same moment: it keeps its own).
pub fn redirect(path: &[u8]) -> bool {
    use core::sync::atomic::Ordering;
    if path.is_empty() || path.len() > ckpt_image::report::TO_PATH_MAX {
        return false;
    }
    // The slot is claimed (length usize::MAX: being written, which `redirected` treats as
    // none) only when no redirection is in force, so no reader can see it change.
    if REDIRECT_LEN.compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return false;
    }
    // SAFETY: claimed above: nothing else writes the slot, and `redirected` reads it only once
    // a length other than 0 and usize::MAX is published below.
    unsafe { (&mut *REDIRECT.0.get())[..path.len()].copy_from_slice(path) };
    REDIRECT_LEN.store(path.len(), Ordering::Release);
    true
}

/// Ends the redirection: later checkpoints go to the image path again.
pub fn end_redirect() {
    REDIRECT_LEN.store(0, core::sync::atomic::Ordering::Release);
}

/// The path of the redirection in force, if any.
pub fn redirected() -> Option<&'static [u8]> {
    let len = REDIRECT_LEN.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: the slot's first `len` bytes were written before the length was published, and
    // are not written again until the length is 0 again (`redirect` claims it only then).
    (len > 0 && len != usize::MAX).then(|| unsafe { &(&*REDIRECT.0.get())[..len] })
}
