//! System V IPC objects made again under their old IDs (`NT_CKPT_IPC`).
//!
//! An ID is the kernel's choice, unique in its IPC namespace; the kernel lets a process with
//! `CAP_CHECKPOINT_RESTORE` over the namespace choose the next one
//! (`/proc/sys/kernel/{shm,sem,msg}_next_id`). So when the image records objects, init is made
//! in an IPC namespace of its own (with the PID namespace, `ids`), where the IDs are free, and
//! makes each object there before any process of the tree exists: key, owner and mode, a
//! semaphore set's values, a queue's messages in their order. Each process, once its memory is
//! back, attaches the segments it had attached at the same addresses (`attach`), in place of
//! the memfd that held their pages, so that the pages it sees and those `shmat` by ID gives are
//! one.
//!
//! # Restrictions
//! `check`, `make_all` (init), `open_queues`: before the point of no return; `attach`: after
//! it. No allocation, raw system calls only.

use crate::fds::park;
use crate::plan::{FdSlot, Plan};
use crate::refusal::{refuse, Refusal};
use ckpt_image::ipc::{IpcRecord, KIND_MQ, KIND_SEM, KIND_SHM, MAX_MESSAGE, MAX_MQ_NAME, MQ_CLOEXEC};
use ckpt_image::{Image, ProcessState, RegionRef};
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::say;
use ckpt_sigsafe::sysvipc::{self as sv, Kind, Perm};
use ckpt_sigsafe::mqueue as mq;
use core::ffi::CStr;
use rustix::fd::AsFd;
use rustix::fs::OFlags;
use rustix::io::Errno;

/// Whether any process of the image recorded an object; every record must decode (else the
/// image is refused, before anything changes).
pub fn check(image_path: &CStr, p: &Plan) -> Result<bool, Refusal> {
    let mut any = false;
    let mut bad = None;
    each_part(p, |part| {
        for r in part.ipc_objects() {
            match r {
                Ok(_) => any = true,
                Err(e) => bad = Some(e),
            }
        }
    });
    match bad {
        Some(e) => Err(refuse(image_path, format_args!("{e}"))),
        None => Ok(any),
    }
}

/// `f` on the image of every live process: the only one's, or each of a tree's in tree order,
/// the root's first. (In a tree, `p.image` is no process's yet: each process of the tree
/// makes its own plan later, in its own process.)
fn each_part(p: &Plan, mut f: impl FnMut(&Image)) {
    if p.ntree == 0 {
        if let Some(only) = p.image.as_ref() {
            f(only);
        }
        return;
    }
    for part in p.tree.iter().take(p.ntree).filter(|t| !t.rec.is_zombie() && t.meta_len > 0) {
        // SAFETY: the part's headers, mapped by the plan (and checked there), never unmapped
        // before the point of no return.
        let meta: &[u8] = unsafe { core::slice::from_raw_parts(part.meta as *const u8, part.meta_len) };
        let mut state = ProcessState::ZERO;
        if let Ok(image) = Image::parse(meta, p.file_len, &mut state) {
            f(&image);
        }
    }
}

/// In init, in its new IPC namespace: every object of every process, each once. `Err` refuses
/// the image, saying what could not be made.
pub fn make_all(image_path: &CStr, p: &Plan) -> Result<(), Refusal> {
    // Room for one message with its type, in a mapping of our own (gone when init execs nothing:
    // it is unmapped below).
    let room = (8 + MAX_MESSAGE as usize).next_multiple_of(4096);
    // SAFETY: a fresh private anonymous mapping overlaps nothing of the plan.
    let buf = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), room, rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE, rustix::mm::MapFlags::PRIVATE) }
        .map_err(|e| refuse(image_path, format_args!("cannot map {room} bytes to make its System V message queues again: {}", describe(e))))?;
    // SAFETY: the mapping just made, ours alone until it is unmapped below.
    let msgbuf = unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, room) };
    let mut outcome = Ok(());
    // Two rounds: first the segments whose records hold their bytes, then everything else. Two
    // processes of a tree may both record a segment, one with its bytes and one without (it
    // attached the segment: its region holds them); whichever came first would make it, so
    // the one with the bytes does, in whatever order the processes come.
    for with_bytes in [true, false] {
        each_part(p, |part| {
            for rec in part.ipc_objects().map_while(Result::ok) {
                // The namespace is new: an object there is one made already (two processes of
                // a tree recorded it, or two descriptors one queue).
                if outcome.is_err() || (rec.kind == KIND_SHM && !rec.body.is_empty()) != with_bytes || exists(&rec) {
                    continue;
                }
                let made = if rec.kind == KIND_MQ { make_queue(&rec) } else { make(&rec, msgbuf) };
                outcome = made.map_err(|(what, e)| refuse(image_path, format_args!("cannot make {} {} again ({what}): {}", noun(rec.kind), rec.id, describe(e))));
            }
        });
    }
    // SAFETY: our own mapping; `msgbuf` is not used past here.
    let _ = unsafe { rustix::mm::munmap(buf, room) };
    outcome
}

