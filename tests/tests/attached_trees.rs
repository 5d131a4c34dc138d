//! `ckpt checkpoint PID` of a process tree started without ckpt (no libckpt preloaded in any
//! of its processes): ckpt attaches to the PID and its descendants and runs libckpt's tree
//! checkpoint in all of them, into one tree image. The tree is `tests/progs/pipepair.c`, a
//! parent printing the numbered lines its child writes into a pipe (the child checking that
//! its parent's PID never changes, the parent that `waitpid` of the PID `fork` gave it finds
//! the child at the end). Killed after the checkpoint, the tree restarts from the image and
//! prints what an uninterrupted run prints, both processes with the PIDs they had (also when
//! `--kill` ends the tree itself); not killed, both go on as if nothing happened; a tree one of
//! whose processes is traced, or runs libckpt.so, is refused whole, and left as it was; one
//! whose child refuses from inside fails naming it, and goes on. A restored tree (in a PID
//! namespace of its own) is checkpointed again the same way, and restarts again. What the
//! single process's attach does for its leader is done for every process of a tree: a call a
//! ptrace stop cuts short with EINTR is made again in each (`stopwaits fork`), and a child
//! stopped inside an rseq critical section is imaged (and let go) at its abort handler.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::Path;
use std::process::{Command, Output};

/// `pipepair LIMIT USEC`, linked dynamically; with `static_child`, its child execs a static
/// build of the same program.
fn pipepair(limit: u32, static_child: bool) -> Command {
    let mut c = Command::new(prog("pipepair", &[]));
    c.args([limit.to_string(), "2000".into()]);
    if static_child {
        c.arg(prog("pipepair", &["-static"]));
    }
    c
}

