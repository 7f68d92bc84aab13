//! Runtime for a Rust root task on seL4 5.0.0 (x86_64).
//!
//! What happens at boot, step by step:
//! 1. The kernel loads the root task's single PT_LOAD segment, maps its IPC
//!    buffer in the page after the image and the BootInfo frame after that,
//!    and starts the thread at `_start` with rdi = BootInfo pointer and
//!    **rsp = 0** (the kernel gives no stack).
//! 2. `_start` (below) points rsp at a static stack in .bss and calls
//!    [`start`](self::entry) with the BootInfo pointer.
//! 3. The runtime initialises the heap (a static array behind
//!    `talc`, so `alloc` and `hashbrown` work), selects the
//!    console (the kernel's `DebugPutChar` on debug kernels, COM1 through the
//!    root task's I/O port capability on release kernels) and calls the
//!    program's `main` (declared with [`root_task!`]).
//! 4. `main` returns a [`Verdict`]; the runtime prints the final result line
//!    and exits QEMU through its isa-debug-exit device (port 0xf4).
//!    A panic prints a `panic` result line and exits with failure.
//!
//! Results leave the root task as JSON lines behind [`report::PREFIX`]; see
//! the [`report`] module.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![cfg_attr(test, allow(dead_code))]

extern crate alloc;

pub mod console;
pub mod heap;
mod mem;
pub mod report;

pub use report::{Record, Verdict};
pub use sel4;

use sel4::BootInfo;

/// Size of the initial thread's stack.
pub const STACK_SIZE: usize = 256 * 1024;

/// Port of QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

#[no_mangle]
static mut __sel4_root_task_stack: Stack = Stack([0; STACK_SIZE]);

// Not in host test builds (which have their own `_start`).
#[cfg(not(test))]
core::arch::global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "    lea rsp, [rip + {stack} + {size}]",
    "    xor rbp, rbp",
    "    call {entry}",
    "    ud2",
    stack = sym __sel4_root_task_stack,
    size = const STACK_SIZE,
    entry = sym entry,
);

extern "Rust" {
    /// Defined by [`root_task!`].
    fn __sel4_root_task_main(bootinfo: &'static BootInfo) -> Verdict;
}

static mut BOOTINFO: *const BootInfo = core::ptr::null();

/// The BootInfo the kernel passed to the root task.
pub fn bootinfo() -> &'static BootInfo {
    // SAFETY: written once in `entry` before `main` runs, never again.
    unsafe { &*BOOTINFO }
}

extern "C" fn entry(bootinfo: *const BootInfo) -> ! {
    // SAFETY: single-threaded at this point; the pointer comes from the kernel.
    unsafe { BOOTINFO = bootinfo };
    // SAFETY: the pointer comes from the kernel and stays valid.
    heap::init(unsafe { &*bootinfo });
    console::init();
    // SAFETY: the symbol is defined by the `root_task!` macro in the program.
    let verdict = unsafe { __sel4_root_task_main(&*bootinfo) };
    report::finish(verdict)
}

/// Exits QEMU with `code` (QEMU's status is 2 * code + 1). Never returns; if
/// the device is absent, the thread suspends itself.
pub fn exit(code: u8) -> ! {
    let _ = sel4::init::IO_PORT.x86_io_port_out8(DEBUG_EXIT_PORT as u64, code as u64);
    let _ = sel4::init::TCB.tcb_suspend();
    loop {
        sel4::yield_now();
    }
}

/// Declares the root task's `main`: `fn(&'static BootInfo) -> Verdict`.
///
/// ```ignore
/// sel4_root_task::root_task!(main);
/// fn main(bootinfo: &'static sel4::BootInfo) -> sel4_root_task::Verdict { ... }
/// ```
#[macro_export]
macro_rules! root_task {
    ($main:path) => {
        #[no_mangle]
        fn __sel4_root_task_main(bootinfo: &'static $crate::sel4::BootInfo) -> $crate::Verdict {
            $main(bootinfo)
        }
    };
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use alloc::string::ToString;
    let msg = info.to_string();
    Record::new("panic").str("message", &msg).emit();
    println!("root task panicked: {msg}");
    exit(report::EXIT_FAIL)
}

/// The precompiled `core` refers to the unwinder's personality routine even
/// with panic=abort; nothing ever calls it.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// Referenced by the precompiled `alloc` for unwinding, which panic=abort
/// never does; reaching it is a bug, reported as a failure.
#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    Record::new("panic").str("message", "_Unwind_Resume called").emit();
    exit(report::EXIT_FAIL)
}
