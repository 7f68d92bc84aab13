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
use crate::layout::{CNodeRef, Slot, SlotRange};
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
#[cfg_attr(test, derive(PartialEq, Eq))]
pub(crate) struct CapTable {
    /// By `(k << l2_bits) | index` for slot `index` of level-2 CNode `k`:
    /// the record, or `NIL`.
    by_slot: Vec<Idx>,
    /// One bit per entry of `by_slot` (64 a word): the slot holds an
    /// original (so that a run of originals is checked a word at a time).
    originals: Vec<u64>,
    /// Likewise, the slot holds an untyped's original (whose copies are
    /// revocable, unlike other objects' copies).
    untyped_originals: Vec<u64>,
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
            originals: Vec::new(),
            untyped_originals: Vec::new(),
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

    /// The record of the cap in `slot`, which [`find`](Self::find) has
    /// found since the table last changed.
    #[inline(always)]
    pub fn find_known(&self, slot: Slot) -> Idx {
        let CNodeRef::Level2(k) = slot.cnode else {
            unreachable!("managed caps live in level-2 CNodes")
        };
        let i = self.by_slot[((k as usize) << self.l2_bits) | slot.index as usize];
        debug_assert_ne!(i, NIL);
        i
    }

    /// Checks that the `n` consecutive slots from `first` all hold managed
    /// caps; if not, the first that holds none (as [`find`](Self::find) of
    /// each in turn would tell).
    pub fn find_run(&self, first: Slot, n: u64) -> Result<(), Slot> {
        if n == 0 {
            return Ok(());
        }
        let Some(base) = self.key(first) else {
            return Err(first);
        };
        // Slots past the CNode's end hold no managed cap.
        let room = (1u64 << self.l2_bits) - first.index;
        let len = n.min(room) as usize;
        let end = (base + len).min(self.by_slot.len()).max(base);
        let held = self.by_slot.get(base..end).unwrap_or(&[]);
        let missing = match held.iter().position(|&i| i == NIL) {
            Some(p) => p as u64,
            None if end - base == len && n <= room => return Ok(()),
            None => (end - base) as u64,
        };
        Err(Slot {
            cnode: first.cnode,
            index: first.index + missing,
        })
    }

    /// [`find_run`](Self::find_run), and whether every one of the `n`
    /// caps is an original (`n > 0`; the sources a copy run may name): the
    /// originals' bits checked a word at a time.
    #[inline]
    pub fn find_originals_run(&self, first: Slot, n: u64) -> Result<bool, Slot> {
        if let Some(base) = self.key(first) {
            let room = (1u64 << self.l2_bits) - first.index;
            let end = base + n as usize;
            if n <= room && end <= self.by_slot.len() && Self::all_set(&self.originals, base, end) {
                return Ok(true);
            }
        }
        self.find_run(first, n).map(|()| false)
    }

    /// Whether bits `start .. end` (`start < end`, within `words`) are all
    /// set.
    #[inline]
    fn all_set(words: &[u64], start: usize, end: usize) -> bool {
        let (first, last) = (start / 64, (end - 1) / 64);
        let lo = !0u64 << (start % 64);
        let hi = !0u64 >> (63 - (end - 1) % 64);
        if first == last {
            let m = lo & hi;
            return words[first] & m == m;
        }
        words[first] & lo == lo && words[first + 1..last].iter().all(|&w| w == !0) && words[last] & hi == hi
    }

    /// Marks the slot of key `key` as holding an original (an untyped's
    /// when `untyped`) or not.
    #[inline(always)]
    fn set_original(&mut self, key: usize, on: bool, untyped: bool) {
        let (w, bit) = (key / 64, 1u64 << (key % 64));
        if on {
            self.originals[w] |= bit;
            if untyped {
                self.untyped_originals[w] |= bit;
            }
        } else {
            self.originals[w] &= !bit;
            self.untyped_originals[w] &= !bit;
        }
    }

