//! Drain and refill: how a checkpoint without `CAP_NET_ADMIN` (an ordinary user, or any
//! restored program, which runs in a user namespace of ckpt's) keeps the bytes a TCP sender
//! had not sent yet, when the connection's far end is in this process too.
//!
//! The kernel shows the unsent bytes of a send queue only in repair mode (`TCP_REPAIR`, which
//! `tcp` uses where it is allowed). Without it, before any descriptor is recorded, each such
//! connection is drained: its receiving end reads (consumes) its queue, which opens its
//! window, so that the sender's bytes flow in, until the sender holds nothing (`SIOCOUTQ` 0:
//! every byte sent and acknowledged) and the receiver has read it all. That stream is the
//! receiver's saved queue (one frame, in the caller's data area), the sender holding nothing
//! unsent. Once every descriptor is recorded, [`Drains::refill`] writes the same bytes back
//! through the sender, so that the live program (which goes on after a checkpoint) finds
//! exactly what it had queued, in order: part in the receiver's queue, the rest unsent again.
//! The program's threads are all stopped meanwhile, so nothing else reads or writes them.
//!
//! A connection is drained only when nothing of it can go astray: the sender still sending
//! (established, or its peer closed), the receiver's queue free of urgent data, the bytes
//! fitting the room left. Otherwise it is left to `tcp`, which names it. A connection between
//! two processes of a tree is drained the same way by the tree's root (`treedrain`). Draining
//! is bounded
//! ([`WAIT_NS`]); on loopback it ends within a few round trips.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler: raw system calls into caller-owned buffers; no
//! allocation, no locks, no libc.

use super::failure::Failure;
use ckpt_image::sockets::{self as s, SocketRecord};
use ckpt_sigsafe::sockets::Addr;
use ckpt_sigsafe::{say, sys};
use linux_raw_sys::net as n;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::BorrowedFd;
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use rustix::time::Timespec;

/// How many connections one checkpoint drains (past them, connections are named as before).
pub const MAX_DRAINS: usize = 32;
/// How long one connection may take to drain, or to be refilled.
const WAIT_NS: u64 = 10_000_000_000;

/// TCP states (`include/net/tcp_states.h`) in which an end still sends.
const ESTABLISHED: u8 = 1;
const CLOSE_WAIT: u8 = 8;

/// One drained connection: its sender and receiver (descriptors of this process), the
/// receiver's socket inode, its drained stream (a frame in the data area: header at `at`,
/// `len` bytes after it), and the receiver's peek offset to set back.
#[derive(Clone, Copy)]
struct Drain {
    send: i32,
    recv: i32,
    recv_ino: u64,
    at: usize,
    len: usize,
    peek_off: i32,
}

/// The connections drained by this checkpoint, to be refilled once it has recorded them.
pub struct Drains {
    list: [Drain; MAX_DRAINS],
    n: usize,
}

impl Drains {
    pub const fn none() -> Drains {
        Drains { list: [Drain { send: -1, recv: -1, recv_ino: 0, at: 0, len: 0, peek_off: -1 }; MAX_DRAINS], n: 0 }
    }

    /// Drains every connection of this process whose sender holds unsent bytes that repair
    /// mode cannot read, and whose receiver is here too, into `data` at `*used`.
    pub fn drain_all(&mut self, data: &mut [u8], used: &mut usize) -> Result<(), Failure> {
        let mut repair: Option<bool> = None;
        let failed = super::procfs::find_own_fd(|fd| {
            // SAFETY: `fd` is open in this process (listed in /proc/self/fd, and no other
            // thread runs to close it); it is only borrowed for these calls.
            let sock = unsafe { BorrowedFd::borrow_raw(fd) };
            // A connected TCP socket first: the ioctl means something else to a device.
            let rec = tcp_ends(sock)?;
            if sys::bytes_not_sent(fd).unwrap_or(0) == 0 {
                return None;
            }
            // Repair mode, where allowed, reads the unsent bytes without moving them (`tcp`):
            // nothing to drain then.
            if *repair.get_or_insert_with(|| super::tcp::repair_allowed(sock)) {
                return Some(Ok(()));
            }
            let recv = far_end(&rec)?;
            if self.list[..self.n].iter().any(|d| d.send == fd) {
                return None;
            }
            if self.n == MAX_DRAINS {
                say!("ckpt: fd {fd} (TCP connection to {}): more connections hold unsent bytes than one checkpoint drains ({MAX_DRAINS})", Addr(rec.peer()));
                return None;
            }
            self.drain(fd, recv, &rec, data, used).err().map(Err)
        });
        failed.map_err(|e| Failure::new("listing /proc/self/fd", e))?.unwrap_or(Ok(()))
    }

