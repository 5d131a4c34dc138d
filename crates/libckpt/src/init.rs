//! The constructor: runs before the program's `main()`, in ordinary context.
//!
//! It decides where images go (`$CKPT_IMAGE`, or `myckpt` in the directory the program started
//! in), reads the other settings (`CKPT_SIGNAL`, `CKPT_INTERVAL`, `CKPT_KEEP`,
//! `CKPT_INCREMENTAL`, `CKPT_SYNC`, `CKPT_COMPRESS`, `CKPT_KEY`, `CKPT_SELF_CONTAINED`, `CKPT_TIMES`;
//! `CKPT_PARENT`, which the library itself sets for what the program runs; and, through
//! `origin.rs`, `CKPT_ORIGIN`, which `ckpt run` and `ckpt job` set), learns glibc's rseq
//! layout, and installs the checkpoint signal handler.

use crate::{checkpoint, config};
use ckpt_sigsafe::say;
use core::ffi::{c_int, c_void, CStr};

/// The environment variable that overrides the image path.
pub const IMAGE_ENV: &CStr = c"CKPT_IMAGE";
/// Set to 1 to write images synchronously, inside the signal handler.
pub const SYNC_ENV: &CStr = c"CKPT_SYNC";
/// Set to 1 to have each checkpoint's steps timed on stderr.
pub const TIMES_ENV: &CStr = c"CKPT_TIMES";
/// Set by the library in the environment of what the process runs: a process that finds it
/// descends from one that checkpoints, and writes images of its own (`<image>-<PID>`).
pub const PARENT_ENV: &CStr = c"CKPT_PARENT";
/// A key file: images are authenticated with a key derived from its contents.
pub const KEY_ENV: &CStr = c"CKPT_KEY";
/// Set to `lz4` to compress memory in images.
pub const COMPRESS_ENV: &CStr = c"CKPT_COMPRESS";

/// The value of an environment variable, if set (constructor only).
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv in a constructor, before any thread can call setenv.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null getenv result is a NUL-terminated string in the environment.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes())
}
/// The image's name when no path is given.
pub const DEFAULT_IMAGE: &[u8] = b"myckpt";
/// The checkpoint signal unless `CKPT_SIGNAL` names another.
pub const DEFAULT_SIGNAL: c_int = libc::SIGUSR2;
/// `CKPT_SIGNAL`: the checkpoint signal, by number or name (`USR1`, `SIGUSR1`, `RTMIN+3`…).
pub const SIGNAL_ENV: &CStr = c"CKPT_SIGNAL";
/// `CKPT_INTERVAL`: take a checkpoint every so many seconds.
pub const INTERVAL_ENV: &CStr = c"CKPT_INTERVAL";
/// `CKPT_INCREMENTAL`: most images in a chain of incremental ones (0 or 1: always full).
pub const INCREMENTAL_ENV: &CStr = c"CKPT_INCREMENTAL";
/// A full image, then at most seven built on it.
const DEFAULT_CHAIN: u32 = 8;
/// `CKPT_KEEP`: how many older images to keep.
pub const KEEP_ENV: &CStr = c"CKPT_KEEP";

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = ckpt_init;

extern "C" fn ckpt_init() {
    // SAFETY: we are the constructor: single-threaded, before the handler exists.
    let cfg = unsafe { config::get_mut() };
    if !set_image_path(cfg) {
        say!("ckpt: image path is too long; checkpoints are disabled");
        return;
    }
    find_rseq(cfg);
    let me = rustix::process::getpid().as_raw_nonzero().get() as u64;
    note_lineage(me);
    prepare_modules();
    read_settings(cfg);
    read_key_setting(cfg);
    // Last, once every setting has been read: in a program that defines its own `setenv` and
    // `getenv` (bash does), a `setenv` before `main` makes the program's own table of variables,
    // where its `getenv` looks from then on, and which holds none of the settings.
    export_parent(me);
    cfg.raw_madvise = crate::golang::is_go();
    install_handler();
    install_stop_handler();
    crate::exec::unblock_after_exec();
    crate::deliverable::adopt_inherited_mask();
    if cfg.interval_ms > 0 {
        start_interval_timer(cfg.signal, cfg.interval_ms);
    }
}

