//! One thread of the program stopped with `ptrace` (by the capturing process of `seize`), and
//! what becomes of it: its registers, FPU state, signal mask and rseq area are read, and a
//! signal frame holding them is written on its own stack, below its red zone, where the kernel
//! would put the frame of a signal delivered to it. The image then records the thread like one
//! stopped by the stop signal, whose frame is on its stack too, and a restart resumes it through
//! that frame with `rt_sigreturn`.
//!
//! A process checkpointed by attaching to it (`crate::attached`) has its frames put elsewhere:
//! into a region of their own (`[anon:ckpt-frames]`, [`Place::Region`]), since a thread's stack
//! may be too small for one (a Go goroutine's starts at 2 KiB). Its leader's frame is made
//! here too ([`frame_of`]), from the registers `ckpt` read with ptrace. Without a frame of the
//! kernel's to copy the FPU area's description from, it comes from the CPU
//! ([`Geometry::from_cpu`]). There no frame of the kernel's holds a thread's alternate signal
//! stack either, which a Go thread cannot do without: each thread is made to read its own
//! with one system call from its ptrace stop ([`altstack`]), and its frame holds it.
//!
//! A thread stopped inside a system call is recorded as the kernel would go on with it, since
//! `rt_sigreturn` never restarts anything: a call that would be restarted (`-ERESTARTSYS`,
//! `-ERESTARTNOINTR`, `-ERESTARTNOHAND`, no handler running) is made again, its number back in
//! rax and rip on its `syscall` instruction; a call whose restart the kernel keeps in the
//! thread's restart block (`-ERESTART_RESTARTBLOCK`: a relative `nanosleep` or
//! `clock_nanosleep`, `poll` with a timeout, a futex wait with a timeout), which a restored
//! thread no longer has, returns `EINTR`, as it does when a handler runs (`nanosleep` has then
//! written the time left already). The running program is not concerned: its thread goes on
//! from the ptrace stop itself, the kernel's restart intact. A call that the stop cut short
//! with `EINTR` itself (`epoll_wait`, `sigtimedwait`, `semop`…: `ckpt_sigsafe::interrupted`)
//! is recorded as made again, unless a signal waits that the thread would take, which the
//! `EINTR` is then for; the capturing process lets the thread go the same way (`seize`).
//!
//! A thread stopped inside an rseq critical section (not in a system call) is moved to the
//! section's abort handler, where it goes on and is recorded: the kernel would send it there on
//! its return to user space, but forgets the section once the thread returns elsewhere, as it
//! does from the system call of [`altstack`] or, restored, from the restorer's code
//! (`ckpt_sigsafe::rseq` has the kernel's rule).
//!
//! # Signal-safety fence
//! Runs in the capturing process forked by the signal handler: raw system calls and the
//! caller's buffers only; no allocation, no locks, no libc.

use ckpt_image::bytes::Writer;
use ckpt_image::frame::{self, ureg, xstate_info, FXSAVE_SIZE, FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2, RT_SIGFRAME_SIZE, UCONTEXT_SIZE, XSTATE_SW_BYTES};
use ckpt_image::thread::FLAG_RSEQ;
use ckpt_image::ThreadState;
use ckpt_sigsafe::sys::{self, ptrace};
use linux_raw_sys::elf_uapi::{NT_PRFPREG, NT_PRSTATUS, NT_X86_XSTATE};
use rustix::io::Errno;

/// The kernel's own return values of a system call cut short by a signal (include/linux/errno.h,
/// never seen by a program).
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
/// The x86-64 red zone, below the stack pointer, which a frame must not touch.
const RED_ZONE: u64 = 128;
/// Most signal-delivery stops a thread is let through before it reaches the requested stop.
const MAX_SIGNAL_STOPS: u32 = 16;

/// How the FPU area of the frames this process gets from the kernel is laid out (read from the
/// checkpointing thread's own frame), so that the frames made here are the same.
#[derive(Clone, Copy)]
pub struct Geometry {
    /// Bytes of the FPU area: an XSAVE area of this size, or a plain 512-byte FXSAVE area.
    pub fpu_len: usize,
    pub xsave: bool,
    /// The software-reserved bytes that describe the XSAVE area to `rt_sigreturn`.
    pub sw_bytes: [u8; FXSAVE_SIZE - XSTATE_SW_BYTES],
}

