//! What another user can do to a restore: the files it reads, maps or reopens are the ones it
//! checked. Bases and program files others may write are never mapped from where they lie (a
//! write after the check must not reach the program); a reopened file is not followed through a
//! symbolic link planted at its path, and another user's file at its path is refused.
//!
//! The other user is `nobody`, through `setpriv`: these tests need root (as CI has).
#![deny(unsafe_code)]

use ckpt_image::{Image, ProcessState};
use ckpt_tests::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `args` as `nobody` and checks that it worked.
fn as_nobody(args: &[&str]) {
    let out = Command::new("setpriv").args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).args(args).output().unwrap();
    assert!(out.status.success(), "as nobody: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `nobody` writes `bytes` into `file` at `at`, in place.
fn nobody_writes(file: &Path, at: u64, bytes: &str) {
    let script = format!("printf '%s' '{bytes}' | dd of='{}' bs=1 seek={at} conv=notrunc status=none", file.display());
    as_nobody(&["sh", "-c", &script]);
}

/// A directory anyone may create files in, as /tmp is (sticky, mode 1777).
fn shared_dir(wd: &Path) -> PathBuf {
    let dir = wd.join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `myrestart ARGS IMAGE` must refuse: exit status 2 (within a deadline: a restart that is not
/// refused runs the program), nothing on stdout, and one line on stderr that begins with
/// `myrestart: IMAGE: ` and holds each of `want`.
fn refused(args: &[&str], image: &Path, want: &[&str]) -> String {
    let mut c = Command::new(myrestart());
    c.args(args).arg(image);
    let mut r = Proc::spawn(c, "myrestart");
    let status = r.wait_exit(SHORT);
    let err = r.stderr();
    assert_eq!(status.code(), Some(2), "not refused: {err}");
    assert!(r.stdout_text().is_empty(), "printed: {}", r.stdout_text());
    assert_eq!(err.lines().count(), 1, "want one line: {err}");
    assert!(err.starts_with(&format!("myrestart: {}: ", image.display())), "{err}");
    for w in want {
        assert!(err.contains(w), "want {w:?} in {err}");
    }
    err
}

/// Parses the headers of the image file `bytes` and gives them to `f`.
fn with_image<T>(bytes: &[u8], f: impl FnOnce(&Image) -> T) -> T {
    let len = ckpt_image::image::meta_len(&bytes[..ckpt_image::image::PREFIX_LEN]).unwrap() as usize;
    let mut st = Box::new(ProcessState::ZERO);
    let img = Image::parse(&bytes[..len], bytes.len() as u64, &mut st).unwrap();
    f(&img)
}

/// `myrestart --stopped ARGS IMAGE`, once the restored program is there and stopped at its
/// checkpoint: the restart, and the program's PID.
fn restored_stopped(args: &[&str], image: &Path) -> (Proc, u32) {
    let mut c = Command::new(myrestart());
    c.arg("--stopped").args(args).arg(image);
    let r = Proc::spawn(c, "myrestart --stopped");
    r.wait_stderr("will stop (SIGSTOP)", LONG);
    let pid = r.program_pid();
    let deadline = Instant::now() + LONG;
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| rest.starts_with('T'))) {
        assert!(Instant::now() < deadline, "the restored program did not stop; {}", r.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    (r, pid)
}

/// Eight bytes of process `pid`'s memory at `addr`.
fn memory_at(pid: u32, addr: u64) -> [u8; 8] {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut b = [0u8; 8];
    mem.read_exact_at(&mut b, addr).unwrap();
    b
}

/// Eight bytes of `file` at `at`.
fn file_at(file: &Path, at: u64) -> [u8; 8] {
    let bytes = std::fs::read(file).unwrap();
    bytes[at as usize..at as usize + 8].try_into().unwrap()
}

const PWNED: &str = "PWNED!!!";

/// A base image that others may write, or that another user owns, is refused as the image
/// itself would be, naming the base; `--trust-image` restores it anyway, and then what the
/// program gets is what was checked: bytes `nobody` writes into the base after the restart
/// checked it (here while the restored program is stopped, before it touches them) do not
/// reach it.
#[test]
fn a_base_others_may_write_is_refused_and_never_read_after_its_check() {
    if !can_be_another_user("a_base_others_may_write_is_refused_and_never_read_after_its_check") {
        return;
    }
    let (wd, newest, base) = two_image_chain("trust-base");
    let name = base.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused(&[], &newest, &[&format!("base image {name} may be written by other users (uid 0, mode 666)"), "--trust-image"]);
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&base, Some(65534), None).unwrap();
    refused(&[], &newest, &[&format!("base image {name} is owned by another user (uid 65534"), "--trust-image"]);
    std::os::unix::fs::chown(&base, Some(0), None).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666)).unwrap();

    // A page the newest image takes from the base: where it is in the base, and in memory.
    let (offset, addr) = with_image(&std::fs::read(&newest).unwrap(), |img| {
        let k = img.chain().unwrap().unwrap().bases().position(|b| b.unwrap().name() == name.as_bytes()).unwrap() as u32 + 1;
        let run = img.shared_runs().map(Result::unwrap).find(|r| r.source == k).expect("a page taken from the base");
        (run.offset, run.addr(img.region(run.region as usize).unwrap().record.start))
    });
    let checked = file_at(&base, offset);
    let (mut r, pid) = restored_stopped(&["--trust-image"], &newest);
    assert!(r.stderr().contains(&format!("base image {name} may be written by other users; restoring it anyway (--trust-image)")), "{}", r.stderr());
    nobody_writes(&base, offset, PWNED);
    assert_eq!(&file_at(&base, offset), PWNED.as_bytes());
    assert_eq!(memory_at(pid, addr), checked, "bytes written into the base after it was checked reached the program");
    r.kill9();
    drop(wd);
}

