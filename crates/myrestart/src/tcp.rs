//! TCP connections whose two ends are both in the image (two processes of a tree, or one
//! process talking to itself), before the point of no return: made again connected, with the
//! same addresses at both ends, and the bytes that were queued each way.
//!
//! The two ends are found by their addresses: one end's own address is the other's peer
//! address and the other way round. The connection is made on loopback as the program made it:
//! a listener of our own, for a moment, on the first end's exact address (`SO_REUSEADDR`, so
//! that a connection of the dead process lingering there does not stand in the way); the
//! second end bound to its exact address and connected to it; the accepted socket is the first
//! end. This happens before any of the image's listening sockets is bound again. An address
//! taken by now (another program listens there, or holds the same pair of addresses) refuses
//! the restart, naming the connection.
//!
//! Each end then gets back what it had to read, written through the other end: its saved
//! receive queue, then the bytes the other end had not sent yet. Shutdown states are applied
//! once every descriptor of the process is made (`sockets::finish`); options and flags as for
//! any socket (`sockets::pair_end`).
//!
//! A connection with bytes the checkpoint could not read (`TCP_BYTES_LOST`: unsent bytes
//! without `CAP_NET_ADMIN`, urgent data) is not made here: both ends come back reset, named,
//! as a connection to outside does.
//!
//! # Restrictions
//! Before the point of no return: no allocation, raw system calls (`rustix`); a failure is a
//! refusal (`refusal.rs`), with nothing outside changed.

use crate::fds::{park, Parked};
use crate::plan::{PairSlot, Plan};
use crate::refusal::{refuse, Refusal};
use ckpt_image::fds::FdRecord;
use ckpt_image::sockets::{self as s, SocketRecord};
use ckpt_image::Image;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::say;
use ckpt_sigsafe::sockets::Addr;
use core::ffi::CStr;
use linux_raw_sys::net as n;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::sockopt;

/// How long making a connection, or putting its bytes back, may wait on the kernel.
const WAIT_MS: i32 = 5000;

/// Whether `rec` is a connected TCP socket.
pub fn is_connection(rec: &SocketRecord) -> bool {
    rec.family as u32 != n::AF_UNIX && rec.sock_type as u32 == n::SOCK_STREAM && rec.state & s::CONNECTED != 0
}

/// The connected TCP sockets of `image`.
pub fn connections<'i>(image: &'i Image<'i>) -> impl Iterator<Item = SocketRecord> + 'i {
    image.sockets().filter_map(Result::ok).filter(is_connection)
}

/// The port of a socket address (internet families: bytes 2 and 3, big-endian).
fn port(addr: &[u8]) -> u16 {
    addr.get(2..4).map_or(0, |p| u16::from_be_bytes([p[0], p[1]]))
}

/// The local ports of the connections of an image (or of every part of a tree), so that the
/// search for a connection's far end is made only where one may be: a server with thousands
/// of clients outside has none of their ports among its own.
pub struct Ports([u64; 1024]);

impl Ports {
    pub const NONE: Ports = Ports([0; 1024]);

    pub fn note(&mut self, image: &Image) {
        for rec in connections(image) {
            let p = port(rec.addr()) as usize;
            self.0[p / 64] |= 1 << (p % 64);
        }
    }

    /// Whether the far end of `rec` may be among the connections noted.
    pub fn may_have_peer(&self, rec: &SocketRecord) -> bool {
        let p = port(rec.peer()) as usize;
        self.0[p / 64] & (1 << (p % 64)) != 0
    }
}

/// The descriptor record of socket `rec` in `image`.
pub fn fd_record(image: &Image, rec: &SocketRecord) -> Option<FdRecord> {
    image.fds().filter_map(Result::ok).find(|(f, _)| f.fd == rec.fd && f.same_as < 0).map(|(f, _)| f)
}

