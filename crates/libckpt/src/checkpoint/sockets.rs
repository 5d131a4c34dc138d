//! Records a socket: family, type, addresses, the options that matter, its `AF_UNIX` peer, and
//! the bytes queued for it to read (peeked, so the program still finds them). Signal-safe like
//! the rest of `checkpoint`.

use super::failure::Failure;
use ckpt_image::sockets::{self as s, SocketRecord};
use ckpt_sigsafe::say;
use ckpt_sigsafe::sockets::{unix_diag, Addr};
use ckpt_sigsafe::sys;
use linux_raw_sys::net as n;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{sockopt, RecvFlags};

/// The sockets a restart can bring back.
fn supported(family: u32, ty: u32) -> bool {
    matches!(family, n::AF_UNIX | n::AF_INET | n::AF_INET6) && matches!(ty, n::SOCK_STREAM | n::SOCK_DGRAM | n::SOCK_SEQPACKET)
}

/// Copies `addr` into a record field.
fn put(dst: &mut [u8; s::ADDR_MAX], len: &mut u32, addr: &rustix::net::SocketAddrAny) {
    let n = (addr.addr_len() as usize).min(s::ADDR_MAX);
    // SAFETY: a SocketAddrAny holds at least `addr_len` initialised bytes at `as_ptr`.
    let bytes = unsafe { core::slice::from_raw_parts(addr.as_ptr() as *const u8, n) };
    dst[..n].copy_from_slice(bytes);
    *len = n as u32;
}

/// The family, type and addresses of `sock`, with [`s::CONNECTED`] when it has a peer.
pub fn addresses(sock: BorrowedFd) -> SocketRecord {
    let family = sockopt::socket_domain(sock).map(|d| d.as_raw()).unwrap_or(0);
    let ty = sockopt::socket_type(sock).map(|t| t.as_raw() as u16).unwrap_or(0);
    let mut rec = SocketRecord { family, sock_type: ty, ..SocketRecord::ZERO };
    if let Ok(a) = rustix::net::getsockname(sock) {
        put(&mut rec.addr, &mut rec.addr_len, &a);
    }
    if let Ok(Some(a)) = rustix::net::getpeername(sock) {
        put(&mut rec.peer, &mut rec.peer_len, &a);
        rec.state |= s::CONNECTED;
    }
    rec
}

/// What a socket was, or `Err(reason)` for a socket no restart can make again.
pub fn describe(fd: i32, sock: BorrowedFd, ino: u64, diag: &Option<OwnedFd>, buf: &mut [u8]) -> Result<SocketRecord, &'static str> {
    let family = sockopt::socket_domain(sock).map(|d| d.as_raw() as u32).unwrap_or(0);
    let ty = sockopt::socket_type(sock).map(|t| t.as_raw()).unwrap_or(0);
    if !supported(family, ty) {
        return Err(match family {
            n::AF_NETLINK => "netlink sockets are not supported",
            n::AF_PACKET => "packet sockets are not supported",
            _ => "this kind of socket is not supported",
        });
    }
    let mut rec = SocketRecord { fd, family: family as u16, sock_type: ty as u16, ino, ..SocketRecord::ZERO };
    rec.protocol = sockopt::socket_protocol(sock).ok().flatten().map_or(0, |p| p.as_raw().get());
    if let Ok(a) = rustix::net::getsockname(sock) {
        put(&mut rec.addr, &mut rec.addr_len, &a);
    }
    let bound = match family {
        n::AF_UNIX => rec.addr_len > 2,
        // A port other than 0.
        _ => rec.addr_len >= 4 && rec.addr[2..4] != [0, 0],
    };
    if bound {
        rec.state |= s::BOUND;
    }
    if let Ok(Some(a)) = rustix::net::getpeername(sock) {
        put(&mut rec.peer, &mut rec.peer_len, &a);
        rec.state |= s::CONNECTED;
    }
    if super::tcp::is_connection(&rec) {
        rec.shutdown = super::tcp::shutdown_state(fd);
    }
    if sockopt::socket_acceptconn(sock).unwrap_or(false) {
        rec.state |= s::LISTENING;
    }
    let opts = [
        (sockopt::socket_reuseaddr(sock), s::OPT_REUSEADDR),
        (sockopt::socket_reuseport(sock), s::OPT_REUSEPORT),
        (sockopt::socket_keepalive(sock), s::OPT_KEEPALIVE),
        (sockopt::socket_broadcast(sock), s::OPT_BROADCAST),
        (sockopt::socket_oobinline(sock), s::OPT_OOBINLINE),
        (if family == n::AF_UNIX { sockopt::socket_passcred(sock) } else { Ok(false) }, s::OPT_PASSCRED),
        (if family == n::AF_INET6 { sockopt::ipv6_v6only(sock) } else { Ok(false) }, s::OPT_V6ONLY),
        (if family != n::AF_UNIX && ty == n::SOCK_STREAM { sockopt::tcp_nodelay(sock) } else { Ok(false) }, s::OPT_NODELAY),
    ];
    for (on, bit) in opts {
        if on.unwrap_or(false) {
            rec.options |= bit;
        }
    }
    rec.sndbuf = sockopt::socket_send_buffer_size(sock).unwrap_or(0) as u32;
    rec.rcvbuf = sockopt::socket_recv_buffer_size(sock).unwrap_or(0) as u32;
    if family == n::AF_UNIX {
        if let Some(d) = diag.as_ref() {
            if let Ok(info) = unix_diag(d.as_fd(), ino, buf) {
                rec.peer_ino = info.peer_ino;
                rec.shutdown = info.shutdown;
                if rec.state & s::LISTENING != 0 {
                    rec.backlog = info.wqueue;
                    if info.rqueue > 0 {
                        say!("ckpt: fd {fd} (listening on {}): {} connections not yet accepted will be lost by a restart", Addr(rec.addr()), info.rqueue);
                    }
                }
            }
        }
        // A connected socket whose peer is gone looks unconnected to getpeername, but diag
        // still names a peer inode: keep it, so a restart can tell the two apart.
    } else if rec.state & s::LISTENING != 0 && ty == n::SOCK_STREAM {
        if let Some((waiting, backlog)) = ckpt_sigsafe::sockets::tcp_listen_queue(fd) {
            rec.backlog = backlog;
            if waiting > 0 {
                say!("ckpt: fd {fd} (listening on {}): {waiting} connections not yet accepted will be lost by a restart", Addr(rec.addr()));
            }
        }
    }
    Ok(rec)
}

