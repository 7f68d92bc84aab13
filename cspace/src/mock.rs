//! A host model of the seL4 5.0 kernel operations behind [`KernelOps`], for
//! tests.
//!
//! It models what the bookkeeping depends on, following the kernel source:
//! - CNodes with guards; every path and pointer is resolved with a port of
//!   `resolveAddressBits`/`lookupSlotForCNodeOp`, invocations through the
//!   TCB's CSpace root at depth 64 (so the addressing scheme is checked on
//!   every call);
//! - the derivation tree (`cteInsert` revocable/first-badged flags,
//!   `isMDBParentOf`), delete re-attaching children, revoke deleting
//!   descendants, objects destroyed with their last cap;
//! - `Untyped_Retype`: argument checks in the kernel's order, fan-out limit,
//!   `DeleteFirst` on occupied destinations, free index reset when the
//!   untyped has no children, `NotEnoughMemory`, alignment of the free index
//!   to the object size, device untypeds only for frames/untypeds;
//! - `CNode_Copy/Mint/Move/Delete/Revoke` and `TCB_SetSpace` (guard data);
//! - failure injection: [`MockKernel::fail_call`] makes a given call fail with
//!   no effect;
//! - x86_64 paging (module [`paging`]): PML4/PDPT/PD/PT objects with their
//!   entries, the mapping recorded in each frame and paging-structure cap
//!   (kept in the cap's slot, so `CNode_Move` carries it and a copy derives
//!   what `Arch_deriveCap` derives), the initial thread's ASID pool, the
//!   invocations `ASIDPool_Assign`, `PDPT/PageDirectory/PageTable_Map` and
//!   `_Unmap`, `Page_Map/Remap/Unmap`, and patch 0005's `MapRun`,
//!   `CopyMapRun`, `UnmapRun`; deleting the final cap of an object runs 5.0's
//!   `Arch_finaliseCap` (a non-final mapped frame cap leaves its entry).
//!
//! # Calls and counts
//! Every invocation (the [`KernelOps`] methods and the paging invocations)
//! goes through one entry point: it is numbered (from 1, [`MockKernel::calls`]),
//! counted by kind in [`MockKernel::counts`] (indices [`CALL_RETYPE`] ..
//! [`CALL_UNMAP_RUN`]), and fails with no effect if a failure was injected for
//! its number. Queries ([`MockKernel::lookup`], [`MockKernel::translate`], ...)
//! are neither counted nor subject to failures.
//!
//! # Conventions the model adds
//! A lookup failure of the invoked cap is a cap fault in the kernel (no
//! reply); the model reports `InvalidCapability`, as for an empty slot. A
//! lookup failure of an extra cap (a CNode root, a VSpace root) is a fault
//! too; the model reports `FailedLookup`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;

use crate::cspace::Config;
use crate::kernel::KernelOps;
use crate::layout::{CapPath, RetypeDest};
use crate::types::{CPtr, CapData, KernelError, ObjectType, Rights, RETYPE_FAN_OUT_LIMIT, SLOT_BITS, WORD_BITS};
use crate::untyped::BootUntyped;

pub mod paging;

pub use paging::{CapMapping, PagingEntry, PagingLevel, IT_ASID, PPTR_USER_TOP_SMP, PPTR_USER_TOP_UP};

