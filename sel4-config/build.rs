//! Reads `$SEL4_KERNEL_BUILD_DIR/autoconf.h`, the very file the kernel was
//! compiled with (kernel/build.py writes it from kernel/configs/NAME.conf),
//! and turns each `#define CONFIG_X value` into Rust.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SEL4_KERNEL_BUILD_DIR");
    let dir = match std::env::var("SEL4_KERNEL_BUILD_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            eprintln!(
                "error: SEL4_KERNEL_BUILD_DIR is not set. It names a kernel build directory \
                 (build/kernel/CONFIG) made by `python3 kernel/build.py CONFIG`; the Makefile \
                 sets it for you (`make run`, `make test`)."
            );
            std::process::exit(1);
        }
    };
    let auto = dir.join("autoconf.h");
    println!("cargo:rerun-if-changed={}", auto.display());
    let text = std::fs::read_to_string(&auto).unwrap_or_else(|e| {
        eprintln!(
            "error: cannot read {}: {e}; build the kernel first (make kernel)",
            auto.display()
        );
        std::process::exit(1);
    });
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unknown")
        .to_string();
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(3, char::is_whitespace);
        if it.next() != Some("#define") {
            continue;
        }
        let (Some(key), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        if let Some(key) = key.strip_prefix("CONFIG_") {
            entries.push((key.to_string(), value.trim().to_string()));
        }
    }
    let get = |k: &str| entries.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let num = |k: &str| -> u64 {
        get(k).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("error: {} does not define CONFIG_{k} as a number", auto.display());
            std::process::exit(1);
        })
    };
    let mut out = String::new();
    writeln!(out, "/// Name of the kernel configuration (kernel/configs/NAME.conf).").unwrap();
    writeln!(out, "pub const NAME: &str = {name:?};").unwrap();
    writeln!(out, "/// The kernel build directory this crate was generated from.").unwrap();
    writeln!(
        out,
        "pub const KERNEL_BUILD_DIR: &str = {:?};",
        dir.display().to_string()
    )
    .unwrap();
    writeln!(out, "/// `CONFIG_MAX_NUM_NODES`: cores the kernel supports.").unwrap();
    writeln!(out, "pub const MAX_NUM_NODES: usize = {};", num("MAX_NUM_NODES")).unwrap();
    writeln!(
        out,
        "/// `CONFIG_DEBUG_BUILD`: debug kernel (debug syscalls, printing)."
    )
    .unwrap();
    writeln!(out, "pub const DEBUG_BUILD: bool = {};", get("DEBUG_BUILD").is_some()).unwrap();
    writeln!(
        out,
        "/// `CONFIG_PRINTING`: the kernel prints (and `userError`s cost ~10^5 ticks)."
    )
    .unwrap();
    writeln!(out, "pub const PRINTING: bool = {};", get("PRINTING").is_some()).unwrap();
    writeln!(
        out,
        "/// `CONFIG_ROOT_CNODE_SIZE_BITS`: the root CNode has 2^this slots."
    )
    .unwrap();
    writeln!(
        out,
        "pub const ROOT_CNODE_SIZE_BITS: usize = {};",
        num("ROOT_CNODE_SIZE_BITS")
    )
    .unwrap();
    writeln!(out, "/// `CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS`.").unwrap();
    writeln!(
        out,
        "pub const MAX_NUM_BOOTINFO_UNTYPED_CAPS: usize = {};",
        num("MAX_NUM_BOOTINFO_UNTYPED_CAPS")
    )
    .unwrap();
    writeln!(
        out,
        "/// `CONFIG_RETYPE_FAN_OUT_LIMIT`: most objects one Untyped_Retype creates."
    )
    .unwrap();
    writeln!(
        out,
        "pub const RETYPE_FAN_OUT_LIMIT: usize = {};",
        num("RETYPE_FAN_OUT_LIMIT")
    )
    .unwrap();
    writeln!(out, "/// `CONFIG_NUM_PRIORITIES`.").unwrap();
    writeln!(out, "pub const NUM_PRIORITIES: usize = {};", num("NUM_PRIORITIES")).unwrap();
    writeln!(out, "/// `CONFIG_HUGE_PAGE`: 1 GiB frames exist.").unwrap();
    writeln!(out, "pub const HUGE_PAGE: bool = {};", get("HUGE_PAGE").is_some()).unwrap();
    writeln!(
        out,
        "/// Every `CONFIG_` definition, in file order, as (name without prefix, value)."
    )
    .unwrap();
    writeln!(out, "pub const ALL: &[(&str, &str)] = &[").unwrap();
    for (k, v) in &entries {
        writeln!(out, "    ({k:?}, {v:?}),").unwrap();
    }
    writeln!(out, "];").unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("config.rs");
    std::fs::write(dest, out).unwrap();
}
