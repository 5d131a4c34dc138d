//! `ckpt_attach_probe`: a stand-in for the attached checkpoint's entry, for the tests of
//! `ckpt`'s attach machinery (loading this library into a process that never loaded it,
//! calling an entry on its stopped leader thread, taking everything away again). It only
//! checks the block it is given and answers in it: a value, and a line naming the process it
//! ran in. `ckpt` calls it instead of the real entry when its environment has
//! `CKPT_ATTACH_PROBE=1`.
//!
//! Signal-safety fence: it runs where the library's constructor never ran and every libc
//! import is a trap (`ud2`), so it calls no libc and relies on no state of the library: raw
//! system calls only, and formatting into the block (which may call `memcpy`/`memset`, the
//! routines `ckpt` supplies).

use ckpt_sigsafe::attach::{AttachArgs, MAGIC, VERSION};
use core::fmt::Write;

/// What the probe puts in `status` when the block was right ("probe" in ASCII).
pub const PROBE_STATUS: i64 = 0x70_72_6f_62_65;

/// Fills `args`'s results; returns this process's PID.
///
/// # Safety
/// `args` points to a writable [`AttachArgs`] that nothing else uses during the call.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ckpt_attach_probe(args: *mut AttachArgs) -> i64 {
    // SAFETY: by the function's contract, `args` is ckpt's block, ours for the call.
    let a = unsafe { &mut *args };
    crate::attached::enter(args);
    // The tests' way to see a panic of ckpt's code in a program: an image named so.
    let image = a.image.split(|&c| c == 0).next().unwrap_or(&[]);
    if image.ends_with(b"/probe-panics") {
        panic!("the probe was asked to panic");
    }
    // The tests' way to have something happen while ckpt's code runs: an image named
    // `probe-waits` makes it create `probe-running` beside it, then wait for `probe-go` there.
    if let Some(dir) = image.strip_suffix(b"probe-waits") {
        wait_for_go(dir);
    }
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mut line = ckpt_sigsafe::out::Line::new();
    if a.magic != MAGIC || a.version != VERSION {
        a.status = -1;
        let _ = write!(line, "probe: not a block of version {VERSION} (magic {:#x}, version {})", a.magic, a.version);
    } else {
        a.status = PROBE_STATUS;
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        let rip = a.regs[ckpt_image::frame::ureg::RIP];
        let (mxcsr, fcw, flags) = controls();
        let _ = write!(line, "probe ran in process {pid} on thread {tid}, mask {:#x}, {} excluded range(s), stopped at {rip:#x}, mxcsr {mxcsr:#x} fcw {fcw:#x} eflags {flags:#x}", a.sigmask, a.nexcluded);
    }
    let text = line.as_bytes();
    let n = text.len().min(a.message.len() - 1);
    a.message[..n].copy_from_slice(&text[..n]);
    a.message[n] = 0;
    a.writer_pid = 0;
    // A block a thread of the program overwrote, as the tests make it: `keep` (`--keep N`)
    // names one of the program's own descriptors as if it were the report page.
    a.report_fd = if a.keep > 0 { a.keep as i32 } else { -1 };
    pid as i64
}

/// The MXCSR, x87 control word and flags this code runs with (ckpt sets them for the call,
/// not the program).
fn controls() -> (u32, u16, u64) {
    let (mut mxcsr, mut fcw, flags): (u32, u16, u64);
    (mxcsr, fcw) = (0, 0);
    // SAFETY: stmxcsr and fnstcw store 4 and 2 bytes into the locals whose addresses they are
    // given; pushfq/pop use the stack for 8 bytes and leave it as it was.
    unsafe {
        core::arch::asm!("stmxcsr [{m}]", "fnstcw [{c}]", "pushfq", "pop {f}", m = in(reg) &mut mxcsr, c = in(reg) &mut fcw, f = out(reg) flags);
    }
    (mxcsr, fcw, flags)
}

/// Creates `probe-running` in `dir` (which ends with `/`), then waits until `probe-go` is there.
fn wait_for_go(dir: &[u8]) {
    use rustix::fs::{Access, Mode, OFlags};
    // `dir` followed by `name` and a NUL, in `buf`.
    fn beside<'b>(buf: &'b mut [u8], dir: &[u8], name: &[u8]) -> Option<&'b core::ffi::CStr> {
        let (d, n) = (dir.len(), name.len());
        buf.get_mut(..d)?.copy_from_slice(dir);
        buf.get_mut(d..d + n)?.copy_from_slice(name);
        *buf.get_mut(d + n)? = 0;
        core::ffi::CStr::from_bytes_until_nul(&buf[..d + n + 1]).ok()
    }
    let mut buf = [0u8; ckpt_sigsafe::attach::PATH_MAX + 16];
    if let Some(running) = beside(&mut buf, dir, b"probe-running") {
        let _ = rustix::fs::open(running, OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC, Mode::RUSR | Mode::WUSR);
    }
    let Some(go) = beside(&mut buf, dir, b"probe-go") else { return };
    // Yields rather than sleeps: an interrupted sleep would leave its restart in the thread
    // (the kernel keeps one per thread), in place of the program's own sleep's.
    while rustix::fs::access(go, Access::EXISTS).is_err() {
        rustix::thread::sched_yield();
    }
}