/// The only child of process `pid`, once it has one.
fn child_of(pid: u32) -> u32 {
    let mut seen = Vec::new();
    for _ in 0..1000 {
        seen = descendants(pid);
        if let [c] = seen[..] {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("process {pid} has not one child but {seen:?}");
}

/// The PID process `pid` has in its own PID namespace (the last field of `NSpid:`).
fn own_pid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// `ckpt checkpoint PID --wait --image IMAGE`.
fn checkpoint(pid: u32, image: &Path) -> Output {
    Command::new(ckpt()).args(["checkpoint", &pid.to_string(), "--wait", "--image"]).arg(image).output().unwrap()
}

/// [`checkpoint`], which must succeed, say the image is complete, and write a tree image of
/// the two processes.
fn checkpointed(pid: u32, child: u32, image: &Path) {
    let out = checkpoint(pid, image);
    let (said, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ckpt checkpoint {pid}: {} {err}", out.status);
    assert!(said.contains(&image.display().to_string()), "stdout {said:?} stderr {err:?}");
    let doc = Command::new(ckpt()).args(["inspect"]).arg(image).output().unwrap();
    let text = String::from_utf8_lossy(&doc.stdout);
    assert!(doc.status.success(), "ckpt inspect: {}", String::from_utf8_lossy(&doc.stderr));
    assert!(text.contains("tree         2 processes"), "{text}");
    assert!(text.contains(&format!("pid {child} ")) && text.contains(&format!("ppid {pid} ")), "{text}");
}

/// Every line so far is the next number, and nothing went to stderr.
fn in_order(p: &Proc) {
    for (i, l) in p.lines().iter().enumerate() {
        assert_eq!(l, &(i + 1).to_string(), "line {i}; stderr {:?}", p.stderr());
    }
    assert_eq!(p.stderr(), "", "the program's stderr");
}

/// Reference run; a run started without ckpt, checkpointed by its root's PID after 30 lines,
/// both processes killed (SIGKILL) a few lines later (or, `last`, by `ckpt checkpoint --kill`
/// itself once the image is written); the restart prints the rest of the reference, with both
/// processes at their old PIDs (in the restart's PID namespace).
fn tree_restart_matches(test: &str, static_child: bool, last: bool) {
    let limit = 1000;
    let wd = Workdir::new(test);
    let reference = reference_run(pipepair(limit, static_child), LONG);
    assert_eq!(reference.last().map(String::as_str), Some("waitpid found it: child exited 7 after 1000 lines"));
    let image = wd.image();
    let mut orig = Proc::spawn(pipepair(limit, static_child), "original run");
    orig.wait_lines(30, LONG);
    let child = child_of(orig.pid);
    let at_ckpt = orig.lines().len();
    if last {
        let out = Command::new(ckpt()).args(["checkpoint", &orig.pid.to_string(), "--kill", "--image"]).arg(&image).output().unwrap();
        assert!(out.status.success(), "ckpt checkpoint --kill: {}", String::from_utf8_lossy(&out.stderr));
        // Both end: the root (our child) is reaped, the child is gone or a zombie.
        let st = orig.wait_exit(LONG);
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(libc::SIGKILL), "{st}");
        wait_dead(child);
    } else {
        checkpointed(orig.pid, child, &image);
        let n = orig.lines().len();
        orig.wait_lines(n + 3, LONG);
        orig.kill_tree();
    }
    let at_kill = orig.lines().len();
    assert!(at_kill < reference.len() - 100, "the run was nearly over when killed ({at_kill} lines)");

    let mut restored = Proc::restart(&image);
    restored.wait_lines(1, LONG);
    let root = restored.program_pid();
    assert_eq!(own_pid(root), orig.pid, "the restored root's PID in its namespace");
    assert_eq!(own_pid(child_of(root)), child, "the restored child's PID in its namespace");
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "restarted run exited with {st}; stderr {:?}", restored.stderr());
    let after = restored.lines();
    assert!(after.iter().all(|l| !l.starts_with("ERROR")), "{after:?}");
    assert_continues(&reference, at_ckpt, at_kill, &after);
}

#[test]
fn a_two_process_tree_restarts_from_its_attached_image() {
    tree_restart_matches("attached-tree-restart", false, false);
}

#[test]
fn a_tree_with_a_static_child_restarts_from_its_attached_image() {
    tree_restart_matches("attached-tree-static-restart", true, false);
}

#[test]
fn a_tree_checkpointed_for_the_last_time_ends_and_restarts() {
    tree_restart_matches("attached-tree-last", false, true);
}

/// Checkpointed twice without being killed, the tree goes on each time: every line in order,
/// nothing on stderr, and at the end the parent finds its child as `fork` named it.
#[test]
fn a_tree_goes_on_after_its_attached_checkpoints() {
    let wd = Workdir::new("attached-tree-goes-on");
    let mut p = Proc::spawn(pipepair(1500, true), "pipepair");
    p.wait_lines(20, LONG);
    let child = child_of(p.pid);
    for i in 0..2 {
        checkpointed(p.pid, child, &wd.path.join(format!("image{i}")));
        let n = p.lines().len();
        p.wait_lines(n + 20, LONG);
        in_order(&p);
    }
    let st = p.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", p.stderr());
    let lines = p.lines();
    assert_eq!(lines.last().map(String::as_str), Some("waitpid found it: child exited 7 after 1500 lines"), "{:?}", &lines[lines.len().saturating_sub(3)..]);
    assert_eq!(lines.len(), 1501);
}

/// A tree one of whose processes (the child) is under strace: refused in one line naming the
/// process and its tracer, with ckpt's refusal status; nothing is written, the tracer stays,
/// and the tree goes on.
#[test]
fn a_tree_with_a_traced_process_is_refused_whole() {
    let wd = Workdir::new("attached-tree-traced");
    let mut p = Proc::spawn(pipepair(100_000, false), "pipepair");
    p.wait_lines(10, LONG);
    let child = child_of(p.pid);
    let mut st = Command::new("strace");
    st.args(["-o", "/dev/null", "-p", &child.to_string()]);
    let mut strace = Proc::spawn(st, "strace");
    let tracer = |pid: u32| -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix("TracerPid:")).unwrap().trim().parse().unwrap()
    };
    let deadline = std::time::Instant::now() + LONG;
    while tracer(child) != strace.pid {
        assert!(std::time::Instant::now() < deadline, "strace did not attach");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let image = wd.image();
    let out = checkpoint(p.pid, &image);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(&format!("process {child} is already traced by process {} (strace)", strace.pid)) && err.contains(&format!("tree of process {}", p.pid)), "{err:?}");
    assert!(!image.exists());
    assert_eq!((tracer(p.pid), tracer(child)), (0, strace.pid));
    let n = p.lines().len();
    p.wait_lines(n + 20, LONG);
    in_order(&p);
    strace.kill9();
    p.kill_tree();
}

