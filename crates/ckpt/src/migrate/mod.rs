//! `ckpt migrate PID [USER@]HOST`: moves a running program to another machine. The far side is
//! `ckpt receive` (receive.rs), which ssh starts there; the two speak wire.rs's frames, ours on
//! the direct channel (channel.rs: a TCP connection sealed under a key handed over through ssh)
//! or, without it, on ssh's stdin; the far side's always on ssh's stdout.
//!
//! The program runs on while its first, full image is taken and sent, then while rounds of the
//! pages it wrote since are (incremental images, send.rs); it stops only for the last round.
//! The commit order makes sure two copies never run and the program is never lost: the
//! original is held (stopped) from its last image on; it is killed only once the far side says
//! the copy runs, and continued if the far side refuses or fails before that. Only a
//! connection that breaks after the restart was asked leaves a doubt, which is said as such.

mod channel;
mod receive;
mod send;
mod wire;

pub use receive::{receive, ReceiveArgs};

use crate::checkpoint::{take, Ending};
use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use clap::Args;
use receive::PrivateDir;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use send::To;
use wire::{Frame, Kind};

#[derive(Args)]
pub struct MigrateArgs {
    /// The process to move (one started by `ckpt run`, `ckpt restart`, or any that `ckpt
    /// checkpoint` takes), with every process below it.
    pid: u32,
    /// Where to: a host name for ssh, with a user if needed (USER@HOST).
    host: String,
    /// The ssh command and its options, split like a shell's words (default: ssh), e.g.
    /// --ssh 'ssh -p 2222 -i ~/.ssh/cluster'. migrate adds -T -o BatchMode=yes.
    #[arg(long, value_name = "COMMAND")]
    ssh: Option<String>,
    /// The ckpt command on the far side (default: ckpt, found on the far side's PATH).
    #[arg(long, value_name = "PATH")]
    remote_ckpt: Option<String>,
    /// Where the images are made here (default: $XDG_RUNTIME_DIR if it is a tmpfs, else
    /// /dev/shm); a private directory is made in it and removed at the end.
    #[arg(long, value_name = "DIR")]
    local_dir: Option<PathBuf>,
    /// Where the far side keeps the images until the program runs (default as --local-dir's,
    /// there).
    #[arg(long, value_name = "DIR")]
    remote_dir: Option<String>,
    /// Return once the program runs on the far side, leaving it in a session of its own there,
    /// its standard streams that were not files on /dev/null. Without it, migrate relays them
    /// and exits with the program's status.
    #[arg(long)]
    detach: bool,
    /// Send everything through ssh's connection, as when the far side cannot be reached
    /// directly (a firewall): slower. By default the image goes on a TCP connection of its own
    /// to a port the far side opens for this migration, encrypted and authenticated with a key
    /// made for it and handed over through ssh (see docs/migrate.md); migrate falls back to ssh
    /// by itself when that port cannot be reached within 2 s.
    #[arg(long)]
    via_ssh: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Give up a checkpoint, or the far side's answer, after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = crate::checkpoint::seconds)]
    timeout: f64,
}

/// Rounds before the last: the default chain of incremental images holds 8 (see
/// docs/image-format.md), and the last round must be one of them too.
const MAX_ROUNDS: u32 = 6;
/// A round this small is the last one the program runs through: the stop is short enough.
const SMALL_ROUND: u64 = 8 << 20;

