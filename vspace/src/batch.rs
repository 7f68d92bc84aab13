//! [`MapBatch`]: maps collected first, checked against the shadow, then dispatched per leaf-table run.
//!
//! [`AddressSpace::map`] goes through the same two steps ([`plan`], then [`commit_range`]) without a batch
//! object: one range needs no copy of its caps and no index of earlier adds.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hashbrown::HashSet;

use crate::addr::{FrameSize, PageRange, PageSize, TableLevel, VirtAddr};
use crate::attr::{CacheAttr, Rights};
use crate::capmap::CapMap;
use crate::error::{MapError, Rollback};
use crate::kernel::{CapRef, KernelFailure, KernelOp, LeafRun, RunFailure, VSpaceKernel};
use crate::shadow::{Meta, RunPos, Shadow, TableKey, ENTRIES};
use crate::space::{candidate, in_user_range, AddressSpace, Candidates, OnEmpty, UnmapOutcome};

/// Pages of one size, rights and attribute added together: `pages` pages from `start`, mapping the
/// batch's caps `off..off + pages`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg {
    pub start: u64,
    pub pages: usize,
    pub size: FrameSize,
    pub rights: Rights,
    pub attr: CacheAttr,
    pub off: usize,
}

/// What the earlier adds of a batch hold, for the checks of a later one.
#[derive(Clone, Copy)]
pub(crate) struct Prior<'p> {
    /// Start -> end of every range added (disjoint).
    ranges: &'p BTreeMap<u64, u64>,
    /// Tables they will allocate.
    tables: &'p HashSet<TableKey>,
}

/// Maps collected by [`MapBatch::add`] and dispatched together by [`MapBatch::commit`] (the flush-token
/// pattern: nothing reaches the kernel until `commit`, and dropping the batch maps nothing).
///
/// Each `add` is checked at once, against the shadow and the pages added before it, so every refusal comes
/// before any kernel call. `commit` then allocates and maps the missing tables (parents first) and maps the
/// pages with one [`VSpaceKernel::map_frames_run`] call per run of consecutive entries in one leaf table
/// with the same rights and attribute. The whole batch is all or nothing.
#[must_use = "a MapBatch maps nothing until `commit`"]
pub struct MapBatch<'a> {
    space: &'a mut AddressSpace,
    /// The ranges added, in the order added.
    segs: Vec<Seg>,
    /// Their caps, concatenated in the same order.
    caps: Vec<CapRef>,
    /// The same caps, to refuse one added twice.
    cap_set: HashSet<CapRef>,
    /// Start -> end of the ranges added.
    ranges: BTreeMap<u64, u64>,
    /// Missing tables, parents before children.
    new_tables: Vec<TableKey>,
    table_index: HashSet<TableKey>,
}

impl<'a> MapBatch<'a> {
    pub(crate) fn new(space: &'a mut AddressSpace) -> Self {
        Self {
            space,
            segs: Vec::new(),
            caps: Vec::new(),
            cap_set: HashSet::new(),
            ranges: BTreeMap::new(),
            new_tables: Vec::new(),
            table_index: HashSet::new(),
        }
    }

    /// Pages added so far.
    pub fn len(&self) -> usize {
        self.caps.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }

    /// Paging structures `commit` will allocate.
    pub fn tables_needed(&self) -> usize {
        self.new_tables.len()
    }

    /// Adds the map of `frames[i]` at the `i`-th page of `range`. On a refusal the batch is unchanged.
    pub fn add<S: PageSize>(
        &mut self,
        range: PageRange<S>,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), MapError> {
        let prior = (!self.segs.is_empty()).then_some(Prior {
            ranges: &self.ranges,
            tables: &self.table_index,
        });
        let before = self.new_tables.len();
        let caps = CapIndex::Batch(&mut self.cap_set);
        plan(self.space, prior, caps, range, frames, rights, &mut self.new_tables)?;
        self.table_index.extend(self.new_tables[before..].iter().copied());
        let (start, end) = range.bounds();
        self.ranges.insert(start, end);
        self.segs.push(Seg {
            start,
            pages: frames.len(),
            size: S::FRAME,
            rights,
            attr,
            off: self.caps.len(),
        });
        self.caps.extend_from_slice(frames);
        Ok(())
    }

