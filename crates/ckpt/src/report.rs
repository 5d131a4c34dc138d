//! A running program seen from outside: which process it is (behind a `ckpt restart`, the
//! program is below myrestart), and what its report page (`ckpt_image::report`) says became
//! of the checkpoint asked for: written, or failed and why, and what the program did then.

use ckpt_image::report::{Outcome, Report};
use ckpt_sigsafe::proctext;

/// The name `/proc/PID/fd/N` shows for the page.
fn page_link() -> String {
    format!("/memfd:{} (deleted)", ckpt_image::report::REPORT_NAME.to_string_lossy())
}

/// Whether descriptor `fd` of process `pid` is a report page (by the name the kernel shows for
/// it): a descriptor number read back from a process's memory is checked so before ckpt
/// opens or closes it.
pub fn is_page_fd(pid: u32, fd: i32) -> bool {
    fd >= 0 && std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|l| l.as_os_str() == page_link().as_str())
}

/// Whether a process named `comm` is one libckpt starts beside a program, never a process of
/// the program's own: an image writer, the thread stopper (`ckpt-seize`), the zero test's
/// helper (`ckpt-zeros`, for the time of a checkpoint's pause).
pub fn is_libckpt_helper(comm: &str) -> bool {
    matches!(comm, "ckpt-writer" | "ckpt-seize" | "ckpt-zeros")
}

/// The command name of process `pid` (`?` when it cannot be read: gone, or not ours to see).
pub fn comm(pid: impl std::fmt::Display) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end().to_string()).unwrap_or_else(|_| "?".into())
}

/// The children of process `pid` (of its main thread, which is where a single-threaded
/// supervisor's are).
fn children(pid: u32) -> Vec<u32> {
    let text = std::fs::read(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    proctext::pid_list(&text).collect()
}

/// The process that runs the program when `pid` is a supervisor of it: a `ckpt job` (the PID
/// `ckpt job … &` leaves in `$!`), above the program or the myrestart that restored it; a
/// myrestart (what `ckpt restart … &` leaves), above its init in the program's PID namespace,
/// above the program (the root of a tree). Checkpoint writers, which end up below init too, are
/// not it. `pid` itself otherwise.
pub fn program_behind(pid: u32) -> u32 {
    let mut at = pid;
    for _ in 0..3 {
        if !matches!(comm(at).as_str(), "myrestart" | "ckpt") {
            return at;
        }
        let below: Vec<u32> = children(at).into_iter().filter(|&c| !is_libckpt_helper(&comm(c))).collect();
        match below[..] {
            [only] => at = only,
            _ => return pid,
        }
    }
    if matches!(comm(at).as_str(), "myrestart" | "ckpt") { pid } else { at }
}

/// The PID `pid` has in its own PID namespace (what its report page names as its owner).
pub fn own_pid(pid: u32) -> u32 {
    let status = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
    proctext::status_field(&status, b"NSpid:")
        .and_then(|v| v.split(|c| c.is_ascii_whitespace()).rfind(|w| !w.is_empty()))
        .and_then(proctext::parse_dec)
        .map_or(pid, |p| p as u32)
}

/// What a report page said when it was read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub started: u32,
    pub done: u32,
    pub outcome: Option<Outcome>,
    pub message: String,
}

/// The report page of process `pid`: found by its name among the process's descriptors, and
/// kept open (it can still be read once the process has ended).
pub struct Page {
    pid: u32,
    owner: u32,
    file: Option<std::fs::File>,
    /// The page was given, not found among the process's descriptors.
    fixed: bool,
}

impl Page {
    pub fn of(pid: u32) -> Page {
        let mut p = Page { pid, owner: own_pid(pid), file: None, fixed: false };
        p.find();
        p
    }

    /// The page behind `file`, which the process named (an attached checkpoint's: the
    /// process no longer holds it, so it is never looked for again).
    pub fn opened(pid: u32, file: std::fs::File) -> Page {
        Page { pid, owner: own_pid(pid), file: Some(file), fixed: true }
    }

    /// No page: the checkpoint is followed by its image file.
    pub fn none(pid: u32) -> Page {
        Page { pid, owner: own_pid(pid), file: None, fixed: true }
    }

