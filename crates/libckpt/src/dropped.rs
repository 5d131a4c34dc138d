//! Keeps `MADV_DONTNEED` exact in a restored process, and notes memory a child process does
//! not inherit.
//!
//! A default (mapped) restart restores anonymous memory as a private mapping of the image file:
//! its pages are read when first touched. But dropping such a page with `MADV_DONTNEED` (or
//! `MADV_FREE`) makes the kernel bring back the file's bytes at the next touch, where the
//! program, which had anonymous memory, expects zeros: allocators such as jemalloc and tcmalloc
//! hand such memory out again as already zeroed.
//!
//! So `madvise` is interposed: in a restored process, advice to drop pages of a mapping of a
//! ckpt image is carried out by mapping fresh anonymous memory (zeros, the same protection)
//! over those pages instead. Everything else goes to libc's `madvise`. Whether this process was
//! restored is a flag the image holds set ([`mark_for_image`], called while the program is
//! stopped for a checkpoint) and the running program sets back ([`clear`]) once the image's
//! snapshot is taken: cleared, unless it is itself a restored process ([`after_restore`]). Calls that bypass libc (`syscall(2)`, the Go runtime) are not seen.
//!
//! Ordinary context: called from the program's threads through `madvise`. Uses raw system calls,
//! a buffer of its own and a spin lock that only this module takes.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// 0: not restored (or nothing of the image mapped any more); 1: a restored process.
static RESTORED: AtomicU32 = AtomicU32::new(0);
static LOCK: AtomicBool = AtomicBool::new(false);
static REAL_MADVISE: AtomicUsize = AtomicUsize::new(0);
/// The program asked (through libc) for memory a child does not inherit as it is
/// (`MADV_DONTFORK`, `MADV_WIPEONFORK`): checkpoints must look for it (see `write::copy_len`).
static NOT_INHERITED: AtomicBool = AtomicBool::new(false);

/// Whether the program ever marked memory `MADV_DONTFORK` or `MADV_WIPEONFORK` through libc.
pub fn not_inherited_seen() -> bool {
    NOT_INHERITED.load(Ordering::Relaxed)
}

/// Room for `/proc/self/maps`.
const MAPS_ROOM: usize = 4 << 20;

struct Buf(core::cell::UnsafeCell<[u8; MAPS_ROOM]>);
// SAFETY: only used with LOCK held.
unsafe impl Sync for Buf {}
static MAPS: Buf = Buf(core::cell::UnsafeCell::new([0; MAPS_ROOM]));

/// What [`RESTORED`] was before [`mark_for_image`] set it for the image.
static BEFORE_IMAGE: AtomicU32 = AtomicU32::new(0);

/// Before a checkpoint's snapshot: the image holds "restored".
pub fn mark_for_image() {
    BEFORE_IMAGE.store(RESTORED.swap(1, Ordering::SeqCst), Ordering::SeqCst);
}

/// In a restored process, before it runs again: restored, also once its own checkpoints are
/// taken (the image may hold an earlier "before" from the process it was taken of).
pub fn after_restore() {
    BEFORE_IMAGE.store(1, Ordering::SeqCst);
    RESTORED.store(1, Ordering::SeqCst);
    note_restored_files();
}

/// The files a restart mapped this process's memory from (the image and its bases), as
/// (device, inode) with the device as `major << 32 | minor`: set before the restored process
/// runs again, read by checkpoints (incremental tracking) and by `madvise` here.
static RESTORED_FROM: [[AtomicU64; 2]; 32] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; 32];
static NRESTORED: AtomicUsize = AtomicUsize::new(0);

