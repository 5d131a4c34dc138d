//! The writer's side of incremental images: which pages it leaves to older images (bases), the
//! `NT_CKPT_CHAIN` note that names them, the base file names, and removing base files no kept
//! image needs any more.
//!
//! # Signal-safety fence
//! Runs in the image writer (a forked copy of the program, or with `CKPT_SYNC=1` the signal
//! handler itself): raw system calls and the scratch area only; no allocation, no locks, no
//! libc.
//!
//! The previous image (the one at the image path, which the program's last checkpoint wrote)
//! is the base, if its identity is the one the program's tracking counted from. Its own bases
//! stay bases: each page left out is named where its bytes really are, never through another
//! image. A base is kept under a name of its own, `<image>.base-<id>`, a hard link to the
//! image file, so rotating or replacing `<image>` never removes what a newer image needs.
//!
//! Files at the image's names are opened without blocking (`O_NONBLOCK`): a FIFO someone put
//! there must not hold the writer forever, and every later checkpoint with it.

use super::pages::{PM_PRESENT, PM_SWAPPED};
use super::runs::Runs;
use super::failure::Failure;
use ckpt_image::bytes::Writer;
use ckpt_image::chain::{self, Base};
use ckpt_image::shared::SharedRun;
use ckpt_image::{Image, ProcessState, PAGE_SIZE};
use core::ffi::CStr;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

const PAGE: u64 = PAGE_SIZE;

/// The base this image names by file, kept open until its name is made at commit.
pub struct BaseLink {
    fd: OwnedFd,
    name: [u8; 256],
    name_len: usize,
}

/// A region the writer may leave pages of to the base: its index, its bounds, and whether it
/// is memory a restart mapped from an image (whose pages not in memory hold the image's bytes,
/// not zeros).
pub struct Candidate {
    pub index: u32,
    pub start: u64,
    pub end: u64,
    pub restored: bool,
}


/// Reads and checks the headers of the image open as `fd` (of `len` bytes) into `meta`.
fn read_headers<'m>(fd: i32, len: u64, meta: &'m mut [u8], state: &mut ProcessState) -> Option<Image<'m>> {
    let mut prefix = [0u8; ckpt_image::image::PREFIX_LEN];
    let got = ckpt_sigsafe::sys::pread_full(fd, &mut prefix, 0).ok()?;
    let total = ckpt_image::image::headers_len(&prefix[..got], 0, len).ok()?;
    if total > meta.len() {
        return None;
    }
    if ckpt_sigsafe::sys::pread_full(fd, &mut meta[..total], 0) != Ok(total) {
        return None;
    }
    Image::parse(&meta[..total], len, state).ok()
}

/// The writer's buffers the plan fills or reads (see `scratch`).
pub struct Bufs<'a> {
    pub tracked: super::track::Tracked,
    pub dirty: &'a [[u64; 2]],
    /// The memory the writer was forked without (see `unforked`).
    pub unforked: &'a [[u64; 2]],
    pub shared: &'a mut [u8],
    pub chain: &'a mut [u8],
    pub base_meta: &'a mut [u8],
    pub base_state: &'a mut ProcessState,
    pub pm_buf: &'a mut [u64],
}

/// Writes the chain note of a full image (its identity, no bases).
fn full(parts: &mut Bufs) -> usize {
    chain::write_header(&mut Writer::new(&mut parts.chain[..]), parts.tracked.id, 0);
    chain::note_len(0)
}

/// The previous image at `image`, if an image can build on it: its headers check out (read into
/// `meta`), its identity is `prev` (the image the program's tracking counted from), it is alone
/// (not a tree), and its chain is not at its longest yet. With its descriptor and length.
fn previous<'m>(image: &[u8], prev: u64, meta: &'m mut [u8], state: &mut ProcessState) -> Option<(OwnedFd, u64, Image<'m>)> {
    if prev == 0 {
        return None;
    }
    let limit = crate::config::get().incremental as usize;
    let mut path = [0u8; ckpt_image::state::PATH_MAX + 1];
    if image.len() >= path.len() {
        return None;
    }
    path[..image.len()].copy_from_slice(image);
    let cpath = CStr::from_bytes_with_nul(&path[..image.len() + 1]).ok()?;
    let fd = rustix::fs::open(cpath, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK, Mode::empty()).ok()?;
    let len = rustix::fs::fstat(&fd).ok()?.st_size as u64;
    let base = read_headers(fd.as_raw_fd(), len, meta, state)?;
    let Some(Ok(bchain)) = base.chain() else { return None };
    if bchain.id != prev || base.tree().is_some() || bchain.count + 2 > limit {
        return None;
    }
    Some((fd, len, base))
}

