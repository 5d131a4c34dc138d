//! `NT_CKPT_NODE` (ignorable): the machine an image was taken on, for a restart on another node
//! to say, or decide, what differs: its host name, its kernel's vdso, and the CPU features its
//! programs may have chosen code by.
//!
//! ```text
//!   u32 hostname_len, u32 reserved (0)
//!   64 bytes          the host name (uname's nodename), zero-padded
//!   u64 vdso_hash     xxh3-64 of the vdso's bytes (0: unknown)
//!   u32 vdso_len      its length in bytes (whole pages)
//!   u32 count         CPUID words that follow (CPU_WORDS, in this order)
//!   count × u32       leaf 1 ECX, leaf 1 EDX, leaf 7.0 EBX, leaf 7.0 ECX, leaf 7.0 EDX,
//!                     leaf 7.1 EAX, leaf 0xD.1 EAX, leaf 0x80000001 ECX, leaf 0x80000001 EDX
//! ```
//!
//! Why the vdso: a restart gives the program the vdso of the kernel it runs on, moved to the
//! old one's address; but the program keeps addresses of functions in the old one (the C
//! library looks up `clock_gettime` and the like once, when the program starts), and a thread
//! may have been stopped inside it. Another kernel build's vdso has its functions elsewhere,
//! so those addresses would lead into the middle of other code. A restart on another kernel is
//! therefore allowed only where its vdso is byte for byte the one recorded.
//!
//! Why the CPU features: the C library (glibc's ifuncs), and many programs and libraries after
//! it, pick their code by CPUID once, when they start (`memcpy` with AVX-512 or AVX2, `strlen`
//! with EVEX...). A process restored on a CPU that lacks one of those features dies with SIGILL
//! the next time it runs that code, perhaps much later. A restart therefore compares the named
//! features ([`FEATURES`]) of the image's CPU with this one's: one the image's had and this
//! one lacks refuses the restart, naming them ([`missing`]); more features here are fine. Bits
//! that are no feature a program can use (the hypervisor bit, OSXSAVE, APIC and the like) are
//! not compared: they differ between machines that run the same code.
//!
//! An older reader skips the note and restarts without the comparison, as before it. A note
//! that is absent (an image of an older ckpt) compares nothing.

use crate::bytes::{Reader, Writer};
use crate::ImageError;

/// Most bytes of a host name (Linux's `HOST_NAME_MAX`).
pub const HOSTNAME_MAX: usize = 64;
/// CPUID words kept (see the module's notes for which).
pub const CPU_WORDS: usize = 9;
/// Bytes of the note's descriptor.
pub const NODE_LEN: usize = 8 + HOSTNAME_MAX + 16 + 4 * CPU_WORDS;

/// Index of each kept CPUID word in [`Node::cpu`].
pub const L1_ECX: usize = 0;
pub const L1_EDX: usize = 1;
pub const L7_EBX: usize = 2;
pub const L7_ECX: usize = 3;
pub const L7_EDX: usize = 4;
pub const L7_1_EAX: usize = 5;
pub const LD_1_EAX: usize = 6;
pub const LX1_ECX: usize = 7;
pub const LX1_EDX: usize = 8;

