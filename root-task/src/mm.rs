//! The memory manager: address spaces (`vspace`), capabilities and untyped
//! memory (`cspace`) and the mapping database (`mapping-db`) kept in step.
//!
//! Operations, after the M-M/S-CD talk's vocabulary:
//! - [`Mm::clone_region`] shares a region's frames into another address
//!   space: for every page, `CNode_Copy` of the cap behind the source
//!   mapping, then `X86Page_Map` of the copy (the stock copy&map, recorded);
//! - [`Mm::move_region`]: clone, then destroy the source;
//! - [`Mm::destroy_region`]: unmap, and delete the copies (an original cap
//!   is only unmapped: it stays the frame's owner);
//! - [`Mm::revoke_frame`]: unmap a frame from every address space that maps
//!   it and delete every copy of its cap (the Hurd memory server's
//!   "unmap all");
//! - [`Mm::who_maps`] (frame -> every mapping) and [`Mm::what_backs`]
//!   ((address space, vaddr) -> frame, cap, rights) answer from the database.
//!
//! Every request is validated against the database first; a refusal is a
//! typed [`MmError`] and changes nothing. The database records exactly the
//! mappings the kernel holds (checked on the real kernel by
//! `mapping_checks`).

use crate::manager::Manager;
use crate::phases::{Clock, Phase};
use alloc::vec::Vec;
use cspace::{ObjectId, ObjectType, Rights as CsRights};
use hashbrown::HashMap;
use mapping_db::{
    AsId, CapSlot, CloneParent, FrameId, Mapping, MappingDb, PageSize, RegionClone, Rights as DbRights, SourceError,
};
use vspace::{AddressSpace, CacheAttr, CapRef, Page, PageRange, Rights, Size4K, TableLevel};

/// Why the manager refused a request. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MmError {
    /// No address space with this id.
    UnknownSpace(AsId),
    /// A page of the source region is not mapped.
    SourceNotMapped {
        /// The address.
        vaddr: u64,
    },
    /// A page of the destination region is already mapped.
    DestinationOccupied {
        /// The address.
        vaddr: u64,
    },
    /// A page of the region to destroy is not mapped.
    NotMapped {
        /// The address.
        vaddr: u64,
    },
    /// The capability is not a frame the manager knows.
    NotAFrame(u64),
    /// The region is empty, misaligned or outside the user range.
    BadRegion,
    /// Rights beyond the source mapping's were asked for.
    RightsExceed,
    /// Allocating frames or slots failed.
    Alloc(cspace::AllocError),
    /// A capability operation failed (everything done before was undone).
    Cap(cspace::CapError),
    /// Mapping failed (everything done before was undone).
    Map(vspace::MapError),
    /// Unmapping failed.
    Unmap(vspace::UnmapError),
    /// The database and the address space disagree (a bug; reported, not hidden).
    Inconsistent(&'static str),
}

/// A place in an address space: (address space, virtual address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub AsId, pub u64);

/// The memory manager's state.
pub struct Mm {
    /// The mapping database.
    pub db: MappingDb,
    spaces: HashMap<AsId, AddressSpace>,
    next_space: u32,
    /// The cspace object behind each frame the manager allocated, by original cap.
    frames: HashMap<u64, ObjectId>,
    /// Vectors kept between operations, so that a small operation (a page
    /// fault's) allocates as little as the APIs it calls let it.
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    slots: Vec<cspace::Slot>,
    copies: Vec<cspace::Slot>,
    caps: Vec<CapRef>,
    leaves: Vec<CapSlot>,
    /// A batched clone's copies: (first destination index, count).
    #[cfg(sel4_batched_leaf)]
    runs: Vec<(usize, usize)>,
}

fn db_rights(r: Rights) -> DbRights {
    let mut d = DbRights::empty();
    if r.contains(Rights::READ) {
        d |= DbRights::READ;
    }
    if r.contains(Rights::WRITE) {
        d |= DbRights::WRITE;
    }
    d
}

fn cs_rights(r: Rights) -> CsRights {
    let mut c = CsRights::empty();
    if r.contains(Rights::READ) {
        c |= CsRights::READ;
    }
    if r.contains(Rights::WRITE) {
        c |= CsRights::WRITE;
    }
    c
}