/// In the handler, before the writer is forked: the previous image, if the new one will build
/// on it, as [`plan`] will find (unless the file at `image` is replaced meanwhile).
pub fn previous_image<'m>(image: &[u8], tracked: &super::track::Tracked, meta: &'m mut [u8], state: &mut ProcessState) -> Option<Image<'m>> {
    previous(image, tracked.prev, meta, state).map(|(_, _, base)| base)
}

/// Whether a region of the previous image holds bytes a page can be left to: its own, plain.
pub fn holds_pages(rec: &ckpt_image::region::RegionRecord) -> bool {
    rec.has_data() && !rec.compressed() && !rec.is_shared() && !rec.kind.is_kernel_special()
}

/// Why a writer forked without the program's unwritten memory (see `unforked`) cannot write
/// the image: a page of that memory is not in the previous image after all. Every later
/// writer gets all the memory.
fn lacks_unwritten() -> Failure {
    super::report::fork_all();
    Failure::plain("the previous image does not hold all the memory this checkpoint left to it (it was replaced meanwhile?); checkpoints copy all memory for their writers from now on")
}

/// Decides which pages of the `candidates` (private anonymous regions, and memory a restart
/// mapped from an image, stored as plain data, in address order) are left to the base images:
/// a page the program did not write since its previous checkpoint (`parts.dirty`), that is in
/// memory (an anonymous page that is not reads as zeros and is stored as such; one mapped from
/// an image holds the image's bytes), and that the previous image holds, in its own bytes or its bases'.
/// Fills `parts.shared` with the runs and `parts.chain` with the note. Returns their lengths,
/// and the base to link at commit if the previous image itself is one. With no usable previous
/// image, the image is full. A writer forked without some of the memory (`parts.unforked`)
/// fails instead, unless every page of it is left to the bases.
pub fn plan(mut parts: Bufs, image: &[u8], candidates: &mut dyn Iterator<Item = Candidate>, pagemap: Option<i32>) -> Result<(usize, usize, Option<BaseLink>), Failure> {
    let t = parts.tracked;
    let unforked = parts.unforked;
    let full_image = |parts: &mut Bufs| if unforked.is_empty() { Ok((0, full(parts), None)) } else { Err(lacks_unwritten()) };
    let Some(pagemap) = pagemap else { return full_image(&mut parts) };
    let Some((fd, len, base)) = previous(image, t.prev, parts.base_meta, parts.base_state) else { return full_image(&mut parts) };
    let Some(Ok(bchain)) = base.chain() else { return full_image(&mut parts) };
    let own_source = bchain.count as u32 + 1;
    let mut runs = Runs::new(parts.shared);
    let dirty = &parts.dirty[..t.ndirty.min(parts.dirty.len())];
    let named = leave_to_bases(&base, own_source, dirty, unforked, &mut *parts.pm_buf, pagemap, candidates, &mut runs);
    if !named {
        return Err(lacks_unwritten());
    }
    let shared_len = runs.finish();
    // Only the bases some run names are listed, numbered in the order of the previous list.
    let (used, count) = renumber_bases(&mut parts.shared[..shared_len], own_source);
    let mut w = Writer::new(&mut parts.chain[..]);
    chain::write_header(&mut w, t.id, count);
    for (k, b) in bchain.bases().enumerate() {
        if let Ok(b) = b {
            if used[k + 1] {
                b.write(&mut w);
            }
        }
    }
    let mut link = None;
    if used[own_source as usize] {
        let mut me = Base { id: bchain.id, meta_hash: parts.base_state.meta_hash, file_len: len, ..Base::EMPTY };
        match chain::base_name(chain::file_name(image), bchain.id, &mut me.name) {
            Some(n) => me.name_len = n as u32,
            None => return full_image(&mut parts),
        }
        me.write(&mut w);
        link = Some(BaseLink { fd, name: me.name, name_len: me.name_len as usize });
    }
    Ok((shared_len, chain::note_len(count), link))
}

