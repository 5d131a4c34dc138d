//! Pseudo-terminal pairs whose master is in the image come back as new pairs: `/dev/ptmx`
//! opened (asked again until it gives the old number, where that number is free and low), the
//! slave unlocked and opened, the termios, window size, packet mode and lock put back, and the
//! bytes that were queued each way written in again (see [`fill`]). In a tree the pairs are
//! made once, before the processes (`files::pool`, through [`pool_member`]), so every process
//! inherits them; each descriptor
//! then takes its end ([`end`]): the master is the one description there is, a slave a new
//! description of its own, with its flags. The session a pair controlled gets it back as its
//! controlling terminal, with its foreground process group ([`take_terminal`]).
//!
//! A slave whose master is not in the image (the user's own terminal) is restored as before:
//! a standard descriptor is myrestart's own, another is reopened by its path.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::fds::{park, Parked};
use crate::plan::{Plan, PtySlot};
use crate::refusal::{refuse, Refusal};
use ckpt_image::fds::{FdKind, FdRecord};
use ckpt_image::pty::{PtyRecord, LOCKED, PACKET};
use ckpt_image::Image;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::{say, tty};
use core::ffi::CStr;
use linux_raw_sys::general as k;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Most `/dev/ptmx` opens spent looking for a pair's old number.
const NUMBER_TRIES: usize = 32;

/// In a tree, before its processes exist, for one member (its part `image`): every pair whose
/// master it has, made once for the tree, and filled with the bytes that were queued in it from
/// the first master record that holds some (two holders of one master took turns taking and
/// putting back the same bytes at the checkpoint).
pub fn pool_member(image_path: &CStr, image: &Image, p: &mut Plan) -> Result<(), Refusal> {
    for item in image.ptys() {
        let (rec, to_slave, to_master) = item.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        if !rec.is_master() {
            continue;
        }
        let i = match slot_of(p, rec.index) {
            Some(i) => i,
            None => make(image_path, p, &rec)?,
        };
        let has_bytes = !to_slave.is_empty() || !to_master.is_empty();
        if has_bytes && !p.ptys[i].filled {
            p.ptys[i].filled = true;
            fill(image_path, &p.ptys[i], to_slave, to_master)?;
        }
    }
    Ok(())
}

/// The end descriptor `rec` had, if it was on a pty whose master is in the image (the tree's
/// pair, or one made now for a single process); `None` otherwise (restored as before).
pub fn end(image_path: &CStr, image: &Image, rec: &FdRecord, p: &mut Plan) -> Result<Option<Parked>, Refusal> {
    if !matches!(rec.kind, FdKind::Device | FdKind::Inherit) {
        return Ok(None);
    }
    let Some((t, _, _)) = image.ptys().filter_map(Result::ok).find(|r| r.0.fd == rec.fd) else { return Ok(None) };
    let slot = match slot_of(p, t.index) {
        Some(s) => s,
        None if p.ntree == 0 => {
            let Some((master, to_slave, to_master)) = image.ptys().filter_map(Result::ok).find(|r| r.0.is_master() && r.0.index == t.index) else {
                return Ok(None);
            };
            let s = make(image_path, p, &master)?;
            fill(image_path, &p.ptys[s], to_slave, to_master)?;
            s
        }
        None => return Ok(None),
    };
    if rec.same_as >= 0 {
        return Ok(p.fds[..p.nfds].iter().find(|s| s.target == rec.same_as).map(|s| s.src));
    }
    let s = p.ptys[slot];
    let bad = |e: Errno| refuse(image_path, format_args!("fd {}: its pseudo-terminal: {}", rec.fd, describe(e)));
    let fd = if t.is_master() || s.locked {
        // A master has one description; a locked slave cannot be opened again.
        let from = if t.is_master() { s.master } else { s.slave };
        let fd = from.dup(p.fd_base).map_err(bad)?;
        let _ = rustix::fs::fcntl_setfl(fd.as_fd(), OFlags::from_bits_retain(rec.open_flags & (k::O_NONBLOCK | k::O_APPEND)));
        fd
    } else {
        let flags = rec.open_flags & (k::O_ACCMODE | k::O_NONBLOCK | k::O_APPEND);
        let f = tty::open_peer(s.master.as_fd(), flags).map_err(bad)?;
        park(f, p.fd_base).map_err(bad)?
    };
    Ok(Some(fd))
}

/// The slot of the pair whose number was `index` at the checkpoint.
fn slot_of(p: &Plan, index: u32) -> Option<usize> {
    p.ptys[..p.nptys].iter().position(|s| s.index == index)
}

