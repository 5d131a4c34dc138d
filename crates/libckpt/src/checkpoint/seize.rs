//! Stopping the threads that block the thread-stop signal, which its handler never reaches:
//! glibc's helper thread for `SIGEV_THREAD` timers (glibc blocks every signal in it with a
//! system call of its own), and any thread that blocks every signal with `rt_sigprocmask`
//! itself. The kernel lets no thread trace another of its own process, but lets a process
//! trace the threads of another of the same user: so the coordinator forks a capturing child
//! which seizes each such thread with
//! `PTRACE_SEIZE` and `PTRACE_INTERRUPT`, writes its signal frame on its stack (`tracee`), and
//! writes its record into the coordinator's scratch memory (`process_vm_writev`), status last.
//! The child is started like the image writer, as nobody's child (`spawn_detached`), so that
//! neither the program nor a tree checkpoint that looks for the program's children sees it.
//! The coordinator waits (boundedly) until every record of the batch has its status. The threads
//! stay stopped as long as the child lives: it waits with every signal blocked, and the
//! coordinator asks it with [`RELEASE`] to let them go when it lets the other threads go; the
//! child then detaches from each thread, which goes on exactly where it was (a system call it
//! was in restarts as after any stop), and ends. A thread whose call the stop cut short with
//! `EINTR` instead of a restart code (`epoll_wait`, `sigtimedwait`…) is first set to make it
//! again, unless a signal waits that it will take (`ckpt_sigsafe::interrupted` has the rule),
//! so that the program never sees an `EINTR` it did not ask for. A child that does not end
//! soon after is killed (`SIGKILL`): the kernel then lets its threads go as they are. Should the program die first (a last checkpoint keeps
//! its children, so that the threads they hold run no further than the image), the child ends
//! with it (it reaps the held threads as they end, which the program's end waits for), and after [`HOLD_S`] in any case.
//!
//! In a process checkpointed by attaching to it (`crate::attached`), every thread but the one
//! running the checkpoint is captured this way, and each frame goes into that thread's slot of
//! the frames region ([`Seizer::into_region`]) instead of onto its stack.
//!
//! A child serves one batch (the threads of one listing pass); a pass that finds more threads
//! that block the signal starts another, up to [`MAX_BATCHES`].
//!
//! # Signal-safety fence
//! Like the rest of `checkpoint`: raw system calls and the caller's buffers, no allocation, no
//! locks, no libc.

use super::failure::Failure;
use super::tracee::{self, Frames, Geometry, Outcome, Place, Step};
use ckpt_image::frame::ureg;
use ckpt_image::ThreadState;
use ckpt_sigsafe::sys::{self, ptrace};
use linux_raw_sys::elf_uapi::NT_PRSTATUS;
use rustix::io::Errno;

/// The capturing child's name (`ps`, `/proc/PID/comm`).
pub const NAME: &core::ffi::CStr = c"ckpt-seize";
/// Most capturing children one checkpoint starts.
pub const MAX_BATCHES: usize = 8;
/// How long a capturing child keeps its threads stopped at most.
const HOLD_S: u64 = 600;
/// How long the coordinator waits for a batch to be captured.
const CAPTURE_TIMEOUT_NS: u64 = 2_000_000_000;
/// The signal that asks a capturing child to let its threads go and end (it blocks every
/// signal, and waits for this one and `SIGCHLD`).
const RELEASE: u32 = linux_raw_sys::general::SIGUSR1;
/// Record status: not yet written.
const PENDING: i32 = 0;
const CAPTURED: i32 = 1;
const GONE: i32 = 2;

/// One thread to seize, and what its capture found. In the coordinator's scratch memory; the
/// capturing child writes `state` first, then `status` (and `step`).
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct Seized {
    pub state: ThreadState,
    /// [`PENDING`], [`CAPTURED`], [`GONE`], or a negative errno (with `step`).
    status: i32,
    step: u32,
}

/// The capturing children of one checkpoint, and the threads handed to them (in `records`).
pub struct Seizer {
    children: [u32; MAX_BATCHES],
    nchildren: usize,
    /// Threads handed over so far: `records[..count]`.
    count: usize,
    /// Threads whose batch has been started.
    started: usize,
    /// Where the frames go: the frames region (record `i` in slot `i + 1`), or the stacks.
    frames: Option<Frames>,
}

