//! The user-level shadow of one VSpace: which paging structures exist (with their entry counts) and which
//! frames are mapped where. See the crate documentation for its invariants.
//!
//! Layout: the tables' records live in a slab and form the tree the kernel's tables form (the root's
//! entries and each record's entries name the slab slots of the child tables), so finding a table is a walk
//! of at most three array loads, with no hashing. A record holds two 512-bit maps of its entries (those
//! holding a child table, those holding a frame) and the frames' caps and attributes in entry order. So the
//! pages of a leaf table are found, checked for overlap and handed to the kernel a run at a time (the caps
//! of consecutive entries are a slice), with no per-page lookup: only the cap index is per page.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{FrameSize, TableLevel, ENTRIES_PER_TABLE, PML4_ENTRY_BITS, USER_VADDR_END, USER_VADDR_START};
use crate::attr::{CacheAttr, Rights};
use crate::capmap::CapMap;
use crate::kernel::CapRef;

/// Entries per table, as an index bound.
pub(crate) const ENTRIES: usize = ENTRIES_PER_TABLE as usize;

/// One bit per entry of a table.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bits([u64; ENTRIES / 64]);

impl Bits {
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 != 0
    }

    #[inline]
    pub fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    pub fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// The first `i` in `[lo, hi)` (`hi <= ENTRIES`) whose bit is set in the words `word` gives.
    #[inline(always)]
    fn first(lo: usize, hi: usize, word: impl Fn(usize) -> u64) -> Option<usize> {
        if lo >= hi {
            return None;
        }
        let mut w = lo / 64;
        let mut m = word(w) & (u64::MAX << (lo % 64));
        loop {
            if m != 0 {
                let i = w * 64 + m.trailing_zeros() as usize;
                return (i < hi).then_some(i);
            }
            w += 1;
            if w * 64 >= hi {
                return None;
            }
            m = word(w);
        }
    }

    /// The first set bit in `[lo, hi)`.
    #[inline]
    pub fn next_one(&self, lo: usize, hi: usize) -> Option<usize> {
        Self::first(lo, hi, |w| self.0[w])
    }

    /// The first bit in `[lo, hi)` set in `self` or in `other`.
    #[inline]
    pub fn next_one_either(&self, other: &Bits, lo: usize, hi: usize) -> Option<usize> {
        Self::first(lo, hi, |w| self.0[w] | other.0[w])
    }

    /// The first clear bit in `[lo, hi)`, or `hi`.
    #[inline]
    pub fn next_zero(&self, lo: usize, hi: usize) -> usize {
        Self::first(lo, hi, |w| !self.0[w]).unwrap_or(hi)
    }

    /// Sets (`on`) or clears the bits `[lo, hi)`.
    #[inline]
    pub fn set_range(&mut self, lo: usize, hi: usize, on: bool) {
        if lo >= hi {
            return;
        }
        if hi - lo == 1 {
            // One page (the common single-page map or unmap): no masks.
            if on {
                self.set(lo);
            } else {
                self.clear(lo);
            }
            return;
        }
        let (first, last) = (lo / 64, (hi - 1) / 64);
        for w in first..=last {
            let mut m = u64::MAX;
            if w == first {
                m &= u64::MAX << (lo % 64);
            }
            if w == last {
                m &= u64::MAX >> (63 - (hi - 1) % 64);
            }
            if on {
                self.0[w] |= m;
            } else {
                self.0[w] &= !m;
            }
        }
    }

    pub fn intersects(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut x = word;
            core::iter::from_fn(move || {
                (x != 0).then(|| {
                    let i = w * 64 + x.trailing_zeros() as usize;
                    x &= x - 1;
                    i
                })
            })
        })
    }
}

impl fmt::Debug for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.ones()).finish()
    }
}

/// A frame's rights and cache attribute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Meta {
    pub rights: Rights,
    pub attr: CacheAttr,
}

/// The size of the frames a table of `level` maps in its entries.
#[inline]
pub(crate) const fn frame_size_of(level: TableLevel) -> FrameSize {
    match level {
        TableLevel::Pdpt => FrameSize::Huge,
        TableLevel::Pd => FrameSize::Large,
        TableLevel::Pt => FrameSize::Small,
    }
}

