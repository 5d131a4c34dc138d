//! Real programs, checkpointed, SIGKILLed and restarted from the image: their output must go
//! on from the checkpointed state, as an uninterrupted run would.
#![deny(unsafe_code)]

use ckpt_tests::*;
use std::process::Command;

fn cmd(path: std::path::PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(path);
    c.args(args);
    c
}

#[test]
fn hello_prints_dots_after_restart() {
    let wd = Workdir::new("hello");
    let hello = compile(&root().join("hello.c"), "hello", &[]);
    let dots = |s: &str| s.chars().filter(|&c| c == '.').count();
    let mut orig = Proc::preloaded(Command::new(&hello), &wd.image(), "hello");
    // hello prints dots without newlines: wait for the text itself, not for lines.
    orig.wait_text(|t| dots(t) >= 1, SHORT, "a first dot");
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();
    let before = dots(&orig.stdout_text());
    let mut restored = Proc::restart(&wd.image());
    restored.wait_text(|t| dots(t) >= 2, SHORT, "two dots from the restarted hello");
    restored.kill9();
    let out = restored.stdout_text();
    assert!(out.chars().all(|c| c == '.'), "restarted hello printed {out:?}; stderr {:?}", restored.stderr());
    assert!(before >= 1 && dots(&out) >= 2);
}

#[test]
fn c_program_state_continues_pie() {
    let wd = Workdir::new("counter-pie");
    let p = prog("counter", &["-pie", "-fPIE"]);
    let c = checkpoint_kill_restart_matches(|| cmd(p.clone(), &["200", "10000"]), 40, &wd);
    assert!(c >= 40);
}

#[test]
fn c_program_state_continues_non_pie() {
    let wd = Workdir::new("counter-nopie");
    let p = prog("counter", &["-no-pie", "-fno-pie"]);
    checkpoint_kill_restart_matches(|| cmd(p.clone(), &["200", "10000"]), 40, &wd);
}

#[test]
fn cxx_iostreams_and_exceptions() {
    let wd = Workdir::new("cxx");
    let p = prog("cxx", &[]);
    checkpoint_kill_restart_matches(|| cmd(p.clone(), &["150"]), 30, &wd);
}

#[test]
fn python3_loop() {
    let wd = Workdir::new("python");
    let script = "import time\nx = 0\nfor i in range(150):\n    x = (x * 31 + i) % 1000003\n    print(i, x)\n    time.sleep(0.01)\nprint('done', x)\n";
    checkpoint_kill_restart_matches(
        || {
            let mut c = Command::new("python3");
            c.args(["-u", "-c", script]);
            c
        },
        30,
        &wd,
    );
}

#[test]
fn perl_loop() {
    let wd = Workdir::new("perl");
    let script = r#"$| = 1; my $x = 0; for my $i (0..149) { $x = ($x * 31 + $i) % 1000003; print "$i $x\n"; select(undef, undef, undef, 0.01); } print "done $x\n";"#;
    checkpoint_kill_restart_matches(
        || {
            let mut c = Command::new("perl");
            c.args(["-e", script]);
            c
        },
        30,
        &wd,
    );
}

#[test]
fn memory_at_myrestarts_own_load_address() {
    let wd = Workdir::new("collide");
    let p = prog("collide", &["-no-pie", "-fno-pie"]);
    // Without address randomization: a non-PIE program's heap starts anywhere in the GiB after
    // its data, now and then right where it wants its fixed mapping.
    let run = || {
        let mut c = Command::new("setarch");
        c.args(["x86_64", "-R"]).arg(&p).arg("150");
        c
    };
    checkpoint_kill_restart_matches(run, 30, &wd);
}

