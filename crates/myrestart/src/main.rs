//! myrestart: rebuilds a process from a ckpt image and resumes it where it was checkpointed.
//!
//! ```text
//!   _start ── relocate ourselves (static PIE, no loader) ── block all signals but the ones
//!     │        that stop a program (HUP, INT, QUIT, TERM: nothing has changed yet)
//!     │
//!     ├─ planner   open and check the whole image, fill in the plan (`plan.rs`); refuse with
//!     │            one line if anything is off; then block every signal
//!     ├─ ids       new user and PID namespaces, so that the process gets its old PID back;
//!     │            this process stays outside as the parent (see `ids.rs`)
//!     ├─ tree      in a tree image, the root creates the other processes with their PIDs;
//!     │            each makes its own plan and goes on alone (see `tree.rs`)
//!     ├─ hole      find a block free in our layout and the target's, and map it (what may
//!     │            still fail, before anything outside changes); for a process that had
//!     │            no libckpt, the resume page too (`resume_page.rs`)
//!     ├─ locks     the file locks the program held, taken again; one held by another
//!     │            process now refuses the restart (see `locks.rs`)
//!     ├─ changes   once every check has passed: the changes outside that the plan prepared
//!     │            (a log made again, a socket bound to its path; see `acts.rs`)
//!     ├─ hole      copy ourselves into the block, re-relocate the copy, switch to a stack
//!     │            inside it
//!     │  ── point of no return ──────────────────────────────────────────────────────────
//!     └─ restore   unmap everything else, move the kernel's vdso/vvar to the old addresses,
//!                  map every region, restore kernel state, then jump to libckpt's trampoline
//!                  in the restored memory (or to the resume page), which unmaps our block
//!                  and calls rt_sigreturn
//! ```
//!
//! Before the point of no return every failure is one line on stderr and exit status 2: each
//! step returns its refusal as a value (`refusal.rs`), and only here is it said, as the process
//! ends. After it, the old process image is gone, so a failure can only be reported and end the
//! process.
//! No allocator, no libc: `no_std`, raw system calls, fixed buffers and `mmap`.
#![no_std]
#![no_main]
// A refusal carries its line in a fixed buffer (`refusal.rs`): there is no heap to box it in, it
// moves only on the way out, and the stack has room for it.
#![allow(clippy::result_large_err, reason = "a refusal is its line, on the stack (no heap)")]
#![deny(unsafe_code)]

mod acts;
// unsafe: the tables' memory: a mapping of its own, handed out as slices.
#[allow(unsafe_code)]
mod arena;
mod changes;
// unsafe: borrows descriptors by number, in one place each: a parked one (`Parked::as_fd`),
// the caller's `--status-fd` (to park a copy), myrestart's own 0, 1 and 2 (`own_std`).
#[allow(unsafe_code)]
mod fds;
// unsafe: closes parked descriptors, `dup3` onto fixed numbers, the tree's owners table.
#[allow(unsafe_code)]
mod files;
// unsafe: moves the program itself: copies its own code and stack to a new block and jumps there.
#[allow(unsafe_code)]
mod hole;
// unsafe: forks by `clone` with chosen PIDs and namespaces, sets signal actions and closes by number.
#[allow(unsafe_code)]
mod ids;
// unsafe: borrows a descriptor by number to lock it (a parked one, or its restored number).
#[allow(unsafe_code)]
mod locks;
// unsafe: the `memcpy` family, over raw pointers.
#[allow(unsafe_code)]
mod mem;
mod missing;
mod pending;
// unsafe: maps the image and reads its headers in place; sets thread state by raw calls.
#[allow(unsafe_code)]
mod plan;
// unsafe: maps the image and reads its headers in place.
#[allow(unsafe_code)]
mod planner;
mod pty;
// unsafe: reads a tree part's headers in place; attaches System V segments over regions.
#[allow(unsafe_code)]
mod ipc;
mod refusal;
// unsafe: after the point of no return: remaps memory, sets registers and jumps into the program.
#[allow(unsafe_code)]
mod restore;
// unsafe: the resume code's template (assembly), copied into pages of its own.
#[allow(unsafe_code)]
mod resume_page;
mod shmobj;
// unsafe: a socket address built from its saved bytes; a mapping of its own.
#[allow(unsafe_code)]
mod sockets;
// unsafe: tables carved out of a mapping sized from the image.
#[allow(unsafe_code)]
mod tables;
mod tcp;
// unsafe: a signal action reset before a process ends; closes each barrier's parked pipe ends
// after their use.
#[allow(unsafe_code)]
mod tree;
mod written;

use myrestart::{args, relocate, EXIT_LOST, EXIT_REFUSED};

use ckpt_sigsafe::say;
use ckpt_sigsafe::sys;
use linux_raw_sys::general as k;


