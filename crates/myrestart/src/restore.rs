//! After the point of no return: runs from myrestart's copy inside the block, on the block's
//! stack. It follows the plan without deciding anything:
//!
//! 0. cut back the logs the plan chose (what the program printed after the checkpoint);
//! 1. unmap everything except the block, the resume page if any, and the kernel's vdso/vvar
//!    mappings;
//! 2. move vdso/vvar to the addresses the image recorded (via a parking spot in the block, so
//!    that old and new places may overlap);
//! 3. map every region at its address and read its bytes from the image;
//! 4. restore kernel state: mm fields and brk, TLS base, TID cache, robust list, rseq, signal
//!    dispositions, umask, cwd, name, open files and epoll registrations (in a tree, then the
//!    last barrier), resource limits, interval timers;
//! 5. create the other threads, then the POSIX timers, and send the pending signals again;
//! 6. jump to libckpt's `ckpt_resume` in the restored memory (for a process that had no
//!    libckpt: to myrestart's resume page, `resume_page.rs`), which unmaps the block and
//!    resumes the program with `rt_sigreturn`.
//!
//! # Restrictions
//! This code must not allocate, must not touch memory outside the block before it is rebuilt,
//! and cannot return: a failure prints one line and ends the process (exit status 3).

use crate::fds::Parked;
use crate::plan::{Plan, TASK_END};
use ckpt_image::limits::MAX_THREADS;
use myrestart::EXIT_LOST;
use ckpt_image::region::RegionKind;
use ckpt_image::thread::{FLAG_PATCH_TID, FLAG_RSEQ};
use ckpt_image::{note, Image, ProcessState, ThreadState};
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::{page_up, say, sys};
use rustix::io::Errno;
use rustix::mm::{MapFlags, MprotectFlags, MremapFlags, ProtFlags};

fn lost(step: &str, addr: u64, e: Errno) -> ! {
    say!("myrestart: restore failed after the point of no return: {step} at {addr:#x}: {}", describe(e));
    sys::exit_group(EXIT_LOST)
}

/// Entered on the block's stack with nothing below it to return to; `p` is the plan inside
/// the block's copy of the program.
pub extern "C" fn run(p: &'static Plan) -> ! {
    let Some(image) = p.image.as_ref() else { sys::exit_group(EXIT_LOST) };
    // The logs first, now that the restart can no longer be refused (and the outer myrestart
    // has said its piece); then ckpt's line (`--say`), once, on myrestart's own stderr (the
    // program's descriptors come later).
    wait_for_eof(p.said);
    crate::files::cut_logs(p, image);
    if p.member == 0 && p.say_len > 0 {
        // Descriptor 2 is still myrestart's own here.
        let _ = rustix::io::write(crate::fds::own_std(2), &p.say[..p.say_len]);
    }
    unmap_all_but_block(p);
    move_specials(p);
    map_regions(p, image);
    restore_kernel_state(p, image);
    let mut tids = [0u32; MAX_THREADS];
    create_threads(p, image, &mut tids);
    restore_timers(p, image, &tids[..p.nothers]);
    send_pending_signals(p, image);
    resume(p)
}

