//! Open files: before the point of no return, reopen every saved descriptor and every file a
//! `MAP_SHARED` region maps, check that doing so is safe, and park the results on descriptor
//! numbers above all the target's. After it, [`install`] puts each at its old number.
//!
//! What counts as safe (also in docs/guide.md):
//! - a path is opened without following symbolic links ([`open_recorded`]): the checkpoint's
//!   path had none, so one there now was put there since, and is refused;
//! - a regular file must still exist and be at least as long as the saved offset (the refusal
//!   says what lets the restart go on); a file that was the restarting user's own and is
//!   another user's now is refused (`myrestart::trust::taken_over`); one that was replaced
//!   otherwise (another inode, or the old inode number with another birth time) is used with a
//!   warning; a file the program could write in place that changed since is refused by
//!   `written.rs` (unless `--files-as-is`); other changes are the user's business;
//! - except the program's stdout and stderr in a regular file (a log): truncated or gone, the
//!   output goes on at its end or in a new file (made exclusively, never through a link);
//!   appended to and only grown since, it is cut back to its length at the checkpoint, at the
//!   point of no return ([`plan_cut`]);
//! - a file mapped `MAP_SHARED` must still exist and cover the mapped range, and is held to
//!   the rule for regular files above (no symbolic link, another user's where ours was refused,
//!   another one named as replaced; its owner and birth time are in `NT_CKPT_FILEMAPS`); a
//!   FIFO to the owner rule too; a program or
//!   library mapped privately must be the file it was, and is copied first if others could
//!   change it (`myrestart::trust`);
//! - deleted files come back from their saved contents as new unlinked files;
//! - stdin/stdout/stderr on a terminal, pipe or socket are myrestart's own;
//! - pipes come back with the bytes that were in them (an end that was outside the process is
//!   closed); a named pipe (FIFO) is opened by its path again, never blocking;
//! - eventfds with their counter, timerfds with their clock and times, signalfds with their
//!   mask, inotify instances with their watches (added by path), memfds with their contents
//!   and seals; sockets as `sockets.rs` says;
//! - epoll instances come back empty here; their registrations are made again once every
//!   descriptor is at its number (`restore.rs`);
//! - other special descriptors (netlink sockets, io_uring, …) are not restored: named, and left
//!   closed.

use crate::acts::{Act, Acts, What};
use crate::arena::Scratch;
use crate::fds::{cpath, park, set_nonblocking, Parked};
use crate::missing::GoOn;
use crate::plan::{FdSlot, LogCut, MapSlot, PipeSlot, Plan, SharedFile, SharedSlot};
use crate::refusal::{refuse, Refusal};
use ckpt_image::bytes::find_from;
use ckpt_image::fds::{FdKind, FdRecord};
use ckpt_image::Image;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::{say, sys};
use core::ffi::CStr;
use linux_raw_sys::general as k;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

/// Status flags that `open` can set again (never O_CREAT or O_TRUNC: nothing is truncated).
const REOPEN_FLAGS: u32 = k::O_ACCMODE
    | k::O_APPEND
    | k::O_NONBLOCK
    | k::O_DSYNC
    | k::O_SYNC
    | k::O_DIRECT
    | k::O_NOATIME
    | k::O_LARGEFILE
    | k::O_DIRECTORY
    | k::O_PATH;
const O_CLOEXEC: u32 = k::O_CLOEXEC;


/// The first descriptor number above every descriptor the image will use.
pub fn fd_base(image: &Image) -> i32 {
    image.fds().filter_map(Result::ok).map(|(r, _)| r.fd).max().unwrap_or(2).max(2) + 1
}

/// Opens the file behind `fd` again through `/proc/self/fd`, with the saved descriptor's access
/// mode and status flags (a file just made read-write, for one the program had read-only).
fn reopen_as_saved(fd: BorrowedFd, rec: &FdRecord) -> Option<OwnedFd> {
    let mut link = [0u8; 64];
    let flags = OFlags::from_bits_retain((rec.open_flags & REOPEN_FLAGS) | O_CLOEXEC);
    let l = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", fd.as_raw_fd() as u64, b"")?;
    rustix::fs::open(l, flags, Mode::empty()).ok()
}

/// Opens everything; fills `p.fds` and `p.file_maps`. Refuses on any problem.
/// With `inherit_stdio`, descriptors 0, 1 and 2 are myrestart's own, whatever they were.
pub fn open_all(image_path: &CStr, image: &Image, image_fd: Parked, p: &mut Plan, inherit_stdio: bool) -> Result<(), Refusal> {
    let base = p.fd_base;
    let mut buf = [0u8; 4096];
    let mut open_std = [false; 3];
    p.nfds = 0;
    p.ncuts = 0;
    // Socket and timerfd records come in the order of their descriptors: each found from the last.
    let (mut sockets, mut timerfds) = (image.sockets(), image.timerfds());
    for item in image.fds() {
        let (rec, path) = item.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        if (0..3).contains(&rec.fd) {
            open_std[rec.fd as usize] = true;
        }
        // An end of a pseudo-terminal whose master is in the image: that pair's (`pty`).
        if let Some(src) = crate::pty::end(image_path, image, &rec, p)? {
            if p.nfds == p.fds.len() {
                return Err(refuse(image_path, format_args!("more than {} descriptors to restore", p.fds.len())));
            }
            p.fds[p.nfds] = FdSlot { target: rec.fd, src, cloexec: rec.fd_flags & 1 != 0 };
            p.nfds += 1;
            continue;
        }
        if (0..3).contains(&rec.fd) {
            // A standard descriptor that is a pipe between processes of a tree is that pipe
            // again; one that leads outside the tree is myrestart's own, as with --inherit-stdio.
            let internal = rec.kind == FdKind::Pipe && p.pipes[..p.npipes].iter().any(|s| s.ino == rec.ino && s.pooled && s.rd.is_some() && s.wr.is_some());
            if (inherit_stdio || rec.kind == FdKind::Pipe) && !internal {
                continue;
            }
        }
        // A descriptor of a POSIX shared memory object that the image stores: that object.
        if let Some(src) = shm_descriptor(image_path, image, &rec, path, p)? {
            if p.nfds == p.fds.len() {
                return Err(refuse(image_path, format_args!("more than {} descriptors to restore", p.fds.len())));
            }
            p.fds[p.nfds] = FdSlot { target: rec.fd, src, cloexec: rec.fd_flags & 1 != 0 };
            p.nfds += 1;
            continue;
        }
        // What the tree made once for every process that has it (`pool`).
        let pooled = match rec.kind {
            FdKind::File => shared_file(p, &rec).map(|f| (f, true)).or_else(|| gone_log(p, &rec).map(|f| (f, false))),
            // A directory or device the tree shares (see `poolable`).
            FdKind::Directory | FdKind::Device => shared_file(p, &rec).map(|f| (f, true)),
            FdKind::Deleted | FdKind::MemFd => shared_object(p, u64::MAX, rec.ino).map(|f| (f, false)),
            _ => None,
        };
        let src = match rec.kind {
            FdKind::Inherit => continue,
            // A POSIX message queue comes back with the IPC objects (`ipc::open_queues`).
            FdKind::Unsupported if image.ipc_objects().map_while(Result::ok).any(|r| r.kind == ckpt_image::ipc::KIND_MQ && r.id == rec.fd) => continue,
            FdKind::Unsupported => {
                say!("myrestart: fd {} ({}) is not restored (ckpt cannot save this kind of descriptor); it stays closed", rec.fd, Lossy(path));
                continue;
            }
            _ if rec.same_as >= 0 => match p.fds[..p.nfds].iter().find(|s| s.target == rec.same_as) {
                Some(s) => s.src,
                None => continue,
            },
            _ if pooled.is_some() => from_pool(image_path, &rec, path, pooled.unwrap_or((Parked::NONE, false)), base)?,
            FdKind::Deleted => recreate_deleted(image_path, &rec, path, image_fd, base)?,
            FdKind::File | FdKind::Directory | FdKind::Device => reopen(image_path, &rec, path, &mut buf, base, &mut p.acts)?,
            FdKind::EventFd => make_eventfd(image_path, &rec, base)?,
            FdKind::Epoll => {
                let fd = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)
                    .map_err(|e| refuse(image_path, format_args!("fd {}: making an epoll descriptor: {}", rec.fd, describe(e))))?;
                park(fd, base).map_err(|e| refuse(image_path, format_args!("fd {}: {}", rec.fd, describe(e))))?
            }
            FdKind::Pipe if !path.starts_with(b"pipe:[") => fifo_end(image_path, &rec, path, p)?,
            FdKind::Pipe => pipe_end(image_path, &rec, image_fd, p)?,
            FdKind::MemFd => recreate_memfd(image_path, &rec, path, image_fd, base)?,
            FdKind::SignalFd => make_signalfd(image_path, &rec, base)?,
            FdKind::TimerFd => {
                let t = find_from(&mut timerfds, || image.timerfds(), |t| t.fd == rec.fd);
                make_timerfd(image_path, &rec, t, base)?
            }
            FdKind::Inotify => make_inotify(image_path, image, &rec, base)?,
            FdKind::Socket => {
                let Some(sock) = find_from(&mut sockets, || image.sockets(), |s| s.fd == rec.fd) else {
                    return Err(refuse(image_path, format_args!("fd {}: the socket has no record", rec.fd)));
                };
                crate::sockets::make(image_path, &rec, &sock, image_fd, p)?
            }
        };
        if p.nfds == p.fds.len() {
            return Err(refuse(image_path, format_args!("more than {} descriptors to restore", p.fds.len())));
        }
        p.fds[p.nfds] = FdSlot { target: rec.fd, src, cloexec: rec.fd_flags & 1 != 0 };
        p.nfds += 1;
        if cuts_log(&rec) {
            plan_cut(&rec, src, p);
        }
    }
    p.close_std = [!open_std[0], !open_std[1], !open_std[2]];
    close_missing_pipe_ends(p);
    crate::sockets::finish(image, p);
    for reg in image.epoll_registrations() {
        let reg = reg.map_err(|e| refuse(image_path, format_args!("{e}")))?;
        if !restored_fd(p, reg.tfd) {
            say!("myrestart: epoll fd {} loses its registration of fd {}, which is not restored", reg.epfd, reg.tfd);
        }
    }
    open_mapped_files(image_path, image, p, &mut buf)
}

/// A log a restart may cut: the program's stdout or stderr appended to a regular file
/// (`>>`, a batch system's output), whose tail hash the checkpoint took.
fn cuts_log(rec: &FdRecord) -> bool {
    rec.is_std_log() && rec.open_flags & k::O_APPEND != 0 && rec.aux != 0
}

/// Notes the logs of process `member`'s image that no earlier process of it has: that process
/// cuts each (see [`plan_cut`]).
pub fn note_logs(image: &Image, member: usize, p: &mut Plan) {
    for (rec, _) in image.fds().filter_map(Result::ok).filter(|(r, _)| cuts_log(r)) {
        let known = p.log_owners[..p.nlog_owners].iter().any(|o| (o.0, o.1) == (rec.dev, rec.ino));
        if !known && p.nlog_owners < p.log_owners.len() {
            p.log_owners[p.nlog_owners] = (rec.dev, rec.ino, member);
            p.nlog_owners += 1;
        }
    }
}

