//! Records a descriptor on a pseudo-terminal (`NT_CKPT_PTYS`): which pair, its terminal state,
//! the session it controls, and, for a master's first description, the bytes queued in the pair
//! each way. Signal-safe like the rest of `checkpoint`.
//!
//! A terminal's queues cannot be looked at without taking the bytes, so the master's holder
//! takes them and puts them back, the program still stopped: the bytes the slave had written
//! are read from the master and written again through a slave descriptor of its own
//! (`TIOCGPTPEER`) with output processing off, so they come out of the master unchanged; the
//! bytes written into the master that the slave had not read are read from that descriptor with
//! the slave in raw mode (every byte readable, a line not yet ended too) and written into the
//! master again with echo and input processing off, and the checkpoint waits (a moment at most)
//! until the slave has them before its termios comes back. A canonical reader then finds what
//! was queued as one pending input: one `read` may return lines that it would have read one by
//! one, and a line not yet ended is returned without waiting for its end.

use ckpt_image::bytes::Writer;
use ckpt_image::pty::{PtyRecord, Termios, CTTY, LOCKED, MASTER, MAX_PTY_QUEUE, PACKET};
use ckpt_sigsafe::say;
use ckpt_sigsafe::tty;
use linux_raw_sys::general as k;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::OFlags;

/// Where the pty records go, and whether one is a master's (the note's type depends on it).
pub struct PtyOut<'a> {
    pub w: Writer<'a>,
    pub master: bool,
}

/// Whether a character device `rdev` is an end of a pty.
pub fn is_pty(rdev: u64) -> bool {
    tty::pty_end(rdev).is_some()
}

/// Records descriptor `fd` on a pty (`rdev` its device), the first of its open file
/// description unless `same_as` names an earlier one; `room` is scratch for the queued bytes
/// (two [`MAX_PTY_QUEUE`] halves, or less: then fewer bytes are kept).
pub fn record(fd: i32, bfd: BorrowedFd, rdev: u64, same_as: i32, out: &mut PtyOut, room: &mut [u8]) {
    let Some(end) = tty::pty_end(rdev) else { return };
    let master = end.is_none();
    let index = match end {
        Some(n) => n,
        None => match tty::number(bfd) {
            Ok(n) => n,
            Err(_) => {
                say!("ckpt: fd {fd}: a pty master that does not say its number; a restarted process gets a new, unrelated pty there");
                return;
            }
        },
    };
    let termios = tty::termios(bfd).unwrap_or_default();
    let mut rec = PtyRecord { fd, index, termios, winsize: tty::winsize(bfd).unwrap_or([0; 4]), ..PtyRecord::default() };
    if master {
        rec.flags |= MASTER;
        if tty::locked(bfd).unwrap_or(false) {
            rec.flags |= LOCKED;
        }
        if tty::packet_mode(bfd).unwrap_or(false) {
            rec.flags |= PACKET;
        }
    }
    if let Ok(sid) = tty::session(bfd) {
        rec.flags |= CTTY;
        rec.sid = sid;
        rec.fg_pgrp = tty::foreground(bfd).unwrap_or(0);
    }
    let (to_slave, to_master) = room.split_at_mut((room.len() / 2).min(MAX_PTY_QUEUE));
    let to_master_len = to_master.len().min(MAX_PTY_QUEUE);
    let (a, b) = if master && same_as < 0 { take_and_put_back(fd, bfd, &termios, rec.flags & PACKET != 0, to_slave, &mut to_master[..to_master_len]) } else { (0, 0) };
    out.master |= master;
    rec.write(&mut out.w, &to_slave[..a], &to_master[..b]);
}

