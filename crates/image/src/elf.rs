//! ELF64 header and program header, as this format uses them (and any x86-64 ELF file's
//! header, for libckpt to look for a Go build ID note in a program).

use crate::bytes::{Reader, Writer};
use crate::ImageError;

pub const EHDR_SIZE: usize = 64;
pub const PHDR_SIZE: usize = 56;
pub const ET_CORE: u16 = 4;
pub const EM_X86_64: u16 = 62;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// The fields of `Elf64_Ehdr` that a core file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ehdr {
    pub phoff: u64,
    pub phnum: u16,
}

impl Ehdr {
    pub fn write(&self, w: &mut Writer) {
        w.bytes(&[0x7f, b'E', b'L', b'F', 2 /* 64-bit */, 1 /* LE */, 1 /* version */, 0 /* SysV */]);
        w.zeros(8);
        w.u16(ET_CORE);
        w.u16(EM_X86_64);
        w.u32(1); // e_version
        w.u64(0); // e_entry
        w.u64(self.phoff);
        w.u64(0); // e_shoff
        w.u32(0); // e_flags
        w.u16(EHDR_SIZE as u16);
        w.u16(PHDR_SIZE as u16);
        w.u16(self.phnum);
        w.u16(0); // e_shentsize
        w.u16(0); // e_shnum
        w.u16(0); // e_shstrndx
    }

    pub fn read(buf: &[u8]) -> Result<Ehdr, ImageError> {
        // Another kind of ELF file is said to be so even when its header is cut short.
        if buf.starts_with(b"\x7fELF") && buf.get(16..18).is_some_and(|t| t != ET_CORE.to_le_bytes()) {
            return Err(ImageError::NotCore);
        }
        match Ehdr::read_any(buf)? {
            (ET_CORE, h) => Ok(h),
            _ => Err(ImageError::NotCore),
        }
    }

    /// The header of any x86-64 ELF file (a program, a library, a core file), with its
    /// `e_type`: where its program headers are.
    pub fn read_any(buf: &[u8]) -> Result<(u16, Ehdr), ImageError> {
        if buf.len() < 4 || buf[..4] != [0x7f, b'E', b'L', b'F'] {
            return Err(ImageError::NotElf);
        }
        let mut r = Reader::new(buf);
        let ident: [u8; 16] = r.array()?;
        if ident[4] != 2 || ident[5] != 1 {
            return Err(ImageError::NotCore);
        }
        let e_type = r.u16()?;
        let machine = r.u16()?;
        if machine != EM_X86_64 {
            return Err(ImageError::NotCore);
        }
        r.skip(4 + 8)?; // version, entry
        let phoff = r.u64()?;
        r.skip(8 + 4)?; // shoff, flags
        let ehsize = r.u16()?;
        let phentsize = r.u16()?;
        let phnum = r.u16()?;
        if ehsize as usize != EHDR_SIZE || phentsize as usize != PHDR_SIZE {
            return Err(ImageError::Malformed("unexpected ELF header sizes"));
        }
        Ok((e_type, Ehdr { phoff, phnum }))
    }
}

/// `Elf64_Phdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Phdr {
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.p_type);
        w.u32(self.flags);
        w.u64(self.offset);
        w.u64(self.vaddr);
        w.u64(0); // p_paddr
        w.u64(self.filesz);
        w.u64(self.memsz);
        w.u64(self.align);
    }

    pub fn read(r: &mut Reader) -> Result<Phdr, ImageError> {
        let p_type = r.u32()?;
        let flags = r.u32()?;
        let offset = r.u64()?;
        let vaddr = r.u64()?;
        let _paddr = r.u64()?;
        let filesz = r.u64()?;
        let memsz = r.u64()?;
        let align = r.u64()?;
        Ok(Phdr { p_type, flags, offset, vaddr, filesz, memsz, align })
    }
}

/// ELF segment flags for mmap protection bits (`PROT_READ` = 1, `PROT_WRITE` = 2, `PROT_EXEC` = 4).
pub fn pflags_from_prot(prot: u32) -> u32 {
    let mut f = 0;
    if prot & 1 != 0 {
        f |= PF_R;
    }
    if prot & 2 != 0 {
        f |= PF_W;
    }
    if prot & 4 != 0 {
        f |= PF_X;
    }
    f
}
