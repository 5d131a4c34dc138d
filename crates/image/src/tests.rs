//! Unit tests: encoding round trips, and one test per way the reader rejects an image.

extern crate std;
use std::vec;
use std::vec::Vec;

use crate::bytes::Writer;
use crate::elf::{Ehdr, Phdr, EHDR_SIZE, PHDR_SIZE, PT_LOAD, PT_NOTE};
use crate::fds::{FdKind, FdRecord};
use crate::image::{headers_len, meta_len, PREFIX_LEN};
use crate::note::{begin_note, note_size, write_note, Notes};
use crate::region::{self, RegionKind, RegionRecord, RECORD_SIZE, RF_HAS_DATA};
use crate::verify::Dense;
use crate::thread::ThreadState;
use crate::*;

fn sample_state() -> std::boxed::Box<ProcessState> {
    let mut s = std::boxed::Box::new(ProcessState::ZERO);
    s.pid = 1234;
    s.ppid = 1;
    s.mm.brk = 0x55_0000;
    s.itimers[0].value_usec = 5;
    s.sigactions[11].handler = 0x40_1000;
    s.cwd.set(b"/tmp/work");
    s.exe.set(b"/usr/bin/x");
    s
}

fn sample_thread() -> ThreadState {
    let mut t = ThreadState { tid: 1234, fs_base: 0x7f00_0000_1000, sigframe: START + 64, ..Default::default() };
    t.comm[..5].copy_from_slice(b"hello");
    t
}

#[test]
fn state_round_trips() {
    let s = sample_state();
    let mut buf = vec![0u8; ProcessState::ENCODED_LEN];
    let mut w = Writer::new(&mut buf);
    s.write(&mut w);
    assert_eq!(w.finish(), Some(ProcessState::ENCODED_LEN));
    let mut back = std::boxed::Box::new(ProcessState::ZERO);
    ProcessState::read_into(&buf, &mut back).unwrap();
    assert_eq!(*back, *s);
    let t = ThreadState { flags: thread::FLAG_RSEQ, rseq_addr: 0x1000, rseq_len: 32, robust_list: 7, ..sample_thread() };
    let mut buf = vec![0u8; ThreadState::ENCODED_LEN];
    t.write(&mut Writer::new(&mut buf));
    assert_eq!(ThreadState::read(&buf), Ok(t));
    assert_eq!(t.comm_bytes(), b"hello");
    assert_eq!(ThreadState::read(&buf[1..]), Err(ImageError::Malformed("thread note has the wrong size")));
    buf[4] = 0x80;
    assert_eq!(ThreadState::read(&buf), Err(ImageError::Malformed("unknown thread flags")));
}

#[test]
fn state_rejects_foreign_and_other_versions() {
    let mut buf = vec![0u8; ProcessState::ENCODED_LEN];
    sample_state().write(&mut Writer::new(&mut buf));
    let mut out = std::boxed::Box::new(ProcessState::ZERO);
    let mut other = buf.clone();
    other[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(ProcessState::read_into(&other, &mut out), Err(ImageError::UnsupportedVersion(FORMAT_VERSION + 1)));
    // Version 1 kept the thread's state in the state note: refused, by number.
    other[8..12].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(ProcessState::read_into(&other, &mut out), Err(ImageError::UnsupportedVersion(1)));
    assert_eq!(
        std::format!("{}", ImageError::UnsupportedVersion(1)),
        "unsupported image format version 1, from before the format's compatibility rule (this ckpt reads versions 8 to 9); restart it with the ckpt that made it"
    );
    // Every version since the rule began is read, each in its own layout, and written back so.
    for v in OLDEST_FORMAT..=FORMAT_VERSION {
        let mut st = sample_state();
        st.version = v;
        st.cwd_id.ino = 77;
        let len = if v >= FILE_IDS_SINCE { ProcessState::ENCODED_LEN } else { ProcessState::ENCODED_LEN_V8 };
        let mut old = vec![0u8; len];
        let mut w = Writer::new(&mut old);
        st.write(&mut w);
        assert_eq!(w.finish(), Some(len), "version {v}");
        assert_eq!(ProcessState::read_into(&old, &mut out), Ok(()), "version {v}");
        assert_eq!(out.version, v);
        assert_eq!(out.cwd_id.ino, if v >= FILE_IDS_SINCE { 77 } else { 0 }, "version {v}: identities only since {FILE_IDS_SINCE}");
        let mut wrong = vec![0u8; ProcessState::ENCODED_LEN + ProcessState::ENCODED_LEN_V8 - len];
        st.write(&mut Writer::new(&mut wrong));
        assert!(ProcessState::read_into(&wrong, &mut out).is_err(), "version {v} in the other layout");
    }
    let mut foreign = buf.clone();
    foreign[0] = b'X';
    assert_eq!(ProcessState::read_into(&foreign, &mut out), Err(ImageError::Foreign));
    assert!(ProcessState::read_into(&buf[..100], &mut out).is_err());
}

#[test]
fn notes_are_padded_and_iterated() {
    let mut buf = vec![0u8; 64];
    let mut w = Writer::new(&mut buf);
    write_note(&mut w, b"CORE", 6, &[1, 2, 3]);
    write_note(&mut w, b"LINUX", 0x202, &[9; 8]);
    let n = w.finish().unwrap();
    assert_eq!(n, note_size(b"CORE", 3) + note_size(b"LINUX", 8));
    let notes: Vec<_> = Notes::new(&buf[..n]).map(|r| r.unwrap()).collect();
    assert_eq!(notes.len(), 2);
    assert_eq!((notes[0].name, notes[0].n_type, notes[0].desc), (&b"CORE"[..], 6, &[1u8, 2, 3][..]));
    assert_eq!((notes[1].name, notes[1].desc.len()), (&b"LINUX"[..], 8));
    assert!(Notes::new(&[5, 0, 0, 0, 200, 0, 0, 0]).next().unwrap().is_err());
}

#[test]
fn header_rejections() {
    assert_eq!(Ehdr::read(b"\x7fELX"), Err(ImageError::NotElf));
    assert_eq!(Ehdr::read(b""), Err(ImageError::NotElf));
    let mut exe = [0u8; 64];
    exe[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    exe[16] = 2; // ET_EXEC
    exe[18] = 62;
    assert_eq!(Ehdr::read(&exe), Err(ImageError::NotCore));
    assert_eq!(Ehdr::read(&exe[..20]), Err(ImageError::NotCore), "short header reads as not a core file");
}

/// Any x86-64 ELF file's header says where its program headers are (libckpt reads a
/// program's notes so).
#[test]
fn any_elf_header() {
    let mut exe = [0u8; 64];
    exe[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    exe[16] = 3; // ET_DYN
    exe[18] = 62;
    exe[32] = 64; // e_phoff
    exe[52] = 64; // e_ehsize
    exe[54] = 56; // e_phentsize
    exe[56] = 9; // e_phnum
    assert_eq!(Ehdr::read_any(&exe), Ok((3, Ehdr { phoff: 64, phnum: 9 })));
    exe[18] = 3; // EM_386
    assert_eq!(Ehdr::read_any(&exe), Err(ImageError::NotCore));
}

/// The parts of a test image, before they are encoded. [`draft`] makes a valid one; each
/// rejection test changes one thing, and [`encode`] writes it (resealed, unless `seal` is off).
struct Draft {
    ehsize: u16,
    state: std::boxed::Box<ProcessState>,
    threads: Vec<ThreadState>,
    /// PT_LOADs, one per region (the PT_NOTE is made by `encode`).
    loads: Vec<Phdr>,
    /// `p_filesz` of the PT_NOTE, when a test wants it wrong.
    note_filesz: Option<u64>,
    count_field: u32,
    record_size_field: u32,
    records: Vec<RegionRecord>,
    names: Vec<u8>,
    regions_note: bool,
    fds: Vec<u8>,
    /// Raw bytes appended to the note segment.
    trailing_notes: Vec<u8>,
    data: Vec<(u64, Vec<u8>)>,
    file_len: u64,
    seal: bool,
}

const START: u64 = 0x40_0000;
/// Where the test images keep their data: past any headers they have.
const DATA_AT: u64 = 0x10000;

/// A valid image: one region of `pages` pages of data, holding the signal frame and the
/// trampoline.
fn draft(pages: u64) -> Draft {
    let len = pages * PAGE_SIZE;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut st = sample_state();
    st.resume_trampoline = START + 128;
    st.thread_trampoline = START + 256;
    let name = b"/bin/x".to_vec();
    Draft {
        ehsize: EHDR_SIZE as u16,
        state: st,
        threads: vec![sample_thread()],
        loads: vec![Phdr { p_type: PT_LOAD, flags: 7, offset: DATA_AT, vaddr: START, filesz: len, memsz: len, align: PAGE_SIZE }],
        note_filesz: None,
        count_field: 1,
        record_size_field: RECORD_SIZE as u32,
        records: vec![RegionRecord {
            start: START,
            end: START + len,
            prot: 7,
            kind: RegionKind::Normal,
            flags: RF_HAS_DATA,
            file_offset: 0,
            dev: 0,
            inode: 0,
            data_hash: region_hash(&data),
            name_off: 0,
            name_len: name.len() as u32,
            data_offset: DATA_AT,
            stored_len: len,
        }],
        names: name,
        regions_note: true,
        fds: Vec::new(),
        trailing_notes: Vec::new(),
        file_len: DATA_AT + len,
        data: vec![(DATA_AT, data)],
        seal: true,
    }
}

fn encode(d: &Draft) -> Vec<u8> {
    let phnum = d.loads.len() + 1;
    let regions_len = region::table_len(d.records.len(), d.names.len());
    let notes_len = note_size(CKPT_NOTE_NAME, ProcessState::ENCODED_LEN)
        + d.threads.len() * note_size(CKPT_NOTE_NAME, ThreadState::ENCODED_LEN)
        + if d.regions_note { note_size(CKPT_NOTE_NAME, regions_len) } else { 0 }
        + if d.fds.is_empty() { 0 } else { note_size(CKPT_NOTE_NAME, d.fds.len()) }
        + d.trailing_notes.len();
    let meta = EHDR_SIZE + PHDR_SIZE * phnum + notes_len;
    assert!((meta as u64) < DATA_AT, "test image headers too long");
    let mut st = d.state.clone();
    st.meta_len = meta as u64;
    let mut buf = vec![0u8; d.file_len as usize];
    let mut w = Writer::new(&mut buf[..meta]);
    Ehdr { phoff: 64, phnum: phnum as u16 }.write(&mut w);
    let filesz = d.note_filesz.unwrap_or(notes_len as u64);
    Phdr { p_type: PT_NOTE, offset: (EHDR_SIZE + PHDR_SIZE * phnum) as u64, filesz, align: 4, ..Default::default() }.write(&mut w);
    for ph in &d.loads {
        ph.write(&mut w);
    }
    begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_STATE, ProcessState::ENCODED_LEN);
    st.write(&mut w);
    w.align(4);
    for t in &d.threads {
        begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_THREAD, ThreadState::ENCODED_LEN);
        t.write(&mut w);
        w.align(4);
    }
    if d.regions_note {
        begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_REGIONS, regions_len);
        w.u32(d.count_field);
        w.u32(d.record_size_field);
        for r in &d.records {
            r.write(&mut w);
        }
        w.bytes(&d.names);
        w.align(4);
    }
    if !d.fds.is_empty() {
        write_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_FDS, &d.fds);
    }
    w.bytes(&d.trailing_notes);
    assert_eq!(w.finish(), Some(meta));
    for (at, bytes) in &d.data {
        buf[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
    }
    if d.seal {
        crate::seal(&mut buf[..meta]).unwrap();
    }
    buf[52..54].copy_from_slice(&d.ehsize.to_le_bytes()); // e_ehsize, for the test that breaks it
    buf
}