fn region(vaddr: u64, n: u64) -> Result<PageRange<Size4K>, MmError> {
    let start = Page::from_start_address(vaddr).map_err(|_| MmError::BadRegion)?;
    match PageRange::from_count(start, n) {
        Some(r) if n > 0 && r.bounds().1 <= vspace::USER_VADDR_END => Ok(r),
        _ => Err(MmError::BadRegion),
    }
}

const PAGE: u64 = 1 << 12;
/// The span of one leaf page table (512 4 KiB pages).
const LEAF_SPAN: u64 = 1 << 21;

impl Default for Mm {
    fn default() -> Self {
        Self::new()
    }
}

impl Mm {
    /// An empty manager.
    pub fn new() -> Self {
        Self {
            db: MappingDb::new(),
            spaces: HashMap::new(),
            next_space: 1,
            frames: HashMap::new(),
            scratch: Scratch::default(),
        }
    }

    /// A new address space.
    pub fn create_space(&mut self, m: &mut Manager) -> Result<AsId, vspace::CreateError> {
        let s = AddressSpace::create(&mut m.vk())?;
        let id = AsId(self.next_space);
        self.next_space += 1;
        self.spaces.insert(id, s);
        Ok(id)
    }

    /// The address space `id`.
    pub fn space(&self, id: AsId) -> Option<&AddressSpace> {
        self.spaces.get(&id)
    }

    /// The address space `id`, mutably (for mappings outside the manager's
    /// books, such as a probe's code and stack).
    pub fn space_mut(&mut self, id: AsId) -> Option<&mut AddressSpace> {
        self.spaces.get_mut(&id)
    }

    /// The records of 4 KiB mappings of `caps` (frame, cap) at the pages
    /// from `vaddr` in `asid`, each naming its leaf table (looked up once
    /// per 2 MiB region).
    fn records(
        &self,
        asid: AsId,
        vaddr: u64,
        caps: &[(FrameId, u64)],
        rights: Rights,
    ) -> Result<Vec<Mapping>, MmError> {
        let space = self.spaces.get(&asid).ok_or(MmError::UnknownSpace(asid))?;
        let mut recs = Vec::with_capacity(caps.len());
        let mut leaf = (u64::MAX, CapSlot(0));
        for (i, &(frame, cap)) in caps.iter().enumerate() {
            let va = vaddr + i as u64 * PAGE;
            let base = va & !((1 << 21) - 1);
            if leaf.0 != base {
                let t = space
                    .table_at(TableLevel::Pt, vspace::VirtAddr::new(va))
                    .ok_or(MmError::Inconsistent("no leaf table"))?;
                leaf = (base, CapSlot(t.0));
            }
            recs.push(Mapping::new(
                frame,
                CapSlot(cap),
                asid,
                va,
                PageSize::Small,
                db_rights(rights),
                leaf.1,
            ));
        }
        Ok(recs)
    }

    fn record(&mut self, asid: AsId, vaddr: u64, caps: &[(FrameId, u64)], rights: Rights) -> Result<(), MmError> {
        let recs = self.records(asid, vaddr, caps, rights)?;
        self.db
            .insert_run(&recs)
            .map_err(|_| MmError::Inconsistent("database refused a mapping the kernel made"))
    }

    /// The leaf tables of `asid` covering the `n` pages from `vaddr`, one per
    /// 2 MiB region from the one holding `vaddr`.
    fn leaves(&self, asid: AsId, vaddr: u64, n: u64, out: &mut Vec<CapSlot>) -> Result<(), MmError> {
        let space = self.spaces.get(&asid).ok_or(MmError::UnknownSpace(asid))?;
        let first = vaddr & !(LEAF_SPAN - 1);
        let last = (vaddr + (n - 1) * PAGE) & !(LEAF_SPAN - 1);
        out.clear();
        for k in 0..=(last - first) / LEAF_SPAN {
            let t = space
                .table_at(TableLevel::Pt, vspace::VirtAddr::new(first + k * LEAF_SPAN))
                .ok_or(MmError::Inconsistent("no leaf table"))?;
            out.push(CapSlot(t.0));
        }
        Ok(())
    }

    /// Records the clones the kernel made: `copies[i]`, a new copy of the
    /// original cap of the frame at page `i` of `from` (the kernel's
    /// derivation), is mapped at page `i` of `to`.
    #[cfg(sel4_batched_leaf)]
    fn record_clones(&mut self, from: At, to: At, copies: &[CapRef], rights: Rights) -> Result<(), MmError> {
        let mut leaves = core::mem::take(&mut self.scratch.leaves);
        let r = self.record_clones_with(from, to, copies, rights, &mut leaves);
        self.scratch.leaves = leaves;
        r
    }

