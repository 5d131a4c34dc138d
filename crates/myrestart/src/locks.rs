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

/// What becomes of `lock` in this process, whose descriptor record is `rec` (with its `path`):
/// the parked descriptor it is taken on, or why it is not. The plan's descriptors are in the
/// image's order, as the locks are: `at` is where the search for `rec`'s begins, and the slot
/// last found (the descriptor, and its slot if it has one), both kept from lock to lock, so
/// that the locks of an image cost one walk over the descriptors.
fn fate<'a>(p: &Plan, lock: &LockRecord, (rec, path): (FdRecord, &'a [u8]), at: &mut (usize, Option<(i32, Option<usize>)>)) -> Fate<'a> {
    let why = lock.why_not_restored(rec.kind);
    let slots = &p.fds[..p.nfds];
    let slot = match at.1 {
        _ if why.is_some() => None,
        Some((fd, slot)) if fd == lock.fd => slot,
        _ => {
            let found = (at.0..slots.len()).chain(0..at.0).find(|&i| slots[i].target == lock.fd);
            at.0 = found.unwrap_or(at.0);
            at.1 = Some((lock.fd, found));
            found
        }
    };
    let slot = slot.map(|i| &slots[i]);
    // A log that was gone holds a placeholder until step 2d makes a new file there.
    let new_log = |src: crate::fds::Parked| p.acts.list[..p.acts.noted()].iter().any(|a| a.fd == src && a.what == crate::acts::What::NewLog);
    let why = match (why, slot) {
        (Some(why), _) => why,
        // `--inherit-stdio`, or a standard descriptor on a pipe that leads outside a tree.
        (None, None) => "the descriptor comes back as myrestart's own",
        (None, Some(s)) if new_log(s.src) => "the file is gone, and the program gets a new one",
        (None, Some(_)) => "",
    };
    let parked = if why.is_empty() { slot.map(|s| s.src.raw()) } else { None };
    Fate { rec, path, parked, why }
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
    let mut at = (0, None);
    for item in image.locks_on_descriptors() {
        let (lock, rec, path) = item.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        let f = fate(p, &lock, (rec, path), &mut at);
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
    let mut at = (0, None);
    for (lock, rec, path) in image.locks_on_descriptors().filter_map(Result::ok).filter(|(l, _, _)| l.kind == LockKind::Posix) {
        let f = fate(p, &lock, (rec, path), &mut at);
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
