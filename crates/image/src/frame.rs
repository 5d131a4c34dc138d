//! The x86-64 signal frame (`struct ucontext`, the FXSAVE/XSAVE area) and the core-file register
//! notes built from it.

use crate::bytes::{Reader, Writer};
use crate::ImageError;

/// Bytes of `struct ucontext` up to and including `uc_sigmask` (x86-64).
pub const UCONTEXT_SIZE: usize = 304;
const MCONTEXT_OFFSET: usize = 40;
const FPSTATE_PTR_OFFSET: usize = MCONTEXT_OFFSET + 23 * 8;
const SIGMASK_OFFSET: usize = 296;
/// Size of the legacy FXSAVE area, also `user_fpregs_struct`.
pub const FXSAVE_SIZE: usize = 512;
/// `FP_XSTATE_MAGIC1`: the software bytes at the end of the FXSAVE area describe an XSAVE area.
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// Size of `struct elf_prstatus` on x86-64.
pub const PRSTATUS_SIZE: usize = 336;
/// Size of `struct elf_prpsinfo` on x86-64.
pub const PRPSINFO_SIZE: usize = 136;
/// Offset of the software-reserved bytes in an FXSAVE area (where a signal frame describes its
/// XSAVE area, and a core file keeps XCR0).
pub const XSTATE_SW_BYTES: usize = 464;
/// Offset of `pr_reg` (`struct user_regs_struct`) in `struct elf_prstatus`.
const PR_REG_OFFSET: usize = 112;
/// The registers of `struct user_regs_struct`, in order: what `NT_PRSTATUS` holds.
pub const USER_REGS: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs",
    "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
];

/// Indices into `uc_mcontext.gregs`, in the kernel's `struct sigcontext` order.
pub mod greg {
    pub const R8: usize = 0;
    pub const R9: usize = 1;
    pub const R10: usize = 2;
    pub const R11: usize = 3;
    pub const R12: usize = 4;
    pub const R13: usize = 5;
    pub const R14: usize = 6;
    pub const R15: usize = 7;
    pub const RDI: usize = 8;
    pub const RSI: usize = 9;
    pub const RBP: usize = 10;
    pub const RBX: usize = 11;
    pub const RDX: usize = 12;
    pub const RAX: usize = 13;
    pub const RCX: usize = 14;
    pub const RSP: usize = 15;
    pub const RIP: usize = 16;
    pub const EFL: usize = 17;
    pub const CSGSFS: usize = 18;
}

/// Indices into `struct user_regs_struct` (what `PTRACE_GETREGSET` of `NT_PRSTATUS` gives, in
/// the order of [`USER_REGS`]).
pub mod ureg {
    pub const R15: usize = 0;
    pub const R14: usize = 1;
    pub const R13: usize = 2;
    pub const R12: usize = 3;
    pub const RBP: usize = 4;
    pub const RBX: usize = 5;
    pub const R11: usize = 6;
    pub const R10: usize = 7;
    pub const R9: usize = 8;
    pub const R8: usize = 9;
    pub const RAX: usize = 10;
    pub const RCX: usize = 11;
    pub const RDX: usize = 12;
    pub const RSI: usize = 13;
    pub const RDI: usize = 14;
    pub const ORIG_RAX: usize = 15;
    pub const RIP: usize = 16;
    pub const CS: usize = 17;
    pub const EFLAGS: usize = 18;
    pub const RSP: usize = 19;
    pub const SS: usize = 20;
    pub const FS_BASE: usize = 21;
    pub const GS_BASE: usize = 22;
    /// How many registers the structure holds.
    pub const COUNT: usize = 27;
}

/// `FP_XSTATE_MAGIC2`: the word right after a signal frame's XSAVE area (at its
/// `xstate_size`), which says the area is whole.
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Bytes of a frame's `rt_sigframe` below its FPU area: the return address, the `ucontext`
/// and the `siginfo`.
pub const RT_SIGFRAME_SIZE: usize = 8 + UCONTEXT_SIZE + 128;
/// `uc_flags`: the frame's FPU area is an XSAVE area; `ss` is in the frame and is restored.
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
/// `SS_DISABLE`: no alternate signal stack.
const SS_DISABLE: u32 = 2;

