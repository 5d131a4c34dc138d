//! The image a checkpoint replaces: kept alive under a hidden second name
//! (`.<image>.old.<writer pid>`) from just before the rename until the outcome is reported, so
//! that freeing it is not part of the checkpoint. These tests check what must not change:
//! nothing is left behind, `CKPT_KEEP` moves images along as before, a failed checkpoint keeps
//! the previous image as it was, and names left by a writer killed in between are removed by
//! the next checkpoint.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The hidden names (`.myckpt.old.*`, `.myckpt.N.old.*`) in `dir`.
fn hidden(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".myckpt") && n.contains(".old."))
        .collect();
    v.sort();
    v
}

/// `counter` preloaded with `env`, running until killed.
fn counter(wd: &Workdir, env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(prog("counter", &[]));
    c.args(["1000000", "10000"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let p = Proc::preloaded(c, &wd.image(), "counter");
    p.wait_lines(3, SHORT);
    p
}

/// The first number of each line `i x` of `lines`.
fn indexes(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.split(' ').next()?.parse().ok()).collect()
}

/// Checkpoints replace the image; the one replaced is freed once the writer is done (a
/// descriptor open on it sees its last link gone), no hidden name stays, and the new image
/// restarts and goes on. Full images only (an incremental one keeps the one before as its
/// base file).
#[test]
fn the_replaced_image_is_freed_and_no_name_is_left() {
    let wd = Workdir::new("replaced-freed");
    let image = wd.image();
    let orig = counter(&wd, &[("CKPT_INCREMENTAL", "0")]);
    orig.checkpoint(&image, LONG);
    let first = std::fs::File::open(&image).unwrap();
    assert_eq!(first.metadata().unwrap().nlink(), 1);
    for round in 0..3 {
        orig.checkpoint(&image, LONG);
        assert!(hidden(&wd.path).is_empty(), "round {round}: hidden names left: {:?}", hidden(&wd.path));
    }
    assert_eq!(first.metadata().unwrap().nlink(), 0, "the first image still has a name");
    let names: Vec<_> = std::fs::read_dir(&wd.path).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("myckpt")], "files left beside the image");
    let before = indexes(&orig.lines());
    let at = *before.last().unwrap();
    drop(orig);
    let restored = Proc::restart(&image);
    let lines = restored.wait_lines(5, LONG);
    let after = indexes(&lines);
    assert!(after.len() >= 5 && after[0] <= at + 1, "the restart does not go on from the image: {after:?} (original at {at})");
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "{after:?}");
}

/// With `CKPT_KEEP=2` the images move along as before (the newest at the image path, the one
/// before at `.1`, the one before that at `.2`), the oldest one is freed when it drops out, and
/// no hidden name is left (full images: see above).
#[test]
fn kept_images_move_along_as_before() {
    let wd = Workdir::new("replaced-keep");
    let image = wd.image();
    let (one, two) = (wd.path.join("myckpt.1"), wd.path.join("myckpt.2"));
    let orig = counter(&wd, &[("CKPT_KEEP", "2"), ("CKPT_INCREMENTAL", "0")]);
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    let mut seen = Vec::new();
    let mut oldest = None;
    for round in 0..4 {
        orig.checkpoint(&image, LONG);
        seen.push(ino(&image).unwrap());
        if round == 0 {
            oldest = Some(std::fs::File::open(&image).unwrap());
        }
        let n = seen.len();
        assert_eq!(ino(&one), (n >= 2).then(|| seen[n - 2]), "round {round}: myckpt.1");
        assert_eq!(ino(&two), (n >= 3).then(|| seen[n - 3]), "round {round}: myckpt.2");
        assert!(hidden(&wd.path).is_empty(), "round {round}: hidden names left: {:?}", hidden(&wd.path));
    }
    assert_eq!(oldest.unwrap().metadata().unwrap().nlink(), 0, "the image that dropped out still has a name");
}

/// A checkpoint that fails after the hidden name was made (here `CKPT_KEEP=2` and a directory
/// at `myckpt.1`, which is never moved) leaves the image and the older one as they were, with
/// their names only, and the program running.
#[test]
fn a_failed_commit_keeps_the_images_and_leaves_no_name() {
    let wd = Workdir::new("replaced-failed");
    let image = wd.image();
    let (one, two) = (wd.path.join("myckpt.1"), wd.path.join("myckpt.2"));
    let orig = counter(&wd, &[("CKPT_KEEP", "2")]);
    orig.checkpoint(&image, LONG);
    // An image of ours at myckpt.2: the file a successful commit would free.
    std::fs::copy(&image, &two).unwrap();
    std::fs::create_dir(&one).unwrap();
    let (image_bytes, two_bytes) = (std::fs::read(&image).unwrap(), std::fs::read(&two).unwrap());
    let (image_ino, two_ino) = (std::fs::metadata(&image).unwrap().ino(), std::fs::metadata(&two).unwrap().ino());
    let n = orig.lines().len();
    orig.signal(libc::SIGUSR2);
    orig.wait_stderr("checkpoint failed", LONG);
    wait_writers_gone(&image, Instant::now() + LONG);
    orig.wait_lines(n + 3, SHORT);
    assert_eq!(std::fs::metadata(&image).unwrap().ino(), image_ino, "the image was replaced");
    assert!(std::fs::read(&image).unwrap() == image_bytes, "the image changed");
    let m = std::fs::metadata(&two).unwrap();
    assert_eq!((m.ino(), m.nlink()), (two_ino, 1), "myckpt.2 is not as it was");
    assert!(std::fs::read(&two).unwrap() == two_bytes, "myckpt.2 changed");
    assert!(hidden(&wd.path).is_empty(), "hidden names left: {:?}", hidden(&wd.path));
}

/// Hidden names left by writers killed between making them and removing them are removed by
/// the next checkpoint of the same image; look-alikes are not touched.
#[test]
fn names_left_by_a_killed_writer_are_removed_by_the_next_checkpoint() {
    let wd = Workdir::new("replaced-leftovers");
    let image = wd.image();
    let orig = counter(&wd, &[]);
    orig.checkpoint(&image, LONG);
    let left = [".myckpt.old.4000001", ".myckpt.old.17"];
    for n in left {
        std::fs::hard_link(&image, wd.path.join(n)).unwrap();
    }
    // Not hidden names of this image: another image's, no pid, a directory.
    let others = [".other.old.12", ".myckpt.old.", ".myckpt.old.12x"];
    for n in others {
        std::fs::write(wd.path.join(n), "not ours to remove").unwrap();
    }
    std::fs::create_dir(wd.path.join(".myckpt.old.99")).unwrap();
    orig.checkpoint(&image, LONG);
    for n in left {
        assert!(!wd.path.join(n).exists(), "{n} was left");
    }
    for n in others {
        assert_eq!(std::fs::read_to_string(wd.path.join(n)).unwrap(), "not ours to remove", "{n}");
    }
    assert!(wd.path.join(".myckpt.old.99").is_dir());
}
