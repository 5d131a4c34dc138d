//! Stopping every other thread at one moment, and capturing each one's own state.
//!
//! The thread that took the checkpoint signal coordinates. It sends each other thread the
//! internal stop signal ([`STOP_SIGNAL`], queued with `rt_tgsigqueueinfo` and ckpt's value, so
//! that a program with a handler of its own for that signal gets only its own: see `actions`);
//! that thread's handler records its
//! state (its signal frame, TLS base, rseq area, robust list, TID address, name) in a slot of
//! the scratch area, counts itself in, and waits on a futex until the coordinator lets it go.
//! The coordinator lists `/proc/self/task` again until no thread is new (threads being created
//! while it works), waits for every signalled thread, boundedly, then captures the process and
//! forks the writer: the writer's copy of memory holds every thread's frame. Then it lets them
//! all go. A thread that blocks the stop signal (glibc's timer helper, a thread that blocked
//! every signal with a system call of its own) is not sent it: `seize` stops it with ptrace and
//! writes its frame on its stack, and the coordinator records it from there, like the others.
//! In a process checkpointed by attaching to it (`attached`), which has no handler of ours for
//! the signal, every other thread goes that way ([`How::Seize`]), its frame into the frames
//! region.
//! A thread that does not stop in time otherwise makes the checkpoint fail with one line naming
//! it, and the others go on.
//!
//! # Signal-safety fence
//! Like the rest of `checkpoint`: raw system calls, atomics and futexes, no allocation, no locks.

use super::capture::thread_state;
use super::failure::Failure;
use super::seize::{NotCaptured, Seized, Seizer};
use super::tracee::Geometry;
use crate::stop::{MAX_THREADS, STOP_SIGNAL};
use ckpt_image::ThreadState;
use ckpt_sigsafe::sys;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use rustix::thread::futex;
use rustix::time::Timespec;

/// How long the coordinator waits for the other threads to stop.
const STOP_TIMEOUT_NS: i64 = 2_000_000_000;
/// How long a stopped thread waits to be let go before it goes on by itself.
const HOLD_TIMEOUT_S: i64 = 600;
/// How long the coordinator waits for the threads it let go to leave the stop handler.
const LEAVE_TIMEOUT_NS: u64 = 2_000_000_000;

/// A checkpoint is collecting threads (a stop signal at any other time is ignored).
static COLLECTING: AtomicBool = AtomicBool::new(false);
/// Where the threads put their state: static, so that a thread that comes late (after the
/// coordinator gave up on it) still writes into memory that exists.
struct Slots(UnsafeCell<[ThreadState; MAX_THREADS]>);
// SAFETY: slot `i` is written only by the thread that took index `i` from NEXT during one
// checkpoint, and read by the coordinator only after that thread counted itself in ARRIVED.
unsafe impl Sync for Slots {}
static SLOTS: Slots = Slots(UnsafeCell::new([ThreadState {
    tid: 0, flags: 0, sigframe: 0, fs_base: 0, gs_base: 0, rseq_addr: 0, rseq_len: 0, rseq_sig: 0, tid_address: 0,
    robust_list: 0, robust_len: 0, comm: [0; 16], sigpending: 0,
}; MAX_THREADS]));
/// The next free slot.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Threads that have recorded themselves (the coordinator's futex).
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// Bumped to let the stopped threads go (their futex).
static ROUND: AtomicU32 = AtomicU32::new(0);
/// Threads that have left the stop handler since the last checkpoint began (the coordinator's
/// futex as it ends).
static LEFT: AtomicU32 = AtomicU32::new(0);

/// The handler of [`STOP_SIGNAL`], in a thread that is not the coordinator.
pub fn on_stop_signal(uc: usize) {
    let round = ROUND.load(SeqCst);
    if !COLLECTING.load(SeqCst) {
        return;
    }
    let i = NEXT.fetch_add(1, SeqCst);
    if i < MAX_THREADS {
        let t = thread_state(uc, crate::config::get());
        // SAFETY: slot `i` is this thread's alone in this checkpoint (see `Slots`).
        unsafe { (SLOTS.0.get() as *mut ThreadState).add(i).write(t) };
    }
    ARRIVED.fetch_add(1, SeqCst);
    let _ = futex::wake(&ARRIVED, futex::Flags::PRIVATE, 1);
    let limit = Timespec { tv_sec: HOLD_TIMEOUT_S, tv_nsec: 0 };
    while ROUND.load(SeqCst) == round {
        if futex::wait(&ROUND, futex::Flags::PRIVATE, round, Some(&limit)) == Err(rustix::io::Errno::TIMEDOUT) {
            break;
        }
    }
    LEFT.fetch_add(1, SeqCst);
    let _ = futex::wake(&LEFT, futex::Flags::PRIVATE, 1);
}

