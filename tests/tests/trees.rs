//! Process trees: a program and its children are checkpointed at one moment (`kill -12` of the
//! root), killed together, and come back together with their PIDs, the pipes and shared
//! memory between them, and their zombies.
#![deny(unsafe_code)]

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
    // The tree image is still a core file of the root: gdb finds its one thread in `main`.
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-ex", "bt", "-ex", "info threads"]).arg(prog("family", &[])).arg(wd.image()).output().expect("gdb");
    let bt = String::from_utf8_lossy(&gdb.stdout);
    assert!(bt.contains("in main") && bt.contains(&format!("LWP {}", orig.pid)), "{bt}\n{}", String::from_utf8_lossy(&gdb.stderr));
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
    // `ckpt inspect` shows the tree, the zombie with its status.
    let out = Command::new(ckpt()).arg("inspect").arg(wd.image()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("tree         3 processes"), "{text}");
    // One thread each, said so.
    assert!(text.contains(" (1 thread)") && text.contains(" (1 thread, ") && !text.contains("1 threads"), "{text}");
    assert!(text.contains(&format!("pid {zombie:<7}")) && text.contains("zombie, exit status 5"), "{text}");
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

/// A terminal: the pseudo-terminal's master end, read by a thread into a shared text.
struct Pty {
    master: std::os::fd::OwnedFd,
    slave: std::os::fd::OwnedFd,
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

#[allow(unsafe_code)] // openpty, a pre_exec hook that makes it the controlling terminal, raw reads and writes
impl Pty {
    fn new() -> Pty {
        use std::os::fd::{FromRawFd, AsRawFd};
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two descriptors; no name, termios or size asked for.
        let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(r, 0, "openpty");
        // SAFETY: both descriptors are new and ours.
        let (master, slave) = unsafe { (std::os::fd::OwnedFd::from_raw_fd(m), std::os::fd::OwnedFd::from_raw_fd(s)) };
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let reader = master.try_clone().unwrap();
        let into = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into our own buffer from our own descriptor.
                let n = unsafe { libc::read(reader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n as usize]));
            }
        });
        Pty { master, slave, text }
    }

    /// `cmd` as the leader of a new session whose controlling terminal (and stdin, stdout,
    /// stderr) is this one.
    fn attach(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        // Stdio from dups of the slave; the session and terminal are set just before exec.
        cmd.stdin(self.slave.try_clone().unwrap()).stdout(self.slave.try_clone().unwrap()).stderr(self.slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe, as a pre_exec hook must be.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32);
                Ok(())
            });
        }
    }

    fn type_keys(&self, keys: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: writing our own bytes to our own descriptor.
        assert_eq!(unsafe { libc::write(self.master.as_raw_fd(), keys.as_ptr().cast(), keys.len()) }, keys.len() as isize);
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let t = self.text();
            if pred(&t) {
                return t;
            }
            assert!(std::time::Instant::now() < deadline, "no {what} on the terminal within {LONG:?}: {t:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn count(text: &str, what: &str) -> usize {
    text.matches(what).count()
}

/// A tree that ran on a terminal (a job a shell started in its own process group) is
/// restarted on another terminal as its foreground job: Ctrl-C reaches both processes,
/// Ctrl-Z stops them and myrestart with them (the shell gets its prompt back), and SIGCONT to
/// the job (what `fg` sends) lets them all go on.
#[test]
fn a_tree_is_the_foreground_job_of_the_restarts_terminal() {
    let wd = Workdir::new("tree-tty");
    let pty = Pty::new();
    let ticker = prog("ticker", &[]);
    let mut sh = Command::new("bash");
    // Only the job is preloaded: a preloaded shell would make the ticker its descendant,
    // whose own image is `<image>-<PID>`.
    sh.args(["-c", "set -m; LD_PRELOAD=\"$L\" CKPT_IMAGE=\"$I\" \"$T\" & echo root $!; wait"]);
    sh.env("L", libckpt()).env("I", wd.image()).env("T", &ticker);
    pty.attach(&mut sh);
    let mut shell = sh.spawn().unwrap();
    let text = pty.wait_for("the root's PID", |t| t.contains("root ") && t.contains("child tick 1"));
    let root: u32 = text.split("root ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    // kill(2) of the ticker the shell started (the shell waits for it).
    send_signal(root as i32, libc::SIGUSR2);
    pty.wait_for("the tree's image", |_| wd.image().exists());
    let mut all = vec![root];
    all.extend(descendants(root));
    for p in &all {
        // kill(2) of the processes below our own child.
        send_signal(*p as i32, libc::SIGKILL);
    }
    let _ = shell.kill();
    let _ = shell.wait();

    // The restart runs as a job of a shell with job control on another terminal: Ctrl-Z gives
    // the shell its prompt back (it says so), and its `fg` lets the job go on.
    let tty = Pty::new();
    let mut c = Command::new("bash");
    c.args(["-c", "set -m; \"$R\" \"$I\"; echo \"stopped $?\"; fg; echo \"ended $?\""]);
    c.env("R", myrestart()).env("I", wd.image());
    tty.attach(&mut c);
    let mut shell = c.spawn().unwrap();
    tty.wait_for("both ticking", |t| t.contains("parent tick") && t.contains("child tick"));
    let mr = descendants(shell.id())[0];
    tty.type_keys(b"\x03");
    tty.wait_for("SIGINT in both", |t| count(t, "parent SIGINT") == 1 && count(t, "child SIGINT") == 1);
    tty.type_keys(b"\x1a");
    // (myrestart stops with SIGSTOP: 128 + 19)
    tty.wait_for("the shell's word that the job stopped", |t| t.contains("Stopped") && t.contains("stopped 147"));
    let t = tty.wait_for("ticks after fg", |t| {
        let after = &t[t.find("stopped 147").unwrap()..];
        after.contains("parent tick") && after.contains("child tick")
    });
    assert_eq!(count(&t, "parent SIGINT"), 1, "{t}");
    // kill(2) of the restart below our own child.
    send_signal(mr as i32, libc::SIGTERM);
    tty.wait_for("the job's end", |t| t.contains(&format!("ended {}", 128 + libc::SIGTERM)));
    let _ = shell.wait();
}

/// Whether process `pid` runs (exists and is not a zombie).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

fn wait_ended(pid: u32) {
    let deadline = std::time::Instant::now() + SHORT;
    while runs(pid) {
        assert!(std::time::Instant::now() < deadline, "process {pid} did not end");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `kill -9` of a pipeline's root leaves the rest of it running, still writing its file: a
/// restart then is refused (exit status 2), in one line naming each process of the tree that
/// still runs, by `myrestart` and `ckpt restart` alike. Once they have ended, the restart goes
/// on, and the pipeline goes on numbering the file where it was.
#[test]
fn a_restart_is_refused_while_any_process_of_the_tree_still_runs() {
    let wd = Workdir::new("tree-still-running");
    let out = wd.path.join("numbered");
    let counter = prog("counter", &[]);
    let mut c = Command::new("bash");
    c.args(["-c", &format!("'{}' 1000000 10000 | cat -n > '{}'", counter.display(), out.display())]);
    let mut orig = Proc::preloaded(c, &wd.image(), "a pipeline into a file");
    wait_file_lines(&out, 5, LONG);
    orig.checkpoint(&wd.image(), LONG);
    let below = descendants(orig.pid);
    assert_eq!(below.len(), 2, "{below:?}");
    // kill(2) of our own child, the root alone.
    send_signal(orig.pid as i32, libc::SIGKILL);
    wait_ended(orig.pid);
    assert!(below.iter().all(|&p| runs(p)), "the pipeline ended with its root");
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap().display().to_string();
    let named: Vec<String> = below.iter().map(|&p| format!("PID {p}, {}", exe(p))).collect();
    for cmd in [vec![myrestart()], vec![ckpt(), "restart".into()]] {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]).arg(wd.image());
        let mut refused = Proc::spawn(c, "a restart beside the running pipeline");
        let st = refused.wait_exit(SHORT);
        let err = refused.stderr();
        assert_eq!(st.code(), Some(2), "{cmd:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{cmd:?}: {err}");
        assert!(err.contains("2 processes of the checkpointed tree still run") && err.contains("--allow-running"), "{cmd:?}: {err}");
        for n in &named {
            assert!(err.contains(n.as_str()), "{cmd:?}: {n} not named: {err}");
        }
    }
    for &p in &below {
        // kill(2) of what is left of the pipeline this test started.
        send_signal(p as i32, libc::SIGKILL);
        wait_ended(p);
    }
    orig.kill9();
    let at_kill = file_lines(&out).len();
    let mut restored = Proc::restart(&wd.image());
    let lines = wait_file_lines(&out, at_kill + 20, LONG);
    restored.kill9();
    for (i, l) in lines.iter().enumerate().take(at_kill + 20) {
        let mut f = l.split_whitespace();
        let (n, counted): (usize, usize) = (f.next().unwrap().parse().unwrap(), f.next().unwrap().parse().unwrap());
        assert!(n == i + 1 && counted == i, "line {}: {l:?}; stderr {}", i + 1, restored.stderr());
    }
}

/// A restored tree checkpointed again names the PIDs of its namespace: a process it forked after
/// the restart has a low one there, which here is one of the kernel's threads (a PostgreSQL
/// backend for a client that connected after the restart, say). Such a thread is not the
/// program still running: that image restarts (it was refused, "1 process of the checkpointed
/// tree still runs").
#[test]
fn a_child_forked_after_a_restart_is_not_taken_for_a_kernel_thread_of_its_pid() {
    let wd = Workdir::new("tree-low-pid");
    let image = wd.image();
    let go = wd.path.join("go");
    let mut c = Command::new("bash");
    c.args(["-c", &format!("i=0; while :; do i=$((i+1)); echo $i; if [ -e '{0}' ]; then rm '{0}'; sleep 1000 & echo child $!; fi; sleep 0.05; done", go.display())]);
    let mut orig = Proc::preloaded(c, &image, "bash");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&image, LONG);
    orig.kill_tree();

    let mut first = Proc::restart(&image);
    first.wait_lines(3, LONG);
    std::fs::write(&go, "").unwrap();
    let lines = first.wait_until(|l| l.iter().any(|l| l.starts_with("child ")), LONG, "a child forked after the restart");
    let child: u32 = lines.iter().find_map(|l| l.strip_prefix("child ")).unwrap().parse().unwrap();
    first.checkpoint(&image, LONG);
    first.kill_tree();
    // Its PID in the namespace, seen here: field 9 of stat, the flags, has PF_KTHREAD.
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    let flags: u64 = stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(6)).and_then(|f| f.parse().ok()).unwrap_or(0);
    if flags & 0x0020_0000 == 0 {
        skip("a_child_forked_after_a_restart_is_not_taken_for_a_kernel_thread_of_its_pid", &format!("PID {child} is no kernel thread on this machine"));
        return;
    }
    let mut again = Proc::restart(&image);
    let deadline = std::time::Instant::now() + LONG;
    while again.lines().len() < 3 {
        if let Some(st) = again.try_exit() {
            panic!("the second generation was not restarted ({st}): {}", again.stderr());
        }
        assert!(std::time::Instant::now() < deadline, "the restarted bash printed nothing: {}", again.stderr());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    again.kill_tree();
}

/// A tree whose child cannot be restored (a file it mapped shared, and holds open as Python's
/// `mmap` does, is gone: PostgreSQL's parallel query segments, removed once the query ended) is
/// refused whole, exit status 2, and
/// `ckpt restart` does not first say which process "the restored program is": nothing was
/// restored. The child's line says why.
#[test]
fn a_tree_refused_by_one_of_its_processes_announces_no_restored_program() {
    let wd = Workdir::new("tree-refused-member");
    let shared = wd.path.join("shared");
    std::fs::write(&shared, vec![0u8; 4096]).unwrap();
    let script = "import mmap, os, sys, time\n\
        if os.fork() == 0:\n    f = open(sys.argv[1], 'r+b'); m = mmap.mmap(f.fileno(), 4096); f.close()\n    while True: m[0] = (m[0] + 1) % 256; time.sleep(0.01)\n\
        i = 0\nwhile True:\n    i += 1; print(i, flush=True); time.sleep(0.02)\n";
    let mut c = Command::new("python3");
    c.args(["-c", script]).arg(&shared);
    let mut orig = Proc::preloaded(c, &wd.image(), "python3 and its child mapping a file");
    orig.wait_lines(5, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    std::fs::remove_file(&shared).unwrap();
    let mut c = Command::new(ckpt());
    c.arg("restart").arg(wd.image());
    let mut refused = Proc::spawn(c, "ckpt restart of the tree");
    let st = refused.wait_exit(LONG);
    let err = refused.stderr();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{} is gone since the checkpoint", shared.display())) && err.contains("nothing was restored"), "{err}");
    assert!(!err.contains("the restored program is process"), "{err}");
    assert!(refused.lines().is_empty(), "{:?}", refused.lines());
}

/// A process of the tree that did not load the library (started without `LD_PRELOAD`) is never
/// sent the checkpoint signal: the checkpoint fails with one line naming it, the whole tree
/// runs on, and the previous image stays as it was.
#[test]
fn a_child_without_the_library_fails_the_checkpoint_and_the_tree_goes_on() {
    let wd = Workdir::new("tree-unloaded");
    let image = wd.image();
    std::fs::write(&image, "the previous image").unwrap();
    let mut c = Command::new("sh");
    c.args(["-c", "env -u LD_PRELOAD sleep 1000 & echo child $!; i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"]);
    let mut tree = Proc::preloaded(c, &image, "sh with an unpreloaded child");
    tree.wait_lines(3, SHORT);
    let child: u32 = tree.lines()[0].strip_prefix("child ").unwrap().parse().unwrap();
    tree.signal(libc::SIGUSR2);
    let err = tree.wait_stderr("does not run libckpt.so", LONG);
    assert!(err.contains(&format!("process {child} (sleep)")), "{err}");
    assert_eq!(std::fs::read_to_string(&image).unwrap(), "the previous image");
    let n = tree.lines().len();
    tree.wait_lines(n + 5, SHORT);
    // kill(2) with signal 0 only asks whether the process exists.
    assert_eq!(send_signal(child as i32, 0), 0, "the unpreloaded child is gone");
    tree.kill_tree();
}

/// A tree whose processes keep forking and exiting (a shell running a program per step) is
/// checkpointed again and again: every checkpoint finishes, and the last image restarts.
#[test]
fn a_tree_that_forks_and_exits_all_the_time_checkpoints_and_restarts() {
    let wd = Workdir::new("tree-churn");
    let image = wd.image();
    let mut c = Command::new("bash");
    c.args(["-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); /bin/true || echo \"step $i died: $?\"; echo $i; done"]);
    let mut tree = Proc::preloaded(c, &image, "bash forking /bin/true");
    tree.wait_lines(10, SHORT);
    for _ in 0..10 {
        tree.checkpoint(&image, LONG);
    }
    // No step was killed by the checkpoint signal (a process between fork and exec, or in
    // exec, when it came).
    assert!(!tree.lines().iter().any(|l| l.contains("died")), "{:?}", tree.lines().iter().filter(|l| l.contains("died")).collect::<Vec<_>>());
    let seen: u64 = tree.lines().len() as u64;
    tree.kill_tree();
    let mut restored = Proc::restart(&image);
    let lines = restored.wait_lines(20, LONG);
    let nums: Vec<u64> = lines.iter().map(|l| l.parse().unwrap_or_else(|_| panic!("{lines:?}"))).collect();
    assert!(nums[0] <= seen + 1 && nums.windows(2).all(|w| w[1] == w[0] + 1), "{:?} (seen {seen})", &nums[..20]);
    restored.kill9();
}

/// A tree image with one process's part changed is refused as a whole, by the process's name,
/// with exit status 2: no process of the tree runs.
#[test]
fn a_tree_with_a_corrupt_part_is_refused_whole() {
    let wd = Workdir::new("tree-corrupt");
    let mut orig = Proc::preloaded(family(100000), &wd.image(), "family");
    orig.wait_lines(2, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let child = child_of(&orig.lines());
    orig.kill_tree();
    let mut bytes = std::fs::read(wd.image()).unwrap();
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
    let root = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    let part = root.tree().unwrap().unwrap().map(Result::unwrap).find(|t| t.pid == child).unwrap();
    let base = part.base as usize;
    let len = ckpt_image::image::meta_len(&bytes[base..]).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[base..base + len], bytes.len() as u64, &mut st).unwrap();
    let at = (0..img.region_count()).map(|i| img.region(i).unwrap()).find(|r| r.name == b"[heap]" && r.record.has_data()).unwrap().data_offset as usize;
    bytes[at] ^= 0x5a;
    let corrupt = wd.path.join("corrupt");
    std::fs::write(&corrupt, &bytes).unwrap();
    let out = Command::new(myrestart()).arg(&corrupt).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("process {child} of the tree: corrupt image")), "{err}");
    assert!(out.stdout.is_empty(), "a process ran: {:?}", String::from_utf8_lossy(&out.stdout));
}

