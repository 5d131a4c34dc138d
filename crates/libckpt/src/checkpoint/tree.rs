//! Tree checkpoints: the signalled process (the root) and every process below it, stopped at
//! one moment and written into one image.
//!
//! Every process of the tree runs libckpt (`LD_PRELOAD` passes to children), so each captures
//! itself; the root coordinates through a small control block in a memfd, which each member
//! maps by opening `/proc/ROOT/fd/N` (the request names N):
//!
//! ```text
//!   root                                       each member (a descendant)
//!   stops its threads
//!   lists its descendants (/proc/P/task/T/children), checks each handles the signal,
//!   sends each the signal with sigqueue ───────▶ joins the control block, stops its threads,
//!   (again, until no new process appears)        says PARKED, waits
//!   makes an unnamed part file per member
//!   drains the TCP connections between two
//!   processes that need it (`treedrain`)
//!   phase CAPTURE ─────────────────────────────▶ captures itself, forks its writer into the
//!   captures itself                               part file, says CAPTURED, waits
//!   waits for every CAPTURED; fills the
//!   drained connections again; forks its writer
//!   phase RESUME ──────────────────────────────▶ goes on
//!   root's writer: its own image, then each       member's writer: its image, says WRITTEN
//!   member's part appended and rebased, and the
//!   table of the tree (NT_CKPT_TREE); renames
//! ```
//! In a tree `ckpt` attached to from outside (`ckpt checkpoint PID` of a tree started without
//! libckpt; see `super::attached`), no process has libckpt's handler, so nobody is signalled:
//! `ckpt` runs libckpt's entry in every process, the root's first ([`Summon::Attached`]). The
//! root publishes its control block and each process it found in the block `ckpt` wrote
//! (`ckpt_sigsafe::attach::AttachArgs`), and `ckpt`, watching that block, starts each one's
//! entry with what a signal's request would have said (`Request::from_root`); from there on
//! each member does what a signalled one does.
//!
//! Nothing is captured before every process is stopped, so a pipe's bytes and the memory two
//! processes share are seen at one moment. Zombies are recorded with their status. A
//! descendant that does not handle the checkpoint signal (it did not load the library) is never
//! sent it: the checkpoint fails naming it. Any failure sets phase ABORT; everyone goes on and
//! the previous image stays. How a written part is copied into the root's image is `assembly`'s.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler and in the writers: raw system calls, atomics and
//! futexes on the shared block, fixed buffers; no allocation, no locks, no libc.

use ckpt_sigsafe::file::read_start;
use super::failure::Failure;
use super::treedrain::{DrainTable, TreeDrains};
use ckpt_image::tree::{TreeRecord, MAX_TREE, TREE_LIVE, TREE_ZOMBIE};
use ckpt_sigsafe::proctext::{numbered_path, pid_list, proc_path2, stat_comm, stat_field, stat_state, status_field};
use ckpt_sigsafe::{say, sys};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::SeqCst};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;
use rustix::time::Timespec;

/// The top half of a request's `si_value` ("CKTR"); the bottom half is the control block's
/// descriptor number in the root.
const TAG: u64 = 0x434b_5452;

const PHASE_STOPPING: u32 = 0;
const PHASE_CAPTURE: u32 = 1;
const PHASE_RESUME: u32 = 2;
const PHASE_ABORT: u32 = 3;

const SIGNALLED: u32 = 0;
const PARKED: u32 = 1;
const CAPTURED: u32 = 2;
const WRITTEN: u32 = 3;
const FAILED: u32 = 4;
const ZOMBIE: u32 = 5;
const GONE: u32 = 6;

const PAGES_PENDING: u32 = 0;
const PAGES_READY: u32 = 1;
const PAGES_NONE: u32 = 2;
/// How long a member's writer waits for the root's table of pages before it stores every page
/// itself.
const PAGES_TIMEOUT_NS: u64 = 30_000_000_000;

/// How long the root waits for the members to stop, or to capture themselves.
const STOP_TIMEOUT_NS: u64 = 10_000_000_000;
/// How long a member waits for the root's word before it goes on by itself.
const HOLD_TIMEOUT_NS: u64 = 600_000_000_000;

