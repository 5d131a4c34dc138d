//! System V IPC by ID: a shared memory segment, a semaphore set and a message queue come back
//! under the IDs the program holds (in an IPC namespace of the restart's own), with their
//! contents, and the program goes on using them by ID. The objects the original made are
//! removed after it is killed, as a reboot would: the restored program must have its own.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::process::Command;

fn sysvipc(n: u32, tree: bool) -> Command {
    let mut c = Command::new(prog("sysvipc", &[]));
    c.arg(n.to_string());
    if tree {
        c.arg("tree");
    }
    c
}

/// The IDs the program printed first: segment, semaphore set, queue, keyed segment.
fn ids(lines: &[String]) -> [String; 4] {
    let f: Vec<&str> = lines[0].strip_prefix("ids ").unwrap_or_else(|| panic!("no ids line: {lines:?}")).split(' ').collect();
    [f[0].to_string(), f[1].to_string(), f[2].to_string(), f[3].to_string()]
}

/// Removes the objects the killed original left in this system's IPC namespace.
fn remove(ids: &[String; 4]) {
    let st = Command::new("ipcrm").args(["-m", &ids[0], "-s", &ids[1], "-q", &ids[2], "-m", &ids[3]]).status().expect("ipcrm");
    assert!(st.success(), "ipcrm {ids:?}: {st}");
}

/// The ID of the segment a tree's parent made after the fork ("late ID"), once printed.
fn late_id(orig: &Proc) -> String {
    let lines = orig.wait_until(|l| l.iter().any(|l| l.starts_with("late ")), SHORT, "the parent's late segment");
    lines.iter().find_map(|l| l.strip_prefix("late ")).unwrap().to_string()
}

/// Removes the late segment the killed original left.
fn remove_late(id: &str) {
    let st = Command::new("ipcrm").args(["-m", id]).status().expect("ipcrm");
    assert!(st.success(), "ipcrm -m {id}: {st}");
}

/// The counter's last value printed by `who` ('p' or 'c').
fn last_count(lines: &[String], who: char) -> i64 {
    lines.iter().rev().find_map(|l| l.strip_prefix(&format!("{who} "))?.split(' ').nth(1)?.parse().ok()).unwrap_or(0)
}

/// One process: checkpointed while its queue holds three typed messages and its semaphore has
/// moved, killed, its objects removed, restarted: the segment is attached again by ID
/// (`shmat`, `shmctl(IPC_STAT)`) and holds the counter, the semaphores hold their values and
/// the queue its messages, in order with their types. The restored program is checkpointed
/// and restarted again, which must hold as well. A segment the program made with a key and
/// detached (attached by no process) is found again by its key, with its ID and contents. The
/// set it changed with `SEM_UNDO` is named at the checkpoint (those adjustments are not kept).
#[test]
fn system_v_objects_keep_their_ids_and_contents() {
    let wd = Workdir::new("sysvipc");
    let n = 400;
    let mut orig = Proc::preloaded(sysvipc(n, false), &wd.image(), "sysvipc");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let ids = ids(&orig.lines());
    let undo = format!("semaphore set {} was changed with SEM_UNDO", ids[1]);
    assert!(orig.stderr().contains(&undo), "the checkpoint did not name the SEM_UNDO set: {:?}", orig.stderr());
    let at = last_count(&orig.lines(), 'p');
    remove(&ids);
    // Restarted, checkpointed again a few lines on, killed, restarted again.
    let mut restored = Proc::restart(&wd.image());
    let got = restored.wait_lines(5, SHORT);
    assert!(!got.iter().any(|l| l.starts_with("error")), "{got:?}; stderr {:?}", restored.stderr());
    restored.checkpoint(&wd.image(), LONG);
    restored.kill9();
    let again_at = last_count(&restored.lines(), 'p');
    assert!(again_at > at, "the restored program did not go on: {:?}", restored.lines());
    let mut again = Proc::restart(&wd.image());
    let st = again.wait_exit(LONG);
    let lines = again.lines();
    assert!(st.success(), "{st}; {:?}; stderr {:?}", lines.last(), again.stderr());
    let first = lines.iter().find_map(|l| l.strip_prefix("p ")?.split(' ').nth(1)?.parse::<i64>().ok()).unwrap();
    assert!(first > at && first <= again_at + 1, "did not go on from the second checkpoint: {first} after {at}, {again_at}");
    let want = format!("final shm={n}/0 size=10000 sem={},5,7 msgs=2:two,1:one,3:three keyed=same:kept by key", 3 + n);
    assert_eq!(lines.last(), Some(&want), "stderr {:?}", again.stderr());
}

