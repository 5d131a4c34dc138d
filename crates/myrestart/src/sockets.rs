//! Sockets, before the point of no return: each is made again from its record and parked like
//! every other descriptor.
//!
//! - a pair of `AF_UNIX` sockets both in the process comes back as a new pair, with the bytes
//!   that were queued each way (message by message for datagrams) and its shutdown state;
//! - a listening socket is bound to its address again and listens; pending, unaccepted
//!   connections are gone. A unix socket with a path is bound (and listens) only once every
//!   check has passed (`acts.rs`), after a look that changes nothing: the path must be free,
//!   or hold a dead socket file of the user's own (one that refuses connections), which is
//!   then replaced; anything else there is left alone and the restart refused;
//! - a bound datagram socket is bound again (a path, as above); one connected to an address is
//!   connected again (a unix one once its process's sockets are bound);
//! - a stream socket connected to something outside the process cannot be resumed: it comes
//!   back reset, so the program's next read fails with ECONNRESET (and a write with EPIPE) and
//!   its own reconnect logic runs; a unix one whose peer had closed comes back with its peer
//!   closed. A TCP socket that has a port but neither listens nor is connected is a connection
//!   that ended or was still being made: it comes back reset too, its port left alone.
//!
//! Each socket that does not come back whole is named on stderr, one line.

use crate::acts::{Act, What};
use crate::fds::{park, set_nonblocking, unix, unix_path, Parked};
use crate::plan::{PairSlot, Plan};
use crate::refusal::{refuse, Refusal};
use ckpt_image::fds::FdRecord;
use ckpt_image::sockets::{self as s, SocketRecord};
use ckpt_image::Image;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::say;
use ckpt_sigsafe::sockets::Addr;
use core::ffi::CStr;
use linux_raw_sys::net as n;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::net::{sockopt, AddressFamily, Protocol, SendFlags, SocketAddrAny, SocketFlags, SocketType};

fn family(rec: &SocketRecord) -> AddressFamily {
    AddressFamily::from_raw(rec.family)
}

fn sock_type(rec: &SocketRecord) -> SocketType {
    SocketType::from_raw(rec.sock_type as u32)
}

fn is_stream(rec: &SocketRecord) -> bool {
    rec.sock_type as u32 != n::SOCK_DGRAM
}

/// A socket address from its saved bytes.
fn sockaddr(bytes: &[u8]) -> SocketAddrAny {
    let mut storage = core::mem::MaybeUninit::<rustix::net::addr::SocketAddrStorage>::zeroed();
    let len = bytes.len().min(core::mem::size_of::<rustix::net::addr::SocketAddrStorage>());
    // SAFETY: `storage` is large enough for `len` bytes and is zeroed beyond them.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), storage.as_mut_ptr() as *mut u8, len);
        SocketAddrAny::new(storage, len as rustix::net::addr::SocketAddrLen)
    }
}

fn new_socket(rec: &SocketRecord) -> Result<OwnedFd, Errno> {
    let proto = core::num::NonZeroU32::new(rec.protocol).map(Protocol::from_raw);
    rustix::net::socket_with(family(rec), sock_type(rec), SocketFlags::CLOEXEC, proto)
}

/// The options of the record that a new socket does not already have (`SO_REUSEADDR` last, in
/// [`bind_again`]).
fn set_options(fd: BorrowedFd, rec: &SocketRecord) {
    let on = |bit| rec.options & bit != 0;
    if on(s::OPT_REUSEPORT) {
        let _ = sockopt::set_socket_reuseport(fd, true);
    }
    if on(s::OPT_KEEPALIVE) {
        let _ = sockopt::set_socket_keepalive(fd, true);
    }
    if on(s::OPT_BROADCAST) {
        let _ = sockopt::set_socket_broadcast(fd, true);
    }
    if on(s::OPT_OOBINLINE) {
        let _ = sockopt::set_socket_oobinline(fd, true);
    }
    if on(s::OPT_PASSCRED) {
        let _ = sockopt::set_socket_passcred(fd, true);
    }
    if rec.family as u32 == n::AF_INET6 {
        let _ = sockopt::set_ipv6_v6only(fd, on(s::OPT_V6ONLY));
    }
    if on(s::OPT_NODELAY) {
        let _ = sockopt::set_tcp_nodelay(fd, true);
    }
    // TCP sizes its buffers itself unless told; a size set by hand is what getsockopt shows,
    // and the kernel doubles what it is given.
    if unix(rec) || !is_stream(rec) {
        if rec.sndbuf > 0 {
            let _ = sockopt::set_socket_send_buffer_size(fd, rec.sndbuf as usize / 2);
        }
        if rec.rcvbuf > 0 {
            let _ = sockopt::set_socket_recv_buffer_size(fd, rec.rcvbuf as usize / 2);
        }
    }
}

