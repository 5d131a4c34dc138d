//! What goes wrong must be said in one line, with a non-zero exit and nothing lost: images that
//! cannot be trusted, and checkpoints that cannot be written.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::Path;
use std::process::Command;

/// A real image of a running counter program, written into `wd`.
fn real_image(wd: &Workdir) -> Vec<u8> {
    let p = prog("counter", &[]);
    let mut c = Command::new(p);
    c.args(["100000", "10000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::read(wd.image()).unwrap()
}

/// Runs myrestart on `path` and checks it refuses with exit status 2 and exactly one stderr
/// line that names the file and contains `expect`.
fn refuses(path: &Path, expect: &str) {
    let out = Command::new(myrestart()).arg(path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {:?} for {expect:?}; stderr {err:?}", out.status);
    assert!(out.stdout.is_empty(), "printed to stdout: {:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(err.lines().count(), 1, "want one line, got {err:?}");
    assert!(err.starts_with(&format!("myrestart: {}: ", path.display())), "does not name the file: {err:?}");
    assert!(err.contains(expect), "want {expect:?} in {err:?}");
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("pattern in image")
}

#[test]
fn missing_empty_and_foreign_files() {
    let wd = Workdir::new("bad-basic");
    refuses(&wd.path.join("nonexistent"), "cannot open: No such file or directory");
    let empty = wd.path.join("empty");
    std::fs::write(&empty, b"").unwrap();
    refuses(&empty, "not a ckpt image");
    let text = wd.path.join("text");
    std::fs::write(&text, b"hello, this is not an image\n".repeat(20)).unwrap();
    refuses(&text, "not a ckpt image (no ELF header)");
    refuses(Path::new("/bin/true"), "not a ckpt image (not an x86-64 ELF core file)");
    refuses(Path::new("/tmp"), "not a regular file");
}

#[test]
fn damaged_images_are_named_as_such() {
    let wd = Workdir::new("bad-images");
    let good = real_image(&wd);
    let magic = find(&good, b"CKPTIMG\0");
    let meta_len = ckpt_image::image::meta_len(&good[..ckpt_image::image::PREFIX_LEN]).unwrap() as usize;
    let write = |name: &str, bytes: &[u8]| {
        let p = wd.path.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    refuses(&write("cut-100", &good[..100]), "truncated image");
    refuses(&write("cut-notes", &good[..meta_len - 10]), "truncated image");
    refuses(&write("cut-half", &good[..good.len() / 2]), "truncated image");

    let mut v = good.clone();
    v[magic + 8..magic + 12].copy_from_slice(&99u32.to_le_bytes());
    refuses(&write("version-99", &v), "made by a newer ckpt: image format version 99");

    let mut f = good.clone();
    f[magic - 8..magic - 4].copy_from_slice(b"XXXX");
    refuses(&write("foreign", &f), "an ELF core file without ckpt state");

    let mut h = good.clone();
    h[meta_len - 20] ^= 0x40;
    refuses(&write("header-bit", &h), "corrupt image (header checksum mismatch)");

    let data_start = meta_len.next_multiple_of(4096);
    for (name, at) in [("data-first", data_start + 17), ("data-middle", (data_start + good.len()) / 2), ("data-last", good.len() - 1)] {
        let mut d = good.clone();
        d[at] ^= 0x01;
        refuses(&write(name, &d), "data checksum mismatch");
    }

    // The untouched image still restores: the checks above are not just refusing everything.
    let mut ok = Proc::restart(&write("intact", &good));
    ok.wait_lines(3, SHORT);
    ok.kill9();
}

#[test]
fn unwritable_image_path_leaves_the_program_running() {
    let wd = Workdir::new("bad-path");
    let image = wd.path.join("no-such-dir/myckpt");
    let p = prog("counter", &[]);
    let mut c = Command::new(p);
    c.args(["100000", "10000"]);
    let orig = Proc::preloaded(c, &image, "counter");
    orig.wait_lines(3, SHORT);
    orig.signal(libc::SIGUSR2);
    let err = orig.wait_stderr("checkpoint failed", SHORT);
    let failures: Vec<&str> = err.lines().filter(|l| l.contains("checkpoint failed")).collect();
    assert_eq!(failures.len(), 1, "{err:?}");
    assert!(failures[0].contains("No such file or directory"), "{err:?}");
    let n = orig.lines().len();
    orig.wait_lines(n + 5, SHORT);
}

/// A full disk (a 4 MiB tmpfs in a private mount namespace): the second checkpoint cannot be
/// written (the images carry their libraries, `CKPT_SELF_CONTAINED=1`, so that one fits and
/// two do not); the program goes on, the first image stays intact and restores, and no temporary
/// file is left. Needs root for the mount, as CI has.
#[test]
fn disk_full_keeps_the_previous_image() {
    if !can_fill_a_disk("disk_full_keeps_the_previous_image") {
        return;
    }
    let wd = Workdir::new("disk-full");
    let dir = wd.path.join("small");
    std::fs::create_dir(&dir).unwrap();
    let p = prog("counter", &[]);
    let script = format!(
        "mount -t tmpfs -o size=4m tmpfs '{d}' && exec env LD_PRELOAD='{lib}' CKPT_IMAGE='{d}/myckpt' CKPT_SELF_CONTAINED=1 '{p}' 100000 10000 < /dev/null",
        d = dir.display(),
        lib = libckpt().display(),
        p = p.display()
    );
    // Its stdin is opened inside the new mount namespace: in a chroot, a file opened outside
    // it has a path (seen from inside) that the restart cannot open.
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let mut orig = Proc::spawn(c, "counter on a small tmpfs");
    orig.wait_lines(3, SHORT);
    // The image inside the private mount, seen through the process's root.
    let image = Path::new(&format!("/proc/{}/root", orig.pid)).join(dir.strip_prefix("/").unwrap()).join("myckpt");
    orig.checkpoint(&image, LONG);
    let first = std::fs::read(&image).unwrap();
    let at_first = orig.lines().len();
    orig.wait_lines(at_first + 3, SHORT);

    orig.signal(libc::SIGUSR2);
    let err = orig.wait_stderr("checkpoint failed", SHORT);
    assert!(err.contains("No space left on device"), "{err:?}");
    let n = orig.lines().len();
    orig.wait_lines(n + 5, SHORT);
    let after = std::fs::read(&image).unwrap();
    assert!(after == first, "the previous image changed");
    let leftovers: Vec<_> = std::fs::read_dir(image.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("myckpt")], "temporary files left behind");
    let copy = wd.path.join("first");
    std::fs::write(&copy, &first).unwrap();
    orig.kill9();
    let restored = Proc::restart(&copy);
    let l = restored.wait_lines(3, SHORT);
    let i: usize = l[0].split(' ').next().unwrap().parse().unwrap();
    assert!(i >= 3 && i <= at_first + 3, "restored at line {i}, first checkpoint after {at_first}");
}

/// The image is a standard ELF core file: readelf lists its notes, and gdb finds `main` in it.
#[test]
fn image_is_an_elf_core_file_tools_can_read() {
    let wd = Workdir::new("elf-core");
    let p = prog("counter", &["-g"]);
    let mut c = Command::new(&p);
    c.args(["100000", "10000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let out = Command::new("readelf").args(["-h", "-l", "-n"]).arg(wd.image()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "readelf failed: {}", String::from_utf8_lossy(&out.stderr));
    for want in ["CORE (Core file)", "NT_PRSTATUS", "NT_PRPSINFO", "NT_FPREGSET", "NT_AUXV", "LOAD"] {
        assert!(text.contains(want), "readelf output lacks {want}");
    }
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-ex", "bt", "-ex", "info threads"]).arg(&p).arg(wd.image()).output().expect("gdb");
    let bt = String::from_utf8_lossy(&gdb.stdout);
    assert!(bt.contains("in main"), "gdb bt does not show main: {bt}\n{}", String::from_utf8_lossy(&gdb.stderr));
    // gdb finds every note as large as it expects (the XSAVE area's size depends on the CPU).
    let warned = String::from_utf8_lossy(&gdb.stderr);
    assert!(!warned.contains("warning: Section"), "gdb: {warned}");
    // NT_PRSTATUS names the checkpoint signal and the checkpointed thread.
    assert!(bt.contains("Program terminated with signal SIGUSR2"), "{bt}");
    assert!(bt.contains(&format!("LWP {}", orig.pid)), "{bt}");
}

/// Exit status 3: restoring failed after the point of no return. Here the address-space limit
/// (`ulimit -v`) leaves room for myrestart but not for the program's 256 MiB heap, which
/// myrestart only finds out when it maps the heap.
#[test]
fn a_failure_after_the_point_of_no_return_is_exit_status_3() {
    let wd = Workdir::new("exit3");
    let p = prog("bigheap", &[]);
    let mut c = Command::new(p);
    c.args(["256", "100000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "bigheap");
    orig.wait_until(|l| l.iter().any(|s| s == "tick 1"), LONG, "tick 1");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let out = Command::new("sh")
        .args(["-c", "ulimit -S -v 131072; exec \"$0\" --no-verify \"$1\""])
        .arg(myrestart())
        .arg(wd.image())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.starts_with("myrestart: restore failed after the point of no return: mapping"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A file the program had open is now a FIFO with nobody at the other end: restart refuses at
/// once, naming it, instead of blocking in `open` forever.
#[test]
fn a_saved_path_that_is_now_a_fifo_is_refused_without_blocking() {
    let wd = Workdir::new("bad-fifo");
    let input = wd.path.join("in.txt");
    std::fs::write(&input, "a\n".repeat(1000)).unwrap();
    let log = wd.path.join("log.txt");
    let mut c = Command::new(prog("files", &[]));
    c.arg(&input).arg(&log).arg("20000");
    let mut orig = Proc::preloaded(c, &wd.image(), "files");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::remove_file(&input).unwrap();
    let st = Command::new("mkfifo").arg(&input).status().unwrap();
    assert!(st.success());
    let mut restart = Proc::restart(&wd.image());
    let st = restart.wait_exit(SHORT);
    assert_eq!(st.code(), Some(2), "{}", restart.stderr());
    assert!(restart.stderr().contains(&format!("{} is no longer what it was (a regular file)", input.display())), "{}", restart.stderr());
}

/// Restoring an image runs its code with the restarting user's rights: an image that others
/// may write, or that another user owns, is refused before anything is read, unless
/// `--trust-image` says so (then with a warning).
#[test]
fn images_others_could_have_written_are_refused_unless_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let wd = Workdir::new("bad-owner");
    real_image(&wd);
    let image = wd.image();
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o620)).unwrap();
    refuses(&image, "the image may be written by other users (uid 0, mode 620)");
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&image, Some(65534), None).unwrap();
    refuses(&image, "the image is owned by another user (uid 65534");
    let mut c = Command::new(myrestart());
    c.arg("--trust-image").arg(&image);
    let restored = Proc::spawn(c, "myrestart --trust-image");
    restored.wait_lines(3, SHORT);
    assert!(restored.stderr().contains("restoring it anyway (--trust-image)"), "{}", restored.stderr());
}

/// With a key file (`CKPT_KEY` at checkpoint, `--key` at restart) an image carries a MAC: it
/// restores with that key; changed and re-signed, or checked with another key, or made without
/// a key, it is refused by name. The key itself is not in the image.
#[test]
fn authenticated_images_refuse_tampering_and_other_keys() {
    let wd = Workdir::new("bad-key");
    let key = wd.path.join("key");
    private_file(&key, "a long secret only this site knows");
    let other = wd.path.join("other-key");
    private_file(&other, "another secret");
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]).env("CKPT_KEY", &key);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter with a key");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let image = wd.image();
    let bytes = std::fs::read(&image).unwrap();
    let derived = ckpt_image::mac::key_from(b"a long secret only this site knows");
    assert!(!bytes.windows(32).any(|w| w == derived), "the key is in the image");
    let with = |k: &Path, img: &Path| {
        let mut c = Command::new(myrestart());
        c.arg("--key").arg(k).arg(img);
        c
    };
    let restored = Proc::spawn(with(&key, &image), "myrestart --key");
    restored.wait_lines(3, SHORT);
    drop(restored);
    let refused = |c: &mut Command, expect: &str| {
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expect), "want {expect:?} in {err:?}");
    };
    refused(&mut with(&other, &image), "authentication failed");
    // Changed in memory (a byte of the heap's stored data) with every checksum recomputed: the
    // region hash and the header checksum are public, the key is not.
    let tampered = wd.path.join("tampered");
    let t = ckpt_tests::tampered(&bytes);
    std::fs::write(&tampered, &t).unwrap();
    // Without a key it passes every checksum (integrity is not authenticity); with it, refused.
    let out = Command::new(ckpt()).args(["inspect"]).arg(&tampered).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    refused(&mut with(&key, &tampered), "authentication failed (the image was changed after it was written");
    let out = Command::new(ckpt()).args(["inspect", "--key"]).arg(&key).arg(&tampered).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("AUTHENTICATION FAILED"));
    // An image made without a key is refused when a key is required.
    let plain = Workdir::new("bad-key-plain");
    real_image(&plain);
    refused(&mut with(&key, &plain.image()), "not authenticated");
}

/// A key file someone else may read is refused, with one line naming it and why, wherever a
/// key is read: `ckpt run --key`, a program started with `CKPT_KEY` (which then writes no image),
/// `myrestart --key`, and `ckpt restart` and `ckpt inspect` taking `CKPT_KEY` from their
/// environment. `ckpt key new` makes a private one and never overwrites a file. Where
/// `CKPT_KEY` is set, an image without a MAC (stripped of it) is refused.
#[test]
fn a_key_file_others_may_read_is_refused_and_a_configured_key_catches_a_stripped_image() {
    use std::os::unix::fs::PermissionsExt;
    let wd = Workdir::new("key-private");
    let key = wd.path.join("key");
    let out = Command::new(ckpt()).args(["key", "new"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let made = std::fs::read(&key).unwrap();
    let again = Command::new(ckpt()).args(["key", "new"]).arg(&key).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(&key).unwrap(), made, "ckpt key new overwrote a key");
    // An image made with the private key.
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]).env("CKPT_KEY", &key);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter with a key");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    // Readable by the group: refused everywhere, by name.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let why = format!("the key file {} may be read or written by other users (mode 640)", key.display());
    let refused = |c: &mut Command| {
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&why) && err.lines().count() == 1, "want one line with {why:?}: {err:?}");
    };
    refused(Command::new(ckpt()).args(["run", "--key"]).arg(&key).args(["--image"]).arg(wd.path.join("other")).arg(prog("counter", &[])));
    refused(Command::new(myrestart()).arg("--key").arg(&key).arg(wd.image()));
    refused(Command::new(ckpt()).args(["restart"]).arg(wd.image()).env("CKPT_KEY", &key));
    refused(Command::new(ckpt()).args(["inspect"]).arg(wd.image()).env("CKPT_KEY", &key));
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]).env("CKPT_KEY", &key);
    let image = wd.path.join("refused");
    let orig = Proc::preloaded(c, &image, "counter with a key others may read");
    orig.wait_stderr(&format!("CKPT_KEY={}: the key file may be read or written by other users (mode 640): a key file must be private (chmod 600); no image will be written without it", key.display()), SHORT);
    // Running (its handler installed): a checkpoint asked for is refused.
    orig.wait_lines(1, SHORT);
    orig.signal(libc::SIGUSR2);
    orig.wait_stderr("checkpoint failed: the key file (CKPT_KEY) was refused when the program started", SHORT);
    assert!(!image.exists());
    // Private again: an image without a MAC at the image's place (stripped) is refused where
    // CKPT_KEY is set, though no --key is given.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plain = Workdir::new("key-stripped");
    real_image(&plain);
    for c in [Command::new(myrestart()).arg(plain.image()), Command::new(ckpt()).arg("restart").arg(plain.image())].iter_mut() {
        let out = c.env("CKPT_KEY", &key).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("not authenticated"), "{err}");
    }
    let restored = Proc::spawn({
        let mut c = Command::new(ckpt());
        c.arg("restart").arg(wd.image()).env("CKPT_KEY", &key);
        c
    }, "ckpt restart with CKPT_KEY");
    restored.wait_lines(2, SHORT);
}

