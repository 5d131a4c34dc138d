//! `make bench`: how long checkpoints and restarts take, next to what this machine can do at
//! best with the same bytes (memcpy, write() to a file, read() from it), on the same
//! filesystem, in one run.
//!
//! Usage: `ckpt-bench [--dir DIR] [--sizes 64,512,2048] [--fills random,zero,half,random+lz4,half+lz4,random+64 threads,random+4 processes,random+attached,migrate]`
//! (`+lz4`: the image is written with `CKPT_COMPRESS=lz4`; `+64 threads`: the program has 64
//! more threads; `+4 processes`: it is a tree of 4 processes, each with the heap; both measured
//! at 512 MiB only; `+attached`: the program runs without libckpt and `ckpt checkpoint PID`
//! attaches to it, measured at 512 MiB only). The restart on another node (program and
//! libraries copies with other inodes, in a mount namespace) is measured at the smallest size.
//!
//! The VM behind these machines takes freed memory back a couple of seconds after it is freed,
//! and the next first touch then costs about a second per GiB. So a buffer of the working size
//! is touched and freed right before every timed step, limits included.

use ckpt_tests::{ckpt, compile, myrestart, root, Proc};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    dir: PathBuf,
    sizes: Vec<usize>,
    fills: Vec<String>,
}

