//! Rust bindings for seL4 5.0.0 on x86_64, for the configuration in
//! `sel4_config`.
//!
//! Two layers:
//! - **generated** (`build.rs` -> `generated.rs`): invocation labels, object
//!   type numbers, system call numbers, the error enum, struct layouts and a
//!   typed method for every invocation in the kernel tree's XML interface files
//!   (`Cap<cap_type::CNode>::cnode_copy`, `Cap<cap_type::X86Page>::x86_page_map`,
//!   ...). Labels shift between configurations (an SMP kernel inserts
//!   `TCBSetAffinity`); they are never typed in by hand.
//! - **hand-written** (this file and its modules): the `syscall` instruction,
//!   `MessageInfo`, the IPC buffer, `BootInfo`, capability pointers and the
//!   bitfield types. Each names the libsel4 item it corresponds to; each struct
//!   layout is checked at compile time against the values the kernel build read
//!   from libsel4's headers.
//!
//! Works in `no_std` on the target and builds on the host (the functions that
//! execute `syscall` are only meaningful inside seL4).
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use core::fmt;
use core::marker::PhantomData;

mod bootinfo;
mod ipc_buffer;
mod syscalls;

pub use bootinfo::{BootInfo, SlotRegion, UntypedDesc};
pub use ipc_buffer::IpcBuffer;
pub use syscalls::*;

include!(concat!(env!("OUT_DIR"), "/generated.rs"));

/// A machine word (`seL4_Word`).
pub type Word = u64;

/// The result of an invocation.
pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seL4_{}", self.name())
    }
}

/// Number of bits the kernel resolves to reach a slot of the root CNode when
/// addressing it by index (`seL4_WordBits`).
pub const WORD_BITS: u8 = layout::WordBits as u8;

/// A capability pointer (`seL4_CPtr`): an address in a CSpace, of no known type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CPtr(pub Word);

impl fmt::Debug for CPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPtr({:#x})", self.0)
    }
}

/// What a [`Cap`] refers to. Implemented by the markers in [`cap_type`].
pub trait CapType: Copy {
    /// The marker's name, for `Debug`.
    const NAME: &'static str;
}

/// A capability pointer that is known to refer to an object of type `T`.
///
/// Invoking an operation of another object type does not compile; convert
/// explicitly with [`Cap::cast`] where the program knows better (for instance
/// after a retype).
pub struct Cap<T: CapType> {
    cptr: CPtr,
    _t: PhantomData<T>,
}

impl<T: CapType> Clone for Cap<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: CapType> Copy for Cap<T> {}
impl<T: CapType> PartialEq for Cap<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cptr == o.cptr
    }
}
impl<T: CapType> Eq for Cap<T> {}
impl<T: CapType> core::hash::Hash for Cap<T> {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.cptr.hash(h)
    }
}

impl<T: CapType> fmt::Debug for Cap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cap<{}>({:#x})", T::NAME, self.cptr.0)
    }
}

impl<T: CapType> Cap<T> {
    /// A capability of type `T` at `cptr`. The caller asserts the type.
    pub const fn from_cptr(cptr: CPtr) -> Self {
        Self { cptr, _t: PhantomData }
    }
    /// A capability of type `T` at slot `index` of the root CNode.
    pub const fn from_bits(index: Word) -> Self {
        Self::from_cptr(CPtr(index))
    }
    /// The untyped capability pointer.
    pub const fn cptr(self) -> CPtr {
        self.cptr
    }
    /// The capability pointer's value.
    pub const fn bits(self) -> Word {
        self.cptr.0
    }
    /// Reinterprets the capability as another type.
    pub const fn cast<U: CapType>(self) -> Cap<U> {
        Cap::from_cptr(self.cptr)
    }
}

impl<T: CapType> From<Cap<T>> for CPtr {
    fn from(c: Cap<T>) -> CPtr {
        c.cptr
    }
}

