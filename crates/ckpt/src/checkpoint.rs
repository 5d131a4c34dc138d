//! `ckpt checkpoint PID`: sends the checkpoint signal to a process that runs libckpt, after
//! making sure the process handles it; a process without libckpt is checkpointed from outside
//! instead (`attach`: ckpt loads libckpt's checkpoint code into it for the duration). With
//! `--wait` it follows the image until it is in place.
//!
//! `--to PATH` sends this one image to PATH (a process under libckpt finds the path in its
//! report page: see `ckpt_image::report`); `--kill` and `--hold` take the last checkpoint, after
//! which the process ends, or stays stopped. [`take`] is the same for code of ckpt's own
//! (`ckpt migrate`), with no printing.

use crate::imagefile::identity;
use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct CheckpointArgs {
    /// The process to checkpoint.
    pid: u32,
    /// Where the process writes its image, for ckpt to follow it when it cannot read the
    /// process's environment (its CKPT_IMAGE). The process chose its image path when it started:
    /// a path other than that one is refused.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Return only when the new image is complete; print its path, size and how long it took.
    #[arg(long)]
    wait: bool,
    /// Take the process's last checkpoint: it is written with the process stopped, and the
    /// process then ends (SIGKILL), so it never runs past its image (implies --wait).
    #[arg(long, conflicts_with = "hold")]
    kill: bool,
    /// Take the process's last checkpoint as --kill does, but leave the process (every
    /// process of its tree) stopped at its image instead of ending it: `kill -CONT` lets it go
    /// on as if nothing happened, `kill -9` ends it (implies --wait). If the image cannot be
    /// written, it goes on running.
    #[arg(long)]
    hold: bool,
    /// Write this one image to PATH instead of the process's image path; later checkpoints go
    /// to its image path as before. Incremental only on an earlier image at PATH.
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,
    /// Give up waiting after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = seconds)]
    timeout: f64,
    /// For a process started without ckpt: authenticate the image with the key in FILE
    /// (default: CKPT_KEY in ckpt's environment). A process under libckpt uses its own.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// For a process started without ckpt: keep N older images, IMAGE.1 ... IMAGE.N.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=99))]
    keep: u32,
    /// For a process started without ckpt: compress the memory in the image (lz4).
    #[arg(long)]
    compress: bool,
    /// For a process started without ckpt: copy the program's and libraries' pages into the
    /// image too, so that it restarts without those files.
    #[arg(long)]
    self_contained: bool,
}

impl CheckpointArgs {
    /// The options that only a process started without ckpt takes (one under libckpt uses the
    /// settings it started with), by name, if any was given.
    fn attach_only(&self) -> Option<&'static str> {
        [(self.key.is_some(), "--key"), (self.keep != 0, "--keep"), (self.compress, "--compress"), (self.self_contained, "--self-contained")].into_iter().find(|o| o.0).map(|o| o.1)
    }
}

/// A positive number of seconds, whole or not.
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s} is not a positive number of seconds")),
    }
}

/// The process's initial environment, as `(name, value)` pairs.
fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// A signal by name or number, as libckpt reads `CKPT_SIGNAL`.
pub fn signal_number(s: &str) -> Option<i32> {
    ckpt_sigsafe::signals::parse_signal(s, libc::SIGRTMIN())
}


/// The file the writer of process `pid` is writing the image at `image` into, if one is at work:
/// the program itself, or a process named ckpt-writer with the program's environment, holding a
/// file in the image's directory that has no name yet (`O_TMPFILE`, shown as `DIR/#N
/// (deleted)`) or a temporary name `IMAGE.PID.N.tmp`.
fn writer_file(pid: u32, image: &Path) -> Option<std::fs::Metadata> {
    std::fs::metadata(writer_fd(pid, image)?).ok()
}

