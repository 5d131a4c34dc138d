//! `ckpt checkpoint PID` of a process tree started without libckpt (the PID and its
//! descendants): one image of the whole tree, taken at one moment by libckpt's own tree
//! protocol (`libckpt::checkpoint::tree`), run in processes that never loaded it.
//!
//! ```text
//!   ckpt                                       the processes
//!   lists the tree (/proc/P/task/T/children)
//!   refuses it if any process would be refused
//!   stops each leader (ptrace), lists again
//!   until no process is new, lays libckpt.so
//!   and a block into each
//!   starts the root's entry (FLAG_TREE_ROOT) ─▶ root: stops its threads, lists the tree,
//!                                               makes the control block, publishes it and
//!   watches the root's block ◀───────────────── each process it waits for in its block
//!   starts each published process's entry
//!   (FLAG_TREE_MEMBER, the root's PID and     ─▶ member: joins, stops its threads, parks;
//!   control block)                                then the tree protocol as when signalled
//!   waits until every entry returned
//!   puts each process back, lets each go
//! ```
//! A process that forks after ckpt listed the tree is found by the root, which publishes it:
//! ckpt attaches to it then (after the same refusals). Mixed trees (some processes run
//! libckpt.so, started with `ckpt run`) are refused for now.

use super::block::Block;
use super::process::{Code, Process, State, Thread};
use super::{Done, Failure, Request};
use crate::{EXIT_FAILED, EXIT_REFUSED};
use ckpt_sigsafe::attach::{AttachArgs, FLAG_TREE_MEMBER, FLAG_TREE_ROOT};
use std::mem::offset_of;
use std::time::{Duration, Instant};

/// How often the running entries are looked at.
const POLL: Duration = Duration::from_micros(200);

/// The children of process `pid` (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read(t.path().join("children")) {
            out.extend(ckpt_sigsafe::proctext::pid_list(&text));
        }
    }
    out
}

/// Whether process `pid` has ended (a zombie, or gone): such a process has nothing to attach
/// to; the root records a zombie with its status.
fn ended(pid: u32) -> bool {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    matches!(ckpt_sigsafe::proctext::stat_state(&stat), Some(b'Z' | b'X') | None)
}

/// The live descendants of `pid`, parents before children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut i = 0;
    let mut parent = pid;
    loop {
        for c in children(parent) {
            if !ended(c) && c != pid && !out.contains(&c) {
                out.push(c);
            }
        }
        let Some(&next) = out.get(i) else { return out };
        parent = next;
        i += 1;
    }
}

/// The PIDs process `pid` has, from ckpt's PID namespace inwards (`NSpid:`; ckpt's alone on
/// a kernel that does not say).
fn ns_pids(pid: u32) -> Vec<u32> {
    let status = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
    match ckpt_sigsafe::proctext::status_field(&status, b"NSpid:") {
        Some(v) => v.split(|c| c.is_ascii_whitespace()).filter_map(ckpt_sigsafe::proctext::parse_dec).map(|p| p as u32).collect(),
        None => vec![pid],
    }
}

/// The process of the tree of `root` that the root's entry names `seen`: it lists its tree in
/// its own PID namespace (a tree restored by myrestart has one of its own), `level` deep in
/// ckpt's. Those ckpt holds first, then the root's descendants (one forked meanwhile).
fn in_ckpt_ns(root: u32, level: usize, seen: u32, held: &Held) -> Option<u32> {
    let is = |p: u32| ns_pids(p).get(level) == Some(&seen);
    held.procs.iter().map(|p| p.pid).find(|&p| is(p)).or_else(|| descendants(root).into_iter().find(|&p| is(p)))
}

/// Whether process `pid` has descendants: `ckpt checkpoint` of it is a tree's.
pub fn has_descendants(pid: u32) -> bool {
    children(pid).into_iter().any(|c| !ended(c))
}

/// The refusals of a single process, for a process of the tree, and one more: a process of
/// the tree that runs libckpt.so (its root does not, or it would have been signalled).
fn refuse(root: u32, pid: u32) -> Result<(), Failure> {
    super::refuse::check(pid, pid).map_err(|(code, why)| (code, format!("{why} (it is in the tree of process {root})")))?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if maps.lines().any(|l| l.ends_with("/libckpt.so")) {
        return Err((EXIT_REFUSED, format!("process {pid} of the tree of process {root} runs libckpt.so (started with `ckpt run`) and process {root} does not: a tree of both kinds is not supported; checkpoint each part on its own, or start the whole tree with `ckpt run`")));
    }
    Ok(())
}

/// How a process of the tree other than its root is named in a message.
fn member(root: u32, pid: u32) -> String {
    format!("process {pid} of the tree of process {root}")
}

/// The tree's processes ckpt holds: the root first.
struct Held {
    procs: Vec<Process>,
}

