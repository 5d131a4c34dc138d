//! Pseudo-terminals whose two ends are in the image, as under `script`, `tmux` or `expect`: a
//! parent holding the master and a child on the slave, its controlling terminal, checkpointed
//! as a tree, killed, restarted: the pair is made again with its termios and window size, the
//! child's session has it as its terminal with the same foreground group, and the bytes queued
//! in it each way at the checkpoint arrive.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::Path;
use std::process::Command;

/// Leaves `line` for the parent to write into the master (`tests/progs/ptypair.c`).
fn say(dir: &Path, line: &str) {
    let tmp = dir.join("say.tmp");
    std::fs::write(&tmp, format!("{line}\n")).unwrap();
    std::fs::rename(&tmp, dir.join("say")).unwrap();
}

/// The counts the child printed, in the order the parent relayed them.
fn counts(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.strip_prefix("count ")?.parse().ok()).collect()
}

/// What the child last wrote to DIR/progress: its mode and its count.
fn progress(dir: &Path) -> (String, u64) {
    let text = std::fs::read_to_string(dir.join("progress")).unwrap_or_default();
    let mut it = text.split_whitespace();
    (it.next().unwrap_or("").to_string(), it.next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

fn wait_progress(dir: &Path, what: &str, pred: impl Fn(&str, u64) -> bool) {
    let deadline = std::time::Instant::now() + LONG;
    while !{
        let (mode, n) = progress(dir);
        pred(&mode, n)
    } {
        assert!(std::time::Instant::now() < deadline, "the child never reached {what}: {:?}", progress(dir));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn line_starting<'a>(lines: &'a [String], prefix: &str) -> Option<&'a String> {
    lines.iter().find(|l| l.starts_with(prefix))
}

/// The child counts through the pty after the restart from exactly where it was (the counts
/// it had written that the parent had not read yet were in the pty), reads the line the
/// parent had written into the master before the checkpoint and a line written after, and
/// sees the same terminal: still a tty on 0, 1 and 2, its session's controlling terminal with
/// its own group in the foreground, the same termios and window size.
#[test]
fn a_child_on_its_parents_pty_continues_through_it_with_the_bytes_queued() {
    relayed_through_a_pty(false);
}

/// As above, the counter running as a job of a shell on the pty: in a process group of its
/// own, the terminal's foreground, below the session's leader; that group is the foreground
/// again after the restart.
#[test]
fn a_job_in_the_foreground_of_a_pty_is_the_foreground_again() {
    relayed_through_a_pty(true);
}

fn relayed_through_a_pty(job: bool) {
    let wd = Workdir::new("pty-pair");
    let dir = wd.path.clone();
    let mut cmd = Command::new(prog("ptypair", &[]));
    cmd.arg(&dir);
    if job {
        cmd.arg("job");
    }
    let mut orig = Proc::preloaded(cmd, &wd.image(), "ptypair");
    orig.wait_until(|l| counts(l).len() >= 5, SHORT, "five counts");
    say(&dir, "info");
    let lines = orig.wait_until(|l| line_starting(l, "info ").is_some(), SHORT, "the child's terminal");
    let info = line_starting(&lines, "info ").unwrap().clone();
    let lines = orig.wait_until(|l| line_starting(l, "ttyname ").is_some(), SHORT, "the child's terminal's name");
    let name = line_starting(&lines, "ttyname /dev/pts/").unwrap_or_else(|| panic!("{lines:?}")).clone();
    let leader = if job { 0 } else { 1 };
    assert!(info.starts_with(&format!("info tty=111 fg=1 ctty=1 leader={leader} ")), "{info}");
    say(&dir, "before");
    orig.wait_until(|l| l.iter().any(|l| l == "child got: before"), SHORT, "the first line to reach the child");
    // The parent stops reading the master; the child goes on writing into it.
    std::fs::write(dir.join("hold"), "").unwrap();
    let lines = orig.wait_until(|l| l.iter().any(|l| l == "parent holding"), SHORT, "the parent to hold");
    let relayed = *counts(&lines).last().unwrap();
    wait_progress(&dir, "five counts queued in the pty", |_, n| n >= relayed + 5);
    // The child stops reading; a line goes into the master for it.
    std::fs::write(dir.join("deaf"), "").unwrap();
    wait_progress(&dir, "deafness", |m, _| m == "deaf");
    say(&dir, "queued");
    orig.wait_until(|l| l.iter().any(|l| l == "parent wrote queued"), SHORT, "the line written into the master");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let before = orig.lines();
    // `ckpt inspect` names the root's master, the session its pair controls, the bytes queued.
    let inspect = Command::new(ckpt()).arg("inspect").arg(wd.image()).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    let master = text.lines().find(|l| l.contains("pty master of /dev/pts/")).unwrap_or_else(|| panic!("{text}"));
    assert!(master.contains("terminal of session") && master.contains("bytes queued to the slave"), "{master}");
    assert_eq!(counts(&before).last(), Some(&relayed), "a count was relayed while the parent held: {before:?}");

    let mut restored = Proc::restart(&wd.image());
    std::fs::remove_file(dir.join("hold")).unwrap();
    std::fs::remove_file(dir.join("deaf")).unwrap();
    restored.wait_until(|l| l.iter().any(|l| l == "child got: queued"), LONG, "the line queued at the checkpoint to reach the child");
    say(&dir, "after");
    restored.wait_until(|l| l.iter().any(|l| l == "child got: after"), SHORT, "a line written after the restart to reach the child");
    say(&dir, "info");
    let after = restored.wait_until(|l| line_starting(l, "info ").is_some(), SHORT, "the child's terminal after the restart");
    assert_eq!(line_starting(&after, "info ").unwrap(), &info, "the child's terminal changed; stderr {:?}", restored.stderr());
    // The pair keeps its number, or the restart says which it has now.
    let after = restored.wait_until(|l| line_starting(l, "ttyname ").is_some(), SHORT, "the child's terminal's name after the restart");
    let name_now = line_starting(&after, "ttyname ").unwrap();
    let moved = format!("comes back as {}", name_now.trim_start_matches("ttyname "));
    assert!(name_now == &name || restored.stderr().contains(&moved), "{name} is now {name_now}; stderr {:?}", restored.stderr());
    say(&dir, "quit");
    let st = restored.wait_exit(LONG);
    let after = restored.lines();
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_eq!(after.last().map(String::as_str), Some("parent: child exit 0"), "{after:?}");
    // Every count once, in order: those queued in the pty at the checkpoint came out first.
    let all: Vec<u64> = counts(&before).into_iter().chain(counts(&after)).collect();
    let first_after = counts(&after).first().copied();
    assert_eq!(first_after, Some(relayed + 1), "the counts queued in the pty were lost; after: {after:?}");
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "a count lost or repeated: {all:?}");
}

/// One process holding both ends of a pair, with a line queued each way at every moment: the
/// restarted process reads every line once and in order, its slave has the termios and window
/// size it set, and a second pair it holds idle is still locked and in packet mode (the output
/// is an uninterrupted run's from the checkpoint on).
#[test]
fn a_process_holding_both_ends_continues_with_a_line_queued_each_way() {
    let wd = Workdir::new("pty-self");
    let make = || {
        let mut c = Command::new(prog("ptyself", &[]));
        c.arg("400");
        c
    };
    checkpoint_kill_restart_matches(make, 60, &wd);
}

/// The pair's old number is taken at the restart (held here): the pair comes back under
/// another, the restart says which in one line, and the program goes on through it.
#[test]
#[allow(unsafe_code)] // posix_openpt and ioctl, to hold a pty
fn a_pair_whose_number_is_taken_comes_back_under_another() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let wd = Workdir::new("pty-taken");
    let make = || {
        let mut c = Command::new(prog("ptyself", &[]));
        c.arg("300");
        c
    };
    let orig = checkpointed(make(), &wd, 40);
    let at_kill = orig.lines().len();
    let inspect = Command::new(ckpt()).arg("inspect").arg(wd.image()).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    let number: u32 = text.lines().find_map(|l| l.split("pty master of /dev/pts/").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    // Hold that number: open masters until the kernel gives it (or a higher one: then another
    // program holds it, which does as well).
    let mut held = Vec::new();
    for _ in 0..64 {
        // SAFETY: posix_openpt returns a new descriptor of ours (or -1), owned from here.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        // SAFETY: as above.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int, which outlives the call.
        assert_eq!(unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::TIOCGPTN, &mut n) }, 0);
        held.push(fd);
        if n >= number {
            break;
        }
    }
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert!(restored.stderr().contains(&format!("pseudo-terminal {number} comes back as /dev/pts/")), "{:?}", restored.stderr());
    // From the checkpoint on, exactly what an uninterrupted run prints.
    let reference = reference_run(make(), LONG);
    assert_continues(&reference, 40, at_kill, &restored.lines());
    drop(held);
}