fn build_image(pages: u64) -> Vec<u8> {
    encode(&draft(pages))
}

/// Everything a reader checks: the headers, then every stored byte.
fn parse(buf: &[u8]) -> Result<(), ImageError> {
    let len = meta_len(&buf[..PREFIX_LEN.min(buf.len())])? as usize;
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let meta = buf.get(..len).ok_or(ImageError::Truncated)?;
    let img = Image::parse(meta, buf.len() as u64, &mut st)?;
    img.check_data(buf, &Dense)
}

/// `parse` of the draft after `change`.
fn parse_changed(change: impl FnOnce(&mut Draft)) -> Result<(), ImageError> {
    let mut d = draft(2);
    change(&mut d);
    parse(&encode(&d))
}

fn malformed(what: &'static str) -> Result<(), ImageError> {
    Err(ImageError::Malformed(what))
}

#[test]
fn an_image_path_splits_into_directory_and_name() {
    use crate::chain::{file_name, image_dir, name_start};
    assert_eq!((image_dir(b"/a/b/img"), file_name(b"/a/b/img"), name_start(b"/a/b/img")), (Some(&b"/a/b"[..]), &b"img"[..], 5));
    assert_eq!((image_dir(b"/img"), file_name(b"/img"), name_start(b"/img")), (Some(&b"/"[..]), &b"img"[..], 1));
    assert_eq!((image_dir(b"img"), file_name(b"img"), name_start(b"img")), (None, &b"img"[..], 0));
    assert_eq!((image_dir(b"d/img"), file_name(b"d/img")), (Some(&b"d"[..]), &b"img"[..]));
}

#[test]
fn headers_len_checks_where_the_headers_end() {
    let buf = build_image(2);
    let len = meta_len(&buf).unwrap() as usize;
    let file_len = buf.len() as u64;
    assert_eq!(headers_len(&buf[..PREFIX_LEN], 0, file_len), Ok(len));
    // A tree part further on: its headers must end inside the file too.
    assert_eq!(headers_len(&buf[..PREFIX_LEN], file_len - len as u64, file_len), Ok(len));
    assert_eq!(headers_len(&buf[..PREFIX_LEN], file_len - len as u64 + 1, file_len), Err(ImageError::Truncated));
    // A file that ends inside the first headers: truncated if it starts like ELF.
    assert_eq!(headers_len(&buf[..10], 0, 10), Err(ImageError::Truncated));
    assert!(headers_len(b"#!/bin/sh\n", 0, 10).is_err_and(|e| e != ImageError::Truncated));
}

#[test]
fn a_valid_image_parses() {
    let buf = build_image(2);
    parse(&buf).unwrap();
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let len = meta_len(&buf).unwrap() as usize;
    let img = Image::parse(&buf[..len], buf.len() as u64, &mut st).unwrap();
    let r = img.region(0).unwrap();
    assert_eq!((r.record.start, r.name), (0x40_0000, &b"/bin/x"[..]));
    assert_eq!(st.cwd.as_bytes(), b"/tmp/work");
    assert_eq!(img.region(1).err(), Some(ImageError::Malformed("region index out of range")));
}

#[test]
fn rejects_truncation_anywhere() {
    let buf = build_image(2);
    for cut in [0, 10, 64, 100, 200, 600, buf.len() - 4096, buf.len() - 1] {
        assert!(parse(&buf[..cut]).is_err(), "cut at {cut} accepted");
    }
    assert_eq!(parse(&buf[..buf.len() - 1]), Err(ImageError::Truncated));
}

#[test]
fn rejects_any_flipped_header_byte() {
    let buf = build_image(1);
    let len = meta_len(&buf).unwrap() as usize;
    // Every byte of the headers and notes is covered by the header checksum (or by a check
    // that runs before it).
    for i in (0..len).step_by(7) {
        let mut b = buf.clone();
        b[i] ^= 0x10;
        assert!(parse(&b).is_err(), "flipped byte {i} accepted");
    }
}

#[test]
fn rejects_a_changed_header_as_a_checksum_mismatch() {
    let mut d = draft(1);
    d.names = b"/bin/y".to_vec();
    d.seal = false;
    // The hash of the original names, over changed names.
    let mut buf = encode(&d);
    let good = build_image(1);
    let len = meta_len(&good).unwrap() as usize;
    let hash_field = good.windows(8).position(|w| w == STATE_MAGIC).unwrap() + crate::state::META_HASH_OFFSET;
    buf[hash_field..hash_field + 8].copy_from_slice(&good[hash_field..hash_field + 8]);
    assert_eq!(parse(&buf[..]), Err(ImageError::MetaChecksum));
    assert!(len > hash_field);
}

#[test]
fn rejects_flipped_data() {
    let mut buf = build_image(3);
    let n = buf.len();
    buf[n - 5000] ^= 1;
    assert_eq!(parse(&buf), Err(ImageError::DataChecksum { index: 0 }));
}

#[test]
fn rejects_too_many_regions() {
    assert_eq!(parse_changed(|d| d.count_field = MAX_REGIONS as u32 + 1), Err(ImageError::TooManyRegions));
}

#[test]
fn rejects_each_malformed_header_by_name() {
    assert_eq!(parse_changed(|d| d.note_filesz = Some(u64::MAX - 10)), malformed("note segment size overflows"));
    assert_eq!(parse_changed(|d| d.ehsize = 52), malformed("unexpected ELF header sizes"));
    assert_eq!(parse_changed(|d| d.state.cwd = crate::state::Path { len: 3, bytes: [b'x'; crate::state::PATH_MAX] }), malformed("path in state note is not terminated"));
    assert_eq!(parse_changed(|d| d.regions_note = false), malformed("no region table"));
    assert_eq!(parse_changed(|d| d.count_field = 2), malformed("region table does not match the program headers"));
    assert_eq!(parse_changed(|d| d.record_size_field = 80), malformed("region table does not match the program headers"));
    assert_eq!(parse_changed(|d| d.loads[0].vaddr += PAGE_SIZE), malformed("region table does not match the program headers"));
    assert_eq!(parse_changed(|d| d.records[0].name_off = 100), malformed("region name out of range"));
    assert_eq!(parse_changed(|d| d.trailing_notes = vec![5, 0, 0, 0, 200, 0, 0, 0, 1, 0, 0, 0]), malformed("bad note segment"));
    assert_eq!(
        parse_changed(|d| {
            d.records[0].end = d.records[0].start;
            d.loads[0].memsz = 0;
            d.loads[0].filesz = 0;
            d.records[0].stored_len = 0;
        }),
        malformed("region is empty or not page-aligned")
    );
    assert_eq!(
        parse_changed(|d| {
            let (mut r2, mut ph2) = (d.records[0], d.loads[0]);
            r2.start += PAGE_SIZE;
            r2.end += PAGE_SIZE;
            r2.flags = 0;
            r2.stored_len = 0;
            r2.data_offset = 0;
            ph2.vaddr += PAGE_SIZE;
            (ph2.filesz, ph2.offset) = (0, 0);
            d.records.push(r2);
            d.loads.push(ph2);
            d.count_field = 2;
        }),
        malformed("regions overlap or are out of order")
    );
    assert_eq!(
        parse_changed(|d| {
            d.records[0].data_offset += 8;
            d.loads[0].offset += 8;
        }),
        malformed("region data is misplaced")
    );
    assert_eq!(parse_changed(|d| d.threads[0].sigframe = START - 8), malformed("signal frame is not in any stored region"));
    assert_eq!(
        parse_changed(|d| d.threads.push(ThreadState { tid: 2, sigframe: START - 8, ..sample_thread() })),
        malformed("signal frame is not in any stored region"),
        "every thread's frame is checked"
    );
    assert_eq!(parse_changed(|d| d.threads.clear()), malformed("no thread state"));
    assert_eq!(parse_changed(|d| d.state.flags = 8), malformed("unknown process flags"));
    assert_eq!(parse_changed(|d| d.state.flags = crate::state::FLAG_LAST_CHECKPOINT), Ok(()), "a last checkpoint's flag is known");
    assert_eq!(
        parse_changed(|d| {
            d.records[0].prot = 3;
            d.loads[0].flags = 6;
        }),
        malformed("resume trampoline is not in executable memory")
    );
}