/// Binds `fd` to the record's address, when that leaves nothing on disk: an internet address,
/// taken even if connections of the dead process linger on it (`SO_REUSEADDR` for the bind,
/// then as it was), or an abstract or unnamed unix one. A unix socket with a path is bound once
/// every check has passed ([`bind_planned`]).
fn bind_again(fd: BorrowedFd, rec: &SocketRecord) -> Result<(), Errno> {
    let addr = sockaddr(rec.addr());
    if unix(rec) {
        return rustix::net::bind(fd, &addr);
    }
    sockopt::set_socket_reuseaddr(fd, true)?;
    let r = rustix::net::bind(fd, &addr);
    let _ = sockopt::set_socket_reuseaddr(fd, rec.options & s::OPT_REUSEADDR != 0);
    r
}

/// The directory part of a socket's path (`.` for a bare name, `/` for one at the root) and
/// its last component.
fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

/// Before a unix socket is bound to its path again, a look that changes nothing: the path must
/// be free, or hold a socket file of this user's own that refuses connections (the
/// checkpointed program's, whose listener died), which is replaced once every check has
/// passed. Anything else there (a regular file, a FIFO, another user's socket, a socket that
/// answers) is left alone, and the restart refused. Returns the dead socket's device and inode,
/// and the socket's directory, opened (`O_PATH`) to be parked: the dead file is looked at and
/// removed again through it, by its name there ([`bind_planned`]), so that a directory renamed
/// or replaced meanwhile cannot make another file go.
fn probe_path(image_path: &CStr, rec: &SocketRecord, path: &[u8]) -> Result<(Option<(u64, u64)>, OwnedFd), Refusal> {
    let refused = |what: core::fmt::Arguments| refuse(image_path, format_args!("fd {} (socket {}): {what}", rec.fd, Addr(rec.addr())));
    let (dir, name) = split_path(path);
    let (mut dbuf, mut nbuf) = ([0u8; 4096], [0u8; 4096]);
    let (Some(dir), Some(name)) = (crate::fds::cpath(dir, &mut dbuf), crate::fds::cpath(name, &mut nbuf)) else {
        return Err(refused(format_args!("its path is not usable")));
    };
    // The directory as the program's bind found it (symbolic links followed, as bind does); it
    // must let us make the socket file there (bound only after every check, a bind that fails
    // then would have to take back what was made before it).
    let dir_fd = rustix::fs::open(dir, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .map_err(|e| refused(format_args!("its directory: {}", describe(e))))?;
    let usable = rustix::fs::accessat(&dir_fd, c".", rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK, rustix::fs::AtFlags::EACCESS);
    if let Err(e) = usable {
        return Err(refused(format_args!("its directory: {}", describe(e))));
    }
    let st = match rustix::fs::statat(&dir_fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok((None, dir_fd)),
        Err(e) => {
            return Err(refused(format_args!("{}", describe(e))));
        }
        Ok(st) => st,
    };
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::Socket {
        return Err(refused(format_args!("{} is at that path, not a socket; it is left as it is (move it away to restart)", file_kind(kind))));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(refused(format_args!("another user's socket (uid {}) is at that path; it is left as it is", st.st_uid)));
    }
    // Non-blocking: a listener whose queue of connections is full would hold a blocking connect
    // until it accepts one (maybe never); such a socket is alive.
    let proto = core::num::NonZeroU32::new(rec.protocol).map(Protocol::from_raw);
    let probe = rustix::net::socket_with(family(rec), sock_type(rec), SocketFlags::CLOEXEC | SocketFlags::NONBLOCK, proto)
        .map_err(|e| refused(format_args!("{}", describe(e))))?;
    match rustix::net::connect(&probe, &sockaddr(rec.addr())) {
        Err(Errno::CONNREFUSED) => Ok((Some((st.st_dev, st.st_ino)), dir_fd)),
        Ok(()) | Err(Errno::AGAIN | Errno::INPROGRESS) => {
            Err(refused(format_args!("a process listens on {} now: {}", Lossy(path), describe(Errno::ADDRINUSE))))
        }
        Err(e) => {
            Err(refused(format_args!("{}: {}", Lossy(path), describe(e))))
        }
    }
}

/// A file type, named for a message.
fn file_kind(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "something",
    }
}

