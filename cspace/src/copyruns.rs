//! Copy runs (crate-internal): runs of copies booked as one record each
//! instead of one [`CapRecord`](crate::captable::CapRecord) per cap.
//!
//! A run `(src, dest, n)` says: slots `dest .. dest + n` of one level-2
//! CNode hold copies of the caps in the consecutive slots `src .. src + n`
//! of one level-2 CNode, each source an object's original cap, made by
//! [`CSpace::adopt_copies_run`](crate::CSpace::adopt_copies_run) from those
//! originals or from copies of them held by runs (so with
//! the records [`CapTable::insert_copies_run`](crate::captable::CapTable)
//! would write: the copy of source `s` has `s` as parent and original, the
//! source's object, type and badge, is revocable iff an untyped, has no
//! children, and its slot is not a reserved slot).
//!
//! Slots are named by their key in the cap table, `(k << L2) | index` for
//! slot `index` of level-2 CNode `k`, so that a run's slots are consecutive
//! keys. Runs are found by the first key of their destinations, and by
//! (first source key, first destination key) for the questions about a
//! source ("which runs copy this original?").

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::layout::{CNodeRef, Slot, SlotRange};

/// One run: the first source key and the length (the first destination key
/// is the map key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub src: u64,
    pub n: u64,
}

/// The copy runs of a manager.
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(PartialEq, Eq))]
pub(crate) struct CopyRuns {
    /// By first destination key.
    by_dest: BTreeMap<u64, Run>,
    /// (first source key, first destination key) -> length.
    by_src: BTreeMap<(u64, u64), u64>,
    /// The longest run booked since the last time there were none (bounds
    /// the look-ups by source).
    longest: u64,
    /// Copies in runs (the sum of the lengths).
    copies: u64,
    /// Whether new runs are booked (else `adopt_copies_run` books per cap).
    pub enabled: bool,
    /// Radix of the level-2 CNodes.
    l2_bits: u8,
    /// Number of level-2 CNodes the layout can address (`2^L1`).
    max_level2: u64,
}

impl CopyRuns {
    /// No runs, for the layout with level-1 radix `l1_bits` and level-2
    /// radix `l2_bits`; booking enabled.
    pub fn new(l1_bits: u8, l2_bits: u8) -> Self {
        CopyRuns {
            by_dest: BTreeMap::new(),
            by_src: BTreeMap::new(),
            longest: 0,
            copies: 0,
            enabled: true,
            l2_bits,
            max_level2: 1 << l1_bits,
        }
    }

