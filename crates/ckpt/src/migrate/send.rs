//! What a round sends: the image and its bases as the far side does not have them yet. Images
//! are never rewritten in place (a new one is renamed over the old), so a file is known by its
//! inode: one sent before under the same name is skipped, one sent before under another name
//! (a base is a hard link of an earlier image) becomes a `Link`, and only new files are copied,
//! their holes left out (an image leaves zero pages as holes).

use super::channel::Sealer;
use super::wire::{self, Kind};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::process::ChildStdin;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// A file as the far side has it: its inode here, and its length and modification time (an
/// inode number can be reused once a file is gone). Not its change time, which a new hard
/// link to it changes.
pub type Id = (u64, u64, u64, i64, i64);

fn id_of(m: &std::fs::Metadata) -> Id {
    (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

/// What the far side holds, name by name.
#[derive(Default)]
pub struct Sender {
    names: HashMap<String, Id>,
}

/// Where the source's frames go: ssh's stdin, or the direct channel.
pub enum To {
    Ssh {
        w: BufWriter<ChildStdin>,
        /// ssh's stdin is a pipe: file data is spliced into it (after `w` is flushed) rather
        /// than read and written; false once splice was refused.
        splice: bool,
    },
    Direct {
        w: Box<Sealer<TcpStream>>,
        /// ssh's stdin, kept open (its end would end the far side's stdin, which is no matter,
        /// but is not a thing to say for no reason).
        _ssh: BufWriter<ChildStdin>,
    },
    /// Nothing (the frames of the relay of the program's stdin went elsewhere).
    Nowhere,
}

impl To {
    /// Adds `len` bytes of `f` at `at` to the stream, the file's pages copied as few times as
    /// can be: spliced into ssh's pipe (the CPU is ssh's, for its encryption), or read straight
    /// into the direct channel's record, sealed there in place.
    pub fn file_data(&mut self, f: &std::fs::File, at: u64, len: usize) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        match self {
            To::Direct { w, .. } => w.file_data(f, at, len),
            To::Ssh { w, splice } => {
                let mut off = at as i64;
                let end = off + len as i64;
                if *splice {
                    w.flush()?;
                    let pipe = w.get_ref().as_raw_fd();
                    while off < end {
                        let left = (end - off) as usize;
                        match crate::os::splice(f.as_raw_fd(), Some(&mut off), pipe, None, left) {
                            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                                // Not a pipe after all, or a file splice does not read: the
                                // rest is copied.
                                *splice = false;
                                break;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                let mut buf = vec![0u8; (end - off).min(1 << 16) as usize];
                while off < end {
                    let n = ((end - off) as usize).min(buf.len());
                    f.read_exact_at(&mut buf[..n], off as u64)?;
                    w.write_all(&buf[..n])?;
                    off += n as i64;
                }
                Ok(())
            }
            To::Nowhere => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl Write for To {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            To::Ssh { w, .. } => w.write(b),
            To::Direct { w, .. } => w.write(b),
            To::Nowhere => Ok(b.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            To::Ssh { w, .. } => w.flush(),
            To::Direct { w, .. } => w.flush(),
            To::Nowhere => Ok(()),
        }
    }
}

impl Sender {
    /// Sends what changed in the image set of `image` (the image and its `.base-` files) since
    /// the last round: links, then new files, then removals, so that a link is made from a
    /// name before a new file replaces it. The bytes of file data sent. The caller flushes `w`
    /// (the last round's request to restart goes in the same write as its last bytes).
    pub fn round(&mut self, w: &mut To, image: &Path) -> std::io::Result<u64> {
        let dir = crate::dir_of(image);
        let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base_prefix = format!("{name}.base-");
        let mut now: Vec<(String, Id)> = Vec::new();
        for e in std::fs::read_dir(dir)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let is_base = n.strip_prefix(&base_prefix).is_some_and(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
            if n != name && !is_base {
                continue;
            }
            // A base the writer removes as we look was not needed.
            if let Ok(m) = std::fs::metadata(e.path()) {
                now.push((n, id_of(&m)));
            }
        }
        if !now.iter().any(|(n, _)| *n == name) {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no image at {}", crate::shown(image))));
        }
        let mut sent = 0;
        let mut copies = Vec::new();
        for (n, id) in &now {
            if self.names.get(n) == Some(id) {
                continue;
            }
            match self.names.iter().find(|(_, had)| *had == id).map(|(from, _)| from.clone()) {
                Some(from) => {
                    wire::write(w, Kind::Link, &[&wire::link(&from, n)])?;
                    self.names.insert(n.clone(), *id);
                }
                None => copies.push((n.clone(), *id)),
            }
        }
        for (n, id) in copies {
            match std::fs::File::open(dir.join(&n)) {
                Ok(f) => {
                    sent += self.copy(w, &f, &n)?;
                    self.names.insert(n, id);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && n != name => {}
                Err(e) => return Err(e),
            }
        }
        let gone: Vec<String> = self.names.keys().filter(|n| !now.iter().any(|(m, _)| m == *n)).cloned().collect();
        for n in gone {
            wire::write(w, Kind::Remove, &[n.as_bytes()])?;
            self.names.remove(&n);
        }
        Ok(sent)
    }

    /// Sends one file's data stretches; their total length.
    fn copy(&mut self, w: &mut To, f: &std::fs::File, name: &str) -> std::io::Result<u64> {
        let len = f.metadata()?.len();
        wire::write(w, Kind::File, &[&len.to_le_bytes(), name.as_bytes()])?;
        let mut sent = 0;
        for (from, to) in crate::os::data_extents(f, 0, len) {
            sent += self.send_range(w, f, from, to)?;
        }
        wire::write(w, Kind::Done, &[])?;
        Ok(sent)
    }

    /// Sends bytes `from..to` of `f` as `Data` frames; their length.
    fn send_range(&mut self, w: &mut To, f: &std::fs::File, from: u64, to: u64) -> std::io::Result<u64> {
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(wire::CHUNK);
            wire::write_head(w, Kind::Data, 8 + n)?;
            w.write_all(&at.to_le_bytes())?;
            w.file_data(f, at, n)?;
            at += n as u64;
        }
        Ok(to.saturating_sub(from))
    }

    /// Begins sending `file`, an image its writer is still writing (opened through the
    /// writer's descriptor), as `name`.
    pub fn begin(&mut self, w: &mut To, file: std::fs::File, name: &str) -> std::io::Result<Growing> {
        wire::write(w, Kind::File, &[&wire::GROWING.to_le_bytes(), name.as_bytes()])?;
        Ok(Growing { file, name: name.to_string(), upto: 0, sent: Vec::new() })
    }

    /// Sends what the writer added to `g` since the last call: the data below the file's
    /// length, which the writer has written (it writes the data in order, leaving zero pages
    /// as holes, and the headers at the start last). The bytes sent.
    pub fn grow(&mut self, w: &mut To, g: &mut Growing) -> std::io::Result<u64> {
        let len = g.file.metadata()?.len();
        if len <= g.upto {
            return Ok(0);
        }
        let mut sent = 0;
        let extents: Vec<(u64, u64)> = crate::os::data_extents(&g.file, g.upto, len).collect();
        for (from, to) in extents {
            sent += self.send_range(w, &g.file, from, to)?;
            g.sent.push((from, to));
        }
        g.upto = len;
        Ok(sent)
    }

    /// Ends sending `g` once its image is in place at `image`: sends the data not sent yet (the
    /// headers, what came last) and its length. The bytes sent, and the identity the far side is
    /// to confirm with its `Checked` answer; `None` if the file followed was not the image (then
    /// it is removed there, and the next round sends the image as any new file).
    pub fn finish(&mut self, w: &mut To, mut g: Growing, image: &Path) -> std::io::Result<(u64, Option<Id>)> {
        let followed = g.file.metadata()?;
        let now = std::fs::metadata(image)?;
        if (followed.dev(), followed.ino()) != (now.dev(), now.ino()) {
            wire::write(w, Kind::Done, &[&followed.len().to_le_bytes()])?;
            wire::write(w, Kind::Remove, &[g.name.as_bytes()])?;
            return Ok((0, None));
        }
        let len = now.len();
        let extents: Vec<(u64, u64)> = crate::os::data_extents(&g.file, 0, len).collect();
        let sent = std::mem::take(&mut g.sent);
        let mut more = 0;
        for (from, to) in extents {
            for (a, b) in unsent(from, to, &sent) {
                more += self.send_range(w, &g.file, a, b)?;
            }
        }
        if std::env::var_os("CKPT_MIGRATE_TEST_SPOIL").is_some() {
            // For the tests: one byte sent early is sent again, wrong, as if the writer had
            // changed it after it was sent; the far side's checks must catch it.
            // In the middle of the longest stretch: a page the program is unlikely to have
            // written since, so that the byte matters.
            if let Some(at) = sent.iter().max_by_key(|(a, b)| b - a).map(|(a, b)| a + (b - a) / 2) {
                let mut b = [0u8];
                g.file.read_exact_at(&mut b, at)?;
                wire::write(w, Kind::Data, &[&at.to_le_bytes(), &[!b[0]]])?;
            }
        }
        wire::write(w, Kind::Done, &[&len.to_le_bytes()])?;
        let id = id_of(&now);
        self.names.insert(g.name, id);
        Ok((more, Some(id)))
    }

    /// The far side found the file it has as `id` wrong: every name of it is sent again, whole,
    /// by the next round.
    pub fn forget(&mut self, id: Id) {
        self.names.retain(|_, had| *had != id);
    }
}

/// A file sent while it is written.
pub struct Growing {
    file: std::fs::File,
    name: String,
    /// How far it has been looked at, and the stretches sent (in order).
    upto: u64,
    sent: Vec<(u64, u64)>,
}

/// The parts of `from..to` that no stretch of `sent` (in order, not overlapping) covers.
fn unsent(from: u64, to: u64, sent: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut left = Vec::new();
    let mut at = from;
    for &(a, b) in sent {
        if b <= at || a >= to {
            continue;
        }
        if a > at {
            left.push((at, a));
        }
        at = at.max(b);
        if at >= to {
            break;
        }
    }
    if at < to {
        left.push((at, to));
    }
    left
}

#[cfg(test)]
mod tests {
    use super::unsent;

    #[test]
    fn what_is_left_to_send() {
        assert_eq!(unsent(0, 100, &[]), [(0, 100)]);
        assert_eq!(unsent(0, 100, &[(10, 20), (30, 100)]), [(0, 10), (20, 30)]);
        assert_eq!(unsent(15, 35, &[(10, 20), (30, 100)]), [(20, 30)]);
        assert_eq!(unsent(0, 100, &[(0, 100)]), []);
        assert_eq!(unsent(50, 60, &[(0, 10)]), [(50, 60)]);
    }
}
