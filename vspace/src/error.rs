//! One error type per operation, every variant documented.
//!
//! Refusals (every variant without a kernel failure in it) are decided from the shadow before any kernel
//! call: they change nothing. Kernel failures say what was undone (see [`Rollback`]).

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{FrameSize, TableLevel, VirtAddr};
use crate::kernel::{CapRef, KernelFailure, KernelOp};
use crate::space::AddressSpace;

/// What a failed map or protect left behind after undoing its kernel calls.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Rollback {
    /// Everything was undone: the shadow, the kernel's tables and the allocations are as before the call.
    Complete,
    /// An undo call failed too. The shadow still matches the kernel (it records what could not be undone),
    /// but the state differs from before the call.
    Incomplete {
        /// The first undo call's failure.
        failure: KernelFailure,
        /// For a map: frames that stayed mapped (the space now holds them; `unmap` hands them back). For a
        /// protect: pages that kept the new rights and attribute.
        residue: Vec<(VirtAddr, CapRef)>,
        /// Tables allocated by the call that stay: holding residue, or empty and pending reclaim because
        /// their unmap was refused.
        tables_kept: usize,
    },
}

impl Rollback {
    /// Whether everything was undone.
    pub fn is_complete(&self) -> bool {
        matches!(self, Rollback::Complete)
    }
}

/// Why [`AddressSpace::create`] failed. Nothing is left allocated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreateError {
    /// [`KernelOp::AllocRoot`] or [`KernelOp::AssignAsid`].
    pub op: KernelOp,
    /// The kernel's answer.
    pub failure: KernelFailure,
}

/// Why a map ([`AddressSpace::map`], [`MapBatch::add`](crate::MapBatch::add),
/// [`MapBatch::commit`](crate::MapBatch::commit)) failed. The checks run in the order of the variants.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MapError {
    /// The range holds no page.
    EmptyRange,
    /// `WRITE` without `READ`: x86 cannot map write-only pages.
    WriteWithoutRead,
    /// The number of frame caps is not the number of pages.
    FrameCountMismatch {
        /// Pages in the range.
        pages: u64,
        /// Caps given.
        frames: usize,
    },
    /// Some page lies outside `[USER_VADDR_START, USER_VADDR_END)` (page 0 is the null guard).
    OutsideUserRange {
        /// First address of the range.
        start: u64,
        /// End address (exclusive) of the range.
        end: u64,
    },
    /// The page at `vaddr` overlaps a mapping of the space (or one added earlier to the same batch). For a
    /// large page this includes any smaller page inside it, which is the same as a table of smaller pages
    /// present in its entry (empty tables are reclaimed; one whose reclaim the kernel refused also counts,
    /// as the kernel would answer `DeleteFirst`).
    Overlap {
        /// The first overlapping page of the request.
        vaddr: VirtAddr,
    },
    /// The frame cap is mapped already (in this space, or twice in the request): a cap maps once; map a
    /// copy instead. (A cap mapped in another space is refused by the kernel: [`MapError::Kernel`].)
    FrameAlreadyMapped {
        /// The cap.
        frame: CapRef,
    },
    /// Allocating a paging structure failed; rolled back.
    OutOfMemory {
        /// The level of the structure.
        level: TableLevel,
        /// The kernel's answer.
        failure: KernelFailure,
        /// What the undo left.
        rollback: Rollback,
    },
    /// The kernel refused a table or frame map; rolled back.
    Kernel {
        /// The refused operation ([`KernelOp::MapTable`] or [`KernelOp::MapFrame`]).
        op: KernelOp,
        /// The page (or the base of the table's region) it was for.
        vaddr: VirtAddr,
        /// The kernel's answer.
        failure: KernelFailure,
        /// What the undo left.
        rollback: Rollback,
    },
}

/// Why [`AddressSpace::unmap`] failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum UnmapError {
    /// The range holds no page.
    EmptyRange,
    /// The range is not inside `[0, USER_VADDR_END)` (it may include the null page, which holds no mapping).
    OutsideUserRange {
        /// First address of the range.
        start: u64,
        /// End address (exclusive) of the range.
        end: u64,
    },
    /// A mapping crosses the range's start or end (a large page is unmapped whole or not at all).
    SplitsMapping {
        /// The mapping's page start.
        vaddr: VirtAddr,
        /// Its size.
        size: FrameSize,
    },
    /// The kernel refused some unmaps. Unmapping is not rolled back (undoing it would be a map, which can
    /// fail in turn): every other page of the range was unmapped, the shadow records exactly what stays.
    Kernel {
        /// The first refused page.
        vaddr: VirtAddr,
        /// The kernel's answer.
        failure: KernelFailure,
        /// Pages that were unmapped: their caps are the caller's again, as from a successful unmap.
        unmapped: Vec<(VirtAddr, CapRef)>,
        /// Pages of the range that stay mapped.
        still_mapped: usize,
    },
}

