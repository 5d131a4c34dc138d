//! Helpers for code that runs where almost nothing is allowed: libckpt's checkpoint signal
//! handler and myrestart before (and after) its point of no return.
//!
//! Everything here is async-signal-safe by construction: `no_std`, no allocator, no locks, no
//! libc. It uses only raw system calls (through `rustix` where it offers them, [`sys`] where it
//! does not) and buffers that the caller owns.
#![no_std]
#![deny(unsafe_code)]

pub mod attach;
// unsafe: CPUID and XGETBV, to learn the size of the registers' save area.
#[allow(unsafe_code)]
pub mod cpu;
pub mod errno;
pub mod extents;
pub mod file;
pub mod fileid;
pub mod interrupted;
pub mod locks;

/// The longest key file: more is refused, so that every reader derives the key from the
/// same bytes.
pub const KEY_FILE_MAX: usize = 4096;

/// Why a key file was refused (see [`read_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// It cannot be opened or read.
    Unreadable(rustix::io::Errno),
    NotAFile,
    /// Another user owns it.
    NotOwn { uid: u32 },
    /// Group or others may read or write it.
    NotPrivate { mode: u32 },
    Empty,
    TooLong,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            KeyError::Unreadable(e) => write!(f, "cannot be read: {}", errno::describe(e)),
            KeyError::NotAFile => f.write_str("is not a regular file"),
            KeyError::NotOwn { uid } => write!(f, "belongs to another user (uid {uid}): a key file must be your own"),
            KeyError::NotPrivate { mode } => write!(f, "may be read or written by other users (mode {mode:o}): a key file must be private (chmod 600)"),
            KeyError::Empty => f.write_str("is empty"),
            KeyError::TooLong => write!(f, "is longer than {KEY_FILE_MAX} bytes"),
        }
    }
}

/// The key of an image key file (`CKPT_KEY`, `--key`): derived from the file's contents, read
/// through `buf` (at least [`KEY_FILE_MAX`] + 1 bytes; wiped after). Whoever can read the file
/// can make images that check out with it, so, as ssh does with private keys, it must be a
/// regular file of this user's that no one else may read or write.
pub fn read_key(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<ckpt_image::mac::Key, KeyError> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()).map_err(KeyError::Unreadable)?;
    let st = rustix::fs::fstat(&fd).map_err(KeyError::Unreadable)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(KeyError::NotAFile);
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(KeyError::NotOwn { uid: st.st_uid });
    }
    if st.st_mode & 0o077 != 0 {
        return Err(KeyError::NotPrivate { mode: st.st_mode & 0o7777 });
    }
    let room = (KEY_FILE_MAX + 1).min(buf.len());
    let buf = &mut buf[..room];
    let key = file::fill(&fd, buf).map_err(KeyError::Unreadable).and_then(|len| match len {
        0 => Err(KeyError::Empty),
        n if n > KEY_FILE_MAX => Err(KeyError::TooLong),
        n => Ok(ckpt_image::mac::key_from(&buf[..n])),
    });
    buf.fill(0);
    key
}

pub mod maps;
// unsafe: POSIX message queue calls by number, which take pointers to buffers.
#[allow(unsafe_code)]
pub mod mqueue;
// unsafe: owns the mappings it makes (mmap, munmap) and lends them out as slices.
#[allow(unsafe_code)]
pub mod mapping;
// unsafe: writes to descriptor 2, borrowed by number (no owner to borrow it from).
#[allow(unsafe_code)]
pub mod out;
// unsafe: the PAGEMAP_SCAN ioctl, which takes a pointer to its argument.
#[allow(unsafe_code)]
pub mod pagescan;
pub mod proctext;
pub mod resume;
pub mod rseq;
pub mod signals;
pub mod sockets;
// unsafe: system calls by number (the `syscall` instruction), each wrapped in a safe call where it can be.
#[allow(unsafe_code)]
pub mod sys;
// unsafe: System V IPC calls by number, which take pointers to the kernel's records.
#[allow(unsafe_code)]
pub mod sysvipc;
pub mod tasks;
pub mod trust;
// unsafe: the terminal ioctls, which take pointers to their arguments, and the descriptor
// TIOCGPTPEER returns.
#[allow(unsafe_code)]
pub mod tty;
// unsafe: reads the vdso's bytes, where the kernel mapped them.
#[allow(unsafe_code)]
pub mod vdso;

/// Page size on x86-64.
pub const PAGE: usize = 4096;

pub const fn page_down(v: usize) -> usize {
    v & !(PAGE - 1)
}

pub const fn page_up(v: usize) -> usize {
    (v + PAGE - 1) & !(PAGE - 1)
}
