//! The ptrace requests the attach needs, on one thread of another process: seize it, interrupt
//! it, wait for its stops, read and write its registers, XSAVE area and signal mask, read its
//! rseq registration, step or run it, and let it go. Nothing here decides anything; the driver
//! (`attach::mod`) does.

use linux_raw_sys::elf_uapi::{NT_PRSTATUS, NT_X86_XSTATE};
use linux_raw_sys::ptrace as p;
use std::io;
use std::time::{Duration, Instant};

/// The general registers as `PTRACE_GETREGSET` `NT_PRSTATUS` gives them (indexed by
/// `ckpt_image::frame::ureg`).
pub type Regs = [u64; ckpt_image::frame::ureg::COUNT];

/// A thread of another process, seized (it runs on until interrupted). Dropping it detaches
/// from it, stopped or not; the driver puts its registers back before that.
pub struct Thread {
    pub tid: i32,
}

/// What a seized thread did, as `waitpid` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stopped at a ptrace event (`PTRACE_EVENT_STOP`: our interrupt, or a group stop).
    Event,
    /// Stopped as it was about to take signal N (`SIGTRAP` after a step or an `int3`).
    Signal(i32),
    /// Ended: its exit status or the signal that killed it, as `waitpid` gives it.
    Gone(i32),
}

fn result(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

impl Thread {
    /// `PTRACE_SEIZE` of thread `tid`, with no options (its children are not traced, and it
    /// stops only when interrupted or about to take a signal).
    pub fn seize(tid: i32) -> io::Result<Thread> {
        // SAFETY: PTRACE_SEIZE takes no memory from us (addr 0, no options).
        result(unsafe { libc::ptrace(p::PTRACE_SEIZE, tid, 0usize, 0usize) })?;
        Ok(Thread { tid })
    }

    /// `PTRACE_INTERRUPT`: the thread stops at its next chance (at once if it sleeps in a
    /// system call, which returns to be restarted later).
    pub fn interrupt(&self) -> io::Result<()> {
        // SAFETY: PTRACE_INTERRUPT of a thread we seized; no memory passed.
        result(unsafe { libc::ptrace(p::PTRACE_INTERRUPT, self.tid, 0usize, 0usize) }).map(drop)
    }

    /// `PTRACE_CONT`, delivering signal `sig` (0: none).
    pub fn cont(&self, sig: i32) -> io::Result<()> {
        // SAFETY: PTRACE_CONT of a stopped thread we seized; the data is a signal number.
        result(unsafe { libc::ptrace(p::PTRACE_CONT, self.tid, 0usize, sig as usize) }).map(drop)
    }

    /// `PTRACE_SINGLESTEP`, delivering signal `sig` (0: none): one instruction (a `syscall`
    /// counts as one), then a `SIGTRAP` stop.
    pub fn step(&self, sig: i32) -> io::Result<()> {
        // SAFETY: PTRACE_SINGLESTEP of a stopped thread we seized; the data is a signal number.
        result(unsafe { libc::ptrace(p::PTRACE_SINGLESTEP, self.tid, 0usize, sig as usize) }).map(drop)
    }

    /// Its next stop; `None` if none came by `deadline` (without one, waits as long as it
    /// takes).
    pub fn wait(&self, deadline: Option<Instant>) -> io::Result<Option<Stop>> {
        let mut nap = Duration::from_micros(20);
        loop {
            let mut status = 0;
            let flags = libc::__WALL | if deadline.is_some() { libc::WNOHANG } else { 0 };
            // SAFETY: waitpid writes the status into our integer.
            let r = unsafe { libc::waitpid(self.tid, &mut status, flags) };
            if r == self.tid {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    return Ok(Some(Stop::Gone(status)));
                }
                if libc::WIFSTOPPED(status) {
                    let event = (status >> 16) as u32;
                    return Ok(Some(if event == p::PTRACE_EVENT_STOP { Stop::Event } else { Stop::Signal(libc::WSTOPSIG(status)) }));
                }
                continue;
            }
            if r == -1 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Ok(None);
            }
            // Short naps first: the stops waited for here mostly come within microseconds.
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(2));
        }
    }

    fn get_regset(&self, nt: u32, buf: &mut [u8]) -> io::Result<usize> {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: the kernel writes at most `iov_len` bytes to `buf`, which outlives the call,
        // and sets `iov_len` to what it wrote.
        result(unsafe { libc::ptrace(p::PTRACE_GETREGSET, self.tid, nt as usize, &mut iov as *mut libc::iovec) })?;
        Ok(iov.iov_len)
    }

    fn set_regset(&self, nt: u32, buf: &[u8]) -> io::Result<()> {
        let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: the kernel only reads `iov_len` bytes from `buf`, which outlives the call.
        result(unsafe { libc::ptrace(p::PTRACE_SETREGSET, self.tid, nt as usize, &mut iov as *mut libc::iovec) }).map(drop)
    }

    /// The stopped thread's general registers.
    pub fn regs(&self) -> io::Result<Regs> {
        let mut bytes = [0u8; size_of::<Regs>()];
        let n = self.get_regset(NT_PRSTATUS, &mut bytes)?;
        if n != bytes.len() {
            return Err(io::Error::other(format!("the kernel gave {n} bytes of registers, not {}", bytes.len())));
        }
        let mut regs = [0u64; ckpt_image::frame::ureg::COUNT];
        for (r, b) in regs.iter_mut().zip(bytes.chunks_exact(8)) {
            *r = u64::from_ne_bytes(b.try_into().unwrap());
        }
        Ok(regs)
    }

    pub fn set_regs(&self, regs: &Regs) -> io::Result<()> {
        let bytes: Vec<u8> = regs.iter().flat_map(|r| r.to_ne_bytes()).collect();
        self.set_regset(NT_PRSTATUS, &bytes)
    }

    /// The stopped thread's XSAVE area, into `buf`; the bytes in use.
    pub fn xstate(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.get_regset(NT_X86_XSTATE, buf)
    }

    pub fn set_xstate(&self, area: &[u8]) -> io::Result<()> {
        self.set_regset(NT_X86_XSTATE, area)
    }

    /// The stopped thread's blocked signals (bit N-1 for signal N).
    pub fn sigmask(&self) -> io::Result<u64> {
        let mut mask = 0u64;
        // SAFETY: the kernel writes 8 bytes (the size passed) into our u64.
        result(unsafe { libc::ptrace(p::PTRACE_GETSIGMASK, self.tid, 8usize, &mut mask as *mut u64) })?;
        Ok(mask)
    }

    pub fn set_sigmask(&self, mask: u64) -> io::Result<()> {
        // SAFETY: the kernel reads 8 bytes (the size passed) from our u64.
        result(unsafe { libc::ptrace(p::PTRACE_SETSIGMASK, self.tid, 8usize, &mask as *const u64) }).map(drop)
    }

    /// Its rseq registration: area (0: none), length, signature, flags.
    pub fn rseq(&self) -> io::Result<p::ptrace_rseq_configuration> {
        let mut c = p::ptrace_rseq_configuration { rseq_abi_pointer: 0, rseq_abi_size: 0, signature: 0, flags: 0, pad: 0 };
        // SAFETY: the kernel writes at most the size passed into our structure.
        result(unsafe { libc::ptrace(p::PTRACE_GET_RSEQ_CONFIGURATION, self.tid, size_of_val(&c), &mut c as *mut p::ptrace_rseq_configuration) })?;
        Ok(c)
    }

    /// `PTRACE_DETACH` of the stopped thread, delivering signal `sig` (0: none).
    pub fn detach(self, sig: i32) -> io::Result<()> {
        let tid = self.tid;
        std::mem::forget(self);
        // SAFETY: PTRACE_DETACH of a thread we seized; the data is a signal number.
        result(unsafe { libc::ptrace(p::PTRACE_DETACH, tid, 0usize, sig as usize) }).map(drop)
    }
}