/// Python's shared ctypes (`multiprocessing.Value`, in an unlinked file both processes keep
/// open and mapped) with its lock: a worker process increments, the parent reads; after the
/// restart the parent still sees the worker's increments.
#[test]
fn python_shared_values_stay_shared() {
    let wd = Workdir::new("tree-mpvalue");
    let script = r#"
import multiprocessing as mp, time
def work(v, stop):
    while not stop.value:
        with v.get_lock():
            v.value += 1
        time.sleep(0.001)
if __name__ == '__main__':
    mp.set_start_method('fork')
    v = mp.Value('i', 0)
    stop = mp.Value('i', 0)
    p = mp.Process(target=work, args=(v, stop))
    p.start()
    last = -1
    for i in range(150):
        time.sleep(0.02)
        with v.get_lock():
            c = v.value
        if c < last:
            print('went back', c, last, flush=True)
        last = c
        print(i, c, flush=True)
    stop.value = 1
    p.join()
    print('done', p.exitcode, v.value >= last, flush=True)
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script]);
    let mut orig = Proc::preloaded(c, &wd.image(), "python with a shared Value");
    orig.wait_lines(20, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let after = restored.lines();
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_eq!(after.last().map(String::as_str), Some("done 0 True"), "{after:?}");
    assert!(!after.iter().any(|l| l.starts_with("went back")), "{after:?}");
    let counts: Vec<i64> = after.iter().filter(|l| !l.starts_with("done")).filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect();
    assert!(counts.len() > 20 && counts[counts.len() - 1] > counts[0] + 20, "the worker's increments are not seen: {counts:?}");
}

