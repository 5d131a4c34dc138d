//! `ckpt checkpoint --to PATH` (one image to another path than the process's own, as `ckpt
//! migrate` takes its rounds) and `--hold` (the last checkpoint, after which the process, its
//! whole tree, stays stopped at its image until it is continued or killed), for a process under
//! libckpt, a tree under libckpt and a process ckpt attaches to.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `attachee` (tests/progs/attachee.c): prints 0, 1, 2, … every 3 ms, waiting in select.
fn counter() -> Command {
    let mut c = Command::new(prog("attachee", &[]));
    c.args(["select", "3"]);
    c
}

fn checkpoint(pid: u32, args: &[&str]) -> Output {
    Command::new(ckpt()).args(["checkpoint", &pid.to_string()]).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

/// Every line so far is the next number (nothing skipped or printed twice), and there are at
/// least `n` of them.
fn counts_on(p: &Proc, n: usize) -> Vec<String> {
    let lines = p.wait_lines(n, LONG);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &i.to_string(), "line {i}; stderr {:?}", p.stderr());
    }
    lines
}

/// A restart of `image` goes on counting from exactly `from`.
fn restarts_at(image: &Path, from: usize) {
    let mut r = Proc::restart(image);
    let after = r.wait_lines(20, LONG);
    r.kill_tree();
    for (i, l) in after.iter().enumerate() {
        assert_eq!(l, &(from + i).to_string(), "line {i} after the restart of {}; stderr {:?}", image.display(), r.stderr());
    }
}

/// A restart of `image` goes on counting from some line in `from..=upto`; returns it.
fn restarts_between(image: &Path, from: usize, upto: usize) -> usize {
    let mut r = Proc::restart(image);
    let after = r.wait_lines(20, LONG);
    r.kill_tree();
    let first: usize = after[0].parse().unwrap_or_else(|_| panic!("{after:?}; stderr {:?}", r.stderr()));
    assert!((from..=upto).contains(&first), "the restart of {} began at {first}, not within {from}..={upto}", image.display());
    for (i, l) in after.iter().enumerate() {
        assert_eq!(l, &(first + i).to_string(), "line {i} after the restart; stderr {:?}", r.stderr());
    }
    first
}

/// Waits until process `pid` is stopped (state T).
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + SHORT;
    while state_of(pid) != Some('T') {
        assert!(Instant::now() < deadline, "process {pid} is not stopped: {:?}", state_of(pid));
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `--to PATH`: the image goes to PATH and restarts; nothing appears at the process's own image
/// path, and its next plain checkpoint goes there as before.
#[test]
fn to_writes_the_one_image_to_another_path() {
    let wd = Workdir::new("hold-to");
    let own = wd.image();
    let to = wd.path.join("elsewhere").join("round");
    std::fs::create_dir(to.parent().unwrap()).unwrap();
    let mut p = Proc::preloaded(counter(), &own, "counter");
    p.wait_lines(20, LONG);
    let at = p.lines().len();
    let said = ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap(), "--wait"]));
    assert!(said.starts_with(&format!("{} ", to.display())), "{said}");
    assert!(!own.exists(), "the process's own image path was written");
    counts_on(&p, at + 10);
    ok(&checkpoint(p.pid, &["--wait"]));
    assert!(own.exists(), "the next plain checkpoint did not go to the image path");
    p.kill9();
    let killed = p.lines().len();
    restarts_between(&to, at, killed);
}

/// Two `--to` checkpoints in a row at one path: the second is incremental on the first (a big
/// heap the program never touches again is left to it), and restarts from the chain.
#[test]
fn a_second_checkpoint_to_the_same_path_is_incremental() {
    let wd = Workdir::new("hold-to-incr");
    let to = wd.path.join("round");
    let mut c = Command::new(prog("bigheap", &[]));
    c.args(["64", "100000"]);
    let mut p = Proc::preloaded(c, &wd.image(), "bigheap");
    p.wait_until(|l| l.iter().any(|l| l.starts_with("tick 2")), LONG, "ticks");
    ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap(), "--wait"]));
    let first = std::fs::metadata(&to).unwrap().blocks() * 512;
    let n = p.lines().len();
    p.wait_lines(n + 2, LONG);
    ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap(), "--wait"]));
    let second = std::fs::metadata(&to).unwrap().blocks() * 512;
    assert!(first > 64 << 20, "the first image holds the heap: {first} bytes");
    assert!(second < first / 8, "the second image is not incremental: {second} bytes allocated after {first}");
    assert!(!wd.image().exists(), "the process's own image path was written");
    p.kill9();
    let at_kill = p.lines().len();
    let mut r = Proc::restart(&to);
    let after = r.wait_until(|l| l.len() >= 3, LONG, "ticks after the restart");
    r.kill9();
    let first_tick: usize = after[0].strip_prefix("tick ").and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{after:?}; stderr {:?}", r.stderr()));
    assert!(first_tick < at_kill, "{after:?}");
}

