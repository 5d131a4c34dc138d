//! An image restarted on another node of a cluster: the same software, but other files. The
//! other node is simulated in a private mount namespace (`unshare -m`, as root) where the
//! program and every library it maps are byte-identical copies (`cp -p`, on tmpfs: other
//! inodes, another device) bind-mounted over the originals. There `myrestart`, `ckpt restart`
//! and `ckpt job` must go on with the program; a copy with one byte changed is refused by
//! name, the refusal saying how to make images that carry their files, and such an image
//! (`--self-contained`) restarts there. Skipped, with a message, where the test is not root.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this test may make mount namespaces and bind-mount in them; if not, it is skipped.
fn can_be_another_node(test: &str) -> bool {
    let able = euid() == 0 && Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) && Command::new("nsenter").arg("--version").output().is_ok();
    if !able {
        skip(test, "it simulates another node in a private mount namespace, which needs root, unshare and nsenter");
    }
    able
}

/// A file process `pid` maps (its program, the dynamic loader, libc, libckpt.so, …), and the
/// file offset of its first executable mapping (code a restart maps from the file again).
struct Mapped {
    path: PathBuf,
    code_at: u64,
}

/// Every file process `pid` maps, each once.
fn mapped_files(pid: u32) -> Vec<Mapped> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut files: Vec<Mapped> = Vec::new();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some(&name) = f.get(5) else { continue };
        let p = PathBuf::from(name);
        if !name.starts_with('/') || !p.is_file() {
            continue;
        }
        let code_at = if f[1].contains('x') { u64::from_str_radix(f[2], 16).unwrap() } else { u64::MAX };
        match files.iter_mut().find(|m| m.path == p) {
            Some(m) => m.code_at = m.code_at.min(code_at),
            None => files.push(Mapped { path: p, code_at }),
        }
    }
    assert!(files.iter().any(|f| f.path.to_string_lossy().contains("libc.so")), "no libc among {:?}", files.iter().map(|f| &f.path).collect::<Vec<_>>());
    files
}

/// Another node: a process holding a mount namespace in which each of `files` is a copy made
/// with `cp -p` into `dir` (a new inode on tmpfs), bind-mounted over the original; `changed`,
/// if given, has a byte of its code (the first of its first executable mapping) flipped in its
/// copy, which keeps the original's size and modification time.
struct Node {
    holder: Proc,
}

impl Node {
    fn new(dir: &Path, files: &[Mapped], changed: Option<&Path>) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let mut script = String::from("set -e\n");
        for (i, m) in files.iter().enumerate() {
            let f = &m.path;
            let copy = dir.join(format!("{i}-{}", f.file_name().unwrap().to_string_lossy()));
            let cp = Command::new("cp").arg("-p").arg(f).arg(&copy).status().unwrap();
            assert!(cp.success(), "cp -p {}", f.display());
            if Some(f.as_path()) == changed {
                let mut bytes = std::fs::read(&copy).unwrap();
                bytes[m.code_at as usize] ^= 0xff;
                let times = std::fs::metadata(f).unwrap().modified().unwrap();
                std::fs::write(&copy, bytes).unwrap();
                std::fs::File::options().write(true).open(&copy).unwrap().set_modified(times).unwrap();
            }
            script.push_str(&format!("mount --bind '{}' '{}'\n", copy.display(), f.display()));
        }
        script.push_str("echo mounted\nexec sleep 600\n");
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
        let holder = Proc::spawn(c, "the other node's namespace");
        holder.wait_lines(1, SHORT);
        Node { holder }
    }

    /// The words that run a command on this node.
    fn prefix(&self) -> Vec<String> {
        // nsenter leaves the command in the namespace's root directory: back to ours.
        let cwd = std::env::current_dir().unwrap();
        ["nsenter", "-t", &self.holder.pid.to_string(), "-m", "--", "env", "-C", cwd.to_str().unwrap()].map(String::from).to_vec()
    }

    /// `args` run on this node.
    fn command(&self, args: &[&std::ffi::OsStr]) -> Command {
        let prefix = self.prefix();
        let mut c = Command::new(&prefix[0]);
        c.args(&prefix[1..]).args(args);
        c
    }

    /// `st_dev` and `st_ino` of `path` as this node sees it.
    fn file_id(&self, path: &Path) -> String {
        let out = self.command(&["stat".as_ref(), "-c".as_ref(), "%d:%i".as_ref(), path.as_os_str()]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.holder.kill9();
    }
}

