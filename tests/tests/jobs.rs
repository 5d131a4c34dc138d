//! `ckpt job` (a program that outlives its batch job: stopped at a last checkpoint on a signal,
//! restarted from the newest image on the next start) and `ckpt restart --newest`. The Slurm
//! test drives the same command through a real Slurm (tests/tests/slurm.rs).
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `ckpt job ARGS -- counter N 10000` (a line every 10 ms) with its stdout and stderr appended
/// to `out` and `err`, as a batch system does with a job's output file. `prefix` runs it in
/// another mount namespace (`nsenter`).
fn start_job(prefix: &[String], args: &[&str], n: usize, out: &Path, err: &Path) -> Proc {
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"out=$1 err=$2; shift 2; exec "$@" >> "$out" 2>> "$err""#).arg("sh").arg(out).arg(err);
    c.args(prefix).arg(ckpt()).arg("job").args(args).arg("--").arg(prog("counter", &[])).arg(n.to_string()).arg("10000");
    Proc::spawn(c, "ckpt job")
}

fn reference(n: usize) -> Vec<String> {
    let mut c = Command::new(prog("counter", &[]));
    c.args([n.to_string(), "10000".to_string()]);
    reference_run(c, LONG)
}

/// Three starts of one job: the first two are stopped by SIGUSR1 at a last checkpoint (exit
/// status 75, the requeue command run), each next start restarts from the image, and the third
/// runs to the end with the program's own status. The output, appended over the three runs,
/// is exactly an uninterrupted run's: nothing is printed twice or lost.
#[test]
fn job_stops_at_its_last_checkpoint_and_goes_on_from_it_exactly() {
    let wd = Workdir::new("job");
    let (out, err, requeued) = (wd.path.join("out"), wd.path.join("err"), wd.path.join("requeued"));
    let n = 400;
    let reference = reference(n);
    let image = wd.image();
    let requeue = format!("echo requeued >> '{}'", requeued.display());
    let args = ["--image", image.to_str().unwrap(), "--requeue", &requeue];
    for (run, at) in [(1, 30), (2, 120)] {
        let mut job = start_job(&[], &args, n, &out, &err);
        wait_file_lines(&out, at, LONG);
        job.signal(libc::SIGUSR1);
        let st = job.wait_exit(LONG);
        let e = std::fs::read_to_string(&err).unwrap();
        assert_eq!(st.code(), Some(75), "run {run}: {e}");
        assert!(e.matches("stopped at its last checkpoint").count() == run, "run {run}: {e}");
        assert_eq!(file_lines(&requeued).len(), run, "run {run}: the requeue command did not run");
        let lines = file_lines(&out);
        assert!(lines.len() < reference.len(), "run {run} finished before it was stopped");
    }
    let mut job = start_job(&[], &args, n, &out, &err);
    let st = job.wait_exit(LONG);
    let e = std::fs::read_to_string(&err).unwrap();
    assert_eq!(st.code(), Some(0), "{e}");
    assert_eq!(e.matches("ckpt: restarting").count(), 2, "{e}");
    assert_eq!(file_lines(&out), reference, "the job's output differs from an uninterrupted run; stderr: {e}");
    assert_eq!(file_lines(&requeued).len(), 2);
}

