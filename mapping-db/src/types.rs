//! The plain values the database stores and answers with.

use core::fmt;

/// End of the user part of an x86_64 address space under seL4 (`seL4_UserTop` + 1): every mapping lies below it.
pub const USER_VADDR_END: u64 = 1 << 47;

/// Number of entries in one x86_64 paging structure (as an entry index counts them).
pub const ENTRIES_PER_TABLE: u16 = mm_types::ENTRIES_PER_TABLE as u16;

/// A capability slot (`seL4_CPtr`) in the root task's CSpace: the capability pointer every crate of the
/// manager shares.
pub use mm_types::CPtr as CapSlot;

/// A frame, named by the slot of its original capability (the one retype produced) and its physical address.
///
/// Copies of the capability are other slots that refer to the same `FrameId`; see
/// [`MappingDb::add_copy`](crate::MappingDb::add_copy).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId {
    /// Slot of the original capability.
    pub slot: CapSlot,
    /// Physical address of the frame's first byte.
    pub paddr: u64,
}

impl FrameId {
    /// The frame whose original capability is in `slot` and which starts at `paddr`.
    pub const fn new(slot: CapSlot, paddr: u64) -> Self {
        Self { slot, paddr }
    }
}

impl fmt::Debug for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameId({:#x} @ {:#x})", self.slot.0, self.paddr)
    }
}

/// An address space the memory manager created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AsId(pub u32);

/// The x86_64 page sizes, each one a seL4 frame object type: the page size every crate of the manager
/// shares (`mm_types::FrameSize`).
pub use mm_types::FrameSize as PageSize;

/// Access rights of one mapping (seL4's `seL4_CapRights` as used by `X86Page_Map`, plus execute): the
/// rights every crate of the manager shares. The database records them as given and compares them as sets.
pub use mm_types::Rights;

/// The level of a paging structure that holds a page mapping (`Pt`: its entries map 4 KiB pages; `Pd`:
/// 2 MiB; `Pdpt`: 1 GiB): the paging level every crate of the manager shares (`mm_types::TableLevel`;
/// [`PageSize::level`] and [`LeafLevel::frame_size`] go from one to the other).
pub use mm_types::TableLevel as LeafLevel;

/// The paging structure whose entry holds a mapping: an address space, the slot of the structure's capability
/// and its level.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct LeafTable {
    /// The address space the table belongs to.
    pub asid: AsId,
    /// The slot of the table's kernel-object capability.
    pub table: CapSlot,
    /// The table's level.
    pub level: LeafLevel,
}

/// One mapping of a frame: which capability copy holds it, where it is, and which entry of which table.
///
/// `MappingDb` keeps one of these per mapping; queries answer with copies and removals hand the record back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Mapping {
    /// The frame that is mapped.
    pub frame: FrameId,
    /// The capability copy that holds this mapping (seL4 maps a frame cap at most once).
    pub cap: CapSlot,
    /// The address space.
    pub asid: AsId,
    /// The first virtual address of the page, aligned to `size`.
    pub vaddr: u64,
    /// The page size, the frame's size.
    pub size: PageSize,
    /// The access rights.
    pub rights: Rights,
    /// The paging structure that holds the entry.
    pub leaf: LeafTable,
    /// The entry's index in `leaf`, `size.entry_index(vaddr)`.
    pub index: u16,
}

impl Mapping {
    /// A record for mapping `cap` (a cap to `frame`) at `vaddr` in `asid`, through the table whose cap is in
    /// `table`; the leaf level and entry index follow from `size` and `vaddr`.
    pub const fn new(
        frame: FrameId,
        cap: CapSlot,
        asid: AsId,
        vaddr: u64,
        size: PageSize,
        rights: Rights,
        table: CapSlot,
    ) -> Self {
        Self {
            frame,
            cap,
            asid,
            vaddr,
            size,
            rights,
            leaf: LeafTable {
                asid,
                table,
                level: size.level(),
            },
            index: size.entry_index(vaddr),
        }
    }

    /// Whether `vaddr` lies inside the mapped page.
    pub const fn contains(&self, vaddr: u64) -> bool {
        vaddr >= self.vaddr && vaddr - self.vaddr < self.size.bytes()
    }

    /// The physical address `vaddr` translates to, if it lies inside the page.
    pub const fn translate(&self, vaddr: u64) -> Option<u64> {
        if self.contains(vaddr) {
            Some(self.frame.paddr + (vaddr - self.vaddr))
        } else {
            None
        }
    }
}