/// A log ([`cuts_log`]) that has only grown since the checkpoint (it is longer now, and its
/// bytes before its length then still end as they did) holds, after that length, what the
/// program printed after the checkpoint, which the restored program prints again: it is cut
/// back to that length at the point of no return ([`cut_logs`]). Planned here, where looking
/// changes nothing; a log changed otherwise (truncated, rotated, rewritten) is left as it is,
/// and so is every log with `--keep-logs` or after a last checkpoint. `src` is the program's
/// descriptor for it, parked.
fn plan_cut(rec: &FdRecord, src: Parked, p: &mut Plan) {
    let mine = p.log_owners[..p.nlog_owners].iter().any(|o| (o.0, o.1, o.2) == (rec.dev, rec.ino, p.member));
    let planned = p.cuts[..p.ncuts].iter().any(|c| (c.dev, c.ino) == (rec.dev, rec.ino));
    if p.keep_logs || !mine || planned || p.ncuts == p.cuts.len() {
        return;
    }
    // A description of our own, to read and to write where we choose (the program's may be
    // write-only, and appends wherever it writes).
    let mut link = [0u8; 64];
    let Some(l) = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", src.raw() as u64, b"") else { return };
    let Ok(fd) = rustix::fs::open(l, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) else { return };
    let Ok(st) = rustix::fs::fstat(&fd) else { return };
    // The device is not compared: another node numbers it its own way, and the hash of the
    // log's tail below tells whether this is the log the checkpoint saw.
    if !rec.is_same_inode(st.st_ino, ckpt_sigsafe::fileid::birth_time(fd.as_fd())) || st.st_size as u64 <= rec.size {
        return;
    }
    let mut buf = [0u8; 4096];
    let read = |at: u64, into: &mut [u8]| rustix::io::retry_on_intr(|| rustix::io::pread(&fd, &mut *into, at));
    if ckpt_image::fds::log_tail_hash(rec.size, &mut buf, read) != Ok(Some(rec.aux)) {
        return;
    }
    let Ok(fd) = park(fd, p.fd_base) else { return };
    p.cuts[p.ncuts] = LogCut { target: rec.fd, fd, dev: rec.dev, ino: rec.ino, size: rec.size };
    p.ncuts += 1;
}

/// At the point of no return: each log [`plan_cut`] chose is cut back to its length at the
/// checkpoint, and one line says so. What myrestart itself wrote to it since it started (it is
/// myrestart's stderr too: a batch job's output file) stays, moved up to the cut.
pub fn cut_logs(p: &Plan, image: &Image) {
    for c in &p.cuts[..p.ncuts] {
        let fd = c.fd.as_fd();
        let path = image.fds().filter_map(Result::ok).find(|(r, _)| r.fd == c.target).map_or(&b"?"[..], |(_, path)| path);
        let Ok(st) = rustix::fs::fstat(fd) else { continue };
        let now = st.st_size as u64;
        // Shorter than at the checkpoint since it was planned (rotated, say): nothing to cut.
        if now <= c.size {
            continue;
        }
        // The file as it is here (another node numbers devices its own way).
        let ours = match p.own_stderr {
            Some((dev, ino, at)) if (dev, ino) == (st.st_dev, st.st_ino) => at.clamp(c.size, now),
            _ => now,
        };
        if ours <= c.size {
            continue;
        }
        let moved = keep_from(fd, ours, now, c.size).and_then(|end| rustix::fs::ftruncate(fd, end));
        match moved {
            Ok(()) => say!(
                "myrestart: fd {}: {}: cut back to its {} bytes at the checkpoint ({} bytes less, written since: the program's lines there, which the restored program prints again, and anything else appended meanwhile; --keep-logs keeps them)",
                c.target, Lossy(path), c.size, ours - c.size
            ),
            Err(e) => say!("myrestart: fd {}: {}: cannot cut back what the program printed after the checkpoint ({}); it may be there twice", c.target, Lossy(path), describe(e)),
        }
    }
}

/// Moves what is in `fd` from `from` on (`to` is its end now) down to `at`, and what is added
/// to it meanwhile (another process's message); returns where it all ends.
fn keep_from(fd: BorrowedFd, mut from: u64, mut to: u64, mut at: u64) -> Result<u64, Errno> {
    loop {
        at = move_down(fd, from, to, at)?;
        let end = rustix::fs::fstat(fd)?.st_size as u64;
        if end <= to {
            return Ok(at);
        }
        (from, to) = (to, end);
    }
}

/// Copies the bytes `from..to` of `fd` to `at` (below `from`); returns where they end.
fn move_down(fd: BorrowedFd, mut from: u64, to: u64, mut at: u64) -> Result<u64, Errno> {
    let mut buf = [0u8; 8192];
    while from < to {
        let want = ((to - from) as usize).min(buf.len());
        let n = match rustix::io::retry_on_intr(|| rustix::io::pread(fd, &mut buf[..want], from)) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let mut done = 0;
        while done < n {
            match rustix::io::retry_on_intr(|| rustix::io::pwrite(fd, &buf[done..n], at + done as u64)) {
                Ok(m) => done += m,
                Err(e) => return Err(e),
            }
        }
        from += n as u64;
        at += n as u64;
    }
    Ok(at)
}

/// Opens a path the checkpoint recorded. It is the kernel's own name for the file (from
/// `/proc`), with every symbolic link resolved, so a symbolic link on it now was put there
/// since: it is not followed (the open fails with `ELOOP`), since one planted in a shared
/// directory such as /tmp would lead the program, with the restarting user's rights, to
/// another file, or make one where the link points.
pub(crate) fn open_recorded(path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    match rustix::fs::openat2(rustix::fs::CWD, path, flags, mode, rustix::fs::ResolveFlags::NO_SYMLINKS) {
        // Before Linux 5.6: the last component at least.
        Err(Errno::NOSYS) => rustix::fs::open(path, flags | OFlags::NOFOLLOW, mode),
        other => other,
    }
}

/// The refusal of another user's file (`st_uid` `now`) found at `path`, where the program had
/// one of the restarting user's own (`then`): see `myrestart::trust::taken_over`. `what` says
/// what the program had there (a descriptor, a mapping, its working directory).
pub(crate) fn refuse_taken(image_path: &CStr, what: core::fmt::Arguments, path: &[u8], now: u32, then: u32) -> Refusal {
    refuse(image_path, format_args!(
        "{what}: {} belongs to uid {now} now, where the program had a file of yours (uid {then}): another user's file is not given to it (remove it, or put the file back)",
        Lossy(path)
    ))
}

/// Why a recorded path did not open ([`open_recorded`]), in words.
pub(crate) struct NotOpened(pub(crate) Errno);

impl core::fmt::Display for NotOpened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Errno::LOOP => f.write_str("a symbolic link is in its path now, where the checkpoint found none; it is not followed (remove it, or put the file back)"),
            e => f.write_str(describe(e)),
        }
    }
}

