//! The protocol `ckpt migrate` speaks with `ckpt receive` over ssh's stdin and stdout: frames
//! of one kind byte, a length (u32, little-endian) and that many bytes of payload. The far side
//! speaks first, with a hello that carries the protocol's version, so that two ckpt builds that
//! do not understand each other find out before anything is sent. Everything else is in the
//! order the two sides need it; there is no negotiation beyond the version and whether the
//! source's frames go on a direct channel (channel.rs: `Key`, `Direct`) rather than ssh's
//! stdin. The far side's frames always come on ssh's stdout.

use std::io::{Read, Write};

/// The protocol's version: a far side with another one is refused before anything moves.
pub const VERSION: u32 = 3;

/// The largest payload a frame may carry: file data goes in pieces of at most [`CHUNK`] bytes
/// (plus their offset), everything else is small. A larger length means the stream is not ours
/// (a login banner, a shell's message on stdout), and the connection is dropped.
pub const MAX_PAYLOAD: usize = CHUNK + 64;

/// How much file data one frame carries: large enough that the framing costs nothing next to
/// the copying, small enough to keep both sides' buffers modest.
pub const CHUNK: usize = 1 << 20;

/// What a frame is. Source to far side: `File` … `Restart`, `Stdin`, `StdinEnd`. Far side to
/// source: the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Far side: u32 version, then `key=value` lines (`ckpt`, `host`, `restart`: `yes` or why
    /// not; `direct`: the address and port it listens on for the direct channel, or `no: why`).
    Hello = 1,
    /// A file comes: u64 length, then its name. Its data follows in `Data` frames, then `Done`.
    /// A length of [`GROWING`]: the file is sent while it is written (round 0's image), its
    /// length comes with `Done`, and the far side answers its checks with `Checked`.
    File = 2,
    /// u64 offset in the current file, then bytes. What no `Data` frame covers is a hole.
    Data = 3,
    /// The current file is complete; for a [`GROWING`] one, its length (u64) is the payload.
    Done = 4,
    /// u16 length of the first name, the name a file already there has, then a second name
    /// that becomes another name of the same file (an image's base is a hard link of an
    /// earlier image).
    Link = 5,
    /// A name to remove (a base no image needs any longer).
    Remove = 6,
    /// Restart: u8 flags ([`DETACH`]), then the image's name.
    Restart = 7,
    /// Bytes for the program's stdin; `StdinEnd`: its end.
    Stdin = 8,
    StdinEnd = 9,
    /// Far side: the restored program runs (myrestart is past its point of no return). Four
    /// u32: myrestart's PID there, the milliseconds the far side's checks still took once the
    /// restart was asked for, those until the program ran, and 1 if every file had passed the
    /// far side's checks (myrestart did not check them again), else 0.
    Running = 10,
    /// Far side: the restart was refused or failed before the program ran; why.
    Refused = 11,
    /// Far side: something failed there (a write, a disk full); why. Nothing was restarted.
    Error = 12,
    /// Far side: bytes the program wrote to its stdout, its stderr.
    Stdout = 13,
    Stderr = 14,
    /// Far side: the program ended; its wait status (i32).
    Exit = 15,
    /// A signal migrate received (u8), for the program (SIGINT, SIGTERM, SIGHUP).
    Signal = 16,
    /// Far side: the checks of a [`GROWING`] file: u8 ([`CHECKED_GOOD`], [`CHECKED_BAD`] or
    /// [`CHECKED_LEFT`]), then its name as it came.
    Checked = 17,
    /// Source: the key of the direct channel (see channel.rs); the far side takes the first
    /// connection to its port whose first record opens with it. Sent first, or not at all.
    Key = 18,
    /// Far side, after a `Key`: u8 1, the connection was taken, and every frame of the
    /// source's comes on it from here; or 0 and why not (none came in time), and they keep
    /// coming through ssh. Source, after a `Key`: it could not connect, everything comes
    /// through ssh (the far side stops listening; it does not answer).
    Direct = 19,
}

/// A `File` frame's length for a file sent as it is written.
pub const GROWING: u64 = u64::MAX;

/// `Checked`: every stored byte matches its hash.
pub const CHECKED_GOOD: u8 = 1;
/// `Checked`: some do not (a byte was sent before the writer's last word on it): the source
/// sends the file again, whole.
pub const CHECKED_BAD: u8 = 0;
/// `Checked`: not checked there (a tree's image, checked by myrestart at the restart).
pub const CHECKED_LEFT: u8 = 2;

/// `Restart` flag: the far side returns once the program runs, leaving it in a session of its
/// own with its standard streams on /dev/null.
pub const DETACH: u8 = 1;

impl Kind {
    fn of(b: u8) -> Option<Kind> {
        use Kind::*;
        [Hello, File, Data, Done, Link, Remove, Restart, Stdin, StdinEnd, Running, Refused, Error, Stdout, Stderr, Exit, Signal, Checked, Key, Direct].into_iter().find(|k| *k as u8 == b)
    }
}

