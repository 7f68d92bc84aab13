//! Slots for a request, growing the CSpace by a level-2 CNode when needed (see *Growth* in the crate
//! documentation); the untyped splits a plan needs; and the rollback of a request's kernel calls (see
//! *Rollback* in the crate documentation).

use alloc::vec;
use alloc::vec::Vec;

use crate::kernel::{KernelOp, KernelOps};
use crate::layout::{CNodeRef, Slot, SlotRange};
use crate::slots::SlotError;
use crate::types::ObjectType;
use crate::untyped::{NodeId, Request, UntypedAllocator};

use super::{CSpace, Fail, InternalCNode, Tx, Undo, UNDO_TRIES};

impl<K: KernelOps> CSpace<K> {
    /// One free slot for a new cap, growing the CSpace first when only the
    /// growth reserve is left (as [`acquire`](Self::acquire) of one slot
    /// would). Growth, if any, is logged in `tx` (made if needed); the slot
    /// itself is not: on failure the caller gives it back before rolling
    /// `tx` back.
    #[inline(always)]
    pub(super) fn take_slot(&mut self, tx: &mut Option<Tx>) -> Result<Slot, Fail> {
        if self.slots.free_count() > self.reserve {
            return Ok(self.slots.alloc().expect("a free slot exists"));
        }
        self.take_slot_growing(tx.get_or_insert_with(Tx::default))
    }

    #[cold]
    fn take_slot_growing(&mut self, tx: &mut Tx) -> Result<Slot, Fail> {
        let runs = self.acquire(tx, &|_| Some(vec![1]))?;
        let taken = tx.log.pop();
        debug_assert!(matches!(taken, Some(Undo::FreeRun(r)) if r == runs[0]));
        Ok(runs[0].slot(0))
    }

    /// A run of `n` free slots of one CNode, if there is one without growing
    /// or using the growth reserve (not logged).
    pub(super) fn take_run(&mut self, n: u64) -> Option<SlotRange> {
        if self.slots.free_count() < n.saturating_add(self.reserve) {
            return None;
        }
        self.slots.alloc_run(n).ok()
    }

    /// Takes runs of free slots of the lengths `lens_of` gives (`None`: no
    /// memory), growing the CSpace first when fewer than the growth reserve
    /// would remain or no run fits.
    pub(super) fn acquire(
        &mut self,
        tx: &mut Tx,
        lens_of: &dyn Fn(&UntypedAllocator) -> Option<Vec<u64>>,
    ) -> Result<Vec<SlotRange>, Fail> {
        let mut grown = 0;
        loop {
            let lens = lens_of(&self.ut).ok_or(Fail::NoMemory)?;
            let need: u64 = lens.iter().sum();
            let longest = lens.iter().copied().max().unwrap_or(0);
            if self.slots.free_count() >= need + self.reserve || grown > 0 {
                if let Some(runs) = self.try_runs(&lens) {
                    tx.log.extend(runs.iter().map(|r| Undo::FreeRun(*r)));
                    return Ok(runs);
                }
            }
            if grown >= 2 {
                return Err(Fail::NoSlots(longest));
            }
            match self.grow(tx) {
                Ok(()) => grown += 1,
                Err(Fail::Kernel(op, e)) => return Err(Fail::Kernel(op, e)),
                Err(_) => {
                    // Cannot grow: use the reserve.
                    let lens = lens_of(&self.ut).ok_or(Fail::NoMemory)?;
                    return match self.try_runs(&lens) {
                        Some(runs) => {
                            tx.log.extend(runs.iter().map(|r| Undo::FreeRun(*r)));
                            Ok(runs)
                        }
                        None => Err(Fail::NoSlots(longest)),
                    };
                }
            }
        }
    }

    /// Takes all the runs, or none.
    fn try_runs(&mut self, lens: &[u64]) -> Option<Vec<SlotRange>> {
        let mut got = Vec::with_capacity(lens.len());
        for &n in lens {
            match self.slots.alloc_run(n) {
                Ok(r) => got.push(r),
                Err(SlotError::Exhausted { .. }) | Err(_) => {
                    for r in got {
                        self.slots.free_run(r).expect("just taken");
                    }
                    return None;
                }
            }
        }
        Some(got)
    }

    /// Plans a fresh-RAM request and takes the slots its splits need (no
    /// growth).
    pub(super) fn try_plan_slots(&mut self, req: &Request) -> Option<Vec<Slot>> {
        let plan = self.ut.plan(req)?;
        let lens = split_slots(&self.ut, &plan);
        self.try_runs(&lens).map(|r| singles(&r))
    }

