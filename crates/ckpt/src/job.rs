//! `ckpt job`: a program that outlives the time limit of the batch job it runs in.
//!
//! The job's command is the same on every start: `ckpt job [options] -- PROG ARGS`. On the
//! first start there is no image, and PROG starts as under `ckpt run`; on a later one the
//! newest complete image of the set (`IMAGE`, `IMAGE.1`, …) is restarted instead. Either way
//! `ckpt job` stays as the parent and waits. A stop signal (default `SIGUSR1`, what
//! `sbatch --signal=B:USR1@SECS` sends the batch shell) asks for the *last* checkpoint: the
//! program is stopped, written, and ended, so it never runs past the moment its image holds
//! (nothing it prints is printed twice). Then the requeue command runs, and `ckpt job` exits
//! with [`EXIT_STOPPED`]. Other signals sent to `ckpt job` are passed on to the program. When
//! the program ends on its own, its exit status is `ckpt job`'s.

use crate::run::{self, RestartFlags, RunArgs};
use crate::set::{self, Want};
use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use clap::Args;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Exit status of `ckpt job` when it stopped the program for a later restart: `EX_TEMPFAIL`
/// of sysexits.h ("try again later"), apart from myrestart's 2 and 3.
pub const EXIT_STOPPED: u8 = 75;

#[derive(Args)]
pub struct JobArgs {
    /// On this signal, take the last checkpoint and stop the program (repeatable; default
    /// USR1, the signal of `sbatch --signal=B:USR1@SECS`).
    #[arg(long = "stop-on", value_name = "SIG")]
    stop_on: Vec<String>,
    /// A command run with `sh -c` once the program has stopped (whether its last checkpoint
    /// was written or not), e.g. 'scontrol requeue $SLURM_JOB_ID'.
    #[arg(long, value_name = "CMD")]
    requeue: Option<String>,
    /// How long the last checkpoint may take before the program is killed without it.
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = crate::checkpoint::seconds)]
    timeout: f64,
    /// Restart the newest image even if it was taken of another command, in another directory,
    /// or before the script it runs was changed (refused by default, naming what differs).
    #[arg(long)]
    allow_changed: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// A file's inode and modification time.
pub type FileId = (u64, i64, i64);

/// The [`FileId`] of the file at `path`: a new image has another.
pub fn identity(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

/// The signals `ckpt job` waits for: the stop signals, those it passes on, and `SIGCHLD`.
fn watched() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM, libc::SIGTERM, libc::SIGCONT, libc::SIGWINCH, libc::SIGPWR, libc::SIGCHLD]
            .into_iter()
            .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

