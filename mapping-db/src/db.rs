//! The database: tables, updates and queries.

use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::error::{AddCopyError, AddFrameError, InsertError, RemoveCopyError, RemoveError, RemoveFrameError};
use crate::types::{AsId, CapSlot, FrameId, LeafTable, Mapping, PageSize, Rights, USER_VADDR_END};

/// Per frame (keyed by its original slot): its address, size and the slots of every capability to it, and of those holding mappings.
#[derive(Clone, Debug)]
pub(crate) struct FrameNode {
    pub(crate) paddr: u64,
    pub(crate) size: PageSize,
    /// Every capability to the frame, original included; `caps[s].copy_pos` is `s`'s position.
    pub(crate) copies: Vec<CapSlot>,
    /// The capabilities that hold a mapping; `caps[s].map.frame_pos` is `s`'s position.
    pub(crate) mapped: Vec<CapSlot>,
}

/// Per capability slot: which frame, where it was derived from, and the mapping it holds.
#[derive(Clone, Debug)]
pub(crate) struct CapNode {
    /// The frame's original slot (the key of `frames`).
    pub(crate) frame: CapSlot,
    /// The slot this copy was derived from; the slot itself for the original.
    pub(crate) parent: CapSlot,
    /// How many copies name this slot as their parent.
    pub(crate) children: u32,
    /// Position in `frames[frame].copies`.
    pub(crate) copy_pos: u32,
    /// The mapping record, if the capability is mapped.
    pub(crate) map: Option<Placed>,
}

/// The part of a mapping record that is not implied by its capability node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) vaddr: u64,
    pub(crate) table: CapSlot,
    pub(crate) asid: AsId,
    /// Position in `frames[frame].mapped`.
    pub(crate) frame_pos: u32,
    /// Position in `spaces[asid]`.
    pub(crate) space_pos: u32,
    pub(crate) index: u16,
    pub(crate) size: PageSize,
    pub(crate) rights: Rights,
}

/// Key of the (address space, page start) index.
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

/// Per leaf table that has entries in use: the region it covers and which entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeafNode {
    pub(crate) region: u64,
    pub(crate) used: [u64; 8],
}

