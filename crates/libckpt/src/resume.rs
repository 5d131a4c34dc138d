//! The last instructions of a restart, run from the restored process's own copy of libckpt.
//!
//! myrestart cannot unmap the memory it runs from, so its final act is a jump here: this code
//! lives in the restored address space, unmaps myrestart's remaining block, and resumes the
//! program with `rt_sigreturn` on the signal frame saved at checkpoint time. That restores every
//! register, the FPU/AVX state, the signal mask and the alternate signal stack in one step.
//!
//! `ckpt_resume` (the leader's entry) and `ckpt_thread_resume` (every other thread's, from the
//! `clone3` that made it) are `ckpt_sigsafe::resume`'s code, which says what each takes in
//! which register; myrestart's resume page is the same code. Here the leader, once myrestart's
//! block is unmapped, also makes again what the image leaves out of the process (libckpt's
//! report page descriptor: [`after_restore`], on the stack below the frame), before it lets the
//! other threads go ([`crate::entry::THREADS_GO`]; each counts itself in
//! [`crate::entry::THREADS_STARTED`]).

// The code itself is `ckpt_sigsafe::resume`'s, shared with myrestart's resume page: here with
// libckpt's statics for its counters and poll interval, and the call that makes again what
// images leave out (on the stack below the frame: the checkpoint handler's, which it no longer
// needs).
ckpt_sigsafe::resume_code!(
    leader: "ckpt_resume",
    thread: "ckpt_thread_resume",
    export: [".globl"],
    started: "rip + {started}",
    go: "rip + {go}",
    poll: "rip + {poll}",
    after_unmap: ["mov rbx, rsp", "and rsp, -16", "call {after_restore}", "mov rsp, rbx"],
    tail: [],
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
    // The image may have been taken to a path `ckpt checkpoint --to` gave: the restored
    // process's next checkpoints go to its own image path.
    crate::config::end_redirect();
    crate::dropped::after_restore();
    crate::checkpoint::ownstack::free();
    crate::turn::clear();
}

