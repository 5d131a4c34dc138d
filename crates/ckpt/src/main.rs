//! `ckpt`: the command-line face of ckpt. It drives the same pieces as the brief's contract
//! (`LD_PRELOAD=libckpt.so`, a signal, `myrestart`), so everything it does can also be done by
//! hand. The only crate that uses `std` freely.

#![deny(unsafe_code)]

// unsafe only in two of its modules, by name (ptrace requests, the stub's bytes).
mod attach;
mod checkpoint;
mod copy;
mod imagefile;
mod inspect;
mod job;
mod key;
mod locate;
mod migrate;
mod origin;
// unsafe: the only module that needs it: the C library calls `std` lacks (`getrandom`,
// `geteuid`, `access`, signal sets and `sigtimedwait`, a subreaper, a hook before exec, pipes
// by descriptor number, a read-only mapping of an image, `ptrace` of a thread).
#[allow(unsafe_code)]
mod os;
mod outcome;
mod report;
mod run;
mod set;
mod unblock;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use outcome::{dir_of, io_message, shown, shown_bytes, Outcome, EXIT_FAILED, EXIT_REFUSED};

/// What `ckpt --help` adds after the commands: exit statuses and the variables libckpt reads.
const AFTER_HELP: &str = "\
Exit status:
  run, restart       the program's own: its exit status, or ended by the same signal (a shell
                     shows 128 + N); restart: 2 if the image cannot be restored (nothing
                     changed), 3 if restoring failed midway
  job                the program's exit status (128 + N if signal N ended it); 75 when it
                     stopped the program at a last checkpoint, for a later restart; myrestart's
                     2 or 3 when a restart was refused or failed
  migrate            the moved program's status, as `ssh HOST PROG` gives it (0 with --detach,
                     once it runs there); 1 when it did not move, 2 for bad arguments
  others             0 done, 1 tried and failed (a checkpoint not written, checksums that do not
                     verify; inspect: an image that cannot be restarted), 2 refused (bad
                     arguments, a missing or foreign image, a process ckpt may not attach to; copy: an
                     image that cannot be restarted)

Environment of the program (ckpt run sets them from its options; read when the program starts):
  CKPT_IMAGE=PATH          where the image goes (default: myckpt where the program started)
  CKPT_SIGNAL=SIG          the checkpoint signal (default USR2)
  CKPT_INTERVAL=SECS       also a checkpoint every SECS seconds (fractions allowed)
  CKPT_KEEP=N              keep N older images, IMAGE.1 ... IMAGE.N (N at most 99)
  CKPT_INCREMENTAL=N       images in an incremental chain (default 8; 0: every image full)
  CKPT_SYNC=1              write images with the program stopped, not in a forked writer
  CKPT_COMPRESS=lz4        compress memory in images
  CKPT_SELF_CONTAINED=1    copy the program's and libraries' pages too (no files needed; --self-contained)
  CKPT_KEY=FILE            authenticate images with the key in FILE (private: mode 0600)
  CKPT_TIMES=1             each writer says on stderr when each step of the checkpoint ended
  CKPT_ORIGIN              set by ckpt run and ckpt job: what the program was started as
Environment of ckpt:
  CKPT_KEY=FILE            the key restart, inspect and job check images with, without --key
  CKPT_LIBCKPT=PATH, CKPT_MYRESTART=PATH  where libckpt.so and myrestart are, if not next to ckpt";

