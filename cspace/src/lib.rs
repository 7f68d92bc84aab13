//! CSpace and untyped-memory bookkeeping for the root task (seL4 5.0.0,
//! x86_64), seL4-free and tested on the host.
//!
//! The kernel is reached only through [`KernelOps`], one method per
//! invocation with the invocation's own arguments; the root task implements
//! it with its `sel4` bindings. `mock::MockKernel` (tests, or the `mock`
//! feature) models the kernel for host tests.
//!
//! # Parts
//! - [`Layout`]: the two-level CSpace and the pure pointer/path math.
//! - [`SlotAllocator`]: free slots of the level-2 CNodes (single slots and
//!   runs within one CNode).
//! - [`UntypedAllocator`]: the untyped forest, its watermarks and the
//!   placement policy (plans only).
//! - [`CSpace`]: drives the kernel, grows the CSpace, allocates and frees
//!   objects, copies/mints/moves/deletes/revokes caps (copies and deletes
//!   also in batches: [`CSpace::copy_many`], [`CSpace::delete_many`]), and
//!   keeps the figures ([`Stats`]) exact. A refused request returns a typed
//!   error and leaves every figure as it was: when a kernel call fails
//!   midway, what was done before it is undone (see *Rollback* below).
//!
//! # Addressing (see [`layout`])
//! ```text
//! TCB CSpace root = L1 cap, guard 0 of 64 - L1 - L2 bits (44 with L1 = 8, L2 = 12)
//! L1 slot 0 = boot CNode, minted with guard 0 of L2 - R bits (0 with R = L2 = 12)
//! L1 slot k = level-2 CNode k (radix L2, guard 0), k = 1 .. 2^L1 - 1
//! cptr(slot j of level-2 CNode k) = (k << L2) | j      (k = 0: boot CNode)
//! ```
//! Boot-CNode pointers keep their meaning. [`CSpace::new`] sets this up:
//! `Untyped_Retype` of the L1 CNode into a boot-CNode slot, `CNode_Mint` of
//! `seL4_CapInitThreadCNode` into L1 slot 0 with guard size `L2 - R`, then
//! `TCB_SetSpace` of the root task's TCB with the L1 cap and guard size
//! `64 - L1 - L2`.
//!
//! # Untyped policy
//! - **Kinds.** RAM serves every request; device untypeds serve only
//!   requests with a physical range ([`Placement::Range`]), and only frames
//!   and untypeds (the kernel refuses other objects from device memory).
//! - **Chunks.** Objects of at most `2^chunk_bits` bytes (default 2 MiB) are
//!   made only from untypeds of at most that size: small boot untypeds, or
//!   pieces of big ones. A big fresh untyped is split (retype untyped ->
//!   untyped into `2^split_bits` equal children, by default halves,
//!   buddy-style; one retype per child so that each needs a single free slot,
//!   not a run) down to chunks; larger objects come from a piece split to
//!   their own size, so big free pieces survive beside chunks in use.
//! - **Best fit.** First an untyped that needs no split: the smallest, then
//!   the one left with the least room after the object (so partly used
//!   chunks fill up before fresh ones are touched); the object goes at the
//!   watermark aligned up to its size. Otherwise the smallest fresh untyped
//!   that can be split to a piece starting where the object must go.
//! - **Physical ranges.** The physical address of an object is the untyped's
//!   address plus its aligned watermark. For `[lo, hi)` the allocator takes an
//!   untyped whose next object lands inside, or splits a fresh untyped
//!   covering the range down (children containing the target, at most
//!   `2^split_bits` per step) until a piece starts at the target; the other
//!   pieces stay free for later requests.
//! - **Reclaim.** Per untyped the books count live objects. In seL4 5.0 an
//!   untyped whose children are all deleted is reset by the kernel at its
//!   next retype (`untyped.c`: `ensureNoChildren` -> free index 0), so when
//!   the last object of a chunk is freed the chunk's bytes are free again at
//!   once. When every piece of a split untyped is empty, the split is undone
//!   with `CNode_Revoke` on the parent (deleting the piece caps), up the tree,
//!   so freeing everything returns the books to their start. Objects with
//!   live copies cannot be freed (delete or revoke the copies first); untyped
//!   objects handed out are revoked before deletion.
//!
//! # Growth
//! When fewer than a small reserve of free slots would remain, or no CNode
//! has the run a request needs, the manager makes a new level-2 CNode
//! (`2^(L2 + 5)` bytes) into the next L1 slot, from a fresh RAM piece of
//! exactly that size (split off if needed, so the permanent CNode pins no
//! chunk). The reserve covers the splits growth itself may need.
//!
//! # Rollback
//! Every kernel call either succeeds or has no effect. A request's kernel
//! calls are ordered so that all but the last make caps from untypeds that
//! had no children before the request (splits of fresh untypeds, a new CNode
//! from a fresh piece); deleting those caps therefore resets the untypeds to
//! exactly their previous state. If a rollback delete itself keeps failing,
//! the manager is poisoned and refuses further work. The batches follow the
//! same rule: [`CSpace::copy_many`] deletes the copies it made before a
//! refused one; [`CSpace::delete_many`] cannot undo deletions, so a kernel
//! refusal stops it and reports how many slots it had deleted.
//!
//! # Copy runs
//! Copies that a kernel extension makes a run at a time
//! ([`CSpace::adopt_copies_run`] of originals: a region's frame caps) are
//! booked as one run record each, and deleted a run at a time
//! ([`CSpace::adopt_deletes_run`]), so that both cost `O(1)` per run plus a
//! bit per page. Any other operation on a copy in a run, or that moves or
//! revokes its source, first turns the run into per-cap records (once, at
//! the per-cap price); queries see runs as the caps they hold. See *Copy
//! runs* in [`CSpace`]; [`CSpace::set_copy_runs`] turns them off.
//!
//! # Not covered
//! Caps derived or deleted behind the manager's back are not seen. Level-2
//! CNodes are never given back. The ASID pool, IRQ and I/O caps are outside
//! the books.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(any(test, feature = "mock"))]
pub mod audit;
mod captable;
mod copyruns;
pub mod cspace;
pub mod kernel;
pub mod layout;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
mod reserved;
pub mod slots;
pub mod types;
pub mod untyped;

#[cfg(test)]
mod tests;

pub use cspace::{
    AllocError, Allocation, CSpace, CapError, Config, DeleteManyError, FreeError, InitError, ObjectId, Placement, Stats,
};
pub use kernel::{KernelOp, KernelOps};
pub use layout::{CNodeRef, CapPath, Layout, LayoutError, RetypeDest, Slot, SlotRange};
pub use slots::{SlotAllocator, SlotError};
pub use types::{CPtr, CapData, KernelError, ObjectType, Rights};
pub use untyped::{BootUntyped, MemStats, Node, NodeId, NodeState, UntypedAllocator};
