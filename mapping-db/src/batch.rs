//! Updates in bulk: a [`Batch`] of updates to one leaf table, validated whole before any change, and runs of
//! one operation ([`MappingDb::insert_run`], [`MappingDb::remove_run`], [`MappingDb::add_copies`]).

use alloc::vec::Vec;

use crate::db::{MappingDb, Overlay, FREED};
use crate::error::{AddCopyError, BatchError, BatchErrorKind, InsertError, RemoveError};
use crate::types::{AsId, CapSlot, FrameId, LeafTable, Mapping};

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
                    let n = match self.leaves.find(self.hint_leaf, &m.leaf) {
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
        let mut caps = Vec::with_capacity(n);
        let mut va = vaddr;
        for i in 0..n {
            let cap = self.lookup_cap_mut(asid, va).ok_or((i, RemoveError::NotMapped))?;
            let p = self.caps.at(cap).map.as_ref().expect("indexed cap is mapped");
            va = p.vaddr + p.size.bytes();
            caps.push(cap);
        }
        let mut out = Vec::with_capacity(n);
        self.unmap_all(&caps, &mut out);
        Ok(out)
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
}
