//! Boots every kernel configuration with the root task and checks what it
//! reports: BootInfo as the kernel configured it, and every self-check.

use sel4_tests::{boot, build, build_and_boot, configs, BootOptions, Run};

/// Checks the root task must report, and pass, on every configuration.
const EXPECTED_CHECKS: &[&str] = &[
    "bootinfo.nodes",
    "bootinfo.layout",
    "retype.objects",
    "frame.get_address",
    "cnode.copy",
    "map.shared_frame",
    "cnode.delete",
    "cnode.mint_move_revoke",
    "error.typed",
    "ipc.call_reply_recv",
    "threads.per_core",
    "manager.init",
    "vspace.probes",
    "vspace.shared_frame",
    "vspace.unmap_faults",
    "vspace.protect_read_only",
    "vspace.large_pages",
    "vspace.sparse_47bit",
    "vspace.refusals_change_nothing",
    "vspace.teardown_exact",
    "cspace.physical_placement",
    "cspace.exhaustion",
    "mapping.setup",
    "mapping.clone",
    "mapping.clone_of_clone",
    "mapping.move",
    "mapping.destroy",
    "mapping.bad_requests_change_nothing",
    "mapping.revoke_frame",
    "mapping.teardown_exact",
    "bench.vspace_map_unmap",
];

/// Checks of the batched invocations, reported (and passed) where the kernel
/// has them.
const BATCHED_CHECKS: &[&str] = &[
    "batched.setup",
    "batched.refuse_not_a_table",
    "batched.refuse_root",
    "batched.refuse_count",
    "batched.refuse_run_leaves_cnode",
    "batched.refuse_not_a_4k_frame",
    "batched.refuse_already_mapped",
    "batched.refuse_present_entry",
    "batched.rights_masked_as_page_map",
    "batched.refuse_unmap_wrong_cap",
    "batched.refuse_copy_dest_occupied",
    "batched.map_copy_map_512",
    "batched.unmap_run",
    "batched.unmap_delete_512",
    "batched.teardown_exact",
    "batched.manager_paths_agree",
];

/// SMP kernels under TCG on two host cores are slow: allow them time.
fn slow_boot() -> BootOptions {
    BootOptions {
        timeout: std::time::Duration::from_secs(400),
        ..Default::default()
    }
}

fn boot_config(config: &str) {
    let run = build_and_boot(config, &[], &slow_boot()).expect("build and boot");
    check_run(config, &run, config.ends_with("-batched"));
}

