//! The command line, read straight from the initial stack.

use crate::EXIT_REFUSED;
use ckpt_sigsafe::say;
use core::ffi::CStr;

pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

const USAGE: &str = "usage: myrestart IMAGE\n\
  Restores the process saved in IMAGE (made by libckpt.so on SIGUSR2) and resumes it.\n\
  Exit status: 2 if the image cannot be restored (nothing was changed), 3 if restoring failed midway.";

impl Args {
    /// # Safety
    /// `sp` must point at the kernel-built initial stack.
    pub unsafe fn from_stack(sp: usize) -> Args {
        // SAFETY: the initial stack starts with argc, followed by the argv array.
        unsafe { Args { argc: *(sp as *const usize), argv: (sp + 8) as *const *const u8 } }
    }

    fn arg(&self, i: usize) -> Option<&'static CStr> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: argv holds argc valid NUL-terminated strings that live for the whole run.
        unsafe { Some(CStr::from_ptr(*self.argv.add(i) as *const core::ffi::c_char)) }
    }

    /// The one argument, or the exit status for a usage error (0 for --help).
    pub fn image_path(&self) -> Result<&'static CStr, i32> {
        match (self.arg(1), self.arg(2)) {
            (Some(a), None) if a.to_bytes() == b"-h" || a.to_bytes() == b"--help" => {
                // SAFETY: fd 1 is only borrowed for these writes; a closed stdout just fails them.
                let stdout = unsafe { rustix::fd::BorrowedFd::borrow_raw(1) };
                let _ = rustix::io::write(stdout, USAGE.as_bytes());
                let _ = rustix::io::write(stdout, b"\n");
                Err(0)
            }
            (Some(a), None) if !a.to_bytes().is_empty() => Ok(a),
            _ => {
                say!("{USAGE}");
                Err(EXIT_REFUSED)
            }
        }
    }
}
