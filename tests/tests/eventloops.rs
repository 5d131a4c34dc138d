//! The kernel objects event loops are built from, across a restart: pipes, socket pairs,
//! eventfd, timerfd, signalfd, inotify, memfd and epoll over all of them; listening sockets;
//! and connections to the outside world, which come back reset so the program reconnects;
//! timerfds that expired and were not read at the checkpoint.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// What objects.c prints once it has drained everything, when `created` is the file the test
/// made in the watched directory.
fn drained(created: &str) -> String {
    format!(
        "ready=abcdefgh pipe=m0,m1,m2,m3,m4,m5,m6,m7 s0=to0 s1=to1 dgram=d1,d2,d3 eventfd=42 timer=1 sig=10 created={created}@2 \
         memfd=sealed-data/hello-map seals=6 shared=1 sndbuf=131072 flags=1 abs=1"
    )
}

/// One program holding a self-pipe with messages in flight, a stream and a datagram socket
/// pair with data queued, an eventfd with a count, a periodic timerfd, a signalfd, an inotify
/// watch, and a sealed memfd mapped shared, all under one epoll instance. A checkpoint leaves
/// the running program's objects untouched; the restarted program finds every one as it was,
/// sees a file created after the restart, and gets SIGUSR1 through its signalfd.
#[test]
fn every_object_of_an_event_loop_comes_back() {
    let wd = Workdir::new("objects");
    let dir = wd.path.join("watched");
    std::fs::create_dir(&dir).unwrap();
    let mut c = Command::new(prog("objects", &[]));
    c.arg(&dir);
    let mut orig = Proc::preloaded(c, &wd.image(), "objects");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    // Checkpointed and going on: everything is still there for the running program.
    std::fs::write(dir.join("before"), "").unwrap();
    orig.signal(libc::SIGUSR1);
    assert!(orig.wait_exit(LONG).success(), "{}", orig.stderr());
    assert_eq!(orig.lines().last().unwrap(), &drained("before"), "the checkpoint disturbed the running program");
    std::fs::remove_file(dir.join("before")).unwrap();

    let mut restored = Proc::restart(&wd.image());
    restored.wait_until(|l| l.iter().any(|l| l.starts_with("tick ")), LONG, "ticks after the restart");
    std::fs::write(dir.join("after"), "").unwrap();
    restored.signal(libc::SIGUSR1);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().unwrap(), &drained("after"), "stderr: {}", restored.stderr());
    assert!(!restored.stderr().contains("not restored"), "{}", restored.stderr());
}

/// GETs `path` from 127.0.0.1:`port`, retrying refused connections until `deadline` (the
/// server may still be starting); returns the whole response, or why there is none.
fn http_get(port: u16, path: &str, deadline: Instant) -> Result<String, String> {
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(LONG)).unwrap();
                write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).map_err(|e| e.to_string())?;
                return Ok(out);
            }
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("no server on port {port}: {e}")),
        }
    }
}

/// `python3 -m http.server` listening on 127.0.0.1: after a checkpoint, SIGKILL and restart it
/// is listening on the same port again and serves a request.
#[test]
fn python_http_server_listens_again() {
    let wd = Workdir::new("httpd");
    let site = wd.path.join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("hello.txt"), "hello from before the checkpoint\n").unwrap();
    let mut c = Command::new("python3");
    c.args(["-u", "-m", "http.server", &free_port().to_string(), "--bind", "127.0.0.1"]).current_dir(&site);
    let mut orig = Proc::preloaded(c, &wd.image(), "http.server");
    let banner = orig.wait_lines(1, LONG).remove(0);
    let port: u16 = banner.split(" port ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{banner}"));
    let before = http_get(port, "/hello.txt", Instant::now() + LONG).unwrap_or_else(|e| panic!("{e}; stderr {}", orig.stderr()));
    assert!(before.contains("hello from before"), "{before}");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();

    let restored = Proc::restart(&wd.image());
    let answer = http_get(port, "/hello.txt", Instant::now() + LONG).unwrap_or_else(|e| {
        let ss = Command::new("ss").args(["-tanpe"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let ss: Vec<&str> = ss.lines().filter(|l| l.contains(&format!(":{port} "))).collect();
        panic!("{e}; myrestart's stderr {}; sockets on the port: {ss:#?}", restored.stderr())
    });
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.contains("hello from before the checkpoint"), "{answer}");
    restored.wait_stderr("GET /hello.txt", SHORT);
}

