//! The internal signal that stops the program's other threads for a checkpoint, and how many
//! threads one checkpoint stops at most. The constructor installs its handler (`init`), the
//! checkpoint sends it and captures signal state around it (`checkpoint::threads`,
//! `checkpoint::capture`) and makes room for thread ids (`checkpoint::scratch`), and the
//! interposed `sigaction` notices a program taking it (`guard`): all go by these.
//!
//! # Signal-safety fence
//! Constants only: nothing here runs.

/// The internal signal that stops a thread for a checkpoint (`SIGRTMAX - 1`).
pub const STOP_SIGNAL: i32 = 63;
/// Most threads one image holds (the restart's limit too: one place, `ckpt_image::limits`).
pub use ckpt_image::limits::MAX_THREADS;
