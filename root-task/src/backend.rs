//! The seL4-facing layer: the memory manager's one kernel trait,
//! [`memory_manager::Kernel`] (with cspace's `KernelOps`), implemented with
//! one invocation each through the generated `sel4` crate. Nothing else in
//! the manager reaches the kernel.
//!
//! The seL4-free crates name object types with cspace's enum and capability
//! pointers, rights and errors with the vocabulary they share (`mm-types`:
//! `CPtr`, `Rights`, `KernelError`); here, and only here, they become the
//! kernel build's numbers and the `sel4` crate's types
//! (`sel4::object_type`, `sel4::CPtr`, `sel4::CapRights`, `sel4::Error`):
//! [`kernel_error`], [`cap_rights`], [`map_rights`], [`sel4_cptr`]. The
//! crates' size tables are checked against the kernel tree's at compile
//! time.

use cspace::{CPtr as CsCPtr, CapData as CsCapData, CapPath, KernelError, KernelOps, ObjectType, RetypeDest, Rights};
use memory_manager::Phase;
#[cfg(sel4_batched_leaf)]
use memory_manager::RunRefusal;
use sel4::{cap, cap_type, init, object_type, size_bits, Cap, CapData, CapRights, Error, VmAttributes, Word};
use vspace::{CacheAttr, FrameSize, TableLevel};

use crate::manager::Manager;
use core::sync::atomic::{AtomicBool, Ordering};

// The seL4-free crates carry object sizes of their own; they must be the
// kernel tree's (libsel4's seL4_*Bits, read by the kernel build).
const fn b(t: ObjectType) -> usize {
    match t.fixed_bits() {
        Some(b) => b as usize,
        None => 0,
    }
}
const _: () = {
    assert!(b(ObjectType::Tcb) == size_bits::TCB);
    assert!(b(ObjectType::Endpoint) == size_bits::ENDPOINT);
    assert!(b(ObjectType::Notification) == size_bits::NOTIFICATION);
    assert!(b(ObjectType::Frame4K) == size_bits::PAGE);
    assert!(b(ObjectType::Frame2M) == size_bits::LARGE_PAGE);
    assert!(b(ObjectType::Frame1G) == size_bits::HUGE_PAGE);
    assert!(b(ObjectType::PageTable) == size_bits::PAGE_TABLE);
    assert!(b(ObjectType::PageDirectory) == size_bits::PAGE_DIRECTORY);
    assert!(b(ObjectType::Pdpt) == size_bits::PDPT);
    assert!(b(ObjectType::Pml4) == size_bits::PML4);
    assert!(cspace::types::SLOT_BITS as usize == size_bits::SLOT);
    assert!(cspace::types::WORD_BITS == sel4::WORD_BITS);
    assert!(cspace::types::MIN_UNTYPED_BITS as usize == size_bits::MIN_UNTYPED);
    assert!(cspace::types::MAX_UNTYPED_BITS as usize == size_bits::MAX_UNTYPED);
    assert!(cspace::types::RETYPE_FAN_OUT_LIMIT as usize == sel4_config::RETYPE_FAN_OUT_LIMIT);
    assert!(FrameSize::Small.bits() as usize == size_bits::PAGE);
    assert!(FrameSize::Large.bits() as usize == size_bits::LARGE_PAGE);
    assert!(FrameSize::Huge.bits() as usize == size_bits::HUGE_PAGE);
};

/// The kernel's number for an object type.
pub const fn object_type_number(t: ObjectType) -> Word {
    match t {
        ObjectType::Untyped => object_type::UntypedObject,
        ObjectType::Tcb => object_type::TCBObject,
        ObjectType::Endpoint => object_type::EndpointObject,
        ObjectType::Notification => object_type::NotificationObject,
        ObjectType::CNode => object_type::CapTableObject,
        ObjectType::Frame4K => object_type::X86_4K,
        ObjectType::Frame2M => object_type::X86_LargePageObject,
        ObjectType::Frame1G => object_type::X64_HugePageObject,
        ObjectType::PageTable => object_type::X86_PageTableObject,
        ObjectType::PageDirectory => object_type::X86_PageDirectoryObject,
        ObjectType::Pdpt => object_type::X86_PDPTObject,
        ObjectType::Pml4 => object_type::X64_PML4Object,
    }
}

