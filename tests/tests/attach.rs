//! `ckpt checkpoint PID` on processes started without ckpt (no libckpt preloaded): the
//! processes it refuses to attach to, left untouched; the attach machinery (libckpt.so loaded
//! into the process, an entry called on its stopped leader, everything taken away again)
//! proven with libckpt's probe entry, in dynamically and statically linked programs sleeping in
//! `nanosleep` and in `read`.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::process::{Command, Output};

/// A field of `/proc/PID/status`.
fn status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap_or_default()
}

fn tracer(pid: u32) -> u32 {
    status_field(pid, "TracerPid:").parse().unwrap()
}

/// `attachee` (tests/progs/attachee.c): a counter that waits 3 ms between lines in `how`
/// (`sleep`: nanosleep, `read`: a timerfd, `select`, `spin`: no system call), linked
/// statically or not.
fn attachee(statically: bool, how: &str) -> Command {
    let flags: &[&str] = if statically { &["-static"] } else { &[] };
    let mut c = Command::new(prog("attachee", flags));
    c.args([how, "3"]);
    c
}

/// Waits for `more` lines beyond those printed so far, and checks every line so far is the
/// next number: no wait was cut short (an ERROR line) and nothing was skipped or repeated.
fn goes_on(p: &Proc, more: usize) {
    let n = p.lines().len();
    let lines = p.wait_lines(n + more, LONG);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &i.to_string(), "line {i} of the program; stderr {:?}", p.stderr());
    }
}

fn checkpoint_cmd(pid: u32) -> Command {
    let mut c = Command::new(ckpt());
    c.args(["checkpoint", &pid.to_string()]);
    c
}

/// `cmd` run as uid and gid 65534 (through `setpriv`, which execs it).
fn as_nobody(cmd: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}

/// A refusal: exit status 2, one line on stderr holding `expect`, nothing on stdout.
fn refused(out: &Output, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(expect), "{expect:?} not in {err:?}");
    assert!(out.stdout.is_empty(), "stdout {:?}", String::from_utf8_lossy(&out.stdout));
}

/// The probe run in the program `cmd` makes, `times` times: the value it writes comes back
/// each time, the program's memory map afterwards is the one before, and the program goes on
/// counting, with no wait cut short and no tracer left.
fn probe_in(cmd: Command, times: usize) {
    let p = Proc::spawn(cmd, "attachee");
    p.wait_lines(20, LONG);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap();
    for _ in 0..times {
        let out = checkpoint_cmd(p.pid).env("CKPT_ATTACH_PROBE", "1").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
        let pid = p.pid;
        // The probe returns the PID it finds itself in, puts "probe" in the status, and names
        // the process and thread it ran on.
        let expect = format!("probe: returned {pid}, status 0x70726f6265, message: probe ran in process {pid} on thread {pid}, ");
        assert!(said.starts_with(&expect), "{said:?}");
        goes_on(&p, 5);
    }
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap(), maps, "the memory map changed");
    assert_eq!(tracer(p.pid), 0);
    goes_on(&p, 20);
}

#[test]
fn probe_runs_in_a_dynamic_program_sleeping_in_nanosleep() {
    probe_in(attachee(false, "sleep"), 10);
}

#[test]
fn probe_runs_in_a_dynamic_program_sleeping_in_read() {
    probe_in(attachee(false, "read"), 10);
}

#[test]
fn probe_runs_in_a_static_program_sleeping_in_nanosleep() {
    probe_in(attachee(true, "sleep"), 10);
}

#[test]
fn probe_runs_in_a_static_program_sleeping_in_read() {
    probe_in(attachee(true, "read"), 10);
}

#[test]
fn probe_runs_in_a_static_program_waiting_in_select() {
    probe_in(attachee(true, "select"), 10);
}

/// Stopped in its own code, not in a system call.
#[test]
fn probe_runs_in_a_dynamic_program_that_makes_no_system_call() {
    probe_in(attachee(false, "spin"), 10);
}

