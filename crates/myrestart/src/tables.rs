//! The plan's tables (threads, descriptors, file mappings, pipes, pty pairs, sockets, shared files and
//! memory, the acts), sized from the image instead of fixed in the program. (The table itself
//! and the arena that holds them are `arena.rs`'s.)
//!
//! The plan counts what the image holds ([`Counts`], refused past the limits in
//! `ckpt_image::limits`) and [`fit`] maps one arena for all its tables, sized from those counts:
//! an image restarts whatever it holds up to the limits the checkpoint has too, and a small
//! image costs a small arena. The program itself stays small, which matters because `hole`
//! copies it whole at every restart.
//!
//! The arena is outside the program, so it does not move with it: `hole` reserves room for it
//! at the end of its block and [`follow`] moves it there (`mremap`) and points every table at
//! its new place. Every table is placed by the one function [`lay_out`], for the arena's first
//! mapping and for its move alike.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation (memory comes from `mmap`),
//! raw system calls only.

use crate::arena::{place, Arena, Mode, Needs};
use crate::fds::Parked;
use crate::plan::{FdSlot, MapSlot, PairSlot, PipeSlot, Plan, SharedFile, SharedSlot, NO_PTY, NO_THREAD};
use crate::refusal::{refuse, Refusal};
use ckpt_image::limits::{Counts, MAX_TREE};
use ckpt_sigsafe::page_up;
use core::ffi::CStr;
use rustix::io::Errno;
use rustix::mm::{MapFlags, MremapFlags, ProtFlags};

/// Places each of the plan's tables, one after another from `base`, with lengths from `n`.
/// Returns the bytes they take. The one list of the plan's tables: each is laid out here, and
/// so moved here too.
fn lay_out(p: &mut Plan, base: usize, n: &Needs, mode: Mode) -> usize {
    let (one, all) = (n.largest, n.total);
    let mut at = base;
    place(&mut p.others, &mut at, one.threads, mode, NO_THREAD);
    place(&mut p.fds, &mut at, one.fds, mode, FdSlot { target: 0, src: Parked::NONE, cloexec: false });
    // A slot per region at most (each shared or file-backed one).
    place(&mut p.file_maps, &mut at, one.regions, mode, MapSlot { region: 0, fd: Parked::NONE, fill: false, private: false });
    // Those of a tree's pool and a process's own: a pipe or socket pair, or a shared open file,
    // has a descriptor in some process.
    place(&mut p.pipes, &mut at, all.fds, mode, PipeSlot { ino: 0, rd: None, wr: None, has_rd: false, has_wr: false, pooled: false });
    // A pty pair has its master's descriptor in some process.
    place(&mut p.ptys, &mut at, all.fds, mode, NO_PTY);
    place(&mut p.pairs, &mut at, all.fds, mode, PairSlot { ino: [0; 2], fd: [Parked::NONE; 2], pooled: false });
    place(&mut p.files, &mut at, all.fds, mode, SharedFile { dev: 0, ino: 0, offset: 0, flags: 0, fd: Parked::NONE, gone: false });
    // Shared memory: a memfd or deleted file open, or a region mapping it.
    place(&mut p.shared, &mut at, all.fds.saturating_add(all.regions), mode, SharedSlot { dev: 0, ino: 0, fd: Parked::NONE, sized: false });
    // A socket to bind for each descriptor, a shared memory object for each region, and each
    // process's two logs.
    place(&mut p.acts.list, &mut at, all.fds.saturating_add(all.regions).saturating_add(2 * MAX_TREE), mode, crate::acts::NO_ACT);
    at - base
}
/// Makes sure the tables hold a process of `counts` more (the image's, or the next part of a
/// tree): refuses the image if a count is past its limit; otherwise grows the arena when it
/// is too small, keeping what the tables hold.
pub fn fit(path: &CStr, p: &mut Plan, counts: Counts) -> Result<(), Refusal> {
    if let Some(over) = counts.over_limit() {
        return Err(refuse(path, format_args!("{over}")));
    }
    let old = p.arena;
    let needs = Needs { largest: old.needs.largest.max(counts), total: old.needs.total.plus(counts) };
    let len = page_up(lay_out(p, 0, &needs, Mode::Measure).max(1));
    // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing; only
    // the pages the tables use are touched (NORESERVE: it is not counted against overcommit
    // beyond those).
    let base = unsafe {
        rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE)
    }
    .map_err(|e| refuse(path, format_args!("cannot map {len} bytes for the restore's tables: {}", ckpt_sigsafe::errno::describe(e))))?;
    lay_out(p, base as usize, &needs, Mode::Fill);
    if old.len > 0 {
        // SAFETY: the old arena, which no table points into any more.
        let _ = unsafe { rustix::mm::munmap(old.base as *mut _, old.len) };
    }
    p.arena = Arena { base: base as usize, len, needs };
    Ok(())
}

/// Moves the arena to `to` (page-aligned, `p.arena.len` bytes that `hole` reserved in its
/// block, whatever is mapped there is replaced) and points every table at its new place.
pub fn follow(p: &mut Plan, to: usize) -> Result<(), Errno> {
    let a = p.arena;
    if a.len == 0 || a.base == to {
        return Ok(());
    }
    // SAFETY: the arena is ours and the destination is part of our own block, reserved for it;
    // every table is pointed at the new place right after, before any is used.
    unsafe { rustix::mm::mremap_fixed(a.base as *mut _, a.len, a.len, MremapFlags::MAYMOVE, to as *mut _) }?;
    lay_out(p, to, &a.needs, Mode::Moved);
    p.arena.base = to;
    Ok(())
}
