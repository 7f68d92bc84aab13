//! Runs: consecutive pages of one leaf table whose caps sit in consecutive
//! slots of one CNode, which a kernel with the run invocations (patch 0005)
//! updates in one entry (what a run is, and its thresholds, are defined once,
//! in `mm_types::run`); and the two vspace kernels of the batched clone and
//! destroy, which turn a leaf-table run into `CopyMapRun` / `UnmapRun`
//! invocations.

use alloc::vec::Vec;
use mapping_db::CapSlot;
use mm_types::run::MIN_RUN;
use vspace::{CacheAttr, CapRef, FrameSize, KernelFailure, LeafRun, Rights, RunFailure, TableLevel, VirtAddr};

use crate::kernel::Kernel;
use crate::resources::VsKernel;

const PAGE: u64 = 1 << 12;

/// Does `f(i)` for `i` in `0..n` in order; a failure reports how many were done.
pub(crate) fn each(n: usize, mut f: impl FnMut(usize) -> Result<(), KernelFailure>) -> Result<(), RunFailure> {
    for i in 0..n {
        f(i).map_err(|failure| RunFailure { done: i, failure })?;
    }
    Ok(())
}

/// Splits the `len` entries of a leaf run into pieces, in order: from entry
/// `done`, `piece(s, done)` entries can go in one run invocation; if they are
/// at least [`MIN_RUN`], `run(s, done, k)` does them, otherwise `one(s, done)`
/// does entry `done` alone. A failure reports how many entries were done
/// before it (a run invocation is all or nothing).
pub(crate) fn in_runs<S>(
    s: &mut S,
    len: usize,
    piece: impl Fn(&S, usize) -> usize,
    mut run: impl FnMut(&mut S, usize, usize) -> Result<(), KernelFailure>,
    mut one: impl FnMut(&mut S, usize) -> Result<(), KernelFailure>,
) -> Result<(), RunFailure> {
    let mut done = 0;
    while done < len {
        let k = match piece(s, done) {
            k if k >= MIN_RUN => run(s, done, k).map(|()| k),
            _ => one(s, done).map(|()| 1),
        }
        .map_err(|failure| RunFailure { done, failure })?;
        done += k;
    }
    Ok(())
}

/// The `VSpaceKernel` methods a wrapper kernel passes straight to its
/// `inner` kernel: everything but the frame maps and unmaps it specialises.
macro_rules! delegate_to_inner {
    () => {
        fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
            self.inner.alloc_root()
        }
        fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure> {
            self.inner.assign_asid(root)
        }
        fn free_root(&mut self, root: CapRef) {
            self.inner.free_root(root)
        }
        fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure> {
            self.inner.alloc_table(level)
        }
        fn free_table(&mut self, level: TableLevel, table: CapRef) {
            self.inner.free_table(level, table)
        }
        fn map_table(
            &mut self,
            level: TableLevel,
            table: CapRef,
            root: CapRef,
            vaddr: VirtAddr,
        ) -> Result<(), KernelFailure> {
            self.inner.map_table(level, table, root, vaddr)
        }
        fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure> {
            self.inner.unmap_table(level, table)
        }
        fn remap_frame(
            &mut self,
            frame: CapRef,
            root: CapRef,
            rights: Rights,
            attr: CacheAttr,
        ) -> Result<(), KernelFailure> {
            self.inner.remap_frame(frame, root, rights, attr)
        }
        fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
            self.inner.unmap_frame(frame)
        }
    };
}

/// The vspace kernel for a clone into a slot run: the "frames" vspace maps
/// are the destination slots of the copies, still empty; on a kernel with
/// the run invocations a leaf-table run is copied and mapped in one
/// `X86PageTable_CopyMapRun` when its sources are consecutive slots of one
/// CNode, otherwise (and on a stock kernel) page by page (`CNode_Copy`,
/// then `X86Page_Map`). Everything else goes to the manager's kernel.
pub(crate) struct CopyMapKernel<'a, 'b, K: Kernel> {
    pub(crate) inner: VsKernel<'a, K>,
    /// The destination slots are the consecutive cptrs from `dest_base`.
    pub(crate) dest_base: u64,
    /// The source cap of each destination, in order.
    pub(crate) srcs: &'b [CapSlot],
    /// The copies made, as (first destination index, count): each a run of
    /// consecutive source slots of one CNode, or one copy, in order.
    pub(crate) runs: &'b mut Vec<(usize, usize)>,
    /// Which destinations hold a copy already (a bit per destination).
    pub(crate) copied: &'b mut Vec<u64>,
    /// The copies' cap rights.
    pub(crate) rights: Rights,
    /// The first destination's path, once looked up.
    pub(crate) dest_path0: Option<cspace::CapPath>,
    /// The last source looked up: (cptr, path).
    pub(crate) last_src: Option<(u64, cspace::CapPath)>,
    /// The CSpace's level-2 radix (cptrs sharing the bits above it are in one CNode).
    pub(crate) l2_bits: u8,
}

impl<K: Kernel> CopyMapKernel<'_, '_, K> {
    fn offset(&self, dest: CapRef) -> usize {
        (dest.0 - self.dest_base) as usize
    }

    fn copy_one(&mut self, i: usize) -> Result<(), KernelFailure> {
        let d = self.dest_path(i)?;
        let s = self.src_path(i)?;
        let rights = self.rights;
        self.inner.k().cnode_copy(d, s, rights)?;
        self.made(i, 1);
        Ok(())
    }

