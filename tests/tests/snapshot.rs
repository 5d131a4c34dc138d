//! How checkpoints are taken and images used: a forked writer the program never sees, zero
//! pages that take no space, and the two ways of restoring memory (mapped and eager).
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// Processes whose name (comm) is `name`, with their parent PIDs.
fn processes_named(name: &str) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] == name {
            let ppid = stat[close + 2..].split(' ').nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            found.push((pid, ppid));
        }
    }
    found
}

/// Whether process `pid` (named ckpt-writer) writes this test's image: it has the program's
/// environment, with the image path in it.
fn writer_of(pid: u32, wd: &Workdir) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/environ")).is_ok_and(|e| e.contains(&*wd.image().to_string_lossy()))
}

#[test]
fn the_writer_is_invisible_to_the_program() {
    let wd = Workdir::new("quiet");
    let p = prog("quiet", &[]);
    let mut c = Command::new(&p);
    c.arg("768");
    let orig = Proc::preloaded(c, &wd.image(), "quiet");
    orig.wait_lines(5, LONG);
    orig.signal(libc::SIGUSR2);
    // While the image is written, a process named ckpt-writer exists, and it is not the
    // program's child; nothing else carries the program's name.
    let deadline = Instant::now() + LONG;
    let mut saw_writer = false;
    while !wd.image().exists() {
        assert!(Instant::now() < deadline, "no image; stderr {:?}", orig.stderr());
        // The writer: named ckpt-writer, with the program's environment, and not its child
        // (its short-lived parent, which is, exits at once).
        for (pid, ppid) in processes_named("ckpt-writer") {
            if ppid != orig.pid && writer_of(pid, &wd) {
                saw_writer = true;
            }
        }
        // The writer is named from its start, but its short-lived parent carries the program's
        // name for the moment before it renames itself (its first act); none may keep it.
        // (Only processes of this run: they have its image path in their environment.)
        for (pid, _) in processes_named("quiet").into_iter().filter(|(pid, _)| *pid != orig.pid && writer_of(*pid, &wd)) {
            let renamed_or_gone = || std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "quiet");
            let deadline = Instant::now() + SHORT;
            while !renamed_or_gone() {
                assert!(Instant::now() < deadline, "process {pid} keeps the program's name");
                std::thread::yield_now();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(saw_writer, "never saw the ckpt-writer process");
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 20, SHORT);
    for l in &lines {
        assert!(l.ends_with("sigchld=0 waited=0 nochildren=1"), "the program saw the writer: {l}");
    }
    // No zombie is left: the writer's parent is not the program, and its short-lived parent,
    // which is, was reaped by the handler. Once the writer is gone, the program has no child.
    let deadline = Instant::now() + LONG;
    while !processes_named("ckpt-writer").iter().all(|(pid, _)| !writer_of(*pid, &wd)) {
        assert!(Instant::now() < deadline, "the writer did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", orig.pid, orig.pid)).unwrap();
    assert!(children.trim().is_empty(), "the program has children: {children}");
}

#[test]
fn a_second_signal_during_a_write_is_refused_and_the_image_is_whole() {
    let wd = Workdir::new("overlap");
    let p = prog("quiet", &[]);
    let mut c = Command::new(&p);
    c.arg("1024");
    let mut orig = Proc::preloaded(c, &wd.image(), "quiet");
    orig.wait_lines(5, LONG);
    orig.signal(libc::SIGUSR2);
    // Hold the writer still (SIGSTOP) while the second signal arrives, so that the first
    // checkpoint is certainly still being written, however fast or loaded the machine.
    let deadline = Instant::now() + LONG;
    let writer = loop {
        // The writer itself, not its short-lived parent (the program's child, which the
        // program's handler waits for).
        if let Some((pid, _)) = processes_named("ckpt-writer").into_iter().find(|&(pid, ppid)| ppid != orig.pid && writer_of(pid, &wd)) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no writer started; stderr {:?}", orig.stderr());
        std::thread::sleep(Duration::from_millis(1));
    };
    // kill(2) on the writer's PID, seen just now; it exits only after writing.
    send_signal(writer as i32, libc::SIGSTOP);
    orig.signal(libc::SIGUSR2);
    orig.wait_stderr("the previous checkpoint is still being written", LONG);
    send_signal(writer as i32, libc::SIGCONT);
    while !wd.image().exists() {
        assert!(Instant::now() < deadline, "no image");
        std::thread::sleep(Duration::from_millis(5));
    }
    orig.kill9();
    let restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
}

/// A checkpoint asked for right after another, before that one's writer has run at all (held in
/// its first stop by a tracer from birth, as a loaded machine may keep a new process waiting):
/// refused as one still being written, never said to be a writer killed (which would also have
/// started a second writer beside the first); the first image is written once its writer runs,
/// and restarts.
#[test]
fn a_checkpoint_before_the_previous_writer_has_run_is_refused_as_busy() {
    let wd = Workdir::new("unborn");
    let mut c = Command::new(prog("quiet", &[]));
    c.arg("64");
    let mut orig = Proc::preloaded(c, &wd.image(), "quiet");
    orig.wait_lines(5, LONG);
    let mut h = Command::new(prog("holdwriter", &[]));
    h.arg(orig.pid.to_string());
    let mut holder = Proc::spawn(h, "holdwriter");
    holder.wait_lines(1, SHORT);
    orig.signal(libc::SIGUSR2);
    let said = holder.wait_lines(2, LONG);
    assert!(said[1].starts_with("held "), "holdwriter said {said:?}");
    orig.signal(libc::SIGUSR2);
    // Either the refusal or the false report names "the previous checkpoint".
    let e = orig.wait_stderr("the previous checkpoint", LONG);
    assert!(e.contains("the previous checkpoint is still being written") && !e.contains("killed before it finished"), "{e}");
    assert!(!wd.image().exists(), "an image was written while its writer was held");
    // kill(2) of the tracer this test started: the kernel lets its tracees go, the writer runs.
    holder.kill9();
    let deadline = Instant::now() + LONG;
    while !wd.image().exists() {
        assert!(Instant::now() < deadline, "no image; stderr {:?}", orig.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_writers_gone(&wd.image(), deadline);
    assert!(!orig.stderr().contains("killed before it finished"), "{}", orig.stderr());
    orig.kill9();
    let restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
}

#[test]
fn synchronous_mode_still_works() {
    let wd = Workdir::new("sync");
    let p = prog("counter", &[]);
    let mk = || {
        let mut c = Command::new(&p);
        c.args(["200", "10000"]).env("CKPT_SYNC", "1");
        c
    };
    checkpoint_kill_restart_matches(mk, 40, &wd);
}

#[test]
fn zero_pages_take_no_space_and_restore_as_zeros() {
    let wd = Workdir::new("zeros");
    let p = prog("zeroheap", &[]);
    let mut c = Command::new(&p);
    c.args(["512", "512", "60"]);
    checkpointed(c, &wd, 3);
    let meta = std::fs::metadata(wd.image()).unwrap();
    assert!(meta.len() > 1 << 30, "the image does not span the heap: {} bytes", meta.len());
    let allocated = meta.blocks() * 512;
    assert!(allocated < 16 << 20, "1 GiB of zeros took {allocated} bytes of disk");
    for args in [&["--eager"][..], &[][..], &["--no-verify"][..]] {
        let mut r = Command::new(myrestart());
        r.args(args).arg(wd.image());
        let mut restored = Proc::spawn(r, "myrestart zeroheap");
        assert!(restored.wait_exit(LONG).success(), "{args:?}: {}", restored.stderr());
        assert_eq!(restored.lines().last().map(String::as_str), Some("PASS"), "{args:?}");
    }
}

#[test]
fn eager_restore_matches_too() {
    let wd = Workdir::new("eager");
    let p = prog("counter", &[]);
    let reference = reference_run({
        let mut c = Command::new(&p);
        c.args(["200", "10000"]);
        c
    }, LONG);
    let mut c = Command::new(&p);
    c.args(["200", "10000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(40, SHORT);
    let at = orig.lines().len();
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let kill = orig.lines().len();
    // The image may go away once an eagerly restored process runs.
    let mut r = Command::new(myrestart());
    r.arg("--eager").arg(wd.image());
    let mut restored = Proc::spawn(r, "myrestart --eager");
    restored.wait_lines(5, SHORT);
    std::fs::remove_file(wd.image()).unwrap();
    assert!(restored.wait_exit(LONG).success());
    assert_continues(&reference, at, kill, &restored.lines());
}

#[test]
fn compressed_images_restore_and_are_checked() {
    let wd = Workdir::new("lz4");
    let p = prog("zeroheap", &[]);
    let mut c = Command::new(&p);
    c.args(["64", "64", "60"]).env("CKPT_COMPRESS", "lz4");
    checkpointed(c, &wd, 3);
    let image = std::fs::read(wd.image()).unwrap();
    assert!(image.len() < 8 << 20, "a compressed image of mostly zeros is {} bytes", image.len());
    let mut restored = Proc::restart(&wd.image());
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("PASS"));

    // A flipped bit in the compressed data is found before anything changes.
    let mut bad = image.clone();
    let n = bad.len();
    bad[n - 100] ^= 4;
    let bad_path = wd.path.join("bad");
    std::fs::write(&bad_path, &bad).unwrap();
    // Compressed regions are read whole at restart, so even --no-verify checks them first.
    for args in [&[][..], &["--no-verify"][..]] {
        let out = Command::new(myrestart()).args(args).arg(&bad_path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn compressed_program_state_continues() {
    let wd = Workdir::new("lz4-counter");
    let p = prog("counter", &[]);
    let mk = || {
        let mut c = Command::new(&p);
        c.args(["200", "10000"]).env("CKPT_COMPRESS", "lz4");
        c
    };
    checkpoint_kill_restart_matches(mk, 40, &wd);
}

/// Memory a forked writer would not inherit as it is (`MADV_DONTFORK`, `MADV_WIPEONFORK`) is
/// copied while the program is stopped, so the image holds it.
#[test]
fn memory_a_child_does_not_inherit_is_saved() {
    let wd = Workdir::new("dontfork");
    let p = prog("dontfork", &[]);
    checkpointed(Command::new(&p), &wd, 5);
    let restored = Proc::restart(&wd.image());
    for l in restored.wait_lines(5, SHORT) {
        let v: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!((v[1], v[2]), (v[0] + 1, v[0] + 1), "lost memory: {l}");
    }
}

/// Memory marked with the system call itself, which libckpt does not see: the first
/// checkpoint's writer finds memory missing, fails (the program goes on), and from then on
/// checkpoints look for such memory; the next one holds it.
#[test]
fn memory_marked_without_libc_is_found_at_the_next_checkpoint() {
    let wd = Workdir::new("dontfork-raw");
    let mut c = Command::new(prog("dontfork", &[]));
    c.args(["1000000", "raw"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "dontfork raw");
    orig.wait_lines(3, SHORT);
    orig.signal(libc::SIGUSR2);
    orig.wait_stderr("checkpoints look for such memory from now on", LONG);
    assert!(!wd.image().exists(), "an image without the program's memory was written");
    // The failed writer ends just after saying so; a checkpoint asked for before that is
    // refused as one still being written.
    wait_writers_gone(&wd.image(), std::time::Instant::now() + LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let restored = Proc::restart(&wd.image());
    for l in restored.wait_lines(5, SHORT) {
        let v: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!((v[1], v[2]), (v[0] + 1, v[0] + 1), "lost memory: {l}");
    }
}

/// Nothing planted next to the image can redirect, expose or block a checkpoint: a symlink at
/// the old temporary name and at the names the writer may link its file under, a file someone
/// else created (mode 0644) at one of them, and a lock held on them. The image is written,
/// 0600 and ours; the planted files and the file they point at are untouched.
#[test]
#[allow(unsafe_code)] // locks a file with flock
fn the_temporary_file_cannot_be_redirected_exposed_or_blocked() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let wd = Workdir::new("tmpfile");
    let victim = wd.path.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let p = prog("counter", &[]);
    let mut c = Command::new(&p);
    c.args(["1000000", "10000"]);
    let orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(3, SHORT);
    let image = wd.image().to_string_lossy().into_owned();
    symlink(&victim, format!("{image}.tmp")).unwrap();
    // The writer is a grandchild: its PID is not known in advance, so plant the first names for
    // a range of PIDs after the program's.
    for pid in orig.pid..orig.pid + 64 {
        symlink(&victim, format!("{image}.{pid}.0.tmp")).unwrap();
        let foreign = format!("{image}.{pid}.1.tmp");
        std::fs::write(&foreign, "someone else's").unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    }
    let held = std::fs::File::open(&victim).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) }, 0);
    orig.checkpoint(&wd.image(), LONG);
    let meta = std::fs::symlink_metadata(wd.image()).unwrap();
    assert!(meta.file_type().is_file(), "the image is a regular file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), euid());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "the checkpoint wrote through a planted symlink");
    for pid in orig.pid..orig.pid + 64 {
        assert!(std::fs::symlink_metadata(format!("{image}.{pid}.0.tmp")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(format!("{image}.{pid}.1.tmp")).unwrap(), "someone else's");
    }
    let out = Command::new(ckpt()).args(["inspect"]).arg(wd.image()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Asks `orig` for a checkpoint and returns its writer, caught (and stopped: SIGSTOP) before
/// the image is in place. A writer that finishes before it is caught (a fast machine, a small
/// image) is let go, its image and whatever else it left in `wd` removed, and the checkpoint
/// asked for again: that race is the machine's, not what the tests look at. (Process deaths
/// are waited for with the shared `wait_dead`.)
fn catch_writer(orig: &Proc, wd: &Workdir) -> u32 {
    let stopped = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with(['R', 'S', 'D'])));
    for _ in 0..50 {
        orig.signal(libc::SIGUSR2);
        let deadline = Instant::now() + LONG;
        let caught = loop {
            // The writer itself, not its short-lived parent (the program's child).
            if let Some((pid, _)) = processes_named("ckpt-writer").into_iter().find(|(pid, ppid)| *ppid != orig.pid && writer_of(*pid, wd)) {
                // kill(2) of the writer just found.
                send_signal(pid as i32, libc::SIGSTOP);
                while !stopped(pid) {
                    assert!(Instant::now() < deadline, "the writer {pid} did not stop");
                    std::thread::sleep(Duration::from_millis(1));
                }
                break Some(pid);
            }
            if wd.image().exists() {
                break None;
            }
            assert!(Instant::now() < deadline, "no writer");
            std::thread::sleep(Duration::from_millis(1));
        };
        match caught {
            Some(pid) if !wd.image().exists() => return pid,
            Some(pid) => {
                // kill(2) of the writer found above, stopped by us.
                send_signal(pid as i32, libc::SIGCONT);
            }
            None => {}
        }
        // Too late: this checkpoint is done, or all but done. Once its writer is gone, start
        // afresh.
        while processes_named("ckpt-writer").into_iter().any(|(pid, _)| writer_of(pid, wd)) {
            assert!(Instant::now() < deadline, "the writer did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
        for e in std::fs::read_dir(&wd.path).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    panic!("every writer finished before it could be caught");
}

/// A writer killed right after it renamed its file over the image leaves that image, and the
/// program's next checkpoint says so (not that the image was not written). The writer is held
/// by a debugger at the return from that rename, then killed.
#[test]
fn a_writer_killed_after_its_rename_is_said_to_have_written_the_image() {
    let wd = Workdir::new("killed-after-rename");
    let mut c = Command::new(prog("quiet", &[]));
    c.arg("256");
    let orig = Proc::preloaded(c, &wd.image(), "quiet");
    orig.wait_lines(3, LONG);
    let writer = catch_writer(&orig, &wd);
    // Stops at the rename's entry, then at its return; then the writer is killed.
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-p", &writer.to_string()])
        .args(["-ex", "handle SIGSTOP nostop noprint nopass", "-ex", "catch syscall rename renameat renameat2", "-ex", "continue", "-ex", "continue", "-ex", "kill"])
        .output()
        .unwrap();
    wait_dead(writer);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("syscall ").count() >= 2 && wd.image().exists(), "the writer was not held at its rename: {text}");
    let ino = std::fs::metadata(wd.image()).unwrap().ino();
    orig.checkpoint(&wd.image(), LONG);
    orig.wait_stderr(&format!("process {writer}) was killed as it finished; its image is in place at {}", wd.image().display()), SHORT);
    assert!(!orig.stderr().contains("that image was not written"), "{}", orig.stderr());
    assert_ne!(std::fs::metadata(wd.image()).unwrap().ino(), ino, "no new image");
}

/// A writer killed mid-write leaves nothing behind next to the image, and the program hears of
/// it at its next checkpoint, which works.
#[test]
fn a_killed_writer_leaves_nothing_and_is_reported() {
    let wd = Workdir::new("killed-writer");
    let p = prog("quiet", &[]);
    let mut c = Command::new(&p);
    c.arg("768");
    let orig = Proc::preloaded(c, &wd.image(), "quiet");
    orig.wait_lines(3, LONG);
    let writer = catch_writer(&orig, &wd);
    // kill(2) of the writer found above.
    send_signal(writer as i32, libc::SIGKILL);
    wait_dead(writer);
    let left: Vec<_> = std::fs::read_dir(&wd.path).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    orig.checkpoint(&wd.image(), LONG);
    orig.wait_stderr("was killed before it finished; that image was not written", SHORT);
}

/// Whether process `pid` is blocked in a system call (not running, not between calls), as
/// `/proc/PID/syscall` shows.
fn in_syscall(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| {
        let nr = s.split(' ').next().unwrap_or("");
        nr != "running" && !nr.starts_with('-') && nr.parse::<u32>().is_ok()
    }) && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('S')))
}

/// A checkpoint is invisible to sleeps and waits: each, interrupted by a checkpoint in the
/// middle, returns what it would have (0) after its whole time, in the running program and in
/// the program restored from that checkpoint.
#[test]
fn sleeps_and_waits_go_on_through_a_checkpoint() {
    let modes = [("nanosleep", 1500), ("sleep", 2000), ("poll", 1500), ("epoll_wait", 1500), ("select", 1500), ("ppoll", 1500)];
    let wd = Workdir::new("sleeps");
    let p = prog("sleeps", &[]);
    let runs: Vec<_> = modes
        .iter()
        .map(|(m, _)| {
            let image = wd.path.join(m);
            let mut c = Command::new(&p);
            c.arg(m);
            (Proc::preloaded(c, &image, m), image)
        })
        .collect();
    for (proc, image) in &runs {
        proc.wait_lines(1, SHORT);
        let deadline = Instant::now() + SHORT;
        while !in_syscall(proc.pid) {
            assert!(Instant::now() < deadline, "never saw {} waiting", proc.pid);
            std::thread::sleep(Duration::from_millis(1));
        }
        proc.checkpoint(image, LONG);
    }
    let check = |line: &str, mode: &str, want_ms: i64, who: &str| {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], mode, "{who}: {line}");
        assert_eq!((f[1], f[2]), ("r=0", "errno=0"), "{who}: {line}");
        let ms: i64 = f[3].strip_prefix("elapsed_ms=").unwrap().parse().unwrap();
        assert!(ms >= want_ms - 5, "{who}: {mode} came back after {ms} ms of {want_ms}");
    };
    for ((mut proc, image), (mode, ms)) in runs.into_iter().zip(modes) {
        assert!(proc.wait_exit(LONG).success());
        check(&proc.lines()[1], mode, ms, "the running program");
        let mut restored = Proc::restart(&image);
        assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
        check(&restored.lines()[0], mode, ms, "the restored program");
    }
}

/// No checkpoint ends a wait with EINTR, however quickly they come: `eintrwaits`
/// (tests/progs/eintrwaits.c) has threads in epoll_wait, epoll_pwait, select, pselect, poll,
/// ppoll and sigtimedwait (some entering a new call every millisecond, so that one is always
/// just entering it as a checkpoint begins) and prints an ERROR line for any that returns
/// EINTR. Sixty checkpoints in a row, then the program restarted from the last one and
/// checkpointed twenty times more: no ERROR line, in either.
#[test]
fn rapid_checkpoints_cut_no_wait_short() {
    let wd = Workdir::new("eintrwaits");
    let image = wd.image();
    let p = prog("eintrwaits", &["-pthread"]);
    let mut orig = Proc::preloaded(Command::new(&p), &image, "eintrwaits");
    orig.wait_lines(5, SHORT);
    let no_error = |proc: &Proc, who: &str| {
        let errors: Vec<String> = proc.lines().into_iter().filter(|l| l.starts_with("ERROR")).collect();
        assert!(errors.is_empty(), "{who}: {} waits cut short, first {:?}", errors.len(), &errors[..errors.len().min(5)]);
    };
    for _ in 0..60 {
        orig.checkpoint(&image, LONG);
    }
    // The counter goes on after the last checkpoint (each waiter has waited again meanwhile).
    let seen = orig.lines().len();
    orig.wait_lines(seen + 20, LONG);
    no_error(&orig, "the running program");
    orig.kill9();
    let restored = Proc::restart(&image);
    restored.wait_lines(5, LONG);
    for _ in 0..20 {
        restored.checkpoint(&image, LONG);
    }
    let seen = restored.lines().len();
    restored.wait_lines(seen + 20, LONG);
    no_error(&restored, "the restored program");
}

/// The same waits in threads that block every signal (with a raw `rt_sigprocmask`), which a
/// checkpoint stops with ptrace and which run no handler of ckpt's: the ones entering a new
/// 1 ms call all the time are caught inside a call they made after the checkpoint began, and a
/// `poll` or `nanosleep` so caught returns `EINTR` once restored (the kernel's restart of it
/// is not in the image). Checkpointed, killed and restarted five times over: no ERROR line.
#[test]
fn waits_of_threads_stopped_with_ptrace_go_on_after_a_restart() {
    let wd = Workdir::new("eintrwaits-blocked");
    let image = wd.image();
    let mut c = Command::new(prog("eintrwaits", &["-pthread"]));
    c.arg("blocked");
    let mut p = Proc::preloaded(c, &image, "eintrwaits blocked");
    p.wait_lines(5, SHORT);
    for round in 0..5 {
        p.checkpoint(&image, LONG);
        p.kill9();
        let errors: Vec<String> = p.lines().into_iter().filter(|l| l.starts_with("ERROR")).collect();
        assert!(errors.is_empty(), "before restart {round}: {errors:?}");
        p = Proc::restart(&image);
        // Each waiting thread has been through a few of its 1 ms calls since.
        p.wait_lines(20, LONG);
        let errors: Vec<String> = p.lines().into_iter().filter(|l| l.starts_with("ERROR")).collect();
        assert!(errors.is_empty(), "after restart {round}: {errors:?}; stderr {}", p.stderr());
    }
    p.kill9();
}

/// With `CKPT_KEEP`, a name of the image set that someone else planted (here `myckpt.1`, in a
/// shared sticky directory such as /tmp) is never moved, replaced or built on, and the previous
/// image is not lost: the checkpoint fails, naming it, and the image stays as it was. Once the
/// planted file is gone, the next checkpoint keeps the previous image as `myckpt.1`.
#[test]
fn a_planted_older_image_name_keeps_the_previous_image() {
    use std::os::unix::fs::PermissionsExt;
    if !can_be_another_user("a_planted_older_image_name_keeps_the_previous_image") {
        return;
    }
    let wd = Workdir::new("planted-generation");
    std::fs::set_permissions(&wd.path, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let image = wd.image();
    let older = wd.path.join("myckpt.1");
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(prog("counter", &[])).args(["1000000", "10000"]);
    c.env("CKPT_KEEP", "2");
    let orig = Proc::preloaded(c, &image, "counter as nobody");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&image, LONG);
    let previous = std::fs::read(&image).unwrap();
    let ino = std::fs::metadata(&image).unwrap().ino();
    // Planted by root, which nobody may neither move nor replace in a sticky directory.
    std::fs::write(&older, "someone else's").unwrap();
    orig.signal(libc::SIGUSR2);
    orig.wait_stderr(&format!("{} is a file of uid 0, not one of this user's images", older.display()), LONG);
    wait_writers_gone(&image, Instant::now() + LONG);
    assert_eq!(std::fs::metadata(&image).unwrap().ino(), ino, "the previous image was replaced");
    assert!(std::fs::read(&image).unwrap() == previous, "the previous image changed");
    assert_eq!(std::fs::read_to_string(&older).unwrap(), "someone else's");
    assert!(!wd.path.join("myckpt.2").exists(), "something was moved to myckpt.2");
    std::fs::remove_file(&older).unwrap();
    orig.checkpoint(&image, LONG);
    assert_eq!(std::fs::metadata(&older).unwrap().ino(), ino, "the previous image is not kept as myckpt.1");
    assert_ne!(std::fs::metadata(&image).unwrap().ino(), ino);
    // nobody's image, inspected by root: restartable as `--trust-image` would restore it.
    let out = Command::new(ckpt()).args(["inspect", "--trust-image"]).arg(&older).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
