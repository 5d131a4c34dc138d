//! A job's work is never silently lost or mixed up: `ckpt job` restarts only images of its own
//! command and retires them when the program is done; a last checkpoint that cannot be written
//! never ends a program that has no image; a checkpoint that fails says why; an image directory
//! that cannot take images is refused at once; `ckpt checkpoint` reaches a restarted program
//! by the PID `ckpt restart` has.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn ckpt_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(ckpt());
    c.args(args);
    hermetic(&mut c);
    c
}

/// `ckpt job ARGS -- COMMAND` run in `dir`, its stdout and stderr appended to `out` and `err`
/// (as a batch system does with a job's output files). `prefix` runs it in another mount
/// namespace (`nsenter`).
fn start_job(dir: &Path, prefix: &[String], args: &[&str], command: &[&str], out: &Path, err: &Path) -> Proc {
    let mut c = Command::new("sh");
    c.current_dir(dir);
    c.arg("-c").arg(r#"out=$1 err=$2; shift 2; exec "$@" >> "$out" 2>> "$err""#).arg("sh").arg(out).arg(err);
    c.args(prefix).arg(ckpt()).arg("job").args(args).arg("--").args(command);
    Proc::spawn(c, "ckpt job")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The names in `dir` that begin with `prefix`.
fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect();
    v.sort();
    v
}

/// A Python script that prints `i` for i below its argument, one line every 10 ms, then `done`
/// and exits with the status given as its second argument (0 without one).
const COUNT_PY: &str = "import sys, time\nn = int(sys.argv[1])\nfor i in range(n):\n    print(i, flush=True)\n    time.sleep(0.01)\nprint('done', flush=True)\nsys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)\n";

/// A job stopped at a last checkpoint is not restarted by a job of another command in the same
/// directory, nor after its script was edited: each is refused, naming what differs, until
/// `--allow-changed` accepts it. When the program finishes, its images are removed, so that
/// another job there starts afresh.
#[test]
fn job_restarts_only_its_own_command_and_retires_its_images() {
    let wd = Workdir::new("work-origin");
    let dir = &wd.path;
    std::fs::write(dir.join("count.py"), COUNT_PY).unwrap();
    let (out, err) = (dir.join("out"), dir.join("err"));
    let ours = ["python3", "count.py", "300"];
    let reference = reference_run({
        let mut c = Command::new("python3");
        c.current_dir(dir).args(["count.py", "300"]);
        c
    }, LONG);

    let mut job = start_job(dir, &[], &[], &ours, &out, &err);
    wait_file_lines(&out, 30, LONG);
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75), "{}", read(&err));
    let stopped_at = file_lines(&out).len();
    assert!(dir.join("myckpt").exists());

    // Another command in the same directory: refused, and nothing runs.
    let mut other = start_job(dir, &[], &[], &["python3", "-c", "print('a different program')"], &out, &err);
    assert_eq!(other.wait_exit(LONG).code(), Some(2), "{}", read(&err));
    let e = read(&err);
    assert!(e.contains("it was started as `python3 count.py 300`, not `python3 -c 'print('\\''a different program'\\'')'`"), "{e}");
    assert!(e.contains("--allow-changed"), "{e}");
    assert_eq!(file_lines(&out).len(), stopped_at, "the other command printed something");

    // The same command after its script changed: refused, naming the script.
    std::fs::write(dir.join("count.py"), format!("{COUNT_PY}# edited\n")).unwrap();
    let mut edited = start_job(dir, &[], &[], &ours, &out, &err);
    assert_eq!(edited.wait_exit(LONG).code(), Some(2), "{}", read(&err));
    assert!(read(&err).contains("count.py changed since it was taken"), "{}", read(&err));
    assert_eq!(file_lines(&out).len(), stopped_at);

    // Accepted when asked; it goes on to the end, and its images are removed.
    let mut accepted = start_job(dir, &[], &["--allow-changed"], &ours, &out, &err);
    assert_eq!(accepted.wait_exit(LONG).code(), Some(0), "{}", read(&err));
    assert_eq!(file_lines(&out), reference, "the job did not go on exactly from its image: {}", read(&err));
    assert!(read(&err).contains("its images were removed"), "{}", read(&err));
    assert_eq!(names(dir, "myckpt"), Vec::<String>::new());

    // A job started there now starts afresh.
    std::fs::write(&out, "").unwrap();
    let mut fresh = start_job(dir, &[], &[], &["python3", "-c", "print('a different program')"], &out, &err);
    assert_eq!(fresh.wait_exit(LONG).code(), Some(0), "{}", read(&err));
    assert_eq!(file_lines(&out), ["a different program"]);
}

