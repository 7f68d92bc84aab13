//! Capability operations: copy (one, or a batch checked and booked a stretch at a time), mint, move,
//! delete (one, or a batch), revoke, and the bookkeeping of a copy made or deleted; for the tests, the
//! per-cap references of the batched paths.

use alloc::vec;
use alloc::vec::Vec;

use crate::captable::{Gone, Idx, NIL};
use crate::kernel::{KernelOp, KernelOps};
use crate::layout::{CapPath, Slot, SlotRange};
use crate::slots::SlotAllocator;
use crate::types::{CapData, KernelError, Rights};

use super::error::{CapError, DeleteManyError};
use super::growth::one;
use super::runs::{increasing, stretches};
use super::{CSpace, Fail, Tx, Undo};

impl<K: KernelOps> CSpace<K> {
    /// Copies the managed cap in `src` (with `rights` masked in) into a new
    /// slot.
    pub fn copy(&mut self, src: Slot, rights: Rights) -> Result<Slot, CapError> {
        self.derive(src, None, rights, None)
    }

    /// Copies the managed caps in `srcs` (with `rights` masked in), in order,
    /// into new slots: all of them or none. Returns the new slots, in the
    /// order of `srcs`.
    ///
    /// The outcome is that of [`copy`](Self::copy) of each source in turn,
    /// with these differences:
    /// - every source is checked first, so a refused source
    ///   ([`CapError::NotManaged`], the first one named) refuses the batch
    ///   before anything is done;
    /// - the slots are all taken before the first copy: consecutive slots of
    ///   one CNode when a CNode has such a run free (without growing the
    ///   CSpace or using its growth reserve), otherwise one at a time, as
    ///   that loop would take them (growing the CSpace when needed). When no
    ///   slot can be found for some of them the batch is refused with
    ///   [`CapError::OutOfSlots`] (`needed`: the batch's length);
    /// - *Rollback*: if the kernel refuses a copy, the copies made before it
    ///   are deleted (`CNode_Delete`, last first), then the slots are given
    ///   back and any growth undone, so that every figure is as it was; the
    ///   kernel's error is returned. If such a delete keeps failing, the
    ///   manager is poisoned ([`CapError::Poisoned`]).
    ///
    /// Cost: stretches of consecutive sources in one CNode (a region's frame
    /// caps) copied into a run are checked and booked a run at a time, with
    /// no look-up or allocation per cap besides the returned vector. A batch
    /// of one is done as [`copy`](Self::copy) (same outcome, without the
    /// batch's fixed cost). [`copy_many_into`](Self::copy_many_into) saves
    /// the returned vector's allocation.
    pub fn copy_many(&mut self, srcs: &[Slot], rights: Rights) -> Result<Vec<Slot>, CapError> {
        if let [src] = *srcs {
            // As `copy_many_into` does it, without its vector handling.
            return self.copy(src, rights).map(|d| vec![d]);
        }
        let mut out = Vec::with_capacity(srcs.len());
        self.copy_many_into(srcs, rights, &mut out)?;
        Ok(out)
    }