impl Held {
    fn find(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.iter_mut().find(|p| p.pid == pid)
    }

    /// Attaches to process `pid` of the tree whose root the user named `asked` (the first one
    /// added is the root) and lays the code and its block into it.
    fn add(&mut self, asked: u32, pid: u32, code: &Code, block: Block) -> Result<(), Failure> {
        let root = self.procs.is_empty();
        let who = if root { format!("process {asked}") } else { member(asked, pid) };
        // ptrace forbidden to ckpt is a refusal, as for a single process.
        let thread = Thread::seize(pid as i32).map_err(|e| match root {
            true => super::refuse::seize_failed(asked, &e),
            false => {
                let (code, why) = super::refuse::seize_failed(pid, &e);
                (code, format!("{why} (it is in the tree of process {asked})"))
            }
        })?;
        let fail = |why: String| (EXIT_FAILED, format!("{who}: {why}"));
        let p = Process::attach(pid, thread).map_err(fail)?;
        self.procs.push(p);
        let p = self.procs.last_mut().expect("just pushed");
        p.load(code, block).map_err(fail)
    }

    /// Puts every process back and lets it go; the first failure.
    fn put_back(self) -> Result<(), Failure> {
        let mut first = Ok(());
        for p in self.procs {
            let pid = p.pid;
            if let Err(why) = p.put_back() {
                if first.is_ok() {
                    first = Err((EXIT_FAILED, format!("process {pid}: {why}")));
                }
            }
        }
        first
    }
}

/// Attaches to process `pid` and every process below it, runs the tree's checkpoint in them,
/// and lets them all go (or, with `req.kill`, ends them once the image is written).
pub fn run(asked: u32, pid: u32, req: &Request) -> Result<Done, Failure> {
    super::refuse::check(asked, pid)?;
    let members = descendants(pid);
    // `ckpt checkpoint $$` from a shell: ckpt would have to stop itself.
    if members.contains(&std::process::id()) {
        return Err((EXIT_REFUSED, format!("this ckpt is itself in the tree of process {asked} (one of its descendants), and cannot stop itself: run it from outside that tree")));
    }
    for m in members {
        refuse(asked, m)?;
    }
    let code = Code::prepare(&req.entry)?;
    let root_block = super::request_block(req, FLAG_TREE_ROOT)?;
    // As for a single process: Ctrl-C of ckpt must not let the processes go with our code in
    // them.
    let deferred = crate::os::SignalSet::of([libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE]);
    deferred.block();
    let mut held = Held { procs: Vec::new() };
    let stopped_at = Instant::now();
    let outcome = gather(asked, pid, req, &code, root_block, &mut held).and_then(|()| call(asked, req, &code, &mut held));
    let ok = outcome.as_ref().is_ok_and(|(r, _)| r.status == 0);
    let done = if req.kill && ok {
        // The last checkpoint is written: nothing of the tree runs past its image.
        for p in held.procs {
            if p.state != State::Gone {
                p.kill();
            }
        }
        let (results, report) = outcome?;
        Ok(Done { returned: results.status, results, report, pause: stopped_at.elapsed(), killed: true })
    } else {
        let back = held.put_back();
        let pause = stopped_at.elapsed();
        outcome.and_then(|(results, report)| {
            back?;
            Ok(Done { returned: results.status, results, report, pause, killed: false })
        })
    };
    deferred.unblock();
    done
}

/// Stops the root and every process below it, listing the tree again once they are stopped
/// until no process is new (one may fork meanwhile), and lays the code into each.
fn gather(asked: u32, pid: u32, req: &Request, code: &Code, root_block: Block, held: &mut Held) -> Result<(), Failure> {
    held.add(asked, pid, code, root_block)?;
    loop {
        let mut new = 0;
        for m in descendants(pid) {
            if held.find(m).is_none() {
                refuse(asked, m)?;
                match held.add(asked, m, code, super::request_block(req, FLAG_TREE_MEMBER)?) {
                    Ok(()) => new += 1,
                    // It ended meanwhile: the root records it as it finds it (a zombie).
                    Err(_) if ended(m) => {}
                    Err(f) => return Err(f),
                }
            }
        }
        if new == 0 {
            return Ok(());
        }
    }
}