/// How the root asks each process it finds below it to take part.
#[derive(Clone, Copy)]
pub enum Summon<'a> {
    /// Every process runs libckpt: a `sigqueue` of this checkpoint signal, tagged with the
    /// request, which libckpt's handler there takes.
    Signal(i32),
    /// `ckpt` attached to the tree from outside: each process is published in this block, and
    /// `ckpt` starts libckpt's entry there as a member.
    Attached(&'a ckpt_sigsafe::attach::AttachArgs),
}

/// A process of the tree, as the control block holds it. Every field is an atomic: the block
/// is shared memory that several processes read and write, only ever through `&Control`.
#[repr(C)]
struct Member {
    pid: AtomicU32,
    ppid: AtomicU32,
    pgid: AtomicU32,
    sid: AtomicU32,
    state: AtomicU32,
    wait_status: AtomicU32,
    /// The member's part file, as a descriptor of the root.
    part_fd: AtomicI32,
    writer: AtomicU32,
}

const NOTE_ROOM: usize = ckpt_image::tree::note_len(MAX_TREE + 1);

#[repr(C)]
struct Control {
    root: AtomicU32,
    phase: AtomicU32,
    /// Bumped at every member's change of state: the root's futex.
    events: AtomicU32,
    /// Members recorded so far (written by the root only, before it signals them).
    count: AtomicU32,
    members: [Member; MAX_TREE],
    /// The root's table of pages (see `share`): PAGES_PENDING until its writer says, then
    /// PAGES_READY (a descriptor of the root's writer) or PAGES_NONE.
    pages_state: AtomicU32,
    pages_pid: AtomicU32,
    pages_fd: AtomicI32,
    /// The encoded `NT_CKPT_TREE` descriptor, filled by the root's writer alone.
    note: UnsafeCell<[u8; NOTE_ROOM]>,
    /// TCP connections between processes of the tree, drained by the root (`treedrain`).
    drained: DrainTable,
}

/// How the control block shows in `/proc/PID/maps`: never part of an image.
pub const CONTROL_NAME: &[u8] = b"/memfd:ckpt-tree (deleted)";

const CONTROL_LEN: usize = core::mem::size_of::<Control>().next_multiple_of(4096);

fn map_control(fd: BorrowedFd) -> Result<&'static Control, Errno> {
    // SAFETY: a shared mapping of the control memfd, which is CONTROL_LEN bytes long; it stays
    // mapped for the life of this process (and its writers), so 'static holds.
    let p = unsafe { rustix::mm::mmap(core::ptr::null_mut(), CONTROL_LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0) }?;
    // SAFETY: zero-filled (or filled by the root) memory of the right size and alignment, valid
    // for `Control` (atomics and bytes, all zero at first); it is only ever written through
    // atomics and the note's UnsafeCell.
    Ok(unsafe { &*(p as *const Control) })
}

