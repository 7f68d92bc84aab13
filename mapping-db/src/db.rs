//! The database: tables, updates and queries.
//!
//! Layout: every table is a [`Table`] (hash index + slab), and the tables name each other's entries by
//! position, so only the caller's keys are hashed. A record lives in its capability's node ([`Placed`]) and
//! names its leaf table by position; the leaf names its address space and span counters by position. So
//! an insert hashes the capability and, unless it is the leaf (and address chunk) used last, the leaf (and
//! chunk); a removal hashes nothing but the way in.

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

use hashbrown::HashMap;

use crate::addr::AddrIndex;
use crate::chunk::{ChunkMap, Cursor, Dense, CHUNK, CHUNK_BITS};
use crate::error::{AddCopyError, AddFrameError, InsertError, RemoveCopyError, RemoveError, RemoveFrameError};
use crate::table::{pos32, swap_remove, List, Table, NONE};
use crate::types::{AsId, CapSlot, FrameId, LeafTable, Mapping, PageSize, Rights, USER_VADDR_END};

/// Inline capacity of a frame's list of capabilities (the original and two copies).
pub(crate) const COPIES_INLINE: usize = 3;
/// Inline capacity of a frame's list of mapped capabilities.
pub(crate) const MAPPED_INLINE: usize = 5;

/// Per frame (keyed by its original slot): its address, size and the slots of every capability to it, and of those holding mappings.
#[derive(Clone, Debug)]
pub(crate) struct FrameNode {
    pub(crate) paddr: u64,
    pub(crate) size: PageSize,
    /// Every capability to the frame, original included; `caps[s].copy_pos` is `s`'s position.
    pub(crate) copies: List<CapSlot, COPIES_INLINE>,
    /// The capabilities (positions in `caps`) that hold a mapping; the record's `frame_pos` is the position here.
    pub(crate) mapped: List<u32, MAPPED_INLINE>,
}

/// Per capability slot: which frame, where it was derived from, and the mapping it holds.
#[derive(Clone, Debug)]
pub(crate) struct CapNode {
    /// The frame's position in `frames` (whose key is the frame's original slot).
    pub(crate) frame: u32,
    /// The slot this copy was derived from; the slot itself for the original.
    pub(crate) parent: CapSlot,
    /// `parent`'s position in `caps`.
    pub(crate) parent_pos: u32,
    /// How many copies name this slot as their parent.
    pub(crate) children: u32,
    /// Position in `frames[frame].copies`.
    pub(crate) copy_pos: u32,
    /// The mapping record, if the capability is mapped.
    pub(crate) map: Option<Placed>,
}

/// The part of a mapping record that is not implied by its capability node (the address space and table
/// are the leaf's key).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) vaddr: u64,
    /// The leaf table's position in `leaves`.
    pub(crate) leaf: u32,
    /// Position in `frames[frame].mapped`.
    pub(crate) frame_pos: u32,
    /// Position in the list of the address space (in `spaces`).
    pub(crate) space_pos: u32,
    pub(crate) index: u16,
    pub(crate) size: PageSize,
    pub(crate) rights: Rights,
}

/// An (address space, page start) address (the tests remove one from the address index).
#[cfg(test)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct VKey {
    pub(crate) asid: AsId,
    pub(crate) vaddr: u64,
}

/// Key of a span counter: how many pages smaller than `size` lie in the `size`-aligned region at `base`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct SpanKey {
    pub(crate) asid: AsId,
    pub(crate) size: PageSize,
    pub(crate) base: u64,
}

/// Per leaf table that has entries in use: the region it covers and which entries, and where the things
/// every page of the leaf touches are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeafNode {
    pub(crate) region: u64,
    pub(crate) used: [u64; 8],
    /// Number of entries in use (the bits set in `used`).
    pub(crate) count: u32,
    /// The address space's position in `spaces`.
    pub(crate) space: u32,
    /// Positions in `spans` of the counters the leaf's pages count in: for each size larger than the page
    /// size, smallest first, the counter of the region of that size containing the leaf's region; [`NONE`]
    /// past the largest size.
    pub(crate) spans: [u32; 2],
}

impl LeafNode {
    pub(crate) fn is_set(&self, index: u16) -> bool {
        self.used[usize::from(index / 64)] & (1 << (index % 64)) != 0
    }
    pub(crate) fn bits(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub(crate) fn set(&mut self, index: u16) {
        self.used[usize::from(index / 64)] |= 1 << (index % 64);
    }
    /// Marks the entries `from..to` in use (`from <= to <= 512`).
    #[inline(always)]
    pub(crate) fn set_range(&mut self, from: u16, to: u16) {
        let (from, to) = (usize::from(from), usize::from(to));
        for (w, word) in self.used.iter_mut().enumerate() {
            let (lo, hi) = (from.clamp(w * 64, w * 64 + 64), to.clamp(w * 64, w * 64 + 64));
            if lo < hi {
                let bits = hi - lo;
                let mask = if bits == 64 {
                    u64::MAX
                } else {
                    ((1u64 << bits) - 1) << (lo - w * 64)
                };
                *word |= mask;
            }
        }
    }
    /// Marks the entries `from..to` free (`from <= to <= 512`).
    #[inline(always)]
    pub(crate) fn clear_range(&mut self, from: u16, to: u16) {
        let (from, to) = (usize::from(from), usize::from(to));
        for (w, word) in self.used.iter_mut().enumerate() {
            let (lo, hi) = (from.clamp(w * 64, w * 64 + 64), to.clamp(w * 64, w * 64 + 64));
            if lo < hi {
                let bits = hi - lo;
                let mask = if bits == 64 {
                    u64::MAX
                } else {
                    ((1u64 << bits) - 1) << (lo - w * 64)
                };
                *word &= !mask;
            }
        }
    }
    pub(crate) fn clear(&mut self, index: u16) {
        self.used[usize::from(index / 64)] &= !(1 << (index % 64));
    }
    /// The indices in use, ascending.
    pub(crate) fn indices(self) -> impl Iterator<Item = u16> {
        (0..8u16).flat_map(move |w| {
            let mut bits = self.used[usize::from(w)];
            core::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as u16;
                bits &= bits - 1;
                Some(w * 64 + b)
            })
        })
    }
}

/// Per address space with leaf tables (with entries in use, or idle): the capabilities (positions in `caps`)
/// holding its mappings, how many are of 2 MiB and 1 GiB pages, and how many leaf nodes name the space.
/// Dereferences to the list.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpaceNode {
    pub(crate) maps: Vec<u32>,
    pub(crate) big: [u32; 2],
    /// Leaf nodes (in use or idle) of the space.
    pub(crate) leaves: u32,
}

/// A span counter: the records of the space smaller than the span's size inside it, and how many leaf nodes
/// (in use or idle) name the counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpanNode {
    pub(crate) count: u32,
    pub(crate) leaves: u32,
}

/// Leaf nodes kept without entries in use (idle), for a leaf table that comes back.
pub(crate) const IDLE_LEAVES: usize = 4;