/// With a key (`CKPT_KEY`), every process's part of a tree image is authenticated: the tree
/// restarts with the key, `ckpt inspect --key` says so, and another key is refused.
#[test]
fn an_authenticated_tree_image_restarts_with_its_key_only() {
    let wd = Workdir::new("tree-key");
    let key = wd.path.join("key");
    let other = wd.path.join("other");
    for (path, secret) in [(&key, "the tree's secret"), (&other, "not the tree's secret")] {
        std::fs::write(path, secret).unwrap();
        // Key files must be private.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mut c = family(1500);
    c.env("CKPT_KEY", &key);
    let mut orig = Proc::preloaded(c, &wd.image(), "family with a key");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let child = child_of(&orig.lines());
    orig.kill_tree();
    let inspect = Command::new(ckpt()).args(["inspect", "--key"]).arg(&key).arg(wd.image()).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success() && text.contains("key          authenticated") && text.contains("tree         2 processes"), "{text}");
    let refused = Command::new(myrestart()).arg("--key").arg(&other).arg(wd.image()).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let mut cmd = Command::new(myrestart());
    cmd.arg("--key").arg(&key).arg(wd.image());
    let mut restored = Proc::spawn(cmd, "myrestart --key");
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_family_finished(&restored.lines(), child, 1500, &restored.stderr());
}