/// Short names for the capability types this project uses.
pub mod cap {
    use super::{cap_type, Cap};
    /// Untyped memory.
    pub type Untyped = Cap<cap_type::Untyped>;
    /// A thread control block.
    pub type Tcb = Cap<cap_type::Tcb>;
    /// A CNode.
    pub type CNode = Cap<cap_type::CNode>;
    /// A frame of any size (4 KiB, 2 MiB or 1 GiB): `seL4_X86_Page`.
    pub type Frame = Cap<cap_type::X86Page>;
    /// A page table (leaf table of 512 4 KiB entries).
    pub type PageTable = Cap<cap_type::X86PageTable>;
    /// A page directory.
    pub type PageDirectory = Cap<cap_type::X86PageDirectory>;
    /// A page-directory-pointer table.
    pub type Pdpt = Cap<cap_type::X86Pdpt>;
    /// The root of an address space (PML4).
    pub type VSpace = Cap<cap_type::X64Pml4>;
    /// An ASID pool.
    pub type AsidPool = Cap<cap_type::X86AsidPool>;
    /// The ASID control capability.
    pub type AsidControl = Cap<cap_type::X86AsidControl>;
    /// An I/O port range.
    pub type IoPort = Cap<cap_type::X86IoPort>;
    /// An IRQ control capability.
    pub type IrqControl = Cap<cap_type::IrqControl>;
    /// An endpoint. (5.0's XML has no endpoint interface; endpoints are
    /// invoked with the IPC system calls.)
    pub type Endpoint = Cap<super::Endpoint>;
    /// A notification.
    pub type Notification = Cap<super::Notification>;
}

/// Marker for endpoint capabilities (not an XML interface).
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {}
impl CapType for Endpoint {
    const NAME: &'static str = "Endpoint";
}
/// Marker for notification capabilities (not an XML interface).
#[derive(Debug, Clone, Copy)]
pub enum Notification {}
impl CapType for Notification {
    const NAME: &'static str = "Notification";
}
/// Marker for a capability whose type is not known.
#[derive(Debug, Clone, Copy)]
pub enum Unknown {}
impl CapType for Unknown {
    const NAME: &'static str = "Unknown";
}

/// The capabilities the kernel places in the root task's CNode
/// (`seL4_CapInitThreadTCB`, ...), at the slots libsel4 defines.
pub mod init {
    use super::{cap, layout, Cap};
    /// `seL4_CapInitThreadTCB`
    pub const TCB: cap::Tcb = Cap::from_bits(layout::Cap_InitThreadTCB);
    /// `seL4_CapInitThreadCNode`
    pub const CNODE: cap::CNode = Cap::from_bits(layout::Cap_InitThreadCNode);
    /// `seL4_CapInitThreadVSpace`
    pub const VSPACE: cap::VSpace = Cap::from_bits(layout::Cap_InitThreadVSpace);
    /// `seL4_CapIRQControl`
    pub const IRQ_CONTROL: cap::IrqControl = Cap::from_bits(layout::Cap_IRQControl);
    /// `seL4_CapASIDControl`
    pub const ASID_CONTROL: cap::AsidControl = Cap::from_bits(layout::Cap_ASIDControl);
    /// `seL4_CapInitThreadASIDPool`
    pub const ASID_POOL: cap::AsidPool = Cap::from_bits(layout::Cap_InitThreadASIDPool);
    /// `seL4_CapIOPort`: all I/O ports.
    pub const IO_PORT: cap::IoPort = Cap::from_bits(layout::Cap_IOPort);
    /// `seL4_CapBootInfoFrame`
    pub const BOOT_INFO_FRAME: cap::Frame = Cap::from_bits(layout::Cap_BootInfoFrame);
    /// `seL4_CapInitThreadIPCBuffer`
    pub const IPC_BUFFER_FRAME: cap::Frame = Cap::from_bits(layout::Cap_InitThreadIPCBuffer);
}

/// Address of a slot for CNode invocations: the CNode the kernel starts
/// from, the index, and how many bits of the index to resolve
/// (libsel4's `(root, index, depth)` triples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsoluteCPtr {
    /// The CNode the lookup starts at.
    pub root: cap::CNode,
    /// The index resolved from `root`.
    pub index: Word,
    /// Bits of `index` to resolve.
    pub depth: u8,
}

impl AbsoluteCPtr {
    /// Slot `index` of the root task's CNode, resolved with the full word
    /// (the root CNode's guard makes every index a `WORD_BITS` lookup).
    pub const fn root_slot(index: Word) -> Self {
        Self {
            root: init::CNODE,
            index,
            depth: WORD_BITS,
        }
    }
}

/// `seL4_CapRights_t`: the access rights of a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapRights {
    /// `capAllowRead`
    pub read: bool,
    /// `capAllowWrite`
    pub write: bool,
    /// `capAllowGrant`
    pub grant: bool,
}

