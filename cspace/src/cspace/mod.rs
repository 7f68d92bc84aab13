//! The combined manager: slots, untyped memory and capability operations,
//! driving the kernel through [`KernelOps`] and keeping the books exact.
//!
//! [`CSpace`] is one type whose `impl` is split by concern:
//! - this module: the configuration, the records, the type itself (its invariants and *Copy runs*), set-up;
//! - `figures`: the figures and read-only queries;
//! - `allocation`: objects from untyped memory, freeing, empty slots handed out;
//! - `caps`: copy, mint, move, delete, revoke;
//! - `adopt`: booking what a kernel extension did a run at a time;
//! - `runs`: copy runs, the materialise sites, stretches of consecutive slots;
//! - `growth`: slots for a request, growth, splits, rollback;
//! - `check`: the books' audit;
//! - `error`: the public errors.

mod adopt;
mod allocation;
mod caps;
mod check;
mod error;
mod figures;
mod growth;
mod runs;

pub use error::{AllocError, CapError, DeleteManyError, FreeError, InitError};

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use hashbrown::HashMap;

use crate::captable::CapTable;
use crate::copyruns::CopyRuns;
use crate::kernel::{KernelOp, KernelOps};
use crate::layout::{CNodeRef, CapPath, Layout, Slot, SlotRange};
use crate::reserved::Reserved;
use crate::slots::SlotAllocator;
use crate::types::{pow2, CPtr, CapData, KernelError, ObjectType, Rights, WORD_BITS};
use crate::untyped::{BootUntyped, MemStats, NodeId, NodeState, UntypedAllocator};

use growth::{fresh_ram, one};

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
}

const _: () = assert!(WORD_BITS == 64);
