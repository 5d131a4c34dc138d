//! The last instructions of a restart, run from the restored process's own copy of libckpt.
//!
//! myrestart cannot unmap the memory it runs from, so its final act is a jump here: this code
//! lives in the restored address space, unmaps myrestart's remaining block, and resumes the
//! program with `rt_sigreturn` on the signal frame saved at checkpoint time. That restores every
//! register, the FPU/AVX state, the signal mask and the alternate signal stack in one step.

/// `ckpt_resume(block_start, block_len, sigframe, stop)`: never returns.
///
/// Registers on entry: rdi = start of myrestart's block, rsi = its length, rdx = the address of
/// the saved `ucontext`, rcx = nonzero to stop (SIGSTOP) just before resuming. Uses no stack of
/// its own: it points rsp at the frame first.
///
/// The last two instructions are exactly those of a signal return trampoline
/// (`mov rax, 15; syscall`), so that a process stopped here, with rsp at the frame, looks to a
/// debugger like one inside a signal return: `gdb -p` shows the program's own frames.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn ckpt_resume() -> ! {
    core::arch::naked_asm!(
        "mov rsp, rdx",
        "mov r12, rcx",
        "mov eax, 11", // munmap(rdi, rsi)
        "syscall",
        "test r12, r12",
        "jz 2f",
        "mov eax, 39", // getpid()
        "syscall",
        "mov edi, eax",
        "mov esi, 19", // kill(pid, SIGSTOP): the stop takes effect as the call returns
        "mov eax, 62",
        "syscall",
        "2:",
        ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00", // mov rax, 15 (rt_sigreturn)
        "syscall",
        "ud2",
    )
}

pub fn trampoline_address() -> usize {
    ckpt_resume as *const () as usize
}
