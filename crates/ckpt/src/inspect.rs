//! `ckpt inspect IMAGE [--json]`: what an image holds, checked the way myrestart checks it.

use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use ckpt_image::fds::FdKind;
use ckpt_image::frame::{Prstatus, USER_REGS};
use crate::imagefile::{check_bases, read_meta, BaseCheck, FileHoles, ImageFile};
use ckpt_image::verify::{check_region, check_saved_file};
use ckpt_image::{ipc, note, Image, ProcessState, PAGE_SIZE};
use clap::Args;
use serde_json::{json, Value};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct InspectArgs {
    /// The image file.
    image: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Check the image's authentication with this key file (`ckpt run --key`); without --key,
    /// CKPT_KEY in the environment names it, if set.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Judge the image restartable though another user owns it or others may write it (or a
    /// base of it), as `ckpt restart --trust-image` would restore it.
    #[arg(long)]
    trust_image: bool,
}

fn prot(p: u32) -> String {
    format!("{}{}{}", if p & 1 != 0 { 'r' } else { '-' }, if p & 2 != 0 { 'w' } else { '-' }, if p & 4 != 0 { 'x' } else { '-' })
}

/// `YYYY-MM-DD HH:MM:SS UTC` for nanoseconds since the epoch.
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn inspect(a: InspectArgs) -> Outcome {
    let key = crate::key::configured(a.key.as_deref());
    let (doc, restartable) = examine(&a.image, key.as_deref(), a.trust_image)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    } else {
        print_table(&doc);
    }
    Ok(if restartable { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// The headers of the image at `path`, checked against their own checksum only (its data
/// may be cut short or damaged): what an image's origin and time are read from, even when it
/// cannot be restarted.
fn checked_headers(path: &Path) -> Option<(Vec<u8>, Box<ProcessState>)> {
    let f = crate::imagefile::open_regular(path).ok()?;
    let len = f.metadata().ok()?.len();
    let meta = crate::imagefile::read_meta(&f, 0, len).ok()?;
    let mut st = Box::new(ProcessState::ZERO);
    // Where the data lies is not checked against the file's length here.
    Image::parse(&meta, u64::MAX, &mut st).ok()?;
    Some((meta, st))
}

/// The image's origin note (what its program was started as): `Ok(None)` if it has none,
/// `Err` if its headers (the note included) do not check out.
pub fn origin_note(path: &Path) -> Result<Option<Vec<u8>>, ()> {
    let (meta, mut st) = checked_headers(path).ok_or(())?;
    let image = Image::parse(&meta, u64::MAX, &mut st).map_err(|_| ())?;
    match image.origin() {
        None => Ok(None),
        Some(Ok(_)) => Ok(image.note(ckpt_image::CKPT_NOTE_NAME, ckpt_image::NT_CKPT_ORIGIN).map(|n| n.desc.to_vec())),
        Some(Err(_)) => Err(()),
    }
}

/// When the image at `path` was taken (nanoseconds since the epoch), if its headers check out.
pub fn taken_ns(path: &Path) -> Option<u64> {
    checked_headers(path).map(|(_, st)| st.created_unix_ns)
}

/// Whether the image at `path` is a last checkpoint (its program ended right after it).
pub fn is_last_checkpoint(path: &Path) -> bool {
    checked_headers(path).is_some_and(|(_, st)| st.is_last_checkpoint())
}

/// The same, as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn taken(path: &Path) -> Option<String> {
    taken_ns(path).map(utc)
}

/// Everything `inspect` shows of the image at `path`, as JSON, and whether it can be restarted:
/// every checksum verifies (the MAC too, with a key), and every base image it needs is there,
/// is the image it was built on, and holds undamaged the pages it takes from it. The reason it
/// cannot is `restartable_reason`. An image that cannot be read or parsed at all is an error.
pub fn examine(path: &Path, key: Option<&Path>, trust: bool) -> Result<(Value, bool), (u8, String)> {
    let opened = ImageFile::open(path).map_err(|e| (EXIT_REFUSED, format!("{}: {e}", crate::shown(path))))?;
    examine_file(&opened, key, trust).map(|(doc, restartable, _)| (doc, restartable))
}

/// Why the image or base image `what`, whose file has `meta`, is not restored unless trusted
/// (`--trust-image`): myrestart's rule (`ckpt_sigsafe::trust`), in myrestart's words.
fn untrusted(what: &dyn std::fmt::Display, meta: &std::fs::Metadata) -> Option<String> {
    let me = crate::os::euid();
    ckpt_sigsafe::trust::untrusted_image(what, meta.uid(), meta.mode(), me).map(|u| u.to_string())
}

/// [`examine`] of an image file already open, which also gives back what checking its base
/// images found (each base open, if it checked out).
/// With `trust`, an image or base that another user owns or others may write is judged as
/// `--trust-image` restores it; without, it is not restartable, and says why.
pub fn examine_file(opened: &ImageFile, key: Option<&Path>, trust: bool) -> Result<(Value, bool, Vec<BaseCheck>), (u8, String)> {
    let path = opened.path.as_path();
    let name = crate::shown(path);
    let bad = |e: ckpt_image::ImageError| (EXIT_REFUSED, format!("{name}: {e}"));
    let mut st = Box::new(ProcessState::ZERO);
    let image = opened.image(&mut st).map_err(bad)?;
    let f = &opened.file;
    let fmeta = f.metadata().map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?;
    let mut v = Verdict { problem: None, all_ok: true, trusted: true };
    // Whose it is comes first: an image others could change is no image of ours, whatever its
    // checksums say.
    if let Some(why) = untrusted(&"the image", &fmeta) {
        v.trusted = false;
        if !trust {
            v.blocker(format!("{name}: {why}"));
        }
    }
    let regions = regions_json(opened, &image, &name, &mut v).map_err(bad)?;
    let fds = descriptors_json(opened, &image, &name, &mut v).map_err(bad)?;
    let ipc_objects = ipc_json(&image).map_err(bad)?;
    let (regs, blocked) = registers_json(&image);
    let handled: Vec<u32> = (0..64).filter(|&i| st.sigactions[i].handler > 1).map(|i| i as u32 + 1).collect();
    let ignored: Vec<u32> = (0..64).filter(|&i| st.sigactions[i].handler == 1).map(|i| i as u32 + 1).collect();
    let timers = timers_json(&st);
    let cmdline = command_line(f, &image, &st);
    let first = image.first_thread().map_err(bad)?;
    let threads: Vec<Value> = image
        .threads()
        .filter_map(Result::ok)
        .map(|t| json!({"tid": t.tid, "name": String::from_utf8_lossy(t.comm_bytes()), "fs_base": format!("{:#x}", t.fs_base), "signal_frame": format!("{:#x}", t.sigframe)}))
        .collect();
    let (has_mac, authenticated) = authentication_json(opened, &image, key, &name, &mut v)?;
    let program = String::from_utf8_lossy(first.comm_bytes());
    let tree = tree_json(opened, &image, &program, fmeta.len(), key, &name, &mut v).map_err(bad)?;
    let (bases, bases_ok, checked) = bases_json(path, &image, trust, &mut v).map_err(bad)?;
    let origin = origin_json(&image).map_err(bad)?;
    // The machine it was taken on (`NT_CKPT_NODE`; absent from an older ckpt's images).
    let node = match image.node() {
        None => serde_json::Value::Null,
        Some(n) => {
            let n = n.map_err(bad)?;
            let features: Vec<&str> = ckpt_image::node::FEATURES.iter().filter(|&&(w, b, _)| n.cpu[w] & (1 << b) != 0).map(|f| f.2).collect();
            json!({"host": crate::shown_bytes(n.hostname()), "vdso_hash": format!("{:016x}", n.vdso.0), "vdso_bytes": n.vdso.1, "cpu_features": features})
        }
    };
    let Verdict { problem, all_ok, trusted } = v;
    let doc = json!({
        "image": path.to_string_lossy(), "bases": bases, "format_version": st.version, "size": fmeta.len(), "allocated": fmeta.blocks() * 512,
        "restartable": problem.is_none(), "restartable_reason": problem,
        "checksums_ok": all_ok, "bases_verified": bases_ok, "trusted": trusted, "authentication": has_mac, "authenticated": authenticated,
        "program": program, "exe": String::from_utf8_lossy(st.exe.as_bytes()),
        "threads": threads,
        "command_line": cmdline, "cwd": String::from_utf8_lossy(st.cwd.as_bytes()),
        "pid": st.pid, "taken": utc(st.created_unix_ns), "taken_unix_ns": st.created_unix_ns, "write_ms": st.write_ns as f64 / 1e6,
        "last_checkpoint": st.is_last_checkpoint(), "raw_madvise": st.flags & ckpt_image::state::FLAG_RAW_MADVISE != 0,
        "kernel": st.kernel_str(), "xsave_features": format!("{:#x}", st.xfeatures), "xsave_bytes": st.xstate_size,
        "node": node, "checkpoint_signal": st.ckpt_signal, "attached": st.flags & ckpt_image::state::FLAG_ATTACHED != 0, "interval_ms": st.interval_ms, "origin": origin,
        "registers": regs, "signals": {"handled": handled, "ignored": ignored, "blocked_mask": format!("{blocked:#x}")},
        "timers": timers, "descriptors": fds, "ipc": ipc_objects, "regions": regions, "tree": tree,
    });
    let restartable = problem.is_none();
    Ok((doc, restartable, checked))
}

/// What examining an image found that decides whether it can be restarted.
struct Verdict {
    /// The first thing found wrong that stops a restart.
    problem: Option<String>,
    /// Every checksum (and the MAC, with a key) verifies.
    all_ok: bool,
    /// Neither the image nor a base of it is another user's, or writable by others.
    trusted: bool,
}

impl Verdict {
    /// Something that stops a restart (the first one is the reason given).
    fn blocker(&mut self, why: String) {
        self.problem.get_or_insert(why);
    }

    /// Damage (a checksum or the MAC does not verify), which stops a restart.
    fn damaged(&mut self, why: String) {
        self.all_ok = false;
        self.blocker(why);
    }
}

/// How a region's contents are kept, as the table and the JSON say it (`shm`: it maps a POSIX
/// shared memory object whose bytes are stored, which a restart puts back at its path).
fn how_stored(rec: &ckpt_image::region::RegionRecord, shm: bool) -> &'static str {
    if shm && rec.has_data() && !rec.compressed() {
        "shm object"
    } else if shm && rec.has_data() {
        "shm object, lz4"
    } else if rec.from_file() {
        "mapped from file"
    } else if rec.maps_private_file() {
        "file, unwritten"
    } else if rec.compressed() {
        "lz4"
    } else if rec.has_data() {
        "stored"
    } else if rec.kind.is_kernel_special() {
        "kernel's"
    } else {
        "empty"
    }
}

