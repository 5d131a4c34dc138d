//! Records every open descriptor: what it is, how it was opened, where its offset is, and which
//! descriptors share one open file description. Signal-safe like the rest of `checkpoint`.

use super::scratch::Parts;
use super::failure::Failure;
use ckpt_image::bytes::Writer;
use ckpt_image::epoll::EpollRecord;
use ckpt_image::fds::{FdKind, FdRecord};
use ckpt_image::inotify::WatchRecord;
use ckpt_image::limits::MAX_FDS;
use ckpt_image::timerfd::{TimerFdRecord, TFD_TIMER_ABSTIME};
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::{say, sys};
use core::mem::MaybeUninit;
use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::fs::{FileType, Mode, OFlags, SeekFrom};

use ckpt_sigsafe::proctext::DELETED_SUFFIX;

fn is_terminal(path: &[u8]) -> bool {
    path.starts_with(b"/dev/pts/") || path.starts_with(b"/dev/tty") || path == b"/dev/console"
}

/// Decides how restart brings a descriptor back.
fn classify(fd: i32, ft: FileType, nlink: u64, path: &[u8]) -> (FdKind, &'static str) {
    let std = fd <= 2;
    match ft {
        FileType::RegularFile if path.starts_with(b"/memfd:") && path.ends_with(DELETED_SUFFIX) => (FdKind::MemFd, ""),
        FileType::RegularFile if nlink == 0 || path.ends_with(DELETED_SUFFIX) => (FdKind::Deleted, ""),
        FileType::RegularFile => (FdKind::File, ""),
        FileType::Directory => (FdKind::Directory, ""),
        FileType::CharacterDevice if std && is_terminal(path) => (FdKind::Inherit, ""),
        FileType::CharacterDevice | FileType::BlockDevice => (FdKind::Device, ""),
        FileType::Fifo | FileType::Socket if std => (FdKind::Inherit, ""),
        FileType::Fifo => (FdKind::Pipe, ""),
        FileType::Socket => (FdKind::Socket, ""),
        _ if std => (FdKind::Inherit, ""),
        _ if path == b"anon_inode:[eventfd]" => (FdKind::EventFd, ""),
        _ if path == b"anon_inode:[eventpoll]" => (FdKind::Epoll, ""),
        _ if path == b"anon_inode:[timerfd]" => (FdKind::TimerFd, ""),
        _ if path == b"anon_inode:[signalfd]" => (FdKind::SignalFd, ""),
        _ if path == b"anon_inode:inotify" => (FdKind::Inotify, ""),
        _ => (FdKind::Unsupported, "this kind of descriptor is not supported"),
    }
}

/// Refused past [`MAX_FDS`] (one image's limit, which the restart takes as well).
const TOO_MANY_FDS: &str = "the program has more than 65536 open descriptors, more than one image holds";
const _: () = assert!(MAX_FDS == 65536, "TOO_MANY_FDS names the limit");
/// Refused past the pipes whose bytes one checkpoint copies (see `scratch`).
const TOO_MANY_PIPES: &str = "the program has more than 4096 pipes open for reading, more than one checkpoint copies";
const _: () = assert!(super::scratch::MAX_PIPES == 4096, "TOO_MANY_PIPES names the limit");

/// Where one checkpoint's descriptor records go (the notes under construction), and what of
/// the pipe-bytes room and the pipe table they have used so far.
struct Out<'a> {
    fds: Writer<'a>,
    epoll: Writer<'a>,
    sockets: Writer<'a>,
    timerfds: Writer<'a>,
    watches: Writer<'a>,
    locks: Writer<'a>,
    nlocks: usize,
    ptys: super::pty::PtyOut<'a>,
    npipes: usize,
    pipe_used: usize,
    /// TCP connections drained before the descriptors are recorded (see `tcpdrain`).
    drains: super::tcpdrain::Drains,
}

/// The scratch buffers recording a descriptor uses: the descriptors seen (by description),
/// the pipes whose bytes are copied and those bytes, and room to read /proc text.
struct Bufs<'a> {
    first_fds: &'a mut [i32],
    seen: usize,
    pipes: &'a mut [u64],
    pipe_data: &'a mut [u8],
    text: &'a mut [u8],
    meta: &'a mut [u8],
    pathbuf: &'a mut [u8],
    /// The inode numbers of the files anyone holds a lock on, sorted; `None`: not known (every
    /// file's locks are looked for).
    locked: Option<&'a [u64]>,
}

