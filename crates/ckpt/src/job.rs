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
use ckpt_image::report::Outcome as Ended;
use crate::imagefile::{identity, FileId};
use crate::os;
use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use clap::Args;
use std::path::{Path, PathBuf};
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
    /// Restart even though a file the program could write in place changed since the image
    /// (refused by default, naming each; the images stay for another try). Also
    /// CKPT_FILES_AS_IS=1 in the job's environment.
    #[arg(long)]
    files_as_is: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// The signals `ckpt job` waits for: the stop signals, those it passes on, and `SIGCHLD`.
fn watched() -> os::SignalSet {
    let named = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM, libc::SIGTERM, libc::SIGCONT, libc::SIGWINCH, libc::SIGPWR, libc::SIGCHLD];
    os::SignalSet::of(named.into_iter().chain(os::realtime_signals()))
}

pub fn job(a: JobArgs) -> Outcome {
    // From the first moment, a signal waits for the loop below instead of ending ckpt.
    let signals = watched();
    signals.block();
    let job = Job::new(&a)?;
    let JobArgs { requeue, allow_changed, files_as_is, run, .. } = a;
    let files_as_is = files_as_is || std::env::var_os("CKPT_FILES_AS_IS").is_some_and(|v| v == "1");
    let Start { cmd, what, restart_status, fresh_image_due } = job.choose_start(run, allow_changed, files_as_is)?;
    let status_wr = restart_status.as_ref().map_or(-1, |(_, wr)| *wr);
    let child = job.start_child(cmd, what, status_wr)?;
    let (child_status, waited) = job.wait(&signals, child, fresh_image_due);
    end_orphans();
    let Some(status) = program_status(restart_status, child_status) else {
        // myrestart said why; the images are as they were, for another try.
        let code = ckpt_sigsafe::sys::shell_status(child_status);
        eprintln!("ckpt: {} was not restarted (myrestart's exit status {code}); its images stay as they are", job.prog);
        return Ok(ExitCode::from(code as u8));
    };
    // Asked to stop, it may still have ended on its own before it took the request: a program
    // that exited (a last checkpoint ends it with SIGKILL).
    let Some(stop) = waited.stopping.filter(|_| !libc::WIFEXITED(status)) else {
        return Ok(job.ended(status, waited.told_to_end));
    };
    job.say_how_it_stopped(stop, waited.timed_out);
    if let Some(requeue) = &requeue {
        run_requeue(requeue)?;
    }
    Ok(ExitCode::from(EXIT_STOPPED))
}

/// What each step of a job knows: the program, where its images are, and its signals.
struct Job {
    /// The command as messages name it (escaped: a name from the user, or from an image).
    prog: String,
    image: PathBuf,
    key: Option<PathBuf>,
    /// What this job runs (an encoded origin note), to tell its own images from another
    /// command's.
    started: Vec<u8>,
    stop_on: Vec<i32>,
    ckpt_signal: i32,
    /// How long the last checkpoint may take before the program is killed without it (s).
    timeout: f64,
}

/// The child a job starts: myrestart on the newest image, or the program itself.
struct Start {
    cmd: Command,
    /// What the child is, as messages name it.
    what: &'static str,
    /// A restart: myrestart says on this pipe whether the restart went past its point of no
    /// return, and how the program ended (its exit status alone cannot say a refusal, 2, from a
    /// program's exit status 2, nor 128 + N from a signal).
    restart_status: Option<(std::fs::File, i32)>,
    /// Gone on from a last checkpoint: a fresh image is taken at once, so that a crash from
    /// then on goes back to the moment of the restart, and a restart then cuts from the logs what
    /// the program printed since (a last checkpoint's own image never cuts them).
    fresh_image_due: bool,
}

/// What the wait for the child keeps track of.
struct Waiting {
    /// Since when the last checkpoint was asked for, the image before it, and the program's
    /// report page with the count of checkpoints it had begun then.
    stopping: Option<Stopping>,
    /// The last checkpoint failed without any image of this run: the program is kept, stopped.
    kept_stopped: bool,
    timed_out: bool,
    /// A signal that may end the program came (and was passed on, or reached it from the
    /// terminal): if it ends now, it did not end on its own.
    told_to_end: bool,
    fresh_image_due: bool,
}

impl Job {
    /// Checks the options and finds what the job runs.
    fn new(a: &JobArgs) -> Result<Job, (u8, String)> {
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
        crate::imagefile::check_image_dir(&image)?;
        let prog = crate::shown(Path::new(&a.run.command[0]));
        let key = crate::key::configured(a.run.key.as_deref());
        let program = run::resolve(Path::new(&a.run.command[0])).ok_or((EXIT_REFUSED, format!("{prog}: command not found")))?;
        let started = crate::origin::Started::new(&a.run.command, &program).and_then(|s| s.encode()).map_err(|e| (EXIT_REFUSED, e))?;
        Ok(Job { prog, image, key, started, stop_on, ckpt_signal, timeout: a.timeout })
    }

