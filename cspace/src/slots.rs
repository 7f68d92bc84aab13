//! Free-slot bookkeeping for the level-2 CNodes (the boot CNode's empty
//! range and every level-2 CNode added by growth).

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::layout::{CNodeRef, Slot, SlotRange};

/// Why a slot request was refused. Every refusal leaves the allocator as it
/// was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// No CNode has `needed` consecutive free slots: the caller must add a
    /// CNode ([`SlotAllocator::add_cnode`]) or free slots.
    Exhausted {
        /// Length of the run that was asked for.
        needed: u64,
    },
    /// A run of 0 slots, or longer than any CNode, was asked for.
    BadRunLength {
        /// Length of the run that was asked for.
        len: u64,
    },
    /// The slot is not one this allocator hands out, or it is already free.
    NotAllocated(Slot),
    /// [`SlotAllocator::add_cnode`]: a CNode with that index is already
    /// managed, or the index is not a level-2 index.
    CNodeExists(CNodeRef),
    /// [`SlotAllocator::remove_cnode`]: the CNode is not managed, or some of
    /// its slots are still allocated.
    CNodeInUse(CNodeRef),
    /// A slot outside every managed CNode's usable range was named.
    Unmanaged(Slot),
}

#[derive(Debug, Clone)]
struct CNodeSlots {
    /// Bit set: slot used, or not usable (outside the boot CNode's empty
    /// range).
    used: Vec<u64>,
    /// The slots this allocator may hand out.
    usable_range: Range<u64>,
    /// Usable slots.
    usable: u64,
    /// Free slots.
    free: u64,
    /// First index worth looking at.
    hint: u64,
}

impl CNodeSlots {
    fn new(bits: u8, usable: Range<u64>) -> Self {
        let n = 1u64 << bits;
        let words = n.div_ceil(64) as usize;
        let mut used = vec![!0u64; words];
        for i in usable.clone() {
            used[(i / 64) as usize] &= !(1u64 << (i % 64));
        }
        let count = usable.end - usable.start;
        CNodeSlots {
            used,
            usable_range: usable.clone(),
            usable: count,
            free: count,
            hint: usable.start,
        }
    }

    fn len(&self) -> u64 {
        self.used.len() as u64 * 64
    }