impl CapRights {
    /// All rights (`seL4_AllRights`).
    pub const ALL: Self = Self {
        read: true,
        write: true,
        grant: true,
    };
    /// Read and write (`seL4_CanReadWrite`... without grant).
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
        grant: false,
    };
    /// Read only.
    pub const READ: Self = Self {
        read: true,
        write: false,
        grant: false,
    };
    /// Write only.
    pub const WRITE: Self = Self {
        read: false,
        write: true,
        grant: false,
    };
    /// No rights.
    pub const NONE: Self = Self {
        read: false,
        write: false,
        grant: false,
    };

    /// The bitfield word, with the field positions of shared_types_64.bf.
    pub const fn into_word(self) -> Word {
        ((self.read as Word) << layout::CapRights_capAllowRead_shift)
            | ((self.write as Word) << layout::CapRights_capAllowWrite_shift)
            | ((self.grant as Word) << layout::CapRights_capAllowGrant_shift)
    }
    /// Decodes the bitfield word.
    pub const fn from_word(w: Word) -> Self {
        Self {
            read: (w >> layout::CapRights_capAllowRead_shift) & 1 != 0,
            write: (w >> layout::CapRights_capAllowWrite_shift) & 1 != 0,
            grant: (w >> layout::CapRights_capAllowGrant_shift) & 1 != 0,
        }
    }
}

/// `seL4_CapData_t`: a badge or a CNode guard, for Mint/Mutate/TCB_Configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapData(Word);

impl CapData {
    /// No change (`seL4_NilData`, an all-zero word).
    pub const NONE: Self = Self(0);
    /// Largest badge this kernel stores.
    pub const MAX_BADGE: Word = (1 << layout::Badge_Badge_bits) - 1;

    /// A badge (`seL4_CapData_Badge_new`); `None` if it does not fit.
    pub const fn badge(badge: Word) -> Option<Self> {
        if badge > Self::MAX_BADGE {
            return None;
        }
        Some(Self(
            (layout::CapDataTag_Badge << layout::Badge_CapDataType_shift) | (badge << layout::Badge_Badge_shift),
        ))
    }
    /// A guard (`seL4_CapData_Guard_new`) of `size` bits with value `bits`.
    pub const fn guard(bits: Word, size: u8) -> Self {
        let mask_bits = (1 << layout::Guard_GuardBits_bits) - 1;
        let mask_size = (1 << layout::Guard_GuardSize_bits) - 1;
        Self(
            (layout::CapDataTag_Guard << layout::Guard_CapDataType_shift)
                | ((bits & mask_bits) << layout::Guard_GuardBits_shift)
                | ((size as Word & mask_size) << layout::Guard_GuardSize_shift),
        )
    }
    /// The raw word.
    pub const fn into_word(self) -> Word {
        self.0
    }
    /// From a raw word.
    pub const fn from_word(w: Word) -> Self {
        Self(w)
    }
}

/// `seL4_PrioProps_t`: priority and maximum controlled priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrioProps {
    /// Priority.
    pub prio: u8,
    /// Maximum controlled priority.
    pub mcp: u8,
}

impl PrioProps {
    /// The bitfield word.
    pub const fn into_word(self) -> Word {
        ((self.prio as Word) << layout::PrioProps_prio_shift) | ((self.mcp as Word) << layout::PrioProps_mcp_shift)
    }
    /// Decodes the bitfield word.
    pub const fn from_word(w: Word) -> Self {
        Self {
            prio: (w >> layout::PrioProps_prio_shift) as u8,
            mcp: (w >> layout::PrioProps_mcp_shift) as u8,
        }
    }
}

bitflags::bitflags! {
    /// `seL4_X86_VMAttributes`: cache attributes of a mapping (values from
    /// libsel4's arch/types.h). The empty set is `seL4_X86_Default_VMAttributes`
    /// (write-back).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct VmAttributes: Word {
        /// `seL4_X86_WriteThrough`
        const WRITE_THROUGH = layout::X86_WriteThrough;
        /// `seL4_X86_CacheDisabled`
        const CACHE_DISABLED = layout::X86_CacheDisabled;
        /// `seL4_X86_WriteCombining`
        const WRITE_COMBINING = layout::X86_WriteCombining;
    }
}

impl VmAttributes {
    /// `seL4_X86_Default_VMAttributes`
    pub const DEFAULT: Self = Self::from_bits_retain(layout::X86_Default_VMAttributes);
    /// `seL4_X86_Uncacheable`
    pub const UNCACHEABLE: Self = Self::from_bits_retain(layout::X86_Uncacheable);
}

/// `seL4_MessageInfo_t`: label, capsUnwrapped, extraCaps and length, at the
/// bit positions of shared_types_64.bf.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo(pub Word);

const fn field(w: Word, shift: u64, bits: u64) -> Word {
    (w >> shift) & ((1 << bits) - 1)
}

