//! Keeps a process of a tree safe from the checkpoint signal while it starts another program.
//!
//! From `execve` until libckpt's constructor runs in the new program, the checkpoint signal
//! has its default action, which ends the process. A tree checkpoint whose root checked that
//! the process handles the signal just before the `execve`, and sends it just after, would
//! kill it (a shell running a program per step does that all the time). So the exec functions
//! are interposed: each blocks the checkpoint signal in the calling thread before calling
//! libc's, and unblocks it if the call fails. A signal that comes meanwhile stays pending,
//! blocked, across the exec, and the new program's constructor unblocks it once its handler
//! is in place ([`unblock_after_exec`]): the process then takes part in the checkpoint.
//!
//! The signal is blocked only when the new program is to run with libckpt (its environment
//! has an `LD_PRELOAD` naming libckpt): a program without it would keep it blocked. The
//! variadic `execl`, `execlp` and `execle`, and `posix_spawn`, go to the kernel inside libc
//! and are not covered.
//!
//! Ordinary context (not signal-safe, not called from the handler).

use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::AtomicUsize;

static REAL_EXECVE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECV: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVP: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVPE: AtomicUsize = AtomicUsize::new(0);
static REAL_FEXECVE: AtomicUsize = AtomicUsize::new(0);

type ExecveFn = unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// Resolves libc's functions now, from the constructor.
pub fn prepare() {
    use crate::guard::real;
    real(&REAL_EXECVE, c"execve");
    real(&REAL_EXECV, c"execv");
    real(&REAL_EXECVP, c"execvp");
    real(&REAL_EXECVPE, c"execvpe");
    real(&REAL_FEXECVE, c"fexecve");
}

/// In the constructor, once the checkpoint handler is installed: a checkpoint signal held
/// blocked across the `execve` that started this program is delivered now.
pub fn unblock_after_exec() {
    let bit = 1u64 << (crate::config::get().signal - 1);
    let _ = ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_UNBLOCK as usize, bit);
}

/// Whether an environment runs the new program with libckpt.
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings.
unsafe fn preloads_us(envp: *const *const c_char) -> bool {
    if envp.is_null() {
        return false;
    }
    let mut i = 0;
    loop {
        // SAFETY: the array is null-terminated (the caller's contract).
        let e = unsafe { *envp.add(i) };
        if e.is_null() {
            return false;
        }
        // SAFETY: each entry is a NUL-terminated string.
        let s = unsafe { CStr::from_ptr(e) }.to_bytes();
        if let Some(v) = s.strip_prefix(b"LD_PRELOAD=") {
            return v.windows(7).any(|w| w == b"libckpt");
        }
        i += 1;
    }
}

/// Runs `call` (libc's function `f`, or -1 with `ENOSYS` if there is none) with the checkpoint
/// signal blocked if `envp` preloads libckpt; unblocks it if the call returns (it failed).
///
/// # Safety
/// As [`preloads_us`] for `envp`.
unsafe fn guarded(f: usize, envp: *const *const c_char, call: impl FnOnce() -> c_int) -> c_int {
    if f == 0 {
        // SAFETY: libc's thread-local errno.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: as the caller's contract.
    if !unsafe { preloads_us(envp) } {
        return call();
    }
    let bit = 1u64 << (crate::config::get().signal - 1);
    let how = |h: u32| ckpt_sigsafe::sys::rt_sigprocmask(h as usize, bit);
    let before = how(linux_raw_sys::general::SIG_BLOCK);
    let r = call();
    // Still here: the exec failed. The signal is unblocked again (unless it was blocked before).
    if before.is_ok_and(|old| old & bit == 0) {
        let errno = crate::invisible::errno();
        let _ = how(linux_raw_sys::general::SIG_UNBLOCK);
        // SAFETY: libc's thread-local errno, set back to the exec's.
        unsafe { *libc::__errno_location() = errno };
    }
    r
}

/// `execve(2)`, as the program calls it.
///
/// # Safety
/// As for libc's `execve`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    let f = crate::guard::real(&REAL_EXECVE, c"execve");
    // SAFETY: f is libc's execve, called with the caller's arguments; envp as the contract.
    unsafe { guarded(f, envp, || core::mem::transmute::<usize, ExecveFn>(f)(path, argv, envp)) }
}

/// `execvpe(3)`, as the program calls it.
///
/// # Safety
/// As for libc's `execvpe`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    let f = crate::guard::real(&REAL_EXECVPE, c"execvpe");
    // SAFETY: as for execve.
    unsafe { guarded(f, envp, || core::mem::transmute::<usize, ExecveFn>(f)(file, argv, envp)) }
}

/// `execv(3)`, as the program calls it.
///
/// # Safety
/// As for libc's `execv`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    let f = crate::guard::real(&REAL_EXECV, c"execv");
    // SAFETY: f is libc's execv with the caller's arguments; `environ` is libc's environment.
    unsafe { guarded(f, environ, || core::mem::transmute::<usize, ExecvFn>(f)(path, argv)) }
}

/// `execvp(3)`, as the program calls it.
///
/// # Safety
/// As for libc's `execvp`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    let f = crate::guard::real(&REAL_EXECVP, c"execvp");
    // SAFETY: as for execv.
    unsafe { guarded(f, environ, || core::mem::transmute::<usize, ExecvFn>(f)(file, argv)) }
}

/// `fexecve(3)`, as the program calls it.
///
/// # Safety
/// As for libc's `fexecve`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    let f = crate::guard::real(&REAL_FEXECVE, c"fexecve");
    // SAFETY: as for execve.
    unsafe { guarded(f, envp, || core::mem::transmute::<usize, FexecveFn>(f)(fd, argv, envp)) }
}
