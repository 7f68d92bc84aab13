//! Runs: the copies and mappings of one [`clone_region`](MappingDb::clone_region) in one page table (copy
//! runs), or the mappings of fresh frames through their originals made by one
//! [`insert_run`](MappingDb::insert_run) in one page table (original runs), kept as one record instead of
//! a capability node (copy runs only) and a mapping record per page.
//!
//! An original run has `first_copy == first_parent`: page `i`'s capability is the original in slot
//! `first_parent + i` itself, whose node stays (unmapped per page, see U2 of the crate documentation). It is
//! in the by-copy index (found by slot) but not the by-parent one (its capabilities are no one's children).
//! Reading it is as for a copy run (`caps_run` says "original" instead of "copy"); cutting pages out of it
//! (`destroy_region`, `remove_by_cap`, `remove_by_vaddr`) leaves their originals known, unmapped;
//! materialising it inserts its records through the originals.
//!
//! Costs: finding the run of a page or slot is a B-tree search (none while the page or slot lies outside the
//! cached bounds of all runs, or in the run found last); adding, cutting or taking a run O(log runs).
//!
//! A [`Run`] at `(dst, vaddr)` of `n` pages says: for `i < n`, slot `first_copy + i` is a copy of the frame
//! whose original is slot `first_parent + i`, derived from that original, mapped at `vaddr + i * 4096` in
//! `dst` with `rights` through the page table at position `leaf` of `leaves`. The frames (originals) stay
//! per-page nodes; only the copies and their records are compressed.
//!
//! What a run keeps up to date as the per-page records would: the leaf table's entries in use and count, its
//! span counters, the number of records (`len`). What it does not: the slot index and capability nodes,
//! the address index, the frames' lists of copies and of mappings, the address space's list of mappings and
//! the originals' counts of children; the queries add what the runs hold to what those say.
//!
//! Three ordered indexes find the runs: by `(dst, vaddr)` (the records), by first copy slot, and by
//! `(first_parent, dst, vaddr)` (the parent ranges of different runs may overlap: the same originals cloned
//! into several spaces). Runs of one address space never overlap, nor do the copy ranges of any two runs, so
//! the run containing a page or a slot is the last one starting at or below it.
//!
//! Materialising a run turns it into exactly the per-page copies and records the per-page clone would have
//! made (through the single operations). Every update other than `clone_region` and `destroy_region` first
//! materialises the runs its arguments could touch (see [`MappingDb::settle_slot`] and the other `settle_`
//! functions), so that it sees only per-page state where it looks; each run is materialised at most once, at
//! the per-page price of its pages.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::cell::Cell;
use core::mem::size_of;

use crate::db::{MappingDb, SpanKey};
use crate::table::NONE;
use crate::types::{AsId, CapSlot, FrameId, LeafTable, Mapping, PageSize, Rights};

const SMALL: PageSize = PageSize::Small;
/// Bytes of a 4 KiB page.
pub(crate) const PAGE: u64 = 1 << 12;

/// The key of a run: its address space and first page.
pub(crate) type RunKey = (AsId, u64);

/// A run of copies, or of originals, mapped at consecutive pages of one page table (see the module
/// documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Run {
    /// Slot of the first page's capability: a copy (a copy run), or the original itself (an original run,
    /// `first_copy == first_parent`).
    pub(crate) first_copy: u64,
    /// Slot of the first page's frame's original (each copy's parent).
    pub(crate) first_parent: u64,
    /// The page table's position in `leaves`.
    pub(crate) leaf: u32,
    /// Number of pages, `1..=512`, all in the page table's 2 MiB region.
    pub(crate) n: u16,
    /// The rights of every mapping of the run.
    pub(crate) rights: Rights,
}

impl Run {
    /// Number of pages.
    #[inline(always)]
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.n)
    }
    /// The address just past the run's last page, for a run starting at `vaddr`.
    #[inline(always)]
    pub(crate) fn end(&self, vaddr: u64) -> u64 {
        vaddr + self.len() * PAGE
    }
    /// Whether the run's capabilities are the frames' originals themselves (an original run), not copies.
    #[inline(always)]
    pub(crate) fn is_orig(&self) -> bool {
        self.first_copy == self.first_parent
    }
}

