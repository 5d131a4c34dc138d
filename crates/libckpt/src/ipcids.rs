//! Remembers the System V IPC objects the program got, so that a checkpoint records them and a
//! restart makes them again under the same IDs.
//!
//! The kernel lists every object of the IPC namespace (`/proc/sysvipc`), the program's and
//! everyone else's, and none says which process uses it. So `shmget`, `semget` and `msgget` are
//! interposed: each ID they return is kept in a table (of this process, and inherited by its
//! children through `fork`; a restored process has it back with its memory). The checkpoint
//! handler reads the table, with the segments the process has attached (its maps), and records
//! those objects that still exist. An object whose ID reached the program another way (from
//! another program, or `syscall(SYS_shmget)`) is not in it unless attached.
//!
//! `semop` and `semtimedop` are interposed too, to note the semaphore sets this process changed
//! with `SEM_UNDO`: the kernel keeps those adjustments (undone when the process exits) where no
//! one can read them, so a restart cannot make them again, and the checkpoint names each set.
//!
//! The table is a static array of words, each claimed with one atomic compare-and-swap; the
//! handler reads only claimed words, and takes no lock.

#[cfg(not(test))]
use core::ffi::c_int;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use ckpt_image::ipc::{KIND_MSG, KIND_SEM, KIND_SHM};
use ckpt_image::limits::MAX_IPC_OBJECTS;

static TABLE: [AtomicU64; MAX_IPC_OBJECTS] = [const { AtomicU64::new(0) }; MAX_IPC_OBJECTS];
/// Set when an ID did not fit in the table (the checkpoint says so).
pub static OVERFLOW: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Semaphore sets changed with `SEM_UNDO`: the PID that did it in the high half (a forked child
/// has no adjustments of its parent's), the ID + 1 in the low.
static UNDO: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
static REAL_SEMOP: AtomicUsize = AtomicUsize::new(0);
static REAL_SEMTIMEDOP: AtomicUsize = AtomicUsize::new(0);
static REAL_SHMGET: AtomicUsize = AtomicUsize::new(0);
static REAL_SEMGET: AtomicUsize = AtomicUsize::new(0);
static REAL_MSGGET: AtomicUsize = AtomicUsize::new(0);

pub fn prepare() {
    crate::guard::real(&REAL_SHMGET, c"shmget");
    crate::guard::real(&REAL_SEMGET, c"semget");
    crate::guard::real(&REAL_MSGGET, c"msgget");
    crate::guard::real(&REAL_SEMOP, c"semop");
    crate::guard::real(&REAL_SEMTIMEDOP, c"semtimedop");
}

/// `SEM_UNDO` in a `sembuf`'s flags.
const SEM_UNDO: i16 = 0x1000;

/// The kernel's `struct sembuf`.
#[repr(C)]
pub struct SemBuf {
    num: u16,
    op: i16,
    flags: i16,
}

/// Notes that this process changed set `id` with `SEM_UNDO` (once; a full table keeps what it
/// has, and the checkpoint says it may not name them all).
fn note_undo(id: i32, pid: u32) {
    let w = (pid as u64) << 32 | (id as u32 as u64 + 1);
    for slot in &UNDO {
        match slot.compare_exchange(0, w, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(old) if old == w => return,
            Err(_) => {}
        }
    }
}

/// The semaphore sets process `pid` changed with `SEM_UNDO` (for the checkpoint handler).
pub fn each_undo(pid: u32, mut f: impl FnMut(i32)) {
    for slot in &UNDO {
        let w = slot.load(Ordering::Acquire);
        if w == 0 {
            break;
        }
        if (w >> 32) as u32 == pid {
            f(((w & 0xffff_ffff) as u32).wrapping_sub(1) as i32);
        }
    }
}

/// After a successful `semop`: notes `SEM_UNDO` in any of its operations.
fn after_semop(id: i32, sops: *const SemBuf, n: usize) {
    if sops.is_null() {
        return;
    }
    // SAFETY: the caller's array of `n` operations, which libc's call has just read.
    let ops = unsafe { core::slice::from_raw_parts(sops, n) };
    if ops.iter().any(|o| o.flags & SEM_UNDO != 0) {
        note_undo(id, rustix::process::getpid().as_raw_nonzero().get() as u32);
    }
}

/// # Safety
/// As libc's `semop`: `sops` points at `n` operations.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semop(id: c_int, sops: *mut SemBuf, n: usize) -> c_int {
    let f = crate::guard::real(&REAL_SEMOP, c"semop");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: unsafe extern "C" fn(c_int, *mut SemBuf, usize) -> c_int = unsafe { core::mem::transmute(f) };
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { real(id, sops, n) };
    if r == 0 {
        after_semop(id, sops, n);
    }
    r
}

