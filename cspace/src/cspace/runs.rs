//! Copy runs (see *Copy runs* in [`CSpace`]): the records looked up with runs present, and the
//! materialise sites (a run turned into the per-cap records it stands for, at most once); and the
//! stretches of consecutive slots of one CNode by which batches are checked and booked (what a stretch
//! is worth is `mm_types::run::few_stretches`).

use alloc::vec::Vec;
use mm_types::run::few_stretches;

use crate::captable::Idx;
use crate::kernel::KernelOps;
use crate::layout::Slot;
use crate::types::pow2;

use super::CSpace;

impl<K: KernelOps> CSpace<K> {
    /// [`CapTable::find_run`](crate::captable::CapTable::find_run), materialising the copy runs that hold any of
    /// the slots when some slot has no record.
    #[inline]
    pub(super) fn find_run_rec(&mut self, first: Slot, n: u64) -> Result<(), Slot> {
        match self.caps.find_run(first, n) {
            Err(_) if self.materialise_dests(first, n) => self.caps.find_run(first, n),
            r => r,
        }
    }

    /// [`CapTable::check_copies_run`](crate::captable::CapTable::check_copies_run), materialising the copy runs that hold
    /// any of the slots when some slot has no record.
    #[inline]
    pub(super) fn check_copies_run_rec(&mut self, first: Slot, n: u64) -> Result<(), (Slot, bool)> {
        match self.caps.check_copies_run(first, n) {
            Err(_) if self.materialise_dests(first, n) => self.caps.check_copies_run(first, n),
            r => r,
        }
    }

    /// Copies of the original in `slot` held in copy runs.
    #[inline]
    pub(super) fn run_copies_of(&self, slot: Slot) -> u64 {
        if self.runs.is_empty() {
            return 0;
        }
        self.runs.key(slot).map_or(0, |s| self.runs.copies_of(s))
    }

    /// Books the copies of the run whose first destination key is `d` per
    /// cap, exactly as [`adopt_copies_run`](Self::adopt_copies_run) would
    /// have without runs, and forgets the run.
    #[cold]
    #[inline(never)]
    pub(super) fn materialise(&mut self, d: u64) {
        let r = self.runs.remove(d);
        let (src, dests) = (self.runs.slot(r.src), self.runs.range(d, r.n));
        debug_assert_eq!(self.caps.find_originals_run(src, r.n), Ok(true));
        self.caps.insert_copies_run(src, dests);
    }

    /// Materialises the runs holding any of the `n` slots from `first`;
    /// whether there were any.
    #[inline]
    pub(super) fn materialise_dests(&mut self, first: Slot, n: u64) -> bool {
        if self.runs.is_empty() || n == 0 {
            return false;
        }
        self.materialise_dests_slow(first, n)
    }

    #[cold]
    #[inline(never)]
    fn materialise_dests_slow(&mut self, first: Slot, n: u64) -> bool {
        let Some(d) = self.runs.key(first) else {
            return false;
        };
        // Within the CNode.
        let n = n.min(pow2(self.layout.l2_bits) - first.index);
        let ds: Vec<u64> = self.runs.overlapping(d, n).collect();
        for &d in &ds {
            self.materialise(d);
        }
        !ds.is_empty()
    }

    /// Materialises the runs that copy the cap in `slot`.
    #[inline]
    pub(super) fn materialise_sources(&mut self, slot: Slot) {
        if !self.runs.is_empty() {
            self.materialise_sources_slow(slot);
        }
    }

    #[cold]
    #[inline(never)]
    fn materialise_sources_slow(&mut self, slot: Slot) {
        let Some(s) = self.runs.key(slot) else { return };
        let ds: Vec<u64> = self.runs.copying(s).collect();
        for d in ds {
            self.materialise(d);
        }
    }

    /// Materialises the runs that hold any of `slots`.
    #[inline(always)]
    pub(super) fn materialise_missing(&mut self, slots: &[Slot]) {
        if !self.runs.is_empty() {
            self.materialise_missing_slow(slots);
        }
    }