impl Geometry {
    /// The geometry of the FXSAVE area a frame's `fpstate` points at (its first 512 bytes).
    pub fn of(fxsave: &[u8]) -> Geometry {
        let mut sw_bytes = [0u8; FXSAVE_SIZE - XSTATE_SW_BYTES];
        sw_bytes.copy_from_slice(&fxsave[XSTATE_SW_BYTES..FXSAVE_SIZE]);
        match xstate_info(fxsave) {
            Some(x) => Geometry { fpu_len: x.xstate_size as usize, xsave: true, sw_bytes },
            None => Geometry { fpu_len: FXSAVE_SIZE, xsave: false, sw_bytes },
        }
    }

    /// The geometry the kernel gives this process's signal frames, from the CPU: the XSAVE
    /// features it enabled and where they lie (`ckpt_sigsafe::cpu::signal_xstate`), described
    /// in the software-reserved bytes as the kernel describes them (its `_fpx_sw_bytes`:
    /// magic, the area's length with its closing magic word, the features, the area's length).
    pub fn from_cpu() -> Geometry {
        let mut fx = [0u8; FXSAVE_SIZE];
        if let Some((features, size)) = ckpt_sigsafe::cpu::signal_xstate() {
            let mut w = Writer::new(&mut fx[XSTATE_SW_BYTES..]);
            w.u32(FP_XSTATE_MAGIC1);
            w.u32(size + 4);
            w.u64(features);
            w.u32(size);
        }
        Geometry::of(&fx)
    }

    /// Bytes a frame takes at most, below the red zone.
    pub fn frame_room(&self) -> usize {
        RT_SIGFRAME_SIZE + 16 + 64 + self.fpu_len + 4
    }
}

/// Where a thread's frame goes.
#[derive(Clone, Copy)]
pub enum Place {
    /// On its stack, below its red zone, where the kernel would put a signal's frame.
    Stack,
    /// In a slot of the frames region: the frame just below `end`; `scratch` is the slot's
    /// start, where the thread's alternate signal stack is written ([`altstack`]) by the
    /// system call it is made to run at `syscall`.
    Region { end: u64, scratch: u64, syscall: u64 },
}

/// The frames region of an attached checkpoint: one slot per thread, the leader's first.
#[derive(Clone, Copy)]
pub struct Frames {
    pub base: u64,
    /// Bytes of each slot (room for a frame, whatever its alignment, and 64 more).
    pub slot: usize,
    pub slots: usize,
    /// A `syscall` instruction of libckpt's code in the process (see [`Place::Region`]).
    pub syscall: u64,
}

impl Frames {
    /// Where slot `i`'s frame goes, if there is such a slot.
    pub fn place(&self, i: usize) -> Option<Place> {
        let scratch = self.base + (i * self.slot) as u64;
        (i < self.slots).then(|| Place::Region { end: scratch + self.slot as u64, scratch, syscall: self.syscall })
    }
}

/// Which step of a capture failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Seize = 1,
    Stop = 2,
    Registers = 3,
    Frame = 4,
}

impl Step {
    pub fn from_code(code: u32) -> &'static str {
        match code {
            1 => "attaching to it with ptrace",
            2 => "stopping it with ptrace",
            3 => "reading its registers",
            _ => "writing its frame (no room below its stack pointer, or no slot left in the frames region?)",
        }
    }
}

/// What a capture found.
pub enum Outcome {
    /// Stopped and recorded (the fields ptrace gives; the caller completes the rest).
    Captured(ThreadState),
    /// The thread exited meanwhile.
    Gone,
    Failed(Step, Errno),
}

