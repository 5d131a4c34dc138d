//! The report page: how a process running libckpt tells the `ckpt` command what became of a
//! checkpoint it asked for.
//!
//! Each process running libckpt has one page of shared memory, a memfd named
//! [`REPORT_NAME`] that it keeps open (close-on-exec, at a high descriptor number) and mapped.
//! Its image writers (forked processes) share the page. It holds which writer is at work (so
//! that two checkpoints of one image are never written at once), and the outcome of the last
//! checkpoint: written or not, why not, and what the program did then. `ckpt` reads it
//! through `/proc/PID/fd/N`, which the process's owner may open, so it can say the writer's
//! own reason instead of "see the program's stderr".
//!
//! The page is a table of 32-bit words, each read and written whole (as atomics by libckpt),
//! then the text of the last failure:
//!
//! ```text
//!   word 0  MAGIC     "CKRP"
//!   word 1  WRITER    PID of the image writer at work (0: none)
//!   word 2  SMAPS     1: every checkpoint reads /proc/self/smaps
//!   word 3  OWNER     PID of the process the page belongs to (as that process sees it)
//!   word 4  FINISHED  PID of the writer that finished last
//!   word 5  STARTED   checkpoints asked for so far (counts up)
//!   word 6  DONE      the value STARTED had for the checkpoint whose outcome follows; written
//!                     after OUTCOME and the message
//!   word 7  OUTCOME   see [`Outcome`]
//!   word 8  MESSAGE_LEN
//!   word 9  LOCK      PID of the process writing an outcome (0: none); DONE, OUTCOME and the
//!                     message change only under it, and DONE only ever grows
//!   word 10 TO_SEQ    number of the redirection below (0: none); written by `ckpt`
//!   word 11 TO_LEN    length of its path
//!   word 12 TO_TAKEN  the number (STARTED) of the checkpoint that took the redirection;
//!                     written by the handler just before it clears TO_SEQ
//!   word 13 FORK_ALL  1: every writer is forked with all of the program's memory (a writer
//!                     forked without its unwritten memory found a page of it no base holds)
//!   bytes 64..64+MAX_MESSAGE  why the checkpoint failed (no "ckpt: " prefix)
//!   bytes TO_AT..TO_AT+TO_LEN  the path of the redirection (`ckpt checkpoint --to PATH`)
//! ```
//!
//! The redirection is the one part `ckpt` writes (it opens the page read-write through
//! `/proc/PID/fd/N`): it sets TO_SEQ to 0, writes the path and TO_LEN, then sets TO_SEQ to a
//! number of its own, which the checkpoint request it then queues carries too
//! (`ckpt_sigsafe::signals::with_redirect`). The checkpoint handler takes the path only for a
//! request that carries the number the page holds, reading TO_SEQ before and after the path
//! (so a path being rewritten is never taken), and clears TO_SEQ as it takes it, after
//! writing TO_TAKEN: a redirection is used once, and never by a checkpoint it was not written
//! for, and `ckpt` knows which checkpoint's outcome is the one it asked for.
//!
//! A page the process stopped using (it made a new one: a descriptor it had lost, after a
//! restart) has OWNER 0, so that a reader that still holds it open looks for the new one.

/// The memfd's name (`/proc/PID/fd/N` links to `/memfd:ckpt-report (deleted)`).
pub const REPORT_NAME: &core::ffi::CStr = c"ckpt-report";
/// Bytes of the page.
pub const REPORT_LEN: usize = 4096;
/// Word indices.
pub const MAGIC: usize = 0;
pub const WRITER: usize = 1;
pub const SMAPS: usize = 2;
pub const OWNER: usize = 3;
pub const FINISHED: usize = 4;
pub const STARTED: usize = 5;
pub const DONE: usize = 6;
pub const OUTCOME: usize = 7;
pub const MESSAGE_LEN: usize = 8;
pub const LOCK: usize = 9;
pub const TO_SEQ: usize = 10;
pub const TO_LEN: usize = 11;
pub const TO_TAKEN: usize = 12;
pub const FORK_ALL: usize = 13;
/// Words in the table.
pub const WORDS: usize = 16;
/// The value of word [`MAGIC`].
pub const MAGIC_VALUE: u32 = u32::from_le_bytes(*b"CKRP");
/// Where the message starts, and its longest length.
pub const MESSAGE_AT: usize = 64;
pub const MAX_MESSAGE: usize = 1024;
/// Where the redirection's path starts, and its longest length (it must also leave room for the
/// names made beside an image: see [`TO_PATH_MAX`]).
pub const TO_AT: usize = MESSAGE_AT + MAX_MESSAGE;
pub const TO_ROOM: usize = REPORT_LEN - TO_AT;
/// The longest path a redirection may name: room is left in a handler's buffers for the
/// temporary and base names made beside it.
pub const TO_PATH_MAX: usize = 2048;
const _: () = assert!(TO_PATH_MAX <= TO_ROOM);

/// What became of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The image is in place; the program goes on.
    Written = 1,
    /// Not written; the program goes on, and nothing at the image path changed.
    Failed = 2,
    /// A last checkpoint: the image is in place, and the program ends.
    LastWritten = 3,
    /// A last checkpoint that was not written; an earlier complete image of this run is at the
    /// image path, so the program ends as asked.
    LastFailedEnds = 4,
    /// A last checkpoint that was not written, and no image of this run exists: the program
    /// goes on rather than lose its work.
    LastFailedGoesOn = 5,
    /// The same, for a caller that asked the program to stop instead (`ckpt job`): it stopped
    /// itself (SIGSTOP), alive, until it is continued or asked again.
    LastFailedStopped = 6,
    /// A last checkpoint taken to hold the program (`ckpt checkpoint --hold`): the image is in
    /// place, and the program (its whole tree) stops itself (SIGSTOP) instead of ending.
    Held = 7,
}

impl Outcome {
    pub fn from_u32(v: u32) -> Option<Outcome> {
        Some(match v {
            1 => Outcome::Written,
            2 => Outcome::Failed,
            3 => Outcome::LastWritten,
            4 => Outcome::LastFailedEnds,
            5 => Outcome::LastFailedGoesOn,
            6 => Outcome::LastFailedStopped,
            7 => Outcome::Held,
            _ => return None,
        })
    }

    /// Whether the image was written.
    pub fn written(self) -> bool {
        matches!(self, Outcome::Written | Outcome::LastWritten | Outcome::Held)
    }
}

/// The page as `ckpt` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    pub owner: u32,
    pub writer: u32,
    pub started: u32,
    pub done: u32,
    /// The outcome of checkpoint `done` (`None` before the first one ends).
    pub outcome: Option<Outcome>,
    pub message: &'a [u8],
    /// An outcome was being written when the page was read: read it again.
    pub busy: bool,
}

fn word(page: &[u8], i: usize) -> u32 {
    let b = &page[i * 4..i * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Report<'a> {
    /// Decodes a page; `None` if it is not one.
    pub fn read(page: &'a [u8]) -> Option<Report<'a>> {
        if page.len() < MESSAGE_AT + MAX_MESSAGE || word(page, MAGIC) != MAGIC_VALUE {
            return None;
        }
        let len = (word(page, MESSAGE_LEN) as usize).min(MAX_MESSAGE);
        Some(Report {
            owner: word(page, OWNER),
            writer: word(page, WRITER),
            started: word(page, STARTED),
            done: word(page, DONE),
            outcome: Outcome::from_u32(word(page, OUTCOME)),
            message: &page[MESSAGE_AT..MESSAGE_AT + len],
            busy: word(page, LOCK) != 0,
        })
    }
}