fn wake(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

fn bump(ctl: &Control) {
    ctl.events.fetch_add(1, SeqCst);
    wake(&ctl.events);
}

/// Waits until `word` is no longer `seen`, at most `ns`.
fn wait_change(word: &AtomicU32, seen: u32, ns: u64) {
    let t = Timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
    let _ = futex::wait(word, futex::Flags::empty(), seen, Some(&t));
}

fn now_ns() -> u64 {
    super::procfs::monotonic_ns()
}

/// `/proc/PID/stat` of a process, or `None` once it is gone.
fn stat(pid: u32, buf: &mut [u8]) -> Option<usize> {
    let mut path = [0u8; 64];
    read_start(numbered_path(&mut path, b"/proc/", pid as u64, b"/stat")?, buf).ok().filter(|&n| n > 0)
}

fn name_of(pid: u32, buf: &mut [u8; 512]) -> &[u8] {
    let n = stat(pid, buf).unwrap_or(0);
    stat_comm(&buf[..n])
}

// ---------------------------------------------------------------------------------------------
// The root.

/// The root's side of a tree checkpoint under way. Dropping it lets every member go on (and,
/// unless [`Tree::release`] was called, tells them the checkpoint was called off).
pub struct Tree {
    ctl: &'static Control,
    ctl_fd: OwnedFd,
    released: bool,
    /// Connections between its processes drained, to be filled again (`treedrain`).
    drains: TreeDrains,
}

impl Tree {
    /// Stops every descendant of this process (whose threads are already stopped), or `None`
    /// when it has none.
    pub fn gather(summon: Summon, image: &[u8]) -> Result<Option<Tree>, Failure> {
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let mut any = false;
        for_each_child(me, |_| any = true);
        if !any {
            return Ok(None);
        }
        let fd = rustix::fs::memfd_create(c"ckpt-tree", rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| Failure::new("making the tree's control block", e))?;
        rustix::fs::ftruncate(&fd, CONTROL_LEN as u64).map_err(|e| Failure::new("making the tree's control block", e))?;
        let ctl = map_control(fd.as_fd()).map_err(|e| Failure::new("mapping the tree's control block", e))?;
        ctl.root.store(me, SeqCst);
        if let Summon::Attached(args) = summon {
            // Published before any process, so that `ckpt` has it for the first one it starts.
            args.tree_ctl_fd.store(fd.as_raw_fd(), SeqCst);
        }
        let mut tree = Tree { ctl, ctl_fd: fd, released: false, drains: TreeDrains::none() };
        tree.stop_all(me, summon)?;
        tree.make_part_files(image)?;
        tree.drain_connections(me)?;
        tree.ctl.phase.store(PHASE_CAPTURE, SeqCst);
        wake(&tree.ctl.phase);
        Ok(Some(tree))
    }

    /// Drains the TCP connections between two processes of the tree whose unsent bytes only
    /// that can read (`treedrain`), every process parked.
    fn drain_connections(&mut self, me: u32) -> Result<(), Failure> {
        let mut pids = [0u32; MAX_TREE + 1];
        pids[0] = me;
        let mut n = 1;
        for m in self.members() {
            if m.state.load(SeqCst) == PARKED {
                pids[n] = m.pid.load(SeqCst);
                n += 1;
            }
        }
        self.drains.drain(&self.ctl.drained, &pids[..n])
    }

    /// The connections drained for the tree's processes (`treedrain`).
    pub fn drained(&self) -> &DrainTable {
        &self.ctl.drained
    }

    /// Fills again the connections drained between processes of the tree: once every process
    /// has captured itself (and, if not done, when the checkpoint is called off).
    pub fn refill(&mut self) {
        self.drains.refill(&self.ctl.drained);
    }

    fn members(&self) -> &[Member] {
        &self.ctl.members[..self.ctl.count.load(SeqCst) as usize]
    }

    /// Records a process (from its `/proc/PID/stat`) in the next slot, in `state`.
    fn add(&mut self, pid: u32, stat: &[u8], state: u32) -> Result<&Member, Failure> {
        let n = self.ctl.count.load(SeqCst) as usize;
        if n == MAX_TREE {
            return Err(Failure::plain("the process tree has more processes than one image can hold"));
        }
        let m = &self.ctl.members[n];
        let f = |i| stat_field(stat, i).unwrap_or(0) as u32;
        m.pid.store(pid, SeqCst);
        m.ppid.store(f(4), SeqCst);
        m.pgid.store(f(5), SeqCst);
        m.sid.store(f(6), SeqCst);
        m.wait_status.store(if state == ZOMBIE { f(52) } else { 0 }, SeqCst);
        m.part_fd.store(-1, SeqCst);
        m.writer.store(0, SeqCst);
        m.state.store(state, SeqCst);
        self.ctl.count.store(n as u32 + 1, SeqCst);
        Ok(m)
    }

    /// Lists the descendants until a pass finds none new, signalling each new one, and waits
    /// until every one has stopped (or turned out a zombie, or gone).
    fn stop_all(&mut self, me: u32, summon: Summon) -> Result<(), Failure> {
        let request = TAG << 32 | self.ctl_fd.as_raw_fd() as u32 as u64;
        loop {
            let mut new = 0usize;
            // Breadth first: the root, then each member as it is found, so that a parent is
            // always recorded before its children.
            let mut i = 0usize;
            while i <= self.ctl.count.load(SeqCst) as usize {
                let parent = if i == 0 { me } else { self.ctl.members[i - 1].pid.load(SeqCst) };
                let skip = i > 0 && matches!(self.ctl.members[i - 1].state.load(SeqCst), ZOMBIE | GONE);
                i += 1;
                if skip {
                    continue;
                }
                let mut found = [0u32; 256];
                let mut nfound = 0;
                for_each_child(parent, |pid| {
                    if nfound < found.len() {
                        found[nfound] = pid;
                        nfound += 1;
                    }
                });
                for &pid in &found[..nfound] {
                    // A process stopping threads with ptrace for a checkpoint (a member's, or
                    // this one's) is nobody's child, but a subreaper inherits it: not the tree's.
                    let mut buf = [0u8; 512];
                    if name_of(pid, &mut buf) == super::seize::NAME.to_bytes() {
                        continue;
                    }
                    if !self.members().iter().any(|m| m.pid.load(SeqCst) == pid) {
                        self.admit(pid, summon, request)?;
                        new += 1;
                    }
                }
            }
            self.wait_for(SIGNALLED, "stop for the checkpoint")?;
            if new == 0 {
                return Ok(());
            }
        }
    }

    /// Records process `pid` and asks it to stop, or records it as a zombie.
    fn admit(&mut self, pid: u32, summon: Summon, request: u64) -> Result<(), Failure> {
        let mut buf = [0u8; 512];
        let started = now_ns();
        loop {
            let Some(n) = stat(pid, &mut buf) else { return Ok(()) };
            let st = &buf[..n];
            if matches!(stat_state(st), Some(b'Z' | b'X')) {
                self.add(pid, st, ZOMBIE)?;
                return Ok(());
            }
            let signal = match summon {
                Summon::Signal(signal) => signal,
                Summon::Attached(args) => {
                    self.add(pid, st, SIGNALLED)?;
                    // `ckpt` starts its entry once it sees it here (each PID before the count).
                    let n = args.tree_count.load(SeqCst) as usize;
                    let slot = args.tree_pids.get(n).ok_or(Failure::plain("the process tree has more processes than one image can hold"))?;
                    slot.store(pid, SeqCst);
                    args.tree_count.store(n as u32 + 1, SeqCst);
                    return Ok(());
                }
            };
            if handles(pid, signal) {
                let m = self.add(pid, st, SIGNALLED)?;
                return match sys::sigqueue(pid, signal as u32, request) {
                    Ok(()) => Ok(()),
                    Err(Errno::SRCH) => {
                        m.state.store(GONE, SeqCst);
                        Ok(())
                    }
                    Err(e) => Err(Failure::new("signalling a process of the tree", e)),
                };
            }
            // Perhaps it is starting a program (execve), whose library has not yet installed
            // its handler: a moment's grace, then it is named.
            if now_ns() - started > 1_000_000_000 {
                let mut line = ckpt_sigsafe::out::Line::new();
                let _ = core::fmt::Write::write_fmt(&mut line, format_args!(
                    "ckpt: checkpoint failed: process {pid} ({}) of the tree does not run libckpt.so (a static program, or one started without LD_PRELOAD); the tree goes on and nothing at the image path changed",
                    ckpt_sigsafe::out::Lossy(stat_comm(st))
                ));
                line.emit();
                return Err(Failure::silent());
            }
            let _ = rustix::thread::nanosleep(&Timespec { tv_sec: 0, tv_nsec: 10_000_000 });
        }
    }

    /// Waits until no member is in state `from` any more (each moved on, or died), boundedly.
    /// A member that failed, or did not move in time, fails the checkpoint.
    fn wait_for(&self, from: u32, what: &str) -> Result<(), Failure> {
        let started = now_ns();
        loop {
            let seen = self.ctl.events.load(SeqCst);
            let mut waiting = None;
            for m in self.members() {
                let s = m.state.load(SeqCst);
                if s == FAILED {
                    let mut buf = [0u8; 512];
                    say!("ckpt: checkpoint failed: process {} ({}) of the tree could not {what}; the tree goes on and nothing at the image path changed", m.pid.load(SeqCst), ckpt_sigsafe::out::Lossy(name_of(m.pid.load(SeqCst), &mut buf)));
                    return Err(Failure::silent());
                }
                if s != from {
                    continue;
                }
                // Still there? A process that exited meanwhile is a zombie now, or gone.
                let mut buf = [0u8; 512];
                match stat(m.pid.load(SeqCst), &mut buf) {
                    None => m.state.store(GONE, SeqCst),
                    Some(n) if from == SIGNALLED && matches!(stat_state(&buf[..n]), Some(b'Z' | b'X')) => {
                        m.wait_status.store(stat_field(&buf[..n], 52).unwrap_or(0) as u32, SeqCst);
                        m.state.store(ZOMBIE, SeqCst);
                    }
                    Some(n) if matches!(stat_state(&buf[..n]), Some(b'Z' | b'X')) => {
                        m.state.store(FAILED, SeqCst);
                    }
                    Some(_) => waiting = Some(m.pid.load(SeqCst)),
                }
            }
            let Some(pid) = waiting else { return Ok(()) };
            if now_ns() - started > STOP_TIMEOUT_NS {
                let mut buf = [0u8; 512];
                say!("ckpt: checkpoint failed: process {pid} ({}) of the tree did not {what} within {} s; the tree goes on and nothing at the image path changed", ckpt_sigsafe::out::Lossy(name_of(pid, &mut buf)), STOP_TIMEOUT_NS / 1_000_000_000);
                return Err(Failure::silent());
            }
            wait_change(&self.ctl.events, seen, 50_000_000);
        }
    }

    /// An unnamed file next to the image for each stopped member, which it opens through
    /// `/proc/ROOT/fd/N` and its writer fills.
    fn make_part_files(&mut self, image: &[u8]) -> Result<(), Failure> {
        let mut buf = [0u8; ckpt_image::state::PATH_MAX + 1];
        let dir = super::imagefile::dir_of(image, &mut buf).ok_or(Failure::plain("image path is not absolute"))?;
        for m in self.members() {
            if m.state.load(SeqCst) != PARKED {
                continue;
            }
            let fd = match rustix::fs::open(dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(0o600)) {
                Ok(fd) => fd,
                // A file system without unnamed files: the part waits in memory instead.
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => rustix::fs::memfd_create(c"ckpt-part", rustix::fs::MemfdFlags::CLOEXEC)
                    .map_err(|e| Failure::new("making a part file for a process of the tree", e))?,
                Err(e) => return Err(Failure::on_file("creating a part file in the directory of", e)),
            };
            // The root's descriptor from now on, closed when the tree is dropped.
            m.part_fd.store(rustix::fd::IntoRawFd::into_raw_fd(fd), SeqCst);
        }
        Ok(())
    }

    /// Waits until every stopped member has captured itself and started its writer.
    pub fn wait_captured(&self) -> Result<(), Failure> {
        self.wait_for(PARKED, "be captured")
    }

    /// Lets every member go on: the checkpoint is taken.
    pub fn release(&mut self) {
        self.released = true;
        self.ctl.phase.store(PHASE_RESUME, SeqCst);
        wake(&self.ctl.phase);
    }

    /// Sends `sig` to every member: `SIGKILL` after a last checkpoint (none runs past it), or
    /// `SIGSTOP` when the tree stops instead.
    pub fn signal_members(&self, sig: Signal) {
        for m in self.members() {
            if let Some(pid) = Pid::from_raw(m.pid.load(SeqCst) as i32) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    }

    /// The descriptors the writer must keep: the part files.
    pub fn part_fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.members().iter().map(|m| m.part_fd.load(SeqCst)).filter(|&fd| fd >= 0)
    }

    /// The descriptors of this checkpoint's own (the control block, the part files), in `buf`.
    pub fn own_fds<'b>(&self, buf: &'b mut [i32]) -> &'b [i32] {
        let mut n = 0;
        for fd in core::iter::once(self.ctl_fd.as_raw_fd()).chain(self.part_fds()) {
            if n < buf.len() {
                buf[n] = fd;
                n += 1;
            }
        }
        &buf[..n]
    }

    /// Records in the tree note: the root and every member but those gone.
    pub fn note_len(&self) -> usize {
        ckpt_image::tree::note_len(1 + self.members().iter().filter(|m| m.state.load(SeqCst) != GONE).count())
    }

    /// In the root's writer, once its own data ends at `end`: waits for each member's part,
    /// appends it (page-aligned, holes kept), moves its offsets to where it now is (and, with a
    /// key, authenticates it again), and encodes the tree note. Returns the file's new end and
    /// the note.
    pub fn append_parts(
        &self,
        img: BorrowedFd<'_>,
        end: u64,
        key: Option<&ckpt_image::mac::Key>,
        own: TreeRecord,
        in_root: &dyn Fn(&ckpt_image::RegionRecord) -> Option<u64>,
    ) -> Result<(u64, &[u8]), Failure> {
        let mut end = end;
        // SAFETY: the note buffer is written only here, in the root's writer, and read back
        // through the returned slice; no member touches it.
        let note = unsafe { &mut *self.ctl.note.get() };
        let len = self.note_len();
        let mut w = ckpt_image::bytes::Writer::new(&mut note[..len]);
        ckpt_image::tree::write_header(&mut w, len / ckpt_image::tree::TREE_RECORD_SIZE);
        own.write(&mut w);
        for m in self.members() {
            let id = |a: &AtomicU32| a.load(SeqCst);
            let mut rec = TreeRecord { pid: id(&m.pid), ppid: id(&m.ppid), pgid: id(&m.pgid), sid: id(&m.sid), state: TREE_LIVE, ..TreeRecord::default() };
            match m.state.load(SeqCst) {
                GONE => continue,
                ZOMBIE => {
                    rec.state = TREE_ZOMBIE;
                    rec.wait_status = m.wait_status.load(SeqCst);
                }
                _ => {
                    self.wait_written(m)?;
                    let base = ckpt_image::page_up(end);
                    let part = m.part_fd.load(SeqCst);
                    // SAFETY: the part file is open in this writer for its whole run.
                    let part = unsafe { BorrowedFd::borrow_raw(part) };
                    let part_len = rustix::fs::fstat(part).map_err(|e| Failure::new("reading a part of the tree", e))?.st_size as u64;
                    super::assembly::copy_part(part, img, base, part_len)?;
                    rec.meta_hash = super::assembly::rebase_part(img, base, part_len, key, in_root)?;
                    rec.base = base;
                    rec.len = part_len;
                    end = base + part_len;
                }
            }
            rec.write(&mut w);
        }
        if w.finish() != Some(len) {
            return Err(Failure::plain("laying out the tree table"));
        }
        Ok((end, &note[..len]))
    }

    /// In the root's writer: the members may read its table of pages, descriptor `fd` of
    /// process `pid` (`pid` 0: there is none).
    pub fn publish_pages(&self, pid: u32, fd: i32) {
        self.ctl.pages_pid.store(pid, SeqCst);
        self.ctl.pages_fd.store(fd, SeqCst);
        self.ctl.pages_state.store(if pid == 0 { PAGES_NONE } else { PAGES_READY }, SeqCst);
        bump(self.ctl);
    }

    fn wait_written(&self, m: &Member) -> Result<(), Failure> {
        loop {
            let seen = self.ctl.events.load(SeqCst);
            match m.state.load(SeqCst) {
                WRITTEN => return Ok(()),
                FAILED => {
                    say!("ckpt: checkpoint failed: process {} of the tree could not write its image; nothing at the image path changed", m.pid.load(SeqCst));
                    return Err(Failure::silent());
                }
                _ => {}
            }
            let writer = m.writer.load(SeqCst);
            // A writer that is gone may have said WRITTEN just before it went.
            if Pid::from_raw(writer as i32).is_none_or(|w| rustix::process::test_kill_process(w) == Err(Errno::SRCH)) && m.state.load(SeqCst) != WRITTEN {
                say!("ckpt: checkpoint failed: the image writer of process {} of the tree ended before it finished; nothing at the image path changed", m.pid.load(SeqCst));
                return Err(Failure::silent());
            }
            wait_change(&self.ctl.events, seen, 100_000_000);
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.refill();
        if !self.released {
            self.ctl.phase.store(PHASE_ABORT, SeqCst);
            wake(&self.ctl.phase);
        }
        for fd in self.part_fds() {
            // SAFETY: the part files are the root's own descriptors, made by `make_part_files`
            // and used by nothing else in this process (the writer has its own copies).
            unsafe { rustix::io::close(fd) };
        }
        unmap_control(self.ctl);
    }
}

