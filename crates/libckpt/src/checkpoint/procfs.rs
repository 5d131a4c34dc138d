//! Small readers for `/proc/self/*` files and clocks, into caller-owned buffers.

use rustix::fs::{Mode, OFlags};
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

/// The value after `key` on its line of a `/proc/self/status` text, trimmed.
pub fn status_field<'a>(status: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    status
        .split(|&c| c == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .map(|v| v.trim_ascii())
}

pub fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| c.is_ascii_digit().then(|| v * 10 + (c - b'0') as u64))
}

pub fn parse_oct(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u32, |v, &c| (b'0'..=b'7').contains(&c).then(|| v * 8 + (c - b'0') as u32))
}

/// Field `n` (1-based, as in proc(5)) of `/proc/self/stat`. The command name (field 2) may
/// contain spaces, so fields are counted from the last `)`.
pub fn stat_field(stat: &[u8], n: usize) -> Option<u64> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    let rest = &stat[close + 1..];
    // Field 3 is the first after ')'.
    rest.split(|&c| c == b' ').filter(|f| !f.is_empty()).nth(n.checked_sub(3)?).and_then(|f| parse_dec(f.trim_ascii()))
}

/// `readlink` of a `/proc/self` link into `buf`; returns the length.
pub fn readlink(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let n = rustix::fs::readlinkat_raw(rustix::fs::CWD, path, &mut *buf)?;
    if n >= buf.len() {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(n)
}

/// Reads a small file into `buf`, returning its length.
pub fn read_small(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}
