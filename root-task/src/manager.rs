//! The root task's resource manager: the `cspace` crate's CSpace (slots,
//! untyped memory, cap operations) on the real kernel, plus what the `vspace`
//! crate needs to build address spaces from it.

use crate::backend::{Sel4Ops, VsKernel};
use alloc::vec::Vec;
use core::ops::Range;
use cspace::{AllocError, Allocation, BootUntyped, CSpace, Config, InitError, ObjectType, Slot};
use hashbrown::HashMap;
use sel4::{cap, BootInfo, CapData, Word};

/// CSpace + the record of which paging-structure caps are which objects.
pub struct Manager {
    /// Slots, untyped memory, cap operations.
    pub cs: CSpace<Sel4Ops>,
    tables: HashMap<u64, cspace::ObjectId>,
}

impl Manager {
    /// Takes over the boot CNode's free slots `empty` and every boot untyped
    /// except `exclude` (a boot CNode slot of an untyped used elsewhere), and
    /// switches the root task to the two-level CSpace.
    pub fn new(bi: &BootInfo, empty: Range<Word>, exclude: &[Word]) -> Result<Self, InitError> {
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
        let cs = CSpace::new(Sel4Ops, config).map_err(|(e, _)| e)?;
        Ok(Self {
            cs,
            tables: HashMap::new(),
        })
    }

    /// The kernel interface the `vspace` crate uses.
    pub fn vk(&mut self) -> VsKernel<'_> {
        VsKernel {
            cs: &mut self.cs,
            objects: &mut self.tables,
        }
    }

    /// The CSpace root (and its guard) that threads sharing the root task's
    /// CSpace are configured with.
    pub fn cspace_root(&self) -> (cap::CNode, CapData) {
        let l = self.cs.layout();
        (
            cap::CNode::from_bits(l.l1_slot),
            CapData::guard(0, l.tcb_root_guard_bits()),
        )
    }

    /// A new object.
    pub fn alloc(&mut self, ty: ObjectType) -> Result<Allocation, AllocError> {
        self.cs.alloc(ty, 0)
    }

    /// The cptr of a managed slot.
    pub fn cptr(&self, slot: Slot) -> Word {
        self.cs.cptr(slot).0
    }
}
