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
//! Compatibility rule (since version 8; docs/image-format.md says it whole): the state note
//! carries [`FORMAT_VERSION`]. A reader accepts every version from [`OLDEST_FORMAT`] to its own
//! (an upgrade never orphans a job's images) and names any other by number. A change to a note's
//! layout or meaning bumps the version, and the reader keeps reading the older one. Adding a
//! note does not: a note type with [`NT_CKPT_IGNORABLE`] set is one an older reader may ignore;
//! one without it, unknown to the reader, refuses the image as made by a newer ckpt.
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
pub mod fileid;
pub mod filemaps;
pub mod frame;
pub mod image;
pub mod inotify;
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

/// The format this crate writes. Bumped on any change to the layout or meaning of a ckpt note;
/// a new note does not bump it (see [`NT_CKPT_IGNORABLE`]).
pub const FORMAT_VERSION: u32 = 9;
/// The oldest format this crate still reads: every image made since the compatibility rule
/// began restores with any later ckpt. Never raised.
pub const OLDEST_FORMAT: u32 = 8;
/// The version that began recording files' identities where only a path was kept: the working
/// directory's and the program file's at the end of `NT_CKPT_STATE`, and an owner in each
/// `NT_CKPT_FILEMAPS` record (64 bytes; 40 before), which has a record for every shared file
/// mapping too. A version 8 image restores with those identities unknown.
pub const FILE_IDS_SINCE: u32 = 9;
/// Set in a "CKPT" note type that a reader may ignore if it does not know it (a note added in a
/// later version whose absence only loses something the restore can do without). A note type
/// without it that the reader does not know refuses the image ([`ImageError::NewerNote`]).
pub const NT_CKPT_IGNORABLE: u32 = 0x8000;
/// The first eight bytes of the state note's descriptor.
pub const STATE_MAGIC: [u8; 8] = *b"CKPTIMG\0";
/// Owner name of our own notes.
pub const CKPT_NOTE_NAME: &[u8] = b"CKPT";
/// Page size the format is laid out for (x86-64).
pub const PAGE_SIZE: u64 = 4096;
/// Largest number of regions an image may hold (ELF `e_phnum` is 16 bits, minus the note).
pub const MAX_REGIONS: usize = 65_000;

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

/// Whether this reader knows "CKPT" note type `t` (or may ignore it): an image holding any other
/// was made by a newer ckpt, and restoring it without that note would not be the process.
pub fn note_type_understood(t: u32) -> bool {
    (NT_CKPT_STATE..=NT_CKPT_ORIGIN).contains(&t) || t & NT_CKPT_IGNORABLE != 0
}

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
    /// A ckpt image of a format version this reader does not read: older than
    /// [`OLDEST_FORMAT`], or newer than [`FORMAT_VERSION`].
    UnsupportedVersion(u32),
    /// A "CKPT" note of a type this reader does not know and may not ignore: made by a newer
    /// ckpt.
    NewerNote(u32),
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
            ImageError::UnsupportedVersion(v) if *v > FORMAT_VERSION => write!(
                f,
                "made by a newer ckpt: image format version {v} (this one reads versions {OLDEST_FORMAT} to {FORMAT_VERSION}); restart it with the ckpt that made it"
            ),
            ImageError::UnsupportedVersion(v) => write!(
                f,
                "unsupported image format version {v}, from before the format's compatibility rule (this ckpt reads versions {OLDEST_FORMAT} to {FORMAT_VERSION}); restart it with the ckpt that made it"
            ),
            ImageError::NewerNote(t) => write!(
                f,
                "made by a newer ckpt: it holds state this one does not know (note type {t:#x}); restart it with the ckpt that made it"
            ),
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
