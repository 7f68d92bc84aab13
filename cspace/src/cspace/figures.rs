//! The figures ([`Stats`] and their parts) and the read-only queries: objects, managed caps, copy runs,
//! reserved slots.

use crate::captable::{Idx, NIL};
use crate::kernel::KernelOps;
use crate::layout::Slot;
use crate::types::{pow2, ObjectType};

use super::{Allocation, CSpace, ObjectId, ObjectRecord, Stats};

impl<K: KernelOps> CSpace<K> {
    /// All figures.
    pub fn stats(&self) -> Stats {
        let (ram, device) = self.ut.mem_stats();
        let cnode_bytes = pow2(self.l1.obj_bits) + self.l2.values().map(|c| pow2(c.obj_bits)).sum::<u64>();
        Stats {
            ram,
            device,
            objects_live: self.objects.len() as u64,
            copies_live: self.copies,
            cnodes: self.slots.cnode_count() as u64,
            cnode_bytes,
            slots_capacity: self.slots.capacity(),
            slots_free: self.slots.free_count(),
            slots_reserved: self.reserved.len(),
            untyped_nodes: self.ut.node_count() as u64,
            reclaim_failures: self.reclaim_failures,
        }
    }

    /// Free RAM bytes (above watermarks).
    pub fn free_bytes(&self) -> u64 {
        self.ut.mem_stats().0.free
    }

    /// Free device-memory bytes.
    pub fn device_free_bytes(&self) -> u64 {
        self.ut.mem_stats().1.free
    }

    /// Live objects (internal CNodes excluded).
    pub fn objects_live(&self) -> u64 {
        self.objects.len() as u64
    }

    /// Live objects of one type.
    pub fn count(&self, ty: ObjectType) -> u64 {
        self.counts[ty.index()]
    }

    /// Free slots.
    pub fn slots_free(&self) -> u64 {
        self.slots.free_count()
    }

    /// A live object.
    pub fn object(&self, id: ObjectId) -> Option<Allocation> {
        self.objects.get(&id).map(|o| self.allocation(id, o))
    }

    /// All live objects.
    pub fn objects(&self) -> impl Iterator<Item = Allocation> + '_ {
        self.objects.iter().map(|(id, o)| self.allocation(*id, o))
    }

    pub(super) fn allocation(&self, id: ObjectId, o: &ObjectRecord) -> Allocation {
        Allocation {
            id,
            ty: o.ty,
            obj_bits: o.obj_bits,
            slot: o.slot,
            cptr: self.cptr(o.slot),
            paddr: o.paddr,
            device: o.device,
            untyped: o.node,
        }
    }

    /// Whether `slot` holds a cap the manager made (original or copy).
    pub fn is_managed(&self, slot: Slot) -> bool {
        self.record_of(slot).is_some()
    }

    /// The object whose cap (original or copy) is in `slot`.
    pub fn object_at(&self, slot: Slot) -> Option<ObjectId> {
        self.record_of(slot).map(|i| self.caps.get(i).object)
    }

    /// The badge of the managed cap in `slot`.
    pub fn badge(&self, slot: Slot) -> Option<u64> {
        self.record_of(slot).map(|i| self.caps.get(i).badge)
    }

    /// The record of the cap in `slot`, or for a copy in a run the record of
    /// its source (same object and badge).
    #[inline]
    fn record_of(&self, slot: Slot) -> Option<Idx> {
        match self.caps.find(slot) {
            Some(i) => Some(i),
            None if self.runs.is_empty() => None,
            None => self.run_source(slot),
        }
    }

    /// The record of the source of the copy in `slot`, if a run holds it.
    #[cold]
    fn run_source(&self, slot: Slot) -> Option<Idx> {
        let s = self.runs.source_of(self.runs.key(slot)?)?;
        Some(self.caps.find_known(self.runs.slot(s)))
    }

    /// Every managed cap: its slot, its object, and whether it is the
    /// object's original.
    pub fn managed_caps(&self) -> impl Iterator<Item = (Slot, ObjectId, bool)> + '_ {
        let in_runs = self.runs.iter().flat_map(move |(d, r)| {
            (0..r.n).map(move |j| {
                let src = self.caps.find_known(self.runs.slot(r.src + j));
                (self.runs.slot(d + j), self.caps.get(src).object, false)
            })
        });
        self.caps
            .iter()
            .map(|c| (c.slot, c.object, c.parent == NIL))
            .chain(in_runs)
    }

    /// Number of copy runs booked (see *Copy runs* in [`CSpace`]).
    pub fn copy_run_count(&self) -> usize {
        self.runs.len()
    }

    /// Whether [`adopt_copies_run`](Self::adopt_copies_run) books copy runs
    /// (the default) or a record per cap.
    pub fn copy_runs(&self) -> bool {
        self.runs.enabled
    }

    /// Turns the booking of copy runs on or off; turning it off first
    /// materialises every run (see *Copy runs* in [`CSpace`]). Nothing
    /// observable changes either way.
    pub fn set_copy_runs(&mut self, on: bool) {
        if !on {
            self.materialise_all();
        }
        self.runs.enabled = on;
    }

    /// Books every run's copies per cap (nothing observable changes).
    pub fn materialise_all(&mut self) {
        for d in self.runs.all() {
            self.materialise(d);
        }
    }

    /// The empty slots handed out by [`alloc_slots`](Self::alloc_slots).
    pub fn reserved_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.reserved.iter()
    }

    /// Whether a rollback failed (every mutating operation then refuses).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}