/// Unmaps this process's view of the control block (a writer keeps its own copy of the
/// mapping, which it never unmaps).
fn unmap_control(ctl: &Control) {
    // SAFETY: the mapping made by `map_control`; the caller's `ctl` is its last user here.
    let _ = unsafe { rustix::mm::munmap(ctl as *const Control as *mut core::ffi::c_void, CONTROL_LEN) };
}

/// Continues (`SIGCONT`) every process below `pid`: they stopped with it, after a last
/// checkpoint that could not be written, and it has been continued.
pub fn continue_descendants(pid: u32) {
    let mut todo = [0u32; ckpt_image::tree::MAX_TREE];
    let mut n = 0;
    for_each_child(pid, |c| {
        if n < todo.len() {
            todo[n] = c;
            n += 1;
        }
    });
    while n > 0 {
        n -= 1;
        let p = todo[n];
        if let Some(pid) = Pid::from_raw(p as i32) {
            let _ = rustix::process::kill_process(pid, Signal::CONT);
        }
        for_each_child(p, |c| {
            if n < todo.len() {
                todo[n] = c;
                n += 1;
            }
        });
    }
}

/// Calls `f` with each child of process `pid` (children of all its threads).
fn for_each_child(pid: u32, mut f: impl FnMut(u32)) {
    let _ = ckpt_sigsafe::tasks::each_thread(Some(pid), |tid| {
        let mut p = [0u8; 96];
        let Some(c) = proc_path2(&mut p, pid as u64, b"/task/", tid as u64, b"/children") else { return Ok::<_, ()>(()) };
        let mut text = [0u8; 4096];
        if let Ok(n) = read_start(c, &mut text) {
            pid_list(&text[..n]).for_each(&mut f);
        }
        Ok(())
    });
}