/// A process holding 100 pairs (more than the fixed table of 64 myrestart had, which refused
/// the restart): every pair comes back (its myrestart's table is sized from the image), and
/// each passes a line from its master to its slave after the restart, as in an uninterrupted
/// run.
#[test]
fn a_process_holding_a_hundred_pairs_gets_every_one_back() {
    let wd = Workdir::new("pty-many");
    let make = || {
        let mut c = Command::new(prog("manyptys", &[]));
        c.args(["100", "60"]);
        c
    };
    checkpoint_kill_restart_matches(make, 20, &wd);
}

/// A pair filled each way with as many bytes as it holds: the restart puts them all back (the
/// program reads as many at the end as an uninterrupted run); and an image whose record says
/// all of them go one way, more than a pair holds, is refused in one line (a restart that
/// wrote them with blocking writes waited forever for a reader that is not there yet).
#[test]
fn a_full_pair_comes_back_full_and_an_overfull_one_is_refused() {
    use ckpt_image::bytes::{Reader, Writer};
    use ckpt_image::pty::{PtyRecord, PTY_RECORD_SIZE};
    let wd = Workdir::new("pty-full");
    let make = || {
        let mut c = Command::new(prog("ptyfull", &[]));
        c.arg("60");
        c
    };
    // Checkpointed and going on: the checkpoint took the bytes out and put every one back.
    let reference = reference_run(make(), LONG);
    let mut kept = Proc::preloaded(make(), &wd.path.join("kept-image"), "ptyfull");
    kept.wait_lines(20, SHORT);
    kept.checkpoint(&wd.path.join("kept-image"), LONG);
    assert!(kept.wait_exit(LONG).success(), "{}", kept.stderr());
    assert_eq!(kept.lines().last(), reference.last(), "the checkpoint lost bytes of the pair: {}", kept.stderr());
    checkpoint_kill_restart_matches(make, 20, &wd);
    // The same image, its record's two lengths made one (the bytes stay where they are).
    let mut bytes = std::fs::read(wd.image()).unwrap();
    let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let image = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    let (at, len) = [ckpt_image::NT_CKPT_PTYS, ckpt_image::NT_CKPT_PTYS | ckpt_image::NT_CKPT_IGNORABLE]
        .iter()
        .find_map(|&t| image.note_range(ckpt_image::CKPT_NOTE_NAME, t))
        .map(|r| (r.start, r.end - r.start))
        .expect("a pty note");
    let mut r = Reader::new(&bytes[at..at + len]);
    let (rec, a, b) = PtyRecord::read(&mut r).unwrap();
    assert!(rec.is_master() && a.len() > 1000 && b.len() > 1000, "not full each way: {} and {} bytes", a.len(), b.len());
    let (total, fake) = (a.len() + b.len(), vec![0u8; a.len() + b.len()]);
    let mut whole = vec![0u8; PTY_RECORD_SIZE + total + 8];
    rec.write(&mut Writer::new(&mut whole), &fake, &[]);
    bytes[at..at + PTY_RECORD_SIZE].copy_from_slice(&whole[..PTY_RECORD_SIZE]);
    ckpt_image::seal(&mut bytes[..meta_len]).unwrap();
    let path = wd.path.join("overfull");
    std::fs::write(&path, &bytes).unwrap();
    let out = run_within({
        let mut c = Command::new(myrestart());
        c.arg(&path);
        c
    }, LONG);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err:?}");
    // One refusal; a pair whose number another process holds now (a terminal of the tests
    // running beside this one) is named too, on a line of its own, before it.
    let refusal: Vec<&str> = err.lines().filter(|l| !l.contains("comes back as /dev/pts/")).collect();
    assert_eq!(refusal.len(), 1, "{err:?}");
    assert!(err.contains("do not fit"), "{err:?}");
    assert!(out.stdout.is_empty(), "the program ran");
}