#[test]
fn big_heap_then_more_malloc_and_free() {
    let wd = Workdir::new("bigheap");
    let p = prog("bigheap", &[]);
    let image = wd.image();
    // It ticks until 10 ticks after its restart, however long the checkpoint takes.
    let mut orig = Proc::preloaded(cmd(p, &["576", "100000", "10"]), &image, "bigheap");
    orig.wait_until(|l| l.iter().any(|s| s == "tick 3"), LONG, "tick 3");
    orig.checkpoint(&image, LONG);
    let size = std::fs::metadata(&image).unwrap().len();
    assert!(size > 576 << 20, "image of {size} bytes cannot hold a 576 MiB heap");
    orig.kill9();
    let mut restored = Proc::restart(&image);
    let st = restored.wait_exit(LONG);
    let out = restored.lines();
    assert!(st.success(), "exit {st}, output tail {:?}, stderr {:?}", out.last(), restored.stderr());
    assert!(out.first().is_some_and(|l| l.starts_with("tick ") && l != "tick 0"), "did not resume mid-run: {:?}", out.first());
    assert!(out.last().is_some_and(|l| l.starts_with("PASS")), "self-check: {:?}", out.last());
}

fn vdso_start(pid: u32) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find(|l| l.ends_with("[vdso]")).map(|l| l.split('-').next().unwrap().to_string())
}

#[test]
fn clocks_keep_advancing_through_the_vdso() {
    let wd = Workdir::new("clock");
    let p = prog("clock", &[]);
    let image = wd.image();
    let mut orig = Proc::preloaded(cmd(p, &[]), &image, "clock");
    orig.wait_lines(10, SHORT);
    let vdso_before = vdso_start(orig.pid).expect("original has a vdso");
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let last_before: Vec<i64> = orig.lines().last().unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
    let restored = Proc::restart(&image);
    let after = restored.wait_lines(20, SHORT);
    assert_eq!(vdso_start(restored.program_pid()), Some(vdso_before), "vdso not moved to its old address");
    let rows: Vec<Vec<i64>> = after.iter().map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect()).collect();
    assert!(rows[0][0] > 0 && rows[0][0] <= last_before[0] + 1, "resumed at line {} after {}", rows[0][0], last_before[0]);
    for w in rows.windows(2) {
        assert_eq!(w[1][0], w[0][0] + 1, "lines skipped");
        assert!(w[1][1] > w[0][1], "CLOCK_MONOTONIC did not advance: {:?}", w);
        assert!(w[1][2] > w[0][2], "CLOCK_REALTIME did not advance: {:?}", w);
    }
    assert!(rows[0][1] >= last_before[1], "CLOCK_MONOTONIC went back across the restart");
    // 19 intervals of 20 ms: the clock must have seen at least that much time.
    assert!(rows[19][1] - rows[0][1] >= 19 * 20_000_000, "monotonic clock advanced too little");
}

#[test]
fn own_sigalrm_handler_and_itimer() {
    let wd = Workdir::new("alarm");
    let p = prog("alarm", &[]);
    let image = wd.image();
    let mut orig = Proc::preloaded(cmd(p, &["300"]), &image, "alarm");
    orig.wait_lines(5, SHORT);
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let checkpointed: i64 = orig.lines().last().unwrap().trim_start_matches("ticks ").parse().unwrap();
    let mut restored = Proc::restart(&image);
    let st = restored.wait_exit(SHORT);
    let out = restored.lines();
    assert!(st.success(), "exit {st}: {:?} {:?}", out, restored.stderr());
    assert_eq!(out.last().map(String::as_str), Some("done"));
    let first: i64 = out[0].trim_start_matches("ticks ").parse().unwrap();
    assert!(first >= checkpointed && first <= checkpointed + 20, "ticks restarted at {first}, checkpoint was at {checkpointed}");
}

