//! Before the point of no return: read the image, check everything that can be checked, and
//! fill in the [`Plan`] that the restore step follows without further decisions.
//!
//! Every problem found here is a [`Refusal`], said as one line, `myrestart: IMAGE: what is
//! wrong`, where the process ends; nothing of this process has been changed yet.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::arena::with_table;
use crate::args::Options;
use crate::files;
use crate::plan::{Plan, Special, TreePart, SPECIAL_KINDS, TASK_END};
use crate::refusal::{refuse, Refusal};
use crate::tables;
use ckpt_image::image::{headers_len, PREFIX_LEN};
use ckpt_image::region::RegionKind;
use ckpt_image::bytes::Records;
use ckpt_image::thread::{FLAG_PATCH_TID, FLAG_RSEQ};
use ckpt_image::tree::TreeRecord;
use ckpt_image::{Image, ImageError, ProcessState, ThreadState};
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::maps;
use ckpt_sigsafe::out::Lossy;
use ckpt_sigsafe::say;
use core::ffi::CStr;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};


/// The image, or a base of it (`what`), whose code runs with our rights: like ssh with its
/// keys, only a file that is ours and that nobody else may write is trusted without being told
/// (`myrestart::trust`). One that others could change is refused, or with `--trust-image` read
/// from a copy of our own made now, before anything of it is checked: the restore then reads
/// the program's memory from the copy (as `--eager` does) instead of mapping it, so that what
/// was checked is what the program gets. Returns the descriptor to read the file through.
fn trusted(path: &CStr, what: &dyn core::fmt::Display, fd: OwnedFd, st: &rustix::fs::Stat, trust: bool, p: &mut Plan) -> Result<OwnedFd, Refusal> {
    let me = rustix::process::geteuid().as_raw();
    let Some(why) = myrestart::trust::untrusted_image(what, st.st_uid, st.st_mode, me) else { return Ok(fd) };
    if !trust {
        return Err(refuse(path, format_args!("{why}")));
    }
    say!("myrestart: {}: {what} {}; restoring it anyway (--trust-image), from a copy made now", Lossy(path.to_bytes()), why.doubt);
    p.eager = true;
    let len = st.st_size as u64;
    files::private_copy(fd.as_fd(), 0, len, len, c"ckpt-image", false).map_err(|e| refuse(path, format_args!("{what}: copying it: {}", describe(e))))
}


/// What the checks of the image read it through: the options (the image's path, `--verify`,
/// `--allow-running`), the image's descriptor and length, and the key its MAC is checked with.
struct Checking<'a> {
    opts: &'a Options,
    fd: BorrowedFd<'a>,
    file_len: u64,
    key: Option<&'a ckpt_image::mac::Key>,
}

/// Checks the image `opts` names, everything that can be checked before anything changes,
/// and makes the plan that the restore follows; or says why not.
pub fn make(opts: &Options, p: &mut Plan) -> Result<(), Refusal> {
    let path = opts.image;
    take_options(opts, p);
    let fd = open_image(opts, p)?;
    let file_len = p.file_len;
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    let (meta, image) = read_part(path, fd.as_fd(), 0, file_len, p)?;
    tables::fit(path, p, image.counts())?;
    p.keep_logs = opts.keep_logs || p.state.is_last_checkpoint();
    p.nlog_owners = 0;
    files::note_logs(&image, 0, p);
    let mut running = StillRunning::new();
    running.note(&p.state);
    if image.tree().is_none() {
        running.judge(path, false, opts.allow_running)?;
        // A second copy beside the first (--allow-running): the logs are the running one's too.
        p.keep_logs |= running.count > 0;
    }
    let ignored = ignored_interrupts(&p.state);
    let key = read_key(opts)?;
    p.key = key;
    let c = Checking { opts, fd: fd.as_fd(), file_len, key: key.as_ref() };
    check_root(&c, &image, p)?;
    check_node(path, &image, &p.state)?;
    p.ntree = 0;
    p.member = 0;
    let mut fd_base = files::fd_base(&image);
    if let Some(tree) = image.tree() {
        fd_base = check_tree(&c, &image, tree, meta, &mut running, fd_base, p)?;
    }
    check_ids(path, &image, p, opts.new_ids)?;
    check_mm_map_allowed(path)?;
    report_rlimits(&p.state);
    if let Some(which) = ignored {
        say!("myrestart: the program ignores {which}, as it did when checkpointed (started in the background by a script, say): Ctrl-C will not stop it; `kill` will");
    }
    park_own_descriptors(opts, fd, fd_base, p)?;
    open_bases(path, &image, p, opts.verify, opts.trust_image)?;
    if p.ntree > 0 {
        files::pool(path, p, opts.inherit_stdio)?;
        files::learn_owners(path, p)?;
        // The root's state again (the pool read the others'); its plan, like every process's,
        // is made in its own process, all at once (`tree::spawn`).
        Image::parse(meta, file_len, &mut p.state).map_err(bad)?;
        return Ok(());
    }
    become_member(opts, p, 0)
}

/// Takes into the plan what the options say of the restart itself (`--eager`, `--stopped`,
/// announcements, ckpt's line from `--say`), and notes what myrestart's stderr is now.
fn take_options(opts: &Options, p: &mut Plan) {
    p.eager = opts.eager;
    p.stopped = opts.stopped;
    p.announce = opts.announce;
    // Before anything is said: what myrestart writes to its stderr from here on is its own.
    p.own_stderr = rustix::fs::fstat(crate::fds::own_std(2))
        .ok()
        .filter(|st| (st.st_mode & 0o170000) == 0o100000)
        .map(|st| (st.st_dev, st.st_ino, st.st_size as u64));
    if let Some((text, _)) = opts.say {
        // Another program's words, but they name files and commands from images: escaped like
        // every name myrestart prints.
        p.say_len = ckpt_sigsafe::out::escaped_lines(text.to_bytes(), &mut p.say);
    }
}

/// Opens the image, which must be a regular file, and decides whether it is trusted
/// ([`trusted`]); notes its length in the plan. Returns the descriptor to read it through.
fn open_image(opts: &Options, p: &mut Plan) -> Result<OwnedFd, Refusal> {
    let path = opts.image;
    // Non-blocking: a FIFO (or a device) at the path would hold `open` forever; its type is
    // checked next.
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()).map_err(|e| refuse(path, format_args!("cannot open: {}", describe(e))))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| refuse(path, format_args!("cannot stat: {}", describe(e))))?;
    if (st.st_mode & 0o170000) != 0o100000 {
        return Err(refuse(path, format_args!("not a regular file")));
    }
    let fd = trusted(path, &"the image", fd, &st, opts.trust_image, p)?;
    p.file_len = st.st_size as u64;
    Ok(fd)
}

/// The key that the image's MAC is checked with, read from the file `--key` names (none
/// without it).
fn read_key(opts: &Options) -> Result<Option<ckpt_image::mac::Key>, Refusal> {
    let Some(k) = opts.key else { return Ok(None) };
    static mut SECRET: [u8; ckpt_sigsafe::KEY_FILE_MAX + 1] = [0; ckpt_sigsafe::KEY_FILE_MAX + 1];
    // SAFETY: single-threaded, and the only use of the buffer.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(SECRET) };
    match ckpt_sigsafe::read_key(k, buf) {
        Ok(key) => Ok(Some(key)),
        Err(why) => Err(refuse(opts.image, format_args!("the key file {} {why}", Lossy(k.to_bytes())))),
    }
}