    fn record_clones_with(
        &mut self,
        from: At,
        to: At,
        copies: &[CapRef],
        rights: Rights,
        leaves: &mut Vec<CapSlot>,
    ) -> Result<(), MmError> {
        let n = copies.len() as u64;
        self.leaves(to.0, to.1, n, leaves)?;
        let first = to.1 & !(LEAF_SPAN - 1);
        const REFUSED: MmError = MmError::Inconsistent("database refused a clone the kernel made");
        if copies.iter().zip(0..).all(|(c, i)| c.0 == copies[0].0 + i) {
            // Consecutive copies (a slot run): one pass, no per-page records.
            let c = RegionClone {
                src: from.0,
                src_vaddr: from.1,
                dst: to.0,
                dst_vaddr: to.1,
                n: n as usize,
                first_copy: CapSlot(copies[0].0),
                parent: CloneParent::Original,
                rights: db_rights(rights),
            };
            return self
                .db
                .clone_region(&c, |base| leaves[((base - first) / LEAF_SPAN) as usize])
                .map_err(|_| REFUSED);
        }
        let sources = self
            .db
            .mappings_run(from.0, from.1, n as usize)
            .map_err(|_| MmError::Inconsistent("source vanished"))?;
        let recs: Vec<(Mapping, CapSlot)> = sources
            .iter()
            .zip(copies)
            .zip(0..)
            .map(|((s, c), i)| {
                let va = to.1 + i * PAGE;
                let leaf = leaves[((va & !(LEAF_SPAN - 1)) - first) as usize / LEAF_SPAN as usize];
                let m = Mapping::new(
                    s.frame,
                    CapSlot(c.0),
                    to.0,
                    va,
                    PageSize::Small,
                    db_rights(rights),
                    leaf,
                );
                (m, s.frame.slot)
            })
            .collect();
        self.db.clone_run(&recs).map_err(|_| REFUSED)
    }