/// The memory regions, each with its data checked.
fn regions_json(opened: &ImageFile, image: &Image, name: &str, v: &mut Verdict) -> Result<Vec<Value>, ckpt_image::ImageError> {
    let (file, holes) = (opened.bytes(), opened.holes());
    let mut regions = Vec::new();
    for i in 0..image.region_count() {
        let r = image.region(i)?;
        let rec = r.record;
        let check = rec.has_data().then(|| check_region(file, &r, &holes));
        if let Some(Err(e)) = check {
            v.damaged(format!("{name}: {e}"));
        }
        let nonzero = check.and_then(Result::ok).map(|c| c.nonzero_pages);
        let stored = if !rec.has_data() {
            0
        } else if rec.compressed() {
            rec.stored_len
        } else {
            nonzero.unwrap_or(0) * PAGE_SIZE
        };
        regions.push(json!({
            "start": format!("{:#x}", rec.start), "end": format!("{:#x}", rec.end), "prot": prot(rec.prot),
            "kind": format!("{:?}", rec.kind).to_lowercase(), "shared": rec.is_shared(), "how": how_stored(&rec, image.shm_file(i).is_some()),
            "file": String::from_utf8_lossy(r.name), "bytes_stored": stored,
            "zero_pages": nonzero.filter(|_| !rec.compressed()).map(|n| rec.size() / PAGE_SIZE - n),
            "checksum_ok": check.map(|c| c.is_ok()),
        }));
    }
    Ok(regions)
}