/// The other threads, stopped; dropping it lets them go.
pub struct Stopped {
    /// How many slots hold a thread.
    pub count: usize,
    /// The capturing children holding the threads that block the stop signal.
    seizer: Seizer,
}

impl Stopped {
    /// For a process that ends at once (after its last checkpoint): every other thread stays
    /// stopped until it ends, so that none runs past its image. The threads the capturing
    /// children hold stay held too (let go, glibc's timer helper would take an expiry queued
    /// meanwhile and start the program's function, which printed a line the restart printed
    /// again); those children end with the program (`seize`).
    pub fn hold_until_the_end(self) {
        core::mem::forget(self);
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        COLLECTING.store(false, SeqCst);
        ROUND.fetch_add(1, SeqCst);
        let _ = futex::wake(&ROUND, futex::Flags::PRIVATE, i32::MAX as u32);
        self.seizer.release();
        wait_left();
    }
}

/// Waits (boundedly) until every thread that came into the stop handler has left it, so that
/// the checkpoint ends, and the next may begin (see `crate::turn`), only once the threads run
/// the program's code again: the next would otherwise find one still in the handler, blocking
/// the stop signal, and have to stop it with ptrace instead; and a checkpoint signal the
/// kernel meant for a thread in a wait that cuts it short (`epoll_wait`) could be taken by one
/// on its way out of the handler (its mask put back) before the waiting thread wakes, which
/// then sees its call end in `EINTR` with no handler of ckpt's run yet (`invisible` counts a
/// checkpoint under way as one).
fn wait_left() {
    let start = super::procfs::monotonic_ns();
    loop {
        let left = LEFT.load(SeqCst);
        if left >= ARRIVED.load(SeqCst) {
            return;
        }
        let waited = super::procfs::monotonic_ns() - start;
        if waited >= LEAVE_TIMEOUT_NS {
            return;
        }
        let slice = Timespec { tv_sec: 0, tv_nsec: (LEAVE_TIMEOUT_NS - waited).min(100_000_000) as i64 };
        let _ = futex::wait(&LEFT, futex::Flags::PRIVATE, left, Some(&slice));
    }
}

/// The state of every thread of the last [`stop_others`]: the coordinator first.
pub fn slots(stopped: &Stopped) -> &[ThreadState] {
    // SAFETY: every slot below `count` was written by a thread that has counted itself in (or
    // by the coordinator: slot 0, and the threads seized with ptrace), and none is written
    // again until the next checkpoint, which cannot start while `stopped` is borrowed.
    unsafe { &(&*SLOTS.0.get())[..stopped.count] }
}

/// The same, to be completed by the coordinator (their pending signals read again).
pub fn slots_mut(stopped: &mut Stopped) -> &mut [ThreadState] {
    // SAFETY: as in `slots`: every thread below `count` has written its slot and waits to be
    // let go, writing nothing more; `stopped` is borrowed mutably, so no other reference to
    // the slots exists.
    unsafe { &mut (&mut *SLOTS.0.get())[..stopped.count] }
}

/// Room the stopping needs in the scratch area: the TIDs signalled, the threads seized with
/// ptrace, and the capturing child's buffers.
pub struct Room<'a> {
    pub tids: &'a mut [u32],
    pub seized: &'a mut [Seized],
    pub seize_buf: &'a mut [u8],
}

/// How the other threads are stopped.
pub enum How {
    /// Those that take the stop signal with it (their frames on their stacks, made by the
    /// kernel), those that block it with ptrace (`seize`): a process that runs libckpt.
    Signal,
    /// Every one with ptrace, none signalled, its frame put into its slot of the frames region
    /// (a process checkpointed by attaching to it, where no handler of libckpt's is installed).
    Seize { geo: Geometry, frames: super::tracee::Frames },
}

