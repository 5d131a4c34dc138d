//! How much one image may hold: the single place both sides take their limits from.
//!
//! The checkpoint refuses (with a message, leaving the program running) a program that has more
//! than these; the restart refuses an image that says it has more, before anything changes,
//! and otherwise sizes its tables from what the image holds ([`Counts`], from
//! `Image::counts`), so that whatever was
//! checkpointed can be restarted.

/// Most memory regions (ELF program headers) one process's image holds: `e_phnum` is 16 bits,
/// and the first program header is the note.
pub const MAX_REGIONS: usize = 65_000;

/// Most open descriptors one process's image holds.
pub const MAX_FDS: usize = 65_536;

/// Most file locks (`NT_CKPT_LOCKS` records) one process's image holds: a checkpoint of a
/// program holding more is refused, with a message, and the program goes on.
pub const MAX_LOCKS: usize = 65_536;

/// Most threads one process's image holds (the main thread included).
pub const MAX_THREADS: usize = 4096;

/// Most processes one tree image holds.
pub const MAX_TREE: usize = 512;

/// Largest header block (ELF headers and notes) of one process's image. The descriptor records
/// are the part that grows most: 65,536 descriptors with paths of about 100 bytes take 15 MiB.
pub const MAX_HEADERS: usize = 64 << 20;

/// Most pipes (by inode) whose queued bytes one checkpoint copies: a program with more pipes
/// open for reading is refused by the checkpoint, with a message, and goes on.
pub const MAX_PIPES_COPIED: usize = 4096;
/// Bytes a tree checkpoint drains, in all, from TCP connections between two of its processes
/// (bytes not yet sent, read without `CAP_NET_ADMIN`): kept in its control block meanwhile.
pub const MAX_TREE_DRAINED: usize = 16 * 1024 * 1024;

/// Most regions of shared memory (or memory a child does not inherit) one checkpoint copies;
/// so also the most `NT_CKPT_SHMFILES` records an image holds (regions of POSIX shared memory
/// objects).
pub const MAX_SHARED_COPIED: usize = 4096;

/// Most inotify watches whose paths libckpt remembers (from the interposed
/// `inotify_add_watch`); a watch past them is named at checkpoint and not restored.
pub const MAX_WATCHES: usize = 8192;

/// Most unused watch numbers a restart fills (with throwaway watches) to give an inotify
/// instance's watches their numbers again: each costs microseconds, and a watch number near
/// 2^31 would otherwise hold the restart for hours.
pub const MAX_WATCH_GAP: u64 = 1 << 16;

/// Most bytes a checkpoint keeps of what is queued in one direction of a pseudo-terminal pair
/// (a line discipline holds 4 KiB, and its flip buffers up to 64 KiB more).
pub const MAX_PTY_QUEUE: usize = 64 << 10;

/// Most System V IPC objects (segments, semaphore sets, message queues) whose IDs libckpt
/// remembers (from the interposed `shmget`, `semget` and `msgget`) and one process's image
/// records; one past them is named at checkpoint and not restored.
pub const MAX_IPC_OBJECTS: usize = 256;

/// Longest message a System V or POSIX queue record holds (the kernel's own ceilings, `msgmax`
/// and `msgsize_max` as root may raise them, are far above their defaults of 8 KiB).
pub const MAX_IPC_MESSAGE: u64 = 1 << 20;

/// Most bytes of System V IPC records (semaphore values and queued messages) in one process's
/// image.
pub const MAX_IPC_BYTES: usize = 4 << 20;

/// Largest file the checkpoint hashes whole among those the program could write in place
/// (`NT_CKPT_WRITTEN`): a restart compares its bytes; a larger file, only its size and times.
pub const WRITTEN_HASH_MAX: u64 = 4 << 20;

/// Most bytes of such files one process's checkpoint hashes in all (the program is stopped
/// meanwhile); the files past it are compared by size and times.
pub const WRITTEN_HASH_TOTAL: u64 = 64 << 20;

/// What one process's image holds of what the restart keeps tables for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub regions: usize,
    pub fds: usize,
    pub threads: usize,
}

/// A count of an image past its limit: what, how many, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit {
    pub what: &'static str,
    pub count: usize,
    pub max: usize,
}

impl core::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "the image holds {} {} in one process, more than the {} a restart takes", self.count, self.what, self.max)
    }
}

impl Counts {
    /// The first count past its limit, if any.
    pub fn over_limit(&self) -> Option<OverLimit> {
        [("regions", self.regions, MAX_REGIONS), ("descriptors", self.fds, MAX_FDS), ("threads", self.threads, MAX_THREADS)]
            .into_iter()
            .find(|&(_, count, max)| count > max)
            .map(|(what, count, max)| OverLimit { what, count, max })
    }

    /// Each count the larger of the two.
    pub fn max(self, o: Counts) -> Counts {
        Counts { regions: self.regions.max(o.regions), fds: self.fds.max(o.fds), threads: self.threads.max(o.threads) }
    }

    /// The counts added (saturating: only compared and used to size tables).
    pub fn plus(self, o: Counts) -> Counts {
        Counts {
            regions: self.regions.saturating_add(o.regions),
            fds: self.fds.saturating_add(o.fds),
            threads: self.threads.saturating_add(o.threads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_past_its_limit_is_named() {
        let at = Counts { regions: MAX_REGIONS, fds: MAX_FDS, threads: MAX_THREADS };
        assert_eq!(at.over_limit(), None, "the limits themselves are allowed");
        let over = Counts { fds: MAX_FDS + 1, ..at }.over_limit().unwrap();
        assert_eq!((over.what, over.count, over.max), ("descriptors", MAX_FDS + 1, MAX_FDS));
        assert_eq!(Counts { threads: MAX_THREADS + 1, ..at }.over_limit().map(|o| o.what), Some("threads"));
        assert_eq!(Counts { regions: MAX_REGIONS + 1, ..at }.over_limit().map(|o| o.what), Some("regions"));
    }

    #[test]
    fn counts_combine_per_field() {
        let a = Counts { regions: 5, fds: 1, threads: 9 };
        let b = Counts { regions: 2, fds: 7, threads: 3 };
        assert_eq!(a.max(b), Counts { regions: 5, fds: 7, threads: 9 });
        assert_eq!(a.plus(b), Counts { regions: 7, fds: 8, threads: 12 });
    }
}

