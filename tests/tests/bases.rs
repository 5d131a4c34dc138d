//! An incremental image is not one file: it is `myckpt` and the `myckpt.base-*` files it names.
//! `ckpt inspect` checks all of them and says whether the image can be restarted; `ckpt restart
//! --newest` passes over an image whose base is missing or damaged; `ckpt copy` makes one file
//! of a chain, which restarts after the image and every base are gone.
#![deny(unsafe_code)]

use ckpt_image::image::{meta_len, PREFIX_LEN};
use ckpt_image::{Image, ProcessState};
use ckpt_tests::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn ckpt_run(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(ckpt()).args(args).args(paths).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The file offset in `base` of a page that `image` takes from it.
fn page_taken_from(image: &Path, base: &Path) -> u64 {
    let bytes = std::fs::read(image).unwrap();
    let len = meta_len(&bytes[..PREFIX_LEN]).unwrap() as usize;
    let mut st = Box::new(ProcessState::ZERO);
    let img = Image::parse(&bytes[..len], bytes.len() as u64, &mut st).unwrap();
    let chain = img.chain().expect("an incremental image").unwrap();
    let name = name_of(base);
    let k = chain.bases().position(|b| b.unwrap().name() == name.as_bytes()).expect("the image names the base") as u32 + 1;
    img.shared_runs().map(Result::unwrap).find(|r| r.source == k).expect("a run naming the base").offset
}

/// Puts a copy of `base` with 4 bytes of the page at `page` changed in its place (a new file:
/// the old one may be another image's name too).
fn damage(base: &Path, page: u64) {
    let mut bytes = std::fs::read(base).unwrap();
    for b in &mut bytes[page as usize + 100..page as usize + 104] {
        *b ^= 0xa5;
    }
    std::fs::remove_file(base).unwrap();
    std::fs::write(base, &bytes).unwrap();
}

/// `ckpt inspect` of `image` says it cannot be restarted, naming `base` as `state`, and exits 1;
/// `--json` says the same.
fn inspect_says_no(image: &Path, base: &Path, state: &str) {
    let out = ckpt_run(&["inspect"], &[image]);
    let (stdout, name) = (text(&out.stdout), name_of(base));
    assert_eq!(out.status.code(), Some(1), "inspect should fail: {stdout}{}", text(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("restartable")).unwrap_or_else(|| panic!("no restartable line: {stdout}"));
    assert!(line.starts_with(&format!("restartable  no: base image {name} is {state}")), "{line}");
    assert!(!stdout.contains("checksums    verified\n") && !stdout.contains("checksums    verified ("), "checksums line claims too much: {stdout}");
    let json: serde_json::Value = serde_json::from_slice(&ckpt_run(&["inspect", "--json"], &[image]).stdout).unwrap();
    assert_eq!(json["restartable"], false);
    assert!(json["restartable_reason"].as_str().unwrap().contains(&name), "{json}");
}

/// `ckpt copy` of `image` is refused with `code` and one line naming `base`, and leaves nothing
/// in `dir`.
fn copy_refused(image: &Path, base: &Path, dir: &Path, code: i32) {
    let before: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name()).collect();
    let dest = dir.join("copy");
    let out = ckpt_run(&["copy"], &[image, &dest]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "copy should be refused: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&name_of(base)), "{err}");
    let after: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(before.len(), after.len(), "copy left files behind: {after:?}");
}

#[test]
fn inspect_and_copy_refuse_an_image_whose_base_is_missing() {
    let (wd, newest, base) = two_image_chain("bases-missing");
    let newest = &newest;
    let out = ckpt_run(&["inspect"], &[newest]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("\nrestartable  yes\n"), "{stdout}");
    assert!(stdout.contains("\nchecksums    verified (this file and the base image it needs)\n"), "{stdout}");

    std::fs::remove_file(&base).unwrap();
    inspect_says_no(newest, &base, "missing");
    copy_refused(newest, &base, &wd.path, 2);
}

#[test]
fn inspect_and_copy_refuse_an_image_whose_base_is_damaged() {
    let (wd, newest, base) = two_image_chain("bases-damaged");
    let newest = &newest;
    damage(&base, page_taken_from(newest, &base));
    inspect_says_no(newest, &base, "damaged: corrupt image (region");
    let stdout = text(&ckpt_run(&["inspect"], &[newest]).stdout);
    assert!(stdout.contains("\nchecksums    MISMATCH\n"), "{stdout}");
    copy_refused(newest, &base, &wd.path, 1);
}

/// `ckpt restart --newest IMAGE` (`--inherit-stdio`): the restored program, once it has printed
/// six lines, and what ckpt said.
fn restart_newest(image: &Path) -> (Vec<String>, String) {
    let mut c = Command::new(ckpt());
    c.args(["restart", "--newest", "--inherit-stdio"]).arg(image);
    let mut r = Proc::spawn(c, "ckpt restart --newest");
    let lines = r.wait_lines(6, LONG);
    r.kill9();
    (lines, r.stderr())
}

#[test]
fn restart_newest_passes_over_an_image_whose_base_is_missing_or_damaged() {
    let wd = Workdir::new("bases-newest");
    let reference = reference_run(changing(16, 400, 0, false), LONG);
    let g = generations(&wd, false, 3);
    let (newest, older) = (&g.images[2], &g.images[1]);
    // The base the newest image needs that the one before it does not: that image itself,
    // under its base name.
    let ino = std::fs::metadata(older).unwrap().ino();
    let base = base_files(&wd).into_iter().find(|b| std::fs::metadata(b).unwrap().ino() == ino).expect("the newest image is built on the one before it");
    let saved = std::fs::read(&base).unwrap();
    let page = page_taken_from(newest, &base);
    for (what, state) in [("missing", "missing"), ("damaged", "damaged")] {
        if what == "missing" {
            std::fs::remove_file(&base).unwrap();
        } else {
            std::fs::write(&base, &saved).unwrap();
            damage(&base, page);
        }
        let (lines, err) = restart_newest(newest);
        let passed = format!("passing over {}: base image {} is {state}", newest.display(), name_of(&base));
        assert!(err.contains(&passed), "{what}: {err}");
        assert!(err.contains(&format!("restarting from {}", older.display())), "{what}: {err}");
        let (asked, in_place) = g.seen[1];
        assert_continues(&reference, asked, in_place, &lines);
    }
}

#[test]
fn a_copy_of_a_chain_restarts_alone_after_the_chain_is_gone() {
    let wd = Workdir::new("bases-copy");
    let reference = reference_run(changing(16, 400, 0, false), LONG);
    let g = generations(&wd, false, 3);
    let newest = g.images.last().unwrap();
    let archive = wd.path.join("archive");
    std::fs::create_dir(&archive).unwrap();
    let out = ckpt_run(&["copy"], &[newest, &archive]);
    assert!(out.status.success(), "copy: {}", text(&out.stderr));
    let copy = archive.join("myckpt");
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(meta.blocks() * 512 < meta.len(), "holes were filled: {} of {} bytes allocated", meta.blocks() * 512, meta.len());
    assert_eq!(std::fs::read_dir(&archive).unwrap().count(), 1, "one file in the archive");

    // The chain goes: every image and every base.
    assert!(!base_files(&wd).is_empty());
    for f in g.images.iter().chain(&base_files(&wd)) {
        std::fs::remove_file(f).unwrap();
    }
    let out = ckpt_run(&["inspect"], &[&copy]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("\nrestartable  yes\n") && stdout.contains("\nchecksums    verified\n"), "{stdout}");
    assert!(!stdout.contains("built on"), "the copy names a base: {stdout}");

    let mut r = Proc::restart(&copy);
    let lines = r.wait_lines(6, LONG);
    r.kill9();
    let (asked, in_place) = *g.seen.last().unwrap();
    assert_continues(&reference, asked, in_place, &lines);
}
