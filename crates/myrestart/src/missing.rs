//! Files the image names that are not there at all: looked for, every one, before any of them
//! is opened, so that a restart on another node (or after a clean-up of /tmp) names each file
//! it lacks in one go, one line each, the last as the refusal, rather than the first only and
//! the next at the next try.
//!
//! Looked for: the working directory, the regular files, directories, devices and FIFOs the
//! program had open, and the files it mapped (its program and libraries, read-only data, shared
//! files). Not looked for here, since the restart goes on without them or makes them again: the
//! program's stdout and stderr in a log (made again at its path), files of the kernel's (/proc,
//! /sys), terminals (/dev/pts), POSIX shared memory the image stores, standard descriptors that
//! are myrestart's own (`--inherit-stdio`), and the program file for /proc/PID/exe (the
//! restored process then names myrestart's). A file that is there but changed is left to the
//! checks of `files.rs` and `written.rs`, which say how. In a tree, each process looks for its
//! own, as it makes its plan; the files the tree's processes share (the pool, `files::pool`)
//! are opened before that, and the first of them missing refuses alone.
//!
//! # Restrictions
//! Before the point of no return: no allocation; a refusal is a value (`refusal.rs`).

use crate::fds::cpath;
use crate::refusal::{refuse, Refusal};
use ckpt_image::fds::{FdKind, FdRecord};
use ckpt_image::Image;
use ckpt_sigsafe::out::Lossy;
use linux_raw_sys::general as k;
use core::ffi::CStr;
use rustix::fs::{AtFlags, CWD};
use rustix::io::Errno;

/// What the program had at a missing path, for its line.
enum Had {
    Cwd,
    /// A descriptor, and whether it is a regular file's (see [`GoOn`]).
    Fd(i32, Option<FdRecord>),
    /// A mapping of a file the image names instead of holding its bytes.
    Code,
    Mapped,
}

impl core::fmt::Display for Had {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Had::Cwd => f.write_str("working directory"),
            Had::Fd(fd, _) => write!(f, "fd {fd}"),
            Had::Code | Had::Mapped => f.write_str("mapped file"),
        }
    }
}

/// Whether nothing is at `path` (or a directory on its way): the one case named here.
fn absent(path: &[u8], buf: &mut [u8; 4096]) -> bool {
    let Some(c) = cpath(path, buf) else { return false };
    matches!(rustix::fs::statat(CWD, c, AtFlags::SYMLINK_NOFOLLOW), Err(Errno::NOENT | Errno::NOTDIR))
}

/// Whether descriptor `rec` on `path` is opened again by its path (see the module's notes).
fn looked_for(rec: &FdRecord, path: &[u8], inherit_stdio: bool) -> bool {
    let by_path = match rec.kind {
        FdKind::File => !rec.is_std_log(),
        FdKind::Directory | FdKind::Device => true,
        FdKind::Pipe => !path.starts_with(b"pipe:["),
        _ => false,
    };
    let kernels = path.starts_with(b"/proc/") || path.starts_with(b"/sys/") || path.starts_with(b"/dev/pts/") || path == b"/dev/ptmx";
    let stored = rec.kind == FdKind::File && ckpt_image::region::stores_shared_file(path, true);
    by_path && rec.same_as < 0 && !kernels && !stored && !(inherit_stdio && (0..3).contains(&rec.fd)) && path.starts_with(b"/")
}

/// Looks for every path of `image` (whose working directory was `cwd`) the restart opens (see
/// the module's notes); says a line for each that is not there, and refuses with the last.
pub fn check(image_path: &CStr, image: &Image, cwd: &[u8], inherit_stdio: bool) -> Result<(), Refusal> {
    let mut buf = [0u8; 4096];
    let mut refused: Option<Refusal> = None;
    let mut one = |had: Had, path: &[u8]| {
        let gone = "is gone since the checkpoint (or it was a file of the node the image was taken on)";
        let this = match had {
            Had::Code => refuse(image_path, format_args!(
                "{had}: {} {gone}; the image names it instead of holding a copy of its pages (images that carry them: CKPT_SELF_CONTAINED=1, ckpt run/job --self-contained)",
                Lossy(path)
            )),
            Had::Fd(_, Some(rec)) => refuse(image_path, format_args!("{had}: {} {gone}: {}", Lossy(path), GoOn(&rec, path))),
            _ => refuse(image_path, format_args!("{had}: {} {gone}: put it back to restart", Lossy(path))),
        };
        if let Some(earlier) = refused.replace(this) {
            earlier.say_one_of_several();
        }
    };
    if !cwd.is_empty() && absent(cwd, &mut buf) {
        one(Had::Cwd, cwd);
    }
    for item in image.fds() {
        let (rec, path) = item.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        if looked_for(&rec, path, inherit_stdio) && absent(path, &mut buf) {
            one(Had::Fd(rec.fd, (rec.kind == FdKind::File).then_some(rec)), path);
        }
    }
    let mut last: &[u8] = b"";
    for i in 0..image.region_count() {
        let r = image.region(i).map_err(|e| refuse(image_path, format_args!("{e}")))?;
        let rec = r.record;
        let had = if rec.maps_private_file() {
            Had::Code
        } else if rec.from_file() && rec.is_shared() && image.shm_file(i).is_none() {
            Had::Mapped
        } else {
            continue;
        };
        // A file's mappings are named once (they come one after another, as in /proc/PID/maps).
        if r.name != last && absent(r.name, &mut buf) {
            one(had, r.name);
        }
        last = r.name;
    }
    refused.map_or(Ok(()), Err)
}

/// What lets a restart go on when a regular file the program had open is gone or shorter than
/// its offset: the file as it was; or, for one the program writes (a log), any file of its old
/// length at that path, where the program then goes on writing.
pub(crate) struct GoOn<'a>(pub(crate) &'a FdRecord, pub(crate) &'a [u8]);

impl core::fmt::Display for GoOn<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let GoOn(rec, path) = *self;
        if rec.open_flags & k::O_ACCMODE == k::O_RDONLY {
            return write!(f, "put the file back as it was to restart");
        }
        write!(f, "put it back, or give it its old length to restart (`truncate -s {} '{}'`)", rec.size.max(rec.offset), Lossy(path))
    }
}
