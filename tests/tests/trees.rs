//! Process trees: a program and its children are checkpointed at one moment (`kill -12` of the
//! root), killed together, and come back together with their PIDs, the pipes and shared
//! memory between them, and their zombies.

use ckpt_tests::*;
use std::process::Command;

fn family(limit: u32) -> Command {
    let mut c = Command::new(prog("family", &[]));
    c.args([limit.to_string(), "2000".into()]);
    c
}

/// The child's PID, from the parent's first line.
fn child_of(lines: &[String]) -> u32 {
    lines[0].strip_prefix("child ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no child line: {lines:?}"))
}

/// What a restarted `family` printed: hundreds in steps from where it was, then the parent's
/// `waitpid` of its child with the child's exit status; the parent itself checks that no
/// number through the pipe went missing or came twice.
fn assert_family_finished(after: &[String], child: u32, limit: u32, stderr: &str) {
    assert!(!after.iter().any(|l| l.starts_with("wrong")), "the pipe lost or repeated a number: {after:?}; stderr {stderr:?}");
    let last = after.last().unwrap_or_else(|| panic!("nothing after the restart; stderr {stderr:?}"));
    assert_eq!(last, &format!("waitpid {child}: exit 7 after {limit} numbers"), "all: {after:?}; stderr {stderr:?}");
    let got: Vec<u32> = after.iter().filter_map(|l| l.strip_prefix("got ")?.parse().ok()).collect();
    assert!(got.windows(2).all(|w| w[1] == w[0] + 100), "{got:?}");
    assert_eq!(got.last(), Some(&limit));
}

/// A C parent and the child it forked, each with its own counter, and a pipe from child to
/// parent with numbers in flight: after kill -9 of both and a restart, both go on exactly and
/// the parent's `waitpid(child)` gets the child's exit status.
#[test]
fn a_parent_and_child_continue_with_the_pipe_between_them() {
    let wd = Workdir::new("tree-family");
    let mut orig = Proc::preloaded(family(1500), &wd.image(), "family");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let child = child_of(&orig.lines());
    orig.kill_tree();
    let seen = orig.lines();
    assert!(!seen.iter().any(|l| l.starts_with("waitpid")), "the run ended before it was killed: {seen:?}");
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_family_finished(&restored.lines(), child, 1500, &restored.stderr());
}

/// `PROG | cat` under `bash -c`: the output after the restart is what an uninterrupted run
/// prints from that point on.
#[test]
fn a_shell_pipeline_continues() {
    let wd = Workdir::new("tree-pipeline");
    let counter = prog("counter", &[]);
    let make = || {
        let mut c = Command::new("bash");
        c.args(["-c", &format!("'{}' 300 10000 | cat", counter.display())]);
        c
    };
    tree_checkpoint_kill_restart_matches(make, 20, &wd);
}

/// A bash script whose step runs in a `$(...)` child (with a `sleep` in it) at the moment of
/// the checkpoint.
#[test]
fn a_bash_script_continues_inside_a_command_substitution() {
    let wd = Workdir::new("tree-subst");
    let make = || {
        let mut c = Command::new("bash");
        c.args(["-c", "for i in $(seq 1 80); do x=$(sleep 0.03; echo $((i * i))); echo \"$i $x\"; done"]);
        c
    };
    tree_checkpoint_kill_restart_matches(make, 15, &wd);
}

/// Python's `multiprocessing.Pool(2)` mapping over work items: a parent with its pool threads
/// and two worker processes, pipes and a semaphore in shared memory between them.
#[test]
fn python_multiprocessing_pool_continues() {
    let wd = Workdir::new("tree-pool");
    let script = "import multiprocessing as mp, time\n\
def f(x):\n    time.sleep(0.01)\n    return x * x\n\
if __name__ == '__main__':\n    with mp.Pool(2) as pool:\n        for i, r in enumerate(pool.imap(f, range(300))):\n            print(i, r, flush=True)\n    print('done', flush=True)\n";
    let make = || {
        let mut c = Command::new("python3");
        c.args(["-c", script]);
        c
    };
    tree_checkpoint_kill_restart_matches(make, 40, &wd);
}

/// A zombie child, reaped only after the restart, with its exit status; and a worker child
/// sharing an anonymous `MAP_SHARED` page with the parent, where a process-shared mutex guards
/// a counter the worker increments: after the restart the parent still sees the worker's
/// increments (the memory is shared again) and the mutex works.
#[test]
fn a_zombie_and_shared_memory_with_a_mutex_come_back() {
    let wd = Workdir::new("tree-zombie");
    let mut c = Command::new(prog("zombie", &["-lpthread"]));
    c.args(["60", "120"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "zombie");
    orig.wait_lines(10, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let seen = orig.lines();
    let ids: Vec<u32> = seen[0].split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let (zombie, worker) = (ids[0], ids[1]);
    assert!(!seen.iter().any(|l| l.starts_with("zombie ") && l.contains("exit")), "reaped before the checkpoint: {seen:?}");
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let after = restored.lines();
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert!(after.contains(&format!("zombie {zombie} exit 5")), "{after:?}");
    let counts: Vec<i64> = after.iter().filter_map(|l| l.strip_prefix("counter ")?.parse().ok()).collect();
    assert!(counts.len() > 20 && counts.last() > counts.first(), "the worker's increments are not seen: {counts:?}");
    let last = after.last().unwrap();
    assert!(last.starts_with(&format!("worker {worker} exit 0, counter ")), "{after:?}");
}

/// A restored tree is checkpointed again (a second generation), and that image restarts twice,
/// each time finishing exactly.
#[test]
fn two_generations_and_one_image_restarted_twice() {
    let wd = Workdir::new("tree-generations");
    let image = wd.image();
    let mut orig = Proc::preloaded(family(2000), &image, "family");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&image, LONG);
    let child = child_of(&orig.lines());
    orig.kill_tree();

    let mut first = Proc::restart(&image);
    first.wait_lines(3, SHORT);
    // myrestart passes the signal on to the restored root, which checkpoints its tree again.
    first.checkpoint(&image, LONG);
    first.kill9();
    assert!(!first.lines().iter().any(|l| l.starts_with("waitpid")), "the first restart ended before it was killed");

    for round in ["first", "second"] {
        let mut again = Proc::restart(&image);
        let st = again.wait_exit(LONG);
        assert!(st.success(), "{round} restart of the second generation: {st}; stderr {:?}", again.stderr());
        assert_family_finished(&again.lines(), child, 2000, &again.stderr());
    }
}

/// What `fork` shares comes back shared: a socket pair between parent and child (numbers in
/// flight each way checked by the parent) and a log file's open description, whose one offset
/// both move: after the restart no line of either is lost or overwritten.
#[test]
fn a_socket_pair_and_a_shared_file_offset_between_processes() {
    let wd = Workdir::new("tree-sharing");
    let log = wd.path.join("log");
    let mut c = Command::new(prog("sharing", &[]));
    c.arg(&log).arg("1500");
    let mut orig = Proc::preloaded(c, &wd.image(), "sharing");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let child = child_of(&orig.lines());
    orig.kill_tree();
    assert!(!orig.stderr().contains("leads outside"), "{}", orig.stderr());
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let after = restored.lines();
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert!(!after.iter().any(|l| l.starts_with("wrong")), "{after:?}");
    assert_eq!(after.last().unwrap(), &format!("waitpid {child}: exit 9; log: 3000 lines, 0 bad"), "{after:?}");
}
