//! The seL4-facing layer: the kernel traits of `cspace` and `vspace`
//! implemented with one invocation each through the generated `sel4` crate.
//!
//! The seL4-free crates name object types, rights and errors with their own
//! enums; here they become the kernel build's numbers (`sel4::object_type`,
//! `sel4::CapRights`, `sel4::Error`). The crates' size tables are checked
//! against the kernel tree's at compile time.

use cspace::{CPtr as CsCPtr, CapData as CsCapData, CapPath, KernelError, KernelOps, ObjectType, RetypeDest};
use sel4::{cap, cap_type, init, object_type, size_bits, Cap, CapData, CapRights, Error, VmAttributes, Word};
#[cfg(sel4_batched_leaf)]
use vspace::VSpaceKernel as _;
use vspace::{CacheAttr, CapRef, FrameSize, KernelFailure, TableLevel, VirtAddr};

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

/// `sel4::Error` as the cspace crate names it.
pub fn cs_err(e: Error) -> KernelError {
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

/// `sel4::Error` as the vspace crate names it.
pub fn vs_err(e: Error) -> KernelFailure {
    match e {
        Error::InvalidArgument => KernelFailure::InvalidArgument,
        Error::InvalidCapability => KernelFailure::InvalidCapability,
        Error::IllegalOperation => KernelFailure::IllegalOperation,
        Error::RangeError => KernelFailure::RangeError,
        Error::AlignmentError => KernelFailure::AlignmentError,
        Error::FailedLookup => KernelFailure::FailedLookup,
        Error::TruncatedMessage => KernelFailure::TruncatedMessage,
        Error::DeleteFirst => KernelFailure::DeleteFirst,
        Error::RevokeFirst => KernelFailure::RevokeFirst,
        Error::NotEnoughMemory => KernelFailure::NotEnoughMemory,
    }
}

/// A kernel invocation, timed as [`Phase::Kernel`](crate::phases::Phase::Kernel) when phases are on.
#[inline(always)]
pub fn kernel<R>(f: impl FnOnce() -> R) -> R {
    crate::phases::nested(crate::phases::Phase::Kernel, f)
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

/// cspace rights as seL4 rights.
pub fn cs_rights(r: cspace::Rights) -> CapRights {
    CapRights {
        read: r.contains(cspace::Rights::READ),
        write: r.contains(cspace::Rights::WRITE),
        grant: r.contains(cspace::Rights::GRANT),
    }
}

/// vspace rights as seL4 rights (mappings never carry grant).
pub fn vs_rights(r: vspace::Rights) -> CapRights {
    CapRights {
        read: r.contains(vspace::Rights::READ),
        write: r.contains(vspace::Rights::WRITE),
        grant: false,
    }
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

/// `cspace::KernelOps` on the real kernel.
pub struct Sel4Ops;

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
            .map_err(cs_err)
    }

    fn cnode_copy(&mut self, dest: CapPath, src: CapPath, rights: cspace::Rights) -> Result<(), KernelError> {
        kernel(|| {
            cnode(dest.root).cnode_copy(
                dest.index,
                dest.depth,
                cnode(src.root),
                src.index,
                src.depth,
                cs_rights(rights),
            )
        })
        .map_err(cs_err)
    }

    fn cnode_mint(
        &mut self,
        dest: CapPath,
        src: CapPath,
        rights: cspace::Rights,
        data: CsCapData,
    ) -> Result<(), KernelError> {
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
                cs_rights(rights),
                data,
            )
            .map_err(cs_err)
    }

    fn cnode_move(&mut self, dest: CapPath, src: CapPath) -> Result<(), KernelError> {
        cnode(dest.root)
            .cnode_move(dest.index, dest.depth, cnode(src.root), src.index, src.depth)
            .map_err(cs_err)
    }

    fn cnode_delete(&mut self, slot: CapPath) -> Result<(), KernelError> {
        kernel(|| cnode(slot.root).cnode_delete(slot.index, slot.depth)).map_err(cs_err)
    }

    fn cnode_revoke(&mut self, slot: CapPath) -> Result<(), KernelError> {
        cnode(slot.root).cnode_revoke(slot.index, slot.depth).map_err(cs_err)
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
            .map_err(cs_err)
    }
}

