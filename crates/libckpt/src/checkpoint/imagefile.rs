//! The image file while it is written, and how it takes the image's place: the temporary
//! file ([`TempImage`]), the older images moved along (`CKPT_KEEP`), what at the image's names
//! stops a checkpoint, and the image's directory.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler (which creates the file) and the writer (which commits
//! it): raw system calls and fixed buffers; no allocation, no locks, no libc.

use super::failure::{Blocker, Failure};
use ckpt_image::bytes::Writer;
use core::ffi::CStr;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// The image while it is written: an unnamed file (`O_TMPFILE`) in the image's directory,
/// created by this process with mode 0600, that nothing at any path can redirect, expose or
/// block. At commit it is linked under a name no other file has (`<image>.<pid>.<n>.tmp`,
/// made with `linkat`, which never follows or replaces what is there) and renamed over the
/// image. A writer that dies leaves nothing behind: the unnamed file goes with it.
///
/// Where the filesystem has no `O_TMPFILE`, that unique name is created at once instead
/// (`O_CREAT | O_EXCL | O_NOFOLLOW`) and removed unless committed.
pub struct TempImage<'a> {
    pub fd: OwnedFd,
    /// `buf[..image_len]` is the image path, NUL-terminated; the temporary name follows it.
    buf: &'a mut [u8],
    image_len: usize,
    /// Where the temporary name is in `buf` once it exists.
    name: Option<(usize, usize)>,
    committed: bool,
    /// A member's part of a tree image: nothing to name or rename.
    part: bool,
}

/// Room in the buffer for the image path and its temporary name (or, at first, its directory).
const NAME_ROOM: usize = 2 * (ckpt_image::state::PATH_MAX + 64);