/// An echo server outside the process, on a port of its own: answers each line with
/// "echo LINE", one thread per connection.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    if writeln!(out, "echo {line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A client connected to a server outside the process: after the restart its connection is
/// reset (and both checkpoint and restart say so), its own logic reconnects, and it goes on
/// counting from where it was checkpointed.
#[test]
fn a_client_of_an_outside_server_sees_a_reset_and_reconnects() {
    let wd = Workdir::new("client");
    let port = echo_server();
    let mut c = Command::new(prog("client", &[]));
    c.arg(port.to_string());
    let mut orig = Proc::preloaded(c, &wd.image(), "client");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let at_checkpoint = orig.lines().len();
    orig.kill9();
    assert!(orig.stderr().contains("TCP connection to 127.0.0.1:"), "{}", orig.stderr());
    let last_before: i64 = orig.lines()[at_checkpoint - 1].split(' ').nth(1).unwrap().parse().unwrap();

    let restored = Proc::restart(&wd.image());
    let lines = restored.wait_until(|l| l.iter().filter(|l| l.starts_with("reply ")).count() >= 3, LONG, "replies after reconnecting");
    assert!(lines[0].starts_with("reconnect after Connection reset"), "{lines:?}");
    let first: i64 = lines[1].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(first > 0 && first <= last_before + 1, "resumed at {first} after {last_before}");
    for (i, l) in lines[1..].iter().enumerate() {
        assert_eq!(l, &format!("reply {} echo ping {}", first + i as i64, first + i as i64));
    }
    assert!(restored.stderr().contains("comes back reset"), "{}", restored.stderr());
}

/// Sends `line` over a fresh connection made by `connect` (retrying refusals until `deadline`:
/// the restarted server may still be on its way) and returns the answer.
fn ask<S: Read + Write>(connect: impl Fn() -> std::io::Result<S>, line: &str, deadline: Instant) -> Result<String, String> {
    let mut s = loop {
        match connect() {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline && matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(format!("connecting: {e}")),
        }
    };
    // One write: the server answers what its first read gets and closes.
    s.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("sending {line:?}: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| format!("reading the answer to {line:?}: {e}"))?;
    Ok(out)
}

/// A server with a unix socket listening at a path and at an abstract name, a dual-stack TCP
/// listener, a bound UDP socket and a FIFO holding bytes: after a checkpoint, SIGKILL and
/// restart, every listener answers on its old address (the socket file the dead process left
/// behind is replaced), the UDP socket answers on its port, and the FIFO still holds its bytes.
#[test]
fn listeners_and_a_fifo_come_back_on_their_addresses() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let wd = Workdir::new("listeners");
    let abstract_name = format!("ckpt-test-{}", std::process::id());
    let mut c = Command::new(prog("listeners", &[]));
    c.arg(&wd.path).arg(&abstract_name).arg(free_port().to_string()).arg(free_port().to_string());
    let mut orig = Proc::preloaded(c, &wd.image(), "listeners");
    let ports = orig.wait_lines(1, LONG).remove(0);
    let port = |key: &str| -> u16 { ports.split(' ').find_map(|f| f.strip_prefix(key)).unwrap().parse().unwrap() };
    let (tcp, udp) = (port("tcp="), port("udp="));
    let path = wd.path.join("sock");
    let deadline = Instant::now() + LONG;
    assert_eq!(ask(|| UnixStream::connect(&path), "one", deadline), Ok("path: one".into()), "{}", orig.stderr());
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert!(path.exists(), "the dead server's socket file is left behind");
    let inspect = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let socks: Vec<&str> = doc["descriptors"].as_array().unwrap().iter().filter_map(|f| f["socket"].as_str()).collect();
    let want = [format!("unix stream listening on {}", path.display()), format!("unix stream listening on @{abstract_name}"), format!("tcp6 listening on [::]:{tcp}"), format!("udp on 127.0.0.1:{udp}")];
    assert_eq!(socks, want, "ckpt inspect names each socket");

    let restored = Proc::restart(&wd.image());
    let deadline = Instant::now() + LONG;
    let abs = SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let answers = [
        ask(|| UnixStream::connect(&path), "two", deadline),
        ask(|| UnixStream::connect_addr(&abs), "three", deadline),
        ask(|| TcpStream::connect(("127.0.0.1", tcp)), "four", deadline),
        ask(|| TcpStream::connect(("::1", tcp)), "five", deadline),
        ask(|| UnixStream::connect(&path), "fifo", deadline),
    ];
    let want = ["path: two", "abstract: three", "tcp: four", "tcp: five", "in the fifo"].map(|a| Ok(a.to_string()));
    assert_eq!(answers, want, "(IPv4 reaches the dual-stack listener) myrestart's stderr: {}", restored.stderr());
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(LONG)).unwrap();
    u.send_to(b"six", ("127.0.0.1", udp)).unwrap();
    let mut buf = [0u8; 64];
    let n = u.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"udp: six");
}

