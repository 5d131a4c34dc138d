//! `NT_CKPT_CHAIN`: an image's identity, and the older images (bases) its unchanged pages are in.
//!
//! Every image carries a 64-bit identity chosen when it is taken. An *incremental* image stores
//! only the pages the program wrote since the image before it; each page it leaves out is named
//! by a run of `NT_CKPT_SHARED` whose `source` is a base listed here (1 = the first record),
//! and lies in that base's own stored bytes (never in pages the base itself left to another).
//! A base is named by its file name in the image's own directory and bound by its identity, its
//! `meta_hash` (which covers its headers, so its region hashes) and its length.
//!
//! ```text
//!   u64 id            this image's identity
//!   u32 count, u32 record size (288)   bases, at most MAX_BASES (0: a full image)
//!   count records:
//!     u64 id          the base's identity (its own NT_CKPT_CHAIN id)
//!     u64 meta_hash   the base's meta_hash
//!     u64 file_len    the base's length in bytes
//!     u32 name_len    1..=255
//!     u32 reserved    0
//!     u8  name[256]   file name in the image's directory (no '/'), zero-padded
//! ```

use crate::bytes::{Reader, Records, Writer};
use crate::image::Image;
use crate::shared::SharedRun;
use crate::{ImageError, PAGE_SIZE};

pub const BASE_RECORD_SIZE: usize = 288;
/// Bytes before the base records: the identity and the table header.
pub const CHAIN_HEADER_SIZE: usize = 8 + crate::bytes::TABLE_HEADER_SIZE;
/// Most bases one image may need.
pub const MAX_BASES: usize = 16;
/// Longest base file name.
pub const MAX_NAME: usize = 255;

/// An older image whose stored pages this one uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub id: u64,
    pub meta_hash: u64,
    pub file_len: u64,
    pub name_len: u32,
    pub name: [u8; 256],
}

impl Base {
    pub const EMPTY: Base = Base { id: 0, meta_hash: 0, file_len: 0, name_len: 0, name: [0; 256] };

    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len as usize]
    }

    /// The name, NUL-terminated.
    pub fn name_with_nul(&self) -> &[u8] {
        &self.name[..self.name_len as usize + 1]
    }

    /// Whether `base` is the very image this record names: the identity, header checksum and
    /// length recorded when the image was built on it. (A file put in its place, even another
    /// image of the same program, is not.)
    pub fn is(&self, base: &Image) -> bool {
        base.file_len == self.file_len && base.meta_hash() == self.meta_hash && base.chain().and_then(Result::ok).is_some_and(|c| c.id == self.id)
    }

    pub fn write(&self, w: &mut Writer) {
        w.u64(self.id);
        w.u64(self.meta_hash);
        w.u64(self.file_len);
        w.u32(self.name_len);
        w.u32(0);
        w.bytes(&self.name);
    }

    pub fn read(r: &mut Reader) -> Result<Base, ImageError> {
        let mut b = Base { id: r.u64()?, meta_hash: r.u64()?, file_len: r.u64()?, name_len: r.u32()?, ..Base::EMPTY };
        r.skip(4)?;
        b.name = r.array()?;
        let n = b.name_len as usize;
        if n == 0 || n > MAX_NAME || !valid_name(&b.name[..n]) || b.name[n..].iter().any(|&c| c != 0) {
            return Err(ImageError::Malformed("bad base image record"));
        }
        Ok(b)
    }
}

/// Where the file name starts in an image path: just after its last `/` (0 for a bare name).
/// What comes before it, slash included, is the image's directory, where its bases and older
/// images are.
pub fn name_start(path: &[u8]) -> usize {
    path.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1)
}

/// The file name of an image path (the path itself when it has no `/`).
pub fn file_name(path: &[u8]) -> &[u8] {
    &path[name_start(path)..]
}

/// The directory an image path puts its file in, as a path: `/` for a file at the root, the
/// path up to its last `/` otherwise; `None` for a bare name (the current directory).
pub fn image_dir(path: &[u8]) -> Option<&[u8]> {
    match name_start(path) {
        0 => None,
        1 => Some(&path[..1]),
        n => Some(&path[..n - 1]),
    }
}

/// Whether `name` may name a base: a plain file name in the image's directory.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&c| c == b'/' || c == 0)
}

/// The most older images kept beside an image (`CKPT_KEEP`): `<image>.1` … `<image>.99`.
pub const MAX_KEEP: u32 = 99;

/// The path of older image `n` of `image` (`image` itself for 0, else `image.n`), NUL-ended,
/// in `buf`.
pub fn generation_name<'b>(image: &[u8], n: u32, buf: &'b mut [u8]) -> Option<&'b core::ffi::CStr> {
    let mut w = crate::bytes::Writer::new(&mut buf[..]);
    w.bytes(image);
    if n > 0 {
        w.u8(b'.');
        w.decimal(n as u64);
    }
    w.u8(0);
    let len = w.finish()?;
    core::ffi::CStr::from_bytes_with_nul(&buf[..len]).ok()
}