/// For [`plan`]: records in `runs` each page of the `candidates` that is left to the bases: one
/// the program did not write since its previous checkpoint (`dirty`), that is in memory (read
/// through `pagemap` into `pm_buf`; every page of `unforked` was, when the writer was forked
/// without it), and that `base` (the previous image, base `own_source`) holds, in its own bytes
/// or, through its runs, its bases'. Returns whether every page of `unforked` is left to them.
#[allow(clippy::too_many_arguments)]
fn leave_to_bases(base: &Image, own_source: u32, dirty: &[[u64; 2]], unforked: &[[u64; 2]], pm_buf: &mut [u64], pagemap: i32, candidates: &mut dyn Iterator<Item = Candidate>, runs: &mut Runs) -> bool {
    let mut di = 0usize;
    let mut ui = 0usize;
    let mut named = 0u64;
    let mut breg = 0usize;
    let mut cur: Option<ckpt_image::RegionRef> = None;
    let mut bruns = base.shared_runs().map_while(Result::ok).peekable();
    for c in candidates {
        let pages = (c.end - c.start) / PAGE;
        let mut p = 0u64;
        while p < pages {
            let n = ((pages - p) as usize).min(pm_buf.len());
            let chunk = c.start + p * PAGE;
            let chunk_end = chunk + n as u64 * PAGE;
            while di < dirty.len() && dirty[di][1] <= chunk {
                di += 1;
            }
            while ui < unforked.len() && unforked[ui][1] <= chunk {
                ui += 1;
            }
            let unwritten = !(di < dirty.len() && dirty[di][0] < chunk_end);
            if unwritten && ui < unforked.len() && unforked[ui][0] <= chunk && chunk_end <= unforked[ui][1] {
                // The whole chunk is memory the writer lacks (in memory and unwritten in the
                // program): where one region of the previous image holds all of it, left to the
                // bases a stretch at a time, the previous image's own bytes or its runs.
                let whole = region_at(base, &mut breg, &mut cur, chunk).filter(|o| o.record.start <= chunk && chunk_end <= o.record.end && holds_pages(&o.record));
                if let Some(o) = whole {
                    let (first, last) = ((chunk - o.record.start) / PAGE, (chunk_end - o.record.start) / PAGE);
                    while bruns.next_if(|r: &SharedRun| (r.region as usize, r.first_page + r.pages) <= (breg, first)).is_some() {}
                    let mut q = first;
                    while q < last {
                        let at = p + (q - first);
                        let (upto, added) = match bruns.peek().filter(|r| r.region as usize == breg && r.first_page < last) {
                            Some(r) if r.first_page <= q => {
                                let upto = (r.first_page + r.pages).min(last);
                                (upto, r.source != 0 && runs.add_many(r.source, c.index, at, r.offset + (q - r.first_page) * PAGE, upto - q))
                            }
                            Some(r) => (r.first_page, runs.add_many(own_source, c.index, at, o.data_offset + q * PAGE, r.first_page - q)),
                            None => (last, runs.add_many(own_source, c.index, at, o.data_offset + q * PAGE, last - q)),
                        };
                        if !added {
                            // A stretch no base holds for it (or no room to say where): this
                            // writer cannot write the image.
                            return false;
                        }
                        q = upto;
                        while bruns.next_if(|r: &SharedRun| (r.region as usize, r.first_page + r.pages) <= (breg, q)).is_some() {}
                    }
                    named += n as u64;
                    p += n as u64;
                    continue;
                }
            }
            let entries = &mut pm_buf[..n];
            let src = super::pages::PageSource { pagemap: Some(pagemap), zeros: 0..0, bounce: false, absent: &[] };
            super::pages::read_in_memory(&src, chunk as usize, entries);
            for (i, &e) in entries.iter().enumerate() {
                let addr = chunk + i as u64 * PAGE;
                while di < dirty.len() && dirty[di][1] <= addr {
                    di += 1;
                }
                while ui < unforked.len() && unforked[ui][1] <= addr {
                    ui += 1;
                }
                let absent = ui < unforked.len() && unforked[ui][0] <= addr;
                let e = if absent { PM_PRESENT } else { e };
                if (di < dirty.len() && dirty[di][0] <= addr) || (e & (PM_PRESENT | PM_SWAPPED) == 0 && !c.restored) {
                    continue;
                }
                let Some(o) = region_at(base, &mut breg, &mut cur, addr) else { continue };
                let rec = o.record;
                if rec.start > addr || !holds_pages(&rec) {
                    continue;
                }
                let bp = (addr - rec.start) / PAGE;
                while bruns.next_if(|r: &SharedRun| (r.region as usize, r.first_page + r.pages) <= (breg, bp)).is_some() {}
                let (source, offset) = match bruns.peek() {
                    Some(r) if r.region as usize == breg && r.first_page <= bp => {
                        if r.source == 0 {
                            continue;
                        }
                        (r.source, r.offset + (bp - r.first_page) * PAGE)
                    }
                    _ => (own_source, o.data_offset + (addr - rec.start)),
                };
                if runs.add_from(source, c.index, p + i as u64, offset) && absent {
                    named += 1;
                }
            }
            p += n as u64;
        }
    }
    // Each page the writer lacks was counted once, if it was left to the bases.
    named == unforked.iter().map(|r| (r[1] - r[0]) / PAGE).sum::<u64>()
}