    /// [`copy_many`](Self::copy_many), appending the new slots to `out`
    /// (left as it was on failure) instead of returning a new vector: with
    /// a vector kept for the purpose, a batch allocates nothing.
    pub fn copy_many_into(&mut self, srcs: &[Slot], rights: Rights, out: &mut Vec<Slot>) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        // One cap (a page fault's): exactly `copy` (the same check, slot,
        // kernel call, books and rollback), without the batch machinery.
        if let [src] = *srcs {
            return self.copy(src, rights).map(|d| out.push(d));
        }
        // Stretches of consecutive sources (the usual case: a region's frame
        // caps) are checked as runs of the table, without a look-up each.
        let parts = stretches(srcs);
        match &parts {
            Some(parts) => {
                for &(o, len) in parts.iter() {
                    self.find_run_rec(srcs[o], len as u64).map_err(CapError::NotManaged)?;
                }
            }
            None => {
                self.materialise_missing(srcs);
                if let Some(&s) = srcs.iter().find(|&&s| self.caps.find(s).is_none()) {
                    return Err(CapError::NotManaged(s));
                }
            }
        }
        if srcs.is_empty() {
            return Ok(());
        }
        match self.take_run(srcs.len() as u64) {
            Some(run) => self.copy_into_run(srcs, parts.as_deref(), run, rights, out),
            None => {
                let dests = self.copy_one_by_one(srcs, rights)?;
                out.extend_from_slice(&dests);
                Ok(())
            }
        }
    }

    /// [`copy_many`](Self::copy_many) of the checked, non-empty `srcs` (in
    /// the stretches `parts` of consecutive slots, if given) into the run
    /// `dests` just taken for them: the kernel calls, then the books in bulk
    /// (as `record_copy` of each in turn would write them), or the rollback.
    fn copy_into_run(
        &mut self,
        srcs: &[Slot],
        parts: Option<&[(usize, usize)]>,
        dests: SlotRange,
        rights: Rights,
        out: &mut Vec<Slot>,
    ) -> Result<(), CapError> {
        // Within one CNode the paths of consecutive slots differ only by
        // their index (see `Layout::known_path`).
        let d0 = self.layout.known_path(dests.slot(0));
        let at = |p: CapPath, j: usize| CapPath {
            index: p.index + j as u64,
            ..p
        };
        let mut refused = None;
        if let Some(parts) = parts {
            'parts: for &(o, len) in parts {
                let s0 = self.layout.known_path(srcs[o]);
                for j in 0..len {
                    if let Err(e) = self.kernel.cnode_copy(at(d0, o + j), at(s0, j), rights) {
                        refused = Some((o + j, e));
                        break 'parts;
                    }
                }
            }
        } else {
            for (j, &s) in srcs.iter().enumerate() {
                let sp = self.layout.known_path(s);
                if let Err(e) = self.kernel.cnode_copy(at(d0, j), sp, rights) {
                    refused = Some((j, e));
                    break;
                }
            }
        }
        if let Some((k, e)) = refused {
            return Err(self.undo_copies(dests, k as u64, e));
        }
        // As `record_copy(source, dest, source's badge, false)` of each.
        match parts {
            Some(parts) => {
                for &(o, len) in parts {
                    let d = SlotRange {
                        cnode: dests.cnode,
                        start: dests.start + o as u64,
                        len: len as u64,
                    };
                    self.caps.insert_copies_run(srcs[o], d);
                }
            }
            None => self.caps.insert_copies(srcs.iter().copied(), dests),
        }
        self.copies += dests.len;
        out.extend(dests.iter());
        Ok(())
    }

    /// The rollback of [`copy_into_run`](Self::copy_into_run) after the
    /// kernel refused copy `k`: the first `k` copies deleted (last first),
    /// then the run given back.
    #[cold]
    #[inline(never)]
    fn undo_copies(&mut self, dests: SlotRange, k: u64, e: KernelError) -> CapError {
        let made = (0..k).map(|j| self.path(dests.slot(j))).collect();
        let tx = Tx {
            log: vec![Undo::FreeRun(dests), Undo::DeleteCaps(made)],
        };
        self.fail_cap(tx, Fail::Kernel(KernelOp::Copy, e))
    }

    /// [`copy_many`](Self::copy_many) of the checked, non-empty `srcs` when
    /// no CNode has a run free for them: one slot at a time, growing the
    /// CSpace when needed.
    #[cold]
    #[inline(never)]
    fn copy_one_by_one(&mut self, srcs: &[Slot], rights: Rights) -> Result<Vec<Slot>, CapError> {
        let recs: Vec<Idx> = srcs.iter().map(|&s| self.caps.find_known(s)).collect();
        let n = srcs.len() as u64;
        let mut tx = Tx::default();
        let mut dests = Vec::with_capacity(srcs.len());
        for _ in 0..n {
            let mut grown = None;
            let r = self.take_slot(&mut grown);
            if let Some(g) = grown {
                tx.log.extend(g.log);
            }
            match r {
                Ok(d) => {
                    tx.log.push(Undo::FreeRun(one(d)));
                    dests.push(d);
                }
                Err(f) => {
                    return Err(match self.fail_cap(tx, f) {
                        CapError::OutOfSlots { .. } => CapError::OutOfSlots { needed: n },
                        e => e,
                    })
                }
            }
        }
        for (k, (&s, &d)) in srcs.iter().zip(&dests).enumerate() {
            let (dp, sp) = (self.layout.known_path(d), self.layout.known_path(s));
            if let Err(e) = self.kernel.cnode_copy(dp, sp, rights) {
                let made = dests[..k].iter().map(|&d| self.path(d)).collect();
                tx.log.push(Undo::DeleteCaps(made));
                return Err(self.fail_cap(tx, Fail::Kernel(KernelOp::Copy, e)));
            }
        }
        for (&si, &d) in recs.iter().zip(&dests) {
            let badge = self.caps.get(si).badge;
            self.record_copy(si, d, badge, false);
        }
        Ok(dests)
    }

    /// Books the deletion of the `n` copies in the consecutive slots from
    /// `first`, which [`CapTable::check_copies_run`](crate::captable::CapTable::check_copies_run) has accepted since the
    /// table last changed, as `forget_copy` of each in turn would (`n == 0`:
    /// nothing).
    pub(super) fn forget_copies_run(&mut self, first: Slot, n: u64) {
        if n == 0 {
            return;
        }
        // As `forget_copy` of each; the manager's own slots go back a run at
        // a time (the stretches between reserved slots).
        let (slot_books, reserved) = (&mut self.slots, &mut self.reserved);
        let free = |slot_books: &mut SlotAllocator, from: u64, to: u64| {
            if to > from {
                let r = SlotRange {
                    cnode: first.cnode,
                    start: first.index + from,
                    len: to - from,
                };
                slot_books.free_run(r).expect("slots were allocated");
            }
        };
        let mut from = 0;
        self.caps.remove_copies_run(first, n, |j| {
            reserved.insert(Slot {
                cnode: first.cnode,
                index: first.index + j,
            });
            free(slot_books, from, j);
            from = j + 1;
        });
        free(&mut self.slots, from, n);
        self.copies -= n;
    }

    /// Copies the managed cap in `src` into the reserved slot `dest`.
    pub fn copy_to(&mut self, src: Slot, dest: Slot, rights: Rights) -> Result<(), CapError> {
        self.derive(src, Some(dest), rights, None).map(|_| ())
    }

    /// Mints a copy with `badge` (endpoints and notifications; for other
    /// caps only badge 0 is accepted) into a new slot.
    pub fn mint(&mut self, src: Slot, rights: Rights, badge: u64) -> Result<Slot, CapError> {
        self.derive(src, None, rights, Some(badge))
    }

    /// Mints into the reserved slot `dest`.
    pub fn mint_to(&mut self, src: Slot, dest: Slot, rights: Rights, badge: u64) -> Result<(), CapError> {
        self.derive(src, Some(dest), rights, Some(badge)).map(|_| ())
    }

    // Inlined into each caller, so that each gets its own specialised copy.
    #[inline(always)]
    fn derive(&mut self, src: Slot, dest: Option<Slot>, rights: Rights, badge: Option<u64>) -> Result<Slot, CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let si = self.find_rec(src).ok_or(CapError::NotManaged(src))?;
        let s = self.caps.get(si);
        let new_badge = match badge {
            Some(b) if s.ty.badgeable() => {
                if s.badge != 0 {
                    return Err(CapError::AlreadyBadged(src));
                }
                b
            }
            Some(b) if b != 0 => return Err(CapError::NotBadgeable(src)),
            _ => s.badge,
        };
        if let Some(d) = dest {
            if !self.reserved.contains(&d) {
                return Err(CapError::NotReserved(d));
            }
        }
        let mut tx = None;
        let d = match dest {
            Some(d) => d,
            None => match self.take_slot(&mut tx) {
                Ok(d) => d,
                Err(f) => return Err(self.fail_cap(tx.unwrap_or_default(), f)),
            },
        };
        // Both are slots of the layout: `src` holds a managed cap, `d` is a
        // reserved slot or was just taken.
        let (dp, sp) = (self.layout.known_path(d), self.layout.known_path(src));
        let r = match badge {
            None => self
                .kernel
                .cnode_copy(dp, sp, rights)
                .map_err(|e| Fail::Kernel(KernelOp::Copy, e)),
            Some(b) => self
                .kernel
                .cnode_mint(dp, sp, rights, CapData::Badge(b))
                .map_err(|e| Fail::Kernel(KernelOp::Mint, e)),
        };
        if let Err(f) = r {
            if dest.is_none() {
                // Taken last, so given back first.
                self.slots.free(d).expect("slot was taken");
            }
            return Err(self.fail_cap(tx.unwrap_or_default(), f));
        }
        self.record_copy(si, d, new_badge, dest.is_some());
        Ok(d)
    }

    /// Books a copy (badge `badge`) of the cap of record `si`, made by the
    /// kernel into slot `d` (a reserved slot if `user_slot`).
    #[inline(always)]
    fn record_copy(&mut self, si: Idx, d: Slot, badge: u64, user_slot: bool) {
        self.caps.insert_copy(si, d, badge, user_slot);
        if user_slot {
            self.reserved.remove(&d);
        }
        self.copies += 1;
    }

    fn fail_cap(&mut self, tx: Tx, f: Fail) -> CapError {
        self.rollback(tx);
        if self.poisoned {
            CapError::Poisoned
        } else {
            f.into()
        }
    }

    /// Moves the managed cap in `src` to the reserved slot `dest`
    /// (`CNode_Move`; derivation links follow it). `src` becomes free, or
    /// reserved again if it was a reserved slot.
    pub fn mv(&mut self, src: Slot, dest: Slot) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let i = self.find_rec(src).ok_or(CapError::NotManaged(src))?;
        // The runs copying it name it by its slot.
        self.materialise_sources(src);
        if !self.reserved.contains(&dest) {
            return Err(CapError::NotReserved(dest));
        }
        self.kernel
            .cnode_move(self.path(dest), self.path(src))
            .map_err(|error| CapError::Kernel {
                op: KernelOp::Move,
                error,
            })?;
        self.caps.relocate(i, src, dest);
        let rec = self.caps.get_mut(i);
        let (object, user_slot) = (rec.object, rec.user_slot);
        rec.user_slot = true;
        let o = self.objects.get_mut(&object).expect("object");
        if o.slot == src {
            o.slot = dest;
        }
        self.reserved.remove(&dest);
        self.vacate(src, user_slot);
        Ok(())
    }

    /// Deletes a copy (`CNode_Delete`); its own copies stay, re-attached to
    /// its parent as in the kernel. Originals are refused: use
    /// [`free`](Self::free).
    pub fn delete(&mut self, slot: Slot) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let i = self.find_rec(slot).ok_or(CapError::NotManaged(slot))?;
        if self.caps.get(i).parent == NIL {
            return Err(CapError::IsOriginal(slot));
        }
        self.kernel
            .cnode_delete(self.layout.known_path(slot))
            .map_err(|error| CapError::Kernel {
                op: KernelOp::Delete,
                error,
            })?;
        self.forget_copy(i);
        Ok(())
    }

    /// Deletes the copies in `slots`, in order: the outcome of
    /// [`delete`](Self::delete) of each in turn, stopping at the first
    /// failure, except that every slot is checked first.
    ///
    /// - *Refused* (nothing done, `deleted == 0`, every figure as before): a
    ///   slot holds no managed cap, or is named a second time
    ///   ([`CapError::NotManaged`]), or holds an original
    ///   ([`CapError::IsOriginal`]); the first such slot is named.
    /// - *Kernel failure*: a deletion cannot be undone, so if the kernel
    ///   refuses the delete of `slots[k]`, the copies `slots[..k]` stay
    ///   deleted (and booked so), the rest are untouched, and the error has
    ///   `deleted == k` and the kernel's error.
    ///
    /// Cost: when `slots` are stretches of consecutive slots in increasing
    /// order (such as the copies [`copy_many`](Self::copy_many) made), they
    /// are checked and booked a run at a time.
    pub fn delete_many(&mut self, slots: &[Slot]) -> Result<(), DeleteManyError> {
        let refused = |error| DeleteManyError { deleted: 0, error };
        if self.poisoned {
            return Err(refused(CapError::Poisoned));
        }
        // One cap: exactly `delete` (a failure of its only delete leaves
        // nothing deleted).
        if let [slot] = *slots {
            return self.delete_one(slot);
        }
        // Stretches of consecutive slots, in increasing order (so that no
        // slot is named twice), are checked and booked as runs.
        if let Some(parts) = stretches(slots).filter(|p| increasing(slots, p)) {
            return self.delete_stretches(slots, &parts);
        }
        self.delete_one_by_one(slots)
    }

    /// [`delete_many`](Self::delete_many) of one slot: [`delete`](Self::delete).
    fn delete_one(&mut self, slot: Slot) -> Result<(), DeleteManyError> {
        self.delete(slot).map_err(|error| DeleteManyError { deleted: 0, error })
    }

    /// [`delete_many`](Self::delete_many) of `slots` in general: each checked
    /// (marking the records seen, for slots named twice), then deleted and
    /// booked in turn.
    #[inline(never)]
    fn delete_one_by_one(&mut self, slots: &[Slot]) -> Result<(), DeleteManyError> {
        let refused = |error| DeleteManyError { deleted: 0, error };
        let mut recs = Vec::with_capacity(slots.len());
        let mut bad = None;
        self.materialise_missing(slots);
        for &s in slots {
            let Some(i) = self.caps.find(s) else {
                bad = Some(CapError::NotManaged(s));
                break;
            };
            let r = self.caps.get_mut(i);
            if r.mark {
                bad = Some(CapError::NotManaged(s));
                break;
            }
            if r.parent == NIL {
                bad = Some(CapError::IsOriginal(s));
                break;
            }
            r.mark = true;
            recs.push(i);
        }
        for &i in &recs {
            self.caps.get_mut(i).mark = false;
        }
        if let Some(e) = bad {
            return Err(refused(e));
        }
        for (k, (&s, &i)) in slots.iter().zip(&recs).enumerate() {
            if let Err(error) = self.kernel.cnode_delete(self.layout.known_path(s)) {
                return Err(DeleteManyError {
                    deleted: k,
                    error: CapError::Kernel {
                        op: KernelOp::Delete,
                        error,
                    },
                });
            }
            self.forget_copy(i);
        }
        Ok(())
    }

    /// [`delete_many`](Self::delete_many) of `slots`, in the stretches
    /// `parts` of consecutive slots, which name no slot twice: the stretches
    /// checked as runs, the kernel calls, then the books of the slots
    /// deleted in bulk (as `forget_copy` of each in turn would write them).
    fn delete_stretches(&mut self, slots: &[Slot], parts: &[(usize, usize)]) -> Result<(), DeleteManyError> {
        for &(o, len) in parts {
            if let Err((s, original)) = self.check_copies_run_rec(slots[o], len as u64) {
                let error = if original {
                    CapError::IsOriginal(s)
                } else {
                    CapError::NotManaged(s)
                };
                return Err(DeleteManyError { deleted: 0, error });
            }
        }
        for (t, &(o, len)) in parts.iter().enumerate() {
            // Within one CNode the paths of consecutive slots differ only by
            // their index (see `Layout::known_path`).
            let p0 = self.layout.known_path(slots[o]);
            for j in 0..len {
                let p = CapPath {
                    index: p0.index + j as u64,
                    ..p0
                };
                if let Err(error) = self.kernel.cnode_delete(p) {
                    for &(o, len) in &parts[..t] {
                        self.forget_copies_run(slots[o], len as u64);
                    }
                    self.forget_copies_run(slots[o], j as u64);
                    return Err(DeleteManyError {
                        deleted: o + j,
                        error: CapError::Kernel {
                            op: KernelOp::Delete,
                            error,
                        },
                    });
                }
            }
        }
        for &(o, len) in parts {
            self.forget_copies_run(slots[o], len as u64);
        }
        Ok(())
    }

    /// Revokes the managed cap in `slot` (`CNode_Revoke`): every cap derived
    /// from it is deleted; the cap itself stays.
    pub fn revoke(&mut self, slot: Slot) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let i = self.find_rec(slot).ok_or(CapError::NotManaged(slot))?;
        // The copies in runs of it are among those to delete.
        self.materialise_sources(slot);
        self.kernel
            .cnode_revoke(self.path(slot))
            .map_err(|error| CapError::Kernel {
                op: KernelOp::Revoke,
                error,
            })?;
        for rec in self.caps.take_descendants(i) {
            self.drop_copy(rec);
        }
        Ok(())
    }

    /// Books the deletion of copy `i`: its children go to its parent.
    #[inline(always)]
    fn forget_copy(&mut self, i: Idx) {
        self.caps.hand_children_to_parent(i);
        let rec = self.caps.remove(i);
        self.drop_copy(rec);
    }

    #[inline(always)]
    fn drop_copy(&mut self, rec: Gone) {
        self.caps.get_mut(rec.orig).copies -= 1;
        self.copies -= 1;
        self.vacate(rec.slot, rec.user_slot);
    }

    /// A slot whose cap is gone: back to the caller if it was theirs, else free.
    #[inline(always)]
    pub(super) fn vacate(&mut self, slot: Slot, user_slot: bool) {
        if user_slot {
            self.reserved.insert(slot);
        } else {
            self.slots.free(slot).expect("slot was allocated");
        }
    }
}