/// Makes the pair of master record `rec` again, its state put back (bytes aside); its slot.
fn make(image_path: &CStr, p: &mut Plan, rec: &PtyRecord) -> Result<usize, Refusal> {
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {}: making its pseudo-terminal again: {what}: {}", rec.fd, describe(e)));
    if p.nptys == p.ptys.len() {
        return Err(refuse(image_path, format_args!("more than {} pseudo-terminals to make again", p.ptys.len())));
    }
    let master = open_numbered(rec.index).map_err(|e| bad("/dev/ptmx", e))?;
    let m = master.as_fd();
    tty::set_locked(m, false).map_err(|e| bad("unlocking its slave", e))?;
    let slave = tty::open_peer(m, k::O_RDWR).map_err(|e| bad("opening its slave", e))?;
    tty::set_termios(m, &rec.termios).map_err(|e| bad("its termios", e))?;
    tty::set_winsize(m, rec.winsize).map_err(|e| bad("its window size", e))?;
    if rec.flags & PACKET != 0 {
        tty::set_packet_mode(m, true).map_err(|e| bad("packet mode", e))?;
    }
    if rec.flags & LOCKED != 0 {
        tty::set_locked(m, true).map_err(|e| bad("locking its slave", e))?;
    }
    let now = tty::number(m).unwrap_or(u32::MAX);
    let master = park(master, p.fd_base).map_err(|e| bad("parking", e))?;
    let slave = park(slave, p.fd_base).map_err(|e| bad("parking", e))?;
    if now != rec.index {
        say!("myrestart: pseudo-terminal {} comes back as /dev/pts/{now} (its number is taken)", rec.index);
    }
    let ctty = rec.flags & ckpt_image::pty::CTTY != 0;
    p.ptys[p.nptys] = PtySlot {
        index: rec.index,
        master,
        slave,
        termios: rec.termios,
        locked: rec.flags & LOCKED != 0,
        sid: if ctty { rec.sid } else { 0 },
        fg_pgrp: if ctty { rec.fg_pgrp } else { 0 },
        filled: false,
    };
    p.nptys += 1;
    Ok(p.nptys - 1)
}

/// A new master, numbered `want` if that number is free: the kernel gives the lowest free
/// number, so the masters it gives below `want` are held (and then closed) until it comes, for
/// [`NUMBER_TRIES`] opens at most; else the first one.
fn open_numbered(want: u32) -> Result<OwnedFd, Errno> {
    let open = || {
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
        rustix::fs::open(c"/dev/ptmx", flags, Mode::empty()).or_else(|_| rustix::fs::open(c"/dev/pts/ptmx", flags, Mode::empty()))
    };
    let mut held: [Option<OwnedFd>; NUMBER_TRIES] = [const { None }; NUMBER_TRIES];
    let first = open()?;
    let mut n = tty::number(first.as_fd())?;
    if n >= want {
        return Ok(first);
    }
    held[0] = Some(first);
    for slot in held.iter_mut().skip(1) {
        let Ok(next) = open() else { break };
        n = tty::number(next.as_fd()).unwrap_or(u32::MAX);
        if n >= want {
            return Ok(if n == want { next } else { held[0].take().unwrap_or(next) });
        }
        *slot = Some(next);
    }
    held[0].take().ok_or(Errno::NOENT)
}

/// Writes the bytes that were queued in pair `s` back: toward the slave through the master
/// with the slave raw (no echo, no translation), toward the master through the slave without
/// output processing; waits (a second at most) until each end has them, then gives the slave
/// its termios again.
fn fill(image_path: &CStr, s: &PtySlot, to_slave: &[u8], to_master: &[u8]) -> Result<(), Refusal> {
    if to_slave.is_empty() && to_master.is_empty() {
        return Ok(());
    }
    let bad = |e: Errno| refuse(image_path, format_args!("putting back the bytes of pseudo-terminal {}: {}", s.index, describe(e)));
    let (m, sl) = (s.master.as_fd(), s.slave.as_fd());
    let mut raw = s.termios;
    raw.iflag = 0;
    raw.oflag &= !k::OPOST;
    raw.lflag &= !(k::ICANON | k::ECHO | k::ECHONL | k::ISIG | k::IEXTEN);
    tty::set_termios(m, &raw).map_err(bad)?;
    write_all(m, to_slave).map_err(bad)?;
    write_all(sl, to_master).map_err(bad)?;
    for _ in 0..1000 {
        let (a, b) = (tty::queued(sl).unwrap_or(0) as usize, tty::queued(m).unwrap_or(0) as usize);
        if a >= to_slave.len() && b >= to_master.len() {
            break;
        }
        let _ = rustix::thread::nanosleep(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 1_000_000 });
    }
    tty::set_termios(m, &s.termios).map_err(bad)
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        let n = rustix::io::retry_on_intr(|| rustix::io::write(fd, data))?;
        data = &data[n..];
    }
    Ok(())
}

/// In a process of a tree that has just joined its session and group (`pid`, leading session
/// `sid` if `pid == sid`): a pair that was its session's controlling terminal becomes it again
/// (the leader asks, before it creates its children, which inherit it), and the process that
/// leads the pair's foreground group makes it the foreground again.
pub fn take_terminal(p: &Plan, pid: u32, sid: u32) {
    for s in p.ptys[..p.nptys].iter().filter(|s| s.sid == sid && sid != 0) {
        let sl = s.slave.as_fd();
        if pid == sid {
            if let Err(e) = tty::make_controlling(sl) {
                say!("myrestart: process {pid} cannot make pseudo-terminal {} its controlling terminal again: {}", s.index, describe(e));
            }
        }
        if s.fg_pgrp == pid && pid != sid {
            if let Err(e) = tty::set_foreground(sl, pid) {
                say!("myrestart: process group {pid} cannot be the foreground of pseudo-terminal {} again: {}", s.index, describe(e));
            }
        }
    }
}