/// A tree started without ckpt one of whose processes runs libckpt.so (started with it
/// preloaded by a shell that was not): refused in one line naming that process, nothing
/// written, and the tree goes on.
#[test]
fn a_tree_of_both_kinds_is_refused() {
    let wd = Workdir::new("attached-tree-mixed");
    let image = wd.image();
    let attachee = prog("attachee", &[]);
    let script = format!("LD_PRELOAD={} CKPT_IMAGE={} {} sleep 3 & wait", libckpt().display(), wd.path.join("own").display(), attachee.display());
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    let mut p = Proc::spawn(sh, "sh running a preloaded attachee");
    p.wait_lines(5, LONG);
    let child = child_of(p.pid);
    let out = checkpoint(p.pid, &image);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(&format!("process {child} of the tree of process {} runs libckpt.so", p.pid)), "{err:?}");
    assert!(!image.exists());
    let n = p.lines().len();
    let lines = p.wait_lines(n + 5, LONG);
    assert!(lines.iter().enumerate().all(|(i, l)| *l == i.to_string()), "{lines:?}");
    p.kill_tree();
}

/// A tree whose child refuses the checkpoint from inside (libckpt's code there finds inotify
/// watches, whose paths it cannot know): the checkpoint fails naming the child and why, nothing
/// is written, and the tree goes on (the child still sees its watched directory's events).
#[test]
fn a_tree_whose_child_cannot_be_checkpointed_fails_naming_it_and_goes_on() {
    let wd = Workdir::new("attached-tree-member-fails");
    let dir = wd.path.join("watched");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!("{} {} & wait", prog("watches", &[]).display(), dir.display());
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    let mut p = Proc::spawn(sh, "sh running watches");
    p.wait_lines(1, LONG);
    let child = child_of(p.pid);
    let image = wd.image();
    let out = checkpoint(p.pid, &image);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("process {child} of the tree: the program has inotify watches")), "{err:?}");
    assert!(!image.exists());
    std::fs::write(dir.join("7/new"), b"").unwrap();
    p.wait_until(|l| l.iter().any(|l| l.contains("new")), LONG, "the event of the new file");
    p.kill_tree();
}

/// A tree restored from an attached image lives in a PID namespace of its own, where its root
/// lists its processes: checkpointed again by attaching (ckpt finds each process the root
/// names under the PID ckpt sees), killed, and restarted again, it still prints the rest of
/// an uninterrupted run, both processes at their first PIDs.
#[test]
fn a_restored_tree_is_checkpointed_again_and_restarts_again() {
    let limit = 1000;
    let wd = Workdir::new("attached-tree-twice");
    let reference = reference_run(pipepair(limit, false), LONG);
    let mut orig = Proc::spawn(pipepair(limit, false), "original run");
    orig.wait_lines(30, LONG);
    let child = child_of(orig.pid);
    let first = wd.path.join("first");
    let at_ckpt = orig.lines().len();
    checkpointed(orig.pid, child, &first);
    orig.kill_tree();
    let at_kill = orig.lines().len();

    let mut again = Proc::restart(&first);
    let lines = again.wait_lines(10, LONG);
    let from = assert_continues(&reference, at_ckpt, at_kill, &lines);
    let root = again.program_pid();
    let second = wd.path.join("second");
    let at_ckpt2 = from + again.lines().len();
    let out = checkpoint(root, &second);
    assert!(out.status.success(), "ckpt checkpoint {root}: {}", String::from_utf8_lossy(&out.stderr));
    again.kill_tree();
    let at_kill2 = from + again.lines().len();
    assert!(again.lines().iter().all(|l| !l.starts_with("ERROR")), "{:?}", again.lines());

    let mut last = Proc::restart(&second);
    last.wait_lines(1, LONG);
    let root = last.program_pid();
    assert_eq!((own_pid(root), own_pid(child_of(root))), (orig.pid, child), "the PIDs after the second restart");
    let st = last.wait_exit(LONG);
    assert!(st.success(), "second restart exited with {st}; stderr {:?}", last.stderr());
    assert_continues(&reference, at_ckpt2, at_kill2, &last.lines());
}

