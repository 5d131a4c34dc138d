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

fn writer_slot() -> Result<&'static AtomicU32, Failure> {
    let mut p = PAGE.load(Ordering::Acquire);
    if p == 0 {
        // SAFETY: a fresh shared anonymous page overlaps nothing; checkpoints do not run
        // concurrently (the signal is blocked in its own handler), so only one is made.
        p = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), 4096, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED) }
            .map_err(|e| Failure::new("mapping the writer's page", e))? as usize;
        PAGE.store(p, Ordering::Release);
    }
    // SAFETY: the page is mapped for the life of the process (and of its writers), zero-filled
    // at first, and only ever accessed through this atomic.
    Ok(unsafe { &*(p as *const AtomicU32) })
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
    let slot = writer_slot()?;
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

/// The writer `pid` has started (said by its parent, before the program goes on).
pub fn started(pid: u32) {
    if let Ok(slot) = writer_slot() {
        slot.store(pid, Ordering::Release);
    }
}

/// The writer is done, whether the image was written or not (said by the writer itself).
pub fn finished() {
    if let Ok(slot) = writer_slot() {
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let _ = slot.compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// From now on every checkpoint looks in smaps for memory a child does not inherit: said by a
/// writer that found such memory the program had marked without libc's `madvise` (shared page,
/// word 1).
pub fn need_smaps() {
    if let Ok(slot) = writer_slot() {
        // SAFETY: the word after the writer's PID, in the same page (see `writer_slot`).
        let flag = unsafe { &*(slot as *const AtomicU32).add(1) };
        flag.store(1, Ordering::Release);
    }
}

/// Whether a writer asked for [`need_smaps`].
pub fn smaps_needed() -> bool {
    writer_slot().is_ok_and(|slot| {
        // SAFETY: as in `need_smaps`.
        let flag = unsafe { &*(slot as *const AtomicU32).add(1) };
        flag.load(Ordering::Acquire) != 0
    })
}