/// A regular file, directory or device, opened again by its path (see the module's notes for
/// what is refused, what warned about and what forgiven).
fn reopen(image_path: &CStr, rec: &FdRecord, path: &[u8], buf: &mut [u8; 4096], base: i32, acts: &mut Acts) -> Result<Parked, Refusal> {
    let Some(c) = cpath(path, buf) else {
        return Err(refuse(image_path, format_args!("fd {}: unusable path {}", rec.fd, Lossy(path))));
    };
    // Opened non-blocking, so that a path that is now a FIFO (or a device that waits for a
    // carrier) cannot hang the restart; its type is checked before anything else.
    let flags = OFlags::from_bits_retain((rec.open_flags & REOPEN_FLAGS) | O_CLOEXEC | k::O_NONBLOCK);
    // The program's output or error stream in a regular file (a log): if the file was rotated,
    // truncated or removed since, the program's output goes on at its end, or in a new file at
    // that path, rather than no restart at all.
    let log = rec.is_std_log();
    let mut offset = rec.offset;
    let fd = match open_recorded(c, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if log => return planned_log(image_path, rec, path, base, acts),
        // A file the kernel makes (/proc, /sys) that is not there now: a process's own
        // /proc/PID before its PID exists again, or another process's that has gone. The
        // program's descriptor then reads as empty (/dev/null), rather than no restart at all.
        Err(e) if rec.kind == FdKind::File && (path.starts_with(b"/proc/") || path.starts_with(b"/sys/")) => {
            say!("myrestart: fd {}: {}: {}; the descriptor reads as empty after the restart", rec.fd, Lossy(path), describe(e));
            return reads_as_empty(image_path, rec, base);
        }
        Err(Errno::NOENT) if rec.kind == FdKind::File => {
            return Err(refuse(image_path, format_args!("fd {}: {} is gone since the checkpoint: {}", rec.fd, Lossy(path), GoOn(rec, path))));
        }
        Err(e) => {
            return Err(refuse(image_path, format_args!("fd {}: {}: {}", rec.fd, Lossy(path), NotOpened(e))));
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| refuse(image_path, format_args!("{}: {}", Lossy(path), describe(e))))?;
    let type_ok = matches!(
        (rec.kind, FileType::from_raw_mode(st.st_mode)),
        (FdKind::File, FileType::RegularFile)
            | (FdKind::Directory, FileType::Directory)
            | (FdKind::Device, FileType::CharacterDevice | FileType::BlockDevice)
    );
    if !type_ok {
        return Err(refuse(image_path, format_args!("fd {}: {} is no longer what it was (a {})", rec.fd, Lossy(path), match rec.kind {
            FdKind::File => "regular file",
            FdKind::Directory => "directory",
            _ => "device",
        })));
    }
    // A file of the kernel's (/proc, /sys, cgroups) has no real size: its contents are made
    // when read, so its offset is put back as far as it goes, and nothing is refused for it.
    let generated = rustix::fs::fstatfs(&fd).is_ok_and(|f| {
        matches!(f.f_type as u32, k::PROC_SUPER_MAGIC | k::SYSFS_MAGIC | k::CGROUP2_SUPER_MAGIC | k::CGROUP_SUPER_MAGIC)
    });
    // Another user's file where the program had one of the restarting user's own is never
    // given to it: in a shared directory it is what someone else put there, and the program
    // would write it, or believe it, with our rights. Any other file now at the path is only
    // named below, as replaced.
    let (me, now) = (rustix::process::geteuid().as_raw(), owner(&st));
    if myrestart::trust::taken_over(rec.uid, now, me) {
        if generated {
            // Another user's process now has the PID whose /proc files these were.
            say!("myrestart: fd {}: {} is another user's now; the descriptor reads as empty after the restart", rec.fd, Lossy(path));
            return reads_as_empty(image_path, rec, base);
        }
        return Err(refuse_taken(image_path, format_args!("fd {}", rec.fd), path, now, rec.uid));
    }
    if rec.open_flags & k::O_NONBLOCK == 0 {
        let _ = rustix::fs::fcntl_setfl(&fd, OFlags::from_bits_retain(rec.open_flags & REOPEN_FLAGS) & !OFlags::NONBLOCK);
    }
    if rec.kind == FdKind::File && !generated {
        if log && (st.st_size as u64) < offset {
            say!(
                "myrestart: fd {}: {} is now {} bytes, shorter than at the checkpoint ({}); the program's output goes on at its end (--inherit-stdio gives it this restart's own stdout and stderr instead)",
                rec.fd, Lossy(path), st.st_size, offset
            );
            offset = st.st_size as u64;
        } else if (st.st_size as u64) < offset {
            return Err(refuse(image_path, format_args!(
                "fd {}: {} is now {} bytes, shorter than its saved offset {} (it changed since the checkpoint): {}",
                rec.fd, Lossy(path), st.st_size, rec.offset, GoOn(rec, path)
            )));
        }
        // Only the inode: the same file on another node (NFS) has another device number.
        if !rec.is_same_inode(st.st_ino, ckpt_sigsafe::fileid::birth_time(fd.as_fd())) {
            say!("myrestart: fd {}: {} was replaced since the checkpoint; using the file now at that path", rec.fd, Lossy(path));
        }
    }
    if offset != 0 {
        if let Err(e) = rustix::fs::seek(&fd, SeekFrom::Start(offset)) {
            if rec.kind == FdKind::File && !generated {
                return Err(refuse(image_path, format_args!("fd {}: {}: cannot restore the offset: {}", rec.fd, Lossy(path), describe(e))));
            }
        }
    }
    park(fd, base).map_err(|e| refuse(image_path, format_args!("fd {}: {}", rec.fd, describe(e))))
}

/// The program's stdout or stderr in a log that is gone: made again at its path only once every
/// check has passed (`acts.rs`, [`make_log`]), so that a refused restart leaves nothing behind.
/// Its directory is opened now (never through a symbolic link, as every recorded path) and
/// parked, and must let us make the file: a directory that is gone, or that we may not write
/// to, refuses the restart here, and the file is made in that very directory then, whatever
/// was renamed meanwhile. Until then the program's descriptor holds a placeholder. A log the
/// processes of a tree share (the pool's) is one open file description they all inherit: that
/// is made now, without a name (`O_TMPFILE` in its directory), and named then; where the
/// filesystem cannot make such a file (NFS, say), the restart is refused: made with its name
/// now, it would be a change before every process of the tree has checked its part.
fn planned_log(image_path: &CStr, rec: &FdRecord, path: &[u8], base: i32, acts: &mut Acts) -> Result<Parked, Refusal> {
    let cannot = |e: Errno| refuse(image_path, format_args!("fd {}: {} is gone, and cannot be made again: {}", rec.fd, Lossy(path), describe(e)));
    let flags = OFlags::from_bits_retain((rec.open_flags & REOPEN_FLAGS) | O_CLOEXEC);
    let dir = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => &b"/"[..],
        Some(i) => &path[..i],
        None => &b"."[..],
    };
    let mut dbuf = [0u8; 4096];
    let d = cpath(dir, &mut dbuf).ok_or(Errno::NAMETOOLONG).map_err(cannot)?;
    let dir = open_recorded(d, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        refuse(
            image_path,
            format_args!(
                "fd {}: {} is gone, and cannot be made again: its directory: {} (--inherit-stdio gives the program this restart's own stdout and stderr instead)",
                rec.fd,
                Lossy(path),
                NotOpened(e)
            ),
        )
    })?;
    rustix::fs::accessat(&dir, c".", rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK, rustix::fs::AtFlags::EACCESS).map_err(cannot)?;
    let (fd, what) = if acts.pooled {
        let how = (flags & !(OFlags::ACCMODE | OFlags::DIRECTORY | OFlags::PATH)) | OFlags::TMPFILE | OFlags::RDWR;
        let fd = rustix::fs::openat(&dir, c".", how, Mode::from_raw_mode(0o666)).map_err(|e| {
            refuse(
                image_path,
                format_args!(
                    "fd {}: {} is gone, and its filesystem cannot make the file the processes of the tree share without a name first ({}); put a file at that path to restart",
                    rec.fd,
                    Lossy(path),
                    describe(e)
                ),
            )
        })?;
        (fd, What::NameLog)
    } else {
        (rustix::fs::open(c"/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(cannot)?, What::NewLog)
    };
    let fd = park(fd, base).map_err(cannot)?;
    let dir = park(dir, base).map_err(cannot)?;
    if !acts.add(rec.fd, fd, Some(dir), what) {
        return Err(refuse(image_path, format_args!("too many files and sockets to make again")));
    }
    Ok(fd)
}

fn say_new_log(fd: i32, path: &[u8]) {
    say!("myrestart: fd {fd}: {} is gone; the program writes to a new file at that path (--inherit-stdio gives it this restart's own stdout and stderr instead)", Lossy(path));
}

/// Once every check has passed: the log [`planned_log`] prepared gets its path, made
/// exclusively (a file or symlink put there since the plan is not the program's: the restart
/// is refused then). Returns the device and inode now at the path.
pub fn make_log(image_path: &CStr, image: &Image, a: &Act) -> Result<(u64, u64), Refusal> {
    let mut buf = [0u8; 4096];
    let rec = image.fds().filter_map(Result::ok).find(|(r, _)| r.fd == a.target && r.same_as < 0).map(|(r, _)| r);
    let (Some(rec), Some(c)) = (rec, crate::acts::path_of(image, a, &mut buf)) else {
        return Err(refuse(image_path, format_args!("fd {}: the log to make again has no record", a.target)));
    };
    let cannot = |e: Errno| refuse(image_path, format_args!("fd {}: {} is gone, and cannot be made again: {}", a.target, Lossy(c.to_bytes()), describe(e)));
    let held = a.fd.as_fd();
    // By its name in the directory the plan parked.
    let (dir, name) = crate::acts::where_named(a, c);
    let st = if a.what == What::NameLog {
        let mut link = [0u8; 64];
        let l = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", a.fd.raw() as u64, b"").ok_or_else(|| cannot(Errno::NAMETOOLONG))?;
        rustix::fs::linkat(rustix::fs::CWD, l, dir, name, rustix::fs::AtFlags::SYMLINK_FOLLOW).map_err(cannot)?;
        rustix::fs::fstat(held).map_err(cannot)?
    } else {
        // Exclusive (and so never through a symbolic link, nor into a file put there since).
        let flags = OFlags::from_bits_retain((rec.open_flags & REOPEN_FLAGS) | O_CLOEXEC) | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o666)).map_err(cannot)?;
        let st = rustix::fs::fstat(&fd);
        // SAFETY: `a.fd` is the placeholder parked for this log, which the new file replaces.
        let put = unsafe { sys::dup3(fd.as_raw_fd(), a.fd.raw(), O_CLOEXEC) };
        match (st, put) {
            (Ok(st), Ok(())) => st,
            (Err(e), _) | (_, Err(e)) => {
                // Only the file just made, if it is still what has the name.
                let made = rustix::fs::fstat(&fd).map(|st| (st.st_dev, st.st_ino));
                if made.is_ok() && rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map(|st| (st.st_dev, st.st_ino)) == made {
                    let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
                }
                return Err(cannot(e));
            }
        }
    };
    say_new_log(a.target, c.to_bytes());
    Ok((st.st_dev, st.st_ino))
}

/// `/dev/null` for descriptor `rec`, parked: for a file of the kernel's that is not the one
/// the program had.
fn reads_as_empty(image_path: &CStr, rec: &FdRecord, base: i32) -> Result<Parked, Refusal> {
    let null = rustix::fs::open(c"/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| refuse(image_path, format_args!("fd {}: /dev/null: {}", rec.fd, describe(e))))?;
    park(null, base).map_err(|e| refuse(image_path, format_args!("fd {}: {}", rec.fd, describe(e))))
}

/// An eventfd with its counter, its mode (semaphore or not) and non-blocking flag.
fn make_eventfd(image_path: &CStr, rec: &FdRecord, base: i32) -> Result<Parked, Refusal> {
    use rustix::event::{eventfd, EventfdFlags};
    let mut flags = EventfdFlags::CLOEXEC;
    if rec.size == 1 {
        flags |= EventfdFlags::SEMAPHORE;
    }
    if rec.open_flags & k::O_NONBLOCK != 0 {
        flags |= EventfdFlags::NONBLOCK;
    }
    let fd = eventfd(0, flags).map_err(|e| refuse(image_path, format_args!("fd {}: making an eventfd: {}", rec.fd, describe(e))))?;
    if rec.offset > 0 {
        // The counter is added by a write (the initial value would take only 32 bits).
        if rec.offset == u64::MAX || rustix::io::write(&fd, &rec.offset.to_ne_bytes()).is_err() {
            return Err(refuse(image_path, format_args!("fd {}: cannot set the eventfd's counter to {}", rec.fd, rec.offset)));
        }
    }
    park(fd, base).map_err(|e| refuse(image_path, format_args!("fd {}: {}", rec.fd, describe(e))))
}

/// The slot of the pipe `rec` is an end of: found by inode, or made now (with the saved size),
/// both ends parked.
fn pipe_slot(image_path: &CStr, rec: &FdRecord, p: &mut Plan, pooled: bool) -> Result<usize, Refusal> {
    if let Some(i) = p.pipes[..p.npipes].iter().position(|s| s.ino == rec.ino) {
        return Ok(i);
    }
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (pipe): {what}: {}", rec.fd, describe(e)));
    if p.npipes == p.pipes.len() {
        return Err(refuse(image_path, format_args!("more than {} pipes", p.pipes.len())));
    }
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| bad("making a pipe", e))?;
    if rec.size > 0 {
        let _ = rustix::pipe::fcntl_setpipe_size(&wr, rec.size as usize);
    }
    let rd = park(rd, p.fd_base).map_err(|e| bad("parking", e))?;
    let wr = park(wr, p.fd_base).map_err(|e| bad("parking", e))?;
    p.pipes[p.npipes] = PipeSlot { ino: rec.ino, rd: Some(rd), wr: Some(wr), has_rd: false, has_wr: false, pooled };
    p.npipes += 1;
    Ok(p.npipes - 1)
}

/// One end of a pipe: the pipe is made once, with its size and the bytes it held (from the
/// record that carries them); each end takes the record's non-blocking flag.
fn pipe_end(image_path: &CStr, rec: &FdRecord, image_fd: Parked, p: &mut Plan) -> Result<Parked, Refusal> {
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (pipe): {what}: {}", rec.fd, describe(e)));
    let i = pipe_slot(image_path, rec, p, false)?;
    let reader = rec.open_flags & k::O_ACCMODE == k::O_RDONLY;
    let slot = &mut p.pipes[i];
    if reader {
        slot.has_rd = true;
    } else {
        slot.has_wr = true;
    }
    let (Some(end), Some(wr)) = (if reader { slot.rd } else { slot.wr }, slot.wr) else {
        // A pipe of the tree whose end no process had: none has it now either.
        return Err(refuse(image_path, format_args!("fd {} (pipe): its end is missing", rec.fd)));
    };
    if rec.blob_len > 0 && !slot.pooled {
        fill_pipe(image_fd, rec.blob_offset, wr.as_fd(), rec.blob_len).map_err(|e| bad("putting back the bytes it held", e))?;
    }
    set_nonblocking(end.as_fd(), rec).map_err(|e| bad("setting its flags", e))?;
    Ok(end)
}

