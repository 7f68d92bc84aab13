//! The mapping database's records of what the kernel did: the pages of a map (each naming its leaf
//! table), and the copies of a clone (as runs where the copies are consecutive slots).

use alloc::vec::Vec;
use mapping_db::{AsId, CapSlot, CloneParent, FrameId, Mapping, PageSize, RegionClone};
use vspace::{CapRef, Rights, TableLevel};

use crate::error::Corruption;

use super::{At, Mm, LEAF_SPAN, PAGE};

impl Mm {
    /// The leaf table of `asid` at `va`, as the database names it.
    fn leaf(&self, asid: AsId, va: u64) -> Result<CapSlot, Corruption> {
        let space = self.spaces.get(&asid).ok_or(Corruption::NoLeafTable { vaddr: va })?;
        space
            .table_at(TableLevel::Pt, vspace::VirtAddr::new(va))
            .ok_or(Corruption::NoLeafTable { vaddr: va })
    }

    /// Records 4 KiB mappings of `caps` (frame, cap) at the pages from
    /// `vaddr` in `asid`, each naming its leaf table (looked up once per
    /// 2 MiB region).
    pub(super) fn record(
        &mut self,
        asid: AsId,
        vaddr: u64,
        caps: &[(FrameId, u64)],
        rights: Rights,
    ) -> Result<(), Corruption> {
        let mut recs = Vec::with_capacity(caps.len());
        let mut leaf = (u64::MAX, CapSlot(0));
        for (i, &(frame, cap)) in caps.iter().enumerate() {
            let va = vaddr + i as u64 * PAGE;
            let base = va & !(LEAF_SPAN - 1);
            if leaf.0 != base {
                leaf = (base, self.leaf(asid, va)?);
            }
            recs.push(Mapping::new(
                frame,
                CapSlot(cap),
                asid,
                va,
                PageSize::Small,
                rights,
                leaf.1,
            ));
        }
        self.db.insert_run(&recs).map_err(|(i, _)| Corruption::RecordRefused {
            vaddr: vaddr + i as u64 * PAGE,
        })
    }

    /// The leaf tables of `asid` covering the `n` pages from `vaddr`, one per
    /// 2 MiB region from the one holding `vaddr`.
    fn leaves(&self, asid: AsId, vaddr: u64, n: u64, out: &mut Vec<CapSlot>) -> Result<(), Corruption> {
        let first = vaddr & !(LEAF_SPAN - 1);
        let last = (vaddr + (n - 1) * PAGE) & !(LEAF_SPAN - 1);
        out.clear();
        for k in 0..=(last - first) / LEAF_SPAN {
            out.push(self.leaf(asid, first + k * LEAF_SPAN)?);
        }
        Ok(())
    }

    /// Records the clones the kernel made: `copies[i]`, a new copy of the
    /// original cap of the frame at page `i` of `from` (the kernel's
    /// derivation), is mapped at page `i` of `to`.
    pub(super) fn record_clones(
        &mut self,
        from: At,
        to: At,
        copies: &[CapRef],
        rights: Rights,
    ) -> Result<(), Corruption> {
        let mut leaves = core::mem::take(&mut self.scratch.leaves);
        let r = self.record_clones_with(from, to, copies, rights, &mut leaves);
        self.scratch.leaves = leaves;
        r
    }

    pub(super) fn record_clones_with(
        &mut self,
        from: At,
        to: At,
        copies: &[CapRef],
        rights: Rights,
        leaves: &mut Vec<CapSlot>,
    ) -> Result<(), Corruption> {
        let n = copies.len() as u64;
        if n == 0 {
            return Ok(());
        }
        self.leaves(to.0, to.1, n, leaves)?;
        let first = to.1 & !(LEAF_SPAN - 1);
        let refused = |i: usize| Corruption::RecordRefused {
            vaddr: to.1 + i as u64 * PAGE,
        };
        if copies.iter().zip(0..).all(|(c, i)| c.0 == copies[0].0 + i) {
            // Consecutive copies (a slot run): one pass, no per-page records.
            let c = RegionClone {
                src: from.0,
                src_vaddr: from.1,
                dst: to.0,
                dst_vaddr: to.1,
                n: n as usize,
                first_copy: copies[0],
                parent: CloneParent::Original,
                rights,
            };
            return self
                .db
                .clone_region(&c, |base| leaves[((base - first) / LEAF_SPAN) as usize])
                .map_err(|_| refused(0));
        }
        let sources = self
            .db
            .mappings_run(from.0, from.1, n as usize)
            .map_err(|(i, _)| Corruption::RemoveRefused {
                at: from.1 + i as u64 * PAGE,
            })?;
        let recs: Vec<(Mapping, CapSlot)> = sources
            .iter()
            .zip(copies)
            .zip(0..)
            .map(|((s, c), i)| {
                let va = to.1 + i * PAGE;
                let leaf = leaves[((va & !(LEAF_SPAN - 1)) - first) as usize / LEAF_SPAN as usize];
                let m = Mapping::new(s.frame, *c, to.0, va, PageSize::Small, rights, leaf);
                (m, s.frame.slot)
            })
            .collect();
        self.db.clone_run(&recs).map_err(|(i, _)| refused(i))
    }
}
