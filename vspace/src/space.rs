//! [`AddressSpace`]: one VSpace and its shadow.

use alloc::boxed::Box;
use alloc::vec::Vec;

use hashbrown::HashSet;

use crate::addr::{
    FrameSize, PageRange, PageSize, TableLevel, VirtAddr, PML4_ENTRY_BITS, USER_VADDR_END, USER_VADDR_START,
};
use crate::attr::{CacheAttr, Rights};
use crate::batch::MapBatch;
use crate::error::{CreateError, DestroyError, MapError, ProtectError, ReclaimError, Rollback, UnmapError};
use crate::kernel::{CapRef, KernelFailure, KernelOp, LeafRun, VSpaceKernel};
use crate::shadow::{FrameRec, InvariantViolation, Shadow, TableKey};

/// One mapping of the space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Mapping {
    /// The page's start.
    pub vaddr: VirtAddr,
    /// The page's size.
    pub size: FrameSize,
    /// The frame cap that is mapped there.
    pub frame: CapRef,
    /// The rights it was mapped with.
    pub rights: Rights,
    /// The cache attribute it was mapped with.
    pub attr: CacheAttr,
}

/// One paging structure of the space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TableInfo {
    /// Its level.
    pub level: TableLevel,
    /// The base of the region it covers.
    pub base: VirtAddr,
    /// Its cap.
    pub cap: CapRef,
    /// Entries in use.
    pub used: u16,
}

/// Counts of what the space holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SpaceStats {
    /// Paging structures per level (indexed by [`TableLevel::ordinal`]): PDPTs, PDs, PTs.
    pub tables: [usize; 3],
    /// Mapped frames per size (indexed like [`FrameSize::ALL`]): 4 KiB, 2 MiB, 1 GiB.
    pub frames: [usize; 3],
    /// Empty tables that stay mapped because the kernel refused to unmap them.
    pub pending_reclaim: usize,
}

impl SpaceStats {
    /// Paging structures of every level (the root not counted).
    pub fn total_tables(&self) -> usize {
        self.tables.iter().sum()
    }

    /// Mapped frames of every size.
    pub fn total_frames(&self) -> usize {
        self.frames.iter().sum()
    }
}

/// Everything [`AddressSpace::destroy`] hands back.
#[derive(Clone, PartialEq, Eq, Debug)]
#[must_use = "the frame caps are the caller's to delete or reuse"]
pub struct Teardown {
    /// Every frame cap the space had mapped, with where it was, ascending by address. Each is unmapped.
    pub frames: Vec<(VirtAddr, CapRef)>,
    /// Paging structures freed (the root not counted).
    pub tables_freed: usize,
}

/// One VSpace (a PML4 with an ASID) and the user-level shadow of everything mapped in it.
///
/// Every operation takes the kernel as `&mut K`; a space must always be used with the same kernel. The
/// space never asks the kernel what its shadow knows: it allocates only the tables that are missing, and
/// it refuses overlaps, misuse of caps and out-of-range addresses before any kernel call.
///
/// Dropping a space leaks its kernel objects: call [`AddressSpace::destroy`].
#[derive(Debug)]
pub struct AddressSpace {
    root: CapRef,
    pub(crate) shadow: Shadow,
    policy: TablePolicy,
}

/// What happens to a paging structure that an unmap leaves empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TablePolicy {
    /// Unmap and free it at once (the default): the space holds only tables in use.
    #[default]
    Reclaim,
    /// Keep it mapped, empty and *pending reclaim*: a later map into its region needs no table
    /// operations. [`AddressSpace::reclaim`] or [`AddressSpace::destroy`] frees it. While it stays, it
    /// occupies its parent's entry: a larger page over its region is refused as an overlap.
    Retain,
}

impl AddressSpace {
    /// Allocates a PML4 and assigns it an ASID. On failure nothing stays allocated.
    pub fn create<K: VSpaceKernel + ?Sized>(k: &mut K) -> Result<Self, CreateError> {
        let root = k.alloc_root().map_err(|failure| CreateError {
            op: KernelOp::AllocRoot,
            failure,
        })?;
        if let Err(failure) = k.assign_asid(root) {
            k.free_root(root);
            return Err(CreateError {
                op: KernelOp::AssignAsid,
                failure,
            });
        }
        Ok(Self {
            root,
            shadow: Shadow::default(),
            policy: TablePolicy::Reclaim,
        })
    }

