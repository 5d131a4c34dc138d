//! `ckpt migrate` to this machine over a real sshd the test starts (its own keys, a free port
//! on 127.0.0.1): the program goes on on the far side from where it was, with no line lost or
//! repeated, the original is gone, and nothing is left in either side's directory; a migrate
//! whose far side cannot run, or refuses the restart, leaves the original running.

use ckpt_tests::sshd::Sshd;
use ckpt_tests::*;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A test's directory and sshd, or `None` (the test skipped) on a machine without sshd.
fn setup(test: &str) -> Option<(Workdir, Sshd)> {
    setup_with(test, |_| String::new())
}

/// [`setup`], sshd's configuration given more lines made from the test's directory.
fn setup_with(test: &str, config: impl Fn(&Path) -> String) -> Option<(Workdir, Sshd)> {
    if !Sshd::available() {
        skip(test, "no sshd (openssh-server) on this machine");
        return None;
    }
    let wd = Workdir::new(test);
    let sshd = Sshd::start_with(&wd.path, &config(&wd.path));
    for d in ["local", "remote"] {
        std::fs::create_dir(wd.path.join(d)).unwrap();
    }
    Some((wd, sshd))
}

/// A program under `ckpt run`, its stdout appended to a file (`out` in the test's directory),
/// which the restored program takes over. Ended (with every process below it) when dropped.
struct Original {
    child: Child,
    out: PathBuf,
}

impl Original {
    /// tests/progs/counter.c, counting to 6000 a line every 10 ms, the program most tests move.
    fn counter(wd: &Workdir) -> Original {
        Original::start(wd, &[prog("counter", &[]).to_str().unwrap(), "6000", "10000"])
    }