/// An image of a process `ckpt` attached to from outside names no trampolines (nothing of
/// libckpt is in its memory); any other names both. Each mix is refused by name.
#[test]
fn trampolines_match_whether_the_process_was_attached() {
    use crate::state::{FLAG_ATTACHED, FLAG_RAW_MADVISE};
    let attached = |d: &mut Draft| {
        d.state.flags = FLAG_ATTACHED;
        (d.state.resume_trampoline, d.state.thread_trampoline) = (0, 0);
    };
    assert_eq!(parse_changed(attached), Ok(()), "an attached process's image without trampolines");
    assert_eq!(parse_changed(|d| d.state.flags = FLAG_RAW_MADVISE), Ok(()), "the raw-madvise flag alone, with trampolines");
    let named = malformed("an image of an attached process names resume trampolines");
    assert_eq!(parse_changed(|d| d.state.flags = FLAG_ATTACHED), named);
    assert_eq!(parse_changed(|d| { attached(d); d.state.thread_trampoline = START + 256 }), named);
    assert_eq!(parse_changed(|d| { attached(d); d.state.resume_trampoline = START + 128 }), named);
    let none = malformed("no resume trampoline, but the image is not of an attached process");
    assert_eq!(parse_changed(|d| { attached(d); d.state.flags = 0 }), none);
    assert_eq!(parse_changed(|d| { attached(d); d.state.flags = FLAG_RAW_MADVISE }), none);
    assert_eq!(parse_changed(|d| d.state.thread_trampoline = 0), none, "one thread, still both named");
}

#[test]
fn rejects_unknown_kinds_by_name() {
    let mut d = draft(1);
    d.seal = false;
    let mut buf = encode(&d);
    let len = meta_len(&buf).unwrap() as usize;
    // The record's kind field follows start, end and prot.
    let mut start_end = START.to_le_bytes().to_vec();
    start_end.extend_from_slice(&(START + PAGE_SIZE).to_le_bytes());
    let rec_at = buf[..len].windows(16).position(|w| w == start_end).unwrap();
    buf[rec_at + 20] = 9;
    crate::seal(&mut buf[..len]).unwrap();
    assert_eq!(parse(&buf), malformed("unknown region kind"));

    let fd = |kind: FdKind, blob_offset: u64| {
        let rec = FdRecord {
            fd: 5, kind, open_flags: 0, fd_flags: 0, offset: 0, same_as: -1, mode: 0o100644, dev: 1, ino: 2, size: 3,
            mtime_sec: 0, mtime_nsec: 0, blob_offset, blob_len: 3, blob_hash: hash(b"abc"), aux: 0, uid: 0, birth: None,
        };
        let mut v = vec![0u8; FdRecord::encoded_len(4)];
        rec.write(&mut Writer::new(&mut v), b"/a/b");
        v
    };
    let mut bad_kind = fd(FdKind::File, 0);
    bad_kind[4] = 99;
    assert_eq!(parse_changed(|d| d.fds = bad_kind), malformed("unknown descriptor kind"));
    assert_eq!(parse_changed(|d| d.fds = fd(FdKind::Deleted, DATA_AT + 3)), malformed("saved file contents are misplaced"));
    // Saved contents in place, then damaged.
    let blob_at = DATA_AT + 2 * PAGE_SIZE;
    let with_blob = |content: &[u8]| {
        let content = content.to_vec();
        parse_changed(move |d| {
            d.fds = fd(FdKind::Deleted, blob_at);
            d.data.push((blob_at, content));
            d.file_len = blob_at + 3;
        })
    };
    assert_eq!(with_blob(b"abc"), Ok(()));
    assert_eq!(with_blob(b"abd"), Err(ImageError::BlobChecksum { fd: 5 }));
}

/// A note added by a later version: ignored when its type says it may be, and the image
/// refused as made by a newer ckpt when not. Notes under another owner name are never ours to
/// judge.
#[test]
fn notes_of_later_versions_are_ignored_or_refused_as_their_type_says() {
    let with_note = |name: &[u8], t: u32| {
        parse_changed(|d| {
            let mut note = vec![0u8; note_size(name, 8)];
            write_note(&mut Writer::new(&mut note), name, t, b"12345678");
            d.trailing_notes = note;
        })
    };
    assert_eq!(with_note(CKPT_NOTE_NAME, 0x434b_0000 | NT_CKPT_IGNORABLE | 0x42), Ok(()));
    assert_eq!(with_note(CKPT_NOTE_NAME, 0x434b_0042), Err(ImageError::NewerNote(0x434b_0042)));
    assert_eq!(with_note(b"LINUX", 0x434b_0042), Ok(()));
    assert!(std::format!("{}", ImageError::NewerNote(0x434b_0042)).starts_with("made by a newer ckpt"));
    // Every note type this version writes is understood.
    for t in NT_CKPT_STATE..=NT_CKPT_ORIGIN {
        assert!(note_type_understood(t));
    }
    assert!(note_type_understood(NT_CKPT_LOCKS));
}

#[test]
fn lock_records_round_trip_and_bad_ones_are_refused() {
    use crate::locks::{LockKind, LockRecord, LOCK_RECORD_SIZE, LOCK_WRITE};
    let locks = [
        LockRecord { fd: 3, kind: LockKind::Flock, flags: LOCK_WRITE, start: 0, len: 0 },
        LockRecord { fd: 4, kind: LockKind::Posix, flags: LOCK_WRITE, start: 100, len: 100 },
        LockRecord { fd: 5, kind: LockKind::Ofd, flags: 0, start: 10, len: 0 },
        LockRecord { fd: 6, kind: LockKind::Lease, flags: 0, start: 0, len: 0 },
    ];
    let mut desc = vec![0u8; locks.len() * LOCK_RECORD_SIZE];
    let mut w = Writer::new(&mut desc);
    for l in &locks {
        l.write(&mut w);
    }
    assert_eq!(w.finish(), Some(desc.len()));
    let back: Vec<LockRecord> = crate::locks::records(&desc).map(Result::unwrap).collect();
    assert_eq!(back, locks);
    assert!(!back[3].restorable() && back[1].restorable());
    assert_eq!(std::format!("{}", back[1]), "fcntl write lock on bytes 100-199");
    assert_eq!(std::format!("{}", back[2]), "OFD read lock on bytes 10 to the end");
    assert_eq!(std::format!("{}", back[0]), "flock write lock");
    let bad = |l: LockRecord| {
        let mut d = [0u8; LOCK_RECORD_SIZE];
        l.write(&mut Writer::new(&mut d));
        crate::locks::records(&d).next().unwrap().is_err()
    };
    assert!(bad(LockRecord { fd: -1, ..locks[1] }), "a negative descriptor");
    assert!(bad(LockRecord { flags: 4, ..locks[1] }), "an unknown flag");
    assert!(bad(LockRecord { start: 5, ..locks[0] }), "a flock lock on a part of the file");
    assert!(bad(LockRecord { start: u64::MAX - 1, len: 10, ..locks[1] }), "a range past the largest offset");
}

#[test]
fn rejects_a_state_note_of_the_wrong_size() {
    let mut buf = build_image(1);
    // The state note's header comes right after the two program headers: namesz, descsz, type.
    let descsz_at = EHDR_SIZE + 2 * PHDR_SIZE + 4;
    buf[descsz_at..descsz_at + 4].copy_from_slice(&(ProcessState::ENCODED_LEN as u32 - 8).to_le_bytes());
    assert_eq!(parse(&buf), malformed("state note has the wrong size"));
}

#[test]
fn fd_records_are_updated_in_place() {
    let rec = FdRecord {
        fd: 7, kind: FdKind::Deleted, open_flags: 2, fd_flags: 1, offset: 9, same_as: -1, mode: 0o100600, dev: 1, ino: 2,
        size: 10, mtime_sec: 3, mtime_nsec: 4, blob_offset: 0, blob_len: 0, blob_hash: 0, aux: 5, uid: 1000, birth: Some((6, 7)),
    };
    let mut desc = vec![0u8; FdRecord::encoded_len(5) * 2];
    let mut w = Writer::new(&mut desc);
    rec.write(&mut w, b"/tmp1");
    FdRecord { fd: 8, kind: FdKind::File, ..rec }.write(&mut w, b"/tmp2");
    crate::fds::update_records(&mut desc, |r, path| {
        if r.kind == FdKind::Deleted {
            assert_eq!(path, b"/tmp1");
            (r.blob_offset, r.blob_len, r.blob_hash) = (4096, 10, 99);
        }
        Ok::<(), ()>(())
    })
    .unwrap();
    let back: Vec<_> = crate::fds::records(&desc).map(Result::unwrap).collect();
    assert_eq!(back[0].0, FdRecord { blob_offset: 4096, blob_len: 10, blob_hash: 99, ..rec });
    assert_eq!((back[1].0.fd, back[1].1), (8, &b"/tmp2"[..]));
}

#[test]
fn a_file_is_the_same_only_with_the_birth_time_it_had() {
    let rec = FdRecord {
        fd: 3, kind: FdKind::File, open_flags: 0, fd_flags: 0, offset: 0, same_as: -1, mode: 0o100644, dev: 1, ino: 2,
        size: 10, mtime_sec: 3, mtime_nsec: 4, blob_offset: 0, blob_len: 0, blob_hash: 0, aux: 0, uid: 1000, birth: Some((6, 7)),
    };
    assert!(rec.is_same_file(1, 2, Some((6, 7))));
    assert!(!rec.is_same_file(1, 2, Some((6, 8))), "a new file with the old one's inode number");
    assert!(!rec.is_same_file(1, 3, Some((6, 7))));
    assert!(rec.is_same_file(1, 2, None), "a file system without birth times: device and inode it is");
    assert!(FdRecord { birth: None, ..rec }.is_same_file(1, 2, Some((9, 9))));
    // Round trip, and a record with flags this version does not know, or a bad birth time.
    let mut v = vec![0u8; FdRecord::encoded_len(2)];
    rec.write(&mut Writer::new(&mut v), b"/a");
    assert_eq!(crate::fds::records(&v).next().unwrap().unwrap(), (rec, &b"/a"[..]));
    let flags_at = crate::fds::FD_RECORD_SIZE - 4;
    let mut bad = v.clone();
    bad[flags_at] = 3;
    assert_eq!(crate::fds::records(&bad).next().unwrap().map(|(r, _)| r), Err(ImageError::Malformed("bad descriptor record")));
    FdRecord { birth: Some((6, 1_000_000_000)), ..rec }.write(&mut Writer::new(&mut bad), b"/a");
    assert_eq!(crate::fds::records(&bad).next().unwrap().map(|(r, _)| r), Err(ImageError::Malformed("bad descriptor record")));
}

