//! The configuration the seL4 kernel was built with, visible to Rust.
//!
//! Generated at build time from `$SEL4_KERNEL_BUILD_DIR/autoconf.h`, the file
//! the kernel itself was compiled with, so the root task and the kernel can
//! never disagree on, say, the number of cores. The crate is `no_std` and is
//! also used as a build-dependency by the `sel4` crate.
#![no_std]

include!(concat!(env!("OUT_DIR"), "/config.rs"));

/// Looks up any `CONFIG_` value by name (without the prefix).
pub fn get(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Whether the kernel was built for more than one core.
pub const SMP: bool = MAX_NUM_NODES > 1;

/// Every `cfg` name a build script may set from this configuration.
pub const RUST_CFG_NAMES: [&str; 3] = ["sel4_debug_build", "sel4_smp", "sel4_batched_leaf"];

/// The `cfg`s that hold for this configuration: `sel4_debug_build` (debug
/// system calls exist) and `sel4_smp` (more than one core; `TCB_SetAffinity`
/// exists). Build scripts print them as `cargo:rustc-cfg=...` so that code
/// using configuration-dependent invocations compiles only where they exist.
pub fn rust_cfgs() -> impl Iterator<Item = &'static str> {
    [
        (DEBUG_BUILD, RUST_CFG_NAMES[0]),
        (SMP, RUST_CFG_NAMES[1]),
        (get("X86_BATCHED_LEAF_UPDATES").is_some(), RUST_CFG_NAMES[2]),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_come_from_the_kernel_build() {
        assert_eq!(
            super::get("MAX_NUM_NODES").unwrap().parse::<usize>().unwrap(),
            super::MAX_NUM_NODES
        );
        assert_eq!(
            super::get("ROOT_CNODE_SIZE_BITS").unwrap().parse::<usize>().unwrap(),
            super::ROOT_CNODE_SIZE_BITS
        );
        assert!(super::get("NO_SUCH_OPTION").is_none());
        assert_eq!(super::rust_cfgs().any(|c| c == "sel4_smp"), super::SMP);
    }
}
