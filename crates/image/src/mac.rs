//! Optional keyed authentication of an image (`NT_CKPT_MAC`).
//!
//! Checksums catch damage, not intent: anyone who can write an image can recompute them. A site
//! that keeps images where others could change them gives a key file at checkpoint time
//! (`CKPT_KEY`) and at restart (`--key`); the image then carries a 32-byte keyed BLAKE3 MAC,
//! and a changed image, or one made with another key, is refused.
//!
//! The MAC covers, in this order: every page of plain region data that is not all zeros
//! (region by region, its index in the region as a little-endian u64, then its bytes), every
//! compressed region's stream whole, every descriptor's saved bytes, and last the headers
//! (`0..meta_len`) with the header checksum and the MAC itself read as zeros. Zero pages are
//! left out on both sides alike, whether the file holds them as holes or not.

use crate::image::Image;
use crate::verify::Extents;
use crate::{is_zero_page, ImageError, CKPT_NOTE_NAME, NT_CKPT_MAC, PAGE_SIZE};

pub const MAC_LEN: usize = 32;
pub type Key = [u8; 32];
type Mac = [u8; MAC_LEN];

const CONTEXT: &str = "ckpt 2026-11 image authentication key";

/// The key derived from the contents of a key file.
pub fn key_from(secret: &[u8]) -> Key {
    blake3::derive_key(CONTEXT, secret)
}

/// The MAC of the image whose headers are `image` and whose whole file is `file`.
pub fn compute(key: &Key, file: &[u8], image: &Image, holes: &impl Extents) -> Result<Mac, ImageError> {
    let mut h = blake3::Hasher::new_keyed(key);
    let stored = |off: u64, len: u64| -> Result<&[u8], ImageError> {
        let end = off.checked_add(len).ok_or(ImageError::Truncated)?;
        file.get(off as usize..end as usize).ok_or(ImageError::Truncated)
    };
    for i in 0..image.region_count() {
        let r = image.region(i)?;
        let rec = r.record;
        if !rec.has_data() {
            continue;
        }
        if rec.compressed() {
            h.update(stored(r.data_offset, rec.stored_len)?);
            continue;
        }
        let data = stored(r.data_offset, rec.size())?;
        for (from, to) in holes.extents(r.data_offset, r.data_offset + rec.size()) {
            let (a, b) = ((from - r.data_offset) as usize, (to - r.data_offset) as usize);
            let first = a / PAGE_SIZE as usize;
            for (k, page) in data[a..b].chunks(PAGE_SIZE as usize).enumerate() {
                if !is_zero_page(page) {
                    h.update(&((first + k) as u64).to_le_bytes());
                    h.update(page);
                }
            }
        }
    }
    for item in image.fds() {
        let (rec, _) = item?;
        if rec.has_blob() {
            h.update(stored(rec.blob_offset, rec.blob_len)?);
        }
    }
    // The headers, with the checksum field and the MAC read as zeros.
    let meta = image.meta();
    let (a, b) = (image.meta_hash_range(), image.note_range(CKPT_NOTE_NAME, NT_CKPT_MAC).unwrap_or(0..0));
    let skip = if a.start <= b.start { [a, b] } else { [b, a] };
    let mut at = 0;
    for r in skip {
        if r.start < at || r.end > meta.len() {
            return Err(ImageError::Malformed("authentication fields overlap"));
        }
        h.update(&meta[at..r.start]);
        h.update(&[0u8; MAC_LEN][..r.len().min(MAC_LEN)]);
        at = r.end;
    }
    h.update(&meta[at..]);
    Ok(*h.finalize().as_bytes())
}

/// Checks the image's MAC with `key`, in constant time.
pub fn check(key: &Key, file: &[u8], image: &Image, holes: &impl Extents) -> Result<(), ImageError> {
    let Some(saved) = image.note(CKPT_NOTE_NAME, NT_CKPT_MAC) else { return Err(ImageError::NotAuthenticated) };
    let want = compute(key, file, image, holes)?;
    let diff = saved.desc.iter().zip(want.iter()).fold(saved.desc.len() ^ MAC_LEN, |d, (a, b)| d | (a ^ b) as usize);
    if diff != 0 {
        return Err(ImageError::AuthenticationFailed);
    }
    Ok(())
}