/// In a restored process, before it runs again: notes the image files its memory is mapped
/// from, while they still have their names (a base no image needs any longer, or the far
/// side's copy after `ckpt migrate`, may lose its name later). With no room to read its memory
/// map, none is noted: its checkpoints stay full images, and a dropped page is told by opening
/// its file by name.
fn note_restored_files() {
    NRESTORED.store(0, Ordering::Relaxed);
    const ROOM: usize = 8 << 20;
    let Ok(mut room) = ckpt_sigsafe::mapping::Mapping::anonymous(ROOM) else { return };
    let (maps, path) = room.bytes_mut().split_at_mut(ROOM - ckpt_image::state::PATH_MAX - 1);
    if let Ok(n) = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", maps) {
        let mut count = 0;
        for e in ckpt_sigsafe::maps::entries(&maps[..n]) {
            let dev = (e.dev_major as u64) << 32 | e.dev_minor as u64;
            if e.shared || e.inode == 0 || RESTORED_FROM[..count].iter().any(|f| f[0].load(Ordering::Relaxed) == dev && f[1].load(Ordering::Relaxed) == e.inode) {
                continue;
            }
            if count < RESTORED_FROM.len() && is_image(path, e.name) {
                RESTORED_FROM[count][0].store(dev, Ordering::Relaxed);
                RESTORED_FROM[count][1].store(e.inode, Ordering::Relaxed);
                count += 1;
            }
        }
        NRESTORED.store(count, Ordering::Release);
    }
}

/// Whether `e` is memory a restart mapped from an image (a private mapping of one of the files
/// [`note_restored_files`] noted when it resumed).
pub fn is_restored_memory(e: &ckpt_sigsafe::maps::MapsEntry) -> bool {
    let dev = (e.dev_major as u64) << 32 | e.dev_minor as u64;
    let n = NRESTORED.load(Ordering::Acquire).min(RESTORED_FROM.len());
    !e.shared && e.inode != 0 && RESTORED_FROM[..n].iter().any(|f| f[0].load(Ordering::Relaxed) == dev && f[1].load(Ordering::Relaxed) == e.inode)
}

/// After it, in the program that goes on: as it was before. A restored process that takes a
/// checkpoint still has memory mapped from its image, whose dropped pages must still read as
/// zeros.
pub fn clear() {
    RESTORED.store(BEFORE_IMAGE.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// Resolves libc's `madvise` now, from the constructor.
pub fn prepare() {
    crate::guard::real(&REAL_MADVISE, c"madvise");
}

type MadviseFn = unsafe extern "C" fn(*mut c_void, usize, c_int) -> c_int;

fn real_madvise(addr: usize, len: usize, advice: c_int) -> c_int {
    let f = crate::guard::real(&REAL_MADVISE, c"madvise");
    // SAFETY: libc's madvise with the caller's arguments.
    unsafe { core::mem::transmute::<usize, MadviseFn>(f)(addr as *mut c_void, len, advice) }
}

/// libc's `madvise`, interposed (see the module's notes).
///
/// # Safety
/// As libc's `madvise`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    if advice == linux_raw_sys::general::MADV_DONTFORK as c_int || advice == linux_raw_sys::general::MADV_WIPEONFORK as c_int {
        NOT_INHERITED.store(true, Ordering::Relaxed);
    }
    let dropping = advice == linux_raw_sys::general::MADV_DONTNEED as c_int || advice == linux_raw_sys::general::MADV_FREE as c_int;
    if dropping && RESTORED.load(Ordering::Relaxed) == 1 && len > 0 && addr as usize % 4096 == 0 {
        if let Some(r) = drop_image_pages(addr as usize, len.next_multiple_of(4096), advice) {
            return r;
        }
    }
    real_madvise(addr as usize, len, advice)
}

/// What [`is_image`] found, by device and inode (with LOCK held): a few files, each looked at
/// once.
/// (device major, minor, inode, is an image), and where the next goes.
type SeenFiles = ([(u32, u32, u64, bool); 64], usize);
struct Seen(core::cell::UnsafeCell<SeenFiles>);
// SAFETY: only used with LOCK held.
unsafe impl Sync for Seen {}
static SEEN: Seen = Seen(core::cell::UnsafeCell::new(([(0, 0, 0, false); 64], 0)));