/// The file descriptors, each with the data saved for it checked.
fn descriptors_json(opened: &ImageFile, image: &Image, name: &str, v: &mut Verdict) -> Result<Vec<Value>, ckpt_image::ImageError> {
    let (file, holes) = (opened.bytes(), opened.holes());
    let mut fds = Vec::new();
    // By descriptor, read once (not once for each descriptor: an image may hold thousands).
    let mut sockets = std::collections::HashMap::new();
    for s in image.sockets().filter_map(Result::ok) {
        sockets.entry(s.fd).or_insert(s);
    }
    let mut locks_of = std::collections::HashMap::<i32, Vec<String>>::new();
    for l in image.locks().filter_map(Result::ok) {
        locks_of.entry(l.fd).or_default().push(l.to_string());
    }
    for item in image.fds() {
        let (rec, path) = item?;
        let sock = sockets.get(&rec.fd).copied();
        let locks = locks_of.remove(&rec.fd).unwrap_or_default();
        let pty = image.ptys().filter_map(Result::ok).find(|p| p.0.fd == rec.fd);
        // A POSIX message queue: an unsupported descriptor to an older reader, restored with the
        // IPC objects.
        let queue = rec.kind == FdKind::Unsupported && image.ipc_objects().map_while(Result::ok).any(|o| o.kind == ipc::KIND_MQ && o.id == rec.fd);
        let kind = if queue { "mqueue".to_string() } else { format!("{:?}", rec.kind).to_lowercase() };
        fds.push(json!({
            "fd": rec.fd, "kind": kind, "flags": format!("{:#o}", rec.open_flags),
            "cloexec": rec.fd_flags & 1 != 0, "offset": rec.offset, "path": String::from_utf8_lossy(path),
            "restored": queue || !matches!(rec.kind, FdKind::Unsupported),
            "socket": sock.map(|s| describe_socket(&s)), "locks": locks, "pty": pty.map(|p| describe_pty(&p.0, p.1.len(), p.2.len())), "queued_bytes": (rec.blob_len > 0 && rec.kind != FdKind::Deleted && rec.kind != FdKind::MemFd).then_some(rec.blob_len),
        }));
        if let Err(e) = check_saved_file(file, &rec, &holes) {
            v.damaged(format!("{name}: {e}"));
        }
    }
    Ok(fds)
}

