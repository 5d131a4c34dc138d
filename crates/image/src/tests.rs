//! Unit tests: encoding round trips, and one test per way the reader rejects an image.

extern crate std;
use std::vec;
use std::vec::Vec;

use crate::bytes::Writer;
use crate::elf::{Ehdr, Phdr, EHDR_SIZE, PHDR_SIZE, PT_LOAD, PT_NOTE};
use crate::image::{meta_hash, meta_len, PREFIX_LEN};
use crate::note::{begin_note, note_size, write_note, Notes};
use crate::region::{RegionKind, RegionRecord, HEADER_SIZE, RECORD_SIZE, RF_HAS_DATA};
use crate::state::META_HASH_OFFSET;
use crate::*;

fn sample_state() -> std::boxed::Box<ProcessState> {
    let mut s = std::boxed::Box::new(ProcessState::ZERO);
    s.pid = 1234;
    s.fs_base = 0x7f00_0000_1000;
    s.mm.brk = 0x55_0000;
    s.itimers[0].value_usec = 5;
    s.sigactions[11].handler = 0x40_1000;
    s.cwd.set(b"/tmp/work");
    s.exe.set(b"/usr/bin/x");
    s.comm[..5].copy_from_slice(b"hello");
    s
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
    assert_eq!(back.comm_bytes(), b"hello");
}

#[test]
fn state_rejects_foreign_and_other_versions() {
    let mut buf = vec![0u8; ProcessState::ENCODED_LEN];
    sample_state().write(&mut Writer::new(&mut buf));
    let mut out = std::boxed::Box::new(ProcessState::ZERO);
    let mut other = buf.clone();
    other[8..12].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(ProcessState::read_into(&other, &mut out), Err(ImageError::UnsupportedVersion(7)));
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

/// A minimal valid image: one region of `pages` pages of data, holding the signal frame and
/// the trampoline.
fn build_image(pages: u64) -> Vec<u8> {
    let start = 0x40_0000u64;
    let len = pages * PAGE_SIZE;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut st = sample_state();
    st.sigframe = start + 64;
    st.resume_trampoline = start + 128;
    let name = b"/bin/x";
    let regions_len = HEADER_SIZE + RECORD_SIZE + name.len();
    let phnum = 2;
    let notes_len = note_size(CKPT_NOTE_NAME, ProcessState::ENCODED_LEN) + note_size(CKPT_NOTE_NAME, regions_len);
    let meta = EHDR_SIZE + PHDR_SIZE * phnum + notes_len;
    let data_at = page_up(meta as u64);
    st.meta_len = meta as u64;
    let mut buf = vec![0u8; (data_at + len) as usize];
    let mut w = Writer::new(&mut buf[..meta]);
    Ehdr { phoff: 64, phnum: phnum as u16 }.write(&mut w);
    Phdr { p_type: PT_NOTE, offset: (EHDR_SIZE + PHDR_SIZE * phnum) as u64, filesz: notes_len as u64, align: 4, ..Default::default() }.write(&mut w);
    Phdr { p_type: PT_LOAD, flags: 7, offset: data_at, vaddr: start, filesz: len, memsz: len, align: PAGE_SIZE }.write(&mut w);
    begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_STATE, ProcessState::ENCODED_LEN);
    st.write(&mut w);
    w.align(4);
    begin_note(&mut w, CKPT_NOTE_NAME, NT_CKPT_REGIONS, regions_len);
    w.u32(1);
    w.u32(RECORD_SIZE as u32);
    RegionRecord {
        start,
        end: start + len,
        prot: 7,
        kind: RegionKind::Normal,
        flags: RF_HAS_DATA,
        file_offset: 0,
        dev: 0,
        inode: 0,
        data_hash: region_hash(&data),
        name_off: 0,
        name_len: name.len() as u32,
        data_offset: data_at,
        stored_len: len,
    }
    .write(&mut w);
    w.bytes(name);
    w.align(4);
    assert_eq!(w.finish(), Some(meta));
    buf[data_at as usize..].copy_from_slice(&data);
    let hash_at = EHDR_SIZE + PHDR_SIZE * phnum + 20 + META_HASH_OFFSET;
    let h = meta_hash(&buf[..meta], hash_at);
    buf[hash_at..hash_at + 8].copy_from_slice(&h.to_le_bytes());
    buf
}

fn parse(buf: &[u8]) -> Result<(), ImageError> {
    let len = meta_len(&buf[..PREFIX_LEN.min(buf.len())])? as usize;
    let mut st = std::boxed::Box::new(ProcessState::ZERO);
    let meta = buf.get(..len).ok_or(ImageError::Truncated)?;
    let img = Image::parse(meta, buf.len() as u64, &mut st)?;
    for i in 0..img.region_count() {
        let r = img.region(i)?;
        let d = &buf[r.data_offset as usize..(r.data_offset + r.record.size()) as usize];
        if region_hash(d) != r.record.data_hash {
            return Err(ImageError::DataChecksum { index: i });
        }
    }
    Ok(())
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
fn rejects_flipped_data() {
    let mut buf = build_image(3);
    let n = buf.len();
    buf[n - 5000] ^= 1;
    assert_eq!(parse(&buf), Err(ImageError::DataChecksum { index: 0 }));
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
