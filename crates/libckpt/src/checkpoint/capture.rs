//! Captures the process state that is not plain memory: registers' whereabouts, TLS, rseq, the
//! TID cache, robust futexes, the mm fields, signal dispositions, timers, cwd, umask, name.

use super::procfs::{self, parse_oct, readlink, stat_field, status_field};
use ckpt_sigsafe::file::{read_start, read_whole};
use super::scratch::Parts;
use super::failure::Failure;
use crate::config::Config;
use ckpt_image::frame::{xstate_info, SigContext, FXSAVE_SIZE, UCONTEXT_SIZE};
use ckpt_image::state::{Path, NSIG};
use ckpt_image::thread::{FLAG_PATCH_TID, FLAG_RSEQ};
use ckpt_image::{ProcessState, ThreadState};
use ckpt_sigsafe::sys;

// The image keeps every resource limit the kernel has.
const _: () = assert!(sys::RLIM_NLIMITS as usize == ckpt_image::state::RLIMITS);

/// glibc's rseq signature on x86-64 (`RSEQ_SIG`).
const RSEQ_SIG: u32 = 0x5305_3053;
/// The kernel's `struct rseq` is at least 32 bytes, whatever `__rseq_size` says.
const RSEQ_MIN_LEN: u32 = 32;

/// Refuses what this version cannot restore faithfully, before writing anything.
pub fn refuse_unsupported(parts: &mut Parts) -> Result<(), Failure> {
    let n = read_whole(c"/proc/self/status", parts.text).map_err(|e| Failure::new("reading /proc/self/status", e))?;
    let status = &parts.text[..n];
    if let Some(f) = status_field(status, b"x86_Thread_features:") {
        if f.windows(5).any(|w| w == b"shstk") {
            return Err(Failure::plain("the program uses shadow stacks, which ckpt cannot restore yet"));
        }
    }
    Ok(())
}

/// Fills `parts.state` (and the auxv/cmdline buffers) for the checkpoint of frame `uc`; the
/// stopped threads' pending signals (`threads`) are read again with the timers.
pub fn process_state(parts: &mut Parts, uc: usize, cfg: &Config, threads: &mut [ThreadState]) -> Result<(), Failure> {
    let st: &mut ProcessState = parts.state;
    st.created_unix_ns = procfs::realtime_ns();
    st.ckpt_signal = cfg.signal as u32;
    st.interval_ms = cfg.interval_ms;
    let uts = rustix::system::uname();
    let release = uts.release().to_bytes();
    let machine = uts.machine().to_bytes();
    let n = release.len().min(st.kernel.len() - 2);
    st.kernel[..n].copy_from_slice(&release[..n]);
    st.kernel[n] = b' ';
    let m = machine.len().min(st.kernel.len() - n - 2);
    st.kernel[n + 1..n + 1 + m].copy_from_slice(&machine[..m]);
    // The machine, for a restart elsewhere to compare (`ckpt_image::node`).
    let vdso = ckpt_sigsafe::vdso::own().and_then(ckpt_sigsafe::vdso::identity).unwrap_or((0, 0));
    let node = ckpt_image::node::Node::new(uts.nodename().to_bytes(), vdso, ckpt_sigsafe::cpu::feature_words());
    let mut w = ckpt_image::bytes::Writer::new(&mut parts.node);
    node.write(&mut w);
    w.finish().ok_or(Failure::plain("the node note does not fit"))?;
    st.pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    st.ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    st.resume_trampoline = crate::entry::trampoline_address() as u64;
    st.thread_trampoline = crate::entry::thread_trampoline_address() as u64;
    st.shared_pending = pending(c"/proc/self/status", b"ShdPnd:");

    // SAFETY: the kernel built a whole `ucontext` at `uc` for this handler invocation.
    let uc_bytes = unsafe { core::slice::from_raw_parts(uc as *const u8, UCONTEXT_SIZE) };
    let ctx = SigContext::parse(uc_bytes).map_err(|_| Failure::plain("reading the signal frame"))?;
    if ctx.fpstate != 0 {
        // SAFETY: the frame's fpstate points at the FXSAVE area the kernel saved with it.
        let fx = unsafe { core::slice::from_raw_parts(ctx.fpstate as *const u8, FXSAVE_SIZE) };
        if let Some(x) = xstate_info(fx) {
            st.xfeatures = x.xfeatures;
            st.xstate_size = x.xstate_size;
        } else {
            st.xstate_size = FXSAVE_SIZE as u32;
        }
    }
    capture_mm(parts)?;
    let st: &mut ProcessState = parts.state;
    for (i, t) in st.itimers.iter_mut().enumerate() {
        let v = sys::getitimer(i).map_err(|e| Failure::new("reading interval timers", e))?;
        *t = ckpt_image::state::Itimer { interval_sec: v[0], interval_usec: v[1], value_sec: v[2], value_usec: v[3] };
    }
    for sig in 1..=NSIG as u32 {
        if sig == 9 || sig == 19 {
            continue; // SIGKILL and SIGSTOP have no disposition to save.
        }
        let mut rec = [0u64; 4];
        // SAFETY: query only (no new action).
        if unsafe { sys::rt_sigaction(sig, None, Some(&mut rec)) }.is_ok() {
            st.sigactions[sig as usize - 1] =
                ckpt_image::state::SigAction { handler: rec[0], flags: rec[1], restorer: rec[2], mask: rec[3] };
        }
    }

    let status = &parts.text[..];
    st.umask = status_field(status, b"Umask:").and_then(parse_oct).unwrap_or(0o022);
    read_path(c"/proc/self/cwd", &mut st.cwd).map_err(|e| Failure::new("reading the working directory", e))?;
    let _ = read_path(c"/proc/self/exe", &mut st.exe);
    // What they are, so that a restart knows them from a directory or file put there since.
    st.cwd_id = ckpt_sigsafe::fileid::file_id_at(c"/proc/self/cwd");
    st.exe_id = ckpt_sigsafe::fileid::file_id_at(c"/proc/self/exe");

    capture_timers(parts)?;
    settle_pending(parts, threads)?;
    super::ipc::capture(parts)?;
    super::mqueue::capture(parts)?;
    for (i, l) in parts.state.rlimits.iter_mut().enumerate() {
        *l = sys::prlimit(i as u32, None).map_err(|e| Failure::new("reading resource limits", e))?;
    }
    parts.auxv_len = read_whole(c"/proc/self/auxv", parts.auxv).map_err(|e| Failure::new("reading /proc/self/auxv", e))?;
    parts.cmdline_len = read_start(c"/proc/self/cmdline", parts.cmdline).unwrap_or(0);
    Ok(())
}

