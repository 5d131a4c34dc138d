//! Helpers for code that runs where almost nothing is allowed: libckpt's checkpoint signal
//! handler and myrestart before (and after) its point of no return.
//!
//! Everything here is async-signal-safe by construction: `no_std`, no allocator, no locks, no
//! libc. It uses only raw system calls (through `rustix` where it offers them, [`sys`] where it
//! does not) and buffers that the caller owns.
#![no_std]

pub mod errno;
pub mod extents;
pub mod maps;
pub mod out;
pub mod proctext;
pub mod signals;
pub mod sockets;
pub mod sys;

/// Page size on x86-64.
pub const PAGE: usize = 4096;

pub const fn page_down(v: usize) -> usize {
    v & !(PAGE - 1)
}

pub const fn page_up(v: usize) -> usize {
    (v + PAGE - 1) & !(PAGE - 1)
}
