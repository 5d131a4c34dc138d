//! What this process was started as (`NT_CKPT_ORIGIN`, layout in `ckpt_image::origin`): fixed
//! by the constructor, then only read (by the image writer, and by a last checkpoint that asks
//! whether an image is of this run).
//!
//! The process `ckpt run` or `ckpt job` started (through every `exec` it makes, as long as it
//! keeps its PID) takes the description those commands made of what the user asked for, from
//! `CKPT_ORIGIN`. Any other program starting with the library describes itself: its program, its
//! directory and its arguments, as `/proc/self` shows them when it starts, under a run identity
//! of its own. A child the program forks keeps its parent's (its images are told apart by their
//! PID). The description lives in this library's memory, so a restored process has it back, run
//! identity and all.

use ckpt_image::origin::{self, Origin, MAX_LEN};
use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The environment variable `ckpt` passes the description in, hex-encoded.
pub const ORIGIN_ENV: &CStr = c"CKPT_ORIGIN";

struct Note(UnsafeCell<[u8; MAX_LEN]>);
// SAFETY: written only by the constructor, before any other thread or the signal handler can
// run; read-only afterwards.
unsafe impl Sync for Note {}

static NOTE: Note = Note(UnsafeCell::new([0; MAX_LEN]));
static LEN: AtomicUsize = AtomicUsize::new(0);
static RUN_ID: AtomicU64 = AtomicU64::new(0);

/// The encoded note (empty if there is none).
pub fn note() -> &'static [u8] {
    // SAFETY: see `Note`: nothing writes it after the constructor.
    let buf = unsafe { &*NOTE.0.get() };
    &buf[..LEN.load(Ordering::Acquire)]
}

/// This run's identity (0 if the process has no description).
pub fn run_id() -> u64 {
    RUN_ID.load(Ordering::Acquire)
}

/// Fixes the description. `owner`: this is the process `ckpt` started (or became by `exec`),
/// which takes `CKPT_ORIGIN` if it is there and sound.
pub fn prepare(owner: bool) {
    // SAFETY: the constructor is single-threaded and runs before the handler exists.
    let buf = unsafe { &mut *NOTE.0.get() };
    if owner {
        if let Some(n) = from_env(buf) {
            LEN.store(n, Ordering::Release);
            return;
        }
    }
    if let Some(n) = describe_self(buf) {
        LEN.store(n, Ordering::Release);
    }
}

fn from_env(buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    // SAFETY: getenv in the constructor, before any thread can call setenv.
    let v = unsafe { libc::getenv(ORIGIN_ENV.as_ptr()) };
    if v.is_null() {
        return None;
    }
    // SAFETY: a non-null getenv result is a NUL-terminated string in the environment.
    let hex = unsafe { CStr::from_ptr(v) }.to_bytes();
    let n = origin::from_hex(hex, buf)?.len();
    let o = Origin::parse(&buf[..n]).ok().filter(|o| o.run_id != 0)?;
    RUN_ID.store(o.run_id, Ordering::Release);
    Some(n)
}

/// A run identity: random, never 0.
fn new_run_id() -> u64 {
    let mut v = 0u64;
    // SAFETY: getrandom fills the 8 bytes of `v`.
    let got = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    if got != 8 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u64;
        let mut seed = [0u8; 24];
        for (i, x) in [t.tv_sec as u64, t.tv_nsec as u64, pid].into_iter().enumerate() {
            seed[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
        }
        v = ckpt_image::hash(&seed);
    }
    v.max(1)
}

/// The process's own program, directory and arguments, under a new run identity.
fn describe_self(out: &mut [u8; MAX_LEN]) -> Option<usize> {
    let mut program = [0u8; origin::MAX_PATH];
    // SAFETY: readlink writes at most the buffer's length and does not terminate it.
    let n = unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), program.as_mut_ptr().cast(), program.len()) };
    let program = &program[..usize::try_from(n).ok().filter(|&n| n < origin::MAX_PATH)?];
    let mut cwd = [0u8; origin::MAX_PATH];
    // SAFETY: getcwd writes at most the buffer's length, NUL included.
    if unsafe { libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()) }.is_null() {
        return None;
    }
    let cwd_len = cwd.iter().position(|&c| c == 0)?;
    // The arguments: kept whole if they fit, hashed in full either way.
    let mut args = [0u8; origin::MAX_ARGS];
    let mut kept = 0usize;
    let mut total = 0usize;
    let mut argc = 0u32;
    let mut hasher = ckpt_image::Hasher::new();
    let fd = rustix::fs::open(c"/proc/self/cmdline", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()).ok()?;
    let mut chunk = [0u8; 4096];
    loop {
        let n = rustix::io::read(&fd, &mut chunk).ok()?;
        if n == 0 {
            break;
        }
        let part = &chunk[..n];
        hasher.update(part);
        argc += part.iter().filter(|&&c| c == 0).count() as u32;
        let room = args.len() - kept.min(args.len());
        let take = room.min(n);
        args[kept..kept + take].copy_from_slice(&part[..take]);
        kept += take;
        total += n;
    }
    let mut o = Origin::new(new_run_id(), program, &cwd[..cwd_len], &args[..kept], argc);
    if total > origin::MAX_ARGS {
        o.flags = origin::ARGS_HASHED;
        o.args = &[];
        o.args_hash = hasher.digest();
    }
    let n = o.write(out)?;
    // Only a note that reads back goes into images.
    Origin::parse(&out[..n]).ok()?;
    RUN_ID.store(o.run_id, Ordering::Release);
    Some(n)
}