/// The name a base file gets: `<image file name>.base-<id as 16 hex digits>`, written into
/// `out`. Returns its length, or `None` if it does not fit.
pub fn base_name(image_name: &[u8], id: u64, out: &mut [u8; 256]) -> Option<usize> {
    let len = image_name.len() + 6 + 16;
    if len > MAX_NAME || !valid_name(image_name) {
        return None;
    }
    out.fill(0);
    out[..image_name.len()].copy_from_slice(image_name);
    out[image_name.len()..image_name.len() + 6].copy_from_slice(b".base-");
    for i in 0..16 {
        let d = ((id >> (60 - 4 * i)) & 15) as u8;
        out[image_name.len() + 6 + i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
    }
    Some(len)
}

/// The identity in a base file name made by [`base_name`] for `image_name`, if `name` is one.
pub fn parse_base_name(image_name: &[u8], name: &[u8]) -> Option<u64> {
    let rest = name.strip_prefix(image_name)?.strip_prefix(b".base-")?;
    if rest.len() != 16 {
        return None;
    }
    rest.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | d as u64)
    })
}

/// Bytes of an `NT_CKPT_CHAIN` descriptor with `count` bases.
pub const fn note_len(count: usize) -> usize {
    CHAIN_HEADER_SIZE + BASE_RECORD_SIZE * count
}

/// Writes the descriptor's header; the `count` records follow.
pub fn write_header(w: &mut Writer, id: u64, count: usize) {
    w.u64(id);
    crate::bytes::write_table_header(w, count, BASE_RECORD_SIZE);
}

/// A decoded chain note.
#[derive(Clone)]
pub struct Chain<'a> {
    pub id: u64,
    pub count: usize,
    desc: &'a [u8],
}

impl<'a> Chain<'a> {
    pub fn parse(desc: &'a [u8]) -> Result<Chain<'a>, ImageError> {
        let mut r = Reader::new(desc);
        let id = r.u64()?;
        let (count, _) = crate::bytes::table(&desc[8..], BASE_RECORD_SIZE, MAX_BASES, Base::read, "bad base image table")?;
        Ok(Chain { id, count, desc })
    }

    pub fn bases(&self) -> Records<'a, Base> {
        Records::new(&self.desc[CHAIN_HEADER_SIZE..], Base::read)
    }

    /// Base `source` (1-based, as a run names it).
    pub fn base(&self, source: u32) -> Result<Base, ImageError> {
        let i = (source as usize).checked_sub(1).filter(|&i| i < self.count).ok_or(ImageError::Malformed("a page run names a base image the image does not list"))?;
        self.bases().nth(i).ok_or(ImageError::Truncated)?
    }
}

/// Checks the chain note's records, and that no two bases have one identity or one name.
pub(crate) fn check(image: &Image) -> Result<(), ImageError> {
    let Some(chain) = image.chain() else { return Ok(()) };
    let chain = chain?;
    for (i, a) in chain.bases().enumerate() {
        let a = a?;
        if a.id == chain.id {
            return Err(ImageError::Malformed("an image lists itself as its base"));
        }
        for b in chain.bases().skip(i + 1) {
            let b = b?;
            if b.id == a.id || b.name() == a.name() {
                return Err(ImageError::Malformed("an image lists one base image twice"));
            }
        }
    }
    Ok(())
}

/// Whether a run of `image` that names base `source` takes its pages from `rec`, a region of
/// that base: the bytes whose hash must then be checked ([`check_against_base`] has made sure
/// each run lies in one region of the base).
pub fn takes_from(image: &Image, source: u32, rec: &crate::RegionRecord) -> bool {
    // The runs are in address order (by region, regions sorted by address, then by page): the
    // first that ends past the region's start, then those after it while they start inside it.
    let runs = image.shared_table();
    let at = |r: &SharedRun| image.region(r.region as usize).map(|o| r.addr(o.record.start));
    let Ok(first) = runs.first_where(|r| Ok(at(r)? + r.bytes() > rec.start)) else { return false };
    for r in runs.from(first) {
        let Ok(r) = r else { return false };
        let Ok(a) = at(&r) else { return false };
        if a >= rec.end {
            return false;
        }
        if r.source == source && rec.start <= a {
            return true;
        }
    }
    false
}

/// Checks that every run of `image` that names base `source` points at `base`'s own stored
/// bytes for the same addresses: inside one region of the base that holds plain private data,
/// at the place in its data that matches the address, and not in pages the base itself leaves
/// to another image. Those bytes are then checked with the base's own region hashes.
pub fn check_against_base(image: &Image, source: u32, base: &Image) -> Result<(), ImageError> {
    let table = base.shared_table();
    for run in image.shared_runs() {
        let run = run?;
        if run.source != source {
            continue;
        }
        let addr = run.addr(image.region(run.region as usize)?.record.start);
        let found = match crate::shared::holder(base, addr, run.bytes(), run.offset)? {
            Some(i) => Some((i as u32, (addr - base.region(i)?.record.start) / PAGE_SIZE)),
            None => None,
        };
        let Some((region, first)) = found else {
            return Err(ImageError::Malformed("a page run does not point at its base image's copy of the same pages"));
        };
        // The base's runs are ordered and disjoint: only the first that ends past this run's
        // first page can overlap it.
        let at = table.first_after(region, first)?;
        if at < table.len() {
            let other = table.get(at)?;
            if other.region == region && other.first_page < first + run.pages {
                return Err(ImageError::Malformed("a page run points at pages its base image does not hold itself"));
            }
        }
    }
    Ok(())
}

/// How an image gives its `NT_CKPT_CHAIN` note.
impl<'a> Image<'a> {
    /// The image's identity and its bases (`NT_CKPT_CHAIN`; `None` in images without one).
    pub fn chain(&self) -> Option<Result<Chain<'a>, ImageError>> {
        let desc = self.note(crate::CKPT_NOTE_NAME, crate::NT_CKPT_CHAIN)?.desc;
        Some(Chain::parse(desc))
    }
}