/// [`writer_file`]'s descriptor, as `/proc/W/fd/N`: opening it opens the file being written
/// (`ckpt migrate` sends an image as it grows).
pub fn writer_fd(pid: u32, image: &Path) -> Option<PathBuf> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let dir = image.parent()?.to_string_lossy().into_owned();
    let named = format!("{}.", image.display());
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(w) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        // The program itself writes with CKPT_SYNC=1 (and, the root of a tree, holds its
        // members' part files while they are made).
        if w != pid {
            if std::fs::read_to_string(format!("/proc/{w}/comm")).map_or(true, |c| c.trim() != "ckpt-writer") {
                continue;
            }
            if std::fs::read(format!("/proc/{w}/environ")).ok().as_ref() != Some(&env) {
                continue;
            }
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{w}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let t = target.to_string_lossy();
            let unnamed = t.strip_prefix(&format!("{dir}/#")).is_some_and(|r| r.ends_with(" (deleted)"));
            if unnamed || (t.starts_with(&named) && t.ends_with(".tmp")) {
                return Some(fd.path());
            }
        }
    }
    None
}

/// How a checkpoint ends for the process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ending {
    /// It goes on running.
    Goes,
    /// Its last checkpoint: written with it stopped, then it ends (SIGKILL).
    Kill,
    /// Its last checkpoint, after which it (its whole tree) stays stopped (SIGSTOP) at its image
    /// until it is continued (SIGCONT) or killed. If the image cannot be written it goes on.
    Hold,
}

/// A checkpoint in place.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The image's path.
    pub image: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// Every process of the image (the root of a tree first), by PID as ckpt sees them: those a
    /// held tree has stopped, for the caller to continue or kill.
    pub pids: Vec<u32>,
}

/// A checkpoint of process `pid` (its image to `to` if given, else to its image path), taken as
/// `ckpt checkpoint --wait` takes it (with `--kill` or `--hold` for `ending`), waiting until
/// the image is in place (at most `timeout`). Errors as the command's: its exit code and line.
/// (Called by `ckpt migrate`, in-process.)
#[allow(dead_code)]
pub fn take(pid: u32, to: Option<&Path>, ending: Ending, timeout: Duration) -> Result<Taken, (u8, String)> {
    let args = CheckpointArgs {
        pid,
        image: None,
        wait: true,
        kill: ending == Ending::Kill,
        hold: ending == Ending::Hold,
        to: to.map(Path::to_path_buf),
        timeout: timeout.as_secs_f64().max(0.001),
        key: None,
        keep: 0,
        compress: false,
        self_contained: false,
    };
    taken(args).map(|t| t.expect("a checkpoint waited for says its image"))
}

