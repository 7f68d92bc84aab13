//! The system calls (libsel4's `seL4_Call`, `seL4_Send`, ... for x86_64 with
//! `CONFIG_SYSCALL`).
//!
//! ABI: `syscall` with the (negative) system call number in rdx, the
//! destination capability or badge in rdi, the message info in rsi and
//! message registers 0-3 in r10, r8, r9, r15. The kernel clobbers rcx and r11
//! and returns with rsp = 0, so the stack pointer is kept in r12 across the
//! instruction (libsel4 uses rbx, which Rust inline assembly may not name).

use crate::{syscall_id, CPtr, MessageInfo, Word, FAST_MRS};

/// One `syscall` instruction with every register the ABI uses, in and out.
#[inline(always)]
fn raw(sys: i64, dest: Word, info: Word, mrs: [Word; FAST_MRS]) -> (Word, Word, [Word; FAST_MRS]) {
    let (badge, out_info);
    let [mut m0, mut m1, mut m2, mut m3] = mrs;
    // SAFETY: the syscall instruction enters the seL4 kernel, which follows the
    // ABI above: it reads and writes only the registers named here (plus the
    // IPC buffer in memory, hence no `nomem`) and preserves all others. The
    // stack pointer is restored from r12 before anything uses the stack.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "syscall",
            "mov rsp, r12",
            inout("rdx") sys => _,
            inout("rdi") dest => badge,
            inout("rsi") info => out_info,
            inout("r10") m0,
            inout("r8") m1,
            inout("r9") m2,
            inout("r15") m3,
            out("rcx") _,
            out("r11") _,
            out("r12") _,
        );
    }
    (badge, out_info, [m0, m1, m2, m3])
}

/// `seL4_Call`: send `info` with message registers `mrs` to `dest` and wait
/// for the reply. Returns the reply's info, its first four message registers
/// and the badge.
#[inline]
pub fn call(dest: CPtr, info: MessageInfo, mrs: [Word; FAST_MRS]) -> (MessageInfo, [Word; FAST_MRS], Word) {
    let (badge, info, mrs) = raw(syscall_id::SysCall, dest.0, info.0, mrs);
    (MessageInfo(info), mrs, badge)
}

/// `seL4_Send`: blocking send.
#[inline]
pub fn send(dest: CPtr, info: MessageInfo, mrs: [Word; FAST_MRS]) {
    raw(syscall_id::SysSend, dest.0, info.0, mrs);
}

/// `seL4_NBSend`: send if a receiver is waiting, otherwise drop the message.
#[inline]
pub fn nb_send(dest: CPtr, info: MessageInfo, mrs: [Word; FAST_MRS]) {
    raw(syscall_id::SysNBSend, dest.0, info.0, mrs);
}

/// `seL4_Recv`: wait for a message on `src`. Returns info, MRs 0-3 and badge.
#[inline]
pub fn recv(src: CPtr) -> (MessageInfo, [Word; FAST_MRS], Word) {
    let (badge, info, mrs) = raw(syscall_id::SysRecv, src.0, 0, [0; FAST_MRS]);
    (MessageInfo(info), mrs, badge)
}

/// `seL4_NBRecv`: poll `src`.
#[inline]
pub fn nb_recv(src: CPtr) -> (MessageInfo, [Word; FAST_MRS], Word) {
    let (badge, info, mrs) = raw(syscall_id::SysNBRecv, src.0, 0, [0; FAST_MRS]);
    (MessageInfo(info), mrs, badge)
}

/// `seL4_Reply`: reply to the thread that last called this one.
#[inline]
pub fn reply(info: MessageInfo, mrs: [Word; FAST_MRS]) {
    raw(syscall_id::SysReply, 0, info.0, mrs);
}

/// `seL4_ReplyRecv`: reply, then wait on `src`.
#[inline]
pub fn reply_recv(src: CPtr, info: MessageInfo, mrs: [Word; FAST_MRS]) -> (MessageInfo, [Word; FAST_MRS], Word) {
    let (badge, info, mrs) = raw(syscall_id::SysReplyRecv, src.0, info.0, mrs);
    (MessageInfo(info), mrs, badge)
}

/// `seL4_Yield`: give up the rest of the time slice.
#[inline]
pub fn yield_now() {
    raw(syscall_id::SysYield, 0, 0, [0; FAST_MRS]);
}

/// `seL4_Signal`: signal a notification (a `Send` of an empty message).
#[inline]
pub fn signal(dest: CPtr) {
    raw(syscall_id::SysSend, dest.0, 0, [0; FAST_MRS]);
}

/// `seL4_Wait`: wait on a notification; returns the badge bits.
#[inline]
pub fn wait(src: CPtr) -> Word {
    recv(src).2
}

/// `seL4_DebugPutChar` (debug kernels only).
#[cfg(sel4_debug_build)]
#[inline]
pub fn debug_put_char(c: u8) {
    raw(syscall_id::SysDebugPutChar, c as Word, 0, [0; FAST_MRS]);
}

/// `seL4_DebugHalt` (debug kernels only).
#[cfg(sel4_debug_build)]
#[inline]
pub fn debug_halt() {
    raw(syscall_id::SysDebugHalt, 0, 0, [0; FAST_MRS]);
}

/// `seL4_DebugCapIdentify` (debug kernels only): the kernel's cap type tag of
/// the capability at `cap` (0 for a null cap).
#[cfg(sel4_debug_build)]
#[inline]
pub fn debug_cap_identify(cap: CPtr) -> Word {
    raw(syscall_id::SysDebugCapIdentify, cap.0, 0, [0; FAST_MRS]).0
}

/// Reads the time-stamp counter (`rdtsc`). Under QEMU `-icount shift=0` one
/// tick is one guest instruction.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the counter; user mode may execute it under seL4.
    unsafe { core::arch::x86_64::_rdtsc() }
}
