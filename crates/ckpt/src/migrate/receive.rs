//! `ckpt receive`: the far side of `ckpt migrate`, run by ssh. It says hello (its version, its
//! host name, whether it can restart), writes the files it is sent into a private directory,
//! restarts the image when told to, answers whether the program runs, and then relays the
//! program's standard streams (those that were not files) until the program ends. Its directory
//! is removed in every case, but not before the program ends: the restored program maps its
//! memory from the image files, and libckpt tells those mappings by their files (a page the
//! program drops with `madvise` must read as zeros, not as the image's bytes). With `--detach`
//! a small shell in a session of its own waits for the program and removes them then.

use super::channel::Opener;
use super::wire::{self, Frame, Kind};
use crate::run::RestartFlags;
use crate::{Outcome, EXIT_FAILED};
use clap::Args;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

#[derive(Args)]
pub struct ReceiveArgs {
    /// Where to make the private directory for the image (default: $XDG_RUNTIME_DIR if it is
    /// a tmpfs, else /dev/shm).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The connection back to `ckpt migrate`: frames are written whole, by whichever thread has
/// something to say.
#[derive(Clone)]
struct Back(Arc<Mutex<BufWriter<File>>>);

impl Back {
    fn say(&self, kind: Kind, parts: &[&[u8]]) -> std::io::Result<()> {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        wire::write(&mut *w, kind, parts)?;
        w.flush()
    }
}

/// A private directory (mode 0700), removed with everything in it when dropped, unless handed
/// over ([`PrivateDir::hand_over`]).
pub struct PrivateDir(pub PathBuf, std::sync::atomic::AtomicBool);

impl PrivateDir {
    /// Makes one in `under`, or on a tmpfs: `$XDG_RUNTIME_DIR` if it is one, else /dev/shm.
    pub fn make(under: Option<&Path>, what: &str) -> Result<PrivateDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = match under {
            Some(d) => d.to_path_buf(),
            None => std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_absolute() && crate::os::is_tmpfs(d)).unwrap_or_else(|| PathBuf::from("/dev/shm")),
        };
        let mut last = None;
        for _ in 0..16 {
            let mut r = [0u8; 8];
            crate::os::random(&mut r);
            let path = parent.join(format!("ckpt-{what}-{}-{:016x}", std::process::id(), u64::from_ne_bytes(r)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir(path, std::sync::atomic::AtomicBool::new(false))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(format!("cannot make a directory in {}: {}", crate::shown(&parent), crate::io_message(&e))),
            }
        }
        Err(format!("cannot make a directory in {}: {}", crate::shown(&parent), last.map(|e| crate::io_message(&e)).unwrap_or_default()))
    }

    /// Removes the directory now (also done when dropped).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }

    /// Leaves the directory to someone else to remove: it is not removed when dropped.
    fn hand_over(&self) {
        self.1.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if !self.1.load(std::sync::atomic::Ordering::Relaxed) {
            self.remove();
        }
    }
}

/// With `--detach`, nothing of ours stays to see the program end: a shell in a session of its
/// own waits until process `pid` (the restart, below which the program runs) is gone, then
/// removes `dir`, the image files the program's memory was mapped from. `None` if it could
/// not be started (the directory is then removed at once, as before).
fn remove_when_gone(pid: u32, dir: &Path) -> Option<()> {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg("while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; rm -rf -- \"$2\"").arg("ckpt-cleanup").arg(pid.to_string()).arg(dir);
    crate::os::new_session(&mut c);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().ok().map(|_| ())
}