/// Why a thread could not be captured: its TID and what failed.
pub struct NotCaptured {
    pub tid: u32,
    pub failure: Failure,
}

impl Seizer {
    pub const fn new() -> Seizer {
        Seizer { children: [0; MAX_BATCHES], nchildren: 0, count: 0, started: 0, frames: None }
    }

    /// A seizer that puts each thread's frame into its slot of `frames` (slot 0 is the
    /// caller's), not on its stack.
    pub const fn into_region(frames: Frames) -> Seizer {
        Seizer { frames: Some(frames), ..Seizer::new() }
    }

    /// Threads handed over so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether thread `tid` was handed over.
    pub fn has(&self, records: &[Seized], tid: u32) -> bool {
        records[..self.count].iter().any(|r| r.state.tid == tid)
    }

    /// Hands thread `tid` over (for the next [`Seizer::run_batch`]).
    pub fn add(&mut self, records: &mut [Seized], tid: u32) -> Result<(), Failure> {
        let r = records.get_mut(self.count).ok_or(Failure::plain("the program has more threads than one image can hold"))?;
        *r = Seized { state: ThreadState { tid, ..ThreadState::default() }, status: PENDING, step: 0 };
        self.count += 1;
        Ok(())
    }

    /// Captures the threads handed over since the last batch, in a new child, and waits until
    /// each is captured (or gone). `geo` is the frame geometry, `buf` room for the child.
    pub fn run_batch(&mut self, records: &mut [Seized], buf: &mut [u8], geo: &Geometry) -> Result<(), NotCaptured> {
        let (from, to) = (self.started, self.count);
        if from == to {
            return Ok(());
        }
        self.started = to;
        let first = records[from].state.tid;
        let fail = |failure| NotCaptured { tid: first, failure };
        if self.nchildren == MAX_BATCHES {
            return Err(fail(Failure::plain("threads that block every signal keep starting others")));
        }
        // A process that is not dumpable cannot be traced, nor its memory written, by a
        // process of the same user without privilege.
        if rustix::process::dumpable_behavior().is_ok_and(|d| d != rustix::process::DumpableBehavior::Dumpable) && !privileged() {
            return Err(fail(Failure::plain("the program is not dumpable (PR_SET_DUMPABLE), so it cannot be traced")));
        }
        if buf.len() < 2 * geo.frame_room() {
            return Err(fail(Failure::plain("the FPU state is larger than ckpt has room for")));
        }
        let parent = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let base = records.as_mut_ptr();
        // Every signal blocked across the fork, so that none reaches the child before it
        // blocks them itself (its handlers are the program's).
        let old = sys::rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK as usize, !0).map_err(|e| fail(Failure::new("blocking signals", e)))?;
        let mut pid = 0i32;
        let forked = sys::spawn_detached(&mut pid);
        let _ = sys::rt_sigprocmask(linux_raw_sys::general::SIG_SETMASK as usize, old);
        match forked {
            Ok(0) => child(parent, base, from, to, buf, geo, self.frames),
            Ok(intermediate) => {
                let reaped = sys::reap_quiet_child(intermediate);
                if pid <= 0 || reaped != Some(0) {
                    return Err(fail(Failure::new("starting the process that stops threads with ptrace", Errno::from_raw_os_error(-pid.min(0)))));
                }
                self.children[self.nchildren] = pid as u32;
                self.nchildren += 1;
                wait_batch(base, from, to, pid as u32)
            }
            Err(e) => Err(fail(Failure::new("starting the process that stops threads with ptrace", e))),
        }
    }

    /// The threads captured, to be completed and counted by the caller.
    pub fn captured<'r>(&self, records: &'r [Seized]) -> impl Iterator<Item = ThreadState> + 'r {
        let base = records.as_ptr();
        (0..self.started).filter_map(move |i| {
            // SAFETY: `i` is below `started`, inside `records`; the child wrote them with
            // process_vm_writev, so they are read afresh.
            let r = unsafe { base.add(i).read_volatile() };
            (r.status == CAPTURED).then_some(r.state)
        })
    }

    /// Ends every capturing child: the threads they stopped go on. Returns once each is gone
    /// (a zombie, or reaped by whoever inherited it): the kernel has let its threads go then.
    pub fn release(&mut self) {
        for &pid in &self.children[..self.nchildren] {
            let _ = sys::kill(pid, RELEASE);
        }
        for &pid in &self.children[..self.nchildren] {
            if !gone_within(pid, CAPTURE_TIMEOUT_NS) {
                let _ = sys::kill(pid, linux_raw_sys::general::SIGKILL);
                gone_within(pid, CAPTURE_TIMEOUT_NS);
            }
        }
        self.nchildren = 0;
    }
}

