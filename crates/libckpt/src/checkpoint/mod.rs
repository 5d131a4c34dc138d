//! Everything the SIGUSR2 handler does: capture the process and write its image.
//!
//! # Signal-safety fence
//! Code in this module runs inside a signal handler that may have interrupted `malloc`, stdio or
//! any lock holder. It therefore must not allocate, lock, call libc, or unwind. It uses only raw
//! system calls (rustix's linux_raw backend and `ckpt_sigsafe::sys`), its stack (kept small) and
//! a scratch mapping it creates and removes itself. The crate is `no_std` without `alloc`.
//!
//! The handler captures the kernel state (descriptors, timers, signal state, …) itself, then
//! forks a writer process: the writer has a copy-on-write snapshot of the memory and writes the
//! image while the program goes on. The program is paused only for the fork. The writer is a
//! grandchild (its parent exits at once and is reaped here), so the program never sees it: no
//! SIGCHLD, nothing for its `wait()`, no zombie. With `CKPT_SYNC=1` the handler writes the
//! image itself instead.
//!
//! On failure nothing of the program is touched: the temporary file is removed, the previous
//! image stays as it was, and one line on stderr says why. The report page (`report.rs`) names
//! the writer at work, and a checkpoint that finds a live one is refused, so two checkpoints of
//! one process are never written at once.

// unsafe: the report page, a mapping shared with the `ckpt` command.
#[allow(unsafe_code)]
pub mod report;
// unsafe: maps the frames region, and writes the leader's frame and the region's marker there.
#[allow(unsafe_code)]
pub mod attached;
// unsafe: maps the image file to move a member's offsets.
#[allow(unsafe_code)]
mod assembly;
// unsafe: maps the image file to authenticate it.
#[allow(unsafe_code)]
mod auth;
// unsafe: reads the kernel's signal frame (`ucontext`) and saved signal actions.
#[allow(unsafe_code)]
mod capture;
mod chain;
// unsafe: reads the program's memory in place.
#[allow(unsafe_code)]
mod compress;
mod failure;
// unsafe: the cache of file hashes, a mapping shared with the writers.
#[allow(unsafe_code)]
mod filecache;
// unsafe: borrows the program's descriptors by number (it owns them, not us).
#[allow(unsafe_code)]
mod fds;
mod imagefile;
// unsafe: switches the stack pointer to a stack of libckpt's own, and reads the kernel's frame.
#[allow(unsafe_code)]
pub mod ownstack;
// unsafe: reads a System V segment through an attachment of its own.
#[allow(unsafe_code)]
mod ipc;
// unsafe: borrows the program's descriptors by number (it owns them, not us).
#[allow(unsafe_code)]
mod mqueue;
// unsafe: reads the program's memory in place, and `pread` into a buffer by address.
#[allow(unsafe_code)]
mod pages;
pub mod phases;
mod procfs;
mod pty;
mod runs;
// unsafe: carves the scratch mapping into the writer's typed tables.
#[allow(unsafe_code)]
mod scratch;
// unsafe: records written by the capturing child into this process's memory, read afresh.
#[allow(unsafe_code)]
mod seize;
// unsafe: the tree's page table in a mapping shared between processes.
#[allow(unsafe_code)]
mod share;
mod slots;
// unsafe: reads a socket address's bytes.
#[allow(unsafe_code)]
mod sockets;
mod tcp;
// unsafe: borrows the program's descriptors by number (it owns them, not us).
#[allow(unsafe_code)]
mod tcpdrain;
// unsafe: the drained bytes in the tree's control block, and the root's copies of sockets.
#[allow(unsafe_code)]
mod treedrain;
// unsafe: per-thread slots written by the threads themselves, and the signal frames they stop in.
#[allow(unsafe_code)]
pub mod threads;
// unsafe: a thread's registers read with ptrace, as bytes.
#[allow(unsafe_code)]
mod tracee;
// unsafe: the userfaultfd that write-protects the program's pages.
#[allow(unsafe_code)]
pub mod track;
// unsafe: the tree's control block in a mapping shared between processes, and futexes on it.
#[allow(unsafe_code)]
pub mod tree;
// unsafe: `madvise` on the program's memory, marking what its writer's fork leaves out.
#[allow(unsafe_code)]
mod unforked;
// unsafe: the signal frame's XSAVE area, and closing descriptors the writer inherited.
#[allow(unsafe_code)]
mod write;
// unsafe: borrowing the program's descriptors, listed just before, to look at their files.
#[allow(unsafe_code)]
mod written;

