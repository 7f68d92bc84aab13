//! The global allocator: `linked_list_allocator` over a static array.

use linked_list_allocator::LockedHeap;

/// Size of the heap (in .bss, so part of the image the kernel loads).
pub const HEAP_SIZE: usize = 2 * 1024 * 1024;

#[repr(C, align(4096))]
struct Area([u8; HEAP_SIZE]);

static mut AREA: Area = Area([0; HEAP_SIZE]);

#[cfg_attr(not(test), global_allocator)]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

pub(crate) fn init() {
    // SAFETY: called once, before anything allocates; AREA is used by nothing else.
    unsafe {
        ALLOCATOR
            .lock()
            .init(core::ptr::addr_of_mut!(AREA) as *mut u8, HEAP_SIZE)
    }
}

/// Bytes of the heap in use.
pub fn used() -> usize {
    ALLOCATOR.lock().used()
}