/// The vspace crate's kernel operations: paging-structure objects come from
/// (and go back to) the CSpace manager; maps are one invocation each.
pub struct VsKernel<'a> {
    /// Where tables and roots come from.
    pub cs: &'a mut cspace::CSpace<Sel4Ops>,
    /// Which CSpace object each table/root cap is.
    pub objects: &'a mut hashbrown::HashMap<u64, cspace::ObjectId>,
}

impl VsKernel<'_> {
    fn alloc(&mut self, ty: ObjectType) -> Result<CapRef, KernelFailure> {
        let a = self.cs.alloc(ty, 0).map_err(|_| KernelFailure::NotEnoughMemory)?;
        self.objects.insert(a.cptr.0, a.id);
        Ok(CapRef(a.cptr.0))
    }

    fn free(&mut self, c: CapRef) {
        if let Some(id) = self.objects.remove(&c.0) {
            // A failure leaves the object accounted as live, visible in the figures.
            let _ = self.cs.free(id);
        }
    }
}

/// The batched leaf-table invocations (kernel patch 0005), when the kernel
/// has them: a run of frame caps in consecutive slots of one CNode is mapped
/// or unmapped in one kernel entry.
#[cfg(sel4_batched_leaf)]
impl VsKernel<'_> {
    /// How many caps at the start of `caps` are consecutive slots of one
    /// CNode (a run invocation takes them from one CNode).
    pub fn run_prefix(&self, caps: &[CapRef]) -> usize {
        self.run_prefix_by(caps, |c| c.0)
    }

    /// [`run_prefix`](Self::run_prefix) of the cptrs `cptr(x)` of `xs`.
    #[inline]
    pub fn run_prefix_by<T>(&self, xs: &[T], cptr: impl Fn(&T) -> u64) -> usize {
        let Some(first) = xs.first().map(&cptr) else { return 0 };
        let l = self.cs.layout();
        let Some(a) = l.slot_of(CsCPtr(first)) else { return 0 };
        // Consecutive cptrs stay in one CNode up to its last slot.
        let room = l.capacity(a.cnode).saturating_sub(a.index) as usize;
        let xs = &xs[..xs.len().min(room.max(1))];
        vspace::consecutive_prefix(xs, cptr)
    }
    /// The path of the cap `cptr` names (a managed slot).
    pub fn path_of(&self, cptr: CapRef) -> Result<CapPath, KernelFailure> {
        let slot = self.cs.layout().slot_of(CsCPtr(cptr.0));
        slot.map(|s| self.cs.path(s)).ok_or(KernelFailure::InvalidCapability)
    }
}

/// Splits the `len` entries of a leaf run into pieces, in order: from entry
/// `done`, `piece(s, done)` entries can go in one run invocation; if they are
/// at least [`MIN_RUN`], `run(s, done, k)` does them, otherwise `one(s, done)`
/// does entry `done` alone. A failure reports how many entries were done
/// before it (a run invocation is all or nothing).
#[cfg(sel4_batched_leaf)]
pub fn in_runs<S>(
    s: &mut S,
    len: usize,
    piece: impl Fn(&S, usize) -> usize,
    mut run: impl FnMut(&mut S, usize, usize) -> Result<(), KernelFailure>,
    mut one: impl FnMut(&mut S, usize) -> Result<(), KernelFailure>,
) -> Result<(), vspace::RunFailure> {
    let mut done = 0;
    while done < len {
        let k = match piece(s, done) {
            k if k >= MIN_RUN => run(s, done, k).map(|()| k),
            _ => one(s, done).map(|()| 1),
        }
        .map_err(|failure| vspace::RunFailure { done, failure })?;
        done += k;
    }
    Ok(())
}