/// The far end of connection `rec` in `image`, if it is there, with its descriptor record.
pub fn far_end(image: &Image, rec: &SocketRecord) -> Option<(SocketRecord, FdRecord)> {
    let far = connections(image).find(|o| o.ino != rec.ino && o.addr() == rec.peer() && o.peer() == rec.addr())?;
    Some((far, fd_record(image, &far)?))
}

/// Whether the socket `ino` is already made (as an end of a connection or pair).
pub fn made(p: &Plan, ino: u64) -> bool {
    p.pairs[..p.npairs].iter().any(|slot| slot.ino.contains(&ino))
}

/// A single process: every connection whose two ends it has.
pub fn pool_own(image_path: &CStr, image: &Image, p: &mut Plan) -> Result<(), Refusal> {
    let mut ports = Ports::NONE;
    ports.note(image);
    for rec in connections(image) {
        if made(p, rec.ino) || !ports.may_have_peer(&rec) {
            continue;
        }
        if let (Some((far, far_fd)), Some(fdrec)) = (far_end(image, &rec), fd_record(image, &rec)) {
            connect_ends(image_path, (&rec, &fdrec), (&far, &far_fd), p)?;
        }
    }
    Ok(())
}

/// Makes the connection between the ends `a` and `b` (each a socket record and its descriptor
/// record), parks both, puts their bytes back, and adds it to the plan's pairs (made for every
/// process that has an end: `pooled`).
pub fn connect_ends(image_path: &CStr, a: (&SocketRecord, &FdRecord), b: (&SocketRecord, &FdRecord), p: &mut Plan) -> Result<(), Refusal> {
    let (ra, fa) = a;
    let (rb, fb) = b;
    let fail = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (TCP connection {} to {}): {what}: {}", ra.fd, Addr(ra.addr()), Addr(ra.peer()), describe(e)));
    if (fa.aux | fb.aux) & s::TCP_BYTES_LOST != 0 {
        say!("myrestart: fd {} (TCP connection {} to {}): bytes of it were not saved; both ends come back reset", ra.fd, Addr(ra.addr()), Addr(ra.peer()));
        return Ok(());
    }
    if !whole(fa) || !whole(fb) {
        return Err(refuse(image_path, format_args!("fd {} (TCP connection {} to {}): its saved bytes do not add up", ra.fd, Addr(ra.addr()), Addr(ra.peer()))));
    }
    if p.npairs == p.pairs.len() {
        return Err(refuse(image_path, format_args!("more than {} socket pairs and connections", p.pairs.len())));
    }
    let (into_a, into_b) = (incoming(fa, fb), incoming(fb, fa));
    let (sa, sb) = connect(ra, rb, into_a, into_b).map_err(|(what, e)| fail(what, e))?;
    // What each end reads first: its own queue, then what the other had not sent.
    put_back(sb.as_fd(), fa, fb, p.image_fd).map_err(|e| fail("putting back the bytes queued for it", e))?;
    put_back(sa.as_fd(), fb, fa, p.image_fd).map_err(|e| fail("putting back the bytes queued for its peer", e))?;
    let pa = park(sa, p.fd_base).map_err(|e| fail("parking it", e))?;
    let pb = park(sb, p.fd_base).map_err(|e| fail("parking it", e))?;
    p.pairs[p.npairs] = PairSlot { ino: [ra.ino, rb.ino], fd: [pa, pb], pooled: true };
    p.npairs += 1;
    Ok(())
}

/// Whether a connection end's blob is its queue and then exactly its unsent bytes, as one frame.
fn whole(f: &FdRecord) -> bool {
    let (queued, unsent) = s::tcp_blob_parts(f.blob_len, f.aux);
    unsent == 0 || queued + s::FRAME_HEADER as u64 + unsent == f.blob_len
}

/// The bytes end `to` (descriptor record) is to read again: its queue and what `from` had not
/// sent.
fn incoming(to: &FdRecord, from: &FdRecord) -> u64 {
    let (queued, _) = s::tcp_blob_parts(to.blob_len, to.aux);
    let (_, unsent) = s::tcp_blob_parts(from.blob_len, from.aux);
    queued + unsent
}

