//! The steps on one process `ckpt` attaches to, used by both drivers (a single process,
//! `super::attach_and_call`, is a tree of one; a tree's, `super::tree`, interleaves them over
//! its processes): its leader stopped (its registers, XSAVE area, mask and rseq read, a
//! section it was stopped in aborted), libckpt.so and the block laid into it, the entry
//! started, its return waited for or noticed by polling (a SIGSTOP meanwhile passed on, a
//! crash reported with what the code said), its results read (the report descriptor only if
//! it is a report page), and the process put back exactly as it was stopped (a call our stop
//! cut short with `EINTR` made again) and let go.

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
    /// The entry was stopped before it returned (it crashed, or took too long); the process
    /// is stopped there.
    Halted,
    /// It ended meanwhile (killed after a last checkpoint, or by itself).
    Gone,
}

/// A process whose leader `ckpt` holds.
pub struct Process {
    pub pid: u32,
    thread: Thread,
    /// The leader's registers as stopped (at an rseq section's abort handler if it was
    /// stopped inside one), the base of what it is put back with.
    saved: Regs,
    xstate: Vec<u8>,
    mask: u64,
    rseq: Option<linux_raw_sys::ptrace::ptrace_rseq_configuration>,
    pub state: State,
    /// When the leader stopped.
    pub stopped_at: Instant,
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

impl Code {
    /// libckpt.so, parsed and relocated once (before any process is stopped), with the
    /// exported function `entry`.
    pub fn prepare(entry: &str) -> Result<Code, super::Failure> {
        use crate::EXIT_FAILED;
        let path = crate::locate::libckpt()?;
        let bytes = std::fs::read(&path).map_err(|e| (EXIT_FAILED, format!("{}: {}", crate::shown(&path), crate::io_message(&e))))?;
        let lib = Library::parse(bytes).map_err(|why| (EXIT_FAILED, format!("{}: {why}", crate::shown(&path))))?;
        let stub = super::stub::Stub::new();
        let prepared = lib.prepare(&stub).map_err(|why| (EXIT_FAILED, format!("{}: {why}", crate::shown(&path))))?;
        // Done before the process is stopped: which pages are worth writing.
        let runs = prepared.written_pages();
        let entry = lib.symbol(entry).ok_or_else(|| (EXIT_FAILED, format!("{} has no {entry} (it is older than this ckpt)", crate::shown(&path))))?;
        Ok(Code { lib, prepared, runs, stub, entry })
    }
}

fn io(what: &str, e: std::io::Error) -> String {
    format!("{what}: {}", crate::io_message(&e))
}

impl Process {
    /// Takes process `pid`'s leader, seized (`Thread::seize`), and waits until it is stopped;
    /// reads what putting it back needs, and has every signal wait while ckpt's code runs on it
    /// (a handler of the program's must not run on our stack, in the middle of our call).
    pub fn attach(pid: u32, thread: Thread) -> Result<Process, String> {
        let stopped_at = Instant::now();
        thread.interrupt().map_err(|e| io("ptrace could not interrupt it", e))?;
        let deadline = stopped_at + STOP_PATIENCE;
        loop {
            match thread.wait(Some(deadline)).map_err(|e| io("waiting for it to stop", e))? {
                Some(Stop::Event) => break,
                // A signal it was about to take on the way: it takes it, and stops after.
                Some(Stop::Signal(s)) => thread.cont(s).map_err(|e| io("ptrace", e))?,
                Some(Stop::Gone(_)) => return Err("it ended as ckpt attached to it".into()),
                None => {
                    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let why = if ckpt_sigsafe::proctext::stat_state(&stat) == Some(b'D') { " (it waits in the kernel where no signal reaches it, as a vfork parent waits for its child)" } else { "" };
                    return Err(format!("it did not stop for ptrace within {} s{why}; it was left as it was: try again once it runs", STOP_PATIENCE.as_secs()));
                }
            }
        }
        let mut saved = thread.regs().map_err(|e| io("ptrace could not read its registers", e))?;
        let mut xstate = vec![0u8; ckpt_sigsafe::attach::XSTATE_MAX];
        let xlen = thread.xstate(&mut xstate).map_err(|e| io("ptrace could not read its XSAVE area", e))?;
        xstate.truncate(xlen);
        let mask = thread.sigmask().map_err(|e| io("ptrace could not read its signal mask", e))?;
        // A kernel without rseq reporting (before 5.13), or a thread without rseq: none.
        let rseq = thread.rseq().ok();
        if let Some(r) = &rseq {
            abort_rseq_section(pid, r, &mut saved);
        }
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| io(&format!("/proc/{pid}/mem"), e))?;
        let p = Process { pid, thread, saved, xstate, mask, rseq, state: State::Stopped, stopped_at, mem, base: 0, total: 0, block_at: 0, block_len: 0, ret: 0, lib_span: 0 };
        p.thread.set_sigmask(!0).map_err(|e| io("ptrace could not set its signal mask", e))?;
        Ok(p)
    }