/// Once every check has passed: socket `a.fd` bound to its path, the dead socket file the plan
/// found there (`stale`) removed first if it is still the one there; then it listens, if it
/// did. The dead file is looked at and removed by its name in the directory the plan parked
/// (`a.dir`), so that nothing but that file can go. The bind itself takes the socket's own
/// address (which the program, and its peers, see again with `getsockname`), and the file it
/// makes is then found in the parked directory, or the restart is refused (the directory was
/// moved meanwhile). Returns the device and inode of the socket file made.
pub fn bind_planned(image_path: &CStr, image: &Image, a: &Act, stale: Option<(u64, u64)>) -> Result<(u64, u64), Refusal> {
    let Some(rec) = image.sockets().filter_map(Result::ok).find(|s| s.fd == a.target) else {
        return Err(refuse(image_path, format_args!("fd {}: the socket to bind again has no record", a.target)));
    };
    let fail = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (socket {}): {what}: {}", rec.fd, Addr(rec.addr()), describe(e)));
    let moved = || refuse(image_path, format_args!("fd {} (socket {}): its path changed while the restart was planned; nothing there was touched", rec.fd, Addr(rec.addr())));
    let mut buf = [0u8; 4096];
    let Some(c) = crate::acts::path_of(image, a, &mut buf) else {
        return Err(refuse(image_path, format_args!("fd {} (socket {}): its path is not usable", rec.fd, Addr(rec.addr()))));
    };
    let (dir, name) = crate::acts::where_named(a, c);
    let now = |flags| rustix::fs::statat(dir, name, flags).map(|st| (st.st_dev, st.st_ino));
    if let Some(dead) = stale {
        match now(rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(there) if there == dead => rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()).map_err(|e| fail("removing the dead socket file at its path", e))?,
            Err(Errno::NOENT) => {}
            _ => {
                return Err(moved());
            }
        }
    }
    let sock = a.fd.as_fd();
    rustix::net::bind(sock, &sockaddr(rec.addr())).map_err(|e| fail("binding it to its address again", e))?;
    // What the bind made, as the parked directory has it and as its path has it: the same file,
    // unless the directory was moved or replaced since the plan (the file made elsewhere is
    // then left, the restart refused: removing by path what another directory holds is what
    // must not happen).
    let made = match (now(rustix::fs::AtFlags::SYMLINK_NOFOLLOW), rustix::fs::lstat(c).map(|st| (st.st_dev, st.st_ino))) {
        (Ok(here), Ok(there)) if here == there => here,
        _ => {
            return Err(moved());
        }
    };
    let listening = if rec.state & s::LISTENING != 0 { rustix::net::listen(sock, backlog(&rec)) } else { Ok(()) };
    if let Err(e) = listening {
        if now(rustix::fs::AtFlags::SYMLINK_NOFOLLOW) == Ok(made) {
            let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
        }
        return Err(fail("listening", e));
    }
    Ok(made)
}

/// The backlog a listening socket gets again: as it was; 4096, the kernel's default SOMAXCONN,
/// when unknown (the kernel caps any backlog at net.core.somaxconn).
fn backlog(rec: &SocketRecord) -> i32 {
    if rec.backlog > 0 { rec.backlog as i32 } else { 4096 }
}

