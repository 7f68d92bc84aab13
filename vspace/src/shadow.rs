//! The user-level shadow of one VSpace: which paging structures exist (with their entry counts) and which
//! frames are mapped where. See the crate documentation for its invariants.

use core::fmt;

use hashbrown::{HashMap, HashSet};

use crate::addr::{FrameSize, TableLevel, USER_VADDR_END, USER_VADDR_START};
use crate::attr::{CacheAttr, Rights};
use crate::kernel::CapRef;

/// A paging structure the space allocated and mapped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TableRec {
    /// Its cap.
    pub cap: CapRef,
    /// Entries in use: child tables plus frames.
    pub used: u16,
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

/// See the crate documentation, "The shadow".
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct Shadow {
    /// PML4 entries in use (present PDPTs).
    pub root_used: u16,
    /// Per level (indexed by [`TableLevel::ordinal`]): base of the covered region -> table.
    pub tables: [HashMap<u64, TableRec>; 3],
    /// Page start -> frame, for every size.
    pub frames: HashMap<u64, FrameRec>,
    /// Frame cap -> page start.
    pub by_cap: HashMap<CapRef, u64>,
    /// Empty tables that are still mapped because the kernel refused to unmap them.
    pub pending: HashSet<TableKey>,
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

impl Shadow {
    pub fn table(&self, level: TableLevel, base: u64) -> Option<&TableRec> {
        self.tables[level.ordinal()].get(&base)
    }

    /// The frame of exactly `size` starting at `vaddr`.
    pub fn frame_of_size(&self, vaddr: u64, size: FrameSize) -> Option<&FrameRec> {
        self.frames.get(&vaddr).filter(|f| f.size == size)
    }

    /// The mapping covering `vaddr`, with its page start.
    pub fn lookup(&self, vaddr: u64) -> Option<(u64, &FrameRec)> {
        FrameSize::ALL.iter().find_map(|&size| {
            let base = size.align_down(vaddr);
            self.frame_of_size(base, size).map(|f| (base, f))
        })
    }

    /// The entry count of the parent of table `(level, base)` (the root for a PDPT), and the parent's key.
    fn parent_used(&mut self, level: TableLevel, base: u64) -> (&mut u16, Option<TableKey>) {
        match level.parent() {
            None => (&mut self.root_used, None),
            Some(p) => {
                let pbase = p.base_of(base);
                let rec = self.tables[p.ordinal()]
                    .get_mut(&pbase)
                    .expect("shadow: parent table missing");
                (&mut rec.used, Some((p, pbase)))
            }
        }
    }

    /// Increments an entry count; a table that leaves the empty state is no longer pending reclaim.
    fn inc(&mut self, used_of: Option<TableKey>) {
        match used_of {
            None => self.root_used += 1,
            Some((l, b)) => {
                let rec = self.tables[l.ordinal()].get_mut(&b).expect("shadow: table missing");
                if rec.used == 0 {
                    self.pending.remove(&(l, b));
                }
                rec.used += 1;
            }
        }
    }

    /// Records a table just mapped (empty).
    pub fn insert_table(&mut self, level: TableLevel, base: u64, cap: CapRef) {
        let parent = level.parent().map(|p| (p, p.base_of(base)));
        self.inc(parent);
        let old = self.tables[level.ordinal()].insert(base, TableRec { cap, used: 0 });
        debug_assert!(old.is_none());
    }

    /// Forgets an (empty) table just unmapped. Returns its parent if that became empty.
    pub fn remove_table(&mut self, level: TableLevel, base: u64) -> Option<TableKey> {
        let rec = self.tables[level.ordinal()]
            .remove(&base)
            .expect("shadow: table missing");
        debug_assert_eq!(rec.used, 0);
        self.pending.remove(&(level, base));
        let (used, key) = self.parent_used(level, base);
        *used -= 1;
        if *used == 0 {
            key
        } else {
            None
        }
    }

    /// Records a frame just mapped.
    pub fn insert_frame(&mut self, vaddr: u64, rec: FrameRec) {
        let leaf = rec.size.level();
        self.inc(Some((leaf, leaf.base_of(vaddr))));
        let old = self.frames.insert(vaddr, rec);
        debug_assert!(old.is_none());
        let old = self.by_cap.insert(rec.cap, vaddr);
        debug_assert!(old.is_none());
    }

    /// Forgets a frame just unmapped. Returns it, and its leaf table if that became empty.
    pub fn remove_frame(&mut self, vaddr: u64) -> (FrameRec, Option<TableKey>) {
        let rec = self.frames.remove(&vaddr).expect("shadow: frame missing");
        self.by_cap.remove(&rec.cap);
        let leaf = rec.size.level();
        let base = leaf.base_of(vaddr);
        let t = self.tables[leaf.ordinal()]
            .get_mut(&base)
            .expect("shadow: leaf table missing");
        t.used -= 1;
        (rec, if t.used == 0 { Some((leaf, base)) } else { None })
    }

    /// Number of tables, all levels.
    pub fn table_count(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// Checks every invariant of the crate documentation.
    pub fn check(&self) -> Result<(), InvariantViolation> {
        let fail = |what, vaddr| Err(InvariantViolation { what, vaddr });
        // Recount every entry from the records themselves.
        let mut counts: [HashMap<u64, u16>; 3] = Default::default();
        let mut root_count = 0u16;
        for level in TableLevel::ALL {
            for (&base, rec) in &self.tables[level.ordinal()] {
                if base != level.base_of(base) || base >= USER_VADDR_END {
                    return fail("T1: table base not aligned to its span or outside the user range", base);
                }
                match level.parent() {
                    None => root_count += 1,
                    Some(p) => {
                        let pbase = p.base_of(base);
                        if self.table(p, pbase).is_none() {
                            return fail("T1: table without its parent", base);
                        }
                        *counts[p.ordinal()].entry(pbase).or_default() += 1;
                    }
                }
                if rec.used == 0 && !self.pending.contains(&(level, base)) {
                    return fail("T3: empty table neither reclaimed nor pending", base);
                }
            }
        }
        for (&vaddr, f) in &self.frames {
            let size = f.size;
            if !size.is_aligned(vaddr) {
                return fail("F1: frame not aligned to its size", vaddr);
            }
            if vaddr < USER_VADDR_START || vaddr.checked_add(size.bytes()).is_none_or(|e| e > USER_VADDR_END) {
                return fail("F1: frame outside the user range", vaddr);
            }
            let leaf = size.level();
            let lbase = leaf.base_of(vaddr);
            if self.table(leaf, lbase).is_none() {
                return fail("F2: frame without its leaf table", vaddr);
            }
            *counts[leaf.ordinal()].entry(lbase).or_default() += 1;
            if let Some(child) = leaf.child() {
                if self.table(child, vaddr).is_some() {
                    return fail("F3: a table of smaller pages sits in a large frame's entry", vaddr);
                }
            }
            for larger in FrameSize::ALL.into_iter().filter(|&l| l > size) {
                if self.frame_of_size(larger.align_down(vaddr), larger).is_some() {
                    return fail("F3: frame inside a larger frame", vaddr);
                }
            }
            if self.by_cap.get(&f.cap) != Some(&vaddr) {
                return fail("C1: frame cap not indexed at its page", vaddr);
            }
            if !f.rights.is_valid() {
                return fail("F1: write without read", vaddr);
            }
        }
        if self.by_cap.len() != self.frames.len() {
            return fail("C1: cap index and frames differ in size", 0);
        }
        if root_count != self.root_used {
            return fail("T2: root entry count wrong", 0);
        }
        for level in TableLevel::ALL {
            for (&base, rec) in &self.tables[level.ordinal()] {
                if counts[level.ordinal()].get(&base).copied().unwrap_or(0) != rec.used {
                    return fail("T2: table entry count wrong", base);
                }
            }
        }
        for &(level, base) in &self.pending {
            if self.table(level, base).is_none_or(|t| t.used != 0) {
                return fail("T3: pending reclaim names a missing or non-empty table", base);
            }
        }
        Ok(())
    }
}