/// The idle leaf nodes (positions in `leaves`), oldest first: `list[..len]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdleLeaves {
    list: [u32; IDLE_LEAVES],
    len: u8,
}

impl Default for IdleLeaves {
    fn default() -> Self {
        IdleLeaves {
            list: [NONE; IDLE_LEAVES],
            len: 0,
        }
    }
}

impl IdleLeaves {
    pub(crate) fn as_slice(&self) -> &[u32] {
        &self.list[..usize::from(self.len)]
    }

    /// Takes `p` off the list, if it is there.
    #[inline(always)]
    fn take(&mut self, p: u32) {
        let n = usize::from(self.len);
        if let Some(at) = self.list[..n].iter().position(|&x| x == p) {
            self.list.copy_within(at + 1..n, at);
            self.len -= 1;
        }
    }

    /// Appends `p`; returns the oldest entry if the list was full (it is no longer on it).
    #[inline(always)]
    fn push(&mut self, p: u32) -> Option<u32> {
        let n = usize::from(self.len);
        if n == IDLE_LEAVES {
            let old = self.list[0];
            self.list.copy_within(1.., 0);
            self.list[IDLE_LEAVES - 1] = p;
            Some(old)
        } else {
            self.list[n] = p;
            self.len += 1;
            None
        }
    }
}

impl Deref for SpaceNode {
    type Target = Vec<u32>;
    fn deref(&self) -> &Vec<u32> {
        &self.maps
    }
}

impl DerefMut for SpaceNode {
    fn deref_mut(&mut self) -> &mut Vec<u32> {
        &mut self.maps
    }
}

/// Whether the span counter `key` counts pages (it may exist, at 0, for idle leaves).
#[inline(always)]
pub(crate) fn counts_pages(spans: &Table<SpanKey, SpanNode>, key: &SpanKey) -> bool {
    spans.get(key).is_some_and(|c| c.count > 0)
}

/// The sizes larger than `size`, smallest first.
pub(crate) const fn larger(size: PageSize) -> &'static [PageSize] {
    match size {
        PageSize::Small => &[PageSize::Large, PageSize::Huge],
        PageSize::Large => &[PageSize::Huge],
        PageSize::Huge => &[],
    }
}

/// Where `size` is counted in the per-size counts of large pages (`big`).
pub(crate) const fn big_idx(size: PageSize) -> Option<usize> {
    match size {
        PageSize::Small => None,
        PageSize::Large => Some(0),
        PageSize::Huge => Some(1),
    }
}

/// Capability slots are dense (a CSpace's slots are numbered from 0 up per CNode): 64 neighbouring slots
/// share a chunk of the by-cap index.
impl Dense for CapSlot {
    type Id = u64;
    #[inline(always)]
    fn split(self) -> (u64, usize) {
        (self.0 >> CHUNK_BITS, (self.0 as usize) & (CHUNK - 1))
    }
}

/// The by-cap table: slot -> node, through a [`ChunkMap`].
pub(crate) type Caps = Table<CapSlot, CapNode, ChunkMap<CapSlot>>;
/// The frames: original slot -> node, through a [`ChunkMap`].
pub(crate) type Frames = Table<CapSlot, FrameNode, ChunkMap<CapSlot>>;

/// The root task's mapping database. See the crate documentation for the model and the invariants.
#[derive(Clone, Debug, Default)]
pub struct MappingDb {
    /// Original slot -> the frame.
    pub(crate) frames: Frames,
    /// Every capability the database knows, with the mapping record it holds (the by-cap index).
    pub(crate) caps: Caps,
    /// (address space, page size, page start) -> the capability whose mapping starts there.
    pub(crate) by_vaddr: AddrIndex,
    /// Address space -> the capabilities holding its mappings; no empty lists.
    pub(crate) spaces: Table<AsId, SpaceNode>,
    /// Leaf tables with at least one entry in use, and up to [`IDLE_LEAVES`] idle ones (none in use).
    pub(crate) leaves: Table<LeafTable, LeafNode>,
    /// Counts of pages inside larger aligned regions (for the overlap check of large pages), each named by
    /// a leaf node (0 only while named by idle leaves alone).
    pub(crate) spans: Table<SpanKey, SpanNode>,
    /// The idle leaf nodes.
    pub(crate) idle_leaves: IdleLeaves,
    pub(crate) len: usize,
    /// Records of 2 MiB and of 1 GiB pages, in all address spaces (none: lookups probe 4 KiB pages only).
    pub(crate) big: [usize; 2],
    /// Position in `leaves` of the leaf inserted into last (a guess, checked before use).
    pub(crate) hint_leaf: u32,
    /// Number of copies (capabilities other than originals) with children. While it is 0 every parent is
    /// an original and no copy has children, which [`destroy_region`](Self::destroy_region) need not check.
    pub(crate) copy_parents: usize,
    /// The copy runs (see the `run` module); empty while runs are off.
    pub(crate) runs: crate::run::Runs,
    /// Whether clones are kept per page only (see [`with_runs`](Self::with_runs)).
    pub(crate) no_runs: bool,
}

/// What a batch has changed so far, seen through by validation before anything is applied.
pub(crate) struct Overlay {
    /// The batch's leaf table, with its region and number of entries after the batch so far.
    pub(crate) leaf: (LeafTable, Option<u64>, usize),
    /// The leaf's position in `leaves`, if it has entries in the database.
    pub(crate) leaf_pos: Option<u32>,
    /// Capabilities (positions in `caps`) whose mapped state the batch changed: `true` mapped, `false` unmapped.
    pub(crate) mapped: HashMap<u32, bool>,
    /// Per entry of the batch's leaf: [`UNTOUCHED`], [`FREED`] by the batch, or the capability (position)
    /// the batch mapped there.
    pub(crate) ptes: Vec<u32>,
}

/// An entry of the batch's leaf the batch did not change ([`Overlay::ptes`]).
pub(crate) const UNTOUCHED: u32 = NONE;
/// An entry of the batch's leaf the batch freed ([`Overlay::ptes`]).
pub(crate) const FREED: u32 = NONE - 1;

impl Overlay {
    /// The overlay of an empty batch of `leaf`, for up to `ops` operations.
    pub(crate) fn new(db: &MappingDb, leaf: LeafTable, ops: usize) -> Self {
        let leaf_pos = db.live_leaf(&leaf);
        let (region, used) = leaf_pos.map_or((None, 0), |p| {
            let n = db.leaves.at(p);
            (Some(n.region), n.count as usize)
        });
        Overlay {
            leaf: (leaf, region, used),
            leaf_pos,
            mapped: HashMap::with_capacity(ops),
            ptes: alloc::vec![UNTOUCHED; usize::from(crate::ENTRIES_PER_TABLE)],
        }
    }

    /// What the batch did to entry `index`: [`UNTOUCHED`], [`FREED`] or the capability mapped there.
    fn pte(&self, index: u16) -> u32 {
        self.ptes.get(usize::from(index)).copied().unwrap_or(UNTOUCHED)
    }
}