/// Stops thread `tid` of process `pid` (which this process may trace) and writes its frame in
/// process `pid`'s memory where `place` says; it stays stopped until this process detaches or
/// ends. `buf` is room for its FPU state and its frame (twice [`Geometry::frame_room`]).
pub fn capture(pid: u32, tid: u32, geo: &Geometry, place: Place, buf: &mut [u8]) -> Outcome {
    match ptrace::seize(tid) {
        Ok(()) => {}
        Err(Errno::SRCH) => return Outcome::Gone,
        Err(e) => return Outcome::Failed(Step::Seize, e),
    }
    match stop(tid) {
        Ok(true) => {}
        Ok(false) | Err(Errno::SRCH) => return Outcome::Gone,
        Err(e) => return Outcome::Failed(Step::Stop, e),
    }
    let mut regs = [0u64; ureg::COUNT];
    // SAFETY: a [u64; 27] is 216 plain bytes, any value of which is a valid u64 array.
    let reg_bytes = unsafe { core::slice::from_raw_parts_mut(regs.as_mut_ptr() as *mut u8, core::mem::size_of_val(&regs)) };
    let (fpu, rest) = buf.split_at_mut(geo.frame_room());
    let fpu = &mut fpu[..geo.fpu_len];
    let read = ptrace::get_regset(tid, NT_PRSTATUS, reg_bytes)
        .and_then(|n| if n == reg_bytes.len() { Ok(()) } else { Err(Errno::IO) })
        .and_then(|()| ptrace::get_regset(tid, if geo.xsave { NT_X86_XSTATE } else { NT_PRFPREG }, fpu))
        .and_then(|n| if n >= FXSAVE_SIZE { Ok(()) } else { Err(Errno::IO) })
        .and_then(|()| ptrace::sigmask(tid));
    let mask = match read {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(Step::Registers, e),
    };
    // A thread stopped inside an rseq critical section goes on at its abort handler, and is
    // recorded there: the system call it is made to run below returns into libckpt's code,
    // outside the section, which makes the kernel forget the section (`ckpt_sigsafe::rseq`).
    let rseq = ptrace::rseq(tid).ok().filter(|&(area, _, _)| area != 0);
    if let Some((area, _, sig)) = rseq.filter(|_| (regs[ureg::ORIG_RAX] as i64) < 0) {
        if let Some(abort) = ckpt_sigsafe::rseq::abort_ip(area, sig, regs[ureg::RIP], |at, b| sys::read_memory_of(pid, at as usize, b)) {
            regs[ureg::RIP] = abort;
            if let Err(e) = ptrace::set_regset(tid, NT_PRSTATUS, &reg_bytes_of(&regs)) {
                return Outcome::Failed(Step::Registers, e);
            }
        }
    }
    // A thread captured for an attached checkpoint has its frame in a region of its own, with
    // its alternate signal stack, which a kernel-made frame would have held (a Go thread
    // takes every signal on one, and dies of one that comes on another stack).
    let ss = match place {
        Place::Stack => None,
        Place::Region { scratch, syscall, .. } => match altstack(pid, tid, &regs, mask, syscall, scratch) {
            Ok(ss) => Some(ss),
            Err(Errno::SRCH) => return Outcome::Gone,
            Err(e) => return Outcome::Failed(Step::Registers, e),
        },
    };
    // A call the stop cut short with EINTR, not a restart code, is made again in the image, as
    // it is when the thread is let go (`ckpt_sigsafe::interrupted`); the thread itself keeps
    // its registers until then.
    if let Some(again) = ckpt_sigsafe::interrupted::going_on(pid, tid, &regs) {
        regs = again;
    }
    let Some((start, len, uc)) = frame_of(&mut regs, mask, fpu, geo, place, ss, rest) else { return Outcome::Failed(Step::Frame, Errno::FAULT) };
    if !sys::write_memory_of(pid, start as usize, &rest[..len]) {
        return Outcome::Failed(Step::Frame, Errno::FAULT);
    }
    let mut th = ThreadState { tid, sigframe: uc, fs_base: regs[ureg::FS_BASE], gs_base: regs[ureg::GS_BASE], ..ThreadState::default() };
    if let Some((area, len, sig)) = rseq {
        th.flags |= FLAG_RSEQ;
        (th.rseq_addr, th.rseq_len, th.rseq_sig) = (area, len, sig);
    }
    Outcome::Captured(th)
}

/// Stops a seized thread: `Ok(false)` if it exited instead. A signal it was about to take on
/// the way (one it does not block: a fault, say) is let through first, as it would have been.
fn stop(tid: u32) -> Result<bool, Errno> {
    ptrace::interrupt(tid)?;
    wait_stop(tid)
}

