//! A process tree comes back: below the root (which `ids` created with its PID), each process
//! is created by its parent with its own PID, joins its session and process group, and makes
//! the plan for its own part of the image. A zombie is created and exits at once with its
//! status, so that its parent's `wait()` finds it. Every process then restores itself; none
//! goes on until all are restored (the barrier that init holds).
//!
//! ```text
//!   init ─ root (PID r)            the shared objects (pipes, shared memory) made before any
//!            ├─ child (PID c)      process, so every process inherits them
//!            │    └─ grandchild
//!            └─ zombie (PID z)     exits with its saved status at once
//! ```
//!
//! # Restrictions
//! Runs before the point of no return in myrestart (and the barrier after it): no allocation,
//! raw system calls only.

use crate::args::Options;
use crate::plan::Plan;
use crate::refusal::Refusal;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::{say, sys};
use linux_raw_sys::general as k;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

pub use crate::plan::{BARRIERS, CHANGED, PLANNED, REPLACED, RESTORED};

/// The processes that take part in the barrier: every live one of the tree.
pub fn live_count(p: &Plan) -> usize {
    p.tree[..p.ntree].iter().filter(|t| !t.rec.is_zombie()).count()
}

/// In the root's process: creates every other process of the tree. Returns in each live one
/// (the root included), its plan made and its part checked (`Err`: refused, with the line
/// that says why).
pub fn spawn(p: &mut Plan, opts: &Options) -> Result<(), Refusal> {
    if p.ntree == 0 {
        return Ok(());
    }
    join_session_and_group(p, 0, opts.foreground);
    let mut me = 0usize;
    'parent: loop {
        let pid = p.tree[me].rec.pid;
        for j in me + 1..p.ntree {
            let rec = p.tree[j].rec;
            if rec.ppid != pid {
                continue;
            }
            match sys::fork_with_pid(rec.pid) {
                Ok(0) => {
                    me = j;
                    join_session_and_group(p, j, opts.foreground);
                    if rec.is_zombie() {
                        exit_as(rec.wait_status);
                    }
                    continue 'parent;
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Refusal::new(format_args!("cannot create process {} of the tree with its PID: {}", rec.pid, describe(e))));
                }
            }
        }
        break;
    }
    crate::planner::become_member(opts, p, me)
}

/// Session and process group of member `i`, as they were where they can be. The job a shell
/// started is the restart's job: the root's process group if the root led it (and, with
/// `--foreground`, its session if it led one) is myrestart's, which every process of it
/// inherits, so that the terminal's Ctrl-C and Ctrl-Z reach them. Other sessions and groups
/// led by a process of the tree are made again; one led from outside the tree is the
/// restart's too.
fn join_session_and_group(p: &Plan, i: usize, foreground: bool) {
    let root = p.tree[0].rec;
    let rec = p.tree[i].rec;
    let root_session = root.sid == root.pid && !foreground;
    let job_group = root.pgid == root.pid && !root_session;
    let leader_in_tree = |id: u32| id != 0 && p.tree[..p.ntree].iter().any(|t| t.rec.pid == id);
    if rec.sid == rec.pid && (i > 0 || root_session) {
        if let Err(e) = rustix::process::setsid() {
            say!("myrestart: process {} cannot lead its session again: {}", rec.pid, describe(e));
        }
    } else if job_group && rec.pgid == root.pid {
        // In the job: where fork put it.
    } else if rec.pgid == rec.pid || leader_in_tree(rec.pgid) {
        let pgid = if rec.pgid == rec.pid { 0 } else { rec.pgid };
        if let Err(e) = setpgid(pgid) {
            say!("myrestart: process {} cannot join its process group {} again: {}", rec.pid, rec.pgid, describe(e));
        }
    }
    crate::pty::take_terminal(p, rec.pid, rec.sid);
}

fn setpgid(pgid: u32) -> Result<(), Errno> {
    rustix::process::setpgid(None, rustix::process::Pid::from_raw(pgid as i32))
}

/// Ends this process as the zombie ended: exit code or signal (the default action of which
/// ends it, whatever it was before).
fn exit_as(status: u32) -> ! {
    let sig = status & 0x7f;
    if sig == 0 {
        sys::exit_group(((status >> 8) & 0xff) as i32)
    }
    let _ = rustix::process::set_parent_process_death_signal(None);
    // SAFETY: only this process's own disposition and mask change, just before it ends.
    unsafe {
        let _ = sys::rt_sigaction(sig, Some(&[0; 4]), None);
    }
    let _ = sys::rt_sigprocmask(k::SIG_SETMASK as usize, !(1u64 << (sig - 1)));
    let _ = sys::kill(rustix::process::getpid().as_raw_nonzero().get() as u32, sig);
    sys::exit_group(128 + sig as i32)
}

/// Says this process has reached barrier `stage` (see [`PLANNED`]) and waits until init says
/// every process has. A process whose init is gone ends: before its point of no return (any
/// barrier but [`RESTORED`]), having taken back its changes outside (another process could not
/// go on).
pub fn barrier(p: &Plan, stage: usize) {
    let Some([ready, go]) = p.barrier[stage] else {
        return;
    };
    let _ = rustix::io::write(ready.as_fd(), b"r");
    // SAFETY: parked descriptors of ours, made by init and inherited; each is closed right
    // after its last use here (no barrier is reached twice).
    unsafe { rustix::io::close(ready.raw()) };
    let mut b = [0u8; 1];
    match rustix::io::retry_on_intr(|| rustix::io::read(go.as_fd(), &mut b)) {
        Ok(1) => {}
        _ if stage < RESTORED => {
            p.acts.undo(p.image);
            sys::exit_group(crate::EXIT_REFUSED)
        }
        _ => sys::exit_group(crate::EXIT_LOST),
    }
    // SAFETY: as above.
    unsafe { rustix::io::close(go.raw()) };
}

/// In init: waits until each of `n` processes says it has reached a barrier, then lets them all
/// go. If any ends before it does, the caller ends the tree.
pub fn hold_barrier(done: BorrowedFd, go: BorrowedFd, n: usize, before_no_return: bool) -> bool {
    let mut got = 0usize;
    let mut buf = [0u8; 64];
    while got < n {
        match rustix::io::retry_on_intr(|| rustix::io::read(done, &mut buf)) {
            Ok(0) => break,
            Ok(m) => got += m,
            Err(_) => break,
        }
    }
    if got < n {
        if before_no_return {
            say!("myrestart: {} of the {n} processes of the tree cannot be restored (said above); nothing was restored", n - got);
        } else {
            say!("myrestart: {} of the {n} processes of the tree could not be restored; ending the tree", n - got);
        }
        return false;
    }
    let mut left = n;
    while left > 0 {
        let chunk = left.min(buf.len());
        match rustix::io::retry_on_intr(|| rustix::io::write(go, &buf[..chunk])) {
            Ok(m) => left -= m,
            Err(_) => return false,
        }
    }
    true
}
