//! Adoption: booking what a kernel extension did a run at a time (copies made, copies deleted with
//! their unmap), as the loops of the single operations would have booked it, per cap or as copy runs
//! (see *Copy runs* in [`CSpace`]).

use crate::captable::{Idx, NIL};
use crate::kernel::KernelOps;
use crate::layout::{Slot, SlotRange};
use crate::types::pow2;

use super::error::CapError;
use super::growth::one;
use super::CSpace;

impl<K: KernelOps> CSpace<K> {
    /// Records copies the kernel already made outside [`KernelOps`] (a
    /// kernel extension that copies a run of caps in one invocation, such as
    /// `X86PageTable_CopyMapRun`): `srcs[i]` was copied into `dests.slot(i)`.
    /// Every destination must be a reserved slot (from
    /// [`alloc_slots`](Self::alloc_slots)); afterwards it holds a managed
    /// copy, and deleting it frees the slot (it is no longer reserved).
    ///
    /// Refused, with nothing recorded, if a source is not managed, a
    /// destination is not reserved, or the lengths differ. The books then
    /// match a loop of [`copy_to`](Self::copy_to) made with the same rights.
    pub fn adopt_copies(&mut self, srcs: &[Slot], dests: SlotRange) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        if srcs.len() as u64 != dests.len {
            return Err(CapError::OutOfSlots {
                needed: srcs.len() as u64,
            });
        }
        self.materialise_missing(srcs);
        if let Some(&s) = srcs.iter().find(|&&s| self.caps.find(s).is_none()) {
            return Err(CapError::NotManaged(s));
        }
        if let Some(d) = self.reserved.first_missing(dests) {
            return Err(CapError::NotReserved(d));
        }
        self.reserved.remove_run(dests);
        // As `record_copy(source, dest, source's badge, false)` of each.
        self.caps.insert_copies(srcs.iter().copied(), dests);
        self.copies += dests.len;
        Ok(())
    }

    /// [`adopt_copies`](Self::adopt_copies) with the `n` consecutive slots
    /// from `srcs_first` as the sources: `srcs_first.index + i` was copied
    /// into `dests.slot(i)`. Same outcome, refusals and books as
    /// `adopt_copies` of those slots.
    ///
    /// Cost: when every source is an original (a region's frame caps) the
    /// copies are booked as one copy run (see *Copy runs* in [`CSpace`]):
    /// the sources and destinations are checked a word (64 slots) at a
    /// time and the run is booked in `O(log runs)`, with nothing per copy.
    /// When every source is a copy held by copy runs whose originals are
    /// consecutive, none an untyped's (a clone of a clone), the copies are
    /// the originals' children as much as copies of the originals would be
    /// (a frame cap's copy is not revocable): one copy run of the
    /// originals, `O(log runs)` per run met (the originals' types checked
    /// a word of slots at a time). Otherwise a record per copy, as with copy runs turned off.
    pub fn adopt_copies_run(&mut self, srcs_first: Slot, n: u64, dests: SlotRange) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        if n != dests.len {
            return Err(CapError::OutOfSlots { needed: n });
        }
        if n == 0 {
            // Nothing to check or book but the destinations' validity.
            return match self.reserved.first_missing(dests) {
                Some(d) => Err(CapError::NotReserved(d)),
                None => Ok(()),
            };
        }
        // A run of originals (the usual case: frames' caps) can be booked
        // as a copy run.
        let originals = match self.caps.find_originals_run(srcs_first, n) {
            Ok(originals) => originals,
            // Copies in runs whose originals are consecutive (a clone of a
            // clone): a copy of a copy is the original's child as much as a
            // copy of the original is, so it is the same run of copies of
            // the originals.
            Err(_) if let Some(orig) = self.originals_behind_runs(srcs_first, n) => {
                if let Some(d) = self.reserved.first_missing(dests) {
                    return Err(CapError::NotReserved(d));
                }
                self.reserved.remove_run(dests);
                let d = self.runs.key(dests.slot(0)).expect("reserved slots are level-2 slots");
                self.runs.insert(orig, d, n);
                self.copies += n;
                return Ok(());
            }
            Err(s) => {
                // Copies in runs are sources too (then booked per cap).
                if !self.materialise_dests(srcs_first, n) {
                    return Err(CapError::NotManaged(s));
                }
                self.caps.find_run(srcs_first, n).map_err(CapError::NotManaged)?;
                false
            }
        };
        if let Some(d) = self.reserved.first_missing(dests) {
            return Err(CapError::NotReserved(d));
        }
        self.reserved.remove_run(dests);
        match (
            originals && self.runs.enabled,
            self.runs.key(srcs_first),
            self.runs.key(dests.slot(0)),
        ) {
            (true, Some(s), Some(d)) => self.runs.insert(s, d, n),
            _ => self.caps.insert_copies_run(srcs_first, dests),
        }
        self.copies += n;
        Ok(())
    }

    /// If the `n > 0` slots from `first` are all copies held by copy runs
    /// (whole runs or parts of adjacent ones) whose sources are `n`
    /// consecutive originals in one CNode, none an untyped's (an untyped's
    /// copy is revocable, so a copy of it would be its child): the first
    /// original's key. O(1) per run met.
    fn originals_behind_runs(&self, first: Slot, n: u64) -> Option<u64> {
        if !self.runs.enabled || self.runs.is_empty() {
            return None;
        }
        let d0 = self.runs.key(first)?;
        // The first original, then each run met continuing it.
        let mut orig = None;
        let mut done = 0;
        while done < n {
            let (start, r) = self.runs.at_dest(d0 + done)?;
            let off = d0 + done - start;
            let first_orig = *orig.get_or_insert(r.src + off);
            if r.src + off != first_orig + done {
                return None;
            }
            done += (r.n - off).min(n - done);
        }
        let orig = orig?;
        // The originals stay in one CNode (runs never cross one).
        if (orig & (pow2(self.layout.l2_bits) - 1)) + n > pow2(self.layout.l2_bits) {
            return None;
        }
        // No untyped original: its copies would be revocable (checked a
        // word of slots at a time).
        (!self.caps.any_untyped_original(orig, n)).then_some(orig)
    }

    /// Records deletions the kernel already made outside [`KernelOps`] (a
    /// kernel extension that unmaps a run and deletes the caps that held it,
    /// such as `X86PageTable_UnmapRun` with its delete flag): every slot held
    /// a managed copy (not an original), and each is now free.
    ///
    /// Refused, with nothing recorded, if a slot holds no managed copy or
    /// holds an original. The books then match a loop of
    /// [`delete`](Self::delete).
    pub fn adopt_deletes(&mut self, slots: &[Slot]) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        // Marks each record seen; a slot named twice is refused after every
        // other check, naming the slot of the lowest-numbered record named
        // twice (records are renumbered only by adding and removing, and by
        // the materialising of copy runs: which of several slots named twice
        // is named is not specified).
        let mut bad = None;
        let mut dup: Option<(Idx, Slot)> = None;
        let mut seen = 0;
        self.materialise_missing(slots);
        for &s in slots {
            let Some(i) = self.caps.find(s) else {
                bad = Some(CapError::NotManaged(s));
                break;
            };
            let r = self.caps.get_mut(i);
            if r.parent == NIL {
                bad = Some(CapError::IsOriginal(s));
                break;
            }
            if r.mark {
                if dup.is_none_or(|(j, _)| i < j) {
                    dup = Some((i, s));
                }
            } else {
                r.mark = true;
            }
            seen += 1;
        }
        // Removing a record below clears its mark.
        if bad.is_some() || dup.is_some() {
            for &s in &slots[..seen] {
                let i = self.caps.find_known(s);
                self.caps.get_mut(i).mark = false;
            }
            return Err(bad.or(dup.map(|(_, s)| CapError::NotManaged(s))).expect("refused"));
        }
        self.forget_copies(slots);
        Ok(())
    }

    /// Books the deletion of the copies in `slots` (each named once, all
    /// checked since the table last changed), as `forget_copy` of each in
    /// turn would.
    fn forget_copies(&mut self, slots: &[Slot]) {
        // As `forget_copy` of each; consecutive slots of the manager's own
        // go back a run at a time.
        let mut run: Option<SlotRange> = None;
        let (slot_books, reserved) = (&mut self.slots, &mut self.reserved);
        self.caps.remove_copies(slots, |g| {
            if g.user_slot {
                reserved.insert(g.slot);
                return;
            }
            match &mut run {
                Some(r) if r.cnode == g.slot.cnode && r.start + r.len == g.slot.index => r.len += 1,
                _ => {
                    if let Some(r) = run.replace(one(g.slot)) {
                        slot_books.free_run(r).expect("slots were allocated");
                    }
                }
            }
        });
        if let Some(r) = run {
            self.slots.free_run(r).expect("slots were allocated");
        }
        self.copies -= slots.len() as u64;
    }

    /// [`adopt_deletes`](Self::adopt_deletes) of the `n` consecutive slots
    /// from `first` (`first.index + i` for `i < n`): the kernel deleted the
    /// managed copies in them (a kernel extension that unmaps a run and
    /// deletes the caps that held it, their slots a run such as
    /// [`adopt_copies_run`](Self::adopt_copies_run) filled). Same outcome,
    /// refusals and books as `adopt_deletes` of those slots, in that order:
    ///
    /// - refused, with nothing recorded, naming the first slot of the run
    ///   that holds no managed cap ([`CapError::NotManaged`]; slots past the
    ///   CNode's end hold none) or holds an original
    ///   ([`CapError::IsOriginal`]); [`CapError::Poisoned`] first;
    /// - the run names each slot once, so it has no duplicates to refuse;
    /// - `n == 0` does nothing.
    ///
    /// Each slot is then free again (the caller's again if it was reserved),
    /// so the next [`alloc_slots`](Self::alloc_slots) of the same length can
    /// take the run back.
    ///
    /// Cost: slots that copy runs hold exactly (whole runs or parts of
    /// adjacent runs, such as what
    /// [`adopt_copies_run`](Self::adopt_copies_run) booked for a region) are booked a run at a
    /// time (`O(log runs)` each, the runs cut at either end keeping their
    /// other parts) and freed a word at a time; otherwise the runs they
    /// meet are materialised and the slots are booked per cap.
    pub fn adopt_deletes_run(&mut self, first: Slot, n: u64) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        // Copies that runs hold exactly: dropped a run at a time.
        if !self.runs.is_empty() && self.forget_run_copies(first, n) {
            return Ok(());
        }
        if let Err((s, original)) = self.check_copies_run_rec(first, n) {
            return Err(if original {
                CapError::IsOriginal(s)
            } else {
                CapError::NotManaged(s)
            });
        }
        self.forget_copies_run(first, n);
        Ok(())
    }

    /// If the `n > 0` slots from `first` are exactly slots that copy runs
    /// hold (whole runs or parts of them), books their deletion, as
    /// [`forget_copies_run`](Self::forget_copies_run) of their records
    /// would: the runs go (cut runs keep their other parts), the slots are
    /// free again (no copy in a run is in a reserved slot). Whether it did.
    #[inline(never)]
    fn forget_run_copies(&mut self, first: Slot, n: u64) -> bool {
        let Some(d) = self.runs.key(first) else {
            return false;
        };
        if n == 0 || n > pow2(self.layout.l2_bits) - first.index || !self.runs.covers(d, n) {
            return false;
        }
        self.runs.remove_covered(d, n);
        let r = SlotRange {
            cnode: first.cnode,
            start: first.index,
            len: n,
        };
        self.slots.free_run(r).expect("slots were allocated");
        self.copies -= n;
        true
    }
}
