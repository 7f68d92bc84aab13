//! Untyped-memory bookkeeping: a forest of untyped caps (boot untypeds and
//! the pieces split from them) with their watermarks, and the placement
//! policy. Pure: it plans and records; [`CSpace`](crate::CSpace) performs
//! the kernel operations and applies the records only when they succeeded.
//!
//! # Model (what the kernel does, seL4 5.0 `untyped.c`)
//! - `Untyped_Retype` places objects at the untyped's free index aligned up
//!   to the object size, and moves the free index past them.
//! - If the untyped has no children when `Untyped_Retype` runs, the kernel
//!   starts from 0 (`ensureNoChildren` -> `freeIndex = 0`). So an untyped
//!   whose last child was deleted is empty again: this bookkeeping marks it
//!   [`NodeState::Fresh`] at that moment.
//! - `CNode_Revoke` on an untyped deletes all its descendants.
//!
//! # Invariants
//! - `Fresh` <=> the untyped cap has no children in the kernel.
//! - `Leaf { wm, objects, .. }` => `objects >= 1` objects were made from it,
//!   all still live, and its kernel free index is `wm`.
//! - `Split { kids }` => its children are exactly the untyped caps `kids`,
//!   which tile it (the free index is its size).
//! - bytes: for each kind (RAM/device), `total == live + free + padding`,
//!   where `free` is the room above the watermarks of `Fresh`/`Leaf` nodes and
//!   `padding` is alignment gaps below watermarks.

use alloc::vec::Vec;
use hashbrown::HashMap;

use crate::layout::Slot;
use crate::types::{align_up, pow2, MAX_UNTYPED_BITS, MIN_UNTYPED_BITS};

/// Identifies a node (an untyped cap the allocator holds).
pub type NodeId = u32;

/// An untyped cap the root task received at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootUntyped {
    /// Its slot in the boot CNode.
    pub slot: u64,
    /// Physical address.
    pub paddr: u64,
    /// The untyped is `2^size_bits` bytes.
    pub size_bits: u8,
    /// Device memory (only frames and untypeds can be made from it).
    pub is_device: bool,
}

/// The state of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// No children: all of it is free.
    Fresh,
    /// Objects are served from it at the watermark `wm`.
    Leaf {
        /// Kernel free index (bytes from the start).
        wm: u64,
        /// Live objects made from it.
        objects: u64,
        /// Their total size.
        live_bytes: u64,
    },
    /// Split into equal untyped children that tile it.
    Split {
        /// Size of each child, in bits.
        kid_bits: u8,
        /// The children, in address order.
        kids: Vec<NodeId>,
    },
}

/// One untyped cap the allocator holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where its cap is.
    pub slot: Slot,
    /// Physical address.
    pub paddr: u64,
    /// Size in bits.
    pub size_bits: u8,
    /// Device memory.
    pub device: bool,
    /// The node it was split from (`None`: a boot untyped).
    pub parent: Option<NodeId>,
    /// What it holds.
    pub state: NodeState,
}

impl Node {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        pow2(self.size_bits)
    }
    /// The kernel's effective free index: 0 when it has no children.
    pub fn watermark(&self) -> u64 {
        match &self.state {
            NodeState::Fresh => 0,
            NodeState::Leaf { wm, .. } => *wm,
            NodeState::Split { .. } => self.size(),
        }
    }
}

/// Byte figures of one kind of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemStats {
    /// All bytes of the boot untypeds of this kind.
    pub total: u64,
    /// Bytes above the watermarks (allocatable, alignment permitting).
    pub free: u64,
    /// Bytes of live objects.
    pub live: u64,
    /// Alignment gaps below watermarks (back to free when the untyped
    /// empties).
    pub padding: u64,
}