/// Where a validated insert goes: positions found while validating.
struct Plan {
    cap: u32,
    frame: u32,
    leaf: Option<u32>,
    chunk: Option<u32>,
}

pub(crate) fn pos(p: u32) -> usize {
    p as usize
}

impl MappingDb {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    // ----- frames and copies -------------------------------------------------------------------------------

    /// Records a frame of `size` whose original capability is in `frame.slot`.
    pub fn add_frame(&mut self, frame: FrameId, size: PageSize) -> Result<(), AddFrameError> {
        self.settle_copy_slot(frame.slot);
        if !size.is_aligned(frame.paddr) {
            return Err(if self.caps.contains_key(&frame.slot) {
                AddFrameError::SlotInUse
            } else {
                AddFrameError::Misaligned
            });
        }
        let slot = frame.slot;
        let cap = self
            .caps
            .try_insert(slot, || CapNode {
                frame: NONE,
                parent: slot,
                parent_pos: NONE,
                children: 0,
                copy_pos: 0,
                map: None,
            })
            .map_err(|_| AddFrameError::SlotInUse)?;
        let node = FrameNode {
            paddr: frame.paddr,
            size,
            copies: List::one(slot),
            mapped: List::empty(NONE),
        };
        // No frame is keyed by a slot the caps do not know (F1).
        let f = self.frames.insert_new(slot, node);
        let c = self.caps.at_mut(cap);
        c.frame = f;
        c.parent_pos = cap;
        Ok(())
    }

    /// Records that `copy` holds a copy of a capability to `frame`, derived from the one in `parent`
    /// (`CNode_Copy`/`CNode_Mint` from `parent` to `copy`).
    pub fn add_copy(&mut self, frame: FrameId, copy: CapSlot, parent: CapSlot) -> Result<(), AddCopyError> {
        if !self.runs.is_empty() {
            // An original in an original run is a node already, whether the parent or the (used) slot.
            self.settle_copy_slot(copy);
            self.settle_copy_slot(parent);
        }
        self.add_copy_pp(frame, copy, parent)
    }

    /// [`add_copy`](Self::add_copy) where no run holds `copy` or `parent`.
    pub(crate) fn add_copy_pp(&mut self, frame: FrameId, copy: CapSlot, parent: CapSlot) -> Result<(), AddCopyError> {
        // Fast path: the parent is known and a cap to `frame` (so the frame is known); then only the slot
        // can be in use. Anything else is refused, by the checks in their documented order.
        let Some(pp) = self.caps.pos_mut(&parent) else {
            return Err(self.add_copy_error(frame, copy, parent));
        };
        let f = self.caps.at(pp).frame;
        let (orig, node) = self.frames.entry_at(f);
        if orig != frame.slot || node.paddr != frame.paddr {
            return Err(self.add_copy_error(frame, copy, parent));
        }
        let copy_pos = pos32(node.copies.len());
        self.caps
            .try_insert(copy, || CapNode {
                frame: f,
                parent,
                parent_pos: pp,
                children: 0,
                copy_pos,
                map: None,
            })
            .map_err(|_| AddCopyError::SlotInUse)?;
        add_child(&mut self.caps, pp, &mut self.copy_parents);
        self.frames.at_mut(f).copies.push(copy);
        Ok(())
    }

    /// Why `add_copy(frame, copy, parent)` is refused, where the parent is unknown or not a cap to `frame`.
    #[cold]
    fn add_copy_error(&self, frame: FrameId, copy: CapSlot, parent: CapSlot) -> AddCopyError {
        if self.frame_node(frame).is_none() {
            AddCopyError::UnknownFrame
        } else if self.caps.contains_key(&copy) {
            AddCopyError::SlotInUse
        } else if !self.caps.contains_key(&parent) {
            AddCopyError::UnknownParent
        } else {
            AddCopyError::ParentOfOtherFrame
        }
    }

    /// Forgets the copy in `slot`.
    ///
    /// Policy: refused for an original (use [`remove_frame`](Self::remove_frame)), for a copy that holds a
    /// mapping, and for a copy other copies were derived from and are still present. So the derivation tree
    /// only ever loses leaves, and every recorded parent exists.
    pub fn remove_copy(&mut self, slot: CapSlot) -> Result<(), RemoveCopyError> {
        self.settle_copy_slot(slot);
        let cap = self.caps.pos_mut(&slot).ok_or(RemoveCopyError::UnknownCap)?;
        let node = self.caps.at(cap);
        if node.parent == slot {
            return Err(RemoveCopyError::IsOriginal);
        }
        if node.map.is_some() {
            return Err(RemoveCopyError::Mapped);
        }
        if node.children > 0 {
            return Err(RemoveCopyError::HasChildren);
        }
        let node = self.caps.remove_at(cap);
        drop_child(&mut self.caps, node.parent_pos, &mut self.copy_parents);
        if let Some(moved) = self.frames.at_mut(node.frame).copies.swap_remove(pos(node.copy_pos)) {
            self.caps.get_mut(&moved).expect("listed copy").copy_pos = node.copy_pos;
        }
        Ok(())
    }

    /// Forgets a frame and its original capability. Refused while copies exist or the original is mapped.
    pub fn remove_frame(&mut self, frame: FrameId) -> Result<(), RemoveFrameError> {
        self.settle_frame(frame.slot);
        let node = self.frame_node(frame).ok_or(RemoveFrameError::UnknownFrame)?;
        if node.copies.len() > 1 {
            return Err(RemoveFrameError::HasCopies);
        }
        if !node.mapped.is_empty() || self.orig_run_of(frame.slot).is_some() {
            return Err(RemoveFrameError::Mapped);
        }
        self.frames.remove(&frame.slot);
        self.caps.remove(&frame.slot);
        Ok(())
    }