/// One frame as read.
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The payload as text (messages, names are shown lossily).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Writes one frame whose payload is the concatenation of `parts` (a header and data need
/// not be copied together first).
pub fn write(w: &mut impl Write, kind: Kind, parts: &[&[u8]]) -> std::io::Result<()> {
    write_head(w, kind, parts.iter().map(|p| p.len()).sum())?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

/// Writes the head of a frame whose `len` bytes of payload the caller writes next (spliced
/// from a file).
pub fn write_head(w: &mut impl Write, kind: Kind, len: usize) -> std::io::Result<()> {
    debug_assert!(len <= MAX_PAYLOAD);
    let mut head = [0u8; 5];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&(len as u32).to_le_bytes());
    w.write_all(&head)
}

/// Reads one frame; `None` at a clean end of the stream (between frames).
pub fn read(r: &mut impl Read) -> std::io::Result<Option<Frame>> {
    let mut payload = Vec::new();
    Ok(read_into(r, &mut payload)?.map(|kind| Frame { kind, payload }))
}

/// Reads one frame's kind, its payload into `payload` (a buffer used again and again: a
/// gigabyte of image comes as a thousand frames); `None` at a clean end of the stream.
pub fn read_into(r: &mut impl Read, payload: &mut Vec<u8>) -> std::io::Result<Option<Kind>> {
    let Some((kind, len)) = read_head(r)? else { return Ok(None) };
    payload.resize(len, 0);
    r.read_exact(payload)?;
    Ok(Some(kind))
}

/// Reads one frame's head: its kind and the length of the payload that follows (at most
/// [`MAX_PAYLOAD`]); `None` at a clean end of the stream.
pub fn read_head(r: &mut impl Read) -> std::io::Result<Option<(Kind, usize)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let kind = Kind::of(head[0]).ok_or_else(|| bad(format!("not ckpt's protocol (a frame of kind {})", head[0])))?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(bad(format!("not ckpt's protocol (a frame of {len} bytes)")));
    }
    Ok(Some((kind, len)))
}

/// The hello's payload.
pub fn hello(facts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = VERSION.to_le_bytes().to_vec();
    for (k, v) in facts {
        // A value is one line: a newline in a host name would make a fact of its own.
        p.extend_from_slice(format!("{k}={}\n", v.replace('\n', " ")).as_bytes());
    }
    p
}

/// A hello's version and facts.
pub fn parse_hello(p: &[u8]) -> Option<(u32, Vec<(String, String)>)> {
    let version = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    let facts = String::from_utf8_lossy(&p[4..]).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Some((version, facts))
}

/// A `Link` frame's payload: the existing name and the new one.
pub fn link(from: &str, to: &str) -> Vec<u8> {
    let mut p = (from.len() as u16).to_le_bytes().to_vec();
    p.extend_from_slice(from.as_bytes());
    p.extend_from_slice(to.as_bytes());
    p
}

pub fn parse_link(p: &[u8]) -> Option<(String, String)> {
    let n = u16::from_le_bytes(p.get(..2)?.try_into().ok()?) as usize;
    let from = std::str::from_utf8(p.get(2..2 + n)?).ok()?;
    let to = std::str::from_utf8(&p[2 + n..]).ok()?;
    Some((from.to_string(), to.to_string()))
}

/// Splits a payload that begins with a u64 (a length, an offset) from the rest.
pub fn split_u64(p: &[u8]) -> Option<(u64, &[u8])> {
    Some((u64::from_le_bytes(p.get(..8)?.try_into().ok()?), &p[8..]))
}

/// Whether `name` may name a file in the far side's directory: a plain name, no `/`, not `.`
/// or `..` (the far side never writes outside its directory, whatever it is sent).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.contains('/') && !name.contains('\0') && name != "." && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write(&mut buf, Kind::Data, &[&7u64.to_le_bytes(), b"abc"]).unwrap();
        write(&mut buf, Kind::Link, &[&link("img", "img.base-1")]).unwrap();
        let mut r = &buf[..];
        let f = read(&mut r).unwrap().unwrap();
        assert_eq!(f.kind, Kind::Data);
        assert_eq!(split_u64(&f.payload), Some((7, &b"abc"[..])));
        let f = read(&mut r).unwrap().unwrap();
        assert_eq!(parse_link(&f.payload), Some(("img".into(), "img.base-1".into())));
        assert!(read(&mut r).unwrap().is_none());
    }

    #[test]
    fn foreign_bytes_are_refused() {
        let mut r = &b"Welcome to the machine\n"[..];
        assert!(read(&mut r).is_err());
    }

    #[test]
    fn names_stay_in_the_directory() {
        assert!(plain_name("myckpt.base-0123"));
        for bad in ["", ".", "..", "a/b", "/etc/passwd"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