/// [`MockKernel::counts`] index of `Untyped_Retype`.
pub const CALL_RETYPE: usize = 0;
/// [`MockKernel::counts`] index of `CNode_Copy`.
pub const CALL_COPY: usize = 1;
/// [`MockKernel::counts`] index of `CNode_Mint`.
pub const CALL_MINT: usize = 2;
/// [`MockKernel::counts`] index of `CNode_Move`.
pub const CALL_MOVE: usize = 3;
/// [`MockKernel::counts`] index of `CNode_Delete`.
pub const CALL_DELETE: usize = 4;
/// [`MockKernel::counts`] index of `CNode_Revoke`.
pub const CALL_REVOKE: usize = 5;
/// [`MockKernel::counts`] index of `TCB_SetSpace`.
pub const CALL_SET_SPACE: usize = 6;
/// [`MockKernel::counts`] index of `X86ASIDPool_Assign` ([`MockKernel::asid_pool_assign`]).
pub const CALL_ASID_POOL_ASSIGN: usize = 7;
/// [`MockKernel::counts`] index of `X86PDPT_Map`, `X86PageDirectory_Map`,
/// `X86PageTable_Map` ([`MockKernel::table_map`]).
pub const CALL_TABLE_MAP: usize = 8;
/// [`MockKernel::counts`] index of the table unmaps ([`MockKernel::table_unmap`]).
pub const CALL_TABLE_UNMAP: usize = 9;
/// [`MockKernel::counts`] index of `X86Page_Map` ([`MockKernel::page_map`]).
pub const CALL_PAGE_MAP: usize = 10;
/// [`MockKernel::counts`] index of `X86Page_Remap` ([`MockKernel::page_remap`]).
pub const CALL_PAGE_REMAP: usize = 11;
/// [`MockKernel::counts`] index of `X86Page_Unmap` ([`MockKernel::page_unmap`]).
pub const CALL_PAGE_UNMAP: usize = 12;
/// [`MockKernel::counts`] index of `X86PageTable_MapRun` ([`MockKernel::map_run`]).
pub const CALL_MAP_RUN: usize = 13;
/// [`MockKernel::counts`] index of `X86PageTable_CopyMapRun` ([`MockKernel::copy_map_run`]).
pub const CALL_COPY_MAP_RUN: usize = 14;
/// [`MockKernel::counts`] index of `X86PageTable_UnmapRun` ([`MockKernel::unmap_run`]).
pub const CALL_UNMAP_RUN: usize = 15;
/// Number of call kinds (the length of [`MockKernel::counts`]).
pub const CALL_KINDS: usize = 16;

/// A kernel object of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjId(pub u64);

/// A slot of the model: a CNode object and an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CteRef {
    /// The CNode object.
    pub cnode: ObjId,
    /// The index.
    pub index: u64,
}

/// A capability of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// An untyped cap and its free index (bytes).
    Untyped {
        /// The untyped object.
        obj: ObjId,
        /// `capFreeIndex`, in bytes.
        free_index: u64,
    },
    /// A CNode cap with its guard.
    CNode {
        /// The CNode object.
        obj: ObjId,
        /// Radix.
        radix: u8,
        /// Guard size.
        guard_size: u8,
        /// Guard value.
        guard: u64,
    },
    /// Any other object's cap.
    Object {
        /// The object.
        obj: ObjId,
        /// Its type.
        ty: ObjectType,
        /// Badge (endpoints and notifications).
        badge: u64,
        /// Rights.
        rights: Rights,
    },
    /// A boot cap the model does not interpret (TCB, IRQ control, ...).
    Other(u64),
}

impl Cap {
    fn obj(&self) -> Option<ObjId> {
        match *self {
            Cap::Untyped { obj, .. } | Cap::CNode { obj, .. } | Cap::Object { obj, .. } => Some(obj),
            Cap::Other(_) => None,
        }
    }
}

/// An object of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockObject {
    /// Its type.
    pub ty: ObjectType,
    /// Physical address.
    pub paddr: u64,
    /// Size in bits.
    pub bits: u8,
    /// Made from device memory.
    pub device: bool,
    /// Caps naming it (the TCB's CSpace root included).
    pub caps: u64,
    /// The untyped object it was made from (`None`: made at boot).
    pub from: Option<ObjId>,
}

#[derive(Debug, Clone)]
struct Cte {
    cap: Cap,
    parent: Option<CteRef>,
    children: Vec<CteRef>,
    revocable: bool,
    /// The mapping the cap records (frame, paging-structure and PML4 caps;
    /// see [`CapMapping`]). Part of the cap in seL4, so it lives in the slot.
    vm: Option<CapMapping>,
}

/// What [`MockKernel::untyped`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntypedInfo {
    /// The object.
    pub obj: ObjId,
    /// Physical address.
    pub paddr: u64,
    /// Size in bits.
    pub bits: u8,
    /// Device memory.
    pub device: bool,
    /// Where the next retype starts from: 0 without children, else the free
    /// index.
    pub effective_wm: u64,
    /// Whether the cap has children.
    pub has_children: bool,
}