fn exists(rec: &IpcRecord) -> bool {
    if rec.kind == KIND_MQ {
        let mut buf = [0u8; MAX_MQ_NAME + 1];
        return queue_name(rec, &mut buf).is_some_and(|c| mq::open(c, OFlags::RDONLY.bits(), 0, None).is_ok());
    }
    match kind_of(rec.kind) {
        Kind::Shm => sv::shm_stat(rec.id).is_ok(),
        Kind::Sem => sv::sem_stat(rec.id).is_ok(),
        Kind::Msg => sv::msg_stat(rec.id).is_ok(),
    }
}

fn noun(kind: u32) -> &'static str {
    match kind {
        KIND_SHM => "System V shared memory segment",
        KIND_SEM => "System V semaphore set",
        KIND_MQ => "POSIX message queue of fd",
        _ => "System V message queue",
    }
}

fn kind_of(kind: u32) -> Kind {
    match kind {
        KIND_SHM => Kind::Shm,
        KIND_SEM => Kind::Sem,
        _ => Kind::Msg,
    }
}

/// One object under its ID, then its owner and mode, then what it held.
fn make(rec: &IpcRecord, msgbuf: &mut [u8]) -> Result<(), (&'static str, Errno)> {
    let kind = kind_of(rec.kind);
    sv::set_next_id(kind, rec.id).map_err(|e| ("choosing its ID", e))?;
    let flags = sv::IPC_CREAT | sv::IPC_EXCL | 0o600;
    let got = match kind {
        Kind::Shm => sv::shmget(rec.key, rec.size, flags),
        Kind::Sem => sv::semget(rec.key, rec.count as usize, flags),
        Kind::Msg => sv::msgget(rec.key, flags),
    }
    .map_err(|e| ("creating it", e))?;
    let _ = sv::set_next_id(kind, -1);
    if got != rec.id {
        return Err(("it got another ID", Errno::EXIST));
    }
    // The owner and mode first: a queue's byte limit must hold its messages.
    let perm = Perm { key: rec.key, uid: rec.uid, gid: rec.gid, mode: rec.mode };
    let qbytes = if kind == Kind::Msg { rec.size } else { 0 };
    if let Err(e) = sv::ipc_set(kind, rec.id, perm, qbytes) {
        say!("myrestart: {} {}: cannot give it its owner {}:{} and mode {:o} ({}); it is the restarting user's, mode 600", noun(rec.kind), rec.id, rec.uid, rec.gid, rec.mode, describe(e));
    }
    match kind {
        // The values as the checkpoint read them (two bytes each, one per semaphore).
        Kind::Sem => sv::sem_setall(rec.id, rec.body).map_err(|e| ("setting its values", e)),
        Kind::Msg => {
            for m in rec.messages() {
                let (mtype, text) = m.map_err(|_| ("a message", Errno::INVAL))?;
                sv::msgsnd(rec.id, mtype, text, msgbuf).map_err(|e| ("queuing its messages", e))?;
            }
            Ok(())
        }
        Kind::Shm if rec.body.is_empty() => Ok(()),
        // A segment no process attached: its bytes, through an attachment of init's own.
        Kind::Shm => {
            // SAFETY: attached where the kernel chooses (a free range), detached below.
            let at = unsafe { sv::shmat(rec.id, 0, 0) }.map_err(|e| ("attaching it to fill it", e))?;
            // SAFETY: the attachment covers the segment's `size` bytes, as many as the body
            // holds (checked when the record was read); nothing else maps there.
            unsafe { core::ptr::copy_nonoverlapping(rec.body.as_ptr(), at as *mut u8, rec.body.len()) };
            // SAFETY: init's own attachment, used no more.
            let _ = unsafe { sv::shmdt(at) };
            Ok(())
        }
    }
}