    /// Restarts the newest complete image of the set, or, with none, starts the program.
    fn choose_start(&self, run: RunArgs, allow_changed: bool, files_as_is: bool) -> Result<Start, (u8, String)> {
        let prog = &self.prog;
        let want = if allow_changed { Want::Any } else { Want::Command(&self.started) };
        match set::newest(&self.image, self.key.as_deref(), want, false)? {
            Some(mut found) => {
                if allow_changed {
                    let differs = crate::inspect::origin_note(&found.path).ok().flatten().and_then(|was| {
                        let (was, now) = (ckpt_image::origin::Origin::parse(&was).ok()?, ckpt_image::origin::Origin::parse(&self.started).ok()?);
                        crate::origin::differences(&was, &now)
                    });
                    if let Some(d) = differs {
                        found.passed_over.push(format!("ckpt: {} is not of this command ({d}); restarting it all the same, as asked (--allow-changed)", crate::shown(&found.path)));
                    }
                }
                let fresh_image_due = crate::inspect::is_last_checkpoint(&found.path);
                let (rd, wr) = status_pipe().map_err(|e| (EXIT_REFUSED, format!("cannot make a pipe: {}", crate::io_message(&e))))?;
                let flags = RestartFlags { key: self.key.clone(), say: Some(found.say(&format!("ckpt: restarting {prog}"))), status_fd: Some(wr), files_as_is, ..Default::default() };
                let cmd = run::restart_command(&found.path, &flags)?.0;
                Ok(Start { cmd, what: "myrestart", restart_status: Some((rd, wr)), fresh_image_due })
            }
            None => {
                eprintln!("ckpt: no image at {} yet: starting {prog}", crate::shown(&self.image));
                Ok(Start { cmd: run::run_command(run)?.0, what: "the program", restart_status: None, fresh_image_due: false })
            }
        }
    }

    /// Starts the child (as the subreaper of what it leaves), with only the checkpoint signal
    /// blocked and myrestart's status pipe inherited; its PID.
    fn start_child(&self, mut cmd: Command, what: &str, status_wr: i32) -> Result<i32, (u8, String)> {
        let ckpt_signal = self.ckpt_signal;
        // Orphans of the program (a tree's processes when its root ends) come to us, to be ended.
        os::become_subreaper();
        // The child starts with only the checkpoint signal blocked: one sent before libckpt's
        // handler is in place waits for it (the library unblocks it then; myrestart passes it on)
        // instead of ending the program.
        // The status pipe's write end goes to myrestart.
        os::start_with(&mut cmd, ckpt_signal, status_wr);
        let spawned = cmd.spawn().map_err(|e| (EXIT_REFUSED, format!("cannot start {what}: {e}")));
        if status_wr >= 0 {
            // Our write end, which only the child keeps now.
            os::close(status_wr);
        }
        Ok(spawned?.id() as i32)
    }

    /// Waits for the child to end, following a last checkpoint under way, taking a fresh image
    /// when one is due, and passing signals on; the child's wait status, and what was seen.
    fn wait(&self, signals: &os::SignalSet, child: i32, fresh_image_due: bool) -> (i32, Waiting) {
        let mut w = Waiting { stopping: None, kept_stopped: false, timed_out: false, told_to_end: false, fresh_image_due };
        loop {
            let got = signals.wait(Duration::from_millis(200));
            self.follow_last_checkpoint(&mut w, child);
            if w.fresh_image_due && w.stopping.is_none() {
                // Once the restored program is whole (its report page is there).
                let program = crate::report::program_behind(child as u32);
                if crate::report::Page::of(program).read().is_some() {
                    let _ = ckpt_sigsafe::sys::sigqueue(program, self.ckpt_signal as u32, ckpt_sigsafe::signals::CHECKPOINT_REQUEST);
                    w.fresh_image_due = false;
                }
            }
            let Some(received) = got else { continue };
            let sig = received.sig;
            if sig == libc::SIGCHLD {
                match reap(child) {
                    Some(status) => return (status, w),
                    None => continue,
                }
            }
            if self.stop_on.contains(&sig) {
                self.ask_last_checkpoint(&mut w, child, sig);
                continue;
            }
            pass_on(&mut w, child, &received, self.ckpt_signal);
        }
    }

