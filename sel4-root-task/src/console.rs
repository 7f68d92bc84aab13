//! The console: the kernel's `DebugPutChar` on debug kernels, otherwise COM1
//! (port 0x3f8) through the root task's I/O port capability.
//!
//! Both reach QEMU's `-serial stdio`. Output is unbuffered and not locked:
//! lines from two threads printing at once can interleave.

use core::fmt::{self, Write};

/// COM1's data port.
pub const COM1: u16 = 0x3f8;

pub(crate) fn init() {
    if !sel4_config::DEBUG_BUILD {
        // 8N1, no interrupts; QEMU's UART needs no more than this.
        let io = sel4::init::IO_PORT;
        let _ = io.x86_io_port_out8(COM1 as u64 + 1, 0x00);
        let _ = io.x86_io_port_out8(COM1 as u64 + 3, 0x03);
    }
}

/// Writes one byte to the console.
#[inline]
pub fn put_byte(b: u8) {
    #[cfg(sel4_debug_build)]
    sel4::debug_put_char(b);
    #[cfg(not(sel4_debug_build))]
    let _ = sel4::init::IO_PORT.x86_io_port_out8(COM1 as u64, b as u64);
}

/// A `fmt::Write` to the console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put_byte(b'\r');
            }
            put_byte(b);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = Console.write_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
