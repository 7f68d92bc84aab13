//! The vocabulary the memory manager's crates share (`cspace`, `vspace`, `mapping-db`, `memory-manager`),
//! defined once: seL4-free, `no_std`, plain values.
//!
//! - [`CPtr`]: a capability pointer (one type for a slot, a cap handle, a cap to map);
//! - [`KernelError`]: the error an invocation returned, by seL4's names;
//! - [`Rights`]: access rights, of a capability and of a mapping (which bits each use honours is
//!   documented on the type);
//! - [`FrameSize`], [`TableLevel`]: the x86_64 page sizes and the levels of the paging tree;
//! - [`VirtAddr`] and the user range ([`USER_VADDR_START`], [`USER_VADDR_END`]);
//! - [`run`]: what a run of pages is (consecutive slots, a leaf-table run, stretches of consecutive
//!   originals) and the thresholds that decide when one is worth handling as a run.
//!
//! The crates re-export these under the names their call sites use (`vspace::CapRef`,
//! `mapping_db::CapSlot`, `vspace::KernelFailure`, `mapping_db::PageSize`, ...): one type behind each
//! name, so no conversion is needed between the crates. The seL4-facing layer (the root task's
//! `backend.rs`) is the only place that converts, to and from the `sel4` crate's types.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cptr;
mod error;
mod paging;
mod rights;
pub mod run;

pub use cptr::CPtr;
pub use error::KernelError;
pub use paging::{
    FrameSize, TableLevel, VirtAddr, VirtAddrNotUser, ENTRIES_PER_TABLE, USER_VADDR_END, USER_VADDR_START,
};
pub use rights::Rights;