/// Whether process `pid` catches `signal` (it runs libckpt, whose handler is installed before
/// `main`): a process that does not would be killed by it.
fn handles(pid: u32, signal: i32) -> bool {
    let mut path = [0u8; 64];
    let Some(p) = numbered_path(&mut path, b"/proc/", pid as u64, b"/status") else { return false };
    let mut buf = [0u8; 4096];
    let Ok(n) = read_start(p, &mut buf) else { return false };
    status_field(&buf[..n], b"SigCgt:").and_then(ckpt_sigsafe::proctext::parse_hex).is_some_and(|m| m & 1 << (signal - 1) != 0)
}

// ---------------------------------------------------------------------------------------------
// A member.

/// A request from a root, from the checkpoint signal's `siginfo`: the root's PID and the
/// number of its control block descriptor.
#[derive(Clone, Copy)]
pub struct Request {
    root: u32,
    ctl_fd: i32,
}

impl Request {
    /// The request of a root that `ckpt` attached to (`Summon::Attached`), as it published it:
    /// its PID and its control block's descriptor number.
    pub fn from_root(root: u32, ctl_fd: i32) -> Request {
        Request { root, ctl_fd }
    }
}

/// Whether a checkpoint signal is a root's request (`sigqueue` with the tag) rather than a
/// user's `kill`.
pub fn request(code: i32, sender: u32, value: u64) -> Option<Request> {
    (code == -1 && value >> 32 == TAG && sender != 0).then_some(Request { root: sender, ctl_fd: value as u32 as i32 })
}

