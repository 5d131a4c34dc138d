//! The command line, read straight from the initial stack.

use crate::EXIT_REFUSED;
use ckpt_sigsafe::say;
use core::ffi::CStr;

pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

/// The text of `--help`. The option column starts at 19; a description that goes on to another
/// line goes on there.
const USAGE: &str = r"usage: myrestart [--eager] [--no-verify] [--stopped] [--new-ids] [--announce]
                 [--inherit-stdio] [--foreground] [--trust-image] [--allow-running]
                 [--keep-logs] [--files-as-is] [--key FILE] IMAGE
Restores the process saved in IMAGE (made by libckpt.so on SIGUSR2) and resumes it.
  --eager          read all memory from the image now, instead of mapping the image file
                   (use it if the image file may change or disappear while the program runs)
  --no-verify      skip the checksums of memory contents (headers are always checked)
  --stopped        leave the process stopped (SIGSTOP) at its checkpoint, for a debugger
  --new-ids        restore with new IDs (myrestart's PID) instead of the process's own in new
                   user and PID namespaces (the default, where the kernel allows them)
  --announce       say on stderr which PID the restored program has (as seen from here)
  --inherit-stdio  give the program this stdin, stdout and stderr, even where it had files
  --foreground     give a process tree whose root led its own session to this terminal's job
                   too (a root that led only its process group always joins it): Ctrl-C and
                   Ctrl-Z here reach the tree; myrestart stops with it and goes on with `fg`
  --trust-image    restore an image (or base image) that another user owns or that others
                   may write (refused by default: restoring runs the image's code with your
                   rights), from a copy made before it is checked
  --allow-running  restore even though the checkpointed process still runs (refused by
                   default: two copies would share its files and write over each other)
  --keep-logs      leave stdout and stderr log files (opened to append) as they are; by
                   default what the program printed after the checkpoint is cut from them,
                   since the restored program prints it again (never after a last checkpoint)
  --files-as-is    restore even though a file the program could write in place (open for
                   writing, not to append, or mapped shared) changed since the checkpoint
                   (refused by default: the program would go on from its memory then, with
                   its files as they are now)
  --key FILE       the image must carry a MAC made with this key file (CKPT_KEY at checkpoint;
                   without --key, CKPT_KEY in this environment is the key, if set)
Exit status: 2 if the image cannot be restored (nothing was changed), 3 if restoring failed
             midway; otherwise myrestart ends as the program did (by the same signal, if one
             ended it: a shell shows 128 + N).";

/// What the command line asks for.
pub struct Options {
    pub image: &'static CStr,
    pub eager: bool,
    pub verify: bool,
    pub stopped: bool,
    pub new_ids: bool,
    /// Say which PID the restored program has (`--announce`, or started as `ckpt restart`).
    pub announce: bool,
    /// Give the program myrestart's own stdin, stdout and stderr, whatever it had.
    pub inherit_stdio: bool,
    /// Restore an image owned by another user or writable by others.
    pub trust_image: bool,
    /// The tree's root joins the restart's job (session and group) even if it led a session.
    pub foreground: bool,
    /// Restore even if the checkpointed process still runs.
    pub allow_running: bool,
    /// Never cut what the program printed after the checkpoint from its logs.
    pub keep_logs: bool,
    /// Restore even though files the program could write in place changed since.
    pub files_as_is: bool,
    /// The key file the image must be authenticated with: `--key`, else `CKPT_KEY` in the
    /// environment (the variable that keys images at checkpoint time: where it is set, an image
    /// without its MAC, one someone stripped, is refused).
    pub key: Option<&'static CStr>,
    /// A line to print on stderr once the logs are in order (`--say`, for `ckpt`), and where
    /// the option is on the command line (see [`Args::blank`]).
    pub say: Option<(&'static CStr, usize)>,
    /// A descriptor to tell what became of the restart (`--status-fd N`, for `ckpt job`): "R"
    /// once the restore crosses its point of no return, then the program's wait status (four
    /// bytes) when it has ended. With where the option is on the command line.
    pub status_fd: Option<(i32, usize)>,
}

/// Why the command line gives no options to go on with.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// `--help`: the usage on stdout, exit status 0.
    Help,
    /// `--key`, `--say` or `--status-fd` without its value.
    NoValue(&'static str),
    /// An unknown option, or a second image.
    Unexpected(&'static [u8]),
    /// No image named.
    NoImage,
}

impl Stop {
    /// Says why (a mistake in one line, then the usage, on stderr; the help on stdout) and
    /// returns the exit status.
    pub fn report(&self) -> i32 {
        match self {
            Stop::Help => {
                print_usage(1);
                return 0;
            }
            Stop::NoValue(opt) => say!("myrestart: {opt} needs a value"),
            Stop::Unexpected(arg) => say!("myrestart: unexpected argument {}", ckpt_sigsafe::out::Lossy(arg)),
            Stop::NoImage => {}
        }
        print_usage(2);
        EXIT_REFUSED
    }
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

    /// Overwrites arguments `i` and `i + 1` with NUL bytes, so that `ps` (which shows the
    /// arguments' memory) no longer shows them: `--say TEXT` or `--status-fd N`, which are
    /// ckpt's business.
    ///
    /// # Safety
    /// Only in the program itself, whose arguments lie in its writable initial stack, and only
    /// once nothing refers to those two arguments any more.
    pub unsafe fn blank(&self, i: usize) {
        for j in [i, i + 1] {
            let Some(a) = self.arg(j) else { continue };
            let len = a.to_bytes().len();
            // SAFETY: the argument's bytes are writable stack memory (see above), `len` long.
            unsafe { core::ptr::write_bytes(*self.argv.add(j) as *mut u8, 0, len) };
        }
    }

    /// The options and the image path. Started as `ckpt restart` (argv[0] `ckpt`, argv[1]
    /// `restart`: what `ps` then shows for the restored program's parents), myrestart speaks
    /// as `ckpt` and says which process the program is.
    pub fn parse(&self) -> Result<Options, Stop> {
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
            keep_logs: false,
            files_as_is: false,
            key: None,
            say: None,
            status_fd: None,
        };
        let mut i = 0;
        if self.arg(0).is_some_and(|a| a.to_bytes().rsplit(|&c| c == b'/').next() == Some(b"ckpt")) {
            ckpt_sigsafe::out::speak_as_ckpt();
            if self.arg(1).is_some_and(|a| a.to_bytes() == b"restart") {
                opts.announce = true;
                i = 1;
            }
        }
        let mut image = None;
        while i + 1 < self.argc {
            i += 1;
            let Some(a) = self.arg(i) else { break };
            match a.to_bytes() {
                b"--key" => {
                    opts.key = Some(self.arg(i + 1).ok_or(Stop::NoValue("--key"))?);
                    i += 1;
                }
                b"--say" => {
                    opts.say = Some((self.arg(i + 1).ok_or(Stop::NoValue("--say"))?, i));
                    i += 1;
                }
                b"--status-fd" => {
                    let v = self.arg(i + 1).ok_or(Stop::NoValue("--status-fd"))?;
                    let fd = ckpt_sigsafe::proctext::parse_dec(v.to_bytes()).filter(|&n| n < i32::MAX as u64).ok_or(Stop::Unexpected(v.to_bytes()))?;
                    opts.status_fd = Some((fd as i32, i));
                    i += 1;
                }
                b"-h" | b"--help" => return Err(Stop::Help),
                b"--eager" => opts.eager = true,
                b"--no-verify" => opts.verify = false,
                b"--stopped" => opts.stopped = true,
                b"--new-ids" => opts.new_ids = true,
                b"--announce" => opts.announce = true,
                b"--inherit-stdio" => opts.inherit_stdio = true,
                b"--trust-image" => opts.trust_image = true,
                b"--foreground" => opts.foreground = true,
                b"--allow-running" => opts.allow_running = true,
                b"--keep-logs" => opts.keep_logs = true,
                b"--files-as-is" => opts.files_as_is = true,
                b"" => {}
                arg if arg.starts_with(b"-") || image.is_some() => return Err(Stop::Unexpected(a.to_bytes())),
                _ => image = Some(a),
            }
        }
        opts.image = image.ok_or(Stop::NoImage)?;
        if opts.key.is_none() {
            opts.key = self.env(b"CKPT_KEY").filter(|k| !k.is_empty());
        }
        Ok(opts)
    }

    /// The value of the environment variable `name`, from the environment that follows argv
    /// on the initial stack.
    fn env(&self, name: &[u8]) -> Option<&'static CStr> {
        // SAFETY: argv is followed by its NULL and then the environment's NULL-terminated array
        // of NUL-terminated strings, all living for the whole run.
        unsafe {
            let mut at = self.argv.add(self.argc + 1);
            while !(*at).is_null() {
                let var = CStr::from_ptr(*at as *const core::ffi::c_char).to_bytes();
                if var.len() > name.len() && var.starts_with(name) && var[name.len()] == b'=' {
                    return Some(CStr::from_ptr((*at).add(name.len() + 1) as *const core::ffi::c_char));
                }
                at = at.add(1);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `argv` laid out as the kernel lays out an initial stack, with the environment
    /// `envp`.
    fn parse_with(argv: &[&'static CStr], envp: &[&'static CStr]) -> Result<Options, Stop> {
        let mut stack: std::vec::Vec<usize> = std::vec![argv.len()];
        stack.extend(argv.iter().map(|a| a.as_ptr() as usize));
        stack.push(0);
        stack.extend(envp.iter().map(|a| a.as_ptr() as usize));
        stack.push(0);
        // SAFETY: `stack` has the initial stack's shape: argc, argc string pointers and a NULL,
        // then the environment's string pointers and a NULL.
        let args = unsafe { Args::from_stack(stack.as_ptr() as usize) };
        args.parse()
    }

    fn parse(argv: &[&'static CStr]) -> Result<Options, Stop> {
        parse_with(argv, &[c"PATH=/bin"])
    }

    /// `CKPT_KEY` in the environment is the key unless `--key` names one.
    #[test]
    fn the_key_comes_from_the_environment_unless_given() {
        let env = [c"CKPT_KEYS=no", c"CKPT_KEY=/k/env", c"HOME=/"];
        assert_eq!(parse_with(&[c"myrestart", c"img"], &env).ok().unwrap().key, Some(c"/k/env"));
        assert_eq!(parse_with(&[c"myrestart", c"--key", c"/k/arg", c"img"], &env).ok().unwrap().key, Some(c"/k/arg"));
        assert_eq!(parse_with(&[c"myrestart", c"img"], &[c"CKPT_KEY="]).ok().unwrap().key, None);
        assert_eq!(parse(&[c"myrestart", c"img"]).ok().unwrap().key, None);
    }

    #[test]
    fn options_and_image() {
        let o = parse(&[c"myrestart", c"--eager", c"--no-verify", c"img"]).ok().unwrap();
        assert!(o.eager && !o.verify && !o.stopped && !o.announce && !o.keep_logs);
        assert_eq!(o.image, c"img");
        let o = parse(&[c"myrestart", c"--stopped", c"other", c"--keep-logs"]).ok().unwrap();
        assert!(o.stopped && o.verify && !o.eager && o.keep_logs && !o.files_as_is);
        assert!(parse(&[c"myrestart", c"--files-as-is", c"img"]).ok().unwrap().files_as_is);
        assert_eq!(o.image, c"other");
    }

    /// As `ckpt restart` starts it: the word `restart` is no image, the program is announced,
    /// and `--say` gives a line (and its place, to hide it from `ps`).
    #[test]
    fn started_as_ckpt_restart() {
        let o = parse(&[c"/usr/bin/ckpt", c"restart", c"img", c"--say", c"ckpt: restarting"]).ok().unwrap();
        assert!(o.announce);
        assert_eq!(o.image, c"img");
        assert_eq!(o.say, Some((c"ckpt: restarting", 3)));
        // Started by its own name, `restart` is an image like any other word.
        let o = parse(&[c"myrestart", c"restart"]).ok().unwrap();
        assert_eq!(o.image, c"restart");
        assert!(!o.announce);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse(&[c"myrestart"]).err(), Some(Stop::NoImage));
        assert_eq!(parse(&[c"myrestart", c"--what", c"img"]).err(), Some(Stop::Unexpected(b"--what")));
        assert_eq!(parse(&[c"myrestart", c"a", c"b"]).err(), Some(Stop::Unexpected(b"b")));
        assert_eq!(parse(&[c"myrestart", c"img", c"--key"]).err(), Some(Stop::NoValue("--key")));
        assert_eq!(parse(&[c"myrestart", c"img", c"--say"]).err(), Some(Stop::NoValue("--say")));
        assert_eq!(parse(&[c"myrestart", c"--help", c"img"]).err(), Some(Stop::Help));
    }

    /// Every line of the help that goes on from the one above is indented under where that one's
    /// text starts; each option's description starts in one column.
    #[test]
    fn the_usage_reads_in_columns() {
        const COLUMN: usize = 19;
        let mut lines = USAGE.lines();
        let first = lines.next().unwrap();
        let synopsis = first.find('[').unwrap();
        for line in lines {
            let indent = line.len() - line.trim_start().len();
            if line.starts_with("  --") {
                let (opt, desc) = line.split_at(COLUMN);
                assert!(opt.ends_with("  ") && !desc.starts_with(' '), "option column: {line:?}");
            } else if line.trim_start().starts_with('[') {
                assert_eq!(indent, synopsis, "synopsis: {line:?}");
            } else if indent > 0 {
                // The exit status lines go on under the text after "Exit status: ".
                assert!(indent == COLUMN || indent == "Exit status: ".len(), "continuation: {line:?}");
            } else {
                assert!(line.starts_with("Restores") || line.starts_with("Exit status:"), "not indented: {line:?}");
            }
        }
        assert!(USAGE.lines().all(|l| l.len() <= 100), "a line longer than 100 columns");
        assert!(USAGE.lines().filter(|l| l.starts_with("  --")).count() == 12);
    }
}