/// Grows `v` with `fill` to at least `len` (at most [`ENTRIES`]) elements: capacity doubles, up to the
/// table size, so a table that maps a few low entries stays small.
fn grow<T: Copy>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        let cap = len.max(2 * v.capacity()).min(ENTRIES);
        if cap > v.capacity() {
            v.reserve_exact(cap - v.len());
        }
        v.resize(len, fill);
    }
}

/// The frames in a table's entries, by entry index (meaningful where the table's `frames` bit is set),
/// initialised up to the highest entry used so far. A record recycled for another table keeps them.
#[derive(Clone, Default)]
pub(crate) struct Slots {
    pub caps: Vec<CapRef>,
    pub meta: Vec<Meta>,
}

impl Slots {
    /// Stores frames in entries `first..first + caps.len()`.
    #[inline]
    fn store(&mut self, first: usize, caps: &[CapRef], meta: Meta) {
        let end = first + caps.len();
        if end > self.caps.len() || end > self.meta.len() {
            grow(&mut self.caps, end, CapRef(0));
            grow(&mut self.meta, end, meta);
        }
        if let [cap] = caps {
            // One page: no slice copy (a `memcpy` call for a length known only at run time).
            self.caps[first] = *cap;
            self.meta[first] = meta;
        } else {
            self.caps[first..end].copy_from_slice(caps);
            self.meta[first..end].fill(meta);
        }
    }
}

/// How many free slab slots keep their records' buffers.
const KEEP_BUFFERS: usize = 16;

/// No table: an empty entry of the root or of a record's `child`.
pub(crate) const NONE: u32 = u32::MAX;

/// The index of `vaddr`'s entry in the root (PML4).
#[inline]
fn root_index(vaddr: u64) -> usize {
    ((vaddr >> PML4_ENTRY_BITS) & (ENTRIES_PER_TABLE - 1)) as usize
}

/// A paging structure the space allocated and mapped.
#[derive(Clone)]
pub(crate) struct TableRec {
    /// Its level.
    pub level: TableLevel,
    /// The base of the region it covers.
    pub base: u64,
    /// Its cap.
    pub cap: CapRef,
    /// Entries in use: child tables plus frames.
    pub used: u16,
    /// Empty, and still mapped because the kernel refused to unmap it (or the policy retains it).
    pub pending: bool,
    /// Entries holding a child table.
    pub children: Bits,
    /// Entries holding a frame.
    pub frames: Bits,
    /// The slab slot of the child table in each entry ([`NONE`] where there is none; grown on demand).
    pub child: Vec<u32>,
    /// The frames' caps and attributes.
    pub slots: Slots,
}

impl TableRec {
    /// The first entry in `[lo, hi)` holding a child table or a frame.
    #[inline]
    pub fn next_occupied(&self, lo: usize, hi: usize) -> Option<usize> {
        self.frames.next_one_either(&self.children, lo, hi)
    }

    /// The slab slot of the child table in entry `i`.
    #[inline]
    pub fn child_at(&self, i: usize) -> Option<usize> {
        match self.child.get(i) {
            Some(&c) if c != NONE => Some(c as usize),
            _ => None,
        }
    }

    /// The frame in entry `i` (its size is the table level's).
    #[inline]
    pub fn frame(&self, i: usize) -> Option<FrameRec> {
        if !self.frames.get(i) {
            return None;
        }
        let s = &self.slots;
        let Meta { rights, attr } = s.meta[i];
        Some(FrameRec {
            cap: s.caps[i],
            size: frame_size_of(self.level),
            rights,
            attr,
        })
    }

    /// The address of entry `i`.
    #[inline]
    pub fn vaddr_of(&self, i: usize) -> u64 {
        self.base + ((i as u64) << self.level.entry_bits())
    }

    /// One more entry in use; a table that leaves the empty state is no longer pending reclaim.
    #[inline]
    fn add_used(&mut self, n: usize) {
        if self.used == 0 {
            self.pending = false;
        }
        self.used += n as u16;
    }

