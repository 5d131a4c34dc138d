//! The last instructions of a restart, written once for the two places they run from:
//! libckpt's `resume.rs` (in the restored process's own copy of libckpt) and myrestart's
//! `resume_page.rs` (a copy myrestart leaves in a page of its own, for a process that had no
//! libckpt). [`resume_code!`](crate::resume_code) expands to the `global_asm!` of both; what
//! differs is given to it: the symbols' names and visibility, where the two futex counters and
//! the poll interval are (statics of libckpt, or places relative to the page's first byte), what
//! the leader does once myrestart's block is unmapped (libckpt's `after_restore` call), and what
//! follows the code (the page's poll interval and end).
//!
//! The leader (entry `leader`): rdi = start of myrestart's block, rsi = its length, rdx = the
//! address of its saved `ucontext`, rcx = nonzero to stop (SIGSTOP) just before resuming, r8 =
//! how many other threads myrestart made. It points rsp at its frame, waits until every other
//! thread has left the block (each counts itself in `started`), unmaps the block, runs
//! `after_unmap`, lets them all go (`go`, woken) and resumes with `rt_sigreturn`. With a stop,
//! the go is given without a wake (the others look again every poll interval) and the process
//! stops as `kill` returns, the leader on `__restore_rt`: glibc's name and bytes for its signal
//! return (`mov rax, 15; syscall`), which a debugger recognises, so `gdb -p` unwinds through the
//! frame into the program.
//!
//! Every other thread (entry `thread`), straight from the `clone3` that made it (TLS base, TID
//! address and TID set by that call): r13 = its saved `ucontext`, r14/r15 = its robust list
//! head and length, r8/r9/r10 = its rseq area, length and signature (r8 = 0: none), rdx = its
//! GS base (0: none). It restores those, counts itself in, waits for the go and resumes through
//! its own frame.

/// `FUTEX_WAIT` and `FUTEX_WAKE` on a word of this process only.
pub const FUTEX_WAIT_PRIVATE: u32 = linux_raw_sys::general::FUTEX_WAIT | linux_raw_sys::general::FUTEX_PRIVATE_FLAG;
pub const FUTEX_WAKE_PRIVATE: u32 = linux_raw_sys::general::FUTEX_WAKE | linux_raw_sys::general::FUTEX_PRIVATE_FLAG;
pub const FUTEX: u32 = linux_raw_sys::general::__NR_futex;
pub const SIGSTOP: u32 = linux_raw_sys::general::SIGSTOP;

// The bytes of `__restore_rt` spell this system call number.
const _: () = assert!(crate::sys::nr::RT_SIGRETURN == 15);

/// The resume code (see the module's notes), as one `global_asm!`. `leader` and `thread` name
/// the two entries (the code goes in section `.text.LEADER`), `export` the directives each is
/// given (`.globl`, `.hidden`); `started`, `go` and `poll` are the memory operands (inside the
/// brackets) of the two futex words and of the `struct timespec` the waits sleep at most;
/// `after_unmap` are the leader's lines once the block is gone, `tail` the lines after the
/// code; the operands these name follow.
#[macro_export]
macro_rules! resume_code {
    (
        leader: $leader:literal,
        thread: $thread:literal,
        export: [$($export:literal),* $(,)?],
        started: $started:literal,
        go: $go:literal,
        poll: $poll:literal,
        after_unmap: [$($after:literal),* $(,)?],
        tail: [$($tail:literal),* $(,)?],
        $($operands:tt)*
    ) => {
        core::arch::global_asm!(
            concat!(".pushsection .text.", $leader, ",\"ax\",@progbits"),
            ".balign 16",
            $(concat!($export, " ", $leader),)*
            concat!(".type ", $leader, ",@function"),
            concat!($leader, ":"),
            "mov rsp, rdx",
            "mov r12, rcx",
            "mov r13, r8",
            "mov r14, rdi",
            "mov r15, rsi",
            // Wait until the other threads have all left the block.
            "2:",
            concat!("mov eax, dword ptr [", $started, "]"),
            "cmp eax, r13d",
            "jae 3f",
            concat!("lea rdi, [", $started, "]"),
            "mov esi, {wait}",
            "mov edx, eax",
            concat!("lea r10, [", $poll, "]"),
            "mov eax, {futex}",
            "syscall",
            "jmp 2b",
            "3:",
            "mov rdi, r14",
            "mov rsi, r15",
            "mov eax, {munmap}", // munmap(block, len)
            "syscall",
            $($after,)*
            "test r12, r12",
            "jnz 4f",
            concat!("mov dword ptr [", $go, "], 1"),
            concat!("lea rdi, [", $go, "]"),
            "mov esi, {wake}",
            "mov edx, 0x7fffffff",
            "mov eax, {futex}",
            "syscall",
            "jmp __restore_rt",
            // Stopped: the go without a wake, then the whole process stops as kill returns.
            "4:",
            concat!("mov dword ptr [", $go, "], 1"),
            "mov eax, {getpid}",
            "syscall",
            "mov edi, eax",
            "mov esi, {sigstop}",
            "mov eax, {kill}",
            "syscall",
            concat!(".size ", $leader, ", . - ", $leader),
            ".type __restore_rt,@function",
            "__restore_rt:",
            ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00", // mov rax, 15 (rt_sigreturn), as glibc encodes it
            "syscall",
            "ud2",
            ".size __restore_rt, . - __restore_rt",
            // Every other thread.
            $(concat!($export, " ", $thread),)*
            concat!(".type ", $thread, ",@function"),
            concat!($thread, ":"),
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
            concat!("lock inc dword ptr [", $started, "]"),
            concat!("lea rdi, [", $started, "]"),
            "mov esi, {wake}",
            "mov edx, 1",
            "mov eax, {futex}",
            "syscall",
            "8:",
            concat!("mov eax, dword ptr [", $go, "]"),
            "test eax, eax",
            "jnz 9f",
            concat!("lea rdi, [", $go, "]"),
            "mov esi, {wait}",
            "xor edx, edx",
            concat!("lea r10, [", $poll, "]"),
            "mov eax, {futex}",
            "syscall",
            "jmp 8b",
            "9:",
            "mov eax, {rt_sigreturn}",
            "syscall",
            "ud2",
            concat!(".size ", $thread, ", . - ", $thread),
            $($tail,)*
            ".popsection",
            munmap = const $crate::sys::nr::MUNMAP,
            getpid = const $crate::sys::nr::GETPID,
            kill = const $crate::sys::nr::KILL,
            futex = const $crate::resume::FUTEX,
            arch_prctl = const $crate::sys::nr::ARCH_PRCTL,
            set_robust_list = const $crate::sys::nr::SET_ROBUST_LIST,
            rseq = const $crate::sys::nr::RSEQ,
            rt_sigreturn = const $crate::sys::nr::RT_SIGRETURN,
            sigstop = const $crate::resume::SIGSTOP,
            wait = const $crate::resume::FUTEX_WAIT_PRIVATE,
            wake = const $crate::resume::FUTEX_WAKE_PRIVATE,
            arch_set_gs = const $crate::sys::ARCH_SET_GS,
            $($operands)*
        );
    };
}
