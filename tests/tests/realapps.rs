//! Real programs as their users run them: a PostgreSQL cluster (the postmaster and all its
//! processes, one tree) with clients on its unix socket and TCP port, and a program inside a
//! tmux session (the tmux server and the program, one tree). Each is checkpointed, killed with
//! SIGKILL, restarted with `ckpt restart`, and must go on from its checkpointed state.
//!
//! Skipped, with a line saying why, where PostgreSQL (Debian's `postgresql` and `libpq-dev`) or
//! tmux is not installed; `.ci/run` installs them.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The directory of PostgreSQL's server programs (`initdb`, `postgres`): Debian keeps them out
/// of `PATH`, one directory per major version; the newest is taken.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").exists() && bin.join("initdb").exists() && bin.join("psql").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Whether PostgreSQL can be run here: its programs, libpq's header (for the client), and a
/// user other than root to run the server as (the server refuses root); if not, the test is
/// [`skip`]ped.
fn can_run_postgres(test: &str) -> Option<PathBuf> {
    let Some(bin) = postgres_bin() else {
        skip(test, "needs PostgreSQL's server (Debian's postgresql package: /usr/lib/postgresql/N/bin)");
        return None;
    };
    if !Path::new("/usr/include/postgresql/libpq-fe.h").exists() {
        skip(test, "needs libpq's header, for its client (Debian's libpq-dev)");
        return None;
    }
    if euid() == 0 && !can_be_another_user(test) {
        return None;
    }
    Some(bin)
}

/// `args` run as the server's user: `nobody` when the tests run as root (PostgreSQL refuses to
/// run as root), else as ourselves.
fn as_server_user<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    if euid() == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(&args[0]);
        c.args(&args[1..]);
        c
    }
}

/// The user ID of [`as_server_user`]'s user.
fn server_uid() -> u32 {
    if euid() != 0 {
        return euid();
    }
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("nobody's user ID")
}