use ckpt_sigsafe::out::{Line, Lossy};
use core::fmt::Write;
use failure::Failure;
use rustix::process::Signal;

impl Failure {
    /// Says on stderr why checkpoint `n` failed, and what the program does now (`then`), and
    /// records the reason and `outcome` in the report page.
    fn report(&self, n: u32, outcome: report::Outcome, then: &str) {
        if self.step.is_empty() {
            report::end(n, outcome, b"see the program's stderr");
            return;
        }
        let mut why = Line::new();
        self.reason(&mut why);
        report::end(n, outcome, why.as_bytes());
        let mut line = Line::new();
        let _ = write!(line, "ckpt: checkpoint failed: {} ({then})", Lossy(why.as_bytes()));
        line.emit();
    }
}

/// A request for the last checkpoint (see [`ckpt_sigsafe::signals::LAST_CHECKPOINT`]).
#[derive(Clone, Copy)]
pub struct Last {
    /// If it cannot be written and no image of this run exists, stop (SIGSTOP) rather than go
    /// on (`ckpt job`: the program stays as it is, for another try).
    pub stop_if_unsaved: bool,
    /// Once the image is in place, stop (SIGSTOP), the whole tree with it, instead of ending
    /// (`ckpt checkpoint --hold`); if it cannot be written, go on.
    pub hold: bool,
    /// A complete image of this run is at the image path already (taken before this one).
    pub kept: bool,
}

/// What a checkpoint that did not fail left to do.
enum Taken {
    /// A forked writer (this PID) writes the image and reports its outcome.
    ByWriter(u32),
    /// The image was written here (`CKPT_SYNC`, or a last checkpoint).
    Written,
    /// A member of a tree whose root called the checkpoint off: nothing to say.
    CalledOff,
    /// The last checkpoint of a program held at its image (`Last::hold`): written, reported,
    /// and the program stopped until it was continued.
    Held,
}

/// Entry from the signal handler. `uc` is the address of the kernel's `ucontext`; `request` is
/// set when the signal is a tree root's request to take part in its checkpoint; `last` when it
/// asks for the last checkpoint: the image is written with the program (and its tree) stopped,
/// and then the program ends, unless the image could not be written and no earlier image of
/// this run exists, in which case it goes on (or stops itself, if asked to).
///
/// `redirect` (not 0) is the number of the path `ckpt checkpoint --to` left in the report page:
/// this checkpoint alone goes there (`crate::config::redirect`); if the page no longer holds
/// it, the checkpoint fails rather than go to the image path.
///
/// `turn` is this thread's turn ([`crate::turn::wait`]); without one, another checkpoint is still
/// under way, and this one fails.
pub fn on_checkpoint_signal(uc: usize, request: Option<tree::Request>, last: Option<Last>, redirect: u32, turn: Option<&crate::turn::Turn>) {
    let mut last = last.filter(|_| request.is_none());
    if last.is_some() {
        report::wait_idle();
    }
    // A member's outcome is its root's to report.
    let n = if request.is_none() { report::begin() } else { 0 };
    let redirected = match turn {
        None => Err(Failure::plain("another checkpoint of this process was still under way")),
        Some(_) if redirect != 0 && request.is_none() => redirect_to(redirect, n),
        Some(_) => Ok(()),
    };
    if let Some(l) = last.as_mut() {
        // Whether the program may end even if this image cannot be written: the image at its
        // path (which a failed write leaves as it is) is one of this run, complete. A program
        // to be held goes on whenever its image is not written.
        let mut image = [0u8; ckpt_image::state::PATH_MAX + 32];
        l.kept = !l.hold && redirected.is_ok() && crate::config::this_process_image(&mut image).is_some_and(chain::is_image_of_this_run);
    }
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    match (redirected.and_then(|()| take(uc, request, last, n, None)), last) {
        (Ok(Taken::Held), _) => {}
        (Ok(Taken::Written), Some(_)) => {
            report::end(n, report::Outcome::LastWritten, b"");
            let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
        }
        (Ok(Taken::Written), None) => report::end(n, report::Outcome::Written, b""),
        (Ok(_), _) => {}
        (Err(f), None) => f.report(n, report::Outcome::Failed, "the program goes on; nothing at the image path changed"),
        (Err(f), Some(l)) => {
            if l.kept {
                f.report(n, report::Outcome::LastFailedEnds, "the image taken before it is kept; the program ends, as asked");
                let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
            } else if l.hold {
                f.report(n, report::Outcome::LastFailedGoesOn, "the program was to stop at its image: it goes on");
            } else if l.stop_if_unsaved {
                f.report(n, report::Outcome::LastFailedStopped, "no image of this run of the program exists, so it does not end: it stops (SIGSTOP) until it is continued or asked again");
                let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::STOP);
                // Continued: so are the processes below it, stopped with it.
                tree::continue_descendants(me);
            } else {
                f.report(n, report::Outcome::LastFailedGoesOn, "no image of this run of the program exists, so it does not end: it goes on");
            }
        }
    }
    // Without the turn no checkpoint ran here: the one under way keeps its path and state.
    if turn.is_some() {
        // Later checkpoints go to the image path again.
        crate::config::end_redirect();
        // The program goes on (the image, taken, holds "restored").
        crate::dropped::clear();
    }
}

