//! libckpt.so is linked against the C library (libc.so.6, with libc_nonshared's
//! `pthread_atfork`) and names libdl.so.2, so that it loads into programs on glibc 2.28 and
//! later whatever glibc it was built on: before glibc 2.34, `dlsym` lived in libdl.so.2 (since,
//! it is in libc.so.6 and libdl.so.2 remains as an empty stub). `dlsym` itself is linked at its first
//! version (see `guard::dlsym`), and every other C function libckpt takes has a version that
//! glibc 2.28 has (`objdump -T libckpt.so`; the tests check it).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,--push-state,--no-as-needed,-lc,-l:libdl.so.2,--pop-state");
}