/// The same for the image itself, restored with `--trust-image` though others may write it:
/// its memory comes from what was checked, not from the file as it is when a page is first
/// touched.
#[test]
fn an_image_trusted_though_others_may_write_it_is_never_read_after_its_check() {
    if !can_be_another_user("an_image_trusted_though_others_may_write_it_is_never_read_after_its_check") {
        return;
    }
    let wd = Workdir::new("trust-image");
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]);
    checkpointed(c, &wd, 3);
    let image = wd.image();
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o666)).unwrap();
    let bytes = std::fs::read(&image).unwrap();
    // The last stored word of the heap that is not zero (far from what the program last
    // touched): where it is in the file and in memory.
    let (offset, addr) = with_image(&bytes, |img| {
        let heap = (0..img.region_count()).map(|i| img.region(i).unwrap()).find(|r| r.name == b"[heap]").expect("a heap");
        assert!(heap.record.has_data() && !heap.record.compressed());
        let data = &bytes[heap.data_offset as usize..(heap.data_offset + heap.record.size()) as usize];
        let word = (0..data.len() / 8).rev().find(|&w| data[w * 8..w * 8 + 8] != [0; 8]).expect("heap data") as u64 * 8;
        (heap.data_offset + word, heap.record.start + word)
    });
    let checked = file_at(&image, offset);
    let (mut r, pid) = restored_stopped(&["--trust-image"], &image);
    assert!(r.stderr().contains("the image may be written by other users; restoring it anyway (--trust-image)"), "{}", r.stderr());
    nobody_writes(&image, offset, PWNED);
    assert_eq!(memory_at(pid, addr), checked, "bytes written into the image after it was checked reached the program");
    r.kill9();
}

/// A library that others may write (here mode 666 since the checkpoint), which the image names
/// instead of holding its pages: its pages are copied when the restart checks them, so that
/// what `nobody` writes into the file afterwards does not become the program's code.
#[test]
fn a_library_others_may_write_is_copied_when_checked() {
    if !can_be_another_user("a_library_others_may_write_is_copied_when_checked") {
        return;
    }
    let wd = Workdir::new("trust-library");
    let (exe, lib) = build_tick(&wd.path, 1);
    let mut c = Command::new(&exe);
    c.args(["100000", "10000"]);
    checkpointed(c, &wd, 3);
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (offset, addr) = with_image(&std::fs::read(wd.image()).unwrap(), |img| {
        let code = (0..img.region_count())
            .map(|i| img.region(i).unwrap())
            .find(|r| r.name == lib.as_os_str().as_encoded_bytes() && r.record.maps_private_file() && r.record.prot & 4 != 0)
            .expect("the library's code, mapped from its file again");
        (code.record.file_offset, code.record.start)
    });
    let checked = file_at(&lib, offset);
    let (mut r, pid) = restored_stopped(&[], &wd.image());
    nobody_writes(&lib, offset, PWNED);
    assert_eq!(memory_at(pid, addr), checked, "bytes written into the library after it was checked reached the program");
    // kill(2) of the restored program, a process of ours.
    send_signal(pid as i32, libc::SIGCONT);
    r.wait_lines(3, SHORT);
    r.kill9();
}

