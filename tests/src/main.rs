//! `sel4-boot`: builds, boots and reports, for `make run` and `make bench`.
//!
//! ```text
//! sel4-boot run   [--config NAME]... [--icount] [--log]  # exit 0 iff the root task passed
//! sel4-boot bench [--config NAME]... [--out FILE]        # icount; writes the bench records as JSON
//!                                                         # (default: release-up and release-up-batched)
//! ```
//! Human-readable output is rendered from the parsed result lines.

use sel4_tests::{boot, build, BootOptions, Record, Run};
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!("usage: sel4-boot run|bench [--config NAME] [--icount] [--log] [--out FILE]");
    eprintln!("configurations: {}", sel4_tests::configs().join(", "));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        return usage();
    };
    if cmd != "run" && cmd != "bench" {
        return usage();
    }
    let mut configs = Vec::new();
    let mut icount = cmd == "bench";
    let mut echo = false;
    let mut out = None;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => match it.next() {
                Some(c) => configs.push(c.clone()),
                None => return usage(),
            },
            "--icount" => icount = true,
            "--log" => echo = true,
            "--out" => out = it.next().cloned(),
            _ => return usage(),
        }
    }
    if configs.is_empty() {
        // The benchmark: the stock release kernel and the one with the
        // batched leaf-table invocations, each with its own stock path.
        configs = if cmd == "bench" {
            vec!["release-up".into(), "release-up-batched".into()]
        } else {
            vec!["debug-up".into()]
        };
    }
    if let Some(bad) = configs.iter().find(|c| !sel4_tests::configs().contains(c)) {
        eprintln!(
            "sel4-boot: unknown kernel configuration '{bad}'; choose one of: {}",
            sel4_tests::configs().join(", ")
        );
        return ExitCode::from(2);
    }
    let mut bench_records = Vec::new();
    let mut failed = false;
    for config in &configs {
        let images = match build(config, &[]) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("sel4-boot: {e}");
                return ExitCode::from(2);
            }
        };
        let opts = BootOptions {
            icount,
            echo,
            timeout: Duration::from_secs(600),
            ..Default::default()
        };
        eprintln!(
            "booting {} ({} node{}, QEMU TCG{})",
            config,
            images.nodes,
            if images.nodes == 1 { "" } else { "s" },
            if icount { ", -icount shift=0" } else { "" }
        );
        let run = match boot(&images, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sel4-boot: {e}");
                return ExitCode::from(2);
            }
        };
        render(&run, icount);
        bench_records.extend(run.of_kind("bench").map(|r| {
            let mut v = r.0.clone();
            v["icount"] = serde_json::Value::Bool(icount);
            v
        }));
        match run.verdict() {
            Ok(()) => println!("\nverdict ({config}): PASS"),
            Err(f) => {
                if !echo {
                    eprintln!("----- serial log -----\n{}", run.log);
                }
                println!("\nverdict ({config}): FAIL ({f:?})");
                failed = true;
            }
        }
    }
    if cmd == "bench" {
        let path = out.unwrap_or_else(|| sel4_tests::build_dir().join("bench/latest.json").display().to_string());
        if let Err(e) = write_bench(&bench_records, &path) {
            eprintln!("sel4-boot: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
        println!("\nwrote {path} ({} records)", bench_records.len());
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn mib(b: u64) -> String {
    if b >= 1 << 40 {
        format!("{:.1} TiB", b as f64 / (1u64 << 40) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

fn render(run: &Run, icount: bool) {
    if let Some(b) = run.first("bootinfo") {
        let g = |k| b.u64(k).unwrap_or(0);
        println!(
            "seL4 5.0.0 root task, kernel configuration {}",
            b.str("config").unwrap_or("?")
        );
        println!("  nodes:        {}", g("nodes"));
        println!(
            "  untypeds:     {} ({} RAM, {} device)",
            g("untyped_count"),
            mib(g("ram_bytes")),
            mib(g("device_bytes"))
        );
        println!("  largest RAM untyped: {}", mib(g("ram_largest_bytes")));
        println!(
            "  empty slots:  {}..{} ({} free of {} in the root CNode)",
            g("empty_first"),
            g("empty_end"),
            g("empty_end") - g("empty_first"),
            1u64 << g("cnode_size_bits")
        );
        println!("  image frames: {}", g("image_frames"));
    }
    let checks: Vec<&Record> = run.of_kind("check").collect();
    if !checks.is_empty() {
        println!("\nself-checks on the kernel:");
        for c in &checks {
            println!(
                "  [{}] {:<28} {}",
                if c.bool("ok") == Some(true) { " ok " } else { "FAIL" },
                c.str("name").unwrap_or("?"),
                c.str("detail").unwrap_or("")
            );
        }
    }
    if let Some(e) = run.first("extension") {
        println!(
            "\nbatched leaf-table invocations: {} (bindings {})",
            if e.bool("batched_leaf") == Some(true) {
                "found, used"
            } else {
                "absent, per-page path"
            },
            if e.bool("batched_bindings") == Some(true) {
                "have them"
            } else {
                "lack them"
            }
        );
    }
    if let Some(c) = run.first("mapping_cost") {
        let g = |k| c.u64(k).unwrap_or(0);
        println!(
            "mapping record: {} bytes with full leaf tables ({} without the cap copy's node), {} for a lone page",
            g("dense_bytes"),
            g("dense_without_copy_bytes"),
            g("sparse_bytes")
        );
    }
    let bench: Vec<&Record> = run.of_kind("bench").collect();
    if !bench.is_empty() {
        println!(
            "\nbenchmarks ({}; ticks, rdtsc overhead subtracted{}):",
            run.images.config,
            if icount {
                "; -icount: 1 tick = 1 instruction"
            } else {
                "; plain TCG: host-time noise, not for figures"
            }
        );
        println!(
            "  {:<16} {:<8} {:>6} {:>10} {:>11} {:>11} {:>10}",
            "op", "path", "pages", "iterations", "min", "median", "per page"
        );
        for b in &bench {
            println!(
                "  {:<16} {:<8} {:>6} {:>10} {:>11} {:>11} {:>10}",
                b.str("op").unwrap_or("?"),
                b.str("path").unwrap_or("?"),
                b.u64("pages").unwrap_or(0),
                b.u64("iterations").unwrap_or(0),
                b.u64("ticks_min").unwrap_or(0),
                b.u64("ticks_median").unwrap_or(0),
                b.u64("ticks_per_page_median").unwrap_or(0)
            );
        }
        let ratios = ratios(&bench);
        if !ratios.is_empty() {
            println!("\nper-page median, each path against stock in the same run:");
            println!(
                "  {:<10} {:>6} {:>10} {:<8} {:>10} {:>8}",
                "op", "pages", "stock", "path", "ticks", "ratio"
            );
            for r in ratios {
                println!(
                    "  {:<10} {:>6} {:>10} {:<8} {:>10} {:>7.2}x",
                    r.op,
                    r.pages,
                    r.stock,
                    r.path,
                    r.ticks,
                    r.ticks as f64 / r.stock as f64
                );
            }
        }
    }
    if let Some(p) = run.first("panic") {
        println!("\nPANIC: {}", p.str("message").unwrap_or(""));
    }
}

/// One comparison of a path with the stock path for the same op and size.
struct Ratio<'a> {
    op: &'a str,
    pages: u64,
    stock: u64,
    path: &'a str,
    ticks: u64,
}

/// Per-page medians of every non-stock path next to the stock path's.
fn ratios<'a>(bench: &[&'a Record]) -> Vec<Ratio<'a>> {
    let mut out = Vec::new();
    for b in bench {
        let (Some(op), Some(path), Some(pages)) = (b.str("op"), b.str("path"), b.u64("pages")) else {
            continue;
        };
        if path == "stock" || pages == 0 {
            continue;
        }
        let stock = bench
            .iter()
            .find(|s| s.str("op") == Some(op) && s.str("path") == Some("stock") && s.u64("pages") == Some(pages));
        if let (Some(s), Some(t)) = (stock, b.u64("ticks_per_page_median")) {
            if let Some(st) = s.u64("ticks_per_page_median").filter(|v| *v > 0) {
                out.push(Ratio {
                    op,
                    pages,
                    stock: st,
                    path,
                    ticks: t,
                });
            }
        }
    }
    out
}

fn write_bench(records: &[serde_json::Value], path: &str) -> std::io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(records)? + "\n")
}
