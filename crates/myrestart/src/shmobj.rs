//! POSIX shared memory objects (files in `/dev/shm` that the program mapped `MAP_SHARED`,
//! `NT_CKPT_SHMFILES`) put back at their paths with the image's bytes, so that the restored
//! mappings and any process that opens the object by name (`shm_open`) share one object again.
//!
//! The plan ([`object`]) prepares, and changes nothing: the directory is opened without following
//! a symbolic link and parked; where the path is free, the object is made without a name
//! (`O_TMPFILE`, the recorded mode and owner, the recorded size), which the act [`name`] links
//! at its path once every check has passed (taken back if the restart is refused after all);
//! where a file is there, it must be a regular file of the recorded owner (the program's own
//! object, made again or changed since the checkpoint), and the act [`reset`] empties it to its
//! recorded size, last (it cannot be taken back). The restore then fills the mappings with the
//! image's bytes, as for every other shared memory object.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::acts::{Act, Acts, What};
use crate::fds::{cpath, park, Parked};
use crate::refusal::{refuse, Refusal};
use ckpt_image::shmfiles::ShmFile;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::out::Lossy;
use core::ffi::CStr;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// What the caller (`files`) knows of files and this module uses.
pub struct Files {
    /// Opens a recorded path, never through a symbolic link.
    pub open: fn(&CStr, OFlags, Mode) -> Result<rustix::fd::OwnedFd, Errno>,
    /// Whose a file is, as the user IDs outside any user namespace.
    pub owner: fn(&rustix::fs::Stat) -> u32,
    /// The refusal of another user's file (its owner now, then) where the program had its own.
    pub taken: fn(&CStr, core::fmt::Arguments, &[u8], u32, u32) -> Refusal,
}

/// The object that region `i` (named `path`, recorded as `m`) maps, prepared at its path, and
/// the act that finishes it noted in `acts` (for region `i` of the process planned now).
pub fn object(image_path: &CStr, path: &[u8], i: usize, m: &ShmFile, base: i32, acts: &mut Acts, files: &Files) -> Result<Parked, Refusal> {
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("shared memory object {}: {what}: {}", Lossy(path), describe(e)));
    let mut buf = [0u8; 4096];
    let Some(c) = cpath(path, &mut buf) else {
        return Err(refuse(image_path, format_args!("shared memory object with an unusable path {}", Lossy(path))));
    };
    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut dbuf = [0u8; 4096];
    let d = cpath(&path[..cut.max(1)], &mut dbuf).ok_or_else(|| bad("its directory", Errno::NAMETOOLONG))?;
    let dir = (files.open)(d, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| bad("its directory", e))?;
    let name = last(c);
    let me = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    let (fd, what) = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Err(refuse(image_path, format_args!("shared memory object {}: something else than a file is at its path now", Lossy(path))));
            }
            let now = (files.owner)(&st);
            if now != m.uid {
                return Err((files.taken)(image_path, format_args!("shared memory object"), path, now, m.uid));
            }
            let fd = rustix::fs::openat(&dir, name, OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty()).map_err(|e| bad("opening it", e))?;
            let again = rustix::fs::fstat(&fd).map_err(|e| bad("opening it", e))?;
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                return Err(refuse(image_path, format_args!("shared memory object {}: it was replaced while the restart looked at it", Lossy(path))));
            }
            (fd, What::ResetShm { size: m.size })
        }
        Err(Errno::NOENT) => {
            let fd = rustix::fs::openat(&dir, c".", OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(m.mode & 0o777))
                .map_err(|e| bad("making it again (its filesystem cannot make a file without a name first)", e))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(m.mode)).map_err(|e| bad("giving it its mode", e))?;
            if (m.uid, m.gid) != me {
                let (uid, gid) = (rustix::fs::Uid::from_raw(m.uid), rustix::fs::Gid::from_raw(m.gid));
                rustix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(|e| bad("giving it its owner", e))?;
            }
            rustix::fs::ftruncate(&fd, m.size).map_err(|e| bad("sizing it", e))?;
            (fd, What::NameShm)
        }
        Err(e) => return Err(bad("looking at its path", e)),
    };
    let fd = park(fd, base).map_err(|e| bad("parking", e))?;
    let dir = park(dir, base).map_err(|e| bad("parking", e))?;
    if !acts.add(i as i32, fd, Some(dir), what) {
        return Err(refuse(image_path, format_args!("too many files, sockets and shared memory objects to make again")));
    }
    Ok(fd)
}

/// The last component of `path`.
fn last(path: &CStr) -> &CStr {
    let bytes = path.to_bytes_with_nul();
    let from = path.to_bytes().iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    CStr::from_bytes_with_nul(&bytes[from..]).unwrap_or(path)
}

/// Once every check has passed: the object made without a name gets its path (exclusively: a
/// file put there since the plan is refused). Returns the device and inode now at the path.
pub fn name(image_path: &CStr, path: &CStr, a: &Act) -> Result<(u64, u64), Refusal> {
    let cannot = |e: Errno| refuse(image_path, format_args!("shared memory object {}: making it again: {}", Lossy(path.to_bytes()), describe(e)));
    let (dir, name) = crate::acts::where_named(a, path);
    let mut link = [0u8; 64];
    let l = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", a.fd.raw() as u64, b"").ok_or_else(|| cannot(Errno::NAMETOOLONG))?;
    rustix::fs::linkat(rustix::fs::CWD, l, dir, name, AtFlags::SYMLINK_FOLLOW).map_err(cannot)?;
    let st = rustix::fs::fstat(a.fd.as_fd()).map_err(cannot)?;
    Ok((st.st_dev, st.st_ino))
}

/// Once every check has passed, with the changes that cannot be taken back: the program's
/// object found at its path is emptied to its recorded size (`size`), so that the pages the
/// image fills in are all it holds.
pub fn reset(image_path: &CStr, path: &CStr, a: &Act, size: u64) -> Result<(), Refusal> {
    let cannot = |e: Errno| refuse(image_path, format_args!("shared memory object {}: putting back its contents: {}", Lossy(path.to_bytes()), describe(e)));
    rustix::fs::ftruncate(a.fd.as_fd(), 0).map_err(cannot)?;
    rustix::fs::ftruncate(a.fd.as_fd(), size).map_err(cannot)
}
