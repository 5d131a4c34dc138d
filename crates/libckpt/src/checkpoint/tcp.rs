//! The queues of a connected TCP socket, for a restart that makes its connection again when
//! its far end is in the image too (another process of the tree, or this one):
//!
//! - the bytes queued for it to read, peeked (`MSG_PEEK`): the program still finds them;
//! - the bytes it holds that it has not sent yet (`SIOCOUTQNSD`). On loopback these exist only
//!   while the far end's receive window is full. Their content is read from the send queue in
//!   repair mode (`TCP_REPAIR`, then `TCP_REPAIR_QUEUE` = send queue and a peek), which the
//!   kernel allows with `CAP_NET_ADMIN` only; without it they are named, and marked
//!   (`TCP_BYTES_LOST`) so that a restart brings that connection back reset rather than short
//!   of bytes. Bytes sent and not
//!   yet acknowledged are already in the far end's receive queue (loopback delivers at once),
//!   so they are not taken again;
//! - whether it had sent its end of stream (`shutdown(SHUT_WR)`, `close` of a duplicate): its
//!   TCP state says so.
//!
//! The one change to the live program: its connected TCP sockets get `SO_REUSEADDR`, so that
//! what lingers of them once it is killed (`TIME_WAIT`) does not hold the addresses its
//! restart binds again (see `copy_queues`).
//!
//! The blob and `aux` layout is `ckpt_image::sockets`'s. Urgent data is not kept: a connection
//! with an urgent byte pending is named and marked like one whose unsent bytes are unknown.
//!
//! # Signal-safety fence
//! Runs in the checkpoint signal handler: raw system calls into caller-owned buffers; no
//! allocation, no locks, no libc.

use super::failure::Failure;
use ckpt_image::sockets::{self as s, SocketRecord};
use ckpt_sigsafe::sockets::Addr;
use ckpt_sigsafe::{say, sys};
use linux_raw_sys::net as n;
use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::Errno;
use rustix::net::RecvFlags;

/// TCP states (`include/net/tcp_states.h`) after which this end has sent its FIN.
const FIN_WAIT1: u8 = 4;
const FIN_WAIT2: u8 = 5;
const TIME_WAIT: u8 = 6;
const LAST_ACK: u8 = 9;
const CLOSING: u8 = 11;

const TOO_MUCH: &str = "the program's pipes and sockets hold more bytes than one checkpoint keeps";

/// Whether `rec` is a connected TCP socket.
pub fn is_connection(rec: &SocketRecord) -> bool {
    rec.family as u32 != n::AF_UNIX && rec.sock_type as u32 == n::SOCK_STREAM && rec.state & s::CONNECTED != 0
}

/// The `shutdown` bits of a connected TCP socket: [`s::SHUT_WRITE`] once it sent its FIN.
pub fn shutdown_state(fd: i32) -> u32 {
    match ckpt_sigsafe::sockets::tcp_state(fd) {
        Some(FIN_WAIT1 | FIN_WAIT2 | TIME_WAIT | LAST_ACK | CLOSING) => s::SHUT_WRITE,
        _ => 0,
    }
}

/// Copies the queues of connected TCP socket `sock` into `data` at `*used`: its receive queue
/// as one frame, then the bytes it has not sent as one more. Returns where they are, how many
/// bytes they take, and the record's `aux` (see the module comment).
///
/// `drained`: its receive queue was drained (`tcpdrain`) into the frame there (offset, length
/// with the header), which is then its blob.
pub fn copy_queues(sock: BorrowedFd, rec: &SocketRecord, data: &mut [u8], used: &mut usize, drained: Option<(u64, u64)>) -> Result<(u64, u64, u64), Failure> {
    let fd = sock.as_raw_fd();
    let start = *used;
    // Once the program is killed, the kernel may keep its connection's addresses a minute
    // (TIME_WAIT), and only a bind with SO_REUSEADDR to a socket that had it too gets past
    // that without privilege: so it has it from now on (it changes nothing for a connected
    // socket but which later binds to its port may share it; the record keeps it as it was).
    let _ = rustix::net::sockopt::set_socket_reuseaddr(sock, true);
    if let Some((at, len)) = drained {
        // Its own unsent bytes would need a frame right after that one: its far end is
        // elsewhere, or was not drained (named by `tcpdrain`).
        if sys::bytes_not_sent(fd).unwrap_or(0) > 0 || sys::bytes_to_read(fd).unwrap_or(0) > 0 {
            say!("ckpt: fd {fd} (TCP connection to {}): bytes queued each way could not all be read without CAP_NET_ADMIN; a restart brings it back reset", Addr(rec.peer()));
            return Ok((at, 0, s::TCP_BYTES_LOST));
        }
        return Ok((at, len, 0));
    }
    let waiting = sys::bytes_to_read(fd).unwrap_or(0) as usize;
    let unsent = sys::bytes_not_sent(fd).unwrap_or(0) as usize;
    if start + 2 * s::FRAME_HEADER + waiting + unsent > data.len() {
        // Kept, they would fail the checkpoint, which did not need them when the far end is
        // outside: named, and the connection marked instead.
        say!("ckpt: fd {fd} (TCP connection to {}): its {} queued bytes do not fit in this checkpoint; a restart brings it back reset", Addr(rec.peer()), waiting + unsent);
        return Ok((start as u64, 0, s::TCP_BYTES_LOST));
    }
    let mut aux = 0;
    if waiting > 0 {
        // A peek starts at the socket's peek offset when the program set one (`SO_PEEK_OFF`,
        // TCP since Linux 6.10), and moves it: from 0 here, and set back.
        let peek_off = sys::getsockopt_int(fd, n::SOL_SOCKET, n::SO_PEEK_OFF).unwrap_or(-1);
        if peek_off >= 0 {
            let _ = sys::setsockopt_int(fd, n::SOL_SOCKET, n::SO_PEEK_OFF, 0);
        }
        let got = peek_frame(sock, waiting, data, used, RecvFlags::empty());
        if peek_off >= 0 {
            let _ = sys::setsockopt_int(fd, n::SOL_SOCKET, n::SO_PEEK_OFF, peek_off);
        }
        if got? < waiting {
            // A peek stops at the urgent mark: what follows it is not kept.
            say!("ckpt: fd {fd} (TCP connection to {}) has urgent (out-of-band) data pending, which a checkpoint does not keep; a restart brings it back reset", Addr(rec.peer()));
            aux = s::TCP_BYTES_LOST;
        }
    }
    if unsent > 0 && aux == 0 {
        match copy_unsent(sock, unsent, data, used) {
            Ok(()) => aux = unsent as u64,
            Err(Some(f)) => return Err(f),
            Err(None) => {
                say!(
                    "ckpt: fd {fd} (TCP connection to {}): {unsent} bytes not yet sent cannot be read without CAP_NET_ADMIN; a restart brings it back reset",
                    Addr(rec.peer())
                );
                aux = s::TCP_BYTES_LOST;
            }
        }
    }
    Ok((start as u64, (*used - start) as u64, aux))
}