/// Whose the process's memory and images are (this process, PID `me`), and whether it descends
/// from a process that checkpoints (constructor only).
fn note_lineage(me: u64) {
    config::set_owner(me as u32);
    config::set_memory_owner();
    // CKPT_PARENT set by another process (not by this one before an `exec` that kept its PID):
    // this one descends from it.
    if env(PARENT_ENV).is_some_and(|p| parse_u32(p).map(u64::from) != Some(me)) {
        config::mark_descendant();
    }
    // A child forked by the program (not run with exec) is a descendant too.
    // SAFETY: registers plain functions; nothing else is passed.
    unsafe { libc::pthread_atfork(Some(on_fork_prepare), None, Some(on_fork_child)) };
}

/// What the other modules make ready before the handler can run (constructor only).
fn prepare_modules() {
    crate::guard::prepare();
    crate::watches::prepare();
    crate::ipcids::prepare();
    crate::invisible::prepare();
    crate::sigwaits::prepare();
    crate::exec::prepare();
    crate::checkpoint::track::prepare();
    crate::dropped::prepare();
    crate::checkpoint::report::prepare();
    crate::origin::prepare(!config::is_descendant());
}

/// The settings from the environment, but the key (constructor only): whether images are
/// written in the handler, the checkpoint signal, the interval, how many images to keep, the
/// chain of incremental images, whether they are self-contained, compression.
fn read_settings(cfg: &mut config::Config) {
    cfg.sync = env(SYNC_ENV) == Some(b"1");
    cfg.times = env(TIMES_ENV) == Some(b"1");
    cfg.signal = match env(SIGNAL_ENV) {
        None => DEFAULT_SIGNAL,
        Some(name) => match parse_signal(name) {
            Some(sig) => sig,
            None => {
                say!("ckpt: CKPT_SIGNAL={} is not a signal this library can use; using SIGUSR2", ckpt_sigsafe::out::Lossy(name));
                DEFAULT_SIGNAL
            }
        },
    };
    // Periodic checkpoints are for the process that was started with them, through every
    // program it becomes by `exec` (`env`, a script's interpreter, a shim that runs the real
    // program): it keeps its PID, and CKPT_PARENT names it. Its children, which inherit the
    // environment, ignore the variable: a tree checkpoint of the root takes them along.
    cfg.interval_ms = match env(INTERVAL_ENV) {
        Some(v) if !config::is_descendant() && !v.is_empty() => parse_millis(v).unwrap_or_else(|| {
            say!("ckpt: CKPT_INTERVAL={} is not a number of seconds (such as 60 or 0.5); no periodic checkpoints", ckpt_sigsafe::out::Lossy(v));
            0
        }),
        _ => 0,
    };
    cfg.keep = env(KEEP_ENV).and_then(parse_u32).unwrap_or(0).min(ckpt_image::chain::MAX_KEEP);
    cfg.incremental = match env(INCREMENTAL_ENV) {
        None | Some(b"") => DEFAULT_CHAIN,
        Some(v) => match parse_u32(v) {
            Some(n) => n.min(ckpt_image::chain::MAX_BASES as u32 + 1),
            None => {
                say!("ckpt: CKPT_INCREMENTAL takes a number (images in a chain; 0: every image full); using {DEFAULT_CHAIN}");
                DEFAULT_CHAIN
            }
        },
    };
    cfg.self_contained = matches!(env(c"CKPT_SELF_CONTAINED"), Some(v) if !v.is_empty() && v != b"0");
    cfg.compress = match env(COMPRESS_ENV) {
        None | Some(b"" | b"none" | b"0") => false,
        Some(b"lz4") => true,
        Some(_) => {
            say!("ckpt: CKPT_COMPRESS takes lz4 or none; images will not be compressed");
            false
        }
    };
}

