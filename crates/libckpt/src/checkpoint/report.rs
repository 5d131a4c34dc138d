//! The report page (layout: `ckpt_image::report`): one page of memory that this process, every
//! writer it forks and the `ckpt` command share. It says which writer is at work (a checkpoint
//! that finds a live writer there is refused; one that finds a writer gone without clearing it
//! says whether its image got in place) and what became of the last checkpoint, with the reason when
//! it failed, so that `ckpt checkpoint` can say it too. Only the process and its user can reach
//! the writer's slot (a lock on a file in the image's directory could be held by anyone who can
//! write there), and a writer killed with SIGKILL cannot leave it held.
//!
//! The page is a memfd, kept open at a high descriptor number (close-on-exec), through which
//! `ckpt` reads it (`/proc/PID/fd/N`). Images hold the page's memory but not its descriptor
//! (libckpt's own, like its userfaultfd, which would otherwise make every restart keep a
//! descriptor numbered 900 or more): a restored process makes a new page before it runs again
//! (`resume`), or at its first checkpoint if it could not then. A child the program forks gets a page of its
//! own (at fork, or at its first checkpoint if it was forked without libc), at the same
//! descriptor number, so that parent and child never take each other's writers or reports for
//! their own.
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler, the writer, `fork`'s child handler and the last steps of a
//! restart: raw system calls and atomics only; no allocation, no locks, no libc.

use super::failure::Failure;
use ckpt_image::report as layout;
pub use ckpt_image::report::Outcome;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use rustix::fd::{AsRawFd, IntoRawFd};
use rustix::mm::{MapFlags, ProtFlags};

/// The name (`comm`) of the process that writes the image.
pub const WRITER_NAME: &core::ffi::CStr = c"ckpt-writer";

/// The page's address (0: none yet), its descriptor (-1: none) and that memfd's device and
/// inode: after a restart the number may be free, or the program's own file.
static PAGE: AtomicUsize = AtomicUsize::new(0);
static FD: AtomicI32 = AtomicI32::new(-1);
static DEV: AtomicU64 = AtomicU64::new(0);
static INODE: AtomicU64 = AtomicU64::new(0);
/// Where the descriptor goes: out of the way of the numbers programs use.
const FD_FLOOR: i32 = 900;

fn me() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The words of the page at `p`.
///
/// # Safety
/// `p` is the address of a mapped report page of ours, which stays mapped for the life of the
/// process and its writers, and is only ever accessed through these atomics.
unsafe fn words(p: usize) -> &'static [AtomicU32; layout::WORDS] {
    // SAFETY: as the caller promises; the page is page-aligned and larger than the table.
    unsafe { &*(p as *const [AtomicU32; layout::WORDS]) }
}

/// The message bytes of the page at `p` (same contract as [`words`]).
unsafe fn message(p: usize) -> &'static [AtomicU8; layout::MAX_MESSAGE] {
    // SAFETY: as for `words`; the message lies inside the page.
    unsafe { &*((p + layout::MESSAGE_AT) as *const [AtomicU8; layout::MAX_MESSAGE]) }
}

/// The descriptor of our page, if it is still open at its number: the same memfd (device and
/// inode), not some other file the program has there since a restart or a `dup2`.
pub fn own_fd() -> i32 {
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return -1;
    }
    // SAFETY: the number is only looked at (fstat), for the duration of the call.
    let st = rustix::fs::fstat(unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) });
    match st {
        Ok(st) if st.st_ino == INODE.load(Ordering::Relaxed) && st.st_dev == DEV.load(Ordering::Relaxed) => fd,
        _ => -1,
    }
}

/// A new page of shared memory: a memfd, mapped, with its descriptor placed (at the number of
/// the old page's, if that is still open: a parent's page, inherited across `fork`; else the
/// first free one from `FD_FLOOR`, lower if the descriptor limit is lower). Without a memfd,
/// an anonymous shared page: the checkpoint works, `ckpt` cannot read it.
fn new_page() -> Result<usize, rustix::io::Errno> {
    let Ok(fd) = rustix::fs::memfd_create(layout::REPORT_NAME, rustix::fs::MemfdFlags::CLOEXEC) else {
        // SAFETY: a new shared anonymous page, which overlaps nothing.
        let p = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), layout::REPORT_LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED) }?;
        FD.store(-1, Ordering::Relaxed);
        return Ok(p as usize);
    };
    rustix::fs::ftruncate(&fd, layout::REPORT_LEN as u64)?;
    let st = rustix::fs::fstat(&fd)?;
    // SAFETY: a new shared mapping of our own memfd, which overlaps nothing.
    let p = unsafe { rustix::mm::mmap(core::ptr::null_mut(), layout::REPORT_LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0) }? as usize;
    let old = own_fd();
    let placed = if old >= 0 {
        // SAFETY: `old` holds our previous page (checked: the same memfd); it becomes this
        // page's.
        unsafe { ckpt_sigsafe::sys::dup3(fd.as_raw_fd(), old, linux_raw_sys::general::O_CLOEXEC) }.map_or(-1, |()| old)
    } else {
        let limit = ckpt_sigsafe::sys::prlimit(linux_raw_sys::general::RLIMIT_NOFILE, None).map_or(u64::MAX, |l| l[0]);
        let floor = (limit.saturating_sub(64).min(FD_FLOOR as u64) as i32).max(3);
        rustix::io::fcntl_dupfd_cloexec(&fd, floor).map_or(-1, |high| high.into_raw_fd())
    };
    FD.store(placed, Ordering::Relaxed);
    DEV.store(st.st_dev, Ordering::Relaxed);
    INODE.store(st.st_ino, Ordering::Relaxed);
    Ok(p)
}