    /// Takes as drained the frame `frame` (header and bytes) drained for socket `ino` of this
    /// process by another (a tree's root, `treedrain`), copying it into `data` at `*used`; the
    /// other process fills the connection again.
    pub fn adopt(&mut self, ino: u64, frame: &[u8], data: &mut [u8], used: &mut usize) -> Result<(), Failure> {
        if self.n == MAX_DRAINS || *used + frame.len() > data.len() {
            return Err(Failure::plain("the program's pipes and sockets hold more bytes than one checkpoint keeps"));
        }
        data[*used..*used + frame.len()].copy_from_slice(frame);
        self.list[self.n] = Drain { send: -1, recv: -1, recv_ino: ino, at: *used, len: frame.len() - s::FRAME_HEADER, peek_off: -1 };
        self.n += 1;
        *used += frame.len();
        Ok(())
    }

    /// Whether no more connections can be drained.
    pub fn full(&self) -> bool {
        self.n == MAX_DRAINS
    }

    /// The drained connections: receiving socket's inode, and its frame in the data area.
    pub fn each(&self) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
        self.list[..self.n].iter().map(|d| (d.recv_ino, d.at, s::FRAME_HEADER + d.len))
    }

    /// Drains the connection from `send` to `recv` (see the module comment), when it can be.
    pub fn drain(&mut self, send: i32, recv: i32, rec: &SocketRecord, data: &mut [u8], used: &mut usize) -> Result<(), Failure> {
        // SAFETY: an open descriptor of this process (just listed), borrowed only here.
        let rx = unsafe { BorrowedFd::borrow_raw(recv) };
        if !matches!(ckpt_sigsafe::sockets::tcp_state(send), Some(ESTABLISHED | CLOSE_WAIT)) {
            return Ok(());
        }
        let queued = sys::bytes_to_read(recv).unwrap_or(0) as usize;
        let most = queued + sys::bytes_in_send_queue(send).unwrap_or(0) as usize;
        let body = *used + s::FRAME_HEADER;
        if body + most > data.len() {
            return Ok(());
        }
        // A peek stops at an urgent mark: urgent data pending, the queue is left as it is.
        let peeked = rustix::io::retry_on_intr(|| rustix::net::recv(rx, &mut data[body..body + queued], RecvFlags::PEEK | RecvFlags::DONTWAIT)).map_or(0, |(got, _)| got);
        if peeked < queued {
            return Ok(());
        }
        let peek_off = sys::getsockopt_int(recv, n::SOL_SOCKET, n::SO_PEEK_OFF).unwrap_or(-1);
        let recv_ino = rustix::fs::fstat(rx).map(|st| st.st_ino).unwrap_or(0);
        let mut got = 0usize;
        let started = super::procfs::monotonic_ns();
        let outcome = loop {
            match rustix::net::recv(rx, &mut data[body + got..body + most], RecvFlags::DONTWAIT) {
                Ok((k, _)) if k > 0 => {
                    got += k;
                    continue;
                }
                Ok(_) | Err(Errno::AGAIN) => {}
                Err(Errno::INTR) => continue,
                Err(e) => break Err(Failure::new("draining a TCP connection of the program", e)),
            }
            if sys::bytes_in_send_queue(send).unwrap_or(1) == 0 && sys::bytes_to_read(recv).unwrap_or(1) == 0 {
                break Ok(());
            }
            // Every byte may be in while the last acknowledgement is still to come: waited for.
            if super::procfs::monotonic_ns() - started > WAIT_NS {
                say!(
                    "ckpt: the TCP connection from {} to {} did not give up its bytes within {} s: the checkpoint fails; the {got} bytes read from it are written back behind those it still holds",
                    Addr(rec.addr()),
                    Addr(rec.peer()),
                    WAIT_NS / 1_000_000_000
                );
                break Err(Failure::silent());
            }
            wait(rx, PollFlags::IN, 10);
        };
        if got > 0 || outcome.is_ok() {
            data[*used..body].copy_from_slice(&s::frame_header(got as u32));
            self.list[self.n] = Drain { send, recv, recv_ino, at: *used, len: got, peek_off };
            self.n += 1;
            *used = body + got;
        }
        outcome
    }

    /// Where the drained stream of the receiving socket `ino` is: its frame's offset in the
    /// data area and the frame's length (header included).
    pub fn received(&self, ino: u64) -> Option<(u64, u64)> {
        self.list[..self.n].iter().find(|d| d.recv_ino == ino).map(|d| (d.at as u64, (s::FRAME_HEADER + d.len) as u64))
    }

    /// Writes every drained stream back through its sender, as it was (see the module
    /// comment), and sets each receiver's peek offset back.
    pub fn refill(&mut self, data: &[u8]) {
        for d in self.list[..self.n].iter().filter(|d| d.send >= 0) {
            // SAFETY: the sender is the program's open descriptor (or the tree root's copy of
            // it), still open (its threads are stopped); borrowed only here.
            let tx = unsafe { BorrowedFd::borrow_raw(d.send) };
            let bytes = &data[d.at + s::FRAME_HEADER..d.at + s::FRAME_HEADER + d.len];
            // A limit on bytes not yet sent would stop the refill short: lifted meanwhile.
            let lowat = sys::getsockopt_int(d.send, n::SOL_TCP, n::TCP_NOTSENT_LOWAT).ok();
            if lowat.is_some() {
                let _ = sys::setsockopt_int(d.send, n::SOL_TCP, n::TCP_NOTSENT_LOWAT, -1);
            }
            let sent = send_all(tx, bytes);
            if let Some(l) = lowat {
                let _ = sys::setsockopt_int(d.send, n::SOL_TCP, n::TCP_NOTSENT_LOWAT, l);
            }
            if sent < bytes.len() {
                say!("ckpt: fd {}: {} bytes of its TCP connection could not be queued again after the checkpoint read them; the program's stream misses them", d.send, bytes.len() - sent);
            }
            if d.peek_off >= 0 {
                let _ = sys::setsockopt_int(d.recv, n::SOL_SOCKET, n::SO_PEEK_OFF, d.peek_off);
            }
        }
        self.n = 0;
    }
}