    /// The slots of every capability to `frame`, original included (none if the frame is unknown).
    pub fn copies_of(&self, frame: FrameId) -> impl Iterator<Item = CapSlot> + '_ {
        self.frame_node(frame).into_iter().flat_map(move |n| {
            let runs = (!self.runs.is_empty()).then(|| {
                self.runs
                    .of_parent(frame.slot)
                    .map(|(_, r, i)| CapSlot(r.first_copy + i))
            });
            n.copies.iter().copied().chain(runs.into_iter().flatten())
        })
    }

    /// The frame the capability in `slot` refers to.
    pub fn frame_of_cap(&self, slot: CapSlot) -> Option<FrameId> {
        match self.caps.get(&slot) {
            Some(n) => Some(self.frame_at(n.frame)),
            None => self.run_mapping_of_slot(slot).map(|m| m.frame),
        }
    }

    /// The slot the copy in `slot` was derived from (`None` for an original or an unknown slot).
    pub fn parent_of(&self, slot: CapSlot) -> Option<CapSlot> {
        match self.caps.get(&slot) {
            Some(n) => Some(n.parent).filter(|&p| p != slot),
            None => self.run_mapping_of_slot(slot).map(|m| m.frame.slot),
        }
    }

    /// How many present copies were derived directly from the capability in `slot`.
    pub fn children_of(&self, slot: CapSlot) -> usize {
        // A run's copies have no children; an original's count leaves out the copies in runs.
        self.caps.get(&slot).map_or(0, |n| {
            n.children as usize + if n.parent == slot { self.run_children(slot) } else { 0 }
        })
    }

    /// The size of `frame`, if it is known.
    pub fn frame_size(&self, frame: FrameId) -> Option<PageSize> {
        self.frame_node(frame).map(|n| n.size)
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Number of capabilities (originals and copies).
    pub fn cap_count(&self) -> usize {
        self.caps.len() + self.runs.pages - self.runs.orig_pages
    }

    // ----- mappings: queries -------------------------------------------------------------------------------

    /// Number of mapping records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no mapping records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The record of the mapping the capability at position `cap` holds; the caller knows it is mapped.
    #[inline]
    pub(crate) fn record(&self, cap: u32) -> Mapping {
        let (slot, node) = self.caps.entry_at(cap);
        let p = node.map.as_ref().expect("record of an unmapped cap");
        to_mapping(slot, self.frame_at(node.frame), self.leaves.key_at(p.leaf), p)
    }

    /// The mapping the capability in `slot` holds.
    pub fn mapping_of_cap(&self, slot: CapSlot) -> Option<Mapping> {
        match self.caps.pos(&slot) {
            Some(cap) => {
                if self.caps.at(cap).map.is_some() {
                    Some(self.record(cap))
                } else {
                    // An original may be mapped in an original run.
                    self.orig_run_of(slot).map(|(k, r, i)| self.run_mapping(k, r, i))
                }
            }
            None => self.run_mapping_of_slot(slot),
        }
    }

    /// The mapping of address space `asid` whose page contains `vaddr` (any address in the page).
    ///
    /// O(1): probes the 4 KiB, 2 MiB and 1 GiB pages that would contain `vaddr` (the larger sizes only while
    /// the database has pages of them).
    pub fn lookup(&self, asid: AsId, vaddr: u64) -> Option<Mapping> {
        match self.lookup_cap(asid, vaddr) {
            Some(cap) => Some(self.record(cap)),
            None => self.run_lookup(asid, vaddr),
        }
    }

    /// The position of the capability whose page contains `vaddr` in `asid`.
    #[inline]
    pub(crate) fn lookup_cap(&self, asid: AsId, vaddr: u64) -> Option<u32> {
        if let Some(cap) = self.by_vaddr.get(asid, PageSize::Small, vaddr) {
            return Some(cap);
        }
        self.lookup_big(asid, vaddr)
    }

    /// [`lookup_cap`](Self::lookup_cap), remembering the address chunk for the next lookup nearby.
    #[inline]
    pub(crate) fn lookup_cap_mut(&mut self, asid: AsId, vaddr: u64) -> Option<u32> {
        if let Some(cap) = self.by_vaddr.get_mut(asid, PageSize::Small, vaddr) {
            return Some(cap);
        }
        self.lookup_big(asid, vaddr)
    }

    fn lookup_big(&self, asid: AsId, vaddr: u64) -> Option<u32> {
        [PageSize::Large, PageSize::Huge]
            .into_iter()
            .filter(|&s| self.big[big_idx(s).expect("large size")] > 0)
            .find_map(|s| self.by_vaddr.get(asid, s, vaddr))
    }

    /// Every mapping of `frame`, in every address space: who can reach this memory.
    pub fn mappings_of_frame(&self, frame: FrameId) -> impl Iterator<Item = Mapping> + '_ {
        self.frame_node(frame).into_iter().flat_map(move |n| {
            let runs = (!self.runs.is_empty()).then(|| {
                let orig = self.orig_run_of(frame.slot).map(|(k, r, i)| self.run_mapping(k, r, i));
                self.runs
                    .of_parent(frame.slot)
                    .map(move |(k, r, i)| self.run_mapping(k, r, i))
                    .chain(orig)
            });
            n.mapped
                .iter()
                .map(move |&cap| self.record(cap))
                .chain(runs.into_iter().flatten())
        })
    }

    /// Every mapping of address space `asid` (in no particular order).
    pub fn mappings_in(&self, asid: AsId) -> impl Iterator<Item = Mapping> + '_ {
        self.spaces
            .get(&asid)
            .into_iter()
            .flat_map(move |v| v.maps.iter().map(move |&cap| self.record(cap)))
            .chain(self.run_mappings_in(asid))
    }

    /// Number of mappings of address space `asid` (O(runs of the space) more while it has runs).
    pub fn space_len(&self, asid: AsId) -> usize {
        let runs: usize = if self.runs.is_empty() {
            0
        } else {
            self.runs.of_space(asid).map(|(_, r)| usize::from(r.n)).sum()
        };
        self.spaces.get(&asid).map_or(0, |s| s.maps.len()) + runs
    }

    /// Number of entries of `leaf` in use.
    pub fn leaf_used(&self, leaf: LeafTable) -> usize {
        self.leaves.get(&leaf).map_or(0, |n| n.count as usize)
    }

    /// The mappings held by entries of `leaf`, by ascending entry index.
    pub fn leaf_entries(&self, leaf: LeafTable) -> impl Iterator<Item = Mapping> + '_ {
        self.leaves.get(&leaf).into_iter().flat_map(move |node| {
            let size = leaf.level.frame_size();
            let region = node.region;
            node.indices().map(move |i| {
                let vaddr = region | (u64::from(i) << size.bits());
                match self.by_vaddr.get(leaf.asid, size, vaddr) {
                    Some(cap) => self.record(cap),
                    None => self
                        .run_lookup(leaf.asid, vaddr)
                        .expect("an entry in use is indexed or in a run"),
                }
            })
        })
    }

    /// The mapping held by entry `index` of `leaf`.
    pub fn mapping_at(&self, leaf: LeafTable, index: u16) -> Option<Mapping> {
        if let Some(cap) = self.pte_owner(None, leaf, index) {
            return Some(self.record(cap));
        }
        if self.runs.is_empty() || leaf.level != crate::types::LeafLevel::Pt || index >= crate::ENTRIES_PER_TABLE {
            return None;
        }
        let node = self.leaves.at(self.live_leaf(&leaf)?);
        let vaddr = node.region | (u64::from(index) << 12);
        // The entry is in use and no per-page record holds it: a run of this leaf does.
        self.run_lookup(leaf.asid, vaddr).filter(|m| m.leaf == leaf)
    }

    /// The leaf tables with entries in use (in no particular order).
    pub fn leaves(&self) -> impl Iterator<Item = LeafTable> + '_ {
        self.leaves.iter().filter(|(_, _, l)| l.count > 0).map(|(_, k, _)| k)
    }

    // ----- mappings: updates -------------------------------------------------------------------------------

    /// Records `m`. Refused, with nothing changed, when any check of [`InsertError`] fails.
    pub fn insert(&mut self, m: Mapping) -> Result<(), InsertError> {
        self.settle_record(&m);
        self.insert_pp(m)
    }

    /// [`insert`](Self::insert) where no run holds the record's capability or page.
    pub(crate) fn insert_pp(&mut self, m: Mapping) -> Result<(), InsertError> {
        if self.insert_fast(core::slice::from_ref(&m)) == 0 {
            self.validate_insert(&m, None)?;
            self.apply_insert(m);
        }
        Ok(())
    }

    /// Removes the mapping whose page contains `vaddr` in `asid` and hands its record back.
    pub fn remove_by_vaddr(&mut self, asid: AsId, vaddr: u64) -> Result<Mapping, RemoveError> {
        if !self.runs.is_empty() {
            if let Some((k, r)) = self.runs.at(asid, vaddr) {
                let i = (vaddr - k.1) / crate::run::PAGE;
                if r.is_orig() {
                    // The original stays known, unmapped: the page cut out of the run.
                    let m = self.run_mapping(k, &r, i);
                    self.cut_run(k, i, 1);
                    return Ok(m);
                }
                self.materialise(k);
            }
        }
        let cap = self.lookup_cap_mut(asid, vaddr).ok_or(RemoveError::NotMapped)?;
        Ok(self.unmap(cap))
    }

    /// Removes the mapping the capability in `slot` holds and hands its record back.
    pub fn remove_by_cap(&mut self, slot: CapSlot) -> Result<Mapping, RemoveError> {
        if let Some((k, r, i)) = self.orig_run_of(slot) {
            // The original stays known, unmapped: the page cut out of the run.
            let m = self.run_mapping(k, r, i);
            self.cut_run(k, i, 1);
            return Ok(m);
        }
        self.settle_slot(slot);
        let cap = self.caps.pos(&slot).ok_or(RemoveError::UnknownCap)?;
        if self.caps.at(cap).map.is_none() {
            return Err(RemoveError::NotMapped);
        }
        Ok(self.unmap(cap))
    }

    /// Removes the mapping held by entry `index` of `leaf` and hands its record back.
    pub fn remove_at(&mut self, leaf: LeafTable, index: u16) -> Result<Mapping, RemoveError> {
        self.settle_leaf(leaf);
        let cap = self.pte_owner(None, leaf, index).ok_or(RemoveError::NotMapped)?;
        Ok(self.unmap(cap))
    }

    /// Removes every mapping of address space `asid` and hands the records back (in no particular order).
    pub fn remove_space(&mut self, asid: AsId) -> Vec<Mapping> {
        self.settle_space(asid);
        let mut out = Vec::with_capacity(self.space_len(asid));
        while let Some(&cap) = self.spaces.get(&asid).and_then(|v| v.maps.last()) {
            out.push(self.unmap(cap));
        }
        out
    }

    // ----- internals ---------------------------------------------------------------------------------------

    /// The node of `frame`, if both its original slot and its address match.
    pub(crate) fn frame_node(&self, frame: FrameId) -> Option<&FrameNode> {
        self.frames.get(&frame.slot).filter(|n| n.paddr == frame.paddr)
    }

    /// The id of the frame whose original is in `orig` (known).
    #[cfg(test)]
    pub(crate) fn frame_id(&self, orig: CapSlot) -> FrameId {
        FrameId::new(orig, self.frames.get(&orig).expect("known frame").paddr)
    }

    /// The id of the frame at position `f` of `frames`.
    #[inline]
    fn frame_at(&self, f: u32) -> FrameId {
        let (orig, node) = self.frames.entry_at(f);
        FrameId::new(orig, node.paddr)
    }

    /// Whether the capability at position `cap` is mapped, after the overlay's changes.
    fn cap_mapped(&self, ov: Option<&Overlay>, cap: u32, node: &CapNode) -> bool {
        ov.and_then(|o| o.mapped.get(&cap).copied())
            .unwrap_or(node.map.is_some())
    }

    /// The region `leaf` covers and its number of entries in use, after the overlay's changes.
    fn leaf_state(&self, ov: Option<&Overlay>, leaf: LeafTable) -> (Option<u64>, usize) {
        match ov.map(|o| o.leaf) {
            Some((l, region, count)) if l == leaf => (region, count),
            _ => self.live_leaf(&leaf).map_or((None, 0), |p| {
                let n = self.leaves.at(p);
                (Some(n.region), n.count as usize)
            }),
        }
    }

    /// The position of `leaf`'s node if it has entries in use (not idle): the hint first.
    #[inline(always)]
    pub(crate) fn live_leaf(&self, leaf: &LeafTable) -> Option<u32> {
        self.leaves
            .find(self.hint_leaf, leaf)
            .filter(|&p| self.leaves.at(p).count > 0)
    }

    /// Which capability (position) holds entry `index` of `leaf`, after the overlay's changes.
    pub(crate) fn pte_owner(&self, ov: Option<&Overlay>, leaf: LeafTable, index: u16) -> Option<u32> {
        let mut pos = None;
        if let Some(o) = ov.filter(|o| o.leaf.0 == leaf) {
            match o.pte(index) {
                UNTOUCHED => {}
                FREED => return None,
                cap => return Some(cap),
            }
            pos = Some(o.leaf_pos?);
        }
        let node = self.leaves.at(match pos {
            Some(p) => p,
            None => self.live_leaf(&leaf)?,
        });
        if index >= crate::ENTRIES_PER_TABLE || !node.is_set(index) {
            return None;
        }
        let size = leaf.level.frame_size();
        let vaddr = node.region | (u64::from(index) << size.bits());
        // None for a run's page (only read-only callers meet one: updates settle the leaf's runs first).
        let cap = self.by_vaddr.get(leaf.asid, size, vaddr);
        debug_assert!(cap.is_some() || !self.runs.is_empty());
        cap
    }

    /// Whether the database's record held by the capability at `cap` was removed by the overlay (a batch
    /// removal of its entry).
    fn removed_by(&self, ov: Option<&Overlay>, cap: u32) -> bool {
        let Some(o) = ov else { return false };
        let p = self.caps.at(cap).map.as_ref().expect("indexed cap is mapped");
        o.leaf_pos == Some(p.leaf) && o.pte(p.index) != UNTOUCHED
    }

    /// Inserts records of `recs`, in order, for as long as each passes every check of [`InsertError`] on the
    /// fast path, and returns how many it inserted. The first record not inserted may still be valid (the
    /// fast path gives up on anything unusual): the caller decides it with [`validate_insert`](Self::validate_insert).
    ///
    /// The checks are those of `validate_insert`, all at once: a record passes them all or is left to the
    /// caller. Consecutive records of one leaf table share the work on the leaf, its address space and span
    /// counters: the span counters and large-page counts of the leaf's pages are added when the run leaves the
    /// leaf (no check of a record of the leaf's size reads them).
    #[inline(always)]
    pub(crate) fn insert_fast(&mut self, recs: &[Mapping]) -> usize {
        let mut done = 0;
        while let Some(first) = recs.get(done) {
            let n = match self.live_leaf(&first.leaf) {
                Some(leaf) => self.insert_in_leaf(leaf, &recs[done..]),
                None => self.insert_new_leaf(first),
            };
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// The fast path for the records at the start of `recs` that go into the leaf table at position `leaf`
    /// (which exists): inserts them until one fails a check or names another leaf, and returns how many it
    /// inserted.
    #[inline(always)]
    pub(crate) fn insert_in_leaf<'a>(&mut self, leaf: u32, recs: impl IntoIterator<Item = &'a Mapping>) -> usize {
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            len,
            big,
            hint_leaf,
            ..
        } = self;
        *hint_leaf = leaf;
        let (key, l) = leaves.entry_at_mut(leaf);
        let size = key.level.frame_size();
        let (region, counters) = (l.region, l.spans);
        let s = spaces.at_mut(l.space);
        // The pages of one leaf are of one size, aligned, in the leaf's region (below the end of user space).
        let page_mask = size.bytes() - 1;
        let region_mask = !((size.bytes() << 9) - 1);
        // Whether the address space may have pages larger than the leaf's (then each page is probed for one).
        let probe_larger = (big[0] | big[1]) != 0
            && larger(size).iter().any(|&b| {
                let b = big_idx(b).expect("larger sizes are large");
                big[b] > 0 && s.big[b] > 0
            });
        let mut n = 0;
        for m in recs {
            if m.leaf != key
                || m.size != size
                || m.asid != key.asid
                || m.vaddr & page_mask != 0
                || m.vaddr & region_mask != region
                || m.index != size.entry_index(m.vaddr)
            {
                break;
            }
            // The cap is known, unmapped, a cap to `m.frame` (known, by F2), of the size.
            let Some(cap) = caps.pos_mut(&m.cap) else { break };
            let node = caps.at_mut(cap);
            let (orig, f) = frames.entry_at_mut(node.frame);
            if node.map.is_some() || orig != m.frame.slot || f.paddr != m.frame.paddr || f.size != size {
                break;
            }
            // No larger page contains the page, no smaller page lies inside it.
            if probe_larger && larger(size).iter().any(|&b| by_vaddr.get(m.asid, b, m.vaddr).is_some()) {
                break;
            }
            if size != PageSize::Small
                && counts_pages(
                    spans,
                    &SpanKey {
                        asid: m.asid,
                        size,
                        base: m.vaddr,
                    },
                )
            {
                break;
            }
            // No page of its size starts there (so, the region being the leaf's, the entry is free): the last
            // check, which claims the address.
            if by_vaddr.try_insert(m.asid, size, m.vaddr, cap).is_err() {
                break;
            }
            debug_assert!(!l.is_set(m.index));
            l.set(m.index);
            l.count += 1;
            let space_pos = pos32(s.maps.len());
            s.maps.push(cap);
            let frame_pos = pos32(f.mapped.len());
            f.mapped.push(cap);
            node.map = Some(Placed {
                vaddr: m.vaddr,
                leaf,
                frame_pos,
                space_pos,
                index: m.index,
                size,
                rights: m.rights,
            });
            n += 1;
        }
        if n > 0 {
            if let Some(b) = big_idx(size) {
                s.big[b] += n;
                big[b] += n as usize;
            }
            for sp in counters {
                if sp != NONE {
                    spans.at_mut(sp).count += n;
                }
            }
            *len += n as usize;
        }
        n as usize
    }

    /// The fast path for a record whose leaf table does not exist yet: 1 if it inserted it, creating the
    /// leaf, else 0.
    #[inline(never)]
    pub(crate) fn insert_new_leaf(&mut self, m: &Mapping) -> usize {
        let size = m.size;
        if !size.is_aligned(m.vaddr)
            || m.vaddr >= USER_VADDR_END
            || m.leaf.asid != m.asid
            || m.leaf.level != size.level()
            || m.index != size.entry_index(m.vaddr)
        {
            return 0;
        }
        let Some(cap) = self.caps.pos_mut(&m.cap) else { return 0 };
        let node = self.caps.at(cap);
        let (orig, f) = self.frames.entry_at(node.frame);
        if node.map.is_some() || orig != m.frame.slot || f.paddr != m.frame.paddr || f.size != size {
            return 0;
        }
        // Whether the address space has larger pages is not known without its node: any there are count.
        if larger(size).iter().any(|&b| {
            self.big[big_idx(b).expect("larger sizes are large")] > 0 && self.by_vaddr.get(m.asid, b, m.vaddr).is_some()
        }) {
            return 0;
        }
        if size != PageSize::Small
            && counts_pages(
                &self.spans,
                &SpanKey {
                    asid: m.asid,
                    size,
                    base: m.vaddr,
                },
            )
        {
            return 0;
        }
        let Ok(chunk) = self.by_vaddr.vacancy(m.asid, size, m.vaddr) else {
            return 0;
        };
        self.apply(
            *m,
            Plan {
                cap,
                frame: node.frame,
                leaf: None,
                chunk,
            },
        );
        1
    }

    /// Runs every check of [`InsertError`], in order, against the database with the overlay's changes.
    pub(crate) fn validate_insert(&self, m: &Mapping, ov: Option<&Overlay>) -> Result<(), InsertError> {
        let size = m.size;
        if !size.is_aligned(m.vaddr) {
            return Err(InsertError::Misaligned);
        }
        if m.vaddr >= USER_VADDR_END || USER_VADDR_END - m.vaddr < size.bytes() {
            return Err(InsertError::OutOfRange);
        }
        if m.leaf.asid != m.asid {
            return Err(InsertError::LeafSpaceMismatch);
        }
        if m.leaf.level != size.level() {
            return Err(InsertError::LeafLevelMismatch);
        }
        if m.index != size.entry_index(m.vaddr) {
            return Err(InsertError::IndexMismatch);
        }
        // The frame, through the cap when it is a cap to the frame (the usual case), else by its slot.
        let cap_pos = self.caps.pos(&m.cap);
        let via_cap = cap_pos.map(|c| self.caps.at(c).frame).and_then(|f| {
            let (orig, node) = self.frames.entry_at(f);
            (orig == m.frame.slot && node.paddr == m.frame.paddr).then_some(node)
        });
        let frame = match via_cap {
            Some(node) => node,
            None => self.frame_node(m.frame).ok_or(InsertError::UnknownFrame)?,
        };
        if frame.size != size {
            return Err(InsertError::SizeMismatch);
        }
        let cap_pos = cap_pos.ok_or(InsertError::UnknownCap)?;
        let cap = self.caps.at(cap_pos);
        if self.frames.key_at(cap.frame) != m.frame.slot {
            return Err(InsertError::NotACopy);
        }
        if self.cap_mapped(ov, cap_pos, cap) {
            return Err(InsertError::CapMapped);
        }
        if let (Some(region), _) = self.leaf_state(ov, m.leaf) {
            if region != size.leaf_region(m.vaddr) {
                return Err(InsertError::LeafRegionMismatch);
            }
        }
        if let Some(owner) = self.pte_owner(ov, m.leaf, m.index) {
            return Err(InsertError::PteClaimed(self.caps.key_at(owner)));
        }
        if self.overlaps(ov, m.asid, m.vaddr, size) {
            return Err(InsertError::Overlap);
        }
        Ok(())
    }

    /// Whether [vaddr, vaddr + size) (aligned) meets a mapping of `asid`.
    ///
    /// Aligned power-of-two ranges meet only if one contains the other. A page of size `s >= size` containing
    /// `vaddr` starts at `s.align_down(vaddr)`; a smaller page inside is counted by the span counter of the
    /// range. A batch can only have removed pages of its own leaf (same size); batch inserts are all of one size
    /// and region, so among themselves they can only meet at the same entry, which `PteClaimed` refuses first.
    fn overlaps(&self, ov: Option<&Overlay>, asid: AsId, vaddr: u64, size: PageSize) -> bool {
        for s in PageSize::ALL.into_iter().filter(|&s| s >= size) {
            if big_idx(s).is_some_and(|b| self.big[b] == 0) {
                continue;
            }
            if let Some(cap) = self.by_vaddr.get(asid, s, vaddr) {
                if !self.removed_by(ov, cap) {
                    return true;
                }
            }
        }
        size != PageSize::Small
            && counts_pages(
                &self.spans,
                &SpanKey {
                    asid,
                    size,
                    base: vaddr,
                },
            )
    }

    /// Adds a record to every index, without checking it (the caller did).
    pub(crate) fn apply_insert(&mut self, m: Mapping) {
        let cap = self.caps.pos(&m.cap).expect("known cap");
        let plan = Plan {
            cap,
            frame: self.caps.at(cap).frame,
            leaf: self.live_leaf(&m.leaf),
            chunk: self.by_vaddr.vacancy(m.asid, m.size, m.vaddr).expect("free address"),
        };
        self.apply(m, plan);
    }

    /// Adds a record to every index, at the positions `plan` found.
    #[inline(always)]
    fn apply(&mut self, m: Mapping, plan: Plan) {
        let Plan {
            cap,
            frame,
            leaf,
            chunk,
        } = plan;
        let size = m.size;
        let leaf = match leaf {
            Some(p) => p,
            None => new_leaf(
                &m,
                &mut self.leaves,
                &mut self.spaces,
                &mut self.spans,
                &mut self.idle_leaves,
            ),
        };
        self.hint_leaf = leaf;
        let l = self.leaves.at_mut(leaf);
        l.set(m.index);
        l.count += 1;
        let (space, spans) = (l.space, l.spans);
        for sp in spans {
            if sp != NONE {
                self.spans.at_mut(sp).count += 1;
            }
        }
        let s = self.spaces.at_mut(space);
        let space_pos = pos32(s.maps.len());
        s.maps.push(cap);
        if let Some(b) = big_idx(size) {
            s.big[b] += 1;
            self.big[b] += 1;
        }
        let f = self.frames.at_mut(frame);
        let frame_pos = pos32(f.mapped.len());
        f.mapped.push(cap);
        self.by_vaddr.insert(chunk, m.asid, size, m.vaddr, cap);
        self.caps.at_mut(cap).map = Some(Placed {
            vaddr: m.vaddr,
            leaf,
            frame_pos,
            space_pos,
            index: m.index,
            size,
            rights: m.rights,
        });
        self.len += 1;
    }

    /// Removes the record the capability at position `cap` (mapped) holds from every index and returns it.
    pub(crate) fn unmap(&mut self, cap: u32) -> Mapping {
        let mut out = None;
        self.unmap_in_leaf::<false>(&[cap], |m| out = Some(m));
        out.expect("one record removed")
    }

    /// Removes the records the capabilities at `caps` (mapped, distinct) hold, in order, appending them to
    /// `out`. With `DROP_COPIES`, each capability that is a copy is then forgotten too, as
    /// [`remove_copy`](Self::remove_copy) would: the caller has checked that each such copy has no children
    /// left by then (those of its children that come before it in `caps` are removed first).
    pub(crate) fn unmap_all<const DROP_COPIES: bool>(&mut self, caps: &[u32], out: &mut Vec<Mapping>) {
        let mut done = 0;
        while done < caps.len() {
            done += self.unmap_in_leaf::<DROP_COPIES>(&caps[done..], |m| out.push(m));
        }
    }

    /// Removes the records held by the capabilities at the start of `caps` (mapped, distinct) that are in the
    /// leaf table of the first, handing each to `out`; returns how many. With `DROP_COPIES`, a capability that
    /// is a copy is forgotten right after its record is removed (see [`unmap_all`](Self::unmap_all)). The
    /// span counters of the leaf's pages are updated once, at the end; the address chunk of the pages and the
    /// slot chunk of the copies are found through cursors.
    #[inline(always)]
    fn unmap_in_leaf<const DROP_COPIES: bool>(&mut self, cps: &[u32], mut out: impl FnMut(Mapping)) -> usize {
        let MappingDb {
            frames,
            caps,
            by_vaddr,
            spaces,
            leaves,
            spans,
            idle_leaves,
            len,
            big,
            copy_parents,
            ..
        } = self;
        let leaf = caps.at(cps[0]).map.as_ref().expect("mapped cap").leaf;
        let (key, l) = leaves.entry_at_mut(leaf);
        let (counters, space) = (l.spans, l.space);
        let size = key.level.frame_size();
        let s = spaces.at_mut(space);
        let (mut pages, mut slots) = (Cursor::default(), Cursor::default());
        let mut n = 0;
        for &cap in cps {
            let (slot, node) = caps.entry_at_mut(cap);
            let p = match node.map {
                Some(p) if p.leaf == leaf => p,
                _ => break,
            };
            node.map = None;
            let (frame_pos, parent_pos, copy_pos) = (node.frame, node.parent_pos, node.copy_pos);
            let (orig, f) = frames.entry_at_mut(frame_pos);
            let frame = FrameId::new(orig, f.paddr);
            if let Some(moved) = f.mapped.swap_remove(pos(p.frame_pos)) {
                placed_mut(caps, moved).frame_pos = p.frame_pos;
            }
            l.clear(p.index);
            if let Some(moved) = swap_remove(&mut s.maps, pos(p.space_pos)) {
                placed_mut(caps, moved).space_pos = p.space_pos;
            }
            let gone = by_vaddr.take_in(&mut pages, key.asid, size, p.vaddr);
            debug_assert_eq!(gone, cap);
            if DROP_COPIES && parent_pos != cap {
                // A copy (an original is its own parent): forgotten, as `remove_copy` would.
                debug_assert_eq!(caps.at(cap).children, 0);
                let gone = caps.index_mut().take_in(&mut slots, slot);
                debug_assert_eq!(gone, cap);
                caps.take_at(cap);
                drop_child(caps, parent_pos, copy_parents);
                if let Some(moved) = f.copies.swap_remove(pos(copy_pos)) {
                    caps.get_mut(&moved).expect("listed copy").copy_pos = copy_pos;
                }
            }
            out(to_mapping(slot, frame, key, &p));
            n += 1;
        }
        l.count -= n;
        if let Some(b) = big_idx(size) {
            s.big[b] -= n;
            big[b] -= n as usize;
        }
        let leaf_empty = l.count == 0;
        for sp in counters {
            if sp != NONE {
                spans.at_mut(sp).count -= n;
            }
        }
        if leaf_empty {
            leaf_emptied(leaves, spaces, spans, idle_leaves, leaf);
        }
        by_vaddr.remember_cursor(&pages);
        *len -= n as usize;
        n as usize
    }
}