#[derive(Parser)]
#[command(name = "ckpt", version, about = "Transparent checkpoint/restart for Linux processes", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run PROG with checkpointing enabled (libckpt.so preloaded); exits with PROG's status.
    Run(run::RunArgs),
    /// Checkpoint a running process (one started by `ckpt run` or with libckpt.so preloaded, or
    /// any other: ckpt attaches to it with ptrace).
    Checkpoint(checkpoint::CheckpointArgs),
    /// Restore the process saved in IMAGE; it continues where it was checkpointed.
    Restart {
        /// The image file.
        image: PathBuf,
        /// IMAGE names a set: restart the newest complete one of IMAGE, IMAGE.1, IMAGE.2, …
        /// (every checksum verified, every base it needs there, taken of the same command as
        /// the newest of them), and say which.
        #[arg(long)]
        newest: bool,
        /// With --newest: take an older image even if it was taken of another command.
        #[arg(long, requires = "newest")]
        allow_changed: bool,
        /// Leave the restored process stopped (SIGSTOP) at its checkpoint, so that a debugger
        /// can attach (`gdb -p PID`); `kill -CONT PID` lets it run.
        #[arg(long)]
        stopped: bool,
        /// Read all memory from the image now rather than mapping the image file.
        #[arg(long)]
        eager: bool,
        /// Skip the checksums of memory contents (headers are always checked).
        #[arg(long)]
        no_verify: bool,
        /// Restore with new IDs (myrestart's PID) rather than the process's own, which need
        /// user and PID namespaces.
        #[arg(long)]
        new_ids: bool,
        /// Give the program this command's stdin, stdout and stderr, even where it had files.
        #[arg(long)]
        inherit_stdio: bool,
        /// Make a process tree whose root led its own session this terminal's job too (a root
        /// that led only its process group always is): Ctrl-C and Ctrl-Z here reach it.
        #[arg(long)]
        foreground: bool,
        /// Restore an image (or base image) that another user owns or that others may write
        /// (refused by default: restoring runs the image's code with your rights), from a copy
        /// made before it is checked.
        #[arg(long)]
        trust_image: bool,
        /// Restore even though the checkpointed process still runs (refused by default: the
        /// two copies would share its files and write over each other's output).
        #[arg(long)]
        allow_running: bool,
        /// Leave the program's stdout and stderr log files as they are. By default a log it
        /// appends to that has only grown since the checkpoint is cut back to its length then
        /// (the restored program prints those lines again), except after a last checkpoint.
        #[arg(long)]
        keep_logs: bool,
        /// Restore even though a file the program could write in place (open for writing, not
        /// to append, or mapped shared and writable) changed since the checkpoint (refused by
        /// default, naming each: the program would go on from what it knew of it then).
        #[arg(long)]
        files_as_is: bool,
        /// The image must carry a MAC made with this key file (`ckpt run --key`); without
        /// --key, CKPT_KEY in the environment names it, if set.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Show what an image holds, whether its checksums verify and whether it can be restarted
    /// (every base image it is built on there and undamaged); exits 1 if it cannot.
    Inspect(inspect::InspectArgs),
    /// Copy IMAGE to DEST as one file that restarts on its own: an incremental image's pages
    /// that are in its base images (IMAGE.base-*) are copied in. IMAGE is verified first.
    Copy(copy::CopyArgs),
    /// Image keys (authenticated images: see `ckpt run --key`).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run PROG as a batch job that outlives its time limit: restart the newest complete image
    /// if there is one, else start PROG; on the stop signal, take a last checkpoint, stop, and
    /// requeue. Exits with PROG's status when PROG ends, 75 when stopped for a later restart.
    Job(job::JobArgs),
    /// Move a running program (and every process below it) to another machine: ssh starts the
    /// far side and hands it a key, the image goes on a TCP connection of its own, encrypted
    /// (or all through ssh: --via-ssh); it runs on while its image is sent, stops only for the
    /// last pages it wrote, and goes on there; the original ends once the copy runs (see
    /// docs/migrate.md).
    Migrate(migrate::MigrateArgs),
    /// The far side of `ckpt migrate` (run by it over ssh).
    #[command(hide = true)]
    Receive(migrate::ReceiveArgs),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new key file FILE: 256 random bits, mode 0600 (it never overwrites a file).
    New {
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`ckpt inspect IMAGE | head`).
    crate::os::default_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Checkpoint(a) => checkpoint::checkpoint(a),
        Command::Restart { image, newest, allow_changed, stopped, eager, no_verify, new_ids, inherit_stdio, foreground, trust_image, allow_running, keep_logs, files_as_is, key } => {
            let key = key::configured(key.as_deref());
            let chosen = if newest {
                let want = if allow_changed { set::Want::Any } else { set::Want::SameAsNewest };
                match set::newest(&image, key.as_deref(), want, trust_image) {
                    // Said by myrestart once the program's logs are in order.
                    Ok(Some(found)) => Ok((Some(found.say("ckpt: restarting")), found.path)),
                    Ok(None) => Err((EXIT_REFUSED, format!("no image at {}", crate::shown(&image)))),
                    Err(e) => Err(e),
                }
            } else {
                Ok((None, image))
            };
            chosen.and_then(|(say, image)| {
                run::restart(&image, &run::RestartFlags { stopped, eager, no_verify, new_ids, inherit_stdio, foreground, trust_image, allow_running, keep_logs, files_as_is, key, say, status_fd: None })
            })
        }
        Command::Inspect(a) => inspect::inspect(a),
        Command::Copy(a) => copy::copy(a),
        Command::Job(a) => job::job(a),
        Command::Migrate(a) => migrate::migrate(a),
        Command::Receive(a) => migrate::receive(a),
        Command::Key(KeyCommand::New { file }) => key::new(&file),
    };
    match result {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("ckpt: {message}");
            ExitCode::from(code)
        }
    }
}
