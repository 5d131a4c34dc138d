//! `NT_CKPT_PTYS`: one record per descriptor on a Unix98 pseudo-terminal, the master
//! (`/dev/ptmx`) or the slave (`/dev/pts/N`) end: which pair it is (its number at the
//! checkpoint), the pair's terminal state (termios, window size, packet mode, lock), the session
//! whose controlling terminal the pair is and its foreground process group, and, in the record
//! of a master's lowest descriptor, the bytes that were queued in the pair each way.
//!
//! The descriptor's own record in `NT_CKPT_FDS` stays what it always was (a `Device`, or
//! `Inherit` for a standard descriptor), so a ckpt that does not know this note restores a
//! slave as before. A note with a master record has the type [`crate::NT_CKPT_PTYS`], which
//! such a ckpt refuses (it would give the program an unrelated new pty); a note with slave
//! records only has that type with [`crate::NT_CKPT_IGNORABLE`], which it may skip.
//!
//! ```text
//!   u32 fd, u32 flags (MASTER, LOCKED, PACKET, CTTY), u32 index, u32 sid, u32 fg_pgrp
//!   u16 rows, cols, xpixel, ypixel              TIOCGWINSZ
//!   u32 iflag, oflag, cflag, lflag, u8 line, u8 cc[19], u32 ispeed, ospeed    TCGETS2
//!   u32 to_slave_len, u32 to_master_len          then those bytes, padded to 8
//! ```

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

/// Bytes of a record before its queued bytes.
pub const PTY_RECORD_SIZE: usize = 80;

/// Most bytes one direction of a pair keeps (the rest is left out, and named at checkpoint).
pub use crate::limits::MAX_PTY_QUEUE;

/// `flags`: the descriptor is the master end (else the slave).
pub const MASTER: u32 = 1;
/// The slave was locked (`TIOCGPTLCK`): a new open of it fails until `unlockpt`.
pub const LOCKED: u32 = 2;
/// The master is in packet mode (`TIOCPKT`).
pub const PACKET: u32 = 4;
/// The pair is the controlling terminal of session `sid` (`TIOCGSID` answered).
pub const CTTY: u32 = 8;
const KNOWN: u32 = MASTER | LOCKED | PACKET | CTTY;

/// `struct termios2`, as `TCGETS2` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; 19],
    pub ispeed: u32,
    pub ospeed: u32,
}

/// One descriptor on a pty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PtyRecord {
    pub fd: i32,
    pub flags: u32,
    /// The pair's number (`TIOCGPTN`, the N of `/dev/pts/N`) at the checkpoint.
    pub index: u32,
    /// With [`CTTY`], the session it is the controlling terminal of, and that session's
    /// foreground process group (0: none), as the checkpoint's PID namespace numbers them.
    pub sid: u32,
    pub fg_pgrp: u32,
    /// Rows, columns, x and y pixels.
    pub winsize: [u16; 4],
    pub termios: Termios,
}

impl PtyRecord {
    pub fn is_master(&self) -> bool {
        self.flags & MASTER != 0
    }

    /// Writes the record and the bytes queued toward the slave (`to_slave`, which the program
    /// on the slave had to read) and toward the master (`to_master`).
    pub fn write(&self, w: &mut Writer, to_slave: &[u8], to_master: &[u8]) {
        w.u32(self.fd as u32);
        w.u32(self.flags);
        w.u32(self.index);
        w.u32(self.sid);
        w.u32(self.fg_pgrp);
        for v in self.winsize {
            w.u16(v);
        }
        let t = &self.termios;
        for v in [t.iflag, t.oflag, t.cflag, t.lflag] {
            w.u32(v);
        }
        w.u8(t.line);
        w.bytes(&t.cc);
        w.u32(t.ispeed);
        w.u32(t.ospeed);
        w.u32(to_slave.len() as u32);
        w.u32(to_master.len() as u32);
        w.bytes(to_slave);
        w.bytes(to_master);
        w.align(8);
    }

    /// A record and its queued bytes toward the slave and toward the master.
    pub fn read<'a>(r: &mut Reader<'a>) -> Result<(PtyRecord, &'a [u8], &'a [u8]), ImageError> {
        let mut p = PtyRecord { fd: r.u32()? as i32, flags: r.u32()?, index: r.u32()?, sid: r.u32()?, fg_pgrp: r.u32()?, ..PtyRecord::default() };
        for v in p.winsize.iter_mut() {
            *v = r.u16()?;
        }
        let t = &mut p.termios;
        t.iflag = r.u32()?;
        t.oflag = r.u32()?;
        t.cflag = r.u32()?;
        t.lflag = r.u32()?;
        t.line = r.u8()?;
        t.cc = r.array()?;
        t.ispeed = r.u32()?;
        t.ospeed = r.u32()?;
        let (to_slave, to_master) = (r.u32()? as usize, r.u32()? as usize);
        if !(0..crate::fds::MAX_FD).contains(&p.fd) || p.flags & !KNOWN != 0 || to_slave > MAX_PTY_QUEUE || to_master > MAX_PTY_QUEUE {
            return Err(ImageError::Malformed("bad pty record"));
        }
        if (to_slave | to_master) != 0 && !p.is_master() {
            return Err(ImageError::Malformed("bytes queued in a pty record of a slave"));
        }
        let (a, b) = (r.bytes(to_slave)?, r.bytes(to_master)?);
        r.align(8)?;
        Ok((p, a, b))
    }
}

/// The records of an encoded `NT_CKPT_PTYS` descriptor.
pub type PtyIter<'a> = Records<'a, (PtyRecord, &'a [u8], &'a [u8])>;

pub fn records(desc: &[u8]) -> PtyIter<'_> {
    Records::new(desc, PtyRecord::read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_with_its_bytes() {
        let rec = PtyRecord { fd: 5, flags: MASTER | PACKET | CTTY, index: 3, sid: 10, fg_pgrp: 11, winsize: [24, 80, 0, 0], termios: Termios { lflag: 0o10, cc: [3; 19], ..Termios::default() } };
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        rec.write(&mut w, b"in", b"out!!");
        let len = w.finish().unwrap();
        assert_eq!(len, (PTY_RECORD_SIZE + 7).next_multiple_of(8));
        let mut all = records(&buf[..len]);
        assert_eq!(all.next().unwrap().unwrap(), (rec, &b"in"[..], &b"out!!"[..]));
        assert!(all.next().is_none());
        let slave = PtyRecord { flags: 0, ..rec };
        let mut w = Writer::new(&mut buf);
        slave.write(&mut w, b"x", b"");
        let len = w.finish().unwrap();
        assert!(records(&buf[..len]).next().unwrap().is_err(), "only a master carries bytes");
    }
}
