//! `ckpt copy IMAGE DEST`: one image file that restarts without any other image file, for
//! copying, archiving or moving. An incremental image needs the base images it names beside
//! it; its copy holds every page it takes from them (the layout is `ckpt_image::standalone`'s).
//! Any other image is copied as it is, holes and all.
//!
//! The image is verified first, as `ckpt inspect` verifies it (bases included); the copy is
//! written to a new file beside DEST, checked as myrestart will read it, synced, and renamed
//! over DEST, so DEST is never half-written and a failure leaves nothing behind.

use crate::imagefile::{FileHoles, ImageFile, View};
use crate::inspect::examine_file;
use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use ckpt_image::standalone::{Move, Standalone};
use ckpt_image::verify::plain_digest;
use ckpt_image::ProcessState;
use clap::Args;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct CopyArgs {
    /// The image to copy.
    image: PathBuf,
    /// Where the copy goes: a file (replaced if it exists), or an existing directory (the copy
    /// gets IMAGE's file name there).
    dest: PathBuf,
    /// Copy an image (or base image) that another user owns or others may write (refused by
    /// default, as `ckpt restart` refuses it: the copy would be yours, and restore as yours).
    #[arg(long)]
    trust_image: bool,
}

/// The file being written, removed unless it was renamed into place.
struct Temp {
    path: PathBuf,
    file: File,
    done: bool,
}

impl Temp {
    /// A new file, readable and writable by its owner only, beside `dest`.
    fn beside(dest: &Path) -> std::io::Result<Temp> {
        let dir = crate::dir_of(dest);
        let mut name = std::ffi::OsString::from(".");
        name.push(dest.file_name().unwrap_or_default());
        name.push(format!(".copy-{}", std::process::id()));
        let path = dir.join(name);
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        Ok(Temp { path, file, done: false })
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub fn copy(a: CopyArgs) -> Outcome {
    let name = crate::shown(&a.image);
    let bad = |e: ckpt_image::ImageError| (EXIT_REFUSED, format!("{name}: {e}"));
    let dest = if a.dest.is_dir() {
        a.dest.join(a.image.file_name().ok_or_else(|| (EXIT_REFUSED, format!("{name}: not a file name")))?)
    } else if a.dest.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err((EXIT_REFUSED, format!("{}: no such directory", crate::shown(&a.dest))));
    } else {
        a.dest.clone()
    };
    let shown = crate::shown(&dest);

    // Verified as `ckpt inspect` verifies it, through the very descriptors the copy reads.
    let src = ImageFile::open(&a.image).map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?;
    let (doc, restartable, checked) = examine_file(&src, None, a.trust_image)?;
    if !restartable {
        // A checksum that fails is a failure (1); anything else a refusal (2).
        let code = if doc["checksums_ok"] == true { EXIT_REFUSED } else { EXIT_FAILED };
        return Err((code, format!("{name} is not copied: it cannot be restarted: {}", doc["restartable_reason"].as_str().unwrap_or("?"))));
    }
    let bases = checked.into_iter().filter_map(|b| b.found.ok()).collect::<Vec<_>>();
    let mut st = Box::new(ProcessState::ZERO);
    let image = src.image(&mut st).map_err(bad)?;
    // Replacing the image itself or one of its bases would take away what older images need.
    if let Ok(d) = std::fs::metadata(&dest) {
        for f in std::iter::once(&src).chain(&bases) {
            if f.file.metadata().is_ok_and(|m| (m.dev(), m.ino()) == (d.dev(), d.ino())) {
                return Err((EXIT_REFUSED, format!("{shown} is the same file as {}, which the image needs: copy to another file", crate::shown(&f.path))));
            }
        }
    }
    let mut scratch = Box::new(ProcessState::ZERO);
    let base_images = bases.iter().map(|b| b.image(&mut scratch)).collect::<Result<Vec<_>, _>>().map_err(bad)?;
    let plan = Standalone::plan(&image, &base_images).map_err(bad)?;

    let failed = |what: &str, e: std::io::Error| (EXIT_FAILED, format!("{shown}: {what}: {}", crate::io_message(&e)));
    let mut tmp = Temp::beside(&dest).map_err(|e| (EXIT_REFUSED, format!("{shown}: cannot create a file beside it: {}", crate::io_message(&e))))?;
    tmp.file.set_len(plan.file_len()).map_err(|e| failed("cannot size the copy", e))?;
    for m in plan.moves(&image) {
        let m = m.map_err(bad)?;
        let from = if m.source == 0 { &src } else { &bases[m.source as usize - 1] };
        copy_stretch(from, m, &tmp.file).map_err(|e| failed("cannot write the copy", e))?;
    }
    let written = View::map(&tmp.file, plan.file_len()).map_err(|e| failed("cannot read the copy back", e))?;
    let holes = FileHoles(&tmp.file);
    let mut meta = vec![0u8; plan.meta_len()];
    plan.write_headers(&image, |r| plain_digest(written.bytes(), r, &holes).map(|(h, _)| h), &mut meta).map_err(bad)?;
    tmp.file.write_all_at(&meta, 0).map_err(|e| failed("cannot write the copy", e))?;
    drop(written);

    // The copy, read back as myrestart will read it: its headers, every stored byte, no base.
    let copied = ImageFile::open(&tmp.path).map_err(|e| (EXIT_FAILED, format!("{shown}: the copy does not read back: {e}")))?;
    let check = copied.image(&mut scratch).and_then(|c| {
        c.check_data(copied.bytes(), &copied.holes())?;
        match c.chain().transpose()? {
            Some(chain) if chain.count > 0 => Err(ckpt_image::ImageError::Malformed("the copy still names a base image")),
            _ => Ok(()),
        }
    });
    check.map_err(|e| (EXIT_FAILED, format!("{shown}: the copy does not check out: {e}")))?;
    drop(copied);

    tmp.file.sync_all().map_err(|e| failed("cannot sync the copy", e))?;
    std::fs::rename(&tmp.path, &dest).map_err(|e| failed("cannot put the copy in place", e))?;
    tmp.done = true;
    // The rename itself is durable once the directory is.
    let _ = File::open(crate::dir_of(&dest)).and_then(|d| d.sync_all());
    let m = tmp.file.metadata().map_err(|e| failed("cannot stat the copy", e))?;
    let taken: u64 = image.shared_runs().filter(|_| !bases.is_empty()).filter_map(Result::ok).map(|r| r.pages).sum();
    let how = match bases.len() {
        0 => "no base images (copied as it is)".to_string(),
        n => format!("{taken} pages taken in from {n} base image{}", if n == 1 { "" } else { "s" }),
    };
    println!("{shown}: {} bytes ({} allocated), needs no other image file; {how}", m.len(), m.blocks() * 512);
    Ok(ExitCode::SUCCESS)
}

/// Copies what `m` names from `from` into `to`: only the stretches that hold data, so that holes
/// stay holes.
fn copy_stretch(from: &ImageFile, m: Move, to: &File) -> std::io::Result<()> {
    let end = m.from.checked_add(m.len).filter(|&e| e <= from.len).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    for (a, b) in ckpt_image::verify::Extents::extents(&from.holes(), m.from, end) {
        to.write_all_at(&from.bytes()[a as usize..b as usize], m.to + (a - m.from))?;
    }
    Ok(())
}
