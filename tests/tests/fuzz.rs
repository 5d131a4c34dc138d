//! Crafted and damaged images: every one is refused before `myrestart` changes anything (exit
//! status 2, one line), or restored; none crashes, hangs or fails after the point of no return
//! (exit 3), and `ckpt inspect` never aborts.
//!
//! `crafted_images_are_refused_before_anything_changes` and
//! `crafted_ids_timers_addresses_and_watches_are_refused_before_anything_changes` try, one by
//! one, values an attacker would write into an image and re-sign (the header checksum
//! recomputed, as anyone can; with the key, the MAC too). The mutation campaign tries random
//! damage and random re-signed field values; `every_note_type_crafted`, re-signed values in the
//! records of every kind of note, and that a refused restart changed nothing outside. `make
//! test` runs a few dozen cases of each, `make fuzz` thousands (`CKPT_FUZZ_CASES`).
#![deny(unsafe_code)]

use ckpt_image::bytes::{Reader, Writer};
use ckpt_image::elf::{Phdr, EHDR_SIZE, PHDR_SIZE};
use ckpt_image::note::Notes;
use ckpt_image::region::{RegionRecord, HEADER_SIZE, RECORD_SIZE, RF_HAS_DATA};
use ckpt_image::{Image, ProcessState, ThreadState, CKPT_NOTE_NAME, NT_CKPT_FDS, NT_CKPT_IGNORABLE, NT_CKPT_ORIGIN, NT_CKPT_REGIONS, NT_CKPT_STATE, NT_CKPT_THREAD, NT_CKPT_TREE};
use ckpt_tests::*;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// An image in memory, with the means to change its records and sign it again: its header
/// checksums, a tree's record of its parts' checksums, and with the key (which an attacker
/// would not have) its MACs.
#[derive(Clone)]
struct Img {
    bytes: Vec<u8>,
    meta_len: usize,
    key: Option<ckpt_image::mac::Key>,
}

impl Img {
    fn load(path: &Path) -> Img {
        let bytes = std::fs::read(path).unwrap();
        let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
        Img { bytes, meta_len, key: None }
    }

    /// The image's parts, each where its headers start and how long they are: the root, then
    /// a tree's other live processes.
    fn parts(&self) -> Vec<(usize, usize)> {
        let mut parts = vec![(0, self.meta_len)];
        if let Some((at, len)) = self.note_in((0, self.meta_len), NT_CKPT_TREE, 0) {
            for rec in ckpt_image::tree::records(&self.bytes[at..at + len], self.bytes.len() as u64).into_iter().flatten().flatten() {
                if !rec.is_zombie() && rec.base != 0 {
                    let base = rec.base as usize;
                    parts.push((base, ckpt_image::image::meta_len(&self.bytes[base..]).unwrap() as usize));
                }
            }
        }
        parts
    }

    /// Where the descriptor of the `nth` CKPT note of type `ty` of a part is: (offset in the
    /// file, length).
    fn note_in(&self, (base, len): (usize, usize), ty: u32, nth: usize) -> Option<(usize, usize)> {
        let meta = &self.bytes[base..base + len];
        let phnum = ckpt_image::elf::Ehdr::read(meta).unwrap().phnum as usize;
        let notes = &meta[EHDR_SIZE + PHDR_SIZE * phnum..];
        let n = Notes::new(notes).map_while(Result::ok).filter(|n| n.name == CKPT_NOTE_NAME && n.n_type == ty).nth(nth)?;
        Some((n.desc.as_ptr() as usize - self.bytes.as_ptr() as usize, n.desc.len()))
    }

    /// [`Img::note_in`] of the root, which must have it.
    fn note(&self, ty: u32, nth: usize) -> (usize, usize) {
        self.note_in((0, self.meta_len), ty, nth).unwrap()
    }

    /// Signs every part again, then the root, whose tree record names each part's checksum.
    fn seal(&mut self) {
        let parts = self.parts();
        for &part in &parts[1..] {
            self.sign(part);
        }
        if let Some((at, len)) = self.note_in((0, self.meta_len), NT_CKPT_TREE, 0) {
            let size = ckpt_image::tree::TREE_RECORD_SIZE;
            for rec_at in (at + ckpt_image::tree::TREE_HEADER_SIZE..at + len).step_by(size) {
                let Ok(mut rec) = ckpt_image::tree::TreeRecord::read(&mut Reader::new(&self.bytes[rec_at..rec_at + size])) else { continue };
                if let Some(&(base, _)) = parts[1..].iter().find(|p| p.0 == rec.base as usize) {
                    let hash_at = base + ckpt_image::image::meta_hash_offset(&self.bytes[base..]).unwrap();
                    rec.meta_hash = u64::from_le_bytes(self.bytes[hash_at..hash_at + 8].try_into().unwrap());
                    rec.write(&mut Writer::new(&mut self.bytes[rec_at..rec_at + size]));
                }
            }
        }
        self.sign((0, self.meta_len));
    }

    /// One part's header checksum, and with the key its MAC (then the checksum again, which
    /// covers it), as the writer makes them.
    fn sign(&mut self, (base, len): (usize, usize)) {
        let _ = ckpt_image::seal(&mut self.bytes[base..base + len]);
        let Some(key) = self.key else { return };
        let mut st = Box::new(ProcessState::ZERO);
        let signed = Image::parse(&self.bytes[base..base + len], self.bytes.len() as u64, &mut st).ok().and_then(|img| {
            let mac = ckpt_image::mac::compute(&key, &self.bytes, &img, &ckpt_image::verify::Dense).ok()?;
            Some((mac, img.note_range(CKPT_NOTE_NAME, ckpt_image::NT_CKPT_MAC)?))
        });
        if let Some((mac, at)) = signed {
            self.bytes[base + at.start..base + at.end].copy_from_slice(&mac);
            let _ = ckpt_image::seal(&mut self.bytes[base..base + len]);
        }
    }

    fn state(&mut self, f: impl FnOnce(&mut ProcessState)) {
        let (at, len) = self.note(NT_CKPT_STATE, 0);
        let mut st = Box::new(ProcessState::ZERO);
        ProcessState::read_into(&self.bytes[at..at + len], &mut st).unwrap();
        f(&mut st);
        st.write(&mut Writer::new(&mut self.bytes[at..at + len]));
        self.seal();
    }

    /// Changes the root's `nth` thread.
    fn thread_n(&mut self, nth: usize, f: impl FnOnce(&mut ThreadState)) {
        let (at, len) = self.note(NT_CKPT_THREAD, nth);
        let mut t = ThreadState::read(&self.bytes[at..at + len]).unwrap();
        f(&mut t);
        t.write(&mut Writer::new(&mut self.bytes[at..at + len]));
        self.seal();
    }

    fn thread(&mut self, f: impl FnOnce(&mut ThreadState)) {
        self.thread_n(0, f)
    }

    /// The TIDs of the root's threads, in note order.
    fn tids(&self) -> Vec<u32> {
        (0..).map_while(|n| self.note_in((0, self.meta_len), NT_CKPT_THREAD, n)).map(|(at, len)| ThreadState::read(&self.bytes[at..at + len]).unwrap().tid).collect()
    }

    /// Changes record `i` of one of the root's notes of fixed-size records.
    fn record<R>(&mut self, ty: u32, i: usize, size: usize, read: fn(&mut Reader) -> Result<R, ckpt_image::ImageError>, write: fn(&R, &mut Writer), f: impl FnOnce(&mut R)) {
        let (at, _) = self.note(ty, 0);
        let rec_at = at + i * size;
        let mut rec = read(&mut Reader::new(&self.bytes[rec_at..rec_at + size])).unwrap();
        f(&mut rec);
        write(&rec, &mut Writer::new(&mut self.bytes[rec_at..rec_at + size]));
        self.seal();
    }