    /// Whether there are no runs.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.by_dest.is_empty()
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.by_dest.len()
    }

    /// Copies in runs.
    pub fn copies(&self) -> u64 {
        self.copies
    }

    /// The key of `slot`, if it is a level-2 slot of the layout.
    #[inline]
    pub fn key(&self, slot: Slot) -> Option<u64> {
        let CNodeRef::Level2(k) = slot.cnode else {
            return None;
        };
        if k as u64 >= self.max_level2 || slot.index >> self.l2_bits != 0 {
            return None;
        }
        Some(((k as u64) << self.l2_bits) | slot.index)
    }

    /// The slot of `key`.
    #[inline]
    pub fn slot(&self, key: u64) -> Slot {
        Slot {
            cnode: CNodeRef::Level2((key >> self.l2_bits) as u32),
            index: key & ((1 << self.l2_bits) - 1),
        }
    }

    /// The slots of the `n` keys from `key` (one CNode).
    #[inline]
    pub fn range(&self, key: u64, n: u64) -> SlotRange {
        let s = self.slot(key);
        SlotRange {
            cnode: s.cnode,
            start: s.index,
            len: n,
        }
    }

    /// Books run `src .. src + n` -> `dest .. dest + n` (keys; `n > 0`, each
    /// range within one CNode, the destinations in no run).
    pub fn insert(&mut self, src: u64, dest: u64, n: u64) {
        debug_assert!(n > 0);
        debug_assert!(self.at_dest(dest).is_none() && self.overlapping(dest, n).next().is_none());
        self.by_dest.insert(dest, Run { src, n });
        self.by_src.insert((src, dest), n);
        self.longest = self.longest.max(n);
        self.copies += n;
    }

    /// Removes the run whose first destination key is `dest`.
    pub fn remove(&mut self, dest: u64) -> Run {
        let r = self.by_dest.remove(&dest).expect("a run");
        self.by_src.remove(&(r.src, dest));
        self.copies -= r.n;
        if self.by_dest.is_empty() {
            self.longest = 0;
        }
        r
    }

    /// The run whose destinations include key `d`: its first destination
    /// key and the run.
    #[inline]
    pub fn at_dest(&self, d: u64) -> Option<(u64, Run)> {
        let (&start, &r) = self.by_dest.range(..=d).next_back()?;
        (d - start < r.n).then_some((start, r))
    }

    /// The source key of the copy in destination key `d`, if a run holds it.
    #[inline]
    pub fn source_of(&self, d: u64) -> Option<u64> {
        self.at_dest(d).map(|(start, r)| r.src + (d - start))
    }

    /// The first destination keys of the runs whose destinations meet keys
    /// `d .. d + n`, in order.
    pub fn overlapping(&self, d: u64, n: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.at_dest(d).map(|(s, _)| s);
        let rest = self.by_dest.range(d..d.saturating_add(n)).map(|(&s, _)| s);
        first.into_iter().chain(rest.filter(move |&s| Some(s) != first))
    }

    /// The first destination keys of the runs with source key `s`.
    pub fn copying(&self, s: u64) -> impl Iterator<Item = u64> + '_ {
        let lo = (s + 1).saturating_sub(self.longest);
        self.by_src
            .range((lo, 0)..=(s, u64::MAX))
            .filter(move |(&(src, _), &n)| s - src < n)
            .map(|(&(_, d), _)| d)
    }

    /// Copies of the cap in source key `s` held in runs.
    #[inline]
    pub fn copies_of(&self, s: u64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        self.copying(s).count() as u64
    }

    /// Whether keys `d .. d + n` (`n > 0`) are exactly the destinations of
    /// runs (whole runs or parts of them).
    pub fn covers(&self, d: u64, n: u64) -> bool {
        let Some((start, r)) = self.at_dest(d) else {
            return false;
        };
        let end = d + n;
        let mut reached = start + r.n;
        if reached >= end {
            return true;
        }
        for (&s, r) in self.by_dest.range(reached..end) {
            if s != reached {
                return false;
            }
            reached = s + r.n;
        }
        reached >= end
    }

    /// Removes the copies in keys `d .. d + n`, which
    /// [`covers`](Self::covers) accepted: whole runs go, the runs cut at
    /// either end keep their other part.
    pub fn remove_covered(&mut self, d: u64, n: u64) {
        let end = d + n;
        let (start, _) = self.at_dest(d).expect("covered");
        let mut at = start;
        while at < end {
            let r = self.remove(at);
            if at < d {
                self.insert(r.src, at, d - at);
            }
            let run_end = at + r.n;
            if run_end > end {
                self.insert(r.src + (end - at), end, run_end - end);
            }
            at = run_end;
        }
    }

    /// Every run: first destination key and run, in destination order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Run)> + '_ {
        self.by_dest.iter().map(|(&d, &r)| (d, r))
    }

    /// The first destination keys of every run.
    pub fn all(&self) -> Vec<u64> {
        self.by_dest.keys().copied().collect()
    }

    /// Checks the two indices against each other (test and debug checker).
    pub fn check(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        let mut prev_end = 0;
        let mut total = 0;
        let cnode = 1u64 << self.l2_bits;
        for (i, (&d, r)) in self.by_dest.iter().enumerate() {
            if r.n == 0 {
                return Err(format!("run at {d}: empty"));
            }
            if i > 0 && d < prev_end {
                return Err(format!("run at {d}: overlaps the one before"));
            }
            if (d & (cnode - 1)) + r.n > cnode || (r.src & (cnode - 1)) + r.n > cnode {
                return Err(format!("run at {d}: crosses a CNode's end"));
            }
            if self.by_src.get(&(r.src, d)) != Some(&r.n) {
                return Err(format!("run at {d}: not indexed by source"));
            }
            if r.n > self.longest {
                return Err(format!("run at {d}: longer than the longest"));
            }
            prev_end = d + r.n;
            total += r.n;
        }
        if self.by_src.len() != self.by_dest.len() {
            return Err(format!(
                "{} runs by source, {} by destination",
                self.by_src.len(),
                self.by_dest.len()
            ));
        }
        if total != self.copies {
            return Err(format!("{} copies in runs, counted {}", total, self.copies));
        }
        if !self.enabled && !self.is_empty() {
            return Err(format!("{} runs while disabled", self.len()));
        }
        Ok(())
    }
}
