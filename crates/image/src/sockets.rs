//! `NT_CKPT_SOCKETS`: one record per socket descriptor (the lowest of those sharing an open
//! file description), [`SOCKET_RECORD_SIZE`] bytes each: what the socket is, where it is bound
//! and connected, the options that matter, and for an `AF_UNIX` socket the inode of its peer.
//! The note is absent when there are none.
//!
//! The bytes queued for a socket to read are its descriptor record's blob (`NT_CKPT_FDS`), as
//! frames: a little-endian u32 length, then that many bytes. A datagram or seqpacket socket has
//! one frame per message; a stream socket's frames are just pieces of its byte stream.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const SOCKET_RECORD_SIZE: usize = 320;
/// Room for a socket address (`struct sockaddr_storage`).
pub const ADDR_MAX: usize = 128;
/// Bytes before each frame of queued data: its length.
pub const FRAME_HEADER: usize = 4;

/// `state` bits.
pub const LISTENING: u32 = 1;
/// Connected: `peer` is the address of the other end (for `AF_UNIX`, possibly empty).
pub const CONNECTED: u32 = 2;
/// Bound: `addr` is where.
pub const BOUND: u32 = 4;
/// An `AF_UNIX` socket whose peer (`peer_ino`) is another socket of the process.
pub const PAIRED: u32 = 8;

/// `options` bits: socket options set to 1.
pub const OPT_REUSEADDR: u32 = 1;
pub const OPT_REUSEPORT: u32 = 2;
pub const OPT_KEEPALIVE: u32 = 4;
pub const OPT_BROADCAST: u32 = 8;
pub const OPT_V6ONLY: u32 = 16;
pub const OPT_NODELAY: u32 = 32;
pub const OPT_PASSCRED: u32 = 64;
pub const OPT_OOBINLINE: u32 = 128;

/// `shutdown` bits, as the kernel's `sock_diag` reports them.
pub const SHUT_READ: u32 = 1;
pub const SHUT_WRITE: u32 = 2;

/// A connected TCP socket's descriptor record (`NT_CKPT_FDS`) keeps, in its blob, first the
/// bytes queued for it to read (frames), then, when it had bytes not yet sent to its peer,
/// those as one last frame; its `aux` is then their count (low 32 bits). [`TCP_BYTES_LOST`]
/// in `aux`: bytes of its stream that the checkpoint could not read (not yet sent, without
/// `CAP_NET_ADMIN`; after an urgent mark): it can only come back reset. Its `shutdown` has
/// [`SHUT_WRITE`] once it had sent its end of stream (FIN).
pub const TCP_BYTES_LOST: u64 = 1 << 62;

/// For a connected TCP socket's descriptor record: how many bytes at the start of its blob are
/// the frames of its receive queue, and how many bytes it had not yet sent (the blob's last
/// frame, after those).
pub fn tcp_blob_parts(blob_len: u64, aux: u64) -> (u64, u64) {
    let unsent = aux & 0xffff_ffff;
    if unsent == 0 {
        return (blob_len, 0);
    }
    (blob_len.saturating_sub(unsent + FRAME_HEADER as u64), unsent)
}

/// One socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRecord {
    pub fd: i32,
    /// `AF_UNIX`, `AF_INET`, `AF_INET6`.
    pub family: u16,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
    pub sock_type: u16,
    pub protocol: u32,
    pub state: u32,
    pub options: u32,
    /// `SO_SNDBUF` and `SO_RCVBUF` as `getsockopt` reports them (twice what was asked).
    pub sndbuf: u32,
    pub rcvbuf: u32,
    /// The listen backlog (0 when unknown).
    pub backlog: u32,
    pub shutdown: u32,
    pub ino: u64,
    /// An `AF_UNIX` socket's peer's inode (0 for none).
    pub peer_ino: u64,
    pub addr_len: u32,
    pub peer_len: u32,
    pub addr: [u8; ADDR_MAX],
    pub peer: [u8; ADDR_MAX],
}

impl SocketRecord {
    pub const ZERO: SocketRecord = SocketRecord {
        fd: 0,
        family: 0,
        sock_type: 0,
        protocol: 0,
        state: 0,
        options: 0,
        sndbuf: 0,
        rcvbuf: 0,
        backlog: 0,
        shutdown: 0,
        ino: 0,
        peer_ino: 0,
        addr_len: 0,
        peer_len: 0,
        addr: [0; ADDR_MAX],
        peer: [0; ADDR_MAX],
    };

    /// The bound address, as the kernel gave it.
    pub fn addr(&self) -> &[u8] {
        &self.addr[..self.addr_len as usize]
    }