/// The calling thread's own state, for a checkpoint that stopped it with the frame at `uc`.
/// Runs in a signal handler (the checkpoint's, or the stop signal's in another thread).
pub fn thread_state(uc: usize, cfg: &Config) -> ThreadState {
    let mut th = ThreadState {
        tid: rustix::thread::gettid().as_raw_nonzero().get() as u32,
        sigframe: uc as u64,
        fs_base: sys::arch_get(sys::ARCH_GET_FS).unwrap_or(0),
        gs_base: sys::arch_get(sys::ARCH_GET_GS).unwrap_or(0),
        comm: sys::thread_name(),
        ..ThreadState::default()
    };
    capture_rseq(&mut th, cfg);
    if let Ok(Some(addr)) = rustix::thread::get_clear_child_tid_address() {
        th.tid_address = addr.as_ptr() as u64;
        // glibc points clear_child_tid at the `tid` field of the thread descriptor; another
        // runtime may point it anywhere, so it is read without trusting it to be mapped.
        if read_own_u32(th.tid_address) == Some(th.tid) {
            th.flags |= FLAG_PATCH_TID;
        }
    }
    if let Ok((head, len)) = sys::get_robust_list() {
        th.robust_list = head;
        th.robust_len = len;
    }
    th.sigpending = pending(c"/proc/thread-self/status", b"SigPnd:");
    th
}

/// Completes the state of another thread, stopped with ptrace (which gave its registers,
/// frame, TLS bases and rseq area: see `tracee`): its robust list, name and pending signals,
/// and its TID cache. That is where the kernel clears the TID when the thread exits, which
/// `pthread_join` waits for, but no call reads it for another thread: glibc puts it at the
/// same offset from the thread pointer in every thread, so it is taken at the coordinator's
/// (`own`) offset, if the thread's own TID is there.
pub fn other_thread_state(th: &mut ThreadState, own: &ThreadState) {
    if own.flags & FLAG_PATCH_TID != 0 {
        let at = th.fs_base.wrapping_add(own.tid_address.wrapping_sub(own.fs_base));
        if read_own_u32(at) == Some(th.tid) {
            th.tid_address = at;
            th.flags |= FLAG_PATCH_TID;
        }
    }
    if let Ok((head, len)) = sys::get_robust_list_of(th.tid) {
        th.robust_list = head;
        th.robust_len = len;
    }
    let mut path = [0u8; 64];
    if let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/task/", th.tid as u64, b"/comm") {
        let mut name = [0u8; 17];
        let n = read_whole(p, &mut name).unwrap_or(0);
        let n = n.saturating_sub(1).min(15); // without its newline
        th.comm[..n].copy_from_slice(&name[..n]);
    }
    if let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/task/", th.tid as u64, b"/status") {
        th.sigpending = pending(p, b"SigPnd:");
    }
}

/// A pending-signal mask of a `/proc` status file, without ckpt's own signals (the
/// checkpoint signal and the thread-stop signal belong to this checkpoint), but those the
/// program took for itself: one of those pending is the program's, held while it blocks it.
fn pending(path: &core::ffi::CStr, field: &[u8]) -> u64 {
    let mut buf = [0u8; 2048];
    let Ok(n) = read_start(path, &mut buf) else { return 0 };
    let mask = status_field(&buf[..n], field).and_then(ckpt_sigsafe::proctext::parse_hex).unwrap_or(0);
    // An attached process has no signal of ckpt's: every pending signal is the program's; in a
    // process that runs libckpt, ckpt's own signals are left out unless the program took them.
    let ours = if crate::config::get().attached { 0 } else { crate::deliverable::untaken_bits() };
    mask & !ours
}

