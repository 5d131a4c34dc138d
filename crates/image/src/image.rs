//! Reading an image: find the metadata, check it, and give typed access to its parts.

use crate::bytes::{find_from, Reader};
use crate::fds::FdIter;
use crate::elf::{Ehdr, Phdr, EHDR_SIZE, PHDR_SIZE, PT_LOAD, PT_NOTE};
use crate::note::{Note, Notes};
use crate::region::{RegionKind, RegionRecord, HEADER_SIZE, RECORD_SIZE};
use crate::state::{ProcessState, FLAG_ATTACHED, META_HASH_OFFSET};
use crate::thread::ThreadState;
use crate::timers::TimerIter;
use crate::epoll::EpollIter;
use crate::inotify::WatchIter;
use crate::sockets::SocketIter;
use crate::timerfd::TimerFdIter;
use crate::{ImageError, CKPT_NOTE_NAME, MAX_REGIONS, NT_CKPT_FDS, NT_CKPT_REGIONS, NT_CKPT_STATE, NT_CKPT_EPOLL, NT_CKPT_INOTIFY, NT_CKPT_LOCKS, NT_CKPT_SOCKETS, NT_CKPT_THREAD, NT_CKPT_TIMERFDS, NT_CKPT_TIMERS, PAGE_SIZE};

/// Where x86-64 kernels put the legacy `[vsyscall]` page.
pub const VSYSCALL: (u64, u64) = (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000);

/// Bytes a reader must read first to learn [`meta_len`].
pub const PREFIX_LEN: usize = EHDR_SIZE + PHDR_SIZE;

/// Length of the metadata (headers and notes) from the first [`PREFIX_LEN`] bytes of a file.
pub fn meta_len(prefix: &[u8]) -> Result<u64, ImageError> {
    let ehdr = Ehdr::read(prefix)?;
    if ehdr.phoff != EHDR_SIZE as u64 || ehdr.phnum == 0 {
        return Err(ImageError::Foreign);
    }
    let mut r = Reader::new(prefix.get(EHDR_SIZE..).ok_or(ImageError::Truncated)?);
    let note = Phdr::read(&mut r)?;
    let phdrs_end = EHDR_SIZE as u64 + PHDR_SIZE as u64 * ehdr.phnum as u64;
    if note.p_type != PT_NOTE || note.offset != phdrs_end {
        return Err(ImageError::Foreign);
    }
    note.offset.checked_add(note.filesz).ok_or(ImageError::Malformed("note segment size overflows"))
}

/// How many bytes of headers the image (or tree part) that starts at `at` in a file of
/// `file_len` bytes has, from the bytes read there first: `prefix`, [`PREFIX_LEN`] of them, or
/// fewer where the file ends sooner. The length is [`meta_len`], at most
/// [`crate::limits::MAX_HEADERS`] and ending inside the file. A file that starts like ELF but
/// ends before its first headers do is truncated, not foreign.
pub fn headers_len(prefix: &[u8], at: u64, file_len: u64) -> Result<usize, ImageError> {
    let total = meta_len(prefix).map_err(|e| if prefix.len() >= 4 && prefix.len() < PREFIX_LEN && prefix[..4] == *b"\x7fELF" { ImageError::Truncated } else { e })?;
    if total > crate::limits::MAX_HEADERS as u64 {
        return Err(ImageError::Malformed("header block is implausibly large"));
    }
    if at.saturating_add(total) > file_len {
        return Err(ImageError::Truncated);
    }
    Ok(total as usize)
}

/// A region as the image describes it: its record and its PT_LOAD.
#[derive(Debug, Clone, Copy)]
pub struct RegionRef<'a> {
    pub index: usize,
    pub record: RegionRecord,
    /// Offset of the data in the file (meaningful when `record.has_data()`).
    pub data_offset: u64,
    /// The region's name (`/proc/self/maps` path column), possibly empty.
    pub name: &'a [u8],
}

/// A checked view of an image's metadata.
#[derive(Clone, Copy)]
pub struct Image<'a> {
    meta: &'a [u8],
    phnum: usize,
    notes: &'a [u8],
    regions_desc: &'a [u8],
    region_count: usize,
    pub file_len: u64,
    /// The format version of the image (from its state note): what older layouts to expect.
    pub version: u32,
}

