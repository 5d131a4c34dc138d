//! `NT_CKPT_THREAD`: what belongs to one thread rather than to the process. One note per
//! thread; the first is the thread that took the checkpoint signal.

use crate::bytes::{Reader, Writer};
use crate::ImageError;

/// The rseq area was registered and must be registered again.
pub const FLAG_RSEQ: u32 = 1 << 0;
/// `tid_address` held the thread's TID (glibc's cache): write the new TID there.
pub const FLAG_PATCH_TID: u32 = 1 << 1;
/// Every flag this version knows.
const KNOWN_FLAGS: u32 = FLAG_RSEQ | FLAG_PATCH_TID;

/// One thread's state (its registers, FPU state, signal mask and alternate signal stack are in
/// its signal frame, in the stored memory, at `sigframe`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadState {
    pub tid: u32,
    pub flags: u32,
    /// Address of the `ucontext` the kernel built when the thread was stopped.
    pub sigframe: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    /// The kernel's `clear_child_tid` (glibc: the TID field of the thread descriptor).
    pub tid_address: u64,
    pub robust_list: u64,
    pub robust_len: u64,
    /// The thread's name (`PR_GET_NAME`), NUL-padded.
    pub comm: [u8; 16],
    /// Signals pending for this thread alone (bit `n - 1` for signal `n`), sent again at restart.
    pub sigpending: u64,
}

impl ThreadState {
    /// Size of the encoded descriptor.
    pub const ENCODED_LEN: usize = 4 + 4 + 8 * 4 + 4 + 4 + 8 * 3 + 16 + 8;

    pub fn comm_bytes(&self) -> &[u8] {
        let n = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        &self.comm[..n]
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.tid);
        w.u32(self.flags);
        w.u64(self.sigframe);
        w.u64(self.fs_base);
        w.u64(self.gs_base);
        w.u64(self.rseq_addr);
        w.u32(self.rseq_len);
        w.u32(self.rseq_sig);
        w.u64(self.tid_address);
        w.u64(self.robust_list);
        w.u64(self.robust_len);
        w.bytes(&self.comm);
        w.u64(self.sigpending);
    }

    pub fn read(desc: &[u8]) -> Result<ThreadState, ImageError> {
        if desc.len() != Self::ENCODED_LEN {
            return Err(ImageError::Malformed("thread note has the wrong size"));
        }
        let mut r = Reader::new(desc);
        let t = ThreadState {
            tid: r.u32()?,
            flags: r.u32()?,
            sigframe: r.u64()?,
            fs_base: r.u64()?,
            gs_base: r.u64()?,
            rseq_addr: r.u64()?,
            rseq_len: r.u32()?,
            rseq_sig: r.u32()?,
            tid_address: r.u64()?,
            robust_list: r.u64()?,
            robust_len: r.u64()?,
            comm: r.array()?,
            sigpending: r.u64()?,
        };
        if t.flags & !KNOWN_FLAGS != 0 {
            return Err(ImageError::Malformed("unknown thread flags"));
        }
        if t.sigpending & crate::state::NEVER_PENDING != 0 {
            return Err(ImageError::Malformed("SIGKILL or SIGSTOP pending"));
        }
        if !crate::state::is_id(t.tid) {
            return Err(ImageError::Malformed("a thread ID is 0 or above 2^31 - 1"));
        }
        Ok(t)
    }
}