/// Reads the pending signals again after the timers, and the timers again until no signal
/// became pending meanwhile, so that the two agree: a timer that expired between the reading of
/// its target's pending signals and its own (the thread stopped, its signal queued) would come
/// back with the time to its next expiry and without this one, which is lost; one read the
/// other way round would come back twice. Every thread is stopped, so no signal stops being
/// pending meanwhile; an expiry whose signal is pending already is the kernel's overrun, not a
/// new signal, in the running program too.
fn settle_pending(parts: &mut Parts, threads: &mut [ThreadState]) -> Result<(), Failure> {
    let mut path = [0u8; 64];
    for _ in 0..4 {
        let mut changed = false;
        let shared = pending(c"/proc/self/status", b"ShdPnd:");
        changed |= shared != parts.state.shared_pending;
        parts.state.shared_pending = shared;
        for th in threads.iter_mut() {
            let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/task/", th.tid as u64, b"/status") else { continue };
            let now = pending(p, b"SigPnd:");
            changed |= now != th.sigpending;
            th.sigpending = now;
        }
        if !changed {
            return Ok(());
        }
        capture_timers(parts)?;
    }
    Ok(())
}

/// The POSIX timers: what `/proc/self/timers` says of each, and the time it has left.
fn capture_timers(parts: &mut Parts) -> Result<(), Failure> {
    use ckpt_image::timers::{TimerRecord, SIGEV_THREAD_ID};
    // The headers' room is free until the writer encodes them (`parts.maps` holds the layout).
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/timers", parts.meta).map_err(|e| Failure::new("reading /proc/self/timers", e))?;
    let mut w = ckpt_image::bytes::Writer::new(parts.timers);
    for t in ckpt_sigsafe::proctext::timers(&parts.meta[..n]) {
        if t.notify > 1 {
            continue; // SIGEV_THREAD is glibc's, done with a thread-directed signal underneath
        }
        let v = sys::timer_gettime(t.id).map_err(|e| Failure::new("reading a timer", e))?;
        TimerRecord {
            id: t.id,
            clock: t.clock,
            notify: t.notify | if t.to_thread { SIGEV_THREAD_ID } else { 0 },
            signo: t.signo,
            tid: if t.to_thread { t.target } else { 0 },
            value: t.value,
            interval_sec: v[0],
            interval_nsec: v[1],
            value_sec: v[2],
            value_nsec: v[3],
        }
        .write(&mut w);
    }
    parts.timers_len = w.finish().ok_or(Failure::plain("too many timers to record"))?;
    Ok(())
}

fn capture_rseq(th: &mut ThreadState, cfg: &Config) {
    if cfg.rseq_size == 0 {
        return;
    }
    let area = th.fs_base.wrapping_add(cfg.rseq_offset as u64);
    // glibc places each thread's `struct rseq` at thread pointer + __rseq_offset; its second
    // word is `cpu_id`, negative unless the kernel accepted the registration. A program that
    // moved its thread pointer could make that address anything, so it is read safely.
    let Some(cpu_id) = read_own_u32(area.wrapping_add(4)) else { return };
    if (cpu_id as i32) >= 0 {
        th.flags |= FLAG_RSEQ;
        th.rseq_addr = area;
        th.rseq_len = cfg.rseq_size.max(RSEQ_MIN_LEN);
        th.rseq_sig = RSEQ_SIG;
    }
}

/// The kernel's view of the address space, from `/proc/self/stat` and `brk(0)`.
fn capture_mm(parts: &mut Parts) -> Result<(), Failure> {
    let n = read_whole(c"/proc/self/stat", parts.cmdline).map_err(|e| Failure::new("reading /proc/self/stat", e))?;
    let stat = &parts.cmdline[..n];
    let f = |i| stat_field(stat, i).ok_or(Failure::plain("parsing /proc/self/stat"));
    let mm = &mut parts.state.mm;
    mm.start_code = f(26)?;
    mm.end_code = f(27)?;
    mm.start_stack = f(28)?;
    mm.start_data = f(45)?;
    mm.end_data = f(46)?;
    mm.start_brk = f(47)?;
    mm.arg_start = f(48)?;
    mm.arg_end = f(49)?;
    mm.env_start = f(50)?;
    mm.env_end = f(51)?;
    mm.brk = sys::current_brk();
    Ok(())
}

/// A u32 of this process's memory at `addr`, or `None` if it is not mapped readable.
fn read_own_u32(addr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    (sys::copy_own_memory(addr as usize, 4, &mut b) == 4).then(|| u32::from_ne_bytes(b))
}

fn read_path(link: &core::ffi::CStr, out: &mut Path) -> Result<(), rustix::io::Errno> {
    let n = readlink(link, &mut out.bytes[..ckpt_image::state::PATH_MAX - 1])?;
    out.bytes[n] = 0;
    out.len = n as u32;
    Ok(())
}
