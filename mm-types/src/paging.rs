//! x86_64 paging: page (frame) sizes, the levels of the paging tree, and user addresses.

use core::fmt;

/// The lowest address a mapping may cover: page 0 is never mapped, so that a null pointer faults.
pub const USER_VADDR_START: u64 = 0x1000;

/// The end (exclusive) of the addresses vspace maps: the lower canonical half `[0, 2^47)` less its last
/// 4 KiB page (the Linux convention, which keeps a user-mode `syscall` from returning to a non-canonical
/// address). seL4 5.0's own limit (`PPTR_USER_TOP`) is above `2^47`, so the kernel never refuses what vspace
/// allows. Adjust here; every check in vspace derives from it.
pub const USER_VADDR_END: u64 = 0x0000_7FFF_FFFF_F000;

/// Entries in every x86_64 paging structure.
pub const ENTRIES_PER_TABLE: u64 = 512;

/// `addr` rounded down to a multiple of `2^bits`.
#[inline]
const fn align_down(addr: u64, bits: u32) -> u64 {
    addr & !((1u64 << bits) - 1)
}

/// A frame's (page's) size, by seL4's names; each one a seL4 frame object type.
///
/// The value form of vspace's `PageSize` markers (`Size4K`, `Size2M`, `Size1G`); the mapping database's
/// `PageSize`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum FrameSize {
    /// 4 KiB (`X86_4K`, `seL4_PageBits`): mapped in a PT entry.
    Small,
    /// 2 MiB (`X86_LargePageObject`): mapped in a PD entry.
    Large,
    /// 1 GiB (`X64_HugePageObject`, needs the kernel's `CONFIG_HUGE_PAGE`): mapped in a PDPT entry.
    Huge,
}

impl FrameSize {
    /// Every size, smallest first.
    pub const ALL: [FrameSize; 3] = [FrameSize::Small, FrameSize::Large, FrameSize::Huge];

    /// log2 of the size in bytes: 12, 21 or 30.
    #[inline]
    pub const fn bits(self) -> u32 {
        match self {
            FrameSize::Small => 12,
            FrameSize::Large => 21,
            FrameSize::Huge => 30,
        }
    }

    /// The size in bytes.
    #[inline]
    pub const fn bytes(self) -> u64 {
        1 << self.bits()
    }

    /// The level of the table whose entry maps a frame of this size (the leaf table of this size).
    #[inline]
    pub const fn level(self) -> TableLevel {
        match self {
            FrameSize::Small => TableLevel::Pt,
            FrameSize::Large => TableLevel::Pd,
            FrameSize::Huge => TableLevel::Pdpt,
        }
    }

    /// `addr` rounded down to a multiple of this size.
    #[inline]
    pub const fn align_down(self, addr: u64) -> u64 {
        align_down(addr, self.bits())
    }

    /// Whether `addr` is a multiple of this size.
    #[inline]
    pub const fn is_aligned(self, addr: u64) -> bool {
        addr & (self.bytes() - 1) == 0
    }

    /// The index of the entry that maps `vaddr` in a leaf table of this size's level.
    #[inline]
    pub const fn entry_index(self, vaddr: u64) -> u16 {
        ((vaddr >> self.bits()) & (ENTRIES_PER_TABLE - 1)) as u16
    }

    /// The start of the virtual region one leaf table of this size's level covers, for a page at `vaddr`
    /// (512 pages: 2 MiB for a PT, 1 GiB for a PD, 512 GiB for a PDPT).
    #[inline]
    pub const fn leaf_region(self, vaddr: u64) -> u64 {
        vaddr & !((self.bytes() << 9) - 1)
    }
}

/// A paging structure below the root (the root, a PML4, has its own calls in vspace's kernel trait).
/// Ordered from the root down.
///
/// Each level is also a *leaf* level: the level of a paging structure that holds a page mapping, whose
/// entries map pages of [`TableLevel::frame_size`] (the mapping database's `LeafLevel`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum TableLevel {
    /// Page-directory-pointer table: 512 entries of 1 GiB, mapped in a PML4 entry (`X86_PDPTObject`).
    Pdpt,
    /// Page directory: 512 entries of 2 MiB, mapped in a PDPT entry (`X86_PageDirectoryObject`).
    Pd,
    /// Page table: 512 entries of 4 KiB, mapped in a PD entry (`X86_PageTableObject`).
    Pt,
}

impl TableLevel {
    /// Every level, from the root down.
    pub const ALL: [TableLevel; 3] = [TableLevel::Pdpt, TableLevel::Pd, TableLevel::Pt];