impl LeafNode {
    pub(crate) fn is_set(&self, index: u16) -> bool {
        self.used[usize::from(index / 64)] & (1 << (index % 64)) != 0
    }
    pub(crate) fn count(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }
    fn set(&mut self, index: u16) {
        self.used[usize::from(index / 64)] |= 1 << (index % 64);
    }
    fn clear(&mut self, index: u16) {
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

/// The root task's mapping database. See the crate documentation for the model and the invariants.
#[derive(Clone, Debug, Default)]
pub struct MappingDb {
    /// Original slot -> the frame.
    pub(crate) frames: HashMap<CapSlot, FrameNode>,
    /// Every capability the database knows, with the mapping record it holds (the by-cap index).
    pub(crate) caps: HashMap<CapSlot, CapNode>,
    /// (address space, page start) -> the capability whose mapping starts there.
    pub(crate) by_vaddr: HashMap<VKey, CapSlot>,
    /// Address space -> the capabilities holding its mappings; no empty lists.
    pub(crate) spaces: HashMap<AsId, Vec<CapSlot>>,
    /// Leaf tables with at least one entry in use.
    pub(crate) leaves: HashMap<LeafTable, LeafNode>,
    /// Nonzero counts of pages inside larger aligned regions (for the overlap check of large pages).
    pub(crate) spans: HashMap<SpanKey, u32>,
    pub(crate) len: usize,
}

/// What a batch has changed so far, seen through by validation before anything is applied.
#[derive(Default)]
pub(crate) struct Overlay {
    /// The batch's leaf table, with its region and number of entries after the batch so far.
    pub(crate) leaf: Option<(LeafTable, Option<u64>, usize)>,
    /// Capabilities whose mapped state the batch changed: `true` mapped, `false` unmapped.
    pub(crate) mapped: HashMap<CapSlot, bool>,
    /// Entries of the batch's leaf the batch changed: `Some(cap)` claimed, `None` free.
    pub(crate) ptes: HashMap<u16, Option<CapSlot>>,
}

fn pos(p: u32) -> usize {
    p as usize
}

fn pos32(p: usize) -> u32 {
    u32::try_from(p).expect("more than u32::MAX entries in one list")
}

impl MappingDb {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    // ----- frames and copies -------------------------------------------------------------------------------

    /// Records a frame of `size` whose original capability is in `frame.slot`.
    pub fn add_frame(&mut self, frame: FrameId, size: PageSize) -> Result<(), AddFrameError> {
        if self.caps.contains_key(&frame.slot) {
            return Err(AddFrameError::SlotInUse);
        }
        if !size.is_aligned(frame.paddr) {
            return Err(AddFrameError::Misaligned);
        }
        let slot = frame.slot;
        self.caps.insert(
            slot,
            CapNode {
                frame: slot,
                parent: slot,
                children: 0,
                copy_pos: 0,
                map: None,
            },
        );
        let node = FrameNode {
            paddr: frame.paddr,
            size,
            copies: alloc::vec![slot],
            mapped: Vec::new(),
        };
        self.frames.insert(slot, node);
        Ok(())
    }

    /// Records that `copy` holds a copy of a capability to `frame`, derived from the one in `parent`
    /// (`CNode_Copy`/`CNode_Mint` from `parent` to `copy`).
    pub fn add_copy(&mut self, frame: FrameId, copy: CapSlot, parent: CapSlot) -> Result<(), AddCopyError> {
        let node = self
            .frames
            .get_mut(&frame.slot)
            .filter(|n| n.paddr == frame.paddr)
            .ok_or(AddCopyError::UnknownFrame)?;
        if self.caps.contains_key(&copy) {
            return Err(AddCopyError::SlotInUse);
        }
        let p = self.caps.get_mut(&parent).ok_or(AddCopyError::UnknownParent)?;
        if p.frame != frame.slot {
            return Err(AddCopyError::ParentOfOtherFrame);
        }
        p.children += 1;
        let copy_pos = pos32(node.copies.len());
        node.copies.push(copy);
        self.caps.insert(
            copy,
            CapNode {
                frame: frame.slot,
                parent,
                children: 0,
                copy_pos,
                map: None,
            },
        );
        Ok(())
    }

    /// Forgets the copy in `slot`.
    ///
    /// Policy: refused for an original (use [`remove_frame`](Self::remove_frame)), for a copy that holds a
    /// mapping, and for a copy other copies were derived from and are still present. So the derivation tree
    /// only ever loses leaves, and every recorded parent exists.
    pub fn remove_copy(&mut self, slot: CapSlot) -> Result<(), RemoveCopyError> {
        let node = self.caps.get(&slot).ok_or(RemoveCopyError::UnknownCap)?;
        let parent = node.parent;
        if parent == slot {
            return Err(RemoveCopyError::IsOriginal);
        }
        if node.map.is_some() {
            return Err(RemoveCopyError::Mapped);
        }
        if node.children > 0 {
            return Err(RemoveCopyError::HasChildren);
        }
        let node = self.caps.remove(&slot).expect("present");
        self.caps.get_mut(&parent).expect("parent of a present copy").children -= 1;
        let copies = &mut self
            .frames
            .get_mut(&node.frame)
            .expect("frame of a present copy")
            .copies;
        copies.swap_remove(pos(node.copy_pos));
        if let Some(&moved) = copies.get(pos(node.copy_pos)) {
            self.caps.get_mut(&moved).expect("listed copy").copy_pos = node.copy_pos;
        }
        Ok(())
    }

    /// Forgets a frame and its original capability. Refused while copies exist or the original is mapped.
    pub fn remove_frame(&mut self, frame: FrameId) -> Result<(), RemoveFrameError> {
        let node = self.frame_node(frame).ok_or(RemoveFrameError::UnknownFrame)?;
        if node.copies.len() > 1 {
            return Err(RemoveFrameError::HasCopies);
        }
        if !node.mapped.is_empty() {
            return Err(RemoveFrameError::Mapped);
        }
        self.frames.remove(&frame.slot);
        self.caps.remove(&frame.slot);
        Ok(())
    }

    /// The slots of every capability to `frame`, original included (none if the frame is unknown).
    pub fn copies_of(&self, frame: FrameId) -> impl Iterator<Item = CapSlot> + '_ {
        self.frame_node(frame)
            .into_iter()
            .flat_map(|n| n.copies.iter().copied())
    }

    /// The frame the capability in `slot` refers to.
    pub fn frame_of_cap(&self, slot: CapSlot) -> Option<FrameId> {
        self.caps.get(&slot).map(|n| self.frame_id(n.frame))
    }

    /// The slot the copy in `slot` was derived from (`None` for an original or an unknown slot).
    pub fn parent_of(&self, slot: CapSlot) -> Option<CapSlot> {
        self.caps.get(&slot).map(|n| n.parent).filter(|&p| p != slot)
    }

    /// How many present copies were derived directly from the capability in `slot`.
    pub fn children_of(&self, slot: CapSlot) -> usize {
        self.caps.get(&slot).map_or(0, |n| n.children as usize)
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
        self.caps.len()
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

    /// The record of the mapping the capability in `cap` holds; the caller knows `cap` is mapped.
    pub(crate) fn record(&self, cap: CapSlot) -> Mapping {
        let node = &self.caps[&cap];
        let p = node.map.as_ref().expect("record of an unmapped cap");
        to_mapping(cap, self.frame_id(node.frame), p)
    }

    /// The mapping the capability in `slot` holds.
    pub fn mapping_of_cap(&self, slot: CapSlot) -> Option<Mapping> {
        let node = self.caps.get(&slot)?;
        node.map
            .as_ref()
            .map(|p| to_mapping(slot, self.frame_id(node.frame), p))
    }

    /// The mapping of address space `asid` whose page contains `vaddr` (any address in the page).
    ///
    /// O(1): probes the starts of the 4 KiB, 2 MiB and 1 GiB pages that would contain `vaddr`.
    pub fn lookup(&self, asid: AsId, vaddr: u64) -> Option<Mapping> {
        self.lookup_cap(asid, vaddr).map(|cap| self.record(cap))
    }

    pub(crate) fn lookup_cap(&self, asid: AsId, vaddr: u64) -> Option<CapSlot> {
        PageSize::ALL.into_iter().find_map(|size| {
            let cap = *self.by_vaddr.get(&VKey {
                asid,
                vaddr: size.align_down(vaddr),
            })?;
            let p = self.caps[&cap].map.as_ref().expect("indexed cap is mapped");
            (vaddr - p.vaddr < p.size.bytes()).then_some(cap)
        })
    }

    /// Every mapping of `frame`, in every address space: who can reach this memory.
    pub fn mappings_of_frame(&self, frame: FrameId) -> impl Iterator<Item = Mapping> + '_ {
        self.frame_node(frame)
            .into_iter()
            .flat_map(move |n| n.mapped.iter().map(move |&cap| self.record(cap)))
    }

    /// Every mapping of address space `asid` (in no particular order).
    pub fn mappings_in(&self, asid: AsId) -> impl Iterator<Item = Mapping> + '_ {
        self.spaces
            .get(&asid)
            .into_iter()
            .flat_map(move |v| v.iter().map(move |&cap| self.record(cap)))
    }