    /// Maps everything added, all or nothing. On a kernel failure every call made is undone (frames
    /// unmapped, tables unmapped and freed) and the error says whether the undo was complete.
    pub fn commit<K: VSpaceKernel + ?Sized>(self, k: &mut K) -> Result<(), MapError> {
        let MapBatch {
            space,
            mut segs,
            caps,
            new_tables,
            ..
        } = self;
        // Address order (the ranges are disjoint), with the caps in the same order.
        if segs.windows(2).all(|w| w[0].start < w[1].start) {
            commit_segs(space, k, &segs, &caps, &new_tables)
        } else {
            segs.sort_unstable_by_key(|s| s.start);
            let mut sorted = Vec::with_capacity(caps.len());
            for s in &mut segs {
                let off = sorted.len();
                sorted.extend_from_slice(&caps[s.off..s.off + s.pages]);
                s.off = off;
            }
            commit_segs(space, k, &segs, &sorted, &new_tables)
        }
    }

    /// Drops the batch: nothing was mapped.
    pub fn cancel(self) {}
}

/// Removes caps entered in the space's cap index by [`plan`] whose pages were not mapped.
fn forget_caps(by_cap: &mut CapMap, caps: &[CapRef]) {
    by_cap.remove_run(caps);
}

/// Where [`plan`] enters the caps it accepts (to refuse a cap mapped already or given twice).
pub(crate) enum CapIndex<'c> {
    /// The space's cap index, with their pages: [`AddressSpace::map`], whose commit follows at once
    /// ([`commit_range`] keeps the entries of the pages it maps and removes the others).
    Space,
    /// A batch's own set; the space's index is only read ([`commit_segs`] enters the pages it maps).
    Batch(&'c mut HashSet<CapRef>),
}

