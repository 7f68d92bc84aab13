//! Sets `cfg(sel4_debug_build)` for debug kernels, as the `sel4` crate does,
//! so the console can use the debug system calls where they exist.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sel4_debug_build)");
    println!("cargo:rerun-if-env-changed=SEL4_KERNEL_BUILD_DIR");
    if sel4_config::DEBUG_BUILD {
        println!("cargo:rustc-cfg=sel4_debug_build");
    }
}