#[test]
fn compressed_streams_are_checked_chunk_by_chunk() {
    use crate::compress::{check_stream, ChunkHeader, CHUNK};
    let mut stream = Vec::new();
    stream.extend_from_slice(&ChunkHeader::encode(CHUNK, 0)); // a zero chunk
    stream.extend_from_slice(&ChunkHeader::encode(4096, 4096)); // a raw chunk
    stream.extend_from_slice(&[1u8; 4096]);
    let size = (CHUNK + 4096) as u64;
    assert_eq!(check_stream(&stream, size), Ok(4096));
    assert_eq!(check_stream(&stream, size + 4096), Err(ImageError::Truncated));
    assert_eq!(check_stream(&stream[..stream.len() - 1], size), Err(ImageError::Truncated));
    let mut trailing = stream.clone();
    trailing.push(0);
    assert_eq!(check_stream(&trailing, size), malformed("compressed region has trailing bytes").map(|_| 0));
    let mut too_big = stream.clone();
    too_big[..8].copy_from_slice(&ChunkHeader::encode(CHUNK + 1, 0));
    assert_eq!(check_stream(&too_big, size), malformed("bad compressed chunk header").map(|_| 0));
    let mut longer_stored = stream.clone();
    longer_stored[..8].copy_from_slice(&ChunkHeader::encode(4096, 4097));
    assert_eq!(check_stream(&longer_stored, size), malformed("bad compressed chunk header").map(|_| 0));
}

#[test]
fn prstatus_round_trips() {
    let mut gregs = [0u64; 23];
    for (i, g) in gregs.iter_mut().enumerate() {
        *g = 0x1000 + i as u64;
    }
    let ctx = frame::SigContext { gregs, fpstate: 0, sigmask: 0x4000 };
    let mut buf = vec![0u8; frame::PRSTATUS_SIZE];
    let mut w = Writer::new(&mut buf);
    ctx.write_prstatus(&mut w, 12, 77, 66, 0xf5, 0x65);
    assert_eq!(w.finish(), Some(frame::PRSTATUS_SIZE));
    let pr = frame::Prstatus::read(&buf).unwrap();
    assert_eq!((pr.signo, pr.pid, pr.ppid, pr.sighold), (12, 77, 66, 0x4000));
    assert_eq!(pr.reg("rip"), Some(0x1000 + frame::greg::RIP as u64));
    assert_eq!(pr.reg("rsp"), Some(0x1000 + frame::greg::RSP as u64));
    assert_eq!(pr.reg("r8"), Some(0x1000));
    assert_eq!((pr.reg("fs_base"), pr.reg("gs_base")), (Some(0xf5), Some(0x65)));
}

#[test]
fn region_hash_ignores_how_zeros_are_stored() {
    let mut a = vec![0u8; 3 * 4096];
    a[4096 + 5] = 1;
    let mut h = RegionHasher::new();
    h.add_nonzero(1, &a[4096..8192]);
    assert_eq!(region_hash(&a), h.digest());
    let mut b = a.clone();
    b[10000] = 2;
    assert_ne!(region_hash(&a), region_hash(&b));
    let mut moved = vec![0u8; 3 * 4096];
    moved[5] = 1; // the same page contents at another index
    assert_ne!(region_hash(&a), region_hash(&moved));
    assert!(is_zero_page(&[0u8; 4096]) && !is_zero_page(&a[4096..8192]));
}

#[test]
fn xstate_software_bytes() {
    let mut fx = [0u8; 512];
    assert_eq!(frame::xstate_info(&fx), None);
    fx[464..468].copy_from_slice(&frame::FP_XSTATE_MAGIC1.to_le_bytes());
    fx[472..480].copy_from_slice(&0xe7u64.to_le_bytes());
    fx[480..484].copy_from_slice(&2696u32.to_le_bytes());
    assert_eq!(frame::xstate_info(&fx), Some(frame::XstateInfo { xfeatures: 0xe7, xstate_size: 2696 }));
}

/// The `NT_X86_XSTATE` note is as long as gdb computes from XCR0, with each component where
/// gdb looks for it, whatever the CPU's own layout (here AMD's, AVX-512 right after AVX).
#[test]
fn xstate_notes_have_the_size_and_layout_debuggers_expect() {
    assert_eq!(frame::core_xstate_len(0x3), 576);
    assert_eq!(frame::core_xstate_len(0x7), 832);
    assert_eq!(frame::core_xstate_len(0x1f), 1088);
    assert_eq!(frame::core_xstate_len(0xe7), 2688);
    assert_eq!(frame::core_xstate_len(0x2e7), 2696);
    assert_eq!(frame::core_xstate_len(0x602e7), 2696, "components gdb does not know (AMX) add nothing");
    let mut layout: frame::XsaveLayout = [(0, 0); 10];
    layout[2] = (576, 256);
    layout[5] = (832, 64);
    layout[6] = (896, 512);
    layout[7] = (1408, 1024);
    let mut xsave = vec![0u8; 2432];
    for (i, b) in xsave.iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    let mut note = vec![0u8; 4096];
    let mut w = Writer::new(&mut note);
    frame::write_xstate(&mut w, &xsave, 0xe7, &layout);
    let len = w.finish().unwrap();
    assert_eq!(len, 2688);
    assert_eq!(note[..464], xsave[..464]);
    assert_eq!(note[464..472], 0xe7u64.to_le_bytes(), "XCR0 where debuggers read it");
    assert_eq!(note[512..576], xsave[512..576], "the XSAVE header");
    assert_eq!(note[576..832], xsave[576..832], "AVX in place");
    assert!(note[832..1088].iter().all(|&b| b == 0), "no MPX here");
    assert_eq!(note[1088..1152], xsave[832..896], "opmask moved");
    assert_eq!(note[1152..1664], xsave[896..1408], "zmm upper halves moved");
    assert_eq!(note[1664..2688], xsave[1408..2432], "zmm16-31 moved");
}

#[test]
fn socket_timerfd_and_watch_records_round_trip_and_are_checked() {
    use crate::inotify::WatchRecord;
    use crate::sockets::{self, SocketRecord};
    use crate::timerfd::TimerFdRecord;
    let mut sock = SocketRecord { fd: 4, family: 2, sock_type: 1, state: sockets::LISTENING | sockets::BOUND, backlog: 128, ino: 9, ..SocketRecord::ZERO };
    sock.addr[..8].copy_from_slice(&[2, 0, 0x1f, 0x40, 127, 0, 0, 1]);
    sock.addr_len = 16;
    let mut v = vec![0u8; sockets::SOCKET_RECORD_SIZE];
    sock.write(&mut Writer::new(&mut v));
    let back: Vec<_> = sockets::records(&v).collect();
    assert_eq!(back, vec![Ok(sock)]);
    assert_eq!(back[0].unwrap().addr(), &sock.addr[..16]);
    v[12] = 0x80; // an unknown state bit
    assert_eq!(sockets::records(&v).next(), Some(Err(ImageError::Malformed("bad socket record"))));
    // Addresses shorter than their family field, of another family, or missing where the
    // state needs one.
    let bad_addr = Some(Err(ImageError::Malformed("bad socket address")));
    for f in [
        |s: &mut SocketRecord| s.addr_len = 1,
        |s: &mut SocketRecord| s.addr_len = 0,
        |s: &mut SocketRecord| s.addr[0] = 1,
        |s: &mut SocketRecord| (s.state, s.peer_len) = (sockets::CONNECTED, 1),
        |s: &mut SocketRecord| (s.state, s.peer_len) = (sockets::CONNECTED, 0),
        |s: &mut SocketRecord| s.addr_len = 129,
    ] {
        let mut bad = sock;
        f(&mut bad);
        bad.write(&mut Writer::new(&mut v));
        assert_eq!(sockets::records(&v).next(), bad_addr, "{bad:?}");
    }
    let unbound = SocketRecord { state: 0, addr_len: 0, ..sock };
    unbound.write(&mut Writer::new(&mut v));
    assert_eq!(sockets::records(&v).next(), Some(Ok(unbound)));

    let mut blob = Vec::new();
    for m in [&b"d1"[..], b"", b"longer"] {
        blob.extend(sockets::frame_header(m.len() as u32));
        blob.extend(m);
    }
    let frames: Vec<_> = sockets::frames(&blob).collect();
    assert_eq!(frames, vec![Ok(&b"d1"[..]), Ok(&b""[..]), Ok(&b"longer"[..])]);
    assert!(sockets::frames(&blob[..blob.len() - 1]).last().unwrap().is_err(), "a frame cut short");

    let t = TimerFdRecord { fd: 6, clock: 1, flags: 1, ticks: 2, value_sec: 5, value_nsec: 6, interval_sec: 0, interval_nsec: 30_000_000 };
    let mut v = vec![0u8; crate::timerfd::TIMERFD_RECORD_SIZE];
    t.write(&mut Writer::new(&mut v));
    assert_eq!(crate::timerfd::records(&v).collect::<Vec<_>>(), vec![Ok(t)]);
    TimerFdRecord { value_nsec: 1_000_000_000, ..t }.write(&mut Writer::new(&mut v));
    assert_eq!(crate::timerfd::records(&v).next(), Some(Err(ImageError::Malformed("bad timerfd record"))));

    let w = WatchRecord { fd: 7, wd: 1, mask: 0x100, ino: 3, dev: 4 };
    let mut v = vec![0u8; 64];
    let mut wr = Writer::new(&mut v);
    w.write(&mut wr, b"/tmp/dir");
    let len = wr.finish().unwrap();
    assert_eq!(crate::inotify::records(&v[..len]).collect::<Vec<_>>(), vec![Ok((w, &b"/tmp/dir"[..]))]);
    let mut wr = Writer::new(&mut v);
    WatchRecord { wd: 0, ..w }.write(&mut wr, b"/tmp/dir");
    assert_eq!(crate::inotify::records(&v[..len]).next(), Some(Err(ImageError::Malformed("bad inotify watch record"))));
}

