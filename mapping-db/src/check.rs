//! The invariant check: every implication of the crate doc's `# Invariants`, verified from scratch.

use hashbrown::HashMap;

use crate::db::{MappingDb, SpanKey, VKey};
use crate::error::InvariantViolation as V;
use crate::types::{FrameId, PageSize, USER_VADDR_END};

impl MappingDb {
    /// Verifies every invariant of the crate documentation; `Err` names the first one found broken.
    ///
    /// O(records + capabilities x derivation depth). For tests and debugging: every update keeps the
    /// invariants, so this fails only on a bug in this crate.
    pub fn check(&self) -> Result<(), V> {
        // F1: each frame's original.
        for (&orig, node) in &self.frames {
            let f = FrameId::new(orig, node.paddr);
            match self.caps.get(&orig) {
                Some(c) if c.frame == orig && c.parent == orig && node.size.is_aligned(node.paddr) => {}
                _ => return Err(V::Original(f)),
            }
        }
        let mut children: HashMap<_, u32> = HashMap::with_capacity(self.caps.len());
        let mut mapped = 0;
        for (&s, c) in &self.caps {
            // F2: frame present, position in its copy list.
            let frame = self.frames.get(&c.frame).ok_or(V::CopyList(s))?;
            if frame.copies.get(c.copy_pos as usize) != Some(&s) {
                return Err(V::CopyList(s));
            }
            // F3: parent of the same frame; only the original is its own parent; no cycle.
            if c.parent == s {
                if s != c.frame {
                    return Err(V::Derivation(s));
                }
            } else {
                if self.caps.get(&c.parent).is_none_or(|pc| pc.frame != c.frame) {
                    return Err(V::Derivation(s));
                }
                *children.entry(c.parent).or_insert(0) += 1;
                let (mut at, mut steps) = (c.parent, 0);
                while self.caps[&at].parent != at {
                    steps += 1;
                    at = self.caps[&at].parent;
                    if steps > self.caps.len() || !self.caps.contains_key(&at) {
                        return Err(V::Derivation(s));
                    }
                }
            }
            let Some(p) = c.map.as_ref() else { continue };
            mapped += 1;
            let m = crate::db::to_mapping(s, FrameId::new(c.frame, frame.paddr), p);
            // R1: well formed.
            let size = m.size;
            if !size.is_aligned(m.vaddr)
                || m.vaddr >= USER_VADDR_END
                || USER_VADDR_END - m.vaddr < size.bytes()
                || m.index != size.entry_index(m.vaddr)
                || frame.size != size
            {
                return Err(V::Record(s));
            }
            // R2-R5: every index has the record where it says.
            if self.by_vaddr.get(&VKey {
                asid: m.asid,
                vaddr: m.vaddr,
            }) != Some(&s)
            {
                return Err(V::VaddrIndex(s));
            }
            if frame.mapped.get(p.frame_pos as usize) != Some(&s) {
                return Err(V::FrameIndex(s));
            }
            if self.spaces.get(&m.asid).and_then(|v| v.get(p.space_pos as usize)) != Some(&s) {
                return Err(V::SpaceIndex(s));
            }
            match self.leaves.get(&m.leaf) {
                Some(l) if l.is_set(m.index) && l.region == size.leaf_region(m.vaddr) => {}
                _ => return Err(V::LeafIndex(s)),
            }
            // O1: no larger page of the space contains this one.
            for big in PageSize::ALL.into_iter().filter(|&b| b > size) {
                if let Some(&other) = self.by_vaddr.get(&VKey {
                    asid: m.asid,
                    vaddr: big.align_down(m.vaddr),
                }) {
                    if self
                        .caps
                        .get(&other)
                        .and_then(|c| c.map.as_ref())
                        .is_some_and(|o| o.size == big)
                    {
                        return Err(V::Overlap(s));
                    }
                }
            }
        }
        for (&s, c) in &self.caps {
            if c.children != children.get(&s).copied().unwrap_or(0) {
                return Err(V::Derivation(s));
            }
        }
        // Counts: every index entry belongs to a record (with the implications above, a bijection).
        let frame_copies: usize = self.frames.values().map(|n| n.copies.len()).sum();
        let frame_maps: usize = self.frames.values().map(|n| n.mapped.len()).sum();
        let space_maps: usize = self.spaces.values().map(|v| v.len()).sum();
        let leaf_maps: usize = self.leaves.values().map(|l| l.count()).sum();
        if frame_copies != self.caps.len()
            || mapped != self.len
            || frame_maps != self.len
            || space_maps != self.len
            || leaf_maps != self.len
            || self.by_vaddr.len() != self.len
            || self.spaces.values().any(|v| v.is_empty())
            || self.leaves.values().any(|l| l.count() == 0)
        {
            return Err(V::Count);
        }
        // S1: span counters, recomputed.
        let mut spans: HashMap<SpanKey, u32> = HashMap::with_capacity(self.spans.len());
        for c in self.caps.values() {
            let Some(p) = c.map.as_ref() else { continue };
            for big in PageSize::ALL.into_iter().filter(|&b| b > p.size) {
                *spans
                    .entry(SpanKey {
                        asid: p.asid,
                        size: big,
                        base: big.align_down(p.vaddr),
                    })
                    .or_insert(0) += 1;
            }
        }
        if spans != self.spans {
            return Err(V::SpanCount);
        }
        Ok(())
    }
}