/// Takes the path `ckpt checkpoint --to` left in the report page under number `seq`, for the
/// checkpoint under way (number `n`): it goes there (`crate::config::redirect`) until
/// `on_checkpoint_signal` ends the redirection.
fn redirect_to(seq: u32, n: u32) -> Result<(), Failure> {
    let mut path = [0u8; ckpt_image::report::TO_PATH_MAX + 1];
    let len = report::take_redirect(seq, n, &mut path)?;
    if crate::config::redirect(&path[..len]) {
        Ok(())
    } else {
        Err(Failure::plain("the path ckpt asked for (--to) is too long"))
    }
}

/// After the last checkpoint of a program to be held (`Last::hold`), written and reported:
/// stops the whole process here (SIGSTOP, which reaches every thread, those still held by the
/// checkpoint too), before any of its threads runs past the image; returns once it is
/// continued. A root under libckpt then continues the processes below it, stopped with it
/// (`write_here`), so that `kill -CONT ROOT` lets the tree go on as a whole. An attached
/// process's leader runs this under `ckpt`'s ptrace, which passes the stop on and lets the call
/// return: the leader joins the stop when `ckpt` lets it go, and `ckpt` leaves the tree stopped.
fn hold_here(attached: bool) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::STOP);
    if !attached {
        tree::continue_descendants(rustix::process::getpid().as_raw_nonzero().get() as u32);
    }
}

