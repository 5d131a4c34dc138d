//! Finds libckpt.so and myrestart: where an environment variable says (`CKPT_LIBCKPT`,
//! `CKPT_MYRESTART`), else next to the ckpt binary: in the same directory (the build tree), or
//! where `make install` puts them (`PREFIX/bin/myrestart`, `PREFIX/lib/ckpt/libckpt.so`).

use std::path::PathBuf;

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.canonicalize().ok()?.parent().map(PathBuf::from)
}

fn find(variable: &str, candidates: &[&str]) -> Result<PathBuf, (u8, String)> {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.canonicalize().map_err(|e| (crate::EXIT_REFUSED, format!("{variable}={}: {}", crate::shown(&path), crate::io_message(&e))));
    }
    let dir = exe_dir().ok_or((crate::EXIT_REFUSED, "cannot tell where the ckpt binary is".to_string()))?;
    let tried: Vec<PathBuf> = candidates.iter().map(|c| dir.join(c)).collect();
    tried.iter().find(|p| p.exists()).and_then(|p| p.canonicalize().ok()).ok_or_else(|| {
        let list: Vec<String> = tried.iter().map(|p| crate::shown(p)).collect();
        (crate::EXIT_REFUSED, format!("cannot find {}: looked for {} (next to ckpt, or where `make install` puts it); set {variable} to its path", candidates[0], list.join(" and ")))
    })
}

pub fn libckpt() -> Result<PathBuf, (u8, String)> {
    find("CKPT_LIBCKPT", &["libckpt.so", "../lib/ckpt/libckpt.so"])
}

pub fn myrestart() -> Result<PathBuf, (u8, String)> {
    find("CKPT_MYRESTART", &["myrestart", "../lib/ckpt/myrestart"])
}