/// Writes `len` bytes of the image at `from` into a pipe (which has room for them: they were
/// in a pipe of the same size).
fn fill_pipe(image_fd: Parked, mut from: u64, wr: BorrowedFd, len: u64) -> Result<(), Errno> {
    let img = image_fd.as_fd();
    let mut buf = [0u8; 16384];
    let mut left = len;
    let flags = rustix::fs::fcntl_getfl(wr)?;
    rustix::fs::fcntl_setfl(wr, flags | OFlags::NONBLOCK)?;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = rustix::io::pread(img, &mut buf[..want], from)?;
        if n == 0 {
            return Err(Errno::IO);
        }
        let mut done = 0;
        while done < n {
            done += rustix::io::write(wr, &buf[done..n])?;
        }
        from += n as u64;
        left -= n as u64;
    }
    rustix::fs::fcntl_setfl(wr, flags)
}

/// One end of a named pipe (FIFO), opened by its path again. Opening never blocks: the FIFO is
/// first held open for reading and writing, so either end opens at once; the bytes it held go
/// back through that hold once every check has passed ([`fill_fifo`]); once the program runs,
/// the hold is let go, and an end whose peer was outside the process sees it closed until
/// someone opens it again.
fn fifo_end(image_path: &CStr, rec: &FdRecord, path: &[u8], p: &mut Plan) -> Result<Parked, Refusal> {
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (FIFO {}): {what}: {}", rec.fd, Lossy(path), describe(e)));
    let mut buf = [0u8; 4096];
    let Some(c) = cpath(path, &mut buf) else {
        return Err(refuse(image_path, format_args!("fd {}: unusable path {}", rec.fd, Lossy(path))));
    };
    let nb = OFlags::NONBLOCK | OFlags::CLOEXEC;
    let opening = |e: Errno| refuse(image_path, format_args!("fd {} (FIFO {}): opening it: {}", rec.fd, Lossy(path), NotOpened(e)));
    // Looked at before it is opened for reading or writing (an `O_PATH` descriptor opens
    // nothing), and then opened through that descriptor, so that each end is of the FIFO
    // looked at, whatever is put at its path meanwhile.
    let found = open_recorded(c, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(opening)?;
    let st = rustix::fs::fstat(&found).map_err(|e| bad("opening it", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
        return Err(refuse(image_path, format_args!("fd {}: {} is no longer a FIFO", rec.fd, Lossy(path))));
    }
    // Another user's FIFO where the program had one of ours: it would read what that user
    // writes, and write to that user's reader.
    if myrestart::trust::taken_over(rec.uid, owner(&st), rustix::process::geteuid().as_raw()) {
        return Err(refuse_taken(image_path, format_args!("fd {} (FIFO)", rec.fd), path, owner(&st), rec.uid));
    }
    let mut link = [0u8; 64];
    let l = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", found.as_raw_fd() as u64, b"").ok_or_else(|| opening(Errno::NAMETOOLONG))?;
    let hold = rustix::fs::open(l, OFlags::RDWR | nb, Mode::empty()).map_err(opening)?;
    let reader = rec.open_flags & k::O_ACCMODE == k::O_RDONLY;
    let mode = if reader { OFlags::RDONLY } else if rec.open_flags & k::O_ACCMODE == k::O_RDWR { OFlags::RDWR } else { OFlags::WRONLY };
    let end = rustix::fs::open(l, mode | nb, Mode::empty()).map_err(opening)?;
    set_nonblocking(end.as_fd(), rec).map_err(|e| bad("setting its flags", e))?;
    // The hold must outlive every end this FIFO has in the image (or the bytes put back would
    // go with the last opener); keeping it parked until the restore closes the parking area
    // does that.
    let hold = park(hold, p.fd_base).map_err(|e| bad("parking", e))?;
    // The bytes it held go back only once every check has passed (`acts.rs`): whoever else has
    // the FIFO open would read them even from a restart that is then refused.
    if rec.blob_len > 0 && !p.acts.add(rec.fd, hold, None, What::FillFifo) {
        return Err(refuse(image_path, format_args!("too many files and sockets to make again")));
    }
    park(end, p.fd_base).map_err(|e| bad("parking", e))
}

/// Once every check has passed: the bytes FIFO `a.target` held put back, through the hold
/// [`fifo_end`] parked (`a.fd`).
pub fn fill_fifo(image_path: &CStr, image: &Image, image_fd: Parked, a: &Act) -> Result<(), Refusal> {
    let Some((rec, path)) = image.fds().filter_map(Result::ok).find(|(r, _)| r.fd == a.target) else {
        return Err(refuse(image_path, format_args!("fd {}: the FIFO to fill again has no record", a.target)));
    };
    let hold = a.fd.as_fd();
    fill_pipe(image_fd, rec.blob_offset, hold, rec.blob_len)
        .map_err(|e| refuse(image_path, format_args!("fd {} (FIFO {}): putting back the bytes it held: {}", rec.fd, Lossy(path), describe(e))))
}

/// A pipe end that was outside the process is closed now: the restored program then reads EOF
/// after the bytes that were in flight, or gets EPIPE when it writes.
fn close_missing_pipe_ends(p: &mut Plan) {
    for s in p.pipes[..p.npipes].iter_mut().filter(|s| !s.pooled) {
        for (had, fd, which) in [(s.has_rd, s.rd, "read"), (s.has_wr, s.wr, "write")] {
            if let (false, Some(fd)) = (had, fd) {
                say!("myrestart: pipe:[{}] comes back with its {which} end closed (it was outside the process)", s.ino);
                // SAFETY: a parked descriptor of ours that nothing else refers to.
                unsafe { rustix::io::close(fd.raw()) };
            }
        }
    }
}

/// A memfd comes back as a new memfd of the same name, with its contents and seals, opened as
/// before and at the same offset.
fn recreate_memfd(image_path: &CStr, rec: &FdRecord, path: &[u8], image_fd: Parked, base: i32) -> Result<Parked, Refusal> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let name = path.strip_prefix(b"/memfd:").unwrap_or(path);
    let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
    let mut buf = [0u8; 4096];
    let c = cpath(&name[..name.len().min(249)], &mut buf).unwrap_or(c"ckpt");
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} ({}): {what}: {}", rec.fd, Lossy(path), describe(e)));
    let seals = SealFlags::from_bits_retain(rec.aux as u32);
    let mut flags = MemfdFlags::CLOEXEC;
    if !seals.contains(SealFlags::SEAL) || seals != SealFlags::SEAL {
        flags |= MemfdFlags::ALLOW_SEALING;
    }
    let fd = rustix::fs::memfd_create(c, flags).map_err(|e| bad("making a memfd", e))?;
    copy_from_image(image_fd, rec.blob_offset, &fd, rec.blob_len).map_err(|e| bad("restoring its contents", e))?;
    if flags.contains(MemfdFlags::ALLOW_SEALING) && !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).map_err(|e| bad("sealing it", e))?;
    }
    let fd = if rec.open_flags & k::O_ACCMODE == k::O_RDWR {
        fd
    } else {
        reopen_as_saved(fd.as_fd(), rec).ok_or_else(|| refuse(image_path, format_args!("fd {}: reopening the restored {}", rec.fd, Lossy(path))))?
    };
    let _ = rustix::fs::seek(&fd, SeekFrom::Start(rec.offset));
    park(fd, base).map_err(|e| bad("parking", e))
}

/// A signalfd for the saved mask, non-blocking as it was.
fn make_signalfd(image_path: &CStr, rec: &FdRecord, base: i32) -> Result<Parked, Refusal> {
    let bad = |e: Errno| refuse(image_path, format_args!("fd {} (signalfd): {}", rec.fd, describe(e)));
    // SAFETY: a new descriptor, owned from here on.
    let fd = unsafe { rustix::fd::FromRawFd::from_raw_fd(sys::signalfd(rec.aux).map_err(bad)?) };
    let fd: OwnedFd = fd;
    set_nonblocking(fd.as_fd(), rec).map_err(bad)?;
    park(fd, base).map_err(bad)
}

/// A timerfd on its clock, armed as it was: a relative timer with the time it had left, an
/// absolute one with its deadline; unread expirations are set back where the kernel allows it.
fn make_timerfd(image_path: &CStr, rec: &FdRecord, t: Option<ckpt_image::timerfd::TimerFdRecord>, base: i32) -> Result<Parked, Refusal> {
    use rustix::time::{timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (timerfd): {what}: {}", rec.fd, describe(e)));
    let Some(t) = t else {
        return Err(refuse(image_path, format_args!("fd {}: the timerfd has no record", rec.fd)));
    };
    let clock = match t.clock {
        0 => TimerfdClockId::Realtime,
        1 => TimerfdClockId::Monotonic,
        7 => TimerfdClockId::Boottime,
        8 => TimerfdClockId::RealtimeAlarm,
        9 => TimerfdClockId::BoottimeAlarm,
        _ => {
            return Err(refuse(image_path, format_args!("fd {}: timerfd on unknown clock {}", rec.fd, t.clock)));
        }
    };
    let mut flags = TimerfdFlags::CLOEXEC;
    if rec.open_flags & k::O_NONBLOCK != 0 {
        flags |= TimerfdFlags::NONBLOCK;
    }
    let fd = timerfd_create(clock, flags).map_err(|e| bad("making it", e))?;
    let spec = Itimerspec {
        it_interval: Timespec { tv_sec: t.interval_sec, tv_nsec: t.interval_nsec },
        it_value: Timespec { tv_sec: t.value_sec, tv_nsec: t.value_nsec },
    };
    let armed = t.value_sec != 0 || t.value_nsec != 0;
    if armed {
        let mut how = TimerfdTimerFlags::empty();
        if t.flags & ckpt_image::timerfd::TFD_TIMER_ABSTIME != 0 {
            how |= TimerfdTimerFlags::ABSTIME;
            if t.flags & ckpt_image::timerfd::TFD_TIMER_CANCEL_ON_SET != 0 {
                how |= TimerfdTimerFlags::CANCEL_ON_SET;
            }
        }
        timerfd_settime(&fd, how, &spec).map_err(|e| bad("arming it", e))?;
    }
    if t.ticks > 0 && sys::timerfd_set_ticks(fd.as_raw_fd(), t.ticks).is_err() {
        say!("myrestart: fd {} (timerfd): {} expirations not yet read are lost (this kernel cannot set them)", rec.fd, t.ticks);
    }
    park(fd, base).map_err(|e| bad("parking", e))
}

/// Most throwaway watches one inotify instance may take to fill the gaps in its numbers.
use ckpt_image::limits::MAX_WATCH_GAP as MAX_FILLERS;

/// An inotify instance with its watches added again by path, in watch-descriptor order, so
/// each gets the number the program knows. A gap in the numbers (a watch removed before the
/// checkpoint) is filled with a throwaway watch removed at once (at most [`MAX_FILLERS`] of
/// them); its removal event is drained before the program runs.
fn make_inotify(image_path: &CStr, image: &Image, rec: &FdRecord, base: i32) -> Result<Parked, Refusal> {
    use ckpt_image::inotify::{placed, record_at};
    use rustix::fs::inotify;
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (inotify): {what}: {}", rec.fd, describe(e)));
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).map_err(|e| bad("making it", e))?;
    let desc = image.inotify_desc();
    let mine = || placed(desc).filter_map(|(at, w)| w.ok().filter(|(w, _)| w.fd == rec.fd).map(|(w, _)| (at, w)));
    // This instance's watches by number: each its number and where its record starts, sorted
    // (records may come in any order).
    let watched = crate::arena::with_table(mine().count(), |order| {
        for (slot, (at, w)) in order.iter_mut().zip(mine()) {
            *slot = (w.wd as u64) << 32 | at as u64;
        }
        order.sort_unstable();
        // A throwaway watch on a pipe of our own takes each missing number: added, removed,
        // then the same again for the next (a watch removed frees its inode for a new one).
        let throwaway = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| bad("making a pipe", e))?;
        let mut link = [0u8; 64];
        let l = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", throwaway.0.as_raw_fd() as u64, b"").ok_or_else(|| bad("naming a pipe", Errno::NAMETOOLONG))?;
        let mut buf = [0u8; 4096];
        let (mut next, mut fillers) = (1i32, 0u64);
        for &e in order.iter() {
            let (w, path) = record_at(desc, (e & 0xffff_ffff) as usize).map_err(|e| refuse(image_path, format_args!("{e}")))?;
            if w.wd < next {
                continue; // a number taken twice: the first watch has it
            }
            fillers += (w.wd - next) as u64;
            if fillers > MAX_FILLERS {
                return Err(refuse(image_path, format_args!(
                    "fd {} (inotify): watch {} lies beyond more than {MAX_FILLERS} unused watch numbers, which would take too long to fill again",
                    rec.fd, w.wd
                )));
            }
            while next < w.wd {
                match inotify::add_watch(&fd, l, inotify::WatchFlags::ACCESS) {
                    Ok(wd) => {
                        let _ = inotify::remove_watch(&fd, wd);
                        next = wd + 1;
                    }
                    Err(_) => break,
                }
            }
            let Some(c) = cpath(path, &mut buf) else { continue };
            match inotify::add_watch(&fd, c, inotify::WatchFlags::from_bits_retain(w.mask)) {
                Ok(wd) if wd == w.wd => next = wd + 1,
                Ok(wd) => {
                    say!("myrestart: inotify fd {}: {} is watched again as {wd}, not {} as before", rec.fd, Lossy(path), w.wd);
                    next = wd + 1;
                }
                Err(e) => say!("myrestart: inotify fd {}: {} cannot be watched again ({}); that watch is lost", rec.fd, Lossy(path), describe(e)),
            }
        }
        Ok(fillers > 0)
    });
    let fillers = watched.map_err(|e| bad("ordering its watches", e))??;
    if fillers {
        let mut drain = [0u8; 4096];
        while rustix::io::read(&fd, &mut drain).is_ok_and(|n| n > 0) {}
    }
    set_nonblocking(fd.as_fd(), rec).map_err(|e| bad("setting its flags", e))?;
    park(fd, base).map_err(|e| bad("parking", e))
}