pub fn job(a: JobArgs) -> Outcome {
    // From the first moment, a signal waits for the loop below instead of ending ckpt.
    let set = watched();
    // SAFETY: blocks signals in this single-threaded process, so that they wait for sigwaitinfo.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let stop_on: Vec<i32> = if a.stop_on.is_empty() {
        vec![libc::SIGUSR1]
    } else {
        a.stop_on
            .iter()
            .map(|s| crate::checkpoint::signal_number(s).ok_or((EXIT_REFUSED, format!("--stop-on {s}: not a signal ckpt job can catch"))))
            .collect::<Result<_, _>>()?
    };
    let ckpt_signal = a.run.checkpoint_signal()?;
    if stop_on.contains(&ckpt_signal) {
        return Err((EXIT_REFUSED, "a stop signal cannot also be the checkpoint signal (--signal)".to_string()));
    }
    let image = run::image_path(a.run.image.as_deref())?;
    run::check_image_dir(&image)?;
    let prog = a.run.command[0].to_string_lossy().into_owned();
    let key = a.run.key.clone();
    // What this job runs, to tell its own images from another command's.
    let program = run::resolve(Path::new(&a.run.command[0])).ok_or((EXIT_REFUSED, format!("{prog}: command not found")))?;
    let started = crate::origin::Started::new(&a.run.command, &program).and_then(|s| s.encode()).map_err(|e| (EXIT_REFUSED, e))?;
    let want = if a.allow_changed { Want::Any } else { Want::Command(&started) };
    let (mut cmd, what) = match set::newest(&image, a.run.key.as_deref(), want)? {
        Some(found) => {
            let say = format!("ckpt: restarting {prog} from {} (taken {})", found.path.display(), found.taken);
            let flags = RestartFlags { key: a.run.key.clone(), say: Some(say), ..Default::default() };
            (run::restart_command(&found.path, &flags)?.0, "myrestart")
        }
        None => {
            eprintln!("ckpt: no image at {} yet: starting {prog}", image.display());
            (run::run_command(a.run)?.0, "the program")
        }
    };
    // Orphans of the program (a tree's processes when its root ends) come to us, to be ended.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // The child starts with only the checkpoint signal blocked: one sent before libckpt's
    // handler is in place waits for it (the library unblocks it then; myrestart passes it on)
    // instead of ending the program.
    // SAFETY: the closure only calls sigemptyset, sigaddset and sigprocmask, async-signal-safe,
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut only: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut only);
            libc::sigaddset(&mut only, ckpt_signal);
            libc::sigprocmask(libc::SIG_SETMASK, &only, std::ptr::null_mut());
            Ok(())
        })
    };
    let child = cmd.spawn().map_err(|e| (EXIT_REFUSED, format!("cannot start {what}: {e}")))?;
    let child = child.id() as i32;

    // Since when the last checkpoint was asked for, the image before it, and the program's
    // report page with the count of checkpoints it had begun then.
    let mut stopping: Option<Stopping> = None;
    // The last checkpoint failed without any image of this run: the program is kept, stopped.
    let mut kept_stopped = false;
    let mut timed_out = false;
    // A signal that may end the program came (and was passed on, or reached it from the
    // terminal): if it ends now, it did not end on its own.
    let mut told_to_end = false;
    let status = loop {
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: 200_000_000 };
        // SAFETY: siginfo_t is plain data the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for one of the blocked signals of `set`, or the timeout.
        let sig = unsafe { libc::sigtimedwait(&set, &mut info, &timeout) };
        if let Some(s) = stopping.as_mut() {
            if !timed_out && s.since.elapsed() > Duration::from_secs_f64(a.timeout) {
                eprintln!("ckpt: the last checkpoint took more than {} s: killing {prog} without it", a.timeout);
                timed_out = true;
                // SAFETY: kill(2) with our child's PID.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
            let report = s.page.read();
            if report.as_ref().and_then(|r| crate::report::outcome_after(r, s.base)) == Some(ckpt_image::report::Outcome::LastFailedStopped) {
                let why = report.map(|r| r.message).unwrap_or_default();
                eprintln!(
                    "ckpt: the last checkpoint of {prog} failed: {why}; no image of it exists, so it is kept alive, stopped: {} again tries again, SIGCONT lets it run on",
                    signal_name(stop_on[0])
                );
                stopping = None;
                kept_stopped = true;
            }
        }
        if sig <= 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            match reap(child) {
                Some(status) => break status,
                None => continue,
            }
        }
        if stop_on.contains(&sig) {
            if stopping.is_none() {
                eprintln!("ckpt: {}: taking the last checkpoint of {prog}; it stops then", signal_name(sig));
                let mut page = crate::report::Page::of(crate::report::program_behind(child as u32));
                let base = page.read().map_or(0, |r| r.started);
                stopping = Some(Stopping { since: Instant::now(), before: identity(&image), page, base });
                let value = ckpt_sigsafe::signals::LAST_CHECKPOINT | ckpt_sigsafe::signals::LAST_STOP_IF_UNSAVED;
                let _ = ckpt_sigsafe::sys::sigqueue(child as u32, ckpt_signal as u32, value);
                if kept_stopped {
                    // It was stopped: it takes the request once continued.
                    let _ = ckpt_sigsafe::sys::kill(child as u32, libc::SIGCONT as u32);
                    kept_stopped = false;
                }
            }
            continue;
        }
        if ![libc::SIGCONT, libc::SIGWINCH, ckpt_signal].contains(&sig) {
            told_to_end = true;
        }
        if sig == libc::SIGCONT {
            kept_stopped = false;
        }
        // Signals a process sent (si_code <= 0) are passed on; those the kernel made (a
        // terminal's ^C) went to the whole process group, the program included.
        if info.si_code <= 0 {
            let _ = if info.si_code == libc::SI_QUEUE {
                // SAFETY: for SI_QUEUE the value field is the one the sender set.
                let value = unsafe { info.si_value() }.sival_ptr as u64;
                ckpt_sigsafe::sys::sigqueue_as(child as u32, sig as u32, value, 0)
            } else {
                ckpt_sigsafe::sys::kill(child as u32, sig as u32)
            };
        }
    };
    end_orphans();
    let Some(stop) = stopping else {
        // The program ended. If it exited, on its own, its run is over: its images are retired
        // so that the next start of the job starts afresh. If a signal ended it (a crash, the
        // OOM killer, `kill -9`, or a signal passed on from the batch system), they stay: the
        // next start goes on from the newest.
        if libc::WIFEXITED(status) && !told_to_end {
            if let Some(line) = set::retire(&image, &prog, status) {
                eprintln!("ckpt: {line}");
            }
        } else if libc::WIFSIGNALED(status) && !set::generations(&image).is_empty() {
            eprintln!("ckpt: {prog} was ended by signal {}; its images stay, and the next `ckpt job` goes on from the newest", libc::WTERMSIG(status));
        }
        return Ok(ExitCode::from(ckpt_sigsafe::sys::shell_status(status) as u8));
    };
    let Stopping { since, before, mut page, base } = stop;
    let written = !timed_out && identity(&image).is_some_and(|now| Some(now) != before);
    if written {
        let size = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
        eprintln!("ckpt: {prog} stopped at its last checkpoint: {} ({} MB, {:.1} s)", image.display(), size / 1_000_000, since.elapsed().as_secs_f64());
    } else {
        let why = page.read().filter(|r| crate::report::outcome_after(r, base).is_some()).map(|r| format!(": {}", r.message)).unwrap_or_default();
        match set::newest(&image, key.as_deref(), Want::Command(&started)) {
            Ok(Some(f)) => eprintln!("ckpt: the last checkpoint of {prog} failed{why}; it stopped, and a restart goes on from {} (taken {})", f.path.display(), f.taken),
            _ => eprintln!("ckpt: the last checkpoint of {prog} failed{why}; it stopped, and a restart begins it anew (no image)"),
        }
    }
    if let Some(requeue) = &a.requeue {
        match Command::new("/bin/sh").arg("-c").arg(requeue).status() {
            Ok(s) if s.success() => {}
            Ok(s) => return Err((EXIT_FAILED, format!("the requeue command failed ({s}): {requeue}"))),
            Err(e) => return Err((EXIT_FAILED, format!("the requeue command could not run: {e}"))),
        }
    }
    Ok(ExitCode::from(EXIT_STOPPED))
}

/// A last checkpoint under way.
struct Stopping {
    since: Instant,
    /// The image at the path before it.
    before: Option<FileId>,
    /// The program's report page, and how many checkpoints it had begun when it was asked.
    page: crate::report::Page,
    base: u32,
}

/// `SIGUSR1`, … for the signals a batch system sends; the number for others.
fn signal_name(sig: i32) -> String {
    let names = [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP"), (libc::SIGINT, "SIGINT"), (libc::SIGALRM, "SIGALRM"), (libc::SIGPWR, "SIGPWR")];
    names.iter().find(|(n, _)| *n == sig).map_or_else(|| format!("signal {sig}"), |(_, name)| name.to_string())
}

/// Reaps what has ended; the child's wait status once it has.
fn reap(child: i32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG and a status we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == child {
            found = Some(status);
        }
    }
}

/// Ends the processes the program left behind (they came to us, the subreaper) and reaps them.
fn end_orphans() {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    loop {
        // Single-threaded: the main thread's children are all of ours.
        let children = std::fs::read(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        for pid in ckpt_sigsafe::proctext::pid_list(&children) {
            // SAFETY: kill(2) of a child of ours.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: waitpid for any child, blocking; ECHILD when none is left.
        if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
            return;
        }
    }
}
