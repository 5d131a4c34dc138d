//! `NT_CKPT_REGIONS`: what each PT_LOAD was in the process (`/proc/self/maps` facts).

use crate::bytes::{Reader, Writer};
use crate::ImageError;

pub const RECORD_SIZE: usize = 88;
/// Bytes before the first record: count and record size.
pub const HEADER_SIZE: usize = 8;

/// The region was `MAP_SHARED` (an `s` in `/proc/self/maps`).
pub const RF_SHARED: u32 = 1 << 0;
/// The region's bytes are stored in the image.
pub const RF_HAS_DATA: u32 = 1 << 1;
/// The region was mapped from a file (device and inode are set, name is its path).
pub const RF_FILE: u32 = 1 << 2;
/// Restart maps the region from the named file at `file_offset` (a `MAP_SHARED` file
/// mapping): its bytes live in the file, not in the image.
pub const RF_FROM_FILE: u32 = 1 << 3;
/// The stored bytes are a compressed stream (see [`crate::compress`]), not a page-for-page copy:
/// `stored_len` bytes at `data_offset`; the PT_LOAD then has no file data.
pub const RF_COMPRESSED: u32 = 1 << 4;
/// Some pages of the region are the root's (a tree part only): `NT_CKPT_SHARED` says which and
/// where; the region's own copy has holes there.
pub const RF_SHARES_PAGES: u32 = 1 << 5;
/// Restart maps the named file privately at `file_offset` (a private file mapping the program
/// never wrote: code, libraries, read-only data); `NT_CKPT_FILEMAPS` says what the file was.
pub const RF_MAP_PRIVATE_FILE: u32 = 1 << 6;

/// Where `shm_open` makes POSIX shared memory objects (glibc and musl alike).
pub const SHM_DIR: &[u8] = b"/dev/shm/";

/// Whether a `MAP_SHARED` mapping of the regular file at `path` is stored in the image as shared
/// memory (its bytes with the image, one object for all its mappings, like anonymous shared
/// memory, a memfd or a deleted file) rather than mapped from the file again: a POSIX shared
/// memory object, a file in [`SHM_DIR`] on a memory filesystem (`on_tmpfs`: statfs says tmpfs).
/// Such a file is memory the program and its peers share, not a document: an image that named
/// it would come back with what it holds at the restart, or without it (PostgreSQL's dynamic
/// segments, Open MPI's shared-memory queues). Files of a tmpfs elsewhere (`/tmp`) stay files:
/// a program's documents there may be read by name by others.
pub fn stores_shared_file(path: &[u8], on_tmpfs: bool) -> bool {
    on_tmpfs && path.len() > SHM_DIR.len() && path.starts_with(SHM_DIR) && !path[SHM_DIR.len()..].contains(&b'/')
}

/// The name myrestart gives the pages its own resume code runs from, which it leaves in a
/// process it restores from an attached image (see `resume_page.rs` in myrestart): anonymous
/// memory named so (`PR_SET_VMA_ANON_NAME`), or where the kernel has no names for anonymous
/// memory, a memfd of that name.
pub const RESUME_PAGE_NAME: &core::ffi::CStr = c"ckpt-resume";
/// How those pages show in `/proc/PID/maps`, named either way.
pub const RESUME_PAGE_MAPS_NAMES: [&[u8]; 2] = [b"[anon:ckpt-resume]", b"/memfd:ckpt-resume (deleted)"];

/// Whether a mapping named `name` in `/proc/PID/maps` is myrestart's resume page. Such pages are
/// never part of an image: they are an earlier restart's, and the next restart makes its own.
pub fn is_resume_page(name: &[u8]) -> bool {
    RESUME_PAGE_MAPS_NAMES.contains(&name)
}

/// What a region is, as far as restart cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum RegionKind {
    Normal = 0,
    Stack = 1,
    Heap = 2,
    Vdso = 3,
    Vvar = 4,
    VvarVclock = 5,
    Vsyscall = 6,
}

impl RegionKind {
    /// Classifies a `/proc/self/maps` path column.
    pub fn from_maps_name(name: &[u8]) -> RegionKind {
        match name {
            b"[stack]" => RegionKind::Stack,
            b"[heap]" => RegionKind::Heap,
            b"[vdso]" => RegionKind::Vdso,
            b"[vvar]" => RegionKind::Vvar,
            b"[vvar_vclock]" => RegionKind::VvarVclock,
            b"[vsyscall]" => RegionKind::Vsyscall,
            _ => RegionKind::Normal,
        }
    }

    fn from_u32(v: u32) -> Result<RegionKind, ImageError> {
        Ok(match v {
            0 => RegionKind::Normal,
            1 => RegionKind::Stack,
            2 => RegionKind::Heap,
            3 => RegionKind::Vdso,
            4 => RegionKind::Vvar,
            5 => RegionKind::VvarVclock,
            6 => RegionKind::Vsyscall,
            _ => return Err(ImageError::Malformed("unknown region kind")),
        })
    }

