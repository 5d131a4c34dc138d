//! Whether `ckpt` may attach to a process, decided before anything touches it: a process that
//! is refused is left exactly as it was. Each refusal is one line that says what would let the
//! checkpoint be taken.

use crate::report::comm;
use crate::EXIT_REFUSED;
use ckpt_sigsafe::proctext::{parse_dec, stat_state, status_field};

type Refusal = (u8, String);

/// The numbers of a `Uid:` or `Gid:` line (real, effective, saved, file system).
fn ids(status: &[u8], key: &[u8]) -> Vec<u64> {
    status_field(status, key).map(|v| v.split(|c| c.is_ascii_whitespace()).filter_map(parse_dec).collect()).unwrap_or_default()
}

/// Yama's `ptrace_scope` (absent: no Yama).
fn yama_scope() -> Option<u64> {
    std::fs::read("/proc/sys/kernel/yama/ptrace_scope").ok().and_then(|t| parse_dec(t.trim_ascii()))
}

/// The refusals of the design, in the order a user would want to hear them.
pub fn check(asked: u32, pid: u32) -> Result<(), Refusal> {
    let refuse = |why: String| Err((EXIT_REFUSED, why));
    let status = match std::fs::read(format!("/proc/{pid}/status")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return refuse(format!("no process {asked}")),
        Err(e) => return refuse(format!("process {asked}: /proc/{pid}/status: {}", crate::io_message(&e))),
    };
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    // ckpt's own processes (a supervisor whose program could not be told, a writer) are never
    // checkpointed as programs.
    let name = comm(pid);
    if matches!(name.as_str(), "ckpt" | "myrestart") || crate::report::is_libckpt_helper(&name) {
        return refuse(format!("process {asked} is ckpt's own {name}, not a program: checkpoint the program it runs (its PID is in `ps --ppid {pid}`, or further below)"));
    }
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    match stat_state(&stat) {
        // The process goes on in other threads: ckpt works through the main one.
        Some(b'Z') if threads > 1 => return refuse(format!("process {asked}'s main thread has ended (the others go on), and ckpt works through that thread: not supported")),
        Some(b'Z' | b'X') | None => return refuse(format!("process {asked} has ended")),
        Some(b'T') => return refuse(format!("process {asked} is stopped; ckpt attaches only to a running process (`kill -CONT {asked}` lets it go on)")),
        _ => {}
    }
    // A 32-bit program (i386 or x32): its registers and calls are not those ckpt's code knows.
    // (Its executable is readable to whoever may trace it.)
    let mut ident = [0u8; 5];
    if std::fs::File::open(format!("/proc/{pid}/exe")).and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut ident, 0)).is_ok() && ident[..4] == *b"\x7fELF" && ident[4] != 2 {
        return refuse(format!("process {asked} runs a 32-bit program: ckpt checkpoints x86-64 programs only"));
    }
    let me = crate::os::euid() as u64;
    let uids = ids(&status, b"Uid:");
    let gids = ids(&status, b"Gid:");
    if me != 0 {
        if uids.first() != Some(&me) {
            return refuse(format!("process {asked} belongs to another user: checkpoint it as its owner"));
        }
        // The kernel lets a user trace a process whose every user and group ID are theirs and
        // that is dumpable; a setuid program fails both (its /proc files then belong to root).
        let own_dir = std::fs::metadata(format!("/proc/{pid}")).map(|m| std::os::unix::fs::MetadataExt::uid(&m) as u64 == me).unwrap_or(false);
        let my_gid = crate::os::egid() as u64;
        if uids.iter().any(|&u| u != me) || gids.iter().any(|&g| g != my_gid) || !own_dir {
            return refuse(format!("process {asked} is not dumpable (it runs a setuid or setgid program, or called prctl(PR_SET_DUMPABLE, 0)): it can be checkpointed only as root"));
        }
    }
    if let Some(tracer) = status_field(&status, b"TracerPid:").and_then(parse_dec).filter(|&t| t != 0) {
        return refuse(format!("process {asked} is already traced by process {tracer} ({}), and a process can have only one tracer: checkpoint it once that one has detached", comm(tracer)));
    }
    match yama_scope() {
        Some(3) => return refuse("Yama forbids ptrace on this system (kernel.yama.ptrace_scope = 3), which ckpt needs for a process it did not start: start the program with `ckpt run`".into()),
        Some(2) if me != 0 => return refuse("Yama lets only root use ptrace here (kernel.yama.ptrace_scope = 2), which ckpt needs for a process it did not start: checkpoint it as root, or start the program with `ckpt run`".into()),
        _ => {}
    }
    if status_field(&status, b"Seccomp:").and_then(parse_dec).is_some_and(|m| m != 0) {
        return refuse(format!("process {asked} runs under a seccomp filter, which could kill it for a system call ckpt's code makes in it: start the program with `ckpt run` to checkpoint it"));
    }
    if let Some(w) = writer_of(pid, &stat) {
        return refuse(format!("an earlier checkpoint of process {asked} is still being written (by process {w}, ckpt-writer): checkpoint it again once that one is done"));
    }
    Ok(())
}

/// A `ckpt-writer` still writing an earlier checkpoint of process `pid` (whose `/proc/PID/stat`
/// is `stat`). Such a writer is a fork of the process (made by the attached checkpoint's code in
/// it, then left to itself: nobody's child), so it runs the same executable with the same
/// memory layout: the code, stack and argument and environment addresses of `stat`, which
/// differ from one run of a program to the next (address space randomisation).
fn writer_of(pid: u32, stat: &[u8]) -> Option<u32> {
    use ckpt_sigsafe::proctext::stat_field;
    // start_code, end_code, start_stack, arg_start, arg_end, env_start, env_end.
    let layout = |stat: &[u8]| [26, 27, 28, 48, 49, 50, 51].map(|n| stat_field(stat, n).unwrap_or(0));
    let mine = layout(stat);
    if mine.contains(&0) {
        return None; // not readable: no one to compare with
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let w = e.file_name().to_string_lossy().parse::<u32>().ok().filter(|&w| w != pid)?;
        (comm(w) == "ckpt-writer"
            && std::fs::read(format!("/proc/{w}/stat")).is_ok_and(|s| layout(&s) == mine)
            && std::fs::read_link(format!("/proc/{w}/exe")).is_ok_and(|x| x == exe))
        .then_some(w)
    })
}

/// Why `PTRACE_SEIZE` failed, once [`check`] found nothing against it.
pub fn seize_failed(asked: u32, e: &std::io::Error) -> Refusal {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::ENOSYS) => (
            EXIT_REFUSED,
            format!("ptrace is not allowed to ckpt here ({}: a seccomp filter, as in many containers, or a security module forbids it), and ckpt needs it for process {asked}, which it did not start: start the program with `ckpt run`, or allow ptrace (CAP_SYS_PTRACE, a seccomp profile that permits it)", crate::io_message(e)),
        ),
        Some(libc::ESRCH) => (EXIT_REFUSED, format!("process {asked} has ended")),
        _ => (crate::EXIT_FAILED, format!("ptrace could not attach to process {asked}: {}", crate::io_message(e))),
    }
}