pub fn receive(a: ReceiveArgs) -> Outcome {
    crate::os::ignore_sigpipe();
    // ssh's stdin and stdout, as plain files: frames are written whole, never line by line.
    let input = File::from(std::io::stdin().as_fd().try_clone_to_owned().map_err(|e| (EXIT_FAILED, e.to_string()))?);
    let output = File::from(std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| (EXIT_FAILED, e.to_string()))?);
    let back = Back(Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, output))));
    // A small buffer: file data is spliced from the pipe past it (see `take_files`).
    let input = BufReader::with_capacity(1 << 16, input);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let can_restart = match crate::locate::myrestart() {
        Ok(_) => "yes".to_string(),
        Err((_, why)) => why,
    };
    let dir = PrivateDir::make(a.dir.as_deref(), "receive");
    let can_restart = match &dir {
        Ok(_) => can_restart,
        Err(why) => why.clone(),
    };
    let listener = listen();
    let direct = match &listener {
        Ok(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("no: {e}")),
        Err(why) => format!("no: {why}"),
    };
    let facts = wire::hello(&[("ckpt", env!("CARGO_PKG_VERSION")), ("host", host.trim()), ("restart", &can_restart), ("direct", &direct)]);
    back.say(Kind::Hello, &[&facts]).map_err(|e| (EXIT_FAILED, format!("cannot answer: {e}")))?;
    let Ok(dir) = dir else { return Ok(ExitCode::from(EXIT_FAILED)) };
    let verifier = Verifier::start(back.clone());
    let mut input = Input::Ssh(input);
    match take_files(&mut input, listener.ok(), &back, &dir.0, &verifier) {
        Ok(Some((flags, name))) => {
            let asked = std::time::Instant::now();
            let verified = verifier.all_verified(&dir.0);
            let waited = asked.elapsed();
            restart(&dir, &name, Restart { detach: flags & wire::DETACH != 0, verified, asked, waited }, input, back)
        }
        // The source gave up (its program goes on there): nothing to do.
        Ok(None) => Ok(ExitCode::SUCCESS),
        Err(why) => {
            let _ = back.say(Kind::Error, &[why.as_bytes()]);
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// Where the source's frames come from: ssh's stdin, or the direct channel.
enum Input {
    Ssh(BufReader<File>),
    Direct(Box<Opener<TcpStream>>),
}

impl Read for Input {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::Ssh(r) => r.read(b),
            Input::Direct(r) => r.read(b),
        }
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self {
            Input::Ssh(r) => r.fill_buf(),
            Input::Direct(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Input::Ssh(r) => r.consume(n),
            Input::Direct(r) => r.consume(n),
        }
    }
}

/// The port for the direct channel: on the address the ssh connection came to (the third word
/// of `$SSH_CONNECTION`), else on every address (IPv6 and IPv4, or IPv4 alone where the host
/// has no IPv6); the kernel picks the port.
fn listen() -> Result<TcpListener, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = std::env::var("SSH_CONNECTION").ok().and_then(|c| c.split_whitespace().nth(2).and_then(|a| a.parse::<IpAddr>().ok()));
    let tries = match ip {
        Some(ip) => vec![ip],
        None => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
    };
    let mut why = String::new();
    for ip in tries {
        match TcpListener::bind((ip, 0)) {
            Ok(l) => return Ok(l),
            Err(e) => why = format!("cannot listen on {ip}: {}", crate::io_message(&e)),
        }
    }
    Err(why)
}