/// Whether the mapped file of `e` is a ckpt image (an ELF core file), remembered by inode. The
/// files the restart mapped the process's memory from were noted when it resumed
/// ([`note_restored_files`]), while they still had their names: one removed since (a base no
/// image needs any longer, the far side's copy after `ckpt migrate`) is still known as an image
/// here, though its path no longer opens.
fn is_image_file(e: &ckpt_sigsafe::maps::MapsEntry, buf: &mut [u8]) -> bool {
    if is_restored_memory(e) {
        return true;
    }
    // SAFETY: LOCK is held by the caller.
    let (seen, next) = unsafe { &mut *SEEN.0.get() };
    let key = (e.dev_major, e.dev_minor, e.inode);
    if let Some(s) = seen.iter().find(|s| (s.0, s.1, s.2) == key) {
        return s.3;
    }
    let v = is_image(buf, e.name);
    seen[*next % seen.len()] = (key.0, key.1, key.2, v);
    *next += 1;
    v
}

/// Whether the file at `path` is a ckpt image: an ELF core file (read through `buf`).
pub(crate) fn is_image(buf: &mut [u8], path: &[u8]) -> bool {
    if path.len() + 1 > buf.len() || !path.starts_with(b"/") {
        return false;
    }
    buf[..path.len()].copy_from_slice(path);
    buf[path.len()] = 0;
    let Ok(p) = core::ffi::CStr::from_bytes_with_nul(&buf[..path.len() + 1]) else { return false };
    let Ok(f) = rustix::fs::open(p, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK, rustix::fs::Mode::empty()) else {
        return false;
    };
    let mut head = [0u8; 18];
    matches!(rustix::io::pread(&f, &mut head, 0), Ok(18)) && head[..4] == *b"\x7fELF" && u16::from_le_bytes([head[16], head[17]]) == 4
}

/// Drops `addr..addr+len` where it is a private mapping of an image by mapping zeros over it,
/// and the rest with libc's `madvise`. `None` when none of it is an image's (then libc's
/// `madvise` does the whole call).
fn drop_image_pages(addr: usize, len: usize, advice: c_int) -> Option<c_int> {
    while LOCK.swap(true, Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let result = (|| {
        // SAFETY: LOCK is held: this is the only reference to the buffer.
        let buf = unsafe { &mut *MAPS.0.get() };
        let (maps, rest) = buf.split_at_mut(MAPS_ROOM - 8192);
        let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", maps).ok()?;
        let end = addr.checked_add(len)?;
        let image_backed = |e: &ckpt_sigsafe::maps::MapsEntry, scratch: &mut [u8]| !e.shared && e.inode != 0 && is_image_file(e, scratch);
        let mut any_image = false;
        let mut any_here = false;
        for e in ckpt_sigsafe::maps::entries(&maps[..n]) {
            if image_backed(&e, rest) {
                any_image = true;
                if e.start < end && addr < e.end {
                    any_here = true;
                }
            }
        }
        if !any_image {
            // Nothing of an image is mapped any more: never look again.
            RESTORED.store(0, Ordering::Relaxed);
            return None;
        }
        if !any_here {
            return None;
        }
        let mut at = addr;
        for e in ckpt_sigsafe::maps::entries(&maps[..n]) {
            if e.end <= at || e.start >= end {
                continue;
            }
            let (s, t) = (e.start.max(at), e.end.min(end));
            if s > at {
                // A hole in the range: libc's madvise says what the kernel says.
                return Some(real_madvise(addr, len, advice));
            }
            if image_backed(&e, rest) {
                let prot = rustix::mm::ProtFlags::from_bits_truncate(e.prot);
                // SAFETY: replaces pages of the caller's own mapping, which it asked to drop,
                // with zeros under the same protection: what dropping anonymous pages does.
                let r = unsafe { rustix::mm::mmap_anonymous(s as *mut c_void, t - s, prot, rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED) };
                if r.is_err() {
                    return Some(real_madvise(addr, len, advice));
                }
            } else if real_madvise(s, t - s, advice) != 0 {
                return Some(-1);
            }
            at = t;
        }
        if at < end {
            return Some(real_madvise(addr, len, advice));
        }
        Some(0)
    })();
    LOCK.store(false, Ordering::Release);
    result
}