/// `CKPT_KEY`: the key file's path, read once now only to say at once if it cannot be used
/// (constructor only).
fn read_key_setting(cfg: &mut config::Config) {
    if let Some(path) = env(KEY_ENV) {
        let fits = !path.is_empty() && path.len() < cfg.key_path.len() && !path.contains(&0);
        if fits {
            cfg.key_path[..path.len()].copy_from_slice(path);
            cfg.key_path[path.len()] = 0;
            cfg.key_path_len = path.len();
        }
        // Read once now only to say at once if it cannot be used.
        static mut PROBE: [u8; ckpt_sigsafe::KEY_FILE_MAX + 1] = [0; ckpt_sigsafe::KEY_FILE_MAX + 1];
        // SAFETY: the constructor runs once, single-threaded; nothing else uses the buffer.
        let buf = unsafe { &mut *core::ptr::addr_of_mut!(PROBE) };
        let read = match cfg.key_file() {
            Some(k) if fits => ckpt_sigsafe::read_key(k, buf).map(|_| ()),
            _ => Err(ckpt_sigsafe::KeyError::Unreadable(rustix::io::Errno::NAMETOOLONG)),
        };
        if let Err(why) = read {
            say!("ckpt: CKPT_KEY={}: the key file {why}; no image will be written without it", ckpt_sigsafe::out::Lossy(path));
            cfg.key_unreadable = true;
        }
    }
}

/// `CKPT_PARENT=<me>` in the environment, for what the program runs (constructor only; after
/// every setting has been read, see [`ckpt_init`]).
fn export_parent(me: u64) {
    let mut pid = [0u8; 24];
    let mut w = ckpt_image::bytes::Writer::new(&mut pid[..]);
    w.decimal(me);
    w.u8(0);
    if let Some(n) = w.finish() {
        // SAFETY: setenv in a constructor, before any thread exists; both strings are
        // NUL-terminated.
        unsafe { libc::setenv(PARENT_ENV.as_ptr(), pid[..n].as_ptr().cast(), 1) };
    }
}

extern "C" fn on_fork_prepare() {
    crate::deliverable::before_fork();
}

extern "C" fn on_fork_child() {
    crate::deliverable::after_fork_child();
    config::set_memory_owner();
    config::mark_descendant();
    checkpoint::report::after_fork();
    crate::turn::clear();
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    core::str::from_utf8(s).ok()?.trim().parse().ok()
}

/// Seconds, whole or with a fraction (`60`, `0.5`), as milliseconds: at least 1 ms, at most
/// about 49 days.
fn parse_millis(s: &[u8]) -> Option<u32> {
    let secs: f64 = core::str::from_utf8(s).ok()?.trim().parse().ok()?;
    let ms = secs * 1000.0;
    (secs.is_finite() && secs >= 0.0 && ms < u32::MAX as f64).then(|| if secs > 0.0 { (ms as u32).max(1) } else { 0 })
}

/// A signal by number or name (see `ckpt_sigsafe::signals`).
pub fn parse_signal(s: &[u8]) -> Option<c_int> {
    ckpt_sigsafe::signals::parse_signal(core::str::from_utf8(s).ok()?, libc::SIGRTMIN())
}

/// A POSIX timer that sends the checkpoint signal every `ms` milliseconds. It is one of the
/// process's timers, so images hold it and a restored process has it again.
fn start_interval_timer(signal: c_int, ms: u32) {
    // The kernel's timer, made with the system call itself: glibc's `timer_create` lived in
    // librt before 2.34, and the program never sees this timer's ID anyway.
    let sigev_signal = linux_raw_sys::general::SIGEV_SIGNAL;
    // Its signals carry ckpt's request value: a program with a handler of its own for the
    // checkpoint signal gets the others, not these.
    let request = ckpt_sigsafe::signals::CHECKPOINT_REQUEST;
    let id = match ckpt_sigsafe::sys::timer_create_with(libc::CLOCK_MONOTONIC, sigev_signal, signal as u32, request, 0, 0) {
        Ok(id) => id,
        Err(_) => {
            say!("ckpt: cannot create the checkpoint timer; checkpoints come only on the signal");
            return;
        }
    };
    let (secs, nanos) = ((ms / 1000) as i64, (ms % 1000) as i64 * 1_000_000);
    let _ = ckpt_sigsafe::sys::timer_settime(id, &[secs, nanos, secs, nanos]);
}