/// What this process is while its descriptors are recorded: its PID (for `kcmp`), whether it is
/// part of a tree checkpoint, and the sock_diag socket that describes unix sockets.
struct Context {
    pid: u32,
    tree: bool,
    diag: Option<rustix::fd::OwnedFd>,
}

/// Fills `parts.fds` with the `NT_CKPT_FDS` records, and names on stderr each descriptor that
/// a restart will not bring back. The descriptors in `skip` are the checkpoint's own. In a tree
/// checkpoint (`tree`), a pipe's other end may be in another process of the tree: the restart
/// judges that, across the tree.
///
/// `drained`: a tree's table of connections its root drained (`treedrain`), whose frames for
/// this process's sockets are their saved queues.
pub fn capture(parts: &mut Parts, skip: &[i32], tree: bool, drained: Option<&super::treedrain::DrainTable>) -> Result<(), Failure> {
    let dir = rustix::fs::open(c"/proc/self/fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Failure::new("listing /proc/self/fd", e))?;
    let dir_fd = dir.as_raw_fd();
    let mut dirbuf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut raw = rustix::fs::RawDir::new(&dir, &mut dirbuf);
    let mut out = Out {
        fds: Writer::new(parts.fds),
        epoll: Writer::new(parts.epoll),
        sockets: Writer::new(parts.sockets),
        timerfds: Writer::new(parts.timerfds),
        watches: Writer::new(parts.inotify),
        locks: Writer::new(parts.locks),
        nlocks: 0,
        ptys: super::pty::PtyOut { w: Writer::new(parts.ptys), master: false },
        npipes: 0,
        pipe_used: 0,
        drains: super::tcpdrain::Drains::none(),
    };
    let mut bufs = Bufs {
        first_fds: parts.fd_list,
        seen: 0,
        pipes: parts.pipes,
        pipe_data: parts.pipe_data,
        text: parts.text,
        meta: parts.meta,
        pathbuf: parts.pathbuf,
        locked: None,
    };
    // With few descriptors, each file's fdinfo is cheaper than `/proc/locks` (see
    // [`locked_files`]).
    if more_descriptors_than(FDINFO_UP_TO) {
        bufs.locked = locked_files(parts.locked, bufs.meta);
    }
    // Opened before the listing, so that it shows in it and is skipped like the listing's own.
    let cx = Context { pid: rustix::process::getpid().as_raw_nonzero().get() as u32, tree, diag: ckpt_sigsafe::sockets::open_diag().ok() };
    let diag_fd = cx.diag.as_ref().map_or(-1, |d| d.as_raw_fd());
    // libckpt's own report page: not the program's (see `report`).
    let report_fd = super::report::own_fd();
    // Connections whose unsent bytes only a drain can read are drained first, and given back
    // once every descriptor is recorded, whatever happened meanwhile.
    let adopted = drained.into_iter().flat_map(|d| d.frames_of(cx.pid)).try_for_each(|(ino, frame)| out.drains.adopt(ino, frame, bufs.pipe_data, &mut out.pipe_used));
    let recorded = adopted.and_then(|()| out.drains.drain_all(bufs.pipe_data, &mut out.pipe_used)).and_then(|()| {
        let mut recorded = 0usize;
        while let Some(entry) = raw.next() {
            let entry = entry.map_err(|e| Failure::new("listing /proc/self/fd", e))?;
            let name = entry.file_name();
            let Some(fd) = super::procfs::parse_dec(name.to_bytes()) else { continue };
            let fd = fd as i32;
            if fd == dir_fd || fd == diag_fd || fd == super::track::own_fd() || fd == report_fd || skip.contains(&fd) {
                continue;
            }
            if recorded == MAX_FDS {
                return Err(Failure::plain(TOO_MANY_FDS));
            }
            recorded += 1;
            record_one(&cx, &dir, name, fd, &mut out, &mut bufs)?;
        }
        Ok(())
    });
    out.drains.refill(bufs.pipe_data);
    recorded?;
    parts.fds_len = out.fds.finish().ok_or(Failure::plain("too many open descriptors to record"))?;
    parts.epoll_len = out.epoll.finish().ok_or(Failure::plain("too many epoll registrations to record"))?;
    parts.sockets_len = out.sockets.finish().ok_or(Failure::plain("too many sockets to record"))?;
    parts.timerfds_len = out.timerfds.finish().ok_or(Failure::plain("too many timerfds to record"))?;
    parts.inotify_len = out.watches.finish().ok_or(Failure::plain("too many inotify watches to record"))?;
    parts.locks_len = out.locks.finish().ok_or(Failure::plain(TOO_MANY_LOCKS))?;
    parts.ptys_master = out.ptys.master;
    parts.ptys_len = out.ptys.w.finish().ok_or(Failure::plain("too many descriptors on pseudo-terminals to record"))?;
    super::sockets::pair_up(&mut parts.sockets[..parts.sockets_len], tree, parts.text);
    // A pipe end whose other end is outside the process (often one it merely inherited) is
    // named at restart, where it comes back with that end closed: nothing is wrong yet now.
    Ok(())
}

/// Records descriptor `fd` (`name` in the listing `dir`): what it is, how it was opened, where
/// its offset is, which earlier descriptor shares its open file description, and what its kind
/// keeps (see [`kind_state`]); names it on stderr if a restart cannot bring it back.
fn record_one(cx: &Context, dir: &rustix::fd::OwnedFd, name: &core::ffi::CStr, fd: i32, out: &mut Out, bufs: &mut Bufs) -> Result<(), Failure> {
    let mut target = [0u8; 1024];
    let n = rustix::fs::readlinkat_raw(dir, name, &mut target[..]).unwrap_or(0).min(target.len());
    let path = &target[..n];
    // SAFETY: `fd` is open in this process (it is listed in /proc/self/fd, and nothing else
    // runs to close it); it is only borrowed for these queries.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(st) = rustix::fs::fstat(bfd) else { return Ok(()) };
    let ft = FileType::from_raw_mode(st.st_mode);
    let (mut kind, mut why) = classify(fd, ft, st.st_nlink, path);
    // A POSIX message queue is recorded with the IPC objects (`mqueue`); here it stays a
    // descriptor an older restart leaves closed.
    let queue = ckpt_sigsafe::mqueue::is_queue(bfd);
    if queue {
        (kind, why) = (FdKind::Unsupported, "a POSIX message queue");
    }
    // In a tree, a standard descriptor may be a pipe to another process of the tree (a shell
    // pipeline, a `$(...)`): saved as a pipe, bytes and all; the restart decides, for the tree
    // as a whole, whether it leads outside (and is then myrestart's own).
    if cx.tree && kind == FdKind::Inherit && ft == FileType::Fifo && path.starts_with(b"pipe:[") {
        kind = FdKind::Pipe;
    }
    let same_as = earlier_same_file(bufs.first_fds, &mut bufs.seen, cx.pid, fd);
    let offset = match kind {
        FdKind::File | FdKind::Deleted | FdKind::Directory | FdKind::Device | FdKind::MemFd => rustix::fs::seek(bfd, SeekFrom::Current(0)).unwrap_or(0),
        FdKind::EventFd => eventfd_state(fd, bufs.text).0,
        _ => 0,
    };
    let open_flags = rustix::fs::fcntl_getfl(bfd).map(|f| f.bits()).unwrap_or(0);
    if ft == FileType::CharacterDevice && super::pty::is_pty(st.st_rdev) {
        // Scratch for its queued bytes: the room past the bytes kept so far, not kept itself.
        super::pty::record(fd, bfd, st.st_rdev, same_as, &mut out.ptys, &mut bufs.pipe_data[out.pipe_used..]);
    }
    let kept = kind_state(cx, fd, bfd, &st, kind, same_as, open_flags, out, bufs)?;
    if let Err(reason) = kept {
        (kind, why) = (FdKind::Unsupported, reason);
    }
    let Kept { size, blob_offset, blob_len, aux } = kept.unwrap_or_default();
    if kind == FdKind::Epoll && same_as < 0 {
        record_epoll(cx.pid, fd, bufs.meta, &mut out.epoll)?;
    }
    if same_as < 0 && bufs.locked.is_none_or(|l| l.binary_search(&st.st_ino).is_ok()) {
        record_locks(fd, kind, path, bufs.meta, out)?;
    }
    if kind == FdKind::Unsupported && !queue {
        say!("ckpt: fd {fd} ({}) cannot be saved ({why}); a restarted process will not have it", Lossy(path));
    }
    let mut rec = FdRecord {
        fd,
        kind,
        open_flags,
        fd_flags: rustix::io::fcntl_getfd(bfd).map(|f| f.bits()).unwrap_or(0),
        offset,
        same_as,
        mode: st.st_mode,
        dev: st.st_dev,
        ino: st.st_ino,
        size,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as i64,
        blob_offset,
        blob_len: if matches!(kind, FdKind::Deleted | FdKind::MemFd) { st.st_size as u64 } else { blob_len },
        blob_hash: 0,
        aux,
        // Who owns the file, and when it was made: a restart that finds another file at its
        // path (a new one may even have its inode number) knows it is not this one.
        uid: st.st_uid,
        birth: if matches!(kind, FdKind::File | FdKind::Directory | FdKind::Device) { ckpt_sigsafe::fileid::birth_time(bfd) } else { None },
    };
    if rec.is_std_log() {
        rec.aux = log_tail_hash(fd, rec.size, bufs.text);
    }
    rec.write(&mut out.fds, path);
    Ok(())
}

/// What a descriptor's record keeps beside its kind: a size (a pipe's capacity, a file's
/// length, an eventfd's flags), where its saved bytes are in the image, and `aux` (see
/// `FdRecord`).
#[derive(Default)]
struct Kept {
    size: u64,
    blob_offset: u64,
    blob_len: u64,
    aux: u64,
}

/// What descriptor `fd` of kind `kind` keeps: for the first read end of each pipe the bytes in
/// it, copied (tee) without taking them from the program, and a socket's queued bytes likewise;
/// a socket's, timerfd's or inotify descriptor's own record (written to `out`), an eventfd's
/// count, a signalfd's mask, a memfd's seals. `Ok(Err(reason))` when the descriptor cannot be
/// saved after all (it is recorded as unsupported).
#[allow(clippy::too_many_arguments)]
fn kind_state(
    cx: &Context,
    fd: i32,
    bfd: BorrowedFd,
    st: &rustix::fs::Stat,
    kind: FdKind,
    same_as: i32,
    open_flags: u32,
    out: &mut Out,
    bufs: &mut Bufs,
) -> Result<Result<Kept, &'static str>, Failure> {
    let plain = |size: u64| Ok(Ok(Kept { size, ..Kept::default() }));
    match kind {
        FdKind::Pipe => {
            let size = rustix::pipe::fcntl_getpipe_size(bfd).unwrap_or(0) as u64;
            let reader = open_flags & 3 == 0;
            let first = !bufs.pipes[..out.npipes].contains(&st.st_ino);
            if !(reader && first) {
                return plain(size);
            }
            if out.npipes == bufs.pipes.len() {
                return Err(Failure::plain(TOO_MANY_PIPES));
            }
            bufs.pipes[out.npipes] = st.st_ino;
            out.npipes += 1;
            let (at, len) = copy_pipe(bfd, size as usize, bufs.pipe_data, &mut out.pipe_used)?;
            Ok(Ok(Kept { size, blob_offset: at, blob_len: len, aux: 0 }))
        }
        FdKind::Socket if same_as < 0 => match super::sockets::describe(fd, bfd, st.st_ino, &cx.diag, bufs.text) {
            Ok(rec) => {
                rec.write(&mut out.sockets);
                if super::tcp::is_connection(&rec) {
                    let drained = out.drains.received(st.st_ino);
                    let (at, len, aux) = super::tcp::copy_queues(bfd, &rec, bufs.pipe_data, &mut out.pipe_used, drained)?;
                    return Ok(Ok(Kept { size: 0, blob_offset: at, blob_len: len, aux }));
                }
                let (at, len, passed_fds) = super::sockets::copy_queue(bfd, &rec, bufs.pipe_data, &mut out.pipe_used)?;
                let aux = super::sockets::unsaved_bytes(fd, &rec) | if passed_fds { ckpt_image::fds::LOST_PASSED_FDS } else { 0 };
                Ok(Ok(Kept { size: 0, blob_offset: at, blob_len: len, aux }))
            }
            Err(reason) => Ok(Err(reason)),
        },
        FdKind::EventFd => plain(eventfd_state(fd, bufs.text).1 as u64),
        FdKind::TimerFd if same_as < 0 => match timerfd_state(fd, bfd, bufs.text) {
            Some(t) => {
                t.write(&mut out.timerfds);
                plain(0)
            }
            None => Ok(Err("its timer settings could not be read")),
        },
        FdKind::SignalFd => Ok(Ok(Kept { aux: signalfd_mask(fd, bufs.text), ..Kept::default() })),
        FdKind::Inotify if same_as < 0 => {
            // A watch's path is known only from the call that added it, which libckpt sees
            // when it runs from the program's start; the kernel keeps the inode alone.
            if crate::config::get().attached && fdinfo(fd, bufs.meta).is_ok_and(|t| ckpt_sigsafe::proctext::inotify_watches(t).next().is_some()) {
                return Err(Failure::plain("the program has inotify watches, whose paths ckpt cannot know when it attaches (start the program with `ckpt run` to checkpoint it)"));
            }
            record_watches(fd, bufs.meta, bufs.pathbuf, &mut out.watches);
            plain(0)
        }
        FdKind::MemFd => {
            let seals = rustix::fs::fcntl_get_seals(bfd).map(|s| s.bits() as u64).unwrap_or(0);
            Ok(Ok(Kept { size: st.st_size as u64, aux: seals, ..Kept::default() }))
        }
        _ => plain(st.st_size as u64),
    }
}

