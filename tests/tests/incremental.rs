//! Incremental checkpoints: a later image stores only the pages written since the one before,
//! and names older images (its bases) for the rest. Every generation restarts to its own state;
//! a base that is missing, rewritten or damaged is refused by name.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// Restarts `image` (with `args`), lets it print a few steps and checks each against the
/// uninterrupted run: the same step has the same checksum.
fn restarts_right(image: &Path, args: &[&str], reference: &[String]) {
    let mut cmd = Command::new(myrestart());
    cmd.args(args).arg(image);
    let mut r = Proc::spawn(cmd, &format!("myrestart {args:?} {}", image.display()));
    let lines = r.wait_until(|l| l.len() >= 6, LONG, "six steps after the restart");
    r.kill9();
    for l in &lines {
        let s = step_of(l);
        assert_eq!(Some(l), reference.get(s - 1), "{}: step {s} differs from the uninterrupted run", image.display());
    }
}

#[test]
fn every_generation_of_incremental_images_restarts_to_its_own_state() {
    let wd = Workdir::new("incr-gens");
    // Pages rewritten, dropped (MADV_DONTNEED), a region unmapped and mapped again, brk grown.
    let reference = reference_run(changing(16, 400, 0, true), LONG);
    let images = generations(&wd, true, 4).images;
    // The first image is full; the later ones hold only what changed.
    let full = allocated(&images[0]);
    assert!(full > 16 << 20, "first image holds the buffer: {full} bytes");
    for img in &images[1..] {
        let a = allocated(img);
        assert!(a < full / 4, "{} is not incremental: {a} bytes allocated of a full {full}", img.display());
    }
    assert!(!base_files(&wd).is_empty(), "no base files kept");
    let inspect = Command::new(ckpt()).arg("inspect").arg(&images[3]).output().unwrap();
    assert!(inspect.status.success(), "inspect: {}", String::from_utf8_lossy(&inspect.stderr));
    // Reading memory back into fresh anonymous memory keeps MADV_DONTNEED's zeros exact.
    for img in &images {
        restarts_right(img, &["--eager"], &reference);
    }
}

/// Restored mapped (the default), memory is a private mapping of the image: a page the
/// program drops with MADV_DONTNEED must still read back as zeros, not as the image's bytes.
#[test]
fn incremental_images_restart_mapped_too_and_dropped_pages_read_as_zeros() {
    let wd = Workdir::new("incr-mapped");
    let reference = reference_run(changing(16, 400, 0, true), LONG);
    let images = generations(&wd, true, 3).images;
    for img in &images {
        restarts_right(img, &[], &reference);
    }
}

fn refused_naming(image: &Path, name: &str, why: &str) {
    let mut r = Proc::restart(image);
    let st = r.wait_exit(LONG);
    let err = r.stderr();
    assert_eq!(st.code(), Some(2), "{why}: myrestart should refuse; stderr {err}");
    assert!(err.contains(name), "{why}: the refusal does not name the base {name}: {err}");
}

#[test]
fn a_missing_rewritten_or_damaged_base_is_refused_by_name() {
    let (_wd, newest, base) = two_image_chain("incr-bases");
    let newest = &newest;
    let name = base.file_name().unwrap().to_string_lossy().into_owned();
    let saved = std::fs::read(&base).unwrap();

    // A flipped bit in its memory (the middle of the file is the 16 MiB buffer, whose region
    // the newer image's runs point into): found by the region hashes.
    let mut bytes = saved.clone();
    let mid = bytes.len() / 2;
    let at = (mid..bytes.len()).find(|&i| bytes[i] != 0).expect("a stored byte");
    bytes[at] ^= 1;
    std::fs::remove_file(&base).unwrap();
    std::fs::write(&base, &bytes).unwrap();
    refused_naming(newest, &name, "damaged base");

    // Rewritten: another image under its name.
    std::fs::remove_file(&base).unwrap();
    std::fs::copy(newest, &base).unwrap();
    refused_naming(newest, &name, "rewritten base");

    // Missing.
    std::fs::remove_file(&base).unwrap();
    refused_naming(newest, &name, "missing base");

    // Put back as it was: it restarts.
    std::fs::write(&base, &saved).unwrap();
    let mut r = Proc::restart(newest);
    r.wait_lines(3, LONG);
    r.kill9();
}