/// Fixes the absolute image path now, so that a later `chdir` in the program does not move it.
fn set_image_path(cfg: &mut config::Config) -> bool {
    let given: &[u8] = env(IMAGE_ENV).unwrap_or(DEFAULT_IMAGE);
    let given = if given.is_empty() { DEFAULT_IMAGE } else { given };
    let buf = &mut cfg.image;
    let mut len = 0;
    if given[0] != b'/' {
        // SAFETY: getcwd writes at most buf.len() bytes, NUL included.
        let cwd = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
        if cwd.is_null() {
            return false;
        }
        len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if len > 1 {
            buf[len] = b'/';
            len += 1;
        }
    }
    if len + given.len() >= buf.len() - 32 {
        return false;
    }
    buf[len..len + given.len()].copy_from_slice(given);
    len += given.len();
    buf[len] = 0;
    cfg.image_len = len;
    true
}

/// glibc (2.35+) registers an rseq area for each thread at `thread pointer + __rseq_offset`.
fn find_rseq(cfg: &mut config::Config) {
    let (off, size) = (crate::guard::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset"), crate::guard::dlsym(libc::RTLD_DEFAULT, c"__rseq_size"));
    if off.is_null() || size.is_null() {
        return;
    }
    // SAFETY: glibc defines these as `const ptrdiff_t __rseq_offset` and `const unsigned int __rseq_size`.
    unsafe {
        cfg.rseq_offset = *(off as *const isize);
        cfg.rseq_size = *(size as *const u32);
    }
}

fn install_handler() {
    // libckpt's handler stays the kernel's whatever the program installs (`actions`): it blocks
    // every other signal while the checkpoint is written, so that no handler of the program runs
    // in the middle of it, and system calls it interrupts resume as if nothing happened
    // (SA_RESTART, unless the program's own handler for the signal goes without).
    if !crate::guard::set_our_handler(on_signal as *const () as usize) {
        say!("ckpt: cannot install the checkpoint signal handler; checkpoints are disabled");
    }
}

extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    // A root of a tree checkpoint asks with sigqueue and a tagged value, and so does `ckpt
    // checkpoint` (for a last checkpoint too), `ckpt job`, and the periodic timer; `ckpt
    // checkpoint` marks a signal it delivered with ptrace; a user asks with kill.
    let (code, sender, value, errno) = if info.is_null() {
        (0, 0, 0, 0)
    } else {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; for si_code
        // SI_QUEUE and SI_TIMER its value field is the one set by the sender (for others, such
        // as kill's, the kernel zeroes the rest of the siginfo).
        unsafe { ((*info).si_code, (*info).si_pid() as u32, (*info).si_value().sival_ptr as u64, (*info).si_errno) }
    };
    let request = checkpoint::tree::request(code, sender, value);
    let mut asked = request.is_some() || ckpt_sigsafe::signals::is_checkpoint_request(code, value);
    if errno == ckpt_sigsafe::signals::UNBLOCKED_FOR_CHECKPOINT {
        block_again_after(sig, uc);
        if !asked {
            // `ckpt checkpoint` delivered the request with ptrace, and the kernel gave this
            // thread a signal of the program's that was pending before it: the checkpoint is
            // taken, and the program's signal waits again, blocked, as it was.
            // SAFETY: info is the kernel's.
            unsafe { crate::actions::queue_again(sig, info) };
            asked = true;
        }
    }
    // Any other signal is the program's if it has a handler of its own for it; if not, it asks
    // for a checkpoint too (a user's `kill -12`).
    // SAFETY: info and uc are the kernel's, passed on as they came.
    if !asked && unsafe { crate::actions::pass_on_checkpoint_signal(sig, info, uc) } {
        return;
    }
    crate::invisible::bump();
    let queued = code == ckpt_sigsafe::signals::SI_QUEUE && request.is_none();
    // A request `ckpt checkpoint` delivered (with ptrace, past the handler's mask) into this
    // very thread while it runs a checkpoint on libckpt's stack: its frame is on that stack or
    // in the checkpoint's scratch memory, neither of which an image holds as it is, so no image
    // of it could be restarted. It is refused as one that finds a checkpoint under way.
    let nested = errno == ckpt_sigsafe::signals::UNBLOCKED_FOR_CHECKPOINT && checkpoint::ownstack::busy() && crate::turn::held_here();
    let last = ckpt_sigsafe::signals::last_request(value).filter(|_| queued && !nested).map(|flags| checkpoint::Last {
        stop_if_unsaved: flags & ckpt_sigsafe::signals::LAST_STOP_IF_UNSAVED != 0,
        hold: flags & ckpt_sigsafe::signals::LAST_HOLD != 0,
        kept: false,
    });
    // `ckpt checkpoint --to PATH`: the number of the path it left in the report page. Only a
    // request queued by ckpt carries one (a tree root's value is its own).
    let redirect = if queued && ckpt_sigsafe::signals::is_checkpoint_request(code, value) { ckpt_sigsafe::signals::redirect_of(value) } else { 0 };
    // One checkpoint at a time: one still under way in another thread ends first (`turn`).
    let turn = if nested { None } else { crate::turn::wait() };
    if turn.is_some() {
        checkpoint::ownstack::free();
    }
    // The checkpoint runs on libckpt's own stack, not below the frame (a coroutine's small
    // stack, Go's alternate signal stack).
    checkpoint::ownstack::run(&mut || checkpoint::on_checkpoint_signal(uc as usize, request, last, redirect, turn.as_ref()));
    crate::turn::end(turn, sig, crate::invisible::bump);
}