/// # Safety
/// As libc's `semtimedop`: `sops` points at `n` operations, `timeout` is null or a timespec.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semtimedop(id: c_int, sops: *mut SemBuf, n: usize, timeout: *const core::ffi::c_void) -> c_int {
    let f = crate::guard::real(&REAL_SEMTIMEDOP, c"semtimedop");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: unsafe extern "C" fn(c_int, *mut SemBuf, usize, *const core::ffi::c_void) -> c_int = unsafe { core::mem::transmute(f) };
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { real(id, sops, n, timeout) };
    if r == 0 {
        after_semop(id, sops, n);
    }
    r
}

/// A word of the table: the kind in the high half, the ID + 1 in the low (0 is a free word).
fn word(kind: u32, id: i32) -> u64 {
    (kind as u64) << 32 | (id as u32 as u64 + 1)
}

/// Notes object `id` of `kind` (once); a full table keeps what it has.
pub fn remember(kind: u32, id: i32) {
    if id < 0 {
        return;
    }
    let w = word(kind, id);
    for slot in &TABLE {
        match slot.compare_exchange(0, w, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(old) if old == w => return,
            Err(_) => {}
        }
    }
    OVERFLOW.store(true, Ordering::Relaxed);
}

/// The remembered objects (for the checkpoint handler): `(kind, id)`.
pub fn each(mut f: impl FnMut(u32, i32)) {
    for slot in &TABLE {
        let w = slot.load(Ordering::Acquire);
        if w == 0 {
            break;
        }
        f((w >> 32) as u32, ((w & 0xffff_ffff) as u32).wrapping_sub(1) as i32);
    }
}

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn shmget(key: c_int, size: usize, flags: c_int) -> c_int {
    let f = crate::guard::real(&REAL_SHMGET, c"shmget");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: extern "C" fn(c_int, usize, c_int) -> c_int = unsafe { core::mem::transmute(f) };
    let id = real(key, size, flags);
    remember(KIND_SHM, id);
    id
}

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn semget(key: c_int, nsems: c_int, flags: c_int) -> c_int {
    let f = crate::guard::real(&REAL_SEMGET, c"semget");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: extern "C" fn(c_int, c_int, c_int) -> c_int = unsafe { core::mem::transmute(f) };
    let id = real(key, nsems, flags);
    remember(KIND_SEM, id);
    id
}

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn msgget(key: c_int, flags: c_int) -> c_int {
    let f = crate::guard::real(&REAL_MSGGET, c"msgget");
    // SAFETY: libc's function, found by dlsym, with the type libc declares.
    let real: extern "C" fn(c_int, c_int) -> c_int = unsafe { core::mem::transmute(f) };
    let id = real(key, flags);
    remember(KIND_MSG, id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_once_each() {
        remember(KIND_SEM, 0);
        remember(KIND_SEM, 0);
        remember(KIND_MSG, 7);
        remember(KIND_SHM, -1);
        let mut seen = Vec::new();
        each(|k, id| seen.push((k, id)));
        assert_eq!(seen, vec![(KIND_SEM, 0), (KIND_MSG, 7)]);
    }

    #[test]
    fn undo_is_noted_per_process() {
        let ops = [SemBuf { num: 0, op: 1, flags: 0 }, SemBuf { num: 1, op: -1, flags: SEM_UNDO }];
        after_semop(5, ops.as_ptr(), 1);
        after_semop(6, ops.as_ptr(), 2);
        note_undo(9, 1);
        let me = std::process::id();
        let mut seen = Vec::new();
        each_undo(me, |id| seen.push(id));
        assert_eq!(seen, vec![6]);
    }
}
