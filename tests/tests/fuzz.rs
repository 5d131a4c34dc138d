//! Crafted and damaged images: every one is refused before `myrestart` changes anything (exit
//! status 2, one line), or restored; none crashes, hangs or fails after the point of no return
//! (exit 3), and `ckpt inspect` never aborts.
//!
//! `crafted_images_are_refused_before_anything_changes` tries, one by one, values an attacker
//! would write into an image and re-sign (the header checksum recomputed, as anyone can). The
//! mutation campaign tries random damage and random re-signed field values: `make test` runs a
//! few dozen cases, `make fuzz` thousands (`CKPT_FUZZ_CASES`).

use ckpt_image::bytes::{Reader, Writer};
use ckpt_image::elf::{Phdr, EHDR_SIZE, PHDR_SIZE};
use ckpt_image::note::Notes;
use ckpt_image::region::{RegionRecord, HEADER_SIZE, RECORD_SIZE, RF_HAS_DATA};
use ckpt_image::{Image, ProcessState, ThreadState, CKPT_NOTE_NAME, NT_CKPT_FDS, NT_CKPT_REGIONS, NT_CKPT_STATE, NT_CKPT_THREAD};
use ckpt_tests::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// An image in memory, with the means to change its records and sign it again.
#[derive(Clone)]
struct Img {
    bytes: Vec<u8>,
    meta_len: usize,
}

impl Img {
    fn load(path: &Path) -> Img {
        let bytes = std::fs::read(path).unwrap();
        let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
        Img { bytes, meta_len }
    }

    /// Where the descriptor of the `nth` CKPT note of type `ty` is: (offset, length).
    fn note(&self, ty: u32, nth: usize) -> (usize, usize) {
        let mut st = Box::new(ProcessState::ZERO);
        let meta = &self.bytes[..self.meta_len];
        Image::parse(meta, self.bytes.len() as u64, &mut st).unwrap();
        let phnum = ckpt_image::elf::Ehdr::read(meta).unwrap().phnum as usize;
        let notes = &meta[EHDR_SIZE + PHDR_SIZE * phnum..];
        let n = Notes::new(notes).map(Result::unwrap).filter(|n| n.name == CKPT_NOTE_NAME && n.n_type == ty).nth(nth).unwrap();
        (n.desc.as_ptr() as usize - meta.as_ptr() as usize, n.desc.len())
    }

    fn seal(&mut self) {
        ckpt_image::seal(&mut self.bytes[..self.meta_len]).unwrap();
    }

    fn state(&mut self, f: impl FnOnce(&mut ProcessState)) {
        let (at, len) = self.note(NT_CKPT_STATE, 0);
        let mut st = Box::new(ProcessState::ZERO);
        ProcessState::read_into(&self.bytes[at..at + len], &mut st).unwrap();
        f(&mut st);
        st.write(&mut Writer::new(&mut self.bytes[at..at + len]));
        self.seal();
    }

    fn thread(&mut self, f: impl FnOnce(&mut ThreadState)) {
        let (at, len) = self.note(NT_CKPT_THREAD, 0);
        let mut t = ThreadState::read(&self.bytes[at..at + len]).unwrap();
        f(&mut t);
        t.write(&mut Writer::new(&mut self.bytes[at..at + len]));
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
    let started = Instant::now();
    let run = run_restart(&path);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("hole"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?} to refuse", started.elapsed());
    inspect_survives(&path);
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