pub fn checkpoint(a: CheckpointArgs) -> Outcome {
    let (asked, started, hold) = (a.pid, Instant::now(), a.hold);
    match taken(a)? {
        None => Ok(ExitCode::SUCCESS),
        Some(t) => {
            print_taken(&t, started)?;
            if hold {
                let tree = if t.pids.len() > 1 { format!(" (with the {} processes of its tree)", t.pids.len() - 1) } else { String::new() };
                println!("process {asked}{tree} is stopped at its image: kill -CONT to let it go on, kill -9 to end it");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The ending `a` asks for.
fn ending_of(a: &CheckpointArgs) -> Ending {
    match (a.kill, a.hold) {
        (true, _) => Ending::Kill,
        (_, true) => Ending::Hold,
        _ => Ending::Goes,
    }
}

/// `--to PATH`, made absolute and checked as an image path is (its directory exists and may be
/// written in, it is no directory, it fits the report page).
fn redirect_path(asked: u32, to: &Path) -> Result<PathBuf, (u8, String)> {
    let to = std::path::absolute(to).map_err(|e| (EXIT_REFUSED, format!("--to {}: {}", crate::shown(to), crate::io_message(&e))))?;
    if to.as_os_str().len() > ckpt_image::report::TO_PATH_MAX {
        return Err((EXIT_REFUSED, format!("--to {}: longer than {} bytes; none was sent to process {asked}", crate::shown(&to), ckpt_image::report::TO_PATH_MAX)));
    }
    crate::imagefile::check_image_dir(&to)?;
    Ok(to)
}

/// The checkpoint `a` asks for; `None` when it was only asked for (no `--wait`, `--kill` or
/// `--hold`).
fn taken(a: CheckpointArgs) -> Result<Option<Taken>, (u8, String)> {
    // `ckpt restart`'s PID is myrestart's: the program it restored is below it.
    let asked = a.pid;
    let pid = crate::report::program_behind(asked);
    let ending = ending_of(&a);
    let to = a.to.as_deref().map(|t| redirect_path(asked, t)).transpose()?;
    // The tests' probe of the attach machinery (see libckpt's probe.rs), in place of the
    // checkpoint entry.
    let probe = std::env::var_os("CKPT_ATTACH_PROBE").is_some_and(|v| v == "1");
    if probe || !runs_libckpt(asked, pid)? {
        return attached(asked, pid, a, to, ending, probe);
    }
    if let Some(option) = a.attach_only() {
        return Err((EXIT_REFUSED, format!("process {asked} runs under libckpt, which takes its images with the settings it started with: {option} is for a process started without ckpt (`ckpt run` takes it)")));
    }
    let env = environ(pid);
    let signal = checkpoint_signal_of(asked, pid, &env)?;
    let own_path = image_of(asked, pid, a.image, &env)?;
    let mut page = crate::report::Page::of(pid);
    // Checkpoints the process had begun before this one: ours is a later one.
    let base = page.read().map_or(0, |s| s.started);
    let (image, own) = match &to {
        // A redirected image is written at PATH exactly, by any process.
        Some(to) => (to.clone(), to.clone()),
        None => {
            let own = own_image(&own_path, pid);
            (own_path, own)
        }
    };
    let before = identity(&image);
    let before_own = identity(&own);
    let started = Instant::now();
    let value = match ending {
        Ending::Kill => ckpt_sigsafe::signals::LAST_CHECKPOINT,
        Ending::Hold => ckpt_sigsafe::signals::LAST_CHECKPOINT | ckpt_sigsafe::signals::LAST_HOLD,
        // Queued with ckpt's value: a program with a handler of its own for the signal (the
        // JVM's SIGUSR2) gets every signal but ckpt's requests.
        Ending::Goes => ckpt_sigsafe::signals::CHECKPOINT_REQUEST,
    };
    let redirect = match &to {
        Some(to) => Some(page.redirect(to.as_os_str().as_encoded_bytes()).map_err(|why| (EXIT_FAILED, format!("cannot send the checkpoint of process {asked} to {}: {why}; none was sent", crate::shown(to))))?),
        None => None,
    };
    let value = ckpt_sigsafe::signals::with_redirect(value, redirect.unwrap_or(0));
    if let Err(e) = ckpt_sigsafe::sys::sigqueue(pid, signal as u32, value) {
        return Err((EXIT_FAILED, format!("cannot signal process {asked}: {}", std::io::Error::from_raw_os_error(e.raw_os_error()))));
    }
    let request = Request { asked, pid, image, own, signal, value, ending, redirect, timeout: a.timeout, started, before, before_own };
    if !(a.wait || ending != Ending::Goes) {
        // Not followed, but not left pending forever behind a mask either.
        request.deliver_blocked(&mut Vec::new())?;
        return Ok(None);
    }
    request.wait(page, base).map(Some)
}

/// The image a process writes when it descends from the one that started with the library (a
/// child it ran, or forked: a daemon's server that left its tree): `IMAGE-PID`, by the PID it
/// has in its own namespace.
fn own_image(image: &Path, pid: u32) -> PathBuf {
    let mut own = image.as_os_str().to_owned();
    own.push(format!("-{}", crate::report::own_pid(pid)));
    PathBuf::from(own)
}

/// Why this user may not read process `pid`'s memory map, and what would let them: its owner,
/// for another user's process; root (`CAP_SYS_PTRACE`), for one of their own that made itself
/// not dumpable (`prctl(PR_SET_DUMPABLE, 0)`, a setuid program), which its writer cannot
/// checkpoint either.
fn permission_denied(asked: u32, pid: u32) -> String {
    // Its status stays readable when it is not dumpable (its /proc files then belong to root).
    let status = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
    let real_uid = ckpt_sigsafe::proctext::status_field(&status, b"Uid:").and_then(|ids| ids.split(|c| c.is_ascii_whitespace()).next()).and_then(|u| std::str::from_utf8(u).ok()?.parse::<u32>().ok());
    let own = real_uid == Some(crate::os::euid());
    if own {
        format!("process {asked} is not dumpable (it called prctl(PR_SET_DUMPABLE, 0), or runs a setuid or unreadable program): it can be checkpointed only as root")
    } else {
        format!("process {asked} belongs to another user: checkpoint it as its owner")
    }
}

/// Whether the process runs under libckpt.so (else it is checkpointed from outside).
fn runs_libckpt(asked: u32, pid: u32) -> Result<bool, (u8, String)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => format!("no process {asked}"),
            std::io::ErrorKind::PermissionDenied => permission_denied(asked, pid),
            _ => format!("process {asked}: /proc/{pid}/maps: {}", crate::io_message(&e)),
        };
        (EXIT_REFUSED, why)
    })?;
    if !maps.lines().any(|l| l.ends_with("/libckpt.so")) {
        return Ok(false);
    }
    Ok(true)
}