/// How long the far side waits for the source's direct connection once it has the key.
const ACCEPT_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the source's direct connection: the first to `listener` whose first record opens with
/// `key` as the greeting (any other is closed), until the source says through ssh that it
/// could not connect (anything on `ssh`), or [`ACCEPT_TIME`] passed. The listener is closed
/// either way. The connection; or why there is none, if the source is to be told (it is
/// waiting for an answer only if it did connect).
fn accept(listener: TcpListener, key: &[u8], ssh: &BufReader<File>) -> Result<Opener<TcpStream>, Option<String>> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + ACCEPT_TIME;
    listener.set_nonblocking(true).map_err(|e| Some(e.to_string()))?;
    loop {
        if !ssh.buffer().is_empty() {
            return Err(None);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Some(format!("no connection came in {} s", ACCEPT_TIME.as_secs())));
        }
        let [incoming, said] = crate::os::readable([listener.as_raw_fd(), ssh.get_ref().as_raw_fd()], left);
        if said {
            return Err(None);
        }
        if !incoming {
            continue;
        }
        let Ok((stream, _)) = listener.accept() else { continue };
        // A connection that does not greet in time (or at all) is not the source's: its whole
        // greeting within 2 s (or by the deadline), and nothing read before all of it is there,
        // so that a peer trickling bytes cannot hold the far side.
        let by = deadline.min(std::time::Instant::now() + std::time::Duration::from_secs(2));
        match whole_greeting(&stream, by, ssh.get_ref().as_raw_fd()) {
            Greeting::Here => {}
            Greeting::Not => continue,
            Greeting::SshSaid => return Err(None),
        }
        let greeted = stream.set_nonblocking(false).and_then(|_| stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))).and_then(|_| {
            let mut o = Opener::new(key, stream)?;
            Ok(o.greeted()?.then_some(o))
        });
        if let Ok(Some(o)) = greeted {
            if o.get_ref().set_read_timeout(None).is_ok() {
                crate::os::keep_alive(o.get_ref().as_raw_fd());
                return Ok(o);
            }
        }
    }
}

enum Greeting {
    /// A whole greeting record's bytes are queued on the connection.
    Here,
    /// Not by the deadline, not of a greeting's length, or the connection ended.
    Not,
    /// The source said something on ssh meanwhile (it gave up connecting).
    SshSaid,
}

/// Waits, until `by`, for a greeting record's bytes to be queued whole on `stream`, reading
/// none of them (the socket's receive low-water mark makes it readable only then).
fn whole_greeting(stream: &TcpStream, by: std::time::Instant, ssh: i32) -> Greeting {
    use std::os::fd::AsRawFd;
    if !crate::os::low_water(stream.as_raw_fd(), super::channel::GREETING_RECORD) || stream.set_nonblocking(true).is_err() {
        return Greeting::Not;
    }
    loop {
        let left = by.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Greeting::Not;
        }
        let [ready, said] = crate::os::readable([stream.as_raw_fd(), ssh], left);
        if said {
            return Greeting::SshSaid;
        }
        if !ready {
            continue;
        }
        let mut head = [0u8; super::channel::GREETING_RECORD];
        return match stream.peek(&mut head) {
            // The mark back to one byte, for the stream's records.
            Ok(n) if n == head.len() && super::channel::begins_greeting(&head) && crate::os::low_water(stream.as_raw_fd(), 1) => Greeting::Here,
            // Ended, failed, or not a greeting's length: closed (dropped by the caller).
            _ => Greeting::Not,
        };
    }
}

/// While the files come on the direct channel, ssh's stdin has nothing more to say: its end
/// (ssh gone, and with it the source, its machine, or the network between) ends the direct
/// connection too, so that the far side does not wait forever for files that will not come
/// (the connection's keepalive finds a silent peer only after half a minute, and not at all
/// one that is stopped). Once dropped, at the restart or any other end of `take_files`, it no
/// longer acts.
struct SshWatch(Arc<AtomicBool>);

impl SshWatch {
    fn start(ssh: &File, stream: &TcpStream) -> Option<SshWatch> {
        let (mut ssh, stream) = (ssh.try_clone().ok()?, stream.try_clone().ok()?);
        let done = Arc::new(AtomicBool::new(false));
        let over = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                match ssh.read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() != std::io::ErrorKind::Interrupted => break,
                    _ => {}
                }
            }
            if !over.load(Ordering::Acquire) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Some(SshWatch(done))
    }
}

