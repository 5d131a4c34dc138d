//! The `ckpt` command on real programs: run, checkpoint, restart (also stopped, under gdb),
//! inspect, periodic checkpoints with generations, and its refusals.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ckpt_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(ckpt());
    c.args(args);
    c
}

#[test]
fn run_checkpoint_wait_kill_and_restart() {
    let wd = Workdir::new("cli-cycle");
    let p = prog("counter", &[]);
    let img = wd.image();
    let reference = reference_run({
        let mut c = Command::new(&p);
        c.args(["300", "10000"]);
        c
    }, LONG);
    let mut c = ckpt_cmd(&["run", "--image", img.to_str().unwrap(), "--"]);
    c.arg(&p).args(["300", "10000"]);
    let orig = Proc::spawn(c, "ckpt run counter");
    orig.wait_lines(40, SHORT);
    let at = orig.lines().len();
    let out = ckpt_cmd(&["checkpoint", &orig.pid.to_string(), "--wait", "--kill"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "checkpoint --wait --kill: {said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.starts_with(&format!("{} ", img.display())) && said.contains(" bytes ("), "{said}");
    // --kill: the process dies (it stays a zombie until this test reaps it).
    let gone = || std::fs::read_to_string(format!("/proc/{}/stat", orig.pid)).map_or(true, |s| s.contains(") Z"));
    let deadline = Instant::now() + SHORT;
    while !gone() {
        assert!(Instant::now() < deadline, "--kill did not kill");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut orig = orig;
    orig.kill9();
    let kill = orig.lines().len();

    let mut restored = Proc::spawn(ckpt_cmd(&["restart", img.to_str().unwrap()]), "ckpt restart");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_continues(&reference, at, kill, &restored.lines());
}

/// A process the program forked (a subshell here; tmux's server, which the first `tmux`
/// command forks, is another) writes its own image, `IMAGE-PID`: `ckpt checkpoint --wait` of it
/// names that image (it waited for IMAGE, which the process never writes, and failed).
#[test]
fn checkpoint_wait_of_a_forked_process_names_its_own_image() {
    let wd = Workdir::new("cli-forked");
    let img = wd.image();
    let c = ckpt_cmd(&["run", "--image", img.to_str().unwrap(), "--", "bash", "-c", "( while :; do echo tick; sleep 0.05; done ) & echo $!; wait"]);
    let mut root = Proc::spawn(c, "bash with a forked subshell");
    let lines = root.wait_until(|l| l.iter().filter(|l| *l == "tick").count() >= 2 && l.iter().any(|l| l.parse::<u32>().is_ok()), SHORT, "the subshell's PID and ticks");
    let sub: u32 = lines.iter().find_map(|l| l.parse().ok()).unwrap();
    let out = ckpt_cmd(&["checkpoint", &sub.to_string(), "--wait"]).output().unwrap();
    let (said, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "checkpoint --wait of the subshell: {said} {err}");
    let own = format!("{}-{sub}", img.display());
    assert!(said.starts_with(&format!("{own} ")) && said.contains(" bytes ("), "{said}");
    assert!(std::path::Path::new(&own).exists() && !img.exists());
    root.kill_tree();
}

#[test]
fn restart_stopped_lets_gdb_attach_then_continues() {
    let wd = Workdir::new("cli-stopped");
    let p = prog("counter", &["-g"]);
    let img = wd.image();
    let mut c = ckpt_cmd(&["run", "--image", img.to_str().unwrap(), "--"]);
    c.arg(&p).args(["100000", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run counter");
    orig.wait_lines(10, SHORT);
    orig.checkpoint(&img, LONG);
    orig.kill9();

    let restored = Proc::spawn(ckpt_cmd(&["restart", "--stopped", img.to_str().unwrap()]), "ckpt restart --stopped");
    let err = restored.wait_stderr("will stop (SIGSTOP)", SHORT);
    // The PID to attach to, as myrestart says it: the program's, in this PID namespace.
    let said: u32 = err.split("ckpt: process ").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).expect(&err);
    let pid = restored.program_pid();
    assert_eq!(said, pid, "{err}");
    let deadline = Instant::now() + SHORT;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        if status.contains("State:\tT") {
            break;
        }
        assert!(Instant::now() < deadline, "the restored process did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", "bt", "-ex", "detach"]).output().unwrap();
    let bt = String::from_utf8_lossy(&gdb.stdout);
    assert!(bt.contains("<signal handler called>") && bt.contains("in main"), "gdb -p bt:\n{bt}\n{}", String::from_utf8_lossy(&gdb.stderr));
    // Stopped all along (and still): nothing printed, though gdb took its time.
    assert!(std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap().contains("State:\tT"), "gdb let the process run");
    assert!(restored.stdout_text().is_empty(), "the stopped process printed");
    // kill(2) with the PID myrestart named.
    send_signal(pid as i32, libc::SIGCONT);
    let lines = restored.wait_lines(5, SHORT);
    let first: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    assert!(first >= 10, "resumed from line {first}");
}

#[test]
fn inspect_shows_a_known_image_as_table_and_json() {
    let wd = Workdir::new("cli-inspect");
    let p = prog("files", &[]);
    let input = wd.path.join("in.txt");
    std::fs::write(&input, "a\nb\nc\nd\ne\n".repeat(400)).unwrap();
    let log = wd.path.join("log.txt");
    let mut c = Command::new(&p);
    c.arg(&input).arg(&log).arg("20000");
    let mut orig = Proc::preloaded(c, &wd.image(), "files");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let img = wd.image();

    let table = ckpt_cmd(&["inspect", img.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    for want in ["checksums    verified", "program      files", &format!("thread       {} files", orig.pid), &format!("pid {}", orig.pid), "registers    rip 0x", "[stack]", "[heap]", &log.display().to_string(), "(not restored)"] {
        assert!(text.contains(want), "inspect table lacks {want:?}:\n{text}");
    }

    let json = ckpt_cmd(&["inspect", "--json", img.to_str().unwrap()]).output().unwrap();
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("inspect --json prints JSON");
    assert_eq!(v["pid"], orig.pid);
    assert_eq!(v["threads"][0]["tid"], orig.pid, "the one thread is the main thread");
    assert_eq!(v["threads"][0]["name"], "files");
    assert_eq!(v["checksums_ok"], true);
    assert_eq!(v["command_line"][1], input.to_str().unwrap());
    assert!(v["regions"].as_array().unwrap().iter().any(|r| r["kind"] == "stack"));
    let fds = v["descriptors"].as_array().unwrap();
    assert!(fds.iter().any(|f| f["path"] == log.to_str().unwrap() && f["kind"] == "file"));
    assert!(fds.iter().any(|f| f["restored"] == false), "the netlink socket is listed as not restored");
    assert!(v["registers"]["rip"].as_str().unwrap().starts_with("0x"));

    // A damaged image is reported, with a failing status.
    let mut bytes = std::fs::read(&img).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    let bad = wd.path.join("bad");
    std::fs::write(&bad, bytes).unwrap();
    let out = ckpt_cmd(&["inspect", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH"));
}

#[test]
fn periodic_checkpoints_keep_generations_and_go_on_after_restart() {
    let wd = Workdir::new("cli-interval");
    let p = prog("counter", &[]);
    let img = wd.image();
    let gen = |n: u32| wd.path.join(format!("myckpt.{n}"));
    let mut c = ckpt_cmd(&["run", "--interval", "1", "--keep", "2", "--image", img.to_str().unwrap(), "--"]);
    c.arg(&p).args(["1000000", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run --interval 1");
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + LONG;
        while !cond() {
            assert!(Instant::now() < deadline, "no {what}; stderr {}", orig.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("third generation", &|| gen(2).exists());
    // One more checkpoint after that, which must drop the oldest rather than keep a fourth.
    let third = std::fs::metadata(&img).unwrap().modified().unwrap();
    wait_for("fourth checkpoint", &|| std::fs::metadata(&img).is_ok_and(|m| m.modified().unwrap() != third));
    wait_for("the writer to finish", &|| !wd.path.join("myckpt.tmp").exists());
    orig.kill9();
    assert!(img.exists() && gen(1).exists() && gen(2).exists() && !gen(3).exists(), "generations: {:?}", std::fs::read_dir(&wd.path).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>());
    let first = |path: &std::path::Path| -> usize {
        let mut r = Proc::restart(path);
        let l = r.wait_lines(1, SHORT);
        r.kill9();
        l[0].split(' ').next().unwrap().parse().unwrap()
    };
    let (new, older, oldest) = (first(&img), first(&gen(1)), first(&gen(2)));
    assert!(new > older && older > oldest, "generations out of order: {new} {older} {oldest}");

    // The restored process goes on checkpointing every second.
    let before = std::fs::metadata(&img).unwrap().modified().unwrap();
    let mut r = Proc::restart(&img);
    r.wait_lines(1, SHORT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&img).unwrap().modified().unwrap() == before {
        assert!(Instant::now() < deadline, "no periodic checkpoint after restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    r.kill9();
}

/// `--interval` reaches the program through the programs that become it by `exec` (`env`, a
/// script's `#!/usr/bin/env` line and its shell), which drop nothing they do not know; the
/// children a program forks do not start timers of their own (they are in the tree's image
/// instead; a child's own image would be `IMAGE-PID`).
#[test]
fn interval_reaches_the_program_through_exec_wrappers_but_not_its_children() {
    use std::os::unix::fs::PermissionsExt;
    let wd = Workdir::new("cli-interval-wrappers");
    let p = prog("counter", &[]);
    let script = wd.path.join("run-counter");
    std::fs::write(&script, format!("#!/usr/bin/env sh\nexec '{}' \"$@\"\n", p.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let forks = format!("'{}' 1000000 10000; echo the end", p.display());
    let runs: [(&str, Vec<&str>); 3] = [
        ("env", vec!["env", "CKPT_TEST=1", p.to_str().unwrap(), "1000000", "10000"]),
        ("shebang", vec![script.to_str().unwrap(), "1000000", "10000"]),
        ("tree", vec!["sh", "-c", &forks]),
    ];
    for (name, command) in runs {
        let img = wd.path.join(format!("img-{name}"));
        let mut c = ckpt_cmd(&["run", "--interval", "1", "--image", img.to_str().unwrap(), "--"]);
        c.args(&command);
        let mut orig = Proc::spawn(c, name);
        orig.wait_lines(1, SHORT);
        let deadline = Instant::now() + LONG;
        while !img.exists() {
            assert!(Instant::now() < deadline, "{name}: no periodic image; stderr {}", orig.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        let first = std::fs::metadata(&img).unwrap().modified().unwrap();
        while std::fs::metadata(&img).unwrap().modified().unwrap() == first {
            assert!(Instant::now() < deadline, "{name}: no second periodic image; stderr {}", orig.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_writers_gone(&img, deadline);
        orig.kill_tree();
        let own: Vec<_> = std::fs::read_dir(&wd.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with(&format!("img-{name}-")))
            .collect();
        assert!(own.is_empty(), "{name}: a child took periodic checkpoints of its own: {own:?}");
        assert!(!orig.stderr().contains("checkpoint failed"), "{name}: {}", orig.stderr());
    }
}

/// `ckpt run` refuses a static program; `ckpt checkpoint` of a process without libckpt sends
/// it no signal (which would kill it) but attaches to it (tests/tests/attach.rs has the rest).
#[test]
fn refuses_static_programs_and_attaches_to_processes_without_the_library() {
    let wd = Workdir::new("cli-refuse");
    let src = wd.path.join("static.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let exe = wd.path.join("static");
    assert!(Command::new("gcc").args(["-static", "-o"]).arg(&exe).arg(&src).status().unwrap().success());
    let out = ckpt_cmd(&["run", exe.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("statically linked"), "{}", String::from_utf8_lossy(&out.stderr));

    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let image = wd.path.join("sleeper");
    let out = ckpt_cmd(&["checkpoint", &sleeper.id().to_string(), "--wait", "--image", image.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(image.exists());
    assert!(sleeper.try_wait().unwrap().is_none(), "the process was signalled");
    sleeper.kill().unwrap();
    let _ = sleeper.wait();

    // Exit status passes through, and every subcommand has --help.
    assert_eq!(ckpt_cmd(&["run", "sh", "-c", "exit 7"]).status().unwrap().code(), Some(7));
    for sub in ["run", "checkpoint", "restart", "inspect", "copy", "job"] {
        assert!(ckpt_cmd(&[sub, "--help"]).output().unwrap().status.success(), "{sub} --help");
    }
    assert!(String::from_utf8_lossy(&ckpt_cmd(&["--version"]).output().unwrap().stdout).starts_with("ckpt "));
}

/// Children inherit `LD_PRELOAD` and the settings `ckpt run` gives the program, but only the
/// program takes periodic checkpoints: while a child runs through two more intervals, the
/// image is replaced by the program's, and no child writes an image of its own (`IMAGE-PID`).
#[test]
fn programs_run_by_the_program_do_not_take_periodic_checkpoints() {
    let wd = Workdir::new("cli-children");
    let img = wd.image();
    let (started, stop) = (wd.path.join("started"), wd.path.join("stop"));
    // The shell waits for its own first periodic checkpoint, then runs a child (another sh,
    // itself running `sleep`s) until the test says stop.
    let script = format!(
        "while [ ! -e '{img}' ]; do sleep 0.05; done; sh -c 'touch {started}; while [ ! -e {stop} ]; do sleep 0.05; done'; echo done",
        img = img.display(),
        started = started.display(),
        stop = stop.display()
    );
    let run = ckpt_cmd(&["run", "--interval", "0.3", "--image", img.to_str().unwrap(), "--", "sh", "-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
    wait_for_path(&started, LONG, "the child starting");
    // Two more periodic images while the child runs (each is renamed into place: a new inode).
    let mut seen = vec![std::fs::metadata(&img).unwrap().ino()];
    let deadline = Instant::now() + LONG;
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "no periodic checkpoints while the child ran");
        if let Ok(m) = std::fs::metadata(&img) {
            if !seen.contains(&m.ino()) {
                seen.push(m.ino());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(&stop, "").unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    let name = img.file_name().unwrap().to_str().unwrap().to_string();
    let others: Vec<String> = std::fs::read_dir(&wd.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}-")))
        .collect();
    assert!(others.is_empty(), "a child wrote an image of its own: {others:?}");
    let json = ckpt_cmd(&["inspect", "--json", img.to_str().unwrap()]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["program"], "sh", "the image was written by another process than the one ckpt ran");
}

/// A program with its own SIGUSR2 handler (through `signal` or `sigaction`) keeps it: a plain
/// `kill -12` reaches its handler (its count goes up) and takes no checkpoint, while
/// `ckpt checkpoint` (which asks with `sigqueue` and ckpt's value) checkpoints it. Restarted,
/// the handler is still its own.
#[test]
fn a_program_with_its_own_checkpoint_signal_handler_keeps_it() {
    let wd = Workdir::new("cli-own-signal");
    let p = prog("ownusr2", &[]);
    let got = |lines: &[String]| lines.last().and_then(|l| l.split_once(" got=")).map(|(_, n)| n.to_string()).unwrap_or_default();
    for how in ["signal", "sigaction"] {
        let img = wd.path.join(format!("img-{how}"));
        let mut c = Command::new(&p);
        c.arg(how);
        let mut orig = Proc::preloaded(c, &img, "ownusr2");
        orig.wait_lines(3, SHORT);
        orig.signal(libc::SIGUSR2);
        orig.wait_until(|l| got(l) == "1", SHORT, "its handler's first signal");
        orig.signal(libc::SIGUSR2);
        orig.wait_until(|l| got(l) == "2", SHORT, "its handler's second signal");
        assert!(!img.exists(), "{how}: kill -12 took a checkpoint");
        let out = ckpt_cmd(&["checkpoint", &orig.pid.to_string(), "--wait"]).output().unwrap();
        assert!(out.status.success(), "{how}: {}", String::from_utf8_lossy(&out.stderr));
        let n = orig.lines().len();
        let lines = orig.wait_lines(n + 3, SHORT);
        assert_eq!(got(&lines), "2", "{how}: the checkpoint request reached the program's handler");
        orig.kill9();
        assert!(!orig.stderr().contains("ckpt:"), "{how}: {}", orig.stderr());
        assert!(!orig.lines().iter().any(|l| l.contains("wrong")), "{how}: {:?}", orig.lines());

        let restored = Proc::restart(&img);
        restored.wait_lines(3, SHORT);
        restored.signal(libc::SIGUSR2);
        let lines = restored.wait_until(|l| got(l) == "3", SHORT, "the restored handler's signal");
        assert!(!lines.iter().any(|l| l.contains("wrong")), "{how}: {lines:?}");
    }
}

/// A handler installed with SA_RESETHAND gets one SIGUSR2, and the action reads back as the
/// default afterwards, as the kernel would make it; a `kill -12` then, with no handler of the
/// program's, is a checkpoint again (the brief's contract for a program without one).
#[test]
fn a_program_handler_for_one_sigusr2_then_checkpoints() {
    let wd = Workdir::new("cli-resethand");
    let mut c = Command::new(prog("ownusr2", &[]));
    c.arg("resethand");
    let orig = Proc::preloaded(c, &wd.image(), "ownusr2 resethand");
    orig.wait_lines(3, SHORT);
    assert!(orig.lines().last().is_some_and(|l| l.ends_with("got=0")), "{:?}", orig.lines());
    orig.signal(libc::SIGUSR2);
    orig.wait_until(|l| l.last().is_some_and(|l| l.ends_with("got=1 default")), SHORT, "its handler's one signal, then the default action");
    assert!(!wd.image().exists(), "the handler's signal took a checkpoint");
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    let lines = orig.wait_lines(n + 3, SHORT);
    assert!(lines.last().unwrap().ends_with("got=1 default"), "{lines:?}");
}

/// A restart while the checkpointed process still runs is refused by default (the two would
/// share its files and write over each other's output); `--allow-running` restores a second
/// copy anyway, and once the original has ended the restart goes ahead.
#[test]
fn restart_refused_while_the_original_runs() {
    let wd = Workdir::new("cli-still-running");
    let mut c = Command::new(prog("counter", &[]));
    c.args(["1000000", "10000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    for cmd in [vec![myrestart()], vec![ckpt(), "restart".into()]] {
        let out = Command::new(&cmd[0]).args(&cmd[1..]).arg(wd.image()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.contains(&format!("the checkpointed process still runs (PID {}", orig.pid)) && err.contains("--allow-running"), "{cmd:?}: {err}");
        // Each names itself: `ckpt restart` as ckpt, though myrestart does the work.
        let name = if cmd.len() > 1 { "ckpt: " } else { "myrestart: " };
        assert!(err.starts_with(name), "{cmd:?}: {err}");
    }
    let mut second = Proc::spawn(
        {
            let mut c = ckpt_cmd(&["restart", "--allow-running", "--inherit-stdio"]);
            c.arg(wd.image());
            c
        },
        "a second copy",
    );
    second.wait_lines(3, SHORT);
    assert!(second.stderr().contains("restoring a second copy of it, as asked"), "{}", second.stderr());
    second.kill9();
    orig.kill9();
    let mut restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
    restored.kill9();
}

/// `ps` shows the restored program's parents (myrestart outside, the init of its namespace) as
/// what the user ran: `ckpt restart IMAGE` (not the options ckpt passes myrestart, nor its line
/// for `--newest`), or `myrestart IMAGE`.
#[test]
fn the_restored_programs_parents_show_the_command_that_was_run() {
    let wd = Workdir::new("cli-ps");
    let image = wd.image();
    let mut c = Command::new(prog("counter", &[]));
    c.args(["1000000", "10000"]);
    checkpointed(c, &wd, 3);
    let args = |pid: u32| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
    };
    let ppid = |pid: u32| -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let img = image.display().to_string();
    for (cmd, want) in [
        (vec![ckpt().display().to_string(), "restart".into(), "--newest".into(), img.clone()], vec!["ckpt".to_string(), "restart".into(), img.clone()]),
        (vec![myrestart().display().to_string(), img.clone()], vec![myrestart().display().to_string(), img.clone()]),
    ] {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]);
        let mut restored = Proc::spawn(c, &cmd.join(" "));
        restored.wait_lines(3, SHORT);
        let program = restored.program_pid();
        let init = ppid(program);
        assert_eq!(ppid(init), restored.pid, "{cmd:?}");
        assert_eq!(args(restored.pid), want, "{cmd:?}: myrestart");
        assert_eq!(args(init), want, "{cmd:?}: the init below it");
        if cmd[1] == "restart" {
            // ckpt's own line, printed by myrestart, and myrestart speaking as ckpt.
            let err = restored.wait_stderr("ckpt: restarting from", SHORT);
            assert!(err.contains(&format!("ckpt: restarting from {img} (taken ")) && err.contains("ckpt: the restored program is process"), "{err}");
        }
        restored.kill9();
    }
}

/// A program started with SIGINT and SIGQUIT ignored (in the background by a script) comes
/// back ignoring them; restarted on a terminal, where Ctrl-C would then silently do nothing,
/// myrestart says so in one line. Not on a terminal: nothing is said.
#[test]
#[allow(unsafe_code)] // a pseudo-terminal from openpty, by descriptor number
fn restart_on_a_terminal_says_when_ctrl_c_is_ignored() {
    let wd = Workdir::new("cli-ignored-int");
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"trap "" INT QUIT; exec "$0" 1000000 10000"#).arg(prog("counter", &[]));
    let mut orig = Proc::preloaded(c, &wd.image(), "counter ignoring SIGINT");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; no name, termios or size asked for.
    assert_eq!(unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) }, 0);
    for on_tty in [true, false] {
        let mut c = Command::new(myrestart());
        c.arg(wd.image());
        let mut r = Proc::spawn_passing(c, "myrestart", on_tty.then_some((slave, 0)));
        r.wait_lines(3, SHORT);
        r.kill9();
        let said: Vec<String> = r.stderr().lines().filter(|l| l.contains("ignores SIGINT")).map(String::from).collect();
        if on_tty {
            assert_eq!(said.len(), 1, "{}", r.stderr());
            assert!(said[0].contains("SIGINT and SIGQUIT") && said[0].contains("Ctrl-C will not stop it"), "{said:?}");
        } else {
            assert!(said.is_empty(), "{said:?}");
        }
    }
    // SAFETY: our own descriptors.
    unsafe {
        libc::close(master);
        libc::close(slave);
    }
}

/// Arguments that cannot work are refused with exit status 2 and a message that says why;
/// `--help` names the exit statuses and the variables.
#[test]
fn bad_arguments_are_refused_and_help_names_statuses_and_variables() {
    for sig in ["FOO", "KILL", "9"] {
        let out = ckpt_cmd(&["run", "--signal", sig, "--", "true"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--signal {sig}: {err}");
        assert!(err.contains(&format!("--signal {sig}: not a signal")), "{err}");
    }
    let out = ckpt_cmd(&["checkpoint", "--timeout", "0.5", "999999999"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no process 999999999"), "--timeout 0.5 must be accepted: {err}");
    let out = ckpt_cmd(&["inspect", "no-such-image"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "ckpt: no-such-image: No such file or directory");
    let help = String::from_utf8_lossy(&ckpt_cmd(&["--help"]).output().unwrap().stdout).into_owned();
    for word in ["Exit status", "75", "CKPT_IMAGE", "CKPT_INTERVAL", "CKPT_KEEP", "CKPT_SIGNAL", "CKPT_LIBCKPT"] {
        assert!(help.contains(word), "ckpt --help does not name {word}");
    }
    // A copied ckpt says where it looked for libckpt.so and how to point it elsewhere.
    let wd = Workdir::new("cli-copied");
    let copy = wd.path.join("ckpt");
    std::fs::copy(ckpt(), &copy).unwrap();
    let out = Command::new(&copy).args(["run", "--", "true"]).env_remove("CKPT_LIBCKPT").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("looked for {}", wd.path.join("libckpt.so").display())) && err.contains("set CKPT_LIBCKPT"), "{err}");
    let out = Command::new(&copy).args(["run", "--", "true"]).env("CKPT_LIBCKPT", libckpt()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `checkpoint --image` cannot move where a process writes (it chose that when it started):
/// another path is refused, saying where the process writes; its own path is fine.
#[test]
fn checkpoint_image_option_must_name_the_process_own_image() {
    let wd = Workdir::new("cli-image-option");
    let mut c = ckpt_cmd(&["run", "--image", wd.image().to_str().unwrap(), "--"]);
    c.arg(prog("counter", &[])).args(["1000000", "10000"]);
    let mut orig = Proc::spawn(c, "counter");
    orig.wait_lines(3, SHORT);
    let other = wd.path.join("other.img");
    let out = ckpt_cmd(&["checkpoint", &orig.pid.to_string(), "--wait", "--image", other.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("writes its image to {}", wd.image().display())) && err.contains("none was sent"), "{err}");
    assert!(!other.exists() && !wd.image().exists());
    let out = ckpt_cmd(&["checkpoint", &orig.pid.to_string(), "--wait", "--image", wd.image().to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wd.image().exists());
    orig.kill9();
}

/// A process the user may not inspect is named as such, not as missing.
#[test]
fn checkpoint_of_a_process_of_another_user_says_so() {
    if !can_be_another_user("checkpoint_of_a_process_of_another_user_says_so") {
        return;
    }
    let wd = Workdir::new("cli-other-user");
    let mut c = Command::new(prog("counter", &[]));
    c.args(["1000000", "10000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(1, SHORT);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ckpt())
        .args(["checkpoint", &orig.pid.to_string()])
        .env("CKPT_LIBCKPT", libckpt())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("process {} belongs to another user: checkpoint it as its owner", orig.pid)), "{err}");
    orig.kill9();
}