/// A deleted-but-open file comes back as a new unlinked file (`O_TMPFILE`) with the saved
/// contents, opened as before and at the same offset. Its directory is opened as every
/// recorded path is, never through a symbolic link ([`open_recorded`]), and the file made in
/// it without a name: nothing at any path is made or followed.
fn recreate_deleted(image_path: &CStr, rec: &FdRecord, path: &[u8], image_fd: Parked, base: i32) -> Result<Parked, Refusal> {
    let original = path.strip_suffix(b" (deleted)").unwrap_or(path);
    let dir = match original.iter().rposition(|&c| c == b'/') {
        Some(0) | None => &b"/"[..],
        Some(i) => &original[..i],
    };
    let mut buf = [0u8; 4096];
    let perm = Mode::from_raw_mode(rec.mode & 0o7777);
    let tmp_flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let candidates: [&[u8]; 3] = [dir, b"/dev/shm", b"/tmp"];
    let tmp = candidates.iter().find_map(|d| {
        let c = cpath(d, &mut buf)?;
        let dir = open_recorded(c, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        rustix::fs::openat(&dir, c".", tmp_flags, perm).ok()
    });
    let Some(tmp) = tmp else {
        return Err(refuse(image_path, format_args!("fd {}: cannot create a file to hold the contents of {}", rec.fd, Lossy(path))));
    };
    copy_from_image(image_fd, rec.blob_offset, &tmp, rec.blob_len)
        .map_err(|e| refuse(image_path, format_args!("fd {}: restoring the contents of {}: {}", rec.fd, Lossy(path), describe(e))))?;
    // Reopen through /proc to get the original access mode and status flags.
    let fd = reopen_as_saved(tmp.as_fd(), rec).ok_or_else(|| refuse(image_path, format_args!("fd {}: reopening the restored {}", rec.fd, Lossy(path))))?;
    drop(tmp);
    let _ = rustix::fs::seek(&fd, SeekFrom::Start(rec.offset));
    park(fd, base).map_err(|e| refuse(image_path, format_args!("fd {}: {}", rec.fd, describe(e))))
}

/// Copies `len` bytes of the image from `from` to the start of `to`.
fn copy_from_image(image_fd: Parked, from: u64, to: &OwnedFd, len: u64) -> Result<(), Errno> {
    copy_range(image_fd.as_fd(), from, to.as_fd(), 0, len)
}

/// Copies `len` bytes of `src` from `from` into `to` at `at`; an error if `src` ends first.
fn copy_range(src: BorrowedFd, mut from: u64, to: BorrowedFd, mut at: u64, len: u64) -> Result<(), Errno> {
    let end = at + len;
    while at < end {
        let want = (end - at).min(1 << 30) as usize;
        match rustix::io::retry_on_intr(|| rustix::fs::copy_file_range(src, Some(&mut from), to, Some(&mut at), want)) {
            Ok(0) => return Err(Errno::IO),
            Ok(_) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => return copy_slowly(src, from, to, at, end),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn copy_slowly(src: BorrowedFd, mut from: u64, to: BorrowedFd, mut at: u64, end: u64) -> Result<(), Errno> {
    let mut buf = [0u8; 16384];
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let n = rustix::io::pread(src, &mut buf[..want], from)?;
        if n == 0 {
            return Err(Errno::IO);
        }
        let mut done = 0;
        while done < n {
            done += rustix::io::pwrite(to, &buf[done..n], at + done as u64)?;
        }
        from += n as u64;
        at += n as u64;
    }
    Ok(())
}

/// A copy of a file that others could change (see `myrestart::trust`), to check and restore
/// from instead: a memfd of `size` bytes holding `src`'s bytes from `from` to `to` at the same
/// offsets (where `src` has holes, so does the copy). Nobody else can write it, so the bytes
/// checked are the bytes the program gets. `exec`: it is to be mapped executable.
pub(crate) fn private_copy(src: BorrowedFd, from: u64, to: u64, size: u64, name: &CStr, exec: bool) -> Result<OwnedFd, Errno> {
    use rustix::fs::MemfdFlags;
    let mut flags = MemfdFlags::CLOEXEC;
    if exec {
        // Where `vm.memfd_noexec` is set, a memfd is not executable unless asked; a kernel
        // before 6.3 does not know the flag, and any memfd is.
        flags |= MemfdFlags::EXEC;
    }
    let copy = match rustix::fs::memfd_create(name, flags) {
        Err(Errno::INVAL) if exec => rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?,
        other => other?,
    };
    rustix::fs::ftruncate(&copy, size)?;
    for (s, e) in ckpt_sigsafe::extents::data_extents(src, from, to.min(size)) {
        copy_range(src, s, copy.as_fd(), s, e - s)?;
    }
    Ok(copy)
}

/// `MAP_SHARED` file mappings are mapped from their files again, so the file must still cover
/// the mapped range. Shared memory (anonymous, memfd, SysV, a deleted file) is backed by one
/// memfd per object, so that the mappings of one object, and a descriptor open on it, still
/// share their pages: the restored memfd or deleted file when the process had it open, else a
/// new memfd as large as its mappings reach.
fn open_mapped_files(image_path: &CStr, image: &Image, p: &mut Plan, buf: &mut [u8; 4096]) -> Result<(), Refusal> {
    p.nfile_maps = 0;
    for i in 0..image.region_count() {
        let r = image.region(i).map_err(|e| refuse(image_path, format_args!("{e}")))?;
        let rec = r.record;
        let shared_memory = rec.is_shared() && !rec.from_file() && !rec.kind.is_kernel_special();
        if !rec.from_file() && !shared_memory && !rec.maps_private_file() {
            continue;
        }
        if p.nfile_maps == p.file_maps.len() {
            return Err(refuse(image_path, format_args!("more than {} shared mappings", p.file_maps.len())));
        }
        let slot = if shared_memory {
            shared_memory_slot(image_path, image, p, i, &r)?
        } else if rec.maps_private_file() {
            MapSlot { region: i as u32, fd: open_same_file(image_path, image, p, i, &r, buf)?, fill: false, private: true }
        } else {
            MapSlot { region: i as u32, fd: open_mapped_file(image_path, image, p, i, &r, buf)?, fill: false, private: false }
        };
        p.file_maps[p.nfile_maps] = slot;
        p.nfile_maps += 1;
    }
    Ok(())
}

/// The file that private region `i` (code, a library, read-only data the program never wrote)
/// maps again, checked to hold what it held: the same size, and the same bytes where the region
/// maps it (the content hash the checkpoint took). Its inode, device, birth and modification
/// times do not count: on another node of a cluster the same library is another file (a copy,
/// or the same NFS file on another device), and the bytes are what the program's memory holds
/// addresses into. The hash is taken on every restart, as it always was, so there is no
/// cheaper path to keep: an unchanged file costs what it did. Anything else is refused by name:
/// the image holds no copy. A file that others could change (`myrestart::trust`) is not mapped
/// itself: the bytes the region maps are copied first, and the copy is checked and mapped.
fn open_same_file(image_path: &CStr, image: &Image, p: &Plan, i: usize, r: &ckpt_image::RegionRef, buf: &mut [u8; 4096]) -> Result<Parked, Refusal> {
    let Some(m) = image.file_map(i) else {
        return Err(refuse(image_path, format_args!("region {i} is mapped from its file but has no record of it")));
    };
    let Some(c) = cpath(r.name, buf) else {
        return Err(refuse(image_path, format_args!("mapped file with an unusable path {}", Lossy(r.name))));
    };
    let changed = |what: core::fmt::Arguments<'_>| {
        refuse(image_path, format_args!(
            "{} changed since the checkpoint ({what}); the image names it instead of holding a copy of its pages (images that carry them: CKPT_SELF_CONTAINED=1, ckpt run/job --self-contained, ckpt checkpoint --self-contained)",
            Lossy(r.name)
        ))
    };
    let fd = open_recorded(c, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())
        .map_err(|e| refuse(image_path, format_args!("mapped file {}: {} (the image names it instead of holding a copy)", Lossy(r.name), NotOpened(e))))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| refuse(image_path, format_args!("{}: {}", Lossy(r.name), describe(e))))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(changed(format_args!("it is no longer a regular file")));
    }
    if st.st_size as u64 != m.size {
        return Err(changed(format_args!("{} bytes then, {} now", m.size, st.st_size)));
    }
    let me = rustix::process::geteuid().as_raw();
    let fd = if myrestart::trust::doubt(owner(&st), st.st_mode, me, true).is_some() {
        let (from, to) = (r.record.file_offset, r.record.file_offset.saturating_add(r.record.size()));
        let name = r.name.rsplit(|&c| c == b'/').next().unwrap_or(b"");
        let mut nbuf = [0u8; 4096];
        let name = cpath(&name[..name.len().min(240)], &mut nbuf).unwrap_or(c"ckpt-copy");
        private_copy(fd.as_fd(), from, to, m.size, name, r.record.prot & 4 != 0)
            .map_err(|e| refuse(image_path, format_args!("mapped file {}: copying it (others may change it): {}", Lossy(r.name), describe(e))))?
    } else {
        fd
    };
    // The bytes the region maps, hashed as the checkpoint hashed them.
    let read = |at: u64, into: &mut [u8]| rustix::io::retry_on_intr(|| rustix::io::pread(&fd, &mut *into, at));
    let hash = ckpt_image::filemaps::content_hash(m.size, r.record.file_offset, r.record.size(), &mut buf[..], read)
        .map_err(|e| refuse(image_path, format_args!("mapped file {}: {}", Lossy(r.name), describe(e))))?;
    if hash != Some(m.content_hash) {
        return Err(changed(format_args!("its contents differ")));
    }
    park(fd, p.fd_base).map_err(|e| refuse(image_path, format_args!("{}: {}", Lossy(r.name), describe(e))))
}

