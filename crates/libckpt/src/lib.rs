//! `libckpt.so`: preloaded into a program, it turns `SIGUSR2` into a checkpoint image.
//!
//! - [`init`] runs before `main()` (from `.init_array`): it fixes the image path and installs the
//!   signal handler. It runs in ordinary context and may use libc.
//! - [`checkpoint`] is everything the signal handler does. It is async-signal-safe: no
//!   allocation, no locks, no libc, only raw system calls and memory it maps itself.
//! - [`resume`] is the trampoline myrestart jumps to in the restored process.
//! - [`attached`] is the entry `ckpt checkpoint PID` calls in a process that does not run
//!   libckpt, after mapping a copy of this library there: the same checkpoint, without the
//!   constructor or a signal handler.
//! - [`stop`] is the internal signal that stops the other threads for a checkpoint, which the
//!   handler sends (tagged, so that the program's own signals of that number reach it).
//! - [`turn`] lets one checkpoint run at a time in a process: a checkpoint signal another thread
//!   takes meanwhile waits for the one under way to end.
//! - [`guard`] interposes `sigaction`/`signal`: the program's actions for ckpt's two signals are
//!   kept by [`actions`], while libckpt's handlers stay installed and pass the program's own
//!   signals on to it; [`deliverable`] keeps ckpt's two signals out of the masks and waited
//!   sets the program hands the kernel, and [`sigwaits`] interposes the calls that wait for
//!   signals; [`invisible`] interposes the sleeps and waits a checkpoint would cut
//!   short; [`watches`] `inotify_add_watch`, for the paths of watches; [`ipcids`]
//!   `shmget`, `semget` and `msgget`, for the System V objects to record; [`dropped`] `madvise`,
//!   so that pages a restored process drops read as zeros again.
//!
//! The crate is `no_std` without `alloc`, so "the handler does not allocate" is checked by the
//! compiler, not by review. (Unit tests build it for the host with std and the test harness;
//! there the constructor, the interposed functions and the panic handler are left out.)
#![cfg_attr(not(test), no_std)]
// Without the constructor (left out of unit tests) most of the crate is unreachable there.
#![cfg_attr(test, allow(dead_code))]
#![deny(unsafe_code)]

// unsafe: calls the program's own handlers, with the kernel's siginfo and ucontext, and reads
// and writes the program's `sigaction`s.
#[allow(unsafe_code)]
mod actions;
// unsafe: the exported entry `ckpt` calls with the address of the block it wrote.
#[allow(unsafe_code)]
mod attached;
mod checkpoint;
mod golang;
// unsafe: settings in a static written once by the constructor, read by the handler.
#[allow(unsafe_code)]
mod config;
// unsafe: interposes libc's `madvise` (found by `dlsym`) and refills dropped pages.
#[allow(unsafe_code)]
mod dropped;
// unsafe: copies and changes the program's `sigset_t`s and `sigaction`s on their way to libc.
#[allow(unsafe_code)]
mod deliverable;
// unsafe: declares the trampolines (`unsafe extern`), which `resume`'s assembly defines.
#[allow(unsafe_code)]
mod entry;
// unsafe: interposes the `exec` family, passing C pointers on to libc.
#[allow(unsafe_code)]
mod exec;
// unsafe: interposes `sigaction`, `signal`, `sigprocmask` and `pthread_sigmask`, passing C pointers on to libc.
#[allow(unsafe_code)]
mod guard;
// unsafe: the constructor: reads `environ`, installs the handler with `sigaction`.
#[allow(unsafe_code)]
mod init;
// unsafe: interposes sleeps and waits, passing C pointers on to libc.
#[allow(unsafe_code)]
mod invisible;
// unsafe: interposes `shmget`, `semget`, `msgget`, `semop` and `semtimedop` (found by `dlsym`),
// reading the operations a caller passes.
#[allow(unsafe_code)]
mod ipcids;
// unsafe: a static written once by the constructor, read by the writer.
#[allow(unsafe_code)]
mod origin;
// unsafe: the attach probe, an exported function that writes into the block ckpt passes by
// address, and reads the floating-point control registers and flags it runs with.
#[allow(unsafe_code)]
mod probe;
// unsafe: the trampoline: assembly that the restored process jumps to.
#[allow(unsafe_code)]
mod resume;
// unsafe: interposes `sigsuspend`, `sigwait`, `sigwaitinfo`, `sigtimedwait`, `signalfd` and
// `epoll_pwait2`, passing C pointers on to libc.
#[allow(unsafe_code)]
mod sigwaits;
mod stop;
mod turn;
// unsafe: interposes `inotify_add_watch`; a table of watches in a mapping shared with the handler.
#[allow(unsafe_code)]
mod watches;

#[cfg(not(test))]
#[panic_handler]
fn on_panic(info: &core::panic::PanicInfo) -> ! {
    // In a program ckpt attached to, the thread stops for ckpt instead (returns otherwise).
    attached::panicked(info);
    // Never unwind through someone else's program. Say what happened, then stop this process the
    // way an assertion failure would.
    ckpt_sigsafe::say!("ckpt: internal error: {}", info.message());
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::ABORT);
    ckpt_sigsafe::sys::exit_group(134)
}

/// The precompiled `core` refers to the unwinding personality routine even though this crate is
/// built with `panic = "abort"` and never unwinds; this definition satisfies the linker and is
/// never called.
#[cfg(not(test))]
#[allow(unsafe_code)] // an exported symbol by name, which Rust cannot check for clashes
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
