//! What the CPU says about its register state: the XSAVE features the kernel enabled (XCR0)
//! and where each of them lies in an XSAVE area (CPUID leaf 0xD).

/// XCR0: the XSAVE features the kernel enabled (0 if the CPU has no XSAVE).
pub fn xcr0() -> u64 {
    // SAFETY: CPUID exists on every x86-64 CPU (the block is `unsafe` for Rust before 1.87,
    // where this intrinsic was not yet safe to call).
    #[allow(unused_unsafe)]
    let ecx = unsafe { core::arch::x86_64::__cpuid(1) }.ecx;
    if ecx & (1 << 27) == 0 {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: OSXSAVE is set, so xgetbv with ecx = 0 is allowed in user mode.
    unsafe { core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Where each XSAVE component the kernel enabled lies in a standard-format XSAVE area (a
/// signal frame's): CPUID leaf 0xD, sub-leaf `i`, gives its size (EAX) and offset (EBX).
pub fn xsave_layout() -> ckpt_image::frame::XsaveLayout {
    let mut layout = [(0, 0); 10];
    let enabled = xcr0();
    for (i, slot) in layout.iter_mut().enumerate().skip(2) {
        if enabled & 1 << i != 0 {
            // SAFETY: as in `xcr0`; leaf 0xD exists where XSAVE does, which XCR0 shows.
            #[allow(unused_unsafe)]
            let r = unsafe { core::arch::x86_64::__cpuid_count(0xd, i as u32) };
            *slot = (r.ebx, r.eax);
        }
    }
    layout
}

/// XSAVE components the kernel allocates only for a process that asks for them
/// (`ARCH_REQ_XCOMP_PERM`): AMX tile data. A signal frame leaves them out unless the thread
/// has them.
const DYNAMIC_FEATURES: u64 = 1 << 18;

/// The XSAVE features a signal frame of this process holds and the size of its XSAVE area
/// (standard format: each component at the offset CPUID gives it), as the kernel describes
/// them in the frame's software-reserved bytes; `None` without XSAVE (a frame then holds a
/// plain 512-byte FXSAVE area). Computed from the CPU, for frames made without the kernel's
/// help (a thread stopped with ptrace in a process whose own frame cannot be looked at).
pub fn signal_xstate() -> Option<(u64, u32)> {
    let features = xcr0() & !DYNAMIC_FEATURES;
    if features == 0 {
        return None;
    }
    // The legacy area and the XSAVE header, then the furthest component's end.
    let mut size = 512 + 64;
    for i in 2..64 {
        if features & 1 << i != 0 {
            // SAFETY: as in `xsave_layout`.
            #[allow(unused_unsafe)]
            let r = unsafe { core::arch::x86_64::__cpuid_count(0xd, i) };
            size = size.max(r.ebx + r.eax);
        }
    }
    Some((features, size))
}

/// The CPUID words an image keeps of the CPU it was taken on (`ckpt_image::node`): the
/// feature flags programs choose code by. A leaf this CPU does not have reads as zeros.
pub fn feature_words() -> [u32; ckpt_image::node::CPU_WORDS] {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    use ckpt_image::node as n;
    let mut w = [0u32; n::CPU_WORDS];
    // SAFETY: CPUID exists on every x86-64 CPU, and a leaf is asked for only where leaf 0 (or
    // 0x80000000) says the CPU has it.
    #[allow(unused_unsafe)]
    unsafe {
        let max = __cpuid(0).eax;
        let l1 = __cpuid(1);
        (w[n::L1_ECX], w[n::L1_EDX]) = (l1.ecx, l1.edx);
        if max >= 7 {
            let l7 = __cpuid_count(7, 0);
            (w[n::L7_EBX], w[n::L7_ECX], w[n::L7_EDX]) = (l7.ebx, l7.ecx, l7.edx);
            if l7.eax >= 1 {
                w[n::L7_1_EAX] = __cpuid_count(7, 1).eax;
            }
        }
        if max >= 0xd {
            w[n::LD_1_EAX] = __cpuid_count(0xd, 1).eax;
        }
        if __cpuid(0x8000_0000).eax >= 0x8000_0001 {
            let x1 = __cpuid(0x8000_0001);
            (w[n::LX1_ECX], w[n::LX1_EDX]) = (x1.ecx, x1.edx);
        }
    }
    w
}
