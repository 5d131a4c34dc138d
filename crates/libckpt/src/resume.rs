//! The last instructions of a restart, run from the restored process's own copy of libckpt.
//!
//! myrestart cannot unmap the memory it runs from, so its final act is a jump here: this code
//! lives in the restored address space, unmaps myrestart's remaining block, and resumes the
//! program with `rt_sigreturn` on the signal frame saved at checkpoint time. That restores every
//! register, the FPU/AVX state, the signal mask and the alternate signal stack in one step.
//!
//! `ckpt_resume(block_start, block_len, sigframe, stop, others)` never returns; it runs in the
//! thread-group leader. Registers on entry: rdi = start of myrestart's block, rsi = its length,
//! rdx = the address of the leader's saved `ucontext`, rcx = nonzero to stop (SIGSTOP) just
//! before resuming, r8 = how many other threads myrestart created. It uses no stack of its own:
//! it points rsp at the frame first. It waits until every other thread has left myrestart's
//! block (each counts itself in [`THREADS_STARTED`]), unmaps the block, makes again what the
//! image leaves out of the process (libckpt's report page descriptor: [`after_restore`], on the
//! stack below the frame), then lets them all go ([`THREADS_GO`]) and resumes.
//!
//! `ckpt_thread_resume` is where each other thread goes, straight from the `clone3` that made
//! it (with its TLS base, TID address and TID already set by that call). Registers on entry:
//! r13 = the thread's saved `ucontext`, r14/r15 = its robust list head and length, r8/r9/r10 =
//! its rseq area, length and signature (r8 = 0: none), rdx = its GS base (0: none). It restores
//! those, counts itself in, waits for the leader's go, and resumes through its own frame.
//!
//! The final `mov rax, 15; syscall` carries the local symbol `__restore_rt`, the name and the
//! bytes of glibc's signal return trampoline: a process stopped there (with `--stopped`), rsp
//! at the frame, is one a debugger recognises as returning from a signal, so `gdb -p` unwinds
//! through the frame to the program's own code.

use ckpt_sigsafe::sys::nr;

const FUTEX_WAIT_PRIVATE: u32 = linux_raw_sys::general::FUTEX_WAIT | linux_raw_sys::general::FUTEX_PRIVATE_FLAG;
const FUTEX_WAKE_PRIVATE: u32 = linux_raw_sys::general::FUTEX_WAKE | linux_raw_sys::general::FUTEX_PRIVATE_FLAG;
/// `ARCH_SET_GS` (asm/prctl.h).
const ARCH_SET_GS: u32 = 0x1001;