    fn remote(&self) -> Result<Remote<'_>, String> {
        Remote::new(self.pid, &self.thread, self.saved)
    }

    /// The block for this process: `block` (its request) with the leader's state added, its
    /// registers as its image records them (a call our stop cut short with `EINTR`, not a
    /// restart code, made again, as when it is let go: [`put_back`](Self::put_back)).
    fn fill(&self, block: &mut Block) {
        let imaged = ckpt_sigsafe::interrupted::going_on(self.pid, self.pid, &self.saved).unwrap_or(self.saved);
        block.u64s(offset_of!(AttachArgs, regs), &imaged);
        block.u32(offset_of!(AttachArgs, xstate_len), self.xstate.len() as u32);
        block.put(offset_of!(AttachArgs, xstate), &self.xstate);
        block.u64s(offset_of!(AttachArgs, sigmask), &[self.mask]);
        if let Some(r) = &self.rseq {
            block.u64s(offset_of!(AttachArgs, rseq_abi), &[r.rseq_abi_pointer]);
            block.u32(offset_of!(AttachArgs, rseq_len), r.rseq_abi_size);
            block.u32(offset_of!(AttachArgs, rseq_sig), r.signature);
            block.u32(offset_of!(AttachArgs, rseq_flags), r.flags);
        }
    }

    /// Maps the library, its stub, the block and a stack into the process (one mapping) and
    /// fills them, and sets the leader's registers for the call; the entry is not started.
    /// Undone by [`put_back`](Self::put_back).
    pub fn load(&mut self, code: &Code, mut block: Block) -> Result<(), String> {
        self.fill(&mut block);
        let remote = self.remote()?;
        let block_len = page_up(block.0.len() as u64);
        let total = code.lib.span + PAGE + block_len + PAGE + STACK;
        let prot_rw = (k::PROT_READ | k::PROT_WRITE) as u64;
        let base = remote.checked("mmap", k::__NR_mmap, [0, total, prot_rw, (k::MAP_PRIVATE | k::MAP_ANONYMOUS) as u64, u64::MAX, 0])?;
        let stub_base = base + code.lib.span;
        let block_at = stub_base + PAGE;
        let guard = block_at + block_len;
        let stack_top = guard + PAGE + STACK;
        block.u32(offset_of!(AttachArgs, nexcluded), 1);
        block.u64s(offset_of!(AttachArgs, excluded), &[base, base + total]);
        let image = code.prepared.clone().at(base);
        let ret = stub_base + code.stub.ret;
        let laid = || -> Result<Regs, String> {
            // The mapping is fresh, all zeros: only the pages with something in them are
            // written (the library's bss alone is megabytes of zeros, which would cost pause
            // time).
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
            remote.write(stack_top - 8, &ret.to_le_bytes())?;
            let mut regs = remote.base_regs();
            regs[ureg::RIP] = base + code.entry;
            regs[ureg::RSP] = stack_top - 8;
            regs[ureg::RDI] = block_at;
            regs[ureg::RAX] = 0;
            Ok(regs)
        };
        let laid = laid();
        drop(remote);
        (self.base, self.total, self.lib_span, self.ret, self.block_at, self.block_len) = (base, total, code.lib.span, ret, block_at, block.0.len());
        self.state = State::Loaded;
        let regs = laid?;
        self.thread.set_regs(&regs).map_err(|e| io("ptrace could not set its registers", e))?;
        // The entry runs with the rounding and exception masks a new thread has, not the
        // program's; the program's own come back exactly with `put_back`.
        if !self.xstate.is_empty() {
            let mut x = self.xstate.clone();
            ckpt_image::frame::xsave_control_defaults(&mut x);
            self.thread.set_xstate(&x).map_err(|e| io("ptrace could not set its XSAVE area", e))?;
        }
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
    fn block(&self) -> Result<Vec<u8>, String> {
        let mut back = vec![0u8; self.block_len];
        self.remote()?.read(self.block_at, &mut back)?;
        Ok(back)
    }

    /// Reads `buf.len()` bytes of the block from field offset `at`, while the entry runs (what
    /// it has published): one read, as the polling loop asks for it often.
    pub fn peek(&self, at: usize, buf: &mut [u8]) -> Result<(), String> {
        std::os::unix::fs::FileExt::read_exact_at(&self.mem, buf, self.block_at + at as u64).map_err(|e| io("reading its memory", e))
    }

    /// Waits for the running entry until `deadline` (`None`: looks once): its return, or a
    /// crash (an error saying where, and what the code said first), or the process's end. A
    /// SIGSTOP meanwhile (the one signal its mask cannot hold back) is passed on: the process
    /// stops as asked, the leader rejoining that stop when ckpt detaches it, and the group
    /// stop it makes lets our call go on. Still `Running` when the deadline passed.
    pub fn wait(&mut self, deadline: Option<Instant>) -> Result<(), String> {
        let deadline = deadline.unwrap_or_else(Instant::now);
        while self.state == State::Running {
            match self.thread.wait(Some(deadline)).map_err(|e| io("waiting for it", e))? {
                Some(Stop::Signal(libc::SIGSTOP)) => self.thread.cont(libc::SIGSTOP).map_err(|e| io("ptrace could not run it", e))?,
                Some(Stop::Signal(sig)) => {
                    let after = self.thread.regs().map_err(|e| io("ptrace could not read its registers", e))?;
                    let rip = after[ureg::RIP];
                    if sig == libc::SIGTRAP && rip == self.ret + 1 {
                        self.state = State::Returned(after[ureg::RAX] as i64);
                        return Ok(());
                    }
                    // Stopped where it crashed: put back from there.
                    self.state = State::Halted;
                    let place = if (self.base..self.base + self.lib_span).contains(&rip) { format!("libckpt.so+{:#x}", rip - self.base) } else { format!("{rip:#x}") };
                    // The code may have said why first (a panic does: libckpt's `attached::panicked`).
                    let said = self.block().map(|b| Block::results(&b).message).unwrap_or_default();
                    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
                    return Err(format!("ckpt's checkpoint code crashed in it (signal {sig} at {place}{said})"));
                }
                // A group stop (SIGSTOP sent meanwhile): our call goes on.
                Some(Stop::Event) => self.thread.cont(0).map_err(|e| io("ptrace could not run it", e))?,
                Some(Stop::Gone(_)) => self.state = State::Gone,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Stops a running entry that took too long (waiting a bounded time for the stop).
    pub fn interrupt(&mut self) {
        if self.state == State::Running {
            let _ = self.thread.interrupt();
            match self.thread.wait(Some(Instant::now() + STOP_PATIENCE)) {
                Ok(Some(Stop::Gone(_))) => self.state = State::Gone,
                _ => self.state = State::Halted,
            }
        }
    }

    /// The results of a returned entry, with its report page (opened here, then its
    /// descriptor closed in the process). The block is in the program's memory, which any of
    /// its threads could have written: a descriptor that is not a report page is neither
    /// opened nor closed.
    pub fn results(&self) -> Result<(Results, Option<std::fs::File>), String> {
        let results = Block::results(&self.block()?);
        let mut report = None;
        if crate::report::is_page_fd(self.pid, results.report_fd) {
            report = std::fs::File::open(format!("/proc/{}/fd/{}", self.pid, results.report_fd)).ok();
            self.remote()?.syscall(k::__NR_close, [results.report_fd as u64, 0, 0, 0, 0, 0])?;
        }
        Ok((results, report))
    }

    /// Removes what was mapped, puts the leader back as it was stopped: its mask (the one
    /// outside the call it was in, which `PTRACE_GETSIGMASK` gave), its registers and XSAVE
    /// area; and lets it go. The kernel restarts an interrupted system call as after any other
    /// stop; a call that our stop cut short with `EINTR` instead of a restart code is made
    /// again, unless a signal the leader takes now is pending (the rule of
    /// `ckpt_sigsafe::interrupted`, looked at with the leader's mask in force again), so that
    /// the program never sees an `EINTR` it did not ask for. A process that ended needs
    /// nothing.
    pub fn put_back(self) -> Result<(), String> {
        if self.state == State::Gone {
            std::mem::forget(self.thread);
            return Ok(());
        }
        let unmapped = if self.state == State::Stopped { Ok(()) } else { self.remote().and_then(|r| r.checked("munmap", k::__NR_munmap, [self.base, self.total, 0, 0, 0, 0]).map(drop)) };
        let restored = (|| {
            self.thread.set_sigmask(self.mask)?;
            let regs = ckpt_sigsafe::interrupted::going_on(self.pid, self.pid, &self.saved).unwrap_or(self.saved);
            self.thread.set_regs(&regs)?;
            if !self.xstate.is_empty() {
                self.thread.set_xstate(&self.xstate)?;
            }
            Ok(())
        })()
        .map_err(|e| io("ptrace could not put its registers back", e));
        let detached = self.thread.detach(0).map_err(|e| io("ptrace could not let it go", e));
        unmapped.and(restored).and(detached)
    }

    /// Ends it (after the last checkpoint): SIGKILL, then let go.
    pub fn kill(self) {
        let _ = ckpt_sigsafe::sys::kill(self.pid, libc::SIGKILL as u32);
        drop(self.thread);
    }
}

/// Sends the leader to the abort handler of the rseq critical section it was stopped in, if
/// any, as the kernel would on its next return to its own code: it was preempted there, which
/// is what a section must abort on. (The kernel will not do it itself: the first code the leader
/// returns to is ckpt's, outside the section, which makes the kernel forget the section.) The
/// image then holds the leader at the abort handler too. A section the kernel would find
/// invalid is left alone.
fn abort_rseq_section(pid: u32, rseq: &linux_raw_sys::ptrace::ptrace_rseq_configuration, regs: &mut Regs) {
    use std::os::unix::fs::FileExt;
    // Stopped in a system call (which a section may not make): its restart is left as it is.
    if rseq.rseq_abi_pointer == 0 || regs[ureg::ORIG_RAX] != u64::MAX {
        return;
    }
    let Ok(mem) = std::fs::File::open(format!("/proc/{pid}/mem")) else { return };
    // The kernel's rule, in one place for this and libckpt's ckpt-seize.
    if let Some(abort) = ckpt_sigsafe::rseq::abort_ip(rseq.rseq_abi_pointer, rseq.signature, regs[ureg::RIP], |at, b| mem.read_exact_at(b, at).is_ok()) {
        regs[ureg::RIP] = abort;
    }
}
