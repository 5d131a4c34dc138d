//! Which pages the program wrote since its previous checkpoint, for incremental images.
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler (and [`ioctl`], an interposed libc function that may be called
//! anywhere): raw system calls, atomics and the caller's buffers only; no allocation, no locks,
//! no libc.
//!
//! How: a `userfaultfd` of our own (`UFFD_USER_MODE_ONLY`, so no privilege is needed) with
//! `UFFD_FEATURE_WP_ASYNC` has the program's private anonymous memory registered for
//! write-protection. The kernel then resolves a write to a protected page by itself (the
//! program never waits) and marks the page written. At each checkpoint, while every thread is
//! stopped, `PAGEMAP_SCAN` over `/proc/self/pagemap` finds the memory that is not registered
//! (mapped since, moved by `mremap`, or never registrable), which counts as written in full and
//! is registered for the next time, and the pages written since the previous checkpoint
//! ([`snapshot`]). The writer stores those pages, and names the others by where the previous
//! image holds them. All of them are protected again once the writer holds its copy of memory,
//! the program still stopped ([`protect`]): protecting is the costly part (a page-table walk
//! that changes every entry: 34 ms for 2 GiB at a first checkpoint), and done after the fork it
//! runs while the writer already reads memory on the other core, not before it starts.
//!
//! A program that uses userfaultfd itself registers its own ranges through `ioctl`: the
//! interposed [`ioctl`] first takes the range out of ours (one range can belong to one
//! userfaultfd only), and from then on every checkpoint is a full image.
//!
//! A restored process (restarted the default way, memory mapped from the image) has its
//! anonymous memory as private mappings of the image files: `crate::dropped::after_restore` notes which
//! files those are, and their mappings are tracked like anonymous memory (asynchronous
//! write-protection takes any kind of memory). Their pages not in memory hold the file's bytes,
//! which never change: images are replaced by rename, never rewritten. Its first checkpoint
//! finds nothing registered and is full; the next ones are incremental again.

use crate::config;
use ckpt_sigsafe::say;
use ckpt_sigsafe::sys;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general as k;
use rustix::fd::AsRawFd;
use rustix::io::Errno;

/// `UFFDIO_WRITEPROTECT_MODE_WP` (linux/userfaultfd.h).
const WRITEPROTECT_MODE_WP: u64 = 1;
/// Where our descriptor is moved to: out of the way of the numbers programs use.
const FD_FLOOR: i32 = 900;

/// Our userfaultfd (-1: none yet), and the process that opened it (a forked child inherits
/// the descriptor, but it stands for its parent's memory).
static FD: AtomicI32 = AtomicI32::new(-1);
static OWNER: AtomicU32 = AtomicU32::new(0);
/// The identity of the image taken at the last scan: the base the next checkpoint may build on.
static LAST_ID: AtomicU64 = AtomicU64::new(0);
/// Tracking is off for good, and the program was told why.
static OFF: AtomicBool = AtomicBool::new(false);
static REAL_IOCTL: AtomicUsize = AtomicUsize::new(0);

/// Whether `e` is memory a restart mapped from an image: the files are noted when the
/// restored process resumes (`crate::dropped`, which needs them too).
pub use crate::dropped::is_restored_memory;

/// What a checkpoint learned: its image's identity, the identity of the image the changes are
/// counted from (0: none, the image is full), and how many dirty ranges it recorded.
#[derive(Clone, Copy, Default)]
pub struct Tracked {
    pub id: u64,
    pub prev: u64,
    pub ndirty: usize,
    /// Memory was scanned and must be protected again ([`protect`]): all of every tracked
    /// region if `dirty` could not hold every range.
    pub unprotected: Unprotected,
}

/// What [`protect`] has to protect after a [`snapshot`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub enum Unprotected {
    /// Nothing: no memory was scanned.
    #[default]
    Nothing,
    /// The ranges in `dirty[..ndirty]`.
    Dirty,
    /// Every tracked region as a whole: there were more ranges than `dirty` holds.
    All,
}

/// The descriptor to leave out of the image (-1: none).
pub fn own_fd() -> i32 {
    FD.load(Ordering::Relaxed)
}

