//! Updates in bulk: a [`Batch`] of updates to one leaf table, validated whole before any change, and runs of
//! one operation ([`MappingDb::insert_run`], [`MappingDb::remove_run`], [`MappingDb::add_copies`]).

use alloc::vec::Vec;

use crate::chunk::Cursor;
use crate::db::{
    add_child, big_idx, counts_pages, larger, to_mapping, CapNode, MappingDb, Overlay, Placed, SpanKey, FREED,
};
use crate::error::{AddCopyError, BatchError, BatchErrorKind, CloneError, InsertError, RemoveError};
use crate::table::{pos32, NONE};
use crate::types::{AsId, CapSlot, FrameId, LeafTable, Mapping, PageSize, USER_VADDR_END};
use mm_types::run::MIN_RUN;

/// One operation of a [`Batch`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BatchOp {
    /// Insert this record (its `leaf` must be the batch's).
    Insert(Mapping),
    /// Remove the record held by this entry index of the batch's leaf.
    Remove(u16),
}

/// Inserts and removals for ONE leaf table, collected and then committed in one go by
/// [`MappingDb::commit`]: the sequential updates to one table that the kernel side can carry out together.
///
/// The operations take effect in order, all or none: the whole batch is validated before anything changes.
#[must_use = "a batch changes nothing until it is committed with MappingDb::commit"]
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Batch {
    leaf: LeafTable,
    ops: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch for `leaf`.
    pub fn new(leaf: LeafTable) -> Self {
        Self { leaf, ops: Vec::new() }
    }

    /// Adds an insert of `m`.
    pub fn insert(&mut self, m: Mapping) -> &mut Self {
        self.ops.push(BatchOp::Insert(m));
        self
    }

    /// Adds a removal of the record held by entry `index`.
    pub fn remove(&mut self, index: u16) -> &mut Self {
        self.ops.push(BatchOp::Remove(index));
        self
    }

    /// The batch's leaf table.
    pub fn leaf(&self) -> LeafTable {
        self.leaf
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl MappingDb {
    /// Applies `batch`'s operations in order, or none of them: every operation is validated (against the
    /// database as the operations before it leave it) before anything changes. Returns the removed records,
    /// in the order of the removals.
    pub fn commit(&mut self, batch: Batch) -> Result<Vec<Mapping>, BatchError> {
        if !self.runs.is_empty() {
            self.settle_leaf(batch.leaf);
            for op in &batch.ops {
                if let BatchOp::Insert(m) = op {
                    self.settle_record(m);
                }
            }
        }
        self.validate_batch(&batch)?;
        let mut removed = Vec::new();
        let mut i = 0;
        while let Some(&op) = batch.ops.get(i) {
            match op {
                BatchOp::Insert(m) => {
                    // A run of inserts: on the fast path (which checks them again, cheaply), or applied.
                    let run = batch.ops[i..].iter().map_while(|op| match op {
                        BatchOp::Insert(m) => Some(m),
                        BatchOp::Remove(_) => None,
                    });
                    let n = match self.live_leaf(&m.leaf) {
                        Some(leaf) => self.insert_in_leaf(leaf, run),
                        None => self.insert_new_leaf(&m),
                    };
                    if n == 0 {
                        self.apply_insert(m);
                        i += 1;
                    } else {
                        i += n;
                    }
                }
                BatchOp::Remove(index) => {
                    let cap = self.pte_owner(None, batch.leaf, index).expect("batch validated");
                    removed.push(self.unmap(cap));
                    i += 1;
                }
            }
        }
        Ok(removed)
    }

    fn validate_batch(&self, batch: &Batch) -> Result<(), BatchError> {
        let leaf = batch.leaf;
        let mut ov = Overlay::new(self, leaf, batch.ops.len());
        for (op, o) in batch.ops.iter().enumerate() {
            let err = |kind| BatchError { op, kind };
            match *o {
                BatchOp::Insert(m) => {
                    if m.leaf != leaf {
                        return Err(err(BatchErrorKind::WrongLeaf));
                    }
                    self.validate_insert(&m, Some(&ov))
                        .map_err(|e| err(BatchErrorKind::Insert(e)))?;
                    let cap = self.caps.pos(&m.cap).expect("validated");
                    let (_, region, count) = &mut ov.leaf;
                    *region = Some(m.size.leaf_region(m.vaddr));
                    *count += 1;
                    ov.mapped.insert(cap, true);
                    ov.ptes[usize::from(m.index)] = cap;
                }
                BatchOp::Remove(i) => {
                    let cap = self
                        .pte_owner(Some(&ov), leaf, i)
                        .ok_or(err(BatchErrorKind::Remove(RemoveError::NotMapped)))?;
                    let (_, region, count) = &mut ov.leaf;
                    *count -= 1;
                    if *count == 0 {
                        *region = None;
                    }
                    ov.mapped.insert(cap, false);
                    ov.ptes[usize::from(i)] = FREED;
                }
            }
        }
        Ok(())
    }

    // ----- runs: loops of one operation, all or nothing ----------------------------------------------------

    /// Inserts `recs` in order, as a loop of [`insert`](Self::insert) would, but all or none: on the first
    /// refusal, the records of the run inserted so far are removed again (in reverse order, which restores
    /// every list's order) and the refused record's index and error are returned; nothing has changed then.
    ///
    /// Meant for a run of consecutive pages in one leaf table (the manager's map of a region), where every
    /// record after the first finds its leaf table, address space and span counters without hashing; any
    /// records are accepted.
    pub fn insert_run(&mut self, recs: &[Mapping]) -> Result<(), (usize, InsertError)> {
        if !self.no_runs && recs.len() >= MIN_RUN && self.insert_as_runs(recs) {
            return Ok(());
        }
        if !self.runs.is_empty() {
            for m in recs {
                self.settle_record(m);
            }
        }
        let mut i = 0;
        loop {
            i += self.insert_fast(&recs[i..]);
            let Some(&m) = recs.get(i) else { return Ok(()) };
            // Off the fast path: decided by the full check.
            if let Err(e) = self.validate_insert(&m, None) {
                for r in recs[..i].iter().rev() {
                    self.remove_by_cap(r.cap).expect("inserted by this run");
                }
                return Err((i, e));
            }
            self.apply_insert(m);
            i += 1;
        }
    }

    /// Removes the `n` mappings of `asid` whose pages follow each other from the page containing `vaddr`
    /// (each page starts where the one before ends: for 4 KiB pages, `vaddr + i * 4096`), as a loop of
    /// [`remove_by_vaddr`](Self::remove_by_vaddr) would, and hands their records back in address order.
    /// All or none: if one of them is missing, its index in the run and [`RemoveError::NotMapped`] are
    /// returned and nothing is removed.
    pub fn remove_run(&mut self, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<Mapping>, (usize, RemoveError)> {
        let caps = self.run_caps(asid, vaddr, n)?;
        let mut out = Vec::with_capacity(n);
        self.unmap_all::<false>(&caps, &mut out);
        Ok(out)
    }

    /// Destroys a run of mappings: removes the `n` mappings of `asid` whose pages follow each other from the
    /// page containing `vaddr` (for 4 KiB pages, `vaddr + i * 4096`) and forgets the capability of each that
    /// is a copy (`rec.cap != rec.frame.slot`; an original stays known, unmapped), and hands the records back
    /// in address order. It does what
    ///
    /// ```text
    /// let recs = remove_run(asid, vaddr, n)?;
    /// for r in &recs { if r.cap != r.frame.slot { remove_copy(r.cap)? } }
    /// ```
    ///
    /// does, but all or none: if a page is missing, its index in the run and [`RemoveError::NotMapped`] are
    /// returned; if a copy could not be forgotten (it still has children when its turn comes: children
    /// earlier in the run are forgotten before it), its index and [`RemoveError::HasChildren`]; in both cases
    /// nothing has changed.
    ///
    /// Meant for the manager's destroy of a region, after the kernel unmapped the pages and deleted the
    /// copies: the run is found a chunk of the address index at a time, and each page is unmapped and its copy
    /// forgotten in one go, the leaf table, address space and counters being handled once per leaf.
    pub fn destroy_run(&mut self, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<Mapping>, (usize, RemoveError)> {
        let caps = self.run_caps(asid, vaddr, n)?;
        for (i, &cap) in caps.iter().enumerate() {
            let node = self.caps.at(cap);
            if node.parent_pos != cap && node.children != 0 {
                // Its children removed before it by the run (copies, so forgotten) are no longer counted.
                let earlier = caps[..i]
                    .iter()
                    .filter(|&&c| c != self.caps.at(c).parent_pos && self.caps.at(c).parent_pos == cap)
                    .count();
                if node.children as usize != earlier {
                    return Err((i, RemoveError::HasChildren));
                }
            }
        }
        let mut out = Vec::with_capacity(n);
        self.unmap_all::<true>(&caps, &mut out);
        Ok(out)
    }

    /// The capabilities (positions) holding the `n` mappings of `asid` whose pages follow each other from the
    /// page containing `vaddr`, as a loop of [`lookup`](Self::lookup) finds them; else the index of the first
    /// page missing and [`RemoveError::NotMapped`]. Runs of 4 KiB pages are read a chunk of the address
    /// index at a time.
    fn run_caps(&mut self, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<u32>, (usize, RemoveError)> {
        let small = PageSize::Small;
        let mut caps = Vec::with_capacity(n);
        let mut va = vaddr;
        while caps.len() < n {
            let i = caps.len();
            // The 4 KiB pages from the one containing `va` to the end of its address chunk.
            if va < USER_VADDR_END {
                if let Some(tail) = self.by_vaddr.tail(asid, small, va) {
                    let tail = &tail[..tail.len().min(n - i)];
                    let k = tail.iter().position(|&c| c == NONE).unwrap_or(tail.len());
                    if k > 0 {
                        caps.extend_from_slice(&tail[..k]);
                        // Inside the chunk, below USER_VADDR_END: no overflow.
                        va = small.align_down(va) + k as u64 * small.bytes();
                        continue;
                    }
                }
            }
            // No 4 KiB page of its own there: a run's (materialised, then read as above), a larger one, or none.
            if !self.runs.is_empty() {
                if let Some((k, _)) = self.runs.at(asid, va) {
                    self.materialise(k);
                    continue;
                }
            }
            let cap = self.lookup_cap_mut(asid, va).ok_or((i, RemoveError::NotMapped))?;
            let p = self.caps.at(cap).map.as_ref().expect("indexed cap is mapped");
            va = p.vaddr + p.size.bytes();
            caps.push(cap);
        }
        Ok(caps)
    }

    /// Records the copies `(frame, copy, parent)` in order, as a loop of [`add_copy`](Self::add_copy) would
    /// (a copy may be the parent of a later one), but all or none: on the first refusal, the copies of the
    /// run added so far are removed again (in reverse order) and the refused copy's index and error are
    /// returned; nothing has changed then.
    pub fn add_copies(&mut self, copies: &[(FrameId, CapSlot, CapSlot)]) -> Result<(), (usize, AddCopyError)> {
        for (i, &(frame, copy, parent)) in copies.iter().enumerate() {
            if let Err(e) = self.add_copy(frame, copy, parent) {
                for &(_, c, _) in copies[..i].iter().rev() {
                    self.remove_copy(c).expect("added by this run");
                }
                return Err((i, e));
            }
        }
        Ok(())
    }

    /// The records of the `n` consecutive 4 KiB pages of `asid` from `vaddr` (`vaddr + i * 4096`), in address
    /// order, as a loop of [`lookup`](Self::lookup) would find them, but only where a 4 KiB mapping starts
    /// exactly at each address: otherwise the index in the run of the first page without one, and
    /// [`RemoveError::NotMapped`] (as [`remove_run`](Self::remove_run) reports a gap).
    ///
    /// Reads the address index a chunk (64 pages) at a time: one lookup per chunk, none per page.
    pub fn mappings_run(&self, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<Mapping>, (usize, RemoveError)> {
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let small = PageSize::Small;
        if !small.is_aligned(vaddr) {
            return Err((0, RemoveError::NotMapped));
        }
        if self.runs.is_empty() {
            self.mappings_pages(asid, vaddr, n, &mut out)?;
            return Ok(out);
        }
        // Stretches of pages in runs and of pages not.
        let (mut i, mut va) = (0, vaddr);
        while i < n {
            match self.segment(asid, va, n - i) {
                crate::run::Seg::Pages(k) => self
                    .mappings_pages(asid, va, k, &mut out)
                    .map_err(|(j, e)| (i + j, e))?,
                crate::run::Seg::Run { key, run, off, len } => {
                    out.extend((off..off + len as u64).map(|j| self.run_mapping(key, &run, j)));
                }
            }
            let k = out.len() - i;
            i = out.len();
            va += k as u64 * small.bytes();
        }
        Ok(out)
    }

    /// [`mappings_run`](Self::mappings_run) of `n > 0` pages from `vaddr` (aligned) none of which is in a run,
    /// appending the records to `out`; the index of a missing page is relative to `vaddr`.
    fn mappings_pages(
        &self,
        asid: AsId,
        vaddr: u64,
        n: usize,
        out: &mut Vec<Mapping>,
    ) -> Result<(), (usize, RemoveError)> {
        let small = PageSize::Small;
        let base = out.len();
        // The leaf of the page before (consecutive pages share it 511 times in 512).
        let mut leaf = (NONE, None);
        let mut va = vaddr;
        while out.len() - base < n {
            let miss = Err((out.len() - base, RemoveError::NotMapped));
            if va >= USER_VADDR_END {
                return miss;
            }
            let Some(tail) = self.by_vaddr.tail(asid, small, va) else {
                return miss;
            };
            let tail = &tail[..tail.len().min(n - (out.len() - base))];
            for &cap in tail {
                if cap == NONE {
                    return Err((out.len() - base, RemoveError::NotMapped));
                }
                let (slot, node) = self.caps.entry_at(cap);
                let p = node.map.as_ref().expect("indexed cap is mapped");
                let key = match leaf {
                    (l, Some(key)) if l == p.leaf => key,
                    _ => {
                        let key = self.leaves.key_at(p.leaf);
                        leaf = (p.leaf, Some(key));
                        key
                    }
                };
                let (orig, f) = self.frames.entry_at(node.frame);
                out.push(to_mapping(slot, FrameId::new(orig, f.paddr), key, p));
            }
            // The chunk ends at a chunk boundary, below USER_VADDR_END: no overflow.
            va += tail.len() as u64 * small.bytes();
        }
        Ok(())
    }

    /// Clones records: for each `(rec, parent)`, in order, records `rec.cap` as a copy of `rec.frame`
    /// derived from `parent` and inserts `rec`, as the loop
    /// `for (r, p) in recs { add_copy(r.frame, r.cap, p)?; insert(r)? }` would (an element's cap may be the
    /// parent of a later one), but all or none: on the first refusal, what the run did so far is undone (in
    /// reverse order) and the refused element's index and error ([`CloneError::Copy`] if its copy was
    /// refused, else [`CloneError::Insert`]) are returned; nothing has changed then.
    ///
    /// Meant for a run of consecutive pages in one leaf table (the manager's clone of a region): each new
    /// capability's node is created with its record in place, and the leaf table, address space and span
    /// counters are found once per leaf. Any elements are accepted.
    pub fn clone_run(&mut self, recs: &[(Mapping, CapSlot)]) -> Result<(), (usize, CloneError)> {
        if !self.runs.is_empty() {
            for (m, parent) in recs {
                self.settle_record(m);
                self.settle_slot(*parent);
            }
        }
        let mut i = 0;
        loop {
            while let Some((first, _)) = recs.get(i) {
                let Some(leaf) = self.live_leaf(&first.leaf) else {
                    break;
                };
                let k = self.clone_in_leaf(leaf, &recs[i..]);
                if k == 0 {
                    break;
                }
                i += k;
            }
            // Off the fast path (or the first page of a new leaf): the single operations.
            let Some(&(m, parent)) = recs.get(i) else { return Ok(()) };
            let err = match self.add_copy(m.frame, m.cap, parent) {
                Err(e) => CloneError::Copy(e),
                Ok(()) => match self.insert(m) {
                    Ok(()) => {
                        i += 1;
                        continue;
                    }
                    Err(e) => {
                        self.remove_copy(m.cap).expect("added by this run");
                        CloneError::Insert(e)
                    }
                },
            };
            for (r, _) in recs[..i].iter().rev() {
                self.remove_by_cap(r.cap).expect("inserted by this run");
                self.remove_copy(r.cap).expect("added by this run");
            }
            return Err((i, err));
        }
    }

    /// The fast path of [`clone_run`](Self::clone_run) for the elements at the start of `recs` whose records
    /// go into the leaf table at position `leaf` (which exists): clones them until one fails a check (of
    /// `add_copy` or `insert`) or names another leaf, and returns how many it cloned. The checks are those of
    /// [`insert_in_leaf`](Self::insert_in_leaf), with the parent in place of the (new, so known, unmapped)
    /// capability; every check of an element comes before any change for it.
    ///
    /// Per element it finds the parent's and the copy's chunks of the slot index and the page's chunk of the
    /// address index through cursors (consecutive slots and pages share a chunk 63 times in 64), creates the
    /// copy's node with its record in place, and appends to the lists; the leaf, address space and counters
    /// are the run's.
    #[inline(always)]
    fn clone_in_leaf(&mut self, leaf: u32, recs: &[(Mapping, CapSlot)]) -> usize {
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            len,
            big,
            hint_leaf,
            copy_parents,
            ..
        } = self;
        *hint_leaf = leaf;
        let (key, l) = leaves.entry_at_mut(leaf);
        let size = key.level.frame_size();
        let (region, counters) = (l.region, l.spans);
        let s = spaces.at_mut(l.space);
        // A page of the leaf: aligned to `size`, in the leaf's region (so below the end of user space).
        let addr_mask = !(((size.bytes() << 9) - 1) & !(size.bytes() - 1));
        let probe_larger = (big[0] | big[1]) != 0
            && larger(size).iter().any(|&b| {
                let b = big_idx(b).expect("larger sizes are large");
                big[b] > 0 && s.big[b] > 0
            });
        let probe_spans = size != PageSize::Small && !spans.is_empty();
        let asid = key.asid;
        let (mut parents, mut copies, mut pages) = (Cursor::default(), Cursor::default(), Cursor::default());
        let mut n = 0;
        for &(m, parent) in recs {
            if m.leaf != key
                || m.size != size
                || m.asid != asid
                || m.vaddr & addr_mask != region
                || m.index != size.entry_index(m.vaddr)
            {
                break;
            }
            // The parent is known and a cap to `m.frame`, of the size.
            let (pc, pi) = caps.index().find_in(&mut parents, parent);
            let pp = caps.index().value_in(pc, pi);
            if pp == NONE {
                break;
            }
            let frame = caps.at(pp).frame;
            let (orig, f) = frames.entry_at_mut(frame);
            if orig != m.frame.slot || f.paddr != m.frame.paddr || f.size != size {
                break;
            }
            // No larger page contains the page, no smaller page lies inside it.
            if probe_larger && larger(size).iter().any(|&b| by_vaddr.get(asid, b, m.vaddr).is_some()) {
                break;
            }
            if probe_spans
                && counts_pages(
                    spans,
                    &SpanKey {
                        asid,
                        size,
                        base: m.vaddr,
                    },
                )
            {
                break;
            }
            // No page of its size starts there (so the entry is free), and the copy's slot is free.
            let (ac, ai) = by_vaddr.find_in(&mut pages, asid, size, m.vaddr);
            if by_vaddr.value_in(ac, ai) != NONE {
                break;
            }
            let (cc, ci) = caps.index().find_in(&mut copies, m.cap);
            if caps.index().value_in(cc, ci) != NONE {
                break;
            }
            // Every check passed: the copy's node, with its record in place, and the links to it.
            let cap = caps.place(
                m.cap,
                CapNode {
                    frame,
                    parent,
                    parent_pos: pp,
                    children: 0,
                    copy_pos: pos32(f.copies.len()),
                    map: Some(Placed {
                        vaddr: m.vaddr,
                        leaf,
                        frame_pos: pos32(f.mapped.len()),
                        space_pos: pos32(s.maps.len()),
                        index: m.index,
                        size,
                        rights: m.rights,
                    }),
                },
            );
            caps.index_mut().put_in(&mut copies, cc, m.cap, cap);
            add_child(caps, pp, copy_parents);
            f.copies.push(m.cap);
            f.mapped.push(cap);
            s.maps.push(cap);
            by_vaddr.put_in(&mut pages, ac, asid, size, m.vaddr, cap);
            debug_assert!(!l.is_set(m.index));
            l.set(m.index);
            n += 1;
        }
        if n > 0 {
            l.count += n;
            if let Some(b) = big_idx(size) {
                s.big[b] += n;
                big[b] += n as usize;
            }
            for sp in counters {
                if sp != NONE {
                    spans.at_mut(sp).count += n;
                }
            }
            *len += n as usize;
            caps.index_mut().remember_cursor(&copies);
            by_vaddr.remember_cursor(&pages);
        }
        n as usize
    }
}
