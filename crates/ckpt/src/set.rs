//! An image set: `IMAGE`, the older images kept beside it (`IMAGE.1` … `IMAGE.N`, what
//! `CKPT_KEEP` keeps) and the base images they are built on (`IMAGE.base-<id>`). Which one to
//! restart (`ckpt job`, `ckpt restart --newest`), and what becomes of the set when a job's
//! program has ended.

use crate::{EXIT_REFUSED};
use ckpt_image::origin::Origin;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An image of the set that can be restarted: its path and when it was taken, and a line for
/// each newer image passed over, saying why.
pub struct Found {
    pub path: PathBuf,
    pub taken: String,
    pub passed_over: Vec<String>,
}

impl Found {
    /// The lines to say when restarting it (the images passed over, then `restarting`), for
    /// myrestart's `--say`, which says them once the program's logs are in order.
    pub fn say(&self, restarting: &str) -> String {
        let line = format!("{restarting} from {} (taken {})", crate::shown(&self.path), self.taken);
        let all: Vec<&str> = self.passed_over.iter().map(String::as_str).chain([line.as_str()]).collect();
        let text = all.join("\n");
        // myrestart keeps about a kilobyte of it: the images passed over are said here instead
        // if there are many (a cut of a log may then take those lines).
        if text.len() < 1000 {
            return text;
        }
        for p in &self.passed_over {
            eprintln!("{p}");
        }
        line
    }
}

/// Which images of the set may be restarted, as to what their program was started as.
pub enum Want<'a> {
    /// Any (`--allow-changed`).
    Any,
    /// Only images of this command (an encoded origin note: what `ckpt job` starts).
    Command(&'a [u8]),
    /// Only images of the command the newest image of the set was taken of
    /// (`ckpt restart --newest`: an older image of another program is never taken for it).
    SameAsNewest,
}

/// The images of the set that exist: `image`, `image.1`, …
pub fn generations(image: &Path) -> Vec<PathBuf> {
    let generation = |k: u32| {
        let mut buf = vec![0u8; image.as_os_str().len() + 8];
        ckpt_image::chain::generation_name(image.as_os_str().as_bytes(), k, &mut buf).map(|c| PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes())))
    };
    (0..=ckpt_image::chain::MAX_KEEP).filter_map(generation).filter(|p| p.exists()).collect()
}

/// Every file of the set: its images and the base files beside them.
pub fn files(image: &Path) -> Vec<PathBuf> {
    let mut out = generations(image);
    let Some(name) = image.file_name() else { return out };
    let dir = crate::dir_of(image);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if ckpt_image::chain::parse_base_name(name.as_bytes(), e.file_name().as_bytes()).is_some() {
                out.push(dir.join(e.file_name()));
            }
        }
    }
    out
}