/// Waits until the pipe whose read end is `fd` has no writer left (nothing without one).
fn wait_for_eof(fd: Option<Parked>) {
    let Some(fd) = fd else {
        return;
    };
    let mut b = [0u8; 16];
    let fd = fd.as_fd();
    loop {
        match rustix::io::retry_on_intr(|| rustix::io::read(fd, &mut b)) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// The POSIX timers, each with its ID (`PR_TIMER_CREATE_RESTORE_IDS`), clock, notification and
/// remaining time; thread-directed ones at their thread (`tids`: the other threads' TIDs now,
/// in plan order). libckpt's own timer for periodic checkpoints is one of them.
fn restore_timers(p: &Plan, image: &Image, tids: &[u32]) {
    use ckpt_image::timers::SIGEV_THREAD_ID;
    let chosen = sys::timer_ids_chosen(true).is_ok();
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    for t in image.timers() {
        let Ok(t) = t else { sys::exit_group(EXIT_LOST) };
        let tid = if t.notify & SIGEV_THREAD_ID == 0 {
            0
        } else if t.tid == p.thread.tid {
            me
        } else {
            match p.others[..p.nothers].iter().position(|o| o.tid == t.tid) {
                Some(i) => tids[i],
                None => sys::exit_group(EXIT_LOST), // checked when the image was read
            }
        };
        let id = match sys::timer_create_with(cpu_clock_now(p, t.clock, tids), t.notify, t.signo, t.value, tid, t.id) {
            Ok(id) => id,
            Err(e) => lost("creating a timer", t.id as u64, e),
        };
        if id != t.id {
            say!("myrestart: timer {} came back as timer {id} (this kernel cannot choose timer IDs); the program's timer_t for it is stale", t.id);
        }
        if t.value_sec != 0 || t.value_nsec != 0 {
            if let Err(e) = sys::timer_settime(id, &[t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec]) {
                lost("arming a timer", t.id as u64, e);
            }
        }
    }
    if chosen {
        let _ = sys::timer_ids_chosen(false);
    }
}

/// The clock a timer is made on again. A CPU-time clock (negative: `(~ID << 3) | which`, bit 2
/// for a thread's) names a process or thread: the program's own process (by its PID, or 0 for
/// "the caller") is named as the caller's, whatever PID it has now; one of its threads by the
/// TID that thread has now (the leader, which makes every timer, as the caller). The plan let
/// no other through (`planner::check_timers`). Other clocks are the kernel's, the same anywhere.
fn cpu_clock_now(p: &Plan, clock: i32, tids: &[u32]) -> i32 {
    if clock >= 0 {
        return clock;
    }
    let (id, thread, which) = (!(clock >> 3) as u32, clock & 4, clock & 3);
    let now = if thread == 0 || id == 0 || id == p.thread.tid {
        0
    } else {
        p.others[..p.nothers].iter().position(|o| o.tid == id).map_or(id, |i| tids[i])
    };
    (!(now as i32) << 3) | thread | which
}

/// Signals that were pending at the checkpoint, for the process and for the leader, are sent
/// again (every thread still blocks all signals; each gets them once its own mask comes back),
/// a timer's with that timer's siginfo (`pending`). The other threads' are sent as each is created.
fn send_pending_signals(p: &Plan, image: &Image) {
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    crate::pending::to_process(image, pid, p.state.shared_pending);
    crate::pending::to_thread(image, pid, p.thread.tid, tid, p.thread.sigpending);
}

/// Creates every other thread, each straight into libckpt's `ckpt_thread_resume` (or the
/// resume page's code for other threads) with its TLS base, TID address and (in the process's
/// own PID namespace) its TID set by `clone3`; there it restores the rest of its state and
/// waits for the leader's go (see `resume.rs` in libckpt).
fn create_threads(p: &Plan, image: &Image, tids: &mut [u32]) {
    use linux_raw_sys::general as k;
    let entry = p.resume_page.map_or(p.state.thread_trampoline, |r| r.thread as u64);
    for (i, t) in p.others[..p.nothers].iter().enumerate() {
        let want = [t.tid as i32];
        // SAFETY: clone_args is plain data; zero is a valid value of every field.
        let mut args: k::clone_args = unsafe { core::mem::zeroed() };
        args.flags = (k::CLONE_VM | k::CLONE_FS | k::CLONE_FILES | k::CLONE_SIGHAND | k::CLONE_THREAD | k::CLONE_SYSVSEM
            | k::CLONE_SETTLS | k::CLONE_CHILD_CLEARTID) as u64;
        if t.flags & FLAG_PATCH_TID != 0 {
            // glibc's cached TID: the kernel writes the new thread's TID there.
            args.flags |= k::CLONE_CHILD_SETTID as u64;
        }
        args.child_tid = t.tid_address;
        args.tls = t.fs_base;
        if p.own_ids {
            args.set_tid = want.as_ptr() as u64;
            args.set_tid_size = 1;
        }
        // The child's first instructions need no stack, but clone3 wants one: the dead part of
        // the thread's own stack below its frame.
        args.stack = (t.sigframe - 8192) & !15;
        args.stack_size = 4096;
        let (rseq_addr, rseq_len, rseq_sig) = if t.flags & FLAG_RSEQ != 0 { (t.rseq_addr, t.rseq_len as u64, t.rseq_sig as u64) } else { (0, 0, 0) };
        let ret: isize;
        // SAFETY: clone3 with CLONE_VM: the child shares this address space and leaves this
        // code at once (`jmp r12`) for the thread trampoline in the restored libckpt (or the
        // resume page), touching no stack; the trampoline takes exactly these registers.
        // `args` and `tids` outlive the call (the kernel reads them before it returns in
        // either thread).
        unsafe {
            core::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "jmp r12",
                "2:",
                inlateout("rax") sys::nr::CLONE3 as isize => ret,
                in("rdi") &args as *const k::clone_args as usize,
                in("rsi") core::mem::size_of::<k::clone_args>(),
                in("r12") entry,
                in("r13") t.sigframe,
                in("r14") t.robust_list,
                in("r15") t.robust_len,
                in("r8") rseq_addr,
                in("r9") rseq_len,
                in("r10") rseq_sig,
                in("rdx") t.gs_base,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        if ret < 0 {
            lost("creating a thread", t.tid as u64, Errno::from_raw_os_error(-ret as i32));
        }
        tids[i] = ret as u32;
        name_thread(ret as u32, &t.comm);
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        crate::pending::to_thread(image, pid, t.tid, ret as u32, t.sigpending);
    }
}

/// Gives thread `tid` of this process its name (a thread can only name itself with prctl, so
/// this goes through /proc).
fn name_thread(tid: u32, comm: &[u8; 16]) {
    let mut path = [0u8; 64];
    let Some(path) = ckpt_sigsafe::proctext::numbered_path(&mut path, b"/proc/self/task/", tid as u64, b"/comm") else { return };
    let len = comm.iter().position(|&c| c == 0).unwrap_or(16);
    if let Ok(fd) = rustix::fs::open(path, rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) {
        let _ = rustix::io::write(&fd, &comm[..len]);
    }
}

fn unmap_all_but_block(p: &Plan) {
    let mut keep = [(0usize, 0usize); 5];
    keep[0] = (p.block, p.block + p.block_len);
    let mut n = 1;
    if let Some(r) = p.resume_page {
        keep[n] = (r.at, r.at + r.len);
        n += 1;
    }
    for s in p.specials.iter().filter(|s| s.present) {
        keep[n] = (s.own_start, s.own_start + s.len);
        n += 1;
    }
    let keep = &mut keep[..n];
    keep.sort_unstable();
    let mut cursor = 0usize;
    for &(s, e) in keep.iter() {
        if s > cursor {
            // SAFETY: nothing in this range is used any more: the program runs from the block.
            let _ = unsafe { rustix::mm::munmap(cursor as *mut _, s - cursor) };
        }
        cursor = cursor.max(e);
    }
    if cursor < TASK_END {
        // SAFETY: as above.
        let _ = unsafe { rustix::mm::munmap(cursor as *mut _, TASK_END - cursor) };
    }
}

fn move_specials(p: &Plan) {
    let mut park = p.park;
    let mut parked = [0usize; 3];
    for (i, s) in p.specials.iter().enumerate().filter(|(_, s)| s.present) {
        // SAFETY: moves a kernel special mapping onto the parking area inside our block.
        if let Err(e) = unsafe { rustix::mm::mremap_fixed(s.own_start as *mut _, s.len, s.len, MremapFlags::MAYMOVE, park as *mut _) } {
            lost("moving the vdso/vvar aside", s.own_start as u64, e);
        }
        parked[i] = park;
        park += s.len;
    }
    for (i, s) in p.specials.iter().enumerate().filter(|(_, s)| s.present) {
        // SAFETY: the destination is free (everything but the block was unmapped, and the block
        // avoids the image's regions).
        if let Err(e) = unsafe { rustix::mm::mremap_fixed(parked[i] as *mut _, s.len, s.len, MremapFlags::MAYMOVE, s.target_start as *mut _) } {
            lost("moving the vdso/vvar into place", s.target_start as u64, e);
        }
    }
}

fn map_regions(p: &Plan, image: &Image) {
    let mut file_maps = p.file_maps[..p.nfile_maps].iter().peekable();
    // A tree process's pages that are the root's, in region order (checked at plan time).
    let mut runs = image.shared_runs().map_while(Result::ok).peekable();
    let table = image.shared_table();
    // Runs mapped one by one so far.
    let mut run_mappings = 0usize;
    for i in 0..image.region_count() {
        let Ok(r) = image.region(i) else { sys::exit_group(EXIT_LOST) };
        let rec = r.record;
        if rec.kind.is_kernel_special() {
            continue;
        }
        let prot = prot_flags(rec.prot);
        let fill_prot = if rec.has_data() { ProtFlags::READ | ProtFlags::WRITE } else { prot };
        if let Some(slot) = file_maps.next_if(|m| m.region as usize == i) {
            // A file, or shared memory made again as a memfd (one per object the program had
            // mapped, so its mappings and descriptors still share it).
            let fd = slot.fd.as_fd();
            let flags = if slot.private { MapFlags::PRIVATE } else { MapFlags::SHARED } | MapFlags::FIXED_NOREPLACE;
            let map_prot = if slot.fill { fill_prot } else { prot };
            // SAFETY: maps the file over a free range, as the process had it.
            if let Err(e) = unsafe { rustix::mm::mmap(rec.start as *mut _, rec.size() as usize, map_prot, flags, fd, rec.file_offset) } {
                lost("mapping a file", rec.start, e);
            }
            if slot.fill {
                fill_region(p, &r, || {});
            }
            crate::ipc::attach(p, &r);
            continue;
        }
        if rec.from_file() {
            sys::exit_group(EXIT_LOST);
        }
        let mut flags = if rec.is_shared() { MapFlags::SHARED } else { MapFlags::PRIVATE };
        flags |= MapFlags::FIXED_NOREPLACE;
        if rec.kind == RegionKind::Stack {
            flags |= MapFlags::GROWSDOWN;
        }
        if rec.prot == 0 {
            flags |= MapFlags::NORESERVE;
        }
        if p.maps_from_image(&rec) {
            // Mapped restore: the image file itself backs the region, copy-on-write; pages are
            // read when first touched, and holes (zero pages) cost nothing until then. The
            // pages stored elsewhere over it, from the root's copy or a base image, are mapped
            // copy-on-write too, one mapping each while they are few. Past that, the region is
            // mapped once and the other pages are read in (`map_with_many_runs`), so that no
            // number of runs can take the process past its mapping limit.
            let (first, end) = region_runs(&table, i);
            if end - first > FEW_RUNS || run_mappings + (end - first) > RUN_MAPPINGS {
                map_with_many_runs(p, &table, &r, first..end, flags);
                while runs.next_if(|run| run.region as usize == i).is_some() {}
                continue;
            }
            let img = p.image_fd.as_fd();
            // SAFETY: maps the image's copy of the region over a free range, copy-on-write.
            if let Err(e) = unsafe { rustix::mm::mmap(rec.start as *mut _, rec.size() as usize, prot, flags & !MapFlags::GROWSDOWN, img, r.data_offset) } {
                lost("mapping a region from the image", rec.start, e);
            }
            run_mappings += end - first;
            while let Some(run) = runs.next_if(|run| run.region as usize == i) {
                let at = run.addr(rec.start);
                let Some(from) = run_fd(p, &run) else { lost("mapping pages from the root's copy or a base image", at, Errno::BADF) };
                let from = from.as_fd();
                // SAFETY: the run lies inside the region just mapped (checked at plan time),
                // which MAP_FIXED replaces with the same bytes from the other copy.
                if let Err(e) = unsafe { rustix::mm::mmap(at as *mut _, run.bytes() as usize, prot, MapFlags::PRIVATE | MapFlags::FIXED, from, run.offset) } {
                    lost("mapping pages from the root's copy or a base image", at, e);
                }
            }
            continue;
        }
        // SAFETY: the address range is free (checked at plan time against the block, and
        // FIXED_NOREPLACE refuses anything else).
        if let Err(e) = unsafe { rustix::mm::mmap_anonymous(rec.start as *mut _, rec.size() as usize, fill_prot, flags) } {
            lost("mapping a region", rec.start, e);
        }
        fill_region(p, &r, || {
            // The root's pages, read over the region's own copy (whose holes they are).
            while let Some(run) = runs.next_if(|run| run.region as usize == i) {
                let Some(from) = run_fd(p, &run) else { lost("reading region data", run.addr(rec.start), Errno::BADF) };
                read_region(from, run.addr(rec.start) as usize, run.bytes() as usize, run.offset);
            }
        });
    }
}

/// Most runs of one region mapped one by one (each its own mapping, read when first touched);
/// a region with more is mapped once, and its other pages read in.
const FEW_RUNS: usize = 256;
/// Most runs mapped one by one in all. A run mapped inside its region splits it, costing up to
/// two mappings more: this keeps what runs add to the regions' own mappings at 16384, far below
/// `vm.max_map_count` (65530 by default), whatever the image holds.
const RUN_MAPPINGS: usize = 8192;
const PAGE: u64 = ckpt_image::PAGE_SIZE;

/// The runs of region `i`, as indices into the image's `NT_CKPT_SHARED` table (in order, checked
/// at plan time).
fn region_runs(table: &ckpt_image::shared::SharedTable, i: usize) -> (usize, usize) {
    match (table.first_after(i as u32, 0), table.first_after(i as u32 + 1, 0)) {
        (Ok(f), Ok(e)) if f <= e => (f, e),
        _ => lost("finding the pages stored elsewhere", i as u64, Errno::IO),
    }
}

/// Mapped restore of region `r`, whose pages stored elsewhere (the runs `runs`) are too many to
/// map one by one: the region is mapped once, copy-on-write, from the file that holds most of
/// it, and every other page is read in over that mapping (each becomes a private copy, which
/// costs only its own bytes). That file is a base (or, in a tree, the root's copy) when one
/// holds more pages of the region, at the same place in its data, than the image itself does;
/// else the image. From a base, the pages of the image's own copy that it stores are read from
/// the image, and so are its holes (zero pages: pages the program dropped or never touched)
/// wherever the base holds data: a page that both files leave as a hole reads as zeros either
/// way. The bytes come from the very places the plan checked (the image's and the bases'
/// stored data), so the checks made before the point of no return still cover them.
fn map_with_many_runs(p: &Plan, table: &ckpt_image::shared::SharedTable, r: &ckpt_image::RegionRef, runs: core::ops::Range<usize>, flags: MapFlags) {
    let rec = r.record;
    let size = rec.size();
    let these_runs = || {
        table.from(runs.start).take(runs.len()).map(|run| match run {
            Ok(run) => run,
            Err(_) => lost("reading the pages stored elsewhere", rec.start, Errno::IO),
        })
    };
    // Pages by where they are: (source, file offset the region's start would have there, pages).
    let mut sources = [(0u32, 0u64, 0u64); 8];
    let mut nsources = 0;
    let mut elsewhere = 0u64;
    for run in these_runs() {
        elsewhere += run.pages;
        let Some(at) = run.offset.checked_sub(run.first_page * PAGE) else { continue };
        match sources[..nsources].iter().position(|s| (s.0, s.1) == (run.source, at)) {
            Some(j) => sources[j].2 += run.pages,
            None if nsources < sources.len() => {
                sources[nsources] = (run.source, at, run.pages);
                nsources += 1;
            }
            None => {}
        }
    }
    let own = (size / PAGE).saturating_sub(elsewhere);
    // A file shorter than the region's mapping from it would fault past its end.
    let fits = |fd: Parked, at: u64| rustix::fs::fstat(fd.as_fd()).is_ok_and(|st| at.checked_add(size).is_some_and(|end| end <= st.st_size as u64));
    let main = sources[..nsources]
        .iter()
        .filter(|s| s.2 > own)
        .filter_map(|s| Some((source_fd(p, s.0)?, s.0, s.1, s.2)))
        .filter(|s| fits(s.0, s.2))
        .max_by_key(|s| s.3);
    let (from, from_at) = main.map_or((p.image_fd, r.data_offset), |m| (m.0, m.2));
    // SAFETY: maps a checked copy of the region over a free range (FIXED_NOREPLACE), writable
    // while the other pages are read in.
    if let Err(e) = unsafe { rustix::mm::mmap(rec.start as *mut _, size as usize, ProtFlags::READ | ProtFlags::WRITE, flags & !MapFlags::GROWSDOWN, from.as_fd(), from_at) } {
        lost("mapping a region from the image or a base image", rec.start, e);
    }
    let img = p.image_fd.as_fd();
    let mut own_data = ckpt_sigsafe::extents::data_extents(img, r.data_offset, r.data_offset + size).peekable();
    let mut main_data = main.as_ref().map(|m| (ckpt_sigsafe::extents::data_extents(m.0.as_fd(), m.2, m.2 + size).peekable(), m.2));
    // Pages `lo..hi` (bytes from the region's start) that no run names, under a base's mapping:
    // the image's bytes wherever either file holds data.
    let mut gap = |lo: u64, hi: u64| {
        let Some((main_data, main_at)) = main_data.as_mut() else { return };
        let read = |a: u64, b: u64| read_region(p.image_fd, (rec.start + a) as usize, (b - a) as usize, r.data_offset + a);
        read_overlaps(&mut own_data, r.data_offset, lo, hi, read);
        read_overlaps(main_data, *main_at, lo, hi, read);
    };
    let mut next = 0u64;
    for run in these_runs() {
        gap(next * PAGE, run.first_page * PAGE);
        let in_main = main.is_some_and(|m| run.source == m.1 && run.offset.checked_sub(run.first_page * PAGE) == Some(m.2));
        if !in_main {
            let Some(fd) = source_fd(p, run.source) else { lost("reading pages from the root's copy or a base image", run.addr(rec.start), Errno::BADF) };
            read_region(fd, run.addr(rec.start) as usize, run.bytes() as usize, run.offset);
        }
        next = run.first_page + run.pages;
    }
    gap(next * PAGE, size);
    if rec.prot != 3 {
        // SAFETY: the region was just mapped by us.
        if let Err(e) = unsafe { rustix::mm::mprotect(rec.start as *mut _, size as usize, mprotect_flags(rec.prot)) } {
            lost("protecting a region", rec.start, e);
        }
    }
}

/// For the data stretches `extents` of a file (in order, consumed as they are passed) in which
/// the region starts at offset `at`: calls `read` with each part of `lo..hi` (bytes from the
/// region's start) that they cover.
fn read_overlaps(extents: &mut core::iter::Peekable<impl Iterator<Item = (u64, u64)>>, at: u64, lo: u64, hi: u64, read: impl Fn(u64, u64)) {
    if lo >= hi {
        return;
    }
    while let Some(&(s, e)) = extents.peek() {
        let (s, e) = (s - at, e - at);
        if e <= lo {
            extents.next();
            continue;
        }
        if s >= hi {
            return;
        }
        read(s.max(lo), e.min(hi));
        if e > hi {
            return;
        }
        extents.next();
    }
}

/// The descriptor of source `source` of a run: the image (the root's copy) or a base.
fn source_fd(p: &Plan, source: u32) -> Option<Parked> {
    match source {
        0 => Some(p.image_fd),
        k => p.bases.get(k as usize - 1).copied().filter(|&b| b != Parked::NONE),
    }
}

/// The file a run of pages stored elsewhere is in: the image (the root's copy) or a base.
fn run_fd(p: &Plan, run: &ckpt_image::shared::SharedRun) -> Option<Parked> {
    source_fd(p, run.source)
}

/// Writes a freshly mapped (read-write) region's saved contents into it, then (after `more`,
/// which may write the rest) gives it its protection.
fn fill_region(p: &Plan, r: &ckpt_image::RegionRef, more: impl FnOnce()) {
    let rec = r.record;
    if !rec.has_data() {
        return;
    }
    if rec.compressed() {
        decompress_region(p, rec.start as usize, rec.size() as usize, r.data_offset);
    } else {
        let img = p.image_fd.as_fd();
        for (from, to) in ckpt_sigsafe::extents::data_extents(img, r.data_offset, r.data_offset + rec.size()) {
            read_region(p.image_fd, rec.start as usize + (from - r.data_offset) as usize, (to - from) as usize, from);
        }
    }
    more();
    if rec.prot != 3 {
        // SAFETY: the region was just mapped by us.
        if let Err(e) = unsafe { rustix::mm::mprotect(rec.start as *mut _, rec.size() as usize, mprotect_flags(rec.prot)) } {
            lost("protecting a region", rec.start, e);
        }
    }
}

/// Fills `start..start+size` from a compressed stream at `off` in the image, one chunk at a
/// time through the block's staging area.
fn decompress_region(p: &Plan, start: usize, size: usize, mut off: u64) {
    use ckpt_image::compress::{Chunk, ChunkHeader, HEADER, MAX_STORED};
    let mut done = 0;
    while done < size {
        let dst = start + done;
        read_region(p.image_fd, p.staging, HEADER, off);
        // SAFETY: the staging area is ours, MAX_STORED bytes long, and just filled.
        let header = unsafe { core::slice::from_raw_parts(p.staging as *const u8, HEADER) };
        let Ok(h) = ChunkHeader::parse(header, size - done) else { lost("decompressing a region (bad chunk)", dst as u64, Errno::IO) };
        off += HEADER as u64;
        match h.kind {
            Chunk::Zero => {}
            Chunk::Raw => read_region(p.image_fd, dst, h.raw_len, off),
            Chunk::Lz4 => {
                if h.stored_len > MAX_STORED {
                    lost("decompressing a region (chunk too large)", dst as u64, Errno::IO);
                }
                read_region(p.image_fd, p.staging, h.stored_len, off);
                // SAFETY: staging holds stored_len bytes just read; the destination is the part
                // of the region we just mapped writable.
                let (input, output) = unsafe {
                    (core::slice::from_raw_parts(p.staging as *const u8, h.stored_len), core::slice::from_raw_parts_mut(dst as *mut u8, h.raw_len))
                };
                if !matches!(lz4_flex::block::decompress_into(input, output), Ok(n) if n == h.raw_len) {
                    lost("decompressing a region", dst as u64, Errno::IO);
                }
            }
        }
        off += h.stored_len as u64;
        done += h.raw_len;
    }
}

fn read_region(fd: Parked, mut addr: usize, mut len: usize, mut off: u64) {
    while len > 0 {
        let step = len.min(1 << 30);
        // SAFETY: addr..addr+step is a region we just mapped writable.
        match rustix::io::retry_on_intr(|| unsafe { sys::pread_into(fd.raw(), addr, step, off) }) {
            Ok(0) => lost("reading region data (image shrank)", addr as u64, Errno::IO),
            Ok(n) => {
                addr += n;
                len -= n;
                off += n as u64;
            }
            Err(e) => lost("reading region data", addr as u64, e),
        }
    }
}

fn prot_flags(prot: u32) -> ProtFlags {
    ProtFlags::from_bits_truncate(prot)
}

fn mprotect_flags(prot: u32) -> MprotectFlags {
    MprotectFlags::from_bits_truncate(prot)
}

/// Step 4: the kernel's state of the process and of its main thread, in this order: the mm
/// fields, the thread's registers and lists, the process's settings, the descriptors (and, in
/// a tree, the wait for every other process), myrestart's own descriptors closed, then limits
/// and timers.
fn restore_kernel_state(p: &Plan, image: &Image) {
    restore_mm(p, image);
    restore_thread(&p.thread);
    restore_settings(p);
    restore_descriptors(p, image);
    // In a tree, no process runs again before every one is restored.
    crate::tree::barrier(p, crate::tree::RESTORED);
    // SAFETY: descriptors from fd_base on are myrestart's parked ones, used no more; their
    // `OwnedFd`s were all turned into raw numbers when they were parked.
    let _ = unsafe { sys::close_from(p.fd_base as u32) };
    // Those closes dropped this process's POSIX locks (any close of a file's descriptor does):
    // taken again at once, on the restored descriptors.
    crate::locks::retake(p);
    restore_limits_and_timers(&p.state);
}

/// What the kernel keeps of the address space (code, data, heap and stack bounds, arguments,
/// environment, auxv) and, where allowed, the program file: `PR_SET_MM_MAP`.
fn restore_mm(p: &Plan, image: &Image) {
    let st = &p.state;
    let auxv = image.note(b"CORE", note::NT_AUXV).map(|n| n.desc).unwrap_or(&[]);
    // The kernel keeps at most this much auxv (AT_VECTOR_SIZE words).
    let auxv_ok = !auxv.is_empty() && auxv.len() <= 52 * 8;
    let mm = &st.mm;
    let mut map = rustix::process::PrctlMmMap {
        start_code: mm.start_code,
        end_code: mm.end_code,
        start_data: mm.start_data,
        end_data: mm.end_data,
        start_brk: mm.start_brk,
        brk: mm.brk,
        start_stack: mm.start_stack,
        arg_start: mm.arg_start,
        arg_end: mm.arg_end,
        env_start: mm.env_start,
        env_end: mm.env_end,
        auxv: if auxv_ok { auxv.as_ptr() as *mut u64 } else { core::ptr::null_mut() },
        auxv_size: if auxv_ok { auxv.len() as u32 } else { 0 },
        exe_fd: p.exe_fd.map_or(-1, Parked::raw),
    };
    // SAFETY: the values describe the address space we just rebuilt; auxv points into the block.
    if unsafe { rustix::process::configure_virtual_memory_map(&map) }.is_err() {
        // Changing /proc/PID/exe needs more privilege than the rest; do without it.
        map.exe_fd = -1;
        // SAFETY: as above.
        if let Err(e) = unsafe { rustix::process::configure_virtual_memory_map(&map) } {
            lost("restoring the heap bounds (PR_SET_MM_MAP)", mm.brk, e);
        }
    }
}

/// The restored main thread's kernel state: TLS base, TID cache, robust list, rseq.
fn restore_thread(th: &ThreadState) {
    // SAFETY: the thread pointer of the restored thread; nothing here uses TLS.
    if let Err(e) = unsafe { sys::arch_set(sys::ARCH_SET_FS, th.fs_base) } {
        lost("restoring the TLS base", th.fs_base, e);
    }
    if th.gs_base != 0 {
        // SAFETY: as above, for gs.
        let _ = unsafe { sys::arch_set(sys::ARCH_SET_GS, th.gs_base) };
    }
    if th.tid_address != 0 {
        // SAFETY: glibc's clear_child_tid location in the restored thread descriptor.
        let tid = unsafe { sys::set_tid_address(th.tid_address) };
        if th.flags & FLAG_PATCH_TID != 0 {
            // SAFETY: checked at plan time to be inside writable restored memory.
            unsafe { *(th.tid_address as *mut u32) = tid };
        }
    }
    if th.robust_list != 0 {
        // SAFETY: the restored thread's own robust list head.
        let _ = unsafe { sys::set_robust_list(th.robust_list, th.robust_len) };
    }
    if th.flags & FLAG_RSEQ != 0 {
        // SAFETY: the restored thread's rseq area, checked to lie in writable restored memory.
        if let Err(e) = unsafe { sys::rseq_register(th.rseq_addr, th.rseq_len, th.rseq_sig) } {
            lost("registering rseq", th.rseq_addr, e);
        }
    }
}

/// The process's settings: signal dispositions, umask, working directory, and the main
/// thread's name.
fn restore_settings(p: &Plan) {
    let st = &p.state;
    for (i, a) in st.sigactions.iter().enumerate() {
        let sig = i as u32 + 1;
        if sig == 9 || sig == 19 {
            continue;
        }
        let rec = [a.handler, a.flags, a.restorer, a.mask];
        // SAFETY: the dispositions the process had, pointing into its restored code.
        let _ = unsafe { sys::rt_sigaction(sig, Some(&rec), None) };
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(st.umask));
    if let Err(e) = p.cwd_fd.ok_or(Errno::BADF).and_then(|cwd| rustix::process::fchdir(cwd.as_fd())) {
        lost("changing to the working directory", 0, e);
    }
    let mut name = [0u8; 17];
    name[..16].copy_from_slice(&p.thread.comm);
    if let Ok(c) = core::ffi::CStr::from_bytes_until_nul(&name) {
        let _ = rustix::thread::set_name(c);
    }
}

/// Descriptors at their old numbers, nothing of myrestart's left among them (the parked ones
/// above are closed after the barrier); then the epoll registrations, now that every
/// descriptor is at its number.
fn restore_descriptors(p: &Plan, image: &Image) {
    if let Err((fd, e)) = crate::files::install(p) {
        lost("restoring a descriptor", fd as u64, e);
    }
    for reg in image.epoll_registrations().filter_map(Result::ok) {
        if crate::files::restored_fd(p, reg.tfd) {
            if let Err(e) = sys::epoll_add(reg.epfd, reg.tfd, reg.events, reg.data) {
                say!("myrestart: epoll fd {} cannot watch fd {} again: {}", reg.epfd, reg.tfd, describe(e));
            }
        }
    }
}

/// Resource limits, now that every descriptor is in place; a hard limit that cannot be raised
/// again (which plan said) keeps the current one. Then the interval timers that were armed.
fn restore_limits_and_timers(st: &ProcessState) {
    for (i, l) in st.rlimits.iter().enumerate() {
        if sys::prlimit(i as u32, Some(*l)).is_err() {
            if let Ok(now) = sys::prlimit(i as u32, None) {
                let _ = sys::prlimit(i as u32, Some([l[0].min(now[1]), now[1]]));
            }
        }
    }
    for (which, t) in st.itimers.iter().enumerate() {
        if t.is_armed() {
            let _ = sys::setitimer(which, &[t.interval_sec, t.interval_usec, t.value_sec, t.value_usec]);
        }
    }
}

/// Jumps to libckpt's trampoline in the restored process, or to the resume page.
fn resume(p: &Plan) -> ! {
    let tramp = p.resume_page.map_or(p.state.resume_trampoline, |r| r.leader as u64);
    let (block, len, frame) = (p.block, page_up(p.block_len), p.thread.sigframe);
    let stop = p.stopped as usize;
    let others = p.nothers;
    // SAFETY: the trampoline is restored code (or the resume page's, made before the point of
    // no return and kept) that takes exactly these registers, unmaps this block (which we
    // never touch again) and calls rt_sigreturn on the saved frame.
    unsafe {
        core::arch::asm!(
            "jmp {t}",
            t = in(reg) tramp, in("rdi") block, in("rsi") len, in("rdx") frame, in("rcx") stop, in("r8") others,
            options(noreturn),
        );
    }
}