/// The refusals of a map of `frames` at `range`, in the order of [`MapError`]'s variants; for the overlap
/// and cap checks, the first page (in order) that fails either, overlap first. On success every cap is
/// entered in `caps_to`, and the tables the range needs that neither the shadow nor `prior` has are
/// appended to `new_tables` (parents first, in page order). On a refusal nothing changes.
pub(crate) fn plan<S: PageSize>(
    space: &mut AddressSpace,
    prior: Option<Prior<'_>>,
    caps_to: CapIndex<'_>,
    range: PageRange<S>,
    frames: &[CapRef],
    rights: Rights,
    new_tables: &mut Vec<TableKey>,
) -> Result<(), MapError> {
    if range.is_empty() {
        return Err(MapError::EmptyRange);
    }
    if !rights.is_valid() {
        return Err(MapError::WriteWithoutRead);
    }
    if range.len() != frames.len() as u64 {
        return Err(MapError::FrameCountMismatch {
            pages: range.len(),
            frames: frames.len(),
        });
    }
    let (start, end) = range.bounds();
    if !in_user_range(start, end) {
        return Err(MapError::OutsideUserRange { start, end });
    }
    let before = new_tables.len();
    let mut overlap = scan::<S>(&mut space.shadow, start, end, prior, new_tables);
    if let Some(p) = prior {
        overlap = match (overlap, first_overlap_in(p.ranges, start, end, S::BITS)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    // The caps of the pages before the first overlap, in order; each insertion also refuses a cap
    // mapped already, added earlier to the batch, or twice in this request.
    let checked = overlap.unwrap_or(frames.len());
    let refused = match caps_to {
        CapIndex::Space => {
            let by_cap = &mut space.shadow.by_cap;
            let refused = by_cap.insert_run(&frames[..checked], start, S::BITS).err();
            forget_caps(by_cap, &frames[..refused.or(overlap).unwrap_or(0)]);
            refused
        }
        CapIndex::Batch(set) => {
            let by_cap = &space.shadow.by_cap;
            set.reserve(checked);
            let refused = frames[..checked]
                .iter()
                .position(|&cap| by_cap.contains(cap) || !set.insert(cap));
            for cap in &frames[..refused.or(overlap).unwrap_or(0)] {
                set.remove(cap);
            }
            refused
        }
    };
    if let Some(i) = refused {
        new_tables.truncate(before);
        return Err(MapError::FrameAlreadyMapped { frame: frames[i] });
    }
    if let Some(o) = overlap {
        new_tables.truncate(before);
        return Err(MapError::Overlap {
            vaddr: VirtAddr::new_unchecked(start + ((o as u64) << S::BITS)),
        });
    }
    Ok(())
}

/// [`AddressSpace::map`] of a range inside one leaf table the space has (slab slot `slot`): the common
/// page-fault-sized case, with no walk from the root, no list of tables and no run splitting. The caller
/// checked what [`plan`] checks before the overlap (range not empty, rights, one cap per page, user range);
/// the rest (overlap, caps, kernel calls, rollback) is exactly [`plan`] then [`commit_range`] for such a
/// range: the ancestors of a present leaf table hold it, so only its own entries can overlap, and no table
/// is missing.
pub(crate) fn map_in_table<S: PageSize, K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    slot: usize,
    start: u64,
    frames: &[CapRef],
    rights: Rights,
    attr: CacheAttr,
) -> Result<(), MapError> {
    let n = frames.len();
    let first = S::LEVEL.index_of(start) as usize;
    if let [frame] = frames {
        return map_one::<S, K>(space, k, slot, first, start, *frame, rights, attr);
    }
    let overlap = space.shadow.at(slot).next_occupied(first, first + n).map(|j| j - first);
    let checked = overlap.unwrap_or(n);
    let by_cap = &mut space.shadow.by_cap;
    if let Err(i) = by_cap.insert_run(&frames[..checked], start, S::BITS) {
        forget_caps(by_cap, &frames[..i]);
        return Err(MapError::FrameAlreadyMapped { frame: frames[i] });
    }
    if let Some(o) = overlap {
        forget_caps(by_cap, &frames[..o]);
        return Err(MapError::Overlap {
            vaddr: VirtAddr::new_unchecked(start + ((o as u64) << S::BITS)),
        });
    }
    let seg = Seg {
        start,
        pages: n,
        size: S::FRAME,
        rights,
        attr,
        off: 0,
    };
    let r = Run {
        pos: RunPos {
            level: S::LEVEL,
            base: S::LEVEL.base_of(start),
            first,
            count: n,
        },
        size: S::FRAME,
        rights,
        attr,
        off: 0,
    };
    map_run_at(space, k, slot, &r, core::slice::from_ref(&seg), frames, &[], true)
}

/// [`map_in_table`] of one page, in entry `i` of the leaf table in slab slot `slot`: the same refusals,
/// kernel call, shadow update and (out of line) rollback, without the run bookkeeping.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn map_one<S: PageSize, K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    slot: usize,
    i: usize,
    start: u64,
    frame: CapRef,
    rights: Rights,
    attr: CacheAttr,
) -> Result<(), MapError> {
    let root = space.root();
    let (t, by_cap, frame_count) = space.shadow.split_mut(slot);
    if t.frames.get(i) || t.children.get(i) {
        return Err(MapError::Overlap {
            vaddr: VirtAddr::new_unchecked(start),
        });
    }
    let frames = core::slice::from_ref(&frame);
    if by_cap.insert_run(frames, start, S::BITS).is_err() {
        return Err(MapError::FrameAlreadyMapped { frame });
    }
    let run = LeafRun {
        level: S::LEVEL,
        table: t.cap,
        first_index: i as u16,
        vaddr: VirtAddr::new_unchecked(start),
        size: S::FRAME,
    };
    match k.map_frames_run(root, &run, frames, rights, attr) {
        Ok(()) => {
            t.insert_frames(i, frames, Meta { rights, attr });
            frame_count[S::FRAME as usize] += 1;
            Ok(())
        }
        Err(e) => map_one_failed::<S, K>(space, k, slot, i, start, frame, rights, attr, e),
    }
}

/// [`map_one`] after the kernel refused: what [`map_run_at`] does then.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn map_one_failed<S: PageSize, K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    slot: usize,
    i: usize,
    start: u64,
    frame: CapRef,
    rights: Rights,
    attr: CacheAttr,
    e: RunFailure,
) -> Result<(), MapError> {
    let frames = core::slice::from_ref(&frame);
    let done = e.done.min(1);
    let (t, _, frame_count) = space.shadow.split_mut(slot);
    t.insert_frames(i, &frames[..done], Meta { rights, attr });
    frame_count[S::FRAME as usize] += done;
    let seg = Seg {
        start,
        pages: 1,
        size: S::FRAME,
        rights,
        attr,
        off: 0,
    };
    let r = Run {
        pos: RunPos {
            level: S::LEVEL,
            base: S::LEVEL.base_of(start),
            first: i,
            count: 1,
        },
        size: S::FRAME,
        rights,
        attr,
        off: 0,
    };
    let vaddr = VirtAddr::new_unchecked(r.pos.vaddr_of(done));
    map_run_failed(
        space,
        k,
        &r,
        core::slice::from_ref(&seg),
        frames,
        &[],
        true,
        vaddr,
        e.failure,
    )
}