/// The root's part (or the only process's): what it says of base images must make sense; its
/// data is checked; its threads and state are adopted into the plan.
fn check_root(c: &Checking, image: &Image, p: &mut Plan) -> Result<(), Refusal> {
    let path = c.opts.image;
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    if image.shared_runs().any(|r| r.is_ok_and(|r| r.source == 0)) {
        return Err(bad(ImageError::Malformed("the root's image says it shares pages with itself")));
    }
    if image.tree().is_some() && image.shared_runs().next().is_some() {
        return Err(bad(ImageError::Malformed("a tree image names a base image")));
    }
    // Every part's data (and MAC) is checked here, first, before anything is opened or made:
    // the root's now, a tree's other processes' as their headers are read (`check_member`).
    verify_data(c.fd, image, c.file_len, c.opts.verify, c.key, |_| false).map_err(bad)?;
    adopt(path, image, p)
}

/// A tree: every process's part (the records of `tree`) is read and checked now, before
/// anything changes, and refused if any of them still runs (unless `--allow-running`). Returns
/// `fd_base` (the root's) raised above every descriptor number of the other processes.
fn check_tree(c: &Checking, image: &Image, tree: Result<Records<'_, TreeRecord>, ImageError>, meta: &[u8], running: &mut StillRunning, mut fd_base: i32, p: &mut Plan) -> Result<i32, Refusal> {
    let path = c.opts.image;
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    if c.opts.new_ids {
        return Err(refuse(path, format_args!("the image holds a process tree, whose processes need their own PIDs back: --new-ids cannot restore it")));
    }
    for rec in tree.map_err(bad)? {
        let rec = rec.map_err(bad)?;
        p.tree[p.ntree] = TreePart { rec, meta: meta.as_ptr() as usize, meta_len: meta.len() };
        p.ntree += 1;
    }
    for i in 1..p.ntree {
        if !p.tree[i].rec.is_zombie() {
            fd_base = fd_base.max(check_member(c, image, i, running, p)?);
        }
    }
    // Every process of the tree, not only its root: `kill -9` of a pipeline's root leaves
    // the rest running, writing the files a restored tree would write.
    running.judge(path, true, c.opts.allow_running)?;
    p.keep_logs |= running.count > 0;
    Ok(fd_base)
}

/// Process `i` of a tree (not a zombie): its part read and fitted to the tables, matched with
/// its record in the tree and with the root's part, its data checked, and adopted into the plan
/// as the root's was. Returns the lowest descriptor number above all of its own.
fn check_member(c: &Checking, image: &Image, i: usize, running: &mut StillRunning, p: &mut Plan) -> Result<i32, Refusal> {
    let path = c.opts.image;
    let rec = p.tree[i].rec;
    let (m, part) = read_part(path, c.fd, rec.base, c.file_len, p)?;
    tables::fit(path, p, part.counts())?;
    if p.state.meta_hash != rec.meta_hash || p.state.pid != rec.pid {
        return Err(refuse(path, format_args!("process {} of the tree does not match its part of the image", rec.pid)));
    }
    ckpt_image::shared::check_against_root(&part, image).map_err(|e| refuse(path, format_args!("process {} of the tree: {e}", rec.pid)))?;
    let verified = verify_member_data(c, image, &part).map_err(|e| refuse(path, format_args!("cannot check process {} of the tree: {}", rec.pid, describe(e))))?;
    verified.map_err(|e| refuse(path, format_args!("process {} of the tree: {e}", rec.pid)))?;
    running.note(&p.state);
    files::note_logs(&part, i, p);
    adopt(path, &part, p)?;
    p.tree[i].meta = m.as_ptr() as usize;
    p.tree[i].meta_len = m.len();
    Ok(files::fd_base(&part))
}

/// Checks the data (and MAC) of `part`, a tree's process other than its root (`image`). A
/// region that points at the root's bytes (the same bytes, stored once) was checked with the
/// root's; that it is the root's copy of the same addresses was checked before
/// (`check_against_root`). The root's plain regions are looked up by where their bytes are (a
/// table of their indices sorted by data offset), not scanned for each. Fails with the errno
/// only if that table cannot be made.
fn verify_member_data(c: &Checking, image: &Image, part: &Image) -> Result<Result<(), ImageError>, rustix::io::Errno> {
    let roots = image.region_count();
    with_table(roots, |t| {
        let plain = |i: u64| image.region(i as usize).ok().filter(|o| o.record.has_data() && !o.record.compressed());
        let mut n = 0;
        for i in 0..roots as u64 {
            if plain(i).is_some() {
                t[n] = i;
                n += 1;
            }
        }
        let at = |i: &u64| plain(*i).map_or(u64::MAX, |o| o.data_offset);
        let sorted = &mut t[..n];
        sorted.sort_unstable_by_key(at);
        let in_root = |r: &ckpt_image::RegionRecord| {
            let from = sorted.partition_point(|i| at(i) < r.data_offset);
            sorted[from..].iter().filter_map(|&i| plain(i)).take_while(|o| o.data_offset == r.data_offset).any(|o| (o.record.stored_len, o.record.data_hash) == (r.stored_len, r.data_hash))
        };
        verify_data(c.fd, part, c.file_len, c.opts.verify, c.key, in_root)
    })
}

/// Every descriptor myrestart holds from here on sits above all the target's numbers (of
/// every process of a tree), at `fd_base` or above, so that installing the target's
/// descriptors can never overwrite one still needed: the image's, and `--status-fd`'s.
fn park_own_descriptors(opts: &Options, fd: OwnedFd, fd_base: i32, p: &mut Plan) -> Result<(), Refusal> {
    let path = opts.image;
    p.fd_base = fd_base;
    let image_fd = crate::fds::park(fd, fd_base).map_err(|e| refuse(path, format_args!("moving the image descriptor: {}", describe(e))))?;
    p.image_fd = image_fd;
    p.status = None;
    if let Some((n, _)) = opts.status_fd {
        // The caller's descriptor, moved up out of the program's way (a restored descriptor
        // may want its number).
        let moved = crate::fds::park_status_fd(n, fd_base);
        p.status = Some(moved.map_err(|e| refuse(path, format_args!("--status-fd {n}: {}", describe(e))))?);
    }
    Ok(())
}

