//! Files the program writes in place, changed after its checkpoint (issue 27, point 8): a
//! restart would bring the program back remembering its files as they were, while they hold
//! what it wrote later. Refused by default, naming each file; `--files-as-is` restores it
//! all the same. Logs (appended to, or stdout in a file) grow after every checkpoint and never
//! refuse a restart. Each image of a chain carries its files' states of its own moment.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};

const LIMIT: usize = 400;

/// What `records` leaves in its file after `n` records: record k as "rec k gen 0", and every
/// record k rewritten at step 2k (a multiple of 4) with generation 2k.
fn expected_records(n: usize) -> Vec<u8> {
    let mut recs: Vec<String> = (1..=n).map(|k| format!("rec {k:08} gen {:08} .....\n", 0)).collect();
    for step in (4..=n).step_by(4) {
        let k = step / 2;
        recs[k - 1] = format!("rec {k:08} gen {step:08} .....\n");
    }
    recs.concat().into_bytes()
}

fn records(file: &Path, log: &Path) -> Command {
    let mut c = Command::new(prog("records", &[]));
    c.arg(file).arg(log).arg(LIMIT.to_string());
    c
}

/// Runs `records`, checkpoints it after 40 records, lets it write 12 more (three rewrites of
/// records from before the checkpoint among them) and kills it.
fn written_after_the_checkpoint(wd: &Workdir, file: &Path, log: &Path) {
    let mut orig = Proc::preloaded(records(file, log), &wd.image(), "records");
    orig.wait_lines(40, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 12, LONG);
    orig.kill9();
}

/// The file the program wrote in place after its checkpoint refuses the restart, by name, in
/// one line, exit status 2, nothing changed (its log, appended to, is not named); with
/// `--files-as-is` (`ckpt restart`), the restart goes on, saying so, and the program
/// writes on, its records consistent to the end.
#[test]
fn a_file_written_in_place_after_the_checkpoint_is_refused_by_name() {
    let wd = Workdir::new("written-refused");
    let (file, log) = (wd.path.join("table.dat"), wd.path.join("records.log"));
    written_after_the_checkpoint(&wd, &file, &log);

    let line = refused_leaving_unchanged(&wd.image(), &wd.path, &format!("fd 3: {} changed since the checkpoint", file.display()));
    assert!(line.contains("--files-as-is"), "{line}");
    assert!(!line.contains("records.log"), "{line}");

    let mut c = Command::new(ckpt());
    c.args(["restart", "--files-as-is"]).arg(wd.image());
    let mut restored = Proc::spawn(c, "ckpt restart --files-as-is");
    restored.wait_stderr(&format!("fd 3: {} changed since the checkpoint", file.display()), LONG);
    let st = restored.wait_exit(LONG);
    let out = restored.lines();
    assert!(st.success(), "{st}: {out:?}; stderr {}", restored.stderr());
    assert!(!out.iter().any(|l| l.starts_with("inconsistent")), "{out:?}");
    assert_eq!(out.last().map(String::as_str), Some(&*format!("done {LIMIT}")), "{out:?}");
    assert!(std::fs::read(&file).unwrap() == expected_records(LIMIT), "the file differs from an uninterrupted run's");
}

/// Two files changed: two lines, one for each, and still exit status 2 (`ckpt restart` too).
#[test]
fn every_changed_file_is_named_on_a_line_of_its_own() {
    let wd = Workdir::new("written-two");
    let (file, log) = (wd.path.join("table.dat"), wd.path.join("records.log"));
    let other = wd.path.join("other.dat");
    std::fs::write(&other, b"abc").unwrap();
    // The program has the second file open for writing too (fd 9, from its shell), untouched.
    let mut c = Command::new("sh");
    c.args(["-c", "exec 9<>\"$1\"; shift; exec \"$@\"", "sh"]).arg(&other).arg(prog("records", &[])).arg(&file).arg(&log).arg(LIMIT.to_string());
    let mut orig = Proc::preloaded(c, &wd.image(), "records");
    orig.wait_lines(40, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 12, LONG);
    orig.kill9();
    std::fs::write(&other, b"abd").unwrap();

    let out = Command::new(ckpt()).args(["restart"]).arg(wd.image()).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines.iter().any(|l| l.starts_with("ckpt: ") && l.contains(&format!("fd 3: {} changed since the checkpoint", file.display()))), "{err}");
    assert!(lines.iter().any(|l| l.contains(&format!("fd 9: {} changed since the checkpoint (bytes it had then differ now)", other.display()))), "{err}");
}

