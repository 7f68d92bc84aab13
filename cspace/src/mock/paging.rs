//! The x86_64 paging part of [`MockKernel`], following seL4 5.0.0
//! (`src/arch/x86/kernel/vspace.c`, `src/arch/x86/64/kernel/vspace.c`,
//! `src/arch/x86/object/objecttype.c`, `src/arch/x86/64/object/objecttype.c`)
//! and patch 0005 (`src/arch/x86/64/kernel/batched_leaf.c`).
//!
//! # State
//! - **Paging structures.** Every live PML4, PDPT, PD and PT object has its
//!   512 entries (sparse): a [`PagingEntry`] names the next-level table or a
//!   frame (4 KiB in a PT, 2 MiB in a PD, 1 GiB in a PDPT) with the entry's
//!   rights. Like the hardware's, an entry holds a physical address; the
//!   kernel compares addresses (not caps) when it unmaps, and so does the
//!   model. An entry also names the object it was made for, which may have
//!   died since (5.0 leaves entries behind, see below): [`MockKernel::object`]
//!   of it is then `None`.
//! - **Cap records** ([`CapMapping`], kept in the cap's slot): a frame cap's
//!   `capFMappedASID`/`capFMappedAddress`, a PT/PD/PDPT cap's `IsMapped`,
//!   ASID and address, a PML4 cap's `IsMapped` and ASID. `CNode_Move` carries
//!   them; a copy gets what `Arch_deriveCap` gives (`arch_derive`).
//! - **ASIDs.** The initial thread's ASID pool (base 0, 512 ASIDs, ASID 0
//!   never used, [`IT_ASID`] the root task's). The pool is implicit: the
//!   model does not look at the pool cap (boot slot 6).
//!
//! # Deletion (5.0's `finaliseCap`)
//! Only the final cap of an object (no other cap names it:
//! `isFinalCapability`) is finalised (`MockKernel::arch_finalise`): a mapped
//! frame cap unmaps its entry if the entry still holds the frame
//! (`unmapPage`); a mapped PT/PD/PDPT cap clears its parent's entry if it
//! still points to the table (`unmapPageTable`, `unmapPageDirectory`,
//! `unmapPDPT`); a PML4 cap with an ASID frees the ASID (`deleteASID`), so its
//! whole tree becomes unreachable. **A non-final mapped frame cap is deleted
//! with no effect on its entry**: the entry stays, with no cap recording it
//! (changed upstream in 7.0.0). A paging structure's entries die with the
//! object; an object retyped from the same memory is a new object with empty
//! tables.
//!
//! # Not modelled
//! TLBs and their invalidation (so neither of 5.0's SMP shootdown holes),
//! VM attributes (cacheability), IOSpace and EPT mappings, ASID pools other
//! than the initial thread's (`ASIDControl_MakePool`, deleting a pool), the
//! root task's own mappings (its image, IPC buffer and boot info frame are not
//! in the modelled initial VSpace), and the kernel's global mappings (see
//! [`MockKernel::page_map`] for the one way to reach them).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{
    mask, Cap, CteRef, MockKernel, MockObject, ObjId, CALL_ASID_POOL_ASSIGN, CALL_COPY_MAP_RUN, CALL_MAP_RUN,
    CALL_PAGE_MAP, CALL_PAGE_REMAP, CALL_PAGE_UNMAP, CALL_TABLE_MAP, CALL_TABLE_UNMAP, CALL_UNMAP_RUN,
};
use crate::layout::CapPath;
use crate::types::{CPtr, KernelError, ObjectType, Rights};

/// `PPTR_USER_TOP` of a uniprocessor 5.0 x86_64 kernel (`PPTR_BASE`,
/// `0xffffff8000000000`): the user may map below it (PML4 entries 0..=510).
pub const PPTR_USER_TOP_UP: u64 = 0xffff_ff80_0000_0000;

/// `PPTR_USER_TOP` of an SMP kernel (up to 63 cores): one PML4 entry below
/// `PPTR_BASE` holds the TLB bitmap.
pub const PPTR_USER_TOP_SMP: u64 = 0xffff_ff00_0000_0000;

/// The initial thread's ASID (`IT_ASID`).
pub const IT_ASID: u64 = 1;

/// ASIDs in a pool (`BIT(asidLowBits)`, asidLowBits = 9 on x86_64).
pub const ASID_POOL_ENTRIES: u64 = 512;

/// `VMReadWrite` as [`Rights`] (see [`mask_vm_rights`]).
pub(crate) const VM_READ_WRITE: Rights = Rights::READ.union(Rights::WRITE);

/// Entries in a table, and so in a run (`BIT(PT_INDEX_BITS)`).
const TABLE_ENTRIES: u64 = 512;

/// `PAGE_BITS`, `PD_INDEX_OFFSET`, `PDPT_INDEX_OFFSET`, `PML4_INDEX_OFFSET`.
const PT_SHIFT: u8 = 12;
const PD_SHIFT: u8 = 21;
const PDPT_SHIFT: u8 = 30;
const PML4_SHIFT: u8 = 39;

/// A paging structure below the PML4 (the `table_*` invocations): the paging
/// level every crate of the manager shares (`mm_types::TableLevel`; its
/// object type is [`ObjectType::table`], and the map invocations clear the
/// bits a table of the level spans, `span_bits`: PDPT 39, PD 30, PT 21).
pub use mm_types::TableLevel as PagingLevel;

/// A present entry of a paging structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingEntry {
    /// The next-level table (`pml4e`, `pdpte_pdpte_pd`, `pde_pde_small`).
    Table {
        /// The table object.
        obj: ObjId,
        /// Its physical address (what the entry holds).
        paddr: u64,
    },
    /// A frame (`pte`, `pde_pde_large`, `pdpte_pdpte_1g`).
    Frame {
        /// The frame object the entry was made for (possibly dead since).
        obj: ObjId,
        /// Its physical address (what the entry holds).
        paddr: u64,
        /// The entry's VM rights: `READ | WRITE` (`VMReadWrite`), `READ`
        /// (`VMReadOnly`) or empty (`VMKernelOnly`: present, supervisor only).
        rights: Rights,
    },
}

/// The mapping a cap records (seL4 keeps it in the cap itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapMapping {
    /// The ASID (`capFMappedASID`, `capPTMappedASID`, ..., `capPML4MappedASID`).
    pub asid: u64,
    /// The address (`capFMappedAddress`, `capPTMappedAddress`, ...; 0 for a
    /// PML4 cap).
    pub vaddr: u64,
    /// The PML4 object the ASID named when the record was made (not in the
    /// kernel's cap; for queries).
    pub root: ObjId,
}

