//! The images `ckpt checkpoint PID` writes of processes started without ckpt (libckpt's
//! attached checkpoint, run in the process by `ckpt`): a statically and a dynamically linked
//! C program, a threaded one with a thread waiting in each way, and a static Go program with
//! goroutines and timers. Each image is accepted by `ckpt inspect` with every thread, each
//! thread's frame in the frames region (not on its stack); the program goes on as if nothing
//! happened (every line in order, no call cut short, no signal); and, where myrestart can
//! restore such images, a restart goes on from the image as an uninterrupted run does.
#![deny(unsafe_code)]

use ckpt_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/progs/attached.c`: `ticks` lines, 5 ms apart; `threads`: with its workers.
fn c_program(statically: bool, threads: bool, ticks: u32) -> Command {
    let flags: &[&str] = if statically { &["-static"] } else { &[] };
    let mut c = Command::new(prog("attached", flags));
    c.arg(ticks.to_string()).arg(if threads { "1" } else { "0" });
    c
}

/// `tests/progs/attached.go`, built statically (`CGO_ENABLED=0`) once, beside the C programs;
/// `None` (the test says it skips) without a Go toolchain.
fn go_program(ticks: u32) -> Option<Command> {
    use std::sync::OnceLock;
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let src = root().join("tests/progs/attached.go");
        let dir = root().join("target/ckpt-tests/go");
        std::fs::create_dir_all(&dir).unwrap();
        let version = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&src).unwrap().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        let out = dir.join(format!("attached-go-{version}"));
        if !out.exists() {
            let tmp = dir.join(format!("attached-go.tmp{}", std::process::id()));
            let status = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&tmp)
                .arg(&src)
                .env("CGO_ENABLED", "0")
                .env("GOCACHE", dir.join("cache"))
                .env("GOPATH", dir.join("path"))
                .env("GO111MODULE", "off")
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => panic!("go build {}: {s}", src.display()),
                Err(_) => return None, // no Go toolchain
            }
            let _ = std::fs::hard_link(&tmp, &out);
            let _ = std::fs::remove_file(&tmp);
        }
        Some(out)
    });
    let mut c = Command::new(built.as_ref()?);
    c.arg(ticks.to_string());
    Some(c)
}

/// `ckpt checkpoint PID --image IMAGE --wait`: succeeds, and says the image is complete.
fn attach_checkpoint(pid: u32, image: &Path) {
    let out = Command::new(ckpt()).args(["checkpoint", &pid.to_string(), "--wait", "--image"]).arg(image).output().unwrap();
    let (said, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ckpt checkpoint {pid}: {} {err}", out.status);
    assert!(said.contains(&image.display().to_string()), "stdout {said:?} stderr {err:?}");
}

/// `ckpt inspect --json IMAGE`, which must accept it.
fn inspect(image: &Path) -> Value {
    let out = Command::new(ckpt()).args(["inspect", "--json"]).arg(image).output().unwrap();
    assert!(out.status.success(), "ckpt inspect: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The threads of process `pid` now.
fn tasks(pid: u32) -> Vec<u32> {
    let mut t: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap()).collect();
    t.sort();
    t
}

/// The process state of the image (its flags).
fn state_of(image: &Path) -> Box<ckpt_image::ProcessState> {
    let bytes = std::fs::read(image).unwrap();
    let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    st
}

/// Checks the image of process `pid` (whose threads were `before` just before the checkpoint
/// and `after` just after): accepted by `ckpt inspect`, with one of those sets of threads (a Go
/// program may start one meanwhile), each one's frame in one region, the frames region, which
/// no thread's stack pointer is in; and the state says the process had no libckpt.
fn image_holds(image: &Path, pid: u32, before: &[u32], after: &[u32]) -> Value {
    let doc = inspect(image);
    assert_eq!(doc["pid"].as_u64(), Some(pid as u64));
    let mut tids: Vec<u32> = doc["threads"].as_array().unwrap().iter().map(|t| t["tid"].as_u64().unwrap() as u32).collect();
    tids.sort();
    assert!(tids == before || tids == after, "the image's threads {tids:?}, the process's {before:?} then {after:?}");
    let regions: Vec<(u64, u64)> = doc["regions"].as_array().unwrap().iter().map(|r| (hex(&r["start"]), hex(&r["end"]))).collect();
    let region_of = |a: u64| regions.iter().copied().find(|&(s, e)| s <= a && a < e).unwrap_or_else(|| panic!("{a:#x} is in no region of the image"));
    let frames: Vec<u64> = doc["threads"].as_array().unwrap().iter().map(|t| hex(&t["signal_frame"])).collect();
    let region = region_of(frames[0]);
    for f in &frames {
        assert_eq!(region_of(*f), region, "the frames {frames:x?} are not in one region");
    }
    let st = state_of(image);
    assert_ne!(st.flags & ckpt_image::state::FLAG_ATTACHED, 0, "the image does not say the process had no libckpt");
    assert_eq!((st.resume_trampoline, st.thread_trampoline), (0, 0));
    // The leader's stack pointer (the one inspect shows) is not in the frames region.
    let rsp = hex(&doc["registers"]["rsp"]);
    assert!(!(region.0..region.1).contains(&rsp), "the leader's stack {rsp:#x} is the frames region {region:x?}");
    doc
}

/// Waits for `more` lines beyond those printed so far; every line so far is the next number
/// (no ERROR line, nothing skipped or repeated), and nothing was cut short (stderr says EINTR
/// for that) or killed by a signal.
fn goes_on(p: &Proc, more: usize) {
    let n = p.lines().len();
    let lines = p.wait_lines(n + more, LONG);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &i.to_string(), "line {i}; stderr {:?}", p.stderr());
    }
    assert_eq!(p.stderr(), "", "the program's stderr");
}

/// Starts `cmd` without ckpt, checkpoints it twice by attaching to it (once with the threads
/// it has, once more, so that a second attach after the first is seen to work too), checks
/// each image and that the program goes on; returns the program and the first image's JSON.
fn checkpoint_twice(cmd: Command, wd: &Workdir) -> (Proc, Value) {
    let p = Proc::spawn(cmd, "the program to attach to");
    p.wait_lines(20, LONG);
    let mut first = None;
    for i in 0..2 {
        let image = wd.path.join(format!("image{i}"));
        let before = tasks(p.pid);
        attach_checkpoint(p.pid, &image);
        let after = tasks(p.pid);
        let doc = image_holds(&image, p.pid, &before, &after);
        first.get_or_insert(doc);
        goes_on(&p, 20);
    }
    (p, first.unwrap())
}

#[test]
fn a_static_program_is_checkpointed_and_goes_on() {
    let wd = Workdir::new("attached-static");
    let (mut p, doc) = checkpoint_twice(c_program(true, false, 100_000), &wd);
    assert_eq!(doc["threads"].as_array().unwrap().len(), 1);
    p.kill9();
}

#[test]
fn a_dynamic_program_is_checkpointed_and_goes_on() {
    let wd = Workdir::new("attached-dynamic");
    let (mut p, _) = checkpoint_twice(c_program(false, false, 100_000), &wd);
    p.kill9();
}

#[test]
fn every_thread_of_a_threaded_program_is_in_its_image() {
    let wd = Workdir::new("attached-threads");
    let (mut p, doc) = checkpoint_twice(c_program(false, true, 100_000), &wd);
    assert_eq!(doc["threads"].as_array().unwrap().len(), 8, "main and its seven workers");
    p.kill9();
}

#[test]
fn a_go_program_is_checkpointed_and_goes_on() {
    let Some(cmd) = go_program(100_000) else { return skip("a_go_program_is_checkpointed_and_goes_on", "no Go toolchain (go)") };
    let wd = Workdir::new("attached-go");
    let (mut p, doc) = checkpoint_twice(cmd, &wd);
    assert!(doc["threads"].as_array().unwrap().len() >= 5, "the Go runtime's threads and the four locked ones: {}", doc["threads"]);
    let st = state_of(&wd.path.join("image0"));
    assert_ne!(st.flags & ckpt_image::state::FLAG_RAW_MADVISE, 0, "a Go program's image says it drops memory itself");
    p.kill9();
}

#[test]
fn a_program_with_inotify_watches_is_refused_and_goes_on() {
    let wd = Workdir::new("attached-watches");
    let dir = wd.path.join("watched");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Command::new(prog("watches", &[]));
    c.arg(&dir);
    let mut p = Proc::spawn(c, "watches");
    p.wait_lines(1, LONG);
    let image = wd.path.join("image");
    let out = Command::new(ckpt()).args(["checkpoint", &p.pid.to_string(), "--wait", "--image"]).arg(&image).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("inotify watches"), "{err:?}");
    assert!(!image.exists());
    // It goes on: a file created in a watched directory is reported.
    std::fs::write(dir.join("7/new"), b"").unwrap();
    p.wait_until(|l| l.iter().any(|l| l.contains("new")), LONG, "the event of the new file");
    p.kill9();
}

/// The whole scenario: a reference run of `make()`; a run started without ckpt, checkpointed
/// by attaching after `at` lines and killed a few lines later; the restart prints exactly the
/// rest of the reference. Returns what the restart wrote on stderr.
fn attached_restart_matches(test: &str, make: impl Fn() -> Command, at: usize) -> String {
    let wd = Workdir::new(test);
    let reference = reference_run(make(), LONG);
    let image = wd.image();
    let mut orig = Proc::spawn(make(), "original run");
    orig.wait_lines(at, LONG);
    let at_ckpt = orig.lines().len();
    attach_checkpoint(orig.pid, &image);
    let n = orig.lines().len();
    orig.wait_lines(n + 3, LONG);
    orig.kill9();
    let at_kill = orig.lines().len();
    let mut restored = Proc::restart(&image);
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "restarted run exited with {st}; stderr {:?}", restored.stderr());
    let after = restored.lines();
    assert!(after.iter().all(|l| !l.starts_with("ERROR")), "{after:?}");
    assert_continues(&reference, at_ckpt, at_kill, &after);
    restored.stderr()
}

#[test]
fn a_static_program_restarts_from_its_attached_image() {
    attached_restart_matches("attached-static-restart", || c_program(true, false, 300), 30);
}

#[test]
fn a_threaded_program_restarts_from_its_attached_image() {
    attached_restart_matches("attached-threads-restart", || c_program(false, true, 300), 30);
}

#[test]
fn a_go_program_restarts_from_its_attached_image() {
    if go_program(0).is_none() {
        return skip("a_go_program_restarts_from_its_attached_image", "no Go toolchain (go)");
    }
    let err = attached_restart_matches("attached-go-restart", || go_program(300).unwrap(), 30);
    // Memory of the image that the restarted program gives back to the system (madvise
    // MADV_DONTNEED, as the Go runtime does; then debug.FreeOSMemory) reads as zeros, as the
    // runtime takes for granted, and so do fresh allocations: myrestart restored its anonymous
    // memory as anonymous memory, not as a private mapping of the image file (where the
    // madvised pages would read as the image's bytes again).
    assert!(err.lines().any(|l| l == "zeros after the restart: ok"), "stderr {err:?}");
}

/// A process restored from an attached image still has that image's frames region (its
/// threads resumed through it); its own next attached checkpoint leaves it out (recognised by
/// its name, or by the marker its first page starts with where the kernel names no anonymous
/// memory), and puts its frames in a region of its own.
#[test]
fn an_earlier_restarts_frames_are_left_out_of_the_next_image() {
    let wd = Workdir::new("attached-frames-again");
    let mut p = Proc::spawn(c_program(false, true, 100_000), "the program to attach to");
    p.wait_lines(20, LONG);
    let first = wd.path.join("first");
    attach_checkpoint(p.pid, &first);
    let doc = inspect(&first);
    let frames_of = |doc: &Value| {
        let frame = hex(&doc["threads"][0]["signal_frame"]);
        doc["regions"].as_array().unwrap().iter().map(|r| (hex(&r["start"]), hex(&r["end"]))).find(|&(s, e)| s <= frame && frame < e).unwrap()
    };
    let old = frames_of(&doc);
    p.kill9();
    let mut restored = Proc::restart(&first);
    let n = restored.wait_lines(1, LONG).len();
    restored.wait_lines(n + 20, LONG);
    let pid = restored.program_pid();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.lines().any(|l| l.starts_with(&format!("{:x}-", old.0))), "the restored process has no region at {:#x}: {maps}", old.0);
    let second = wd.path.join("second");
    attach_checkpoint(pid, &second);
    let doc = inspect(&second);
    assert_eq!(doc["threads"].as_array().unwrap().len(), 8);
    let now = frames_of(&doc);
    assert_ne!(now, old);
    let kept: Vec<String> = doc["regions"].as_array().unwrap().iter().filter(|r| hex(&r["start"]) < old.1 && old.0 < hex(&r["end"])).map(|r| r.to_string()).collect();
    assert!(kept.is_empty(), "the earlier frames region {old:x?} is in the image: {kept:?}");
    restored.kill9();
}

/// `ckpt inspect` of an attached image shows the program's command line (read from its saved
/// memory) and says it was checkpointed by attaching to it, not on a signal of its own; for a
/// C program and, with a Go toolchain, a Go program.
#[test]
fn inspect_shows_the_command_and_that_it_was_attached() {
    let wd = Workdir::new("attached-inspect");
    let mut programs = vec![(c_program(true, false, 100_000), "100000")];
    if let Some(go) = go_program(100_000) {
        programs.push((go, "100000"));
    }
    for (i, (cmd, arg)) in programs.into_iter().enumerate() {
        let exe = cmd.get_program().to_string_lossy().into_owned();
        let mut p = Proc::spawn(cmd, "the program to attach to");
        p.wait_lines(10, LONG);
        let image = wd.path.join(format!("image{i}"));
        attach_checkpoint(p.pid, &image);
        p.kill9();
        let doc = inspect(&image);
        assert_eq!(doc["attached"], true);
        let words: Vec<&str> = doc["command_line"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(words.first().copied(), Some(exe.as_str()), "{words:?}");
        assert_eq!(words.get(1).copied(), Some(arg), "{words:?}");
        let out = Command::new(ckpt()).arg("inspect").arg(&image).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l.starts_with("command      ") && l.contains(&format!("{exe} {arg}"))), "{text}");
        assert!(text.lines().any(|l| l.starts_with("checkpoints  by attaching to it")), "{text}");
        assert!(!text.contains("on signal 0"), "{text}");
    }
}

/// A thread other than the leader, stopped by ckpt-seize inside an rseq critical section, goes
/// on at the section's abort handler, and its image holds it there: the system call it is made
/// to run from its stop (for its alternate signal stack) makes the kernel forget the section.
#[test]
fn a_thread_stopped_in_an_rseq_section_resumes_at_its_abort_handler() {
    rseq_thread_resumes_at_its_abort_handler("attached-rseq-thread", false, |p, image| attach_checkpoint(p.pid, image));
}