fn new_socket(rec: &SocketRecord) -> Result<OwnedFd, Errno> {
    let proto = core::num::NonZeroU32::new(rec.protocol).map(rustix::net::Protocol::from_raw);
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::from_raw(rec.family),
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        proto,
    )?;
    if rec.family as u32 == n::AF_INET6 {
        let _ = sockopt::set_ipv6_v6only(&sock, rec.options & s::OPT_V6ONLY != 0);
    }
    sockopt::set_socket_reuseaddr(&sock, true)?;
    Ok(sock)
}

/// Room for `bytes` to wait in a socket's receive queue: asked for before the connection is
/// made (its window scale depends on it), only when more than a fresh socket holds.
fn make_room(sock: BorrowedFd, bytes: u64) {
    const FRESH: u64 = 64 * 1024;
    if bytes > FRESH {
        let want = (bytes.saturating_mul(2)).min(i32::MAX as u64) as i32;
        if ckpt_sigsafe::sys::setsockopt_int(sock.as_raw_fd(), n::SOL_SOCKET, n::SO_RCVBUFFORCE, want).is_err() {
            let _ = sockopt::set_socket_recv_buffer_size(sock, want as usize);
        }
    }
}

/// Both ends connected, `a` at its own address, accepted from a listener of ours there, `b`
/// bound to its own address and connected to `a`'s.
fn connect(ra: &SocketRecord, rb: &SocketRecord, into_a: u64, into_b: u64) -> Result<(OwnedFd, OwnedFd), (&'static str, Errno)> {
    let addr_a = crate::sockets::sockaddr(ra.addr());
    let listener = new_socket(ra).map_err(|e| ("making it", e))?;
    make_room(listener.as_fd(), into_a);
    bind_exact(listener.as_fd(), &addr_a, true).map_err(|e| ("binding a listener to its address", e))?;
    let sb = new_socket(rb).map_err(|e| ("making its peer", e))?;
    make_room(sb.as_fd(), into_b);
    bind_exact(sb.as_fd(), &crate::sockets::sockaddr(rb.addr()), false).map_err(|e| ("binding its peer to its address", e))?;
    match rustix::net::connect(&sb, &addr_a) {
        Ok(()) | Err(Errno::INPROGRESS) => {}
        Err(e) => return Err(("connecting", e)),
    }
    wait(listener.as_fd(), PollFlags::IN).map_err(|e| ("connecting", e))?;
    let sa = rustix::net::accept_with(&listener, rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK).map_err(|e| ("accepting", e))?;
    // Accepted from a listener in repair mode, it is in repair mode too: out of it, as any
    // connection (no window probe: nothing was held back), and reusable again.
    if ckpt_sigsafe::sys::getsockopt_int(sa.as_raw_fd(), n::SOL_TCP, n::TCP_REPAIR).unwrap_or(0) != 0 {
        ckpt_sigsafe::sys::setsockopt_int(sa.as_raw_fd(), n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_OFF_NO_WP).map_err(|e| ("accepting", e))?;
        let _ = sockopt::set_socket_reuseaddr(&sa, true);
    }
    wait(sb.as_fd(), PollFlags::OUT).map_err(|e| ("connecting", e))?;
    if let Some(e) = sockopt::socket_error(&sb).map_err(|e| ("connecting", e))?.err() {
        return Err(("connecting", e));
    }
    Ok((sa, sb))
}