/// Writes the `UCONTEXT_SIZE` bytes of a `ucontext` that `rt_sigreturn` resumes as a thread
/// with registers `regs` (a `user_regs_struct`, see [`ureg`]), signal mask `sigmask` and its FPU
/// state at `fpstate` (an XSAVE area if `xsave`, else a plain FXSAVE area), without an alternate
/// signal stack. The kernel builds the same for a signal it delivers; this is for a thread
/// that was stopped without one.
pub fn write_ucontext(w: &mut Writer, regs: &[u64; ureg::COUNT], sigmask: u64, fpstate: u64, xsave: bool) {
    use ureg::*;
    w.u64(if xsave { UC_FP_XSTATE } else { 0 } | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
    w.u64(0); // uc_link
    w.u64(0); // uc_stack.ss_sp
    w.u32(SS_DISABLE);
    w.u32(0);
    w.u64(0); // uc_stack.ss_size
    let r = regs;
    let csgsfs = (r[CS] & 0xffff) | (r[SS] & 0xffff) << 48;
    for v in [
        r[R8], r[R9], r[R10], r[R11], r[R12], r[R13], r[R14], r[R15], r[RDI], r[RSI], r[RBP], r[RBX], r[RDX], r[RAX], r[RCX],
        r[RSP], r[RIP], r[EFLAGS], csgsfs, 0, /* err */ 0, /* trapno */ sigmask, /* oldmask */ 0, /* cr2 */
    ] {
        w.u64(v);
    }
    w.u64(fpstate);
    w.zeros(8 * 8); // reserved
    w.u64(sigmask);
}

/// Sets the alternate signal stack (`uc_stack`: base, flags, size) of a `ucontext` written by
/// [`write_ucontext`]: `rt_sigreturn` makes it the thread's again, as it does for a frame the
/// kernel built (which records the thread's own).
pub fn set_ucontext_altstack(uc: &mut [u8], sp: u64, flags: u32, size: u64) {
    let mut w = Writer::new(&mut uc[16..40]);
    w.u64(sp);
    w.u32(flags);
    w.u32(0);
    w.u64(size);
}

/// The parts of a signal frame's `ucontext` that the image needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigContext {
    pub gregs: [u64; 23],
    /// Address of the FXSAVE/XSAVE area (0 if the frame has none).
    pub fpstate: u64,
    pub sigmask: u64,
}

impl SigContext {
    pub fn parse(uc: &[u8]) -> Result<SigContext, ImageError> {
        let mut r = Reader::new(uc);
        r.skip(MCONTEXT_OFFSET)?;
        let mut gregs = [0u64; 23];
        for g in &mut gregs {
            *g = r.u64()?;
        }
        debug_assert_eq!(r.pos(), FPSTATE_PTR_OFFSET);
        let fpstate = r.u64()?;
        r.skip(SIGMASK_OFFSET - r.pos())?;
        let sigmask = r.u64()?;
        Ok(SigContext { gregs, fpstate, sigmask })
    }

    pub fn rip(&self) -> u64 {
        self.gregs[greg::RIP]
    }
    pub fn rsp(&self) -> u64 {
        self.gregs[greg::RSP]
    }

    /// Writes the `NT_PRSTATUS` descriptor (`struct elf_prstatus`) of thread `pid` of a process
    /// whose parent was `ppid`, stopped by signal `signo`.
    pub fn write_prstatus(&self, w: &mut Writer, signo: u32, pid: u32, ppid: u32, fs_base: u64, gs_base: u64) {
        use greg::*;
        w.u32(signo); // pr_info.si_signo
        w.u32(0); // si_code
        w.u32(0); // si_errno
        w.u16(signo as u16); // pr_cursig
        w.u16(0);
        w.u64(0); // pr_sigpend
        w.u64(self.sigmask); // pr_sighold
        w.u32(pid);
        w.u32(ppid);
        w.u32(0); // pgrp
        w.u32(0); // sid
        w.zeros(4 * 16); // utime, stime, cutime, cstime
        let g = &self.gregs;
        let csgsfs = g[CSGSFS];
        let cs = csgsfs & 0xffff;
        let ss = match (csgsfs >> 48) & 0xffff {
            0 => 0x2b,
            ss => ss,
        };
        // struct user_regs_struct order.
        for v in [
            g[R15], g[R14], g[R13], g[R12], g[RBP], g[RBX], g[R11], g[R10], g[R9], g[R8], g[RAX], g[RCX], g[RDX],
            g[RSI], g[RDI], u64::MAX, /* orig_rax: not in a syscall */
            g[RIP], cs, g[EFL], g[RSP], ss, fs_base, gs_base, 0, 0, 0, 0,
        ] {
            w.u64(v);
        }
        w.u32(1); // pr_fpvalid
        w.u32(0);
    }
}