/// A crash: the program killed after a checkpoint, its output and ckpt's messages appended to
/// one file, as a batch system keeps a job's. The next start restarts it from the image; the
/// lines it printed after the checkpoint are cut from the file (one line says so), ckpt's own
/// lines stay (myrestart says which image it restarts once the file is in order), and the
/// program's lines are exactly an uninterrupted run's.
#[test]
fn a_job_that_crashed_after_a_checkpoint_prints_no_line_twice() {
    let wd = Workdir::new("job-crash");
    let out = wd.path.join("out");
    let n = 400;
    let reference = reference(n);
    let image = wd.image();
    let args = ["--image", image.to_str().unwrap()];
    let program_lines = || file_lines(&out).into_iter().filter(|l| !l.starts_with("ckpt: ")).collect::<Vec<_>>();
    let mut job = start_job(&[], &args, n, &out, &out);
    wait_file_lines(&out, 40, LONG);
    let program = *descendants(job.pid).first().expect("the program");
    let o = Command::new(ckpt()).args(["checkpoint", &program.to_string(), "--wait"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let at = program_lines().len();
    wait_file_lines(&out, at + 40, LONG);
    // kill(2) of the program this test's job started.
    send_signal(program as i32, libc::SIGKILL);
    assert_eq!(job.wait_exit(LONG).code(), Some(128 + 9));
    assert!(program_lines().len() >= at + 30, "{:?}", file_lines(&out));

    let mut job = start_job(&[], &args, n, &out, &out);
    assert_eq!(job.wait_exit(LONG).code(), Some(0), "{:?}", file_lines(&out));
    let all = file_lines(&out);
    assert_eq!(program_lines(), reference, "the program's lines differ from an uninterrupted run's");
    let said: Vec<&String> = all.iter().filter(|l| l.starts_with("ckpt: ")).collect();
    let once = |what: &str| assert_eq!(said.iter().filter(|l| l.contains(what)).count(), 1, "{what}: {said:?}");
    once("ckpt: restarting ");
    once("ckpt: the restored program is process ");
    once("fd 1: ");
    assert!(said.iter().any(|l| l.contains("cut back to its ")), "{said:?}");
}

/// A last checkpoint that cannot be written (a full disk: a 4 MiB tmpfs in a private mount
/// namespace; the images carry their libraries, so one fits and two do not) says so in one
/// line, and the next start restarts from the previous image. Needs root for the mount.
#[test]
fn job_whose_last_checkpoint_fails_goes_on_from_the_previous_image() {
    if !can_fill_a_disk("job_whose_last_checkpoint_fails_goes_on_from_the_previous_image") {
        return;
    }
    let wd = Workdir::new("job-full");
    let small = wd.path.join("small");
    std::fs::create_dir(&small).unwrap();
    // A process that keeps the namespace (and its small tmpfs) for the test's runs.
    let mut c = Command::new("unshare");
    let script = format!("mount -t tmpfs -o size=4m tmpfs '{}' && echo mounted && exec sleep 600", small.display());
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let mut holder = Proc::spawn(c, "namespace holder");
    holder.wait_lines(1, SHORT);
    let prefix = ["nsenter".to_string(), "-t".to_string(), holder.pid.to_string(), "-m".to_string(), "--".to_string(), "env".to_string(), "CKPT_SELF_CONTAINED=1".to_string()];
    let (out, err) = (wd.path.join("out"), wd.path.join("err"));
    let image: PathBuf = small.join("myckpt");
    let args = ["--image", image.to_str().unwrap()];
    let n = 400;
    let reference = reference(n);

    let mut job = start_job(&prefix, &args, n, &out, &err);
    let first = wait_file_lines(&out, 30, LONG).len();
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75), "{}", std::fs::read_to_string(&err).unwrap());
    let at_first = file_lines(&out).len();
    assert!(at_first >= first);

    let mut job = start_job(&prefix, &args, n, &out, &err);
    wait_file_lines(&out, at_first + 30, LONG);
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75));
    let e = std::fs::read_to_string(&err).unwrap();
    assert!(e.contains("No space left on device (the image taken before it is kept; the program ends, as asked)"), "{e}");
    let failed: Vec<&str> = e.lines().filter(|l| l.contains("failed: ") && l.contains("; it stopped")).collect();
    assert_eq!(failed.len(), 1, "{e}");
    assert!(failed[0].contains("a restart goes on from") && failed[0].contains("myckpt"), "{e}");
    let at_second = file_lines(&out).len();

    let mut job = start_job(&prefix, &args, n, &out, &err);
    assert_eq!(job.wait_exit(LONG).code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    // The third run went on from the first image: after the second run's lines, the
    // reference from the first stop on.
    let lines = file_lines(&out);
    assert_eq!(lines[..at_first], reference[..at_first]);
    assert_eq!(lines[at_second..], reference[at_first..], "the third run did not go on from the first image");
    holder.kill9();
}

/// With images kept (`CKPT_KEEP`), `ckpt restart --newest` takes the newest one that is
/// complete: a damaged newest image is passed over, by name and with the reason, and the one
/// before it is restarted.
#[test]
fn restart_newest_passes_over_a_damaged_image() {
    let wd = Workdir::new("newest");
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]).env("CKPT_KEEP", "1");
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.wait_lines(orig.lines().len() + 3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let seen = orig.lines().len();
    orig.kill9();
    let older = PathBuf::from(format!("{}.1", wd.image().display()));
    assert!(older.exists());
    let good = std::fs::read(wd.image()).unwrap();
    std::fs::write(wd.image(), &good[..good.len() / 2]).unwrap();

    let mut c = Command::new(ckpt());
    c.args(["restart", "--newest", "--inherit-stdio"]).arg(wd.image());
    let mut restored = Proc::spawn(c, "ckpt restart --newest");
    let l = restored.wait_lines(3, SHORT);
    let e = restored.wait_stderr("restarting from", SHORT);
    assert!(e.contains(&format!("passing over {}: ", wd.image().display())) && e.contains("truncated"), "{e}");
    assert!(e.contains(&format!("restarting from {}", older.display())), "{e}");
    let i: usize = l[0].split(' ').next().unwrap().parse().unwrap();
    assert!(i < seen, "restarted at line {i}, not from the older image");
    restored.kill9();

    // No complete image: refused, exit status 2, nothing started.
    std::fs::write(&older, &good[..100]).unwrap();
    let out = Command::new(ckpt()).args(["restart", "--newest"]).arg(wd.image()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("can be restarted"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A stop signal at once, before the program has even loaded libckpt: the checkpoint signal
/// waits (blocked) for the library's handler instead of ending the program, and the program
/// stops at a last checkpoint that restarts.
#[test]
fn job_stopped_the_moment_it_starts_still_stops_at_a_checkpoint() {
    let wd = Workdir::new("job-early");
    let (out, err) = (wd.path.join("out"), wd.path.join("err"));
    let image = wd.image();
    let args = ["--image", image.to_str().unwrap()];
    let mut job = start_job(&[], &args, 400, &out, &err);
    // ckpt job blocks its signals before it says what it starts; the program is started right
    // after, and has not loaded libckpt yet.
    let deadline = Instant::now() + SHORT;
    while !std::fs::read_to_string(&err).unwrap_or_default().contains("starting") {
        assert!(Instant::now() < deadline, "ckpt job said nothing");
        std::thread::sleep(Duration::from_micros(200));
    }
    job.signal(libc::SIGUSR1);
    let st = job.wait_exit(LONG);
    let e = std::fs::read_to_string(&err).unwrap();
    assert_eq!(st.code(), Some(75), "{e}");
    assert!(e.contains("stopped at its last checkpoint"), "{e}");
    let mut job = start_job(&[], &args, 400, &out, &err);
    assert_eq!(job.wait_exit(LONG).code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    assert_eq!(file_lines(&out), reference(400));
}
