//! Whether the program is a Go program.
//!
//! The Go runtime calls `madvise` with the system call itself, never through libc, so neither
//! libckpt's interposed `madvise` nor anything else in the process sees the memory it drops:
//! its images carry `ckpt_image::state::FLAG_RAW_MADVISE`, and a restart gives it the
//! kernel's zeros there instead of the image's bytes. Every Go executable, static or built with
//! cgo, carries Go's build ID note (name `Go`, type 4) in a `PT_NOTE` segment; a C program that
//! loads a Go library later is not recognised.
//!
//! Called by the constructor and by the attached checkpoint's entry (`crate::attached`), both
//! outside any signal handler, but in the second case in a process whose libc libckpt may not
//! call: raw system calls and buffers on the stack only.

use ckpt_image::bytes::Reader;
use ckpt_image::elf::{Phdr, PHDR_SIZE, PT_NOTE};
use ckpt_image::note::Notes;
use rustix::fd::AsRawFd;

/// The Go toolchain's build ID note type (`cmd/internal/buildid`), under the name `Go`.
const NT_GO_BUILDID: u32 = 4;
/// Program headers looked at, at most.
const MAX_PHDRS: usize = 64;

/// Whether `/proc/self/exe` is a Go program.
pub fn is_go() -> bool {
    let Ok(exe) = rustix::fs::open(c"/proc/self/exe", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) else { return false };
    let fd = exe.as_raw_fd();
    let mut ehdr = [0u8; ckpt_image::elf::EHDR_SIZE];
    if ckpt_sigsafe::sys::pread_full(fd, &mut ehdr, 0) != Ok(ehdr.len()) {
        return false;
    }
    let Ok((_, ehdr)) = ckpt_image::elf::Ehdr::read_any(&ehdr) else { return false };
    let (phoff, phnum) = (ehdr.phoff, ehdr.phnum as usize);
    let mut notes = [0u8; 1024];
    for i in 0..phnum.min(MAX_PHDRS) {
        let mut ph = [0u8; PHDR_SIZE];
        if ckpt_sigsafe::sys::pread_full(fd, &mut ph, phoff + (i * PHDR_SIZE) as u64) != Ok(PHDR_SIZE) {
            return false;
        }
        let Ok(ph) = Phdr::read(&mut Reader::new(&ph)) else { return false };
        if ph.p_type != PT_NOTE {
            continue;
        }
        let len = (ph.filesz as usize).min(notes.len());
        let Ok(n) = ckpt_sigsafe::sys::pread_full(fd, &mut notes[..len], ph.offset) else { continue };
        // A note cut off by the buffer ends the walk of this segment, not the search.
        // Go pads the name to four bytes (`Go\0\0`, name size 4).
        if Notes::new(&notes[..n]).map_while(Result::ok).any(|note| note.n_type == NT_GO_BUILDID && note.name.split(|&b| b == 0).next() == Some(b"Go")) {
            return true;
        }
    }
    false
}