impl Drop for SshWatch {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Writes the files the source sends into `dir`, until it asks for the restart (its flags and
/// the image's name) or goes away (`None`). A `Key` first (with `listener`): the source's
/// frames come on the direct channel from then on, if it connects.
fn take_files(input: &mut Input, mut listener: Option<TcpListener>, back: &Back, dir: &Path, verifier: &Verifier) -> Result<Option<(u8, String)>, String> {
    // Watching ssh while the files come on the direct channel (see `SshWatch`).
    let mut _watch: Option<SshWatch> = None;
    let bad = |f: &Frame| format!("a {:?} frame that makes no sense here", f.kind);
    let name_of = |f: &Frame, p: &[u8]| -> Result<String, String> {
        let n = String::from_utf8_lossy(p).into_owned();
        if wire::plain_name(&n) {
            Ok(n)
        } else {
            Err(bad(f))
        }
    };
    // The file being written: its final name, its temporary one, it, and whether it is sent as
    // it grows.
    let mut current: Option<(String, PathBuf, File, bool)> = None;
    let mut f = Frame { kind: Kind::Hello, payload: Vec::with_capacity(wire::MAX_PAYLOAD) };
    // Whether file data can be spliced from the input (a pipe, as sshd gives) into the files.
    let mut splicing = true;
    let reading = |e: std::io::Error| format!("reading from the source: {e}");
    loop {
        let (kind, len) = match wire::read_head(input) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(e) => return Err(reading(e)),
        };
        f.kind = kind;
        let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {}", crate::shown(p), crate::io_message(&e));
        if kind != Kind::Key {
            // The direct channel is set up first, or not at all.
            listener = None;
        }
        if kind == Kind::Data && len >= 8 {
            if let Some((_, tmp, file, _)) = current.as_ref() {
                if !splicing || matches!(input, Input::Direct(_)) {
                    // Written from where the bytes were opened (or read into).
                    let mut at = [0u8; 8];
                    input.read_exact(&mut at).map_err(reading)?;
                    let (mut at, mut left) = (u64::from_le_bytes(at), len - 8);
                    while left > 0 {
                        let have = input.fill_buf().map_err(reading)?;
                        if have.is_empty() {
                            return Err(reading(std::io::ErrorKind::UnexpectedEof.into()));
                        }
                        let n = have.len().min(left);
                        file.write_all_at(&have[..n], at).map_err(|e| io("cannot write", tmp, e))?;
                        input.consume(n);
                        (at, left) = (at + n as u64, left - n);
                    }
                    continue;
                }
                let Input::Ssh(input) = &mut *input else { unreachable!("spliced only from ssh's pipe") };
                let mut at = [0u8; 8];
                input.read_exact(&mut at).map_err(reading)?;
                let (mut at, mut left) = (u64::from_le_bytes(at), len - 8);
                // What the buffer holds of the data already, then the rest straight from the
                // pipe into the file.
                let held = input.buffer().len().min(left);
                file.write_all_at(&input.buffer()[..held], at).map_err(|e| io("cannot write", tmp, e))?;
                std::io::BufRead::consume(input, held);
                (at, left) = (at + held as u64, left - held);
                let (from, to) = (std::os::fd::AsRawFd::as_raw_fd(input.get_ref()), std::os::fd::AsRawFd::as_raw_fd(file));
                let mut off = at as i64;
                while left > 0 {
                    match crate::os::splice(from, None, to, Some(&mut off), left) {
                        Ok(0) => return Err(reading(std::io::ErrorKind::UnexpectedEof.into())),
                        Ok(n) => left -= n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            // Not a pipe: the rest (and what follows) is read and written.
                            splicing = false;
                            let mut rest = vec![0u8; left];
                            input.read_exact(&mut rest).map_err(reading)?;
                            file.write_all_at(&rest, off as u64).map_err(|e| io("cannot write", tmp, e))?;
                            left = 0;
                        }
                        Err(e) => return Err(io("cannot write", tmp, e)),
                    }
                }
                continue;
            }
        }
        f.payload.resize(len, 0);
        input.read_exact(&mut f.payload).map_err(reading)?;
        match f.kind {
            Kind::File if current.is_none() => {
                let (len, name) = wire::split_u64(&f.payload).ok_or_else(|| bad(&f))?;
                let name = name_of(&f, name)?;
                let tmp = dir.join(format!("{name}.part"));
                let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
                let growing = len == wire::GROWING;
                if !growing {
                    file.set_len(len).map_err(|e| io("cannot size", &tmp, e))?;
                }
                current = Some((name, tmp, file, growing));
            }
            Kind::Data => {
                let (at, data) = wire::split_u64(&f.payload).ok_or_else(|| bad(&f))?;
                let (_, tmp, file, _) = current.as_ref().ok_or_else(|| bad(&f))?;
                file.write_all_at(data, at).map_err(|e| io("cannot write", tmp, e))?;
            }
            Kind::Done => {
                let (name, tmp, file, growing) = current.take().ok_or_else(|| bad(&f))?;
                if growing {
                    // Its length is known now (a hole may end it).
                    let (len, _) = wire::split_u64(&f.payload).ok_or_else(|| bad(&f))?;
                    file.set_len(len).map_err(|e| io("cannot size", &tmp, e))?;
                }
                std::fs::rename(&tmp, dir.join(&name)).map_err(|e| io("cannot rename", &tmp, e))?;
                verifier.check(file, growing.then_some(name));
            }
            Kind::Link if current.is_none() => {
                let (from, to) = wire::parse_link(&f.payload).ok_or_else(|| bad(&f))?;
                if !wire::plain_name(&from) || !wire::plain_name(&to) {
                    return Err(bad(&f));
                }
                let _ = std::fs::remove_file(dir.join(&to));
                std::fs::hard_link(dir.join(&from), dir.join(&to)).map_err(|e| io("cannot link", &dir.join(&to), e))?;
            }
            Kind::Remove if current.is_none() => {
                let name = name_of(&f, &f.payload)?;
                let _ = std::fs::remove_file(dir.join(name));
            }
            Kind::Key if current.is_none() => {
                let (Some(l), Input::Ssh(ssh)) = (listener.take(), &*input) else { return Err(bad(&f)) };
                match accept(l, &f.payload, ssh) {
                    Ok(o) => {
                        back.say(Kind::Direct, &[&[1]]).map_err(|e| format!("cannot answer: {e}"))?;
                        _watch = SshWatch::start(ssh.get_ref(), o.get_ref());
                        *input = Input::Direct(Box::new(o));
                    }
                    Err(Some(why)) => back.say(Kind::Direct, &[&[0], why.as_bytes()]).map_err(|e| format!("cannot answer: {e}"))?,
                    Err(None) => {}
                }
            }
            // The source could not connect: everything comes this way.
            Kind::Direct if current.is_none() && matches!(input, Input::Ssh(_)) => {}
            Kind::Restart if current.is_none() && !f.payload.is_empty() => {
                let name = name_of(&f, &f.payload[1..])?;
                return Ok(Some((f.payload[0], name)));
            }
            _ => return Err(bad(&f)),
        }
    }
}

