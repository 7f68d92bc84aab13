//! The capability pointer.

use core::fmt;

/// A capability pointer: an address resolved through the thread's CSpace root at depth 64 (`seL4_CPtr`).
///
/// One type for every use: a slot of the root task's CSpace (cspace's `CPtr`, the mapping database's
/// `CapSlot`), and an opaque capability handle handed to the kernel layer (vspace's `CapRef`: a frame,
/// table or root cap). The seL4-facing layer converts it to the `sel4` crate's own pointer.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CPtr(pub u64);

impl fmt::Debug for CPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPtr({:#x})", self.0)
    }
}
