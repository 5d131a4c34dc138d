//! Facts about sockets that only the kernel's `sock_diag` netlink interface gives, and a
//! printable form of socket addresses. Signal-safe: raw system calls into caller-owned buffers.
//!
//! `linux-raw-sys` has the netlink header but not the `unix_diag` request and reply
//! (`linux/unix_diag.h`); their layouts, small and fixed in the kernel ABI, are written out here.

use crate::sys;
use core::fmt;
use linux_raw_sys::net as n;
use linux_raw_sys::netlink as nl;
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;

/// `SOCK_DIAG_BY_FAMILY` (`linux/sock_diag.h`).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `udiag_show` bits and reply attributes (`linux/unix_diag.h`).
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const NLMSG_HDRLEN: usize = core::mem::size_of::<nl::nlmsghdr>();
/// `struct unix_diag_req`: family, protocol, pad, states, ino, show, cookie[2].
const UNIX_DIAG_REQ_LEN: usize = 24;
/// `struct unix_diag_msg`: family, type, state, pad, ino, cookie[2].
const UNIX_DIAG_MSG_LEN: usize = 16;

/// What `sock_diag` says of an `AF_UNIX` socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// The inode of the socket at the other end (0 for none).
    pub peer_ino: u64,
    /// `SHUT_*` bits as the kernel keeps them (1: no more receiving, 2: no more sending).
    pub shutdown: u32,
    /// For a listening socket: connections waiting, and the backlog.
    pub rqueue: u32,
    pub wqueue: u32,
}

/// A `NETLINK_SOCK_DIAG` socket to ask with.
pub fn open_diag() -> Result<OwnedFd, Errno> {
    use rustix::net::{netlink, socket_with, AddressFamily, SocketFlags, SocketType};
    socket_with(AddressFamily::NETLINK, SocketType::DGRAM, SocketFlags::CLOEXEC, Some(netlink::SOCK_DIAG))
}