/// How the restart is made, and when it was asked for.
struct Restart {
    detach: bool,
    /// Every file of the image passed its checks as it came: myrestart need not check them.
    verified: bool,
    asked: std::time::Instant,
    /// How long the last checks took to finish once the restart was asked for.
    waited: std::time::Duration,
}

/// Restarts `dir/name` as `ckpt restart --allow-running` would (the original is still there,
/// held, when both sides are one machine), says whether it runs, and relays its streams.
fn restart(dir: &PrivateDir, name: &str, how: Restart, mut input: Input, back: Back) -> Outcome {
    let Restart { detach, verified, asked, waited } = how;
    let refuse = |why: String| {
        let _ = back.say(Kind::Refused, &[why.as_bytes()]);
        Ok(ExitCode::from(EXIT_FAILED))
    };
    let (mut status, wr) = match crate::os::pipe() {
        Ok(p) => p,
        Err(e) => return refuse(format!("cannot make a pipe: {}", crate::io_message(&e))),
    };
    let flags = RestartFlags { allow_running: true, no_verify: verified, status_fd: Some(wr), ..Default::default() };
    let mut cmd = match crate::run::restart_command(&dir.0.join(name), &flags) {
        Ok((cmd, _)) => cmd,
        Err((_, why)) => return refuse(why),
    };
    crate::os::start_with(&mut cmd, libc::SIGUSR2, wr);
    if detach {
        // Nothing stays here to relay its streams; myrestart's reasons for a refusal go
        // with them (the answer says to migrate without --detach to see them).
        crate::os::new_session(&mut cmd);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let spawned = cmd.spawn();
    crate::os::close(wr);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return refuse(format!("cannot start myrestart: {e}")),
    };
    // What myrestart says before the program runs is kept, as the reason of a refusal; all of
    // it is relayed too, for the lines it prints of a restart that goes on.
    let said = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().map(|e| relay(e, back.clone(), Kind::Stderr, Some(said.clone())));
    let stdout = child.stdout.take().map(|o| relay(o, back.clone(), Kind::Stdout, None));
    let mut first = [0u8; 1];
    let running = matches!(status.read(&mut first), Ok(1) if first[0] == b'R');
    if !running {
        let ended = child.wait();
        if let Some(t) = stderr {
            let _ = t.join();
        }
        let said = said.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&said);
        let why: Vec<&str> = text.lines().map(|l| l.trim_start_matches("ckpt: ")).filter(|l| !l.is_empty()).collect();
        let how = ended.map(|s| s.to_string()).unwrap_or_default();
        let why = match (why.is_empty(), detach) {
            (false, _) => why.join("; "),
            (true, true) => format!("myrestart refused the image ({how}); without --detach migrate shows why"),
            (true, false) => format!("myrestart ended ({how})"),
        };
        return refuse(why);
    }
    // The program maps its memory from the image files: they stay until it ends (see the
    // module's notes).
    if detach {
        match remove_when_gone(child.id(), &dir.0) {
            Some(()) => dir.hand_over(),
            None => dir.remove(),
        }
    }
    // Its PID here, and (for CKPT_MIGRATE_TIMES) how long the checks and the restart took.
    let ms = |d: std::time::Duration| (d.as_millis() as u32).to_le_bytes();
    if back.say(Kind::Running, &[&child.id().to_le_bytes(), &ms(waited), &ms(asked.elapsed()), &u32::from(verified).to_le_bytes()]).is_err() || detach {
        return Ok(ExitCode::SUCCESS);
    }
    // The program's stdin, from migrate's; and the signals migrate got, for myrestart to pass
    // on to the program.
    let mut stdin = child.stdin.take();
    let myrestart = child.id();
    std::thread::spawn(move || loop {
        match wire::read(&mut input) {
            Ok(Some(f)) if f.kind == Kind::Signal => {
                if let Some(&sig) = f.payload.first().filter(|&&s| [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].contains(&(s as i32))) {
                    // Our own child, not reaped yet (we wait for it below).
                    let _ = ckpt_sigsafe::sys::kill(myrestart, sig as u32);
                }
            }
            Ok(Some(f)) if f.kind == Kind::Stdin => {
                if let Some(i) = stdin.as_mut() {
                    if i.write_all(&f.payload).is_err() {
                        stdin = None;
                    }
                }
            }
            Ok(Some(f)) if f.kind == Kind::StdinEnd => stdin = None,
            Ok(Some(_)) => {}
            _ => return,
        }
    });
    let mut word = [0u8; 4];
    let told = status.read_exact(&mut word).is_ok();
    let ended = child.wait();
    let raw = if told { i32::from_ne_bytes(word) } else { ended.map(|s| s.into_raw()).unwrap_or(1 << 8) };
    for t in [stdout, stderr].into_iter().flatten() {
        let _ = t.join();
    }
    // The program is gone: so may its image files be, before migrate hears that it ended.
    dir.remove();
    let _ = back.say(Kind::Exit, &[&raw.to_le_bytes()]);
    Ok(ExitCode::SUCCESS)
}

