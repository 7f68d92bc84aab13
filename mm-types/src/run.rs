//! Runs of pages: what one is, and when one is worth it. Every crate of the manager takes both from here.
//!
//! Every page has its own capability and its own mapping (the kernel's model), but the kernel (with the
//! run invocations of patch 0005) and the books (cspace, the mapping database) can handle consecutive
//! pages whose capabilities sit in consecutive slots at once, for a fixed cost per run and a little per
//! page. Three notions, each built on the one before:
//!
//! - **Consecutive slots**: capabilities in slots `c, c + 1, c + 2, ...` ([`consecutive_prefix`] finds how
//!   many values at the start of a list are). A run invocation takes its capabilities from consecutive
//!   slots of *one* CNode (consecutive cptrs stay in one CNode up to its last slot); cspace's batches look
//!   for stretches of consecutive slots of one CNode (its `Slot`s: same CNode, consecutive index).
//! - **A leaf run** ([`LeafRun`]): consecutive entries of one leaf table that one operation changes, page
//!   `i` at entry `first_index + i`. It is the unit of batching: vspace hands maps, remaps and unmaps to
//!   its kernel a leaf run at a time, and the manager turns a leaf run's pieces of consecutive slots of one
//!   CNode into run invocations (pieces of at least [`MIN_RUN`] pages).
//! - **Stretches of consecutive originals**: frames allocated in a row get consecutive original slots,
//!   except where the allocation crossed a CNode or an untyped split took slots between them; a region of
//!   such frames (or a clone of one) falls into a few *stretches*, in page order, within each of which page
//!   `i`'s frame's original is the stretch's first original plus `i` (without wrapping). [`Stretches`]
//!   finds where they start; the books keep a region as runs (one per page table and stretch) only when
//!   the stretches are long enough on average ([`few_stretches`]).
//!
//! # Thresholds, and what each trades off
//!
//! - [`MIN_RUN`] (2): fewest pages handled as a run, by the kernel (a run invocation) and by the books (a
//!   run record). A run pays a fixed cost (the invocation's checks; the run's index entries and its
//!   later materialisation) that one page does not repay: a single page takes the per-page path (the
//!   stock invocation, cheaper for one page; the books' one-page fast path, a page fault's).
//! - [`MAX_SLOT_RUN`] (4096): the largest region a clone copies into one slot run (on either kernel). Its
//!   copies go into one run of consecutive slots, which must lie in one level-2 CNode; a larger region
//!   would need a slot run spanning CNodes, and goes per cap.
//! - [`MIN_STRETCH_AVERAGE`] (8): fewest pages per stretch, on average, for a batch of pages in several
//!   stretches to be handled as runs (by cspace's batched copies and deletes, and by the mapping database's
//!   clones and maps of fresh frames). A run per stretch costs a record and its index entries; a batch in
//!   many short stretches (a shuffle of slots) is cheaper per page, and no longer to check, as single
//!   pages. 8 keeps the usual cases (one stretch, or allocations broken by a CNode or an untyped split
//!   every few hundred pages) as runs and gives up on slots in no order.

use crate::cptr::CPtr;
use crate::paging::{FrameSize, TableLevel, VirtAddr};

/// Fewest pages handled as a run: by the kernel (a run invocation) and by the books (a run record). One
/// page takes the per-page path (see the [module](self) documentation).
pub const MIN_RUN: usize = 2;

/// The largest region a clone copies into one slot run (a larger one goes per cap: its slot run would
/// span CNodes).
pub const MAX_SLOT_RUN: u64 = 4096;

/// Fewest pages per stretch of consecutive originals, on average, worth handling as runs (see
/// [`few_stretches`]).
pub const MIN_STRETCH_AVERAGE: usize = 8;

/// Whether `pages` pages in `stretches` stretches of consecutive slots are worth handling as runs: one
/// stretch (or none), or at least [`MIN_STRETCH_AVERAGE`] pages per stretch on average (frames from a few
/// slot runs, such as allocations that crossed a CNode or an untyped split; not a shuffle of slots, which
/// is cheaper per page).
#[inline]
pub const fn few_stretches(stretches: usize, pages: usize) -> bool {
    stretches <= 1 || stretches * MIN_STRETCH_AVERAGE <= pages
}

/// How many values `v(x)` at the start of `xs` are consecutive (`v(xs[0])`, `v(xs[0]) + 1`, ...,
/// wrapping at `u64::MAX`). The usual case, all of them, is one pass with no branch per value (a few
/// instructions per cap under `-icount`); otherwise a second pass finds the first that is not.
#[inline]
pub fn consecutive_prefix<T>(xs: &[T], v: impl Fn(&T) -> u64) -> usize {
    let Some(first) = xs.first().map(&v) else { return 0 };
    let diff = xs
        .iter()
        .zip(0u64..)
        .fold(0, |d, (x, k)| d | (v(x) ^ first.wrapping_add(k)));
    if diff == 0 {
        return xs.len();
    }
    xs.iter()
        .zip(0u64..)
        .take_while(|(x, k)| v(x) == first.wrapping_add(*k))
        .count()
}

