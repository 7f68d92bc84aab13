//! Allocation: objects from untyped memory ([`CSpace::alloc_many`] and the forms built on it), their
//! freeing and the untyped merges it allows, idle reclaim; and empty slots handed out (and back) by the
//! run.

use alloc::vec;
use alloc::vec::Vec;

use crate::captable::{CapRecord, NIL};
use crate::kernel::{KernelOp, KernelOps};
use crate::layout::{Slot, SlotRange};
use crate::types::{pow2, KernelError, ObjectType, RETYPE_FAN_OUT_LIMIT};
use crate::untyped::{NodeId, NodeState, Request};

use super::error::{AllocError, CapError, FreeError};
use super::growth::{singles, split_slots};
use super::{Allocation, CSpace, Fail, ObjectId, ObjectRecord, Placement, Tx};

impl<K: KernelOps> CSpace<K> {
    /// Allocates one object anywhere in RAM. `size_bits`: see
    /// [`ObjectType::object_bits`].
    pub fn alloc(&mut self, ty: ObjectType, size_bits: u8) -> Result<Allocation, AllocError> {
        self.alloc_at(ty, size_bits, Placement::Anywhere)
    }

    /// Allocates one object with a placement constraint.
    pub fn alloc_at(&mut self, ty: ObjectType, size_bits: u8, placement: Placement) -> Result<Allocation, AllocError> {
        self.alloc_many(ty, size_bits, 1, placement).map(|v| v[0])
    }

    /// Allocates `count` objects with one retype: consecutive in memory and
    /// their caps in consecutive slots of one CNode.
    pub fn alloc_many(
        &mut self,
        ty: ObjectType,
        size_bits: u8,
        count: u64,
        placement: Placement,
    ) -> Result<Vec<Allocation>, AllocError> {
        if self.poisoned {
            return Err(AllocError::Poisoned);
        }
        let obj_bits = ty.object_bits(size_bits).ok_or(AllocError::BadSize { ty, size_bits })?;
        if count == 0 || count > RETYPE_FAN_OUT_LIMIT {
            return Err(AllocError::BadCount { count });
        }
        let span = count << obj_bits;
        if obj_bits <= self.ut.chunk_bits() && span > pow2(self.ut.chunk_bits()) {
            return Err(AllocError::BatchTooLarge { count, obj_bits });
        }
        let req = match placement {
            Placement::Anywhere => Request {
                obj_bits,
                count,
                lo: 0,
                hi: u64::MAX,
                ram: true,
                device: false,
                fresh_only: false,
            },
            Placement::Range { lo, hi } => {
                if lo >= hi || hi - lo < span {
                    return Err(AllocError::BadRange { lo, hi });
                }
                Request {
                    obj_bits,
                    count,
                    lo,
                    hi,
                    ram: true,
                    device: ty.device_ok(),
                    fresh_only: false,
                }
            }
        };
        let mut tx = Tx::default();
        match self.alloc_inner(ty, obj_bits, &req, &mut tx) {
            Ok(v) => Ok(v),
            Err(f) => {
                self.rollback(tx);
                if self.poisoned {
                    return Err(AllocError::Poisoned);
                }
                Err(match f {
                    Fail::NoMemory => {
                        let dev_would = Request { device: true, ..req };
                        if !req.device
                            && matches!(placement, Placement::Range { .. })
                            && self.ut.plan(&dev_would).is_some()
                        {
                            AllocError::DeviceMemory { ty }
                        } else {
                            AllocError::OutOfMemory { bytes: span }
                        }
                    }
                    f => f.into(),
                })
            }
        }
    }

