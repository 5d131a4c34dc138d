//! The files the program could write in place (`NT_CKPT_WRITTEN`), compared before anything
//! changes with what they were at the checkpoint, by `ckpt_image::written`'s rule: a file that
//! changed since would meet a program that goes on from its memory of it then (a database's
//! log and tables, a cache, a model's saved weights), so the restart is refused, one line per
//! such file, unless `--files-as-is` (then each is restored as it is, the first few
//! named).
//!
//! A file that cannot be looked at here (gone, a symbolic link in its path, another user's) is
//! left to the checks of the descriptor or mapping that has it (`files.rs`), which run first
//! and say it better.
//!
//! # Restrictions
//! Before the point of no return: no allocation; a refusal is a value (`refusal.rs`).

use crate::fds::cpath;
use crate::files::open_recorded;
use crate::refusal::{refuse, Refusal};
use ckpt_image::written::{change, WrittenRecord};
use ckpt_image::Image;
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::say;
use core::ffi::CStr;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// How many changed files `--files-as-is` names, one line each; the rest are counted.
const NAMED: usize = 8;

/// What the program had the file as: a descriptor, or a mapping.
struct Had<'a>(&'a WrittenRecord);

impl core::fmt::Display for Had<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.fd {
            -1 => f.write_str("mapped file"),
            fd => write!(f, "fd {fd}"),
        }
    }
}

/// The file at `path` opened to be compared: for reading if we may (then its bytes can be
/// hashed), else only to look at; `None` where it cannot be looked at (see the module's notes).
fn open_to_compare(path: &CStr) -> Option<(OwnedFd, bool)> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match open_recorded(path, flags, Mode::empty()) {
        Ok(f) => Some((f, true)),
        Err(Errno::ACCESS | Errno::PERM) => open_recorded(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok().map(|f| (f, false)),
        Err(_) => None,
    }
}

/// Compares every file of the image's `NT_CKPT_WRITTEN` note with what it is now. With
/// `accept` (`--files-as-is`), a changed file is named and the restart goes on;
/// otherwise every changed file is named, one line each, the last as the refusal.
pub fn check(image_path: &CStr, image: &Image, accept: bool) -> Result<(), Refusal> {
    let mut pbuf = [0u8; 4096];
    let mut buf = [0u8; 16384];
    let mut refused: Option<Refusal> = None;
    let mut accepted = 0usize;
    for item in image.written_files() {
        let (rec, path) = item.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        let Some(c) = cpath(path, &mut pbuf) else { continue };
        let Some((fd, readable)) = open_to_compare(c) else { continue };
        let Ok(st) = rustix::fs::fstat(&fd) else { continue };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            continue;
        }
        let now = ckpt_sigsafe::fileid::written_state(&st);
        let hash_now = |size| if readable { ckpt_sigsafe::fileid::bytes_hash(fd.as_fd(), size, &mut buf) } else { None };
        let Some(how) = change(&rec.state, &now, hash_now) else { continue };
        if accept {
            accepted += 1;
            if accepted <= NAMED {
                say!("myrestart: {}: {} changed since the checkpoint ({how}); restored as it is now (--files-as-is)", Had(&rec), Lossy(path));
            }
            continue;
        }
        let this = refuse(image_path, format_args!(
            "{}: {} changed since the checkpoint ({how}); the program would go on from what it knew of it then: put the file back as it was, or give --files-as-is to restart with it as it is",
            Had(&rec), Lossy(path)
        ));
        if let Some(earlier) = refused.replace(this) {
            earlier.say_one_of_several();
        }
    }
    if accepted > NAMED {
        say!("myrestart: and {} more files changed since the checkpoint, restored as they are now (--files-as-is)", accepted - NAMED);
    }
    refused.map_or(Ok(()), Err)
}