/// The model (see the [module](self) doc).
#[derive(Debug, Clone)]
pub struct MockKernel {
    objects: HashMap<ObjId, MockObject>,
    cnodes: HashMap<ObjId, (u8, HashMap<u64, Cte>)>,
    tcb_root: Cap,
    next_obj: u64,
    calls: u64,
    fail: BTreeMap<u64, KernelError>,
    /// Entries of the live paging structures (PML4, PDPT, PD, PT objects),
    /// sparse: index -> entry. An object's table goes with the object, so an
    /// object retyped from the same memory starts empty.
    tables: HashMap<ObjId, BTreeMap<u16, PagingEntry>>,
    /// The initial thread's ASID pool (base 0): ASID -> PML4 object
    /// (`asid_map_vspace`); absent: `asid_map_none`.
    asid_pool: BTreeMap<u64, ObjId>,
    /// `PPTR_USER_TOP` of the modelled configuration.
    user_top: u64,
    /// Calls made so far, by kind: index [`CALL_RETYPE`] (0) retype,
    /// [`CALL_COPY`] (1) copy, [`CALL_MINT`] (2) mint, [`CALL_MOVE`] (3) move,
    /// [`CALL_DELETE`] (4) delete, [`CALL_REVOKE`] (5) revoke,
    /// [`CALL_SET_SPACE`] (6) set_space, [`CALL_ASID_POOL_ASSIGN`] (7),
    /// [`CALL_TABLE_MAP`] (8), [`CALL_TABLE_UNMAP`] (9), [`CALL_PAGE_MAP`]
    /// (10), [`CALL_PAGE_REMAP`] (11), [`CALL_PAGE_UNMAP`] (12),
    /// [`CALL_MAP_RUN`] (13), [`CALL_COPY_MAP_RUN`] (14), [`CALL_UNMAP_RUN`]
    /// (15).
    pub counts: [u64; CALL_KINDS],
}

fn mask(bits: u8) -> u64 {
    if bits >= 64 {
        !0
    } else {
        (1u64 << bits) - 1
    }
}

impl MockKernel {
    /// Boots a model: a boot CNode of `root_bits` (its own cap in slot 2,
    /// guard `64 - root_bits`, like the kernel's `create_root_cnode`), the
    /// initial thread's VSpace in slot 3 (a PML4 cap with ASID [`IT_ASID`] of
    /// the initial thread's ASID pool, its user half empty: the root task's
    /// own image is not modelled), a few opaque boot caps, the untyped caps
    /// `(paddr, size_bits, is_device)` from slot 16, and the rest of the boot
    /// CNode empty. Returns the model and the matching [`Config`] (default
    /// parameters). The user top is the uniprocessor one
    /// ([`MockKernel::set_user_top`] changes it).
    pub fn boot(root_bits: u8, untypeds: &[(u64, u8, bool)]) -> (MockKernel, Config) {
        let mut k = MockKernel {
            objects: HashMap::new(),
            cnodes: HashMap::new(),
            tcb_root: Cap::Other(0),
            next_obj: 0,
            calls: 0,
            fail: BTreeMap::new(),
            tables: HashMap::new(),
            asid_pool: BTreeMap::new(),
            user_top: PPTR_USER_TOP_UP,
            counts: [0; CALL_KINDS],
        };
        let root = k.new_obj(MockObject {
            ty: ObjectType::CNode,
            paddr: 0,
            bits: root_bits + SLOT_BITS,
            device: false,
            caps: 0,
            from: None,
        });
        k.cnodes.insert(root, (root_bits, HashMap::new()));
        let root_cap = Cap::CNode {
            obj: root,
            radix: root_bits,
            guard_size: WORD_BITS - root_bits,
            guard: 0,
        };
        k.put(CteRef { cnode: root, index: 2 }, root_cap, None, true);
        k.tcb_root = root_cap;
        k.objects.get_mut(&root).unwrap().caps += 1;
        for i in [1u64, 4, 5, 6, 7, 8, 9] {
            k.put(CteRef { cnode: root, index: i }, Cap::Other(i), None, true);
        }
        k.boot_it_vspace(CteRef { cnode: root, index: 3 });
        let mut boot = Vec::new();
        for (n, &(paddr, bits, device)) in untypeds.iter().enumerate() {
            let slot = 16 + n as u64;
            let obj = k.new_obj(MockObject {
                ty: ObjectType::Untyped,
                paddr,
                bits,
                device,
                caps: 0,
                from: None,
            });
            k.put(
                CteRef {
                    cnode: root,
                    index: slot,
                },
                Cap::Untyped { obj, free_index: 0 },
                None,
                true,
            );
            boot.push(BootUntyped {
                slot,
                paddr,
                size_bits: bits,
                is_device: device,
            });
        }
        let empty = 16 + untypeds.len() as u64..1u64 << root_bits;
        (k, Config::new(root_bits, 2, empty, boot))
    }

    fn new_obj(&mut self, o: MockObject) -> ObjId {
        let id = ObjId(self.next_obj);
        self.next_obj += 1;
        self.objects.insert(id, o);
        id
    }