impl<'a> TempImage<'a> {
    /// Creates the file that will become the image at `image` (this process's image path).
    pub fn create(image: &[u8], buf: &'a mut [u8]) -> Result<TempImage<'a>, Failure> {
        if buf.len() < NAME_ROOM || image.len() > ckpt_image::state::PATH_MAX {
            return Err(Failure::plain("image path is too long"));
        }
        buf[..image.len()].copy_from_slice(image);
        buf[image.len()] = 0;
        let image_len = image.len() + 1;
        let dir = ckpt_image::chain::image_dir(image).ok_or(Failure::plain("image path is not absolute"))?;
        let (head, tail) = buf.split_at_mut(image_len);
        tail[..dir.len()].copy_from_slice(dir);
        tail[dir.len()] = 0;
        let dir = CStr::from_bytes_with_nul(&tail[..dir.len() + 1]).map_err(|_| Failure::plain("image path contains a NUL byte"))?;
        // A directory at the image path: no image can take its place, which is said before
        // one is written.
        let path = CStr::from_bytes_with_nul(&head[..image_len]).map_err(|_| Failure::plain("image path contains a NUL byte"))?;
        if let Ok(st) = rustix::fs::statat(rustix::fs::CWD, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(Failure::blocked(Blocker { generation: 0, kind: "a directory", uid: other_user(st.st_uid), then: CANNOT_REPLACE }, None));
            }
        }
        let mode = Mode::from_raw_mode(0o600);
        match rustix::fs::open(dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, mode) {
            Ok(fd) => {
                // O_TMPFILE applies the umask; the image is exactly 0600, whatever it is.
                rustix::fs::fchmod(&fd, mode).map_err(|e| Failure::on_file("creating", e))?;
                Ok(TempImage { fd, buf, image_len, name: None, committed: false, part: false })
            }
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
                let mut t = TempImage { fd: rustix::fs::open(c"/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| Failure::new("opening /", e))?, buf, image_len, name: None, committed: false, part: false };
                t.fd = t.make_name(|name| rustix::fs::open(name, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode))?;
                Ok(t)
            }
            Err(e) => Err(Failure::on_file("creating a file in the directory of", e)),
        }
    }

    /// Tries `make` on `<image>.<pid>.<n>.tmp` for n = 0, 1, … until a name is free (`EEXIST`
    /// means someone has it: never touched). Records the name that worked.
    fn make_name<T>(&mut self, mut make: impl FnMut(&CStr) -> Result<T, Errno>) -> Result<T, Failure> {
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u64;
        let (head, tail) = self.buf.split_at_mut(self.image_len);
        for n in 0..1000u64 {
            let mut w = Writer::new(&mut tail[..]);
            w.bytes(&head[..self.image_len - 1]);
            w.u8(b'.');
            w.decimal(pid);
            w.u8(b'.');
            w.decimal(n);
            w.bytes(b".tmp\0");
            let len = w.finish().ok_or(Failure::plain("image path is too long"))?;
            let name = CStr::from_bytes_with_nul(&tail[..len]).map_err(|_| Failure::plain("image path contains a NUL byte"))?;
            match make(name) {
                Ok(v) => {
                    self.name = Some((self.image_len, self.image_len + len));
                    return Ok(v);
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(Failure::on_file("creating a temporary name next to", e)),
            }
        }
        Err(Failure::on_file("finding a free temporary name next to", Errno::EXIST))
    }

    /// A member's part file (opened from the root's descriptor).
    pub fn part(fd: OwnedFd, buf: &'a mut [u8]) -> TempImage<'a> {
        TempImage { fd, buf, image_len: 0, name: None, committed: false, part: true }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The file's device and inode, which the image at the image path has once it is renamed
    /// there ((0, 0) if they cannot be had).
    pub fn identity(&self) -> (u64, u64) {
        rustix::fs::fstat(&self.fd).map_or((0, 0), |st| (st.st_dev, st.st_ino))
    }

    /// Lets go of the file without removing it: another process (the writer) owns it now.
    pub fn hand_over(mut self) {
        self.committed = true;
    }

    /// Makes the image durable and puts it in place of the old one. Returns the image that
    /// lost its last name to it (see [`Previous`]), for the caller to let go of once the
    /// outcome is reported.
    pub fn commit(mut self) -> Result<Previous, Failure> {
        if self.part {
            self.committed = true;
            return Ok(Previous::none());
        }
        rustix::fs::fsync(&self.fd).map_err(|e| Failure::on_file("syncing", e))?;
        super::phases::mark(super::phases::Phase::Synced);
        if self.name.is_none() {
            // The unnamed file gets a name of its own first (linkat through /proc needs no
            // privilege, unlike AT_EMPTY_PATH).
            let mut link = [0u8; 64];
            let from = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", self.fd.as_raw_fd() as u64, b"")
                .ok_or(Failure::plain("descriptor path"))?;
            self.make_name(|name| rustix::fs::linkat(rustix::fs::CWD, from, rustix::fs::CWD, name, rustix::fs::AtFlags::SYMLINK_FOLLOW))?;
        }
        let (from, to) = self.name.ok_or(Failure::plain("temporary name"))?;
        let image_path = &self.buf[..self.image_len - 1];
        let kept = crate::config::images_kept();
        // Dropped on any failure below: only the hidden second name goes, the image stays.
        let previous = Previous::hold(image_path, kept);
        keep_generations(image_path, kept)?;
        let image = CStr::from_bytes_with_nul(&self.buf[..self.image_len]).map_err(|_| Failure::plain("bad image path"))?;
        let tmp = CStr::from_bytes_with_nul(&self.buf[from..to]).map_err(|_| Failure::plain("bad image path"))?;
        rustix::fs::rename(tmp, image).map_err(|e| {
            // Refused because of what is there: named, with its owner.
            let refused = matches!(e, Errno::PERM | Errno::ACCESS | Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST | Errno::BUSY);
            match in_the_way(image, 0, CANNOT_REPLACE) {
                Err(mut f) if refused => {
                    f.errno = Some(e);
                    f
                }
                _ => Failure::on_file("renaming the new image to", e),
            }
        })?;
        self.committed = true;
        super::phases::mark(super::phases::Phase::Renamed);
        sync_parent_dir(image_path);
        Ok(previous)
    }
}

/// The image a commit takes the last name of (the one at the image path, or with `CKPT_KEEP=N`
/// the oldest one kept, `<image>.N`), kept alive past the rename by a second, hidden name made
/// just before it: `.<image file name>.old.<writer's pid>` in the image's directory. Freeing
/// a large file's blocks takes the kernel milliseconds per 100 MB (tmpfs as well), and inside
/// the rename that time would come before the outcome is reported. Dropping this unlinks the
/// hidden name (the file is freed then), which the writer does once the outcome is reported.
///
/// A writer killed between the two leaves the hidden name behind: every commit first removes
/// such names of other writers of the same image (see [`remove_leftovers`]). A hidden name that
/// cannot be made (another user's file, a name too long) is no harm: the old image is then
/// freed in the rename, as it would be without it.
pub struct Previous {
    dir: Option<OwnedFd>,
    /// The hidden name, NUL-terminated (empty: none).
    name: [u8; HIDDEN_ROOM],
}

/// Room for a hidden name: the longest file name, the dot, `.old.` and a pid.
const HIDDEN_ROOM: usize = 256 + 32;

impl Previous {
    /// Nothing held.
    pub fn none() -> Previous {
        Previous { dir: None, name: [0; HIDDEN_ROOM] }
    }

    /// Removes the leftovers of writers that died holding an older image, then gives the file
    /// that the commit of `image` (keeping `kept` older images) is about to unname a hidden
    /// second name, if it is one of this user's regular files.
    fn hold(image: &[u8], kept: u32) -> Previous {
        let mut p = Previous::none();
        let mut dirbuf = [0u8; ckpt_image::state::PATH_MAX + 1];
        let Some(dir) = dir_of(image, &mut dirbuf) else { return p };
        let Ok(dirfd) = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return p };
        let file = ckpt_image::chain::file_name(image);
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u64;
        let Some(len) = hidden_name(file, pid, &mut p.name) else { return p };
        remove_leftovers(&dirfd, file, &p.name[..len]);
        let mut gen = [0u8; ckpt_image::state::PATH_MAX + 32];
        let Some(doomed) = ckpt_image::chain::generation_name(image, kept, &mut gen) else { return p };
        let Ok(doomed) = CStr::from_bytes_with_nul(&doomed.to_bytes_with_nul()[image.len() - file.len()..]) else { return p };
        let ours = rustix::fs::statat(&dirfd, doomed, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && other_user(st.st_uid).is_none());
        let Ok(hidden) = CStr::from_bytes_with_nul(&p.name[..len + 1]) else { return p };
        // A name of ours left by an earlier writer with this pid: ours to replace.
        let _ = rustix::fs::unlinkat(&dirfd, hidden, rustix::fs::AtFlags::empty());
        if ours && rustix::fs::linkat(&dirfd, doomed, &dirfd, hidden, rustix::fs::AtFlags::empty()).is_ok() {
            p.dir = Some(dirfd);
        }
        p
    }

    /// Lets the file go (now, after the outcome is reported); the same as dropping it.
    pub fn release(self) {}
}

impl Drop for Previous {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let len = self.name.iter().position(|&b| b == 0).unwrap_or(0);
            if let Ok(hidden) = CStr::from_bytes_with_nul(&self.name[..len + 1]) {
                let _ = rustix::fs::unlinkat(&dir, hidden, rustix::fs::AtFlags::empty());
            }
        }
    }
}

/// Writes `.<file>.old.<pid>` and a NUL into `out`; its length without the NUL, or `None` if
/// it is longer than a file name may be.
fn hidden_name(file: &[u8], pid: u64, out: &mut [u8; HIDDEN_ROOM]) -> Option<usize> {
    let mut w = Writer::new(&mut out[..]);
    w.u8(b'.');
    w.bytes(file);
    w.bytes(HIDDEN_TAG);
    w.decimal(pid);
    w.u8(0);
    let len = w.finish()? - 1;
    (len <= 255).then_some(len)
}

/// What follows the image's file name in a hidden name, before the pid.
const HIDDEN_TAG: &[u8] = b".old.";

/// Whether `entry` is a hidden name [`Previous`] makes for the image file `file`: a dot,
/// `file`, `.old.` and decimal digits.
fn is_hidden_name(file: &[u8], entry: &[u8]) -> bool {
    entry.strip_prefix(b".")
        .and_then(|e| e.strip_prefix(file))
        .and_then(|e| e.strip_prefix(HIDDEN_TAG))
        .is_some_and(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
}

/// Unlinks, in the image's directory, the hidden names of `file` other than `mine` that are
/// this user's regular files: left by writers killed between making one and removing it. A
/// writer still running that loses its name this way only frees its old image in its rename,
/// as without the name.
fn remove_leftovers(dir: &OwnedFd, file: &[u8], mine: &[u8]) {
    let mut dirents = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut raw = rustix::fs::RawDir::new(dir, &mut dirents);
    while let Some(Ok(e)) = raw.next() {
        let name = e.file_name();
        if name.to_bytes() == mine || !is_hidden_name(file, name.to_bytes()) {
            continue;
        }
        let ours = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && other_user(st.st_uid).is_none());
        if ours {
            let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
        }
    }
}

impl Drop for TempImage<'_> {
    fn drop(&mut self) {
        if let (false, Some((from, to))) = (self.committed, self.name) {
            if let Ok(tmp) = CStr::from_bytes_with_nul(&self.buf[from..to]) {
                let _ = rustix::fs::unlink(tmp);
            }
        }
    }
}

