//! What an attached checkpoint needs besides the ordinary path: the checkpoint of a process
//! that does not run libckpt, into which `ckpt` mapped a copy of this library and which it made
//! call `crate::attached`'s entry on its leader thread, stopped with ptrace (see
//! `ckpt_sigsafe::attach`). Here: the frames region, the leader's frame and state made from the
//! registers `ckpt` read, and whether the program is a Go program. `super::attached_checkpoint`
//! then takes the checkpoint as the signal handler does, with these.
//!
//! No thread of the process runs a handler of libckpt's, so no thread can be stopped in one:
//! the leader is stopped by `ckpt`, every other thread by the capturing child (`seize`), and
//! each one's signal frame is made from its ptrace registers (`tracee`), into a region of its
//! own, `[anon:ckpt-frames]`, rather than on its stack, which may be a 2 KiB goroutine stack
//! (a frame is about 3 KiB with AVX-512 state). The region is ordinary private anonymous memory
//! in the image: the restored threads resume through it. In the running process it is unmapped
//! once the writer has its copy, and the region a restored process inherits is left out of
//! its next image (`write::LeaveOut`).
//!
//! # Signal-safety fence
//! Runs in a process that never loaded libckpt: its libc functions are not there (this copy's
//! imports lead to traps, `memcpy` and its kin aside), nor anything libckpt's constructor sets
//! up. Raw system calls, the block `ckpt` wrote, the leader's stack (which `ckpt` mapped) and
//! memory mapped here; no allocation, no locks, no libc.

use super::failure::Failure;
use super::tracee::{self, Frames, Geometry};
use ckpt_image::frame::ureg;
use ckpt_image::thread::FLAG_RSEQ;
use ckpt_image::ThreadState;
use ckpt_sigsafe::attach::{AttachArgs, XSTATE_MAX};
use core::ops::Range;
use rustix::fd::AsRawFd;
use rustix::mm::{MapFlags, ProtFlags};

/// An attached checkpoint's particulars, for `super::take`.
pub struct Attach<'a> {
    /// The leader's state (its frame in slot 0 of `frames`).
    pub own: ThreadState,
    /// The FPU geometry of the frames made here (from the CPU).
    pub geo: Geometry,
    pub frames: Frames,
    /// The frames region's address (`FramesRegion::region`).
    pub region: usize,
    /// What `ckpt` mapped into the process, and the report page: left out of the image.
    pub leave_out: &'a [Range<usize>],
    /// The root of a tree `ckpt` attached to as a whole: the block it publishes the tree's
    /// processes in, for `ckpt` to start each one's part (`tree::Summon::Attached`).
    pub tree: Option<&'a AttachArgs>,
}

/// The frames region: a slot for each thread the process may have while it is stopped, each
/// room for a frame, then a page with a marker. Its pages cost nothing until a frame is written
/// there. Unmapped when dropped (the writer, forked before, keeps its own copy).
pub struct FramesRegion {
    pub frames: Frames,
    /// The whole region: the slots, then its marker page.
    pub region: usize,
    len: usize,
}

use super::pages::PAGE;

impl FramesRegion {
    pub fn map(geo: &Geometry) -> Result<FramesRegion, Failure> {
        // Room for the frame below the slot's end whatever the alignment the frame needs.
        let slot = (geo.frame_room() + 64 + 63) & !63;
        // Twice the threads there are now, and some: threads are stopped one by one, and
        // those still running may start others meanwhile. Far fewer than an image can hold, as
        // the region stays in the restored process (and, on a kernel that names no anonymous
        // memory, in its later images too).
        let slots = (2 * count_threads() + 64).min(ckpt_image::limits::MAX_THREADS);
        // The last page says what the region is (`ckpt_image::region::FRAMES_MAGIC`), above
        // every frame.
        let slots_len = (slot * slots + PAGE - 1) & !(PAGE - 1);
        let len = slots_len + PAGE;
        // SAFETY: a new private anonymous mapping, placed by the kernel where nothing is.
        let base = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE) }
            .map_err(|e| Failure::new("mapping the frames region", e))? as usize;
        // Without a name (a kernel without anonymous VMA names) a later checkpoint knows the
        // region by its marker instead.
        let _ = ckpt_sigsafe::sys::name_anonymous(base, len, ckpt_image::region::FRAMES_NAME);
        let marker = [ckpt_image::region::FRAMES_MAGIC, base as u64, len as u64];
        // SAFETY: the region was just mapped writable, and its last page is past the slots.
        unsafe { ((base + slots_len) as *mut [u64; 3]).write(marker) };
        Ok(FramesRegion { frames: Frames { base: base as u64, slot, slots, syscall: syscall_instruction() }, region: base, len })
    }

    /// Whether `e` is an earlier frames region (an earlier restart's), the region `current`
    /// aside: named so, or, where the kernel names no anonymous memory, private anonymous memory
    /// whose last page begins with the marker `map` writes, naming this very range.
    pub fn is_earlier(e: &ckpt_sigsafe::maps::MapsEntry, current: usize) -> bool {
        if e.start == current {
            return false;
        }
        if e.name == ckpt_image::region::FRAMES_MAPS_NAME {
            return true;
        }
        if !e.name.is_empty() || e.shared || e.inode != 0 || e.prot & 3 != 3 {
            return false;
        }
        if e.end - e.start < 2 * PAGE || !in_memory(e.end - PAGE) {
            return false;
        }
        let mut head = [0u8; 24];
        if ckpt_sigsafe::sys::copy_own_memory(e.end - PAGE, head.len(), &mut head) != head.len() {
            return false;
        }
        let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        word(0) == ckpt_image::region::FRAMES_MAGIC && word(1) == e.start as u64 && word(2) == (e.end - e.start) as u64
    }
}

