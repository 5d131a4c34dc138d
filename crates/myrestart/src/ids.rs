//! The restored process keeps its PID (and its thread keeps its TID): what a program remembers
//! about itself, and glibc's cached TIDs in mutexes, stay true.
//!
//! The kernel hands out chosen PIDs (`clone3` with `set_tid`) to a caller with
//! `CAP_CHECKPOINT_RESTORE` over the PID namespace; an unprivileged user gets that in a user
//! namespace of its own. So, after the plan and before the point of no return:
//!
//! ```text
//!   myrestart (this process; stays in the caller's namespaces, and stays the parent)
//!     │  writes the identity uid/gid maps of the new user namespace (if there is one)
//!     └─ clone(NEWUSER | NEWPID) ── init: PID 1 of the new PID namespace
//!        (NEWPID alone with CAP_SYS_ADMIN: the program keeps its privileges outside)
//!                  │  unshare(NS), / made a slave mount, a fresh /proc for the namespace
//!                  └─ clone3(set_tid = [PID]) ── the restored process, with its old PID
//! ```
//!
//! The outer myrestart passes on the signals it gets (SIGTERM, SIGINT, SIGHUP, SIGUSR1,
//! SIGUSR2, SIGCONT, …) to init, which passes them to the program; init reaps everything in the
//! namespace; each exits with the program's exit status (128 + signal if a signal ended it).
//! If the outer myrestart dies, init dies with it (and with init, the namespace).
//!
//! Where the namespaces cannot be had (a kernel or policy that refuses user namespaces, a
//! `set_tid` refused), or with `--new-ids`, myrestart becomes the process itself, as before:
//! it gets myrestart's PID, restart patches the one TID cache it knows (glibc's), and one line
//! on stderr says what may break.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::args::Options;
use crate::fds::Parked;
use crate::plan::Plan;
use crate::refusal::{refuse, Refusal};
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::{say, sys};
use core::ffi::CStr;
use linux_raw_sys::general as k;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

/// The signals passed on to the program: those a user, a shell or a batch system sends to stop,
/// nudge or checkpoint a job (the real-time ones included), and the terminal stop (the outer
/// myrestart stops with the job). Not the signals the kernel sends about a process's own
/// doings (SIGPIPE, SIGXCPU, SIGURG…), which concern myrestart, not the program.
const FORWARDED: &[u32] = &[
    k::SIGHUP, k::SIGINT, k::SIGQUIT, k::SIGUSR1, k::SIGUSR2, k::SIGALRM, k::SIGTERM, k::SIGCONT, k::SIGWINCH, k::SIGPWR, k::SIGTSTP,
];

fn bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

fn forwarded_mask() -> u64 {
    // Real-time signals 34..=64 (glibc keeps 32 and 33 for itself).
    let rt = (34..=64).fold(0u64, |m, s| m | bit(s));
    FORWARDED.iter().fold(rt, |m, &s| m | bit(s))
}

/// Sets up the new PID namespace and returns in the process that is to become the program: the
/// one created there with the program's PID, or (fallback) this one. `Err` means refused
/// (exit status 2), with the line that says why. The supervising processes never return.
pub fn arrange(p: &mut Plan, opts: &Options) -> Result<(), Refusal> {
    let pid = p.state.pid;
    p.ipc_wanted = crate::ipc::check(opts.image, p)?;
    if !opts.new_ids {
        match enter_namespaces(opts.image, p, pid) {
            Ok(()) => {
                // In the new namespace: the other threads get their TIDs back too.
                p.own_ids = true;
                return Ok(());
            }
            // Init refused the image (it said why, in one line) and is gone, with its
            // namespaces and whatever it made in them: nothing changed.
            Err(Fallback::Refused) => sys::exit_group(crate::EXIT_REFUSED),
            Err(Fallback::Because(why, e)) if p.ntree > 0 => {
                return Err(refuse(opts.image, format_args!(
                    "{why}{}{}: a process tree cannot be restored without its PIDs",
                    if e.is_some() { ": " } else { "" },
                    e.map_or("", describe)
                )));
            }
            Err(Fallback::Because(why, e)) => {
                say!(
                    "myrestart: {why}{}{}: restoring with new IDs (PID {} instead of {pid}); the program's own records of its PID and TIDs may be wrong (use --new-ids to choose this quietly)",
                    if e.is_some() { ": " } else { "" },
                    e.map_or("", describe),
                    own_pid()
                );
            }
        }
    }
    if p.ipc_wanted {
        say!("myrestart: the program's System V IPC objects are not made again without the PID namespace: their IDs may name nothing, or another program's objects");
    }
    p.say_when_checked = true;
    Ok(())
}