/// A parent and its forked child share the segment: after the restart each goes on counting in
/// it, the child attaches it again by ID and finds its own count, and the parent finds both
/// counts, the semaphore values and the queued messages. Both know the keyed segment (made
/// before the fork); only the parent knows the one it made after, which comes back from its
/// own part of the image.
#[test]
fn a_tree_shares_its_system_v_segment_by_id() {
    let wd = Workdir::new("sysvipc-tree");
    let n = 400;
    let mut orig = Proc::preloaded(sysvipc(n, true), &wd.image(), "sysvipc tree");
    let late = late_id(&orig);
    orig.wait_until(|l| l.iter().filter(|l| l.starts_with("c ")).count() >= 3, SHORT, "the child's lines");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    let ids = ids(&orig.lines());
    remove(&ids);
    remove_late(&late);
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let lines = restored.lines();
    assert!(st.success(), "{st}; {:?}; stderr {:?}", lines.last(), restored.stderr());
    assert!(lines.contains(&format!("child shm={n}")), "{lines:?}");
    let want = format!("final shm={n}/{n} size=10000 sem={},5,7 msgs=2:two,1:one,3:three keyed=same:kept by key late=same:only the root", 3 + n);
    assert_eq!(lines.last(), Some(&want), "stderr {:?}", restored.stderr());
}

