//! Image files as ckpt reads them (`inspect`, `copy`, `restart --newest`): the headers read and
//! checked, a read-only view of the whole file with where its holes are; and the base images
//! an incremental image needs, found and checked the way myrestart checks them before it
//! restores anything; and a file's identity, by which a new image is told from the one before.

use ckpt_image::image::{headers_len, PREFIX_LEN};
use ckpt_image::verify::{check_region, Extents};
use ckpt_image::{Image, ImageError, ProcessState};
pub use crate::os::View;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file's inode and modification time.
pub type FileId = (u64, i64, i64);

/// The [`FileId`] of the file at `path`: a new image has another.
pub fn identity(path: &std::path::Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

/// The image file's data stretches, from `SEEK_DATA`/`SEEK_HOLE`.
pub struct FileHoles<'f>(pub &'f File);

impl Extents for FileHoles<'_> {
    fn extents(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> {
        crate::os::data_extents(self.0, from, to)
    }
}

/// Why an image file could not be opened.
pub enum OpenError {
    Io(std::io::Error),
    Image(ImageError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io(e) => f.write_str(&crate::io_message(e)),
            OpenError::Image(e) => write!(f, "{e}"),
        }
    }
}

/// Opens the regular file at `path` to read: non-blocking, since a FIFO (or a device) put where
/// an image or a key file is expected would hold `open` forever, and refused unless it is a
/// regular file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Reads the headers (`meta_len` bytes) of the image that starts at `at` in `f`, a file of
/// `file_len` bytes: a whole image at 0, a tree's part further on.
pub fn read_meta(f: &File, at: u64, file_len: u64) -> Result<Vec<u8>, ImageError> {
    let mut prefix = [0u8; PREFIX_LEN];
    // The prefix, or as much of it as the file holds.
    let got = PREFIX_LEN.min(file_len.saturating_sub(at) as usize);
    f.read_exact_at(&mut prefix[..got], at).map_err(|_| ImageError::Truncated)?;
    let len = headers_len(&prefix[..got], at, file_len)?;
    let mut meta = vec![0u8; len];
    f.read_exact_at(&mut meta, at).map_err(|_| ImageError::Truncated)?;
    Ok(meta)
}

/// An image file opened for reading: its headers, and a view of all of it.
pub struct ImageFile {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    meta: Vec<u8>,
    view: View,
}

impl ImageFile {
    /// Opens the image at `path` and reads its headers (checked by [`ImageFile::image`]).
    pub fn open(path: &Path) -> Result<ImageFile, OpenError> {
        let file = open_regular(path).map_err(OpenError::Io)?;
        let len = file.metadata().map_err(OpenError::Io)?.len();
        let meta = read_meta(&file, 0, len).map_err(OpenError::Image)?;
        let view = View::map(&file, len).map_err(OpenError::Io)?;
        Ok(ImageFile { path: path.to_path_buf(), file, len, meta, view })
    }

    /// The headers, checked, with the process state decoded into `st`.
    pub fn image<'a>(&'a self, st: &mut ProcessState) -> Result<Image<'a>, ImageError> {
        Image::parse(&self.meta, self.len, st)
    }

    /// Every byte of the file.
    pub fn bytes(&self) -> &[u8] {
        self.view.bytes()
    }

    pub fn holes(&self) -> FileHoles<'_> {
        FileHoles(&self.file)
    }
}

/// Why a base image cannot serve the image built on it.
pub enum BaseProblem {
    /// Not in the image's directory, or not readable there.
    Unreadable(std::io::Error),
    /// Another file under its name (another length, identity or header checksum).
    NotTheOne,
    /// Its headers or the bytes the image takes from it are damaged.
    Damaged(ImageError),
}

impl BaseProblem {
    /// Whether a checksum failed (rather than a file missing or being another).
    pub fn is_checksum(&self) -> bool {
        matches!(self, BaseProblem::Damaged(ImageError::DataChecksum { .. } | ImageError::MetaChecksum))
    }
}