/// In the process that becomes the program, once every check of its own has passed (before
/// anything outside changes): the program may now be announced. Alone in its namespaces, it
/// tells the outer myrestart, which says it; without them, it says it itself. (A tree's root is
/// announced by init once every process of the tree has passed, at the first barrier.)
pub fn passed_checks(p: &mut Plan) {
    if let Some(fd) = p.checked.take() {
        let _ = rustix::io::write(fd.as_fd(), b"c");
        // SAFETY: the parked descriptor this plan owned, taken out of it above; used no more.
        unsafe { rustix::io::close(fd.raw()) };
    }
    if core::mem::take(&mut p.say_when_checked) {
        say_stopped(p, own_pid(), false);
    }
}

fn own_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// With `--stopped`: which process to attach to, as the caller's PID namespace sees it; with
/// `--announce`, which process the program is.
fn say_stopped(p: &Plan, pid: u32, own_namespace: bool) {
    if p.announce && own_namespace {
        say!("myrestart: the restored program is process {pid} (PID {} in its own namespace)", p.state.pid);
    } else if p.announce {
        say!("myrestart: the restored program is process {pid} (it had PID {})", p.state.pid);
    }
    if p.stopped {
        say!("myrestart: process {pid} will stop (SIGSTOP) at its checkpoint; attach with `gdb -p {pid}`, let it run with `kill -CONT {pid}`");
    }
}