/// The keyed segment that neither process of the tree attaches is held attached by a process
/// outside the checkpoint (as, for an instant, by another process of the tree reading it for
/// its own part at the same moment): each part still records its bytes (`ckpt inspect` says
/// so), and the restored tree finds them, not zeros.
#[test]
fn a_segment_attached_only_outside_the_tree_keeps_its_bytes() {
    let wd = Workdir::new("sysvipc-held");
    let n = 400;
    let mut orig = Proc::preloaded(sysvipc(n, true), &wd.image(), "sysvipc tree");
    let late = late_id(&orig);
    orig.wait_until(|l| l.iter().filter(|l| l.starts_with("c ")).count() >= 3, SHORT, "the child's lines");
    let ids = ids(&orig.lines());
    let mut hold = Command::new(prog("sysvipc", &[]));
    hold.args(["hold", &ids[3]]);
    let mut holder = Proc::spawn(hold, "sysvipc hold");
    holder.wait_lines(1, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill_tree();
    holder.kill9();
    remove(&ids);
    remove_late(&late);
    let inspect = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let keyed: i64 = ids[3].parse().unwrap();
    let parts = [&doc["ipc"], &doc["tree"][1]["ipc"]];
    for (i, records) in parts.iter().enumerate() {
        let rec = records.as_array().unwrap().iter().find(|r| r["id"] == keyed).unwrap_or_else(|| panic!("part {i}: no record of {keyed}: {records}"));
        assert_eq!(rec["contents"], true, "part {i} recorded the segment without its bytes: {rec}");
    }
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let lines = restored.lines();
    assert!(st.success(), "{st}; {:?}; stderr {:?}", lines.last(), restored.stderr());
    let want = format!("final shm={n}/{n} size=10000 sem={},5,7 msgs=2:two,1:one,3:three keyed=same:kept by key late=same:only the root", 3 + n);
    assert_eq!(lines.last(), Some(&want), "stderr {:?}", restored.stderr());
}

/// A POSIX message queue held open (non-blocking) with four messages of three priorities:
/// checkpointed (which must leave the running program's queue as it was), killed, the queue
/// removed, restarted: the descriptor is open again on a queue of the same name, sizes and
/// flags, holding the same messages in the same order with their priorities.
#[test]
fn a_posix_message_queue_keeps_its_messages_and_priorities() {
    let wd = Workdir::new("posixmq");
    let p = prog("posixmq", &[]);
    let want = "final max=8 size=64 cur=4 nonblock=1 msgs=5:high,3:mid,1:low0,1:low1";
    // Checkpointed and going on: the checkpoint took the messages out and put them back.
    let mut c = Command::new(&p);
    c.arg("30");
    let mut kept = Proc::preloaded(c, &wd.path.join("kept-image"), "posixmq");
    kept.wait_lines(5, SHORT);
    kept.checkpoint(&wd.path.join("kept-image"), LONG);
    assert!(kept.wait_exit(LONG).success(), "{}", kept.stderr());
    assert_eq!(kept.lines().last().map(String::as_str), Some(want), "the checkpoint disturbed the queue");
    // Checkpointed, killed, its queue removed, restarted.
    let mut c = Command::new(&p);
    c.arg("300");
    let mut orig = Proc::preloaded(c, &wd.image(), "posixmq");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let name = orig.lines()[0].strip_prefix("queue ").unwrap_or_else(|| panic!("no queue line: {:?}", orig.lines())).to_string();
    // `ckpt inspect` shows the descriptor as a queue that is restored, and the queue itself.
    let inspect = Command::new(ckpt()).args(["inspect", "--json"]).arg(wd.image()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let fd = doc["descriptors"].as_array().unwrap().iter().find(|f| f["kind"] == "mqueue").unwrap_or_else(|| panic!("{}", doc["descriptors"]));
    assert_eq!(fd["restored"], true, "{fd}");
    assert_eq!(doc["ipc"][0]["name"], name.as_str(), "{}", doc["ipc"]);
    assert_eq!(doc["ipc"][0]["count"], 4, "{}", doc["ipc"]);
    assert!(Command::new(&p).args(["unlink", &name]).status().unwrap().success(), "removing {name}");
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    let lines = restored.lines();
    assert!(st.success(), "{st}; {:?}; stderr {:?}", lines.last(), restored.stderr());
    assert!(lines[0].starts_with("i "), "did not go on: {:?}", &lines[..lines.len().min(3)]);
    assert_eq!(lines.last().map(String::as_str), Some(want), "stderr {:?}", restored.stderr());
}

/// A POSIX queue registered in an epoll instance: after the restart the registration is
/// there again (the queue is opened again before the descriptors are put in place, and the
/// registrations made after them), and the queue's next message wakes the instance.
#[test]
fn an_epoll_registration_of_a_posix_queue_comes_back() {
    let wd = Workdir::new("mqepoll");
    let p = prog("mqepoll", &[]);
    let mut c = Command::new(&p);
    c.arg("60");
    let mut orig = Proc::preloaded(c, &wd.image(), "mqepoll");
    orig.wait_lines(10, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let name = orig.lines()[0].strip_prefix("queue ").unwrap_or_else(|| panic!("no queue line: {:?}", orig.lines())).to_string();
    assert!(Command::new(&p).args(["unlink", &name]).status().unwrap().success(), "removing {name}");
    let mut restored = Proc::restart(&wd.image());
    let st = restored.wait_exit(LONG);
    assert!(st.success(), "{st}; stderr {:?}", restored.stderr());
    assert_eq!(restored.lines().last().map(String::as_str), Some("ready 1 data 77"), "stderr {:?}", restored.stderr());
}
