//! Memory this process maps for its own use, owned by a value: unmapped when the value goes.
//! No allocator is involved, so the signal handler and myrestart can use it.

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

/// A mapping of `len` bytes at `addr`, ours alone until dropped.
pub struct Mapping {
    addr: *mut core::ffi::c_void,
    len: usize,
}

impl Mapping {
    /// `len` bytes of private memory, zero-filled.
    pub fn anonymous(len: usize) -> Result<Mapping, Errno> {
        // SAFETY: a new private mapping at an address of the kernel's choosing overlaps
        // nothing of the program or of Rust's.
        let addr = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE) }?;
        Ok(Mapping { addr, len })
    }

    /// A shared view of `len` bytes of the file `fd` from `offset` (a multiple of the page size),
    /// readable, and writable (through to the file) with `write`.
    ///
    /// # Safety
    /// Nothing may shorten the file while the view lives, nor write by other means (`write`,
    /// `fallocate`, another process) bytes of it while a slice from [`Mapping::bytes`] or
    /// [`Mapping::bytes_mut`] covers them: the view is handed out as ordinary slices.
    pub unsafe fn file(fd: BorrowedFd<'_>, len: usize, offset: u64, write: bool) -> Result<Mapping, Errno> {
        let prot = if write { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a new mapping at an address of the kernel's choosing overlaps nothing; the
        // caller vouches for the file.
        let addr = unsafe { rustix::mm::mmap(core::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, offset) }?;
        Ok(Mapping { addr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` mapped, readable bytes, ours while `self` lives; writes go through
        // `&mut self` only.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    /// The bytes, writable. (A read-only file view faults if written: map with `write`.)
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, and `&mut self` makes this the only borrow.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }

    /// Moves `value` to the start of the mapping, for values too large for the stack; `None` if
    /// it does not fit. The value is never dropped (the mapping just goes).
    pub fn place<T>(&mut self, value: T) -> Option<&mut T> {
        if core::mem::size_of::<T>() > self.len || core::mem::align_of::<T>() > crate::PAGE {
            return None;
        }
        let at = self.addr as *mut T;
        // SAFETY: the mapping starts page-aligned (enough for T, checked) and holds a T
        // (checked); it is written before the reference is made, and `&mut self` makes this
        // the only borrow.
        unsafe {
            at.write(value);
            Some(&mut *at)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no borrow of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.addr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_memory_is_zeroed_and_holds_a_value() {
        let mut m = Mapping::anonymous(8192).unwrap();
        assert!(m.bytes().iter().all(|&b| b == 0));
        m.bytes_mut()[100] = 7;
        assert_eq!(m.bytes()[100], 7);
        assert_eq!(*m.place([3u64; 8]).unwrap(), [3u64; 8]);
        assert!(m.place([0u8; 8193]).is_none());
    }
}