/// Why the program cannot have its own IDs back; nothing of this process has changed, so it
/// restores itself instead, with new IDs; or (`Refused`) the namespaces were had but what the
/// image needs in them could not be made (init said what), and the restart is refused.
enum Fallback {
    Because(&'static str, Option<Errno>),
    Refused,
}

/// What init writes on `ready` in place of an errno when it refused the image (and said why).
const INIT_REFUSED: u32 = u32::MAX;

fn enter_namespaces(image: &CStr, p: &mut Plan, pid: u32) -> Result<(), Fallback> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Fallback::Because("cannot create a pipe", Some(e)));
    // go: this process tells init that its ID maps are written; ready: init tells this process
    // that the program's process exists (0), or the errno of what failed.
    let (go_rd, go_wr) = pipe()?;
    let (ready_rd, ready_wr) = pipe()?;
    // said: this process closes it once it has said which process the program is (see
    // `Plan::said`); nobody else keeps its write end.
    let (said_rd, said_wr) = pipe()?;
    // ended: init tells this process the program's wait status (see `Relay`).
    let (ended_rd, ended_wr) = pipe()?;
    // With CAP_SYS_ADMIN (root, as a rule) a PID namespace alone will do, and the program keeps
    // its privileges over everything outside (a user namespace would confine them to itself).
    let privileged = rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SYS_ADMIN));
    // The program's System V objects come back under their IDs in an IPC namespace of its own.
    let ipc = if p.ipc_wanted { k::CLONE_NEWIPC } else { 0 };
    let pid_only = (k::CLONE_NEWPID | ipc) as usize;
    let with_user = (k::CLONE_NEWUSER | k::CLONE_NEWPID | ipc) as usize;
    let (init, own_user_ns) = match privileged.then(|| sys::clone_raw(pid_only)) {
        Some(Ok(init)) => (init, false),
        _ => (sys::clone_raw(with_user).map_err(|e| Fallback::Because("cannot create user and PID namespaces", Some(e)))?, true),
    };
    if init == 0 {
        drop((go_wr, ready_rd, said_wr, ended_rd));
        let mut go = [0u8; 1];
        if read_full(go_rd.as_fd(), &mut go) != 1 {
            sys::exit_group(crate::EXIT_REFUSED);
        }
        drop(go_rd);
        p.said = crate::fds::park(said_rd, p.fd_base).ok();
        let to_outer = crate::fds::park(ended_wr, p.fd_base).ok();
        return run_init(image, p, pid, ready_wr, to_outer);
    }
    drop((go_rd, ready_wr, said_rd, ended_wr));
    let from_init = crate::fds::park(ended_rd, p.fd_base).ok();
    // The maps are written from here, outside the new namespace: only a process with
    // CAP_SETUID over the parent namespace may map more than its own ID.
    if let Err(e) = if own_user_ns { write_id_maps(init, uid, gid) } else { Ok(()) } {
        let _ = sys::kill(init, k::SIGKILL);
        let _ = sys::wait_child(init as i32, false);
        return Err(Fallback::Because("cannot map user and group IDs in a new user namespace", Some(e)));
    }
    let _ = rustix::io::write(&go_wr, b"g");
    drop(go_wr);
    let mut word = [0u8; 4];
    let got = read_full(ready_rd.as_fd(), &mut word);
    if got == 4 && u32::from_ne_bytes(word) == INIT_REFUSED {
        let _ = sys::wait_child(init as i32, false);
        return Err(Fallback::Refused);
    }
    if got != 4 || u32::from_ne_bytes(word) != 0 {
        // Init failed before creating the program: it said why, and is gone or going.
        let _ = sys::wait_child(init as i32, false);
        let errno = (got == 4).then(|| Errno::from_raw_os_error(u32::from_ne_bytes(word) as i32));
        return Err(Fallback::Because("cannot give the program its PID in a new namespace", errno));
    }
    // The program's process (a tree: every process) checks its part now, and may refuse the
    // restart; it (for a tree, init) says when all have passed every check, or ends, and nothing
    // was restored, which the program's process is then not said to be.
    let mut word = [0u8; 1];
    let checked = read_full(ready_rd.as_fd(), &mut word) == 1 && word[0] == b'c';
    drop(ready_rd);
    let program = if pid == 1 { Some(init) } else { find_child(init) };
    if checked {
        say_stopped(p, program.unwrap_or(init), true);
    }
    drop(said_wr);
    drop_parked(p, &[from_init, p.status]);
    supervise(init, forwarded_mask(), true, Relay { from_init, status: p.status, ..Relay::NONE })
}

/// Identity maps for `init`'s user namespace: the program sees the user and group IDs it had.
/// Root maps every ID; another user can map only its own (and must give up `setgroups`).
fn write_id_maps(init: u32, uid: u32, gid: u32) -> Result<(), Errno> {
    let mut line = [0u8; 64];
    let file = |name: &[u8], data: &[u8]| -> Result<(), Errno> {
        let mut path = [0u8; 64];
        let mut w = ckpt_image::bytes::Writer::new(&mut path[..]);
        w.bytes(b"/proc/");
        w.decimal(init as u64);
        w.u8(b'/');
        w.bytes(name);
        w.u8(0);
        let n = w.finish().ok_or(Errno::NAMETOOLONG)?;
        write_file(CStr::from_bytes_with_nul(&path[..n]).map_err(|_| Errno::INVAL)?, data)
    };
    if uid == 0 {
        file(b"uid_map", b"0 0 4294967295\n")?;
        file(b"gid_map", b"0 0 4294967295\n")
    } else {
        file(b"uid_map", id_line(uid, &mut line))?;
        file(b"setgroups", b"deny")?;
        file(b"gid_map", id_line(gid, &mut line))
    }
}

