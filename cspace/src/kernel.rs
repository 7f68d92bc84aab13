//! The narrow interface to the kernel: one method per seL4 invocation, with
//! the invocation's own arguments (already resolved to pointers and paths
//! by [`Layout`](crate::Layout)), so the seL4-facing implementation is a
//! direct call each.

use crate::layout::{CapPath, RetypeDest};
use crate::types::{CPtr, CapData, KernelError, ObjectType, Rights};

/// The kernel operations the bookkeeping needs.
///
/// Every method either succeeds or fails with no effect (seL4 checks every
/// argument before acting). The implementation for the real kernel
/// translates [`ObjectType`] to the kernel build's type numbers and
/// [`KernelError`] from `seL4_Error`.
pub trait KernelOps {
    /// `seL4_Untyped_Retype(untyped, type, size_bits, dest.root,
    /// dest.node_index, dest.node_depth, dest.offset, dest.count)`.
    ///
    /// `size_bits` is the kernel's size argument (radix for CNodes, size for
    /// untypeds, 0 for fixed-size objects; see
    /// [`ObjectType::retype_size_arg`]).
    fn untyped_retype(
        &mut self,
        untyped: CPtr,
        ty: ObjectType,
        size_bits: u8,
        dest: RetypeDest,
    ) -> Result<(), KernelError>;

    /// `seL4_CNode_Copy(dest.root, dest.index, dest.depth, src.root,
    /// src.index, src.depth, rights)`.
    fn cnode_copy(&mut self, dest: CapPath, src: CapPath, rights: Rights) -> Result<(), KernelError>;

    /// `seL4_CNode_Mint(dest..., src..., rights, data)`.
    fn cnode_mint(&mut self, dest: CapPath, src: CapPath, rights: Rights, data: CapData) -> Result<(), KernelError>;

    /// `seL4_CNode_Move(dest..., src...)`.
    fn cnode_move(&mut self, dest: CapPath, src: CapPath) -> Result<(), KernelError>;

    /// `seL4_CNode_Delete(slot.root, slot.index, slot.depth)`.
    fn cnode_delete(&mut self, slot: CapPath) -> Result<(), KernelError>;

    /// `seL4_CNode_Revoke(slot.root, slot.index, slot.depth)`.
    fn cnode_revoke(&mut self, slot: CapPath) -> Result<(), KernelError>;

    /// `seL4_TCB_SetSpace` on the root task's own TCB: CSpace root = the
    /// CNode cap at `cnode` with guard value 0 of `guard_bits` bits
    /// (`cspace_root_data`); fault endpoint and VSpace unchanged
    /// (`seL4_CapNull`/`seL4_CapInitThreadVSpace`, data 0).
    fn set_cspace_root(&mut self, cnode: CPtr, guard_bits: u8) -> Result<(), KernelError>;
}

/// Which kernel operation failed (for error reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelOp {
    /// [`KernelOps::untyped_retype`]
    Retype,
    /// [`KernelOps::cnode_copy`]
    Copy,
    /// [`KernelOps::cnode_mint`]
    Mint,
    /// [`KernelOps::cnode_move`]
    Move,
    /// [`KernelOps::cnode_delete`]
    Delete,
    /// [`KernelOps::cnode_revoke`]
    Revoke,
    /// [`KernelOps::set_cspace_root`]
    SetCSpaceRoot,
}
