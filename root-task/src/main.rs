//! The root task: reports what the kernel handed over, checks the kernel
//! interface on the real kernel, and measures primitive operations.
#![no_std]
#![no_main]

extern crate alloc;

use sel4::BootInfo;
use sel4_root_task::{println, Record, Verdict};

sel4_root_task::root_task!(main);

fn main(bi: &'static BootInfo) -> Verdict {
    let mut v = Verdict::new();
    let (mut ram, mut dev) = (0u64, 0u64);
    for u in bi.untyped_descs() {
        if u.device() {
            dev += u.size()
        } else {
            ram += u.size()
        }
    }
    Record::new("bootinfo")
        .str("config", sel4_config::NAME)
        .num("node_id", bi.node_id)
        .num("nodes", bi.num_nodes)
        .num("untyped_count", bi.untyped_descs().len() as u64)
        .num("ram_bytes", ram)
        .num("device_bytes", dev)
        .num("empty_first", bi.empty.start)
        .num("empty_end", bi.empty.end)
        .num("image_frames", bi.user_image_frames.len() as u64)
        .emit();
    println!("hello from the root task");
    v.check(
        "nodes",
        bi.num_nodes as usize == sel4_config::MAX_NUM_NODES,
        "BootInfo numNodes == CONFIG_MAX_NUM_NODES",
    );
    v
}