fn id_line(id: u32, buf: &mut [u8; 64]) -> &[u8] {
    let mut w = ckpt_image::bytes::Writer::new(&mut buf[..]);
    w.decimal(id as u64);
    w.u8(b' ');
    w.decimal(id as u64);
    w.bytes(b" 1\n");
    let n = w.finish().unwrap_or(0);
    &buf[..n]
}

fn write_file(path: &CStr, data: &[u8]) -> Result<(), Errno> {
    let fd = rustix::fs::open(path, rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?;
    if rustix::io::write(&fd, data)? != data.len() {
        return Err(Errno::IO);
    }
    Ok(())
}

fn read_full(fd: BorrowedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::retry_on_intr(|| rustix::io::read(fd, &mut buf[got..])) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => break,
        }
    }
    got
}

/// The PID (in our namespace) of `parent`'s child, once it has one.
fn find_child(parent: u32) -> Option<u32> {
    let mut path = [0u8; 96];
    let path = ckpt_sigsafe::proctext::proc_path2(&mut path, parent as u64, b"/task/", parent as u64, b"/children")?;
    let mut buf = [0u8; 64];
    let fd = rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()).ok()?;
    let got = read_full(fd.as_fd(), &mut buf);
    let first = ckpt_sigsafe::proctext::pid_list(&buf[..got]).next();
    first
}

