//! The one kernel boundary: every invocation the manager makes.
//!
//! [`Kernel`] extends cspace's [`KernelOps`] (retype, CNode copy, mint, move,
//! delete, revoke, the root task's CSpace root) with the paging invocations
//! (ASID assignment, paging-structure map and unmap, page map, remap and
//! unmap) and the run invocations of kernel patch 0005, where the kernel has
//! them. The root task implements it with its `sel4` bindings, one
//! invocation per method; host tests implement it with the model of seL4 5.0
//! ([`crate::model`]). Nothing else in the manager reaches the kernel.
//!
//! Errors are [`KernelError`] (seL4's error codes), the one kernel error
//! every crate of the manager shares (`mm-types`; vspace names it
//! `KernelFailure`): the adapters that hand the invocations to the vspace
//! crate pass it on as it is. Rights are the shared [`Rights`]: a map honours
//! read and write, a copy read, write and grant.

use cspace::{CPtr, CapPath, KernelError, KernelOps};
use vspace::{CacheAttr, FrameSize, Rights, TableLevel};

/// The phases of one manager operation, for the benchmark's breakdown of
/// where its instructions go (see [`Kernel::lap`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Finding the source pages' records in the mapping database (and, for
    /// clone, checking the requested rights against them).
    Lookup,
    /// Checking that the destination pages are free (the space's shadow).
    CheckFree,
    /// Slots for the copies and the source slots' paths.
    Slots,
    /// The vspace crate's shadow update and the kernel invocations it makes.
    VSpace,
    /// Of [`VSpace`](Self::VSpace): the kernel invocations alone (timed by
    /// the kernel implementation, around each invocation).
    Kernel,
    /// Telling cspace what the kernel did (copies made, caps deleted).
    CSpace,
    /// The mapping database's records.
    Database,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 7] = [
        Phase::Lookup,
        Phase::CheckFree,
        Phase::Slots,
        Phase::VSpace,
        Phase::Kernel,
        Phase::CSpace,
        Phase::Database,
    ];

    /// The name in benchmark records.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Lookup => "lookup",
            Phase::CheckFree => "check_free",
            Phase::Slots => "slots",
            Phase::VSpace => "vspace",
            Phase::Kernel => "kernel",
            Phase::CSpace => "cspace",
            Phase::Database => "database",
        }
    }
}

/// A refused run invocation: the kernel's error and, where the kernel names
/// one, the entry of the run it concerns (index in the run). A run
/// invocation is all or nothing: on a refusal no entry changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RunRefusal {
    /// The kernel's answer.
    pub error: KernelError,
    /// The entry (0 = the run's first) the refusal concerns, if the kernel said.
    pub entry: Option<u64>,
}

impl From<KernelError> for RunRefusal {
    fn from(error: KernelError) -> Self {
        RunRefusal { error, entry: None }
    }
}

/// Every kernel invocation the memory manager makes (see the [module](self) doc).
///
/// Each method is one invocation with the kernel's own arguments and either
/// succeeds or changes nothing. Frame and table caps are named by their
/// cptr in the root task's CSpace; paths (`CapPath`) are CNode-invocation
/// paths as cspace computes them.
pub trait Kernel: KernelOps {
    /// `X86ASIDPool_Assign(asid_pool, vroot)`: gives the new PML4 at `vroot` an ASID.
    fn asid_assign(&mut self, vroot: CPtr) -> Result<(), KernelError>;

    /// `X86PDPT_Map` / `X86PageDirectory_Map` / `X86PageTable_Map` of the
    /// table at `table` into the address space of `vroot` at `vaddr`.
    fn table_map(&mut self, level: TableLevel, table: CPtr, vroot: CPtr, vaddr: u64) -> Result<(), KernelError>;

    /// The matching `*_Unmap` of the table at `table`.
    fn table_unmap(&mut self, level: TableLevel, table: CPtr) -> Result<(), KernelError>;

    /// `X86Page_Map(frame, vroot, vaddr, rights, attr)`.
    fn page_map(
        &mut self,
        frame: CPtr,
        vroot: CPtr,
        vaddr: u64,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelError>;

    /// `X86Page_Remap(frame, vroot, rights, attr)`: new rights for the cap's mapping.
    fn page_remap(&mut self, frame: CPtr, vroot: CPtr, rights: Rights, attr: CacheAttr) -> Result<(), KernelError>;

    /// `X86Page_Unmap(frame)` (an unmapped cap: success, nothing done).
    fn page_unmap(&mut self, frame: CPtr) -> Result<(), KernelError>;

    /// Whether the run invocations below are available (kernel patch 0005,
    /// found at start-up). Without them the manager never calls them.
    fn has_runs(&self) -> bool {
        false
    }

    /// `X86PageTable_MapRun`: maps the 4 KiB frame caps of the `n`
    /// consecutive slots from `src` at entries `first..first + n` of `table`.
    #[allow(clippy::too_many_arguments)]
    fn map_run(
        &mut self,
        table: CPtr,
        vroot: CPtr,
        first: u16,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
        src: CapPath,
    ) -> Result<(), RunRefusal> {
        let _ = (table, vroot, first, n, rights, attr, src);
        Err(KernelError::IllegalOperation.into())
    }

    /// `X86PageTable_CopyMapRun`: copies (with `copy_rights`) the frame caps
    /// of the `n` slots from `src` into the `n` empty slots from `dest`, and
    /// maps the copies at entries `first..first + n` of `table`.
    #[allow(clippy::too_many_arguments)]
    fn copy_map_run(
        &mut self,
        table: CPtr,
        vroot: CPtr,
        first: u16,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
        src: CapPath,
        dest: CapPath,
        copy_rights: Rights,
    ) -> Result<(), RunRefusal> {
        let _ = (table, vroot, first, n, rights, attr, src, dest, copy_rights);
        Err(KernelError::IllegalOperation.into())
    }

    /// `X86PageTable_UnmapRun`: unmaps entries `first..first + n` of `table`
    /// through the frame caps of the `n` slots from `caps` that map them,
    /// and with `delete` deletes those caps.
    fn unmap_run(&mut self, table: CPtr, first: u16, n: usize, caps: CapPath, delete: bool) -> Result<(), RunRefusal> {
        let _ = (table, first, n, caps, delete);
        Err(KernelError::IllegalOperation.into())
    }

    /// Starts timing a manager operation (benchmark phases; default: off).
    #[inline(always)]
    fn start_op(&mut self) {}

    /// Charges the time since the last lap (or [`start_op`](Self::start_op))
    /// to `phase` (default: off).
    #[inline(always)]
    fn lap(&mut self, phase: Phase) {
        let _ = phase;
    }
}
