//! A minimal object source for the self-checks and benchmarks of this crate:
//! slots are taken in order from BootInfo's empty range and objects are
//! retyped from the largest RAM untyped. Nothing is reclaimed. (The resource
//! managers proper live in the cspace/vspace crates.)

use sel4::{
    cap, cap_type, init, object_type, size_bits, AbsoluteCPtr, BootInfo, Cap, CapRights, CapType, Error, VmAttributes,
    Word,
};

/// Slots and untyped memory for the checks.
pub struct Objects {
    next_slot: Word,
    end_slot: Word,
    untyped: cap::Untyped,
    /// Physical address and size of the untyped objects come from.
    pub untyped_paddr: u64,
    /// Size of that untyped in bytes.
    pub untyped_bytes: u64,
}

impl Objects {
    /// Takes the empty slot range and the smallest RAM untyped of at least
    /// 4 MiB (the resource manager gets the rest).
    pub fn new(bi: &BootInfo) -> Self {
        let heap = sel4_root_task::heap::boot_resources();
        let (idx, desc) = bi
            .untyped_descs()
            .iter()
            .enumerate()
            .filter(|(i, u)| !u.device() && u.size_bits >= 22 && heap.untyped != Some(bi.untyped.start + *i as Word))
            .min_by_key(|(_, u)| u.size_bits)
            .expect("no RAM untyped of 4 MiB");
        Self {
            // The runtime's heap took the first slots.
            next_slot: heap.slots.end.max(bi.empty.start),
            end_slot: bi.empty.end,
            untyped: Cap::from_bits(bi.untyped.start + idx as Word),
            untyped_paddr: desc.paddr,
            untyped_bytes: desc.size(),
        }
    }

    /// A free slot of the root CNode.
    pub fn slot(&mut self) -> Word {
        assert!(self.next_slot < self.end_slot, "out of slots");
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// Retypes one object of `ty` (an `object_type` number) into a new slot.
    pub fn retype_from<T: CapType>(&mut self, untyped: cap::Untyped, ty: Word, bits: usize) -> Result<Cap<T>, Error> {
        let slot = self.slot();
        untyped.untyped_retype(ty, bits as Word, init::CNODE, 0, 0, slot, 1)?;
        Ok(Cap::from_bits(slot))
    }

    /// Retypes one object from the main untyped.
    pub fn retype<T: CapType>(&mut self, ty: Word, bits: usize) -> Result<Cap<T>, Error> {
        self.retype_from(self.untyped, ty, bits)
    }

    /// A new 4 KiB frame.
    pub fn frame(&mut self) -> Result<cap::Frame, Error> {
        self.retype(object_type::X86_4K, 0)
    }

    /// A new endpoint.
    pub fn endpoint(&mut self) -> Result<cap::Endpoint, Error> {
        self.retype(object_type::EndpointObject, 0)
    }

    /// A new notification.
    pub fn notification(&mut self) -> Result<cap::Notification, Error> {
        self.retype(object_type::NotificationObject, 0)
    }

    /// The slots not used so far, and the boot CNode slot of the untyped in use:
    /// what the resource manager takes over afterwards.
    pub fn hand_over(&self) -> (core::ops::Range<Word>, Word) {
        (self.next_slot..self.end_slot, self.untyped.bits())
    }

    /// A new TCB.
    pub fn tcb(&mut self) -> Result<cap::Tcb, Error> {
        self.retype(object_type::TCBObject, 0)
    }

    /// Maps `frame` read-write at `vaddr` in the root task's own VSpace,
    /// creating the paging structures the kernel reports missing.
    pub fn map_in_root(&mut self, frame: cap::Frame, vaddr: Word) -> Result<(), Error> {
        self.map_in(init::VSPACE, frame, vaddr, CapRights::READ_WRITE)
    }

    /// Maps `frame` at `vaddr` in `vspace` with `rights`, creating the paging
    /// structures the kernel reports missing.
    pub fn map_in(
        &mut self,
        vspace: cap::VSpace,
        frame: cap::Frame,
        vaddr: Word,
        rights: CapRights,
    ) -> Result<(), Error> {
        let vroot = vspace.cptr();
        for _ in 0..4 {
            match frame.x86_page_map(vroot, vaddr, rights, VmAttributes::DEFAULT) {
                Err(Error::FailedLookup) => {}
                r => return r,
            }
            // Missing a level: try the deepest first; each Map fails with
            // FailedLookup while the level above it is missing.
            let pt: Cap<cap_type::X86PageTable> = self.retype(object_type::X86_PageTableObject, 0)?;
            if pt.x86_page_table_map(vroot, vaddr, VmAttributes::DEFAULT).is_ok() {
                continue;
            }
            let pd: Cap<cap_type::X86PageDirectory> = self.retype(object_type::X86_PageDirectoryObject, 0)?;
            if pd.x86_page_directory_map(vroot, vaddr, VmAttributes::DEFAULT).is_ok() {
                pt.x86_page_table_map(vroot, vaddr, VmAttributes::DEFAULT)?;
                continue;
            }
            let pdpt: Cap<cap_type::X86Pdpt> = self.retype(object_type::X86_PDPTObject, 0)?;
            pdpt.x86_pdpt_map(vspace, vaddr, VmAttributes::DEFAULT)?;
            pd.x86_page_directory_map(vroot, vaddr, VmAttributes::DEFAULT)?;
            pt.x86_page_table_map(vroot, vaddr, VmAttributes::DEFAULT)?;
        }
        Err(Error::FailedLookup)
    }
}

/// Slot address of a root-CNode slot for CNode invocations.
pub fn slot(index: Word) -> AbsoluteCPtr {
    AbsoluteCPtr::root_slot(index)
}

/// Size of a 4 KiB page.
pub const PAGE: u64 = 1 << size_bits::PAGE;