#[test]
fn two_generations_and_one_image_restarted_twice() {
    let wd = Workdir::new("generations");
    let p = prog("counter", &[]);
    let reference = reference_run(cmd(p.clone(), &["250", "10000"]), LONG);
    let gen1 = wd.path.join("gen1");
    let gen2 = wd.path.join("gen2");

    let mut orig = Proc::preloaded(cmd(p, &["250", "10000"]), &gen1, "generation 0");
    orig.wait_lines(30, SHORT);
    let at1 = orig.lines().len();
    orig.checkpoint(&gen1, LONG);
    orig.wait_lines(at1 + 5, SHORT);
    orig.kill9();
    let kill1 = orig.lines().len();

    // Generation 1: restored from gen1, then checkpointed into gen2 (its CKPT_IMAGE was fixed
    // at startup, so point it elsewhere by renaming the image it writes).
    let mut r1 = Proc::restart(&gen1);
    let l = r1.wait_lines(20, SHORT);
    let c1 = assert_continues(&reference, at1, kill1, &l);
    let n = r1.lines().len();
    r1.checkpoint(&gen1, LONG);
    std::fs::rename(&gen1, &gen2).unwrap();
    r1.wait_lines(n + 5, SHORT);
    r1.kill9();
    let seen_r1 = c1 + r1.lines().len();

    let mut r2 = Proc::restart(&gen2);
    assert!(r2.wait_exit(LONG).success(), "generation 2 failed: {:?}", r2.stderr());
    let c2 = assert_continues(&reference, c1 + n, seen_r1, &r2.lines());
    assert!(c2 > c1);

    // The same image, restarted twice, resumes at the same place both times.
    for _ in 0..2 {
        let mut again = Proc::restart(&gen2);
        assert!(again.wait_exit(LONG).success());
        assert_eq!(assert_continues(&reference, c1 + n, seen_r1, &again.lines()), c2);
    }
}

#[test]
fn kernel_state_survives_restart() {
    let wd = Workdir::new("kstate");
    let sub = wd.path.join("sub dir");
    std::fs::create_dir(&sub).unwrap();
    let p = prog("kstate", &[]);
    let image = wd.image();
    let mut orig = Proc::preloaded(cmd(p.clone(), &["1000000", sub.to_str().unwrap()]), &image, "kstate");
    let expected = format!(
        "rseq=1 tid=1 robust=1 umask=027 cwd={} name=kstate-x alt=1 mask=1 term=1 brk=1 cmdline=1 cpu=1",
        sub.display()
    );
    let state = |l: &String| l.split_once(' ').map(|(_, s)| s.to_string()).unwrap_or_default();
    let before = orig.wait_lines(5, SHORT);
    assert!(before.iter().all(|l| state(l) == expected), "state wrong before checkpoint: {before:?}");
    orig.checkpoint(&image, LONG);
    orig.kill9();

    // Restart from another directory, with another umask.
    let mut c = Command::new("sh");
    c.current_dir("/").args(["-c", "umask 077; exec \"$0\" \"$1\""]).arg(myrestart()).arg(&image);
    let restored = Proc::spawn(c, "myrestart kstate");
    let after = restored.wait_lines(10, SHORT);
    for l in &after {
        assert_eq!(state(l), expected, "after restart: {l}");
    }
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", restored.program_pid())).unwrap();
    assert_eq!(comm.trim(), "kstate-x");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", restored.program_pid())).unwrap();
    let want = format!("{}\01000000\0{}\0", p.display(), sub.display());
    assert_eq!(String::from_utf8_lossy(&cmdline), want, "/proc/PID/cmdline");
}

/// Vector registers hold their values across the checkpoint and restart: the ymm registers
/// whole (not just their lower halves), and the AVX-512 registers where the CPU has them.
#[test]
fn vector_registers_survive_restart() {
    let wd = Workdir::new("avx");
    let p = prog("avx", &[]);
    let image = wd.image();
    let mut orig = Proc::preloaded(cmd(p.clone(), &["1000000"]), &image, "avx");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let checkpointed = orig.lines().len();
    // gdb reads the vector registers from the image as a core file: its XSAVE note has the
    // size gdb expects, and each register where gdb looks for it, whatever this CPU's own
    // layout. zmm16 holds the pattern of the last AVX-512 round (round r: `0xa5 r 16 j`).
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-ex", "p/x $zmm16.v8_int64"]).arg(&p).arg(&image).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&gdb.stdout), String::from_utf8_lossy(&gdb.stderr));
    assert!(!err.contains("in core file too small") && !err.contains("Unexpected size"), "gdb: {err}");
    if orig.lines()[0].ends_with("avx512=1") {
        let words: Vec<u64> = out.split_once("= {").and_then(|(_, r)| r.split_once('}')).map_or(vec![], |(v, _)| {
            v.split(", ").filter_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok()).collect()
        });
        let round = words.first().map_or(0, |w| w & 0xffff_ffff_0000_0000);
        let want: Vec<u64> = (0..8).map(|j| round | 0x1000 | j).collect();
        assert!(words == want && round >> 56 == 0xa5, "gdb's zmm16: {out}");
    }
    let restored = Proc::restart(&image);
    let after = restored.wait_lines(10, SHORT);
    let first: usize = after[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(first > 0 && first <= checkpointed, "resumed at round {first}, checkpoint after {checkpointed}");
    for l in &after {
        assert!(l.contains(" ok avx512="), "after restart: {l}");
    }
}

