//! File locks across a restart: `flock`, POSIX (`F_SETLK`) and OFD (`F_OFD_SETLK`) locks held at
//! the checkpoint are held again by the restored program, another process cannot take them,
//! and a restart is refused while another process holds a conflicting lock.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::Path;
use std::process::Command;

/// `tests/progs/locks.c` in `dir`, or its tree (a parent and a child each with its own lock).
fn locks(dir: &Path, tree: bool) -> Command {
    let mut c = Command::new(prog("locks", &[]));
    c.arg(dir);
    if tree {
        c.arg("tree");
    }
    c
}

/// Whether another process (python3) takes lock `kind` (`flock`, `posix` or `ofd`) on `file`
/// at once: a write lock if `write`, else a read one, on `len` bytes from `start` (0: to the end).
fn outside_gets(kind: &str, file: &Path, write: bool, start: u64, len: u64) -> bool {
    let script = "import fcntl, os, struct, sys\n\
        kind, path, write, start, ln = sys.argv[1], sys.argv[2], sys.argv[3] == 'w', int(sys.argv[4]), int(sys.argv[5])\n\
        fd = os.open(path, os.O_RDWR)\n\
        try:\n\
        \x20   if kind == 'flock':\n\
        \x20       fcntl.flock(fd, (fcntl.LOCK_EX if write else fcntl.LOCK_SH) | fcntl.LOCK_NB)\n\
        \x20   else:\n\
        \x20       cmd = fcntl.F_SETLK if kind == 'posix' else 37  # F_OFD_SETLK\n\
        \x20       fcntl.fcntl(fd, cmd, struct.pack('hhqqi', fcntl.F_WRLCK if write else fcntl.F_RDLCK, 0, start, ln, 0))\n\
        except OSError:\n\
        \x20   sys.exit(1)\n";
    let rw = if write { "w" } else { "r" };
    let out = run_within(
        {
            let mut c = Command::new("python3");
            c.args(["-c", script, kind]).arg(file).args([rw, &start.to_string(), &len.to_string()]);
            c
        },
        SHORT,
    );
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("the lock probe failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// `flock -n FILE true`, the shell's way: whether it got the lock at once.
fn flock_n(file: &Path) -> bool {
    let out = run_within(
        {
            let mut c = Command::new("flock");
            c.arg("-n").arg(file).arg("true");
            c
        },
        SHORT,
    );
    out.status.success()
}

/// Every lock `locks.c` takes (the parent's), as another process finds it: held.
fn assert_parent_locks_held(dir: &Path) {
    assert!(!flock_n(&dir.join("flock.lck")), "flock -n took flock.lck: its flock lock is not held");
    assert!(!outside_gets("flock", &dir.join("flock.lck"), false, 0, 0), "a shared flock on flock.lck was granted");
    let posix = dir.join("posix.lck");
    assert!(!outside_gets("posix", &posix, true, 150, 10), "F_SETLK took bytes 150-159 of posix.lck");
    assert!(!outside_gets("ofd", &posix, false, 199, 1), "F_OFD_SETLK took a read lock on byte 199 of posix.lck");
    assert!(outside_gets("posix", &posix, true, 0, 100), "bytes 0-99 of posix.lck are not the program's, but were locked");
    assert!(outside_gets("posix", &posix, true, 200, 0), "bytes from 200 of posix.lck are not the program's, but were locked");
    let ofd = dir.join("ofd.lck");
    assert!(!outside_gets("ofd", &ofd, true, 0, 0), "F_OFD_SETLK took a write lock on ofd.lck");
    assert!(!outside_gets("posix", &ofd, true, 1000, 1), "F_SETLK took a write lock on byte 1000 of ofd.lck");
    assert!(outside_gets("ofd", &ofd, false, 0, 0), "the program's OFD lock is a read lock: another read lock must be granted");
    assert!(outside_gets("posix", &ofd, true, 0, 10), "bytes 0-9 of ofd.lck are not the program's, but were locked");
}

/// Nothing of `locks.c`'s in `dir` is locked (its processes are gone).
fn assert_nothing_locked(dir: &Path) {
    assert!(flock_n(&dir.join("flock.lck")), "flock.lck is still locked");
    for f in ["posix.lck", "ofd.lck"] {
        assert!(outside_gets("posix", &dir.join(f), true, 0, 0), "{f} is still locked");
    }
}

/// The numbers a process printed (lines `TAG N`), the highest.
fn highest(lines: &[String], tag: &str) -> Option<u64> {
    lines.iter().filter_map(|l| l.strip_prefix(tag)?.parse().ok()).max()
}

/// Waits until the restored program has printed a number past `past` (with `tag`).
fn wait_counting(p: &Proc, tag: &str, past: u64) {
    p.wait_until(|l| highest(l, tag).is_some_and(|n| n > past + 2), LONG, &format!("{tag}counting past {past}"));
}

/// One process holding a flock lock, a POSIX write lock on a byte range and an OFD read lock:
/// after SIGKILL and a restart it holds each again (another process can take none of them, nor
/// anything that conflicts, and can take what does not), and it goes on counting.
#[test]
fn flock_posix_and_ofd_locks_are_held_again_after_a_restart() {
    let wd = Workdir::new("locks-single");
    let orig = checkpointed(locks(&wd.path, false), &wd, 5);
    let at_kill = highest(&orig.lines(), "").unwrap();
    assert_nothing_locked(&wd.path);
    // `ckpt inspect` lists them with their descriptors.
    let out = run_within(
        {
            let mut c = Command::new(ckpt());
            c.arg("inspect").arg(wd.image());
            c
        },
        LONG,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for l in ["holds a flock write lock", "holds a fcntl write lock on bytes 100-199", "holds a OFD read lock on bytes 10 to the end"] {
        assert!(text.contains(l), "no {l:?} in: {text}");
    }
    let restored = Proc::restart(&wd.image());
    wait_counting(&restored, "", at_kill);
    assert_parent_locks_held(&wd.path);
    // And it keeps them: still held while it goes on.
    wait_counting(&restored, "", highest(&restored.lines(), "").unwrap());
    assert_parent_locks_held(&wd.path);
    assert!(!restored.stderr().contains("not restored"), "{}", restored.stderr());
    // Checkpointed again (in the PID namespace of its restart), killed, restarted: its locks
    // are in the new image, and held again.
    let mut restored = restored;
    restored.checkpoint(&wd.image(), LONG);
    let at_kill = highest(&restored.lines(), "").unwrap();
    restored.kill9();
    let deadline = std::time::Instant::now() + LONG;
    while !flock_n(&wd.path.join("flock.lck")) {
        assert!(std::time::Instant::now() < deadline, "the killed restart still holds flock.lck");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_nothing_locked(&wd.path);
    let again = Proc::restart(&wd.image());
    wait_counting(&again, "", at_kill);
    assert_parent_locks_held(&wd.path);
}

/// A process outside holds a lock that conflicts with one the image holds: the restart is
/// refused (exit 2, one line naming the file and the lock, the program not started, the
/// directory as it was); once that process lets go, the same image restarts.
#[test]
fn a_restart_is_refused_while_another_process_holds_a_conflicting_lock() {
    let wd = Workdir::new("locks-refused");
    let orig = checkpointed(locks(&wd.path, false), &wd, 5);
    let at_kill = highest(&orig.lines(), "").unwrap();
    let holder = |kind: &str, file: &str, start: u64, len: u64| {
        let script = "import fcntl, os, struct, sys, time\n\
            fd = os.open(sys.argv[2], os.O_RDWR)\n\
            if sys.argv[1] == 'flock':\n\
            \x20   fcntl.flock(fd, fcntl.LOCK_SH)\n\
            else:\n\
            \x20   fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('hhqqi', fcntl.F_RDLCK, 0, int(sys.argv[3]), int(sys.argv[4]), 0))\n\
            print('held', flush=True)\n\
            time.sleep(600)\n";
        let mut c = Command::new("python3");
        c.args(["-c", script, kind]).arg(wd.path.join(file)).args([start.to_string(), len.to_string()]);
        let p = Proc::spawn(c, "a process holding a lock");
        p.wait_lines(1, SHORT);
        p
    };
    let mut h = holder("flock", "flock.lck", 0, 0);
    let line = refused_leaving_unchanged(&wd.image(), &wd.path, "another process holds a lock on it now");
    assert!(line.contains("flock.lck") && line.contains("flock write lock"), "{line}");
    h.kill9();
    // Bytes 150-150 of posix.lck: inside the program's range.
    let mut h = holder("posix", "posix.lck", 150, 1);
    let line = refused_leaving_unchanged(&wd.image(), &wd.path, "another process holds a lock on it now");
    assert!(line.contains("posix.lck") && line.contains("fcntl write lock on bytes 100-199"), "{line}");
    h.kill9();
    // A read lock beside the program's range conflicts with nothing.
    let mut beside = holder("posix", "posix.lck", 200, 50);
    let restored = Proc::restart(&wd.image());
    wait_counting(&restored, "", at_kill);
    beside.kill9();
    assert_parent_locks_held(&wd.path);
}

/// A parent and its child, each holding its own POSIX lock (and both the flock locks of the
/// descriptions of a file and of a directory they share since `fork`, one lock each): after a tree checkpoint, SIGKILL of both and
/// a restart, each holds its own again and both go on.
#[test]
fn a_parent_and_child_each_hold_their_locks_again() {
    let wd = Workdir::new("locks-tree");
    let mut orig = Proc::preloaded(locks(&wd.path, true), &wd.image(), "locks tree");
    orig.wait_until(|l| highest(l, "c ").is_some_and(|n| n >= 3) && highest(l, "p ").is_some_and(|n| n >= 3), LONG, "both counting");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let lines = orig.lines();
    let (p_at, c_at) = (highest(&lines, "p ").unwrap(), highest(&lines, "c ").unwrap());
    assert_nothing_locked(&wd.path);
    assert!(flock_n(&wd.path), "the directory is still locked");
    assert!(outside_gets("posix", &wd.path.join("child.lck"), true, 0, 0), "child.lck is still locked");
    // While another process holds a read lock on a byte of the child's file, the whole tree is
    // refused, naming it; nothing is left locked.
    {
        let script = "import fcntl, os, sys, time\n\
            fd = os.open(sys.argv[1], os.O_RDWR)\n\
            fcntl.lockf(fd, fcntl.LOCK_SH, 1, 3)\n\
            print('held', flush=True)\n\
            time.sleep(600)\n";
        let mut c = Command::new("python3");
        c.args(["-c", script]).arg(wd.path.join("child.lck"));
        let mut holder = Proc::spawn(c, "a process holding a lock");
        holder.wait_lines(1, SHORT);
        let mut r = Command::new(myrestart());
        r.arg(wd.image());
        let out = run_within(r, LONG);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("child.lck): another process holds a lock on it now that conflicts with the program's fcntl write lock on the whole file"), "{err}");
        holder.kill9();
        assert_nothing_locked(&wd.path);
    }
    let restored = Proc::restart(&wd.image());
    wait_counting(&restored, "p ", p_at);
    wait_counting(&restored, "c ", c_at);
    assert_parent_locks_held(&wd.path);
    assert!(!flock_n(&wd.path), "flock -n took the directory: the lock its description holds is not held");
    assert!(!outside_gets("posix", &wd.path.join("child.lck"), false, 5, 5), "the child's lock on child.lck is not held");
    // Whose is it: the child's. Killed, the child lets go of it; the parent's stay.
    let pid = restored.program_pid();
    let child: u32 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    send_signal(child as i32, libc::SIGKILL);
    let deadline = std::time::Instant::now() + SHORT;
    while !outside_gets("posix", &wd.path.join("child.lck"), true, 0, 0) {
        assert!(std::time::Instant::now() < deadline, "child.lck still locked after its holder was killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!outside_gets("posix", &wd.path.join("posix.lck"), true, 150, 10), "the parent's lock went with its child");
}

/// The shell's idiom: `exec 9>FILE; flock 9; exec PROGRAM`: the lock is taken by `flock`, a
/// process gone by the checkpoint, through the description the program has. The restored
/// program holds it again.
#[test]
fn a_flock_lock_whose_taker_has_exited_is_held_again() {
    let wd = Workdir::new("locks-idiom");
    let file = wd.path.join("idiom.lck");
    let mut c = Command::new("sh");
    c.arg("-c").arg("exec 9>\"$1\" && flock -n 9 && exec \"$2\" 100000 20000").arg("sh").arg(&file).arg(prog("counter", &[]));
    let orig = checkpointed(c, &wd, 5);
    let at_kill: u64 = orig.lines().last().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(flock_n(&file), "the lock outlived the program");
    let restored = Proc::restart(&wd.image());
    restored.wait_until(|l| l.iter().any(|l| l.split(' ').next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > at_kill + 2)), LONG, "counting on");
    assert!(!flock_n(&file), "flock -n took {}: the restored program does not hold its lock", file.display());
}

/// What cannot be taken again is named, at the checkpoint and at the restart, and the restart
/// goes on without it: a lease, and a lock on a deleted file (the image stores it: it comes back
/// as a new file no one else can have).
#[test]
fn a_lease_and_a_lock_on_a_deleted_file_are_named() {
    let wd = Workdir::new("locks-named");
    let script = "import fcntl, os, sys, time\n\
        d = sys.argv[1]\n\
        open(d + '/leased', 'w').close()\n\
        lease = os.open(d + '/leased', os.O_RDONLY)\n\
        fcntl.fcntl(lease, fcntl.F_SETLEASE, fcntl.F_RDLCK)\n\
        gone = os.open(d + '/gone', os.O_RDWR | os.O_CREAT)\n\
        fcntl.flock(gone, fcntl.LOCK_EX)\n\
        os.unlink(d + '/gone')\n\
        i = 0\n\
        while True:\n\
        \x20   print(i, flush=True)\n\
        \x20   i += 1\n\
        \x20   time.sleep(0.02)\n";
    let mut c = Command::new("python3");
    c.args(["-c", script]).arg(&wd.path);
    let mut orig = Proc::preloaded(c, &wd.image(), "python3 with a lease");
    orig.wait_lines(5, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let said = orig.stderr();
    assert!(said.contains("leased): its lease (read) is not restored (ckpt cannot take such a lock again)"), "{said}");
    assert!(said.contains("gone (deleted)): its flock write lock is not restored (the image stores the file rather than naming it)"), "{said}");
    let at_kill: u64 = orig.lines().last().unwrap().parse().unwrap();
    let restored = Proc::restart(&wd.image());
    restored.wait_until(|l| l.iter().any(|l| l.parse::<u64>().is_ok_and(|n| n > at_kill + 2)), LONG, "counting on");
    let said = restored.stderr();
    assert!(said.contains("leased): its lease (read) is not restored"), "{said}");
    assert!(said.contains("gone (deleted)): its flock write lock is not restored"), "{said}");
}

/// A lock on the program's log, a file that is gone at the restart: the program writes to a new
/// file there, which it does not hold a lock on; the restart says so.
#[test]
fn a_lock_on_a_log_that_is_gone_is_named() {
    let wd = Workdir::new("locks-log");
    let log = wd.path.join("out.log");
    let mut c = Command::new("sh");
    c.arg("-c").arg("exec >\"$1\" && flock -n 1 && exec \"$2\" 100000 20000").arg("sh").arg(&log).arg(prog("counter", &[]));
    let mut orig = Proc::preloaded(c, &wd.image(), "counter with a locked log");
    wait_file_lines(&log, 5, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert!(flock_n(&log), "the lock outlived the program");
    std::fs::remove_file(&log).unwrap();
    let restored = Proc::restart(&wd.image());
    let said = restored.wait_stderr("its flock write lock is not restored (the file is gone, and the program gets a new one)", LONG);
    assert!(said.contains("out.log"), "{said}");
    wait_file_lines(&log, 3, LONG);
}
