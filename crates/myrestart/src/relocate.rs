//! Self-relocation. myrestart is a static PIE: the kernel maps it, but nobody applies its
//! `R_X86_64_RELATIVE` relocations (the absolute pointers in vtables and the like) except us.
//!
//! [`apply`] runs twice: at startup, for wherever the kernel put us, and after [`crate::hole`]
//! copies the whole program into a block of memory that the target does not use.
//!
//! Runs before relocation is complete, so it must not touch any static that holds a pointer,
//! call through a vtable, or panic: it uses only its arguments and plain loads and stores.

const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_RELR: u64 = 36;
const R_X86_64_RELATIVE: u64 = 8;

/// Where this program is and how it was linked.
#[derive(Clone, Copy)]
pub struct SelfImage {
    /// Runtime address of the ELF header (the first byte of the first PT_LOAD).
    pub base: usize,
    /// Link-time address of that same byte.
    pub link_base: usize,
    /// Runtime address of the relocation table, and its size in bytes.
    pub rela: usize,
    pub rela_len: usize,
    /// Bytes from `base` to the end of the last PT_LOAD (bss included), page-rounded.
    pub span: usize,
}

/// Reads our own ELF and dynamic headers. Returns `None` if they hold something we cannot
/// relocate (only RELATIVE relocations in RELA form are expected in a static PIE).
///
/// # Safety
/// `ehdr` and `dynamic` must be the runtime addresses of our ELF header and `_DYNAMIC`.
pub unsafe fn inspect(ehdr: usize, dynamic: usize) -> Option<SelfImage> {
    // SAFETY: the caller passes our own mapped headers; all reads stay inside them.
    unsafe {
        let phoff = *((ehdr + 32) as *const u64) as usize;
        let phnum = *((ehdr + 56) as *const u16) as usize;
        let mut link_base = usize::MAX;
        let mut link_end = 0usize;
        for i in 0..phnum {
            let ph = ehdr + phoff + i * 56;
            if *(ph as *const u32) == 1 {
                let vaddr = *((ph + 16) as *const u64) as usize;
                let memsz = *((ph + 40) as *const u64) as usize;
                let offset = *((ph + 8) as *const u64) as usize;
                if offset == 0 {
                    link_base = vaddr;
                }
                if vaddr + memsz > link_end {
                    link_end = vaddr + memsz;
                }
            }
        }
        if link_base == usize::MAX {
            return None;
        }
        let bias = ehdr.wrapping_sub(link_base);
        let (mut rela, mut rela_len, mut ent) = (0usize, 0usize, 24usize);
        let mut d = dynamic;
        loop {
            let tag = *(d as *const u64);
            let val = *((d + 8) as *const u64) as usize;
            match tag {
                DT_NULL => break,
                DT_RELA => rela = val.wrapping_add(bias),
                DT_RELASZ => rela_len = val,
                DT_RELAENT => ent = val,
                DT_RELR => return None,
                _ => {}
            }
            d += 16;
        }
        if ent != 24 {
            return None;
        }
        let span = (link_end - link_base + 4095) & !4095;
        Some(SelfImage { base: ehdr, link_base, rela, rela_len, span })
    }
}

/// Applies our relocations for a copy of the program whose ELF header is at `new_base`.
/// Returns false if a relocation is not of the one kind a static PIE should have.
///
/// # Safety
/// `new_base .. new_base + img.span` must be a writable copy of the program (or the program
/// itself), and `img.rela` must still be readable.
pub unsafe fn apply(img: &SelfImage, new_base: usize) -> bool {
    let bias = new_base.wrapping_sub(img.link_base);
    let mut r = img.rela;
    let end = img.rela + img.rela_len;
    while r < end {
        // SAFETY: r walks the relocation table of the caller-provided image.
        let (off, info, addend) = unsafe { (*(r as *const u64), *((r + 8) as *const u64), *((r + 16) as *const u64)) };
        if info & 0xffff_ffff != R_X86_64_RELATIVE {
            return false;
        }
        let at = (off as usize).wrapping_add(bias);
        // SAFETY: `at` is inside the writable copy (the linker put every target there).
        unsafe { *(at as *mut u64) = (addend as usize).wrapping_add(bias) as u64 };
        r += 24;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relocation table (RELA, 24-byte entries) and a fake program of 4 words.
    fn table(entries: &[(u64, u64, u64)]) -> std::vec::Vec<u64> {
        entries.iter().flat_map(|&(off, info, addend)| [off, info, addend]).collect()
    }

    #[test]
    fn applies_relative_relocations_for_a_new_base() {
        let rela = table(&[(8, R_X86_64_RELATIVE, 0x100), (24, R_X86_64_RELATIVE, 0x2000)]);
        let mut copy = [0u64; 4];
        let base = copy.as_mut_ptr() as usize;
        let img = SelfImage { base: 0x9999, link_base: 0, rela: rela.as_ptr() as usize, rela_len: rela.len() * 8, span: 32 };
        // SAFETY: `copy` is a writable 32-byte "program", and every offset in the table is in it.
        assert!(unsafe { apply(&img, base) });
        assert_eq!(copy, [0, base as u64 + 0x100, 0, base as u64 + 0x2000]);
    }

    #[test]
    fn refuses_other_relocation_kinds() {
        let rela = table(&[(0, 1 /* R_X86_64_64 */, 0)]);
        let mut copy = [7u64; 1];
        let img = SelfImage { base: 0, link_base: 0, rela: rela.as_ptr() as usize, rela_len: 24, span: 8 };
        // SAFETY: as above.
        assert!(!unsafe { apply(&img, copy.as_mut_ptr() as usize) });
        assert_eq!(copy, [7], "nothing written for a relocation it does not know");
    }
}
