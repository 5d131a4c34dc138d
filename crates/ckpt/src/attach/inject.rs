//! A stopped thread of another process made to do things for us: system calls run on it (its
//! registers pointed at a `syscall` instruction of the process's vdso, then one step), and its
//! process's memory read and written through `/proc/PID/mem` (which a tracer may write even
//! where the pages are read-only).

use super::ptrace::{Regs, Stop, Thread};
use ckpt_image::frame::ureg;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// `eflags` bits the injected code must not inherit: the trap flag (single-step), the
/// direction flag (the ABI wants it clear at a call) and alignment checking (a program may
/// turn it on for itself; ckpt's code makes unaligned accesses a compiler may emit).
const EFLAGS_TF: u64 = 0x100;
const EFLAGS_DF: u64 = 0x400;
const EFLAGS_AC: u64 = 0x4_0000;

pub struct Remote<'a> {
    pub thread: &'a Thread,
    mem: File,
    /// The address of a `syscall` instruction in the process's vdso.
    syscall_at: u64,
    /// The registers the thread was stopped with, the base of every change.
    pub saved: Regs,
}

impl<'a> Remote<'a> {
    /// Ready to work on `thread` (of process `pid`, stopped), whose registers were `saved`.
    pub fn new(pid: u32, thread: &'a Thread, saved: Regs) -> Result<Remote<'a>, String> {
        let mem = std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/{pid}/mem")).map_err(|e| format!("/proc/{pid}/mem: {}", crate::io_message(&e)))?;
        let maps = std::fs::read(format!("/proc/{pid}/maps")).map_err(|e| format!("/proc/{pid}/maps: {}", crate::io_message(&e)))?;
        let vdso = ckpt_sigsafe::maps::entries(&maps).find(|m| m.name == b"[vdso]").ok_or("it has no vdso (a kernel booted with vdso=0), where ckpt finds the system call instruction it uses: start the program with `ckpt run` to checkpoint it")?;
        let mut code = vec![0u8; vdso.end - vdso.start];
        mem.read_exact_at(&mut code, vdso.start as u64).map_err(|e| format!("reading its vdso: {}", crate::io_message(&e)))?;
        let at = code.windows(2).position(|w| w == [0x0f, 0x05]).ok_or("its vdso has no system call instruction, which ckpt uses: start the program with `ckpt run` to checkpoint it")?;
        Ok(Remote { thread, mem, syscall_at: (vdso.start + at) as u64, saved })
    }

    /// Registers to run injected code with: the saved ones, without a system call to restart
    /// (`orig_rax` -1, so that the kernel leaves `rax` and `rip` as we set them) and with the
    /// trap, direction and alignment-check flags clear.
    pub fn base_regs(&self) -> Regs {
        let mut r = self.saved;
        r[ureg::ORIG_RAX] = u64::MAX;
        r[ureg::EFLAGS] &= !(EFLAGS_TF | EFLAGS_DF | EFLAGS_AC);
        r
    }

    /// Runs system call `nr` with `args` on the thread; its result (`-errno` on failure).
    pub fn syscall(&self, nr: u32, args: [u64; 6]) -> Result<i64, String> {
        let mut r = self.base_regs();
        r[ureg::RIP] = self.syscall_at;
        r[ureg::RAX] = nr as u64;
        for (slot, v) in [ureg::RDI, ureg::RSI, ureg::RDX, ureg::R10, ureg::R8, ureg::R9].into_iter().zip(args) {
            r[slot] = v;
        }
        let io = |what: &str, e: std::io::Error| format!("{what}: {}", crate::io_message(&e));
        self.thread.set_regs(&r).map_err(|e| io("ptrace could not set its registers", e))?;
        self.thread.step(0).map_err(|e| io("ptrace could not step it", e))?;
        // Every other signal is blocked in the thread meanwhile, but SIGSTOP cannot be: sent to
        // the process, it may come here first. It is passed on (the process stops as asked,
        // and the thread rejoins that stop when ckpt detaches), and the stop it makes (or an
        // earlier one's) is stepped past: the system call then runs, or has run and its trap
        // comes next.
        loop {
            match self.thread.wait(None).map_err(|e| io("waiting for it", e))? {
                Some(Stop::Signal(libc::SIGTRAP)) => break,
                Some(Stop::Signal(libc::SIGSTOP)) => self.thread.step(libc::SIGSTOP).map_err(|e| io("ptrace could not step it", e))?,
                Some(Stop::Event) => self.thread.step(0).map_err(|e| io("ptrace could not step it", e))?,
                Some(Stop::Gone(_)) => return Err("it ended".into()),
                other => return Err(format!("it stopped otherwise than expected after system call {nr} ({other:?})")),
            }
        }
        let after = self.thread.regs().map_err(|e| io("ptrace could not read its registers", e))?;
        if after[ureg::RIP] != self.syscall_at + 2 {
            return Err(format!("system call {nr} did not run where it was put (stopped at {:#x})", after[ureg::RIP]));
        }
        Ok(after[ureg::RAX] as i64)
    }

    /// As [`syscall`](Self::syscall), a failure (`-errno`) made an error naming `what`.
    pub fn checked(&self, what: &str, nr: u32, args: [u64; 6]) -> Result<u64, String> {
        let r = self.syscall(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(format!("{what} in it failed: {}", std::io::Error::from_raw_os_error(-r as i32)));
        }
        Ok(r as u64)
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), String> {
        self.mem.write_all_at(bytes, addr).map_err(|e| format!("writing its memory at {addr:#x}: {}", crate::io_message(&e)))
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        self.mem.read_exact_at(buf, addr).map_err(|e| format!("reading its memory at {addr:#x}: {}", crate::io_message(&e)))
    }
}
