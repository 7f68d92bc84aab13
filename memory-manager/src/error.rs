//! One error type per operation. A refusal (every variant but those carrying
//! a [`Left`]) changed nothing. A kernel failure midway is undone where an
//! undo is possible; what could not be undone is named in the error's
//! [`Left`], and the books record it: they equal the kernel either way.

use alloc::vec::Vec;
use cspace::{AllocError, CapError, KernelError, ObjectId};
use mapping_db::AsId;

/// What a failed operation left different from before it, beyond what the
/// operation documents. The books record all of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Left {
    /// Pages that stayed mapped (each recorded in the mapping database and
    /// the space's shadow): (space, virtual address).
    pub mapped: Vec<(AsId, u64)>,
    /// Caps (cptrs) the manager could not delete: unmapped, still booked by
    /// cspace.
    pub caps: Vec<u64>,
    /// Objects the manager could not free: still live in the figures.
    pub objects: Vec<ObjectId>,
    /// Paging structures the operation allocated that stay in the space
    /// (holding what stayed mapped, or empty and pending reclaim because
    /// the kernel refused their unmap: `AddressSpace::reclaim` retries).
    pub tables: usize,
    /// Merges of untyped pieces emptied by the undo that the kernel refused:
    /// the pieces stay split (in the figures), `CSpace::reclaim_idle` retries.
    pub reclaims_failed: u64,
}

impl Left {
    /// Whether nothing was left: the failed operation changed nothing.
    pub fn is_empty(&self) -> bool {
        self.mapped.is_empty()
            && self.caps.is_empty()
            && self.objects.is_empty()
            && self.tables == 0
            && self.reclaims_failed == 0
    }
}

/// The books disagree among themselves: a manager bug, reported rather than
/// hidden. Raised before the operation made any kernel call, or (where
/// named) after it finished and its kernel state is booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A cap the database records is not a slot cspace manages.
    CapNotManaged(u64),
    /// A page the database records has no leaf table in the space's shadow.
    NoLeafTable {
        /// The address.
        vaddr: u64,
    },
    /// The database refused to record a mapping the kernel made.
    RecordRefused {
        /// The address.
        vaddr: u64,
    },
    /// The database refused to remove a record or copy the kernel no longer has.
    RemoveRefused {
        /// The address (or cptr, for a copy).
        at: u64,
    },
    /// vspace unmapped a different number of pages than the database records.
    UnmapCount {
        /// Pages the database records.
        recorded: usize,
        /// Pages vspace unmapped.
        unmapped: usize,
    },
    /// A frame the database knows twice, or a frame object the manager lost.
    Frame(u64),
}

/// Why [`Mm::map_new`](crate::Mm::map_new) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// No address space with this id.
    UnknownSpace(AsId),
    /// The region is empty, misaligned or outside the user range.
    BadRegion,
    /// No rights: a mapping the user cannot access.
    NoRights,
    /// A page of the region is mapped already.
    Occupied {
        /// The first such page.
        vaddr: u64,
    },
    /// Allocating the frames failed; the frames allocated before were freed
    /// (except `left.objects`).
    Alloc(AllocError, Left),
    /// The kernel refused a map; undone (except `left`).
    Map(alloc::boxed::Box<vspace::MapError>, Left),
    /// See [`Corruption`].
    Corrupt(Corruption),
}

/// Why [`Mm::clone_region`](crate::Mm::clone_region) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneError {
    /// No address space with this id.
    UnknownSpace(AsId),
    /// A region is empty, misaligned or outside the user range.
    BadRegion,
    /// No rights: a mapping the user cannot access.
    NoRights,
    /// A page of the source region is not mapped.
    SourceNotMapped {
        /// The address.
        vaddr: u64,
    },
    /// Rights beyond the source mapping's were asked for.
    RightsExceed,
    /// A page of the destination region is mapped already.
    Occupied {
        /// The first such page.
        vaddr: u64,
    },
    /// No slots for the copies.
    Slots(AllocError),
    /// The kernel refused a cap copy; undone (except `left`).
    Copy(CapError, Left),
    /// The kernel refused a map; undone (except `left`).
    Map(alloc::boxed::Box<vspace::MapError>, Left),
    /// See [`Corruption`].
    Corrupt(Corruption),
}

/// Why [`Mm::destroy_region`](crate::Mm::destroy_region) failed.
///
/// A destroy is completed page by page, not undone (an undo would be a map,
/// which can fail in turn): the pages the kernel unmapped are destroyed, the
/// others stay mapped and recorded, and `left` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyError {
    /// No address space with this id.
    UnknownSpace(AsId),
    /// The region is empty, misaligned or outside the user range.
    BadRegion,
    /// A page of the region is not mapped (nothing done).
    NotMapped {
        /// The address.
        vaddr: u64,
    },
    /// The kernel refused an unmap: `left.mapped` stayed mapped; every other
    /// page was destroyed.
    Unmap(KernelError, Left),
    /// vspace refused the range before any kernel call (nothing done).
    Refused(vspace::UnmapError),
    /// The kernel refused to delete copies: the pages are unmapped and
    /// unrecorded, `left.caps` stay booked by cspace.
    Delete(CapError, Left),
    /// See [`Corruption`].
    Corrupt(Corruption),
}

/// Why [`Mm::move_region`](crate::Mm::move_region) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveError {
    /// The clone failed: nothing moved (see [`CloneError`]).
    Clone(CloneError),
    /// The clone was done, destroying the source failed: the destination
    /// holds the region, `DestroyError`'s `left` names source pages that
    /// stay mapped.
    Destroy(DestroyError),
}

/// Why [`Mm::revoke_frame`](crate::Mm::revoke_frame) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeError {
    /// The capability is not a frame the manager knows.
    NotAFrame(u64),
    /// The kernel refused an unmap: `left.mapped` stay mapped and recorded;
    /// the mappings before them were unmapped and unrecorded, no copy deleted.
    Unmap(KernelError, Left),
    /// The kernel refused the revoke: every mapping is gone, the copies
    /// (`left.caps`) stay, unmapped.
    Revoke(CapError, Left),
    /// See [`Corruption`].
    Corrupt(Corruption),
}

/// Why [`Mm::free_frame`](crate::Mm::free_frame) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreeError {
    /// Not a frame the manager allocated (nothing done).
    NotAFrame(u64),
    /// Revoking its mappings and copies failed (the frame stays allocated).
    Revoke(RevokeError),
    /// cspace refused to free the object: it stays allocated, unmapped and
    /// without copies, unknown to the database (`left.objects`).
    Free(cspace::FreeError, Left),
}

/// Why [`Mm::destroy_space`](crate::Mm::destroy_space) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroySpaceError {
    /// No address space with this id.
    UnknownSpace(AsId),
    /// Destroying a recorded region failed; the space stays.
    Destroy(DestroyError),
    /// The kernel refused a step of the teardown (every recorded region was
    /// destroyed): the space stays with the manager, holding what vspace
    /// did not tear down; `released` are unbooked caps it unmapped (the caller's).
    Space {
        /// The refused operation.
        op: vspace::KernelOp,
        /// The kernel's answer.
        failure: KernelError,
        /// Caps of mappings outside the books that were unmapped before the stop.
        released: Vec<vspace::CapRef>,
    },
}

impl From<CloneError> for MoveError {
    fn from(e: CloneError) -> Self {
        MoveError::Clone(e)
    }
}