    fn start(wd: &Workdir, args: &[&str]) -> Original {
        let out = wd.path.join("out");
        let mut cmd = Command::new(ckpt());
        cmd.arg("run").arg("--image").arg(wd.image()).args(args);
        cmd.stdin(Stdio::null())
            .stdout(File::options().create(true).append(true).open(&out).unwrap())
            .stderr(File::options().create(true).append(true).open(wd.path.join("err")).unwrap());
        hermetic(&mut cmd);
        let child = cmd.spawn().unwrap();
        Original { child, out }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lines(&self) -> Vec<String> {
        file_lines(&self.out)
    }

    fn wait_lines(&self, n: usize) -> Vec<String> {
        wait_file_lines(&self.out, n, LONG)
    }

    /// Waits until the original has ended (migrate kills it once the copy runs); its status.
    fn wait_gone(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "the original (process {}) still runs after the migration", self.pid());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Original {
    fn drop(&mut self) {
        kill_all_below(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ckpt migrate PID 127.0.0.1` through `sshd`, with both sides' directories in the test's.
fn migrate(wd: &Workdir, sshd: &Sshd, pid: u32, remote_ckpt: &Path) -> Proc {
    migrate_with(wd, sshd, pid, &[OsStr::new("--remote-ckpt"), remote_ckpt.as_os_str()])
}

fn migrate_with(wd: &Workdir, sshd: &Sshd, pid: u32, args: &[&OsStr]) -> Proc {
    Proc::spawn(migrate_command(wd, sshd, pid, args), "ckpt migrate")
}

/// The command [`migrate_with`] runs.
fn migrate_command(wd: &Workdir, sshd: &Sshd, pid: u32, args: &[&OsStr]) -> Command {
    let mut cmd = Command::new(ckpt());
    cmd.arg("migrate").arg(pid.to_string()).arg("127.0.0.1").arg("--ssh").arg(sshd.ssh()).args(args);
    cmd.arg("--local-dir").arg(wd.path.join("local")).arg("--remote-dir").arg(wd.path.join("remote"));
    // Where the time went, for the message of a test that fails.
    cmd.env("CKPT_MIGRATE_TIMES", "1");
    cmd
}

/// What migrate says when the image goes on the direct channel.
const DIRECT: &str = "ckpt: the data goes directly to 127.0.0.1:";

/// The restored program on the far side, by its PID here: killed when dropped, so that a test
/// that fails leaves nothing running.
struct There(u32);

impl Drop for There {
    fn drop(&mut self) {
        // The PID myrestart named just now, of the program it restored for this test.
        send_signal(self.0 as i32, libc::SIGKILL);
    }
}

/// Waits for migrate to say the program runs on the far side; the restored program (myrestart
/// names its PID here, and the PID it has in its namespace, which must be the original's).
fn moved(m: &Proc, original: u32) -> There {
    m.wait_stderr("runs on 127.0.0.1", LONG);
    let said = m.wait_stderr("in its own namespace", LONG);
    let line = said.lines().find(|l| l.contains("the restored program is process")).unwrap_or_else(|| panic!("no restored process named: {said:?}"));
    let outer: u32 = line.split("process ").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).unwrap();
    assert!(line.contains(&format!("(PID {original} in its own namespace)")), "the program has another PID there: {line:?}");
    assert!(said.contains("ckpt: round 0: "), "no progress line: {said:?}");
    There(outer)
}

/// Neither side's private directory is left.
///
/// Called once the program has ended (or been killed) there: the far side keeps the image
/// files its memory is mapped from until then, and removes them as it sees it end, which may
/// be a moment after the test ended it.
fn nothing_left(wd: &Workdir) {
    let deadline = Instant::now() + LONG;
    for d in ["local", "remote"] {
        loop {
            let left: Vec<_> = std::fs::read_dir(wd.path.join(d)).unwrap().flatten().map(|e| e.path()).collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "left behind in {d}: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The counter's lines, which must be the first lines of an uninterrupted run: none missing,
/// none repeated.
fn assert_counter_prefix(lines: &[String], reference: &[String]) {
    assert!(lines.len() <= reference.len(), "more lines than the reference");
    for (i, (l, r)) in lines.iter().zip(reference).enumerate() {
        assert_eq!(l, r, "line {i} differs (lines around it: {:?})", &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]);
    }
}

fn counter_reference() -> Vec<String> {
    let mut c = Command::new(prog("counter", &[]));
    c.args(["6000", "0"]);
    reference_run(c, LONG)
}

fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ").next().and_then(|r| r.chars().next()).unwrap_or('?')
}

/// A C counter moves and goes on from where it was, under the PID it had; the original is
/// gone, nothing is left on either side; on the far side it is checkpointed again, and that
/// image restarts too.
#[test]
fn a_counter_moves_and_goes_on() {
    let Some((wd, sshd)) = setup("migrate-counter") else { return };
    let reference = counter_reference();
    let mut orig = Original::counter(&wd);
    orig.wait_lines(30);
    let mut m = migrate(&wd, &sshd, orig.pid(), &root().join("ckpt"));
    let there = moved(&m, orig.pid());
    assert!(m.stderr().contains(DIRECT), "the direct channel was not used: {:?}", m.stderr());
    let st = orig.wait_gone();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "the original ended otherwise: {st}");
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 30);
    assert_counter_prefix(&lines, &reference);

    // Checkpointed again where it runs now (its first image there is a full one, made from
    // memory mapped from image files that have no names any longer).
    // The move wrote no image where the program keeps its own: only in migrate's directory.
    let image = wd.image();
    assert!(!image.exists(), "the move left an image at the program's own image path");
    let out = Command::new(ckpt()).args(["checkpoint", &there.0.to_string(), "--wait"]).output().unwrap();
    assert!(out.status.success(), "checkpoint on the far side: {}", String::from_utf8_lossy(&out.stderr));
    let at_ckpt = orig.lines().len();
    drop(there);
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(128 + libc::SIGKILL), "migrate ends as the program did; stderr {:?}", m.stderr());
    nothing_left(&wd);
    let mut restart = Command::new(ckpt());
    restart.arg("restart").arg(&image);
    let mut again = Proc::spawn(restart, "ckpt restart of the far side's image");
    let lines = wait_file_lines(&orig.out, at_ckpt + 30, LONG);
    assert_counter_prefix(&lines, &reference);
    again.kill_tree();
}

/// A program whose stdout is a pipe: what it prints after the move comes through migrate's
/// stdout, with no line lost or repeated, and migrate ends with the program's status.
#[test]
fn output_to_a_pipe_comes_through_migrate() {
    let Some((wd, sshd)) = setup("migrate-pipe") else { return };
    let reference = counter_reference();
    let mut cmd = Command::new(ckpt());
    cmd.arg("run").arg("--image").arg(wd.image()).arg(prog("counter", &[])).args(["300", "10000"]);
    let mut orig = Proc::spawn(cmd, "the counter");
    orig.wait_lines(30, LONG);
    let mut m = migrate(&wd, &sshd, orig.pid, &root().join("ckpt"));
    let _there = moved(&m, orig.pid);
    orig.kill9();
    let st = m.wait_exit(LONG);
    assert!(st.success(), "migrate: {st}; stderr {:?}", m.stderr());
    let mut all = orig.lines();
    all.extend(m.lines());
    assert_eq!(all.len(), 301, "lines: before {:?}, after {:?}", orig.lines().last(), m.lines().first());
    assert_counter_prefix(&all[..300], &reference);
    assert!(all[300].starts_with("done "), "{:?}", all[300]);
    nothing_left(&wd);
}

/// A threaded program: its ticks go on from where they were, every worker still counting.
#[test]
fn a_threaded_program_moves() {
    let Some((wd, sshd)) = setup("migrate-threads") else { return };
    let threads = prog("threads", &["-pthread"]);
    let mut orig = Original::start(&wd, &[threads.to_str().unwrap(), "4"]);
    orig.wait_lines(20);
    let mut m = migrate(&wd, &sshd, orig.pid(), &root().join("ckpt"));
    let there = moved(&m, orig.pid());
    orig.wait_gone();
    let n = orig.lines().len();
    // Every worker moves again and takes the SIGUSR1 the main thread sends it (each within
    // some ticks, however loaded the machine).
    let deadline = Instant::now() + LONG;
    let lines = loop {
        let lines = orig.wait_lines(n + 10);
        if lines.last().is_some_and(|l| l.contains(" moved=4 ") && l.ends_with(" kills=4")) {
            break lines;
        }
        assert!(Instant::now() < deadline, "the workers do not all move after the move: {:?}", lines.last());
        std::thread::sleep(Duration::from_millis(20));
    };
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("tick {i} ")), "line {i}: {l:?}");
    }
    for l in &lines[n..] {
        assert!(l.contains(" ok=4 "), "a worker is not intact after the move: {l:?}");
    }
    // A signal to migrate reaches the program there (as Ctrl-C to `ssh HOST PROG` would).
    m.signal(libc::SIGTERM);
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(128 + libc::SIGTERM), "migrate ends as the program did; stderr {:?}", m.stderr());
    drop(there);
    nothing_left(&wd);
}

/// A program whose leader thread blocks every signal moves: libckpt holds that thread with
/// ptrace for the last round, so the original's state is 't', not 'T', once held (the leader
/// of `threads` is so, now and then, when the checkpoint comes while it is in `pthread_kill`,
/// and migrate then waited for ever for it to stop). It goes on there with no line lost or
/// repeated.
#[test]
fn a_program_whose_leader_blocks_every_signal_moves() {
    let Some((wd, sshd)) = setup("migrate-leader") else { return };
    let mut orig = Original::start(&wd, &[prog("leaderblocks", &["-pthread"]).to_str().unwrap()]);
    orig.wait_lines(20);
    let mut m = migrate(&wd, &sshd, orig.pid(), &root().join("ckpt"));
    let there = moved(&m, orig.pid());
    orig.wait_gone();
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 20);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &i.to_string(), "line {i}; migrate's stderr {:?}", m.stderr());
    }
    drop(there);
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(128 + libc::SIGKILL), "migrate ends as the program did; stderr {:?}", m.stderr());
    nothing_left(&wd);
}

/// The first image is sent while it is written: a byte of it that the far side then holds
/// wrong (as if the writer had changed it after it went) fails the far side's checks, and the
/// image is sent again, whole, before the last round; the program goes on with its memory as
/// it was (each line of `changing` has a checksum of all of it). It drops pages after the move
/// too (`MADV_DONTNEED`), which must read as zeros there, not as the image's bytes: the far
/// side keeps the image files its memory is mapped from until it ends.
#[test]
fn a_first_image_found_wrong_there_is_sent_again() {
    let Some((wd, sshd)) = setup("migrate-resend") else { return };
    let reference = reference_run(changing(32, 300, 0, true), LONG);
    let mut orig = Original::start(&wd, &[prog("changing", &[]).to_str().unwrap(), "32", "300", "0"]);
    orig.wait_lines(20);
    let mut cmd = Command::new(ckpt());
    cmd.arg("migrate").arg(orig.pid().to_string()).arg("127.0.0.1").arg("--ssh").arg(sshd.ssh()).arg("--remote-ckpt").arg(root().join("ckpt"));
    cmd.arg("--local-dir").arg(wd.path.join("local")).arg("--remote-dir").arg(wd.path.join("remote"));
    cmd.env("CKPT_MIGRATE_TIMES", "1").env("CKPT_MIGRATE_TEST_SPOIL", "1");
    let mut m = Proc::spawn(cmd, "ckpt migrate");
    let there = moved(&m, orig.pid());
    orig.wait_gone();
    let st = m.wait_exit(LONG);
    assert!(st.success(), "migrate ends as the program did: {st}; stderr {:?}", m.stderr());
    let lines = orig.lines();
    let first = lines.iter().zip(&reference).position(|(a, b)| a != b);
    assert!(first.is_none() && lines.len() == reference.len(), "the program did not go on as it was: {} lines for {}, the first other one {:?}", lines.len(), reference.len(), first.map(|i| (&lines[i], &reference[i])));
    assert!(m.stderr().contains("found the first image wrong: sent again"), "the spoiled first image was not found wrong there: {:?}", m.stderr());
    drop(there);
    nothing_left(&wd);
}

/// A three-process pipeline under bash moves as one tree.
#[test]
fn a_pipeline_of_three_processes_moves() {
    let Some((wd, sshd)) = setup("migrate-pipeline") else { return };
    let reference = counter_reference();
    let script = format!("'{}' 6000 10000 | cat | cat", prog("counter", &[]).display());
    let mut orig = Original::start(&wd, &["bash", "-c", &script]);
    orig.wait_lines(30);
    let before = descendants(orig.pid());
    assert_eq!(before.len(), 3, "not a tree of four processes: {before:?}");
    let m = migrate(&wd, &sshd, orig.pid(), &root().join("ckpt"));
    let there = moved(&m, orig.pid());
    orig.wait_gone();
    for p in before {
        wait_dead(p);
    }
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 30);
    assert_counter_prefix(&lines, &reference);
    drop(there);
    nothing_left(&wd);
}

/// No ckpt on the far side: migrate says so, and the program goes on (round 0's checkpoint was
/// begun while ssh connected: it is waited for, and its image removed).
#[test]
fn no_ckpt_there_leaves_the_original_running() {
    let Some((wd, sshd)) = setup("migrate-missing") else { return };
    let reference = counter_reference();
    let orig = Original::counter(&wd);
    orig.wait_lines(20);
    let mut m = migrate(&wd, &sshd, orig.pid(), Path::new("/nonexistent/ckpt"));
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(1), "stderr {:?}", m.stderr());
    let said = m.stderr();
    assert!(said.contains("/nonexistent/ckpt not found on 127.0.0.1") && said.contains(&format!("process {} goes on running here", orig.pid())), "{said:?}");
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 20);
    assert_counter_prefix(&lines, &reference);
    assert_ne!(state(orig.pid()), 'T');
    nothing_left(&wd);

    // Round 0's checkpoint, removed, was begun before the far side failed: the program's own
    // checkpoints are not the worse for it. One to its own image, then SIGKILL, and it restarts
    // from there.
    let image = wd.image();
    let out = Command::new(ckpt()).args(["checkpoint", &orig.pid().to_string(), "--wait"]).output().unwrap();
    assert!(out.status.success(), "checkpoint after the failed move: {}", String::from_utf8_lossy(&out.stderr));
    let at_ckpt = orig.lines().len();
    drop(orig);
    let mut restart = Command::new(ckpt());
    restart.arg("restart").arg(&image);
    let mut again = Proc::spawn(restart, "ckpt restart after the failed move");
    let lines = wait_file_lines(&wd.path.join("out"), at_ckpt + 30, LONG);
    assert_counter_prefix(&lines, &reference);
    again.kill_tree();
}

/// A far side's ckpt whose myrestart is the shell script `myrestart` (written into the test's
/// directory); its path.
fn far_ckpt_with_myrestart(wd: &Workdir, myrestart: &str) -> PathBuf {
    let fake = wd.path.join("fake-myrestart");
    std::fs::write(&fake, format!("#!/bin/sh\n{myrestart}")).unwrap();
    let far_ckpt = wd.path.join("far-ckpt");
    std::fs::write(&far_ckpt, format!("#!/bin/sh\nCKPT_MYRESTART='{}' exec '{}' \"$@\"\n", fake.display(), ckpt().display())).unwrap();
    for f in [&fake, &far_ckpt] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    far_ckpt
}

/// A far side that refuses the restart (its myrestart says no): the original, stopped for the
/// last round, goes on running here, and migrate says why.
#[test]
fn a_refused_restart_lets_the_original_go_on() {
    let Some((wd, sshd)) = setup("migrate-refused") else { return };
    let reference = counter_reference();
    let far_ckpt = far_ckpt_with_myrestart(&wd, "echo 'ckpt: this far side refuses the image' >&2\nexit 2\n");
    let orig = Original::counter(&wd);
    orig.wait_lines(20);
    let mut m = migrate(&wd, &sshd, orig.pid(), &far_ckpt);
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(1), "stderr {:?}", m.stderr());
    let said = m.stderr();
    assert!(said.contains("did not restart it: this far side refuses the image") && said.contains("goes on running here"), "{said:?}");
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 20);
    assert_counter_prefix(&lines, &reference);
    assert_ne!(state(orig.pid()), 'T');
    nothing_left(&wd);
}

/// Without --remote-ckpt the far side's ckpt is the one its PATH finds (here a PATH sshd sets
/// for the session, leading to a directory with a link to the built ckpt).
#[test]
fn ckpt_is_found_on_the_far_sides_path() {
    let Some((wd, sshd)) = setup_with("migrate-path", |dir| format!("SetEnv PATH={}:/usr/bin:/bin\n", dir.join("bin").display())) else { return };
    std::fs::create_dir(wd.path.join("bin")).unwrap();
    std::os::unix::fs::symlink(ckpt(), wd.path.join("bin/ckpt")).unwrap();
    let reference = counter_reference();
    let mut orig = Original::counter(&wd);
    orig.wait_lines(20);
    let m = migrate_with(&wd, &sshd, orig.pid(), &[]);
    let there = moved(&m, orig.pid());
    orig.wait_gone();
    let n = orig.lines().len();
    assert_counter_prefix(&orig.wait_lines(n + 20), &reference);
    drop(there);
    nothing_left(&wd);
}

/// The connection breaks after the far side was asked to restart and before it answered (its
/// myrestart kills `ckpt receive`): migrate cannot know whether the program runs there, so the
/// original stays stopped, and migrate says how to let it go on; continued, it goes on.
#[test]
fn a_connection_lost_at_the_restart_keeps_the_original_stopped() {
    let Some((wd, sshd)) = setup("migrate-lost") else { return };
    let reference = counter_reference();
    let far_ckpt = far_ckpt_with_myrestart(&wd, "kill -9 $PPID\nexit 2\n");
    let orig = Original::counter(&wd);
    orig.wait_lines(20);
    let mut m = migrate(&wd, &sshd, orig.pid(), &far_ckpt);
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(1), "stderr {:?}", m.stderr());
    let said = m.stderr();
    let pid = orig.pid();
    assert!(said.contains("it may or may not run there, so it is kept stopped here") && said.contains(&format!("`kill -CONT {pid}`")), "{said:?}");
    assert_eq!(state(pid), 'T', "the original is not kept stopped");
    let n = orig.lines().len();
    send_signal(pid as i32, libc::SIGCONT);
    assert_counter_prefix(&orig.wait_lines(n + 20), &reference);
}

/// `--detach`: migrate returns once the program runs there, and says below which process; the
/// program goes on by itself.
#[test]
fn a_detached_move_returns_once_it_runs() {
    let Some((wd, sshd)) = setup("migrate-detach") else { return };
    let reference = counter_reference();
    let mut orig = Original::counter(&wd);
    orig.wait_lines(20);
    let mut m = migrate_with(&wd, &sshd, orig.pid(), &[OsStr::new("--remote-ckpt"), ckpt().as_os_str(), OsStr::new("--detach")]);
    let st = m.wait_exit(LONG);
    let said = m.stderr();
    assert!(st.success() && said.contains("runs on 127.0.0.1"), "{st}; stderr {said:?}");
    let supervisor: u32 = said.split("it runs below process ").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{said:?}"));
    struct Supervisor(u32);
    impl Drop for Supervisor {
        fn drop(&mut self) {
            kill_all_below(self.0);
            send_signal(self.0 as i32, libc::SIGKILL);
        }
    }
    let supervisor = Supervisor(supervisor);
    orig.wait_gone();
    let n = orig.lines().len();
    assert_counter_prefix(&orig.wait_lines(n + 20), &reference);
    // The far side's image files stay while the program runs (its memory is mapped from them),
    // and go when it ends.
    assert!(std::fs::read_dir(wd.path.join("remote")).unwrap().next().is_some(), "the far side's images went while the program runs");
    drop(supervisor);
    let deadline = Instant::now() + LONG;
    while std::fs::read_dir(wd.path.join("remote")).unwrap().next().is_some() {
        assert!(Instant::now() < deadline, "the far side's images stay after the program ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    nothing_left(&wd);
}

/// A counter moved by migrate and `args`, with `env` in migrate's environment; what migrate
/// said. The counter goes on there as it was, the original is gone, nothing is left.
fn counter_moves_with(test: &str, args: &[&OsStr], env: &[(&str, &str)]) -> String {
    let Some((wd, sshd)) = setup(test) else { return String::new() };
    let reference = counter_reference();
    let mut orig = Original::counter(&wd);
    orig.wait_lines(20);
    let mut cmd = migrate_command(&wd, &sshd, orig.pid(), &[&[OsStr::new("--remote-ckpt"), ckpt().as_os_str()], args].concat());
    cmd.envs(env.iter().copied());
    let m = Proc::spawn(cmd, "ckpt migrate");
    let there = moved(&m, orig.pid());
    orig.wait_gone();
    let n = orig.lines().len();
    assert_counter_prefix(&orig.wait_lines(n + 20), &reference);
    drop(there);
    nothing_left(&wd);
    m.stderr()
}

/// `--via-ssh`: everything goes through ssh's connection, as before the direct channel.
#[test]
fn via_ssh_sends_everything_through_ssh() {
    let said = counter_moves_with("migrate-via-ssh", &[OsStr::new("--via-ssh")], &[]);
    if said.is_empty() {
        return;
    }
    assert!(said.contains("ckpt: the data goes through ssh (--via-ssh)") && !said.contains(DIRECT), "{said:?}");
}

/// The far side's port cannot be reached (migrate is told to connect to a port nothing listens
/// on, as behind a firewall): migrate says so, goes through ssh instead, and the program moves.
#[test]
fn an_unreachable_direct_port_falls_back_to_ssh() {
    // A port nothing listens on, and that nothing can take while the test runs (a far side of
    // another test listening on it would take the connection): a listener's port, kept by the
    // connection it accepted, then the listener closed. A connection to it is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    let _client = std::net::TcpStream::connect(at).unwrap();
    let _accepted = listener.accept().unwrap();
    drop(listener);
    assert!(std::net::TcpStream::connect(at).is_err(), "a connection to the closed listener's port was taken");
    let port = at.port().to_string();
    let said = counter_moves_with("migrate-fallback", &[], &[("CKPT_MIGRATE_TEST_DIRECT_PORT", &port)]);
    if said.is_empty() {
        return;
    }
    let line = format!("ckpt: cannot connect directly to 127.0.0.1:{port} (");
    assert!(said.contains(&line) && said.contains("): the data goes through ssh") && !said.contains(DIRECT), "{said:?}");
}

/// A record of the direct channel changed on its way (`CKPT_MIGRATE_TEST_TAMPER`: the first
/// after the greeting): the far side refuses it, migrate says why, and the program goes on here.
#[test]
fn a_changed_record_ends_the_move_and_the_original_goes_on() {
    let Some((wd, sshd)) = setup("migrate-tamper") else { return };
    let reference = counter_reference();
    let orig = Original::counter(&wd);
    orig.wait_lines(20);
    let mut cmd = migrate_command(&wd, &sshd, orig.pid(), &[OsStr::new("--remote-ckpt"), ckpt().as_os_str()]);
    cmd.env("CKPT_MIGRATE_TEST_TAMPER", "1");
    let mut m = Proc::spawn(cmd, "ckpt migrate");
    let st = m.wait_exit(LONG);
    assert_eq!(st.code(), Some(1), "stderr {:?}", m.stderr());
    let said = m.stderr();
    assert!(said.contains(DIRECT), "{said:?}");
    assert!(said.contains("does not open with this migration's key") && said.contains(&format!("process {} goes on running here", orig.pid())), "{said:?}");
    let n = orig.lines().len();
    assert_counter_prefix(&orig.wait_lines(n + 20), &reference);
    assert_ne!(state(orig.pid()), 'T');
    nothing_left(&wd);
}
