//! Why an image cannot be trusted: [`ImageError`], one line per problem. The crate root
//! re-exports it.

use crate::{FORMAT_VERSION, OLDEST_FORMAT};

/// Why an image cannot be trusted. Each message is one line naming the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// The file is shorter than its headers say.
    Truncated,
    /// No ELF magic: not an image at all.
    NotElf,
    /// ELF, but not a 64-bit little-endian x86-64 core file.
    NotCore,
    /// An ELF core file without a ckpt state note (for example a kernel core dump).
    Foreign,
    /// A ckpt image of a format version this reader does not read: older than
    /// [`OLDEST_FORMAT`], or newer than [`FORMAT_VERSION`].
    UnsupportedVersion(u32),
    /// A "CKPT" note of a type this reader does not know and may not ignore: made by a newer
    /// ckpt.
    NewerNote(u32),
    /// The headers or notes do not match their checksum.
    MetaChecksum,
    /// A region's data does not match its checksum.
    DataChecksum { index: usize },
    /// A deleted file's saved contents do not match their checksum.
    BlobChecksum { fd: i32 },
    /// The headers contradict themselves.
    Malformed(&'static str),
    /// More regions than the format allows.
    TooManyRegions,
    /// A key was given, but the image carries no authentication.
    NotAuthenticated,
    /// The image's MAC does not match the key: it was changed, or made with another key.
    AuthenticationFailed,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::Truncated => f.write_str("truncated image (file is shorter than its headers say)"),
            ImageError::NotElf => f.write_str("not a ckpt image (no ELF header)"),
            ImageError::NotCore => f.write_str("not a ckpt image (not an x86-64 ELF core file)"),
            ImageError::Foreign => f.write_str("not a ckpt image (an ELF core file without ckpt state)"),
            ImageError::UnsupportedVersion(v) if *v > FORMAT_VERSION => write!(
                f,
                "made by a newer ckpt: image format version {v} (this one reads versions {OLDEST_FORMAT} to {FORMAT_VERSION}); restart it with the ckpt that made it"
            ),
            ImageError::UnsupportedVersion(v) => write!(
                f,
                "unsupported image format version {v}, from before the format's compatibility rule (this ckpt reads versions {OLDEST_FORMAT} to {FORMAT_VERSION}); restart it with the ckpt that made it"
            ),
            ImageError::NewerNote(t) => write!(
                f,
                "made by a newer ckpt: it holds state this one does not know (note type {t:#x}); restart it with the ckpt that made it"
            ),
            ImageError::MetaChecksum => f.write_str("corrupt image (header checksum mismatch)"),
            ImageError::DataChecksum { index } => write!(f, "corrupt image (region {index} data checksum mismatch)"),
            ImageError::BlobChecksum { fd } => write!(f, "corrupt image (saved contents of fd {fd} checksum mismatch)"),
            ImageError::Malformed(what) => write!(f, "corrupt image ({what})"),
            ImageError::TooManyRegions => f.write_str("corrupt image (too many regions)"),
            ImageError::NotAuthenticated => f.write_str("not authenticated (the image was made without a key: CKPT_KEY)"),
            ImageError::AuthenticationFailed => {
                f.write_str("authentication failed (the image was changed after it was written, or made with another key)")
            }
        }
    }
}