/// `sel4::Error` as the manager's crates name it.
pub fn kernel_error(e: Error) -> KernelError {
    match e {
        Error::InvalidArgument => KernelError::InvalidArgument,
        Error::InvalidCapability => KernelError::InvalidCapability,
        Error::IllegalOperation => KernelError::IllegalOperation,
        Error::RangeError => KernelError::RangeError,
        Error::AlignmentError => KernelError::AlignmentError,
        Error::FailedLookup => KernelError::FailedLookup,
        Error::TruncatedMessage => KernelError::TruncatedMessage,
        Error::DeleteFirst => KernelError::DeleteFirst,
        Error::RevokeFirst => KernelError::RevokeFirst,
        Error::NotEnoughMemory => KernelError::NotEnoughMemory,
    }
}

/// A kernel invocation, timed as [`Phase::Kernel`] when phases are on.
#[inline(always)]
pub fn kernel<R>(f: impl FnOnce() -> R) -> R {
    crate::phases::nested(Phase::Kernel, f)
}

/// A run invocation: timed like [`kernel`], and counted (see [`run_calls`]).
#[cfg(sel4_batched_leaf)]
#[inline(always)]
pub fn run_kernel<R>(f: impl FnOnce() -> R) -> R {
    RUN_CALLS.fetch_add(1, Ordering::Relaxed);
    kernel(f)
}