/// The tail hash of the log on `fd` (stdout or stderr in a regular file) at `size`, its length
/// now, by which a restart knows whether the file has only grown since; read through a
/// descriptor of its own (the program's may be write-only, and its offset must not move). 0 if
/// it cannot be read: a restart then leaves the file as it finds it.
fn log_tail_hash(fd: i32, size: u64, buf: &mut [u8]) -> u64 {
    let mut path = [0u8; 64];
    let Some(path) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/fd/", fd as u64, b"") else { return 0 };
    let Ok(file) = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()) else { return 0 };
    let read = |at: u64, into: &mut [u8]| rustix::io::retry_on_intr(|| rustix::io::pread(&file, &mut *into, at));
    ckpt_image::fds::log_tail_hash(size, buf, read).ok().flatten().unwrap_or(0)
}

/// Up to this many open descriptors, the locks are read from each file's fdinfo (some
/// microseconds each) rather than from `/proc/locks`, whose every read waits for an RCU grace
/// period in the kernel (its reader takes the file-lock semaphore for writing): 10 to 30 ms
/// on a busy machine, with the program stopped.
const FDINFO_UP_TO: usize = 256;

/// Whether the process has more than `n` open descriptors (or they cannot be counted).
fn more_descriptors_than(n: usize) -> bool {
    let Ok(dir) = rustix::fs::open(c"/proc/self/fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return true };
    let mut dirbuf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut raw = rustix::fs::RawDir::new(&dir, &mut dirbuf);
    let mut count = 0usize;
    while let Some(entry) = raw.next() {
        let Ok(entry) = entry else { return true };
        if entry.file_name().to_bytes()[0] != b'.' {
            count += 1;
            if count > n {
                return true;
            }
        }
    }
    false
}

/// The inode numbers of the files anyone holds a lock on now, sorted in `room` (read through
/// `buf`), or `None` if they cannot all be known (then every file's fdinfo is read): reading
/// one `/proc/locks` spares reading the fdinfo of each of thousands of files. Outside the
/// first PID namespace (a restored process is in one of its own) `/proc/locks` leaves out a
/// `flock` lock whose taker is gone or outside it, though a description of ours may hold it:
/// not known there.
fn locked_files<'r>(room: &'r mut [u64], buf: &mut [u8]) -> Option<&'r [u64]> {
    /// The inode of the first PID namespace's `/proc/PID/ns/pid` (the kernel's PROC_PID_INIT_INO).
    const FIRST_PID_NS: u64 = 0xEFFF_FFFC;
    if rustix::fs::stat(c"/proc/self/ns/pid").ok()?.st_ino != FIRST_PID_NS {
        return None;
    }
    // A read of /proc faults in all the room it is given, even when there is nothing to read
    // (a fresh 64 MiB buffer: 17 ms with the program stopped): 64 KiB holds some 900 locks;
    // past that read_whole fails, and each file's fdinfo is read instead.
    let text_room = buf.len().min(LOCKS_TEXT_ROOM);
    let len = ckpt_sigsafe::file::read_whole(c"/proc/locks", &mut buf[..text_room]).ok()?;
    let mut n = 0;
    for ino in ckpt_sigsafe::locks::locked_inodes(&buf[..len]) {
        *room.get_mut(n)? = ino?;
        n += 1;
    }
    let found = &mut room[..n];
    found.sort_unstable();
    Some(found)
}

