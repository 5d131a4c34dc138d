//! Changes outside the process that the plan prepares but does not make. They wait until every
//! check of every part of the image has passed (in a tree, until every process has made its
//! plan: the first barrier), so that a refused restart leaves the filesystem as it found it.
//! Each process makes its own (`changes::run`) just before its point of no return: first those that
//! can be taken back, then (in a tree, once every process has made those) the dead socket
//! files replaced. If the restart is refused even so (an act fails here, or in another process
//! of the tree), each process takes back what it made ([`Acts::undo`]) before it ends.
//!
//! - a log that was gone is made again at its path (`files::make_log`): the plan parked a
//!   placeholder on the program's descriptor, which the new file replaces. In a tree, a log
//!   that several processes share (one open file description) was made by the pool as a file
//!   without a name (`O_TMPFILE`), which gets its name here;
//! - a unix socket with a path is bound to it, and listens if it did (`sockets::bind_planned`);
//!   a dead socket file of the user's own at that path (the checkpointed program's, whose
//!   listener is gone) is removed first. The plan probed the path, harmlessly: nothing there, or
//!   such a socket file; anything else was refused;
//! - a POSIX shared memory object that was gone is given its path (`shmobj::name`): the plan
//!   made it without a name, with its mode, owner and size;
//! - the bytes a FIFO held are put back into it (`files::fill_fifo`): whoever else has it open
//!   could read them. Like the replaced socket files, they cannot be taken back, and come last,
//!   as does the emptying of a shared memory object of the program's found at its path
//!   (`shmobj::reset`), whose contents the restore then replaces with the image's.
//!
//! Each act's directory was opened by the plan and parked (`Act::dir`): what is looked at,
//! made, removed or taken back is named there, by its last component, so that a directory
//! renamed or replaced between the plan and the act cannot turn a check made on one file into
//! a removal of another. A file is removed only if it is still the very one (device and inode)
//! looked at, just before.
//!
//! Unix datagram sockets are connected to their addresses again after all this
//! (`changes::connect`):
//! in a tree, once every process's sockets are bound.
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::arena::Table;
use crate::fds::Parked;
use ckpt_image::Image;

/// What to do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Make the log the program's descriptor had (it was gone), and put it on the placeholder.
    NewLog,
    /// Give the log made without a name its name.
    NameLog,
    /// Bind the socket to its path (and listen, if it did); `stale`: the device and inode of a
    /// dead socket file to remove first.
    Bind { stale: Option<(u64, u64)> },
    /// Put the bytes a FIFO held back into it (others who have it open would read them).
    FillFifo,
    /// Give the POSIX shared memory object made without a name its path (`shmobj`).
    NameShm,
    /// Empty the program's shared memory object found at its path to `size` bytes, for the
    /// image's bytes (`shmobj`).
    ResetShm { size: u64 },
}

impl What {
    /// Whether it cannot be taken back, and so waits until every other change is made (in a
    /// tree, every process's: the second barrier).
    pub fn for_good(self) -> bool {
        matches!(self, What::Bind { stale: Some(_) } | What::FillFifo | What::ResetShm { .. })
    }
}

/// One change, and once made, what now has the path (device and inode), to take it back.
#[derive(Clone, Copy)]
pub struct Act {
    /// The process of the tree that makes it (0 for a single process).
    pub member: usize,
    /// The program's descriptor it concerns, whose record names the path (for a shared memory
    /// object, the index of a region mapping it, whose name is the path).
    pub target: i32,
    /// The parked descriptor it works on: the placeholder, the unnamed log, the socket.
    pub fd: Parked,
    /// The directory of its path as the plan opened it (parked): the name is made, looked at
    /// and removed there, by its last component. For the unnamed log, that is also the mount
    /// namespace the file was made in (a link across mounts, even of the same filesystem, is
    /// refused). None for an act without one (the FIFO's bytes).
    pub dir: Option<Parked>,
    pub what: What,
    pub made: Option<(u64, u64)>,
}

pub const NO_ACT: Act = Act { member: 0, target: -1, fd: Parked::NONE, dir: None, what: What::NewLog, made: None };

/// The changes a plan prepares, and for whom they are being prepared now.
pub struct Acts {
    /// Room for a socket for each descriptor, and the logs (see `tables`).
    pub list: Table<Act>,
    n: usize,
    /// The process of the tree whose descriptors the plan is opening.
    pub member: usize,
    /// Whether they are the tree's shared files, opened once before its processes exist.
    pub pooled: bool,
}

impl Acts {
    pub const NONE: Acts = Acts { list: Table::EMPTY, n: 0, member: 0, pooled: false };

    /// Notes a change for the process whose plan is being made. `false` if there are too many.
    pub fn add(&mut self, target: i32, fd: Parked, dir: Option<Parked>, what: What) -> bool {
        if self.n == self.list.len() {
            return false;
        }
        self.list[self.n] = Act { member: self.member, target, fd, dir, what, made: None };
        self.n += 1;
        true
    }

    /// How many acts are noted (for every process of a tree).
    pub fn noted(&self) -> usize {
        self.n
    }

    /// Takes back what `changes::run` made of these acts, of the image `image`: each path it
    /// gave a file or socket is removed, if that file or socket is still what has it.
    pub fn undo(&self, image: Option<Image>) {
        let Some(image) = image else { return };
        for a in self.list[..self.n].iter().rev() {
            let Some((dev, ino)) = a.made else { continue };
            let mut buf = [0u8; 4096];
            let Some(path) = path_of(&image, a, &mut buf) else { continue };
            let (dir, name) = where_named(a, path);
            let ours = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| (st.st_dev, st.st_ino) == (dev, ino));
            if ours {
                let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
            }
        }
    }
}

/// The path an act gives a name: the log's, or the socket's (not abstract).
pub fn path_of<'b>(image: &Image, a: &Act, buf: &'b mut [u8; 4096]) -> Option<&'b core::ffi::CStr> {
    let mut put = |bytes: &[u8]| {
        if bytes.len() >= buf.len() || bytes.contains(&0) {
            return None;
        }
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[bytes.len()] = 0;
        Some(bytes.len())
    };
    let n = match a.what {
        What::NewLog | What::NameLog => put(image.fds().filter_map(Result::ok).find(|(r, _)| r.fd == a.target && r.same_as < 0)?.1)?,
        What::Bind { .. } => put(crate::fds::unix_path(&image.sockets().filter_map(Result::ok).find(|s| s.fd == a.target)?)?)?,
        What::FillFifo => return None,
        What::NameShm | What::ResetShm { .. } => put(image.region(usize::try_from(a.target).ok()?).ok()?.name)?,
    };
    core::ffi::CStr::from_bytes_with_nul(&buf[..=n]).ok()
}

/// The directory and name by which an act names its path: the parked directory and the last
/// component (the path itself, from the working directory, for an act without one).
pub fn where_named<'a, 'p>(a: &'a Act, path: &'p core::ffi::CStr) -> (rustix::fd::BorrowedFd<'a>, &'p core::ffi::CStr) {
    let Some(dir) = &a.dir else {
        return (rustix::fs::CWD, path);
    };
    let bytes = path.to_bytes_with_nul();
    let from = path.to_bytes().iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let name = core::ffi::CStr::from_bytes_with_nul(&bytes[from..]).unwrap_or(path);
    (dir.as_fd(), name)
}