/// The features compared at restart: (word, bit, the name Linux gives it in /proc/cpuinfo).
/// Those that compilers and libraries choose code by.
pub const FEATURES: &[(usize, u8, &str)] = &[
    (L1_ECX, 0, "sse3"),
    (L1_ECX, 1, "pclmulqdq"),
    (L1_ECX, 9, "ssse3"),
    (L1_ECX, 12, "fma"),
    (L1_ECX, 13, "cx16"),
    (L1_ECX, 19, "sse4_1"),
    (L1_ECX, 20, "sse4_2"),
    (L1_ECX, 22, "movbe"),
    (L1_ECX, 23, "popcnt"),
    (L1_ECX, 25, "aes"),
    (L1_ECX, 26, "xsave"),
    (L1_ECX, 28, "avx"),
    (L1_ECX, 29, "f16c"),
    (L1_ECX, 30, "rdrand"),
    (L1_EDX, 15, "cmov"),
    (L1_EDX, 19, "clflush"),
    (L1_EDX, 23, "mmx"),
    (L1_EDX, 24, "fxsr"),
    (L1_EDX, 25, "sse"),
    (L1_EDX, 26, "sse2"),
    (L7_EBX, 0, "fsgsbase"),
    (L7_EBX, 3, "bmi1"),
    (L7_EBX, 4, "hle"),
    (L7_EBX, 5, "avx2"),
    (L7_EBX, 8, "bmi2"),
    (L7_EBX, 9, "erms"),
    (L7_EBX, 11, "rtm"),
    (L7_EBX, 16, "avx512f"),
    (L7_EBX, 17, "avx512dq"),
    (L7_EBX, 18, "rdseed"),
    (L7_EBX, 19, "adx"),
    (L7_EBX, 21, "avx512ifma"),
    (L7_EBX, 23, "clflushopt"),
    (L7_EBX, 24, "clwb"),
    (L7_EBX, 28, "avx512cd"),
    (L7_EBX, 29, "sha_ni"),
    (L7_EBX, 30, "avx512bw"),
    (L7_EBX, 31, "avx512vl"),
    (L7_ECX, 1, "avx512vbmi"),
    (L7_ECX, 5, "waitpkg"),
    (L7_ECX, 6, "avx512_vbmi2"),
    (L7_ECX, 8, "gfni"),
    (L7_ECX, 9, "vaes"),
    (L7_ECX, 10, "vpclmulqdq"),
    (L7_ECX, 11, "avx512_vnni"),
    (L7_ECX, 12, "avx512_bitalg"),
    (L7_ECX, 14, "avx512_vpopcntdq"),
    (L7_ECX, 22, "rdpid"),
    (L7_ECX, 27, "movdiri"),
    (L7_ECX, 28, "movdir64b"),
    (L7_EDX, 4, "fsrm"),
    (L7_EDX, 8, "avx512_vp2intersect"),
    (L7_EDX, 14, "serialize"),
    (L7_EDX, 22, "amx_bf16"),
    (L7_EDX, 23, "avx512_fp16"),
    (L7_EDX, 24, "amx_tile"),
    (L7_EDX, 25, "amx_int8"),
    (L7_1_EAX, 4, "avx_vnni"),
    (L7_1_EAX, 5, "avx512_bf16"),
    (LD_1_EAX, 0, "xsaveopt"),
    (LD_1_EAX, 1, "xsavec"),
    (LD_1_EAX, 2, "xgetbv1"),
    (LD_1_EAX, 3, "xsaves"),
    (LX1_ECX, 0, "lahf_lm"),
    (LX1_ECX, 5, "abm"),
    (LX1_ECX, 6, "sse4a"),
    (LX1_ECX, 8, "3dnowprefetch"),
    (LX1_ECX, 11, "xop"),
    (LX1_ECX, 16, "fma4"),
    (LX1_ECX, 21, "tbm"),
    (LX1_EDX, 27, "rdtscp"),
];

/// The machine an image was taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub hostname: [u8; HOSTNAME_MAX],
    pub hostname_len: usize,
    /// The vdso's hash and length (see the module's notes); a hash of 0 is unknown.
    pub vdso: (u64, u32),
    pub cpu: [u32; CPU_WORDS],
}

impl Node {
    pub const EMPTY: Node = Node { hostname: [0; HOSTNAME_MAX], hostname_len: 0, vdso: (0, 0), cpu: [0; CPU_WORDS] };

    /// A node named `hostname` (cut at [`HOSTNAME_MAX`] bytes) whose vdso is `vdso`, with the
    /// CPUID words `cpu`.
    pub fn new(hostname: &[u8], vdso: (u64, u32), cpu: [u32; CPU_WORDS]) -> Node {
        let mut n = Node { vdso, cpu, ..Node::EMPTY };
        n.hostname_len = hostname.len().min(HOSTNAME_MAX);
        n.hostname[..n.hostname_len].copy_from_slice(&hostname[..n.hostname_len]);
        n
    }

