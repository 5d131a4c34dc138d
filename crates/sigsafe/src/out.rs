//! One-line messages on stderr from a fixed buffer: `core::fmt` into the stack, one `write(2)`.

use core::fmt;

/// A line of at most 512 bytes; longer text is cut. Written with a single `write` so that lines
/// from different processes do not interleave.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub const fn new() -> Line {
        Line { buf: [0; 512], len: 0 }
    }

    /// Appends raw bytes (a path may not be UTF-8).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let room = self.buf.len() - 1 - self.len;
        let n = b.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Adds the newline and writes the line to stderr.
    pub fn emit(&mut self) {
        self.buf[self.len] = b'\n';
        let mut end = self.len + 1;
        if AS_CKPT.load(core::sync::atomic::Ordering::Relaxed) && self.buf[..end].starts_with(b"myrestart: ") {
            const AS: &[u8] = b"ckpt: ";
            self.buf.copy_within(11..end, AS.len());
            self.buf[..AS.len()].copy_from_slice(AS);
            end -= 11 - AS.len();
        }
        let all = &self.buf[..end];
        // SAFETY: fd 2 is only borrowed for this one write; if it is closed, the write fails
        // harmlessly with EBADF.
        let stderr = unsafe { rustix::fd::BorrowedFd::borrow_raw(2) };
        let _ = rustix::io::write(stderr, all);
    }
}

/// Set when myrestart runs as `ckpt restart` (which starts it with that name): its messages
/// then begin `ckpt:`, the command the user ran, instead of `myrestart:`.
static AS_CKPT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Messages that begin `myrestart:` say `ckpt:` from now on.
pub fn speak_as_ckpt() {
    AS_CKPT.store(true, core::sync::atomic::Ordering::Relaxed);
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes bytes that may not be UTF-8 (a path, a name from an image) for a terminal: control
/// characters (an escape sequence could move the cursor, recolour or retitle the terminal, a
/// newline forge a line) and bytes that are not UTF-8 are written as `\xNN`.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let mut text = chunk.valid();
            while let Some(at) = text.find(|c: char| c.is_control()) {
                f.write_str(&text[..at])?;
                let c = text[at..].chars().next().unwrap_or('\0');
                write!(f, "\\x{:02x}", c as u32)?;
                text = &text[at + c.len_utf8()..];
            }
            f.write_str(text)?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Text of several lines (from another program: `ckpt`'s `--say`) made fit for a terminal into
/// `into`: each line escaped as [`Lossy`] does, ended by a newline. What does not fit is cut
/// off, and the text still ends with a newline. Returns the length written.
pub fn escaped_lines(text: &[u8], into: &mut [u8]) -> usize {
    struct Into<'a>(&'a mut [u8], usize);
    impl fmt::Write for Into<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            if n < s.len() { Err(fmt::Error) } else { Ok(()) }
        }
    }
    if into.is_empty() {
        return 0;
    }
    let last = into.len() - 1;
    let mut w = Into(&mut into[..last], 0);
    for line in text.strip_suffix(b"\n").unwrap_or(text).split(|&c| c == b'\n') {
        let full = fmt::Write::write_fmt(&mut w, format_args!("{}\n", Lossy(line))).is_ok();
        if !full {
            break;
        }
    }
    let n = w.1;
    if n == 0 || into[n - 1] != b'\n' {
        into[n] = b'\n';
        return n + 1;
    }
    n
}

/// `eprintln!` for restricted code: formats into a [`Line`] on the stack and emits it.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = $crate::out::Line::new();
        let _ = ::core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        line.emit();
    }};
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    #[test]
    fn control_characters_and_other_bytes_are_escaped() {
        assert_eq!(super::Lossy(b"/tmp/a b/\xc3\xa9t\xc3\xa9").to_string(), "/tmp/a b/\u{e9}t\u{e9}");
        assert_eq!(super::Lossy(b"x\x1b[31mred\n\x7f\xc2\x9b").to_string(), "x\\x1b[31mred\\x0a\\x7f\\x9b");
        assert_eq!(super::Lossy(b"bad\xff\xfe.").to_string(), "bad\\xff\\xfe.");
    }

    #[test]
    fn lines_keep_their_newlines_and_lose_their_escapes() {
        let mut buf = [0u8; 64];
        let n = super::escaped_lines(b"ckpt: one \x1b[31mred\nckpt: two\r", &mut buf);
        assert_eq!(&buf[..n], b"ckpt: one \\x1b[31mred\nckpt: two\\x0d\n");
        let n = super::escaped_lines(b"a\n", &mut buf);
        assert_eq!(&buf[..n], b"a\n");
        // Cut where it does not fit, and still ended by a newline.
        let mut small = [0u8; 8];
        let n = super::escaped_lines(b"abc\ndefghijk", &mut small);
        assert_eq!(&small[..n], b"abc\ndef\n");
    }
}