/// An image moved to `base` in a bigger file, with `rebase`, reads and checks out there: its
/// data offsets count from the start of the file.
#[test]
fn a_rebased_image_reads_at_its_new_place() {
    let one = build_image(2);
    let base = 3 * PAGE_SIZE as usize * 16;
    let mut file = vec![0u8; base];
    file.extend_from_slice(&one);
    let len = meta_len(&one).unwrap() as usize;
    crate::tree::rebase(&mut file[base..base + len], base as u64).unwrap();
    crate::seal(&mut file[base..base + len]).unwrap();
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let img = Image::parse(&file[base..base + len], file.len() as u64, &mut st).unwrap();
    assert_eq!(img.region(0).unwrap().data_offset, DATA_AT + base as u64);
    img.check_data(&file, &Dense).unwrap();
    // Not rebased, the same headers point at the wrong bytes.
    let mut stale = file.clone();
    stale[base..base + len].copy_from_slice(&one[..len]);
    let img = Image::parse(&stale[base..base + len], stale.len() as u64, &mut st).unwrap();
    assert!(img.check_data(&stale, &Dense).is_err());
}

fn tree_note(recs: &[crate::tree::TreeRecord]) -> Vec<u8> {
    let mut buf = vec![0u8; crate::tree::note_len(recs.len())];
    let mut w = Writer::new(&mut buf);
    crate::tree::write_header(&mut w, recs.len());
    for r in recs {
        r.write(&mut w);
    }
    buf
}

#[test]
fn tree_tables_are_checked_as_a_whole() {
    use crate::tree::{records, TreeRecord, TREE_ZOMBIE};
    let root = TreeRecord { pid: 10, ppid: 1, pgid: 10, sid: 5, base: 0, len: 8192, ..Default::default() };
    let child = TreeRecord { pid: 11, ppid: 10, pgid: 10, sid: 5, base: 8192, len: 8192, meta_hash: 7, ..Default::default() };
    let zombie = TreeRecord { pid: 12, ppid: 10, state: TREE_ZOMBIE, wait_status: 5 << 8, ..Default::default() };
    let all = |recs: &[TreeRecord], file_len: u64| records(&tree_note(recs), file_len).and_then(|it| it.collect::<Result<Vec<_>, _>>());
    assert_eq!(all(&[root, child, zombie], 16384).unwrap(), vec![root, child, zombie]);
    let bad = |recs: &[TreeRecord], file_len: u64| all(recs, file_len).unwrap_err();
    assert_eq!(bad(&[child, root], 16384), ImageError::Malformed("the process tree does not start with its root"));
    assert_eq!(bad(&[root, TreeRecord { ppid: 99, ..child }], 16384), ImageError::Malformed("a process comes before its parent in the process tree"));
    assert_eq!(bad(&[root, child, TreeRecord { pid: 11, ..zombie }], 16384), ImageError::Malformed("a PID appears twice in the process tree"));
    assert_eq!(bad(&[root, child], 12288), ImageError::Truncated);
    let twin = TreeRecord { pid: 13, base: 12288, ..child };
    assert_eq!(bad(&[root, child, twin], 65536), ImageError::Malformed("process images overlap in the tree image"));
    assert_eq!(bad(&[root, TreeRecord { ppid: 12, pid: 14, ..child }, zombie], 16384), ImageError::Malformed("a process comes before its parent in the process tree"));
    assert_eq!(bad(&[root, TreeRecord { base: 100, ..child }], 16384), ImageError::Malformed("bad process tree record"));
}

/// A part whose region holds the same bytes as the root's points at the root's copy after
/// `rebase_sharing`, and its own copy is reported dropped; it reads and checks out there.
#[test]
fn a_shared_region_points_at_the_roots_copy() {
    let root = build_image(2);
    let base = 32 * PAGE_SIZE as usize;
    let mut file = root.clone();
    file.resize(base, 0);
    let part = build_image(2);
    file.extend_from_slice(&part);
    let len = meta_len(&part).unwrap() as usize;
    let mut dropped = Vec::new();
    crate::tree::rebase_sharing(&mut file[base..base + len], base as u64, |r| (r.start == START).then_some(DATA_AT), |off, n| dropped.push((off, n))).unwrap();
    crate::seal(&mut file[base..base + len]).unwrap();
    assert_eq!(dropped, vec![(DATA_AT, 2 * PAGE_SIZE)]);
    // The part's own copy of the bytes is gone; they are read from the root's.
    file[base + DATA_AT as usize..base + DATA_AT as usize + 2 * PAGE_SIZE as usize].fill(0);
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let img = Image::parse(&file[base..base + len], file.len() as u64, &mut st).unwrap();
    assert_eq!(img.region(0).unwrap().data_offset, DATA_AT);
    img.check_data(&file, &Dense).unwrap();
}

/// An `NT_CKPT_SHARED` note, whole, as a trailing note.
fn shared_note(runs: &[crate::shared::SharedRun]) -> Vec<u8> {
    let mut desc = vec![0u8; crate::shared::note_len(runs.len())];
    let mut w = Writer::new(&mut desc);
    crate::shared::write_header(&mut w, runs.len());
    for r in runs {
        r.write(&mut w);
    }
    let mut note = vec![0u8; note_size(CKPT_NOTE_NAME, desc.len())];
    write_note(&mut Writer::new(&mut note), CKPT_NOTE_NAME, NT_CKPT_SHARED, &desc);
    note
}

/// A part of four pages whose pages 1 and 2 are the root's (holes in its own copy), and the
/// runs its note holds.
fn sharing_part(runs: &[crate::shared::SharedRun], flag: bool) -> Draft {
    let mut d = draft(4);
    let page = PAGE_SIZE as usize;
    d.data[0].1[page..3 * page].fill(0);
    d.records[0].data_hash = region_hash(&d.data[0].1);
    if flag {
        d.records[0].flags |= crate::region::RF_SHARES_PAGES;
    }
    d.trailing_notes = shared_note(runs);
    d
}

#[test]
fn shared_page_runs_are_checked_against_their_part() {
    use crate::shared::SharedRun;
    let run = SharedRun { region: 0, first_page: 1, pages: 2, offset: DATA_AT, source: 0 };
    let runs_of = |buf: &[u8]| {
        let len = meta_len(buf).unwrap() as usize;
        let mut st = std::boxed::Box::new(ProcessState::ZERO);
        let img = Image::parse(&buf[..len], buf.len() as u64, &mut st).unwrap();
        img.check_data(buf, &Dense).unwrap();
        img.shared_runs().collect::<Result<Vec<_>, _>>().unwrap()
    };
    assert_eq!(runs_of(&encode(&sharing_part(&[run], true))), vec![run]);
    let bad = |runs: &[SharedRun], flag: bool| parse(&encode(&sharing_part(runs, flag))).unwrap_err();
    assert_eq!(bad(&[run], false), ImageError::Malformed("a shared page run names a region that cannot share pages"));
    assert_eq!(bad(&[SharedRun { region: 1, ..run }], true), ImageError::Malformed("region index out of range"));
    assert_eq!(bad(&[SharedRun { first_page: 3, ..run }], true), ImageError::Malformed("a shared page run goes past the end of its region"));
    assert_eq!(bad(&[run, SharedRun { first_page: 2, pages: 1, ..run }], true), ImageError::Malformed("shared page runs overlap or are out of order"));
    assert_eq!(bad(&[SharedRun { pages: 0, ..run }], true), ImageError::Malformed("bad shared page run"));
    assert_eq!(bad(&[SharedRun { offset: DATA_AT + 1, ..run }], true), ImageError::Malformed("bad shared page run"));
    assert_eq!(bad(&[SharedRun { offset: DATA_AT + 3 * PAGE_SIZE, ..run }], true), ImageError::Truncated);
    // A table whose header lies about its records is refused whole.
    let mut d = sharing_part(&[run], true);
    let at = d.trailing_notes.len() - crate::shared::note_len(1) + 4;
    d.trailing_notes[at..at + 4].copy_from_slice(&16u32.to_le_bytes());
    assert_eq!(parse(&encode(&d)).unwrap_err(), ImageError::Malformed("bad shared page table"));
}

/// A run must point at the root's stored copy of the same addresses, at the matching place.
#[test]
fn shared_page_runs_point_at_the_roots_copy_of_the_same_pages() {
    use crate::shared::{check_against_root, SharedRun};
    let root_buf = build_image(4);
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let root = Image::parse(&root_buf[..meta_len(&root_buf).unwrap() as usize], root_buf.len() as u64, &mut st).unwrap();
    let check = |run: SharedRun| {
        let part = encode(&sharing_part(&[run], true));
        let mut st = std::boxed::Box::new(ProcessState::ZERO);
        let img = Image::parse(&part[..meta_len(&part).unwrap() as usize], part.len() as u64, &mut st).unwrap();
        check_against_root(&img, &root)
    };
    let right = SharedRun { region: 0, first_page: 1, pages: 2, offset: DATA_AT + PAGE_SIZE, source: 0 };
    assert_eq!(check(right), Ok(()));
    let wrong = Err(ImageError::Malformed("a shared page run does not point at the root's copy of the same pages"));
    assert_eq!(check(SharedRun { offset: DATA_AT, ..right }), wrong);
    assert_eq!(check(SharedRun { first_page: 2, ..right }), wrong);
}

/// `NT_CKPT_FILEMAPS` and the regions mapped from their files must match one to one.
#[test]
fn file_mapping_records_match_their_regions() {
    use crate::filemaps::FileMap;
    let note = |maps: &[FileMap], record_size: u32| {
        let mut desc = vec![0u8; crate::filemaps::note_len(maps.len())];
        let mut w = Writer::new(&mut desc);
        w.u32(maps.len() as u32);
        w.u32(record_size);
        for m in maps {
            m.write(&mut w);
        }
        let mut n = vec![0u8; note_size(CKPT_NOTE_NAME, desc.len())];
        write_note(&mut Writer::new(&mut n), CKPT_NOTE_NAME, NT_CKPT_FILEMAPS, &desc);
        n
    };
    let m = FileMap { region: 0, size: 4096, mtime_sec: 1, mtime_nsec: 2, content_hash: 3, owner: crate::fileid::Owner { uid: Some(1000), birth: Some((5, 6)) } };
    let rec = crate::filemaps::FILEMAP_RECORD_SIZE as u32;
    assert_eq!(
        parse_changed(|d| d.trailing_notes = note(&[m], rec)),
        malformed("a file mapping record names a region that is not mapped from its file")
    );
    assert_eq!(parse_changed(|d| d.trailing_notes = note(&[m], rec + 8)), malformed("bad file mapping table"));
    assert_eq!(
        parse_changed(|d| d.records[0].flags |= crate::region::RF_MAP_PRIVATE_FILE),
        malformed("a region mapped from its file has no record")
    );
    assert_eq!(parse_changed(|d| d.trailing_notes = note(&[FileMap { mtime_nsec: 2_000_000_000, ..m }], rec)), malformed("bad file mapping record"));
    // A shared mapping of a file has its record too.
    assert_eq!(
        parse_changed(|d| d.records[0].flags |= crate::region::RF_FROM_FILE | crate::region::RF_SHARED),
        malformed("a region mapped from its file has no record")
    );
}