/// The most of `/proc/locks` read at a checkpoint (see [`locked_files`]).
const LOCKS_TEXT_ROOM: usize = 64 << 10;

/// Refused past [`MAX_LOCKS`] (one image's limit).
const TOO_MANY_LOCKS: &str = "the program holds more than 65536 file locks, more than one image holds";
const _: () = assert!(ckpt_image::limits::MAX_LOCKS == 65536, "TOO_MANY_LOCKS names the limit");

/// Records the file locks held through descriptor `fd`'s open file description (its fdinfo's
/// `lock:` lines: the description's own `flock` and OFD locks, and the POSIX locks this process
/// set through it), and names on stderr each that a restart will not take again: a lease, a
/// mandatory lock, a kind unknown here, or any lock on a descriptor not reopened by path (a file
/// the image stores rather than names, a pipe, a standard descriptor that is myrestart's own).
fn record_locks(fd: i32, kind: FdKind, path: &[u8], buf: &mut [u8], out: &mut Out) -> Result<(), Failure> {
    let Ok(text) = fdinfo(fd, buf) else { return Ok(()) };
    for lock in ckpt_sigsafe::locks::fd_locks(text, fd) {
        if out.nlocks == ckpt_image::limits::MAX_LOCKS {
            return Err(Failure::plain(TOO_MANY_LOCKS));
        }
        out.nlocks += 1;
        lock.write(&mut out.locks);
        if let Some(why) = lock.why_not_restored(kind) {
            say!("ckpt: fd {fd} ({}): its {lock} is not restored ({why}); a restarted process will not hold it", Lossy(path));
        }
    }
    Ok(())
}

