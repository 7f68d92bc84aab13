//! Addresses, page sizes as types, and the levels of the x86_64 paging tree.

use core::fmt;
use core::hash::Hash;
use core::marker::PhantomData;

/// The lowest address a mapping may cover: page 0 is never mapped, so that a null pointer faults.
pub const USER_VADDR_START: u64 = 0x1000;

/// The end (exclusive) of the addresses this crate maps: the lower canonical half `[0, 2^47)` less its last
/// 4 KiB page (the Linux convention, which keeps a user-mode `syscall` from returning to a non-canonical
/// address). seL4 5.0's own limit (`PPTR_USER_TOP`) is above `2^47`, so the kernel never refuses what this
/// crate allows. Adjust here; every check in the crate derives from it.
pub const USER_VADDR_END: u64 = 0x0000_7FFF_FFFF_F000;

/// Entries in every x86_64 paging structure.
pub const ENTRIES_PER_TABLE: u64 = 512;

/// Bits of address one PML4 entry covers (512 GiB).
pub(crate) const PML4_ENTRY_BITS: u32 = 39;

/// `addr` rounded down to a multiple of `2^bits`.
#[inline]
pub(crate) const fn align_down(addr: u64, bits: u32) -> u64 {
    addr & !((1u64 << bits) - 1)
}

/// An address in the lower half that user level can name: `addr < USER_VADDR_END`.
///
/// Page 0 is a valid [`VirtAddr`] (it can be looked up) but is never mapped.
///
/// # Constructors
/// [`VirtAddr::new`] panics on an address outside the range, [`VirtAddr::try_new`] returns an error, and
/// [`VirtAddr::new_unchecked`] does not check. The last is safe (and so not `unsafe fn`, unlike the x86_64
/// crate's): nothing in this crate relies on the range for memory safety, and every operation re-checks the
/// addresses it acts on.
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

/// A paging structure below the root (the root, a PML4, has its own calls in
/// [`VSpaceKernel`](crate::VSpaceKernel)). Ordered from the root down.
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
}

/// A frame's size, by seL4's names: the value form of the [`PageSize`] markers.
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

    /// log2 of the size in bytes.
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

    /// The level of the table whose entry maps a frame of this size.
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
}

mod sealed {
    pub trait Sealed {}
}

/// A page size as a type (sealed: [`Size4K`], [`Size2M`], [`Size1G`]).
pub trait PageSize: sealed::Sealed + Copy + Eq + Ord + Hash + fmt::Debug + 'static {
    /// log2 of the size in bytes.
    const BITS: u32;
    /// The size in bytes.
    const SIZE: u64;
    /// The level of the table whose entry maps a page of this size.
    const LEVEL: TableLevel;
    /// The frame object size (and so the seL4 object type) a page of this size is backed by.
    const FRAME: FrameSize;
    /// For `Debug` output.
    const NAME: &'static str;
}

/// 4 KiB pages (uninhabited marker).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Size4K {}
/// 2 MiB pages (uninhabited marker).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Size2M {}
/// 1 GiB pages (uninhabited marker; the kernel needs `CONFIG_HUGE_PAGE`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Size1G {}

impl sealed::Sealed for Size4K {}
impl sealed::Sealed for Size2M {}
impl sealed::Sealed for Size1G {}

impl PageSize for Size4K {
    const BITS: u32 = 12;
    const SIZE: u64 = 1 << Self::BITS;
    const LEVEL: TableLevel = TableLevel::Pt;
    const FRAME: FrameSize = FrameSize::Small;
    const NAME: &'static str = "4KiB";
}

impl PageSize for Size2M {
    const BITS: u32 = 21;
    const SIZE: u64 = 1 << Self::BITS;
    const LEVEL: TableLevel = TableLevel::Pd;
    const FRAME: FrameSize = FrameSize::Large;
    const NAME: &'static str = "2MiB";
}

impl PageSize for Size1G {
    const BITS: u32 = 30;
    const SIZE: u64 = 1 << Self::BITS;
    const LEVEL: TableLevel = TableLevel::Pdpt;
    const FRAME: FrameSize = FrameSize::Huge;
    const NAME: &'static str = "1GiB";
}

/// [`Page::from_start_address`] refused: the address is not a multiple of the page size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddressNotAligned {
    /// The address given.
    pub addr: u64,
    /// The page size it had to be a multiple of.
    pub size: FrameSize,
}

impl fmt::Display for AddressNotAligned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "address {:#x} is not aligned to a {:?} page", self.addr, self.size)
    }
}

impl core::error::Error for AddressNotAligned {}

/// A virtual page of size `S`: its start address is always a multiple of `S::SIZE`.
///
/// Only alignment is checked on construction; whether the page lies in the user range is checked by the
/// operation it is given to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Page<S: PageSize> {
    start: u64,
    size: PhantomData<S>,
}

impl<S: PageSize> Page<S> {
    /// The page starting at `addr`, or an error if `addr` is not a multiple of `S::SIZE`.
    pub const fn from_start_address(addr: u64) -> Result<Self, AddressNotAligned> {
        if addr & (S::SIZE - 1) == 0 {
            Ok(Self {
                start: addr,
                size: PhantomData,
            })
        } else {
            Err(AddressNotAligned { addr, size: S::FRAME })
        }
    }

    /// The page that contains `addr`.
    pub const fn containing_address(addr: u64) -> Self {
        Self {
            start: align_down(addr, S::BITS),
            size: PhantomData,
        }
    }

    /// The page's first address.
    pub const fn start_address(self) -> u64 {
        self.start
    }

    /// The pages `[start, end)` (empty if `end <= start`).
    pub const fn range(start: Self, end: Self) -> PageRange<S> {
        PageRange { start, end }
    }
}

impl<S: PageSize> fmt::Debug for Page<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Page<{}>({:#x})", S::NAME, self.start)
    }
}

/// The pages `[start, end)` of size `S`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRange<S: PageSize> {
    start: Page<S>,
    end: Page<S>,
}

impl<S: PageSize> PageRange<S> {
    /// `count` pages from `start`; `None` if the end would pass `2^64`.
    pub fn from_count(start: Page<S>, count: u64) -> Option<Self> {
        let len = count.checked_mul(S::SIZE)?;
        let end = start.start.checked_add(len)?;
        Some(Self {
            start,
            end: Page {
                start: end,
                size: PhantomData,
            },
        })
    }

    /// The first page.
    pub const fn start(&self) -> Page<S> {
        self.start
    }

    /// The page after the last (exclusive end).
    pub const fn end(&self) -> Page<S> {
        self.end
    }

    /// Number of pages.
    pub const fn len(&self) -> u64 {
        if self.end.start > self.start.start {
            (self.end.start - self.start.start) >> S::BITS
        } else {
            0
        }
    }

    /// Whether the range holds no page.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first address and the end address (exclusive) of the range.
    pub const fn bounds(&self) -> (u64, u64) {
        (self.start.start, self.start.start + (self.len() << S::BITS))
    }

    /// The pages, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Page<S>> + '_ {
        let start = self.start.start;
        (0..self.len()).map(move |i| Page {
            start: start + (i << S::BITS),
            size: PhantomData,
        })
    }
}

impl<S: PageSize> fmt::Debug for PageRange<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = self.bounds();
        write!(f, "PageRange<{}>({start:#x}..{end:#x})", S::NAME)
    }
}
