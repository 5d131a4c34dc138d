//! Small readers for `/proc/self/*` files and clocks, into caller-owned buffers.

use rustix::io::Errno;
use rustix::time::{clock_gettime, ClockId};

/// Calls `each` with every descriptor open in this process (listed in `/proc/self/fd`, the
/// listing's own left out) until it returns `Some`, which is then returned; `Ok(None)` if none
/// did; `Err` if the listing cannot be opened. A stack buffer for the listing: signal-safe.
pub fn find_own_fd<T>(mut each: impl FnMut(i32) -> Option<T>) -> Result<Option<T>, Errno> {
    use rustix::fd::AsRawFd;
    use rustix::fs::{Mode, OFlags};
    let dir = rustix::fs::open(c"/proc/self/fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut dirbuf = [core::mem::MaybeUninit::<u8>::uninit(); 2048];
    let mut raw = rustix::fs::RawDir::new(&dir, &mut dirbuf);
    while let Some(Ok(entry)) = raw.next() {
        let Some(fd) = parse_dec(entry.file_name().to_bytes()) else { continue };
        if fd as i32 == dir.as_raw_fd() {
            continue;
        }
        if let Some(found) = each(fd as i32) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

pub use ckpt_sigsafe::sys::monotonic_ns;

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