impl Drop for FramesRegion {
    fn drop(&mut self) {
        // SAFETY: the region mapped by `map`; the frames in it are read by nothing in this
        // process any more (the writer and the capturing children have their own copies).
        let _ = unsafe { rustix::mm::munmap(self.region as *mut core::ffi::c_void, self.len) };
    }
}

/// Whether the page at `addr` is in memory or swapped out (the pagemap says so): reading it
/// then neither makes a page of zeros nor waits for a userfaultfd the program may have
/// registered there, whose handler is stopped with the rest of the program.
fn in_memory(addr: usize) -> bool {
    use super::pages::{PM_PRESENT, PM_SWAPPED};
    let Ok(pm) = rustix::fs::open(c"/proc/self/pagemap", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else { return false };
    let mut entry = [0u8; 8];
    ckpt_sigsafe::sys::pread_full(pm.as_raw_fd(), &mut entry, (addr / PAGE * 8) as u64) == Ok(8) && u64::from_ne_bytes(entry) & (PM_PRESENT | PM_SWAPPED) != 0
}

/// How many threads the process has now.
fn count_threads() -> usize {
    let mut n = 0;
    // Unreadable: what was counted so far (the caller leaves room for more anyway).
    let _ = ckpt_sigsafe::tasks::each_thread(None, |_| {
        n += 1;
        Ok::<_, ()>(())
    });
    n
}

// A `syscall` instruction of this library's code, which the threads stopped with ptrace are
// made to run (`tracee::altstack`): it is in the process, at the same address in the capturing
// child, a copy of it. The trap after it is never reached (the thread's registers are put back
// as soon as the call is over).
core::arch::global_asm!(
    ".pushsection .text.ckpt_attached_syscall,\"ax\",@progbits",
    ".p2align 4",
    ".hidden ckpt_attached_syscall",
    ".globl ckpt_attached_syscall",
    "ckpt_attached_syscall:",
    "syscall",
    "ud2",
    ".popsection",
);

unsafe extern "C" {
    fn ckpt_attached_syscall();
}

/// The address of that instruction.
fn syscall_instruction() -> u64 {
    ckpt_attached_syscall as *const () as u64
}

/// The leader's frame, made from the registers, mask and XSAVE area `ckpt` read at its ptrace
/// stop and written into slot 0 of `frames`, and its state. Returns the frame's `ucontext`
/// address and the state. Its own function, so that its buffers leave the stack before the
/// checkpoint goes on.
#[inline(never)]
pub fn leader(args: &AttachArgs, geo: &Geometry, frames: &Frames) -> Result<(usize, ThreadState), Failure> {
    let xstate = args.xstate.get(..args.xstate_len as usize).ok_or(Failure::plain("ckpt passed an XSAVE area longer than its block holds"))?;
    let fpu_state = xstate.get(..geo.fpu_len).ok_or(Failure::plain("ckpt passed an XSAVE area shorter than this machine's signal frames hold"))?;
    let mut regs = args.regs;
    let mut fpu = [0u8; XSTATE_MAX];
    let fpu = &mut fpu[..geo.fpu_len];
    fpu.copy_from_slice(fpu_state);
    let mut out = [0u8; XSTATE_MAX + 1024];
    let place = frames.place(0).ok_or(Failure::plain("the frames region has no slot"))?;
    // This thread is the leader: its alternate signal stack is its own to ask for.
    let ss = ckpt_sigsafe::sys::sigaltstack().map_err(|e| Failure::new("reading the leader's alternate signal stack", e))?;
    let (start, len, uc) = tracee::frame_of(&mut regs, args.sigmask, fpu, geo, place, Some(ss), &mut out).ok_or(Failure::plain("making the leader's frame"))?;
    // SAFETY: `frame_of` placed the frame inside slot 0 of the frames region, which is mapped
    // writable and used by nothing else; `out` holds its `len` bytes.
    unsafe { core::ptr::copy_nonoverlapping(out.as_ptr(), start as usize as *mut u8, len) };
    let mut own = super::capture::thread_state(uc as usize, crate::config::get());
    own.fs_base = regs[ureg::FS_BASE];
    own.gs_base = regs[ureg::GS_BASE];
    if args.rseq_abi != 0 {
        own.flags |= FLAG_RSEQ;
        (own.rseq_addr, own.rseq_len, own.rseq_sig) = (args.rseq_abi, args.rseq_len, args.rseq_sig);
    }
    Ok((uc as usize, own))
}