    pub fn hostname(&self) -> &[u8] {
        &self.hostname[..self.hostname_len]
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.hostname_len as u32);
        w.u32(0);
        w.bytes(&self.hostname);
        w.u64(self.vdso.0);
        w.u32(self.vdso.1);
        w.u32(CPU_WORDS as u32);
        for word in self.cpu {
            w.u32(word);
        }
    }

    /// The note's descriptor. A later version may keep more CPUID words: those past
    /// [`CPU_WORDS`] are skipped; fewer leave the rest zero (nothing to compare).
    pub fn read(desc: &[u8]) -> Result<Node, ImageError> {
        let bad = ImageError::Malformed("bad node note");
        let mut r = Reader::new(desc);
        let len = r.u32()? as usize;
        r.skip(4)?;
        let name: [u8; HOSTNAME_MAX] = r.array()?;
        if len > HOSTNAME_MAX || name[len..].iter().any(|&b| b != 0) {
            return Err(bad);
        }
        let vdso = (r.u64()?, r.u32()?);
        let count = r.u32()? as usize;
        let mut cpu = [0u32; CPU_WORDS];
        for i in 0..count {
            let word = r.u32()?;
            if let Some(slot) = cpu.get_mut(i) {
                *slot = word;
            }
        }
        Ok(Node { hostname: name, hostname_len: len, vdso, cpu })
    }
}

/// The named features (see [`FEATURES`]) that CPU words `then` have and `now` lack, by name, in
/// the table's order.
pub fn missing<'t>(then: &'t [u32; CPU_WORDS], now: &'t [u32; CPU_WORDS]) -> impl Iterator<Item = &'static str> + 't {
    FEATURES.iter().filter(move |&&(w, bit, _)| then[w] & (1 << bit) != 0 && now[w] & (1 << bit) == 0).map(|&(_, _, name)| name)
}

/// How an image gives its `NT_CKPT_NODE` note.
impl crate::image::Image<'_> {
    /// The machine the image was taken on; `None` if the image does not say (an older ckpt).
    pub fn node(&self) -> Option<Result<Node, ImageError>> {
        self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_NODE).map(|n| Node::read(n.desc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_reads_back_as_written() {
        let mut buf = [0u8; NODE_LEN];
        let n = Node::new(b"node17.cluster", (0x1234, 8192), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut w = Writer::new(&mut buf);
        n.write(&mut w);
        assert_eq!(w.finish().unwrap(), NODE_LEN);
        assert_eq!(Node::read(&buf).unwrap(), n);
        assert_eq!(Node::read(&buf).unwrap().hostname(), b"node17.cluster");
        assert!(Node::read(&buf[..NODE_LEN - 1]).is_err(), "cut short");
        let mut long = buf;
        long[0] = 65;
        assert!(Node::read(&long).is_err(), "a name longer than the room for it");
    }

    #[test]
    fn only_named_features_the_new_cpu_lacks_count() {
        let mut then = [0u32; CPU_WORDS];
        then[L7_EBX] = 1 << 16 | 1 << 30 | 1 << 5; // avx512f, avx512bw, avx2
        then[L1_ECX] = 1 << 31; // the hypervisor bit: no feature
        let mut now = [0u32; CPU_WORDS];
        now[L7_EBX] = 1 << 5 | 1 << 3; // avx2, and bmi1 more
        let lacking: [&str; 2] = {
            let mut it = missing(&then, &now);
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(lacking, ["avx512f", "avx512bw"]);
        assert_eq!(missing(&then, &now).count(), 2);
        assert_eq!(missing(&now, &then).count(), 1, "bmi1 only: the hypervisor bit is no feature");
        assert_eq!(missing(&then, &then).count(), 0);
    }
}