/// What every boot must show; `batched`: whether the kernel has the batched
/// invocations (the root task finds out at start-up and must agree).
fn check_run(config: &str, run: &Run, batched: bool) {
    run.assert_passed();
    let log = || format!("\n----- serial log -----\n{}", run.log);
    let bi = run
        .first("bootinfo")
        .unwrap_or_else(|| panic!("no bootinfo record{}", log()));
    let nodes = run.images.nodes as u64;
    assert_eq!(bi.str("config"), Some(config), "{}", log());
    assert_eq!(bi.u64("nodes"), Some(nodes), "BootInfo numNodes{}", log());
    assert!(bi.u64("untyped_count").unwrap() > 0, "no untypeds{}", log());
    // QEMU gets 512 MiB; the kernel keeps some for itself and the image.
    let ram = bi.u64("ram_bytes").unwrap();
    assert!(ram > 400 << 20 && ram < 512 << 20, "RAM untyped bytes {ram}{}", log());
    assert!(
        bi.u64("empty_first").unwrap() < bi.u64("empty_end").unwrap(),
        "no empty slots{}",
        log()
    );
    assert_eq!(
        bi.u64("empty_end"),
        Some(1 << bi.u64("cnode_size_bits").unwrap()),
        "{}",
        log()
    );
    let cost = run
        .first("mapping_cost")
        .unwrap_or_else(|| panic!("no mapping_cost record{}", log()));
    let (dense, sparse) = (cost.u64("dense_bytes").unwrap(), cost.u64("sparse_bytes").unwrap());
    assert!(
        cost.u64("dense_without_copy_bytes").unwrap() < dense && dense < sparse,
        "mapping record bytes{}",
        log()
    );
    // The mapping scenario's clones are kept as runs: A's original run and
    // the copy runs of B and C in the database; in cspace, the copy runs of
    // the two clones, on every kernel (a clone copies into a slot run, in
    // one CopyMapRun or one CNode_Copy at a time, and books it per run).
    let books = run.first("books").unwrap_or_else(|| panic!("no books record{}", log()));
    assert_eq!(books.u64("db_runs"), Some(3), "mapping-db runs{}", log());
    assert_eq!(books.u64("db_run_pages"), Some(24), "mapping-db run pages{}", log());
    assert_eq!(books.u64("cap_runs"), Some(2), "cspace runs{}", log());
    let in_run = cost.u64("in_run_512_bytes").unwrap();
    assert!(
        0 < in_run && in_run < cost.u64("dense_without_copy_bytes").unwrap(),
        "bytes per page of a run{}",
        log()
    );
    let ext = run
        .first("extension")
        .unwrap_or_else(|| panic!("no extension record{}", log()));
    assert_eq!(ext.bool("batched_leaf"), Some(batched), "detected extension{}", log());
    for name in BATCHED_CHECKS {
        let c = run.check(name);
        if !batched {
            assert!(c.is_none(), "check {name} ran without the extension{}", log());
            continue;
        }
        let c = c.unwrap_or_else(|| panic!("check {name} not reported{}", log()));
        assert_eq!(c.bool("ok"), Some(true), "check {name}: {:?}{}", c.str("detail"), log());
    }
    for name in EXPECTED_CHECKS {
        let c = run
            .check(name)
            .unwrap_or_else(|| panic!("check {name} not reported{}", log()));
        assert_eq!(c.bool("ok"), Some(true), "check {name}: {:?}{}", c.str("detail"), log());
    }
    let per_core = run
        .first("per_core")
        .unwrap_or_else(|| panic!("no per_core record{}", log()));
    assert_eq!(
        per_core.u64("distinct_apic_ids"),
        Some(nodes),
        "one distinct core per node{}",
        log()
    );
}

#[test]
fn every_configuration_boots_and_passes() {
    let all = configs();
    for required in ["debug-up", "release-up", "debug-smp", "release-smp"] {
        assert!(
            all.iter().any(|c| c == required),
            "configuration {required} missing from kernel/configs"
        );
    }
}

#[test]
fn debug_up() {
    boot_config("debug-up");
}

#[test]
fn release_up() {
    boot_config("release-up");
}

#[test]
fn debug_smp_reports_four_nodes() {
    boot_config("debug-smp");
}

#[test]
fn release_smp_reports_four_nodes() {
    boot_config("release-smp");
}

/// The kernel with the batched leaf-table invocations (kernel/patches/0005):
/// every check above, plus one per validation rule of the new invocations.
fn boot_batched(config: &str) {
    boot_config(config);
}

#[test]
fn debug_up_batched() {
    boot_batched("debug-up-batched");
}

#[test]
fn debug_smp_batched() {
    boot_batched("debug-smp-batched");
}

/// The fallback: a root task built for the batched kernel (its bindings have
/// the run invocations) booted on the stock kernel finds at start-up that the
/// kernel lacks them, and the whole manager suite passes on the per-page path.
#[test]
fn batched_root_task_on_stock_kernel_falls_back() {
    let batched = build("debug-up-batched", &[]).expect("build batched");
    let stock = build("debug-up", &[]).expect("build stock");
    let images = sel4_tests::Images {
        kernel: stock.kernel.clone(),
        ..batched
    };
    let run = boot(&images, &slow_boot()).expect("boot");
    let bi = run.first("bootinfo").expect("bootinfo record");
    assert_eq!(
        bi.bool("batched_bindings"),
        Some(true),
        "bindings with the run invocations"
    );
    // The image reports the configuration it was built for; the kernel is stock.
    check_run("debug-up-batched", &run, false);
}
