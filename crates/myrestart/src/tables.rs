//! The plan's tables (threads, descriptors, file mappings, pipes, sockets, shared files and
//! memory, the acts), sized from the image instead of fixed in the program.
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

use crate::refusal::{refuse, Refusal};
use crate::plan::{FdSlot, MapSlot, PairSlot, PipeSlot, Plan, SharedFile, SharedSlot, NO_THREAD};
use ckpt_image::limits::{Counts, MAX_TREE};
use ckpt_sigsafe::page_up;
use ckpt_sigsafe::out::Lossy;
use core::ffi::CStr;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use rustix::io::Errno;
use rustix::mm::{MapFlags, MremapFlags, ProtFlags};

/// A table of `len` entries at `ptr`, in memory mapped for it: used like an array (indexed,
/// sliced, `len()`), through `Deref`. Not `Copy`: one owner, so a `&mut` to its entries is the
/// only one.
pub struct Table<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Table<T> {
    /// No entries (the plan before [`fit`]).
    pub const EMPTY: Table<T> = Table { ptr: NonNull::dangling().as_ptr(), len: 0 };
}

impl<T> Deref for Table<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is dangling with `len` 0, or (set by `lay_out`) the start of `len`
        // initialised entries in a mapping that stays for the whole run: the arena, which
        // `follow` moves only after pointing the tables at its new place, or a `Scratch`,
        // which outlives its table.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T> DerefMut for Table<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference to the entries.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// What the tables must hold: the counts of the largest process of the image (each count on
/// its own) and of all its processes together (a tree's pool holds what they share).
#[derive(Clone, Copy, Default)]
pub struct Needs {
    pub largest: Counts,
    pub total: Counts,
}

/// The arena: where it is mapped, its length, and what it was laid out for.
#[derive(Clone, Copy)]
pub struct Arena {
    pub base: usize,
    pub len: usize,
    pub needs: Needs,
}

impl Arena {
    pub const NONE: Arena = Arena { base: 0, len: 0, needs: Needs { largest: Counts { regions: 0, fds: 0, threads: 0 }, total: Counts { regions: 0, fds: 0, threads: 0 } } };
}

/// How [`lay_out`] treats each table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only count the bytes the tables take.
    Measure,
    /// Fresh memory: fill each table, with what its old place held first (so that growing the
    /// arena loses nothing), then empty slots.
    Fill,
    /// The arena moved with its contents: only point each table at its new place.
    Moved,
}

/// Places each of the plan's tables, one after another from `base`, with lengths from `n`.
/// Returns the bytes they take. The one list of the plan's tables: each is laid out here, and
/// so moved here too.
fn lay_out(p: &mut Plan, base: usize, n: &Needs, mode: Mode) -> usize {
    let (one, all) = (n.largest, n.total);
    let mut at = base;
    place(&mut p.others, &mut at, one.threads, mode, NO_THREAD);
    place(&mut p.fds, &mut at, one.fds, mode, FdSlot { target: 0, src: 0, cloexec: false });
    // A slot per region at most (each shared or file-backed one).
    place(&mut p.file_maps, &mut at, one.regions, mode, MapSlot { region: 0, fd: -1, fill: false, private: false });
    // Those of a tree's pool and a process's own: a pipe or socket pair, or a shared open file,
    // has a descriptor in some process.
    place(&mut p.pipes, &mut at, all.fds, mode, PipeSlot { ino: 0, rd: -1, wr: -1, has_rd: false, has_wr: false, pooled: false });
    place(&mut p.pairs, &mut at, all.fds, mode, PairSlot { ino: [0; 2], fd: [-1; 2], pooled: false });
    place(&mut p.files, &mut at, all.fds, mode, SharedFile { dev: 0, ino: 0, offset: 0, flags: 0, fd: -1, gone: false });
    // Shared memory: a memfd or deleted file open, or a region mapping it.
    place(&mut p.shared, &mut at, all.fds.saturating_add(all.regions), mode, SharedSlot { dev: 0, ino: 0, fd: -1 });
    // A socket to bind for each descriptor, and each process's two logs.
    place(&mut p.acts.list, &mut at, all.fds.saturating_add(2 * MAX_TREE), mode, crate::acts::NO_ACT);
    at - base
}

fn place<T: Copy>(t: &mut Table<T>, at: &mut usize, len: usize, mode: Mode, empty: T) {
    *at = at.next_multiple_of(core::mem::align_of::<T>());
    let ptr = *at as *mut T;
    *at = at.saturating_add(len.saturating_mul(core::mem::size_of::<T>()));
    match mode {
        Mode::Measure => return,
        Mode::Fill => {
            for i in 0..len {
                let v = t.get(i).copied().unwrap_or(empty);
                // SAFETY: `ptr .. ptr + len` is this table's part of the fresh arena (measured
                // by the same function), aligned for `T`, and distinct from the old table read.
                unsafe { ptr.add(i).write(v) };
            }
        }
        Mode::Moved => {}
    }
    *t = Table { ptr, len };
}

/// Makes sure the tables hold a process of `counts` more (the image's, or the next part of a
/// tree): refuses the image if a count is past its limit; otherwise grows the arena when it
/// is too small, keeping what the tables hold.
pub fn fit(path: &CStr, p: &mut Plan, counts: Counts) -> Result<(), Refusal> {
    if let Some(over) = counts.over_limit() {
        return Err(Refusal::new(format_args!("{}: {over}", Lossy(path.to_bytes()))));
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

/// A table for one step of the plan (`files::pool`'s lists), mapped for it and unmapped when
/// it goes.
pub struct Scratch<T> {
    table: Table<T>,
    map_len: usize,
}

impl<T: Copy> Scratch<T> {
    /// `len` entries, each `empty`.
    pub fn new(len: usize, empty: T) -> Result<Scratch<T>, Errno> {
        let map_len = page_up(len.checked_mul(core::mem::size_of::<T>()).ok_or(Errno::NOMEM)?.max(1));
        // SAFETY: a fresh private anonymous mapping, unmapped by `drop`.
        let base = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), map_len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE) }?;
        let ptr = base as *mut T;
        for i in 0..len {
            // SAFETY: entry `i` is inside the fresh mapping, which is page-aligned.
            unsafe { ptr.add(i).write(empty) };
        }
        Ok(Scratch { table: Table { ptr, len }, map_len })
    }
}

impl<T> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.table
    }
}

impl<T> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.table
    }
}

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the table goes with `self`.
        let _ = unsafe { rustix::mm::munmap(self.table.ptr as *mut _, self.map_len) };
    }
}
