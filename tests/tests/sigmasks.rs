//! Programs that block every signal and take their signals another way (a `signalfd`,
//! `sigwaitinfo`), as `script(1)` does: the checkpoint signal still reaches ckpt, the program
//! never sees it, and its mask reads back as it set it, before and after a restart. A program
//! that blocks the signal past libc (the system call itself) is checkpointed by
//! `ckpt checkpoint`, which never waits for it forever.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::process::Command;
use std::time::Duration;

fn sigblock(mode: &str, n: u32) -> Command {
    let mut c = Command::new(prog("sigblock", &[]));
    c.args([mode, &n.to_string()]);
    c
}

/// Every signal blocked with sigprocmask, SIGTERM and SIGCHLD read from a signalfd in a poll
/// with a timeout: `kill -12` checkpoints it; restarted, it goes on from there with its mask
/// as it set it ("mask=ok" on every line).
#[test]
fn a_program_blocking_every_signal_and_reading_a_signalfd_is_checkpointed() {
    let wd = Workdir::new("sigblock-fd");
    checkpoint_kill_restart_matches(|| sigblock("fd", 300), 20, &wd);
}

/// The same after 600 short-lived threads each blocked every signal and ended: what they
/// asked does not crowd out what the main thread asks later (its mask reads back as it set it).
#[test]
fn a_program_whose_ended_threads_blocked_every_signal_reads_its_own_mask_back() {
    let wd = Workdir::new("sigblock-workers");
    checkpoint_kill_restart_matches(|| sigblock("workers", 300), 20, &wd);
}

/// Every signal blocked, each tick taken with sigwaitinfo on the full set: the checkpoint
/// signal is not one of the signals it waits for (it would print it and end).
#[test]
fn a_program_taking_every_signal_with_sigwaitinfo_is_checkpointed() {
    let wd = Workdir::new("sigblock-wait");
    checkpoint_kill_restart_matches(|| sigblock("wait", 300), 20, &wd);
}

/// `ckpt checkpoint --wait` of the signalfd program gets its image; restarted, the program
/// goes on with its mask as it set it, and still ends on SIGTERM through its signalfd.
#[test]
fn ckpt_checkpoint_gets_the_image_of_a_program_blocking_every_signal() {
    let wd = Workdir::new("sigblock-ckpt");
    let image = wd.image();
    let mut orig = Proc::preloaded(sigblock("fd", 100_000), &image, "sigblock fd");
    orig.wait_lines(10, SHORT);
    // The image is of a moment after the request and before the kill: the program goes on
    // printing while its image is written, as long as that takes on a loaded machine.
    let asked = orig.lines().len();
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.args(["checkpoint", "--wait", &orig.pid.to_string()]);
            c
        },
        LONG,
    );
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    orig.kill9();
    let at_kill = orig.lines().len();

    let mut restored = Proc::restart(&image);
    let lines = restored.wait_lines(20, SHORT);
    let first: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    assert!(first >= asked && first <= at_kill, "restarted at line {first}, asked for the checkpoint at {asked}, killed at {at_kill}");
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "{lines:?}; {}", restored.stderr());
    let pid = restored.program_pid();
    send_signal(pid as i32, libc::SIGTERM);
    restored.wait_until(|l| l.last().is_some_and(|l| l == "term"), SHORT, "term");
    let _ = restored.wait_exit(Duration::from_secs(10));
}

/// Every signal blocked with the system call itself, past libckpt: the checkpoint signal stays
/// pending, and `ckpt checkpoint --wait` delivers it with ptrace (and so does a plain
/// `ckpt checkpoint`). The program goes on with its mask as it set it, and so does its restart,
/// from the checkpoint.
#[test]
fn ckpt_checkpoint_delivers_the_signal_a_program_blocks_past_libc() {
    let wd = Workdir::new("sigblock-raw");
    let image = wd.image();
    let mut orig = Proc::preloaded(sigblock("raw", 100_000), &image, "sigblock raw");
    orig.wait_lines(10, SHORT);
    // A signal sent by kill waits, blocked; ckpt checkpoint finds it pending and delivers it.
    orig.signal(libc::SIGUSR2);
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.args(["checkpoint", "--wait", &orig.pid.to_string()]);
            c
        },
        LONG,
    );
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    let at = orig.lines().len();
    let lines = orig.wait_lines(at + 5, SHORT);
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "the running program's mask changed: {lines:?}; {}", orig.stderr());
    // Without --wait too: the signal is delivered before ckpt returns, and the image comes.
    let first_image = std::fs::metadata(&image).unwrap().modified().unwrap();
    let asked = orig.lines().len();
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.args(["checkpoint", &orig.pid.to_string()]);
            c
        },
        LONG,
    );
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + LONG;
    while std::fs::metadata(&image).unwrap().modified().unwrap() == first_image {
        assert!(std::time::Instant::now() < deadline, "no second image; {}", orig.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_writers_gone(&image, deadline);
    // Every line the program printed, read to the end: the image is of a moment before this.
    orig.kill9();
    let at = orig.lines().len();

    let mut restored = Proc::restart(&image);
    let lines = restored.wait_lines(20, SHORT);
    let first: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    // The image is of a moment after ckpt was started and before the kill. (Not necessarily
    // after ckpt returned: the program goes on as soon as its checkpoint is taken, and may
    // print its next line before ckpt has let go of it.)
    assert!(first >= asked && first <= at, "restarted at line {first}: ckpt was started after line {asked}, the image was there after line {at}");
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "{lines:?}; {}", restored.stderr());
    restored.kill9();
}