/// What a placement request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Size of each object, in bits.
    pub obj_bits: u8,
    /// Number of objects (consecutive, one retype).
    pub count: u64,
    /// The objects must lie in `[lo, hi)` (physical).
    pub lo: u64,
    /// See `lo`.
    pub hi: u64,
    /// RAM untypeds may serve it.
    pub ram: bool,
    /// Device untypeds may serve it.
    pub device: bool,
    /// The host must be a `Fresh` piece of exactly the objects' size
    /// (rounded up to a power of two), split off if needed: deleting what was
    /// made restores it exactly, and a long-lived object (a CNode of the
    /// CSpace) does not pin a chunk that other objects come and go in.
    pub fresh_only: bool,
}

impl Request {
    /// Bytes the objects span.
    pub fn span(&self) -> Option<u64> {
        if self.obj_bits >= 64 {
            return None;
        }
        self.count.checked_mul(pow2(self.obj_bits))
    }
}

/// How a request will be served: split `start` along `splits` (each entry is
/// the child size of one split; the child containing `paddr` is split next),
/// then make the objects at `paddr` in the last node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The node the plan starts from.
    pub start: NodeId,
    /// Child sizes of the splits, outermost first.
    pub splits: Vec<u8>,
    /// Physical address of the first object.
    pub paddr: u64,
}

/// Why the configuration of the untyped allocator was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntypedConfigError {
    /// `chunk_bits` outside 12..=47 or `split_bits` outside 1..=8.
    BadParameters,
    /// A boot untyped has an impossible size or is not aligned to it.
    BadUntyped(BootUntyped),
}

/// Untyped-memory bookkeeping and placement (see the [module](self) doc).
#[derive(Debug, Clone)]
pub struct UntypedAllocator {
    nodes: HashMap<NodeId, Node>,
    next_id: NodeId,
    chunk_bits: u8,
    split_bits: u8,
    ram_total: u64,
    device_total: u64,
}

impl UntypedAllocator {
    /// Bookkeeping for the boot untypeds. Objects of at most `2^chunk_bits`
    /// bytes are served from nodes of at most that size ("chunks"); larger
    /// nodes are split, at most `2^split_bits` children at a time.
    pub fn new(boot: &[BootUntyped], chunk_bits: u8, split_bits: u8) -> Result<Self, UntypedConfigError> {
        if !(12..=MAX_UNTYPED_BITS).contains(&chunk_bits) || !(1..=8).contains(&split_bits) {
            return Err(UntypedConfigError::BadParameters);
        }
        let mut a = UntypedAllocator {
            nodes: HashMap::new(),
            next_id: 0,
            chunk_bits,
            split_bits,
            ram_total: 0,
            device_total: 0,
        };
        for u in boot {
            if !(MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS).contains(&u.size_bits)
                || u.paddr & (pow2(u.size_bits) - 1) != 0
                || u.paddr.checked_add(pow2(u.size_bits)).is_none()
            {
                return Err(UntypedConfigError::BadUntyped(*u));
            }
            if u.is_device {
                a.device_total += pow2(u.size_bits);
            } else {
                a.ram_total += pow2(u.size_bits);
            }
            a.insert(Node {
                slot: Slot::root(u.slot),
                paddr: u.paddr,
                size_bits: u.size_bits,
                device: u.is_device,
                parent: None,
                state: NodeState::Fresh,
            });
        }
        Ok(a)
    }