    /// Number of mappings of address space `asid`.
    pub fn space_len(&self, asid: AsId) -> usize {
        self.spaces.get(&asid).map_or(0, Vec::len)
    }

    /// Number of entries of `leaf` in use.
    pub fn leaf_used(&self, leaf: LeafTable) -> usize {
        self.leaves.get(&leaf).map_or(0, LeafNode::count)
    }

    /// The mappings held by entries of `leaf`, by ascending entry index.
    pub fn leaf_entries(&self, leaf: LeafTable) -> impl Iterator<Item = Mapping> + '_ {
        self.leaves.get(&leaf).into_iter().flat_map(move |node| {
            let size = leaf.level.page_size();
            let region = node.region;
            node.indices().map(move |i| {
                let vaddr = region | (u64::from(i) << size.bits());
                self.record(self.by_vaddr[&VKey { asid: leaf.asid, vaddr }])
            })
        })
    }

    /// The mapping held by entry `index` of `leaf`.
    pub fn mapping_at(&self, leaf: LeafTable, index: u16) -> Option<Mapping> {
        self.pte_owner(None, leaf, index).map(|cap| self.record(cap))
    }

    /// The leaf tables with entries in use (in no particular order).
    pub fn leaves(&self) -> impl Iterator<Item = LeafTable> + '_ {
        self.leaves.keys().copied()
    }

    // ----- mappings: updates -------------------------------------------------------------------------------

    /// Records `m`. Refused, with nothing changed, when any check of [`InsertError`] fails.
    pub fn insert(&mut self, m: Mapping) -> Result<(), InsertError> {
        self.validate_insert(&m, None)?;
        self.apply_insert(m);
        Ok(())
    }

    /// Removes the mapping whose page contains `vaddr` in `asid` and hands its record back.
    pub fn remove_by_vaddr(&mut self, asid: AsId, vaddr: u64) -> Result<Mapping, RemoveError> {
        let cap = self.lookup_cap(asid, vaddr).ok_or(RemoveError::NotMapped)?;
        Ok(self.unmap(cap))
    }

    /// Removes the mapping the capability in `slot` holds and hands its record back.
    pub fn remove_by_cap(&mut self, slot: CapSlot) -> Result<Mapping, RemoveError> {
        let node = self.caps.get(&slot).ok_or(RemoveError::UnknownCap)?;
        if node.map.is_none() {
            return Err(RemoveError::NotMapped);
        }
        Ok(self.unmap(slot))
    }

    /// Removes the mapping held by entry `index` of `leaf` and hands its record back.
    pub fn remove_at(&mut self, leaf: LeafTable, index: u16) -> Result<Mapping, RemoveError> {
        let cap = self.pte_owner(None, leaf, index).ok_or(RemoveError::NotMapped)?;
        Ok(self.unmap(cap))
    }

    /// Removes every mapping of address space `asid` and hands the records back (in no particular order).
    pub fn remove_space(&mut self, asid: AsId) -> Vec<Mapping> {
        let mut out = Vec::with_capacity(self.space_len(asid));
        while let Some(&cap) = self.spaces.get(&asid).and_then(|v| v.last()) {
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
    pub(crate) fn frame_id(&self, orig: CapSlot) -> FrameId {
        FrameId::new(orig, self.frames[&orig].paddr)
    }

    /// Whether the capability in `cap` (known) is mapped, after the overlay's changes.
    fn cap_mapped(&self, ov: Option<&Overlay>, cap: CapSlot, node: &CapNode) -> bool {
        ov.and_then(|o| o.mapped.get(&cap).copied())
            .unwrap_or(node.map.is_some())
    }

    /// The region `leaf` covers and its number of entries in use, after the overlay's changes.
    fn leaf_state(&self, ov: Option<&Overlay>, leaf: LeafTable) -> (Option<u64>, usize) {
        match ov.and_then(|o| o.leaf) {
            Some((l, region, count)) if l == leaf => (region, count),
            _ => self
                .leaves
                .get(&leaf)
                .map_or((None, 0), |n| (Some(n.region), n.count())),
        }
    }

    /// Which capability holds entry `index` of `leaf`, after the overlay's changes.
    pub(crate) fn pte_owner(&self, ov: Option<&Overlay>, leaf: LeafTable, index: u16) -> Option<CapSlot> {
        if let Some(o) = ov {
            if o.leaf.is_some_and(|(l, _, _)| l == leaf) {
                if let Some(&owner) = o.ptes.get(&index) {
                    return owner;
                }
            }
        }
        let node = self.leaves.get(&leaf)?;
        if index >= crate::ENTRIES_PER_TABLE || !node.is_set(index) {
            return None;
        }
        let vaddr = node.region | (u64::from(index) << leaf.level.page_size().bits());
        Some(self.by_vaddr[&VKey { asid: leaf.asid, vaddr }])
    }

    /// Whether the database's record held by `cap` was removed by the overlay (a batch removal of its entry).
    fn removed_by(&self, ov: Option<&Overlay>, cap: CapSlot) -> bool {
        let Some(o) = ov else { return false };
        let Some((leaf, _, _)) = o.leaf else { return false };
        let p = self.caps[&cap].map.as_ref().expect("indexed cap is mapped");
        leaf.table == p.table
            && leaf.asid == p.asid
            && leaf.level == p.size.leaf_level()
            && o.ptes.contains_key(&p.index)
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
        if m.leaf.level != size.leaf_level() {
            return Err(InsertError::LeafLevelMismatch);
        }
        if m.index != size.entry_index(m.vaddr) {
            return Err(InsertError::IndexMismatch);
        }
        let frame = self.frame_node(m.frame).ok_or(InsertError::UnknownFrame)?;
        if frame.size != size {
            return Err(InsertError::SizeMismatch);
        }
        let cap = self.caps.get(&m.cap).ok_or(InsertError::UnknownCap)?;
        if cap.frame != m.frame.slot {
            return Err(InsertError::NotACopy);
        }
        if self.cap_mapped(ov, m.cap, cap) {
            return Err(InsertError::CapMapped);
        }
        if let (Some(region), _) = self.leaf_state(ov, m.leaf) {
            if region != size.leaf_region(m.vaddr) {
                return Err(InsertError::LeafRegionMismatch);
            }
        }
        if let Some(owner) = self.pte_owner(ov, m.leaf, m.index) {
            return Err(InsertError::PteClaimed(owner));
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
            if let Some(&cap) = self.by_vaddr.get(&VKey {
                asid,
                vaddr: s.align_down(vaddr),
            }) {
                let p_size = self.caps[&cap].map.as_ref().expect("indexed cap is mapped").size;
                if p_size == s && !self.removed_by(ov, cap) {
                    return true;
                }
            }
        }
        size != PageSize::Small
            && self.spans.contains_key(&SpanKey {
                asid,
                size,
                base: vaddr,
            })
    }

    /// Adds a validated record to every index.
    pub(crate) fn apply_insert(&mut self, m: Mapping) {
        let frame = self.frames.get_mut(&m.frame.slot).expect("validated");
        let frame_pos = pos32(frame.mapped.len());
        frame.mapped.push(m.cap);
        let space = self.spaces.entry(m.asid).or_default();
        let space_pos = pos32(space.len());
        space.push(m.cap);
        self.by_vaddr.insert(
            VKey {
                asid: m.asid,
                vaddr: m.vaddr,
            },
            m.cap,
        );
        self.leaves
            .entry(m.leaf)
            .or_insert(LeafNode {
                region: m.size.leaf_region(m.vaddr),
                used: [0; 8],
            })
            .set(m.index);
        for s in PageSize::ALL.into_iter().filter(|&s| s > m.size) {
            *self
                .spans
                .entry(SpanKey {
                    asid: m.asid,
                    size: s,
                    base: s.align_down(m.vaddr),
                })
                .or_insert(0) += 1;
        }
        self.caps.get_mut(&m.cap).expect("validated").map = Some(Placed {
            vaddr: m.vaddr,
            table: m.leaf.table,
            asid: m.asid,
            frame_pos,
            space_pos,
            index: m.index,
            size: m.size,
            rights: m.rights,
        });
        self.len += 1;
    }

    /// Removes the record `cap` (mapped) holds from every index and returns it.
    fn unmap(&mut self, cap: CapSlot) -> Mapping {
        let node = self.caps.get_mut(&cap).expect("known cap");
        let p = node.map.take().expect("mapped cap");
        let frame = self.frames.get_mut(&node.frame).expect("frame of a cap");
        let m = to_mapping(cap, FrameId::new(node.frame, frame.paddr), &p);

        let mapped = &mut frame.mapped;
        mapped.swap_remove(pos(p.frame_pos));
        if let Some(&moved) = mapped.get(pos(p.frame_pos)) {
            self.caps
                .get_mut(&moved)
                .and_then(|n| n.map.as_mut())
                .expect("listed mapping")
                .frame_pos = p.frame_pos;
        }

        let space = self.spaces.get_mut(&m.asid).expect("space of a mapping");
        space.swap_remove(pos(p.space_pos));
        if let Some(&moved) = space.get(pos(p.space_pos)) {
            self.caps
                .get_mut(&moved)
                .and_then(|n| n.map.as_mut())
                .expect("listed mapping")
                .space_pos = p.space_pos;
        }
        if space.is_empty() {
            self.spaces.remove(&m.asid);
        }

        self.by_vaddr.remove(&VKey {
            asid: m.asid,
            vaddr: m.vaddr,
        });

        let leaf = self.leaves.get_mut(&m.leaf).expect("leaf of a mapping");
        leaf.clear(m.index);
        if leaf.used == [0; 8] {
            self.leaves.remove(&m.leaf);
        }

        for s in PageSize::ALL.into_iter().filter(|&s| s > m.size) {
            let key = SpanKey {
                asid: m.asid,
                size: s,
                base: s.align_down(m.vaddr),
            };
            let count = self.spans.get_mut(&key).expect("span of a mapping");
            *count -= 1;
            if *count == 0 {
                self.spans.remove(&key);
            }
        }
        self.len -= 1;
        m
    }
}

pub(crate) fn to_mapping(cap: CapSlot, frame: FrameId, p: &Placed) -> Mapping {
    Mapping {
        frame,
        cap,
        asid: p.asid,
        vaddr: p.vaddr,
        size: p.size,
        rights: p.rights,
        leaf: LeafTable {
            asid: p.asid,
            table: p.table,
            level: p.size.leaf_level(),
        },
        index: p.index,
    }
}
