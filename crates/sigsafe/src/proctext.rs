//! Fields of `/proc/self/status` and `/proc/self/stat` text, read without allocation.

/// The value after `key` on its line of a `/proc/self/status` text, trimmed.
pub fn status_field<'a>(status: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    status
        .split(|&c| c == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .map(|v| v.trim_ascii())
}

pub fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| c.is_ascii_digit().then(|| v * 10 + (c - b'0') as u64))
}

pub fn parse_oct(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u32, |v, &c| (b'0'..=b'7').contains(&c).then(|| v * 8 + (c - b'0') as u32))
}

/// Field `n` (1-based, as in proc(5)) of `/proc/self/stat`. The command name (field 2) may
/// contain spaces, so fields are counted from the last `)`.
pub fn stat_field(stat: &[u8], n: usize) -> Option<u64> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    let rest = &stat[close + 1..];
    // Field 3 is the first after ')'.
    rest.split(|&c| c == b' ').filter(|f| !f.is_empty()).nth(n.checked_sub(3)?).and_then(|f| parse_dec(f.trim_ascii()))
}