/// Walks the pages `[start, end)` of size `S` one leaf table at a time: returns the index of the first page
/// that overlaps a mapping of the shadow (a frame there or around it, or for a large page a table of
/// smaller pages in its entry), and appends the missing tables (not in `prior` either) to `new_tables`.
fn scan<S: PageSize>(
    sh: &mut Shadow,
    start: u64,
    end: u64,
    prior: Option<Prior<'_>>,
    new_tables: &mut Vec<TableKey>,
) -> Option<usize> {
    let leaf = S::LEVEL;
    let bits = S::BITS;
    let mut last: [Option<u64>; 3] = [None; 3];
    let mut v = start;
    while v < end {
        let leaf_base = leaf.base_of(v);
        let chunk_end = end.min(leaf_base + (1 << leaf.span_bits()));
        let pages = ((chunk_end - v) >> bits) as usize;
        let i = leaf.index_of(v) as usize;
        if let Some(s) = sh.hinted(leaf, leaf_base) {
            // The leaf table is present: so are its ancestors, holding it (not a frame) in their entries.
            if let Some(j) = sh.at(s).next_occupied(i, i + pages) {
                return Some(((v - start) >> bits) as usize + (j - i));
            }
            v = chunk_end;
            continue;
        }
        // The slab slot of the table of the level reached (a missing table has no descendants).
        let mut slot = sh.root_child(v);
        for level in TableLevel::ALL.into_iter().filter(|&l| l <= leaf) {
            let Some(s) = slot else {
                let base = level.base_of(v);
                if last[level.ordinal()] != Some(base) {
                    last[level.ordinal()] = Some(base);
                    if !prior.is_some_and(|p| p.tables.contains(&(level, base))) {
                        new_tables.push((level, base));
                    }
                }
                continue;
            };
            let t = sh.at(s);
            if level == leaf {
                sh.remember(leaf, leaf_base, s);
                if let Some(j) = sh.at(s).next_occupied(i, i + pages) {
                    return Some(((v - start) >> bits) as usize + (j - i));
                }
                break;
            }
            let i = level.index_of(v) as usize;
            if t.frames.get(i) {
                // Inside a larger frame.
                return Some(((v - start) >> bits) as usize);
            } else {
                slot = t.child_at(i);
            }
        }
        v = chunk_end;
    }
    None
}

/// The index of the first page of `[start, end)` (pages of `2^bits` bytes) that meets one of `ranges`.
fn first_overlap_in(ranges: &BTreeMap<u64, u64>, start: u64, end: u64, bits: u32) -> Option<usize> {
    if ranges.range(..=start).next_back().is_some_and(|(_, &e)| e > start) {
        return Some(0);
    }
    ranges
        .range(start..end)
        .next()
        .map(|(&s, _)| ((s - start) >> bits) as usize)
}

/// A run of pages of a batch: consecutive entries of one leaf table.
#[derive(Clone, Copy, Debug)]
struct Run {
    pos: RunPos,
    size: FrameSize,
    rights: Rights,
    attr: CacheAttr,
    /// Index of its first page (and cap) in address order.
    off: usize,
}

/// The runs of the first `limit` pages (in address order) of `segs`, split at leaf tables, sizes, holes,
/// and if `by_attr` changes of rights or attribute.
struct Runs<'s> {
    segs: &'s [Seg],
    seg: usize,
    /// Pages of `segs[seg]` done.
    pos: usize,
    /// Pages done.
    done: usize,
    limit: usize,
    by_attr: bool,
    next: Option<Run>,
}

impl<'s> Runs<'s> {
    fn new(segs: &'s [Seg], limit: usize, by_attr: bool) -> Self {
        Self {
            segs,
            seg: 0,
            pos: 0,
            done: 0,
            limit,
            by_attr,
            next: None,
        }
    }

    /// The next part of a range inside one leaf table.
    fn piece(&mut self) -> Option<Run> {
        while let Some(s) = self.segs.get(self.seg) {
            if self.pos == s.pages {
                self.seg += 1;
                self.pos = 0;
                continue;
            }
            if self.done >= self.limit {
                return None;
            }
            let v = s.start + ((self.pos as u64) << s.size.bits());
            let level = s.size.level();
            let first = level.index_of(v) as usize;
            let count = (ENTRIES - first).min(s.pages - self.pos).min(self.limit - self.done);
            let run = Run {
                pos: RunPos {
                    level,
                    base: level.base_of(v),
                    first,
                    count,
                },
                size: s.size,
                rights: s.rights,
                attr: s.attr,
                off: self.done,
            };
            self.pos += count;
            self.done += count;
            return Some(run);
        }
        None
    }
}