/// `--hold`: the process stops once its image is in place and prints nothing more; SIGCONT lets
/// it go on with no line lost or repeated; its image restarts at exactly the line after the
/// last one it printed.
#[test]
fn hold_stops_the_process_at_its_image() {
    let wd = Workdir::new("hold-single");
    let mut p = Proc::preloaded(counter(), &wd.image(), "counter");
    p.wait_lines(20, LONG);
    let said = ok(&checkpoint(p.pid, &["--hold"]));
    assert!(said.contains(&format!("process {} is stopped at its image: kill -CONT to let it go on, kill -9 to end it", p.pid)), "{said}");
    assert_eq!(state_of(p.pid), Some('T'), "not stopped once ckpt returned");
    let held = p.lines().len();
    // Stopped, it prints nothing (looked at again after a while: a stopped process stays so).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.lines().len(), held, "it printed while held");
    assert_eq!(state_of(p.pid), Some('T'));
    p.signal(libc::SIGCONT);
    counts_on(&p, held + 20);
    p.kill9();
    restarts_at(&wd.image(), held);
}

/// `--hold` of a process whose leader thread blocks every signal (as it does for a moment inside
/// glibc's `pthread_kill`, which once made `ckpt migrate` of a threaded program wait for ever):
/// libckpt's thread stopper holds the leader with ptrace, so once held its state is 't' (a
/// trace stop), not 'T'. ckpt returns all the same once every thread is stopped; SIGCONT lets
/// it go on, and its image restarts at the line after the last one it printed.
#[test]
fn hold_returns_when_the_leader_is_held_with_ptrace() {
    let wd = Workdir::new("hold-leader");
    let mut p = Proc::preloaded(Command::new(prog("leaderblocks", &["-pthread"])), &wd.image(), "leaderblocks");
    p.wait_lines(20, LONG);
    // Bounded: without a bound a process ckpt took for running would be waited for 600 s.
    let said = ok(&checkpoint(p.pid, &["--hold", "--timeout", "30"]));
    assert!(said.contains(&format!("process {} is stopped at its image", p.pid)), "{said}");
    assert_eq!(state_of(p.pid), Some('t'), "the leader is not the thread held with ptrace: this test tests nothing");
    let states: Vec<char> = std::fs::read_dir(format!("/proc/{}/task", p.pid)).unwrap().flatten().filter_map(|t| state_of_path(&t.path().join("stat"))).collect();
    assert!(states.iter().all(|&s| s == 'T' || s == 't'), "a thread runs while held: {states:?}");
    let held = p.lines().len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.lines().len(), held, "it printed while held");
    p.signal(libc::SIGCONT);
    counts_on(&p, held + 20);
    p.kill9();
    restarts_at(&wd.image(), held);
}

fn state_of_path(stat: &Path) -> Option<char> {
    let stat = std::fs::read_to_string(stat).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

/// `--hold --to PATH` (the last round of `ckpt migrate`), the held process killed: the image at
/// PATH restarts where it stopped, the own image path untouched.
#[test]
fn hold_to_another_path_restarts_after_the_kill() {
    let wd = Workdir::new("hold-to-kill");
    let to = wd.path.join("last");
    let mut p = Proc::preloaded(counter(), &wd.image(), "counter");
    p.wait_lines(20, LONG);
    ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap()]));
    ok(&checkpoint(p.pid, &["--hold", "--to", to.to_str().unwrap()]));
    wait_stopped(p.pid);
    let held = p.lines().len();
    assert!(!wd.image().exists(), "the process's own image path was written");
    p.kill9();
    restarts_at(&to, held);
}

