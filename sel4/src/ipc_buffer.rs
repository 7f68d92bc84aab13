//! The IPC buffer (libsel4's `seL4_IPCBuffer`).
//!
//! seL4 5.0 on x86_64 points the gs segment base at the running thread's IPC
//! buffer on every return to user mode, so each thread reaches its own buffer
//! through gs-relative accesses, with no pointer to keep. The offsets are
//! those of libsel4's struct, read from its header by the kernel build.

use crate::{layout, Word, MSG_MAX_EXTRA_CAPS, MSG_MAX_LENGTH};

/// Accessors for the calling thread's IPC buffer.
pub struct IpcBuffer;

#[inline(always)]
fn load(offset: u64) -> Word {
    let v: Word;
    // SAFETY: gs points at this thread's IPC buffer (see the module doc); the
    // callers keep `offset` inside seL4_IPCBuffer.
    unsafe { core::arch::asm!("mov {}, gs:[{}]", out(reg) v, in(reg) offset, options(nostack, readonly)) };
    v
}

#[inline(always)]
fn store(offset: u64, v: Word) {
    // SAFETY: as for `load`; the IPC buffer is writable by its thread.
    unsafe { core::arch::asm!("mov gs:[{}], {}", in(reg) offset, in(reg) v, options(nostack)) };
}

impl IpcBuffer {
    /// Size of the buffer in bytes (`sizeof(seL4_IPCBuffer)`).
    pub const SIZE: usize = layout::IPCBuffer_size as usize;

    /// `seL4_GetMR(i)`
    #[inline(always)]
    pub fn mr(i: usize) -> Word {
        assert!(i < MSG_MAX_LENGTH);
        load(layout::IPCBuffer_msg + 8 * i as u64)
    }
    /// `seL4_SetMR(i, v)`
    #[inline(always)]
    pub fn set_mr(i: usize, v: Word) {
        assert!(i < MSG_MAX_LENGTH);
        store(layout::IPCBuffer_msg + 8 * i as u64, v)
    }
    /// `seL4_SetCap(i, cptr)`: the i-th extra capability of the next message.
    #[inline(always)]
    pub fn set_cap(i: usize, cptr: Word) {
        assert!(i < MSG_MAX_EXTRA_CAPS);
        store(layout::IPCBuffer_caps_or_badges + 8 * i as u64, cptr)
    }
    /// `seL4_GetBadge(i)`: the badge of the i-th unwrapped received capability.
    #[inline(always)]
    pub fn badge(i: usize) -> Word {
        assert!(i < MSG_MAX_EXTRA_CAPS);
        load(layout::IPCBuffer_caps_or_badges + 8 * i as u64)
    }
    /// `seL4_SetCapReceivePath`: where a received capability is placed.
    #[inline(always)]
    pub fn set_receive_path(cnode: Word, index: Word, depth: Word) {
        store(layout::IPCBuffer_receiveCNode, cnode);
        store(layout::IPCBuffer_receiveIndex, index);
        store(layout::IPCBuffer_receiveDepth, depth);
    }
    /// `userData`: a word the kernel never touches.
    #[inline(always)]
    pub fn user_data() -> Word {
        load(layout::IPCBuffer_userData)
    }
    /// Sets `userData`.
    #[inline(always)]
    pub fn set_user_data(v: Word) {
        store(layout::IPCBuffer_userData, v)
    }
}
