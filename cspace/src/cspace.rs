//! The combined manager: slots, untyped memory and capability operations,
//! driving the kernel through [`KernelOps`] and keeping the books exact.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use hashbrown::HashMap;
use mm_types::run::few_stretches;

use crate::captable::{CapRecord, CapTable, Gone, Idx, NIL};
use crate::copyruns::CopyRuns;
use crate::kernel::{KernelOp, KernelOps};
use crate::layout::{CNodeRef, CapPath, Layout, LayoutError, Slot, SlotRange};
use crate::reserved::Reserved;
use crate::slots::{SlotAllocator, SlotError};
use crate::types::{pow2, CPtr, CapData, KernelError, ObjectType, Rights, RETYPE_FAN_OUT_LIMIT, WORD_BITS};
use crate::untyped::{BootUntyped, MemStats, NodeId, NodeState, Request, UntypedAllocator, UntypedConfigError};

/// How many times a rollback step is tried before the manager gives up and
/// poisons itself.
const UNDO_TRIES: usize = 3;

/// What the manager starts from: the boot CNode, its free range, the boot
/// untypeds, and the layout and policy parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Radix of the boot CNode (`BootInfo.initThreadCNodeSizeBits`).
    pub root_bits: u8,
    /// Boot CNode slot of the boot CNode's own cap (`seL4_CapInitThreadCNode`).
    pub root_cnode_slot: u64,
    /// Free slots of the boot CNode (`BootInfo.empty`).
    pub empty: Range<u64>,
    /// The boot untypeds (`BootInfo.untyped` and `untypedList`).
    pub untypeds: Vec<BootUntyped>,
    /// Radix of the level-1 CNode (default 8: 255 level-2 CNodes).
    pub l1_bits: u8,
    /// Radix of each level-2 CNode (default 12: 4096 slots, 128 KiB).
    pub l2_bits: u8,
    /// Objects up to `2^chunk_bits` bytes are served from untypeds of at most
    /// that size (default 21, 2 MiB).
    pub chunk_bits: u8,
    /// A split makes at most `2^split_bits` children (default 1: halves, so
    /// that big free pieces survive next to chunks in use).
    pub split_bits: u8,
}

impl Config {
    /// A configuration with the default layout and policy parameters.
    pub fn new(root_bits: u8, root_cnode_slot: u64, empty: Range<u64>, untypeds: Vec<BootUntyped>) -> Self {
        Config {
            root_bits,
            root_cnode_slot,
            empty,
            untypeds,
            l1_bits: 8,
            l2_bits: 12,
            chunk_bits: 21,
            split_bits: 1,
        }
    }
}

/// Where allocated objects must lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere in RAM (device memory is never used).
    Anywhere,
    /// Entirely inside physical `[lo, hi)`; RAM or device memory, whichever
    /// covers it (device memory only for frames and untypeds).
    Range {
        /// First byte allowed.
        lo: u64,
        /// First byte after the range.
        hi: u64,
    },
}

/// Identifies a live object made by [`CSpace::alloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(u64);

impl ObjectId {
    /// The raw number (unique for the manager's lifetime).
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// A live object: where its original cap is and where its memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// Handle for [`CSpace::free`].
    pub id: ObjectId,
    /// Object type.
    pub ty: ObjectType,
    /// Object size in bits.
    pub obj_bits: u8,
    /// Slot of the original cap (changes only with [`CSpace::mv`]).
    pub slot: Slot,
    /// Pointer that invokes the original cap.
    pub cptr: CPtr,
    /// Physical address.
    pub paddr: u64,
    /// Made from device memory.
    pub device: bool,
    /// The untyped (chunk or piece) it was made from.
    pub untyped: NodeId,
}

/// Figures of the manager. All of them are unchanged by a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// RAM bytes (`total == free + live + padding`).
    pub ram: MemStats,
    /// Device-memory bytes (same identity).
    pub device: MemStats,
    /// Live objects made by [`CSpace::alloc`] (internal CNodes excluded).
    pub objects_live: u64,
    /// Live caps made by copy/mint.
    pub copies_live: u64,
    /// Level-2 CNodes, the boot CNode included.
    pub cnodes: u64,
    /// Bytes of the CNodes the manager made (L1 and level-2), part of
    /// `ram.live`.
    pub cnode_bytes: u64,
    /// Slots of the boot CNode's free range plus all level-2 CNodes added.
    pub slots_capacity: u64,
    /// Free slots.
    pub slots_free: u64,
    /// Empty slots handed out by [`CSpace::alloc_slots`].
    pub slots_reserved: u64,
    /// Untyped caps the manager holds (boot untypeds and split pieces).
    pub untyped_nodes: u64,
    /// Revokes of idle untypeds that failed (the memory stays usable; see
    /// [`CSpace::reclaim_idle`]).
    pub reclaim_failures: u64,
}

/// Why [`CSpace::new`] failed. Whatever it had done is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The layout parameters cannot work.
    Layout(LayoutError),
    /// The untyped parameters or a boot untyped are invalid.
    Untyped(UntypedConfigError),
    /// A boot untyped's slot lies in the empty range, or the empty range has
    /// no slot for the L1 cap.
    Slots,
    /// No fresh RAM untyped can hold the L1 CNode.
    OutOfMemory,
    /// The kernel refused a start-up step.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
}

/// Why an allocation was refused. Every figure is as it was before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// The size argument is not valid for the type
    /// ([`ObjectType::object_bits`]).
    BadSize {
        /// Type asked for.
        ty: ObjectType,
        /// Size argument given.
        size_bits: u8,
    },
    /// The count is 0 or above the kernel's retype fan-out limit (256).
    BadCount {
        /// Count given.
        count: u64,
    },
    /// A batch of objects no larger than a chunk would span more than a chunk.
    BatchTooLarge {
        /// Count given.
        count: u64,
        /// Size of each object in bits.
        obj_bits: u8,
    },
    /// The physical range is empty or smaller than the objects.
    BadRange {
        /// Start of the range.
        lo: u64,
        /// End of the range.
        hi: u64,
    },
    /// Device memory covers the range but the type cannot be made from it
    /// (only frames and untypeds can), and no RAM covers it.
    DeviceMemory {
        /// Type asked for.
        ty: ObjectType,
    },
    /// No untyped of an allowed kind has room (alignment and range
    /// included).
    OutOfMemory {
        /// Bytes the objects need.
        bytes: u64,
    },
    /// No CNode has the consecutive free slots needed and the CSpace cannot
    /// grow (all level-1 slots used, or no fresh RAM for a CNode).
    OutOfSlots {
        /// Length of the run that could not be found.
        needed: u64,
    },
    /// The kernel refused an operation; everything done before it was undone.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
    /// An earlier rollback failed; the books may no longer match the kernel.
    Poisoned,
}

/// Why [`CSpace::free`] was refused. Every figure is as it was before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// No live object has this id.
    UnknownObject(ObjectId),
    /// Copies of the object's cap are live: delete or revoke them first.
    HasCopies {
        /// The object.
        id: ObjectId,
        /// Live copies.
        copies: u64,
    },
    /// The kernel refused to revoke or delete the cap.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
    /// An earlier rollback failed.
    Poisoned,
}

/// Why a capability or slot operation was refused. Every figure is as it was
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapError {
    /// The slot holds no cap the manager made (or is not a slot of it).
    NotManaged(Slot),
    /// The destination is not an empty slot handed out by
    /// [`CSpace::alloc_slots`].
    NotReserved(Slot),
    /// The slot holds an object's original cap: use [`CSpace::free`].
    IsOriginal(Slot),
    /// Mint of a badge onto a cap that already has one (the kernel would
    /// refuse: `IllegalOperation`).
    AlreadyBadged(Slot),
    /// Mint of a non-zero badge onto a cap that takes none.
    NotBadgeable(Slot),
    /// No free slot for the new cap and the CSpace cannot grow.
    OutOfSlots {
        /// Slots needed.
        needed: u64,
    },
    /// The kernel refused an operation; everything done before it was undone.
    Kernel {
        /// The operation.
        op: KernelOp,
        /// The kernel's error.
        error: KernelError,
    },
    /// An earlier rollback failed.
    Poisoned,
}

/// Why [`CSpace::delete_many`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteManyError {
    /// How many of the slots (from the first) were deleted before it
    /// stopped; 0 when the batch was refused with nothing done.
    pub deleted: usize,
    /// Why it stopped.
    pub error: CapError,
}

/// Internal failure of a step, mapped to the public error of the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    NoMemory,
    NoSlots(u64),
    Kernel(KernelOp, KernelError),
}

impl From<Fail> for AllocError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::NoMemory => AllocError::OutOfMemory { bytes: 0 },
            Fail::NoSlots(needed) => AllocError::OutOfSlots { needed },
            Fail::Kernel(op, error) => AllocError::Kernel { op, error },
        }
    }
}

impl From<Fail> for CapError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::NoMemory | Fail::NoSlots(_) => CapError::OutOfSlots { needed: 1 },
            Fail::Kernel(op, error) => CapError::Kernel { op, error },
        }
    }
}

/// One step of a rollback.
#[derive(Debug)]
enum Undo {
    /// Give back slots taken from the slot allocator.
    FreeRun(SlotRange),
    /// Delete caps the kernel made (last first).
    DeleteCaps(Vec<CapPath>),
    /// Forget a split (its children are fresh again).
    Merge(NodeId),
    /// Put a node's state back.
    Restore(NodeId, NodeState),
    /// Forget an added level-2 CNode.
    RemoveLevel2(u32),
}

#[derive(Debug, Default)]
struct Tx {
    log: Vec<Undo>,
}

/// A CNode the manager made (L1 or level-2), and the untyped it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InternalCNode {
    node: NodeId,
    obj_bits: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectRecord {
    ty: ObjectType,
    obj_bits: u8,
    slot: Slot,
    paddr: u64,
    device: bool,
    node: NodeId,
}

/// The CSpace manager.
///
/// # Invariants
/// - a slot is in exactly one of: free (slot allocator), reserved (handed
///   out empty), holding a managed cap (`caps`), holding an untyped node's or
///   internal CNode's cap;
/// - `caps` has a record for slot `s` <=> the kernel's slot `s` holds that
///   cap;
/// - for each object, the `copies` of its original's record == number of
///   `caps` records naming it, less the original;
/// - the untyped books match the kernel's watermarks (see
///   [`UntypedAllocator`]).
///
/// # Copy runs
/// [`adopt_copies_run`](Self::adopt_copies_run) of sources that are all
/// originals books one *run* record (`runs`: sources `src .. src + n`,
/// destinations `dest .. dest + n`) instead of `n` cap records; a run stands
/// for exactly the records `adopt_copies_run` books per cap (copy `j` of
/// source `src + j`: its parent and original, its object, type and badge,
/// revocable iff an untyped, no children, not a reserved slot). Invariants:
/// - a run's destination slots are in no other run, hold no `caps` record,
///   are neither free nor reserved, and hold the copies in the kernel (so
///   with `caps` they are the "holding a managed cap" slots);
/// - a run's source slots hold originals in `caps` (they cannot move or go
///   while the run exists: see below);
/// - `copies` counts the copies in runs too, and an original's copies are
///   its record's `copies` plus the runs that copy it;
/// - with booking disabled ([`set_copy_runs`](Self::set_copy_runs)) there
///   are no runs;
/// - (cap table) the originals' bits mark exactly the slots whose record is
///   an original (so that a run of sources is checked a word at a time).
///
/// Tests check all of these (`check_books`, run by every audit).
///
/// Read-only queries answer with runs present.
/// [`adopt_deletes_run`](Self::adopt_deletes_run) of slots that runs hold
/// exactly (whole runs or parts, cut into at most two per run) drops them a
/// run at a time. [`free`](Self::free) of a source is refused, its copies
/// in runs counted. Any
/// other operation that needs the record of a copy in a run (names its slot:
/// copy, mint, delete, revoke, move, adopt ...), or moves or revokes a run's
/// source, first *materialises* the run: books its records as
/// `adopt_copies_run` would have and forgets the run. Each run is
/// materialised at most once, at the per-cap price it saved, so the
/// amortised cost of any sequence is at most what it was without runs (plus
/// a run look-up, `O(log runs)`, on the paths that miss a record).
#[derive(Clone)]
pub struct CSpace<K: KernelOps> {
    kernel: K,
    layout: Layout,
    slots: SlotAllocator,
    ut: UntypedAllocator,
    caps: CapTable,
    /// Copies booked a run at a time (see *Copy runs* above).
    runs: CopyRuns,
    reserved: Reserved,
    objects: HashMap<ObjectId, ObjectRecord>,
    next_object: u64,
    counts: [u64; ObjectType::ALL.len()],
    copies: u64,
    l1: InternalCNode,
    l2: HashMap<u32, InternalCNode>,
    /// Free slots kept for growth (splits before a new CNode exists).
    reserve: u64,
    reclaim_failures: u64,
    poisoned: bool,
}

