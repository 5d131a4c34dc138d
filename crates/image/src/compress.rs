//! The compressed form of a region's bytes (`RF_COMPRESSED`), for images written with
//! `CKPT_COMPRESS=lz4`: the region cut into chunks of [`CHUNK`] bytes (the last may be
//! shorter), each stored as
//!
//! ```text
//!   raw_len: u32, stored_len: u32, then stored_len bytes:
//!     stored_len == 0        the chunk is all zeros
//!     stored_len == raw_len  the chunk as it is (it did not compress)
//!     otherwise              an LZ4 block that decompresses to raw_len bytes
//! ```
//!
//! The region's `data_hash` is then the xxh3-64 of the stored stream itself.

use crate::bytes::Reader;
use crate::ImageError;

/// Uncompressed bytes per chunk.
pub const CHUNK: usize = 1 << 20;
/// Bytes of a chunk header.
pub const HEADER: usize = 8;
/// Room for the largest stored chunk: LZ4's worst case for [`CHUNK`] bytes, plus the header.
pub const MAX_STORED: usize = CHUNK + CHUNK / 255 + 16 + HEADER;

/// How one chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Zero,
    Raw,
    Lz4,
}

/// A checked chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub raw_len: usize,
    pub stored_len: usize,
    pub kind: Chunk,
}

impl ChunkHeader {
    /// Parses a header for a chunk that must hold at most `remaining` uncompressed bytes.
    pub fn parse(bytes: &[u8], remaining: usize) -> Result<ChunkHeader, ImageError> {
        let mut r = Reader::new(bytes);
        let raw_len = r.u32()? as usize;
        let stored_len = r.u32()? as usize;
        if raw_len == 0 || raw_len > CHUNK || raw_len > remaining || stored_len > raw_len {
            return Err(ImageError::Malformed("bad compressed chunk header"));
        }
        let kind = match stored_len {
            0 => Chunk::Zero,
            n if n == raw_len => Chunk::Raw,
            _ => Chunk::Lz4,
        };
        Ok(ChunkHeader { raw_len, stored_len, kind })
    }

    pub fn encode(raw_len: usize, stored_len: usize) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(&(raw_len as u32).to_le_bytes());
        h[4..].copy_from_slice(&(stored_len as u32).to_le_bytes());
        h
    }
}

/// Walks a whole stored stream, checking that its chunks add up to `size` bytes. Returns how
/// many of those bytes are in chunks that are not all zeros.
pub fn check_stream(stream: &[u8], size: u64) -> Result<u64, ImageError> {
    let mut at = 0usize;
    let mut remaining = usize::try_from(size).map_err(|_| ImageError::Malformed("bad compressed chunk header"))?;
    let mut nonzero = 0u64;
    while remaining > 0 {
        let h = ChunkHeader::parse(stream.get(at..).and_then(|s| s.get(..HEADER)).ok_or(ImageError::Truncated)?, remaining)?;
        at += HEADER + h.stored_len;
        if at > stream.len() {
            return Err(ImageError::Truncated);
        }
        if h.kind != Chunk::Zero {
            nonzero += h.raw_len as u64;
        }
        remaining -= h.raw_len;
    }
    if at != stream.len() {
        return Err(ImageError::Malformed("compressed region has trailing bytes"));
    }
    Ok(nonzero)
}