/// Puts the queued bytes of `rec` (its blob) back, by sending them through `through`, the
/// other end of its new pair. Returns the bytes that could not be put back.
fn refill(through: BorrowedFd, rec: &FdRecord, image_fd: Parked, stream: bool) -> Result<u64, Errno> {
    if rec.blob_len == 0 {
        return Ok(0);
    }
    let img = image_fd.as_fd();
    let (mut at, end) = (rec.blob_offset, rec.blob_offset + rec.blob_len);
    let mut buf = [0u8; 16384];
    let mut lost = 0u64;
    while at < end {
        let mut header = [0u8; s::FRAME_HEADER];
        read_exact(img, &mut header, at)?;
        let len = s::frame_len(header) as u64;
        at += s::FRAME_HEADER as u64;
        if at + len > end {
            return Err(Errno::IO);
        }
        if stream {
            let mut done = 0;
            while done < len {
                let want = ((len - done) as usize).min(buf.len());
                read_exact(img, &mut buf[..want], at + done)?;
                match send_all(through, &buf[..want]) {
                    Ok(()) => {}
                    Err(Errno::AGAIN) => lost += want as u64,
                    Err(e) => return Err(e),
                }
                done += want as u64;
            }
        } else {
            // A message goes in one piece: through a mapping of its size.
            let room = (len as usize).max(1);
            // SAFETY: a fresh private anonymous mapping, unmapped below.
            let p = unsafe {
                rustix::mm::mmap_anonymous(core::ptr::null_mut(), room, rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE, rustix::mm::MapFlags::PRIVATE)
            }?;
            // SAFETY: the mapping is `room` bytes, ours until unmapped.
            let msg = unsafe { core::slice::from_raw_parts_mut(p as *mut u8, len as usize) };
            let r = read_exact(img, msg, at).and_then(|()| rustix::net::send(through, msg, SendFlags::DONTWAIT));
            // SAFETY: our mapping; `msg` is not used after this.
            let _ = unsafe { rustix::mm::munmap(p, room) };
            match r {
                Ok(_) => {}
                Err(Errno::AGAIN) => lost += len,
                Err(e) => return Err(e),
            }
        }
        at += len;
    }
    Ok(lost)
}

