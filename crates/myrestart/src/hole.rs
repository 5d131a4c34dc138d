//! Moving out of the way: myrestart's own code, data, stack and the kernel's vdso for it may sit
//! exactly where the target needs memory (a non-PIE program can have anything at 0x5000000).
//!
//! So myrestart finds a block of addresses free both in its own layout and in the image's,
//! copies itself there (code, data, bss — the plan included), re-applies its relocations for
//! the new address, and continues on a stack inside the block. From then on nothing outside
//! the block is needed, and the restore may unmap everything else.
//!
//! Block layout: `[program copy][guard][stack][vdso parking][staging][image headers][tables]`;
//! the plan's tables are not part of the program (they are sized from the image) and are moved
//! into the block rather than copied (`tables::follow`).

use crate::plan::{plan_in_copy, Plan};
use crate::refusal::Refusal;
use crate::restore;
use myrestart::gap::{find_gap, merge_sorted};
use myrestart::relocate::{self, SelfImage};
use myrestart::TASK_END;
use ckpt_image::Image;
use ckpt_sigsafe::errno::describe;
use ckpt_sigsafe::{maps, page_up, PAGE};
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

const STACK_LEN: usize = 256 * 1024;

/// Step 1 of 2, before any change outside (in a tree, before the first barrier): everything
/// that may fail: a block found and mapped, the image's headers moved into it, the stack's
/// guard page. A refusal here leaves nothing to take back, in this process or another.
pub fn prepare(me: &SelfImage, p: &mut Plan) -> Result<(), Refusal> {
    let park_len: usize = p.specials.iter().filter(|s| s.present).map(|s| s.len).sum();
    let staging_len = page_up(ckpt_image::compress::MAX_STORED);
    let meta_at = me.span + PAGE + STACK_LEN + park_len + staging_len;
    let tables_at = meta_at + page_up(p.meta_len);
    let block_len = tables_at + p.arena.len;

    let Some(block) = find_room(p, block_len) else {
        return Err(Refusal::new(format_args!("no free address range of {block_len} bytes outside the image's memory")));
    };
    // SAFETY: the range is free in our own layout (checked against /proc/self/maps), and
    // FIXED_NOREPLACE makes the kernel refuse rather than replace anything.
    let got = unsafe {
        rustix::mm::mmap_anonymous(
            block as *mut _,
            block_len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
        )
    };
    if let Err(e) = got {
        return Err(Refusal::new(format_args!("cannot map a {block_len}-byte block at {block:#x}: {}", describe(e))));
    }

    // Headers into the block, and the plan pointed at them. The old buffer stays mapped (the
    // plan's view of the image refers to it until it is parsed again here); the teardown after
    // the point of no return removes it with everything else.
    // SAFETY: both ranges are mapped, meta_len bytes long, and distinct.
    unsafe { core::ptr::copy_nonoverlapping(p.meta as *const u8, (block + meta_at) as *mut u8, p.meta_len) };
    p.meta = block + meta_at;
    // SAFETY: the block lives until libckpt's trampoline unmaps it, after its last use.
    let meta: &'static [u8] = unsafe { core::slice::from_raw_parts(p.meta as *const u8, p.meta_len) };
    p.image = match Image::parse(meta, p.file_len, &mut p.state) {
        Ok(img) => Some(img),
        Err(e) => {
            return Err(Refusal::new(format_args!("image headers changed while reading: {e}")));
        }
    };
    p.block = block;
    p.block_len = block_len;
    p.stack_top = block + me.span + PAGE + STACK_LEN;
    p.park = p.stack_top;
    p.staging = p.park + park_len;
    // The guard page between the program copy and the stack: an overflowing stack faults
    // instead of overwriting the program's data (the plan included).
    // SAFETY: the page lies in the fresh block, between the copy and the stack, and nothing
    // uses it.
    if let Err(e) = unsafe { rustix::mm::mprotect((block + me.span) as *mut _, PAGE, MprotectFlags::empty()) } {
        return Err(Refusal::new(format_args!("cannot protect the stack's guard page: {}", describe(e))));
    }
    // The tables into the block now (`mremap`, which may fail), the plan pointed at them there:
    // when the program is copied after the changes, its plan goes with tables already in place.
    if let Err(e) = crate::tables::follow(p, block + tables_at) {
        return Err(Refusal::new(format_args!("cannot move the restore's tables into its block: {}", describe(e))));
    }
    Ok(())
}