/// A message that carries a descriptor (`SCM_RIGHTS`) still queued at the checkpoint: its bytes
/// come back, the descriptor cannot, and both the checkpoint and the restart say so.
#[test]
fn descriptors_in_flight_are_named_as_lost() {
    let wd = Workdir::new("passed-fds");
    let script = r#"
import os, socket, sys, time
a, b = socket.socketpair()
r, w = os.pipe()
socket.send_fds(a, [b"with a descriptor"], [r])
print("sent", flush=True)
for i in range(1000000):
    time.sleep(0.01)
    if os.path.exists(sys.argv[1]):
        msg, fds, flags, addr = socket.recv_fds(b, 100, 4)
        print("got", msg.decode(), len(fds), flush=True)
        break
"#;
    let go = wd.path.join("go");
    let mut c = Command::new("python3");
    c.args(["-c", script]).arg(&go);
    let mut orig = Proc::preloaded(c, &wd.image(), "python passing a descriptor");
    orig.wait_lines(1, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert!(orig.stderr().contains("descriptors passed in messages still queued on it are not saved"), "{}", orig.stderr());
    let mut restored = Proc::restart(&wd.image());
    restored.wait_stderr("descriptors passed in messages queued on it were not saved", LONG);
    std::fs::write(&go, "").unwrap();
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().unwrap(), "got with a descriptor 0");
}

/// Hundreds of inotify watches come back, each under the watch descriptor the program knows
/// (the kernel shows them in hexadecimal; 300 of them run well past 9).
#[test]
fn many_inotify_watches_keep_their_numbers() {
    let wd = Workdir::new("watches");
    let dirs = wd.path.join("dirs");
    std::fs::create_dir(&dirs).unwrap();
    let mut c = Command::new(prog("watches", &[]));
    c.arg(&dirs);
    let mut orig = Proc::preloaded(c, &wd.image(), "watches");
    orig.wait_lines(1, LONG);
    std::fs::write(dirs.join("31/before"), "").unwrap();
    orig.wait_until(|l| l.iter().any(|l| l == "event 31 before"), LONG, "the event before the checkpoint");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert!(!orig.stderr().contains("no known path"), "{}", orig.stderr());
    let restored = Proc::restart(&wd.image());
    // Wait until the restored program is back (its watches are made before it runs on).
    restored.program_pid();
    for d in [0, 9, 10, 15, 16, 255, 256, 299] {
        std::fs::write(dirs.join(format!("{d}/after")), "").unwrap();
        let want = format!("event {d} after");
        restored.wait_until(|l| l.contains(&want), LONG, &want);
    }
}