/// `uid` if it is another user's.
fn other_user(uid: u32) -> Option<u32> {
    (uid != rustix::process::geteuid().as_raw()).then_some(uid)
}

/// Why something at the image path stops a checkpoint.
const CANNOT_REPLACE: &str = ", which this user's image cannot replace";

/// What is at `path` (generation `generation` of the image): `Ok(false)` nothing, `Ok(true)`
/// one of this user's images (a regular file of ours that starts as a ckpt image does), or
/// else a failure that names what is there and says `then`.
fn in_the_way(path: &CStr, generation: u32, then: &'static str) -> Result<bool, Failure> {
    let st = match rustix::fs::statat(rustix::fs::CWD, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(Failure::blocked(Blocker { generation, kind: "something that cannot be looked at", uid: None, then }, Some(e))),
    };
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "a file",
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Symlink => "a symbolic link",
        FileType::Socket => "a socket",
        _ => "a device",
    };
    let blocker = |kind| Failure::blocked(Blocker { generation, kind, uid: other_user(st.st_uid), then }, None);
    if kind != "a file" || other_user(st.st_uid).is_some() {
        return Err(blocker(kind));
    }
    let mut prefix = [0u8; ckpt_image::image::PREFIX_LEN];
    let read = rustix::fs::open(path, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        .is_ok_and(|f| ckpt_sigsafe::sys::pread_full(f.as_raw_fd(), &mut prefix, 0) == Ok(prefix.len()));
    if !read || ckpt_image::image::meta_len(&prefix).is_err() {
        return Err(blocker("a file other than a ckpt image"));
    }
    Ok(true)
}

