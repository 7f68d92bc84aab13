//! The root task: reports what the kernel handed over, checks the kernel
//! interface on the real kernel, and measures primitive operations.
//!
//! Every result is a record line (see `sel4_root_task::report`); the host
//! harness asserts on them.
#![no_std]
#![no_main]

extern crate alloc;

mod backend;
mod batched;
mod bench;
mod checks;
mod manager;
mod mapping_checks;

mod mm_bench;
mod objects;
mod phases;
mod probe;
mod threads;
mod vspace_bench;
mod vspace_checks;

use sel4::BootInfo;
use sel4_root_task::{Record, Verdict};

sel4_root_task::root_task!(main);

fn main(bi: &'static BootInfo) -> Verdict {
    let mut v = Verdict::new();
    report_bootinfo(bi);
    #[cfg(feature = "inject-panic")]
    panic!("deliberate panic (feature inject-panic)");
    #[cfg(feature = "inject-hang")]
    loop {
        sel4::yield_now();
    }
    let mut objs = objects::Objects::new(bi);
    checks::run(bi, &mut objs, &mut v);
    if v.passed() {
        checks::benchmarks(&mut objs, &mut v);
    }
    // The resource manager takes over every slot and untyped not used above.
    let (empty, used_untyped) = objs.hand_over();
    let mut taken = alloc::vec![used_untyped];
    taken.extend(sel4_root_task::heap::boot_resources().untyped);
    let mut m = match manager::new(bi, empty, &taken) {
        Ok(m) => {
            v.check("manager.init", true, &alloc::format!("{:?}", m.cs.stats()));
            m
        }
        Err(e) => {
            v.check("manager.init", false, &alloc::format!("{e:?}"));
            return v;
        }
    };
    // The batched leaf-table invocations: used only if the kernel has them.
    match backend::detect_batched_leaf(&mut m) {
        Ok(present) => Record::new("extension")
            .bool("batched_leaf", present)
            .bool("batched_bindings", cfg!(sel4_batched_leaf))
            .emit(),
        Err(e) => {
            v.check("manager.detect_batched_leaf", false, &e);
        }
    }
    vspace_checks::run(&mut m, &mut v);
    mapping_checks::run(&mut m, &mut v);
    batched::run(&mut m, &mut v);
    if v.passed() {
        vspace_bench::run(&mut m, &mut v);
        mm_bench::run(&mut m, &mut v);
    }
    v
}

fn report_bootinfo(bi: &BootInfo) {
    let (mut ram, mut dev, mut largest) = (0u64, 0u64, 0u64);
    for u in bi.untyped_descs() {
        if u.device() {
            dev += u.size();
        } else {
            ram += u.size();
            largest = largest.max(u.size());
        }
    }
    Record::new("bootinfo")
        .str("config", sel4_config::NAME)
        .num("node_id", bi.node_id)
        .num("nodes", bi.num_nodes)
        .num("untyped_count", bi.untyped_descs().len() as u64)
        .num("ram_bytes", ram)
        .num("ram_largest_bytes", largest)
        .num("device_bytes", dev)
        .num("empty_first", bi.empty.start)
        .num("empty_end", bi.empty.end)
        .num("cnode_size_bits", bi.init_thread_cnode_size_bits as u64)
        .num("image_frames", bi.user_image_frames.len() as u64)
        .num("ipc_buffer", bi.ipc_buffer)
        .num("heap_bytes", sel4_root_task::heap::boot_resources().heap_bytes)
        .bool("batched_bindings", cfg!(sel4_batched_leaf))
        .emit();
}
