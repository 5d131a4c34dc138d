//! Records the System V IPC objects of the process (`NT_CKPT_IPC`): those whose IDs the program
//! got from `shmget`, `semget` or `msgget` (`crate::ipcids`) and the segments it has attached,
//! each with its key, owner and mode; a semaphore set with its values, a message queue with
//! every message (type and text, in queue order). Nothing is taken from the objects: values are
//! read with `GETALL` and messages copied with `MSG_COPY`, since the program goes on. The pages
//! of a segment this process attaches are not here: they are the region that maps it. A
//! segment it does not attach has its bytes in its record, whoever else attaches it (see
//! [`segment`]); only one too large for the records, and attached by some process, has its
//! head alone (its bytes are then those of a tree process's region, or zeros).
//!
//! # Restrictions
//! Runs in the checkpoint (the signal handler's writer, the program stopped): no allocation, no
//! lock, no libc; raw system calls only, into the scratch buffers it is given.

use super::failure::Failure;
use super::scratch::Parts;
use crate::ipcids::{KIND_MSG, KIND_SEM, KIND_SHM};
use ckpt_image::bytes::Writer;
use ckpt_image::ipc::{begin_queue, end_queue, write_message, IpcRecord, IPC_HEAD_SIZE};
use ckpt_sigsafe::say;
use ckpt_sigsafe::sysvipc as ipc;
use rustix::io::Errno;

/// Fills `parts.ipc` (`parts.ipc_len` 0 when the process used no object).
pub fn capture(parts: &mut Parts) -> Result<(), Failure> {
    // The headers' room is free until the writer encodes them.
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", parts.meta).map_err(|e| Failure::new("reading /proc/self/maps", e))?;
    let maps = &parts.meta[..n];
    let mut w = Writer::new(parts.ipc);
    let buf = &mut parts.copybuf[..];
    let mut outcome = Ok(());
    crate::ipcids::each(|kind, id| {
        if outcome.is_ok() {
            outcome = record(&mut w, buf, maps, kind, id);
        }
    });
    outcome?;
    if crate::ipcids::OVERFLOW.load(core::sync::atomic::Ordering::Relaxed) {
        say!("ckpt: the program got more than {} System V IPC IDs; those past them are not recorded (unless attached), and a restarted process will not have them", ckpt_image::limits::MAX_IPC_OBJECTS);
    }
    let attached = ckpt_sigsafe::maps::entries(maps).filter(|e| e.name.starts_with(b"/SYSV")).enumerate();
    for (i, e) in attached {
        let id = e.inode as i32;
        let mut known = false;
        crate::ipcids::each(|kind, other| known |= kind == KIND_SHM && other == id);
        let earlier = ckpt_sigsafe::maps::entries(maps).filter(|o| o.name.starts_with(b"/SYSV")).take(i).any(|o| o.inode == e.inode);
        if !known && !earlier {
            record(&mut w, buf, maps, KIND_SHM, id)?;
        }
    }
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    crate::ipcids::each_undo(pid, |id| {
        if ipc::sem_stat(id).is_ok() {
            say!("ckpt: semaphore set {id} was changed with SEM_UNDO: a restarted process will not undo those changes when it exits");
        }
    });
    parts.ipc_len = w.finish().ok_or(Failure::plain("too many System V IPC objects or messages to record"))?;
    Ok(())
}

/// Appends the record of object `id` of `kind`, if it still exists. `maps` is this process's
/// `/proc/self/maps`; `buf` is room for one message.
fn record(w: &mut Writer, buf: &mut [u8], maps: &[u8], kind: u32, id: i32) -> Result<(), Failure> {
    let gone = |e: Errno| e == Errno::INVAL || e == Errno::IDRM;
    let unreadable = |what: &str, e: Errno| {
        say!("ckpt: System V {what} {id} cannot be read ({}); a restarted process will not have it", ckpt_sigsafe::errno::describe(e));
    };
    match kind {
        KIND_SHM => match ipc::shm_stat(id) {
            Ok((p, size, nattch)) => segment(w, maps, id, p, size, nattch)?,
            Err(e) if gone(e) => {}
            Err(e) => unreadable("shared memory segment", e),
        },
        KIND_SEM => match ipc::sem_stat(id).and_then(|(p, nsems)| Ok((p, nsems, ipc::sem_getall(id, nsems, buf)?))) {
            Ok((p, nsems, len)) => head(kind, id, p, 0, nsems as u32, &buf[..len]).write(w),
            Err(e) if gone(e) => {}
            Err(e) => unreadable("semaphore set", e),
        },
        KIND_MSG => match ipc::msg_stat(id) {
            Ok((p, qnum, qbytes)) => queue(w, buf, id, p, qnum, qbytes)?,
            Err(e) if gone(e) => {}
            Err(e) => unreadable("message queue", e),
        },
        _ => {}
    }
    Ok(())
}

