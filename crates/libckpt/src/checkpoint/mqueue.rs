//! Records the POSIX message queues the process has open (`NT_CKPT_IPC`, after the System V
//! objects): per descriptor, the queue's name, the descriptor's flags, the queue's sizes and
//! mode, and its messages with their priorities. The kernel has no way to read a queue without
//! taking its messages, so each queue is emptied (through a descriptor of our own, opened by
//! name, non-blocking) into the record, in the order `mq_receive` gives them (highest priority
//! first, oldest first within one), and filled again at once in that same order, which gives
//! the same queue back. The process is stopped meanwhile (and in a tree, every process of it);
//! a process outside the checkpoint that reads the queue at that instant may find it empty.

use super::failure::Failure;
use super::scratch::Parts;
use ckpt_image::bytes::Writer;
use ckpt_image::ipc::{begin_mq, end_queue, write_message, IpcRecord, MqQueue, KIND_MQ, MAX_MQ_NAME, MQ_CLOEXEC};
use ckpt_sigsafe::mqueue;
use ckpt_sigsafe::say;
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd};
use rustix::fs::{Mode, OFlags};

/// Appends the queues' records to `parts.ipc`.
pub fn capture(parts: &mut Parts) -> Result<(), Failure> {
    let dir = rustix::fs::open(c"/proc/self/fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Failure::new("listing /proc/self/fd", e))?;
    let mut dirbuf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut raw = rustix::fs::RawDir::new(&dir, &mut dirbuf);
    while let Some(entry) = raw.next() {
        let entry = entry.map_err(|e| Failure::new("listing /proc/self/fd", e))?;
        let Some(fd) = super::procfs::parse_dec(entry.file_name().to_bytes()) else { continue };
        let fd = fd as i32;
        if fd == dir.as_raw_fd() {
            continue;
        }
        // SAFETY: `fd` is open in this process (listed, and nothing else runs to close it);
        // only borrowed for these queries.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        if !mqueue::is_queue(bfd) {
            continue;
        }
        let mut path = [0u8; 300];
        let n = rustix::fs::readlinkat_raw(&dir, entry.file_name(), &mut path[..]).map_err(|e| Failure::new("reading a message queue's name", e))?.min(path.len());
        let used = parts.ipc_len;
        let n = one(&mut parts.ipc[used..], parts.copybuf, fd, bfd, &path[..n])?;
        parts.ipc_len += n;
    }
    Ok(())
}

/// The record of queue descriptor `fd` (named `path`, "/NAME") into `out`: its length. `buf` is
/// room for one message.
fn one(out: &mut [u8], buf: &mut [u8], fd: i32, bfd: BorrowedFd, path: &[u8]) -> Result<usize, Failure> {
    if path.ends_with(b" (deleted)") {
        // Removed from its namespace (`mq_unlink`): nothing can open it by name, here or later.
        say!("ckpt: fd {fd} is a POSIX message queue that was unlinked ({}); a restarted process will not have it", ckpt_sigsafe::out::Lossy(path));
        return Ok(0);
    }
    let name = path.strip_prefix(b"/").unwrap_or(path);
    let attr = mqueue::attr(bfd).map_err(|e| Failure::new("reading a message queue's attributes", e))?;
    let st = rustix::fs::fstat(bfd).map_err(|e| Failure::new("reading a message queue's owner", e))?;
    let fl = rustix::fs::fcntl_getfl(bfd).map(|f| f.bits()).unwrap_or(0) & (OFlags::ACCMODE | OFlags::NONBLOCK).bits();
    let cloexec = rustix::io::fcntl_getfd(bfd).is_ok_and(|f| f.contains(rustix::io::FdFlags::CLOEXEC));
    if name.is_empty() || name.len() > MAX_MQ_NAME {
        return Err(Failure::plain("a message queue with a name too long to record"));
    }
    let q = MqQueue { name, flags: fl | if cloexec { MQ_CLOEXEC } else { 0 }, max_messages: attr.max_messages as u64 };
    let head = IpcRecord { kind: KIND_MQ, id: fd, key: 0, mode: st.st_mode & 0o777, uid: st.st_uid, gid: st.st_gid, size: attr.message_size as u64, count: 0, body: &[] };
    let mut w = Writer::new(out);
    let start = begin_mq(&mut w, &head, &q);
    let size = attr.message_size as usize;
    let need = attr.current as usize * (16 + size.next_multiple_of(8));
    let mut cname = [0u8; MAX_MQ_NAME + 1];
    cname[..name.len()].copy_from_slice(name);
    let own = core::ffi::CStr::from_bytes_until_nul(&cname).ok().and_then(|c| mqueue::open(c, (OFlags::RDWR | OFlags::NONBLOCK).bits(), 0, None).ok());
    let mut count = 0u32;
    match &own {
        _ if attr.current == 0 => {}
        Some(own) if need <= w.room() && size <= buf.len() => {
            while let Ok((len, prio)) = mqueue::receive(own.as_fd(), &mut buf[..size]) {
                write_message(&mut w, prio as i64, &buf[..len]);
                count += 1;
            }
        }
        _ => say!("ckpt: POSIX message queue /{} (fd {fd}): its {} messages cannot be read; a restarted process will find it empty", ckpt_sigsafe::out::Lossy(name), attr.current),
    }
    end_queue(&mut w, start, count);
    let len = w.finish().ok_or(Failure::plain("too many message queue messages to record"))?;
    // The messages back, in the order they came out.
    if let (Some(own), true) = (own, count > 0) {
        refill(&out[..len], name, fd, own.as_fd());
    }
    Ok(len)
}

/// Sends the messages of the record just written back into its queue, through `own`.
fn refill(rec: &[u8], name: &[u8], fd: i32, own: BorrowedFd) {
    let mut lost = 0;
    if let Some(Ok(r)) = ckpt_image::ipc::records(rec).next() {
        for (prio, msg) in r.messages().map_while(Result::ok) {
            if mqueue::send(own, msg, prio as u32).is_err() {
                lost += 1;
            }
        }
    }
    if lost > 0 {
        say!("ckpt: POSIX message queue /{} (fd {fd}): {lost} messages could not be put back (another process filled it meanwhile)", ckpt_sigsafe::out::Lossy(name));
    }
}
