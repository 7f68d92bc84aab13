//! The manager's clone and destroy of a region of 4 KiB pages, without per-page records on the way in or out.
//!
//! A clone is a lookup ([`MappingDb::source_caps`]: the source pages' capabilities, which the kernel needs),
//! the kernel's copies and mappings, then one call that records them all ([`MappingDb::clone_region`]). A
//! destroy is a lookup ([`MappingDb::caps_run`]: each page's capability and whether it is a copy), the
//! kernel's unmaps and deletes, then [`MappingDb::destroy_region`]. The updates validate the whole run
//! before changing anything and then write each page's entries directly, a leaf table at a time.

use alloc::vec::Vec;

use crate::chunk::CHUNK;
use crate::db::{
    add_child, drop_child, leaf_emptied, new_leaf_at, placed_mut, pos, wake_leaf, CapNode, IdleLeaves, LeafNode,
    MappingDb, Placed, SpaceNode, SpanKey, SpanNode,
};
use crate::error::{CloneRegionError, RemoveError, SourceError};
use crate::run::{Run, Seg};
use crate::table::{pos32, swap_remove, List, Table, NONE};
use crate::types::{AsId, CapSlot, LeafLevel, LeafTable, Mapping, PageSize, Rights, USER_VADDR_END};
use mm_types::run::{few_stretches, Stretches, MIN_RUN};

const SMALL: PageSize = PageSize::Small;
/// Bytes of a 4 KiB page.
const PAGE: u64 = 1 << 12;
/// Bytes a page table's entries map (2 MiB).
const LEAF_SPAN: u64 = PAGE << 9;

/// Which capability the copies of a [`MappingDb::clone_region`] are derived from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloneParent {
    /// The frame's original capability (`frame.slot`), whichever capability maps the source page.
    Original,
    /// The capability that maps the source page (as seL4's `CNode_Copy` from it derives the copy).
    Source,
}

/// A clone of `n` consecutive 4 KiB pages, for [`MappingDb::clone_region`]: page `i` of the source
/// (`src_vaddr + i * 4096` in `src`) is shared through a new capability copy in slot `first_copy.0 + i`
/// (see [`copy`](Self::copy)), mapped at `dst_vaddr + i * 4096` in `dst` with `rights`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RegionClone {
    /// The source address space.
    pub src: AsId,
    /// The first source page.
    pub src_vaddr: u64,
    /// The destination address space.
    pub dst: AsId,
    /// The first destination page.
    pub dst_vaddr: u64,
    /// Number of pages.
    pub n: usize,
    /// The slot of the first page's new copy; the copies are in consecutive slots.
    pub first_copy: CapSlot,
    /// What each copy is derived from.
    pub parent: CloneParent,
    /// The rights of every new mapping (each source mapping must have them all).
    pub rights: Rights,
}

impl RegionClone {
    /// The bytes of the clone's pages, if both ends are aligned 4 KiB pages of the user range and the copy
    /// slots do not wrap (what any fast path needs before looking at the pages).
    fn in_range(&self) -> Option<u64> {
        let bytes = (self.n as u64).checked_mul(PAGE)?;
        if !SMALL.is_aligned(self.src_vaddr)
            || !SMALL.is_aligned(self.dst_vaddr)
            || self.src_vaddr.checked_add(bytes)? > USER_VADDR_END
            || self.dst_vaddr.checked_add(bytes)? > USER_VADDR_END
        {
            return None;
        }
        self.first_copy.0.checked_add(self.n as u64)?;
        Some(bytes)
    }

    /// The slot of page `i`'s new copy: `first_copy.0 + i` (wrapping).
    pub const fn copy(&self, i: usize) -> CapSlot {
        CapSlot(self.first_copy.0.wrapping_add(i as u64))
    }
}

/// The destination leaf of a planned clone's 2 MiB region: its position in `leaves` ([`NONE`] to create)
/// and whether that node is idle (to take back into use).
type PlannedLeaf = (u32, LeafTable, bool);

/// Pages of a clone whose positions are kept on the stack (more go to a `Vec`).
const INLINE_PAGES: usize = 16;
/// The leaf tables of a clone.
type Planned = List<PlannedLeaf, 2>;

/// The stretches of a run path's pages whose frames' originals are consecutive slots: (first page, its
/// frame's original), in page order, the first from page 0. Page `i` of the stretch from page `p` with
/// original `o` has original `o + (i - p)`.
pub(crate) type Pieces = List<(usize, u64), 4>;

/// Whether the slot ranges of the stretches `pieces` of `n` pages (first page, first slot) are pairwise
/// disjoint (sorted by slot, each ends before the next starts).
fn stretches_disjoint(pieces: &[(usize, u64)], n: usize) -> bool {
    let mut r: Vec<(u64, u64)> = pieces
        .iter()
        .enumerate()
        .map(|(k, &(p0, s0))| (s0, s0 + (pieces.get(k + 1).map_or(n, |p| p.0) - p0) as u64))
        .collect();
    r.sort_unstable();
    r.windows(2).all(|w| w[0].1 <= w[1].0)
}

/// The positions of a clone's pages' capabilities: on the stack ([`Inline`]) or in a `Vec`.
trait Positions: Extend<u32> + AsRef<[u32]> {
    fn with_capacity(n: usize) -> Self;
    fn push(&mut self, x: u32);
    /// Appends `xs` (within the capacity asked for).
    fn push_slice(&mut self, xs: &[u32]);
}

impl Positions for Vec<u32> {
    #[inline(always)]
    fn with_capacity(n: usize) -> Self {
        Vec::with_capacity(n)
    }
    #[inline(always)]
    fn push(&mut self, x: u32) {
        Vec::push(self, x);
    }
    #[inline(always)]
    fn push_slice(&mut self, xs: &[u32]) {
        self.extend_from_slice(xs);
    }
}

/// Up to [`INLINE_PAGES`] positions on the stack.
struct Inline {
    items: [u32; INLINE_PAGES],
    len: usize,
}

impl Positions for Inline {
    #[inline(always)]
    fn with_capacity(n: usize) -> Self {
        debug_assert!(n <= INLINE_PAGES);
        Inline {
            items: [NONE; INLINE_PAGES],
            len: 0,
        }
    }
    #[inline(always)]
    fn push(&mut self, x: u32) {
        self.items[self.len] = x;
        self.len += 1;
    }
    #[inline(always)]
    fn push_slice(&mut self, xs: &[u32]) {
        self.items[self.len..self.len + xs.len()].copy_from_slice(xs);
        self.len += xs.len();
    }
}

impl Extend<u32> for Inline {
    #[inline(always)]
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        for x in iter {
            self.push(x);
        }
    }
}

impl AsRef<[u32]> for Inline {
    #[inline(always)]
    fn as_ref(&self) -> &[u32] {
        &self.items[..self.len]
    }
}

impl MappingDb {
    // ----- lookups -----------------------------------------------------------------------------------------

