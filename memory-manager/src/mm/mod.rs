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
//!
//! The operations are split by file: this module (the books, spaces, map, queries, space
//! destruction, freeing, the audit), `record` (the database records), `clone` (clone, move),
//! `destroy` (destroy, revoke).

mod clone;
mod destroy;
mod record;

use alloc::vec::Vec;
use cspace::{ObjectId, ObjectType, Slot};
use hashbrown::HashMap;
use mapping_db::{AsId, CapSlot, FrameId, Mapping, MappingDb, PageSize};
use vspace::{AddressSpace, CacheAttr, CapRef, Page, PageRange, Rights, Size4K, TablePolicy};

use crate::error::{Corruption, DestroySpaceError, FreeError, Left, MapError, RevokeError};
use crate::kernel::Kernel;
use crate::resources::Manager;

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
    /// A batched clone's copies: (first destination index, count).
    runs: Vec<(usize, usize)>,
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
        let range = region(vaddr, n).ok_or(MapError::BadRegion)?;
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
        let space = self.spaces.get_mut(&asid).ok_or(MapError::UnknownSpace(asid))?;
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
        let space = self.spaces.get(&asid).ok_or(Refusal::UnknownSpace)?;
        // The space's shadow holds every mapping of the books (and those made
        // outside them): one walk per leaf table answers for both.
        match space.first_mapped(range) {
            Some(va) => Err(Refusal::Occupied(va.as_u64())),
            None => Ok(()),
        }
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
        let space = self.spaces.remove(&asid).ok_or(DestroySpaceError::UnknownSpace(asid))?;
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
