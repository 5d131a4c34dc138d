//! Small readers for `/proc/self/*` files and clocks, into caller-owned buffers.

use rustix::io::Errno;
use rustix::time::{clock_gettime, ClockId};

pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub fn realtime_ns() -> u64 {
    let t = clock_gettime(ClockId::Realtime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub use ckpt_sigsafe::proctext::{parse_dec, parse_oct, stat_field, status_field};

/// `readlink` of a `/proc/self` link into `buf`; returns the length.
pub fn readlink(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let n = rustix::fs::readlinkat_raw(rustix::fs::CWD, path, &mut *buf)?;
    if n >= buf.len() {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(n)
}

