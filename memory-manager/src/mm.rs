//! The memory manager: address spaces (`vspace`), capabilities and untyped
//! memory (`cspace`) and the mapping database (`mapping-db`) kept in step.
//!
//! Operations, after the M-M/S-CD talk's vocabulary:
//! - [`Mm::map_new`] maps fresh frames (their original caps);
//! - [`Mm::clone_region`] shares a region's frames into another address
//!   space: for every page, `CNode_Copy` of the cap behind the source
//!   mapping, then `X86Page_Map` of the copy (the stock copy&map, recorded),
//!   or a `CopyMapRun` per leaf-table run where the kernel has it;
//! - [`Mm::move_region`]: clone, then destroy the source;
//! - [`Mm::destroy_region`]: unmap, and delete the copies (an original cap
//!   is only unmapped: it stays the frame's owner);
//! - [`Mm::revoke_frame`]: unmap a frame from every address space that maps
//!   it and delete every copy of its cap (the Hurd memory server's
//!   "unmap all");
//! - [`Mm::who_maps`] (frame -> every mapping) and [`Mm::what_backs`]
//!   ((address space, vaddr) -> frame, cap, rights) answer from the database.
//!
//! Rights are the one [`Rights`] type of every book (`mm-types`): an
//! operation's rights go as given to the mapping database, the space's
//! shadow, the copies (`CNode_Copy` honours read, write and grant) and the
//! maps (`X86Page_Map` honours read and write).
//!
//! Each operation validates against the books first (a refusal changes
//! nothing), then executes its kernel calls, then commits the books; a kernel
//! failure midway is undone, and what could not be undone is booked and
//! named in the error (see [`crate::error`]). Afterwards the books equal the
//! kernel: [`Mm::check`] audits them, and the host model test compares them
//! with the model of the kernel after every step.

// Errors are built lazily (`ok_or_else`), never eagerly: an error type
// with drop glue (a `Left` of vectors) built and discarded on the success
// path costs a call to its destructor, per page inside loops.
#![allow(clippy::unnecessary_lazy_evaluations)]

use alloc::vec::Vec;
use cspace::{ObjectId, ObjectType, Slot, SlotRange};
use hashbrown::HashMap;
use mapping_db::{AsId, CapSlot, CloneParent, FrameId, Mapping, MappingDb, PageSize, RegionClone, SourceError};
use vspace::{AddressSpace, CacheAttr, CapRef, Page, PageRange, Rights, Size4K, TableLevel, TablePolicy};

use crate::error::{
    CloneError, Corruption, DestroyError, DestroySpaceError, FreeError, Left, MapError, MoveError, RevokeError,
};
use crate::kernel::{Kernel, Phase};
use crate::resources::Manager;
use crate::runs::{CopyMapKernel, UnmapDeleteKernel};
use mm_types::run::{MAX_SLOT_RUN, MIN_RUN};

/// A place in an address space: (address space, virtual address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub AsId, pub u64);

/// The memory manager's books: the address spaces, the mapping database and
/// the frames it allocated. Private: every change goes through an operation
/// that keeps them in step with the kernel and with cspace. (`Clone` forks
/// the books, for host tests that fork the kernel model with them.)
#[derive(Clone)]
pub struct Mm {
    db: MappingDb,
    spaces: HashMap<AsId, AddressSpace>,
    next_space: u32,
    /// The cspace object behind each frame the manager allocated, by original cap.
    frames: HashMap<u64, ObjectId>,
    /// Vectors kept between operations, so that a small operation (a page
    /// fault's) allocates as little as the APIs it calls let it.
    scratch: Scratch,
    /// Test hook: the clone's undo does nothing (see [`Mm::break_undo_for_tests`]).
    #[cfg(feature = "model")]
    broken_undo: bool,
}

#[derive(Default, Clone)]
struct Scratch {
    slots: Vec<Slot>,
    copies: Vec<Slot>,
    caps: Vec<CapRef>,
    leaves: Vec<CapSlot>,
    /// A slot-run clone's copies: (first destination index, count).
    runs: Vec<(usize, usize)>,
    /// A slot-run clone's copied destinations, a bit each.
    copied: Vec<u64>,
}