/// The per-cap references of the batched paths, for the tests.
#[cfg(test)]
impl<K: KernelOps> CSpace<K> {
    /// The per-cap [`copy_many`](Self::copy_many) this crate had before the
    /// batched paths (the reference the tests compare with).
    pub(crate) fn copy_many_ref(&mut self, srcs: &[Slot], rights: Rights) -> Result<Vec<Slot>, CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let mut recs = Vec::with_capacity(srcs.len());
        for &s in srcs {
            recs.push(self.find_rec(s).ok_or(CapError::NotManaged(s))?);
        }
        if srcs.is_empty() {
            return Ok(Vec::new());
        }
        let n = srcs.len() as u64;
        let mut tx = Tx::default();
        let dests: Vec<Slot> = match self.take_run(n) {
            Some(run) => {
                tx.log.push(Undo::FreeRun(run));
                run.iter().collect()
            }
            None => {
                let mut v = Vec::with_capacity(srcs.len());
                for _ in 0..n {
                    let mut grown = None;
                    let r = self.take_slot(&mut grown);
                    if let Some(g) = grown {
                        tx.log.extend(g.log);
                    }
                    match r {
                        Ok(d) => {
                            tx.log.push(Undo::FreeRun(one(d)));
                            v.push(d);
                        }
                        Err(f) => {
                            return Err(match self.fail_cap(tx, f) {
                                CapError::OutOfSlots { .. } => CapError::OutOfSlots { needed: n },
                                e => e,
                            })
                        }
                    }
                }
                v
            }
        };
        for (k, (&s, &d)) in srcs.iter().zip(&dests).enumerate() {
            let (dp, sp) = (self.layout.known_path(d), self.layout.known_path(s));
            if let Err(e) = self.kernel.cnode_copy(dp, sp, rights) {
                let made = dests[..k].iter().map(|&d| self.path(d)).collect();
                tx.log.push(Undo::DeleteCaps(made));
                return Err(self.fail_cap(tx, Fail::Kernel(KernelOp::Copy, e)));
            }
        }
        for (&si, &d) in recs.iter().zip(&dests) {
            let badge = self.caps.get(si).badge;
            self.record_copy(si, d, badge, false);
        }
        Ok(dests)
    }

    /// The per-cap [`delete_many`](Self::delete_many) this crate had before
    /// the batched paths (the reference the tests compare with).
    pub(crate) fn delete_many_ref(&mut self, slots: &[Slot]) -> Result<(), DeleteManyError> {
        let refused = |error| DeleteManyError { deleted: 0, error };
        if self.poisoned {
            return Err(refused(CapError::Poisoned));
        }
        let mut recs = Vec::with_capacity(slots.len());
        let mut bad = None;
        self.materialise_missing(slots);
        for &s in slots {
            let Some(i) = self.caps.find(s) else {
                bad = Some(CapError::NotManaged(s));
                break;
            };
            let r = self.caps.get_mut(i);
            if r.mark {
                bad = Some(CapError::NotManaged(s));
                break;
            }
            if r.parent == NIL {
                bad = Some(CapError::IsOriginal(s));
                break;
            }
            r.mark = true;
            recs.push(i);
        }
        for &i in &recs {
            self.caps.get_mut(i).mark = false;
        }
        if let Some(e) = bad {
            return Err(refused(e));
        }
        for (k, (&s, &i)) in slots.iter().zip(&recs).enumerate() {
            if let Err(error) = self.kernel.cnode_delete(self.layout.known_path(s)) {
                return Err(DeleteManyError {
                    deleted: k,
                    error: CapError::Kernel {
                        op: KernelOp::Delete,
                        error,
                    },
                });
            }
            self.forget_copy(i);
        }
        Ok(())
    }
}