/// What an `NT_PRSTATUS` descriptor says (for `ckpt inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prstatus {
    pub signo: u32,
    /// The blocked signal mask.
    pub sighold: u64,
    pub pid: u32,
    pub ppid: u32,
    /// `struct user_regs_struct`, named by [`USER_REGS`].
    pub regs: [u64; 27],
}

impl Prstatus {
    pub fn read(desc: &[u8]) -> Result<Prstatus, ImageError> {
        let mut r = Reader::new(desc);
        let signo = r.u32()?;
        r.skip(4 + 4 + 2 + 2 + 8)?; // si_code, si_errno, pr_cursig, padding, pr_sigpend
        let sighold = r.u64()?;
        let pid = r.u32()?;
        let ppid = r.u32()?;
        r.skip(PR_REG_OFFSET - r.pos())?;
        let mut regs = [0u64; 27];
        for v in &mut regs {
            *v = r.u64()?;
        }
        Ok(Prstatus { signo, sighold, pid, ppid, regs })
    }

    /// The register called `name` in [`USER_REGS`].
    pub fn reg(&self, name: &str) -> Option<u64> {
        USER_REGS.iter().position(|&n| n == name).map(|i| self.regs[i])
    }
}

/// The XSAVE components a debugger reads from a core file's `NT_X86_XSTATE`, at the places
/// gdb expects them whatever the CPU (the standard layout of Intel's CPUs): feature bit,
/// offset, size. A CPU may keep them elsewhere in its own XSAVE areas (AMD's Zen 4 puts AVX-512
/// right after AVX, as it has no MPX).
pub const CORE_XSTATE_COMPONENTS: [(u32, usize, usize); 7] = [
    (2, 576, 256),   // AVX: the upper halves of ymm0-15
    (3, 960, 64),    // MPX bound registers
    (4, 1024, 64),   // MPX configuration
    (5, 1088, 64),   // AVX-512 opmask registers k0-7
    (6, 1152, 512),  // the upper halves of zmm0-15
    (7, 1664, 1024), // zmm16-31
    (9, 2688, 8),    // PKRU
];

/// Where a CPU keeps XSAVE component `i` in a signal frame's (standard format) XSAVE area:
/// entry `i` is its `(offset, size)` from CPUID leaf 0xD, `(0, 0)` if unknown.
pub type XsaveLayout = [(u32, u32); 10];

/// Bytes of the `NT_X86_XSTATE` descriptor for XSAVE features `xcr0`: what gdb computes from
/// XCR0 (its `X86_XSTATE_SIZE`: the end of the last group of components it knows that XCR0
/// enables) and wants the note to be exactly; it warns "in core file too small" otherwise.
pub fn core_xstate_len(xcr0: u64) -> usize {
    let has = |bits: u64| xcr0 & bits != 0;
    if has(1 << 9) {
        2696
    } else if has(0b111 << 5) {
        2688
    } else if has(0b11 << 3) {
        1088
    } else if has(1 << 2) {
        832
    } else {
        FXSAVE_SIZE + 64
    }
}

