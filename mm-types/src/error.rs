//! The kernel's errors.

use core::fmt;

/// The error an invocation returned, by seL4's names (`seL4_Error` less `seL4_NoError`). Plain: the
/// seL4-facing layer converts from its numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KernelError {
    /// `seL4_InvalidArgument`
    InvalidArgument,
    /// `seL4_InvalidCapability`
    InvalidCapability,
    /// `seL4_IllegalOperation`
    IllegalOperation,
    /// `seL4_RangeError`
    RangeError,
    /// `seL4_AlignmentError`
    AlignmentError,
    /// `seL4_FailedLookup`
    FailedLookup,
    /// `seL4_TruncatedMessage`
    TruncatedMessage,
    /// `seL4_DeleteFirst`
    DeleteFirst,
    /// `seL4_RevokeFirst`
    RevokeFirst,
    /// `seL4_NotEnoughMemory`
    NotEnoughMemory,
}

impl KernelError {
    /// Every error, in seL4's order.
    pub const ALL: [KernelError; 10] = [
        KernelError::InvalidArgument,
        KernelError::InvalidCapability,
        KernelError::IllegalOperation,
        KernelError::RangeError,
        KernelError::AlignmentError,
        KernelError::FailedLookup,
        KernelError::TruncatedMessage,
        KernelError::DeleteFirst,
        KernelError::RevokeFirst,
        KernelError::NotEnoughMemory,
    ];
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seL4_{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_sel4s_name() {
        extern crate alloc;
        use alloc::format;
        assert_eq!(format!("{}", KernelError::DeleteFirst), "seL4_DeleteFirst");
        assert_eq!(KernelError::ALL.len(), 10);
    }
}