/// The checkpoint of a process that does not run libckpt, on its leader thread, from the block
/// `ckpt` wrote (`crate::attached`, whose caller set the configuration). Returns the forked
/// writer's PID (0: the image is written already) and the report page's descriptor, or `None`
/// with why it failed in `why`, also said in the report page. Nothing is said on the program's
/// stderr but what a step says on its own (a thread that would not stop, a file not saved).
///
/// In a tree `ckpt` attached to as a whole, the root's call (`FLAG_TREE_ROOT`) stops the
/// descendants with the tree protocol, publishing them in `args` for `ckpt` to start their
/// calls; a member's (`FLAG_TREE_MEMBER`) joins the root's control block as a signalled member
/// would, and its outcome is the root's to report.
pub fn attached_checkpoint(args: &ckpt_sigsafe::attach::AttachArgs, why: &mut Line) -> Option<(u32, i32)> {
    use ckpt_sigsafe::attach::{FLAG_LAST, FLAG_TREE_MEMBER, FLAG_TREE_ROOT};
    let request = (args.flags & FLAG_TREE_MEMBER != 0).then(|| tree::Request::from_root(args.tree_root, args.tree_ctl_fd.load(core::sync::atomic::Ordering::SeqCst)));
    let n = if request.is_none() { report::begin() } else { 0 };
    let taken = (|| {
        let geo = tracee::Geometry::from_cpu();
        let nexcluded = args.nexcluded as usize;
        let excluded = args.excluded.get(..nexcluded).ok_or(Failure::plain("ckpt passed more excluded ranges than its block holds"))?;
        let region = attached::FramesRegion::map(&geo)?;
        let (uc, own) = attached::leader(args, &geo, &region.frames)?;
        const _: () = assert!(ckpt_sigsafe::attach::MAX_EXCLUDED < write::MAX_LEFT_OUT);
        let mut leave_out: [core::ops::Range<usize>; write::MAX_LEFT_OUT] = core::array::from_fn(|_| 0..0);
        for (l, e) in leave_out.iter_mut().zip(excluded) {
            *l = e[0] as usize..e[1] as usize;
        }
        leave_out[nexcluded] = report::page_range();
        let tree = (args.flags & FLAG_TREE_ROOT != 0).then_some(args);
        let attach = attached::Attach { own, geo, frames: region.frames, region: region.region, leave_out: &leave_out[..nexcluded + 1], tree };
        // The last checkpoint (`ckpt checkpoint --kill`): written with the threads held, which
        // stay held if it was, until `ckpt` kills the process (a member's part is written by
        // its writer as always, and the root ends it).
        // Held instead (`ckpt checkpoint --hold`): the process stops itself once its image is
        // written, and `ckpt` leaves it stopped.
        let hold = args.flags & ckpt_sigsafe::attach::FLAG_HOLD != 0;
        let last = (args.flags & FLAG_LAST != 0 && request.is_none()).then_some(Last { stop_if_unsaved: false, hold, kept: false });
        take(uc, request, last, n, Some(&attach))
    })();
    let outcome = match taken {
        Ok(Taken::ByWriter(pid)) => Some((pid, report::own_fd())),
        Ok(Taken::Held) => Some((0, report::own_fd())),
        Ok(Taken::CalledOff) => {
            why.bytes(b"the tree's root called the checkpoint off");
            None
        }
        Ok(_) => {
            let last = args.flags & FLAG_LAST != 0;
            report::end(n, if last { report::Outcome::LastWritten } else { report::Outcome::Written }, b"");
            Some((0, report::own_fd()))
        }
        Err(f) => {
            f.reason(why);
            if why.as_bytes().is_empty() {
                why.bytes(b"see the program's stderr");
            }
            report::end(n, report::Outcome::Failed, why.as_bytes());
            None
        }
    };
    report::unmap_page();
    outcome
}