/// A segment's record. One this process attaches (a `/SYSV` region with its ID as inode) is
/// the head alone: the region holds its pages. Any other holds the segment's bytes, read
/// through an attachment of our own (read-only, detached at once), whatever its attach count
/// `nattch` says. That count cannot tell whether some process's region holds the pages: in a
/// tree, every process checkpoints at once, and another one reading the same segment here
/// holds it attached for that instant; a process outside the checkpoint that attaches it
/// takes its region away with it. A segment too large for the records that some process
/// attaches has the head alone, as before; one that none attaches fails the checkpoint.
fn segment(w: &mut Writer, maps: &[u8], id: i32, p: ipc::Perm, size: u64, nattch: u64) -> Result<(), Failure> {
    let mine = ckpt_sigsafe::maps::entries(maps).any(|e| e.name.starts_with(b"/SYSV") && e.inode as i32 == id);
    let fits = size as usize <= w.room().saturating_sub(IPC_HEAD_SIZE);
    if mine || (!fits && nattch > 0) {
        head(KIND_SHM, id, p, size, 0, &[]).write(w);
        return Ok(());
    }
    if !fits {
        return Err(Failure::plain("a System V shared memory segment that no process attaches is too large to record its contents (4 MiB of IPC records at most)"));
    }
    // SAFETY: attached where the kernel chooses (a free range), read, and detached below.
    match unsafe { ipc::shmat(id, 0, ipc::SHM_RDONLY) } {
        Ok(at) => {
            // SAFETY: the attachment just made covers `size` readable bytes, and nothing else
            // unmaps it before the detach below.
            let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, size as usize) };
            head(KIND_SHM, id, p, size, 0, bytes).write(w);
            // SAFETY: our own attachment, used no more.
            let _ = unsafe { ipc::shmdt(at) };
        }
        Err(e) => {
            say!("ckpt: System V shared memory segment {id} cannot be read ({}); a restarted process will find it filled with zeros", ckpt_sigsafe::errno::describe(e));
            head(KIND_SHM, id, p, size, 0, &[]).write(w);
        }
    }
    Ok(())
}

fn head(kind: u32, id: i32, p: ipc::Perm, size: u64, count: u32, body: &[u8]) -> IpcRecord<'_> {
    IpcRecord { kind, id, key: p.key, mode: p.mode, uid: p.uid, gid: p.gid, size, count, body }
}

/// A queue's record: its head, then each message copied in place after it.
fn queue(w: &mut Writer, buf: &mut [u8], id: i32, p: ipc::Perm, qnum: usize, qbytes: u64) -> Result<(), Failure> {
    let start = begin_queue(w, &head(KIND_MSG, id, p, qbytes, 0, &[]));
    let mut count = 0u32;
    for i in 0..qnum {
        match ipc::msg_copy(id, i, buf) {
            Ok((mtype, len)) => {
                write_message(w, mtype, &buf[8..8 + len]);
                count += 1;
            }
            // The queue changed under us (another process took a message): what is left.
            Err(Errno::NOMSG) => break,
            Err(Errno::NOSYS) => return Err(Failure::plain("copying a System V message needs a kernel built with CONFIG_CHECKPOINT_RESTORE")),
            Err(e) => return Err(Failure::new("copying a System V message", e)),
        }
    }
    end_queue(w, start, count);
    Ok(())
}
