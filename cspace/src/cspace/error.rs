//! The errors of the public operations: each variant documented, a refusal changes nothing.

use crate::kernel::KernelOp;
use crate::layout::{LayoutError, Slot};
use crate::types::{KernelError, ObjectType};
use crate::untyped::UntypedConfigError;

use super::ObjectId;

/// Why [`CSpace::new`](super::CSpace::new) failed. Whatever it had done is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The layout parameters cannot work.
    Layout(LayoutError),
    /// The untyped parameters or a boot untyped are invalid.
    Untyped(UntypedConfigError),
    /// A boot untyped's slot lies in the empty range, or the empty range has
    /// no slot for the L1 cap.
    Slots,
    /// No fresh RAM untyped can hold the L1 CNode.
    OutOfMemory,
    /// The kernel refused a start-up step.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
}

/// Why an allocation was refused. Every figure is as it was before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// The size argument is not valid for the type
    /// ([`ObjectType::object_bits`]).
    BadSize {
        /// Type asked for.
        ty: ObjectType,
        /// Size argument given.
        size_bits: u8,
    },
    /// The count is 0 or above the kernel's retype fan-out limit (256).
    BadCount {
        /// Count given.
        count: u64,
    },
    /// A batch of objects no larger than a chunk would span more than a chunk.
    BatchTooLarge {
        /// Count given.
        count: u64,
        /// Size of each object in bits.
        obj_bits: u8,
    },
    /// The physical range is empty or smaller than the objects.
    BadRange {
        /// Start of the range.
        lo: u64,
        /// End of the range.
        hi: u64,
    },
    /// Device memory covers the range but the type cannot be made from it
    /// (only frames and untypeds can), and no RAM covers it.
    DeviceMemory {
        /// Type asked for.
        ty: ObjectType,
    },
    /// No untyped of an allowed kind has room (alignment and range
    /// included).
    OutOfMemory {
        /// Bytes the objects need.
        bytes: u64,
    },
    /// No CNode has the consecutive free slots needed and the CSpace cannot
    /// grow (all level-1 slots used, or no fresh RAM for a CNode).
    OutOfSlots {
        /// Length of the run that could not be found.
        needed: u64,
    },
    /// The kernel refused an operation; everything done before it was undone.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
    /// An earlier rollback failed; the books may no longer match the kernel.
    Poisoned,
}

/// Why [`CSpace::free`](super::CSpace::free) was refused. Every figure is as it was before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// No live object has this id.
    UnknownObject(ObjectId),
    /// Copies of the object's cap are live: delete or revoke them first.
    HasCopies {
        /// The object.
        id: ObjectId,
        /// Live copies.
        copies: u64,
    },
    /// The kernel refused to revoke or delete the cap.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
    /// An earlier rollback failed.
    Poisoned,
}

/// Why a capability or slot operation was refused. Every figure is as it was
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapError {
    /// The slot holds no cap the manager made (or is not a slot of it).
    NotManaged(Slot),
    /// The destination is not an empty slot handed out by
    /// [`CSpace::alloc_slots`](super::CSpace::alloc_slots).
    NotReserved(Slot),
    /// The slot holds an object's original cap: use [`CSpace::free`](super::CSpace::free).
    IsOriginal(Slot),
    /// Mint of a badge onto a cap that already has one (the kernel would
    /// refuse: `IllegalOperation`).
    AlreadyBadged(Slot),
    /// Mint of a non-zero badge onto a cap that takes none.
    NotBadgeable(Slot),
    /// No free slot for the new cap and the CSpace cannot grow.
    OutOfSlots {
        /// Slots needed.
        needed: u64,
    },
    /// The kernel refused an operation; everything done before it was undone.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
    /// An earlier rollback failed.
    Poisoned,
}

/// Why [`CSpace::delete_many`](super::CSpace::delete_many) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteManyError {
    /// How many of the slots (from the first) were deleted before it
    /// stopped; 0 when the batch was refused with nothing done.
    pub deleted: usize,
    /// Why it stopped.
    pub error: CapError,
}
