//! Where a restored process enters libckpt: the addresses of the two trampolines (`resume.rs`
//! defines them in assembly), which every image records (`NT_CKPT_STATE`) for myrestart to jump
//! to, and the counters the trampolines' threads meet on, which the checkpoint clears. Apart
//! from `resume.rs` so that the checkpoint, which records and clears them, and the resume, which
//! calls back into the checkpoint's state after a restore, do not depend on each other.
//!
//! # Signal-safety fence
//! Symbol addresses and atomic stores only (called by the checkpoint's coordinator in the
//! signal handler): no allocation, no locks, no libc.

use core::sync::atomic::{AtomicU32, Ordering};

/// Other threads that have left myrestart's block (futex word).
pub static THREADS_STARTED: AtomicU32 = AtomicU32::new(0);
/// Set by the leader when the process is whole: the other threads may resume (futex word).
pub static THREADS_GO: AtomicU32 = AtomicU32::new(0);
/// How long a waiting thread sleeps before it looks again (`struct timespec`): with
/// `--stopped`, the go is given without a wake, while every thread is stopped.
pub static POLL: [i64; 2] = [0, 10_000_000];

/// Clears the counters, so that the image (taken right after this) holds them at zero for the
/// restart. Called by the checkpoint's coordinator while every other thread is stopped.
pub fn prepare_for_restore() {
    THREADS_STARTED.store(0, Ordering::SeqCst);
    THREADS_GO.store(0, Ordering::SeqCst);
}

unsafe extern "C" {
    fn ckpt_resume() -> !;
    fn ckpt_thread_resume() -> !;
}

/// The address myrestart jumps to, in the restored process's first thread.
pub fn trampoline_address() -> usize {
    ckpt_resume as *const () as usize
}

/// The address each other restored thread starts at.
pub fn thread_trampoline_address() -> usize {
    ckpt_thread_resume as *const () as usize
}