/// Makes this process a new page and stops using the old one. The old page, if it was this
/// process's own (whose descriptor the program closed, or which a restored process came back
/// with), hands on which writer is at work and the counts, and is marked as no longer used
/// (OWNER 0) for a reader that holds it open; a parent's page is left as it is.
fn make_page() -> Result<usize, rustix::io::Errno> {
    let p = new_page()?;
    // SAFETY: just mapped, zero-filled, ours for the life of the process.
    let w = unsafe { words(p) };
    w[layout::MAGIC].store(layout::MAGIC_VALUE, Ordering::Relaxed);
    let previous = PAGE.swap(p, Ordering::AcqRel);
    if previous != 0 {
        // SAFETY: a page this process mapped (see `words`), still mapped until just below.
        let prev = unsafe { words(previous) };
        if prev[layout::OWNER].load(Ordering::Acquire) == me() {
            for i in [layout::WRITER, layout::SMAPS, layout::FINISHED, layout::STARTED, layout::DONE, layout::OUTCOME] {
                w[i].store(prev[i].load(Ordering::Acquire), Ordering::Relaxed);
            }
            prev[layout::OWNER].store(0, Ordering::Release);
        }
        // SAFETY: the old page is no longer used by this process (PAGE names the new one), and
        // no writer of ours is being started meanwhile (it would share this one).
        let _ = unsafe { rustix::mm::munmap(previous as *mut core::ffi::c_void, layout::REPORT_LEN) };
    }
    w[layout::OWNER].store(me(), Ordering::Release);
    Ok(p)
}

/// Made by the constructor, so that `ckpt` finds the page before the first checkpoint.
pub fn prepare() {
    let _ = make_page();
}

/// In the child of a `fork`: a page of its own.
pub fn after_fork() {
    let _ = make_page();
}

/// In a restored process, before it runs again: its page, with a descriptor `ckpt` can find
/// (images leave the descriptor out).
pub fn after_restore() {
    let _ = make_page();
}

/// This process's page: made now if it has none of its own (a child forked without libc's
/// `fork`), or again if its descriptor is gone (the program closed it, or a restart could not
/// make it again). If no new page can be had (the descriptor limit reached, say), the page it
/// has serves, without a descriptor.
fn own() -> Result<&'static [AtomicU32; layout::WORDS], Failure> {
    let mut p = PAGE.load(Ordering::Acquire);
    // SAFETY: a page we mapped (see `words`).
    let ours = p != 0 && unsafe { words(p) }[layout::OWNER].load(Ordering::Acquire) == me();
    let lost_fd = FD.load(Ordering::Relaxed) >= 0 && own_fd() < 0;
    if !ours || lost_fd {
        match make_page() {
            Ok(new) => p = new,
            Err(e) if !ours => return Err(Failure::new("making the report page", e)),
            Err(_) => {}
        }
    }
    // SAFETY: as above.
    Ok(unsafe { words(p) })
}

/// In a writer: the page of the process that forked it (never a new one).
fn parents() -> Option<&'static [AtomicU32; layout::WORDS]> {
    let p = PAGE.load(Ordering::Acquire);
    // SAFETY: as in `own`.
    (p != 0).then(|| unsafe { words(p) })
}

/// Whether process `pid` is still one of our writers (it has the writer's name and is not a
/// zombie). A writer has that name from its start, before it has run at all
/// (`spawn_detached_named`): one that has not run yet is at work, not killed.
fn is_live_writer(pid: u32) -> bool {
    let mut path = [0u8; 64];
    let Some(path) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid as u64, b"/stat") else { return false };
    let mut buf = [0u8; 512];
    let Ok(n) = ckpt_sigsafe::file::read_start(path, &mut buf) else { return false };
    let stat = &buf[..n];
    ckpt_sigsafe::proctext::stat_comm(stat) == WRITER_NAME.to_bytes() && !matches!(ckpt_sigsafe::proctext::stat_state(stat), Some(b'Z' | b'X') | None)
}

