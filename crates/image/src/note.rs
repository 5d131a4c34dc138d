//! ELF notes: `namesz, descsz, type`, then name and descriptor, each padded to 4 bytes.

use crate::bytes::{Reader, Writer};
use crate::ImageError;

pub const NT_PRSTATUS: u32 = 1;
pub const NT_FPREGSET: u32 = 2;
pub const NT_PRPSINFO: u32 = 3;
pub const NT_AUXV: u32 = 6;
pub const NT_X86_XSTATE: u32 = 0x202;

/// Size of a note with this name and descriptor length, padding included.
pub const fn note_size(name: &[u8], desc_len: usize) -> usize {
    12 + (name.len() + 1).next_multiple_of(4) + desc_len.next_multiple_of(4)
}

/// Writes a note header and name; the caller writes `desc_len` descriptor bytes next and then
/// calls `w.align(4)`.
pub fn begin_note(w: &mut Writer, name: &[u8], n_type: u32, desc_len: usize) {
    w.u32(name.len() as u32 + 1);
    w.u32(desc_len as u32);
    w.u32(n_type);
    w.bytes(name);
    w.u8(0);
    w.align(4);
}

/// Writes a whole note.
pub fn write_note(w: &mut Writer, name: &[u8], n_type: u32, desc: &[u8]) {
    begin_note(w, name, n_type, desc.len());
    w.bytes(desc);
    w.align(4);
}

/// One note found in a note segment.
#[derive(Debug, Clone, Copy)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub n_type: u32,
    pub desc: &'a [u8],
    /// Offset of the descriptor from the start of the note segment.
    pub desc_offset: usize,
}

/// Iterates over the notes in a segment; a malformed note ends iteration with an error.
pub struct Notes<'a> {
    r: Reader<'a>,
}

impl<'a> Notes<'a> {
    pub fn new(segment: &'a [u8]) -> Self {
        Notes { r: Reader::new(segment) }
    }
}

impl<'a> Iterator for Notes<'a> {
    type Item = Result<Note<'a>, ImageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        let mut read = || -> Result<Note<'a>, ImageError> {
            let namesz = self.r.u32()? as usize;
            let descsz = self.r.u32()? as usize;
            let n_type = self.r.u32()?;
            let name = self.r.bytes(namesz)?;
            let name = name.strip_suffix(&[0]).unwrap_or(name);
            self.r.align(4)?;
            let desc_offset = self.r.pos();
            let desc = self.r.bytes(descsz)?;
            // The last note may end without padding.
            if self.r.remaining() > 0 {
                self.r.align(4)?;
            }
            Ok(Note { name, n_type, desc, desc_offset })
        };
        let item = read();
        if item.is_err() {
            self.r = Reader::new(&[]);
        }
        Some(item.map_err(|_| ImageError::Malformed("bad note segment")))
    }
}