static RUN_CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How many run invocations the manager has made (checks use it to tell
/// which path ran).
#[cfg_attr(not(sel4_batched_leaf), allow(dead_code))]
pub fn run_calls() -> u64 {
    RUN_CALLS.load(Ordering::Relaxed)
}

fn cnode(c: CsCPtr) -> cap::CNode {
    Cap::from_bits(c.0)
}

/// The rights of a capability operation (copy, mint) as seL4 rights: read,
/// write and grant (seL4 5.0 has no execute right: `EXECUTE` is dropped).
pub fn cap_rights(r: Rights) -> CapRights {
    CapRights {
        read: r.contains(Rights::READ),
        write: r.contains(Rights::WRITE),
        grant: r.contains(Rights::GRANT),
    }
}

/// The rights of a mapping as seL4 rights: read and write (mappings never
/// carry grant, and seL4 5.0's x86 mappings have no execute bit).
pub fn map_rights(r: Rights) -> CapRights {
    CapRights {
        read: r.contains(Rights::READ),
        write: r.contains(Rights::WRITE),
        grant: false,
    }
}

/// A capability pointer as the `sel4` crate names it.
#[inline(always)]
pub fn sel4_cptr(c: CsCPtr) -> sel4::CPtr {
    sel4::CPtr(c.0)
}

/// vspace cache attributes as seL4 VM attributes.
pub fn vs_attr(a: CacheAttr) -> VmAttributes {
    match a {
        CacheAttr::WriteBack => VmAttributes::DEFAULT,
        CacheAttr::WriteThrough => VmAttributes::WRITE_THROUGH,
        CacheAttr::CacheDisabled => VmAttributes::CACHE_DISABLED,
        CacheAttr::Uncacheable => VmAttributes::UNCACHEABLE,
        CacheAttr::WriteCombining => VmAttributes::WRITE_COMBINING,
    }
}

/// The manager's kernel on the real kernel: `cspace::KernelOps` and
/// `memory_manager::Kernel`, one invocation per method.
pub struct Sel4Ops {
    /// The benchmark's phase stopwatch of the current operation.
    clock: crate::phases::Clock,
}

impl Sel4Ops {
    /// The kernel.
    pub fn new() -> Self {
        Sel4Ops {
            clock: crate::phases::Clock::start(),
        }
    }
}

impl KernelOps for Sel4Ops {
    fn untyped_retype(
        &mut self,
        untyped: CsCPtr,
        ty: ObjectType,
        size_bits: u8,
        d: RetypeDest,
    ) -> Result<(), KernelError> {
        Cap::<cap_type::Untyped>::from_bits(untyped.0)
            .untyped_retype(
                object_type_number(ty),
                size_bits as Word,
                cnode(d.root),
                d.node_index,
                d.node_depth as Word,
                d.offset,
                d.count,
            )
            .map_err(kernel_error)
    }

    fn cnode_copy(&mut self, dest: CapPath, src: CapPath, rights: Rights) -> Result<(), KernelError> {
        kernel(|| {
            cnode(dest.root).cnode_copy(
                dest.index,
                dest.depth,
                cnode(src.root),
                src.index,
                src.depth,
                cap_rights(rights),
            )
        })
        .map_err(kernel_error)
    }

    fn cnode_mint(&mut self, dest: CapPath, src: CapPath, rights: Rights, data: CsCapData) -> Result<(), KernelError> {
        let data = match data {
            CsCapData::Badge(b) => CapData::badge(b).ok_or(KernelError::InvalidArgument)?,
            CsCapData::Guard { value, size } => CapData::guard(value, size),
        };
        cnode(dest.root)
            .cnode_mint(
                dest.index,
                dest.depth,
                cnode(src.root),
                src.index,
                src.depth,
                cap_rights(rights),
                data,
            )
            .map_err(kernel_error)
    }

    fn cnode_move(&mut self, dest: CapPath, src: CapPath) -> Result<(), KernelError> {
        cnode(dest.root)
            .cnode_move(dest.index, dest.depth, cnode(src.root), src.index, src.depth)
            .map_err(kernel_error)
    }

    fn cnode_delete(&mut self, slot: CapPath) -> Result<(), KernelError> {
        kernel(|| cnode(slot.root).cnode_delete(slot.index, slot.depth)).map_err(kernel_error)
    }

    fn cnode_revoke(&mut self, slot: CapPath) -> Result<(), KernelError> {
        cnode(slot.root)
            .cnode_revoke(slot.index, slot.depth)
            .map_err(kernel_error)
    }

    fn set_cspace_root(&mut self, root: CsCPtr, guard_bits: u8) -> Result<(), KernelError> {
        init::TCB
            .tcb_set_space(
                0,
                cnode(root),
                CapData::guard(0, guard_bits),
                init::VSPACE.cast(),
                CapData::NONE,
            )
            .map_err(kernel_error)
    }
}

/// Whether the kernel has the batched leaf-table invocations, as found by
/// [`detect_batched_leaf`] at start-up. Until then, and always when the
/// bindings were generated without them, the per-page path is used.
pub fn batched_leaf() -> bool {
    cfg!(sel4_batched_leaf) && BATCHED.load(Ordering::Relaxed)
}

static BATCHED: AtomicBool = AtomicBool::new(false);
static DETECTED: AtomicBool = AtomicBool::new(false);

#[cfg_attr(not(sel4_batched_leaf), allow(dead_code))]
/// Lets the manager use the batched invocations (if the kernel has them) or
/// not: for the checks that compare its two paths on one kernel.
pub fn use_batched_leaf(on: bool) {
    BATCHED.store(on && DETECTED.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Asks the kernel whether it has the batched leaf-table invocations (kernel
/// patch 0005) and remembers the answer for [`batched_leaf`]: an
/// `X86PageTable_UnmapRun` of 0 entries on a new, unmapped page table. The
/// extension refuses the count (`RangeError`); a kernel without it does not
/// know the label (`IllegalOperation`). Any other answer is an error. Bindings
/// generated from a kernel tree without the invocations cannot call them:
/// then the answer is no, without asking.
pub fn detect_batched_leaf(m: &mut Manager) -> Result<bool, alloc::string::String> {
    #[cfg(sel4_batched_leaf)]
    {
        let pt = m.alloc(ObjectType::PageTable).map_err(|e| alloc::format!("{e:?}"))?;
        let root = m.cs.path(
            m.cs.layout()
                .slot_of(pt.cptr)
                .ok_or_else(|| alloc::string::String::from("page table slot"))?,
        );
        let r = Cap::<cap_type::X86PageTable>::from_bits(pt.cptr.0).x86_page_table_unmap_run(
            0,
            0,
            cnode(root.root),
            root.index,
            root.depth as Word,
            0,
        );
        m.cs.free(pt.id).map_err(|e| alloc::format!("{e:?}"))?;
        let present = match r {
            Err(Error::RangeError) => true,
            Err(Error::IllegalOperation) => false,
            other => return Err(alloc::format!("UnmapRun of 0 entries answered {other:?}")),
        };
        DETECTED.store(present, Ordering::Relaxed);
        BATCHED.store(present, Ordering::Relaxed);
        Ok(present)
    }
    #[cfg(not(sel4_batched_leaf))]
    {
        let _ = m;
        Ok(false)
    }
}

/// The error of a refused run invocation. The generated wrapper keeps only
/// the error code, not the entry index the kernel sends in the last message
/// register, so the entry is unknown here.
#[cfg(sel4_batched_leaf)]
fn run_err(e: Error) -> RunRefusal {
    RunRefusal::from(kernel_error(e))
}

impl memory_manager::Kernel for Sel4Ops {
    fn asid_assign(&mut self, root: CsCPtr) -> Result<(), KernelError> {
        init::ASID_POOL
            .x86_asid_pool_assign(sel4_cptr(root))
            .map_err(kernel_error)
    }

    fn table_map(&mut self, level: TableLevel, table: CsCPtr, root: CsCPtr, va: u64) -> Result<(), KernelError> {
        let (root, attr) = (sel4_cptr(root), VmAttributes::DEFAULT);
        match level {
            TableLevel::Pdpt => {
                Cap::<cap_type::X86Pdpt>::from_bits(table.0).x86_pdpt_map(Cap::from_cptr(root), va, attr)
            }
            TableLevel::Pd => {
                Cap::<cap_type::X86PageDirectory>::from_bits(table.0).x86_page_directory_map(root, va, attr)
            }
            TableLevel::Pt => Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_map(root, va, attr),
        }
        .map_err(kernel_error)
    }

    fn table_unmap(&mut self, level: TableLevel, table: CsCPtr) -> Result<(), KernelError> {
        match level {
            TableLevel::Pdpt => Cap::<cap_type::X86Pdpt>::from_bits(table.0).x86_pdpt_unmap(),
            TableLevel::Pd => Cap::<cap_type::X86PageDirectory>::from_bits(table.0).x86_page_directory_unmap(),
            TableLevel::Pt => Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_unmap(),
        }
        .map_err(kernel_error)
    }

    fn page_map(
        &mut self,
        frame: CsCPtr,
        root: CsCPtr,
        vaddr: u64,
        _size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelError> {
        kernel(|| {
            cap::Frame::from_bits(frame.0).x86_page_map(sel4_cptr(root), vaddr, map_rights(rights), vs_attr(attr))
        })
        .map_err(kernel_error)
    }

    fn page_remap(&mut self, frame: CsCPtr, root: CsCPtr, rights: Rights, attr: CacheAttr) -> Result<(), KernelError> {
        cap::Frame::from_bits(frame.0)
            .x86_page_remap(sel4_cptr(root), map_rights(rights), vs_attr(attr))
            .map_err(kernel_error)
    }

    fn page_unmap(&mut self, frame: CsCPtr) -> Result<(), KernelError> {
        kernel(|| cap::Frame::from_bits(frame.0).x86_page_unmap()).map_err(kernel_error)
    }

    fn has_runs(&self) -> bool {
        batched_leaf()
    }

    #[cfg(sel4_batched_leaf)]
    fn map_run(
        &mut self,
        table: CsCPtr,
        root: CsCPtr,
        first: u16,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
        src: CapPath,
    ) -> Result<(), RunRefusal> {
        run_kernel(|| {
            Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_map_run(
                sel4_cptr(root),
                first as Word,
                n as Word,
                map_rights(rights),
                vs_attr(attr),
                cnode(src.root),
                src.index,
                src.depth as Word,
            )
        })
        .map_err(run_err)
    }

    #[cfg(sel4_batched_leaf)]
    fn copy_map_run(
        &mut self,
        table: CsCPtr,
        root: CsCPtr,
        first: u16,
        n: usize,
        rights: Rights,
        attr: CacheAttr,
        src: CapPath,
        dest: CapPath,
        copy_rights: Rights,
    ) -> Result<(), RunRefusal> {
        run_kernel(|| {
            Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_copy_map_run(
                sel4_cptr(root),
                first as Word,
                n as Word,
                map_rights(rights),
                vs_attr(attr),
                cnode(src.root),
                src.index,
                src.depth as Word,
                cnode(dest.root),
                dest.index,
                dest.depth as Word,
                cap_rights(copy_rights),
            )
        })
        .map_err(run_err)
    }

    #[cfg(sel4_batched_leaf)]
    fn unmap_run(
        &mut self,
        table: CsCPtr,
        first: u16,
        n: usize,
        caps: CapPath,
        delete: bool,
    ) -> Result<(), RunRefusal> {
        run_kernel(|| {
            Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_unmap_run(
                first as Word,
                n as Word,
                cnode(caps.root),
                caps.index,
                caps.depth as Word,
                delete as Word,
            )
        })
        .map_err(run_err)
    }

    #[inline(always)]
    fn start_op(&mut self) {
        self.clock = crate::phases::Clock::start();
    }

    #[inline(always)]
    fn lap(&mut self, phase: Phase) {
        self.clock.lap(phase);
    }
}