impl<K: KernelOps> CSpace<K> {
    /// Sets up the two-level CSpace (see the crate doc): makes the L1 CNode
    /// from RAM into a slot of the boot CNode's empty range, mints the boot
    /// CNode into L1 slot 0 and makes L1 the root task's CSpace root.
    ///
    /// On failure the kernel operations are handed back, with everything
    /// done to the kernel undone.
    pub fn new(kernel: K, config: Config) -> Result<Self, (InitError, K)> {
        match Self::layout_for(&config) {
            Ok(()) => Self::start(kernel, config),
            Err(e) => Err((e, kernel)),
        }
    }

    fn layout_for(config: &Config) -> Result<(), InitError> {
        Layout {
            root_bits: config.root_bits,
            l1_bits: config.l1_bits,
            l2_bits: config.l2_bits,
            root_cnode_slot: config.root_cnode_slot,
            l1_slot: if config.root_cnode_slot == 0 { 1 } else { 0 },
        }
        .validate()
        .map_err(InitError::Layout)?;
        UntypedAllocator::new(&config.untypeds, config.chunk_bits, config.split_bits).map_err(InitError::Untyped)?;
        if config.untypeds.iter().any(|u| config.empty.contains(&u.slot))
            || config.empty.contains(&config.root_cnode_slot)
        {
            return Err(InitError::Slots);
        }
        Ok(())
    }

    fn start(kernel: K, config: Config) -> Result<Self, (InitError, K)> {
        let mut layout = Layout {
            root_bits: config.root_bits,
            l1_bits: config.l1_bits,
            l2_bits: config.l2_bits,
            root_cnode_slot: config.root_cnode_slot,
            l1_slot: 0,
        };
        let ut = UntypedAllocator::new(&config.untypeds, config.chunk_bits, config.split_bits).expect("checked");
        let mut slots = SlotAllocator::new(config.root_bits, config.empty.clone(), config.l2_bits);
        let Ok(l1_slot) = slots.alloc() else {
            return Err((InitError::Slots, kernel));
        };
        layout.l1_slot = l1_slot.index;
        if let Err(e) = layout.validate() {
            return Err((InitError::Layout(e), kernel));
        }
        // Growth splits a fresh untyped down to the CNode's size.
        let growth_end = config.l2_bits + crate::types::SLOT_BITS;
        let levels = ut
            .largest_ram_bits()
            .saturating_sub(growth_end)
            .div_ceil(config.split_bits) as u64;
        let reserve = levels * pow2(config.split_bits);
        let mut cs = CSpace {
            kernel,
            layout,
            slots,
            ut,
            caps: CapTable::new(config.l1_bits, config.l2_bits),
            runs: CopyRuns::new(config.l1_bits, config.l2_bits),
            reserved: Reserved::new(config.l1_bits, config.l2_bits),
            objects: HashMap::new(),
            next_object: 0,
            counts: [0; ObjectType::ALL.len()],
            copies: 0,
            l1: InternalCNode { node: 0, obj_bits: 0 },
            l2: HashMap::new(),
            reserve,
            reclaim_failures: 0,
            poisoned: false,
        };
        let mut tx = Tx::default();
        match cs.bootstrap(l1_slot, &mut tx) {
            Ok(()) => Ok(cs),
            Err(f) => {
                cs.rollback(tx);
                let e = match f {
                    Fail::NoMemory | Fail::NoSlots(_) => InitError::OutOfMemory,
                    Fail::Kernel(op, error) => InitError::Kernel { op, error },
                };
                Err((e, cs.kernel))
            }
        }
    }

    fn bootstrap(&mut self, l1_slot: Slot, tx: &mut Tx) -> Result<(), Fail> {
        let obj_bits = self.layout.l1_bits + crate::types::SLOT_BITS;
        let req = fresh_ram(obj_bits);
        let slots = self.try_plan_slots(&req).ok_or(Fail::NoMemory)?;
        tx.log.extend(slots.iter().map(|s| Undo::FreeRun(one(*s))));
        let plan = self.ut.plan(&req).expect("planned");
        let host = self.exec_splits(&plan, &slots, tx)?;
        let dest = self.layout.retype_dest(SlotRange {
            cnode: CNodeRef::ROOT,
            start: l1_slot.index,
            len: 1,
        });
        let old = self.ut.node(host).expect("host").state.clone();
        self.kernel
            .untyped_retype(
                self.node_cptr(host),
                ObjectType::CNode,
                self.layout.l1_bits,
                dest.expect("valid"),
            )
            .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
        self.ut.apply_alloc(host, obj_bits, 1);
        tx.log.push(Undo::Restore(host, old));
        tx.log.push(Undo::DeleteCaps(vec![self.path(l1_slot)]));
        self.l1 = InternalCNode { node: host, obj_bits };
        let l1_slot0 = self
            .layout
            .path(Slot {
                cnode: CNodeRef::Level1,
                index: 0,
            })
            .expect("valid");
        let root = self.path(Slot::root(self.layout.root_cnode_slot));
        let guard = CapData::Guard {
            value: 0,
            size: self.layout.root_copy_guard_bits(),
        };
        self.kernel
            .cnode_mint(l1_slot0, root, Rights::ALL_CAP, guard)
            .map_err(|e| Fail::Kernel(KernelOp::Mint, e))?;
        tx.log.push(Undo::DeleteCaps(vec![l1_slot0]));
        self.kernel
            .set_cspace_root(self.layout.l1_cptr(), self.layout.tcb_root_guard_bits())
            .map_err(|e| Fail::Kernel(KernelOp::SetCSpaceRoot, e))?;
        Ok(())
    }

    /// The layout (for computing pointers and paths).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The kernel operations.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The kernel operations, mutably (for invocations outside the manager's
    /// books, e.g. mapping a frame).
    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// The untyped books.
    pub fn untypeds(&self) -> &UntypedAllocator {
        &self.ut
    }

    /// The slot books.
    pub fn slot_books(&self) -> &SlotAllocator {
        &self.slots
    }

    /// Pointer that invokes the cap in `slot`.
    #[inline]
    pub fn cptr(&self, slot: Slot) -> CPtr {
        self.layout.cptr(slot).expect("a level-2 slot of the layout")
    }

    /// Path that CNode invocations use for `slot`.
    #[inline]
    pub fn path(&self, slot: Slot) -> CapPath {
        self.layout.path(slot).expect("a slot of the layout")
    }

    fn node_cptr(&self, id: NodeId) -> CPtr {
        self.cptr(self.ut.node(id).expect("node").slot)
    }

    // ---------------------------------------------------------------- figures

    /// All figures.
    pub fn stats(&self) -> Stats {
        let (ram, device) = self.ut.mem_stats();
        let cnode_bytes = pow2(self.l1.obj_bits) + self.l2.values().map(|c| pow2(c.obj_bits)).sum::<u64>();
        Stats {
            ram,
            device,
            objects_live: self.objects.len() as u64,
            copies_live: self.copies,
            cnodes: self.slots.cnode_count() as u64,
            cnode_bytes,
            slots_capacity: self.slots.capacity(),
            slots_free: self.slots.free_count(),
            slots_reserved: self.reserved.len(),
            untyped_nodes: self.ut.node_count() as u64,
            reclaim_failures: self.reclaim_failures,
        }
    }

    /// Free RAM bytes (above watermarks).
    pub fn free_bytes(&self) -> u64 {
        self.ut.mem_stats().0.free
    }

    /// Free device-memory bytes.
    pub fn device_free_bytes(&self) -> u64 {
        self.ut.mem_stats().1.free
    }

    /// Live objects (internal CNodes excluded).
    pub fn objects_live(&self) -> u64 {
        self.objects.len() as u64
    }

    /// Live objects of one type.
    pub fn count(&self, ty: ObjectType) -> u64 {
        self.counts[ty.index()]
    }

    /// Free slots.
    pub fn slots_free(&self) -> u64 {
        self.slots.free_count()
    }

    /// A live object.
    pub fn object(&self, id: ObjectId) -> Option<Allocation> {
        self.objects.get(&id).map(|o| self.allocation(id, o))
    }