    #[cold]
    #[inline(never)]
    fn materialise_missing_slow(&mut self, slots: &[Slot]) {
        for &s in slots {
            if self.caps.find(s).is_none() {
                self.materialise_dests(s, 1);
            }
        }
    }

    /// The record of the cap in `slot`, materialising the run that holds it
    /// if a run does.
    #[inline(always)]
    pub(super) fn find_rec(&mut self, slot: Slot) -> Option<Idx> {
        match self.caps.find(slot) {
            Some(i) => Some(i),
            None if self.runs.is_empty() => None,
            None => self.find_rec_slow(slot),
        }
    }

    #[cold]
    #[inline(never)]
    fn find_rec_slow(&mut self, slot: Slot) -> Option<Idx> {
        self.materialise_dests(slot, 1);
        self.caps.find(slot)
    }
}

/// The stretches of consecutive slots of one CNode in `slots` (`slots[o +
/// j]` is `slots[o]` plus `j`, without wrapping), as (offset, length), in order; `None` when
/// they are too short on average to be worth handling as runs
/// ([`few_stretches`]: fewer than `MIN_STRETCH_AVERAGE` slots per stretch).
pub(super) fn stretches(slots: &[Slot]) -> Option<Parts> {
    if slots.is_empty() {
        return Some(Parts::Inline(0, [(0, 0); PARTS_INLINE]));
    }
    // The usual case first: all of them one stretch (no bookkeeping).
    let len = stretch_len(slots, 0);
    if len == slots.len() {
        return Some(Parts::One([(0, len)]));
    }
    let mut parts = Parts::Inline(1, [(0, len); PARTS_INLINE]);
    let mut o = len;
    while o < slots.len() {
        // Too many for the batch's length (one more would not be worth it),
        // or (early, to give up cheaply) the first ones mostly single slots.
        if !few_stretches(parts.len() + 1, slots.len()) || (parts.len() == 8 && o < 16) {
            return None;
        }
        let len = stretch_len(slots, o);
        parts.push((o, len));
        o += len;
    }
    Some(parts)
}

/// The length of the stretch of consecutive slots of one CNode in `slots`
/// from `slots[o]` (`o < slots.len()`).
#[inline(always)]
fn stretch_len(slots: &[Slot], o: usize) -> usize {
    let first = slots[o];
    // At most as many as fit below the end of the index space (so that the
    // indices below do not wrap).
    let room = usize::try_from(u64::MAX - first.index).unwrap_or(usize::MAX);
    let rest = &slots[o + 1..];
    let rest = &rest[..rest.len().min(room)];
    let mut len = 1;
    let mut index = first.index;
    for s in rest {
        index += 1;
        if s.index != index || s.cnode != first.cnode {
            break;
        }
        len += 1;
    }
    len
}

/// Stretches found by [`stretches`], kept inline when few, so that a small
/// batch allocates nothing.
pub(super) enum Parts {
    /// The whole batch is one stretch.
    One([(usize, usize); 1]),
    Inline(usize, [(usize, usize); PARTS_INLINE]),
    Heap(Vec<(usize, usize)>),
}

/// Stretches [`Parts`] keeps without allocating.
const PARTS_INLINE: usize = 4;

impl Parts {
    #[inline]
    fn push(&mut self, part: (usize, usize)) {
        match self {
            Parts::Inline(n, a) if *n < PARTS_INLINE => {
                a[*n] = part;
                *n += 1;
            }
            Parts::Heap(v) => v.push(part),
            _ => {
                let mut v = Vec::with_capacity(4 * PARTS_INLINE);
                v.extend_from_slice(self);
                v.push(part);
                *self = Parts::Heap(v);
            }
        }
    }
}

impl core::ops::Deref for Parts {
    type Target = [(usize, usize)];