/// The file `MAP_SHARED` region `i` maps, opened again by its path (never through a symbolic
/// link: [`open_recorded`]), under the rule for the files the program had open: another user's
/// file where the program mapped one of ours is refused, another file of ours is named as
/// replaced and used.
fn open_mapped_file(image_path: &CStr, image: &Image, p: &Plan, i: usize, r: &ckpt_image::RegionRef, buf: &mut [u8; 4096]) -> Result<Parked, Refusal> {
    let Some(c) = cpath(r.name, buf) else {
        return Err(refuse(image_path, format_args!("mapped file with an unusable path {}", Lossy(r.name))));
    };
    let flags = if r.record.prot & 2 != 0 { OFlags::RDWR } else { OFlags::RDONLY };
    // Non-blocking, so that a path that is now a FIFO cannot hang the restart.
    let fd = open_recorded(c, flags | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())
        .map_err(|e| refuse(image_path, format_args!("mapped file {}: {}", Lossy(r.name), NotOpened(e))))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| refuse(image_path, format_args!("{}: {}", Lossy(r.name), describe(e))))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse(image_path, format_args!("mapped file {} is no longer a regular file", Lossy(r.name))));
    }
    let Some(m) = image.file_map(i) else {
        return Err(refuse(image_path, format_args!("region {i} is mapped from its file but has no record of it")));
    };
    if let Some(then) = m.owner.uid {
        if myrestart::trust::taken_over(then, owner(&st), rustix::process::geteuid().as_raw()) {
            return Err(refuse_taken(image_path, format_args!("mapped file"), r.name, owner(&st), then));
        }
    }
    if st.st_ino != r.record.inode || !m.owner.same_birth(ckpt_sigsafe::fileid::birth_time(fd.as_fd())) {
        say!("myrestart: mapped file {} was replaced since the checkpoint; using the file now at that path", Lossy(r.name));
    }
    // The mapping's last page may run past the end of the file, as it did when mapped.
    let Some(need) = r.record.file_offset.checked_add(r.record.size()) else {
        return Err(refuse(image_path, format_args!("mapped file {}: its offset and size overflow", Lossy(r.name))));
    };
    if ckpt_image::page_up(st.st_size as u64) < need {
        return Err(refuse(image_path, format_args!(
            "mapped file {} is now {} bytes, too short for its mapping (offset {} + {} bytes)",
            Lossy(r.name), st.st_size, r.record.file_offset, r.record.size()
        )));
    }
    park(fd, p.fd_base).map_err(|e| refuse(image_path, format_args!("{}: {}", Lossy(r.name), describe(e))))
}

/// The region of `image` that maps the POSIX shared memory object descriptor `rec` (path
/// `path`) is open on, if the image stores that object (`NT_CKPT_SHMFILES`).
fn shm_region_of(image: &Image, rec: &FdRecord, path: &[u8]) -> Option<(usize, ckpt_image::shmfiles::ShmFile)> {
    if rec.kind != FdKind::File || rec.same_as >= 0 || !ckpt_image::region::stores_shared_file(path, true) {
        return None;
    }
    image.shm_files().map_while(Result::ok).find_map(|m| {
        let r = image.region(m.region as usize).ok()?;
        (r.record.inode == rec.ino && r.name == path).then_some((m.region as usize, m))
    })
}

/// Descriptor `rec` (path `path`) on a POSIX shared memory object that the image stores: opened
/// again on the object its mappings share (made here if no mapping or pool made it yet), with
/// its own flags and offset. `None` for any other descriptor.
fn shm_descriptor(image_path: &CStr, image: &Image, rec: &FdRecord, path: &[u8], p: &mut Plan) -> Result<Option<Parked>, Refusal> {
    let Some((i, m)) = shm_region_of(image, rec, path) else { return Ok(None) };
    let r = image.region(i).map_err(|e| refuse(image_path, format_args!("{e}")))?;
    let object = match shared_object(p, r.record.dev, r.record.inode) {
        Some(fd) => fd,
        None => {
            if p.nshared == p.shared.len() {
                return Err(refuse(image_path, format_args!("more than {} shared memory objects", p.shared.len())));
            }
            let fd = crate::shmobj::object(image_path, r.name, i, &m, p.fd_base, &mut p.acts, &SHM_FILES)?;
            p.shared[p.nshared] = SharedSlot { dev: r.record.dev, ino: r.record.inode, fd, sized: true };
            p.nshared += 1;
            fd
        }
    };
    let bad = |e: Errno| refuse(image_path, format_args!("fd {}: {}: {}", rec.fd, Lossy(path), describe(e)));
    let fd = reopen_as_saved(object.as_fd(), rec).ok_or_else(|| refuse(image_path, format_args!("fd {}: reopening the restored {}", rec.fd, Lossy(path))))?;
    rustix::fs::seek(&fd, SeekFrom::Start(rec.offset)).map_err(bad)?;
    park(fd, p.fd_base).map(Some).map_err(bad)
}

/// How `shmobj` opens paths and judges owners: as every file of the image is.
const SHM_FILES: crate::shmobj::Files = crate::shmobj::Files { open: open_recorded, owner, taken: refuse_taken };

/// The memfd (or restored deleted file) behind shared-memory region `i`.
fn shared_memory_slot(image_path: &CStr, image: &Image, p: &mut Plan, i: usize, r: &ckpt_image::RegionRef) -> Result<MapSlot, Refusal> {
    let rec = r.record;
    let fill = rec.has_data();
    // Another mapping of the same object, already provided for.
    for s in &p.file_maps[..p.nfile_maps] {
        let Ok(o) = image.region(s.region as usize) else { continue };
        if !o.record.from_file() && o.record.inode == rec.inode && o.record.dev == rec.dev {
            return Ok(MapSlot { region: i as u32, fd: s.fd, fill, private: false });
        }
    }
    let bad = |what: &str, e: Errno| refuse(image_path, format_args!("shared memory {} at {:#x}: {what}: {}", Lossy(r.name), rec.start, describe(e)));
    // A descriptor the process had open on it (a memfd or deleted file restored from the image).
    let open = image.fds().filter_map(Result::ok).find(|(f, _)| matches!(f.kind, FdKind::MemFd | FdKind::Deleted) && f.ino == rec.inode && f.same_as < 0);
    if let Some((f, _)) = open {
        if let Some(s) = p.fds[..p.nfds].iter().find(|s| s.target == f.fd) {
            let mut link = [0u8; 64];
            let l = ckpt_sigsafe::proctext::numbered_path(&mut link, b"/proc/self/fd/", s.src.raw() as u64, b"").ok_or_else(|| bad("reopening its descriptor", Errno::NAMETOOLONG))?;
            let sealed = f.kind == FdKind::MemFd && f.aux as u32 & (k::F_SEAL_WRITE | k::F_SEAL_FUTURE_WRITE) != 0;
            let mode = if rec.prot & 2 != 0 || (fill && !sealed) { OFlags::RDWR } else { OFlags::RDONLY };
            let fd = rustix::fs::open(l, mode | OFlags::CLOEXEC, Mode::empty()).map_err(|e| bad("reopening its descriptor", e))?;
            let fd = park(fd, p.fd_base).map_err(|e| bad("parking", e))?;
            return Ok(MapSlot { region: i as u32, fd, fill: fill && !sealed, private: false });
        }
    }
    // Shared memory of a tree: made once for all its processes.
    if let Some(fd) = shared_object(p, rec.dev, rec.inode) {
        let s = SharedSlot { dev: rec.dev, ino: rec.inode, fd, sized: false };
        let fd = s.fd.dup(p.fd_base).map_err(|e| bad("sharing it", e))?;
        return Ok(MapSlot { region: i as u32, fd, fill, private: false });
    }
    // A POSIX shared memory object: put back at its path.
    if let Some(m) = image.shm_file(i) {
        let fd = crate::shmobj::object(image_path, r.name, i, &m, p.fd_base, &mut p.acts, &SHM_FILES)?;
        return Ok(MapSlot { region: i as u32, fd, fill, private: false });
    }
    // Shared memory without a descriptor: a new memfd covering every mapping of it.
    let size = (0..image.region_count())
        .filter_map(|j| image.region(j).ok())
        .filter(|o| o.record.is_shared() && !o.record.from_file() && o.record.inode == rec.inode && o.record.dev == rec.dev)
        .map(|o| o.record.file_offset.saturating_add(o.record.size()))
        .max()
        .unwrap_or(rec.size());
    let name = r.name.strip_prefix(b"/memfd:").and_then(|n| n.strip_suffix(b" (deleted)")).unwrap_or(b"ckpt-shared");
    let mut nbuf = [0u8; 4096];
    let c = cpath(&name[..name.len().min(240)], &mut nbuf).unwrap_or(c"ckpt-shared");
    let fd = rustix::fs::memfd_create(c, rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| bad("making a memfd for it", e))?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| bad("sizing its memfd", e))?;
    let fd = park(fd, p.fd_base).map_err(|e| bad("parking", e))?;
    Ok(MapSlot { region: i as u32, fd, fill, private: false })
}

/// Before the processes of a tree exist: the kernel objects they share, made once so that each
/// process (created below this one) inherits them: every pipe, holding its bytes, every
/// pseudo-terminal pair whose master is in the tree (`pty`), and shared
/// memory that no descriptor stands for. Each process then takes its ends and mappings from
/// these, by inode ([`pipe_end`], [`shared_memory_slot`]).
/// With `inherit_stdio`, no process's descriptors 0, 1 and 2 are made (each has myrestart's own,
/// as [`open_all`] gives them).
pub fn pool(image_path: &CStr, p: &mut Plan, inherit_stdio: bool) -> Result<(), Refusal> {
    let tree = TreeHas::find(image_path, p)?;
    // Per pipe: a read end seen, a write end seen, only ever as a standard descriptor.
    let mut ends = Scratch::new(p.pipes.len(), (false, false, true)).map_err(|e| pool_failed(image_path, "a table", e))?;
    for m in 0..p.ntree {
        let Some(image) = part_image(image_path, p, m)? else { continue };
        pool_pipes(image_path, &image, &mut ends, p)?;
        crate::pty::pool_member(image_path, &image, p)?;
        crate::sockets::pool_pairs(image_path, &image, &tree.socks[..tree.nsocks], p)?;
        pool_files(image_path, &image, m, &tree, p, inherit_stdio)?;
        pool_objects(image_path, &image, &tree, p)?;
        pool_shared_memory(image_path, &image, m, p)?;
    }
    size_shared_memory(image_path, &tree, p)?;
    close_ends_outside(&ends, p);
    pool_connections(image_path, p)
}