    /// A last checkpoint under way: kills the program without it once it takes too long (if
    /// another image of it exists), and reads the program's report of how it went.
    fn follow_last_checkpoint(&self, w: &mut Waiting, child: i32) {
        let prog = &self.prog;
        let Some(s) = w.stopping.as_mut() else { return };
        if !w.timed_out && s.since.elapsed() > Duration::from_secs_f64(self.timeout) {
            w.timed_out = true;
            if matches!(set::newest(&self.image, self.key.as_deref(), Want::Command(&self.started), false), Ok(Some(_))) {
                eprintln!("ckpt: the last checkpoint took more than {} s: killing {prog} without it (a restart goes on from its previous image)", self.timeout);
                let _ = ckpt_sigsafe::sys::kill(child as u32, libc::SIGKILL as u32);
            } else {
                eprintln!("ckpt: the last checkpoint of {prog} takes more than {} s; with no other image of it, ckpt job waits for it", self.timeout);
            }
        }
        // A program (or a process of its tree) that blocks the signal in every thread past
        // libckpt gets it with ptrace; if it cannot, the job's timeout applies.
        if let Err(why) = crate::unblock::deliver_where_blocked(child as u32, child as u32, self.ckpt_signal, &mut s.delivered) {
            eprintln!("ckpt: {why}");
        }
        let report = s.page.read();
        match report.as_ref().and_then(|r| crate::report::outcome_after(r, s.base)) {
            Some(Ended::LastFailedStopped) => {
                let why = report.map(|r| r.message).unwrap_or_default();
                eprintln!(
                    "ckpt: the last checkpoint of {prog} failed: {why}; no image of this run of it exists, so it is kept alive, stopped: {} again tries again, SIGCONT lets it run on",
                    signal_name(self.stop_on[0])
                );
                w.stopping = None;
                w.kept_stopped = true;
            }
            // An ordinary checkpoint (a periodic one, or the request merged into one whose
            // signal was pending): the request is made again.
            Some(Ended::Written | Ended::Failed) => {
                s.base = report.map_or(s.base, |r| r.done);
                let _ = ckpt_sigsafe::sys::sigqueue(child as u32, self.ckpt_signal as u32, LAST_REQUEST);
            }
            _ => {}
        }
    }

    /// A stop signal came: asks for the last checkpoint (once), continuing a program kept
    /// stopped so that it takes the request.
    fn ask_last_checkpoint(&self, w: &mut Waiting, child: i32, sig: i32) {
        if w.stopping.is_some() {
            return;
        }
        eprintln!("ckpt: {}: taking the last checkpoint of {}; it stops then", signal_name(sig), self.prog);
        let mut page = crate::report::Page::of(crate::report::program_behind(child as u32));
        let base = page.read().map_or(0, |r| r.started);
        w.stopping = Some(Stopping { since: Instant::now(), before: identity(&self.image), page, base, delivered: Vec::new() });
        let _ = ckpt_sigsafe::sys::sigqueue(child as u32, self.ckpt_signal as u32, LAST_REQUEST);
        if w.kept_stopped {
            // It was stopped: it takes the request once continued.
            let _ = ckpt_sigsafe::sys::kill(child as u32, libc::SIGCONT as u32);
            w.kept_stopped = false;
        }
    }

    /// The program ended, not at a last checkpoint. If it exited, on its own, its run is over:
    /// its images are retired so that the next start of the job starts afresh. If a signal
    /// ended it (a crash, the OOM killer, `kill -9`, or a signal passed on from the batch
    /// system), they stay: the next start goes on from the newest. Its status is the job's.
    fn ended(&self, status: i32, told_to_end: bool) -> ExitCode {
        if libc::WIFEXITED(status) && !told_to_end {
            if let Some(line) = set::retire(&self.image, &self.prog, status) {
                eprintln!("ckpt: {line}");
            }
        } else if libc::WIFSIGNALED(status) && !set::generations(&self.image).is_empty() {
            eprintln!("ckpt: {} was ended by signal {}; its images stay, and the next `ckpt job` goes on from the newest", self.prog, libc::WTERMSIG(status));
        }
        ExitCode::from(ckpt_sigsafe::sys::shell_status(status) as u8)
    }

    /// Says whether the program stopped at its last checkpoint, or, with it not written, what a
    /// restart goes on from.
    fn say_how_it_stopped(&self, stop: Stopping, timed_out: bool) {
        let prog = &self.prog;
        let Stopping { since, before, mut page, base, .. } = stop;
        let written = !timed_out && identity(&self.image).is_some_and(|now| Some(now) != before);
        if written {
            let size = std::fs::metadata(&self.image).map(|m| m.len()).unwrap_or(0);
            eprintln!("ckpt: {prog} stopped at its last checkpoint: {} ({} MB, {:.1} s)", crate::shown(&self.image), size / 1_000_000, since.elapsed().as_secs_f64());
        } else {
            let why = page.read().filter(|r| crate::report::outcome_after(r, base).is_some()).map(|r| format!(": {}", r.message)).unwrap_or_default();
            match set::newest(&self.image, self.key.as_deref(), Want::Command(&self.started), false) {
                Ok(Some(f)) => eprintln!("ckpt: the last checkpoint of {prog} failed{why}; it stopped, and a restart goes on from {} (taken {})", crate::shown(&f.path), f.taken),
                _ => eprintln!("ckpt: the last checkpoint of {prog} failed{why}; it stopped, and a restart begins it anew (no image)"),
            }
        }
    }
}

