//! Images of processes that had no libckpt (`FLAG_ATTACHED`: myrestart resumes them through a
//! page of its own, `[anon:ckpt-resume]`, or `/memfd:ckpt-resume (deleted)` on a kernel without
//! names for anonymous memory) and of programs that call `madvise` past libc
//! (`FLAG_RAW_MADVISE`: their private anonymous memory is restored eagerly).
//!
//! `ckpt` cannot attach to a process yet, so these images are made from a preloaded program's:
//! the flag set, the trampolines cleared, the header checksum made again ([`restated`]). libckpt
//! is then still in the restored memory, but nothing at the restart uses it.
#![deny(unsafe_code)]

use ckpt_image::region::is_resume_page;
use ckpt_image::state::{FLAG_ATTACHED, FLAG_RAW_MADVISE};
use ckpt_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `bytes`, an image of a preloaded program, made into one of a process ckpt attached to.
fn attached(bytes: &[u8]) -> Vec<u8> {
    restated(bytes, |s| {
        s.flags |= FLAG_ATTACHED;
        (s.resume_trampoline, s.thread_trampoline) = (0, 0);
    })
}

/// Rewrites the image at `path` in place with `f`.
fn rewrite(path: &Path, f: impl FnOnce(&[u8]) -> Vec<u8>) {
    let new = f(&std::fs::read(path).unwrap());
    std::fs::write(path, new).unwrap();
}

/// One line of `/proc/PID/maps`: start, end, permissions, name.
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    name: String,
}

fn maps(pid: u32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, ' ').collect();
            let (s, e) = f[0].split_once('-').unwrap();
            Mapping {
                start: u64::from_str_radix(s, 16).unwrap(),
                end: u64::from_str_radix(e, 16).unwrap(),
                perms: f[1].to_string(),
                name: f.get(5).map_or("", |n| n.trim()).to_string(),
            }
        })
        .collect()
}

/// The image's regions, as `(start, end)`.
fn image_regions(image: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(image).unwrap();
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    (0..img.region_count()).map(|i| img.region(i).unwrap().record).map(|r| (r.start, r.end)).collect()
}

/// The restored process `pid` holds the image's memory and the resume page (its code, read and
/// execute; its counters, read and write), and nothing else: no block of myrestart's, no
/// mapping of libckpt's it would have made at a restart. Returns the resume page's range.
fn only_image_and_resume_page(pid: u32, image: &Path) -> (u64, u64) {
    let regions = image_regions(image);
    let m = maps(pid);
    let page: Vec<&Mapping> = m.iter().filter(|l| is_resume_page(l.name.as_bytes())).collect();
    let shown: Vec<String> = m.iter().map(|l| format!("{:x}-{:x} {} {}", l.start, l.end, l.perms, l.name)).collect();
    assert_eq!(page.len(), 2, "the resume page's two parts in the restored process's maps: {shown:#?}");
    assert!(page[0].perms.starts_with("r-x") && page[1].perms.starts_with("rw-") && page[0].end == page[1].start, "{shown:#?}");
    assert_eq!(page[1].end - page[0].start, 8192, "{shown:#?}");
    for l in m.iter().filter(|l| !is_resume_page(l.name.as_bytes())) {
        // Restored regions next to each other may be one mapping now: covered, in pieces, by
        // the image's regions.
        let mut at = l.start;
        for &(s, e) in &regions {
            if s <= at && at < e {
                at = e;
            }
        }
        assert!(at >= l.end, "{:x}-{:x} {} is not memory of the image: {shown:#?}", l.start, l.end, l.name);
    }
    (page[0].start, page[1].end)
}

fn turns(rounds: &str) -> Command {
    let mut c = Command::new(prog("turns", &["-pthread", "-g"]));
    c.args(["4", rounds]);
    c
}