/// A library others may write at checkpoint time (mode 666), or another user's: the image
/// holds its pages rather than naming it by path and hash (its bytes could be other bytes with
/// the same hash by the restart), and what `nobody` writes into it after the checkpoint never
/// reaches the restored program.
#[test]
fn a_library_others_may_write_or_own_is_stored_in_the_image() {
    if !can_be_another_user("a_library_others_may_write_or_own_is_stored_in_the_image") {
        return;
    }
    for (what, mode, nobodys) in [("writable by others", 0o666, false), ("another user's", 0o755, true)] {
        let wd = Workdir::new("trust-library-stored");
        let (exe, lib) = build_tick(&wd.path, 1);
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(mode)).unwrap();
        if nobodys {
            give_to_nobody(&lib);
        }
        let mut c = Command::new(&exe);
        c.args(["100000", "10000"]);
        checkpointed(c, &wd, 3);
        let (offset, addr) = with_image(&std::fs::read(wd.image()).unwrap(), |img| {
            let code = (0..img.region_count())
                .map(|i| img.region(i).unwrap())
                .find(|r| r.name == lib.as_os_str().as_encoded_bytes() && r.record.prot & 4 != 0)
                .expect("the library's code");
            assert!(!code.record.maps_private_file() && code.record.has_data(), "a library {what} is named by the image, not held: {:?}", code.record);
            (code.record.file_offset, code.record.start)
        });
        let checked = file_at(&lib, offset);
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o666)).unwrap();
        nobody_writes(&lib, offset, PWNED);
        let (mut r, pid) = restored_stopped(&[], &wd.image());
        assert_eq!(memory_at(pid, addr), checked, "bytes written into a library {what} after the checkpoint reached the program");
        // kill(2) of the restored program, a process of ours.
        send_signal(pid as i32, libc::SIGCONT);
        r.wait_lines(3, SHORT);
        r.kill9();
    }
}

