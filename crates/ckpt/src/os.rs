//! The command's calls into the C library that `std` does not offer, and the few into rustix
//! that take a descriptor by number: the only module of `ckpt` that needs `unsafe`. Each call
//! is small; a mapping is owned by a value ([`View`]) that unmaps it.

/// Fills `buf` from the kernel's random source (`getrandom(2)`); whether it filled all of it.
pub fn random(buf: &mut [u8]) -> bool {
    // SAFETY: getrandom(2) writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    n == buf.len() as isize
}

/// The effective user ID.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The effective group ID.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

/// Whether this process may create and enter files in directory `dir` (`access(W_OK | X_OK)`).
pub fn may_write_in(dir: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: access(2) with a NUL-terminated path that outlives the call.
    if unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives `SIGPIPE` its default action back (Rust's runtime ignores it), so that the command
/// ends quietly when the reader of its output goes away.
pub fn default_sigpipe() {
    // SAFETY: restoring a default disposition; called before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Ignores `SIGPIPE` again, for `ckpt migrate` and `ckpt receive`: a connection that breaks
/// must be an error they act on (letting a held program go on), not their silent end.
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN; called before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Whether `path` is on a tmpfs (memory, never the disk).
pub fn is_tmpfs(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs(2) fills the zeroed struct it is given, with a NUL-terminated path that
    // outlives the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC }
}

/// Makes `cmd`'s process start in a session of its own (`setsid`), away from the terminal and
/// the session of whoever started this command.
pub fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as a hook between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
}

/// A set of signals (`sigset_t`).
pub struct SignalSet(libc::sigset_t);

/// A signal taken by [`SignalSet::wait`]: its number, its `si_code`, and for a queued signal
/// (`SI_QUEUE`) the value its sender gave it.
pub struct Received {
    pub sig: i32,
    pub code: i32,
    pub value: Option<u64>,
}

impl SignalSet {
    pub fn of(signals: impl IntoIterator<Item = i32>) -> SignalSet {
        // SAFETY: sigemptyset and sigaddset fill a sigset_t we own; a zeroed one is a valid
        // starting point.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in signals {
                libc::sigaddset(&mut set, sig);
            }
            SignalSet(set)
        }
    }

    /// Blocks these signals in this (single-threaded) process, so that they wait for [`wait`].
    ///
    /// [`wait`]: SignalSet::wait
    pub fn block(&self) {
        // SAFETY: the set is ours; no old mask is asked for.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
    }

    /// Lets these signals through again (those pending are taken now).
    pub fn unblock(&self) {
        // SAFETY: the set is ours; no old mask is asked for.
        unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &self.0, std::ptr::null_mut()) };
    }

    /// Takes one of these (blocked) signals, waiting at most `timeout`; `None` when none came.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<Received> {
        let timeout = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
        // SAFETY: siginfo_t is plain data, which the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the set, the siginfo and the timeout are ours and outlive the call.
        let sig = unsafe { libc::sigtimedwait(&self.0, &mut info, &timeout) };
        if sig <= 0 {
            return None;
        }
        // SAFETY: for SI_QUEUE the value field is the one the sender set.
        let value = (info.si_code == libc::SI_QUEUE).then(|| unsafe { info.si_value() }.sival_ptr as u64);
        Some(Received { sig, code: info.si_code, value })
    }
}

/// The real-time signals this C library leaves to programs.
pub fn realtime_signals() -> std::ops::RangeInclusive<i32> {
    libc::SIGRTMIN()..=libc::SIGRTMAX()
}

/// Makes this process the subreaper of what it starts: orphans below it come to it.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Makes `cmd`'s process start with only `blocked` blocked, and with descriptor `keep` (if
/// not -1) no longer close-on-exec, so that the program it runs inherits it.
pub fn start_with(cmd: &mut std::process::Command, blocked: i32, keep: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only calls sigemptyset, sigaddset, sigprocmask and fcntl, which are
    // async-signal-safe, as a hook between fork and exec must be.
    unsafe {
        cmd.pre_exec(move || {
            let mut only: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut only);
            libc::sigaddset(&mut only, blocked);
            libc::sigprocmask(libc::SIG_SETMASK, &only, std::ptr::null_mut());
            if keep >= 0 {
                libc::fcntl(keep, libc::F_SETFD, 0);
            }
            Ok(())
        })
    };
}

