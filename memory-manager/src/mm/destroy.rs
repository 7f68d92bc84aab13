//! Destroy (unmap, delete the copies; originals stay) and revoke (unmap a frame everywhere, delete
//! every copy of its cap): both complete forward, page by page, and name what they could not do.

use alloc::vec::Vec;
use mapping_db::{AsId, CapSlot, Mapping};

use crate::error::{Corruption, DestroyError, Left, RevokeError};
use crate::kernel::{Kernel, Phase};
use crate::resources::Manager;
use crate::runs::UnmapDeleteKernel;

use super::{region, Mm, PAGE};

impl Mm {
    /// Unmaps the `n` pages at `vaddr` in `asid` and deletes the cap copies
    /// that held them (original caps stay, unmapped).
    pub fn destroy_region<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        asid: AsId,
        vaddr: u64,
        n: u64,
    ) -> Result<(), DestroyError> {
        m.kernel_mut().start_op();
        let range = region(vaddr, n).ok_or(DestroyError::BadRegion)?;
        if !self.spaces.contains_key(&asid) {
            return Err(DestroyError::UnknownSpace(asid));
        }
        // Each page's cap, and whether it is a copy (not the frame's original).
        let caps = self
            .db
            .caps_run(asid, vaddr, n as usize)
            .map_err(|(i, _)| DestroyError::NotMapped {
                vaddr: vaddr + i as u64 * PAGE,
            })?;
        m.kernel_mut().lap(Phase::Lookup);
        let space = self.spaces.get_mut(&asid).ok_or(DestroyError::UnknownSpace(asid))?;
        // The runs of pages whose copies the kernel deleted with their unmap,
        // as (first page, count): only a kernel with the run invocations does.
        let mut deleted: Vec<(usize, usize)> = Vec::new();
        let unmapped = if m.kernel().has_runs() {
            let mut k = UnmapDeleteKernel {
                inner: m.vk(),
                base: vaddr,
                caps: &caps,
                deleted: &mut deleted,
            };
            space.unmap_count(&mut k, range)
        } else {
            space.unmap_count(&mut m.vk(), range)
        };
        m.kernel_mut().lap(Phase::VSpace);
        // Which pages the kernel unmapped (all of them, or all but those it refused).
        let (stayed, failure) = match unmapped {
            Ok(count) if count == caps.len() => (Vec::new(), None),
            Ok(count) => {
                return Err(DestroyError::Corrupt(Corruption::UnmapCount {
                    recorded: caps.len(),
                    unmapped: count,
                }))
            }
            Err(vspace::UnmapError::Kernel { failure, unmapped, .. }) => {
                let mut gone = vec_bitmap(n as usize);
                for (va, _) in &unmapped {
                    let i = ((va.as_u64() - vaddr) / PAGE) as usize;
                    gone[i / 64] |= 1 << (i % 64);
                }
                let stayed: Vec<usize> = (0..n as usize)
                    .filter(|i| gone[i / 64] & (1 << (i % 64)) == 0)
                    .collect();
                (stayed, Some(failure))
            }
            // Refused before any kernel call (nothing changed).
            Err(e) => return Err(DestroyError::Refused(e)),
        };
        // The copies: those the kernel deleted with their unmap (runs of
        // consecutive slots) are adopted, the others deleted now. Originals
        // stay, unmapped. Pages that stayed mapped keep their caps.
        let l = *m.cs.layout();
        let slot = |i: usize| {
            l.slot_of(caps[i].0)
                .ok_or(DestroyError::Corrupt(Corruption::CapNotManaged(caps[i].0 .0)))
        };
        for &(i, k) in &deleted {
            m.cs.adopt_deletes_run(slot(i)?, k as u64)
                .map_err(|e| DestroyError::Delete(e, Left::default()))?;
        }
        deleted.sort_unstable();
        let mut left = core::mem::take(&mut self.scratch.slots);
        left.clear();
        let mut runs = deleted.iter().peekable();
        let mut stays = stayed.iter().peekable();
        let mut i = 0;
        while i < caps.len() {
            if let Some(&&(first, k)) = runs.peek() {
                if i == first {
                    i += k;
                    runs.next();
                    continue;
                }
            }
            if stays.peek() == Some(&&i) {
                stays.next();
            } else if caps[i].1 {
                left.push(slot(i)?);
            }
            i += 1;
        }
        let deleted_now = m.cs.delete_many(&left);
        let caps_left: Vec<u64> = match &deleted_now {
            Ok(()) => Vec::new(),
            Err(e) => left[e.deleted..].iter().map(|s| m.cptr(*s)).collect(),
        };
        self.scratch.slots = left;
        m.kernel_mut().lap(Phase::CSpace);
        // The records of the unmapped pages go, and their copies with them.
        let removed = if stayed.is_empty() {
            self.db.destroy_region(asid, vaddr, n as usize).map_err(|(i, _)| i)
        } else {
            let mut r = Ok(());
            let mut from = 0;
            for &s in stayed.iter().chain(core::iter::once(&(n as usize))) {
                if s > from {
                    r = r.and(
                        self.db
                            .destroy_region(asid, vaddr + from as u64 * PAGE, s - from)
                            .map_err(|(i, _)| from + i),
                    );
                }
                from = s + 1;
            }
            r
        };
        m.kernel_mut().lap(Phase::Database);
        removed.map_err(|i| {
            DestroyError::Corrupt(Corruption::RemoveRefused {
                at: vaddr + i as u64 * PAGE,
            })
        })?;
        let stayed_at = || stayed.iter().map(|&i| (asid, vaddr + i as u64 * PAGE)).collect();
        match (failure, deleted_now) {
            (Some(f), _) => Err(DestroyError::Unmap(
                f,
                Left {
                    mapped: stayed_at(),
                    caps: caps_left,
                    ..Left::default()
                },
            )),
            (None, Err(e)) => Err(DestroyError::Delete(
                e.error,
                Left {
                    caps: caps_left,
                    ..Left::default()
                },
            )),
            (None, Ok(())) => Ok(()),
        }
    }

    /// Unmaps `frame` from every address space and deletes every copy of
    /// its cap: afterwards only the original cap remains, unmapped.
    /// `cap` may name any cap of the frame (its original or a copy).
    /// Returns how many mappings were removed.
    pub fn revoke_frame<K: Kernel>(&mut self, m: &mut Manager<K>, cap: u64) -> Result<usize, RevokeError> {
        let frame = self.db.frame_of_cap(CapSlot(cap)).ok_or(RevokeError::NotAFrame(cap))?;
        let orig =
            m.cs.layout()
                .slot_of(frame.slot)
                .ok_or(RevokeError::Corrupt(Corruption::CapNotManaged(frame.slot.0)))?;
        let maps: Vec<Mapping> = self.db.mappings_of_frame(frame).collect();
        for (k, r) in maps.iter().enumerate() {
            let space = self
                .spaces
                .get_mut(&r.asid)
                .ok_or(RevokeError::Corrupt(Corruption::NoLeafTable { vaddr: r.vaddr }))?;
            let range = region(r.vaddr, 1).ok_or(RevokeError::Corrupt(Corruption::NoLeafTable { vaddr: r.vaddr }))?;
            match space.unmap(&mut m.vk(), range) {
                Ok(_) => {}
                Err(vspace::UnmapError::Kernel { failure, .. }) => {
                    let left = Left {
                        mapped: maps[k..].iter().map(|r| (r.asid, r.vaddr)).collect(),
                        ..Left::default()
                    };
                    return Err(RevokeError::Unmap(failure, left));
                }
                // A recorded 4 KiB page: vspace has no reason to refuse it.
                Err(_) => return Err(RevokeError::Corrupt(Corruption::NoLeafTable { vaddr: r.vaddr })),
            }
            self.db
                .remove_by_vaddr(r.asid, r.vaddr)
                .map_err(|_| RevokeError::Corrupt(Corruption::RemoveRefused { at: r.vaddr }))?;
        }
        // Only now that nothing is mapped: CNode_Revoke of the original deletes
        // every copy in one invocation (5.0 would leave a mapped copy's PTE).
        let copies: Vec<CapSlot> = self.db.copies_of(frame).filter(|c| *c != frame.slot).collect();
        m.cs.revoke(orig).map_err(|e| {
            let left = Left {
                caps: copies.iter().map(|c| c.0).collect(),
                ..Left::default()
            };
            RevokeError::Revoke(e, left)
        })?;
        // Leaves first, so the database's derivation tree only loses leaves.
        let mut left = copies;
        while !left.is_empty() {
            let before = left.len();
            left.retain(|c| self.db.remove_copy(*c).is_err());
            if left.len() == before {
                return Err(RevokeError::Corrupt(Corruption::RemoveRefused { at: left[0].0 }));
            }
        }
        Ok(maps.len())
    }
}

fn vec_bitmap(n: usize) -> Vec<u64> {
    alloc::vec![0u64; n.div_ceil(64)]
}
