//! Vocabulary shared by the bookkeeping and the kernel trait: object types and
//! their sizes, rights, capability data and the kernel's error names.
//!
//! The capability pointer, the rights and the kernel's errors are the ones
//! every crate of the manager shares (`mm-types`): [`CPtr`], [`Rights`]
//! (cap operations honour read, write and grant: `seL4_CapRights_t` of
//! seL4 5.0) and [`KernelError`].

use mm_types::TableLevel;
pub use mm_types::{CPtr, KernelError, Rights};

/// Bits in a machine word (`seL4_WordBits` on x86_64).
pub const WORD_BITS: u8 = 64;

/// Size of one capability slot, in bits (`seL4_SlotBits`: 32 bytes).
pub const SLOT_BITS: u8 = 5;

/// Smallest untyped the kernel creates (`seL4_MinUntypedBits`).
pub const MIN_UNTYPED_BITS: u8 = 4;

/// Largest untyped the kernel accepts (`seL4_MaxUntypedBits` on x86_64).
pub const MAX_UNTYPED_BITS: u8 = 47;

/// Most objects one `Untyped_Retype` may create (`CONFIG_RETYPE_FAN_OUT_LIMIT`
/// of the project's kernel configurations).
pub const RETYPE_FAN_OUT_LIMIT: u64 = 256;

/// The kinds of kernel object this crate allocates.
///
/// These are the crate's own names; the seL4-facing implementation of
/// [`KernelOps`](crate::KernelOps) translates them to the kernel build's
/// object type numbers (which depend on the configuration and are never
/// written down here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// `seL4_UntypedObject`; size chosen by the caller (4..=47 bits).
    Untyped,
    /// `seL4_TCBObject` (2^11 bytes on x86_64).
    Tcb,
    /// `seL4_EndpointObject` (2^4 bytes).
    Endpoint,
    /// `seL4_NotificationObject` (2^5 bytes).
    Notification,
    /// `seL4_CapTableObject`; the size argument is the radix (2^radix slots,
    /// 2^(radix + 5) bytes).
    CNode,
    /// `seL4_X86_4K` frame.
    Frame4K,
    /// `seL4_X86_LargePageObject` (2 MiB).
    Frame2M,
    /// `seL4_X64_HugePageObject` (1 GiB; needs a kernel with `HUGE_PAGE`).
    Frame1G,
    /// `seL4_X86_PageTableObject`.
    PageTable,
    /// `seL4_X86_PageDirectoryObject`.
    PageDirectory,
    /// `seL4_X86_PDPTObject`.
    Pdpt,
    /// `seL4_X64_PML4Object`.
    Pml4,
}

impl ObjectType {
    /// Every type, in declaration order (index = [`ObjectType::index`]).
    pub const ALL: [ObjectType; 12] = [
        ObjectType::Untyped,
        ObjectType::Tcb,
        ObjectType::Endpoint,
        ObjectType::Notification,
        ObjectType::CNode,
        ObjectType::Frame4K,
        ObjectType::Frame2M,
        ObjectType::Frame1G,
        ObjectType::PageTable,
        ObjectType::PageDirectory,
        ObjectType::Pdpt,
        ObjectType::Pml4,
    ];

    /// Position in [`ObjectType::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The fixed object size in bits, or `None` for the two sized types
    /// (`Untyped`, `CNode`).
    pub const fn fixed_bits(self) -> Option<u8> {
        match self {
            ObjectType::Untyped | ObjectType::CNode => None,
            ObjectType::Tcb => Some(11),
            ObjectType::Endpoint => Some(4),
            ObjectType::Notification => Some(5),
            ObjectType::Frame4K => Some(12),
            ObjectType::Frame2M => Some(21),
            ObjectType::Frame1G => Some(30),
            ObjectType::PageTable | ObjectType::PageDirectory | ObjectType::Pdpt | ObjectType::Pml4 => Some(12),
        }
    }

    /// Size in bits of one object made with the retype size argument
    /// `size_bits`, or `None` if the argument is not valid for the type.
    ///
    /// - `Untyped`: `size_bits` itself, 4..=47.
    /// - `CNode`: `size_bits` is the radix (>= 1); the object is
    ///   `size_bits + 5` bits and must be at most 47.
    /// - every other type: `size_bits` must be 0 or the fixed size.
    pub const fn object_bits(self, size_bits: u8) -> Option<u8> {
        match self {
            ObjectType::Untyped => {
                if size_bits >= MIN_UNTYPED_BITS && size_bits <= MAX_UNTYPED_BITS {
                    Some(size_bits)
                } else {
                    None
                }
            }
            ObjectType::CNode => {
                if size_bits >= 1 && size_bits + SLOT_BITS <= MAX_UNTYPED_BITS {
                    Some(size_bits + SLOT_BITS)
                } else {
                    None
                }
            }
            _ => match self.fixed_bits() {
                Some(b) if size_bits == 0 || size_bits == b => Some(b),
                _ => None,
            },
        }
    }