/// Waits for the stop `PTRACE_INTERRUPT` asked of thread `tid` (as [`stop`]).
fn wait_stop(tid: u32) -> Result<bool, Errno> {
    for _ in 0..MAX_SIGNAL_STOPS {
        let Some((_, status)) = sys::wait_child(tid as i32, false)? else { continue };
        let stopped = status & 0xff == 0x7f;
        if !stopped {
            return Ok(false); // it exited, or was killed
        }
        if (status >> 16) as u32 == linux_raw_sys::ptrace::PTRACE_EVENT_STOP {
            return Ok(true);
        }
        // A signal-delivery stop: deliver it, and wait for the requested stop.
        ptrace::cont(tid, ((status >> 8) & 0xff) as u32)?;
    }
    Err(Errno::BUSY)
}

/// The alternate signal stack (base, flags, size) of thread `tid` of process `pid`, stopped with
/// `PTRACE_INTERRUPT` with registers `regs` and signal mask `mask`. No ptrace request reads it,
/// so the thread runs `sigaltstack(NULL, scratch)` itself: its registers are pointed at the
/// `syscall` instruction at `syscall` (with `orig_rax` -1, so that the kernel does not restart
/// the call it was in on the way), with every signal blocked, so that none is taken meanwhile;
/// it is stopped on the way out of the call, and its registers and mask are put back. A last
/// `PTRACE_INTERRUPT` stops it where it was stopped before: in the kernel, on the way back to
/// user space, where a call it was in is restarted (or not) when it goes on, as after any stop.
/// The thread runs none of its own code.
fn altstack(pid: u32, tid: u32, regs: &[u64; ureg::COUNT], mask: u64, syscall: u64, scratch: u64) -> Result<(u64, u32, u64), Errno> {
    let bytes = reg_bytes_of;
    let mut call = *regs;
    call[ureg::RIP] = syscall;
    call[ureg::RAX] = linux_raw_sys::general::__NR_sigaltstack as u64;
    call[ureg::ORIG_RAX] = u64::MAX;
    call[ureg::RDI] = 0;
    call[ureg::RSI] = scratch;
    ptrace::set_sigmask(tid, !0)?;
    ptrace::set_regset(tid, NT_PRSTATUS, &bytes(&call))?;
    // Into the call, and out of it: two system-call stops.
    let mut result = [0u8; ureg::COUNT * 8];
    let ran = (|| {
        for _ in 0..2 {
            ptrace::syscall(tid)?;
            let Some((_, status)) = sys::wait_child(tid as i32, false)? else { return Err(Errno::AGAIN) };
            if status & 0xff != 0x7f {
                return Err(Errno::SRCH); // it ended (killed)
            }
            if status >> 8 != linux_raw_sys::general::SIGTRAP as i32 {
                return Err(Errno::INTR); // some other stop: it is put back as it was
            }
        }
        ptrace::get_regset(tid, NT_PRSTATUS, &mut result)?;
        Ok(())
    })();
    // Put back, and stopped again where it was, whatever happened.
    ptrace::set_regset(tid, NT_PRSTATUS, &bytes(regs))?;
    ptrace::set_sigmask(tid, mask)?;
    ptrace::interrupt(tid)?;
    ptrace::cont(tid, 0)?;
    if !wait_stop(tid)? {
        return Err(Errno::SRCH);
    }
    ran?;
    let rax = u64::from_ne_bytes(result[ureg::RAX * 8..ureg::RAX * 8 + 8].try_into().unwrap_or([0xff; 8])) as i64;
    if rax < 0 {
        return Err(Errno::from_raw_os_error(-rax as i32));
    }
    let mut ss = [0u8; 24];
    if !sys::read_memory_of(pid, scratch as usize, &mut ss) || !sys::write_memory_of(pid, scratch as usize, &[0u8; 24]) {
        return Err(Errno::FAULT);
    }
    let word = |i: usize| u64::from_ne_bytes(ss[i..i + 8].try_into().unwrap_or([0; 8]));
    Ok((word(0), word(8) as u32, word(16)))
}

/// Registers as `NT_PRSTATUS` takes them.
fn reg_bytes_of(r: &[u64; ureg::COUNT]) -> [u8; ureg::COUNT * 8] {
    let mut b = [0u8; ureg::COUNT * 8];
    for (i, v) in r.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    b
}