/// A unix datagram socket connected to a bound one of the same process (a log client and its
/// server, say): after the restart it is connected to that address again, whichever of the
/// two the restart makes first, and its messages arrive.
#[test]
fn a_datagram_socket_reaches_a_bound_one_of_the_same_process_again() {
    let wd = Workdir::new("dgram-peer");
    let script = r#"
import os, socket, sys, time
p = sys.argv[1] + "/b.sock"
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
b.bind(p)
a.connect(p)
print("ready", flush=True)
while not os.path.exists(sys.argv[1] + "/go"):
    time.sleep(0.01)
a.send(b"after")
print("got", b.recv(100).decode(), flush=True)
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script]).arg(&wd.path);
    let mut orig = Proc::preloaded(c, &wd.image(), "python with two datagram sockets");
    orig.wait_lines(1, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert!(!orig.stderr().contains("leads outside"), "{}", orig.stderr());
    let mut restored = Proc::restart(&wd.image());
    restored.program_pid();
    std::fs::write(wd.path.join("go"), "").unwrap();
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert_eq!(restored.lines().last().unwrap(), "got after", "{}", restored.stderr());
}

/// A server's accepted unix connection whose client has sent its last bytes and closed (a
/// PostgreSQL backend whose client just said goodbye): the accepted socket has the listener's
/// path as its own address and no peer any more. It comes back with its bytes, then end of
/// file, beside the listener, which listens on that path again (it was bound to the path too,
/// and the restart refused: "its path changed while the restart was planned").
#[test]
fn an_accepted_unix_connection_whose_client_closed_comes_back_beside_its_listener() {
    let wd = Workdir::new("accepted-closed");
    let script = r#"
import os, socket, sys, time
p = sys.argv[1] + "/server.sock"
l = socket.socket(socket.AF_UNIX)
l.bind(p)
l.listen()
c = socket.socket(socket.AF_UNIX)
c.connect(p)
a, _ = l.accept()
c.sendall(b"goodbye")
c.close()
print("ready", flush=True)
while not os.path.exists(sys.argv[1] + "/go"):
    time.sleep(0.01)
print("got", a.recv(100).decode(), "then", len(a.recv(100)), flush=True)
n, _ = l.accept()
n.sendall(b"still listening")
n.close()
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script]).arg(&wd.path);
    let mut orig = Proc::preloaded(c, &wd.image(), "python with a listener and a closed client's connection");
    orig.wait_lines(1, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::write(wd.path.join("go"), "").unwrap();
    let mut restored = Proc::restart(&wd.image());
    let deadline = Instant::now() + LONG;
    while restored.lines().is_empty() {
        if let Some(st) = restored.try_exit() {
            panic!("the restart ended ({st}): {}", restored.stderr());
        }
        assert!(Instant::now() < deadline, "the restored server said nothing: {}", restored.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(restored.lines(), ["got goodbye then 0"], "{}", restored.stderr());
    let mut client = std::os::unix::net::UnixStream::connect(wd.path.join("server.sock")).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "still listening");
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
}

/// A dead unix socket file at `path`, as a killed program leaves one behind.
fn dead_socket(path: &std::path::Path, datagram: bool) {
    let _ = std::fs::remove_file(path);
    if datagram {
        drop(std::os::unix::net::UnixDatagram::bind(path).unwrap());
    } else {
        drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    }
}

/// A unix socket is bound to its path again only where the path is free or holds a dead socket
/// file of the user's own (the checkpointed program's), and only once every check has passed.
/// A regular file, a FIFO or another user's socket there is left as it is and the restart
/// refused; a restart refused for such a reason at another socket leaves the dead socket file
/// of the first as it was, and the log that was gone is not made either. With dead sockets of
/// its own at both paths, the program is restored and listens again.
#[test]
fn only_a_dead_socket_of_ones_own_is_replaced_and_only_once_every_check_passed() {
    let wd = Workdir::new("socket-paths");
    let log = wd.path.join("log");
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#"exec "$0" "$1" 100000 > "$2""#).arg(prog("allkinds", &[])).arg(&wd.path).arg(&log);
    let mut orig = Proc::preloaded(c, &wd.image(), "allkinds");
    wait_file_lines(&log, 3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::remove_file(&log).unwrap();
    let (sock, dgram) = (wd.path.join("sock"), wd.path.join("dgram"));
    let refused = |expect: &str| {
        refused_leaving_unchanged(&wd.image(), &wd.path, expect);
    };
    // The first socket's path still holds its dead socket file; the second's, a regular file.
    std::fs::remove_file(&dgram).unwrap();
    std::fs::write(&dgram, "precious").unwrap();
    refused(&format!("fd 9 (socket {}): a regular file is at that path, not a socket", dgram.display()));
    assert_eq!(std::fs::read_to_string(&dgram).unwrap(), "precious");
    dead_socket(&dgram, true);
    std::fs::remove_file(&sock).unwrap();
    assert!(Command::new("mkfifo").arg(&sock).status().unwrap().success());
    refused(&format!("fd 8 (socket {}): a FIFO is at that path, not a socket", sock.display()));
    dead_socket(&sock, false);
    if euid() == 0 {
        std::os::unix::fs::lchown(&sock, Some(65534), None).unwrap();
        refused("another user's socket (uid 65534) is at that path");
        dead_socket(&sock, false);
    }
    let restored = Proc::restart(&wd.image());
    let deadline = Instant::now() + LONG;
    let n = wait_file_lines(&log, 1, LONG).len();
    wait_file_lines(&log, n + 3, LONG);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {} again: {}", sock.display(), restored.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The bytes a FIFO held go back into it only once every check has passed: a restart refused
/// (a file the program had open is gone) puts nothing into the FIFO, which another process
/// holds open and would read from.
#[test]
fn a_refused_restart_puts_no_bytes_into_a_fifo_others_hold() {
    use std::os::unix::fs::OpenOptionsExt;
    let wd = Workdir::new("fifo-refused");
    let script = r#"
import os, sys, time
d = sys.argv[1]
os.mkfifo(d + "/fifo")
r = os.open(d + "/fifo", os.O_RDONLY | os.O_NONBLOCK)
w = os.open(d + "/fifo", os.O_WRONLY)
os.write(w, b"held bytes")
data = open(d + "/data", "w")
print("ready", flush=True)
while True:
    time.sleep(0.01)
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script]).arg(&wd.path);
    let mut orig = Proc::preloaded(c, &wd.image(), "python holding a FIFO");
    orig.wait_lines(1, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    std::fs::remove_file(wd.path.join("data")).unwrap();
    // Another process's hold on the FIFO, as a reader outside would have.
    let mut held = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(wd.path.join("fifo")).unwrap();
    let mut c = Command::new(myrestart());
    c.arg(wd.image());
    let out = run_within(c, LONG);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("data"), "{err}");
    let mut buf = [0u8; 64];
    let got = held.read(&mut buf);
    assert!(got.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "the refused restart put {:?} into the FIFO", got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()));
}

