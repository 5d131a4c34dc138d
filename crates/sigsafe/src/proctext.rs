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

pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| (c as char).to_digit(16).map(|d| v << 4 | d as u64))
}

/// Field `n` (1-based, as in proc(5)) of `/proc/self/stat`. The command name (field 2) may
/// contain spaces, so fields are counted from the last `)`.
pub fn stat_field(stat: &[u8], n: usize) -> Option<u64> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    let rest = &stat[close + 1..];
    // Field 3 is the first after ')'.
    rest.split(|&c| c == b' ').filter(|f| !f.is_empty()).nth(n.checked_sub(3)?).and_then(|f| parse_dec(f.trim_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parens() {
        let stat = b"4242 (a b) c) S 1 4242 4242 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 123 4096 1 18446744073709551615 94 95 140";
        assert_eq!(stat_field(stat, 3), None, "the state letter is not a number");
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 26), Some(94));
        assert_eq!(stat_field(stat, 28), Some(140));
        assert_eq!(stat_field(stat, 29), None);
        assert_eq!(stat_field(b"no parens", 4), None);
    }

    #[test]
    fn status_fields_and_numbers() {
        let status = b"Name:\tx\nUmask:\t0027\nThreads:\t3\n";
        assert_eq!(status_field(status, b"Threads:").and_then(parse_dec), Some(3));
        assert_eq!(status_field(status, b"Umask:").and_then(parse_oct), Some(0o27));
        assert_eq!(status_field(status, b"Missing:"), None);
        assert_eq!(parse_oct(b"8"), None);
        assert_eq!(parse_hex(b"0000000000000a01"), Some(0xa01));
        assert_eq!(parse_hex(b"x"), None);
        assert_eq!(parse_dec(b""), None);
    }
}
