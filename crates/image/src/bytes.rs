//! Little-endian cursors over byte slices: the only way this crate reads or writes bytes.
//!
//! Every read is bounds-checked and reports [`ImageError::Truncated`] instead of panicking, so a
//! hostile image can never crash the reader.

use crate::ImageError;

/// Appends little-endian values to a fixed buffer, remembering the first overflow.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0, overflow: false }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes written so far, or `None` if the buffer was too small.
    pub fn finish(self) -> Option<usize> {
        if self.overflow {
            None
        } else {
            Some(self.pos)
        }
    }

    pub fn bytes(&mut self, data: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.pos += data.len();
            }
            None => self.overflow = true,
        }
    }

    /// Bytes still free in the buffer.
    pub fn room(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Overwrites the u32 at `at`, already written (a length known only later).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        match self.buf.get_mut(at..at + 4).filter(|_| at + 4 <= self.pos) {
            Some(dst) => dst.copy_from_slice(&v.to_le_bytes()),
            None => self.overflow = true,
        }
    }

    pub fn zeros(&mut self, n: usize) {
        match self.buf.get_mut(self.pos..self.pos + n) {
            Some(dst) => {
                dst.fill(0);
                self.pos += n;
            }
            None => self.overflow = true,
        }
    }

    /// Pads with zeros up to a multiple of `align`.
    pub fn align(&mut self, align: usize) {
        let pad = self.pos.next_multiple_of(align) - self.pos;
        self.zeros(pad);
    }

    pub fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    /// Appends `v` in decimal ASCII (for building paths such as `/proc/self/task/TID`).
    pub fn decimal(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(&digits[i..]);
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Reads little-endian values from a byte slice.
#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ImageError> {
        let end = self.pos.checked_add(n).ok_or(ImageError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(ImageError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ImageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), ImageError> {
        self.bytes(n).map(|_| ())
    }

    pub fn align(&mut self, align: usize) -> Result<(), ImageError> {
        let pad = self.pos.next_multiple_of(align) - self.pos;
        self.skip(pad)
    }

    pub fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, ImageError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, ImageError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Reads a little-endian u64 at `off`, or 0 when out of range (for optional fields).
pub fn le_u64_at(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// The records of a note's descriptor, back to back, each read by `read`; a record that does not
/// decode is the last item (its error). The descriptors of `NT_CKPT_FDS`, `NT_CKPT_TIMERS` and
/// `NT_CKPT_EPOLL` are read this way.
pub struct Records<'a, T> {
    r: Reader<'a>,
    read: fn(&mut Reader<'a>) -> Result<T, ImageError>,
}

impl<'a, T> Records<'a, T> {
    pub fn new(desc: &'a [u8], read: fn(&mut Reader<'a>) -> Result<T, ImageError>) -> Self {
        Records { r: Reader::new(desc), read }
    }
}

impl<T> Iterator for Records<'_, T> {
    type Item = Result<T, ImageError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        let item = (self.read)(&mut self.r);
        if item.is_err() {
            self.r = Reader::new(&[]);
        }
        Some(item)
    }
}

/// The first record of `all()` that satisfies `pred`, looked for in `cursor` from where its
/// last search stopped, then from the start (records that do not read are passed over):
/// lookups made in the order the records are stored (a checkpoint writes a descriptor's
/// records in the order of the descriptors) cost one walk over them in all, where a search
/// from the start for each would cost a walk each; any order stays correct.
pub fn find_from<T, I: Iterator<Item = Result<T, ImageError>>>(cursor: &mut I, all: impl Fn() -> I, pred: impl Fn(&T) -> bool) -> Option<T> {
    if let Some(found) = cursor.find_map(|r| r.ok().filter(|r| pred(r))) {
        return Some(found);
    }
    *cursor = all();
    cursor.find_map(|r| r.ok().filter(|r| pred(r)))
}

/// Bytes before the records of a table note: the number of records and the record size, u32
/// each (`NT_CKPT_TREE`, `NT_CKPT_SHARED`, `NT_CKPT_FILEMAPS`).
pub const TABLE_HEADER_SIZE: usize = 8;

/// Writes a table note's header: `count` records of `record_size` bytes follow.
pub fn write_table_header(w: &mut Writer, count: usize, record_size: usize) {
    w.u32(count as u32);
    w.u32(record_size as u32);
}

/// The records of a table note's descriptor, after checking its header: the record size is
/// `record_size`, there are at most `max` records, and they fill the descriptor exactly.
/// Returns their number too. `bad` names the table in the error.
pub fn table<'a, T>(
    desc: &'a [u8],
    record_size: usize,
    max: usize,
    read: fn(&mut Reader<'a>) -> Result<T, ImageError>,
    bad: &'static str,
) -> Result<(usize, Records<'a, T>), ImageError> {
    let mut r = Reader::new(desc);
    let count = r.u32()? as usize;
    let size = r.u32()? as usize;
    if size != record_size || count > max || Some(desc.len()) != count.checked_mul(record_size).and_then(|n| n.checked_add(TABLE_HEADER_SIZE)) {
        return Err(ImageError::Malformed(bad));
    }
    Ok((count, Records::new(&desc[TABLE_HEADER_SIZE..], read)))
}