/// The runs and their indexes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Runs {
    /// `(dst, vaddr)` -> the run.
    pub(crate) by_addr: BTreeMap<RunKey, Run>,
    /// First capability slot (copy or original) -> the run's key.
    pub(crate) by_copy: BTreeMap<u64, RunKey>,
    /// `(first_parent, dst, vaddr)` of every copy run (original runs are found by slot, in `by_copy`).
    pub(crate) by_parent: BTreeSet<(u64, AsId, u64)>,
    /// Pages in all runs.
    pub(crate) pages: usize,
    /// Pages in original runs (their capabilities are per-page nodes too).
    pub(crate) orig_pages: usize,
    /// The run [`at`](Self::at) found last (a copy, forgotten on every change to the runs): consecutive
    /// lookups of one run's pages find it without a search.
    hint: Cell<Option<(RunKey, Run)>>,
    /// Bounds of what the runs hold, refreshed on every change: every run page `(asid, vaddr)` is in
    /// `[pages.0, pages.1)` and every run slot in `[slots.0, slots.1)` (empty ranges while there are no
    /// runs). A page or slot outside is in no run, known in O(1) (the one-page operations and the lookups of
    /// pages that are in no run skip the search).
    bounds: Bounds,
}

/// See [`Runs::bounds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    pages: (RunKey, RunKey),
    slots: (u64, u64),
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            pages: ((AsId(u32::MAX), u64::MAX), (AsId(0), 0)),
            slots: (u64::MAX, 0),
        }
    }
}

impl Runs {
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Adds `run` at `key` to every index.
    pub(crate) fn add(&mut self, key: RunKey, run: Run) {
        self.hint.set(None);
        self.by_copy.insert(run.first_copy, key);
        if run.is_orig() {
            self.orig_pages += usize::from(run.n);
        } else {
            self.by_parent.insert((run.first_parent, key.0, key.1));
        }
        self.pages += usize::from(run.n);
        let old = self.by_addr.insert(key, run);
        debug_assert!(old.is_none());
        self.refresh_bounds();
    }

    /// Recomputes [`bounds`](Self::bounds) from the first and last runs by address and by slot (O(log runs)).
    fn refresh_bounds(&mut self) {
        self.bounds = self.compute_bounds();
    }

    fn compute_bounds(&self) -> Bounds {
        let (Some((&lo, _)), Some((&(asid, va), last))) =
            (self.by_addr.first_key_value(), self.by_addr.last_key_value())
        else {
            return Bounds::default();
        };
        let (&s_lo, _) = self.by_copy.first_key_value().expect("indexed by slot");
        let (&s_last, k) = self.by_copy.last_key_value().expect("indexed by slot");
        Bounds {
            pages: (lo, (asid, last.end(va))),
            slots: (s_lo, s_last + self.by_addr[k].len()),
        }
    }

    /// Whether page `(asid, vaddr)` may be in a run (if not, it is in none).
    #[inline(always)]
    pub(crate) fn may_hold_page(&self, asid: AsId, vaddr: u64) -> bool {
        let (lo, hi) = self.bounds.pages;
        lo <= (asid, vaddr) && (asid, vaddr) < hi
    }

    /// Whether some run may have a page of `asid` in `[lo, hi)` (if not, none has).
    #[inline(always)]
    pub(crate) fn may_meet_pages(&self, asid: AsId, lo: u64, hi: u64) -> bool {
        let (b_lo, b_hi) = self.bounds.pages;
        lo < hi && (asid, lo) < b_hi && b_lo < (asid, hi)
    }

    /// Whether some run may have a slot in `[lo, hi)` (if not, none has).
    #[inline(always)]
    pub(crate) fn may_hold_slots(&self, lo: u64, hi: u64) -> bool {
        let (b_lo, b_hi) = self.bounds.slots;
        lo < hi && lo < b_hi && b_lo < hi
    }

    /// Removes the run at `key` from every index and returns it.
    pub(crate) fn take(&mut self, key: RunKey) -> Run {
        self.hint.set(None);
        let run = self.by_addr.remove(&key).expect("known run");
        self.by_copy.remove(&run.first_copy);
        if run.is_orig() {
            self.orig_pages -= usize::from(run.n);
        } else {
            self.by_parent.remove(&(run.first_parent, key.0, key.1));
        }
        self.pages -= usize::from(run.n);
        self.refresh_bounds();
        run
    }