/// The registers of a thread stopped in a system call, as the kernel would go on with it (see
/// the module's notes).
fn as_restarted(regs: &mut [u64; ureg::COUNT]) {
    if (regs[ureg::ORIG_RAX] as i64) < 0 {
        return; // not in a system call
    }
    match -(regs[ureg::RAX] as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs[ureg::RAX] = regs[ureg::ORIG_RAX];
            regs[ureg::RIP] = regs[ureg::RIP].wrapping_sub(2); // the `syscall` instruction again
        }
        ERESTART_RESTARTBLOCK => regs[ureg::RAX] = -(Errno::INTR.raw_os_error() as i64) as u64,
        _ => {}
    }
}

/// The frame of a thread stopped with ptrace: its registers (`regs`, as `NT_PRSTATUS` gives
/// them, changed as the kernel would go on: see the module's notes), its blocked signals and
/// its FPU area (`fpu`, `geo.fpu_len` bytes as `NT_X86_XSTATE` or `NT_PRFPREG` give it, whose
/// description is replaced by `geo`'s) and its alternate signal stack (`None`: none), laid out
/// in `out` for the place `place` says. Returns
/// the frame's address, its length and its `ucontext`'s address; `None` if it does not fit.
pub fn frame_of(regs: &mut [u64; ureg::COUNT], mask: u64, fpu: &mut [u8], geo: &Geometry, place: Place, altstack: Option<(u64, u32, u64)>, out: &mut [u8]) -> Option<(u64, usize, u64)> {
    as_restarted(regs);
    let top = match place {
        Place::Stack => regs[ureg::RSP].checked_sub(RED_ZONE)?,
        Place::Region { end, .. } => end,
    };
    let made = build_frame(regs, mask, fpu, geo, top, out)?;
    if let Some((sp, flags, size)) = altstack {
        frame::set_ucontext_altstack(&mut out[8..8 + UCONTEXT_SIZE], sp, flags, size);
    }
    Some(made)
}