fn counter(n: usize) -> Command {
    let mut c = Command::new(prog("counter", &[]));
    c.args([n.to_string(), "10000".to_string()]);
    c
}

/// Runs `cmd` (the program, preloaded or through `ckpt run`) until it has printed 30 lines,
/// checkpoints it into `image`, lets it print a few more and kills it. Returns the files it
/// mapped and the lines seen at the checkpoint and at the kill.
fn checkpointed_at_30(cmd: Command, image: &Path) -> (Vec<Mapped>, usize, usize) {
    let mut orig = Proc::spawn(cmd, "the program to checkpoint");
    orig.wait_lines(30, LONG);
    let files = mapped_files(orig.pid);
    let at_ckpt = orig.lines().len();
    orig.checkpoint(image, LONG);
    let n = orig.lines().len();
    orig.wait_lines(n + 3, LONG);
    orig.kill9();
    (files, at_ckpt, orig.lines().len())
}

/// The program checkpointed on this node restarts on another whose program and libraries are
/// copies: with myrestart, then with `ckpt restart`. Each goes on from the checkpoint to the
/// end, and says nothing of files that changed or were replaced.
#[test]
fn restart_on_a_node_whose_program_and_libraries_are_copies() {
    if !can_be_another_node("restart_on_a_node_whose_program_and_libraries_are_copies") {
        return;
    }
    let wd = Workdir::new("othernode");
    let n = 300;
    let reference = reference_run(counter(n), LONG);
    let mut c = counter(n);
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    let (files, at_ckpt, at_kill) = checkpointed_at_30(c, &wd.image());
    let node = Node::new(&wd.path.join("node"), &files, None);
    for f in files.iter().map(|m| &m.path) {
        let here = std::fs::metadata(f).unwrap();
        assert_ne!(node.file_id(f), format!("{}:{}", here.dev(), here.ino()), "{} is not another file on the other node", f.display());
    }
    for restart in [vec![myrestart().into_os_string()], vec![ckpt().into_os_string(), "restart".into()]] {
        let mut args: Vec<&std::ffi::OsStr> = restart.iter().map(|a| a.as_os_str()).collect();
        args.push(wd.image().into_os_string().leak());
        let mut restored = Proc::spawn(node.command(&args), "restart on the other node");
        let st = restored.wait_exit(LONG);
        let e = restored.stderr();
        assert!(st.success(), "{args:?} on the other node: {st}; stderr {e:?}");
        assert_continues(&reference, at_ckpt, at_kill, &restored.lines());
        assert!(!e.contains("changed since") && !e.contains("replaced"), "{e}");
    }
}

/// On a node where the program's copy differs by one byte, the restart is refused, naming the
/// program and how to make images that carry their files; an image made so (`ckpt run
/// --self-contained`) restarts there.
#[test]
fn a_changed_program_is_refused_by_name_and_a_self_contained_image_restarts() {
    if !can_be_another_node("a_changed_program_is_refused_by_name_and_a_self_contained_image_restarts") {
        return;
    }
    let wd = Workdir::new("othernode-changed");
    let n = 300;
    let reference = reference_run(counter(n), LONG);
    let mut c = counter(n);
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    let (files, ..) = checkpointed_at_30(c, &wd.image());
    let program = prog("counter", &[]);
    let node = Node::new(&wd.path.join("node"), &files, Some(&program));
    let out = node.command(&[myrestart().as_os_str(), wd.image().as_os_str()]).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    let line = e.lines().last().unwrap_or_default();
    assert!(line.contains(&format!("{} changed since the checkpoint (its contents differ)", program.display())), "{e}");
    assert!(line.contains("CKPT_SELF_CONTAINED=1") && line.contains("--self-contained"), "{e}");

    let image = wd.path.join("whole");
    let mut c = Command::new(ckpt());
    c.args(["run", "--self-contained", "--image"]).arg(&image).arg("--").arg(&program).args([n.to_string(), "10000".to_string()]);
    let (_, at_ckpt, at_kill) = checkpointed_at_30(c, &image);
    let mut restored = Proc::spawn(node.command(&[myrestart().as_os_str(), image.as_os_str()]), "restart of the self-contained image");
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_continues(&reference, at_ckpt, at_kill, &restored.lines());
}