    /// Allocates `n` fresh frames and maps their original caps at `vaddr`
    /// in `asid`. Returns the frames.
    pub fn map_new(
        &mut self,
        m: &mut Manager,
        asid: AsId,
        vaddr: u64,
        n: u64,
        rights: Rights,
    ) -> Result<Vec<FrameId>, MmError> {
        let range = region(vaddr, n)?;
        self.check_free(asid, vaddr, n)?;
        // As many frames per retype as the kernel allows: consecutive caps
        // (and memory), so that the books keep the map as runs; one at a
        // time where no untyped has room for a batch.
        let mut allocs = Vec::with_capacity(n as usize);
        while (allocs.len() as u64) < n {
            let k = (n - allocs.len() as u64).min(cspace::types::RETYPE_FAN_OUT_LIMIT);
            let got = match m.cs.alloc_many(ObjectType::Frame4K, 0, k, cspace::Placement::Anywhere) {
                Ok(v) => Ok(v),
                Err(_) => m.alloc(ObjectType::Frame4K).map(|a| alloc::vec![a]),
            };
            match got {
                Ok(v) => allocs.extend(v),
                Err(e) => {
                    for a in allocs {
                        let _ = m.cs.free(a.id);
                    }
                    return Err(MmError::Alloc(e));
                }
            }
        }
        let caps: Vec<CapRef> = allocs.iter().map(|a| CapRef(a.cptr.0)).collect();
        let space = self.spaces.get_mut(&asid).ok_or(MmError::UnknownSpace(asid))?;
        if let Err(e) = space.map(&mut m.vk(), range, &caps, rights, CacheAttr::WriteBack) {
            for a in allocs {
                let _ = m.cs.free(a.id);
            }
            return Err(MmError::Map(e));
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut recs = Vec::with_capacity(n as usize);
        for a in &allocs {
            let f = FrameId::new(CapSlot(a.cptr.0), a.paddr);
            self.db
                .add_frame(f, PageSize::Small)
                .map_err(|_| MmError::Inconsistent("frame known twice"))?;
            self.frames.insert(a.cptr.0, a.id);
            out.push(f);
            recs.push((f, a.cptr.0));
        }
        self.record(asid, vaddr, &recs, rights)?;
        Ok(out)
    }

    fn check_free(&self, asid: AsId, vaddr: u64, n: u64) -> Result<(), MmError> {
        let space = self.spaces.get(&asid).ok_or(MmError::UnknownSpace(asid))?;
        // The space's shadow holds every mapping of the books (and those made
        // outside them): one walk per leaf table answers for both.
        match space.first_mapped(region(vaddr, n)?) {
            Some(va) => Err(MmError::DestinationOccupied { vaddr: va.as_u64() }),
            None => Ok(()),
        }
    }

    /// The caps of the `n` 4 KiB mappings from `vaddr` in `asid`, each
    /// allowing `rights`.
    fn sources(&self, asid: AsId, vaddr: u64, n: u64, rights: Rights) -> Result<Vec<CapSlot>, MmError> {
        if !self.spaces.contains_key(&asid) {
            return Err(MmError::UnknownSpace(asid));
        }
        self.db
            .source_caps(asid, vaddr, n as usize, db_rights(rights))
            .map_err(|(i, e)| match e {
                SourceError::NotMapped => MmError::SourceNotMapped {
                    vaddr: vaddr + i as u64 * PAGE,
                },
                SourceError::RightsExceed => MmError::RightsExceed,
            })
    }

    /// Shares the `n` pages at `from` into `to`:
    /// one cap copy and one mapping per page.
    pub fn clone_region(&mut self, m: &mut Manager, from: At, to: At, n: u64, rights: Rights) -> Result<(), MmError> {
        let (At(src, src_va), At(dst, dst_va)) = (from, to);
        let mut clock = Clock::start();
        let range = region(dst_va, n)?;
        region(src_va, n)?;
        let sources = self.sources(src, src_va, n, rights)?;
        clock.lap(Phase::Lookup);
        self.check_free(dst, dst_va, n)?;
        clock.lap(Phase::CheckFree);
        #[cfg(sel4_batched_leaf)]
        if crate::backend::batched_leaf() && n as usize >= crate::backend::MIN_RUN && n <= 4096 {
            return self.clone_runs(m, from, &sources, to, rights, clock);
        }
        let mut sc = core::mem::take(&mut self.scratch);
        let r = (|| {
            sc.slots.clear();
            let l = m.cs.layout();
            for s in &sources {
                sc.slots
                    .push(l.slot_of(cspace::CPtr(s.0)).ok_or(MmError::Inconsistent("cap slot"))?);
            }
            // All or nothing: a refused copy undoes the copies before it.
            sc.copies.clear();
            m.cs.copy_many_into(&sc.slots, cs_rights(rights), &mut sc.copies)
                .map_err(MmError::Cap)?;
            sc.caps.clear();
            sc.caps.extend(sc.copies.iter().map(|c| CapRef(m.cptr(*c))));
            clock.lap(Phase::CSpace);
            let space = self.spaces.get_mut(&dst).ok_or(MmError::UnknownSpace(dst))?;
            if let Err(e) = space.map(&mut m.vk(), range, &sc.caps, rights, CacheAttr::WriteBack) {
                let _ = m.cs.delete_many(&sc.copies);
                return Err(MmError::Map(e));
            }
            clock.lap(Phase::VSpace);
            // The kernel's derivation: a copy of a frame cap is a child of the original.
            let r = self.record_clones_with(from, to, &sc.caps, rights, &mut sc.leaves);
            clock.lap(Phase::Database);
            r
        })();
        self.scratch = sc;
        r
    }

    /// The clone on a kernel with the batched leaf-table invocations: the
    /// copies go into a run of reserved consecutive slots, and each leaf-table
    /// run of the destination is copied and mapped in one
    /// `X86PageTable_CopyMapRun` when its sources are consecutive slots of
    /// one CNode (per page otherwise). The books are then told of the copies.
    #[cfg(sel4_batched_leaf)]
    fn clone_runs(
        &mut self,
        m: &mut Manager,
        from: At,
        sources: &[CapSlot],
        to: At,
        rights: Rights,
        mut clock: Clock,
    ) -> Result<(), MmError> {
        let n = sources.len() as u64;
        let range = region(to.1, n)?;
        let run = m.cs.alloc_slots(n).map_err(MmError::Alloc)?;
        // One CNode's slots: consecutive cptrs.
        let base = m.cptr(run.slot(0));
        let mut dests = core::mem::take(&mut self.scratch.caps);
        dests.clear();
        dests.extend((0..n).map(|i| CapRef(base + i)));
        let mut runs = core::mem::take(&mut self.scratch.runs);
        runs.clear();
        clock.lap(Phase::Slots);
        let space = self.spaces.get_mut(&to.0).ok_or(MmError::UnknownSpace(to.0))?;
        let mut k = CopyMapKernel {
            inner: m.vk(),
            dest_base: base,
            srcs: sources,
            runs: &mut runs,
            rights: crate::backend::vs_rights(rights),
        };
        let mapped = space.map(&mut k, range, &dests, rights, CacheAttr::WriteBack);
        if let Err(e) = mapped {
            // The mappings were rolled back; delete the copies made, free the run.
            for &(i, k) in &runs {
                for j in i..i + k {
                    let p = m.cs.path(run.slot(j as u64));
                    let _ = sel4::cap::CNode::from_bits(p.root.0).cnode_delete(p.index, p.depth);
                }
            }
            self.scratch.runs = runs;
            self.scratch.caps = dests;
            let _ = m.cs.release_slots(run);
            return Err(MmError::Map(e));
        }
        clock.lap(Phase::VSpace);
        // The kernel copied runs of consecutive source slots (or single caps).
        let adopted = runs.iter().try_for_each(|&(i, k)| {
            let src =
                m.cs.layout()
                    .slot_of(cspace::CPtr(sources[i].0))
                    .ok_or(MmError::Inconsistent("cap slot"))?;
            let dests = cspace::SlotRange {
                start: run.start + i as u64,
                len: k as u64,
                ..run
            };
            m.cs.adopt_copies_run(src, k as u64, dests).map_err(MmError::Cap)
        });
        self.scratch.runs = runs;
        let r = adopted.and_then(|()| {
            clock.lap(Phase::CSpace);
            self.record_clones(from, to, &dests, rights)
        });
        self.scratch.caps = dests;
        clock.lap(Phase::Database);
        r
    }

    /// Unmaps the `n` pages at `vaddr` in `asid` and deletes the cap copies
    /// that held them (original caps stay, unmapped).
    pub fn destroy_region(&mut self, m: &mut Manager, asid: AsId, vaddr: u64, n: u64) -> Result<(), MmError> {
        let mut clock = Clock::start();
        let range = region(vaddr, n)?;
        if !self.spaces.contains_key(&asid) {
            return Err(MmError::UnknownSpace(asid));
        }
        // Each page's cap, and whether it is a copy (not the frame's original).
        let caps = self
            .db
            .caps_run(asid, vaddr, n as usize)
            .map_err(|(i, _)| MmError::NotMapped {
                vaddr: vaddr + i as u64 * PAGE,
            })?;
        clock.lap(Phase::Lookup);
        let space = self.spaces.get_mut(&asid).ok_or(MmError::UnknownSpace(asid))?;
        // The runs of pages whose copies the kernel deleted with their unmap,
        // as (first page, count): only a kernel with the run invocations does.
        let mut deleted: Vec<(usize, usize)> = Vec::new();
        let released = match () {
            #[cfg(sel4_batched_leaf)]
            () if crate::backend::batched_leaf() => {
                let mut k = UnmapDeleteKernel {
                    inner: m.vk(),
                    base: vaddr,
                    caps: &caps,
                    deleted: &mut deleted,
                };
                space.unmap_count(&mut k, range).map_err(MmError::Unmap)?
            }
            () => space.unmap_count(&mut m.vk(), range).map_err(MmError::Unmap)?,
        };
        clock.lap(Phase::VSpace);
        if released != caps.len() {
            return Err(MmError::Inconsistent("unmap released a different number of caps"));
        }
        // The copies: those the kernel deleted with their unmap (runs of
        // consecutive slots) are adopted, the others deleted now. Originals
        // stay, unmapped.
        let l = *m.cs.layout();
        let slot = |i: usize| {
            l.slot_of(cspace::CPtr(caps[i].0 .0))
                .ok_or(MmError::Inconsistent("cap slot"))
        };
        for &(i, k) in &deleted {
            m.cs.adopt_deletes_run(slot(i)?, k as u64).map_err(MmError::Cap)?;
        }
        // The others, skipping the runs the kernel deleted (in address order).
        deleted.sort_unstable();
        let mut left = core::mem::take(&mut self.scratch.slots);
        left.clear();
        let mut runs = deleted.iter().peekable();
        let mut i = 0;
        while i < caps.len() {
            if let Some(&&(first, k)) = runs.peek() {
                if i == first {
                    i += k;
                    runs.next();
                    continue;
                }
            }
            if caps[i].1 {
                left.push(slot(i)?);
            }
            i += 1;
        }
        let r = m.cs.delete_many(&left).map_err(|e| MmError::Cap(e.error));
        self.scratch.slots = left;
        r?;
        clock.lap(Phase::CSpace);
        // The records go, and the copies (not the originals) with them.
        self.db
            .destroy_region(asid, vaddr, n as usize)
            .map_err(|_| MmError::Inconsistent("record or copy not removable"))?;
        clock.lap(Phase::Database);
        Ok(())
    }

    /// Clone, then destroy the source.
    pub fn move_region(&mut self, m: &mut Manager, from: At, to: At, n: u64, rights: Rights) -> Result<(), MmError> {
        self.clone_region(m, from, to, n, rights)?;
        self.destroy_region(m, from.0, from.1, n)
    }

    /// Unmaps `frame` from every address space and deletes every copy of
    /// its cap: afterwards only the original cap remains, unmapped.
    /// `cap` may name any cap of the frame (its original or a copy).
    pub fn revoke_frame(&mut self, m: &mut Manager, cap: u64) -> Result<usize, MmError> {
        let frame = self.db.frame_of_cap(CapSlot(cap)).ok_or(MmError::NotAFrame(cap))?;
        let maps: Vec<Mapping> = self.db.mappings_of_frame(frame).collect();
        for r in &maps {
            let space = self.spaces.get_mut(&r.asid).ok_or(MmError::UnknownSpace(r.asid))?;
            space.unmap(&mut m.vk(), region(r.vaddr, 1)?).map_err(MmError::Unmap)?;
            self.db
                .remove_by_vaddr(r.asid, r.vaddr)
                .map_err(|_| MmError::Inconsistent("record vanished"))?;
        }
        // Only now that nothing is mapped: CNode_Revoke of the original deletes
        // every copy in one invocation (5.0 would leave a mapped copy's PTE).
        let orig =
            m.cs.layout()
                .slot_of(cspace::CPtr(frame.slot.0))
                .ok_or(MmError::Inconsistent("original"))?;
        let copies: Vec<CapSlot> = self.db.copies_of(frame).filter(|c| *c != frame.slot).collect();
        m.cs.revoke(orig).map_err(MmError::Cap)?;
        // Leaves first, so the database's derivation tree only loses leaves.
        let mut left = copies;
        while !left.is_empty() {
            let before = left.len();
            left.retain(|c| self.db.remove_copy(*c).is_err());
            if left.len() == before {
                return Err(MmError::Inconsistent("copies not removable"));
            }
        }
        Ok(maps.len())
    }

    /// Every mapping of `frame`: who can reach this memory.
    pub fn who_maps(&self, frame: FrameId) -> Vec<Mapping> {
        self.db.mappings_of_frame(frame).collect()
    }

    /// The frame, cap and rights behind `vaddr` in `asid`.
    pub fn what_backs(&self, asid: AsId, vaddr: u64) -> Option<Mapping> {
        self.db.lookup(asid, vaddr)
    }

    /// Unmaps everything the manager recorded in `asid`, deletes the copies,
    /// frees the frames it allocated whose caps are all gone, and destroys the
    /// space. Returns the caps of mappings made outside the books.
    pub fn destroy_space(&mut self, m: &mut Manager, asid: AsId) -> Result<Vec<CapRef>, MmError> {
        let recs: Vec<Mapping> = self.db.mappings_in(asid).collect();
        for r in &recs {
            self.destroy_region(m, asid, r.vaddr, 1)?;
        }
        let space = self.spaces.remove(&asid).ok_or(MmError::UnknownSpace(asid))?;
        let t = space
            .destroy(&mut m.vk())
            .map_err(|_| MmError::Inconsistent("destroy failed"))?;
        Ok(t.frames.into_iter().map(|(_, c)| c).collect())
    }

    /// Frees a frame the manager allocated: revokes it, then frees the object.
    pub fn free_frame(&mut self, m: &mut Manager, frame: FrameId) -> Result<(), MmError> {
        self.revoke_frame(m, frame.slot.0)?;
        let id = self
            .frames
            .remove(&frame.slot.0)
            .ok_or(MmError::NotAFrame(frame.slot.0))?;
        self.db
            .remove_frame(frame)
            .map_err(|_| MmError::Inconsistent("frame not removable"))?;
        m.cs.free(id).map_err(|_| MmError::Inconsistent("free"))
    }
}

/// The `VSpaceKernel` methods a wrapper kernel passes straight to its
/// `inner` kernel: everything but the frame maps and unmaps it specialises.
#[cfg(sel4_batched_leaf)]
macro_rules! delegate_to_inner {
    () => {
        fn alloc_root(&mut self) -> Result<CapRef, vspace::KernelFailure> {
            self.inner.alloc_root()
        }
        fn assign_asid(&mut self, root: CapRef) -> Result<(), vspace::KernelFailure> {
            self.inner.assign_asid(root)
        }
        fn free_root(&mut self, root: CapRef) {
            self.inner.free_root(root)
        }
        fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, vspace::KernelFailure> {
            self.inner.alloc_table(level)
        }
        fn free_table(&mut self, level: TableLevel, table: CapRef) {
            self.inner.free_table(level, table)
        }
        fn map_table(
            &mut self,
            level: TableLevel,
            table: CapRef,
            root: CapRef,
            vaddr: vspace::VirtAddr,
        ) -> Result<(), vspace::KernelFailure> {
            self.inner.map_table(level, table, root, vaddr)
        }
        fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), vspace::KernelFailure> {
            self.inner.unmap_table(level, table)
        }
        fn remap_frame(
            &mut self,
            frame: CapRef,
            root: CapRef,
            rights: Rights,
            attr: CacheAttr,
        ) -> Result<(), vspace::KernelFailure> {
            self.inner.remap_frame(frame, root, rights, attr)
        }
        fn unmap_frame(&mut self, frame: CapRef) -> Result<(), vspace::KernelFailure> {
            self.inner.unmap_frame(frame)
        }
    };
}

