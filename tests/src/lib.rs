//! Test harness: builds the C/C++ test programs, runs processes with libckpt preloaded, sends
//! the checkpoint signal, kills, restarts with myrestart, and reads what they print.
//!
//! Every wait is bounded; a process still running when its handle drops is killed.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod sshd;

/// The repository root (where `make` puts libckpt.so and myrestart).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let p = root().join(name);
    assert!(p.exists(), "{} is missing: run `make` (or `make test`) first", p.display());
    p
}

pub fn libckpt() -> PathBuf {
    built("libckpt.so")
}

pub fn myrestart() -> PathBuf {
    built("myrestart")
}

pub fn ckpt() -> PathBuf {
    built("ckpt")
}

/// Compiles `tests/progs/<name>.c` (or `.cpp`) with `flags`, once per test process.
pub fn prog(name: &str, flags: &[&str]) -> PathBuf {
    let progs = root().join("tests/progs");
    let cpp = progs.join(format!("{name}.cpp"));
    let src = if cpp.exists() { cpp } else { progs.join(format!("{name}.c")) };
    compile(&src, name, flags)
}

/// Compiles one C or C++ source file into `target/ckpt-tests/bin` (or `CKPT_TEST_BIN`: the
/// userland tests keep each userland's programs apart), in a directory named by a hash of the
/// source and the flags. A program once built there is never replaced: tests run in parallel
/// processes, and an image names the program file it ran (another file at that path would
/// make its restart refuse).
pub fn compile(src: &Path, name: &str, flags: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{name}{}", flags.join(""));
    let mut map = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let cc = if src.extension().is_some_and(|e| e == "cpp") { "g++" } else { "gcc" };
    let out_dir = std::env::var_os("CKPT_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| root().join("target/ckpt-tests/bin"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let suffix: String = flags.iter().map(|f| f.trim_start_matches('-')).collect::<Vec<_>>().join("_");
    let version = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (std::fs::read(src).unwrap_or_default(), flags, cc).hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let out_dir = out_dir.join(version);
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(if suffix.is_empty() { name.to_string() } else { format!("{name}-{suffix}") });
    if !out.exists() {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        // -pthread and -lrt: before glibc 2.34 threads and POSIX timers had libraries of their own.
        let status = Command::new(cc).args(["-O1", "-g", "-Wall", "-pthread", "-o"]).arg(&tmp).arg(src).args(flags).arg("-lrt").status().unwrap();
        assert!(status.success(), "compiling {}", src.display());
        // The first to finish names it; the others' copies go.
        let _ = std::fs::hard_link(&tmp, &out);
        let _ = std::fs::remove_file(&tmp);
    }
    map.insert(key, out.clone());
    out
}

/// Builds `tests/progs/NAME.go` with the Go toolchain (`go build`; its cgo makes a dynamically
/// linked program, which libckpt can be preloaded into), into a directory of
/// `target/ckpt-tests/bin` named by a hash of the source, like [`compile`]. `None`, the test
/// [`skip`]ped, where `go` cannot be run (Debian's golang-go package).
pub fn go_prog(test: &str, name: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    if Command::new("go").arg("version").output().map_or(true, |o| !o.status.success()) {
        skip(test, "needs the Go toolchain (Debian's golang-go package)");
        return None;
    }
    let mut map = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = map.get(name) {
        return Some(p.clone());
    }
    let src = root().join("tests/progs").join(format!("{name}.go"));
    let version = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&src).unwrap_or_default().hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let out_dir = std::env::var_os("CKPT_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| root().join("target/ckpt-tests/bin")).join(version);
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    if !out.exists() {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        // The build cache in the target directory: HOME may be unset or read-only.
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(&src)
            .env("GOCACHE", root().join("target/ckpt-tests/gocache"))
            .env("CGO_ENABLED", "1")
            .env_remove("GOFLAGS")
            .current_dir(src.parent().unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "building {}", src.display());
        let _ = std::fs::hard_link(&tmp, &out);
        let _ = std::fs::remove_file(&tmp);
    }
    map.insert(name.to_string(), out.clone());
    Some(out)
}

/// Builds `tests/progs/libtick.c` as libtick.so (with `step`) and usetick linked to it, in
/// `dir`; a library already there is rewritten in place (the same inode, other bytes).
pub fn build_tick(dir: &Path, step: u32) -> (PathBuf, PathBuf) {
    let progs = root().join("tests/progs");
    let lib = dir.join("libtick.so");
    let tmp = dir.join("libtick.so.new");
    let st = Command::new("gcc").args(["-O1", "-shared", "-fPIC", &format!("-DTICK_STEP={step}"), "-o"]).arg(&tmp).arg(progs.join("libtick.c")).status().unwrap();
    assert!(st.success(), "building libtick");
    if lib.exists() {
        // Rewritten in place, as a careless update would: the same file (inode), other bytes.
        std::fs::write(&lib, std::fs::read(&tmp).unwrap()).unwrap();
        std::fs::remove_file(&tmp).unwrap();
    } else {
        std::fs::rename(&tmp, &lib).unwrap();
    }
    let exe = dir.join("usetick");
    if !exe.exists() {
        let st = Command::new("gcc")
            .args(["-O1", "-o"])
            .arg(&exe)
            .arg(progs.join("usetick.c"))
            .arg(format!("-L{}", dir.display()))
            .arg("-ltick")
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .status()
            .unwrap();
        assert!(st.success(), "building usetick");
    }
    (exe, lib)
}

/// A fresh directory for one test's images, on tmpfs when there is one.
pub struct Workdir {
    pub path: PathBuf,
}

impl Workdir {
    pub fn new(name: &str) -> Workdir {
        let base = std::env::var_os("CKPT_TEST_DIR").map(PathBuf::from).unwrap_or_else(|| {
            if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm/ckpt-tests")
            } else {
                root().join("target/ckpt-tests/run")
            }
        });
        Workdir::under(&base, name)
    }

    /// A fresh directory on the disk that holds the build (not tmpfs): for what only a disk
    /// file system does, such as handing a deleted file's inode number to the next new file.
    pub fn on_disk(name: &str) -> Workdir {
        Workdir::under(&root().join("target/ckpt-tests/run"), name)
    }

    fn under(base: &Path, name: &str) -> Workdir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = base.join(format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Workdir { path }
    }

    pub fn image(&self) -> PathBuf {
        self.path.join("myckpt")
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        // Keep the evidence when a test fails.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What a process has printed on one stream, and whether the stream has reached its end.
#[derive(Default)]
struct Stream {
    /// Complete lines (stdout).
    lines: Vec<String>,
    /// Everything read so far, as text.
    text: String,
    /// The stream's write ends are all closed (the process and everything that inherited the
    /// pipe are gone) and everything was read.
    closed: bool,
}

type Shared = Arc<(Mutex<Stream>, Condvar)>;

/// Reads `from` into `into` until end of file, waking waiters at every chunk.
fn collect(mut from: impl Read + Send + 'static, into: Shared) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut pending = Vec::new();
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let (m, cv) = &*into;
            let mut s = m.lock().unwrap();
            if n == 0 {
                if !pending.is_empty() {
                    s.lines.push(String::from_utf8_lossy(&pending).into_owned());
                }
                s.closed = true;
                cv.notify_all();
                return;
            }
            s.text.push_str(&String::from_utf8_lossy(&buf[..n]));
            pending.extend_from_slice(&buf[..n]);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                s.lines.push(String::from_utf8_lossy(&line[..nl]).into_owned());
            }
            cv.notify_all();
        }
    });
}