/// `ckpt checkpoint` unblocked the checkpoint signal in this thread, from outside, to deliver
/// it (the thread, like every other, blocked it past libc): the thread blocks it again once
/// the handler returns, in the context the image holds too. Signal-safe: one bit written.
fn block_again_after(sig: c_int, uc: *mut c_void) {
    if uc.is_null() || !(1..=64).contains(&sig) {
        return;
    }
    // SAFETY: the kernel built a whole ucontext at `uc` for this handler; its saved mask
    // begins with the kernel's 64-bit signal set, which sigreturn restores.
    unsafe {
        let mask = core::ptr::addr_of_mut!((*(uc as *mut libc::ucontext_t)).uc_sigmask) as *mut u64;
        *mask |= 1u64 << (sig - 1);
    }
}

/// The handler of the internal signal that stops the other threads during a checkpoint (it
/// blocks every other signal while the thread is stopped).
fn install_stop_handler() {
    if !crate::guard::set_stop_handler(on_stop_signal as *const () as usize) {
        say!("ckpt: cannot install the thread-stop signal handler; multi-threaded checkpoints will fail");
    }
}

extern "C" fn on_stop_signal(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    // libckpt's own stop requests are queued by this process with ckpt's value; any other
    // signal of this number is the program's.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler (see `on_signal`).
    let ours = !info.is_null()
        && unsafe {
            (*info).si_code == ckpt_sigsafe::signals::SI_QUEUE
                && (*info).si_value().sival_ptr as u64 == ckpt_sigsafe::signals::STOP_REQUEST
                && (*info).si_pid() == rustix::process::getpid().as_raw_nonzero().get()
        };
    if ours {
        // Counted here, in the thread the signal interrupts, before the call it cut short can
        // see its EINTR: see `invisible`.
        crate::invisible::bump();
        checkpoint::threads::on_stop_signal(uc as usize);
    } else {
        // SAFETY: info and uc are the kernel's, passed on as they came.
        unsafe { crate::actions::pass_on_stop_signal(sig, info, uc) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(parse_u32(b" 60 "), Some(60));
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"ten"), None);
        assert_eq!(parse_millis(b"60"), Some(60_000));
        assert_eq!(parse_millis(b" 0.5 "), Some(500));
        assert_eq!(parse_millis(b"0.0001"), Some(1));
        assert_eq!(parse_millis(b"0"), Some(0));
        assert_eq!(parse_millis(b"-1"), None);
        assert_eq!(parse_millis(b"1e12"), None);
        assert_eq!(parse_millis(b"soon"), None);
        assert_eq!(parse_signal(b"USR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal(b"SIGRTMIN+2"), Some(libc::SIGRTMIN() + 2));
        assert_eq!(parse_signal(b"9"), None, "SIGKILL cannot be caught");
        assert_eq!(parse_signal(b"\xff"), None);
    }
}
