//! Slot addressing of the two-level CSpace: pure functions from a
//! [`Slot`] to the capability pointer that invokes it and to the
//! `(root, index, depth)` path that CNode invocations take.
//!
//! # The scheme
//!
//! Parameters: `R` = radix of the boot CNode (`initThreadCNodeSizeBits`, 12),
//! `L1` = radix of the level-1 CNode (default 8), `L2` = radix of each
//! level-2 CNode (default 12), with `R <= L2` and `L1 + L2 <= 64`.
//!
//! ```text
//!  TCB CSpace root: cap to L1 with guard 0 of size 64 - L1 - L2 (44)
//!    L1 (2^L1 slots)
//!      slot 0  -> boot CNode, minted with guard 0 of size L2 - R (0)
//!      slot k  -> level-2 CNode k (guard 0, radix L2), k >= 1
//!  cptr = (k << L2) | index       resolves at depth 64 to slot `index` of
//!                                  level-2 CNode k (k = 0: the boot CNode)
//! ```
//!
//! The boot CNode is level-2 CNode number 0, so every pointer the root task
//! used before (a boot CNode index `i < 2^R`) keeps meaning the same slot:
//! `(0 << L2) | i == i`. The switch is made once, at start-up, by
//! `TCB_SetSpace` on the root task's own TCB.
//!
//! CNode invocations name slots with explicit paths:
//! - boot CNode slot `i`: root `seL4_CapInitThreadCNode` (its own guard is
//!   `64 - R`), index `i`, depth 64; valid before and after the switch;
//! - level-2 CNode `k >= 1`, slot `j`: root = the L1 cap (kept, guard 0, in a
//!   boot CNode slot), index `(k << L2) | j`, depth `L1 + L2`;
//! - L1 slot `k`: root = the L1 cap, index `k`, depth `L1`.
//!
//! `Untyped_Retype` names the destination CNode: the boot CNode as
//! `(seL4_CapInitThreadCNode, depth 0)`, level-2 CNode `k` as
//! `(L1 cap, index k, depth L1)`, L1 itself as `(L1 cap, depth 0)`.

use crate::types::{CPtr, WORD_BITS};

/// A CNode of the managed CSpace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CNodeRef {
    /// The level-1 CNode: holds the level-2 CNode caps (and, in slot 0, the
    /// boot CNode). Its slots are managed by the CSpace itself.
    Level1,
    /// Level-2 CNode `k` (its index in L1); `Level2(0)` is the boot CNode.
    Level2(u32),
}

impl CNodeRef {
    /// The boot CNode (the root task's original CSpace root).
    pub const ROOT: CNodeRef = CNodeRef::Level2(0);
}

/// One capability slot: a CNode and an index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// The CNode holding the slot.
    pub cnode: CNodeRef,
    /// Index of the slot in that CNode.
    pub index: u64,
}

impl Slot {
    /// Slot `index` of the boot CNode.
    pub const fn root(index: u64) -> Self {
        Slot {
            cnode: CNodeRef::ROOT,
            index,
        }
    }
}

/// `len` consecutive slots of one CNode, from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotRange {
    /// The CNode holding the slots.
    pub cnode: CNodeRef,
    /// Index of the first slot.
    pub start: u64,
    /// Number of slots.
    pub len: u64,
}

impl SlotRange {
    /// The `i`-th slot of the range.
    pub fn slot(&self, i: u64) -> Slot {
        debug_assert!(i < self.len);
        Slot {
            cnode: self.cnode,
            index: self.start + i,
        }
    }
    /// The slots, in order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..self.len).map(move |i| self.slot(i))
    }
}

/// The `(root, index, depth)` triple CNode invocations use to name a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapPath {
    /// The CNode cap invoked, as a pointer in the thread's CSpace.
    pub root: CPtr,
    /// Index resolved from `root`.
    pub index: u64,
    /// Number of bits of `index` to resolve.
    pub depth: u8,
}

/// Destination of `Untyped_Retype`: `count` slots from `offset` of the CNode
/// found at `(root, node_index, node_depth)` (`node_depth == 0`: `root`
/// itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetypeDest {
    /// CNode cap the lookup starts from.
    pub root: CPtr,
    /// Index of the destination CNode's cap, from `root`.
    pub node_index: u64,
    /// Bits of `node_index` to resolve; 0 means `root` itself.
    pub node_depth: u8,
    /// First slot in the destination CNode.
    pub offset: u64,
    /// Number of objects (and slots).
    pub count: u64,
}

