//! The command line, read straight from the initial stack.

use crate::EXIT_REFUSED;
use ckpt_sigsafe::say;
use core::ffi::CStr;

pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

const USAGE: &str = "usage: myrestart [--eager] [--no-verify] [--stopped] [--new-ids] [--announce] [--inherit-stdio] [--foreground] [--trust-image] [--allow-running] [--key FILE] IMAGE\n\
  Restores the process saved in IMAGE (made by libckpt.so on SIGUSR2) and resumes it.\n\
  --eager      read all memory from the image now, instead of mapping the image file\n\
               (use it if the image file may change or disappear while the program runs)\n\
  --no-verify  skip the checksums of memory contents (headers are always checked)\n\
  --stopped    leave the process stopped (SIGSTOP) at its checkpoint, for a debugger\n\
  --new-ids    restore with new IDs (myrestart's PID) instead of the process's own in new\n\
               user and PID namespaces (the default, where the kernel allows them)\n\
  --announce   say on stderr which PID the restored program has (as seen from here)\n\
  --inherit-stdio  give the program this stdin, stdout and stderr, even where it had files\n\
  --foreground give a process tree whose root led its own session to this terminal's job\n\
               too (a root that led only its process group always joins it): Ctrl-C and\n\
               Ctrl-Z here reach the tree; myrestart stops with it and goes on with `fg`\n\
  --trust-image  restore an image that another user owns or that others may write (refused\n\
               by default: restoring runs the image's code with your rights)\n\
  --allow-running  restore even though the checkpointed process still runs (refused by\n\
               default: two copies would share its files and write over each other)\n\
  --key FILE   the image must carry a MAC made with this key file (CKPT_KEY at checkpoint)\n\
  Exit status: 2 if the image cannot be restored (nothing was changed), 3 if restoring failed midway.";

/// What the command line asks for.
pub struct Options {
    pub image: &'static CStr,
    pub eager: bool,
    pub verify: bool,
    pub stopped: bool,
    pub new_ids: bool,
    /// Say which PID the restored program has (for `ckpt restart`).
    pub announce: bool,
    /// Give the program myrestart's own stdin, stdout and stderr, whatever it had.
    pub inherit_stdio: bool,
    /// Restore an image owned by another user or writable by others.
    pub trust_image: bool,
    /// The tree's root joins the restart's job (session and group) even if it led a session.
    pub foreground: bool,
    /// Restore even if the checkpointed process still runs.
    pub allow_running: bool,
    /// The key file the image must be authenticated with.
    pub key: Option<&'static CStr>,
}

/// Writes the whole usage text to `fd` (1 or 2); it is longer than one message line.
fn print_usage(fd: i32) {
    // SAFETY: the descriptor is only borrowed for these writes; a closed one just fails them.
    let out = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let _ = rustix::io::write(out, USAGE.as_bytes());
    let _ = rustix::io::write(out, b"\n");
}

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

    /// The options and the image path, or the exit status for a usage error (0 for --help).
    pub fn parse(&self) -> Result<Options, i32> {
        let mut opts = Options {
            image: c"",
            eager: false,
            verify: true,
            stopped: false,
            new_ids: false,
            announce: false,
            inherit_stdio: false,
            trust_image: false,
            foreground: false,
            allow_running: false,
            key: None,
        };
        // Started by `ckpt restart` (as `ckpt`): speak as the command the user ran.
        if self.arg(0).is_some_and(|a| a.to_bytes().rsplit(|&c| c == b'/').next() == Some(b"ckpt")) {
            ckpt_sigsafe::out::speak_as_ckpt();
        }
        let mut image = None;
        let mut i = 0;
        while i + 1 < self.argc {
            i += 1;
            let Some(a) = self.arg(i) else { break };
            match a.to_bytes() {
                b"--key" => match self.arg(i + 1) {
                    Some(k) => {
                        opts.key = Some(k);
                        i += 1;
                    }
                    None => {
                        say!("myrestart: --key needs a key file");
                        print_usage(2);
                        return Err(EXIT_REFUSED);
                    }
                },
                b"-h" | b"--help" => {
                    print_usage(1);
                    return Err(0);
                }
                b"--eager" => opts.eager = true,
                b"--no-verify" => opts.verify = false,
                b"--stopped" => opts.stopped = true,
                b"--new-ids" => opts.new_ids = true,
                b"--announce" => opts.announce = true,
                b"--inherit-stdio" => opts.inherit_stdio = true,
                b"--trust-image" => opts.trust_image = true,
                b"--foreground" => opts.foreground = true,
                b"--allow-running" => opts.allow_running = true,
                b"" => {}
                arg if arg.starts_with(b"-") || image.is_some() => {
                    say!("myrestart: unexpected argument {}", ckpt_sigsafe::out::Lossy(arg));
                    print_usage(2);
                    return Err(EXIT_REFUSED);
                }
                _ => image = Some(a),
            }
        }
        match image {
            Some(img) => {
                opts.image = img;
                Ok(opts)
            }
            None => {
                print_usage(2);
                Err(EXIT_REFUSED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `argv` laid out as the kernel lays out an initial stack.
    fn parse(argv: &[&'static CStr]) -> Result<Options, i32> {
        let mut stack: std::vec::Vec<usize> = std::vec![argv.len()];
        stack.extend(argv.iter().map(|a| a.as_ptr() as usize));
        stack.push(0);
        // SAFETY: `stack` has the initial stack's shape: argc, then argc string pointers.
        let args = unsafe { Args::from_stack(stack.as_ptr() as usize) };
        args.parse()
    }

    #[test]
    fn options_and_image() {
        let o = parse(&[c"myrestart", c"--eager", c"--no-verify", c"img"]).ok().unwrap();
        assert!(o.eager && !o.verify && !o.stopped);
        assert_eq!(o.image, c"img");
        let o = parse(&[c"myrestart", c"--stopped", c"other"]).ok().unwrap();
        assert!(o.stopped && o.verify && !o.eager);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse(&[c"myrestart"]).err(), Some(EXIT_REFUSED));
        assert_eq!(parse(&[c"myrestart", c"--what", c"img"]).err(), Some(EXIT_REFUSED));
        assert_eq!(parse(&[c"myrestart", c"a", c"b"]).err(), Some(EXIT_REFUSED));
    }
}
