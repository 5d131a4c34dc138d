//! Where a sparse file holds data, found with `SEEK_DATA`/`SEEK_HOLE` (zero pages of an
//! image are holes that need not be read).

pub use rustix::fd::BorrowedFd;
use rustix::io::Errno;

const PAGE: u64 = crate::PAGE as u64;

/// The page-aligned stretches of `from..to` in the file that hold data: zero pages may be holes
/// (`SEEK_DATA`/`SEEK_HOLE`), which need not be read. A file system that cannot tell reports
/// one stretch, the whole range.
pub fn data_extents(file: BorrowedFd<'_>, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut at = from;
    core::iter::from_fn(move || {
        if at >= to {
            return None;
        }
        let start = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) {
            Ok(s) => s,
            Err(Errno::NXIO) => return None,
            Err(_) => at,
        };
        if start >= to {
            at = to;
            return None;
        }
        let end = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(start)).unwrap_or(to).min(to);
        let (s, e) = (start / PAGE * PAGE, end.next_multiple_of(PAGE).min(to));
        at = e.max(start + 1);
        Some((s.max(from), e))
    })
}
