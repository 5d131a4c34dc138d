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
//!         region that maps it), or, for a segment no process attached, its `size` bytes
//! ```
//! A POSIX message queue the process has open (kind 4) is recorded here too, once per
//! descriptor: `id` is the descriptor, `size` the largest message, and the body begins with
//! the queue's name (length u32, flags u32: the descriptor's open flags, and bit 31 for
//! close-on-exec; the name, padded to 8), then its capacity in messages (u64), then its
//! `count` messages as a System V queue's, with the priority as the type (0 allowed), in the
//! order `mq_receive` takes them (highest priority first, oldest first within one).
//! The note is absent when the process used none.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const IPC_HEAD_SIZE: usize = 40;
pub const KIND_SHM: u32 = 1;
pub const KIND_SEM: u32 = 2;
pub const KIND_MSG: u32 = 3;
pub const KIND_MQ: u32 = 4;
/// In a POSIX queue's flags: the descriptor is close-on-exec.
pub const MQ_CLOEXEC: u32 = 1 << 31;
/// Longest POSIX queue name (NAME_MAX).
pub const MAX_MQ_NAME: usize = 255;
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
            KIND_SHM => (body.is_empty() || body.len() as u64 == size) && size > 0,
            KIND_SEM => body.len() == count as usize * 2 && count > 0,
            KIND_MSG | KIND_MQ => rec.messages().try_fold(0u32, |n, m| m.map(|_| n + 1)).is_ok_and(|n| n == count),
            _ => false,
        };
        let body_ok = body_ok && (kind != KIND_MQ || rec.mq().is_some());
        if id < 0 || mode > 0o777 || !body_ok {
            return Err(bad);
        }
        Ok(rec)
    }

    /// A semaphore set's values.
    pub fn values(&self) -> impl Iterator<Item = u16> + 'a {
        self.body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
    }

    /// A message queue's messages, in queue order: `(type, bytes)` (a POSIX queue's: the
    /// priority for the type).
    pub fn messages(&self) -> Records<'a, (i64, &'a [u8])> {
        match self.kind {
            KIND_MSG => Records::new(self.body, read_message),
            KIND_MQ => Records::new(self.mq().map_or(&[][..], |(_, rest)| rest), read_mq_message),
            _ => Records::new(&[], read_message),
        }
    }

    /// A POSIX queue's name, flags and capacity, and the bytes of its messages.
    fn mq(&self) -> Option<(MqQueue<'a>, &'a [u8])> {
        let mut r = Reader::new(self.body);
        let len = r.u32().ok()? as usize;
        let flags = r.u32().ok()?;
        let name = r.bytes(len).ok()?;
        r.align(8).ok()?;
        let max_messages = r.u64().ok()?;
        let ok = (1..=MAX_MQ_NAME).contains(&len) && !name.contains(&b'/') && !name.contains(&0);
        ok.then(|| (MqQueue { name, flags, max_messages }, &self.body[r.pos()..]))
    }

    /// A POSIX queue record's queue (`None` for other kinds).
    pub fn mq_queue(&self) -> Option<MqQueue<'a>> {
        (self.kind == KIND_MQ).then(|| self.mq()).flatten().map(|(q, _)| q)
    }
}

/// A POSIX message queue as a descriptor had it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqQueue<'a> {
    /// Without its leading '/'.
    pub name: &'a [u8],
    /// The descriptor's open flags (`O_RDONLY`, `O_WRONLY`, `O_RDWR`, `O_NONBLOCK`), and
    /// [`MQ_CLOEXEC`].
    pub flags: u32,
    pub max_messages: u64,
}

/// Begins a POSIX queue's record (its head and the start of its body); its messages follow with
/// [`write_message`] (priority for type), then [`end_queue`].
pub fn begin_mq(w: &mut Writer, head: &IpcRecord, q: &MqQueue) -> usize {
    let start = begin_queue(w, head);
    w.u32(q.name.len() as u32);
    w.u32(q.flags);
    w.bytes(q.name);
    w.align(8);
    w.u64(q.max_messages);
    start
}

fn read_mq_message<'a>(r: &mut Reader<'a>) -> Result<(i64, &'a [u8]), ImageError> {
    let prio = r.u64()? as i64;
    let len = r.u64()?;
    if !(0..1 << 15).contains(&prio) || len > MAX_MESSAGE {
        return Err(ImageError::Malformed("bad message in a POSIX queue record"));
    }
    let data = r.bytes(len as usize)?;
    r.align(8)?;
    Ok((prio, data))
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
        let mut mbuf = [0u8; 160];
        let mut mw = Writer::new(&mut mbuf[..]);
        let q = MqQueue { name: b"jobs", flags: 2 | MQ_CLOEXEC, max_messages: 10 };
        let at = begin_mq(&mut mw, &IpcRecord { kind: KIND_MQ, id: 4, key: 0, mode: 0o600, uid: 0, gid: 0, size: 64, count: 0, body: &[] }, &q);
        write_message(&mut mw, 9, b"urgent");
        write_message(&mut mw, 0, b"low");
        end_queue(&mut mw, at, 2);
        let mn = mw.finish().unwrap();
        let mq = records(&mbuf[..mn]).next().unwrap().unwrap();
        assert_eq!(mq.mq_queue(), Some(q));
        assert_eq!(mq.messages().map(Result::unwrap).collect::<Vec<_>>(), [(9, &b"urgent"[..]), (0, &b"low"[..])]);
        buf[0] = 0; // kind 0
        assert!(records(&buf[..n]).next().unwrap().is_err());
    }
}