#[test]
fn a_program_using_userfaultfd_itself_keeps_working() {
    let wd = Workdir::new("incr-uffd");
    let image = wd.image();
    let mut orig = Proc::preloaded(Command::new(prog("ownuffd", &[])), &image, "ownuffd");
    orig.wait_lines(3, LONG);
    // The first checkpoint starts tracking the program's memory.
    orig.checkpoint(&image, LONG);
    orig.signal(libc::SIGUSR1);
    let lines = orig.wait_until(|l| l.iter().any(|x| x.starts_with("register")), LONG, "the program's own registration");
    assert!(lines.iter().any(|l| l == "registered"), "the program could not register its memory: {lines:?}");
    orig.wait_stderr("the program uses userfaultfd itself", LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 2, LONG);
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let sum = |l: &String| l.split(' ').nth(2).map(str::to_string);
    let expect = orig.lines().iter().rev().find(|l| l.starts_with("tick")).and_then(sum);
    let mut r = Proc::restart(&image);
    let after = r.wait_lines(3, LONG);
    r.kill9();
    assert!(after.iter().all(|l| l.starts_with("tick") && sum(l) == expect), "restart went wrong: {after:?}");
}

/// A program that registers its memory for write-protection with a userfaultfd of its own
/// through the raw system call, which libckpt's `ioctl` never sees, and nobody reading that
/// userfaultfd: libckpt must never protect that memory (the program's next write would wait
/// for good). It ticks on through checkpoints, which are full images from the first (libckpt
/// says why), and its last image restarts.
#[test]
fn a_program_with_its_own_write_protection_past_libc_keeps_running() {
    let wd = Workdir::new("incr-uffd-raw");
    let image = wd.image();
    let mut orig = Proc::preloaded(cmd_of(prog("ownuffd", &[]), &["raw-wp"]), &image, "ownuffd raw-wp");
    orig.wait_lines(3, LONG);
    for _ in 0..3 {
        orig.checkpoint(&image, LONG);
        let n = orig.lines().len();
        orig.wait_lines(n + 3, LONG);
    }
    orig.wait_stderr("the program uses userfaultfd itself", LONG);
    orig.kill9();
    let last = orig.lines().iter().rev().find_map(|l| l.strip_prefix("tick ").and_then(|t| t.split(' ').next()?.parse::<u32>().ok())).unwrap();
    let mut r = Proc::restart(&image);
    let after = r.wait_lines(3, LONG);
    r.kill9();
    assert!(after.iter().all(|l| l.starts_with("tick ")), "restart went wrong: {after:?}");
    let first: u32 = after[0].split(' ').nth(1).and_then(|t| t.parse().ok()).unwrap();
    assert!(first <= last, "the restored program did not go on from a checkpoint: {first} after {last}");
}

fn cmd_of(path: std::path::PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(path);
    c.args(args);
    c
}

/// A restored process takes incremental images too: its memory, mapped from the image it was
/// restored from, is tracked again, so its first checkpoint is full and the next one holds only
/// what changed (naming a base); that image restarts to its own state.
#[test]
fn checkpoints_after_a_restart_are_incremental_again() {
    let wd = Workdir::new("incr-after-restart");
    let image = wd.image();
    let reference = reference_run(changing(16, 400, 0, true), LONG);
    let _ = generations(&wd, true, 2);
    // Restored the default way (memory mapped from the image), it goes on from there.
    let mut restored = Proc::restart(&image);
    let mut images = Vec::new();
    for g in 0..2 {
        let n = restored.lines().len();
        restored.wait_lines(n + 4, LONG);
        restored.checkpoint(&image, LONG);
        let kept = wd.path.join(format!("after-restart-{g}"));
        std::fs::hard_link(&image, &kept).unwrap();
        images.push(kept);
    }
    restored.kill9();
    assert!(!restored.stderr().contains("incremental checkpoints are off"), "{}", restored.stderr());
    let (first, second) = (allocated(&images[0]), allocated(&images[1]));
    assert!(first > 16 << 20, "the first image after the restart holds the buffer: {first} bytes");
    assert!(second < first / 4, "the second image after the restart is not incremental: {second} bytes allocated of a full {first}");
    let inspect = Command::new(ckpt()).arg("inspect").arg(&image).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success() && text.contains("built on"), "the image names no base: {text}");
    restarts_right(&image, &[], &reference);
    restarts_right(&image, &["--eager"], &reference);
}