    /// The connected peer's address.
    pub fn peer(&self) -> &[u8] {
        &self.peer[..self.peer_len as usize]
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.fd as u32);
        w.u16(self.family);
        w.u16(self.sock_type);
        w.u32(self.protocol);
        w.u32(self.state);
        w.u32(self.options);
        w.u32(self.sndbuf);
        w.u32(self.rcvbuf);
        w.u32(self.backlog);
        w.u32(self.shutdown);
        w.u32(0);
        w.u64(self.ino);
        w.u64(self.peer_ino);
        w.u32(self.addr_len);
        w.u32(self.peer_len);
        w.bytes(&self.addr);
        w.bytes(&self.peer);
    }

    pub fn read(r: &mut Reader) -> Result<SocketRecord, ImageError> {
        let mut s = SocketRecord {
            fd: r.u32()? as i32,
            family: r.u16()?,
            sock_type: r.u16()?,
            protocol: r.u32()?,
            state: r.u32()?,
            options: r.u32()?,
            sndbuf: r.u32()?,
            rcvbuf: r.u32()?,
            backlog: r.u32()?,
            shutdown: r.u32()?,
            ..SocketRecord::ZERO
        };
        r.skip(4)?;
        s.ino = r.u64()?;
        s.peer_ino = r.u64()?;
        s.addr_len = r.u32()?;
        s.peer_len = r.u32()?;
        s.addr = r.array()?;
        s.peer = r.array()?;
        if s.fd < 0 || s.state & !(LISTENING | CONNECTED | BOUND | PAIRED) != 0 || s.shutdown & !(SHUT_READ | SHUT_WRITE) != 0 {
            return Err(ImageError::Malformed("bad socket record"));
        }
        // Each address is what `getsockname`/`getpeername` gave: none, or at least its family
        // field, which names the socket's own family. A socket that listens or is bound has
        // one, and so has a connected one.
        let addr_ok = |len: u32, bytes: &[u8; ADDR_MAX], needed: bool| match len as usize {
            0 => !needed,
            1 => false,
            n => n <= ADDR_MAX && u16::from_ne_bytes([bytes[0], bytes[1]]) == s.family,
        };
        if !addr_ok(s.addr_len, &s.addr, s.state & (LISTENING | BOUND) != 0) || !addr_ok(s.peer_len, &s.peer, s.state & CONNECTED != 0) {
            return Err(ImageError::Malformed("bad socket address"));
        }
        Ok(s)
    }
}

/// The records of an `NT_CKPT_SOCKETS` descriptor.
pub type SocketIter<'a> = Records<'a, SocketRecord>;

/// The records of an encoded `NT_CKPT_SOCKETS` descriptor.
pub fn records(desc: &[u8]) -> SocketIter<'_> {
    Records::new(desc, SocketRecord::read)
}

/// The header of a frame of `len` bytes.
pub fn frame_header(len: u32) -> [u8; FRAME_HEADER] {
    len.to_le_bytes()
}

/// The length a frame header says.
pub fn frame_len(header: [u8; FRAME_HEADER]) -> u32 {
    u32::from_le_bytes(header)
}

/// The frames of queued data, in order; a frame that runs past the end is an error (the last
/// item).
pub fn frames(blob: &[u8]) -> Records<'_, &[u8]> {
    Records::new(blob, |r| {
        let len = frame_len(r.array()?) as usize;
        r.bytes(len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_blob_splits_into_its_queue_and_its_unsent_bytes() {
        // No unsent bytes: all of it is the receive queue, whatever bit 62 says.
        assert_eq!(tcp_blob_parts(104, 0), (104, 0));
        assert_eq!(tcp_blob_parts(0, TCP_BYTES_LOST), (0, 0));
        // One frame of 100 queued bytes, then one of 7 unsent.
        assert_eq!(tcp_blob_parts(104 + 4 + 7, 7), (104, 7));
        // Only unsent bytes.
        assert_eq!(tcp_blob_parts(4 + 7, 7), (0, 7));
        // A count beyond the blob names no queue (a damaged record reads nothing before it).
        assert_eq!(tcp_blob_parts(3, 7), (0, 7));
    }

    #[test]
    fn a_shutdown_the_kernel_does_not_report_is_malformed() {
        let mut buf = [0u8; SOCKET_RECORD_SIZE];
        for (shutdown, ok) in [(0, true), (SHUT_READ | SHUT_WRITE, true), (4, false), (u32::MAX, false)] {
            let rec = SocketRecord { fd: 3, family: 1, sock_type: 1, shutdown, ..SocketRecord::ZERO };
            rec.write(&mut Writer::new(&mut buf));
            assert_eq!(SocketRecord::read(&mut Reader::new(&buf)).is_ok(), ok, "{shutdown}");
        }
    }
}