/// Memory a child never wrote since `fork` is stored once, in the root's copy, and comes back
/// right in both processes; pages either of them changed are each process's own. Restarted
/// twice from the image: with the image mapped, then read (`--eager`).
#[test]
fn pages_a_child_shares_with_its_parent_are_stored_once() {
    let wd = Workdir::new("tree-cowpages");
    let mib = 16u64;
    let mut c = Command::new(prog("cowpages", &[]));
    c.arg(mib.to_string());
    let mut orig = Proc::preloaded(c, &wd.image(), "cowpages");
    let ready = orig.wait_until(|l| l.iter().filter(|l| l.contains(" ready ")).count() == 2, SHORT, "both ready");
    let sum = |lines: &[String], who: &str, what: &str| {
        let prefix = format!("{who} {what} ");
        lines.iter().find_map(|l| l.strip_prefix(&prefix).map(String::from)).unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
    };
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();

    // The child's part stores only the pages that differ from the parent's: about 1 in 8 it
    // changed, and 1 in 5 the parent changed, of the buffer (16 MiB: 4096 pages).
    let json = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("inspect --json prints JSON");
    assert_eq!(v["checksums_ok"], true, "{v}");
    let child = &v["tree"][1];
    let shared = child["pages_in_root"].as_u64().unwrap_or(0);
    let pages = mib * 256;
    assert!(shared >= pages * 7 / 8 * 4 / 5 - 64 && shared <= pages + 512, "{shared} of {pages} pages shared: {child}");

    for eager in [false, true] {
        let mut cmd = Command::new(myrestart());
        if eager {
            cmd.arg("--eager");
        }
        cmd.arg(wd.image());
        let mut restored = Proc::spawn(cmd, "myrestart (cowpages)");
        let st = restored.wait_exit(LONG);
        let after = restored.lines();
        assert!(st.success(), "{st}; {after:?}; stderr {:?}", restored.stderr());
        for who in ["parent", "child"] {
            assert_eq!(sum(&after, who, "resumed"), sum(&ready, who, "ready"), "{who} (eager: {eager}): {after:?}");
        }
        assert_eq!(after.last().map(String::as_str), Some("waitpid: exit 7"), "{after:?}");
    }
}

