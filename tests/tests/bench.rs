//! The benchmark runs on the release kernel under -icount and produces sane
//! records. (Benchmarks are not tests: this checks the records, not the figures.)

use sel4_tests::{build_and_boot, BootOptions};

#[test]
fn benchmark_records_are_sane() {
    let opts = BootOptions {
        icount: true,
        ..Default::default()
    };
    let run = build_and_boot("release-up", &[], &opts).expect("build and boot");
    run.assert_passed();
    for (op, path, pages) in [
        ("map", "stock", 4096),
        ("unmap", "stock", 4096),
        ("map", "vspace", 4096),
        ("unmap", "vspace", 4096),
    ] {
        let r = run
            .of_kind("bench")
            .find(|r| r.str("op") == Some(op) && r.str("path") == Some(path) && r.u64("pages") == Some(pages))
            .unwrap_or_else(|| panic!("no bench record for {op}/{path}/{pages}\n{}", run.log));
        // Every page costs at least one kernel entry.
        assert!(
            r.u64("ticks_per_page_min").unwrap() > 100,
            "{op}/{path}: per-page ticks"
        );
        assert_eq!(
            r.u64("ticks_min").unwrap() / pages,
            r.u64("ticks_per_page_min").unwrap()
        );
    }
    assert_phases_add_up(&run, "tracked");
    for op in ["yield", "call_reply_recv", "cnode_copy", "cnode_delete"] {
        let r = run
            .of_kind("bench")
            .find(|r| r.str("op") == Some(op) && r.str("path") == Some("stock"))
            .unwrap_or_else(|| panic!("no bench record for {op}\n{}", run.log));
        assert_eq!(r.str("config"), Some("release-up"));
        let (min, median) = (r.u64("ticks_min").unwrap(), r.u64("ticks_median").unwrap());
        assert!(r.u64("iterations").unwrap() >= 1000, "{op}: too few iterations");
        assert!(min > 0 && min <= median, "{op}: min {min} median {median}");
        // Under icount a tick is an instruction: an empty rdtsc pair costs a
        // handful, and every kernel entry at least a hundred.
        assert!(r.u64("rdtsc_overhead").unwrap() < 20, "{op}: rdtsc overhead");
        assert!(min > 100, "{op}: {min} ticks is less than a kernel entry");
    }
}

/// The phase clock's breakdown accounts for each operation of `path`: its
/// phases sum to the operation's own median (measured apart, without the
/// clock) within 5%, and the kernel's share is part of that sum, not more.
fn assert_phases_add_up(run: &sel4_tests::Run, path: &str) {
    for op in ["clone", "move", "destroy"] {
        let get = |name: &str| {
            run.of_kind("bench")
                .find(|r| r.str("op") == Some(name) && r.str("path") == Some(path) && r.u64("pages") == Some(512))
                .and_then(|r| r.u64("ticks_median"))
        };
        let total = get(op).unwrap_or_else(|| panic!("no {path} {op} record\n{}", run.log));
        let phases: u64 = ["lookup", "check_free", "slots", "vspace", "cspace", "database"]
            .iter()
            .filter_map(|p| get(&format!("{op}.{p}")))
            .sum();
        let kernel = get(&format!("{op}.kernel")).unwrap_or_else(|| panic!("no {path} {op}.kernel record"));
        assert!(
            phases.abs_diff(total) * 20 <= total,
            "{path} {op}: phases sum to {phases}, the operation costs {total}"
        );
        assert!(
            kernel > 0 && kernel < phases,
            "{path} {op}: kernel {kernel} of {phases}"
        );
    }
}

/// The same on the batched kernel, whose manager path is the headline.
#[test]
fn batched_benchmark_phases_add_up() {
    let opts = BootOptions {
        icount: true,
        ..Default::default()
    };
    let run = build_and_boot("release-up-batched", &[], &opts).expect("build and boot");
    run.assert_passed();
    assert_phases_add_up(&run, "batched");
}
