//! The resources the manager draws on: cspace's CSpace (slots, untyped
//! memory, cap operations) on a [`Kernel`], and the paging-structure objects
//! the vspace crate asks for, with [`VsKernel`], the vspace crate's view of
//! the kernel.

use alloc::vec::Vec;
use cspace::{AllocError, Allocation, CPtr, CSpace, CapPath, Config, InitError, ObjectId, ObjectType, Slot};
use hashbrown::HashMap;
use vspace::{CacheAttr, CapRef, FrameSize, KernelFailure, LeafRun, Rights, RunFailure, TableLevel, VirtAddr};

use crate::kernel::Kernel;
use crate::runs;

/// The CSpace and the record of which paging-structure cap is which object.
/// (`Clone` with a cloneable kernel: for host tests that fork a model.)
#[derive(Clone)]
pub struct Manager<K: Kernel> {
    /// Slots, untyped memory, cap operations. Objects the manager's books
    /// hold (frames of [`Mm`](crate::Mm), paging structures) must not be
    /// freed through it.
    pub cs: CSpace<K>,
    tables: HashMap<u64, ObjectId>,
    /// Paging structures whose free the kernel refused: still live in the
    /// books (visible in the figures), listed here.
    unfreed: Vec<(ObjectId, cspace::FreeError)>,
}

impl<K: Kernel> Manager<K> {
    /// Takes over the CSpace and untypeds `config` describes (see
    /// [`CSpace::new`]).
    pub fn new(kernel: K, config: Config) -> Result<Self, InitError> {
        let cs = CSpace::new(kernel, config).map_err(|(e, _)| e)?;
        Ok(Self {
            cs,
            tables: HashMap::new(),
            unfreed: Vec::new(),
        })
    }

    /// The vspace crate's view of the kernel.
    pub fn vk(&mut self) -> VsKernel<'_, K> {
        VsKernel {
            cs: &mut self.cs,
            objects: &mut self.tables,
            unfreed: &mut self.unfreed,
        }
    }

    /// The kernel.
    pub fn kernel(&self) -> &K {
        self.cs.kernel()
    }

    /// The kernel, mutably (for invocations outside the manager's books).
    pub fn kernel_mut(&mut self) -> &mut K {
        self.cs.kernel_mut()
    }

    /// A new object.
    pub fn alloc(&mut self, ty: ObjectType) -> Result<Allocation, AllocError> {
        self.cs.alloc(ty, 0)
    }

    /// The cptr of a managed slot.
    pub fn cptr(&self, slot: Slot) -> u64 {
        self.cs.cptr(slot).0
    }

    /// Paging structures the vspace crate gave back whose free the kernel
    /// refused (they stay live in the figures).
    pub fn unfreed_tables(&self) -> &[(ObjectId, cspace::FreeError)] {
        &self.unfreed
    }

    /// Retries what failures left for later: frees the paging structures
    /// whose free the kernel refused, and merges idle untyped pieces
    /// ([`CSpace::reclaim_idle`]). Returns how many structures were freed
    /// and splits undone; a refusal stops it (what is left stays listed).
    pub fn reclaim(&mut self) -> Result<(usize, u64), cspace::KernelError> {
        let mut freed = 0;
        while let Some(&(id, _)) = self.unfreed.last() {
            match self.cs.free(id) {
                Ok(()) => {
                    self.unfreed.pop();
                    freed += 1;
                }
                Err(cspace::FreeError::Kernel { error, .. }) => return Err(error),
                Err(e) => {
                    // Not the kernel's refusal: a books error, kept listed.
                    let n = self.unfreed.len();
                    self.unfreed[n - 1].1 = e;
                    break;
                }
            }
        }
        let merged = self.cs.reclaim_idle()?;
        Ok((freed, merged))
    }
}

/// The vspace crate's kernel operations: paging-structure objects come from
/// (and go back to) the CSpace; maps and unmaps are one [`Kernel`]
/// invocation each, or a run invocation per run where the kernel has them.
pub struct VsKernel<'a, K: Kernel> {
    /// Where tables and roots come from.
    pub(crate) cs: &'a mut CSpace<K>,
    /// Which CSpace object each table/root cap is.
    objects: &'a mut HashMap<u64, ObjectId>,
    unfreed: &'a mut Vec<(ObjectId, cspace::FreeError)>,
}

