//! The narrow interface to the kernel: every paging invocation the crate needs, and nothing else.

use crate::addr::{FrameSize, TableLevel, VirtAddr};
use crate::attr::{CacheAttr, Rights};

/// An opaque capability handle (for the seL4 layer, a CPtr into the root task's CSpace): the capability
/// pointer every crate of the manager shares.
pub use mm_types::CPtr as CapRef;

/// The error an invocation returned, by seL4's names (`seL4_Error` less `seL4_NoError`): the kernel error
/// every crate of the manager shares. Plain: the seL4 layer converts from its numbers.
pub use mm_types::KernelError as KernelFailure;

/// Which kernel operation failed (for error reports).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KernelOp {
    /// [`VSpaceKernel::alloc_root`]
    AllocRoot,
    /// [`VSpaceKernel::assign_asid`]
    AssignAsid,
    /// [`VSpaceKernel::alloc_table`]
    AllocTable,
    /// [`VSpaceKernel::map_table`]
    MapTable,
    /// [`VSpaceKernel::unmap_table`]
    UnmapTable,
    /// [`VSpaceKernel::map_frame`] (or a run of them)
    MapFrame,
    /// [`VSpaceKernel::remap_frame`] (or a run of them)
    RemapFrame,
    /// [`VSpaceKernel::unmap_frame`] (or a run of them)
    UnmapFrame,
}

/// Consecutive entries of one leaf table that one operation changes: the unit of batching (what a run of
/// pages is, and its thresholds, are defined once, in `mm_types::run`).
///
/// Entry `first_index + i` maps the page at `vaddr + i * size`; the frames of a run are given alongside.
pub use mm_types::run::LeafRun;

/// A run stopped: exactly its first `done` frames were processed, the others were not touched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RunFailure {
    /// How many leading frames of the run were processed.
    pub done: usize,
    /// Why the next one failed.
    pub failure: KernelFailure,
}

/// The kernel operations of one VSpace, as seL4 5.0 on x86_64 offers them. Each required method is one
/// invocation (named in its doc); the `*_run` methods have per-page default implementations that a kernel
/// extension mapping a whole leaf-table run in one call can override.
///
/// Implementations report the kernel's answer as is; they never retry, and they do not check what the
/// shadow already checks. An [`AddressSpace`](crate::AddressSpace) must always be used with the same
/// kernel.
pub trait VSpaceKernel {
    /// Allocates a PML4 object (retype from untyped) and returns its cap.
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure>;

    /// `seL4_X86_ASIDPool_Assign(pool, root)`: gives the root an ASID, making it a usable VSpace.
    fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure>;

    /// Deletes the root's cap and returns its memory (and ASID). Called only once nothing the crate
    /// mapped remains in it.
    fn free_root(&mut self, root: CapRef);

    /// Allocates a paging structure of `level` (retype from untyped) and returns its cap.
    fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure>;

    /// Deletes an unmapped table's cap and returns its memory (or keeps the object for reuse: the kernel
    /// clears a table when it is unmapped, so an unmapped table is empty).
    fn free_table(&mut self, level: TableLevel, table: CapRef);

    /// `seL4_X86_PDPT_Map` / `seL4_X86_PageDirectory_Map` / `seL4_X86_PageTable_Map(table, root, vaddr,
    /// attr)`: installs the table in the entry of its parent covering `vaddr` (the base of the region the
    /// table will cover).
    fn map_table(
        &mut self,
        level: TableLevel,
        table: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
    ) -> Result<(), KernelFailure>;

    /// `seL4_X86_PDPT_Unmap` / `seL4_X86_PageDirectory_Unmap` / `seL4_X86_PageTable_Unmap(table)`:
    /// clears the parent's entry and the table itself.
    fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure>;

    /// `seL4_X86_Page_Map(frame, root, vaddr, rights, attr)`: `size` is the frame's size (the kernel knows
    /// it from the cap; an implementation may check it).
    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure>;

    /// `seL4_X86_Page_Remap(frame, root, rights, attr)`: changes the rights and attributes of the frame
    /// cap's existing mapping in `root`.
    fn remap_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure>;

    /// `seL4_X86_Page_Unmap(frame)`: removes the frame cap's mapping, if any.
    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure>;

    /// Maps `frames[i]` at `run.vaddr_of(i)` in consecutive entries of the leaf table `run.table`.
    ///
    /// Contract: on `Err(f)`, exactly `frames[..f.done]` are mapped and the others are untouched.
    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        for (i, &frame) in frames.iter().enumerate() {
            self.map_frame(frame, root, run.vaddr_of(i), run.size, rights, attr)
                .map_err(|failure| RunFailure { done: i, failure })?;
        }
        Ok(())
    }

    /// Changes the rights and attributes of `frames[i]`'s mapping at `run.vaddr_of(i)`.
    ///
    /// Contract: on `Err(f)`, exactly `frames[..f.done]` were changed and the others are untouched.
    fn remap_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        let _ = run;
        for (i, &frame) in frames.iter().enumerate() {
            self.remap_frame(frame, root, rights, attr)
                .map_err(|failure| RunFailure { done: i, failure })?;
        }
        Ok(())
    }

    /// Unmaps `frames[i]`, mapped at `run.vaddr_of(i)`.
    ///
    /// Contract: on `Err(f)`, exactly `frames[..f.done]` are unmapped and the others are untouched.
    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        let _ = run;
        for (i, &frame) in frames.iter().enumerate() {
            self.unmap_frame(frame)
                .map_err(|failure| RunFailure { done: i, failure })?;
        }
        Ok(())
    }
}