/// The bytes queued in the pair of `master` each way (into `to_slave` and `to_master`), taken
/// and put back as the module says. Returns how many of each.
fn take_and_put_back(fd: i32, master: BorrowedFd, saved: &Termios, packet: bool, to_slave: &mut [u8], to_master: &mut [u8]) -> (usize, usize) {
    let Ok(flags) = rustix::fs::fcntl_getfl(master) else { return (0, 0) };
    let Ok(peer) = tty::open_peer(master, k::O_RDWR | k::O_NONBLOCK) else {
        say!("ckpt: fd {fd}: the bytes queued in its pty are not saved (its slave cannot be opened)");
        return (0, 0);
    };
    let _ = rustix::fs::fcntl_setfl(master, flags | OFlags::NONBLOCK);
    if packet {
        let _ = tty::set_packet_mode(master, false);
    }
    // Raw for the copy: no canonical lines, no echo, no signals, no translation either way.
    let mut raw = *saved;
    raw.iflag = 0;
    raw.oflag &= !k::OPOST;
    raw.lflag &= !(k::ICANON | k::ECHO | k::ECHONL | k::ISIG | k::IEXTEN);
    raw.cc[k::VMIN as usize] = 0;
    raw.cc[k::VTIME as usize] = 0;
    let mut got = (0, 0);
    if tty::set_termios(peer.as_fd(), &raw).is_ok() {
        got = (read_all(peer.as_fd(), to_slave), read_all(master, to_master));
        let mut waits = 0;
        let put = (write_all(master, &to_slave[..got.0], &mut waits), write_all(peer.as_fd(), &to_master[..got.1], &mut waits));
        if put.0 < got.0 || put.1 < got.1 {
            say!("ckpt: fd {fd}: its pty took back only {} of the {} bytes queued in it; the program lost the others", put.0 + put.1, got.0 + got.1);
        }
        // The line discipline takes what is written to the other end in the background: wait
        // (200 ms at most, on a loaded machine; microseconds as a rule) until both ends have
        // their bytes again, before their modes come back.
        let back = (0..200).any(|_| {
            let slave_has = tty::queued(peer.as_fd()).unwrap_or(0) as usize;
            let master_has = tty::queued(master).unwrap_or(0) as usize;
            let done = slave_has >= got.0 && master_has >= got.1;
            if !done {
                ckpt_sigsafe::sys::sleep_ns(1_000_000);
            }
            done
        });
        if !back {
            say!("ckpt: fd {fd}: its pty had not taken back the bytes queued in it after 200 ms; the program may see them echoed or translated once more");
        }
        let _ = tty::set_termios(peer.as_fd(), saved);
    }
    if packet {
        let _ = tty::set_packet_mode(master, true);
    }
    let _ = rustix::fs::fcntl_setfl(master, flags);
    if (got.0 > 0 && got.0 == to_slave.len()) || (got.1 > 0 && got.1 == to_master.len()) {
        say!("ckpt: fd {fd}: its pty holds more than {} bytes one way; a restarted process gets the first {}", to_master.len(), to_master.len());
    }
    got
}

/// Reads what `fd` (non-blocking) has now into `buf`; how many bytes.
fn read_all(fd: BorrowedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::retry_on_intr(|| rustix::io::read(fd, &mut buf[n..])) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Writes `data` to non-blocking `fd` in small pieces, waiting a millisecond while the pair has
/// no room (its line discipline takes bytes in the background), `waits` of them at most (200,
/// for both directions): how many bytes it took. (One large write takes fewer bytes than
/// small ones did: the program's own were small.)
fn write_all(fd: BorrowedFd, data: &[u8], waits: &mut u32) -> usize {
    let mut n = 0;
    while n < data.len() {
        let piece = &data[n..data.len().min(n + 512)];
        match rustix::io::retry_on_intr(|| rustix::io::write(fd, piece)) {
            Ok(k) if k > 0 => n += k,
            Err(rustix::io::Errno::AGAIN) if *waits < 200 => {
                *waits += 1;
                ckpt_sigsafe::sys::sleep_ns(1_000_000);
            }
            _ => break,
        }
    }
    n
}