/// Runs `turns` preloaded, checkpoints it after `at` lines, kills it and makes its image one of
/// an attached process. Returns the reference output and the lines seen at the checkpoint and
/// at the kill.
fn attached_turns(wd: &Workdir, rounds: &str, at: usize) -> (Vec<String>, usize, usize) {
    let reference = reference_run(turns(rounds), LONG);
    let mut orig = Proc::preloaded(turns(rounds), &wd.image(), "turns");
    orig.wait_lines(at, SHORT);
    let at_ckpt = orig.lines().len();
    orig.checkpoint(&wd.image(), LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 3, SHORT);
    orig.kill9();
    rewrite(&wd.image(), attached);
    (reference, at_ckpt, orig.lines().len())
}

/// (a) Five threads, each with its own count, resumed through the resume page: the output
/// continues exactly as an uninterrupted run's, and the restored process holds the image's
/// memory and the resume page only. Checkpointed again (libckpt is in this program, though
/// the restart did not use it), the new image leaves the resume page out, and restarts.
#[test]
fn an_attached_image_resumes_every_thread_through_the_resume_page() {
    let wd = Workdir::new("attached-turns");
    let image = wd.image();
    let (reference, at_ckpt, at_kill) = attached_turns(&wd, "500", 40);
    let restored = Proc::restart(&image);
    restored.wait_lines(8, LONG);
    let pid = restored.program_pid();
    let page = only_image_and_resume_page(pid, &image);
    assert_eq!(std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count(), 5, "every thread restored");
    let c = assert_continues(&reference, at_ckpt, at_kill, &restored.lines());

    // Checkpointed again: the resume page is not part of the new image, which restarts.
    let mut restored = restored;
    let at2 = restored.lines().len();
    restored.checkpoint(&image, LONG);
    let n = restored.lines().len();
    restored.wait_lines(n + 3, SHORT);
    restored.kill9();
    let kill2 = restored.lines().len();
    let regions = image_regions(&image);
    assert!(!regions.iter().any(|&(s, e)| s < page.1 && page.0 < e), "the new image holds the resume page {page:x?}: {regions:x?}");
    let mut second = Proc::restart(&image);
    assert!(second.wait_exit(LONG).success(), "{}", second.stderr());
    assert_continues(&reference, c + at2, c + kill2, &second.lines());
}