/// A held tree: the root and its child stop; `kill -CONT` of the root lets both go on, the
/// pipe between them losing nothing; the image restarts too.
#[test]
fn hold_stops_a_whole_tree_and_cont_lets_it_go_on() {
    let wd = Workdir::new("hold-tree");
    let to = wd.path.join("tree");
    let mut c = Command::new(prog("family", &[]));
    c.args(["100000", "2000"]);
    let mut p = Proc::preloaded(c, &wd.image(), "family");
    p.wait_lines(3, LONG);
    let child: u32 = p.lines()[0].strip_prefix("child ").and_then(|c| c.parse().ok()).unwrap();
    let said = ok(&checkpoint(p.pid, &["--hold", "--to", to.to_str().unwrap()]));
    assert!(said.contains("with the 1 processes of its tree"), "{said}");
    assert_eq!((state_of(p.pid), state_of(child)), (Some('T'), Some('T')));
    assert!(!wd.image().exists());
    let held = p.lines().len();
    p.signal(libc::SIGCONT);
    p.wait_lines(held + 3, LONG);
    assert!(matches!(state_of(child), Some('S' | 'R')), "the child did not go on: {:?}", state_of(child));
    assert!(!p.lines().iter().any(|l| l.starts_with("wrong")), "{:?}", p.lines());
    p.kill_tree();
    let mut r = Proc::restart(&to);
    let n = 2;
    let after = r.wait_until(|l| l.iter().filter(|l| l.starts_with("got ")).count() >= n, LONG, "the tree going on");
    r.kill_tree();
    assert!(!after.iter().any(|l| l.starts_with("wrong")), "{after:?}");
}

/// `--to` of a tree: the tree's image goes to PATH, and restarts.
#[test]
fn to_takes_a_tree_to_another_path() {
    let wd = Workdir::new("hold-tree-to");
    let to = wd.path.join("tree");
    let mut c = Command::new(prog("family", &[]));
    c.args(["100000", "2000"]);
    let mut p = Proc::preloaded(c, &wd.image(), "family");
    p.wait_lines(3, LONG);
    ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap(), "--wait"]));
    assert!(!wd.image().exists());
    p.kill_tree();
    let mut r = Proc::restart(&to);
    let after = r.wait_until(|l| l.iter().filter(|l| l.starts_with("got ")).count() >= 2, LONG, "the tree going on");
    r.kill_tree();
    assert!(!after.iter().any(|l| l.starts_with("wrong")), "{after:?}");
}

/// A process started without ckpt: `--to` writes its image there; `--hold` leaves it stopped,
/// SIGCONT lets it go on exactly, and the held image restarts at the next line.
#[test]
fn an_attached_process_is_taken_to_a_path_and_held() {
    let wd = Workdir::new("hold-attached");
    let to = wd.path.join("attached");
    let mut p = Proc::spawn(counter(), "counter");
    p.wait_lines(20, LONG);
    ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap(), "--wait"]));
    assert!(to.exists() && !wd.image().exists());
    let held_image = wd.path.join("held");
    let said = ok(&checkpoint(p.pid, &["--hold", "--to", held_image.to_str().unwrap()]));
    assert!(said.contains("is stopped at its image"), "{said}");
    assert_eq!(state_of(p.pid), Some('T'));
    let held = p.lines().len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.lines().len(), held, "it printed while held");
    p.signal(libc::SIGCONT);
    counts_on(&p, held + 20);
    p.kill9();
    restarts_at(&held_image, held);
}