/// Why [`AddressSpace::protect`] failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProtectError {
    /// The range holds no page.
    EmptyRange,
    /// `WRITE` without `READ`: x86 cannot map write-only pages.
    WriteWithoutRead,
    /// The range is not inside `[0, USER_VADDR_END)` (it may include the null page, which holds no mapping).
    OutsideUserRange {
        /// First address of the range.
        start: u64,
        /// End address (exclusive) of the range.
        end: u64,
    },
    /// A mapping crosses the range's start or end.
    SplitsMapping {
        /// The mapping's page start.
        vaddr: VirtAddr,
        /// Its size.
        size: FrameSize,
    },
    /// The kernel refused a remap; rolled back (the pages changed so far are remapped as they were).
    Kernel {
        /// The refused page.
        vaddr: VirtAddr,
        /// The kernel's answer.
        failure: KernelFailure,
        /// What the undo left.
        rollback: Rollback,
    },
}

/// Why [`AddressSpace::reclaim`] stopped short.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReclaimError {
    /// The first refusal of a table unmap.
    pub failure: KernelFailure,
    /// Tables reclaimed all the same.
    pub freed: usize,
    /// Empty tables still pending.
    pub pending: usize,
}

/// Why [`AddressSpace::destroy`] stopped: the kernel refused an unmap. The space is handed back, consistent
/// (it records what stays); what was unmapped is handed back too. Call `destroy` again to retry.
#[derive(Debug)]
pub struct DestroyError {
    /// The refused operation.
    pub op: KernelOp,
    /// The kernel's answer.
    pub failure: KernelFailure,
    /// Frames unmapped before the stop: the caller's again.
    pub released: Vec<(VirtAddr, CapRef)>,
    /// Paging structures freed before the stop.
    pub tables_freed: usize,
    /// The rest of the space.
    pub space: AddressSpace,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "creating the address space failed: {:?} returned {}",
            self.op, self.failure
        )
    }
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rollback::Complete => write!(f, "rolled back"),
            Rollback::Incomplete {
                failure,
                residue,
                tables_kept,
            } => write!(
                f,
                "rollback incomplete ({failure}): {} pages and {tables_kept} tables remain",
                residue.len()
            ),
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::EmptyRange => write!(f, "empty range"),
            MapError::WriteWithoutRead => write!(f, "write without read"),
            MapError::FrameCountMismatch { pages, frames } => write!(f, "{frames} frame caps for {pages} pages"),
            MapError::OutsideUserRange { start, end } => write!(f, "{start:#x}..{end:#x} is outside the user range"),
            MapError::Overlap { vaddr } => write!(f, "page {vaddr} overlaps an existing mapping"),
            MapError::FrameAlreadyMapped { frame } => write!(f, "{frame:?} is mapped already"),
            MapError::OutOfMemory {
                level,
                failure,
                rollback,
            } => {
                write!(f, "allocating a {level:?} failed ({failure}); {rollback}")
            }
            MapError::Kernel {
                op,
                vaddr,
                failure,
                rollback,
            } => {
                write!(f, "{op:?} at {vaddr} failed ({failure}); {rollback}")
            }
        }
    }
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmapError::EmptyRange => write!(f, "empty range"),
            UnmapError::OutsideUserRange { start, end } => {
                write!(f, "{start:#x}..{end:#x} is outside the user range")
            }
            UnmapError::SplitsMapping { vaddr, size } => write!(f, "the range splits the {size:?} page at {vaddr}"),
            UnmapError::Kernel {
                vaddr,
                failure,
                unmapped,
                still_mapped,
            } => write!(
                f,
                "unmapping {vaddr} failed ({failure}); {} pages unmapped, {still_mapped} still mapped",
                unmapped.len()
            ),
        }
    }
}

impl fmt::Display for ProtectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtectError::EmptyRange => write!(f, "empty range"),
            ProtectError::WriteWithoutRead => write!(f, "write without read"),
            ProtectError::OutsideUserRange { start, end } => {
                write!(f, "{start:#x}..{end:#x} is outside the user range")
            }
            ProtectError::SplitsMapping { vaddr, size } => {
                write!(f, "the range splits the {size:?} page at {vaddr}")
            }
            ProtectError::Kernel {
                vaddr,
                failure,
                rollback,
            } => {
                write!(f, "remapping {vaddr} failed ({failure}); {rollback}")
            }
        }
    }
}

impl fmt::Display for ReclaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unmapping an empty table failed ({}); {} freed, {} pending",
            self.failure, self.freed, self.pending
        )
    }
}

impl fmt::Display for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "destroy stopped: {:?} failed ({}); {} frames released",
            self.op,
            self.failure,
            self.released.len()
        )
    }
}

impl core::error::Error for CreateError {}
impl core::error::Error for MapError {}
impl core::error::Error for UnmapError {}
impl core::error::Error for ProtectError {}
impl core::error::Error for ReclaimError {}
impl core::error::Error for DestroyError {}