/// The System V objects and POSIX message queues the process used (`NT_CKPT_IPC`).
fn ipc_json(image: &Image) -> Result<Vec<Value>, ckpt_image::ImageError> {
    let mut out = Vec::new();
    for o in image.ipc_objects() {
        let o = o?;
        let kind = match o.kind {
            ipc::KIND_SHM => "shm",
            ipc::KIND_SEM => "sem",
            ipc::KIND_MSG => "msg",
            _ => "mqueue",
        };
        let name = o.mq_queue().map(|q| format!("/{}", String::from_utf8_lossy(q.name)));
        out.push(json!({
            "kind": kind, "id": o.id, "key": format!("{:#x}", o.key as u32), "mode": format!("{:#o}", o.mode), "uid": o.uid, "gid": o.gid,
            "size": o.size, "count": o.count, "name": name, "values": (o.kind == ipc::KIND_SEM).then(|| o.values().collect::<Vec<_>>()),
            // A segment's bytes are in its record only when no process attached it.
            "contents": (o.kind == ipc::KIND_SHM).then_some(!o.body.is_empty()),
        }));
    }
    Ok(out)
}

/// The main thread's registers by name, and its blocked-signal mask.
fn registers_json(image: &Image) -> (serde_json::Map<String, Value>, u64) {
    let prstatus = image.note(b"CORE", note::NT_PRSTATUS).and_then(|n| Prstatus::read(n.desc).ok());
    let mut regs = serde_json::Map::new();
    if let Some(pr) = &prstatus {
        for (name, v) in USER_REGS.iter().zip(pr.regs) {
            regs.insert(name.to_string(), json!(format!("{v:#x}")));
        }
    }
    (regs, prstatus.map_or(0, |pr| pr.sighold))
}

/// The interval timers that were armed.
fn timers_json(st: &ProcessState) -> Vec<Value> {
    ["real", "virtual", "prof"]
        .iter()
        .zip(st.itimers.iter())
        .filter(|(_, t)| t.is_armed())
        .map(|(n, t)| json!({"timer": n, "value_us": t.value_sec * 1_000_000 + t.value_usec, "interval_us": t.interval_sec * 1_000_000 + t.interval_usec}))
        .collect()
}

/// Authentication: whether the image has a MAC, and, with `--key`, whether it checks out
/// (`None`: unchecked without a key).
fn authentication_json(opened: &ImageFile, image: &Image, key: Option<&Path>, name: &str, v: &mut Verdict) -> Result<(bool, Option<bool>), (u8, String)> {
    let has_mac = image.note(ckpt_image::CKPT_NOTE_NAME, ckpt_image::NT_CKPT_MAC).is_some();
    let authenticated = match key {
        None => None,
        Some(k) => {
            let ok = ckpt_image::mac::check(&crate::key::read(k)?, opened.bytes(), image, &opened.holes());
            if let Err(e) = ok {
                v.damaged(format!("{name}: {e}"));
            }
            Some(ok.is_ok())
        }
    };
    Ok((has_mac, authenticated))
}

