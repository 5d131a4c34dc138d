//! The [`AttachArgs`] block as bytes: filled field by field at the structure's own offsets
//! (`ckpt_sigsafe::attach` is the one place its layout is written), and its results read back
//! the same way, so that no code needs to view the structure as memory.

use ckpt_sigsafe::attach::{AttachArgs, MAGIC, VERSION};
use std::mem::offset_of;

pub struct Block(pub Vec<u8>);

/// What the entry wrote into the block.
pub struct Results {
    pub status: i64,
    pub writer_pid: u32,
    pub report_fd: i32,
    pub message: String,
}

/// The `status` the block starts with: the entry writes another on every path but one, its
/// refusal of a block it does not know (`-EINVAL`, the block untouched), which must not read as
/// success (0).
pub const NOT_TAKEN: i64 = i64::MIN;

impl Block {
    pub fn new(flags: u32) -> Block {
        let mut b = Block(vec![0u8; size_of::<AttachArgs>()]);
        b.put(offset_of!(AttachArgs, magic), &MAGIC.to_ne_bytes());
        b.put(offset_of!(AttachArgs, version), &VERSION.to_ne_bytes());
        b.put(offset_of!(AttachArgs, flags), &flags.to_ne_bytes());
        b.put(offset_of!(AttachArgs, report_fd), &(-1i32).to_ne_bytes());
        b.put(offset_of!(AttachArgs, status), &NOT_TAKEN.to_ne_bytes());
        b.put(offset_of!(AttachArgs, tree_ctl_fd), &(-1i32).to_ne_bytes());
        b
    }

    pub fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A NUL-terminated string into a field of `room` bytes at `at`; an error when it does
    /// not fit.
    pub fn put_str(&mut self, at: usize, room: usize, s: &[u8]) -> Result<(), String> {
        if s.len() >= room || s.contains(&0) {
            return Err(format!("{} is too long (or holds a NUL byte) for the checkpoint code", String::from_utf8_lossy(s)));
        }
        self.put(at, s);
        self.0[at + s.len()] = 0;
        Ok(())
    }

    pub fn u32(&mut self, at: usize, v: u32) {
        self.put(at, &v.to_ne_bytes());
    }

    pub fn u64s(&mut self, at: usize, v: &[u64]) {
        for (i, x) in v.iter().enumerate() {
            self.put(at + 8 * i, &x.to_ne_bytes());
        }
    }

    /// The results, from the block as the entry left it (`bytes`).
    pub fn results(bytes: &[u8]) -> Results {
        let word = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap());
        let half = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let m = &bytes[offset_of!(AttachArgs, message)..offset_of!(AttachArgs, message) + 512];
        let m = &m[..m.iter().position(|&c| c == 0).unwrap_or(m.len())];
        Results {
            status: word(offset_of!(AttachArgs, status)) as i64,
            writer_pid: half(offset_of!(AttachArgs, writer_pid)),
            report_fd: half(offset_of!(AttachArgs, report_fd)) as i32,
            message: ckpt_sigsafe::out::Lossy(m).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block the entry left untouched says the checkpoint was not taken.
    #[test]
    fn an_untouched_block_is_no_success() {
        let r = Block::results(&Block::new(0).0);
        assert_eq!((r.status, r.writer_pid, r.report_fd, r.message.as_str()), (NOT_TAKEN, 0, -1, ""));
    }
}