/// What differs between an image's command and a job's is said with the image's names escaped
/// (`\x1b`), by ckpt when it refuses and by myrestart's `--say` line when it goes on all the
/// same: a program named with an escape sequence (an image planted in the job's directory, say)
/// cannot recolour or drive the terminal.
#[test]
fn differences_from_an_image_reach_the_terminal_escaped() {
    let wd = Workdir::new("work-escaped");
    let dir = &wd.path;
    let named = "c\x1b[31mRED";
    std::fs::copy(prog("counter", &[]), dir.join(named)).unwrap();
    let (out, err) = (dir.join("out"), dir.join("err"));
    let mut job = start_job(dir, &[], &[], &[&format!("./{named}"), "100000", "10000"], &out, &err);
    wait_file_lines(&out, 3, LONG);
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75), "{}", read(&err));
    let counter = prog("counter", &[]);
    let other = [counter.to_str().unwrap(), "100000", "10000"];
    let mut refused = start_job(dir, &[], &[], &other, &out, &err);
    assert_eq!(refused.wait_exit(LONG).code(), Some(2), "{}", read(&err));
    let stopped_at = file_lines(&out).len();
    let mut accepted = start_job(dir, &[], &["--allow-changed"], &other, &out, &err);
    wait_file_lines(&out, stopped_at + 3, LONG);
    accepted.signal(libc::SIGUSR1);
    assert_eq!(accepted.wait_exit(LONG).code(), Some(75), "{}", read(&err));
    let e = std::fs::read(&err).unwrap();
    let text = String::from_utf8_lossy(&e);
    assert!(!e.contains(&0x1b), "a raw escape reached the terminal: {text:?}");
    assert_eq!(text.matches("it was started as `'./c\\x1b[31mRED' 100000 10000`").count(), 2, "{text}");
    assert!(text.contains("restarting it all the same"), "{text}");
}

/// A job whose program fails on its own (exit status 3) keeps its images, moved aside into
/// `myckpt.ended/`, from where `ckpt restart --newest` still goes on; the next job starts
/// afresh.
#[test]
fn job_that_fails_moves_its_images_aside() {
    let wd = Workdir::new("work-ended");
    let dir = &wd.path;
    std::fs::write(dir.join("count.py"), COUNT_PY).unwrap();
    let (out, err) = (dir.join("out"), dir.join("err"));
    let mut job = start_job(dir, &[], &["--interval", "0.2"], &["python3", "count.py", "150", "3"], &out, &err);
    assert_eq!(job.wait_exit(LONG).code(), Some(3), "{}", read(&err));
    let e = read(&err);
    assert!(e.contains("ended with exit status 3: its images are kept in") && e.contains("myckpt.ended/"), "{e}");
    let aside = dir.join("myckpt.ended");
    assert!(aside.join("myckpt").exists(), "{:?}", names(&aside, ""));
    assert_eq!(names(dir, "myckpt"), ["myckpt.ended"]);
    let inspect = ckpt_cmd(&["inspect", aside.join("myckpt").to_str().unwrap()]).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stdout));
    let said = String::from_utf8_lossy(&inspect.stdout);
    assert!(said.contains("started as   python3 count.py 150 3"), "{said}");

    let mut again = start_job(dir, &[], &[], &["python3", "count.py", "5"], &out, &err);
    assert_eq!(again.wait_exit(LONG).code(), Some(0));
    assert!(read(&err).matches("yet: starting").count() == 2, "{}", read(&err));
}

/// A process that keeps a private mount namespace with a 1 MiB tmpfs at `small`; the prefix
/// that runs a command in it (with images that carry their libraries, so none fits).
fn full_disk(small: &Path) -> (Proc, Vec<String>) {
    std::fs::create_dir(small).unwrap();
    let mut c = Command::new("unshare");
    let script = format!("mount -t tmpfs -o size=1m tmpfs '{}' && echo mounted && exec sleep 600", small.display());
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let holder = Proc::spawn(c, "namespace holder");
    holder.wait_lines(1, SHORT);
    let prefix = ["nsenter", "-t", &holder.pid.to_string(), "-m", "--", "env", "CKPT_SELF_CONTAINED=1"].map(String::from).to_vec();
    (holder, prefix)
}

