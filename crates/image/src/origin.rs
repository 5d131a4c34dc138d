//! `NT_CKPT_ORIGIN`: what the process was started as, so that a later start of a job can tell
//! whether an image is its own, and so that the process can tell an image of itself from one
//! of another run.
//!
//! `ckpt run` and `ckpt job` describe the command they start (the arguments as given, the
//! program they resolved, the directory, and the identity of the script an interpreter runs) and
//! hand the description to libckpt in the environment, hex-encoded ([`to_hex`]); libckpt keeps
//! it for the life of the process (its memory is in every image, so a restored process keeps
//! it too) and writes it into each image. A process started without `ckpt` describes itself
//! from `/proc/self`. The run identity is chosen once, when the program starts: every image of
//! one run, and of the restarts of its images, carries it.
//!
//! ```text
//!   u64 run_id        chosen when the program started; never 0
//!   u32 flags         ARGS_HASHED: the arguments were too long to keep; only their hash is
//!   u32 argc          number of arguments, the program's name (argv[0]) included
//!   u64 args_hash     xxh3-64 of the arguments, each followed by a NUL
//!   u32 program_len   the program's absolute path, as resolved when it started
//!   u32 cwd_len       the directory it started in
//!   u32 args_len      the arguments, each followed by a NUL (0 with ARGS_HASHED)
//!   u32 nfiles        file identities that follow, at most MAX_FILES
//!   program, cwd, args bytes, then zero padding to a multiple of 8
//!   nfiles records:
//!     u32 arg         which argument names the file (0: the program itself)
//!     u32 how         SAME_CONTENTS: `value` is the xxh3-64 of its contents; SAME_MTIME: its
//!                     modification time in nanoseconds (files larger than HASH_LIMIT)
//!     u64 size
//!     u64 value
//! ```

use crate::bytes::{Reader, Writer};
use crate::ImageError;

/// The arguments were too long to keep in the note: only their hash and count are.
pub const ARGS_HASHED: u32 = 1;
/// Longest program path or directory kept.
pub const MAX_PATH: usize = 4096;
/// Most bytes of arguments kept (each NUL-terminated); longer ones are kept as their hash.
pub const MAX_ARGS: usize = 8192;
/// Most file identities in one note.
pub const MAX_FILES: usize = 4;
/// Files up to this size are known by a hash of their contents; larger ones by size and mtime.
pub const HASH_LIMIT: u64 = 16 << 20;
/// A file identity's `how`.
pub const SAME_CONTENTS: u32 = 1;
pub const SAME_MTIME: u32 = 2;
const HEADER: usize = 8 + 4 + 4 + 8 + 4 * 4;
const FILE_RECORD: usize = 24;
/// Largest descriptor (and the buffer a holder of one needs).
pub const MAX_LEN: usize = HEADER + 2 * MAX_PATH + MAX_ARGS + 8 + MAX_FILES * FILE_RECORD;
/// Largest hex form of a descriptor ([`to_hex`]).
pub const MAX_HEX: usize = 2 * MAX_LEN;

/// The identity of a file named on the command line (the script an interpreter runs, or a
/// program that is itself a script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub arg: u32,
    pub how: u32,
    pub size: u64,
    pub value: u64,
}

/// A decoded (or to be encoded) origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub run_id: u64,
    pub flags: u32,
    pub argc: u32,
    pub args_hash: u64,
    pub program: &'a [u8],
    pub cwd: &'a [u8],
    /// The arguments, each followed by a NUL (empty with [`ARGS_HASHED`]).
    pub args: &'a [u8],
    pub files: [Option<FileId>; MAX_FILES],
}

/// The hash [`Origin::args_hash`] holds for arguments given as NUL-terminated strings.
pub fn args_hash(args_with_nuls: &[u8]) -> u64 {
    crate::hash(args_with_nuls)
}