/// Takes the checkpoint: captures the process (and its tree), then writes the image here or
/// in a forked writer. `n` numbers it in the report page (0 for a tree member's part).
/// `attach` is set in a process checkpointed by attaching to it (`attached`): its threads are
/// all stopped with ptrace, its layout leaves out what `ckpt` mapped there, and nothing of
/// what libckpt does in a process it runs in from the start (a tree, tracking writes, its
/// trampolines) is there.
fn take(uc: usize, request: Option<tree::Request>, last: Option<Last>, n: u32, attach: Option<&attached::Attach>) -> Result<Taken, Failure> {
    let started = procfs::monotonic_ns();
    phases::begin(started);
    let cfg = crate::config::get();
    // A member of a tree checkpoint writes its part for the root; anyone else its own image
    // (and, with children, the whole tree's).
    let mut member = match request {
        Some(r) => Some(tree::Joined::join(r)?),
        None => None,
    };
    if member.is_none() && cfg.image_len == 0 {
        return Err(Failure::plain("no image path was set at startup"));
    }
    if member.is_none() && cfg.key_unreadable {
        return Err(Failure::plain("the key file (CKPT_KEY) was refused when the program started (its stderr said why then)"));
    }
    let forked_writer = (!cfg.sync && last.is_none()) || member.is_some();
    if forked_writer {
        report::check()?;
    }
    let mut image = [0u8; ckpt_image::state::PATH_MAX + 32];
    let image = crate::config::this_process_image(&mut image).ok_or(Failure::plain("image path is too long"))?;
    let mut scratch = scratch::Scratch::map()?;
    // Every other thread stops here, and goes on when `stopped` is dropped (on every path out
    // of this function, the writer's start included).
    let mut stopped = {
        let mut parts = scratch.parts();
        capture::refuse_unsupported(&mut parts)?;
        let room = threads::Room { tids: parts.tids, seized: parts.seized, seize_buf: parts.seize_buf };
        match attach {
            None => threads::stop_others(capture::thread_state(uc, cfg), room, threads::How::Signal)?,
            Some(a) => threads::stop_others(a.own, room, threads::How::Seize { geo: a.geo, frames: a.frames })?,
        }
    };
    // The tree stops as one: a member waits for its root's word; a root with children stops
    // them all before anything is captured (and lets them go when `tree` is dropped).
    let mut tree = None;
    match &mut member {
        Some(m) => {
            if !m.parked_wait() {
                // Called off by the root: nothing to report here (the root says why).
                return Ok(Taken::CalledOff);
            }
        }
        // An attached process's children run no libckpt to take part (nor is this signal ours),
        // unless `ckpt` attached to them too and starts each one's part (`Summon::Attached`).
        None => match attach {
            Some(a) => {
                if let Some(args) = a.tree {
                    tree = tree::Tree::gather(tree::Summon::Attached(args), image)?;
                }
            }
            None => tree = tree::Tree::gather(tree::Summon::Signal(cfg.signal), image)?,
        },
    }
    phases::mark(phases::Phase::Stopped);
    let copies = if forked_writer { room_for_copies(&mut scratch)? } else { 0 };
    scratch.grow(copies)?;
    let exclude = scratch.range();
    let (mut parts, mut stack) = scratch.parts_and_stack();
    let leave_out = attach.map(|a| write::LeaveOut { ranges: a.leave_out, frames: a.region, earlier_frames: attached::FramesRegion::is_earlier });
    write::read_layout(&mut parts, leave_out.as_ref())?;
    if forked_writer {
        write::copy_for_writer(&mut parts, &exclude)?;
    }
    phases::mark(phases::Phase::Layout);
    if attach.is_none() {
        crate::entry::prepare_for_restore();
        crate::dropped::mark_for_image();
    }
    capture::process_state(&mut parts, uc, cfg, threads::slots_mut(&mut stopped))?;
    phases::mark(phases::Phase::State);
    if attach.is_some() {
        // No libckpt in the restored process: myrestart resumes it with code of its own.
        parts.state.flags |= ckpt_image::state::FLAG_ATTACHED;
        parts.state.resume_trampoline = 0;
        parts.state.thread_trampoline = 0;
    }
    if last.is_some() {
        // The program prints nothing past this image: a restart leaves its logs as they are.
        parts.state.flags |= ckpt_image::state::FLAG_LAST_CHECKPOINT;
    }
    if cfg.raw_madvise {
        // The Go runtime drops pages with `madvise` made past libc, which `dropped` never sees:
        // the restart must give the kernel's zeros for them, not the image's bytes
        // (`crate::golang`, read at startup or by the attached entry).
        parts.state.flags |= ckpt_image::state::FLAG_RAW_MADVISE;
    }
    let mut own = [-1i32; 1 + ckpt_image::tree::MAX_TREE];
    let own: &[i32] = match &tree {
        Some(t) => t.own_fds(&mut own),
        None => &[],
    };
    let drained = tree.as_ref().map(|t| t.drained()).or(member.as_ref().map(|m| m.drained()));
    fds::capture(&mut parts, own, tree.is_some() || member.is_some(), drained)?;
    phases::mark(phases::Phase::Fds);
    written::capture(&mut parts)?;
    phases::mark(phases::Phase::Written);
    let file = match &member {
        Some(m) => imagefile::TempImage::part(m.open_part()?, core::mem::take(&mut parts.tmp_path)),
        None => imagefile::TempImage::create(image, core::mem::take(&mut parts.tmp_path))?,
    };
    if let Some(t) = tree.as_mut() {
        t.wait_captured()?;
        t.refill();
    }
    // What the program wrote since its previous checkpoint (a process checkpointed on its own
    // only: a tree's images are always full). Found last, once the handler has written what it
    // writes for the image (`entry::prepare_for_restore` and the like): a page written after this
    // would be left to the base as it was.
    if tree.is_none() && member.is_none() && attach.is_none() {
        write::track_changes(&mut parts, &exclude);
        if forked_writer {
            // The writer needs none of the memory left to the previous image, nor (for a full
            // image) the memory of zeros: its fork need not copy that memory's page tables.
            unforked::choose(&mut parts, &exclude, threads::slots(&stopped), image, &mut stack);
        }
    } else {
        track::forget();
    }
    phases::mark(phases::Phase::Captured);
    if !forked_writer {
        // The program stays stopped until the image is written: nothing it writes is missed.
        write::protect_tracked(&parts, &exclude);
    }
    let captured = Captured { parts, started, exclude, file };
    if !forked_writer {
        // CKPT_SYNC: the whole tree stays stopped until the image is written, on a stack apart
        // from the program's (see `ownstack`).
        let taken = stack.run(|| write_here(captured, &stopped, tree.as_mut(), member.as_ref(), last)).unwrap_or(Err(Failure::plain("the image was not written")));
        if taken.is_ok() && last.is_some_and(|l| l.hold) {
            // Said before the stop, for `ckpt` to wait for the stop itself; the threads this
            // one holds stop with it, and go on when it does (`stopped` dropped).
            report::end(n, report::Outcome::Held, b"");
            hold_here(attach.is_some());
            return Ok(Taken::Held);
        }
        if last.is_some_and(|l| taken.is_ok() || l.kept) {
            // The program ends as soon as this returns (`on_checkpoint_signal`), and the tree's
            // other processes are gone already: its other threads must not run meanwhile (an
            // MPI launcher's would see its ranks die and remove their shared memory files).
            stopped.hold_until_the_end();
        }
        return taken;
    }
    start_writer(stopped, captured, &mut stack, tree.as_mut(), member.as_mut(), n)
}