/// Binds `sock` (with `SO_REUSEADDR`) to `addr`, and makes it listen with `listen`. An address
/// that a connection of the dead program still holds (`TIME_WAIT` of a socket without
/// `SO_REUSEADDR`) is taken in repair mode (`TCP_REPAIR`, which lets a bind reuse any address;
/// `CAP_NET_ADMIN` only), unless a process listens there now. A listener stays in repair mode
/// (the kernel does not let one leave it); it is ours, closed once its connection is accepted.
/// The connection made to or from the address then takes the place of the one that lingered.
fn bind_exact(sock: BorrowedFd, addr: &rustix::net::SocketAddrAny, listen: bool) -> Result<(), Errno> {
    let plain = rustix::net::bind(sock, addr);
    if plain != Err(Errno::ADDRINUSE) {
        plain?;
        return if listen { rustix::net::listen(sock, 1) } else { Ok(()) };
    }
    if listening_now(addr) {
        return Err(Errno::ADDRINUSE);
    }
    let fd = sock.as_raw_fd();
    ckpt_sigsafe::sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_ON as i32).map_err(|_| Errno::ADDRINUSE)?;
    rustix::net::bind(sock, addr)?;
    if listen {
        return rustix::net::listen(sock, 1);
    }
    ckpt_sigsafe::sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_OFF as i32)?;
    sockopt::set_socket_reuseaddr(sock, true)
}

/// Whether a process listens on `addr` now (a connection to it is answered).
fn listening_now(addr: &rustix::net::SocketAddrAny) -> bool {
    let flags = rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK;
    let Ok(probe) = rustix::net::socket_with(addr.address_family(), rustix::net::SocketType::STREAM, flags, None) else { return true };
    match rustix::net::connect(&probe, addr) {
        Err(Errno::CONNREFUSED) => false,
        Err(Errno::INPROGRESS) => wait(probe.as_fd(), PollFlags::OUT).is_ok() && sockopt::socket_error(&probe).is_ok_and(|r| r.is_ok()),
        _ => true,
    }
}

/// Waits until `fd` is ready for `what`, at most [`WAIT_MS`].
fn wait(fd: BorrowedFd, what: PollFlags) -> Result<(), Errno> {
    let mut fds = [PollFd::new(&fd, what)];
    let ms = rustix::time::Timespec { tv_sec: (WAIT_MS / 1000) as i64, tv_nsec: 0 };
    match rustix::io::retry_on_intr(|| poll(&mut fds, Some(&ms)))? {
        0 => Err(Errno::TIMEDOUT),
        _ => Ok(()),
    }
}

/// Sends through `through` what its peer is to read: the receive queue of `to` (descriptor
/// record), then the bytes `from` (the sender, whose end `through` is) had not sent.
fn put_back(through: BorrowedFd, to: &FdRecord, from: &FdRecord, image_fd: Parked) -> Result<(), Errno> {
    let (queued, _) = s::tcp_blob_parts(to.blob_len, to.aux);
    let (from_queued, unsent) = s::tcp_blob_parts(from.blob_len, from.aux);
    let total = queued + unsent;
    // Room in the send queue too, for what does not fit in the peer's at once (asked for only
    // when more than a fresh socket holds: it fixes the size for good).
    let have = sockopt::socket_send_buffer_size(through).unwrap_or(0) as u64;
    if total > 16 * 1024 && total.saturating_mul(2) > have {
        let want = (total.saturating_mul(2)).min(i32::MAX as u64) as i32;
        if ckpt_sigsafe::sys::setsockopt_int(through.as_raw_fd(), n::SOL_SOCKET, n::SO_SNDBUFFORCE, want).is_err() {
            let _ = sockopt::set_socket_send_buffer_size(through, want as usize);
        }
    }
    let mut lost = crate::sockets::refill_span(through, image_fd, to.blob_offset, to.blob_offset + queued, true, Some(WAIT_MS))?;
    if unsent > 0 {
        let at = from.blob_offset + from_queued;
        lost += crate::sockets::refill_span(through, image_fd, at, at + s::FRAME_HEADER as u64 + unsent, true, Some(WAIT_MS))?;
    }
    // Bytes that do not fit would be lost, and the stream broken: refused.
    if lost > 0 { Err(Errno::NOBUFS) } else { Ok(()) }
}