/// A PostgreSQL cluster in a test's directory: its data directory, made by `initdb`, and the
/// socket directory and TCP port its server listens on.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// `initdb` in `wd` (given to the server's user), with trusted local connections.
    fn init(bin: &Path, wd: &Workdir) -> Cluster {
        if euid() == 0 {
            let st = Command::new("chown").args(["nobody:nogroup"]).arg(&wd.path).status().unwrap();
            assert!(st.success(), "chown of {}", wd.path.display());
        }
        let data = wd.path.join("data");
        let mut c = as_server_user(&[bin.join("initdb").as_os_str(), "-D".as_ref(), data.as_os_str(), "-A".as_ref(), "trust".as_ref(), "-U".as_ref(), "postgres".as_ref(), "--no-sync".as_ref()]);
        c.current_dir(&wd.path);
        let out = run_within(c, LONG);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        Cluster { bin: bin.to_path_buf(), dir: wd.path.clone(), port: free_port() }
    }

    /// `ckpt run --signal 40 -- postgres …` (PostgreSQL owns SIGUSR2), its image `myckpt` in the
    /// cluster's directory. Autovacuum is off and the server's own checkpoints far apart: the
    /// tree must write nothing between its image and its kill (files written after an image are
    /// a matter of their own).
    fn start_under_ckpt(&self) -> Proc {
        let port = self.port.to_string();
        let data = self.dir.join("data");
        let image = self.dir.join("myckpt");
        let postgres = self.bin.join("postgres");
        let ckpt = ckpt();
        let args: Vec<&std::ffi::OsStr> = vec![
            ckpt.as_os_str(),
            "run".as_ref(),
            "--signal".as_ref(),
            "40".as_ref(),
            "--image".as_ref(),
            image.as_os_str(),
            "--".as_ref(),
            postgres.as_os_str(),
            "-D".as_ref(),
            data.as_os_str(),
            "-k".as_ref(),
            self.dir.as_os_str(),
            "-p".as_ref(),
            port.as_ref(),
            "-c".as_ref(),
            "listen_addresses=127.0.0.1".as_ref(),
            "-c".as_ref(),
            "shared_buffers=16MB".as_ref(),
            "-c".as_ref(),
            "max_connections=10".as_ref(),
            "-c".as_ref(),
            "autovacuum=off".as_ref(),
            "-c".as_ref(),
            "checkpoint_timeout=1h".as_ref(),
        ];
        let mut c = as_server_user(&args);
        c.current_dir(&self.dir);
        let server = Proc::spawn(c, "postgres under ckpt run");
        server.wait_stderr("database system is ready to accept connections", LONG);
        server
    }

    /// `psql` running `sql` over the unix socket (`tcp`: over TCP), its rows as `a|b` lines; it
    /// must succeed.
    fn psql(&self, sql: &str, tcp: bool) -> String {
        let host = if tcp { "127.0.0.1".to_string() } else { self.dir.display().to_string() };
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", &host, "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-c", sql]);
        let out = run_within(c, LONG);
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until the server answers a query (a restored server says nothing when it is back).
    fn wait_answering(&self, server: &mut Proc) {
        let deadline = Instant::now() + LONG;
        loop {
            let mut c = Command::new(self.bin.join("psql"));
            c.args(["-X", "-A", "-t", "-h", &self.dir.display().to_string(), "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-c", "select 1"]);
            if run_within(c, LONG).status.success() {
                return;
            }
            if let Some(st) = server.try_exit() {
                panic!("the server ended ({st}): {}", server.stderr());
            }
            assert!(Instant::now() < deadline, "the server does not answer: {}", server.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every row of `t` is `i, 'row ' || i` for `i` in 1..=n, and no other.
    fn assert_rows(&self, n: u64, tcp: bool) {
        let got = self.psql("select count(*), coalesce(sum(i), 0), count(*) filter (where s = 'row ' || i), coalesce(min(i), 0), coalesce(max(i), 0) from t", tcp);
        assert_eq!(got, format!("{n}|{}|{n}|{}|{n}", n * (n + 1) / 2, n.min(1)), "the rows of t");
    }

    /// A client ([`pgclient`]) connected over TCP: idle until the file `go` exists, then it
    /// counts the rows, inserts `rows` from `first` on, and ends.
    fn client(&self, go: &Path, rows: u64, first: u64) -> Proc {
        let mut c = Command::new(prog("pgclient", &["-lpq"]));
        c.arg(format!("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10", self.port)).arg(go).arg(rows.to_string()).arg(first.to_string());
        let client = Proc::spawn(c, "pgclient");
        client.wait_lines(1, LONG);
        assert_eq!(client.lines(), ["connected"], "{}", client.stderr());
        client
    }

    /// `ckpt checkpoint PID --wait` (the server's PID, or its `ckpt restart`'s).
    fn checkpoint(&self, pid: u32) {
        let mut c = Command::new(ckpt());
        c.args(["checkpoint", &pid.to_string(), "--wait"]);
        let out = run_within(c, LONG);
        assert!(out.status.success(), "ckpt checkpoint {pid}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `ckpt restart myckpt`, as the server's user, in the cluster's directory.
    fn restart(&self) -> Proc {
        let image = self.dir.join("myckpt");
        let mut c = as_server_user(&[ckpt().as_os_str(), "restart".as_ref(), image.as_os_str()]);
        c.current_dir(&self.dir);
        Proc::spawn(c, "ckpt restart of the postgres tree")
    }

    /// The SysV shared memory segment named in `postmaster.pid` (its key and ID), which a
    /// killed server leaves behind.
    fn segment(&self) -> Option<(String, String)> {
        let pidfile = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        let mut f = pidfile.lines().nth(6)?.split_whitespace();
        Some((f.next()?.to_string(), f.next()?.to_string()))
    }
}

/// What a killed PostgreSQL server leaves behind, removed when the test ends (a server that
/// shuts down removes its own): the SysV segment named in `postmaster.pid` (each only if it
/// still has the cluster's key), and the POSIX shared memory of its dynamic segments
/// (`/dev/shm/PostgreSQL.N`: each that appeared during the test, of the server's user). It also
/// keeps the tests that run a server to one at a time.
struct Leftovers {
    segments: Vec<(String, String)>,
    posix_before: Vec<std::ffi::OsString>,
    _one_server: std::sync::MutexGuard<'static, ()>,
}

fn posix_segments() -> Vec<std::ffi::OsString> {
    let named = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().starts_with("PostgreSQL.");
    std::fs::read_dir("/dev/shm").into_iter().flatten().flatten().filter(named).map(|e| e.file_name()).collect()
}

impl Leftovers {
    fn new() -> Leftovers {
        static ONE_SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = ONE_SERVER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Leftovers { segments: Vec::new(), posix_before: posix_segments(), _one_server: guard }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
        for (key, id) in &self.segments {
            let ours = table.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 1 && f[0] == key && f[1] == id
            });
            if ours {
                let _ = Command::new("ipcrm").args(["-m", id]).status();
            }
        }
        use std::os::unix::fs::MetadataExt;
        let server_uid = server_uid();
        for name in posix_segments().into_iter().filter(|n| !self.posix_before.contains(n)) {
            let path = Path::new("/dev/shm").join(name);
            if std::fs::metadata(&path).is_ok_and(|m| m.uid() == server_uid) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The whole life of a database across two checkpoints: a cluster made by `initdb`, its server
/// under `ckpt run`, a table of 2,000 rows written over the unix socket, and a client connected
/// over TCP, idle. The tree (postmaster, checkpointer, background writer, WAL writer, the
/// launchers and the client's backend) is checkpointed at one moment, nothing written after,
/// and SIGKILLed. Restarted: the client finds its connection gone, reconnects, reads every row
/// and commits 500 more; new clients over both sockets read all 2,500; the server's own
/// checkpoint (`CHECKPOINT`) writes its restored buffers. The restored tree, with another client
/// connected (a backend forked after the restart), is checkpointed again, killed and restarted,
/// and goes on the same way; then it shuts down cleanly, and a plain server started on the data
/// directory afterwards recovers nothing and reads every row.
#[test]
fn postgres_continues_with_every_committed_row_and_its_clients_reconnect() {
    let test = "postgres_continues_with_every_committed_row_and_its_clients_reconnect";
    let Some(bin) = can_run_postgres(test) else { return };
    let wd = Workdir::new("postgres");
    let cluster = Cluster::init(&bin, &wd);
    let mut leftovers = Leftovers::new();
    let mut server = cluster.start_under_ckpt();
    leftovers.segments.extend(cluster.segment());
    cluster.psql("create table t (i int primary key, s text); insert into t select g, 'row ' || g from generate_series(1, 2000) g", false);
    cluster.assert_rows(2000, true);

    let go = wd.path.join("go");
    let mut client = cluster.client(&go, 500, 2001);
    cluster.checkpoint(server.pid);
    server.kill_tree();
    let mut restored = cluster.restart();
    cluster.wait_answering(&mut restored);
    cluster.assert_rows(2000, false);
    std::fs::write(&go, "").unwrap();
    let st = client.wait_exit(LONG);
    assert!(st.success(), "the client: {st}; {:?}, {}", client.lines(), client.stderr());
    let lines = client.lines();
    assert!(lines[1].starts_with("lost: "), "the client did not see its connection go: {lines:?}");
    assert_eq!(lines[2..], ["reconnected", "count 2000", "inserted 500"], "{lines:?}");
    cluster.assert_rows(2500, true);
    cluster.psql("checkpoint", false);

    // A second generation: the restored tree, with a backend it forked for a new client.
    std::fs::remove_file(&go).unwrap();
    let mut client = cluster.client(&go, 500, 2501);
    cluster.checkpoint(restored.pid);
    restored.kill_tree();
    let mut again = cluster.restart();
    cluster.wait_answering(&mut again);
    cluster.assert_rows(2500, true);
    std::fs::write(&go, "").unwrap();
    let st = client.wait_exit(LONG);
    assert!(st.success(), "the second client: {st}; {:?}, {}", client.lines(), client.stderr());
    assert_eq!(client.lines()[2..], ["reconnected", "count 2500", "inserted 500"], "{:?}", client.lines());
    cluster.assert_rows(3000, false);

    // A clean shutdown (SIGINT, passed on to the postmaster) writes everything out; a server
    // started afterwards on the data directory finds it shut down cleanly and every row there.
    again.signal(libc::SIGINT);
    let st = again.wait_exit(LONG);
    assert!(st.success(), "the restored server's shutdown: {st}; {}", again.stderr());
    assert!(again.stderr().contains("database system is shut down"), "{}", again.stderr());
    let data = wd.path.join("data");
    let postgres = bin.join("postgres");
    let port = cluster.port.to_string();
    let mut c = as_server_user(&[postgres.as_os_str(), "-D".as_ref(), data.as_os_str(), "-k".as_ref(), wd.path.as_os_str(), "-p".as_ref(), port.as_ref(), "-c".as_ref(), "listen_addresses=127.0.0.1".as_ref()]);
    c.current_dir(&wd.path);
    let mut plain = Proc::spawn(c, "postgres after the restored one");
    let log = plain.wait_stderr("database system is ready to accept connections", LONG);
    assert!(log.contains("database system was shut down at") && !log.contains("recovery"), "{log}");
    cluster.assert_rows(3000, true);
    plain.signal(libc::SIGINT);
    assert!(plain.wait_exit(LONG).success(), "{}", plain.stderr());
}

/// PostgreSQL keeps a second server off a data directory in use by two checks of
/// `postmaster.pid`: whether the PID it names runs, and whether the SysV shared memory segment
/// it names (by key and ID) still has processes attached. A restored server's PID there is its
/// PID in its namespace, which names no process (or another) outside it, so only the segment can
/// tell. A second server started on the restored server's data directory must refuse to start,
/// not run crash recovery over the live cluster.
#[test]
#[ignore = "needs the restored SysV shm segment under its shmid, attached where other processes see it: ipc (issue 27 point 6)"]
fn a_second_postgres_server_is_kept_off_a_restored_servers_data_directory() {
    let test = "a_second_postgres_server_is_kept_off_a_restored_servers_data_directory";
    let Some(bin) = can_run_postgres(test) else { return };
    let wd = Workdir::new("postgres-interlock");
    let cluster = Cluster::init(&bin, &wd);
    let mut leftovers = Leftovers::new();
    let mut server = cluster.start_under_ckpt();
    leftovers.segments.extend(cluster.segment());
    cluster.psql("create table t (i int primary key, s text); insert into t select g, 'row ' || g from generate_series(1, 100) g", false);
    cluster.checkpoint(server.pid);
    server.kill_tree();
    let mut restored = cluster.restart();
    cluster.wait_answering(&mut restored);

    let other = wd.path.join("other");
    std::fs::create_dir(&other).unwrap();
    if euid() == 0 {
        assert!(Command::new("chown").arg("nobody:nogroup").arg(&other).status().unwrap().success());
    }
    let (data, postgres, port) = (wd.path.join("data"), bin.join("postgres"), free_port().to_string());
    let mut c = as_server_user(&[postgres.as_os_str(), "-D".as_ref(), data.as_os_str(), "-k".as_ref(), other.as_os_str(), "-p".as_ref(), port.as_ref(), "-c".as_ref(), "listen_addresses=".as_ref()]);
    c.current_dir(&wd.path);
    let mut second = Proc::spawn(c, "a second postgres on the same data directory");
    let deadline = Instant::now() + LONG;
    let st = loop {
        if let Some(st) = second.try_exit() {
            break st;
        }
        if second.stderr().contains("ready to accept connections") {
            leftovers.segments.extend(cluster.segment());
            second.kill_tree();
            panic!("a second server started on the restored server's data directory: {}", second.stderr());
        }
        assert!(Instant::now() < deadline, "the second server neither started nor refused: {}", second.stderr());
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!st.success() && second.stderr().contains("FATAL"), "{st}: {}", second.stderr());
    cluster.assert_rows(100, true);
    restored.signal(libc::SIGINT);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
}

/// `tmux -S SOCK ARGS`, which must succeed; its stdout.
fn tmux(sock: &Path, args: &[&str]) -> String {
    let mut c = Command::new("tmux");
    c.arg("-S").arg(sock).args(args);
    let out = run_within(c, LONG);
    assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The counter's lines (`i x`) in the pane, its history included, in order; or tmux's error
/// (no server answering yet).
fn pane_lines(sock: &Path) -> Result<Vec<String>, String> {
    let mut c = Command::new("tmux");
    c.arg("-S").arg(sock).args(["capture-pane", "-p", "-S", "-5000"]);
    let out = run_within(c, LONG);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let counted = |l: &&str| l.split(' ').count() == 2 && l.split(' ').all(|f| f.parse::<u64>().is_ok());
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(counted).map(String::from).collect())
}

/// Waits until the pane shows at least `n` lines of the counter.
fn wait_pane_lines(sock: &Path, n: usize, what: &str, stderr: impl Fn() -> String) -> Vec<String> {
    let deadline = Instant::now() + LONG;
    loop {
        let lines = pane_lines(sock);
        if let Ok(l) = &lines {
            if l.len() >= n {
                return l.clone();
            }
        }
        assert!(Instant::now() < deadline, "{what}: waiting for {n} lines of the counter in the pane, it shows {:?}; {}", lines.map(|l| (l.len(), l.last().cloned())), stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A program inside a tmux session: the tmux server and the counter in its pane, one tree (the
/// server runs in the foreground, `tmux -D`, as the root of `ckpt run`; started by
/// `new-session` it would daemonize, leaving the tree). The tree is checkpointed, killed and
/// restarted; the server answers again on its socket, and the counter goes on in its pane: the
/// pane's lines, its history included, are the counter's from its first, each once, in order,
/// well past the checkpoint (none of them on the restart's own output).
#[test]
fn a_program_in_a_tmux_session_goes_on_counting_in_its_pane() {
    let test = "a_program_in_a_tmux_session_goes_on_counting_in_its_pane";
    if !Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()) {
        skip(test, "needs tmux (Debian's tmux package)");
        return;
    }
    let counter = prog("counter", &[]);
    let mut reference_cmd = Command::new(&counter);
    reference_cmd.args(["3000", "0"]);
    let reference = reference_run(reference_cmd, LONG);
    let wd = Workdir::new("tmux");
    let (sock, image) = (wd.path.join("sock"), wd.image());
    let mut c = Command::new(ckpt());
    c.args(["run", "--signal", "40", "--image"]).arg(&image).args(["--", "tmux", "-D", "-f", "/dev/null", "-S"]).arg(&sock);
    c.current_dir(&wd.path);
    let mut server = Proc::spawn(c, "the tmux server under ckpt run");
    wait_for_path(&sock, LONG, "tmux's socket");
    tmux(&sock, &["new-session", "-d", "-x", "80", "-y", "24", &format!("exec '{}' 3000 50000", counter.display())]);
    wait_pane_lines(&sock, 10, "before the checkpoint", || server.stderr());
    let mut c = Command::new(ckpt());
    c.args(["checkpoint", &server.pid.to_string(), "--wait"]);
    let out = run_within(c, LONG);
    assert!(out.status.success(), "ckpt checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    let seen = pane_lines(&sock).unwrap().len();
    let at_kill = wait_pane_lines(&sock, seen + 3, "after the checkpoint", || server.stderr()).len();
    server.kill_tree();

    let mut c = Command::new(ckpt());
    c.arg("restart").arg(&image).current_dir(&wd.path);
    let mut restored = Proc::spawn(c, "ckpt restart of the tmux tree");
    let said = || {
        let out = restored.lines();
        format!("the restart's stdout: {} lines, the first {:?}, the last {:?}; its stderr {:?}", out.len(), out.first(), out.last(), restored.stderr())
    };
    let lines = wait_pane_lines(&sock, at_kill + 20, "after the restart", said);
    assert_eq!(lines[..], reference[..lines.len()], "the pane after the restart");
    assert!(restored.lines().is_empty(), "the counter printed on the restart's output: {:?}", restored.lines());
    assert!(tmux(&sock, &["list-sessions", "-F", "#{session_windows}"]).trim() == "1");
    restored.kill_tree();
}

/// A parallel query runs at the checkpoint: its leader and two parallel workers share a dynamic
/// shared memory segment, POSIX shared memory (`/dev/shm/PostgreSQL.N`) that the tree maps.
/// The query ends before the kill, and its leader removes the segment, as PostgreSQL does. The
/// image must restart all the same (the workers and the leader come back, find their client
/// gone, and end), and the server answer with every row.
#[test]
fn postgres_restarts_from_an_image_taken_during_a_parallel_query() {
    let test = "postgres_restarts_from_an_image_taken_during_a_parallel_query";
    let Some(bin) = can_run_postgres(test) else { return };
    let wd = Workdir::new("postgres-parallel");
    let cluster = Cluster::init(&bin, &wd);
    let mut leftovers = Leftovers::new();
    let mut server = cluster.start_under_ckpt();
    leftovers.segments.extend(cluster.segment());
    cluster.psql("create table t (i int primary key, s text); insert into t select g, 'row ' || g from generate_series(1, 3000) g; analyze t", false);
    let mut c = Command::new(bin.join("psql"));
    let sql = "set max_parallel_workers_per_gather = 2; set parallel_setup_cost = 0; set parallel_tuple_cost = 0; set min_parallel_table_scan_size = 0; \
               select count(*) from t where pg_sleep(0.001) is not null";
    c.args(["-X", "-q", "-A", "-t", "-h", &wd.path.display().to_string(), "-p", &cluster.port.to_string(), "-U", "postgres", "-d", "postgres", "-c", sql]);
    let mut query = Proc::spawn(c, "a parallel query");
    let workers = || descendants(server.pid).into_iter().filter(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("parallel worker"))).count();
    let deadline = Instant::now() + LONG;
    while workers() < 2 {
        assert!(query.try_exit().is_none() && Instant::now() < deadline, "no parallel workers: {:?} {}", query.lines(), query.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.checkpoint(server.pid);
    let st = query.wait_exit(LONG);
    assert!(st.success() && query.lines() == ["3000"], "{st}: {:?} {}", query.lines(), query.stderr());
    server.kill_tree();
    let mut restored = cluster.restart();
    cluster.wait_answering(&mut restored);
    cluster.assert_rows(3000, true);
    restored.signal(libc::SIGINT);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
}

/// Under load: `pgbench` (TPC-B-like transactions from two clients) runs against the server when
/// its last checkpoint is taken (`ckpt checkpoint --kill`: the tree stopped, its image written,
/// the tree ended, so nothing is written after the image). Restarted, the server holds every
/// transaction pgbench saw committed (and at most one more per client: committed, its answer
/// lost with the connection), and the balances agree: the sums over accounts, tellers and
/// branches are each the sum of the history's deltas.
#[test]
fn postgres_under_load_keeps_every_transaction_its_clients_saw_committed() {
    let test = "postgres_under_load_keeps_every_transaction_its_clients_saw_committed";
    let Some(bin) = can_run_postgres(test) else { return };
    let wd = Workdir::new("postgres-load");
    let cluster = Cluster::init(&bin, &wd);
    let mut leftovers = Leftovers::new();
    let server = cluster.start_under_ckpt();
    leftovers.segments.extend(cluster.segment());
    let (host, port) = (wd.path.display().to_string(), cluster.port.to_string());
    let pgbench = |args: &[&str]| {
        let mut c = Command::new(bin.join("pgbench"));
        c.args(["-h", &host, "-p", &port, "-U", "postgres"]).args(args).arg("postgres");
        c
    };
    let out = run_within(pgbench(&["-i", "-q", "-s", "1"]), LONG);
    assert!(out.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&out.stderr));
    let mut load = Proc::spawn(pgbench(&["-c", "2", "-T", "600"]), "pgbench");
    let deadline = Instant::now() + LONG;
    while cluster.psql("select count(*) from pgbench_history", false).parse::<u64>().unwrap() < 300 {
        assert!(load.try_exit().is_none() && Instant::now() < deadline, "pgbench: {}", load.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = Command::new(ckpt());
    c.args(["checkpoint", &server.pid.to_string(), "--kill"]);
    let out = run_within(c, LONG);
    assert!(out.status.success(), "ckpt checkpoint --kill: {}", String::from_utf8_lossy(&out.stderr));
    load.wait_exit(LONG);
    let text = load.stdout_text();
    let seen: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("pgbench said no count: {text} {}", load.stderr()));
    assert!(seen >= 300, "{text}");
    wait_dead(server.pid);
    drop(server);

    let mut restored = cluster.restart();
    cluster.wait_answering(&mut restored);
    let kept: u64 = cluster.psql("select count(*) from pgbench_history", true).parse().unwrap();
    assert!((seen..=seen + 2).contains(&kept), "pgbench saw {seen} transactions committed, the restored server has {kept}");
    let sums = cluster.psql(
        "select (select sum(delta) from pgbench_history), (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches)",
        false,
    );
    let sums: Vec<&str> = sums.split('|').collect();
    assert!(sums.iter().all(|s| *s == sums[0]), "the balances disagree: {sums:?}");
    restored.signal(libc::SIGINT);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
}