    /// Whether the remembered run is one of the runs, as it is, and the bounds are those of the runs (for
    /// the check).
    pub(crate) fn hint_ok(&self) -> bool {
        self.hint.get().is_none_or(|(k, r)| self.by_addr.get(&k) == Some(&r)) && self.bounds == self.compute_bounds()
    }

    /// Shortens the run at `key` to `n` pages (`0 < n <` its length).
    pub(crate) fn shorten(&mut self, key: RunKey, n: u16) {
        self.hint.set(None);
        let r = self.by_addr.get_mut(&key).expect("known run");
        let gone = usize::from(r.n - n);
        r.n = n;
        self.pages -= gone;
        if r.is_orig() {
            self.orig_pages -= gone;
        }
        self.refresh_bounds();
    }

    /// The run containing the 4 KiB page at (or the address) `vaddr` of `asid`: the one found last if it
    /// does, else searched.
    #[inline]
    pub(crate) fn at(&self, asid: AsId, vaddr: u64) -> Option<(RunKey, Run)> {
        if let Some((k, r)) = self.hint.get() {
            if k.0 == asid && k.1 <= vaddr && vaddr < r.end(k.1) {
                return Some((k, r));
            }
        }
        if !self.may_hold_page(asid, vaddr) {
            return None;
        }
        let (&k, &r) = self.by_addr.range(..=(asid, vaddr)).next_back()?;
        let found = (k.0 == asid && vaddr < r.end(k.1)).then_some((k, r));
        if found.is_some() {
            self.hint.set(found);
        }
        found
    }

    /// The runs of `asid` with a page in `[lo, hi)`, by address.
    pub(crate) fn overlapping(&self, asid: AsId, lo: u64, hi: u64) -> impl Iterator<Item = (RunKey, &Run)> + '_ {
        let (lo, hi) = if self.may_meet_pages(asid, lo, hi) {
            (lo, hi)
        } else {
            (lo, lo)
        };
        let first = (lo < hi)
            .then(|| self.at(asid, lo))
            .flatten()
            .filter(|(k, _)| k.1 < lo)
            .map(|(k, _)| (k, &self.by_addr[&k]));
        let rest = (lo < hi)
            .then(|| self.by_addr.range((asid, lo)..(asid, hi)))
            .into_iter()
            .flatten()
            .map(|(&k, r)| (k, r));
        first.into_iter().chain(rest).filter(move |_| lo < hi)
    }

    /// The run whose copies include slot `slot`, and the slot's page in it.
    #[inline]
    pub(crate) fn of_slot(&self, slot: CapSlot) -> Option<(RunKey, &Run, u64)> {
        if !self.may_hold_slots(slot.0, slot.0.saturating_add(1)) {
            return None;
        }
        let (&first, &k) = self.by_copy.range(..=slot.0).next_back()?;
        let r = &self.by_addr[&k];
        let i = slot.0 - first;
        (i < r.len()).then_some((k, r, i))
    }

    /// The runs whose copy slots meet `[lo, hi)` (copy ranges never overlap: the last starting below `hi`
    /// reaches furthest).
    pub(crate) fn slots_overlapping(&self, lo: u64, hi: u64) -> impl Iterator<Item = RunKey> + '_ {
        let any = self.may_hold_slots(lo, hi);
        let hi = if any { hi } else { lo };
        let first = any
            .then(|| self.by_copy.range(..lo).next_back())
            .flatten()
            .filter(|(&f, k)| f + self.by_addr[k].len() > lo)
            .map(|(_, &k)| k);
        first
            .into_iter()
            .chain(self.by_copy.range(lo..hi.max(lo)).map(|(_, &k)| k))
    }

    /// The runs whose copies include a copy derived from original `orig`, with that copy's page in the run.
    pub(crate) fn of_parent(&self, orig: CapSlot) -> impl Iterator<Item = (RunKey, &Run, u64)> + '_ {
        let lo = orig.0.saturating_sub(u64::from(crate::ENTRIES_PER_TABLE) - 1);
        self.by_parent
            .range((lo, AsId(0), 0)..=(orig.0, AsId(u32::MAX), u64::MAX))
            .filter_map(move |&(p, asid, va)| {
                let r = &self.by_addr[&(asid, va)];
                let i = orig.0 - p;
                (i < r.len()).then_some(((asid, va), r, i))
            })
    }

    /// The runs of `asid`, by address.
    pub(crate) fn of_space(&self, asid: AsId) -> impl Iterator<Item = (RunKey, &Run)> + '_ {
        self.by_addr.range((asid, 0)..=(asid, u64::MAX)).map(|(&k, r)| (k, r))
    }

    /// Approximate heap bytes: B-tree nodes hold up to 11 entries and are about 2/3 full on average, so an
    /// entry costs about 1.5 times its key and value, plus a share of the node's header and child links.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.by_addr.len() * run_entry_bytes()
    }
}

