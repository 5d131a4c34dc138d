//! `ckpt inspect IMAGE [--json]`: what an image holds, checked the way myrestart checks it.

use crate::{Outcome, EXIT_FAILED, EXIT_REFUSED};
use ckpt_image::compress::check_stream;
use ckpt_image::fds::FdKind;
use ckpt_image::image::{meta_len, PREFIX_LEN};
use ckpt_image::{hash, is_zero_page, note, Image, ProcessState, RegionHasher, PAGE_SIZE};
use clap::Args;
use serde_json::{json, Value};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InspectArgs {
    /// The image file.
    image: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const REGS: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs",
    "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
];

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

/// Data stretches of `from..to` in the file (holes skipped).
fn extents(f: &File, from: u64, to: u64) -> Vec<(u64, u64)> {
    use ckpt_sigsafe::extents::{data_extents, BorrowedFd};
    use std::os::unix::io::AsRawFd;
    // SAFETY: `f` stays open for the whole iteration, which ends inside this function.
    let fd = unsafe { BorrowedFd::borrow_raw(f.as_raw_fd()) };
    data_extents(fd, from, to).collect()
}

struct RegionCheck {
    ok: bool,
    nonzero_pages: u64,
}

fn check_region(f: &File, data_offset: u64, size: u64, stored: u64, compressed: bool, want: u64) -> std::io::Result<RegionCheck> {
    if compressed {
        let mut stream = vec![0u8; stored as usize];
        f.read_exact_at(&mut stream, data_offset)?;
        let ok = check_stream(&stream, size).is_ok() && hash(&stream) == want;
        return Ok(RegionCheck { ok, nonzero_pages: size / PAGE_SIZE });
    }
    let mut h = RegionHasher::new();
    let mut nonzero = 0;
    let mut buf = vec![0u8; 1 << 20];
    for (s, e) in extents(f, data_offset, data_offset + size) {
        let mut at = s;
        while at < e {
            let n = ((e - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at)?;
            for (i, page) in buf[..n].chunks(PAGE_SIZE as usize).enumerate() {
                if !is_zero_page(page) {
                    nonzero += 1;
                    h.add_nonzero((at - data_offset) / PAGE_SIZE + i as u64, page);
                }
            }
            at += n as u64;
        }
    }
    Ok(RegionCheck { ok: h.digest() == want, nonzero_pages: nonzero })
}

pub fn inspect(a: InspectArgs) -> Outcome {
    let name = a.image.display().to_string();
    let f = File::open(&a.image).map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?;
    let fmeta = f.metadata().map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?;
    let mut prefix = vec![0u8; PREFIX_LEN];
    let got = f.read_at(&mut prefix, 0).unwrap_or(0);
    let bad = |e: ckpt_image::ImageError| (EXIT_REFUSED, format!("{name}: {e}"));
    let len = meta_len(&prefix[..got]).map_err(bad)?;
    if len > fmeta.len() || len > 1 << 30 {
        return Err(bad(ckpt_image::ImageError::Truncated));
    }
    let mut meta = vec![0u8; len as usize];
    f.read_exact_at(&mut meta, 0).map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?;
    let mut st = Box::new(ProcessState::ZERO);
    let image = Image::parse(&meta, fmeta.len(), &mut st).map_err(bad)?;

    let mut regions = Vec::new();
    let mut all_ok = true;
    for i in 0..image.region_count() {
        let r = image.region(i).map_err(bad)?;
        let rec = r.record;
        let check = if rec.has_data() {
            Some(check_region(&f, r.data_offset, rec.size(), rec.stored_len, rec.compressed(), rec.data_hash).map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?)
        } else {
            None
        };
        all_ok &= check.as_ref().is_none_or(|c| c.ok);
        let stored = if !rec.has_data() {
            0
        } else if rec.compressed() {
            rec.stored_len
        } else {
            check.as_ref().map_or(0, |c| c.nonzero_pages * PAGE_SIZE)
        };
        let how = if rec.from_file() {
            "mapped from file"
        } else if rec.compressed() {
            "lz4"
        } else if rec.has_data() {
            "stored"
        } else if rec.kind.is_kernel_special() {
            "kernel's"
        } else {
            "empty"
        };
        regions.push(json!({
            "start": format!("{:#x}", rec.start), "end": format!("{:#x}", rec.end), "prot": prot(rec.prot),
            "kind": format!("{:?}", rec.kind).to_lowercase(), "shared": rec.is_shared(), "how": how,
            "file": String::from_utf8_lossy(r.name), "bytes_stored": stored,
            "zero_pages": check.as_ref().filter(|_| !rec.compressed()).map(|c| rec.size() / PAGE_SIZE - c.nonzero_pages),
            "checksum_ok": check.as_ref().map(|c| c.ok),
        }));
    }
    let mut fds = Vec::new();
    for item in image.fds() {
        let (rec, path) = item.map_err(bad)?;
        fds.push(json!({
            "fd": rec.fd, "kind": format!("{:?}", rec.kind).to_lowercase(), "flags": format!("{:#o}", rec.open_flags),
            "cloexec": rec.fd_flags & 1 != 0, "offset": rec.offset, "path": String::from_utf8_lossy(path),
            "restored": !matches!(rec.kind, FdKind::Unsupported),
        }));
        if rec.kind == FdKind::Deleted {
            let mut blob = vec![0u8; rec.blob_len as usize];
            f.read_exact_at(&mut blob, rec.blob_offset).map_err(|e| (EXIT_REFUSED, format!("{name}: {e}")))?;
            all_ok &= hash(&blob) == rec.blob_hash;
        }
    }
    let mut regs = serde_json::Map::new();
    if let Some(n) = image.note(b"CORE", note::NT_PRSTATUS) {
        for (i, r) in REGS.iter().enumerate() {
            let at = 112 + i * 8;
            if let Some(b) = n.desc.get(at..at + 8) {
                regs.insert(r.to_string(), json!(format!("{:#x}", u64::from_le_bytes(b.try_into().unwrap()))));
            }
        }
    }
    let blocked = image.note(b"CORE", note::NT_PRSTATUS).and_then(|n| n.desc.get(24..32)).map(|b| u64::from_le_bytes(b.try_into().unwrap())).unwrap_or(0);
    let handled: Vec<u32> = (0..64).filter(|&i| st.sigactions[i].handler > 1).map(|i| i as u32 + 1).collect();
    let ignored: Vec<u32> = (0..64).filter(|&i| st.sigactions[i].handler == 1).map(|i| i as u32 + 1).collect();
    let timers: Vec<Value> = ["real", "virtual", "prof"]
        .iter()
        .zip(st.itimers.iter())
        .filter(|(_, t)| t.is_armed())
        .map(|(n, t)| json!({"timer": n, "value_us": t.value_sec * 1_000_000 + t.value_usec, "interval_us": t.interval_sec * 1_000_000 + t.interval_usec}))
        .collect();
    let cmdline = command_line(&f, &image, &st);
    let doc = json!({
        "image": name, "format_version": st.version, "size": fmeta.len(), "allocated": fmeta.blocks() * 512,
        "checksums_ok": all_ok,
        "program": String::from_utf8_lossy(st.comm_bytes()), "exe": String::from_utf8_lossy(st.exe.as_bytes()),
        "command_line": cmdline, "cwd": String::from_utf8_lossy(st.cwd.as_bytes()),
        "pid": st.pid, "taken": utc(st.created_unix_ns), "taken_unix_ns": st.created_unix_ns, "write_ms": st.write_ns as f64 / 1e6,
        "kernel": st.kernel_str(), "xsave_features": format!("{:#x}", st.xfeatures), "xsave_bytes": st.xstate_size,
        "checkpoint_signal": st.ckpt_signal, "interval_secs": st.interval_secs,
        "registers": regs, "signals": {"handled": handled, "ignored": ignored, "blocked_mask": format!("{blocked:#x}")},
        "timers": timers, "descriptors": fds, "regions": regions,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    } else {
        print_table(&doc);
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
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

fn print_table(d: &Value) {
    let s = |v: &Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
    println!("image        {} ({} bytes, {} allocated), format {}", s(&d["image"]), d["size"], d["allocated"], d["format_version"]);
    println!("checksums    {}", if d["checksums_ok"] == true { "verified" } else { "MISMATCH" });
    println!("program      {} ({}), pid {}", s(&d["program"]), s(&d["exe"]), d["pid"]);
    let args: Vec<String> = d["command_line"].as_array().unwrap().iter().map(s).collect();
    println!("command      {}", args.join(" "));
    println!("directory    {}", s(&d["cwd"]));
    println!("taken        {}, written in {:.1} ms", s(&d["taken"]), d["write_ms"].as_f64().unwrap_or(0.0));
    println!("needs        kernel {}, XSAVE features {} ({} bytes of register state)", s(&d["kernel"]), s(&d["xsave_features"]), d["xsave_bytes"]);
    let interval = d["interval_secs"].as_u64().unwrap_or(0);
    println!("checkpoints  on signal {}{}", d["checkpoint_signal"], if interval > 0 { format!(", every {interval} s") } else { String::new() });
    let r = &d["registers"];
    println!("registers    rip {} rsp {} rbp {} rax {}", s(&r["rip"]), s(&r["rsp"]), s(&r["rbp"]), s(&r["rax"]));
    println!("             rbx {} rcx {} rdx {} rsi {} rdi {}", s(&r["rbx"]), s(&r["rcx"]), s(&r["rdx"]), s(&r["rsi"]), s(&r["rdi"]));
    println!("             fs_base {} eflags {}", s(&r["fs_base"]), s(&r["eflags"]));
    println!("signals      handled {} ignored {} blocked {}", d["signals"]["handled"], d["signals"]["ignored"], s(&d["signals"]["blocked_mask"]));
    for t in d["timers"].as_array().unwrap() {
        println!("timer        ITIMER_{} in {} us, every {} us", s(&t["timer"]).to_uppercase(), t["value_us"], t["interval_us"]);
    }
    println!("descriptors");
    for f in d["descriptors"].as_array().unwrap() {
        println!(
            "  {:>4}  {:<11} flags {:<8} offset {:<12} {}{}",
            f["fd"], s(&f["kind"]), s(&f["flags"]), f["offset"], s(&f["path"]),
            if f["restored"] == true { "" } else { "  (not restored)" }
        );
    }
    println!("regions      {}", d["regions"].as_array().unwrap().len());
    println!("  {:<33} {:<4} {:<10} {:<16} {:>12} {:>10}  file", "address", "prot", "kind", "how", "bytes stored", "zero pages");
    for g in d["regions"].as_array().unwrap() {
        let zero = g["zero_pages"].as_u64().map(|z| z.to_string()).unwrap_or_default();
        println!(
            "  {}-{:<18} {:<4} {:<10} {:<16} {:>12} {:>10}  {}",
            s(&g["start"]), s(&g["end"]), s(&g["prot"]), s(&g["kind"]), s(&g["how"]), g["bytes_stored"], zero, s(&g["file"])
        );
    }
}

