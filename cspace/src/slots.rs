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
#[cfg_attr(test, derive(PartialEq, Eq))]
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

    #[inline]
    fn is_used(&self, i: u64) -> bool {
        self.used[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    #[inline]
    fn set(&mut self, i: u64, v: bool) {
        let w = &mut self.used[(i / 64) as usize];
        if v {
            *w |= 1u64 << (i % 64)
        } else {
            *w &= !(1u64 << (i % 64))
        }
    }

    /// Marks `n` slots from `start` used (`v`) or free.
    fn set_range(&mut self, start: u64, n: u64, v: bool) {
        let end = start + n;
        let mut i = start;
        while i < end {
            let w = (i / 64) as usize;
            let lo = i % 64;
            let hi = (end - (i - lo)).min(64);
            let mask = (!0u64 >> (64 - (hi - lo))) << lo;
            if v {
                self.used[w] |= mask;
            } else {
                self.used[w] &= !mask;
            }
            i += hi - lo;
        }
    }

    /// First run of `n` free slots at or after the hint, else from 0.
    fn find_run(&self, n: u64) -> Option<u64> {
        if self.free < n {
            return None;
        }
        self.find_run_from(self.hint, n).or_else(|| self.find_run_from(0, n))
    }

    /// First free slot at or after the hint, else from 0 (the same slot as
    /// `find_run(1)`).
    #[inline]
    fn find_one(&self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        self.next_free(self.hint).or_else(|| self.next_free(0))
    }

    /// Start of the first run of `n` free slots at or after `from`.
    fn find_run_from(&self, from: u64, n: u64) -> Option<u64> {
        let len = self.len();
        let mut i = from;
        while i < len {
            let start = self.next_free(i)?;
            // Only the `n` slots from `start` matter (not the whole free
            // stretch, which may reach the CNode's end).
            let limit = start.saturating_add(n).min(len);
            match self.next_bit_before(start, limit, 0) {
                Some(used) => i = used,
                None if limit - start == n => return Some(start),
                None => return None,
            }
        }
        None
    }

    /// First free slot at or after `from`.
    #[inline]
    fn next_free(&self, from: u64) -> Option<u64> {
        self.next_bit(from, !0)
    }

    /// First index in `from..limit` (`limit <= len()`) whose bit in `used ^
    /// flip` is set.
    #[inline]
    fn next_bit_before(&self, from: u64, limit: u64, flip: u64) -> Option<u64> {
        if from >= limit {
            return None;
        }
        let (mut w, last) = ((from / 64) as usize, ((limit - 1) / 64) as usize);
        let mut bits = (self.used[w] ^ flip) & (!0u64 << (from % 64));
        loop {
            if w == last {
                // The bits of the last word below `limit`.
                bits &= !0u64 >> (63 - (limit - 1) % 64);
            }
            if bits != 0 {
                return Some(w as u64 * 64 + bits.trailing_zeros() as u64);
            }
            if w == last {
                return None;
            }
            w += 1;
            bits = self.used[w] ^ flip;
        }
    }

    /// First index at or after `from` whose bit in `used ^ flip` is set.
    #[inline]
    fn next_bit(&self, from: u64, flip: u64) -> Option<u64> {
        let mut w = (from / 64) as usize;
        let mut bits = (self.used.get(w)? ^ flip) & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                return Some(w as u64 * 64 + bits.trailing_zeros() as u64);
            }
            w += 1;
            bits = self.used.get(w)? ^ flip;
        }
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
#[cfg_attr(test, derive(PartialEq, Eq))]
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

    /// Hands out one free slot (the one [`alloc_run(1)`](Self::alloc_run)
    /// would hand out).
    #[inline]
    pub fn alloc(&mut self) -> Result<Slot, SlotError> {
        // Fast path: a free slot at or after the hint of the hint CNode (the
        // one the search below finds first).
        if let Some(Some(c)) = self.cnodes.get_mut(self.hint) {
            if let Some(i) = c.next_free(c.hint) {
                c.set(i, true);
                c.free -= 1;
                c.hint = i + 1;
                self.free -= 1;
                return Ok(Slot {
                    cnode: CNodeRef::Level2(self.hint as u32),
                    index: i,
                });
            }
        }
        self.alloc_search()
    }

    fn alloc_search(&mut self) -> Result<Slot, SlotError> {
        if self.free == 0 {
            return Err(SlotError::Exhausted { needed: 1 });
        }
        let count = self.cnodes.len();
        let mut k = self.hint;
        for _ in 0..count {
            if k >= count {
                k = 0;
            }
            let Some(c) = self.cnodes[k].as_mut() else {
                k += 1;
                continue;
            };
            if let Some(i) = c.find_one() {
                c.set(i, true);
                c.free -= 1;
                c.hint = i + 1;
                self.free -= 1;
                self.hint = k;
                return Ok(Slot {
                    cnode: CNodeRef::Level2(k as u32),
                    index: i,
                });
            }
            k += 1;
        }
        Err(SlotError::Exhausted { needed: 1 })
    }

    /// Hands out `n` consecutive free slots of one CNode (first fit).
    pub fn alloc_run(&mut self, n: u64) -> Result<SlotRange, SlotError> {
        if n == 0 || n > self.max_run {
            return Err(SlotError::BadRunLength { len: n });
        }
        if self.free < n {
            return Err(SlotError::Exhausted { needed: n });
        }
        // Fast path: the `n` slots from the hint of the hint CNode are free
        // (so the first-fit search below would find them first).
        if let Some(Some(c)) = self.cnodes.get_mut(self.hint) {
            let start = c.hint;
            if start.saturating_add(n) <= c.len() && c.next_bit_before(start, start + n, 0).is_none() {
                c.set_range(start, n, true);
                c.free -= n;
                c.hint = start + n;
                self.free -= n;
                return Ok(SlotRange {
                    cnode: CNodeRef::Level2(self.hint as u32),
                    start,
                    len: n,
                });
            }
        }
        let count = self.cnodes.len();
        for j in 0..count {
            let k = (self.hint + j) % count;
            let Some(c) = self.cnodes[k].as_mut() else { continue };
            if let Some(start) = c.find_run(n) {
                c.set_range(start, n, true);
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

    /// Gives one slot back (as [`free_run`](Self::free_run) of one slot).
    #[inline]
    pub fn free(&mut self, slot: Slot) -> Result<(), SlotError> {
        let CNodeRef::Level2(k) = slot.cnode else {
            return Err(SlotError::NotAllocated(slot));
        };
        match self.cnodes.get_mut(k as usize) {
            Some(Some(c)) if c.usable_range.contains(&slot.index) && c.is_used(slot.index) => {
                c.set(slot.index, false);
                c.free += 1;
                c.hint = c.hint.min(slot.index);
                self.free += 1;
                Ok(())
            }
            _ => Err(SlotError::NotAllocated(slot)),
        }
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
        if let Some(i) = c.next_bit_before(range.start, end, !0) {
            return Err(SlotError::NotAllocated(Slot {
                cnode: range.cnode,
                index: i,
            }));
        }
        c.set_range(range.start, range.len, false);
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
    fn free_run_checks_only_its_own_slots() {
        let mut a = SlotAllocator::new(9, 0..512, 9);
        // A run across a word boundary, with free slots after it.
        let r = a.alloc_run(100).unwrap();
        let tail = a.alloc_run(40).unwrap();
        a.free_run(tail).unwrap();
        let inner = SlotRange {
            cnode: CNodeRef::ROOT,
            start: 60,
            len: 10,
        };
        a.free_run(inner).unwrap();
        // A free slot inside the run refuses it, naming the first one.
        assert_eq!(a.free_run(r), Err(SlotError::NotAllocated(Slot::root(60))));
        let before = SlotRange {
            cnode: CNodeRef::ROOT,
            start: 0,
            len: 60,
        };
        let after = SlotRange {
            cnode: CNodeRef::ROOT,
            start: 70,
            len: 30,
        };
        a.free_run(after).unwrap();
        a.free_run(before).unwrap();
        assert_eq!(a.free_count(), 512);
    }

    #[test]
    fn bounded_bit_search() {
        let mut a = SlotAllocator::new(8, 0..256, 8);
        let c = a.cnodes[0].as_mut().unwrap();
        for i in [3u64, 63, 64, 130, 255] {
            c.set(i, true);
        }
        let c = a.cnodes[0].as_ref().unwrap();
        for from in 0..256u64 {
            for limit in from..=256u64 {
                let used = (from..limit).find(|&i| c.is_used(i));
                let free = (from..limit).find(|&i| !c.is_used(i));
                assert_eq!(c.next_bit_before(from, limit, 0), used, "{from}..{limit}");
                assert_eq!(c.next_bit_before(from, limit, !0), free, "{from}..{limit}");
            }
        }
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

    /// The allocator as it was written first (a bit at a time), to check
    /// that the word-at-a-time search hands out the same slots.
    struct Reference {
        cnodes: Vec<Option<(Vec<bool>, u64)>>,
        hint: usize,
    }

    impl Reference {
        fn new(root_bits: u8, empty: Range<u64>) -> Self {
            let used = (0..1u64 << root_bits).map(|i| !empty.contains(&i)).collect();
            Reference {
                cnodes: vec![Some((used, empty.start))],
                hint: 0,
            }
        }

        fn find_run_from(used: &[bool], from: u64, n: u64) -> Option<u64> {
            let (mut start, mut run) = (from, 0);
            for i in from..used.len() as u64 {
                if used[i as usize] {
                    run = 0;
                    start = i + 1;
                } else {
                    run += 1;
                    if run == n {
                        return Some(start);
                    }
                }
            }
            None
        }

        fn alloc_run(&mut self, n: u64) -> Option<SlotRange> {
            let count = self.cnodes.len();
            for j in 0..count {
                let k = (self.hint + j) % count;
                let Some((used, hint)) = self.cnodes[k].as_mut() else {
                    continue;
                };
                let found = Self::find_run_from(used, *hint, n).or_else(|| Self::find_run_from(used, 0, n));
                if let Some(start) = found {
                    for i in start..start + n {
                        used[i as usize] = true;
                    }
                    *hint = start + n;
                    self.hint = k;
                    return Some(SlotRange {
                        cnode: CNodeRef::Level2(k as u32),
                        start,
                        len: n,
                    });
                }
            }
            None
        }

        fn free_run(&mut self, r: SlotRange) {
            let CNodeRef::Level2(k) = r.cnode else { unreachable!() };
            let (used, hint) = self.cnodes[k as usize].as_mut().unwrap();
            for i in r.start..r.start + r.len {
                assert!(used[i as usize]);
                used[i as usize] = false;
            }
            *hint = (*hint).min(r.start);
        }
    }

    proptest::proptest! {
        #[test]
        fn hands_out_what_the_bitwise_search_would(
            ops in proptest::collection::vec((0u8..10, 1u64..300, proptest::prelude::any::<usize>()), 1..300)
        ) {
            let mut a = SlotAllocator::new(9, 40..500, 9);
            let mut r = Reference::new(9, 40..500);
            let mut taken: Vec<SlotRange> = Vec::new();
            for (op, n, i) in ops {
                match op {
                    0..=2 => {
                        let got = a.alloc().ok().map(|s| SlotRange { cnode: s.cnode, start: s.index, len: 1 });
                        assert_eq!(got, r.alloc_run(1));
                        taken.extend(got);
                    }
                    3..=5 => {
                        let n = if op == 3 { n % 8 + 1 } else { n };
                        let got = a.alloc_run(n).ok();
                        assert_eq!(got, r.alloc_run(n));
                        taken.extend(got);
                    }
                    6..=8 if !taken.is_empty() => {
                        let run = taken.swap_remove(i % taken.len());
                        if run.len == 1 {
                            a.free(run.slot(0)).unwrap();
                        } else {
                            a.free_run(run).unwrap();
                        }
                        assert_eq!(a.free(run.slot(0)), Err(SlotError::NotAllocated(run.slot(0))));
                        r.free_run(run);
                    }
                    9 => {
                        let k = a.first_unused_index();
                        if k < 6 {
                            a.add_cnode(k).unwrap();
                            if r.cnodes.len() <= k as usize {
                                r.cnodes.resize(k as usize + 1, None);
                            }
                            r.cnodes[k as usize] = Some((vec![false; 512], 0));
                        }
                    }
                    _ => {}
                }
                let want: Vec<Slot> = r
                    .cnodes
                    .iter()
                    .enumerate()
                    .flat_map(|(k, c)| {
                        c.iter().flat_map(move |(used, _)| {
                            (0..used.len() as u64).filter(|&i| !used[i as usize]).map(move |i| Slot {
                                cnode: CNodeRef::Level2(k as u32),
                                index: i,
                            })
                        })
                    })
                    .collect();
                assert_eq!(a.free_slots().collect::<Vec<_>>(), want);
                assert_eq!(a.free_count(), want.len() as u64);
            }
        }
    }
}