/// Where the previous image has the bytes of the page at `addr`: its first region that does not
/// end before it (regions are walked forward from `breg`, each decoded once into `cur`).
fn region_at<'a>(base: &Image<'a>, breg: &mut usize, cur: &mut Option<ckpt_image::RegionRef<'a>>, addr: u64) -> Option<ckpt_image::RegionRef<'a>> {
    loop {
        if cur.is_none() {
            *cur = base.region(*breg).ok();
        }
        match *cur {
            Some(o) if o.record.end <= addr => {
                *breg += 1;
                *cur = None;
            }
            _ => return *cur,
        }
    }
}

/// For [`plan`]: which bases (1 to `own_source`) the runs of the `shared` descriptor name, and
/// the runs renumbered to count only those, in the order of the previous list. Returns which
/// are used, and how many.
fn renumber_bases(shared: &mut [u8], own_source: u32) -> ([bool; chain::MAX_BASES + 2], usize) {
    let mut used = [false; chain::MAX_BASES + 2];
    let mut renumber = [0u32; chain::MAX_BASES + 2];
    if !shared.is_empty() {
        for r in ckpt_image::shared::records(shared).into_iter().flatten().flatten() {
            used[r.source as usize] = true;
        }
    }
    let mut count = 0usize;
    for k in 1..=own_source as usize {
        if used[k] {
            count += 1;
            renumber[k] = count as u32;
        }
    }
    if !shared.is_empty() {
        let body = &mut shared[ckpt_image::shared::SHARED_HEADER_SIZE..];
        for rec in body.chunks_exact_mut(ckpt_image::shared::SHARED_RECORD_SIZE) {
            let Ok(mut r) = SharedRun::read(&mut ckpt_image::bytes::Reader::new(rec)) else { continue };
            r.source = renumber[r.source as usize];
            r.write(&mut Writer::new(rec));
        }
    }
    (used, count)
}

/// Gives the previous image its base name (a hard link to the very file the plan read), unless
/// it has it already. Before the new image is committed: without it the new one is not.
pub fn link(base: &BaseLink, image: &[u8]) -> Result<(), Failure> {
    let mut dirbuf = [0u8; ckpt_image::state::PATH_MAX + 1];
    let dir = super::imagefile::dir_of(image, &mut dirbuf).ok_or(Failure::plain("image path"))?;
    let dirfd = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| Failure::on_file("opening the directory of", e))?;
    let name = CStr::from_bytes_with_nul(&base.name[..base.name_len + 1]).map_err(|_| Failure::plain("base image name"))?;
    let mut from = [0u8; 64];
    let from = ckpt_sigsafe::proctext::numbered_path(&mut from, b"/proc/self/fd/", base.fd.as_raw_fd() as u64, b"").ok_or(Failure::plain("descriptor path"))?;
    match rustix::fs::linkat(rustix::fs::CWD, from, &dirfd, name, rustix::fs::AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => {
            let here = rustix::fs::statat(&dirfd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(|e| Failure::on_file("naming the base image of", e))?;
            let st = rustix::fs::fstat(&base.fd).map_err(|e| Failure::on_file("naming the base image of", e))?;
            if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino) {
                Ok(())
            } else {
                Err(Failure::on_file("naming the base image of (another file has its name)", rustix::io::Errno::EXIST))
            }
        }
        Err(e) => Err(Failure::on_file("naming the base image of", e)),
    }
}