    fn put(&mut self, at: CteRef, cap: Cap, parent: Option<CteRef>, revocable: bool) {
        if let Some(o) = cap.obj() {
            self.objects.get_mut(&o).expect("object").caps += 1;
        }
        let cte = Cte {
            cap,
            parent,
            children: Vec::new(),
            revocable,
            vm: None,
        };
        self.cnodes.get_mut(&at.cnode).expect("cnode").1.insert(at.index, cte);
        if let Some(p) = parent {
            self.cte_mut(p).children.push(at);
        }
    }

    fn cte(&self, at: CteRef) -> Option<&Cte> {
        self.cnodes.get(&at.cnode)?.1.get(&at.index)
    }

    fn cte_mut(&mut self, at: CteRef) -> &mut Cte {
        self.cnodes
            .get_mut(&at.cnode)
            .expect("cnode")
            .1
            .get_mut(&at.index)
            .expect("cte")
    }

    fn cap(&self, at: CteRef) -> Option<Cap> {
        self.cte(at).map(|c| c.cap)
    }

    // ---------------------------------------------------------------- failures

    /// Makes call number `n` (counting every invocation from 1: the
    /// [`KernelOps`] calls and the paging invocations) fail with `error`,
    /// with no effect. A run invocation so failed reports no entry.
    pub fn fail_call(&mut self, n: u64, error: KernelError) {
        self.fail.insert(n, error);
    }

    /// Makes the `k`-th call from now (1 = the next) fail.
    pub fn fail_in(&mut self, k: u64, error: KernelError) {
        self.fail.insert(self.calls + k, error);
    }

    /// Cancels pending failures.
    pub fn clear_failures(&mut self) {
        self.fail.clear();
    }