/// `ckpt job` stopped at a last checkpoint on this node, and started again on another whose
/// program and libraries are copies (a requeue that lands elsewhere), restarts the image
/// there; its output over both starts is an uninterrupted run's.
#[test]
fn a_job_requeued_onto_another_node_goes_on() {
    if !can_be_another_node("a_job_requeued_onto_another_node_goes_on") {
        return;
    }
    let wd = Workdir::new("othernode-job");
    let (out, err) = (wd.path.join("out"), wd.path.join("err"));
    let n = 300;
    let reference = reference_run(counter(n), LONG);
    let image = wd.image();
    let start = |prefix: &[String]| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(r#"out=$1 err=$2; shift 2; exec "$@" >> "$out" 2>> "$err""#).arg("sh").arg(&out).arg(&err);
        c.args(prefix).arg(ckpt()).args(["job", "--image"]).arg(&image).arg("--").arg(prog("counter", &[])).args([n.to_string(), "10000".to_string()]);
        Proc::spawn(c, "ckpt job")
    };
    let mut job = start(&[]);
    wait_file_lines(&out, 30, LONG);
    // What the job's program maps, for the other node to have copies of.
    let program = descendants(job.pid).into_iter().chain([job.pid]).find(|&p| {
        std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with("counter"))
    });
    let files = mapped_files(program.expect("the job's program"));
    job.signal(libc::SIGUSR1);
    assert_eq!(job.wait_exit(LONG).code(), Some(75), "{}", std::fs::read_to_string(&err).unwrap());

    let node = Node::new(&wd.path.join("node"), &files, None);
    let mut job = start(&node.prefix());
    let st = job.wait_exit(LONG);
    let e = std::fs::read_to_string(&err).unwrap();
    assert_eq!(st.code(), Some(0), "{e}");
    assert_eq!(e.matches("ckpt: restarting").count(), 1, "{e}");
    assert_eq!(file_lines(&out), reference, "the job's output differs from an uninterrupted run; stderr: {e}");
}