/// Control characters in a path never reach the terminal raw: libckpt's, ckpt's and
/// myrestart's messages, and `ckpt inspect`'s table, show them escaped (`\x1b`). Here a
/// directory sits where the image goes: the checkpoint fails, and the line names it truly.
#[test]
fn control_characters_in_paths_are_escaped_in_messages() {
    let wd = Workdir::new("escapes");
    let dir = wd.path.join("red\x1b[31m\nline");
    std::fs::create_dir(&dir).unwrap();
    let image = dir.join("myckpt");
    let shown = format!("{}/red\\x1b[31m\\x0aline/myckpt", wd.path.display());
    std::fs::create_dir(&image).unwrap();
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]);
    let mut orig = Proc::preloaded(c, &image, "counter");
    orig.wait_lines(1, SHORT);
    let out = Command::new(ckpt()).args(["checkpoint", "--wait", &orig.pid.to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let why = format!("{shown} is a directory, which this user's image cannot replace");
    assert!(err.contains(&why) && err.lines().count() == 1, "want {why:?} in one line: {err:?}");
    let said = orig.wait_stderr(&why, SHORT);
    std::fs::remove_dir(&image).unwrap();
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let missing = Command::new(myrestart()).arg(dir.join("none")).output().unwrap();
    let inspect = Command::new(ckpt()).arg("inspect").arg(&image).output().unwrap();
    let table = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.status.success() && table.contains(&format!("image        {shown} (")), "{table}");
    for text in [err.as_bytes(), said.as_bytes(), &missing.stderr, &inspect.stdout] {
        assert!(!text.contains(&0x1b), "a raw escape: {}", String::from_utf8_lossy(text));
    }
    assert!(String::from_utf8_lossy(&missing.stderr).contains("red\\x1b[31m\\x0aline/none"), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// Where myrestart or ckpt opens a file by its path, a FIFO put there (by anyone who may write
/// the directory: at a missing base image's name, say) is refused at once instead of holding
/// `open` forever: the image (also for `ckpt inspect` and `ckpt copy`), the key file, a base
/// image. At the recorded program's path it is passed over: the program is restored all the same.
#[test]
fn fifos_where_files_are_expected_are_refused_at_once() {
    let wd = Workdir::new("bad-fifos");
    let mkfifo = |p: &Path| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    let at_once = |c: Command, expect: &str| {
        let what = format!("{c:?}");
        // A FIFO's open would block forever: a bounded wait tells that from a refusal.
        let out = run_within(c, LONG);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(expect), "{what}: want {expect:?} in {err:?}");
    };
    let image = wd.path.join("fifo-image");
    mkfifo(&image);
    let mut c = Command::new(myrestart());
    c.arg(&image);
    at_once(c, "not a regular file");
    let mut c = Command::new(ckpt());
    c.arg("inspect").arg(&image);
    at_once(c, "not a regular file");
    let mut c = Command::new(ckpt());
    c.arg("copy").arg(&image).arg(wd.path.join("copy"));
    at_once(c, "not a regular file");
    assert!(!wd.path.join("copy").exists());

    real_image(&wd);
    let key = wd.path.join("fifo-key");
    mkfifo(&key);
    let mut c = Command::new(myrestart());
    c.arg("--key").arg(&key).arg(wd.image());
    at_once(c, "is not a regular file");
    let mut c = Command::new(ckpt());
    c.args(["inspect", "--key"]).arg(&key).arg(wd.image());
    at_once(c, "not a regular file");

    let (chain, newest, base) = two_image_chain("bad-fifo-base");
    std::fs::remove_file(&base).unwrap();
    mkfifo(&base);
    let mut c = Command::new(myrestart());
    c.arg(&newest);
    at_once(c, "is not a regular file");
    drop(chain);

    // The program itself: a copy of it, replaced by a FIFO after the checkpoint (its pages are
    // all in the image, `CKPT_SELF_CONTAINED=1`).
    let program = wd.path.join("counter");
    std::fs::copy(prog("counter", &[]), &program).unwrap();
    let mut c = Command::new(&program);
    c.args(["100000", "10000"]).env("CKPT_SELF_CONTAINED", "1");
    let mut orig = Proc::preloaded(c, &wd.image(), "a copy of counter");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::remove_file(&program).unwrap();
    mkfifo(&program);
    let restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
}