    /// Regions owned by the kernel: moved (vdso, vvar) or left alone (vsyscall), never copied.
    pub fn is_kernel_special(self) -> bool {
        matches!(self, RegionKind::Vdso | RegionKind::Vvar | RegionKind::VvarVclock | RegionKind::Vsyscall)
    }
}

/// Starts an `NT_CKPT_REGIONS` descriptor of `count` records; the caller writes the records,
/// then the names, back to back.
pub fn write_table_header(w: &mut Writer, count: usize) {
    w.u32(count as u32);
    w.u32(RECORD_SIZE as u32);
}

/// Bytes of an `NT_CKPT_REGIONS` descriptor with `count` records and names of `names_len` bytes.
pub const fn table_len(count: usize, names_len: usize) -> usize {
    HEADER_SIZE + RECORD_SIZE * count + names_len
}

/// One region record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionRecord {
    pub start: u64,
    pub end: u64,
    /// `PROT_READ` = 1, `PROT_WRITE` = 2, `PROT_EXEC` = 4.
    pub prot: u32,
    pub kind: RegionKind,
    pub flags: u32,
    /// File offset of the mapping (`/proc/self/maps` column 3).
    pub file_offset: u64,
    /// `major << 32 | minor` of the backing file's device.
    pub dev: u64,
    pub inode: u64,
    /// xxh3-64 of the stored data (0 when there is none).
    pub data_hash: u64,
    /// Offset and length of the name in the note's string table.
    pub name_off: u32,
    pub name_len: u32,
    /// Where the stored bytes are in the file, and how many there are.
    pub data_offset: u64,
    pub stored_len: u64,
}

impl RegionRecord {
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
    pub fn has_data(&self) -> bool {
        self.flags & RF_HAS_DATA != 0
    }
    pub fn is_shared(&self) -> bool {
        self.flags & RF_SHARED != 0
    }
    /// Mapped from a file in the process (whatever restart maps it from).
    pub fn is_file(&self) -> bool {
        self.flags & RF_FILE != 0
    }
    pub fn from_file(&self) -> bool {
        self.flags & RF_FROM_FILE != 0
    }
    pub fn compressed(&self) -> bool {
        self.flags & RF_COMPRESSED != 0
    }
    pub fn shares_pages(&self) -> bool {
        self.flags & RF_SHARES_PAGES != 0
    }
    pub fn maps_private_file(&self) -> bool {
        self.flags & RF_MAP_PRIVATE_FILE != 0
    }

    pub fn write(&self, w: &mut Writer) {
        w.u64(self.start);
        w.u64(self.end);
        w.u32(self.prot);
        w.u32(self.kind as u32);
        w.u32(self.flags);
        w.u32(0);
        w.u64(self.file_offset);
        w.u64(self.dev);
        w.u64(self.inode);
        w.u64(self.data_hash);
        w.u32(self.name_off);
        w.u32(self.name_len);
        w.u64(self.data_offset);
        w.u64(self.stored_len);
    }

    pub fn read(r: &mut Reader) -> Result<RegionRecord, ImageError> {
        let start = r.u64()?;
        let end = r.u64()?;
        let prot = r.u32()?;
        let kind = RegionKind::from_u32(r.u32()?)?;
        let flags = r.u32()?;
        r.skip(4)?;
        if prot & !7 != 0 {
            return Err(ImageError::Malformed("a region's protection has unknown bits"));
        }
        Ok(RegionRecord {
            start,
            end,
            prot,
            kind,
            flags,
            file_offset: r.u64()?,
            dev: r.u64()?,
            inode: r.u64()?,
            data_hash: r.u64()?,
            name_off: r.u32()?,
            name_len: r.u32()?,
            data_offset: r.u64()?,
            stored_len: r.u64()?,
        })
    }
}

/// The name (`PR_SET_VMA_ANON_NAME`) of the region an attached checkpoint puts every thread's
/// signal frame in (a process checkpointed without libckpt: see libckpt's `attached.rs`). It is
/// ordinary private anonymous memory in the image, and stays in the restored process, whose
/// threads resume through the frames in it.
pub const FRAMES_NAME: &core::ffi::CStr = c"ckpt-frames";
/// How that region shows in `/proc/PID/maps`. One found by a later checkpoint (the frames of
/// an earlier restart) is left out of its image.
pub const FRAMES_MAPS_NAME: &[u8] = b"[anon:ckpt-frames]";
/// The frames region's last page begins with this word, then the region's own address and its
/// length (u64s), by which a later checkpoint knows an earlier restart's frames region where
/// the kernel names no anonymous memory (the frames are in the pages before it).
pub const FRAMES_MAGIC: u64 = u64::from_le_bytes(*b"ckptfrms");
