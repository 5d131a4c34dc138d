//! The resume page: myrestart's own last instructions, for a process that had no libckpt.
//!
//! An image of a process that `ckpt checkpoint` attached to from outside (`FLAG_ATTACHED`)
//! names no trampolines: nothing of libckpt is in the restored memory to jump to. Yet the last
//! steps of a restart must run from somewhere that is neither myrestart's block (which they
//! unmap) nor the program's memory (which must hold the program's bytes only). So myrestart
//! brings its own: a small position-independent routine (the template below, in its code but
//! never run there), copied into two pages of their own at an address that neither the image
//! nor the block uses: the first holds the code (read and execute), the second its two counters
//! (read and write). Both are named `ckpt-resume` (`[anon:ckpt-resume]` in `/proc/PID/maps`, or
//! `/memfd:ckpt-resume (deleted)` on a kernel without names for anonymous memory: see
//! [`map_named`]). They stay in the restored process, the one trace of myrestart an attached
//! restart leaves; libckpt's writer leaves them out of any later image (the next restart makes
//! its own).
//!
//! The routine is libckpt's (`ckpt_sigsafe::resume` holds it for both), less what only libckpt
//! needs (its report page): the leader waits until every other thread has left the block, unmaps it, gives the
//! others the go and returns through its saved signal frame (`rt_sigreturn`); each other thread
//! sets its GS base, robust list and rseq area, counts itself in, waits for the go and returns
//! through its own frame. It takes the registers `ckpt_sigsafe::resume` says. With
//! `--stopped` the leader stops itself with its stack pointer at the frame and its instruction
//! pointer on the `mov rax, 15; syscall` labelled `__restore_rt`, glibc's bytes, which a
//! debugger recognises as a signal return.
//!
//! Everything here runs before the point of no return ([`prepare`], from `main`), so that a
//! failure refuses the restart: the address found, the pages mapped, filled and protected.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::plan::{Plan, ResumePage};
use crate::refusal::Refusal;
use ckpt_image::region::RESUME_PAGE_NAME;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::PAGE;
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

/// The two pages: code, then the counters.
const LEN: usize = 2 * PAGE;
/// Where the counters are, from the first byte of the code: the futex words "threads that have
/// left the block" and "go".
const STARTED: usize = PAGE;
const GO: usize = PAGE + 4;

// The template: `ckpt_sigsafe::resume`'s code (libckpt's too), every address in it relative
// to its first byte (`ckpt_resume_page`): the counters one page on, the poll interval after the
// code (`struct timespec`, 10 ms: with `--stopped`, the go is given without a wake, while every
// thread is stopped). So its copy works wherever it lands.
ckpt_sigsafe::resume_code!(
    leader: "ckpt_resume_page",
    thread: "ckpt_resume_page_thread",
    export: [".globl", ".hidden"],
    started: "rip + ckpt_resume_page + {started}",
    go: "rip + ckpt_resume_page + {go}",
    poll: "rip + 20f",
    after_unmap: [],
    tail: [".balign 8", "20:", ".quad 0, 10000000", ".globl ckpt_resume_page_end", ".hidden ckpt_resume_page_end", "ckpt_resume_page_end:"],
    started = const STARTED,
    go = const GO,
);

unsafe extern "C" {
    static ckpt_resume_page: u8;
    static ckpt_resume_page_thread: u8;
    static ckpt_resume_page_end: u8;
}

/// The template's first byte, its other threads' entry and its end, in this program.
fn template() -> (usize, usize, usize) {
    // Only the addresses of the symbols the assembly above defines: nothing is read here.
    (&raw const ckpt_resume_page as usize, &raw const ckpt_resume_page_thread as usize, &raw const ckpt_resume_page_end as usize)
}