/// The program's stdout, appended to a log in a shared directory: after the checkpoint the log
/// is gone and `nobody` puts a symbolic link at its path, to a file of root's or to where one
/// would be made. The restart refuses, naming the log, and follows neither link: the file is
/// untouched and none is made. With the link gone, the log is made again at its path.
#[test]
fn a_log_replaced_by_a_symbolic_link_is_not_followed() {
    if !can_be_another_user("a_log_replaced_by_a_symbolic_link_is_not_followed") {
        return;
    }
    let wd = Workdir::new("trust-log-link");
    let dir = shared_dir(&wd.path);
    let log = dir.join("out.log");
    let mut c = Command::new("sh");
    c.args(["-c", "exec \"$0\" 100000 10000 >> \"$1\""]).arg(prog("counter", &[])).arg(&log);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter >> log");
    wait_file_lines(&log, 3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::remove_file(&log).unwrap();

    let victim = wd.path.join("victim");
    std::fs::write(&victim, "root's own file\n").unwrap();
    as_nobody(&["ln", "-s", path_str(&victim), path_str(&log)]);
    refused(&[], &wd.image(), &[&format!("fd 1: {}: a symbolic link is in its path now", log.display())]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's own file\n", "the restart wrote through the link");

    std::fs::remove_file(&log).unwrap();
    let made = wd.path.join("made-through-the-link");
    as_nobody(&["ln", "-s", path_str(&made), path_str(&log)]);
    refused(&[], &wd.image(), &[&format!("fd 1: {}: a symbolic link is in its path now", log.display())]);
    assert!(!made.exists(), "the restart made a file through a dangling link");

    std::fs::remove_file(&log).unwrap();
    let mut r = Proc::restart(&wd.image());
    r.wait_stderr("is gone; the program writes to a new file at that path", SHORT);
    wait_file_lines(&log, 3, SHORT);
    let m = std::fs::symlink_metadata(&log).unwrap();
    assert!(m.file_type().is_file() && m.uid() == 0, "{m:?}");
    r.kill9();
}

/// `files` reading `in.txt` in `dir` (appending to `log.txt` there), checkpointed into `wd`
/// and killed, and `in.txt` removed: its path, its text, and the inode number it had.
fn input_gone(wd: &Workdir, dir: &Path) -> (PathBuf, String, u64) {
    let input = dir.join("in.txt");
    let text = "a line of input\n".repeat(2000);
    std::fs::write(&input, &text).unwrap();
    let ino = std::fs::metadata(&input).unwrap().ino();
    let mut c = Command::new(prog("files", &[]));
    c.arg(&input).arg(dir.join("log.txt")).arg("20000");
    checkpointed(c, wd, 3);
    std::fs::remove_file(&input).unwrap();
    (input, text, ino)
}

/// The program's input in a shared directory is gone after the checkpoint, and `nobody` puts a
/// file of its own at that path (on a file system that reuses inode numbers, often with the old
/// one's): the restart refuses, naming the file and its owner, rather than giving the program
/// another user's file.
#[test]
fn another_users_file_at_a_data_files_path_is_refused() {
    if !can_be_another_user("another_users_file_at_a_data_files_path_is_refused") {
        return;
    }
    let wd = Workdir::on_disk("trust-owner");
    let (input, _, ino) = input_gone(&wd, &shared_dir(&wd.path));
    as_nobody(&["sh", "-c", &format!("yes 'a line of input' | head -n 2000 > '{}'", input.display())]);
    let reused = std::fs::metadata(&input).unwrap().ino() == ino;
    refused(&[], &wd.image(), &[&format!("{} belongs to uid 65534 now", input.display()), "uid 0"]);
    eprintln!("another_users_file_at_a_data_files_path_is_refused: the planted file {} the old inode number", if reused { "had" } else { "did not have" });
}

/// A file deleted after the checkpoint and made again by its owner may get the inode number
/// the old one had (ext4 hands out the lowest free one): it is still another file, used with
/// the warning a replaced file gets.
#[test]
fn a_new_file_with_an_old_inode_number_is_named_as_replaced() {
    let wd = Workdir::on_disk("trust-inode");
    let (input, text, ino) = input_gone(&wd, &wd.path);
    std::fs::write(&input, &text).unwrap();
    if std::fs::metadata(&input).unwrap().ino() != ino {
        eprintln!("a_new_file_with_an_old_inode_number_is_named_as_replaced: the new file got another inode number here; the warning is checked all the same");
    }
    let mut r = Proc::restart(&wd.image());
    let err = r.wait_stderr("was replaced since the checkpoint", SHORT);
    assert!(err.contains(&format!("{} was replaced since the checkpoint; using the file now at that path", input.display())), "{err}");
    r.wait_lines(3, SHORT);
    r.kill9();
}

/// Gives `path` (a file or directory root made) to `nobody`, as if that user had put it there.
fn give_to_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

/// A file the program maps `MAP_SHARED` in a shared directory is removed after the checkpoint:
/// a symbolic link `nobody` puts at its path is not followed, and a file of `nobody`'s there
/// is refused, naming its owner (the program would write it with our rights); a file of ours
/// there is used, named as replaced.
#[test]
fn another_users_file_at_a_shared_mappings_path_is_refused() {
    if !can_be_another_user("another_users_file_at_a_shared_mappings_path_is_refused") {
        return;
    }
    let wd = Workdir::new("trust-mapped");
    let dir = shared_dir(&wd.path);
    let file = dir.join("counter.dat");
    let mut c = Command::new(prog("mapcount", &[]));
    c.arg(&file).arg("100000");
    checkpointed(c, &wd, 20);
    std::fs::remove_file(&file).unwrap();

    let victim = wd.path.join("victim");
    std::fs::write(&victim, vec![7u8; 4096]).unwrap();
    as_nobody(&["ln", "-s", path_str(&victim), path_str(&file)]);
    refused(&[], &wd.image(), &[&format!("mapped file {}: a symbolic link is in its path now", file.display())]);
    assert_eq!(std::fs::read(&victim).unwrap(), vec![7u8; 4096], "the restart mapped the file the link leads to");

    std::fs::remove_file(&file).unwrap();
    as_nobody(&["sh", "-c", &format!("head -c 4096 /dev/zero > '{}'", file.display())]);
    refused(&[], &wd.image(), &[&format!("mapped file: {} belongs to uid 65534 now, where the program had a file of yours (uid 0)", file.display())]);

    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, vec![0u8; 4096]).unwrap();
    // Another file of ours: a file the program wrote that is not as it was, taken as it is.
    let mut c = Command::new(myrestart());
    c.arg("--files-as-is").arg(wd.image());
    let mut r = Proc::spawn(c, "myrestart --files-as-is");
    r.wait_stderr(&format!("mapped file {} was replaced since the checkpoint", file.display()), SHORT);
    r.wait_stderr(&format!("mapped file: {} changed since the checkpoint (another file is at its path now)", file.display()), SHORT);
    r.wait_lines(3, SHORT);
    r.kill9();
}

/// The program file in a shared directory, its pages all in the image (so that only the path
/// names it): a symbolic link put at its path is not followed, and another user's file there
/// is refused, as any file the program had would be.
#[test]
fn another_users_program_file_is_refused() {
    if !can_be_another_user("another_users_program_file_is_refused") {
        return;
    }
    let wd = Workdir::new("trust-exe");
    let dir = shared_dir(&wd.path);
    let exe = dir.join("counter");
    std::fs::copy(prog("counter", &[]), &exe).unwrap();
    let mut c = Command::new(&exe);
    c.args(["100000", "10000"]).env("CKPT_SELF_CONTAINED", "1");
    checkpointed(c, &wd, 3);
    std::fs::rename(&exe, wd.path.join("counter.old")).unwrap();

    as_nobody(&["ln", "-s", path_str(&wd.path.join("counter.old")), path_str(&exe)]);
    refused(&[], &wd.image(), &[&format!("program file {}: a symbolic link is in its path now", exe.display())]);

    std::fs::remove_file(&exe).unwrap();
    std::fs::copy(wd.path.join("counter.old"), &exe).unwrap();
    give_to_nobody(&exe);
    refused(&[], &wd.image(), &[&format!("program file: {} belongs to uid 65534 now", exe.display())]);

    std::fs::remove_file(&exe).unwrap();
    std::fs::rename(wd.path.join("counter.old"), &exe).unwrap();
    let mut r = Proc::restart(&wd.image());
    r.wait_lines(3, SHORT);
    let pid = r.program_pid();
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), exe);
    r.kill9();
}