/// (b) `--stopped`: the restored process stops with its leader at `__restore_rt` in the resume
/// page (`mov rax, 15; syscall`), which gdb unwinds as a signal return into the program; on
/// SIGCONT it goes on exactly.
#[test]
fn an_attached_image_restarts_stopped_at_the_resume_pages_restore_rt() {
    let wd = Workdir::new("attached-stopped");
    let image = wd.image();
    let (reference, at_ckpt, at_kill) = attached_turns(&wd, "300", 40);
    let mut c = Command::new(myrestart());
    c.arg("--stopped").arg(&image);
    let mut restored = Proc::spawn(c, "myrestart --stopped");
    let pid = restored.program_pid();
    let deadline = Instant::now() + SHORT;
    while !std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().contains("State:\tT") {
        assert!(Instant::now() < deadline, "the restored process did not stop; stderr {:?}", restored.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    let page = only_image_and_resume_page(pid, &image);
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", "p/x $pc", "-ex", "x/2i $pc", "-ex", "bt", "-ex", "detach"]).output().unwrap();
    let out = String::from_utf8_lossy(&gdb.stdout);
    let pc = out.lines().find_map(|l| l.strip_prefix("$1 = 0x")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or_else(|| panic!("no pc from gdb:\n{out}"));
    assert!(page.0 <= pc && pc < page.0 + 4096, "stopped at {pc:#x}, not in the resume page's code {page:x?}:\n{out}");
    assert!(out.contains("mov    $0xf,%rax") && out.contains("syscall"), "not at rt_sigreturn:\n{out}");
    assert!(out.contains("<signal handler called>") && out.contains("in main"), "gdb -p bt:\n{out}\n{}", String::from_utf8_lossy(&gdb.stderr));
    assert!(std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap().contains("State:\tT"), "gdb let the process run");
    assert!(restored.stdout_text().is_empty(), "the stopped process printed");
    send_signal(pid as i32, libc::SIGCONT);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_continues(&reference, at_ckpt, at_kill, &restored.lines());
}

/// The verdict of `rawmadvise` restarted from `image` once `go` exists, and whether its buffer
/// was mapped from the image file when it was restored.
fn rawmadvise_restart(image: &Path, go: &Path, buf: u64) -> (String, bool) {
    let _ = std::fs::remove_file(go);
    let mut restored = Proc::restart(image);
    let n = restored.lines().len();
    restored.wait_lines(n + 1, LONG);
    let pid = restored.program_pid();
    let m = maps(pid);
    let line = m.iter().find(|l| l.start <= buf && buf < l.end).expect("the buffer is mapped");
    let from_image = line.name == image.to_str().unwrap();
    std::fs::write(go, "").unwrap();
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    (restored.lines().last().cloned().unwrap_or_default(), from_image)
}

/// (c) A program that drops memory with the `madvise` system call past libc: restored from an
/// image with `FLAG_RAW_MADVISE` or `FLAG_ATTACHED`, its anonymous memory is anonymous again
/// (read eagerly) and reads as zeros after `MADV_DONTNEED`, as the kernel promises. An image
/// without either flag keeps the mapped restore (the image file behind the memory).
#[test]
fn raw_madvise_reads_zeros_after_a_restart_with_the_flags() {
    let wd = Workdir::new("rawmadvise");
    let image = wd.image();
    let go = wd.path.join("go");
    let mut c = Command::new(prog("rawmadvise", &[]));
    c.arg(&go);
    let mut orig = Proc::preloaded(c, &image, "rawmadvise");
    let lines = orig.wait_until(|l| l.len() >= 2, SHORT, "ready and a wait");
    let buf = u64::from_str_radix(lines[0].split(' ').nth(1).unwrap().trim_start_matches("0x"), 16).unwrap();
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let plain = std::fs::read(&image).unwrap();

    let (verdict, from_image) = rawmadvise_restart(&image, &go, buf);
    assert!(from_image && verdict.starts_with("stale "), "without the flags: mapped from the image ({from_image}), {verdict}");
    std::fs::write(&image, restated(&plain, |s| s.flags |= FLAG_RAW_MADVISE)).unwrap();
    let (verdict, from_image) = rawmadvise_restart(&image, &go, buf);
    assert!(!from_image && verdict == "zeros", "FLAG_RAW_MADVISE: mapped from the image ({from_image}), {verdict}");
    std::fs::write(&image, attached(&plain)).unwrap();
    let (verdict, from_image) = rawmadvise_restart(&image, &go, buf);
    assert!(!from_image && verdict == "zeros", "FLAG_ATTACHED: mapped from the image ({from_image}), {verdict}");
}

/// (d) The trampolines must match the flag: an attached process's image that names them, and
/// another that does not, are refused with one line before anything runs.
#[test]
fn trampolines_that_do_not_match_the_attached_flag_are_refused() {
    let wd = Workdir::new("attached-crafted");
    let image = wd.image();
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]);
    checkpointed(c, &wd, 3);
    let plain = std::fs::read(&image).unwrap();
    std::fs::write(&image, restated(&plain, |s| s.flags |= FLAG_ATTACHED)).unwrap();
    refused_leaving_unchanged(&image, &wd.path, "an image of an attached process names resume trampolines");
    std::fs::write(&image, restated(&plain, |s| (s.resume_trampoline, s.thread_trampoline) = (0, 0))).unwrap();
    refused_leaving_unchanged(&image, &wd.path, "no resume trampoline, but the image is not of an attached process");
    std::fs::write(&image, restated(&plain, |s| s.thread_trampoline = 0)).unwrap();
    refused_leaving_unchanged(&image, &wd.path, "no resume trampoline, but the image is not of an attached process");
}