/// Runs `scattered MIB MODE` preloaded and takes an image before its first round of writes and
/// one after each of `rounds` rounds, each kept under a name of its own (`gen-K`, a hard link).
/// Returns the images, for each the bytes its round wrote (a page each write), and what the
/// program said on stderr (with `CKPT_TIMES=1`).
fn scattered_chain(wd: &Workdir, mib: u32, mode: &str, rounds: u32) -> (Vec<PathBuf>, Vec<u64>, String) {
    scattered_chain_with(wd, mib, mode, rounds, &[])
}

/// [`scattered_chain`], the program run with `env` set too.
fn scattered_chain_with(wd: &Workdir, mib: u32, mode: &str, rounds: u32, env: &[(&str, &str)]) -> (Vec<PathBuf>, Vec<u64>, String) {
    let image = wd.image();
    let mut cmd = Command::new(prog("scattered", &["-O2"]));
    cmd.arg(mib.to_string()).arg(mode).arg(&wd.path).env("CKPT_TIMES", "1").envs(env.iter().copied());
    let mut orig = Proc::preloaded(cmd, &image, "scattered");
    let ready = |round: u32| {
        let lines = orig.wait_until(|l| l.iter().any(|x| x.starts_with(&format!("ready {round} ")) || x.starts_with("BAD")), LONG, "the next round");
        let line = lines.iter().find(|x| x.starts_with(&format!("ready {round} ")) || x.starts_with("BAD")).unwrap().clone();
        assert!(line.starts_with("ready"), "{line}");
        line.split(' ').nth(2).unwrap().parse::<u64>().unwrap()
    };
    let (mut images, mut written) = (Vec::new(), Vec::new());
    let mut before = ready(1);
    for round in 0..=rounds {
        if round > 0 {
            std::fs::write(wd.path.join(format!("go.{round}")), "").unwrap();
            let now = ready(round + 1);
            written.push((now - before) * 4096);
            before = now;
        } else {
            written.push(0);
        }
        orig.checkpoint(&image, LONG);
        let kept = wd.path.join(format!("gen-{round}"));
        std::fs::hard_link(&image, &kept).unwrap();
        images.push(kept);
    }
    orig.kill9();
    assert!(!orig.stderr().contains("incremental checkpoints are off"), "tracking unavailable: {}", orig.stderr());
    (images, written, orig.stderr())
}

/// Restarts image `gen` of a `scattered` chain (taken after round `gen`) with `args`, tells it
/// to go on, and checks that it found its whole heap as it left it.
fn scattered_restarts(wd: &Workdir, images: &[PathBuf], gen: usize, args: &[&str]) {
    let mut cmd = Command::new(myrestart());
    cmd.args(args).arg(&images[gen]);
    let mut r = Proc::spawn(cmd, &format!("myrestart {args:?} gen-{gen}"));
    let go = wd.path.join(format!("go.{}", gen + 1));
    if !go.exists() {
        std::fs::write(&go, "").unwrap();
    }
    let want = format!("ready {} ", gen + 2);
    let lines = r.wait_until(|l| l.iter().any(|x| x.starts_with(&want) || x.starts_with("BAD")), LONG, "the heap checked after the restart");
    // However many runs the image holds, the restored program has about as many mappings as
    // it had regions (a few dozen), not one or more a run.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", r.program_pid())).expect("the restored program's maps").lines().count();
    r.kill9();
    assert!((10..1000).contains(&maps), "gen-{gen} restarted with {args:?} has {maps} mappings");
    assert!(lines.iter().any(|x| x.starts_with(&want)), "gen-{gen} restarted with {args:?} and found its heap changed: {lines:?}; stderr {}", r.stderr());
}

