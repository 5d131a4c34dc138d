//! `/proc/self/maps` parsing into borrowed entries, without allocation.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapsEntry<'a> {
    pub start: usize,
    pub end: usize,
    /// `PROT_READ` = 1, `PROT_WRITE` = 2, `PROT_EXEC` = 4.
    pub prot: u32,
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The path column (file path, `[stack]`, `[vdso]`, …), empty for anonymous memory.
    pub name: &'a [u8],
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

fn dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Splits off the next space-separated field.
fn field<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let s = rest.trim_ascii_start();
    let n = s.iter().position(|&c| c == b' ').unwrap_or(s.len());
    *rest = &s[n..];
    &s[..n]
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Option<MapsEntry<'_>> {
    let mut rest = line;
    let range = field(&mut rest);
    let dash = range.iter().position(|&c| c == b'-')?;
    let start = hex(&range[..dash])? as usize;
    let end = hex(&range[dash + 1..])? as usize;
    let perms = field(&mut rest);
    if perms.len() != 4 {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= 1;
    }
    if perms[1] == b'w' {
        prot |= 2;
    }
    if perms[2] == b'x' {
        prot |= 4;
    }
    let shared = perms[3] == b's';
    let offset = hex(field(&mut rest))?;
    let dev = field(&mut rest);
    let colon = dev.iter().position(|&c| c == b':')?;
    let dev_major = hex(&dev[..colon])? as u32;
    let dev_minor = hex(&dev[colon + 1..])? as u32;
    let inode = dec(field(&mut rest))?;
    let name = rest.trim_ascii();
    Some(MapsEntry { start, end, prot, shared, offset, dev_major, dev_minor, inode, name })
}

/// Iterates over the entries of a maps text; a line that does not parse ends the iteration.
pub fn entries(text: &[u8]) -> impl Iterator<Item = MapsEntry<'_>> {
    text.split(|&c| c == b'\n').filter(|l| !l.is_empty()).map_while(parse_line)
}