/// A new image identity: never 0, never the same twice in practice.
fn new_id() -> u64 {
    let mut seed = [0u64; 4];
    seed[0] = super::procfs::monotonic_ns();
    seed[1] = rustix::time::clock_gettime(rustix::time::ClockId::Realtime).tv_nsec as u64;
    seed[2] = rustix::process::getpid().as_raw_nonzero().get() as u64;
    seed[3] = &seed as *const _ as u64;
    // SAFETY: four u64s viewed as their 32 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(seed.as_ptr() as *const u8, 32) };
    ckpt_image::hash(bytes).max(1)
}

/// Says once why checkpoints are full images from now on.
fn give_up(why: core::fmt::Arguments) {
    if !OFF.swap(true, Ordering::Relaxed) {
        say!("ckpt: incremental checkpoints are off ({}); every checkpoint writes a full image", why);
    }
}

/// Whether `fd` is a userfaultfd (the link `/proc/self/fd/N` says `anon_inode:[userfaultfd]`).
fn is_userfaultfd(fd: i32) -> bool {
    let mut path = [0u8; 64];
    let Some(path) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/fd/", fd as u64, b"") else { return false };
    let mut target = [0u8; 64];
    matches!(rustix::fs::readlinkat_raw(rustix::fs::CWD, path, &mut target[..]), Ok(n) if target.get(..n) == Some(&b"anon_inode:[userfaultfd]"[..]))
}

/// Our userfaultfd, opened now if this process has none yet.
fn ensure_fd() -> Option<i32> {
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        if OWNER.load(Ordering::Relaxed) == me && is_userfaultfd(fd) {
            return Some(fd);
        }
        if OWNER.load(Ordering::Relaxed) != me && is_userfaultfd(fd) {
            // Inherited from the parent, whose memory it stands for: not ours to use.
            // SAFETY: our own descriptor (this process's copy of it); nothing else owns it.
            unsafe { rustix::io::close(fd) };
        }
        // A restored process: the number is free, or the program's now; never touched.
        FD.store(-1, Ordering::Relaxed);
    }
    let flags = k::O_CLOEXEC | k::O_NONBLOCK | k::UFFD_USER_MODE_ONLY;
    let flags = rustix::mm::UserfaultfdFlags::from_bits_retain(flags);
    // SAFETY: the descriptor is used only to write-protect and read back this process's own
    // pages (UFFDIO_WRITEPROTECT, PAGEMAP_SCAN); nothing moves or fills memory through it.
    let owned = match unsafe { rustix::mm::userfaultfd(flags) } {
        Ok(fd) => fd,
        Err(e) => {
            give_up(format_args!("userfaultfd: {}", ckpt_sigsafe::errno::describe(e)));
            return None;
        }
    };
    let raw = owned.as_raw_fd();
    let mut api = k::uffdio_api { api: k::UFFD_API as u64, features: k::UFFD_FEATURE_WP_ASYNC as u64, ioctls: 0 };
    // SAFETY: `api` is the uffdio_api structure UFFDIO_API reads and fills.
    if let Err(e) = unsafe { sys::ioctl(raw, linux_raw_sys::ioctl::UFFDIO_API, &mut api as *mut _ as usize) } {
        give_up(format_args!("userfaultfd without asynchronous write-protection: {}", ckpt_sigsafe::errno::describe(e)));
        return None;
    }
    let high = rustix::io::fcntl_dupfd_cloexec(&owned, FD_FLOOR).ok()?;
    use rustix::fd::IntoRawFd;
    let fd = high.into_raw_fd();
    FD.store(fd, Ordering::Relaxed);
    OWNER.store(me, Ordering::Relaxed);
    Some(fd)
}

/// Scans `start..end`: with `written`, for the registered pages written since they were last
/// protected (left as they are); otherwise for the pages not registered for asynchronous
/// write-protection.
fn scan(pm: i32, start: u64, end: u64, written: bool, mut f: impl FnMut(u64, u64)) -> Result<(), Errno> {
    use ckpt_sigsafe::pagescan::Query;
    let q = if written {
        Query { flags: 0, inverted: 0, all: (k::PAGE_IS_WRITTEN | k::PAGE_IS_WPALLOWED) as u64, any: 0 }
    } else {
        Query { flags: 0, inverted: k::PAGE_IS_WPALLOWED as u64, all: k::PAGE_IS_WPALLOWED as u64, any: 0 }
    };
    ckpt_sigsafe::pagescan::scan(pm, start, end, q, |s, e, _| f(s, e))
}

