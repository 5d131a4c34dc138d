//! Multi-threaded programs: every thread stopped at one moment, checkpointed, and restored
//! with its TID, name, thread-local state, locks and signal mask.
#![deny(unsafe_code)]

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
    let before = orig.wait_until(|l| l.len() >= 3 && tick(l.last().unwrap()).3 == workers, LONG, "every worker to move");
    let before = tick(before.last().unwrap());
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let at_kill = tick(orig.lines().last().unwrap());
    let restored = Proc::restart(&wd.image());
    let first = tick(&restored.wait_lines(1, LONG)[0]);
    assert!(first.0 > before.0 && first.0 <= at_kill.0 + 1 && first.1 >= before.1, "resumed at {first:?}: signalled after {before:?}, killed after {at_kill:?}");
    // Every worker moves again (each within some ten ticks, however loaded the machine), and
    // every one is intact all along.
    let kills = |l: &str| l.rsplit_once("kills=").unwrap().1.parse::<usize>().unwrap();
    let lines = restored.wait_until(
        |l| l.len() > 10 && tick(l.last().unwrap()).3 == workers && kills(l.last().unwrap()) == workers,
        LONG,
        "every worker to move, and to take the SIGUSR1 pthread_kill sends it",
    );
    for l in &lines {
        assert_eq!(tick(l).2, workers, "after restart: {l}; stderr {}", restored.stderr());
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
    // The main thread held an ERRORCHECK mutex across the checkpoint, worker 0 a RECURSIVE one
    // (twice) and worker 1 a ROBUST one: each still owns its own.
    assert_eq!(restored.lines().last().map(String::as_str), Some("done unlock=0 rec=0 robust=0"));
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
    checkpointed(c, &wd, 3);
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
    let orig = checkpointed(c, &wd, 3);
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
    // Every worker runs, each with a new TID (which it notices).
    restored.wait_until(|l| l.last().is_some_and(|l| tick(l).2 == 0 && tick(l).3 == 4), LONG, "every worker to move, under a new TID");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    // The TIDs changed: the mutexes no longer know their owners (EPERM).
    assert_eq!(restored.lines().last().map(String::as_str), Some("done unlock=1 rec=1 robust=1"));
}

/// "tick T k=v k=v ...": the tick and the values.
fn values(l: &str) -> (i64, Vec<i64>) {
    let mut f = l.split(' ');
    assert_eq!(f.next(), Some("tick"), "{l}");
    let t = f.next().unwrap().parse().unwrap();
    (t, f.map(|kv| kv.split_once('=').unwrap().1.parse().unwrap()).collect())
}

/// Threads caught in poll(), a condition wait, nanosleep, and threads starting and exiting
/// while the checkpoint stops them: every loop goes on after the restart.
#[test]
fn threads_in_blocking_calls_and_threads_coming_and_going() {
    let wd = Workdir::new("waits");
    let mut c = Command::new(prog("waits", &["-pthread"]));
    c.arg("1000000");
    checkpointed(c, &wd, 5);
    let restored = Proc::restart(&wd.image());
    let (_, first) = values(&restored.wait_lines(1, LONG)[0]);
    // Each loop goes round a few more times.
    let moving = |l: &[String]| l.last().is_some_and(|l| values(l).1.iter().zip(&first).all(|(now, then)| *now > then + 3));
    restored.wait_until(moving, LONG, "every loop (poll, cond, sleep, churn) to go on");
}

#[test]
fn cxx_threads_async_and_exceptions() {
    let wd = Workdir::new("cxx-threads");
    let mut c = Command::new(prog("asyncx", &["-pthread"]));
    c.arg("60");
    checkpointed(c, &wd, 5);
    let mut restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(5, LONG);
    let (t0, v0) = values(&lines[0]);
    let (t1, v1) = values(&lines[4]);
    assert!(t1 > t0 && v1[1] > v0[1], "workers stopped catching: {lines:?}");
    // The async sums are those of an uninterrupted run: 2 * (0 + 1 + ... + t).
    assert_eq!(v1[0], t1 * (t1 + 1), "{}", lines[4]);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("done"));
}

#[test]
fn openmp_results_equal_an_uninterrupted_run() {
    let wd = Workdir::new("omp");
    let p = prog("omp", &["-fopenmp"]);
    let make = || {
        let mut c = Command::new(&p);
        c.arg("150").env("OMP_NUM_THREADS", "4");
        c
    };
    checkpoint_kill_restart_matches(make, 20, &wd);
}

