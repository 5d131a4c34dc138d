//! The direct data channel of `ckpt migrate`: a TCP connection from the source to `ckpt
//! receive`, which carries what would otherwise go into ssh's stdin, sealed with AES-128-GCM
//! under a key the source made for this one migration and handed to the far side through ssh
//! (whose channel is encrypted and authenticated already). ssh stays the control channel and
//! the authentication; this connection only moves bytes faster than one ssh connection can.
//!
//! The stream is a sequence of records: a length (u32, little-endian) of the sealed bytes that
//! follow, which are the plaintext and its 16-byte tag. The nonce of a record is its number in
//! the stream, counted by the one [`Sealer`] that holds the key, and checked by the one
//! [`Opener`] at the other end: a record that was changed, dropped, repeated or moved does not
//! open, and neither does one sealed under another key. The first record is [`GREETING`]: the
//! far side takes the connection whose first record opens as that, and no other.

use ring::aead;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::FileExt;

/// The key's length (AES-128).
pub const KEY_LEN: usize = 16;
/// The most plaintext one record carries: large enough that the per-record costs (a length, a
/// tag, one write) are nothing next to the bytes, small enough to keep both buffers modest.
pub const RECORD: usize = 256 << 10;
const TAG: usize = 16;
const HEAD: usize = 4;
/// The first record's plaintext.
pub const GREETING: &[u8] = b"ckpt migrate: direct channel, version 1";
/// The greeting record as it comes on the wire: its length, then the sealed greeting. A
/// connection whose first bytes are not this long a record is not the source's.
pub const GREETING_RECORD: usize = HEAD + GREETING.len() + TAG;

/// Whether `head`, a connection's first bytes, begins a greeting record (its length).
pub fn begins_greeting(head: &[u8]) -> bool {
    head.len() >= HEAD && head[..HEAD] == ((GREETING.len() + TAG) as u32).to_le_bytes()
}

/// A fresh key, from the kernel's random source; `None` if it gave none.
pub fn new_key() -> Option<[u8; KEY_LEN]> {
    let mut k = [0u8; KEY_LEN];
    crate::os::random(&mut k).then_some(k)
}

fn key_of(key: &[u8]) -> std::io::Result<aead::LessSafeKey> {
    let k = aead::UnboundKey::new(&aead::AES_128_GCM, key).map_err(|_| bad("a direct channel key of the wrong length"))?;
    Ok(aead::LessSafeKey::new(k))
}

