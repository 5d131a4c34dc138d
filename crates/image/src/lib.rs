//! The ckpt image format, shared by the writer (`libckpt.so`) and the reader (`myrestart`).
//!
//! An image is an ELF64 core file (`ET_CORE`, `EM_X86_64`) that `readelf` and `gdb` can read:
//!
//! ```text
//!  offset 0        ELF header (64 bytes)
//!  64              program headers: [0] PT_NOTE, then one PT_LOAD per region, in address order
//!  ...             the PT_NOTE segment, 4-byte aligned notes:
//!                    "CKPT" NT_CKPT_STATE    first, always: magic, version, checksums, process state
//!                    "CKPT" NT_CKPT_THREAD   one per thread: TLS base, rseq, robust list, signal frame
//!                    "CORE" NT_PRSTATUS      the interrupted registers (what gdb shows)
//!                    "CORE" NT_PRPSINFO      program name and arguments
//!                    "CORE" NT_FPREGSET      the legacy FXSAVE area
//!                    "LINUX" NT_X86_XSTATE   the whole XSAVE area (AVX, AVX-512)
//!                    "CORE" NT_AUXV          the auxiliary vector
//!                    "CKPT" NT_CKPT_REGIONS  per-region facts the PT_LOADs cannot say (kind, file, hash)
//!                    "CKPT" NT_CKPT_FDS      the open descriptors and how to reopen them
//!                    "CKPT" NT_CKPT_TIMERS   POSIX timers, if there are any
//!                    "CKPT" NT_CKPT_EPOLL    epoll registrations, if there are any
//!                    "CKPT" NT_CKPT_SOCKETS  sockets: kind, addresses, options, peer
//!                    "CKPT" NT_CKPT_TIMERFDS timerfds: clock and times
//!                    "CKPT" NT_CKPT_INOTIFY  inotify watches: path and mask
//!                    "CKPT" NT_CKPT_TREE     the processes of a tree checkpoint (see `tree`)
//!                    "CKPT" NT_CKPT_SHARED   pages stored elsewhere: the root's copy, or a base image
//!                    "CKPT" NT_CKPT_CHAIN    the image's identity and the base images it needs
//!                    "CKPT" NT_CKPT_FILEMAPS the files of the regions mapped from them again
//!                    "CKPT" NT_CKPT_ORIGIN   what the process was started as (command, directory, run)
//!                    "CKPT" NT_CKPT_MAC      keyed authentication, when the image has a key
//!  page-aligned    region contents, each PT_LOAD's data starting on a page boundary
//!  page-aligned    contents of deleted-but-open files and memfds, bytes in pipes and socket
//!                  queues, referenced from NT_CKPT_FDS
//!  page-aligned    in a tree image: each other process's whole image, one after another
//! ```
//!
//! Compatibility rule: the state note carries [`FORMAT_VERSION`]. A reader accepts exactly the
//! versions it knows and rejects any other by number; a change to any note layout bumps it.
//! Integrity: `meta_hash` (xxh3-64) covers bytes `0..meta_len` (headers and notes) with the hash
//! field itself read as zero; each region record holds the [`RegionHasher`] hash of its
//! contents. Pages that hold only zeros are holes in the file: they take no space.
//!
//! This crate is `no_std`, allocates nothing and has no `unsafe`: it only turns bytes into
//! values and back, so both restricted programs can use it and the host can test it.
#![no_std]
#![forbid(unsafe_code)]

pub mod bytes;
pub mod chain;
pub mod compress;
pub mod elf;
pub mod epoll;
pub mod fds;
pub mod filemaps;
pub mod frame;
pub mod image;
pub mod inotify;
pub mod limits;
pub mod mac;
pub mod note;
pub mod origin;
pub mod region;
pub mod report;
pub mod shared;
pub mod sockets;
pub mod standalone;
pub mod state;
pub mod thread;
pub mod timerfd;
pub mod timers;
pub mod tree;
pub mod verify;

pub use image::{seal, Image, RegionRef};
pub use region::{RegionKind, RegionRecord};
pub use state::ProcessState;
pub use thread::ThreadState;