/// Counts one more child of the capability at `pp`, and `copy_parents` one more copy with children if it is
/// a copy that had none.
#[inline(always)]
pub(crate) fn add_child(caps: &mut Caps, pp: u32, copy_parents: &mut usize) {
    let n = caps.at_mut(pp);
    *copy_parents += usize::from(n.children == 0 && n.parent_pos != pp);
    n.children += 1;
}

/// Counts one child less of the capability at `pp`, and `copy_parents` one copy with children less if it is
/// a copy left without.
#[inline(always)]
pub(crate) fn drop_child(caps: &mut Caps, pp: u32, copy_parents: &mut usize) {
    let n = caps.at_mut(pp);
    n.children -= 1;
    *copy_parents -= usize::from(n.children == 0 && n.parent_pos != pp);
}

/// The record held by the capability at `cap` (mapped).
#[inline(always)]
pub(crate) fn placed_mut(caps: &mut Caps, cap: u32) -> &mut Placed {
    caps.at_mut(cap).map.as_mut().expect("listed mapping")
}

/// Creates the (empty) node of `m.leaf`, with its address space's list and its span counters if new.
#[cold]
fn new_leaf(
    m: &Mapping,
    leaves: &mut Table<LeafTable, LeafNode>,
    spaces: &mut Table<AsId, SpaceNode>,
    spans: &mut Table<SpanKey, SpanNode>,
    idle: &mut IdleLeaves,
) -> u32 {
    new_leaf_at(m.leaf, m.vaddr, leaves, spaces, spans, idle)
}

