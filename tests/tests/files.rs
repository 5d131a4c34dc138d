//! Open files across a restart: descriptors with their offsets and flags, redirected stdout,
//! deleted files, shared file mappings, and the refusals when a file changed under us.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(script: &str) {
    let st = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(st.success(), "{script}");
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The offset at which process `pid` has `file` open, from /proc/PID/fdinfo (0 if not open).
fn fd_pos(pid: u32, file: &Path) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    for e in dir.flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|t| t == file) {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy())).unwrap_or_default();
            return info.lines().find_map(|l| l.strip_prefix("pos:").map(|v| v.trim().parse().unwrap_or(0))).unwrap_or(0);
        }
    }
    0
}

#[test]
fn gzip_of_a_large_file_finishes_correctly_after_restart() {
    let wd = Workdir::new("gzip");
    let input = wd.path.join("input.txt");
    let output = wd.path.join("input.txt.gz");
    sh(&format!("seq 1 30000000 > '{}'", input.display()));
    let mut c = Command::new("gzip");
    c.arg("-c").arg(&input).stdout(File::create(&output).unwrap());
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image()).stderr(Stdio::piped());
    hermetic(&mut c);
    let mut child = c.spawn().unwrap();
    let pid = child.id();
    wait_for("gzip to be under way", LONG, || fd_pos(pid, &input) > 20 << 20);
    // Our own child, not yet reaped.
    send_signal(pid as i32, libc::SIGUSR2);
    wait_for("the image", LONG, || wd.image().exists());
    let at_checkpoint = std::fs::metadata(&output).unwrap().len();
    wait_for("more output", LONG, || std::fs::metadata(&output).unwrap().len() > at_checkpoint + (1 << 20));
    child.kill().unwrap();
    let _ = child.wait();

    let mut r = Command::new(myrestart());
    r.arg(wd.image()).stdout(Stdio::null());
    hermetic(&mut r);
    let out = r.output().unwrap();
    assert!(out.status.success(), "restarted gzip: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    sh(&format!("gzip -dc '{}' | cmp - '{}'", output.display(), input.display()));
}

#[test]
fn sha256sum_digest_matches_an_uninterrupted_run() {
    let wd = Workdir::new("sha256sum");
    let input = wd.path.join("data.bin");
    sh(&format!("head -c 700M /dev/urandom > '{}'", input.display()));
    let reference = Command::new("sha256sum").arg(&input).output().unwrap();
    let reference = String::from_utf8(reference.stdout).unwrap();

    let mut c = Command::new("sha256sum");
    c.arg(&input);
    let mut orig = Proc::preloaded(c, &wd.image(), "sha256sum");
    wait_for("sha256sum to be under way", LONG, || fd_pos(orig.pid, &input) > 100 << 20);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert!(orig.lines().is_empty(), "sha256sum finished before it was killed");
    let mut restored = Proc::restart(&wd.image());
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().join("\n") + "\n", reference);
}