    /// Invocations made so far (trait calls and paging invocations).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The entry point of every invocation: numbers and counts the call and
    /// returns the injected failure, if any.
    fn enter(&mut self, kind: usize) -> Result<(), KernelError> {
        self.calls += 1;
        self.counts[kind] += 1;
        match self.fail.remove(&self.calls) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ---------------------------------------------------------------- lookups

    /// `resolveAddressBits`: the slot and the bits left.
    fn resolve(&self, mut node_cap: Cap, capptr: u64, mut n_bits: u8) -> Result<(CteRef, u8), KernelError> {
        loop {
            let Cap::CNode {
                obj,
                radix,
                guard_size,
                guard,
            } = node_cap
            else {
                return Err(KernelError::FailedLookup);
            };
            let level = radix + guard_size;
            assert!(level != 0, "all CNodes must resolve bits");
            let g = (capptr >> (n_bits.wrapping_sub(guard_size) & 63)) & mask(guard_size);
            if guard_size > n_bits || g != guard {
                return Err(KernelError::FailedLookup);
            }
            if level > n_bits {
                return Err(KernelError::FailedLookup);
            }
            let offset = (capptr >> (n_bits - level)) & mask(radix);
            let slot = CteRef {
                cnode: obj,
                index: offset,
            };
            if n_bits <= level {
                return Ok((slot, 0));
            }
            n_bits -= level;
            node_cap = self.cap(slot).unwrap_or(Cap::Other(u64::MAX));
            if !matches!(node_cap, Cap::CNode { .. }) {
                return Ok((slot, n_bits));
            }
        }
    }

    /// `lookupSlot`: the slot a pointer names (depth 64 from the TCB's CSpace
    /// root; bits left over after a non-CNode cap are ignored).
    pub fn lookup_slot(&self, cptr: CPtr) -> Result<CteRef, KernelError> {
        self.resolve(self.tcb_root, cptr.0, WORD_BITS).map(|(s, _)| s)
    }

    /// The cap a pointer names (`None`: empty slot).
    pub fn lookup(&self, cptr: CPtr) -> Result<Option<Cap>, KernelError> {
        self.lookup_slot(cptr).map(|s| self.cap(s))
    }

    /// The cap to invoke at `cptr`: must be present.
    fn invoked(&self, cptr: CPtr) -> Result<Cap, KernelError> {
        self.lookup(cptr)
            .map_err(|_| KernelError::InvalidCapability)?
            .ok_or(KernelError::InvalidCapability)
    }

    /// A CNode cap to invoke at `cptr`.
    fn invoked_cnode(&self, cptr: CPtr) -> Result<Cap, KernelError> {
        match self.invoked(cptr)? {
            c @ Cap::CNode { .. } => Ok(c),
            _ => Err(KernelError::IllegalOperation),
        }
    }

    /// `lookupSlotForCNodeOp`.
    fn cnode_op_slot(&self, root: Cap, index: u64, depth: u8) -> Result<CteRef, KernelError> {
        if !matches!(root, Cap::CNode { .. }) {
            return Err(KernelError::FailedLookup);
        }
        if !(1..=WORD_BITS).contains(&depth) {
            return Err(KernelError::RangeError);
        }
        match self.resolve(root, index, depth)? {
            (s, 0) => Ok(s),
            _ => Err(KernelError::FailedLookup),
        }
    }

    /// The slot a CNode-invocation path names.
    pub fn path_slot(&self, p: CapPath) -> Result<CteRef, KernelError> {
        let root = self.invoked_cnode(p.root)?;
        self.cnode_op_slot(root, p.index, p.depth)
    }

    /// The cap at a CNode-invocation path (`None`: empty).
    pub fn cap_at(&self, p: CapPath) -> Result<Option<Cap>, KernelError> {
        self.path_slot(p).map(|s| self.cap(s))
    }

    /// An object.
    pub fn object(&self, id: ObjId) -> Option<&MockObject> {
        self.objects.get(&id)
    }

    /// All objects.
    pub fn objects(&self) -> impl Iterator<Item = (ObjId, &MockObject)> {
        self.objects.iter().map(|(k, v)| (*k, v))
    }

    /// The untyped cap at `p`.
    pub fn untyped(&self, p: CapPath) -> Option<UntypedInfo> {
        let s = self.path_slot(p).ok()?;
        let cte = self.cte(s)?;
        let Cap::Untyped { obj, free_index } = cte.cap else {
            return None;
        };
        let o = self.objects[&obj];
        let has_children = !cte.children.is_empty();
        Some(UntypedInfo {
            obj,
            paddr: o.paddr,
            bits: o.bits,
            device: o.device,
            effective_wm: if has_children { free_index } else { 0 },
            has_children,
        })
    }

    /// The object a cap names (`None`: no cap there, a lookup failure, or a
    /// boot cap the model does not interpret). The pointer is resolved as
    /// [`MockKernel::lookup_slot`] resolves it.
    pub fn cap_object(&self, cptr: CPtr) -> Option<ObjId> {
        self.lookup(cptr).ok()??.obj()
    }

    /// Every occupied slot with its cap and the slot of its parent in the
    /// derivation tree, in slot order (for comparing books with the model).
    pub fn slots(&self) -> Vec<(CteRef, Cap, Option<CteRef>)> {
        let mut v: Vec<_> = self
            .cnodes
            .iter()
            .flat_map(|(&cnode, (_, slots))| {
                slots
                    .iter()
                    .map(move |(&index, cte)| (CteRef { cnode, index }, cte.cap, cte.parent))
            })
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// Number of occupied slots in all CNodes.
    pub fn occupied_slots(&self) -> usize {
        self.cnodes.values().map(|(_, s)| s.len()).sum()
    }

    /// Checks that live objects made from untypeds lie inside them and do not
    /// overlap each other (untypeds may contain objects; nothing else may).
    pub fn check_memory(&self) -> Result<(), String> {
        let mut leaves: Vec<(u64, u64, ObjId)> = Vec::new();
        for (&id, o) in &self.objects {
            let Some(from) = o.from else { continue };
            if let Some(u) = self.objects.get(&from) {
                let (s, e) = (o.paddr, o.paddr + (1u64 << o.bits));
                if s < u.paddr || e > u.paddr + (1u64 << u.bits) {
                    return Err(format!("{id:?} outside its untyped {from:?}"));
                }
            }
            if o.ty != ObjectType::Untyped {
                leaves.push((o.paddr, o.paddr + (1u64 << o.bits), id));
            }
        }
        leaves.sort();
        for w in leaves.windows(2) {
            if w[0].1 > w[1].0 {
                return Err(format!("{:?} and {:?} overlap", w[0].2, w[1].2));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ derivation

    fn same_region(&self, a: Cap, b: Cap) -> bool {
        match (a, b) {
            (Cap::Untyped { obj, .. }, _) => {
                let Some(bo) = b.obj() else { return false };
                let (u, o) = (self.objects[&obj], self.objects[&bo]);
                let (us, ue) = (u.paddr, u.paddr + (1u64 << u.bits));
                let (os, oe) = (o.paddr, o.paddr + (1u64 << o.bits));
                (obj == bo || o.from.is_some()) && u.device == o.device && us <= os && oe <= ue
            }
            (Cap::Other(x), Cap::Other(y)) => x == y,
            _ => a.obj().is_some() && a.obj() == b.obj(),
        }
    }

    /// `isMDBParentOf`.
    fn is_mdb_parent_of(&self, a: &Cte, b_cap: Cap, b_first_badged: bool) -> bool {
        if !a.revocable || !self.same_region(a.cap, b_cap) {
            return false;
        }
        match (a.cap, b_cap) {
            (Cap::Object { ty, badge, .. }, Cap::Object { badge: bb, .. }) if ty.badgeable() => {
                badge == 0 || (badge == bb && !b_first_badged)
            }
            _ => true,
        }
    }

    /// `cteInsert` of `cap` (recording `vm`) derived from `src` into the
    /// empty `dest`.
    fn insert_derived(&mut self, cap: Cap, vm: Option<CapMapping>, src: CteRef, dest: CteRef) {
        let src_cap = self.cap(src).expect("src");
        let revocable = match (cap, src_cap) {
            (Cap::Object { ty, badge, .. }, Cap::Object { badge: sb, .. }) if ty.badgeable() => badge != sb,
            (Cap::Untyped { .. }, _) => true,
            _ => false,
        };
        let mut cand = Some(src);
        let mut parent = None;
        while let Some(c) = cand {
            let cte = self.cte(c).expect("ancestor");
            if self.is_mdb_parent_of(cte, cap, revocable) {
                parent = Some(c);
                break;
            }
            cand = cte.parent;
        }
        self.put(dest, cap, parent, revocable);
        self.cte_mut(dest).vm = vm;
    }

    /// `cteDelete` of a non-empty slot: children go to its parent; the final
    /// cap of an object is finalised (`finaliseCap` -> `Arch_finaliseCap`,
    /// see [`MockKernel::arch_finalise`]); the object goes with its last cap
    /// (a CNode's contents first).
    fn delete_cte(&mut self, at: CteRef) {
        let cte = self
            .cnodes
            .get_mut(&at.cnode)
            .expect("cnode")
            .1
            .remove(&at.index)
            .expect("cte");
        if let Some(p) = cte.parent {
            let pc = self.cte_mut(p);
            pc.children.retain(|c| *c != at);
            pc.children.extend(cte.children.iter().copied());
        }
        for c in &cte.children {
            self.cte_mut(*c).parent = cte.parent;
        }
        if let Some(o) = cte.cap.obj() {
            if self.objects[&o].caps == 1 {
                self.arch_finalise(cte.cap, cte.vm);
            }
        }
        self.drop_ref(cte.cap);
    }

    fn drop_ref(&mut self, cap: Cap) {
        let Some(o) = cap.obj() else { return };
        let obj = self.objects.get_mut(&o).expect("object");
        obj.caps -= 1;
        if obj.caps == 0 {
            self.objects.remove(&o);
            self.tables.remove(&o);
            if let Some((_, slots)) = self.cnodes.get(&o) {
                // The kernel deletes a CNode's remaining caps with it.
                let mut idx: Vec<u64> = slots.keys().copied().collect();
                idx.sort_unstable();
                for i in idx {
                    if self.cte(CteRef { cnode: o, index: i }).is_some() {
                        self.delete_cte(CteRef { cnode: o, index: i });
                    }
                }
                self.cnodes.remove(&o);
            }
        }
    }

    fn revoke_cte(&mut self, at: CteRef) {
        while let Some(&c) = self.cte(at).and_then(|x| x.children.last()) {
            self.revoke_cte(c);
            if self.cte(c).is_some() {
                self.delete_cte(c);
            }
        }
    }
}

impl KernelOps for MockKernel {
    fn untyped_retype(
        &mut self,
        untyped: CPtr,
        ty: ObjectType,
        size_bits: u8,
        dest: RetypeDest,
    ) -> Result<(), KernelError> {
        self.enter(CALL_RETYPE)?;
        let ut_slot = self.lookup_slot(untyped).map_err(|_| KernelError::InvalidCapability)?;
        let (ut_obj, free_index) = match self.cap(ut_slot) {
            Some(Cap::Untyped { obj, free_index }) => (obj, free_index),
            Some(_) => return Err(KernelError::IllegalOperation),
            None => return Err(KernelError::InvalidCapability),
        };
        if size_bits > 47 {
            return Err(KernelError::RangeError);
        }
        if ty == ObjectType::CNode && size_bits == 0 {
            return Err(KernelError::InvalidArgument);
        }
        if ty == ObjectType::Untyped && size_bits < 4 {
            return Err(KernelError::InvalidArgument);
        }
        let root = self
            .lookup(dest.root)
            .map_err(|_| KernelError::FailedLookup)?
            .unwrap_or(Cap::Other(u64::MAX));
        let node_cap = if dest.node_depth == 0 {
            root
        } else {
            let s = self.cnode_op_slot(root, dest.node_index, dest.node_depth)?;
            self.cap(s).unwrap_or(Cap::Other(u64::MAX))
        };
        let Cap::CNode { obj: cn, radix, .. } = node_cap else {
            return Err(KernelError::FailedLookup);
        };
        let node_size = 1u64 << radix;
        if dest.offset > node_size - 1 {
            return Err(KernelError::RangeError);
        }
        if dest.count < 1 || dest.count > RETYPE_FAN_OUT_LIMIT {
            return Err(KernelError::RangeError);
        }
        if dest.count > node_size - dest.offset {
            return Err(KernelError::RangeError);
        }
        for i in dest.offset..dest.offset + dest.count {
            if self.cap(CteRef { cnode: cn, index: i }).is_some() {
                return Err(KernelError::DeleteFirst);
            }
        }
        let has_children = !self.cte(ut_slot).expect("ut").children.is_empty();
        let free_index = if has_children { free_index } else { 0 };
        let obj_bits = match ty {
            ObjectType::Untyped => size_bits,
            ObjectType::CNode => size_bits + SLOT_BITS,
            _ => ty.fixed_bits().expect("fixed"),
        };
        let u = self.objects[&ut_obj];
        let free_bytes = (1u64 << u.bits) - free_index;
        if obj_bits >= WORD_BITS || (free_bytes >> obj_bits) < dest.count {
            return Err(KernelError::NotEnoughMemory);
        }
        if u.device && !ty.device_ok() {
            return Err(KernelError::InvalidArgument);
        }
        let aligned = (free_index + (1u64 << obj_bits) - 1) & !((1u64 << obj_bits) - 1);
        let new_free = aligned + (dest.count << obj_bits);
        if let Cap::Untyped { free_index, .. } = &mut self.cte_mut(ut_slot).cap {
            *free_index = new_free;
        }
        for i in 0..dest.count {
            let paddr = u.paddr + aligned + (i << obj_bits);
            let obj = self.new_obj(MockObject {
                ty,
                paddr,
                bits: obj_bits,
                device: u.device,
                caps: 0,
                from: Some(ut_obj),
            });
            let cap = match ty {
                ObjectType::Untyped => Cap::Untyped { obj, free_index: 0 },
                ObjectType::CNode => {
                    self.cnodes.insert(obj, (size_bits, HashMap::new()));
                    Cap::CNode {
                        obj,
                        radix: size_bits,
                        guard_size: 0,
                        guard: 0,
                    }
                }
                _ => {
                    if paging::is_table(ty) {
                        self.tables.insert(obj, BTreeMap::new());
                    }
                    Cap::Object {
                        obj,
                        ty,
                        badge: 0,
                        // `Mode_createObject`: frames are `VMReadWrite`.
                        rights: if ty.is_frame() {
                            paging::VM_READ_WRITE
                        } else {
                            Rights::ALL_CAP
                        },
                    }
                }
            };
            self.put(
                CteRef {
                    cnode: cn,
                    index: dest.offset + i,
                },
                cap,
                Some(ut_slot),
                true,
            );
        }
        Ok(())
    }

    fn cnode_copy(&mut self, dest: CapPath, src: CapPath, rights: Rights) -> Result<(), KernelError> {
        self.enter(CALL_COPY)?;
        let (d, s) = self.copy_args(dest, src)?;
        let (cap, vm) = derive(self, s, rights, None)?;
        self.insert_derived(cap, vm, s, d);
        Ok(())
    }

    fn cnode_mint(&mut self, dest: CapPath, src: CapPath, rights: Rights, data: CapData) -> Result<(), KernelError> {
        self.enter(CALL_MINT)?;
        let (d, s) = self.copy_args(dest, src)?;
        let (cap, vm) = derive(self, s, rights, Some(data))?;
        self.insert_derived(cap, vm, s, d);
        Ok(())
    }

    /// `cteMove`: the cap moves with everything it records (its mapping
    /// included).
    fn cnode_move(&mut self, dest: CapPath, src: CapPath) -> Result<(), KernelError> {
        self.enter(CALL_MOVE)?;
        let (d, s) = self.copy_args(dest, src)?;
        let cte = self
            .cnodes
            .get_mut(&s.cnode)
            .expect("cnode")
            .1
            .remove(&s.index)
            .expect("src");
        if let Some(p) = cte.parent {
            for c in self.cte_mut(p).children.iter_mut() {
                if *c == s {
                    *c = d;
                }
            }
        }
        for c in &cte.children {
            self.cte_mut(*c).parent = Some(d);
        }
        self.cnodes.get_mut(&d.cnode).expect("cnode").1.insert(d.index, cte);
        Ok(())
    }

    fn cnode_delete(&mut self, slot: CapPath) -> Result<(), KernelError> {
        self.enter(CALL_DELETE)?;
        let s = self.path_slot(slot)?;
        if self.cte(s).is_some() {
            self.delete_cte(s);
        }
        Ok(())
    }

    fn cnode_revoke(&mut self, slot: CapPath) -> Result<(), KernelError> {
        self.enter(CALL_REVOKE)?;
        let s = self.path_slot(slot)?;
        if self.cte(s).is_some() {
            self.revoke_cte(s);
        }
        Ok(())
    }

    fn set_cspace_root(&mut self, cnode: CPtr, guard_bits: u8) -> Result<(), KernelError> {
        self.enter(CALL_SET_SPACE)?;
        let Cap::CNode { obj, radix, .. } = self.invoked(cnode)? else {
            return Err(KernelError::IllegalOperation);
        };
        if guard_bits as u32 + radix as u32 > WORD_BITS as u32 {
            return Err(KernelError::IllegalOperation);
        }
        let old = self.tcb_root;
        self.tcb_root = Cap::CNode {
            obj,
            radix,
            guard_size: guard_bits,
            guard: 0,
        };
        self.objects.get_mut(&obj).expect("cnode").caps += 1;
        self.drop_ref(old);
        Ok(())
    }
}

impl MockKernel {
    /// Checks of Copy/Mint/Move in the kernel's order: destination lookup,
    /// destination empty, source lookup, source present.
    fn copy_args(&self, dest: CapPath, src: CapPath) -> Result<(CteRef, CteRef), KernelError> {
        let d = self.path_slot(dest)?;
        if self.cap(d).is_some() {
            return Err(KernelError::DeleteFirst);
        }
        let src_root = self
            .lookup(src.root)
            .map_err(|_| KernelError::FailedLookup)?
            .unwrap_or(Cap::Other(u64::MAX));
        let s = self.cnode_op_slot(src_root, src.index, src.depth)?;
        if self.cap(s).is_none() {
            return Err(KernelError::FailedLookup);
        }
        Ok((d, s))
    }
}

/// `maskCapRights` (`Arch_maskCapRights`: `maskVMRights` for frame caps),
/// `updateCapData` (Mint) and `deriveCap` (`Arch_deriveCap`/`Mode_deriveCap`
/// for paging caps, see [`paging::arch_derive`]): the new cap and the mapping
/// it records.
fn derive(
    k: &MockKernel,
    s: CteRef,
    rights: Rights,
    data: Option<CapData>,
) -> Result<(Cap, Option<CapMapping>), KernelError> {
    let cte = k.cte(s).expect("src");
    let mut cap = cte.cap;
    if let Cap::Object { ty, rights: r, .. } = &mut cap {
        if ty.is_frame() {
            *r = paging::mask_vm_rights(*r, rights);
        } else {
            *r &= rights;
        }
    }
    if let Some(data) = data {
        cap = match cap {
            Cap::Object { obj, ty, badge, rights } if ty.badgeable() => {
                let b = match data {
                    CapData::Badge(b) => b,
                    CapData::Guard { value, .. } => value,
                };
                if badge != 0 {
                    return Err(KernelError::IllegalOperation);
                }
                Cap::Object {
                    obj,
                    ty,
                    badge: b,
                    rights,
                }
            }
            Cap::CNode { obj, radix, .. } => {
                let (value, size) = match data {
                    CapData::Guard { value, size } => (value, size),
                    CapData::Badge(_) => (0, 0),
                };
                if size as u32 + radix as u32 > WORD_BITS as u32 {
                    return Err(KernelError::IllegalOperation);
                }
                Cap::CNode {
                    obj,
                    radix,
                    guard_size: size,
                    guard: value & mask(size),
                }
            }
            c => c,
        };
    }
    if matches!(cap, Cap::Untyped { .. }) && !cte.children.is_empty() {
        return Err(KernelError::RevokeFirst);
    }
    let vm = paging::arch_derive(cap, cte.vm)?;
    Ok((cap, vm))
}