/// Creates the (empty) node of `leaf`, covering the region of `vaddr`, with its address space's list and its
/// span counters if new; or, if `leaf` has an idle node, makes that cover the region and returns it.
#[cold]
pub(crate) fn new_leaf_at(
    leaf: LeafTable,
    vaddr: u64,
    leaves: &mut Table<LeafTable, LeafNode>,
    spaces: &mut Table<AsId, SpaceNode>,
    spans: &mut Table<SpanKey, SpanNode>,
    idle: &mut IdleLeaves,
) -> u32 {
    let (asid, size) = (leaf.asid, leaf.level.frame_size());
    let region = size.leaf_region(vaddr);
    if let Some(p) = leaves.pos(&leaf) {
        return wake_leaf(p, region, leaves, spans, idle);
    }
    let space = match spaces.pos(&asid) {
        Some(p) => p,
        None => spaces.insert_new(asid, SpaceNode::default()),
    };
    spaces.at_mut(space).leaves += 1;
    let counters = hold_counters(asid, size, region, spans);
    leaves.insert_new(
        leaf,
        LeafNode {
            region,
            used: [0; 8],
            count: 0,
            space,
            spans: counters,
        },
    )
}

/// Takes the idle leaf node at `p` back into use, covering `region` (its span counters follow the region);
/// returns `p`.
#[inline(always)]
pub(crate) fn wake_leaf(
    p: u32,
    region: u64,
    leaves: &mut Table<LeafTable, LeafNode>,
    spans: &mut Table<SpanKey, SpanNode>,
    idle: &mut IdleLeaves,
) -> u32 {
    idle.take(p);
    let (key, l) = leaves.entry_at_mut(p);
    debug_assert!(l.count == 0);
    if l.region != region {
        let old = l.spans;
        l.region = region;
        l.spans = hold_counters(key.asid, key.level.frame_size(), region, spans);
        release_counters(old, spans);
    }
    p
}