    /// Records frames just mapped in entries `first..first + caps.len()`.
    #[inline]
    pub fn insert_frames(&mut self, first: usize, caps: &[CapRef], meta: Meta) {
        let n = caps.len();
        if n == 0 {
            return;
        }
        self.slots.store(first, caps, meta);
        self.frames.set_range(first, first + n, true);
        self.add_used(n);
    }
}

impl fmt::Debug for TableRec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.slots;
        let frames: Vec<(usize, CapRef, Meta)> = self.frames.ones().map(|i| (i, s.caps[i], s.meta[i])).collect();
        f.debug_struct("TableRec")
            .field("level", &self.level)
            .field("base", &format_args!("{:#x}", self.base))
            .field("cap", &self.cap)
            .field("used", &self.used)
            .field("pending", &self.pending)
            .field("children", &self.children)
            .field("frames", &frames)
            .finish()
    }
}

/// A frame the space mapped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FrameRec {
    /// The caller's frame cap (this copy is the one mapped).
    pub cap: CapRef,
    /// The frame's size.
    pub size: FrameSize,
    /// Rights it was mapped with.
    pub rights: Rights,
    /// Cache attribute it was mapped with.
    pub attr: CacheAttr,
}

/// Key of a table: its level and the base of the region it covers.
pub(crate) type TableKey = (TableLevel, u64);

/// Consecutive frame entries of one table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RunPos {
    pub level: TableLevel,
    /// Base of the table.
    pub base: u64,
    /// First entry.
    pub first: usize,
    /// Number of entries.
    pub count: usize,
}

impl RunPos {
    /// The address of the run's `i`-th page.
    #[inline]
    pub fn vaddr_of(&self, i: usize) -> u64 {
        self.base + (((self.first + i) as u64) << self.level.entry_bits())
    }
}

/// See the crate documentation, "The shadow".
#[derive(Clone)]
pub(crate) struct Shadow {
    /// PML4 entries in use (present PDPTs).
    pub root_used: u16,
    /// The slab slot of the PDPT in each PML4 entry ([`NONE`] where there is none; empty until the first).
    root: Vec<u32>,
    /// The tables, by slot; `None`: a free slot.
    slab: Vec<Option<TableRec>>,
    /// Free slots, and the records they held, emptied (while few slots are free, with their buffers, for
    /// the next tables: a space that keeps creating and reclaiming tables does not allocate).
    free: Vec<(u32, TableRec)>,
    /// Tables per level.
    counts: [usize; 3],
    /// Frame cap -> page start (by blocks of consecutive caps: see [`CapMap`]).
    pub by_cap: CapMap,
    /// Mapped frames per size (indexed like [`FrameSize::ALL`]).
    pub frame_count: [usize; 3],
    /// Per level, the last table resolved (base, slab slot): consecutive operations in one region skip
    /// the walk. Never trusted blindly: it is used only if that slot holds a table of that level and base.
    hint: [(u64, u32); 3],
}

impl Default for Shadow {
    fn default() -> Self {
        Self {
            root_used: 0,
            root: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
            counts: [0; 3],
            by_cap: CapMap::default(),
            frame_count: [0; 3],
            hint: [(u64::MAX, NONE); 3],
        }
    }
}

impl fmt::Debug for Shadow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tables: Vec<&TableRec> = self.tables().collect();
        f.debug_struct("Shadow")
            .field("root_used", &self.root_used)
            .field("tables", &tables)
            .field("by_cap", &self.by_cap)
            .field("frame_count", &self.frame_count)
            .finish()
    }
}

/// [`AddressSpace::check`](crate::AddressSpace::check) found the shadow inconsistent (a bug in this crate).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InvariantViolation {
    /// Which invariant, by its label in the crate documentation, and what is wrong.
    pub what: &'static str,
    /// The address of the table or page concerned.
    pub vaddr: u64,
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shadow invariant violated at {:#x}: {}", self.vaddr, self.what)
    }
}

impl core::error::Error for InvariantViolation {}