/// A hold whose image cannot be written leaves the program running and says why: a directory
/// that does not exist is refused before anything is asked of it.
#[test]
fn a_hold_that_cannot_be_written_leaves_the_program_running() {
    let wd = Workdir::new("hold-fails");
    let mut p = Proc::preloaded(counter(), &wd.image(), "counter");
    p.wait_lines(10, LONG);
    let out = checkpoint(p.pid, &["--hold", "--to", wd.path.join("missing/img").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot write images to") && said.contains("missing"), "{said}");
    let n = p.lines().len();
    counts_on(&p, n + 10);
    assert!(!wd.image().exists());
    p.kill9();
}

/// `--hold` and `--kill` exclude each other.
#[test]
fn hold_and_kill_exclude_each_other() {
    let out = Command::new(ckpt()).args(["checkpoint", "1", "--hold", "--kill"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{out:?}");
}

/// A hold whose image the program cannot write (its directory is on a full file system): the
/// program is not stopped; it goes on counting, and ckpt says why and exits 1.
#[test]
fn a_hold_whose_image_fails_leaves_the_program_running() {
    if !can_fill_a_disk("a_hold_whose_image_fails_leaves_the_program_running") {
        return;
    }
    let wd = Workdir::new("hold-full");
    let small = wd.path.join("small");
    std::fs::create_dir(&small).unwrap();
    // A private mount namespace with a 1 MiB tmpfs at `small`, which the program and ckpt enter;
    // its images carry their files (CKPT_SELF_CONTAINED=1), more than the tmpfs holds.
    let script = format!("mount -t tmpfs -o size=1m tmpfs '{}' && echo mounted && exec sleep 600", small.display());
    let mut holder = Proc::spawn({
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
        c
    }, "namespace holder");
    holder.wait_lines(1, SHORT);
    let enter = |c: &mut Command| {
        c.args(["-t", &holder.pid.to_string(), "-m", "--", "env", "CKPT_SELF_CONTAINED=1"]);
    };
    let mut c = Command::new("nsenter");
    enter(&mut c);
    c.arg("env").arg(format!("LD_PRELOAD={}", libckpt().display())).arg(format!("CKPT_IMAGE={}", wd.image().display())).arg(prog("attachee", &[])).args(["select", "3"]);
    let mut p = Proc::spawn(c, "counter in the namespace");
    p.wait_lines(10, LONG);
    let pid = child_pids(p.pid);
    let mut c = Command::new("nsenter");
    enter(&mut c);
    c.arg(ckpt()).args(["checkpoint", &pid.to_string(), "--hold", "--to"]).arg(small.join("img"));
    let out = c.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("No space left on device") && said.contains("it was not stopped: it goes on running"), "{said}");
    let n = p.lines().len();
    counts_on(&p, n + 10);
    assert!(matches!(state_of(pid), Some('S' | 'R')), "{:?}", state_of(pid));
    p.kill9();
    holder.kill9();
}

/// The program below `nsenter` and `env` (each execs the next, so it is `pid` itself, unless
/// nsenter forked).
fn child_pids(pid: u32) -> u32 {
    let below = descendants(pid);
    below.last().copied().unwrap_or(pid)
}

/// A process restarted from an image taken `--to` PATH writes its next checkpoints to its own
/// image path, not PATH (the redirection was the one checkpoint's).
#[test]
fn a_process_restarted_from_an_image_at_to_checkpoints_to_its_own_path() {
    let wd = Workdir::new("hold-to-restarted");
    let to = wd.path.join("round");
    let mut p = Proc::preloaded(counter(), &wd.image(), "counter");
    p.wait_lines(20, LONG);
    ok(&checkpoint(p.pid, &["--to", to.to_str().unwrap(), "--wait"]));
    p.kill9();
    let to_id = std::fs::metadata(&to).unwrap().ino();
    let mut r = Proc::restart(&to);
    r.wait_lines(5, LONG);
    let said = ok(&checkpoint(r.pid, &["--wait"]));
    assert!(said.starts_with(&format!("{} ", wd.image().display())), "{said}");
    assert!(wd.image().exists());
    assert_eq!(std::fs::metadata(&to).unwrap().ino(), to_id, "the image at --to's path was replaced");
    r.kill_tree();
}

/// A held multi-threaded program: every thread stops with it, and after SIGCONT every worker
/// counts again, each with its own TID, name and count.
#[test]
fn a_held_threaded_program_goes_on_with_every_thread() {
    let wd = Workdir::new("hold-threads");
    let mut p = Proc::preloaded(Command::new(prog("threads", &["-pthread"])), &wd.image(), "threads");
    p.wait_lines(15, LONG);
    ok(&checkpoint(p.pid, &["--hold"]));
    let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", p.pid)).unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    for t in &tasks {
        let stat = std::fs::read_to_string(format!("/proc/{}/task/{t}/stat", p.pid)).unwrap();
        let state = stat.rsplit(") ").next().unwrap().chars().next();
        assert!(matches!(state, Some('T' | 't')), "thread {t} is not stopped: {state:?}");
    }
    let held = p.lines().len();
    p.signal(libc::SIGCONT);
    // Every worker moves again (each within some ten ticks, however loaded the machine), and
    // every one is intact all along.
    let lines = p.wait_until(|l| l.len() > held + 10 && l.last().is_some_and(|t| t.contains(" moved=4")), LONG, "every worker to move after SIGCONT");
    for l in &lines[held..] {
        assert!(l.contains(" ok=4 "), "{l}; stderr {:?}", p.stderr());
    }
    p.kill9();
}