    /// Sets what happens to tables that unmaps leave empty (from now on).
    pub fn set_table_policy(&mut self, policy: TablePolicy) {
        self.policy = policy;
    }

    /// The current [`TablePolicy`].
    pub fn table_policy(&self) -> TablePolicy {
        self.policy
    }

    /// The PML4's cap (to set as a thread's VSpace).
    pub fn root(&self) -> CapRef {
        self.root
    }

    /// The mapping covering `vaddr`, if any.
    pub fn lookup(&self, vaddr: VirtAddr) -> Option<Mapping> {
        self.shadow.lookup(vaddr.as_u64()).map(|(base, f)| mapping(base, f))
    }

    /// Where the frame cap is mapped in this space, if it is.
    pub fn mapping_of(&self, frame: CapRef) -> Option<Mapping> {
        let &base = self.shadow.by_cap.get(&frame)?;
        Some(mapping(base, &self.shadow.frames[&base]))
    }

    /// Every mapping, in no particular order.
    pub fn mappings(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.shadow.frames.iter().map(|(&base, f)| mapping(base, f))
    }

    /// Every paging structure below the root, in no particular order.
    pub fn tables(&self) -> impl Iterator<Item = TableInfo> + '_ {
        TableLevel::ALL.into_iter().flat_map(move |level| {
            self.shadow.tables[level.ordinal()]
                .iter()
                .map(move |(&base, t)| TableInfo {
                    level,
                    base: VirtAddr::new_unchecked(base),
                    cap: t.cap,
                    used: t.used,
                })
        })
    }

    /// Counts of tables and frames.
    pub fn stats(&self) -> SpaceStats {
        let mut s = SpaceStats {
            pending_reclaim: self.shadow.pending.len(),
            ..SpaceStats::default()
        };
        for level in TableLevel::ALL {
            s.tables[level.ordinal()] = self.shadow.tables[level.ordinal()].len();
        }
        for f in self.shadow.frames.values() {
            s.frames[f.size as usize] += 1;
        }
        s
    }

    /// Checks the shadow's invariants (crate documentation, "The shadow"). An error is a bug in this crate.
    pub fn check(&self) -> Result<(), InvariantViolation> {
        self.shadow.check()
    }

    /// Starts a batch of maps, dispatched together by [`MapBatch::commit`].
    pub fn map_batch(&mut self) -> MapBatch<'_> {
        MapBatch::new(self)
    }

    /// Maps `frames[i]` (one cap per page, each mapped nowhere yet) at the `i`-th page of `range`,
    /// allocating and mapping the missing paging structures. All or nothing: see [`MapError`].
    pub fn map<S: PageSize, K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        range: PageRange<S>,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), MapError> {
        let mut batch = self.map_batch();
        batch.add(range, frames, rights, attr)?;
        batch.commit(k)
    }

    /// Unmaps every mapping inside `range` (holes are allowed; a mapping crossing its ends is refused),
    /// then reclaims the tables that became empty. Returns the unmapped frame caps with their addresses,
    /// ascending: each unmap is complete, so the caller may delete or reuse them.
    ///
    /// A table whose unmap the kernel refuses stays, empty, pending reclaim ([`AddressSpace::reclaim`]).
    pub fn unmap<S: PageSize, K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        range: PageRange<S>,
    ) -> Result<Vec<(VirtAddr, CapRef)>, UnmapError> {
        if range.is_empty() {
            return Err(UnmapError::EmptyRange);
        }
        let (start, end) = range.bounds();
        if end > USER_VADDR_END {
            return Err(UnmapError::OutsideUserRange { start, end });
        }
        let pages = self.collect(start, end);
        if let Some((vaddr, size)) = self.first_split(&pages, start, end) {
            return Err(UnmapError::SplitsMapping { vaddr, size });
        }
        let out = self.unmap_pages(k, &pages);
        match self.policy {
            TablePolicy::Reclaim => self.reclaim_pass(k, out.emptied, None),
            // Reclaim nothing: every emptied table is marked pending.
            TablePolicy::Retain => self.reclaim_pass(k, out.emptied, Some(&HashSet::new())),
        };
        match out.failures.first() {
            None => Ok(out.released),
            Some(&(vaddr, failure)) => Err(UnmapError::Kernel {
                vaddr: VirtAddr::new_unchecked(vaddr),
                failure,
                unmapped: out.released,
                still_mapped: out.failures.len(),
            }),
        }
    }

    /// Changes the rights and cache attribute of every mapping inside `range` (holes are allowed; a mapping
    /// crossing its ends is refused) with `Page_Remap`. Pages that already have them are skipped. Returns
    /// the number of pages changed. All or nothing: see [`ProtectError`].
    pub fn protect<S: PageSize, K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        range: PageRange<S>,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<usize, ProtectError> {
        if range.is_empty() {
            return Err(ProtectError::EmptyRange);
        }
        if !rights.is_valid() {
            return Err(ProtectError::WriteWithoutRead);
        }
        let (start, end) = range.bounds();
        if end > USER_VADDR_END {
            return Err(ProtectError::OutsideUserRange { start, end });
        }
        let mut pages = self.collect(start, end);
        if let Some((vaddr, size)) = self.first_split(&pages, start, end) {
            return Err(ProtectError::SplitsMapping { vaddr, size });
        }
        pages.retain(|v| {
            let f = &self.shadow.frames[v];
            (f.rights, f.attr) != (rights, attr)
        });
        let mut changed: Vec<(u64, Rights, CacheAttr)> = Vec::with_capacity(pages.len());
        for (run, s, n) in self.runs_of(&pages) {
            let caps: Vec<CapRef> = pages[s..s + n].iter().map(|v| self.shadow.frames[v].cap).collect();
            let res = k.remap_frames_run(self.root, &run, &caps, rights, attr);
            let done = match res {
                Ok(()) => n,
                Err(e) => e.done,
            };
            for v in &pages[s..s + done] {
                let f = self.shadow.frames.get_mut(v).expect("shadow: frame missing");
                changed.push((*v, f.rights, f.attr));
                f.rights = rights;
                f.attr = attr;
            }
            if let Err(e) = res {
                let rollback = self.undo_protect(k, &changed);
                return Err(ProtectError::Kernel {
                    vaddr: run.vaddr_of(e.done),
                    failure: e.failure,
                    rollback,
                });
            }
        }
        Ok(changed.len())
    }

    /// Retries the reclaim of every empty table whose unmap the kernel refused before. Returns the number
    /// of tables freed.
    pub fn reclaim<K: VSpaceKernel + ?Sized>(&mut self, k: &mut K) -> Result<usize, ReclaimError> {
        let pending: Vec<TableKey> = self.shadow.pending.iter().copied().collect();
        let (freed, failure) = self.reclaim_pass(k, pending, None);
        match failure {
            None => Ok(freed),
            Some(failure) => Err(ReclaimError {
                failure,
                freed,
                pending: self.shadow.pending.len(),
            }),
        }
    }

    /// Unmaps every frame, unmaps and frees every paging structure, then frees the root. Returns every
    /// frame cap (each unmapped: the caller may delete it, which under seL4 5.0 is safe only after the
    /// unmap) and the number of structures freed.
    pub fn destroy<K: VSpaceKernel + ?Sized>(mut self, k: &mut K) -> Result<Teardown, Box<DestroyError>> {
        let mut pages: Vec<u64> = self.shadow.frames.keys().copied().collect();
        pages.sort_unstable();
        let out = self.unmap_pages(k, &pages);
        if let Some(&(_, failure)) = out.failures.first() {
            return Err(Box::new(DestroyError {
                op: KernelOp::UnmapFrame,
                failure,
                released: out.released,
                tables_freed: 0,
                space: self,
            }));
        }
        let all: Vec<TableKey> = TableLevel::ALL
            .into_iter()
            .flat_map(|l| self.shadow.tables[l.ordinal()].keys().map(move |&b| (l, b)))
            .collect();
        let (tables_freed, failure) = self.reclaim_pass(k, all, None);
        if let Some(failure) = failure {
            return Err(Box::new(DestroyError {
                op: KernelOp::UnmapTable,
                failure,
                released: out.released,
                tables_freed,
                space: self,
            }));
        }
        debug_assert!(self.shadow.table_count() == 0 && self.shadow.root_used == 0);
        k.free_root(self.root);
        Ok(Teardown {
            frames: out.released,
            tables_freed,
        })
    }

    /// A copy of the space's record, for tests that run an operation twice (the type is deliberately not
    /// `Clone`: it stands for kernel objects).
    #[cfg(test)]
    pub(crate) fn clone_for_test(&self) -> Self {
        Self {
            root: self.root,
            shadow: self.shadow.clone(),
            policy: self.policy,
        }
    }

    /// Page starts of the mappings that touch `[start, end)`, ascending, walking only the tables present.
    pub(crate) fn collect(&self, start: u64, end: u64) -> Vec<u64> {
        let sh = &self.shadow;
        let mut out = Vec::new();
        let mut v = start;
        while v < end {
            let top = TableLevel::Pdpt.base_of(v);
            if sh.table(TableLevel::Pdpt, top).is_none() {
                v = top + (1 << PML4_ENTRY_BITS);
                continue;
            }
            let huge = FrameSize::Huge.align_down(v);
            if sh.frame_of_size(huge, FrameSize::Huge).is_some() {
                out.push(huge);
                v = huge + FrameSize::Huge.bytes();
                continue;
            }
            if sh.table(TableLevel::Pd, huge).is_none() {
                v = huge + FrameSize::Huge.bytes();
                continue;
            }
            let large = FrameSize::Large.align_down(v);
            if sh.frame_of_size(large, FrameSize::Large).is_some() {
                out.push(large);
                v = large + FrameSize::Large.bytes();
                continue;
            }
            if sh.table(TableLevel::Pt, large).is_none() {
                v = large + FrameSize::Large.bytes();
                continue;
            }
            let small = FrameSize::Small.align_down(v);
            if sh.frame_of_size(small, FrameSize::Small).is_some() {
                out.push(small);
            }
            v = small + FrameSize::Small.bytes();
        }
        out
    }

    /// The first mapping of `pages` that crosses `start` or `end`.
    fn first_split(&self, pages: &[u64], start: u64, end: u64) -> Option<(VirtAddr, FrameSize)> {
        pages.iter().find_map(|&v| {
            let size = self.shadow.frames[&v].size;
            (v < start || v + size.bytes() > end).then_some((VirtAddr::new_unchecked(v), size))
        })
    }

    /// Splits ascending page starts of mappings in the shadow into runs: consecutive entries of one leaf
    /// table, of one size. Returns each run with the index and length of its pages in `pages`.
    pub(crate) fn runs_of(&self, pages: &[u64]) -> Vec<(LeafRun, usize, usize)> {
        self.runs_with(
            pages,
            |v| (self.shadow.frames[&v].size, Rights::empty(), CacheAttr::WriteBack),
            false,
        )
    }

    /// Splits ascending page starts, whose leaf tables are in the shadow, into runs: consecutive entries of
    /// one leaf table, of one size, and if `by_attr` with the same rights and attribute (`info` gives them
    /// per page). Returns each run with the index and length of its pages in `pages`.
    pub(crate) fn runs_with(
        &self,
        pages: &[u64],
        info: impl Fn(u64) -> (FrameSize, Rights, CacheAttr),
        by_attr: bool,
    ) -> Vec<(LeafRun, usize, usize)> {
        let mut runs: Vec<(LeafRun, usize, usize)> = Vec::new();
        let mut prev: Option<(u64, FrameSize, Rights, CacheAttr)> = None;
        for (i, &v) in pages.iter().enumerate() {
            let (size, rights, attr) = info(v);
            let level = size.level();
            let extends = prev.is_some_and(|(pv, ps, pr, pa)| {
                ps == size
                    && pv + size.bytes() == v
                    && level.base_of(pv) == level.base_of(v)
                    && (!by_attr || (pr, pa) == (rights, attr))
            });
            if extends {
                runs.last_mut().expect("run").2 += 1;
            } else {
                let table = self
                    .shadow
                    .table(level, level.base_of(v))
                    .expect("shadow: leaf table missing")
                    .cap;
                let run = LeafRun {
                    level,
                    table,
                    first_index: level.index_of(v),
                    vaddr: VirtAddr::new_unchecked(v),
                    size,
                };
                runs.push((run, i, 1));
            }
            prev = Some((v, size, rights, attr));
        }
        runs
    }

    /// Unmaps the mappings at `pages` (ascending) run by run, going on past refusals, and updates the
    /// shadow with exactly what was unmapped. Does not reclaim.
    pub(crate) fn unmap_pages<K: VSpaceKernel + ?Sized>(&mut self, k: &mut K, pages: &[u64]) -> UnmapOutcome {
        let mut out = UnmapOutcome::default();
        for (run, s, n) in self.runs_of(pages) {
            let caps: Vec<CapRef> = pages[s..s + n].iter().map(|v| self.shadow.frames[v].cap).collect();
            let mut pos = 0;
            while pos < n {
                let sub = LeafRun {
                    first_index: run.first_index + pos as u16,
                    vaddr: run.vaddr_of(pos),
                    ..run
                };
                let (done, failure) = match k.unmap_frames_run(&sub, &caps[pos..]) {
                    Ok(()) => (n - pos, None),
                    Err(e) => (e.done, Some(e.failure)),
                };
                for &v in &pages[s + pos..s + pos + done] {
                    let (rec, emptied) = self.shadow.remove_frame(v);
                    out.released.push((VirtAddr::new_unchecked(v), rec.cap));
                    out.emptied.extend(emptied);
                }
                pos += done;
                if let Some(failure) = failure {
                    out.failures.push((pages[s + pos], failure));
                    pos += 1;
                }
            }
        }
        out
    }

    /// Unmaps and frees the empty tables among `candidates` (and their parents as they become empty),
    /// children first. With `only`, tables outside it are left (a rollback reclaims only what it
    /// allocated). An empty table left, by `only` or by a refused unmap, is marked pending. Returns the
    /// number freed and the first refusal.
    pub(crate) fn reclaim_pass<K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        candidates: impl IntoIterator<Item = TableKey>,
        only: Option<&HashSet<TableKey>>,
    ) -> (usize, Option<KernelFailure>) {
        let mut buckets: [Vec<u64>; 3] = Default::default();
        for (level, base) in candidates {
            buckets[level.ordinal()].push(base);
        }
        let mut freed = 0;
        let mut first_failure = None;
        for level in [TableLevel::Pt, TableLevel::Pd, TableLevel::Pdpt] {
            let mut bases = core::mem::take(&mut buckets[level.ordinal()]);
            bases.sort_unstable();
            bases.dedup();
            for base in bases {
                let Some(&t) = self.shadow.table(level, base) else {
                    continue;
                };
                if t.used != 0 {
                    continue;
                }
                if only.is_some_and(|o| !o.contains(&(level, base))) {
                    self.shadow.pending.insert((level, base));
                    continue;
                }
                match k.unmap_table(level, t.cap) {
                    Ok(()) => {
                        k.free_table(level, t.cap);
                        freed += 1;
                        if let Some((pl, pb)) = self.shadow.remove_table(level, base) {
                            buckets[pl.ordinal()].push(pb);
                        }
                    }
                    Err(failure) => {
                        self.shadow.pending.insert((level, base));
                        first_failure.get_or_insert(failure);
                    }
                }
            }
        }
        (freed, first_failure)
    }

    /// Puts back the old rights and attributes of the pages a failed protect changed, newest first.
    fn undo_protect<K: VSpaceKernel + ?Sized>(&mut self, k: &mut K, changed: &[(u64, Rights, CacheAttr)]) -> Rollback {
        let mut first_failure = None;
        let mut residue = Vec::new();
        for &(v, rights, attr) in changed.iter().rev() {
            let f = self.shadow.frames.get_mut(&v).expect("shadow: frame missing");
            match k.remap_frame(f.cap, self.root, rights, attr) {
                Ok(()) => {
                    f.rights = rights;
                    f.attr = attr;
                }
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                    residue.push((VirtAddr::new_unchecked(v), f.cap));
                }
            }
        }
        match first_failure {
            None => Rollback::Complete,
            Some(failure) => {
                residue.reverse();
                Rollback::Incomplete {
                    failure,
                    residue,
                    tables_kept: 0,
                }
            }
        }
    }
}

/// What [`AddressSpace::unmap_pages`] did.
#[derive(Default)]
pub(crate) struct UnmapOutcome {
    /// Unmapped pages and their caps, ascending.
    pub released: Vec<(VirtAddr, CapRef)>,
    /// Pages the kernel refused to unmap (they stay mapped), ascending.
    pub failures: Vec<(u64, KernelFailure)>,
    /// Leaf tables that became empty.
    pub emptied: Vec<TableKey>,
}

/// Whether `[start, end)` lies in `[USER_VADDR_START, USER_VADDR_END)`.
pub(crate) fn in_user_range(start: u64, end: u64) -> bool {
    start >= USER_VADDR_START && end <= USER_VADDR_END && start < end
}

fn mapping(base: u64, f: &FrameRec) -> Mapping {
    Mapping {
        vaddr: VirtAddr::new_unchecked(base),
        size: f.size,
        frame: f.cap,
        rights: f.rights,
        attr: f.attr,
    }
}
