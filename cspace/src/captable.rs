//! The records of the managed caps (crate-internal).
//!
//! Records live in an arena and are found from their slot through a direct
//! table indexed like the slot's pointer, `(k << L2) | index` (one `u32` per
//! slot of the level-2 CNodes up to the highest one that held a managed
//! cap), so that finding, adding and removing a record needs no hashing. The
//! derivation tree is kept as links between arena indices: each record names
//! its parent and its first child, and children are chained through
//! `prev`/`next`, so that linking and unlinking a copy allocates nothing and
//! touches only its neighbours. The order of children is not significant.

use alloc::vec::Vec;

use crate::cspace::ObjectId;
use crate::layout::{CNodeRef, Slot};
use crate::types::ObjectType;

/// Index of a record in the arena.
pub(crate) type Idx = u32;

/// No record.
pub(crate) const NIL: Idx = u32::MAX;

/// A managed cap: an object's original (`parent == NIL`) or a copy. The
/// parent links mirror the kernel's derivation tree (5.0 `cteInsert` and
/// `isMDBParentOf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CapRecord {
    /// Where the cap is.
    pub slot: Slot,
    pub object: ObjectId,
    /// The object's type (as in its object record).
    pub ty: ObjectType,
    /// The object's original (itself for an original). Originals stay put
    /// while copies exist (an object with copies cannot be freed).
    pub orig: Idx,
    pub parent: Idx,
    pub first_child: Idx,
    /// Siblings (children of the same parent).
    pub prev: Idx,
    pub next: Idx,
    /// Live copies of the object (kept on its original only).
    pub copies: u64,
    pub revocable: bool,
    pub badge: u64,
    /// The slot was handed out by `alloc_slots`; it goes back to the caller
    /// (reserved) when the cap leaves it.
    pub user_slot: bool,
    /// Scratch mark for batch checks (always false between operations).
    pub mark: bool,
    /// The arena entry is in use (set by [`CapTable::insert`]).
    pub live: bool,
}

/// What is left of a removed record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone {
    pub slot: Slot,
    pub orig: Idx,
    pub user_slot: bool,
}

/// The managed caps, by slot.
#[derive(Debug, Clone)]
pub(crate) struct CapTable {
    /// By `(k << l2_bits) | index` for slot `index` of level-2 CNode `k`:
    /// the record, or `NIL`.
    by_slot: Vec<Idx>,
    recs: Vec<CapRecord>,
    /// Arena entries not in use.
    vacant: Vec<Idx>,
    /// Number of level-2 CNodes the layout can address (`2^L1`).
    max_level2: u64,
    /// Radix of the level-2 CNodes (`L2`; the boot CNode is no larger).
    l2_bits: u8,
}

impl CapTable {
    /// An empty table for the layout with level-1 radix `l1_bits` and
    /// level-2 radix `l2_bits` (`l1_bits + l2_bits <= 64`).
    pub fn new(l1_bits: u8, l2_bits: u8) -> Self {
        CapTable {
            by_slot: Vec::new(),
            recs: Vec::new(),
            vacant: Vec::new(),
            max_level2: 1 << l1_bits,
            l2_bits,
        }
    }

    /// Where `slot` is in `by_slot` (`None`: not a level-2 slot of the
    /// layout).
    #[inline]
    fn key(&self, slot: Slot) -> Option<usize> {
        let CNodeRef::Level2(k) = slot.cnode else {
            return None;
        };
        if k as u64 >= self.max_level2 || slot.index >> self.l2_bits != 0 {
            return None;
        }
        usize::try_from(((k as u64) << self.l2_bits) | slot.index).ok()
    }

    /// The record of the cap in `slot`.
    #[inline]
    pub fn find(&self, slot: Slot) -> Option<Idx> {
        let i = *self.by_slot.get(self.key(slot)?)?;
        (i != NIL).then_some(i)
    }

    #[inline]
    pub fn get(&self, i: Idx) -> &CapRecord {
        let r = &self.recs[i as usize];
        debug_assert!(r.live, "live record");
        r
    }

    #[inline]
    pub fn get_mut(&mut self, i: Idx) -> &mut CapRecord {
        let r = &mut self.recs[i as usize];
        debug_assert!(r.live, "live record");
        r
    }

