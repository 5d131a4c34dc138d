//! ckpt under a real Slurm: `examples/slurm/ckpt-job.sh` submitted with `sbatch` to a one-node
//! cluster this test starts (munged, slurmctld, slurmd, with a configuration of its own) and
//! stops again, by PID, whatever happens. Skipped, with a message, where Slurm is not
//! installed or the test does not run as root (slurmd must).
//!
//! One job's work takes three times its time limit (`--time=1`, 3 minutes of work): it is
//! preempted twice (`scancel --signal=USR1 --batch`, the script requeues itself) and then
//! stopped by Slurm's own warning before the time limit (`--signal=B:USR1@30`), as often as it
//! takes. A second job from the same script and directory runs beside it and is preempted
//! once. Each job's output, over all its starts, must be exactly an uninterrupted run's. Slurm
//! holds a requeued job for a while (`BeginTime`); the test releases it two seconds later
//! (`scontrol update StartTime=now`). `make test` runs it (`--ignored`) beside the other tests,
//! since it mostly waits.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The programs this test needs, all found on PATH (or in /usr/sbin).
fn slurm_missing() -> Option<String> {
    let path = format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default());
    ["munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "squeue", "sinfo"]
        .into_iter()
        .find(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .map(String::from)
}

/// A one-node cluster of our own. Dropping it kills every process it started, and everything
/// those started (slurmstepd and the jobs come to this process, a subreaper).
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<Child>,
}

