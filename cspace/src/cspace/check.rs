//! The cap books' audit ([`CSpace::check_books`]) and, for the tests, views of the books that compare
//! managers whatever their representation.

use crate::captable::NIL;
use crate::kernel::KernelOps;
use crate::layout::CNodeRef;

use super::CSpace;
#[cfg(test)]
use {
    super::ObjectId,
    crate::captable::Idx,
    crate::layout::{Slot, SlotRange},
    crate::types::ObjectType,
    alloc::vec::Vec,
};

impl<K: KernelOps> CSpace<K> {
    /// Checks the cap books' invariants (see [`CSpace`]; public so that a
    /// manager can audit them on the real kernel too): those of the cap
    /// table, of the copy runs' indices, and between them and the slot
    /// books: a run's sources hold originals; its destinations hold no
    /// record and are neither free nor reserved; no reserved slot holds a
    /// record; `copies` counts the copies with records and in runs.
    pub fn check_books(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        self.caps.check()?;
        self.runs.check()?;
        for (d, r) in self.runs.iter() {
            for j in 0..r.n {
                let (src, dest) = (self.runs.slot(r.src + j), self.runs.slot(d + j));
                match self.caps.find(src) {
                    Some(i) if self.caps.get(i).parent == NIL => {}
                    _ => return Err(format!("run at {dest:?}: source {src:?} is not an original")),
                }
                if self.caps.find(dest).is_some() {
                    return Err(format!("run slot {dest:?} has a record"));
                }
                if self.slots.is_free(dest) || self.reserved.contains(&dest) {
                    return Err(format!("run slot {dest:?} is free or reserved"));
                }
                if !self.slots.has_cnode(match dest.cnode {
                    CNodeRef::Level2(k) => k,
                    CNodeRef::Level1 => u32::MAX,
                }) {
                    return Err(format!("run slot {dest:?} is not a managed slot"));
                }
            }
        }
        if let Some(s) = self.reserved.iter().find(|&s| self.caps.find(s).is_some()) {
            return Err(format!("reserved slot {s:?} holds a record"));
        }
        let with_records = self.caps.iter().filter(|r| r.parent != NIL).count() as u64;
        if self.copies != with_records + self.runs.copies() {
            return Err(format!(
                "{} copies counted, {with_records} with records, {} in runs",
                self.copies,
                self.runs.copies()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
impl<K: KernelOps> CSpace<K> {
    /// Whether the cap, slot and reserved-slot books of the two managers
    /// are the same, down to the arena indices, the vacant list and the
    /// allocator's hints (so that every later call behaves the same).
    pub(crate) fn same_cap_books(&self, other: &Self) -> bool {
        self.caps == other.caps
            && self.runs == other.runs
            && self.slots == other.slots
            && self.reserved == other.reserved
            && self.copies == other.copies
            && self.poisoned == other.poisoned
    }

    /// The cap books as the kernel would see them, whatever the
    /// representation (records or copy runs, arena indices, children's
    /// order), in slot order: each cap's slot, object, type, original's
    /// slot, parent's slot, children's slots (sorted), copies (originals:
    /// with those in runs), revocable, badge, and whether its slot is a
    /// reserved slot.
    #[allow(clippy::type_complexity)]
    pub(crate) fn cap_view(
        &self,
    ) -> Vec<(
        Slot,
        ObjectId,
        ObjectType,
        Slot,
        Option<Slot>,
        Vec<Slot>,
        u64,
        bool,
        u64,
        bool,
    )> {
        use alloc::collections::BTreeMap;
        let mut view = BTreeMap::new();
        let slot_of = |i: Idx| self.caps.get(i).slot;
        for r in self.caps.iter() {
            let parent = (r.parent != NIL).then(|| slot_of(r.parent));
            let copies = r.copies + self.run_copies_of(r.slot);
            let row = (
                r.object,
                r.ty,
                slot_of(r.orig),
                parent,
                Vec::new(),
                copies,
                r.revocable,
                r.badge,
                r.user_slot,
            );
            view.insert(r.slot, row);
        }
        for (d, run) in self.runs.iter() {
            for j in 0..run.n {
                let src = self.runs.slot(run.src + j);
                let s = self.caps.get(self.caps.find_known(src));
                let revocable = s.ty == ObjectType::Untyped;
                let row = (s.object, s.ty, src, Some(src), Vec::new(), 0, revocable, s.badge, false);
                view.insert(self.runs.slot(d + j), row);
            }
        }
        let kids: Vec<(Slot, Slot)> = view.iter().filter_map(|(&s, row)| row.3.map(|p| (p, s))).collect();
        for (p, c) in kids {
            view.get_mut(&p).expect("parent").4.push(c);
        }
        view.into_iter()
            .map(|(s, (o, t, orig, p, mut kids, c, rv, b, u))| {
                kids.sort();
                (s, o, t, orig, p, kids, c, rv, b, u)
            })
            .collect()
    }

    /// The copy runs: first source slot and destination slots, in
    /// destination order.
    pub(crate) fn copy_run_list(&self) -> Vec<(Slot, SlotRange)> {
        self.runs
            .iter()
            .map(|(d, r)| (self.runs.slot(r.src), self.runs.range(d, r.n)))
            .collect()
    }

    /// Whether the two managers' cap, slot and reserved-slot books say the
    /// same (see [`cap_view`](Self::cap_view)), whatever their
    /// representation.
    pub(crate) fn same_books_as_seen(&self, other: &Self) -> bool {
        self.cap_view() == other.cap_view()
            && self.slots == other.slots
            && self.reserved == other.reserved
            && self.copies == other.copies
            && self.poisoned == other.poisoned
    }

    /// Whether the managed cap in `slot` has caps derived from it.
    pub(crate) fn has_derived(&self, slot: Slot) -> bool {
        self.caps
            .find(slot)
            .is_some_and(|i| self.caps.get(i).first_child != NIL || self.run_copies_of(slot) > 0)
    }
}