/// Step 2 of 2, once every change outside is made (in a tree, after the last barrier before
/// the point of no return): the program copied into the block [`prepare`] made, with its
/// statics (the plan included) as they are now, relocated there, and entered on the block's
/// stack. Nothing here fails but what failed already at start (the same relocations were
/// applied then).
pub fn move_and_restore(me: &SelfImage, p: &'static mut Plan) -> ! {
    let block = p.block;

    // The program itself, with its statics (this plan included) as they are now.
    // SAFETY: copying our own mapped image into the fresh block; the source stays mapped.
    unsafe { core::ptr::copy_nonoverlapping(me.base as *const u8, block as *mut u8, me.span) };
    // SAFETY: the copy is writable and the relocation table of the original is still mapped.
    if !unsafe { relocate::apply(me, block) } {
        refused(p, Refusal::new(format_args!("cannot relocate itself")));
    }
    protect_copy(me, block);

    let run = restore::run as *const () as usize - me.base + block;
    let stack_top = p.stack_top;
    // From here on the plan is the copy's: the original is torn down with the rest.
    let plan_copy = plan_in_copy(me.base, block);
    // SAFETY: `run` is `restore::run` in the relocated copy, which never returns, and its
    // argument the copy's plan, complete (it was copied after its last change); the new stack
    // is inside the block and 16-byte aligned.
    unsafe {
        core::arch::asm!(
            "mov rsp, {sp}", "call {f}", "ud2",
            sp = in(reg) stack_top, f = in(reg) run, in("rdi") plan_copy,
            options(noreturn),
        );
    }
}

/// Gives the copy the protections its ELF segments ask for (code executable, data writable).
fn protect_copy(me: &SelfImage, block: usize) {
    // SAFETY: reading our own ELF program headers, mapped at me.base.
    let (phoff, phnum) = unsafe { (*((me.base + 32) as *const u64) as usize, *((me.base + 56) as *const u16) as usize) };
    for i in 0..phnum {
        let ph = me.base + phoff + i * 56;
        // SAFETY: as above.
        let (ty, flags, vaddr, memsz) =
            unsafe { (*(ph as *const u32), *((ph + 4) as *const u32), *((ph + 16) as *const u64), *((ph + 40) as *const u64)) };
        if ty != 1 {
            continue;
        }
        let start = block + (vaddr as usize - me.link_base) / PAGE * PAGE;
        let end = page_up(block + vaddr as usize - me.link_base + memsz as usize);
        let mut prot = MprotectFlags::empty();
        if flags & 4 != 0 {
            prot |= MprotectFlags::READ;
        }
        if flags & 2 != 0 {
            prot |= MprotectFlags::WRITE;
        }
        if flags & 1 != 0 {
            prot |= MprotectFlags::EXEC;
        }
        // SAFETY: the range lies in the copy, which nothing else uses.
        let _ = unsafe { rustix::mm::mprotect(start as *mut _, end - start, prot) };
    }
}

/// Finds `len` bytes (plus margins) free both in our layout (as it is now: once the block is
/// mapped, outside it too) and in the image's: for the block, and for the resume page
/// (`resume_page.rs`).
pub fn find_room(p: &Plan, len: usize) -> Option<usize> {
    static mut OWN: [u8; 65536] = [0; 65536];
    // SAFETY: single-threaded; the only reference to this buffer.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(OWN) };
    let n = ckpt_sigsafe::file::read_whole(c"/proc/self/maps", buf).ok()?;
    let own = maps::entries(&buf[..n]).map(|e| (e.start, e.end)).filter(|&(s, _)| s < TASK_END);
    let image = p.image.as_ref()?;
    let target = (0..image.region_count())
        .filter_map(|i| image.region(i).ok())
        .map(|r| (r.record.start as usize, r.record.end as usize))
        .filter(|&(s, _)| s < TASK_END);
    find_gap(merge_sorted(own, target), len)
}

/// Refused before the point of no return, after the changes outside were made: they are taken
/// back first.
fn refused(p: &Plan, why: Refusal) -> ! {
    p.acts.undo(p.image);
    why.exit()
}