/// Copies the bytes in the pipe whose read end is `fd` into `data` at `*used`, without taking
/// them (`tee` into a pipe of our own, then read from that). Returns where they are and how
/// many there are.
fn copy_pipe(fd: BorrowedFd, size: usize, data: &mut [u8], used: &mut usize) -> Result<(u64, u64), Failure> {
    use rustix::pipe::{pipe_with, tee, PipeFlags, SpliceFlags};
    let (rd, wr) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| Failure::new("making a pipe to copy a pipe", e))?;
    let _ = rustix::pipe::fcntl_setpipe_size(&wr, size.max(4096));
    let n = match tee(fd, &wr, size.max(4096), SpliceFlags::NONBLOCK) {
        Ok(n) => n,
        Err(rustix::io::Errno::AGAIN) => 0, // empty
        Err(e) => return Err(Failure::new("copying the bytes in a pipe", e)),
    };
    if *used + n > data.len() {
        return Err(Failure::plain("the program's pipes hold more bytes than one checkpoint keeps"));
    }
    let at = *used;
    let mut got = 0;
    while got < n {
        match rustix::io::retry_on_intr(|| rustix::io::read(&rd, &mut data[at + got..at + n])) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => return Err(Failure::new("copying the bytes in a pipe", e)),
        }
    }
    *used += got;
    Ok((at as u64, got as u64))
}