fn write_input(path: &Path, lines: usize) {
    let text: String = (1..=lines).map(|i| format!("input line {i} {}\n", "x".repeat(i % 37))).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn appending_log_and_line_reader_continue_in_place() {
    let wd = Workdir::new("files");
    let input = wd.path.join("input.txt");
    let log = wd.path.join("log.txt");
    let total = 2000;
    write_input(&input, total);
    let p = prog("files", &[]);
    let mut c = Command::new(&p);
    c.arg(&input).arg(&log).arg("2000");
    let mut orig = Proc::preloaded(c, &wd.image(), "files");
    orig.wait_lines(300, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.wait_stderr("cannot be saved (netlink sockets are not supported)", SHORT);
    let n = orig.lines().len();
    orig.wait_lines(n + 20, SHORT);
    orig.kill9();

    let mut restored = Proc::restart(&wd.image());
    let pid = restored.program_pid();
    restored.wait_lines(3, SHORT);
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let st = restored.wait_exit(LONG);
    let out = restored.lines();
    assert!(st.success(), "exit {st}: {:?} {}", out.last(), restored.stderr());
    assert_eq!(out.last().unwrap(), &format!("done {total}"));
    restored.wait_stderr("is not restored (ckpt cannot save this kind of descriptor)", SHORT);
    // The netlink socket (10) is gone; the files and the pipe (8, 9) are back. (libckpt's own
    // descriptors, its report page among them, are from 900 up.)
    let mut fds: Vec<i32> = fds.iter().map(|f| f.parse().unwrap()).filter(|&f| f < 900).collect();
    fds.sort();
    assert_eq!(fds, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "descriptors of the restored process");

    // stdout resumed right after the checkpoint; the log holds every line once, in order,
    // except the lines written between the checkpoint and the kill, which the restarted
    // process writes again: an O_APPEND log can only grow.
    let resumed: usize = out[0].parse().unwrap();
    assert!(resumed > 300 && resumed <= n + 21, "resumed at {resumed}");
    let inputs: Vec<String> = std::fs::read_to_string(&input).unwrap().lines().map(String::from).collect();
    let logged: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    let cut = logged.len() - (total - resumed + 1);
    let expect_tail: Vec<String> = (resumed..=total).map(|i| format!("{i}: {}", inputs[i - 1])).collect();
    assert_eq!(&logged[cut..], &expect_tail[..], "log after the restart");
    let expect_head: Vec<String> = (1..=cut).map(|i| format!("{i}: {}", inputs[i - 1])).collect();
    assert_eq!(&logged[..cut], &expect_head[..], "log before the kill");
    assert!(cut + 1 >= resumed, "lines missing from the log");
}

#[test]
fn redirected_stdout_continues_in_the_same_file() {
    let wd = Workdir::new("stdout-file");
    let p = prog("counter", &[]);
    let reference = reference_run({
        let mut c = Command::new(&p);
        c.args(["300", "5000"]);
        c
    }, LONG);
    let out_path = wd.path.join("out.txt");
    let mut c = Command::new(&p);
    // Nothing of the test's own descriptors: its stderr may be a file the restart cannot see.
    c.args(["300", "5000"]).stdout(File::create(&out_path).unwrap()).stdin(Stdio::null()).stderr(Stdio::null());
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    hermetic(&mut c);
    let mut child = c.spawn().unwrap();
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    wait_for("output", SHORT, || lines(&out_path) >= 60);
    // Our own child, not yet reaped.
    send_signal(child.id() as i32, libc::SIGUSR2);
    wait_for("the image", LONG, || wd.image().exists());
    let at = lines(&out_path);
    wait_for("more output", SHORT, || lines(&out_path) >= at + 10);
    child.kill().unwrap();
    let _ = child.wait();

    let out = Command::new(myrestart()).arg(wd.image()).stdout(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<String> = std::fs::read_to_string(&out_path).unwrap().lines().map(String::from).collect();
    assert_eq!(got, reference, "the file holds exactly one uninterrupted run's output");
}

/// A counter in a `MAP_SHARED` file mapping: the file moved on after the checkpoint, so the
/// restart is refused by default; taken as it is, the counter goes on from the file's value.
#[test]
fn shared_file_mapping_keeps_counting_in_the_file() {
    let wd = Workdir::new("mapcount");
    let file = wd.path.join("counter.dat");
    let read_counter = || {
        let b = std::fs::read(&file).unwrap();
        i64::from_le_bytes(b[..8].try_into().unwrap())
    };
    let p = prog("mapcount", &[]);
    let mut c = Command::new(&p);
    c.arg(&file).arg("400");
    let mut orig = Proc::preloaded(c, &wd.image(), "mapcount");
    orig.wait_lines(100, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 10, SHORT);
    orig.kill9();
    let at_kill = read_counter();

    // The counter moved on in the file after the checkpoint: the restart is refused, naming
    // the file, unless the file is taken as it is.
    refused_leaving_unchanged(&wd.image(), &wd.path, &format!("mapped file: {} changed since the checkpoint (bytes it had then differ now)", file.display()));
    let mut c = Command::new(myrestart());
    c.arg("--files-as-is").arg(wd.image());
    let mut restored = Proc::spawn(c, "myrestart --files-as-is");
    restored.wait_stderr(&format!("mapped file: {} changed since the checkpoint", file.display()), SHORT);
    let first = restored.wait_lines(50, SHORT);
    let during = read_counter();
    assert!(during > at_kill, "the file does not see the restarted process's counting");
    assert_eq!(first[0].parse::<i64>().unwrap(), at_kill + 1, "the counter did not continue from the file's value");
    assert!(restored.wait_exit(LONG).success());
    assert_eq!(restored.lines().last().unwrap(), "done 400");
    assert_eq!(read_counter(), 400);

    // A mapped file that no longer covers its mapping is refused before anything changes.
    std::fs::File::options().write(true).open(&file).unwrap().set_len(0).unwrap();
    let out = Command::new(myrestart()).arg("--files-as-is").arg(wd.image()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("mapped file {} is now 0 bytes, too short for its mapping", file.display())), "{err}");
}

#[test]
fn unlinked_temporary_file_is_restored_with_its_contents() {
    let wd = Workdir::new("tmpfile");
    let p = prog("tmpfile", &[]);
    let mut c = Command::new(&p);
    c.arg(&wd.path).arg("200");
    let mut orig = Proc::preloaded(c, &wd.image(), "tmpfile");
    orig.wait_lines(80, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 5, SHORT);
    orig.kill9();
    let mut restored = Proc::restart(&wd.image());
    restored.wait_lines(2, SHORT);
    let deleted = std::fs::read_dir(format!("/proc/{}/fd", restored.program_pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .any(|t| t.to_string_lossy().ends_with("(deleted)"));
    assert!(deleted, "the restored process has no deleted file open");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().unwrap(), "PASS 200");
}

/// A deleted file comes back as a new unnamed file in its old directory, but never through a
/// symbolic link put at that directory's path since: the file is made elsewhere then (in
/// /dev/shm), not where the link points.
#[test]
fn a_deleted_files_directory_replaced_by_a_link_is_not_followed() {
    let wd = Workdir::new("tmpfile-link");
    let (sub, elsewhere) = (wd.path.join("sub"), wd.path.join("elsewhere"));
    std::fs::create_dir(&sub).unwrap();
    let mut c = Command::new(prog("tmpfile", &[]));
    c.arg(&sub).arg("100000");
    let mut orig = Proc::preloaded(c, &wd.image(), "tmpfile");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::rename(&sub, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &sub).unwrap();
    let restored = Proc::restart(&wd.image());
    let n = restored.wait_lines(1, LONG).len();
    restored.wait_lines(n + 2, LONG);
    let deleted: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", restored.program_pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.ends_with("(deleted)") && !t.starts_with("/memfd:"))
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}: {}", restored.stderr());
    assert!(!deleted[0].starts_with(&*elsewhere.to_string_lossy()), "made through the link: {deleted:?}");
}

#[test]
fn restart_refuses_when_an_input_file_was_truncated() {
    let wd = Workdir::new("truncated-input");
    let input = wd.path.join("input.txt");
    write_input(&input, 2000);
    let p = prog("files", &[]);
    let mut c = Command::new(&p);
    c.arg(&input).arg(wd.path.join("log.txt")).arg("2000");
    checkpointed(c, &wd, 300);
    std::fs::write(&input, b"short\n").unwrap();
    let out = Command::new(myrestart()).arg(wd.image()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err.lines().find(|l| l.contains("input.txt")).unwrap_or_else(|| panic!("no line names the file: {err}"));
    // A file the program reads: only the file as it was lets the restart go on.
    assert!(line.contains("shorter than its saved offset") && line.contains("put the file back as it was") && !line.contains("truncate -s"), "{line}");
}

/// A file replaced by another at the same path is used, with a warning naming it; the program
/// goes on reading the new file from the saved offset.
#[test]
fn a_replaced_input_file_is_used_with_a_warning() {
    let wd = Workdir::new("replaced");
    let input = wd.path.join("input.txt");
    let log = wd.path.join("log.txt");
    write_input(&input, 2000);
    let p = prog("files", &[]);
    let mut c = Command::new(&p);
    c.arg(&input).arg(&log).arg("2000");
    checkpointed(c, &wd, 100);
    // Same contents, new inode.
    let copy = wd.path.join("input.new");
    std::fs::copy(&input, &copy).unwrap();
    std::fs::rename(&copy, &input).unwrap();
    let mut restored = Proc::restart(&wd.image());
    let err = restored.wait_stderr("was replaced since the checkpoint", SHORT);
    assert!(err.contains(&format!("{} was replaced since the checkpoint; using the file now at that path", input.display())), "{err}");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("done 2000"));
}

/// Shared anonymous memory comes back shared: two views of the same pages still see each
/// other's writes, and the counter in them goes on from its saved value.
#[test]
fn shared_anonymous_memory_stays_shared_between_its_views() {
    let wd = Workdir::new("shmanon");
    let p = prog("shmanon", &[]);
    checkpointed(Command::new(&p), &wd, 5);
    let restored = Proc::restart(&wd.image());
    for l in restored.wait_lines(10, SHORT) {
        let f: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[1], f[0] + 1, "the counter in shared memory: {l}");
        assert_eq!(f[2], f[1], "the second view no longer shares the pages: {l}");
    }
    assert!(!restored.stderr().contains("private copy"), "{}", restored.stderr());
}

/// A pipe with messages in flight, an eventfd with a count, a pipe whose writer is gone, and an
/// epoll instance watching all three: the checkpoint leaves them as they were for the running
/// program, and the restarted one finds them the same.
#[test]
fn pipes_eventfds_and_epoll_keep_what_they_hold() {
    let wd = Workdir::new("evloop");
    let p = prog("evloop", &[]);
    let want = "epoll=a,b,c pipe=m0,m1,m2,m3,m4,m5,m6,m7 eventfd=5 eof=1 flags=1";
    let mut c = Command::new(&p);
    c.arg("25");
    let mut orig = Proc::preloaded(c, &wd.image(), "evloop");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    // Checkpointed and going on: it drains everything itself, untouched by the checkpoint.
    assert!(orig.wait_exit(LONG).success());
    assert_eq!(orig.lines().last().map(String::as_str), Some(want), "the checkpoint disturbed the running program");
    let mut restored = Proc::restart(&wd.image());
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some(want));
    assert!(restored.lines()[0].starts_with("tick "), "did not resume mid-run");
    let inspect = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert!(doc["descriptors"].as_array().unwrap().iter().all(|f| f["restored"] == true), "{}", doc["descriptors"]);
}

