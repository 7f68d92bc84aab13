//! Link flags for the root-task binary only (host tests of the other crates
//! keep the normal ones): a static, non-PIE executable with no C runtime,
//! laid out by link.ld as a single loadable segment.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=link.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,norelro",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/link.ld");
    // Configuration cfgs (sel4_smp, sel4_debug_build), as the sel4 crate sets them.
    println!("cargo:rerun-if-env-changed=SEL4_KERNEL_BUILD_DIR");
    for name in sel4_config::RUST_CFG_NAMES {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    for name in sel4_config::rust_cfgs() {
        println!("cargo:rustc-cfg={name}");
    }
}
