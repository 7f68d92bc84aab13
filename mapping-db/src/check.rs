//! The invariant check: every implication of the crate doc's `# Invariants`, verified from scratch.

use hashbrown::HashMap;

use crate::db::{big_idx, larger, MappingDb, SpanKey, IDLE_LEAVES};
use crate::error::InvariantViolation as V;
use crate::run::PAGE;
use crate::table::NONE;
use crate::types::{AsId, CapSlot, FrameId, PageSize, USER_VADDR_END};

impl MappingDb {
    /// Verifies every invariant of the crate documentation; `Err` names the first one found broken.
    ///
    /// O(records + capabilities x derivation depth), plus sorting the tables' free lists. For tests and
    /// debugging: every update keeps the invariants, so this fails only on a bug in this crate.
    pub fn check(&self) -> Result<(), V> {
        // F1: each frame's original.
        for (f_pos, orig, node) in self.frames.iter() {
            let f = FrameId::new(orig, node.paddr);
            match self.caps.pos(&orig) {
                Some(cp) => {
                    let c = self.caps.at(cp);
                    if c.frame != f_pos || c.parent != orig || c.parent_pos != cp || !node.size.is_aligned(node.paddr) {
                        return Err(V::Original(f));
                    }
                }
                None => return Err(V::Original(f)),
            }
        }
        let mut children: HashMap<u32, u32> = HashMap::with_capacity(self.caps.len());
        let mut mapped = 0;
        let mut big = [0usize; 2];
        let mut space_big: HashMap<AsId, [u32; 2]> = HashMap::new();
        for (cp, s, c) in self.caps.iter() {
            // F2: frame present, position in its copy list.
            let (orig, frame) = self.frames.slot(c.frame).ok_or(V::CopyList(s))?;
            if frame.copies.get(c.copy_pos as usize) != Some(&s) {
                return Err(V::CopyList(s));
            }
            // F3: parent of the same frame; only the original is its own parent; no cycle.
            if c.parent == s {
                if s != orig || c.parent_pos != cp {
                    return Err(V::Derivation(s));
                }
            } else {
                match self.caps.slot(c.parent_pos) {
                    Some((ps, pc)) if ps == c.parent && pc.frame == c.frame => {}
                    _ => return Err(V::Derivation(s)),
                }
                *children.entry(c.parent_pos).or_insert(0) += 1;
                let (mut at, mut steps) = (c.parent_pos, 0);
                loop {
                    let (k, n) = self.caps.slot(at).ok_or(V::Derivation(s))?;
                    if n.parent == k {
                        break;
                    }
                    steps += 1;
                    at = n.parent_pos;
                    if steps > self.caps.len() {
                        return Err(V::Derivation(s));
                    }
                }
            }
            let Some(p) = c.map.as_ref() else { continue };
            mapped += 1;
            // R1: well formed (the record's space and table are its leaf's).
            let (leaf, l) = self.leaves.slot(p.leaf).ok_or(V::Record(s))?;
            let m = crate::db::to_mapping(s, FrameId::new(orig, frame.paddr), leaf, p);
            let size = m.size;
            if !size.is_aligned(m.vaddr)
                || m.vaddr >= USER_VADDR_END
                || USER_VADDR_END - m.vaddr < size.bytes()
                || m.index != size.entry_index(m.vaddr)
                || leaf.level != size.level()
                || frame.size != size
            {
                return Err(V::Record(s));
            }
            // R2-R5: every index has the record where it says.
            if self.by_vaddr.get(m.asid, size, m.vaddr) != Some(cp) {
                return Err(V::VaddrIndex(s));
            }
            if frame.mapped.get(p.frame_pos as usize) != Some(&cp) {
                return Err(V::FrameIndex(s));
            }
            if self.spaces.get(&m.asid).and_then(|v| v.maps.get(p.space_pos as usize)) != Some(&cp) {
                return Err(V::SpaceIndex(s));
            }
            if !l.is_set(m.index) || l.region != size.leaf_region(m.vaddr) {
                return Err(V::LeafIndex(s));
            }
            // O1: no larger page of the space contains this one.
            for &b in larger(size) {
                if self.by_vaddr.get(m.asid, b, m.vaddr).is_some() {
                    return Err(V::Overlap(s));
                }
            }
            if let Some(b) = big_idx(size) {
                big[b] += 1;
                space_big.entry(m.asid).or_default()[b] += 1;
            }
        }
        let mut copy_parents = 0;
        for (cp, s, c) in self.caps.iter() {
            if c.children != children.get(&cp).copied().unwrap_or(0) {
                return Err(V::Derivation(s));
            }
            copy_parents += usize::from(c.children > 0 && c.parent_pos != cp);
        }
        // Counts: every index entry belongs to a record (with the implications above, a bijection); the
        // tables' indexes agree with their slabs; the cached counts and positions agree with what they count.
        let frame_copies: usize = self.frames.values().map(|n| n.copies.len()).sum();
        let frame_maps: usize = self.frames.values().map(|n| n.mapped.len()).sum();
        let space_maps: usize = self.spaces.values().map(|v| v.maps.len()).sum();
        let leaf_maps: usize = self.leaves.values().map(|l| l.bits()).sum();
        // Idle leaves: the leaves without entries in use, listed once each, at most IDLE_LEAVES; each space is
        // named by as many leaves as it counts (so by one at least).
        let idle = self.idle_leaves.as_slice();
        let mut idle_sorted = idle.to_vec();
        idle_sorted.sort_unstable();
        idle_sorted.dedup();
        let mut space_leaves: HashMap<u32, u32> = HashMap::new();
        for l in self.leaves.values() {
            *space_leaves.entry(l.space).or_insert(0) += 1;
        }
        // The records held per page; the others are in runs (checked below).
        let per_page = self.len.checked_sub(self.runs.pages).ok_or(V::Count)?;
        if frame_copies != self.caps.len()
            || mapped != per_page
            || frame_maps != per_page
            || space_maps != per_page
            || leaf_maps != self.len
            || self.by_vaddr.len() != per_page
            || idle_sorted.len() != idle.len()
            || idle.len() > IDLE_LEAVES
            || self
                .spaces
                .iter()
                .any(|(p, _, v)| v.leaves == 0 || space_leaves.get(&p) != Some(&v.leaves))
            || self
                .leaves
                .iter()
                .any(|(p, _, l)| (l.count == 0) != idle.contains(&p) || l.count as usize != l.bits())
            || self
                .leaves
                .iter()
                .any(|(_, leaf, l)| self.spaces.pos(&leaf.asid) != Some(l.space))
            || big != self.big
            || copy_parents != self.copy_parents
            || self
                .spaces
                .iter()
                .any(|(_, asid, v)| v.big != space_big.get(&asid).copied().unwrap_or_default())
            || !self.frames.consistent()
            || !self.caps.consistent()
            || !self.spaces.consistent()
            || !self.leaves.consistent()
            || !self.by_vaddr.consistent()
        {
            return Err(V::Count);
        }
        // S1: span counters, recomputed; each leaf names the counters its pages count in, and each counter is
        // named by as many leaves as it counts (so by one at least).
        let mut spans: HashMap<SpanKey, u32> = HashMap::with_capacity(self.spans.len());
        for c in self.caps.values() {
            let Some(p) = c.map.as_ref() else { continue };
            let asid = self.leaves.key_at(p.leaf).asid;
            for &b in larger(p.size) {
                *spans
                    .entry(SpanKey {
                        asid,
                        size: b,
                        base: b.align_down(p.vaddr),
                    })
                    .or_insert(0) += 1;
            }
        }
        for ((asid, vaddr), r) in self.runs.by_addr.iter() {
            for i in 0..r.len() {
                for k in crate::run::run_span_keys(*asid, vaddr + i * crate::run::PAGE) {
                    *spans.entry(k).or_insert(0) += 1;
                }
            }
        }
        let mut span_leaves: HashMap<u32, u32> = HashMap::new();
        for l in self.leaves.values() {
            for sp in l.spans.into_iter().filter(|&sp| sp != NONE) {
                *span_leaves.entry(sp).or_insert(0) += 1;
            }
        }
        if !self.spans.consistent()
            || spans.keys().any(|k| !self.spans.contains_key(k))
            || self.spans.iter().any(|(p, k, n)| {
                n.count != spans.get(&k).copied().unwrap_or(0)
                    || n.leaves == 0
                    || span_leaves.get(&p) != Some(&n.leaves)
            })
        {
            return Err(V::SpanCount);
        }
        self.check_runs()?;
        for (_, leaf, l) in self.leaves.iter() {
            let size = leaf.level.frame_size();
            let mut want = [NONE; 2];
            for (w, &b) in want.iter_mut().zip(larger(size)) {
                *w = self
                    .spans
                    .pos(&SpanKey {
                        asid: leaf.asid,
                        size: b,
                        base: b.align_down(l.region),
                    })
                    .ok_or(V::SpanCount)?;
            }
            if l.spans != want {
                return Err(V::SpanCount);
            }
        }
        Ok(())
    }