/// Waits until process `pid` is gone (or a zombie), `ns` at most; whether it is.
fn gone_within(pid: u32, ns: u64) -> bool {
    let start = super::procfs::monotonic_ns();
    while alive(pid) {
        if super::procfs::monotonic_ns() - start >= ns {
            return false;
        }
        sys::sleep_ns(100_000);
    }
    true
}

/// Whether this process may trace any process of its user namespace (`CAP_SYS_PTRACE`).
fn privileged() -> bool {
    let mut buf = [0u8; 2048];
    let Ok(n) = ckpt_sigsafe::file::read_start(c"/proc/self/status", &mut buf) else { return false };
    let cap_sys_ptrace = 1u64 << 19;
    super::procfs::status_field(&buf[..n], b"CapEff:").and_then(ckpt_sigsafe::proctext::parse_hex).is_some_and(|c| c & cap_sys_ptrace != 0)
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let mut path = [0u8; 64];
    let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid as u64, b"/stat") else { return false };
    let mut buf = [0u8; 512];
    let Ok(n) = ckpt_sigsafe::file::read_start(p, &mut buf) else { return false };
    !matches!(ckpt_sigsafe::proctext::stat_state(&buf[..n]), Some(b'Z' | b'X') | None)
}

/// Waits until every record of `from..to` has its status, or the child ended, or the time is
/// up; the first failure found is returned.
fn wait_batch(base: *mut Seized, from: usize, to: usize, child: u32) -> Result<(), NotCaptured> {
    let start = super::procfs::monotonic_ns();
    let status = |i: usize| {
        // SAFETY: `i` is below `to`, inside the records the caller lent; the child writes the
        // status with process_vm_writev, so it is read afresh each time.
        unsafe { ((&raw const (*base.add(i)).status).read_volatile(), (&raw const (*base.add(i)).step).read_volatile()) }
    };
    let tid = |i: usize| {
        // SAFETY: as above; the TID was written by this process before the fork.
        unsafe { (*base.add(i)).state.tid }
    };
    loop {
        let pending = (from..to).find(|&i| status(i).0 == PENDING);
        if let Some(i) = (from..to).find(|&i| status(i).0 < 0) {
            let (st, step) = status(i);
            return Err(NotCaptured { tid: tid(i), failure: Failure::new(Step::from_code(step), Errno::from_raw_os_error(-st)) });
        }
        let Some(i) = pending else {
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            return Ok(());
        };
        if !alive(child) {
            return Err(NotCaptured { tid: tid(i), failure: Failure::plain("the process that stops threads with ptrace ended") });
        }
        if super::procfs::monotonic_ns() - start >= CAPTURE_TIMEOUT_NS {
            return Err(NotCaptured { tid: tid(i), failure: Failure::plain("it did not stop for ptrace within 2 s") });
        }
        sys::sleep_ns(200_000);
    }
}