/// A listener of another process's at a socket's path whose queue of connections is full (a
/// blocking connect to it would wait until it accepts) refuses the restart at once, as any
/// socket that answers does.
#[test]
#[allow(unsafe_code)] // a listening socket made with libc, to fill its backlog
fn a_busy_listener_at_a_sockets_path_refuses_the_restart_without_waiting() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let wd = Workdir::new("busy-listener");
    let mut c = Command::new(prog("listeners", &[]));
    c.arg(&wd.path).arg(format!("ckpt-busy-{}", std::process::id())).arg(free_port().to_string()).arg(free_port().to_string());
    let mut orig = Proc::preloaded(c, &wd.image(), "listeners");
    orig.wait_lines(1, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let path = wd.path.join("sock");
    std::fs::remove_file(&path).unwrap();
    // SAFETY: plain socket calls on descriptors this test owns; the address is a valid
    // sockaddr_un for the path.
    let (listener, clients) = unsafe {
        let l = OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0));
        let mut a: libc::sockaddr_un = std::mem::zeroed();
        a.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in a.sun_path.iter_mut().zip(path.to_str().unwrap().bytes()) {
            *d = s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        assert_eq!(libc::bind(l.as_raw_fd(), &a as *const _ as *const libc::sockaddr, len), 0);
        assert_eq!(libc::listen(l.as_raw_fd(), 0), 0);
        // Connections nobody accepts, until the queue is full.
        let mut clients = Vec::new();
        loop {
            let c = OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0));
            if libc::connect(c.as_raw_fd(), &a as *const _ as *const libc::sockaddr, len) != 0 {
                break;
            }
            clients.push(c);
            assert!(clients.len() < 1000, "the listener's queue never filled");
        }
        (l, clients)
    };
    let mut c = Command::new(myrestart());
    c.arg(wd.image());
    let out = run_within(c, LONG);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("a process listens on {} now", path.display())), "{err}");
    drop((clients, listener));
}