/// The vspace kernel for a batched clone: the "frames" vspace maps are the
/// destination slots of the copies, still empty; a leaf-table run is copied
/// and mapped in one `X86PageTable_CopyMapRun` when its sources are
/// consecutive slots of one CNode, otherwise page by page (`CNode_Copy`,
/// then `X86Page_Map`). Everything else goes to the manager's kernel.
#[cfg(sel4_batched_leaf)]
struct CopyMapKernel<'a, 'b> {
    inner: crate::backend::VsKernel<'a>,
    /// The destination slots are the consecutive cptrs from `dest_base`.
    dest_base: u64,
    /// The source cap of each destination, in order.
    srcs: &'b [CapSlot],
    /// The copies made, as (first destination index, count): each a run of
    /// consecutive source slots of one CNode.
    runs: &'b mut Vec<(usize, usize)>,
    rights: sel4::CapRights,
}

#[cfg(sel4_batched_leaf)]
impl CopyMapKernel<'_, '_> {
    fn offset(&self, dest: CapRef) -> usize {
        (dest.0 - self.dest_base) as usize
    }

    fn copy_one(&mut self, i: usize) -> Result<(), vspace::KernelFailure> {
        let (d, s) = (self.dest_path(i)?, self.inner.path_of(CapRef(self.srcs[i].0))?);
        crate::backend::kernel(|| {
            sel4::cap::CNode::from_bits(d.root.0).cnode_copy(
                d.index,
                d.depth,
                sel4::cap::CNode::from_bits(s.root.0),
                s.index,
                s.depth,
                self.rights,
            )
        })
        .map_err(crate::backend::vs_err)?;
        self.runs.push((i, 1));
        Ok(())
    }