/// `ITIMER_VIRTUAL` and `ITIMER_PROF` (CPU-time timers), and a POSIX timer on the process's
/// CPU-time clock (`CLOCK_PROCESS_CPUTIME_ID`, which `/proc` lists with a negative clock ID),
/// go on firing at the program's handlers.
#[test]
fn cpu_time_timers_keep_firing() {
    let wd = Workdir::new("vtimers");
    let p = prog("vtimers", &[]);
    let image = wd.image();
    let counts = |l: &str| -> [i64; 4] {
        let f: Vec<&str> = l.split(' ').collect();
        let v = |s: &str, k: &str| s.strip_prefix(k).unwrap().parse::<i64>().unwrap();
        [f[0].parse().unwrap(), v(f[1], "virtual="), v(f[2], "prof="), v(f[3], "posix=")]
    };
    let all_above = |l: &str, floor: [i64; 4]| counts(l)[1..].iter().zip(&floor[1..]).all(|(c, f)| c > f);
    let mut orig = Proc::preloaded(cmd(p, &[]), &image, "vtimers");
    orig.wait_until(|l| l.last().is_some_and(|l| all_above(l, [0, 3, 3, 3])), LONG, "the timers to fire");
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let at_kill = counts(orig.lines().last().unwrap());
    let json = Command::new(ckpt()).args(["inspect", "--json"]).arg(&image).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let timers: Vec<&str> = doc["timers"].as_array().unwrap().iter().map(|t| t["timer"].as_str().unwrap()).collect();
    assert_eq!(timers, ["virtual", "prof"], "interval timers in the image");
    let restored = Proc::restart(&image);
    let first = counts(&restored.wait_lines(1, SHORT)[0]);
    let after = restored.wait_until(|l| l.last().is_some_and(|l| all_above(l, first.map(|c| c + 5))), LONG, "the timers to fire after restart");
    let last = counts(after.last().unwrap());
    assert!(first[1..].iter().all(|&c| c > 3), "counts did not resume from the checkpoint: {first:?}");
    assert!(last[1..].iter().zip(&at_kill[1..]).all(|(l, k)| l > k), "{last:?} after {at_kill:?}: {}", restored.stderr());
}

/// Resource limits the program set for itself come back as they were, whatever the restart's.
#[test]
fn resource_limits_survive() {
    let wd = Workdir::new("rlimits");
    let p = prog("rlimits", &[]);
    let image = wd.image();
    let mut orig = Proc::preloaded(cmd(p, &[]), &image, "rlimits");
    let before = orig.wait_lines(3, SHORT);
    orig.checkpoint(&image, LONG);
    orig.kill9();
    let limits = |l: &str| l.split_once(' ').unwrap().1.to_string();
    let want = limits(&before[2]);
    assert!(want.starts_with("nofile=200/") && want.contains(" stack=4194304/"), "{want}");
    // Restart with other soft limits than the program had.
    let mut c = Command::new("sh");
    c.args(["-c", "ulimit -S -n 512; ulimit -S -s 16384; ulimit -S -c 0; exec \"$0\" \"$1\""]).arg(myrestart()).arg(&image);
    let restored = Proc::spawn(c, "myrestart under other limits");
    for l in restored.wait_lines(3, SHORT) {
        assert_eq!(limits(&l), want, "after restart");
    }
}