/// Peeks `want` bytes into one frame at `*used`; returns how many came.
fn peek_frame(sock: BorrowedFd, want: usize, data: &mut [u8], used: &mut usize, flags: RecvFlags) -> Result<usize, Failure> {
    let at = *used + s::FRAME_HEADER;
    if at + want > data.len() {
        return Err(Failure::plain(TOO_MUCH));
    }
    let room = &mut data[at..at + want];
    let got = rustix::io::retry_on_intr(|| rustix::net::recv(sock, &mut *room, flags | RecvFlags::PEEK | RecvFlags::DONTWAIT))
        .map(|(got, _)| got)
        .or_else(|e| if e == Errno::AGAIN { Ok(0) } else { Err(e) })
        .map_err(|e| Failure::new("copying the bytes queued on a TCP connection", e))?;
    data[*used..at].copy_from_slice(&s::frame_header(got as u32));
    *used = at + got;
    Ok(got)
}

/// Whether repair mode may be entered on connected TCP socket `sock` (`CAP_NET_ADMIN` in the
/// owner of its network namespace); tried, and left at once as it was.
pub fn repair_allowed(sock: BorrowedFd) -> bool {
    let fd = sock.as_raw_fd();
    let reuse = rustix::net::sockopt::socket_reuseaddr(sock).unwrap_or(false);
    if sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_ON as i32).is_err() {
        return false;
    }
    let _ = sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_OFF_NO_WP);
    let _ = rustix::net::sockopt::set_socket_reuseaddr(sock, reuse);
    true
}

/// Copies the last `unsent` bytes of the send queue (those not sent yet) as one frame, in
/// repair mode, which is then left as it was. `Err(None)`: repair mode is not allowed here.
fn copy_unsent(sock: BorrowedFd, unsent: usize, data: &mut [u8], used: &mut usize) -> Result<(), Option<Failure>> {
    let fd = sock.as_raw_fd();
    let reuse = rustix::net::sockopt::socket_reuseaddr(sock).unwrap_or(false);
    match sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_ON as i32) {
        Ok(()) => {}
        Err(Errno::PERM | Errno::ACCESS) => return Err(None),
        Err(e) => return Err(Some(Failure::new("reading the bytes a TCP connection has not sent", e))),
    }
    let result = (|| {
        sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR_QUEUE, n::TCP_SEND_QUEUE as i32)
            .map_err(|e| Failure::new("reading the bytes a TCP connection has not sent", e))?;
        // The send queue from its first unacknowledged byte: the unsent ones are its end.
        let queued = (sys::bytes_in_send_queue(fd).unwrap_or(0) as usize).max(unsent);
        let before = *used;
        let got = peek_frame(sock, queued, data, used, RecvFlags::empty())?;
        if got < unsent {
            return Err(Failure::plain("reading the bytes a TCP connection has not sent: fewer came than it holds"));
        }
        // Keep only the unsent tail, as the frame.
        let body = before + s::FRAME_HEADER;
        data.copy_within(body + got - unsent..body + got, body);
        data[before..body].copy_from_slice(&s::frame_header(unsent as u32));
        *used = body + unsent;
        Ok(())
    })();
    let _ = sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR_QUEUE, n::TCP_NO_QUEUE as i32);
    // Leaving repair mode without a window probe; it clears SO_REUSEADDR, set back as it was.
    let _ = sys::setsockopt_int(fd, n::SOL_TCP, n::TCP_REPAIR, n::TCP_REPAIR_OFF_NO_WP);
    let _ = rustix::net::sockopt::set_socket_reuseaddr(sock, reuse);
    result.map_err(Some)
}