/// The same program, traced by a child of its own (so that ckpt cannot trace it): ckpt
/// checkpoint does not wait for the signal forever but says why no checkpoint can begin, and
/// the program goes on untouched.
#[test]
fn ckpt_checkpoint_says_why_when_it_cannot_deliver_a_blocked_signal() {
    let wd = Workdir::new("sigblock-traced");
    let image = wd.image();
    let mut orig = Proc::preloaded(sigblock("traced", 100_000), &image, "sigblock traced");
    orig.wait_lines(10, SHORT);
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.args(["checkpoint", "--wait", &orig.pid.to_string()]);
            c
        },
        LONG,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("process {} blocks signal 12 in every thread", orig.pid);
    assert!(err.contains(&want) && err.contains("ptrace") && err.lines().count() == 1, "{err}");
    assert!(!image.exists());
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 5, SHORT);
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "{lines:?}");
    orig.kill_tree();
}

/// A parent and its child, the child blocking every signal past libckpt: the tree checkpoint
/// that `ckpt checkpoint` asks of the parent reaches the child too (ckpt delivers it the
/// parent's request with ptrace), and the restarted tree goes on from the checkpoint.
#[test]
fn a_tree_checkpoint_reaches_a_child_blocking_the_signal_past_libc() {
    let wd = Workdir::new("sigblock-tree");
    let image = wd.image();
    let mut orig = Proc::preloaded(sigblock("tree", 100_000), &image, "sigblock tree");
    orig.wait_lines(10, SHORT);
    let before = orig.lines().len();
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.args(["checkpoint", "--wait", &orig.pid.to_string()]);
            c
        },
        LONG,
    );
    assert!(out.status.success(), "ckpt checkpoint: {}; {}", String::from_utf8_lossy(&out.stderr), orig.stderr());
    orig.kill_tree();
    let at = orig.lines().len();

    let mut restored = Proc::restart(&image);
    let lines = restored.wait_lines(20, SHORT);
    let first: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    assert!(first >= before && first <= at, "restarted at line {first}: asked after line {before}, the image was there after line {at}");
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "{lines:?}; {}", restored.stderr());
    restored.kill_tree();
}

/// A multi-threaded program started with every signal blocked (its parent blocked them all,
/// past libc, before `exec`): every thread it starts still stops for a checkpoint, and the
/// restarted program goes on with every worker moving.
#[test]
fn a_threaded_program_started_with_every_signal_blocked_is_checkpointed() {
    let wd = Workdir::new("sigblock-exec-threads");
    let mut c = Command::new(prog("sigblock", &[]));
    c.arg("exec").arg(prog("threads", &["-pthread"])).arg("3");
    let tick = |l: &str| -> (u64, String) {
        let f: Vec<&str> = l.split(' ').collect();
        (f[1].parse().unwrap(), f[4].to_string())
    };
    let mut orig = Proc::preloaded(c, &wd.image(), "threads started with every signal blocked");
    let before = orig.wait_until(|l| l.last().is_some_and(|l| l.starts_with("tick ") && tick(l).1 == "moved=3"), LONG, "every worker to move");
    let before = tick(before.last().unwrap()).0;
    orig.checkpoint(&wd.image(), SHORT);
    orig.kill9();
    let mut restored = Proc::restart(&wd.image());
    let after = restored.wait_until(|l| l.len() > 12 && l.last().is_some_and(|l| tick(l).1 == "moved=3"), LONG, "every worker to move again");
    assert!(tick(&after[0]).0 > before, "{after:?}");
    restored.kill9();
}