/// Makes the plan for process `member` of the image (0: the root, or the only process), whose
/// part was checked by [`make`]: its state, threads and descriptors. In a tree, runs in the
/// process that becomes that member.
pub fn become_member(opts: &Options, p: &mut Plan, member: usize) -> Result<(), Refusal> {
    let path = opts.image;
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    let (meta, meta_len) = if p.ntree > 0 { (p.tree[member].meta, p.tree[member].meta_len) } else { (p.meta, p.meta_len) };
    // SAFETY: the headers' mapping made by `read_part` is never unmapped before the point of
    // no return (see there).
    let meta_static: &'static [u8] = unsafe { core::slice::from_raw_parts(meta as *const u8, meta_len) };
    // Its data was checked by `make`, with every other part's.
    let image = Image::parse(meta_static, p.file_len, &mut p.state).map_err(bad)?;
    adopt(path, &image, p)?;
    p.member = member;
    p.acts.member = member;
    let base = p.fd_base;
    let cwd = CStr::from_bytes_with_nul(p.state.cwd.with_nul()).map_err(|_| bad(ImageError::Malformed("bad cwd")))?;
    // Every file that is not here named at once (a restart on another node), before the first
    // of them is missed below.
    crate::missing::check(path, &image, cwd.to_bytes(), opts.inherit_stdio)?;
    let cwd_fd = open_cwd(path, cwd, &p.state.cwd_id)?;
    // From here on relative paths (a socket bound to `./sock`, say) mean what they meant to
    // the program.
    rustix::process::fchdir(&cwd_fd).map_err(|e| refuse(path, format_args!("working directory {}: {}", Lossy(cwd.to_bytes()), describe(e))))?;
    if let Some(other) = p.cwd_fd {
        // SAFETY: the parked descriptor of another member's working directory, ours alone.
        unsafe { rustix::io::close(other.raw()) };
    }
    p.cwd_fd = Some(crate::fds::park(cwd_fd, base).map_err(|e| refuse(path, format_args!("{}", describe(e))))?);
    if p.ntree == 0 {
        crate::tcp::pool_own(path, &image, p)?;
    }
    files::open_all(path, &image, p.image_fd, p, opts.inherit_stdio)?;
    crate::written::check(path, &image, opts.files_as_is)?;
    p.exe_fd = match open_exe(path, &image, &p.state.exe, &p.state.exe_id)? {
        Some(f) => crate::fds::park(f, base).ok(),
        None => None,
    };
    p.meta = meta;
    p.meta_len = meta_len;
    p.image = Some(image);
    Ok(())
}

/// The program's working directory, entered again by its path under the rule for the files
/// it had open (`files.rs`): never through a symbolic link (the checkpoint's path, the
/// kernel's own, had none), and not another user's directory where the program's was the
/// restarting user's own; another directory of ours there is named as replaced.
fn open_cwd(path: &CStr, cwd: &CStr, id: &ckpt_image::fileid::FileId) -> Result<OwnedFd, Refusal> {
    let name = Lossy(cwd.to_bytes());
    let fd = files::open_recorded(cwd, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| refuse(path, format_args!("working directory {name}: {}", files::NotOpened(e))))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| refuse(path, format_args!("working directory {name}: {}", describe(e))))?;
    if let Some(then) = id.owner.uid {
        if myrestart::trust::taken_over(then, files::owner(&st), rustix::process::geteuid().as_raw()) {
            return Err(files::refuse_taken(path, format_args!("working directory"), cwd.to_bytes(), files::owner(&st), then));
        }
        // Only the inode: the same directory on another node (NFS) has another device number.
        if !id.is_same_inode(st.st_ino, ckpt_sigsafe::fileid::birth_time(fd.as_fd())) {
            say!("myrestart: working directory {name} was replaced since the checkpoint; the program works in the directory now at that path");
        }
    }
    Ok(fd)
}

/// The program file, for `/proc/self/exe` of the restored process: opened by its path under
/// the same rule as the working directory ([`open_cwd`]); only a regular file (opened
/// non-blocking: a FIFO put at its path would block `open`). `None` where there is none to
/// be had (gone, or never known): the restored process then keeps myrestart's.
fn open_exe(path: &CStr, image: &Image, exe: &ckpt_image::state::Path, id: &ckpt_image::fileid::FileId) -> Result<Option<OwnedFd>, Refusal> {
    let Ok(c) = CStr::from_bytes_with_nul(exe.with_nul()) else { return Ok(None) };
    if c.is_empty() {
        return Ok(None);
    }
    let name = Lossy(c.to_bytes());
    let fd = match files::open_recorded(c, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()) {
        Ok(fd) => fd,
        Err(e @ rustix::io::Errno::LOOP) => {
            return Err(refuse(path, format_args!("program file {name}: {}", files::NotOpened(e))));
        }
        Err(_) => return Ok(None),
    };
    let Ok(st) = rustix::fs::fstat(&fd) else { return Ok(None) };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    if let Some(then) = id.owner.uid {
        if myrestart::trust::taken_over(then, files::owner(&st), rustix::process::geteuid().as_raw()) {
            return Err(files::refuse_taken(path, format_args!("program file"), c.to_bytes(), files::owner(&st), then));
        }
        // Another inode is news only if the restart did not check the bytes: the program's
        // code is mapped from it, and `files::open_same_file` held that to its contents (on
        // another node, the same program is a copy, or the same NFS file on another device).
        let checked = code_of(image, c.to_bytes(), st.st_size as u64);
        if !checked && !id.is_same_inode(st.st_ino, ckpt_sigsafe::fileid::birth_time(fd.as_fd())) {
            say!("myrestart: program file {name} was replaced since the checkpoint; /proc/PID/exe of the restored process names the file now at that path");
        }
    }
    Ok(Some(fd))
}

/// Whether `image` maps code from the file at `name`, `size` bytes long now, again: then its
/// size and the bytes each such region maps have been checked against the image's record
/// (`files::open_same_file`), before the program file is opened.
fn code_of(image: &Image, name: &[u8], size: u64) -> bool {
    (0..image.region_count()).any(|i| {
        image.region(i).is_ok_and(|r| r.record.maps_private_file() && r.record.prot & 4 != 0 && r.name == name && image.file_map(i).is_some_and(|m| m.size == size))
    })
}

/// Opens and checks the base images an incremental image names, before anything changes: each
/// must be in the image's directory under its name, be the very image it was built on (its
/// identity, length and header checksum), hold the pages each run names in its own bytes, and
/// (unless `--no-verify`) have those regions' bytes match their hashes, and be trusted as the
/// image is ([`trusted`]). Any failure names the base. Their descriptors are parked in
/// `p.bases`.
fn open_bases(path: &CStr, image: &Image, p: &mut Plan, verify: bool, trust: bool) -> Result<(), Refusal> {
    let Some(chain) = image.chain() else { return Ok(()) };
    let chain = chain.map_err(|e| refuse(path, format_args!("{e}")))?;
    let dir_len = ckpt_image::chain::name_start(path.to_bytes());
    for (k, b) in chain.bases().enumerate() {
        let b = b.map_err(|e| refuse(path, format_args!("{e}")))?;
        let source = k as u32 + 1;
        let name = Lossy(b.name());
        let mut buf = [0u8; ckpt_image::state::PATH_MAX + 260];
        let full_len = dir_len + b.name().len();
        if full_len >= buf.len() {
            return Err(refuse(path, format_args!("base image {name}: path too long")));
        }
        buf[..dir_len].copy_from_slice(&path.to_bytes()[..dir_len]);
        buf[dir_len..full_len].copy_from_slice(b.name());
        let bpath = CStr::from_bytes_with_nul(&buf[..full_len + 1]).map_err(|_| refuse(path, format_args!("base image {name}: bad name")))?;
        // Non-blocking, and then only a regular file: anyone who may write the directory could
        // have put a FIFO at a missing base's name.
        let fd = rustix::fs::open(bpath, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()).map_err(|e| refuse(path, format_args!("needs its base image {name}, which cannot be opened: {} (an incremental image restarts only with the images it was built on beside it)", describe(e))))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| refuse(path, format_args!("base image {name}: cannot stat: {}", describe(e))))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(refuse(path, format_args!("base image {name} is not a regular file")));
        }
        let rewritten = || refuse(path, format_args!("base image {name} is not the image this one was built on (it was rewritten or replaced)"));
        if st.st_size as u64 != b.file_len {
            return Err(rewritten());
        }
        let fd = trusted(path, &format_args!("base image {name}"), fd, &st, trust, p)?;
        static mut BASE_STATE: ProcessState = ProcessState::ZERO;
        // SAFETY: myrestart is single-threaded and this is the only use of the static.
        let state = unsafe { &mut *core::ptr::addr_of_mut!(BASE_STATE) };
        let base = read_headers(fd.as_fd(), b.file_len, state).map_err(|e| match e {
            Some(e) => refuse(path, format_args!("base image {name}: {e}")),
            None => refuse(path, format_args!("base image {name}: cannot read its headers")),
        })?;
        if !b.is(&base) {
            return Err(rewritten());
        }
        ckpt_image::chain::check_against_base(image, source, &base).map_err(|e| refuse(path, format_args!("base image {name}: {e}")))?;
        verify_data(fd.as_fd(), &base, b.file_len, verify, None, |rec| !ckpt_image::chain::takes_from(image, source, rec)).map_err(|e| refuse(path, format_args!("base image {name}: {e}")))?;
        p.bases[k] = crate::fds::park(fd, p.fd_base).map_err(|e| refuse(path, format_args!("moving a base image's descriptor: {}", describe(e))))?;
    }
    Ok(())
}

