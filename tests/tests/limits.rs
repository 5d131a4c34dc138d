//! The limits of one image (`ckpt_image::limits`) hold on both sides: a program with more
//! descriptors, or more shared file mappings, than the restorer's tables once had room for
//! (4096) is checkpointed, killed and restarted, and goes on with each still on its own file.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::process::Command;

/// `manyfiles MODE 5000`, in a directory of the test's own: checkpointed after 10 of its 40
/// rounds, killed, restarted; the restart must print the rest of an uninterrupted run's rounds
/// (each round checks every descriptor or mapping, and stops the program at the first that is
/// not on its file). The mappings are written every round, after the checkpoint too: their
/// files are taken as they are (`--files-as-is`), as the program expects.
fn five_thousand(mode: &str) {
    let wd = Workdir::new(&format!("limits-{mode}"));
    let files = wd.path.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let exe = prog("manyfiles", &[]);
    let make = || {
        let mut c = Command::new(&exe);
        c.arg(mode).arg("5000").arg(&files).arg("40");
        c
    };
    let accept: &[&str] = if mode == "maps" { &["--files-as-is"] } else { &[] };
    checkpoint_kill_restart_matches_with(make, 10, &wd, accept);
}

#[test]
fn five_thousand_descriptors_restart_each_on_its_file() {
    five_thousand("fds");
}

#[test]
fn five_thousand_shared_file_mappings_restart_each_mapping_its_file() {
    five_thousand("maps");
}

/// A tree of two processes that share 5,000 open file descriptions (a parent and the child it
/// forked): 10,000 descriptor records, which the restart's pool for the tree takes together,
/// each description opened once and shared again (the child moves every offset each round, and
/// the parent checks that it moved).
#[test]
fn a_parent_and_child_sharing_five_thousand_descriptions_restart_sharing_them() {
    let wd = Workdir::new("limits-forkfds");
    let files = wd.path.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let exe = prog("manyfiles", &[]);
    let make = || {
        let mut c = Command::new(&exe);
        c.arg("forkfds").arg("5000").arg(&files).arg("40");
        c
    };
    tree_checkpoint_kill_restart_matches(make, 10, &wd);
}

/// One descriptor more than an image holds: the checkpoint says so on the program's stderr,
/// writes no image, and the program goes on.
#[test]
fn more_descriptors_than_an_image_holds_are_refused_and_the_program_goes_on() {
    const TEST: &str = "more_descriptors_than_an_image_holds_are_refused_and_the_program_goes_on";
    let n = ckpt_image::limits::MAX_FDS + 1;
    let wd = Workdir::new("limits-over");
    let mut c = Command::new(prog("manyfiles", &[]));
    c.arg("nulls").arg(n.to_string()).arg(&wd.path).arg("100000");
    let orig = Proc::preloaded(c, &wd.image(), "manyfiles nulls");
    // Raising RLIMIT_NOFILE's hard limit that far takes CAP_SYS_RESOURCE.
    let deadline = std::time::Instant::now() + LONG;
    while orig.lines().len() < 2 {
        if orig.stderr().contains("setrlimit(RLIMIT_NOFILE)") {
            return skip(TEST, "the program cannot raise RLIMIT_NOFILE that far here (its hard limit is lower, and raising it needs CAP_SYS_RESOURCE)");
        }
        assert!(std::time::Instant::now() < deadline, "manyfiles nulls did not start; stderr {:?}", orig.stderr());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    orig.signal(libc::SIGUSR2);
    let err = orig.wait_stderr("checkpoint failed", LONG);
    assert!(err.contains("more than 65536 open descriptors"), "{err}");
    let seen = orig.lines().len();
    orig.wait_lines(seen + 3, SHORT);
    assert!(!wd.image().exists(), "an image was written");
}
