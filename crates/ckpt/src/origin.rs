//! What a program was started as (`NT_CKPT_ORIGIN`): made by `ckpt run` and `ckpt job` for
//! the program they start, and compared by `ckpt job` and `ckpt restart --newest` with an
//! image's, so that an image of another command, another directory or an edited script is
//! never restarted in its place without being told.

use crate::shown_bytes;
use ckpt_image::origin::{self, FileId, Origin};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Programs that run a script named by their first argument that is not an option.
const INTERPRETERS: &[&str] = &["python", "perl", "ruby", "node", "nodejs", "bash", "sh", "dash", "zsh", "ksh", "Rscript", "julia", "lua", "php", "tclsh", "octave"];

/// Whether the program at `path`, named `name`, is an interpreter (`python3.11` is `python`).
fn is_interpreter(name: &str) -> bool {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    INTERPRETERS.contains(&base)
}

/// The identity of the file at `path`: its contents' hash when it is small enough to read at
/// once, else its size and modification time.
fn file_identity(path: &Path, arg: u32) -> Option<FileId> {
    let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    if m.len() <= origin::HASH_LIMIT {
        let data = std::fs::read(path).ok()?;
        Some(FileId { arg, how: origin::SAME_CONTENTS, size: data.len() as u64, value: ckpt_image::hash(&data) })
    } else {
        Some(FileId { arg, how: origin::SAME_MTIME, size: m.len(), value: (m.mtime() as u64).wrapping_mul(1_000_000_000).wrapping_add(m.mtime_nsec() as u64) })
    }
}

/// Whether the file at `path` is a script (starts with `#!`).
fn is_script(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"#!"
}

/// The files whose identity matters for a command: the program itself if it is a script, and
/// the script an interpreter runs (its first argument that is not an option and names a file;
/// through `env` too). Data files are left out: a program may well change those itself.
fn scripts(command: &[OsString], program: &Path, cwd: &Path) -> Vec<FileId> {
    let mut out = Vec::new();
    if is_script(program) {
        out.extend(file_identity(program, 0));
    }
    let name = |s: &OsString| Path::new(s).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut i = 1;
    let mut interp = is_interpreter(&name(&command[0]));
    if name(&command[0]) == "env" {
        // env [-options] [NAME=VALUE]... PROG ARGS: PROG is the interpreter, if it is one.
        while i < command.len() && (command[i].as_bytes().starts_with(b"-") || command[i].as_bytes().contains(&b'=')) {
            i += 1;
        }
        if i < command.len() {
            interp = is_interpreter(&name(&command[i]));
            i += 1;
        }
    }
    if interp {
        if let Some(k) = script_argument(command, i) {
            out.extend(file_identity(&cwd.join(&command[k]), k as u32));
        }
    }
    out.truncate(origin::MAX_FILES);
    out
}

/// Which argument, from `first` on, names the script an interpreter runs: the first that is not
/// an option, nor the value of one that takes a value (`python3 -W ignore x.py`); none if an
/// option says the program comes from the command line (`-c`, `-e`, `-m`).
fn script_argument(command: &[OsString], first: usize) -> Option<usize> {
    const TAKES_VALUE: &[&[u8]] = &[b"-W", b"-X", b"-o", b"-O", b"-r", b"--require", b"-I"];
    const NO_FILE: &[&[u8]] = &[b"-c", b"-e", b"-E", b"-m", b"-p", b"-r", b"--eval", b"--print"];
    let mut k = first;
    while k < command.len() {
        let a = command[k].as_bytes();
        if a == b"--" {
            return (k + 1 < command.len()).then_some(k + 1);
        }
        if !a.starts_with(b"-") || a == b"-" {
            return (a != b"-").then_some(k);
        }
        // php's -r runs code; node's -r loads a module first: both kinds are listed, and code
        // on the command line wins (nothing is recorded).
        if NO_FILE.contains(&a) && !(a == b"-r" && is_interpreter_named(command, "node")) {
            return None;
        }
        k += if TAKES_VALUE.contains(&a) { 2 } else { 1 };
    }
    None
}

/// Whether the command's interpreter is `name` (`node`, say).
fn is_interpreter_named(command: &[OsString], name: &str) -> bool {
    command.iter().take(3).any(|c| Path::new(c).file_name().is_some_and(|n| n.to_string_lossy().trim_end_matches(|ch: char| ch.is_ascii_digit() || ch == '.') == name))
}

/// A fresh run identity: random, never 0.
fn new_run_id() -> u64 {
    let mut v = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut v)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        v = ckpt_image::hash(format!("{t:?}{}", std::process::id()).as_bytes()).to_le_bytes();
    }
    u64::from_le_bytes(v).max(1)
}

/// What is being started: the command as given, the program it resolved to, the directory.
pub struct Started {
    pub command: Vec<OsString>,
    pub program: PathBuf,
    pub cwd: PathBuf,
}

impl Started {
    /// `command`, whose program ckpt found at `program`, started in the current directory.
    pub fn new(command: &[OsString], program: &Path) -> Result<Started, String> {
        let cwd = std::env::current_dir().map_err(|e| format!("current directory: {}", crate::io_message(&e)))?;
        let program = std::fs::canonicalize(program).map_err(|e| format!("{}: {}", crate::shown(program), crate::io_message(&e)))?;
        Ok(Started { command: command.to_vec(), program, cwd })
    }

