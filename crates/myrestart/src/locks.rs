//! File locks held at the checkpoint (`NT_CKPT_LOCKS`), taken again on the restored
//! descriptors, never waiting: a lock another process holds now refuses the restart, naming
//! the file and the lock.
//!
//! - `flock` and OFD locks belong to an open file description: taken on the parked description
//!   before the point of no return ([`take`]), they go with it to its old number. One that two
//!   processes of a tree share is one lock: each takes it on the same description, which the
//!   kernel counts once.
//! - POSIX locks belong to the process, and any `close` by it of a descriptor of their file
//!   drops them all, so the parked descriptors, closed at the end of the restore, would take
//!   them away. They are taken before the point of no return too (the check, held meanwhile),
//!   and again on the restored descriptors right after the parked ones are closed ([`retake`]).
//! - Leases, mandatory locks, locks of a kind not known here and locks on a descriptor not
//!   reopened by path (a file the image stores rather than names, a deleted file or a memfd; a
//!   pipe; one that comes back as myrestart's own) are not taken: each is named, in the words
//!   of `LockRecord::why_not_restored`, which the checkpoint names them with too.
//!
//! # Restrictions
//! Runs before and after the point of no return in myrestart: no allocation, raw system calls.

use crate::plan::Plan;
use crate::refusal::{refuse, Refusal};
use ckpt_image::fds::FdRecord;
use ckpt_image::locks::{LockKind, LockRecord};
use ckpt_image::Image;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::{say, sys};
use core::ffi::CStr;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

/// What becomes of one lock: taken on the descriptor parked as `Some(fd)`, or named and left.
struct Fate<'a> {
    rec: FdRecord,
    path: &'a [u8],
    /// The parked descriptor that becomes `rec.fd`, if the lock is taken again.
    parked: Option<i32>,
    /// Why it is not, if it is not.
    why: &'static str,
}

/// What becomes of `lock` in this process: the descriptor record it names, and the parked
/// descriptor it is taken on, or why it is not.
fn fate<'a>(image: &Image<'a>, p: &Plan, lock: &LockRecord) -> Option<Fate<'a>> {
    let (rec, path) = image.fds().filter_map(Result::ok).find(|(r, _)| r.fd == lock.fd)?;
    let slot = p.fds[..p.nfds].iter().find(|s| s.target == lock.fd);
    // A log that was gone holds a placeholder until step 2d makes a new file there.
    let new_log = |src: crate::fds::Parked| p.acts.list[..p.acts.noted()].iter().any(|a| a.fd == src && a.what == crate::acts::What::NewLog);
    let why = match (lock.why_not_restored(rec.kind), slot) {
        (Some(why), _) => why,
        // `--inherit-stdio`, or a standard descriptor on a pipe that leads outside a tree.
        (None, None) => "the descriptor comes back as myrestart's own",
        (None, Some(s)) if new_log(s.src) => "the file is gone, and the program gets a new one",
        (None, Some(_)) => "",
    };
    let parked = if why.is_empty() { slot.map(|s| s.src.raw()) } else { None };
    Some(Fate { rec, path, parked, why })
}

/// Takes lock `lock` on descriptor `fd`, without waiting.
fn take_one(fd: i32, lock: &LockRecord) -> Result<(), Errno> {
    use rustix::fs::FlockOperation as Op;
    match lock.kind {
        LockKind::Flock => {
            // SAFETY: `fd` is open in this process (a parked descriptor, or its restored
            // number), and only borrowed for the call.
            let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::fs::flock(bfd, if lock.write_lock() { Op::NonBlockingLockExclusive } else { Op::NonBlockingLockShared })
        }
        LockKind::Ofd | LockKind::Posix => sys::set_range_lock(fd, lock.kind == LockKind::Ofd, lock.write_lock(), lock.start, lock.len),
        LockKind::Lease | LockKind::Other => Ok(()),
    }
}

/// Before the point of no return, in the process that becomes the program (after the plan, so
/// that no check of the plan closes a descriptor of a locked file after it): every lock the
/// image holds that a restart can take, taken; each other one named. A lock another process
/// holds now refuses the restart (nothing has changed yet: the locks taken so far go with this
/// process).
pub fn take(image_path: &CStr, p: &Plan) -> Result<(), Refusal> {
    let Some(image) = p.image else { return Ok(()) };
    for lock in image.locks() {
        let lock = lock.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        let Some(f) = fate(&image, p, &lock) else { continue };
        let Some(fd) = f.parked else {
            say!("myrestart: fd {} ({}): its {lock} is not restored ({})", f.rec.fd, Lossy(f.path), f.why);
            continue;
        };
        take_one(fd, &lock).map_err(|e| match e {
            Errno::AGAIN | Errno::ACCESS => refuse(
                image_path,
                format_args!("fd {} ({}): another process holds a lock on it now that conflicts with the program's {lock}; the restart can go on once it lets go", f.rec.fd, Lossy(f.path)),
            ),
            e => refuse(image_path, format_args!("fd {} ({}): its {lock} cannot be taken again: {}", f.rec.fd, Lossy(f.path), describe(e))),
        })?;
    }
    Ok(())
}

/// After the point of no return, once myrestart's parked descriptors are closed (which dropped
/// this process's POSIX locks): each POSIX lock taken again on its restored descriptor. Only a
/// process that took it in the moment between (one that was waiting for it) can make this
/// fail; the program does not run without its lock then: one line, and the restore ends.
pub fn retake(p: &Plan) {
    let Some(image) = p.image else { return };
    for lock in image.locks().filter_map(Result::ok).filter(|l| l.kind == LockKind::Posix) {
        let Some(f) = fate(&image, p, &lock) else { continue };
        if f.parked.is_none() {
            continue;
        }
        if let Err(e) = take_one(f.rec.fd, &lock) {
            say!(
                "myrestart: restore failed after the point of no return: fd {} ({}): its {lock} was taken by another process as the restore moved it to its descriptor: {}",
                f.rec.fd,
                Lossy(f.path),
                describe(e)
            );
            sys::exit_group(myrestart::EXIT_LOST);
        }
    }
}
