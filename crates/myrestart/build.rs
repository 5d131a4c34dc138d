//! Links myrestart as a static position-independent executable with no C runtime: our own
//! `_start`, no libc, no dynamic loader. Its preferred load address is 0x5000000 (the brief's),
//! which the kernel honours for a static PIE when the range is free; being position-independent
//! it can also move itself anywhere (see `relocate.rs`).
//!
//! Rust 1.90 and later link with their own lld, which takes the address as `--image-base`;
//! older ones (Debian's rustc-web 1.85, say) use the system's GNU ld, which calls it
//! `-Ttext-segment`.
fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let minor = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1)?.split('.').nth(1)?.parse::<u32>().ok())
        .unwrap_or(0);
    let base = if minor >= 90 { "-Wl,--image-base=0x5000000" } else { "-Wl,-Ttext-segment=0x5000000" };
    for arg in ["-nostartfiles", "-nostdlib", "-static-pie", base, "-Wl,-z,noexecstack"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