/// Sends `bytes` through `tx`, waiting for room (the receiver's window, then its own send
/// queue), at most [`WAIT_NS`]; returns how many went.
fn send_all(tx: BorrowedFd, bytes: &[u8]) -> usize {
    let started = super::procfs::monotonic_ns();
    let mut sent = 0;
    while sent < bytes.len() {
        match rustix::net::send(tx, &bytes[sent..], SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(k) => sent += k,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if super::procfs::monotonic_ns() - started < WAIT_NS => wait(tx, PollFlags::OUT, 10),
            Err(_) => break,
        }
    }
    sent
}

/// Waits until `fd` is ready for `what`, at most `ms`.
fn wait(fd: BorrowedFd, what: PollFlags, ms: i64) {
    let mut fds = [PollFd::new(&fd, what)];
    let t = Timespec { tv_sec: 0, tv_nsec: ms * 1_000_000 };
    let _ = poll(&mut fds, Some(&t));
}

/// The addresses of `sock` when it is a connected TCP socket (family, addresses).
pub fn tcp_ends(sock: BorrowedFd) -> Option<SocketRecord> {
    let st = rustix::fs::fstat(sock).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return None;
    }
    let rec = super::sockets::addresses(sock);
    let inet = matches!(rec.family as u32, n::AF_INET | n::AF_INET6);
    let tcp = rustix::net::sockopt::socket_protocol(sock).ok().flatten().is_some_and(|p| p.as_raw().get() == n::IPPROTO_TCP as u32);
    (inet && tcp && super::tcp::is_connection(&rec)).then_some(rec)
}

/// The lowest descriptor of this process holding the far end of connection `rec` (its own
/// address `rec`'s peer, its peer `rec`'s own).
fn far_end(rec: &SocketRecord) -> Option<i32> {
    super::procfs::find_own_fd(|fd| {
        // SAFETY: as in `drain_all`: listed, open, borrowed for these calls only.
        let sock = unsafe { BorrowedFd::borrow_raw(fd) };
        tcp_ends(sock).is_some_and(|o| o.addr() == rec.peer() && o.peer() == rec.addr()).then_some(fd)
    })
    .ok()
    .flatten()
}
