//! libckpt.so made ready to be copied into another process at a given address: its loadable
//! segments laid out as the dynamic loader would lay them out, its relocations applied (its own
//! addresses moved to where it goes, its imports pointed at `ckpt`'s stub routines), and the
//! protections each page gets once it is in place.
//!
//! Only what libckpt.so uses is understood (a 64-bit little-endian x86-64 shared object with
//! RELA relocations of four kinds); anything else is refused with a line naming it, so that a
//! library this code does not know is never half-loaded.

use linux_raw_sys::elf_uapi as elf;
use std::mem::offset_of;

/// The x86-64 psABI's relocation kinds libckpt.so has (neither linux-raw-sys nor libc names
/// them): a symbol's address plus the addend; a symbol's address into the GOT; the same for
/// the PLT; the load address plus the addend.
const R_X86_64_64: u32 = 1;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const R_X86_64_RELATIVE: u32 = 8;
/// No relocation (a linker may leave one where it dropped what it relocated).
const R_X86_64_NONE: u32 = 0;
/// The kinds a shared object may have that are refused, by name: ckpt does not apply them (a
/// libckpt.so that has one was built otherwise than this ckpt knows).
const REFUSED: [(u32, &str); 12] = [
    (2, "R_X86_64_PC32"),
    (3, "R_X86_64_GOT32"),
    (4, "R_X86_64_PLT32"),
    (5, "R_X86_64_COPY"),
    (10, "R_X86_64_32"),
    (11, "R_X86_64_32S"),
    (16, "R_X86_64_DTPMOD64"),
    (17, "R_X86_64_DTPOFF64"),
    (18, "R_X86_64_TPOFF64"),
    (24, "R_X86_64_PC64"),
    (36, "R_X86_64_TLSDESC"),
    (37, "R_X86_64_IRELATIVE"),
];
/// Packed relative relocations (`ld -z pack-relative-relocs`), which linux-raw-sys does not
/// name: a table of them that this loader ignored would leave addresses unrelocated.
const DT_RELRSZ: u32 = 35;
const DT_RELR: u32 = 36;
/// `EM_X86_64`.
const EM_X86_64: u16 = 62;

pub const PAGE: u64 = 4096;

pub fn page_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// A loadable segment.
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    /// `PF_R`/`PF_W`/`PF_X`.
    flags: u32,
}

/// A dynamic symbol: its name, its value (an address in the library), whether it is defined
/// there or imported.
struct Symbol {
    name: String,
    value: u64,
    defined: bool,
}

/// A relocation: where, what kind, which symbol, the addend.
struct Rela {
    offset: u64,
    kind: u32,
    sym: usize,
    addend: i64,
}

/// libckpt.so, parsed.
pub struct Library {
    bytes: Vec<u8>,
    segments: Vec<Segment>,
    symbols: Vec<Symbol>,
    relas: Vec<Rela>,
    /// Bytes from the first segment's page to the end of the last one's memory, page-rounded.
    pub span: u64,
}