/// Copies the bytes queued for `sock` to read into `data` at `*used`, as frames, without
/// taking them (`MSG_PEEK` at a moving peek offset, which is set back as it was). Returns
/// where the frames are and how many bytes they take.
pub fn copy_queue(sock: BorrowedFd, rec: &SocketRecord, data: &mut [u8], used: &mut usize) -> Result<(u64, u64, bool), Failure> {
    let mut passed = false;
    let (at, len) = copy_queue_frames(sock, rec, data, used, &mut passed)?;
    if passed {
        say!("ckpt: fd {}: descriptors passed in messages still queued on it are not saved; a restarted process will not get them", rec.fd);
    }
    Ok((at, len, passed))
}

fn copy_queue_frames(sock: BorrowedFd, rec: &SocketRecord, data: &mut [u8], used: &mut usize, passed_fds: &mut bool) -> Result<(u64, u64), Failure> {
    if rec.family as u32 != n::AF_UNIX || rec.state & s::LISTENING != 0 {
        return Ok((0, 0));
    }
    let fd = rustix::fd::AsRawFd::as_raw_fd(&sock);
    let old = sys::getsockopt_int(fd, n::SOL_SOCKET, n::SO_PEEK_OFF).unwrap_or(-1);
    sys::setsockopt_int(fd, n::SOL_SOCKET, n::SO_PEEK_OFF, 0).map_err(|e| Failure::new("copying the bytes queued on a socket", e))?;
    let start = *used;
    let result = (|| {
        loop {
            let at = *used + s::FRAME_HEADER;
            if at >= data.len() {
                return Err(Failure::plain("the program's pipes and sockets hold more bytes than one checkpoint keeps"));
            }
            let room = &mut data[at..];
            let room_len = room.len();
            // No room for control data: descriptors passed with a message are never installed
            // here; the kernel only says they were there (MSG_CTRUNC).
            let mut iov = [rustix::io::IoSliceMut::new(room)];
            let mut control = rustix::net::RecvAncillaryBuffer::default();
            let got = rustix::io::retry_on_intr(|| rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::PEEK | RecvFlags::DONTWAIT | RecvFlags::TRUNC))
                .map(|m| {
                    if m.flags.contains(rustix::net::ReturnFlags::CTRUNC) && rec.options & s::OPT_PASSCRED == 0 {
                        *passed_fds = true;
                    }
                    m.bytes
                });
            match got {
                Ok(0) => return Ok(()),
                Ok(got) if got > room_len => {
                    return Err(Failure::plain("the program's pipes and sockets hold more bytes than one checkpoint keeps"))
                }
                Ok(got) => {
                    data[*used..at].copy_from_slice(&s::frame_header(got as u32));
                    *used = at + got;
                }
                Err(Errno::AGAIN) => return Ok(()),
                Err(e) => return Err(Failure::new("copying the bytes queued on a socket", e)),
            }
        }
    })();
    let _ = sys::setsockopt_int(fd, n::SOL_SOCKET, n::SO_PEEK_OFF, old);
    result?;
    Ok((start as u64, (*used - start) as u64))
}