impl MessageInfo {
    /// `seL4_MessageInfo_new`; fields wider than their bitfield are truncated.
    pub const fn new(label: Word, caps_unwrapped: Word, extra_caps: Word, length: Word) -> Self {
        use layout::*;
        Self(
            (field(label, 0, MessageInfo_label_bits) << MessageInfo_label_shift)
                | (field(caps_unwrapped, 0, MessageInfo_capsUnwrapped_bits) << MessageInfo_capsUnwrapped_shift)
                | (field(extra_caps, 0, MessageInfo_extraCaps_bits) << MessageInfo_extraCaps_shift)
                | (field(length, 0, MessageInfo_length_bits) << MessageInfo_length_shift),
        )
    }
    /// `seL4_MessageInfo_get_label`
    pub const fn label(self) -> Word {
        field(self.0, layout::MessageInfo_label_shift, layout::MessageInfo_label_bits)
    }
    /// `seL4_MessageInfo_get_length`
    pub const fn length(self) -> Word {
        field(
            self.0,
            layout::MessageInfo_length_shift,
            layout::MessageInfo_length_bits,
        )
    }
    /// `seL4_MessageInfo_get_extraCaps`
    pub const fn extra_caps(self) -> Word {
        field(
            self.0,
            layout::MessageInfo_extraCaps_shift,
            layout::MessageInfo_extraCaps_bits,
        )
    }
    /// `seL4_MessageInfo_get_capsUnwrapped`
    pub const fn caps_unwrapped(self) -> Word {
        field(
            self.0,
            layout::MessageInfo_capsUnwrapped_shift,
            layout::MessageInfo_capsUnwrapped_bits,
        )
    }
}

impl fmt::Debug for MessageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageInfo")
            .field("label", &self.label())
            .field("caps_unwrapped", &self.caps_unwrapped())
            .field("extra_caps", &self.extra_caps())
            .field("length", &self.length())
            .finish()
    }
}

/// Maximum number of message registers (`seL4_MsgMaxLength`).
pub const MSG_MAX_LENGTH: usize = layout::MsgMaxLength as usize;
/// Maximum number of extra capabilities in a message (`seL4_MsgMaxExtraCaps`).
pub const MSG_MAX_EXTRA_CAPS: usize = layout::MsgMaxExtraCaps as usize;
/// Message registers passed in CPU registers (r10, r8, r9, r15).
pub const FAST_MRS: usize = 4;

/// Performs an invocation: `Call` on `service` with `label`, the message
/// words `mrs` and the extra capabilities `caps`; on success the reply's
/// first `out.len()` message words are written to `out`.
///
/// This is what every generated method calls; it corresponds to the body of
/// each libsel4 stub (`seL4_CNode_Copy` and friends).
#[inline]
pub fn invoke(service: CPtr, label: Word, mrs: &[Word], caps: &[CPtr], out: &mut [Word]) -> Result<()> {
    debug_assert!(mrs.len() <= MSG_MAX_LENGTH && caps.len() <= MSG_MAX_EXTRA_CAPS);
    for (i, c) in caps.iter().enumerate() {
        IpcBuffer::set_cap(i, c.0);
    }
    for (i, &v) in mrs.iter().enumerate().skip(FAST_MRS) {
        IpcBuffer::set_mr(i, v);
    }
    let mut regs = [0; FAST_MRS];
    for (r, &v) in regs.iter_mut().zip(mrs) {
        *r = v;
    }
    let info = MessageInfo::new(label, 0, caps.len() as Word, mrs.len() as Word);
    let (reply, regs, _badge) = call(service, info, regs);
    if let Some(e) = Error::from_word(reply.label()) {
        return Err(e);
    }
    if reply.label() != 0 {
        // A label that is no seL4_Error: the kernel and this crate disagree.
        return Err(Error::IllegalOperation);
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = if i < FAST_MRS { regs[i] } else { IpcBuffer::mr(i) };
    }
    Ok(())
}

/// Object sizes (`seL4_*Bits`), from libsel4's headers.
pub mod size_bits {
    use super::layout;
    /// 4 KiB frame.
    pub const PAGE: usize = layout::PageBits as usize;
    /// 2 MiB frame.
    pub const LARGE_PAGE: usize = layout::LargePageBits as usize;
    /// 1 GiB frame.
    pub const HUGE_PAGE: usize = layout::HugePageBits as usize;
    /// One CNode slot.
    pub const SLOT: usize = layout::SlotBits as usize;
    /// TCB.
    pub const TCB: usize = layout::TCBBits as usize;
    /// Endpoint.
    pub const ENDPOINT: usize = layout::EndpointBits as usize;
    /// Notification.
    pub const NOTIFICATION: usize = layout::NotificationBits as usize;
    /// Page table.
    pub const PAGE_TABLE: usize = layout::PageTableBits as usize;
    /// Page directory.
    pub const PAGE_DIRECTORY: usize = layout::PageDirBits as usize;
    /// PDPT.
    pub const PDPT: usize = layout::PDPTBits as usize;
    /// PML4.
    pub const PML4: usize = layout::PML4Bits as usize;
    /// ASID pool.
    pub const ASID_POOL: usize = layout::ASIDPoolBits as usize;
    /// Smallest untyped.
    pub const MIN_UNTYPED: usize = layout::MinUntypedBits as usize;
    /// Largest untyped.
    pub const MAX_UNTYPED: usize = layout::MaxUntypedBits as usize;
}