/// An asyncio event loop (epoll underneath, a socket pair to wake it) with producer and
/// consumer tasks over a queue, and a thread that hands items to the loop with
/// `call_soon_threadsafe` (which writes to that socket pair): both kinds of items keep coming,
/// each in order, after the restart.
#[test]
fn python_asyncio_queue() {
    let wd = Workdir::new("asyncio");
    let script = r#"
import asyncio, itertools, sys, threading, time

async def producer(q):
    for i in itertools.count():
        await q.put(('task', i))
        await asyncio.sleep(0.005)

def feeder(loop, q):
    for j in itertools.count():
        loop.call_soon_threadsafe(q.put_nowait, ('thread', j))
        time.sleep(0.007)

async def consumer(q):
    while True:
        kind, i = await q.get()
        # One write per line: print() writes its parts one by one, and a checkpoint or the
        # kill could come between them.
        sys.stdout.write(f'got {kind} {i}\n')

async def main():
    q = asyncio.Queue()
    threading.Thread(target=feeder, args=(asyncio.get_running_loop(), q), daemon=True).start()
    await asyncio.gather(producer(q), consumer(q))

asyncio.run(main())
"#;
    let mut c = Command::new("python3");
    c.args(["-u", "-c", script]);
    let orig = checkpointed(c, &wd, 10);
    let items = |lines: &[String], kind: &str| -> Vec<i64> {
        lines.iter().filter_map(|l| l.strip_prefix(&format!("got {kind} "))).map(|n| n.parse().unwrap()).collect()
    };
    let restored = Proc::restart(&wd.image());
    let lines = restored.wait_until(
        |l| ["task", "thread"].iter().all(|k| items(l, k).len() >= 10),
        LONG,
        "ten items of each kind after the restart",
    );
    for kind in ["task", "thread"] {
        let (before, after) = (items(&orig.lines(), kind), items(&lines, kind));
        let last = before.last().copied().unwrap_or(-1);
        assert!(after[0] <= last + 2, "{kind} items resumed at {} after {last}", after[0]);
        for w in after.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{kind} items out of order: {after:?}");
        }
    }
    assert!(lines.iter().all(|l| l.starts_with("got ")), "{lines:?}");
}