/// A POSIX queue's name, NUL-terminated in `buf`.
fn queue_name<'b>(rec: &IpcRecord, buf: &'b mut [u8; MAX_MQ_NAME + 1]) -> Option<&'b CStr> {
    let q = rec.mq_queue()?;
    buf.fill(0);
    buf[..q.name.len()].copy_from_slice(q.name);
    CStr::from_bytes_until_nul(&buf[..]).ok()
}

/// A POSIX queue, with its sizes, mode and messages (sent in the order they were taken, each
/// with its priority, which makes the same queue).
fn make_queue(rec: &IpcRecord) -> Result<(), (&'static str, Errno)> {
    let mut buf = [0u8; MAX_MQ_NAME + 1];
    let q = rec.mq_queue().ok_or(("its name", Errno::INVAL))?;
    let c = queue_name(rec, &mut buf).ok_or(("its name", Errno::INVAL))?;
    let flags = (OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NONBLOCK).bits();
    let sizes = Some((q.max_messages as i64, rec.size as i64));
    let fd = match mq::open(c, flags, 0o600, sizes) {
        // Sizes above this namespace's ceilings (which the checkpointed one may have had
        // raised): raised to them here, where init may.
        Err(Errno::INVAL) => {
            raise(c"/proc/sys/fs/mqueue/msg_max", q.max_messages);
            raise(c"/proc/sys/fs/mqueue/msgsize_max", rec.size);
            mq::open(c, flags, 0o600, sizes)
        }
        other => other,
    }
    .map_err(|e| ("creating it with its sizes", e))?;
    for m in rec.messages() {
        let (prio, text) = m.map_err(|_| ("a message", Errno::INVAL))?;
        mq::send(fd.as_fd(), text, prio as u32).map_err(|e| ("queuing its messages", e))?;
    }
    // Its mode, which the umask would have changed.
    let _ = rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(rec.mode));
    Ok(())
}

/// Raises the number in sysctl `path` to `to`, if it is below (and may be).
fn raise(path: &CStr, to: u64) {
    if ckpt_sigsafe::maps::read_number(path).is_some_and(|now| now < to) {
        let mut text = [0u8; 24];
        let mut w = ckpt_image::bytes::Writer::new(&mut text[..]);
        w.decimal(to);
        if let (Some(n), Ok(fd)) = (w.finish(), rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, rustix::fs::Mode::empty())) {
            let _ = rustix::io::write(&fd, &text[..n]);
        }
    }
}

/// Before the point of no return, in the process that becomes the program (once init has made
/// the queues in its IPC namespace): each POSIX queue it had open, opened by name with its
/// flags and parked, so that `files::install` puts it at its old number with the other
/// descriptors. One that cannot be opened refuses the restart; without an IPC namespace of the
/// restart's own (`--new-ids`, the fallback) a line says the descriptor stays closed.
pub fn open_queues(image_path: &CStr, p: &mut Plan) -> Result<(), Refusal> {
    let Some(image) = p.image else { return Ok(()) };
    for rec in image.ipc_objects().map_while(Result::ok).filter(|r| r.kind == KIND_MQ) {
        let mut buf = [0u8; MAX_MQ_NAME + 1];
        let (Some(q), Some(c)) = (rec.mq_queue(), queue_name(&rec, &mut buf)) else { continue };
        if !p.own_ipc {
            say!("myrestart: fd {} (POSIX message queue /{}) is not restored without an IPC namespace of the restart's own; it stays closed", rec.id, Lossy(q.name));
            continue;
        }
        let bad = |e: Errno| refuse(image_path, format_args!("fd {} (POSIX message queue /{}): cannot open it again: {}", rec.id, Lossy(q.name), describe(e)));
        let flags = q.flags & (OFlags::ACCMODE | OFlags::NONBLOCK).bits();
        let src = mq::open(c, flags | OFlags::CLOEXEC.bits(), 0, None).and_then(|fd| park(fd, p.fd_base)).map_err(bad)?;
        if p.nfds == p.fds.len() {
            return Err(refuse(image_path, format_args!("more than {} descriptors to restore", p.fds.len())));
        }
        p.fds[p.nfds] = FdSlot { target: rec.id, src, cloexec: q.flags & MQ_CLOEXEC != 0 };
        p.nfds += 1;
    }
    Ok(())
}

