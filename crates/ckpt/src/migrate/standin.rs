//! STAND-IN, to be deleted when branch `hold` is merged: the API of
//! `crate::checkpoint::{take, Ending, Taken}` as that branch defines it, built from what `ckpt
//! checkpoint` does today. Its limits: the image goes to the program's own image path, not to
//! `to` (so migrate's images are left there); and `Hold` is an ordinary checkpoint followed by
//! SIGSTOP, so the program runs for a moment past its last image (a restored program's log
//! files are cut back to the image, so the lines it printed then are printed again there, once;
//! output through migrate's streams would repeat them).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub enum Ending {
    Goes,
    Hold,
}

pub struct Taken {
    pub image: PathBuf,
    #[allow(dead_code)] // part of the API the stand-in imitates
    pub bytes: u64,
    pub pids: Vec<u32>,
}

pub fn take(pid: u32, _to: Option<&Path>, ending: Ending, timeout: Duration) -> Result<Taken, (u8, String)> {
    let exe = std::env::current_exe().map_err(|e| (crate::EXIT_FAILED, format!("cannot find ckpt itself: {e}")))?;
    let out = Command::new(exe)
        .args(["checkpoint", &pid.to_string(), "--wait", "--timeout", &timeout.as_secs_f64().to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| (crate::EXIT_FAILED, format!("cannot run ckpt checkpoint: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim().trim_start_matches("ckpt: ");
        return Err((out.status.code().unwrap_or(1) as u8, said.to_string()));
    }
    let program = crate::report::program_behind(pid);
    let pids = tree(program);
    if matches!(ending, Ending::Hold) {
        for &p in &pids {
            let _ = ckpt_sigsafe::sys::kill(p, libc::SIGSTOP as u32);
        }
    }
    let image = image_path(program);
    let bytes = std::fs::metadata(&image).map(|m| m.blocks() * 512).unwrap_or(0);
    Ok(Taken { image, bytes, pids })
}

/// The image path the program writes to: its CKPT_IMAGE, else myckpt where it runs.
fn image_path(pid: u32) -> PathBuf {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"CKPT_IMAGE="))
        .map(|v| cwd.join(String::from_utf8_lossy(v).as_ref()))
        .unwrap_or_else(|| cwd.join("myckpt"))
}

/// The program and every process below it, checkpoint writers left out.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for t in tasks.flatten() {
            let children = std::fs::read(t.path().join("children")).unwrap_or_default();
            for c in ckpt_sigsafe::proctext::pid_list(&children) {
                if !all.contains(&c) && crate::report::comm(c) != "ckpt-writer" {
                    all.push(c);
                }
            }
        }
    }
    all
}