    /// Adds a level-2 CNode: made from a fresh RAM piece (so that undoing it
    /// restores the untyped exactly) into the first free L1 slot.
    fn grow(&mut self, tx: &mut Tx) -> Result<(), Fail> {
        let k = self.slots.first_unused_index();
        if k as u64 >= self.layout.max_level2() {
            return Err(Fail::NoSlots(1));
        }
        let obj_bits = self.layout.l2_bits + crate::types::SLOT_BITS;
        let req = fresh_ram(obj_bits);
        let slots = self.try_plan_slots(&req).ok_or(Fail::NoSlots(1))?;
        tx.log.extend(slots.iter().map(|s| Undo::FreeRun(one(*s))));
        let plan = self.ut.plan(&req).expect("planned");
        let host = self.exec_splits(&plan, &slots, tx)?;
        let l1_slot = Slot {
            cnode: CNodeRef::Level1,
            index: k as u64,
        };
        let dest = self.layout.retype_dest(SlotRange {
            cnode: CNodeRef::Level1,
            start: k as u64,
            len: 1,
        });
        let old = self.ut.node(host).expect("host").state.clone();
        self.kernel
            .untyped_retype(
                self.node_cptr(host),
                ObjectType::CNode,
                self.layout.l2_bits,
                dest.expect("valid"),
            )
            .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
        self.ut.apply_alloc(host, obj_bits, 1);
        tx.log.push(Undo::Restore(host, old));
        tx.log.push(Undo::DeleteCaps(vec![self.path(l1_slot)]));
        self.slots.add_cnode(k).expect("unused index");
        self.l2.insert(k, InternalCNode { node: host, obj_bits });
        tx.log.push(Undo::RemoveLevel2(k));
        Ok(())
    }

    /// Performs a plan's splits, one retype per child (so that the children
    /// need single free slots, not runs), into `slots` in order; returns the
    /// host.
    pub(super) fn exec_splits(
        &mut self,
        plan: &crate::untyped::Plan,
        slots: &[Slot],
        tx: &mut Tx,
    ) -> Result<NodeId, Fail> {
        let mut id = plan.start;
        let mut next = 0;
        for &kid_bits in &plan.splits {
            let n = UntypedAllocator::kids_of(self.ut.node(id).expect("node").size_bits, kid_bits) as usize;
            let kid_slots = &slots[next..next + n];
            next += n;
            for &s in kid_slots {
                let dest = self.layout.retype_dest(one(s)).expect("valid slot");
                self.kernel
                    .untyped_retype(self.node_cptr(id), ObjectType::Untyped, kid_bits, dest)
                    .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
                tx.log.push(Undo::DeleteCaps(vec![self.path(s)]));
            }
            let kid = self.ut.apply_split(id, kid_bits, kid_slots, plan.paddr);
            tx.log.push(Undo::Merge(id));
            id = kid;
        }
        Ok(id)
    }

    /// Undoes a failed operation, last step first. A kernel delete that keeps
    /// failing poisons the manager.
    pub(super) fn rollback(&mut self, tx: Tx) {
        for u in tx.log.into_iter().rev() {
            match u {
                Undo::FreeRun(r) => self.slots.free_run(r).expect("run was taken"),
                Undo::DeleteCaps(paths) => {
                    for p in paths.into_iter().rev() {
                        if !(0..UNDO_TRIES).any(|_| self.kernel.cnode_delete(p).is_ok()) {
                            self.poisoned = true;
                        }
                    }
                }
                Undo::Merge(id) => {
                    self.ut.merge(id);
                }
                Undo::Restore(id, st) => self.ut.restore(id, st),
                Undo::RemoveLevel2(k) => {
                    self.slots.remove_cnode(k).expect("new CNode is empty");
                    self.l2.remove(&k);
                }
            }
        }
    }
}

/// The slot needs of a plan's splits: one single slot per child.
pub(super) fn split_slots(ut: &UntypedAllocator, plan: &crate::untyped::Plan) -> Vec<u64> {
    ut.split_kids(plan)
        .iter()
        .flat_map(|&n| core::iter::repeat_n(1, n as usize))
        .collect()
}

/// The first slot of each run.
pub(super) fn singles(runs: &[SlotRange]) -> Vec<Slot> {
    runs.iter().map(|r| r.slot(0)).collect()
}

/// A run of one slot.
pub(super) fn one(s: Slot) -> SlotRange {
    SlotRange {
        cnode: s.cnode,
        start: s.index,
        len: 1,
    }
}

/// A request for one object of `obj_bits` from fresh RAM.
pub(super) fn fresh_ram(obj_bits: u8) -> Request {
    Request {
        obj_bits,
        count: 1,
        lo: 0,
        hi: u64::MAX,
        ram: true,
        device: false,
        fresh_only: true,
    }
}
