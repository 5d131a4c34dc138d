//! Multi-threaded programs: every thread stopped at one moment, checkpointed, and restored
//! with its TID, name, thread-local state, locks and signal mask.

use ckpt_tests::*;
use std::process::Command;

/// "tick T total=N ok=K moved=M" of the `threads` program.
fn tick(l: &str) -> (i64, i64, usize, usize) {
    let f: Vec<&str> = l.split(' ').collect();
    let v = |s: &str, k: &str| s.strip_prefix(k).unwrap_or_else(|| panic!("{l}")).parse::<i64>().unwrap();
    (f[1].parse().unwrap(), v(f[2], "total="), v(f[3], "ok=") as usize, v(f[4], "moved=") as usize)
}

/// Runs `threads WORKERS TICKS` preloaded, checkpoints it after a few ticks, kills it, and
/// restarts it; checks that every worker is intact and moving after the restart.
fn checkpoint_and_restart(wd: &Workdir, workers: usize, ticks: &str) -> Proc {
    let mut c = Command::new(prog("threads", &["-pthread"]));
    c.arg(workers.to_string()).arg(ticks);
    let mut orig = Proc::preloaded(c, &wd.image(), "threads");
    orig.wait_until(|l| l.len() >= 3 && tick(l.last().unwrap()).3 == workers, LONG, "every worker to move");
    orig.checkpoint(&wd.image(), LONG);
    let at = tick(orig.lines().last().unwrap());
    orig.kill9();
    let restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(5, LONG);
    let first = tick(&lines[0]);
    assert!(first.0 > 0 && first.0 <= at.0 + 1 && first.1 >= at.1 - workers as i64 * 10, "resumed at {first:?}, checkpoint near {at:?}");
    for l in &lines {
        let (_, _, ok, moved) = tick(l);
        assert_eq!((ok, moved), (workers, workers), "after restart: {l}; stderr {}", restored.stderr());
    }
    restored
}

#[test]
fn pthreads_go_on_with_their_ids_names_locals_and_locks() {
    let wd = Workdir::new("threads");
    let mut restored = checkpoint_and_restart(&wd, 4, "60");
    // Every thread is back with its TID, in the program's own namespace.
    let pid = restored.program_pid();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    assert_eq!(tasks, 6, "main, 4 workers and the thread that blocks every signal");
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}: {}", restored.stderr());
    // The main thread held an ERRORCHECK mutex across the checkpoint: it still owns it.
    assert_eq!(restored.lines().last().map(String::as_str), Some("done unlock=0"));
}

#[test]
fn sixty_four_threads() {
    let wd = Workdir::new("threads64");
    let mut restored = checkpoint_and_restart(&wd, 64, "40");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
}

#[test]
fn gdb_shows_every_thread_of_an_image() {
    let wd = Workdir::new("threads-gdb");
    let p = prog("threads", &["-pthread"]);
    let mut c = Command::new(&p);
    c.arg("3");
    let mut orig = Proc::preloaded(c, &wd.image(), "threads");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-ex", "info threads", "-ex", "thread apply all bt"]).arg(&p).arg(wd.image()).output().unwrap();
    let out = String::from_utf8_lossy(&gdb.stdout);
    let threads = out.lines().filter(|l| l.trim_start().trim_start_matches('*').trim_start().split(' ').next().is_some_and(|n| n.parse::<u32>().is_ok()) && l.contains("Thread ")).count();
    assert_eq!(threads, 5, "info threads:\n{out}");
    assert!(out.contains("in worker") && out.contains("in blocker") && out.contains("in main"), "{out}");
    let json = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let names: Vec<&str> = doc["threads"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 5);
    for w in ["worker-0", "worker-1", "worker-2"] {
        assert!(names.contains(&w), "{names:?}");
    }
}

#[test]
fn python_threads_and_a_queue() {
    let wd = Workdir::new("python-threads");
    let script = r#"
import threading, queue, time, sys
q = queue.Queue()
def producer():
    for i in range(1000000):
        q.put(i)
        time.sleep(0.002)
def consumer():
    expect = 0
    while True:
        i = q.get()
        if i != expect:
            print("BAD", i, expect, flush=True)
            sys.exit(1)
        expect += 1
        if i % 10 == 0:
            print("got", i, flush=True)
threading.Thread(target=producer, daemon=True).start()
threading.Thread(target=consumer, daemon=True).start()
while True:
    time.sleep(0.05)
"#;
    let mut c = Command::new("python3");
    c.args(["-u", "-c", script]);
    let mut orig = Proc::preloaded(c, &wd.image(), "python threads");
    orig.wait_lines(3, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let last: i64 = orig.lines().last().unwrap().trim_start_matches("got ").parse().unwrap();
    let restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(10, LONG);
    let got: Vec<i64> = lines.iter().map(|l| l.strip_prefix("got ").unwrap_or_else(|| panic!("{l}")).parse().unwrap()).collect();
    assert!(got[0] <= last + 10 && got[0] > 0, "resumed at {} after {last}", got[0]);
    for w in got.windows(2) {
        assert_eq!(w[1], w[0] + 10, "items out of order: {got:?}");
    }
}

#[test]
fn threads_with_new_ids_run_on() {
    let wd = Workdir::new("threads-new-ids");
    let mut c = Command::new(prog("threads", &["-pthread"]));
    c.args(["4", "40"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "threads");
    orig.wait_until(|l| l.len() >= 3 && tick(l.last().unwrap()).3 == 4, LONG, "every worker to move");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let mut r = Command::new(myrestart());
    r.arg("--new-ids").arg(wd.image());
    let mut restored = Proc::spawn(r, "myrestart --new-ids");
    for l in restored.wait_lines(5, LONG) {
        let (_, _, ok, moved) = tick(&l);
        // Every worker runs, each with a new TID (which it notices).
        assert_eq!((ok, moved), (0, 4), "{l}");
    }
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    // The main thread's TID changed too: the ERRORCHECK mutex no longer knows its owner.
    assert_eq!(restored.lines().last().map(String::as_str), Some("done unlock=1"));
}
