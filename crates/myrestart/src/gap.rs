//! Where myrestart can move to: a stretch of addresses free both in its own layout and in the
//! image's, away from both (see `hole.rs` in the binary).

use crate::TASK_END;

/// Distance kept from any mapping on either side of the block (room for stack growth gaps).
pub const MARGIN: usize = 16 << 20;
/// Prefer addresses above 4 GiB: low memory is where non-PIE programs put heap and data.
pub const PREFERRED_START: usize = 1 << 32;
/// Nothing is placed below this.
pub const LOWEST: usize = 1 << 20;

/// The start of `len` free bytes, with [`MARGIN`] kept on either side, between the `used`
/// ranges (sorted by start, possibly overlapping) and below [`TASK_END`]: the first such place
/// at or above [`PREFERRED_START`], else the lowest one above [`LOWEST`].
pub fn find_gap(used: impl Iterator<Item = (usize, usize)>, len: usize) -> Option<usize> {
    let need = len.checked_add(2 * MARGIN)?;
    let mut first_fit = None;
    let mut cursor = LOWEST;
    let mut consider = |gap_start: usize, gap_end: usize| -> Option<usize> {
        let start = gap_start.max(LOWEST);
        if gap_end > start && gap_end - start >= need {
            let at = start + MARGIN;
            if at >= PREFERRED_START {
                return Some(at);
            }
            // A gap that straddles 4 GiB still has room above it.
            if gap_end > PREFERRED_START && gap_end - PREFERRED_START >= need {
                return Some(PREFERRED_START + MARGIN);
            }
            first_fit.get_or_insert(at);
        }
        None
    };
    for (s, e) in used {
        if s > cursor {
            if let Some(at) = consider(cursor, s.min(TASK_END)) {
                return Some(at);
            }
        }
        cursor = cursor.max(e);
    }
    if let Some(at) = consider(cursor, TASK_END) {
        return Some(at);
    }
    first_fit
}

/// Merges two address-sorted sequences of ranges into one sorted sequence.
pub fn merge_sorted<A, B>(a: A, b: B) -> impl Iterator<Item = (usize, usize)>
where
    A: Iterator<Item = (usize, usize)>,
    B: Iterator<Item = (usize, usize)>,
{
    let mut a = a.peekable();
    let mut b = b.peekable();
    core::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) => {
            if x.0 <= y.0 {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}


#[cfg(test)]
mod tests {
    use super::*;
    const GIB: usize = 1 << 30;

    #[test]
    fn prefers_a_gap_above_4_gib() {
        let used = [(0x40_0000, 0x60_0000), (0x5000000, 0x5100000), (0x7fff_0000_0000, 0x7fff_0010_0000)];
        assert_eq!(find_gap(used.into_iter(), 1 << 20), Some(PREFERRED_START + MARGIN));
    }

    #[test]
    fn skips_used_ranges_and_keeps_margins() {
        // Everything from 4 GiB to 8 GiB is taken; the next gap starts at 8 GiB.
        let used = [(0x1000_0000, 0x2000_0000), (4 * GIB, 8 * GIB)];
        assert_eq!(find_gap(used.into_iter(), 1 << 20), Some(8 * GIB + MARGIN));
        // Overlapping and nested ranges (the two layouts merged) count as one.
        let used = [(4 * GIB, 6 * GIB), (5 * GIB, 5 * GIB + 4096), (5 * GIB, 8 * GIB)];
        assert_eq!(find_gap(used.into_iter(), 1 << 20), Some(8 * GIB + MARGIN));
        // A gap that straddles 4 GiB is used from 4 GiB on.
        let used = [(3 * GIB, 3 * GIB + 4096), (5 * GIB, TASK_END)];
        assert_eq!(find_gap(used.into_iter(), 1 << 20), Some(4 * GIB + MARGIN));
    }

    #[test]
    fn falls_back_below_4_gib_and_refuses_when_full() {
        let used = [(3 * GIB, TASK_END)];
        assert_eq!(find_gap(used.into_iter(), 1 << 20), Some(LOWEST + MARGIN));
        // A gap too small for the block and both margins is not used.
        let used = [(LOWEST + MARGIN, TASK_END)];
        assert_eq!(find_gap(used.into_iter(), 1 << 20), None);
        assert_eq!(find_gap(core::iter::empty(), usize::MAX), None);
    }

    #[test]
    fn merges_two_sorted_layouts() {
        let a = [(1, 2), (5, 6)];
        let b = [(3, 4), (5, 7), (9, 10)];
        let m: std::vec::Vec<_> = merge_sorted(a.into_iter(), b.into_iter()).collect();
        assert_eq!(m, [(1, 2), (3, 4), (5, 6), (5, 7), (9, 10)]);
    }
}