/// Record `n`'s nonce: its number, big-endian, in the nonce's last 8 bytes. One key seals one
/// stream, so no two records under a key share a nonce.
fn nonce(n: u64) -> aead::Nonce {
    let mut b = [0u8; aead::NONCE_LEN];
    b[4..].copy_from_slice(&n.to_be_bytes());
    aead::Nonce::assume_unique_for_key(b)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// The sending end: what is written to it is gathered into a record, which is sealed in place
/// and written out when it is full, or on `flush`. One buffer, reused for every record.
pub struct Sealer<W: Write> {
    key: aead::LessSafeKey,
    /// The number of the next record; never goes back, so a nonce is never used twice.
    next: u64,
    /// The record being gathered: room for its length, RECORD bytes of plaintext and its tag.
    buf: Box<[u8]>,
    /// The end of its plaintext in `buf` (from HEAD).
    used: usize,
    out: W,
    /// For the tests: the next record goes out with one byte changed after it was sealed.
    spoil: bool,
}

impl<W: Write> Sealer<W> {
    /// A sealer under `key`; the stream begins with the greeting, written out at once.
    pub fn new(key: &[u8; KEY_LEN], out: W) -> std::io::Result<Sealer<W>> {
        let mut s = Sealer { key: key_of(key)?, next: 0, buf: vec![0u8; HEAD + RECORD + TAG].into_boxed_slice(), used: HEAD, out, spoil: false };
        s.write_all(GREETING)?;
        s.seal()?;
        Ok(s)
    }

    /// Seals the record gathered so far (if any) and writes it out.
    fn seal(&mut self) -> std::io::Result<()> {
        if self.used == HEAD {
            return Ok(());
        }
        let n = self.next;
        self.next = n.checked_add(1).ok_or_else(|| bad("the direct channel ran out of record numbers"))?;
        let tag = self.key.seal_in_place_separate_tag(nonce(n), aead::Aad::empty(), &mut self.buf[HEAD..self.used]).map_err(|_| bad("sealing a record failed"))?;
        let end = self.used + TAG;
        self.buf[self.used..end].copy_from_slice(tag.as_ref());
        self.buf[..HEAD].copy_from_slice(&((end - HEAD) as u32).to_le_bytes());
        self.used = HEAD;
        if std::mem::take(&mut self.spoil) {
            self.buf[HEAD] ^= 0x20;
        }
        self.out.write_all(&self.buf[..end])
    }

    /// For the tests (`CKPT_MIGRATE_TEST_TAMPER`): the next record is changed on its way, as
    /// by someone between the two sides; the far side must refuse it.
    pub fn spoil_next(&mut self) {
        self.spoil = true;
    }

    /// Adds `len` bytes of `f` from offset `at` to the stream, read straight into the record.
    pub fn file_data(&mut self, f: &std::fs::File, mut at: u64, mut len: usize) -> std::io::Result<()> {
        while len > 0 {
            let room = HEAD + RECORD - self.used;
            if room == 0 {
                self.seal()?;
                continue;
            }
            let n = room.min(len);
            f.read_exact_at(&mut self.buf[self.used..self.used + n], at)?;
            self.used += n;
            at += n as u64;
            len -= n;
        }
        Ok(())
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = HEAD + RECORD - self.used;
        if room == 0 {
            self.seal()?;
            return self.write(data);
        }
        let n = room.min(data.len());
        self.buf[self.used..self.used + n].copy_from_slice(&data[..n]);
        self.used += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.seal()?;
        self.out.flush()
    }
}

/// The receiving end: reads records, opens each in place, and hands out their plaintext (as a
/// `BufRead`, so that file data is written from where it was opened).
pub struct Opener<R: Read> {
    key: aead::LessSafeKey,
    /// The number the next record must have been sealed with.
    next: u64,
    buf: Box<[u8]>,
    /// The part of `buf` not handed out yet.
    at: usize,
    end: usize,
    from: R,
}

impl<R: Read> Opener<R> {
    pub fn new(key: &[u8], from: R) -> std::io::Result<Opener<R>> {
        Ok(Opener { key: key_of(key)?, next: 0, buf: vec![0u8; RECORD + TAG].into_boxed_slice(), at: 0, end: 0, from })
    }

    /// Reads the stream's first record, which must be the greeting: whether it is (a record
    /// that does not open is an error).
    pub fn greeted(&mut self) -> std::io::Result<bool> {
        if !self.record()? {
            return Ok(false);
        }
        let ok = self.buf[self.at..self.end] == *GREETING;
        self.at = self.end;
        Ok(ok)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.from
    }

    /// Reads and opens the next record into `buf`; false at a clean end of the stream (between
    /// records).
    fn record(&mut self) -> std::io::Result<bool> {
        let mut head = [0u8; HEAD];
        let mut got = 0;
        while got < HEAD {
            match self.from.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_le_bytes(head) as usize;
        if !(TAG..=RECORD + TAG).contains(&len) {
            return Err(bad("not a record of migrate's direct channel (its length)"));
        }
        self.from.read_exact(&mut self.buf[..len])?;
        let n = self.next;
        let opened = self.key.open_in_place(nonce(n), aead::Aad::empty(), &mut self.buf[..len]).map(|p| p.len());
        let Ok(plain) = opened else {
            return Err(bad("a record of the direct channel does not open with this migration's key (changed on its way, or not sent by migrate)"));
        };
        // Counted only once opened: a record that failed ends the stream anyway.
        self.next = n.checked_add(1).ok_or_else(|| bad("the direct channel ran out of record numbers"))?;
        (self.at, self.end) = (0, plain);
        Ok(true)
    }
}

impl<R: Read> BufRead for Opener<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        // An empty record (none is sent, but one would open) is skipped, not taken for the end.
        while self.at == self.end {
            if !self.record()? {
                return Ok(&[]);
            }
        }
        Ok(&self.buf[self.at..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.end);
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let have = self.fill_buf()?;
        let n = have.len().min(out.len());
        out[..n].copy_from_slice(&have[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> Vec<u8> {
        let mut s = Sealer::new(key, Vec::new()).unwrap();
        for p in parts {
            s.write_all(p).unwrap();
            s.flush().unwrap();
        }
        s.out
    }

    #[test]
    fn records_round_trip() {
        let key = new_key().unwrap();
        let big: Vec<u8> = (0..RECORD * 2 + 1234).map(|i| (i * 7 % 251) as u8).collect();
        let stream = sealed(&key, &[b"hello", &big, b"", b"end"]);
        let mut o = Opener::new(&key, &stream[..]).unwrap();
        assert!(o.greeted().unwrap());
        let mut all = Vec::new();
        o.read_to_end(&mut all).unwrap();
        let want: Vec<u8> = [&b"hello"[..], &big, b"end"].concat();
        assert!(all == want, "the plaintext came back otherwise");
    }

    #[test]
    fn file_data_goes_into_records() {
        let key = new_key().unwrap();
        let path = std::env::temp_dir().join(format!("ckpt-channel-test-{}", std::process::id()));
        let data: Vec<u8> = (0..RECORD + 5000).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut s = Sealer::new(&key, Vec::new()).unwrap();
        s.write_all(b"head").unwrap();
        s.file_data(&f, 100, data.len() - 100).unwrap();
        s.flush().unwrap();
        let mut o = Opener::new(&key, &s.out[..]).unwrap();
        assert!(o.greeted().unwrap());
        let mut all = Vec::new();
        o.read_to_end(&mut all).unwrap();
        assert_eq!(&all[..4], b"head");
        assert!(all[4..] == data[100..]);
    }

    #[test]
    fn a_changed_byte_is_refused() {
        let key = new_key().unwrap();
        let stream = sealed(&key, &[b"some frames of the migration"]);
        for at in [HEAD + 3, stream.len() - 1, stream.len() - 20] {
            let mut bad = stream.clone();
            bad[at] ^= 1;
            let mut o = Opener::new(&key, &bad[..]).unwrap();
            let r = o.greeted().and_then(|_| o.read_to_end(&mut Vec::new()));
            let e = r.expect_err("a changed record opened");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        }
    }

    #[test]
    fn another_key_is_refused() {
        let stream = sealed(&new_key().unwrap(), &[b"x"]);
        let mut o = Opener::new(&new_key().unwrap(), &stream[..]).unwrap();
        assert!(o.greeted().is_err());
    }

    #[test]
    fn records_cannot_be_repeated_or_reordered() {
        let key = new_key().unwrap();
        let stream = sealed(&key, &[b"first", b"second"]);
        // The greeting, then the two records, each its length and sealed bytes.
        let mut records = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let len = u32::from_le_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
            records.push(&stream[at..at + 4 + len]);
            at += 4 + len;
        }
        assert_eq!(records.len(), 3);
        for order in [[0, 2, 1], [0, 1, 1], [0, 0, 1]] {
            let replayed: Vec<u8> = order.iter().flat_map(|&i| records[i].iter().copied()).collect();
            let mut o = Opener::new(&key, &replayed[..]).unwrap();
            let r = o.greeted().and_then(|ok| if ok { o.read_to_end(&mut Vec::new()) } else { Err(bad("no greeting")) });
            assert!(r.is_err(), "records in the order {order:?} were taken");
        }
    }

    #[test]
    fn nonces_follow_the_record_count() {
        // Each record's nonce is its number: the sealer counts up once per record it seals.
        let key = new_key().unwrap();
        let mut s = Sealer::new(&key, Vec::new()).unwrap();
        assert_eq!(s.next, 1);
        s.flush().unwrap();
        assert_eq!(s.next, 1, "an empty record was sealed");
        s.write_all(b"a").unwrap();
        s.flush().unwrap();
        s.write_all(b"b").unwrap();
        s.flush().unwrap();
        assert_eq!(s.next, 3);
    }
}