    /// Every record.
    pub fn iter(&self) -> impl Iterator<Item = &CapRecord> + '_ {
        self.recs.iter().filter(|r| r.live)
    }

    /// The table entry of `slot` (a level-2 slot of the layout), made on
    /// first use.
    #[inline]
    fn entry(&mut self, slot: Slot) -> &mut Idx {
        debug_assert!(self.key(slot).is_some(), "{slot:?}: not a level-2 slot of the layout");
        let CNodeRef::Level2(k) = slot.cnode else {
            unreachable!("managed caps live in level-2 CNodes")
        };
        let key = ((k as usize) << self.l2_bits) | slot.index as usize;
        if key >= self.by_slot.len() {
            self.extend_to(key);
        }
        &mut self.by_slot[key]
    }

    /// Extends the table to the whole CNode of `key`.
    #[cold]
    fn extend_to(&mut self, key: usize) {
        let n = ((key >> self.l2_bits) + 1) << self.l2_bits;
        self.by_slot.resize(n, NIL);
    }

    /// Records a new cap (`rec.slot` must hold none; `rec.orig == NIL` makes
    /// it its own original) and links it under `rec.parent`. Returns its
    /// index.
    #[inline(always)]
    pub fn insert(&mut self, mut rec: CapRecord) -> Idx {
        let (i, fresh) = match self.vacant.pop() {
            Some(i) => (i, false),
            None => (Self::fresh_index(self.recs.len()), true),
        };
        let e = self.entry(rec.slot);
        debug_assert_eq!(*e, NIL, "slot already holds a managed cap");
        *e = i;
        if rec.orig == NIL {
            rec.orig = i;
        }
        rec.prev = NIL;
        rec.next = NIL;
        rec.live = true;
        let recs = &mut self.recs[..];
        if rec.parent != NIL {
            let p = &mut recs[rec.parent as usize];
            let first = core::mem::replace(&mut p.first_child, i);
            rec.next = first;
            if first != NIL {
                recs[first as usize].prev = i;
            }
        }
        if fresh {
            self.recs.push(rec);
        } else {
            recs[i as usize] = rec;
        }
        i
    }

    /// The index of a new arena entry after `len` entries.
    fn fresh_index(len: usize) -> Idx {
        match Idx::try_from(len) {
            Ok(i) if i != NIL => i,
            _ => panic!("fewer than 2^32 - 1 caps"),
        }
    }

    /// Removes a record that has no children from the table and from its
    /// parent's children, and returns it.
    #[inline(always)]
    pub fn remove(&mut self, i: Idx) -> Gone {
        let recs = &mut self.recs[..];
        let r = &mut recs[i as usize];
        debug_assert!(r.live, "live record");
        debug_assert_eq!(r.first_child, NIL, "children go first");
        r.live = false;
        let (prev, next, parent) = (r.prev, r.next, r.parent);
        let gone = Gone {
            slot: r.slot,
            orig: r.orig,
            user_slot: r.user_slot,
        };
        if prev != NIL {
            recs[prev as usize].next = next;
        } else if parent != NIL {
            recs[parent as usize].first_child = next;
        }
        if next != NIL {
            recs[next as usize].prev = prev;
        }
        *self.entry(gone.slot) = NIL;
        self.vacant.push(i);
        gone
    }

    /// Moves the children of `i` to its parent (as the kernel does when a
    /// cap is deleted).
    #[inline(always)]
    pub fn hand_children_to_parent(&mut self, i: Idx) {
        let recs = &mut self.recs[..];
        let r = &mut recs[i as usize];
        let (parent, first) = (r.parent, core::mem::replace(&mut r.first_child, NIL));
        debug_assert!(
            parent != NIL || first == NIL,
            "an original's children have no parent to go to"
        );
        if first == NIL {
            return;
        }
        let mut last = first;
        let mut c = first;
        while c != NIL {
            let r = &mut recs[c as usize];
            r.parent = parent;
            last = c;
            c = r.next;
        }
        let old_first = core::mem::replace(&mut recs[parent as usize].first_child, first);
        recs[last as usize].next = old_first;
        if old_first != NIL {
            recs[old_first as usize].prev = last;
        }
    }

    /// Moves the record of `from` to the empty slot `to`.
    pub fn relocate(&mut self, i: Idx, from: Slot, to: Slot) {
        *self.entry(from) = NIL;
        let e = self.entry(to);
        debug_assert_eq!(*e, NIL);
        *e = i;
        self.get_mut(i).slot = to;
    }

    /// Removes every record derived from `i` and returns them (parents
    /// before their children).
    pub fn take_descendants(&mut self, i: Idx) -> Vec<Gone> {
        let mut ids = Vec::new();
        let mut c = core::mem::replace(&mut self.get_mut(i).first_child, NIL);
        let mut expanded = 0;
        loop {
            while c != NIL {
                ids.push(c);
                c = self.get(c).next;
            }
            match ids.get(expanded) {
                Some(&d) => {
                    c = self.get(d).first_child;
                    expanded += 1;
                }
                None => break,
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for d in ids {
            let r = &mut self.recs[d as usize];
            debug_assert!(r.live, "live record");
            r.live = false;
            let gone = Gone {
                slot: r.slot,
                orig: r.orig,
                user_slot: r.user_slot,
            };
            *self.entry(gone.slot) = NIL;
            self.vacant.push(d);
            out.push(gone);
        }
        out
    }
}