/// Scattered writes between incremental checkpoints (pseudo-random single pages, so that the
/// pages left to the bases come in about one run per page written, from two and three bases
/// interleaved) keep each image near the size of what was written since the one before, and
/// every image restarts (mapped, eagerly, unverified) with its whole heap as it was.
#[test]
fn scattered_writes_keep_incremental_images_small() {
    let wd = Workdir::new("incr-scattered");
    let (images, written, _) = scattered_chain(&wd, 256, "random", 3);
    let full = allocated(&images[0]);
    assert!(full > 200 << 20, "first image holds the heap: {full} bytes");
    for (img, &w) in images.iter().zip(&written).skip(1) {
        let a = allocated(img);
        assert!(a < 2 * w + (4 << 20), "{}: {a} bytes allocated for {w} bytes written since the image before", img.display());
    }
    for gen in 1..images.len() {
        scattered_restarts(&wd, &images, gen, &[]);
    }
    scattered_restarts(&wd, &images, 3, &["--eager"]);
    scattered_restarts(&wd, &images, 3, &["--no-verify"]);
}

/// An image whose every page comes from another base than its neighbours' holds more runs of
/// pages stored elsewhere than a process may have mappings (`vm.max_map_count`, 65530): it is
/// still small, and it restarts, mapped and eagerly, with its whole heap.
#[test]
fn an_image_with_more_runs_than_a_process_has_mappings_restarts() {
    let wd = Workdir::new("incr-stripes");
    let (images, written, _) = scattered_chain(&wd, 320, "stripes", 3);
    let last = &images[3];
    let a = allocated(last);
    assert!(a < 3 * written[3] + (6 << 20), "{}: {a} bytes allocated for {} bytes written", last.display(), written[3]);
    let inspect = Command::new(ckpt()).arg("inspect").arg(last).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "inspect: {}", String::from_utf8_lossy(&inspect.stderr));
    // More than `vm.max_map_count` allows by default (a machine may allow more; the restored
    // program's own mappings are counted in `scattered_restarts` either way).
    let runs = runs_of(last);
    assert!(runs > 65530, "the image holds only {runs} runs: {text}");
    scattered_restarts(&wd, &images, 3, &[]);
    scattered_restarts(&wd, &images, 3, &["--eager"]);
    scattered_restarts(&wd, &images, 2, &[]);
}

/// A block of 1 MiB and a few pages written between checkpoints of a 128 MiB heap: the writer of
/// each incremental checkpoint is forked without most of the heap (its page tables are not
/// copied, the program stopped meanwhile), yet every image restarts with its whole heap, and a
/// child the program forks after each checkpoint inherits the whole heap (it checks it).
#[test]
fn a_writer_forked_without_unwritten_memory_loses_none_of_it() {
    let wd = Workdir::new("incr-unforked");
    let (images, _, stderr) = scattered_chain(&wd, 128, "blocks", 3);
    let without = left_out(&stderr, "unwritten memory");
    assert_eq!(without.len(), 3, "not every incremental checkpoint's writer was forked without the unwritten memory: {stderr}");
    assert!(without.iter().all(|&mib| mib >= 64), "{without:?} MiB left out of 128: {stderr}");
    for gen in 0..images.len() {
        scattered_restarts(&wd, &images, gen, &[]);
    }
    scattered_restarts(&wd, &images, 3, &["--eager"]);
    scattered_restarts(&wd, &images, 2, &["--no-verify"]);
}