/// `X86PageTable_MapRun` of the `n` entries of `run` from its first, the
/// frame caps taken from the slots from `src` on.
#[cfg(sel4_batched_leaf)]
pub fn map_run(
    root: CapRef,
    run: &vspace::LeafRun,
    n: usize,
    rights: vspace::Rights,
    attr: CacheAttr,
    src: CapPath,
) -> Result<(), KernelFailure> {
    run_kernel(|| {
        Cap::<cap_type::X86PageTable>::from_bits(run.table.0).x86_page_table_map_run(
            sel4::CPtr(root.0),
            run.first_index as Word,
            n as Word,
            vs_rights(rights),
            vs_attr(attr),
            cnode(src.root),
            src.index,
            src.depth as Word,
        )
    })
    .map_err(vs_err)
}

/// `X86PageTable_CopyMapRun`: each frame cap in the slots from `src` on is
/// copied (with `cap_rights`) into the slots from `dest` on, and the copies
/// mapped in the `n` entries of `run` from its first.
#[cfg(sel4_batched_leaf)]
#[allow(clippy::too_many_arguments)]
pub fn copy_map_run(
    root: CapRef,
    run: &vspace::LeafRun,
    n: usize,
    rights: vspace::Rights,
    attr: CacheAttr,
    src: CapPath,
    dest: CapPath,
    cap_rights: CapRights,
) -> Result<(), KernelFailure> {
    run_kernel(|| {
        Cap::<cap_type::X86PageTable>::from_bits(run.table.0).x86_page_table_copy_map_run(
            sel4::CPtr(root.0),
            run.first_index as Word,
            n as Word,
            vs_rights(rights),
            vs_attr(attr),
            cnode(src.root),
            src.index,
            src.depth as Word,
            cnode(dest.root),
            dest.index,
            dest.depth as Word,
            cap_rights,
        )
    })
    .map_err(vs_err)
}

/// `X86PageTable_UnmapRun` of the `n` entries of `run` from its first, which
/// the frame caps in the slots from `caps` on hold; with `delete`, the caps
/// are deleted too.
#[cfg(sel4_batched_leaf)]
pub fn unmap_run(run: &vspace::LeafRun, n: usize, caps: CapPath, delete: bool) -> Result<(), KernelFailure> {
    run_kernel(|| {
        Cap::<cap_type::X86PageTable>::from_bits(run.table.0).x86_page_table_unmap_run(
            run.first_index as Word,
            n as Word,
            cnode(caps.root),
            caps.index,
            caps.depth as Word,
            delete as Word,
        )
    })
    .map_err(vs_err)
}