/// `maskVMRights(vm_rights, mask)`: the VM rights of a frame cap (`READ |
/// WRITE`, `READ` or empty, see [`PagingEntry::Frame`]) masked by a rights
/// word. Without read right the result is `VMKernelOnly` (empty), so a
/// write-only request gives no user access at all; read without write gives
/// read-only.
pub fn mask_vm_rights(vm: Rights, mask: Rights) -> Rights {
    if vm == Rights::READ && mask.contains(Rights::READ) {
        return Rights::READ;
    }
    if vm == VM_READ_WRITE && mask.contains(Rights::READ) {
        return if mask.contains(Rights::WRITE) {
            VM_READ_WRITE
        } else {
            Rights::READ
        };
    }
    Rights::empty()
}

/// Whether objects of `ty` hold paging entries.
pub(crate) fn is_table(ty: ObjectType) -> bool {
    matches!(
        ty,
        ObjectType::Pml4 | ObjectType::Pdpt | ObjectType::PageDirectory | ObjectType::PageTable
    )
}

/// `Arch_deriveCap` / `Mode_deriveCap` (x86_64, 5.0): the mapping a derived
/// copy records.
///
/// - a frame cap: the copy is unmapped (`capFMappedASID = asidInvalid`);
/// - a PT, PD or PML4 cap: refused with `IllegalOperation` when unmapped (no
///   ASID for a PML4), else the copy is the same cap, mapping included;
/// - a PDPT cap: 5.0 has no case for it (`Mode_deriveCap` reaches
///   `fail("Invalid arch cap type")`): **the kernel halts**. The model panics.
pub(super) fn arch_derive(cap: Cap, vm: Option<CapMapping>) -> Result<Option<CapMapping>, KernelError> {
    match cap {
        Cap::Object { ty, .. } if ty.is_frame() => Ok(None),
        Cap::Object {
            ty: ObjectType::PageTable | ObjectType::PageDirectory | ObjectType::Pml4,
            ..
        } => match vm {
            Some(m) => Ok(Some(m)),
            None => Err(KernelError::IllegalOperation),
        },
        Cap::Object {
            ty: ObjectType::Pdpt, ..
        } => panic!(
            "seL4 5.0 halts: deriving (CNode_Copy/Mint of) a PDPT cap reaches fail(\"Invalid arch cap type\") \
             in Mode_deriveCap"
        ),
        _ => Ok(None),
    }
}

/// Size bits of a frame type.
fn frame_bits(ty: ObjectType) -> u8 {
    ty.fixed_bits().expect("frame")
}

/// The index of `vaddr` in a table whose entries translate `shift` bits.
fn index(vaddr: u64, shift: u8) -> u64 {
    (vaddr >> shift) & (TABLE_ENTRIES - 1)
}

/// The address with bits 48..63 copies of bit 47 (what a thread uses).
fn canonical(vaddr: u64) -> u64 {
    (((vaddr << 16) as i64) >> 16) as u64
}

/// The decoder's dispatch on the invoked cap's type: a null cap is
/// `InvalidCapability` (`decodeInvocation`); a cap of another type gets the
/// label in its own decoder, which refuses it with `IllegalOperation`.
/// (An endpoint or notification cap would in fact send or signal: the model
/// refuses instead.)
fn decode_type(
    cap: Option<Cap>,
    want: impl Fn(ObjectType) -> bool,
) -> Result<(ObjId, ObjectType, Rights), KernelError> {
    match cap {
        None => Err(KernelError::InvalidCapability),
        Some(Cap::Object { obj, ty, rights, .. }) if want(ty) => Ok((obj, ty, rights)),
        Some(_) => Err(KernelError::IllegalOperation),
    }
}

/// A refusal of a run invocation that concerns the whole run.
fn whole(e: KernelError) -> (KernelError, Option<u64>) {
    (e, None)
}

/// `runCheckRange` (patch 0005).
fn run_check_range(first: u64, count: u64) -> Result<(), KernelError> {
    if first >= TABLE_ENTRIES {
        return Err(KernelError::RangeError);
    }
    if count < 1 || count > TABLE_ENTRIES - first {
        return Err(KernelError::RangeError);
    }
    Ok(())
}

/// The VSpace root a run is checked against (`runResolveTable`'s `vroot`).
enum RunRoot {
    /// A map run: the root cap's PML4 and ASID, `None` if it is not a valid
    /// native root.
    Map(Option<(ObjId, u64)>),
    /// An unmap run: the table's own ASID.
    Unmap,
}

/// The leaf table a run updates (`run_table_t`).
struct RunTable {
    pt: ObjId,
    base: u64,
    asid: u64,
    vspace: ObjId,
}

impl MockKernel {
    // ------------------------------------------------------------ set-up

    /// The initial thread's VSpace: a PML4 cap at `at` with [`IT_ASID`].
    pub(super) fn boot_it_vspace(&mut self, at: CteRef) {
        let obj = self.new_obj(MockObject {
            ty: ObjectType::Pml4,
            paddr: 0,
            bits: 12,
            device: false,
            caps: 0,
            from: None,
        });
        self.tables.insert(obj, BTreeMap::new());
        let cap = Cap::Object {
            obj,
            ty: ObjectType::Pml4,
            badge: 0,
            rights: Rights::ALL_CAP,
        };
        self.put(at, cap, None, true);
        self.cte_mut(at).vm = Some(CapMapping {
            asid: IT_ASID,
            vaddr: 0,
            root: obj,
        });
        self.asid_pool.insert(IT_ASID, obj);
    }

    /// The user top the model checks addresses against (`PPTR_USER_TOP`;
    /// [`PPTR_USER_TOP_UP`] after boot).
    pub fn user_top(&self) -> u64 {
        self.user_top
    }

    /// Sets the user top (e.g. [`PPTR_USER_TOP_SMP`] to model an SMP
    /// kernel). Must be a multiple of 2^39.
    pub fn set_user_top(&mut self, top: u64) {
        assert!(top & mask(PML4_SHIFT) == 0 && top != 0, "user top {top:#x}");
        self.user_top = top;
    }

    // ------------------------------------------------------------ tables

    /// `findVSpaceForASID`: the PML4 an ASID names.
    fn find_vspace(&self, asid: u64) -> Option<ObjId> {
        self.asid_pool.get(&asid).copied()
    }