fn options() -> Options {
    let fills = ["random", "zero", "half", "random+lz4", "half+lz4", "random+64 threads", "random+4 processes", "random+attached", "migrate"];
    let mut o = Options { dir: PathBuf::from("/dev/shm"), sizes: vec![64, 512, 2048], fills: fills.iter().map(|f| f.to_string()).collect() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--dir" => o.dir = PathBuf::from(value),
            "--sizes" => o.sizes = value.split(',').map(|v| v.parse().expect("--sizes takes MiB numbers")).collect(),
            "--fills" => o.fills = value.split(',').map(String::from).collect(),
            "-h" | "--help" => {
                println!("usage: ckpt-bench [--dir DIR] [--sizes 64,512,2048] [--fills random,zero,half,random+lz4,half+lz4,random+64 threads,random+4 processes,random+attached,migrate]");
                std::process::exit(0);
            }
            other => {
                eprintln!("ckpt-bench: unknown option {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    o
}

/// Touches and frees `bytes` of memory, so that the host has handed it to the VM again.
fn touch(bytes: usize) {
    let mut v = vec![0u8; bytes];
    for i in (0..bytes).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The machine's own limits for `bytes`: memcpy, write() (with fsync) and read(), in seconds.
fn limits(bytes: usize, dir: &Path) -> (f64, f64, f64) {
    touch(2 * bytes);
    let src = vec![7u8; bytes];
    let mut dst = vec![1u8; bytes];
    let t = Instant::now();
    dst.copy_from_slice(&src);
    let memcpy = secs(t.elapsed());
    std::hint::black_box(&dst);
    drop(dst);

    let write = write_limit(&src, dir, false);
    drop(src);

    // Into new memory, as a restore must: page allocation, not copying, bounds it here.
    let path = dir.join("ckpt-bench-limit");
    touch(2 * bytes);
    let t = Instant::now();
    let mut back = Vec::with_capacity(bytes);
    std::fs::File::open(&path).unwrap().read_to_end(&mut back).unwrap();
    let read = secs(t.elapsed());
    std::hint::black_box(&back);
    let _ = std::fs::remove_file(&path);
    (memcpy, write, read)
}

/// `write()` of `src` into a new file in `dir` (with fsync), after touching twice as much
/// memory as a checkpoint's run does; the file is kept for [`limits`] to read back unless
/// `remove`. Seconds.
fn write_limit(src: &[u8], dir: &Path, remove: bool) -> f64 {
    let path = dir.join("ckpt-bench-limit");
    touch(2 * src.len());
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(src).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let write = secs(t.elapsed());
    if remove {
        let _ = std::fs::remove_file(&path);
    }
    write
}

#[derive(Clone)]
struct Row {
    /// From SIGUSR2 (or starting `ckpt checkpoint`) until the image is renamed into place: by
    /// the writer's own clock where it says when (`CKPT_TIMES`), else as the bench saw it.
    checkpoint: f64,
    /// From the same start until the bench, woken by inotify, saw the image.
    seen: f64,
    pause: f64,
    apparent: u64,
    allocated: u64,
    mapped: f64,
    mapped_unverified: f64,
    eager: f64,
    /// Mapping the image and hashing its data on both cores, as a verified restart does, and
    /// nothing else (0: not measured for this case).
    floor: f64,
    /// The writer's steps (`CKPT_TIMES`): each one's end, in ms from the start of the handler.
    phases: Vec<(String, f64)>,
}

/// The machine's limits a row's targets are measured against, in seconds: `write()` of as
/// many bytes (with fsync), and the zero test over as much memory of zeros.
#[derive(Clone, Copy)]
struct Limits {
    write: f64,
    zero: f64,
}

/// Repetitions of each case; the table shows medians.
const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Waits (blocked in inotify, so as not to take CPU from the writer) until `path` appears by
/// a rename into its directory.
fn wait_for_file(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::ffi::CString::new(path.parent().unwrap().as_os_str().as_bytes()).unwrap();
    // SAFETY: plain system calls on a descriptor we own; the buffer outlives each read.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC);
        assert!(fd >= 0, "inotify_init1");
        assert!(libc::inotify_add_watch(fd, dir.as_ptr(), libc::IN_MOVED_TO | libc::IN_CREATE) >= 0, "inotify_add_watch");
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        while !path.exists() {
            assert!(Instant::now() < deadline, "no image at {}", path.display());
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            if libc::poll(&mut pfd, 1, 100) > 0 {
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            }
        }
        libc::close(fd);
    }
}

/// From starting myrestart until each of the `procs` processes says it runs again.
fn restart_time(image: &Path, mib: usize, procs: usize, extra: &[&str]) -> f64 {
    restart_time_in(&[], image, mib, procs, extra)
}

/// [`restart_time`], myrestart started by the command `prefix` (another mount namespace).
fn restart_time_in(prefix: &[String], image: &Path, mib: usize, procs: usize, extra: &[&str]) -> f64 {
    touch(2 * mib * MIB * procs);
    let mut c = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(myrestart());
            c
        }
        None => Command::new(myrestart()),
    };
    c.args(extra).arg(image);
    let t = Instant::now();
    let mut p = Proc::spawn(c, "myrestart");
    p.wait_until(|l| l.iter().filter(|s| s.starts_with("resumed")).count() >= procs, TIMEOUT, "resumed");
    let d = secs(t.elapsed());
    p.kill9();
    d
}

fn run_case(target: &Path, image: &Path, mib: usize, fill: &str) -> Row {
    let _ = std::fs::remove_file(image);
    let (fill, threads) = match fill.strip_suffix("+64 threads") {
        Some(f) => (f, 64),
        None => (fill, 0),
    };
    let (fill, procs) = match fill.strip_suffix("+4 processes") {
        Some(f) => (f, 4),
        None => (fill, 1),
    };
    let (fill, attached) = match fill.strip_suffix("+attached") {
        Some(f) => (f, true),
        None => (fill, false),
    };
    let (fill, lz4) = match fill.strip_suffix("+lz4") {
        Some(f) => (f, true),
        None => (fill, false),
    };
    let mut c = Command::new(target);
    c.arg(mib.to_string()).arg(fill).arg(threads.to_string()).arg((procs - 1).to_string());
    if lz4 {
        c.env("CKPT_COMPRESS", "lz4");
    }
    if !attached {
        c.env("CKPT_TIMES", "1");
    }
    let mut p = if attached { Proc::spawn(c, "benchheap") } else { Proc::preloaded(c, image, "benchheap") };
    p.wait_lines(1, TIMEOUT);
    p.signal(libc::SIGUSR1);
    p.wait_lines(2, TIMEOUT);
    // Room for the image's page cache, fresh from the host.
    touch(2 * mib * MIB * procs);
    let t = Instant::now();
    let mut sent = 0;
    if attached {
        // ckpt attaches (ptrace), runs libckpt's code in the program, and leaves: the image is
        // written by the writer it forked, as for a preloaded program.
        let st = Command::new(ckpt()).args(["checkpoint", "--image"]).arg(image).arg(p.pid.to_string()).status().unwrap();
        assert!(st.success(), "ckpt checkpoint {} failed", p.pid);
    } else {
        sent = monotonic_ns();
        p.signal(libc::SIGUSR2);
    }
    wait_for_file(image);
    let seen = secs(t.elapsed());
    p.signal(libc::SIGUSR1);
    let lines = p.wait_lines(3, TIMEOUT);
    let pause = lines[2].trim_start_matches("gap ").parse::<f64>().unwrap() / 1e9;
    let phases = if attached { Vec::new() } else { writer_phases(&p, sent, 0) };
    // The rename's time by the writer's clock (CLOCK_MONOTONIC, as `sent`): exact, where the
    // bench's own wake-up comes when the scheduler lets it run (the writer ends and the program
    // spins meanwhile, on the only two cores).
    let checkpoint = renamed_at(&phases).unwrap_or(seen);
    p.kill_tree();
    let meta = std::fs::metadata(image).unwrap();
    let floor = if procs == 1 && !lz4 { map_and_hash(image, mib) } else { 0.0 };
    let mapped = restart_time(image, mib, procs, &[]);
    // A few milliseconds, which the host's moods move most: the median of three.
    let mapped_unverified = median((0..3).map(|_| restart_time(image, mib, procs, &["--no-verify"])).collect());
    let eager = restart_time(image, mib, procs, &["--eager"]);
    let _ = std::fs::remove_file(image);
    Row { checkpoint, seen, pause, apparent: meta.len(), allocated: meta.blocks() * 512, mapped, mapped_unverified, eager, floor, phases }
}

/// The line `CKPT_TIMES=1` has the writer of the program's checkpoint number `nth` (from 0)
/// print once the image is in place (waited for: it comes just after the rename), as (step, ms
/// from the start of the handler).
fn writer_phases(p: &Proc, sent: u64, nth: usize) -> Vec<(String, f64)> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = p.stderr();
        if let Some(line) = text.lines().filter(|l| l.starts_with("ckpt: times ")).nth(nth) {
            let (head, rest) = line.split_once(':').map_or(("", ""), |x| x.1.split_once(':').unwrap_or(("", "")));
            // The handler's start, against the signal's sending: the signal's way in.
            let start: u64 = head.rsplit(' ').next().and_then(|w| w.parse().ok()).unwrap_or(sent);
            let words: Vec<&str> = rest.split_whitespace().collect();
            let mut phases = vec![("signal".to_string(), -(start.saturating_sub(sent) as f64) / 1e6)];
            phases.extend(words.chunks_exact(2).filter_map(|w| Some((w[0].to_string(), w[1].parse().ok()?))));
            return phases;
        }
        assert!(Instant::now() < deadline, "no CKPT_TIMES line from the writer: {text}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// From sending the signal until the writer renamed the image into place, in seconds, by the
/// writer's [`writer_phases`].
fn renamed_at(phases: &[(String, f64)]) -> Option<f64> {
    match (phases.first(), phases.iter().find(|(n, _)| n == "renamed")) {
        (Some((_, signal)), Some((_, renamed))) => Some((renamed - signal.min(0.0)) / 1e3),
        _ => None,
    }
}

/// CLOCK_MONOTONIC now, in ns (the clock of the writer's `CKPT_TIMES` line).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The floor of a verified restart of `image`: map it read-only and hash all its pages that
/// hold data and are not zeros on both cores (each 1 MiB chunk's digest as `ckpt_image` defines it, each half
/// of the file in a process of its own), nothing restored. Seconds.
fn map_and_hash(image: &Path, mib: usize) -> f64 {
    use std::os::fd::AsRawFd;
    touch(2 * mib * MIB);
    let t = Instant::now();
    let f = std::fs::File::open(image).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a read-only private mapping of a file we opened, unmapped below, read only
    // through the slice made of it while it is mapped.
    let at = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0) };
    assert!(at != libc::MAP_FAILED, "mapping {}", image.display());
    // SAFETY: `len` readable bytes at `at`, mapped above until the munmap below.
    let data: &[u8] = unsafe { std::slice::from_raw_parts(at as *const u8, len) };
    let chunk = ckpt_image::CHUNK_PAGES as usize * 4096;
    let half = len.div_ceil(2 * chunk) * chunk;
    // As a restart, only the stretches of the file that hold data are read (holes are zeros),
    // found once for the whole file.
    let fd = f.as_raw_fd();
    let seek = |at: usize, whence: i32| -> usize {
        // SAFETY: lseek on a descriptor we own.
        let r = unsafe { libc::lseek(fd, at as libc::off_t, whence) };
        if r < 0 { len } else { (r as usize).min(len) }
    };
    let mut extents = Vec::new();
    let mut pos = 0;
    while pos < len {
        let from = seek(pos, libc::SEEK_DATA);
        let to = seek(from, libc::SEEK_HOLE);
        if from < to {
            extents.push((from, to));
        }
        pos = to.max(from + 1);
    }
    // The digests of the chunks in `range` of the file, XORed (only to be kept from the optimizer).
    let digest = |range: std::ops::Range<usize>| -> u64 {
        let mut all = 0u64;
        let mut cur: Option<(usize, ckpt_image::Hasher)> = None;
        for &(x, y) in &extents {
            let (x, y) = (x.max(range.start), y.min(range.end));
            if x >= y {
                continue;
            }
            for (i, page) in data[x..y].chunks(4096).enumerate() {
                if ckpt_image::is_zero_page(page) {
                    continue;
                }
                let index = x / 4096 + i;
                if cur.as_ref().is_none_or(|(c, _)| *c != index / (chunk / 4096)) {
                    if let Some((_, h)) = cur.take() {
                        all ^= h.digest();
                    }
                    cur = Some((index / (chunk / 4096), ckpt_image::Hasher::new()));
                }
                if let Some((_, h)) = cur.as_mut() {
                    ckpt_image::chunk_add(h, index as u64, page);
                }
            }
        }
        all ^ cur.map_or(0, |(_, h)| h.digest())
    };
    // The other half in a forked helper, as myrestart does it (two processes, not two threads
    // of one: their page faults do not meet in one address space), its result in shared memory.
    let half = half.min(len);
    // SAFETY: a new shared anonymous page of our own, unmapped below.
    let shared = unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) };
    assert!(shared != libc::MAP_FAILED, "mapping a shared page");
    // SAFETY: fork; the child only hashes the mapped file (the hasher allocates nothing), writes
    // its result into the shared page and leaves with _exit, touching no lock of this process.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let d = digest(half..len);
        // SAFETY: the shared page is mapped, 4096 writable bytes, aligned for a u64.
        unsafe {
            *(shared as *mut u64) = d;
            libc::_exit(0)
        }
    }
    assert!(pid > 0, "fork");
    std::hint::black_box(digest(0..half));
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // SAFETY: the shared page, written by the helper that has ended; unmapped right after.
    std::hint::black_box(unsafe { *(shared as *const u64) });
    // SAFETY: our own mapping, not used past this point.
    unsafe { libc::munmap(shared, 4096) };
    // SAFETY: unmaps exactly the mapping made above; `data` is not used past this point.
    unsafe { libc::munmap(at, len) };
    secs(t.elapsed())
}