/// Waits until `pred` holds for `stream` or `deadline` passes; returns whether it held.
fn wait_stream(stream: &Shared, deadline: Instant, pred: impl Fn(&Stream) -> bool) -> bool {
    let (m, cv) = &**stream;
    let mut guard = m.lock().unwrap();
    loop {
        if pred(&guard) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
    }
}

// unsafe: the C library calls the tests make that `std` lacks, each with no pointer that
// outlives it.
#[allow(unsafe_code)]
mod os {
    /// `kill(pid, sig)` (`sig` 0: only whether `pid` exists): 0, or -1 if the kernel refused.
    /// Only the tests' own processes, or ones they were told the PID of just now, are signalled.
    pub fn send_signal(pid: i32, sig: i32) -> i32 {
        // SAFETY: kill(2) takes no pointers.
        unsafe { libc::kill(pid, sig) }
    }

    /// The tests' effective user ID.
    pub fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }
}
pub use os::{euid, send_signal};

/// Makes `cmd` start with only stdin, stdout and stderr open, whatever the test runner has
/// inherited: descriptors 3 and up are marked close-on-exec in the child.
#[allow(unsafe_code)] // a `pre_exec` hook runs between fork and exec
pub fn hermetic(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe, as a pre_exec hook must be.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32 /* CLOSE_RANGE_CLOEXEC */);
            Ok(())
        });
    }
}