    fn is_used(&self, i: u64) -> bool {
        self.used[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    fn set(&mut self, i: u64, v: bool) {
        let w = &mut self.used[(i / 64) as usize];
        if v {
            *w |= 1u64 << (i % 64)
        } else {
            *w &= !(1u64 << (i % 64))
        }
    }

    /// First run of `n` free slots at or after the hint, else from 0.
    fn find_run(&self, n: u64) -> Option<u64> {
        if self.free < n {
            return None;
        }
        self.find_run_from(self.hint, n).or_else(|| self.find_run_from(0, n))
    }

    fn find_run_from(&self, from: u64, n: u64) -> Option<u64> {
        let len = self.len();
        let mut i = from;
        let mut start = from;
        let mut run = 0;
        while i < len {
            if i.is_multiple_of(64) && self.used[(i / 64) as usize] == !0u64 {
                run = 0;
                i += 64;
                start = i;
                continue;
            }
            if self.is_used(i) {
                run = 0;
                start = i + 1;
            } else {
                run += 1;
                if run == n {
                    return Some(start);
                }
            }
            i += 1;
        }
        None
    }
}

/// Free-slot bookkeeping for the level-2 CNodes.
///
/// # Invariants
/// - `free_count() == sum over managed CNodes of their free slots`;
/// - a slot is handed out (by [`alloc`](Self::alloc) or
///   [`alloc_run`](Self::alloc_run)) only if it is free, and is then not free
///   until given back.
#[derive(Debug, Clone)]
pub struct SlotAllocator {
    /// Level-2 CNodes by index; `None`: not (yet) present.
    cnodes: Vec<Option<CNodeSlots>>,
    /// Radix of the added level-2 CNodes.
    l2_bits: u8,
    free: u64,
    capacity: u64,
    /// A CNode index that probably has free slots.
    hint: usize,
    /// Longest run any CNode can hold.
    max_run: u64,
}

impl SlotAllocator {
    /// An allocator over the boot CNode's (radix `root_bits`) free range
    /// `empty`. Level-2 CNodes added later have radix `l2_bits`.
    pub fn new(root_bits: u8, empty: Range<u64>, l2_bits: u8) -> Self {
        let empty = empty.start.min(1 << root_bits)..empty.end.min(1 << root_bits);
        let empty = if empty.start > empty.end {
            empty.start..empty.start
        } else {
            empty
        };
        let root = CNodeSlots::new(root_bits, empty);
        let free = root.free;
        let max_run = 1u64 << root_bits.max(l2_bits);
        SlotAllocator {
            cnodes: vec![Some(root)],
            l2_bits,
            free,
            capacity: free,
            hint: 0,
            max_run,
        }
    }

    /// Free slots.
    pub fn free_count(&self) -> u64 {
        self.free
    }

    /// Usable slots (free or handed out) in every managed CNode.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Number of managed level-2 CNodes (the boot CNode included).
    pub fn cnode_count(&self) -> usize {
        self.cnodes.iter().filter(|c| c.is_some()).count()
    }

    /// Whether level-2 CNode `k` is managed.
    pub fn has_cnode(&self, k: u32) -> bool {
        matches!(self.cnodes.get(k as usize), Some(Some(_)))
    }

    /// Smallest level-2 index with no CNode, from 1.
    pub fn first_unused_index(&self) -> u32 {
        (1..).find(|&k| !self.has_cnode(k)).unwrap_or(u32::MAX)
    }

    /// Adds level-2 CNode `k >= 1` with all of its slots free.
    pub fn add_cnode(&mut self, k: u32) -> Result<(), SlotError> {
        if k == 0 || self.has_cnode(k) {
            return Err(SlotError::CNodeExists(CNodeRef::Level2(k)));
        }
        if self.cnodes.len() <= k as usize {
            self.cnodes.resize(k as usize + 1, None);
        }
        let c = CNodeSlots::new(self.l2_bits, 0..1 << self.l2_bits);
        self.free += c.free;
        self.capacity += c.usable;
        self.cnodes[k as usize] = Some(c);
        Ok(())
    }

    /// Removes level-2 CNode `k >= 1`, which must have no slot handed out.
    pub fn remove_cnode(&mut self, k: u32) -> Result<(), SlotError> {
        let r = CNodeRef::Level2(k);
        match self.cnodes.get(k as usize) {
            Some(Some(c)) if k != 0 && c.free == c.usable => {
                self.free -= c.free;
                self.capacity -= c.usable;
                self.cnodes[k as usize] = None;
                while matches!(self.cnodes.last(), Some(None)) {
                    self.cnodes.pop();
                }
                if self.hint >= self.cnodes.len() {
                    self.hint = 0;
                }
                Ok(())
            }
            _ => Err(SlotError::CNodeInUse(r)),
        }
    }

    /// Whether `slot` is managed and free.
    pub fn is_free(&self, slot: Slot) -> bool {
        self.cnode(slot)
            .is_some_and(|c| slot.index < c.len() && !c.is_used(slot.index))
    }

    fn cnode(&self, slot: Slot) -> Option<&CNodeSlots> {
        match slot.cnode {
            CNodeRef::Level2(k) => self.cnodes.get(k as usize)?.as_ref(),
            CNodeRef::Level1 => None,
        }
    }

    /// Hands out one free slot.
    pub fn alloc(&mut self) -> Result<Slot, SlotError> {
        self.alloc_run(1).map(|r| r.slot(0))
    }

    /// Hands out `n` consecutive free slots of one CNode (first fit).
    pub fn alloc_run(&mut self, n: u64) -> Result<SlotRange, SlotError> {
        if n == 0 || n > self.max_run {
            return Err(SlotError::BadRunLength { len: n });
        }
        if self.free < n {
            return Err(SlotError::Exhausted { needed: n });
        }
        let count = self.cnodes.len();
        for j in 0..count {
            let k = (self.hint + j) % count;
            let Some(c) = self.cnodes[k].as_mut() else { continue };
            if let Some(start) = c.find_run(n) {
                for i in start..start + n {
                    c.set(i, true);
                }
                c.free -= n;
                c.hint = start + n;
                self.free -= n;
                self.hint = k;
                return Ok(SlotRange {
                    cnode: CNodeRef::Level2(k as u32),
                    start,
                    len: n,
                });
            }
        }
        Err(SlotError::Exhausted { needed: n })
    }

    /// Marks a specific free slot as handed out.
    pub fn claim(&mut self, slot: Slot) -> Result<(), SlotError> {
        if !self.is_free(slot) {
            return Err(SlotError::Unmanaged(slot));
        }
        let CNodeRef::Level2(k) = slot.cnode else {
            unreachable!()
        };
        let c = self.cnodes[k as usize].as_mut().expect("checked");
        c.set(slot.index, true);
        c.free -= 1;
        self.free -= 1;
        Ok(())
    }

    /// Gives one slot back.
    pub fn free(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.free_run(SlotRange {
            cnode: slot.cnode,
            start: slot.index,
            len: 1,
        })
        .map_err(|_| SlotError::NotAllocated(slot))
    }

    /// Gives a run back; refused (with nothing changed) unless every slot of
    /// it is handed out.
    pub fn free_run(&mut self, range: SlotRange) -> Result<(), SlotError> {
        let CNodeRef::Level2(k) = range.cnode else {
            return Err(SlotError::NotAllocated(range.slot(0)));
        };
        let Some(Some(c)) = self.cnodes.get_mut(k as usize) else {
            return Err(SlotError::NotAllocated(Slot {
                cnode: range.cnode,
                index: range.start,
            }));
        };
        if range.len == 0 {
            return Err(SlotError::BadRunLength { len: range.len });
        }
        let end = range.start.saturating_add(range.len);
        if range.start < c.usable_range.start || end > c.usable_range.end {
            return Err(SlotError::NotAllocated(range.slot(0)));
        }
        if let Some(i) = (range.start..end).find(|&i| !c.is_used(i)) {
            return Err(SlotError::NotAllocated(Slot {
                cnode: range.cnode,
                index: i,
            }));
        }
        for i in range.start..range.start + range.len {
            c.set(i, false);
        }
        c.free += range.len;
        c.hint = c.hint.min(range.start);
        self.free += range.len;
        Ok(())
    }

    /// Every free slot, in order.
    pub fn free_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.cnodes.iter().enumerate().flat_map(|(k, c)| {
            c.iter().flat_map(move |c| {
                (0..c.len()).filter(move |&i| !c.is_used(i)).map(move |i| Slot {
                    cnode: CNodeRef::Level2(k as u32),
                    index: i,
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_range_only() {
        let mut a = SlotAllocator::new(12, 100..110, 12);
        assert_eq!(a.free_count(), 10);
        assert_eq!(a.capacity(), 10);
        let s = a.alloc().unwrap();
        assert_eq!(s, Slot::root(100));
        let r = a.alloc_run(9).unwrap();
        assert_eq!(
            r,
            SlotRange {
                cnode: CNodeRef::ROOT,
                start: 101,
                len: 9
            }
        );
        assert_eq!(a.alloc(), Err(SlotError::Exhausted { needed: 1 }));
        assert_eq!(a.free_count(), 0);
        a.free(s).unwrap();
        assert_eq!(a.free(s), Err(SlotError::NotAllocated(s)));
        assert_eq!(a.free(Slot::root(5)), Err(SlotError::NotAllocated(Slot::root(5))));
        assert_eq!(a.free_count(), 1);
        assert_eq!(a.alloc_run(2), Err(SlotError::Exhausted { needed: 2 }));
        assert_eq!(a.free_count(), 1);
        a.free_run(r).unwrap();
        assert_eq!(a.free_count(), 10);
        assert_eq!(a.free_slots().count(), 10);
    }

    #[test]
    fn runs_are_contiguous_and_distinct() {
        let mut a = SlotAllocator::new(12, 10..4096, 12);
        a.add_cnode(1).unwrap();
        let mut seen = hashbrown::HashSet::new();
        let mut runs = Vec::new();
        for n in [1u64, 7, 64, 256, 3, 200, 1000, 1] {
            let r = a.alloc_run(n).unwrap();
            assert_eq!(r.len, n);
            for s in r.iter() {
                assert!(seen.insert(s), "slot {s:?} handed out twice");
            }
            runs.push(r);
        }
        let before = a.free_count();
        assert_eq!(a.alloc_run(0), Err(SlotError::BadRunLength { len: 0 }));
        assert_eq!(a.alloc_run(4097), Err(SlotError::BadRunLength { len: 4097 }));
        assert_eq!(
            a.free_run(SlotRange {
                cnode: CNodeRef::ROOT,
                start: 5,
                len: 10
            }),
            Err(SlotError::NotAllocated(Slot::root(5)))
        );
        assert_eq!(a.free_count(), before);
        for r in runs {
            a.free_run(r).unwrap();
        }
        assert_eq!(a.free_count(), 4086 + 4096);
    }

    #[test]
    fn fragmentation_needs_another_cnode() {
        let mut a = SlotAllocator::new(12, 0..4096, 12);
        let slots: Vec<_> = (0..4096).map(|_| a.alloc().unwrap()).collect();
        for s in slots.iter().step_by(2) {
            a.free(*s).unwrap();
        }
        assert_eq!(a.free_count(), 2048);
        assert_eq!(a.alloc_run(2), Err(SlotError::Exhausted { needed: 2 }));
        a.add_cnode(3).unwrap();
        let r = a.alloc_run(2).unwrap();
        assert_eq!(r.cnode, CNodeRef::Level2(3));
        assert_eq!(a.first_unused_index(), 1);
        assert_eq!(a.remove_cnode(3), Err(SlotError::CNodeInUse(CNodeRef::Level2(3))));
        a.free_run(r).unwrap();
        a.remove_cnode(3).unwrap();
        assert_eq!(a.add_cnode(0), Err(SlotError::CNodeExists(CNodeRef::ROOT)));
        assert_eq!(a.cnode_count(), 1);
    }

    #[test]
    fn claim_specific() {
        let mut a = SlotAllocator::new(12, 10..20, 12);
        a.claim(Slot::root(15)).unwrap();
        assert_eq!(a.claim(Slot::root(15)), Err(SlotError::Unmanaged(Slot::root(15))));
        assert_eq!(a.claim(Slot::root(25)), Err(SlotError::Unmanaged(Slot::root(25))));
        assert_eq!(a.free_count(), 9);
        assert_eq!(a.alloc_run(6), Err(SlotError::Exhausted { needed: 6 }));
        assert!(a.alloc_run(5).is_ok());
    }
}