#[test]
fn a_file_id_keeps_its_owner_and_birth_time_or_that_they_were_unknown() {
    use crate::fileid::{FileId, Owner, FILE_ID_SIZE};
    for id in [FileId::UNKNOWN, FileId { dev: 8 << 32 | 1, ino: 12, owner: Owner { uid: Some(0), birth: None } }, FileId { dev: 1, ino: 2, owner: Owner { uid: Some(1000), birth: Some((-1, 999_999_999)) } }] {
        let mut buf = [0u8; FILE_ID_SIZE];
        id.write(&mut Writer::new(&mut buf));
        assert_eq!(FileId::read(&mut crate::bytes::Reader::new(&buf)), Ok(id));
    }
    let id = FileId { dev: 1, ino: 2, owner: Owner { uid: Some(1000), birth: Some((7, 8)) } };
    assert!(id.is_same(1, 2, Some((7, 8))) && id.is_same(1, 2, None));
    assert!(!id.is_same(1, 2, Some((7, 9))), "the old inode number, born later");
    assert!(!id.is_same(1, 3, Some((7, 8))));
    let mut buf = [0u8; FILE_ID_SIZE];
    id.write(&mut Writer::new(&mut buf));
    buf[20] |= 4;
    assert_eq!(FileId::read(&mut crate::bytes::Reader::new(&buf)), Err(ImageError::Malformed("bad file owner record")));
}

/// An `NT_CKPT_CHAIN` note with identity `id` and `bases`.
fn chain_note(id: u64, bases: &[crate::chain::Base]) -> Vec<u8> {
    let mut desc = vec![0u8; crate::chain::note_len(bases.len())];
    let mut w = Writer::new(&mut desc);
    crate::chain::write_header(&mut w, id, bases.len());
    for b in bases {
        b.write(&mut w);
    }
    let mut note = vec![0u8; note_size(CKPT_NOTE_NAME, desc.len())];
    write_note(&mut Writer::new(&mut note), CKPT_NOTE_NAME, crate::NT_CKPT_CHAIN, &desc);
    note
}

fn base_named(name: &[u8], id: u64) -> crate::chain::Base {
    let mut b = crate::chain::Base { id, meta_hash: 1, file_len: 4096, name_len: name.len() as u32, ..crate::chain::Base::EMPTY };
    b.name[..name.len()].copy_from_slice(name);
    b
}

/// Runs of an incremental image name a base it lists; the list itself is checked.
#[test]
fn base_image_runs_and_records_are_checked() {
    use crate::shared::SharedRun;
    let run = SharedRun { region: 0, first_page: 1, pages: 2, offset: 8 * PAGE_SIZE, source: 1 };
    let with = |runs: &[SharedRun], bases: &[crate::chain::Base]| {
        let mut d = sharing_part(runs, true);
        d.trailing_notes.extend(chain_note(7, bases));
        parse(&encode(&d))
    };
    // A base's offset may lie past this file's end: it is in the base.
    assert!(with(&[run], &[base_named(b"myckpt.base-1", 9)]).is_ok());
    assert_eq!(with(&[run], &[]).unwrap_err(), ImageError::Malformed("a page run names a base image the image does not list"));
    assert_eq!(with(&[SharedRun { source: 2, ..run }], &[base_named(b"a", 9)]).unwrap_err(), ImageError::Malformed("a page run names a base image the image does not list"));
    assert_eq!(with(&[run], &[base_named(b"../x", 9)]).unwrap_err(), ImageError::Malformed("bad base image record"));
    assert_eq!(with(&[run], &[base_named(b"a", 7)]).unwrap_err(), ImageError::Malformed("an image lists itself as its base"));
    assert_eq!(with(&[run], &[base_named(b"a", 9), base_named(b"a", 10)]).unwrap_err(), ImageError::Malformed("an image lists one base image twice"));
    let mut name = [0u8; 256];
    let n = crate::chain::base_name(b"myckpt", 0x0123_4567_89ab_cdef, &mut name).unwrap();
    assert_eq!(&name[..n], b"myckpt.base-0123456789abcdef");
    assert_eq!(crate::chain::parse_base_name(b"myckpt", &name[..n]), Some(0x0123_4567_89ab_cdef));
    assert_eq!(crate::chain::parse_base_name(b"other", &name[..n]), None);
}

/// A run must point at the base's own stored bytes of the same addresses.
#[test]
fn base_image_runs_point_at_the_bases_own_copy() {
    use crate::chain::check_against_base;
    use crate::shared::SharedRun;
    let base_buf = build_image(4);
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let base = Image::parse(&base_buf[..meta_len(&base_buf).unwrap() as usize], base_buf.len() as u64, &mut st).unwrap();
    let check = |run: SharedRun| {
        let mut d = sharing_part(&[run], true);
        d.trailing_notes.extend(chain_note(7, &[base_named(b"b", 9)]));
        let buf = encode(&d);
        let mut st = std::boxed::Box::new(ProcessState::ZERO);
        let img = Image::parse(&buf[..meta_len(&buf).unwrap() as usize], buf.len() as u64, &mut st).unwrap();
        check_against_base(&img, 1, &base)
    };
    let right = SharedRun { region: 0, first_page: 1, pages: 2, offset: DATA_AT + PAGE_SIZE, source: 1 };
    assert_eq!(check(right), Ok(()));
    let wrong = Err(ImageError::Malformed("a page run does not point at its base image's copy of the same pages"));
    assert_eq!(check(SharedRun { offset: DATA_AT, ..right }), wrong);
    assert_eq!(check(SharedRun { first_page: 2, ..right }), wrong);
}

/// Chunk digests computed apart, in two halves, put together give the same verdicts as checking
/// each region page by page.
#[test]
fn chunk_digests_in_parts_check_like_the_whole() {
    let page = PAGE_SIZE as usize;
    // A region of 600 pages: three chunks, the middle one all zeros.
    let mut d = draft(600);
    for (i, p) in d.data[0].1.chunks_mut(page).enumerate() {
        if (256..512).contains(&i) {
            p.fill(0);
        }
    }
    d.records[0].data_hash = region_hash(&d.data[0].1);
    let buf = encode(&d);
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let img = Image::parse(&buf[..meta_len(&buf).unwrap() as usize], buf.len() as u64, &mut st).unwrap();
    img.check_data(&buf, &Dense).unwrap();
    let n = img.plain_chunks(|_| false).unwrap();
    assert_eq!(n, 3);
    let mut out = vec![0u64; 2 * n as usize];
    img.chunk_digests(&buf, &Dense, |_| false, 0, 1, &mut out).unwrap();
    img.chunk_digests(&buf, &Dense, |_| false, 1, n, &mut out).unwrap();
    assert_eq!(out[2], 0, "the zero chunk adds nothing");
    img.check_data_with(&buf, &Dense, |_| false, &out).unwrap();
    out[1] ^= 1;
    assert_eq!(img.check_data_with(&buf, &Dense, |_| false, &out), Err(ImageError::DataChecksum { index: 0 }));
}

#[test]
fn origin_round_trips_and_refuses_bad_notes() {
    use crate::origin::{self, FileId, Origin};
    let args = b"python3\0train.py\0--steps\x0010\0";
    let mut o = Origin::new(42, b"/usr/bin/python3.11", b"/home/u/run", args, 4);
    o.files[0] = Some(FileId { arg: 1, how: origin::SAME_CONTENTS, size: 2301, value: 7 });
    let mut buf = vec![0u8; origin::MAX_LEN];
    let n = o.write(&mut buf).unwrap();
    assert_eq!(n, o.encoded_len());
    let back = Origin::parse(&buf[..n]).unwrap();
    assert_eq!(back, o);
    let got: Vec<&[u8]> = back.args().collect();
    assert_eq!(got, [&b"python3"[..], b"train.py", b"--steps", b"10"]);
    // Hex for the environment, both ways.
    let mut hex = vec![0u8; origin::MAX_HEX];
    let h = origin::to_hex(&buf[..n], &mut hex).unwrap().to_vec();
    let mut raw = vec![0u8; origin::MAX_LEN];
    assert_eq!(origin::from_hex(&h, &mut raw).unwrap(), &buf[..n]);
    assert!(origin::from_hex(b"0g", &mut raw).is_none());
    assert!(origin::from_hex(b"abc", &mut raw).is_none());
    // Arguments that do not hash to their hash, a file naming no argument, trailing bytes.
    let mut bad = buf[..n].to_vec();
    bad[40 + 19 + 11] ^= 1;
    assert!(Origin::parse(&bad).is_err());
    let mut bad = buf[..n].to_vec();
    let rec = n - 24;
    bad[rec..rec + 4].copy_from_slice(&9u32.to_le_bytes());
    assert!(Origin::parse(&bad).is_err());
    let mut bad = buf[..n].to_vec();
    bad.extend_from_slice(&[0; 8]);
    assert!(Origin::parse(&bad).is_err());
    // Arguments too long to keep are kept as their hash.
    let long = vec![b'x'; origin::MAX_ARGS + 1];
    let mut long = long;
    long.push(0);
    let o = Origin::new(1, b"/bin/p", b"/", &long, 1);
    assert!(!o.has_args());
    let n = o.write(&mut buf).unwrap();
    let back = Origin::parse(&buf[..n]).unwrap();
    assert_eq!(back.args_hash, origin::args_hash(&long));
    assert_eq!(back.args().count(), 0);
}