/// The path `ckpt checkpoint --to` wrote into this process's page for the request numbered
/// `seq` (see `ckpt_image::report`), copied into `buf`; the page's redirection is cleared as it
/// is taken, so that no other checkpoint ever uses it. Fails, naming why, when the page does
/// not hold that request's path (rewritten since, or lost with the page): the checkpoint then
/// goes nowhere rather than to a path it was not asked for.
/// `n` is the number of the checkpoint that takes it, for `ckpt` to follow.
pub fn take_redirect(seq: u32, n: u32, buf: &mut [u8]) -> Result<usize, Failure> {
    const LOST: &str = "the path ckpt asked for (--to) is no longer in the process's report page (another ckpt rewrote it, or the page was made anew): try again";
    let w = own()?;
    let p = PAGE.load(Ordering::Acquire);
    if seq == 0 || w[layout::TO_SEQ].load(Ordering::Acquire) != seq {
        return Err(Failure::plain(LOST));
    }
    let len = w[layout::TO_LEN].load(Ordering::Acquire) as usize;
    if len == 0 || len > layout::TO_PATH_MAX || len >= buf.len() {
        return Err(Failure::plain("the path ckpt asked for (--to) is empty or too long"));
    }
    // SAFETY: a page we mapped (see `words`); the path lies inside it (TO_AT + TO_PATH_MAX <=
    // REPORT_LEN), and is read through atomics, as `ckpt` may write it meanwhile.
    let path = unsafe { &*((p + layout::TO_AT) as *const [AtomicU8; layout::TO_PATH_MAX]) };
    for (b, slot) in buf[..len].iter_mut().zip(path.iter()) {
        *b = slot.load(Ordering::Relaxed);
    }
    // Taken whole only if the number is still the same: cleared now, it is never taken again.
    w[layout::TO_TAKEN].store(n, Ordering::Release);
    if w[layout::TO_SEQ].compare_exchange(seq, 0, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err(Failure::plain(LOST));
    }
    if buf[0] != b'/' || buf[..len].contains(&0) {
        return Err(Failure::plain("the path ckpt asked for (--to) is not absolute, or holds a NUL byte"));
    }
    Ok(len)
}

/// A checkpoint begins: counts it, and returns its number (0 if the page cannot be had).
pub fn begin() -> u32 {
    own().map_or(0, |w| w[layout::STARTED].fetch_add(1, Ordering::AcqRel).wrapping_add(1))
}

/// Says what became of checkpoint `n`, in this process's page or, from a writer, in its
/// parent's: its message, its outcome, then its number, under the page's lock, and only if no
/// later checkpoint has said its own outcome already (a checkpoint refused while this one was
/// being written, say). The lock is waited for a short while only: a holder killed in the
/// middle cannot keep it.
pub fn end(n: u32, outcome: Outcome, why: &[u8]) {
    let p = PAGE.load(Ordering::Acquire);
    if p == 0 || n == 0 {
        return;
    }
    // SAFETY: a page we mapped (see `words`).
    let (w, m) = unsafe { (words(p), message(p)) };
    let me = me();
    for _ in 0..200 {
        if w[layout::LOCK].compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            break;
        }
        ckpt_sigsafe::sys::sleep_ns(100_000);
    }
    let done = w[layout::DONE].load(Ordering::Acquire);
    if (n.wrapping_sub(done) as i32) > 0 {
        let len = why.len().min(layout::MAX_MESSAGE);
        for (slot, &b) in m.iter().zip(&why[..len]) {
            slot.store(b, Ordering::Relaxed);
        }
        w[layout::MESSAGE_LEN].store(len as u32, Ordering::Relaxed);
        w[layout::OUTCOME].store(outcome as u32, Ordering::Relaxed);
        w[layout::DONE].store(n, Ordering::Release);
    }
    let _ = w[layout::LOCK].compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire);
}