    fn entry(&self, table: ObjId, i: u64) -> Option<PagingEntry> {
        self.tables.get(&table)?.get(&(i as u16)).copied()
    }

    fn set_entry(&mut self, table: ObjId, i: u64, e: Option<PagingEntry>) {
        let t = self.tables.get_mut(&table).expect("a live paging structure");
        match e {
            Some(e) => t.insert(i as u16, e),
            None => t.remove(&(i as u16)),
        };
    }

    /// The table an entry points to, if it is a table entry.
    fn next_table(&self, table: ObjId, i: u64) -> Option<ObjId> {
        match self.entry(table, i)? {
            PagingEntry::Table { obj, .. } => {
                assert!(
                    self.tables.contains_key(&obj),
                    "a reachable entry names dead table {obj:?}"
                );
                Some(obj)
            }
            PagingEntry::Frame { .. } => None,
        }
    }

    /// `lookupPML4Slot` (never fails).
    fn pml4_slot(&self, pml4: ObjId, vaddr: u64) -> (ObjId, u64) {
        (pml4, index(vaddr, PML4_SHIFT))
    }

    /// `lookupPDPTSlot`: `None` if the PML4 entry is not present.
    fn pdpt_slot(&self, pml4: ObjId, vaddr: u64) -> Option<(ObjId, u64)> {
        let pdpt = self.next_table(pml4, index(vaddr, PML4_SHIFT))?;
        Some((pdpt, index(vaddr, PDPT_SHIFT)))
    }

    /// `lookupPDSlot`: `None` if a level above is missing or the PDPT entry
    /// is a 1 GiB page.
    fn pd_slot(&self, pml4: ObjId, vaddr: u64) -> Option<(ObjId, u64)> {
        let (pdpt, i) = self.pdpt_slot(pml4, vaddr)?;
        let pd = self.next_table(pdpt, i)?;
        Some((pd, index(vaddr, PD_SHIFT)))
    }

    /// `lookupPTSlot`: `None` if a level above is missing or the PD entry is
    /// a 2 MiB page.
    fn pt_slot(&self, pml4: ObjId, vaddr: u64) -> Option<(ObjId, u64)> {
        let (pd, i) = self.pd_slot(pml4, vaddr)?;
        let pt = self.next_table(pd, i)?;
        Some((pt, index(vaddr, PT_SHIFT)))
    }

    /// The slot a frame of `bits` maps in (`lookupPTSlot`, `lookupPDSlot`,
    /// `lookupPDPTSlot` by size).
    fn leaf_slot(&self, pml4: ObjId, vaddr: u64, bits: u8) -> Option<(ObjId, u64)> {
        match bits {
            PT_SHIFT => self.pt_slot(pml4, vaddr),
            PD_SHIFT => self.pd_slot(pml4, vaddr),
            _ => self.pdpt_slot(pml4, vaddr),
        }
    }

    /// The slot a table of `level` maps in (`lookupPDSlot`, `lookupPDPTSlot`,
    /// `lookupPML4Slot`).
    fn parent_slot(&self, level: PagingLevel, pml4: ObjId, vaddr: u64) -> Option<(ObjId, u64)> {
        match level {
            PagingLevel::Pt => self.pd_slot(pml4, vaddr),
            PagingLevel::Pd => self.pdpt_slot(pml4, vaddr),
            PagingLevel::Pdpt => Some(self.pml4_slot(pml4, vaddr)),
        }
    }

    fn paddr(&self, obj: ObjId) -> u64 {
        self.objects[&obj].paddr
    }

    fn vm(&self, at: CteRef) -> Option<CapMapping> {
        self.cte(at).and_then(|c| c.vm)
    }

    // ------------------------------------------------------------ unmapping

    /// `unmapPage`: clears the entry at (`asid`, `vaddr`) if it still maps
    /// the frame at `paddr` (and is a page of that size); else nothing.
    fn unmap_page(&mut self, bits: u8, asid: u64, vaddr: u64, paddr: u64) {
        let Some(root) = self.find_vspace(asid) else { return };
        let Some((table, i)) = self.leaf_slot(root, vaddr, bits) else {
            return;
        };
        if matches!(self.entry(table, i), Some(PagingEntry::Frame { paddr: p, .. }) if p == paddr) {
            self.set_entry(table, i, None);
        }
    }

    /// `unmapPageTable`, `unmapPageDirectory`, `unmapPDPT`: clears the
    /// parent's entry if it still points to the table `obj`; else nothing.
    fn unmap_table(&mut self, level: PagingLevel, m: CapMapping, obj: ObjId) {
        let Some(root) = self.find_vspace(m.asid) else { return };
        let Some((parent, i)) = self.parent_slot(level, root, m.vaddr) else {
            return;
        };
        let paddr = self.paddr(obj);
        if matches!(self.entry(parent, i), Some(PagingEntry::Table { paddr: p, .. }) if p == paddr) {
            self.set_entry(parent, i, None);
        }
    }

