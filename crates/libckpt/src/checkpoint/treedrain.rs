//! Drain and refill (`tcpdrain`) for a TCP connection between two processes of a tree, done
//! by the tree's root while every process of it is parked, before anyone captures.
//!
//! Repair mode refused, the root takes a copy of each member's connected TCP sockets
//! (`pidfd_getfd`, which the kernel allows a process for its descendants), and drains each
//! connection whose sender holds unsent bytes and whose far end is in another process of the
//! tree. The drained streams go into the table of the tree's control block (the receiving
//! process and socket, and the bytes): each process, as it captures its descriptors, takes its
//! own as the saved queue of that socket ([`DrainTable::frames_of`]). Once every process has
//! captured itself, or the checkpoint is called off, the root writes each stream back through
//! its copy of the sender ([`TreeDrains::refill`]), and lets the copies go.
//!
//! A connection between two ends of one process is that process's own to drain (`tcpdrain`).
//! A socket the root may not copy (a process that is not dumpable) is left as it was: its
//! connection is named by `tcp` as before.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler: raw system calls, atomics on the shared block, fixed
//! buffers; no allocation, no locks, no libc.

use super::failure::Failure;
use super::tcpdrain::{tcp_ends, Drains, MAX_DRAINS};
use ckpt_image::limits::MAX_TREE_DRAINED;
use ckpt_sigsafe::proctext::numbered_path;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use rustix::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags};

/// One drained stream: the process and socket (inode) that received it, and where its frame
/// is in the table's bytes.
#[repr(C)]
struct Entry {
    pid: AtomicU32,
    ino: AtomicU64,
    at: AtomicU64,
    len: AtomicU64,
}

/// The drained streams of a tree checkpoint, in its control block: written by the root alone
/// while every process is parked, read by each process as it captures itself.
#[repr(C)]
pub struct DrainTable {
    count: AtomicU32,
    entries: [Entry; MAX_DRAINS],
    bytes: UnsafeCell<[u8; MAX_TREE_DRAINED]>,
}

impl DrainTable {
    /// The frames drained for process `pid`'s sockets: (socket inode, frame).
    pub fn frames_of(&self, pid: u32) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        // SAFETY: the bytes are written by the root only before it lets the tree capture
        // (phase CAPTURE, stored after them), and never again while anyone reads them.
        let bytes: &[u8] = unsafe { &*self.bytes.get() };
        let n = (self.count.load(SeqCst) as usize).min(MAX_DRAINS);
        self.entries[..n].iter().filter(move |e| e.pid.load(SeqCst) == pid).filter_map(move |e| {
            let (at, len) = (e.at.load(SeqCst) as usize, e.len.load(SeqCst) as usize);
            Some((e.ino.load(SeqCst), bytes.get(at..at.checked_add(len)?)?))
        })
    }
}

/// The root's copies of the sockets of the tree's processes, and the connections drained.
pub struct TreeDrains {
    drains: Drains,
    held: [i32; 2 * MAX_DRAINS],
    nheld: usize,
}

impl TreeDrains {
    pub const fn none() -> TreeDrains {
        TreeDrains { drains: Drains::none(), held: [-1; 2 * MAX_DRAINS], nheld: 0 }
    }

