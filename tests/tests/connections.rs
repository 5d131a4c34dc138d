//! TCP connections whose two ends are both in the image: between a parent and its child, within
//! one process, with a full receive window (bytes the sender has not sent yet), and Open MPI's
//! (mpirun and its ranks on one node). Each is checkpointed, killed with SIGKILL and restarted,
//! and must go on over the same connection with no byte lost or repeated.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn tcppair(mode: &str) -> Command {
    let mut c = Command::new(prog("tcppair", &[]));
    c.arg(mode);
    c
}

/// The round numbers in `tcppair`'s lines ("round N …").
fn rounds(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.strip_prefix("round ")?.split(' ').next()?.parse().ok()).collect()
}

fn assert_no_bad(lines: &[String], what: &str, stderr: &str) {
    assert!(!lines.iter().any(|l| l.starts_with("BAD")), "{what}: {lines:?}; stderr {stderr:?}");
}

/// `tcppair MODE` checkpointed (after `ready` holds), left running a few rounds (the live
/// connection must not have lost anything to the checkpoint), killed with its tree, restarted:
/// the restarted run goes on from the round after the checkpoint, round after round, for 20
/// rounds; the program itself checks every byte. Returns what the original printed.
fn goes_on_after_restart(name: &str, mode: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
    let wd = Workdir::new(name);
    let mut orig = Proc::preloaded(tcppair(mode), &wd.image(), "tcppair");
    orig.wait_until(&ready, SHORT, "the connection at work");
    let before = rounds(&orig.lines()).last().copied().unwrap_or(0);
    orig.checkpoint(&wd.image(), LONG);
    let done = rounds(&orig.lines()).last().copied().unwrap_or(0);
    orig.wait_until(|l| rounds(l).last().is_some_and(|&r| r >= done + 3), SHORT, "rounds after the checkpoint");
    assert_no_bad(&orig.lines(), "the checkpoint disturbed the live connection", &orig.stderr());
    let seen = orig.lines();
    orig.kill_tree();

    let mut restored = Proc::restart(&wd.image());
    let after = restored.wait_until(|l| rounds(l).len() >= 20 || l.iter().any(|x| x.starts_with("BAD")), LONG, "20 rounds after the restart");
    let stderr = restored.stderr();
    assert_no_bad(&after, "the restarted connection lost or repeated bytes", &stderr);
    assert!(!stderr.contains("reset"), "a connection came back reset: {stderr}");
    let r = rounds(&after);
    assert!(r[0] > before && r[0] <= done + 1, "restarted at round {} (checkpoint between rounds {before} and {done}); {after:?}", r[0]);
    assert!(r.windows(2).all(|w| w[1] == w[0] + 1), "{r:?}");
    restored.kill_tree();
    seen
}

/// A parent and its forked child ping-pong numbered messages over a loopback TCP connection
/// (the child also holds the listening socket, shared over fork, which must be made once).
#[test]
fn a_tcp_connection_between_parent_and_child_goes_on() {
    goes_on_after_restart("tcp-fork", "fork", |l| rounds(l).len() >= 5);
}

/// One process holding both ends, with two records queued each way at every moment.
#[test]
fn a_tcp_connection_within_one_process_goes_on_with_its_queued_bytes() {
    goes_on_after_restart("tcp-self", "self", |l| rounds(l).len() >= 5);
}

/// The receiver's window full: the sender holds bytes it has not sent yet (the program
/// prints how many), which must reach the receiver after the restart, in order.
#[test]
fn a_tcp_connection_with_bytes_not_yet_sent_goes_on() {
    let unsent = |l: &String| l.rsplit(' ').next().and_then(|u| u.parse::<u64>().ok()).unwrap_or(0);
    let seen = goes_on_after_restart("tcp-full", "full", |l| rounds(l).len() >= 5);
    let last = seen.iter().rev().find(|l| l.starts_with("round ")).expect("rounds");
    assert!(unsent(last) > 0, "the sender held nothing unsent, so this test proves nothing: {last}");
}

/// `tests/progs/mpiring.c` built with Open MPI's compiler wrapper into `dir`, or `None` where
/// there is none.
fn build_ring(dir: &Path) -> Option<std::path::PathBuf> {
    let out = dir.join("mpiring");
    let st = Command::new("mpicc").args(["-O1", "-g", "-o"]).arg(&out).arg(root().join("tests/progs/mpiring.c")).status().ok()?;
    st.success().then_some(out)
}

/// `mpirun -np 2 mpiring LOG`, for one node over TCP, run by whoever runs the tests (root
/// too), with the checkpoint signal 40: mpirun passes SIGUSR2 on to its ranks.
fn mpirun(ring: &Path, log: &Path, dir: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", "2"]).arg(ring).arg(log).current_dir(dir);
    for (k, v) in [
        ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
        ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
        ("OMPI_MCA_rmaps_base_oversubscribe", "1"),
        ("OMPI_MCA_btl", "self,tcp"),
        ("OMPI_MCA_btl_tcp_if_include", "lo"),
        ("OMPI_MCA_oob_tcp_if_include", "lo"),
        ("OMPI_MCA_orte_tmpdir_base", dir.to_str().unwrap()),
        ("CKPT_SIGNAL", "40"),
    ] {
        c.env(k, v);
    }
    c
}

/// Checks the ring's log: laps 0, 1, 2, … each once, with the value a lossless ring gives.
fn assert_laps_exact(laps: &[String]) {
    for (i, l) in laps.iter().enumerate() {
        assert_eq!(l, &format!("lap {i} value {}", (i as u64 + 1) * 1001), "lap {i} of {laps:?}");
    }
}

/// Open MPI 4 on one node: mpirun, its two ranks and the TCP connections between all three
/// (mpirun's to each rank, the ranks' to each other), checkpointed at one moment, killed,
/// restarted: the ring goes on with every message.
#[test]
fn an_open_mpi_ring_goes_on() {
    const TEST: &str = "an_open_mpi_ring_goes_on";
    if Command::new("mpirun").arg("--version").output().map_or(true, |o| !o.status.success()) {
        return skip(TEST, "Open MPI's mpirun is not installed (Debian's openmpi-bin and libopenmpi-dev)");
    }
    let wd = Workdir::new("tcp-mpi");
    let Some(ring) = build_ring(&wd.path) else {
        return skip(TEST, "Open MPI's mpicc is not installed or cannot build a program (Debian's libopenmpi-dev)");
    };
    let log = wd.path.join("laps");
    let orig = Proc::preloaded(mpirun(&ring, &log, &wd.path), &wd.image(), "mpirun");
    wait_file_lines(&log, 10, LONG);
    // The last checkpoint: written with the tree stopped, which then ends; the log holds every
    // lap up to that moment and no other.
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.args(["checkpoint", "--kill", "--image"]).arg(wd.image()).arg(orig.pid.to_string());
            c
        },
        LONG,
    );
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    kill_all_below(orig.pid);
    wait_dead(orig.pid);
    let at_checkpoint = file_lines(&log).len();

    let mut restored = Proc::restart(&wd.image());
    let deadline = std::time::Instant::now() + LONG;
    while file_lines(&log).len() < at_checkpoint + 20 {
        assert!(restored.try_exit().is_none(), "the restarted ring ended; stderr {:?}", restored.stderr());
        assert!(std::time::Instant::now() < deadline, "the restarted ring made no progress past lap {at_checkpoint}; stderr {:?}", restored.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!restored.stderr().contains("reset"), "a connection came back reset: {}", restored.stderr());
    restored.kill_tree();
    assert_laps_exact(&file_lines(&log));
}
