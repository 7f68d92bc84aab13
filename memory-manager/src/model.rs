//! The host model of seL4 5.0 (`cspace::mock::MockKernel`: CNodes and the
//! derivation tree, untyped watermarks, the x86_64 paging structures, and
//! the run invocations of patch 0005) as a [`Kernel`], for host tests of the
//! manager.
//!
//! The model's failure switch (`MockKernel::fail_in`: "the k-th invocation
//! from now fails with error E, with no effect") counts every invocation
//! of this trait, cspace's and the paging ones alike.

use cspace::mock::MockKernel;
use cspace::{CPtr, CapData, CapPath, KernelError, KernelOps, ObjectType, RetypeDest};
use vspace::{CacheAttr, FrameSize, Rights, TableLevel};

use crate::kernel::{Kernel, RunRefusal};

/// The model, and whether it offers the run invocations (a `-batched`
/// kernel) or not (a stock one).
#[derive(Debug, Clone)]
pub struct Model {
    /// The kernel state.
    pub k: MockKernel,
    /// Whether the run invocations are offered.
    pub runs: bool,
}

fn run(r: Result<(), (KernelError, Option<u64>)>) -> Result<(), RunRefusal> {
    r.map_err(|(error, entry)| RunRefusal { error, entry })
}

impl KernelOps for Model {
    fn untyped_retype(
        &mut self,
        untyped: CPtr,
        ty: ObjectType,
        size_bits: u8,
        d: RetypeDest,
    ) -> Result<(), KernelError> {
        self.k.untyped_retype(untyped, ty, size_bits, d)
    }
    fn cnode_copy(&mut self, dest: CapPath, src: CapPath, rights: Rights) -> Result<(), KernelError> {
        self.k.cnode_copy(dest, src, rights)
    }
    fn cnode_mint(&mut self, dest: CapPath, src: CapPath, rights: Rights, data: CapData) -> Result<(), KernelError> {
        self.k.cnode_mint(dest, src, rights, data)
    }
    fn cnode_move(&mut self, dest: CapPath, src: CapPath) -> Result<(), KernelError> {
        self.k.cnode_move(dest, src)
    }
    fn cnode_delete(&mut self, slot: CapPath) -> Result<(), KernelError> {
        self.k.cnode_delete(slot)
    }
    fn cnode_revoke(&mut self, slot: CapPath) -> Result<(), KernelError> {
        self.k.cnode_revoke(slot)
    }
    fn set_cspace_root(&mut self, cnode: CPtr, guard_bits: u8) -> Result<(), KernelError> {
        self.k.set_cspace_root(cnode, guard_bits)
    }
}

impl Kernel for Model {
    fn asid_assign(&mut self, vroot: CPtr) -> Result<(), KernelError> {
        self.k.asid_pool_assign(vroot)
    }
    fn table_map(&mut self, l: TableLevel, table: CPtr, vroot: CPtr, vaddr: u64) -> Result<(), KernelError> {
        self.k.table_map(l, table, vroot, vaddr)
    }
    fn table_unmap(&mut self, l: TableLevel, table: CPtr) -> Result<(), KernelError> {
        self.k.table_unmap(l, table)
    }
    fn page_map(
        &mut self,
        frame: CPtr,
        vroot: CPtr,
        vaddr: u64,
        _size: FrameSize,
        rights: Rights,
        _attr: CacheAttr,
    ) -> Result<(), KernelError> {
        self.k.page_map(frame, vroot, vaddr, rights)
    }
    fn page_remap(&mut self, frame: CPtr, vroot: CPtr, rights: Rights, _attr: CacheAttr) -> Result<(), KernelError> {
        self.k.page_remap(frame, vroot, rights)
    }
    fn page_unmap(&mut self, frame: CPtr) -> Result<(), KernelError> {
        self.k.page_unmap(frame)
    }
    fn has_runs(&self) -> bool {
        self.runs
    }
    fn map_run(
        &mut self,
        table: CPtr,
        vroot: CPtr,
        first: u16,
        n: usize,
        rights: Rights,
        _attr: CacheAttr,
        src: CapPath,
    ) -> Result<(), RunRefusal> {
        run(self.k.map_run(table, vroot, first as u64, n as u64, rights, src))
    }
    fn copy_map_run(
        &mut self,
        table: CPtr,
        vroot: CPtr,
        first: u16,
        n: usize,
        rights: Rights,
        _attr: CacheAttr,
        src: CapPath,
        dest: CapPath,
        copy_rights: Rights,
    ) -> Result<(), RunRefusal> {
        run(self
            .k
            .copy_map_run(table, vroot, first as u64, n as u64, rights, src, dest, copy_rights))
    }
    fn unmap_run(&mut self, table: CPtr, first: u16, n: usize, caps: CapPath, delete: bool) -> Result<(), RunRefusal> {
        run(self.k.unmap_run(table, first as u64, n as u64, caps, delete))
    }
}
