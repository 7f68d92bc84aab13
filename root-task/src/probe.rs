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

use crate::backend::sel4_cptr;
use crate::manager::Manager;
use alloc::vec::Vec;
use cspace::{ObjectType, Rights as CsRights};
use sel4::{cap, fault, CPtr, CapRights, MessageInfo, PrioProps, UserContext, Word};
use vspace::{AddressSpace, CacheAttr, CapRef, Page, PageRange, Rights, Size4K};

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
const PAGE: Word = 4096;

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

/// Why a probe could not be made or used (reported through `Debug` in check records).
#[derive(Debug)]
#[allow(dead_code)]
pub enum ProbeError {
    /// Allocating an object or slot failed.
    Alloc(cspace::AllocError),
    /// A cap operation failed.
    Cap(cspace::CapError),
    /// Creating or mapping the address space failed.
    Create(vspace::CreateError),
    /// Mapping failed.
    Map(vspace::MapError),
    /// An invocation failed.
    Kernel(sel4::Error),
    /// The probe stopped with a fault that is not a VM fault (label).
    OtherFault(Word),
}

/// A probe thread and the address space it owns.
pub struct Probe {
    /// The address space the probe runs in.
    pub space: AddressSpace,
    thread: ProbeThread,
}

/// A probe thread running in an address space it does not own.
pub struct ProbeThread {
    tcb: cap::Tcb,
    cmd: Word,
    results: Word,
    result_badged: Word,
    /// Objects and slots the probe owns (freed by [`Probe::destroy`]).
    objects: Vec<cspace::ObjectId>,
    /// Slots holding copies of the image's frame caps (outside the books).
    code_slots: Vec<cspace::Slot>,
    /// Managed badged copies of the result endpoint.
    minted: Vec<cspace::Slot>,
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
                // SAFETY: as above.
                unsafe { core::ptr::write_volatile(m[1] as *mut Word, m[2]) };
                0
            }
            _ => Word::MAX,
        };
        sel4::send(result, MessageInfo::new(0, 0, 0, 1), [value, 0, 0, 0]);
    }
}

fn page(v: Word) -> Page<Size4K> {
    Page::from_start_address(v).expect("page-aligned constant")
}

impl Probe {
    /// Creates an address space with the image's code, a stack and an IPC
    /// buffer, and starts a probe thread in it at priority `prio`.
    pub fn new(m: &mut Manager, prio: u8) -> Result<Self, ProbeError> {
        let mut space = AddressSpace::create(&mut m.vk()).map_err(ProbeError::Create)?;
        let thread = ProbeThread::start(m, &mut space, prio)?;
        Ok(Self { space, thread })
    }

    /// Reads a word at `addr` in the probe's address space.
    pub fn read(&self, addr: Word) -> Result<Access, ProbeError> {
        self.thread.read(addr)
    }

    /// Writes `value` at `addr` in the probe's address space.
    pub fn write(&self, addr: Word, value: Word) -> Result<Access, ProbeError> {
        self.thread.write(addr, value)
    }

    /// Stops the probe and returns every object, slot, table and frame cap
    /// it used to the manager. The caller gets back the frame caps it had
    /// mapped into the probe's space (already unmapped), in no order.
    pub fn destroy(self, m: &mut Manager) -> Result<Vec<CapRef>, ProbeError> {
        self.thread.stop();
        let teardown = self
            .space
            .destroy(&mut m.vk())
            .map_err(|_| ProbeError::Kernel(sel4::Error::IllegalOperation))?;
        let frames: Vec<CapRef> = teardown.frames.into_iter().map(|(_, c)| c).collect();
        self.thread.release(m, frames)
    }
}