/// What [`Image::check_layout`] found that the last checks need: how many threads the image
/// has, what its state says of the resume trampolines, and whether they are in executable
/// regions.
pub(crate) struct Seen {
    threads: usize,
    attached: bool,
    trampolines: [u64; 2],
    trampoline_ok: bool,
    thread_trampoline_ok: bool,
}

impl Seen {
    /// An image of a process that had libckpt names its two trampolines, in executable memory
    /// (the other threads' only if there are other threads); one of a process `ckpt` attached
    /// to from outside ([`FLAG_ATTACHED`]) names none: nothing of libckpt is in its memory, and
    /// myrestart resumes it with code of its own. Anything else is refused: a restart would
    /// jump to an address the image does not account for.
    fn check_trampolines(&self) -> Result<(), ImageError> {
        if self.attached {
            if self.trampolines != [0, 0] {
                return Err(ImageError::Malformed("an image of an attached process names resume trampolines"));
            }
            return Ok(());
        }
        if self.trampolines.contains(&0) {
            return Err(ImageError::Malformed("no resume trampoline, but the image is not of an attached process"));
        }
        if self.threads > 1 && !self.thread_trampoline_ok {
            return Err(ImageError::Malformed("thread trampoline is not in executable memory"));
        }
        if !self.trampoline_ok {
            return Err(ImageError::Malformed("resume trampoline is not in executable memory"));
        }
        Ok(())
    }
}