/// The checkpoint of a process without libckpt: ckpt attaches to it, runs libckpt's attached
/// checkpoint entry in it, lets it go, and (with `--wait`, `--kill`) follows the writer the
/// entry started as for a preloaded process. With `--hold` the entry writes the image as for
/// `--kill` and stops the process itself before its threads go on; ckpt lets it go stopped.
fn attached(asked: u32, pid: u32, a: CheckpointArgs, to: Option<PathBuf>, ending: Ending, probe: bool) -> Result<Option<Taken>, (u8, String)> {
    use ckpt_sigsafe::attach as abi;
    let image = match (to, a.image) {
        (Some(to), _) => to,
        (None, Some(p)) => std::path::absolute(&p).unwrap_or(p),
        // As a preloaded process's default: myckpt where it runs.
        (None, None) => std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default().join("myckpt"),
    };
    let key = crate::key::configured(a.key.as_deref()).map(|k| std::path::absolute(&k).unwrap_or(k));
    if let Some(k) = &key {
        crate::key::read(k)?;
    }
    let (last, hold) = (ending != Ending::Goes, ending == Ending::Hold);
    let req = crate::attach::Request {
        entry: if probe { "ckpt_attach_probe".into() } else { abi::ENTRY.to_string_lossy().into_owned() },
        image: image.clone(),
        key,
        keep: a.keep,
        flags: [(last, abi::FLAG_LAST), (hold, abi::FLAG_HOLD), (a.compress, abi::FLAG_COMPRESS), (a.self_contained, abi::FLAG_SELF_CONTAINED)].into_iter().filter(|f| f.0).fold(0, |all, f| all | f.1),
        timeout: Duration::from_secs_f64(a.timeout),
        kill: ending == Ending::Kill,
    };
    let before = identity(&image);
    let started = Instant::now();
    // The processes of the image, before a last checkpoint ends them.
    let pids = members(pid);
    let done = crate::attach::run(asked, pid, &req)?;
    let r = &done.results;
    let pause_ms = done.pause.as_secs_f64() * 1000.0;
    if probe {
        println!("probe: returned {}, status {:#x}, message: {}; process stopped {pause_ms:.3} ms", done.returned, r.status, r.message);
        return Ok(None);
    }
    if std::env::var_os("CKPT_ATTACH_TIMES").is_some() {
        eprintln!("ckpt: process {asked} was stopped for {pause_ms:.3} ms (its writer: process {})", r.writer_pid);
    }
    let shown = crate::shown(&image);
    if r.status != 0 {
        let why = match (r.message.is_empty(), r.status) {
            (false, _) => r.message.clone(),
            (true, crate::attach::NOT_TAKEN) => format!("libckpt.so's checkpoint entry did not take ckpt's request (it returned {}): install ckpt and libckpt.so from the same build", done.returned),
            (true, status) => format!("status {status}"),
        };
        return Err((
            EXIT_FAILED,
            match ending {
                Ending::Kill => format!("the last checkpoint of process {asked} failed: {why}; no image of this run of it exists, so it was not ended: it goes on running"),
                Ending::Hold => format!("the checkpoint of process {asked} to hold it failed: {why}; it was not stopped: it goes on running"),
                Ending::Goes => format!("the checkpoint of process {asked} failed: {why}; it goes on, and nothing at {shown} changed"),
            },
        ));
    }
    let deadline = started + Duration::from_secs_f64(a.timeout);
    if done.killed {
        wait_gone(pid, deadline);
        return written(&image, pids).map(Some);
    }
    if hold {
        // Listed again now that the image is in place: a helper of an earlier checkpoint that
        // was still below it at the start (a writer's short-lived parent) is gone.
        let pids = members(pid);
        wait_held(asked, &pids, deadline)?;
        return written(&image, pids).map(Some);
    }
    if !a.wait {
        return Ok(None);
    }
    let mut page = match done.report {
        Some(f) => crate::report::Page::opened(pid, f),
        None => crate::report::Page::none(pid),
    };
    // The page counts this process's checkpoints: ours is the last one begun.
    let base = page.read().map_or(0, |s| s.started.wrapping_sub(1));
    let own = own_image(&image, pid);
    let before_own = identity(&own);
    let request = Request { asked, pid, image, own, signal: 0, value: 0, ending: Ending::Goes, redirect: None, timeout: a.timeout, started, before, before_own };
    request.wait(page, base).map(Some)
}