/// A signal for the program: signals a process sent (si_code <= 0) are passed on; those the
/// kernel made (a terminal's ^C) went to the whole process group, the program included.
fn pass_on(w: &mut Waiting, child: i32, received: &os::Received, ckpt_signal: i32) {
    let os::Received { sig, code, value } = *received;
    if ![libc::SIGCONT, libc::SIGWINCH, ckpt_signal].contains(&sig) {
        w.told_to_end = true;
    }
    if sig == libc::SIGCONT {
        w.kept_stopped = false;
    }
    if code <= 0 {
        let _ = match value {
            Some(value) => ckpt_sigsafe::sys::sigqueue_as(child as u32, sig as u32, value, 0),
            None => ckpt_sigsafe::sys::kill(child as u32, sig as u32),
        };
    }
}

/// How the program ended: the child's own status, or, when the child is myrestart, what
/// myrestart said of it (nothing: the restart was refused, or failed before the program ran).
fn program_status(restart_status: Option<(std::fs::File, i32)>, status: i32) -> Option<i32> {
    match restart_status {
        None => Some(status),
        Some((mut rd, _)) => {
            let mut said = Vec::new();
            let _ = std::io::Read::read_to_end(&mut rd, &mut said);
            match said.as_slice() {
                [b'R', raw @ ..] if raw.len() == 4 => Some(i32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]])),
                // Restored without namespaces: myrestart became the program itself.
                [b'R', ..] => Some(status),
                _ => None,
            }
        }
    }
}

/// Runs the requeue command (`sh -c`); a failure is the job's.
fn run_requeue(requeue: &str) -> Result<(), (u8, String)> {
    match Command::new("/bin/sh").arg("-c").arg(requeue).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err((EXIT_FAILED, format!("the requeue command failed ({s}): {requeue}"))),
        Err(e) => Err((EXIT_FAILED, format!("the requeue command could not run: {e}"))),
    }
}

/// The request for the last checkpoint: if it cannot be written and no image of this run
/// exists, the program stops rather than go on (it stays as it is, for another try).
const LAST_REQUEST: u64 = ckpt_sigsafe::signals::LAST_CHECKPOINT | ckpt_sigsafe::signals::LAST_STOP_IF_UNSAVED;

/// A pipe whose read end (close-on-exec) stays here and whose write end a child inherits (it is
/// made inheritable in the child only, between fork and exec).
fn status_pipe() -> std::io::Result<(std::fs::File, i32)> {
    os::pipe()
}

/// A last checkpoint under way.
struct Stopping {
    since: Instant,
    /// The image at the path before it.
    before: Option<FileId>,
    /// The program's report page, and how many checkpoints it had begun when it was asked.
    page: crate::report::Page,
    base: u32,
    /// Processes the request was delivered to with ptrace (see `unblock`).
    delivered: Vec<u32>,
}

/// `SIGUSR1`, … for the signals a batch system sends; the number for others.
fn signal_name(sig: i32) -> String {
    let names = [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP"), (libc::SIGINT, "SIGINT"), (libc::SIGALRM, "SIGALRM"), (libc::SIGPWR, "SIGPWR")];
    names.iter().find(|(n, _)| *n == sig).map_or_else(|| format!("signal {sig}"), |(_, name)| name.to_string())
}

/// Reaps what has ended; the child's wait status once it has.
fn reap(child: i32) -> Option<i32> {
    let mut found = None;
    while let Ok(Some((pid, status))) = ckpt_sigsafe::sys::wait_child(-1, true) {
        if pid as i32 == child {
            found = Some(status);
        }
    }
    found
}

/// Ends the processes the program left behind (they came to us, the subreaper) and reaps them.
fn end_orphans() {
    let me = std::process::id();
    loop {
        // Single-threaded: the main thread's children are all of ours.
        let children = std::fs::read(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        for pid in ckpt_sigsafe::proctext::pid_list(&children) {
            let _ = ckpt_sigsafe::sys::kill(pid, libc::SIGKILL as u32);
        }
        // Blocking; ECHILD when none is left.
        if ckpt_sigsafe::sys::wait_child(-1, false).is_err() {
            return;
        }
    }
}