    fn find(&mut self) {
        if self.fixed {
            return;
        }
        let want = page_link();
        self.file = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()
            .and_then(|fds| fds.flatten().map(|e| e.path()).find(|p| std::fs::read_link(p).is_ok_and(|t| t.as_os_str() == want.as_str())))
            .and_then(|p| std::fs::File::open(p).ok());
    }

    /// The page now, if the process has one of its own (a forked child may still hold its
    /// parent's until its first checkpoint makes its own: then the page is looked for again).
    pub fn read(&mut self) -> Option<Snapshot> {
        use std::os::unix::fs::FileExt;
        let mut tries = 0;
        while tries < 50 {
            tries += 1;
            let Some(f) = &self.file else {
                self.find();
                self.file.as_ref()?;
                continue;
            };
            let mut bytes = vec![0u8; ckpt_image::report::REPORT_LEN];
            let n = f.read_at(&mut bytes, 0).unwrap_or(0);
            match Report::read(&bytes[..n]) {
                // An outcome half written: a moment later it is whole.
                Some(r) if r.busy => std::thread::sleep(std::time::Duration::from_millis(1)),
                Some(r) if r.owner == self.owner => {
                    return Some(Snapshot { started: r.started, done: r.done, outcome: r.outcome, message: ckpt_sigsafe::out::Lossy(r.message).to_string() });
                }
                // Not (or no longer) the process's page: a forked child's inherited one, or one
                // it stopped using; its page is looked for again.
                _ => {
                    self.find();
                    tries += 10;
                }
            }
        }
        None
    }

    /// Leaves `path` in the page for the next checkpoint `ckpt` asks for (`--to`), under a new
    /// number, which the request must carry (`ckpt_sigsafe::signals::with_redirect`); see
    /// `ckpt_image::report` for the order of the writes. The page is opened read-write for it
    /// (the process's owner may).
    pub fn redirect(&mut self, path: &[u8]) -> Result<u32, String> {
        use ckpt_image::report as layout;
        use std::os::unix::fs::FileExt;
        use std::os::unix::io::AsRawFd;
        if self.read().is_none() {
            return Err("it has no report page to take the path from (it closed the descriptor libckpt keeps)".into());
        }
        let Some(f) = &self.file else { return Err("it has no report page".into()) };
        if path.len() > layout::TO_PATH_MAX {
            return Err(format!("the path is longer than {} bytes", layout::TO_PATH_MAX));
        }
        let rw = std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(|e| format!("its report page: {}", crate::io_message(&e)))?;
        let word = |i: usize, v: u32| rw.write_all_at(&v.to_le_bytes(), (i * 4) as u64);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let seq = ((nanos ^ std::process::id().rotate_left(12)) & 0xff_ffff).max(1);
        let written = word(layout::TO_SEQ, 0)
            .and_then(|()| word(layout::TO_TAKEN, 0))
            .and_then(|()| rw.write_all_at(path, layout::TO_AT as u64))
            .and_then(|()| word(layout::TO_LEN, path.len() as u32))
            .and_then(|()| word(layout::TO_SEQ, seq));
        written.map_err(|e| format!("writing its report page: {}", crate::io_message(&e)))?;
        self.file = Some(rw);
        Ok(seq)
    }

    /// The page's redirection now: its number (0 once taken) and the checkpoint that took it.
    pub fn redirect_state(&self) -> Option<(u32, u32)> {
        use ckpt_image::report as layout;
        use std::os::unix::fs::FileExt;
        let f = self.file.as_ref()?;
        let mut words = [0u8; 64];
        f.read_exact_at(&mut words, 0).ok()?;
        let word = |i: usize| u32::from_le_bytes([words[i * 4], words[i * 4 + 1], words[i * 4 + 2], words[i * 4 + 3]]);
        Some((word(layout::TO_SEQ), word(layout::TO_TAKEN)))
    }

    /// Whether the process has a page at all (a program that closed every descriptor it did not
    /// open itself has none, and is followed the old way, by its image file).
    pub fn exists(&self) -> bool {
        self.file.is_some()
    }
}

/// The outcome of the checkpoint asked for after `base` (the page's `started` then), once the
/// page says it.
pub fn outcome_after(s: &Snapshot, base: u32) -> Option<Outcome> {
    s.outcome.filter(|_| s.done.wrapping_sub(base) as i32 > 0)
}