impl Iterator for Runs<'_> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        if self.segs.len() == 1 {
            // The pieces of one range are in distinct tables.
            return self.piece();
        }
        let mut cur = match self.next.take() {
            Some(r) => r,
            None => self.piece()?,
        };
        loop {
            match self.piece() {
                Some(p)
                    if p.size == cur.size
                        && p.pos.base == cur.pos.base
                        && p.pos.first == cur.pos.first + cur.pos.count
                        && (!self.by_attr || (p.rights, p.attr) == (cur.rights, cur.attr)) =>
                {
                    cur.pos.count += p.pos.count;
                }
                other => {
                    self.next = other;
                    return Some(cur);
                }
            }
        }
    }
}

/// Maps the planned `segs` of a batch (address order; `caps` in the same order), after allocating and
/// mapping `new_tables`, and enters the caps mapped in the space's cap index. All or nothing: on a kernel
/// failure the calls made are undone.
pub(crate) fn commit_segs<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    segs: &[Seg],
    caps: &[CapRef],
    new_tables: &[TableKey],
) -> Result<(), MapError> {
    create_tables(space, k, segs, caps, new_tables, false)?;
    for r in Runs::new(segs, caps.len(), true) {
        map_run(space, k, &r, segs, caps, new_tables, false)?;
    }
    Ok(())
}

/// [`commit_segs`] for the one range of [`AddressSpace::map`], pages of size `S`, whose caps [`plan`]
/// entered in the space's cap index: its pieces in distinct leaf tables are the runs. On a kernel failure,
/// the entries of the pages not mapped are removed.
pub(crate) fn commit_range<S: PageSize, K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    seg: &Seg,
    caps: &[CapRef],
    new_tables: &[TableKey],
) -> Result<(), MapError> {
    let segs = core::slice::from_ref(seg);
    create_tables(space, k, segs, caps, new_tables, true)?;
    let mut off = 0;
    while off < seg.pages {
        let v = seg.start + ((off as u64) << S::BITS);
        let first = S::LEVEL.index_of(v) as usize;
        let count = (ENTRIES - first).min(seg.pages - off);
        let r = Run {
            pos: RunPos {
                level: S::LEVEL,
                base: S::LEVEL.base_of(v),
                first,
                count,
            },
            size: S::FRAME,
            rights: seg.rights,
            attr: seg.attr,
            off,
        };
        map_run(space, k, &r, segs, caps, new_tables, true)?;
        off += count;
    }
    Ok(())
}

/// Allocates and maps `new_tables` (parents first), recording each in the shadow. On a failure, undoes the
/// commit (and if the caps are `indexed`, entered in the space's cap index by [`plan`], removes them).
fn create_tables<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    segs: &[Seg],
    caps: &[CapRef],
    new_tables: &[TableKey],
    indexed: bool,
) -> Result<(), MapError> {
    let root = space.root();
    for (i, &(level, base)) in new_tables.iter().enumerate() {
        // The tables created so far.
        let created = &new_tables[..i];
        let cap = match k.alloc_table(level) {
            Ok(cap) => cap,
            Err(failure) => {
                if indexed {
                    forget_caps(&mut space.shadow.by_cap, caps);
                }
                let rollback = undo_map(space, k, segs, 0, created);
                return Err(MapError::OutOfMemory {
                    level,
                    failure,
                    rollback,
                });
            }
        };
        if let Err(failure) = k.map_table(level, cap, root, VirtAddr::new_unchecked(base)) {
            k.free_table(level, cap);
            if indexed {
                forget_caps(&mut space.shadow.by_cap, caps);
            }
            let rollback = undo_map(space, k, segs, 0, created);
            return Err(MapError::Kernel {
                op: KernelOp::MapTable,
                vaddr: VirtAddr::new_unchecked(base),
                failure,
                rollback,
            });
        }
        space.shadow.insert_table(level, base, cap);
    }
    Ok(())
}

