//! Where a thread stopped inside an rseq critical section goes on: the kernel's rule
//! (kernel/rseq.c), for the code that stops threads with ptrace and lets them go or records
//! them (`ckpt`'s attach, libckpt's `ckpt-seize`). A thread stopped there was preempted there,
//! which a section must abort on: the kernel sends it to the section's abort handler on its
//! next return to user space. It forgets the section instead when that return is to code
//! outside it (code a tracer made the thread run, or the restorer's), so whoever does that, or
//! records the thread to be resumed later, must move the thread to the abort handler itself.
//!
//! The layout is the kernel's ABI (include/uapi/linux/rseq.h), which linux-raw-sys does not
//! describe: `struct rseq` has its `rseq_cs` pointer after two u32s; the `struct rseq_cs` it
//! points to holds a u32 version, u32 flags, then start_ip, post_commit_offset and abort_ip,
//! u64 each.

/// Offset of `rseq_cs` in `struct rseq`.
const RSEQ_CS: u64 = 8;

/// The abort handler a thread stopped at `ip` in its own code (not in a system call, which a
/// section may not make) must go on at, as the kernel would send it there: `Some` when its rseq
/// area `area` (0: none) names a critical section that holds `ip` and that the kernel would
/// accept (version 0, no flags, the abort handler outside the section and preceded by the
/// area's `signature`). `None` otherwise: not in a section, or in one the kernel would kill the
/// thread for, which is left for the kernel to do. `read` fills a buffer from the thread's
/// memory at an address, and says whether it could.
pub fn abort_ip(area: u64, signature: u32, ip: u64, read: impl Fn(u64, &mut [u8]) -> bool) -> Option<u64> {
    let word = |at: u64| {
        let mut b = [0u8; 8];
        read(at, &mut b).then(|| u64::from_le_bytes(b))
    };
    if area == 0 {
        return None;
    }
    let cs = word(area.checked_add(RSEQ_CS)?).filter(|&a| a != 0)?;
    let (head, start, len, abort) = (word(cs)?, word(cs + 8)?, word(cs + 16)?, word(cs + 24)?);
    // The kernel's own test: unsigned, so an `ip` below `start` is outside too.
    if ip.wrapping_sub(start) >= len {
        return None;
    }
    let (version, flags) = (head as u32, (head >> 32) as u32);
    if version != 0 || flags != 0 || abort.wrapping_sub(start) < len || abort < 4 {
        return None;
    }
    let mut sig = [0u8; 4];
    (read(abort - 4, &mut sig) && u32::from_le_bytes(sig) == signature).then_some(abort)
}

#[cfg(test)]
mod tests {
    use super::abort_ip;

    /// A memory of three things: the area at 0x100, its section at 0x200, the code (the
    /// signature before the abort handler at 0x1008) at 0x1000.
    fn memory(cs_at: u64, version_flags: u64, start: u64, len: u64, abort: u64, sig: u32) -> impl Fn(u64, &mut [u8]) -> bool {
        move |at: u64, buf: &mut [u8]| {
            let bytes: [u8; 8] = match at {
                0x108 => cs_at.to_le_bytes(),
                0x200 => version_flags.to_le_bytes(),
                0x208 => start.to_le_bytes(),
                0x210 => len.to_le_bytes(),
                0x218 => abort.to_le_bytes(),
                0x1004 => (sig as u64).to_le_bytes(),
                _ => return false,
            };
            buf.copy_from_slice(&bytes[..buf.len()]);
            true
        }
    }

    #[test]
    fn inside_a_valid_section_goes_to_its_abort_handler() {
        let m = memory(0x200, 0, 0x1000, 4, 0x1008, 0x5305_3053);
        assert_eq!(abort_ip(0x100, 0x5305_3053, 0x1000, &m), Some(0x1008));
        assert_eq!(abort_ip(0x100, 0x5305_3053, 0x1003, &m), Some(0x1008));
        // Outside it, or no area, or no section: as it is.
        assert_eq!(abort_ip(0x100, 0x5305_3053, 0x1004, &m), None);
        assert_eq!(abort_ip(0x100, 0x5305_3053, 0xfff, &m), None);
        assert_eq!(abort_ip(0, 0x5305_3053, 0x1000, &m), None);
        assert_eq!(abort_ip(0x100, 0x5305_3053, 0x1000, memory(0, 0, 0x1000, 4, 0x1008, 0x5305_3053)), None);
    }

    #[test]
    fn a_section_the_kernel_would_reject_is_left_alone() {
        let sig = 0x5305_3053;
        // Another signature, a version, a flag, an abort handler inside the section.
        assert_eq!(abort_ip(0x100, sig, 0x1000, memory(0x200, 0, 0x1000, 4, 0x1008, 0x1234)), None);
        assert_eq!(abort_ip(0x100, sig, 0x1000, memory(0x200, 1, 0x1000, 4, 0x1008, sig)), None);
        assert_eq!(abort_ip(0x100, sig, 0x1000, memory(0x200, 1 << 32, 0x1000, 4, 0x1008, sig)), None);
        assert_eq!(abort_ip(0x100, sig, 0x1000, memory(0x200, 0, 0x1000, 16, 0x1008, sig)), None);
    }
}
