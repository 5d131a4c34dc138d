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
//! - [`process`]: the steps on one process (stop its leader, load, start the entry, wait,
//!   read the results, put back, let go), which both drivers use: a single process's (here,
//!   a tree of one) and [`tree`]'s (a process and its descendants as one tree).
//!
//! The leader is stopped from `PTRACE_INTERRUPT` to `PTRACE_DETACH` (the pause this module
//! measures); the other threads are the entry's to stop and capture.

mod block;
mod inject;
mod load;
// The steps on one process, for both drivers (a single process's here, a tree's in `tree`).
mod process;
// unsafe: ptrace(2), waitpid(2): the requests pass our buffers by address.
#[allow(unsafe_code)]
mod ptrace;
pub mod refuse;
// unsafe: the stub's bytes are read from this binary's own code, between two labels.
#[allow(unsafe_code)]
mod stub;
mod tree;
pub use tree::descendants;

use crate::{EXIT_FAILED, EXIT_REFUSED};
use block::Block;
pub use block::{Results, NOT_TAKEN};
use ckpt_sigsafe::attach::AttachArgs;
use process::{Code, Process, State, Thread};
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

/// The single process's driver, a tree of one: the steps are [`process::Process`]'s, as for
/// each process of a tree.
fn attach_and_call(asked: u32, pid: u32, req: &Request) -> Result<Done, Failure> {
    let code = Code::prepare(&req.entry)?;
    let block = request_block(req, 0)?;

    let thread = Thread::seize(pid as i32).map_err(|e| refuse::seize_failed(asked, &e))?;
    let fail = |why: String| (EXIT_FAILED, format!("process {asked}: {why}"));
    let mut p = Process::attach(pid, thread).map_err(fail)?;
    let outcome = call(&mut p, &code, block, req).map_err(fail);
    let ok = outcome.as_ref().is_ok_and(|d| d.1.status == 0);
    if req.kill && ok {
        // The last checkpoint is written: the process ends here, never running past its image.
        let pause = p.stopped_at.elapsed();
        p.kill();
        let (returned, results, report) = outcome?;
        return Ok(Done { returned, results, report, pause, killed: true });
    }
    let stopped_at = p.stopped_at;
    let back = p.put_back().map_err(fail);
    let pause = stopped_at.elapsed();
    let (returned, results, report) = outcome?;
    back?;
    Ok(Done { returned, results, report, pause, killed: false })
}

/// The block a process gets for `req` (its leader's state is added as it is loaded), with the
/// tree `role` flags (`ckpt_sigsafe::attach::FLAG_TREE_*`, none for a single process).
fn request_block(req: &Request, role: u32) -> Result<Block, Failure> {
    let mut block = Block::new(req.flags | role);
    block.put_str(offset_of!(AttachArgs, image), ckpt_sigsafe::attach::PATH_MAX, req.image.as_os_str().as_encoded_bytes()).map_err(|w| (EXIT_REFUSED, w))?;
    if let Some(key) = &req.key {
        block.put_str(offset_of!(AttachArgs, key_path), ckpt_sigsafe::attach::PATH_MAX, key.as_os_str().as_encoded_bytes()).map_err(|w| (EXIT_REFUSED, w))?;
    }
    block.u32(offset_of!(AttachArgs, keep), req.keep);
    Ok(block)
}

/// Lays the code into the stopped process, runs the entry until it returns (or crashes, or
/// its time is up), and reads its results.
fn call(p: &mut Process, code: &Code, block: Block, req: &Request) -> Result<(i64, Results, Option<std::fs::File>), String> {
    p.load(code, block)?;
    p.start()?;
    p.wait(Some(Instant::now() + req.timeout)).map_err(|why| format!("{why}; it was put back as it was and goes on"))?;
    match p.state {
        State::Returned(returned) => {
            let (results, report) = p.results()?;
            Ok((returned, results, report))
        }
        State::Gone => Err("it ended while ckpt's checkpoint code ran in it".into()),
        _ => {
            p.interrupt();
            Err(format!("ckpt's checkpoint code did not return within {} s; it was stopped, put back as it was and goes on (a longer --timeout may let it finish)", req.timeout.as_secs_f64()))
        }
    }
}