/// After a commit: removes the base files of `image` (`<name>.base-<id>`) that neither it nor
/// any older image kept beside it (`<image>.1` … `<image>.keep`) names. Keeps everything if one
/// of those cannot be read.
pub fn remove_unneeded(image: &[u8], keep: u32, meta: &mut [u8], state: &mut ProcessState) {
    let mut dirbuf = [0u8; ckpt_image::state::PATH_MAX + 1];
    let Some(dir) = super::imagefile::dir_of(image, &mut dirbuf) else { return };
    let Ok(dirfd) = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return };
    let name = chain::file_name(image);
    // The base files there are.
    let mut found = [0u64; 64];
    let mut nfound = 0;
    let mut dirents = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut raw = rustix::fs::RawDir::new(&dirfd, &mut dirents);
    while let Some(Ok(e)) = raw.next() {
        if let Some(id) = chain::parse_base_name(name, e.file_name().to_bytes()) {
            if nfound < found.len() {
                found[nfound] = id;
                nfound += 1;
            }
        }
    }
    if nfound == 0 {
        return;
    }
    // The bases the kept images name.
    let mut needed = [0u64; 100 * chain::MAX_BASES];
    let mut nneeded = 0;
    for g in 0..=keep {
        let mut pbuf = [0u8; ckpt_image::state::PATH_MAX + 32];
        let Some(p) = ckpt_image::chain::generation_name(image, g, &mut pbuf) else { return };
        let f = match rustix::fs::open(p, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK, Mode::empty()) {
            Ok(f) => f,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(_) => return,
        };
        let Ok(st) = rustix::fs::fstat(&f) else { return };
        let Some(img) = read_headers(f.as_raw_fd(), st.st_size as u64, meta, state) else { return };
        if let Some(c) = img.chain() {
            let Ok(c) = c else { return };
            for b in c.bases() {
                let Ok(b) = b else { return };
                if nneeded < needed.len() {
                    needed[nneeded] = b.id;
                    nneeded += 1;
                }
            }
        }
    }
    for &id in &found[..nfound] {
        if needed[..nneeded].contains(&id) {
            continue;
        }
        let mut nb = [0u8; 256];
        if let Some(n) = chain::base_name(name, id, &mut nb) {
            if let Ok(c) = CStr::from_bytes_with_nul(&nb[..n + 1]) {
                let _ = rustix::fs::unlinkat(&dirfd, c, rustix::fs::AtFlags::empty());
            }
        }
    }
}

/// Whether the file at `image` is a complete image of this run of this process: its headers
/// check out, it was taken of this process (its PID) in this run (the run identity of its
/// origin note), and every base it names is beside it, the very file it was built on (identity,
/// length and header checksum). Its data is not read again: an image is only ever replaced
/// whole, by rename, so one this process wrote stays as it was written. For a last checkpoint
/// that could not be written: the program may then end, as asked, without losing its work.
pub fn is_image_of_this_run(image: &[u8]) -> bool {
    let Ok(mut scratch) = super::scratch::Scratch::map() else { return false };
    let parts = scratch.parts();
    let (meta, state) = (parts.base_meta, parts.base_state);
    let mut path = [0u8; ckpt_image::state::PATH_MAX + 1];
    let Some(cpath) = path.get_mut(..image.len() + 1).and_then(|p| {
        p[..image.len()].copy_from_slice(image);
        p[image.len()] = 0;
        CStr::from_bytes_with_nul(p).ok()
    }) else {
        return false;
    };
    let Ok(fd) = rustix::fs::open(cpath, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK, Mode::empty()) else { return false };
    let Ok(st) = rustix::fs::fstat(&fd) else { return false };
    let mut bases = [Base::EMPTY; chain::MAX_BASES];
    let mut nbases = 0;
    {
        let Some(img) = read_headers(fd.as_raw_fd(), st.st_size as u64, meta, state) else { return false };
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let ours = matches!(img.origin(), Some(Ok(o)) if o.run_id == crate::origin::run_id());
        if !ours || state.pid != me {
            return false;
        }
        if let Some(c) = img.chain() {
            let Ok(c) = c else { return false };
            for b in c.bases() {
                let Ok(b) = b else { return false };
                if nbases < bases.len() {
                    bases[nbases] = b;
                    nbases += 1;
                }
            }
        }
    }
    let mut dirbuf = [0u8; ckpt_image::state::PATH_MAX + 1];
    let Some(dir) = super::imagefile::dir_of(image, &mut dirbuf) else { return false };
    let Ok(dirfd) = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return false };
    bases[..nbases].iter().all(|b| {
        let Ok(name) = CStr::from_bytes_with_nul(b.name_with_nul()) else { return false };
        let Ok(f) = rustix::fs::openat(&dirfd, name, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK, Mode::empty()) else { return false };
        let Ok(st) = rustix::fs::fstat(&f) else { return false };
        if st.st_size as u64 != b.file_len {
            return false;
        }
        let Some(img) = read_headers(f.as_raw_fd(), b.file_len, meta, state) else { return false };
        state.meta_hash == b.meta_hash && matches!(img.chain(), Some(Ok(c)) if c.id == b.id)
    })
}