impl std::fmt::Display for BaseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseProblem::Unreadable(e) if e.kind() == std::io::ErrorKind::NotFound => f.write_str("missing"),
            BaseProblem::Unreadable(e) => write!(f, "unreadable ({})", crate::io_message(e)),
            BaseProblem::NotTheOne => f.write_str("not the image this one was built on (rewritten or replaced)"),
            BaseProblem::Damaged(e) => write!(f, "damaged: {e}"),
        }
    }
}

/// A base image an incremental image names, and what checking it found.
pub struct BaseCheck {
    /// Its file name, in the image's directory.
    pub name: String,
    pub id: u64,
    /// How many of the image's pages it holds.
    pub pages: u64,
    pub found: Result<ImageFile, BaseProblem>,
}

/// The base images `image` (the image at `path`) names, in its order, each checked as
/// myrestart checks it: in the image's directory under its name, the very image the image was
/// built on (length, identity, header checksum), holding the pages the image's runs name in its
/// own bytes, and those regions' bytes matching their hashes.
pub fn check_bases(path: &Path, image: &Image) -> Result<Vec<BaseCheck>, ImageError> {
    let Some(chain) = image.chain().transpose()? else { return Ok(Vec::new()) };
    let dir = crate::dir_of(path);
    let mut out = Vec::new();
    for (k, b) in chain.bases().enumerate() {
        let b = b?;
        let source = k as u32 + 1;
        let name = String::from_utf8_lossy(b.name()).into_owned();
        let pages = image.shared_runs().filter_map(Result::ok).filter(|r| r.source == source).map(|r| r.pages).sum();
        let found = (|| {
            let bpath = dir.join(std::ffi::OsStr::from_bytes(b.name()));
            let len = std::fs::metadata(&bpath).map_err(BaseProblem::Unreadable)?.len();
            if len != b.file_len {
                return Err(BaseProblem::NotTheOne);
            }
            let base = ImageFile::open(&bpath).map_err(|e| match e {
                OpenError::Io(e) => BaseProblem::Unreadable(e),
                OpenError::Image(e) => BaseProblem::Damaged(e),
            })?;
            let mut st = Box::new(ProcessState::ZERO);
            let parsed = base.image(&mut st).map_err(BaseProblem::Damaged)?;
            if !b.is(&parsed) {
                return Err(BaseProblem::NotTheOne);
            }
            ckpt_image::chain::check_against_base(image, source, &parsed).map_err(BaseProblem::Damaged)?;
            for i in 0..parsed.region_count() {
                let r = parsed.region(i).map_err(BaseProblem::Damaged)?;
                if ckpt_image::chain::takes_from(image, source, &r.record) {
                    check_region(base.bytes(), &r, &base.holes()).map_err(BaseProblem::Damaged)?;
                }
            }
            Ok(base)
        })();
        out.push(BaseCheck { name, id: b.id, pages, found });
    }
    Ok(out)
}

/// Refuses at once an image path whose directory cannot take images (missing, not a
/// directory, not writable), rather than fail at every checkpoint later.
pub fn check_image_dir(image: &Path) -> Result<(), (u8, String)> {
    let dir = crate::dir_of(image);
    let cannot = |why: String| (crate::EXIT_REFUSED, format!("cannot write images to {}: {why}", crate::shown(dir)));
    let m = std::fs::metadata(dir).map_err(|e| cannot(crate::io_message(&e)))?;
    if !m.is_dir() {
        return Err(cannot("not a directory".into()));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| cannot("a NUL in the path".into()))?;
    crate::os::may_write_in(&c).map_err(|e| cannot(crate::io_message(&e)))?;
    if std::fs::symlink_metadata(image).is_ok_and(|m| m.is_dir()) {
        return Err((crate::EXIT_REFUSED, format!("{} is a directory, not an image", crate::shown(image))));
    }
    Ok(())
}