/// Approximate bytes of one run across its three indexes (see [`Runs::heap_bytes`]).
pub(crate) const fn run_entry_bytes() -> usize {
    let entries = size_of::<(RunKey, Run)>() + size_of::<(u64, RunKey)>() + size_of::<(u64, AsId, u64)>();
    // Node header and child pointers, about 16 bytes per entry of an internal-or-leaf node on average.
    (entries + 3 * 16) * 3 / 2
}

/// One stretch of consecutive 4 KiB pages: `Pages(k)` pages not in any run, or pages `off..off + len` of
/// the run at `key`.
pub(crate) enum Seg {
    Pages(usize),
    Run {
        key: RunKey,
        run: Run,
        off: u64,
        len: usize,
    },
}

impl MappingDb {
    /// Whether the database keeps clones as runs (see [`with_runs`](Self::with_runs)).
    pub fn runs_enabled(&self) -> bool {
        !self.no_runs
    }

    /// An empty database that keeps the clones of [`clone_region`](Self::clone_region) as runs (`true`, as
    /// [`new`](Self::new) does) or always as per-page copies and records (`false`). Both answer every query
    /// alike (up to the order of what is unordered).
    pub fn with_runs(runs: bool) -> Self {
        let mut db = Self::new();
        db.no_runs = !runs;
        db
    }

    /// Turns runs on or off; turning them off materialises every run (see the crate documentation).
    pub fn set_runs(&mut self, runs: bool) {
        if !runs {
            self.settle_all();
        }
        self.no_runs = !runs;
    }

    /// Number of runs (introspection, for tests and measurements).
    pub fn run_count(&self) -> usize {
        self.runs.by_addr.len()
    }

    /// Number of pages in runs (introspection, for tests and measurements).
    pub fn run_pages(&self) -> usize {
        self.runs.pages
    }

    // ----- reading runs ------------------------------------------------------------------------------------

    /// The frame whose original is in slot `orig` (a run's parent, so known).
    #[inline]
    pub(crate) fn original(&self, orig: u64) -> FrameId {
        let slot = CapSlot(orig);
        FrameId::new(
            slot,
            self.frames
                .get(&slot)
                .expect("a run's parent is a known original")
                .paddr,
        )
    }

    /// The record of page `i` of the run at `key`.
    #[inline]
    pub(crate) fn run_mapping(&self, key: RunKey, run: &Run, i: u64) -> Mapping {
        let vaddr = key.1 + i * PAGE;
        Mapping {
            frame: self.original(run.first_parent + i),
            cap: CapSlot(run.first_copy + i),
            asid: key.0,
            vaddr,
            size: SMALL,
            rights: run.rights,
            leaf: self.leaves.key_at(run.leaf),
            index: SMALL.entry_index(vaddr),
        }
    }

    /// The record of the run page that holds `slot`.
    pub(crate) fn run_mapping_of_slot(&self, slot: CapSlot) -> Option<Mapping> {
        if self.runs.is_empty() {
            return None;
        }
        let (k, r, i) = self.runs.of_slot(slot)?;
        Some(self.run_mapping(k, r, i))
    }

    /// The record of the run page containing `vaddr` in `asid`.
    pub(crate) fn run_lookup(&self, asid: AsId, vaddr: u64) -> Option<Mapping> {
        if self.runs.is_empty() {
            return None;
        }
        let (k, r) = self.runs.at(asid, vaddr)?;
        Some(self.run_mapping(k, &r, (vaddr - k.1) / PAGE))
    }