/// The text of descriptor `fd`'s `/proc/self/fdinfo` file, read whole into `buf`.
fn fdinfo(fd: i32, buf: &mut [u8]) -> Result<&[u8], rustix::io::Errno> {
    let mut path = [0u8; 64];
    let path = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/fdinfo/", fd as u64, b"").ok_or(rustix::io::Errno::NAMETOOLONG)?;
    let len = ckpt_sigsafe::file::read_whole(path, buf)?;
    Ok(&buf[..len])
}

/// Records every registration of epoll descriptor `epfd` (its fdinfo's `tfd:` lines). A
/// registration whose descriptor number now names another file (closed or replaced since) is
/// named on stderr and left out.
fn record_epoll(pid: u32, epfd: i32, buf: &mut [u8], out: &mut Writer) -> Result<(), Failure> {
    let text = fdinfo(epfd, buf).map_err(|e| Failure::new("reading an epoll descriptor's registrations", e))?;
    for reg in ckpt_sigsafe::proctext::epoll_registrations(text) {
        let (tfd, events, data) = reg.ok_or(Failure::plain("reading an epoll descriptor's registrations"))?;
        if !sys::is_epoll_target(pid, tfd, epfd, tfd) {
            say!("ckpt: epoll fd {epfd} watches a file that fd {tfd} no longer names; a restarted process will not have that registration");
            continue;
        }
        EpollRecord { epfd, tfd, events, data }.write(out);
    }
    Ok(())
}

/// An eventfd's counter and whether it is in semaphore mode.
fn eventfd_state(fd: i32, buf: &mut [u8]) -> (u64, bool) {
    fdinfo(fd, buf).ok().and_then(ckpt_sigsafe::proctext::eventfd_info).unwrap_or((0, false))
}

/// Most times [`timerfd_state`] asks a periodic timer again that expired between the question
/// and the fdinfo read.
const TIMERFD_TRIES: usize = 8;