    /// The retype size argument the kernel expects for an object of
    /// `object_bits` (radix for CNodes, the size for untypeds, 0 otherwise).
    pub const fn retype_size_arg(self, object_bits: u8) -> u8 {
        match self {
            ObjectType::Untyped => object_bits,
            ObjectType::CNode => object_bits - SLOT_BITS,
            _ => 0,
        }
    }

    /// Whether the type is a frame (the only objects, with untypeds, that
    /// the kernel makes from device untypeds).
    pub const fn is_frame(self) -> bool {
        matches!(self, ObjectType::Frame4K | ObjectType::Frame2M | ObjectType::Frame1G)
    }

    /// Whether the kernel allows making this type from device memory.
    pub const fn device_ok(self) -> bool {
        self.is_frame() || matches!(self, ObjectType::Untyped)
    }

    /// The type of a paging structure of `level` below the PML4.
    pub const fn table(level: TableLevel) -> ObjectType {
        match level {
            TableLevel::Pdpt => ObjectType::Pdpt,
            TableLevel::Pd => ObjectType::PageDirectory,
            TableLevel::Pt => ObjectType::PageTable,
        }
    }

    /// Whether Mint with a badge changes caps of this type (endpoints and
    /// notifications).
    pub const fn badgeable(self) -> bool {
        matches!(self, ObjectType::Endpoint | ObjectType::Notification)
    }
}

/// The data word of `CNode_Mint` (`seL4_CapData_t`): a badge for endpoint
/// and notification caps, a guard for CNode caps; ignored for other caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapData {
    /// A badge (`seL4_CapData_Badge_new`).
    Badge(u64),
    /// A guard of `size` bits with value `value` (`seL4_CapData_Guard_new`).
    Guard {
        /// The guard's value.
        value: u64,
        /// The guard's size in bits.
        size: u8,
    },
}

/// Aligns `x` up to a multiple of `2^bits`; `None` on overflow.
pub(crate) const fn align_up(x: u64, bits: u8) -> Option<u64> {
    if bits >= 64 {
        return if x == 0 { Some(0) } else { None };
    }
    let m = (1u64 << bits) - 1;
    match x.checked_add(m) {
        Some(v) => Some(v & !m),
        None => None,
    }
}

/// `2^bits` as u64 (bits < 64).
pub(crate) const fn pow2(bits: u8) -> u64 {
    1u64 << bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_bits_checks_sizes() {
        assert_eq!(ObjectType::Frame4K.object_bits(0), Some(12));
        assert_eq!(ObjectType::Frame4K.object_bits(12), Some(12));
        assert_eq!(ObjectType::Frame4K.object_bits(13), None);
        assert_eq!(ObjectType::Tcb.object_bits(0), Some(11));
        assert_eq!(ObjectType::Endpoint.object_bits(0), Some(4));
        assert_eq!(ObjectType::Notification.object_bits(0), Some(5));
        assert_eq!(ObjectType::Frame2M.object_bits(0), Some(21));
        assert_eq!(ObjectType::Frame1G.object_bits(0), Some(30));
        assert_eq!(ObjectType::CNode.object_bits(12), Some(17));
        assert_eq!(ObjectType::CNode.object_bits(0), None);
        assert_eq!(ObjectType::CNode.object_bits(43), None);
        assert_eq!(ObjectType::CNode.object_bits(42), Some(47));
        assert_eq!(ObjectType::Untyped.object_bits(3), None);
        assert_eq!(ObjectType::Untyped.object_bits(4), Some(4));
        assert_eq!(ObjectType::Untyped.object_bits(47), Some(47));
        assert_eq!(ObjectType::Untyped.object_bits(48), None);
        assert_eq!(ObjectType::CNode.retype_size_arg(17), 12);
        assert_eq!(ObjectType::Untyped.retype_size_arg(20), 20);
        assert_eq!(ObjectType::Tcb.retype_size_arg(11), 0);
        for (i, t) in ObjectType::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }

    #[test]
    fn align_up_works() {
        assert_eq!(align_up(0, 12), Some(0));
        assert_eq!(align_up(1, 12), Some(4096));
        assert_eq!(align_up(4096, 12), Some(4096));
        assert_eq!(align_up(u64::MAX, 12), None);
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(5, 64), None);
    }

    #[test]
    fn device_rules() {
        assert!(ObjectType::Frame4K.device_ok());
        assert!(ObjectType::Untyped.device_ok());
        assert!(!ObjectType::Tcb.device_ok());
        assert!(ObjectType::Endpoint.badgeable());
        assert!(!ObjectType::Frame4K.badgeable());
    }
}