/// The 4 KiB pages of `n` from `vaddr`, if a valid user region.
fn region(vaddr: u64, n: u64) -> Option<PageRange<Size4K>> {
    let start = Page::from_start_address(vaddr).ok()?;
    match PageRange::from_count(start, n) {
        Some(r) if n > 0 && r.bounds().1 <= vspace::USER_VADDR_END => Some(r),
        _ => None,
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
            #[cfg(feature = "model")]
            broken_undo: false,
        }
    }

    /// Breaks the clone's undo on purpose (it neither deletes the copies
    /// nor books what it leaves), so that a test can show that the model
    /// test's oracle catches a broken undo.
    #[cfg(feature = "model")]
    pub fn break_undo_for_tests(&mut self) {
        self.broken_undo = true;
    }

    /// A new address space.
    pub fn create_space<K: Kernel>(&mut self, m: &mut Manager<K>) -> Result<AsId, vspace::CreateError> {
        let s = AddressSpace::create(&mut m.vk())?;
        let id = AsId(self.next_space);
        self.next_space += 1;
        self.spaces.insert(id, s);
        Ok(id)
    }

    /// The address space `id` (read-only: its shadow of the kernel's tables).
    pub fn space(&self, id: AsId) -> Option<&AddressSpace> {
        self.spaces.get(&id)
    }

    /// Every address space's id.
    pub fn space_ids(&self) -> impl Iterator<Item = AsId> + '_ {
        self.spaces.keys().copied()
    }

    /// The mapping database (read-only).
    pub fn db(&self) -> &MappingDb {
        &self.db
    }

    /// The address space `id`, mutably, for mappings **outside the books**
    /// (a probe's code and stack): a caller must not unmap, protect or map
    /// over pages the manager recorded ([`Mm::check`] finds it if it does).
    pub fn space_unbooked(&mut self, id: AsId) -> Option<&mut AddressSpace> {
        self.spaces.get_mut(&id)
    }

    /// Sets the page-table policy of space `id` (see [`TablePolicy`]).
    pub fn set_table_policy(&mut self, id: AsId, policy: TablePolicy) -> bool {
        self.spaces.get_mut(&id).map(|s| s.set_table_policy(policy)).is_some()
    }

    /// Frames the manager allocated (with [`Mm::map_new`]) and not yet freed.
    pub fn frames(&self) -> impl Iterator<Item = (u64, ObjectId)> + '_ {
        self.frames.iter().map(|(c, o)| (*c, *o))
    }

    /// The leaf table of `asid` at `va`, as the database names it.
    fn leaf(&self, asid: AsId, va: u64) -> Result<CapSlot, Corruption> {
        let space = self
            .spaces
            .get(&asid)
            .ok_or_else(|| Corruption::NoLeafTable { vaddr: va })?;
        space
            .table_at(TableLevel::Pt, vspace::VirtAddr::new(va))
            .ok_or_else(|| Corruption::NoLeafTable { vaddr: va })
    }

    /// Records 4 KiB mappings of `caps` (frame, cap) at the pages from
    /// `vaddr` in `asid`, each naming its leaf table (looked up once per
    /// 2 MiB region).
    fn record(&mut self, asid: AsId, vaddr: u64, caps: &[(FrameId, u64)], rights: Rights) -> Result<(), Corruption> {
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
    fn record_clones(&mut self, from: At, to: At, copies: &[CapRef], rights: Rights) -> Result<(), Corruption> {
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

    /// Allocates `n` fresh frames and maps their original caps at `vaddr`
    /// in `asid`. Returns the frames.
    pub fn map_new<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        asid: AsId,
        vaddr: u64,
        n: u64,
        rights: Rights,
    ) -> Result<Vec<FrameId>, MapError> {
        // Plan: every argument checked before anything is allocated.
        let range = region(vaddr, n).ok_or_else(|| MapError::BadRegion)?;
        if rights.is_empty() {
            return Err(MapError::NoRights);
        }
        self.check_free(asid, range).map_err(|e| match e {
            Refusal::UnknownSpace => MapError::UnknownSpace(asid),
            Refusal::Occupied(vaddr) => MapError::Occupied { vaddr },
        })?;
        // As many frames per retype as the kernel allows: consecutive caps
        // (and memory), so that the books keep the map as runs; one at a
        // time where no untyped has room for a batch.
        let unfreed = m.unfreed_tables().len();
        let reclaims = m.cs.reclaim_failures();
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
                    let mut left = Self::free_all(m, allocs.iter().map(|a| a.id));
                    left.reclaims_failed = m.cs.reclaim_failures() - reclaims;
                    return Err(MapError::Alloc(e, left));
                }
            }
        }
        let caps: Vec<CapRef> = allocs.iter().map(|a| a.cptr).collect();
        let space = self.spaces.get_mut(&asid).ok_or_else(|| MapError::UnknownSpace(asid))?;
        let mapped = space.map(&mut m.vk(), range, &caps, rights, CacheAttr::WriteBack);
        // Commit: the frames mapped (all of them, or an undo's residue).
        let residue = match &mapped {
            Ok(()) => None,
            Err(e) => Some(residue_of(e)),
        };
        let mut out = Vec::with_capacity(n as usize);
        let mut recs = Vec::with_capacity(n as usize);
        let mut unmapped = Vec::new();
        for (i, a) in allocs.iter().enumerate() {
            let va = vaddr + i as u64 * PAGE;
            if residue.as_ref().is_some_and(|r| !r.iter().any(|(v, _)| *v == va)) {
                unmapped.push(a.id);
                continue;
            }
            let f = FrameId::new(a.cptr, a.paddr);
            self.db
                .add_frame(f, PageSize::Small)
                .map_err(|_| MapError::Corrupt(Corruption::Frame(a.cptr.0)))?;
            self.frames.insert(a.cptr.0, a.id);
            out.push(f);
            recs.push((f, a.cptr.0));
        }
        match mapped {
            Ok(()) => {
                self.record(asid, vaddr, &recs, rights).map_err(MapError::Corrupt)?;
                Ok(out)
            }
            Err(e) => {
                // The residue's pages are mapped: recorded, one at a time
                // (they need not be consecutive).
                let mut left = Self::free_all(m, unmapped.into_iter());
                for (f, cap) in recs {
                    let va = residue
                        .as_ref()
                        .and_then(|r| r.iter().find(|(_, c)| *c == cap).map(|(v, _)| *v))
                        .unwrap_or(vaddr);
                    self.record(asid, va, &[(f, cap)], rights).map_err(MapError::Corrupt)?;
                    left.mapped.push((asid, va));
                }
                left.tables = tables_kept(&e);
                left.objects
                    .extend(m.unfreed_tables()[unfreed..].iter().map(|(id, _)| *id));
                left.reclaims_failed = m.cs.reclaim_failures() - reclaims;
                Err(MapError::Map(alloc::boxed::Box::new(e), left))
            }
        }
    }

    /// Frees `ids` (frames just allocated, no copies, unmapped); what cspace
    /// refused to free is returned.
    fn free_all<K: Kernel>(m: &mut Manager<K>, ids: impl Iterator<Item = ObjectId>) -> Left {
        let mut left = Left::default();
        for id in ids {
            if m.cs.free(id).is_err() {
                left.objects.push(id);
            }
        }
        left
    }

    fn check_free(&self, asid: AsId, range: PageRange<Size4K>) -> Result<(), Refusal> {
        let space = self.spaces.get(&asid).ok_or_else(|| Refusal::UnknownSpace)?;
        // The space's shadow holds every mapping of the books (and those made
        // outside them): one walk per leaf table answers for both.
        match space.first_mapped(range) {
            Some(va) => Err(Refusal::Occupied(va.as_u64())),
            None => Ok(()),
        }
    }

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
        let range = region(dst_va, n).ok_or_else(|| CloneError::BadRegion)?;
        region(src_va, n).ok_or_else(|| CloneError::BadRegion)?;
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
        // Two pages or more: copies into one slot run, booked per run (with
        // the run invocations where the kernel has them, per page otherwise).
        let r = if n as usize >= MIN_RUN && n <= MAX_SLOT_RUN {
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
                .ok_or_else(|| CloneError::Corrupt(Corruption::CapNotManaged(s.0)))?;
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
        let space = self
            .spaces
            .get_mut(&to.0)
            .ok_or_else(|| CloneError::UnknownSpace(to.0))?;
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
                        .ok_or_else(|| CloneError::Corrupt(Corruption::CapNotManaged(c.0)))?,
                );
            }
        }
        if let Err(e) = m.cs.delete_many(&dead) {
            left.caps.extend(dead[e.deleted..].iter().map(|s| m.cptr(*s)));
        }
        Ok(left)
    }

    /// The clone into a slot run: the copies go into a run of reserved
    /// consecutive slots; on a kernel with the batched leaf-table invocations
    /// each leaf-table run of the destination is copied and mapped in one
    /// `X86PageTable_CopyMapRun` when its sources are consecutive slots of
    /// one CNode, otherwise (and on a stock kernel) per page (`CNode_Copy`,
    /// `X86Page_Map`). The books are then told of the copies, a run of
    /// consecutive sources at a time (so the stock kernel's copies are booked
    /// per run too).
    fn clone_runs<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        from: At,
        sources: &[CapSlot],
        to: At,
        rights: Rights,
    ) -> Result<(), CloneError> {
        let n = sources.len() as u64;
        let range = region(to.1, n).ok_or_else(|| CloneError::BadRegion)?;
        let run = m.cs.alloc_slots(n).map_err(CloneError::Slots)?;
        // One CNode's slots: consecutive cptrs.
        let base = m.cptr(run.slot(0));
        let mut dests = core::mem::take(&mut self.scratch.caps);
        dests.clear();
        dests.extend((0..n).map(|i| CapRef(base + i)));
        let mut runs = core::mem::take(&mut self.scratch.runs);
        runs.clear();
        let mut copied = core::mem::take(&mut self.scratch.copied);
        copied.clear();
        copied.resize((n as usize).div_ceil(64), 0);
        m.kernel_mut().lap(Phase::Slots);
        let l2_bits = m.cs.layout().l2_bits;
        let space = self
            .spaces
            .get_mut(&to.0)
            .ok_or_else(|| CloneError::UnknownSpace(to.0))?;
        let mut k = CopyMapKernel {
            inner: m.vk(),
            dest_base: base,
            srcs: sources,
            runs: &mut runs,
            copied: &mut copied,
            rights,
            dest_path0: None,
            last_src: None,
            l2_bits,
        };
        let mapped = space.map(&mut k, range, &dests, rights, CacheAttr::WriteBack);
        self.scratch.copied = copied;
        m.kernel_mut().lap(Phase::VSpace);
        // On a stock kernel the copies were made one by one: those of one
        // destination leaf table whose sources follow one another in one
        // CNode are one run for the books, as one CopyMapRun's would be. (Not
        // across leaf tables: a longer run can span a break in the stretches
        // of the frames' originals, which cspace then books per copy.)
        if !m.kernel().has_runs() {
            let leaf = |i: usize| (to.1 + i as u64 * PAGE) / LEAF_SPAN;
            // Managed cptrs that follow one another are slots of one CNode
            // when they share the CNode bits (cspace's layout).
            let l2 = m.cs.layout().l2_bits;
            coalesce(&mut runs, |a, b| {
                let (x, y) = (sources[a].0, sources[b].0);
                leaf(a) == leaf(b) && x + (b - a) as u64 == y && x >> l2 == y >> l2
            });
        }
        // The kernel copied runs of consecutive source slots (or single caps):
        // cspace adopts them whatever happened next.
        let adopted = runs.iter().try_for_each(|&(i, k)| {
            let src =
                m.cs.layout()
                    .slot_of(sources[i])
                    .ok_or_else(|| CloneError::Corrupt(Corruption::CapNotManaged(sources[i].0)))?;
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
        let range = region(vaddr, n).ok_or_else(|| DestroyError::BadRegion)?;
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
        let space = self
            .spaces
            .get_mut(&asid)
            .ok_or_else(|| DestroyError::UnknownSpace(asid))?;
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
                .ok_or_else(|| DestroyError::Corrupt(Corruption::CapNotManaged(caps[i].0 .0)))
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
        let deleted_now = delete_copies(m, &left);
        let caps_left: Vec<u64> = match &deleted_now {
            Ok(()) => Vec::new(),
            Err((done, _)) => left[*done..].iter().map(|s| m.cptr(*s)).collect(),
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
            (None, Err((_, e))) => Err(DestroyError::Delete(
                e,
                Left {
                    caps: caps_left,
                    ..Left::default()
                },
            )),
            (None, Ok(())) => Ok(()),
        }
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

    /// Unmaps `frame` from every address space and deletes every copy of
    /// its cap: afterwards only the original cap remains, unmapped.
    /// `cap` may name any cap of the frame (its original or a copy).
    /// Returns how many mappings were removed.
    pub fn revoke_frame<K: Kernel>(&mut self, m: &mut Manager<K>, cap: u64) -> Result<usize, RevokeError> {
        let frame = self
            .db
            .frame_of_cap(CapSlot(cap))
            .ok_or_else(|| RevokeError::NotAFrame(cap))?;
        let orig =
            m.cs.layout()
                .slot_of(frame.slot)
                .ok_or_else(|| RevokeError::Corrupt(Corruption::CapNotManaged(frame.slot.0)))?;
        let maps: Vec<Mapping> = self.db.mappings_of_frame(frame).collect();
        for (k, r) in maps.iter().enumerate() {
            let space = self
                .spaces
                .get_mut(&r.asid)
                .ok_or_else(|| RevokeError::Corrupt(Corruption::NoLeafTable { vaddr: r.vaddr }))?;
            let range =
                region(r.vaddr, 1).ok_or_else(|| RevokeError::Corrupt(Corruption::NoLeafTable { vaddr: r.vaddr }))?;
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

    /// Every mapping of `frame`: who can reach this memory.
    pub fn who_maps(&self, frame: FrameId) -> Vec<Mapping> {
        self.db.mappings_of_frame(frame).collect()
    }

    /// The frame, cap and rights behind `vaddr` in `asid`.
    pub fn what_backs(&self, asid: AsId, vaddr: u64) -> Option<Mapping> {
        self.db.lookup(asid, vaddr)
    }

    /// Unmaps everything the manager recorded in `asid`, deletes the copies,
    /// and destroys the space. Returns the caps of mappings made outside the
    /// books (each unmapped; the caller's).
    pub fn destroy_space<K: Kernel>(
        &mut self,
        m: &mut Manager<K>,
        asid: AsId,
    ) -> Result<Vec<CapRef>, DestroySpaceError> {
        if !self.spaces.contains_key(&asid) {
            return Err(DestroySpaceError::UnknownSpace(asid));
        }
        let mut recs: Vec<u64> = self.db.mappings_in(asid).map(|r| r.vaddr).collect();
        recs.sort_unstable();
        // One destroy per stretch of consecutive recorded pages.
        let mut i = 0;
        while i < recs.len() {
            let mut k = 1;
            while i + k < recs.len() && recs[i + k] == recs[i] + k as u64 * PAGE {
                k += 1;
            }
            self.destroy_region(m, asid, recs[i], k as u64)
                .map_err(DestroySpaceError::Destroy)?;
            i += k;
        }
        let space = self
            .spaces
            .remove(&asid)
            .ok_or_else(|| DestroySpaceError::UnknownSpace(asid))?;
        match space.destroy(&mut m.vk()) {
            Ok(t) => Ok(t.frames.into_iter().map(|(_, c)| c).collect()),
            Err(e) => {
                let e = *e;
                let failure = (e.op, e.failure);
                self.spaces.insert(asid, e.space);
                Err(DestroySpaceError::Space {
                    op: failure.0,
                    failure: failure.1,
                    released: e.released.into_iter().map(|(_, c)| c).collect(),
                })
            }
        }
    }

    /// Frees a frame the manager allocated: revokes it, then frees the object.
    pub fn free_frame<K: Kernel>(&mut self, m: &mut Manager<K>, frame: FrameId) -> Result<(), FreeError> {
        let Some(&id) = self.frames.get(&frame.slot.0) else {
            return Err(FreeError::NotAFrame(frame.slot.0));
        };
        if self.db.frame_of_cap(frame.slot) != Some(frame) {
            return Err(FreeError::NotAFrame(frame.slot.0));
        }
        self.revoke_frame(m, frame.slot.0).map_err(FreeError::Revoke)?;
        self.frames.remove(&frame.slot.0);
        self.db
            .remove_frame(frame)
            .map_err(|_| FreeError::Revoke(RevokeError::Corrupt(Corruption::Frame(frame.slot.0))))?;
        m.cs.free(id).map_err(|e| {
            FreeError::Free(
                e,
                Left {
                    objects: alloc::vec![id],
                    ..Left::default()
                },
            )
        })
    }

    /// Audits every book and the invariants between them: the database's
    /// and cspace's own invariants; every recorded mapping is in its space's
    /// shadow with the same cap and rights; every recorded cap is a slot
    /// cspace manages; every frame the manager allocated is a live cspace
    /// object whose cap the database knows.
    pub fn check<K: Kernel>(&self, m: &Manager<K>) -> Result<(), alloc::string::String> {
        use alloc::format;
        self.db.check().map_err(|e| format!("mapping-db: {e:?}"))?;
        m.cs.check_books().map_err(|e| format!("cspace: {e}"))?;
        let l = m.cs.layout();
        for (&asid, space) in &self.spaces {
            for r in self.db.mappings_in(asid) {
                let s = space
                    .lookup(vspace::VirtAddr::new(r.vaddr))
                    .ok_or_else(|| format!("{asid:?} {:#x}: recorded, not in the shadow", r.vaddr))?;
                if s.frame != r.cap || s.vaddr.as_u64() != r.vaddr || s.rights != r.rights {
                    return Err(format!("{asid:?} {:#x}: record {r:?}, shadow {s:?}", r.vaddr));
                }
                if l.slot_of(r.cap).is_none_or(|s| !m.cs.is_managed(s)) {
                    return Err(format!("{asid:?} {:#x}: cap {:#x} not managed", r.vaddr, r.cap.0));
                }
            }
        }
        for (&cap, &id) in &self.frames {
            let a = m.cs.object(id).ok_or_else(|| format!("frame {cap:#x}: object gone"))?;
            if a.cptr.0 != cap || self.db.frame_of_cap(CapSlot(cap)).is_none() {
                return Err(format!("frame {cap:#x}: object {a:?} or record missing"));
            }
        }
        Ok(())
    }
}

/// Deletes the copies in `slots`, in order: one `CNode_Delete` each, booked
/// a stretch of consecutive slots of one CNode at a time
/// (`CSpace::adopt_deletes_run`: copies in copy runs are dropped a run at a
/// time, not materialised). A kernel refusal stops it: the copies before it
/// are deleted and booked, the rest stay; returns how many were deleted.
/// The slots hold copies by the database's flags (a cross-book invariant
/// `Mm::check` audits); cspace refusing to book one is a [`Corruption`].
fn delete_copies<K: Kernel>(m: &mut Manager<K>, slots: &[Slot]) -> Result<(), (usize, cspace::CapError)> {
    let mut i = 0;
    while i < slots.len() {
        let first = slots[i];
        let mut n = 1;
        while i + n < slots.len() && slots[i + n].cnode == first.cnode && slots[i + n].index == first.index + n as u64 {
            n += 1;
        }
        if n < MIN_RUN {
            // A lone copy: cspace's own delete (its books per cap are
            // cheaper for one than a run's).
            m.cs.delete_many(&slots[i..i + n])
                .map_err(|e| (i + e.deleted, e.error))?;
            i += n;
            continue;
        }
        let mut done = 0;
        let mut refused = None;
        for s in &slots[i..i + n] {
            let path = m.cs.path(*s);
            match m.kernel_mut().cnode_delete(path) {
                Ok(()) => done += 1,
                Err(e) => {
                    refused = Some(cspace::CapError::Kernel {
                        op: cspace::KernelOp::Delete,
                        error: e,
                    });
                    break;
                }
            }
        }
        m.cs.adopt_deletes_run(first, done as u64).map_err(|e| (i, e))?;
        if let Some(e) = refused {
            return Err((i + done, e));
        }
        i += n;
    }
    Ok(())
}

/// Merges adjacent entries of `runs` ((first, count), in order) when
/// `joins(a, b)` says that entry index `b` continues the run from `a`.
fn coalesce(runs: &mut Vec<(usize, usize)>, joins: impl Fn(usize, usize) -> bool) {
    let mut out = 0;
    for r in 0..runs.len() {
        let (i, k) = runs[r];
        if out > 0 {
            let (pi, pk) = runs[out - 1];
            if pi + pk == i && joins(pi, i) {
                runs[out - 1].1 += k;
                continue;
            }
        }
        runs[out] = (i, k);
        out += 1;
    }
    runs.truncate(out);
}

/// Why a validation refused (mapped to each operation's error).
enum Refusal {
    UnknownSpace,
    Occupied(u64),
}

/// The (vaddr, cptr) pairs a map's failed undo left mapped.
fn residue_of(e: &vspace::MapError) -> Vec<(u64, u64)> {
    match e {
        vspace::MapError::Kernel { rollback, .. } | vspace::MapError::OutOfMemory { rollback, .. } => match rollback {
            vspace::Rollback::Complete => Vec::new(),
            vspace::Rollback::Incomplete { residue, .. } => residue.iter().map(|(v, c)| (v.as_u64(), c.0)).collect(),
        },
        _ => Vec::new(),
    }
}

/// The paging structures a map's failed undo left in the space.
fn tables_kept(e: &vspace::MapError) -> usize {
    match e {
        vspace::MapError::Kernel {
            rollback: vspace::Rollback::Incomplete { tables_kept, .. },
            ..
        }
        | vspace::MapError::OutOfMemory {
            rollback: vspace::Rollback::Incomplete { tables_kept, .. },
            ..
        } => *tables_kept,
        _ => 0,
    }
}

fn vec_bitmap(n: usize) -> Vec<u64> {
    alloc::vec![0u64; n.div_ceil(64)]
}

#[cfg(test)]
mod tests {
    use super::coalesce;
    use alloc::vec;

    /// Adjacent entries merge only when they touch and `joins` agrees;
    /// merged entries keep absorbing later ones.
    #[test]
    fn coalesce_merges_only_continuations() {
        let mut runs = vec![(0, 1), (1, 1), (2, 3), (6, 1), (7, 2), (9, 1)];
        // Entry 7 does not continue 6's run.
        coalesce(&mut runs, |_, b| b != 7);
        assert_eq!(runs, vec![(0, 5), (6, 1), (7, 3)]);
        let mut none = vec![(0, 2), (2, 2)];
        coalesce(&mut none, |_, _| false);
        assert_eq!(none, vec![(0, 2), (2, 2)]);
        let mut empty: alloc::vec::Vec<(usize, usize)> = vec![];
        coalesce(&mut empty, |_, _| true);
        assert!(empty.is_empty());
    }
}