    /// The capabilities of the `n` consecutive 4 KiB pages of `asid` from `vaddr` (`vaddr + i * 4096`), in
    /// address order: what the manager hands the kernel as the sources of a clone.
    ///
    /// Each page must hold a 4 KiB mapping starting exactly there (as [`mappings_run`](Self::mappings_run)
    /// requires) whose rights include `rights`; otherwise the index of the first page that does not and
    /// [`SourceError::NotMapped`] or [`SourceError::RightsExceed`] (the mapping is checked before its
    /// rights). It equals `mappings_run(asid, vaddr, n)` with a rights check of each record, mapped to
    /// `rec.cap`. Changes nothing.
    ///
    /// Reads the address index a chunk (64 pages) at a time and each page's capability node once.
    pub fn source_caps(
        &self,
        asid: AsId,
        vaddr: u64,
        n: usize,
        rights: Rights,
    ) -> Result<Vec<CapSlot>, (usize, SourceError)> {
        if n == 1 {
            // One page (a page fault's): one lookup (a page not indexed may be in a run).
            let Some(cap) = self.page_cap(asid, vaddr) else {
                if self.runs.is_empty() {
                    return Err((0, SourceError::NotMapped));
                }
                // In a run: its capability for the page, its rights.
                if let Some(((_, start), run)) = self.runs.at(asid, vaddr).filter(|_| SMALL.is_aligned(vaddr)) {
                    if !run.rights.contains(rights) {
                        return Err((0, SourceError::RightsExceed));
                    }
                    return Ok(alloc::vec![CapSlot(run.first_copy + (vaddr - start) / PAGE)]);
                }
                return self.source_caps_many(asid, vaddr, n, rights);
            };
            let (slot, node) = self.caps.entry_at(cap);
            if !node
                .map
                .as_ref()
                .expect("indexed cap is mapped")
                .rights
                .contains(rights)
            {
                return Err((0, SourceError::RightsExceed));
            }
            return Ok(alloc::vec![slot]);
        }
        self.source_caps_many(asid, vaddr, n, rights)
    }

    /// [`source_caps`](Self::source_caps) of any number of pages. Out of line, so that the one-page path does
    /// not weigh on its code.
    #[inline(never)]
    fn source_caps_many(
        &self,
        asid: AsId,
        vaddr: u64,
        n: usize,
        rights: Rights,
    ) -> Result<Vec<CapSlot>, (usize, SourceError)> {
        let mut out = Vec::with_capacity(n);
        if self.runs.is_empty() || (n > 0 && !SMALL.is_aligned(vaddr)) {
            self.source_run(asid, vaddr, n, rights, |_, slot| out.push(slot))?;
            return Ok(out);
        }
        // Stretches of pages in runs (one rights check each) and of pages not.
        let (mut i, mut va) = (0, vaddr);
        while i < n {
            match self.segment(asid, va, n - i) {
                Seg::Pages(k) => {
                    self.source_run(asid, va, k, rights, |_, slot| out.push(slot))
                        .map_err(|(j, e)| (i + j, e))?;
                    i += k;
                    va += k as u64 * PAGE;
                }
                Seg::Run { run, off, len, .. } => {
                    if !run.rights.contains(rights) {
                        return Err((i, SourceError::RightsExceed));
                    }
                    let first = run.first_copy + off;
                    out.extend((first..first + len as u64).map(CapSlot));
                    i += len;
                    va += len as u64 * PAGE;
                }
            }
        }
        Ok(out)
    }

    /// The position of the capability whose 4 KiB mapping starts at `vaddr` in `asid`, if there is one.
    #[inline(always)]
    fn page_cap(&self, asid: AsId, vaddr: u64) -> Option<u32> {
        if !SMALL.is_aligned(vaddr) || vaddr >= USER_VADDR_END {
            return None;
        }
        self.by_vaddr.get(asid, SMALL, vaddr)
    }

    /// Hands `each` the position and slot of the capability of each page of the run of
    /// [`source_caps`](Self::source_caps), in order, or stops at the first page refused.
    #[inline(always)]
    fn source_run(
        &self,
        asid: AsId,
        vaddr: u64,
        n: usize,
        rights: Rights,
        mut each: impl FnMut(u32, CapSlot),
    ) -> Result<(), (usize, SourceError)> {
        if n > 0 && !SMALL.is_aligned(vaddr) {
            return Err((0, SourceError::NotMapped));
        }
        let (mut i, mut va) = (0, vaddr);
        while i < n {
            if va >= USER_VADDR_END {
                return Err((i, SourceError::NotMapped));
            }
            let Some(tail) = self.by_vaddr.tail(asid, SMALL, va) else {
                return Err((i, SourceError::NotMapped));
            };
            let tail = &tail[..tail.len().min(n - i)];
            for &cap in tail {
                if cap == NONE {
                    return Err((i, SourceError::NotMapped));
                }
                let (slot, node) = self.caps.entry_at(cap);
                let p = node.map.as_ref().expect("indexed cap is mapped");
                if !p.rights.contains(rights) {
                    return Err((i, SourceError::RightsExceed));
                }
                each(cap, slot);
                i += 1;
            }
            // The chunk ends at a chunk boundary, below USER_VADDR_END: no overflow.
            va += tail.len() as u64 * PAGE;
        }
        Ok(())
    }