/// Reads and checks the headers of another image (a base) into a mapping of their own.
/// `Err(None)` if they cannot be read.
fn read_headers(fd: BorrowedFd, file_len: u64, state: &mut ProcessState) -> Result<Image<'static>, Option<ImageError>> {
    let mut prefix = [0u8; PREFIX_LEN];
    let got = ckpt_sigsafe::sys::pread_full(fd.as_raw_fd(), &mut prefix, 0).map_err(|_| None)?;
    let len = headers_len(&prefix[..got], 0, file_len).map_err(Some)?;
    // SAFETY: a fresh anonymous mapping, kept for the rest of the run.
    let meta = unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE) }.map_err(|_| None)?;
    // SAFETY: the mapping is len bytes, readable and writable, used only through this slice.
    let buf = unsafe { core::slice::from_raw_parts_mut(meta as *mut u8, len) };
    if ckpt_sigsafe::sys::pread_full(fd.as_raw_fd(), buf, 0).map_err(|_| None)? != len {
        return Err(Some(ImageError::Truncated));
    }
    // SAFETY: never unmapped before the point of no return (the teardown removes it).
    let meta_static: &'static [u8] = unsafe { core::slice::from_raw_parts(meta as *const u8, len) };
    Image::parse(meta_static, file_len, state).map_err(Some)
}

