//! The format's constants: its version and the oldest one read, the state note's magic, the notes' owner name and
//! types, the page size it is laid out for and the most regions an image holds. The crate root
//! re-exports them (`ckpt_image::PAGE_SIZE`, …).

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
/// without it that the reader does not know refuses the image
/// ([`crate::ImageError::NewerNote`]).
pub const NT_CKPT_IGNORABLE: u32 = 0x8000;
/// The first eight bytes of the state note's descriptor.
pub const STATE_MAGIC: [u8; 8] = *b"CKPTIMG\0";
/// Owner name of our own notes.
pub const CKPT_NOTE_NAME: &[u8] = b"CKPT";
/// Page size the format is laid out for (x86-64).
pub const PAGE_SIZE: u64 = 4096;
/// Largest number of regions an image may hold (see `limits`).
pub use crate::limits::MAX_REGIONS;

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
/// The file locks held at the checkpoint. Not ignorable: restored without them, a program that
/// guards its files with a lock would share them with another writer.
pub const NT_CKPT_LOCKS: u32 = 0x434b_0011;
/// Descriptors on pseudo-terminals (`crate::pty`); with [`NT_CKPT_IGNORABLE`] when it holds no
/// master end.
pub const NT_CKPT_PTYS: u32 = 0x434b_0013;
/// The System V IPC objects the process used (see `ipc`); an older reader restores without them.
pub const NT_CKPT_IPC: u32 = 0x434b_0014 | NT_CKPT_IGNORABLE;
/// The files the program could write in place, as they were (see `written`). Ignorable: a
/// reader without it restores without checking them, as before it.
pub const NT_CKPT_WRITTEN: u32 = 0x434b_0015 | NT_CKPT_IGNORABLE;
/// The POSIX shared memory objects whose bytes the image stores, put back at their paths (see
/// `shmfiles`). Not ignorable: without it, programs that open them by name would not share them.
pub const NT_CKPT_SHMFILES: u32 = 0x434b_0016;
/// The machine the image was taken on: host name and CPU features (see `node`). Ignorable: a
/// reader without it restores without comparing them, as before it.
pub const NT_CKPT_NODE: u32 = 0x434b_0017 | NT_CKPT_IGNORABLE;

/// Whether this reader knows "CKPT" note type `t` (or may ignore it): an image holding any other
/// was made by a newer ckpt, and restoring it without that note would not be the process.
pub fn note_type_understood(t: u32) -> bool {
    (NT_CKPT_STATE..=NT_CKPT_ORIGIN).contains(&t) || t == NT_CKPT_LOCKS || t == NT_CKPT_PTYS || t == NT_CKPT_SHMFILES || t & NT_CKPT_IGNORABLE != 0
}

/// Rounds `v` up to a whole page.
pub const fn page_up(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}
