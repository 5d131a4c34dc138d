//! A real sshd for the tests of `ckpt migrate`, listening on 127.0.0.1 only, on a free port,
//! with its own host key and one client key, all in the test's directory. It is stopped (by its
//! PID, SIGTERM then SIGKILL) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Child,
    pub port: u16,
    /// The client's private key.
    pub key: PathBuf,
    log: PathBuf,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(path).stdin(Stdio::null()).status().expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen -f {} failed: {st}", path.display());
}

impl Sshd {
    /// Whether this machine has an sshd to start (openssh-server).
    pub fn available() -> bool {
        Path::new("/usr/sbin/sshd").exists() && Command::new("ssh").arg("-V").stderr(Stdio::null()).status().is_ok()
    }

    /// Starts sshd with its files in `dir` and waits until it takes connections.
    pub fn start(dir: &Path) -> Sshd {
        Sshd::start_with(dir, "")
    }

    /// [`Sshd::start`], with more lines for its configuration (`SetEnv PATH=…`).
    pub fn start_with(dir: &Path, more_config: &str) -> Sshd {
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let (host_key, key) = (dir.join("host_key"), dir.join("client_key"));
        keygen(&host_key);
        keygen(&key);
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        // sshd's privilege-separation directory; a package installed without a boot has none.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = dir.join("sshd.log");
        for _ in 0..10 {
            // A port the kernel says is free now; another process may take it before sshd
            // binds it, in which case sshd ends and another is tried.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n{more_config}",
                    host_key.display(),
                    dir.join("authorized_keys").display(),
                    dir.join("sshd.pid").display()
                ),
            )
            .unwrap();
            let _ = std::fs::remove_file(&log);
            let mut cmd = Command::new("/usr/sbin/sshd");
            cmd.arg("-D").arg("-f").arg(&config).arg("-E").arg(&log).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            crate::hermetic(&mut cmd);
            let child = cmd.spawn().expect("starting sshd");
            let mut sshd = Sshd { child, port, key: key.clone(), log: log.clone() };
            if sshd.wait_listening() {
                return sshd;
            }
        }
        panic!("sshd did not start; its log: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// Waits until sshd accepts a connection on its port; false if it ended (the port was
    /// taken meanwhile).
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + crate::LONG;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "sshd does not listen on port {} after {:?}; its log: {}", self.port, crate::LONG, std::fs::read_to_string(&self.log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The ssh command (for `ckpt migrate --ssh`) that reaches this sshd as the tests' user.
    pub fn ssh(&self) -> String {
        format!("ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -c aes128-gcm@openssh.com", self.port, self.key.display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Our own child, by its PID: sshd ends its listener; sessions still open end with
        // their processes.
        crate::send_signal(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + crate::SHORT;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