/// The machine's own zero test: how long the writer's test for a page of zeros takes over
/// `bytes` of memory the program wrote zeros to, on one core. Seconds.
fn zero_scan(bytes: usize) -> f64 {
    touch(2 * bytes);
    let mut v = vec![1u8; bytes];
    v.fill(0);
    let t = Instant::now();
    let zero = v.chunks(4096).filter(|p| ckpt_image::is_zero_page(p)).count();
    let d = secs(t.elapsed());
    assert_eq!(zero, bytes / 4096);
    d
}

/// A process holding a private mount namespace, for the restarts of [`other_node_case`]: in it,
/// each of `files` is a copy (`cp -p` into `dir`: another inode) bind-mounted over the original,
/// as on another node of a cluster. Returns it and the words that run a command there.
fn node_namespace(files: &[PathBuf], dir: &Path) -> (Proc, Vec<String>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut script = String::from("set -e\n");
    for (i, f) in files.iter().enumerate() {
        let copy = dir.join(i.to_string());
        assert!(Command::new("cp").arg("-p").arg(f).arg(&copy).status().unwrap().success(), "cp -p {}", f.display());
        script.push_str(&format!("mount --bind '{}' '{}'\n", copy.display(), f.display()));
    }
    script.push_str("echo mounted\nexec sleep 600\n");
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let holder = Proc::spawn(c, "a mount namespace");
    holder.wait_lines(1, TIMEOUT);
    let cwd = std::env::current_dir().unwrap();
    let prefix = ["nsenter", "-t", &holder.pid.to_string(), "-m", "--", "env", "-C", cwd.to_str().unwrap()].map(String::from).to_vec();
    (holder, prefix)
}