/// A running process whose stdout is collected line by line and stderr as text.
pub struct Proc {
    child: Child,
    stdout: Shared,
    stderr: Shared,
    pub pid: u32,
    what: String,
}

impl Proc {
    pub fn spawn(cmd: Command, what: &str) -> Proc {
        Proc::spawn_passing(cmd, what, None)
    }

    /// [`Proc::spawn`], the child also getting our descriptor `pass.0` as its `pass.1`.
    #[allow(unsafe_code)] // a `pre_exec` hook runs between fork and exec
    pub fn spawn_passing(mut cmd: Command, what: &str, pass: Option<(i32, i32)>) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        hermetic(&mut cmd);
        if let Some((ours, theirs)) = pass {
            use std::os::unix::process::CommandExt;
            // SAFETY: dup2 is async-signal-safe; it runs after `hermetic`'s hook, and the new
            // descriptor is not close-on-exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::dup2(ours, theirs);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let stdout: Shared = Default::default();
        let stderr: Shared = Default::default();
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        let pid = child.id();
        Proc { child, stdout, stderr, pid, what: what.to_string() }
    }

    /// `cmd` with libckpt preloaded and its image going to `image`.
    pub fn preloaded(mut cmd: Command, image: &Path, what: &str) -> Proc {
        cmd.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", image);
        Proc::spawn(cmd, what)
    }

    /// `myrestart image`.
    pub fn restart(image: &Path) -> Proc {
        let mut cmd = Command::new(myrestart());
        cmd.arg(image);
        Proc::spawn(cmd, &format!("myrestart {}", image.display()))
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout.0.lock().unwrap().lines.clone()
    }

    /// Everything printed on stdout so far, complete lines or not.
    pub fn stdout_text(&self) -> String {
        self.stdout.0.lock().unwrap().text.clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().text.clone()
    }