    /// Whether any of the `n > 0` slots from key `first` (within `by_slot`)
    /// holds an untyped's original, checked a word at a time.
    pub fn any_untyped_original(&self, first: u64, n: u64) -> bool {
        let (start, end) = (first as usize, (first + n) as usize);
        if end > self.by_slot.len() {
            return true;
        }
        let (a, b) = (start / 64, (end - 1) / 64);
        let lo = !0u64 << (start % 64);
        let hi = !0u64 >> (63 - (end - 1) % 64);
        let w = &self.untyped_originals;
        if a == b {
            return w[a] & lo & hi != 0;
        }
        w[a] & lo != 0 || w[a + 1..b].iter().any(|&x| x != 0) || w[b] & hi != 0
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
        self.originals.resize(n.div_ceil(64), 0);
        self.untyped_originals.resize(n.div_ceil(64), 0);
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
        if rec.parent == NIL {
            let untyped = rec.ty == ObjectType::Untyped;
            self.set_original(Self::known_key(self.l2_bits, rec.slot), true, untyped);
        }
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

    /// Records a copy, badge `badge`, of the cap of record `si` into the
    /// empty slot `d` (a reserved slot if `user_slot`), as the kernel's
    /// `cteInsert` links it: under `si` if that is revocable, else under its
    /// parent; revocable if an untyped, or a badgeable cap whose badge
    /// differs. Counts it on the object's original. Returns its index (the
    /// one [`insert`](Self::insert) would take).
    #[inline(always)]
    pub fn insert_copy(&mut self, si: Idx, d: Slot, badge: u64, user_slot: bool) -> Idx {
        let s = &self.recs[si as usize];
        debug_assert!(s.live, "live record");
        let parent = if s.revocable {
            si
        } else {
            debug_assert_ne!(s.parent, NIL, "a derived cap has a parent");
            s.parent
        };
        // `cteInsert`: a derived cap is revocable if it is an untyped, or an
        // endpoint/notification whose badge differs from its source's.
        let revocable = s.ty == ObjectType::Untyped || (s.ty.badgeable() && badge != s.badge);
        let (object, ty, orig) = (s.object, s.ty, s.orig);
        let Some(i) = self.vacant.pop() else {
            let i = self.insert(CapRecord {
                slot: d,
                object,
                ty,
                orig,
                parent,
                first_child: NIL,
                prev: NIL,
                next: NIL,
                copies: 0,
                revocable,
                badge,
                user_slot,
                mark: false,
                live: true,
            });
            self.recs[orig as usize].copies += 1;
            return i;
        };
        let e = self.entry(d);
        debug_assert_eq!(*e, NIL, "slot already holds a managed cap");
        *e = i;
        let recs = &mut self.recs[..];
        let first = core::mem::replace(&mut recs[parent as usize].first_child, i);
        if first != NIL {
            recs[first as usize].prev = i;
        }
        // A vacant entry is overwritten in place, field by field.
        let r = &mut recs[i as usize];
        debug_assert!(!r.live, "vacant entry");
        r.slot = d;
        r.object = object;
        r.ty = ty;
        r.orig = orig;
        r.parent = parent;
        r.first_child = NIL;
        r.prev = NIL;
        r.next = first;
        r.copies = 0;
        r.revocable = revocable;
        r.badge = badge;
        r.user_slot = user_slot;
        r.mark = false;
        r.live = true;
        recs[orig as usize].copies += 1;
        i
    }

    /// [`insert_copy`](Self::insert_copy) of the cap in `srcs[j]` into
    /// `dests.slot(j)`, in order, with the source's badge and not into a
    /// reserved slot: every source holds a managed cap and every destination
    /// is an empty level-2 slot of the layout (`srcs` yields `dests.len`
    /// slots). The table's parts are borrowed apart so that the loop keeps
    /// them in registers.
    pub fn insert_copies(&mut self, srcs: impl Iterator<Item = Slot>, dests: SlotRange) {
        if dests.len == 0 {
            return;
        }
        let CNodeRef::Level2(k) = dests.cnode else {
            unreachable!("managed caps live in level-2 CNodes")
        };
        let l2 = self.l2_bits;
        let dkey = ((k as usize) << l2) | dests.start as usize;
        if dkey + dests.len as usize > self.by_slot.len() {
            self.extend_to(dkey + dests.len as usize - 1);
        }
        let n = dests.len as usize;
        let mut srcs = srcs.map(|src| {
            let CNodeRef::Level2(sk) = src.cnode else {
                unreachable!("managed caps live in level-2 CNodes")
            };
            ((sk as usize) << l2) | src.index as usize
        });
        let slot = |j: usize| Slot {
            cnode: dests.cnode,
            index: dests.start + j as u64,
        };
        // First into vacant entries (last first, as `insert` pops them),
        // with the arena as a slice; then into fresh ones.
        let reuse = self.vacant.len().min(n);
        let keep = self.vacant.len() - reuse;
        {
            let by_slot = &mut self.by_slot[..];
            let recs = &mut self.recs[..];
            let reused = self.vacant[keep..].iter().rev();
            for (j, (skey, &i)) in srcs.by_ref().take(reuse).zip(reused).enumerate() {
                let rec = Self::link_copy(by_slot, recs, skey, dkey + j, slot(j), i);
                debug_assert!(!recs[i as usize].live, "vacant entry");
                recs[i as usize] = rec;
            }
        }
        self.vacant.truncate(keep);
        for (j, skey) in (reuse..n).zip(srcs) {
            let i = Self::fresh_index(self.recs.len());
            let rec = Self::link_copy(&mut self.by_slot, &mut self.recs, skey, dkey + j, slot(j), i);
            self.recs.push(rec);
        }
    }

    /// [`insert_copies`](Self::insert_copies) with the `dests.len`
    /// consecutive slots from `srcs_first` as the sources (which
    /// [`find_run`](Self::find_run) has accepted): the same records, links
    /// and arena entries. The destinations' table entries are written
    /// first, then the records, reading the sources' entries as a slice.
    pub fn insert_copies_run(&mut self, srcs_first: Slot, dests: SlotRange) {
        if dests.len == 0 {
            return;
        }
        let (CNodeRef::Level2(sk), CNodeRef::Level2(k)) = (srcs_first.cnode, dests.cnode) else {
            unreachable!("managed caps live in level-2 CNodes")
        };
        let l2 = self.l2_bits;
        let n = dests.len as usize;
        let skey = ((sk as usize) << l2) | srcs_first.index as usize;
        let dkey = ((k as usize) << l2) | dests.start as usize;
        if dkey + n > self.by_slot.len() {
            self.extend_to(dkey + n - 1);
        }
        let reuse = self.vacant.len().min(n);
        let keep = self.vacant.len() - reuse;
        let fresh = self.recs.len();
        if n > reuse {
            Self::fresh_index(fresh + (n - reuse) - 1);
        }
        let CapTable {
            by_slot, recs, vacant, ..
        } = self;
        // The arena entries, as `insert` would take them: vacant ones (last
        // first), then fresh ones.
        {
            let d = &mut by_slot[dkey..dkey + n];
            let (d_reused, d_fresh) = d.split_at_mut(reuse);
            for (e, &i) in d_reused.iter_mut().zip(vacant[keep..].iter().rev()) {
                debug_assert_eq!(*e, NIL, "slot already holds a managed cap");
                *e = i;
            }
            for (e, i) in d_fresh.iter_mut().zip(fresh as Idx..) {
                debug_assert_eq!(*e, NIL, "slot already holds a managed cap");
                *e = i;
            }
        }
        vacant.truncate(keep);
        let (by_slot, src) = (&by_slot[..], skey..skey + n);
        let slot = |j: usize| Slot {
            cnode: dests.cnode,
            index: dests.start + j as u64,
        };
        let (srcs, ids) = (&by_slot[src], &by_slot[dkey..dkey + n]);
        {
            let recs = &mut recs[..];
            for (j, (&si, &i)) in srcs[..reuse].iter().zip(&ids[..reuse]).enumerate() {
                let rec = Self::copy_record(recs, si, i, slot(j));
                debug_assert!(!recs[i as usize].live, "vacant entry");
                recs[i as usize] = rec;
            }
        }
        for (j, (&si, &i)) in srcs.iter().zip(ids).enumerate().skip(reuse) {
            let rec = Self::copy_record(recs, si, i, slot(j));
            debug_assert_eq!(recs.len(), i as usize);
            recs.push(rec);
        }
    }

    /// [`link_copy`](Self::link_copy) of source record `si` into arena
    /// entry `i`, with the destination's table entry already written.
    #[inline(always)]
    fn copy_record(recs: &mut [CapRecord], si: Idx, i: Idx, slot: Slot) -> CapRecord {
        let s = &mut recs[si as usize];
        debug_assert!(s.live, "live record");
        let (object, ty, orig, badge) = (s.object, s.ty, s.orig, s.badge);
        let revocable = ty == ObjectType::Untyped;
        // Linked first under its parent: the source if revocable (taking
        // the source's record as it is), else the source's parent.
        let (parent, first) = if s.revocable {
            let first = core::mem::replace(&mut s.first_child, i);
            if si == orig {
                s.copies += 1;
            } else {
                recs[orig as usize].copies += 1;
            }
            (si, first)
        } else {
            debug_assert_ne!(s.parent, NIL, "a derived cap has a parent");
            let parent = s.parent;
            let p = &mut recs[parent as usize];
            let first = core::mem::replace(&mut p.first_child, i);
            if parent == orig {
                p.copies += 1;
            } else {
                recs[orig as usize].copies += 1;
            }
            (parent, first)
        };
        if first != NIL {
            recs[first as usize].prev = i;
        }
        CapRecord {
            slot,
            object,
            ty,
            orig,
            parent,
            first_child: NIL,
            prev: NIL,
            next: first,
            copies: 0,
            revocable,
            badge,
            user_slot: false,
            mark: false,
            live: true,
        }
    }

    /// Books copy `i` (a vacant or fresh arena entry) of the record at
    /// table key `skey` into the empty slot `slot` at table key `dkey`, with
    /// the source's badge and not into a reserved slot: the table entry, the
    /// link under its parent, its original's count. Returns its record.
    #[inline(always)]
    fn link_copy(
        by_slot: &mut [Idx],
        recs: &mut [CapRecord],
        skey: usize,
        dkey: usize,
        slot: Slot,
        i: Idx,
    ) -> CapRecord {
        let si = by_slot[skey];
        let s = &recs[si as usize];
        debug_assert!(s.live, "live record");
        let parent = if s.revocable {
            si
        } else {
            debug_assert_ne!(s.parent, NIL, "a derived cap has a parent");
            s.parent
        };
        // `cteInsert` with the source's own badge: revocable only if an
        // untyped.
        let revocable = s.ty == ObjectType::Untyped;
        let (object, ty, orig, badge) = (s.object, s.ty, s.orig, s.badge);
        let e = &mut by_slot[dkey];
        debug_assert_eq!(*e, NIL, "slot already holds a managed cap");
        *e = i;
        let first = core::mem::replace(&mut recs[parent as usize].first_child, i);
        if first != NIL {
            recs[first as usize].prev = i;
        }
        recs[orig as usize].copies += 1;
        CapRecord {
            slot,
            object,
            ty,
            orig,
            parent,
            first_child: NIL,
            prev: NIL,
            next: first,
            copies: 0,
            revocable,
            badge,
            user_slot: false,
            mark: false,
            live: true,
        }
    }

    /// Removes the copies (not originals, each named once) in `slots`, in
    /// order, as [`hand_children_to_parent`](Self::hand_children_to_parent)
    /// then [`remove`](Self::remove) of each would, taking one from its
    /// original's copies; `gone` gets what is left of each.
    pub fn remove_copies(&mut self, slots: &[Slot], mut gone: impl FnMut(Gone)) {
        let l2 = self.l2_bits;
        let CapTable {
            by_slot, recs, vacant, ..
        } = self;
        for &slot in slots {
            let CNodeRef::Level2(k) = slot.cnode else {
                unreachable!("managed caps live in level-2 CNodes")
            };
            let e = &mut by_slot[((k as usize) << l2) | slot.index as usize];
            let i = core::mem::replace(e, NIL);
            debug_assert_ne!(i, NIL);
            let (orig, user_slot) = Self::unlink_copy(recs, i);
            vacant.push(i);
            gone(Gone { slot, orig, user_slot });
        }
    }

    /// Checks that the `n` consecutive slots from `first` all hold managed
    /// copies (not originals); if not, the first that does not, and whether
    /// it holds an original (as a check of each in turn with
    /// [`find`](Self::find) and the record's parent would tell).
    #[inline(never)]
    pub fn check_copies_run(&self, first: Slot, n: u64) -> Result<(), (Slot, bool)> {
        if n == 0 {
            return Ok(());
        }
        let Some(base) = self.key(first) else {
            return Err((first, false));
        };
        // Slots past the CNode's end hold no managed cap.
        let room = (1u64 << self.l2_bits) - first.index;
        let len = n.min(room) as usize;
        let end = (base + len).min(self.by_slot.len()).max(base);
        let held = self.by_slot.get(base..end).unwrap_or(&[]);
        let recs = &self.recs[..];
        let bad = held.iter().position(|&i| i == NIL || recs[i as usize].parent == NIL);
        let (at, original) = match bad {
            Some(p) => (p as u64, held[p] != NIL),
            None if end - base == len && n <= room => return Ok(()),
            None => ((end - base) as u64, false),
        };
        Err((
            Slot {
                cnode: first.cnode,
                index: first.index + at,
            },
            original,
        ))
    }

    /// [`remove_copies`](Self::remove_copies) of the `n` consecutive slots
    /// from `first`, which [`check_copies_run`](Self::check_copies_run) has
    /// accepted since the table last changed. `user` gets the offset (from
    /// `first`) of each slot that was a reserved slot, in order.
    #[inline(never)]
    pub fn remove_copies_run(&mut self, first: Slot, n: u64, mut user: impl FnMut(u64)) {
        if n == 0 {
            return;
        }
        let CNodeRef::Level2(k) = first.cnode else {
            unreachable!("managed caps live in level-2 CNodes")
        };
        let base = ((k as usize) << self.l2_bits) | first.index as usize;
        let CapTable {
            by_slot, recs, vacant, ..
        } = self;
        let run = &mut by_slot[base..base + n as usize];
        // The entries become vacant in the order `remove_copies` pushes them.
        vacant.extend_from_slice(run);
        let recs = &mut recs[..];
        for (j, &i) in run.iter().enumerate() {
            debug_assert_ne!(i, NIL);
            let r = &mut recs[i as usize];
            debug_assert!(r.live && !r.mark, "live unmarked record");
            debug_assert_ne!(r.parent, NIL, "a copy");
            if r.first_child != NIL || r.user_slot {
                // Children to hand on, or the caller's slot.
                if Self::unlink_copy(recs, i).1 {
                    user(j as u64);
                }
                continue;
            }
            r.live = false;
            let (parent, orig, prev, next) = (r.parent, r.orig, r.prev, r.next);
            if parent == orig {
                // A copy of an original: one record to update.
                let p = &mut recs[parent as usize];
                p.copies -= 1;
                if prev == NIL {
                    p.first_child = next;
                } else {
                    recs[prev as usize].next = next;
                }
                if next != NIL {
                    recs[next as usize].prev = prev;
                }
            } else {
                Self::unlink_sibling(recs, parent, prev, next);
                recs[orig as usize].copies -= 1;
            }
        }
        run.fill(NIL);
    }

    /// Marks copy `i` removed: its children go to its parent (first), then it
    /// leaves its parent's children and its original's count. Returns its
    /// original and whether its slot was a reserved slot. (The table entry
    /// and the vacant list are the caller's.)
    #[inline(always)]
    fn unlink_copy(recs: &mut [CapRecord], i: Idx) -> (Idx, bool) {
        let r = &mut recs[i as usize];
        debug_assert!(r.live, "live record");
        debug_assert_ne!(r.parent, NIL, "a copy");
        r.live = false;
        r.mark = false;
        let (parent, orig, user_slot) = (r.parent, r.orig, r.user_slot);
        let first = core::mem::replace(&mut r.first_child, NIL);
        let (prev, next) = (r.prev, r.next);
        if first != NIL {
            Self::adopt_children(recs, parent, first);
            // The hand-off may have linked it after them.
            let r = &recs[i as usize];
            Self::unlink_sibling(recs, parent, r.prev, r.next);
        } else {
            Self::unlink_sibling(recs, parent, prev, next);
        }
        recs[orig as usize].copies -= 1;
        (orig, user_slot)
    }

    /// Puts the chain of siblings from `first` at the front of `parent`'s
    /// children.
    #[cold]
    #[inline(never)]
    fn adopt_children(recs: &mut [CapRecord], parent: Idx, first: Idx) {
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

    /// Takes a child of `parent` with siblings `prev` and `next` out of the
    /// chain.
    #[inline(always)]
    fn unlink_sibling(recs: &mut [CapRecord], parent: Idx, prev: Idx, next: Idx) {
        if prev != NIL {
            recs[prev as usize].next = next;
        } else {
            recs[parent as usize].first_child = next;
        }
        if next != NIL {
            recs[next as usize].prev = prev;
        }
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
        r.mark = false;
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
        if parent == NIL {
            self.set_original(Self::known_key(self.l2_bits, gone.slot), false, false);
        }
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
        let r = self.get_mut(i);
        r.slot = to;
        if r.parent == NIL {
            let untyped = r.ty == ObjectType::Untyped;
            self.set_original(Self::known_key(self.l2_bits, from), false, false);
            self.set_original(Self::known_key(self.l2_bits, to), true, untyped);
        }
    }

    /// The key of `slot`, a level-2 slot of the layout.
    #[inline(always)]
    fn known_key(l2_bits: u8, slot: Slot) -> usize {
        let CNodeRef::Level2(k) = slot.cnode else {
            unreachable!("managed caps live in level-2 CNodes")
        };
        ((k as usize) << l2_bits) | slot.index as usize
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

impl CapTable {
    /// Checks the table's invariants: every table entry names a live record
    /// in that slot and every live record is in the table; the children
    /// chains are doubly linked and name their parent; a record's original
    /// is an original (its own for an original) of the same object; each
    /// original's `copies` is the number of other records naming it; the
    /// vacant entries are the entries not in use; no record is marked.
    pub fn check(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        let mut live = 0usize;
        for (key, &i) in self.by_slot.iter().enumerate() {
            if i == NIL {
                continue;
            }
            let r = self.recs.get(i as usize).ok_or(format!("key {key}: no record {i}"))?;
            if !r.live || self.key(r.slot) != Some(key) {
                return Err(format!("key {key}: record {i} is {r:?}"));
            }
            live += 1;
        }
        let mut copies = alloc::vec![0u64; self.recs.len()];
        for (i, r) in self.recs.iter().enumerate().filter(|(_, r)| r.live) {
            let i = i as Idx;
            if self.find(r.slot) != Some(i) {
                return Err(format!("record {i} ({:?}) not in the table", r.slot));
            }
            if r.mark {
                return Err(format!("record {i} marked"));
            }
            let o = self.recs.get(r.orig as usize).filter(|o| o.live);
            let Some(o) = o else {
                return Err(format!("record {i}: original {} not live", r.orig));
            };
            if o.parent != NIL || o.orig != r.orig || o.object != r.object || o.ty != r.ty {
                return Err(format!("record {i}: bad original {}", r.orig));
            }
            if r.parent == NIL {
                if r.orig != i || r.prev != NIL || r.next != NIL {
                    return Err(format!("original {i}: {r:?}"));
                }
            } else {
                copies[r.orig as usize] += 1;
                let p = self.recs.get(r.parent as usize).filter(|p| p.live);
                let Some(p) = p else {
                    return Err(format!("record {i}: parent {} not live", r.parent));
                };
                if r.prev == NIL && p.first_child != i {
                    return Err(format!("record {i}: not its parent's first child"));
                }
            }
            if r.prev != NIL && self.recs[r.prev as usize].next != i {
                return Err(format!("record {i}: prev {} does not lead back", r.prev));
            }
            if r.next != NIL {
                let n = &self.recs[r.next as usize];
                if !n.live || n.prev != i || n.parent != r.parent {
                    return Err(format!("record {i}: next {} does not lead back", r.next));
                }
            }
            if r.first_child != NIL {
                let c = &self.recs[r.first_child as usize];
                if !c.live || c.parent != i || c.prev != NIL {
                    return Err(format!("record {i}: bad first child {}", r.first_child));
                }
            }
        }
        for (i, r) in self.recs.iter().enumerate().filter(|(_, r)| r.live && r.parent == NIL) {
            if r.copies != copies[i] {
                return Err(format!(
                    "original {i}: {} copies booked, {} recorded",
                    r.copies, copies[i]
                ));
            }
        }
        for (key, &i) in self.by_slot.iter().enumerate() {
            let original = i != NIL && self.recs[i as usize].parent == NIL;
            if (self.originals[key / 64] >> (key % 64)) & 1 != original as u64 {
                return Err(format!("key {key}: original bit is not {original}"));
            }
            let untyped = original && self.recs[i as usize].ty == ObjectType::Untyped;
            if (self.untyped_originals[key / 64] >> (key % 64)) & 1 != untyped as u64 {
                return Err(format!("key {key}: untyped original bit is not {untyped}"));
            }
        }
        if self.originals.len() != self.by_slot.len().div_ceil(64)
            || self.untyped_originals.len() != self.originals.len()
        {
            return Err("originals' bits do not match the table".into());
        }
        let in_use = self.recs.iter().filter(|r| r.live).count();
        if in_use != live || in_use + self.vacant.len() != self.recs.len() {
            return Err(format!(
                "{in_use} records in use, {live} in the table, {} vacant",
                self.vacant.len()
            ));
        }
        if self.vacant.iter().any(|&v| self.recs[v as usize].live) {
            return Err("a vacant entry is in use".into());
        }
        Ok(())
    }
}
