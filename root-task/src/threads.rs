//! Threads that run code of the root task's image, in its own VSpace and
//! CSpace, each with its own stack (in .bss) and IPC buffer (a fresh frame).

use crate::objects::{Objects, PAGE};
use sel4::{cap, init, CapData, Error, PrioProps, UserContext, Word};

/// Stack of one helper thread.
pub const THREAD_STACK: usize = 32 * 1024;
/// Helper threads this image has stacks for.
pub const MAX_THREADS: usize = 8;

#[repr(C, align(16))]
struct Stacks([[u8; THREAD_STACK]; MAX_THREADS]);
static mut STACKS: Stacks = Stacks([[0; THREAD_STACK]; MAX_THREADS]);
static mut NEXT_STACK: usize = 0;

/// Where helper threads' IPC buffers are mapped in the root VSpace.
pub const IPC_BUFFER_BASE: Word = 0x1000_0000;

/// A started thread.
pub struct Thread {
    /// Its TCB.
    pub tcb: cap::Tcb,
}

/// Starts `entry(arg)` in a new thread at priority `prio` (on core `core`
/// when the kernel is SMP).
pub fn spawn(
    objs: &mut Objects,
    entry: extern "C" fn(Word) -> !,
    arg: Word,
    prio: u8,
    core: usize,
) -> Result<Thread, Error> {
    // SAFETY: only the root task's main thread calls spawn; the index is
    // bounded by MAX_THREADS below.
    let n = unsafe {
        let n = NEXT_STACK;
        assert!(n < MAX_THREADS, "out of helper thread stacks");
        NEXT_STACK += 1;
        n
    };
    let tcb = objs.tcb()?;
    let ipc_frame = objs.frame()?;
    let ipc_vaddr = IPC_BUFFER_BASE + n as Word * PAGE;
    objs.map_in_root(ipc_frame, ipc_vaddr)?;
    tcb.tcb_configure(
        0,
        PrioProps { prio, mcp: prio },
        init::CNODE,
        CapData::NONE,
        init::VSPACE.cast(),
        CapData::NONE,
        ipc_vaddr,
        ipc_frame.cptr(),
    )?;
    tcb.tcb_set_priority(prio)?;
    #[cfg(sel4_smp)]
    tcb.tcb_set_affinity(core as Word)?;
    #[cfg(not(sel4_smp))]
    assert_eq!(core, 0, "a UP kernel has one core");
    // SAFETY: stack n belongs to this thread alone.
    let top = unsafe { core::ptr::addr_of_mut!(STACKS.0[n]) as u64 + THREAD_STACK as u64 };
    let regs = UserContext {
        rip: entry as usize as Word,
        // As if `entry` had been called: rsp + 8 is 16-byte aligned.
        rsp: top - 8,
        rdi: arg,
        ..Default::default()
    };
    tcb.tcb_write_registers(true, 0, UserContext::WORDS as Word, &regs)?;
    Ok(Thread { tcb })
}