/// The number of entries of the table of `level` at `base` whose address is below `end` (`end > base`).
fn entry_limit(level: TableLevel, base: u64, end: u64) -> usize {
    let span = end - base;
    if span >= 1 << level.span_bits() {
        ENTRIES
    } else {
        let eb = level.entry_bits();
        ((span + (1 << eb) - 1) >> eb) as usize
    }
}

impl Shadow {
    /// The record in slab slot `slot`.
    #[inline]
    pub fn at(&self, slot: usize) -> &TableRec {
        self.slab[slot].as_ref().expect("shadow: free slab slot")
    }

    /// The record in slab slot `slot`.
    #[inline]
    pub fn at_mut(&mut self, slot: usize) -> &mut TableRec {
        self.slab[slot].as_mut().expect("shadow: free slab slot")
    }

    /// The slab slot of the PDPT covering `vaddr`.
    #[inline]
    pub fn root_child(&self, vaddr: u64) -> Option<usize> {
        match self.root.get(root_index(vaddr)) {
            Some(&c) if c != NONE => Some(c as usize),
            _ => None,
        }
    }

    /// The slab slot of the table of `level` covering `vaddr`: a walk from the root.
    #[inline]
    pub fn find(&self, level: TableLevel, vaddr: u64) -> Option<usize> {
        let mut slot = self.root_child(vaddr)?;
        let mut l = TableLevel::Pdpt;
        while l != level {
            slot = self.at(slot).child_at(l.index_of(vaddr) as usize)?;
            l = l.child()?;
        }
        Some(slot)
    }

    /// The slab slot of the table of `level` at `base` if it is the one last resolved at that level.
    #[inline(always)]
    pub fn hinted(&self, level: TableLevel, base: u64) -> Option<usize> {
        let (b, slot) = self.hint[level.ordinal()];
        let slot = slot as usize;
        match self.slab.get(slot) {
            Some(Some(t)) if b == base && t.base == base && t.level == level => Some(slot),
            _ => None,
        }
    }

    /// Remembers the slab slot of a table just resolved.
    #[inline]
    pub fn remember(&mut self, level: TableLevel, base: u64, slot: usize) {
        self.hint[level.ordinal()] = (base, slot as u32);
    }

    /// The slab slot of the table of `level` covering `vaddr`, from the hint or by a walk (not remembered).
    #[inline(always)]
    pub fn find_or_hinted(&self, level: TableLevel, vaddr: u64) -> Option<usize> {
        match self.hinted(level, level.base_of(vaddr)) {
            Some(slot) => Some(slot),
            None => self.find_walk(level, vaddr),
        }
    }

    /// [`Self::find`], not inlined (the path past a hint).
    #[inline(never)]
    fn find_walk(&self, level: TableLevel, vaddr: u64) -> Option<usize> {
        self.find(level, vaddr)
    }

    /// The slab slot of the table of `level` at `base`, from the hint or by a walk (then remembered).
    #[inline(always)]
    pub fn find_hinted(&mut self, level: TableLevel, base: u64) -> Option<usize> {
        match self.hinted(level, base) {
            Some(slot) => Some(slot),
            None => self.find_remember(level, base),
        }
    }

    /// [`Self::find_hinted`] past the hint: a walk, then remembered.
    #[inline(never)]
    fn find_remember(&mut self, level: TableLevel, base: u64) -> Option<usize> {
        let slot = self.find(level, base)?;
        self.remember(level, base, slot);
        Some(slot)
    }

    /// The table of `level` whose region starts at `base`.
    pub fn table(&self, level: TableLevel, base: u64) -> Option<&TableRec> {
        if base != level.base_of(base) {
            return None;
        }
        self.find(level, base).map(|s| self.at(s))
    }

    /// The table of `level` whose region starts at `base`.
    pub fn table_mut(&mut self, level: TableLevel, base: u64) -> Option<&mut TableRec> {
        if base != level.base_of(base) {
            return None;
        }
        self.find(level, base).map(|s| self.at_mut(s))
    }