/// Before the point of no return, in the process that becomes the program: each System V
/// segment that [`attach`] will put over one of its regions is attached once here, as it will
/// be there (read-only or not), and detached, so that a segment the process may not attach
/// refuses the restart instead of leaving the region memory of its own after it.
pub fn check_attach(image_path: &CStr, p: &Plan) -> Result<(), Refusal> {
    let Some(image) = p.image else { return Ok(()) };
    if !p.own_ipc {
        return Ok(());
    }
    for r in (0..image.region_count()).filter_map(|i| image.region(i).ok()) {
        let Some((id, _, flags)) = segment_of(&r) else { continue };
        // Writable, to put the region's bytes in (when it has readable ones), then as the
        // region maps it.
        let copy = (r.record.prot & 1 != 0).then_some(0);
        for f in copy.into_iter().chain([flags & !sv::SHM_REMAP]) {
            // SAFETY: attached where the kernel chooses (a free range), detached at once.
            match unsafe { sv::shmat(id, 0, f) } {
                // SAFETY: the attachment just made, used by nothing.
                Ok(at) => drop(unsafe { sv::shmdt(at) }),
                Err(e) => return Err(refuse(image_path, format_args!("System V segment {id} at {:#x}: cannot attach it again: {}", r.record.start, describe(e)))),
            }
        }
    }
    Ok(())
}

/// Region `r`'s System V segment, made again by init, when the region maps all of it: its ID,
/// its size, and the `shmat` flags that put it over the region. `None` for any other region;
/// [`attach`] says why a `/SYSV` region is not one.
fn segment_of(r: &RegionRef) -> Option<(i32, u64, u32)> {
    let rec = r.record;
    if !r.name.starts_with(b"/SYSV") {
        return None;
    }
    let id = rec.inode as i32;
    let (_, size, _) = sv::shm_stat(id).ok()?;
    if rec.file_offset != 0 || rec.size() != ckpt_image::page_up(size) {
        return None;
    }
    let mut flags = sv::SHM_REMAP;
    if rec.prot & 2 == 0 {
        flags |= sv::SHM_RDONLY;
    }
    if rec.prot & 4 != 0 {
        flags |= sv::SHM_EXEC;
    }
    Some((id, size, flags))
}

/// After the point of no return: region `r`, a System V segment made again (`make_all`), now
/// holding the segment's bytes in a memfd, is replaced by the segment itself, attached at the
/// same address with those bytes. A region that is not the whole segment (part of it unmapped,
/// or the segment not made again) keeps its memfd, and a line says that `shmat` by ID no longer
/// shares its pages.
pub fn attach(p: &Plan, r: &RegionRef) {
    let rec = r.record;
    if !p.own_ipc || !r.name.starts_with(b"/SYSV") {
        return;
    }
    let id = rec.inode as i32;
    let Some((_, size, flags)) = segment_of(r) else {
        return match sv::shm_stat(id) {
            Err(_) => say!("myrestart: System V segment {id} at {:#x} was not recorded: it stays memory of its own, not shared with `shmat({id})`", rec.start),
            Ok(_) => say!("myrestart: System V segment {id} at {:#x} is mapped in part: it stays memory of its own, not shared with `shmat({id})`", rec.start),
        };
    };
    let (start, len) = (rec.start as usize, size as usize);
    // The bytes: those of the region, put into the segment first (every process that maps it
    // holds the same ones; none runs before all are restored).
    if rec.prot & 1 != 0 {
        // SAFETY: attached where the kernel chooses (a free range), detached below.
        match unsafe { sv::shmat(id, 0, 0) } {
            Ok(tmp) => {
                // SAFETY: `start..start + len` is the region just mapped and filled (readable),
                // `tmp..tmp + len` the segment just attached; they do not overlap.
                unsafe { core::ptr::copy_nonoverlapping(start as *const u8, tmp as *mut u8, len) };
                // SAFETY: the temporary attachment, used no more.
                let _ = unsafe { sv::shmdt(tmp) };
            }
            Err(e) => return say!("myrestart: System V segment {id}: cannot attach it ({}); it stays memory of its own", describe(e)),
        }
    }
    // SAFETY: replaces the region's memfd mapping (the same bytes) with the segment, exactly
    // over the region's range (its size is the segment's, rounded to pages).
    match unsafe { sv::shmat(id, start, flags) } {
        Ok(_) => {
            if rec.prot & 3 == 0 {
                // SAFETY: the region's own range, given back the protection it had.
                let _ = unsafe { rustix::mm::mprotect(start as *mut _, rec.size() as usize, rustix::mm::MprotectFlags::empty()) };
            }
        }
        Err(e) => say!("myrestart: System V segment {id}: cannot attach it at {start:#x} ({}); it stays memory of its own", describe(e)),
    }
}