    fn insert(&mut self, n: Node) -> NodeId {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, n);
        id
    }

    /// Objects up to `2^chunk_bits` bytes come from nodes of at most that size.
    pub fn chunk_bits(&self) -> u8 {
        self.chunk_bits
    }

    /// Largest number of children of one split is `2^split_bits`.
    pub fn split_bits(&self) -> u8 {
        self.split_bits
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// All nodes.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().map(|(k, v)| (*k, v))
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Largest RAM boot untyped, in bits (0 if none).
    pub fn largest_ram_bits(&self) -> u8 {
        self.nodes
            .values()
            .filter(|n| !n.device && n.parent.is_none())
            .map(|n| n.size_bits)
            .max()
            .unwrap_or(0)
    }

    /// Byte figures: (RAM, device).
    pub fn mem_stats(&self) -> (MemStats, MemStats) {
        let mut ram = MemStats {
            total: self.ram_total,
            ..MemStats::default()
        };
        let mut dev = MemStats {
            total: self.device_total,
            ..MemStats::default()
        };
        for n in self.nodes.values() {
            let m = if n.device { &mut dev } else { &mut ram };
            match &n.state {
                NodeState::Fresh => m.free += n.size(),
                NodeState::Leaf { wm, live_bytes, .. } => {
                    m.free += n.size() - wm;
                    m.live += live_bytes;
                    m.padding += wm - live_bytes;
                }
                NodeState::Split { .. } => {}
            }
        }
        (ram, dev)
    }

    /// Finds where `req` can be served, preferring (1) a node that needs no
    /// split, best fit: the smallest node, then the least room left; (2) the
    /// smallest `Fresh` node that can be split down to a suitable piece.
    /// `None`: no memory of the allowed kinds fits.
    pub fn plan(&self, req: &Request) -> Option<Plan> {
        let span = req.span()?;
        let small = req.obj_bits <= self.chunk_bits;
        // Small objects come from chunk-sized nodes; a batch of big objects
        // from a node split to its size (or one already serving big objects).
        let a = ceil_log2(span).max(req.obj_bits);
        let bound = if small && !req.fresh_only { self.chunk_bits } else { a };
        let kind_ok = |n: &Node| if n.device { req.device } else { req.ram };
        // (1) no split.
        let mut best: Option<((u8, u64, NodeId), Plan)> = None;
        for (&id, n) in &self.nodes {
            if !kind_ok(n) || n.size() < span {
                continue;
            }
            let wm = match &n.state {
                NodeState::Fresh if n.size_bits <= bound => 0,
                NodeState::Leaf { wm, .. } if !req.fresh_only && (small == (n.size_bits <= self.chunk_bits)) => *wm,
                _ => continue,
            };
            let Some(pos) = align_up(wm, req.obj_bits) else {
                continue;
            };
            let Some(end) = pos.checked_add(span) else { continue };
            if end > n.size() {
                continue;
            }
            let pa = n.paddr + pos;
            if pa < req.lo || pa + span > req.hi {
                continue;
            }
            let key = (n.size_bits, n.size() - end, id);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((
                    key,
                    Plan {
                        start: id,
                        splits: Vec::new(),
                        paddr: pa,
                    },
                ));
            }
        }
        if let Some((_, p)) = best {
            return Some(p);
        }
        // (2) split a fresh node down to a piece that starts at the objects.
        let mut best: Option<((u8, u64, NodeId), NodeId, u64)> = None;
        for (&id, n) in &self.nodes {
            if !kind_ok(n) || n.state != NodeState::Fresh || n.size() < span {
                continue;
            }
            let Some(p) = align_up(n.paddr.max(req.lo), a) else {
                continue;
            };
            let end = (n.paddr + n.size()).min(req.hi);
            if p.checked_add(span).is_none_or(|e| e > end) {
                continue;
            }
            let key = (n.size_bits, p, id);
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, id, p));
            }
        }
        let (_, id, p) = best?;
        let n = &self.nodes[&id];
        let mut splits = Vec::new();
        let (mut bits, mut base) = (n.size_bits, n.paddr);
        loop {
            if base == p && bits <= bound {
                break;
            }
            let t = if small && bits > self.chunk_bits {
                self.chunk_bits
            } else {
                a
            };
            let kid = t.max(bits.saturating_sub(self.split_bits));
            debug_assert!(kid < bits);
            splits.push(kid);
            bits = kid;
            base = p & !(pow2(kid) - 1);
        }
        Some(Plan {
            start: id,
            splits,
            paddr: p,
        })
    }

    /// Number of children a split of a node of `bits` into `kid_bits` makes.
    pub fn kids_of(bits: u8, kid_bits: u8) -> u64 {
        pow2(bits - kid_bits)
    }

    /// Number of children of each of a plan's splits, in order (each child
    /// needs one slot).
    pub fn split_kids(&self, plan: &Plan) -> Vec<u64> {
        let mut bits = self.nodes[&plan.start].size_bits;
        plan.splits
            .iter()
            .map(|&k| {
                let n = Self::kids_of(bits, k);
                bits = k;
                n
            })
            .collect()
    }

    /// Records that `Fresh` node `id` was split into children of `kid_bits`
    /// whose caps are in `slots` (in address order); returns the child
    /// containing `paddr`.
    pub fn apply_split(&mut self, id: NodeId, kid_bits: u8, slots: &[Slot], paddr: u64) -> NodeId {
        let n = &self.nodes[&id];
        assert!(n.state == NodeState::Fresh && kid_bits < n.size_bits);
        assert_eq!(slots.len() as u64, Self::kids_of(n.size_bits, kid_bits));
        let (base, device) = (n.paddr, n.device);
        let mut kids = Vec::with_capacity(slots.len());
        let mut chosen = None;
        for (i, &slot) in slots.iter().enumerate() {
            let i = i as u64;
            let kp = base + i * pow2(kid_bits);
            let kid = self.insert(Node {
                slot,
                paddr: kp,
                size_bits: kid_bits,
                device,
                parent: Some(id),
                state: NodeState::Fresh,
            });
            if (kp..kp + pow2(kid_bits)).contains(&paddr) {
                chosen = Some(kid);
            }
            kids.push(kid);
        }
        self.nodes.get_mut(&id).expect("exists").state = NodeState::Split { kid_bits, kids };
        chosen.expect("paddr inside the split node")
    }

    /// Undoes [`apply_split`](Self::apply_split) (or records a revoke of the
    /// node): its children, which must all be `Fresh`, are forgotten and the
    /// node is `Fresh`. Returns the children's slots.
    pub fn merge(&mut self, id: NodeId) -> Vec<Slot> {
        let n = self.nodes.get_mut(&id).expect("exists");
        let NodeState::Split { kids, .. } = core::mem::replace(&mut n.state, NodeState::Fresh) else {
            panic!("merge of a node that is not split");
        };
        kids.into_iter()
            .map(|k| {
                let kid = self.nodes.remove(&k).expect("kid exists");
                assert_eq!(kid.state, NodeState::Fresh);
                kid.slot
            })
            .collect()
    }

    /// Whether node `id` is split and all its children are `Fresh`.
    pub fn mergeable(&self, id: NodeId) -> bool {
        match &self.nodes[&id].state {
            NodeState::Split { kids, .. } => kids.iter().all(|k| self.nodes[k].state == NodeState::Fresh),
            _ => false,
        }
    }

    /// Records `count` objects of `obj_bits` made from node `id` (which must
    /// fit them); returns the physical address of the first.
    pub fn apply_alloc(&mut self, id: NodeId, obj_bits: u8, count: u64) -> u64 {
        let n = self.nodes.get_mut(&id).expect("exists");
        let (wm, objects, live) = match n.state {
            NodeState::Fresh => (0, 0, 0),
            NodeState::Leaf {
                wm,
                objects,
                live_bytes,
            } => (wm, objects, live_bytes),
            NodeState::Split { .. } => panic!("alloc from a split node"),
        };
        let pos = align_up(wm, obj_bits).expect("fits");
        let span = count * pow2(obj_bits);
        assert!(pos + span <= n.size());
        n.state = NodeState::Leaf {
            wm: pos + span,
            objects: objects + count,
            live_bytes: live + span,
        };
        n.paddr + pos
    }

    /// Restores a node's state (undo of [`apply_alloc`](Self::apply_alloc)).
    pub fn restore(&mut self, id: NodeId, state: NodeState) {
        self.nodes.get_mut(&id).expect("exists").state = state;
    }

    /// Records that one object of `obj_bits` made from `id` was deleted.
    /// Returns `true` if the node has no children left (it is `Fresh` again).
    pub fn release(&mut self, id: NodeId, obj_bits: u8) -> bool {
        let n = self.nodes.get_mut(&id).expect("exists");
        let NodeState::Leaf {
            wm,
            objects,
            live_bytes,
        } = n.state
        else {
            panic!("release from a node that serves no objects");
        };
        if objects == 1 {
            n.state = NodeState::Fresh;
            true
        } else {
            n.state = NodeState::Leaf {
                wm,
                objects: objects - 1,
                live_bytes: live_bytes - pow2(obj_bits),
            };
            false
        }
    }
}