fn read_exact(img: BorrowedFd, buf: &mut [u8], mut from: u64) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::retry_on_intr(|| rustix::io::pread(img, &mut buf[got..], from)) {
            Ok(0) => return Err(Errno::IO),
            Ok(k) => {
                got += k;
                from += k as u64;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_all(fd: BorrowedFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::retry_on_intr(|| rustix::net::send(fd, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)) {
            Ok(k) => buf = &buf[k..],
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A TCP socket whose connection was reset: a connection to a listener of our own on the
/// loopback address, aborted from the far side (`SO_LINGER` 0 sends a reset).
fn reset_tcp(rec: &SocketRecord) -> Result<OwnedFd, Errno> {
    use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let listener = new_socket(rec)?;
    if rec.family as u32 == n::AF_INET6 {
        rustix::net::bind(&listener, &SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0))?;
    } else {
        rustix::net::bind(&listener, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    }
    rustix::net::listen(&listener, 1)?;
    let at = rustix::net::getsockname(&listener)?;
    let sock = new_socket(rec)?;
    rustix::net::connect(&sock, &at)?;
    let far = rustix::net::accept(&listener)?;
    sockopt::set_socket_linger(&far, Some(core::time::Duration::ZERO))?;
    drop(far);
    Ok(sock)
}

/// Makes socket `rec` (descriptor record `fdrec`) again; returns its parked descriptor.
pub fn make(image_path: &CStr, fdrec: &FdRecord, rec: &SocketRecord, image_fd: Parked, p: &mut Plan) -> Result<Parked, Refusal> {
    let fd = rec.fd;
    if fdrec.aux & ckpt_image::fds::LOST_PASSED_FDS != 0 {
        say!("myrestart: fd {fd}: descriptors passed in messages queued on it were not saved; they are lost");
    }
    let fail = |what: &str, e: Errno| refuse(image_path, format_args!("fd {fd} (socket {}): {what}: {}", Addr(rec.addr()), describe(e)));
    let pooled = p.pairs[..p.npairs].iter().any(|s| s.pooled && s.ino.contains(&rec.ino));
    // A unix socket to bind to its path later, the dead socket file there to replace, and the
    // directory it is in.
    let mut planned = None;
    let sock = if rec.state & s::PAIRED != 0 || pooled {
        return pair_end(image_path, fdrec, rec, image_fd, p);
    } else if rec.state & s::LISTENING != 0 {
        let sock = new_socket(rec).map_err(|e| fail("making it", e))?;
        set_options(sock.as_fd(), rec);
        if let Some(path) = unix_path(rec) {
            // Bound and listening once every check has passed (`acts.rs`).
            planned = Some(probe_path(image_path, rec, path)?);
        } else {
            bind_again(sock.as_fd(), rec).map_err(|e| fail("binding it to its address again", e))?;
            rustix::net::listen(&sock, backlog(rec)).map_err(|e| fail("listening", e))?;
        }
        sock
    } else if unix(rec) && is_stream(rec) && (rec.peer_ino != 0 || peer_gone(rec)) {
        outside_unix_stream(rec, fdrec, image_fd).map_err(|e| fail("making it", e))?
    } else if !unix(rec) && is_stream(rec) && rec.state & s::CONNECTED != 0 {
        say!("myrestart: fd {fd} (TCP connection to {}) comes back reset: its next read fails with ECONNRESET", Addr(rec.peer()));
        reset_tcp(rec).map_err(|e| fail("making a reset connection", e))?
    } else if !unix(rec) && is_stream(rec) && rec.state & s::BOUND != 0 {
        // A TCP socket with a port that neither listens nor is connected is a connection that
        // ended (or was still being made): its port is the listener's or an ephemeral one, not
        // to be taken again.
        say!("myrestart: fd {fd} (TCP socket on {}, its connection over) comes back as a reset connection", Addr(rec.addr()));
        reset_tcp(rec).map_err(|e| fail("making a reset connection", e))?
    } else {
        let sock = new_socket(rec).map_err(|e| fail("making it", e))?;
        set_options(sock.as_fd(), rec);
        match unix_path(rec) {
            Some(path) if rec.state & s::BOUND != 0 => planned = Some(probe_path(image_path, rec, path)?),
            _ if rec.state & s::BOUND != 0 => bind_again(sock.as_fd(), rec).map_err(|e| fail("binding it to its address again", e))?,
            _ => {}
        }
        // A unix datagram socket is connected again in `finish`, once every socket of the
        // process is bound (its peer may be one of them).
        if rec.state & s::CONNECTED != 0 && rec.peer_len > 2 && !unix(rec) {
            reconnect(sock.as_fd(), rec);
        }
        if fdrec.blob_len > 0 || fdrec.aux & !ckpt_image::fds::LOST_PASSED_FDS > 0 {
            say!("myrestart: fd {fd}: the data queued on the socket at checkpoint time is lost");
        }
        sock
    };
    set_nonblocking(sock.as_fd(), fdrec).map_err(|e| fail("setting its flags", e))?;
    let parked = park(sock, p.fd_base).map_err(|e| fail("parking it", e))?;
    if let Some((stale, dir)) = planned {
        let dir = park(dir, p.fd_base).map_err(|e| fail("parking its directory", e))?;
        if !p.acts.add(fd, parked, Some(dir), What::Bind { stale }) {
            return Err(refuse(image_path, format_args!("too many files and sockets to make again")));
        }
    }
    Ok(parked)
}

/// A unix stream socket that was connected and whose peer is gone, closed for good (the kernel
/// names no peer any more): one a server accepted, whose client sent its last bytes and closed,
/// say. Its own address is then its listener's path, which is not its to bind again.
fn peer_gone(rec: &SocketRecord) -> bool {
    rec.state & s::LISTENING == 0 && (rec.state & s::CONNECTED != 0 || rec.shutdown == s::SHUT_READ | s::SHUT_WRITE)
}

/// An `AF_UNIX` stream socket whose peer was outside the process (reset) or already closed
/// (end of file after the queued bytes).
fn outside_unix_stream(rec: &SocketRecord, fdrec: &FdRecord, image_fd: Parked) -> Result<OwnedFd, Errno> {
    let (sock, other) = rustix::net::socketpair(AddressFamily::UNIX, sock_type(rec), SocketFlags::CLOEXEC, None)?;
    set_options(sock.as_fd(), rec);
    let lost = refill(other.as_fd(), fdrec, image_fd, true)?;
    if lost > 0 {
        say!("myrestart: fd {}: {lost} bytes queued on the socket could not be put back", rec.fd);
    }
    let peer_closed = rec.shutdown == s::SHUT_READ | s::SHUT_WRITE;
    if !peer_closed {
        // A byte left unread in the far end's queue when it closes makes the kernel report
        // ECONNRESET to this end.
        rustix::net::send(&sock, &[0], SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?;
        say!("myrestart: fd {} (unix socket to {}) comes back reset: its next read fails with ECONNRESET", rec.fd, Addr(rec.peer()));
    }
    drop(other);
    Ok(sock)
}

/// One end of a socket pair: the pair is made with the first end's record, and each end's
/// queued bytes are sent through the other.
fn pair_end(image_path: &CStr, fdrec: &FdRecord, rec: &SocketRecord, image_fd: Parked, p: &mut Plan) -> Result<Parked, Refusal> {
    let fail = |what: &str, e: Errno| refuse(image_path, format_args!("fd {} (socket pair): {what}: {}", rec.fd, describe(e)));
    let found = p.pairs[..p.npairs].iter().enumerate().find_map(|(i, slot)| slot.ino.iter().position(|&x| x == rec.ino).map(|side| (i, side)));
    let (i, side) = match found {
        Some(f) => f,
        None => {
            if p.npairs == p.pairs.len() {
                return Err(refuse(image_path, format_args!("more than {} socket pairs", p.pairs.len())));
            }
            let (a, b) = rustix::net::socketpair(AddressFamily::UNIX, sock_type(rec), SocketFlags::CLOEXEC, None).map_err(|e| fail("making it", e))?;
            let a = park(a, p.fd_base).map_err(|e| fail("parking it", e))?;
            let b = park(b, p.fd_base).map_err(|e| fail("parking it", e))?;
            p.pairs[p.npairs] = PairSlot { ino: [rec.ino, rec.peer_ino], fd: [a, b], pooled: false };
            p.npairs += 1;
            (p.npairs - 1, 0)
        }
    };
    let slot = p.pairs[i];
    let (me, other) = (slot.fd[side].as_fd(), slot.fd[1 - side].as_fd());
    set_options(me, rec);
    if !slot.pooled {
        let lost = refill(other, fdrec, image_fd, rec.sock_type as u32 == n::SOCK_STREAM).map_err(|e| fail("putting back its queued bytes", e))?;
        if lost > 0 {
            say!("myrestart: fd {}: {lost} bytes queued on the socket could not be put back", rec.fd);
        }
    }
    set_nonblocking(me, fdrec).map_err(|e| fail("setting its flags", e))?;
    Ok(slot.fd[side])
}

/// Before the processes of a tree exist: the unix socket pairs of the tree, whether both ends
/// are in one process or in two (`in_tree` says which sockets the tree has), made once, and
/// each end's queued bytes put back once (by the first process that had that end).
pub fn pool_pairs(image_path: &CStr, image: &Image, in_tree: &[u64], p: &mut Plan) -> Result<(), Refusal> {
    for rec in image.sockets().filter_map(Result::ok) {
        if !unix(&rec) || rec.peer_ino == 0 || (rec.state & s::PAIRED == 0 && !in_tree.contains(&rec.peer_ino)) {
            continue;
        }
        let Some((fdrec, _)) = image.fds().filter_map(Result::ok).find(|(f, _)| f.fd == rec.fd) else { continue };
        let fail = |what: &str, e: Errno| refuse(image_path, format_args!("a socket pair of the tree: {what}: {}", describe(e)));
        let found = p.pairs[..p.npairs].iter().position(|slot| slot.ino.contains(&rec.ino));
        let i = match found {
            Some(i) => i,
            None => {
                if p.npairs == p.pairs.len() {
                    return Err(refuse(image_path, format_args!("more than {} socket pairs", p.pairs.len())));
                }
                let (a, b) = rustix::net::socketpair(AddressFamily::UNIX, sock_type(&rec), SocketFlags::CLOEXEC, None).map_err(|e| fail("making it", e))?;
                let a = park(a, p.fd_base).map_err(|e| fail("parking it", e))?;
                let b = park(b, p.fd_base).map_err(|e| fail("parking it", e))?;
                p.pairs[p.npairs] = PairSlot { ino: [rec.ino, rec.peer_ino], fd: [a, b], pooled: true };
                p.npairs += 1;
                p.npairs - 1
            }
        };
        let slot = p.pairs[i];
        let side = if slot.ino[0] == rec.ino { 0 } else { 1 };
        if fdrec.blob_len > 0 && !filled(slot.fd[side]) {
            let other = slot.fd[1 - side].as_fd();
            let lost = refill(other, &fdrec, p.image_fd, rec.sock_type as u32 == n::SOCK_STREAM).map_err(|e| fail("putting back its queued bytes", e))?;
            if lost > 0 {
                say!("myrestart: a socket pair of the tree: {lost} bytes queued on it could not be put back");
            }
        }
    }
    Ok(())
}

/// Whether the socket `fd` already has bytes queued to read (put back by another process's
/// record of the same end).
fn filled(fd: Parked) -> bool {
    ckpt_sigsafe::sys::bytes_to_read(fd.raw()).is_ok_and(|n| n > 0)
}

/// Connects a datagram socket to its peer's address again, or says it could not.
fn reconnect(sock: BorrowedFd, rec: &SocketRecord) {
    if let Err(e) = rustix::net::connect(sock, &sockaddr(rec.peer())) {
        say!("myrestart: fd {} (datagram socket) could not be connected to {} again ({}); it comes back unconnected", rec.fd, Addr(rec.peer()), describe(e));
    }
}

/// The socket made again for the program's descriptor `rec.fd`, parked, and whether it is one
/// end of a socket pair.
fn made_socket<'p>(p: &'p Plan, rec: &SocketRecord) -> Option<(BorrowedFd<'p>, bool)> {
    let slot = p.fds[..p.nfds].iter().find(|f| f.target == rec.fd)?;
    let paired = rec.state & s::PAIRED != 0 || p.pairs[..p.npairs].iter().any(|s| s.pooled && s.ino.contains(&rec.ino));
    Some((slot.src.as_fd(), paired))
}

/// Once this process's sockets are bound (`acts.rs`): unix datagram sockets connected to an
/// address again (their peer may be one of them).
pub fn connect_planned(image: &Image, p: &Plan) {
    for rec in image.sockets().filter_map(Result::ok) {
        let Some((sock, paired)) = made_socket(p, &rec) else { continue };
        if unix(&rec) && !is_stream(&rec) && !paired && rec.state & s::CONNECTED != 0 && rec.peer_len > 2 {
            reconnect(sock, &rec);
        }
    }
}

/// Once every socket is back: the shutdowns of socket pairs (after both ends' queues are
/// filled, which needs both open for writing).
pub fn finish(image: &Image, p: &Plan) {
    for rec in image.sockets().filter_map(Result::ok) {
        let Some((sock, paired)) = made_socket(p, &rec) else { continue };
        if paired && rec.shutdown != 0 {
            let how = match rec.shutdown & (s::SHUT_READ | s::SHUT_WRITE) {
                s::SHUT_READ => rustix::net::Shutdown::Read,
                s::SHUT_WRITE => rustix::net::Shutdown::Write,
                _ => rustix::net::Shutdown::Both,
            };
            let _ = rustix::net::shutdown(sock, how);
        }
    }
}