    fn timer(&mut self, i: usize, f: impl FnOnce(&mut ckpt_image::timers::TimerRecord)) {
        use ckpt_image::timers::{TimerRecord, TIMER_RECORD_SIZE};
        self.record(ckpt_image::NT_CKPT_TIMERS, i, TIMER_RECORD_SIZE, TimerRecord::read, TimerRecord::write, f)
    }

    fn socket(&mut self, i: usize, f: impl FnOnce(&mut ckpt_image::sockets::SocketRecord)) {
        use ckpt_image::sockets::{SocketRecord, SOCKET_RECORD_SIZE};
        self.record(ckpt_image::NT_CKPT_SOCKETS, i, SOCKET_RECORD_SIZE, SocketRecord::read, SocketRecord::write, f)
    }

    /// Changes the root's inotify watch whose number is `wd`.
    fn watch(&mut self, wd: i32, f: impl FnOnce(&mut ckpt_image::inotify::WatchRecord)) {
        let (at, len) = self.note(ckpt_image::NT_CKPT_INOTIFY, 0);
        let desc = &self.bytes[at..at + len];
        let (place, (mut w, path)) = ckpt_image::inotify::placed(desc).map(|(p, w)| (p, w.unwrap())).find(|(_, (w, _))| w.wd == wd).unwrap();
        let path = path.to_vec();
        f(&mut w);
        w.write(&mut Writer::new(&mut self.bytes[at + place..at + len]), &path);
        self.seal();
    }

    fn regions(&self) -> usize {
        let (at, _) = self.note(NT_CKPT_REGIONS, 0);
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap()) as usize
    }

    /// Changes region `i`'s record, and its program header to match.
    fn region(&mut self, i: usize, f: impl FnOnce(&mut RegionRecord)) {
        let (at, _) = self.note(NT_CKPT_REGIONS, 0);
        let rec_at = at + HEADER_SIZE + i * RECORD_SIZE;
        let mut rec = RegionRecord::read(&mut Reader::new(&self.bytes[rec_at..])).unwrap();
        f(&mut rec);
        rec.write(&mut Writer::new(&mut self.bytes[rec_at..rec_at + RECORD_SIZE]));
        let ph_at = EHDR_SIZE + PHDR_SIZE * (i + 1);
        let mut ph = Phdr::read(&mut Reader::new(&self.bytes[ph_at..])).unwrap();
        ph.vaddr = rec.start;
        ph.memsz = rec.end.wrapping_sub(rec.start);
        if !rec.has_data() {
            ph.filesz = 0;
        }
        ph.write(&mut Writer::new(&mut self.bytes[ph_at..ph_at + PHDR_SIZE]));
        self.seal();
    }

    fn fds(&mut self, f: impl FnMut(&mut ckpt_image::fds::FdRecord, &[u8]) -> Result<(), ()>) {
        let (at, len) = self.note(NT_CKPT_FDS, 0);
        ckpt_image::fds::update_records(&mut self.bytes[at..at + len], f).unwrap();
        self.seal();
    }

    fn save(&self, path: &Path) {
        std::fs::write(path, &self.bytes).unwrap();
    }
}

/// A real image of a short counter run (it ends by itself soon after a restart).
fn counter_image(wd: &Workdir) -> Img {
    let mut c = Command::new(prog("counter", &[]));
    c.args(["12", "5000"]);
    let mut orig = Proc::preloaded(c, &wd.image(), "counter");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    Img::load(&wd.image())
}

