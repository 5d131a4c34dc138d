//! Links myrestart as a static position-independent executable with no C runtime: our own
//! `_start`, no libc, no dynamic loader. Its preferred load address is 0x5000000 (the brief's),
//! which the kernel honours for a static PIE when the range is free; being position-independent
//! it can also move itself anywhere (see `relocate.rs`).
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static-pie", "-Wl,--image-base=0x5000000", "-Wl,-z,noexecstack"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