/// A tree: each process, its relations and its part (checked like the root's, whose program
/// is `program`).
fn tree_json(opened: &ImageFile, image: &Image, program: &str, file_len: u64, key: Option<&Path>, name: &str, v: &mut Verdict) -> Result<Vec<Value>, ckpt_image::ImageError> {
    let mut tree = Vec::new();
    let Some(records) = image.tree() else { return Ok(tree) };
    for t in records? {
        let t = t?;
        let mut entry = json!({"pid": t.pid, "ppid": t.ppid, "pgid": t.pgid, "sid": t.sid, "zombie": t.is_zombie()});
        if t.is_zombie() {
            let st = t.wait_status;
            entry["exit"] = if st & 0x7f == 0 { json!({"code": (st >> 8) & 0xff}) } else { json!({"signal": st & 0x7f}) };
        } else if t.base == 0 {
            entry["program"] = json!(program);
            entry["threads"] = json!(image.threads().count());
        } else {
            let part = part_summary(&opened.file, opened.bytes(), &opened.holes(), t.base, file_len, key, image)?;
            if !part.1 {
                v.damaged(format!("{name}: the part of process {} does not verify", t.pid));
            }
            entry["program"] = json!(part.0);
            entry["threads"] = json!(part.2);
            entry["bytes"] = json!(t.len);
            entry["checksums_ok"] = json!(part.1);
            entry["pages_in_root"] = json!(part.3);
            entry["registers"] = Value::Object(part.4);
            entry["ipc"] = json!(part.5);
        }
        tree.push(entry);
    }
    Ok(tree)
}

/// An incremental image: the older images it needs, each checked as myrestart checks it, and
/// how many pages each holds for it; whether all of them verified, and what checking found.
fn bases_json(path: &Path, image: &Image, trust: bool, v: &mut Verdict) -> Result<(Vec<Value>, bool, Vec<BaseCheck>), ckpt_image::ImageError> {
    let mut bases = Vec::new();
    let mut bases_ok = true;
    let checked = check_bases(path, image)?;
    for b in &checked {
        let state = match &b.found {
            Ok(f) => match f.file.metadata().ok().and_then(|m| untrusted(&format_args!("base image {}", b.name), &m)) {
                Some(why) => {
                    v.trusted = false;
                    if !trust {
                        v.blocker(why.clone());
                    }
                    why
                }
                None => "verified".to_string(),
            },
            Err(why) => {
                bases_ok = false;
                v.all_ok &= !why.is_checksum();
                v.blocker(format!("base image {} is {why}", b.name));
                why.to_string()
            }
        };
        bases.push(json!({"name": b.name, "id": format!("{:016x}", b.id), "pages": b.pages, "state": state}));
    }
    Ok((bases, bases_ok, checked))
}

/// What the program was started as (images of ckpt 0.1 with format 8 and later).
fn origin_json(image: &Image) -> Result<Value, ckpt_image::ImageError> {
    Ok(match image.origin() {
        None => Value::Null,
        Some(Err(e)) => return Err(e),
        Some(Ok(o)) => json!({
            "run": format!("{:016x}", o.run_id),
            "program": String::from_utf8_lossy(o.program),
            "directory": String::from_utf8_lossy(o.cwd),
            "command": if o.has_args() { json!(o.args().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>()) } else { Value::Null },
            "arguments": o.argc,
            "files": o.files.iter().flatten().map(|f| json!({
                "argument": f.arg, "size": f.size,
                "known_by": if f.how == ckpt_image::origin::SAME_CONTENTS { "contents" } else { "mtime" },
            })).collect::<Vec<_>>(),
        }),
    })
}

/// What [`part_summary`] finds of a tree part.
type PartSummary = (String, bool, usize, u64, serde_json::Map<String, Value>, Vec<Value>);

/// A tree part at `base`: its program name, whether its data (and MAC, with a key) check out,
/// its thread count, how many of its pages it stores in the root's copy, and its first
/// thread's registers.
fn part_summary(
    f: &File,
    file: &[u8],
    holes: &FileHoles,
    base: u64,
    file_len: u64,
    key: Option<&std::path::Path>,
    root: &Image,
) -> Result<PartSummary, ckpt_image::ImageError> {
    let meta = read_meta(f, base, file_len)?;
    let mut st = Box::new(ProcessState::ZERO);
    let image = Image::parse(&meta, file_len, &mut st)?;
    let mut ok = (0..image.region_count()).filter_map(|i| image.region(i).ok()).filter(|r| r.record.has_data()).all(|r| check_region(file, &r, holes).is_ok());
    ok &= image.fds().filter_map(Result::ok).all(|(rec, _)| check_saved_file(file, &rec, holes).is_ok());
    if let Some(k) = key {
        ok &= crate::key::read(k).is_ok_and(|k| ckpt_image::mac::check(&k, file, &image, holes).is_ok());
    }
    ok &= ckpt_image::shared::check_against_root(&image, root).is_ok();
    let in_root = image.shared_runs().filter_map(Result::ok).map(|r| r.pages).sum();
    let name = String::from_utf8_lossy(image.first_thread()?.comm_bytes()).into_owned();
    Ok((name, ok, image.threads().count(), in_root, registers_json(&image).0, ipc_json(&image)?))
}

