//! The root task's resource manager: the memory-manager library's
//! [`Manager`](memory_manager::Manager) (cspace's CSpace plus the paging
//! objects vspace asks for) on the real kernel.

use crate::backend::Sel4Ops;
use alloc::vec::Vec;
use core::ops::Range;
use cspace::{BootUntyped, Config, InitError};
use sel4::{cap, BootInfo, CapData, Word};

/// The manager's resources on the real kernel.
pub type Manager = memory_manager::Manager<Sel4Ops>;

/// Takes over the boot CNode's free slots `empty` and every boot untyped
/// except `exclude` (a boot CNode slot of an untyped used elsewhere), and
/// switches the root task to the two-level CSpace.
pub fn new(bi: &BootInfo, empty: Range<Word>, exclude: &[Word]) -> Result<Manager, InitError> {
    let untypeds: Vec<BootUntyped> = bi
        .untyped_descs()
        .iter()
        .enumerate()
        .map(|(i, u)| BootUntyped {
            slot: bi.untyped.start + i as Word,
            paddr: u.paddr,
            size_bits: u.size_bits,
            is_device: u.device(),
        })
        .filter(|u| !exclude.contains(&u.slot))
        // seL4 5.0 hands over some device untypeds that are not aligned
        // to their size (e.g. 2^46 bytes at 2^39); the allocator computes
        // physical addresses assuming natural alignment, so they are left out.
        .filter(|u| u.paddr & ((1u64 << u.size_bits) - 1) == 0)
        .collect();
    let config = Config::new(
        bi.init_thread_cnode_size_bits,
        sel4::init::CNODE.bits(),
        empty,
        untypeds,
    );
    Manager::new(Sel4Ops::new(), config)
}

/// The CSpace root (and its guard) that threads sharing the root task's
/// CSpace are configured with.
pub fn cspace_root(m: &Manager) -> (cap::CNode, CapData) {
    let l = m.cs.layout();
    (
        cap::CNode::from_bits(l.l1_slot),
        CapData::guard(0, l.tcb_root_guard_bits()),
    )
}