impl<'a> Image<'a> {
    /// Reads the metadata block (`meta_len` bytes from offset 0) of a file of `file_len` bytes:
    /// checks its length, the state note (decoded into `state`) and its checksum, and finds the
    /// region table. The checks of what the notes say are [`Image::parse`]'s (see `parse`).
    pub(crate) fn read(meta: &'a [u8], file_len: u64, state: &mut ProcessState) -> Result<Image<'a>, ImageError> {
        let total = meta_len(meta)?;
        if total != meta.len() as u64 || total > file_len {
            return Err(ImageError::Truncated);
        }
        let phnum = Ehdr::read(meta)?.phnum as usize;
        let notes = meta.get(EHDR_SIZE + PHDR_SIZE * phnum..).ok_or(ImageError::Truncated)?;

        // The state note comes first; its magic and version are checked before its checksum so
        // that an old or foreign image is named as such, not as corrupt.
        let (first, hash_at) = state_note(meta)?;
        ProcessState::read_into(first.desc, state)?;
        if state.meta_len != total || meta_hash(meta, hash_at) != state.meta_hash {
            return Err(ImageError::MetaChecksum);
        }

        let mut regions_desc: &[u8] = &[];
        for note in Notes::new(notes) {
            let note = note?;
            if note.name == CKPT_NOTE_NAME && note.n_type == NT_CKPT_REGIONS {
                regions_desc = note.desc;
            }
            if note.name == CKPT_NOTE_NAME && !crate::note_type_understood(note.n_type) {
                return Err(ImageError::NewerNote(note.n_type));
            }
        }
        let mut r = Reader::new(regions_desc);
        let count = r.u32().map_err(|_| ImageError::Malformed("no region table"))? as usize;
        let rec_size = r.u32()? as usize;
        if count > MAX_REGIONS {
            return Err(ImageError::TooManyRegions);
        }
        if rec_size != RECORD_SIZE || count + 1 != phnum || regions_desc.len() < HEADER_SIZE + count * RECORD_SIZE {
            return Err(ImageError::Malformed("region table does not match the program headers"));
        }
        Ok(Image { meta, phnum, notes, regions_desc, region_count: count, file_len, version: state.version })
    }

    /// The first checks of what the notes say: the regions (in order, aligned, their data in the
    /// file), the saved file contents, the threads' signal frames, the tree's records. Returns
    /// what the later checks ([`Image::check_records`]) need.
    pub(crate) fn check_layout(&self, state: &ProcessState) -> Result<Seen, ImageError> {
        let meta_len = self.meta.len() as u64;
        let mut prev_end = 0u64;
        let mut trampoline_ok = false;
        let mut thread_trampoline_ok = false;
        for i in 0..self.region_count {
            let reg = self.region(i)?;
            let rec = &reg.record;
            if rec.start >= rec.end || rec.start % PAGE_SIZE != 0 || rec.end % PAGE_SIZE != 0 {
                return Err(ImageError::Malformed("region is empty or not page-aligned"));
            }
            if rec.start < prev_end {
                return Err(ImageError::Malformed("regions overlap or are out of order"));
            }
            prev_end = rec.end;
            // The kind says what the kernel named the mapping, and the kernel's own mappings
            // are where it puts them.
            if RegionKind::from_maps_name(reg.name) != rec.kind {
                return Err(ImageError::Malformed("a region's kind does not match its name"));
            }
            if rec.file_offset % PAGE_SIZE != 0 || rec.file_offset.checked_add(rec.end - rec.start).is_none() {
                return Err(ImageError::Malformed("a region's file offset is not page-aligned or overflows"));
            }
            if rec.kind == RegionKind::Vsyscall && (rec.start, rec.end) != VSYSCALL {
                return Err(ImageError::Malformed("[vsyscall] is not at its fixed address"));
            }
            if rec.has_data() {
                let end = reg.data_offset.checked_add(rec.stored_len).ok_or(ImageError::Truncated)?;
                if (!rec.compressed() && reg.data_offset % PAGE_SIZE != 0) || reg.data_offset < meta_len {
                    return Err(ImageError::Malformed("region data is misplaced"));
                }
                if end > self.file_len {
                    return Err(ImageError::Truncated);
                }
            }
            let executable = |a: u64| rec.prot & 4 != 0 && rec.start <= a && a < rec.end;
            trampoline_ok |= executable(state.resume_trampoline);
            thread_trampoline_ok |= executable(state.thread_trampoline);
        }
        for fd in self.fds() {
            let (rec, _) = fd?;
            if rec.has_blob() {
                let end = rec.blob_offset.checked_add(rec.blob_len).ok_or(ImageError::Truncated)?;
                if rec.blob_offset % PAGE_SIZE != 0 || rec.blob_offset < meta_len {
                    return Err(ImageError::Malformed("saved file contents are misplaced"));
                }
                if end > self.file_len {
                    return Err(ImageError::Truncated);
                }
            }
        }
        let mut threads = 0;
        for t in self.threads() {
            let t = t?;
            threads += 1;
            let in_stored = (0..self.region_count).filter_map(|i| self.region(i).ok()).any(|r| {
                r.record.has_data() && !r.record.kind.is_kernel_special() && r.record.start <= t.sigframe && t.sigframe < r.record.end
            });
            if !in_stored {
                return Err(ImageError::Malformed("signal frame is not in any stored region"));
            }
        }
        if threads == 0 {
            return Err(ImageError::Malformed("no thread state"));
        }
        if let Some(tree) = self.tree() {
            for t in tree? {
                t?;
            }
        }
        let attached = state.flags & FLAG_ATTACHED != 0;
        Ok(Seen { threads, attached, trampolines: [state.resume_trampoline, state.thread_trampoline], trampoline_ok, thread_trampoline_ok })
    }

    /// The last checks: every record of epoll, sockets, timerfds, inotify and locks names a descriptor
    /// of its kind and each such descriptor has its record, timers signal threads of the image,
    /// and the image names the resume trampolines its kind needs, in executable memory (as
    /// `seen` found: [`Seen::check_trampolines`]).
    pub(crate) fn check_records(&self, seen: Seen) -> Result<(), ImageError> {
        use crate::fds::FdKind;
        // An epoll descriptor's registrations are many (a server's every connection): its
        // record is looked for once for all of them.
        let mut last = None;
        for reg in self.epoll_registrations() {
            let epfd = reg?.epfd;
            if last != Some(epfd) && !self.fds().any(|f| f.is_ok_and(|(f, _)| f.fd == epfd && f.kind == FdKind::Epoll)) {
                return Err(ImageError::Malformed("an epoll registration names no epoll descriptor"));
            }
            last = Some(epfd);
        }
        // Each record's descriptor looked for from where the last one was found: records kept
        // in the order of their descriptors (as a checkpoint writes them) cost one walk.
        let mut fds = self.fds();
        let mut described = |fd: i32, kind: FdKind| find_from(&mut fds, || self.fds(), |(f, _)| f.fd == fd && f.kind == kind && f.same_as < 0).is_some();
        let mut last = None;
        for s in self.sockets() {
            let fd = s?.fd;
            if last != Some(fd) && !described(fd, FdKind::Socket) {
                return Err(ImageError::Malformed("a socket record names no socket descriptor"));
            }
            last = Some(fd);
        }
        for t in self.timerfds() {
            if !described(t?.fd, FdKind::TimerFd) {
                return Err(ImageError::Malformed("a timerfd record names no timerfd descriptor"));
            }
        }
        let mut last = None;
        for w in self.inotify_watches() {
            let fd = w?.0.fd;
            if last != Some(fd) && !described(fd, FdKind::Inotify) {
                return Err(ImageError::Malformed("an inotify watch names no inotify descriptor"));
            }
            last = Some(fd);
        }
        for l in self.locks_on_descriptors() {
            l?;
        }
        crate::written::check_hashed_total(self.written_files())?;
        for t in self.ptys() {
            let (t, _, _) = t?;
            let on_device = self.fds().any(|f| f.is_ok_and(|(f, _)| f.fd == t.fd && matches!(f.kind, FdKind::Device | FdKind::Inherit)));
            if !on_device {
                return Err(ImageError::Malformed("a pty record names no descriptor on a device"));
            }
        }
        // A POSIX queue's record is one per descriptor, which the descriptor records list as
        // of a kind an older reader does not restore.
        for o in self.ipc_objects() {
            let o = o?;
            let on_fd = o.kind != crate::ipc::KIND_MQ || self.fds().any(|f| f.is_ok_and(|(f, _)| f.fd == o.id && f.kind == FdKind::Unsupported));
            if !on_fd {
                return Err(ImageError::Malformed("a POSIX message queue record names no descriptor of the image"));
            }
        }
        let (mut sockets, mut timerfds) = (self.sockets(), self.timerfds());
        for f in self.fds() {
            let (f, _) = f?;
            let missing = f.same_as < 0
                && match f.kind {
                    FdKind::Socket => find_from(&mut sockets, || self.sockets(), |s| s.fd == f.fd).is_none(),
                    FdKind::TimerFd => find_from(&mut timerfds, || self.timerfds(), |t| t.fd == f.fd).is_none(),
                    _ => false,
                };
            if missing {
                return Err(ImageError::Malformed("a socket or timerfd descriptor has no record"));
            }
        }
        for t in self.timers() {
            let t = t?;
            if t.notify & crate::timers::SIGEV_THREAD_ID != 0 && !self.threads().any(|th| th.is_ok_and(|th| th.tid == t.tid)) {
                return Err(ImageError::Malformed("a timer signals a thread that is not in the image"));
            }
        }
        seen.check_trampolines()
    }

    pub fn region_count(&self) -> usize {
        self.region_count
    }

    /// Region `i`, with its record checked against its program header.
    pub fn region(&self, i: usize) -> Result<RegionRef<'a>, ImageError> {
        if i >= self.region_count {
            return Err(ImageError::Malformed("region index out of range"));
        }
        let rec_at = HEADER_SIZE + i * RECORD_SIZE;
        let mut r = Reader::new(self.regions_desc.get(rec_at..).ok_or(ImageError::Truncated)?);
        let record = RegionRecord::read(&mut r)?;
        let ph_at = EHDR_SIZE + PHDR_SIZE * (i + 1);
        let mut pr = Reader::new(self.meta.get(ph_at..).ok_or(ImageError::Truncated)?);
        let ph = Phdr::read(&mut pr)?;
        let size = record.end.wrapping_sub(record.start);
        let plain = record.has_data() && !record.compressed();
        let want_filesz = if plain { size } else { 0 };
        if ph.p_type != PT_LOAD
            || ph.vaddr != record.start
            || ph.memsz != size
            || ph.filesz != want_filesz
            || (plain && (ph.offset != record.data_offset || record.stored_len != size))
        {
            return Err(ImageError::Malformed("region table does not match the program headers"));
        }
        let names_at = HEADER_SIZE + self.region_count * RECORD_SIZE;
        let name = self
            .regions_desc
            .get(names_at..)
            .and_then(|t| t.get(record.name_off as usize..record.name_off as usize + record.name_len as usize))
            .ok_or(ImageError::Malformed("region name out of range"))?;
        Ok(RegionRef { index: i, record, data_offset: record.data_offset, name })
    }