/// For an attached image, makes the resume page (see the module's comment) and notes it in
/// the plan (`p.resume_page`); for any other, notes that there is none (libckpt's trampolines
/// resume the process). Called once the block is mapped, so that the search for room sees it.
pub fn prepare(p: &mut Plan) -> Result<(), Refusal> {
    p.resume_page = None;
    if !p.state.is_attached() {
        return Ok(());
    }
    let (start, thread, end) = template();
    if end - start > STARTED {
        return Err(Refusal::new(format_args!("internal error: the resume code ({} bytes) does not fit its page", end - start)));
    }
    let Some(at) = crate::hole::find_room(p, LEN) else {
        return Err(Refusal::new(format_args!("no free address range of {LEN} bytes outside the image's memory and the restore's block")));
    };
    map_named(at).map_err(|e| Refusal::new(format_args!("cannot map the resume page at {at:#x}: {}", describe(e))))?;
    // SAFETY: the template is `end - start` bytes of this program's code (mapped, readable),
    // and the fresh private mapping, writable, holds at least that many; the two are distinct.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, at as *mut u8, end - start) };
    // SAFETY: the first page of the mapping just made, which holds the code and nothing else.
    if let Err(e) = unsafe { rustix::mm::mprotect(at as *mut _, PAGE, MprotectFlags::READ | MprotectFlags::EXEC) } {
        return Err(Refusal::new(format_args!("cannot make the resume page executable: {}", describe(e))));
    }
    p.resume_page = Some(ResumePage { at, len: LEN, leader: at, thread: at + (thread - start) });
    Ok(())
}

/// Maps the two pages at `at` (free, as `find_room` found), private, readable and writable,
/// named `ckpt-resume` for whoever reads the restored process's maps, and for libckpt's writer,
/// which leaves them out of images by that name: anonymous memory named with
/// `PR_SET_VMA_ANON_NAME`, or where the kernel has no names for anonymous memory (before 5.17,
/// or built without `CONFIG_ANON_VMA_NAME`: EINVAL), a private mapping of a memfd of that name.
/// Where neither can be had, anonymous memory without a name: it works the same, and a later
/// image holds a copy of it that comes back as memory the program does not use.
fn map_named(at: usize) -> Result<(), rustix::io::Errno> {
    let flags = MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE;
    let rw = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: the range is free in our own layout and outside the image's regions (as
    // `find_room` found), and FIXED_NOREPLACE makes the kernel refuse rather than replace.
    unsafe { rustix::mm::mmap_anonymous(at as *mut _, LEN, rw, flags) }?;
    // SAFETY: the two pages just mapped, readable, of which nothing holds a `&mut`.
    let pages = unsafe { core::slice::from_raw_parts(at as *const u8, LEN) };
    if rustix::process::set_virtual_memory_region_name(pages, Some(RESUME_PAGE_NAME)).is_ok() {
        return Ok(());
    }
    let Ok(fd) = named_memfd() else { return Ok(()) };
    // SAFETY: the pages just mapped above, which nothing uses yet.
    unsafe { rustix::mm::munmap(at as *mut _, LEN) }?;
    // SAFETY: the range was free before the mapping just removed (see above); the memfd is
    // ours alone, LEN bytes long; private, so the code copied in never reaches it.
    match unsafe { rustix::mm::mmap(at as *mut _, LEN, rw, flags, &fd, 0) } {
        Ok(_) => Ok(()),
        // SAFETY: as for the first mapping.
        Err(_) => unsafe { rustix::mm::mmap_anonymous(at as *mut _, LEN, rw, flags) }.map(drop),
    }
}

/// An empty memfd named [`RESUME_PAGE_NAME`], [`LEN`] bytes long, that may be mapped
/// executable: where `vm.memfd_noexec` is set, a memfd is not unless asked (a kernel before 6.3
/// does not know the flag, and any memfd is).
fn named_memfd() -> Result<rustix::fd::OwnedFd, rustix::io::Errno> {
    use rustix::fs::MemfdFlags;
    let fd = match rustix::fs::memfd_create(RESUME_PAGE_NAME, MemfdFlags::CLOEXEC | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(RESUME_PAGE_NAME, MemfdFlags::CLOEXEC)?,
        other => other?,
    };
    rustix::fs::ftruncate(&fd, LEN as u64)?;
    Ok(fd)
}