/// Checks each received file's stored bytes against their hashes as it arrives, on a thread of
/// its own, while the next rounds come: the restart need not do it, with the program stopped.
/// Each file is checked once, as the image it was when it came; a base is such a file under
/// another name (a hard link), so the image set is checked when every file in it was. A file
/// sent as it was written is answered (`Checked`): its early bytes may not have been the
/// writer's last, and the source sends it again if they were not.
struct Verifier {
    to: Option<mpsc::Sender<(File, Option<String>)>>,
    thread: Option<std::thread::JoinHandle<HashMap<(u64, u64), bool>>>,
}

impl Verifier {
    fn start(back: Back) -> Verifier {
        let (to, from) = mpsc::channel::<(File, Option<String>)>();
        let thread = std::thread::spawn(move || {
            let mut done = HashMap::new();
            for (file, answer) in from {
                if let Ok(m) = file.metadata() {
                    let checked = verifies(file);
                    done.insert((m.dev(), m.ino()), checked == Some(true));
                    if let Some(name) = answer {
                        let word = match checked {
                            Some(true) => wire::CHECKED_GOOD,
                            Some(false) => wire::CHECKED_BAD,
                            None => wire::CHECKED_LEFT,
                        };
                        let _ = back.say(Kind::Checked, &[&[word], name.as_bytes()]);
                    }
                }
            }
            done
        });
        Verifier { to: Some(to), thread: Some(thread) }
    }