    /// The first note with this owner and type.
    /// The headers and notes, `0..meta_len` of the file.
    pub fn meta(&self) -> &'a [u8] {
        self.meta
    }

    /// The header checksum (`meta_hash`) the headers were checked against.
    pub fn meta_hash(&self) -> u64 {
        crate::bytes::le_u64_at(self.meta, self.meta_hash_range().start).unwrap_or(0)
    }

    /// Where the header checksum (`meta_hash`) is in [`Image::meta`].
    pub fn meta_hash_range(&self) -> core::ops::Range<usize> {
        let at = state_note(self.meta).map_or(0, |(_, at)| at);
        at..at + 8
    }

    /// Where the descriptor of a note is in [`Image::meta`].
    pub fn note_range(&self, name: &[u8], n_type: u32) -> Option<core::ops::Range<usize>> {
        let desc = self.note(name, n_type)?.desc;
        let at = desc.as_ptr() as usize - self.meta.as_ptr() as usize;
        Some(at..at + desc.len())
    }

    pub fn note(&self, name: &[u8], n_type: u32) -> Option<Note<'a>> {
        Notes::new(self.notes).filter_map(Result::ok).find(|n| n.name == name && n.n_type == n_type)
    }

    /// The descriptors on pseudo-terminals (none when the note is absent), whichever of its two
    /// types it has (see [`crate::pty`]).
    pub fn ptys(&self) -> crate::pty::PtyIter<'a> {
        let t = crate::NT_CKPT_PTYS;
        let note = self.note(CKPT_NOTE_NAME, t).or_else(|| self.note(CKPT_NOTE_NAME, t | crate::NT_CKPT_IGNORABLE));
        crate::pty::records(note.map(|n| n.desc).unwrap_or(&[]))
    }

    /// The epoll registrations (none when the note is absent).
    pub fn epoll_registrations(&self) -> EpollIter<'a> {
        let desc = self.note(CKPT_NOTE_NAME, NT_CKPT_EPOLL).map(|n| n.desc).unwrap_or(&[]);
        crate::epoll::records(desc)
    }

    /// The sockets (none when the note is absent).
    pub fn sockets(&self) -> SocketIter<'a> {
        crate::sockets::records(self.note(CKPT_NOTE_NAME, NT_CKPT_SOCKETS).map(|n| n.desc).unwrap_or(&[]))
    }

    /// The timerfds (none when the note is absent).
    pub fn timerfds(&self) -> TimerFdIter<'a> {
        crate::timerfd::records(self.note(CKPT_NOTE_NAME, NT_CKPT_TIMERFDS).map(|n| n.desc).unwrap_or(&[]))
    }

    /// The file locks held at the checkpoint (none when the note is absent).
    pub fn locks(&self) -> crate::locks::LockIter<'a> {
        crate::locks::records(self.note(CKPT_NOTE_NAME, NT_CKPT_LOCKS).map(|n| n.desc).unwrap_or(&[]))
    }

    /// The same, each with the record of its descriptor (see [`crate::locks::on_descriptors`]).
    pub fn locks_on_descriptors(&self) -> crate::locks::OnDescriptors<'a> {
        crate::locks::on_descriptors(self.locks(), self.fds())
    }

    /// The inotify watches, with their paths (none when the note is absent).
    pub fn inotify_watches(&self) -> WatchIter<'a> {
        crate::inotify::records(self.inotify_desc())
    }

    /// The encoded `NT_CKPT_INOTIFY` descriptor (empty when the note is absent), for
    /// [`crate::inotify::placed`] and [`crate::inotify::record_at`].
    pub fn inotify_desc(&self) -> &'a [u8] {
        self.note(CKPT_NOTE_NAME, NT_CKPT_INOTIFY).map(|n| n.desc).unwrap_or(&[])
    }

    /// The POSIX timers (none when the note is absent).
    pub fn timers(&self) -> TimerIter<'a> {
        let desc = self.note(CKPT_NOTE_NAME, NT_CKPT_TIMERS).map(|n| n.desc).unwrap_or(&[]);
        crate::timers::records(desc)
    }

    /// The threads, in the order of their notes: the first took the checkpoint signal.
    pub fn threads(&self) -> impl Iterator<Item = Result<ThreadState, ImageError>> + 'a {
        Notes::new(self.notes).filter_map(|n| match n {
            Ok(n) if n.name == CKPT_NOTE_NAME && n.n_type == NT_CKPT_THREAD => Some(ThreadState::read(n.desc)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// The thread that took the checkpoint signal.
    pub fn first_thread(&self) -> Result<ThreadState, ImageError> {
        self.threads().next().unwrap_or(Err(ImageError::Malformed("no thread state")))
    }

    /// Descriptors recorded at checkpoint time, with their paths.
    /// The processes of a tree image (`None` for a single process's image).
    pub fn tree(&self) -> Option<Result<crate::bytes::Records<'a, crate::tree::TreeRecord>, ImageError>> {
        let desc = self.note(CKPT_NOTE_NAME, crate::NT_CKPT_TREE)?.desc;
        Some(crate::tree::records(desc, self.file_len))
    }

    /// What this process's image holds of what the restart keeps tables for (records that do
    /// not decode count too: they are refused later, by whatever reads them).
    pub fn counts(&self) -> crate::limits::Counts {
        crate::limits::Counts { regions: self.region_count(), fds: self.fds().count(), threads: self.threads().count() }
    }

    /// What the process was started as (`NT_CKPT_ORIGIN`; `None` in images without one).
    pub fn origin(&self) -> Option<Result<crate::origin::Origin<'a>, ImageError>> {
        let desc = self.note(CKPT_NOTE_NAME, crate::NT_CKPT_ORIGIN)?.desc;
        Some(crate::origin::Origin::parse(desc))
    }

    /// The System V IPC objects the process used (none when the note is absent).
    pub fn ipc_objects(&self) -> crate::bytes::Records<'a, crate::ipc::IpcRecord<'a>> {
        crate::ipc::records(self.note(CKPT_NOTE_NAME, crate::NT_CKPT_IPC).map(|n| n.desc).unwrap_or(&[]))
    }

    /// The files the program could write in place, as they were (none when the note is absent:
    /// an image made before it, whose files are not checked).
    pub fn written_files(&self) -> crate::written::WrittenIter<'a> {
        crate::written::records(self.note(CKPT_NOTE_NAME, crate::NT_CKPT_WRITTEN).map(|n| n.desc).unwrap_or(&[]))
    }

    pub fn fds(&self) -> FdIter<'a> {
        let desc = self.note(CKPT_NOTE_NAME, NT_CKPT_FDS).map(|n| n.desc).unwrap_or(&[]);
        crate::fds::records(desc)
    }

    pub fn phnum(&self) -> usize {
        self.phnum
    }

    /// Finds the region of a given kind.
    pub fn find_kind(&self, kind: RegionKind) -> Option<RegionRef<'a>> {
        (0..self.region_count).filter_map(|i| self.region(i).ok()).find(|r| r.record.kind == kind)
    }
}