/// How a run of myrestart on an image ended.
struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_restart(path: &Path) -> Run {
    let mut child = Command::new(myrestart())
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(_st) = child.try_wait().unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("myrestart {} did not end within 30 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ckpt inspect` reads anything without aborting: it reports or refuses.
fn inspect_survives(path: &Path) {
    let out = Command::new(ckpt()).arg("inspect").arg(path).output().unwrap();
    assert!(matches!(out.status.code(), Some(0..=2)), "ckpt inspect {}: {:?}\n{}", path.display(), out.status, String::from_utf8_lossy(&out.stderr));
}

#[test]
fn crafted_images_are_refused_before_anything_changes() {
    let wd = Workdir::new("crafted");
    let good = counter_image(&wd);
    let data_regions: Vec<usize> = (0..good.regions()).collect();
    let big = 64u64 << 40;
    type Craft = Box<dyn Fn(&mut Img)>;
    let cases: Vec<(&str, Craft, &str)> = vec![
        ("mm field out of range", Box::new(|i: &mut Img| i.state(|s| s.mm.brk = 0xffff_8000_0000_0000)), "memory layout fields"),
        ("mm fields out of order", Box::new(|i: &mut Img| i.state(|s| s.mm.arg_end = s.mm.arg_start - 4096)), "memory layout fields"),
        ("kernel-space FS base", Box::new(|i: &mut Img| i.thread(|t| t.fs_base = 0xffff_8880_0000_0000)), "TLS base (fs)"),
        ("kernel-space rseq", Box::new(|i: &mut Img| i.thread(|t| t.rseq_addr = 0xffff_8880_0000_0000)), "rseq area"),
        ("TID address near 2^64", Box::new(|i: &mut Img| i.thread(|t| t.tid_address = u64::MAX - 1)), "thread id cache"),
        ("negative descriptor", Box::new(|i: &mut Img| i.fds(|r, _| { if r.fd == 1 { r.fd = -5 } Ok(()) })), "bad descriptor number"),
        (
            "64 TiB writable region",
            Box::new(move |i: &mut Img| i.region(0, |r| {
                r.flags &= !RF_HAS_DATA;
                r.prot = 3;
                r.start = r.end - big;
            })),
            "writable memory",
        ),
        ("page 0", Box::new(|i: &mut Img| i.region(0, |r| { r.flags &= !RF_HAS_DATA; r.start = 0 })), "below the lowest address"),
        (
            "wrapping file offset",
            Box::new(|i: &mut Img| i.region(0, |r| r.file_offset = !4095)),
            "file offset",
        ),
        ("region kind [vsyscall] elsewhere", Box::new(|i: &mut Img| i.region(0, |r| r.kind = ckpt_image::RegionKind::Vsyscall)), "kind does not match"),
        ("stack kind on another region", Box::new(|i: &mut Img| i.region(0, |r| r.kind = ckpt_image::RegionKind::Stack)), "kind does not match"),
    ];
    assert!(!data_regions.is_empty());
    for (what, craft, expect) in cases {
        let mut img = good.clone();
        craft(&mut img);
        let path = wd.path.join("crafted");
        img.save(&path);
        let run = run_restart(&path);
        assert_eq!(run.code, Some(2), "{what}: exit {:?} signal {:?}; stderr {:?}", run.code, run.signal, run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{what}: {:?}", run.stderr);
        assert!(run.stderr.contains(expect), "{what}: want {expect:?} in {:?}", run.stderr);
        assert!(run.stdout.is_empty(), "{what}: the program ran: {:?}", run.stdout);
        inspect_survives(&path);
    }
    // A sparse image that claims a 64 GiB deleted file is refused at once.
    let mut img = good.clone();
    let end = img.bytes.len() as u64;
    let at = end.next_multiple_of(4096) + (1 << 20);
    img.fds(|r, _| {
        if r.fd == 1 {
            r.kind = ckpt_image::fds::FdKind::Deleted;
            (r.blob_offset, r.blob_len) = (at, 64 << 30);
        }
        Ok(())
    });
    let path = wd.path.join("sparse");
    img.save(&path);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(at + (64 << 30)).unwrap();
    // Refused for the hole (`run_restart` bounds the wait): not read through, which would take
    // the whole of the 64 GiB.
    let run = run_restart(&path);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("hole"), "{}", run.stderr);
    inspect_survives(&path);
}

/// An image that holds a note of a later version (here: its origin note, given a type this
/// version does not know) restores when the type says an older reader may ignore it, and is
/// refused by name before anything changes when it does not (the compatibility rule in
/// docs/image-format.md).
#[test]
fn a_note_of_a_later_version_is_ignored_or_refused_as_its_type_says() {
    let wd = Workdir::new("later-note");
    let good = counter_image(&wd);
    let reference = reference_run({
        let mut c = Command::new(prog("counter", &[]));
        c.args(["12", "5000"]);
        c
    }, LONG);
    for (ty, restores) in [(0x434b_0000 | NT_CKPT_IGNORABLE | 0x77, true), (0x434b_0077, false)] {
        let mut img = good.clone();
        // A note: namesz, descsz, type, then the name ("CKPT\0", padded to 8), then the descriptor.
        let (at, _) = img.note(NT_CKPT_ORIGIN, 0);
        img.bytes[at - 12..at - 8].copy_from_slice(&u32::to_le_bytes(ty));
        img.seal();
        let path = wd.path.join(format!("note-{ty:x}"));
        img.save(&path);
        let run = run_restart(&path);
        if restores {
            assert_eq!(run.code, Some(0), "{ty:#x}: {}", run.stderr);
            let lines: Vec<&str> = run.stdout.lines().collect();
            assert!(!lines.is_empty() && reference.ends_with(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>()), "{ty:#x}: {lines:?}");
        } else {
            assert_eq!(run.code, Some(2), "{ty:#x}: {}", run.stderr);
            assert!(run.stderr.contains("made by a newer ckpt"), "{}", run.stderr);
            assert!(run.stdout.is_empty());
        }
        inspect_survives(&path);
    }
}

/// The image rewritten in version 8's layout, as a ckpt of that version wrote it: the state
/// note without the two file identities at its end, file mapping records of 40 bytes (no
/// owner), and none for shared file mappings. Everything else is the same in both versions.
/// The headers shrink; the data stays where it is.
fn as_version_8(img: &mut Img) {
    use ckpt_image::filemaps::{FILEMAP_RECORD_SIZE, FILEMAP_RECORD_SIZE_V8};
    let meta = img.bytes[..img.meta_len].to_vec();
    let phnum = ckpt_image::elf::Ehdr::read(&meta).unwrap().phnum as usize;
    let notes_at = EHDR_SIZE + PHDR_SIZE * phnum;
    let mut st = Box::new(ProcessState::ZERO);
    let image = Image::parse(&meta, img.bytes.len() as u64, &mut st).unwrap();
    assert!(image.note(CKPT_NOTE_NAME, ckpt_image::NT_CKPT_MAC).is_none() && image.tree().is_none());
    let shared = |region: u32| image.region(region as usize).is_ok_and(|r| r.record.from_file() && r.record.is_shared());
    let mut notes: Vec<(Vec<u8>, u32, Vec<u8>)> = Vec::new();
    for n in Notes::new(&meta[notes_at..]).map(Result::unwrap) {
        // A note version 8 did not have: what the program wrote in place (and so no check
        // that those files are as they were, as before it).
        if n.name == CKPT_NOTE_NAME && n.n_type == ckpt_image::NT_CKPT_WRITTEN {
            continue;
        }
        let mut desc = n.desc.to_vec();
        if n.name == CKPT_NOTE_NAME && n.n_type == NT_CKPT_STATE {
            desc = vec![0; ProcessState::ENCODED_LEN_V8]; // written below, once the length is known
        } else if n.name == CKPT_NOTE_NAME && n.n_type == ckpt_image::NT_CKPT_FILEMAPS {
            let records: Vec<&[u8]> = n.desc[8..].chunks(FILEMAP_RECORD_SIZE).filter(|r| !shared(u32::from_le_bytes(r[..4].try_into().unwrap()))).collect();
            desc = [(records.len() as u32).to_le_bytes(), (FILEMAP_RECORD_SIZE_V8 as u32).to_le_bytes()].concat();
            for r in records {
                desc.extend_from_slice(&r[..FILEMAP_RECORD_SIZE_V8]);
            }
        }
        notes.push((n.name.to_vec(), n.n_type, desc));
    }
    st.version = 8;
    st.meta_len = (notes_at + notes_len(&notes)) as u64;
    let mut buf = vec![0u8; ProcessState::ENCODED_LEN_V8];
    st.write(&mut Writer::new(&mut buf));
    notes[0].2 = buf;
    put_notes(img, notes_at, &notes);
}

/// The bytes notes `notes` (name, type, descriptor) take.
fn notes_len(notes: &[(Vec<u8>, u32, Vec<u8>)]) -> usize {
    notes.iter().map(|(name, _, d)| ckpt_image::note::note_size(name, d.len())).sum()
}

/// The root's headers made again with `notes` after its program headers (the note's one given
/// their length), no longer than they were (the data stays where it is), and signed again. The
/// state note, which holds the headers' length, must say `notes_at` + [`notes_len`] already.
fn put_notes(img: &mut Img, notes_at: usize, notes: &[(Vec<u8>, u32, Vec<u8>)]) {
    let meta = img.bytes[..img.meta_len].to_vec();
    let notes_len = notes_len(notes);
    let new_len = notes_at + notes_len;
    assert!(new_len <= img.meta_len, "the headers may not grow");
    let mut out = vec![0u8; img.meta_len];
    out[..notes_at].copy_from_slice(&meta[..notes_at]);
    let mut note_ph = Phdr::read(&mut Reader::new(&meta[EHDR_SIZE..])).unwrap();
    note_ph.filesz = notes_len as u64;
    note_ph.write(&mut Writer::new(&mut out[EHDR_SIZE..EHDR_SIZE + PHDR_SIZE]));
    let mut w = Writer::new(&mut out[notes_at..new_len]);
    for (name, t, d) in notes {
        ckpt_image::note::write_note(&mut w, name, *t, d);
    }
    assert_eq!(w.finish(), Some(notes_len));
    img.bytes[..img.meta_len].copy_from_slice(&out);
    img.meta_len = new_len;
    img.seal();
}

/// An image of the previous format version restores with this version's myrestart (the
/// compatibility rule: an upgrade between two checkpoints of a job loses nothing), here one
/// of a program counting in a shared file mapping, whose record version 8 did not have.
#[test]
fn an_image_of_the_previous_format_version_restores() {
    let wd = Workdir::new("version-8");
    let file = wd.path.join("counter.dat");
    let read_counter = || i64::from_le_bytes(std::fs::read(&file).unwrap()[..8].try_into().unwrap());
    let mut c = Command::new(prog("mapcount", &[]));
    c.arg(&file).arg("300");
    let mut orig = Proc::preloaded(c, &wd.image(), "mapcount");
    orig.wait_lines(50, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let at_kill = read_counter();
    let mut img = Img::load(&wd.image());
    as_version_8(&mut img);
    img.save(&wd.image());
    let out = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 8, "{}", String::from_utf8_lossy(&out.stderr));
    let mut restored = Proc::restart(&wd.image());
    let first = restored.wait_lines(10, SHORT);
    assert_eq!(first[0].parse::<i64>().unwrap(), at_kill + 1, "the counter did not continue from the file's value");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().unwrap(), "done 300");
}

/// A small deterministic generator (xorshift), so that a failing case can be run again.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn mutation_campaign() {
    let cases: usize = std::env::var("CKPT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed: u64 = std::env::var("CKPT_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_c0de);
    let wd = Workdir::new("fuzz");
    let good = counter_image(&wd);
    let mut rng = Rng(seed);
    let interesting = [0u64, 1, 4095, 4096, 0x7fff_ffff_f000, 0x8000_0000_0000, 0xffff_8000_0000_0000, u64::MAX, u64::MAX - 4095, 1 << 32, i64::MAX as u64];
    for case in 0..cases {
        let mut img = good.clone();
        let how = rng.below(4);
        match how {
            // Bit flips anywhere in the headers, not signed again: always refused.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(img.meta_len as u64) as usize;
                    img.bytes[at] ^= 1 << rng.below(8);
                }
            }
            // Truncated.
            1 => {
                let len = rng.below(img.bytes.len() as u64) as usize;
                img.bytes.truncate(len);
            }
            // A field of our notes set to a chosen or random value, and signed again.
            _ => {
                let (at, len) = [NT_CKPT_STATE, NT_CKPT_THREAD, NT_CKPT_REGIONS, NT_CKPT_FDS].map(|t| img.note(t, 0))[rng.below(4) as usize];
                let width = [4usize, 8][rng.below(2) as usize];
                let off = at + (rng.below((len.saturating_sub(width)) as u64 / width as u64) as usize) * width;
                let v = if rng.below(2) == 0 { interesting[rng.below(interesting.len() as u64) as usize] } else { rng.next() };
                img.bytes[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
                img.seal();
            }
        }
        let path = wd.path.join(format!("case-{case}"));
        img.save(&path);
        let run = run_restart(&path);
        let what = format!("case {case} (seed {seed}, kind {how})");
        assert!(run.signal.is_none(), "{what}: myrestart killed by signal {:?}; stderr {:?}", run.signal, run.stderr);
        assert_ne!(run.code, Some(3), "{what}: failed after the point of no return: {:?}", run.stderr);
        assert!(!run.stderr.contains("internal error"), "{what}: {:?}", run.stderr);
        if how < 2 {
            assert_eq!(run.code, Some(2), "{what}: damaged image not refused: {:?}", run.stderr);
        }
        if run.code == Some(2) {
            assert!(run.stdout.is_empty(), "{what}: refused after the program ran: {:?}", run.stdout);
        }
        inspect_survives(&path);
        let _ = std::fs::remove_file(&path);
    }
}