/// The first child of process `pid` (waited for).
fn child_of(pid: u32) -> u32 {
    let deadline = Instant::now() + SHORT;
    loop {
        let c = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = c.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return c;
        }
        assert!(Instant::now() < deadline, "process {pid} has no child");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

/// `ckpt checkpoint --kill` on a full disk, with no earlier image: the program is not ended
/// (all its work would be gone); it goes on, and ckpt says why and that it goes on.
#[test]
fn kill_without_any_image_leaves_the_program_running() {
    if !can_fill_a_disk("kill_without_any_image_leaves_the_program_running") {
        return;
    }
    let wd = Workdir::new("work-kill-full");
    let small = wd.path.join("small");
    let (mut holder, prefix) = full_disk(&small);
    let image = small.join("myckpt");
    let mut c = Command::new(&prefix[0]);
    c.args(&prefix[1..]).arg(ckpt()).args(["run", "--image", image.to_str().unwrap(), "--"]).arg(prog("counter", &[])).args(["100000", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run counter");
    orig.wait_lines(10, SHORT);
    let pid = orig.program_pid();
    let mut c = Command::new(&prefix[0]);
    c.args(&prefix[1..]).arg(ckpt()).args(["checkpoint", &pid.to_string(), "--kill"]);
    let out = c.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("No space left on device") && said.contains("no image of this run of it exists, so it was not ended: it goes on running"), "{said}");
    // It goes on.
    let n = orig.lines().len();
    orig.wait_lines(n + 10, SHORT);
    assert!(matches!(state_of(pid), Some('S' | 'R')), "{:?}", state_of(pid));
    assert!(orig.stderr().contains("it does not end: it goes on"), "{}", orig.stderr());
    orig.kill9();
    holder.kill9();
}

/// The same for a job: its program is kept alive, stopped; the job neither ends nor requeues;
/// SIGCONT to the job lets the program run on.
#[test]
fn job_stop_without_any_image_keeps_the_program_stopped_and_alive() {
    if !can_fill_a_disk("job_stop_without_any_image_keeps_the_program_stopped_and_alive") {
        return;
    }
    let wd = Workdir::new("work-job-full");
    let small = wd.path.join("small");
    let (mut holder, prefix) = full_disk(&small);
    let (out, err, requeued) = (wd.path.join("out"), wd.path.join("err"), wd.path.join("requeued"));
    let image = small.join("myckpt");
    let requeue = format!("echo requeued >> '{}'", requeued.display());
    let counter = prog("counter", &[]);
    let mut job = start_job(&wd.path, &prefix, &["--image", image.to_str().unwrap(), "--requeue", &requeue], &[counter.to_str().unwrap(), "100000", "10000"], &out, &err);
    wait_file_lines(&out, 10, LONG);
    job.signal(libc::SIGUSR1);
    let deadline = Instant::now() + LONG;
    while !read(&err).contains("kept alive, stopped") {
        assert!(Instant::now() < deadline, "{}", read(&err));
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = read(&err);
    assert!(e.contains("No space left on device"), "{e}");
    let pid = child_of(job.pid);
    assert_eq!(state_of(pid), Some('T'));
    assert!(state_of(job.pid).is_some_and(|s| s != 'Z'), "the job ended");
    assert!(!requeued.exists(), "requeued although nothing was saved");
    // Let it run on.
    job.signal(libc::SIGCONT);
    let n = file_lines(&out).len();
    wait_file_lines(&out, n + 10, LONG);
    job.signal(libc::SIGTERM);
    job.wait_exit(LONG);
    holder.kill9();
}

/// An image directory that cannot take images is refused when the program starts, not at every
/// checkpoint after; and a checkpoint that fails later says the writer's own reason.
#[test]
fn unwritable_image_directory_is_refused_and_failures_say_why() {
    for sub in ["run", "job"] {
        let started = Instant::now();
        let out = ckpt_cmd(&[sub, "--image", "/nonexistent/dir/img", "--interval", "1", "--", "true"]).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub}: {e}");
        assert!(e.contains("cannot write images to /nonexistent/dir: No such file or directory"), "{sub}: {e}");
        assert!(started.elapsed() < SHORT);
    }
    let wd = Workdir::new("work-why");
    let sub = wd.path.join("images");
    std::fs::create_dir(&sub).unwrap();
    let image = sub.join("myckpt");
    let mut c = ckpt_cmd(&["run", "--image", image.to_str().unwrap(), "--"]);
    c.arg(prog("counter", &[])).args(["100000", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run counter");
    orig.wait_lines(5, SHORT);
    std::fs::remove_dir(&sub).unwrap();
    let out = ckpt_cmd(&["checkpoint", &orig.pid.to_string(), "--wait"]).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains(&format!("the checkpoint of process {} failed: ", orig.pid)) && e.contains("No such file or directory"), "{e}");
    assert!(!e.contains("stderr says why"), "{e}");
    orig.kill9();
}

/// `ckpt checkpoint PID` where PID is what `ckpt restart … &` left in `$!` (myrestart's):
/// the program restored below it is checkpointed, and with `--kill` ended at its image.
#[test]
fn checkpoint_by_the_pid_of_ckpt_restart() {
    let wd = Workdir::new("work-restart-pid");
    let p = prog("counter", &[]);
    let img = wd.image();
    let reference = reference_run({
        let mut c = Command::new(&p);
        c.args(["400", "10000"]);
        c
    }, LONG);
    let mut c = ckpt_cmd(&["run", "--image", img.to_str().unwrap(), "--"]);
    c.arg(&p).args(["400", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run counter");
    orig.wait_lines(20, SHORT);
    orig.checkpoint(&img, LONG);
    orig.kill9();

    let mut restored = Proc::spawn(ckpt_cmd(&["restart", img.to_str().unwrap()]), "ckpt restart");
    restored.wait_lines(20, SHORT);
    let pid = restored.pid.to_string();
    let out = ckpt_cmd(&["checkpoint", &pid, "--wait"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    restored.wait_lines(restored.lines().len() + 10, SHORT);
    let at = restored.lines().len();
    let out = ckpt_cmd(&["checkpoint", &pid, "--kill"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    restored.wait_exit(LONG);
    let kill = restored.lines().len();
    let mut again = Proc::spawn(ckpt_cmd(&["restart", img.to_str().unwrap()]), "ckpt restart");
    assert!(again.wait_exit(LONG).success(), "{}", again.stderr());
    // The first restart continued the original, and the second the first, from its last image.
    let first: Vec<String> = restored.lines();
    let c = assert_continues(&reference, 0, reference.len(), &first);
    assert_continues(&reference, c + at, c + kill, &again.lines());
}

/// `--interval` takes fractions of a second.
#[test]
fn interval_takes_fractions() {
    let wd = Workdir::new("work-interval");
    let img = wd.image();
    let mut c = ckpt_cmd(&["run", "--interval", "0.3", "--image", img.to_str().unwrap(), "--"]);
    c.arg(prog("counter", &[])).args(["100000", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run counter");
    let second: PathBuf = format!("{}.1", img.display()).into();
    let deadline = Instant::now() + LONG;
    while !second.exists() {
        assert!(Instant::now() < deadline, "no second periodic image: {}", orig.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    orig.kill9();
    let out = ckpt_cmd(&["inspect", "--json", img.to_str().unwrap()]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["interval_ms"], 300);
}

/// `ckpt restart --newest` never goes on from an older image of another command: with the
/// newest image (of one command) damaged, the older one (of another) is passed over, naming
/// what differs, and the restart is refused; `--allow-changed` takes it.
#[test]
fn restart_newest_keeps_to_the_newest_images_command() {
    let wd = Workdir::new("work-newest");
    let img = wd.image();
    let p = prog("counter", &[]);
    for n in ["100000", "200000"] {
        let mut c = ckpt_cmd(&["run", "--keep", "1", "--image", img.to_str().unwrap(), "--"]);
        c.arg(&p).args([n, "10000"]);
        let mut orig = Proc::spawn(c, "ckpt run counter");
        orig.wait_lines(3, SHORT);
        orig.checkpoint(&img, LONG);
        orig.kill9();
    }
    let good = std::fs::read(&img).unwrap();
    std::fs::write(&img, &good[..good.len() / 2]).unwrap();
    let mut refused = Proc::spawn(ckpt_cmd(&["restart", "--newest", img.to_str().unwrap()]), "ckpt restart --newest");
    let st = refused.wait_exit(LONG);
    let e = refused.stderr();
    assert_eq!(st.code(), Some(2), "{e}");
    assert!(e.contains(&format!("passing over {}.1: it is of another command: it was started as `{} 100000 10000`, not `{} 200000 10000`", img.display(), p.display(), p.display())), "{e}");
    let mut c = ckpt_cmd(&["restart", "--newest", "--allow-changed", "--inherit-stdio", img.to_str().unwrap()]);
    c.current_dir(&wd.path);
    let mut older = Proc::spawn(c, "ckpt restart --newest --allow-changed");
    older.wait_lines(3, SHORT);
    assert!(older.stderr().contains(&format!("restarting from {}.1", img.display())), "{}", older.stderr());
    older.kill9();
}

/// `ckpt job` tells a restart that did not happen from the program's own end: a refused restart
/// (exit status 2, nothing changed) keeps the images for another try, and so does a restored
/// program killed by a signal (as the OOM killer would); only a program that exits retires them.
#[test]
fn job_keeps_its_images_when_the_restart_is_refused_or_the_program_is_killed() {
    let wd = Workdir::new("work-refused");
    let dir = &wd.path;
    // The output in a directory of its own, which can be swapped for a symbolic link.
    let logs = dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (out, err) = (logs.join("out"), dir.join("err"));
    let n = 300;
    let reference = reference_run({
        let mut c = Command::new(prog("counter", &[]));
        c.args([n.to_string(), "10000".to_string()]);
        c
    }, LONG);
    let counter = prog("counter", &[]);
    let cmd = [counter.to_str().unwrap(), "300", "10000"];
    let mut job = start_job(dir, &[], &[], &cmd, &out, &err);
    wait_file_lines(&out, 30, LONG);
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75), "{}", read(&err));

    // A symbolic link on the path of the program's output (which the checkpoint found none
    // on) is refused by myrestart, which alone reopens the files an image names: nothing ran,
    // the images stay.
    let image = dir.join("myckpt");
    let real = dir.join("logs.real");
    std::fs::rename(&logs, &real).unwrap();
    std::os::unix::fs::symlink(&real, &logs).unwrap();
    let mut refused = start_job(dir, &[], &[], &cmd, &out, &err);
    assert_eq!(refused.wait_exit(LONG).code(), Some(2), "{}", read(&err));
    assert!(read(&err).contains("a symbolic link is in its path now"), "{}", read(&err));
    assert!(read(&err).contains("was not restarted (myrestart's exit status 2); its images stay as they are"), "{}", read(&err));
    assert!(image.exists() && !dir.join("myckpt.ended").exists(), "{:?}", names(dir, "myckpt"));
    std::fs::remove_file(&logs).unwrap();
    std::fs::rename(&real, &logs).unwrap();
    // An image others may write is not restarted (ckpt passes it over, as myrestart would
    // refuse it): the images stay.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut refused = start_job(dir, &[], &[], &cmd, &out, &err);
    assert_eq!(refused.wait_exit(LONG).code(), Some(2), "{}", read(&err));
    assert!(read(&err).contains("the image may be written by other users (uid ") && read(&err).contains("mode 666)"), "{}", read(&err));
    assert!(image.exists() && !dir.join("myckpt.ended").exists(), "{:?}", names(dir, "myckpt"));
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Restarted (from a last checkpoint: ckpt job takes a fresh image at once, to go back to if
    // it crashes), then killed by a signal: the images stay, and the next start goes on.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0);
    let last = ino(&image);
    let mut restarted = start_job(dir, &[], &[], &cmd, &out, &err);
    let at = file_lines(&out).len();
    wait_file_lines(&out, at + 20, LONG);
    let deadline = Instant::now() + LONG;
    while ino(&image) == last {
        assert!(Instant::now() < deadline, "no fresh image after the restart: {}", read(&err));
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_file_lines(&out, file_lines(&out).len() + 10, LONG);
    let program = program_of(restarted.pid);
    // kill(2) of the restored program this test's job started.
    send_signal(program as i32, libc::SIGKILL);
    assert_eq!(restarted.wait_exit(LONG).code(), Some(128 + 9), "{}", read(&err));
    assert!(read(&err).contains("was ended by signal 9; its images stay"), "{}", read(&err));
    assert!(image.exists() && !dir.join("myckpt.ended").exists(), "{:?}", names(dir, "myckpt"));
    let mut finish = start_job(dir, &[], &[], &cmd, &out, &err);
    assert_eq!(finish.wait_exit(LONG).code(), Some(0), "{}", read(&err));
    // Every line once: the lines the killed run printed after the image were cut.
    assert_eq!(file_lines(&out), reference, "{}", read(&err));
    assert_eq!(names(dir, "myckpt"), Vec::<String>::new());
}

/// The program behind a job's or a restart's supervisors: below `ckpt job`, below myrestart
/// and its init.
fn program_of(pid: u32) -> u32 {
    let deadline = Instant::now() + SHORT;
    let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_string();
    let mut at = pid;
    while matches!(comm(at).as_str(), "ckpt" | "myrestart") {
        let kids = std::fs::read_to_string(format!("/proc/{at}/task/{at}/children")).unwrap_or_default();
        match kids.split_whitespace().next().and_then(|c| c.parse().ok()) {
            Some(c) => at = c,
            None => {
                assert!(Instant::now() < deadline, "no program below {pid}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    at
}

/// A shell script run by `ckpt job`: bash defines its own `getenv`, which the library's settings
/// must be read before; the job stops and goes on, and an edited script is refused.
#[test]
fn a_bash_script_job_goes_on_and_its_edits_are_seen() {
    let wd = Workdir::new("work-bash");
    let dir = &wd.path;
    let script = "i=0\nwhile [ $i -lt 150 ]; do echo $i; i=$((i+1)); sleep 0.01; done\n";
    std::fs::write(dir.join("count.sh"), script).unwrap();
    let (out, err) = (dir.join("out"), dir.join("err"));
    let cmd = ["bash", "count.sh"];
    let mut job = start_job(dir, &[], &["--interval", "0.2"], &cmd, &out, &err);
    wait_file_lines(&out, 30, LONG);
    // Periodic images come (the interval reached bash's libckpt).
    let second = dir.join("myckpt.1");
    let deadline = Instant::now() + LONG;
    while !second.exists() {
        assert!(Instant::now() < deadline, "no periodic images: {}", read(&err));
        std::thread::sleep(Duration::from_millis(20));
    }
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75), "{}", read(&err));
    let said = ckpt_cmd(&["inspect", dir.join("myckpt").to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&said.stdout).contains("started as   bash count.sh"), "{}", String::from_utf8_lossy(&said.stdout));

    std::fs::write(dir.join("count.sh"), format!("echo edited\n{script}")).unwrap();
    let mut edited = start_job(dir, &[], &[], &cmd, &out, &err);
    assert_eq!(edited.wait_exit(LONG).code(), Some(2), "{}", read(&err));
    assert!(read(&err).contains("count.sh changed since it was taken"), "{}", read(&err));
    std::fs::write(dir.join("count.sh"), script).unwrap();
    let mut again = start_job(dir, &[], &[], &cmd, &out, &err);
    assert_eq!(again.wait_exit(LONG).code(), Some(0), "{}", read(&err));
    let want: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    assert_eq!(file_lines(&out), want, "{}", read(&err));
}

/// A Python program that ran a subprocess (CPython resets the signal handlers in a `vfork`
/// child, which shares the program's memory) is still checkpointed by `ckpt checkpoint`.
#[test]
fn a_python_program_that_ran_a_subprocess_is_checkpointed() {
    let wd = Workdir::new("work-subprocess");
    let img = wd.image();
    let code = "import subprocess, time\nsubprocess.run(['true'])\nfor i in range(100000):\n    print(i, flush=True)\n    time.sleep(0.01)\n";
    let mut c = ckpt_cmd(&["run", "--image", img.to_str().unwrap(), "--", "python3", "-c", code]);
    c.current_dir(&wd.path);
    let mut orig = Proc::spawn(c, "ckpt run python3");
    orig.wait_lines(5, SHORT);
    let out = ckpt_cmd(&["checkpoint", &orig.pid.to_string(), "--wait"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!orig.stderr().contains("installed its own handler"), "{}", orig.stderr());
    orig.kill9();
}