    /// Bits of address one entry of this table covers (30, 21, 12).
    #[inline]
    pub const fn entry_bits(self) -> u32 {
        match self {
            TableLevel::Pdpt => 30,
            TableLevel::Pd => 21,
            TableLevel::Pt => 12,
        }
    }

    /// Bits of address the whole table covers (39, 30, 21).
    #[inline]
    pub const fn span_bits(self) -> u32 {
        self.entry_bits() + 9
    }

    /// The base of the table of this level that covers `vaddr`.
    #[inline]
    pub const fn base_of(self, vaddr: u64) -> u64 {
        align_down(vaddr, self.span_bits())
    }

    /// The index of `vaddr`'s entry in the table of this level that covers it.
    #[inline]
    pub const fn index_of(self, vaddr: u64) -> u16 {
        ((vaddr >> self.entry_bits()) & (ENTRIES_PER_TABLE - 1)) as u16
    }

    /// The level this table's entry lives in; `None` for [`TableLevel::Pdpt`], whose parent is the root.
    #[inline]
    pub const fn parent(self) -> Option<TableLevel> {
        match self {
            TableLevel::Pdpt => None,
            TableLevel::Pd => Some(TableLevel::Pdpt),
            TableLevel::Pt => Some(TableLevel::Pd),
        }
    }

    /// The level of the tables this one's entries can point to; `None` for [`TableLevel::Pt`].
    #[inline]
    pub const fn child(self) -> Option<TableLevel> {
        match self {
            TableLevel::Pdpt => Some(TableLevel::Pd),
            TableLevel::Pd => Some(TableLevel::Pt),
            TableLevel::Pt => None,
        }
    }

    /// Position in [`TableLevel::ALL`].
    #[inline]
    pub const fn ordinal(self) -> usize {
        self as usize
    }

    /// The page size this level's entries map (the inverse of [`FrameSize::level`]).
    #[inline]
    pub const fn frame_size(self) -> FrameSize {
        match self {
            TableLevel::Pt => FrameSize::Small,
            TableLevel::Pd => FrameSize::Large,
            TableLevel::Pdpt => FrameSize::Huge,
        }
    }
}

/// An address in the lower half that user level can name: `addr < USER_VADDR_END`.
///
/// Page 0 is a valid [`VirtAddr`] (it can be looked up) but is never mapped.
///
/// # Constructors
/// [`VirtAddr::new`] panics on an address outside the range, [`VirtAddr::try_new`] returns an error, and
/// [`VirtAddr::new_unchecked`] does not check. The last is safe (and so not `unsafe fn`, unlike the x86_64
/// crate's): nothing relies on the range for memory safety, and every operation re-checks the addresses it
/// acts on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(u64);

/// [`VirtAddr::try_new`] refused: the address is not below [`USER_VADDR_END`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VirtAddrNotUser(pub u64);

impl VirtAddr {
    /// The address, which must be below [`USER_VADDR_END`].
    ///
    /// # Panics
    /// If it is not.
    pub const fn new(addr: u64) -> Self {
        match Self::try_new(addr) {
            Ok(v) => v,
            Err(_) => panic!("VirtAddr::new: address outside the user range"),
        }
    }

    /// The address, or an error if it is not below [`USER_VADDR_END`].
    pub const fn try_new(addr: u64) -> Result<Self, VirtAddrNotUser> {
        if addr < USER_VADDR_END {
            Ok(Self(addr))
        } else {
            Err(VirtAddrNotUser(addr))
        }
    }

    /// The address, unchecked (see the type's documentation for why this is not `unsafe`).
    #[inline]
    pub const fn new_unchecked(addr: u64) -> Self {
        Self(addr)
    }

    /// The address as a number.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for VirtAddrNotUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address {:#x} is not below the user limit {USER_VADDR_END:#x}",
            self.0
        )
    }
}

impl core::error::Error for VirtAddrNotUser {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_levels_agree() {
        for s in FrameSize::ALL {
            assert_eq!(s.level().frame_size(), s);
            assert_eq!(s.level().entry_bits(), s.bits());
            for va in [0u64, 0x1234_5000, 0x7fff_ffe0_0000, 0x40_0000_0000] {
                assert_eq!(s.entry_index(va), s.level().index_of(va));
                assert_eq!(s.leaf_region(va), s.level().base_of(va));
            }
        }
        assert_eq!(FrameSize::Small as u8, 0);
        assert_eq!(FrameSize::Large as u8, 1);
        assert_eq!(FrameSize::Huge as u8, 2);
    }
}