#[test]
fn report_page_reads_back() {
    use crate::report::{self, Outcome, Report};
    let mut page = vec![0u8; report::REPORT_LEN];
    assert!(Report::read(&page).is_none());
    let mut set = |i: usize, v: u32| page[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    set(report::MAGIC, report::MAGIC_VALUE);
    set(report::STARTED, 3);
    set(report::DONE, 3);
    set(report::OUTCOME, Outcome::LastFailedGoesOn as u32);
    set(report::MESSAGE_LEN, 5);
    page[report::MESSAGE_AT..report::MESSAGE_AT + 5].copy_from_slice(b"full!");
    let r = Report::read(&page).unwrap();
    assert_eq!((r.started, r.done, r.outcome, r.message), (3, 3, Some(Outcome::LastFailedGoesOn), &b"full!"[..]));
    assert!(!Outcome::LastFailedGoesOn.written() && Outcome::LastWritten.written());
}

/// The self-contained copy of an incremental image holds the pages it took from its base, names
/// no base, keeps its identity, moves its data and saved bytes with its shorter headers, and
/// checks out on its own; an image without bases is copied as it is.
#[test]
fn a_standalone_copy_takes_its_pages_in_from_the_base() {
    use crate::shared::SharedRun;
    use crate::standalone::Standalone;
    let page = PAGE_SIZE as usize;
    let headers = |buf: &[u8]| buf[..meta_len(buf).unwrap() as usize].to_vec();
    let mut base_draft = draft(4);
    base_draft.trailing_notes = chain_note(9, &[]);
    let base_buf = encode(&base_draft);
    let base_meta = headers(&base_buf);
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let base = Image::parse(&base_meta, base_buf.len() as u64, &mut st).unwrap();
    let record = crate::chain::Base { meta_hash: base.meta_hash(), file_len: base_buf.len() as u64, ..base_named(b"b", 9) };

    // Pages 1 and 2 are the base's; a deleted file's saved bytes follow the region's.
    let run = SharedRun { region: 0, first_page: 1, pages: 2, offset: DATA_AT + PAGE_SIZE, source: 1 };
    let mut d = sharing_part(&[run], true);
    d.trailing_notes.extend(chain_note(7, &[record]));
    let blob_at = DATA_AT + 4 * PAGE_SIZE;
    let saved = b"the contents of a deleted file".to_vec();
    let fd = FdRecord {
        fd: 3, kind: FdKind::Deleted, open_flags: 2, fd_flags: 0, offset: 0, same_as: -1, mode: 0o100600, dev: 1, ino: 2, size: saved.len() as u64,
        mtime_sec: 0, mtime_nsec: 0, blob_offset: blob_at, blob_len: saved.len() as u64, blob_hash: hash(&saved), aux: 0, uid: 0, birth: None,
    };
    d.fds = vec![0u8; FdRecord::encoded_len(4)];
    fd.write(&mut Writer::new(&mut d.fds), b"/x/y");
    d.file_len = blob_at + PAGE_SIZE;
    d.data.push((blob_at, saved.clone()));
    // A note of another owner (copied as it is) makes the headers end just past a page, so
    // that the copy's shorter ones end a page earlier.
    let unpadded = meta_len(&encode(&d)).unwrap() as usize;
    let target = unpadded.next_multiple_of(page) + 64;
    let mut pad = vec![0u8; target - unpadded];
    write_note(&mut Writer::new(&mut pad), b"PAD", 1, &vec![7u8; target - unpadded - note_size(b"PAD", 0)]);
    d.trailing_notes.extend(pad);
    let buf = encode(&d);
    parse(&buf).unwrap();
    let meta = headers(&buf);
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let img = Image::parse(&meta, buf.len() as u64, &mut st).unwrap();

    assert_eq!(Standalone::plan(&img, &[]), Err(ImageError::Malformed("the copy of an image needs every base image it names")));
    let other_buf = encode(&draft(4));
    let other_meta = headers(&other_buf);
    let mut st2 = std::boxed::Box::new(ProcessState::ZERO);
    let other = Image::parse(&other_meta, other_buf.len() as u64, &mut st2).unwrap();
    assert_eq!(Standalone::plan(&img, &[other]), Err(ImageError::Malformed("a base image is not the one the image was built on")));

    let plan = Standalone::plan(&img, core::slice::from_ref(&base)).unwrap();
    assert!(plan.meta_len() < meta.len());
    let mut copy = vec![0u8; plan.file_len() as usize];
    for m in plan.moves(&img) {
        let m = m.unwrap();
        let from: &[u8] = if m.source == 0 { &buf } else { &base_buf };
        copy[m.to as usize..(m.to + m.len) as usize].copy_from_slice(&from[m.from as usize..(m.from + m.len) as usize]);
    }
    let mut new_meta = vec![0u8; plan.meta_len()];
    let snapshot = copy.clone();
    plan.write_headers(&img, |r| Ok(region_hash(&snapshot[r.data_offset as usize..(r.data_offset + r.record.size()) as usize])), &mut new_meta).unwrap();
    copy[..new_meta.len()].copy_from_slice(&new_meta);
    parse(&copy).unwrap();
    let mut st3 = std::boxed::Box::new(ProcessState::ZERO);
    let out = Image::parse(&new_meta, copy.len() as u64, &mut st3).unwrap();
    let chain = out.chain().unwrap().unwrap();
    assert_eq!((chain.id, chain.count), (7, 0));
    assert_eq!(out.shared_runs().count(), 0);
    let r = out.region(0).unwrap();
    assert!(!r.record.shares_pages());
    assert_eq!(&copy[r.data_offset as usize..r.data_offset as usize + 4 * page], &base_draft.data[0].1[..], "the region holds all its pages");
    let (rec, _) = out.fds().next().unwrap().unwrap();
    assert_eq!(&copy[rec.blob_offset as usize..rec.blob_offset as usize + saved.len()], &saved[..]);
    assert!(rec.blob_offset < blob_at, "the shorter headers let the data move");
    assert_eq!(copy.len() as u64 + (blob_at - rec.blob_offset), buf.len() as u64);

    // Without bases: the whole file, as it is.
    let plan = Standalone::plan(&base, &[]).unwrap();
    let moves: Vec<_> = plan.moves(&base).map(Result::unwrap).collect();
    assert_eq!(moves, vec![crate::standalone::Move { source: 0, from: 0, to: 0, len: base_buf.len() as u64 }]);
    let mut same = vec![0u8; plan.meta_len()];
    plan.write_headers(&base, |_| unreachable!(), &mut same).unwrap();
    assert_eq!(same, base_meta);
}

/// A lock record must name a descriptor of the image (the first of its description), and be
/// well formed; otherwise the image is refused before anything is restored.
#[test]
fn a_lock_naming_no_descriptor_is_refused() {
    use crate::locks::{LockKind, LockRecord, LOCK_RECORD_SIZE, LOCK_WRITE};
    let file = {
        let rec = FdRecord {
            fd: 5, kind: FdKind::File, open_flags: 2, fd_flags: 0, offset: 0, same_as: -1, mode: 0o100644, dev: 1, ino: 2, size: 3,
            mtime_sec: 0, mtime_nsec: 0, blob_offset: 0, blob_len: 0, blob_hash: 0, aux: 0, uid: 0, birth: None,
        };
        let mut v = vec![0u8; FdRecord::encoded_len(4)];
        rec.write(&mut Writer::new(&mut v), b"/a/b");
        v
    };
    let locks_note = |fd: i32, kind_byte: Option<u8>| {
        let mut rec = [0u8; LOCK_RECORD_SIZE];
        LockRecord { fd, kind: LockKind::Posix, flags: LOCK_WRITE, start: 0, len: 1 }.write(&mut Writer::new(&mut rec));
        if let Some(k) = kind_byte {
            rec[4] = k;
        }
        let mut note = vec![0u8; note_size(CKPT_NOTE_NAME, LOCK_RECORD_SIZE)];
        write_note(&mut Writer::new(&mut note), CKPT_NOTE_NAME, NT_CKPT_LOCKS, &rec);
        note
    };
    let with = |fd: i32, kind_byte: Option<u8>| {
        let (fds, note) = (file.clone(), locks_note(fd, kind_byte));
        parse_changed(move |d| {
            d.fds = fds;
            d.trailing_notes = note;
        })
    };
    assert_eq!(with(5, None), Ok(()));
    assert_eq!(with(6, None), malformed("a lock record names no descriptor, or not in the order of the descriptors"));
    assert_eq!(with(5, Some(9)), malformed("unknown lock kind"));
}

/// Lock records come in the order of their descriptors' records (as a checkpoint writes
/// them), so that each is found in one walk over both notes; out of that order the image is
/// malformed.
#[test]
fn locks_come_in_the_order_of_their_descriptors() {
    use crate::locks::{LockKind, LockRecord, LOCK_RECORD_SIZE};
    let mut fds = Vec::new();
    for fd in [5, 7] {
        let rec = FdRecord {
            fd, kind: FdKind::File, open_flags: 2, fd_flags: 0, offset: 0, same_as: -1, mode: 0o100644, dev: 1, ino: fd as u64, size: 3,
            mtime_sec: 0, mtime_nsec: 0, blob_offset: 0, blob_len: 0, blob_hash: 0, aux: 0, uid: 0, birth: None,
        };
        let mut v = vec![0u8; FdRecord::encoded_len(4)];
        rec.write(&mut Writer::new(&mut v), b"/a/b");
        fds.extend(v);
    }
    let with = |lock_fds: &[i32]| {
        let mut recs = vec![0u8; LOCK_RECORD_SIZE * lock_fds.len()];
        let mut w = Writer::new(&mut recs);
        for (i, &fd) in lock_fds.iter().enumerate() {
            LockRecord { fd, kind: LockKind::Posix, flags: 0, start: i as u64, len: 1 }.write(&mut w);
        }
        let mut note = vec![0u8; note_size(CKPT_NOTE_NAME, recs.len())];
        write_note(&mut Writer::new(&mut note), CKPT_NOTE_NAME, NT_CKPT_LOCKS, &recs);
        let fds = fds.clone();
        parse_changed(move |d| {
            d.fds = fds;
            d.trailing_notes = note;
        })
    };
    assert_eq!(with(&[5, 5, 7, 7]), Ok(()));
    assert_eq!(with(&[7]), Ok(()));
    assert_eq!(with(&[7, 5]), malformed("a lock record names no descriptor, or not in the order of the descriptors"));
    assert_eq!(with(&[5, 7, 5]), malformed("a lock record names no descriptor, or not in the order of the descriptors"));
}

/// A pty note is read under either of its types, each record must name a descriptor on a
/// device (or a standard one), and only a note with a master's record is one an older reader
/// must not skip.
#[test]
fn pty_records_name_their_descriptors() {
    use crate::pty::{PtyRecord, MASTER};
    let fds = |kind: FdKind| {
        let rec = FdRecord {
            fd: 5, kind, open_flags: 2, fd_flags: 0, offset: 0, same_as: -1, mode: 0o20620, dev: 1, ino: 2, size: 0,
            mtime_sec: 0, mtime_nsec: 0, blob_offset: 0, blob_len: 0, blob_hash: 0, aux: 0, uid: 0, birth: None,
        };
        let mut v = vec![0u8; FdRecord::encoded_len(10)];
        rec.write(&mut Writer::new(&mut v), b"/dev/pts/3");
        v
    };
    let with = |kind: FdKind, flags: u32, t: u32| {
        let mut desc = vec![0u8; 96];
        let mut w = Writer::new(&mut desc);
        PtyRecord { fd: 5, flags, index: 3, ..PtyRecord::default() }.write(&mut w, b"", b"queued");
        let len = w.finish().unwrap();
        let mut note = vec![0u8; note_size(CKPT_NOTE_NAME, len)];
        write_note(&mut Writer::new(&mut note), CKPT_NOTE_NAME, t, &desc[..len]);
        parse_changed(|d| {
            d.fds = fds(kind);
            d.trailing_notes = note;
        })
    };
    assert_eq!(with(FdKind::Device, MASTER, NT_CKPT_PTYS), Ok(()));
    assert_eq!(with(FdKind::Device, MASTER, NT_CKPT_PTYS | NT_CKPT_IGNORABLE), Ok(()));
    assert_eq!(with(FdKind::File, MASTER, NT_CKPT_PTYS), malformed("a pty record names no descriptor on a device"));
    assert_eq!(with(FdKind::Device, 0, NT_CKPT_PTYS), malformed("bytes queued in a pty record of a slave"));
    assert_eq!(with(FdKind::Device, MASTER | 64, NT_CKPT_PTYS), malformed("bad pty record"));
    assert!(note_type_understood(NT_CKPT_PTYS));
}

/// Which shared file mappings are stored as memory: POSIX shared memory objects only.
#[test]
fn only_posix_shared_memory_objects_are_stored() {
    use crate::region::stores_shared_file;
    assert!(stores_shared_file(b"/dev/shm/PostgreSQL.1234", true));
    assert!(!stores_shared_file(b"/dev/shm/PostgreSQL.1234", false), "not on a tmpfs");
    assert!(!stores_shared_file(b"/dev/shm/", true), "the directory itself");
    assert!(!stores_shared_file(b"/dev/shm/ckpt-tests/data", true), "a file below a directory of /dev/shm");
    assert!(!stores_shared_file(b"/tmp/data", true), "a tmpfs /tmp keeps its documents");
}

/// `NT_CKPT_SHMFILES` records name, in order, regions of stored POSIX shared memory objects.
#[test]
fn shared_memory_object_records_name_such_regions() {
    use crate::shmfiles::{ShmFile, SHMFILE_RECORD_SIZE};
    let note = |objs: &[ShmFile], record_size: usize| {
        let mut desc = vec![0u8; crate::shmfiles::note_len(objs.len())];
        let mut w = Writer::new(&mut desc);
        w.u32(objs.len() as u32);
        w.u32(record_size as u32);
        for m in objs {
            m.write(&mut w);
        }
        let mut n = vec![0u8; note_size(CKPT_NOTE_NAME, desc.len())];
        write_note(&mut Writer::new(&mut n), CKPT_NOTE_NAME, crate::NT_CKPT_SHMFILES, &desc);
        n
    };
    let m = ShmFile { region: 0, mode: 0o600, uid: 1000, gid: 1000, size: 8192 };
    assert_eq!(parse_changed(|d| d.trailing_notes = note(&[m], SHMFILE_RECORD_SIZE)), malformed("a shared memory object record names a region that is not one"));
    assert_eq!(parse_changed(|d| d.trailing_notes = note(&[m], SHMFILE_RECORD_SIZE + 8)), malformed("bad shared memory object table"));
    assert_eq!(parse_changed(|d| d.trailing_notes = note(&[ShmFile { mode: 0o10600, ..m }], SHMFILE_RECORD_SIZE)), malformed("bad shared memory object record"));
    assert!(crate::note_type_understood(crate::NT_CKPT_SHMFILES));
}

/// A lookup from where the last one stopped finds records in any order, and none that is not
/// there (the walk in order is what keeps 30,000 socket records from costing a walk each).
#[test]
fn lookups_from_the_last_find_records_in_any_order() {
    use crate::bytes::{find_from, Reader, Records};
    let mut buf = [0u8; 40];
    let mut w = Writer::new(&mut buf);
    for v in [1u32, 3, 5, 7, 9, 11, 13, 15, 17, 19] {
        w.u32(v);
    }
    let all = || Records::new(&buf[..], |r: &mut Reader| r.u32());
    let mut cursor = all();
    for want in [3, 5, 5, 19, 1, 13, 13, 2, 7] {
        let found = find_from(&mut cursor, all, |&v| v == want);
        assert_eq!(found, (want % 2 == 1).then_some(want), "{want}");
    }
}

/// Runs are looked up by bisection (there may be one for every other page): a run may not point
/// at pages its base leaves to another image, whichever of the base's runs holds them, and a
/// base region is one a run takes pages from exactly when a run of that base starts in it.
#[test]
fn run_lookups_by_bisection_find_the_runs_that_matter() {
    use crate::chain::{check_against_base, takes_from};
    use crate::shared::SharedRun;
    let parsed = |d: &Draft| {
        let buf = encode(d);
        let len = meta_len(&buf).unwrap() as usize;
        (buf, len)
    };
    // A base of 4 pages that leaves pages 1 and 2 to a base of its own, in two runs.
    let own_runs = [
        SharedRun { region: 0, first_page: 1, pages: 1, offset: DATA_AT + PAGE_SIZE, source: 1 },
        SharedRun { region: 0, first_page: 2, pages: 1, offset: DATA_AT + 9 * PAGE_SIZE, source: 1 },
    ];
    let mut bd = sharing_part(&own_runs, true);
    bd.trailing_notes.extend(chain_note(9, &[base_named(b"c", 5)]));
    let (bbuf, blen) = parsed(&bd);
    let mut bst = std::boxed::Box::new(ProcessState::ZERO);
    let base = Image::parse(&bbuf[..blen], bbuf.len() as u64, &mut bst).unwrap();
    let table = base.shared_table();
    assert_eq!(table.len(), 2);
    assert_eq!(table.get(1), Ok(own_runs[1]));
    assert_eq!(table.from(1).collect::<Vec<_>>(), vec![Ok(own_runs[1])]);
    assert_eq!(table.first_after(0, 0), Ok(0));
    assert_eq!(table.first_after(0, 2), Ok(1));
    assert_eq!(table.first_after(0, 3), Ok(2));
    assert_eq!(table.first_after(1, 0), Ok(2));
    let check = |run: SharedRun| {
        let mut d = sharing_part(&[run], true);
        d.trailing_notes.extend(chain_note(7, &[base_named(b"b", 9)]));
        let (buf, len) = parsed(&d);
        let mut st = std::boxed::Box::new(ProcessState::ZERO);
        let img = Image::parse(&buf[..len], buf.len() as u64, &mut st).unwrap();
        let takes = takes_from(&img, 1, &base.region(0).unwrap().record);
        (check_against_base(&img, 1, &base), takes, takes_from(&img, 2, &base.region(0).unwrap().record))
    };
    let not_its_own = Err(ImageError::Malformed("a page run points at pages its base image does not hold itself"));
    // Page 0 and page 3 the base holds itself; pages 1 and 2 (either run) it does not.
    assert_eq!(check(SharedRun { region: 0, first_page: 0, pages: 1, offset: DATA_AT, source: 1 }), (Ok(()), true, false));
    assert_eq!(check(SharedRun { region: 0, first_page: 3, pages: 1, offset: DATA_AT + 3 * PAGE_SIZE, source: 1 }), (Ok(()), true, false));
    assert_eq!(check(SharedRun { region: 0, first_page: 2, pages: 1, offset: DATA_AT + 2 * PAGE_SIZE, source: 1 }).0, not_its_own);
    assert_eq!(check(SharedRun { region: 0, first_page: 0, pages: 2, offset: DATA_AT, source: 1 }).0, not_its_own);
}

/// A table of pages stored elsewhere may hold 2^20 runs; one that says it holds more is refused
/// by name.
#[test]
fn a_shared_page_table_longer_than_the_limit_is_refused_by_name() {
    use crate::shared::{note_len, records, write_header, MAX_SHARED_RUNS, TOO_MANY_RUNS};
    let mut desc = vec![0u8; note_len(MAX_SHARED_RUNS)];
    write_header(&mut Writer::new(&mut desc), MAX_SHARED_RUNS);
    assert!(records(&desc).is_ok());
    write_header(&mut Writer::new(&mut desc), MAX_SHARED_RUNS + 1);
    assert_eq!(records(&desc).err(), Some(ImageError::Malformed(TOO_MANY_RUNS)));
    let mut d = sharing_part(&[], true);
    let mut note = vec![0u8; note_size(CKPT_NOTE_NAME, 8)];
    let mut header = [0u8; 8];
    write_header(&mut Writer::new(&mut header), MAX_SHARED_RUNS + 1);
    write_note(&mut Writer::new(&mut note), CKPT_NOTE_NAME, NT_CKPT_SHARED, &header);
    d.trailing_notes = note;
    assert_eq!(parse(&encode(&d)).unwrap_err(), ImageError::Malformed(TOO_MANY_RUNS));
}