/// The processes a checkpoint of process `pid` takes: it, and every live process below it but
/// libckpt's own helpers, image writers and the thread stopper (a tree is checkpointed whole).
fn members(pid: u32) -> Vec<u32> {
    let below = crate::attach::descendants(pid).into_iter().filter(|&p| !crate::report::is_libckpt_helper(&crate::report::comm(p)));
    std::iter::once(pid).chain(below).collect()
}

/// Waits (until `deadline`) for every process of `pids` to be stopped, as a held checkpoint
/// leaves them (each stops itself once its image is in place).
fn wait_held(asked: u32, pids: &[u32], deadline: Instant) -> Result<(), (u8, String)> {
    loop {
        let running: Vec<u32> = pids.iter().copied().filter(|&p| !held(p)).collect();
        if running.is_empty() {
            return Ok(());
        }
        if let Some(&gone) = running.iter().find(|&&p| !alive(p)) {
            return Err((EXIT_FAILED, format!("process {gone} of the image of process {asked} ended instead of stopping at its image")));
        }
        if Instant::now() > deadline {
            return Err((EXIT_FAILED, format!("the image of process {asked} is in place, but process {} did not stop at it", running[0])));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The value of `k` in the process's environment `env`.
fn env_var(env: &[(String, String)], k: &str) -> Option<String> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// The process's checkpoint signal (its CKPT_SIGNAL, default SIGUSR2), which it must handle.
fn checkpoint_signal_of(asked: u32, pid: u32, env: &[(String, String)]) -> Result<i32, (u8, String)> {
    let signal = match env_var(env, "CKPT_SIGNAL") {
        Some(s) => signal_number(&s).ok_or((EXIT_REFUSED, format!("process {asked} has an unusable CKPT_SIGNAL={s}")))?,
        None => libc::SIGUSR2,
    };
    let status = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught = ckpt_sigsafe::proctext::status_field(&status, b"SigCgt:").and_then(ckpt_sigsafe::proctext::parse_hex).unwrap_or(0);
    if caught & (1u64 << (signal - 1)) == 0 {
        return Err((EXIT_REFUSED, format!("process {asked} does not handle signal {signal}; the checkpoint signal would kill it, so none was sent")));
    }
    Ok(signal)
}

/// Where the process writes its image: the CKPT_IMAGE it started with, which `--image` (if
/// given) must name; without one, `--image` or the default, from the process's directory.
fn image_of(asked: u32, pid: u32, given: Option<PathBuf>, env: &[(String, String)]) -> Result<PathBuf, (u8, String)> {
    let resolve = |p: Option<PathBuf>| match p {
        Some(p) if p.is_absolute() => p,
        other => {
            // A relative or default path is relative to where the process started; its
            // current directory is the best guess from outside.
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            cwd.join(other.unwrap_or_else(|| PathBuf::from("myckpt")))
        }
    };
    // ckpt run always gives an absolute path; a relative one depends on where the process
    // started, which ckpt can only guess.
    let configured = env_var(env, "CKPT_IMAGE").map(PathBuf::from).filter(|p| p.is_absolute());
    Ok(match (given, configured) {
        (Some(asked_image), Some(conf)) => {
            let asked_image = std::path::absolute(&asked_image).unwrap_or(asked_image);
            if asked_image != conf {
                return Err((
                    EXIT_REFUSED,
                    format!("process {asked} writes its image to {} (chosen when it started: CKPT_IMAGE, or `ckpt run --image`), not to {}; none was sent (copy the image afterwards)", crate::shown(&conf), crate::shown(&asked_image)),
                ));
            }
            conf
        }
        (_, Some(conf)) => conf,
        (asked_image, None) => resolve(asked_image.or_else(|| env_var(env, "CKPT_IMAGE").map(PathBuf::from))),
    })
}

/// A checkpoint asked of a process, followed until it is written (`--wait`, `--kill`).
struct Request {
    /// The PID the user gave, and the process behind it.
    asked: u32,
    pid: u32,
    image: PathBuf,
    /// Where the process writes instead if it descends from another ([`own_image`]).
    own: PathBuf,
    signal: i32,
    /// The value the request was queued with, and how it ends the process.
    value: u64,
    ending: Ending,
    /// The number of the `--to` path left in the report page.
    redirect: Option<u32>,
    timeout: f64,
    started: Instant,
    /// The image at the path before it, and at `own`.
    before: Option<crate::imagefile::FileId>,
    before_own: Option<crate::imagefile::FileId>,
}

impl Request {
    /// The image the process wrote: at its image path, or, when only its own (`IMAGE-PID`)
    /// is new, that one.
    fn written(&self) -> &Path {
        let new_own = identity(&self.own).is_some_and(|id| Some(id) != self.before_own);
        if new_own && identity(&self.image) == self.before {
            &self.own
        } else {
            &self.image
        }
    }

    /// Waits for the checkpoint: for what the process's report page says of it, or, without
    /// one, for its image file; shows the writer's progress on a terminal.
    fn wait(&self, mut page: crate::report::Page, mut base: u32) -> Result<Taken, (u8, String)> {
        use ckpt_image::report::Outcome as O;
        let (asked, pid, image, started) = (self.asked, self.pid, &self.image, self.started);
        let last = self.ending != Ending::Goes;
        // The processes of the image (a held tree's, for the caller to continue or kill).
        let pids = members(pid);
        // A `--to` request is followed by the checkpoint that took its path: until one has,
        // any outcome is another checkpoint's (a periodic one, which a request sent meanwhile
        // merged into), and the request is sent again.
        let mut redirect = self.redirect;
        let tty = std::io::stderr().is_terminal();
        let deadline = started + Duration::from_secs_f64(self.timeout);
        let mut saw_writer = false;
        let mut last_progress = Instant::now();
        let (mut delivered, mut last_look) = (Vec::new(), started);
        let end_progress = || {
            if tty {
                eprint!("\r\x1b[K");
            }
        };
        loop {
            // The process says what became of the checkpoint in its report page (a restored
            // process makes its page when the checkpoint begins: it is looked for again).
            if let Some(seq) = redirect {
                match page.redirect_state() {
                    Some((0, taken)) if taken != 0 => {
                        base = taken.wrapping_sub(1);
                        redirect = None;
                    }
                    Some((now, _)) if now != seq && now != 0 => {
                        end_progress();
                        return Err((EXIT_FAILED, format!("another ckpt asked process {asked} for a checkpoint to another path meanwhile; none was written to {}", crate::shown(image))));
                    }
                    _ => {}
                }
            }
            if let Some(s) = page.read() {
                match crate::report::outcome_after(&s, base) {
                    // Asked for the last checkpoint or a redirected one, another answered: a
                    // periodic one, or the request merged into a checkpoint signal already
                    // pending. Asked again.
                    Some(O::Written | O::Failed) if last || redirect.is_some() => {
                        base = s.done;
                        if redirect.is_none() || page.redirect_state().is_some_and(|(now, _)| Some(now) == redirect) {
                            let _ = ckpt_sigsafe::sys::sigqueue(pid, self.signal as u32, self.value);
                        }
                    }
                    Some(_) => {
                        end_progress();
                        return outcome(asked, pid, self.written(), &s, started, deadline, self.ending, pids);
                    }
                    None => {}
                }
            }
            if page.exists() {
                if !alive(pid) {
                    end_progress();
                    return Err((EXIT_FAILED, format!("process {asked} ended before its checkpoint was written; nothing at {} changed", crate::shown(image))));
                }
                if page.read().is_some_and(|s| s.started == base) && started.elapsed() > Duration::from_secs(1) && stopped(pid) {
                    end_progress();
                    return Err((EXIT_FAILED, format!("process {asked} is stopped, so it cannot take the checkpoint now (`kill -CONT {asked}` lets it go on; it takes the checkpoint then)")));
                }
            } else if started.elapsed() > Duration::from_secs(1) && self.written_without_page(&mut saw_writer)? {
                break;
            }
            if last_look.elapsed() > Duration::from_millis(100) {
                last_look = Instant::now();
                self.deliver_blocked(&mut delivered).inspect_err(|_| end_progress())?;
            }
            if let Some(size) = writer_file(pid, image).map(|m| m.blocks() * 512) {
                if tty && last_progress.elapsed() > Duration::from_millis(200) {
                    eprint!("\rckpt: writing {}: {} MB ", crate::shown(image), size / 1_000_000);
                    let _ = std::io::stderr().flush();
                    last_progress = Instant::now();
                }
            }
            if Instant::now() > deadline {
                end_progress();
                return Err((EXIT_FAILED, format!("no new image at {} after {} s", crate::shown(image), self.timeout)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        end_progress();
        written(self.written(), pids)
    }

    /// Delivers the checkpoint signal with ptrace to the process, or a process below it, that
    /// blocks it in every thread (see `unblock`), once each (`done`); says why when it cannot.
    fn deliver_blocked(&self, done: &mut Vec<u32>) -> Result<(), (u8, String)> {
        // An attached process was sent no signal.
        if self.signal == 0 {
            return Ok(());
        }
        crate::unblock::deliver_where_blocked(self.pid, self.asked, self.signal, done).map_err(|why| (EXIT_FAILED, why))
    }

    /// A process without a report page (it could not have one), followed by its image file
    /// and its writer: whether the new image is there, or why the checkpoint failed.
    fn written_without_page(&self, saw_writer: &mut bool) -> Result<bool, (u8, String)> {
        let (asked, pid, image) = (self.asked, self.pid, &self.image);
        let new = identity(image).is_some_and(|id| Some(id) != self.before) || identity(&self.own).is_some_and(|id| Some(id) != self.before_own);
        let last = self.ending != Ending::Goes;
        if new && !(last && alive(pid)) {
            return Ok(true);
        }
        let writing = writer_file(pid, image).is_some();
        *saw_writer |= writing;
        if !writing && (if last { !alive(pid) } else { *saw_writer }) && identity(image) == self.before {
            return Err((EXIT_FAILED, format!("the checkpoint of process {asked} failed (its stderr says why); {} is unchanged", crate::shown(image))));
        }
        if !*saw_writer && !last && self.started.elapsed() > Duration::from_secs(3) {
            return Err((EXIT_FAILED, format!("process {asked} did not start writing {} (its stderr says why)", crate::shown(image))));
        }
        Ok(false)
    }
}

/// The image in place at `image`, of the processes `pids`.
fn written(image: &Path, pids: Vec<u32>) -> Result<Taken, (u8, String)> {
    let meta = std::fs::metadata(image).map_err(|e| (EXIT_FAILED, format!("{}: {e}", crate::shown(image))))?;
    Ok(Taken { image: image.to_path_buf(), bytes: meta.len(), pids })
}

/// Prints the line `--wait` promises: the image's path, size, space and how long it took.
fn print_taken(t: &Taken, started: Instant) -> Result<(), (u8, String)> {
    let allocated = std::fs::metadata(&t.image).map_or(0, |m| m.blocks() * 512);
    println!("{} {} bytes ({} allocated) in {:.3} s", crate::shown(&t.image), t.bytes, allocated, started.elapsed().as_secs_f64());
    Ok(())
}

/// Waits (until `deadline`) for process `pid` to end, as it does after a last checkpoint.
fn wait_gone(pid: u32, deadline: Instant) {
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What `ckpt checkpoint` says of the checkpoint the process reported in `s`, which ended it
/// as `ending` asked (the processes of its image: `pids`).
#[allow(clippy::too_many_arguments)]
fn outcome(asked: u32, pid: u32, image: &Path, s: &crate::report::Snapshot, started: Instant, deadline: Instant, ending: Ending, pids: Vec<u32>) -> Result<Taken, (u8, String)> {
    use ckpt_image::report::Outcome as O;
    let _ = started;
    let why = &s.message;
    let shown = crate::shown(image);
    match s.outcome {
        Some(O::Written) => written(image, pids),
        Some(O::LastWritten) => {
            wait_gone(pid, deadline);
            written(image, pids)
        }
        Some(O::Held) => {
            // Listed again now that the image is in place (as for an attached process): a
            // helper of an earlier checkpoint below it at the start may have ended since.
            let pids = members(pid);
            wait_held(asked, &pids, deadline)?;
            written(image, pids)
        }
        Some(O::LastFailedEnds) => {
            wait_gone(pid, deadline);
            let taken = crate::inspect::taken(image).map(|t| format!(", taken {t}")).unwrap_or_default();
            Err((EXIT_FAILED, format!("the last checkpoint of process {asked} failed: {why}; it ended, as asked: its last image is {shown}{taken}")))
        }
        Some(O::LastFailedGoesOn) if ending == Ending::Hold => Err((EXIT_FAILED, format!("the checkpoint of process {asked} to hold it failed: {why}; it was not stopped: it goes on running"))),
        Some(O::LastFailedGoesOn) => Err((EXIT_FAILED, format!("the last checkpoint of process {asked} failed: {why}; no image of this run of it exists, so it was not ended: it goes on running"))),
        Some(O::LastFailedStopped) => Err((EXIT_FAILED, format!("the last checkpoint of process {asked} failed: {why}; no image of this run of it exists, so it was not ended: it is stopped (`kill -CONT {asked}` lets it go on)"))),
        Some(O::Failed) | None => Err((EXIT_FAILED, format!("the checkpoint of process {asked} failed: {why}; it goes on, and nothing at {shown} changed"))),
    }
}

/// Whether process `pid` is stopped (by SIGSTOP, or a terminal).
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    ckpt_sigsafe::proctext::stat_state(&stat) == Some(b'T')
}

/// Whether every thread of process `pid` is stopped as a held checkpoint leaves it: in the
/// group stop its SIGSTOP began ('T'), or, a thread libckpt's thread stopper (`ckpt-seize`)
/// holds with ptrace, in a trace stop ('t'), which it stays in until the stopper lets it go once
/// the process is continued. The stopper holds any thread that blocked the checkpoint's stop
/// signal as the checkpoint began, the leader too (glibc's `pthread_kill` blocks every signal
/// for a moment): the process's own state, its leader's, is then 't', never 'T'. The thread that
/// took the checkpoint is never held so: the process counts as stopped only once it has stopped
/// itself too. Threads that ended meanwhile do not count.
fn held(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    let mut any = false;
    for t in tasks.flatten() {
        let stat = std::fs::read(t.path().join("stat")).unwrap_or_default();
        match ckpt_sigsafe::proctext::stat_state(&stat) {
            Some(b'T' | b't') => any = true,
            None => {}
            Some(_) => return false,
        }
    }
    any
}

/// Whether process `pid` still runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    ckpt_sigsafe::proctext::stat_state(&stat).is_some_and(|state| state != b'Z' && state != b'X')
}
