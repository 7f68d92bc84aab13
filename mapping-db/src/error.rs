//! One error enum per operation. A refused operation changes nothing.

use core::fmt;

use crate::types::CapSlot;

/// Why [`MappingDb::add_frame`](crate::MappingDb::add_frame) refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddFrameError {
    /// The frame's original slot already holds a capability the database knows.
    SlotInUse,
    /// The physical address is not a multiple of the frame's size.
    Misaligned,
}

/// Why [`MappingDb::add_copy`](crate::MappingDb::add_copy) refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddCopyError {
    /// The frame is not in the database.
    UnknownFrame,
    /// The copy's slot already holds a capability the database knows.
    SlotInUse,
    /// The parent slot holds no capability the database knows.
    UnknownParent,
    /// The parent slot holds a capability to another frame.
    ParentOfOtherFrame,
}

/// Why [`MappingDb::remove_copy`](crate::MappingDb::remove_copy) refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemoveCopyError {
    /// The slot holds no capability the database knows.
    UnknownCap,
    /// The slot holds a frame's original capability: use `remove_frame`.
    IsOriginal,
    /// The copy holds a mapping: remove the mapping first.
    Mapped,
    /// Copies derived from this one are still present: remove them first (seL4: revoke before delete).
    HasChildren,
}

/// Why [`MappingDb::remove_frame`](crate::MappingDb::remove_frame) refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemoveFrameError {
    /// The frame is not in the database.
    UnknownFrame,
    /// Copies of the original capability are still present.
    HasCopies,
    /// The original capability holds a mapping.
    Mapped,
}

/// Why [`MappingDb::insert`](crate::MappingDb::insert) refused. The checks run in the order of the variants;
/// the first that fails is reported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InsertError {
    /// `vaddr` is not a multiple of the page size.
    Misaligned,
    /// The page does not end at or below [`USER_VADDR_END`](crate::USER_VADDR_END).
    OutOfRange,
    /// The leaf table belongs to another address space than the mapping.
    LeafSpaceMismatch,
    /// The leaf table's level does not map pages of the mapping's size.
    LeafLevelMismatch,
    /// `index` is not the entry that maps `vaddr` (`size.entry_index(vaddr)`).
    IndexMismatch,
    /// The frame is not in the database.
    UnknownFrame,
    /// The page size is not the frame's size.
    SizeMismatch,
    /// The capability slot holds no capability the database knows.
    UnknownCap,
    /// The capability is not a copy of the mapping's frame.
    NotACopy,
    /// The capability already holds a mapping.
    CapMapped,
    /// The leaf table's entries already map another virtual region (a table covers one region while it has
    /// entries).
    LeafRegionMismatch,
    /// The entry (leaf, index) already holds a mapping, through the capability given.
    PteClaimed(CapSlot),
    /// The page overlaps a mapping of the same address space.
    Overlap,
}

/// Why a removal ([`MappingDb::remove_by_vaddr`](crate::MappingDb::remove_by_vaddr),
/// [`remove_by_cap`](crate::MappingDb::remove_by_cap), [`remove_at`](crate::MappingDb::remove_at), the runs
/// [`remove_run`](crate::MappingDb::remove_run) and [`destroy_run`](crate::MappingDb::destroy_run)) refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemoveError {
    /// The slot holds no capability the database knows.
    UnknownCap,
    /// Nothing is mapped there (or the capability holds no mapping).
    NotMapped,
    /// Only from [`destroy_run`](crate::MappingDb::destroy_run): the page's capability is a copy that other
    /// copies (not removed before it by the run) were derived from, so it could not be forgotten (see
    /// [`RemoveCopyError::HasChildren`]).
    HasChildren,
}

/// Why [`MappingDb::clone_run`](crate::MappingDb::clone_run) refused an element: the error of the single
/// operation (`add_copy`, then `insert`) that refused it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloneError {
    /// Recording the element's capability as a copy was refused.
    Copy(AddCopyError),
    /// Inserting the element's record (after its copy was recorded) was refused.
    Insert(InsertError),
}

/// Why [`MappingDb::source_caps`](crate::MappingDb::source_caps) refused a page of its run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SourceError {
    /// No 4 KiB mapping starts at the page (nothing is mapped there, a larger page contains it, or the
    /// address is not 4 KiB aligned or not below [`USER_VADDR_END`](crate::USER_VADDR_END)).
    NotMapped,
    /// The page's mapping lacks some of the rights asked for.
    RightsExceed,
}

/// Why [`MappingDb::clone_region`](crate::MappingDb::clone_region) refused a page: the error of the step
/// (source lookup, `add_copy`, then `insert`) that refused it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloneRegionError {
    /// The source page was refused by [`source_caps`](crate::MappingDb::source_caps).
    Source(SourceError),
    /// Recording the page's new capability as a copy was refused.
    Copy(AddCopyError),
    /// Inserting the page's record (after its copy was recorded) was refused.
    Insert(InsertError),
}

/// What went wrong with one operation of a [`Batch`](crate::Batch).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BatchErrorKind {
    /// An insert names another leaf table than the batch's.
    WrongLeaf,
    /// An insert would be refused, applied after the operations before it.
    Insert(InsertError),
    /// A removal would be refused, applied after the operations before it.
    Remove(RemoveError),
}

/// Why [`MappingDb::commit`](crate::MappingDb::commit) refused a batch; nothing of the batch was applied.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BatchError {
    /// Position of the first failing operation in the batch.
    pub op: usize,
    /// What is wrong with it.
    pub kind: BatchErrorKind,
}

/// An invariant [`MappingDb::check`](crate::MappingDb::check) found broken (a bug in this crate).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InvariantViolation {
    /// A frame's original slot is missing, names another frame, or has a parent.
    Original(crate::FrameId),
    /// A capability names a frame the database lacks, or its place in the frame's copy list disagrees.
    CopyList(CapSlot),
    /// A capability's parent is missing, is a cap to another frame, the child counts disagree, or the
    /// derivation has a cycle.
    Derivation(CapSlot),
    /// A record is malformed: misaligned, out of range, wrong leaf level or space, wrong index, or its size is
    /// not its frame's size.
    Record(CapSlot),
    /// A record is missing from, or misplaced in, the (address space, vaddr) index.
    VaddrIndex(CapSlot),
    /// A record is missing from, or misplaced in, its frame's list of mappings.
    FrameIndex(CapSlot),
    /// A record is missing from, or misplaced in, its address space's list of mappings.
    SpaceIndex(CapSlot),
    /// A record's entry is not marked in its leaf table, or the table covers another region.
    LeafIndex(CapSlot),
    /// The page of this record lies inside a larger page of the same address space.
    Overlap(CapSlot),
    /// A counter of smaller pages inside a larger region disagrees with the records.
    SpanCount,
    /// A copy run (named by its first copy slot) is malformed, claims a page or slot something else
    /// claims, names a parent that is not a known original of a 4 KiB frame, or is missing from an index.
    Run(CapSlot),
    /// An index holds an entry no record accounts for (the counts of the indexes differ), or an empty list.
    Count,
}

macro_rules! display_as_debug {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
        impl core::error::Error for $t {}
    )*};
}

display_as_debug!(
    AddFrameError,
    AddCopyError,
    RemoveCopyError,
    RemoveFrameError,
    InsertError,
    RemoveError,
    CloneError,
    SourceError,
    CloneRegionError,
    BatchErrorKind,
    BatchError,
    InvariantViolation
);