/// Libraries and program text the program never wrote are not copied into the image: restart
/// maps them from their files again, so /proc/PID/maps names them; a library rewritten on disk
/// after the checkpoint is refused by name (nothing runs), unless the image was made with
/// `CKPT_SELF_CONTAINED=1`, which carries their pages.
#[test]
fn libraries_are_mapped_from_their_files_and_a_changed_one_is_refused() {
    for self_contained in [false, true] {
        let wd = Workdir::new("libfile");
        let (exe, lib) = build_tick(&wd.path, 1);
        let mut c = Command::new(&exe);
        c.args(["100000", "10000"]);
        if self_contained {
            c.env("CKPT_SELF_CONTAINED", "1");
        }
        let mut orig = Proc::preloaded(c, &wd.image(), "usetick");
        orig.wait_lines(3, SHORT);
        orig.checkpoint(&wd.image(), LONG);
        let at = orig.lines().len();
        orig.kill9();

        // Unchanged: the restored process maps the library's code from the library itself.
        let mut restored = Proc::restart(&wd.image());
        restored.wait_lines(3, SHORT);
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", restored.program_pid())).unwrap();
        let named = maps.lines().any(|l| l.contains(" r-xp ") && l.ends_with(lib.to_str().unwrap()));
        assert_eq!(named, !self_contained, "library code named in maps (self-contained: {self_contained}):\n{maps}");
        let first: u64 = restored.lines()[0].parse().unwrap();
        assert!(first as usize <= at + 1, "restored at {first}, checkpoint after {at} lines");
        restored.kill9();

        // Rewritten (a step of 7): refused by name, unless the image carries the pages.
        build_tick(&wd.path, 7);
        if self_contained {
            // It runs on the image's own copy of the library: still counting in ones.
            let mut again = Proc::restart(&wd.image());
            let l = again.wait_lines(3, SHORT);
            let n: Vec<u64> = l.iter().take(3).map(|x| x.parse().unwrap()).collect();
            assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{l:?}");
            again.kill9();
        } else {
            let out = Command::new(myrestart()).arg(wd.image()).stdin(std::process::Stdio::null()).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains(lib.to_str().unwrap()) && err.contains("changed since the checkpoint"), "{err}");
            assert!(out.stdout.is_empty(), "it ran: {:?}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

/// The hashes of mapped libraries are kept from one checkpoint to the next in a mapping of
/// libckpt's own, never in an image: a library rewritten in place between two checkpoints is
/// hashed anew (its times changed), so the second image restarts with the library as it is
/// now, counting in sevens; the restored process starts without the mapping, and makes its own
/// at its next checkpoint, whose image restarts too.
#[test]
fn library_hashes_kept_between_checkpoints_follow_a_rewritten_library() {
    let wd = Workdir::new("libhashes");
    let (exe, lib) = build_tick(&wd.path, 1);
    let mut c = Command::new(&exe);
    c.args(["100000000", "10000"]);
    c.env("CKPT_INCREMENTAL", "0");
    let mut orig = Proc::preloaded(c, &wd.image(), "usetick");
    orig.wait_lines(3, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let cache_in = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap().contains("/memfd:ckpt-filehash (deleted)");
    assert!(cache_in(orig.pid), "no cache of file hashes after a checkpoint");

    // Rewritten in place (a step of 7): the program runs the new code from now on.
    build_tick(&wd.path, 7);
    let steps_of_seven = |p: &Proc| {
        let n = p.lines().len();
        let l = p.wait_lines(n + 3, SHORT);
        let v: Vec<u64> = l[n..n + 3].iter().map(|x| x.parse().unwrap()).collect();
        v.windows(2).all(|w| w[1] == w[0] + 7)
    };
    assert!(steps_of_seven(&orig), "the rewritten library is not what the program runs: {:?}", orig.lines());
    orig.checkpoint(&wd.image(), LONG);
    orig.kill9();

    let mut restored = Proc::restart(&wd.image());
    restored.wait_lines(3, SHORT);
    assert!(steps_of_seven(&restored), "{:?}", restored.lines());
    assert!(!cache_in(restored.program_pid()), "the image held the cache of file hashes");
    restored.checkpoint(&wd.image(), LONG);
    assert!(cache_in(restored.program_pid()), "no cache of file hashes after the restored process's checkpoint");
    restored.kill9();
    let mut again = Proc::restart(&wd.image());
    again.wait_lines(3, SHORT);
    assert!(steps_of_seven(&again), "{:?}", again.lines());
    again.kill9();
    let _ = lib;
}

/// The cache of file hashes is the program's own and its writers': a child the program forks
/// after a checkpoint (no exec) does not inherit it, so it can neither change its parent's
/// hashes nor write beside them, and at its own checkpoint it makes a cache of its own.
#[test]
fn a_forked_child_has_no_share_in_its_parents_cache_of_file_hashes() {
    let wd = Workdir::new("libhashes-fork");
    let go = wd.path.join("go");
    let mut c = Command::new("python3");
    c.arg("-c").arg(
        "import os, sys, time\n\
         print('ready', flush=True)\n\
         while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n\
         pid = os.fork()\n\
         if pid == 0:\n    os.write(1, b'child %d\\n' % os.getpid())\n    while True: time.sleep(0.05)\n\
         os.waitpid(pid, 0)\n",
    );
    c.arg(&go);
    let mut orig = Proc::preloaded(c, &wd.image(), "python3 that forks");
    orig.wait_lines(1, SHORT);
    orig.checkpoint(&wd.image(), LONG);
    let cache_in = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap().contains("/memfd:ckpt-filehash (deleted)");
    assert!(cache_in(orig.pid), "no cache of file hashes after a checkpoint");
    std::fs::write(&go, b"").unwrap();
    let lines = orig.wait_until(|l| l.iter().any(|x| x.starts_with("child ")), SHORT, "the child's line");
    let child: u32 = lines.iter().find_map(|x| x.strip_prefix("child ")).unwrap().trim().parse().unwrap();
    assert!(!cache_in(child), "the forked child shares its parent's cache of file hashes");
    assert!(cache_in(orig.pid), "the parent lost its cache of file hashes");
    // The child's own checkpoint (its image beside the parent's) makes a cache of its own.
    let child_image = wd.path.join("child.img");
    let st = Command::new(ckpt()).args(["checkpoint", "--wait", "--to"]).arg(&child_image).arg(child.to_string()).status().unwrap();
    assert!(st.success(), "the child's checkpoint failed: {st}");
    assert!(cache_in(child), "no cache of file hashes in the child after its own checkpoint");
    orig.kill_tree();
}

/// A coroutine whose stack is a part of a malloc'd block, 1 MiB of the program's data right
/// below it in the same region (`heapstack`, as ucontext coroutine libraries lay them out): the
/// checkpoint signal lands on that stack, and the data below the signal frame belongs to the
/// program, not to the handler. Restarted (and checkpointed again once restored, and restarted
/// again), the program finds every word of its data as it wrote it; with the image written by
/// the forked writer, by the handler itself (`CKPT_SYNC`), and compressed. Once, everything in
/// the region below the frame was stored as zeros.
#[test]
fn data_below_a_coroutine_stack_in_the_heap_survives_a_restart() {
    let p = prog("heapstack", &[]);
    let field = |l: &str| l.split_once(" bad=").map(|(_, b)| b.to_string());
    let bad = |lines: &[String]| lines.iter().filter(|l| field(l).as_deref() != Some("0")).cloned().collect::<Vec<_>>();
    for (name, env) in [("forked", None), ("sync", Some(("CKPT_SYNC", "1"))), ("lz4", Some(("CKPT_COMPRESS", "lz4")))] {
        let wd = Workdir::new(&format!("heapstack-{name}"));
        let mut c = Command::new(&p);
        c.envs(env);
        let mut orig = Proc::preloaded(c, &wd.image(), "heapstack");
        orig.wait_lines(3, SHORT);
        orig.checkpoint(&wd.image(), LONG);
        orig.kill9();
        assert!(bad(&orig.lines()).is_empty(), "{name}: the checkpoint changed the data below the coroutine's stack: {:?}", bad(&orig.lines()));
        let mut restored = Proc::restart(&wd.image());
        let first = restored.wait_lines(3, SHORT);
        assert!(bad(&first).is_empty(), "{name}: restarted, the data below the coroutine's stack is not the program's: {:?}", bad(&first));
        restored.checkpoint(&wd.image(), LONG);
        restored.kill9();
        let mut again = Proc::restart(&wd.image());
        let second = again.wait_lines(3, SHORT);
        again.kill9();
        assert!(bad(&second).is_empty(), "{name}: restarted from the restored program's image: {:?}", bad(&second));
    }
}

/// The same program on a 16 KiB coroutine stack, as small as some coroutine libraries make
/// them: the checkpoint does not overflow it into the program's data right below. The
/// checkpoint runs on libckpt's own stack; only the kernel's frame (about 3.4 KiB with AVX-512)
/// and the handler's first calls are on the coroutine's. Once a checkpoint took about 34 KiB
/// there, and wrote over the top 20 KiB of the data, in the running program as in its image.
#[test]
fn a_checkpoint_does_not_overflow_a_small_coroutine_stack() {
    let p = prog("heapstack", &[]);
    let field = |l: &str| l.split_once(" bad=").map(|(_, b)| b.to_string());
    let bad = |lines: &[String]| lines.iter().filter(|l| field(l).as_deref() != Some("0")).cloned().collect::<Vec<_>>();
    for (name, env) in [("forked", None), ("sync", Some(("CKPT_SYNC", "1")))] {
        let wd = Workdir::new(&format!("smallstack-{name}"));
        let mut c = Command::new(&p);
        c.arg("16").envs(env);
        let mut orig = Proc::preloaded(c, &wd.image(), "heapstack on 16 KiB");
        orig.wait_lines(3, SHORT);
        for _ in 0..3 {
            orig.checkpoint(&wd.image(), LONG);
        }
        // The program's next check of its data comes after the last checkpoint.
        let n = orig.lines().len();
        orig.wait_lines(n + 2, SHORT);
        orig.kill9();
        assert!(bad(&orig.lines()).is_empty(), "{name}: the checkpoint wrote below the coroutine's stack: {:?}", bad(&orig.lines()));
        let mut restored = Proc::restart(&wd.image());
        let first = restored.wait_lines(3, SHORT);
        restored.kill9();
        assert!(bad(&first).is_empty(), "{name}: restarted: {:?}", bad(&first));
    }
}