/// This process's place in a tree checkpoint.
pub struct Joined {
    ctl: &'static Control,
    root: u32,
    index: usize,
    done: bool,
}

impl Joined {
    /// Maps the root's control block and finds this process in it.
    pub fn join(r: Request) -> Result<Joined, Failure> {
        let mut path = [0u8; 96];
        let path = proc_path2(&mut path, r.root as u64, b"/fd/", r.ctl_fd as u64, b"").ok_or(Failure::plain("joining the tree's checkpoint"))?;
        let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| Failure::new("joining the tree's checkpoint", e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Failure::new("joining the tree's checkpoint", e))?;
        if st.st_size as usize != CONTROL_LEN {
            return Err(Failure::plain("joining the tree's checkpoint (not a control block)"));
        }
        let ctl = map_control(fd.as_fd()).map_err(|e| Failure::new("joining the tree's checkpoint", e))?;
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let index = ctl.members[..(ctl.count.load(SeqCst) as usize).min(MAX_TREE)].iter().position(|m| m.pid.load(SeqCst) == me);
        match index {
            Some(index) if ctl.root.load(SeqCst) == r.root => Ok(Joined { ctl, root: r.root, index, done: false }),
            _ => Err(Failure::plain("joining the tree's checkpoint (this process is not in it)")),
        }
    }