/// Registers `start..end` with our userfaultfd, so that once protected ([`protect`]) writes to
/// it are recorded. Memory that cannot be stays unrecorded: it is found unregistered, so
/// written, at every checkpoint. `Err(BUSY)`: another userfaultfd has it (the program's own,
/// registered past libc's `ioctl`), which the kernel would still let ours write-protect.
fn register(fd: i32, start: u64, end: u64) -> Result<(), Errno> {
    let mut reg = k::uffdio_register { range: k::uffdio_range { start, len: end - start }, mode: k::UFFDIO_REGISTER_MODE_WP as u64, ioctls: 0 };
    // SAFETY: `reg` is the uffdio_register structure the request reads and fills.
    unsafe { sys::ioctl(fd, linux_raw_sys::ioctl::UFFDIO_REGISTER, &mut reg as *mut _ as usize) }.map(|_| ())
}

/// Protects the registered memory `start..end`: its next write is recorded. Fails harmlessly
/// for memory no userfaultfd has (it counts as written anyway). Never for memory another
/// userfaultfd has: the kernel checks only that the memory is registered for write-protection,
/// not with whom, and the program's next write would wait for its own userfaultfd.
fn write_protect(fd: i32, start: u64, end: u64) {
    let mut wp = k::uffdio_writeprotect { range: k::uffdio_range { start, len: end - start }, mode: WRITEPROTECT_MODE_WP };
    // SAFETY: `wp` is the uffdio_writeprotect structure the request reads.
    let _ = unsafe { sys::ioctl(fd, linux_raw_sys::ioctl::UFFDIO_WRITEPROTECT, &mut wp as *mut _ as usize) };
}