/// Maps run `r` of a commit (its caps are `caps[r.off..]`) and records what the kernel mapped, entering
/// the caps in the space's cap index unless they are `indexed` already. On a failure, undoes the commit
/// (`created`: the tables it created) and removes the `indexed` entries of the pages not mapped.
fn map_run<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    r: &Run,
    segs: &[Seg],
    caps: &[CapRef],
    created: &[TableKey],
    indexed: bool,
) -> Result<(), MapError> {
    let slot = space
        .shadow
        .find_hinted(r.pos.level, r.pos.base)
        .expect("shadow: leaf table missing");
    map_run_at(space, k, slot, r, segs, caps, created, indexed)
}

/// [`map_run`] into the leaf table in slab slot `slot`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn map_run_at<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    slot: usize,
    r: &Run,
    segs: &[Seg],
    caps: &[CapRef],
    created: &[TableKey],
    indexed: bool,
) -> Result<(), MapError> {
    let root = space.root();
    let level = r.pos.level;
    let (t, by_cap, frame_count) = space.shadow.split_mut(slot);
    let run = LeafRun {
        level,
        table: t.cap,
        first_index: r.pos.first as u16,
        vaddr: VirtAddr::new_unchecked(r.pos.vaddr_of(0)),
        size: r.size,
    };
    let frames = &caps[r.off..r.off + r.pos.count];
    let res = k.map_frames_run(root, &run, frames, r.rights, r.attr);
    let done = match res {
        Ok(()) => frames.len(),
        Err(e) => e.done,
    };
    let meta = Meta {
        rights: r.rights,
        attr: r.attr,
    };
    t.insert_frames(r.pos.first, &frames[..done], meta);
    frame_count[r.size as usize] += done;
    if !indexed {
        let entered = by_cap.insert_run(&frames[..done], r.pos.vaddr_of(0), r.size.bits());
        debug_assert!(entered.is_ok(), "a batch's cap mapped already");
    }
    match res {
        Ok(()) => Ok(()),
        Err(e) => map_run_failed(space, k, r, segs, caps, created, indexed, run.vaddr_of(done), e.failure),
    }
}

/// The end of [`map_run_at`] when the kernel mapped only the first `done` pages of run `r` (recorded
/// already; `vaddr` is the next): removes the `indexed` entries of the pages not mapped and undoes the
/// commit. Out of line: the successful map does not carry it.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn map_run_failed<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    r: &Run,
    segs: &[Seg],
    caps: &[CapRef],
    created: &[TableKey],
    indexed: bool,
    vaddr: VirtAddr,
    failure: KernelFailure,
) -> Result<(), MapError> {
    let done = ((vaddr.as_u64() - r.pos.vaddr_of(0)) >> r.size.bits()) as usize;
    if indexed {
        forget_caps(&mut space.shadow.by_cap, &caps[r.off + done..]);
    }
    let rollback = undo_map(space, k, segs, r.off + done, created);
    Err(MapError::Kernel {
        op: KernelOp::MapFrame,
        vaddr,
        failure,
        rollback,
    })
}

/// Undoes a failed commit: unmaps the frames it mapped (the first `mapped` pages of `segs`, in address
/// order) and reclaims the tables it created, and only those.
fn undo_map<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    segs: &[Seg],
    mapped: usize,
    created: &[TableKey],
) -> Rollback {
    let mut out = UnmapOutcome::new(false, 0);
    let mut candidates: Candidates = created.iter().copied().map(candidate).collect();
    let mut on_empty = OnEmpty::Collect(&mut candidates);
    for r in Runs::new(segs, mapped, false) {
        let slot = space
            .shadow
            .find(r.pos.level, r.pos.base)
            .expect("shadow: leaf table missing");
        space.unmap_run(k, r.pos, slot, &mut out, &mut on_empty);
    }
    let only: HashSet<TableKey> = created.iter().copied().collect();
    let (_, table_failure) = space.reclaim_pass(k, candidates, Some(&only));
    let tables_kept = created
        .iter()
        .filter(|&&(l, b)| space.shadow.table(l, b).is_some())
        .count();
    let failure: Option<KernelFailure> = out.failures.first().map(|&(_, _, f)| f).or(table_failure);
    match failure {
        None => {
            debug_assert_eq!(tables_kept, 0, "a table stays only if an unmap was refused");
            Rollback::Complete
        }
        Some(failure) => Rollback::Incomplete {
            failure,
            residue: out
                .failures
                .iter()
                .map(|&(v, cap, _)| (VirtAddr::new_unchecked(v), cap))
                .collect(),
            tables_kept,
        },
    }
}
