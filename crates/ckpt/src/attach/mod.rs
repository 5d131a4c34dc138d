//! `ckpt checkpoint PID` for a process that does not run libckpt: `ckpt` attaches to it with
//! ptrace, maps a copy of libckpt.so's code into it for the duration, and runs the library's
//! attached-checkpoint entry on its stopped leader thread; the entry writes the image as
//! libckpt's signal handler would (a forked copy-on-write writer), and `ckpt` then puts the
//! leader back exactly as it was, removes everything it mapped, and lets the process go.
//!
//! - [`refuse`]: the processes it will not touch, decided before touching them;
//! - [`ptrace`]: the requests on the leader thread;
//! - [`inject`]: system calls run on the stopped leader, and its memory;
//! - [`load`]: libckpt.so laid out and relocated for the address it gets;
//! - [`stub`]: the routines its imports are pointed at, and the `int3` the entry returns to;
//! - [`block`]: the `ckpt_sigsafe::attach::AttachArgs` block, as bytes;
//! - [`tree`]: a process and its descendants as one tree (their steps, one process's each,
//!   in [`process`]).
//!
//! The leader is stopped from `PTRACE_INTERRUPT` to `PTRACE_DETACH` (the pause this module
//! measures); the other threads are the entry's to stop and capture.

mod block;
mod inject;
mod load;
// The steps on one process, apart, for a tree's driver (`tree`).
mod process;
// unsafe: ptrace(2), waitpid(2): the requests pass our buffers by address.
#[allow(unsafe_code)]
mod ptrace;
pub mod refuse;
// unsafe: the stub's bytes are read from this binary's own code, between two labels.
#[allow(unsafe_code)]
mod stub;
mod tree;