    /// Each of the `n` consecutive 4 KiB pages of `asid` from `vaddr` (`vaddr + i * 4096`), in address
    /// order: the capability that maps it and whether that is a copy (`true`) or the frame's original: what
    /// the manager tells the kernel when it destroys a region.
    ///
    /// Each page must hold a 4 KiB mapping starting exactly there: otherwise the index of the first page
    /// without one and [`RemoveError::NotMapped`], as from [`mappings_run`](Self::mappings_run); it equals
    /// `mappings_run(asid, vaddr, n)` mapped to `(rec.cap, rec.cap != rec.frame.slot)`. Changes nothing.
    pub fn caps_run(&self, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<(CapSlot, bool)>, (usize, RemoveError)> {
        let entry = |cap: u32| {
            let (slot, node) = self.caps.entry_at(cap);
            (slot, node.parent_pos != cap)
        };
        if n == 1 {
            // One page (a page fault's): one lookup (a page not indexed may be in a run).
            match self.page_cap(asid, vaddr) {
                Some(cap) => return Ok(alloc::vec![entry(cap)]),
                None if self.runs.is_empty() => return Err((0, RemoveError::NotMapped)),
                None => {}
            }
        }
        if n > 0 && !SMALL.is_aligned(vaddr) {
            return Err((0, RemoveError::NotMapped));
        }
        let mut out = Vec::with_capacity(n);
        if self.runs.is_empty() {
            self.caps_pages(asid, vaddr, n, &mut out)?;
            return Ok(out);
        }
        // Stretches of pages in runs (copies all, or originals all) and of pages not.
        let (mut i, mut va) = (0, vaddr);
        while i < n {
            match self.segment(asid, va, n - i) {
                Seg::Pages(k) => {
                    self.caps_pages(asid, va, k, &mut out).map_err(|(j, e)| (i + j, e))?;
                    i += k;
                    va += k as u64 * PAGE;
                }
                Seg::Run { run, off, len, .. } => {
                    let (first, copy) = (run.first_copy + off, !run.is_orig());
                    out.extend((first..first + len as u64).map(|s| (CapSlot(s), copy)));
                    i += len;
                    va += len as u64 * PAGE;
                }
            }
        }
        Ok(out)
    }

    /// [`caps_run`](Self::caps_run) of `n` pages from `vaddr` (aligned) none of which is in a run, appending
    /// to `out`; the index of a missing page is relative to `vaddr`.
    fn caps_pages(
        &self,
        asid: AsId,
        vaddr: u64,
        n: usize,
        out: &mut Vec<(CapSlot, bool)>,
    ) -> Result<(), (usize, RemoveError)> {
        let entry = |cap: u32| {
            let (slot, node) = self.caps.entry_at(cap);
            (slot, node.parent_pos != cap)
        };
        // As `source_run` without rights, a chunk of the address index at a time.
        let (mut i, mut va) = (0, vaddr);
        while i < n {
            let tail = if va < USER_VADDR_END {
                self.by_vaddr.tail(asid, SMALL, va)
            } else {
                None
            };
            let Some(tail) = tail else {
                return Err((i, RemoveError::NotMapped));
            };
            let tail = &tail[..tail.len().min(n - i)];
            if let Some(k) = tail.iter().position(|&cap| cap == NONE) {
                return Err((i + k, RemoveError::NotMapped));
            }
            out.extend(tail.iter().map(|&cap| entry(cap)));
            i += tail.len();
            // The chunk ends at a chunk boundary, below USER_VADDR_END: no overflow.
            va += tail.len() as u64 * PAGE;
        }
        Ok(())
    }

    // ----- clone -------------------------------------------------------------------------------------------

    /// Records a clone of a region the kernel made: for each page `i < c.n`, a new copy in slot
    /// [`c.copy(i)`](RegionClone::copy) of the capability that maps source page `i`, derived as `c.parent`
    /// says, mapped at destination page `i` with `c.rights` through the page table `leaf(base)`, where `base`
    /// is the start of the 2 MiB region of the destination page (`leaf` may be called more than once per
    /// region, and for no region if the run is refused before; it must answer the same each time).
    ///
    /// It does what this does, but all or none:
    ///
    /// ```text
    /// let srcs = source_caps(c.src, c.src_vaddr, c.n, c.rights)?;          // CloneRegionError::Source
    /// for i in 0..c.n {
    ///     let frame = frame_of_cap(srcs[i]);
    ///     let parent = if c.parent == CloneParent::Original { frame.slot } else { srcs[i] };
    ///     let va = c.dst_vaddr + i * 4096;
    ///     add_copy(frame, c.copy(i), parent)?;                              // CloneRegionError::Copy
    ///     insert(Mapping::new(frame, c.copy(i), c.dst, va, PageSize::Small, c.rights,
    ///                         leaf(PageSize::Small.leaf_region(va))))?;     // CloneRegionError::Insert
    /// }
    /// ```
    ///
    /// (the sources are all looked up first, in the database as it is before the clone). On a refusal, the
    /// index of the refused page and the error of the step that refused it are returned and nothing has
    /// changed.
    ///
    /// The manager calls [`source_caps`](Self::source_caps) with the same source, count and rights before
    /// the kernel copies and maps, then this once the kernel has. The fast path checks the whole run first
    /// (sources, free destination pages and copy slots, the destination's page tables and any larger pages
    /// there) and then creates each copy with its record in place, a page table at a time, with no record
    /// built on the way; any run it does not take (a refusal, an unaligned address) goes through the single
    /// operations. A one-page clone (a page fault's) has its own fast path: one lookup each of the source
    /// page, the destination page, the copy slot and the page table, then the page's entries written.
    ///
    /// Before those, a clone of 2 pages or more with [`CloneParent::Original`] whose source pages' originals
    /// are consecutive slots is recorded as copy runs (one per destination page table, see the crate
    /// documentation) when the loop would accept it: the checks above, then per page table its entries and
    /// counters and the run. Otherwise the runs over its pages and copy slots are materialised first.
    pub fn clone_region(
        &mut self,
        c: &RegionClone,
        mut leaf: impl FnMut(u64) -> CapSlot,
    ) -> Result<(), (usize, CloneRegionError)> {
        if c.n == 0 {
            return Ok(());
        }
        if !self.no_runs && c.n >= MIN_RUN && c.parent == CloneParent::Original && self.clone_as_runs(c, &mut leaf) {
            return Ok(());
        }
        if c.n == 1 {
            // A page fault's clone: a source page in a run is read from the run (no materialising).
            if !self.runs.is_empty() {
                self.settle_clone_dst(c);
            }
            if self.clone_one(c, &mut leaf) {
                return Ok(());
            }
        }
        if !self.runs.is_empty() {
            self.settle_clone(c);
        }
        self.clone_many(c, &mut leaf)
    }

    /// Materialises the runs a per-page clone `c` reads or writes: the source and destination pages, the
    /// copy slots.
    #[cold]
    fn settle_clone(&mut self, c: &RegionClone) {
        let bytes = (c.n as u64).saturating_mul(PAGE);
        let src = SMALL.align_down(c.src_vaddr);
        self.settle_addr(c.src, src, src.saturating_add(bytes));
        self.settle_clone_dst(c);
    }

    /// Materialises the runs over the destination pages and copy slots of a per-page clone `c`.
    fn settle_clone_dst(&mut self, c: &RegionClone) {
        let bytes = (c.n as u64).saturating_mul(PAGE);
        let dst = SMALL.align_down(c.dst_vaddr);
        self.settle_addr(c.dst, dst, dst.saturating_add(bytes));
        self.settle_slots(c.first_copy.0, c.first_copy.0.saturating_add(c.n as u64));
    }

    /// The run path of [`clone_region`](Self::clone_region): records the clone `c` (copies from the
    /// originals) as one run per destination page table if the loop would accept it and the source pages'
    /// originals are consecutive slots; whether it did (if not, nothing has changed).
    ///
    /// Per page it reads the source's address index entry, capability node and frame key (none for a source
    /// page in a run) and the destination's and copy slot's index entries; per page table it writes the
    /// entries in use (a mask per word), the counters and the run.
    #[inline(never)]
    fn clone_as_runs(&mut self, c: &RegionClone, leaf: &mut impl FnMut(u64) -> CapSlot) -> bool {
        let Some((pieces, planned)) = self.plan_runs(c, leaf) else {
            return false;
        };
        self.add_runs(
            c.dst,
            c.dst_vaddr,
            c.n,
            Some(c.first_copy.0),
            &pieces,
            c.rights,
            &planned,
        );
        true
    }

    /// Records runs of `n` pages of `dst` from `dst_vaddr`, page `i` through capability `first_copy + i`
    /// (copy runs; with `None`, through the frame's original itself: original runs) of the frame whose
    /// original `pieces` gives, one run per page table of `planned` (see [`plan_leaves`](Self::plan_leaves))
    /// and stretch of `pieces`: per page table its entries in use (a mask per word) and its counters, per
    /// stretch in it the run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_runs(
        &mut self,
        dst: AsId,
        dst_vaddr: u64,
        n: usize,
        first_copy: Option<u64>,
        pieces: &Pieces,
        rights: Rights,
        planned: &Planned,
    ) {
        let pieces = pieces.as_slice();
        debug_assert!(pieces.first().is_some_and(|p| p.0 == 0));
        let mut piece = 0;
        let MappingDb {
            leaves,
            spaces,
            spans,
            idle_leaves,
            len,
            hint_leaf,
            runs,
            ..
        } = self;
        let mut base = SMALL.leaf_region(dst_vaddr);
        let mut i = 0;
        for &(lp, key, idle) in planned.as_slice() {
            let end = (((base + LEAF_SPAN - dst_vaddr) / PAGE) as usize).min(n);
            let lp = match lp {
                NONE => new_leaf_at(key, base, leaves, spaces, spans, idle_leaves),
                p if idle => wake_leaf(p, base, leaves, spans, idle_leaves),
                p => p,
            };
            *hint_leaf = lp;
            let va = dst_vaddr + i as u64 * PAGE;
            let k = end - i;
            let l = leaves.at_mut(lp);
            let first = SMALL.entry_index(va);
            debug_assert!((first..first + k as u16).all(|x| !l.is_set(x)));
            l.set_range(first, first + k as u16);
            l.count += k as u32;
            for sp in l.spans {
                if sp != NONE {
                    spans.at_mut(sp).count += k as u32;
                }
            }
            *len += k;
            // One run per stretch of consecutive originals in this page table.
            let mut j = i;
            while j < end {
                while piece + 1 < pieces.len() && pieces[piece + 1].0 <= j {
                    piece += 1;
                }
                let (p0, o0) = pieces[piece];
                let stop = pieces.get(piece + 1).map_or(end, |p| p.0.min(end));
                let parent = o0 + (j - p0) as u64;
                runs.add(
                    (dst, dst_vaddr + j as u64 * PAGE),
                    Run {
                        first_copy: first_copy.map_or(parent, |c| c + j as u64),
                        first_parent: parent,
                        leaf: lp,
                        n: (stop - j) as u16,
                        rights,
                    },
                );
                j = stop;
            }
            i = end;
            base += LEAF_SPAN;
        }
    }