/// The part of `run` from its `from`-th entry.
#[cfg(sel4_batched_leaf)]
pub fn sub_run(run: &vspace::LeafRun, from: usize) -> vspace::LeafRun {
    vspace::LeafRun {
        first_index: run.first_index + from as u16,
        vaddr: run.vaddr_of(from),
        ..*run
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
                .slot_of(CsCPtr(pt.cptr.0))
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

/// A run of at least this many pages goes through a run invocation: one
/// page is cheaper with the stock per-page invocation.
#[cfg(sel4_batched_leaf)]
pub const MIN_RUN: usize = 2;

fn level_type(level: TableLevel) -> ObjectType {
    match level {
        TableLevel::Pdpt => ObjectType::Pdpt,
        TableLevel::Pd => ObjectType::PageDirectory,
        TableLevel::Pt => ObjectType::PageTable,
    }
}

impl vspace::VSpaceKernel for VsKernel<'_> {
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
        self.alloc(ObjectType::Pml4)
    }

    fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure> {
        init::ASID_POOL.x86_asid_pool_assign(sel4::CPtr(root.0)).map_err(vs_err)
    }

    fn free_root(&mut self, root: CapRef) {
        self.free(root)
    }

    fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure> {
        self.alloc(level_type(level))
    }

    fn free_table(&mut self, _level: TableLevel, table: CapRef) {
        self.free(table)
    }

    fn map_table(
        &mut self,
        level: TableLevel,
        table: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
    ) -> Result<(), KernelFailure> {
        let (root, va, attr) = (sel4::CPtr(root.0), vaddr.as_u64(), VmAttributes::DEFAULT);
        match level {
            TableLevel::Pdpt => {
                Cap::<cap_type::X86Pdpt>::from_bits(table.0).x86_pdpt_map(Cap::from_cptr(root), va, attr)
            }
            TableLevel::Pd => {
                Cap::<cap_type::X86PageDirectory>::from_bits(table.0).x86_page_directory_map(root, va, attr)
            }
            TableLevel::Pt => Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_map(root, va, attr),
        }
        .map_err(vs_err)
    }

    fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure> {
        match level {
            TableLevel::Pdpt => Cap::<cap_type::X86Pdpt>::from_bits(table.0).x86_pdpt_unmap(),
            TableLevel::Pd => Cap::<cap_type::X86PageDirectory>::from_bits(table.0).x86_page_directory_unmap(),
            TableLevel::Pt => Cap::<cap_type::X86PageTable>::from_bits(table.0).x86_page_table_unmap(),
        }
        .map_err(vs_err)
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        _size: FrameSize,
        rights: vspace::Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        kernel(|| {
            cap::Frame::from_bits(frame.0).x86_page_map(
                sel4::CPtr(root.0),
                vaddr.as_u64(),
                vs_rights(rights),
                vs_attr(attr),
            )
        })
        .map_err(vs_err)
    }

    fn remap_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        rights: vspace::Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        cap::Frame::from_bits(frame.0)
            .x86_page_remap(sel4::CPtr(root.0), vs_rights(rights), vs_attr(attr))
            .map_err(vs_err)
    }

    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
        kernel(|| cap::Frame::from_bits(frame.0).x86_page_unmap()).map_err(vs_err)
    }

    #[cfg(sel4_batched_leaf)]
    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &vspace::LeafRun,
        frames: &[CapRef],
        rights: vspace::Rights,
        attr: CacheAttr,
    ) -> Result<(), vspace::RunFailure> {
        if run.level != TableLevel::Pt || !batched_leaf() {
            return map_each(self, root, run, frames, rights, attr);
        }
        // Each piece of caps in consecutive slots of one CNode in one entry
        // (all or nothing: on a refusal no entry of it was written).
        in_runs(
            self,
            frames.len(),
            |k, d| k.run_prefix(&frames[d..]),
            |k, d, n| map_run(root, &sub_run(run, d), n, rights, attr, k.path_of(frames[d])?),
            |k, d| k.map_frame(frames[d], root, run.vaddr_of(d), run.size, rights, attr),
        )
    }

    #[cfg(sel4_batched_leaf)]
    fn unmap_frames_run(&mut self, run: &vspace::LeafRun, frames: &[CapRef]) -> Result<(), vspace::RunFailure> {
        if run.level != TableLevel::Pt || !batched_leaf() {
            return unmap_each(self, frames);
        }
        in_runs(
            self,
            frames.len(),
            |k, d| k.run_prefix(&frames[d..]),
            |k, d, n| unmap_run(&sub_run(run, d), n, k.path_of(frames[d])?, false),
            |k, d| k.unmap_frame(frames[d]),
        )
    }
}

/// Maps `frames` one page at a time.
#[cfg(sel4_batched_leaf)]
fn map_each(
    k: &mut VsKernel<'_>,
    root: CapRef,
    run: &vspace::LeafRun,
    frames: &[CapRef],
    rights: vspace::Rights,
    attr: CacheAttr,
) -> Result<(), vspace::RunFailure> {
    for (i, &frame) in frames.iter().enumerate() {
        k.map_frame(frame, root, run.vaddr_of(i), run.size, rights, attr)
            .map_err(|failure| vspace::RunFailure { done: i, failure })?;
    }
    Ok(())
}

/// Unmaps `frames` one page at a time.
#[cfg(sel4_batched_leaf)]
fn unmap_each(k: &mut VsKernel<'_>, frames: &[CapRef]) -> Result<(), vspace::RunFailure> {
    for (i, &frame) in frames.iter().enumerate() {
        k.unmap_frame(frame)
            .map_err(|failure| vspace::RunFailure { done: i, failure })?;
    }
    Ok(())
}
