//! One process of a tree `ckpt` attaches to as a whole (`super::tree`), in the steps the tree's
//! driver interleaves: its leader seized and stopped (its registers, XSAVE area, mask and rseq
//! read), libckpt.so and the block laid into it, the entry started on it without waiting (the
//! tree's processes run their parts together, the root's waiting for the others'), its return
//! noticed by polling, its results read, and the process put back exactly as it was stopped
//! and let go. The layout of what is mapped, and every step on the leader, are those of the
//! single process's attach (`super::run`).

use super::block::{Block, Results};
use super::inject::Remote;
use super::load::{page_up, Library, Prepared, PAGE};
use super::ptrace::{Regs, Stop};
pub use super::ptrace::Thread;
use super::{STACK, STOP_PATIENCE};
use ckpt_image::frame::ureg;
use ckpt_sigsafe::attach::AttachArgs;
use linux_raw_sys::general as k;
use std::mem::offset_of;
use std::time::Instant;

/// Where the process stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Stopped, as it was (nothing mapped).
    Stopped,
    /// The library, the block and a stack are mapped; the entry not started.
    Loaded,
    /// The entry runs.
    Running,
    /// The entry returned this value; the process is stopped at the return.
    Returned(i64),
    /// It ended meanwhile (killed after a last checkpoint, or by itself).
    Gone,
}

/// A process whose leader `ckpt` holds.
pub struct Process {
    pub pid: u32,
    thread: Thread,
    saved: Regs,
    xstate: Vec<u8>,
    mask: u64,
    pub state: State,
    /// `/proc/PID/mem`, for the block's fields read while the entry runs.
    mem: std::fs::File,
    /// The mapping (library, stub page, block, guard page, stack) and where its parts are.
    base: u64,
    total: u64,
    block_at: u64,
    block_len: usize,
    ret: u64,
    lib_span: u64,
}

/// What every process gets: libckpt.so parsed and relocated at 0, the runs of its pages worth
/// writing, the stub, and the entry's offset.
pub struct Code {
    pub lib: Library,
    pub prepared: Prepared,
    pub runs: Vec<(u64, u64)>,
    pub stub: super::stub::Stub,
    pub entry: u64,
}

fn io(what: &str, e: std::io::Error) -> String {
    format!("{what}: {}", crate::io_message(&e))
}