    /// All live objects.
    pub fn objects(&self) -> impl Iterator<Item = Allocation> + '_ {
        self.objects.iter().map(|(id, o)| self.allocation(*id, o))
    }

    fn allocation(&self, id: ObjectId, o: &ObjectRecord) -> Allocation {
        Allocation {
            id,
            ty: o.ty,
            obj_bits: o.obj_bits,
            slot: o.slot,
            cptr: self.cptr(o.slot),
            paddr: o.paddr,
            device: o.device,
            untyped: o.node,
        }
    }

    /// Whether `slot` holds a cap the manager made (original or copy).
    pub fn is_managed(&self, slot: Slot) -> bool {
        self.record_of(slot).is_some()
    }

    /// The object whose cap (original or copy) is in `slot`.
    pub fn object_at(&self, slot: Slot) -> Option<ObjectId> {
        self.record_of(slot).map(|i| self.caps.get(i).object)
    }

    /// The badge of the managed cap in `slot`.
    pub fn badge(&self, slot: Slot) -> Option<u64> {
        self.record_of(slot).map(|i| self.caps.get(i).badge)
    }

    /// The record of the cap in `slot`, or for a copy in a run the record of
    /// its source (same object and badge).
    #[inline]
    fn record_of(&self, slot: Slot) -> Option<Idx> {
        match self.caps.find(slot) {
            Some(i) => Some(i),
            None if self.runs.is_empty() => None,
            None => self.run_source(slot),
        }
    }

    /// The record of the source of the copy in `slot`, if a run holds it.
    #[cold]
    fn run_source(&self, slot: Slot) -> Option<Idx> {
        let s = self.runs.source_of(self.runs.key(slot)?)?;
        Some(self.caps.find_known(self.runs.slot(s)))
    }

    /// Every managed cap: its slot, its object, and whether it is the
    /// object's original.
    pub fn managed_caps(&self) -> impl Iterator<Item = (Slot, ObjectId, bool)> + '_ {
        let in_runs = self.runs.iter().flat_map(move |(d, r)| {
            (0..r.n).map(move |j| {
                let src = self.caps.find_known(self.runs.slot(r.src + j));
                (self.runs.slot(d + j), self.caps.get(src).object, false)
            })
        });
        self.caps
            .iter()
            .map(|c| (c.slot, c.object, c.parent == NIL))
            .chain(in_runs)
    }

    /// Number of copy runs booked (see *Copy runs* in [`CSpace`]).
    pub fn copy_run_count(&self) -> usize {
        self.runs.len()
    }

    /// Whether [`adopt_copies_run`](Self::adopt_copies_run) books copy runs
    /// (the default) or a record per cap.
    pub fn copy_runs(&self) -> bool {
        self.runs.enabled
    }

    /// Turns the booking of copy runs on or off; turning it off first
    /// materialises every run (see *Copy runs* in [`CSpace`]). Nothing
    /// observable changes either way.
    pub fn set_copy_runs(&mut self, on: bool) {
        if !on {
            self.materialise_all();
        }
        self.runs.enabled = on;
    }

    /// Books every run's copies per cap (nothing observable changes).
    pub fn materialise_all(&mut self) {
        for d in self.runs.all() {
            self.materialise(d);
        }
    }

    /// The empty slots handed out by [`alloc_slots`](Self::alloc_slots).
    pub fn reserved_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.reserved.iter()
    }

    /// Whether a rollback failed (every mutating operation then refuses).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    // ------------------------------------------------------------- allocation

    /// Allocates one object anywhere in RAM. `size_bits`: see
    /// [`ObjectType::object_bits`].
    pub fn alloc(&mut self, ty: ObjectType, size_bits: u8) -> Result<Allocation, AllocError> {
        self.alloc_at(ty, size_bits, Placement::Anywhere)
    }

    /// Allocates one object with a placement constraint.
    pub fn alloc_at(&mut self, ty: ObjectType, size_bits: u8, placement: Placement) -> Result<Allocation, AllocError> {
        self.alloc_many(ty, size_bits, 1, placement).map(|v| v[0])
    }

    /// Allocates `count` objects with one retype: consecutive in memory and
    /// their caps in consecutive slots of one CNode.
    pub fn alloc_many(
        &mut self,
        ty: ObjectType,
        size_bits: u8,
        count: u64,
        placement: Placement,
    ) -> Result<Vec<Allocation>, AllocError> {
        if self.poisoned {
            return Err(AllocError::Poisoned);
        }
        let obj_bits = ty.object_bits(size_bits).ok_or(AllocError::BadSize { ty, size_bits })?;
        if count == 0 || count > RETYPE_FAN_OUT_LIMIT {
            return Err(AllocError::BadCount { count });
        }
        let span = count << obj_bits;
        if obj_bits <= self.ut.chunk_bits() && span > pow2(self.ut.chunk_bits()) {
            return Err(AllocError::BatchTooLarge { count, obj_bits });
        }
        let req = match placement {
            Placement::Anywhere => Request {
                obj_bits,
                count,
                lo: 0,
                hi: u64::MAX,
                ram: true,
                device: false,
                fresh_only: false,
            },
            Placement::Range { lo, hi } => {
                if lo >= hi || hi - lo < span {
                    return Err(AllocError::BadRange { lo, hi });
                }
                Request {
                    obj_bits,
                    count,
                    lo,
                    hi,
                    ram: true,
                    device: ty.device_ok(),
                    fresh_only: false,
                }
            }
        };
        let mut tx = Tx::default();
        match self.alloc_inner(ty, obj_bits, &req, &mut tx) {
            Ok(v) => Ok(v),
            Err(f) => {
                self.rollback(tx);
                if self.poisoned {
                    return Err(AllocError::Poisoned);
                }
                Err(match f {
                    Fail::NoMemory => {
                        let dev_would = Request { device: true, ..req };
                        if !req.device
                            && matches!(placement, Placement::Range { .. })
                            && self.ut.plan(&dev_would).is_some()
                        {
                            AllocError::DeviceMemory { ty }
                        } else {
                            AllocError::OutOfMemory { bytes: span }
                        }
                    }
                    f => f.into(),
                })
            }
        }
    }

    fn alloc_inner(
        &mut self,
        ty: ObjectType,
        obj_bits: u8,
        req: &Request,
        tx: &mut Tx,
    ) -> Result<Vec<Allocation>, Fail> {
        let count = req.count;
        let runs = self.acquire(tx, &|ut| {
            let p = ut.plan(req)?;
            let mut lens = split_slots(ut, &p);
            lens.push(count);
            Some(lens)
        })?;
        let plan = self.ut.plan(req).expect("planned with the same books");
        let (split_runs, obj_run) = runs.split_at(runs.len() - 1);
        let host = self.exec_splits(&plan, &singles(split_runs), tx)?;
        let run = obj_run[0];
        let dest = self.layout.retype_dest(run).expect("valid run");
        self.kernel
            .untyped_retype(self.node_cptr(host), ty, ty.retype_size_arg(obj_bits), dest)
            .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
        let host_node = self.ut.node(host).expect("host");
        let device = host_node.device;
        let paddr = self.ut.apply_alloc(host, obj_bits, count);
        debug_assert_eq!(paddr, plan.paddr);
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let id = ObjectId(self.next_object);
            self.next_object += 1;
            let slot = run.slot(i);
            let rec = ObjectRecord {
                ty,
                obj_bits,
                slot,
                paddr: paddr + i * pow2(obj_bits),
                device,
                node: host,
            };
            out.push(self.allocation(id, &rec));
            self.objects.insert(id, rec);
            self.caps.insert(CapRecord {
                slot,
                object: id,
                ty,
                orig: NIL,
                parent: NIL,
                first_child: NIL,
                prev: NIL,
                next: NIL,
                copies: 0,
                revocable: true,
                badge: 0,
                user_slot: false,
                mark: false,
                live: true,
            });
        }
        self.counts[ty.index()] += count;
        Ok(out)
    }

    /// Frees an object: deletes its original cap (revoking it first if it is
    /// an untyped, so that nothing made from it survives). When the untyped it
    /// came from has no objects left, the kernel resets it; when all pieces of
    /// a split untyped are empty, the split is undone with a revoke.
    pub fn free(&mut self, id: ObjectId) -> Result<(), FreeError> {
        if self.poisoned {
            return Err(FreeError::Poisoned);
        }
        let o = self.objects.get(&id).ok_or(FreeError::UnknownObject(id))?;
        let (slot, ty, obj_bits, node) = (o.slot, o.ty, o.obj_bits, o.node);
        let i = self.caps.find(slot).expect("original recorded");
        // A source of copy runs is not materialised: its copies are counted.
        let copies = self.caps.get(i).copies + self.run_copies_of(slot);
        if copies > 0 {
            return Err(FreeError::HasCopies { id, copies });
        }
        let path = self.path(slot);
        if ty == ObjectType::Untyped {
            self.kernel.cnode_revoke(path).map_err(|error| FreeError::Kernel {
                op: KernelOp::Revoke,
                error,
            })?;
        }
        self.kernel.cnode_delete(path).map_err(|error| FreeError::Kernel {
            op: KernelOp::Delete,
            error,
        })?;
        let rec = self.caps.remove(i);
        self.vacate(slot, rec.user_slot);
        self.objects.remove(&id);
        self.counts[ty.index()] -= 1;
        if self.ut.release(node, obj_bits) {
            self.coalesce(node);
        }
        Ok(())
    }

    /// Undoes splits whose pieces are all empty, from `id` upwards.
    fn coalesce(&mut self, mut id: NodeId) {
        while let Some(p) = self.ut.node(id).and_then(|n| n.parent) {
            if !self.ut.mergeable(p) {
                break;
            }
            let path = self.path(self.ut.node(p).expect("parent").slot);
            match self.kernel.cnode_revoke(path) {
                Ok(()) => {
                    for s in self.ut.merge(p) {
                        self.slots.free(s).expect("piece slot was allocated");
                    }
                    id = p;
                }
                Err(_) => {
                    self.reclaim_failures += 1;
                    break;
                }
            }
        }
    }

    /// How many merges of emptied untyped pieces the kernel refused so far
    /// (the pieces stay split; [`reclaim_idle`](Self::reclaim_idle) retries).
    pub fn reclaim_failures(&self) -> u64 {
        self.reclaim_failures
    }

    /// Retries the merges of idle split untypeds (after revokes failed).
    /// Returns how many splits were undone, or the first kernel error.
    pub fn reclaim_idle(&mut self) -> Result<u64, KernelError> {
        let mut merged = 0;
        loop {
            let mut ids: Vec<NodeId> = self
                .ut
                .nodes()
                .filter(|(_, n)| matches!(n.state, NodeState::Split { .. }))
                .map(|(id, _)| id)
                .collect();
            ids.sort_unstable();
            let Some(p) = ids.into_iter().find(|&id| self.ut.mergeable(id)) else {
                return Ok(merged);
            };
            let path = self.path(self.ut.node(p).expect("node").slot);
            self.kernel.cnode_revoke(path)?;
            for s in self.ut.merge(p) {
                self.slots.free(s).expect("piece slot was allocated");
            }
            merged += 1;
        }
    }

    // ------------------------------------------------------------------ slots

    /// Hands out `n` consecutive empty slots of one CNode (growing the CSpace
    /// if needed). They stay the caller's until
    /// [`release_slots`](Self::release_slots); caps can be put there with
    /// [`copy_to`](Self::copy_to), [`mint_to`](Self::mint_to) and
    /// [`mv`](Self::mv).
    pub fn alloc_slots(&mut self, n: u64) -> Result<SlotRange, AllocError> {
        if self.poisoned {
            return Err(AllocError::Poisoned);
        }
        if n == 0 || n > pow2(self.layout.l2_bits) {
            return Err(AllocError::BadCount { count: n });
        }
        // Without growth: the run `acquire` would take first (no log needed).
        if let Some(run) = self.take_run(n) {
            self.reserved.insert_run(run);
            return Ok(run);
        }
        let mut tx = Tx::default();
        match self.acquire(&mut tx, &|_| Some(vec![n])) {
            Ok(runs) => {
                self.reserved.insert_run(runs[0]);
                Ok(runs[0])
            }
            Err(f) => {
                self.rollback(tx);
                if self.poisoned {
                    return Err(AllocError::Poisoned);
                }
                Err(f.into())
            }
        }
    }

    /// One empty slot (see [`alloc_slots`](Self::alloc_slots)).
    pub fn alloc_slot(&mut self) -> Result<Slot, AllocError> {
        self.alloc_slots(1).map(|r| r.slot(0))
    }

    /// Gives back slots from [`alloc_slots`](Self::alloc_slots); each must be
    /// reserved and empty (the manager cannot see caps put there by other
    /// means: delete them first).
    pub fn release_slots(&mut self, range: SlotRange) -> Result<(), CapError> {
        if let Some(s) = self.reserved.first_missing(range) {
            return Err(CapError::NotReserved(s));
        }
        self.reserved.remove_run(range);
        self.slots.free_run(range).expect("reserved slots are allocated");
        Ok(())
    }

    /// Gives back one slot.
    pub fn release_slot(&mut self, slot: Slot) -> Result<(), CapError> {
        self.release_slots(SlotRange {
            cnode: slot.cnode,
            start: slot.index,
            len: 1,
        })
    }

    // ------------------------------------------------------------------- caps

    /// Copies the managed cap in `src` (with `rights` masked in) into a new
    /// slot.
    pub fn copy(&mut self, src: Slot, rights: Rights) -> Result<Slot, CapError> {
        self.derive(src, None, rights, None)
    }

    /// Copies the managed caps in `srcs` (with `rights` masked in), in order,
    /// into new slots: all of them or none. Returns the new slots, in the
    /// order of `srcs`.
    ///
    /// The outcome is that of [`copy`](Self::copy) of each source in turn,
    /// with these differences:
    /// - every source is checked first, so a refused source
    ///   ([`CapError::NotManaged`], the first one named) refuses the batch
    ///   before anything is done;
    /// - the slots are all taken before the first copy: consecutive slots of
    ///   one CNode when a CNode has such a run free (without growing the
    ///   CSpace or using its growth reserve), otherwise one at a time, as
    ///   that loop would take them (growing the CSpace when needed). When no
    ///   slot can be found for some of them the batch is refused with
    ///   [`CapError::OutOfSlots`] (`needed`: the batch's length);
    /// - *Rollback*: if the kernel refuses a copy, the copies made before it
    ///   are deleted (`CNode_Delete`, last first), then the slots are given
    ///   back and any growth undone, so that every figure is as it was; the
    ///   kernel's error is returned. If such a delete keeps failing, the
    ///   manager is poisoned ([`CapError::Poisoned`]).
    ///
    /// Cost: stretches of consecutive sources in one CNode (a region's frame
    /// caps) copied into a run are checked and booked a run at a time, with
    /// no look-up or allocation per cap besides the returned vector. A batch
    /// of one is done as [`copy`](Self::copy) (same outcome, without the
    /// batch's fixed cost). [`copy_many_into`](Self::copy_many_into) saves
    /// the returned vector's allocation.
    pub fn copy_many(&mut self, srcs: &[Slot], rights: Rights) -> Result<Vec<Slot>, CapError> {
        if let [src] = *srcs {
            // As `copy_many_into` does it, without its vector handling.
            return self.copy(src, rights).map(|d| vec![d]);
        }
        let mut out = Vec::with_capacity(srcs.len());
        self.copy_many_into(srcs, rights, &mut out)?;
        Ok(out)
    }

    /// [`copy_many`](Self::copy_many), appending the new slots to `out`
    /// (left as it was on failure) instead of returning a new vector: with
    /// a vector kept for the purpose, a batch allocates nothing.
    pub fn copy_many_into(&mut self, srcs: &[Slot], rights: Rights, out: &mut Vec<Slot>) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        // One cap (a page fault's): exactly `copy` (the same check, slot,
        // kernel call, books and rollback), without the batch machinery.
        if let [src] = *srcs {
            return self.copy(src, rights).map(|d| out.push(d));
        }
        // Stretches of consecutive sources (the usual case: a region's frame
        // caps) are checked as runs of the table, without a look-up each.
        let parts = stretches(srcs);
        match &parts {
            Some(parts) => {
                for &(o, len) in parts.iter() {
                    self.find_run_rec(srcs[o], len as u64).map_err(CapError::NotManaged)?;
                }
            }
            None => {
                self.materialise_missing(srcs);
                if let Some(&s) = srcs.iter().find(|&&s| self.caps.find(s).is_none()) {
                    return Err(CapError::NotManaged(s));
                }
            }
        }
        if srcs.is_empty() {
            return Ok(());
        }
        match self.take_run(srcs.len() as u64) {
            Some(run) => self.copy_into_run(srcs, parts.as_deref(), run, rights, out),
            None => {
                let dests = self.copy_one_by_one(srcs, rights)?;
                out.extend_from_slice(&dests);
                Ok(())
            }
        }
    }

    /// [`copy_many`](Self::copy_many) of the checked, non-empty `srcs` (in
    /// the stretches `parts` of consecutive slots, if given) into the run
    /// `dests` just taken for them: the kernel calls, then the books in bulk
    /// (as `record_copy` of each in turn would write them), or the rollback.
    fn copy_into_run(
        &mut self,
        srcs: &[Slot],
        parts: Option<&[(usize, usize)]>,
        dests: SlotRange,
        rights: Rights,
        out: &mut Vec<Slot>,
    ) -> Result<(), CapError> {
        // Within one CNode the paths of consecutive slots differ only by
        // their index (see `Layout::known_path`).
        let d0 = self.layout.known_path(dests.slot(0));
        let at = |p: CapPath, j: usize| CapPath {
            index: p.index + j as u64,
            ..p
        };
        let mut refused = None;
        if let Some(parts) = parts {
            'parts: for &(o, len) in parts {
                let s0 = self.layout.known_path(srcs[o]);
                for j in 0..len {
                    if let Err(e) = self.kernel.cnode_copy(at(d0, o + j), at(s0, j), rights) {
                        refused = Some((o + j, e));
                        break 'parts;
                    }
                }
            }
        } else {
            for (j, &s) in srcs.iter().enumerate() {
                let sp = self.layout.known_path(s);
                if let Err(e) = self.kernel.cnode_copy(at(d0, j), sp, rights) {
                    refused = Some((j, e));
                    break;
                }
            }
        }
        if let Some((k, e)) = refused {
            return Err(self.undo_copies(dests, k as u64, e));
        }
        // As `record_copy(source, dest, source's badge, false)` of each.
        match parts {
            Some(parts) => {
                for &(o, len) in parts {
                    let d = SlotRange {
                        cnode: dests.cnode,
                        start: dests.start + o as u64,
                        len: len as u64,
                    };
                    self.caps.insert_copies_run(srcs[o], d);
                }
            }
            None => self.caps.insert_copies(srcs.iter().copied(), dests),
        }
        self.copies += dests.len;
        out.extend(dests.iter());
        Ok(())
    }

    /// The rollback of [`copy_into_run`](Self::copy_into_run) after the
    /// kernel refused copy `k`: the first `k` copies deleted (last first),
    /// then the run given back.
    #[cold]
    #[inline(never)]
    fn undo_copies(&mut self, dests: SlotRange, k: u64, e: KernelError) -> CapError {
        let made = (0..k).map(|j| self.path(dests.slot(j))).collect();
        let tx = Tx {
            log: vec![Undo::FreeRun(dests), Undo::DeleteCaps(made)],
        };
        self.fail_cap(tx, Fail::Kernel(KernelOp::Copy, e))
    }

    /// [`copy_many`](Self::copy_many) of the checked, non-empty `srcs` when
    /// no CNode has a run free for them: one slot at a time, growing the
    /// CSpace when needed.
    #[cold]
    #[inline(never)]
    fn copy_one_by_one(&mut self, srcs: &[Slot], rights: Rights) -> Result<Vec<Slot>, CapError> {
        let recs: Vec<Idx> = srcs.iter().map(|&s| self.caps.find_known(s)).collect();
        let n = srcs.len() as u64;
        let mut tx = Tx::default();
        let mut dests = Vec::with_capacity(srcs.len());
        for _ in 0..n {
            let mut grown = None;
            let r = self.take_slot(&mut grown);
            if let Some(g) = grown {
                tx.log.extend(g.log);
            }
            match r {
                Ok(d) => {
                    tx.log.push(Undo::FreeRun(one(d)));
                    dests.push(d);
                }
                Err(f) => {
                    return Err(match self.fail_cap(tx, f) {
                        CapError::OutOfSlots { .. } => CapError::OutOfSlots { needed: n },
                        e => e,
                    })
                }
            }
        }
        for (k, (&s, &d)) in srcs.iter().zip(&dests).enumerate() {
            let (dp, sp) = (self.layout.known_path(d), self.layout.known_path(s));
            if let Err(e) = self.kernel.cnode_copy(dp, sp, rights) {
                let made = dests[..k].iter().map(|&d| self.path(d)).collect();
                tx.log.push(Undo::DeleteCaps(made));
                return Err(self.fail_cap(tx, Fail::Kernel(KernelOp::Copy, e)));
            }
        }
        for (&si, &d) in recs.iter().zip(&dests) {
            let badge = self.caps.get(si).badge;
            self.record_copy(si, d, badge, false);
        }
        Ok(dests)
    }

    /// Records copies the kernel already made outside [`KernelOps`] (a
    /// kernel extension that copies a run of caps in one invocation, such as
    /// `X86PageTable_CopyMapRun`): `srcs[i]` was copied into `dests.slot(i)`.
    /// Every destination must be a reserved slot (from
    /// [`alloc_slots`](Self::alloc_slots)); afterwards it holds a managed
    /// copy, and deleting it frees the slot (it is no longer reserved).
    ///
    /// Refused, with nothing recorded, if a source is not managed, a
    /// destination is not reserved, or the lengths differ. The books then
    /// match a loop of [`copy_to`](Self::copy_to) made with the same rights.
    pub fn adopt_copies(&mut self, srcs: &[Slot], dests: SlotRange) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        if srcs.len() as u64 != dests.len {
            return Err(CapError::OutOfSlots {
                needed: srcs.len() as u64,
            });
        }
        self.materialise_missing(srcs);
        if let Some(&s) = srcs.iter().find(|&&s| self.caps.find(s).is_none()) {
            return Err(CapError::NotManaged(s));
        }
        if let Some(d) = self.reserved.first_missing(dests) {
            return Err(CapError::NotReserved(d));
        }
        self.reserved.remove_run(dests);
        // As `record_copy(source, dest, source's badge, false)` of each.
        self.caps.insert_copies(srcs.iter().copied(), dests);
        self.copies += dests.len;
        Ok(())
    }

    /// [`adopt_copies`](Self::adopt_copies) with the `n` consecutive slots
    /// from `srcs_first` as the sources: `srcs_first.index + i` was copied
    /// into `dests.slot(i)`. Same outcome, refusals and books as
    /// `adopt_copies` of those slots.
    ///
    /// Cost: when every source is an original (a region's frame caps) the
    /// copies are booked as one copy run (see *Copy runs* in [`CSpace`]):
    /// the sources and destinations are checked a word (64 slots) at a
    /// time and the run is booked in `O(log runs)`, with nothing per copy.
    /// When every source is a copy held by copy runs whose originals are
    /// consecutive, none an untyped's (a clone of a clone), the copies are
    /// the originals' children as much as copies of the originals would be
    /// (a frame cap's copy is not revocable): one copy run of the
    /// originals, `O(log runs)` per run met (the originals' types checked
    /// a word of slots at a time). Otherwise a record per copy, as with copy runs turned off.
    pub fn adopt_copies_run(&mut self, srcs_first: Slot, n: u64, dests: SlotRange) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        if n != dests.len {
            return Err(CapError::OutOfSlots { needed: n });
        }
        if n == 0 {
            // Nothing to check or book but the destinations' validity.
            return match self.reserved.first_missing(dests) {
                Some(d) => Err(CapError::NotReserved(d)),
                None => Ok(()),
            };
        }
        // A run of originals (the usual case: frames' caps) can be booked
        // as a copy run.
        let originals = match self.caps.find_originals_run(srcs_first, n) {
            Ok(originals) => originals,
            // Copies in runs whose originals are consecutive (a clone of a
            // clone): a copy of a copy is the original's child as much as a
            // copy of the original is, so it is the same run of copies of
            // the originals.
            Err(_) if let Some(orig) = self.originals_behind_runs(srcs_first, n) => {
                if let Some(d) = self.reserved.first_missing(dests) {
                    return Err(CapError::NotReserved(d));
                }
                self.reserved.remove_run(dests);
                let d = self.runs.key(dests.slot(0)).expect("reserved slots are level-2 slots");
                self.runs.insert(orig, d, n);
                self.copies += n;
                return Ok(());
            }
            Err(s) => {
                // Copies in runs are sources too (then booked per cap).
                if !self.materialise_dests(srcs_first, n) {
                    return Err(CapError::NotManaged(s));
                }
                self.caps.find_run(srcs_first, n).map_err(CapError::NotManaged)?;
                false
            }
        };
        if let Some(d) = self.reserved.first_missing(dests) {
            return Err(CapError::NotReserved(d));
        }
        self.reserved.remove_run(dests);
        match (
            originals && self.runs.enabled,
            self.runs.key(srcs_first),
            self.runs.key(dests.slot(0)),
        ) {
            (true, Some(s), Some(d)) => self.runs.insert(s, d, n),
            _ => self.caps.insert_copies_run(srcs_first, dests),
        }
        self.copies += n;
        Ok(())
    }

    /// If the `n > 0` slots from `first` are all copies held by copy runs
    /// (whole runs or parts of adjacent ones) whose sources are `n`
    /// consecutive originals in one CNode, none an untyped's (an untyped's
    /// copy is revocable, so a copy of it would be its child): the first
    /// original's key. O(1) per run met.
    fn originals_behind_runs(&self, first: Slot, n: u64) -> Option<u64> {
        if !self.runs.enabled || self.runs.is_empty() {
            return None;
        }
        let d0 = self.runs.key(first)?;
        // The first original, then each run met continuing it.
        let mut orig = None;
        let mut done = 0;
        while done < n {
            let (start, r) = self.runs.at_dest(d0 + done)?;
            let off = d0 + done - start;
            let first_orig = *orig.get_or_insert(r.src + off);
            if r.src + off != first_orig + done {
                return None;
            }
            done += (r.n - off).min(n - done);
        }
        let orig = orig?;
        // The originals stay in one CNode (runs never cross one).
        if (orig & (pow2(self.layout.l2_bits) - 1)) + n > pow2(self.layout.l2_bits) {
            return None;
        }
        // No untyped original: its copies would be revocable (checked a
        // word of slots at a time).
        (!self.caps.any_untyped_original(orig, n)).then_some(orig)
    }

    /// Records deletions the kernel already made outside [`KernelOps`] (a
    /// kernel extension that unmaps a run and deletes the caps that held it,
    /// such as `X86PageTable_UnmapRun` with its delete flag): every slot held
    /// a managed copy (not an original), and each is now free.
    ///
    /// Refused, with nothing recorded, if a slot holds no managed copy or
    /// holds an original. The books then match a loop of
    /// [`delete`](Self::delete).
    pub fn adopt_deletes(&mut self, slots: &[Slot]) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        // Marks each record seen; a slot named twice is refused after every
        // other check, naming the slot of the lowest-numbered record named
        // twice (records are renumbered only by adding and removing, and by
        // the materialising of copy runs: which of several slots named twice
        // is named is not specified).
        let mut bad = None;
        let mut dup: Option<(Idx, Slot)> = None;
        let mut seen = 0;
        self.materialise_missing(slots);
        for &s in slots {
            let Some(i) = self.caps.find(s) else {
                bad = Some(CapError::NotManaged(s));
                break;
            };
            let r = self.caps.get_mut(i);
            if r.parent == NIL {
                bad = Some(CapError::IsOriginal(s));
                break;
            }
            if r.mark {
                if dup.is_none_or(|(j, _)| i < j) {
                    dup = Some((i, s));
                }
            } else {
                r.mark = true;
            }
            seen += 1;
        }
        // Removing a record below clears its mark.
        if bad.is_some() || dup.is_some() {
            for &s in &slots[..seen] {
                let i = self.caps.find_known(s);
                self.caps.get_mut(i).mark = false;
            }
            return Err(bad.or(dup.map(|(_, s)| CapError::NotManaged(s))).expect("refused"));
        }
        self.forget_copies(slots);
        Ok(())
    }

    /// Books the deletion of the copies in `slots` (each named once, all
    /// checked since the table last changed), as `forget_copy` of each in
    /// turn would.
    fn forget_copies(&mut self, slots: &[Slot]) {
        // As `forget_copy` of each; consecutive slots of the manager's own
        // go back a run at a time.
        let mut run: Option<SlotRange> = None;
        let (slot_books, reserved) = (&mut self.slots, &mut self.reserved);
        self.caps.remove_copies(slots, |g| {
            if g.user_slot {
                reserved.insert(g.slot);
                return;
            }
            match &mut run {
                Some(r) if r.cnode == g.slot.cnode && r.start + r.len == g.slot.index => r.len += 1,
                _ => {
                    if let Some(r) = run.replace(one(g.slot)) {
                        slot_books.free_run(r).expect("slots were allocated");
                    }
                }
            }
        });
        if let Some(r) = run {
            self.slots.free_run(r).expect("slots were allocated");
        }
        self.copies -= slots.len() as u64;
    }

    /// [`adopt_deletes`](Self::adopt_deletes) of the `n` consecutive slots
    /// from `first` (`first.index + i` for `i < n`): the kernel deleted the
    /// managed copies in them (a kernel extension that unmaps a run and
    /// deletes the caps that held it, their slots a run such as
    /// [`adopt_copies_run`](Self::adopt_copies_run) filled). Same outcome,
    /// refusals and books as `adopt_deletes` of those slots, in that order:
    ///
    /// - refused, with nothing recorded, naming the first slot of the run
    ///   that holds no managed cap ([`CapError::NotManaged`]; slots past the
    ///   CNode's end hold none) or holds an original
    ///   ([`CapError::IsOriginal`]); [`CapError::Poisoned`] first;
    /// - the run names each slot once, so it has no duplicates to refuse;
    /// - `n == 0` does nothing.
    ///
    /// Each slot is then free again (the caller's again if it was reserved),
    /// so the next [`alloc_slots`](Self::alloc_slots) of the same length can
    /// take the run back.
    ///
    /// Cost: slots that copy runs hold exactly (whole runs or parts of
    /// adjacent runs, such as what
    /// [`adopt_copies_run`](Self::adopt_copies_run) booked for a region) are booked a run at a
    /// time (`O(log runs)` each, the runs cut at either end keeping their
    /// other parts) and freed a word at a time; otherwise the runs they
    /// meet are materialised and the slots are booked per cap.
    pub fn adopt_deletes_run(&mut self, first: Slot, n: u64) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        // Copies that runs hold exactly: dropped a run at a time.
        if !self.runs.is_empty() && self.forget_run_copies(first, n) {
            return Ok(());
        }
        if let Err((s, original)) = self.check_copies_run_rec(first, n) {
            return Err(if original {
                CapError::IsOriginal(s)
            } else {
                CapError::NotManaged(s)
            });
        }
        self.forget_copies_run(first, n);
        Ok(())
    }

    /// If the `n > 0` slots from `first` are exactly slots that copy runs
    /// hold (whole runs or parts of them), books their deletion, as
    /// [`forget_copies_run`](Self::forget_copies_run) of their records
    /// would: the runs go (cut runs keep their other parts), the slots are
    /// free again (no copy in a run is in a reserved slot). Whether it did.
    #[inline(never)]
    fn forget_run_copies(&mut self, first: Slot, n: u64) -> bool {
        let Some(d) = self.runs.key(first) else {
            return false;
        };
        if n == 0 || n > pow2(self.layout.l2_bits) - first.index || !self.runs.covers(d, n) {
            return false;
        }
        self.runs.remove_covered(d, n);
        let r = SlotRange {
            cnode: first.cnode,
            start: first.index,
            len: n,
        };
        self.slots.free_run(r).expect("slots were allocated");
        self.copies -= n;
        true
    }

    /// [`CapTable::find_run`], materialising the copy runs that hold any of
    /// the slots when some slot has no record.
    #[inline]
    fn find_run_rec(&mut self, first: Slot, n: u64) -> Result<(), Slot> {
        match self.caps.find_run(first, n) {
            Err(_) if self.materialise_dests(first, n) => self.caps.find_run(first, n),
            r => r,
        }
    }

    /// [`CapTable::check_copies_run`], materialising the copy runs that hold
    /// any of the slots when some slot has no record.
    #[inline]
    fn check_copies_run_rec(&mut self, first: Slot, n: u64) -> Result<(), (Slot, bool)> {
        match self.caps.check_copies_run(first, n) {
            Err(_) if self.materialise_dests(first, n) => self.caps.check_copies_run(first, n),
            r => r,
        }
    }

    /// Copies of the original in `slot` held in copy runs.
    #[inline]
    fn run_copies_of(&self, slot: Slot) -> u64 {
        if self.runs.is_empty() {
            return 0;
        }
        self.runs.key(slot).map_or(0, |s| self.runs.copies_of(s))
    }

    /// Books the deletion of the `n` copies in the consecutive slots from
    /// `first`, which [`CapTable::check_copies_run`] has accepted since the
    /// table last changed, as `forget_copy` of each in turn would (`n == 0`:
    /// nothing).
    fn forget_copies_run(&mut self, first: Slot, n: u64) {
        if n == 0 {
            return;
        }
        // As `forget_copy` of each; the manager's own slots go back a run at
        // a time (the stretches between reserved slots).
        let (slot_books, reserved) = (&mut self.slots, &mut self.reserved);
        let free = |slot_books: &mut SlotAllocator, from: u64, to: u64| {
            if to > from {
                let r = SlotRange {
                    cnode: first.cnode,
                    start: first.index + from,
                    len: to - from,
                };
                slot_books.free_run(r).expect("slots were allocated");
            }
        };
        let mut from = 0;
        self.caps.remove_copies_run(first, n, |j| {
            reserved.insert(Slot {
                cnode: first.cnode,
                index: first.index + j,
            });
            free(slot_books, from, j);
            from = j + 1;
        });
        free(&mut self.slots, from, n);
        self.copies -= n;
    }

    /// Copies the managed cap in `src` into the reserved slot `dest`.
    pub fn copy_to(&mut self, src: Slot, dest: Slot, rights: Rights) -> Result<(), CapError> {
        self.derive(src, Some(dest), rights, None).map(|_| ())
    }

    /// Mints a copy with `badge` (endpoints and notifications; for other
    /// caps only badge 0 is accepted) into a new slot.
    pub fn mint(&mut self, src: Slot, rights: Rights, badge: u64) -> Result<Slot, CapError> {
        self.derive(src, None, rights, Some(badge))
    }

    /// Mints into the reserved slot `dest`.
    pub fn mint_to(&mut self, src: Slot, dest: Slot, rights: Rights, badge: u64) -> Result<(), CapError> {
        self.derive(src, Some(dest), rights, Some(badge)).map(|_| ())
    }

    // Inlined into each caller, so that each gets its own specialised copy.
    #[inline(always)]
    fn derive(&mut self, src: Slot, dest: Option<Slot>, rights: Rights, badge: Option<u64>) -> Result<Slot, CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let si = self.find_rec(src).ok_or(CapError::NotManaged(src))?;
        let s = self.caps.get(si);
        let new_badge = match badge {
            Some(b) if s.ty.badgeable() => {
                if s.badge != 0 {
                    return Err(CapError::AlreadyBadged(src));
                }
                b
            }
            Some(b) if b != 0 => return Err(CapError::NotBadgeable(src)),
            _ => s.badge,
        };
        if let Some(d) = dest {
            if !self.reserved.contains(&d) {
                return Err(CapError::NotReserved(d));
            }
        }
        let mut tx = None;
        let d = match dest {
            Some(d) => d,
            None => match self.take_slot(&mut tx) {
                Ok(d) => d,
                Err(f) => return Err(self.fail_cap(tx.unwrap_or_default(), f)),
            },
        };
        // Both are slots of the layout: `src` holds a managed cap, `d` is a
        // reserved slot or was just taken.
        let (dp, sp) = (self.layout.known_path(d), self.layout.known_path(src));
        let r = match badge {
            None => self
                .kernel
                .cnode_copy(dp, sp, rights)
                .map_err(|e| Fail::Kernel(KernelOp::Copy, e)),
            Some(b) => self
                .kernel
                .cnode_mint(dp, sp, rights, CapData::Badge(b))
                .map_err(|e| Fail::Kernel(KernelOp::Mint, e)),
        };
        if let Err(f) = r {
            if dest.is_none() {
                // Taken last, so given back first.
                self.slots.free(d).expect("slot was taken");
            }
            return Err(self.fail_cap(tx.unwrap_or_default(), f));
        }
        self.record_copy(si, d, new_badge, dest.is_some());
        Ok(d)
    }

    /// Books a copy (badge `badge`) of the cap of record `si`, made by the
    /// kernel into slot `d` (a reserved slot if `user_slot`).
    #[inline(always)]
    fn record_copy(&mut self, si: Idx, d: Slot, badge: u64, user_slot: bool) {
        self.caps.insert_copy(si, d, badge, user_slot);
        if user_slot {
            self.reserved.remove(&d);
        }
        self.copies += 1;
    }

    fn fail_cap(&mut self, tx: Tx, f: Fail) -> CapError {
        self.rollback(tx);
        if self.poisoned {
            CapError::Poisoned
        } else {
            f.into()
        }
    }

    /// Moves the managed cap in `src` to the reserved slot `dest`
    /// (`CNode_Move`; derivation links follow it). `src` becomes free, or
    /// reserved again if it was a reserved slot.
    pub fn mv(&mut self, src: Slot, dest: Slot) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let i = self.find_rec(src).ok_or(CapError::NotManaged(src))?;
        // The runs copying it name it by its slot.
        self.materialise_sources(src);
        if !self.reserved.contains(&dest) {
            return Err(CapError::NotReserved(dest));
        }
        self.kernel
            .cnode_move(self.path(dest), self.path(src))
            .map_err(|error| CapError::Kernel {
                op: KernelOp::Move,
                error,
            })?;
        self.caps.relocate(i, src, dest);
        let rec = self.caps.get_mut(i);
        let (object, user_slot) = (rec.object, rec.user_slot);
        rec.user_slot = true;
        let o = self.objects.get_mut(&object).expect("object");
        if o.slot == src {
            o.slot = dest;
        }
        self.reserved.remove(&dest);
        self.vacate(src, user_slot);
        Ok(())
    }

    /// Deletes a copy (`CNode_Delete`); its own copies stay, re-attached to
    /// its parent as in the kernel. Originals are refused: use
    /// [`free`](Self::free).
    pub fn delete(&mut self, slot: Slot) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let i = self.find_rec(slot).ok_or(CapError::NotManaged(slot))?;
        if self.caps.get(i).parent == NIL {
            return Err(CapError::IsOriginal(slot));
        }
        self.kernel
            .cnode_delete(self.layout.known_path(slot))
            .map_err(|error| CapError::Kernel {
                op: KernelOp::Delete,
                error,
            })?;
        self.forget_copy(i);
        Ok(())
    }

    /// Deletes the copies in `slots`, in order: the outcome of
    /// [`delete`](Self::delete) of each in turn, stopping at the first
    /// failure, except that every slot is checked first.
    ///
    /// - *Refused* (nothing done, `deleted == 0`, every figure as before): a
    ///   slot holds no managed cap, or is named a second time
    ///   ([`CapError::NotManaged`]), or holds an original
    ///   ([`CapError::IsOriginal`]); the first such slot is named.
    /// - *Kernel failure*: a deletion cannot be undone, so if the kernel
    ///   refuses the delete of `slots[k]`, the copies `slots[..k]` stay
    ///   deleted (and booked so), the rest are untouched, and the error has
    ///   `deleted == k` and the kernel's error.
    ///
    /// Cost: when `slots` are stretches of consecutive slots in increasing
    /// order (such as the copies [`copy_many`](Self::copy_many) made), they
    /// are checked and booked a run at a time.
    pub fn delete_many(&mut self, slots: &[Slot]) -> Result<(), DeleteManyError> {
        let refused = |error| DeleteManyError { deleted: 0, error };
        if self.poisoned {
            return Err(refused(CapError::Poisoned));
        }
        // One cap: exactly `delete` (a failure of its only delete leaves
        // nothing deleted).
        if let [slot] = *slots {
            return self.delete_one(slot);
        }
        // Stretches of consecutive slots, in increasing order (so that no
        // slot is named twice), are checked and booked as runs.
        if let Some(parts) = stretches(slots).filter(|p| increasing(slots, p)) {
            return self.delete_stretches(slots, &parts);
        }
        self.delete_one_by_one(slots)
    }

    /// [`delete_many`](Self::delete_many) of one slot: [`delete`](Self::delete).
    fn delete_one(&mut self, slot: Slot) -> Result<(), DeleteManyError> {
        self.delete(slot).map_err(|error| DeleteManyError { deleted: 0, error })
    }

    /// [`delete_many`](Self::delete_many) of `slots` in general: each checked
    /// (marking the records seen, for slots named twice), then deleted and
    /// booked in turn.
    #[inline(never)]
    fn delete_one_by_one(&mut self, slots: &[Slot]) -> Result<(), DeleteManyError> {
        let refused = |error| DeleteManyError { deleted: 0, error };
        let mut recs = Vec::with_capacity(slots.len());
        let mut bad = None;
        self.materialise_missing(slots);
        for &s in slots {
            let Some(i) = self.caps.find(s) else {
                bad = Some(CapError::NotManaged(s));
                break;
            };
            let r = self.caps.get_mut(i);
            if r.mark {
                bad = Some(CapError::NotManaged(s));
                break;
            }
            if r.parent == NIL {
                bad = Some(CapError::IsOriginal(s));
                break;
            }
            r.mark = true;
            recs.push(i);
        }
        for &i in &recs {
            self.caps.get_mut(i).mark = false;
        }
        if let Some(e) = bad {
            return Err(refused(e));
        }
        for (k, (&s, &i)) in slots.iter().zip(&recs).enumerate() {
            if let Err(error) = self.kernel.cnode_delete(self.layout.known_path(s)) {
                return Err(DeleteManyError {
                    deleted: k,
                    error: CapError::Kernel {
                        op: KernelOp::Delete,
                        error,
                    },
                });
            }
            self.forget_copy(i);
        }
        Ok(())
    }

    /// [`delete_many`](Self::delete_many) of `slots`, in the stretches
    /// `parts` of consecutive slots, which name no slot twice: the stretches
    /// checked as runs, the kernel calls, then the books of the slots
    /// deleted in bulk (as `forget_copy` of each in turn would write them).
    fn delete_stretches(&mut self, slots: &[Slot], parts: &[(usize, usize)]) -> Result<(), DeleteManyError> {
        for &(o, len) in parts {
            if let Err((s, original)) = self.check_copies_run_rec(slots[o], len as u64) {
                let error = if original {
                    CapError::IsOriginal(s)
                } else {
                    CapError::NotManaged(s)
                };
                return Err(DeleteManyError { deleted: 0, error });
            }
        }
        for (t, &(o, len)) in parts.iter().enumerate() {
            // Within one CNode the paths of consecutive slots differ only by
            // their index (see `Layout::known_path`).
            let p0 = self.layout.known_path(slots[o]);
            for j in 0..len {
                let p = CapPath {
                    index: p0.index + j as u64,
                    ..p0
                };
                if let Err(error) = self.kernel.cnode_delete(p) {
                    for &(o, len) in &parts[..t] {
                        self.forget_copies_run(slots[o], len as u64);
                    }
                    self.forget_copies_run(slots[o], j as u64);
                    return Err(DeleteManyError {
                        deleted: o + j,
                        error: CapError::Kernel {
                            op: KernelOp::Delete,
                            error,
                        },
                    });
                }
            }
        }
        for &(o, len) in parts {
            self.forget_copies_run(slots[o], len as u64);
        }
        Ok(())
    }

    /// Revokes the managed cap in `slot` (`CNode_Revoke`): every cap derived
    /// from it is deleted; the cap itself stays.
    pub fn revoke(&mut self, slot: Slot) -> Result<(), CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let i = self.find_rec(slot).ok_or(CapError::NotManaged(slot))?;
        // The copies in runs of it are among those to delete.
        self.materialise_sources(slot);
        self.kernel
            .cnode_revoke(self.path(slot))
            .map_err(|error| CapError::Kernel {
                op: KernelOp::Revoke,
                error,
            })?;
        for rec in self.caps.take_descendants(i) {
            self.drop_copy(rec);
        }
        Ok(())
    }

    /// Books the deletion of copy `i`: its children go to its parent.
    #[inline(always)]
    fn forget_copy(&mut self, i: Idx) {
        self.caps.hand_children_to_parent(i);
        let rec = self.caps.remove(i);
        self.drop_copy(rec);
    }

    #[inline(always)]
    fn drop_copy(&mut self, rec: Gone) {
        self.caps.get_mut(rec.orig).copies -= 1;
        self.copies -= 1;
        self.vacate(rec.slot, rec.user_slot);
    }

    /// A slot whose cap is gone: back to the caller if it was theirs, else free.
    #[inline(always)]
    fn vacate(&mut self, slot: Slot, user_slot: bool) {
        if user_slot {
            self.reserved.insert(slot);
        } else {
            self.slots.free(slot).expect("slot was allocated");
        }
    }

    // -------------------------------------------------------------- machinery

    /// Books the copies of the run whose first destination key is `d` per
    /// cap, exactly as [`adopt_copies_run`](Self::adopt_copies_run) would
    /// have without runs, and forgets the run.
    #[cold]
    #[inline(never)]
    fn materialise(&mut self, d: u64) {
        let r = self.runs.remove(d);
        let (src, dests) = (self.runs.slot(r.src), self.runs.range(d, r.n));
        debug_assert_eq!(self.caps.find_originals_run(src, r.n), Ok(true));
        self.caps.insert_copies_run(src, dests);
    }

    /// Materialises the runs holding any of the `n` slots from `first`;
    /// whether there were any.
    #[inline]
    fn materialise_dests(&mut self, first: Slot, n: u64) -> bool {
        if self.runs.is_empty() || n == 0 {
            return false;
        }
        self.materialise_dests_slow(first, n)
    }

    #[cold]
    #[inline(never)]
    fn materialise_dests_slow(&mut self, first: Slot, n: u64) -> bool {
        let Some(d) = self.runs.key(first) else {
            return false;
        };
        // Within the CNode.
        let n = n.min(pow2(self.layout.l2_bits) - first.index);
        let ds: Vec<u64> = self.runs.overlapping(d, n).collect();
        for &d in &ds {
            self.materialise(d);
        }
        !ds.is_empty()
    }

    /// Materialises the runs that copy the cap in `slot`.
    #[inline]
    fn materialise_sources(&mut self, slot: Slot) {
        if !self.runs.is_empty() {
            self.materialise_sources_slow(slot);
        }
    }

    #[cold]
    #[inline(never)]
    fn materialise_sources_slow(&mut self, slot: Slot) {
        let Some(s) = self.runs.key(slot) else { return };
        let ds: Vec<u64> = self.runs.copying(s).collect();
        for d in ds {
            self.materialise(d);
        }
    }

    /// Materialises the runs that hold any of `slots`.
    #[inline(always)]
    fn materialise_missing(&mut self, slots: &[Slot]) {
        if !self.runs.is_empty() {
            self.materialise_missing_slow(slots);
        }
    }

    #[cold]
    #[inline(never)]
    fn materialise_missing_slow(&mut self, slots: &[Slot]) {
        for &s in slots {
            if self.caps.find(s).is_none() {
                self.materialise_dests(s, 1);
            }
        }
    }

    /// The record of the cap in `slot`, materialising the run that holds it
    /// if a run does.
    #[inline(always)]
    fn find_rec(&mut self, slot: Slot) -> Option<Idx> {
        match self.caps.find(slot) {
            Some(i) => Some(i),
            None if self.runs.is_empty() => None,
            None => self.find_rec_slow(slot),
        }
    }

    #[cold]
    #[inline(never)]
    fn find_rec_slow(&mut self, slot: Slot) -> Option<Idx> {
        self.materialise_dests(slot, 1);
        self.caps.find(slot)
    }

    /// One free slot for a new cap, growing the CSpace first when only the
    /// growth reserve is left (as [`acquire`](Self::acquire) of one slot
    /// would). Growth, if any, is logged in `tx` (made if needed); the slot
    /// itself is not: on failure the caller gives it back before rolling
    /// `tx` back.
    #[inline(always)]
    fn take_slot(&mut self, tx: &mut Option<Tx>) -> Result<Slot, Fail> {
        if self.slots.free_count() > self.reserve {
            return Ok(self.slots.alloc().expect("a free slot exists"));
        }
        self.take_slot_growing(tx.get_or_insert_with(Tx::default))
    }

    #[cold]
    fn take_slot_growing(&mut self, tx: &mut Tx) -> Result<Slot, Fail> {
        let runs = self.acquire(tx, &|_| Some(vec![1]))?;
        let taken = tx.log.pop();
        debug_assert!(matches!(taken, Some(Undo::FreeRun(r)) if r == runs[0]));
        Ok(runs[0].slot(0))
    }

    /// A run of `n` free slots of one CNode, if there is one without growing
    /// or using the growth reserve (not logged).
    fn take_run(&mut self, n: u64) -> Option<SlotRange> {
        if self.slots.free_count() < n.saturating_add(self.reserve) {
            return None;
        }
        self.slots.alloc_run(n).ok()
    }

    /// Takes runs of free slots of the lengths `lens_of` gives (`None`: no
    /// memory), growing the CSpace first when fewer than the growth reserve
    /// would remain or no run fits.
    fn acquire(
        &mut self,
        tx: &mut Tx,
        lens_of: &dyn Fn(&UntypedAllocator) -> Option<Vec<u64>>,
    ) -> Result<Vec<SlotRange>, Fail> {
        let mut grown = 0;
        loop {
            let lens = lens_of(&self.ut).ok_or(Fail::NoMemory)?;
            let need: u64 = lens.iter().sum();
            let longest = lens.iter().copied().max().unwrap_or(0);
            if self.slots.free_count() >= need + self.reserve || grown > 0 {
                if let Some(runs) = self.try_runs(&lens) {
                    tx.log.extend(runs.iter().map(|r| Undo::FreeRun(*r)));
                    return Ok(runs);
                }
            }
            if grown >= 2 {
                return Err(Fail::NoSlots(longest));
            }
            match self.grow(tx) {
                Ok(()) => grown += 1,
                Err(Fail::Kernel(op, e)) => return Err(Fail::Kernel(op, e)),
                Err(_) => {
                    // Cannot grow: use the reserve.
                    let lens = lens_of(&self.ut).ok_or(Fail::NoMemory)?;
                    return match self.try_runs(&lens) {
                        Some(runs) => {
                            tx.log.extend(runs.iter().map(|r| Undo::FreeRun(*r)));
                            Ok(runs)
                        }
                        None => Err(Fail::NoSlots(longest)),
                    };
                }
            }
        }
    }

    /// Takes all the runs, or none.
    fn try_runs(&mut self, lens: &[u64]) -> Option<Vec<SlotRange>> {
        let mut got = Vec::with_capacity(lens.len());
        for &n in lens {
            match self.slots.alloc_run(n) {
                Ok(r) => got.push(r),
                Err(SlotError::Exhausted { .. }) | Err(_) => {
                    for r in got {
                        self.slots.free_run(r).expect("just taken");
                    }
                    return None;
                }
            }
        }
        Some(got)
    }

    /// Plans a fresh-RAM request and takes the slots its splits need (no
    /// growth).
    fn try_plan_slots(&mut self, req: &Request) -> Option<Vec<Slot>> {
        let plan = self.ut.plan(req)?;
        let lens = split_slots(&self.ut, &plan);
        self.try_runs(&lens).map(|r| singles(&r))
    }

    /// Adds a level-2 CNode: made from a fresh RAM piece (so that undoing it
    /// restores the untyped exactly) into the first free L1 slot.
    fn grow(&mut self, tx: &mut Tx) -> Result<(), Fail> {
        let k = self.slots.first_unused_index();
        if k as u64 >= self.layout.max_level2() {
            return Err(Fail::NoSlots(1));
        }
        let obj_bits = self.layout.l2_bits + crate::types::SLOT_BITS;
        let req = fresh_ram(obj_bits);
        let slots = self.try_plan_slots(&req).ok_or(Fail::NoSlots(1))?;
        tx.log.extend(slots.iter().map(|s| Undo::FreeRun(one(*s))));
        let plan = self.ut.plan(&req).expect("planned");
        let host = self.exec_splits(&plan, &slots, tx)?;
        let l1_slot = Slot {
            cnode: CNodeRef::Level1,
            index: k as u64,
        };
        let dest = self.layout.retype_dest(SlotRange {
            cnode: CNodeRef::Level1,
            start: k as u64,
            len: 1,
        });
        let old = self.ut.node(host).expect("host").state.clone();
        self.kernel
            .untyped_retype(
                self.node_cptr(host),
                ObjectType::CNode,
                self.layout.l2_bits,
                dest.expect("valid"),
            )
            .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
        self.ut.apply_alloc(host, obj_bits, 1);
        tx.log.push(Undo::Restore(host, old));
        tx.log.push(Undo::DeleteCaps(vec![self.path(l1_slot)]));
        self.slots.add_cnode(k).expect("unused index");
        self.l2.insert(k, InternalCNode { node: host, obj_bits });
        tx.log.push(Undo::RemoveLevel2(k));
        Ok(())
    }

    /// Performs a plan's splits, one retype per child (so that the children
    /// need single free slots, not runs), into `slots` in order; returns the
    /// host.
    fn exec_splits(&mut self, plan: &crate::untyped::Plan, slots: &[Slot], tx: &mut Tx) -> Result<NodeId, Fail> {
        let mut id = plan.start;
        let mut next = 0;
        for &kid_bits in &plan.splits {
            let n = UntypedAllocator::kids_of(self.ut.node(id).expect("node").size_bits, kid_bits) as usize;
            let kid_slots = &slots[next..next + n];
            next += n;
            for &s in kid_slots {
                let dest = self.layout.retype_dest(one(s)).expect("valid slot");
                self.kernel
                    .untyped_retype(self.node_cptr(id), ObjectType::Untyped, kid_bits, dest)
                    .map_err(|e| Fail::Kernel(KernelOp::Retype, e))?;
                tx.log.push(Undo::DeleteCaps(vec![self.path(s)]));
            }
            let kid = self.ut.apply_split(id, kid_bits, kid_slots, plan.paddr);
            tx.log.push(Undo::Merge(id));
            id = kid;
        }
        Ok(id)
    }

    /// Undoes a failed operation, last step first. A kernel delete that keeps
    /// failing poisons the manager.
    fn rollback(&mut self, tx: Tx) {
        for u in tx.log.into_iter().rev() {
            match u {
                Undo::FreeRun(r) => self.slots.free_run(r).expect("run was taken"),
                Undo::DeleteCaps(paths) => {
                    for p in paths.into_iter().rev() {
                        if !(0..UNDO_TRIES).any(|_| self.kernel.cnode_delete(p).is_ok()) {
                            self.poisoned = true;
                        }
                    }
                }
                Undo::Merge(id) => {
                    self.ut.merge(id);
                }
                Undo::Restore(id, st) => self.ut.restore(id, st),
                Undo::RemoveLevel2(k) => {
                    self.slots.remove_cnode(k).expect("new CNode is empty");
                    self.l2.remove(&k);
                }
            }
        }
    }
}