impl Drop for Thread {
    /// The last resort of a failed attach: let the thread go, as it is. (A thread that runs
    /// refuses PTRACE_DETACH: it is interrupted first.) The wait for that stop is bounded: a
    /// thread that never stops (one waiting uninterruptibly, as a vfork parent does for its
    /// child) would keep ckpt waiting as long as it waits; it is left seized instead, and the
    /// kernel lets it go, its interrupt forgotten, when ckpt exits.
    fn drop(&mut self) {
        // SAFETY: PTRACE_DETACH / PTRACE_INTERRUPT of a thread we seized, no memory passed.
        let detached = unsafe { libc::ptrace(p::PTRACE_DETACH, self.tid, 0usize, 0usize) } == 0;
        // SAFETY: as above.
        if detached || unsafe { libc::ptrace(p::PTRACE_INTERRUPT, self.tid, 0usize, 0usize) } == -1 {
            return;
        }
        // A signal it stopped to take is passed on as it goes.
        let sig = match self.wait(Some(Instant::now() + Duration::from_millis(500))) {
            Ok(Some(Stop::Event)) => 0,
            Ok(Some(Stop::Signal(s))) => s,
            _ => return,
        };
        // SAFETY: as above; the data is a signal number.
        unsafe { libc::ptrace(p::PTRACE_DETACH, self.tid, 0usize, sig as usize) };
    }
}
