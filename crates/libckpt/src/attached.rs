//! The entry `ckpt` calls in a process that does not run libckpt ([`ckpt_attached_checkpoint`],
//! named by `ckpt_sigsafe::attach::ENTRY`): `ckpt` stopped the process's leader thread with
//! ptrace, mapped a copy of this library there, wrote an `AttachArgs` block, and made the
//! leader call this with the block's address. It checks the block, blocks every signal in this
//! thread (`ckpt` puts the thread's own mask back), takes the settings from the block instead
//! of the environment (libckpt's constructor never ran here), and has the checkpoint taken as
//! libckpt's signal handler takes it (`checkpoint::attached_checkpoint`): the image written by
//! a forked writer from a copy-on-write snapshot, or here with `FLAG_SYNC`/`FLAG_LAST`.
//!
//! # Signal-safety fence
//! Runs on a thread `ckpt` diverted, in a process whose libc this copy of libckpt cannot call
//! (its imports lead to traps, `memcpy` and its kin aside): raw system calls and the block
//! only; no allocation, no locks, no libc.

use ckpt_sigsafe::attach::{AttachArgs, MAGIC, VERSION};
use core::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// The block of the call running in the program's process, and that process's PID, for
/// [`panicked`]. (The writer and the capturing child, forked meanwhile, inherit both but are
/// other processes.)
static BLOCK: AtomicPtr<AttachArgs> = AtomicPtr::new(core::ptr::null_mut());
static CALLED_IN: AtomicI32 = AtomicI32::new(0);

/// Notes that an entry (this one, or the tests' probe) runs on `args`, in this process.
pub fn enter(args: *mut AttachArgs) {
    CALLED_IN.store(rustix::process::getpid().as_raw_nonzero().get(), Ordering::Relaxed);
    BLOCK.store(args, Ordering::Relaxed);
}

/// The panic handler's way out in the program's process: the handler's usual one (`SIGABRT`
/// to the whole process) would end a program that never asked for ckpt's code. Instead the
/// message goes into the block and the thread stops on an undefined instruction, which `ckpt`
/// sees as the crash of its code: it puts the leader back and lets the program go on. Returns
/// only elsewhere (the writer, the capturing child, a preloaded libckpt).
pub fn panicked(info: &core::panic::PanicInfo) {
    let block = BLOCK.load(Ordering::Relaxed);
    if block.is_null() || CALLED_IN.load(Ordering::Relaxed) != rustix::process::getpid().as_raw_nonzero().get() {
        return;
    }
    let mut line = ckpt_sigsafe::out::Line::new();
    let _ = core::fmt::Write::write_fmt(&mut line, format_args!("internal error: {}", info.message()));
    // SAFETY: `block` is the block `enter` was given, `ckpt`'s for the call, which is still
    // running on this thread (the program's process runs our code nowhere else).
    fail(unsafe { &mut *block }, line.as_bytes());
    // SAFETY: `ud2` only raises SIGILL, which stops this thread for `ckpt`.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// The entry. Returns the block's `status`: 0 when the checkpoint was taken (its writer
/// started, or the image written), negative otherwise, with `message` saying why; `-EINVAL`,
/// the block untouched, when `args` is not a block of a version this library knows.
#[unsafe(no_mangle)]
pub extern "C" fn ckpt_attached_checkpoint(args: *mut AttachArgs) -> i64 {
    const EINVAL: i64 = -(linux_raw_sys::errno::EINVAL as i64);
    if args.is_null() || (args as usize) % core::mem::align_of::<AttachArgs>() != 0 {
        return EINVAL;
    }
    // SAFETY: `ckpt` wrote the block at this aligned address and lends it for the call; its
    // first two fields are read before anything else is trusted.
    let (magic, version) = unsafe { ((&raw const (*args).magic).read(), (&raw const (*args).version).read()) };
    if magic != MAGIC || version < VERSION {
        return EINVAL;
    }
    enter(args);
    // SAFETY: a block of this version (or a later one, which only adds fields at the end), the
    // leader's alone for the call.
    let args = unsafe { &mut *args };
    // No handler of the program's may run on this thread in the middle of the checkpoint.
    let _ = ckpt_sigsafe::sys::rt_sigprocmask(linux_raw_sys::general::SIG_SETMASK as usize, !0);
    args.writer_pid = 0;
    args.report_fd = -1;
    let until_nul = |b: &[u8]| b.iter().position(|&c| c == 0);
    let (Some(image), Some(key)) = (until_nul(&args.image), until_nul(&args.key_path)) else {
        return fail(args, b"the image or key path ckpt passed is not NUL-terminated");
    };
    let (image, key) = (&args.image[..image], &args.key_path[..key]);
    if image.first() != Some(&b'/') {
        return fail(args, b"the image path ckpt passed is not absolute");
    }
    // SAFETY: nothing else of this copy of libckpt runs in the process: the entry runs once,
    // on this thread, before the checkpoint starts.
    if !unsafe { crate::config::set_attached(image, key, args.keep, args.flags) } {
        return fail(args, b"the image or key path is too long");
    }
    let mut why = ckpt_sigsafe::out::Line::new();
    match crate::checkpoint::attached_checkpoint(args, &mut why) {
        Some((writer, report_fd)) => {
            args.writer_pid = writer;
            args.report_fd = report_fd;
            args.message[0] = 0;
            args.status = 0;
            0
        }
        None => {
            args.report_fd = crate::checkpoint::report::own_fd();
            fail(args, why.as_bytes())
        }
    }
}

/// Fails the call: `why` into the block's message (cut to fit), status -1.
fn fail(args: &mut AttachArgs, why: &[u8]) -> i64 {
    let n = why.len().min(args.message.len() - 1);
    args.message[..n].copy_from_slice(&why[..n]);
    args.message[n] = 0;
    args.status = -1;
    -1
}