/// Asks about the `AF_UNIX` socket with inode `ino`. `buf` receives the reply (a page is plenty).
pub fn unix_diag(diag: BorrowedFd, ino: u64, buf: &mut [u8]) -> Result<UnixDiag, Errno> {
    let mut req = [0u8; NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(nl::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&(ino as u32).to_ne_bytes()); // sequence number
    let body = &mut req[NLMSG_HDRLEN..];
    body[0] = n::AF_UNIX as u8;
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    body[8..12].copy_from_slice(&(ino as u32).to_ne_bytes());
    body[12..16].copy_from_slice(&(UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    body[16..24].copy_from_slice(&[0xff; 8]); // no cookie
    rustix::net::send(diag, &req, rustix::net::SendFlags::empty())?;
    let (got, _) = rustix::io::retry_on_intr(|| rustix::net::recv(diag, &mut *buf, rustix::net::RecvFlags::empty()))?;
    parse_reply(&buf[..got], ino)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The facts in one `sock_diag` reply about socket `ino`.
fn parse_reply(msg: &[u8], ino: u64) -> Result<UnixDiag, Errno> {
    let msg_len = u32_at(msg, 0).ok_or(Errno::PROTO)? as usize;
    let kind = u16_at(msg, 4).ok_or(Errno::PROTO)?;
    if kind == nl::NLMSG_ERROR as u16 {
        let e = u32_at(msg, NLMSG_HDRLEN).ok_or(Errno::PROTO)? as i32;
        return Err(Errno::from_raw_os_error(-e));
    }
    let msg = msg.get(..msg_len).ok_or(Errno::PROTO)?;
    if kind != SOCK_DIAG_BY_FAMILY || u32_at(msg, NLMSG_HDRLEN + 4) != Some(ino as u32) {
        return Err(Errno::PROTO);
    }
    let mut out = UnixDiag::default();
    let mut at = NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN;
    // Attributes: u16 length (header included), u16 type, payload, padded to 4.
    while let (Some(len), Some(ty)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = len as usize;
        if len < 4 {
            break;
        }
        let payload = msg.get(at + 4..at + len).ok_or(Errno::PROTO)?;
        match ty {
            UNIX_DIAG_PEER => out.peer_ino = u32_at(payload, 0).unwrap_or(0) as u64,
            UNIX_DIAG_RQLEN => {
                out.rqueue = u32_at(payload, 0).unwrap_or(0);
                out.wqueue = u32_at(payload, 4).unwrap_or(0);
            }
            UNIX_DIAG_SHUTDOWN => out.shutdown = payload.first().copied().unwrap_or(0) as u32,
            _ => {}
        }
        at += len.next_multiple_of(4);
    }
    Ok(out)
}

/// For a listening TCP socket: connections waiting to be accepted, and the backlog
/// (`TCP_INFO`'s `tcpi_unacked` and `tcpi_sacked` mean these for a listener).
pub fn tcp_listen_queue(fd: i32) -> Option<(u32, u32)> {
    let mut info = [0u8; core::mem::size_of::<n::tcp_info>()];
    let len = sys::getsockopt_bytes(fd, n::SOL_TCP, n::TCP_INFO, &mut info).ok()?;
    const UNACKED: usize = core::mem::offset_of!(n::tcp_info, tcpi_unacked);
    const SACKED: usize = core::mem::offset_of!(n::tcp_info, tcpi_sacked);
    if len < SACKED + 4 {
        return None;
    }
    Some((u32_at(&info, UNACKED)?, u32_at(&info, SACKED)?))
}

/// The state of TCP socket `fd` (`TCP_ESTABLISHED`, `TCP_FIN_WAIT1`, … as `TCP_INFO` gives it).
pub fn tcp_state(fd: i32) -> Option<u8> {
    let mut info = [0u8; core::mem::size_of::<n::tcp_info>()];
    let len = sys::getsockopt_bytes(fd, n::SOL_TCP, n::TCP_INFO, &mut info).ok()?;
    (len > 0).then_some(info[core::mem::offset_of!(n::tcp_info, tcpi_state)])
}

/// A socket address as bytes (`struct sockaddr_*`), printed as people write it:
/// `127.0.0.1:8000`, `[::1]:8000`, `/run/x.sock`, `@abstract`, `unnamed`.
pub struct Addr<'a>(pub &'a [u8]);

impl fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let a = self.0;
        let port = |at: usize| a.get(at..at + 2).map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
        match u16_at(a, 0).map(u32::from) {
            Some(n::AF_INET) if a.len() >= 8 => write!(f, "{}.{}.{}.{}:{}", a[4], a[5], a[6], a[7], port(2)),
            Some(n::AF_INET6) if a.len() >= 24 => {
                f.write_str("[")?;
                let group = |i: usize| u16::from_be_bytes([a[8 + 2 * i], a[9 + 2 * i]]);
                // The longest run of zero groups (two or more) is written "::".
                let (mut best, mut best_len, mut run) = (8, 0, 0);
                for i in 0..8 {
                    run = if group(i) == 0 { run + 1 } else { 0 };
                    if run > best_len && run >= 2 {
                        (best, best_len) = (i + 1 - run, run);
                    }
                }
                let mut i = 0;
                while i < 8 {
                    if i == best {
                        f.write_str("::")?;
                        i += best_len;
                        continue;
                    }
                    if i > 0 && i != best + best_len {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", group(i))?;
                    i += 1;
                }
                write!(f, "]:{}", port(2))
            }
            Some(n::AF_UNIX) => {
                let path = &a[2..];
                match path.first() {
                    None => f.write_str("unnamed"),
                    Some(0) => write!(f, "@{}", crate::out::Lossy(&path[1..])),
                    Some(_) => {
                        let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                        write!(f, "{}", crate::out::Lossy(&path[..end]))
                    }
                }
            }
            _ => f.write_str("an address of another family"),
        }
    }
}


#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn addresses_print_as_people_write_them() {
        let v4 = [2, 0, 0x1f, 0x40, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Addr(&v4).to_string(), "127.0.0.1:8000");
        let mut v6 = [0u8; 28];
        v6[0] = 10;
        v6[2..4].copy_from_slice(&8000u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(Addr(&v6).to_string(), "[::1]:8000");
        v6[8..10].copy_from_slice(&0xfe80u16.to_be_bytes());
        assert_eq!(Addr(&v6).to_string(), "[fe80::1]:8000");
        v6[8..10].copy_from_slice(&[0, 0]);
        v6[23] = 0;
        assert_eq!(Addr(&v6).to_string(), "[::]:8000");
        assert_eq!(Addr(b"\x01\x00/run/x.sock\0").to_string(), "/run/x.sock");
        assert_eq!(Addr(b"\x01\x00\0name").to_string(), "@name");
        assert_eq!(Addr(b"\x01\x00").to_string(), "unnamed");
    }

    #[test]
    fn diag_reply_is_read_attribute_by_attribute() {
        let mut m = std::vec::Vec::new();
        let body_len = UNIX_DIAG_MSG_LEN + 8 + 12 + 5 + 3;
        m.extend(((NLMSG_HDRLEN + body_len) as u32).to_ne_bytes());
        m.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend([1, 1, 1, 0]);
        m.extend(77u32.to_ne_bytes());
        m.extend([0u8; 8]);
        m.extend(8u16.to_ne_bytes());
        m.extend(UNIX_DIAG_PEER.to_ne_bytes());
        m.extend(78u32.to_ne_bytes());
        m.extend(12u16.to_ne_bytes());
        m.extend(UNIX_DIAG_RQLEN.to_ne_bytes());
        m.extend(3u32.to_ne_bytes());
        m.extend(128u32.to_ne_bytes());
        m.extend(5u16.to_ne_bytes());
        m.extend(UNIX_DIAG_SHUTDOWN.to_ne_bytes());
        m.extend([2u8, 0, 0, 0]);
        let d = parse_reply(&m, 77).unwrap();
        assert_eq!(d, UnixDiag { peer_ino: 78, shutdown: 2, rqueue: 3, wqueue: 128 });
        assert_eq!(parse_reply(&m, 76), Err(Errno::PROTO), "a reply about another socket");
    }
}