/// The state note (the first note, always), and the offset in `meta` of its `meta_hash` field.
fn state_note(meta: &[u8]) -> Result<(Note<'_>, usize), ImageError> {
    let ehdr = Ehdr::read(meta)?;
    let phdrs_end = EHDR_SIZE + PHDR_SIZE * ehdr.phnum as usize;
    let notes = meta.get(phdrs_end..).ok_or(ImageError::Truncated)?;
    let first = Notes::new(notes).next().ok_or(ImageError::Foreign)?.map_err(|_| ImageError::Foreign)?;
    if first.name != CKPT_NOTE_NAME || first.n_type != NT_CKPT_STATE {
        return Err(ImageError::Foreign);
    }
    Ok((first, phdrs_end + first.desc_offset + META_HASH_OFFSET))
}

/// Where the header checksum is in a metadata block.
pub fn meta_hash_offset(meta: &[u8]) -> Result<usize, ImageError> {
    Ok(state_note(meta)?.1)
}

/// Stores the header checksum of a finished metadata block (headers and notes, `meta_len`
/// bytes): the last step of writing an image's headers.
pub fn seal(meta: &mut [u8]) -> Result<(), ImageError> {
    let (_, at) = state_note(meta)?;
    let h = meta_hash(meta, at);
    meta.get_mut(at..at + 8).ok_or(ImageError::Truncated)?.copy_from_slice(&h.to_le_bytes());
    Ok(())
}

/// The metadata hash: xxh3-64 of `meta` with the eight bytes at `hash_at` read as zero.
pub fn meta_hash(meta: &[u8], hash_at: usize) -> u64 {
    let mut h = crate::Hasher::new();
    let split = hash_at.min(meta.len());
    h.update(&meta[..split]);
    h.update(&[0u8; 8]);
    if let Some(rest) = meta.get(split + 8..) {
        h.update(rest);
    }
    h.digest()
}