    /// The path of destination `i`.
    fn dest_path(&self, i: usize) -> Result<cspace::CapPath, vspace::KernelFailure> {
        self.inner.path_of(CapRef(self.dest_base + i as u64))
    }

    /// `X86PageTable_CopyMapRun` of the `n` destinations from `i` (their
    /// sources consecutive slots of one CNode) into `run`'s entries.
    fn copy_map_run(
        &mut self,
        root: CapRef,
        run: &vspace::LeafRun,
        i: usize,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), vspace::KernelFailure> {
        let (s, d) = (self.inner.path_of(CapRef(self.srcs[i].0))?, self.dest_path(i)?);
        crate::backend::copy_map_run(root, run, n, rights, attr, s, d, self.rights)?;
        self.runs.push((i, n));
        Ok(())
    }
}

#[cfg(sel4_batched_leaf)]
impl vspace::VSpaceKernel for CopyMapKernel<'_, '_> {
    delegate_to_inner!();

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: vspace::VirtAddr,
        size: vspace::FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), vspace::KernelFailure> {
        let i = self.offset(frame);
        if !self.runs.iter().rev().any(|&(a, k)| (a..a + k).contains(&i)) {
            self.copy_one(i)?;
        }
        self.inner.map_frame(frame, root, vaddr, size, rights, attr)
    }
    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &vspace::LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), vspace::RunFailure> {
        let i = self.offset(frames[0]);
        if run.level != TableLevel::Pt {
            for (k, &frame) in frames.iter().enumerate() {
                self.map_frame(frame, root, run.vaddr_of(k), run.size, rights, attr)
                    .map_err(|failure| vspace::RunFailure { done: k, failure })?;
            }
            return Ok(());
        }
        // Each piece whose sources are consecutive slots of one CNode in one
        // entry; the rest per page. The destinations are consecutive slots
        // of one CNode by construction (one `alloc_slots` run).
        let len = frames.len();
        crate::backend::in_runs(
            self,
            len,
            |k, d| k.inner.run_prefix_by(&k.srcs[i + d..i + len], |s| s.0),
            |k, d, n| k.copy_map_run(root, &crate::backend::sub_run(run, d), i + d, n, rights, attr),
            |k, d| k.map_frame(frames[d], root, run.vaddr_of(d), run.size, rights, attr),
        )
    }
    fn unmap_frames_run(&mut self, run: &vspace::LeafRun, frames: &[CapRef]) -> Result<(), vspace::RunFailure> {
        self.inner.unmap_frames_run(run, frames)
    }
}

