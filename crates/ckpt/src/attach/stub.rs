//! The page of small routines `ckpt` puts beside libckpt's code in a process it attaches to.
//!
//! libckpt.so imports a few C library routines that the compiler calls by itself (`memcpy`,
//! `memmove`, `memset`, `bcmp`/`memcmp`, `strlen`); a process without libckpt may have no C
//! library at all, or one we cannot find. These are written here once, position-independent,
//! and copied as bytes into the process: each import is pointed at its routine, every other
//! import at a `ud2` (a call to one is a bug, which shows as a clean SIGILL stop, not as a
//! jump to nowhere). The page also holds the `int3` the entry returns to.

use std::arch::global_asm;

// Plain byte loops: the checkpoint code copies little with them, and they must not depend
// on anything (no CPU feature checks, no tables). The direction flag is clear at every
// function entry (the ABI says so, and ckpt clears it in the registers it starts the entry
// with); memmove sets it for a backward copy and clears it again.
global_asm!(
    ".pushsection .text.ckpt_attach_stub,\"ax\",@progbits",
    ".balign 16",
    ".globl ckpt_attach_stub_start",
    ".hidden ckpt_attach_stub_start",
    "ckpt_attach_stub_start:",
    "ckpt_attach_stub_return:",
    "int3",
    "ud2",
    "ckpt_attach_stub_trap:",
    "ud2",
    "ckpt_attach_stub_memcpy:",
    "mov rax, rdi",
    "mov rcx, rdx",
    "rep movsb",
    "ret",
    "ckpt_attach_stub_memmove:",
    "mov rax, rdi",
    "mov rcx, rdx",
    "cmp rdi, rsi",
    "jbe 2f",
    "lea rsi, [rsi + rdx - 1]",
    "lea rdi, [rdi + rdx - 1]",
    "std",
    "rep movsb",
    "cld",
    "ret",
    "2:",
    "rep movsb",
    "ret",
    "ckpt_attach_stub_memset:",
    "mov r8, rdi",
    "mov eax, esi",
    "mov rcx, rdx",
    "rep stosb",
    "mov rax, r8",
    "ret",
    "ckpt_attach_stub_memcmp:",
    "xor eax, eax",
    "test rdx, rdx",
    "jz 4f",
    "3:",
    "movzx eax, byte ptr [rdi]",
    "movzx ecx, byte ptr [rsi]",
    "sub eax, ecx",
    "jnz 4f",
    "inc rdi",
    "inc rsi",
    "dec rdx",
    "jnz 3b",
    "4:",
    "ret",
    "ckpt_attach_stub_strlen:",
    "mov rax, rdi",
    "5:",
    "cmp byte ptr [rax], 0",
    "je 6f",
    "inc rax",
    "jmp 5b",
    "6:",
    "sub rax, rdi",
    "ret",
    ".globl ckpt_attach_stub_end",
    ".hidden ckpt_attach_stub_end",
    "ckpt_attach_stub_end:",
    // The offsets of the routines from the start, as data the Rust side can read.
    ".pushsection .rodata.ckpt_attach_stub,\"a\",@progbits",
    ".balign 8",
    ".globl ckpt_attach_stub_offsets",
    ".hidden ckpt_attach_stub_offsets",
    "ckpt_attach_stub_offsets:",
    ".quad ckpt_attach_stub_return - ckpt_attach_stub_start",
    ".quad ckpt_attach_stub_trap - ckpt_attach_stub_start",
    ".quad ckpt_attach_stub_memcpy - ckpt_attach_stub_start",
    ".quad ckpt_attach_stub_memmove - ckpt_attach_stub_start",
    ".quad ckpt_attach_stub_memset - ckpt_attach_stub_start",
    ".quad ckpt_attach_stub_memcmp - ckpt_attach_stub_start",
    ".quad ckpt_attach_stub_strlen - ckpt_attach_stub_start",
    ".popsection",
    ".popsection",
);

unsafe extern "C" {
    static ckpt_attach_stub_start: u8;
    static ckpt_attach_stub_end: u8;
    static ckpt_attach_stub_offsets: [u64; 7];
}

/// The routines' bytes and where each begins in them.
pub struct Stub {
    pub bytes: Vec<u8>,
    /// The `int3` the entry returns to.
    pub ret: u64,
    /// The `ud2` every other import is pointed at.
    pub trap: u64,
    routines: [(&'static str, u64); 6],
}

impl Stub {
    pub fn new() -> Stub {
        let start = &raw const ckpt_attach_stub_start;
        let end = &raw const ckpt_attach_stub_end;
        let len = end as usize - start as usize;
        // SAFETY: both labels are in the same section of this binary, start before end, and
        // the bytes between them are our own code, mapped readable for the life of the
        // process; the offsets table is seven initialised words.
        let (bytes, o) = unsafe { (std::slice::from_raw_parts(start, len).to_vec(), ckpt_attach_stub_offsets) };
        Stub {
            bytes,
            ret: o[0],
            trap: o[1],
            routines: [("memcpy", o[2]), ("memmove", o[3]), ("memset", o[4]), ("bcmp", o[5]), ("memcmp", o[5]), ("strlen", o[6])],
        }
    }

    /// Where, from the stub's start, the routine for import `name` is (the trap for any other).
    pub fn routine(&self, name: &str) -> u64 {
        self.routines.iter().find(|(n, _)| *n == name).map_or(self.trap, |r| r.1)
    }
}
