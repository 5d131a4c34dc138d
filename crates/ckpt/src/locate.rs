//! Finds libckpt.so and myrestart next to the ckpt binary: in the same directory (the build
//! tree), or where `make install` puts them (`PREFIX/bin/myrestart`, `PREFIX/lib/ckpt/libckpt.so`).

use std::path::PathBuf;

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.canonicalize().ok()?.parent().map(PathBuf::from)
}

fn find(candidates: &[&str]) -> Result<PathBuf, (u8, String)> {
    let dir = exe_dir().ok_or((crate::EXIT_REFUSED, "cannot tell where the ckpt binary is".to_string()))?;
    candidates
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.exists())
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| (crate::EXIT_REFUSED, format!("cannot find {} next to {}", candidates[0], dir.display())))
}

pub fn libckpt() -> Result<PathBuf, (u8, String)> {
    find(&["libckpt.so", "../lib/ckpt/libckpt.so"])
}

pub fn myrestart() -> Result<PathBuf, (u8, String)> {
    find(&["myrestart", "../lib/ckpt/myrestart"])
}