/// Init of the new namespace: a /proc of its own, then the program's process with its PID.
/// Returns in the program's process (or, if the program was PID 1 itself, in init).
fn run_init(image: &CStr, p: &mut Plan, pid: u32, ready: OwnedFd, to_outer: Option<Parked>) -> Result<(), Fallback> {
    let fail = |e: Errno| -> ! {
        let _ = rustix::io::write(&ready, &(e.raw_os_error() as u32).to_ne_bytes());
        sys::exit_group(crate::EXIT_REFUSED)
    };
    // Die with the outer myrestart, whoever kills it. (It is waiting for this process's word,
    // so it is alive now; its PID is not visible from in here.)
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)) {
        fail(e);
    }
    if let Err(e) = mount_own_proc() {
        say!("myrestart: cannot mount /proc for the new PID namespace: {}", describe(e));
        fail(e);
    }
    if p.ipc_wanted {
        // An object that cannot be made would be the program's state lost: the image is
        // refused (the objects made so far go with init's IPC namespace), not restored with
        // new IDs and without them.
        if let Err(r) = crate::ipc::make_all(image, p) {
            let _ = rustix::io::write(&ready, &INIT_REFUSED.to_ne_bytes());
            r.exit();
        }
        p.own_ipc = true;
    }
    if pid == 1 {
        if p.ntree > 0 {
            say!("myrestart: the root of a process tree cannot be PID 1 of its namespace");
            fail(Errno::INVAL);
        }
        let _ = rustix::io::write(&ready, &0u32.to_ne_bytes());
        p.checked = Some(crate::fds::park(ready, p.fd_base).unwrap_or_else(|_| sys::exit_group(crate::EXIT_REFUSED)));
        return Ok(());
    }
    // A tree's barriers: each process says "ready" on one pipe and waits on the other.
    let mut held: [Option<(OwnedFd, OwnedFd)>; crate::tree::BARRIERS] = core::array::from_fn(|_| None);
    if p.ntree > 0 {
        for (stage, slot) in held.iter_mut().enumerate() {
            let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
            let ((ready_rd, ready_wr), (go_rd, go_wr)) = match (pipe(), pipe()) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => fail(e),
            };
            let park = |fd: OwnedFd| crate::fds::park(fd, p.fd_base).unwrap_or_else(|e| fail(e));
            p.barrier[stage] = Some([park(ready_wr), park(go_rd)]);
            *slot = Some((ready_rd, go_wr));
        }
    }
    if p.ntree == 0 {
        // Alone, the program's process says "c" on `ready` itself once it has passed its checks:
        // the word that it is being made goes first, so that the two cannot cross.
        let _ = rustix::io::write(&ready, &0u32.to_ne_bytes());
    }
    let program = match sys::fork_with_pid(pid) {
        Ok(0) => {
            if p.ntree == 0 {
                // Its own copy of `ready`: it says there when it has passed its checks.
                p.checked = Some(crate::fds::park(ready, p.fd_base).unwrap_or_else(|_| sys::exit_group(crate::EXIT_REFUSED)));
            }
            return Ok(());
        }
        Ok(child) => child,
        Err(e) => {
            say!("myrestart: cannot create a process with PID {pid} in the new namespace: {}", describe(e));
            fail(e)
        }
    };
    if p.ntree > 0 {
        let _ = rustix::io::write(&ready, &0u32.to_ne_bytes());
    }
    // A tree's: kept until every process has passed every check (below).
    let mut checked = (p.ntree > 0).then_some(ready);
    if p.ntree > 0 {
        // SAFETY: init's copies of the processes' ends, which it uses no more.
        unsafe {
            for [ready, go] in p.barrier.into_iter().flatten() {
                rustix::io::close(ready.raw());
                rustix::io::close(go.raw());
            }
        }
        // Every process checked and planned, then each with its changes outside made: all
        // cross their points of no return. One that could not means nothing was restored (2);
        // one lost after it, the tree is lost (3). Init's end ends the namespace, and with it
        // every process of the tree.
        for stage in 0..crate::tree::BARRIERS {
            let before_no_return = stage < crate::tree::RESTORED;
            let code = if before_no_return { crate::EXIT_REFUSED } else { crate::EXIT_LOST };
            let Some((ready, go)) = held[stage].take() else { continue };
            if !crate::tree::hold_barrier(ready.as_fd(), go.as_fd(), crate::tree::live_count(p), before_no_return) {
                if before_no_return {
                    // Before the points of no return: the barriers' ends closed, each process
                    // takes back its changes outside and ends (`tree::barrier`); init ends only
                    // then, since its end would kill them first.
                    drop((ready, go));
                    held.iter_mut().for_each(|h| *h = None);
                    while matches!(rustix::io::retry_on_intr(|| sys::wait_child(-1, false)), Ok(Some(_))) {}
                }
                sys::exit_group(code)
            }
            if stage + 1 == crate::tree::RESTORED {
                // Every process is past its checks: the outer myrestart may say which process
                // the program is (they wait for that before the point of no return).
                if let Some(fd) = checked.take() {
                    let _ = rustix::io::write(&fd, b"c");
                }
            }
        }
    }
    drop(checked);
    drop_parked(p, &[to_outer]);
    supervise(program, forwarded_mask(), false, Relay { to_outer, ..Relay::NONE })
}

/// A supervising process lets go of everything the plan parked (the program's files, pipes,
/// sockets, the image) but the descriptors in `keep` (at most two: its own pipes of `Relay`), so
/// that, say, a pipe's reader sees it closed when the program's own writers close it. Call only
/// with no `OwnedFd` of ours at or above `fd_base` alive.
fn drop_parked(p: &Plan, keep: &[Option<Parked>]) {
    let mut from = p.fd_base as u32;
    let mut kept = [u32::MAX; 2];
    for (slot, fd) in kept.iter_mut().zip(keep.iter().flatten().map(|fd| fd.raw()).filter(|&fd| fd >= p.fd_base)) {
        *slot = fd as u32;
    }
    kept.sort_unstable();
    for k in kept {
        if k == u32::MAX {
            break;
        }
        if k > from {
            // SAFETY: as below, for the parked descriptors below one that is kept.
            unsafe { sys::close_range(from, k - 1) };
        }
        from = k + 1;
    }
    // SAFETY: every descriptor at or above fd_base is a parked one, which this process (a
    // supervisor, never the program) uses no more (but those in `keep`, skipped above); none
    // is owned by an `OwnedFd` here.
    let _ = unsafe { sys::close_from(from) };
}

