//! What a round sends: the image and its bases as the far side does not have them yet. Images
//! are never rewritten in place (a new one is renamed over the old), so a file is known by its
//! inode: one sent before under the same name is skipped, one sent before under another name
//! (a base is a hard link of an earlier image) becomes a `Link`, and only new files are copied,
//! their holes left out (an image leaves zero pages as holes).

use super::wire::{self, Kind};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// A file as the far side has it: its inode here, and its length and modification time (an
/// inode number can be reused once a file is gone). Not its change time, which a new hard
/// link to it changes.
type Id = (u64, u64, u64, i64, i64);

fn id_of(m: &std::fs::Metadata) -> Id {
    (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

/// What the far side holds, name by name.
#[derive(Default)]
pub struct Sender {
    names: HashMap<String, Id>,
    buf: Vec<u8>,
}

impl Sender {
    /// Sends what changed in the image set of `image` (the image and its `.base-` files) since
    /// the last round: links, then new files, then removals, so that a link is made from a
    /// name before a new file replaces it. The bytes of file data sent. The caller flushes `w`
    /// (the last round's request to restart goes in the same write as its last bytes).
    pub fn round(&mut self, w: &mut impl Write, image: &Path) -> std::io::Result<u64> {
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
    fn copy(&mut self, w: &mut impl Write, f: &std::fs::File, name: &str) -> std::io::Result<u64> {
        let len = f.metadata()?.len();
        wire::write(w, Kind::File, &[&len.to_le_bytes(), name.as_bytes()])?;
        self.buf.resize(wire::CHUNK, 0);
        let mut sent = 0;
        for (from, to) in crate::os::data_extents(f, 0, len) {
            let mut at = from;
            while at < to {
                let n = ((to - at) as usize).min(wire::CHUNK);
                f.read_exact_at(&mut self.buf[..n], at)?;
                wire::write(w, Kind::Data, &[&at.to_le_bytes(), &self.buf[..n]])?;
                at += n as u64;
                sent += n as u64;
            }
        }
        wire::write(w, Kind::Done, &[])?;
        Ok(sent)
    }
}