impl<K: KernelOps> CSpace<K> {
    /// Checks the cap books' invariants (see [`CSpace`]; public so that a
    /// manager can audit them on the real kernel too): those of the cap
    /// table, of the copy runs' indices, and between them and the slot
    /// books: a run's sources hold originals; its destinations hold no
    /// record and are neither free nor reserved; no reserved slot holds a
    /// record; `copies` counts the copies with records and in runs.
    pub fn check_books(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        self.caps.check()?;
        self.runs.check()?;
        for (d, r) in self.runs.iter() {
            for j in 0..r.n {
                let (src, dest) = (self.runs.slot(r.src + j), self.runs.slot(d + j));
                match self.caps.find(src) {
                    Some(i) if self.caps.get(i).parent == NIL => {}
                    _ => return Err(format!("run at {dest:?}: source {src:?} is not an original")),
                }
                if self.caps.find(dest).is_some() {
                    return Err(format!("run slot {dest:?} has a record"));
                }
                if self.slots.is_free(dest) || self.reserved.contains(&dest) {
                    return Err(format!("run slot {dest:?} is free or reserved"));
                }
                if !self.slots.has_cnode(match dest.cnode {
                    CNodeRef::Level2(k) => k,
                    CNodeRef::Level1 => u32::MAX,
                }) {
                    return Err(format!("run slot {dest:?} is not a managed slot"));
                }
            }
        }
        if let Some(s) = self.reserved.iter().find(|&s| self.caps.find(s).is_some()) {
            return Err(format!("reserved slot {s:?} holds a record"));
        }
        let with_records = self.caps.iter().filter(|r| r.parent != NIL).count() as u64;
        if self.copies != with_records + self.runs.copies() {
            return Err(format!(
                "{} copies counted, {with_records} with records, {} in runs",
                self.copies,
                self.runs.copies()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
impl<K: KernelOps> CSpace<K> {
    /// Whether the cap, slot and reserved-slot books of the two managers
    /// are the same, down to the arena indices, the vacant list and the
    /// allocator's hints (so that every later call behaves the same).
    pub(crate) fn same_cap_books(&self, other: &Self) -> bool {
        self.caps == other.caps
            && self.runs == other.runs
            && self.slots == other.slots
            && self.reserved == other.reserved
            && self.copies == other.copies
            && self.poisoned == other.poisoned
    }

    /// The cap books as the kernel would see them, whatever the
    /// representation (records or copy runs, arena indices, children's
    /// order), in slot order: each cap's slot, object, type, original's
    /// slot, parent's slot, children's slots (sorted), copies (originals:
    /// with those in runs), revocable, badge, and whether its slot is a
    /// reserved slot.
    #[allow(clippy::type_complexity)]
    pub(crate) fn cap_view(
        &self,
    ) -> Vec<(
        Slot,
        ObjectId,
        ObjectType,
        Slot,
        Option<Slot>,
        Vec<Slot>,
        u64,
        bool,
        u64,
        bool,
    )> {
        use alloc::collections::BTreeMap;
        let mut view = BTreeMap::new();
        let slot_of = |i: Idx| self.caps.get(i).slot;
        for r in self.caps.iter() {
            let parent = (r.parent != NIL).then(|| slot_of(r.parent));
            let copies = r.copies + self.run_copies_of(r.slot);
            let row = (
                r.object,
                r.ty,
                slot_of(r.orig),
                parent,
                Vec::new(),
                copies,
                r.revocable,
                r.badge,
                r.user_slot,
            );
            view.insert(r.slot, row);
        }
        for (d, run) in self.runs.iter() {
            for j in 0..run.n {
                let src = self.runs.slot(run.src + j);
                let s = self.caps.get(self.caps.find_known(src));
                let revocable = s.ty == ObjectType::Untyped;
                let row = (s.object, s.ty, src, Some(src), Vec::new(), 0, revocable, s.badge, false);
                view.insert(self.runs.slot(d + j), row);
            }
        }
        let kids: Vec<(Slot, Slot)> = view.iter().filter_map(|(&s, row)| row.3.map(|p| (p, s))).collect();
        for (p, c) in kids {
            view.get_mut(&p).expect("parent").4.push(c);
        }
        view.into_iter()
            .map(|(s, (o, t, orig, p, mut kids, c, rv, b, u))| {
                kids.sort();
                (s, o, t, orig, p, kids, c, rv, b, u)
            })
            .collect()
    }

    /// The copy runs: first source slot and destination slots, in
    /// destination order.
    pub(crate) fn copy_run_list(&self) -> Vec<(Slot, SlotRange)> {
        self.runs
            .iter()
            .map(|(d, r)| (self.runs.slot(r.src), self.runs.range(d, r.n)))
            .collect()
    }

    /// Whether the two managers' cap, slot and reserved-slot books say the
    /// same (see [`cap_view`](Self::cap_view)), whatever their
    /// representation.
    pub(crate) fn same_books_as_seen(&self, other: &Self) -> bool {
        self.cap_view() == other.cap_view()
            && self.slots == other.slots
            && self.reserved == other.reserved
            && self.copies == other.copies
            && self.poisoned == other.poisoned
    }

    /// The per-cap [`copy_many`](Self::copy_many) this crate had before the
    /// batched paths (the reference the tests compare with).
    pub(crate) fn copy_many_ref(&mut self, srcs: &[Slot], rights: Rights) -> Result<Vec<Slot>, CapError> {
        if self.poisoned {
            return Err(CapError::Poisoned);
        }
        let mut recs = Vec::with_capacity(srcs.len());
        for &s in srcs {
            recs.push(self.find_rec(s).ok_or(CapError::NotManaged(s))?);
        }
        if srcs.is_empty() {
            return Ok(Vec::new());
        }
        let n = srcs.len() as u64;
        let mut tx = Tx::default();
        let dests: Vec<Slot> = match self.take_run(n) {
            Some(run) => {
                tx.log.push(Undo::FreeRun(run));
                run.iter().collect()
            }
            None => {
                let mut v = Vec::with_capacity(srcs.len());
                for _ in 0..n {
                    let mut grown = None;
                    let r = self.take_slot(&mut grown);
                    if let Some(g) = grown {
                        tx.log.extend(g.log);
                    }
                    match r {
                        Ok(d) => {
                            tx.log.push(Undo::FreeRun(one(d)));
                            v.push(d);
                        }
                        Err(f) => {
                            return Err(match self.fail_cap(tx, f) {
                                CapError::OutOfSlots { .. } => CapError::OutOfSlots { needed: n },
                                e => e,
                            })
                        }
                    }
                }
                v
            }
        };
        for (k, (&s, &d)) in srcs.iter().zip(&dests).enumerate() {
            let (dp, sp) = (self.layout.known_path(d), self.layout.known_path(s));
            if let Err(e) = self.kernel.cnode_copy(dp, sp, rights) {
                let made = dests[..k].iter().map(|&d| self.path(d)).collect();
                tx.log.push(Undo::DeleteCaps(made));
                return Err(self.fail_cap(tx, Fail::Kernel(KernelOp::Copy, e)));
            }
        }
        for (&si, &d) in recs.iter().zip(&dests) {
            let badge = self.caps.get(si).badge;
            self.record_copy(si, d, badge, false);
        }
        Ok(dests)
    }

    /// The per-cap [`delete_many`](Self::delete_many) this crate had before
    /// the batched paths (the reference the tests compare with).
    pub(crate) fn delete_many_ref(&mut self, slots: &[Slot]) -> Result<(), DeleteManyError> {
        let refused = |error| DeleteManyError { deleted: 0, error };
        if self.poisoned {
            return Err(refused(CapError::Poisoned));
        }
        let mut recs = Vec::with_capacity(slots.len());
        let mut bad = None;
        self.materialise_missing(slots);
        for &s in slots {
            let Some(i) = self.caps.find(s) else {
                bad = Some(CapError::NotManaged(s));
                break;
            };
            let r = self.caps.get_mut(i);
            if r.mark {
                bad = Some(CapError::NotManaged(s));
                break;
            }
            if r.parent == NIL {
                bad = Some(CapError::IsOriginal(s));
                break;
            }
            r.mark = true;
            recs.push(i);
        }
        for &i in &recs {
            self.caps.get_mut(i).mark = false;
        }
        if let Some(e) = bad {
            return Err(refused(e));
        }
        for (k, (&s, &i)) in slots.iter().zip(&recs).enumerate() {
            if let Err(error) = self.kernel.cnode_delete(self.layout.known_path(s)) {
                return Err(DeleteManyError {
                    deleted: k,
                    error: CapError::Kernel {
                        op: KernelOp::Delete,
                        error,
                    },
                });
            }
            self.forget_copy(i);
        }
        Ok(())
    }

    /// Whether the managed cap in `slot` has caps derived from it.
    pub(crate) fn has_derived(&self, slot: Slot) -> bool {
        self.caps
            .find(slot)
            .is_some_and(|i| self.caps.get(i).first_child != NIL || self.run_copies_of(slot) > 0)
    }
}

/// The stretches of consecutive slots of one CNode in `slots` (`slots[o +
/// j]` is `slots[o]` plus `j`, without wrapping), as (offset, length), in order; `None` when
/// they are too short on average to be worth handling as runs
/// ([`few_stretches`]: fewer than `MIN_STRETCH_AVERAGE` slots per stretch).
fn stretches(slots: &[Slot]) -> Option<Parts> {
    if slots.is_empty() {
        return Some(Parts::Inline(0, [(0, 0); PARTS_INLINE]));
    }
    // The usual case first: all of them one stretch (no bookkeeping).
    let len = stretch_len(slots, 0);
    if len == slots.len() {
        return Some(Parts::One([(0, len)]));
    }
    let mut parts = Parts::Inline(1, [(0, len); PARTS_INLINE]);
    let mut o = len;
    while o < slots.len() {
        // Too many for the batch's length (one more would not be worth it),
        // or (early, to give up cheaply) the first ones mostly single slots.
        if !few_stretches(parts.len() + 1, slots.len()) || (parts.len() == 8 && o < 16) {
            return None;
        }
        let len = stretch_len(slots, o);
        parts.push((o, len));
        o += len;
    }
    Some(parts)
}

/// The length of the stretch of consecutive slots of one CNode in `slots`
/// from `slots[o]` (`o < slots.len()`).
#[inline(always)]
fn stretch_len(slots: &[Slot], o: usize) -> usize {
    let first = slots[o];
    // At most as many as fit below the end of the index space (so that the
    // indices below do not wrap).
    let room = usize::try_from(u64::MAX - first.index).unwrap_or(usize::MAX);
    let rest = &slots[o + 1..];
    let rest = &rest[..rest.len().min(room)];
    let mut len = 1;
    let mut index = first.index;
    for s in rest {
        index += 1;
        if s.index != index || s.cnode != first.cnode {
            break;
        }
        len += 1;
    }
    len
}

/// Stretches found by [`stretches`], kept inline when few, so that a small
/// batch allocates nothing.
enum Parts {
    /// The whole batch is one stretch.
    One([(usize, usize); 1]),
    Inline(usize, [(usize, usize); PARTS_INLINE]),
    Heap(Vec<(usize, usize)>),
}

/// Stretches [`Parts`] keeps without allocating.
const PARTS_INLINE: usize = 4;

impl Parts {
    #[inline]
    fn push(&mut self, part: (usize, usize)) {
        match self {
            Parts::Inline(n, a) if *n < PARTS_INLINE => {
                a[*n] = part;
                *n += 1;
            }
            Parts::Heap(v) => v.push(part),
            _ => {
                let mut v = Vec::with_capacity(4 * PARTS_INLINE);
                v.extend_from_slice(self);
                v.push(part);
                *self = Parts::Heap(v);
            }
        }
    }
}

impl core::ops::Deref for Parts {
    type Target = [(usize, usize)];

    #[inline]
    fn deref(&self) -> &[(usize, usize)] {
        match self {
            Parts::One(a) => a,
            Parts::Inline(n, a) => &a[..*n],
            Parts::Heap(v) => v,
        }
    }
}

/// Whether the stretches `parts` of `slots` (see [`stretches`]) come in
/// increasing slot order, each after the last slot of the one before (so
/// that no slot is named twice).
fn increasing(slots: &[Slot], parts: &[(usize, usize)]) -> bool {
    parts.windows(2).all(|w| slots[w[0].0 + w[0].1 - 1] < slots[w[1].0])
}

/// The slot needs of a plan's splits: one single slot per child.
fn split_slots(ut: &UntypedAllocator, plan: &crate::untyped::Plan) -> Vec<u64> {
    ut.split_kids(plan)
        .iter()
        .flat_map(|&n| core::iter::repeat_n(1, n as usize))
        .collect()
}

/// The first slot of each run.
fn singles(runs: &[SlotRange]) -> Vec<Slot> {
    runs.iter().map(|r| r.slot(0)).collect()
}

/// A run of one slot.
fn one(s: Slot) -> SlotRange {
    SlotRange {
        cnode: s.cnode,
        start: s.index,
        len: 1,
    }
}

/// A request for one object of `obj_bits` from fresh RAM.
fn fresh_ram(obj_bits: u8) -> Request {
    Request {
        obj_bits,
        count: 1,
        lo: 0,
        hi: u64::MAX,
        ram: true,
        device: false,
        fresh_only: true,
    }
}

const _: () = assert!(WORD_BITS == 64);

#[cfg(test)]
mod stretch_tests {
    use super::*;

    fn s(k: u32, index: u64) -> Slot {
        Slot {
            cnode: CNodeRef::Level2(k),
            index,
        }
    }

    fn run(k: u32, from: u64, n: u64) -> Vec<Slot> {
        (from..from + n).map(|i| s(k, i)).collect()
    }

    /// As `stretches` was first written: one growing vector (and the
    /// threshold written out: 8 slots per stretch on average).
    fn reference(slots: &[Slot]) -> Option<Vec<(usize, usize)>> {
        let mut parts = Vec::new();
        let mut o = 0;
        while o < slots.len() {
            if (!parts.is_empty() && (parts.len() + 1) * 8 > slots.len()) || (parts.len() == 8 && o < 16) {
                return None;
            }
            let mut len = 1;
            while o + len < slots.len()
                && slots[o + len].cnode == slots[o].cnode
                && slots[o].index.checked_add(len as u64) == Some(slots[o + len].index)
            {
                len += 1;
            }
            parts.push((o, len));
            o += len;
        }
        Some(parts)
    }

    fn check(slots: &[Slot]) -> Option<Vec<(usize, usize)>> {
        let got = stretches(slots).map(|p| p.to_vec());
        assert_eq!(got, reference(slots), "{slots:?}");
        got
    }

    #[test]
    fn empty_one_and_few() {
        assert_eq!(check(&[]), Some(vec![]));
        assert_eq!(check(&[s(1, 5)]), Some(vec![(0, 1)]));
        assert_eq!(check(&run(1, 5, 16)), Some(vec![(0, 16)]));
        // Another CNode, or a gap, ends a stretch.
        let mut v = run(1, 5, 12);
        v.extend(run(2, 17, 4));
        assert_eq!(check(&v), Some(vec![(0, 12), (12, 4)]));
        let mut v = run(1, 5, 12);
        v.extend(run(1, 18, 4));
        assert_eq!(check(&v), Some(vec![(0, 12), (12, 4)]));
        // Too many for their length.
        assert_eq!(check(&[s(1, 5), s(1, 7)]), None);
        // The index space's end ends a stretch.
        assert_eq!(check(&[s(1, u64::MAX), s(1, 0)]), None);
        let v = [s(1, u64::MAX - 1), s(1, u64::MAX)];
        assert_eq!(check(&v), Some(vec![(0, 2)]));
    }

    #[test]
    fn more_stretches_than_kept_inline() {
        // 6 stretches of 8 (past the inline ones), then 7 and 9.
        for count in [PARTS_INLINE, PARTS_INLINE + 1, 6, 7, 9] {
            let v: Vec<Slot> = (0..count as u64).flat_map(|t| run(1, t * 100, 8)).collect();
            let want: Vec<_> = (0..count).map(|t| (t * 8, 8)).collect();
            assert_eq!(check(&v), Some(want));
        }
        // Mostly single slots: given up.
        let v: Vec<Slot> = (0..64).map(|t| s(1, t * 2)).collect();
        assert_eq!(check(&v), None);
    }

    proptest::proptest! {
        #[test]
        fn as_the_reference(pieces in proptest::collection::vec((0u32..3, 0u64..64, 1u64..20), 0..12)) {
            let v: Vec<Slot> = pieces.iter().flat_map(|&(k, from, n)| run(k, from, n)).collect();
            check(&v);
        }
    }
}