/// Smallest `b` with `2^b >= x` (x >= 1).
pub(crate) fn ceil_log2(x: u64) -> u8 {
    (64 - (x - 1).leading_zeros()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{CNodeRef, SlotRange};

    fn ut(slot: u64, paddr: u64, bits: u8, dev: bool) -> BootUntyped {
        BootUntyped {
            slot,
            paddr,
            size_bits: bits,
            is_device: dev,
        }
    }

    fn req(obj_bits: u8) -> Request {
        Request {
            obj_bits,
            count: 1,
            lo: 0,
            hi: u64::MAX,
            ram: true,
            device: false,
            fresh_only: false,
        }
    }

    fn run(len: u64) -> SlotRange {
        SlotRange {
            cnode: CNodeRef::Level2(1),
            start: 0,
            len,
        }
    }

    #[test]
    fn ceil_log2_values() {
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(4096), 12);
        assert_eq!(ceil_log2(4097), 13);
    }

    #[test]
    fn config_checks() {
        assert_eq!(
            UntypedAllocator::new(&[], 11, 4).unwrap_err(),
            UntypedConfigError::BadParameters
        );
        assert_eq!(
            UntypedAllocator::new(&[], 21, 9).unwrap_err(),
            UntypedConfigError::BadParameters
        );
        let bad = ut(1, 0x1000, 13, false);
        assert_eq!(
            UntypedAllocator::new(&[bad], 21, 4).unwrap_err(),
            UntypedConfigError::BadUntyped(bad)
        );
        let bad = ut(1, 0, 3, false);
        assert_eq!(
            UntypedAllocator::new(&[bad], 21, 4).unwrap_err(),
            UntypedConfigError::BadUntyped(bad)
        );
    }

    #[test]
    fn best_fit_prefers_smallest_then_tightest() {
        let a = UntypedAllocator::new(
            &[
                ut(1, 0x10_0000, 20, false),
                ut(2, 0x20_0000, 14, false),
                ut(3, 0x30_0000, 13, false),
            ],
            21,
            4,
        )
        .unwrap();
        // A 4K frame goes to the 8K untyped.
        let p = a.plan(&req(12)).unwrap();
        assert_eq!(a.node(p.start).unwrap().size_bits, 13);
        assert!(p.splits.is_empty());
        // A 16K... CNode of radix 9 (16K) only fits the 1M or the 16K one: 16K.
        let p = a.plan(&req(14)).unwrap();
        assert_eq!(a.node(p.start).unwrap().size_bits, 14);
    }

    #[test]
    fn leaf_watermark_alignment() {
        let mut a = UntypedAllocator::new(&[ut(1, 0x10_0000, 16, false)], 21, 4).unwrap();
        let id = a.plan(&req(4)).unwrap().start;
        assert_eq!(a.apply_alloc(id, 4, 1), 0x10_0000);
        // Next 4K frame is aligned up: 4080 bytes of padding.
        let p = a.plan(&req(12)).unwrap();
        assert_eq!(p.paddr, 0x10_1000);
        assert_eq!(a.apply_alloc(id, 12, 1), 0x10_1000);
        let (ram, _) = a.mem_stats();
        assert_eq!(
            ram,
            MemStats {
                total: 1 << 16,
                free: (1 << 16) - 0x2000,
                live: 4096 + 16,
                padding: 4080
            }
        );
        assert!(!a.release(id, 12));
        assert!(a.release(id, 4));
        let (ram, _) = a.mem_stats();
        assert_eq!(
            ram,
            MemStats {
                total: 1 << 16,
                free: 1 << 16,
                live: 0,
                padding: 0
            }
        );
    }

    #[test]
    fn big_untyped_is_split_to_chunks() {
        let a = UntypedAllocator::new(&[ut(1, 0x1000_0000, 28, false)], 21, 4).unwrap();
        let p = a.plan(&req(12)).unwrap();
        assert_eq!(p.splits, [24, 21]);
        assert_eq!(p.paddr, 0x1000_0000);
        assert_eq!(a.split_kids(&p), [16, 8]);
        // Big objects are served by big nodes without going down to chunks.
        let p = a.plan(&req(30)).map(|p| p.splits);
        assert_eq!(p, None);
        let p = a.plan(&req(27)).unwrap();
        assert_eq!(p.splits, [27]);
    }

    #[test]
    fn range_placement_splits_down_to_the_address() {
        let a = UntypedAllocator::new(&[ut(1, 0xe000_0000, 28, true)], 21, 4).unwrap();
        let r = Request {
            lo: 0xe012_3000,
            hi: 0xe012_4000,
            device: true,
            ram: false,
            ..req(12)
        };
        let p = a.plan(&r).unwrap();
        assert_eq!(p.paddr, 0xe012_3000);
        assert_eq!(p.splits, [24, 21, 17, 13, 12]);
        // Device memory is not used unless asked for.
        assert_eq!(a.plan(&req(12)), None);
    }

    #[test]
    fn split_and_merge_round_trip() {
        let mut a = UntypedAllocator::new(&[ut(1, 0, 22, false)], 21, 4).unwrap();
        let before = a.mem_stats();
        let p = a.plan(&req(12)).unwrap();
        assert_eq!(p.splits, [21]);
        let slots: Vec<Slot> = run(2).iter().collect();
        let kid = a.apply_split(p.start, 21, &slots, p.paddr);
        assert_eq!(a.node(kid).unwrap().paddr, 0);
        assert_eq!(a.mem_stats(), before);
        assert!(a.mergeable(p.start));
        a.apply_alloc(kid, 12, 3);
        assert!(!a.mergeable(p.start));
        let (ram, _) = a.mem_stats();
        assert_eq!(ram.live, 3 * 4096);
        assert_eq!(ram.free + ram.live + ram.padding, ram.total);
        a.release(kid, 12);
        a.release(kid, 12);
        assert!(a.release(kid, 12));
        assert!(a.mergeable(p.start));
        assert_eq!(a.merge(p.start), slots);
        assert_eq!(a.node_count(), 1);
        assert_eq!(a.mem_stats(), before);
    }

    #[test]
    fn fresh_only_skips_leaves() {
        let mut a = UntypedAllocator::new(&[ut(1, 0, 20, false), ut(2, 1 << 20, 20, false)], 21, 1).unwrap();
        let p = a.plan(&req(12)).unwrap();
        a.apply_alloc(p.start, 12, 1);
        let p2 = a
            .plan(&Request {
                fresh_only: true,
                ..req(12)
            })
            .unwrap();
        assert_ne!(p2.start, p.start);
        // A fresh-only request gets a piece of exactly its size.
        assert_eq!(p2.splits, [19, 18, 17, 16, 15, 14, 13, 12]);
        let p3 = a.plan(&req(12)).unwrap();
        assert_eq!(p3.start, p.start);
    }
}
