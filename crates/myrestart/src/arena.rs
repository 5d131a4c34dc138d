//! Memory for tables whose size comes from the image: [`Table`], an array in memory mapped for
//! it (the plan's tables live in one [`Arena`], laid out by `tables.rs`), and [`Scratch`], a
//! table mapped for one step and unmapped after it.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation (memory comes from `mmap`),
//! raw system calls only.

use ckpt_image::limits::Counts;
use ckpt_sigsafe::page_up;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

/// A table of `len` entries at `ptr`, in memory mapped for it: used like an array (indexed,
/// sliced, `len()`), through `Deref`. Not `Copy`: one owner, so a `&mut` to its entries is the
/// only one.
pub struct Table<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Table<T> {
    /// No entries (the plan before `tables::fit`).
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

/// How [`place`] treats each table (see `tables::lay_out`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only count the bytes the tables take.
    Measure,
    /// Fresh memory: fill each table, with what its old place held first (so that growing the
    /// arena loses nothing), then empty slots.
    Fill,
    /// The arena moved with its contents: only point each table at its new place.
    Moved,
}

/// Points table `t` at the next `len` entries from `*at` (aligned for `T`), and moves `*at`
/// past them. With [`Mode::Fill`], the entries are written first, from what `t` held, then
/// `empty`.
pub fn place<T: Copy>(t: &mut Table<T>, at: &mut usize, len: usize, mode: Mode, empty: T) {
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

/// Runs `f` on a zeroed scratch table of `n` entries, mapped for the call (an image may need
/// any number) and unmapped after.
pub fn with_table<R>(n: usize, f: impl FnOnce(&mut [u64]) -> R) -> Result<R, rustix::io::Errno> {
    let len = (n.max(1) * 8).next_multiple_of(4096);
    // SAFETY: a fresh private anonymous mapping, unmapped below.
    let table = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE) }?;
    // SAFETY: the mapping is `len` zeroed bytes, room for `n` u64s, used only through this slice.
    let r = f(unsafe { core::slice::from_raw_parts_mut(table as *mut u64, n) });
    // SAFETY: our own mapping; the slice is gone with `f`.
    let _ = unsafe { rustix::mm::munmap(table, len) };
    Ok(r)
}