/// Reads little fixed-size integers out of the file's bytes; `None` past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        let at = usize::try_from(at).ok()?;
        self.0.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: u64) -> Option<u16> {
        self.bytes(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: u64) -> Option<u32> {
        self.bytes(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: u64) -> Option<u64> {
        self.bytes(at).map(u64::from_le_bytes)
    }
}

/// Offset of a field in one of linux-raw-sys's ELF structures, as a file offset's type.
macro_rules! off {
    ($t:ty, $f:ident) => {
        offset_of!($t, $f) as u64
    };
}

impl Library {
    pub fn parse(bytes: Vec<u8>) -> Result<Library, String> {
        let bad = |what: &str| format!("not a library ckpt can load: {what}");
        let r = Reader(&bytes);
        if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        if r.u16(off!(elf::elf64_hdr, e_machine)) != Some(EM_X86_64) {
            return Err(bad("not for x86-64"));
        }
        let phoff = r.u64(off!(elf::elf64_hdr, e_phoff)).ok_or_else(|| bad("no program headers"))?;
        let phentsize = r.u16(off!(elf::elf64_hdr, e_phentsize)).ok_or_else(|| bad("no program headers"))? as u64;
        let phnum = r.u16(off!(elf::elf64_hdr, e_phnum)).ok_or_else(|| bad("no program headers"))? as u64;
        let mut segments = Vec::new();
        let mut dynamic = None;
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            let field = |o: u64| r.u64(ph + o).ok_or_else(|| bad("a program header past the end"));
            let kind = r.u32(ph + off!(elf::elf64_phdr, p_type)).ok_or_else(|| bad("a program header past the end"))?;
            let seg = Segment {
                vaddr: field(off!(elf::elf64_phdr, p_vaddr))?,
                memsz: field(off!(elf::elf64_phdr, p_memsz))?,
                offset: field(off!(elf::elf64_phdr, p_offset))?,
                filesz: field(off!(elf::elf64_phdr, p_filesz))?,
                flags: r.u32(ph + off!(elf::elf64_phdr, p_flags)).ok_or_else(|| bad("a program header past the end"))?,
            };
            if seg.filesz > seg.memsz || seg.offset.checked_add(seg.filesz).is_none_or(|e| e > bytes.len() as u64) {
                return Err(bad("a segment past the end of the file"));
            }
            match kind {
                elf::PT_LOAD => segments.push(seg),
                elf::PT_DYNAMIC => dynamic = Some(seg),
                elf::PT_TLS => return Err(bad("it has thread-local storage")),
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(bad("no loadable segment"));
        }
        let span = page_up(segments.iter().map(|s| s.vaddr + s.memsz).max().unwrap_or(0));
        if span > 1 << 30 {
            return Err(bad("its segments span more than 1 GiB"));
        }
        let file_offset = |vaddr: u64| segments.iter().find(|s| vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz).map(|s| vaddr - s.vaddr + s.offset);

        // The dynamic section: where the relocations are.
        let dynamic = dynamic.ok_or_else(|| bad("no dynamic section"))?;
        let (mut rela, mut relasz, mut jmprel, mut pltrelsz) = (0, 0, 0, 0);
        let entsize = size_of::<elf::Elf64_Dyn>() as u64;
        for i in 0..dynamic.filesz / entsize {
            let at = dynamic.offset + i * entsize;
            let tag = r.u64(at).ok_or_else(|| bad("its dynamic section"))?;
            let val = r.u64(at + 8).ok_or_else(|| bad("its dynamic section"))?;
            match tag as u32 {
                _ if tag == elf::DT_NULL as u64 => break,
                elf::DT_RELA => rela = val,
                elf::DT_RELASZ => relasz = val,
                elf::DT_JMPREL => jmprel = val,
                elf::DT_PLTRELSZ => pltrelsz = val,
                elf::DT_REL => return Err(bad("REL relocations (only RELA is understood)")),
                DT_RELR | DT_RELRSZ => return Err(bad("packed relative relocations (DT_RELR: link it without `-z pack-relative-relocs`)")),
                elf::DT_PLTREL if val != elf::DT_RELA as u64 => return Err(bad("REL relocations for its PLT (only RELA is understood)")),
                _ => {}
            }
        }

        // The dynamic symbols, from the section headers (which give their number).
        let shoff = r.u64(off!(elf::elf64_hdr, e_shoff)).unwrap_or(0);
        let shentsize = r.u16(off!(elf::elf64_hdr, e_shentsize)).unwrap_or(0) as u64;
        let shnum = r.u16(off!(elf::elf64_hdr, e_shnum)).unwrap_or(0) as u64;
        let section = |i: u64, o: u64| r.u64(shoff + i * shentsize + o);
        let section32 = |i: u64, o: u64| r.u32(shoff + i * shentsize + o);
        let dynsym = (0..shnum).find(|&i| section32(i, off!(elf::elf64_shdr, sh_type)) == Some(elf::SHT_DYNSYM)).ok_or_else(|| bad("no dynamic symbol table"))?;
        let (symoff, symsize) = (section(dynsym, off!(elf::elf64_shdr, sh_offset)).unwrap_or(0), section(dynsym, off!(elf::elf64_shdr, sh_size)).unwrap_or(0));
        let strtab = section32(dynsym, off!(elf::elf64_shdr, sh_link)).unwrap_or(0) as u64;
        let (stroff, strsize) = (section(strtab, off!(elf::elf64_shdr, sh_offset)).unwrap_or(0), section(strtab, off!(elf::elf64_shdr, sh_size)).unwrap_or(0));
        let strings = bytes.get(stroff as usize..(stroff + strsize) as usize).ok_or_else(|| bad("its dynamic string table"))?;
        let symentsize = size_of::<elf::elf64_sym>() as u64;
        let mut symbols = Vec::new();
        for i in 0..symsize / symentsize {
            let at = symoff + i * symentsize;
            let name_at = r.u32(at + off!(elf::elf64_sym, st_name)).ok_or_else(|| bad("its dynamic symbols"))? as usize;
            let shndx = r.u16(at + off!(elf::elf64_sym, st_shndx)).ok_or_else(|| bad("its dynamic symbols"))?;
            let value = r.u64(at + off!(elf::elf64_sym, st_value)).ok_or_else(|| bad("its dynamic symbols"))?;
            let name = strings.get(name_at..).and_then(|s| s.split(|&c| c == 0).next()).ok_or_else(|| bad("a symbol's name"))?;
            symbols.push(Symbol { name: String::from_utf8_lossy(name).into_owned(), value, defined: shndx as u32 != elf::SHN_UNDEF });
        }

        let mut relas = Vec::new();
        let relentsize = size_of::<elf::elf64_rela>() as u64;
        for (start, size) in [(rela, relasz), (jmprel, pltrelsz)] {
            if size == 0 {
                continue;
            }
            let at = file_offset(start).ok_or_else(|| bad("relocations outside its segments"))?;
            for i in 0..size / relentsize {
                let e = at + i * relentsize;
                let info = r.u64(e + off!(elf::elf64_rela, r_info)).ok_or_else(|| bad("its relocations"))?;
                relas.push(Rela {
                    offset: r.u64(e + off!(elf::elf64_rela, r_offset)).ok_or_else(|| bad("its relocations"))?,
                    kind: info as u32,
                    sym: (info >> 32) as usize,
                    addend: r.u64(e + off!(elf::elf64_rela, r_addend)).ok_or_else(|| bad("its relocations"))? as i64,
                });
            }
        }
        Ok(Library { bytes, segments, symbols, relas, span })
    }

    /// The address in the library of the function `name` it defines.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.defined && s.name == name).map(|s| s.value)
    }

    /// The library's memory as it must be at address 0, with its stub right after it
    /// (`stub` says which routine each import gets): segments in place, the rest zero,
    /// relocations applied. Every relocated word is the load address plus a constant, so
    /// [`Prepared::at`] moves it anywhere by adding the address to those words: the work is
    /// done before the process is stopped.
    pub fn prepare(&self, stub: &super::stub::Stub) -> Result<Prepared, String> {
        let mut mem = vec![0u8; self.span as usize];
        for s in &self.segments {
            mem[s.vaddr as usize..(s.vaddr + s.filesz) as usize].copy_from_slice(&self.bytes[s.offset as usize..(s.offset + s.filesz) as usize]);
        }
        let mut slots = Vec::with_capacity(self.relas.len());
        for r in &self.relas {
            let symbol_address = || -> Result<u64, String> {
                let s = self.symbols.get(r.sym).ok_or_else(|| format!("a relocation names symbol {} of {}", r.sym, self.symbols.len()))?;
                Ok(if s.defined { s.value } else { self.span + stub.routine(&s.name) })
            };
            let value = match r.kind {
                R_X86_64_NONE => continue,
                R_X86_64_RELATIVE => r.addend as u64,
                R_X86_64_64 => symbol_address()?.wrapping_add_signed(r.addend),
                R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT => symbol_address()?,
                other => {
                    let name = REFUSED.iter().find(|k| k.0 == other).map_or("unknown to ckpt", |k| k.1);
                    return Err(format!("it has a relocation of kind {other} ({name}), which ckpt does not apply in a process it attaches to: use the libckpt.so built with this ckpt"));
                }
            };
            let at = r.offset as usize;
            let slot = mem.get_mut(at..at.wrapping_add(8)).ok_or_else(|| format!("a relocation at {:#x}, outside the library", r.offset))?;
            slot.copy_from_slice(&value.to_le_bytes());
            slots.push(at);
        }
        Ok(Prepared { mem, slots })
    }

    /// The protection (`PROT_*`) of each run of pages, as `(offset, length, prot)`: a page
    /// gets the union of the segments that touch it.
    pub fn protections(&self) -> Vec<(u64, u64, u32)> {
        let pages = (self.span / PAGE) as usize;
        let mut prot = vec![0u32; pages];
        for s in &self.segments {
            let p = (if s.flags & elf::PF_R != 0 { libc::PROT_READ } else { 0 } | if s.flags & elf::PF_W != 0 { libc::PROT_WRITE } else { 0 } | if s.flags & elf::PF_X != 0 { libc::PROT_EXEC } else { 0 }) as u32;
            for pr in &mut prot[(s.vaddr / PAGE) as usize..page_up(s.vaddr + s.memsz) as usize / PAGE as usize] {
                *pr |= p;
            }
        }
        let mut runs: Vec<(u64, u64, u32)> = Vec::new();
        for (i, &p) in prot.iter().enumerate() {
            match runs.last_mut() {
                Some(last) if last.2 == p && last.0 + last.1 == i as u64 * PAGE => last.1 += PAGE,
                _ => runs.push((i as u64 * PAGE, PAGE, p)),
            }
        }
        runs
    }
}

