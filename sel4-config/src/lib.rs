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