/// The program's working directory in a shared directory is moved away after the checkpoint: a
/// symbolic link put at its path is not entered, nor is another user's directory there; the
/// directory put back is.
#[test]
fn another_users_directory_at_the_working_directorys_path_is_refused() {
    if !can_be_another_user("another_users_directory_at_the_working_directorys_path_is_refused") {
        return;
    }
    let wd = Workdir::new("trust-cwd");
    let dir = shared_dir(&wd.path);
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let mut c = Command::new(prog("counter", &[]));
    c.args(["100000", "10000"]).current_dir(&work);
    checkpointed(c, &wd, 3);
    let moved = wd.path.join("work.old");
    std::fs::rename(&work, &moved).unwrap();

    as_nobody(&["ln", "-s", path_str(&moved), path_str(&work)]);
    refused(&[], &wd.image(), &[&format!("working directory {}: a symbolic link is in its path now", work.display())]);

    std::fs::remove_file(&work).unwrap();
    as_nobody(&["mkdir", path_str(&work)]);
    refused(&[], &wd.image(), &[&format!("working directory: {} belongs to uid 65534 now", work.display())]);

    std::fs::remove_dir(&work).unwrap();
    std::fs::rename(&moved, &work).unwrap();
    let mut r = Proc::restart(&wd.image());
    r.wait_lines(3, SHORT);
    assert_eq!(std::fs::read_link(format!("/proc/{}/cwd", r.program_pid())).unwrap(), work);
    r.kill9();
}

/// A named pipe the program had open, in a shared directory, is removed after the checkpoint
/// and `nobody` makes one at its path: the restart refuses it (the program would read what that
/// user writes there).
#[test]
fn another_users_fifo_at_a_fifos_path_is_refused() {
    if !can_be_another_user("another_users_fifo_at_a_fifos_path_is_refused") {
        return;
    }
    let wd = Workdir::new("trust-fifo");
    let dir = shared_dir(&wd.path);
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut c = Command::new("sh");
    c.args(["-c", "exec 3<>\"$1\"; exec \"$0\" 100000 10000"]).arg(prog("counter", &[])).arg(&fifo);
    checkpointed(c, &wd, 3);
    std::fs::remove_file(&fifo).unwrap();
    as_nobody(&["mkfifo", path_str(&fifo)]);
    refused(&[], &wd.image(), &[&format!("fd 3 (FIFO): {} belongs to uid 65534 now", fifo.display())]);

    std::fs::remove_file(&fifo).unwrap();
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut r = Proc::restart(&wd.image());
    r.wait_lines(3, SHORT);
    r.kill9();
}

/// A user with no name and no files (not `nobody`, whose ID is the one a user namespace shows
/// for every ID it does not map).
const SOMEONE: u32 = 4321;