/// Starts process `m`'s entry (as the root names it, in its PID namespace) as a member of the
/// tree of `root`, whose control block is the root's descriptor `ctl_fd`; attaches to it first
/// if it was forked after the tree was listed.
fn start_member(asked: u32, root: u32, m: u32, ctl_fd: i32, req: &Request, code: &Code, held: &mut Held) -> Result<(), Failure> {
    let level = ns_pids(root).len().saturating_sub(1);
    let m = in_ckpt_ns(root, level, m, held).ok_or_else(|| (EXIT_FAILED, format!("process {m} (as process {asked} sees it) of the tree of process {asked}: not found below it")))?;
    if held.find(m).is_none() {
        refuse(asked, m)?;
        held.add(asked, m, code, super::request_block(req, FLAG_TREE_MEMBER)?)?;
    }
    let fail = |why: String| (EXIT_FAILED, format!("{}: {why}", member(asked, m)));
    let p = held.find(m).ok_or_else(|| fail("ckpt lost it".into()))?;
    // The root as its members see it (in its PID namespace, where it lists them).
    let root_there = ns_pids(root).last().copied().unwrap_or(root);
    p.put(offset_of!(AttachArgs, tree_root), &root_there.to_ne_bytes()).map_err(fail)?;
    p.put(offset_of!(AttachArgs, tree_ctl_fd), &ctl_fd.to_ne_bytes()).map_err(fail)?;
    p.start().map_err(fail)
}

/// Runs the root's entry, starts each process it publishes as a member, and waits until every
/// entry started has returned. The root's results, with its report page.
fn call(asked: u32, req: &Request, code: &Code, held: &mut Held) -> Result<(super::Results, Option<std::fs::File>), Failure> {
    let root = held.procs[0].pid;
    let fail = |pid: u32, why: String| (EXIT_FAILED, if pid == root { format!("process {asked}: {why}") } else { format!("{}: {why}", member(asked, pid)) });
    held.procs[0].start().map_err(|w| fail(root, w))?;
    let deadline = Instant::now() + req.timeout;
    let mut started = 0usize;
    // The first thing that went wrong. Once the root's entry runs, every entry started is let
    // finish before anything is put back (a process whose entry stops half-way would keep its
    // threads seized): a process ckpt could not start makes the root's wait for it fail, and
    // the tree goes on.
    let mut failed: Option<Failure> = None;
    loop {
        // What the root published: its control block, then each process it waits for.
        if matches!(held.procs[0].state, State::Running) {
            // The tree fields, the last of the block.
            let from = offset_of!(AttachArgs, tree_ctl_fd);
            let mut b = vec![0u8; size_of::<AttachArgs>() - from];
            match held.procs[0].peek(from, &mut b) {
                Ok(()) => {
                    let word = |at: usize| u32::from_ne_bytes(b[at - from..at - from + 4].try_into().unwrap());
                    let ctl_fd = word(offset_of!(AttachArgs, tree_ctl_fd)) as i32;
                    let count = (word(offset_of!(AttachArgs, tree_count)) as usize).min(ckpt_sigsafe::attach::MAX_TREE);
                    while started < count {
                        let m = word(offset_of!(AttachArgs, tree_pids) + 4 * started);
                        if m == 0 {
                            // Its count came before its PID in our copy: the next look has both.
                            break;
                        }
                        started += 1;
                        if let Err(f) = start_member(asked, root, m, ctl_fd, req, code, held) {
                            failed.get_or_insert(f);
                        }
                    }
                }
                Err(why) => {
                    failed.get_or_insert(fail(root, why));
                }
            }
        }
        for p in held.procs.iter_mut() {
            if let Err(why) = p.wait(None) {
                failed.get_or_insert(fail(p.pid, format!("{why}; the tree was put back as it was and goes on")));
            }
        }
        if !held.procs.iter().any(|p| p.state == State::Running) {
            break;
        }
        if Instant::now() > deadline {
            for p in held.procs.iter_mut() {
                p.interrupt();
            }
            return Err((EXIT_FAILED, format!("ckpt's checkpoint code did not return within {} s in the tree of process {asked}; it was stopped, put back as it was and goes on", req.timeout.as_secs_f64())));
        }
        std::thread::sleep(POLL);
    }
    if let Some(f) = failed {
        return Err(f);
    }
    match held.procs[0].state {
        State::Returned(_) => {}
        _ => return Err((EXIT_FAILED, format!("process {asked} ended while ckpt's checkpoint code ran in it"))),
    }
    let (mut results, report) = held.procs[0].results().map_err(|w| fail(root, w))?;
    // Each member's report page descriptor is closed in it; a member's reason is added where
    // the root only knows that one failed.
    let mut told = results.status == 0;
    for p in held.procs[1..].iter() {
        if matches!(p.state, State::Returned(_)) {
            let (r, _) = p.results().map_err(|w| fail(p.pid, w))?;
            if !told && r.status != 0 && !r.message.is_empty() {
                // The root's own line (on its stderr) only names the process that failed.
                results.message = match results.message.as_str() {
                    "" | "see the program's stderr" => format!("process {} of the tree: {}", p.pid, r.message),
                    root => format!("{root} (process {}: {})", p.pid, r.message),
                };
                told = true;
            }
        }
    }
    Ok((results, report))
}