    /// Queues the file just received (open, whatever becomes of its name meanwhile); `answer`:
    /// the name to answer its checks under.
    fn check(&self, file: File, answer: Option<String>) {
        if let Some(to) = &self.to {
            let _ = to.send((file, answer));
        }
    }

    /// Waits for the checks still under way; whether every file in `dir` passed.
    fn all_verified(mut self, dir: &Path) -> bool {
        drop(self.to.take());
        let Some(done) = self.thread.take().and_then(|t| t.join().ok()) else { return false };
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        entries.flatten().all(|e| e.metadata().is_ok_and(|m| done.get(&(m.dev(), m.ino())) == Some(&true)))
    }
}

/// Whether the image in `file` is one whose stored bytes all match their hashes,
/// as myrestart checks them without `--no-verify`; `None` for a tree's image, whose parts
/// myrestart checks process by process.
fn verifies(file: File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    // Through the descriptor: the name may be another file's by now (the next round's image).
    let Ok(opened) = crate::imagefile::ImageFile::open(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd()))) else { return Some(false) };
    drop(file);
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let Ok(image) = opened.image(&mut st) else { return Some(false) };
    if image.tree().is_some() {
        return None;
    }
    Some(image.check_saved_extents(&opened.holes()).is_ok() && image.check_data(opened.bytes(), &opened.holes()).is_ok())
}

/// Relays what comes out of `from` to the source as frames of `kind`, keeping a copy in
/// `keep` if given, until its end.
fn relay(mut from: impl Read + Send + 'static, back: Back, kind: Kind, keep: Option<Arc<Mutex<Vec<u8>>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if let Some(k) = &keep {
                // Only the beginning matters: a refusal is said before the program runs.
                let mut k = k.lock().unwrap_or_else(|e| e.into_inner());
                if k.len() < 1 << 16 {
                    k.extend_from_slice(&buf[..n]);
                }
            }
            // The source gone, the bytes go nowhere; the pipe is still read so that the
            // program is not blocked on it.
            let _ = back.say(kind, &[&buf[..n]]);
        }
    })
}
