//! [`AddressSpace`]: one VSpace and its shadow.

use alloc::boxed::Box;
use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use hashbrown::HashSet;

use crate::addr::{FrameSize, PageRange, PageSize, TableLevel, VirtAddr, USER_VADDR_END, USER_VADDR_START};
use crate::attr::{CacheAttr, Rights};
use crate::batch::{self, CapIndex, MapBatch, Seg};
use crate::error::{CreateError, DestroyError, MapError, ProtectError, ReclaimError, Rollback, UnmapError};
use crate::kernel::{CapRef, KernelFailure, KernelOp, LeafRun, VSpaceKernel};
use crate::shadow::{frame_size_of, FrameRec, InvariantViolation, Meta, RunPos, Shadow, TableKey};

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
/// Dropping a space leaks its kernel objects: call [`AddressSpace::destroy`]. A clone is a second
/// shadow of the same kernel objects: it is for host tests that fork a space together with a model of
/// the kernel; used with the real kernel, the two would diverge.
#[derive(Debug, Clone)]
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
        self.shadow.lookup(vaddr.as_u64()).map(|(base, f)| mapping(base, &f))
    }

    /// The cap of the paging structure of `level` covering `vaddr`, if the
    /// space has one (`None` where a larger page or nothing covers it).
    pub fn table_at(&self, level: TableLevel, vaddr: VirtAddr) -> Option<CapRef> {
        let slot = self.shadow.find_or_hinted(level, vaddr.as_u64())?;
        Some(self.shadow.at(slot).cap)
    }

    /// The first page of `range` that a mapping (of any size) covers, if
    /// one does: one walk per leaf table the range touches, not one per page.
    pub fn first_mapped<S: PageSize>(&self, range: PageRange<S>) -> Option<VirtAddr> {
        let (start, end) = (range.start().start_address(), range.end().start_address());
        let pt = TableLevel::Pt;
        let mut va = start;
        while va < end {
            let base = pt.base_of(va);
            let next = (base + (1 << pt.span_bits())).min(end);
            match self.shadow.find_or_hinted(pt, va) {
                Some(slot) => {
                    let t = self.shadow.at(slot);
                    let lo = pt.index_of(va) as usize;
                    let hi = lo + ((next - va) >> pt.entry_bits()) as usize;
                    if let Some(i) = t.frames.next_one(lo, hi) {
                        return Some(VirtAddr::new_unchecked(t.vaddr_of(i)));
                    }
                }
                None => {
                    if self.shadow.lookup(va).is_some() {
                        return Some(VirtAddr::new_unchecked(va));
                    }
                }
            }
            va = next;
        }
        None
    }

    /// Where the frame cap is mapped in this space, if it is.
    pub fn mapping_of(&self, frame: CapRef) -> Option<Mapping> {
        let base = self.shadow.by_cap.get(frame)?;
        let (v, f) = self.shadow.lookup(base).expect("shadow: indexed cap not mapped");
        debug_assert_eq!(v, base);
        Some(mapping(v, &f))
    }

    /// Every mapping, in no particular order.
    pub fn mappings(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.shadow.frames().map(|(base, f)| mapping(base, &f))
    }

    /// Every paging structure below the root, in no particular order.
    pub fn tables(&self) -> impl Iterator<Item = TableInfo> + '_ {
        self.shadow.tables().map(|t| TableInfo {
            level: t.level,
            base: VirtAddr::new_unchecked(t.base),
            cap: t.cap,
            used: t.used,
        })
    }

    /// Counts of tables and frames.
    pub fn stats(&self) -> SpaceStats {
        let mut s = SpaceStats {
            pending_reclaim: self.shadow.pending_count(),
            frames: self.shadow.frame_count,
            ..SpaceStats::default()
        };
        for level in TableLevel::ALL {
            s.tables[level.ordinal()] = self.shadow.level_count(level);
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
        self.map_impl(k, range, frames, rights, attr, true)
    }

    /// [`Self::map`]; with `fast`, a range inside one leaf table the space has takes
    /// [`batch::map_in_table`] (same refusals, kernel calls and shadow as the general path, which the tests
    /// check by running both).
    #[inline]
    pub(crate) fn map_impl<S: PageSize, K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        range: PageRange<S>,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
        fast: bool,
    ) -> Result<(), MapError> {
        let (start, end) = range.bounds();
        let leaf = S::LEVEL;
        // The checks `plan` makes before the overlap, passed (a failure is left to `plan`, which reports it
        // in its order), and the range inside one leaf table.
        if fast
            && !frames.is_empty()
            && range.len() == frames.len() as u64
            && rights.is_valid()
            && in_user_range(start, end)
            && leaf.base_of(start) == leaf.base_of(end - 1)
        {
            if let Some(slot) = self.shadow.find_hinted(leaf, leaf.base_of(start)) {
                return batch::map_in_table::<S, K>(self, k, slot, start, frames, rights, attr);
            }
        }
        // A batch of one range, without the batch's copies: its caps go straight to the cap index.
        let mut new_tables = Vec::new();
        batch::plan(self, None, CapIndex::Space, range, frames, rights, &mut new_tables)?;
        let seg = Seg {
            start: range.start().start_address(),
            pages: frames.len(),
            size: S::FRAME,
            rights,
            attr,
            off: 0,
        };
        batch::commit_range::<S, K>(self, k, &seg, frames, &new_tables)
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
        self.unmap_impl(k, range, true, true).map(|(list, _)| list)
    }

    /// [`Self::unmap`], returning only how many mappings it unmapped: the same kernel calls, shadow
    /// update, reclaim and errors (a refusal's [`UnmapError::Kernel`] lists what was unmapped before it,
    /// as `unmap`'s does), without building the list on success, for a caller that knows the caps already
    /// (a memory manager's own books).
    pub fn unmap_count<S: PageSize, K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        range: PageRange<S>,
    ) -> Result<usize, UnmapError> {
        self.unmap_impl(k, range, true, false).map(|(_, n)| n)
    }

    /// [`Self::unmap`]; with `fast`, a range inside one leaf table the space has, with no child table in
    /// its entries, is unmapped from that table's entries directly (same kernel calls, shadow and result as
    /// the general path, which the tests check by running both). Gives the unmapped pages (with `list`;
    /// empty otherwise) and their number.
    #[inline]
    pub(crate) fn unmap_impl<S: PageSize, K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        range: PageRange<S>,
        fast: bool,
        list: bool,
    ) -> Result<(Vec<(VirtAddr, CapRef)>, usize), UnmapError> {
        if range.is_empty() {
            return Err(UnmapError::EmptyRange);
        }
        let (start, end) = range.bounds();
        if end > USER_VADDR_END {
            return Err(UnmapError::OutsideUserRange { start, end });
        }
        let leaf = S::LEVEL;
        let base = leaf.base_of(start);
        if fast && base == leaf.base_of(end - 1) {
            // A present leaf table's ancestors hold it: no larger mapping covers its region, so none
            // crosses the range's ends. With no child table in the range, its pages are the table's
            // frames there.
            if let Some(slot) = self.shadow.find_hinted(leaf, base) {
                let lo = leaf.index_of(start) as usize;
                let hi = lo + range.len() as usize;
                if self.shadow.at(slot).children.next_one(lo, hi).is_none() {
                    return self.unmap_in_table(k, slot, leaf, base, lo, hi, list);
                }
            }
        }
        if let Some((vaddr, size)) = self.first_split(start, end, S::FRAME) {
            return Err(UnmapError::SplitsMapping { vaddr, size });
        }
        let expect = range.len().min(self.shadow.frames_total() as u64) as usize;
        let mut out = UnmapOutcome::new(list, expect);
        let mut emptied = Candidates::new();
        let mut on_empty = match self.policy {
            TablePolicy::Reclaim => OnEmpty::Collect(&mut emptied),
            // Reclaim nothing: every emptied table is marked pending.
            TablePolicy::Retain => OnEmpty::MarkPending,
        };
        let mut v = start;
        while v < end {
            let Some((r, slot)) = self.shadow.next_run(v, end, None) else {
                break;
            };
            v = r.vaddr_of(r.count);
            self.shadow.remember(r.level, r.base, slot);
            self.unmap_run(k, r, slot, &mut out, &mut on_empty);
        }
        self.finish_unmap(k, out, emptied)
    }

    /// The unmap of entries `[lo, hi)` of the leaf table of `level` at `base` (slab slot `slot`), none of
    /// which holds a child table: its runs of frames, as the general path finds them.
    #[allow(clippy::too_many_arguments)]
    fn unmap_in_table<K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        slot: usize,
        level: TableLevel,
        base: u64,
        lo: usize,
        hi: usize,
        list: bool,
    ) -> Result<(Vec<(VirtAddr, CapRef)>, usize), UnmapError> {
        if hi - lo == 1 {
            return self.unmap_one(k, slot, level, base, lo, list);
        }
        let Some(mut first) = self.shadow.at(slot).frames.next_one(lo, hi) else {
            return Ok((Vec::new(), 0));
        };
        let mut out = UnmapOutcome::new(list, hi - first);
        let mut emptied = Candidates::new();
        let mut on_empty = match self.policy {
            TablePolicy::Reclaim => OnEmpty::Collect(&mut emptied),
            TablePolicy::Retain => OnEmpty::MarkPending,
        };
        loop {
            let frames = &self.shadow.at(slot).frames;
            let stop = frames.next_zero(first, hi);
            let r = RunPos {
                level,
                base,
                first,
                count: stop - first,
            };
            self.unmap_run(k, r, slot, &mut out, &mut on_empty);
            match self.shadow.at(slot).frames.next_one(stop, hi) {
                Some(next) => first = next,
                None => break,
            }
        }
        self.finish_unmap(k, out, emptied)
    }

    /// [`Self::unmap_in_table`] of entry `i` alone: the same kernel call, shadow update, reclaim and
    /// result, without the run bookkeeping.
    #[inline(always)]
    fn unmap_one<K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        slot: usize,
        level: TableLevel,
        base: u64,
        i: usize,
        list: bool,
    ) -> Result<(Vec<(VirtAddr, CapRef)>, usize), UnmapError> {
        let (t, by_cap, frame_count) = self.shadow.split_mut(slot);
        if !t.frames.get(i) {
            return Ok((Vec::new(), 0));
        }
        let cap = t.slots.caps[i];
        let size = frame_size_of(level);
        let vaddr = VirtAddr::new_unchecked(base + ((i as u64) << level.entry_bits()));
        let run = LeafRun {
            level,
            table: t.cap,
            first_index: i as u16,
            vaddr,
            size,
        };
        let caps = core::slice::from_ref(&cap);
        if let Err(e) = k.unmap_frames_run(&run, caps) {
            // A run of one fails before its only page: nothing changed.
            debug_assert_eq!(e.done, 0);
            return Err(UnmapError::Kernel {
                vaddr,
                failure: e.failure,
                unmapped: Vec::new(),
                still_mapped: 1,
            });
        }
        by_cap.remove_run(caps);
        t.frames.clear(i);
        t.used -= 1;
        frame_count[size as usize] -= 1;
        if t.used == 0 {
            match self.policy {
                TablePolicy::Retain => t.pending = true,
                TablePolicy::Reclaim => self.reclaim_one(k, level, base),
            }
        }
        Ok((if list { alloc::vec![(vaddr, cap)] } else { Vec::new() }, 1))
    }

    /// Reclaims the table of `level` at `base` an unmap emptied (and its parents as they become empty).
    #[inline(never)]
    fn reclaim_one<K: VSpaceKernel + ?Sized>(&mut self, k: &mut K, level: TableLevel, base: u64) {
        let mut emptied = Candidates::new();
        emptied.push(candidate((level, base)));
        self.reclaim_pass(k, emptied, None);
    }

    /// The end of an unmap: reclaims the tables it emptied (`emptied`, under [`TablePolicy::Reclaim`]),
    /// and reports.
    fn finish_unmap<K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        mut out: UnmapOutcome,
        emptied: Candidates,
    ) -> Result<(Vec<(VirtAddr, CapRef)>, usize), UnmapError> {
        let count = if out.list {
            out.released.len()
        } else {
            out.spans.iter().map(|s| s.2).sum()
        };
        if !out.failures.is_empty() && !out.list {
            // The error lists what was unmapped: from the entries' caps, which the shadow keeps until a
            // table is freed (below) or mapped again.
            out.released = self.released_of(&out.spans);
        }
        if !emptied.is_empty() {
            self.reclaim_pass(k, emptied, None);
        }
        match out.failures.first() {
            None => Ok((out.released, count)),
            Some(&(vaddr, _, failure)) => Err(UnmapError::Kernel {
                vaddr: VirtAddr::new_unchecked(vaddr),
                failure,
                unmapped: out.released,
                still_mapped: out.failures.len(),
            }),
        }
    }

    /// The pages of `spans` (see [`UnmapOutcome::spans`]) with their caps, ascending.
    #[cold]
    fn released_of(&self, spans: &[(usize, usize, usize, u64)]) -> Vec<(VirtAddr, CapRef)> {
        let mut out = Vec::new();
        for &(slot, lo, n, base) in spans {
            let t = self.shadow.at(slot);
            let eb = frame_size_of(t.level).bits();
            let caps = &t.slots.caps[lo..lo + n];
            out.extend(
                caps.iter()
                    .enumerate()
                    .map(|(i, &cap)| (VirtAddr::new_unchecked(base + ((i as u64) << eb)), cap)),
            );
        }
        out
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
        if let Some((vaddr, size)) = self.first_split(start, end, S::FRAME) {
            return Err(ProtectError::SplitsMapping { vaddr, size });
        }
        let root = self.root;
        let meta = Meta { rights, attr };
        // Pages changed, with their old rights and attribute (pages that have the new ones are skipped).
        let mut changed: Vec<(u64, Meta)> = Vec::new();
        let mut v = start;
        while let Some((r, slot)) = self.shadow.next_run(v, end, Some(meta)) {
            v = r.vaddr_of(r.count);
            let t = self.shadow.at_mut(slot);
            let run = LeafRun {
                level: r.level,
                table: t.cap,
                first_index: r.first as u16,
                vaddr: VirtAddr::new_unchecked(r.vaddr_of(0)),
                size: frame_size_of(r.level),
            };
            let slots = &mut t.slots;
            let caps = &slots.caps[r.first..r.first + r.count];
            let res = k.remap_frames_run(root, &run, caps, rights, attr);
            let done = match res {
                Ok(()) => r.count,
                Err(e) => e.done,
            };
            for (i, m) in slots.meta[r.first..r.first + done].iter_mut().enumerate() {
                changed.push((r.vaddr_of(i), *m));
                *m = meta;
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
        let pending: Candidates = self
            .shadow
            .tables()
            .filter(|t| t.pending)
            .map(|t| candidate((t.level, t.base)))
            .collect();
        let (freed, failure) = self.reclaim_pass(k, pending, None);
        match failure {
            None => Ok(freed),
            Some(failure) => Err(ReclaimError {
                failure,
                freed,
                pending: self.shadow.pending_count(),
            }),
        }
    }

    /// Unmaps every frame, unmaps and frees every paging structure, then frees the root. Returns every
    /// frame cap (each unmapped: the caller may delete it, which under seL4 5.0 is safe only after the
    /// unmap) and the number of structures freed.
    pub fn destroy<K: VSpaceKernel + ?Sized>(mut self, k: &mut K) -> Result<Teardown, Box<DestroyError>> {
        let mut out = UnmapOutcome::new(true, self.shadow.frames_total());
        let mut v = 0;
        while let Some((r, slot)) = self.shadow.next_run(v, USER_VADDR_END, None) {
            v = r.vaddr_of(r.count);
            self.unmap_run(k, r, slot, &mut out, &mut OnEmpty::Ignore);
        }
        if let Some(&(_, _, failure)) = out.failures.first() {
            return Err(Box::new(DestroyError {
                op: KernelOp::UnmapFrame,
                failure,
                released: out.released,
                tables_freed: 0,
                space: self,
            }));
        }
        let all: Candidates = self.shadow.tables().map(|t| candidate((t.level, t.base))).collect();
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
    #[cfg(test)]
    pub(crate) fn collect(&self, start: u64, end: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut v = start;
        while let Some((r, _)) = self.shadow.next_run(v, end, None) {
            out.extend((0..r.count).map(|i| r.vaddr_of(i)));
            v = r.vaddr_of(r.count);
        }
        out
    }

    /// The first mapping (in address order) that crosses `start` or `end`, for a range of pages of `size`:
    /// only a larger mapping can, the one holding `start` or the one holding `end - 1`.
    fn first_split(&self, start: u64, end: u64, size: FrameSize) -> Option<(VirtAddr, FrameSize)> {
        if self.shadow.frame_count[size as usize + 1..].iter().all(|&n| n == 0) {
            return None;
        }
        let crosses = |(v, f): (u64, FrameRec)| {
            (v < start || v + f.size.bytes() > end).then_some((VirtAddr::new_unchecked(v), f.size))
        };
        let larger = |a: u64| self.shadow.lookup_larger(a, size).and_then(crosses);
        larger(start).or_else(|| larger(end - 1))
    }

    /// Unmaps the frames of run `r` of the table in slab slot `slot` (one kernel run, continued past each
    /// refused page), and updates the shadow with exactly what was unmapped: the caps go to `out.released`
    /// in address order, the refused pages to `out.failures`. If the table becomes empty, `on_empty` says
    /// what to do. Does not reclaim.
    pub(crate) fn unmap_run<K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        r: RunPos,
        slot: usize,
        out: &mut UnmapOutcome,
        on_empty: &mut OnEmpty<'_>,
    ) {
        let level = r.level;
        let size = frame_size_of(level);
        let (t, by_cap, frame_count) = self.shadow.split_mut(slot);
        let run = LeafRun {
            level,
            table: t.cap,
            first_index: r.first as u16,
            vaddr: VirtAddr::new_unchecked(r.vaddr_of(0)),
            size,
        };
        let mut pos = 0;
        while pos < r.count {
            let sub = LeafRun {
                first_index: run.first_index + pos as u16,
                vaddr: run.vaddr_of(pos),
                ..run
            };
            let lo = r.first + pos;
            let caps = &t.slots.caps[lo..r.first + r.count];
            let (done, failure) = match k.unmap_frames_run(&sub, caps) {
                Ok(()) => (caps.len(), None),
                Err(e) => (e.done, Some(e.failure)),
            };
            by_cap.remove_run(&caps[..done]);
            let (base, eb) = (run.vaddr_of(pos).as_u64(), size.bits());
            if out.list {
                out.released.extend(
                    caps[..done]
                        .iter()
                        .enumerate()
                        .map(|(i, &cap)| (VirtAddr::new_unchecked(base + ((i as u64) << eb)), cap)),
                );
            } else if done > 0 {
                out.spans.push((slot, lo, done, base));
            }
            let refused = failure.map(|f| (r.vaddr_of(pos + done), caps[done], f));
            t.frames.set_range(lo, lo + done, false);
            t.used -= done as u16;
            frame_count[size as usize] -= done;
            pos += done;
            if let Some(refused) = refused {
                out.failures.push(refused);
                pos += 1;
            }
        }
        if t.used == 0 {
            match on_empty {
                OnEmpty::Ignore => {}
                OnEmpty::MarkPending => t.pending = true,
                OnEmpty::Collect(emptied) => emptied.push(candidate((level, r.base))),
            }
        }
    }

    /// Unmaps and frees the empty tables among `candidates` (and their parents as they become empty),
    /// children first: level by level from the page tables up, each level by ascending base. With `only`,
    /// tables outside it are left (a rollback reclaims only what it allocated). An empty table left, by
    /// `only` or by a refused unmap, is marked pending. Returns the number freed and the first refusal.
    pub(crate) fn reclaim_pass<K: VSpaceKernel + ?Sized>(
        &mut self,
        k: &mut K,
        mut candidates: Candidates,
        only: Option<&HashSet<TableKey>>,
    ) -> (usize, Option<KernelFailure>) {
        let mut freed = 0;
        let mut first_failure = None;
        let mut prev = None;
        while let Some(next) = candidates.pop() {
            if prev.replace(next) == Some(next) {
                continue;
            }
            let (level, Reverse(base)) = next;
            let Some(t) = self.shadow.table_mut(level, base) else {
                continue;
            };
            if t.used != 0 {
                continue;
            }
            if only.is_some_and(|o| !o.contains(&(level, base))) {
                t.pending = true;
                continue;
            }
            let cap = t.cap;
            match k.unmap_table(level, cap) {
                Ok(()) => {
                    k.free_table(level, cap);
                    freed += 1;
                    if let Some(parent) = self.shadow.remove_table(level, base) {
                        candidates.push(candidate(parent));
                    }
                }
                Err(failure) => {
                    t.pending = true;
                    first_failure.get_or_insert(failure);
                }
            }
        }
        (freed, first_failure)
    }

    /// Puts back the old rights and attributes of the pages a failed protect changed, newest first.
    fn undo_protect<K: VSpaceKernel + ?Sized>(&mut self, k: &mut K, changed: &[(u64, Meta)]) -> Rollback {
        let mut first_failure = None;
        let mut residue = Vec::new();
        for &(v, old) in changed.iter().rev() {
            let (slot, i) = self.shadow.frame_entry(v).expect("shadow: frame missing");
            let t = self.shadow.at_mut(slot);
            let slots = &mut t.slots;
            let cap = slots.caps[i];
            match k.remap_frame(cap, self.root, old.rights, old.attr) {
                Ok(()) => slots.meta[i] = old,
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                    residue.push((VirtAddr::new_unchecked(v), cap));
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

/// What [`AddressSpace::unmap_run`] does with a table it empties.
pub(crate) enum OnEmpty<'e> {
    /// Nothing (the caller reclaims every table).
    Ignore,
    /// Marks it pending reclaim ([`TablePolicy::Retain`]).
    MarkPending,
    /// Lists it, for a reclaim pass.
    Collect(&'e mut Candidates),
}

/// Tables for [`AddressSpace::reclaim_pass`], popped children first (page tables before page directories
/// before PDPTs; [`TableLevel`] orders from the root down), each level by ascending base.
pub(crate) type Candidates = BinaryHeap<(TableLevel, Reverse<u64>)>;

impl UnmapOutcome {
    /// Nothing unmapped yet; room for `expect` pages in the list (with `list`).
    pub(crate) fn new(list: bool, expect: usize) -> Self {
        UnmapOutcome {
            list,
            released: if list { Vec::with_capacity(expect) } else { Vec::new() },
            ..UnmapOutcome::default()
        }
    }
}

/// A table as a [`Candidates`] entry.
pub(crate) fn candidate((level, base): TableKey) -> (TableLevel, Reverse<u64>) {
    (level, Reverse(base))
}

/// What [`AddressSpace::unmap_run`] did.
#[derive(Default)]
pub(crate) struct UnmapOutcome {
    /// Whether `released` lists the unmapped pages (else `spans` says where they were).
    pub list: bool,
    /// Unmapped pages and their caps, ascending (with `list`).
    pub released: Vec<(VirtAddr, CapRef)>,
    /// Without `list`: the unmapped entries, as (slab slot of the table, first entry, count, first
    /// address), ascending; their caps stay in the table's record until it is freed or mapped again.
    pub spans: Vec<(usize, usize, usize, u64)>,
    /// Pages the kernel refused to unmap (they stay mapped), with their caps, ascending.
    pub failures: Vec<(u64, CapRef, KernelFailure)>,
}

/// Whether `[start, end)` lies in `[USER_VADDR_START, USER_VADDR_END)`.
#[inline]
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