    /// The run path of [`insert_run`](Self::insert_run): records `recs` (at least two) as original runs, one
    /// per page table, if they are the manager's map of fresh frames (each record's capability its frame's
    /// original, in consecutive slots, at consecutive 4 KiB pages of one address space from an aligned
    /// address, with one rights and one page table per 2 MiB region) and the loop of `insert` would accept
    /// them all; whether it did (if not, nothing has changed).
    ///
    /// Per page it reads the record, the original's node and its frame's address and size (the slot index a
    /// chunk at a time) and the destination's address index entry (a chunk at a time); per page table it
    /// writes the entries in use, the counters and the run.
    #[inline(never)]
    pub(crate) fn insert_as_runs(&mut self, recs: &[Mapping]) -> bool {
        let Some((pieces, planned)) = self.plan_orig_runs(recs) else {
            return false;
        };
        let m = &recs[0];
        self.add_runs(m.asid, m.vaddr, recs.len(), None, &pieces, m.rights, &planned);
        true
    }

    /// Checks that `recs` is a map the run path of [`insert_run`](Self::insert_run) takes and that the loop
    /// of [`insert`](Self::insert) accepts: gives each destination region's leaf table.
    fn plan_orig_runs(&self, recs: &[Mapping]) -> Option<(Pieces, Planned)> {
        let n = recs.len();
        let m0 = recs.first()?;
        let (asid, va0, rights) = (m0.asid, m0.vaddr, m0.rights);
        let bytes = (n as u64).checked_mul(PAGE)?;
        if !SMALL.is_aligned(va0) || va0.checked_add(bytes)? > USER_VADDR_END {
            return None;
        }
        // The shape: consecutive pages, stretches of consecutive originals, one rights, one page table per
        // region; each record well formed.
        let mut pieces = Pieces::empty((0, 0));
        let mut stretches = Stretches::new();
        let mut table = m0.leaf.table;
        for (i, (va, m)) in (va0..).step_by(PAGE as usize).zip(recs).enumerate() {
            if va & (LEAF_SPAN - 1) == 0 {
                table = m.leaf.table;
            }
            if stretches.see(m.cap.0, 1, (n - i) as u64)? {
                pieces.push((i, m.cap.0));
            }
            if m.vaddr != va
                || m.frame.slot != m.cap
                || m.size != SMALL
                || m.asid != asid
                || m.rights != rights
                || m.leaf.table != table
                || m.leaf.asid != asid
                || m.leaf.level != LeafLevel::Pt
                || m.index != SMALL.entry_index(va)
            {
                return None;
            }
        }
        if !few_stretches(pieces.len(), n) {
            return None;
        }
        // Each capability a known original of a 4 KiB frame at the record's address, not mapped (per page,
        // or in a run); stretch by stretch, the slot index a chunk at a time.
        let ps = pieces.as_slice();
        for (k, &(p0, slot0)) in ps.iter().enumerate() {
            let p1 = ps.get(k + 1).map_or(n, |p| p.0);
            let mut i = p0;
            while i < p1 {
                let tail = self.caps.index().tail(CapSlot(slot0 + (i - p0) as u64))?;
                let tail = &tail[..tail.len().min(p1 - i)];
                for (&cap, m) in tail.iter().zip(&recs[i..]) {
                    if cap == NONE {
                        return None;
                    }
                    let node = self.caps.at(cap);
                    if node.parent_pos != cap || node.map.is_some() {
                        return None;
                    }
                    let f = self.frames.at(node.frame);
                    if f.paddr != m.frame.paddr || f.size != SMALL {
                        return None;
                    }
                }
                i += tail.len();
            }
            // No original of the stretch in a run (nor named twice: a slot in two stretches would be).
            if !self.runs.is_empty()
                && self
                    .runs
                    .slots_overlapping(slot0, slot0 + (p1 - p0) as u64)
                    .next()
                    .is_some()
            {
                return None;
            }
        }
        if ps.len() > 1 && !stretches_disjoint(ps, n) {
            return None;
        }
        // Every page free (of per-page records and of runs).
        if !self.runs.is_empty() && self.runs.overlapping(asid, va0, va0 + bytes).next().is_some() {
            return None;
        }
        if !self.dst_free(asid, va0, n) {
            return None;
        }
        let planned = self.plan_leaves(asid, va0, n, &mut |base| {
            recs[(base.saturating_sub(va0) / PAGE) as usize].leaf.table
        })?;
        Some((pieces, planned))
    }

    /// Checks that `c` is a clone the run path takes (see [`clone_as_runs`](Self::clone_as_runs)) and that
    /// the loop of [`clone_region`](Self::clone_region) accepts: gives the first source page's original and
    /// each destination region's leaf table.
    fn plan_runs(&self, c: &RegionClone, leaf: &mut impl FnMut(u64) -> CapSlot) -> Option<(Pieces, Planned)> {
        let n = c.n;
        let bytes = c.in_range()?;
        // Every source page mapped with the rights; its frame's original the slot after the previous page's
        // (else a new stretch starts there).
        let mut pieces = Pieces::empty((0, 0));
        let mut stretches = Stretches::new();
        let (mut i, mut va) = (0, c.src_vaddr);
        while i < n {
            match self.segment(c.src, va, n - i) {
                Seg::Run { run, off, len, .. } => {
                    if !run.rights.contains(c.rights) {
                        return None;
                    }
                    let orig = run.first_parent + off;
                    if stretches.see(orig, len as u64, (n - i) as u64)? {
                        pieces.push((i, orig));
                    }
                    i += len;
                    va += len as u64 * PAGE;
                }
                Seg::Pages(k) => {
                    let end = i + k;
                    while i < end {
                        let tail = self.by_vaddr.tail(c.src, SMALL, va)?;
                        let tail = &tail[..tail.len().min(end - i)];
                        for (j, &cap) in tail.iter().enumerate() {
                            if cap == NONE {
                                return None;
                            }
                            // Mapped with the rights; an original in the slot that continues the stretch
                            // (the usual source), or a copy of a frame (its original is the frame's key).
                            let (slot, node) = self.caps.entry_at(cap);
                            match &node.map {
                                Some(p) if p.rights.contains(c.rights) => {}
                                _ => return None,
                            }
                            let orig = if slot.0 == stretches.next() && node.parent_pos == cap {
                                slot.0
                            } else {
                                self.frames.key_at(node.frame).0
                            };
                            if stretches.see(orig, 1, (n - i - j) as u64)? {
                                pieces.push((i + j, orig));
                            }
                        }
                        i += tail.len();
                        va += tail.len() as u64 * PAGE;
                    }
                }
            }
        }
        if !few_stretches(pieces.len(), n) {
            return None;
        }
        // Every destination page and copy slot free (of per-page entries and of runs).
        if !self.runs.is_empty()
            && (self
                .runs
                .overlapping(c.dst, c.dst_vaddr, c.dst_vaddr + bytes)
                .next()
                .is_some()
                || self
                    .runs
                    .slots_overlapping(c.first_copy.0, c.first_copy.0 + n as u64)
                    .next()
                    .is_some())
        {
            return None;
        }
        if !self.dst_free(c.dst, c.dst_vaddr, n) || !self.copies_free(c) {
            return None;
        }
        Some((pieces, self.plan_leaves(c.dst, c.dst_vaddr, n, leaf)?))
    }