/// Reads and checks the headers of the image (or tree part) at `base` into a mapping of their
/// own, decoding the state into `p.state`.
fn read_part(path: &CStr, fd: BorrowedFd, base: u64, file_len: u64, p: &mut Plan) -> Result<(&'static [u8], Image<'static>), Refusal> {
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    let mut prefix = [0u8; PREFIX_LEN];
    let got = ckpt_sigsafe::sys::pread_full(fd.as_raw_fd(), &mut prefix, base).map_err(|e| refuse(path, format_args!("cannot read: {}", describe(e))))?;
    let meta_len = headers_len(&prefix[..got], base, file_len).map_err(bad)?;
    // SAFETY: a fresh anonymous mapping, owned by the plan from here on.
    let meta = unsafe {
        rustix::mm::mmap_anonymous(core::ptr::null_mut(), meta_len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
    }
    .map_err(|e| refuse(path, format_args!("cannot allocate {meta_len} bytes for the headers: {}", describe(e))))?;
    // SAFETY: the mapping is meta_len bytes, readable and writable, and only used through this slice.
    let meta_buf = unsafe { core::slice::from_raw_parts_mut(meta as *mut u8, meta_len) };
    let n = ckpt_sigsafe::sys::pread_full(fd.as_raw_fd(), meta_buf, base).map_err(|e| refuse(path, format_args!("cannot read: {}", describe(e))))?;
    if n != meta_len {
        return Err(bad(ImageError::Truncated));
    }
    // SAFETY: this mapping is never unmapped before the point of no return (`hole` copies the
    // headers it restores into the block and the teardown removes the rest), so 'static holds
    // for every use of it.
    let meta_static: &'static [u8] = unsafe { core::slice::from_raw_parts(meta as *const u8, meta_len) };
    let image = Image::parse(meta_static, file_len, &mut p.state).map_err(bad)?;
    p.meta = meta as usize;
    p.meta_len = meta_len;
    Ok((meta_static, image))
}

/// The checks of one process's image that need no file opened, and its threads into the plan:
/// the leader (whose TID is the PID; this process becomes it) and the others.
fn adopt(path: &CStr, image: &Image, p: &mut Plan) -> Result<(), Refusal> {
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    let mut leader = None;
    p.nothers = 0;
    for t in image.threads() {
        let t = t.map_err(bad)?;
        check_targets(path, image, &t)?;
        if t.tid == p.state.pid && leader.is_none() {
            leader = Some(t);
        } else if p.nothers == p.others.len() {
            return Err(refuse(path, format_args!("more than {} threads", p.others.len())));
        } else {
            p.others[p.nothers] = t;
            p.nothers += 1;
        }
    }
    let Some(leader) = leader else {
        return Err(refuse(path, format_args!("the program's main thread (TID {}) had exited; a process without it cannot be restored", p.state.pid)));
    };
    p.thread = leader;
    check_timers(path, image, p)?;
    check_machine(path, &p.state)?;
    check_regions_fit(path, image)?;
    check_mm(path, &p.state)?;
    find_specials(path, image, p)
}


/// The first value found twice among the `n` that `fill` writes into a scratch table.
fn first_duplicate(n: usize, fill: impl FnOnce(&mut [u64])) -> Result<Option<u64>, rustix::io::Errno> {
    with_table(n, |ids| {
        fill(ids);
        ids.sort_unstable();
        ids.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    })
}

/// Every PID and TID the restore asks the kernel for (`clone3` with `set_tid`), of every
/// process of the image (a tree's zombies too): none twice (a thread may not have another
/// process's PID either), TID 1 only for a process's own main thread (PID 1 of the new
/// namespace is init, unless the program was PID 1 itself), and, unless the program gets new
/// IDs anyway (`--new-ids`), each below this system's `pid_max`. The restore would otherwise
/// fail only after its point of no return, or quietly fall back to new IDs.
fn check_ids(path: &CStr, image: &Image, p: &Plan, new_ids: bool) -> Result<(), Refusal> {
    static mut STATE: ProcessState = ProcessState::ZERO;
    // SAFETY: single-threaded, and the only use of the static.
    let scratch = unsafe { &mut *core::ptr::addr_of_mut!(STATE) };
    let bad = |e: ImageError| refuse(path, format_args!("{e}"));
    // Each process's image (`None` for a zombie) with its PID, in the image's order.
    let part = |i: usize, st: &mut ProcessState| -> Result<(u32, Option<Image<'static>>), ImageError> {
        if p.ntree == 0 {
            return Ok((p.state.pid, None));
        }
        let t = p.tree[i];
        if t.rec.is_zombie() {
            return Ok((t.rec.pid, None));
        }
        // SAFETY: the part's headers, mapped by the plan and never unmapped before the point
        // of no return.
        let meta: &'static [u8] = unsafe { core::slice::from_raw_parts(t.meta as *const u8, t.meta_len) };
        Ok((t.rec.pid, Some(Image::parse(meta, p.file_len, st)?)))
    };
    let parts = p.ntree.max(1);
    let mut n = 0;
    for i in 0..parts {
        let (pid, img) = part(i, scratch).map_err(bad)?;
        let img = img.as_ref().unwrap_or(image);
        if p.ntree > 0 && pid == 1 {
            return Err(refuse(path, format_args!("a process of the tree had PID 1, which its namespace's init has")));
        }
        if img.threads().any(|t| t.is_ok_and(|t| t.tid == 1 && pid != 1)) {
            return Err(refuse(path, format_args!("a thread of process {pid} has TID 1, which only a PID namespace's first process has")));
        }
        n += if p.ntree > 0 && p.tree[i].rec.is_zombie() { 1 } else { img.threads().count() };
    }
    let pid_max = if new_ids { None } else { maps::read_number(c"/proc/sys/kernel/pid_max") };
    let mut too_high = None;
    let dup = first_duplicate(n, |ids| {
        let mut k = 0;
        for i in 0..parts {
            let Ok((pid, img)) = part(i, scratch) else { continue };
            let tids = match (&img, p.ntree > 0 && p.tree[i].rec.is_zombie()) {
                (_, true) => None,
                (Some(img), false) => Some(img),
                (None, false) => Some(image),
            };
            let mut put = |id: u32| {
                if pid_max.is_some_and(|max| id as u64 >= max) {
                    too_high = too_high.or(Some(id));
                }
                if k < ids.len() {
                    ids[k] = id as u64;
                    k += 1;
                }
            };
            match tids {
                Some(img) => img.threads().filter_map(Result::ok).for_each(|t| put(t.tid)),
                None => put(pid),
            }
        }
    })
    .map_err(|e| refuse(path, format_args!("cannot check the image's thread IDs: {}", describe(e))))?;
    if let Some(id) = dup {
        return Err(refuse(path, format_args!("process or thread ID {id} appears twice in the image")));
    }
    if let (Some(id), Some(max)) = (too_high, pid_max) {
        return Err(refuse(path, format_args!(
            "process or thread ID {id} is not below this system's pid_max ({max}), so it cannot be had again (--new-ids restores with new IDs)"
        )));
    }
    Ok(())
}

/// Every POSIX timer must be one `timer_create` will make again: no ID twice, and a clock,
/// signal and target this system accepts. A clock of the kernel's own is tried now, with a
/// throwaway timer of this process that never runs; a CPU-time clock must be the process's or
/// one of its threads' (another process's would not be there).
fn check_timers(path: &CStr, image: &Image, p: &Plan) -> Result<(), Refusal> {
    use ckpt_image::timers::SIGEV_THREAD_ID;
    let n = image.timers().count();
    let dup = first_duplicate(n, |ids| {
        for (slot, t) in ids.iter_mut().zip(image.timers().filter_map(Result::ok)) {
            *slot = t.id as u64;
        }
    })
    .map_err(|e| refuse(path, format_args!("cannot check the image's timers: {}", describe(e))))?;
    if let Some(id) = dup {
        return Err(refuse(path, format_args!("POSIX timer {id} appears twice in the image")));
    }
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    for t in image.timers() {
        let t = t.map_err(|e| refuse(path, format_args!("{e}")))?;
        if t.clock < 0 {
            // A CPU-time clock: `~(clock >> 3)` is a PID (a TID with bit 2 set; 0 for the
            // caller), the low two bits which of its times (3 is none).
            let id = !(t.clock >> 3) as u32;
            let thread = t.clock & 4 != 0;
            let ours = id == 0
                || if thread {
                    id == p.thread.tid || p.others[..p.nothers].iter().any(|o| o.tid == id)
                } else {
                    id == p.state.pid
                };
            if t.clock & 3 == 3 || !ours {
                return Err(refuse(path, format_args!("POSIX timer {} is on a CPU-time clock ({}) that is not this process's", t.id, t.clock)));
            }
            continue;
        }
        let tid = if t.notify & SIGEV_THREAD_ID != 0 { me } else { 0 };
        match ckpt_sigsafe::sys::timer_create_with(t.clock, t.notify, t.signo, t.value, tid, 0) {
            Ok(id) => ckpt_sigsafe::sys::timer_delete(id),
            Err(e) => {
                return Err(refuse(path, format_args!("POSIX timer {} cannot be made again here (clock {}, signal {}): {}", t.id, t.clock, t.signo, describe(e))));
            }
        }
    }
    Ok(())
}

/// The image file's data stretches, from `SEEK_DATA`/`SEEK_HOLE`.
struct FileHoles<'f>(BorrowedFd<'f>);

impl ckpt_image::verify::Extents for FileHoles<'_> {
    fn extents(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> {
        ckpt_sigsafe::extents::data_extents(self.0, from, to)
    }
}

/// Checks the stored bytes against their hashes, reading the file through a temporary
/// read-only mapping: all of them, or with `all` false (`--no-verify`) only the compressed
/// streams, which restart reads whole and could otherwise find bad only after the point of no
/// return. Regions `checked_elsewhere` names are left to the process that checks their bytes.
fn verify_data(fd: BorrowedFd, image: &Image, file_len: u64, all: bool, key: Option<&ckpt_image::mac::Key>, checked_elsewhere: impl Fn(&ckpt_image::RegionRecord) -> bool) -> Result<(), ImageError> {
    image.check_saved_extents(&FileHoles(fd))?;
    let any_compressed = (0..image.region_count()).any(|i| image.region(i).is_ok_and(|r| r.record.compressed()));
    if !all && !any_compressed && key.is_none() {
        return Ok(());
    }
    let len = usize::try_from(file_len).map_err(|_| ImageError::Truncated)?;
    if len == 0 {
        return Err(ImageError::Truncated);
    }
    // SAFETY: a read-only private view of the image file, unmapped below.
    let view = unsafe { rustix::mm::mmap(core::ptr::null_mut(), len, ProtFlags::READ, MapFlags::PRIVATE, fd, 0) }
    .map_err(|_| ImageError::Malformed("image file cannot be mapped"))?;
    // SAFETY: the view is `len` readable bytes; image files are only ever replaced by a rename,
    // never shortened in place, so every page of it stays backed while it is read.
    let file = unsafe { core::slice::from_raw_parts(view as *const u8, len) };
    // The key first: a changed image is named as such, not as corrupt.
    let result = key
        .map_or(Ok(()), |k| ckpt_image::mac::check(k, file, image, &FileHoles(fd)))
        .and_then(|()| if all { check_on_two_cores(fd, file, image, &checked_elsewhere) } else { image.check_compressed(file) });
    // SAFETY: the view is ours and `file` is not used after this point.
    let _ = unsafe { rustix::mm::munmap(view, len) };
    result
}