    fn me(&self) -> &Member {
        &self.ctl.members[self.index]
    }

    /// The connections the root drained for the tree's processes (`treedrain`).
    pub fn drained(&self) -> &DrainTable {
        &self.ctl.drained
    }

    fn set(&self, state: u32) {
        self.me().state.store(state, SeqCst);
        bump(self.ctl);
    }

    /// Says this process is stopped, and waits for the root's word: `true` to capture now,
    /// `false` if the checkpoint was called off (or the root is gone), which needs no word
    /// back.
    pub fn parked_wait(&mut self) -> bool {
        self.set(PARKED);
        let go = self.wait_phase(PHASE_STOPPING) == PHASE_CAPTURE;
        self.done |= !go;
        go
    }

    fn wait_phase(&self, from: u32) -> u32 {
        let started = now_ns();
        loop {
            let p = self.ctl.phase.load(SeqCst);
            if p != from {
                return p;
            }
            if now_ns() - started > HOLD_TIMEOUT_NS || Pid::from_raw(self.root as i32).is_some_and(|r| rustix::process::test_kill_process(r) == Err(Errno::SRCH)) {
                return PHASE_ABORT;
            }
            wait_change(&self.ctl.phase, from, 200_000_000);
        }
    }

    /// Opens this process's part file (the root's descriptor).
    pub fn open_part(&self) -> Result<OwnedFd, Failure> {
        let mut path = [0u8; 96];
        let path = proc_path2(&mut path, self.root as u64, b"/fd/", self.me().part_fd.load(SeqCst) as u64, b"").ok_or(Failure::plain("opening the part file"))?;
        rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| Failure::new("opening the part file", e))
    }

    /// In the writer's parent: the writer is `pid`.
    pub fn writer_started(&self, pid: u32) {
        self.me().writer.store(pid, SeqCst);
    }

    /// The writer has started: waits for the root to let the tree go on.
    pub fn captured_wait(&mut self) {
        self.done = true;
        // A quick writer may have said WRITTEN (or FAILED) already: that stays.
        let _ = self.me().state.compare_exchange(PARKED, CAPTURED, SeqCst, SeqCst);
        bump(self.ctl);
        self.wait_phase(PHASE_CAPTURE);
    }

    /// In the writer: waits for the root's writer to publish its table of pages, and says
    /// where it is (process and descriptor), or `None` if there is none.
    pub fn root_pages(&self) -> Option<(u32, i32)> {
        let started = now_ns();
        loop {
            let seen = self.ctl.events.load(SeqCst);
            match self.ctl.pages_state.load(SeqCst) {
                PAGES_READY => return Some((self.ctl.pages_pid.load(SeqCst), self.ctl.pages_fd.load(SeqCst))),
                PAGES_PENDING => {}
                _ => return None,
            }
            if self.ctl.phase.load(SeqCst) == PHASE_ABORT || now_ns() - started > PAGES_TIMEOUT_NS {
                return None;
            }
            wait_change(&self.ctl.events, seen, 200_000_000);
        }
    }

    /// In the writer: the part is complete (`ok`) or not.
    pub fn written(&self, ok: bool) {
        self.set(if ok { WRITTEN } else { FAILED });
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        // Leaving before the capture is done: the root must not wait for this process.
        if !self.done {
            self.set(FAILED);
        }
        unmap_control(self.ctl);
    }
}