/// A program with its own handler for the thread-stop signal (63) keeps it: the signals of that
/// number it is sent reach its handler, while libckpt's own stop requests (queued with ckpt's
/// value) stop its threads for a checkpoint. Killed and restarted, it goes on with its count.
#[test]
fn a_program_with_its_own_thread_stop_signal_handler() {
    let wd = Workdir::new("own-stop-signal");
    let src = wd.path.join("own63.c");
    std::fs::write(
        &src,
        "#include <pthread.h>\n#include <signal.h>\n#include <stdio.h>\n#include <unistd.h>\n\
         static volatile sig_atomic_t got;\n\
         static void h(int s) { got += s == 63; }\n\
         static void *idle(void *a) { for (;;) pause(); return a; }\n\
         int main(void) { signal(63, h); pthread_t t; pthread_create(&t, 0, idle, 0);\n\
         for (int i = 0;; i++) { printf(\"%d got=%d\\n\", i, (int)got); fflush(stdout); usleep(10000); } }\n",
    )
    .unwrap();
    let p = compile(&src, "own63", &["-pthread"]);
    let got = |lines: &[String]| lines.last().and_then(|l| l.split_once(" got=")).map(|(_, n)| n.to_string()).unwrap_or_default();
    let mut orig = Proc::preloaded(Command::new(&p), &wd.image(), "own63");
    orig.wait_lines(3, SHORT);
    orig.signal(63);
    orig.wait_until(|l| got(l) == "1", SHORT, "its handler's signal");
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 3, SHORT);
    assert_eq!(got(&lines), "1", "a stop request reached the program's handler");
    orig.kill9();
    assert!(!orig.stderr().contains("ckpt:"), "{}", orig.stderr());
    let doc: serde_json::Value = serde_json::from_slice(&Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap().stdout).unwrap();
    assert_eq!(doc["threads"].as_array().map(Vec::len), Some(2), "{doc}");
    let restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
    restored.signal(63);
    restored.wait_until(|l| got(l) == "2", SHORT, "the restored handler's signal");
}

/// A signal pending for one thread, and one pending for the process, are pending again after
/// the restart, and reach the same thread (and the process).
#[test]
fn pending_signals_survive() {
    let wd = Workdir::new("pending");
    let mut c = Command::new(prog("pending", &["-pthread"]));
    c.arg("40");
    checkpointed(c, &wd, 3);
    let json = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["threads"].as_array().unwrap().len(), 2);
    let mut restored = Proc::restart(&wd.image());
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("worker usr1=1 main hup=1"));
}

/// Expiries of POSIX timers pending at the checkpoint (their signals blocked), one for the
/// process and one for a thread, come back as the timer sent them: `SI_TIMER`, the timer's ID
/// and its `sigev_value` (as glibc's `SIGEV_THREAD` helper needs to act on one).
#[test]
fn pending_timer_signals_keep_their_siginfo() {
    let wd = Workdir::new("timerpend");
    let p = prog("timerpend", &[]);
    let make = || {
        let mut c = Command::new(&p);
        c.arg("40");
        c
    };
    checkpoint_kill_restart_matches(make, 20, &wd);
}

/// POSIX timers keep firing after the restart: at the process, and at their own thread, with
/// their `sigev_value`, under the same `timer_t`.
#[test]
fn posix_timers_keep_firing_at_the_right_thread() {
    let wd = Workdir::new("ptimers");
    let mut c = Command::new(prog("ptimers", &["-pthread"]));
    c.arg("1000000");
    let mut orig = Proc::preloaded(c, &wd.image(), "ptimers");
    orig.wait_until(|l| l.last().is_some_and(|l| values(l).1[0] > 3 && values(l).1[1] > 3), LONG, "both timers to fire");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let restored = Proc::restart(&wd.image());
    let first = values(&restored.wait_lines(1, LONG)[0]).1;
    let lines = restored.wait_until(|l| l.last().is_some_and(|l| { let v = values(l).1; v[0] > first[0] + 5 && v[1] > first[1] + 5 }), LONG, "both timers to fire after the restart");
    assert!(first[0] > 3 && first[1] > 3, "the counts did not resume: {first:?}");
    for l in &lines {
        assert_eq!(values(l).1[2], 1, "a timer_t no longer works: {l}");
    }
}