/// The span counters a leaf of pages of `size` covering `region` of `asid` names (see [`LeafNode::spans`]),
/// created if need be, each counting one more leaf.
fn hold_counters(asid: AsId, size: PageSize, region: u64, spans: &mut Table<SpanKey, SpanNode>) -> [u32; 2] {
    let mut counters = [NONE; 2];
    for (sp, &s) in counters.iter_mut().zip(larger(size)) {
        let key = SpanKey {
            asid,
            size: s,
            base: s.align_down(region),
        };
        *sp = match spans.pos(&key) {
            Some(p) => p,
            None => spans.insert_new(key, SpanNode::default()),
        };
        spans.at_mut(*sp).leaves += 1;
    }
    counters
}

/// Counts one leaf less for each of `counters`, removing those no leaf names (they count nothing then).
fn release_counters(counters: [u32; 2], spans: &mut Table<SpanKey, SpanNode>) {
    for sp in counters {
        if sp != NONE {
            let c = spans.at_mut(sp);
            c.leaves -= 1;
            if c.leaves == 0 {
                debug_assert_eq!(c.count, 0);
                spans.remove_at(sp);
            }
        }
    }
}

/// The leaf node at `leaf` has just lost its last entry: it becomes idle (kept with its space and span
/// counters, for a leaf table that comes back), and the oldest idle node beyond [`IDLE_LEAVES`] is removed.
#[inline(always)]
pub(crate) fn leaf_emptied(
    leaves: &mut Table<LeafTable, LeafNode>,
    spaces: &mut Table<AsId, SpaceNode>,
    spans: &mut Table<SpanKey, SpanNode>,
    idle: &mut IdleLeaves,
    leaf: u32,
) {
    if let Some(old) = idle.push(leaf) {
        drop_leaf(leaves, spaces, spans, old);
    }
}

/// Removes the idle leaf node at `leaf`, and its space and span counters if no other leaf names them.
#[cold]
fn drop_leaf(
    leaves: &mut Table<LeafTable, LeafNode>,
    spaces: &mut Table<AsId, SpaceNode>,
    spans: &mut Table<SpanKey, SpanNode>,
    leaf: u32,
) {
    let l = leaves.remove_at(leaf);
    debug_assert_eq!(l.count, 0);
    release_counters(l.spans, spans);
    let s = spaces.at_mut(l.space);
    s.leaves -= 1;
    if s.leaves == 0 {
        debug_assert!(s.maps.is_empty());
        spaces.remove_at(l.space);
    }
}

#[inline]
pub(crate) fn to_mapping(cap: CapSlot, frame: FrameId, leaf: LeafTable, p: &Placed) -> Mapping {
    Mapping {
        frame,
        cap,
        asid: leaf.asid,
        vaddr: p.vaddr,
        size: p.size,
        rights: p.rights,
        leaf,
        index: p.index,
    }
}
