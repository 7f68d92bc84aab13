//! The shadow's cap index: frame cap -> page start.
//!
//! The caps of a range are usually consecutive slots mapped at consecutive pages. Such caps are kept by
//! *blocks* of 64 consecutive cap values: a block records which of its caps are mapped as a bitmask and
//! where they are as one arithmetic progression of pages (cap `i` of the block at `base + i * size`), so
//! entering or removing a run of consecutive caps is one hash-map operation and one mask update per block,
//! not per cap. Other caps (alone in their block in a run, or off their block's progression) are kept one
//! by one (*singles*) in a small open-addressing table of their own, at one probe each: a cap whose
//! successor in the run is not the next value goes there with no further look at the run.
//!
//! A cap is in at most one of the two. To check that without a second probe per cap, each side has a
//! small counting filter of the blocks it has caps in: a run of consecutive caps looks at the singles only
//! if the filter says its block may have some, and a single looks at the blocks only if the filter says
//! its block may be one. The singles' filter is made only when a run first needs it while there are
//! singles (and kept from then on), so caps that only ever come alone do not pay for it; removals look at
//! the singles first for a cap alone, and at nothing else when there are no blocks.

use core::fmt;

use alloc::boxed::Box;
use alloc::vec::Vec;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use mm_types::run::consecutive_prefix;

use crate::kernel::CapRef;

/// Cap values per block, as a shift.
const BLOCK_BITS: u32 = 6;

/// Cap values per block.
const BLOCK: u64 = 1 << BLOCK_BITS;

/// Counters per filter, as a shift.
const FILTER_BITS: u32 = 9;

/// The mapped caps of one block of 64 cap values that lie at its progression.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Block {
    /// Which of the block's caps are here (never 0: an empty block is removed).
    mask: u64,
    /// Where the block's cap 0 would be (wrapping).
    base: u64,
    /// The progression's step, as a shift.
    bits: u32,
}

impl Block {
    #[inline]
    fn get(&self, i: u64) -> u64 {
        self.base.wrapping_add(i << self.bits)
    }
}

/// The bits `lo..lo + n` (`1 <= n`, `lo + n <= 64`).
#[inline(always)]
fn bits_of(lo: u32, n: usize) -> u64 {
    (u64::MAX >> (64 - n)) << lo
}

/// A counting filter of block keys: how many entries (blocks, or singles) each hash class holds. Zero
/// for a key's class: nothing of that block; otherwise maybe. No counters (nothing ever held): zero for
/// every class.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
struct Filter(Option<Box<[u32; 1 << FILTER_BITS]>>);

impl Filter {
    #[inline(always)]
    fn class(key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FILTER_BITS)) as usize
    }

    #[inline(always)]
    fn may_hold(&self, key: u64) -> bool {
        self.0.as_ref().is_some_and(|c| c[Self::class(key)] != 0)
    }

    #[inline(always)]
    fn add(&mut self, key: u64) {
        let counts = match &mut self.0 {
            Some(c) => c,
            None => self.0.insert(Box::new([0; 1 << FILTER_BITS])),
        };
        counts[Self::class(key)] += 1;
    }

    /// Counts `key` if the counters are kept (see [`CapMap::in_singles`]).
    #[inline(always)]
    fn add_if_kept(&mut self, key: u64) {
        if let Some(c) = &mut self.0 {
            c[Self::class(key)] += 1;
        }
    }

    /// Uncounts `key` if the counters are kept.
    #[inline(always)]
    fn sub(&mut self, key: u64) {
        if let Some(c) = &mut self.0 {
            c[Self::class(key)] -= 1;
        }
    }
}

/// The length of the run of consecutive cap values at the start of `caps` (at least the first two) that
/// stays in the block of the first, and that block's key and the first cap's index in it.
#[inline(always)]
fn block_run(caps: &[CapRef]) -> (u64, u32, usize) {
    let c = caps[0].0;
    let lo = (c & (BLOCK - 1)) as u32;
    let max = ((BLOCK as u32 - lo) as usize).min(caps.len());
    let n = consecutive_prefix(&caps[..max], |x| x.0).max(2.min(max));
    (c >> BLOCK_BITS, lo, n)
}

/// Frame cap -> page start (see the module documentation).
#[derive(Clone, Default)]
pub(crate) struct CapMap {
    blocks: HashMap<u64, Block>,
    singles: Singles,
    /// Counts the blocks, by key.
    in_blocks: Filter,
    /// Counts the singles, by block key, once a run of consecutive caps has needed it while there were
    /// singles (kept from then on; until then, no counters and nothing counted: caps that only ever come
    /// alone pay nothing for it).
    in_singles: Filter,
}

/// A cap's block key and index in the block.
#[inline(always)]
fn split(cap: CapRef) -> (u64, u64) {
    (cap.0 >> BLOCK_BITS, cap.0 & (BLOCK - 1))
}

impl CapMap {
    /// The block holding `cap` at its progression.
    #[inline(always)]
    fn block_of(&self, cap: CapRef) -> Option<&Block> {
        let (key, i) = split(cap);
        if !self.in_blocks.may_hold(key) {
            return None;
        }
        self.blocks.get(&key).filter(|b| b.mask >> i & 1 != 0)
    }