/// Lays out in `out` the frame the kernel would build below `top` for a signal (return
/// address, `ucontext`, `siginfo`, then the FPU area 64-byte aligned and, for XSAVE, its
/// closing magic word), and returns where it goes: its start, its length and the `ucontext`'s
/// address.
fn build_frame(regs: &[u64; ureg::COUNT], mask: u64, fpu: &mut [u8], geo: &Geometry, top: u64, out: &mut [u8]) -> Option<(u64, usize, u64)> {
    let magic = if geo.xsave { 4 } else { 0 };
    let fp = top.checked_sub((geo.fpu_len + magic) as u64)? & !63;
    let start = (fp.checked_sub(RT_SIGFRAME_SIZE as u64)? & !15).checked_sub(8)?;
    let len = (fp - start) as usize + geo.fpu_len + magic;
    let out = out.get_mut(..len)?;
    out.fill(0);
    frame::write_ucontext(&mut Writer::new(&mut out[8..8 + UCONTEXT_SIZE]), regs, mask, fp, geo.xsave);
    if geo.xsave {
        fpu[XSTATE_SW_BYTES..FXSAVE_SIZE].copy_from_slice(&geo.sw_bytes);
    }
    let at = (fp - start) as usize;
    out[at..at + geo.fpu_len].copy_from_slice(fpu);
    if geo.xsave {
        out[at + geo.fpu_len..].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    }
    Some((start, len, start + 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_like_the_kernel() {
        let mut r = [0u64; ureg::COUNT];
        r[ureg::ORIG_RAX] = 0; // read
        r[ureg::RAX] = -ERESTARTSYS as u64;
        r[ureg::RIP] = 0x1002;
        as_restarted(&mut r);
        assert_eq!((r[ureg::RAX], r[ureg::RIP]), (0, 0x1000));
        r[ureg::ORIG_RAX] = 35; // nanosleep
        r[ureg::RAX] = -ERESTART_RESTARTBLOCK as u64;
        as_restarted(&mut r);
        assert_eq!((r[ureg::RAX] as i64, r[ureg::RIP]), (-4, 0x1000));
        r[ureg::ORIG_RAX] = u64::MAX; // in user space: rax is the program's
        r[ureg::RAX] = -ERESTARTSYS as u64;
        as_restarted(&mut r);
        assert_eq!(r[ureg::RAX] as i64, -ERESTARTSYS);
    }

    #[test]
    fn frames_are_laid_out_as_the_kernel_lays_them() {
        let mut fx = [0u8; 1024];
        fx[XSTATE_SW_BYTES..XSTATE_SW_BYTES + 4].copy_from_slice(&ckpt_image::frame::FP_XSTATE_MAGIC1.to_le_bytes());
        fx[XSTATE_SW_BYTES + 4..XSTATE_SW_BYTES + 8].copy_from_slice(&836u32.to_le_bytes());
        fx[XSTATE_SW_BYTES + 8..XSTATE_SW_BYTES + 16].copy_from_slice(&7u64.to_le_bytes());
        fx[XSTATE_SW_BYTES + 16..XSTATE_SW_BYTES + 20].copy_from_slice(&832u32.to_le_bytes());
        let geo = Geometry::of(&fx[..FXSAVE_SIZE]);
        assert!(geo.xsave && geo.fpu_len == 832);
        let mut regs = [0u64; ureg::COUNT];
        regs[ureg::RSP] = 0x7fff_0000_1238;
        regs[ureg::RIP] = 0x4000_1234;
        let mut fpu = [0u8; 832];
        let mut out = [0u8; 4096];
        let (start, len, uc) = frame_of(&mut regs, 0x55, &mut fpu, &geo, Place::Stack, None, &mut out).unwrap();
        assert_eq!(start % 16, 8);
        assert_eq!(uc, start + 8);
        assert!(start + len as u64 <= regs[ureg::RSP] - RED_ZONE);
        let ctx = ckpt_image::frame::SigContext::parse(&out[8..8 + UCONTEXT_SIZE]).unwrap();
        assert_eq!((ctx.rip(), ctx.rsp(), ctx.sigmask), (0x4000_1234, 0x7fff_0000_1238, 0x55));
        assert_eq!(ctx.fpstate % 64, 0);
        let fp = (ctx.fpstate - start) as usize;
        assert_eq!(xstate_info(&out[fp..fp + FXSAVE_SIZE]).map(|x| x.xstate_size), Some(832));
        assert_eq!(&out[fp + 832..fp + 836], &FP_XSTATE_MAGIC2.to_le_bytes());
    }
}

#[cfg(test)]
mod kernel_frame {
    use super::*;
    use ckpt_image::frame::SigContext;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// The FXSAVE area of the last signal frame the handler below was given.
    static mut SEEN: [u8; FXSAVE_SIZE] = [0; FXSAVE_SIZE];
    static GOT: AtomicBool = AtomicBool::new(false);

    extern "C" fn handler(_sig: i32, _info: *mut libc::siginfo_t, uc: *mut core::ffi::c_void) {
        // SAFETY: the kernel built a whole ucontext at `uc` for this handler.
        let ctx = SigContext::parse(unsafe { core::slice::from_raw_parts(uc as *const u8, UCONTEXT_SIZE) }).unwrap();
        // SAFETY: fpstate points at the frame's FXSAVE area; SEEN is written only here, and
        // read by the test after GOT says the handler ran.
        unsafe { (&raw mut SEEN).write(*(ctx.fpstate as *const [u8; FXSAVE_SIZE])) };
        GOT.store(true, Ordering::SeqCst);
    }

    /// The frames made for threads stopped with ptrace in an attached process describe their
    /// FPU area as the kernel's own frames of this machine do, or `rt_sigreturn` would restore
    /// only the SSE registers of a restored thread (it takes any description it finds
    /// inconsistent for a plain FXSAVE area, silently).
    #[test]
    fn the_cpu_says_what_the_kernel_puts_in_a_frame() {
        // SAFETY: a handler for SIGUSR1 (which the test harness does not use), then the signal
        // to this thread alone.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()), 0);
            assert_eq!(libc::pthread_kill(libc::pthread_self(), libc::SIGUSR1), 0);
        }
        assert!(GOT.load(Ordering::SeqCst));
        // SAFETY: the handler has run and written SEEN; nothing writes it any more.
        let seen = unsafe { (&raw const SEEN).read() };
        let kernel = Geometry::of(&seen);
        let cpu = Geometry::from_cpu();
        assert_eq!((cpu.xsave, cpu.fpu_len), (kernel.xsave, kernel.fpu_len));
        assert_eq!(cpu.sw_bytes, kernel.sw_bytes);
    }
}