/// `setpriv` running `args` as user [`SOMEONE`]: for a `Proc`.
fn someone_command(args: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([format!("--reuid={SOMEONE}"), format!("--regid={SOMEONE}"), "--clear-groups".into(), "--".into()]).args(args);
    c
}

/// A user other than root checkpoints a process tree and restarts it. Its processes come back in
/// a user namespace of that user's own, where every other user's file (root's libraries, say)
/// looks like the overflow user's: the restart judges owners by the IDs outside, so a library
/// of root's is mapped from its file (not copied as if another user's), and nothing is refused.
#[test]
fn a_tree_of_another_user_restarts_judging_owners_by_the_real_ids() {
    if !can_be_another_user("a_tree_of_another_user_restarts_judging_owners_by_the_real_ids") {
        return;
    }
    let wd = Workdir::new("trust-tree-user");
    std::os::unix::fs::chown(&wd.path, Some(SOMEONE), Some(SOMEONE)).unwrap();
    let family = prog("family", &[]);
    let mut orig = Proc::preloaded(someone_command(&[family.as_os_str(), "100000".as_ref(), "2000".as_ref()]), &wd.image(), "family as another user");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let libc_named = with_image(&std::fs::read(wd.image()).unwrap(), |img| {
        (0..img.region_count()).map(|i| img.region(i).unwrap()).any(|r| r.record.maps_private_file() && r.name.ends_with(b".so.6"))
    });
    assert!(libc_named, "the image holds the C library instead of naming it");
    let mut r = Proc::spawn(someone_command(&[myrestart().as_os_str(), wd.image().as_os_str()]), "myrestart as another user");
    r.wait_lines(3, LONG);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", r.program_pid())).unwrap();
    let err = r.stderr();
    assert!(maps.lines().any(|l| l.contains("libc.so.6")), "the C library is not mapped from its file: {maps}\n{err}");
    let copied = |l: &&str| l.contains("/memfd:") && (l.contains(".so") || l.contains("family"));
    assert!(!maps.lines().any(|l| copied(&l)), "the program or a library was copied: {maps}\n{err}");
    r.kill_tree();
}

/// `ckpt ARGS`: exit status, stdout, stderr.
fn run_ckpt(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(ckpt()).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `ckpt` holds images to myrestart's rule of ownership: a base image others may write (or an
/// image another user owns) makes `ckpt inspect` call the image not restartable and say why,
/// `ckpt restart --newest` pass it over, and `ckpt copy` refuse to make a copy of the user's own
/// from it; each unless `--trust-image`.
#[test]
fn ckpt_calls_an_image_others_could_change_not_restartable() {
    if !can_be_another_user("ckpt_calls_an_image_others_could_change_not_restartable") {
        return;
    }
    let (wd, newest, base) = two_image_chain("trust-ckpt");
    let name = base.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666)).unwrap();
    let why = format!("base image {name} may be written by other users (uid 0, mode 666); restoring it would run its code as you: give --trust-image if you mean it");

    let (code, out, err) = run_ckpt(&["inspect".as_ref(), "--json".as_ref(), newest.as_os_str()]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(code, Some(1), "{out} {err}");
    assert_eq!(doc["restartable"], false, "{out}");
    assert_eq!(doc["trusted"], false, "{out}");
    assert_eq!(doc["restartable_reason"].as_str(), Some(why.as_str()), "{out}");
    let (code, out, err) = run_ckpt(&["inspect".as_ref(), "--trust-image".as_ref(), newest.as_os_str()]);
    assert_eq!(code, Some(0), "{out} {err}");

    let dest = wd.path.join("copy");
    let (code, _, err) = run_ckpt(&["copy".as_ref(), newest.as_os_str(), dest.as_os_str()]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not copied: it cannot be restarted") && err.contains(&why), "{err}");
    assert!(!dest.exists());
    let (code, _, err) = run_ckpt(&["copy".as_ref(), "--trust-image".as_ref(), newest.as_os_str(), dest.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(dest.exists());

    let (code, _, err) = run_ckpt(&["restart".as_ref(), "--newest".as_ref(), wd.image().as_os_str()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("passing over {}: {why}", newest.display())), "{err}");
    assert!(err.contains("can be restarted"), "{err}");

    // An image another user owns: the same.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&dest, Some(65534), None).unwrap();
    let (code, out, err) = run_ckpt(&["inspect".as_ref(), "--json".as_ref(), dest.as_os_str()]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(code, Some(1), "{out} {err}");
    let reason = doc["restartable_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("the image is owned by another user (uid 65534"), "{out}");
}
