//! Remembers the path of every inotify watch, so that a restart can add it again.
//!
//! The kernel keeps only the watched inode (its `fdinfo` shows inode and device, not a path), so
//! `inotify_add_watch` and `inotify_rm_watch` are interposed: each watch the program adds is
//! written into a table, with its path made absolute. The checkpoint handler reads the table
//! and keeps only the entries the kernel still lists, whose path still names the same inode.
//!
//! The table is a lazily mapped array of slots. A slot is claimed, filled and published with
//! one atomic state each way, so the handler (which may interrupt a thread in the middle of an
//! update) reads only published slots, and takes no lock.

use core::ffi::{c_char, c_int};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// Longest path kept; longer ones are not remembered (their watch is then named at checkpoint).
pub const PATH_MAX: usize = 4096;
/// Most watches remembered.
pub use ckpt_image::limits::MAX_WATCHES;

const FREE: u32 = 0;
const BUSY: u32 = 1;
const READY: u32 = 2;

#[repr(C)]
pub struct Slot {
    state: AtomicU32,
    pub fd: i32,
    pub wd: i32,
    pub len: u32,
    pub path: [u8; PATH_MAX],
}

static TABLE: AtomicPtr<Slot> = AtomicPtr::new(core::ptr::null_mut());
static REAL_ADD: AtomicUsize = AtomicUsize::new(0);
static REAL_RM: AtomicUsize = AtomicUsize::new(0);

type AddFn = unsafe extern "C" fn(c_int, *const c_char, u32) -> c_int;
type RmFn = unsafe extern "C" fn(c_int, c_int) -> c_int;

pub fn prepare() {
    crate::guard::real(&REAL_ADD, c"inotify_add_watch");
    crate::guard::real(&REAL_RM, c"inotify_rm_watch");
}

/// The table, mapped on first use (`None` if it could not be).
fn table() -> Option<&'static [Slot]> {
    let mut p = TABLE.load(Ordering::Acquire);
    if p.is_null() {
        let len = MAX_WATCHES * core::mem::size_of::<Slot>();
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh private anonymous mapping overlaps nothing.
        let fresh = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE) }
            .ok()? as *mut Slot;
        match TABLE.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => p = fresh,
            Err(other) => {
                // SAFETY: our own mapping, not published.
                let _ = unsafe { rustix::mm::munmap(fresh as *mut _, len) };
                p = other;
            }
        }
    }
    // SAFETY: the mapping holds MAX_WATCHES slots, zero-filled (all FREE) at first, and is never
    // unmapped; slots are only written by their claimant (see the module comment).
    Some(unsafe { core::slice::from_raw_parts(p, MAX_WATCHES) })
}

/// The published watches (for the checkpoint handler): `(fd, wd, path)`.
pub fn each(mut f: impl FnMut(i32, i32, &[u8])) {
    let p = TABLE.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: as in `table`.
    let slots = unsafe { core::slice::from_raw_parts(p, MAX_WATCHES) };
    for s in slots {
        if s.state.load(Ordering::Acquire) == READY {
            f(s.fd, s.wd, &s.path[..s.len as usize]);
        }
    }
}

/// Forgets watch `wd` of `fd` (removed, or about to be replaced).
fn forget(fd: c_int, wd: c_int) {
    let Some(slots) = table() else { return };
    for s in slots {
        if s.fd == fd && s.wd == wd && s.state.compare_exchange(READY, BUSY, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            s.state.store(FREE, Ordering::Release);
        }
    }
}

/// Writes `path`, made absolute against the working directory, into `out`; its length.
fn absolute(path: &[u8], out: &mut [u8; PATH_MAX]) -> Option<usize> {
    let mut len = 0;
    if path.first() != Some(&b'/') {
        len = rustix::fs::readlinkat_raw(rustix::fs::CWD, c"/proc/self/cwd", &mut out[..]).ok()?;
        if len >= PATH_MAX - 1 {
            return None;
        }
        if out[len - 1] != b'/' {
            out[len] = b'/';
            len += 1;
        }
    }
    let end = len.checked_add(path.len()).filter(|&e| e <= PATH_MAX)?;
    out[len..end].copy_from_slice(path);
    Some(end)
}

fn remember(fd: c_int, wd: c_int, path: &[u8]) {
    let Some(slots) = table() else { return };
    forget(fd, wd);
    let Some(s) = slots.iter().find(|s| s.state.compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed).is_ok()) else { return };
    let slot = s as *const Slot as *mut Slot;
    // SAFETY: the slot is ours alone while BUSY (claimed above); the handler skips it until it
    // is READY.
    let ok = unsafe {
        let path_buf = &mut (*slot).path;
        match absolute(path, path_buf) {
            Some(len) => {
                (*slot).fd = fd;
                (*slot).wd = wd;
                (*slot).len = len as u32;
                true
            }
            None => false,
        }
    };
    s.state.store(if ok { READY } else { FREE }, Ordering::Release);
}

/// # Safety
/// As libc's `inotify_add_watch`: `path` is a NUL-terminated string.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    let f = crate::guard::real(&REAL_ADD, c"inotify_add_watch");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: AddFn = unsafe { core::mem::transmute(f) };
    // SAFETY: the caller's arguments, passed on.
    let wd = unsafe { real(fd, path, mask) };
    if wd > 0 && !path.is_null() {
        // SAFETY: the caller promises a NUL-terminated string (libc's call just used it).
        remember(fd, wd, unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes());
    }
    wd
}

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn inotify_rm_watch(fd: c_int, wd: c_int) -> c_int {
    let f = crate::guard::real(&REAL_RM, c"inotify_rm_watch");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: RmFn = unsafe { core::mem::transmute(f) };
    // SAFETY: integers only.
    let r = unsafe { real(fd, wd) };
    if r == 0 {
        forget(fd, wd);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_made_absolute() {
        let mut out = [0u8; PATH_MAX];
        let n = absolute(b"/etc", &mut out).unwrap();
        assert_eq!(&out[..n], b"/etc");
        let n = absolute(b"sub/dir", &mut out).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(&out[..n], format!("{}/sub/dir", cwd.display()).as_bytes());
    }

    #[test]
    fn watches_are_remembered_replaced_and_forgotten() {
        remember(900, 1, b"/a");
        remember(900, 2, b"/b");
        remember(900, 1, b"/c");
        let mut seen = Vec::new();
        each(|fd, wd, p| if fd == 900 { seen.push((wd, p.to_vec())) });
        seen.sort();
        assert_eq!(seen, vec![(1, b"/c".to_vec()), (2, b"/b".to_vec())]);
        forget(900, 2);
        let mut n = 0;
        each(|fd, _, _| n += (fd == 900) as usize);
        assert_eq!(n, 1);
    }
}
