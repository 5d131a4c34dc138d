//! Stacks other than the one the checkpoint signal landed on.
//!
//! - **libckpt's own stack**, on which every checkpoint runs from the handler's first steps
//!   on. The signal may land on any stack: a thread's own, a coroutine's carved out of the heap
//!   (often 16 to 64 KiB, the program's data right below it), or the program's alternate signal
//!   stack, which libckpt's handler asks for when the program's own handler for the checkpoint
//!   signal does (`actions`): the Go runtime runs every handler on a 32 KiB stack of each
//!   thread's, inside its heap, and refuses any other. A checkpoint takes tens of KiB of stack
//!   (about 34 KiB here), which on such a stack would overflow into the memory below it, the
//!   program's. So it runs on a stack of its own, mapped on first need (reserved,
//!   `MAP_NORESERVE`: only the pages used cost anything) and kept for the next ones; below the
//!   frame only the handler's first calls remain (its dispatch and the wait for its turn). One
//!   checkpoint at a time runs in a process (`turn`), and only one uses the stack (`BUSY`). The
//!   writer stores that stack's pages as zeros (nothing of it matters after a restart; only its
//!   pages: in a restored process the kernel may show it as one region with the program's memory
//!   beside it): see `write.rs`.
//! - **The writer's stack** ([`on_stack`]), a part of the checkpoint's scratch memory, which the
//!   image leaves out: whoever writes the image (the forked writer, or the handler itself with
//!   `CKPT_SYNC`) does it there, so that no memory the image holds changes while it is read. The
//!   stack the frame is on keeps, below the frame, what the handler's first calls left there
//!   and, under it, the program's own memory (a coroutine's stack carved out of the heap has the
//!   program's data right below it), stored as they are.
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler: atomics, one `mmap` system call, and the switch of stack
//! pointer (assembly). No allocation, no locks, no libc.

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use rustix::mm::{MapFlags, ProtFlags};

/// The stack's size (reserved; a checkpoint uses a small part of it).
const LEN: usize = 1 << 20;

/// The stack's lowest address, once mapped (0 before).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// A checkpoint runs on it.
static BUSY: AtomicBool = AtomicBool::new(false);
/// While a checkpoint runs on libckpt's stack: its lowest address.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The stack, mapped on first need; 0 if it cannot be.
fn stack() -> usize {
    let base = BASE.load(SeqCst);
    if base != 0 {
        return base;
    }
    // SAFETY: a fresh private anonymous mapping, nowhere in particular; never unmapped.
    match unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::STACK) } {
        Ok(p) => {
            BASE.store(p as usize, SeqCst);
            p as usize
        }
        Err(_) => 0,
    }
}

/// Runs `go` (a checkpoint) on libckpt's own stack. (Should the stack be taken, or cannot be
/// mapped, it runs where the handler is, as it would have.)
pub fn run(go: &mut dyn FnMut()) {
    let mine = !BUSY.swap(true, SeqCst);
    let base = if mine { stack() } else { 0 };
    if base == 0 {
        if mine {
            // Not mapped: the next checkpoint tries again.
            BUSY.store(false, SeqCst);
        }
        go();
    } else {
        IN_USE.store(base, SeqCst);
        // SAFETY: the top of a mapping of ours that nothing else uses (BUSY).
        unsafe { on_stack(base + LEN, go) };
        IN_USE.store(0, SeqCst);
        BUSY.store(false, SeqCst);
    }
}

/// Runs `go` with the stack pointer at `top` (rounded down to 16 bytes), and comes back here
/// with the stack pointer as it was. A writer forked inside `go` never comes back: it ends
/// there.
///
/// # Safety
/// The memory below `top` is writable, nothing else uses it while `go` runs, and it is deep
/// enough for `go`.
pub unsafe fn on_stack(top: usize, go: &mut dyn FnMut()) {
    let mut go = go;
    let top = top & !15;
    // SAFETY: the caller vouches for the stack below `top`; `call_on` runs `go` there and comes
    // back here, where the stack pointer it had (kept in r12, which the called code preserves)
    // is put back.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {f}",
            "mov rsp, r12",
            top = in(reg) top,
            f = in(reg) call_on as extern "C" fn(usize),
            in("rdi") &mut go as *mut &mut dyn FnMut() as usize,
            out("r12") _,
            clobber_abi("C"),
        );
    }
}

extern "C" fn call_on(go: usize) {
    // SAFETY: `on_stack` passes a pointer to its `&mut dyn FnMut()`, alive across this call.
    let go = unsafe { &mut *(go as *mut &mut dyn FnMut()) };
    go();
}

/// Marks the stack free: in a restored process (the image was taken with a checkpoint on the
/// stack, which the restored process left: it resumed from the frame), and when a checkpoint
/// has its turn (see `turn`): no other checkpoint runs in this process then, so none is on the
/// stack, and a mark that says otherwise is stale, left in memory restored through myrestart's
/// resume page (which runs none of libckpt's code), or in a child forked or cloned while
/// another thread ran a checkpoint here.
pub fn free() {
    IN_USE.store(0, SeqCst);
    BUSY.store(false, SeqCst);
}

/// Whether a checkpoint runs on the stack now.
pub fn busy() -> bool {
    BUSY.load(SeqCst)
}

/// During a checkpoint (in its writer too): libckpt's stack if the checkpoint runs on it (empty
/// if not).
pub fn in_use() -> Range<usize> {
    let own = IN_USE.load(SeqCst);
    if own == 0 { 0..0 } else { own..own + LEN }
}