    fn args(&self) -> Vec<u8> {
        self.command.iter().flat_map(|a| a.as_bytes().iter().copied().chain([0])).collect()
    }

    /// The encoded note, under a new run identity (for `CKPT_ORIGIN`, hex-encoded).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let args = self.args();
        let mut o = Origin::new(new_run_id(), self.program.as_os_str().as_bytes(), self.cwd.as_os_str().as_bytes(), &args, self.command.len() as u32);
        for (slot, f) in o.files.iter_mut().zip(scripts(&self.command, &self.program, &self.cwd)) {
            *slot = Some(f);
        }
        let mut buf = vec![0u8; origin::MAX_LEN];
        let n = o.write(&mut buf).ok_or("the program's path or the current directory is too long to record".to_string())?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The hex form `CKPT_ORIGIN` carries.
    pub fn env_value(&self) -> Result<OsString, String> {
        let note = self.encode()?;
        let mut hex = vec![0u8; note.len() * 2];
        let n = origin::to_hex(&note, &mut hex).map(<[u8]>::len).unwrap_or(0);
        hex.truncate(n);
        Ok(OsString::from_vec(hex))
    }
}

/// What differs between the origin an image was taken of (`was`) and another (`now`: what is
/// being started, or another image's), in a few words; `None` if they are the same command,
/// program, directory and script. The run identity does not count: each start has its own.
/// Names from the image are escaped ([`crate::shown_bytes`]): the words reach a terminal.
pub fn differences(was: &Origin, now: &Origin) -> Option<String> {
    let words = |o: &Origin| if o.has_args() { format!("`{}`", shell_words(o.args())) } else { format!("a command of {} arguments", o.argc) };
    if was.args_hash != now.args_hash || was.argc != now.argc {
        return Some(format!("it was started as {}, not {}", words(was), words(now)));
    }
    if was.program != now.program {
        return Some(format!("its program was {}, not {}", shown_bytes(was.program), shown_bytes(now.program)));
    }
    if was.cwd != now.cwd {
        return Some(format!("it was started in {}, not in {}", shown_bytes(was.cwd), shown_bytes(now.cwd)));
    }
    for f in was.files.iter().flatten() {
        let name = match (f.arg, was.args().nth(f.arg as usize)) {
            (0, _) => shown_bytes(was.program),
            (_, Some(a)) => shown_bytes(a),
            (_, None) => continue,
        };
        match now.files.iter().flatten().find(|g| g.arg == f.arg) {
            Some(g) if g == f => {}
            Some(g) if g.size != f.size => return Some(format!("{name} changed since it was taken ({} bytes then, {} now)", f.size, g.size)),
            Some(_) => return Some(format!("{name} changed since it was taken")),
            None => return Some(format!("{name} is gone")),
        }
    }
    None
}

/// Arguments as a shell would need them typed (quoted where they hold anything unusual), control
/// characters escaped ([`crate::shown_bytes`]).
fn shell_words<'a>(args: impl Iterator<Item = &'a [u8]>) -> String {
    args.map(|a| {
        let s = shown_bytes(a);
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
            s
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_and_their_scripts() {
        assert!(is_interpreter("python3.11") && is_interpreter("python3") && is_interpreter("bash") && !is_interpreter("simulate"));
        let dir = std::env::temp_dir().join(format!("ckpt-origin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train.py"), "print(1)\n").unwrap();
        let cmd: Vec<OsString> = ["python3", "-u", "train.py", "--epochs", "3"].iter().map(OsString::from).collect();
        let found = scripts(&cmd, Path::new("/usr/bin/python3"), &dir);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].arg, found[0].size), (2, 9));
        let cmd: Vec<OsString> = ["env", "FOO=1", "python3", "train.py"].iter().map(OsString::from).collect();
        assert_eq!(scripts(&cmd, Path::new("/usr/bin/env"), &dir)[0].arg, 3);
        // Options that take a value, and code given on the command line.
        let cmd: Vec<OsString> = ["python3", "-W", "ignore", "train.py"].iter().map(OsString::from).collect();
        assert_eq!(scripts(&cmd, Path::new("/usr/bin/python3"), &dir)[0].arg, 3);
        let cmd: Vec<OsString> = ["python3", "-c", "print(1)", "train.py"].iter().map(OsString::from).collect();
        assert!(scripts(&cmd, Path::new("/usr/bin/python3"), &dir).is_empty());
        let cmd: Vec<OsString> = ["bash", "--", "train.py"].iter().map(OsString::from).collect();
        assert_eq!(scripts(&cmd, Path::new("/usr/bin/bash"), &dir)[0].arg, 2);
        // A program that is not an interpreter: its data files are its own business.
        let cmd: Vec<OsString> = ["./sim", "train.py"].iter().map(OsString::from).collect();
        assert!(scripts(&cmd, Path::new("/bin/true"), &dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn words_are_quoted_as_a_shell_needs() {
        let args: [&[u8]; 3] = [b"python3", b"-c", b"print('a b')"];
        assert_eq!(shell_words(args.into_iter()), r#"python3 -c 'print('\''a b'\'')'"#);
        let args: [&[u8]; 2] = [b"./c\x1b[31mRED", b"a\nb"];
        assert_eq!(shell_words(args.into_iter()), r#"'./c\x1b[31mRED' 'a\x0ab'"#);
    }
}