/// The file (device, inode) the writer in the WRITER slot writes the image into: a writer
/// killed once it had renamed it over the image left its image in place, one killed before
/// left none. Set and read by this process only, in its checkpoint handler.
static WRITER_FILE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Before a checkpoint: refuses while the previous writer is at work; names one that died, and
/// says whether its image is in place.
pub fn check() -> Result<(), Failure> {
    let slot = &own()?[layout::WRITER];
    let pid = slot.load(Ordering::Acquire);
    if pid == 0 {
        return Ok(());
    }
    if is_live_writer(pid) {
        return Err(Failure::plain("the previous checkpoint is still being written"));
    }
    let mut buf = [0u8; ckpt_image::state::PATH_MAX + 32];
    let image = crate::config::this_process_image(&mut buf).unwrap_or(&[]);
    let made = (WRITER_FILE[0].load(Ordering::Relaxed), WRITER_FILE[1].load(Ordering::Relaxed));
    let mut path = [0u8; ckpt_image::state::PATH_MAX + 33];
    let at_path = path.get_mut(..image.len() + 1).and_then(|p| {
        p[..image.len()].copy_from_slice(image);
        p[image.len()] = 0;
        core::ffi::CStr::from_bytes_with_nul(p).ok()
    });
    let in_place = at_path
        .and_then(|p| rustix::fs::statat(rustix::fs::CWD, p, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok())
        .is_some_and(|st| made != (0, 0) && (st.st_dev, st.st_ino) == made);
    let image = ckpt_sigsafe::out::Lossy(image);
    if in_place {
        ckpt_sigsafe::say!("ckpt: the writer of the previous checkpoint (process {pid}) was killed as it finished; its image is in place at {image}");
    } else {
        ckpt_sigsafe::say!("ckpt: the writer of the previous checkpoint (process {pid}) was killed before it finished; that image was not written, and nothing at {image} changed");
    }
    slot.store(0, Ordering::Release);
    Ok(())
}

/// Waits (up to two minutes) until no earlier checkpoint is still being written, for a last
/// checkpoint, which must not be refused as busy.
pub fn wait_idle() {
    for _ in 0..12_000 {
        if check().is_ok() {
            return;
        }
        ckpt_sigsafe::sys::sleep_ns(10_000_000);
    }
}

/// The writer `pid` has started, writing the image into the file `file` (device, inode), said
/// by the program once the intermediate that started it is gone, before it goes on.
pub fn started(pid: u32, file: (u64, u64)) {
    WRITER_FILE[0].store(file.0, Ordering::Relaxed);
    WRITER_FILE[1].store(file.1, Ordering::Relaxed);
    if let Ok(w) = own() {
        w[layout::WRITER].store(pid, Ordering::SeqCst);
        // A writer may be done already (it runs while this process is being scheduled): it
        // said so in FINISHED, and found the slot empty. Then the slot is empty again.
        if w[layout::FINISHED].load(Ordering::SeqCst) == pid {
            let _ = w[layout::WRITER].compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// The writer is done, whether the image was written or not (said by the writer itself).
pub fn finished() {
    if let Some(w) = parents() {
        let me = me();
        w[layout::FINISHED].store(me, Ordering::SeqCst);
        let _ = w[layout::WRITER].compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// The addresses of this process's page (empty if it has none): an attached checkpoint leaves
/// it out of its image (a process restored from it has no libckpt to report through).
pub fn page_range() -> core::ops::Range<usize> {
    let p = PAGE.load(Ordering::Acquire);
    p..if p == 0 { 0 } else { p + layout::REPORT_LEN }
}

/// Unmaps this process's page, after an attached checkpoint: its writer has a mapping of its
/// own, and `ckpt` reads the page through the descriptor (which it closes itself); no code of
/// libckpt's is left in the process to use it.
pub fn unmap_page() {
    let p = PAGE.swap(0, Ordering::AcqRel);
    if p != 0 {
        // SAFETY: the page was mapped by `new_page` and nothing refers to it any more: PAGE
        // no longer names it, and the attached checkpoint that used it is over.
        let _ = unsafe { rustix::mm::munmap(p as *mut core::ffi::c_void, layout::REPORT_LEN) };
    }
}

/// A writer's word to the program's later checkpoints, for good: sets `word` of the page.
fn raise(word: usize) {
    if let Some(w) = parents() {
        w[word].store(1, Ordering::Release);
    }
}

/// Whether a writer raised `word` ([`raise`]).
fn raised(word: usize) -> bool {
    own().is_ok_and(|w| w[word].load(Ordering::Acquire) != 0)
}

/// From now on every checkpoint looks in smaps for memory a child does not inherit: said by a
/// writer that found such memory the program had marked without libc's `madvise`.
pub fn need_smaps() {
    raise(layout::SMAPS)
}

/// Whether a writer asked for [`need_smaps`].
pub fn smaps_needed() -> bool {
    raised(layout::SMAPS)
}

/// From now on every writer is forked with all of the program's memory: said by a writer that
/// was forked without the program's unwritten memory and found a page of it that no base holds
/// (see `unforked`).
pub fn fork_all() {
    raise(layout::FORK_ALL)
}

/// Whether a writer asked for [`fork_all`].
pub fn forks_all() -> bool {
    raised(layout::FORK_ALL)
}