    /// The invariants of runs (U1-U4 of the crate documentation).
    fn check_runs(&self) -> Result<(), V> {
        let runs = &self.runs;
        let small = PageSize::Small;
        let (mut pages, mut orig_pages, mut copy_runs) = (0, 0, 0);
        let mut prev: Option<(AsId, u64)> = None;
        for (&(asid, vaddr), r) in runs.by_addr.iter() {
            let bad = V::Run(CapSlot(r.first_copy));
            // U1: well formed, in its page table's region, the table's entries marked.
            let n = r.len();
            let last = vaddr.checked_add((n.max(1) - 1) * PAGE).ok_or(bad)?;
            if n == 0
                || n > u64::from(crate::ENTRIES_PER_TABLE)
                || !small.is_aligned(vaddr)
                || last >= USER_VADDR_END
                || small.leaf_region(vaddr) != small.leaf_region(last)
                || r.first_copy.checked_add(n).is_none()
                || r.first_parent.checked_add(n).is_none()
            {
                return Err(bad);
            }
            let (leaf, l) = self.leaves.slot(r.leaf).ok_or(bad)?;
            let first = small.entry_index(vaddr);
            if leaf.asid != asid
                || leaf.level != small.level()
                || l.region != small.leaf_region(vaddr)
                || (first..first + r.n).any(|x| !l.is_set(x))
            {
                return Err(bad);
            }
            // U2: no page claimed twice: runs of a space are disjoint, and no per-page record or larger page
            // is at a run's page.
            if prev.is_some_and(|(a, end)| a == asid && end > vaddr) {
                return Err(bad);
            }
            prev = Some((asid, r.end(vaddr)));
            for i in 0..n {
                let va = vaddr + i * PAGE;
                if self.by_vaddr.get(asid, small, va).is_some()
                    || [PageSize::Large, PageSize::Huge]
                        .into_iter()
                        .any(|b| self.by_vaddr.get(asid, b, b.align_down(va)).is_some())
                {
                    return Err(bad);
                }
                // U3: each parent a known original of a 4 KiB frame; a copy run's copy slots unknown per
                // page; an original run's capabilities those originals, unmapped per page.
                match self.frames.get(&CapSlot(r.first_parent + i)) {
                    Some(f) if f.size == small => {}
                    _ => return Err(bad),
                }
                let node = self.caps.get(&CapSlot(r.first_copy + i));
                if r.is_orig() {
                    if node.is_none_or(|c| c.map.is_some()) {
                        return Err(bad);
                    }
                } else if node.is_some() {
                    return Err(bad);
                }
            }
            // U4: indexed by first capability and (a copy run) by first parent.
            if runs.by_copy.get(&r.first_copy) != Some(&(asid, vaddr))
                || runs.by_parent.contains(&(r.first_parent, asid, vaddr)) == r.is_orig()
            {
                return Err(bad);
            }
            pages += r.n as usize;
            if r.is_orig() {
                orig_pages += r.n as usize;
            } else {
                copy_runs += 1;
            }
        }
        // U2: copy ranges disjoint; U4: the indexes name exactly the runs, the page count is theirs.
        let mut end = None;
        for (&first, k) in runs.by_copy.iter() {
            let r = runs.by_addr.get(k).ok_or(V::Run(CapSlot(first)))?;
            if end.is_some_and(|e| e > first) {
                return Err(V::Run(CapSlot(first)));
            }
            end = Some(first + r.len());
        }
        if !runs.hint_ok()
            || runs.by_copy.len() != runs.by_addr.len()
            || runs.by_parent.len() != copy_runs
            || pages != runs.pages
            || orig_pages != runs.orig_pages
        {
            return Err(V::Count);
        }
        Ok(())
    }
}