/// [`Image::check_data_but`], the hashing shared with a helper process on the other core: it
/// computes the digests of the second half of the data's chunks into memory shared with this
/// process, which computes the first half, then puts them together. Done alone for a small
/// image, or if the helper cannot start or fails (then also for the exact error).
fn check_on_two_cores(fd: BorrowedFd, file: &[u8], image: &Image, skip: &dyn Fn(&ckpt_image::RegionRecord) -> bool) -> Result<(), ImageError> {
    let holes = FileHoles(fd);
    let n = image.plain_chunks(skip)?;
    let alone = || image.check_data_but(file, &holes, skip);
    if n < 64 {
        return alone();
    }
    let len = (2 * n as usize * 8).next_multiple_of(4096);
    // SAFETY: a fresh shared anonymous mapping, unmapped below.
    let Ok(table) = (unsafe { rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED) }) else {
        return alone();
    };
    // SAFETY: the mapping is `len` bytes, 2 * n u64s, shared with the helper only.
    let out = unsafe { core::slice::from_raw_parts_mut(table as *mut u64, 2 * n as usize) };
    let half = n / 2;
    let result = match ckpt_sigsafe::sys::fork_raw(true) {
        Ok(0) => {
            let ok = image.chunk_digests(file, &holes, skip, half, n, out).is_ok();
            ckpt_sigsafe::sys::exit_group(if ok { 0 } else { 1 })
        }
        Ok(pid) => {
            let mine = image.chunk_digests(file, &holes, skip, 0, half, out);
            let helper = ckpt_sigsafe::sys::wait_child(pid as i32, false);
            match (mine, helper) {
                (Ok(()), Ok(Some((_, 0)))) => image.check_data_with(file, &holes, skip, out),
                _ => alone(),
            }
        }
        Err(_) => alone(),
    };
    // SAFETY: our own mapping; `out` is not used after this.
    let _ = unsafe { rustix::mm::munmap(table, len) };
    result
}

/// Which of `SIGINT` and `SIGQUIT` (a terminal's Ctrl-C and Ctrl-\\) the program ignores, when
/// myrestart runs on a terminal: restored faithfully, they would silently do nothing there.
fn ignored_interrupts(st: &ProcessState) -> Option<&'static str> {
    // A closed one is no terminal.
    let on_tty = [0, 2].into_iter().any(|fd| rustix::termios::isatty(crate::fds::own_std(fd)));
    let ignores = |sig: u32| st.sigactions[sig as usize - 1].handler == 1;
    match (on_tty, ignores(linux_raw_sys::general::SIGINT), ignores(linux_raw_sys::general::SIGQUIT)) {
        (false, _, _) | (true, false, false) => None,
        (true, true, true) => Some("SIGINT and SIGQUIT"),
        (true, true, false) => Some("SIGINT"),
        (true, false, true) => Some("SIGQUIT"),
    }
}

/// The processes of an image that still run here (see [`still_runs`]), named for one line. A
/// second copy of them would share their files and sockets, and each would write over the
/// other's output: refused unless `--allow-running`.
struct StillRunning {
    /// `PID n, EXE` of each, `; ` between them.
    names: ckpt_sigsafe::out::Line,
    count: usize,
}

impl StillRunning {
    fn new() -> StillRunning {
        StillRunning { names: ckpt_sigsafe::out::Line::new(), count: 0 }
    }

    fn note(&mut self, st: &ProcessState) {
        if !still_runs(st) {
            return;
        }
        use core::fmt::Write;
        let sep = if self.count > 0 { "; " } else { "" };
        let _ = write!(self.names, "{sep}PID {}, {}", st.pid, Lossy(st.exe.as_bytes()));
        self.count += 1;
    }

    /// Refuses (or, with `allow`, says it goes on) if any still runs; `tree` for a tree image.
    fn judge(&self, path: &CStr, tree: bool, allow: bool) -> Result<(), Refusal> {
        let (n, names) = (self.count, Lossy(self.names.as_bytes()));
        let what = if n == 1 { "process" } else { "processes" };
        match (n, tree, allow) {
            (0, _, _) => Ok(()),
            (_, false, false) => Err(refuse(path, format_args!(
                "the checkpointed process still runs ({names}): a second copy would share its files and write over its output; end it first, or give --allow-running"
            ))),
            (_, false, true) => {
                say!("myrestart: {}: the checkpointed process still runs ({names}); restoring a second copy of it, as asked (--allow-running)", Lossy(path.to_bytes()));
                Ok(())
            }
            (_, true, false) => Err(refuse(path, format_args!(
                "{n} {what} of the checkpointed tree still {}: second copies would share their files and write over their output; end them first, or give --allow-running ({names})",
                if n == 1 { "runs" } else { "run" }
            ))),
            (_, true, true) => {
                say!(
                    "myrestart: {}: {n} {what} of the checkpointed tree still {}; restoring second copies, as asked (--allow-running) ({names})",
                    Lossy(path.to_bytes()),
                    if n == 1 { "runs" } else { "run" }
                );
                Ok(())
            }
        }
    }
}

/// Whether the process the image was taken from runs here: its PID belongs to a live process
/// of the same program that started before the image was taken (a later process with the PID
/// cannot be it). An image taken inside a PID namespace (a restored tree checkpointed again)
/// names PIDs of that namespace, which here are other processes: the low PIDs its processes
/// forked after the restart got are the kernel's threads here, never taken for the program.
fn still_runs(st: &ProcessState) -> bool {
    let mut path = [0u8; 64];
    let mut stat = [0u8; 1024];
    let mut uptime = [0u8; 128];
    let mut exe = [0u8; 4096];
    let pid = st.pid as u64;
    if pid == 0 || pid == rustix::process::getpid().as_raw_nonzero().get() as u64 {
        return false;
    }
    let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid, b"/stat") else { return false };
    let Ok(n) = ckpt_sigsafe::file::read_whole(p, &mut stat) else { return false };
    if matches!(ckpt_sigsafe::proctext::stat_state(&stat[..n]), Some(b'Z' | b'X') | None) {
        return false;
    }
    if ckpt_sigsafe::proctext::stat_kernel_thread(&stat[..n]) {
        return false;
    }
    let Ok(u) = ckpt_sigsafe::file::read_whole(c"/proc/uptime", &mut uptime) else { return false };
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let now = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    let Some(started) = ckpt_sigsafe::proctext::start_unix_ns(&stat[..n], &uptime[..u], now) else { return false };
    // Ticks and uptime are in hundredths of a second.
    if started > st.created_unix_ns + 50_000_000 {
        return false;
    }
    let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid, b"/exe") else { return false };
    match rustix::fs::readlinkat_raw(rustix::fs::CWD, p, &mut exe[..]) {
        Ok(n) => exe.get(..n) == Some(st.exe.as_bytes()),
        // No program at all: it is ending.
        Err(rustix::io::Errno::NOENT) => false,
        // Not ours to look at (a program that made itself undumpable): the same PID, an earlier
        // start and our own user are enough. Another user's process is not the program.
        Err(_) => same_real_user(pid),
    }
}