impl ProbeThread {
    /// Maps the image's code, a stack and an IPC buffer into `space` and
    /// starts a probe thread there at priority `prio`.
    pub fn start(m: &mut Manager, space: &mut AddressSpace, prio: u8) -> Result<Self, ProbeError> {
        let mut objects = Vec::new();
        let mut code_slots = Vec::new();
        let bi = sel4_root_task::bootinfo();
        // Linker-defined symbols: only their addresses are used.
        let start = core::ptr::addr_of!(__image_code_start) as Word;
        let end = core::ptr::addr_of!(__image_code_end) as Word;
        let first = (start - IMAGE_BASE) / PAGE;
        let count = (end - start).div_ceil(PAGE);
        let mut code = Vec::new();
        for i in first..first + count {
            // The image's frame caps live in the boot CNode, outside the manager's books.
            let slot = m.cs.alloc_slot().map_err(ProbeError::Alloc)?;
            let dest = m.cs.path(slot);
            sel4::cap::CNode::from_bits(dest.root.0)
                .cnode_copy(
                    dest.index,
                    dest.depth,
                    sel4::init::CNODE,
                    bi.user_image_frames.start + i,
                    sel4::WORD_BITS,
                    CapRights::READ,
                )
                .map_err(ProbeError::Kernel)?;
            code_slots.push(slot);
            code.push(CapRef(m.cptr(slot)));
        }
        let range = PageRange::from_count(page(IMAGE_BASE + first * PAGE), count).expect("image range");
        space
            .map(&mut m.vk(), range, &code, Rights::READ, CacheAttr::WriteBack)
            .map_err(ProbeError::Map)?;
        let mut alloc = |m: &mut Manager, ty| {
            let a = m.alloc(ty).map_err(ProbeError::Alloc)?;
            objects.push(a.id);
            Ok::<_, ProbeError>(a)
        };
        let stack = alloc(m, ObjectType::Frame4K)?;
        let ipc = alloc(m, ObjectType::Frame4K)?;
        let cmd = alloc(m, ObjectType::Endpoint)?;
        let results = alloc(m, ObjectType::Endpoint)?;
        let tcb = alloc(m, ObjectType::Tcb)?;
        let rw = Rights::READ | Rights::WRITE;
        for (frame, va) in [(stack.cptr.0, STACK_VADDR), (ipc.cptr.0, IPC_VADDR)] {
            let r = PageRange::from_count(page(va), 1).expect("one page");
            space
                .map(&mut m.vk(), r, &[CapRef(frame)], rw, CacheAttr::WriteBack)
                .map_err(ProbeError::Map)?;
        }
        let result_badged =
            m.cs.mint(results.slot, CsRights::ALL_CAP, BADGE_RESULT)
                .map_err(ProbeError::Cap)?;
        let fault_badged =
            m.cs.mint(results.slot, CsRights::ALL_CAP, BADGE_FAULT)
                .map_err(ProbeError::Cap)?;
        let (root, guard) = crate::manager::cspace_root(m);
        let tcb_cap = cap::Tcb::from_bits(tcb.cptr.0);
        tcb_cap
            .tcb_configure(
                m.cptr(fault_badged),
                PrioProps { prio, mcp: prio },
                root,
                guard,
                cap::CNode::from_bits(space.root().0),
                sel4::CapData::NONE,
                IPC_VADDR,
                sel4_cptr(ipc.cptr),
            )
            .map_err(ProbeError::Kernel)?;
        tcb_cap.tcb_set_priority(prio).map_err(ProbeError::Kernel)?;
        let probe = Self {
            tcb: tcb_cap,
            cmd: cmd.cptr.0,
            results: results.cptr.0,
            result_badged: m.cptr(result_badged),
            objects,
            code_slots,
            minted: alloc::vec![result_badged, fault_badged],
        };
        probe.restart().map_err(ProbeError::Kernel)?;
        Ok(probe)
    }

    /// (Re)starts the probe at its entry point with an empty stack.
    pub fn restart(&self) -> Result<(), sel4::Error> {
        let regs = UserContext {
            rip: probe_main as extern "C" fn(Word, Word) -> ! as usize as Word,
            rsp: STACK_VADDR + PAGE - 8,
            rdi: self.cmd,
            rsi: self.result_badged,
            ..Default::default()
        };
        self.tcb.tcb_write_registers(true, 0, UserContext::WORDS as Word, &regs)
    }

    fn request(&self, op: Word, addr: Word, value: Word) -> Result<Access, ProbeError> {
        sel4::send(CPtr(self.cmd), MessageInfo::new(0, 0, 0, 3), [op, addr, value, 0]);
        let (info, m, badge) = sel4::recv(CPtr(self.results));
        match badge {
            BADGE_RESULT => Ok(Access::Done(m[0])),
            BADGE_FAULT => {
                self.restart().map_err(ProbeError::Kernel)?;
                if info.label() == fault::VM_FAULT {
                    Ok(Access::Fault {
                        addr: m[fault::VM_FAULT_ADDR],
                        write: m[fault::VM_FAULT_FSR] & 2 != 0,
                    })
                } else {
                    Err(ProbeError::OtherFault(info.label()))
                }
            }
            _ => Err(ProbeError::OtherFault(Word::MAX)),
        }
    }

    /// Reads a word at `addr` in the probe's address space.
    pub fn read(&self, addr: Word) -> Result<Access, ProbeError> {
        self.request(OP_READ, addr, 0)
    }

    /// Writes `value` at `addr` in the probe's address space.
    pub fn write(&self, addr: Word, value: Word) -> Result<Access, ProbeError> {
        self.request(OP_WRITE, addr, value)
    }

    /// Suspends the thread.
    pub fn stop(&self) {
        let _ = self.tcb.tcb_suspend();
    }

    /// After the address space is gone (`frames`: the caps it had mapped),
    /// frees the thread's objects and slots. Returns the frame caps that
    /// were not the probe's own.
    pub fn release(self, m: &mut Manager, frames: Vec<CapRef>) -> Result<Vec<CapRef>, ProbeError> {
        let _ = self.tcb.tcb_suspend();
        let mut foreign = Vec::new();
        let own: Vec<u64> = self
            .objects
            .iter()
            .filter_map(|id| m.cs.object(*id))
            .map(|a| a.cptr.0)
            .collect();
        let code: Vec<u64> = self.code_slots.iter().map(|s| m.cptr(*s)).collect();
        for f in frames {
            if !own.contains(&f.0) && !code.contains(&f.0) {
                foreign.push(f);
            }
        }
        for s in self.code_slots {
            let p = m.cs.path(s);
            sel4::cap::CNode::from_bits(p.root.0)
                .cnode_delete(p.index, p.depth)
                .map_err(ProbeError::Kernel)?;
            m.cs.release_slot(s).map_err(ProbeError::Cap)?;
        }
        for s in self.minted {
            m.cs.delete(s).map_err(ProbeError::Cap)?;
        }
        // The TCB goes first: it references the IPC buffer frame.
        for id in self.objects.into_iter().rev() {
            m.cs.free(id)
                .map_err(|_| ProbeError::Kernel(sel4::Error::RevokeFirst))?;
        }
        Ok(foreign)
    }
}