impl<K: Kernel> VsKernel<'_, K> {
    fn alloc(&mut self, ty: ObjectType) -> Result<CapRef, KernelFailure> {
        let a = self.cs.alloc(ty, 0).map_err(|_| KernelFailure::NotEnoughMemory)?;
        self.objects.insert(a.cptr.0, a.id);
        Ok(a.cptr)
    }

    fn free(&mut self, c: CapRef) {
        if let Some(id) = self.objects.remove(&c.0) {
            if let Err(e) = self.cs.free(id) {
                // The object stays live in the books: listed, not hidden.
                self.unfreed.push((id, e));
            }
        }
    }

    /// The kernel.
    pub(crate) fn k(&mut self) -> &mut K {
        self.cs.kernel_mut()
    }

    /// The CNode path of the cap `cptr` names (a managed slot).
    pub(crate) fn path_of(&self, cptr: u64) -> Result<CapPath, KernelFailure> {
        let slot = self.cs.layout().slot_of(CPtr(cptr));
        slot.map(|s| self.cs.path(s)).ok_or(KernelFailure::InvalidCapability)
    }

    /// How many of `xs` from the first are consecutive slots of one CNode
    /// (a run invocation takes its caps from one CNode).
    #[inline]
    pub(crate) fn run_prefix_by<T>(&self, xs: &[T], cptr: impl Fn(&T) -> u64) -> usize {
        let Some(first) = xs.first().map(&cptr) else { return 0 };
        let l = self.cs.layout();
        let Some(a) = l.slot_of(CPtr(first)) else { return 0 };
        // Consecutive cptrs stay in one CNode up to its last slot.
        let room = l.capacity(a.cnode).saturating_sub(a.index) as usize;
        let xs = &xs[..xs.len().min(room.max(1))];
        mm_types::run::consecutive_prefix(xs, cptr)
    }

    /// `X86PageTable_MapRun` of the `n` entries of `run` from its first,
    /// with the caps of the slots from `src`.
    pub(crate) fn map_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
        src: CapPath,
    ) -> Result<(), KernelFailure> {
        self.k()
            .map_run(run.table, root, run.first_index, n, rights, attr, src)
            .map_err(|r| r.error)
    }
}

impl<K: Kernel> vspace::VSpaceKernel for VsKernel<'_, K> {
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
        self.alloc(ObjectType::Pml4)
    }

    fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure> {
        self.k().asid_assign(root)
    }

    fn free_root(&mut self, root: CapRef) {
        self.free(root)
    }

    fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure> {
        self.alloc(ObjectType::table(level))
    }

    fn free_table(&mut self, _level: TableLevel, table: CapRef) {
        self.free(table)
    }

    fn map_table(
        &mut self,
        level: TableLevel,
        table: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
    ) -> Result<(), KernelFailure> {
        self.k().table_map(level, table, root, vaddr.as_u64())
    }

    fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure> {
        self.k().table_unmap(level, table)
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.k().page_map(frame, root, vaddr.as_u64(), size, rights, attr)
    }

    fn remap_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.k().page_remap(frame, root, rights, attr)
    }

    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
        self.k().page_unmap(frame)
    }

    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        if run.level != TableLevel::Pt || !self.cs.kernel().has_runs() {
            return runs::each(frames.len(), |i| {
                self.map_frame(frames[i], root, run.vaddr_of(i), run.size, rights, attr)
            });
        }
        // Each piece of caps in consecutive slots of one CNode in one entry
        // (all or nothing: on a refusal no entry of it was written).
        runs::in_runs(
            self,
            frames.len(),
            |k, d| k.run_prefix_by(&frames[d..], |c| c.0),
            |k, d, n| {
                let src = k.path_of(frames[d].0)?;
                k.map_run(root, &run.tail(d), n, rights, attr, src)
            },
            |k, d| k.map_frame(frames[d], root, run.vaddr_of(d), run.size, rights, attr),
        )
    }

    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        if run.level != TableLevel::Pt || !self.cs.kernel().has_runs() {
            return runs::each(frames.len(), |i| self.unmap_frame(frames[i]));
        }
        runs::in_runs(
            self,
            frames.len(),
            |k, d| k.run_prefix_by(&frames[d..], |c| c.0),
            |k, d, n| {
                let caps = k.path_of(frames[d].0)?;
                let sub = run.tail(d);
                k.k()
                    .unmap_run(sub.table, sub.first_index, n, caps, false)
                    .map_err(|r| r.error)
            },
            |k, d| k.unmap_frame(frames[d]),
        )
    }
}