/// Whether process `pid` runs as our real user (`/proc/PID/status`, which anyone may read).
fn same_real_user(pid: u64) -> bool {
    let mut path = [0u8; 64];
    let mut status = [0u8; 2048];
    let Some(p) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/", pid, b"/status") else { return false };
    let Ok(n) = ckpt_sigsafe::file::read_whole(p, &mut status) else { return false };
    ckpt_sigsafe::proctext::status_real_uid(&status[..n]) == Some(rustix::process::getuid().as_raw())
}

/// The CPU must support the register state the image saved.
fn check_machine(path: &CStr, st: &ProcessState) -> Result<(), Refusal> {
    if st.xfeatures == 0 {
        return Ok(());
    }
    let have = ckpt_sigsafe::cpu::xcr0();
    if st.xfeatures & !have != 0 {
        return Err(refuse(path, format_args!(
            "the image needs CPU register state this machine does not enable (XSAVE features {:#x}, this machine has {:#x})",
            st.xfeatures, have
        )));
    }
    Ok(())
}

/// What differs on another node, where the image says what its node was
/// (`ckpt_image::node`): a CPU that lacks a feature the image's had refuses the restart, naming
/// them (the program may have chosen code that uses them); a kernel whose vdso is not the one
/// recorded refuses it (the program holds addresses into the old one); another host name, or
/// another kernel with the same vdso, is one line. An image without the note (an older ckpt)
/// is compared by its kernel's name only, and restarts as it always did.
fn check_node(path: &CStr, image: &Image, st: &ProcessState) -> Result<(), Refusal> {
    let uts = rustix::system::uname();
    let mut now_kernel = [0u8; 72];
    let kernel_now = kernel_name(&mut now_kernel, uts.release().to_bytes(), uts.machine().to_bytes());
    let kernel_then = st.kernel_str().as_bytes();
    let other_kernel = !kernel_then.is_empty() && kernel_then != kernel_now;
    let Some(node) = image.node() else {
        if other_kernel {
            say!(
                "myrestart: the image was taken on kernel {} and this is {}; it does not record that kernel's vdso (an older ckpt made it), so whether the program's addresses into it still hold is not checked",
                Lossy(kernel_then), Lossy(kernel_now)
            );
        }
        return Ok(());
    };
    let node = node.map_err(|e| refuse(path, format_args!("{e}")))?;
    let cpu = ckpt_sigsafe::cpu::feature_words();
    if ckpt_image::node::missing(&node.cpu, &cpu).next().is_some() {
        return Err(refuse(path, format_args!(
            "the image was taken on a CPU with {}; this one lacks them (the program and its libraries may have chosen code that uses them when they started, which would die of SIGILL here): restart it on a node whose CPU has them",
            Lacking(&node.cpu, &cpu)
        )));
    }
    let vdso_now = ckpt_sigsafe::vdso::own().and_then(ckpt_sigsafe::vdso::identity);
    if node.vdso.0 != 0 && vdso_now != Some(node.vdso) {
        return Err(refuse(path, format_args!(
            "the image was taken on kernel {} and this is {}, whose vdso differs: the program keeps addresses of the old vdso's functions (the C library looks them up when it starts), which would be other code here: restart it on a node with the same kernel build",
            Lossy(kernel_then), Lossy(kernel_now)
        )));
    }
    if other_kernel {
        say!("myrestart: the image was taken on kernel {}, and this is {}; their vdso is the same, so the program's addresses into it still hold", Lossy(kernel_then), Lossy(kernel_now));
    }
    let host = uts.nodename().to_bytes();
    if !node.hostname().is_empty() && node.hostname() != host {
        say!("myrestart: checkpointed on {}, restarting on {}", Lossy(node.hostname()), Lossy(host));
    }
    Ok(())
}

/// The kernel's name as an image keeps it (`ProcessState::kernel`): release and machine.
fn kernel_name<'b>(buf: &'b mut [u8; 72], release: &[u8], machine: &[u8]) -> &'b [u8] {
    let n = release.len().min(buf.len() - 2);
    buf[..n].copy_from_slice(&release[..n]);
    buf[n] = b' ';
    let m = machine.len().min(buf.len() - n - 2);
    buf[n + 1..n + 1 + m].copy_from_slice(&machine[..m]);
    &buf[..n + 1 + m]
}

/// The CPU features the image's CPU had and this one lacks, by name, separated by commas.
struct Lacking<'a>(&'a [u32; ckpt_image::node::CPU_WORDS], &'a [u32; ckpt_image::node::CPU_WORDS]);

impl core::fmt::Display for Lacking<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, name) in ckpt_image::node::missing(self.0, self.1).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// Every region must be user memory.
/// The lowest address this process may map (`vm.mmap_min_addr`, at least one page).
fn mmap_min_addr() -> u64 {
    maps::read_number(c"/proc/sys/vm/mmap_min_addr").unwrap_or(65536).max(4096)
}

/// Every region must be mappable here: inside the user address space, above the lowest
/// address this process may map, and (writable private memory counts against the kernel's
/// overcommit limit) within what the kernel will grant.
fn check_regions_fit(path: &CStr, image: &Image) -> Result<(), Refusal> {
    let floor = mmap_min_addr();
    let mut committed = 0u64;
    for i in 0..image.region_count() {
        let Ok(r) = image.region(i) else { continue };
        let rec = r.record;
        if rec.kind == RegionKind::Vsyscall {
            continue; // the kernel's own, at its fixed address (checked with the image)
        }
        if rec.end as usize > TASK_END {
            return Err(refuse(path, format_args!("region {:#x}-{:#x} is above the 47-bit user address space", rec.start, rec.end)));
        }
        if rec.start < floor && !rec.kind.is_kernel_special() {
            return Err(refuse(path, format_args!("region {:#x}-{:#x} is below the lowest address a process may map ({floor:#x})", rec.start, rec.end)));
        }
        if rec.prot & 2 != 0 && !rec.is_shared() && !rec.kind.is_kernel_special() {
            committed = committed.saturating_add(rec.size());
        }
    }
    let (limit, what) = commit_limit();
    if committed > limit {
        return Err(refuse(path, format_args!("the image needs {} MiB of writable memory, more than {what} ({} MiB)", committed >> 20, limit >> 20)));
    }
    Ok(())
}

/// How much writable private memory the kernel will let the restored process have, and what
/// sets that limit (`vm.overcommit_memory`: 0, the default, refuses any one mapping larger
/// than memory and swap together; 2 counts everything against `CommitLimit`; 1 never refuses).
fn commit_limit() -> (u64, &'static str) {
    let mut buf = [0u8; 4096];
    match maps::read_number(c"/proc/sys/vm/overcommit_memory").unwrap_or(0) {
        1 => (u64::MAX, "unlimited"),
        2 => {
            let n = ckpt_sigsafe::file::read_whole(c"/proc/meminfo", &mut buf).unwrap_or(0);
            let kb = |key: &[u8]| {
                ckpt_sigsafe::proctext::status_field(&buf[..n], key)
                    .and_then(|v| v.strip_suffix(b" kB"))
                    .and_then(|v| ckpt_sigsafe::proctext::parse_dec(v.trim_ascii()))
                    .unwrap_or(0)
            };
            ((kb(b"CommitLimit:").saturating_sub(kb(b"Committed_AS:"))) << 10, "the commit limit left (vm.overcommit_memory = 2)")
        }
        _ => {
            let si = rustix::system::sysinfo();
            let unit = (si.mem_unit as u64).max(1);
            ((si.totalram as u64).saturating_add(si.totalswap as u64).saturating_mul(unit), "memory and swap together")
        }
    }
}

