//! Addresses, page sizes as types, and the levels of the x86_64 paging tree.
//!
//! The user range, [`VirtAddr`], the levels ([`TableLevel`]) and the page sizes as values
//! ([`FrameSize`]) are the ones every crate of the manager shares (`mm-types`).

use core::fmt;
use core::hash::Hash;
use core::marker::PhantomData;

pub use mm_types::{
    FrameSize, TableLevel, VirtAddr, VirtAddrNotUser, ENTRIES_PER_TABLE, USER_VADDR_END, USER_VADDR_START,
};

/// Bits of address one PML4 entry covers (512 GiB).
pub(crate) const PML4_ENTRY_BITS: u32 = 39;

/// `addr` rounded down to a multiple of `2^bits`.
#[inline]
pub(crate) const fn align_down(addr: u64, bits: u32) -> u64 {
    addr & !((1u64 << bits) - 1)
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
