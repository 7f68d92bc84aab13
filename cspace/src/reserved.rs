//! The empty slots handed out by `CSpace::alloc_slots` (crate-internal): a
//! bitmap per level-2 CNode, so that runs are added, checked and removed a
//! word (64 slots) at a time and single slots need no hashing.

use alloc::vec;
use alloc::vec::Vec;

use crate::layout::{CNodeRef, Slot, SlotRange};

/// A set of level-2 slots.
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(PartialEq, Eq))]
pub(crate) struct Reserved {
    /// By level-2 index: one bit per slot (empty until the CNode's first
    /// reservation).
    cnodes: Vec<Vec<u64>>,
    /// Radix of the level-2 CNodes (the boot CNode is no larger).
    l2_bits: u8,
    /// Number of level-2 CNodes the layout can address (`2^L1`).
    max_level2: u64,
    /// Slots in the set.
    len: u64,
}

impl Reserved {
    /// An empty set for the layout with level-1 radix `l1_bits` and level-2
    /// radix `l2_bits`.
    pub fn new(l1_bits: u8, l2_bits: u8) -> Self {
        Reserved {
            cnodes: Vec::new(),
            l2_bits,
            max_level2: 1u64 << l1_bits,
            len: 0,
        }
    }

    /// Slots in the set.
    #[inline]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Slots per CNode.
    #[inline]
    fn cnode_slots(&self) -> u64 {
        1u64 << self.l2_bits
    }

    /// The level-2 index of `cnode`, if the layout has it.
    #[inline]
    fn level2(&self, cnode: CNodeRef) -> Option<usize> {
        match cnode {
            CNodeRef::Level2(k) if (k as u64) < self.max_level2 => Some(k as usize),
            _ => None,
        }
    }

    /// The bitmap of `cnode`, if it has ever held a reservation.
    #[inline]
    fn words(&self, cnode: CNodeRef) -> Option<&[u64]> {
        let w = self.cnodes.get(self.level2(cnode)?)?;
        (!w.is_empty()).then_some(&w[..])
    }

    /// The bitmap of `cnode` (a level-2 CNode of the layout), made on first
    /// use.
    #[inline]
    fn words_mut(&mut self, cnode: CNodeRef) -> &mut Vec<u64> {
        let k = self.level2(cnode).expect("a level-2 CNode of the layout");
        if k >= self.cnodes.len() || self.cnodes[k].is_empty() {
            self.make(k);
        }
        &mut self.cnodes[k]
    }

    #[cold]
    fn make(&mut self, k: usize) {
        if k >= self.cnodes.len() {
            self.cnodes.resize(k + 1, Vec::new());
        }
        self.cnodes[k] = vec![0; self.cnode_slots().div_ceil(64) as usize];
    }

    /// Whether `slot` is in the set.
    #[inline]
    pub fn contains(&self, slot: &Slot) -> bool {
        if slot.index >= self.cnode_slots() {
            return false;
        }
        self.words(slot.cnode)
            .is_some_and(|w| w[(slot.index / 64) as usize] & (1u64 << (slot.index % 64)) != 0)
    }

    /// Adds `slot` (a slot of the layout); whether it was not there.
    #[inline]
    pub fn insert(&mut self, slot: Slot) -> bool {
        debug_assert!(slot.index < self.cnode_slots());
        let w = &mut self.words_mut(slot.cnode)[(slot.index / 64) as usize];
        let bit = 1u64 << (slot.index % 64);
        let fresh = *w & bit == 0;
        *w |= bit;
        self.len += fresh as u64;
        fresh
    }

    /// Removes `slot`; whether it was there.
    #[inline]
    pub fn remove(&mut self, slot: &Slot) -> bool {
        if !self.contains(slot) {
            return false;
        }
        let k = self.level2(slot.cnode).expect("contained");
        self.cnodes[k][(slot.index / 64) as usize] &= !(1u64 << (slot.index % 64));
        self.len -= 1;
        true
    }

    /// The words and masks covering slots `start .. end` of one CNode
    /// (`end <= 2^L2`).
    #[inline]
    fn masks(start: u64, end: u64) -> impl Iterator<Item = (usize, u64)> {
        let (first, last) = (start / 64, end.div_ceil(64));
        (first..last).map(move |w| {
            let lo = if w == first { start % 64 } else { 0 };
            let hi = (end - w * 64).min(64);
            (w as usize, (!0u64 >> (64 - (hi - lo))) << lo)
        })
    }