/// The dead socket file the plan found is removed by its name in the directory the plan
/// opened, never by its path again: a directory renamed away and replaced (here, just as
/// myrestart is about to remove the file: held there by a debugger) cannot make it remove what
/// the new directory holds at that name. The restart is refused then (the bind finds the name
/// taken), and the file there is left as it was.
#[test]
fn a_directory_swapped_before_the_dead_socket_is_removed_loses_nothing() {
    let wd = Workdir::new("swapped-dir");
    let (sub, old) = (wd.path.join("sub"), wd.path.join("old"));
    std::fs::create_dir(&sub).unwrap();
    let mut c = Command::new(prog("listeners", &[]));
    c.arg(&sub).arg(format!("ckpt-swap-{}", std::process::id())).arg(free_port().to_string()).arg(free_port().to_string());
    let mut orig = Proc::preloaded(c, &wd.image(), "listeners");
    orig.wait_lines(1, LONG);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let sock = sub.join("sock");
    assert!(std::fs::symlink_metadata(&sock).is_ok(), "the dead server's socket file is left behind");
    // At myrestart's first removal of a file, the directory is swapped for one that holds a
    // file of someone else's at the socket's name.
    let swap = format!("mv '{}' '{}' && mkdir '{}' && echo precious > '{}'", sub.display(), old.display(), sub.display(), sock.display());
    let mut c = Command::new("gdb");
    c.args(["-batch", "-nx", "-ex", "set confirm off", "-ex", "catch syscall unlink unlinkat", "-ex", "run", "-ex"]).arg(format!("shell {swap}"));
    for _ in 0..4 {
        c.args(["-ex", "continue"]);
    }
    c.arg("--args").arg(myrestart()).arg("--new-ids").arg(wd.image());
    let out = run_within(c, LONG);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(old.exists(), "myrestart removed no file (the swap never happened): {text}");
    assert_eq!(std::fs::read_to_string(&sock).ok().as_deref(), Some("precious\n"), "{text}");
}

/// `timerfds ARGS` (tests/progs/timerfds.c).
fn timerfds(args: &[&str]) -> Command {
    let mut c = Command::new(prog("timerfds", &[]));
    c.args(args);
    c
}

/// The timerfd records an image holds.
fn timerfd_records(image: &std::path::Path) -> Vec<ckpt_image::timerfd::TimerFdRecord> {
    let bytes = std::fs::read(image).unwrap();
    let mut st = Box::new(ckpt_image::ProcessState::ZERO);
    let meta_len = ckpt_image::image::meta_len(&bytes).unwrap() as usize;
    let img = ckpt_image::Image::parse(&bytes[..meta_len], bytes.len() as u64, &mut st).unwrap();
    img.timerfds().map(|t| t.unwrap()).collect()
}

