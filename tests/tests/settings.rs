//! What README promises about settings and files: the checkpoint signal can be changed, a
//! relative image path is taken from where the program started, images are private (0600),
//! and an installed ckpt finds its pieces.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn counter(args: &[&str]) -> Command {
    let mut c = Command::new(prog("counter", &[]));
    c.args(args);
    c
}

/// Waits until `image` exists and is newer than `before`.
fn wait_image(image: &Path, proc: &Proc) {
    let deadline = Instant::now() + LONG;
    while !image.exists() {
        assert!(Instant::now() < deadline, "no image at {}; stderr {:?}", image.display(), proc.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn another_checkpoint_signal_by_environment_and_by_ckpt_run() {
    let wd = Workdir::new("signal");
    // CKPT_SIGNAL=RTMIN+2: that signal checkpoints; SIGUSR2 is the program's business again
    // (here, its default action ends it).
    let image = wd.path.join("rt");
    let mut c = counter(&["100000", "10000"]);
    c.env("CKPT_SIGNAL", "RTMIN+2");
    let mut orig = Proc::preloaded(c, &image, "counter with CKPT_SIGNAL");
    orig.wait_lines(3, SHORT);
    orig.signal(libc::SIGRTMIN() + 2);
    wait_image(&image, &orig);
    let n = orig.lines().len();
    orig.wait_lines(n + 2, SHORT);
    orig.signal(libc::SIGUSR2);
    let st = orig.wait_exit(SHORT);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(libc::SIGUSR2), "SIGUSR2 no longer checkpoints");
    let mut restored = Proc::restart(&image);
    restored.wait_lines(3, SHORT);
    restored.kill9();

    // ckpt run --signal USR1, and ckpt checkpoint finds the signal in the process's environment.
    let image = wd.path.join("usr1");
    let mut c = Command::new(ckpt());
    c.args(["run", "--signal", "USR1", "--image"]).arg(&image).arg("--").arg(prog("counter", &[])).args(["100000", "10000"]);
    let mut orig = Proc::spawn(c, "ckpt run --signal USR1");
    orig.wait_lines(3, SHORT);
    let out = Command::new(ckpt()).args(["checkpoint", "--wait", &orig.pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(image.exists());
    orig.kill9();
    let mut restored = Proc::restart(&image);
    restored.wait_lines(3, SHORT);
    restored.kill9();
}

#[test]
fn relative_image_path_is_taken_from_the_starting_directory_and_the_image_is_private() {
    let wd = Workdir::new("relative");
    let sub = wd.path.join("elsewhere");
    std::fs::create_dir(&sub).unwrap();
    std::fs::create_dir(wd.path.join("imgs")).unwrap();
    // kstate changes directory to `sub` at once; the image must still land in wd/imgs. The
    // program runs with umask 0, and the image must still be 0600.
    let mut c = Command::new("sh");
    c.current_dir(&wd.path).args(["-c", "umask 0; exec \"$0\" \"$@\""]).arg(prog("kstate", &[])).arg("1000000").arg(&sub);
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", "imgs/myckpt");
    let mut orig = Proc::spawn(c, "kstate with a relative CKPT_IMAGE");
    orig.wait_lines(3, SHORT);
    let image = wd.path.join("imgs/myckpt");
    orig.checkpoint(&image, LONG);
    assert!(!sub.join("imgs").exists(), "the image followed the program's chdir");
    let mode = std::fs::metadata(&image).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "image mode {mode:o}");
    orig.kill9();
}

/// `make install PREFIX=…`: the installed ckpt finds libckpt.so and myrestart from its own
/// place, with no environment variable.
#[test]
fn installed_ckpt_finds_its_library_and_myrestart() {
    let wd = Workdir::new("install");
    let prefix = wd.path.join("prefix");
    // The artifacts are built already (make test builds them first): install them as they are.
    let out = Command::new("make")
        .current_dir(root())
        .args(["--no-print-directory", "-o", "all", "-o", "libckpt.so", "-o", "myrestart", "-o", "ckpt", "install"])
        .arg(format!("PREFIX={}", prefix.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "make install: {}", String::from_utf8_lossy(&out.stderr));
    for f in ["bin/ckpt", "bin/myrestart", "lib/ckpt/libckpt.so"] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    let ckpt = prefix.join("bin/ckpt");
    let image = wd.image();
    let mut c = Command::new(&ckpt);
    c.env_remove("LD_PRELOAD").args(["run", "--image"]).arg(&image).arg("--").arg(prog("counter", &[])).args(["100000", "10000"]);
    let mut orig = Proc::spawn(c, "installed ckpt run");
    orig.wait_lines(3, SHORT);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", orig.pid)).unwrap();
    assert!(maps.contains(&format!("{}", prefix.join("lib/ckpt/libckpt.so").display())), "not the installed library");
    let out = Command::new(&ckpt).args(["checkpoint", "--wait", "--kill", &orig.pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    orig.kill9();
    let mut c = Command::new(&ckpt);
    c.arg("restart").arg(&image);
    let mut restored = Proc::spawn(c, "installed ckpt restart");
    restored.wait_lines(3, SHORT);
    restored.kill9();
}

/// The brief's `make check` passes however its output is taken: on a terminal (a pseudo-
/// terminal made by `script`), into a file (where the checkpointed hello's stdout is that file)
/// and into a pipe.
#[test]
fn make_check_passes_on_a_terminal_with_its_output_in_a_file_and_in_a_pipe() {
    let wd = Workdir::new("make-check");
    let log = wd.path.join("log");
    // The artifacts are built already (make test builds them first): `-o` keeps make from
    // building them again.
    let make = "make --no-print-directory -o libckpt.so -o myrestart -o ckpt check";
    for (how, script) in [
        ("on a terminal", format!("script -qec '{make}' /dev/null > '{}' 2>&1", log.display())),
        ("into a file", format!("{make} > '{}' 2>&1", log.display())),
        ("into a pipe", format!("{make} 2>&1 | cat > '{}'", log.display())),
    ] {
        let st = Command::new("bash").current_dir(root()).args(["-c", &script]).status().unwrap();
        let out = std::fs::read_to_string(&log).unwrap();
        assert!(st.success() && out.contains("check: OK: the restarted hello"), "make check {how}: {st}\n{out}");
        // Its restart ends as the check ends it (SIGTERM), which make need not call an error.
        assert!(!out.contains("Error"), "make check {how} printed an error:\n{out}");
    }
}

/// A program that runs another (the library goes with `LD_PRELOAD`, the image path with
/// `CKPT_IMAGE`) and a child it forks: `kill -12` of either writes that process's own image,
/// `<image>-<PID>`, and the parent's image is left alone.
#[test]
fn a_child_never_replaces_its_parents_image() {
    let wd = Workdir::new("children");
    let image = wd.image();
    // sh (preloaded) runs the counter as a child, then waits.
    let mut c = Command::new("sh");
    c.args(["-c", "\"$0\" 1000000 10000 & echo child $!; wait"]).arg(prog("counter", &[]));
    let parent = Proc::preloaded(c, &image, "sh running a counter");
    parent.wait_until(|l| l.iter().any(|l| l.starts_with("child ")), SHORT, "the child's PID");
    let child: u32 = parent.lines().iter().find_map(|l| l.strip_prefix("child ")).unwrap().parse().unwrap();
    let stray = Stray(child);
    parent.wait_until(|l| l.len() >= 4, SHORT, "the child counting");
    // kill(2) of the child the shell started (it has not been reaped: sh waits).
    send_signal(child as i32, libc::SIGUSR2);
    let own = wd.path.join(format!("myckpt-{child}"));
    wait_for_path(&own, LONG, "the image of the child");
    // Its writer ends just after the rename; the parent's checkpoint (of its tree, the child
    // included) would meet the child still writing and be refused.
    wait_writers_gone(&image, Instant::now() + LONG);
    assert!(!image.exists(), "the child wrote the parent's image");
    // The parent's own checkpoint still goes to the image path.
    parent.checkpoint(&image, LONG);
    // The child ends first (a restart of a process that still runs is refused).
    // kill(2) of the child the shell started.
    stray.kill();
    wait_dead(child);
    let restored = Proc::restart(&own);
    restored.wait_lines(3, SHORT);

    // A child forked without exec (python's os.fork) is a descendant too.
    let image2 = wd.path.join("forked");
    let script = "import os, sys, time\npid = os.fork()\nif pid == 0:\n    while True: time.sleep(0.01)\nprint('child', pid, flush=True)\nos.waitpid(pid, 0)\n";
    let mut c = Command::new("python3");
    c.args(["-c", script]);
    let parent = Proc::preloaded(c, &image2, "python forking");
    parent.wait_until(|l| !l.is_empty(), SHORT, "the child's PID");
    let child: u32 = parent.lines()[0].strip_prefix("child ").unwrap().parse().unwrap();
    let stray = Stray(child);
    // kill(2) of python's child, which python waits for.
    send_signal(child as i32, libc::SIGUSR2);
    let own = wd.path.join(format!("forked-{child}"));
    wait_for_path(&own, LONG, "the image of the forked child");
    assert!(!image2.exists(), "the forked child wrote the parent's image");
    stray.kill();
}

/// A child of the test's child: killed when the test ends early (a failed assertion), which
/// would leave it running, reparented, once its parent is killed. Made after that parent's
/// `Proc`, it is dropped first, while the parent (which waits for it) still holds its PID.
struct Stray(u32);

impl Stray {
    /// Kills it now; nothing is sent again when the guard goes.
    fn kill(self) {
        // kill(2) of a child of our child, which that child waits for (its PID is not reused).
        send_signal(self.0 as i32, libc::SIGKILL);
        std::mem::forget(self);
    }
}

impl Drop for Stray {
    fn drop(&mut self) {
        // As in `kill` (reached only when the test failed before it).
        send_signal(self.0 as i32, libc::SIGKILL);
    }
}

/// libckpt.so loads on glibc 2.28 and later whatever glibc built it: every C function it takes
/// has a version that glibc 2.28 has, and it names libdl.so.2 (where `dlsym` was before 2.34).
/// (The userland tests, `make test-userlands`, run it on Debian bullseye's glibc 2.31.)
#[test]
fn libckpt_needs_nothing_newer_than_glibc_2_28() {
    let out = Command::new("objdump").arg("-T").arg(libckpt()).output().expect("objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut versions: Vec<(u32, u32, String)> = Vec::new();
    for line in text.lines().filter(|l| l.contains("*UND*")) {
        let Some(v) = line.split(['(', ')']).nth(1).and_then(|v| v.strip_prefix("GLIBC_")) else { continue };
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        versions.push((major, minor, line.split_whitespace().last().unwrap_or("").to_string()));
    }
    assert!(!versions.is_empty(), "no versioned imports found: {text}");
    let newer: Vec<_> = versions.iter().filter(|(major, minor, _)| (*major, *minor) > (2, 28)).collect();
    assert!(newer.is_empty(), "libckpt.so needs glibc newer than 2.28 for {newer:?}");
    let dynamic = Command::new("readelf").arg("-d").arg(libckpt()).output().expect("readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(dynamic.contains("[libdl.so.2]"), "libckpt.so does not name libdl.so.2: {dynamic}");
}

/// `CKPT_TIMES=1`: the writer says, once the image is in place, when each step of the
/// checkpoint ended, every step named once and in the order they run; without it, nothing.
#[test]
fn ckpt_times_has_the_writer_say_when_each_step_ended() {
    let wd = Workdir::new("times");
    let image = wd.path.join("timed");
    let mut c = counter(&["100000", "10000"]);
    c.env("CKPT_TIMES", "1");
    let mut orig = Proc::preloaded(c, &image, "counter with CKPT_TIMES");
    orig.wait_lines(3, SHORT);
    orig.signal(libc::SIGUSR2);
    wait_image(&image, &orig);
    let deadline = Instant::now() + LONG;
    let line = loop {
        if let Some(l) = orig.stderr().lines().find(|l| l.starts_with("ckpt: times ")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no times line; stderr {:?}", orig.stderr());
        std::thread::sleep(Duration::from_millis(5));
    };
    let words: Vec<&str> = line.split(':').nth(2).unwrap().split_whitespace().collect();
    assert_eq!(words.last(), Some(&"(ms)"), "{line}");
    let steps: Vec<(&str, f64)> = words[..words.len() - 1].chunks_exact(2).map(|w| (w[0], w[1].parse().unwrap_or_else(|_| panic!("{line}")))).collect();
    let names: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        ["stopped", "layout", "state", "fds", "written", "captured", "writer", "closed", "decided", "planned", "data", "headers", "synced", "renamed", "done"],
        "{line}"
    );
    assert!(steps.windows(2).all(|w| w[0].1 <= w[1].1), "steps out of order: {line}");
    orig.kill9();
    // The image is a good one: the program goes on from it.
    let mut restored = Proc::restart(&image);
    restored.wait_lines(3, SHORT);
    restored.kill9();

    // Without the setting, the writer says nothing.
    let image = wd.path.join("quiet");
    let mut orig = Proc::preloaded(counter(&["100000", "10000"]), &image, "counter without CKPT_TIMES");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&image, LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 2, SHORT);
    assert!(!orig.stderr().contains("ckpt: times"), "{}", orig.stderr());
    orig.kill9();
}
