//! The internal signal that stops the program's other threads for a checkpoint, and how many
//! threads one checkpoint stops at most. The handler of the checkpoint signal (`threads`), the
//! capture of signal state (`capture`), the scratch area's room for thread ids (`scratch`) and
//! the interposed `sigaction` (`guard`, which notices a program taking the signal) all go by
//! these.
//!
//! # Signal-safety fence
//! Constants only: nothing here runs.

/// The internal signal that stops a thread for a checkpoint (`SIGRTMAX - 1`).
pub const STOP_SIGNAL: i32 = 63;
/// Most threads one image holds.
pub const MAX_THREADS: usize = 4096;
