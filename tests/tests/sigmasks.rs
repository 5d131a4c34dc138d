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
    orig.kill9();
    let at_kill = orig.lines().len();

    let mut restored = Proc::restart(&image);
    let lines = restored.wait_lines(20, SHORT);
    let first: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    assert!(first >= at.saturating_sub(1) && first <= at_kill, "restarted at line {first}, checkpointed at {at}, killed at {at_kill}");
    assert!(lines.iter().all(|l| l.ends_with("mask=ok")), "{lines:?}; {}", restored.stderr());
    let pid = restored.program_pid();
    send_signal(pid as i32, libc::SIGTERM);
    restored.wait_until(|l| l.last().is_some_and(|l| l == "term"), SHORT, "term");
    let _ = restored.wait_exit(Duration::from_secs(10));
}
