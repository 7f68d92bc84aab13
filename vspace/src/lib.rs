//! The root task's x86_64 VSpace manager, free of seL4 and tested on the host.
//!
//! On seL4 the kernel owns the page tables: user level changes them only by invoking capabilities
//! (`PDPT_Map`, `PageDirectory_Map`, `PageTable_Map`, `Page_Map`, `Page_Remap`, `Page_Unmap`, the table
//! unmaps, `ASIDPool_Assign`). This crate decides which invocations to make and keeps a user-level shadow of
//! their effect, behind the narrow trait [`VSpaceKernel`]; the seL4-facing layer implements the trait with
//! one invocation per method and stays thin. `mock::MockKernel` (tests, or the `mock` feature) models the
//! 5.0 kernel's checks and keeps a real 4-level tree, so the tests compare the shadow with what a thread
//! would see.
//!
//! # Use
//!
//! - [`AddressSpace::create`] allocates a PML4 and assigns it an ASID.
//! - [`AddressSpace::map`] maps one caller-provided frame cap per page of a [`PageRange`] (a cap maps once:
//!   to map a frame in N places, the caller makes N copies). [`AddressSpace::map_batch`] collects several
//!   ranges, of any page sizes, into one all-or-nothing [`MapBatch`].
//! - [`AddressSpace::unmap`] hands the frame caps back only once their unmap is complete: under seL4 5.0,
//!   deleting a mapped cap that is not the frame's last copy leaves the entry in place, so a cap must be
//!   unmapped before the caller deletes it. [`AddressSpace::unmap_count`] does the same but reports only
//!   how many it unmapped, for a caller that keeps the caps itself (no list built per page).
//! - [`AddressSpace::protect`] changes rights and cache attributes with `Page_Remap`.
//! - [`AddressSpace::lookup`] answers from the shadow, without the kernel.
//! - [`AddressSpace::destroy`] unmaps and frees everything and returns every frame cap ([`Teardown`]).
//!
//! Paging structures are allocated on demand (only the missing ones: the shadow knows which exist) and
//! reclaimed as soon as they become empty: unmapped ([`VSpaceKernel::unmap_table`]), then freed
//! ([`VSpaceKernel::free_table`]).
//!
//! Page sizes are types ([`Size4K`], [`Size2M`], [`Size1G`]); [`Page::from_start_address`] accepts only
//! aligned addresses, so a misaligned map cannot be expressed. Mappings live in
//! `[USER_VADDR_START, USER_VADDR_END)`: page 0 is the null guard, and the limit is one constant.
//!
//! # Batching
//!
//! Maps, remaps and unmaps reach the kernel per *run*: consecutive entries of one leaf table ([`LeafRun`]).
//! The trait's `map_frames_run`, `remap_frames_run` and `unmap_frames_run` default to one invocation per
//! page; a kernel extension that writes a whole run in one call overrides them. Their contract (on failure,
//! exactly a prefix of the run was done) is what the rollback relies on.
//!
//! # Failures
//!
//! - **Refusals** (typed, one error enum per operation: [`MapError`], [`UnmapError`], [`ProtectError`]) are
//!   decided from the shadow before any kernel call and change nothing: empty range, write without read,
//!   wrong number of frame caps, outside the user range, overlap (including, for a large page, any smaller
//!   page inside it), a cap mapped already, a mapping split by the range's ends.
//! - **Map and protect are all or nothing.** If the kernel fails in the middle (including running out of
//!   memory for a table), every call already made is undone: frames unmapped, remapped pages given their old
//!   rights back, tables this call allocated unmapped and freed. The shadow, the kernel's tree and the
//!   allocation counts are then exactly as before ([`Rollback::Complete`]). Should an undo call fail as
//!   well, the shadow records what could not be undone ([`Rollback::Incomplete`]) and stays exact.
//! - **Unmap is not rolled back**: undoing an unmap is a map, which can fail in turn, and would expose
//!   again memory the caller wanted gone. It unmaps every page it can, hands back those caps, and reports
//!   the pages the kernel refused (they stay mapped and recorded). A table whose unmap is refused stays,
//!   empty, *pending reclaim*; [`AddressSpace::reclaim`] and [`AddressSpace::destroy`] retry it.
//!
//! In every case the shadow matches the kernel: that is the property the tests check after each step.
//!
//! # The shadow
//!
//! Per space: the root's entry count; the tables present, as the tree the kernel's tables form (each with
//! its cap, its entry count, which of its entries hold a child table and which a frame, the frames' caps,
//! rights and attributes by entry, and whether it is an empty table pending reclaim); and an index from
//! frame cap to page, which keeps consecutive caps at consecutive pages by blocks of 64 (one update per
//! block, not per cap). So a map or an unmap of consecutive caps does no per-page lookup at all: overlaps
//! are checked with one bitmap scan per leaf table, runs are found from the bitmaps, and the caps of a run
//! are copied and handed to the kernel as one slice. Caps in no order cost one cap-index update each. [`AddressSpace::check`] verifies:
//!
//! - **T1** a table's base is aligned to its span and its parent is present (the root for a PDPT).
//! - **T2** a table's entry count (and the root's) equals its child tables plus its frames.
//! - **T3** a table is empty <=> it is pending reclaim (the kernel refused its unmap); otherwise empty
//!   tables do not exist. So a PT exists <=> a 4 KiB page lies in its 2 MiB region (modulo pending ones).
//! - **F1** a frame is aligned to its size, inside the user range, with valid rights.
//! - **F2** a frame's leaf table is present.
//! - **F3** no frame lies inside a larger frame, and no table of smaller pages sits in a large frame's
//!   entry (so mappings never overlap).
//! - **C1** frame cap -> page is a bijection with the frames.
//!
//! # Not here
//!
//! Copying caps (the caller provides one cap per mapping), the seL4 invocations themselves, TLB shootdown
//! on SMP (5.0's `Page_Unmap` sends none to other cores when the VSpace is not the caller's current one:
//! the seL4 layer or a kernel patch must close that), and sharing tables between spaces (seL4 forbids it).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod addr;
mod attr;
mod batch;
mod capmap;
mod error;
mod kernel;
mod shadow;
mod space;

#[cfg(any(test, feature = "mock"))]
pub mod mock;

#[cfg(test)]
mod tests;

pub use addr::{
    AddressNotAligned, FrameSize, Page, PageRange, PageSize, Size1G, Size2M, Size4K, TableLevel, VirtAddr,
    VirtAddrNotUser, ENTRIES_PER_TABLE, USER_VADDR_END, USER_VADDR_START,
};
pub use attr::{CacheAttr, Rights};
pub use batch::MapBatch;
pub use error::{CreateError, DestroyError, MapError, ProtectError, ReclaimError, Rollback, UnmapError};
pub use kernel::{CapRef, KernelFailure, KernelOp, LeafRun, RunFailure, VSpaceKernel};
pub use shadow::InvariantViolation;
pub use space::{AddressSpace, Mapping, SpaceStats, TableInfo, TablePolicy, Teardown};
