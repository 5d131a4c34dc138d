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
    // SAFETY: our own image file, which nothing shortens or writes while the view lives (it is
    // ours and unnamed, or named only by us, and this writer only reads it here).
    let view = unsafe { ckpt_sigsafe::mapping::Mapping::file(fd, file_len as usize, 0, false) }
        .map_err(|e| Failure::new("mapping the image to authenticate it", e))?;
    let image = ckpt_image::Image::parse(meta, file_len, state).map_err(|_| Failure::plain("reading back the image headers"))?;
    let mac = ckpt_image::mac::compute(key, view.bytes(), &image, &ckpt_image::verify::Dense).map_err(|_| Failure::plain("authenticating the image"))?;
    let at = image.note_range(CKPT_NOTE_NAME, NT_CKPT_MAC).ok_or(Failure::plain("authenticating the image"))?;
    drop(view);
    meta[at].copy_from_slice(&mac);
    seal(meta).map_err(|_| Failure::plain("sealing the image headers"))
}