core::arch::global_asm!(
    ".pushsection .text.ckpt_resume,\"ax\",@progbits",
    // The leader.
    ".globl ckpt_resume",
    ".type ckpt_resume,@function",
    "ckpt_resume:",
    "mov rsp, rdx",
    "mov r12, rcx",
    "mov r13, r8",
    "mov r14, rdi",
    "mov r15, rsi",
    // Wait until the other threads have all left the block.
    "2:",
    "mov eax, dword ptr [rip + {started}]",
    "cmp eax, r13d",
    "jae 3f",
    "lea rdi, [rip + {started}]",
    "mov esi, {wait}",
    "mov edx, eax",
    "lea r10, [rip + {poll}]",
    "mov eax, {futex}",
    "syscall",
    "jmp 2b",
    "3:",
    "mov rdi, r14",
    "mov rsi, r15",
    "mov eax, {munmap}", // munmap(block, len)
    "syscall",
    // libckpt's own descriptors, which images leave out, made again (on the stack below the
    // frame: the checkpoint handler's, which it no longer needs).
    "mov rbx, rsp",
    "and rsp, -16",
    "call {after_restore}",
    "mov rsp, rbx",
    "test r12, r12",
    "jnz 4f",
    "mov dword ptr [rip + {go}], 1",
    "lea rdi, [rip + {go}]",
    "mov esi, {wake}",
    "mov edx, 0x7fffffff",
    "mov eax, {futex}",
    "syscall",
    "jmp __restore_rt",
    // Stopped: the go is given without a wake (the others look again every POLL), then the
    // whole process stops as kill returns, with this thread at __restore_rt.
    "4:",
    "mov dword ptr [rip + {go}], 1",
    "mov eax, {getpid}",
    "syscall",
    "mov edi, eax",
    "mov esi, {sigstop}",
    "mov eax, {kill}",
    "syscall",
    ".size ckpt_resume, . - ckpt_resume",
    ".type __restore_rt,@function",
    "__restore_rt:",
    ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00", // mov rax, 15 (rt_sigreturn), as glibc encodes it
    "syscall",
    "ud2",
    ".size __restore_rt, . - __restore_rt",
    // Every other thread.
    ".globl ckpt_thread_resume",
    ".type ckpt_thread_resume,@function",
    "ckpt_thread_resume:",
    "mov rsp, r13",
    "test rdx, rdx",
    "jz 5f",
    "mov rsi, rdx",
    "mov edi, {arch_set_gs}",
    "mov eax, {arch_prctl}",
    "syscall",
    "5:",
    "test r14, r14",
    "jz 6f",
    "mov rdi, r14",
    "mov rsi, r15",
    "mov eax, {set_robust_list}",
    "syscall",
    "6:",
    "test r8, r8",
    "jz 7f",
    "mov rdi, r8", // rseq(area, len, 0, sig): the signature is already in r10
    "mov esi, r9d",
    "xor edx, edx",
    "mov eax, {rseq}",
    "syscall",
    "7:",
    "lock inc dword ptr [rip + {started}]",
    "lea rdi, [rip + {started}]",
    "mov esi, {wake}",
    "mov edx, 1",
    "mov eax, {futex}",
    "syscall",
    "8:",
    "mov eax, dword ptr [rip + {go}]",
    "test eax, eax",
    "jnz 9f",
    "lea rdi, [rip + {go}]",
    "mov esi, {wait}",
    "xor edx, edx",
    "lea r10, [rip + {poll}]",
    "mov eax, {futex}",
    "syscall",
    "jmp 8b",
    "9:",
    "mov eax, {rt_sigreturn}",
    "syscall",
    "ud2",
    ".size ckpt_thread_resume, . - ckpt_thread_resume",
    ".popsection",
    munmap = const nr::MUNMAP,
    getpid = const nr::GETPID,
    kill = const nr::KILL,
    futex = const linux_raw_sys::general::__NR_futex,
    arch_prctl = const nr::ARCH_PRCTL,
    set_robust_list = const nr::SET_ROBUST_LIST,
    rseq = const nr::RSEQ,
    rt_sigreturn = const nr::RT_SIGRETURN,
    sigstop = const linux_raw_sys::general::SIGSTOP,
    wait = const FUTEX_WAIT_PRIVATE,
    wake = const FUTEX_WAKE_PRIVATE,
    arch_set_gs = const ARCH_SET_GS,
    started = sym crate::entry::THREADS_STARTED,
    go = sym crate::entry::THREADS_GO,
    poll = sym crate::entry::POLL,
    after_restore = sym after_restore,
);

/// Called by the leader once the process is whole, before any thread of the program runs again:
/// makes again what images leave out of the process (its report page's descriptor, which `ckpt`
/// reads), and notes that its memory is mapped from image files (which [`crate::dropped`] and
/// incremental checkpoints need to know). Runs on the stack below the saved frame, with every other thread waiting.
extern "C" fn after_restore() {
    crate::config::set_memory_owner();
    crate::checkpoint::report::after_restore();
    crate::dropped::after_restore();
    crate::checkpoint::track::after_restore();
    crate::checkpoint::ownstack::after_restore();
}

// The bytes of `__restore_rt` above spell this system call number.
const _: () = assert!(nr::RT_SIGRETURN == 15);