/// Files of /proc held open part-read (they have no size, and their contents are made as they
/// are read) come back at their offsets: the program reads on from where it was. (Its own
/// /proc/PID/stat, which cannot be opened before its PID exists again, reads as empty.)
#[test]
fn proc_files_open_at_an_offset_read_on_after_restart() {
    let wd = Workdir::new("procfile");
    let p = prog("procfile", &[]);
    let make = || {
        let mut c = Command::new(&p);
        c.arg("300");
        c
    };
    checkpoint_kill_restart_matches(make, 100, &wd);
}

/// A log that is gone with its directory is refused while the restart is planned, naming the
/// directory, and nothing is made: the directory a log is made in again must be there (and
/// writable) before anything changes.
#[test]
fn a_log_whose_directory_is_gone_is_refused_at_once() {
    let wd = Workdir::new("log-dir-gone");
    let logs = wd.path.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("out");
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"exec "$0" 100000 10000 > "$1""#).arg(prog("counter", &[])).arg(&log);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    wait_file_lines(&log, 3, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::remove_dir_all(&logs).unwrap();
    refused_leaving_unchanged(&wd.image(), &wd.path, &format!("fd 1: {} is gone, and cannot be made again: its directory:", log.display()));
}

/// The program's stdout and stderr in a log file that was truncated (`> out.log` again) or
/// removed (log rotation, /tmp cleared) since the checkpoint: the restart goes on, appending to
/// what is at that path now (a new file if none), and says so in one line naming the option
/// that gives the program the restart's own streams instead.
#[test]
fn restart_goes_on_when_its_output_log_was_truncated_or_removed() {
    let wd = Workdir::new("log-rotated");
    let (out, err) = (wd.path.join("out.log"), wd.path.join("err.log"));
    let counter = prog("counter", &[]);
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"exec "$0" 100000 10000 >> "$1" 2>> "$2""#).arg(&counter).arg(&out).arg(&err);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter writing to a log");
    wait_file_lines(&out, 5, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let at_kill = file_lines(&out).len();
    for how in ["truncated", "removed"] {
        if how == "truncated" {
            std::fs::write(&out, b"").unwrap();
        } else {
            std::fs::remove_file(&out).unwrap();
        }
        let mut c = Command::new(myrestart());
        c.arg(wd.image());
        let mut restored = Proc::spawn(c, "myrestart");
        wait_file_lines(&out, 3, LONG);
        let said = restored.stderr();
        let line = said.lines().find(|l| l.contains("out.log")).unwrap_or_else(|| panic!("{how}: no line names the log: {said}"));
        let expect = if how == "truncated" { "is now 0 bytes, shorter than at the checkpoint" } else { "is gone; the program writes to a new file at that path" };
        assert!(line.contains("fd 1: ") && line.contains(expect) && line.contains("--inherit-stdio"), "{how}: {line}");
        restored.kill9();
        // The new log starts with the line after the checkpoint's, at its start (not after a
        // hole as long as the old file was).
        let text = std::fs::read(&out).unwrap();
        assert!(!text.starts_with(b"\0"), "{how}: the log starts with a hole");
        let first: usize = file_lines(&out)[0].split(' ').next().unwrap().parse().unwrap();
        assert!(first >= 5 && first <= at_kill, "{how}: went on at line {first}; the checkpoint was after 5, the kill after {at_kill}");
    }
    // Its standard input is not a log: a shorter input file still refuses the restart
    // (restart_refuses_when_an_input_file_was_truncated).
}

/// A pipe the program merely inherited (a shell's, say) is not warned about at each
/// checkpoint; the restart names it once, where it matters: it comes back with its other end
/// closed.
#[test]
#[allow(unsafe_code)] // a pipe made with pipe2, by descriptor number
fn an_inherited_pipe_is_named_once_at_restart_not_at_each_checkpoint() {
    let wd = Workdir::new("inherited-pipe");
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two descriptors we own (closed below).
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let mut c = Command::new(prog("counter", &[]));
    c.args(["1000000", "10000"]);
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    // The child gets the pipe's write end as fd 7.
    let mut orig = Proc::spawn_passing(c, "counter with an inherited pipe", Some((fds[1], 7)));
    orig.wait_lines(3, SHORT);
    for _ in 0..2 {
        orig.checkpoint(&wd.image(), LONG);
    }
    wait_writers_gone(&wd.image(), Instant::now() + LONG);
    orig.kill9();
    assert!(!orig.stderr().contains("pipe"), "a checkpoint warned about the pipe: {}", orig.stderr());
    let mut restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
    restored.kill9();
    let ino = std::fs::metadata(format!("/proc/self/fd/{}", fds[0])).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    let named: Vec<String> = restored.stderr().lines().filter(|l| l.contains(&format!("pipe:[{ino}]"))).map(String::from).collect();
    assert_eq!(named.len(), 1, "{}", restored.stderr());
    assert!(named[0].contains("comes back with its read end closed"), "{named:?}");
    // SAFETY: our own descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// `counter 300` with its stdout appended (`>>`) to `log` after a line written there before,
/// as a batch system appends a job's output: the command, and the log's lines an uninterrupted
/// run leaves.
fn appending_counter(log: &Path) -> (Command, Vec<String>) {
    let counter = prog("counter", &[]);
    std::fs::write(log, "written before the program\n").unwrap();
    let mut expect = vec!["written before the program".to_string()];
    expect.extend(reference_run(
        {
            let mut c = Command::new(&counter);
            c.args(["300", "10000"]);
            c
        },
        LONG,
    ));
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"exec "$0" 300 10000 >> "$1""#).arg(&counter).arg(log);
    (c, expect)
}

/// Runs `cmd` (appending to `log`) preloaded, checkpoints it, lets it print 30 more lines
/// into the log and kills it (a crash); returns how many lines the log had at the checkpoint.
fn crash_after_a_checkpoint(cmd: Command, wd: &Workdir, log: &Path) -> usize {
    let mut orig = Proc::preloaded(cmd, &wd.image(), "counter appending to a log");
    wait_file_lines(log, 40, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let at = file_lines(log).len();
    wait_file_lines(log, at + 30, LONG);
    orig.kill9();
    at
}

/// A crash after a checkpoint leaves in an appended log (`>>`) the lines printed since; the
/// restart cuts them (the restored program prints them again) and says so in one line: the
/// log is then exactly what an uninterrupted run leaves. With `--keep-logs` they stay, twice.
#[test]
fn an_appended_log_holds_no_line_twice_after_a_crash_and_a_restart() {
    for keep in [false, true] {
        let wd = Workdir::new("log-append");
        let log = wd.path.join("out.log");
        let (c, expect) = appending_counter(&log);
        crash_after_a_checkpoint(c, &wd, &log);
        let mut c = Command::new(myrestart());
        if keep {
            c.arg("--keep-logs");
        }
        c.arg(wd.image());
        let mut restored = Proc::spawn(c, "myrestart");
        assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
        let got = file_lines(&log);
        let said = restored.stderr();
        if keep {
            assert!(got.len() > expect.len() + 20 && got.ends_with(&expect[expect.len() - 20..]), "--keep-logs: {got:?}");
            assert!(!said.contains("cut back"), "{said}");
            continue;
        }
        assert_eq!(got, expect, "the log differs from an uninterrupted run's; stderr: {said}");
        let line = said.lines().find(|l| l.contains("cut back")).unwrap_or_else(|| panic!("no line says the log was cut: {said}"));
        assert!(line.starts_with(&format!("myrestart: fd 1: {}: cut back to its ", log.display())) && line.contains("written since: the program's lines there") && line.contains("--keep-logs"), "{line}");
    }
}

/// A last checkpoint (`ckpt checkpoint --kill`): the program printed nothing after it, so what
/// follows in its log is someone else's (here a line added by hand), and stays.
#[test]
fn a_last_checkpoints_log_is_never_cut() {
    let wd = Workdir::new("log-last");
    let log = wd.path.join("out.log");
    let (c, expect) = appending_counter(&log);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter appending to a log");
    wait_file_lines(&log, 40, LONG);
    let out = Command::new(ckpt()).args(["checkpoint", &orig.pid.to_string(), "--kill"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    orig.kill9();
    let inspect = Command::new(ckpt()).arg("inspect").arg(wd.image()).output().unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("(a last checkpoint: the program ended there)"), "{}", String::from_utf8_lossy(&inspect.stdout));
    let at = file_lines(&log).len();
    sh(&format!("echo 'added by hand' >> '{}'", log.display()));
    let mut restored = Proc::restart(&wd.image());
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    let mut want = expect[..at].to_vec();
    want.push("added by hand".to_string());
    want.extend_from_slice(&expect[at..]);
    assert_eq!(file_lines(&log), want, "stderr: {}", restored.stderr());
}

/// A log the program opened itself (not its stdout or stderr), emptied or deleted since the
/// checkpoint, refuses the restart with a line that says how to go on: give the file its old
/// length (`truncate -s N PATH`); done, the restart goes on.
#[test]
fn a_log_emptied_or_deleted_says_how_the_restart_can_go_on() {
    let wd = Workdir::new("log-emptied");
    let input = wd.path.join("input.txt");
    let log = wd.path.join("log.txt");
    write_input(&input, 2000);
    let mut c = Command::new(prog("files", &[]));
    c.arg(&input).arg(&log).arg("2000");
    checkpointed(c, &wd, 300);
    for how in ["emptied", "deleted"] {
        if how == "emptied" {
            std::fs::write(&log, b"").unwrap();
        } else {
            std::fs::remove_file(&log).unwrap();
        }
        let out = Command::new(myrestart()).arg(wd.image()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{how}: {err}");
        let line = err.lines().find(|l| l.contains("log.txt")).unwrap_or_else(|| panic!("{how}: no line names the log: {err}"));
        let advice = line.split("`truncate -s ").nth(1).and_then(|r| r.split('`').next()).unwrap_or_else(|| panic!("{how}: no way on: {line}"));
        assert!(advice.ends_with(&format!("'{}'", log.display())), "{how}: {line}");
        sh(&format!("truncate -s {advice}"));
        let mut restored = Proc::restart(&wd.image());
        assert!(restored.wait_exit(LONG).success(), "{how}: {}", restored.stderr());
        assert_eq!(restored.lines().last().map(String::as_str), Some("done 2000"), "{how}");
    }
}

/// What a test does to the program's POSIX shared memory object after the checkpoint.
#[derive(Clone, Copy, PartialEq)]
enum ShmAfter {
    /// Removed (`shm_unlink`), as PostgreSQL removes a parallel query's segment.
    Removed,
    /// Written over and shortened in place.
    Changed,
}

/// The counter of `shmobj` in its POSIX shared memory object (`/dev/shm/NAME`): checkpointed,
/// left running (its object moves on), killed; the object is then removed or written over; the
/// restart brings the object back at its path with the image's bytes (the counter goes on from
/// its value at the checkpoint), its mode and size, and one object again: a reader that opens
/// the path sees the restored program's counter move.
fn shm_object_comes_back(case: &str, after: ShmAfter, keep: bool) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let name = format!("ckpt-test-shmobj-{}-{case}", std::process::id());
    let path = PathBuf::from("/dev/shm").join(&name);
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(path.clone());
    let wd = Workdir::new(case);
    let mut c = Command::new(prog("shmobj", &[]));
    c.arg(format!("/{name}"));
    if keep {
        c.arg("keep");
    }
    let mut orig = Proc::preloaded(c, &wd.image(), "shmobj");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let at = orig.lines().len();
    orig.wait_lines(at + 5, SHORT);
    orig.kill_tree();
    // `ckpt inspect` says which region is the object.
    let inspect = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let hows: Vec<&str> = doc["regions"].as_array().unwrap().iter().filter(|r| r["file"] == path.to_str().unwrap()).map(|r| r["how"].as_str().unwrap()).collect();
    assert_eq!(hows, ["shm object"], "ckpt inspect of the object's region");
    match after {
        ShmAfter::Removed => std::fs::remove_file(&path).unwrap(),
        ShmAfter::Changed => std::fs::write(&path, [0xffu8; 100]).unwrap(),
    }
    let mut restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(10, SHORT);
    for l in &lines {
        let f: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[1], f[0] + 1, "the counter in the object is not the image's: {l}; stderr {}", restored.stderr());
        assert!(!keep || f[2] == f[1], "the descriptor and the mapping do not share the object: {l}");
    }
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.permissions().mode() & 0o7777, meta.len()), (0o640, 3 * 4096 + 100), "the object's mode and size");
    assert_eq!(meta.uid(), own_euid(), "the object's owner");
    // The restored program and a reader of the path share the object.
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let last: i64 = restored.lines().last().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let seen = i64::from_le_bytes(bytes[..8].try_into().unwrap());
        if seen > lines.len() as i64 && seen >= last {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the object at {} holds {seen}, the program counts {last}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    restored.kill_tree();
}

/// The effective user ID of the test, read from /proc (no libc call).
fn own_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// A POSIX shared memory object removed after the checkpoint no longer refuses the restart
/// (`mapped file /dev/shm/NAME: No such file or directory`): it is made again at its path.
#[test]
fn a_removed_posix_shared_memory_object_comes_back_at_its_path() {
    shm_object_comes_back("shmobj-removed", ShmAfter::Removed, false);
}

/// A POSIX shared memory object written over after the checkpoint is no longer refused as a
/// file written in place: its contents are the image's again.
#[test]
fn a_changed_posix_shared_memory_object_gets_the_images_bytes_back() {
    shm_object_comes_back("shmobj-changed", ShmAfter::Changed, false);
}

/// A program that keeps its object's descriptor open (`shm_open` without `close`): the
/// descriptor comes back on the object its mapping shares, at the object's path, whether the
/// object was removed or written over since the checkpoint (both refused the restart before:
/// the descriptor was opened by its path, as a file written in place).
#[test]
fn a_kept_descriptor_of_a_posix_shared_memory_object_shares_it_again() {
    shm_object_comes_back("shmobj-kept-removed", ShmAfter::Removed, true);
    shm_object_comes_back("shmobj-kept-changed", ShmAfter::Changed, true);
}

/// Another user's file at the path of the program's POSIX shared memory object (removed after
/// the checkpoint) is not given to it: the restart is refused in one line naming it, and the
/// file is left as it was. Needs root, to give the file another owner.
#[test]
fn another_users_file_at_a_shared_memory_objects_path_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let test = "another_users_file_at_a_shared_memory_objects_path_is_refused";
    if own_euid() != 0 {
        return skip(test, "giving a file another owner needs root");
    }
    let name = format!("ckpt-test-shmobj-{}-theirs", std::process::id());
    let path = PathBuf::from("/dev/shm").join(&name);
    let wd = Workdir::new("shmobj-theirs");
    let mut c = Command::new(prog("shmobj", &[]));
    c.arg(format!("/{name}"));
    let mut orig = Proc::preloaded(c, &wd.image(), "shmobj");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"theirs").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let mut restored = Proc::restart(&wd.image());
    let status = restored.wait_exit(LONG);
    let err = restored.stderr();
    let left = (std::fs::read(&path).ok(), std::fs::metadata(&path).map(|m| m.uid()).ok());
    let _ = std::fs::remove_file(&path);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("shared memory object: {} belongs to uid 65534 now", path.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(left, (Some(b"theirs".to_vec()), Some(65534)), "the file at the path was changed");
}
