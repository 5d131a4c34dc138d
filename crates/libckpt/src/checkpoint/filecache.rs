//! The content hashes of the program's and libraries' files, kept from one checkpoint to the
//! next: a writer that names a mapped file (rather than copying its pages) hashes the bytes
//! the region maps, which for a program with many libraries is a large part of a small
//! checkpoint (python3 with ssl and sqlite3: 12 to 25 ms). The next writer takes the hash from
//! here instead if the file is the same one, unchanged: same device, inode, size, modification
//! and change times (the change time is the kernel's own, which no user can set back), and the
//! same part of it mapped.
//!
//! Where: a memfd of a few pages mapped shared into the program, made by the checkpoint
//! handler, so that every writer it forks reads and fills the same memory. The mapping is no
//! part of an image (`write::regions` leaves it out by its name) and its descriptor is closed
//! once it is mapped. Its address is taken out of the program's memory while a writer is
//! started (`take`, `put_back`), so that the image holds none: a restored process makes a new
//! one. It is inherited by the writer alone: marked `MADV_DONTFORK` except while the writer is
//! forked (the program's threads stopped), so that a child the program forks has none of it
//! (it makes its own, known by the PID that made it) and cannot change its parent's hashes.
//! Writers of one process follow each other, but a record still carries a check of its words,
//! so that a torn one would only be a miss.
//!
//! # Signal-safety fence
//! Runs in the checkpoint handler and the writer: raw system calls and atomics on the shared
//! mapping; no allocation, no locks, no libc.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rustix::mm::Advice;

/// How the mapping shows in `/proc/PID/maps`.
pub const MAP_NAME: &[u8] = b"/memfd:ckpt-filehash (deleted)";

/// What a record is looked up by: the file's identity and the part of it the region maps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (u64, u64),
    pub ctime: (u64, u64),
    pub offset: u64,
    pub len: u64,
}

impl Key {
    fn words(&self) -> [u64; 9] {
        [self.dev, self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1, self.offset, self.len]
    }
}

/// A record: the key's words, the hash, and a check over both.
const WORDS: usize = 11;
/// Records in the mapping (one slot per key, by the key's hash).
const SLOTS: usize = 1024;
const LEN: usize = (SLOTS * WORDS * 8).next_multiple_of(4096);

/// The mapping's address in this process (0: none yet, or taken by `take`).
static AT: AtomicUsize = AtomicUsize::new(0);
/// The process that made the mapping at `AT`: in a child the program forked, `AT` is its
/// parent's, whose mapping the child did not inherit.
static OWNER: AtomicU32 = AtomicU32::new(0);

/// The cache a writer about to start uses: its address, taken out of the program's memory
/// until [`put_back`] (0: none, and none could be made). Made now if there is none yet.
pub fn take() -> usize {
    if crate::config::get().attached {
        // libckpt's code is in the process only for this checkpoint: nothing to keep.
        return 0;
    }
    let at = match AT.swap(0, Ordering::AcqRel) {
        at if at != 0 && OWNER.load(Ordering::Acquire) == own_pid() => at,
        _ => make().unwrap_or(0),
    };
    // The writer about to be forked inherits it (the program's threads are stopped until
    // `put_back`, so no child of theirs does meanwhile).
    if at != 0 && fork_advice(at, Advice::LinuxDoFork).is_err() {
        return 0;
    }
    at
}

/// Once the writer is started (or the image is written): the program keeps the cache, which
/// its own children do not inherit.
pub fn put_back(at: usize) {
    if at != 0 && fork_advice(at, Advice::LinuxDontFork).is_ok() {
        AT.store(at, Ordering::Release);
    }
}

fn own_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

fn fork_advice(at: usize, advice: Advice) -> Result<(), rustix::io::Errno> {
    // SAFETY: `at` is the cache's mapping of LEN bytes (made by `make`, never unmapped); the
    // advice changes only whether a fork copies it, not its contents.
    unsafe { rustix::mm::madvise(at as *mut _, LEN, advice) }
}

fn make() -> Result<usize, rustix::io::Errno> {
    let fd = rustix::fs::memfd_create(c"ckpt-filehash", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, LEN as u64)?;
    use rustix::mm::{MapFlags, ProtFlags};
    // SAFETY: a new shared mapping of our own memfd, which overlaps nothing; the descriptor is
    // closed when `fd` is dropped, the mapping stays.
    let p = unsafe { rustix::mm::mmap(core::ptr::null_mut(), LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0) }?;
    OWNER.store(own_pid(), Ordering::Release);
    Ok(p as usize)
}

/// The record slot of `key` in the cache at `at`.
fn slot(at: usize, key: &Key) -> &'static [AtomicU64; WORDS] {
    let i = (mix(&key.words()) as usize) % SLOTS;
    // SAFETY: `at` is a mapping of LEN bytes made by `make` that stays mapped for the life of the
    // process and its writers (it is never unmapped), accessed only through these atomics;
    // slot `i` lies inside it, 8-byte aligned.
    unsafe { &*((at + i * WORDS * 8) as *const [AtomicU64; WORDS]) }
}

/// A hash of words, for the slot and the check (never 0, so an empty record never checks).
fn mix(words: &[u64]) -> u64 {
    let mut bytes = [0u8; WORDS * 8];
    for (b, w) in bytes.chunks_exact_mut(8).zip(words) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    ckpt_image::hash(&bytes[..words.len() * 8]).max(1)
}

/// The content hash recorded for `key` in the cache at `at`, if any.
pub fn get(at: usize, key: &Key) -> Option<u64> {
    if at == 0 {
        return None;
    }
    let s = slot(at, key);
    let mut words = [0u64; WORDS];
    for (w, a) in words.iter_mut().zip(s) {
        *w = a.load(Ordering::Acquire);
    }
    (words[..9] == key.words() && words[10] == mix(&words[..10])).then_some(words[9])
}

/// Records `hash` for `key` in the cache at `at`.
pub fn put(at: usize, key: &Key, hash: u64) {
    if at == 0 {
        return;
    }
    let s = slot(at, key);
    let mut words = [0u64; WORDS];
    words[..9].copy_from_slice(&key.words());
    words[9] = hash;
    words[10] = mix(&words[..10]);
    // The check first cleared, last set: a reader meanwhile finds a record that does not check.
    s[10].store(0, Ordering::Release);
    for (a, w) in s.iter().zip(words).take(10) {
        a.store(w, Ordering::Release);
    }
    s[10].store(words[10], Ordering::Release);
}