    /// Adds every slot of `range` (slots of the layout).
    pub fn insert_run(&mut self, range: SlotRange) {
        if range.len == 0 {
            return;
        }
        let end = range.start + range.len;
        debug_assert!(end <= self.cnode_slots());
        let words = self.words_mut(range.cnode);
        let mut added = 0;
        for (w, m) in Self::masks(range.start, end) {
            added += (!words[w] & m).count_ones() as u64;
            words[w] |= m;
        }
        self.len += added;
    }

    /// The first slot of `range` (in order) not in the set.
    pub fn first_missing(&self, range: SlotRange) -> Option<Slot> {
        if range.len == 0 {
            return None;
        }
        let Some(words) = self.words(range.cnode) else {
            return Some(range.slot(0));
        };
        let n = self.cnode_slots();
        let end = range.start.saturating_add(range.len).min(n);
        if range.start < end {
            for (w, m) in Self::masks(range.start, end) {
                let missing = !words[w] & m;
                if missing != 0 {
                    let index = w as u64 * 64 + missing.trailing_zeros() as u64;
                    return Some(Slot {
                        cnode: range.cnode,
                        index,
                    });
                }
            }
        }
        // Past the CNode's last slot (no slot of the layout is there).
        (range.start.saturating_add(range.len) > end).then(|| Slot {
            cnode: range.cnode,
            index: end.max(range.start),
        })
    }

    /// Removes every slot of `range`, all of which are in the set.
    pub fn remove_run(&mut self, range: SlotRange) {
        debug_assert_eq!(self.first_missing(range), None);
        if range.len == 0 {
            return;
        }
        let k = self.level2(range.cnode).expect("reserved slots are level-2 slots");
        let words = &mut self.cnodes[k];
        for (w, m) in Self::masks(range.start, range.start + range.len) {
            words[w] &= !m;
        }
        self.len -= range.len;
    }

    /// Every slot of the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.cnodes.iter().enumerate().flat_map(|(k, words)| {
            words.iter().enumerate().flat_map(move |(w, &bits)| {
                let mut bits = bits;
                core::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let b = bits.trailing_zeros() as u64;
                    bits &= bits - 1;
                    Some(Slot {
                        cnode: CNodeRef::Level2(k as u32),
                        index: w as u64 * 64 + b,
                    })
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn run(k: u32, start: u64, len: u64) -> SlotRange {
        SlotRange {
            cnode: CNodeRef::Level2(k),
            start,
            len,
        }
    }

    /// Matches a set of slots under random runs and single slots.
    #[test]
    fn matches_a_set() {
        let mut r = Reserved::new(3, 8);
        let mut model = BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..4000 {
            let k = next(3) as u32;
            let start = next(256);
            let len = next(140).min(256 - start);
            let range = run(k, start, len);
            let missing = range.iter().find(|s| !model.contains(s));
            assert_eq!(r.first_missing(range), missing);
            match next(4) {
                0 if missing.is_none() => {
                    r.remove_run(range);
                    for s in range.iter() {
                        model.remove(&s);
                    }
                }
                1 => {
                    r.insert_run(range);
                    model.extend(range.iter());
                }
                2 => {
                    let s = Slot {
                        cnode: CNodeRef::Level2(k),
                        index: start,
                    };
                    assert_eq!(r.insert(s), model.insert(s));
                }
                _ => {
                    let s = Slot {
                        cnode: CNodeRef::Level2(k),
                        index: start,
                    };
                    assert_eq!(r.remove(&s), model.remove(&s));
                }
            }
            assert_eq!(r.len(), model.len() as u64);
            assert!(r.iter().eq(model.iter().copied()));
        }
        // Slots outside the layout or past a CNode's end are never in it.
        assert!(!r.contains(&Slot {
            cnode: CNodeRef::Level1,
            index: 0
        }));
        assert!(!r.contains(&Slot {
            cnode: CNodeRef::Level2(9),
            index: 0
        }));
        assert_eq!(r.first_missing(run(0, 250, 10)).map(|s| s.index), {
            let m = (250..256).find(|&i| {
                !model.contains(&Slot {
                    cnode: CNodeRef::Level2(0),
                    index: i,
                })
            });
            Some(m.unwrap_or(256))
        });
    }
}