/// Fault message formats (`seL4_Fault_*` labels and `seL4_VMFault_*` words).
pub mod fault {
    use super::layout;
    use super::Word;
    /// Label of a VM fault message (`seL4_Fault_VMFault`).
    pub const VM_FAULT: Word = layout::Fault_VMFault;
    /// Label of a capability fault message.
    pub const CAP_FAULT: Word = layout::Fault_CapFault;
    /// Label of an unknown-syscall fault message.
    pub const UNKNOWN_SYSCALL: Word = layout::Fault_UnknownSyscall;
    /// Label of a user-exception fault message.
    pub const USER_EXCEPTION: Word = layout::Fault_UserException;
    /// Word index of the faulting instruction pointer in a VM fault.
    pub const VM_FAULT_IP: usize = layout::VMFault_IP as usize;
    /// Word index of the faulting address in a VM fault.
    pub const VM_FAULT_ADDR: usize = layout::VMFault_Addr as usize;
    /// Word index of the prefetch (instruction fetch) flag in a VM fault.
    pub const VM_FAULT_PREFETCH: usize = layout::VMFault_PrefetchFault as usize;
    /// Word index of the fault status (x86 error code) in a VM fault.
    pub const VM_FAULT_FSR: usize = layout::VMFault_FSR as usize;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn message_info_round_trips_every_field() {
        let m = MessageInfo::new(label::CNodeCopy, 5, 2, 77);
        assert_eq!(
            (m.label(), m.caps_unwrapped(), m.extra_caps(), m.length()),
            (label::CNodeCopy, 5, 2, 77)
        );
        // Fields are truncated to their bitfield width, never spill into neighbours.
        let t = MessageInfo::new(0, 0, 0, 1 << layout::MessageInfo_length_bits);
        assert_eq!(t.0, 0);
    }

    #[test]
    fn cap_rights_round_trip() {
        for r in [
            CapRights::ALL,
            CapRights::READ,
            CapRights::WRITE,
            CapRights::NONE,
            CapRights::READ_WRITE,
        ] {
            assert_eq!(CapRights::from_word(r.into_word()), r);
        }
        assert_eq!(CapRights::ALL.into_word().count_ones(), 3);
    }

    #[test]
    fn badges_beyond_the_field_are_refused() {
        assert!(CapData::badge(CapData::MAX_BADGE).is_some());
        assert!(CapData::badge(CapData::MAX_BADGE + 1).is_none());
        assert_eq!(
            CapData::badge(0).unwrap().into_word(),
            0,
            "a zero badge is seL4_NilData"
        );
    }

    #[test]
    fn errors_map_both_ways() {
        for v in 1..layout::NumErrors {
            let e = Error::from_word(v).expect("every seL4_Error value has a variant");
            assert_eq!(e as u64, v);
        }
        assert_eq!(Error::from_word(0), None);
        assert_eq!(Error::from_word(layout::NumErrors), None);
    }

    #[test]
    fn labels_are_numbered_in_xml_order() {
        // The kernel numbers invocations in order of appearance; the x86_64
        // (sel4_arch) labels follow the generic ones, the x86 (arch) labels
        // follow those.
        assert_eq!(label::InvalidInvocation, 0);
        assert_eq!(label::UntypedRetype, 1);
        const { assert!(label::X86PDPTMap >= label::nInvocationLabels) };
        const { assert!(label::X86PageMap > label::X86PDPTMap) };
        assert_eq!(label::CNodeMint, label::CNodeCopy + 1);
    }

    #[test]
    fn typed_caps_keep_their_pointer() {
        let c: cap::Frame = Cap::from_bits(42);
        assert_eq!(c.cptr(), CPtr(42));
        assert_eq!(CPtr::from(c.cast::<cap_type::Untyped>()), CPtr(42));
        assert_eq!(std::format!("{c:?}"), "Cap<X86Page>(0x2a)");
    }
}