/// A timerfd's clock and times, from its fdinfo. A timer set with an absolute deadline keeps
/// that deadline (the time left plus the clock's time now).
///
/// A periodic timer that has expired is moved on to its next expiry only when the program
/// reads it or asks for its time (`timerfd_gettime`); until then its fdinfo shows no time left,
/// like a disarmed timer, and a restart would leave it disarmed. So it is asked first: that
/// moves it on, and the expirations it missed join its unread count, as the program's next
/// read would have found them. If it expired again before the fdinfo read (fdinfo shows no
/// time left, a period and expirations: a timer disarmed by the program has none, since
/// setting a timer clears its count), it is asked again; a timer whose period is too short
/// to ever be caught between the two (a few microseconds) gets one whole period.
fn timerfd_state(fd: i32, bfd: BorrowedFd, buf: &mut [u8]) -> Option<TimerFdRecord> {
    let mut tries = 0;
    let t = loop {
        rustix::time::timerfd_gettime(bfd).ok()?;
        let mut t = ckpt_sigsafe::proctext::timerfd_info(fdinfo(fd, buf).ok()?)?;
        let expired_again = t.left == (0, 0) && t.interval != (0, 0) && t.ticks > 0;
        tries += 1;
        if !expired_again {
            break t;
        }
        if tries == TIMERFD_TRIES {
            t.left = t.interval;
            break t;
        }
    };
    let (mut sec, mut nsec) = t.left;
    let armed = sec != 0 || nsec != 0;
    if armed && t.flags & TFD_TIMER_ABSTIME != 0 {
        use rustix::time::{clock_gettime, ClockId};
        let clock = match t.clock {
            1 => ClockId::Monotonic,
            7 | 9 => ClockId::Boottime,
            _ => ClockId::Realtime,
        };
        let now = clock_gettime(clock);
        nsec += now.tv_nsec;
        sec += now.tv_sec + nsec / 1_000_000_000;
        nsec %= 1_000_000_000;
    }
    Some(TimerFdRecord {
        fd,
        clock: t.clock,
        flags: t.flags,
        ticks: t.ticks,
        value_sec: sec,
        value_nsec: nsec,
        interval_sec: t.interval.0,
        interval_nsec: t.interval.1,
    })
}

/// A signalfd's mask.
fn signalfd_mask(fd: i32, buf: &mut [u8]) -> u64 {
    fdinfo(fd, buf).ok().and_then(ckpt_sigsafe::proctext::signalfd_mask).unwrap_or(0)
}

/// Records each watch of inotify descriptor `fd` with the path the program gave for it (from
/// the interposed `inotify_add_watch`), if that path still names the watched inode; names the
/// others on stderr, and events that were waiting.
fn record_watches(fd: i32, buf: &mut [u8], pathbuf: &mut [u8], out: &mut Writer) {
    let Ok(text) = fdinfo(fd, buf) else { return };
    let mut unknown = 0u64;
    for w in ckpt_sigsafe::proctext::inotify_watches(text) {
        let mut found = false;
        crate::watches::each(|wfd, wd, p| {
            if found || wfd != fd || wd != w.wd || p.len() >= pathbuf.len() {
                return;
            }
            pathbuf[..p.len()].copy_from_slice(p);
            pathbuf[p.len()] = 0;
            let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&pathbuf[..p.len() + 1]) else { return };
            let Ok(st) = rustix::fs::stat(c) else { return };
            let same = st.st_ino == w.ino
                && rustix::fs::major(st.st_dev) == w.dev_major
                && rustix::fs::minor(st.st_dev) == w.dev_minor;
            if same {
                WatchRecord { fd, wd: w.wd, mask: w.mask, ino: w.ino, dev: st.st_dev }.write(out, p);
                found = true;
            }
        });
        if !found {
            unknown += 1;
        }
    }
    if unknown > 0 {
        say!("ckpt: inotify fd {fd}: {unknown} watches have no known path now (added without libc's inotify_add_watch, or their path was renamed); a restarted process will not have them");
    }
    if ckpt_sigsafe::sys::bytes_to_read(fd).is_ok_and(|n| n > 0) {
        say!("ckpt: inotify fd {fd} has events waiting; a restarted process will not get them");
    }
}