impl Cluster {
    #[allow(unsafe_code)] // becomes a subreaper; random bytes for the munge key
    fn start(dir: &Path) -> Cluster {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout).unwrap().trim().to_string();
        for d in ["state", "spool", "munge", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let munge = dir.join("munge");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut random = vec![0u8; 128];
        // SAFETY: getrandom fills the buffer we own.
        assert_eq!(unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) }, 128);
        std::fs::write(munge.join("key"), &random).unwrap();
        std::fs::set_permissions(munge.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let socket = munge.join("socket");
        let conf = dir.join("slurm.conf");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=ckpttest\nSlurmctldHost={host}\nSlurmctldPort={}\nSlurmdPort={}\nSlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobRequeue=1\nReturnToService=2\nSchedulerType=sched/builtin\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nMpiDefault=none\nKillWait=10\nMinJobAge=600\nInactiveLimit=0\n\
                 NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN\nPartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                free_port(),
                free_port(),
                socket.display()
            ),
        )
        .unwrap();
        let mut c = Cluster { dir: dir.to_path_buf(), conf, daemons: Vec::new() };
        let log = |name: &str| std::fs::File::create(dir.join("log").join(name)).unwrap();
        let mut munged = Command::new("munged");
        munged
            .args(["-F", "-f"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", munge.join("key").display()))
            .arg(format!("--pid-file={}", munge.join("pid").display()))
            .arg(format!("--seed-file={}", munge.join("seed").display()))
            .arg(format!("--log-file={}", dir.join("log/munged.log").display()));
        c.spawn(munged, log("munged.out"));
        c.wait_for(|| socket.exists(), "munged's socket");
        let mut ctld = Command::new("slurmctld");
        ctld.args(["-D", "-i", "-f"]).arg(&c.conf);
        c.spawn(ctld, log("slurmctld.out"));
        let mut slurmd = Command::new("slurmd");
        slurmd.args(["-D", "-f"]).arg(&c.conf);
        c.spawn(slurmd, log("slurmd.out"));
        c.wait_for(|| c.run("sinfo", &["-h", "-o", "%T"]).trim() == "idle", "the node to be idle");
        c
    }

    fn spawn(&mut self, mut cmd: Command, log: std::fs::File) {
        cmd.env("SLURM_CONF", &self.conf).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        hermetic(&mut cmd);
        let what = format!("{cmd:?}");
        self.daemons.push(cmd.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}")));
    }

    /// A client command's stdout.
    fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = Command::new(prog).args(args).env("SLURM_CONF", &self.conf).stderr(Stdio::inherit()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, ok: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + LONG;
        while !ok() {
            if Instant::now() > deadline {
                let logs = ["slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"]
                    .map(|l| format!("--- {l}:\n{}", std::fs::read_to_string(self.dir.join("log").join(l)).unwrap_or_default()));
                panic!("waiting for {what}: gave up after {LONG:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `scontrol show job ID` as `(JobState, Restarts, ExitCode)`.
    fn job(&self, id: &str) -> (String, u32, String) {
        let text = self.run("scontrol", &["show", "job", id]);
        let field = |name: &str| {
            text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or("").to_string()
        };
        (field("JobState"), field("Restarts").parse().unwrap_or(0), field("ExitCode"))
    }
}

impl Drop for Cluster {
    #[allow(unsafe_code)] // reaps the daemons it inherited as a subreaper
    fn drop(&mut self) {
        // Everything below this process: daemons, slurmstepd (which come here when slurmd
        // daemonizes them), jobs.
        kill_all_below(std::process::id());
        for d in &mut self.daemons {
            let _ = d.wait();
        }
        // Reap the rest that came to us.
        // SAFETY: waitpid with WNOHANG on any child; ECHILD or 0 ends it.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }
}

/// One job of the test: its ID, its output file, and how many preemptions it is to get.
struct Job {
    id: String,
    out: PathBuf,
    err: PathBuf,
    preempt: u32,
    preempted: u32,
    /// Whether Slurm's time limit is to stop it too.
    timed: bool,
    /// Output lines when it last started running, to let it make progress before the next
    /// preemption.
    lines_at_start: usize,
    running: bool,
    /// Whether it was preempted since it last started.
    signalled: bool,
    /// Since when it waits to start again.
    pending_since: Option<Instant>,
    reference: Vec<String>,
    done: bool,
}

#[test]
#[ignore = "`make test` runs it in the background beside the others (about three and a half minutes)"]
fn batch_job_outlives_its_time_limit_through_preemptions_and_requeues() {
    if let Some(p) = slurm_missing() {
        skip("batch_job_outlives_its_time_limit_through_preemptions_and_requeues", &format!("{p} is not installed (apt-get install slurmctld slurmd slurm-client munge)"));
        return;
    }
    if euid() != 0 {
        skip("batch_job_outlives_its_time_limit_through_preemptions_and_requeues", "slurmd runs jobs as their users only as root");
        return;
    }
    let wd = Workdir::new("slurm");
    let cluster = Cluster::start(&wd.path.join("cluster"));
    let submit = wd.path.join("submit");
    std::fs::create_dir(&submit).unwrap();
    let counter = prog("counter", &[]);
    let script = root().join("examples/slurm/ckpt-job.sh");
    // (lines, delay in µs, preemptions, time limit): 3600 lines at 50 ms are 3 minutes of work.
    let specs = [(3600usize, 50_000u32, 2u32, true), (400, 50_000, 1, false)];
    let mut jobs = Vec::new();
    for (n, delay, preempt, timed) in specs {
        let time = if timed { "--time=1" } else { "--time=10" };
        let reference = {
            let mut c = Command::new(&counter);
            c.args([n.to_string(), "0".to_string()]);
            reference_run(c, LONG)
        };
        let out = Command::new("sbatch")
            .args(["--parsable", "--output=out.%j", "--error=err.%j", time, "--signal=B:USR1@30"])
            .arg(&script)
            .arg(&counter)
            .args([n.to_string(), delay.to_string()])
            .current_dir(&submit)
            .env("SLURM_CONF", &cluster.conf)
            .env("CKPT", ckpt())
            .output()
            .unwrap();
        assert!(out.status.success(), "sbatch: {}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap().to_string();
        jobs.push(Job {
            out: submit.join(format!("out.{id}")),
            err: submit.join(format!("err.{id}")),
            id,
            preempt,
            preempted: 0,
            timed,
            lines_at_start: 0,
            running: false,
            signalled: false,
            pending_since: None,
            reference,
            done: false,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while jobs.iter().any(|j| !j.done) {
        for j in jobs.iter_mut().filter(|j| !j.done) {
            let (state, restarts, exit) = cluster.job(&j.id);
            let err = || std::fs::read_to_string(&j.err).unwrap_or_default();
            match state.as_str() {
                "PENDING" => {
                    // Requeued and held back for a while: released soon. Not in the second it
                    // was requeued in: slurmd refuses a launch credential made in the second its
                    // job was killed ("Job credential revoked"), and the job fails.
                    if j.running || j.pending_since.is_none() {
                        j.pending_since = Some(Instant::now());
                    }
                    j.running = false;
                    if restarts > 0 && j.pending_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                        cluster.run("scontrol", &["update", &format!("JobId={}", j.id), "StartTime=now"]);
                    }
                }
                "RUNNING" => {
                    if !j.running {
                        j.running = true;
                        j.pending_since = None;
                        j.signalled = false;
                        j.lines_at_start = file_lines(&j.out).len();
                    }
                    // A preemption once this start has made progress.
                    if j.preempted < j.preempt && !j.signalled && file_lines(&j.out).len() >= j.lines_at_start + 40 {
                        cluster.run("scancel", &["--signal=USR1", "--batch", &j.id]);
                        j.preempted += 1;
                        j.signalled = true;
                    }
                }
                "COMPLETED" => {
                    assert_eq!(exit, "0:0", "job {}: {}", j.id, err());
                    let out = file_lines(&j.out);
                    assert!(out == j.reference, "job {}: its output over {restarts} requeues differs from an uninterrupted run ({} lines, {} expected); stderr:\n{}", j.id, out.len(), j.reference.len(), err());
                    assert_eq!(j.preempted, j.preempt, "job {}: finished before its preemptions", j.id);
                    if j.timed {
                        assert!(restarts > j.preempt, "job {}: {restarts} requeues: the time limit never stopped it", j.id);
                    } else {
                        assert_eq!(restarts, j.preempt, "job {}", j.id);
                    }
                    let e = err();
                    assert_eq!(e.matches("stopped at its last checkpoint").count() as u32, restarts, "job {}: {e}", j.id);
                    assert_eq!(e.matches("ckpt: restarting").count() as u32, restarts, "job {}: {e}", j.id);
                    j.done = true;
                }
                "REQUEUE_HOLD" => {
                    cluster.run("scontrol", &["release", &j.id]);
                }
                "FAILED" | "TIMEOUT" | "CANCELLED" | "NODE_FAIL" | "OUT_OF_MEMORY" | "BOOT_FAIL" | "DEADLINE" | "PREEMPTED" => {
                    panic!("job {}: {state} after {restarts} requeues; stderr:\n{}", j.id, err())
                }
                // On the way from one state to another (CONFIGURING, COMPLETING, REQUEUED,
                // SIGNALING, …).
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "the jobs did not finish in 15 minutes: {:?}", jobs.iter().map(|j| (&j.id, cluster.job(&j.id))).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(cluster);
}