/// The restart of one image of `mib` MiB of random heap, in a mount namespace where nothing
/// differs and in one where the program and its libraries are byte-identical copies with other
/// inodes (another node), in pairs, alternately first; see [`OtherNode`]. `None` where mount namespaces
/// cannot be made (not root).
fn other_node_case(target: &Path, image: &Path, dir: &Path, mib: usize) -> Option<OtherNode> {
    if !Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) {
        return None;
    }
    let _ = std::fs::remove_file(image);
    let mut c = Command::new(target);
    c.arg(mib.to_string()).arg("random").arg("0").arg("0");
    let mut p = Proc::preloaded(c, image, "benchheap");
    p.wait_lines(1, TIMEOUT);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for name in maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|n| n.starts_with('/')) {
        let f = PathBuf::from(name);
        if f.is_file() && !files.contains(&f) {
            files.push(f);
        }
    }
    touch(2 * mib * MIB);
    p.signal(libc::SIGUSR2);
    wait_for_file(image);
    p.kill_tree();
    let (mut same, same_prefix) = node_namespace(&[], &dir.join("ckpt-bench-node-same"));
    let (mut other, other_prefix) = node_namespace(&files, &dir.join("ckpt-bench-node-other"));
    // More runs than elsewhere, each order as often: the two differ by little, and the first
    // of a pair may pay for what the second then finds ready.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..OTHER_NODE_RUNS {
        if i % 2 == 0 {
            a.push(restart_time_in(&same_prefix, image, mib, 1, &[]));
            b.push(restart_time_in(&other_prefix, image, mib, 1, &[]));
        } else {
            b.push(restart_time_in(&other_prefix, image, mib, 1, &[]));
            a.push(restart_time_in(&same_prefix, image, mib, 1, &[]));
        }
    }
    same.kill9();
    other.kill9();
    let _ = std::fs::remove_dir_all(dir.join("ckpt-bench-node-same"));
    let _ = std::fs::remove_dir_all(dir.join("ckpt-bench-node-other"));
    let _ = std::fs::remove_file(image);
    // Each pair ran back to back: the median of their ratios is what one restart costs against
    // the other, whatever the load did between pairs.
    let ratio = median(a.iter().zip(&b).map(|(x, y)| y / x).collect());
    let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Some(OtherNode { same: median(a.clone()), other: median(b.clone()), same_least: least(&a), other_least: least(&b), ratio })
}

/// Restart times of [`other_node_case`], in seconds: the medians of each kind, the fastest of
/// each, and the median of the ratios of the pairs (another node over here).
struct OtherNode {
    same: f64,
    other: f64,
    same_least: f64,
    other_least: f64,
    ratio: f64,
}

/// Restarts of each kind in [`other_node_case`]: they differ by little, and a restart of
/// some 20 ms moves by more than that with whatever else the machine runs.
const OTHER_NODE_RUNS: usize = 21;