/// The vspace kernel for a batched destroy: a leaf-table run whose caps are
/// all copies in consecutive slots of one CNode is unmapped, and the copies
/// deleted, in one `X86PageTable_UnmapRun`; other runs go to the manager's
/// kernel (per page, or UnmapRun without deletion).
#[cfg(sel4_batched_leaf)]
struct UnmapDeleteKernel<'a, 'b> {
    inner: crate::backend::VsKernel<'a>,
    /// The region's first page: page i is at `base + i * PAGE`.
    base: u64,
    /// Page i's cap, and whether it is a copy (not the frame's original),
    /// which the kernel may delete with its unmap.
    caps: &'b [(CapSlot, bool)],
    /// The runs of pages whose caps the kernel deleted: (first page, count).
    deleted: &'b mut Vec<(usize, usize)>,
}

#[cfg(sel4_batched_leaf)]
impl vspace::VSpaceKernel for UnmapDeleteKernel<'_, '_> {
    delegate_to_inner!();

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: vspace::VirtAddr,
        size: vspace::FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), vspace::KernelFailure> {
        self.inner.map_frame(frame, root, vaddr, size, rights, attr)
    }
    fn unmap_frames_run(&mut self, run: &vspace::LeafRun, frames: &[CapRef]) -> Result<(), vspace::RunFailure> {
        if run.level != TableLevel::Pt {
            return self.inner.unmap_frames_run(run, frames);
        }
        let first = ((run.vaddr_of(0).as_u64() - self.base) / PAGE) as usize;
        let caps = &self.caps[first..first + frames.len()];
        // Pieces of copies in consecutive slots of one CNode: unmapped and
        // deleted in one entry; pieces of originals: unmapped in one entry.
        crate::backend::in_runs(
            self,
            frames.len(),
            |k, d| {
                let same = caps[d..].iter().take_while(|c| c.1 == caps[d].1).count();
                k.inner.run_prefix(&frames[d..d + same])
            },
            |k, d, n| {
                let path = k.inner.path_of(frames[d])?;
                crate::backend::unmap_run(&crate::backend::sub_run(run, d), n, path, caps[d].1)?;
                if caps[d].1 {
                    k.deleted.push((first + d, n));
                }
                Ok(())
            },
            |k, d| k.inner.unmap_frame(frames[d]),
        )
    }
}
