//! Probe threads: a thread in another address space that performs the reads
//! and writes the root task asks for, so tests observe what a mapping really
//! does. Its faults arrive at the root task, with the faulting address.
//!
//! The probe runs code of this image: the pages holding .text and .rodata
//! (`__image_code_start..__image_code_end`) are mapped read-only into its
//! address space at their usual addresses, through copies of the image's
//! frame caps. It has its own stack and IPC buffer frames and shares the root
//! task's CSpace.
//!
//! Protocol: the root task Sends `[op, addr, value]` on the command endpoint
//! and Recvs on the result endpoint. The probe replies through a copy of the
//! result endpoint badged [`BADGE_RESULT`]; its fault endpoint is a copy
//! badged [`BADGE_FAULT`], so a fault arrives where the result would.
//! After a fault the root task restarts the probe at its entry point.

use crate::objects::{Objects, PAGE};
use sel4::{cap, fault, init, CPtr, CapData, CapRights, Error, MessageInfo, PrioProps, UserContext, Word};

/// Badge of the probe's result messages.
pub const BADGE_RESULT: Word = 1;
/// Badge of the probe's fault messages.
pub const BADGE_FAULT: Word = 2;
/// Where the probe's stack lives in its address space.
pub const STACK_VADDR: Word = 0x7000_0000;
/// Where the probe's IPC buffer lives in its address space.
pub const IPC_VADDR: Word = 0x7000_2000;
/// Base address of the root task's image (link.ld).
const IMAGE_BASE: Word = 0x40_0000;

const OP_READ: Word = 1;
const OP_WRITE: Word = 2;

extern "C" {
    static __image_code_start: u8;
    static __image_code_end: u8;
}

/// What a probe access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The access completed; for reads, the value read.
    Done(Word),
    /// The access faulted at `addr` (a VM fault); `write` if the fault was on a write.
    Fault {
        /// Faulting address.
        addr: Word,
        /// Whether it was a write access (x86 error code bit 1).
        write: bool,
    },
}

/// A probe thread and its address space.
pub struct Probe {
    /// The address space the probe runs in.
    pub vspace: cap::VSpace,
    tcb: cap::Tcb,
    cmd: cap::Endpoint,
    results: cap::Endpoint,
    result_badged: Word,
    stack_top: Word,
    /// Caps of the image pages copied into the probe's address space.
    pub code_frames: usize,
}

/// The probe's code: serve read/write requests forever.
extern "C" fn probe_main(cmd: Word, result: Word) -> ! {
    let (cmd, result) = (CPtr(cmd), CPtr(result));
    loop {
        let (_, m, _) = sel4::recv(cmd);
        let value = match m[0] {
            // SAFETY: the probe exists to perform exactly these accesses; a
            // bad address faults to the root task, which restarts the probe.
            OP_READ => unsafe { core::ptr::read_volatile(m[1] as *const Word) },
            OP_WRITE => {
                unsafe { core::ptr::write_volatile(m[1] as *mut Word, m[2]) };
                0
            }
            _ => Word::MAX,
        };
        sel4::send(result, MessageInfo::new(0, 0, 0, 1), [value, 0, 0, 0]);
    }
}

impl Probe {
    /// Creates an address space with the image's code, a stack and an IPC
    /// buffer, and starts a probe thread in it at priority `prio`.
    pub fn new(objs: &mut Objects, prio: u8) -> Result<Self, Error> {
        let vspace = objs.vspace()?;
        Self::in_vspace(objs, vspace, prio)
    }

    /// As [`Probe::new`], in an existing address space.
    pub fn in_vspace(objs: &mut Objects, vspace: cap::VSpace, prio: u8) -> Result<Self, Error> {
        let bi = sel4_root_task::bootinfo();
        // Linker-defined symbols: only their addresses are used.
        let start = core::ptr::addr_of!(__image_code_start) as Word;
        let end = core::ptr::addr_of!(__image_code_end) as Word;
        let first = (start - IMAGE_BASE) / PAGE;
        let count = (end - start).div_ceil(PAGE);
        for i in first..first + count {
            let copy = objs.slot();
            init::CNODE.cnode_copy(
                copy,
                sel4::WORD_BITS,
                init::CNODE,
                bi.user_image_frames.start + i,
                sel4::WORD_BITS,
                CapRights::READ,
            )?;
            objs.map_in(
                vspace,
                cap::Frame::from_bits(copy),
                IMAGE_BASE + i * PAGE,
                CapRights::READ,
            )?;
        }
        let stack = objs.frame()?;
        objs.map_in(vspace, stack, STACK_VADDR, CapRights::READ_WRITE)?;
        let ipc = objs.frame()?;
        objs.map_in(vspace, ipc, IPC_VADDR, CapRights::READ_WRITE)?;
        let cmd = objs.endpoint()?;
        let results = objs.endpoint()?;
        let result_badged = objs.slot();
        let fault_badged = objs.slot();
        for (slot, badge) in [(result_badged, BADGE_RESULT), (fault_badged, BADGE_FAULT)] {
            init::CNODE.cnode_mint(
                slot,
                sel4::WORD_BITS,
                init::CNODE,
                results.bits(),
                sel4::WORD_BITS,
                CapRights::ALL,
                CapData::badge(badge).ok_or(Error::InvalidArgument)?,
            )?;
        }
        let tcb = objs.tcb()?;
        tcb.tcb_configure(
            fault_badged,
            PrioProps { prio, mcp: prio },
            init::CNODE,
            CapData::NONE,
            vspace.cast(),
            CapData::NONE,
            IPC_VADDR,
            ipc.cptr(),
        )?;
        tcb.tcb_set_priority(prio)?;
        let probe = Self {
            vspace,
            tcb,
            cmd,
            results,
            result_badged,
            stack_top: STACK_VADDR + PAGE,
            code_frames: count as usize,
        };
        probe.restart()?;
        Ok(probe)
    }

    /// (Re)starts the probe at its entry point with an empty stack.
    pub fn restart(&self) -> Result<(), Error> {
        let regs = UserContext {
            rip: probe_main as extern "C" fn(Word, Word) -> ! as usize as Word,
            rsp: self.stack_top - 8,
            rdi: self.cmd.bits(),
            rsi: self.result_badged,
            ..Default::default()
        };
        self.tcb.tcb_write_registers(true, 0, UserContext::WORDS as Word, &regs)
    }

    fn request(&self, op: Word, addr: Word, value: Word) -> Result<Access, Error> {
        sel4::send(self.cmd.cptr(), MessageInfo::new(0, 0, 0, 3), [op, addr, value, 0]);
        let (info, m, badge) = sel4::recv(self.results.cptr());
        match badge {
            BADGE_RESULT => Ok(Access::Done(m[0])),
            BADGE_FAULT if info.label() == fault::VM_FAULT => {
                self.restart()?;
                Ok(Access::Fault {
                    addr: m[fault::VM_FAULT_ADDR],
                    write: m[fault::VM_FAULT_FSR] & 2 != 0,
                })
            }
            _ => {
                // Any other fault: restart the probe and report it as an error.
                self.restart()?;
                Err(Error::IllegalOperation)
            }
        }
    }

    /// Reads a word at `addr` in the probe's address space.
    pub fn read(&self, addr: Word) -> Result<Access, Error> {
        self.request(OP_READ, addr, 0)
    }

    /// Writes `value` at `addr` in the probe's address space.
    pub fn write(&self, addr: Word, value: Word) -> Result<Access, Error> {
        self.request(OP_WRITE, addr, value)
    }
}
