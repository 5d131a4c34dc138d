//! Reading a file into a buffer the caller owns, the one way the signal-safe code does it:
//! [`fill`] reads until the buffer is full or the file ends (interrupted reads are repeated);
//! [`read_whole`] is the whole file or `EFBIG`; [`read_start`] its first bytes, for `/proc`
//! texts whose fields of interest come first.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::{retry_on_intr, Errno};

/// Reads from `fd` until `buf` is full or the file ends; the bytes read.
pub fn fill(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = 0;
    while len < buf.len() {
        match retry_on_intr(|| rustix::io::read(&fd, &mut buf[len..]))? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

fn open(path: &core::ffi::CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
}

/// The whole file at `path` in `buf`, its length; `EFBIG` if it does not fit (a file exactly
/// as long as `buf` fits).
pub fn read_whole(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let fd = open(path)?;
    let len = fill(&fd, buf)?;
    if len == buf.len() && fill(&fd, &mut [0u8; 1])? != 0 {
        return Err(Errno::FBIG);
    }
    Ok(len)
}

/// The first `buf.len()` bytes of the file at `path` (all of it if shorter), their length.
pub fn read_start(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    fill(open(path)?, buf)
}

/// Whether the file at `path` (the path of a `MAP_SHARED` mapping) is a POSIX shared memory
/// object whose bytes an image stores ([`ckpt_image::region::stores_shared_file`]): a file in
/// `/dev/shm` on a tmpfs (statfs is asked only for a path there).
pub fn is_shm_object(path: &core::ffi::CStr) -> bool {
    let bytes = path.to_bytes();
    ckpt_image::region::stores_shared_file(bytes, true)
        && ckpt_image::region::stores_shared_file(bytes, rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u32 == linux_raw_sys::general::TMPFS_MAGIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_or_too_big() {
        // /proc/self/comm is the thread's name and a newline: at most 16 bytes.
        let mut big = [0u8; 64];
        let n = read_whole(c"/proc/self/comm", &mut big).unwrap();
        assert!(n > 1 && big[n - 1] == b'\n');
        let mut exact = [0u8; 64];
        assert_eq!(read_whole(c"/proc/self/comm", &mut exact[..n]), Ok(n));
        assert_eq!(read_whole(c"/proc/self/comm", &mut exact[..n - 1]), Err(Errno::FBIG));
        assert_eq!(read_start(c"/proc/self/comm", &mut exact[..n - 1]), Ok(n - 1));
        assert_eq!(&exact[..n - 1], &big[..n - 1]);
    }
}
