//! `NT_CKPT_IPC`: the System V IPC objects a process used, so that a restart makes each again
//! under its old ID (in an IPC namespace of its own) with its key, mode and owner, and what it
//! held. Records follow each other, each a 40-byte head and a body padded to 8 bytes:
//!
//! ```text
//!   kind u32 (1 shm segment, 2 semaphore set, 3 message queue), id u32, key u32, mode u32,
//!   uid u32, gid u32, size u64 (segment: bytes; semaphore set: 0; queue: its byte limit),
//!   count u32 (semaphores, or messages), body_len u32
//!   body: semaphore set: `count` values, u16 each; message queue: `count` messages, each
//!         type u64, length u64, its bytes padded to 8; segment: empty (its pages are the
//!         region that maps it)
//! ```
//! The note is absent when the process used none.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const IPC_HEAD_SIZE: usize = 40;
pub const KIND_SHM: u32 = 1;
pub const KIND_SEM: u32 = 2;
pub const KIND_MSG: u32 = 3;
/// Longest message a queue record holds (the kernel's own ceiling, `MSGMAX` as raised by root, is
/// far above the default 8192).
pub const MAX_MESSAGE: u64 = 1 << 20;

/// One object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcRecord<'a> {
    pub kind: u32,
    pub id: i32,
    pub key: i32,
    /// Permission bits (the low 9 bits of the kernel's mode).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub count: u32,
    pub body: &'a [u8],
}

impl<'a> IpcRecord<'a> {
    pub fn write_head(&self, w: &mut Writer) {
        w.u32(self.kind);
        w.u32(self.id as u32);
        w.u32(self.key as u32);
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u64(self.size);
        w.u32(self.count);
        w.u32(self.body.len() as u32);
    }

    /// The whole record: head and body (padded).
    pub fn write(&self, w: &mut Writer) {
        self.write_head(w);
        w.bytes(self.body);
        w.align(8);
    }

    pub fn read(r: &mut Reader<'a>) -> Result<IpcRecord<'a>, ImageError> {
        let bad = ImageError::Malformed("bad System V IPC record");
        let kind = r.u32()?;
        let id = r.u32()? as i32;
        let key = r.u32()? as i32;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u64()?;
        let count = r.u32()?;
        let body_len = r.u32()? as usize;
        let body = r.bytes(body_len)?;
        r.align(8)?;
        let rec = IpcRecord { kind, id, key, mode, uid, gid, size, count, body };
        let body_ok = match kind {
            KIND_SHM => body.is_empty() && size > 0,
            KIND_SEM => body.len() == count as usize * 2 && count > 0,
            KIND_MSG => rec.messages().try_fold(0u32, |n, m| m.map(|_| n + 1)).is_ok_and(|n| n == count),
            _ => false,
        };
        if id < 0 || mode > 0o777 || !body_ok {
            return Err(bad);
        }
        Ok(rec)
    }

    /// A semaphore set's values.
    pub fn values(&self) -> impl Iterator<Item = u16> + 'a {
        self.body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
    }

    /// A message queue's messages, in queue order: `(type, bytes)`.
    pub fn messages(&self) -> Records<'a, (i64, &'a [u8])> {
        Records::new(if self.kind == KIND_MSG { self.body } else { &[] }, read_message)
    }
}

fn read_message<'a>(r: &mut Reader<'a>) -> Result<(i64, &'a [u8]), ImageError> {
    let mtype = r.u64()? as i64;
    let len = r.u64()?;
    if mtype <= 0 || len > MAX_MESSAGE {
        return Err(ImageError::Malformed("bad message in a System V queue record"));
    }
    let data = r.bytes(len as usize)?;
    r.align(8)?;
    Ok((mtype, data))
}

/// Appends one message to a queue record's body.
pub fn write_message(w: &mut Writer, mtype: i64, data: &[u8]) {
    w.u64(mtype as u64);
    w.u64(data.len() as u64);
    w.bytes(data);
    w.align(8);
}

/// A queue's record written piece by piece: its head (with no body yet) now, then each message
/// with [`write_message`], then [`end_queue`] with what [`begin_queue`] returned.
pub fn begin_queue(w: &mut Writer, head: &IpcRecord) -> usize {
    let start = w.pos();
    IpcRecord { count: 0, body: &[], ..*head }.write_head(w);
    start
}

/// Puts the number of messages and the body's length into the head begun at `start`.
pub fn end_queue(w: &mut Writer, start: usize, count: u32) {
    let body_len = w.pos().saturating_sub(start + IPC_HEAD_SIZE);
    w.patch_u32(start + 32, count);
    w.patch_u32(start + 36, body_len as u32);
}

/// The records of an `NT_CKPT_IPC` descriptor.
pub fn records(desc: &[u8]) -> Records<'_, IpcRecord<'_>> {
    Records::new(desc, IpcRecord::read)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn records_round_trip() {
        let mut body = [0u8; 64];
        let mut bw = Writer::new(&mut body[..]);
        write_message(&mut bw, 2, b"two");
        write_message(&mut bw, 1, b"one!");
        let blen = bw.finish().unwrap();
        let mut qbuf = [0u8; 128];
        let mut qw = Writer::new(&mut qbuf[..]);
        let head = IpcRecord { kind: KIND_MSG, id: 9, key: 77, mode: 0o640, uid: 1, gid: 2, size: 16384, count: 0, body: &[] };
        let at = begin_queue(&mut qw, &head);
        write_message(&mut qw, 2, b"two");
        write_message(&mut qw, 1, b"one!");
        end_queue(&mut qw, at, 2);
        let qn = qw.finish().unwrap();
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf[..]);
        IpcRecord { kind: KIND_SEM, id: 5, key: 0, mode: 0o600, uid: 1, gid: 2, size: 0, count: 2, body: &[3, 0, 7, 0] }.write(&mut w);
        IpcRecord { kind: KIND_MSG, id: 9, key: 77, mode: 0o640, uid: 1, gid: 2, size: 16384, count: 2, body: &body[..blen] }.write(&mut w);
        let n = w.finish().unwrap();
        let recs: Vec<_> = records(&buf[..n]).map(Result::unwrap).collect();
        assert_eq!(recs[0].values().collect::<Vec<_>>(), [3, 7]);
        let msgs: Vec<_> = recs[1].messages().map(Result::unwrap).collect();
        assert_eq!(msgs, [(2, &b"two"[..]), (1, &b"one!"[..])]);
        assert_eq!(recs[1].key, 77);
        assert_eq!(records(&qbuf[..qn]).next().unwrap().unwrap(), recs[1]);
        buf[0] = 0; // kind 0
        assert!(records(&buf[..n]).next().unwrap().is_err());
    }
}