/// The capturing child: seizes threads `from..to` of the records, writes each record back into
/// the parent, then holds them stopped until it is killed.
fn child(parent: u32, base: *mut Seized, from: usize, to: usize, buf: &mut [u8], geo: &Geometry, frames: Option<Frames>) -> ! {
    // It holds none of the program's descriptors.
    // SAFETY: the child owns its copy of the descriptor table, and uses none of them.
    unsafe { sys::close_range(0, u32::MAX) };
    let _ = rustix::thread::set_name(NAME);
    for i in from..to {
        // SAFETY: `i` is inside the records, this process's own copy of them.
        let record = unsafe { base.add(i) };
        // SAFETY: as above.
        let tid = unsafe { (*record).state.tid };
        let place = match frames {
            None => Some(Place::Stack),
            Some(f) => f.place(i + 1),
        };
        let captured = match place {
            Some(place) => tracee::capture(parent, tid, geo, place, buf),
            None => Outcome::Failed(Step::Frame, Errno::NOSPC),
        };
        let (state, status, step) = match captured {
            Outcome::Captured(th) => (th, CAPTURED, 0),
            Outcome::Gone => (ThreadState { tid, ..ThreadState::default() }, GONE, 0),
            Outcome::Failed(step, e) => (ThreadState { tid, ..ThreadState::default() }, -e.raw_os_error(), step as u32),
        };
        // SAFETY: ThreadState and [i32, u32] are plain integers without padding (ThreadState's
        // fields add up to its size, a multiple of 8), so their bytes are initialised.
        let (state_bytes, tail) = unsafe {
            (
                core::slice::from_raw_parts(&state as *const ThreadState as *const u8, core::mem::size_of::<ThreadState>()),
                core::mem::transmute::<[i32; 2], [u8; 8]>([status, step as i32]),
            )
        };
        // SAFETY: a place inside the record, whose address only is taken.
        let status_at = unsafe { &raw const (*record).status } as usize;
        let written = sys::write_memory_of(parent, record as usize, state_bytes) && sys::write_memory_of(parent, status_at, &tail);
        if !written {
            sys::exit_group(1);
        }
        // This copy's record says which threads are held, for their release.
        // SAFETY: as above.
        unsafe { (*record).status = status };
    }
    hold(parent);
    // Asked to let them go.
    for i in from..to {
        // SAFETY: as above.
        let r = unsafe { &*base.add(i) };
        if r.status == CAPTURED {
            let_go(parent, r.state.tid);
        }
    }
    sys::exit_group(0)
}

/// Lets held thread `tid` of process `pid` go, set to make again a call the stop cut short with
/// `EINTR` (see the module's notes). With its registers, its mask is set to the one it has
/// outside the call (`PTRACE_GETSIGMASK` gives that one inside `epoll_pwait`), as the kernel
/// sets it when no signal is taken: the call made again puts its own in force again.
fn let_go(pid: u32, tid: u32) {
    let mut bytes = [0u8; ureg::COUNT * 8];
    if ptrace::get_regset(tid, NT_PRSTATUS, &mut bytes) == Ok(bytes.len()) {
        let mut regs = [0u64; ureg::COUNT];
        for (r, b) in regs.iter_mut().zip(bytes.chunks_exact(8)) {
            *r = u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
        }
        if let Some(again) = ckpt_sigsafe::interrupted::going_on(pid, tid, &regs) {
            for (b, r) in bytes.chunks_exact_mut(8).zip(again) {
                b.copy_from_slice(&r.to_ne_bytes());
            }
            if let Ok(mask) = ptrace::sigmask(tid) {
                if ptrace::set_sigmask(tid, mask).is_ok() {
                    let _ = ptrace::set_regset(tid, NT_PRSTATUS, &bytes);
                }
            }
        }
    }
    let _ = ptrace::detach(tid, 0);
}

/// Holds the seized threads stopped until this child is asked to let them go ([`RELEASE`]):
/// returns then. Should the program die first (a last checkpoint keeps its children until it
/// ends), each held thread's end is reported to this child, its tracer, with `SIGCHLD`, and the
/// program is not gone until its tracer has reaped it: so the child reaps them as they end, and
/// ends itself once none is left, or the program is gone anyway, or after [`HOLD_S`].
fn hold(parent: u32) {
    let chld = 1u64 << (linux_raw_sys::general::SIGCHLD - 1);
    let release = 1u64 << (RELEASE - 1);
    let started = super::procfs::monotonic_ns();
    while super::procfs::monotonic_ns() - started < HOLD_S * 1_000_000_000 && alive(parent) {
        match sys::wait_child(-1, true) {
            Ok(Some(_)) => continue, // one ended (or stopped again): look for more at once
            Ok(None) => {}
            Err(_) => break, // ECHILD: no thread is held any more
        }
        // Every signal is blocked here: SIGCHLD and RELEASE stay pending until taken.
        if sys::sigtimedwait(chld | release, 100_000_000) == Ok(RELEASE) {
            return;
        }
    }
    sys::exit_group(0)
}

// The record is written as the bytes of a ThreadState, then its status and step.
const _: () = assert!(core::mem::size_of::<ThreadState>() == ThreadState::ENCODED_LEN);
const _: () = assert!(core::mem::size_of::<Seized>() == ThreadState::ENCODED_LEN + 8);