/// Logs grow after every checkpoint: a file appended to (`O_APPEND`) and stdout in a file
/// (`>`) do not refuse the restart, which goes on where the program was.
#[test]
fn logs_appended_to_and_stdout_in_a_file_still_restart() {
    let wd = Workdir::new("written-logs");
    let (log, out) = (wd.path.join("records.log"), wd.path.join("stdout.txt"));
    let mut c = Command::new(prog("records", &[]));
    c.arg("-").arg(&log).arg("200").stdout(std::fs::File::create(&out).unwrap());
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    hermetic(&mut c);
    let mut child = c.stdin(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_file_lines(&out, 40, LONG);
    let ck = Command::new(ckpt()).args(["checkpoint", "--wait", &child.id().to_string()]).output().unwrap();
    assert!(ck.status.success(), "{}", String::from_utf8_lossy(&ck.stderr));
    let at = file_lines(&out).len();
    wait_file_lines(&out, at + 10, LONG);
    child.kill().unwrap();
    child.wait().unwrap();

    let r = run_within(
        {
            let mut c = Command::new(myrestart());
            c.arg(wd.image());
            c
        },
        LONG,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(file_lines(&out).last().map(String::as_str), Some("done 200"));
    assert!(!String::from_utf8_lossy(&r.stderr).contains("changed since the checkpoint"), "{}", String::from_utf8_lossy(&r.stderr));
}

/// Each image of a chain carries its own files' states: the incremental image taken last,
/// with the program stopped for good (`--kill`), restarts without the option, while the
/// earlier one kept beside it (`myckpt.1`) is refused, the file having moved on since it.
#[test]
fn each_image_of_a_chain_carries_its_own_file_states() {
    let wd = Workdir::new("written-chain");
    let (file, log) = (wd.path.join("table.dat"), wd.path.join("records.log"));
    let mut c = records(&file, &log);
    c.env("CKPT_KEEP", "1");
    let mut orig = Proc::preloaded(c, &wd.image(), "records");
    orig.wait_lines(40, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 12, LONG);
    let out = Command::new(ckpt()).args(["checkpoint", "--wait", "--kill", &orig.pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    orig.kill9();
    let older = wd.path.join("myckpt.1");
    assert!(older.exists(), "no older image kept");
    let inspect = Command::new(ckpt()).arg("inspect").arg(wd.image()).output().unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("base"), "the last image is not incremental: {}", String::from_utf8_lossy(&inspect.stdout));

    refused_leaving_unchanged(&older, &wd.path, &format!("fd 3: {} changed since the checkpoint", file.display()));
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some(&*format!("done {LIMIT}")));
    assert!(std::fs::read(&file).unwrap() == expected_records(LIMIT), "the file differs from an uninterrupted run's");
}

/// `ckpt job` after a crash: the program went on writing its file after the newest image, so
/// the next start is refused (myrestart's status 2, the file named, the images kept); with
/// `CKPT_FILES_AS_IS=1` in the job's environment the start after goes on from that image
/// and the program runs to its end.
#[test]
fn a_job_refuses_a_file_written_after_its_newest_image_unless_told() {
    let wd = Workdir::new("written-job");
    let (file, log) = (wd.path.join("table.dat"), wd.path.join("records.log"));
    let image = wd.image();
    let job = |accept: bool| {
        let mut c = Command::new(ckpt());
        c.args(["job", "--image", image.to_str().unwrap(), "--"]).arg(prog("records", &[])).arg(&file).arg(&log).arg(LIMIT.to_string());
        if accept {
            c.env("CKPT_FILES_AS_IS", "1");
        }
        Proc::spawn(c, "ckpt job")
    };
    let mut first = job(false);
    first.wait_lines(40, LONG);
    let program = *descendants(first.pid).first().expect("the program");
    let o = Command::new(ckpt()).args(["checkpoint", &program.to_string(), "--wait"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = first.lines().len();
    first.wait_lines(n + 12, LONG);
    send_signal(program as i32, libc::SIGKILL);
    assert_eq!(first.wait_exit(LONG).code(), Some(128 + 9));

    let mut second = job(false);
    assert_eq!(second.wait_exit(LONG).code(), Some(2), "{}", second.stderr());
    let e = second.stderr();
    assert!(e.contains(&format!("fd 3: {} changed since the checkpoint", file.display())) && e.contains("its images stay"), "{e}");
    assert!(image.exists(), "the image is gone");

    let mut third = job(true);
    let st = third.wait_exit(LONG);
    assert!(st.success(), "{st}: {}", third.stderr());
    assert!(third.stderr().contains("restored as it is now (--files-as-is)"), "{}", third.stderr());
    assert_eq!(third.lines().last().map(String::as_str), Some(&*format!("done {LIMIT}")));
    assert!(std::fs::read(&file).unwrap() == expected_records(LIMIT), "the file differs from an uninterrupted run's");
}

/// A file larger than the checkpoint hashes (`WRITTEN_HASH_MAX`) is compared by size and times:
/// unchanged, the restart goes on without a word; touched since (its time only, not a byte), it
/// is refused, the line saying that its time differs.
#[test]
fn a_file_too_large_to_hash_is_compared_by_its_size_and_times() {
    let wd = Workdir::new("written-large");
    let big = wd.path.join("big.dat");
    std::fs::write(&big, vec![7u8; (ckpt_image::limits::WRITTEN_HASH_MAX + 4096) as usize]).unwrap();
    let mut c = Command::new("sh");
    c.args(["-c", "exec 9<>\"$1\"; shift; exec \"$@\"", "sh"]).arg(&big).arg(prog("counter", &[])).args(["100000", "10000"]);
    let orig = checkpointed(c, &wd, 20);
    drop(orig);

    let mut restored = Proc::restart(&wd.image());
    let n = restored.wait_lines(1, LONG).len();
    restored.wait_lines(n + 3, LONG);
    assert!(!restored.stderr().contains("changed since the checkpoint"), "{}", restored.stderr());
    restored.kill9();

    let mtime = std::fs::metadata(&big).unwrap().modified().unwrap();
    std::fs::File::options().write(true).open(&big).unwrap().set_modified(mtime + std::time::Duration::from_secs(1)).unwrap();
    refused_leaving_unchanged(&wd.image(), &wd.path, &format!("fd 9: {} changed since the checkpoint ({} bytes, written since: its modification or change time differs)", big.display(), ckpt_image::limits::WRITTEN_HASH_MAX + 4096));
}