/// Bumped on any change to the layout of a ckpt note.
pub const FORMAT_VERSION: u32 = 8;
/// The first eight bytes of the state note's descriptor.
pub const STATE_MAGIC: [u8; 8] = *b"CKPTIMG\0";
/// Owner name of our own notes.
pub const CKPT_NOTE_NAME: &[u8] = b"CKPT";
/// Page size the format is laid out for (x86-64).
pub const PAGE_SIZE: u64 = 4096;
pub use limits::MAX_REGIONS;

/// Note types under the "CKPT" owner.
pub const NT_CKPT_STATE: u32 = 0x434b_0001;
pub const NT_CKPT_REGIONS: u32 = 0x434b_0002;
pub const NT_CKPT_FDS: u32 = 0x434b_0003;
pub const NT_CKPT_THREAD: u32 = 0x434b_0004;
pub const NT_CKPT_TIMERS: u32 = 0x434b_0005;
pub const NT_CKPT_EPOLL: u32 = 0x434b_0006;
pub const NT_CKPT_SOCKETS: u32 = 0x434b_0007;
pub const NT_CKPT_TIMERFDS: u32 = 0x434b_0008;
pub const NT_CKPT_INOTIFY: u32 = 0x434b_0009;
pub const NT_CKPT_MAC: u32 = 0x434b_000a;
pub const NT_CKPT_TREE: u32 = 0x434b_000b;
pub const NT_CKPT_SHARED: u32 = 0x434b_000c;
pub const NT_CKPT_FILEMAPS: u32 = 0x434b_000d;
pub const NT_CKPT_CHAIN: u32 = 0x434b_000e;
pub const NT_CKPT_ORIGIN: u32 = 0x434b_000f;

/// Why an image cannot be trusted. Each message is one line naming the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// The file is shorter than its headers say.
    Truncated,
    /// No ELF magic: not an image at all.
    NotElf,
    /// ELF, but not a 64-bit little-endian x86-64 core file.
    NotCore,
    /// An ELF core file without a ckpt state note (for example a kernel core dump).
    Foreign,
    /// A ckpt image of a format version this reader does not know.
    UnsupportedVersion(u32),
    /// The headers or notes do not match their checksum.
    MetaChecksum,
    /// A region's data does not match its checksum.
    DataChecksum { index: usize },
    /// A deleted file's saved contents do not match their checksum.
    BlobChecksum { fd: i32 },
    /// The headers contradict themselves.
    Malformed(&'static str),
    /// More regions than the format allows.
    TooManyRegions,
    /// A key was given, but the image carries no authentication.
    NotAuthenticated,
    /// The image's MAC does not match the key: it was changed, or made with another key.
    AuthenticationFailed,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::Truncated => f.write_str("truncated image (file is shorter than its headers say)"),
            ImageError::NotElf => f.write_str("not a ckpt image (no ELF header)"),
            ImageError::NotCore => f.write_str("not a ckpt image (not an x86-64 ELF core file)"),
            ImageError::Foreign => f.write_str("not a ckpt image (an ELF core file without ckpt state)"),
            ImageError::UnsupportedVersion(v) => {
                write!(f, "unsupported image format version {v} (this myrestart reads version {FORMAT_VERSION})")
            }
            ImageError::MetaChecksum => f.write_str("corrupt image (header checksum mismatch)"),
            ImageError::DataChecksum { index } => write!(f, "corrupt image (region {index} data checksum mismatch)"),
            ImageError::BlobChecksum { fd } => write!(f, "corrupt image (saved contents of fd {fd} checksum mismatch)"),
            ImageError::Malformed(what) => write!(f, "corrupt image ({what})"),
            ImageError::TooManyRegions => f.write_str("corrupt image (too many regions)"),
            ImageError::NotAuthenticated => f.write_str("not authenticated (the image was made without a key: CKPT_KEY)"),
            ImageError::AuthenticationFailed => {
                f.write_str("authentication failed (the image was changed after it was written, or made with another key)")
            }
        }
    }
}

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

/// Rounds `v` up to a whole page.
pub const fn page_up(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

#[cfg(test)]
mod tests;