/// `ckpt restart --stopped` stops every thread at its checkpointed state; gdb attaches to all.
#[test]
fn restart_stopped_stops_every_thread() {
    let wd = Workdir::new("threads-stopped");
    let p = prog("threads", &["-pthread"]);
    let mut c = Command::new(&p);
    c.arg("3");
    checkpointed(c, &wd, 3);
    let mut c = Command::new(ckpt());
    c.args(["restart", "--stopped"]).arg(wd.image());
    let mut restored = Proc::spawn(c, "ckpt restart --stopped");
    let err = restored.wait_stderr("will stop (SIGSTOP)", SHORT);
    let pid = restored.program_pid();
    assert!(err.contains(&format!("ckpt: the restored program is process {pid} (PID ")), "{err}");
    let tasks = || std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + SHORT;
    while !tasks().iter().all(|t| std::fs::read_to_string(t.join("stat")).is_ok_and(|s| s.contains(") t ") || s.contains(") T "))) {
        assert!(std::time::Instant::now() < deadline, "not every thread stopped");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(tasks().len(), 5);
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", "info threads", "-ex", "detach"]).output().unwrap();
    let out = String::from_utf8_lossy(&gdb.stdout);
    assert_eq!(out.lines().filter(|l| l.contains("Thread 0x")).count(), 5, "{out}");
    assert!(restored.stdout_text().is_empty());
    // kill(2) with the PID myrestart named.
    send_signal(pid as i32, libc::SIGCONT);
    restored.wait_lines(3, SHORT);
    restored.kill9();
}

/// node (V8 and libuv start threads, an epoll loop, eventfds and pipes in every process): a
/// `setInterval` counter goes on after the restart exactly as an uninterrupted run counts.
#[test]
fn node_set_interval() {
    if Command::new("node").arg("--version").output().is_err() {
        skip("node_set_interval", "node is not installed");
        return;
    }
    let wd = Workdir::new("node");
    let make = || {
        let mut c = Command::new("node");
        c.args(["-e", "let i = 0, x = 7; const t = setInterval(() => { x = (x * 31 + i) % 1000003; console.log(i, x); if (++i == 150) clearInterval(t); }, 10);"]);
        c
    };
    checkpoint_kill_restart_matches(make, 30, &wd);
}

/// "fire N ok=K" of the `sevthread` program: N, and whether K is 1.
fn fire(l: &str) -> (i64, bool) {
    let f: Vec<&str> = l.split(' ').collect();
    assert!(f.len() == 3 && f[0] == "fire", "{l}");
    (f[1].parse().unwrap(), f[2] == "ok=1")
}

/// A POSIX timer with `SIGEV_THREAD` notification (glibc's helper thread, which blocks every
/// signal, gets the timer's signal and starts a thread for each expiry): checkpointed, killed
/// and restarted, its notifications go on under the same `timer_t`, counting on from the
/// checkpoint.
#[test]
fn sigev_thread_timer_goes_on_after_restart() {
    let wd = Workdir::new("sevthread");
    let mut orig = Proc::preloaded(Command::new(prog("sevthread", &["-pthread"])), &wd.image(), "sevthread");
    let before = orig.wait_lines(5, LONG).len() as i64;
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let at_kill = orig.lines().len() as i64;
    let restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(10, LONG);
    let (first, _) = fire(&lines[0]);
    assert!(first > before && first <= at_kill + 1, "resumed at {first}: checkpoint asked after {before}, killed after {at_kill}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(fire(l), (first + i as i64, true), "after restart: {lines:?}; stderr {}", restored.stderr());
    }
    // The restored program (its helper thread stopped with ptrace again) is checkpointed
    // again, and that image goes on counting too.
    let mut restored = restored;
    let out = Command::new(ckpt()).args(["checkpoint", "--wait", "--kill", &restored.program_pid().to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let at_kill = fire(restored.wait_output_closed(LONG).then(|| restored.lines()).unwrap().last().unwrap()).0;
    restored.kill9();
    let again = Proc::restart(&wd.image());
    let lines = again.wait_lines(5, LONG);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(fire(l), (at_kill + 1 + i as i64, true), "after the second restart: {lines:?}; stderr {}", again.stderr());
    }
}

/// A program whose only other thread blocks every signal with a raw `rt_sigprocmask` system
/// call, caught computing (`spin`), in a `read` of a pipe (restarted) or in `nanosleep`: each
/// continues exactly after the restart, and the main thread still joins it at the end.
fn a_thread_that_blocks_every_signal(mode: &str, steps: &str) {
    let wd = Workdir::new(&format!("rawblock-{mode}"));
    let p = prog("rawblock", &["-pthread"]);
    let make = || {
        let mut c = Command::new(&p);
        c.args([mode, steps]);
        c
    };
    checkpoint_kill_restart_matches(make, 40, &wd);
}

#[test]
fn a_thread_that_blocks_every_signal_while_computing() {
    a_thread_that_blocks_every_signal("spin", "1500");
}

#[test]
fn a_thread_that_blocks_every_signal_in_read() {
    a_thread_that_blocks_every_signal("pipe", "300");
}

#[test]
fn a_thread_that_blocks_every_signal_in_nanosleep() {
    a_thread_that_blocks_every_signal("sleep", "300");
}

/// Checkpoints that stop threads with ptrace leave the program running exactly as before: the
/// thread blocked in `read` goes on with every byte, the timer's notifications go on counting,
/// and both programs end as an uninterrupted run does.
#[test]
fn blocking_threads_go_on_after_a_checkpoint_without_kill() {
    let wd = Workdir::new("rawblock-nokill");
    let p = prog("rawblock", &["-pthread"]);
    let make = || {
        let mut c = Command::new(&p);
        c.args(["pipe", "200"]);
        c
    };
    let reference = reference_run(make(), LONG);
    let mut orig = Proc::preloaded(make(), &wd.image(), "rawblock pipe");
    orig.wait_lines(30, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 5, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let st = orig.wait_exit(LONG);
    assert!(st.success(), "{st}: {}", orig.stderr());
    assert_eq!(orig.lines(), reference);

    let wd = Workdir::new("sevthread-nokill");
    let mut c = Command::new(prog("sevthread", &["-pthread"]));
    c.arg("60");
    let mut orig = Proc::preloaded(c, &wd.image(), "sevthread 60");
    orig.wait_lines(10, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let st = orig.wait_exit(LONG);
    assert!(st.success(), "{st}: {}", orig.stderr());
    let lines = orig.lines();
    assert_eq!(lines.len(), 61, "{lines:?}");
    for (i, l) in lines[..60].iter().enumerate() {
        assert_eq!(fire(l), (i as i64 + 1, true), "{lines:?}");
    }
    assert_eq!(lines[60], "done");
}

/// The thread that blocks every signal is stopped with ptrace by a process of the program's
/// own user, no privilege needed; a program that made itself not dumpable cannot be traced so,
/// and its checkpoint fails with one line saying why, the program going on.
#[test]
fn a_blocking_thread_of_an_unprivileged_program() {
    use std::os::unix::fs::PermissionsExt;
    if !can_be_another_user("a_blocking_thread_of_an_unprivileged_program") {
        return;
    }
    for nodump in [false, true] {
        let wd = Workdir::new(if nodump { "rawblock-nodump" } else { "rawblock-nobody" });
        std::fs::set_permissions(&wd.path, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(prog("rawblock", &["-pthread"])).arg("pipe");
        if nodump {
            c.env("RAWBLOCK_NODUMP", "1");
        }
        let orig = Proc::preloaded(c, &wd.image(), "rawblock pipe as nobody");
        orig.wait_lines(10, LONG);
        if !nodump {
            orig.checkpoint(&wd.image(), LONG);
            let n = orig.lines().len();
            orig.wait_lines(n + 5, LONG);
            continue;
        }
        orig.signal(libc::SIGUSR2);
        let err = orig.wait_stderr("checkpoint failed", LONG);
        assert!(err.contains("blocks signal 63 and could not be stopped with ptrace instead: the program is not dumpable"), "{err}");
        let n = orig.lines().len();
        orig.wait_lines(n + 5, LONG);
        assert!(!wd.image().exists());
    }
}

/// The second image of a program whose thread blocks every signal is incremental: the page of
/// that thread's stack where its frame was written since the first is in it, and the restart
/// goes on from the second checkpoint, not the first.
#[test]
fn a_blocking_thread_in_an_incremental_image() {
    let wd = Workdir::new("rawblock-incremental");
    let p = prog("rawblock", &["-pthread"]);
    let make = || {
        let mut c = Command::new(&p);
        c.args(["sleep", "400"]);
        c
    };
    let reference = reference_run(make(), LONG);
    let mut orig = Proc::preloaded(make(), &wd.image(), "rawblock sleep");
    orig.wait_lines(20, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 20, LONG);
    let at_ckpt = orig.lines().len();
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let at_kill = orig.lines().len();
    assert!(!base_files(&wd).is_empty(), "the second image is not incremental");
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}: {}", restored.stderr());
    assert_continues(&reference, at_ckpt, at_kill, &restored.lines());
}
