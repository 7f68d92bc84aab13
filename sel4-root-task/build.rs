//! Sets the configuration `cfg`s (see `sel4_config::rust_cfgs`), so the
//! console can use the debug system calls where they exist.
fn main() {
    println!("cargo:rerun-if-env-changed=SEL4_KERNEL_BUILD_DIR");
    for name in sel4_config::RUST_CFG_NAMES {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    for name in sel4_config::rust_cfgs() {
        println!("cargo:rustc-cfg={name}");
    }
}
