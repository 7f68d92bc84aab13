//! Clone (the stock copy&map, or a run invocation per leaf-table run where the kernel has them), its
//! undo, and move (a clone, then a destroy of the source).

use alloc::vec::Vec;
use cspace::SlotRange;
use mapping_db::{CapSlot, SourceError};
use mm_types::run::{MAX_BATCHED_CLONE, MIN_RUN};
use vspace::{CacheAttr, CapRef, PageRange, Rights, Size4K};

use crate::error::{CloneError, Corruption, Left, MoveError};
use crate::kernel::{Kernel, Phase};
use crate::resources::Manager;
use crate::runs::CopyMapKernel;

use super::{region, residue_of, tables_kept, At, Mm, Refusal, Scratch, PAGE};

impl Mm {
    /// Shares the `n` pages at `from` into `to`: one cap copy and one
    /// mapping per page (a run invocation per leaf-table run, where the
    /// kernel has them). All or nothing.
    pub fn clone_region<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        from: At,
        to: At,
        n: u64,
        rights: Rights,
    ) -> Result<(), CloneError> {
        let (At(src, src_va), At(dst, dst_va)) = (from, to);
        m.kernel_mut().start_op();
        let range = region(dst_va, n).ok_or(CloneError::BadRegion)?;
        region(src_va, n).ok_or(CloneError::BadRegion)?;
        if rights.is_empty() {
            return Err(CloneError::NoRights);
        }
        if !self.spaces.contains_key(&src) {
            return Err(CloneError::UnknownSpace(src));
        }
        let sources = self
            .db
            .source_caps(src, src_va, n as usize, rights)
            .map_err(|(i, e)| match e {
                SourceError::NotMapped => CloneError::SourceNotMapped {
                    vaddr: src_va + i as u64 * PAGE,
                },
                SourceError::RightsExceed => CloneError::RightsExceed,
            })?;
        m.kernel_mut().lap(Phase::Lookup);
        self.check_free(dst, range).map_err(|e| match e {
            Refusal::UnknownSpace => CloneError::UnknownSpace(dst),
            Refusal::Occupied(vaddr) => CloneError::Occupied { vaddr },
        })?;
        m.kernel_mut().lap(Phase::CheckFree);
        let unfreed = m.unfreed_tables().len();
        let reclaims = m.cs.reclaim_failures();
        let r = if m.kernel().has_runs() && n as usize >= MIN_RUN && n <= MAX_BATCHED_CLONE {
            self.clone_runs(m, from, &sources, to, rights)
        } else {
            let mut sc = core::mem::take(&mut self.scratch);
            let r = self.clone_each(m, from, &sources, to, rights, range, &mut sc);
            self.scratch = sc;
            r
        };
        // Paging structures the undo could not free are left too.
        r.map_err(|mut e| {
            if let CloneError::Map(_, left) | CloneError::Copy(_, left) = &mut e {
                left.objects
                    .extend(m.unfreed_tables()[unfreed..].iter().map(|(id, _)| *id));
                left.reclaims_failed = m.cs.reclaim_failures() - reclaims;
            }
            e
        })
    }

    /// The stock clone: `CNode_Copy` of every source, then the map.
    #[allow(clippy::too_many_arguments)]
    fn clone_each<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        from: At,
        sources: &[CapSlot],
        to: At,
        rights: Rights,
        range: PageRange<Size4K>,
        sc: &mut Scratch,
    ) -> Result<(), CloneError> {
        sc.slots.clear();
        let l = m.cs.layout();
        for s in sources {
            let slot = l
                .slot_of(*s)
                .ok_or(CloneError::Corrupt(Corruption::CapNotManaged(s.0)))?;
            sc.slots.push(slot);
        }
        // All or nothing: a refused copy undoes the copies before it (cspace
        // poisons itself if that undo fails, and says so).
        sc.copies.clear();
        m.cs.copy_many_into(&sc.slots, rights, &mut sc.copies)
            .map_err(|e| CloneError::Copy(e, Left::default()))?;
        sc.caps.clear();
        sc.caps.extend(sc.copies.iter().map(|c| CapRef(m.cptr(*c))));
        m.kernel_mut().lap(Phase::CSpace);
        let space = self.spaces.get_mut(&to.0).ok_or(CloneError::UnknownSpace(to.0))?;
        let mapped = space.map(&mut m.vk(), range, &sc.caps, rights, CacheAttr::WriteBack);
        m.kernel_mut().lap(Phase::VSpace);
        match mapped {
            // The kernel's derivation: a copy of a frame cap is a child of the original.
            Ok(()) => {
                let r = self.record_clones_with(from, to, &sc.caps, rights, &mut sc.leaves);
                m.kernel_mut().lap(Phase::Database);
                r.map_err(CloneError::Corrupt)
            }
            Err(e) => {
                let residue = residue_of(&e);
                let mut left = self.undo_clone(m, from, to, &sc.caps, &residue, rights)?;
                left.tables = tables_kept(&e);
                Err(CloneError::Map(alloc::boxed::Box::new(e), left))
            }
        }
    }

    /// Undoes a clone whose map failed: the copies vspace unmapped again
    /// are deleted; those its undo left mapped (`residue`) are recorded.
    /// Every copy in `copies` is booked by cspace.
    fn undo_clone<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        from: At,
        to: At,
        copies: &[CapRef],
        residue: &[(u64, u64)],
        rights: Rights,
    ) -> Result<Left, CloneError> {
        let mut left = Left::default();
        #[cfg(feature = "model")]
        if self.broken_undo {
            return Ok(left);
        }
        let l = *m.cs.layout();
        let mut dead = Vec::with_capacity(copies.len());
        for (i, c) in copies.iter().enumerate() {
            let va = to.1 + i as u64 * PAGE;
            if residue.iter().any(|&(v, _)| v == va) {
                let src = At(from.0, from.1 + i as u64 * PAGE);
                self.record_clones(src, At(to.0, va), &[*c], rights)
                    .map_err(CloneError::Corrupt)?;
                left.mapped.push((to.0, va));
            } else {
                dead.push(
                    l.slot_of(*c)
                        .ok_or(CloneError::Corrupt(Corruption::CapNotManaged(c.0)))?,
                );
            }
        }
        if let Err(e) = m.cs.delete_many(&dead) {
            left.caps.extend(dead[e.deleted..].iter().map(|s| m.cptr(*s)));
        }
        Ok(left)
    }

    /// The clone on a kernel with the batched leaf-table invocations: the
    /// copies go into a run of reserved consecutive slots, and each leaf-table
    /// run of the destination is copied and mapped in one
    /// `X86PageTable_CopyMapRun` when its sources are consecutive slots of
    /// one CNode (per page otherwise). The books are then told of the copies.
    fn clone_runs<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        from: At,
        sources: &[CapSlot],
        to: At,
        rights: Rights,
    ) -> Result<(), CloneError> {
        let n = sources.len() as u64;
        let range = region(to.1, n).ok_or(CloneError::BadRegion)?;
        let run = m.cs.alloc_slots(n).map_err(CloneError::Slots)?;
        // One CNode's slots: consecutive cptrs.
        let base = m.cptr(run.slot(0));
        let mut dests = core::mem::take(&mut self.scratch.caps);
        dests.clear();
        dests.extend((0..n).map(|i| CapRef(base + i)));
        let mut runs = core::mem::take(&mut self.scratch.runs);
        runs.clear();
        m.kernel_mut().lap(Phase::Slots);
        let space = self.spaces.get_mut(&to.0).ok_or(CloneError::UnknownSpace(to.0))?;
        let mut k = CopyMapKernel {
            inner: m.vk(),
            dest_base: base,
            srcs: sources,
            runs: &mut runs,
            rights,
        };
        let mapped = space.map(&mut k, range, &dests, rights, CacheAttr::WriteBack);
        m.kernel_mut().lap(Phase::VSpace);
        // The kernel copied runs of consecutive source slots (or single caps):
        // cspace adopts them whatever happened next.
        let adopted = runs.iter().try_for_each(|&(i, k)| {
            let src =
                m.cs.layout()
                    .slot_of(sources[i])
                    .ok_or(CloneError::Corrupt(Corruption::CapNotManaged(sources[i].0)))?;
            let dests = SlotRange {
                start: run.start + i as u64,
                len: k as u64,
                ..run
            };
            m.cs.adopt_copies_run(src, k as u64, dests)
                .map_err(|e| CloneError::Copy(e, Left::default()))
        });
        let r = match (adopted, mapped) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(())) => {
                m.kernel_mut().lap(Phase::CSpace);
                self.record_clones(from, to, &dests, rights)
                    .map_err(CloneError::Corrupt)
            }
            (Ok(()), Err(e)) => {
                // Undo: the slots no copy went to are given back; the copies
                // vspace unmapped are deleted.
                runs.sort_unstable();
                let mut at = 0;
                let release = |from: usize, to: usize, m: &mut Manager<K>| {
                    if to <= from {
                        return Ok(());
                    }
                    let r = SlotRange {
                        start: run.start + from as u64,
                        len: (to - from) as u64,
                        ..run
                    };
                    m.cs.release_slots(r)
                        .map_err(|_| CloneError::Corrupt(Corruption::CapNotManaged(base + from as u64)))
                };
                for &(i, k) in &runs {
                    release(at, i, m)?;
                    at = i + k;
                }
                release(at, n as usize, m)?;
                let residue = residue_of(&e);
                let mut left = Left::default();
                for &(i, k) in &runs {
                    let r = self.undo_clone(
                        m,
                        At(from.0, from.1 + i as u64 * PAGE),
                        At(to.0, to.1 + i as u64 * PAGE),
                        &dests[i..i + k],
                        &residue,
                        rights,
                    )?;
                    left.mapped.extend(r.mapped);
                    left.caps.extend(r.caps);
                }
                left.tables = tables_kept(&e);
                Err(CloneError::Map(alloc::boxed::Box::new(e), left))
            }
        };
        self.scratch.runs = runs;
        self.scratch.caps = dests;
        m.kernel_mut().lap(Phase::Database);
        r
    }

    /// Clone, then destroy the source.
    pub fn move_region<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        from: At,
        to: At,
        n: u64,
        rights: Rights,
    ) -> Result<(), MoveError> {
        self.clone_region(m, from, to, n, rights)?;
        self.destroy_region(m, from.0, from.1, n).map_err(MoveError::Destroy)
    }
}
