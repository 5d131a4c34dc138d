//! A checkpoint signal that no thread of a process lets through.
//!
//! libckpt keeps its signal out of every mask the program sets through libc, but a mask set
//! with the system call itself (static code, a Go runtime, a C library's own internals) blocks
//! it: when every thread of the process blocks it, it stays pending and no checkpoint begins.
//! `ckpt checkpoint` notices it in `/proc/PID/task/*/status` (blocked in every thread, and
//! pending), and delivers the signal anyway with `ptrace`: it seizes one thread, interrupts
//! it, takes the signal out of that thread's mask, lets it run until it is about to take the
//! signal, marks the signal's information ([`ckpt_sigsafe::signals::UNBLOCKED_FOR_CHECKPOINT`])
//! and lets it go. libckpt's handler, seeing the mark, blocks the signal again in the context
//! the thread returns to (and that the image holds), so the program's mask is its own again.
//! The same holds for a process of a tree, asked by its parent's checkpoint.

use crate::os::{Stop, Traced};
use ckpt_sigsafe::proctext::{signal_masks, status_field};
use std::time::{Duration, Instant};

/// How long a traced thread has to stop, or to take the signal.
const PATIENCE: Duration = Duration::from_secs(2);

/// The threads of process `pid` that have not ended, with their status text.
fn live_threads(pid: u32) -> Vec<(u32, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut threads: Vec<(u32, Vec<u8>)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(|tid: u32| Some((tid, std::fs::read(format!("/proc/{pid}/task/{tid}/status")).ok()?)))
        .filter(|(_, st)| !status_field(st, b"State:").is_some_and(|s| s.starts_with(b"Z") || s.starts_with(b"X")))
        .collect();
    // The main thread first: the one to deliver to when any will do.
    threads.sort_by_key(|(tid, _)| (*tid != pid, *tid));
    threads
}

/// Whether thread `tid`'s process has a handler for `sig`.
fn catches(tid: u32, sig: i32) -> bool {
    let status = std::fs::read(format!("/proc/{tid}/status")).unwrap_or_default();
    status_field(&status, b"SigCgt:").and_then(ckpt_sigsafe::proctext::parse_hex).is_some_and(|c| c & 1u64 << (sig - 1) != 0)
}

/// If signal `sig` is pending for process `pid` and every one of its threads blocks it: the
/// thread to deliver it to (the one it is pending for, or the first).
fn blocked_everywhere(pid: u32, sig: i32) -> Option<u32> {
    let bit = 1u64 << (sig - 1);
    let threads = live_threads(pid);
    let mut pending = false;
    let mut target = None;
    for (tid, status) in &threads {
        let m = signal_masks(status)?;
        if m.blocked & bit == 0 {
            return None;
        }
        pending |= m.shared_pending & bit != 0;
        if m.pending & bit != 0 {
            target = Some(*tid);
        }
    }
    target.or_else(|| pending.then(|| threads.first().map(|t| t.0)).flatten())
}

/// Delivers the pending signal `sig` to thread `tid`, which blocks it, as the module says:
/// whether it did (not now: the thread is in a checkpoint's handler), or why it could not.
fn deliver(tid: u32, sig: i32) -> Result<bool, String> {
    let bit = 1u64 << (sig - 1);
    let err = |what: &str, e: std::io::Error| format!("{what}: {}", crate::io_message(&e));
    let mut t = Traced::seize(tid as i32).map_err(|e| err("ptrace could not attach to it", e))?;
    t.interrupt().map_err(|e| err("ptrace could not interrupt it", e))?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match t.next_stop(deadline) {
            Some(Stop::Event) => break,
            // Another signal it was about to take: it takes it.
            Some(Stop::Signal(s)) => t.cont(s).map_err(|e| err("ptrace", e))?,
            Some(Stop::Gone) => return Err("it ended".into()),
            None => return Err(format!("its thread {tid} did not stop for ptrace within {} s", PATIENCE.as_secs())),
        }
    }
    // A thread in libckpt's own code is in a checkpoint's handler, where every signal is
    // blocked until it returns: a signal pending meanwhile is a later one, left for then.
    let ip = t.instruction_pointer().map_err(|e| err("ptrace could not read its registers", e))?;
    if in_libckpt(tid, ip) {
        return Ok(false);
    }
    let mask = t.sigmask().map_err(|e| err("ptrace could not read its signal mask", e))?;
    if mask & bit == 0 {
        // It let the signal through meanwhile: it takes it by itself.
        return Ok(true);
    }
    t.set_sigmask(mask & !bit).map_err(|e| err("ptrace could not change its signal mask", e))?;
    let taken = take_signal(&mut t, sig, deadline);
    // Not taken, or not marked: the thread's own mask again (a thread still running is
    // stopped first); a signal it was about to take is delivered as it goes, or goes back to
    // pending if the mask blocks it.
    if taken.is_err() && t.set_sigmask(mask).is_err() && t.interrupt().is_ok() {
        if let Some(stop @ (Stop::Event | Stop::Signal(_))) = t.next_stop(Instant::now() + PATIENCE) {
            if let Stop::Signal(s) = stop {
                t.deliver = s;
            }
            let _ = t.set_sigmask(mask);
        }
    }
    taken.map(|()| true)
}

