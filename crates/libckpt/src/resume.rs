//! The last instructions of a restart, run from the restored process's own copy of libckpt.
//!
//! myrestart cannot unmap the memory it runs from, so its final act is a jump here: this code
//! lives in the restored address space, unmaps myrestart's remaining block, and resumes the
//! program with `rt_sigreturn` on the signal frame saved at checkpoint time. That restores every
//! register, the FPU/AVX state, the signal mask and the alternate signal stack in one step.
//!
//! `ckpt_resume(block_start, block_len, sigframe, stop)` never returns. Registers on entry:
//! rdi = start of myrestart's block, rsi = its length, rdx = the address of the saved
//! `ucontext`, rcx = nonzero to stop (SIGSTOP) just before resuming. It uses no stack of its
//! own: it points rsp at the frame first.
//!
//! The final `mov rax, 15; syscall` carries the local symbol `__restore_rt`, the name and the
//! bytes of glibc's signal return trampoline: a process stopped there (with `--stopped`), rsp
//! at the frame, is one a debugger recognises as returning from a signal, so `gdb -p` unwinds
//! through the frame to the program's own code.

use ckpt_sigsafe::sys::nr;

core::arch::global_asm!(
    ".pushsection .text.ckpt_resume,\"ax\",@progbits",
    ".globl ckpt_resume",
    ".type ckpt_resume,@function",
    "ckpt_resume:",
    "mov rsp, rdx",
    "mov r12, rcx",
    "mov eax, {munmap}", // munmap(rdi, rsi)
    "syscall",
    "test r12, r12",
    "jz __restore_rt",
    "mov eax, {getpid}",
    "syscall",
    "mov edi, eax",
    "mov esi, {sigstop}", // kill(pid, SIGSTOP): the stop takes effect as the call returns
    "mov eax, {kill}",
    "syscall",
    ".size ckpt_resume, . - ckpt_resume",
    ".type __restore_rt,@function",
    "__restore_rt:",
    ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00", // mov rax, 15 (rt_sigreturn), as glibc encodes it
    "syscall",
    "ud2",
    ".size __restore_rt, . - __restore_rt",
    ".popsection",
    munmap = const nr::MUNMAP,
    getpid = const nr::GETPID,
    kill = const nr::KILL,
    sigstop = const linux_raw_sys::general::SIGSTOP,
);

// The bytes of `__restore_rt` above spell this system call number.
const _: () = assert!(nr::RT_SIGRETURN == 15);

unsafe extern "C" {
    fn ckpt_resume() -> !;
}

pub fn trampoline_address() -> usize {
    ckpt_resume as *const () as usize
}