/// Room to copy the memory a forked writer would not see as it is now: shared memory, and
/// memory a child does not inherit (with CKPT_SYNC the handler writes it all itself, the
/// program stopped meanwhile).
fn room_for_copies(scratch: &mut scratch::Scratch) -> Result<usize, Failure> {
    let range = scratch.range();
    let (maps, path, smaps, not_inherited) = scratch.prep_buffers();
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", maps).map_err(|e| Failure::new("reading /proc/self/maps", e))?;
    write::copy_len(&maps[..n], &range, path, smaps, not_inherited)
}

/// The process as captured, ready to be written: its state and layout in the scratch area
/// (`parts`), the start of the checkpoint, the scratch range left out of the image, and the
/// file the image goes into.
struct Captured<'s> {
    parts: scratch::Parts<'s>,
    started: u64,
    exclude: core::ops::Range<usize>,
    file: imagefile::TempImage<'s>,
}

/// Which image this process writes: a tree's root writes the tree's, a member its part, any
/// other process its own.
fn role_of<'t>(tree: Option<&'t tree::Tree>, member: Option<&'t tree::Joined>) -> write::Role<'t> {
    match (tree, member) {
        (Some(t), _) => write::Role::Root(t),
        (None, Some(m)) => write::Role::Member(m),
        (None, None) => write::Role::Single,
    }
}

/// Writes the image here, with the program (and its tree) stopped until it is written
/// (`CKPT_SYNC`, or a last checkpoint).
fn write_here(c: Captured, stopped: &threads::Stopped, mut tree: Option<&mut tree::Tree>, member: Option<&tree::Joined>, last: Option<Last>) -> Result<Taken, Failure> {
    let Captured { mut parts, started, exclude, file } = c;
    let role = role_of(tree.as_deref(), member);
    let is_member = member.is_some();
    // The image is written from this very memory: the cache's address is out of it meanwhile.
    let cache = filecache::take();
    let written = write::write_image(&mut parts, threads::slots(stopped), started, exclude, file, role, cache);
    filecache::put_back(cache);
    if let (Some(t), Some(l)) = (tree.as_mut(), last) {
        // Nothing of the tree runs past its last checkpoint, if the program ends (see
        // `on_checkpoint_signal`); asked to stop, the tree stops with it.
        if l.hold {
            // Held: the members stop before they are let go, and so never run past the image.
            if written.is_ok() {
                t.signal_members(Signal::STOP);
            }
        } else if written.is_ok() || l.kept {
            t.signal_members(Signal::KILL);
        } else if l.stop_if_unsaved {
            t.signal_members(Signal::STOP);
        }
    }
    if let Some(t) = tree.as_mut() {
        t.release();
    }
    // The image replaced (kept past the rename) and the bases no longer needed go here.
    written.map(|previous| {
        write::tidy_up(&mut parts, previous, is_member);
        Taken::Written
    })
}