/// The report descriptor ckpt reads back from the block is the program's to write: the probe
/// (told so by `--keep 1`) names the program's standard output there instead of a report
/// page, and ckpt neither takes it for one nor closes it in the program, which goes on
/// printing.
#[test]
fn a_report_descriptor_that_is_not_a_report_page_is_left_alone() {
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(20, LONG);
    let out = checkpoint_cmd(p.pid).args(["--keep", "1"]).env("CKPT_ATTACH_PROBE", "1").output().unwrap();
    assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_link(format!("/proc/{}/fd/1", p.pid)).is_ok(), "its standard output was closed");
    untouched(&p, p.pid, 0);
}

/// A panic of ckpt's code in the program (the probe panics when its image is named
/// `probe-panics`) stops only the call: ckpt says what the panic said, puts the program back,
/// and the program goes on (libckpt's own panic handler would have ended it with SIGABRT).
#[test]
fn a_panic_of_ckpts_code_in_the_program_leaves_it_running() {
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(20, LONG);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap();
    let out = checkpoint_cmd(p.pid).args(["--image", "/nonexistent/probe-panics"]).env("CKPT_ATTACH_PROBE", "1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("crashed in it (signal 4 at libckpt.so+") && err.contains(": internal error: the probe was asked to panic);"), "{err:?}");
    untouched(&p, p.pid, 0);
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap(), maps, "the memory map changed");
}

/// A process that ptrace cannot stop (a vfork parent waits for its child where no signal
/// reaches it): ckpt gives up after its patience, says why in one line, and returns without
/// waiting on it (it used to wait for the stop as long as the child lived); the process is
/// left as it was and goes on once its child ends.
#[test]
fn a_process_that_never_stops_is_given_up_on() {
    let wd = Workdir::new("vforker");
    let go = wd.path.join("go");
    let mut cmd = Command::new(prog("vforker", &[]));
    cmd.arg(&go);
    let p = Proc::spawn(cmd, "vforker");
    p.wait_lines(1, LONG);
    let mut c = checkpoint_cmd(p.pid);
    c.env("CKPT_ATTACH_PROBE", "1");
    let out = run_within(c, LONG);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("did not stop for ptrace") && err.contains("vfork parent"), "{err:?}");
    assert_eq!(tracer(p.pid), 0, "ckpt is gone, and so is its hold on the process");
    std::fs::write(&go, "").unwrap();
    assert_eq!(p.wait_lines(2, LONG)[1], "after");
}