/// The library's memory at address 0 and the words that hold addresses.
#[derive(Clone)]
pub struct Prepared {
    pub mem: Vec<u8>,
    slots: Vec<usize>,
}

impl Prepared {
    /// The runs of pages, as `(offset, length)`, that must be written into the fresh (all
    /// zeros) mapping: those with a byte that is not zero, and those with an address to
    /// relocate, which may be zero here (a relative one with no addend) but not once moved.
    pub fn written_pages(&self) -> Vec<(u64, u64)> {
        let mut wanted: Vec<bool> = self.mem.chunks(PAGE as usize).map(|page| page.iter().any(|&b| b != 0)).collect();
        for &at in &self.slots {
            for page in [at / PAGE as usize, (at + 7) / PAGE as usize] {
                wanted[page] = true;
            }
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, _) in wanted.iter().enumerate().filter(|w| *w.1) {
            let at = i as u64 * PAGE;
            let len = (self.mem.len() as u64 - at).min(PAGE);
            match runs.last_mut() {
                Some(last) if last.0 + last.1 == at => last.1 += len,
                _ => runs.push((at, len)),
            }
        }
        runs
    }

    /// Moved to `base`.
    pub fn at(mut self, base: u64) -> Vec<u8> {
        for &at in &self.slots {
            let w = u64::from_le_bytes(self.mem[at..at + 8].try_into().unwrap());
            self.mem[at..at + 8].copy_from_slice(&w.wrapping_add(base).to_le_bytes());
        }
        self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library of one writable page with one symbol, and `relas`.
    fn library(relas: Vec<Rela>) -> Library {
        Library {
            bytes: vec![0u8; 64],
            segments: vec![Segment { vaddr: 0, memsz: PAGE, offset: 0, filesz: 64, flags: elf::PF_R | elf::PF_W }],
            symbols: vec![Symbol { name: String::new(), value: 0, defined: false }, Symbol { name: "getenv".into(), value: 0, defined: false }],
            relas,
            span: PAGE,
        }
    }

    #[test]
    fn relocations_are_applied_skipped_or_refused_by_name() {
        let stub = super::super::stub::Stub::new();
        let lib = library(vec![
            Rela { offset: 0, kind: R_X86_64_RELATIVE, sym: 0, addend: 0x40 },
            Rela { offset: 8, kind: R_X86_64_NONE, sym: 0, addend: 0 },
            Rela { offset: 16, kind: R_X86_64_GLOB_DAT, sym: 1, addend: 0 },
        ]);
        let mem = lib.prepare(&stub).unwrap().at(0x10_0000);
        let word = |at: usize| u64::from_le_bytes(mem[at..at + 8].try_into().unwrap());
        assert_eq!(word(0), 0x10_0040);
        assert_eq!(word(8), 0, "R_X86_64_NONE changes nothing");
        assert_eq!(word(16), 0x10_0000 + PAGE + stub.trap, "an import other than memcpy's kin goes to the trap");
        // The first page has a byte that is not zero; the second only an address that is zero
        // until moved; the third nothing.
        let mut lib = library(vec![Rela { offset: PAGE + 8, kind: R_X86_64_RELATIVE, sym: 0, addend: 0 }]);
        lib.bytes[0] = 1;
        lib.segments[0].memsz = 3 * PAGE;
        lib.span = 3 * PAGE;
        assert_eq!(lib.prepare(&stub).unwrap().written_pages(), vec![(0, 2 * PAGE)]);
        for (kind, name) in [(37, "R_X86_64_IRELATIVE"), (18, "R_X86_64_TPOFF64"), (99, "unknown to ckpt")] {
            let why = library(vec![Rela { offset: 0, kind, sym: 0, addend: 0 }]).prepare(&stub).err().unwrap();
            assert!(why.contains(&format!("kind {kind} ({name})")), "{why}");
        }
    }
}
