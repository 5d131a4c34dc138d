//! Incremental checkpoints: a later image stores only the pages written since the one before,
//! and names older images (its bases) for the rest. Every generation restarts to its own state;
//! a base that is missing, rewritten or damaged is refused by name.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
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