/// Stops every thread but this one (whose state is `own`), as `how` says.
pub fn stop_others(own: ThreadState, room: Room, how: How) -> Result<Stopped, Failure> {
    let me = own.tid;
    let (geo, seizer, seize_all) = match how {
        How::Signal => (own_geometry(own.sigframe), Seizer::new(), false),
        How::Seize { geo, frames } => (geo, Seizer::into_region(frames), true),
    };
    // SAFETY: no thread writes slot 0 (NEXT hands out 1 and up), and no other checkpoint runs.
    unsafe { (SLOTS.0.get() as *mut ThreadState).write(own) };
    NEXT.store(1, SeqCst);
    ARRIVED.store(0, SeqCst);
    LEFT.store(0, SeqCst);
    COLLECTING.store(true, SeqCst);
    // From here on, however this ends, the threads are let go when `stopped` is dropped.
    let mut stopped = Stopped { count: 1, seizer };
    let Room { tids, seized, seize_buf } = room;
    let mut signalled = 0usize;
    // List the threads until a pass finds none new: a thread not yet stopped may be starting
    // another. Those that block the stop signal are stopped before the next pass.
    loop {
        let new = signal_new(me, tids, &mut signalled, &mut stopped.seizer, seized, seize_all)?;
        stopped.seizer.run_batch(seized, seize_buf, &geo).map_err(|n| not_captured(n, seize_all))?;
        if new == 0 {
            break;
        }
    }
    wait_arrivals(&tids[..signalled], &mut stopped.seizer, seized, seize_buf, &geo)?;
    for mut th in stopped.seizer.captured(seized) {
        if arrived_tid(th.tid) {
            continue; // it unblocked the signal and took it before ptrace stopped it
        }
        super::capture::other_thread_state(&mut th, &own);
        let i = NEXT.fetch_add(1, SeqCst);
        if i >= MAX_THREADS {
            return Err(Failure::plain("the program has more threads than one image can hold"));
        }
        // SAFETY: slot `i` was handed out to this thread alone (see `Slots`).
        unsafe { (SLOTS.0.get() as *mut ThreadState).add(i).write(th) };
    }
    stopped.count = NEXT.load(SeqCst).min(MAX_THREADS);
    // Every thread is stopped: counted once more for the calls they are in (see `invisible`).
    // A thread stopped with ptrace ran no handler of ckpt's, and the call it was in may have
    // begun after every other count of this checkpoint (it went into it between the listing
    // and its capture): restored, such a call returns `EINTR` (a sleep, a `poll` with a
    // timeout: `tracee`), which the count, moved since, shows as the checkpoint's.
    crate::invisible::bump();
    Ok(stopped)
}

/// One pass over `/proc/self/task`: each thread not seen yet is sent the stop signal, or, if it
/// blocks it (or `seize_all`), handed to `seizer`. Returns how many were new.
fn signal_new(me: u32, tids: &mut [u32], signalled: &mut usize, seizer: &mut Seizer, seized: &mut [Seized], seize_all: bool) -> Result<usize, Failure> {
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let mut new = 0;
    ckpt_sigsafe::tasks::each_thread(None, |tid| {
        if tid == me || tids[..*signalled].contains(&tid) || seizer.has(seized, tid) {
            return Ok(());
        }
        if *signalled + seizer.count() == tids.len() || *signalled + seizer.count() + 1 >= MAX_THREADS {
            return Err(Failure::plain("the program has more threads than one image can hold"));
        }
        if seize_all || blocks_stop_signal(tid) {
            seizer.add(seized, tid)?;
            new += 1;
            return Ok(());
        }
        // Queued with ckpt's value: the program may have a handler of its own for the signal,
        // which gets every other (see `actions`).
        match sys::tgsigqueue(pid, tid, STOP_SIGNAL as u32, ckpt_sigsafe::signals::STOP_REQUEST) {
            Ok(()) => {
                tids[*signalled] = tid;
                *signalled += 1;
                new += 1;
            }
            Err(rustix::io::Errno::SRCH) => {} // it has just exited
            Err(e) => return Err(Failure::new("signalling a thread", e)),
        }
        Ok(())
    })
    .map_err(|e| Failure::new("listing /proc/self/task", e))??;
    Ok(new)
}