/// A node without the files the program had in a directory of the old one's own (its /tmp,
/// local scratch): the restart names each of them, one line each (the working directory, the
/// file it reads, the log it appends to), and is refused, before anything is changed.
#[test]
fn each_file_missing_on_the_new_node_is_named() {
    let wd = Workdir::new("othernode-missing");
    let scratch = wd.path.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let input = scratch.join("in");
    std::fs::write(&input, (1..=400).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
    let log = scratch.join("log");
    let mut c = Command::new(prog("files", &[]));
    c.arg(&input).arg(&log).arg("10000").current_dir(&scratch);
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    checkpointed_at_30(c, &wd.image());
    std::fs::remove_dir_all(&scratch).unwrap();
    let out = Command::new(myrestart()).arg(wd.image()).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    let named: Vec<&str> = e.lines().filter(|l| l.contains("is gone since the checkpoint (or it was a file of the node")).collect();
    assert_eq!(named.len(), 3, "{e}");
    for (what, path) in [("working directory", &scratch), ("fd 3", &input), ("fd 4", &log)] {
        assert!(named.iter().any(|l| l.contains(&format!("{what}: {} is gone since the checkpoint (or it was a file of the node", path.display()))), "{what} {}: {e}", path.display());
    }
    assert_eq!(e.lines().count(), 3, "only the missing files are named: {e}");
    assert!(!scratch.exists(), "the refused restart made the directory again");
}

/// An image of one process with its `NT_CKPT_NODE` note changed by `f`, and its header
/// checksum made again as the writer makes it (the way an image taken on another machine
/// would say so).
fn renoded(bytes: &[u8], f: impl FnOnce(&mut ckpt_image::node::Node)) -> Vec<u8> {
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(bytes).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    let desc = img.note(ckpt_image::CKPT_NOTE_NAME, ckpt_image::NT_CKPT_NODE).expect("a node note").desc;
    let (at, len) = (desc.as_ptr() as usize - bytes.as_ptr() as usize, desc.len());
    let mut node = ckpt_image::node::Node::read(desc).unwrap();
    f(&mut node);
    let mut t = bytes.to_vec();
    node.write(&mut ckpt_image::bytes::Writer::new(&mut t[at..at + len]));
    ckpt_image::seal(&mut t[..meta_len]).unwrap();
    t
}

/// The node an image was taken on, as its note says.
fn node_of(image: &Path) -> ckpt_image::node::Node {
    let bytes = std::fs::read(image).unwrap();
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    img.node().expect("a node note").unwrap()
}

/// The machine an image was taken on, against this one: another host name is one line and
/// the program goes on (it sees the node it runs on); a CPU feature the image's CPU had and
/// this one lacks refuses the restart, naming each; another kernel whose vdso is the same is
/// one line, one whose vdso differs is refused with the reason.
#[test]
fn another_host_cpu_or_kernel_is_named_or_refused() {
    let wd = Workdir::new("othernode-machine");
    let n = 300;
    let reference = reference_run(counter(n), LONG);
    let mut c = counter(n);
    c.env("LD_PRELOAD", libckpt()).env("CKPT_IMAGE", wd.image());
    let (_, at_ckpt, at_kill) = checkpointed_at_30(c, &wd.image());
    let bytes = std::fs::read(wd.image()).unwrap();
    let here = node_of(&wd.image());
    let host = String::from_utf8(Command::new("uname").arg("-n").output().unwrap().stdout).unwrap().trim().to_string();
    assert_eq!(here.hostname(), host.as_bytes(), "the image records this host");
    let restart = |bytes: &[u8], name: &str| {
        let image = wd.path.join(name);
        std::fs::write(&image, bytes).unwrap();
        let mut p = Proc::restart(&image);
        let st = p.wait_exit(LONG);
        (st, p.lines(), p.stderr())
    };

    // Another host name: one line; the program goes on.
    let (st, lines, e) = restart(&renoded(&bytes, |n| *n = ckpt_image::node::Node::new(b"node-old", n.vdso, n.cpu)), "host");
    assert!(st.success(), "{e}");
    assert_continues(&reference, at_ckpt, at_kill, &lines);
    assert_eq!(e.trim(), format!("myrestart: checkpointed on node-old, restarting on {host}"), "{e}");

    // A CPU with features this one lacks: refused, naming them.
    let lacking: Vec<(usize, u8, &str)> = ckpt_image::node::FEATURES.iter().copied().filter(|&(w, b, _)| here.cpu[w] & (1 << b) == 0).take(2).collect();
    if lacking.is_empty() {
        skip("another_host_cpu_or_kernel_is_named_or_refused", "this CPU has every feature ckpt names: no CPU with more to pretend");
    } else {
        let (st, _, e) = restart(&renoded(&bytes, |n| lacking.iter().for_each(|&(w, b, _)| n.cpu[w] |= 1 << b)), "cpu");
        assert_eq!(st.code(), Some(2), "{e}");
        let names = lacking.iter().map(|f| f.2).collect::<Vec<_>>().join(", ");
        assert!(e.contains(&format!("the image was taken on a CPU with {names}; this one lacks them")), "{e}");
    }
    // Fewer features there than here: compatible.
    let (st, _, e) = restart(&renoded(&bytes, |n| n.cpu = [0; ckpt_image::node::CPU_WORDS]), "fewer");
    assert!(st.success() && e.is_empty(), "{e}");

    // Another kernel: with the same vdso, one line; with another, refused.
    let other = restated(&bytes, |st| {
        st.kernel = [0; 72];
        st.kernel[..16].copy_from_slice(b"5.4.0-old x86_64");
    });
    let (st, lines, e) = restart(&other, "kernel");
    assert!(st.success(), "{e}");
    assert_continues(&reference, at_ckpt, at_kill, &lines);
    assert!(e.contains("the image was taken on kernel 5.4.0-old x86_64, and this is") && e.contains("their vdso is the same"), "{e}");
    let (st, _, e) = restart(&renoded(&other, |n| n.vdso.0 ^= 1), "vdso");
    assert_eq!(st.code(), Some(2), "{e}");
    assert!(e.contains("the image was taken on kernel 5.4.0-old x86_64 and this is") && e.contains("whose vdso differs"), "{e}");
}

/// A process made with PID `pid` (`sleep`), the way another node's processes may hold the
/// program's PIDs: `ns_last_pid` set just below it (root only), tried again while another
/// process on the machine takes it first. `None` if it cannot be had.
fn occupy(pid: u32) -> Option<std::process::Child> {
    for _ in 0..500 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let mut c = Command::new("sleep").arg("600").stdin(std::process::Stdio::null()).spawn().unwrap();
        if c.id() == pid {
            return Some(c);
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    None
}

/// The last PID of an `NSpid:` line in /proc/PID/status (or of a task's): the ID in the
/// innermost namespace, the one the program sees.
fn own_id(status: &str) -> u32 {
    status.lines().find(|l| l.starts_with("NSpid:")).and_then(|l| l.split_whitespace().last()).unwrap().parse().unwrap()
}

/// The program's PID and one of its threads' TIDs are held by other processes where it
/// restarts (another node's own processes): the restart still gives the program, and each
/// thread, its own IDs (in a PID namespace of its own), and leaves the other processes alone.
#[test]
fn pids_taken_where_it_restarts_are_its_own_again() {
    if !can_be_another_node("pids_taken_where_it_restarts_are_its_own_again") {
        return;
    }
    let wd = Workdir::new("othernode-pids");
    let workers = 4;
    let tick = |l: &str| -> usize {
        l.split(' ').find_map(|f| f.strip_prefix("ok=")).unwrap_or_else(|| panic!("{l}")).parse().unwrap()
    };
    let mut c = Command::new(prog("threads", &["-pthread"]));
    c.args([workers.to_string(), "100000".to_string()]);
    let mut orig = Proc::preloaded(c, &wd.image(), "threads");
    orig.wait_until(|l| l.len() >= 3, LONG, "a few ticks");
    let pid = orig.pid;
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap()).collect();
    tids.sort();
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let tid = *tids.iter().find(|&&t| t != pid).unwrap();
    let (Some(mut holds_pid), Some(mut holds_tid)) = (occupy(pid), occupy(tid)) else {
        skip("pids_taken_where_it_restarts_are_its_own_again", "the PIDs could not be taken (another process got them first every time)");
        return;
    };

    let mut restored = Proc::restart(&wd.image());
    let lines = restored.wait_lines(5, LONG);
    for l in &lines {
        assert_eq!(tick(l), workers, "a worker lost its TID: {l}; stderr {}", restored.stderr());
    }
    let program = restored.program_pid();
    assert_eq!(own_id(&std::fs::read_to_string(format!("/proc/{program}/status")).unwrap()), pid);
    let mut now: Vec<u32> = std::fs::read_dir(format!("/proc/{program}/task"))
        .unwrap()
        .map(|e| own_id(&std::fs::read_to_string(e.unwrap().path().join("status")).unwrap()))
        .collect();
    now.sort();
    assert_eq!(now, tids, "the threads' TIDs as the program sees them");
    // The processes that hold those PIDs here are untouched.
    assert!(holds_pid.try_wait().unwrap().is_none() && holds_tid.try_wait().unwrap().is_none());
    assert_eq!((holds_pid.id(), holds_tid.id()), (pid, tid));
    restored.kill9();
    for c in [&mut holds_pid, &mut holds_tid] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
