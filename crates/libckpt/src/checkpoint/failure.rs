//! Why a checkpoint was not taken: the step that failed, the error, what was in the way.
//!
//! # Signal-safety fence
//! Used in the checkpoint signal handler and the writer: plain values and formatting into a
//! caller's fixed buffer ([`Line`]); no allocation, no locks, no libc.

use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::out::{Line, Lossy};
use core::fmt::Write;
use rustix::io::Errno;

/// Why a checkpoint was not taken.
pub struct Failure {
    /// The step that failed, e.g. "writing".
    pub step: &'static str,
    pub errno: Option<Errno>,
    /// Whether to name the temporary file in the message.
    pub names_file: bool,
    /// What is in the way at one of the image's names, if that is why.
    pub blocker: Option<Blocker>,
}

/// Something at one of the image's names (the image path, or `<image>.N` with `CKPT_KEEP`)
/// that is not one of this user's images, and what the checkpoint would not do because of it.
#[derive(Clone, Copy)]
pub struct Blocker {
    /// 0 for the image path, N for `<image>.N`.
    pub generation: u32,
    /// "a directory", "a FIFO", …, or "a file".
    pub kind: &'static str,
    /// Its owner, when that is another user.
    pub uid: Option<u32>,
    /// Why it stops the checkpoint, e.g. ", not one of this user's images: older images are
    /// not moved over it".
    pub then: &'static str,
}

impl Failure {
    pub fn new(step: &'static str, errno: Errno) -> Failure {
        Failure { step, errno: Some(errno), names_file: false, blocker: None }
    }
    pub fn plain(step: &'static str) -> Failure {
        Failure { step, errno: None, names_file: false, blocker: None }
    }
    /// A failure already reported in full.
    pub fn silent() -> Failure {
        Failure { step: "", errno: None, names_file: false, blocker: None }
    }
    pub fn on_file(step: &'static str, errno: Errno) -> Failure {
        Failure { step, errno: Some(errno), names_file: true, blocker: None }
    }
    pub fn blocked(blocker: Blocker, errno: Option<Errno>) -> Failure {
        Failure { step: "blocked", errno, names_file: false, blocker: Some(blocker) }
    }

    /// Why, in a few words: the step, the file, the error (nothing for a silent failure).
    pub fn reason(&self, line: &mut Line) {
        let mut image = [0u8; ckpt_image::state::PATH_MAX + 32];
        let path = crate::config::this_process_image(&mut image).unwrap_or(crate::config::get().image_path());
        if let Some(b) = self.blocker {
            let _ = write!(line, "{}", Lossy(path));
            if b.generation > 0 {
                let _ = write!(line, ".{}", b.generation);
            }
            let _ = write!(line, " is {}", b.kind);
            if let Some(uid) = b.uid {
                let _ = write!(line, " of uid {uid}");
            }
            let _ = write!(line, "{}", b.then);
        } else {
            let _ = write!(line, "{}", self.step);
            if self.names_file {
                let _ = write!(line, " {}", Lossy(path));
            }
        }
        if let Some(e) = self.errno {
            let _ = write!(line, ": {}", describe(e));
        }
    }
}