use crate::{EXIT_FAILED, EXIT_REFUSED};
use block::Block;
pub use block::{Results, NOT_TAKEN};
use ckpt_image::frame::ureg;
use ckpt_sigsafe::attach::AttachArgs;
use inject::Remote;
use linux_raw_sys::general as k;
use load::{page_up, Library, PAGE};
use ptrace::{Stop, Thread};
use std::mem::offset_of;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The stack the entry runs on (the program's own is left alone: it may be small).
const STACK: u64 = 256 * 1024;
/// How long the leader has to stop once interrupted.
const STOP_PATIENCE: Duration = Duration::from_secs(2);

/// What to ask of the entry.
pub struct Request {
    /// The exported function to call: `ckpt_sigsafe::attach::ENTRY`, or the tests' probe.
    pub entry: String,
    /// Absolute image path.
    pub image: PathBuf,
    pub key: Option<PathBuf>,
    pub keep: u32,
    /// `ckpt_sigsafe::attach::FLAG_*`.
    pub flags: u32,
    /// How long the entry may run.
    pub timeout: Duration,
    /// Kill the process (SIGKILL) instead of letting it go, once the entry succeeded.
    pub kill: bool,
}

/// What came of it.
pub struct Done {
    /// The entry's return value.
    pub returned: i64,
    pub results: Results,
    /// The report page the entry named, opened before its descriptor was closed in the process.
    pub report: Option<std::fs::File>,
    /// How long the leader was stopped.
    pub pause: Duration,
    /// The process was killed, as asked.
    pub killed: bool,
}

type Failure = (u8, String);

/// Attaches to process `pid` (`asked` is what the user named), runs the entry, lets it go.
pub fn run(asked: u32, pid: u32, req: &Request) -> Result<Done, Failure> {
    // A process with descendants: the whole tree, at one moment, into one image.
    if req.entry.as_bytes() == ckpt_sigsafe::attach::ENTRY.to_bytes() && tree::has_descendants(pid) {
        return tree::run(asked, pid, req);
    }
    refuse::check(asked, pid)?;
    // Ctrl-C (or a kill) of ckpt while the leader runs our code with our registers would let
    // it go that way when the kernel detaches it: such signals wait until it is put back.
    let deferred = crate::os::SignalSet::of([libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE]);
    deferred.block();
    let done = attach_and_call(asked, pid, req);
    deferred.unblock();
    done
}

fn attach_and_call(asked: u32, pid: u32, req: &Request) -> Result<Done, Failure> {
    let path = crate::locate::libckpt()?;
    let lib = std::fs::read(&path).map_err(|e| (EXIT_FAILED, format!("{}: {}", crate::shown(&path), crate::io_message(&e))))?;
    let lib = Library::parse(lib).map_err(|why| (EXIT_FAILED, format!("{}: {why}", crate::shown(&path))))?;
    let stub = stub::Stub::new();
    let prepared = lib.prepare(&stub).map_err(|why| (EXIT_FAILED, format!("{}: {why}", crate::shown(&path))))?;
    // Done before the process is stopped: which pages are worth writing.
    let runs = prepared.written_pages();
    let entry = lib.symbol(&req.entry).ok_or_else(|| (EXIT_FAILED, format!("{} has no {} (it is older than this ckpt)", crate::shown(&path), req.entry)))?;
    let mut block = Block::new(req.flags);
    block.put_str(offset_of!(AttachArgs, image), ckpt_sigsafe::attach::PATH_MAX, req.image.as_os_str().as_encoded_bytes()).map_err(|w| (EXIT_REFUSED, w))?;
    if let Some(key) = &req.key {
        block.put_str(offset_of!(AttachArgs, key_path), ckpt_sigsafe::attach::PATH_MAX, key.as_os_str().as_encoded_bytes()).map_err(|w| (EXIT_REFUSED, w))?;
    }
    block.u32(offset_of!(AttachArgs, keep), req.keep);

    let thread = Thread::seize(pid as i32).map_err(|e| refuse::seize_failed(asked, &e))?;
    let failed = |what: &str, e: std::io::Error| (EXIT_FAILED, format!("process {asked}: {what}: {}", crate::io_message(&e)));
    let stopped_at = Instant::now();
    thread.interrupt().map_err(|e| failed("ptrace could not interrupt it", e))?;
    let deadline = stopped_at + STOP_PATIENCE;
    loop {
        match thread.wait(Some(deadline)).map_err(|e| failed("waiting for it to stop", e))? {
            Some(Stop::Event) => break,
            // A signal it was about to take on the way: it takes it, and stops after.
            Some(Stop::Signal(s)) => thread.cont(s).map_err(|e| failed("ptrace", e))?,
            Some(Stop::Gone(_)) => return Err((EXIT_FAILED, format!("process {asked} ended as ckpt attached to it"))),
            None => {
                let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
                let why = if ckpt_sigsafe::proctext::stat_state(&stat) == Some(b'D') { " (it waits in the kernel where no signal reaches it, as a vfork parent waits for its child)" } else { "" };
                return Err((EXIT_FAILED, format!("process {asked} did not stop for ptrace within {} s{why}; it was left as it was: try again once it runs", STOP_PATIENCE.as_secs())));
            }
        }
    }
    let mut saved = thread.regs().map_err(|e| failed("ptrace could not read its registers", e))?;
    let mut xstate = vec![0u8; ckpt_sigsafe::attach::XSTATE_MAX];
    let xlen = thread.xstate(&mut xstate).map_err(|e| failed("ptrace could not read its XSAVE area", e))?;
    xstate.truncate(xlen);
    let mask = thread.sigmask().map_err(|e| failed("ptrace could not read its signal mask", e))?;
    // A kernel without rseq reporting (before 5.13), or a thread without rseq: none.
    let rseq = thread.rseq().ok();
    if let Some(r) = &rseq {
        abort_rseq_section(pid, r, &mut saved);
    }

    block.u64s(offset_of!(AttachArgs, regs), &as_imaged(pid, &saved));
    block.u32(offset_of!(AttachArgs, xstate_len), xlen as u32);
    block.put(offset_of!(AttachArgs, xstate), &xstate);
    block.u64s(offset_of!(AttachArgs, sigmask), &[mask]);
    if let Some(r) = rseq {
        block.u64s(offset_of!(AttachArgs, rseq_abi), &[r.rseq_abi_pointer]);
        block.u32(offset_of!(AttachArgs, rseq_len), r.rseq_abi_size);
        block.u32(offset_of!(AttachArgs, rseq_sig), r.signature);
        block.u32(offset_of!(AttachArgs, rseq_flags), r.flags);
    }

    // Every signal waits while our code runs on the leader: a handler of the program's must not
    // run on our stack, in the middle of our call.
    let outcome = thread.set_sigmask(!0).map_err(|e| failed("ptrace could not set its signal mask", e)).and_then(|()| {
        let remote = Remote::new(pid, &thread, saved).map_err(|why| (EXIT_FAILED, format!("process {asked}: {why}")))?;
        call(asked, pid, &remote, (&lib, prepared, &runs, &stub), entry, block, req)
    });
    let ok = outcome.as_ref().is_ok_and(|d| d.1.status == 0);
    if req.kill && ok {
        // The last checkpoint is written: the process ends here, never running past its image.
        let _ = ckpt_sigsafe::sys::kill(pid, libc::SIGKILL as u32);
        let pause = stopped_at.elapsed();
        drop(thread);
        let (returned, results, report) = outcome?;
        return Ok(Done { returned, results, report, pause, killed: true });
    }
    let restored = put_back(&thread, pid, &saved, &xstate, mask).map_err(|e| failed("ptrace could not put its registers back", e));
    let detached = thread.detach(0).map_err(|e| failed("ptrace could not let it go", e));
    let pause = stopped_at.elapsed();
    let (returned, results, report) = outcome?;
    restored?;
    detached?;
    Ok(Done { returned, results, report, pause, killed: false })
}

/// The leader's registers as its image records them: a call our stop cut short with `EINTR`
/// (not a restart code) made again, as when it is let go ([`put_back`]).
fn as_imaged(pid: u32, saved: &ptrace::Regs) -> ptrace::Regs {
    ckpt_sigsafe::interrupted::going_on(pid, pid, saved).unwrap_or(*saved)
}

/// Puts the leader back as it was stopped: its mask (the one outside the call it was in, which
/// `PTRACE_GETSIGMASK` gave), its registers and XSAVE area. The kernel restarts an interrupted
/// system call as after any other stop; a call that our stop cut short with `EINTR` instead of
/// a restart code is made again, unless a signal the leader takes now is pending (the rule of
/// `ckpt_sigsafe::interrupted`, looked at with the leader's mask in force again), so that the
/// program never sees an `EINTR` it did not ask for.
fn put_back(thread: &Thread, pid: u32, saved: &ptrace::Regs, xstate: &[u8], mask: u64) -> std::io::Result<()> {
    thread.set_sigmask(mask)?;
    let regs = ckpt_sigsafe::interrupted::going_on(pid, pid, saved).unwrap_or(*saved);
    thread.set_regs(&regs)?;
    if !xstate.is_empty() {
        thread.set_xstate(xstate)?;
    }
    Ok(())
}

/// Maps the library, its stub, the block and a stack into the stopped process, runs the
/// entry, reads the results, and unmaps it all again (whatever happened in between).
fn call(asked: u32, pid: u32, remote: &Remote, (lib, prepared, runs, stub): (&Library, load::Prepared, &[(u64, u64)], &stub::Stub), entry: u64, block: Block, req: &Request) -> Result<(i64, Results, Option<std::fs::File>), Failure> {
    let fail = |why: String| (EXIT_FAILED, format!("process {asked}: {why}"));
    let block_len = page_up(block.0.len() as u64);
    // The library, the stub page, the block, a guard page, the stack: one mapping.
    let total = lib.span + PAGE + block_len + PAGE + STACK;
    let prot_rw = (k::PROT_READ | k::PROT_WRITE) as u64;
    let base = remote.checked("mmap", k::__NR_mmap, [0, total, prot_rw, (k::MAP_PRIVATE | k::MAP_ANONYMOUS) as u64, u64::MAX, 0]).map_err(fail)?;
    let stub_base = base + lib.span;
    let block_at = stub_base + PAGE;
    let guard = block_at + block_len;
    let stack_top = guard + PAGE + STACK;

    let inside = |mut block: Block| -> Result<(i64, Results, Option<std::fs::File>), Failure> {
        let image = prepared.at(base);
        block.u32(offset_of!(AttachArgs, nexcluded), 1);
        block.u64s(offset_of!(AttachArgs, excluded), &[base, base + total]);
        // The mapping is fresh, all zeros: only the pages with something in them are written
        // (the library's bss alone is megabytes of zeros, which would cost pause time).
        for &(off, len) in runs {
            remote.write(base + off, &image[off as usize..(off + len) as usize]).map_err(fail)?;
        }
        remote.write(stub_base, &stub.bytes).map_err(fail)?;
        remote.write(block_at, &block.0).map_err(fail)?;
        for (off, len, prot) in lib.protections() {
            if prot as u64 != prot_rw {
                remote.checked("mprotect", k::__NR_mprotect, [base + off, len, prot as u64, 0, 0, 0]).map_err(fail)?;
            }
        }
        remote.checked("mprotect", k::__NR_mprotect, [stub_base, PAGE, (k::PROT_READ | k::PROT_EXEC) as u64, 0, 0, 0]).map_err(fail)?;
        remote.checked("mprotect", k::__NR_mprotect, [guard, PAGE, k::PROT_NONE as u64, 0, 0, 0]).map_err(fail)?;

        // The call: the entry's address, the block as its argument, a return address (the
        // stub's int3) on a stack aligned as at any call.
        let ret = stub_base + stub.ret;
        let sp = stack_top - 8;
        remote.write(sp, &ret.to_le_bytes()).map_err(fail)?;
        let mut regs = remote.base_regs();
        regs[ureg::RIP] = base + entry;
        regs[ureg::RSP] = sp;
        regs[ureg::RDI] = block_at;
        regs[ureg::RAX] = 0;
        let t = remote.thread;
        let io = |what: &str, e: std::io::Error| fail(format!("{what}: {}", crate::io_message(&e)));
        t.set_regs(&regs).map_err(|e| io("ptrace could not set its registers", e))?;
        t.cont(0).map_err(|e| io("ptrace could not run it", e))?;
        let deadline = Instant::now() + req.timeout;
        let returned = loop {
            match t.wait(Some(deadline)).map_err(|e| io("waiting for it", e))? {
                // SIGSTOP, the one signal its mask cannot hold back: passed on (the process
                // stops as asked; the leader rejoins that stop when ckpt detaches), and the
                // group stop it makes is the next arm's.
                Some(Stop::Signal(libc::SIGSTOP)) => t.cont(libc::SIGSTOP).map_err(|e| io("ptrace could not run it", e))?,
                Some(Stop::Signal(sig)) => {
                    let after = t.regs().map_err(|e| io("ptrace could not read its registers", e))?;
                    let rip = after[ureg::RIP];
                    if sig == libc::SIGTRAP && rip == ret + 1 {
                        break after[ureg::RAX] as i64;
                    }
                    let place = if (base..base + lib.span).contains(&rip) { format!("libckpt.so+{:#x}", rip - base) } else { format!("{rip:#x}") };
                    // The code may have said why first (a panic does: libckpt's `attached::panicked`).
                    let mut back = vec![0u8; block.0.len()];
                    let said = remote.read(block_at, &mut back).map(|()| Block::results(&back).message).unwrap_or_default();
                    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
                    return Err(fail(format!("ckpt's checkpoint code crashed in it (signal {sig} at {place}{said}); it was put back as it was and goes on")));
                }
                // A group stop (SIGSTOP sent meanwhile): our call goes on.
                Some(Stop::Event) => t.cont(0).map_err(|e| io("ptrace could not run it", e))?,
                Some(Stop::Gone(_)) => return Err(fail("it ended while ckpt's checkpoint code ran in it".into())),
                None => {
                    let _ = t.interrupt();
                    let _ = t.wait(Some(Instant::now() + STOP_PATIENCE));
                    return Err(fail(format!("ckpt's checkpoint code did not return within {} s; it was stopped, put back as it was and goes on (a longer --timeout may let it finish)", req.timeout.as_secs_f64())));
                }
            }
        };
        let mut back = vec![0u8; block.0.len()];
        remote.read(block_at, &mut back).map_err(fail)?;
        let results = Block::results(&back);
        // The report page is opened here before its descriptor in the process is closed. The
        // block is in the program's memory, which any of its threads could have written: a
        // descriptor that is not a report page is neither opened nor closed.
        let mut report = None;
        if crate::report::is_page_fd(pid, results.report_fd) {
            report = std::fs::File::open(format!("/proc/{pid}/fd/{}", results.report_fd)).ok();
            remote.syscall(k::__NR_close, [results.report_fd as u64, 0, 0, 0, 0, 0]).map_err(fail)?;
        }
        Ok((returned, results, report))
    };
    let outcome = inside(block);
    let unmapped = remote.checked("munmap", k::__NR_munmap, [base, total, 0, 0, 0, 0]).map_err(fail);
    let outcome = outcome?;
    unmapped?;
    Ok(outcome)
}

/// Sends the leader to the abort handler of the rseq critical section it was stopped in, if
/// any, as the kernel would on its next return to its own code: it was preempted there, which
/// is what a section must abort on. (The kernel will not do it itself: the first code the leader
/// returns to is ckpt's, outside the section, which makes the kernel forget the section.) The
/// image then holds the leader at the abort handler too. A section the kernel would find
/// invalid is left alone.
fn abort_rseq_section(pid: u32, rseq: &linux_raw_sys::ptrace::ptrace_rseq_configuration, regs: &mut ptrace::Regs) {
    use std::os::unix::fs::FileExt;
    // Stopped in a system call (which a section may not make): its restart is left as it is.
    if rseq.rseq_abi_pointer == 0 || regs[ureg::ORIG_RAX] != u64::MAX {
        return;
    }
    let Ok(mem) = std::fs::File::open(format!("/proc/{pid}/mem")) else { return };
    let word = |at: u64| {
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, at).ok().map(|()| u64::from_le_bytes(b))
    };
    // `struct rseq`'s `rseq_cs` field (after two u32s), and the `struct rseq_cs` it points to
    // (version and flags, start_ip, post_commit_offset, abort_ip): the kernel's ABI, which
    // linux-raw-sys does not describe.
    let Some(cs) = word(rseq.rseq_abi_pointer + 8).filter(|&a| a != 0) else { return };
    let (Some(head), Some(start), Some(len), Some(abort)) = (word(cs), word(cs + 8), word(cs + 16), word(cs + 24)) else { return };
    let rip = regs[ureg::RIP];
    let inside = rip >= start && rip - start < len;
    let version = head as u32;
    let signed = abort >= 4 && {
        let mut sig = [0u8; 4];
        mem.read_exact_at(&mut sig, abort - 4).is_ok() && u32::from_le_bytes(sig) == rseq.signature
    };
    if inside && version == 0 && signed && !(abort >= start && abort - start < len) {
        regs[ureg::RIP] = abort;
    }
}