    /// Every record of the runs of `asid`.
    pub(crate) fn run_mappings_in(&self, asid: AsId) -> impl Iterator<Item = Mapping> + '_ {
        self.runs
            .of_space(asid)
            .flat_map(move |(k, r)| (0..r.len()).map(move |i| self.run_mapping(k, r, i)))
    }

    /// The first stretch of the `left > 0` consecutive 4 KiB pages of `asid` from `va` (aligned): pages not
    /// in a run up to the next run, or the pages of the run containing `va`.
    #[inline]
    pub(crate) fn segment(&self, asid: AsId, va: u64, left: usize) -> Seg {
        if self.runs.is_empty() {
            return Seg::Pages(left);
        }
        if let Some((key, run)) = self.runs.at(asid, va) {
            let off = (va - key.1) / PAGE;
            let len = ((run.len() - off) as usize).min(left);
            return Seg::Run { key, run, off, len };
        }
        match self.runs.by_addr.range((asid, va)..=(asid, u64::MAX)).next() {
            Some((k, _)) => {
                let gap = (k.1 - va) / PAGE;
                Seg::Pages(usize::try_from(gap).map_or(left, |g| g.min(left)))
            }
            None => Seg::Pages(left),
        }
    }

    /// How many copies of runs are derived from original `orig`.
    pub(crate) fn run_children(&self, orig: CapSlot) -> usize {
        if self.runs.is_empty() {
            return 0;
        }
        self.runs.of_parent(orig).count()
    }

    // ----- materialising -----------------------------------------------------------------------------------

    /// Turns the run at `key` into per-page copies and records, as the per-page clone makes them.
    ///
    /// The run's pages are taken off its leaf table and counters (which it had kept up to date) and each is
    /// then added by the single operations: `add_copy` of the copy from the original, `insert` of its record.
    pub(crate) fn materialise(&mut self, key: RunKey) {
        let run = self.runs.take(key);
        let k = u32::from(run.n);
        let (leaf, l) = self.leaves.entry_at_mut(run.leaf);
        let first = SMALL.entry_index(key.1);
        l.clear_range(first, first + run.n);
        l.count -= k;
        let counters = l.spans;
        for sp in counters {
            if sp != NONE {
                self.spans.at_mut(sp).count -= k;
            }
        }
        self.len -= run.n as usize;
        // The leaf may be left with no entry in use for a moment, not idle: the inserts below take it back.
        if run.is_orig() {
            // The originals are known, unmapped: their records, as `insert_run` would have made them.
            let recs: Vec<Mapping> = (0..run.len())
                .map(|i| {
                    let frame = self.original(run.first_parent + i);
                    Mapping::new(
                        frame,
                        frame.slot,
                        key.0,
                        key.1 + i * PAGE,
                        SMALL,
                        run.rights,
                        leaf.table,
                    )
                })
                .collect();
            let done = self.insert_fast(&recs);
            for &m in &recs[done..] {
                self.insert_pp(m).expect("a run's record can be inserted");
            }
            return;
        }
        for i in 0..run.len() {
            let frame = self.original(run.first_parent + i);
            let copy = CapSlot(run.first_copy + i);
            self.add_copy_pp(frame, copy, frame.slot)
                .expect("a run's copy can be added");
            let m = Mapping::new(frame, copy, key.0, key.1 + i * PAGE, SMALL, run.rights, leaf.table);
            self.insert_pp(m).expect("a run's record can be inserted");
        }
    }

    /// Materialises the run holding slot `slot` if it is a copy run (an original run's capabilities are
    /// per-page nodes already: a copy can be derived from one, or a slot found in use, without it).
    #[inline]
    pub(crate) fn settle_copy_slot(&mut self, slot: CapSlot) {
        if self.runs.is_empty() {
            return;
        }
        if let Some((k, r, _)) = self.runs.of_slot(slot) {
            if !r.is_orig() {
                self.materialise(k);
            }
        }
    }

    /// The original run holding original `orig` and its page in it.
    #[inline]
    pub(crate) fn orig_run_of(&self, orig: CapSlot) -> Option<(RunKey, &Run, u64)> {
        if self.runs.is_empty() {
            return None;
        }
        self.runs.of_slot(orig).filter(|(_, r, _)| r.is_orig())
    }

    fn materialise_all(&mut self, keys: Vec<RunKey>) {
        for k in keys {
            self.materialise(k);
        }
    }

    /// Materialises the run whose copies include `slot`.
    #[inline]
    pub(crate) fn settle_slot(&mut self, slot: CapSlot) {
        if self.runs.is_empty() {
            return;
        }
        if let Some((k, _, _)) = self.runs.of_slot(slot) {
            self.materialise(k);
        }
    }

    /// Materialises the runs whose copies meet slots `[lo, hi)`.
    pub(crate) fn settle_slots(&mut self, lo: u64, hi: u64) {
        if !self.runs.may_hold_slots(lo, hi) {
            return;
        }
        let keys = self.runs.slots_overlapping(lo, hi).collect();
        self.materialise_all(keys);
    }

    /// Materialises the runs of `asid` with a page in `[lo, hi)`.
    pub(crate) fn settle_addr(&mut self, asid: AsId, lo: u64, hi: u64) {
        if !self.runs.may_meet_pages(asid, lo, hi) {
            return;
        }
        let keys = self.runs.overlapping(asid, lo, hi).map(|(k, _)| k).collect();
        self.materialise_all(keys);
    }

    /// Materialises the runs holding the page of `m` (or the pages inside it), and its capability.
    pub(crate) fn settle_record(&mut self, m: &Mapping) {
        if self.runs.is_empty() {
            return;
        }
        self.settle_slot(m.cap);
        let lo = m.size.align_down(m.vaddr);
        self.settle_addr(m.asid, lo, lo.saturating_add(m.size.bytes()));
    }

    /// Materialises the runs with a copy of the frame whose original is `orig`.
    pub(crate) fn settle_frame(&mut self, orig: CapSlot) {
        if self.runs.is_empty() {
            return;
        }
        let keys = self.runs.of_parent(orig).map(|(k, _, _)| k).collect();
        self.materialise_all(keys);
    }

    /// Materialises the runs of `asid`.
    pub(crate) fn settle_space(&mut self, asid: AsId) {
        if self.runs.is_empty() {
            return;
        }
        let keys = self.runs.of_space(asid).map(|(k, _)| k).collect();
        self.materialise_all(keys);
    }

    /// Materialises the runs of the page table `leaf` (whose pages lie in its region).
    pub(crate) fn settle_leaf(&mut self, leaf: LeafTable) {
        if self.runs.is_empty() || leaf.level.frame_size() != SMALL {
            return;
        }
        if let Some(p) = self.live_leaf(&leaf) {
            let region = self.leaves.at(p).region;
            self.settle_addr(leaf.asid, region, region + (PAGE << 9));
        }
    }

    /// Materialises every run.
    pub(crate) fn settle_all(&mut self) {
        let keys = self.runs.by_addr.keys().copied().collect();
        self.materialise_all(keys);
    }

    // ----- removing runs -----------------------------------------------------------------------------------

    /// Removes pages `off..off + len` of the run at `key` (its records gone; a copy run's copies forgotten, an
    /// original run's originals left known, unmapped, as per-page nodes they always were): the run
    /// keeps the pages before, a new run the pages after; the leaf table and counters lose the pages.
    pub(crate) fn cut_run(&mut self, key: RunKey, off: u64, len: u64) {
        let run = *self.runs.by_addr.get(&key).expect("known run");
        debug_assert!(len > 0 && off + len <= run.len());
        let after = run.len() - off - len;
        if off == 0 {
            self.runs.take(key);
        } else {
            self.runs.shorten(key, off as u16);
        }
        if after > 0 {
            let skip = off + len;
            self.runs.add(
                (key.0, key.1 + skip * PAGE),
                Run {
                    first_copy: run.first_copy + skip,
                    first_parent: run.first_parent + skip,
                    n: after as u16,
                    ..run
                },
            );
        }
        let first = SMALL.entry_index(key.1) + off as u16;
        crate::region::leaf_removed(
            &mut self.leaves,
            &mut self.spaces,
            &mut self.spans,
            &mut self.idle_leaves,
            run.leaf,
            first,
            first + len as u16,
            len as u32,
        );
        self.len -= len as usize;
    }
}

/// The span counters a run page of `asid` at `vaddr` counts in (for the check).
pub(crate) fn run_span_keys(asid: AsId, vaddr: u64) -> [SpanKey; 2] {
    [PageSize::Large, PageSize::Huge].map(|size| SpanKey {
        asid,
        size,
        base: size.align_down(vaddr),
    })
}
