//! Which writer is at work: one page of memory shared with every writer this process forks,
//! holding the writer's PID while it runs. A checkpoint that finds a live writer there is
//! refused; one that finds a writer gone without clearing it says that checkpoint was lost.
//! Nothing outside the process can hold or fake this (unlike a lock on a file), and a writer
//! killed with SIGKILL cannot leave it held. Signal-safe like the rest of `checkpoint`.

use super::Failure;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use rustix::mm::{MapFlags, ProtFlags};

/// The shared page's address, mapped at the first checkpoint.
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// This process's page (see `page_words`). A child the program forked inherits the page
/// (shared memory stays shared across `fork`): it maps one of its own at its first checkpoint,
/// so that parent and child never take each other's writers for their own. The page's word 2
/// holds the PID of the process it belongs to.
fn own_page() -> Result<&'static [AtomicU32; 4], Failure> {
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let mut p = PAGE.load(Ordering::Acquire);
    // SAFETY: a mapped page holds the four atomics of `page_words`.
    if p != 0 && unsafe { page_words(p) }[2].load(Ordering::Acquire) != me {
        p = 0;
    }
    if p == 0 {
        // SAFETY: a fresh shared anonymous page overlaps nothing; checkpoints do not run
        // concurrently (the signal is blocked in its own handler), so only one is made.
        p = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), 4096, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED) }
            .map_err(|e| Failure::new("mapping the writer's page", e))? as usize;
        // SAFETY: as above.
        let words = unsafe { page_words(p) };
        words[2].store(me, Ordering::Release);
        PAGE.store(p, Ordering::Release);
    }
    // SAFETY: as above.
    Ok(unsafe { page_words(p) })
}

/// In a writer: the page of the process that forked it (never a new one).
fn parents_page() -> Option<&'static [AtomicU32; 4]> {
    let p = PAGE.load(Ordering::Acquire);
    // SAFETY: as in `own_page`.
    (p != 0).then(|| unsafe { page_words(p) })
}

/// The page's words: the writer's PID, the smaps flag, the owner's PID, the PID of the writer
/// that finished last.
///
/// # Safety
/// `p` is the address of a mapped page of ours, zero-filled when made, for the life of the
/// process and its writers, only ever accessed through these atomics.
unsafe fn page_words(p: usize) -> &'static [AtomicU32; 4] {
    // SAFETY: as the caller promises.
    unsafe { &*(p as *const [AtomicU32; 4]) }
}

/// Whether process `pid` is still one of our writers (it has the writer's name and is not a
/// zombie).
fn is_live_writer(pid: u32) -> bool {
    let mut path = [0u8; 64];
    let Some(path) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid as u64, b"/stat") else { return false };
    let mut buf = [0u8; 512];
    let Ok(n) = super::procfs::read_small(path, &mut buf) else { return false };
    let stat = &buf[..n];
    let named = stat.windows(super::WRITER_NAME.to_bytes().len() + 2).any(|w| w[0] == b'(' && &w[1..w.len() - 1] == super::WRITER_NAME.to_bytes());
    let state = stat.iter().rposition(|&c| c == b')').and_then(|i| stat.get(i + 2)).copied();
    named && !matches!(state, Some(b'Z' | b'X'))
}

/// Before a checkpoint: refuses while the previous writer is at work; names one that died.
pub fn check() -> Result<(), Failure> {
    let slot = &own_page()?[0];
    let pid = slot.load(Ordering::Acquire);
    if pid == 0 {
        return Ok(());
    }
    if is_live_writer(pid) {
        return Err(Failure::plain("the previous checkpoint is still being written"));
    }
    ckpt_sigsafe::say!("ckpt: the writer of the previous checkpoint (process {pid}) was killed before it finished; that image was not written");
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
        let ts = rustix::time::Timespec { tv_sec: 0, tv_nsec: 10_000_000 };
        let _ = rustix::thread::nanosleep(&ts);
    }
}

/// The writer `pid` has started (said by the program once the intermediate that started it
/// is gone, before it goes on).
pub fn started(pid: u32) {
    if let Ok(words) = own_page() {
        words[0].store(pid, Ordering::SeqCst);
        // A writer may be done already (it runs while this process is being scheduled): it
        // said so in word 3, and found the slot empty. Then the slot is empty again.
        if words[3].load(Ordering::SeqCst) == pid {
            let _ = words[0].compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// The writer is done, whether the image was written or not (said by the writer itself).
pub fn finished() {
    if let Some(words) = parents_page() {
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        words[3].store(me, Ordering::SeqCst);
        let _ = words[0].compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// From now on every checkpoint looks in smaps for memory a child does not inherit: said by a
/// writer that found such memory the program had marked without libc's `madvise` (shared page,
/// word 1).
pub fn need_smaps() {
    if let Some(words) = parents_page() {
        words[1].store(1, Ordering::Release);
    }
}

/// Whether a writer asked for [`need_smaps`].
pub fn smaps_needed() -> bool {
    own_page().is_ok_and(|words| words[1].load(Ordering::Acquire) != 0)
}