    /// `Arch_finaliseCap` / `Mode_finaliseCap` of a FINAL cap (the caller
    /// checks finality, as `finaliseCap(cap, final, ...)` passes it):
    /// a mapped frame cap -> `unmapPage`; a mapped PT/PD/PDPT cap ->
    /// `unmapPageTable`/`unmapPageDirectory`/`unmapPDPT`; a PML4 cap with an
    /// ASID -> `deleteASID` (the pool entry is cleared if it names this
    /// PML4). A paging structure's own entries are left as they are (the
    /// object dies with them).
    pub(super) fn arch_finalise(&mut self, cap: Cap, vm: Option<CapMapping>) {
        let (Cap::Object { obj, ty, .. }, Some(m)) = (cap, vm) else {
            return;
        };
        match ty {
            ObjectType::Frame4K | ObjectType::Frame2M | ObjectType::Frame1G => {
                let paddr = self.paddr(obj);
                self.unmap_page(frame_bits(ty), m.asid, m.vaddr, paddr);
            }
            ObjectType::PageTable => self.unmap_table(PagingLevel::Pt, m, obj),
            ObjectType::PageDirectory => self.unmap_table(PagingLevel::Pd, m, obj),
            ObjectType::Pdpt => self.unmap_table(PagingLevel::Pdpt, m, obj),
            ObjectType::Pml4 if self.find_vspace(m.asid) == Some(obj) => {
                self.asid_pool.remove(&m.asid);
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------ decoding

    /// The invoked cap's slot and cap (a lookup failure is reported as
    /// `InvalidCapability`, see the [module](super) doc).
    fn lookup_invoked(&self, cptr: CPtr) -> Result<(CteRef, Option<Cap>), KernelError> {
        let s = self.lookup_slot(cptr).map_err(|_| KernelError::InvalidCapability)?;
        Ok((s, self.cap(s)))
    }

    /// An extra cap's slot and cap (`lookupExtraCaps`; a lookup failure is
    /// reported as `FailedLookup`).
    fn lookup_extra(&self, cptr: CPtr) -> Result<(CteRef, Option<Cap>), KernelError> {
        let s = self.lookup_slot(cptr).map_err(|_| KernelError::FailedLookup)?;
        Ok((s, self.cap(s)))
    }

    /// `isValidNativeRoot`: the cap in `slot` is a PML4 cap with an ASID; its
    /// PML4 and ASID.
    fn native_root(&self, slot: CteRef) -> Option<(ObjId, u64)> {
        let cte = self.cte(slot)?;
        match (cte.cap, cte.vm) {
            (
                Cap::Object {
                    obj,
                    ty: ObjectType::Pml4,
                    ..
                },
                Some(m),
            ) => Some((obj, m.asid)),
            _ => None,
        }
    }

    /// `findVSpaceForASID(asid)` must find `root`: `FailedLookup` if the ASID
    /// names nothing, `InvalidCapability` if it names another PML4.
    fn check_asid(&self, asid: u64, root: ObjId) -> Result<(), KernelError> {
        match self.find_vspace(asid) {
            None => Err(KernelError::FailedLookup),
            Some(r) if r != root => Err(KernelError::InvalidCapability),
            Some(_) => Ok(()),
        }
    }

    // ------------------------------------------------------------ ASIDs

    /// `X86ASIDPool_Assign` on the initial thread's ASID pool
    /// (`decodeX86MMUInvocation`, case `cap_asid_pool_cap`;
    /// `performASIDPoolInvocation`), in the kernel's order:
    /// 1. `vroot` is not a PML4 cap, or has an ASID already:
    ///    `InvalidCapability` (`isVTableRoot`, `cap_get_capMappedASID`);
    /// 2. no free ASID in the pool (ASID 0 is never handed out):
    ///    `DeleteFirst`.
    ///
    /// The first free ASID is written into the PML4 cap at `vroot` (that
    /// slot only) and the pool.
    pub fn asid_pool_assign(&mut self, vroot: CPtr) -> Result<(), KernelError> {
        self.enter(CALL_ASID_POOL_ASSIGN)?;
        let (slot, cap) = self.lookup_extra(vroot)?;
        let obj = match cap {
            Some(Cap::Object {
                obj,
                ty: ObjectType::Pml4,
                ..
            }) if self.vm(slot).is_none() => obj,
            _ => return Err(KernelError::InvalidCapability),
        };
        let asid = (0..ASID_POOL_ENTRIES)
            .find(|&a| a != 0 && !self.asid_pool.contains_key(&a))
            .ok_or(KernelError::DeleteFirst)?;
        self.asid_pool.insert(asid, obj);
        self.cte_mut(slot).vm = Some(CapMapping {
            asid,
            vaddr: 0,
            root: obj,
        });
        Ok(())
    }

    // ------------------------------------------------------------ tables

    /// `X86PDPT_Map` (`decodeX64PDPTInvocation`), `X86PageDirectory_Map`
    /// (`decodeX64PageDirectoryInvocation`), `X86PageTable_Map`
    /// (`decodeX86PageTableInvocation`), in the kernel's order:
    /// 1. the invoked cap is not a table of `level`: `IllegalOperation`
    ///    (empty: `InvalidCapability`);
    /// 2. the table cap is mapped already: `InvalidCapability`;
    /// 3. `vaddr` loses the bits the table spans ([`PagingLevel::span_bits`]);
    ///    `vroot` is not a PML4 cap with an ASID (`isValidNativeRoot`):
    ///    `InvalidCapability`;
    /// 4. `vaddr >= PPTR_USER_TOP`: `InvalidArgument`;
    /// 5. PT only (the PD and PDPT decoders do not check it):
    ///    `findVSpaceForASID` fails, `FailedLookup`; names another PML4,
    ///    `InvalidCapability`;
    /// 6. no table above (`lookupPDSlot`, `lookupPDPTSlot`; the PML4 slot
    ///    always exists): `FailedLookup`;
    /// 7. the entry is present (a table or a large/huge page): `DeleteFirst`.
    ///
    /// Then the parent's entry points to the table and the cap records
    /// (ASID, masked address).
    pub fn table_map(&mut self, level: PagingLevel, table: CPtr, vroot: CPtr, vaddr: u64) -> Result<(), KernelError> {
        self.enter(CALL_TABLE_MAP)?;
        let (slot, cap) = self.lookup_invoked(table)?;
        let (root_slot, _) = self.lookup_extra(vroot)?;
        let (obj, _, _) = decode_type(cap, |t| t == ObjectType::table(level))?;
        if self.vm(slot).is_some() {
            return Err(KernelError::InvalidCapability);
        }
        let vaddr = vaddr & !mask(level.span_bits() as u8);
        let (root, asid) = self.native_root(root_slot).ok_or(KernelError::InvalidCapability)?;
        if vaddr >= self.user_top {
            return Err(KernelError::InvalidArgument);
        }
        if level == PagingLevel::Pt {
            self.check_asid(asid, root)?;
        }
        let (parent, i) = self.parent_slot(level, root, vaddr).ok_or(KernelError::FailedLookup)?;
        if self.entry(parent, i).is_some() {
            return Err(KernelError::DeleteFirst);
        }
        let paddr = self.paddr(obj);
        self.set_entry(parent, i, Some(PagingEntry::Table { obj, paddr }));
        self.cte_mut(slot).vm = Some(CapMapping { asid, vaddr, root });
        Ok(())
    }

    /// `X86PDPT_Unmap`, `X86PageDirectory_Unmap`, `X86PageTable_Unmap`
    /// (same decoders; `performX64PDPTInvocationUnmap`,
    /// `performX64PageDirectoryInvocationUnmap`,
    /// `performX86PageTableInvocationUnmap`):
    /// 1. the invoked cap is not a table of `level`: `IllegalOperation`
    ///    (empty: `InvalidCapability`);
    /// 2. another cap names the table (`isFinalCapability`): `RevokeFirst`.
    ///
    /// A mapped table is unlinked from its parent if the parent still points
    /// to it (`unmapPDPT`, ...) and its entries are all cleared
    /// (`clearMemory`; what was mapped below keeps its now stale cap
    /// records); the cap becomes unmapped. An unmapped cap: success, no
    /// effect.
    pub fn table_unmap(&mut self, level: PagingLevel, table: CPtr) -> Result<(), KernelError> {
        self.enter(CALL_TABLE_UNMAP)?;
        let (slot, cap) = self.lookup_invoked(table)?;
        let (obj, _, _) = decode_type(cap, |t| t == ObjectType::table(level))?;
        if self.objects[&obj].caps > 1 {
            return Err(KernelError::RevokeFirst);
        }
        if let Some(m) = self.vm(slot) {
            self.unmap_table(level, m, obj);
            self.tables.get_mut(&obj).expect("table").clear();
        }
        self.cte_mut(slot).vm = None;
        Ok(())
    }

    // ------------------------------------------------------------ pages

    /// `X86Page_Map` (`decodeX86FrameInvocation`, `decodeX86ModeMapRemapPage`
    /// for 1 GiB pages; the VM attributes are not modelled), in the kernel's
    /// order:
    /// 1. the invoked cap is not a frame cap: `IllegalOperation` (empty:
    ///    `InvalidCapability`);
    /// 2. the frame cap is mapped already: `InvalidCapability`;
    /// 3. `vroot` is not a PML4 cap with an ASID: `InvalidCapability`;
    /// 4. `findVSpaceForASID` of its ASID fails, `FailedLookup`; names
    ///    another PML4, `InvalidCapability`;
    /// 5. `vaddr + page size > PPTR_USER_TOP`: `InvalidArgument` (the sum
    ///    wraps as in C, see below);
    /// 6. `vaddr` not aligned to the page size: `AlignmentError`;
    /// 7. no table above the entry (`lookupPTSlot`, `lookupPDSlot`,
    ///    `lookupPDPTSlot`; a large page where a table should be counts as
    ///    missing): `FailedLookup`;
    /// 8. the entry is present (a page, or for 2 MiB / 1 GiB pages a table):
    ///    `DeleteFirst`.
    ///
    /// The entry gets `maskVMRights(cap's rights, rights)` ([`mask_vm_rights`])
    /// and the cap records (ASID, `vaddr`).
    ///
    /// The top check wraps: at `vaddr = 2^64 - page size` it passes and the
    /// kernel walks its own global tables (PML4 entry 511, shared by every
    /// VSpace). Read from the 5.0 source with `HUGE_PAGE` (the project's
    /// configurations): a 4 KiB page there finds no page table
    /// (`FailedLookup`), a 1 GiB page finds the kernel's device PD
    /// (`DeleteFirst`), and a 2 MiB page would be mapped into the kernel's
    /// global page directory: the model panics in that case.
    pub fn page_map(&mut self, frame: CPtr, vroot: CPtr, vaddr: u64, rights: Rights) -> Result<(), KernelError> {
        self.enter(CALL_PAGE_MAP)?;
        let (slot, cap) = self.lookup_invoked(frame)?;
        let (root_slot, _) = self.lookup_extra(vroot)?;
        let (obj, ty, cap_rights) = decode_type(cap, ObjectType::is_frame)?;
        if self.vm(slot).is_some() {
            return Err(KernelError::InvalidCapability);
        }
        let (root, asid) = self.native_root(root_slot).ok_or(KernelError::InvalidCapability)?;
        self.check_asid(asid, root)?;
        let bits = frame_bits(ty);
        if vaddr.wrapping_add(1 << bits) > self.user_top {
            return Err(KernelError::InvalidArgument);
        }
        let vm_rights = mask_vm_rights(cap_rights, rights);
        if vaddr & mask(bits) != 0 {
            return Err(KernelError::AlignmentError);
        }
        if index(vaddr, PML4_SHIFT) >= index(self.user_top, PML4_SHIFT) {
            return Err(kernel_window_map(bits));
        }
        let (table, i) = self.leaf_slot(root, vaddr, bits).ok_or(KernelError::FailedLookup)?;
        if self.entry(table, i).is_some() {
            return Err(KernelError::DeleteFirst);
        }
        let paddr = self.paddr(obj);
        self.set_entry(
            table,
            i,
            Some(PagingEntry::Frame {
                obj,
                paddr,
                rights: vm_rights,
            }),
        );
        self.cte_mut(slot).vm = Some(CapMapping { asid, vaddr, root });
        Ok(())
    }

    /// `X86Page_Remap` (`decodeX86FrameInvocation`,
    /// `decodeX86ModeMapRemapPage`), in the kernel's order:
    /// 1. the invoked cap is not a frame cap: `IllegalOperation` (empty:
    ///    `InvalidCapability`);
    /// 2. the cap is not mapped (`capFMapType != X86_MappingVSpace`):
    ///    `IllegalOperation`;
    /// 3. `vroot` is not a PML4 cap with an ASID: `InvalidCapability`;
    /// 4. the cap's ASID is not the root's: `InvalidCapability`;
    /// 5. `findVSpaceForASID` fails, `FailedLookup`; names another PML4,
    ///    `InvalidCapability`;
    /// 6. no table above the cap's address: `FailedLookup`;
    /// 7. 2 MiB / 1 GiB: the entry holds a table: `DeleteFirst`.
    ///
    /// The entry at the cap's address is then **written unconditionally**
    /// (`performX86PageInvocationRemapPTE`): 5.0 does not check that it
    /// still maps this frame, so a stale cap's remap re-creates its mapping
    /// or overwrites another frame's entry.
    pub fn page_remap(&mut self, frame: CPtr, vroot: CPtr, rights: Rights) -> Result<(), KernelError> {
        self.enter(CALL_PAGE_REMAP)?;
        let (slot, cap) = self.lookup_invoked(frame)?;
        let (root_slot, _) = self.lookup_extra(vroot)?;
        let (obj, ty, cap_rights) = decode_type(cap, ObjectType::is_frame)?;
        let m = self.vm(slot).ok_or(KernelError::IllegalOperation)?;
        let (root, asid) = self.native_root(root_slot).ok_or(KernelError::InvalidCapability)?;
        if m.asid != asid {
            return Err(KernelError::InvalidCapability);
        }
        self.check_asid(asid, root)?;
        let bits = frame_bits(ty);
        let vm_rights = mask_vm_rights(cap_rights, rights);
        let (table, i) = self.leaf_slot(root, m.vaddr, bits).ok_or(KernelError::FailedLookup)?;
        if bits != PT_SHIFT && matches!(self.entry(table, i), Some(PagingEntry::Table { .. })) {
            return Err(KernelError::DeleteFirst);
        }
        let paddr = self.paddr(obj);
        self.set_entry(
            table,
            i,
            Some(PagingEntry::Frame {
                obj,
                paddr,
                rights: vm_rights,
            }),
        );
        Ok(())
    }

    /// `X86Page_Unmap` (`decodeX86FrameInvocation`,
    /// `performX86PageInvocationUnmap`): the invoked cap must be a frame cap
    /// (else `IllegalOperation`; empty: `InvalidCapability`). A mapped cap:
    /// `unmapPage` (the entry is cleared only if it still maps this frame),
    /// then the cap is unmapped. An unmapped cap: success, no effect.
    pub fn page_unmap(&mut self, frame: CPtr) -> Result<(), KernelError> {
        self.enter(CALL_PAGE_UNMAP)?;
        let (slot, cap) = self.lookup_invoked(frame)?;
        let (obj, ty, _) = decode_type(cap, ObjectType::is_frame)?;
        if let Some(m) = self.vm(slot) {
            let paddr = self.paddr(obj);
            self.unmap_page(frame_bits(ty), m.asid, m.vaddr, paddr);
            self.cte_mut(slot).vm = None;
        }
        Ok(())
    }

    // ------------------------------------------------------------ runs

    /// `runResolveTable` (patch 0005): the PT cap at `pt_slot` must be mapped
    /// (`InvalidCapability`); for a map run the root must be a valid native
    /// root (`InvalidCapability`), its ASID must resolve (`FailedLookup`) to
    /// it and be the table's (`InvalidCapability`); for an unmap run the
    /// table's ASID must resolve (`FailedLookup`). Then the VSpace must hold
    /// this very table at the cap's address: no table there, `FailedLookup`;
    /// another table, `InvalidCapability`.
    fn run_resolve_table(&self, pt_slot: CteRef, pt: ObjId, root: RunRoot) -> Result<RunTable, KernelError> {
        let m = self.vm(pt_slot).ok_or(KernelError::InvalidCapability)?;
        let vspace = match root {
            RunRoot::Map(r) => {
                let (root, root_asid) = r.ok_or(KernelError::InvalidCapability)?;
                let found = self.find_vspace(root_asid).ok_or(KernelError::FailedLookup)?;
                if found != root || root_asid != m.asid {
                    return Err(KernelError::InvalidCapability);
                }
                root
            }
            RunRoot::Unmap => self.find_vspace(m.asid).ok_or(KernelError::FailedLookup)?,
        };
        let (pd, i) = self.pd_slot(vspace, m.vaddr).ok_or(KernelError::FailedLookup)?;
        match self.entry(pd, i) {
            Some(PagingEntry::Table { paddr, .. }) if paddr == self.paddr(pt) => Ok(RunTable {
                pt,
                base: m.vaddr,
                asid: m.asid,
                vspace,
            }),
            Some(PagingEntry::Table { .. }) => Err(KernelError::InvalidCapability),
            _ => Err(KernelError::FailedLookup),
        }
    }

    /// `runLookupSlots` (patch 0005): the first slot, looked up as a CNode
    /// operation looks up its slots (`lookupSlotForCNodeOp`, same errors);
    /// `count` slots from it must lie in its CNode (`RangeError`).
    fn run_slots(&self, root: Option<Cap>, path: CapPath, count: u64) -> Result<CteRef, KernelError> {
        let s = self.cnode_op_slot(root.unwrap_or(Cap::Other(u64::MAX)), path.index, path.depth)?;
        let radix = self.cnodes[&s.cnode].0;
        if count > (1u64 << radix) - s.index {
            return Err(KernelError::RangeError);
        }
        Ok(s)
    }

    /// `X86PageTable_MapRun` (patch 0005, `decodeMapRun`): maps the 4 KiB
    /// frame caps in the `count` slots from `src` at entries `first ..
    /// first + count` of the PT `table`, as `X86Page_Map` would map each with
    /// `rights`. All or nothing; checks in this order:
    /// 1. the invoked cap is not a PT cap: `IllegalOperation` (empty:
    ///    `InvalidCapability`), no entry;
    /// 2. `first > 511`, or `count` not in `1 ..= 512 - first`: `RangeError`;
    /// 3. `run_resolve_table` (above) with `vroot`;
    /// 4. the source run (`lookupSlotForCNodeOp` errors; leaving its CNode:
    ///    `RangeError`);
    /// 5. per entry `i` (reported as `Some(i)`): empty slot `FailedLookup`;
    ///    not a 4 KiB frame cap `InvalidCapability`; frame cap mapped
    ///    already `InvalidCapability`; entry present `DeleteFirst`.
    pub fn map_run(
        &mut self,
        table: CPtr,
        vroot: CPtr,
        first: u64,
        count: u64,
        rights: Rights,
        src: CapPath,
    ) -> Result<(), (KernelError, Option<u64>)> {
        self.enter(CALL_MAP_RUN).map_err(whole)?;
        let (pt_slot, cap) = self.lookup_invoked(table).map_err(whole)?;
        let (root_slot, _) = self.lookup_extra(vroot).map_err(whole)?;
        let (_, src_root) = self.lookup_extra(src.root).map_err(whole)?;
        let (pt, _, _) = decode_type(cap, |t| t == ObjectType::PageTable).map_err(whole)?;
        run_check_range(first, count).map_err(whole)?;
        let t = self
            .run_resolve_table(pt_slot, pt, RunRoot::Map(self.native_root(root_slot)))
            .map_err(whole)?;
        let s = self.run_slots(src_root, src, count).map_err(whole)?;
        let nth = |i: u64| CteRef {
            cnode: s.cnode,
            index: s.index + i,
        };
        for i in 0..count {
            let refuse = |e| Err((e, Some(i)));
            let Some(cte) = self.cte(nth(i)) else {
                return refuse(KernelError::FailedLookup);
            };
            if !matches!(
                cte.cap,
                Cap::Object {
                    ty: ObjectType::Frame4K,
                    ..
                }
            ) {
                return refuse(KernelError::InvalidCapability);
            }
            if cte.vm.is_some() {
                return refuse(KernelError::InvalidCapability);
            }
            if self.entry(t.pt, first + i).is_some() {
                return refuse(KernelError::DeleteFirst);
            }
        }
        for i in 0..count {
            let Cap::Object { obj, rights: r, .. } = self.cte(nth(i)).expect("checked").cap else {
                unreachable!("checked");
            };
            let vaddr = t.base + ((first + i) << PT_SHIFT);
            self.cte_mut(nth(i)).vm = Some(CapMapping {
                asid: t.asid,
                vaddr,
                root: t.vspace,
            });
            let paddr = self.paddr(obj);
            let rights = mask_vm_rights(r, rights);
            self.set_entry(t.pt, first + i, Some(PagingEntry::Frame { obj, paddr, rights }));
        }
        Ok(())
    }

    /// `X86PageTable_CopyMapRun` (patch 0005, `decodeCopyMapRun`): for each
    /// entry `i`, `CNode_Copy(dest + i <- src + i, copy_rights)` then
    /// `X86Page_Map` of the copy at entry `first + i` with `rights` (the
    /// sources are not mapped by it; a derived copy is always unmapped, so a
    /// mapped source is fine). All or nothing; checks in this order:
    /// 1. the invoked cap is not a PT cap: `IllegalOperation` (empty:
    ///    `InvalidCapability`), no entry;
    /// 2. `first` / `count`: `RangeError`;
    /// 3. `run_resolve_table` (above) with `vroot`;
    /// 4. the destination run, then the source run (as `CNode_Copy`);
    /// 5. per entry `i` (reported as `Some(i)`): destination slot occupied
    ///    `DeleteFirst`; source empty `FailedLookup`; not a 4 KiB frame cap
    ///    `InvalidCapability`; entry present `DeleteFirst`.
    ///
    /// A copy's rights are `maskVMRights(source's, copy_rights)`, its
    /// entry's `maskVMRights(copy's, rights)`; it is inserted as `cteInsert`
    /// inserts a derived frame cap.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_map_run(
        &mut self,
        table: CPtr,
        vroot: CPtr,
        first: u64,
        count: u64,
        rights: Rights,
        src: CapPath,
        dest: CapPath,
        copy_rights: Rights,
    ) -> Result<(), (KernelError, Option<u64>)> {
        self.enter(CALL_COPY_MAP_RUN).map_err(whole)?;
        let (pt_slot, cap) = self.lookup_invoked(table).map_err(whole)?;
        let (root_slot, _) = self.lookup_extra(vroot).map_err(whole)?;
        let (_, src_root) = self.lookup_extra(src.root).map_err(whole)?;
        let (_, dest_root) = self.lookup_extra(dest.root).map_err(whole)?;
        let (pt, _, _) = decode_type(cap, |t| t == ObjectType::PageTable).map_err(whole)?;
        run_check_range(first, count).map_err(whole)?;
        let t = self
            .run_resolve_table(pt_slot, pt, RunRoot::Map(self.native_root(root_slot)))
            .map_err(whole)?;
        let d = self.run_slots(dest_root, dest, count).map_err(whole)?;
        let s = self.run_slots(src_root, src, count).map_err(whole)?;
        let src_at = |i: u64| CteRef {
            cnode: s.cnode,
            index: s.index + i,
        };
        let dest_at = |i: u64| CteRef {
            cnode: d.cnode,
            index: d.index + i,
        };
        for i in 0..count {
            let refuse = |e| Err((e, Some(i)));
            if self.cte(dest_at(i)).is_some() {
                return refuse(KernelError::DeleteFirst);
            }
            let Some(cte) = self.cte(src_at(i)) else {
                return refuse(KernelError::FailedLookup);
            };
            if !matches!(
                cte.cap,
                Cap::Object {
                    ty: ObjectType::Frame4K,
                    ..
                }
            ) {
                return refuse(KernelError::InvalidCapability);
            }
            if self.entry(t.pt, first + i).is_some() {
                return refuse(KernelError::DeleteFirst);
            }
        }
        for i in 0..count {
            let Cap::Object {
                obj,
                ty,
                badge,
                rights: r,
            } = self.cte(src_at(i)).expect("checked").cap
            else {
                unreachable!("checked");
            };
            let copy_vm_rights = mask_vm_rights(r, copy_rights);
            let copy = Cap::Object {
                obj,
                ty,
                badge,
                rights: copy_vm_rights,
            };
            let vm = Some(CapMapping {
                asid: t.asid,
                vaddr: t.base + ((first + i) << PT_SHIFT),
                root: t.vspace,
            });
            self.insert_derived(copy, vm, src_at(i), dest_at(i));
            let paddr = self.paddr(obj);
            let rights = mask_vm_rights(copy_vm_rights, rights);
            self.set_entry(t.pt, first + i, Some(PagingEntry::Frame { obj, paddr, rights }));
        }
        Ok(())
    }

    /// `X86PageTable_UnmapRun` (patch 0005, `decodeUnmapRun`): for each entry
    /// `i`, `X86Page_Unmap` of the cap in slot `caps + i`, which must map
    /// exactly entry `first + i` of this table, then, with `delete`,
    /// `CNode_Delete` of that slot. All or nothing; checks in this order:
    /// 1. the invoked cap is not a PT cap: `IllegalOperation` (empty:
    ///    `InvalidCapability`), no entry;
    /// 2. `first` / `count`: `RangeError`;
    /// 3. `run_resolve_table` (above), with the table's own ASID;
    /// 4. the caps run;
    /// 5. per entry `i` (reported as `Some(i)`): empty slot `FailedLookup`;
    ///    not a 4 KiB frame cap `InvalidCapability`; the cap does not record
    ///    this table's ASID and entry `first + i`'s address
    ///    `InvalidCapability`.
    ///
    /// An entry is cleared only if it still maps the cap's frame (as
    /// `unmapPage`); every cap is unmapped, or deleted (as `cteDelete` of an
    /// unmapped frame cap: the object goes with its last cap).
    pub fn unmap_run(
        &mut self,
        table: CPtr,
        first: u64,
        count: u64,
        caps: CapPath,
        delete: bool,
    ) -> Result<(), (KernelError, Option<u64>)> {
        self.enter(CALL_UNMAP_RUN).map_err(whole)?;
        let (pt_slot, cap) = self.lookup_invoked(table).map_err(whole)?;
        let (_, caps_root) = self.lookup_extra(caps.root).map_err(whole)?;
        let (pt, _, _) = decode_type(cap, |t| t == ObjectType::PageTable).map_err(whole)?;
        run_check_range(first, count).map_err(whole)?;
        let t = self.run_resolve_table(pt_slot, pt, RunRoot::Unmap).map_err(whole)?;
        let s = self.run_slots(caps_root, caps, count).map_err(whole)?;
        let nth = |i: u64| CteRef {
            cnode: s.cnode,
            index: s.index + i,
        };
        for i in 0..count {
            let refuse = |e| Err((e, Some(i)));
            let Some(cte) = self.cte(nth(i)) else {
                return refuse(KernelError::FailedLookup);
            };
            if !matches!(
                cte.cap,
                Cap::Object {
                    ty: ObjectType::Frame4K,
                    ..
                }
            ) {
                return refuse(KernelError::InvalidCapability);
            }
            let vaddr = t.base + ((first + i) << PT_SHIFT);
            if !matches!(cte.vm, Some(m) if m.asid == t.asid && m.vaddr == vaddr) {
                return refuse(KernelError::InvalidCapability);
            }
        }
        for i in 0..count {
            let at = nth(i);
            let Cap::Object { obj, .. } = self.cte(at).expect("checked").cap else {
                unreachable!("checked");
            };
            let paddr = self.paddr(obj);
            if matches!(self.entry(t.pt, first + i), Some(PagingEntry::Frame { paddr: p, .. }) if p == paddr) {
                self.set_entry(t.pt, first + i, None);
            }
            self.cte_mut(at).vm = None;
            if delete {
                self.delete_cte(at);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ queries

    /// The PML4 object of the PML4 cap at `vroot`.
    fn pml4_of(&self, vroot: CPtr) -> Option<ObjId> {
        match self.lookup(vroot).ok()?? {
            Cap::Object {
                obj,
                ty: ObjectType::Pml4,
                ..
            } => Some(obj),
            _ => None,
        }
    }

    /// What `vaddr` translates to in the address space whose PML4 cap is at
    /// `vroot`: (frame object, its physical address, the entry's rights, page
    /// size bits). Walks the tables as the MMU does, from the PML4 object
    /// (whether or not it has an ASID); bits 48..63 of `vaddr` are ignored,
    /// as the kernel's lookups ignore them. `None`: nothing mapped (or the
    /// kernel's half, which the model does not hold). The frame object may
    /// have died (an entry 5.0 left behind).
    pub fn translate(&self, vroot: CPtr, vaddr: u64) -> Option<(ObjId, u64, Rights, u8)> {
        let root = self.pml4_of(vroot)?;
        if index(vaddr, PML4_SHIFT) >= index(self.user_top, PML4_SHIFT) {
            return None;
        }
        let mut table = root;
        for shift in [PML4_SHIFT, PDPT_SHIFT, PD_SHIFT, PT_SHIFT] {
            match self.entry(table, index(vaddr, shift))? {
                PagingEntry::Table { obj, .. } => table = obj,
                PagingEntry::Frame { obj, paddr, rights } => return Some((obj, paddr, rights, shift)),
            }
        }
        None
    }

    /// Every leaf entry (frame mapping) of the address space whose PML4 cap
    /// is at `vroot`: (canonical virtual address, frame object, rights), in
    /// address order. Empty if `vroot` is not a PML4 cap.
    pub fn leaf_entries(&self, vroot: CPtr) -> Vec<(u64, ObjId, Rights)> {
        let mut out = Vec::new();
        if let Some(root) = self.pml4_of(vroot) {
            self.collect_leaves(root, PML4_SHIFT, 0, &mut out);
        }
        out.sort_by_key(|e| e.0);
        out
    }

    fn collect_leaves(&self, table: ObjId, shift: u8, base: u64, out: &mut Vec<(u64, ObjId, Rights)>) {
        let Some(t) = self.tables.get(&table) else { return };
        for (&i, e) in t {
            let vaddr = base | (u64::from(i) << shift);
            match *e {
                PagingEntry::Frame { obj, rights, .. } => out.push((canonical(vaddr), obj, rights)),
                PagingEntry::Table { obj, .. } => self.collect_leaves(obj, shift - 9, vaddr, out),
            }
        }
    }

    /// The mapping recorded in the frame cap at `cptr`: (the PML4 object its
    /// ASID named when it was mapped, virtual address). `None`: not a frame
    /// cap, or unmapped.
    pub fn frame_cap_mapping(&self, cptr: CPtr) -> Option<(ObjId, u64)> {
        let cte = self.cte(self.lookup_slot(cptr).ok()?)?;
        match cte.cap {
            Cap::Object { ty, .. } if ty.is_frame() => cte.vm.map(|m| (m.root, m.vaddr)),
            _ => None,
        }
    }

    /// The mapping recorded in any cap at `cptr` (frame, PT, PD, PDPT: where
    /// it is mapped; PML4: its ASID). `None`: unmapped, or another cap.
    pub fn cap_mapping(&self, cptr: CPtr) -> Option<CapMapping> {
        self.vm(self.lookup_slot(cptr).ok()?)
    }

    /// The mapping recorded in the cap in slot `at` (as
    /// [`MockKernel::cap_mapping`], by slot).
    pub fn mapping_at(&self, at: CteRef) -> Option<CapMapping> {
        self.vm(at)
    }

    /// The PML4 an ASID names in the pool (`findVSpaceForASID`).
    pub fn asid_vspace(&self, asid: u64) -> Option<ObjId> {
        self.find_vspace(asid)
    }

    /// The present entries of a live paging structure: (index, entry), in
    /// index order. Empty for a dead object or another type.
    pub fn table_entries(&self, table: ObjId) -> Vec<(u64, PagingEntry)> {
        self.tables
            .get(&table)
            .map(|t| t.iter().map(|(&i, &e)| (u64::from(i), e)).collect())
            .unwrap_or_default()
    }
}

/// `X86Page_Map` at `vaddr = 2^64 - page size` (the top check wrapped),
/// walking the kernel's global tables (5.0 `map_kernel_window` with
/// `HUGE_PAGE`: PML4[511] -> `x64KSGlobalPDPT`, whose entry 511 is the
/// kernel device PD `x64KSGlobalPD`, of which only entry 0 is present).
fn kernel_window_map(bits: u8) -> KernelError {
    match bits {
        PT_SHIFT => KernelError::FailedLookup,
        PDPT_SHIFT => KernelError::DeleteFirst,
        _ => panic!(
            "seL4 5.0 would map this 2 MiB frame into the kernel's global page directory \
             (x64KSGlobalPD[511], shared by every VSpace): X86Page_Map's check \
             `vaddr + size > PPTR_USER_TOP` wraps to 0 at vaddr 2^64 - 2 MiB"
        ),
    }
}
