//! The global allocator: `talc` over one region.
//!
//! (`talc` rather than a first-fit free list: the memory manager allocates
//! and frees many small vectors per operation, and a list allocator's cost
//! grows with the heap's fragmentation; talc's segregated free lists keep an
//! allocation at a few tens of instructions.)
//!
//! At start-up the runtime tries to give the heap [`BIG_HEAP_BYTES`] of RAM:
//! it takes the smallest boot RAM untyped of at least 2^[`BIG_HEAP_UNTYPED_BITS`]
//! bytes, retypes a page directory and 2 MiB frames from it into the first
//! free slots of the boot CNode, and maps them at [`BIG_HEAP_BASE`] (no heap
//! is needed for this). If there is no such untyped, the heap is the static
//! [`STATIC_HEAP_SIZE`] array in .bss. What was taken is reported by
//! [`boot_resources`], so the program's resource managers leave it alone.

use core::ops::Range;
use sel4::{cap, cap_type, init, object_type, size_bits, BootInfo, Cap, CapRights, VmAttributes, Word};
use talc::{ErrOnOom, Span, Talc, Talck};

/// Size of the fallback heap (in .bss, so part of the image the kernel loads).
pub const STATIC_HEAP_SIZE: usize = 1024 * 1024;
/// Where the big heap is mapped (a PML4/PDPT region the image does not use).
pub const BIG_HEAP_BASE: u64 = 0x10_0000_0000;
/// The big heap comes from an untyped of at least this size (2^bits bytes).
pub const BIG_HEAP_UNTYPED_BITS: u8 = 25;
/// Large frames in the big heap: the untyped's size in 2 MiB frames, less one
/// (its first 2 MiB hold the page directory, and frames are 2 MiB-aligned).
pub const BIG_HEAP_FRAMES: u64 = (1 << (BIG_HEAP_UNTYPED_BITS - size_bits::LARGE_PAGE as u8)) - 1;
/// Size of the big heap.
pub const BIG_HEAP_BYTES: u64 = BIG_HEAP_FRAMES << size_bits::LARGE_PAGE;

#[repr(C, align(4096))]
struct Area([u8; STATIC_HEAP_SIZE]);

static mut AREA: Area = Area([0; STATIC_HEAP_SIZE]);

#[cfg_attr(not(test), global_allocator)]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Boot resources the runtime took for the heap.
#[derive(Debug, Clone, Default)]
pub struct BootResources {
    /// Boot CNode slots used (at the start of BootInfo's empty range).
    pub slots: Range<Word>,
    /// The boot CNode slot of the untyped the heap came from, if any.
    pub untyped: Option<Word>,
    /// Heap size in bytes.
    pub heap_bytes: u64,
}

static mut RESOURCES: BootResources = BootResources {
    slots: 0..0,
    untyped: None,
    heap_bytes: 0,
};

/// What the runtime took from BootInfo's resources for the heap.
pub fn boot_resources() -> BootResources {
    // SAFETY: written once in `init`, before `main`.
    unsafe { (*core::ptr::addr_of!(RESOURCES)).clone() }
}

fn big_heap(bi: &BootInfo) -> Result<(Word, Range<Word>), sel4::Error> {
    let (idx, _) = bi
        .untyped_descs()
        .iter()
        .enumerate()
        .filter(|(_, u)| !u.device() && u.size_bits >= BIG_HEAP_UNTYPED_BITS)
        .min_by_key(|(_, u)| u.size_bits)
        .ok_or(sel4::Error::NotEnoughMemory)?;
    let untyped: cap::Untyped = Cap::from_bits(bi.untyped.start + idx as Word);
    let first = bi.empty.start;
    let pd_slot = first;
    let frames = first + 1;
    let end = frames + BIG_HEAP_FRAMES;
    if end > bi.empty.end {
        return Err(sel4::Error::RangeError);
    }
    untyped.untyped_retype(object_type::X86_PageDirectoryObject, 0, init::CNODE, 0, 0, pd_slot, 1)?;
    untyped.untyped_retype(
        object_type::X86_LargePageObject,
        0,
        init::CNODE,
        0,
        0,
        frames,
        BIG_HEAP_FRAMES,
    )?;
    let vroot = init::VSPACE.cptr();
    Cap::<cap_type::X86PageDirectory>::from_bits(pd_slot).x86_page_directory_map(
        vroot,
        BIG_HEAP_BASE,
        VmAttributes::DEFAULT,
    )?;
    for i in 0..BIG_HEAP_FRAMES {
        let va = BIG_HEAP_BASE + (i << size_bits::LARGE_PAGE);
        cap::Frame::from_bits(frames + i).x86_page_map(vroot, va, CapRights::READ_WRITE, VmAttributes::DEFAULT)?;
    }
    Ok((bi.untyped.start + idx as Word, first..end))
}

pub(crate) fn init(bi: &BootInfo) {
    let (start, size, res) = match big_heap(bi) {
        Ok((untyped, slots)) => (
            BIG_HEAP_BASE as *mut u8,
            BIG_HEAP_BYTES as usize,
            BootResources {
                slots,
                untyped: Some(untyped),
                heap_bytes: BIG_HEAP_BYTES,
            },
        ),
        // No suitable untyped (or the image's own mappings are in the way):
        // the static array. Slots used by a partial attempt stay reported.
        Err(_) => (
            core::ptr::addr_of_mut!(AREA) as *mut u8,
            STATIC_HEAP_SIZE,
            BootResources {
                slots: bi.empty.start..bi.empty.start + 1 + BIG_HEAP_FRAMES,
                untyped: None,
                heap_bytes: STATIC_HEAP_SIZE as u64,
            },
        ),
    };
    // SAFETY: called once, before anything allocates; the region is mapped
    // read-write and used by nothing else.
    unsafe {
        RESOURCES = res;
        if ALLOCATOR.lock().claim(Span::from_base_size(start, size)).is_err() {
            panic!("heap: the allocator cannot use {size} bytes at {start:p}");
        }
    }
}

/// Heap size in bytes.
pub fn size() -> usize {
    boot_resources().heap_bytes as usize
}
