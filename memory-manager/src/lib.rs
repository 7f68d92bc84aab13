//! The seL4 memory manager as a library that knows nothing of seL4.
//!
//! # Architecture: how a request flows
//! ```text
//!  caller (root task, a pager, a test)
//!     |  Mm::clone_region(&mut Manager<K>, from, to, n, rights)
//!     v
//!  Mm ── plan ──────> mapping-db (source caps, rights), vspace shadow (destination free)
//!     |                cspace (slots for the copies)            [books: validate, plan]
//!     ├─ execute ───> vspace::AddressSpace::map / unmap through VsKernel / CopyMapKernel
//!     |                 └─> Kernel (this crate's one trait) ─> seL4 (root task) or the model (tests)
//!     └─ commit ────> cspace.adopt_* (what the kernel did), mapping-db records
//!        or undo  ──> delete what was made; what cannot be undone is booked and named (error::Left)
//! ```
//! The books (cspace, vspace's shadow, mapping-db) decide: they validate,
//! plan and record. [`Mm`] executes: it is the one place that makes kernel
//! calls on their behalf, through [`Kernel`]. The root task implements
//! [`Kernel`] with its `sel4` bindings; [`model`] (feature `model`)
//! implements it with the host model of seL4 5.0 in `cspace::mock`, with a
//! failure switch, and the host tests drive the manager against it.
//!
//! # Guarantees
//! - A refusal (bad region, unknown space, occupied destination, rights
//!   beyond the source's) is typed and changes nothing.
//! - A kernel failure midway is undone (clone, map: all or nothing); a
//!   destroy or revoke completes page by page. What could not be undone is
//!   named in the error's [`error::Left`] and booked.
//! - After every operation the books equal the kernel: [`Mm::check`] audits
//!   the books and the invariants between them (on the real kernel too).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod error;
pub mod kernel;
mod mm;
#[cfg(any(test, feature = "model"))]
pub mod model;
mod resources;
pub mod runs;

pub use error::{
    CloneError, Corruption, DestroyError, DestroySpaceError, FreeError, Left, MapError, MoveError, RevokeError,
};
pub use kernel::{Kernel, Phase, RunRefusal};
pub use mm::{At, Mm};
pub use resources::{Manager, VsKernel};