/// A periodic timerfd read in a loop, every 3 ms, set with a relative time and with an
/// absolute deadline: the checkpoint takes longer than a period, so the timer has expired and
/// has not been read again when the checkpoint records it (its fdinfo shows no time left
/// then). The restarted program goes on ticking and prints the rest of an uninterrupted
/// run's lines (one a tick, whatever the reads grouped: an absolute timer counts the ticks
/// due while the program was down).
#[test]
fn a_periodic_timerfd_goes_on_ticking_after_a_restart() {
    for how in ["rel", "abs"] {
        let wd = Workdir::new(&format!("timerfd-{how}"));
        // 1,000 ticks (3 s): time enough for the checkpoint, asked for after 40, on a busy machine.
        checkpoint_kill_restart_matches(|| timerfds(&[how, "3", "1000"]), 40, &wd);
        let t = timerfd_records(&wd.image());
        assert!(t.len() == 1 && (t[0].interval_sec, t[0].interval_nsec) == (0, 3_000_000), "{how}: {t:?}");
        assert!(t[0].value_sec != 0 || t[0].value_nsec != 0, "{how}: recorded disarmed: {t:?}");
    }
}

/// `timerfds pending FIRST MS TOTAL GO` checkpointed while its timer's expirations are unread,
/// killed, and restarted; and an uninterrupted run beside it. Both are let go on once the
/// original is killed. The restarted run's ticks must be the uninterrupted run's. Returns the
/// expirations the image holds as unread, what the restarted program's first read returned,
/// and its lines; `None` for the read when this kernel cannot set a timerfd's expirations.
fn pending_across_a_restart(first: &str, ms: &str, total: &str) -> (u64, Option<u64>, Vec<String>) {
    let wd = Workdir::new(&format!("timerfd-pending-{ms}"));
    let go = wd.path.join("go");
    let make = || timerfds(&["pending", first, ms, total, go.to_str().unwrap()]);
    let mut reference = Proc::spawn(make(), "uninterrupted run");
    let mut orig = Proc::preloaded(make(), &wd.image(), "timerfds pending");
    reference.wait_lines(1, SHORT);
    orig.wait_lines(1, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    assert_eq!(orig.lines(), ["pending"], "{}", orig.stderr());
    let t = timerfd_records(&wd.image());
    assert_eq!(t.len(), 1, "{t:?}");
    std::fs::write(&go, "").unwrap();
    let mut restored = Proc::restart(&wd.image());
    assert!(restored.wait_exit(LONG).success(), "{}", restored.stderr());
    assert!(reference.wait_exit(LONG).success(), "{}", reference.stderr());
    let lines = restored.lines();
    let ticks = |l: &[String]| l.iter().filter(|l| !l.starts_with("first read ")).cloned().collect::<Vec<_>>();
    // The restarted program goes on after its "pending".
    assert_eq!(ticks(&lines), ticks(&reference.lines()[1..]), "stderr {}", restored.stderr());
    let read = lines.iter().find_map(|l| l.strip_prefix("first read ")).expect("a first read").parse().unwrap();
    let lost = restored.stderr().contains("expirations not yet read are lost");
    (t[0].ticks, (!lost).then_some(read), lines)
}

/// A periodic timerfd whose expirations were not read at the checkpoint: with a short period
/// (5 ms, several expirations waiting) and a long one (2 s, expired once, its next expiry
/// still ahead). The first read after the restart returns at least the expirations that were
/// waiting at the checkpoint (more if the timer expired again since the restart), and the
/// timer goes on ticking.
#[test]
fn timerfd_expirations_unread_at_the_checkpoint_come_first_after_the_restart() {
    for (first, ms, total) in [("5", "5", "100"), ("10", "2000", "3")] {
        let (unread, read, _) = pending_across_a_restart(first, ms, total);
        assert!(unread >= 1, "period {ms} ms: no expiration waiting in the image");
        if let Some(read) = read {
            assert!(read >= unread, "period {ms} ms: the first read after the restart got {read}, {unread} were waiting");
        }
    }
}

/// A timerfd that expires once, expired and not read at the checkpoint: the restarted program
/// reads that one expiration, and the timer stays disarmed.
#[test]
fn a_one_shot_timerfd_expired_at_the_checkpoint_is_read_once_after_the_restart() {
    let (unread, read, lines) = pending_across_a_restart("10", "0", "1");
    assert_eq!(unread, 1);
    if read.is_some() {
        assert_eq!(read, Some(1));
        assert_eq!(lines.last().map(String::as_str), Some("then disarmed"), "{lines:?}");
    }
}