/// With `CKPT_KEEP=keep`: moves the older images along before a new one takes the name, so
/// that `image.{keep}` … `image.2` get the images `image.{keep-1}` … `image.1` had, and
/// `image.1` the one at `image` (a second name for it until the new image replaces it: the
/// image path always holds an image). Everything at those names must be one of this user's
/// images: anything else (planted by someone else, say) is never moved, replaced or built on,
/// and the checkpoint fails naming it, with nothing moved. Nothing is moved either when no
/// image of ours is at `image`.
fn keep_generations(image: &[u8], keep: u32) -> Result<(), Failure> {
    const NOT_OURS: &str = ", not one of this user's images: older images are not moved over it";
    fn name<'b>(image: &[u8], n: u32, buf: &'b mut [u8]) -> Result<&'b CStr, Failure> {
        ckpt_image::chain::generation_name(image, n, buf).ok_or(Failure::plain("image path is too long"))
    }
    let mut buf = [0u8; ckpt_image::state::PATH_MAX + 32];
    // Only an image of ours at the image path is kept; anything else is replaced, if it can be.
    if keep == 0 || !matches!(in_the_way(name(image, 0, &mut buf)?, 0, CANNOT_REPLACE), Ok(true)) {
        return Ok(());
    }
    for n in 1..=keep {
        in_the_way(name(image, n, &mut buf)?, n, NOT_OURS)?;
    }
    let mut other = [0u8; ckpt_image::state::PATH_MAX + 32];
    for n in (1..keep).rev() {
        match rustix::fs::rename(name(image, n, &mut buf)?, name(image, n + 1, &mut other)?) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Failure::on_file("moving an older image along, next to", e)),
        }
    }
    let first = name(image, 1, &mut other)?;
    if keep == 1 {
        match rustix::fs::unlink(first) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Failure::on_file("removing the oldest image kept, next to", e)),
        }
    }
    rustix::fs::link(name(image, 0, &mut buf)?, first).map_err(|e| Failure::on_file("keeping the previous image as an older one, next to", e))
}

/// `fsync` of the directory holding the image, so that the rename itself is durable.
fn sync_parent_dir(image: &[u8]) {
    let mut buf = [0u8; ckpt_image::state::PATH_MAX];
    if let Some(path) = dir_of(image, &mut buf) {
        if let Ok(fd) = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            let _ = rustix::fs::fsync(&fd);
        }
    }
}

/// The directory part of an absolute image path, NUL-terminated into `buf`.
pub fn dir_of<'b>(image: &[u8], buf: &'b mut [u8]) -> Option<&'b CStr> {
    let dir = ckpt_image::chain::image_dir(image)?;
    if dir.len() >= buf.len() {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    buf[dir.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..dir.len() + 1]).ok()
}