/// In the handler of a process checkpointed on its own, every other thread stopped: records
/// in `dirty` (sorted, disjoint `[start, end)` ranges) the memory among `regions` (private
/// anonymous memory, and memory a restart mapped from an image) written since the previous
/// checkpoint or not tracked at all, registering what was not. `prev` in the result is 0 when
/// the image must be full. [`protect`] protects what it found again once the writer is forked,
/// before the program runs again: never later (a page the program wrote meanwhile would look
/// unwritten); left unprotected, the pages only count as written once more next time.
pub fn snapshot(regions: impl Iterator<Item = (u64, u64)>, dirty: &mut [[u64; 2]]) -> Tracked {
    let id = new_id();
    let prev = LAST_ID.swap(id, Ordering::Relaxed);
    let mut t = Tracked { id, ..Tracked::default() };
    let cfg = config::get();
    if cfg.incremental < 2 || cfg.compress || cfg.self_contained || cfg.key_file().is_some() || OFF.load(Ordering::Relaxed) {
        return t;
    }
    let Some(fd) = ensure_fd() else { return t };
    let Ok(pm) = rustix::fs::open(c"/proc/self/pagemap", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else {
        return t;
    };
    use rustix::fd::AsRawFd;
    let pm = pm.as_raw_fd();
    let mut n = 0usize;
    let mut overflow = false;
    // Records a dirty range, or that there were more than `dirty` holds (the image is then full).
    let push = |dirty: &mut [[u64; 2]], n: &mut usize, overflow: &mut bool, s: u64, e: u64| match dirty.get_mut(*n) {
        Some(slot) => {
            *slot = [s, e];
            *n += 1;
        }
        None => *overflow = true,
    };
    t.unprotected = Unprotected::Dirty;
    for (start, end) in regions {
        let first = n;
        // What is not tracked counts as written, and is tracked from now on; then what was
        // written since the last checkpoint (of the memory registered before: registered now,
        // the rest would read as written too). A region not tracked as a whole (all of it at a
        // first checkpoint) needs no second walk of its pages.
        let mut unregistered = first;
        let scanned = scan(pm, start, end, false, |s, e| push(dirty, &mut n, &mut overflow, s, e)).and_then(|()| {
            unregistered = n;
            let new: u64 = dirty[first..n].iter().map(|r| r[1] - r[0]).sum();
            if new == end - start {
                return Ok(());
            }
            scan(pm, start, end, true, |s, e| push(dirty, &mut n, &mut overflow, s, e))
        });
        let foreign = dirty[first..unregistered].iter().any(|r| register(fd, r[0], r[1]) == Err(Errno::BUSY));
        if foreign {
            // Memory the program registered with a userfaultfd of its own, past libc's `ioctl`
            // (a raw system call, a Go program): nothing is protected now, nor ever again.
            give_up(format_args!("the program uses userfaultfd itself"));
            return Tracked { unprotected: Unprotected::Nothing, ..t };
        }
        if let Err(e) = scanned {
            // What was registered stays unprotected: written, should tracking come back.
            give_up(format_args!("PAGEMAP_SCAN: {}", ckpt_sigsafe::errno::describe(e)));
            return Tracked { unprotected: Unprotected::Nothing, ..t };
        }
        dirty[first..n].sort_unstable_by_key(|r| r[0]);
    }
    if overflow {
        t.unprotected = Unprotected::All;
    } else {
        t.prev = prev;
    }
    t.ndirty = n;
    t
}

/// After a [`snapshot`], once the writer has its copy of memory and before the program runs
/// again: protects every page the snapshot found written or newly registered (or, if it found
/// more ranges than it could hold, all of `regions`, which must be those it scanned), so that
/// the next checkpoint sees what the program writes from now on.
pub fn protect(t: &Tracked, dirty: &[[u64; 2]], regions: impl Iterator<Item = (u64, u64)>) {
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 || OWNER.load(Ordering::Relaxed) != rustix::process::getpid().as_raw_nonzero().get() as u32 {
        return;
    }
    match t.unprotected {
        Unprotected::Nothing => {}
        Unprotected::Dirty => dirty[..t.ndirty.min(dirty.len())].iter().for_each(|r| write_protect(fd, r[0], r[1])),
        Unprotected::All => {
            // Only the memory registered for asynchronous write-protection (ours): not the
            // ranges past `dirty`, never registered, of which some may be the program's own.
            let Ok(pm) = rustix::fs::open(c"/proc/self/pagemap", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else { return };
            let ours = ckpt_sigsafe::pagescan::Query { flags: k::PM_SCAN_WP_MATCHING as u64, inverted: 0, all: k::PAGE_IS_WPALLOWED as u64, any: 0 };
            regions.for_each(|(s, e)| {
                let _ = ckpt_sigsafe::pagescan::scan(pm.as_raw_fd(), s, e, ours, |_, _, _| {});
            });
        }
    }
}

/// A checkpoint that is not of this process alone (a tree's): the next one starts a new chain.
pub fn forget() {
    LAST_ID.store(0, Ordering::Relaxed);
}

/// Resolves libc's `ioctl` now, from the constructor.
pub fn prepare() {
    crate::guard::real(&REAL_IOCTL, c"ioctl");
}

type IoctlFn = unsafe extern "C" fn(core::ffi::c_int, core::ffi::c_ulong, ...) -> core::ffi::c_int;

/// libc's `ioctl`, interposed: a program registering memory with a userfaultfd of its own
/// gets it, even where ours has it registered (see the module's notes).
///
/// # Safety
/// As libc's `ioctl`: `arg` is what `request` expects.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ioctl(fd: core::ffi::c_int, request: core::ffi::c_ulong, arg: *mut core::ffi::c_void) -> core::ffi::c_int {
    if request == linux_raw_sys::ioctl::UFFDIO_REGISTER as core::ffi::c_ulong && fd != FD.load(Ordering::Relaxed) && !arg.is_null() {
        // SAFETY: UFFDIO_REGISTER's argument is a uffdio_register, readable as the caller's contract.
        let range = unsafe { (*(arg as *const k::uffdio_register)).range };
        program_uses_userfaultfd(range);
    }
    let f = crate::guard::real(&REAL_IOCTL, c"ioctl");
    // SAFETY: libc's ioctl, with the caller's arguments.
    unsafe { core::mem::transmute::<usize, IoctlFn>(f)(fd, request, arg) }
}

/// The program is about to register `range` with its own userfaultfd: ours lets go of it, and
/// tracking stops for good.
fn program_uses_userfaultfd(range: k::uffdio_range) {
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 && OWNER.load(Ordering::Relaxed) == me {
        let mut r = range;
        // SAFETY: `r` is the uffdio_range UFFDIO_UNREGISTER reads.
        let _ = unsafe { sys::ioctl(fd, linux_raw_sys::ioctl::UFFDIO_UNREGISTER, &mut r as *mut _ as usize) };
    }
    give_up(format_args!("the program uses userfaultfd itself"));
}