/// The secret of the key file the images of these tests are signed with.
const SECRET: &[u8] = b"the crafted images' secret";

/// An image to craft from, with what restarting it needs and what it may change outside.
struct Subject {
    wd: Workdir,
    img: Img,
    /// The key file, for `--key`.
    key: Option<PathBuf>,
    /// The program's stdout, a log removed after the checkpoint: a restart makes it again, but
    /// only once every check has passed.
    log: Option<PathBuf>,
    /// The first line the original wrote there.
    first: String,
}

impl Subject {
    /// `program ARGS > log` run with libckpt and a key, checkpointed once, killed (with its
    /// children), its log removed; `args` are made from the subject's directory.
    fn signed(name: &str, program: &Path, args: impl Fn(&Path) -> Vec<String>) -> Subject {
        let wd = Workdir::new(name);
        let key = wd.path.join("key");
        private_file(&key, SECRET);
        let log = wd.path.join("log");
        let mut c = Command::new("sh");
        c.arg("-c").arg(r#"log=$1; shift; exec "$@" > "$log""#).arg("sh").arg(&log).arg(program).args(args(&wd.path)).env("CKPT_KEY", &key);
        let mut orig = Proc::preloaded(c, &wd.image(), name);
        wait_file_lines(&log, 3, SHORT);
        orig.checkpoint(&wd.image(), LONG);
        orig.kill_tree();
        let first = file_lines(&log).into_iter().next().unwrap_or_default();
        std::fs::remove_file(&log).unwrap();
        let mut img = Img::load(&wd.image());
        img.key = Some(ckpt_image::mac::key_from(SECRET));
        Subject { wd, img, key: Some(key), log: Some(log), first }
    }

    /// `sysvipc`: System V objects of every kind (`NT_CKPT_IPC`); those the killed original
    /// left in this system's IPC namespace are removed (a restart makes its own).
    fn sysv(name: &str) -> Subject {
        let s = Subject::signed(name, &prog("sysvipc", &[]), |_| vec!["100000000".into()]);
        let ids: Vec<&str> = s.first.strip_prefix("ids ").unwrap_or_else(|| panic!("no ids line: {:?}", s.first)).split(' ').collect();
        let st = Command::new("ipcrm").args(["-m", ids[0], "-s", ids[1], "-q", ids[2], "-m", ids[3]]).status().expect("ipcrm");
        assert!(st.success(), "ipcrm {ids:?}: {st}");
        s
    }

    /// `allkinds` (its sockets and watched directories in the subject's directory): a note of
    /// every kind one process has (two threads, POSIX timers, epoll, sockets, a timerfd,
    /// inotify watches, files it maps named rather than copied, its origin, the MAC).
    fn kinds(name: &str) -> Subject {
        Subject::signed(name, &prog("allkinds", &[]), |dir| vec![dir.display().to_string(), "100000000".into()])
    }

    /// Restarts a changed copy, `what`, and checks the outcome: refused (exit status 2) with
    /// nothing printed and nothing changed in the subject's directory, or restored (it crossed
    /// its point of no return, `--status-fd` says) and then not lost there (exit status 3),
    /// whatever the restored program then does with what it was given; never a crash of
    /// myrestart, nor a hang. A restored program is ended once it shows life, or after a while.
    #[allow(unsafe_code)] // a pipe by descriptor number, polled for the restart's signal
    fn try_restart(&self, img: &Img, what: &str) -> bool {
        let path = self.wd.path.join("case");
        img.save(&path);
        let before = snapshot(&self.wd.path, &["case"]);
        let mut fds = [0; 2];
        // SAFETY: pipe2 into a two-int array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let mut c = Command::new(myrestart());
        c.args(["--status-fd", "3"]);
        if let Some(k) = &self.key {
            c.arg("--key").arg(k);
        }
        c.arg(&path);
        let mut p = Proc::spawn_passing(c, what, Some((fds[1], 3)));
        // SAFETY: our copy of the write end, which the child has as its descriptor 3.
        unsafe { libc::close(fds[1]) };
        let said = |timeout_ms: i32| {
            let mut pfd = libc::pollfd { fd: fds[0], events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd; then a read of one byte into a local.
            unsafe {
                if libc::poll(&mut pfd, 1, timeout_ms) != 1 {
                    return None;
                }
                let mut b = 0u8;
                Some(if libc::read(fds[0], (&mut b as *mut u8).cast(), 1) == 1 { b } else { 0 })
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let restored = loop {
            match said(20) {
                Some(b'R') => break true,
                Some(_) => break false,
                None if Instant::now() > deadline => {
                    p.kill_tree();
                    panic!("{what}: neither refused nor restored within 30 s; stderr {:?}", p.stderr());
                }
                None => {}
            }
        };
        // SAFETY: our read end, used no more.
        unsafe { libc::close(fds[0]) };
        if restored {
            let alive = |p: &Proc| self.log.as_ref().map_or(!p.lines().is_empty(), |l| std::fs::metadata(l).is_ok_and(|m| m.len() > 0));
            let until = Instant::now() + Duration::from_secs(5);
            let mut ended = None;
            while ended.is_none() && !alive(&p) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
                ended = p.try_exit();
            }
            if ended.is_none() {
                p.kill_tree();
            }
            let err = p.stderr();
            assert!(ended.is_none_or(|st| st.code() != Some(3)), "{what}: lost after the point of no return: {err:?}");
            assert!(!err.contains("after the point of no return") && !err.contains("internal error"), "{what}: {err:?}");
            if let Some(l) = &self.log {
                let _ = std::fs::remove_file(l);
            }
        } else {
            let st = p.wait_exit(LONG);
            let err = p.stderr();
            assert_eq!(st.code(), Some(2), "{what}: {st}; stderr {err:?}");
            assert!(!err.contains("internal error"), "{what}: {err:?}");
            assert!(p.lines().is_empty(), "{what}: refused after the program ran: {:?}", p.lines());
            assert_eq!(snapshot(&self.wd.path, &["case"]), before, "{what}: the refused restart changed {}: {err:?}", self.wd.path.display());
        }
        inspect_survives(&path);
        restored
    }
}

/// Values an attacker would write into an image's records and sign again (checksums and MAC
/// recomputed), each for what a restart would otherwise find only after its point of no
/// return, or never: thread and process IDs the kernel will not give, POSIX timers it will not
/// make, socket addresses too short to be one, an inotify watch number far beyond the others.
/// Each is refused at once with one line (exit status 2), and nothing outside has changed.
#[test]
fn crafted_ids_timers_addresses_and_watches_are_refused_before_anything_changes() {
    let s = Subject::kinds("crafted-kinds");
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse::<u32>().unwrap();
    let mut st = Box::new(ProcessState::ZERO);
    let image = Image::parse(&s.img.bytes[..s.img.meta_len], s.img.bytes.len() as u64, &mut st).unwrap();
    let timer0 = image.timers().next().unwrap().unwrap().id;
    let pid = st.pid;
    let tids = s.img.tids();
    let leader = tids.iter().position(|&t| t == pid).unwrap();
    let other = tids.iter().position(|&t| t != pid).unwrap();
    let cpu_clock_of_1 = (!1i32 << 3) | 2;
    type Craft = Box<dyn Fn(&mut Img)>;
    let cases: Vec<(&str, Craft, &str)> = vec![
        ("a TID twice", Box::new(move |i| i.thread_n(other, |t| t.tid = pid)), "appears twice"),
        ("TID 0", Box::new(move |i| i.thread_n(other, |t| t.tid = 0)), "a thread ID is 0 or above 2^31 - 1"),
        ("TID 2^31", Box::new(move |i| i.thread_n(other, |t| t.tid = 1 << 31)), "a thread ID is 0 or above 2^31 - 1"),
        ("TID 1", Box::new(move |i| i.thread_n(other, |t| t.tid = 1)), "has TID 1"),
        ("a TID at pid_max", Box::new(move |i| i.thread_n(other, |t| t.tid = pid_max)), "pid_max"),
        ("PID 0", Box::new(|i| i.state(|s| s.pid = 0)), "the process ID is 0"),
        (
            "a PID above pid_max",
            Box::new(move |i| {
                i.state(|s| s.pid = pid_max + 1);
                i.thread_n(leader, |t| t.tid = pid_max + 1);
                // The timer that signals the main thread names it by its TID.
                for n in 0..2 {
                    i.timer(n, |t| if t.tid == pid { t.tid = pid_max + 1 });
                }
            }),
            "pid_max",
        ),
        ("a timer on no clock", Box::new(|i| i.timer(0, |t| t.clock = 99)), "cannot be made again here"),
        ("a timer on another process's CPU clock", Box::new(move |i| i.timer(0, |t| t.clock = cpu_clock_of_1)), "CPU-time clock"),
        ("a timer ID twice", Box::new(move |i| i.timer(1, |t| t.id = timer0)), "appears twice"),
        ("a socket address of one byte", Box::new(|i| i.socket(0, |r| r.addr_len = 1)), "bad socket address"),
        ("a listening socket without an address", Box::new(|i| i.socket(0, |r| r.addr_len = 0)), "bad socket address"),
        ("an inotify watch number 2^31 - 1", Box::new(|i| i.watch(3, |w| w.wd = i32::MAX)), "unused watch numbers"),
    ];
    for (what, craft, expect) in cases {
        let mut img = s.img.clone();
        craft(&mut img);
        let path = s.wd.path.join("crafted");
        img.save(&path);
        let before = snapshot(&s.wd.path, &["crafted"]);
        let mut c = Command::new(myrestart());
        c.arg("--key").arg(s.key.as_ref().unwrap()).arg(&path);
        // A bounded wait (a loop the image drives would not end within it); no timing.
        let out = run_within(c, LONG);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err:?}");
        assert_eq!(err.lines().count(), 1, "{what}: {err:?}");
        assert!(err.contains(expect), "{what}: want {expect:?} in {err:?}");
        assert_eq!(snapshot(&s.wd.path, &["crafted"]), before, "{what}: changed {}", s.wd.path.display());
        inspect_survives(&path);
    }
}

/// The crafted-image campaign: for every kind of ckpt note (found in one of these images: a
/// process with a note of each kind its own, signed with a key; a signed process tree; an
/// incremental image and its base; System V objects; a pty pair; file locks; a POSIX shared memory
/// object), words of its records set to chosen or random values and every checksum and MAC
/// signed again, so that they reach the deepest checks. Each restart is
/// refused with nothing changed outside, or restores (see [`Subject::try_restart`]). `make
/// test` tries two of each kind; `make fuzz` hundreds (`CKPT_FUZZ_CASES` in all).
#[test]
fn every_note_type_crafted() {
    use ckpt_image::*;
    let cases: usize = std::env::var("CKPT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed: u64 = std::env::var("CKPT_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0xc4af_7ed0);
    let kinds = Subject::kinds("notes-kinds");
    let tree = Subject::signed("notes-tree", &prog("family", &[]), |_| vec!["100000000".into(), "2000".into()]);
    let (wd, newest, _base) = two_image_chain("notes-chain");
    let chain = Subject { img: Img::load(&newest), wd, key: None, log: None, first: String::new() };
    let ipc = Subject::sysv("notes-ipc");
    let ptys = Subject::signed("notes-ptys", &prog("ptyself", &[]), |_| vec!["100000000".into()]);
    // A POSIX shared memory object (`NT_CKPT_SHMFILES`), removed when the campaign ends (a
    // crafted image that restores puts it back).
    struct RemoveShm(std::path::PathBuf);
    impl Drop for RemoveShm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let shm_name = format!("ckpt-fuzz-shmobj-{}", std::process::id());
    let _shm_object = RemoveShm(Path::new("/dev/shm").join(&shm_name));
    let shm = Subject::signed("notes-shm", &prog("shmobj", &[]), |_| vec![format!("/{shm_name}")]);
    let locks = Subject::signed("notes-locks", &prog("locks", &[]), |dir| vec![dir.display().to_string()]);
    let subjects = [&kinds, &tree, &chain, &ipc, &ptys, &locks, &shm];
    let types = [
        (NT_CKPT_STATE, "state"), (NT_CKPT_THREAD, "thread"), (NT_CKPT_REGIONS, "regions"), (NT_CKPT_FDS, "fds"),
        (NT_CKPT_TIMERS, "timers"), (NT_CKPT_EPOLL, "epoll"), (NT_CKPT_SOCKETS, "sockets"), (NT_CKPT_TIMERFDS, "timerfds"),
        (NT_CKPT_INOTIFY, "inotify"), (NT_CKPT_TREE, "tree"), (NT_CKPT_SHARED, "shared"), (NT_CKPT_FILEMAPS, "filemaps"),
        (NT_CKPT_CHAIN, "chain"), (NT_CKPT_ORIGIN, "origin"), (NT_CKPT_MAC, "mac"), (NT_CKPT_PTYS, "ptys"),
        (NT_CKPT_IPC, "ipc"), (NT_CKPT_WRITTEN, "written"), (NT_CKPT_LOCKS, "locks"), (NT_CKPT_SHMFILES, "shmfiles"),
    ];
    let per_type = (cases / types.len()).max(2);
    let interesting = [0u64, 1, 2, 3, 4095, 4096, 1 << 31, (1 << 31) - 1, 0x7fff_ffff_f000, 0xffff_8000_0000_0000, u64::MAX, u64::MAX - 4095, 1 << 32, i64::MAX as u64];
    let mut rng = Rng(seed);
    for (ty, name) in types {
        // Every note of this type: its subject, its part and which of the part's notes it is.
        let notes: Vec<(&Subject, (usize, usize), usize)> = subjects
            .iter()
            .flat_map(|s| s.img.parts().into_iter().flat_map(move |part| (0..).map_while(move |n| s.img.note_in(part, ty, n).map(|_| (*s, part, n)))))
            .collect();
        assert!(!notes.is_empty(), "no image has a {name} note");
        let mut restored = 0;
        for case in 0..per_type {
            let (s, part, n) = notes[rng.below(notes.len() as u64) as usize];
            let mut img = s.img.clone();
            let (at, len) = img.note_in(part, ty, n).unwrap();
            let width = if len >= 8 { [4usize, 8][rng.below(2) as usize] } else { len.min(4) };
            let off = at + rng.below(((len - width) / width + 1) as u64) as usize * width;
            let v = if rng.below(2) == 0 { interesting[rng.below(interesting.len() as u64) as usize] } else { rng.next() };
            img.bytes[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
            if ty == NT_CKPT_MAC {
                // A MAC changed by someone without the key: the checksums can be made again,
                // the MAC cannot.
                img.key = None;
            }
            img.seal();
            restored += s.try_restart(&img, &format!("{name} case {case} (seed {seed}: {width} bytes at {} of the note set to {v:#x})", off - at)) as usize;
        }
        eprintln!("{name}: {per_type} crafted images, {restored} restored, the others refused");
    }
}

/// The root's note of type `ty` with its descriptor made `f`'s, no longer than it was (the
/// headers shrink, the data stays where it is), signed again: a note cut short, say.
fn rewrite_note(img: &mut Img, ty: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let meta = img.bytes[..img.meta_len].to_vec();
    let phnum = ckpt_image::elf::Ehdr::read(&meta).unwrap().phnum as usize;
    let notes_at = EHDR_SIZE + PHDR_SIZE * phnum;
    let mut f = Some(f);
    let mut notes: Vec<(Vec<u8>, u32, Vec<u8>)> = Vec::new();
    for n in Notes::new(&meta[notes_at..]).map(Result::unwrap) {
        let mut desc = n.desc.to_vec();
        if n.name == CKPT_NOTE_NAME && n.n_type == ty {
            (f.take().expect("one note of the type"))(&mut desc);
        }
        notes.push((n.name.to_vec(), n.n_type, desc));
    }
    assert!(f.is_none(), "no note of type {ty:#x}");
    let new_len = notes_at + notes_len(&notes);
    for (name, t, d) in notes.iter_mut() {
        if name.as_slice() == CKPT_NOTE_NAME && *t == NT_CKPT_STATE {
            let mut st = Box::new(ProcessState::ZERO);
            ProcessState::read_into(d, &mut st).unwrap();
            st.meta_len = new_len as u64;
            st.write(&mut Writer::new(d));
        }
    }
    put_notes(img, notes_at, &notes);
}

/// Changes the head of the root's `nth` System V IPC record (its body stays; `body_len` is
/// written as the changed record's body's length).
fn ipc_record(img: &mut Img, nth: usize, f: impl FnOnce(&mut ckpt_image::ipc::IpcRecord)) {
    use ckpt_image::ipc::{IpcRecord, IPC_HEAD_SIZE};
    let (at, len) = img.note(ckpt_image::NT_CKPT_IPC, 0);
    let desc = img.bytes[at..at + len].to_vec();
    let mut r = Reader::new(&desc);
    for _ in 0..nth {
        IpcRecord::read(&mut r).unwrap();
    }
    let start = at + r.pos();
    let mut rec = IpcRecord::read(&mut r).unwrap();
    f(&mut rec);
    let mut head = [0u8; IPC_HEAD_SIZE];
    rec.write_head(&mut Writer::new(&mut head));
    img.bytes[start..start + IPC_HEAD_SIZE].copy_from_slice(&head);
    img.seal();
}

/// Changes the root's `nth` pty record and the lengths of its queued bytes (the bytes stay).
fn pty_record(img: &mut Img, nth: usize, f: impl FnOnce(&mut ckpt_image::pty::PtyRecord, &mut usize, &mut usize)) {
    use ckpt_image::pty::{PtyRecord, PTY_RECORD_SIZE};
    let (at, len) = img.note_in((0, img.meta_len), ckpt_image::NT_CKPT_PTYS, 0).or_else(|| img.note_in((0, img.meta_len), ckpt_image::NT_CKPT_PTYS | NT_CKPT_IGNORABLE, 0)).unwrap();
    let desc = img.bytes[at..at + len].to_vec();
    let mut r = Reader::new(&desc);
    for _ in 0..nth {
        PtyRecord::read(&mut r).unwrap();
    }
    let start = at + r.pos();
    let (mut rec, a, b) = PtyRecord::read(&mut r).unwrap();
    let (mut la, mut lb) = (a.len(), b.len());
    f(&mut rec, &mut la, &mut lb);
    let (fake_a, fake_b) = (vec![0u8; la], vec![0u8; lb]);
    let mut whole = vec![0u8; PTY_RECORD_SIZE + la + lb + 8];
    rec.write(&mut Writer::new(&mut whole), &fake_a, &fake_b);
    img.bytes[start..start + PTY_RECORD_SIZE].copy_from_slice(&whole[..PTY_RECORD_SIZE]);
    img.seal();
}

/// Restarts `img` (saved as `path`) and `ckpt inspect`s it: the restart is refused in one line
/// that says `expect`, before the program runs; `ckpt inspect` says one line, or reports.
fn refused_in_one_line(img: &Img, path: &Path, what: &str, expect: &str) {
    img.save(path);
    let run = run_restart(path);
    assert_eq!(run.code, Some(2), "{what}: exit {:?} signal {:?}; stderr {:?}", run.code, run.signal, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{what}: {:?}", run.stderr);
    assert!(run.stderr.contains(expect), "{what}: want {expect:?} in {:?}", run.stderr);
    assert!(run.stdout.is_empty(), "{what}: the program ran: {:?}", run.stdout);
    let out = Command::new(ckpt()).arg("inspect").arg(path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0..=2)), "ckpt inspect, {what}: {:?} {err:?}", out.status);
    assert!(err.lines().count() <= 1 && !err.contains("panicked"), "ckpt inspect, {what}: {err:?}");
}

/// Crafted `NT_CKPT_IPC` notes (of a program holding a segment, a semaphore set, a queue with
/// messages and a keyed segment): cut short, an unknown kind, a body longer than the note, a
/// count of messages it does not hold, a negative ID, and two segments under one key (which
/// the restart can only find out by making them: the second is refused, not restored without
/// its objects). Each refused in one line before anything changes.
#[test]
fn crafted_ipc_notes_are_refused_in_one_line() {
    use ckpt_image::ipc::{KIND_MSG, KIND_SHM};
    let wd = Workdir::new("crafted-ipc");
    let mut orig = Proc::preloaded({
        let mut c = Command::new(prog("sysvipc", &[]));
        c.arg("100000");
        c
    }, &wd.image(), "sysvipc");
    let lines = orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let ids: Vec<&str> = lines[0].strip_prefix("ids ").unwrap().split(' ').collect();
    let st = Command::new("ipcrm").args(["-m", ids[0], "-s", ids[1], "-q", ids[2], "-m", ids[3]]).status().expect("ipcrm");
    assert!(st.success(), "ipcrm {ids:?}: {st}");
    let good = Img::load(&wd.image());
    let mut st = Box::new(ProcessState::ZERO);
    let recs: Vec<(u32, i32, usize)> = Image::parse(&good.bytes[..good.meta_len], good.bytes.len() as u64, &mut st)
        .unwrap()
        .ipc_objects()
        .map(Result::unwrap)
        .map(|r| (r.kind, r.key, r.body.len()))
        .collect();
    let shm = recs.iter().position(|r| r.0 == KIND_SHM && r.2 == 0).unwrap();
    let keyed = recs.iter().position(|r| r.0 == KIND_SHM && r.1 != 0).unwrap();
    let queue = recs.iter().position(|r| r.0 == KIND_MSG).unwrap();
    let key = recs[keyed].1;
    static BIG: [u8; 1 << 20] = [0; 1 << 20];
    type Craft = Box<dyn Fn(&mut Img)>;
    let cases: Vec<(&str, Craft, &str)> = vec![
        ("an IPC note cut short", Box::new(|i| rewrite_note(i, ckpt_image::NT_CKPT_IPC, |d| d.truncate(d.len() - 8))), "truncated"),
        ("an IPC record of kind 9", Box::new(move |i| ipc_record(i, queue, |r| r.kind = 9)), "bad System V IPC record"),
        ("an IPC body past the note", Box::new(move |i| ipc_record(i, queue, |r| r.body = &BIG[..])), "truncated"),
        ("a queue of 2^32 - 1 messages", Box::new(move |i| ipc_record(i, queue, |r| r.count = u32::MAX)), "bad System V IPC record"),
        ("a negative IPC ID", Box::new(move |i| ipc_record(i, queue, |r| r.id = -2)), "bad System V IPC record"),
        ("a segment larger than its bytes", Box::new(move |i| ipc_record(i, keyed, |r| r.size += 4096)), "bad System V IPC record"),
        ("two segments under one key", Box::new(move |i| ipc_record(i, shm, |r| r.key = key)), "cannot make System V shared memory segment"),
    ];
    let path = wd.path.join("crafted");
    for (what, craft, expect) in cases {
        let mut img = good.clone();
        craft(&mut img);
        refused_in_one_line(&img, &path, what, expect);
    }
}

/// Crafted `NT_CKPT_PTYS` notes (of a process holding both ends of a pair, and a second pair):
/// cut short, a descriptor number out of range or naming no device, unknown flags, more
/// queued bytes than a pair holds or than the note has, bytes queued in a slave's record.
/// Each refused in one line before anything changes.
#[test]
fn crafted_pty_notes_are_refused_in_one_line() {
    use ckpt_image::limits::MAX_PTY_QUEUE;
    let wd = Workdir::new("crafted-ptys");
    let mut orig = Proc::preloaded({
        let mut c = Command::new(prog("ptyself", &[]));
        c.arg("100000");
        c
    }, &wd.image(), "ptyself");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let good = Img::load(&wd.image());
    let mut st = Box::new(ProcessState::ZERO);
    let recs: Vec<bool> = Image::parse(&good.bytes[..good.meta_len], good.bytes.len() as u64, &mut st).unwrap().ptys().map(|r| r.unwrap().0.is_master()).collect();
    let master = recs.iter().position(|&m| m).unwrap();
    let slave = recs.iter().position(|&m| !m).unwrap();
    let ty = if recs.iter().any(|&m| m) { ckpt_image::NT_CKPT_PTYS } else { ckpt_image::NT_CKPT_PTYS | NT_CKPT_IGNORABLE };
    type Craft = Box<dyn Fn(&mut Img)>;
    let cases: Vec<(&str, Craft, &str)> = vec![
        ("a pty note cut short", Box::new(move |i| rewrite_note(i, ty, |d| d.truncate(d.len() - 8))), "truncated"),
        ("a pty record of fd 2^31 - 1", Box::new(move |i| pty_record(i, master, |r, _, _| r.fd = i32::MAX)), "bad pty record"),
        ("a pty record of fd -1", Box::new(move |i| pty_record(i, master, |r, _, _| r.fd = -1)), "bad pty record"),
        ("a pty record of a closed fd", Box::new(move |i| pty_record(i, master, |r, _, _| r.fd = 900)), "names no descriptor on a device"),
        ("a pty record with unknown flags", Box::new(move |i| pty_record(i, master, |r, _, _| r.flags |= 1 << 20)), "bad pty record"),
        ("more queued than a pair holds", Box::new(move |i| pty_record(i, master, |_, a, _| *a = MAX_PTY_QUEUE + 1)), "bad pty record"),
        ("queued bytes past the note", Box::new(move |i| pty_record(i, master, |_, _, b| *b = MAX_PTY_QUEUE)), "truncated"),
        ("bytes queued in a slave's record", Box::new(move |i| pty_record(i, slave, |_, a, _| *a = 1)), "bytes queued in a pty record of a slave"),
    ];
    let path = wd.path.join("crafted");
    for (what, craft, expect) in cases {
        let mut img = good.clone();
        craft(&mut img);
        refused_in_one_line(&img, &path, what, expect);
    }
}

/// A POSIX queue's record changed by `f` (its head and its queue), its messages kept.
fn mq_record(img: &mut Img, f: impl Fn(&mut ckpt_image::ipc::IpcRecord, &mut ckpt_image::ipc::MqQueue)) {
    use ckpt_image::ipc::{begin_mq, end_queue, records, write_message};
    rewrite_note(img, ckpt_image::NT_CKPT_IPC, |d| {
        let old = d.clone();
        let mut out = vec![0u8; old.len()];
        let mut w = Writer::new(&mut out);
        for r in records(&old).map(Result::unwrap) {
            let Some(mut q) = r.mq_queue() else {
                r.write(&mut w);
                continue;
            };
            let mut head = r;
            f(&mut head, &mut q);
            let at = begin_mq(&mut w, &head, &q);
            for (prio, text) in r.messages().map(Result::unwrap) {
                write_message(&mut w, prio, text);
            }
            end_queue(&mut w, at, r.count);
        }
        let n = w.finish().unwrap();
        out.truncate(n);
        *d = out;
    });
}

/// Crafted POSIX queue records: descriptor flags that no `mq_open` takes (`O_ACCMODE`): the
/// restart, which opens the queue again before its point of no return, is refused in one line
/// (it went on with the descriptor closed); a record whose descriptor is not one of the
/// image's (past any descriptor, or a number no process has), which the restart would have put
/// over a descriptor of its own or failed after its point of no return.
#[test]
fn crafted_posix_queue_records_are_refused_in_one_line() {
    let wd = Workdir::new("crafted-mq");
    let p = prog("posixmq", &[]);
    let mut c = Command::new(&p);
    c.arg("100000");
    let mut orig = Proc::preloaded(c, &wd.image(), "posixmq");
    let lines = orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let name = lines[0].strip_prefix("queue ").unwrap().to_string();
    assert!(Command::new(&p).args(["unlink", &name]).status().unwrap().success(), "removing {name}");
    let good = Img::load(&wd.image());
    type Craft = Box<dyn Fn(&mut Img)>;
    let cases: Vec<(&str, Craft, &str)> = vec![
        ("a queue opened with O_ACCMODE", Box::new(|i| mq_record(i, |_, q| q.flags = libc::O_ACCMODE as u32)), "cannot open it again"),
        ("a queue on fd 2^31 - 1", Box::new(|i| mq_record(i, |r, _| r.id = i32::MAX)), "names no descriptor"),
        ("a queue on fd 900", Box::new(|i| mq_record(i, |r, _| r.id = 900)), "names no descriptor"),
        ("a queue on fd 1", Box::new(|i| mq_record(i, |r, _| r.id = 1)), "names no descriptor"),
    ];
    let path = wd.path.join("crafted");
    for (what, craft, expect) in cases {
        let mut img = good.clone();
        craft(&mut img);
        refused_in_one_line(&img, &path, what, expect);
    }
}

/// Crafted records of the notes a restart acts on late: file locks (`NT_CKPT_LOCKS`), the files
/// the program could write in place (`NT_CKPT_WRITTEN`), and a TCP connection's ends (the
/// `aux` and blob of their descriptor records, the `shutdown` of their socket records), each
/// signed again. Each is refused at once with one line and nothing changed, or restores
/// without being lost after the point of no return ([`Subject::try_restart`]); the ones no
/// checkpoint writes are refused.
#[test]
fn crafted_locks_written_files_and_connection_ends_are_refused_or_restored() {
    use ckpt_image::locks::{LockKind, LockRecord, LOCK_RECORD_SIZE};
    use ckpt_image::{NT_CKPT_LOCKS, NT_CKPT_WRITTEN};
    let u32_at = |img: &mut Img, ty: u32, off: usize, v: u32| {
        let (at, _) = img.note(ty, 0);
        img.bytes[at + off..at + off + 4].copy_from_slice(&v.to_le_bytes());
        img.seal();
    };
    let u64_at = |img: &mut Img, ty: u32, off: usize, v: u64| {
        let (at, _) = img.note(ty, 0);
        img.bytes[at + off..at + off + 8].copy_from_slice(&v.to_le_bytes());
        img.seal();
    };

    // File locks: a descriptor out of range or of no record, an unknown kind or flag, a range
    // past any file, a note cut short must be refused; a lock moved to another descriptor
    // (stderr, a pipe) is named or taken.
    let locks = Subject::signed("crafted-locks", &prog("locks", &[]), |dir| vec![dir.display().to_string()]);
    let lock = |f: fn(&mut LockRecord)| {
        let mut img = locks.img.clone();
        img.record(NT_CKPT_LOCKS, 0, LOCK_RECORD_SIZE, LockRecord::read, LockRecord::write, f);
        img
    };
    let refused: Vec<(Img, &str)> = vec![
        (lock(|l| l.fd = -1), "a lock on fd -1"),
        (lock(|l| l.fd = 1000), "a lock on a descriptor the image does not have"),
        (lock(|l| l.fd = i32::MAX), "a lock on fd 2^31-1"),
        (lock(|l| (l.kind, l.start, l.len) = (LockKind::Posix, u64::MAX, 1)), "a lock past any file"),
        (lock(|l| (l.kind, l.start, l.len) = (LockKind::Ofd, i64::MAX as u64, 2)), "a lock ending past any file"),
        (lock(|l| (l.kind, l.start, l.len) = (LockKind::Flock, 5, 0)), "a flock lock on a byte range"),
        ({ let mut i = locks.img.clone(); u32_at(&mut i, NT_CKPT_LOCKS, 4, 9); i }, "a lock of kind 9"),
        ({ let mut i = locks.img.clone(); u32_at(&mut i, NT_CKPT_LOCKS, 8, 4); i }, "a lock with an unknown flag"),
        ({ let mut i = locks.img.clone(); rewrite_note(&mut i, NT_CKPT_LOCKS, |d| d.truncate(d.len() - 5)); i }, "a locks note cut short"),
    ];
    for (img, what) in &refused {
        assert!(!locks.try_restart(img, what), "{what}: restored");
    }
    for (img, what) in [(lock(|l| l.fd = 2), "a lock moved to stderr"), (lock(|l| (l.kind, l.flags) = (LockKind::Lease, 1)), "a lease")] {
        locks.try_restart(&img, what);
    }

    // Written files (record 0 of `allkinds`'s note): a hash of more bytes than a checkpoint
    // hashes, a path longer than the note, a descriptor out of range, a note cut short; and a
    // size no file has, which is a file changed since.
    let kinds = Subject::kinds("crafted-written");
    let written = |f: &dyn Fn(&mut Img)| {
        let mut img = kinds.img.clone();
        f(&mut img);
        img
    };
    let big = ckpt_image::limits::WRITTEN_HASH_MAX + 1;
    let refused: Vec<(Img, &str)> = vec![
        (written(&|i| { u64_at(i, NT_CKPT_WRITTEN, 16, big); u32_at(i, NT_CKPT_WRITTEN, 56, 1) }), "a hash of a file larger than a checkpoint hashes"),
        (written(&|i| u32_at(i, NT_CKPT_WRITTEN, 64, u32::MAX)), "a written file's path of 2^32-1 bytes"),
        (written(&|i| u32_at(i, NT_CKPT_WRITTEN, 60, i32::MAX as u32)), "a written file on fd 2^31-1"),
        (written(&|i| { u64_at(i, NT_CKPT_WRITTEN, 16, u64::MAX); u32_at(i, NT_CKPT_WRITTEN, 56, 0) }), "a written file of 2^64-1 bytes"),
        (written(&|i| rewrite_note(i, NT_CKPT_WRITTEN, |d| d.truncate(d.len() - 3))), "a written-files note cut short"),
    ];
    for (img, what) in &refused {
        assert!(!kinds.try_restart(img, what), "{what}: restored");
    }

    // A TCP connection within one process, with bytes queued and not yet sent: its ends'
    // counts of unsent bytes, its blob's length, its shutdown bits.
    let tcp = Subject::signed("crafted-tcp", &prog("tcppair", &[]), |_| vec!["full".into()]);
    let mut st = Box::new(ProcessState::ZERO);
    let image = Image::parse(&tcp.img.bytes[..tcp.img.meta_len], tcp.img.bytes.len() as u64, &mut st).unwrap();
    let ends: Vec<(usize, i32)> =
        image.sockets().map(Result::unwrap).enumerate().filter(|(_, s)| s.state & ckpt_image::sockets::CONNECTED != 0 && s.family as i32 == libc::AF_INET).map(|(i, s)| (i, s.fd)).collect();
    assert_eq!(ends.len(), 2, "two ends of one connection: {ends:?}");
    let end = |fd: i32, f: &dyn Fn(&mut ckpt_image::fds::FdRecord)| {
        let mut img = tcp.img.clone();
        img.fds(|r, _| {
            if r.fd == fd {
                f(r);
            }
            Ok(())
        });
        img
    };
    for &(i, fd) in &ends {
        let refused = [
            (end(fd, &|r| r.aux = 0xffff_ffff), "unsent bytes beyond its blob"),
            (end(fd, &|r| r.aux = r.blob_len.saturating_sub(2)), "unsent bytes cutting its queue's frames"),
            ({ let mut img = tcp.img.clone(); img.socket(i, |s| s.shutdown = 4); img }, "an unknown shutdown bit"),
        ];
        for (img, what) in &refused {
            assert!(!tcp.try_restart(img, &format!("fd {fd}: {what}")), "fd {fd}: {what}: restored");
        }
        for (img, what) in [
            (end(fd, &|r| r.aux |= ckpt_image::sockets::TCP_BYTES_LOST), "bytes lost"),
            (end(fd, &|r| r.aux |= 1 << 40), "unknown bits in its aux"),
            (end(fd, &|r| r.aux = 0), "no unsent bytes"),
            (end(fd, &|r| r.blob_len = r.blob_len.saturating_sub(1)), "a blob one byte shorter"),
            ({ let mut img = tcp.img.clone(); img.socket(i, |s| s.shutdown = 3); img }, "shut down both ways"),
        ] {
            tcp.try_restart(&img, &format!("fd {fd}: {what}"));
        }
    }
}
