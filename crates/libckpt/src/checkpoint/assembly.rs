//! Assembling a tree image in the root's writer: each member's part file copied in after what
//! is already there (its data stretches only, so holes stay holes), its offsets moved to count
//! from the start of the image, its regions that match the root's pointed at the root's copy,
//! and its headers sealed and, with a key, authenticated again. `tree` decides when (once the
//! member says its part is written) and where.
//!
//! # Signal-safety fence
//! Runs in the root's writer (or its handler, with `CKPT_SYNC`): raw system calls
//! (`copy_file_range`, `fallocate`), mappings of its own unmapped before it returns, and no
//! allocation, locks or libc.

use super::failure::Failure;
use rustix::fd::BorrowedFd;

/// Copies a part file into the image at `base`, its data stretches only (holes stay holes), and
/// makes the image that long (a part may end in a hole: pages the root stores).
pub fn copy_part(from: BorrowedFd<'_>, to: BorrowedFd<'_>, base: u64, len: u64) -> Result<(), Failure> {
    rustix::fs::ftruncate(to, base + len).map_err(|e| Failure::new("making room for a part of the tree", e))?;
    for (a, b) in ckpt_sigsafe::extents::data_extents(from, 0, len) {
        let mut off = a;
        while off < b {
            let (mut src, mut dst) = (off, base + off);
            match rustix::io::retry_on_intr(|| rustix::fs::copy_file_range(from, Some(&mut src), to, Some(&mut dst), (b - off).min(1 << 30) as usize)) {
                Ok(0) => return Err(Failure::plain("copying a part of the tree (it ended early)")),
                Ok(n) => off += n as u64,
                Err(e) => return Err(Failure::new("copying a part of the tree into the image", e)),
            }
        }
    }
    Ok(())
}

/// Moves the offsets of the part now at `base` to count from the start of the image, seals its
/// headers again and, with a key, authenticates it again. A region with the same bytes as one
/// of the root's (`in_root` says where those are) points there, and its own copy is punched
/// out of the file. Returns the part's header checksum.
pub fn rebase_part(img: BorrowedFd<'_>, base: u64, len: u64, key: Option<&ckpt_image::mac::Key>, in_root: &dyn Fn(&ckpt_image::RegionRecord) -> Option<u64>) -> Result<u64, Failure> {
    let bad = |_| Failure::plain("reading back a part of the tree");
    // SAFETY: a view of our own image file, from the page-aligned start of the part to its end;
    // nothing else writes the file meanwhile. Past the first look, only the headers are
    // borrowed from the view, and what is punched out lies after them.
    let mut view = unsafe { ckpt_sigsafe::mapping::Mapping::file(img, len as usize, base, true) }.map_err(|e| Failure::new("mapping a part of the tree", e))?;
    {
        let meta_len = ckpt_image::image::meta_len(view.bytes()).map_err(bad)? as usize;
        let meta = view.bytes_mut().get_mut(..meta_len).ok_or(Failure::plain("reading back a part of the tree"))?;
        // Only where the root's copy lies after this part's headers would (a reader checks
        // that data never overlaps the headers).
        let floor = meta_len as u64;
        let punch = |off: u64, n: u64| {
            // The stretch punched is one no header refers to any more.
            let _ = rustix::fs::fallocate(img, rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE, base + off, n);
        };
        ckpt_image::tree::rebase_sharing(meta, base, |r| in_root(r).filter(|&off| off >= floor), punch).map_err(bad)?;
        ckpt_image::seal(meta).map_err(bad)?;
        if let Some(key) = key {
            authenticate_part(img, base + len, meta, key)?;
        }
        ckpt_image::bytes::le_u64_at(meta, ckpt_image::image::meta_hash_offset(meta).map_err(bad)?).ok_or(Failure::plain("reading back a part of the tree"))
    }
}

/// The part's MAC, over the image file up to `file_len` (the part's end).
fn authenticate_part(img: BorrowedFd<'_>, file_len: u64, meta: &mut [u8], key: &ckpt_image::mac::Key) -> Result<(), Failure> {
    // The state decodes into memory of its own (it is large for a signal stack).
    let mut room = ckpt_sigsafe::mapping::Mapping::anonymous(core::mem::size_of::<ckpt_image::ProcessState>())
        .map_err(|e| Failure::new("authenticating a part of the tree", e))?;
    let state = room.place(ckpt_image::ProcessState::ZERO).ok_or(Failure::plain("authenticating a part of the tree"))?;
    super::auth::authenticate(img, meta, file_len, key, state)
}