    /// The page start of `cap`, if it is entered.
    #[inline]
    pub fn get(&self, cap: CapRef) -> Option<u64> {
        match self.block_of(cap) {
            Some(b) => Some(b.get(split(cap).1)),
            None => self.singles.get(cap),
        }
    }

    /// Whether `cap` is entered.
    #[inline]
    pub fn contains(&self, cap: CapRef) -> bool {
        self.block_of(cap).is_some() || self.singles.contains(cap)
    }

    /// Number of caps entered.
    pub fn len(&self) -> usize {
        self.singles.len()
            + self
                .blocks
                .values()
                .map(|b| b.mask.count_ones() as usize)
                .sum::<usize>()
    }

    /// Every cap entered, with its page start, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (CapRef, u64)> + '_ {
        let blocks = self.blocks.iter().flat_map(|(&key, b)| {
            (0..BLOCK)
                .filter(|&i| b.mask >> i & 1 != 0)
                .map(move |i| (CapRef(key << BLOCK_BITS | i), b.get(i)))
        });
        blocks.chain(self.singles.iter())
    }

    /// Enters one cap as a single. Refused if it is entered already.
    #[inline(always)]
    fn insert_single(&mut self, cap: CapRef, vaddr: u64) -> Result<(), ()> {
        if self.block_of(cap).is_some() {
            return Err(());
        }
        self.singles.insert(cap, vaddr)?;
        self.in_singles.add_if_kept(split(cap).0);
        Ok(())
    }

    /// Whether `caps[j]` (entered or removed in a run) stands alone: its successor in `caps` is not the
    /// next cap value in its block.
    #[inline(always)]
    fn alone(caps: &[CapRef], j: usize) -> bool {
        let c = caps[j].0;
        caps.get(j + 1).is_none_or(|d| d.0 != c.wrapping_add(1)) || c & (BLOCK - 1) == BLOCK - 1
    }

    /// Enters `caps[j]` at `start + (j << bits)`, in order. At the first cap entered already (before, or
    /// earlier in `caps`), stops and returns its index: exactly the caps before it are entered then.
    #[inline]
    pub fn insert_run(&mut self, caps: &[CapRef], start: u64, bits: u32) -> Result<(), usize> {
        let mut j = 0;
        while j < caps.len() {
            let v = start.wrapping_add((j as u64) << bits);
            if Self::alone(caps, j) {
                // A single, with no further look at the run.
                self.insert_single(caps[j], v).map_err(|()| j)?;
                j += 1;
            } else {
                j += self.insert_block_run(&caps[j..], v, bits).map_err(|k| j + k)?;
            }
        }
        Ok(())
    }

    /// Enters the run of consecutive caps at the start of `rest` (at least two) that stays in the first's
    /// block, the first at `v`, by the block (or, off its progression, as singles); returns how many, or
    /// the index of the first entered already (the caps before it entered).
    #[inline(never)]
    fn insert_block_run(&mut self, rest: &[CapRef], v: u64, bits: u32) -> Result<usize, usize> {
        let (key, lo, run) = block_run(rest);
        // How many caps of the run go in before the first entered already: as singles...
        let mut n = run;
        if self.singles_may_hold(key) {
            if let Some(k) = rest[..n].iter().position(|&c| self.singles.contains(c)) {
                n = k;
            }
        }
        if n > 0 {
            let base = v.wrapping_sub(u64::from(lo) << bits);
            match self.blocks.entry(key) {
                Entry::Vacant(e) => {
                    e.insert(Block {
                        mask: bits_of(lo, n),
                        base,
                        bits,
                    });
                    self.in_blocks.add(key);
                }
                Entry::Occupied(mut e) => {
                    let b = e.get_mut();
                    // ...or in the block.
                    let clash = b.mask & bits_of(lo, n);
                    if clash != 0 {
                        n = (clash.trailing_zeros() - lo) as usize;
                    }
                    if n > 0 {
                        if b.base == base && b.bits == bits {
                            b.mask |= bits_of(lo, n);
                        } else {
                            // Off the block's progression: singles (none of them is entered).
                            for (x, &cap) in rest[..n].iter().enumerate() {
                                let entered = self.singles.insert(cap, v.wrapping_add((x as u64) << bits));
                                debug_assert!(entered.is_ok());
                                self.in_singles.add_if_kept(key);
                            }
                        }
                    }
                }
            }
        }
        if n < run {
            Err(n)
        } else {
            Ok(n)
        }
    }

    /// Whether the singles may hold caps of block `key` (by the filter, made now if there are singles and
    /// it is not kept yet).
    #[inline(always)]
    fn singles_may_hold(&mut self, key: u64) -> bool {
        if self.singles.len() == 0 {
            return false;
        }
        if self.in_singles.0.is_none() {
            self.count_singles();
        }
        self.in_singles.may_hold(key)
    }

    /// Starts keeping the singles' filter: counts the singles entered so far.
    #[cold]
    #[inline(never)]
    fn count_singles(&mut self) {
        let mut counts = Box::new([0; 1 << FILTER_BITS]);
        for (cap, _) in self.singles.iter() {
            counts[Filter::class(split(cap).0)] += 1;
        }
        self.in_singles.0 = Some(counts);
    }

    /// Removes `caps` (each entered, none twice).
    #[inline]
    pub fn remove_run(&mut self, caps: &[CapRef]) {
        if let [cap] = caps {
            // One cap (a single-page unmap): most likely a single.
            self.remove_one(*cap);
        } else if self.blocks.is_empty() {
            self.remove_singles(caps);
        } else {
            self.remove_mixed(caps);
        }
    }

    /// [`Self::remove_run`] when there are no blocks: all singles.
    #[inline(never)]
    fn remove_singles(&mut self, caps: &[CapRef]) {
        for &cap in caps {
            self.remove_single(cap, split(cap).0);
        }
    }

    /// [`Self::remove_run`] when there are blocks.
    #[inline(never)]
    fn remove_mixed(&mut self, caps: &[CapRef]) {
        let mut j = 0;
        while j < caps.len() {
            if Self::alone(caps, j) {
                self.remove_one(caps[j]);
                j += 1;
            } else {
                j += self.remove_block_run(&caps[j..]);
            }
        }
    }

    /// Removes the run of consecutive caps at the start of `rest` (at least two) that stays in the first's
    /// block, and returns how many: from the block, and the others from the singles.
    #[inline(never)]
    fn remove_block_run(&mut self, rest: &[CapRef]) -> usize {
        let (key, lo, n) = block_run(rest);
        let mut held = 0;
        if self.in_blocks.may_hold(key) {
            if let Entry::Occupied(mut e) = self.blocks.entry(key) {
                let b = e.get_mut();
                held = b.mask & bits_of(lo, n);
                b.mask &= !held;
                if b.mask == 0 {
                    e.remove();
                    self.in_blocks.sub(key);
                }
            }
        }
        if held != bits_of(lo, n) {
            for (x, &cap) in rest[..n].iter().enumerate() {
                if held >> (lo as usize + x) & 1 == 0 {
                    self.remove_single(cap, key);
                }
            }
        }
        n
    }

    /// Removes one cap (entered), from the singles or its block. A cap alone in its block in a run was
    /// most likely entered alone too, as a single: the singles are looked at first.
    #[inline(always)]
    fn remove_one(&mut self, cap: CapRef) {
        if self.singles.remove(cap).is_some() {
            self.in_singles.sub(split(cap).0);
        } else {
            self.remove_from_block(cap);
        }
    }

    /// Removes one cap (entered, not a single) from its block.
    #[inline(never)]
    fn remove_from_block(&mut self, cap: CapRef) {
        let (key, i) = split(cap);
        let Entry::Occupied(mut e) = self.blocks.entry(key) else {
            debug_assert!(false, "cap index: removing a cap not entered");
            return;
        };
        let b = e.get_mut();
        debug_assert!(b.mask >> i & 1 != 0, "cap index: removing a cap not entered");
        b.mask &= !(1 << i);
        if b.mask == 0 {
            e.remove();
            self.in_blocks.sub(key);
        }
    }

    /// Removes a single (entered).
    #[inline(always)]
    fn remove_single(&mut self, cap: CapRef, key: u64) {
        let old = self.singles.remove(cap);
        debug_assert!(old.is_some(), "cap index: removing a cap not entered");
        self.in_singles.sub(key);
    }
}