/// The newest complete image of the set: every checksum verifies, every older image it is built
/// on is there, it and they are trusted as myrestart trusts them (the user's own, writable by
/// nobody else; or `trust`, `--trust-image`), and its program was started as `want` says. `None` if there is no image at
/// all; an error if there are some but none will do. Each image passed over is named with the
/// reason: in the image found, or on stderr.
pub fn newest(image: &Path, key: Option<&Path>, want: Want, trust: bool) -> Result<Option<Found>, (u8, String)> {
    // A key file that cannot be used refuses at once (not as a reason to pass over each image).
    if let Some(k) = key {
        crate::key::read(k)?;
    }
    // Newest first, by when each was taken (as its headers say; one whose headers do not read
    // last): the first complete one is the answer, and older ones are not verified for nothing.
    let mut names = generations(image);
    names.sort_by_key(|p| std::cmp::Reverse(crate::inspect::taken_ns(p).unwrap_or(0)));
    // Each image's origin note; an image whose headers do not check out is judged by
    // `examine` below, which says why.
    let origins: Vec<Result<Option<Vec<u8>>, ()>> = names.iter().map(|p| crate::inspect::origin_note(p)).collect();
    // For --newest: the command of the newest image whose headers can be read, whatever the
    // state of its data.
    let newest_origin = match want {
        Want::SameAsNewest => origins.iter().find_map(|o| o.as_ref().ok()).cloned().flatten(),
        _ => None,
    };
    let reference: Option<&[u8]> = match &want {
        Want::Command(o) => Some(o),
        Want::SameAsNewest => newest_origin.as_deref(),
        Want::Any => None,
    };
    let mut best: Option<Found> = None;
    let mut mismatch: Option<String> = None;
    // Each image passed over: the line that says why, and whether only its command differs.
    let mut passed_over: Vec<(String, bool)> = Vec::new();
    for (path, origin) in names.iter().zip(&origins) {
        let differs = reference.and_then(|r| match (origin, Origin::parse(r)) {
            (Ok(Some(o)), Ok(r)) => crate::origin::differences(&Origin::parse(o).ok()?, &r),
            (Ok(None), _) => Some("it does not say what it was started as (it was taken by an older ckpt)".to_string()),
            _ => None,
        });
        let why = if let Some(d) = differs {
            mismatch.get_or_insert_with(|| format!("{}: {d}", crate::shown(path)));
            passed_over.push((format!("ckpt: passing over {}: it is of another command: {d}", crate::shown(path)), true));
            continue;
        } else {
            match crate::inspect::examine(path, key, trust) {
                Err((_, message)) => message,
                Ok((doc, restartable)) => {
                    if !restartable {
                        doc["restartable_reason"].as_str().unwrap_or("it cannot be restarted").to_string()
                    } else {
                        best = Some(Found { path: path.clone(), taken: doc["taken"].as_str().unwrap_or("?").to_string(), passed_over: Vec::new() });
                        break;
                    }
                }
            }
        };
        passed_over.push((format!("ckpt: passing over {}: {why}", crate::shown(path)), false));
    }
    if let Some(mut found) = best {
        found.passed_over = passed_over.into_iter().map(|(line, _)| line).collect();
        return Ok(Some(found));
    }
    // (A job refused for another command's images says so in one line, below.)
    let refused_for_command = mismatch.is_some() && matches!(want, Want::Command(_));
    for (line, other_command) in &passed_over {
        if !(refused_for_command && *other_command) {
            eprintln!("{line}");
        }
    }
    match mismatch {
        _ if names.is_empty() => Ok(None),
        Some(m) if matches!(want, Want::Command(_)) => Err((
            EXIT_REFUSED,
            format!("the images at {} are not of this job's command ({m}): give --allow-changed to restart them anyway, or move them away to start afresh", crate::shown(image)),
        )),
        _ => {
            let seen: Vec<String> = names.iter().map(|p| crate::shown(p)).collect();
            Err((EXIT_REFUSED, format!("no image of {} can be restarted ({}); remove them to start from the beginning", crate::shown(image), seen.join(", "))))
        }
    }
}

/// What becomes of a job's image set once its program has exited on its own, so that the next
/// `ckpt job` starts afresh: after exit status 0 the work is done, and the images go; after any
/// other status they are moved into `IMAGE.ended/` (replacing an older one), where
/// `ckpt restart --newest IMAGE.ended/NAME` can still go on from the last of them. Returns the
/// line that says so (`None` if there were no images).
pub fn retire(image: &Path, prog: &str, status: i32) -> Option<String> {
    let files = files(image);
    if files.is_empty() {
        return None;
    }
    let ended = if status == 0 { "finished (exit status 0)".to_string() } else { format!("ended with exit status {}", libc::WEXITSTATUS(status)) };
    if status == 0 {
        let mut left = Vec::new();
        for f in &files {
            if let Err(e) = std::fs::remove_file(f) {
                left.push(format!("{} ({})", crate::shown(f), crate::io_message(&e)));
            }
        }
        return Some(if left.is_empty() {
            format!("{prog} {ended}: its images were removed ({} {})", files.len(), if files.len() == 1 { "file" } else { "files" })
        } else {
            format!("{prog} {ended}: its images were removed, but for {}", left.join(", "))
        });
    }
    let mut aside = image.as_os_str().to_owned();
    aside.push(".ended");
    let aside = PathBuf::from(aside);
    let _ = std::fs::remove_dir_all(&aside);
    if let Err(e) = std::fs::create_dir(&aside) {
        return Some(format!("{prog} {ended}; its images stay where they are: {}: {}", crate::shown(&aside), crate::io_message(&e)));
    }
    for f in &files {
        if let Some(name) = f.file_name() {
            if let Err(e) = std::fs::rename(f, aside.join(name)) {
                return Some(format!("{prog} {ended}; moving its images into {} failed at {}: {}", crate::shown(&aside), crate::shown(f), crate::io_message(&e)));
            }
        }
    }
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Some(format!(
        "{prog} {ended}: its images are kept in {}/ (`ckpt restart --newest {}/{name}` goes on from the last), and the next `ckpt job` starts afresh",
        crate::shown(&aside),
        crate::shown(&aside)
    ))
}
