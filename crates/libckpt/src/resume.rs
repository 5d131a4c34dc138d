//! The last instructions of a restart, run from the restored process's own copy of libckpt.
//!
//! myrestart cannot unmap the memory it runs from, so its final act is a jump here: this code
//! lives in the restored address space, unmaps myrestart's remaining block, and resumes the
//! program with `rt_sigreturn` on the signal frame saved at checkpoint time. That restores every
//! register, the FPU/AVX state, the signal mask and the alternate signal stack in one step.

/// `ckpt_resume(block_start, block_len, sigframe)`: never returns.
///
/// Registers on entry: rdi = start of myrestart's block, rsi = its length, rdx = the address of
/// the saved `ucontext`. Uses no stack of its own: it points rsp at the frame first.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn ckpt_resume() -> ! {
    core::arch::naked_asm!(
        "mov rsp, rdx",
        "mov eax, 11", // munmap(rdi, rsi)
        "syscall",
        "mov eax, 15", // rt_sigreturn: the frame is at rsp
        "syscall",
        "ud2",
    )
}

pub fn trampoline_address() -> usize {
    ckpt_resume as *const () as usize
}