/// Whether address `ip` of thread `tid`'s process lies in libckpt's code.
fn in_libckpt(tid: u32, ip: u64) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{tid}/maps")).unwrap_or_default();
    maps.lines().filter(|l| l.ends_with("/libckpt.so")).filter_map(|l| ckpt_sigsafe::maps::parse_line(l.as_bytes())).any(|m| m.prot & 4 != 0 && (m.start as u64..m.end as u64).contains(&ip))
}

/// Lets thread `t`, which no longer blocks `sig`, run until it is about to take it; marks it
/// and sets it to be delivered as `t` is let go.
fn take_signal(t: &mut Traced, sig: i32, deadline: Instant) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {}", crate::io_message(&e));
    t.cont(0).map_err(|e| err("ptrace", e))?;
    loop {
        match t.next_stop(deadline) {
            Some(Stop::Signal(s)) if s == sig => {
                t.deliver = sig;
                // Its handler must still be there: a thread that was in `execve` comes back
                // in the new program, where the signal's action is the default one (death).
                if !catches(t.tid as u32, sig) {
                    return Err("it was starting another program; try again".into());
                }
                return t.tag_signal(ckpt_sigsafe::signals::UNBLOCKED_FOR_CHECKPOINT).map_err(|e| err("ptrace could not mark the signal", e));
            }
            Some(Stop::Signal(s)) => t.cont(s).map_err(|e| err("ptrace", e))?,
            Some(Stop::Event) => t.cont(0).map_err(|e| err("ptrace", e))?,
            Some(Stop::Gone) => return Err("it ended".into()),
            None => return Err(format!("the signal was no longer pending for it after {} s", PATIENCE.as_secs())),
        }
    }
}

/// The processes below `pid` (children of any of its threads, and theirs), but image writers.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for t in tasks.flatten() {
            let text = std::fs::read(t.path().join("children")).unwrap_or_default();
            for c in ckpt_sigsafe::proctext::pid_list(&text) {
                let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
                if !crate::report::is_libckpt_helper(comm.trim_end()) && !found.contains(&c) && found.len() < 4096 {
                    found.push(c);
                    todo.push(c);
                }
            }
        }
    }
    found
}

/// Whether process `pid` has libckpt mapped.
fn runs_libckpt(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.lines().any(|l| l.ends_with("/libckpt.so")))
}

/// Delivers signal `sig` with ptrace to process `pid` (which the user knows as `asked`), or a
/// process below it, where it is pending and blocked in every thread; says why when it cannot.
/// `done` lists the processes it was delivered to (or could not be) and that have not taken
/// it yet: each gets it once, and again only once it has taken it and another one waits.
pub fn deliver_where_blocked(pid: u32, asked: u32, sig: i32, done: &mut Vec<u32>) -> Result<(), String> {
    for p in std::iter::once(pid).chain(descendants(pid)) {
        if blocked_everywhere(p, sig).is_none() {
            done.retain(|&d| d != p);
            continue;
        }
        if done.contains(&p) || stopped(p) {
            continue;
        }
        // Only a mask that holds a moment.
        std::thread::sleep(Duration::from_millis(50));
        let Some(tid) = blocked_everywhere(p, sig).filter(|_| runs_libckpt(p)) else { continue };
        match deliver(tid, sig) {
            Ok(true) => done.push(p),
            Ok(false) => {}
            Err(why) => {
                done.push(p);
                let shown = if p == pid { asked } else { p };
                return Err(format!(
                    "process {shown} blocks signal {sig} in every thread (past libckpt: a system call made directly), so it cannot take the checkpoint, and delivering it with ptrace failed: {why}"
                ));
            }
        }
    }
    Ok(())
}

/// Whether process `pid` is stopped (by SIGSTOP, or a terminal): it takes no signal now.
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    ckpt_sigsafe::proctext::stat_state(&stat) == Some(b'T')
}