/// Waits for each signalled thread, boundedly; threads that exited meanwhile do not count. One
/// that has not come when the time is up but blocks the signal now is seized instead; any
/// other makes the checkpoint fail, named in one line.
fn wait_arrivals(tids: &[u32], seizer: &mut Seizer, seized: &mut [Seized], buf: &mut [u8], geo: &Geometry) -> Result<(), Failure> {
    let start = super::procfs::monotonic_ns();
    let mut expected = tids.len() as u32;
    let mut seized_late = false;
    loop {
        let arrived = ARRIVED.load(SeqCst);
        if arrived >= expected {
            return Ok(());
        }
        let waited = (super::procfs::monotonic_ns() - start) as i64;
        if waited >= STOP_TIMEOUT_NS {
            let missing = |t: u32, seizer: &Seizer, seized: &[Seized]| thread_exists(t) && !arrived_tid(t) && !seizer.has(seized, t);
            expected = tids.iter().filter(|&&t| thread_exists(t) && !seizer.has(seized, t)).count() as u32;
            if arrived >= expected {
                return Ok(());
            }
            if !seized_late {
                seized_late = true;
                for &t in tids {
                    if missing(t, seizer, seized) && blocks_stop_signal(t) {
                        seizer.add(seized, t)?;
                    }
                }
                seizer.run_batch(seized, buf, geo).map_err(|n| not_captured(n, false))?;
                continue;
            }
            let laggard = tids.iter().copied().find(|&t| missing(t, seizer, seized)).unwrap_or(0);
            let mut name = [0u8; 16];
            thread_comm(laggard, &mut name);
            ckpt_sigsafe::say!(
                "ckpt: thread {laggard} ({}) did not stop for the checkpoint within 2 s (is it stuck in the kernel?)",
                ckpt_sigsafe::out::Lossy(name.split(|&c| c == 0).next().unwrap_or(&[]))
            );
            return Err(Failure::plain("a thread did not stop"));
        }
        let left = Timespec { tv_sec: 0, tv_nsec: (STOP_TIMEOUT_NS - waited).min(100_000_000) };
        let _ = futex::wait(&ARRIVED, futex::Flags::PRIVATE, arrived, Some(&left));
    }
}

/// Says which thread (one that blocks the stop signal, or any in an attached process: `all`)
/// could not be stopped with ptrace, and why.
fn not_captured(n: NotCaptured, all: bool) -> Failure {
    let mut name = [0u8; 16];
    thread_comm(n.tid, &mut name);
    let mut why = ckpt_sigsafe::out::Line::new();
    n.failure.reason(&mut why);
    let name = ckpt_sigsafe::out::Lossy(name.split(|&c| c == 0).next().unwrap_or(&[]));
    let why = ckpt_sigsafe::out::Lossy(why.as_bytes());
    if all {
        ckpt_sigsafe::say!("ckpt: thread {} ({name}) could not be stopped with ptrace: {why}", n.tid);
    } else {
        ckpt_sigsafe::say!("ckpt: thread {} ({name}) blocks signal {STOP_SIGNAL} and could not be stopped with ptrace instead: {why}", n.tid);
    }
    Failure::plain("a thread did not stop")
}

/// Whether thread `tid` blocks the stop signal now.
fn blocks_stop_signal(tid: u32) -> bool {
    ckpt_sigsafe::proctext::thread_blocked(tid as u64).is_some_and(|m| m & 1 << (STOP_SIGNAL - 1) != 0)
}

/// The FPU geometry of the frames the kernel builds for this process, read from the
/// coordinator's own frame at `uc`.
fn own_geometry(uc: u64) -> Geometry {
    use ckpt_image::frame::{SigContext, FXSAVE_SIZE, UCONTEXT_SIZE};
    // SAFETY: the kernel built a whole `ucontext` at `uc` for the handler this thread is in.
    let ctx = SigContext::parse(unsafe { core::slice::from_raw_parts(uc as usize as *const u8, UCONTEXT_SIZE) });
    match ctx {
        Ok(c) if c.fpstate != 0 => {
            // SAFETY: the frame's fpstate points at the FXSAVE area the kernel saved with it.
            Geometry::of(unsafe { core::slice::from_raw_parts(c.fpstate as usize as *const u8, FXSAVE_SIZE) })
        }
        _ => Geometry::of(&[0u8; FXSAVE_SIZE]),
    }
}

fn arrived_tid(tid: u32) -> bool {
    let n = NEXT.load(SeqCst).min(MAX_THREADS);
    // SAFETY: reads slots threads may still be writing only for a diagnostic; a torn value
    // just names another thread.
    (1..n).any(|i| unsafe { core::ptr::read_volatile((SLOTS.0.get() as *const ThreadState).add(i)) }.tid == tid)
}

fn thread_exists(tid: u32) -> bool {
    let mut buf = [0u8; 64];
    ckpt_sigsafe::proctext::numbered_path(&mut buf, b"/proc/self/task/", tid as u64, b"")
        .is_some_and(|p| rustix::fs::access(p, rustix::fs::Access::EXISTS).is_ok())
}

fn thread_comm(tid: u32, out: &mut [u8; 16]) {
    let mut buf = [0u8; 64];
    if let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut buf, b"/proc/self/task/", tid as u64, b"/comm") {
        let len = ckpt_sigsafe::file::read_whole(p, out).unwrap_or(0);
        out[len.saturating_sub(1).min(15)..].fill(0);
    }
}
