//! Writes a region as an LZ4-compressed stream (`CKPT_COMPRESS=lz4`; format in
//! `ckpt_image::compress`). Private anonymous memory is read in place; anything else is first
//! copied through `process_vm_readv`, so that nothing here can fault. Chunks are compressed
//! into a buffer of the scratch area.

use super::pages::{write_all, PageSource, PAGE};
use super::failure::Failure;
use ckpt_image::compress::{ChunkHeader, CHUNK, HEADER};
use ckpt_image::{is_zero_page, Hasher};
use ckpt_sigsafe::sys;

/// Writes the region at file offset `off`; returns the stored length and the stream's hash.
pub fn write_region(img: i32, start: usize, len: usize, off: u64, src: &PageSource, raw: &mut [u8], out: &mut [u8]) -> Result<(u64, u64), Failure> {
    let mut h = Hasher::new();
    let mut at = off;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK).min(raw.len());
        let addr = start + done;
        let chunk: &[u8] = if !src.bounce && src.zeros.is_empty() {
            // SAFETY: private anonymous memory listed readable cannot fault when read (see
            // write.rs), and nothing unmaps it meanwhile.
            unsafe { core::slice::from_raw_parts(addr as *const u8, n) }
        } else {
            let copied = sys::copy_own_memory(addr, n, raw);
            raw[copied..n].fill(0);
            // libckpt's own stack is stored as zeros (see write.rs).
            let (from, to) = (src.zeros.start.max(addr), src.zeros.end.min(addr + n));
            if from < to {
                raw[from - addr..to - addr].fill(0);
            }
            &raw[..n]
        };
        let zero = chunk.chunks(PAGE).all(is_zero_page);
        let (stored, payload): (usize, &[u8]) = if zero {
            (0, &[])
        } else if !worth_compressing(chunk, out) {
            (n, chunk)
        } else {
            match lz4_flex::block::compress_into(chunk, &mut out[..]) {
                Ok(m) if m < n => (m, &out[..m]),
                _ => (n, chunk),
            }
        };
        let header = ChunkHeader::encode(n, stored);
        write_all(img, header.as_ptr() as usize, HEADER, at)?;
        write_all(img, payload.as_ptr() as usize, payload.len(), at + HEADER as u64)?;
        h.update(&header);
        h.update(payload);
        at += (HEADER + payload.len()) as u64;
        done += n;
    }
    Ok((at - off, h.digest()))
}

/// Bytes of a chunk tried first: if they do not shrink by an eighth, the chunk (random data,
/// already compressed data) is stored as it is, at the cost of compressing only this sample.
const SAMPLE: usize = 64 * 1024;

fn worth_compressing(chunk: &[u8], out: &mut [u8]) -> bool {
    if chunk.len() <= SAMPLE {
        return true;
    }
    matches!(lz4_flex::block::compress_into(&chunk[..SAMPLE], out), Ok(m) if m < SAMPLE - SAMPLE / 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_data_is_stored_as_it_is() {
        let mut out = std::vec![0u8; 2 * CHUNK];
        let zeros = std::vec![0u8; CHUNK];
        assert!(worth_compressing(&zeros, &mut out));
        let mut x = 0x1234_5678_9abc_def0u64;
        let random: std::vec::Vec<u8> = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!worth_compressing(&random, &mut out));
        assert!(worth_compressing(&random[..1000], &mut out), "chunks smaller than the sample are always tried");
    }
}
