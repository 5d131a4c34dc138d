//! The format's constants: its version, the state note's magic, the notes' owner name and
//! types, the page size it is laid out for and the most regions an image holds. The crate root
//! re-exports them (`ckpt_image::PAGE_SIZE`, …).

/// Bumped on any change to the layout of a ckpt note.
pub const FORMAT_VERSION: u32 = 8;
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

/// Rounds `v` up to a whole page.
pub const fn page_up(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}