/// The lowest earlier descriptor that shares `fd`'s open file description, or -1 (then `fd` is
/// added). `first[..*n]` holds the first descriptor seen of each description, sorted in the
/// kernel's order of descriptions ([`sys::compare_open_files`]), so each lookup is a binary
/// search: comparing with every earlier descriptor made 5,000 descriptors take half a minute.
/// Descriptors come in increasing order (as /proc lists them), so the one kept is the lowest.
fn earlier_same_file(first: &mut [i32], n: &mut usize, pid: u32, fd: i32) -> i32 {
    use core::cmp::Ordering;
    let (mut lo, mut hi) = (0, *n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match sys::compare_open_files(pid, first[mid], fd) {
            Some(Ordering::Equal) => return first[mid],
            Some(Ordering::Less) => lo = mid + 1,
            Some(Ordering::Greater) => hi = mid,
            // Unknown (no kcmp in this kernel): no sharing found, as before.
            None => return -1,
        }
    }
    if *n < first.len() {
        first.copy_within(lo..*n, lo + 1);
        first[lo] = fd;
        *n += 1;
    }
    -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_descriptions_are_found_by_search() {
        use rustix::fd::{AsFd, OwnedFd};
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        // Eight descriptions, and a dup of each.
        let originals: std::vec::Vec<OwnedFd> = (0..8).map(|_| rustix::fs::open(c"/dev/null", OFlags::RDONLY, Mode::empty()).unwrap()).collect();
        let dups: std::vec::Vec<OwnedFd> = originals.iter().map(|f| rustix::io::dup(f.as_fd()).unwrap()).collect();
        let pairs: std::vec::Vec<(i32, i32)> = originals.iter().zip(&dups).map(|(o, d)| (o.as_raw_fd(), d.as_raw_fd())).collect();
        let mut all: std::vec::Vec<i32> = pairs.iter().flat_map(|&(o, d)| [o, d]).collect();
        all.sort();
        let (mut first, mut n) = ([0i32; 64], 0);
        for f in all {
            let (o, d) = *pairs.iter().find(|&&(o, d)| o == f || d == f).unwrap();
            // The lower of the pair comes first and has no earlier one; the other finds it.
            let expect = if f == o.min(d) { -1 } else { o.min(d) };
            assert_eq!(earlier_same_file(&mut first, &mut n, pid, f), expect, "descriptor {f}");
        }
        assert_eq!(n, 8, "one entry per description");
    }

    #[test]
    fn how_each_descriptor_comes_back() {
        let kind = |fd, ft, nlink, path: &[u8]| classify(fd, ft, nlink, path).0;
        assert_eq!(kind(3, FileType::RegularFile, 1, b"/tmp/a"), FdKind::File);
        assert_eq!(kind(3, FileType::RegularFile, 0, b"/tmp/a (deleted)"), FdKind::Deleted);
        assert_eq!(kind(3, FileType::RegularFile, 1, b"/tmp/a (deleted)"), FdKind::Deleted, "deleted, then linked elsewhere");
        assert_eq!(kind(4, FileType::Directory, 2, b"/tmp"), FdKind::Directory);
        assert_eq!(kind(0, FileType::CharacterDevice, 1, b"/dev/pts/3"), FdKind::Inherit);
        assert_eq!(kind(2, FileType::CharacterDevice, 1, b"/dev/tty1"), FdKind::Inherit);
        assert_eq!(kind(5, FileType::CharacterDevice, 1, b"/dev/pts/3"), FdKind::Device, "a terminal above stderr is reopened");
        assert_eq!(kind(0, FileType::CharacterDevice, 1, b"/dev/null"), FdKind::Device);
        assert_eq!(kind(1, FileType::Fifo, 1, b"pipe:[123]"), FdKind::Inherit);
        assert_eq!(kind(2, FileType::Socket, 1, b"socket:[9]"), FdKind::Inherit);
        assert_eq!(kind(7, FileType::Fifo, 1, b"pipe:[123]"), FdKind::Pipe);
        assert_eq!(kind(7, FileType::Fifo, 1, b"/tmp/fifo"), FdKind::Pipe, "a FIFO is a pipe with a name");
        assert_eq!(kind(8, FileType::Socket, 1, b"socket:[9]"), FdKind::Socket);
        assert_eq!(kind(3, FileType::RegularFile, 0, b"/memfd:buf (deleted)"), FdKind::MemFd);
        assert_eq!(kind(9, FileType::Unknown, 1, b"anon_inode:[signalfd]"), FdKind::SignalFd);
        assert_eq!(kind(9, FileType::Unknown, 1, b"anon_inode:inotify"), FdKind::Inotify);
        assert_eq!(kind(9, FileType::Unknown, 1, b"anon_inode:[io_uring]"), FdKind::Unsupported);
        assert_eq!(kind(9, FileType::Unknown, 1, b"anon_inode:[eventfd]"), FdKind::EventFd);
        assert_eq!(kind(9, FileType::Unknown, 1, b"anon_inode:[eventpoll]"), FdKind::Epoll);
        assert_eq!(kind(9, FileType::Unknown, 1, b"anon_inode:[timerfd]"), FdKind::TimerFd);
        assert_eq!(kind(1, FileType::Unknown, 1, b"anon_inode:[eventfd]"), FdKind::Inherit);
    }
}