    fn alloc_inner(
        &mut self,
        ty: ObjectType,
        obj_bits: u8,
        req: &Request,
        tx: &mut Tx,
    ) -> Result<Vec<Allocation>, Fail> {
        let count = req.count;
        let runs = self.acquire(tx, &|ut| {
            let p = ut.plan(req)?;
            let mut lens = split_slots(ut, &p);
            lens.push(count);
            Some(lens)
        })?;
        let plan = self.ut.plan(req).expect("planned with the same books");
        let (split_runs, obj_run) = runs.split_at(runs.len() - 1);
        let host = self.exec_splits(&plan, &singles(split_runs), tx)?;
        let run = obj_run[0];
        let dest = self.layout.retype_dest(run).expect("valid run");
        self.kernel
            .untyped_retype(self.node_cptr(host), ty, ty.retype_size_arg(obj_bits), dest)
            .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
        let host_node = self.ut.node(host).expect("host");
        let device = host_node.device;
        let paddr = self.ut.apply_alloc(host, obj_bits, count);
        debug_assert_eq!(paddr, plan.paddr);
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let id = ObjectId(self.next_object);
            self.next_object += 1;
            let slot = run.slot(i);
            let rec = ObjectRecord {
                ty,
                obj_bits,
                slot,
                paddr: paddr + i * pow2(obj_bits),
                device,
                node: host,
            };
            out.push(self.allocation(id, &rec));
            self.objects.insert(id, rec);
            self.caps.insert(CapRecord {
                slot,
                object: id,
                ty,
                orig: NIL,
                parent: NIL,
                first_child: NIL,
                prev: NIL,
                next: NIL,
                copies: 0,
                revocable: true,
                badge: 0,
                user_slot: false,
                mark: false,
                live: true,
            });
        }
        self.counts[ty.index()] += count;
        Ok(out)
    }

    /// Frees an object: deletes its original cap (revoking it first if it is
    /// an untyped, so that nothing made from it survives). When the untyped it
    /// came from has no objects left, the kernel resets it; when all pieces of
    /// a split untyped are empty, the split is undone with a revoke.
    pub fn free(&mut self, id: ObjectId) -> Result<(), FreeError> {
        if self.poisoned {
            return Err(FreeError::Poisoned);
        }
        let o = self.objects.get(&id).ok_or(FreeError::UnknownObject(id))?;
        let (slot, ty, obj_bits, node) = (o.slot, o.ty, o.obj_bits, o.node);
        let i = self.caps.find(slot).expect("original recorded");
        // A source of copy runs is not materialised: its copies are counted.
        let copies = self.caps.get(i).copies + self.run_copies_of(slot);
        if copies > 0 {
            return Err(FreeError::HasCopies { id, copies });
        }
        let path = self.path(slot);
        if ty == ObjectType::Untyped {
            self.kernel.cnode_revoke(path).map_err(|error| FreeError::Kernel {
                op: KernelOp::Revoke,
                error,
            })?;
        }
        self.kernel.cnode_delete(path).map_err(|error| FreeError::Kernel {
            op: KernelOp::Delete,
            error,
        })?;
        let rec = self.caps.remove(i);
        self.vacate(slot, rec.user_slot);
        self.objects.remove(&id);
        self.counts[ty.index()] -= 1;
        if self.ut.release(node, obj_bits) {
            self.coalesce(node);
        }
        Ok(())
    }

    /// Undoes splits whose pieces are all empty, from `id` upwards.
    fn coalesce(&mut self, mut id: NodeId) {
        while let Some(p) = self.ut.node(id).and_then(|n| n.parent) {
            if !self.ut.mergeable(p) {
                break;
            }
            let path = self.path(self.ut.node(p).expect("parent").slot);
            match self.kernel.cnode_revoke(path) {
                Ok(()) => {
                    for s in self.ut.merge(p) {
                        self.slots.free(s).expect("piece slot was allocated");
                    }
                    id = p;
                }
                Err(_) => {
                    self.reclaim_failures += 1;
                    break;
                }
            }
        }
    }

    /// How many merges of emptied untyped pieces the kernel refused so far
    /// (the pieces stay split; [`reclaim_idle`](Self::reclaim_idle) retries).
    pub fn reclaim_failures(&self) -> u64 {
        self.reclaim_failures
    }

    /// Retries the merges of idle split untypeds (after revokes failed).
    /// Returns how many splits were undone, or the first kernel error.
    pub fn reclaim_idle(&mut self) -> Result<u64, KernelError> {
        let mut merged = 0;
        loop {
            let mut ids: Vec<NodeId> = self
                .ut
                .nodes()
                .filter(|(_, n)| matches!(n.state, NodeState::Split { .. }))
                .map(|(id, _)| id)
                .collect();
            ids.sort_unstable();
            let Some(p) = ids.into_iter().find(|&id| self.ut.mergeable(id)) else {
                return Ok(merged);
            };
            let path = self.path(self.ut.node(p).expect("node").slot);
            self.kernel.cnode_revoke(path)?;
            for s in self.ut.merge(p) {
                self.slots.free(s).expect("piece slot was allocated");
            }
            merged += 1;
        }
    }

    /// Hands out `n` consecutive empty slots of one CNode (growing the CSpace
    /// if needed). They stay the caller's until
    /// [`release_slots`](Self::release_slots); caps can be put there with
    /// [`copy_to`](Self::copy_to), [`mint_to`](Self::mint_to) and
    /// [`mv`](Self::mv).
    pub fn alloc_slots(&mut self, n: u64) -> Result<SlotRange, AllocError> {
        if self.poisoned {
            return Err(AllocError::Poisoned);
        }
        if n == 0 || n > pow2(self.layout.l2_bits) {
            return Err(AllocError::BadCount { count: n });
        }
        // Without growth: the run `acquire` would take first (no log needed).
        if let Some(run) = self.take_run(n) {
            self.reserved.insert_run(run);
            return Ok(run);
        }
        let mut tx = Tx::default();
        match self.acquire(&mut tx, &|_| Some(vec![n])) {
            Ok(runs) => {
                self.reserved.insert_run(runs[0]);
                Ok(runs[0])
            }
            Err(f) => {
                self.rollback(tx);
                if self.poisoned {
                    return Err(AllocError::Poisoned);
                }
                Err(f.into())
            }
        }
    }

    /// One empty slot (see [`alloc_slots`](Self::alloc_slots)).
    pub fn alloc_slot(&mut self) -> Result<Slot, AllocError> {
        self.alloc_slots(1).map(|r| r.slot(0))
    }

    /// Gives back slots from [`alloc_slots`](Self::alloc_slots); each must be
    /// reserved and empty (the manager cannot see caps put there by other
    /// means: delete them first).
    pub fn release_slots(&mut self, range: SlotRange) -> Result<(), CapError> {
        if let Some(s) = self.reserved.first_missing(range) {
            return Err(CapError::NotReserved(s));
        }
        self.reserved.remove_run(range);
        self.slots.free_run(range).expect("reserved slots are allocated");
        Ok(())
    }

    /// Gives back one slot.
    pub fn release_slot(&mut self, slot: Slot) -> Result<(), CapError> {
        self.release_slots(SlotRange {
            cnode: slot.cnode,
            start: slot.index,
            len: 1,
        })
    }
}
