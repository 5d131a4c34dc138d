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
//!                    "CKPT" NT_CKPT_LOCKS    file locks held (flock, POSIX, OFD), if there are any
//!                    "CKPT" NT_CKPT_PTYS     descriptors on pseudo-terminals: pair, termios, queued bytes
//!                    "CKPT" NT_CKPT_IPC      System V segments, semaphore sets and message queues by ID
//!                    "CKPT" NT_CKPT_WRITTEN  the files it could write in place, as they were then
//!                    "CKPT" NT_CKPT_SHMFILES POSIX shared memory objects stored: path, mode, owner, size
//!                    "CKPT" NT_CKPT_NODE     the machine it was taken on: host name, CPU features
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
pub mod ipc;
pub mod limits;
pub mod locks;
pub mod mac;
pub mod node;
pub mod note;
pub mod origin;
pub mod pty;
mod parse;
pub mod region;
pub mod report;
pub mod shared;
pub mod shmfiles;
pub mod sockets;
pub mod standalone;
pub mod state;
pub mod thread;
pub mod timerfd;
pub mod timers;
pub mod tree;
pub mod verify;
pub mod written;

mod error;
mod format;
mod hash;

pub use error::ImageError;
pub use format::{
    note_type_understood, page_up, CKPT_NOTE_NAME, FILE_IDS_SINCE, FORMAT_VERSION, MAX_REGIONS, NT_CKPT_IGNORABLE, OLDEST_FORMAT, NT_CKPT_CHAIN, NT_CKPT_EPOLL, NT_CKPT_FDS, NT_CKPT_FILEMAPS, NT_CKPT_INOTIFY, NT_CKPT_IPC, NT_CKPT_LOCKS, NT_CKPT_MAC, NT_CKPT_NODE, NT_CKPT_ORIGIN, NT_CKPT_PTYS, NT_CKPT_REGIONS, NT_CKPT_SHMFILES, NT_CKPT_WRITTEN,
    NT_CKPT_SHARED, NT_CKPT_SOCKETS, NT_CKPT_STATE, NT_CKPT_THREAD, NT_CKPT_TIMERFDS, NT_CKPT_TIMERS, NT_CKPT_TREE, PAGE_SIZE, STATE_MAGIC,
};
pub use hash::{CHUNK_PAGES, Hasher, RegionHasher, chunk_add, hash, is_zero_page, region_hash};
pub use image::{seal, Image, RegionRef};
pub use region::{RegionKind, RegionRecord};
pub use state::ProcessState;
pub use thread::ThreadState;

#[cfg(test)]
mod tests;