/// Bytes queued for a UDP socket to read, which the image does not keep (named on stderr).
pub fn unsaved_bytes(fd: i32, rec: &SocketRecord) -> u64 {
    if rec.family as u32 == n::AF_UNIX || rec.sock_type as u32 != n::SOCK_DGRAM {
        return 0;
    }
    let queued = sys::bytes_to_read(fd).unwrap_or(0);
    if queued > 0 {
        say!("ckpt: fd {fd} (UDP socket on {}): the datagrams queued for it are not saved; a restarted process will not get them", Addr(rec.addr()));
    }
    queued as u64
}

/// Names on stderr what a restart will not give back of a socket whose peer is not in the
/// process, now that every descriptor is known; marks those whose peer is. In a tree (`tree`),
/// a unix socket's peer may be in another process of it: the restart judges that.
pub fn pair_up(desc: &mut [u8], tree: bool, scratch: &mut [u8]) {
    let count = desc.len() / s::SOCKET_RECORD_SIZE;
    // The local ports of the process's TCP connections, one bit each (when `scratch` holds
    // them all): the far end of a connection is looked for only where its peer's port is one
    // of them, so that a server with thousands of clients outside pays nothing.
    let ports = (!tree && scratch.len() >= 8192).then(|| {
        let bits = &mut scratch[..8192];
        bits.fill(0);
        for r in s::records(desc).filter_map(Result::ok).filter(super::tcp::is_connection) {
            let p = port(r.addr());
            bits[p / 8] |= 1 << (p % 8);
        }
        &*bits
    });
    for i in 0..count {
        let at = i * s::SOCKET_RECORD_SIZE;
        let Ok(mut rec) = SocketRecord::read(&mut ckpt_image::bytes::Reader::new(&desc[at..])) else { continue };
        // A pair is two sockets each the other's peer (a datagram socket connected to a bound
        // one that is connected elsewhere, or to none, is not half of a pair).
        let inside = rec.peer_ino != 0 && s::records(desc).filter_map(Result::ok).any(|o| o.ino == rec.peer_ino && o.peer_ino == rec.ino);
        if inside {
            rec.state |= s::PAIRED;
            rec.write(&mut ckpt_image::bytes::Writer::new(&mut desc[at..at + s::SOCKET_RECORD_SIZE]));
            continue;
        }
        // Connected to a socket of the process that is not connected back (a datagram socket
        // sending to a bound one): connected to its address again at restart, nothing to say.
        if rec.peer_ino != 0 && s::records(desc).filter_map(Result::ok).any(|o| o.ino == rec.peer_ino) {
            continue;
        }
        // A TCP connection to another socket of the process (its addresses the other's, the
        // other way round) comes back connected; in a tree, its far end may be in another
        // process: the restart judges that too.
        let may_be_inside = |rec: &SocketRecord| ports.is_none_or(|bits| bits[port(rec.peer()) / 8] & (1 << (port(rec.peer()) % 8)) != 0);
        if super::tcp::is_connection(&rec) && (tree || (may_be_inside(&rec) && tcp_peer_inside(desc, &rec))) {
            continue;
        }
        if !(tree && rec.family as u32 == linux_raw_sys::net::AF_UNIX && rec.peer_ino != 0) {
            warn_outside(&rec);
        }
    }
}

/// The port of an internet socket address (bytes 2 and 3, big-endian).
fn port(addr: &[u8]) -> usize {
    addr.get(2..4).map_or(0, |p| u16::from_be_bytes([p[0], p[1]]) as usize)
}

/// Whether the TCP connection `rec` has its far end among the records `desc`.
fn tcp_peer_inside(desc: &[u8], rec: &SocketRecord) -> bool {
    s::records(desc).filter_map(Result::ok).any(|o| o.ino != rec.ino && super::tcp::is_connection(&o) && o.addr() == rec.peer() && o.peer() == rec.addr())
}

/// One line for a socket connected to something outside the process.
fn warn_outside(rec: &SocketRecord) {
    let fd = rec.fd;
    let stream = rec.sock_type as u32 != n::SOCK_DGRAM;
    let connected = rec.state & s::CONNECTED != 0 || (rec.family as u32 == n::AF_UNIX && rec.peer_ino != 0);
    if rec.state & s::LISTENING != 0 {
        return;
    }
    if !connected {
        if rec.family as u32 != n::AF_UNIX && stream && rec.state & s::BOUND != 0 {
            say!("ckpt: fd {fd} (TCP socket on {}, its connection over or not yet made) comes back as a reset connection", Addr(rec.addr()));
        }
        return;
    }
    let what = match rec.family as u32 {
        n::AF_UNIX => "unix socket",
        _ if stream => "TCP connection",
        _ => "UDP socket",
    };
    if stream {
        say!("ckpt: fd {fd} ({what} to {}) leads outside the process; a restarted process gets it back reset (ECONNRESET)", Addr(rec.peer()));
    } else {
        say!("ckpt: fd {fd} ({what} to {}) leads outside the process; a restart connects it to that address again", Addr(rec.peer()));
    }
}