/// The program's arguments, read from the saved stack (`arg_start..arg_end`).
fn command_line(f: &File, image: &Image, st: &ProcessState) -> Vec<String> {
    let (a, b) = (st.mm.arg_start, st.mm.arg_end);
    for i in 0..image.region_count() {
        let Ok(r) = image.region(i) else { continue };
        let rec = r.record;
        if rec.has_data() && !rec.compressed() && rec.start <= a && b <= rec.end && b > a && b - a < 1 << 20 {
            let mut buf = vec![0u8; (b - a) as usize];
            if f.read_exact_at(&mut buf, r.data_offset + (a - rec.start)).is_ok() {
                return buf.split(|&c| c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            }
        }
    }
    Vec::new()
}

/// One line of the table on stdout, with control characters escaped: names in it come from
/// the image (file names, the command line), which must not drive the terminal.
macro_rules! row {
    ($($arg:tt)*) => {
        println!("{}", ckpt_sigsafe::out::Lossy(format!($($arg)*).as_bytes()))
    };
}

/// The table `inspect` prints without `--json`, made from the JSON document.
fn print_table(d: &Value) {
    print_verdict(d);
    print_process(d);
    print_descriptors(d);
    print_ipc(d);
    print_tree(d);
    print_regions(d);
}

/// A JSON value as the table shows it: a string without its quotes, anything else as JSON.
fn s(v: &Value) -> String {
    v.as_str().map(String::from).unwrap_or_else(|| v.to_string())
}

/// The image, whether it can be restarted, its checksums, its key, and its base images.
fn print_verdict(d: &Value) {
    row!("image        {} ({} bytes, {} allocated), format {}", s(&d["image"]), d["size"], d["allocated"], d["format_version"]);
    match &d["restartable_reason"] {
        Value::String(why) => row!("restartable  no: {why}"),
        _ => row!("restartable  yes"),
    }
    let bases = d["bases"].as_array().map_or(0, Vec::len);
    let checksums = match (d["checksums_ok"] == true, d["bases_verified"] == true, bases) {
        (false, _, _) => "MISMATCH".to_string(),
        (true, true, 0) => "verified".to_string(),
        (true, true, 1) => "verified (this file and the base image it needs)".to_string(),
        (true, true, n) => format!("verified (this file and the {n} base images it needs)"),
        (true, false, _) => "verified in this file only (a base image it needs cannot be checked)".to_string(),
    };
    row!("checksums    {checksums}");
    match (d["authentication"] == true, d["authenticated"].as_bool()) {
        (_, Some(true)) => row!("key          authenticated"),
        (true, Some(false)) => row!("key          AUTHENTICATION FAILED"),
        (false, Some(false)) => row!("key          NOT AUTHENTICATED (made without a key)"),
        (true, None) => row!("key          authenticated image (give --key to check it)"),
        (false, None) => {}
    }
    for b in d["bases"].as_array().unwrap() {
        row!("built on     {} ({}, {})", s(&b["name"]), counted(b["pages"].as_u64().unwrap_or(0), "page", "pages"), s(&b["state"]));
    }
}

/// The program: its threads, command, origin, when it was taken, what it needs, its
/// registers, signals and timers.
fn print_process(d: &Value) {
    row!("program      {} ({}), pid {}", s(&d["program"]), s(&d["exe"]), d["pid"]);
    for t in d["threads"].as_array().unwrap() {
        row!("thread       {} {} (TLS {}, signal frame {})", t["tid"], s(&t["name"]), s(&t["fs_base"]), s(&t["signal_frame"]));
    }
    let args: Vec<String> = d["command_line"].as_array().unwrap().iter().map(s).collect();
    row!("command      {}", args.join(" "));
    let o = &d["origin"];
    if !o.is_null() {
        let cmd = match o["command"].as_array() {
            Some(words) => words.iter().map(s).collect::<Vec<_>>().join(" "),
            None => format!("a command of {} arguments", o["arguments"]),
        };
        row!("started as   {} ({}) in {}, run {}", cmd, s(&o["program"]), s(&o["directory"]), s(&o["run"]));
    }
    row!("directory    {}", s(&d["cwd"]));
    let last = if d["last_checkpoint"] == true { " (a last checkpoint: the program ended there)" } else { "" };
    row!("taken        {}, written in {:.1} ms{last}", s(&d["taken"]), d["write_ms"].as_f64().unwrap_or(0.0));
    row!("needs        kernel {}, XSAVE features {} ({} bytes of register state)", s(&d["kernel"]), s(&d["xsave_features"]), d["xsave_bytes"]);
    if let Some(n) = d["node"].as_object() {
        let features = n["cpu_features"].as_array().map_or(0, Vec::len);
        row!("node         {}, vdso {} ({} bytes), {features} CPU features a restart needs (--json names them)", s(&n["host"]), s(&n["vdso_hash"]), n["vdso_bytes"]);
    }
    if d["raw_madvise"] == true {
        row!("memory       restored eagerly: the program drops pages with madvise past libc (the Go runtime does)");
    }
    let interval = d["interval_ms"].as_u64().unwrap_or(0);
    if d["attached"] == true {
        // No libckpt ran in it, so no signal of its own checkpoints it.
        row!("checkpoints  by attaching to it (ckpt checkpoint PID: it ran without libckpt)");
    } else {
        row!("checkpoints  on signal {}{}", d["checkpoint_signal"], if interval > 0 { format!(", every {} s", interval as f64 / 1000.0) } else { String::new() });
    }
    let r = &d["registers"];
    row!("registers    rip {} rsp {} rbp {} rax {}", s(&r["rip"]), s(&r["rsp"]), s(&r["rbp"]), s(&r["rax"]));
    row!("             rbx {} rcx {} rdx {} rsi {} rdi {}", s(&r["rbx"]), s(&r["rcx"]), s(&r["rdx"]), s(&r["rsi"]), s(&r["rdi"]));
    row!("             fs_base {} eflags {}", s(&r["fs_base"]), s(&r["eflags"]));
    row!("signals      handled {} ignored {} blocked {}", d["signals"]["handled"], d["signals"]["ignored"], s(&d["signals"]["blocked_mask"]));
    for t in d["timers"].as_array().unwrap() {
        row!("timer        ITIMER_{} in {} us, every {} us", s(&t["timer"]).to_uppercase(), t["value_us"], t["interval_us"]);
    }
}

/// The file descriptors.
fn print_descriptors(d: &Value) {
    row!("descriptors");
    for f in d["descriptors"].as_array().unwrap() {
        // (A JSON value ignores widths: each is made a string first.)
        row!(
            "  {:>4}  {:<11} flags {:<8} offset {:<12} {}{}",
            s(&f["fd"]), s(&f["kind"]), s(&f["flags"]), s(&f["offset"]), f["socket"].as_str().or(f["pty"].as_str()).unwrap_or(&s(&f["path"])),
            if f["restored"] == true { "" } else { "  (not restored)" }
        );
        for l in f["locks"].as_array().into_iter().flatten() {
            row!("        holds a {}", s(l));
        }
    }
}

/// The System V objects and POSIX message queues (nothing when there are none).
fn print_ipc(d: &Value) {
    for o in d["ipc"].as_array().unwrap() {
        row!("ipc          {}", ipc_line(o));
    }
}

/// One System V object or POSIX queue, in words.
fn ipc_line(o: &Value) -> String {
    match s(&o["kind"]).as_str() {
        "shm" => {
            let held = if o["contents"] == true { ", its bytes recorded" } else { "" };
            format!("shm segment {} key {} mode {} {} bytes{held}", o["id"], s(&o["key"]), s(&o["mode"]), o["size"])
        }
        "sem" => format!("semaphore set {} key {} mode {} values {}", o["id"], s(&o["key"]), s(&o["mode"]), o["values"]),
        "msg" => format!("message queue {} key {} mode {} {} messages", o["id"], s(&o["key"]), s(&o["mode"]), o["count"]),
        _ => format!("POSIX queue {} (fd {}) mode {} {} messages", s(&o["name"]), o["id"], s(&o["mode"]), o["count"]),
    }
}

/// The processes of a tree (nothing for a single process).
fn print_tree(d: &Value) {
    let tree = d["tree"].as_array().unwrap();
    if !tree.is_empty() {
        row!("tree         {}", counted(tree.len() as u64, "process", "processes"));
        for t in tree {
            let what = if t["zombie"] == true {
                match (t["exit"]["code"].as_u64(), t["exit"]["signal"].as_u64()) {
                    (Some(c), _) => format!("zombie, exit status {c}"),
                    (_, Some(sig)) => format!("zombie, killed by signal {sig}"),
                    _ => "zombie".into(),
                }
            } else {
                let size = t["bytes"].as_u64().map(|b| format!(", {b} bytes")).unwrap_or_default();
                let shared = match t["pages_in_root"].as_u64() {
                    Some(n) if n > 0 => format!(", {} stored once with the root's", counted(n, "page", "pages")),
                    _ => String::new(),
                };
                let bad = if t["checksums_ok"] == false { ", CHECKSUM MISMATCH" } else { "" };
                format!("{} ({}{size}{shared}{bad})", s(&t["program"]), counted(t["threads"].as_u64().unwrap_or(0), "thread", "threads"))
            };
            let n = |k: &str| t[k].as_u64().unwrap_or(0);
            row!("  pid {:<7} ppid {:<7} pgid {:<7} sid {:<7} {}", n("pid"), n("ppid"), n("pgid"), n("sid"), what);
            for o in t["ipc"].as_array().into_iter().flatten() {
                row!("    ipc      {}", ipc_line(o));
            }
        }
    }
}

/// The memory regions.
fn print_regions(d: &Value) {
    row!("regions      {}", d["regions"].as_array().unwrap().len());
    row!("  {:<33} {:<4} {:<10} {:<16} {:>12} {:>10}  file", "address", "prot", "kind", "how", "bytes stored", "zero pages");
    for g in d["regions"].as_array().unwrap() {
        let zero = g["zero_pages"].as_u64().map(|z| z.to_string()).unwrap_or_default();
        row!(
            "  {:<33} {:<4} {:<10} {:<16} {:>12} {:>10}  {}",
            format!("{}-{}", s(&g["start"]), s(&g["end"])), s(&g["prot"]), s(&g["kind"]), s(&g["how"]), s(&g["bytes_stored"]), zero, s(&g["file"])
        );
    }
}

/// `1 thread`, `2 threads`: a number with its noun, singular or plural.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A socket as people say it: "unix stream listening on /run/x.sock", "tcp to 10.0.0.1:80".
/// A descriptor on a pseudo-terminal, in words: which end of which pair, the session it
/// controls, and the bytes queued in it each way.
fn describe_pty(p: &ckpt_image::pty::PtyRecord, to_slave: usize, to_master: usize) -> String {
    let end = if p.is_master() { "pty master of /dev/pts/" } else { "pty slave /dev/pts/" };
    let mut text = format!("{end}{}", p.index);
    if p.flags & ckpt_image::pty::CTTY != 0 {
        text += &format!(", terminal of session {} (foreground {})", p.sid, p.fg_pgrp);
    }
    if to_slave + to_master > 0 {
        text += &format!(", {to_slave} bytes queued to the slave, {to_master} to the master");
    }
    text
}

fn describe_socket(s: &ckpt_image::sockets::SocketRecord) -> String {
    use ckpt_image::sockets as k;
    use ckpt_sigsafe::sockets::Addr;
    let stream = s.sock_type != 2;
    let what = match (s.family, stream) {
        (1, _) => ["unix ", match s.sock_type { 1 => "stream", 2 => "dgram", 5 => "seqpacket", _ => "socket" }].concat(),
        (_, true) => "tcp".to_string(),
        (_, false) => "udp".to_string(),
    };
    let v6 = if s.family == 10 { "6" } else { "" };
    if s.state & k::LISTENING != 0 {
        format!("{what}{v6} listening on {}", Addr(s.addr()))
    } else if s.state & k::PAIRED != 0 {
        format!("{what} pair")
    } else if s.state & k::CONNECTED != 0 {
        format!("{what}{v6} to {}", Addr(s.peer()))
    } else if s.state & k::BOUND != 0 {
        format!("{what}{v6} on {}", Addr(s.addr()))
    } else {
        format!("{what}{v6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_protections() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_006_765_123_456_789), "2026-11-30 02:46:05 UTC");
        assert_eq!(prot(5), "r-x");
        assert_eq!(prot(0), "---");
        assert_eq!(prot(3), "rw-");
        assert_eq!(counted(1, "thread", "threads"), "1 thread");
        assert_eq!(counted(2, "thread", "threads"), "2 threads");
        assert_eq!(counted(0, "page", "pages"), "0 pages");
    }
}
