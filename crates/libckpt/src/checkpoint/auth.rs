//! With a key (`CKPT_KEY`): the image's MAC, computed over the data in the file and the
//! sealed headers, and put into the `NT_CKPT_MAC` note (the headers sealed again).
//!
//! # Signal-safety fence
//! Runs in the writer: a read-only mapping of its own image file, unmapped before it returns,
//! and fixed buffers; no allocation, no locks, no libc.

use super::failure::Failure;
use ckpt_image::{seal, ProcessState, CKPT_NOTE_NAME, NT_CKPT_MAC};

/// With a key (`CKPT_KEY`): computes the image's MAC over the data already in the file and the
/// sealed headers in `meta`, puts it in the `NT_CKPT_MAC` note and seals the headers again.
pub fn authenticate(fd: rustix::fd::BorrowedFd<'_>, meta: &mut [u8], file_len: u64, key: &ckpt_image::mac::Key, state: &mut ProcessState) -> Result<(), Failure> {
    let len = file_len as usize;
    // SAFETY: a read-only shared view of our own image file, unmapped below; nothing shortens
    // the file meanwhile (it is ours and unnamed, or named only by us).
    let view = unsafe {
        rustix::mm::mmap(core::ptr::null_mut(), len, rustix::mm::ProtFlags::READ, rustix::mm::MapFlags::SHARED, fd, 0)
    }
    .map_err(|e| Failure::new("mapping the image to authenticate it", e))?;
    // SAFETY: the view is `len` readable bytes, alive until the munmap below.
    let file = unsafe { core::slice::from_raw_parts(view as *const u8, len) };
    let result = (|| {
        let image = ckpt_image::Image::parse(meta, file_len, state).map_err(|_| Failure::plain("reading back the image headers"))?;
        let mac = ckpt_image::mac::compute(key, file, &image, &ckpt_image::verify::Dense).map_err(|_| Failure::plain("authenticating the image"))?;
        let at = image.note_range(CKPT_NOTE_NAME, NT_CKPT_MAC).ok_or(Failure::plain("authenticating the image"))?;
        Ok((mac, at))
    })();
    // SAFETY: our own view; `file` is not used after this.
    let _ = unsafe { rustix::mm::munmap(view, len) };
    let (mac, at) = result?;
    meta[at].copy_from_slice(&mac);
    seal(meta).map_err(|_| Failure::plain("sealing the image headers"))
}