/// The TCP connections between processes of the tree (or within one), made once with their
/// bytes (`tcp`), before any process binds its listening sockets again; then the internet
/// listening sockets that several processes share, made once.
fn pool_connections(image_path: &CStr, p: &mut Plan) -> Result<(), Refusal> {
    let mut ports = crate::tcp::Ports::NONE;
    for m in 0..p.ntree {
        if let Some(image) = part_image(image_path, p, m)? {
            ports.note(&image);
        }
    }
    for m in 0..p.ntree {
        let Some(image) = part_image(image_path, p, m)? else { continue };
        for rec in crate::tcp::connections(&image) {
            if crate::tcp::made(p, rec.ino) || !ports.may_have_peer(&rec) {
                continue;
            }
            let mut far = None;
            for other in 0..p.ntree {
                let Some(o) = part_image(image_path, p, other)? else { continue };
                far = crate::tcp::far_end(&o, &rec);
                if far.is_some() {
                    break;
                }
            }
            if let (Some((far, far_fd)), Some(fdrec)) = (far, crate::tcp::fd_record(&image, &rec)) {
                crate::tcp::connect_ends(image_path, (&rec, &fdrec), (&far, &far_fd), p)?;
            }
        }
    }
    // Listening sockets that more than one process has.
    for m in 0..p.ntree {
        let Some(image) = part_image(image_path, p, m)? else { continue };
        for rec in image.sockets().filter_map(Result::ok).filter(|r| r.state & ckpt_image::sockets::LISTENING != 0) {
            let mut shared = false;
            for other in (0..p.ntree).filter(|&o| o != m) {
                let Some(o) = part_image(image_path, p, other)? else { continue };
                shared |= o.sockets().filter_map(Result::ok).any(|x| x.ino == rec.ino);
            }
            if shared {
                crate::sockets::pool_listener(image_path, &rec, p)?;
            }
        }
    }
    Ok(())
}

/// A refusal of [`pool`]: `what` it was doing failed with `e`.
fn pool_failed(image_path: &CStr, what: &str, e: Errno) -> Refusal {
    refuse(image_path, format_args!("making the tree's shared objects: {what}: {}", describe(e)))
}

/// What a tree has, found before [`pool`] makes anything: its unix sockets, and its regular
/// files by description (the members each of them is open in).
struct TreeHas {
    /// The inodes of its unix sockets.
    socks: Scratch<u64>,
    nsocks: usize,
    /// Each regular file description: device, inode, offset, flags, the members that have it,
    /// the last of them.
    keys: Scratch<(u64, u64, u64, u32, u32, usize)>,
    nkeys: usize,
    /// Memfds and deleted files (by inode), with the members that have them open or mapped.
    /// Each: inode, members that have it, the last of them, and how far any mapping of it
    /// reaches (the size its memfd needs).
    objs: Scratch<(u64, u32, usize, u64)>,
    nobjs: usize,
}

impl TreeHas {
    /// First what the tree has: every member's part read once, its tables filled.
    fn find(image_path: &CStr, p: &mut Plan) -> Result<TreeHas, Refusal> {
        // Sized for every descriptor of the tree (`tables`).
        let all = p.arena.needs.total;
        let table = |e| pool_failed(image_path, "a table", e);
        let socks = Scratch::new(all.fds, 0u64).map_err(table)?;
        let keys = Scratch::new(all.fds, (0u64, 0u64, 0u64, 0u32, 0u32, usize::MAX)).map_err(table)?;
        let objs = Scratch::new(all.fds.saturating_add(all.regions), (0u64, 0u32, usize::MAX, 0u64)).map_err(table)?;
        let mut has = TreeHas { socks, nsocks: 0, keys, nkeys: 0, objs, nobjs: 0 };
        for m in 0..p.ntree {
            let Some(image) = part_image(image_path, p, m)? else { continue };
            has.note_member(&image, m);
        }
        Ok(has)
    }

    /// What member `m` (its part `image`) has.
    fn note_member(&mut self, image: &Image, m: usize) {
        for s in image.sockets().filter_map(Result::ok) {
            if self.nsocks < self.socks.len() {
                self.socks[self.nsocks] = s.ino;
                self.nsocks += 1;
            }
        }
        for (rec, _) in image.fds().filter_map(Result::ok).filter(|(r, _)| matches!(r.kind, FdKind::MemFd | FdKind::Deleted) && r.same_as < 0) {
            self.seen_obj(rec.ino, m, 0);
        }
        for r in (0..image.region_count()).filter_map(|j| image.region(j).ok()) {
            if r.record.is_shared() && !r.record.from_file() && !r.record.kind.is_kernel_special() {
                self.seen_obj(r.record.inode, m, r.record.file_offset.saturating_add(r.record.size()));
            }
        }
        let max_keys = self.keys.len();
        for (rec, _) in image.fds().filter_map(Result::ok).filter(|(r, path)| poolable(image, r, path)) {
            let key = (rec.dev, rec.ino, rec.offset, rec.open_flags);
            match self.keys[..self.nkeys].iter_mut().find(|k| (k.0, k.1, k.2, k.3) == key) {
                Some(k) if k.5 != m => {
                    k.4 += 1;
                    k.5 = m;
                }
                Some(_) => {}
                None if self.nkeys < max_keys => {
                    self.keys[self.nkeys] = (key.0, key.1, key.2, key.3, 1, m);
                    self.nkeys += 1;
                }
                None => {}
            }
        }
    }

    /// The memfd or deleted file `ino`, open or mapped by member `m` up to `end`.
    fn seen_obj(&mut self, ino: u64, m: usize, end: u64) {
        let max_objs = self.objs.len();
        match self.objs[..self.nobjs].iter_mut().find(|o| o.0 == ino) {
            Some(o) => {
                if o.2 != m {
                    o.1 += 1;
                    o.2 = m;
                }
                o.3 = o.3.max(end);
            }
            None if self.nobjs < max_objs => {
                self.objs[self.nobjs] = (ino, 1, m, end);
                self.nobjs += 1;
            }
            None => {}
        }
    }
}

/// The pipes of one member (its part `image`): which ends of each the tree has (`ends`, by
/// pipe slot), and the bytes in each, put back once.
fn pool_pipes(image_path: &CStr, image: &Image, ends: &mut [(bool, bool, bool)], p: &mut Plan) -> Result<(), Refusal> {
    for (rec, path) in image.fds().filter_map(Result::ok) {
        if rec.kind != FdKind::Pipe || !path.starts_with(b"pipe:[") || rec.same_as >= 0 {
            continue;
        }
        let i = pipe_slot(image_path, &rec, p, true)?;
        let reader = rec.open_flags & k::O_ACCMODE == k::O_RDONLY;
        if reader {
            ends[i].0 = true;
        } else {
            ends[i].1 = true;
        }
        ends[i].2 &= rec.fd < 3;
        // The bytes in it, once (every process that had a read end saw the same bytes).
        if rec.blob_len > 0 && !core::mem::replace(&mut p.pipes[i].has_rd, true) {
            let wr = p.pipes[i].wr.ok_or(Errno::BADF).map_err(|e| pool_failed(image_path, "putting back a pipe's bytes", e))?;
            fill_pipe(p.image_fd, rec.blob_offset, wr.as_fd(), rec.blob_len).map_err(|e| pool_failed(image_path, "putting back a pipe's bytes", e))?;
        }
    }
    Ok(())
}

/// Whether `rec` (of the part `image`) may be an open file description its process shares with
/// others of the tree (the first descriptor of a regular file), or surely is, if another holds
/// it too: a directory or device with an exclusive `flock` lock on it, which no two
/// descriptions can both hold (each process opening its own would make the second lock fail).
/// Not a descriptor of a POSIX shared memory object the image stores (`shm_descriptor`).
fn poolable(image: &Image, rec: &FdRecord, path: &[u8]) -> bool {
    use ckpt_image::locks::LockKind;
    let locked = || image.locks().filter_map(Result::ok).any(|l| l.fd == rec.fd && l.kind == LockKind::Flock && l.write_lock());
    rec.same_as < 0 && ((rec.kind == FdKind::File && shm_region_of(image, rec, path).is_none()) || (matches!(rec.kind, FdKind::Directory | FdKind::Device) && locked()))
}

/// A regular file open in more than one process with the same offset and flags: the
/// description they share since fork, opened once (two processes that each opened it at the
/// same place are taken for one: the offsets then move together). And a log that is gone, made
/// once for the whole tree (without a name until every check has passed), whichever processes
/// have it. For member `m`, whose part is `image`.
fn pool_files(image_path: &CStr, image: &Image, m: usize, tree: &TreeHas, p: &mut Plan, inherit_stdio: bool) -> Result<(), Refusal> {
    let mut buf = [0u8; 4096];
    let wanted = |r: &FdRecord, path: &[u8]| poolable(image, r, path) && !(inherit_stdio && (0..3).contains(&r.fd));
    for (rec, path) in image.fds().filter_map(Result::ok).filter(|(r, path)| wanted(r, path)) {
        let key = (rec.dev, rec.ino, rec.offset, rec.open_flags);
        let shared = tree.keys[..tree.nkeys].iter().any(|k| (k.0, k.1, k.2, k.3) == key && k.4 > 1);
        let mut gone = || rec.is_std_log() && gone_log(p, &rec).is_none() && cpath(path, &mut buf).is_some_and(|c| matches!(rustix::fs::stat(c), Err(Errno::NOENT)));
        if !(shared || gone()) || shared_file(p, &rec).is_some() || p.nfiles == p.files.len() {
            continue;
        }
        (p.acts.member, p.acts.pooled) = (m, true);
        let fd = reopen(image_path, &rec, path, &mut buf, p.fd_base, &mut p.acts);
        p.acts.pooled = false;
        let fd = fd?;
        let unnamed = rustix::fs::fstat(fd.as_fd()).is_ok_and(|st| st.st_nlink == 0);
        p.files[p.nfiles] = SharedFile { dev: rec.dev, ino: rec.ino, offset: rec.offset, flags: rec.open_flags, fd, gone: unnamed };
        p.nfiles += 1;
    }
    Ok(())
}

/// A memfd or deleted file open (or mapped) in more than one process: one file for all, its
/// contents put back once. For one member, whose part is `image`.
fn pool_objects(image_path: &CStr, image: &Image, tree: &TreeHas, p: &mut Plan) -> Result<(), Refusal> {
    for (rec, path) in image.fds().filter_map(Result::ok) {
        if !matches!(rec.kind, FdKind::MemFd | FdKind::Deleted) || rec.same_as >= 0 || shared_object(p, u64::MAX, rec.ino).is_some() {
            continue;
        }
        if !tree.objs[..tree.nobjs].iter().any(|o| o.0 == rec.ino && o.1 > 1) || p.nshared == p.shared.len() {
            continue;
        }
        let rw = FdRecord { open_flags: (rec.open_flags & !k::O_ACCMODE) | k::O_RDWR, offset: 0, ..rec };
        let fd = if rec.kind == FdKind::MemFd {
            recreate_memfd(image_path, &rw, path, p.image_fd, p.fd_base)?
        } else {
            recreate_deleted(image_path, &rw, path, p.image_fd, p.fd_base)?
        };
        p.shared[p.nshared] = SharedSlot { dev: u64::MAX, ino: rec.ino, fd, sized: false };
        p.nshared += 1;
    }
    Ok(())
}