/// Writes entry `e` as a line of a maps text (newline included) at the start of `out`, in the
/// kernel's format (what [`parse_line`] reads back as `e`); returns its length, or `None` if
/// it does not fit. For a layout that leaves parts of the kernel's entries out.
pub fn write_line(e: &MapsEntry, out: &mut [u8]) -> Option<usize> {
    struct W<'a> {
        out: &'a mut [u8],
        len: usize,
    }
    impl W<'_> {
        fn put(&mut self, b: &[u8]) -> Option<()> {
            self.out.get_mut(self.len..self.len + b.len())?.copy_from_slice(b);
            self.len += b.len();
            Some(())
        }
        fn hex(&mut self, v: u64, width: usize) -> Option<()> {
            let mut digits = [0u8; 16];
            let mut n = 0;
            let mut v = v;
            while v != 0 || n < width {
                digits[15 - n] = b"0123456789abcdef"[(v & 15) as usize];
                v >>= 4;
                n += 1;
            }
            self.put(&digits[16 - n..])
        }
    }
    let mut w = W { out, len: 0 };
    w.hex(e.start as u64, 8)?;
    w.put(b"-")?;
    w.hex(e.end as u64, 8)?;
    let perm = |bit: u32, c: u8| if e.prot & bit != 0 { c } else { b'-' };
    w.put(&[b' ', perm(1, b'r'), perm(2, b'w'), perm(4, b'x'), if e.shared { b's' } else { b'p' }, b' '])?;
    w.hex(e.offset, 8)?;
    w.put(b" ")?;
    w.hex(e.dev_major as u64, 2)?;
    w.put(b":")?;
    w.hex(e.dev_minor as u64, 2)?;
    w.put(b" ")?;
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = e.inode;
    while v != 0 || n == 0 {
        digits[19 - n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    w.put(&digits[20 - n..])?;
    w.put(b" ")?;
    w.put(e.name)?;
    w.put(b"\n")?;
    Some(w.len)
}

/// The number a one-number file holds (a sysctl such as `/proc/sys/kernel/pid_max`), if it
/// can be read.
pub fn read_number(path: &core::ffi::CStr) -> Option<u64> {
    let mut buf = [0u8; 32];
    let n = crate::file::read_whole(path, &mut buf).ok()?;
    crate::proctext::parse_dec(buf[..n].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_anonymous_lines() {
        let e = parse_line(b"7f12a000-7f12b000 r-xp 00001000 fd:01 1234567                    /usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!((e.start, e.end, e.prot, e.shared, e.offset), (0x7f12a000, 0x7f12b000, 5, false, 0x1000));
        assert_eq!((e.dev_major, e.dev_minor, e.inode), (0xfd, 1, 1234567));
        assert_eq!(e.name, b"/usr/lib/x86_64-linux-gnu/libc.so.6");
        let a = parse_line(b"55d0c000-55d2d000 rw-s 00000000 00:00 0 ").unwrap();
        assert!(a.shared);
        assert_eq!(a.name, b"");
        let v = parse_line(b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]").unwrap();
        assert_eq!(v.prot, 4);
        assert_eq!(v.name, b"[vsyscall]");
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn lines_written_read_back_the_same() {
        for line in [
            &b"7f12a000-7f12b000 r-xp 00001000 fd:01 1234567 /usr/lib/x86_64-linux-gnu/libc.so.6"[..],
            b"55d0c000-55d2d000 rw-s 00000000 00:00 0 ",
            b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]",
            b"1000-2000 rw-p 00000000 08:01 42 /tmp/a b (deleted)",
        ] {
            let e = parse_line(line).unwrap();
            let mut out = [0u8; 200];
            let n = write_line(&e, &mut out).unwrap();
            assert_eq!(out[n - 1], b'\n');
            assert_eq!(parse_line(&out[..n - 1]), Some(e));
            assert!(write_line(&e, &mut out[..n - 1]).is_none());
        }
    }

    #[test]
    fn keeps_spaces_in_names() {
        let e = parse_line(b"1000-2000 rw-p 00000000 08:01 42 /tmp/a b (deleted)").unwrap();
        assert_eq!(e.name, b"/tmp/a b (deleted)");
    }
}

/// Calls `f(start, end)` for each region of a `/proc/PID/smaps` file whose `VmFlags` line has
/// one of `flags` (two-letter codes such as `dc`, "do not copy on fork"). The file is read a
/// piece at a time through `buf` (at least a few KiB), whatever its length.
pub fn smaps_with_flags(path: &core::ffi::CStr, buf: &mut [u8], flags: &[&[u8]], mut f: impl FnMut(usize, usize)) -> Result<(), Errno> {
    let fd: OwnedFd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut kept = 0usize; // bytes of an unfinished line carried to the buffer's start
    let mut region = (0usize, 0usize);
    loop {
        if kept == buf.len() {
            return Err(Errno::FBIG); // a line longer than the buffer
        }
        let n = rustix::io::retry_on_intr(|| rustix::io::read(&fd, &mut buf[kept..]))?;
        let end = kept + n;
        let mut at = 0;
        while let Some(nl) = buf[at..end].iter().position(|&c| c == b'\n') {
            let line = &buf[at..at + nl];
            if let Some(flags_text) = line.strip_prefix(b"VmFlags:") {
                if flags_text.split(|&c| c == b' ').any(|w| flags.contains(&w)) {
                    f(region.0, region.1);
                }
            } else if let Some(e) = parse_line(line) {
                region = (e.start, e.end);
            }
            at += nl + 1;
        }
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(at..end, 0);
        kept = end - at;
    }
}

#[cfg(test)]
mod smaps_tests {
    extern crate std;

    #[test]
    fn finds_flagged_regions_in_small_pieces() {
        let dir = std::env::temp_dir().join(std::format!("smaps-test-{}", std::process::id()));
        std::fs::write(
            &dir,
            "1000-2000 rw-p 00000000 00:00 0 \nSize: 4 kB\nVmFlags: rd wr mr mw me ac \n\
             3000-5000 rw-p 00000000 00:00 0 \nRss: 0 kB\nVmFlags: rd wr mr mw me dc ac \n\
             6000-7000 rw-p 00000000 00:00 0 \nVmFlags: rd wr wf \n",
        )
        .unwrap();
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let mut found = std::vec::Vec::new();
        let mut buf = [0u8; 64];
        super::smaps_with_flags(&path, &mut buf, &[b"dc", b"wf"], |s, e| found.push((s, e))).unwrap();
        assert_eq!(found, [(0x3000, 0x5000), (0x6000, 0x7000)]);
        std::fs::remove_file(&dir).unwrap();
    }
}