/// With `CKPT_SYNC=1` the root writes the tree's image itself, the tree stopped meanwhile:
/// `ckpt checkpoint --wait` waits for it (the members' writers ending first is no failure),
/// and the image restarts both processes right, their shared pages stored once.
#[test]
fn a_synchronous_tree_checkpoint_is_waited_for_and_restarts() {
    let wd = Workdir::new("tree-sync");
    let mut c = Command::new(prog("cowpages", &[]));
    c.arg("8").env("CKPT_SYNC", "1");
    let mut orig = Proc::preloaded(c, &wd.image(), "cowpages (sync)");
    let ready = orig.wait_until(|l| l.iter().filter(|l| l.contains(" ready ")).count() == 2, SHORT, "both ready");
    let out = Command::new(ckpt()).args(["checkpoint", "--wait"]).arg(orig.pid.to_string()).output().unwrap();
    assert!(out.status.success(), "ckpt checkpoint --wait: {}", String::from_utf8_lossy(&out.stderr));
    orig.kill_tree();
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let after = restored.lines();
    assert!(st.success(), "{st}; {after:?}; stderr {:?}", restored.stderr());
    for who in ["parent", "child"] {
        let sum = |lines: &[String], what: &str| lines.iter().find_map(|l| l.strip_prefix(&format!("{who} {what} ")).map(String::from));
        assert_eq!(sum(&after, "resumed"), sum(&ready, "ready"), "{who}: {after:?}");
    }
}