impl<'a> Origin<'a> {
    /// An origin for the arguments `args` (each followed by a NUL, `argc` of them): kept whole
    /// when they fit, else as their hash.
    pub fn new(run_id: u64, program: &'a [u8], cwd: &'a [u8], args: &'a [u8], argc: u32) -> Origin<'a> {
        let whole = args.len() <= MAX_ARGS;
        Origin {
            run_id,
            flags: if whole { 0 } else { ARGS_HASHED },
            argc,
            args_hash: args_hash(args),
            program,
            cwd,
            args: if whole { args } else { &[] },
            files: [None; MAX_FILES],
        }
    }

    /// Bytes of the encoded descriptor.
    pub fn encoded_len(&self) -> usize {
        let strings = self.program.len() + self.cwd.len() + self.args.len();
        HEADER + strings.next_multiple_of(8) + self.files.iter().flatten().count() * FILE_RECORD
    }

    /// Writes the descriptor; `None` if a part is too long (see the limits above) or `out` is
    /// too small.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        if self.program.len() > MAX_PATH || self.cwd.len() > MAX_PATH || self.args.len() > MAX_ARGS {
            return None;
        }
        let mut w = Writer::new(out);
        w.u64(self.run_id);
        w.u32(self.flags);
        w.u32(self.argc);
        w.u64(self.args_hash);
        w.u32(self.program.len() as u32);
        w.u32(self.cwd.len() as u32);
        w.u32(self.args.len() as u32);
        w.u32(self.files.iter().flatten().count() as u32);
        w.bytes(self.program);
        w.bytes(self.cwd);
        w.bytes(self.args);
        w.align(8);
        for f in self.files.iter().flatten() {
            w.u32(f.arg);
            w.u32(f.how);
            w.u64(f.size);
            w.u64(f.value);
        }
        w.finish()
    }

    /// Decodes and checks a descriptor.
    pub fn parse(desc: &'a [u8]) -> Result<Origin<'a>, ImageError> {
        let bad = ImageError::Malformed("bad origin note");
        let mut r = Reader::new(desc);
        let run_id = r.u64()?;
        let flags = r.u32()?;
        let argc = r.u32()?;
        let hash = r.u64()?;
        let (program_len, cwd_len, args_len, nfiles) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if flags & !ARGS_HASHED != 0 || program_len > MAX_PATH || cwd_len > MAX_PATH || args_len > MAX_ARGS || nfiles > MAX_FILES {
            return Err(bad);
        }
        let program = r.bytes(program_len)?;
        let cwd = r.bytes(cwd_len)?;
        let args = r.bytes(args_len)?;
        r.align(8)?;
        let hashed_only = flags & ARGS_HASHED != 0;
        // Kept arguments are `argc` NUL-terminated strings, and hash to `args_hash`.
        let whole_ok = !hashed_only
            && args.iter().filter(|&&c| c == 0).count() == argc as usize
            && args.last().is_none_or(|&c| c == 0)
            && args_hash(args) == hash;
        if (hashed_only && args_len != 0) || (!hashed_only && !whole_ok) || program.contains(&0) || cwd.contains(&0) {
            return Err(bad);
        }
        let mut files = [None; MAX_FILES];
        for f in files.iter_mut().take(nfiles) {
            let id = FileId { arg: r.u32()?, how: r.u32()?, size: r.u64()?, value: r.u64()? };
            if !(id.how == SAME_CONTENTS || id.how == SAME_MTIME) || id.arg >= argc.max(1) {
                return Err(bad);
            }
            *f = Some(id);
        }
        if r.remaining() != 0 {
            return Err(bad);
        }
        Ok(Origin { run_id, flags, argc, args_hash: hash, program, cwd, args, files })
    }

    /// The kept arguments (none with [`ARGS_HASHED`]).
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let args = self.args;
        args.split(|&c| c == 0).take(self.argc as usize).take_while(move |_| !args.is_empty())
    }

    /// Whether the arguments are known in full (not only by their hash).
    pub fn has_args(&self) -> bool {
        self.flags & ARGS_HASHED == 0
    }
}

/// Writes `bytes` as lowercase hex into `out`; `None` if it does not fit.
pub fn to_hex<'o>(bytes: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    let out = out.get_mut(..bytes.len() * 2)?;
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = b"0123456789abcdef"[(b >> 4) as usize];
        pair[1] = b"0123456789abcdef"[(b & 15) as usize];
    }
    Some(out)
}

/// Decodes hex (either case) into `out`; `None` if it is not hex or does not fit.
pub fn from_hex<'o>(hex: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let out = out.get_mut(..hex.len() / 2)?;
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (b, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *b = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}