/// The bounds `PR_SET_MM_MAP` will be given must pass the kernel's own checks: every address
/// inside the user address space, each pair in order, and the data segment within
/// `RLIMIT_DATA`.
fn check_mm(path: &CStr, st: &ProcessState) -> Result<(), Refusal> {
    let mm = &st.mm;
    let floor = mmap_min_addr();
    let fields = [
        mm.start_code, mm.end_code, mm.start_data, mm.end_data, mm.start_brk, mm.brk, mm.start_stack, mm.arg_start, mm.arg_end,
        mm.env_start, mm.env_end,
    ];
    let inside = fields.iter().all(|&a| a >= floor && (a as usize) < TASK_END);
    let ordered = mm.start_code < mm.end_code
        && mm.start_data <= mm.end_data
        && mm.start_brk <= mm.brk
        && mm.arg_start <= mm.arg_end
        && mm.env_start <= mm.env_end;
    if !inside || !ordered {
        return Err(refuse(path, format_args!("the memory layout fields (code, data, heap, stack, arguments) are out of range or out of order")));
    }
    let data = (mm.brk - mm.start_brk).saturating_add(mm.end_data - mm.start_data);
    let limit = ckpt_sigsafe::sys::prlimit(linux_raw_sys::general::RLIMIT_DATA, None).map_or(u64::MAX, |l| l[0]);
    if data > limit {
        return Err(refuse(path, format_args!("the heap and data ({} MiB) exceed this process's RLIMIT_DATA ({} MiB)", data >> 20, limit >> 20)));
    }
    Ok(())
}

/// A thread's own pointers must land in restored memory, and its TLS bases in user space.
fn check_targets(path: &CStr, image: &Image, st: &ThreadState) -> Result<(), Refusal> {
    let writable = |addr: u64, len: u64| {
        (0..image.region_count()).filter_map(|i| image.region(i).ok()).any(|r| {
            r.record.prot & 2 != 0
                && r.record.start <= addr
                && addr.checked_add(len).is_some_and(|end| end <= r.record.end)
                && !r.record.kind.is_kernel_special()
        })
    };
    for (what, base) in [("TLS base (fs)", st.fs_base), ("gs base", st.gs_base)] {
        if base as usize >= TASK_END {
            return Err(refuse(path, format_args!("{what} {base:#x} of thread {} is outside user space", st.tid)));
        }
    }
    // The kernel takes an rseq area of at least 32 bytes, aligned to 32.
    if st.flags & FLAG_RSEQ != 0 && (!writable(st.rseq_addr, st.rseq_len as u64) || st.rseq_len < 32 || st.rseq_addr % 32 != 0) {
        return Err(refuse(path, format_args!("rseq area {:#x} of thread {} is not in writable memory", st.rseq_addr, st.tid)));
    }
    if st.flags & FLAG_PATCH_TID != 0 && !writable(st.tid_address, 4) {
        return Err(refuse(path, format_args!("thread id cache {:#x} of thread {} is not in writable memory", st.tid_address, st.tid)));
    }
    if st.tid_address as usize >= TASK_END || st.robust_list as usize >= TASK_END {
        return Err(refuse(path, format_args!("thread {}'s TID or robust-list address is outside user space", st.tid)));
    }
    Ok(())
}

/// Pairs the kernel's special mappings of this process with those in the image. The vdso
/// finds its data pages at fixed offsets from itself, so sizes and relative placement must
/// match: they do when checkpoint and restart run on the same kernel build.
fn find_specials(path: &CStr, image: &Image, p: &mut Plan) -> Result<(), Refusal> {
    static mut OWN_MAPS: [u8; 65536] = [0; 65536];
    // SAFETY: single-threaded; this is the only reference to the buffer.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(OWN_MAPS) };
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", buf).map_err(|e| refuse(path, format_args!("reading /proc/self/maps: {}", describe(e))))?;
    for (slot, kind) in p.specials.iter_mut().zip(SPECIAL_KINDS) {
        *slot = Special::default();
        let own = maps::entries(&buf[..n]).find(|e| RegionKind::from_maps_name(e.name) == kind);
        let target = image.find_kind(kind);
        match (own, target) {
            (_, None) => {}
            (None, Some(_)) => {
                return Err(refuse(path, format_args!("the image uses the kernel's {kind:?} mapping, which this kernel does not provide")));
            }
            (Some(o), Some(t)) => {
                if (o.end - o.start) as u64 != t.record.size() {
                    return Err(refuse(path, format_args!("the kernel's {kind:?} mapping differs in size from the image's (taken on another kernel?)")));
                }
                *slot = Special { present: true, own_start: o.start, target_start: t.record.start as usize, len: o.end - o.start };
            }
        }
    }
    let vdso = p.specials[2];
    for s in &p.specials[..2] {
        if s.present && vdso.present && s.own_start.wrapping_sub(vdso.own_start) != s.target_start.wrapping_sub(vdso.target_start) {
            return Err(refuse(path, format_args!("the vdso and its data pages are laid out differently from the image (taken on another kernel?)")));
        }
    }
    Ok(())
}

/// `PR_SET_MM_MAP` is how the heap bounds come back; try it now, harmlessly, with our own
/// current values, so that a kernel that refuses it is found before anything is changed.
fn check_mm_map_allowed(path: &CStr) -> Result<(), Refusal> {
    let mut buf = [0u8; 1024];
    let n = {
        let unread = |e| refuse(path, format_args!("cannot read /proc/self/stat: {}", describe(e)));
        let fd = rustix::fs::open(c"/proc/self/stat", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(unread)?;
        ckpt_sigsafe::sys::pread_full(fd.as_raw_fd(), &mut buf, 0).map_err(unread)?
    };
    let stat = &buf[..n];
    let field = |i| ckpt_sigsafe::proctext::stat_field(stat, i).unwrap_or(0);
    let map = rustix::process::PrctlMmMap {
        start_code: field(26),
        end_code: field(27),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk: ckpt_sigsafe::sys::current_brk(),
        start_stack: field(28),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
        auxv: core::ptr::null_mut(),
        auxv_size: 0,
        exe_fd: -1,
    };
    // SAFETY: these are this process's current values, so setting them changes nothing.
    if let Err(e) = unsafe { rustix::process::configure_virtual_memory_map(&map) } {
        return Err(refuse(path, format_args!("the kernel refuses prctl(PR_SET_MM_MAP), needed to restore the heap: {}", describe(e))));
    }
    Ok(())
}

/// Names each resource limit whose saved hard limit is above what this process may set (only
/// privilege raises a hard limit): it comes back at the current hard limit.
fn report_rlimits(st: &ProcessState) {
    const NAMES: [&str; ckpt_image::state::RLIMITS] = [
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
        "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    ];
    let privileged = rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SYS_RESOURCE));
    for (i, l) in st.rlimits.iter().enumerate() {
        let Ok(now) = ckpt_sigsafe::sys::prlimit(i as u32, None) else { continue };
        if l[1] > now[1] && !privileged {
            say!("myrestart: {} hard limit {} is above this process's {}; it stays {}", NAMES[i], l[1], now[1], now[1]);
        }
    }
}

