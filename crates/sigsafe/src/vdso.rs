//! The kernel's vdso in this process: where it is (`AT_SYSINFO_EHDR`) and what it is (a hash of
//! its bytes), so that a checkpoint can record it and a restart on another kernel can tell
//! whether the program's saved addresses into it still lead to the same code.

/// `AT_SYSINFO_EHDR`: the vdso's ELF header, in the auxiliary vector.
const AT_SYSINFO_EHDR: u64 = 33;
/// More than any vdso's size: a header that claims more is not believed.
const MOST: u64 = 1 << 20;

/// The address of this process's vdso, from `/proc/self/auxv`; `None` where it has none.
pub fn own() -> Option<usize> {
    let mut buf = [0u8; 1024];
    let n = crate::file::read_whole(c"/proc/self/auxv", &mut buf).ok()?;
    buf[..n].chunks_exact(16).find_map(|e| {
        let (t, v) = (u64::from_ne_bytes(e[..8].try_into().ok()?), u64::from_ne_bytes(e[8..].try_into().ok()?));
        (t == AT_SYSINFO_EHDR && v != 0).then_some(v as usize)
    })
}

/// The vdso at `base`: its length (its loadable segments, whole pages; it is linked at 0) and
/// the xxh3-64 hash of those bytes. `None` if its ELF header is not one.
pub fn identity(base: usize) -> Option<(u64, u32)> {
    // SAFETY: the kernel maps the vdso readable at `base` (from the auxiliary vector or
    // /proc/self/maps), at least a page, which holds its ELF and program headers.
    let head = unsafe { core::slice::from_raw_parts(base as *const u8, crate::PAGE) };
    if &head[..4] != b"\x7fELF" || head[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let u64_at = |o: usize| head.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let (phoff, phentsize, phnum) = (u64_at(32)? as usize, u16_at(54), u16_at(56));
    let mut end = 0u64;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let ph = head.get(at..at.checked_add(56)?)?;
        if ph[..4] == 1u32.to_le_bytes() {
            let (vaddr, memsz) = (u64::from_le_bytes(ph[16..24].try_into().ok()?), u64::from_le_bytes(ph[40..48].try_into().ok()?));
            end = end.max(vaddr.checked_add(memsz)?);
        }
    }
    let len = end.next_multiple_of(crate::PAGE as u64);
    if len == 0 || len > MOST {
        return None;
    }
    // SAFETY: the vdso's loadable segments, as its own headers give them, are mapped readable
    // from `base` (the kernel maps the whole vdso image).
    let bytes = unsafe { core::slice::from_raw_parts(base as *const u8, len as usize) };
    Some((ckpt_image::hash(bytes), len as u32))
}