/// A keyed tree image changed and signed again the way anyone could (a byte of the root's heap,
/// and every checksum), whose processes' shared log is gone: refused as not authentic before
/// anything outside is made or opened, so the log is not made again and the directory is as it
/// was. The image as written restores, its log made again (one file for both processes).
#[test]
fn a_tampered_keyed_tree_image_leaves_no_file_behind() {
    let wd = Workdir::new("tree-tampered");
    let key = wd.path.join("key");
    private_file(&key, "the tree's secret");
    let log = wd.path.join("log");
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"exec "$0" 1500 2000 > "$1""#).arg(prog("family", &[])).arg(&log).env("CKPT_KEY", &key);
    let mut orig = Proc::preloaded(c, &wd.image(), "family writing to a log");
    let child = child_of(&wait_file_lines(&log, 3, SHORT));
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    std::fs::remove_file(&log).unwrap();
    let tampered = wd.path.join("tampered");
    std::fs::write(&tampered, ckpt_tests::tampered(&std::fs::read(wd.image()).unwrap())).unwrap();
    let before = snapshot(&wd.path, &[]);
    let mut c = Command::new(myrestart());
    c.arg("--key").arg(&key).arg(&tampered);
    let out = run_within(c, LONG);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!log.exists(), "the refused restart made {}", log.display());
    assert_eq!(snapshot(&wd.path, &[]), before, "the refused restart changed {}", wd.path.display());
    let mut c = Command::new(myrestart());
    c.arg("--key").arg(&key).arg(wd.image());
    let mut restored = Proc::spawn(c, "myrestart --key");
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_family_finished(&file_lines(&log), child, 1500, &restored.stderr());
}

/// A tree whose stdout log is gone with its whole directory: the restart is refused with one
/// line that says how to let it (`--inherit-stdio`), and with `--inherit-stdio` every process
/// of the tree writes to the restart's own stdout, and the tree goes on.
#[test]
fn a_tree_whose_log_directory_is_gone_restarts_on_the_restarts_own_stdout() {
    let wd = Workdir::new("tree-gone-log");
    let logs = wd.path.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("log");
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"exec "$0" 1500 2000 > "$1""#).arg(prog("family", &[])).arg(&log);
    let mut orig = Proc::preloaded(c, &wd.image(), "family writing to a log");
    let child = child_of(&wait_file_lines(&log, 3, SHORT));
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    std::fs::remove_dir_all(&logs).unwrap();
    let out = run_within(
        {
            let mut c = Command::new(myrestart());
            c.arg(wd.image());
            c
        },
        LONG,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is gone, and cannot be made again") && err.contains("--inherit-stdio"), "{err}");
    let mut c = Command::new(myrestart());
    c.arg("--inherit-stdio").arg(wd.image());
    let mut restored = Proc::spawn(c, "myrestart --inherit-stdio");
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_family_finished(&restored.lines(), child, 1500, &restored.stderr());
    assert!(!logs.exists(), "the restart made {}", logs.display());
}