/// A pipe: its read end (close-on-exec) as a file, and its write end's number, which the
/// caller owns and closes with [`close`].
pub fn pipe() -> std::io::Result<(std::fs::File, i32)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two descriptors it makes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the read end is ours alone from here.
    Ok((unsafe { std::fs::File::from_raw_fd(fds[0]) }, fds[1]))
}

/// Closes descriptor `fd`, which the caller owns (no `File` or other owner holds it).
pub fn close(fd: i32) {
    // SAFETY: the caller's descriptor, by the contract above; nothing uses it afterwards.
    unsafe { libc::close(fd) };
}

/// The data stretches of `f` from `from` to `to` (`SEEK_DATA`/`SEEK_HOLE`).
pub fn data_extents(f: &std::fs::File, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    use std::os::unix::io::AsRawFd;
    // SAFETY: the descriptor is `f`'s, which the returned iterator borrows, so it stays open
    // while the iterator lives.
    ckpt_sigsafe::extents::data_extents(unsafe { ckpt_sigsafe::extents::BorrowedFd::borrow_raw(f.as_raw_fd()) }, from, to)
}

/// A read-only mapping of a whole file.
pub struct View {
    addr: *mut libc::c_void,
    len: usize,
}

impl View {
    pub fn map(f: &std::fs::File, len: u64) -> std::io::Result<View> {
        use std::os::unix::io::AsRawFd;
        let len = usize::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        if len == 0 {
            return Ok(View { addr: std::ptr::null_mut(), len });
        }
        // SAFETY: a fresh read-only shared mapping of an open file, unmapped in Drop. (Shared,
        // so that a file ckpt writes itself reads back as written.)
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(View { addr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`. (Images are
        // replaced by rename, never shortened in place, so the pages stay backed.)
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our own mapping, no longer borrowed.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}


/// A thread of another process, traced with `ptrace` (seized: it runs on until interrupted);
/// dropping it detaches from it.
pub struct Traced {
    pub tid: i32,
    /// The signal to deliver as it is let go, if any.
    pub deliver: i32,
}

/// What a traced thread did, as `waitpid` tells.
pub enum Stop {
    /// Stopped at an event (the interrupt of [`Traced::interrupt`], or a group stop).
    Event,
    /// Stopped as it was about to take signal N.
    Signal(i32),
    /// Ended (or its process did).
    Gone,
}

fn ptrace_result(r: libc::c_long) -> std::io::Result<()> {
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Traced {
    /// `PTRACE_SEIZE` of thread `tid` (a thread of a process of this user).
    pub fn seize(tid: i32) -> std::io::Result<Traced> {
        // SAFETY: PTRACE_SEIZE takes no memory from us (addr 0, no options).
        ptrace_result(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) })?;
        Ok(Traced { tid, deliver: 0 })
    }

    /// `PTRACE_INTERRUPT`: the thread stops at its next chance, in an event stop.
    pub fn interrupt(&self) -> std::io::Result<()> {
        // SAFETY: PTRACE_INTERRUPT of a thread we seized; no memory passed.
        ptrace_result(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, self.tid, 0usize, 0usize) })
    }

    /// `PTRACE_CONT`, delivering signal `sig` (0: none).
    pub fn cont(&self, sig: i32) -> std::io::Result<()> {
        // SAFETY: PTRACE_CONT of a stopped thread we seized; the data is a signal number.
        ptrace_result(unsafe { libc::ptrace(libc::PTRACE_CONT, self.tid, 0usize, sig as usize) })
    }

    /// Its next stop, if it comes before `deadline`.
    pub fn next_stop(&self, deadline: std::time::Instant) -> Option<Stop> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into our integer.
            let r = unsafe { libc::waitpid(self.tid, &mut status, libc::__WALL | libc::WNOHANG) };
            if r == self.tid {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    return Some(Stop::Gone);
                }
                if libc::WIFSTOPPED(status) {
                    let event = status >> 16 != 0;
                    return Some(if event { Stop::Event } else { Stop::Signal(libc::WSTOPSIG(status)) });
                }
                continue;
            }
            if r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Some(Stop::Gone);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The stopped thread's instruction pointer (`PTRACE_GETREGS`).
    pub fn instruction_pointer(&self) -> std::io::Result<u64> {
        // SAFETY: a zeroed user_regs_struct is valid; the kernel fills the whole of it.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS of a stopped thread we seized writes one user_regs_struct.
        ptrace_result(unsafe { libc::ptrace(libc::PTRACE_GETREGS, self.tid, 0usize, &mut regs as *mut libc::user_regs_struct) })?;
        Ok(regs.rip)
    }

    /// The stopped thread's signal mask (`PTRACE_GETSIGMASK`).
    pub fn sigmask(&self) -> std::io::Result<u64> {
        let mut mask = 0u64;
        // SAFETY: the kernel writes 8 bytes (the size passed) into our u64.
        ptrace_result(unsafe { libc::ptrace(libc::PTRACE_GETSIGMASK, self.tid, 8usize, &mut mask as *mut u64) })?;
        Ok(mask)
    }

    /// Sets the stopped thread's signal mask (`PTRACE_SETSIGMASK`).
    pub fn set_sigmask(&self, mask: u64) -> std::io::Result<()> {
        // SAFETY: the kernel reads 8 bytes (the size passed) from our u64.
        ptrace_result(unsafe { libc::ptrace(libc::PTRACE_SETSIGMASK, self.tid, 8usize, &mask as *const u64) })
    }

    /// In a stop before taking a signal: sets that signal's `si_errno` to `tag`, leaving the
    /// rest of what its sender gave it.
    pub fn tag_signal(&self, tag: i32) -> std::io::Result<()> {
        // SAFETY: a zeroed siginfo_t is valid; the kernel fills it (GETSIGINFO) and reads it
        // back (SETSIGINFO), both of its size.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            ptrace_result(libc::ptrace(libc::PTRACE_GETSIGINFO, self.tid, 0usize, &mut info as *mut libc::siginfo_t))?;
            info.si_errno = tag;
            ptrace_result(libc::ptrace(libc::PTRACE_SETSIGINFO, self.tid, 0usize, &info as *const libc::siginfo_t))
        }
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        // SAFETY: PTRACE_DETACH of a thread we seized; the data is a signal number. A thread
        // that is running (not stopped) refuses it: it is interrupted first.
        unsafe {
            if libc::ptrace(libc::PTRACE_DETACH, self.tid, 0usize, self.deliver as usize) == -1
                && libc::ptrace(libc::PTRACE_INTERRUPT, self.tid, 0usize, 0usize) == 0
            {
                let mut status = 0;
                libc::waitpid(self.tid, &mut status, libc::__WALL);
                libc::ptrace(libc::PTRACE_DETACH, self.tid, 0usize, self.deliver as usize);
            }
        }
    }
}

/// Moves up to `len` bytes from descriptor `from` to `to` with splice(2), one of them a pipe,
/// reading (writing) a file at `*off_from` (`*off_to`) when given, which it advances: the
/// bytes moved, without copying them through this process. EINVAL: these two cannot splice.
pub fn splice(from: i32, off_from: Option<&mut i64>, to: i32, off_to: Option<&mut i64>, len: usize) -> std::io::Result<usize> {
    let off_from = off_from.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    let off_to = off_to.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    // SAFETY: the offsets are null or point to i64s borrowed for the call; the descriptors are
    // the caller's, open (a closed one is an EBADF, not undefined behaviour).
    let n = unsafe { libc::splice(from, off_from, to, off_to, len, libc::SPLICE_F_MOVE) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Socket `fd` reads as readable (to poll) only once `bytes` are queued on it: whether set.
pub fn low_water(fd: i32, bytes: usize) -> bool {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a c_int option value that lives across the call.
    unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) == 0 }
}

/// TCP keepalive on socket `fd`, probing after 15 s of silence, every 5 s, 4 times: a peer
/// whose machine is gone (or cut off) ends the connection within half a minute or so, not
/// after the kernel's default two hours.
pub fn keep_alive(fd: i32) {
    for (level, name, value) in [(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1), (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 15), (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 5), (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4)] {
        let v: libc::c_int = value;
        // SAFETY: setsockopt with a c_int option value that lives across the call; a failure
        // leaves the socket as it was (no keepalive), which is only less watchful.
        unsafe { libc::setsockopt(fd, level, name, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
    }
}

/// Waits until one of `fds` can be read (or has hung up), at most `timeout`; for each, whether
/// it can. An interrupted wait counts as none ready.
pub fn readable<const N: usize>(fds: [i32; N], timeout: std::time::Duration) -> [bool; N] {
    let mut p = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `p` is an array of N initialized pollfds that lives across the call, which writes
    // only their `revents`.
    let n = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, ms) };
    if n <= 0 {
        return [false; N];
    }
    p.map(|p| p.revents != 0)
}