/// `word`s of a command line, split as a shell splits words: blanks separate them, quotes
/// ('…', "…") and backslashes keep blanks in one. No expansions.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("an unclosed ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().ok_or(format!("a \\ at the end of {s:?}"))?),
                        Some(c) => word.push(c),
                        None => return Err(format!("an unclosed \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or(format!("a \\ at the end of {s:?}"))?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `s` quoted for the far side's shell (ssh passes the command to it as one line).
fn quoted(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Binary sizes as the progress lines show them.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// The far side, as ssh runs it.
struct Far {
    host: String,
    ssh: Ssh,
    /// Where our frames go: ssh's stdin, or the direct channel (once the program runs, the
    /// relay of our stdin has it).
    to: To,
    /// Frames from the far side, read by a thread; the end of the channel is the end of the
    /// connection (or a stream that is not ckpt's, whose error is the last item).
    from: mpsc::Receiver<Result<Frame, String>>,
    /// What ssh and the far shell said on stderr.
    said: std::sync::Arc<std::sync::Mutex<String>>,
    remote_ckpt: String,
}

impl Far {
    fn start(a: &MigrateArgs) -> Result<Far, (u8, String)> {
        let words = shell_words(a.ssh.as_deref().unwrap_or("ssh")).map_err(|e| (EXIT_REFUSED, format!("--ssh: {e}")))?;
        let Some((prog, opts)) = words.split_first() else { return Err((EXIT_REFUSED, "--ssh: no command".into())) };
        let remote_ckpt = a.remote_ckpt.clone().unwrap_or_else(|| "ckpt".into());
        let mut remote = format!("{} receive", quoted(&remote_ckpt));
        if let Some(d) = &a.remote_dir {
            remote.push_str(&format!(" --dir {}", quoted(d)));
        }
        let mut cmd = Command::new(prog);
        // In a process group of its own: a Ctrl-C at the terminal is migrate's to decide on
        // (see ENDING), not a broken connection in the middle of the move.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(opts).args(["-T", "-o", "BatchMode=yes", "--", &a.host, &remote]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ssh = Ssh(cmd.spawn().map_err(|e| (EXIT_REFUSED, format!("cannot run {prog}: {}", crate::io_message(&e))))?);
        let to = To::Ssh { w: BufWriter::with_capacity(1 << 16, ssh.0.stdin.take().expect("piped")), splice: true };
        let mut out = BufReader::with_capacity(1 << 16, ssh.0.stdout.take().expect("piped"));
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || loop {
            match wire::read(&mut out) {
                Ok(Some(f)) => {
                    if tx.send(Ok(f)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        });
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = ssh.0.stderr.take().expect("piped");
        let keep = said.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                keep.lock().unwrap_or_else(|e| e.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(Far { host: a.host.clone(), ssh, to, from, said, remote_ckpt })
    }

    /// Why the connection ended, from ssh's exit status and what it said.
    fn why_ended(&mut self) -> String {
        // ssh ends soon after its stdout does; its stderr is read by then.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match self.ssh.0.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => break None,
            }
        };
        std::thread::sleep(Duration::from_millis(20));
        let said = self.said.lock().unwrap_or_else(|e| e.into_inner()).trim().lines().last().unwrap_or("").to_string();
        let said = if said.is_empty() { String::new() } else { format!(": {said}") };
        match status.and_then(|s| s.code()) {
            Some(127) => format!("{} not found on {} (install ckpt there, or name it with --remote-ckpt){said}", self.remote_ckpt, self.host),
            Some(126) => format!("{} cannot be run on {}{said}", self.remote_ckpt, self.host),
            Some(255) => format!("ssh to {} failed{said}", self.host),
            Some(c) => format!("the connection to {} ended (exit status {c}){said}", self.host),
            None => format!("the connection to {} ended{said}", self.host),
        }
    }

    /// The next frame, waiting at most until `deadline`; why there is none.
    fn next(&mut self, deadline: Instant) -> Result<Frame, String> {
        match self.from.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => Err(format!("{} speaks no protocol of ckpt's ({e}; is something printed at login there?)", self.host)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no answer from {} in time", self.host)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.why_ended()),
        }
    }

    /// The frames the far side sent unasked: the answers to the checks of files sent as they
    /// were written (their ids leave `checks`; one found wrong is forgotten by `sender`, and
    /// sent again whole by the next round: true), or an error, which ends everything. With
    /// `wait`, until `checks` is empty (or `deadline`).
    fn unasked(&mut self, checks: &mut Vec<(String, send::Id)>, sender: &mut send::Sender, wait: bool, deadline: Instant) -> Result<bool, String> {
        let mut again = false;
        loop {
            let got = if wait && !checks.is_empty() {
                match self.from.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(f) => Ok(f),
                    Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("{} did not check the first image in time", self.host)),
                    Err(mpsc::RecvTimeoutError::Disconnected) => Err(mpsc::TryRecvError::Disconnected),
                }
            } else {
                self.from.try_recv()
            };
            match got {
                Ok(Ok(f)) if f.kind == Kind::Error => return Err(format!("{}: {}", self.host, f.text())),
                // A far side that gave up waiting for a direct connection just as we gave up
                // connecting: both went on through ssh.
                Ok(Ok(f)) if f.kind == Kind::Direct => {}
                Ok(Ok(f)) if f.kind == Kind::Checked && !f.payload.is_empty() => {
                    let name = String::from_utf8_lossy(&f.payload[1..]).into_owned();
                    if let Some(i) = checks.iter().position(|(n, _)| *n == name) {
                        let (_, id) = checks.remove(i);
                        if f.payload[0] == wire::CHECKED_BAD {
                            sender.forget(id);
                            again = true;
                        }
                    }
                }
                Ok(Ok(f)) => return Err(format!("{} sent a {:?} frame out of turn", self.host, f.kind)),
                Ok(Err(_)) | Err(mpsc::TryRecvError::Disconnected) => return Err(self.why_ended()),
                Err(mpsc::TryRecvError::Empty) => return Ok(again),
            }
        }
    }

    /// Sets up the direct channel to the far side, which offered `offer` (its `direct` fact:
    /// the address and port it listens on, or why not): hands it a fresh key through ssh,
    /// connects, and waits for its word that it took the connection; from then on our frames
    /// go on it. The address connected to; or why not, and the frames keep going through ssh
    /// (the far side is told, or has said so itself). An outer error is one that ends the
    /// migration (the connection to the far side broke).
    fn go_direct(&mut self, offer: &str, host: &str, deadline: Instant) -> Result<Result<std::net::SocketAddr, String>, String> {
        let Ok(offered) = offer.parse::<std::net::SocketAddr>() else {
            return Ok(Err(format!("{host} offers no direct connection ({})", if offer.is_empty() { "it did not say why" } else { offer })));
        };
        let Some(key) = channel::new_key() else { return Ok(Err("no random key for a direct connection".into())) };
        let said = wire::write(&mut self.to, Kind::Key, &[&key]).and_then(|_| self.to.flush());
        said.map_err(|e| self.write_failed(e))?;
        let port = match std::env::var("CKPT_MIGRATE_TEST_DIRECT_PORT") {
            // For the tests: a port nothing listens on, as behind a firewall.
            Ok(p) => p.parse().unwrap_or(offered.port()),
            Err(_) => offered.port(),
        };
        let stream = connect(offered, port, host, Duration::from_secs(2));
        let (stream, to) = match stream {
            Ok(s) => s,
            Err(why) => {
                // The far side stops listening when it sees this (it does not answer it).
                let said = wire::write(&mut self.to, Kind::Direct, &[]).and_then(|_| self.to.flush());
                said.map_err(|e| self.write_failed(e))?;
                return Ok(Err(why));
            }
        };
        // A greeting that cannot be written: the far side gives up waiting, and says so.
        let w = channel::Sealer::new(&key, stream);
        // Its answer, on ssh: it took this connection (everything of ours goes on it from
        // here), or it gave up waiting for one (everything goes through ssh).
        let f = self.next(deadline)?;
        match (f.kind, f.payload.first(), w) {
            (Kind::Direct, Some(&1), Ok(mut w)) => {
                if std::env::var_os("CKPT_MIGRATE_TEST_TAMPER").is_some() {
                    w.spoil_next();
                }
                let To::Ssh { w: ssh, .. } = std::mem::replace(&mut self.to, To::Nowhere) else { unreachable!("the frames went through ssh until now") };
                self.to = To::Direct { w: Box::new(w), _ssh: ssh };
                Ok(Ok(to))
            }
            (Kind::Direct, Some(&1), Err(_)) => Err(format!("{host} took a direct connection that failed here")),
            (Kind::Direct, _, _) => Ok(Err(format!("{host} did not take the direct connection to {to} ({})", String::from_utf8_lossy(f.payload.get(1..).unwrap_or_default())))),
            (Kind::Error, _, _) => Err(format!("{host}: {}", f.text())),
            (kind, _, _) => Err(format!("{host} sent a {kind:?} frame out of turn")),
        }
    }

    /// A failure to write: the far side's own reason when it gave one.
    fn write_failed(&mut self, e: std::io::Error) -> String {
        match self.from.recv_timeout(Duration::from_secs(2)) {
            Ok(Ok(f)) if f.kind == Kind::Error => format!("{}: {}", self.host, f.text()),
            _ => format!("{} ({})", self.why_ended(), crate::io_message(&e)),
        }
    }
}

/// The ssh process, ended when dropped: the far side then sees its input end, and stops.
struct Ssh(std::process::Child);

impl Drop for Ssh {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The signals that would end migrate: held (blocked) from its start, so that none ends it
/// while the program is stopped here, or with its directory left behind; looked at between
/// steps, and once the program runs there, passed on to it.
const ENDING: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

pub fn migrate(a: MigrateArgs) -> Outcome {
    STARTED.get_or_init(Instant::now);
    crate::os::ignore_sigpipe();
    // Before any thread starts: threads inherit the mask.
    let signals = crate::os::SignalSet::of(ENDING);
    signals.block();
    let interrupted = |signals: &crate::os::SignalSet| signals.wait(Duration::ZERO).map(|r| (EXIT_FAILED, format!("interrupted (signal {}); process {} goes on running here", r.sig, a.pid)));
    let timeout = Duration::from_secs_f64(a.timeout);
    let pid = a.pid;
    if !alive(pid) {
        return Err((EXIT_REFUSED, format!("no process {pid}")));
    }
    let say = |line: String| {
        if !a.quiet {
            eprintln!("ckpt: {line}");
        }
    };
    let local = PrivateDir::make(a.local_dir.as_deref(), "migrate").map_err(|e| (EXIT_FAILED, format!("{e}; process {pid} was not touched")))?;
    let image = local.0.join("img");
    let mut far = Far::start(&a)?;
    // Round 0's image is begun at once, while ssh connects and the far side starts: it is
    // streamed from the start of its file once the far side is there, and catches up. If the
    // far side fails, the program goes on as after any checkpoint (the image, which nothing
    // else refers to, is removed with the directory once its writer is done: dropping `first`
    // waits for that, before `local` goes).
    // (For the tests of a file sent as it is written, which a small program's image, done before
    // ssh is, would not be: begun once the far side is there, as on a fast connection.)
    let early = std::env::var_os("CKPT_MIGRATE_TEST_SPOIL").is_none();
    let mut first = early.then(|| First::start(pid, &image, timeout));
    if early {
        times(format_args!("round 0: the checkpoint begun"));
    }
    let gone_on = |why: String| (EXIT_FAILED, format!("{why}; process {pid} goes on running here"));
    let hello = far.next(Instant::now() + Duration::from_secs(60)).map_err(gone_on)?;
    let facts = match (hello.kind, wire::parse_hello(&hello.payload)) {
        (Kind::Hello, Some((wire::VERSION, facts))) => facts,
        (Kind::Hello, Some((v, _))) => return Err(gone_on(format!("the ckpt on {} speaks version {v} of migrate's protocol, this one {}: install the same ckpt there", a.host, wire::VERSION))),
        _ => return Err(gone_on(format!("{} did not answer as ckpt receive does", a.host))),
    };
    times(format_args!("the far side answered"));
    let fact = |k: &str| facts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    if fact("restart") != "yes" {
        return Err(gone_on(format!("{} cannot restart programs: {}", a.host, fact("restart"))));
    }
    let mut sender = send::Sender::default();
    if a.via_ssh {
        say("the data goes through ssh (--via-ssh)".into());
    } else {
        match far.go_direct(&fact("direct"), &a.host, Instant::now() + timeout).map_err(gone_on)? {
            Ok(to) => say(format!("the data goes directly to {to}, encrypted (AES-128-GCM); ssh carries the control")),
            Err(why) => say(format!("{why}: the data goes through ssh")),
        }
        times(format_args!("the direct channel is set up, or not"));
    }
    let mut last = u64::MAX;
    // Files sent as they were written, whose checks the far side has not answered yet.
    let mut checks = Vec::new();
    let mut resent = false;
    for round in 0.. {
        if let Some(e) = interrupted(&signals) {
            return Err(e);
        }
        let started = Instant::now();
        let (taken, early) = if round == 0 {
            // The first image is the whole program: sent while it is written.
            let first = first.get_or_insert_with(|| First::start(pid, &image, timeout));
            let (taken, early) = first_round(&mut far, &mut sender, first, &image, &mut checks);
            (taken.map_err(|(c, why)| (c, format!("{why}; process {pid} goes on running here")))?, early.map_err(|e| gone_on(far.write_failed(e)))?)
        } else {
            (take(pid, Some(&image), Ending::Goes, timeout).map_err(|(c, why)| (c, format!("{why}; process {pid} goes on running here")))?, 0)
        };
        let written = started.elapsed();
        if far.unasked(&mut checks, &mut sender, false, Instant::now()).map_err(gone_on)? {
            // This round sends it again.
            times(format_args!("the far side found the first image wrong: sent again, whole"));
            resent = true;
        }
        let sent = match sender.round(&mut far.to, &taken.image).and_then(|n| far.to.flush().map(|_| n)) {
            Ok(n) => n + early,
            Err(e) => return Err(gone_on(far.write_failed(e))),
        };
        say(format!("round {round}: {} in {:.2} s", size(sent), started.elapsed().as_secs_f64()));
        if round == 0 {
            times(format_args!("round 0: image written and {} of it sent in {:.3} s, the rest sent in {:.3} s", size(early), written.as_secs_f64(), (started.elapsed() - written).as_secs_f64()));
        } else {
            times(format_args!("round {round}: image written in {:.3} s, sent in {:.3} s", written.as_secs_f64(), (started.elapsed() - written).as_secs_f64()));
        }
        if sent <= SMALL_ROUND || sent > last / 2 || round + 1 >= MAX_ROUNDS {
            // The far side's checks of the first image not answered yet: one more round while
            // they go on (the program running), rather than a wait whose writes would all go
            // into the last delta. Rounds are left for a first image sent again, and the last.
            if !checks.is_empty() && !resent && round + 3 < MAX_ROUNDS {
                times(format_args!("the far side's checks of the first image not answered yet: one more round meanwhile"));
                last = sent;
                continue;
            }
            // The last round is to send only the last changes: a file sent as it was written
            // that the far side found wrong is sent again, whole, by one more round before it
            // (once: it is no longer followed as it is written).
            let waited = Instant::now();
            let again = far.unasked(&mut checks, &mut sender, true, Instant::now() + timeout).map_err(gone_on)?;
            times(format_args!("the far side's checks of the first image answered after {:.3} s more", waited.elapsed().as_secs_f64()));
            if again {
                times(format_args!("the far side found the first image wrong: sent again, whole"));
            }
            if !again || resent {
                break;
            }
            resent = true;
        }
        last = sent;
    }
    if let Some(e) = interrupted(&signals) {
        return Err(e);
    }
    // The last round: from here the program is stopped.
    let stopped = Instant::now();
    let taken = take(pid, Some(&image), Ending::Hold, timeout).map_err(|(c, why)| (c, format!("{why}; process {pid} goes on running here")))?;
    let held = Held { pids: taken.pids.clone(), done: false };
    let written = stopped.elapsed();
    times(format_args!("last round: image written in {:.3} s (processes {} held)", written.as_secs_f64(), held.list()));
    let sent = sender.round(&mut far.to, &taken.image).and_then(|n| {
        let name = taken.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let flags = if a.detach { wire::DETACH } else { 0 };
        // In one write with the last bytes of the delta: ssh's connection is not made for
        // interactive use (no TCP_NODELAY), and a small write on its own after a large one can
        // wait for the acknowledgement of what went before.
        wire::write(&mut far.to, Kind::Restart, &[&[flags], name.as_bytes()])?;
        far.to.flush()?;
        Ok(n)
    });
    if let Err(e) = sent {
        let why = far.write_failed(e);
        return Err(gone_on(held.resume(why)));
    }
    times(format_args!("last round: sent, restart asked for, at {:.3} s", stopped.elapsed().as_secs_f64()));
    // Lines myrestart prints on its way (a refusal's reason comes in `Refused` too).
    let mut early = Vec::new();
    let deadline = Instant::now() + timeout;
    let supervisor;
    loop {
        match far.next(deadline) {
            Ok(f) if f.kind == Kind::Stderr => early.extend_from_slice(&f.payload),
            Ok(f) if f.kind == Kind::Stdout => write_out(&mut std::io::stdout(), &f.payload),
            Ok(f) if f.kind == Kind::Running => {
                let word = |i: usize| f.payload.get(i * 4..i * 4 + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                let checked = if word(3) == 1 { "myrestart did not check the image again" } else { "myrestart checked the image again (a file had not passed the far side's checks)" };
                times(format_args!("far side: its checks ended {} ms after the restart was asked for, the program ran after {} ms; {checked}", word(1), word(2)));
                supervisor = word(0);
                break;
            }
            // An answer to checks no longer waited for (a file followed that was not the
            // image), or the late word of a far side that gave up on a direct connection.
            Ok(f) if matches!(f.kind, Kind::Checked | Kind::Direct) => {}
            Ok(f) if matches!(f.kind, Kind::Refused | Kind::Error) => {
                return Err(gone_on(held.resume(format!("{} did not restart it: {}", a.host, f.text()))));
            }
            Ok(f) => return Err(gone_on(held.resume(format!("{} sent a {:?} frame out of turn", a.host, f.kind)))),
            Err(why) => {
                let pids = held.list();
                std::mem::forget(held);
                return Err((
                    EXIT_FAILED,
                    format!("{why}, after {} was asked to restart process {pid}: it may or may not run there, so it is kept stopped here (processes {pids}); if it does not run on {}, `kill -CONT {pids}` lets it go on here, else `kill -KILL {pids}`", a.host, a.host),
                ));
            }
        }
    }
    let stop = stopped.elapsed();
    times(format_args!("last round: running there at {:.3} s", stop.as_secs_f64()));
    // The images here are not needed any longer: their memory is freed on a thread while the
    // original's is (each takes a while for a large program).
    let removing = std::thread::spawn(move || drop(local));
    held.end();
    times(format_args!("the original is gone"));
    let _ = removing.join();
    times(format_args!("the local directory is removed"));
    say(format!("stopped for {} ms; process {pid} runs on {}", stop.as_millis(), a.host));
    // myrestart's note that the original still runs is expected: it is held, here, until the
    // copy runs (and is gone now).
    let early: Vec<u8> = early.split_inclusive(|&b| b == b'\n').filter(|l| !l.ends_with(b"as asked (--allow-running)\n")).flatten().copied().collect();
    write_out(&mut std::io::stderr(), &early);
    if a.detach {
        // Without its streams here, the one way to find it there.
        say(format!("on {} it runs below process {supervisor} (its `ckpt restart`)", a.host));
        return Ok(ExitCode::SUCCESS);
    }
    relay(far, &signals)
}

/// Connects to the far side's direct port within `budget`: first at the address it offered
/// (where the ssh connection arrived there, so right for a host with many addresses), then at
/// the addresses `host` has here if they are others (a far side behind a one-to-one NAT knows
/// only its inner address); the time shared between them. The stream and where it goes, or why
/// none.
fn connect(offered: std::net::SocketAddr, port: u16, host: &str, budget: Duration) -> Result<(std::net::TcpStream, std::net::SocketAddr), String> {
    let started = Instant::now();
    let mut tried = Vec::new();
    let mut last = String::new();
    let name = host.rsplit('@').next().unwrap_or(host).trim_start_matches('[').trim_end_matches(']');
    let first = (!offered.ip().is_unspecified()).then(|| std::net::SocketAddr::new(offered.ip(), port));
    let mut more: Option<Vec<std::net::SocketAddr>> = None;
    let mut at = 0;
    loop {
        let addr = if at == 0 && first.is_some() {
            first
        } else {
            // The host name's addresses are looked up only if the first did not answer.
            let more = more.get_or_insert_with(|| {
                use std::net::ToSocketAddrs;
                (name, port).to_socket_addrs().map(|a| a.filter(|a| Some(*a) != first).collect()).unwrap_or_default()
            });
            more.get(at - usize::from(first.is_some())).copied()
        };
        let Some(addr) = addr else { break };
        at += 1;
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            last = format!("no answer within {:.0} s", budget.as_secs_f64());
            break;
        }
        // The first address gets half the time if there may be others.
        let slice = if at == 1 && first.is_some() { left / 2 } else { left };
        tried.push(addr.to_string());
        match std::net::TcpStream::connect_timeout(&addr, slice.max(Duration::from_millis(1))) {
            Ok(s) => {
                // Records go out when they are sealed: the last round's, small, must not wait
                // for the acknowledgement of what went before.
                let _ = s.set_nodelay(true);
                return Ok((s, addr));
            }
            Err(e) => last = crate::io_message(&e),
        }
    }
    Err(format!("cannot connect directly to {} ({last})", if tried.is_empty() { format!("{host} port {port}") } else { tried.join(" or ") }))
}

/// Round 0's checkpoint, taken on a thread (begun by [`First::start`]); waited for when
/// dropped, so that its writer is done with the directory before it is removed.
struct First {
    taking: Option<std::thread::JoinHandle<Result<crate::checkpoint::Taken, (u8, String)>>>,
    /// The program's process (`pid` is the one migrate was given: a `ckpt run` in front of it,
    /// or the program itself).
    program: u32,
    /// Whether the program has processes below it (other than a writer).
    tree: bool,
}

impl First {
    fn start(pid: u32, image: &std::path::Path, timeout: Duration) -> First {
        let program = crate::report::program_behind(pid);
        // A tree's image is written by its root from parts, files of their own in the
        // directory that could be taken for it (and the far side leaves its checks to
        // myrestart): it is sent once in place.
        let tree = crate::attach::descendants(program).into_iter().any(|p| !crate::report::is_libckpt_helper(&crate::report::comm(p)));
        let image = image.to_path_buf();
        let taking = std::thread::spawn(move || take(pid, Some(&image), Ending::Goes, timeout));
        First { taking: Some(taking), program, tree }
    }

    fn is_finished(&self) -> bool {
        self.taking.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The checkpoint, once in place (a failed one, or a panic, returns its reason).
    fn join(&mut self) -> Result<crate::checkpoint::Taken, (u8, String)> {
        let taking = self.taking.take().ok_or((EXIT_FAILED, "the checkpoint was waited for already".to_string()))?;
        taking.join().unwrap_or_else(|_| Err((EXIT_FAILED, "the checkpoint failed".into())))
    }
}

impl Drop for First {
    fn drop(&mut self) {
        if let Some(t) = self.taking.take() {
            let _ = t.join();
        }
    }
}

/// Round 0: the checkpoint `first` (under way) followed as its writer writes the image, and
/// sent as it grows (not a tree's); once it is in place, what was not sent yet. The checkpoint,
/// and the bytes sent (or why sending failed). The image's name and identity go to `checks`:
/// the far side's checks say whether the bytes sent early were the writer's last word.
fn first_round(far: &mut Far, sender: &mut send::Sender, first: &mut First, image: &std::path::Path, checks: &mut Vec<(String, send::Id)>) -> (Result<crate::checkpoint::Taken, (u8, String)>, std::io::Result<u64>) {
    let (program, tree) = (first.program, first.tree);
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut growing = None;
    let mut sent = 0;
    let mut failed = None;
    while !first.is_finished() {
        let mut more = 0;
        if failed.is_none() && !tree {
            // The directory is migrate's own: the one file without a name in it is the image
            // being written.
            if growing.is_none() {
                if let Some(file) = crate::checkpoint::writer_fd(program, image).and_then(|p| std::fs::File::open(p).ok()) {
                    match sender.begin(&mut far.to, file, &name) {
                        Ok(g) => growing = Some(g),
                        Err(e) => failed = Some(e),
                    }
                }
            }
            if let Some(g) = growing.as_mut() {
                match sender.grow(&mut far.to, g).and_then(|n| far.to.flush().map(|_| n)) {
                    Ok(n) => more = n,
                    Err(e) => failed = Some(e),
                }
            }
        }
        sent += more;
        if more == 0 {
            // Looking for the writer reads much of /proc: not too often, the program (stopped
            // for the checkpoint's start meanwhile) and the writer need the CPU more. Once it
            // is found, looking at the file's length is cheap.
            std::thread::sleep(Duration::from_millis(if growing.is_none() { 10 } else { 2 }));
        }
    }
    let taken = first.join();
    if let Some(e) = failed {
        return (taken, Err(e));
    }
    let Ok(t) = &taken else { return (taken, Ok(sent)) };
    let Some(g) = growing else { return (taken, Ok(sent)) };
    let rest = sender.finish(&mut far.to, g, &t.image).map(|(more, id)| {
        if let Some(id) = id {
            checks.push((name, id));
        }
        sent + more
    });
    (taken, rest)
}

/// With CKPT_MIGRATE_TIMES set in the environment, where each round's time went, on stderr.
/// Each line begins with the seconds since migrate started.
fn times(what: std::fmt::Arguments) {
    if std::env::var_os("CKPT_MIGRATE_TIMES").is_some() {
        eprintln!("ckpt: {:.3} s: {what}", STARTED.get_or_init(Instant::now).elapsed().as_secs_f64());
    }
}

/// When migrate started (for [`times`]).
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Writes what the program printed there to our own stream (a reader that went away is no
/// matter: the program goes on).
fn write_out(w: &mut impl Write, bytes: &[u8]) {
    let _ = w.write_all(bytes).and_then(|_| w.flush());
}

/// Relays the program's streams until it ends; its status, as a shell shows it.
fn relay(mut far: Far, signals: &crate::os::SignalSet) -> Outcome {
    let to = std::mem::replace(&mut far.to, To::Nowhere);
    let to = std::sync::Arc::new(std::sync::Mutex::new(to));
    let tell = |to: &std::sync::Mutex<To>, kind: Kind, data: &[u8]| {
        let mut to = to.lock().unwrap_or_else(|e| e.into_inner());
        wire::write(&mut *to, kind, &[data]).and_then(|_| to.flush())
    };
    let stdin_to = to.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut stdin = std::io::stdin().lock();
        loop {
            let sent = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => tell(&stdin_to, Kind::StdinEnd, &[]).map(|_| false),
                Ok(n) => tell(&stdin_to, Kind::Stdin, &buf[..n]).map(|_| true),
            };
            if !matches!(sent, Ok(true)) {
                return;
            }
        }
    });
    loop {
        if let Some(r) = signals.wait(Duration::ZERO) {
            let _ = tell(&to, Kind::Signal, &[r.sig as u8]);
        }
        match far.from.recv_timeout(Duration::from_millis(50)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Ok(f)) => match f.kind {
                Kind::Stdout => write_out(&mut std::io::stdout(), &f.payload),
                Kind::Stderr => write_out(&mut std::io::stderr(), &f.payload),
                Kind::Exit => {
                    let raw = f.payload.get(..4).map_or(1 << 8, |w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                    return Ok(ExitCode::from(ckpt_sigsafe::sys::shell_status(raw) as u8));
                }
                _ => {}
            },
            _ => return Err((EXIT_FAILED, format!("{}; the program may still run on {}, its output no longer comes here", far.why_ended(), far.host))),
        }
    }
}


/// The processes held stopped at the last checkpoint: continued if dropped (the far side did
/// not take the program), killed by [`Held::end`].
struct Held {
    pids: Vec<u32>,
    done: bool,
}

impl Held {
    fn list(&self) -> String {
        self.pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
    }

    /// Lets the program go on here; `why` it did not move.
    fn resume(mut self, why: String) -> String {
        self.cont();
        self.done = true;
        why
    }

    fn cont(&self) {
        for &p in &self.pids {
            let _ = ckpt_sigsafe::sys::kill(p, libc::SIGCONT as u32);
        }
    }

    /// The copy runs there: the original ends, and is waited for until it is gone.
    fn end(mut self) {
        for &p in &self.pids {
            let _ = ckpt_sigsafe::sys::kill(p, libc::SIGKILL as u32);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.done = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Any way out that did not decide (an early return, a panic) lets the program go on
        // here: it never ran anywhere else.
        if !self.done {
            self.cont();
        }
    }
}

/// Whether process `pid` still runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    ckpt_sigsafe::proctext::stat_state(&stat).is_some_and(|state| state != b'Z' && state != b'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(shell_words("ssh -p 2222 -i 'my key' -o \"A=b c\" x\\ y").unwrap(), ["ssh", "-p", "2222", "-i", "my key", "-o", "A=b c", "x y"]);
        assert!(shell_words("ssh 'open").is_err());
        assert_eq!(quoted("/usr/bin/ckpt"), "/usr/bin/ckpt");
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }
}