/// In init, once the program is gone: SIGKILL to every other process of the namespace but the
/// checkpoint writers (named `ckpt-writer`), which may be finishing an image.
fn end_all_but_writers() {
    let Ok(dir) = rustix::fs::open(c"/proc", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else { return };
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    while let Some(Ok(e)) = entries.next() {
        let Some(pid) = ckpt_sigsafe::proctext::parse_dec(e.file_name().to_bytes()) else { continue };
        if pid <= 1 {
            continue;
        }
        let mut path = [0u8; 64];
        let Some(comm) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid, b"/comm") else { continue };
        let mut name = [0u8; 32];
        let n = ckpt_sigsafe::file::read_whole(comm, &mut name).unwrap_or(0);
        if name[..n].trim_ascii() != b"ckpt-writer" {
            let _ = sys::kill(pid as u32, k::SIGKILL);
        }
    }
}

/// A mount namespace whose `/proc` shows the new PID namespace, so that `/proc/self` and
/// `getpid()` agree. Mounts made outside later still propagate in (a slave, not private).
fn mount_own_proc() -> Result<(), Errno> {
    use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
    // SAFETY: single-threaded; only this process's (and its children's) mount view changes.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    mount_change(c"/", MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC)?;
    mount(c"proc", c"/proc", c"proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None)
}

/// What a supervisor passes on about the program's end: init tells the outer myrestart the
/// program's wait status (its own exit status can only say 128 + N for a signal), and the outer
/// myrestart tells `--status-fd`.
#[derive(Clone, Copy)]
struct Relay {
    /// In init: the pipe to the outer myrestart.
    to_outer: Option<Parked>,
    /// In the outer myrestart: the pipe from init.
    from_init: Option<Parked>,
    /// In the outer myrestart: `--status-fd`.
    status: Option<Parked>,
}

impl Relay {
    const NONE: Relay = Relay { to_outer: None, from_init: None, status: None };
}

/// Writes all of `data` to descriptor `fd`, if there is one (a reader that is gone is no
/// matter).
fn tell(fd: Option<Parked>, data: &[u8]) {
    if let Some(fd) = fd {
        let _ = rustix::io::write(fd.as_fd(), data);
    }
}

/// The restoring root, at its point of no return: tells `--status-fd` that the restart is
/// under way ("R"), so that `ckpt job` knows it from a refusal.
pub fn tell_restoring(p: &Plan) {
    if p.member == 0 {
        tell(p.status, b"R");
    }
}

/// Ends the supervisor once the program has ended with wait status `raw`, passing the status
/// on (see [`Relay`]). The outer myrestart (`job`) ends as the program did: with its exit
/// status, or killed by the same signal (without a core file of its own), so that a shell, or a
/// batch system, sees what it would have seen of the program; init exits with the status as a
/// shell reports it.
fn finish(raw: i32, relay: Relay, job: bool) -> ! {
    tell(relay.to_outer, &raw.to_ne_bytes());
    let mut raw = raw;
    if let Some(from_init) = relay.from_init {
        let mut word = [0u8; 4];
        // The pipe's read end, ours; init, its only writer, has ended.
        if read_full(from_init.as_fd(), &mut word) == 4 {
            raw = i32::from_ne_bytes(word);
        }
    }
    tell(relay.status, &raw.to_ne_bytes());
    let sig = (raw & 0x7f) as u32;
    if job && sig != 0 && sig != 0x7f {
        let _ = sys::prlimit(k::RLIMIT_CORE, Some([0, 0]));
        // SAFETY: the default disposition (every field 0) for a signal this process does not
        // handle; it is about to end by it.
        let _ = unsafe { sys::rt_sigaction(sig, Some(&[0u64; 4]), None) };
        let _ = sys::rt_sigprocmask(k::SIG_UNBLOCK as usize, bit(sig));
        let _ = sys::kill(own_pid(), sig);
    }
    sys::exit_group(sys::shell_status(raw))
}

/// Waits for `child`, passing on the signals of `mask` to it, reaping every other child
/// (orphans of the namespace come to init), and ends as `child` did (see [`finish`]). Once
/// `child` is gone, the others (a checkpoint writer finishing its image, say) get a bounded time
/// to end. The outer myrestart (`job`) is the job a shell waits for: when the terminal stops
/// the job (Ctrl-Z, which stops the program too), it stops itself, so that the shell gets its
/// prompt back; `fg` continues them all.
fn supervise(child: u32, mask: u64, job: bool, relay: Relay) -> ! {
    let sfd = match sys::signalfd(mask | bit(k::SIGCHLD)) {
        Ok(fd) => fd,
        Err(e) => {
            say!("myrestart: cannot watch signals: {}", describe(e));
            // Still wait for the child, without passing signals on.
            let status = sys::wait_child(child as i32, false).ok().flatten().map_or(1 << 8, |(_, s)| s);
            finish(status, relay, job)
        }
    };
    // SAFETY: the signalfd just made, ours alone; open for the rest of this process's life
    // (it ends by `exit_group`, without dropping it).
    let sfd: OwnedFd = unsafe { rustix::fd::FromRawFd::from_raw_fd(sfd) };
    let sfd = sfd.as_fd();
    // The child's wait status, once it has ended.
    let mut exit: Option<i32> = None;
    let mut deadline_ms: i64 = 10_000;
    loop {
        // Reap whatever has ended.
        loop {
            match rustix::io::retry_on_intr(|| sys::wait_child(-1, true)) {
                Ok(Some((pid, status))) if pid == child => exit = Some(status),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(Errno::CHILD) => {
                    if let Some(status) = exit {
                        finish(status, relay, job)
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        if exit.is_some() {
            // Others are still running. In init, the program's other processes (a tree's
            // orphans) end with it at once; a checkpoint writer gets a while to finish its
            // image; then init goes, taking what is left along.
            if !job && deadline_ms == 10_000 {
                end_all_but_writers();
            }
            let mut fds = [rustix::event::PollFd::new(&sfd, rustix::event::PollFlags::IN)];
            let ts = rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            deadline_ms -= 100;
            if deadline_ms <= 0 {
                finish(exit.unwrap_or(1 << 8), relay, job)
            }
            if !fds[0].revents().contains(rustix::event::PollFlags::IN) {
                continue;
            }
        }
        let mut info = [0u8; 128];
        match rustix::io::read(sfd, &mut info) {
            Ok(128) => {
                // struct signalfd_siginfo (<linux/signalfd.h>, which linux-raw-sys does not
                // carry): ssi_signo at 0, ssi_code at 8, ssi_ptr (a queued signal's value) at 48.
                let sig = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                let code = i32::from_ne_bytes([info[8], info[9], info[10], info[11]]);
                // Signals the kernel made (a terminal's ^C, say: si_code SI_KERNEL) went to the
                // whole process group, the program included; only those a process sent (kill,
                // sigqueue: si_code <= 0) are passed on, so none arrives twice.
                if sig != k::SIGCHLD && code <= 0 && exit.is_none() {
                    // A queued signal keeps its value (`ckpt job`'s request for a last
                    // checkpoint is one), not its sender, whose PID means nothing inside.
                    let value = u64::from_ne_bytes(info[48..56].try_into().unwrap_or([0; 8]));
                    let _ = if code == -1 { sys::sigqueue_as(child, sig, value, 0) } else { sys::kill(child, sig) };
                }
                if job && sig == k::SIGTSTP && exit.is_none() {
                    let _ = sys::kill(own_pid(), k::SIGSTOP);
                }
            }
            Ok(_) | Err(Errno::INTR) | Err(Errno::AGAIN) => {}
            Err(_) => finish(exit.unwrap_or(1 << 8), relay, job),
        }
    }
}