/// Writes an `NT_X86_XSTATE` descriptor of [`core_xstate_len`] bytes from the XSAVE area of a
/// signal frame (at least the FXSAVE area and the XSAVE header), whose components are where
/// `layout` says. In a core file, the software-reserved bytes of the FXSAVE part hold XCR0
/// (which debuggers read to learn the register set); in a signal frame they describe the frame.
/// They are written the core-file way, and each component a debugger knows is moved to its
/// place in the layout it assumes ([`CORE_XSTATE_COMPONENTS`]; zeros where the frame has none).
pub fn write_xstate(w: &mut Writer, xsave: &[u8], xcr0: u64, layout: &XsaveLayout) {
    let len = core_xstate_len(xcr0);
    w.bytes(&xsave[..XSTATE_SW_BYTES]);
    w.u64(xcr0);
    w.zeros(FXSAVE_SIZE - XSTATE_SW_BYTES - 8);
    // The XSAVE header: which components hold state (XSTATE_BV), standard format.
    w.bytes(&xsave[FXSAVE_SIZE..FXSAVE_SIZE + 64]);
    let mut at = FXSAVE_SIZE + 64;
    for &(bit, offset, size) in CORE_XSTATE_COMPONENTS.iter().filter(|&&(_, o, s)| o + s <= len) {
        w.zeros(offset - at);
        let (from, from_len) = layout[bit as usize];
        let from = from as usize;
        let bytes = xsave.get(from..from + size).filter(|_| xcr0 & 1 << bit != 0 && from_len as usize == size && from >= FXSAVE_SIZE + 64);
        match bytes {
            Some(b) => w.bytes(b),
            None => w.zeros(size),
        }
        at = offset + size;
    }
    w.zeros(len - at);
}

/// Writes the `NT_PRPSINFO` descriptor.
pub fn write_prpsinfo(w: &mut Writer, pid: u32, ppid: u32, uid: u32, gid: u32, fname: &[u8], psargs: &[u8]) {
    w.u8(0); // pr_state: running
    w.u8(b'R'); // pr_sname
    w.u8(0); // pr_zomb
    w.u8(0); // pr_nice
    w.u32(0);
    w.u64(0); // pr_flag
    w.u32(uid);
    w.u32(gid);
    w.u32(pid);
    w.u32(ppid);
    w.u32(0);
    w.u32(0);
    let mut f = [0u8; 16];
    let n = fname.len().min(15);
    f[..n].copy_from_slice(&fname[..n]);
    w.bytes(&f);
    let mut a = [0u8; 80];
    let n = psargs.len().min(79);
    a[..n].copy_from_slice(&psargs[..n]);
    w.bytes(&a);
}

/// What the software-reserved bytes of an FXSAVE area say about the XSAVE area behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XstateInfo {
    pub xfeatures: u64,
    /// Bytes of the XSAVE area (FXSAVE area included).
    pub xstate_size: u32,
}

/// Reads the software bytes at offset 464 of an FXSAVE area; `None` for a plain FXSAVE frame.
pub fn xstate_info(fxsave: &[u8]) -> Option<XstateInfo> {
    let mut r = Reader::new(fxsave.get(XSTATE_SW_BYTES..FXSAVE_SIZE)?);
    let magic1 = r.u32().ok()?;
    let _extended_size = r.u32().ok()?;
    let xfeatures = r.u64().ok()?;
    let xstate_size = r.u32().ok()?;
    (magic1 == FP_XSTATE_MAGIC1 && xstate_size as usize >= FXSAVE_SIZE + 64).then_some(XstateInfo { xfeatures, xstate_size })
}

/// Puts the x87 and SSE control state of an XSAVE area (standard format, at least the FXSAVE
/// part and the XSAVE header) to what a new thread starts with: control word 0x37f (all
/// exceptions masked, extended precision, round to nearest), status and tag words empty,
/// MXCSR 0x1f80 (exceptions masked, round to nearest, no flush to zero). The header's
/// XSTATE_BV says both components hold state, so that a restore takes them from the area
/// (whose other bytes are left as they are). For code run on another program's thread, which
/// must not inherit its rounding mode or unmasked exceptions.
pub fn xsave_control_defaults(xsave: &mut [u8]) {
    if xsave.len() < FXSAVE_SIZE + 64 {
        return;
    }
    xsave[0..2].copy_from_slice(&0x37fu16.to_le_bytes()); // FCW
    xsave[2..4].copy_from_slice(&0u16.to_le_bytes()); // FSW
    xsave[4] = 0; // abridged FTW: every register empty
    xsave[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
    let bv = u64::from_le_bytes(xsave[FXSAVE_SIZE..FXSAVE_SIZE + 8].try_into().unwrap()) | 0b11;
    xsave[FXSAVE_SIZE..FXSAVE_SIZE + 8].copy_from_slice(&bv.to_le_bytes());
}