    /// Waits until at least `n` lines have been printed.
    pub fn wait_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_until(|l| l.len() >= n, timeout, &format!("{n} lines"))
    }

    /// Waits until `pred` holds for the lines printed so far.
    pub fn wait_until(&self, pred: impl Fn(&[String]) -> bool, timeout: Duration, what: &str) -> Vec<String> {
        if !wait_stream(&self.stdout, Instant::now() + timeout, |s| pred(&s.lines)) {
            let got = self.lines();
            panic!(
                "{}: timed out after {timeout:?} waiting for {what}; stdout so far ({} lines, last: {:?}); stderr: {:?}",
                self.what,
                got.len(),
                got.last(),
                self.stderr()
            );
        }
        self.lines()
    }

    /// Waits until `pred` holds for the text printed on stdout so far (lines need not be
    /// complete), and returns that text.
    pub fn wait_text(&self, pred: impl Fn(&str) -> bool, timeout: Duration, what: &str) -> String {
        if !wait_stream(&self.stdout, Instant::now() + timeout, |s| pred(&s.text)) {
            panic!("{}: timed out after {timeout:?} waiting for {what}; stdout {:?}; stderr {:?}", self.what, self.stdout_text(), self.stderr());
        }
        self.stdout_text()
    }

    /// Waits until stderr contains `text`, and returns all of stderr.
    pub fn wait_stderr(&self, text: &str, timeout: Duration) -> String {
        if !wait_stream(&self.stderr, Instant::now() + timeout, |s| s.text.contains(text)) {
            panic!("{}: no {text:?} on stderr within {timeout:?}; stderr {:?}", self.what, self.stderr());
        }
        self.stderr()
    }

    /// Waits until both output streams are at their end and everything on them has been read
    /// (the process, and whatever inherited its pipes, is gone). Returns whether they were.
    pub fn wait_output_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        wait_stream(&self.stdout, deadline, |s| s.closed) && wait_stream(&self.stderr, deadline, |s| s.closed)
    }

    /// The PID (in this namespace) of the program a `myrestart` runs: myrestart restores the
    /// program with its old PID in a PID namespace of its own, below an init, and stays its
    /// parent; with new IDs the program is myrestart's process itself.
    pub fn program_pid(&self) -> u32 {
        let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let child = |pid: u32| -> Option<u32> {
            let c = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
            c.split_whitespace().next()?.parse().ok()
        };
        let deadline = Instant::now() + SHORT;
        let mut pid = self.pid;
        while comm(pid).trim() == "myrestart" {
            match child(pid) {
                Some(c) => pid = c,
                None => {
                    assert!(Instant::now() < deadline, "{}: no restored program below process {pid}", self.what);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        pid
    }

    pub fn signal(&self, sig: i32) {
        // kill(2) on our own child's PID, which we have not reaped yet.
        send_signal(self.pid as i32, sig);
    }

    /// SIGKILL, then reap, then wait until what it printed has all been read.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.wait_output_closed(LONG);
    }

    /// SIGKILL to the process and every process below it (all stopped first, so that none
    /// starts another meanwhile), then as [`Proc::kill9`].
    pub fn kill_tree(&mut self) {
        // The root stops first: it must not see a child die (and say so) before it dies itself.
        // kill(2) of our own child.
        send_signal(self.pid as i32, libc::SIGSTOP);
        kill_all_below(self.pid);
        self.kill9();
    }

    /// How the process ended, if it has (then with all it printed read).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let st = self.child.try_wait().unwrap()?;
        self.wait_output_closed(LONG);
        Some(st)
    }

    /// Waits for the process to exit by itself, and for its output to be read.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.wait_output_closed(deadline.saturating_duration_since(Instant::now()).max(SHORT));
                return st;
            }
            if Instant::now() >= deadline {
                let lines = self.lines();
                panic!("{}: did not exit within {timeout:?}; last line {:?}; stderr {:?}", self.what, lines.last(), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Checkpoints the process into `image` and waits until the new image is in place.
    pub fn checkpoint(&self, image: &Path, timeout: Duration) {
        let before = std::fs::metadata(image).ok().map(|m| (m.ino(), m.mtime_nsec(), m.mtime()));
        self.signal(libc::SIGUSR2);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(m) = std::fs::metadata(image) {
                if Some((m.ino(), m.mtime_nsec(), m.mtime())) != before {
                    // The writers end just after the rename; a checkpoint asked for before
                    // they have would be refused as one still being written.
                    wait_writers_gone(image, deadline);
                    return;
                }
            }
            // A program that ran to its end before the signal came gives no image: said at once.
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            if state == Some('Z') {
                // The last field of a zombie's stat is its wait status.
                let status: i32 = stat.split_whitespace().last().and_then(|w| w.parse().ok()).unwrap_or(-1);
                let how = if status & 0x7f != 0 { format!("killed by signal {}", status & 0x7f) } else { format!("exit {}", status >> 8) };
                panic!("{}: it ended ({how}) before a new image was at {} (asked too late?); last line {:?}; stderr {:?}", self.what, image.display(), self.lines().last(), self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no new image at {} within {timeout:?}; stderr {:?}",
                self.what,
                image.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` preloaded with its image in `wd`, checkpoints it once it has printed `lines`
/// lines, and kills it; returns the killed process (for what it printed, and its PID).
pub fn checkpointed(cmd: Command, wd: &Workdir, lines: usize) -> Proc {
    let mut orig = Proc::preloaded(cmd, &wd.image(), "the program to checkpoint");
    orig.wait_lines(lines, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    orig
}

/// Runs `cmd` to completion (no preload) and returns its stdout lines: the reference output.
pub fn reference_run(mut cmd: Command, timeout: Duration) -> Vec<String> {
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    let mut p = Proc::spawn(cmd, "reference run");
    let st = p.wait_exit(timeout);
    assert!(st.success(), "reference run failed: {st}");
    p.lines()
}

/// Checks that a restarted run continued the checkpointed one: its output is exactly the
/// reference output from some line `c` on, where `c` lies between the lines seen when the
/// checkpoint was requested and the lines seen when the original was killed. Returns `c`.
pub fn assert_continues(reference: &[String], seen_at_checkpoint: usize, seen_at_kill: usize, after: &[String]) -> usize {
    assert!(!after.is_empty(), "the restarted process printed nothing");
    for c in seen_at_checkpoint..=seen_at_kill.min(reference.len()) {
        let rest = &reference[c..];
        if after.len() <= rest.len() && after == &rest[..after.len()] {
            assert!(c > 0, "restarted output starts from scratch");
            return c;
        }
    }
    panic!(
        "restarted output does not continue the checkpointed run (checkpoint after line {seen_at_checkpoint}, killed after line {seen_at_kill});\n  restart printed: {:?}\n  reference from {seen_at_checkpoint}: {:?}",
        &after[..after.len().min(5)],
        &reference[seen_at_checkpoint.min(reference.len())..(seen_at_checkpoint + 5).min(reference.len())]
    );
}

pub const SHORT: Duration = Duration::from_secs(10);
pub const LONG: Duration = Duration::from_secs(60);

/// The whole scenario for a program that runs to completion: reference run; preloaded run
/// checkpointed after `at` lines and killed a few lines later; restart runs to completion and
/// must print exactly the rest of the reference. Returns the line the restart resumed from.
pub fn checkpoint_kill_restart_matches(make: impl Fn() -> Command, at: usize, wd: &Workdir) -> usize {
    scenario(make, at, wd, false, &[])
}

/// [`checkpoint_kill_restart_matches`], myrestart given `restart_args` too (for a program
/// that writes its files in place after the checkpoint: `--files-as-is`).
pub fn checkpoint_kill_restart_matches_with(make: impl Fn() -> Command, at: usize, wd: &Workdir, restart_args: &[&str]) -> usize {
    scenario(make, at, wd, false, restart_args)
}

fn scenario(make: impl Fn() -> Command, at: usize, wd: &Workdir, tree: bool, restart_args: &[&str]) -> usize {
    let reference = reference_run(make(), LONG);
    assert!(reference.len() > at + 10, "reference run too short: {} lines", reference.len());
    let image = wd.image();
    let mut orig = Proc::preloaded(make(), &image, "original run");
    orig.wait_lines(at, SHORT);
    let at_ckpt = orig.lines().len();
    orig.checkpoint(&image, LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 3, SHORT);
    if tree {
        orig.kill_tree();
    } else {
        orig.kill9();
    }
    let at_kill = orig.lines().len();

    let mut cmd = Command::new(myrestart());
    cmd.args(restart_args).arg(&image);
    let mut restored = Proc::spawn(cmd, &format!("myrestart {}", image.display()));
    let st = restored.wait_exit(LONG);
    let after = restored.lines();
    assert!(st.success(), "restarted run exited with {st}; stderr {:?}", restored.stderr());
    assert_continues(&reference, at_ckpt, at_kill, &after)
}

/// [`checkpoint_kill_restart_matches`] for a program that is a tree of processes: the whole
/// tree is killed after the checkpoint, and the restarted tree must print the rest of the
/// reference.
pub fn tree_checkpoint_kill_restart_matches(make: impl Fn() -> Command, at: usize, wd: &Workdir) -> usize {
    scenario(make, at, wd, true, &[])
}

/// A TCP and UDP port that is free now and outside the kernel's ephemeral range, for a server
/// that must get the same port again after a restart: a port the kernel picked itself (port 0)
/// may be handed to another test's outgoing connection in between.
pub fn free_port() -> u16 {
    use std::net::{TcpListener, UdpSocket};
    static N: AtomicUsize = AtomicUsize::new(0);
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768);
    let span = (low.saturating_sub(10000)).max(1000) as usize;
    for _ in 0..1000 {
        let k = std::process::id() as usize * 7919 + N.fetch_add(1, Ordering::Relaxed) * 104_729;
        let port = 10000 + (k % span) as u16;
        let free = TcpListener::bind(("::", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Waits until no checkpoint writer (a process named `ckpt-writer`) writes `image`: one whose
/// environment names it as `CKPT_IMAGE`.
pub fn wait_writers_gone(image: &Path, deadline: Instant) {
    use std::os::unix::ffi::OsStrExt;
    let mut want = b"CKPT_IMAGE=".to_vec();
    want.extend_from_slice(image.as_os_str().as_bytes());
    want.push(0);
    let writing = || {
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            let p = e.path();
            std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "ckpt-writer")
                && std::fs::read(p.join("environ")).is_ok_and(|env| env.windows(want.len()).any(|w| w == want.as_slice()))
        })
    };
    while writing() {
        assert!(Instant::now() < deadline, "the writers of {} did not end", image.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every process below `pid`: the children of each of its threads, and theirs.
/// SIGKILL to every process below `pid` (not `pid` itself), all stopped first, so that none
/// starts another meanwhile.
pub fn kill_all_below(pid: u32) {
    let mut all = Vec::new();
    loop {
        let new: Vec<u32> = descendants(pid).into_iter().filter(|p| !all.contains(p)).collect();
        if new.is_empty() {
            break;
        }
        for &p in &new {
            // kill(2) of a process below `pid`, one of ours.
            send_signal(p as i32, libc::SIGSTOP);
        }
        all.extend(new);
    }
    for &p in &all {
        send_signal(p as i32, libc::SIGKILL);
    }
    // Dead, not only told to die: a restart refuses while a process of the tree still runs.
    for &p in &all {
        wait_dead(p);
    }
}

/// Waits until process `pid` is dead: gone, or a zombie nobody has reaped yet (a `SIGKILL` takes
/// a moment on a loaded machine, and a restart refuses while the checkpointed process runs).
pub fn wait_dead(pid: u32) {
    let deadline = Instant::now() + LONG;
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))) {
        assert!(Instant::now() < deadline, "process {pid} lives on after SIGKILL");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The lines of a file (none if it is not there yet).
pub fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
}

/// Waits until the file at `path` has at least `n` lines, and returns them.
pub fn wait_file_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let l = file_lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(Instant::now() < deadline, "{}: {} lines after {timeout:?}, waiting for {n}", path.display(), l.len());
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Waits until `path` exists (an image a process writes by itself), at most `timeout`.
pub fn wait_for_path(path: &Path, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}: nothing at {} within {timeout:?}", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `changing MIB STEPS MS [nodrop]` (tests/progs/changing.c): memory that keeps changing, for
/// incremental images. Each step prints `step N HASH`.
pub fn changing(mib: u32, steps: u32, ms: u32, drop: bool) -> Command {
    let mut c = Command::new(prog("changing", &[]));
    c.args([mib.to_string(), steps.to_string(), ms.to_string()]);
    if !drop {
        c.arg("nodrop");
    }
    c
}

/// The step number of a `step N HASH` line of `changing`.
pub fn step_of(line: &str) -> usize {
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a step line: {line:?}"))
}

/// A chain of incremental images of `changing`, taken a few steps apart.
pub struct Generations {
    /// The images, oldest first: `myckpt.N` … `myckpt.1`, `myckpt`.
    pub images: Vec<PathBuf>,
    /// For each image, the lines seen when its checkpoint was asked for and when the next one
    /// was (or the program was killed): the state it holds lies between (see
    /// [`assert_continues`]). Lines are read as they come, so the second bound is one seen only
    /// after more lines came, which follow every line printed before the image was taken.
    pub seen: Vec<(usize, usize)>,
}

/// Runs `changing` (16 MiB, 20 ms a step) preloaded, keeping three older images, takes
/// `generations` checkpoints a few steps apart, and kills it.
pub fn generations(wd: &Workdir, drop: bool, generations: u32) -> Generations {
    let image = wd.image();
    let mut cmd = changing(16, 1_000_000, 20, drop);
    cmd.env("CKPT_KEEP", "3");
    let mut orig = Proc::preloaded(cmd, &image, "changing");
    let mut asked = Vec::new();
    for _ in 0..generations {
        let n = orig.lines().len();
        orig.wait_lines(n + 4, LONG);
        asked.push(orig.lines().len());
        orig.checkpoint(&image, LONG);
    }
    orig.kill9();
    asked.push(orig.lines().len());
    let seen = asked.windows(2).map(|w| (w[0], w[1])).collect();
    assert!(!orig.stderr().contains("incremental checkpoints are off"), "tracking unavailable: {}", orig.stderr());
    let mut images: Vec<PathBuf> = (1..generations).rev().map(|g| PathBuf::from(format!("{}.{g}", image.display()))).collect();
    images.push(image);
    Generations { images, seen }
}

/// The base files (`myckpt.base-*`) in `wd`.
pub fn base_files(wd: &Workdir) -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> =
        std::fs::read_dir(&wd.path).unwrap().flatten().map(|e| e.path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("myckpt.base-")).collect();
    bases.sort();
    bases
}

/// A chain of two images of `changing` (without dropped pages) in a fresh [`Workdir`]: the
/// directory, the newer image, and its one base file (the older image under its base name).
pub fn two_image_chain(name: &str) -> (Workdir, PathBuf, PathBuf) {
    let wd = Workdir::new(name);
    let newest = generations(&wd, false, 2).images.pop().unwrap();
    let mut bases = base_files(&wd);
    assert_eq!(bases.len(), 1, "{bases:?}");
    let base = bases.pop().unwrap();
    (wd, newest, base)
}


/// Says that `test` is skipped, and why, where it cannot fail unseen: on stderr, and as a line
/// of `target/ckpt-tests/skipped`, which `make test` counts and prints after the tests (a
/// skipped test passes in cargo's own count).
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    eprintln!("{test}: skipped: {why}");
    let dir = root().join("target/ckpt-tests");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("skipped")) {
        let _ = writeln!(f, "{test}: {why}");
    }
}

/// Whether this test can act as two users (root, with `setpriv` to become another); if not, it
/// is [`skip`]ped.
pub fn can_be_another_user(test: &str) -> bool {
    let able = euid() == 0 && Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !able {
        skip(test, "needs root and setpriv, to be another user");
    }
    able
}

/// Whether this test may mount a small tmpfs in a private mount namespace, to fill a disk
/// (root, `unshare` and `nsenter`: CI has them); if not, it is [`skip`]ped.
pub fn can_fill_a_disk(test: &str) -> bool {
    let root = euid() == 0;
    let able = root && Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) && Command::new("nsenter").arg("--version").output().is_ok();
    if !able {
        skip(test, "it mounts a tmpfs in a private mount namespace, which needs root, unshare and nsenter");
    }
    able
}

/// An image changed the way anyone who may write it could: one byte of the root's heap data
/// flipped, and that region's hash and the header checksum recomputed (both public: only a MAC
/// needs the key).
pub fn tampered(bytes: &[u8]) -> Vec<u8> {
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(bytes).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    let region = (0..img.region_count()).find(|&i| img.region(i).unwrap().name == b"[heap]").expect("a heap");
    let r = img.region(region).unwrap();
    let at = r.data_offset as usize;
    let mut t = bytes.to_vec();
    t[at] ^= 0x55;
    assert!(ckpt_image::verify::check_region(&t, &r, &ckpt_image::verify::Dense).is_err(), "the change shows in the region hash");
    let mut h = ckpt_image::RegionHasher::new();
    for (k, page) in t[at..at + r.record.size() as usize].chunks(4096).enumerate() {
        if !ckpt_image::is_zero_page(page) {
            h.add_nonzero(k as u64, page);
        }
    }
    let desc = img.note(ckpt_image::CKPT_NOTE_NAME, ckpt_image::NT_CKPT_REGIONS).unwrap().desc;
    let rec_at = desc.as_ptr() as usize - bytes.as_ptr() as usize + ckpt_image::region::HEADER_SIZE + region * ckpt_image::region::RECORD_SIZE;
    let mut rec = r.record;
    rec.data_hash = h.digest();
    rec.write(&mut ckpt_image::bytes::Writer::new(&mut t[rec_at..rec_at + ckpt_image::region::RECORD_SIZE]));
    ckpt_image::seal(&mut t[..meta_len]).unwrap();
    t
}

/// An image with its state note changed by `f` (its flags and trampolines, say), and its
/// header checksum made again as the writer makes it (an image without a MAC, of one process):
/// an image ckpt cannot make yet, of a process it attached to from outside, made from one it
/// can.
pub fn restated(bytes: &[u8], f: impl FnOnce(&mut ckpt_image::ProcessState)) -> Vec<u8> {
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(bytes).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    assert!(img.tree().is_none() && img.note(ckpt_image::CKPT_NOTE_NAME, ckpt_image::NT_CKPT_MAC).is_none(), "one process, no MAC");
    let desc = img.note(ckpt_image::CKPT_NOTE_NAME, ckpt_image::NT_CKPT_STATE).unwrap().desc;
    let at = desc.as_ptr() as usize - bytes.as_ptr() as usize;
    let len = desc.len();
    f(&mut st);
    let mut t = bytes.to_vec();
    st.write(&mut ckpt_image::bytes::Writer::new(&mut t[at..at + len]));
    ckpt_image::seal(&mut t[..meta_len]).unwrap();
    t
}

/// What a directory holds, recursively (each entry's path, type, size, inode and time of
/// change), but the names in `except` at its top: to show that a refused restart left it as
/// it found it.
pub fn snapshot(dir: &Path, except: &[&str]) -> Vec<(PathBuf, u32, u64, u64, i64, i64)> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if d == dir && except.iter().any(|x| e.file_name() == *x) {
                continue;
            }
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            all.push((e.path(), m.mode() & 0o170000, m.len(), m.ino(), m.ctime(), m.ctime_nsec()));
        }
    }
    all.sort();
    all
}

/// Runs myrestart on `image` and checks that it refuses it before changing anything: exit
/// status 2, one line on stderr that contains `expect` (and none saying which process the
/// program is), and `dir` as it was. Returns that line.
pub fn refused_leaving_unchanged(image: &Path, dir: &Path, expect: &str) -> String {
    let before = snapshot(dir, &[]);
    let mut c = Command::new(myrestart());
    // Asked to say which process the program is, as `ckpt restart` does: a refused restart
    // must not have said so first.
    c.arg("--announce").arg(image);
    let out = run_within(c, LONG);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(expect), "want {expect:?} in {err:?}");
    assert_eq!(snapshot(dir, &[]), before, "the refused restart changed {}: {err}", dir.display());
    err
}

/// Runs `cmd` to its end, which must come within `limit`: it is killed otherwise, and the test
/// fails. Returns how it ended and what it printed.
pub fn run_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    hermetic(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} did not end within {limit:?}: stderr {:?}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Writes `text` into a new file at `path` that only its owner may read: a key file (a key
/// file others may read is refused).
pub fn private_file(path: &Path, text: impl AsRef<[u8]>) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap().write_all(text.as_ref()).unwrap();
}

/// A thread (not the leader) spinning in an rseq critical section (`rseqspin thread`, every
/// signal blocked with `blockall`), checkpointed three times with `checkpoint(pid, image)`,
/// then restarted from the last image. A thread stopped in its section was preempted there and
/// must go on at its abort handler, which says "abort" and arms the section again; one put
/// back inside after the kernel forgot the section spins there for ever, silent. So after each
/// checkpoint the running thread says "abort" again (were it silent, the next image would hold
/// it inside its forgotten section), and the restored one does at once. Returns false (the test
/// skipped) where glibc registers no rseq.
pub fn rseq_thread_resumes_at_its_abort_handler(test: &str, blockall: bool, checkpoint: impl Fn(&Proc, &Path)) -> bool {
    let wd = Workdir::new(test);
    let image = wd.image();
    let mut cmd = Command::new(prog("rseqspin", &[]));
    cmd.arg("thread");
    if blockall {
        cmd.arg("blockall");
    }
    let mut p = if blockall { Proc::preloaded(cmd, &image, "rseqspin thread") } else { Proc::spawn(cmd, "rseqspin thread") };
    if p.wait_lines(1, LONG)[0] == "no rseq" {
        skip(test, "glibc registered no rseq");
        return false;
    }
    for _ in 0..3 {
        checkpoint(&p, &image);
        let n = p.lines().len();
        p.wait_lines(n + 1, LONG);
    }
    p.kill9();
    let mut restored = Proc::restart(&image);
    restored.wait_until(|l| l.iter().any(|l| l == "abort"), LONG, "the restored thread at its abort handler");
    restored.kill9();
    true
}
