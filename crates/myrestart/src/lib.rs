//! The parts of myrestart that are plain logic: the command line, self-relocation and the
//! search for free addresses. They live in this library so that they are unit-tested on the
//! host; the `myrestart` binary (`main.rs`), which has no C runtime, cannot run a test harness.
//!
//! Like the binary, this is `no_std` and allocates nothing.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

// unsafe: reads the command line from the initial stack, and blanks it in place.
#[allow(unsafe_code)]
pub mod args;
pub mod gap;
// unsafe: applies our own relocations: writes through pointers the ELF headers give.
#[allow(unsafe_code)]
pub mod relocate;
pub use ckpt_sigsafe::trust;

/// Exit status for "the image cannot be restored" (bad input, refused before any change).
pub const EXIT_REFUSED: i32 = 2;
/// Exit status for a failure after the point of no return.
pub const EXIT_LOST: i32 = 3;
/// Addresses at or above this are not user memory on a 4-level-paging x86-64 kernel.
pub const TASK_END: usize = 0x7fff_ffff_f000;