    /// The path of destination `i`: the destinations are consecutive slots
    /// of one CNode, whose paths differ only in the index (the cptr).
    fn dest_path(&mut self, i: usize) -> Result<cspace::CapPath, KernelFailure> {
        let first = match self.dest_path0 {
            Some(p) => p,
            None => *self.dest_path0.insert(self.inner.path_of(self.dest_base)?),
        };
        Ok(cspace::CapPath {
            index: first.index + i as u64,
            ..first
        })
    }

    /// The path of source `i`: the previous source's with the next index
    /// when the cptrs follow one another in one CNode (per-page copies of a
    /// stretch of consecutive caps look their CNode up once).
    fn src_path(&mut self, i: usize) -> Result<cspace::CapPath, KernelFailure> {
        let c = self.srcs[i].0;
        if let Some((prev, p)) = self.last_src {
            if prev + 1 == c && prev >> self.l2_bits == c >> self.l2_bits {
                let q = cspace::CapPath {
                    index: p.index + 1,
                    ..p
                };
                self.last_src = Some((c, q));
                return Ok(q);
            }
        }
        let p = self.inner.path_of(c)?;
        self.last_src = Some((c, p));
        Ok(p)
    }

    /// Notes the copies of destinations `i..i + n`.
    fn made(&mut self, i: usize, n: usize) {
        self.runs.push((i, n));
        // The bits i..i + n, a word at a time.
        let (mut j, end) = (i, i + n);
        while j < end {
            let (w, b) = (j / 64, j % 64);
            let take = (64 - b).min(end - j);
            self.copied[w] |= (u64::MAX >> (64 - take)) << b;
            j += take;
        }
    }

    /// `X86PageTable_CopyMapRun` of the `n` destinations from `i` (their
    /// sources consecutive slots of one CNode) into `run`'s entries.
    fn copy_map_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        i: usize,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        let s = self.inner.path_of(self.srcs[i].0)?;
        let d = self.inner.path_of(self.dest_base + i as u64)?;
        let copy_rights = self.rights;
        self.inner
            .k()
            .copy_map_run(run.table, root, run.first_index, n, rights, attr, s, d, copy_rights)
            .map_err(|r| r.error)?;
        self.made(i, n);
        Ok(())
    }
}

impl<K: Kernel> vspace::VSpaceKernel for CopyMapKernel<'_, '_, K> {
    delegate_to_inner!();

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        let i = self.offset(frame);
        if self.copied[i / 64] & (1 << (i % 64)) == 0 {
            self.copy_one(i)?;
        }
        self.inner.map_frame(frame, root, vaddr, size, rights, attr)
    }

    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        let i = self.offset(frames[0]);
        if run.level != TableLevel::Pt || !self.inner.cs.kernel().has_runs() {
            return each(frames.len(), |k| {
                self.map_frame(frames[k], root, run.vaddr_of(k), run.size, rights, attr)
            });
        }
        // Each piece whose sources are consecutive slots of one CNode in one
        // entry; the rest per page. The destinations are consecutive slots
        // of one CNode by construction (one `alloc_slots` run).
        let len = frames.len();
        in_runs(
            self,
            len,
            |k, d| k.inner.run_prefix_by(&k.srcs[i + d..i + len], |s| s.0),
            |k, d, n| k.copy_map_run(root, &run.tail(d), i + d, n, rights, attr),
            |k, d| k.map_frame(frames[d], root, run.vaddr_of(d), run.size, rights, attr),
        )
    }

    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        self.inner.unmap_frames_run(run, frames)
    }
}

/// The vspace kernel for a batched destroy: a leaf-table run whose caps are
/// all copies in consecutive slots of one CNode is unmapped, and the copies
/// deleted, in one `X86PageTable_UnmapRun`; other runs go to the manager's
/// kernel (per page, or UnmapRun without deletion).
pub(crate) struct UnmapDeleteKernel<'a, 'b, K: Kernel> {
    pub(crate) inner: VsKernel<'a, K>,
    /// The region's first page: page i is at `base + i * PAGE`.
    pub(crate) base: u64,
    /// Page i's cap, and whether it is a copy (not the frame's original),
    /// which the kernel may delete with its unmap.
    pub(crate) caps: &'b [(CapSlot, bool)],
    /// The runs of pages whose caps the kernel deleted: (first page, count).
    pub(crate) deleted: &'b mut Vec<(usize, usize)>,
}

impl<K: Kernel> vspace::VSpaceKernel for UnmapDeleteKernel<'_, '_, K> {
    delegate_to_inner!();

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.inner.map_frame(frame, root, vaddr, size, rights, attr)
    }

    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        if run.level != TableLevel::Pt {
            return self.inner.unmap_frames_run(run, frames);
        }
        let first = ((run.vaddr_of(0).as_u64() - self.base) / PAGE) as usize;
        let caps = &self.caps[first..first + frames.len()];
        // Pieces of copies in consecutive slots of one CNode: unmapped and
        // deleted in one entry; pieces of originals: unmapped in one entry.
        in_runs(
            self,
            frames.len(),
            |k, d| {
                let same = caps[d..].iter().take_while(|c| c.1 == caps[d].1).count();
                k.inner.run_prefix_by(&frames[d..d + same], |c| c.0)
            },
            |k, d, n| {
                let path = k.inner.path_of(frames[d].0)?;
                let sub = run.tail(d);
                k.inner
                    .k()
                    .unmap_run(sub.table, sub.first_index, n, path, caps[d].1)
                    .map_err(|r| r.error)?;
                if caps[d].1 {
                    k.deleted.push((first + d, n));
                }
                Ok(())
            },
            |k, d| k.inner.unmap_frame(frames[d]),
        )
    }
}
