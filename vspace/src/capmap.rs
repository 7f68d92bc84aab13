//! The shadow's cap index: frame cap -> page start.
//!
//! The caps of a range are usually consecutive slots mapped at consecutive pages. Such caps are kept by
//! *blocks* of 64 consecutive cap values: a block records which of its caps are mapped as a bitmask and
//! where they are as one arithmetic progression of pages (cap `i` of the block at `base + i * size`), so
//! entering or removing a run of consecutive caps is one hash-map operation and one mask update per block,
//! not per cap. Other caps (alone in their block in a run, or off their block's progression) are kept one
//! by one in a plain map from cap to page (*singles*), at one hash-map operation each, as before.
//!
//! A cap is in at most one of the two. To check that without a second probe per cap, each side keeps a
//! small counting filter of the blocks it has caps in: a run of consecutive caps looks at the singles only
//! if the filter says its block may have some, and a single looks at the blocks only if the filter says
//! its block may be one.

use core::fmt;

use alloc::vec;
use alloc::vec::Vec;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

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
/// for a key's class: nothing of that block; otherwise maybe.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
struct Filter(Vec<u32>);

impl Filter {
    #[inline(always)]
    fn class(key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FILTER_BITS)) as usize
    }

    #[inline(always)]
    fn may_hold(&self, key: u64) -> bool {
        self.0.get(Self::class(key)).is_some_and(|&c| c != 0)
    }

    #[inline(always)]
    fn add(&mut self, key: u64) {
        if self.0.is_empty() {
            self.0 = vec![0; 1 << FILTER_BITS];
        }
        let class = Self::class(key);
        self.0[class] += 1;
    }

    #[inline(always)]
    fn sub(&mut self, key: u64) {
        self.0[Self::class(key)] -= 1;
    }
}

/// The length of the run of consecutive cap values at the start of `caps` (not empty) that stays in the
/// block of the first, and that block's key and the first cap's index in it.
#[inline(always)]
fn block_run(caps: &[CapRef]) -> (u64, u32, usize) {
    let c = caps[0].0;
    let lo = (c & (BLOCK - 1)) as u32;
    if caps.get(1).is_none_or(|d| d.0 != c.wrapping_add(1)) {
        return (c >> BLOCK_BITS, lo, 1);
    }
    let max = ((BLOCK as u32 - lo) as usize).min(caps.len());
    let mut n = 1;
    while n < max && caps[n].0 == c.wrapping_add(n as u64) {
        n += 1;
    }
    (c >> BLOCK_BITS, lo, n)
}

/// Frame cap -> page start (see the module documentation).
#[derive(Clone, Default)]
pub(crate) struct CapMap {
    blocks: HashMap<u64, Block>,
    singles: HashMap<CapRef, u64>,
    /// Counts the blocks, by key.
    in_blocks: Filter,
    /// Counts the singles, by block key.
    in_singles: Filter,
}

/// A cap's block key and index in the block.
#[inline(always)]
fn split(cap: CapRef) -> (u64, u64) {
    (cap.0 >> BLOCK_BITS, cap.0 & (BLOCK - 1))
}

impl CapMap {
    /// The block holding `cap` at its progression.
    fn block_of(&self, cap: CapRef) -> Option<&Block> {
        let (key, i) = split(cap);
        if !self.in_blocks.may_hold(key) {
            return None;
        }
        self.blocks.get(&key).filter(|b| b.mask >> i & 1 != 0)
    }

    /// The page start of `cap`, if it is entered.
    pub fn get(&self, cap: CapRef) -> Option<u64> {
        match self.block_of(cap) {
            Some(b) => Some(b.get(split(cap).1)),
            None => self.singles.get(&cap).copied(),
        }
    }

    /// Whether `cap` is entered.
    pub fn contains(&self, cap: CapRef) -> bool {
        self.block_of(cap).is_some() || self.singles.contains_key(&cap)
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
        blocks.chain(self.singles.iter().map(|(&c, &v)| (c, v)))
    }

    /// Enters one cap as a single. Refused if it is entered already.
    fn insert_single(&mut self, cap: CapRef, vaddr: u64) -> Result<(), ()> {
        if self.block_of(cap).is_some() {
            return Err(());
        }
        // One probe when it is new; put back if it was there.
        if let Some(old) = self.singles.insert(cap, vaddr) {
            self.singles.insert(cap, old);
            return Err(());
        }
        self.in_singles.add(split(cap).0);
        Ok(())
    }

    /// Enters `caps[j]` at `start + (j << bits)`, in order. At the first cap entered already (before, or
    /// earlier in `caps`), stops and returns its index: exactly the caps before it are entered then.
    pub fn insert_run(&mut self, caps: &[CapRef], start: u64, bits: u32) -> Result<(), usize> {
        let mut rest = caps;
        while let [first, ..] = *rest {
            let j = caps.len() - rest.len();
            let (key, lo, run) = block_run(rest);
            let v = start.wrapping_add((j as u64) << bits);
            if run == 1 {
                self.insert_single(first, v).map_err(|()| j)?;
                rest = &rest[1..];
                continue;
            }
            // How many caps of the run go in before the first entered already: as singles...
            let mut n = run;
            if self.in_singles.may_hold(key) {
                if let Some(k) = rest[..n].iter().position(|c| self.singles.contains_key(c)) {
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
                                    self.singles.insert(cap, v.wrapping_add((x as u64) << bits));
                                    self.in_singles.add(key);
                                }
                            }
                        }
                    }
                }
            }
            if n < run {
                return Err(j + n);
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Removes `caps` (each entered, none twice).
    pub fn remove_run(&mut self, caps: &[CapRef]) {
        let mut rest = caps;
        while let [first, ..] = *rest {
            let (key, lo, n) = block_run(rest);
            // The caps of the run in the block; the others are singles.
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
            if n == 1 {
                if held == 0 {
                    self.remove_single(first, key);
                }
            } else if held != bits_of(lo, n) {
                for (x, &cap) in rest[..n].iter().enumerate() {
                    if held >> (lo as usize + x) & 1 == 0 {
                        self.remove_single(cap, key);
                    }
                }
            }
            rest = &rest[n..];
        }
    }

    /// Removes a single (entered).
    #[inline(always)]
    fn remove_single(&mut self, cap: CapRef, key: u64) {
        let old = self.singles.remove(&cap);
        debug_assert!(old.is_some(), "cap index: removing a cap not entered");
        self.in_singles.sub(key);
    }
}

impl fmt::Debug for CapMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut all: Vec<(CapRef, u64)> = self.iter().collect();
        all.sort_unstable();
        f.debug_map().entries(all.iter().map(|(c, v)| (c, v))).finish()
    }
}