    /// In the root, every process of the tree (`pids`, this one among them) parked: drains
    /// the connections between two of them (see the module comment) into `table`.
    pub fn drain(&mut self, table: &DrainTable, pids: &[u32]) -> Result<(), Failure> {
        // SAFETY: the root alone writes the bytes, now, before any process reads them.
        let bytes: &mut [u8] = unsafe { &mut *table.bytes.get() };
        let mut used = 0usize;
        let mut repair: Option<bool> = None;
        let mut failed = None;
        for &pid in pids {
            for_each_socket(pid, &mut |sock| {
                if self.drains.full() {
                    return true;
                }
                let Some(rec) = tcp_ends(sock.as_fd()) else { return false };
                if ckpt_sigsafe::sys::bytes_not_sent(sock.as_raw_fd()).unwrap_or(0) == 0 {
                    return false;
                }
                if *repair.get_or_insert_with(|| super::tcp::repair_allowed(sock.as_fd())) {
                    return true;
                }
                let Some((far, far_pid)) = far_end(pids, &rec) else { return false };
                if far_pid == pid {
                    // Both ends in that process: its own to drain.
                    return false;
                }
                let before = self.drains.each().count();
                let r = self.drains.drain(sock.as_raw_fd(), far.as_raw_fd(), &rec, bytes, &mut used);
                if self.drains.each().count() > before {
                    let (ino, at, len) = self.drains.each().last().unwrap_or_default();
                    let e = &table.entries[before];
                    e.pid.store(far_pid, SeqCst);
                    e.ino.store(ino, SeqCst);
                    e.at.store(at as u64, SeqCst);
                    e.len.store(len as u64, SeqCst);
                    table.count.store(before as u32 + 1, SeqCst);
                    self.held[self.nheld] = sock.into_raw_fd();
                    self.held[self.nheld + 1] = far.into_raw_fd();
                    self.nheld += 2;
                }
                match r {
                    Ok(()) => false,
                    Err(f) => {
                        failed = Some(f);
                        true
                    }
                }
            });
            if let Some(f) = failed.take() {
                return Err(f);
            }
        }
        Ok(())
    }

    /// Writes every drained stream back through the root's copy of its sender, then lets the
    /// copies go. Once every process has captured itself, or the checkpoint is called off.
    pub fn refill(&mut self, table: &DrainTable) {
        // SAFETY: read only, by the root, who wrote it; no one writes it any more.
        let bytes: &[u8] = unsafe { &*table.bytes.get() };
        self.drains.refill(bytes);
        for fd in &mut self.held[..self.nheld] {
            // SAFETY: the root's own copies (`pidfd_getfd`), kept for the refill and used by
            // nothing else.
            unsafe { rustix::io::close(*fd) };
            *fd = -1;
        }
        self.nheld = 0;
    }
}

/// Calls `f` with a copy (in this process) of each socket of process `pid`, until it returns
/// `true`. Sockets the kernel will not copy are passed over.
fn for_each_socket(pid: u32, f: &mut dyn FnMut(OwnedFd) -> bool) {
    let Some(p) = Pid::from_raw(pid as i32) else { return };
    let Ok(pidfd) = rustix::process::pidfd_open(p, PidfdFlags::empty()) else { return };
    let mut path = [0u8; 64];
    let Some(dirpath) = numbered_path(&mut path, b"/proc/", pid as u64, b"/fd") else { return };
    let Ok(dir) = rustix::fs::open(dirpath, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return };
    let mut dirbuf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut raw = rustix::fs::RawDir::new(&dir, &mut dirbuf);
    while let Some(Ok(entry)) = raw.next() {
        let Some(fd) = super::procfs::parse_dec(entry.file_name().to_bytes()) else { continue };
        let mut link = [0u8; 64];
        let n = rustix::fs::readlinkat_raw(&dir, entry.file_name(), &mut link[..]).unwrap_or(0).min(link.len());
        if !link[..n].starts_with(b"socket:[") {
            continue;
        }
        if pid == rustix::process::getpid().as_raw_nonzero().get() as u32 && fd as i32 == dir.as_raw_fd() {
            continue;
        }
        let Ok(copy) = rustix::process::pidfd_getfd(&pidfd, fd as i32, PidfdGetfdFlags::empty()) else { continue };
        if f(copy) {
            return;
        }
    }
}

/// A copy of the far end of connection `rec` in one of `pids`, and that process.
fn far_end(pids: &[u32], rec: &ckpt_image::sockets::SocketRecord) -> Option<(OwnedFd, u32)> {
    let mut found = None;
    for &pid in pids {
        for_each_socket(pid, &mut |sock| {
            if tcp_ends(sock.as_fd()).is_some_and(|o| o.addr() == rec.peer() && o.peer() == rec.addr()) {
                found = Some((sock, pid));
                return true;
            }
            false
        });
        if found.is_some() {
            return found;
        }
    }
    None
}