impl Process {
    /// Takes process `pid`'s leader, seized (`Thread::seize`), and waits until it is stopped;
    /// reads what putting it back needs, and has every signal wait while ckpt's code runs on it.
    pub fn attach(pid: u32, thread: Thread) -> Result<Process, String> {
        thread.interrupt().map_err(|e| io("ptrace could not interrupt it", e))?;
        let deadline = Instant::now() + STOP_PATIENCE;
        loop {
            match thread.wait(Some(deadline)).map_err(|e| io("waiting for it to stop", e))? {
                Some(Stop::Event) => break,
                // A signal it was about to take on the way: it takes it, and stops after.
                Some(Stop::Signal(s)) => thread.cont(s).map_err(|e| io("ptrace", e))?,
                Some(Stop::Gone(_)) => return Err("it ended as ckpt attached to it".into()),
                None => return Err(format!("it did not stop for ptrace within {} s", STOP_PATIENCE.as_secs())),
            }
        }
        let saved = thread.regs().map_err(|e| io("ptrace could not read its registers", e))?;
        let mut xstate = vec![0u8; ckpt_sigsafe::attach::XSTATE_MAX];
        let xlen = thread.xstate(&mut xstate).map_err(|e| io("ptrace could not read its XSAVE area", e))?;
        xstate.truncate(xlen);
        let mask = thread.sigmask().map_err(|e| io("ptrace could not read its signal mask", e))?;
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| io(&format!("/proc/{pid}/mem"), e))?;
        let p = Process { pid, thread, saved, xstate, mask, state: State::Stopped, mem, base: 0, total: 0, block_at: 0, block_len: 0, ret: 0, lib_span: 0 };
        p.thread.set_sigmask(!0).map_err(|e| io("ptrace could not set its signal mask", e))?;
        Ok(p)
    }

    fn remote(&self) -> Result<Remote<'_>, String> {
        Remote::new(self.pid, &self.thread, self.saved)
    }

    /// The block for this process: `block` (its request) with the leader's state added.
    fn fill(&self, block: &mut Block) {
        block.u64s(offset_of!(AttachArgs, regs), &self.saved);
        block.u32(offset_of!(AttachArgs, xstate_len), self.xstate.len() as u32);
        block.put(offset_of!(AttachArgs, xstate), &self.xstate);
        block.u64s(offset_of!(AttachArgs, sigmask), &[self.mask]);
        // A kernel without rseq reporting (before 5.13), or a thread without rseq: none.
        if let Ok(r) = self.thread.rseq() {
            block.u64s(offset_of!(AttachArgs, rseq_abi), &[r.rseq_abi_pointer]);
            block.u32(offset_of!(AttachArgs, rseq_len), r.rseq_abi_size);
            block.u32(offset_of!(AttachArgs, rseq_sig), r.signature);
            block.u32(offset_of!(AttachArgs, rseq_flags), r.flags);
        }
    }

    /// Maps the library, its stub, the block and a stack into the process and fills them; the
    /// entry is not started. Undone by [`put_back`](Self::put_back).
    pub fn load(&mut self, code: &Code, mut block: Block) -> Result<(), String> {
        self.fill(&mut block);
        let remote = Remote::new(self.pid, &self.thread, self.saved)?;
        let block_len = page_up(block.0.len() as u64);
        let total = code.lib.span + PAGE + block_len + PAGE + STACK;
        let prot_rw = (k::PROT_READ | k::PROT_WRITE) as u64;
        let base = remote.checked("mmap", k::__NR_mmap, [0, total, prot_rw, (k::MAP_PRIVATE | k::MAP_ANONYMOUS) as u64, u64::MAX, 0])?;
        (self.base, self.total, self.lib_span) = (base, total, code.lib.span);
        self.state = State::Loaded;
        let stub_base = base + code.lib.span;
        let block_at = stub_base + PAGE;
        let guard = block_at + block_len;
        let stack_top = guard + PAGE + STACK;
        block.u32(offset_of!(AttachArgs, nexcluded), 1);
        block.u64s(offset_of!(AttachArgs, excluded), &[base, base + total]);
        let image = code.prepared.clone().at(base);
        for &(off, len) in &code.runs {
            remote.write(base + off, &image[off as usize..(off + len) as usize])?;
        }
        remote.write(stub_base, &code.stub.bytes)?;
        remote.write(block_at, &block.0)?;
        for (off, len, prot) in code.lib.protections() {
            if prot as u64 != prot_rw {
                remote.checked("mprotect", k::__NR_mprotect, [base + off, len, prot as u64, 0, 0, 0])?;
            }
        }
        remote.checked("mprotect", k::__NR_mprotect, [stub_base, PAGE, (k::PROT_READ | k::PROT_EXEC) as u64, 0, 0, 0])?;
        remote.checked("mprotect", k::__NR_mprotect, [guard, PAGE, k::PROT_NONE as u64, 0, 0, 0])?;
        // The return address (the stub's int3) on a stack aligned as at any call.
        self.ret = stub_base + code.stub.ret;
        remote.write(stack_top - 8, &self.ret.to_le_bytes())?;
        self.block_at = block_at;
        self.block_len = block.0.len();
        // Kept for `start`: the entry's address in the new stack's place.
        let mut regs = remote.base_regs();
        regs[ureg::RIP] = base + code.entry;
        regs[ureg::RSP] = stack_top - 8;
        regs[ureg::RDI] = block_at;
        regs[ureg::RAX] = 0;
        self.thread.set_regs(&regs).map_err(|e| io("ptrace could not set its registers", e))?;
        Ok(())
    }

    /// Writes `bytes` into the block at field offset `at` (before the entry starts).
    pub fn put(&self, at: usize, bytes: &[u8]) -> Result<(), String> {
        self.remote()?.write(self.block_at + at as u64, bytes)
    }

    /// Starts the entry (the registers `load` set).
    pub fn start(&mut self) -> Result<(), String> {
        self.thread.cont(0).map_err(|e| io("ptrace could not run it", e))?;
        self.state = State::Running;
        Ok(())
    }

    /// Reads the block as it is now.
    pub fn block(&self) -> Result<Vec<u8>, String> {
        let mut back = vec![0u8; self.block_len];
        self.remote()?.read(self.block_at, &mut back)?;
        Ok(back)
    }

    /// Reads `buf.len()` bytes of the block from field offset `at`, while the entry runs (what
    /// it has published): one read, as the polling loop asks for it often.
    pub fn peek(&self, at: usize, buf: &mut [u8]) -> Result<(), String> {
        std::os::unix::fs::FileExt::read_exact_at(&self.mem, buf, self.block_at + at as u64).map_err(|e| io("reading its memory", e))
    }

    /// Looks once whether the running entry returned (or crashed, or the process ended).
    pub fn poll(&mut self) -> Result<(), String> {
        if self.state != State::Running {
            return Ok(());
        }
        match self.thread.wait(Some(Instant::now())).map_err(|e| io("waiting for it", e))? {
            Some(Stop::Signal(sig)) => {
                let after = self.thread.regs().map_err(|e| io("ptrace could not read its registers", e))?;
                let rip = after[ureg::RIP];
                if sig == libc::SIGTRAP && rip == self.ret + 1 {
                    self.state = State::Returned(after[ureg::RAX] as i64);
                    return Ok(());
                }
                let place = if (self.base..self.base + self.lib_span).contains(&rip) { format!("libckpt.so+{:#x}", rip - self.base) } else { format!("{rip:#x}") };
                // Stopped where it crashed: put back from there.
                self.state = State::Returned(-1);
                return Err(format!("ckpt's checkpoint code crashed in it (signal {sig} at {place})"));
            }
            // A group stop (SIGSTOP sent meanwhile): our call goes on.
            Some(Stop::Event) => self.thread.cont(0).map_err(|e| io("ptrace could not run it", e))?,
            Some(Stop::Gone(_)) => self.state = State::Gone,
            None => {}
        }
        Ok(())
    }

    /// Stops a running entry that took too long.
    pub fn interrupt(&mut self) {
        if self.state == State::Running {
            let _ = self.thread.interrupt();
            match self.thread.wait(Some(Instant::now() + STOP_PATIENCE)) {
                Ok(Some(Stop::Gone(_))) => self.state = State::Gone,
                _ => self.state = State::Returned(-1),
            }
        }
    }

    /// The results of a returned entry, with its report page (opened here, then its
    /// descriptor closed in the process).
    pub fn results(&self) -> Result<(Results, Option<std::fs::File>), String> {
        let results = Block::results(&self.block()?);
        let mut report = None;
        if results.report_fd >= 0 {
            report = std::fs::File::open(format!("/proc/{}/fd/{}", self.pid, results.report_fd)).ok();
            self.remote()?.syscall(k::__NR_close, [results.report_fd as u64, 0, 0, 0, 0, 0])?;
        }
        Ok((results, report))
    }

    /// Removes what was mapped, puts the leader's registers, XSAVE area and mask back as they
    /// were, and lets it go (the kernel restarts an interrupted system call as after any other
    /// stop). A process that ended needs nothing.
    pub fn put_back(self) -> Result<(), String> {
        if self.state == State::Gone {
            std::mem::forget(self.thread);
            return Ok(());
        }
        let unmapped = if self.state == State::Stopped { Ok(()) } else { self.remote().and_then(|r| r.checked("munmap", k::__NR_munmap, [self.base, self.total, 0, 0, 0, 0]).map(drop)) };
        let restored = self
            .thread
            .set_regs(&self.saved)
            .and_then(|()| if self.xstate.is_empty() { Ok(()) } else { self.thread.set_xstate(&self.xstate) })
            .and_then(|()| self.thread.set_sigmask(self.mask))
            .map_err(|e| io("ptrace could not put its registers back", e));
        let detached = self.thread.detach(0).map_err(|e| io("ptrace could not let it go", e));
        unmapped.and(restored).and(detached)
    }

    /// Ends it (after the tree's last checkpoint): SIGKILL, then let go.
    pub fn kill(self) {
        let _ = ckpt_sigsafe::sys::kill(self.pid, libc::SIGKILL as u32);
        drop(self.thread);
    }
}