    /// [`clone_region`](Self::clone_region) but for the one-page fast path: the general fast path, else the
    /// single operations. Out of line, so that the one-page path does not weigh on its code.
    #[inline(never)]
    fn clone_many(
        &mut self,
        c: &RegionClone,
        leaf: &mut impl FnMut(u64) -> CapSlot,
    ) -> Result<(), (usize, CloneRegionError)> {
        let done = if c.n <= INLINE_PAGES {
            self.clone_fast::<Inline>(c, leaf)
        } else {
            self.clone_fast::<Vec<u32>>(c, leaf)
        };
        if done {
            Ok(())
        } else {
            self.clone_region_slow(c, leaf)
        }
    }

    /// The fast path of [`clone_region`](Self::clone_region), keeping positions in `B`: whether it took it.
    #[inline(always)]
    fn clone_fast<B: Positions>(&mut self, c: &RegionClone, leaf: &mut impl FnMut(u64) -> CapSlot) -> bool {
        match self.plan_clone::<B>(c, leaf) {
            Some((srcs, leaves)) => {
                self.apply_clone::<B>(c, srcs.as_ref(), leaves.as_slice());
                true
            }
            None => false,
        }
    }

    /// The fast path of a one-page [`clone_region`](Self::clone_region) (`c.n == 1`): the checks of
    /// [`plan_clone`](Self::plan_clone) and the writes of [`apply_clone`](Self::apply_clone) for one page,
    /// with one lookup each of the source page, the destination page, the copy slot and the leaf table.
    /// Whether it took it (if not, nothing has changed).
    #[inline(always)]
    fn clone_one(&mut self, c: &RegionClone, leaf: &mut impl FnMut(u64) -> CapSlot) -> bool {
        debug_assert_eq!(c.n, 1);
        let (sva, dva, copy) = (c.src_vaddr, c.dst_vaddr, c.first_copy);
        if !SMALL.is_aligned(sva)
            || !SMALL.is_aligned(dva)
            || sva > USER_VADDR_END - PAGE
            || dva > USER_VADDR_END - PAGE
            || copy.0 == u64::MAX
        {
            return false;
        }
        // The source mapped, with the rights: indexed per page, or in a run (then, as the source, its
        // frame's original, whose node is per page: the parent of a copy derived from the original, or the
        // source itself in an original run).
        let (sp, rights) = match self.by_vaddr.get(c.src, SMALL, sva) {
            Some(sp) => (sp, self.caps.at(sp).map.as_ref().expect("indexed cap is mapped").rights),
            None => {
                let Some(((_, start), run)) = self.runs.at(c.src, sva) else {
                    return false;
                };
                if c.parent == CloneParent::Source && !run.is_orig() {
                    return false;
                }
                let orig = CapSlot(run.first_parent + (sva - start) / PAGE);
                let Some(p) = self.caps.pos(&orig) else {
                    return false;
                };
                (p, run.rights)
            }
        };
        if !rights.contains(c.rights) {
            return false;
        }
        // The destination page and the copy slot free.
        let Ok(dst_chunk) = self.by_vaddr.vacancy(c.dst, SMALL, dva) else {
            return false;
        };
        let Ok(copy_chunk) = self.caps.index().vacancy(copy) else {
            return false;
        };
        // The page table: covering the region, or new (with no larger page over the region).
        let base = SMALL.leaf_region(dva);
        let key = LeafTable {
            asid: c.dst,
            table: leaf(base),
            level: LeafLevel::Pt,
        };
        let (lp, idle) = match self.leaves.find(self.hint_leaf, &key) {
            Some(p) if self.leaves.at(p).count > 0 => {
                if self.leaves.at(p).region != base {
                    return false;
                }
                (p, false)
            }
            found => {
                if (self.big[0] > 0 && self.by_vaddr.get(c.dst, PageSize::Large, base).is_some())
                    || (self.big[1] > 0 && self.by_vaddr.get(c.dst, PageSize::Huge, base).is_some())
                {
                    return false;
                }
                (found.unwrap_or(NONE), found.is_some())
            }
        };
        // Accepted: the writes of `apply_clone` for one page.
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            idle_leaves,
            len,
            hint_leaf,
            copy_parents,
            ..
        } = self;
        let lp = match lp {
            NONE => new_leaf_at(key, base, leaves, spaces, spans, idle_leaves),
            p if idle => wake_leaf(p, base, leaves, spans, idle_leaves),
            p => p,
        };
        *hint_leaf = lp;
        let l = leaves.at_mut(lp);
        let counters = l.spans;
        let s = spaces.at_mut(l.space);
        let space_pos = pos32(s.maps.len());
        let (sslot, snode) = caps.entry_at_mut(sp);
        let fpos = snode.frame;
        let (parent, pp) = if c.parent == CloneParent::Source || snode.parent_pos == sp {
            (sslot, sp)
        } else {
            let orig = frames.key_at(fpos);
            (orig, caps.pos(&orig).expect("a frame's original is known"))
        };
        add_child(caps, pp, copy_parents);
        let f = frames.at_mut(fpos);
        let cap = caps.reserve_position();
        let copy_pos = f.copies.push_at(copy);
        let frame_pos = f.mapped.push_at(cap);
        let index = SMALL.entry_index(dva);
        caps.put_at(
            cap,
            copy,
            CapNode {
                frame: fpos,
                parent,
                parent_pos: pp,
                children: 0,
                copy_pos,
                map: Some(Placed {
                    vaddr: dva,
                    leaf: lp,
                    frame_pos,
                    space_pos,
                    index,
                    size: SMALL,
                    rights: c.rights,
                }),
            },
        );
        s.maps.push(cap);
        debug_assert!(!l.is_set(index));
        l.set_range(index, index + 1);
        l.count += 1;
        for sp in counters {
            if sp != NONE {
                spans.at_mut(sp).count += 1;
            }
        }
        *len += 1;
        caps.index_mut().insert_at(copy_chunk, copy, cap);
        by_vaddr.insert(dst_chunk, c.dst, SMALL, dva, cap);
        true
    }

    /// Checks that `c` (with `c.n > 0`) is a clone the fast path takes and that the loop of
    /// [`clone_region`](Self::clone_region) accepts; `None` if not (either may still be so). Gives the
    /// source capabilities (positions) and each destination region's leaf table.
    fn plan_clone<B: Positions>(&self, c: &RegionClone, leaf: &mut impl FnMut(u64) -> CapSlot) -> Option<(B, Planned)> {
        let n = c.n;
        c.in_range()?;
        // Every source mapped, with the rights.
        let mut srcs = B::with_capacity(n);
        // (The source's alignment and end were checked above.) A chunk of the address index at a time: its
        // pages checked, then its positions copied.
        let mut i = 0;
        while i < n {
            let tail = self.by_vaddr.tail(c.src, SMALL, c.src_vaddr + i as u64 * PAGE)?;
            let tail = &tail[..tail.len().min(n - i)];
            for &cap in tail {
                if cap == NONE || !self.caps.at(cap).map.as_ref()?.rights.contains(c.rights) {
                    return None;
                }
            }
            srcs.push_slice(tail);
            i += tail.len();
        }
        // Every destination page and copy slot free (the run's own are distinct).
        if !self.dst_free(c.dst, c.dst_vaddr, n) || !self.copies_free(c) {
            return None;
        }
        Some((srcs, self.plan_leaves(c.dst, c.dst_vaddr, n, leaf)?))
    }

    /// Whether each of the `n` 4 KiB pages of `dst` from `dst_vaddr` (aligned, in range) is free in the
    /// address index.
    fn dst_free(&self, dst: AsId, dst_vaddr: u64, n: usize) -> bool {
        let mut i = 0;
        while i < n {
            let va = dst_vaddr + i as u64 * PAGE;
            i += match self.by_vaddr.tail_or_len(dst, SMALL, va) {
                Err(k) => k,
                Ok(t) => {
                    let t = &t[..t.len().min(n - i)];
                    if t.iter().any(|&v| v != NONE) {
                        return false;
                    }
                    t.len()
                }
            };
        }
        true
    }

    /// Whether every copy slot of `c` (not wrapping) is free in the slot index.
    fn copies_free(&self, c: &RegionClone) -> bool {
        let n = c.n;
        let mut i = 0;
        while i < n {
            i += match self.caps.index().tail_or_len(c.copy(i)) {
                Err(k) => k,
                Ok(t) => {
                    let t = &t[..t.len().min(n - i)];
                    if t.iter().any(|&v| v != NONE) {
                        return false;
                    }
                    t.len()
                }
            };
        }
        true
    }

    /// The page table `leaf(base)` of each 2 MiB region of the `n > 0` 4 KiB pages of `dst` from `dst_vaddr`
    /// (aligned, in range): covering the region, or new (and not new for another region of the run too),
    /// with no larger page over the region; `None` if not.
    fn plan_leaves(
        &self,
        dst: AsId,
        dst_vaddr: u64,
        n: usize,
        leaf: &mut impl FnMut(u64) -> CapSlot,
    ) -> Option<Planned> {
        let bytes = n as u64 * PAGE;
        // Each 2 MiB region's page table: covering the region, or new (and not new for another region of the
        // run too); no larger page over the region (there is none if the table has entries there).
        let first = SMALL.leaf_region(dst_vaddr);
        let last = SMALL.leaf_region(dst_vaddr + bytes - PAGE);
        let key0 = LeafTable {
            asid: dst,
            table: CapSlot(0),
            level: LeafLevel::Pt,
        };
        let mut leaves = Planned::empty((NONE, key0, false));
        for base in (first..=last).step_by(LEAF_SPAN as usize) {
            let key = LeafTable {
                table: leaf(base),
                ..key0
            };
            match self.leaves.find(self.hint_leaf, &key) {
                Some(p) if self.leaves.at(p).count > 0 => {
                    if self.leaves.at(p).region != base {
                        return None;
                    }
                    leaves.push((p, key, false));
                }
                // A new (or idle) leaf node.
                found => {
                    let larger = (self.big[0] > 0 && self.by_vaddr.get(dst, PageSize::Large, base).is_some())
                        || (self.big[1] > 0 && self.by_vaddr.get(dst, PageSize::Huge, base).is_some());
                    if larger || leaves.iter().any(|&(_, k, _)| k == key) {
                        return None;
                    }
                    leaves.push((found.unwrap_or(NONE), key, found.is_some()));
                }
            }
        }
        Some(leaves)
    }

    /// Applies the clone `c` that [`plan_clone`](Self::plan_clone) accepted, with what it found.
    ///
    /// Per page: the copy's node with its record in place, its parent's count of children, its frame's two
    /// lists. Per leaf table: the space's list (appended in one go), the entries in use (a mask per word),
    /// the counters. Per chunk of 64 slots or pages: the slot and address indexes (a copy of the positions).
    fn apply_clone<B: Positions>(&mut self, c: &RegionClone, srcs: &[u32], planned: &[PlannedLeaf]) {
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            idle_leaves,
            len,
            hint_leaf,
            copy_parents,
            ..
        } = self;
        let (rights, n) = (c.rights, srcs.len());
        let mut base = SMALL.leaf_region(c.dst_vaddr);
        // The new copies' positions, taken all at once.
        let mut news = B::with_capacity(n);
        caps.reserve_positions(n, &mut news);
        let news = news.as_ref();
        let mut i = 0;
        for &(lp, key, idle) in planned {
            let end = (((base + LEAF_SPAN - c.dst_vaddr) / PAGE) as usize).min(n);
            let lp = match lp {
                NONE => new_leaf_at(key, base, leaves, spaces, spans, idle_leaves),
                p if idle => wake_leaf(p, base, leaves, spans, idle_leaves),
                p => p,
            };
            *hint_leaf = lp;
            let l = leaves.at_mut(lp);
            let counters = l.spans;
            let s = spaces.at_mut(l.space);
            let space_pos = pos32(s.maps.len() + (end - i)) - (end - i) as u32;
            for (k, &sp) in srcs[i..end].iter().enumerate() {
                let j = i + k;
                // The parent: the source's cap, or the frame's original (usually the same).
                let (sslot, snode) = caps.entry_at_mut(sp);
                let fpos = snode.frame;
                let (parent, pp) = if c.parent == CloneParent::Source || snode.parent_pos == sp {
                    (sslot, sp)
                } else {
                    let orig = frames.key_at(fpos);
                    (orig, caps.pos(&orig).expect("a frame's original is known"))
                };
                add_child(caps, pp, copy_parents);
                let f = frames.at_mut(fpos);
                let copy = c.copy(j);
                let cap = news[j];
                let copy_pos = f.copies.push_at(copy);
                let frame_pos = f.mapped.push_at(cap);
                let va = c.dst_vaddr + j as u64 * PAGE;
                caps.put_at(
                    cap,
                    copy,
                    CapNode {
                        frame: fpos,
                        parent,
                        parent_pos: pp,
                        children: 0,
                        copy_pos,
                        map: Some(Placed {
                            vaddr: va,
                            leaf: lp,
                            frame_pos,
                            space_pos: space_pos + k as u32,
                            index: SMALL.entry_index(va),
                            size: SMALL,
                            rights,
                        }),
                    },
                );
            }
            s.maps.extend_from_slice(&news[i..end]);
            let first = SMALL.entry_index(c.dst_vaddr + i as u64 * PAGE);
            debug_assert!((first..first + (end - i) as u16).all(|x| !l.is_set(x)));
            l.set_range(first, first + (end - i) as u16);
            let k = (end - i) as u32;
            l.count += k;
            for sp in counters {
                if sp != NONE {
                    spans.at_mut(sp).count += k;
                }
            }
            *len += end - i;
            i = end;
            base += LEAF_SPAN;
        }
        // The new copies' slots and pages, a chunk at a time.
        let mut j = 0;
        while j < n {
            j += caps.index_mut().fill(c.copy(j), &news[j..]);
        }
        let mut j = 0;
        while j < n {
            j += by_vaddr.fill(c.dst, SMALL, c.dst_vaddr + j as u64 * PAGE, &news[j..]);
        }
    }

    /// [`clone_region`](Self::clone_region) by its definition: the single operations, undone on a refusal.
    #[cold]
    fn clone_region_slow(
        &mut self,
        c: &RegionClone,
        leaf: &mut impl FnMut(u64) -> CapSlot,
    ) -> Result<(), (usize, CloneRegionError)> {
        let srcs = self
            .source_caps(c.src, c.src_vaddr, c.n, c.rights)
            .map_err(|(i, e)| (i, CloneRegionError::Source(e)))?;
        let mut table = None;
        for (i, &src) in srcs.iter().enumerate() {
            let frame = self.frame_of_cap(src).expect("a mapped cap's frame is known");
            let parent = match c.parent {
                CloneParent::Original => frame.slot,
                CloneParent::Source => src,
            };
            let (copy, va) = (c.copy(i), c.dst_vaddr.wrapping_add(i as u64 * PAGE));
            let region = SMALL.leaf_region(va);
            let t = match table {
                Some((r, t)) if r == region => t,
                _ => {
                    let t = leaf(region);
                    table = Some((region, t));
                    t
                }
            };
            let m = Mapping::new(frame, copy, c.dst, va, SMALL, c.rights, t);
            let err = match self.add_copy(frame, copy, parent) {
                Err(e) => CloneRegionError::Copy(e),
                Ok(()) => match self.insert(m) {
                    Ok(()) => continue,
                    Err(e) => {
                        self.remove_copy(copy).expect("added by this run");
                        CloneRegionError::Insert(e)
                    }
                },
            };
            for j in (0..i).rev() {
                self.remove_by_cap(c.copy(j)).expect("inserted by this run");
                self.remove_copy(c.copy(j)).expect("added by this run");
            }
            return Err((i, err));
        }
        Ok(())
    }

    // ----- destroy -----------------------------------------------------------------------------------------

    /// Destroys a run of mappings as [`destroy_run`](Self::destroy_run) does (the same run, the same
    /// refusals, all or none, the same state after), but hands no records back: removes the `n` mappings of
    /// `asid` whose pages follow each other from the page containing `vaddr`, and forgets the capability of
    /// each that is a copy (an original stays known, unmapped). Returns the index of the refused page and
    /// [`RemoveError::NotMapped`] (a page missing) or [`RemoveError::HasChildren`] (a copy that still has
    /// children when its turn comes), with nothing changed.
    ///
    /// The manager calls [`caps_run`](Self::caps_run) before the kernel unmaps the pages and deletes the
    /// copies, then this. The fast path (4 KiB pages from an aligned `vaddr`, no copy in the run with
    /// children) checks the run first (the address index only, while no copy in the database has children;
    /// else each page's capability too) and then removes each page's entries, last page first, a chunk of the
    /// address index at a time; any other run goes through [`destroy_run`](Self::destroy_run). A one-page
    /// destroy takes its own fast path (one lookup of the page) when the general fast path would.
    ///
    /// Pages all in copy runs are removed a run at a time (O(1) per run met: a run cut in the middle leaves
    /// two). A run over only some of the pages is materialised first, and the pages go the ways above.
    pub fn destroy_region(&mut self, asid: AsId, vaddr: u64, n: usize) -> Result<(), (usize, RemoveError)> {
        if n == 0 {
            return Ok(());
        }
        // A page indexed per page is in no run: the one-page fast path needs no look at the runs.
        if n == 1 && self.destroy_one(asid, vaddr) {
            return Ok(());
        }
        if !self.runs.is_empty() {
            if self.destroy_runs(asid, vaddr, n) {
                return Ok(());
            }
            // Pages not all in runs: those runs materialised, then per page.
            let lo = SMALL.align_down(vaddr);
            self.settle_addr(asid, lo, lo.saturating_add((n as u64).saturating_mul(PAGE)));
        }
        if n == 1 && self.destroy_one(asid, vaddr) {
            return Ok(());
        }
        // The fast path: 4 KiB pages from an aligned address, all mapped, no copy among them with children
        // (none has any while no copy at all has).
        if !SMALL.is_aligned(vaddr) || !self.run_mapped(asid, vaddr, n) || !self.run_childless(asid, vaddr, n) {
            return self.destroy_run(asid, vaddr, n).map(drop);
        }
        self.apply_destroy(asid, vaddr, n);
        Ok(())
    }

    /// The run path of [`destroy_region`](Self::destroy_region): if the `n > 0` pages from `vaddr` are all in
    /// runs, removes them, each run's part in O(1) (a run cut in the middle leaves two); whether it did (if
    /// not, nothing has changed).
    fn destroy_runs(&mut self, asid: AsId, vaddr: u64, n: usize) -> bool {
        let Some(end) = (n as u64).checked_mul(PAGE).and_then(|b| vaddr.checked_add(b)) else {
            return false;
        };
        if !SMALL.is_aligned(vaddr) || end > USER_VADDR_END {
            return false;
        }
        let mut va = vaddr;
        while va < end {
            match self.runs.at(asid, va) {
                Some((k, r)) => va = r.end(k.1),
                None => return false,
            }
        }
        let mut va = vaddr;
        while va < end {
            let (k, r) = self.runs.at(asid, va).expect("checked above");
            let (off, len) = ((va - k.1) / PAGE, (r.end(k.1).min(end) - va) / PAGE);
            self.cut_run(k, off, len);
            va += len * PAGE;
        }
        true
    }

    /// The fast path of a one-page [`destroy_region`](Self::destroy_region): the checks and writes of
    /// [`apply_destroy`](Self::apply_destroy) for one page, with one lookup of the page. Whether it took it
    /// (not for an unaligned address, a page without a 4 KiB mapping of its own or a copy with children; then
    /// nothing has changed).
    #[inline(always)]
    fn destroy_one(&mut self, asid: AsId, vaddr: u64) -> bool {
        if !SMALL.is_aligned(vaddr) || vaddr >= USER_VADDR_END {
            return false;
        }
        let Some(cap) = self.by_vaddr.get(asid, SMALL, vaddr) else {
            return false;
        };
        let node = self.caps.at(cap);
        let copy = node.parent_pos != cap;
        if copy && node.children > 0 {
            return false;
        }
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            idle_leaves,
            len,
            copy_parents,
            ..
        } = self;
        let (slot, node) = caps.entry_at_mut(cap);
        let p = node.map.take().expect("indexed cap is mapped");
        let (fpos, parent_pos, copy_pos) = (node.frame, node.parent_pos, node.copy_pos);
        let f = frames.at_mut(fpos);
        if let Some(moved) = f.mapped.swap_remove(pos(p.frame_pos)) {
            placed_mut(caps, moved).frame_pos = p.frame_pos;
        }
        let space = leaves.at(p.leaf).space;
        if let Some(moved) = swap_remove(&mut spaces.at_mut(space).maps, pos(p.space_pos)) {
            placed_mut(caps, moved).space_pos = p.space_pos;
        }
        if copy {
            // Without children: forgotten, as `remove_copy` would.
            caps.free_at(cap);
            drop_child(caps, parent_pos, copy_parents);
            if let Some(moved) = f.copies.swap_remove(pos(copy_pos)) {
                caps.get_mut(&moved).expect("listed copy").copy_pos = copy_pos;
            }
        }
        let cleared = by_vaddr.clear(asid, SMALL, vaddr, 1);
        debug_assert_eq!(cleared, 1);
        leaf_removed(leaves, spaces, spans, idle_leaves, p.leaf, p.index, p.index + 1, 1);
        *len -= 1;
        if copy {
            caps.index_mut().clear(slot, 1);
        }
        true
    }

    /// Whether each of the `n` consecutive 4 KiB pages of `asid` from `vaddr` (aligned) has a mapping of its
    /// own: the address index read a chunk at a time, no capability node read.
    fn run_mapped(&self, asid: AsId, vaddr: u64, n: usize) -> bool {
        let (mut i, mut va) = (0, vaddr);
        while i < n {
            if va >= USER_VADDR_END {
                return false;
            }
            let Some(tail) = self.by_vaddr.tail(asid, SMALL, va) else {
                return false;
            };
            let tail = &tail[..tail.len().min(n - i)];
            if tail.contains(&NONE) {
                return false;
            }
            i += tail.len();
            va += tail.len() as u64 * PAGE;
        }
        true
    }

    /// Whether no copy among the capabilities of the run (all mapped, see [`run_mapped`](Self::run_mapped))
    /// has children: so when no copy in the database has any, else by reading each page's node.
    fn run_childless(&self, asid: AsId, vaddr: u64, n: usize) -> bool {
        if self.copy_parents == 0 {
            return true;
        }
        let mut ok = true;
        let all = self.source_run(asid, vaddr, n, Rights::empty(), |cap, _| {
            let node = self.caps.at(cap);
            ok &= node.parent_pos == cap || node.children == 0;
        });
        all.is_ok() && ok
    }

    /// Applies the [`destroy_region`](Self::destroy_region) of the run (`n > 0`) that
    /// [`run_mapped`](Self::run_mapped) and [`run_childless`](Self::run_childless) accepted.
    ///
    /// Last page first (the records a clone appended to its space's and frames' lists come off their ends),
    /// a chunk of the address index at a time: per page, the record and the capability's node (a copy's is
    /// freed), the frame's lists and the space's list; per run of pages of one leaf table, its entries in use
    /// and counters; per chunk of 64 slots or pages, the slot and address indexes.
    fn apply_destroy(&mut self, asid: AsId, vaddr: u64, n: usize) {
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            idle_leaves,
            len,
            copy_parents,
            ..
        } = self;
        let space = spaces.pos(&asid).expect("the space of mapped pages");
        // The space's list, out of its node while leaves are emptied (which never removes this space: the
        // leaf emptied last names it).
        let mut maps = core::mem::take(&mut spaces.at_mut(space).maps);
        // The forgotten copies' slots not yet out of the slot index.
        let mut gone = Gone::default();
        let copies_childless = *copy_parents == 0;
        // The leaf of the pages since the last flush, how many, and the entry range they cover.
        let (mut leaf, mut k, mut lo, mut hi) = (NONE, 0u32, 0u16, 0u16);
        let mut j = n;
        while j > 0 {
            // The pages of the chunk holding page j - 1, from the run's start or the chunk's.
            let at = ((vaddr + (j as u64 - 1) * PAGE) >> 12) as usize & (CHUNK - 1);
            let m = (at + 1).min(j);
            let va = vaddr + (j - m) as u64 * PAGE;
            let tail = by_vaddr.tail(asid, SMALL, va).expect("chunk of mapped pages");
            for &cap in tail[..m].iter().rev() {
                let (slot, node) = caps.entry_at_mut(cap);
                let p = node.map.take().expect("indexed cap is mapped");
                let (fpos, parent_pos, copy_pos) = (node.frame, node.parent_pos, node.copy_pos);
                if p.leaf != leaf {
                    if k > 0 {
                        leaf_removed(leaves, spaces, spans, idle_leaves, leaf, lo, hi, k);
                    }
                    (leaf, k, hi) = (p.leaf, 0, p.index + 1);
                }
                k += 1;
                lo = p.index;
                let f = frames.at_mut(fpos);
                if let Some(moved) = f.mapped.swap_remove(pos(p.frame_pos)) {
                    placed_mut(caps, moved).frame_pos = p.frame_pos;
                }
                if let Some(moved) = swap_remove(&mut maps, pos(p.space_pos)) {
                    placed_mut(caps, moved).space_pos = p.space_pos;
                }
                if parent_pos != cap {
                    // A copy (an original is its own parent), without children: forgotten, as `remove_copy`
                    // would (its slot leaves the index below).
                    debug_assert_eq!(caps.at(cap).children, 0);
                    caps.free_at(cap);
                    if copies_childless {
                        // Then every parent is an original, which `copy_parents` does not count.
                        caps.at_mut(parent_pos).children -= 1;
                    } else {
                        drop_child(caps, parent_pos, copy_parents);
                    }
                    if let Some(moved) = f.copies.swap_remove(pos(copy_pos)) {
                        caps.get_mut(&moved).expect("listed copy").copy_pos = copy_pos;
                    }
                    gone.push(caps, slot);
                }
            }
            let cleared = by_vaddr.clear(asid, SMALL, va, m);
            debug_assert_eq!(cleared, m);
            j -= m;
        }
        spaces.at_mut(space).maps = maps;
        leaf_removed(leaves, spaces, spans, idle_leaves, leaf, lo, hi, k);
        *len -= n;
        gone.flush(caps);
    }
}

