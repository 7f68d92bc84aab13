//! Batched updates of one leaf table, validated whole before any change.

use alloc::vec::Vec;

use crate::db::{MappingDb, Overlay};
use crate::error::{BatchError, BatchErrorKind, RemoveError};
use crate::types::{LeafTable, Mapping};

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
        for op in batch.ops {
            match op {
                BatchOp::Insert(m) => self.insert(m).expect("batch validated"),
                BatchOp::Remove(i) => removed.push(self.remove_at(batch.leaf, i).expect("batch validated")),
            }
        }
        Ok(removed)
    }

    fn validate_batch(&self, batch: &Batch) -> Result<(), BatchError> {
        let leaf = batch.leaf;
        let region = self.leaves.get(&leaf).map(|n| n.region);
        let mut ov = Overlay {
            leaf: Some((leaf, region, self.leaf_used(leaf))),
            ..Overlay::default()
        };
        for (op, o) in batch.ops.iter().enumerate() {
            let err = |kind| BatchError { op, kind };
            match *o {
                BatchOp::Insert(m) => {
                    if m.leaf != leaf {
                        return Err(err(BatchErrorKind::WrongLeaf));
                    }
                    self.validate_insert(&m, Some(&ov))
                        .map_err(|e| err(BatchErrorKind::Insert(e)))?;
                    let (_, region, count) = ov.leaf.as_mut().expect("set above");
                    *region = Some(m.size.leaf_region(m.vaddr));
                    *count += 1;
                    ov.mapped.insert(m.cap, true);
                    ov.ptes.insert(m.index, Some(m.cap));
                }
                BatchOp::Remove(i) => {
                    let cap = self
                        .pte_owner(Some(&ov), leaf, i)
                        .ok_or(err(BatchErrorKind::Remove(RemoveError::NotMapped)))?;
                    let (_, region, count) = ov.leaf.as_mut().expect("set above");
                    *count -= 1;
                    if *count == 0 {
                        *region = None;
                    }
                    ov.mapped.insert(cap, false);
                    ov.ptes.insert(i, None);
                }
            }
        }
        Ok(())
    }
}