/// Waits until `pred` holds of process `pid`'s status field `key`.
fn wait_status(pid: u32, key: &str, pred: impl Fn(&str) -> bool, what: &str) {
    let deadline = std::time::Instant::now() + LONG;
    while !pred(&status_field(pid, key)) {
        assert!(std::time::Instant::now() < deadline, "{what}: {key} {}", status_field(pid, key));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// SIGSTOP, the one signal the leader's mask cannot hold back while ckpt's code runs on it,
/// sent meanwhile (the probe waits until the test has seen the leader take it): ckpt's call
/// goes on to its end (it used to end it as a crash, losing the signal), and the program
/// stops as asked once ckpt has let it go, and goes on after SIGCONT.
#[test]
fn a_sigstop_while_ckpts_code_runs_stops_the_program_after() {
    let wd = Workdir::new("sigstop");
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(20, LONG);
    let mut c = checkpoint_cmd(p.pid);
    c.arg("--image").arg(wd.path.join("probe-waits")).env("CKPT_ATTACH_PROBE", "1");
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for_path(&wd.path.join("probe-running"), LONG, "the probe");
    p.signal(libc::SIGSTOP);
    // Pending for the process until the leader, the one thread, takes it.
    let sigstop = 1u64 << (libc::SIGSTOP - 1);
    wait_status(p.pid, "ShdPnd:", |v| u64::from_str_radix(v, 16).unwrap() & sigstop == 0, "SIGSTOP taken");
    std::fs::write(wd.path.join("probe-go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("status 0x70726f6265"), "{:?}", String::from_utf8_lossy(&out.stdout));
    wait_status(p.pid, "State:", |v| v.starts_with('T'), "stopped");
    assert_eq!(tracer(p.pid), 0);
    p.signal(libc::SIGCONT);
    goes_on(&p, 5);
}

/// A leader stopped inside an rseq critical section was preempted there, and the kernel would
/// send it to the section's abort handler on its return; it forgets the section once the
/// leader returns into ckpt's code instead, so ckpt does that itself: the registers the entry
/// gets (and that the leader is put back with) are at the abort handler, not inside the
/// section, where it would go on as if never preempted.
#[test]
fn a_leader_stopped_in_an_rseq_section_resumes_at_its_abort_handler() {
    let p = Proc::spawn(Command::new(prog("rseqspin", &[])), "rseqspin");
    let line = p.wait_lines(1, LONG)[0].clone();
    if line == "no rseq" {
        return skip("a_leader_stopped_in_an_rseq_section_resumes_at_its_abort_handler", "glibc registered no rseq");
    }
    let addr = |i: usize| u64::from_str_radix(line.split(' ').nth(i).unwrap().trim_start_matches("0x"), 16).unwrap();
    let (start, end, abort) = (addr(1), addr(2), addr(3));
    for _ in 0..5 {
        let out = checkpoint_cmd(p.pid).env("CKPT_ATTACH_PROBE", "1").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
        let hex = said.split("stopped at 0x").nth(1).unwrap_or_else(|| panic!("{said}"));
        let rip = u64::from_str_radix(&hex[..hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len())], 16).unwrap();
        assert!(!(start..end).contains(&rip), "the entry got the leader inside its section ({start:#x}..{end:#x}) at {rip:#x}");
        // It spins in the section; the few instructions from the abort handler back in are
        // the only others it runs.
        assert!(rip == abort || rip < start, "at {rip:#x}: {said}");
    }
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap().split(' ').nth(2), Some("R"), "it spins on");
}

/// The program goes on as if nothing had happened, with no tracer (or still its own, `was`).
fn untouched(p: &Proc, pid: u32, was: u32) {
    goes_on(p, 5);
    assert_eq!(tracer(pid), was, "its tracer");
}

#[test]
fn refuses_another_users_process() {
    if !can_be_another_user("refuses_another_users_process") {
        return;
    }
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(5, LONG);
    let out = as_nobody(&checkpoint_cmd(p.pid)).env("CKPT_LIBCKPT", libckpt()).output().unwrap();
    refused(&out, &format!("process {} belongs to another user: checkpoint it as its owner", p.pid));
    untouched(&p, p.pid, 0);
}

#[test]
fn refuses_a_setuid_program() {
    if !can_be_another_user("refuses_a_setuid_program") {
        return;
    }
    let wd = Workdir::new("attach-setuid");
    let exe = wd.path.join("attachee-setuid");
    std::fs::copy(prog("attachee", &[]), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut c = Command::new(&exe);
    c.args(["sleep", "3"]);
    let p = Proc::spawn(as_nobody(&c), "setuid attachee");
    p.wait_lines(5, LONG);
    assert!(status_field(p.pid, "Uid:").starts_with("65534\t0"), "a setuid-root program run by 65534");
    let out = as_nobody(&checkpoint_cmd(p.pid)).env("CKPT_LIBCKPT", libckpt()).output().unwrap();
    refused(&out, &format!("process {} is not dumpable", p.pid));
    untouched(&p, p.pid, 0);
}

#[test]
fn refuses_a_traced_process_naming_its_tracer() {
    let mut c = Command::new("strace");
    c.args(["-f", "-o", "/dev/null"]).arg(prog("attachee", &[])).args(["sleep", "3"]);
    let p = Proc::spawn(c, "strace attachee");
    p.wait_lines(5, LONG);
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", p.pid)).unwrap();
    let target: u32 = children.split_whitespace().next().expect("strace's child").parse().unwrap();
    assert_eq!(tracer(target), p.pid);
    let out = checkpoint_cmd(target).output().unwrap();
    refused(&out, &format!("process {target} is already traced by process {} (strace)", p.pid));
    untouched(&p, target, p.pid);
}

#[test]
fn refuses_a_process_under_a_seccomp_filter() {
    let p = Proc::spawn(Command::new(prog("seccomped", &[])), "seccomped");
    p.wait_lines(1, LONG);
    assert_eq!(status_field(p.pid, "Seccomp:"), "2");
    let out = checkpoint_cmd(p.pid).output().unwrap();
    refused(&out, &format!("process {} runs under a seccomp filter", p.pid));
    // A line a second: the next one shows it goes on.
    let n = p.lines().len();
    let lines = p.wait_lines(n + 1, LONG);
    assert!(lines.iter().enumerate().all(|(i, l)| *l == i.to_string()), "{lines:?}");
    assert_eq!(tracer(p.pid), 0);
}

#[test]
fn refuses_when_ckpt_may_not_use_ptrace() {
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(5, LONG);
    let mut c = Command::new(prog("noptrace", &[]));
    // The probe: the refusal comes before any entry is looked for.
    c.arg(ckpt()).args(["checkpoint", &p.pid.to_string()]).env("CKPT_ATTACH_PROBE", "1");
    let out = c.output().unwrap();
    refused(&out, "ptrace is not allowed to ckpt here");
    untouched(&p, p.pid, 0);
}

/// `ckpt inspect` of an attached image accepts it.
fn inspected(image: &std::path::Path) -> String {
    let out = Command::new(ckpt()).arg("inspect").arg(image).output().unwrap();
    assert!(out.status.success(), "ckpt inspect: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The counting every attachee does, far enough for any test.
fn counting() -> Vec<String> {
    (0..100_000).map(|n: u32| n.to_string()).collect()
}

/// `ckpt checkpoint PID --wait` of a program started without ckpt: the image is written and
/// passes `ckpt inspect`, the program goes on untouched; killed and restarted from the image,
/// it goes on counting from where it was checkpointed, as an uninterrupted run would. (It
/// waits in select, which a restart resumes: a nanosleep would return EINTR there, as the
/// design says of a call restarted through the restart block, and a timerfd comes back
/// disarmed.)
fn checkpoint_by_pid(test: &str, statically: bool) {
    let wd = Workdir::new(test);
    let image = wd.image();
    let mut p = Proc::spawn(attachee(statically, "select"), "attachee");
    p.wait_lines(20, LONG);
    let at_checkpoint = p.lines().len();
    let out = checkpoint_cmd(p.pid).args(["--wait", "--image"]).arg(&image).output().unwrap();
    assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{} ", image.display())), "{:?}", String::from_utf8_lossy(&out.stdout));
    untouched(&p, p.pid, 0);
    p.kill9();
    let at_kill = p.lines().len();
    inspected(&image);
    let mut restored = Proc::restart(&image);
    let after = restored.wait_lines(50, LONG);
    let from = assert_continues(&counting(), at_checkpoint, at_kill, &after);
    // The restored process is checkpointed again the same way, by the PID `myrestart` has,
    // and that image restarts too.
    let second = wd.path.join("second");
    let at_checkpoint = from + restored.lines().len();
    let out = checkpoint_cmd(restored.pid).args(["--wait", "--image"]).arg(&second).output().unwrap();
    assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    let n = restored.lines().len();
    let lines = restored.wait_lines(n + 5, LONG);
    assert_eq!(lines, counting()[from..from + lines.len()], "the restored process went on counting, untouched");
    restored.kill_tree();
    let at_kill = from + restored.lines().len();
    let again = Proc::restart(&second);
    assert_continues(&counting(), at_checkpoint, at_kill, &again.wait_lines(50, LONG));
}

#[test]
fn checkpoint_by_pid_of_a_dynamic_program_started_without_ckpt() {
    checkpoint_by_pid("checkpoint_by_pid_of_a_dynamic_program_started_without_ckpt", false);
}

#[test]
fn checkpoint_by_pid_of_a_static_program_started_without_ckpt() {
    checkpoint_by_pid("checkpoint_by_pid_of_a_static_program_started_without_ckpt", true);
}

/// `--kill`: the last checkpoint is written with the program stopped, and the program ends
/// there (SIGKILL) without running past its image.
#[test]
fn last_checkpoint_by_pid_ends_the_program() {
    let test = "last_checkpoint_by_pid_ends_the_program";
    let wd = Workdir::new(test);
    let image = wd.image();
    let mut p = Proc::spawn(attachee(true, "select"), "attachee");
    p.wait_lines(20, LONG);
    let out = checkpoint_cmd(p.pid).args(["--kill", "--image"]).arg(&image).output().unwrap();
    assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    let st = p.wait_exit(LONG);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
    let printed = p.lines().len();
    inspected(&image);
    // The image was taken after the last line the program printed: the restart goes on from
    // exactly there.
    let restored = Proc::restart(&image);
    let after = restored.wait_lines(20, LONG);
    assert_eq!(after[0], printed.to_string(), "the restart begins right after the last line printed");
    assert_continues(&counting(), printed, printed, &after);
}

/// A checkpoint that fails (the image's directory does not exist) says why, in one line with
/// status 1, and the program goes on untouched.
#[test]
fn a_failed_checkpoint_by_pid_says_why_and_the_program_goes_on() {
    let wd = Workdir::new("attach-fails");
    let image = wd.path.join("no-such-dir/myckpt");
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(20, LONG);
    let out = checkpoint_cmd(p.pid).args(["--wait", "--image"]).arg(&image).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("ckpt: the checkpoint of process {} failed: ", p.pid)) && err.contains("it goes on"), "{err}");
    untouched(&p, p.pid, 0);
    assert!(!image.exists());
}

/// A 32-bit program is refused before anything touches it (its registers are not x86-64's).
#[test]
fn refuses_a_32_bit_program() {
    let wd = Workdir::new("attach-32");
    let src = wd.path.join("spin32.c");
    std::fs::write(&src, "void _start(void) { for (;;) __asm__ volatile(\"pause\"); }\n").unwrap();
    let exe = wd.path.join("spin32");
    let built = Command::new("gcc").args(["-m32", "-nostdlib", "-static", "-o"]).arg(&exe).arg(&src).output().unwrap();
    if !built.status.success() {
        skip("refuses_a_32_bit_program", "gcc cannot build a 32-bit program here");
        return;
    }
    let mut p = std::process::Command::new(&exe).spawn().unwrap();
    let pid = p.id();
    let out = checkpoint_cmd(pid).output().unwrap();
    let still = p.try_wait().unwrap().is_none() && tracer(pid) == 0;
    let _ = p.kill();
    let _ = p.wait();
    refused(&out, &format!("process {pid} runs a 32-bit program"));
    assert!(still, "the program was touched");
}

/// A stopped process (SIGSTOP, Ctrl-Z) is refused, and stays as it was: stopped, untraced,
/// and counting on from where it was once continued.
#[test]
fn refuses_a_stopped_process() {
    let p = Proc::spawn(attachee(false, "sleep"), "attachee");
    p.wait_lines(5, LONG);
    p.signal(libc::SIGSTOP);
    let deadline = std::time::Instant::now() + LONG;
    while !status_field(p.pid, "State:").starts_with('T') {
        assert!(std::time::Instant::now() < deadline, "the program did not stop");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = checkpoint_cmd(p.pid).output().unwrap();
    refused(&out, &format!("process {} is stopped", p.pid));
    assert!(status_field(p.pid, "State:").starts_with('T'), "still stopped");
    p.signal(libc::SIGCONT);
    untouched(&p, p.pid, 0);
}

/// `--keep`, `--compress` and `--self-contained` reach the attached checkpoint (two
/// checkpoints keep the first as IMAGE.1; the images are compressed and hold the libraries'
/// pages), and are refused, by name, for a process under libckpt, which keeps its own settings.
#[test]
fn image_options_for_a_process_started_without_ckpt() {
    let test = "image_options_for_a_process_started_without_ckpt";
    let wd = Workdir::new(test);
    let image = wd.image();
    let p = Proc::spawn(attachee(false, "select"), "attachee");
    p.wait_lines(5, LONG);
    for _ in 0..2 {
        let out = checkpoint_cmd(p.pid).args(["--wait", "--keep", "1", "--compress", "--self-contained", "--image"]).arg(&image).output().unwrap();
        assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(wd.path.join("myckpt.1").exists(), "--keep 1 kept the first image");
    untouched(&p, p.pid, 0);
    // The C library's code is in the image, compressed.
    let text = inspected(&image);
    assert!(text.lines().any(|l| l.contains(" r-x ") && l.contains(" lz4 ") && l.contains("/libc.so")), "{text}");

    let pre = wd.path.join("preloaded");
    let q = Proc::preloaded(attachee(false, "select"), &pre, "preloaded attachee");
    q.wait_lines(5, LONG);
    let out = checkpoint_cmd(q.pid).arg("--compress").output().unwrap();
    refused(&out, &format!("process {} runs under libckpt, which takes its images with the settings it started with: --compress is for a process started without ckpt", q.pid));
}

/// `stopwaits` (tests/progs/stopwaits.c): threads asleep in epoll_wait, sigtimedwait and (the
/// leader) epoll_pwait, the calls a ptrace stop cuts short with EINTR, and a counter.
fn stopwaits(how: &[&str]) -> Command {
    let mut c = Command::new(prog("stopwaits", &["-pthread"]));
    c.args(how);
    c
}

/// Attached checkpoints cut no call short: the threads the stops interrupted in epoll_wait,
/// sigtimedwait and epoll_pwait (ckpt's stop of the leader, the capturing process's of the
/// others) call again, and the program, which has no handler, never sees EINTR (an ERROR
/// line), checkpoint after checkpoint; nor once restarted from the last image.
#[test]
fn attached_checkpoints_cut_no_call_short() {
    let wd = Workdir::new("attach-stopwaits");
    let image = wd.image();
    let mut p = Proc::spawn(stopwaits(&[]), "stopwaits");
    p.wait_lines(20, LONG);
    let mut at_checkpoint = 0;
    for _ in 0..4 {
        at_checkpoint = p.lines().len();
        let out = checkpoint_cmd(p.pid).args(["--wait", "--image"]).arg(&image).output().unwrap();
        assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
        goes_on(&p, 10);
    }
    p.kill9();
    let at_kill = p.lines().len();
    let restored = Proc::restart(&image);
    let after = restored.wait_lines(50, LONG);
    assert_continues(&counting(), at_checkpoint, at_kill, &after);
}

/// The same with the sleeping threads (and the counter) blocking every signal and calling the
/// kernel directly, in a program run with libckpt: its checkpoints capture them with ptrace,
/// and let them go calling again.
#[test]
fn preloaded_checkpoints_cut_no_call_of_a_thread_that_blocks_every_signal_short() {
    let wd = Workdir::new("preloaded-stopwaits");
    let image = wd.image();
    let mut p = Proc::preloaded(stopwaits(&["blockall"]), &image, "stopwaits");
    p.wait_lines(20, LONG);
    let mut at_checkpoint = 0;
    for _ in 0..4 {
        at_checkpoint = p.lines().len();
        p.checkpoint(&image, LONG);
        goes_on(&p, 10);
    }
    p.kill9();
    let at_kill = p.lines().len();
    let restored = Proc::restart(&image);
    let after = restored.wait_lines(50, LONG);
    assert_continues(&counting(), at_checkpoint, at_kill, &after);
}

/// The ckpt-writer processes writing a checkpoint of process `pid` (forks of it, with its
/// memory layout: the same `/proc/PID/stat` fields 26-28 and 48-51).
fn writers_of(pid: u32) -> Vec<u32> {
    let layout = |p: u32| -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let rest: Vec<String> = stat[stat.rfind(')')? + 2..].split(' ').map(String::from).collect();
        Some([26, 27, 28, 48, 49, 50, 51].iter().map(|&n| rest[n - 3].clone()).collect())
    };
    let mine = layout(pid);
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&w| w != pid && std::fs::read_to_string(format!("/proc/{w}/comm")).is_ok_and(|c| c.trim() == "ckpt-writer") && layout(w) == mine)
        .collect()
}

/// A second attached checkpoint of a process whose first is still being written is refused in
/// one line, the process untouched; once that writer is gone, the next one is taken.
#[test]
fn a_checkpoint_by_pid_while_the_last_is_written_is_refused() {
    let wd = Workdir::new("attach-twice");
    let image = wd.image();
    // A process with 512 MiB to write: its writer takes a while.
    let mut c = Command::new(prog("attachee", &[]));
    c.args(["select", "3", "512"]);
    let p = Proc::spawn(c, "attachee");
    p.wait_lines(20, LONG);
    let writers_gone = || {
        let deadline = std::time::Instant::now() + LONG;
        while !writers_of(p.pid).is_empty() {
            assert!(std::time::Instant::now() < deadline, "the writer did not end");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    let mut seen = false;
    for _ in 0..10 {
        // (A writer just started may not have its name yet when it is looked for: one is
        // waited for before the next try.)
        writers_gone();
        let out = checkpoint_cmd(p.pid).args(["--image"]).arg(&image).output().unwrap();
        assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
        if writers_of(p.pid).is_empty() {
            continue; // written already: try again
        }
        let second = checkpoint_cmd(p.pid).args(["--image"]).arg(wd.path.join("second")).output().unwrap();
        // Only if the writer was there all along does the refusal prove anything.
        if writers_of(p.pid).is_empty() {
            continue;
        }
        refused(&second, &format!("an earlier checkpoint of process {} is still being written", p.pid));
        seen = true;
        break;
    }
    assert!(seen, "the writer never outlasted the first checkpoint command");
    writers_gone();
    untouched(&p, p.pid, 0);
    let out = checkpoint_cmd(p.pid).args(["--wait", "--image"]).arg(&image).output().unwrap();
    assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
    untouched(&p, p.pid, 0);
}

/// ckpt's code runs with a new thread's floating-point controls and without alignment
/// checking, not the program's: `fpuspin` (tests/progs/fpuspin.c) rounds toward zero, flushes
/// to zero and has AC set, and the probe finds MXCSR 0x1f80, the x87 control word 0x37f and AC
/// clear. The program's own come back exactly: it checks them all the time (an ERROR line and
/// its end if one changed), and spins on.
#[test]
fn ckpts_code_runs_with_its_own_floating_point_controls_and_the_programs_come_back() {
    let p = Proc::spawn(Command::new(prog("fpuspin", &[])), "fpuspin");
    p.wait_lines(1, LONG);
    // It has spun a while (two clock ticks of CPU time): its controls are set.
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap();
        let tail = &stat[stat.rfind(')').unwrap() + 2..];
        let ticks: u64 = tail.split(' ').skip(11).take(2).map(|t| t.parse::<u64>().unwrap()).sum();
        if ticks >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "it does not spin");
        std::thread::yield_now();
    }
    for _ in 0..5 {
        let out = checkpoint_cmd(p.pid).env("CKPT_ATTACH_PROBE", "1").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ckpt: {}", String::from_utf8_lossy(&out.stderr));
        assert!(said.contains(", mxcsr 0x1f80 fcw 0x37f eflags 0x"), "{said}");
        let flags = said.split("eflags 0x").nth(1).unwrap();
        let flags = u64::from_str_radix(&flags[..flags.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(flags.len())], 16).unwrap();
        assert_eq!(flags & 0x4_0000, 0, "AC set: {said}");
    }
    assert_eq!(p.lines(), ["ready"], "stderr {:?}", p.stderr());
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap().split(' ').nth(2), Some("R"), "it spins on");
}