    /// Every table, in no particular order.
    pub fn tables(&self) -> impl Iterator<Item = &TableRec> + '_ {
        self.slab.iter().flatten()
    }

    /// Number of tables of `level`.
    pub fn level_count(&self, level: TableLevel) -> usize {
        self.counts[level.ordinal()]
    }

    /// Number of tables, all levels.
    pub fn table_count(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Number of tables pending reclaim.
    pub fn pending_count(&self) -> usize {
        self.tables().filter(|t| t.pending).count()
    }

    /// The frame of exactly `size` starting at `vaddr`.
    pub fn frame_of_size(&self, vaddr: u64, size: FrameSize) -> Option<FrameRec> {
        if !size.is_aligned(vaddr) {
            return None;
        }
        let level = size.level();
        self.table(level, level.base_of(vaddr))?
            .frame(level.index_of(vaddr) as usize)
    }

    /// The mapping covering `vaddr`, with its page start: from the page table last resolved if it covers
    /// `vaddr` (its ancestors hold it, so no larger page covers `vaddr`), otherwise a walk from the root.
    #[inline]
    pub fn lookup(&self, vaddr: u64) -> Option<(u64, FrameRec)> {
        let pt = TableLevel::Pt;
        if let Some(slot) = self.hinted(pt, pt.base_of(vaddr)) {
            let f = self.at(slot).frame(pt.index_of(vaddr) as usize)?;
            return Some((f.size.align_down(vaddr), f));
        }
        self.walk(vaddr, None)
    }

    /// The mapping larger than `size` covering `vaddr`, with its page start.
    pub fn lookup_larger(&self, vaddr: u64, size: FrameSize) -> Option<(u64, FrameRec)> {
        self.walk(vaddr, Some(size))
    }

    /// The slab slot of the table holding the frame that starts at `vaddr`, and its entry index.
    pub fn frame_entry(&self, vaddr: u64) -> Option<(usize, usize)> {
        let (start, f) = self.lookup(vaddr)?;
        let level = f.size.level();
        (start == vaddr).then(|| (self.find(level, vaddr).expect("table"), level.index_of(vaddr) as usize))
    }

    /// The mapping covering `vaddr`, looking only at frames larger than `above`.
    #[inline]
    fn walk(&self, vaddr: u64, above: Option<FrameSize>) -> Option<(u64, FrameRec)> {
        let mut slot = self.root_child(vaddr)?;
        loop {
            let t = self.at(slot);
            if above.is_some_and(|a| frame_size_of(t.level) <= a) {
                return None;
            }
            let i = t.level.index_of(vaddr) as usize;
            if let Some(f) = t.frame(i) {
                return Some((f.size.align_down(vaddr), f));
            }
            slot = t.child_at(i)?;
        }
    }

    /// The record in slab slot `slot`, with the cap index and the frame counts.
    #[inline]
    pub fn split_mut(&mut self, slot: usize) -> (&mut TableRec, &mut CapMap, &mut [usize; 3]) {
        let rec = self.slab[slot].as_mut().expect("shadow: free slab slot");
        (rec, &mut self.by_cap, &mut self.frame_count)
    }

    /// Total mapped frames.
    #[inline]
    pub fn frames_total(&self) -> usize {
        self.frame_count.iter().sum()
    }

    /// Every frame, table by table.
    pub fn frames(&self) -> impl Iterator<Item = (u64, FrameRec)> + '_ {
        self.tables().flat_map(|t| {
            t.frames
                .ones()
                .map(move |i| (t.vaddr_of(i), t.frame(i).expect("frame")))
        })
    }

    /// The first run of frames (consecutive frame entries of one table) at or after `v` whose first page
    /// starts below `end`, ascending, with the slab slot of its table. With `skip`, frames whose rights
    /// and attribute equal it are passed over (they end a run). Walks only the tables present.
    pub fn next_run(&self, mut v: u64, end: u64, skip: Option<Meta>) -> Option<(RunPos, usize)> {
        'outer: while v < end {
            // Start at the page table covering `v` if it is the one remembered (its ancestors hold it, so
            // nothing at or after `v` in its region is elsewhere); otherwise walk from the root.
            let hinted = self.hinted(TableLevel::Pt, TableLevel::Pt.base_of(v));
            let Some(mut slot) = hinted.or_else(|| self.root_child(v)) else {
                v = TableLevel::Pdpt.base_of(v) + (1 << PML4_ENTRY_BITS);
                continue;
            };
            loop {
                let t = self.at(slot);
                let (level, base) = (t.level, t.base);
                let eb = level.entry_bits();
                let lim = entry_limit(level, base, end);
                let i = level.index_of(v) as usize;
                let Some(j) = t.next_occupied(i, lim) else {
                    v = base + ((lim as u64) << eb);
                    continue 'outer;
                };
                let a = base + ((j as u64) << eb);
                if t.frames.get(j) {
                    let count = match skip {
                        None => t.frames.next_zero(j, lim) - j,
                        Some(m) => {
                            let meta = &t.slots.meta;
                            let stop = (j..lim).find(|&x| !t.frames.get(x) || meta[x] == m).unwrap_or(lim);
                            if stop == j {
                                v = a + (1 << eb);
                                continue 'outer;
                            }
                            stop - j
                        }
                    };
                    let run = RunPos {
                        level,
                        base,
                        first: j,
                        count,
                    };
                    return Some((run, slot));
                }
                v = v.max(a);
                slot = t.child_at(j).expect("shadow: child entry without its table");
            }
        }
        None
    }

    /// Records a table just mapped (empty). Returns its slab slot.
    pub fn insert_table(&mut self, level: TableLevel, base: u64, cap: CapRef) -> usize {
        // Its parent's entry first (the new record is not reachable before it is complete).
        let parent = level
            .parent()
            .map(|p| self.find(p, base).expect("shadow: parent table missing"));
        let (slot, mut rec) = match self.free.pop() {
            Some((slot, rec)) => (slot as usize, rec),
            None => {
                self.slab.push(None);
                let rec = TableRec {
                    level,
                    base,
                    cap,
                    used: 0,
                    pending: false,
                    children: Bits::default(),
                    frames: Bits::default(),
                    child: Vec::new(),
                    slots: Slots::default(),
                };
                (self.slab.len() - 1, rec)
            }
        };
        debug_assert!(slot < NONE as usize);
        rec.level = level;
        rec.base = base;
        rec.cap = cap;
        self.slab[slot] = Some(rec);
        self.counts[level.ordinal()] += 1;
        match parent {
            None => {
                if self.root.is_empty() {
                    self.root.resize(ENTRIES, NONE);
                }
                let old = core::mem::replace(&mut self.root[root_index(base)], slot as u32);
                debug_assert_eq!(old, NONE);
                self.root_used += 1;
            }
            Some(p) => {
                let pt = self.at_mut(p);
                let i = pt.level.index_of(base) as usize;
                grow(&mut pt.child, i + 1, NONE);
                pt.child[i] = slot as u32;
                pt.children.set(i);
                pt.add_used(1);
            }
        }
        slot
    }

    /// Forgets an (empty) table just unmapped. Returns its parent if that became empty.
    pub fn remove_table(&mut self, level: TableLevel, base: u64) -> Option<TableKey> {
        let slot = self.find(level, base).expect("shadow: table missing");
        let mut rec = self.slab[slot].take().expect("shadow: free slab slot");
        debug_assert_eq!(rec.used, 0);
        self.counts[level.ordinal()] -= 1;
        // Keep the buffers for the next table (an empty table's child entries are all `NONE` already),
        // for a few free slots only.
        debug_assert!(rec.child.iter().all(|&c| c == NONE));
        rec.pending = false;
        rec.children = Bits::default();
        rec.frames = Bits::default();
        if self.free.len() >= KEEP_BUFFERS {
            rec.child = Vec::new();
            rec.slots = Slots::default();
        }
        self.free.push((slot as u32, rec));
        match level.parent() {
            None => {
                self.root[root_index(base)] = NONE;
                self.root_used -= 1;
                None
            }
            Some(p) => {
                let ps = self.find(p, base).expect("shadow: parent table missing");
                let pt = self.at_mut(ps);
                let i = p.index_of(base) as usize;
                pt.child[i] = NONE;
                pt.children.clear(i);
                pt.used -= 1;
                (pt.used == 0).then_some((p, pt.base))
            }
        }
    }

    /// Checks every invariant of the crate documentation.
    pub fn check(&self) -> Result<(), InvariantViolation> {
        let fail = |what, vaddr| Err(InvariantViolation { what, vaddr });
        let mut root_count = 0u16;
        let mut counts = [0usize; 3];
        let mut frames = [0usize; 3];
        for (slot, rec) in self.slab.iter().enumerate() {
            let Some(rec) = rec else { continue };
            let (level, base) = (rec.level, rec.base);
            counts[level.ordinal()] += 1;
            if base != level.base_of(base) || base >= USER_VADDR_END {
                return fail("T1: table base not aligned to its span or outside the user range", base);
            }
            // Reachable from the root, at its place.
            let parent_entry = match level.parent() {
                None => {
                    root_count += 1;
                    self.root.get(root_index(base)).copied()
                }
                Some(p) => match self.find(p, base) {
                    None => return fail("T1: table without its parent", base),
                    Some(ps) => {
                        let pt = self.at(ps);
                        let i = p.index_of(base) as usize;
                        if !pt.children.get(i) {
                            return fail("T2: table not recorded in its parent's entry", base);
                        }
                        pt.child.get(i).copied()
                    }
                },
            };
            if parent_entry != Some(slot as u32) {
                return fail("T1: table not reachable from the root", base);
            }
            // Every child entry names a table of the level below, at its place.
            for i in 0..ENTRIES {
                let c = rec.child_at(i);
                if c.is_some() != rec.children.get(i) {
                    return fail("T2: child entry and child map disagree", base);
                }
                if let Some(c) = c {
                    let ok = self
                        .slab
                        .get(c)
                        .and_then(|r| r.as_ref())
                        .is_some_and(|ct| Some(ct.level) == level.child() && ct.base == rec.vaddr_of(i));
                    if !ok {
                        return fail("T2: child entry without its table", base);
                    }
                }
            }
            if rec.used as usize != rec.children.count() + rec.frames.count() {
                return fail("T2: table entry count wrong", base);
            }
            if rec.used == 0 && !rec.pending {
                return fail("T3: empty table neither reclaimed nor pending", base);
            }
            if rec.pending && rec.used != 0 {
                return fail("T3: pending reclaim names a missing or non-empty table", base);
            }
            if rec
                .frames
                .ones()
                .last()
                .is_some_and(|i| i >= rec.slots.caps.len().min(rec.slots.meta.len()))
            {
                return fail("F2: frame entries without their records", base);
            }
            if rec.children.intersects(&rec.frames) {
                return fail("F3: a table of smaller pages sits in a large frame's entry", base);
            }
            for i in rec.frames.ones() {
                let f = rec.frame(i).expect("frame");
                let vaddr = rec.vaddr_of(i);
                let size = f.size;
                frames[size as usize] += 1;
                if !size.is_aligned(vaddr) {
                    return fail("F1: frame not aligned to its size", vaddr);
                }
                if vaddr < USER_VADDR_START || vaddr.checked_add(size.bytes()).is_none_or(|e| e > USER_VADDR_END) {
                    return fail("F1: frame outside the user range", vaddr);
                }
                for larger in FrameSize::ALL.into_iter().filter(|&l| l > size) {
                    if self.frame_of_size(larger.align_down(vaddr), larger).is_some() {
                        return fail("F3: frame inside a larger frame", vaddr);
                    }
                }
                if self.by_cap.get(f.cap) != Some(vaddr) {
                    return fail("C1: frame cap not indexed at its page", vaddr);
                }
                if !f.rights.is_valid() {
                    return fail("F1: write without read", vaddr);
                }
            }
        }
        if self.root.iter().filter(|&&c| c != NONE).count() != root_count as usize {
            return fail("T2: root entry without its table", 0);
        }
        if counts != self.counts {
            return fail("T2: table counts per level wrong", 0);
        }
        if frames != self.frame_count {
            return fail("F2: frame counts per size wrong", 0);
        }
        if self.by_cap.len() != self.frames_total() {
            return fail("C1: cap index and frames differ in size", 0);
        }
        if root_count != self.root_used {
            return fail("T2: root entry count wrong", 0);
        }
        Ok(())
    }
}