/// Starts the writer: a process the program never sees (not its child), started by a
/// short-lived intermediate that shares the program's memory, so the memory is copied once.
/// The program goes on at once (its threads, and the tree, let go); the writer writes the
/// image and ends.
fn start_writer(stopped: threads::Stopped, mut c: Captured, stack: &mut scratch::WriterStack, mut tree: Option<&mut tree::Tree>, mut member: Option<&mut tree::Joined>, n: u32) -> Result<Taken, Failure> {
    let mut writer = 0i32;
    // Named from its start: until it has run, a writer that still had the program's name would
    // be taken for one killed by the next checkpoint (which would then start another beside
    // it), and `ckpt` would take it for one of the program's own processes.
    // The writer's memory (the image) holds no address of the cache; this process keeps it.
    let cache = filecache::take();
    // What the writer does without, it is forked without (see `unforked`); `nunforked` tells it
    // what was left out in the end.
    c.parts.nunforked = unforked::mark(&c.parts.unforked[..c.parts.nunforked]);
    phases::unforked(c.parts.unforked[..c.parts.nunforked].iter().map(|r| r[1] - r[0]).sum(), c.parts.unforked_zeros);
    let intermediate = ckpt_sigsafe::sys::spawn_detached_named(&mut writer, report::WRITER_NAME);
    if intermediate == Ok(0) {
        // The writer, with a copy of memory as it is now: it runs on a stack apart from the
        // program's (see `ownstack`), so that what it reads from them does not change meanwhile.
        stack.run(|| -> () { run_writer(c, &stopped, tree.as_deref(), member.as_deref(), n, cache) });
        ckpt_sigsafe::sys::exit_group(1); // not reached: `run_writer` ends the process
    }
    unforked::unmark(&c.parts.unforked[..c.parts.nunforked]);
    filecache::put_back(cache);
    let intermediate = intermediate.map_err(|e| Failure::new("starting the image writer", e))?;
    // The program: reap the intermediate (gone once the writer is forked) and go on at once.
    let reaped = ckpt_sigsafe::sys::reap_quiet_child(intermediate);
    // The writer has its copy of memory: what the program writes from now on is for the next
    // image. Protecting it takes a while for much memory, while the writer starts on its work.
    write::protect_tracked(&c.parts, &c.exclude);
    let made = c.file.identity();
    c.file.hand_over();
    if writer <= 0 || reaped != Some(0) {
        drop(stopped);
        let e = rustix::io::Errno::from_raw_os_error(-writer);
        return Err(if writer < 0 { Failure::new("starting the image writer", e) } else { Failure::plain("starting the image writer (its parent process was killed)") });
    }
    report::started(writer as u32, made);
    if let Some(m) = member.as_deref() {
        m.writer_started(writer as u32);
    }
    if let Some(t) = tree.as_mut() {
        t.release();
    }
    if let Some(m) = member.as_mut() {
        m.captured_wait();
    }
    drop(stopped);
    Ok(Taken::ByWriter(writer as u32))
}

/// The writer, a snapshot of the program at the moment of the signal: writes the image,
/// reports how that went, and ends.
fn run_writer(c: Captured, stopped: &threads::Stopped, tree: Option<&tree::Tree>, member: Option<&tree::Joined>, n: u32, cache: usize) -> ! {
    let Captured { mut parts, started, exclude, file } = c;
    phases::mark(phases::Phase::Writer);
    // It lets go at once of every descriptor it does not read from, so that it never holds
    // the program's sockets, pipes or files open after the program has closed them, or died.
    let keep = tree.into_iter().flat_map(|t| t.part_fds());
    write::close_all_but_needed(&mut parts, file.raw_fd(), keep);
    let role = role_of(tree, member);
    let (ok, previous) = match write::check_inherited(&mut parts, &exclude).and_then(|()| {
        phases::mark(phases::Phase::Closed);
        write::write_image(&mut parts, threads::slots(stopped), started, exclude, file, role, cache)
    }) {
        Ok(previous) => {
            report::end(n, report::Outcome::Written, b"");
            (true, Some(previous))
        }
        Err(f) => {
            f.report(n, report::Outcome::Failed, "the program goes on; nothing at the image path changed");
            (false, None)
        }
    };
    if let Some(m) = member {
        m.written(ok);
    }
    // The image replaced and the bases no longer needed are freed only now, once the outcome
    // is out; still before this writer says it is done, so that the next checkpoint (which
    // may make a base file no image names yet) cannot start while the bases are looked over.
    if let Some(p) = previous {
        write::tidy_up(&mut parts, p, member.is_some());
    }
    report::finished();
    ckpt_sigsafe::sys::exit_group(if ok { 0 } else { 1 })
}
