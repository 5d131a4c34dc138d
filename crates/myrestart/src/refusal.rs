//! A refusal: why the restart cannot go on, before its point of no return, as a value. It holds
//! its one line, formatted when the problem is found; nothing prints it but the place that
//! decides to end the process ([`Refusal::exit`], from `main.rs`, or from `hole.rs` if its last
//! step fails), so each problem is said once, and a refusal cannot go unsaid: a function that
//! refuses returns `Err(Refusal)`, and there is no empty one.
//!
//! # Restrictions
//! Made before the point of no return in myrestart: no allocation. The line lives in a fixed
//! buffer inside the value ([`ckpt_sigsafe::out::Line`], cut at its length).

use ckpt_sigsafe::out::{Line, Lossy};
use core::ffi::CStr;
use core::fmt::{self, Write};
use myrestart::EXIT_REFUSED;

/// One problem, said in one line: `myrestart: IMAGE: what` ([`refuse`]) or `myrestart: what`
/// ([`Refusal::new`]); `ckpt:` when run as `ckpt restart` (the line's [`Line::emit`] does that).
#[must_use = "a refusal is said where the process ends"]
pub struct Refusal(Line);

impl Refusal {
    /// A refusal that names no image: `myrestart: what`.
    pub fn new(what: fmt::Arguments) -> Refusal {
        let mut line = Line::new();
        let _ = line.write_fmt(format_args!("myrestart: {what}"));
        Refusal(line)
    }

    /// Says the line of one of several problems found together (files changed since the
    /// checkpoint), each a line of its own: the last is returned as the refusal, and ends the
    /// process.
    pub fn say_one_of_several(mut self) {
        self.0.emit();
    }

    /// Says the line on stderr and ends the process with [`EXIT_REFUSED`]: the only way a
    /// refusal is printed, but for [`Refusal::say_one_of_several`].
    pub fn exit(mut self) -> ! {
        self.0.emit();
        ckpt_sigsafe::sys::exit_group(EXIT_REFUSED)
    }
}

/// A refusal of the image at `image`: `myrestart: IMAGE: what`.
pub fn refuse(image: &CStr, what: fmt::Arguments) -> Refusal {
    Refusal::new(format_args!("{}: {what}", Lossy(image.to_bytes())))
}