/// The singles: cap -> page start. (A `hashbrown` map: the project's rule is no home-made hash tables; a
/// specialised open-addressing table measured ~10-20 instructions cheaper per scattered cap, not worth the
/// extra code to review.)
#[derive(Clone, Default, PartialEq, Eq)]
struct Singles(HashMap<CapRef, u64>);

impl Singles {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn get(&self, cap: CapRef) -> Option<u64> {
        self.0.get(&cap).copied()
    }

    #[inline(always)]
    fn contains(&self, cap: CapRef) -> bool {
        self.0.contains_key(&cap)
    }

    /// Enters `cap` at `vaddr`; refused (nothing changed) if it is entered already.
    #[inline(always)]
    fn insert(&mut self, cap: CapRef, vaddr: u64) -> Result<(), ()> {
        match self.0.entry(cap) {
            Entry::Occupied(_) => Err(()),
            Entry::Vacant(v) => {
                v.insert(vaddr);
                Ok(())
            }
        }
    }

    /// Removes `cap`, returning its page start if it was entered.
    #[inline(always)]
    fn remove(&mut self, cap: CapRef) -> Option<u64> {
        self.0.remove(&cap)
    }

    fn iter(&self) -> impl Iterator<Item = (CapRef, u64)> + '_ {
        self.0.iter().map(|(&c, &v)| (c, v))
    }
}

impl fmt::Debug for CapMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut all: Vec<(CapRef, u64)> = self.iter().collect();
        all.sort_unstable();
        f.debug_map().entries(all.iter().map(|(c, v)| (c, v))).finish()
    }
}