// The entry point: the initial stack, our own ELF header and dynamic section to `entry`, on
// an aligned stack (the program's first instructions: unsafe).
#[allow(unsafe_code)]
mod start {
    core::arch::global_asm!(
        ".globl _start",
        ".type _start, @function",
        "_start:",
        "mov rdi, rsp",
        "lea rsi, [rip + __ehdr_start]",
        "lea rdx, [rip + _DYNAMIC]",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        ".size _start, . - _start",
        entry = sym super::entry,
    );
}

/// First Rust code. `sp` is the initial stack (argc, argv, envp, auxv).
#[allow(unsafe_code)] // called by `_start` with raw pointers; relocates the program before anything else
unsafe extern "C" fn entry(sp: usize, ehdr: usize, dynamic: usize) -> ! {
    // SAFETY: _start passes our own ELF header and dynamic section.
    let Some(me) = (unsafe { relocate::inspect(ehdr, dynamic) }) else { sys::exit_group(EXIT_REFUSED) };
    // SAFETY: we are the mapped program; the kernel maps a static PIE's data writable.
    if !unsafe { relocate::apply(&me, me.base) } {
        sys::exit_group(EXIT_REFUSED);
    }
    // Until the plan is made nothing has changed, and ^C, `timeout` or `kill` may end us as
    // they would any program; every other signal waits.
    let stoppers = [k::SIGHUP, k::SIGINT, k::SIGQUIT, k::SIGTERM].iter().fold(0u64, |m, &s| m | 1 << (s - 1));
    let _ = sys::rt_sigprocmask(k::SIG_SETMASK as usize, !stoppers);

    // SAFETY: sp is the initial process stack the kernel built.
    let args = unsafe { args::Args::from_stack(sp) };
    let opts = match args.parse() {
        Ok(o) => o,
        Err(stop) => sys::exit_group(stop.report()),
    };
    // SAFETY: the one call of this run.
    let p = unsafe { plan::take() };
    planner::make(&opts, p).unwrap_or_else(|r| r.exit());
    // ckpt's line is in the plan now; `ps` shows the restored program's parents as what the
    // user ran, without it.
    for at in [opts.say.map(|(_, at)| at), opts.status_fd.map(|(_, at)| at)].into_iter().flatten() {
        // SAFETY: the arguments are this program's own, and the plan took its copy of them.
        unsafe { args.blank(at) };
    }
    // Nothing may interrupt the rebuild from here on (signals meant for the program are passed
    // on to it by `ids`); the restored mask comes back with rt_sigreturn.
    let _ = sys::rt_sigprocmask(k::SIG_SETMASK as usize, !0);
    ids::arrange(p, &opts).unwrap_or_else(|r| r.exit());
    // A tree: the root (this process) creates the others; each goes on as itself from here.
    tree::spawn(p, &opts).unwrap_or_else(|r| r.exit());
    // In its IPC namespace now: the POSIX queues it had open, parked with its descriptors, and
    // its System V segments tried once where they will be attached.
    ipc::open_queues(opts.image, p).unwrap_or_else(|r| r.exit());
    ipc::check_attach(opts.image, p).unwrap_or_else(|r| r.exit());
    // What may still fail without changing anything outside: the block myrestart moves into.
    hole::prepare(&me, p).unwrap_or_else(|r| r.exit());
    // A process that had no libckpt resumes through code of myrestart's own, in pages made now.
    resume_page::prepare(p).unwrap_or_else(|r| r.exit());
    // The file locks the program held, taken again (never waiting) by the process that becomes
    // it: one another process holds now refuses the restart, before anything outside changed.
    locks::take(opts.image, p).unwrap_or_else(|r| r.exit());
    // Every check of this process has passed: only now is the program said to be restored.
    ids::passed_checks(p);
    // Every check of every part has passed once each of a tree's processes has its plan and its
    // block: only now the changes outside (a log made again, a socket bound to its path), each
    // process its own, the dead socket files replaced last; then, once every socket of the
    // tree is bound, the connections to them. They cross their points of no return together,
    // once each has made them.
    tree::barrier(p, tree::PLANNED);
    for (replacing, then) in [(false, tree::CHANGED), (true, tree::REPLACED)] {
        changes::run(opts.image, p, replacing).unwrap_or_else(|r| r.exit());
        tree::barrier(p, then);
    }
    changes::connect(p);
    ids::tell_restoring(p);
    hole::move_and_restore(&me, p)
}

#[panic_handler]
fn on_panic(info: &core::panic::PanicInfo) -> ! {
    say!("myrestart: internal error: {}", info.message());
    sys::exit_group(EXIT_LOST)
}

/// The precompiled `core` names the unwinding personality routine; with `panic = "abort"` it is
/// never called.
#[allow(unsafe_code)] // an exported symbol by name, which Rust cannot check for clashes
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
