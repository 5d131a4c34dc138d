//! The format's hashes: of headers and data ([`hash`], [`Hasher`]), of a region's contents
//! ([`RegionHasher`], in chunks that can be hashed apart), and of the bytes a region maps from
//! a file ([`content_hash`]); and the test for a page of zeros, which none of them hashes.
//! The crate root re-exports the first ones.

use crate::PAGE_SIZE;

/// Checksum used for headers and region data.
pub fn hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// Streaming form of [`hash`], for data written in pieces.
pub type Hasher = xxhash_rust::xxh3::Xxh3Default;

/// Whether a page holds only zeros. ORs each 256-byte block into four independent 64-bit
/// accumulators (which the compiler keeps in vector registers) and stops at the first block
/// with a bit set: at once, for most pages that are not zero.
pub fn is_zero_page(page: &[u8]) -> bool {
    let mut blocks = page.chunks_exact(256);
    for block in &mut blocks {
        let mut acc = [0u64; 4];
        for (k, word) in block.chunks_exact(8).enumerate() {
            acc[k % 4] |= u64::from_ne_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        }
        if acc[0] | acc[1] | acc[2] | acc[3] != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// Pages in a chunk of a region's hash: 1 MiB.
pub const CHUNK_PAGES: u64 = 256;

/// The hash of a region's contents, in two levels so that parts of a region can be hashed apart
/// (on two cores) and put together: each chunk of [`CHUNK_PAGES`] pages has the digest xxh3-64
/// over `(page index in the region as u64 LE, page bytes)` of its pages that are not all zeros;
/// the region's hash is xxh3-64 over `(chunk index as u64 LE, chunk digest as u64 LE)` of every
/// chunk with such a page. Zero pages contribute nothing, so the hash does not depend on whether
/// the image stores them as holes or as explicit zeros.
pub struct RegionHasher {
    outer: Hasher,
    inner: Hasher,
    chunk: Option<u64>,
}

impl RegionHasher {
    pub fn new() -> Self {
        RegionHasher { outer: Hasher::new(), inner: Hasher::new(), chunk: None }
    }
    /// Adds page `index` (indexes go up), which the caller knows is not all zeros.
    pub fn add_nonzero(&mut self, index: u64, page: &[u8]) {
        let c = index / CHUNK_PAGES;
        if self.chunk != Some(c) {
            self.flush();
            self.chunk = Some(c);
        }
        chunk_add(&mut self.inner, index, page);
    }
    /// Adds page `index` if it is not all zeros.
    pub fn add(&mut self, index: u64, page: &[u8]) {
        if !is_zero_page(page) {
            self.add_nonzero(index, page);
        }
    }
    /// Adds a whole chunk's digest, computed apart (see [`chunk_add`]); chunks go up.
    pub fn add_chunk(&mut self, chunk: u64, digest: u64) {
        self.flush();
        self.outer.update(&chunk.to_le_bytes());
        self.outer.update(&digest.to_le_bytes());
    }
    fn flush(&mut self) {
        if let Some(c) = self.chunk.take() {
            let d = self.inner.digest();
            self.inner.reset();
            self.outer.update(&c.to_le_bytes());
            self.outer.update(&d.to_le_bytes());
        }
    }
    pub fn digest(&self) -> u64 {
        match self.chunk {
            None => self.outer.digest(),
            Some(c) => {
                let mut o = self.outer.clone();
                o.update(&c.to_le_bytes());
                o.update(&self.inner.digest().to_le_bytes());
                o.digest()
            }
        }
    }
}

/// Adds page `index` of a region (not all zeros) to the digest of its chunk: the one
/// definition of a chunk digest, for [`RegionHasher`] and for chunks hashed apart.
pub fn chunk_add(chunk: &mut Hasher, index: u64, page: &[u8]) {
    chunk.update(&index.to_le_bytes());
    chunk.update(page);
}

impl Default for RegionHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// [`RegionHasher`] over a whole region held in memory.
pub fn region_hash(data: &[u8]) -> u64 {
    let mut h = RegionHasher::new();
    for (i, page) in data.chunks(PAGE_SIZE as usize).enumerate() {
        h.add(i as u64, page);
    }
    h.digest()
}

/// The content hash of the bytes a region maps from a file of `size` bytes: from `offset`,
/// `len` bytes but not past the end of the file, read with `read(at, buf)` (the number of bytes
/// read; 0 at the end of the file) through `buf`. `None` if the file ends early; the reader's
/// error is passed on. The checkpoint and the restart hash the file through this one function.
pub fn content_hash<E>(size: u64, offset: u64, len: u64, buf: &mut [u8], mut read: impl FnMut(u64, &mut [u8]) -> Result<usize, E>) -> Result<Option<u64>, E> {
    let mut h = Hasher::new();
    let end = offset + size.saturating_sub(offset).min(len);
    let mut at = offset;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        match read(at, &mut buf[..want])? {
            0 => return Ok(None),
            n => {
                h.update(&buf[..n]);
                at += n as u64;
            }
        }
    }
    Ok(Some(h.digest()))
}