/// Waits until `image` is another file than the one with inode `old`.
fn wait_for_new(image: &Path, old: u64) {
    let deadline = Instant::now() + TIMEOUT;
    while std::fs::metadata(image).map_or(true, |m| m.ino() == old) {
        assert!(Instant::now() < deadline, "no new image at {}", image.display());
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// An incremental checkpoint: the program with `mib` MiB of random heap is checkpointed once
/// (a full image), writes 64 MiB of it anew, and is checkpointed again. Returns that second
/// checkpoint's time, its pause, the image's allocated bytes and its verified restart time.
fn incremental_case(target: &Path, image: &Path, mib: usize) -> (f64, f64, u64, f64) {
    let _ = std::fs::remove_file(image);
    let mut c = Command::new(target);
    c.arg(mib.to_string()).arg("random").env("CKPT_TIMES", "1");
    let mut p = Proc::preloaded(c, image, "benchheap");
    p.wait_lines(1, TIMEOUT);
    p.signal(libc::SIGUSR2);
    wait_for_file(image);
    let old = std::fs::metadata(image).unwrap().ino();
    std::thread::sleep(Duration::from_millis(300)); // the writer ends just after the rename
    p.signal(libc::SIGHUP);
    p.wait_until(|l| l.iter().any(|s| s == "rewritten"), TIMEOUT, "rewritten");
    p.signal(libc::SIGUSR1);
    let n = p.lines().len();
    p.wait_lines(n + 1, TIMEOUT);
    touch(2 * 64 * MIB);
    let t = Instant::now();
    let sent = monotonic_ns();
    p.signal(libc::SIGUSR2);
    wait_for_new(image, old);
    let seen = secs(t.elapsed());
    // Timed as the full checkpoints are: to the writer's rename.
    let checkpoint = renamed_at(&writer_phases(&p, sent, 1)).unwrap_or(seen);
    p.signal(libc::SIGUSR1);
    let lines = p.wait_lines(n + 2, TIMEOUT);
    let pause = lines[n + 1].trim_start_matches("gap ").parse::<f64>().unwrap() / 1e9;
    assert!(!p.stderr().contains("incremental checkpoints are off"), "{}", p.stderr());
    p.kill_tree();
    let allocated = std::fs::metadata(image).unwrap().blocks() * 512;
    let restart = restart_time(image, mib, 1, &[]);
    let dir = image.parent().unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("ckpt-bench.img") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    (checkpoint, pause, allocated, restart)
}

/// A process with 5,000 of something the restorer keeps a table for (`mode`: `fds`, open
/// descriptors each on its own file; `maps`, `MAP_SHARED` file mappings; tests/progs/manyfiles.c,
/// which checks every one of them each round): the checkpoint's time, from SIGUSR2 until the
/// image is in place, and the restart's, from starting myrestart until the program's next round.
fn many_case(prog: &Path, image: &Path, dir: &Path, mode: &str) -> (f64, f64) {
    let _ = std::fs::remove_file(image);
    let files = dir.join(format!("ckpt-bench-{mode}"));
    let _ = std::fs::remove_dir_all(&files);
    std::fs::create_dir_all(&files).unwrap();
    let mut c = Command::new(prog);
    c.args([mode, "5000"]).arg(&files).arg("100000000");
    let mut p = Proc::preloaded(c, image, "manyfiles");
    p.wait_lines(1, TIMEOUT);
    let t = Instant::now();
    p.signal(libc::SIGUSR2);
    wait_for_file(image);
    let checkpoint = secs(t.elapsed());
    p.kill_tree();
    let t = Instant::now();
    let mut c = Command::new(myrestart());
    // The program goes on writing its mapped files after the checkpoint: they are "written
    // after the image", which a restart refuses unless told to take them as they are.
    c.arg("--files-as-is").arg(image);
    let mut r = Proc::spawn(c, "myrestart");
    r.wait_lines(1, TIMEOUT);
    let restart = secs(t.elapsed());
    r.kill9();
    let _ = std::fs::remove_file(image);
    let _ = std::fs::remove_dir_all(&files);
    (checkpoint, restart)
}

/// How often a case of `mib` runs: small ones, whose figures a few milliseconds of the
/// machine's moods move most and which are quick, more often.
fn runs(mib: usize) -> usize {
    if mib <= 512 { 5 } else { RUNS }
}

/// Runs a case [`runs`] times, each run just after measuring the limits its targets are held
/// against (`write()` and the zero test over as many bytes), so that both see the machine as
/// it is then; each figure, ours and the limits', is the median of its runs.
fn run_median(target: &Path, image: &Path, mib: usize, fill: &str, dir: &Path) -> (Row, Limits) {
    let mut rows = Vec::new();
    let (mut writes, mut zeros) = (Vec::new(), Vec::new());
    for _ in 0..runs(mib) {
        let src = vec![7u8; mib * MIB];
        writes.push(write_limit(&src, dir, true));
        drop(src);
        zeros.push(zero_scan(mib * MIB));
        rows.push(run_case(target, image, mib, fill));
    }
    let m = |f: fn(&Row) -> f64| median(rows.iter().map(f).collect());
    let row = Row {
        checkpoint: m(|r| r.checkpoint),
        seen: m(|r| r.seen),
        pause: m(|r| r.pause),
        apparent: rows[0].apparent,
        allocated: m(|r| r.allocated as f64) as u64,
        mapped: m(|r| r.mapped),
        mapped_unverified: m(|r| r.mapped_unverified),
        eager: m(|r| r.eager),
        floor: m(|r| r.floor),
        phases: median_phases(&rows),
    };
    (row, Limits { write: median(writes), zero: median(zeros) })
}

/// Each writer step's median end over `rows` (those that have it).
fn median_phases(rows: &[Row]) -> Vec<(String, f64)> {
    let Some(first) = rows.iter().find(|r| !r.phases.is_empty()) else { return Vec::new() };
    first
        .phases
        .iter()
        .map(|(name, _)| {
            let v: Vec<f64> = rows.iter().filter_map(|r| r.phases.iter().find(|(n, _)| n == name).map(|x| x.1)).collect();
            (name.clone(), median(v))
        })
        .collect()
}

fn main() {
    let o = options();
    let target = compile(&root().join("bench/benchheap.c"), "benchheap", &["-O2", "-pthread"]);
    if let Err(e) = std::fs::create_dir_all(&o.dir) {
        eprintln!("ckpt-bench: cannot make the image directory {}: {e}", o.dir.display());
        std::process::exit(2);
    }
    let image = o.dir.join("ckpt-bench.img");
    println!("ckpt benchmark: images in {} ({} cores)", o.dir.display(), std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!();
    println!("| heap | fill | checkpoint | pause | image (allocated) | restart mapped | mapped, no verify | map and hash (floor) | restart eager | memcpy | write() | read() to new memory | zero scan | ckpt / write | mapped / floor | eager / read |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut results: Vec<(usize, String, Row, Limits)> = Vec::new();
    for &mib in &o.sizes {
        // memcpy and read() once per size; write() and the zero test with each case's runs.
        let runs: Vec<(f64, f64, f64)> = (0..RUNS).map(|_| limits(mib * MIB, &o.dir)).collect();
        let memcpy = median(runs.iter().map(|r| r.0).collect());
        let read = median(runs.iter().map(|r| r.2).collect());
        for fill in o.fills.iter().filter(|f| *f != "migrate") {
            if (fill.ends_with("threads") || fill.ends_with("processes") || fill.ends_with("attached")) && mib != 512 {
                continue; // one size is enough to compare with the single-threaded row
            }
            let (r, lim) = run_median(&target, &image, mib, fill, &o.dir);
            let (write, zero) = (lim.write, lim.zero);
            let gbs = |t: f64| (mib * MIB) as f64 / t / 1e9;
            println!(
                "| {mib} MiB | {fill} | {:.0} ms | {:.1} ms | {:.0} MB ({:.1} MB) | {:.1} ms | {:.1} ms | {} | {:.0} ms | {:.0} ms ({:.1} GB/s) | {:.0} ms ({:.1} GB/s) | {:.0} ms ({:.1} GB/s) | {:.0} ms ({:.1} GB/s) | {:.2} | {} | {:.2} |",
                r.checkpoint * 1e3,
                r.pause * 1e3,
                r.apparent as f64 / 1e6,
                r.allocated as f64 / 1e6,
                r.mapped * 1e3,
                r.mapped_unverified * 1e3,
                if r.floor > 0.0 { format!("{:.1} ms", r.floor * 1e3) } else { "-".into() },
                r.eager * 1e3,
                memcpy * 1e3,
                gbs(memcpy),
                write * 1e3,
                gbs(write),
                read * 1e3,
                gbs(read),
                zero * 1e3,
                gbs(zero),
                r.checkpoint / write,
                if r.floor > 0.0 { format!("{:.2}", r.mapped / r.floor) } else { "-".into() },
                r.eager / read,
            );
            results.push((mib, fill.clone(), r, lim));
        }
    }
    let mut incremental = None;
    if o.sizes.contains(&2048) && o.fills.iter().any(|f| f == "random") {
        let runs: Vec<_> = (0..RUNS).map(|_| incremental_case(&target, &image, 2048)).collect();
        let m = |f: fn(&(f64, f64, u64, f64)) -> f64| median(runs.iter().map(f).collect());
        let r = (m(|r| r.0), m(|r| r.1), m(|r| r.2 as f64) as u64, m(|r| r.3));
        println!();
        println!("| incremental | checkpoint | pause | image (allocated) | restart mapped |");
        println!("|---|---:|---:|---:|---:|");
        println!("| 2048 MiB random, 64 MiB written since the previous image | {:.0} ms | {:.1} ms | {:.1} MB | {:.1} ms |", r.0 * 1e3, r.1 * 1e3, r.2 as f64 / 1e6, r.3 * 1e3);
        incremental = Some(r);
    }
    // The restart on another node: the smallest random size run, or none.
    let mut other_node = None;
    if let Some(&mib) = o.sizes.iter().min().filter(|_| o.fills.iter().any(|f| f == "random")) {
        println!();
        println!("| restart on another node ({mib} MiB random) | restart here | program and libraries copies (other inodes) | ratio |");
        println!("|---|---:|---:|---:|");
        match other_node_case(&target, &image, &o.dir, mib) {
            Some(r) => {
                println!("| mapped, verified: median | {:.1} ms | {:.1} ms | {:.2} |", r.same * 1e3, r.other * 1e3, r.other / r.same);
                println!("| mapped, verified: fastest | {:.1} ms | {:.1} ms | {:.2} |", r.same_least * 1e3, r.other_least * 1e3, r.other_least / r.same_least);
                println!("| mapped, verified: median of the pairs' ratios | | | {:.2} |", r.ratio);
                other_node = Some((mib, r));
            }
            None => println!("| skipped: it needs a mount namespace (root) | | | |"),
        }
    }
    let many = compile(&root().join("tests/progs/manyfiles.c"), "manyfiles", &["-O2"]);
    println!();
    println!("| 5,000 of one kind | checkpoint | restart |");
    println!("|---|---:|---:|");
    for (mode, what) in [("fds", "open descriptors, each on its own file"), ("maps", "MAP_SHARED file mappings")] {
        let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| many_case(&many, &image, &o.dir, mode)).collect();
        let (c, r) = (median(runs.iter().map(|x| x.0).collect()), median(runs.iter().map(|x| x.1).collect()));
        println!("| {what} | {:.0} ms | {:.0} ms |", c * 1e3, r * 1e3);
    }
    print_phases(&results);
    let migration = if o.fills.iter().any(|f| f == "migrate") { migrate_section(&o.dir) } else { None };
    print_targets(&results, incremental, other_node, migration);
    println!();
    println!("checkpoint: from sending SIGUSR2 until the image is renamed into place (fsynced), the rename's time");
    println!("taken from the writer's CKPT_TIMES line (the same clock); the +attached rows (no CKPT_TIMES): until the");
    println!("bench, woken by inotify, saw the image.");
    println!("where the time goes: each step's length, from the end of the one before (signal: from sending SIGUSR2");
    println!("to the start of the handler's work; see CKPT_TIMES in docs/guide.md); after the rename: from there until");
    println!("the bench saw the image. Each is a median over the runs, as is the checkpoint they are taken from.");
    println!("map and hash (floor): the image mapped read-only and its pages hashed on both cores as a verified");
    println!("restart hashes them (ckpt_image's chunk digests), nothing restored. zero scan: the writer's zero-page");
    println!("test over as much memory of written zeros, one core.");
    println!("pause: the longest the program itself was stopped (it measures this).");
    println!("restart: from starting myrestart until the program runs again (mapped: the default, memory");
    println!("checksums verified; --no-verify skips those, the median of 3 restarts in each run; --eager reads all");
    println!("memory now).");
    println!("+lz4: written with CKPT_COMPRESS=lz4 (restart then always reads and decompresses).");
    println!("+64 threads: the same program with 64 more threads, idle in nanosleep (all are stopped for the checkpoint).");
    println!("+4 processes: the program and 3 children it forked, each with its copy of the heap: one tree image");
    println!("(restart: until all 4 run again; compare with the single process of the same size).");
    println!("+attached: the program runs without libckpt; checkpoint: from starting `ckpt checkpoint PID` until the");
    println!("image is in place; pause: the program's own measure, from ckpt's ptrace stop to its detach.");
    println!("another node: both restarts through nsenter into a mount namespace of their own, one in which the");
    println!("program's files and libraries are `cp -p` copies bind-mounted over the originals; alternated, each first");
    println!("as often, {OTHER_NODE_RUNS} runs each.");
    println!("migrate: bench/migrateheap.c, {MIGRATE_MIB} MiB of random heap, writing {MIGRATE_RATE} MiB/s of it anew at random pages and");
    println!("printing a line every millisecond (to a file), moved by `ckpt migrate --detach` to 127.0.0.1 over an sshd");
    println!("the bench starts (ssh -c aes128-gcm@openssh.com); total: the migrate command's run; no progress: from the");
    println!("original's last line to the copy's first; longest without a line: the longest interval between two lines");
    println!("in all (round 0's checkpoint pause included).");
    println!("5,000 of one kind: tests/progs/manyfiles.c; its restart is timed until the program's first round after");
    println!("it, and a round (checking all 5,000) itself takes tens of milliseconds.");
    println!("Figures are medians of {} runs for heaps up to 512 MiB, of {RUNS} for larger ones and the other sections; write()", runs(64));
    println!("and the zero scan are measured anew just before each run of a row, memcpy and read() once per size.");
    println!("Ratios are our time over the machine's limit.");
}

/// The targets the project has set itself (issues 12, 14 and 30), each met or missed by this run
/// against the limits measured in it; a target whose rows were not run (see --sizes and
/// --fills) is left out.
fn print_targets(results: &[(usize, String, Row, Limits)], incremental: Option<(f64, f64, u64, f64)>, other_node: Option<(usize, OtherNode)>, migration: Option<Migration>) {
    let find = |mib: usize, fill: &str| results.iter().find(|(m, f, _, _)| *m == mib && f == fill).map(|(_, _, r, l)| (r, *l));
    let mut lines = Vec::new();
    let mut add = |what: &str, measured: String, goal: &str, met: bool| {
        lines.push(format!("| {what} | {measured} | {goal} | {} |", if met { "met" } else { "MISSED" }));
    };
    if let Some((r, l)) = find(512, "random") {
        let x = r.checkpoint / l.write;
        add("checkpoint of 512 MiB random, against write() of as much", format!("{:.0} ms vs {:.0} ms, {x:.2}x", r.checkpoint * 1e3, l.write * 1e3), "at most 1.25x", x <= 1.25);
    }
    if let Some((r, l)) = find(64, "random") {
        let over = r.checkpoint - l.write;
        add("checkpoint of 64 MiB random, over write() of as much", format!("{:.0} ms vs {:.0} ms, +{:.0} ms", r.checkpoint * 1e3, l.write * 1e3, over * 1e3), "at most +12 ms", over <= 0.012);
    }
    if let Some((r, l)) = find(2048, "zero") {
        add("checkpoint of 2 GiB of written zeros, beside the zero test over as much", format!("{:.0} ms vs {:.0} ms", r.checkpoint * 1e3, l.zero * 1e3), "at most 150 ms", r.checkpoint <= 0.150);
        add("image of 2 GiB of zeros, allocated", format!("{:.1} MB", r.allocated as f64 / 1e6), "under 1 MiB", r.allocated < MIB as u64);
    }
    if let Some((r, _)) = find(2048, "random") {
        let x = r.mapped / r.floor;
        add("verified restart (the default) of 2 GiB random, against mapping and hashing the image on both cores", format!("{:.1} ms vs {:.1} ms, {x:.2}x", r.mapped * 1e3, r.floor * 1e3), "at most 1.15x", x <= 1.15);
        add("restart --no-verify of 2 GiB random", format!("{:.1} ms", r.mapped_unverified * 1e3), "under 10 ms", r.mapped_unverified < 0.010);
    }
    if let (Some((att, _)), Some((pre, _))) = (find(512, "random+attached"), find(512, "random")) {
        // Reading 512 MiB while the program is stopped would take about half a second here.
        add("pause of an attached checkpoint of 512 MiB random, beside a preloaded one", format!("{:.1} ms vs {:.1} ms", att.pause * 1e3, pre.pause * 1e3), "under 100 ms (no memory read while stopped)", att.pause < 0.100);
    }
    if let (Some((tree, _)), Some((one, _))) = (find(512, "random+4 processes"), find(512, "random")) {
        let x = tree.mapped / one.mapped;
        add("restart of a 4-process tree, against one of its processes", format!("{x:.2}x"), "under 2x", x < 2.0);
    }
    if let (Some(inc), Some((small, _)), Some((full, _))) = (incremental, find(64, "random"), find(2048, "random")) {
        let x = inc.0 / small.checkpoint;
        add("incremental checkpoint of 2 GiB with 64 MiB written since, against a full one of 64 MiB", format!("{:.0} ms, {x:.2}x", inc.0 * 1e3), "at most 2x", x <= 2.0);
        add("its pause, against a full checkpoint's of 2 GiB", format!("{:.1} ms vs {:.1} ms", inc.1 * 1e3, full.pause * 1e3), "no longer", inc.1 <= full.pause * 1.1);
    }
    if let Some((mib, r)) = other_node {
        add(
            &format!("restart of {mib} MiB random where the program and libraries are copies (another node), against here"),
            format!("{:.1} ms vs {:.1} ms (medians), {:.2}x (median of the pairs' ratios)", r.other * 1e3, r.same * 1e3, r.ratio),
            "at most 1.1x",
            r.ratio <= 1.1,
        );
    }
    if let Some(m) = migration {
        add(
            &format!("migration of {MIGRATE_MIB} MiB random writing {MIGRATE_RATE} MiB/s, to localhost over ssh: total"),
            format!("{:.2} s", m.total),
            "at most 3 s",
            m.total <= 3.0,
        );
        add("the same: the program without progress (its last line here to its first there)", format!("{:.0} ms", m.stall * 1e3), "at most 150 ms", m.stall <= 0.150);
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("Targets:");
    println!();
    println!("| target | this run | goal | |");
    println!("|---|---:|---|---|");
    for l in lines {
        println!("{l}");
    }
}

/// Where a checkpoint's time goes: the writer's steps (`CKPT_TIMES`), each one's median
/// length, for the plain random and zero rows.
fn print_phases(results: &[(usize, String, Row, Limits)]) {
    let rows: Vec<_> = results.iter().filter(|(_, f, r, _)| (f == "random" || f == "zero") && !r.phases.is_empty()).collect();
    let Some((_, _, first, _)) = rows.first() else { return };
    let names: Vec<&str> = first.phases.iter().map(|(n, _)| n.as_str()).collect();
    println!();
    println!("| where the checkpoint's time goes (ms, CKPT_TIMES) | {} | after the rename | write() |", names.join(" | "));
    println!("|---|{}---:|---:|", "---:|".repeat(names.len()));
    for (mib, fill, r, l) in rows {
        // Times are from the handler's start; the signal was sent before it (a negative time).
        let mut prev = r.phases.first().map_or(0.0, |x| x.1.min(0.0));
        let signal = -prev;
        let mut cells = Vec::new();
        for n in &names {
            match r.phases.iter().find(|(p, _)| p == n) {
                Some((_, _)) if *n == "signal" => {
                    cells.push(format!("{signal:.1}"));
                    prev = 0.0;
                }
                Some((_, t)) => {
                    cells.push(format!("{:.1}", t - prev));
                    prev = *t;
                }
                None => cells.push("-".into()),
            }
        }
        let renamed = r.phases.iter().find(|(p, _)| p == "renamed").map_or(prev, |x| x.1);
        println!("| {mib} MiB {fill} | {} | {:.1} | {:.0} |", cells.join(" | "), r.seen * 1e3 - signal - renamed, l.write * 1e3);
    }
}

/// Heap of the migration case, in MiB, and how fast the program writes it anew (MiB/s).
const MIGRATE_MIB: usize = 1024;
const MIGRATE_RATE: usize = 16;

/// One migration: how long `ckpt migrate` ran, how long the program went without a line from
/// the original's last to the copy's first, and the longest it went without one in all (round
/// 0's checkpoint pause included).
#[derive(Clone, Copy)]
struct Migration {
    total: f64,
    stall: f64,
    longest: f64,
}

/// The lines `tick N NS PARENT` of the migration target's output, as (N, NS, PARENT).
fn ticks(out: &Path) -> Vec<(u64, u64, u32)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("tick ")?.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// The processes running `exe` (the original, or the copy migrate restored), by PID.
fn running(exe: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe) {
            pids.push(pid);
        }
    }
    pids
}

/// Moves a program with `MIGRATE_MIB` MiB of random heap, writing `MIGRATE_RATE` MiB/s of it, to
/// 127.0.0.1 over an sshd of the bench's own, and times it.
fn migrate_case(prog: &Path, work: &Path, sshd: &ckpt_tests::sshd::Sshd) -> Migration {
    let out = work.join("out");
    let image = work.join("myckpt");
    let mut c = Command::new(ckpt());
    c.arg("run").arg("--image").arg(&image).arg("--").arg(prog).arg(MIGRATE_MIB.to_string()).arg(MIGRATE_RATE.to_string());
    c.stdin(std::process::Stdio::null()).stdout(std::fs::File::create(&out).unwrap());
    ckpt_tests::hermetic(&mut c);
    let mut child = c.spawn().unwrap();
    let pid = child.id();
    // Ready, and a few lines of its steady pace.
    let deadline = Instant::now() + TIMEOUT;
    while ticks(&out).len() < 200 {
        assert!(Instant::now() < deadline, "the migration target did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Room for the images on both sides, fresh from the host.
    touch(3 * MIGRATE_MIB * MIB);
    let t = Instant::now();
    let st = Command::new(ckpt())
        .args(["migrate", "--detach", "--quiet", "--ssh", &sshd.ssh(), "--remote-ckpt"])
        .arg(ckpt())
        .arg(pid.to_string())
        .arg("127.0.0.1")
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    let total = secs(t.elapsed());
    assert!(st.success(), "ckpt migrate {pid} failed: {st}");
    let _ = child.wait();
    // The copy's lines, well past the move.
    let moved_at = ticks(&out).len();
    let deadline = Instant::now() + TIMEOUT;
    while ticks(&out).len() < moved_at + 200 {
        assert!(Instant::now() < deadline, "the migrated program does not go on");
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in running(prog) {
        ckpt_tests::send_signal(p, libc::SIGKILL);
    }
    let lines = ticks(&out);
    for w in lines.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "the program's lines are not consecutive across the move");
    }
    let gap = |w: &[(u64, u64, u32)]| w[1].1.saturating_sub(w[0].1) as f64 / 1e9;
    // The copy's first line is the first with another parent (myrestart's init there).
    let switch = lines.windows(2).find(|w| w[1].2 != w[0].2).expect("no line of the migrated copy");
    let stall = gap(switch);
    let longest = lines.windows(2).map(gap).fold(0.0, f64::max);
    Migration { total, stall, longest }
}

/// The migration section: an sshd of the bench's own, `RUNS` migrations, their medians.
fn migrate_section(dir: &Path) -> Option<Migration> {
    println!();
    println!("| migrate {MIGRATE_MIB} MiB random, writing {MIGRATE_RATE} MiB/s, to localhost over ssh | total | no progress (last line here to first there) | longest without a line |");
    println!("|---|---:|---:|---:|");
    if !ckpt_tests::sshd::Sshd::available() {
        println!("| skipped: no sshd here (openssh-server) | | | |");
        return None;
    }
    let prog = compile(&root().join("bench/migrateheap.c"), "migrateheap", &["-O2"]);
    let work = dir.join(format!("ckpt-bench-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let sshd = ckpt_tests::sshd::Sshd::start(&work);
    let runs: Vec<Migration> = (0..RUNS).map(|_| migrate_case(&prog, &work, &sshd)).collect();
    drop(sshd);
    let _ = std::fs::remove_dir_all(&work);
    for (i, m) in runs.iter().enumerate() {
        println!("| run {} | {:.2} s | {:.0} ms | {:.0} ms |", i + 1, m.total, m.stall * 1e3, m.longest * 1e3);
    }
    let m = Migration {
        total: median(runs.iter().map(|m| m.total).collect()),
        stall: median(runs.iter().map(|m| m.stall).collect()),
        longest: median(runs.iter().map(|m| m.longest).collect()),
    };
    println!("| median | {:.2} s | {:.0} ms | {:.0} ms |", m.total, m.stall * 1e3, m.longest * 1e3);
    Some(m)
}
