//! TCP connections whose two ends are both in the image: between a parent and its child, within
//! one process, with a full receive window (bytes the sender has not sent yet), and Open MPI's
//! (mpirun and its ranks on one node). Each is checkpointed, killed with SIGKILL and restarted,
//! and must go on over the same connection with no byte lost or repeated.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tcppair(mode: &str) -> Command {
    let mut c = Command::new(prog("tcppair", &[]));
    c.arg(mode);
    c
}

/// `cmd` as the user `nobody` (no `CAP_NET_ADMIN`): through `setpriv`, which execs it.
fn as_nobody(cmd: Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(cmd.get_program()).args(cmd.get_args());
    c
}

/// Who runs the program and its restart: the tests' user, or `nobody`.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    Us,
    Nobody,
}

fn run_as(who: Who, cmd: Command) -> Command {
    if who == Who::Nobody { as_nobody(cmd) } else { cmd }
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
fn goes_on_after_restart(name: &str, mode: &str, ready: impl Fn(&[String]) -> bool, who: Who) -> Vec<String> {
    let wd = Workdir::new(name);
    if who == Who::Nobody {
        std::fs::set_permissions(&wd.path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let mut orig = Proc::preloaded(run_as(who, tcppair(mode)), &wd.image(), "tcppair");
    orig.wait_until(&ready, SHORT, "the connection at work");
    let before = rounds(&orig.lines()).last().copied().unwrap_or(0);
    orig.checkpoint(&wd.image(), LONG);
    let done = rounds(&orig.lines()).last().copied().unwrap_or(0);
    orig.wait_until(|l| rounds(l).last().is_some_and(|&r| r >= done + 3), SHORT, "rounds after the checkpoint");
    assert_no_bad(&orig.lines(), "the checkpoint disturbed the live connection", &orig.stderr());
    assert!(!orig.stderr().contains("leads outside"), "the checkpoint took the connection for one to outside: {}", orig.stderr());
    let seen = orig.lines();
    orig.kill_tree();

    let mut restored = if who == Who::Nobody {
        let mut c = Command::new(myrestart());
        c.arg(wd.image());
        Proc::spawn(as_nobody(c), "myrestart as nobody")
    } else {
        Proc::restart(&wd.image())
    };
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
    goes_on_after_restart("tcp-fork", "fork", |l| rounds(l).len() >= 5, Who::Us);
}

/// The same without privilege (`nobody`, restarted in a user namespace of its own): the
/// connection's addresses, which the killed program's connection still holds for a while
/// (`TIME_WAIT`), are bound again all the same.
#[test]
fn a_tcp_connection_between_parent_and_child_goes_on_without_privilege() {
    if can_be_another_user("a_tcp_connection_between_parent_and_child_goes_on_without_privilege") {
        goes_on_after_restart("tcp-fork-nobody", "fork", |l| rounds(l).len() >= 5, Who::Nobody);
    }
}

/// One process holding both ends, with two records queued each way at every moment.
#[test]
fn a_tcp_connection_within_one_process_goes_on_with_its_queued_bytes() {
    goes_on_after_restart("tcp-self", "self", |l| rounds(l).len() >= 5, Who::Us);
}

/// The receiver's window full: the sender holds bytes it has not sent yet (the program
/// prints how many), which must reach the receiver after the restart, in order.
#[test]
fn a_tcp_connection_with_bytes_not_yet_sent_goes_on() {
    let unsent = |l: &String| l.rsplit(' ').next().and_then(|u| u.parse::<u64>().ok()).unwrap_or(0);
    let seen = goes_on_after_restart("tcp-full", "full", |l| rounds(l).len() >= 5, Who::Us);
    let last = seen.iter().rev().find(|l| l.starts_with("round ")).expect("rounds");
    assert!(unsent(last) > 0, "the sender held nothing unsent, so this test proves nothing: {last}");
}

/// Python, over IPv6 loopback: one process with both ends, counting over the connection and
/// checking every number and both ends' addresses (an `assert` ends it otherwise).
#[test]
fn a_python_tcp_connection_over_ipv6_goes_on() {
    const SCRIPT: &str = r#"
import socket, time
l = socket.socket(socket.AF_INET6)
l.bind(("::1", 0))
l.listen(1)
a = socket.create_connection(("::1", l.getsockname()[1]))
b, _ = l.accept()
names = (a.getsockname(), a.getpeername(), b.getsockname(), b.getpeername())
n = 0
a.sendall(b"%08d" % 0)
while True:
    got = b.recv(8, socket.MSG_WAITALL)
    if int(got) != n:
        print("BAD got", got, "wanted", n, flush=True)
        raise SystemExit(1)
    n += 1
    a.sendall(b"%08d" % n)
    if (a.getsockname(), a.getpeername(), b.getsockname(), b.getpeername()) != names:
        print("BAD addresses", flush=True)
        raise SystemExit(1)
    print("round", n, flush=True)
    time.sleep(0.02)
"#;
    let wd = Workdir::new("tcp-python6");
    let mut c = Command::new("python3");
    c.args(["-c", SCRIPT]);
    let mut orig = Proc::preloaded(c, &wd.image(), "python3");
    orig.wait_until(|l| rounds(l).len() >= 5, SHORT, "5 rounds");
    let before = rounds(&orig.lines()).last().copied().unwrap_or(0);
    orig.checkpoint(&wd.image(), LONG);
    let done = rounds(&orig.lines()).last().copied().unwrap_or(0);
    orig.kill9();
    let mut restored = Proc::restart(&wd.image());
    let after = restored.wait_until(|l| rounds(l).len() >= 20 || l.iter().any(|x| x.starts_with("BAD")), LONG, "20 rounds after the restart");
    assert_no_bad(&after, "the restarted connection", &restored.stderr());
    let r = rounds(&after);
    assert!(r[0] > before && r[0] <= done + 1 && r.windows(2).all(|w| w[1] == w[0] + 1), "{r:?} (checkpoint between {before} and {done})");
    restored.kill9();
}

/// The bytes a sender held unsent at the last checkpoint ("round N unsent U": U), from the
/// last round line.
fn unsent_at_end(lines: &[String]) -> u64 {
    let last = lines.iter().rev().find(|l| l.starts_with("round ")).expect("rounds");
    last.rsplit(' ').next().and_then(|u| u.parse().ok()).unwrap_or(0)
}

/// Without `CAP_NET_ADMIN` (repair mode refused) the bytes a sender had not sent are read by
/// draining the connection into the image and given back to it: the live program goes on
/// with every byte, and so does its restart (as `nobody`, in a user namespace of its own).
#[test]
fn without_privilege_a_connection_with_unsent_bytes_goes_on_with_every_byte() {
    const TEST: &str = "without_privilege_a_connection_with_unsent_bytes_goes_on_with_every_byte";
    if !can_be_another_user(TEST) {
        return;
    }
    // Ready once the sender holds unsent bytes (the checkpoint follows at once); a drained
    // receiver's buffer may have grown since, so later rounds may show fewer.
    goes_on_after_restart("tcp-full-nobody", "full", |l| rounds(l).len() >= 5 && unsent_at_end(l) > 0, Who::Nobody);
}

/// Across a fork, as `nobody`: the child sends, its window full, the parent reads. The tree's
/// root drains the connection between them and fills it again: the live tree goes on with
/// every byte, and so does its restart.
#[test]
fn without_privilege_a_full_connection_between_parent_and_child_goes_on_with_every_byte() {
    const TEST: &str = "without_privilege_a_full_connection_between_parent_and_child_goes_on_with_every_byte";
    if !can_be_another_user(TEST) {
        return;
    }
    let sender_unsent = |l: &[String]| l.iter().rev().find_map(|l| l.strip_prefix("sender unsent ")?.parse::<u64>().ok()).unwrap_or(0);
    goes_on_after_restart("tcp-fullfork-nobody", "fullfork", |l| rounds(l).len() >= 5 && sender_unsent(l) > 0, Who::Nobody);
}

/// The round lines of `tcppair full`, without the unsent count (which depends on timing).
fn round_numbers(lines: &[String]) -> Vec<String> {
    lines.iter().filter(|l| l.starts_with("round ") || l.starts_with("done ")).map(|l| l.split(" unsent").next().unwrap().to_string()).collect()
}

/// Checkpoints without kill, as `nobody`, while the sender holds unsent bytes: each drains the
/// connection and fills it again, and the program, going on, reads exactly what an
/// uninterrupted run reads (every word of every record checked by the program itself).
#[test]
fn checkpoints_without_kill_leave_a_full_connection_as_it_was() {
    const TEST: &str = "checkpoints_without_kill_leave_a_full_connection_as_it_was";
    if !can_be_another_user(TEST) {
        return;
    }
    let full = |n: &str| {
        let mut c = tcppair("full");
        c.arg(n);
        as_nobody(c)
    };
    let reference = reference_run(full("60"), LONG);
    let wd = Workdir::new("tcp-full-nokill");
    std::fs::set_permissions(&wd.path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut orig = Proc::preloaded(full("60"), &wd.image(), "tcppair full as nobody");
    for at in [5, 15, 25] {
        orig.wait_until(|l| rounds(l).len() >= at && unsent_at_end(l) > 0, SHORT, "rounds before a checkpoint, unsent bytes held");
        orig.checkpoint(&wd.image(), LONG);
    }
    let st = orig.wait_exit(LONG);
    let (lines, err) = (orig.lines(), orig.stderr());
    assert!(st.success(), "{st}: {lines:?}; stderr {err}");
    assert_no_bad(&lines, "a checkpoint disturbed the live connection", &err);
    assert!(!err.contains("reset"), "a checkpoint gave up the connection: {err}");
    assert_eq!(round_numbers(&lines), round_numbers(&reference), "stderr {err}");
}

/// A restored program (as `nobody`: in a user namespace of its own, where repair mode is
/// refused) checkpointed again with its sender's unsent bytes, and restarted again: it goes
/// on from that second checkpoint with every byte.
#[test]
fn a_restored_program_with_a_full_connection_is_checkpointed_and_restarted_again() {
    const TEST: &str = "a_restored_program_with_a_full_connection_is_checkpointed_and_restarted_again";
    if !can_be_another_user(TEST) {
        return;
    }
    let wd = Workdir::new("tcp-full-again");
    std::fs::set_permissions(&wd.path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut orig = Proc::preloaded(as_nobody(tcppair("full")), &wd.image(), "tcppair full as nobody");
    orig.wait_until(|l| rounds(l).len() >= 3, SHORT, "3 rounds");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let restart = || {
        let mut c = Command::new(myrestart());
        c.arg(wd.image());
        Proc::spawn(as_nobody(c), "myrestart as nobody")
    };
    let mut restored = restart();
    restored.wait_until(|l| rounds(l).len() >= 5 && unsent_at_end(l) > 0, LONG, "5 rounds after the restart, unsent bytes held");
    let pre = rounds(&restored.lines()).last().copied().unwrap_or(0);
    let before = std::fs::metadata(wd.image()).unwrap().modified().unwrap();
    send_signal(restored.program_pid() as i32, libc::SIGUSR2);
    let deadline = std::time::Instant::now() + LONG;
    while std::fs::metadata(wd.image()).unwrap().modified().unwrap() == before {
        assert!(std::time::Instant::now() < deadline, "no second image; stderr {}", restored.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_writers_gone(&wd.image(), deadline);
    let second = rounds(&restored.lines());
    let done = *second.last().unwrap();
    restored.wait_until(|l| rounds(l).last().is_some_and(|&r| r >= done + 3), SHORT, "rounds after the second checkpoint");
    let (lines, err) = (restored.lines(), restored.stderr());
    assert_no_bad(&lines, "the second checkpoint disturbed the restored connection", &err);
    assert!(!err.contains("reset") && !err.contains("CAP_NET_ADMIN"), "{err}");
    restored.kill_tree();
    let mut again = restart();
    let after = again.wait_until(|l| rounds(l).len() >= 20 || l.iter().any(|x| x.starts_with("BAD")), LONG, "20 rounds after the second restart");
    let err = again.stderr();
    assert_no_bad(&after, "the connection restarted twice lost or repeated bytes", &err);
    assert!(!err.contains("reset"), "a connection came back reset: {err}");
    let r = rounds(&after);
    assert!(r[0] > pre && r[0] <= done + 1 && r.windows(2).all(|w| w[1] == w[0] + 1), "{r:?} (second checkpoint after round {done})");
    again.kill_tree();
}

/// Another program listening on the address of one end now: the connection cannot be made
/// there again, and the restart is refused in one line naming it, nothing changed.
#[test]
fn a_restart_is_refused_by_name_when_a_connections_address_is_taken() {
    let wd = Workdir::new("tcp-taken");
    let mut orig = Proc::preloaded(tcppair("self"), &wd.image(), "tcppair");
    orig.wait_until(|l| rounds(l).len() >= 3, SHORT, "3 rounds");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let port: u16 = orig.lines()[0].strip_prefix("port ").and_then(|p| p.parse().ok()).expect("the port line");
    // The listener's port, which the accepted end of the connection has too.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free after the kill");
    let err = refused_leaving_unchanged(&wd.image(), &wd.path, "Address already in use");
    assert!(err.contains("TCP connection") && err.contains(&format!("127.0.0.1:{port}")), "{err}");
    drop(taken);
}

/// One end shut down for sending (`shutdown(SHUT_WR)`) with records still queued behind: after
/// the restart the reader gets them, then the end of the stream; the other way stays open.
#[test]
fn a_half_closed_tcp_connection_keeps_its_bytes_then_ends() {
    let wd = Workdir::new("tcp-shut");
    let mut orig = Proc::preloaded(tcppair("shut"), &wd.image(), "tcppair");
    orig.wait_until(|l| rounds(l).len() >= 3, SHORT, "3 rounds");
    orig.checkpoint(&wd.image(), LONG);
    let done = rounds(&orig.lines()).last().copied().unwrap_or(0);
    assert!(done < 15, "the checkpoint came too late to prove anything: round {done}");
    orig.kill_tree();
    let mut restored = Proc::restart(&wd.image());
    let after = restored.wait_until(|l| rounds(l).len() >= 25 || l.iter().any(|x| x.starts_with("BAD")), LONG, "25 rounds after the restart");
    assert_no_bad(&after, "the restarted connection", &restored.stderr());
    assert_eq!(after.iter().filter(|l| l.starts_with("end of stream")).count(), 1, "{after:?}");
    restored.kill_tree();
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
///
/// Each ring of this run gets ports of its own for its ranks' TCP listeners (Open MPI starts at
/// 1024 by default): the rings of tests running side by side would otherwise take the ports a
/// killed ring's restart must bind again, and that restart would rightly be refused.
fn mpirun(ring: &Path, log: &Path, dir: &Path) -> Command {
    static RINGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let port_min = 24000 + 16 * RINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut c = Command::new("mpirun");
    c.args(["-np", "2"]).arg(ring).arg(log).current_dir(dir);
    for v in ["v4", "v6"] {
        c.env(format!("OMPI_MCA_btl_tcp_port_min_{v}"), port_min.to_string()).env(format!("OMPI_MCA_btl_tcp_port_range_{v}"), "16");
    }
    for (k, v) in [
        ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
        ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
        ("OMPI_MCA_rmaps_base_oversubscribe", "1"),
        ("OMPI_MCA_btl_tcp_if_include", "lo"),
        ("OMPI_MCA_oob_tcp_if_include", "lo"),
        ("OMPI_MCA_orte_tmpdir_base", dir.to_str().unwrap()),
        // Shared memory files in the test's directory: a killed job leaves them behind.
        ("OMPI_MCA_btl_vader_backing_directory", dir.to_str().unwrap()),
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

/// Open MPI 4 on one node, its ring over the transports `btl`: mpirun, its two ranks and the
/// TCP connections between them (mpirun's to each rank; with the TCP transport, the ranks' to
/// each other), checkpointed at one moment, killed, restarted: the ring goes on with every
/// message. The log is rewritten in place from the checkpoint's offset on, so the laps the
/// killed run wrote after it are written again, the same if nothing was lost.
fn open_mpi_ring_goes_on(test: &str, btl: &str, how: Ending) {
    open_mpi_ring_goes_on_with(test, btl, how, None)
}

/// The POSIX shared memory files a tree of processes maps (`/dev/shm/NAME`), removed when the
/// test ends: a killed Open MPI job leaves its queues there.
struct ShmLeftovers(Vec<PathBuf>);

impl ShmLeftovers {
    fn note(&mut self, root: u32) {
        for pid in std::iter::once(root).chain(descendants(root)) {
            for l in std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default().lines() {
                let Some(path) = l.split_whitespace().nth(5).filter(|p| p.starts_with("/dev/shm/") && p[9..].starts_with("vader_segment.")) else { continue };
                if !self.0.iter().any(|p| p.as_os_str() == path) {
                    self.0.push(PathBuf::from(path));
                }
            }
        }
    }
}

impl Drop for ShmLeftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// [`open_mpi_ring_goes_on`], with the shared memory transport's files in `backing` instead of
/// the test's directory.
fn open_mpi_ring_goes_on_with(test: &str, btl: &str, how: Ending, backing: Option<&str>) {
    if Command::new("mpirun").arg("--version").output().map_or(true, |o| !o.status.success()) {
        return skip(test, "Open MPI's mpirun is not installed (Debian's openmpi-bin and libopenmpi-dev)");
    }
    let wd = Workdir::new(test);
    let Some(ring) = build_ring(&wd.path) else {
        return skip(test, "Open MPI's mpicc is not installed or cannot build a program (Debian's libopenmpi-dev)");
    };
    let log = wd.path.join("laps");
    let mut cmd = mpirun(&ring, &log, &wd.path);
    cmd.env("OMPI_MCA_btl", btl);
    if let Some(dir) = backing {
        cmd.env("OMPI_MCA_btl_vader_backing_directory", dir);
    }
    let mut leftovers = ShmLeftovers(Vec::new());
    let mut orig = Proc::preloaded(cmd, &wd.image(), "mpirun");
    wait_file_lines(&log, 10, LONG);
    leftovers.note(orig.pid);
    let mut c = Command::new(ckpt());
    c.args(["checkpoint", if how == Ending::LastCheckpoint { "--kill" } else { "--wait" }, "--image"]).arg(wd.image()).arg(orig.pid.to_string());
    let out = run_within(c, LONG);
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    if how == Ending::LastCheckpoint {
        // The tree ended with its image: nothing of it runs on, nothing of it is left.
        wait_dead(orig.pid);
        kill_all_below(orig.pid);
    } else {
        let at_checkpoint = file_lines(&log).len();
        wait_file_lines(&log, at_checkpoint + 3, LONG);
        orig.kill_tree();
    }
    let at_kill = file_lines(&log).len();

    let mut restored = Proc::restart(&wd.image());
    let deadline = std::time::Instant::now() + LONG;
    while file_lines(&log).len() < at_kill + 20 {
        assert!(restored.try_exit().is_none(), "the restarted ring ended; stderr {:?}", restored.stderr());
        assert!(std::time::Instant::now() < deadline, "the restarted ring made no progress past lap {at_kill}; stderr {:?}", restored.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!restored.stderr().contains("reset"), "a connection came back reset: {}", restored.stderr());
    restored.kill_tree();
    assert_laps_exact(&file_lines(&log));
}

/// How the checkpointed run ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Checkpointed, left running a few laps, then killed.
    Killed,
    /// `ckpt checkpoint --kill`: the last checkpoint, after which the tree ends at once.
    LastCheckpoint,
}

/// The ranks pass the counter over TCP too.
#[test]
fn an_open_mpi_ring_over_tcp_goes_on() {
    open_mpi_ring_goes_on("an_open_mpi_ring_over_tcp_goes_on", "self,tcp", Ending::Killed);
}

/// The ranks pass the counter through shared memory (`vader`, Open MPI's default on one node;
/// mpirun's connections to them are TCP), after `ckpt checkpoint --kill`: mpirun's own threads
/// never run after its ranks are killed.
#[test]
fn an_open_mpi_ring_in_shared_memory_goes_on_after_its_last_checkpoint() {
    open_mpi_ring_goes_on("an_open_mpi_ring_in_shared_memory_goes_on_after_its_last_checkpoint", "self,vader,tcp", Ending::LastCheckpoint);
}

/// The same ring checkpointed without `--kill` and left running a few laps before it is
/// killed: its queues are files in /dev/shm (Open MPI's default place for them) that the ranks
/// map, which the laps after the
/// checkpoint change (and mpirun may remove when its ranks die). The image keeps their bytes as
/// they were at the checkpoint, so the restarted ring goes on from there, every lap once; when
/// the restart mapped them as it found them, the ring hung or repeated laps.
#[test]
fn an_open_mpi_ring_in_shared_memory_left_running_after_its_checkpoint_goes_on() {
    let test = "an_open_mpi_ring_in_shared_memory_left_running_after_its_checkpoint_goes_on";
    open_mpi_ring_goes_on_with(test, "self,vader,tcp", Ending::Killed, Some("/dev/shm"));
}