/// The same in a process restarted with its memory read back eagerly (libckpt's own segments
/// are then anonymous memory, as the program's is): its first checkpoint is full, the writers
/// of the next ones are forked without the unwritten memory, the program's children still
/// inherit all of it, and the last image restarts with the whole heap.
#[test]
fn after_an_eager_restart_writers_are_forked_without_unwritten_memory_too() {
    let wd = Workdir::new("incr-unforked-eager");
    let image = wd.image();
    let (images, _, _) = scattered_chain(&wd, 128, "blocks", 1);
    let mut cmd = Command::new(myrestart());
    cmd.arg("--eager").arg(&images[1]);
    let mut r = Proc::spawn(cmd, "myrestart --eager gen-1");
    // A round after each checkpoint (the first once the program is back, full).
    for round in 2..=4 {
        std::fs::write(wd.path.join(format!("go.{round}")), "").unwrap();
        let want = format!("ready {} ", round + 1);
        let lines = r.wait_until(|l| l.iter().any(|x| x.starts_with(&want) || x.starts_with("BAD")), LONG, "the next round");
        assert!(lines.iter().any(|x| x.starts_with(&want)), "{lines:?}; stderr {}", r.stderr());
        r.checkpoint(&image, LONG);
    }
    r.kill9();
    let without = left_out(&r.stderr(), "unwritten memory").len();
    assert_eq!(without, 2, "the incremental checkpoints after the restart: {}", r.stderr());
    let mut images = images;
    images.extend([image.clone(), image.clone(), image]);
    scattered_restarts(&wd, &images, 4, &[]);
}

/// The MiB of `what` (unwritten memory, or memory holding only zeros) each writer was forked
/// without, as it said (`CKPT_TIMES`).
fn left_out(stderr: &str, what: &str) -> Vec<u64> {
    let tail = format!(" MiB of {what}");
    stderr.lines().filter(|l| l.ends_with(&tail)).filter_map(|l| l.split(" was forked without ").nth(1)?.split(' ').next()?.parse().ok()).collect()
}

/// A full image's writer is forked without the program's memory that holds only zeros (found in
/// the handler, in whole 2 MiB blocks of pages in memory) and stores it as holes. In a chain
/// (the first image full), in a run of full images and in compressed images (whose writer gets
/// all the memory), with zeros and data trading places between checkpoints, every image
/// restarts (mapped, eagerly, unverified) with its whole heap, and the program's children
/// inherit all of its memory after each checkpoint.
#[test]
fn a_writer_forked_without_memory_of_zeros_loses_none_of_it() {
    for (name, env) in [("incr-zeros-chain", &[][..]), ("incr-zeros-full", &[("CKPT_INCREMENTAL", "1")][..]), ("incr-zeros-lz4", &[("CKPT_COMPRESS", "lz4")][..])] {
        let wd = Workdir::new(name);
        let (images, _, stderr) = scattered_chain_with(&wd, 128, "zeros", 3, env);
        let zeros = left_out(&stderr, "memory holding only zeros");
        // About half the heap is zeros, in pieces of 8 MiB: at least 6 MiB of each is whole 2 MiB
        // blocks. A compressing writer reads every region whole: it gets all the memory.
        let full = match name { "incr-zeros-chain" => 1, "incr-zeros-full" => 4, _ => 0 };
        assert_eq!(zeros.len(), full, "{name}: not every full image's writer was forked without the zeros: {stderr}");
        assert!(zeros.iter().all(|&mib| mib >= 32), "{name}: {zeros:?} MiB of zeros left out of 128: {stderr}");
        for gen in 0..images.len() {
            scattered_restarts(&wd, &images, gen, &[]);
        }
        scattered_restarts(&wd, &images, 3, &["--eager"]);
        scattered_restarts(&wd, &images, 2, &["--no-verify"]);
    }
}

/// How many runs of pages stored elsewhere an image's `NT_CKPT_SHARED` note holds.
fn runs_of(image: &Path) -> usize {
    let bytes = std::fs::read(image).unwrap();
    let mut state = ckpt_image::ProcessState::ZERO;
    let meta_len = ckpt_image::image::headers_len(&bytes[..ckpt_image::image::PREFIX_LEN], 0, bytes.len() as u64).unwrap();
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut state).unwrap();
    img.shared_table().len()
}