/// `ckpt job` of a program that blocks every signal past libckpt: the batch system's stop
/// signal still takes its last checkpoint (the job delivers the request with ptrace), the job
/// ends with status 75, and the next start of the job goes on from the line after the last.
#[test]
fn ckpt_job_takes_the_last_checkpoint_of_a_program_blocking_the_signal_past_libc() {
    let wd = Workdir::new("sigblock-job");
    let (out, err) = (wd.path.join("out"), wd.path.join("err"));
    let image = wd.image();
    let start = || {
        let mut c = Command::new("sh");
        c.arg("-c").arg(r#"out=$1 err=$2; shift 2; exec "$@" >> "$out" 2>> "$err""#).arg("sh").arg(&out).arg(&err);
        c.arg(ckpt()).args(["job", "--image", image.to_str().unwrap(), "--"]).arg(prog("sigblock", &[])).args(["raw", "100000"]);
        Proc::spawn(c, "ckpt job")
    };
    let number = |l: &String| l.split(' ').next().unwrap().parse::<usize>().unwrap();
    for run in 1..=2 {
        let mut job = start();
        let seen = file_lines(&out).len();
        wait_file_lines(&out, seen + 20, LONG);
        job.signal(libc::SIGUSR1);
        let st = job.wait_exit(LONG);
        let e = std::fs::read_to_string(&err).unwrap();
        assert_eq!(st.code(), Some(75), "run {run}: {e}");
    }
    let lines = file_lines(&out);
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "{lines:?}");
    let numbers: Vec<usize> = lines.iter().map(number).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1) && numbers[0] == 0, "a line lost or printed twice: {numbers:?}");
}

/// `script -qfec COUNTER /dev/null`: script(1) blocks every signal and relays the pty it runs
/// the counter on; `kill -12` checkpoints it and its child as a tree, and the restarted tree
/// prints exactly the rest of an uninterrupted run's lines, through the pty made again.
#[test]
fn a_counter_under_script_is_checkpointed_and_continues() {
    if Command::new("script").arg("--version").output().is_err() {
        skip("a_counter_under_script_is_checkpointed_and_continues", "script(1) is not installed (util-linux's bsdutils)");
        return;
    }
    let wd = Workdir::new("sigblock-script");
    let counter = prog("counter", &[]);
    tree_checkpoint_kill_restart_matches(
        || {
            let mut c = Command::new("script");
            c.args(["-qfec", &format!("{} 300 10000", counter.display()), "/dev/null"]);
            c
        },
        20,
        &wd,
    );
}

/// A program with its own SIGUSR2 handler that blocks SIGUSR2 (through libc) gets a `kill -12`
/// only once it unblocks it: once the program has a handler of its own for the signal, its
/// masks reach the kernel as it set them. `ckpt checkpoint` meanwhile (its request merged by the
/// kernel into the pending signal, which it delivers with ptrace) takes the checkpoint, and the
/// program's signal stays pending, in the image too: the restored program gets it when it
/// unblocks it.
#[test]
fn a_program_blocking_its_own_sigusr2_gets_it_once_it_unblocks_it() {
    let wd = Workdir::new("own-usr2-blocked");
    let src = wd.path.join("blockusr2.c");
    std::fs::write(
        &src,
        "#include <signal.h>\n#include <stdio.h>\n#include <unistd.h>\n\
         static volatile sig_atomic_t got;\n\
         static void h(int s) { got += s == SIGUSR2; }\n\
         int main(int argc, char **argv) { signal(SIGUSR2, h); sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR2);\n\
         sigprocmask(SIG_BLOCK, &s, 0); int open = 0;\n\
         for (int i = 0;; i++) { if (!open && access(argv[1], F_OK) == 0) { open = 1; sigprocmask(SIG_UNBLOCK, &s, 0); }\n\
         printf(\"%d got=%d open=%d\\n\", i, (int)got, open); fflush(stdout); usleep(10000); } }\n",
    )
    .unwrap();
    let p = compile(&src, "blockusr2", &[]);
    let flag = wd.path.join("unblock");
    let got = |lines: &[String]| lines.last().and_then(|l| l.split(' ').nth(1)).unwrap_or_default().to_string();
    let mut c = Command::new(&p);
    c.arg(&flag);
    let mut orig = Proc::preloaded(c, &wd.image(), "blockusr2");
    orig.wait_lines(3, SHORT);
    orig.signal(libc::SIGUSR2);
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 5, SHORT);
    assert_eq!(got(&lines), "got=0", "the handler ran while the program blocked its signal");
    let out = Command::new(ckpt()).args(["checkpoint", &orig.pid.to_string(), "--wait"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n = orig.lines().len();
    assert_eq!(got(&orig.wait_lines(n + 3, SHORT)), "got=0");
    orig.kill9();
    let restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
    assert_eq!(got(&restored.lines()), "got=0");
    std::fs::write(&flag, "").unwrap();
    restored.wait_until(|l| l.last().is_some_and(|l| l.ends_with("got=1 open=1")), SHORT, "the signal once unblocked");
}

/// A thread that blocks every signal, stopped by ckpt-seize inside an rseq critical section,
/// goes on at the section's abort handler, and its image holds it there (restored, it would
/// otherwise go on inside a section the kernel no longer knows of).
#[test]
fn a_thread_blocking_every_signal_stopped_in_an_rseq_section_resumes_at_its_abort_handler() {
    rseq_thread_resumes_at_its_abort_handler("sigblock-rseq-thread", true, |p, image| p.checkpoint(image, LONG));
}
