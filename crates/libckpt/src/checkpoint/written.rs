//! Records the files the program could write in place (`NT_CKPT_WRITTEN`), as they are at the
//! checkpoint, so that a restart can tell whether they changed since: which files, and what
//! counts as a change, is `ckpt_image::written`'s rule. Runs in the handler, with the program
//! (and its tree) stopped, after the descriptors are recorded.
//!
//! Signal-safe like the rest of `checkpoint`: no allocation, no locks, no libc.

use super::failure::Failure;
use super::scratch::Parts;
use ckpt_image::bytes::Writer;
use ckpt_image::written::{hashes, watches_descriptor, watches_mapping, FileState, WrittenRecord};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};

/// What recording has done so far: the note under construction, the files recorded (by device
/// and inode, to record each once) and the bytes hashed.
struct Out<'a> {
    w: Writer<'a>,
    seen: &'a mut [[u64; 2]],
    nseen: usize,
    hashed: u64,
}

impl Out<'_> {
    /// Records file `fd` (a descriptor of its own, or the program's) under `path`: its state
    /// from `st`, with a hash of its bytes read through `read` (a descriptor open for reading on
    /// it) while the checkpoint's total lasts. A file recorded already, or one the kernel makes
    /// (/proc, /sys), is left out.
    fn record(&mut self, st: &rustix::fs::Stat, read: Option<BorrowedFd>, path: &[u8], fd: i32, mapped: bool, buf: &mut [u8]) -> Result<(), Failure> {
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_dev == 0 || read.is_some_and(generated) {
            return Ok(());
        }
        if !self.first_time([st.st_dev, st.st_ino])? {
            return Ok(());
        }
        let mut state: FileState = ckpt_sigsafe::fileid::written_state(st);
        if let Some(r) = read.filter(|_| hashes(state.size, self.hashed)) {
            state.hash = ckpt_sigsafe::fileid::bytes_hash(r, state.size, buf);
            self.hashed += state.size;
        }
        WrittenRecord { state, mapped, fd }.write(&mut self.w, path);
        Ok(())
    }
}

impl Out<'_> {
    /// Whether file `key` (device, inode; the device never 0) is seen for the first time:
    /// `seen` is a table with open addressing, a power of two at least twice as long as the
    /// files one image may name, so that a program with tens of thousands of them is not
    /// held for a quadratic search.
    fn first_time(&mut self, key: [u64; 2]) -> Result<bool, Failure> {
        let mask = self.seen.len() - 1;
        let mut i = (key[0].wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key[1].wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).rotate_left(29) as usize & mask;
        loop {
            match self.seen[i] {
                [0, _] => break,
                k if k == key => return Ok(false),
                _ => i = (i + 1) & mask,
            }
        }
        if self.nseen * 2 >= self.seen.len() {
            return Err(Failure::plain("the program has more files open for writing than one checkpoint records"));
        }
        self.seen[i] = key;
        self.nseen += 1;
        Ok(true)
    }
}

/// Whether the file behind `fd` is one the kernel makes when read (/proc, /sys, cgroups): it
/// has no bytes of its own to change.
fn generated(fd: BorrowedFd) -> bool {
    use linux_raw_sys::general as k;
    rustix::fs::fstatfs(fd).is_ok_and(|f| matches!(f.f_type as u32, k::PROC_SUPER_MAGIC | k::SYSFS_MAGIC | k::CGROUP2_SUPER_MAGIC | k::CGROUP_SUPER_MAGIC))
}

/// Opens `path` for reading, without waiting, and (`nofollow`) without following a symbolic
/// link at its end (but /proc/self/fd/N, which is one).
fn open_to_read(path: &core::ffi::CStr, nofollow: bool) -> Option<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | if nofollow { OFlags::NOFOLLOW } else { OFlags::empty() };
    rustix::fs::open(path, flags, Mode::empty()).ok()
}

/// Whether the file at `path` (inode `ino`) is a POSIX shared memory object that the program
/// maps shared, whose bytes the image stores and a restart puts back (a descriptor open on it
/// then opens that object again): not a file written in place.
fn stored_object(maps: &[u8], maps_len: usize, pathbuf: &mut [u8], path: &[u8], ino: u64) -> bool {
    if path.len() >= pathbuf.len() {
        return false;
    }
    pathbuf[..path.len()].copy_from_slice(path);
    pathbuf[path.len()] = 0;
    let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&pathbuf[..path.len() + 1]) else { return false };
    ckpt_sigsafe::file::is_shm_object(c) && ckpt_sigsafe::maps::entries(&maps[..maps_len]).any(|e| e.shared && e.inode == ino && e.name == path)
}

/// Fills `parts.written` with the `NT_CKPT_WRITTEN` records: the regular files of the
/// descriptors recorded in `parts.fds` that the rule watches, then those of the shared,
/// writable file mappings in `parts.maps`; sets `parts.written_len` (0: none).
pub fn capture(parts: &mut Parts) -> Result<(), Failure> {
    let mut out = Out { w: Writer::new(parts.written), seen: parts.written_seen, nseen: 0, hashed: 0 };
    let buf = &mut parts.copybuf[..];
    for item in ckpt_image::fds::records(&parts.fds[..parts.fds_len]) {
        let Ok((rec, path)) = item else { break };
        if !watches_descriptor(&rec) || rec.same_as >= 0 {
            continue;
        }
        // SAFETY: `rec.fd` was recorded from /proc/self/fd just now, and nothing runs that
        // could close it (the program is stopped); it is only borrowed for these queries.
        let fd = unsafe { BorrowedFd::borrow_raw(rec.fd) };
        let Ok(st) = rustix::fs::fstat(fd) else { continue };
        if stored_object(parts.maps, parts.maps_len, parts.pathbuf, path, st.st_ino) {
            continue;
        }
        // Read through a descriptor of our own: the program's may be write-only, and its
        // offset must not move.
        let mut link = [0u8; 64];
        let own = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", rec.fd as u64, b"").and_then(|p| open_to_read(p, false));
        out.record(&st, Some(own.as_ref().map_or(fd, |f| f.as_fd())), path, rec.fd, false, buf)?;
    }
    for e in ckpt_sigsafe::maps::entries(&parts.maps[..parts.maps_len]) {
        if !watches_mapping(e.shared, e.prot & 2 != 0, false) || e.inode == 0 || !e.name.starts_with(b"/") || e.name.ends_with(b" (deleted)") {
            continue;
        }
        if e.name.len() >= parts.pathbuf.len() {
            continue;
        }
        parts.pathbuf[..e.name.len()].copy_from_slice(e.name);
        parts.pathbuf[e.name.len()] = 0;
        let Ok(path) = core::ffi::CStr::from_bytes_with_nul(&parts.pathbuf[..e.name.len() + 1]) else { continue };
        if !watches_mapping(true, true, ckpt_sigsafe::file::is_shm_object(path)) {
            continue;
        }
        // A file we may not read (mode 0200) is still looked at, without a hash.
        let (file, readable) = match open_to_read(path, true) {
            Some(f) => (f, true),
            None => match rustix::fs::open(path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
                Ok(f) => (f, false),
                Err(_) => continue,
            },
        };
        let Ok(st) = rustix::fs::fstat(&file) else { continue };
        if st.st_ino != e.inode {
            continue;
        }
        out.record(&st, readable.then(|| file.as_fd()), e.name, -1, true, buf)?;
    }
    let any = out.nseen > 0;
    let len = out.w.finish().ok_or(Failure::plain("the paths of the files the program writes take more room than one checkpoint has"))?;
    parts.written_len = if any { len } else { 0 };
    Ok(())
}