/// Finds where the stretches of consecutive originals of a region start, fed the pages' originals in page
/// order (a page at a time, or a known stretch of pages at once).
///
/// A new stretch starts at a page whose original is not the one after the previous page's. A stretch may
/// not pass the end of the slot space: [`Stretches::see`] refuses one that would.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stretches {
    /// The original the next page has if it continues the current stretch (`u64::MAX` before the first).
    next: u64,
}

impl Default for Stretches {
    fn default() -> Self {
        Self::new()
    }
}

impl Stretches {
    /// Before the first page.
    #[inline(always)]
    pub const fn new() -> Self {
        Stretches { next: u64::MAX }
    }

    /// The original the next page has if it continues the current stretch.
    #[inline(always)]
    pub const fn next(&self) -> u64 {
        self.next
    }

    /// The next `len` pages (at least one) have the originals `orig..orig + len`, and `left` pages remain
    /// from the first of them on: whether they start a new stretch (then at the first of them), or `None`
    /// if a new stretch from `orig` could not hold the `left` pages without passing the end of the slot
    /// space.
    #[inline(always)]
    pub fn see(&mut self, orig: u64, len: u64, left: u64) -> Option<bool> {
        let new = orig != self.next;
        if new {
            orig.checked_add(left)?;
        }
        self.next = orig + len;
        Some(new)
    }
}

/// Consecutive entries of one leaf table that one operation changes: the unit of batching.
///
/// Entry `first_index + i` maps the page at `vaddr + i * size`; the frames of a run are given alongside.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeafRun {
    /// The level of the table holding the entries (`size.level()`).
    pub level: TableLevel,
    /// The cap of that table.
    pub table: CPtr,
    /// Index of the first entry in the table.
    pub first_index: u16,
    /// Address of the first page.
    pub vaddr: VirtAddr,
    /// Size of every page of the run.
    pub size: FrameSize,
}

impl LeafRun {
    /// The address of the run's `i`-th page.
    #[inline]
    pub const fn vaddr_of(&self, i: usize) -> VirtAddr {
        VirtAddr::new_unchecked(self.vaddr.as_u64() + ((i as u64) << self.size.bits()))
    }

    /// The part of the run from its `from`-th entry.
    #[inline]
    pub const fn tail(&self, from: usize) -> LeafRun {
        LeafRun {
            first_index: self.first_index + from as u16,
            vaddr: self.vaddr_of(from),
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::vec::Vec;

    /// `consecutive_prefix` equals a one-at-a-time scan, on slices that are runs broken at any place (or
    /// not at all), from start values that wrap at `u64::MAX` or not.
    #[test]
    fn consecutive_prefix_is_the_plain_scan() {
        for first in [0, 5, 1 << 40, u64::MAX - 5, u64::MAX] {
            for len in 0usize..70 {
                for brk in core::iter::once(None).chain((0..len).flat_map(|at| [Some((at, 1)), Some((at, 2))])) {
                    let mut xs: Vec<u64> = (0..len as u64).map(|k| first.wrapping_add(k)).collect();
                    if let Some((at, by)) = brk {
                        xs[at] = xs[at].wrapping_add(by);
                    }
                    let f0 = xs.first().copied().unwrap_or(0);
                    let plain = xs
                        .iter()
                        .zip(0u64..)
                        .take_while(|(x, k)| **x == f0.wrapping_add(*k))
                        .count();
                    assert_eq!(consecutive_prefix(&xs, |x| *x), plain, "{first} {len} {brk:?}");
                }
            }
        }
    }

    #[test]
    fn few_stretches_is_eight_pages_each_on_average() {
        assert!(few_stretches(0, 0) && few_stretches(1, 1) && few_stretches(1, 1000));
        assert!(!few_stretches(2, 2) && !few_stretches(2, 15) && few_stretches(2, 16));
        assert!(!few_stretches(8, 63) && few_stretches(8, 64));
    }

    #[test]
    fn stretches_start_where_the_originals_break() {
        let origs = [10u64, 11, 12, 40, 41, 7, 8, 9, 10];
        let mut s = Stretches::new();
        let starts: Vec<usize> = (0..origs.len())
            .filter(|&i| s.see(origs[i], 1, (origs.len() - i) as u64).unwrap())
            .collect();
        assert_eq!(starts, [0, 3, 5]);
        // A known stretch at once: the same answer.
        let mut s = Stretches::new();
        assert_eq!(s.see(10, 3, 9), Some(true));
        assert_eq!(s.see(13, 2, 6), Some(false));
        assert_eq!(s.next(), 15);
        // A stretch that would wrap the slot space is refused.
        assert_eq!(Stretches::new().see(u64::MAX - 1, 1, 2), None);
        assert_eq!(Stretches::new().see(u64::MAX - 1, 1, 1), Some(true));
    }

    #[test]
    fn a_leaf_runs_tail() {
        let r = LeafRun {
            level: TableLevel::Pt,
            table: CPtr(7),
            first_index: 10,
            vaddr: VirtAddr::new(0x40_a000),
            size: FrameSize::Small,
        };
        assert_eq!(r.vaddr_of(3), VirtAddr::new(0x40_d000));
        let t = r.tail(3);
        assert_eq!(
            (t.first_index, t.vaddr, t.table),
            (13, VirtAddr::new(0x40_d000), CPtr(7))
        );
    }
}