/// Shared memory of one member (its part `image`) that no descriptor of it stands for: a memfd
/// for each, once for the tree (sized by [`size_shared_memory`]).
fn pool_shared_memory(image_path: &CStr, image: &Image, m: usize, p: &mut Plan) -> Result<(), Refusal> {
    for (i, r) in (0..image.region_count()).filter_map(|j| image.region(j).ok().map(|r| (j, r))) {
        let rec = r.record;
        if !rec.is_shared() || rec.from_file() || rec.kind.is_kernel_special() {
            continue;
        }
        let open = image.fds().filter_map(Result::ok).any(|(f, _)| matches!(f.kind, FdKind::MemFd | FdKind::Deleted) && f.ino == rec.inode);
        if open || shared_object(p, rec.dev, rec.inode).is_some() {
            continue;
        }
        if p.nshared == p.shared.len() {
            return Err(refuse(image_path, format_args!("more than {} shared memory objects", p.shared.len())));
        }
        // A POSIX shared memory object: put back at its path, sized as it was (by this member's
        // acts).
        if let Some(shm) = image.shm_file(i) {
            p.acts.member = m;
            let fd = crate::shmobj::object(image_path, r.name, i, &shm, p.fd_base, &mut p.acts, &SHM_FILES)?;
            p.shared[p.nshared] = SharedSlot { dev: rec.dev, ino: rec.inode, fd, sized: true };
            p.nshared += 1;
            continue;
        }
        let fd = rustix::fs::memfd_create(c"ckpt-shared", rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| pool_failed(image_path, "a memfd", e))?;
        let fd = park(fd, p.fd_base).map_err(|e| pool_failed(image_path, "parking", e))?;
        p.shared[p.nshared] = SharedSlot { dev: rec.dev, ino: rec.inode, fd, sized: false };
        p.nshared += 1;
    }
    Ok(())
}

/// Each shared memfd made for mappings as large as the furthest any process maps it.
fn size_shared_memory(image_path: &CStr, tree: &TreeHas, p: &Plan) -> Result<(), Refusal> {
    for s in p.shared[..p.nshared].iter().filter(|s| s.dev != u64::MAX && !s.sized) {
        let size = tree.objs[..tree.nobjs].iter().find(|o| o.0 == s.ino).map_or(0, |o| o.3);
        rustix::fs::ftruncate(s.fd.as_fd(), size).map_err(|e| pool_failed(image_path, "sizing a memfd", e))?;
    }
    Ok(())
}

/// Closes each pooled pipe's end that no process of the tree had (`ends`, from
/// [`pool_pipes`]): that end was outside the tree. Each pipe's `has_rd`, which marked there
/// that its bytes were put back, is cleared.
fn close_ends_outside(ends: &[(bool, bool, bool)], p: &mut Plan) {
    for (s, &(rd, wr, std_only)) in p.pipes[..p.npipes].iter_mut().zip(ends.iter()) {
        s.has_rd = false;
        for (had, fd, which) in [(rd, &mut s.rd, "read"), (wr, &mut s.wr, "write")] {
            if !had || std_only && !(rd && wr) {
                // A standard descriptor's pipe that leads outside the tree: each process has
                // myrestart's own descriptor there instead (no end of it is made).
                if !std_only {
                    say!("myrestart: pipe:[{}] comes back with its {which} end closed (it was outside the process tree)", s.ino);
                }
                if let Some(fd) = fd.take() {
                    // SAFETY: a parked descriptor of ours that nothing else refers to.
                    unsafe { rustix::io::close(fd.raw()) };
                }
            }
        }
    }
}

/// The owners of the files a tree's processes will judge, as the user IDs outside any user
/// namespace: device, inode, owner. Filled by the first myrestart before the tree's processes
/// exist, which each inherit a copy.
/// Its table is sized from the image (a file for each descriptor, region, working directory and
/// program file of the tree), mapped for it, and inherited by the tree's processes.
struct Owners {
    n: usize,
    e: Option<crate::arena::Scratch<(u64, u64, u32)>>,
}

static mut OWNERS: Owners = Owners { n: 0, e: None };

/// Who owns the file `st` describes, in the user IDs outside: a tree's processes are planned in
/// a user namespace of the restarting user's own when that user is not root, where every ID but
/// the user's own shows as the overflow ID (65534), so root's files (the system's libraries)
/// would look like another user's. What [`learn_owners`] found outside comes first.
pub(crate) fn owner(st: &rustix::fs::Stat) -> u32 {
    // SAFETY: myrestart is single-threaded; `OWNERS` is written only by `learn_owners`, before
    // the tree's processes exist, and only read here.
    let owners = unsafe { &*core::ptr::addr_of!(OWNERS) };
    let known = owners.e.as_deref().map_or(&[][..], |e| &e[..owners.n]);
    known.iter().find(|e| (e.0, e.1) == (st.st_dev, st.st_ino)).map_or(st.st_uid, |e| e.2)
}

/// Before a tree's processes are made (and enter a user namespace, [`owner`]): the owner of
/// every file any of them will open or map by its path, its working directory and its program
/// file, as they are now. A path that does not open is skipped: the process that needs it says
/// why.
pub fn learn_owners(image_path: &CStr, p: &mut Plan) -> Result<(), Refusal> {
    // SAFETY: as in `owner`; the only reference to `OWNERS` while it lives.
    let owners = unsafe { &mut *core::ptr::addr_of_mut!(OWNERS) };
    owners.n = 0;
    let all = p.arena.needs.total;
    let most = all.fds.saturating_add(all.regions).saturating_add(2 * p.ntree + 2);
    let table = crate::arena::Scratch::new(most, (0, 0, 0))
        .map_err(|e| refuse(image_path, format_args!("cannot map a table for the owners of {most} files: {}", describe(e))))?;
    let e = owners.e.insert(table);
    let mut note = |path: &[u8]| {
        let mut buf = [0u8; 4096];
        let Some(c) = cpath(path, &mut buf) else { return };
        let Ok(fd) = open_recorded(c, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) else { return };
        let Ok(st) = rustix::fs::fstat(&fd) else { return };
        if owners.n < e.len() && !e[..owners.n].iter().any(|e| (e.0, e.1) == (st.st_dev, st.st_ino)) {
            e[owners.n] = (st.st_dev, st.st_ino, st.st_uid);
            owners.n += 1;
        }
    };
    for m in 0..p.ntree {
        let Some(image) = part_image(image_path, p, m)? else { continue };
        note(p.state.cwd.as_bytes());
        note(p.state.exe.as_bytes());
        for (rec, path) in image.fds().filter_map(Result::ok) {
            let named = matches!(rec.kind, FdKind::File | FdKind::Directory | FdKind::Device) || (rec.kind == FdKind::Pipe && !path.starts_with(b"pipe:["));
            if named && rec.same_as < 0 {
                note(path);
            }
        }
        for r in (0..image.region_count()).filter_map(|j| image.region(j).ok()) {
            if ckpt_image::filemaps::needs_record(&r.record) {
                note(r.name);
            }
        }
    }
    Ok(())
}

/// The image of process `m` of a tree (its state decoded into `p.state`), or `None` for a
/// zombie, which has none.
fn part_image(image_path: &CStr, p: &mut Plan, m: usize) -> Result<Option<Image<'static>>, Refusal> {
    let part = p.tree[m];
    if part.rec.is_zombie() {
        return Ok(None);
    }
    // SAFETY: the part's headers, mapped by the plan and never unmapped before the point of no
    // return.
    let meta: &'static [u8] = unsafe { core::slice::from_raw_parts(part.meta as *const u8, part.meta_len) };
    Image::parse(meta, p.file_len, &mut p.state).map(Some).map_err(|e| refuse(image_path, format_args!("{e}")))
}

/// Descriptor `rec` from the tree's one copy of its file, `f`: with `same`, a regular file
/// shares that open file description (and so its offset) with the other processes; otherwise
/// it is opened again with this descriptor's own flags: a memfd or deleted file at its offset,
/// a log made again (empty) at its start.
fn from_pool(image_path: &CStr, rec: &FdRecord, path: &[u8], (f, same): (Parked, bool), base: i32) -> Result<Parked, Refusal> {
    let bad = |e: Errno| refuse(image_path, format_args!("fd {}: {}: {}", rec.fd, Lossy(path), describe(e)));
    let tree_copy = f.as_fd();
    if same {
        return f.dup(base).map_err(bad);
    }
    let fd = reopen_as_saved(tree_copy, rec).ok_or_else(|| refuse(image_path, format_args!("fd {}: reopening the restored {}", rec.fd, Lossy(path))))?;
    if rec.kind != FdKind::File {
        let _ = rustix::fs::seek(&fd, SeekFrom::Start(rec.offset));
    }
    park(fd, base).map_err(bad)
}

/// The tree's log made again for `rec`'s (it was gone), if the pool made one.
fn gone_log(p: &Plan, rec: &FdRecord) -> Option<Parked> {
    p.files[..p.nfiles].iter().find(|f| f.gone && (f.dev, f.ino) == (rec.dev, rec.ino)).map(|f| f.fd)
}

/// The tree's one copy of a shared memory object: by device and inode as a region names it,
/// or (a memfd or deleted file made from a descriptor's record, `dev` `u64::MAX` in the table)
/// by inode alone.
fn shared_object(p: &Plan, dev: u64, ino: u64) -> Option<Parked> {
    p.shared[..p.nshared].iter().find(|s| s.ino == ino && (s.dev == dev || s.dev == u64::MAX)).map(|s| s.fd)
}

/// The tree's shared open file that `rec` stands for, if it is one.
fn shared_file(p: &Plan, rec: &FdRecord) -> Option<Parked> {
    p.files[..p.nfiles].iter().find(|f| (f.dev, f.ino, f.offset, f.flags) == (rec.dev, rec.ino, rec.offset, rec.open_flags)).map(|f| f.fd)
}

/// Whether descriptor `fd` exists in the restored process: one made again, or a standard one
/// it shares with myrestart.
pub fn restored_fd(p: &Plan, fd: i32) -> bool {
    p.fds[..p.nfds].iter().any(|s| s.target == fd) || ((0..3).contains(&fd) && !p.close_std[fd as usize])
}

/// After the point of no return: every restored descriptor at its number, nothing else below
/// the parking area. The parked descriptors themselves are closed by the caller at the end.
pub fn install(p: &Plan) -> Result<(), (i32, Errno)> {
    // After the point of no return this process is the target and owns every descriptor below
    // the parking area outright; nothing holds an `OwnedFd` for any of them (myrestart's own
    // are all parked at or above `fd_base`).
    if p.fd_base > 3 {
        // SAFETY: as above.
        unsafe { sys::close_range(3, p.fd_base as u32 - 1) };
    }
    for (fd, close) in p.close_std.iter().enumerate() {
        if *close {
            // SAFETY: as above.
            unsafe { rustix::io::close(fd as i32) };
        }
    }
    for s in &p.fds[..p.nfds] {
        // SAFETY: as above; `target` is below the parking area, `src` a parked descriptor.
        unsafe { sys::dup3(s.src.raw(), s.target, if s.cloexec { O_CLOEXEC } else { 0 }) }.map_err(|e| (s.target, e))?;
    }
    Ok(())
}
