//! The plain values the database stores and answers with.

use core::fmt;

/// End of the user part of an x86_64 address space under seL4 (`seL4_UserTop` + 1): every mapping lies below it.
pub const USER_VADDR_END: u64 = 1 << 47;

/// Number of entries in one x86_64 paging structure.
pub const ENTRIES_PER_TABLE: u16 = 512;

/// A capability slot (`seL4_CPtr`) in the root task's CSpace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapSlot(pub u64);

impl fmt::Debug for CapSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSlot({:#x})", self.0)
    }
}

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

/// The x86_64 page sizes, each one a seL4 frame object type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum PageSize {
    /// 4 KiB (`seL4_X86_4K`), mapped by a page-table entry.
    Small,
    /// 2 MiB (`seL4_X86_LargePageObject`), mapped by a page-directory entry.
    Large,
    /// 1 GiB (`seL4_X64_HugePageObject`), mapped by a PDPT entry.
    Huge,
}

impl PageSize {
    /// Every size, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Small, PageSize::Large, PageSize::Huge];

    /// log2 of the size in bytes: 12, 21 or 30.
    pub const fn bits(self) -> u32 {
        match self {
            PageSize::Small => 12,
            PageSize::Large => 21,
            PageSize::Huge => 30,
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.bits()
    }

    /// `addr` rounded down to a multiple of the size.
    pub const fn align_down(self, addr: u64) -> u64 {
        addr & !(self.bytes() - 1)
    }

    /// Whether `addr` is a multiple of the size.
    pub const fn is_aligned(self, addr: u64) -> bool {
        addr & (self.bytes() - 1) == 0
    }

    /// The index of the entry that maps `vaddr` in a leaf table of this size's level.
    pub const fn entry_index(self, vaddr: u64) -> u16 {
        ((vaddr >> self.bits()) & (ENTRIES_PER_TABLE as u64 - 1)) as u16
    }

    /// The start of the virtual region one leaf table of this size's level covers, for a page at `vaddr`
    /// (512 pages: 2 MiB for a PT, 1 GiB for a PD, 512 GiB for a PDPT).
    pub const fn leaf_region(self, vaddr: u64) -> u64 {
        vaddr & !((self.bytes() << 9) - 1)
    }

    /// The level of the paging structure whose entries map pages of this size.
    pub const fn leaf_level(self) -> LeafLevel {
        match self {
            PageSize::Small => LeafLevel::Pt,
            PageSize::Large => LeafLevel::Pd,
            PageSize::Huge => LeafLevel::Pdpt,
        }
    }
}

bitflags::bitflags! {
    /// Access rights of one mapping (seL4's `seL4_CapRights` as used by `X86Page_Map`, plus execute).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
    pub struct Rights: u8 {
        /// The page can be read.
        const READ = 1 << 0;
        /// The page can be written.
        const WRITE = 1 << 1;
        /// Code on the page can be executed (clear: the NX bit is set).
        const EXECUTE = 1 << 2;
    }
}

/// The level of a paging structure that holds a page mapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum LeafLevel {
    /// A page table (`seL4_X86_PageTableObject`): its entries map 4 KiB pages.
    Pt,
    /// A page directory (`seL4_X86_PageDirectoryObject`): its entries map 2 MiB pages.
    Pd,
    /// A page-directory-pointer table (`seL4_X86_PDPTObject`): its entries map 1 GiB pages.
    Pdpt,
}

impl LeafLevel {
    /// The page size this level's entries map.
    pub const fn page_size(self) -> PageSize {
        match self {
            LeafLevel::Pt => PageSize::Small,
            LeafLevel::Pd => PageSize::Large,
            LeafLevel::Pdpt => PageSize::Huge,
        }
    }
}

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
                level: size.leaf_level(),
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