/// `stopwaits fork` (tests/progs/stopwaits.c): a parent and a child, each with threads asleep
/// in epoll_wait and sigtimedwait and a leader in epoll_pwait (the calls a ptrace stop cuts
/// short with EINTR), the child counting. Checkpointed as a tree again and again, neither
/// process sees an EINTR it did not ask for (an ERROR line): ckpt's stop of each leader and
/// the capturing process's of the other threads make the calls again, and the images record
/// them to be made again: killed and restarted from the last image, the tree counts on as an
/// uninterrupted run would, with no ERROR line.
#[test]
fn attached_tree_checkpoints_cut_no_call_short() {
    let wd = Workdir::new("attached-tree-stopwaits");
    let image = wd.image();
    let mut cmd = Command::new(prog("stopwaits", &["-pthread"]));
    cmd.arg("fork");
    let mut p = Proc::spawn(cmd, "stopwaits fork");
    p.wait_lines(20, LONG);
    let child = child_of(p.pid);
    let mut at_checkpoint = 0;
    // The checks, then the tree killed whatever they found (a failed one must leave no
    // process behind).
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..4 {
            at_checkpoint = p.lines().len();
            checkpointed(p.pid, child, &image);
            let n = p.lines().len();
            p.wait_lines(n + 10, LONG);
        }
        let seen = p.lines();
        assert!(seen.iter().all(|l| !l.starts_with("ERROR")), "{:?}", seen.iter().filter(|l| l.starts_with("ERROR")).collect::<Vec<_>>());
    }));
    p.kill_tree();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
    let at_kill = p.lines().len();
    let mut restored = Proc::restart(&image);
    let after = restored.wait_lines(50, LONG);
    restored.kill_tree();
    assert!(after.iter().all(|l| !l.starts_with("ERROR")), "{after:?}");
    let counting: Vec<String> = (0..100_000).map(|n: u32| n.to_string()).collect();
    assert_continues(&counting, at_checkpoint, at_kill, &after[..50]);
}

/// A child whose leader spins inside an rseq critical section (tests/progs/rseqspin.c, run by
/// a shell that waits for it): the kernel would send it to the section's abort handler on its
/// return from the stop, but forgets the section once it returns into ckpt's code instead; so
/// ckpt aborts the section itself for a tree's member too. The child's registers in the tree
/// image are at the abort handler, and the child spins on once let go.
#[test]
fn a_tree_child_stopped_in_an_rseq_section_is_imaged_at_its_abort_handler() {
    let wd = Workdir::new("attached-tree-rseq");
    let spin = prog("rseqspin", &[]);
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c").arg(format!("'{}' & wait", spin.display()));
    let mut p = Proc::spawn(sh, "sh running rseqspin");
    let line = p.wait_lines(1, LONG)[0].clone();
    if line == "no rseq" {
        return skip("a_tree_child_stopped_in_an_rseq_section_is_imaged_at_its_abort_handler", "glibc registered no rseq");
    }
    let addr = |i: usize| u64::from_str_radix(line.split(' ').nth(i).unwrap().trim_start_matches("0x"), 16).unwrap();
    let (start, end, abort) = (addr(1), addr(2), addr(3));
    let child = child_of(p.pid);
    // The checks, then the tree killed whatever they found (a failed one must leave no
    // process behind).
    let checked = std::panic::catch_unwind(|| {
        for i in 0..3 {
            let image = wd.path.join(format!("image{i}"));
            checkpointed(p.pid, child, &image);
            let doc = Command::new(ckpt()).args(["inspect", "--json"]).arg(&image).output().unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&doc.stdout).unwrap();
            let part = doc["tree"].as_array().unwrap().iter().find(|t| t["pid"] == child).unwrap_or_else(|| panic!("{doc}"));
            let rip = u64::from_str_radix(part["registers"]["rip"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            assert!(!(start..end).contains(&rip), "the child was imaged inside its section ({start:#x}..{end:#x}) at {rip:#x}");
            // It spins in the section; the few instructions from the abort handler back in
            // are the only others it runs.
            assert!(rip == abort || rip < start, "at {rip:#x}");
        }
        assert_eq!(std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap().split(' ').nth(2), Some("R"), "it spins on");
    });
    p.kill_tree();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}