/// Why a set of layout parameters cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The boot CNode is larger than a level-2 CNode (`R > L2`): its pointers
    /// would not fit under the level-2 index.
    RootLargerThanLevel2,
    /// `L1 + L2` exceeds the word, or one of the radices is 0.
    BadRadix,
    /// The boot CNode has no slot with that index.
    BadRootSlot,
}

/// The parameters of the two-level CSpace (see the [module](self) doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Radix of the boot CNode (`R`).
    pub root_bits: u8,
    /// Radix of the level-1 CNode (`L1`).
    pub l1_bits: u8,
    /// Radix of every level-2 CNode (`L2`).
    pub l2_bits: u8,
    /// Boot CNode slot holding the boot CNode's own cap
    /// (`seL4_CapInitThreadCNode`).
    pub root_cnode_slot: u64,
    /// Boot CNode slot holding the L1 cap.
    pub l1_slot: u64,
}

impl Layout {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.root_bits == 0 || self.l1_bits == 0 || self.l2_bits == 0 {
            return Err(LayoutError::BadRadix);
        }
        if self.l1_bits as u32 + self.l2_bits as u32 > WORD_BITS as u32 || self.root_bits >= WORD_BITS {
            return Err(LayoutError::BadRadix);
        }
        if self.root_bits > self.l2_bits {
            return Err(LayoutError::RootLargerThanLevel2);
        }
        let n = 1u64 << self.root_bits;
        if self.root_cnode_slot >= n || self.l1_slot >= n || self.root_cnode_slot == self.l1_slot {
            return Err(LayoutError::BadRootSlot);
        }
        Ok(())
    }

    /// Guard size of the TCB's CSpace root (the L1 cap): `64 - L1 - L2`,
    /// guard value 0. This is what `TCB_SetSpace` must install.
    pub const fn tcb_root_guard_bits(&self) -> u8 {
        WORD_BITS - self.l1_bits - self.l2_bits
    }

    /// Guard size of the boot CNode cap minted into L1 slot 0: `L2 - R`,
    /// guard value 0.
    pub const fn root_copy_guard_bits(&self) -> u8 {
        self.l2_bits - self.root_bits
    }

    /// Number of slots of a CNode.
    #[inline]
    pub const fn capacity(&self, cnode: CNodeRef) -> u64 {
        match cnode {
            CNodeRef::Level1 => 1u64 << self.l1_bits,
            CNodeRef::Level2(0) => 1u64 << self.root_bits,
            CNodeRef::Level2(_) => 1u64 << self.l2_bits,
        }
    }

    /// Number of level-2 CNodes the layout can address (boot CNode included).
    pub const fn max_level2(&self) -> u64 {
        1u64 << self.l1_bits
    }

    /// Whether the slot exists in this layout.
    #[inline]
    pub fn contains(&self, slot: Slot) -> bool {
        match slot.cnode {
            CNodeRef::Level2(k) if (k as u64) >= self.max_level2() => false,
            c => slot.index < self.capacity(c),
        }
    }

    /// The pointer that invokes the cap in `slot` (depth 64 through the
    /// TCB's CSpace root): `(k << L2) | index`. `None` for L1 slots (their
    /// caps are CNodes that a full-depth lookup descends into) and for slots
    /// outside the layout.
    #[inline]
    pub fn cptr(&self, slot: Slot) -> Option<CPtr> {
        if !self.contains(slot) {
            return None;
        }
        match slot.cnode {
            CNodeRef::Level1 => None,
            CNodeRef::Level2(k) => Some(CPtr(((k as u64) << self.l2_bits) | slot.index)),
        }
    }

    /// Inverse of [`Layout::cptr`] for pointers below `2^(L1 + L2)`.
    pub fn slot_of(&self, cptr: CPtr) -> Option<Slot> {
        let k = cptr.0 >> self.l2_bits;
        let index = cptr.0 & ((1u64 << self.l2_bits) - 1);
        let k = u32::try_from(k).ok()?;
        let slot = Slot {
            cnode: CNodeRef::Level2(k),
            index,
        };
        self.contains(slot).then_some(slot)
    }

    /// Pointer of the boot CNode cap.
    pub const fn root_cnode_cptr(&self) -> CPtr {
        CPtr(self.root_cnode_slot)
    }

    /// Pointer of the L1 cap (kept in a boot CNode slot).
    pub const fn l1_cptr(&self) -> CPtr {
        CPtr(self.l1_slot)
    }

    /// Depth of a full path through L1 (`L1 + L2`).
    pub const fn level2_depth(&self) -> u8 {
        self.l1_bits + self.l2_bits
    }

    /// The path that CNode invocations use for `slot` (see the module doc).
    #[inline]
    pub fn path(&self, slot: Slot) -> Option<CapPath> {
        let (root, index, depth, ok) = match slot.cnode {
            CNodeRef::Level2(0) => (
                self.root_cnode_cptr(),
                slot.index,
                WORD_BITS,
                slot.index < 1u64 << self.root_bits,
            ),
            CNodeRef::Level2(k) => (
                self.l1_cptr(),
                ((k as u64) << self.l2_bits) | slot.index,
                self.level2_depth(),
                (k as u64) < self.max_level2() && slot.index < 1u64 << self.l2_bits,
            ),
            CNodeRef::Level1 => (self.l1_cptr(), slot.index, self.l1_bits, slot.index < self.max_level2()),
        };
        debug_assert_eq!(ok, self.contains(slot));
        ok.then_some(CapPath { root, index, depth })
    }

    /// [`path`](Self::path) of a slot known to be of the layout (checked in
    /// debug builds only).
    #[inline]
    pub(crate) fn known_path(&self, slot: Slot) -> CapPath {
        debug_assert!(self.contains(slot), "{slot:?} outside the layout");
        match slot.cnode {
            CNodeRef::Level2(0) => CapPath {
                root: self.root_cnode_cptr(),
                index: slot.index,
                depth: WORD_BITS,
            },
            CNodeRef::Level2(k) => CapPath {
                root: self.l1_cptr(),
                index: ((k as u64) << self.l2_bits) | slot.index,
                depth: self.level2_depth(),
            },
            CNodeRef::Level1 => CapPath {
                root: self.l1_cptr(),
                index: slot.index,
                depth: self.l1_bits,
            },
        }
    }

    /// The `Untyped_Retype` destination for the slots of `range`.
    pub fn retype_dest(&self, range: SlotRange) -> Option<RetypeDest> {
        if range.len == 0 || range.start.checked_add(range.len)? > self.capacity(range.cnode) {
            return None;
        }
        if let CNodeRef::Level2(k) = range.cnode {
            if k as u64 >= self.max_level2() {
                return None;
            }
        }
        let (root, node_index, node_depth) = match range.cnode {
            CNodeRef::Level2(0) => (self.root_cnode_cptr(), 0, 0),
            CNodeRef::Level2(k) => (self.l1_cptr(), k as u64, self.l1_bits),
            CNodeRef::Level1 => (self.l1_cptr(), 0, 0),
        };
        Some(RetypeDest {
            root,
            node_index,
            node_depth,
            offset: range.start,
            count: range.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            root_bits: 12,
            l1_bits: 8,
            l2_bits: 12,
            root_cnode_slot: 2,
            l1_slot: 100,
        }
    }

    #[test]
    fn guards() {
        let l = layout();
        l.validate().unwrap();
        assert_eq!(l.tcb_root_guard_bits(), 44);
        assert_eq!(l.root_copy_guard_bits(), 0);
        assert_eq!(l.level2_depth(), 20);
        let l = Layout {
            l2_bits: 14,
            ..layout()
        };
        assert_eq!(l.root_copy_guard_bits(), 2);
        assert_eq!(l.tcb_root_guard_bits(), 42);
    }

    #[test]
    fn validate_refuses() {
        assert_eq!(
            Layout {
                root_bits: 13,
                ..layout()
            }
            .validate(),
            Err(LayoutError::RootLargerThanLevel2)
        );
        assert_eq!(
            Layout {
                l1_bits: 53,
                ..layout()
            }
            .validate(),
            Err(LayoutError::BadRadix)
        );
        assert_eq!(Layout { l1_bits: 0, ..layout() }.validate(), Err(LayoutError::BadRadix));
        assert_eq!(
            Layout {
                l1_slot: 4096,
                ..layout()
            }
            .validate(),
            Err(LayoutError::BadRootSlot)
        );
        assert_eq!(
            Layout { l1_slot: 2, ..layout() }.validate(),
            Err(LayoutError::BadRootSlot)
        );
    }

    #[test]
    fn cptrs() {
        let l = layout();
        // Boot CNode slots keep their old pointers.
        for i in [0u64, 1, 2, 100, 4095] {
            assert_eq!(l.cptr(Slot::root(i)), Some(CPtr(i)));
            assert_eq!(l.slot_of(CPtr(i)), Some(Slot::root(i)));
        }
        let s = Slot {
            cnode: CNodeRef::Level2(3),
            index: 0x123,
        };
        assert_eq!(l.cptr(s), Some(CPtr(0x3123)));
        assert_eq!(l.slot_of(CPtr(0x3123)), Some(s));
        let s = Slot {
            cnode: CNodeRef::Level2(255),
            index: 4095,
        };
        assert_eq!(l.cptr(s), Some(CPtr(0xff_fff)));
        assert_eq!(
            l.cptr(Slot {
                cnode: CNodeRef::Level2(256),
                index: 0
            }),
            None
        );
        assert_eq!(
            l.cptr(Slot {
                cnode: CNodeRef::Level2(1),
                index: 4096
            }),
            None
        );
        assert_eq!(
            l.cptr(Slot {
                cnode: CNodeRef::Level1,
                index: 1
            }),
            None
        );
        assert_eq!(l.slot_of(CPtr(1 << 20)), None);
        // With a larger level 2, boot-CNode indices beyond 2^R do not exist.
        let l = Layout {
            l2_bits: 14,
            ..layout()
        };
        assert_eq!(l.cptr(Slot::root(4096)), None);
        assert_eq!(l.slot_of(CPtr(4096)), None);
        assert_eq!(
            l.cptr(Slot {
                cnode: CNodeRef::Level2(1),
                index: 5000
            }),
            Some(CPtr((1 << 14) | 5000))
        );
    }

    #[test]
    fn paths() {
        let l = layout();
        assert_eq!(
            l.path(Slot::root(7)),
            Some(CapPath {
                root: CPtr(2),
                index: 7,
                depth: 64
            })
        );
        assert_eq!(
            l.path(Slot {
                cnode: CNodeRef::Level2(5),
                index: 9
            }),
            Some(CapPath {
                root: CPtr(100),
                index: (5 << 12) | 9,
                depth: 20
            })
        );
        assert_eq!(
            l.path(Slot {
                cnode: CNodeRef::Level1,
                index: 5
            }),
            Some(CapPath {
                root: CPtr(100),
                index: 5,
                depth: 8
            })
        );
        assert_eq!(
            l.path(Slot {
                cnode: CNodeRef::Level1,
                index: 256
            }),
            None
        );
    }

    #[test]
    fn retype_dests() {
        let l = layout();
        let r = SlotRange {
            cnode: CNodeRef::ROOT,
            start: 10,
            len: 4,
        };
        assert_eq!(
            l.retype_dest(r),
            Some(RetypeDest {
                root: CPtr(2),
                node_index: 0,
                node_depth: 0,
                offset: 10,
                count: 4
            })
        );
        let r = SlotRange {
            cnode: CNodeRef::Level2(7),
            start: 4000,
            len: 96,
        };
        assert_eq!(
            l.retype_dest(r),
            Some(RetypeDest {
                root: CPtr(100),
                node_index: 7,
                node_depth: 8,
                offset: 4000,
                count: 96
            })
        );
        let r = SlotRange {
            cnode: CNodeRef::Level1,
            start: 3,
            len: 1,
        };
        assert_eq!(
            l.retype_dest(r),
            Some(RetypeDest {
                root: CPtr(100),
                node_index: 0,
                node_depth: 0,
                offset: 3,
                count: 1
            })
        );
        assert_eq!(
            l.retype_dest(SlotRange {
                cnode: CNodeRef::Level2(7),
                start: 4000,
                len: 97
            }),
            None
        );
        assert_eq!(
            l.retype_dest(SlotRange {
                cnode: CNodeRef::Level2(7),
                start: 0,
                len: 0
            }),
            None
        );
    }

    #[test]
    fn range_iter() {
        let r = SlotRange {
            cnode: CNodeRef::Level2(1),
            start: 5,
            len: 3,
        };
        let v: alloc::vec::Vec<_> = r.iter().map(|s| s.index).collect();
        assert_eq!(v, [5, 6, 7]);
    }
}
