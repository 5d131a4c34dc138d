//! `CKPT_TIMES=1`: when each step of a checkpoint ended, from the start of the handler's work,
//! said in one line on stderr by the process that wrote the image once it is in place. The
//! handler's marks reach a forked writer in its copy of memory; the writer adds its own.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler and the writer: atomics, the clock and one `write`.

use super::procfs::monotonic_ns;
use ckpt_sigsafe::out::Line;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The steps, in the order they end.
#[derive(Clone, Copy)]
pub enum Phase {
    /// The handler begins.
    Start,
    /// The program's other threads (and its tree) are stopped.
    Stopped,
    /// The memory layout is read, and what a forked writer cannot see is copied.
    Layout,
    /// The process's own state (signals, timers, threads' registers, limits…) is captured.
    State,
    /// Its descriptors are captured.
    Fds,
    /// The files it wrote are noted (`written`).
    Written,
    /// The temporary file is made (and a tree's members have captured theirs), and the pages
    /// written since the last image are found (tracking).
    Captured,
    /// The forked writer runs (its first step).
    Writer,
    /// The writer has closed what it does not need and checked its memory.
    Closed,
    /// What each region keeps is decided (the mapped files named, their bytes hashed).
    Decided,
    /// Pages stored elsewhere (an earlier image, the tree's root) are planned.
    Planned,
    /// The memory is written and hashed.
    Data,
    /// Deleted files, the tree's parts and the headers are written.
    Headers,
    /// The image is on disk (`fsync`).
    Synced,
    /// It is renamed into place.
    Renamed,
    /// Images no longer needed are removed.
    Done,
}

const N: usize = Phase::Done as usize + 1;
const NAMES: [&str; N] = ["start", "stopped", "layout", "state", "fds", "written", "captured", "writer", "closed", "decided", "planned", "data", "headers", "synced", "renamed", "done"];

static MARKS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
/// Bytes of memory the writer was forked without (see `unforked`), and whether they are zeros
/// (else unwritten memory).
static UNFORKED: AtomicU64 = AtomicU64::new(0);
static UNFORKED_ZEROS: AtomicBool = AtomicBool::new(false);

/// Notes that `p` has ended now, if the steps are timed.
pub fn mark(p: Phase) {
    if crate::config::get().times {
        MARKS[p as usize].store(monotonic_ns(), Relaxed);
    }
}

/// A new checkpoint begins at `started`: the earlier marks are forgotten.
pub fn begin(started: u64) {
    if crate::config::get().times {
        for m in &MARKS {
            m.store(0, Relaxed);
        }
        MARKS[Phase::Start as usize].store(started, Relaxed);
        UNFORKED.store(0, Relaxed);
    }
}

/// Notes how many bytes the writer about to be forked is forked without, and whether they are
/// zeros.
pub fn unforked(bytes: u64, zeros: bool) {
    if crate::config::get().times {
        UNFORKED.store(bytes, Relaxed);
        UNFORKED_ZEROS.store(zeros, Relaxed);
    }
}

/// Says on stderr, in milliseconds from the start, when each step marked so far ended, and
/// when the start was (`CLOCK_MONOTONIC`, in ns):
/// `ckpt: times PID at NS: stopped 0.10 layout 0.52 … done 41.20 (ms)`; then, if the writer was
/// forked without some memory (see `unforked`), how much: `ckpt: writer PID was forked without
/// N MiB of unwritten memory` (or `of memory holding only zeros`).
pub fn say() {
    if !crate::config::get().times {
        return;
    }
    let start = MARKS[Phase::Start as usize].load(Relaxed);
    let mut line = Line::new();
    let _ = write!(line, "ckpt: times {} at {start}:", rustix::process::getpid().as_raw_nonzero().get());
    for (m, name) in MARKS.iter().zip(NAMES).skip(1) {
        let t = m.load(Relaxed);
        if t >= start && t != 0 {
            let us = (t - start) / 1000;
            let _ = write!(line, " {name} {}.{:02}", us / 1000, us % 1000 / 10);
        }
    }
    let _ = write!(line, " (ms)");
    line.emit();
    let unforked = UNFORKED.load(Relaxed);
    if unforked != 0 {
        let mut line = Line::new();
        let what = if UNFORKED_ZEROS.load(Relaxed) { "memory holding only zeros" } else { "unwritten memory" };
        let _ = write!(line, "ckpt: writer {} was forked without {} MiB of {what}", rustix::process::getpid().as_raw_nonzero().get(), unforked >> 20);
        line.emit();
    }
}
