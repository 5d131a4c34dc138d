//! A restored process keeps its identity: its PID, its thread's TID, `/proc/self`, and the TIDs
//! glibc stored in the mutexes it holds. myrestart stays its parent, passes signals on, and
//! exits with its status. Where the namespaces this needs are refused, or with `--new-ids`,
//! restart goes on with new IDs and says what may break.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// One line of the `ids` program: (i, pid0, tid0, getpid, gettid, /proc/self, relock).
fn fields(l: &str) -> (usize, u32, u32, u32, u32, u32, i32) {
    let f: Vec<&str> = l.split(' ').collect();
    assert_eq!(f.len(), 7, "{l}");
    (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap(), f[6].parse().unwrap())
}

/// Runs `ids` preloaded, checkpoints it after a few lines and kills it; returns its PID.
fn checkpointed_ids(wd: &Workdir, ticks: &str) -> u32 {
    let mut c = Command::new(prog("ids", &[]));
    c.arg(ticks);
    let orig = checkpointed(c, wd, 3);
    orig.pid
}

#[test]
fn pid_tid_and_proc_self_are_the_same_after_restart() {
    let wd = Workdir::new("ids");
    let pid = checkpointed_ids(&wd, "40");
    let mut restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(3, SHORT);
    for l in &lines {
        let (_, pid0, tid0, now, tid, me, relock) = fields(l);
        assert_eq!((pid0, tid0), (pid, pid), "{l}");
        assert_eq!((now, tid, me), (pid, pid, pid), "getpid, gettid, /proc/self after restart: {l}");
        assert_eq!(relock, 0, "the recursive mutex no longer knows its owner: {l}");
    }
    // From outside, the program is a grandchild of myrestart, with its old PID in its namespace.
    let status = std::fs::read_to_string(format!("/proc/{}/status", restored.program_pid())).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with(&format!("\t{pid}")), "{nspid}");

    // A second checkpoint, through myrestart (it passes SIGUSR2 on), records the same PID.
    let second = wd.path.join("second");
    std::fs::rename(wd.image(), &second).unwrap();
    restored.checkpoint(&wd.image(), LONG);
    let json = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["pid"], pid);
    assert_eq!(doc["threads"][0]["tid"], pid);

    // The mutexes held across the checkpoint unlock, and myrestart exits with the program.
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("unlock ec=0 rec=0"));

    // The first image, restarted again, is the same process again.
    let mut again = Proc::restart(&second);
    let (_, _, _, now, ..) = fields(&again.wait_lines(1, SHORT)[0]);
    assert_eq!(now, pid);
    again.kill9();
}

#[test]
fn myrestart_passes_signals_on_and_ends_as_the_program_did() {
    let wd = Workdir::new("ids-signals");
    checkpointed_ids(&wd, "1000000");
    let mut restored = Proc::restart(&wd.image());
    restored.wait_lines(2, SHORT);
    restored.signal(libc::SIGTERM);
    // myrestart ends as the program did: killed by the same signal (a shell says 128 + N).
    let st = restored.wait_exit(SHORT);
    assert_eq!(st.signal(), Some(libc::SIGTERM), "{st}");

    // kill -9 of the program's PID, as `ckpt restart` says it, ends myrestart too, with the
    // program's status.
    let mut c = Command::new(ckpt());
    c.arg("restart").arg(wd.image());
    let mut restored = Proc::spawn(c, "ckpt restart");
    let err = restored.wait_stderr("the restored program is process ", SHORT);
    let said: i32 = err.split("the restored program is process ").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).expect(&err);
    assert_eq!(said as u32, restored.program_pid());
    restored.wait_lines(2, SHORT);
    // kill(2) on the restored program's PID in this namespace.
    send_signal(said, libc::SIGKILL);
    let st = restored.wait_exit(SHORT);
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
}

/// Checks a restart that had to use new IDs: the program runs on as myrestart's own process,
/// and the mutexes that recorded its old TID no longer recognise it (what the warning means).
fn check_new_ids(mut restored: Proc, pid: u32) {
    let lines = restored.wait_lines(3, SHORT);
    for l in &lines {
        let (_, pid0, _, now, tid, me, relock) = fields(l);
        assert_eq!(pid0, pid);
        assert_eq!((now, tid, me), (restored.pid, restored.pid, restored.pid), "{l}");
        assert_ne!(relock, 0, "{l}");
    }
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("unlock ec=1 rec=1"), "EPERM: not the owner");
}

#[test]
fn new_ids_on_request() {
    let wd = Workdir::new("ids-new");
    let pid = checkpointed_ids(&wd, "20");
    let mut c = Command::new(myrestart());
    c.arg("--new-ids").arg(wd.image());
    let restored = Proc::spawn(c, "myrestart --new-ids");
    check_new_ids(restored, pid);
}

#[test]
fn new_ids_with_a_warning_where_user_namespaces_are_refused() {
    let wd = Workdir::new("ids-refused");
    let pid = checkpointed_ids(&wd, "20");
    if !Command::new("unshare").args(["-Ur", "true"]).status().is_ok_and(|s| s.success()) {
        skip("new_ids_with_a_warning_where_user_namespaces_are_refused", "no user namespaces here at all");
        return;
    }
    // Inside a user namespace whose limit on further user namespaces is 0, and without
    // CAP_SYS_ADMIN (with which a PID namespace alone would do).
    let mut c = Command::new("unshare");
    c.args(["-Ur", "sh", "-c", "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set -sys_admin \"$0\" \"$1\""])
        .arg(myrestart())
        .arg(wd.image());
    let restored = Proc::spawn(c, "myrestart without user namespaces");
    let err = restored.wait_stderr("restoring with new IDs", SHORT);
    assert!(
        err.contains(&format!("myrestart: cannot create user and PID namespaces: No space left on device: restoring with new IDs (PID {} instead of {pid})", restored.pid)),
        "{err}"
    );
    check_new_ids(restored, pid);
}

/// An ordinary user (here `nobody`) gets the same: myrestart makes a user namespace of its own
/// for the PID namespace, with the user's own IDs mapped.
#[test]
fn an_unprivileged_user_keeps_the_pid_too() {
    let wd = Workdir::new("ids-nobody");
    let as_nobody = |c: &mut Command| {
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    };
    std::fs::set_permissions(&wd.path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut c = Command::new("setpriv");
    as_nobody(&mut c);
    c.arg(prog("ids", &[])).arg("30");
    let orig = checkpointed(c, &wd, 3);
    let pid = orig.pid; // setpriv execs the program: same process
    let mut c = Command::new("setpriv");
    as_nobody(&mut c);
    c.arg(myrestart()).arg(wd.image());
    let mut restored = Proc::spawn(c, "myrestart as nobody");
    for l in restored.wait_lines(3, SHORT) {
        let (_, pid0, _, now, tid, me, relock) = fields(&l);
        assert_eq!((pid0, now, tid, me, relock), (pid, pid, pid, pid, 0), "{l}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", restored.program_pid())).unwrap();
    assert!(status.contains("Uid:\t65534\t65534"), "the restored program is not nobody's");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("unlock ec=0 rec=0"));
}