    #[inline]
    fn deref(&self) -> &[(usize, usize)] {
        match self {
            Parts::One(a) => a,
            Parts::Inline(n, a) => &a[..*n],
            Parts::Heap(v) => v,
        }
    }
}

/// Whether the stretches `parts` of `slots` (see [`stretches`]) come in
/// increasing slot order, each after the last slot of the one before (so
/// that no slot is named twice).
pub(super) fn increasing(slots: &[Slot], parts: &[(usize, usize)]) -> bool {
    parts.windows(2).all(|w| slots[w[0].0 + w[0].1 - 1] < slots[w[1].0])
}

#[cfg(test)]
mod stretch_tests {
    use super::*;
    use crate::layout::CNodeRef;

    fn s(k: u32, index: u64) -> Slot {
        Slot {
            cnode: CNodeRef::Level2(k),
            index,
        }
    }

    fn run(k: u32, from: u64, n: u64) -> Vec<Slot> {
        (from..from + n).map(|i| s(k, i)).collect()
    }

    /// As `stretches` was first written: one growing vector (and the
    /// threshold written out: 8 slots per stretch on average).
    fn reference(slots: &[Slot]) -> Option<Vec<(usize, usize)>> {
        let mut parts = Vec::new();
        let mut o = 0;
        while o < slots.len() {
            if (!parts.is_empty() && (parts.len() + 1) * 8 > slots.len()) || (parts.len() == 8 && o < 16) {
                return None;
            }
            let mut len = 1;
            while o + len < slots.len()
                && slots[o + len].cnode == slots[o].cnode
                && slots[o].index.checked_add(len as u64) == Some(slots[o + len].index)
            {
                len += 1;
            }
            parts.push((o, len));
            o += len;
        }
        Some(parts)
    }

    fn check(slots: &[Slot]) -> Option<Vec<(usize, usize)>> {
        let got = stretches(slots).map(|p| p.to_vec());
        assert_eq!(got, reference(slots), "{slots:?}");
        got
    }

    #[test]
    fn empty_one_and_few() {
        assert_eq!(check(&[]), Some(vec![]));
        assert_eq!(check(&[s(1, 5)]), Some(vec![(0, 1)]));
        assert_eq!(check(&run(1, 5, 16)), Some(vec![(0, 16)]));
        // Another CNode, or a gap, ends a stretch.
        let mut v = run(1, 5, 12);
        v.extend(run(2, 17, 4));
        assert_eq!(check(&v), Some(vec![(0, 12), (12, 4)]));
        let mut v = run(1, 5, 12);
        v.extend(run(1, 18, 4));
        assert_eq!(check(&v), Some(vec![(0, 12), (12, 4)]));
        // Too many for their length.
        assert_eq!(check(&[s(1, 5), s(1, 7)]), None);
        // The index space's end ends a stretch.
        assert_eq!(check(&[s(1, u64::MAX), s(1, 0)]), None);
        let v = [s(1, u64::MAX - 1), s(1, u64::MAX)];
        assert_eq!(check(&v), Some(vec![(0, 2)]));
    }

    #[test]
    fn more_stretches_than_kept_inline() {
        // 6 stretches of 8 (past the inline ones), then 7 and 9.
        for count in [PARTS_INLINE, PARTS_INLINE + 1, 6, 7, 9] {
            let v: Vec<Slot> = (0..count as u64).flat_map(|t| run(1, t * 100, 8)).collect();
            let want: Vec<_> = (0..count).map(|t| (t * 8, 8)).collect();
            assert_eq!(check(&v), Some(want));
        }
        // Mostly single slots: given up.
        let v: Vec<Slot> = (0..64).map(|t| s(1, t * 2)).collect();
        assert_eq!(check(&v), None);
    }

    proptest::proptest! {
        #[test]
        fn as_the_reference(pieces in proptest::collection::vec((0u32..3, 0u64..64, 1u64..20), 0..12)) {
            let v: Vec<Slot> = pieces.iter().flat_map(|&(k, from, n)| run(k, from, n)).collect();
            check(&v);
        }
    }
}