/// The slots of copies a destroy has forgotten (nodes freed) whose entries in the slot index are not yet
/// cleared: a run of consecutive slots `first..first + len`, which grows downwards (a destroy meets the
/// copies of a clone last slot first) and is cleared a chunk at a time when the next slot does not extend it.
#[derive(Default)]
struct Gone {
    first: u64,
    len: usize,
}

impl Gone {
    /// Adds `slot` to the run, clearing the run first if `slot` does not extend it.
    #[inline(always)]
    fn push(&mut self, caps: &mut crate::db::Caps, slot: CapSlot) {
        if self.len > 0 && slot.0.wrapping_add(1) != self.first {
            self.flush(caps);
        }
        self.first = slot.0;
        self.len += 1;
    }

    /// Clears the run from the slot index, a chunk at a time.
    #[inline(always)]
    fn flush(&mut self, caps: &mut crate::db::Caps) {
        let mut done = 0;
        while done < self.len {
            done += caps
                .index_mut()
                .clear(CapSlot(self.first.wrapping_add(done as u64)), self.len - done);
        }
        self.len = 0;
    }
}

/// Takes the `k` records of entries `lo..hi` of the leaf at `leaf` off it and its span counters; a leaf left
/// empty becomes idle.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn leaf_removed(
    leaves: &mut Table<LeafTable, LeafNode>,
    spaces: &mut Table<AsId, SpaceNode>,
    spans: &mut Table<SpanKey, SpanNode>,
    idle: &mut IdleLeaves,
    leaf: u32,
    lo: u16,
    hi: u16,
    k: u32,
) {
    let l = leaves.at_mut(leaf);
    debug_assert!(k == u32::from(hi - lo) && (lo..hi).all(|x| l.is_set(x)));
    l.clear_range(lo, hi);
    l.count -= k;
    let (counters, empty) = (l.spans, l.count == 0);
    for sp in counters {
        if sp != NONE {
            spans.at_mut(sp).count -= k;
        }
    }
    if empty {
        leaf_emptied(leaves, spaces, spans, idle, leaf);
    }
}
