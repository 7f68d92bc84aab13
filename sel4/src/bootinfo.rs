//! `seL4_BootInfo`: what the kernel tells the root task at start-up.

use crate::{layout, Word};
use core::mem::{offset_of, size_of};

/// `seL4_SlotRegion`: slots `start..end` of the root CNode.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRegion {
    /// First slot of the region.
    pub start: Word,
    /// First slot after the region.
    pub end: Word,
}

impl SlotRegion {
    /// The slots, as a range.
    pub fn range(&self) -> core::ops::Range<Word> {
        self.start..self.end
    }
    /// Number of slots.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `seL4_UntypedDesc`: one boot untyped.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntypedDesc {
    /// Physical address.
    pub paddr: Word,
    padding1: u8,
    padding2: u8,
    /// The untyped is 2^size_bits bytes.
    pub size_bits: u8,
    /// Device memory (1) or RAM (0).
    pub is_device: u8,
}

impl UntypedDesc {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        1u64 << self.size_bits
    }
    /// Whether this is device memory (not RAM).
    pub fn device(&self) -> bool {
        self.is_device != 0
    }
}

/// `seL4_BootInfo` (5.0.0 layout, packed as in libsel4).
#[repr(C, packed)]
pub struct BootInfo {
    /// `extraLen`
    pub extra_len: Word,
    /// `nodeID`: this node, 0-based.
    pub node_id: Word,
    /// `numNodes`: cores the kernel runs on.
    pub num_nodes: Word,
    /// `numIOPTLevels`
    pub num_iopt_levels: Word,
    /// `ipcBuffer`: the root task's IPC buffer.
    pub ipc_buffer: Word,
    /// `empty`: free slots of the root CNode.
    pub empty: SlotRegion,
    /// `sharedFrames`
    pub shared_frames: SlotRegion,
    /// `userImageFrames`: frames of the root task's image.
    pub user_image_frames: SlotRegion,
    /// `userImagePaging`: paging structures of the root task's image.
    pub user_image_paging: SlotRegion,
    /// `ioSpaceCaps`
    pub io_space_caps: SlotRegion,
    /// `extraBIPages`
    pub extra_bi_pages: SlotRegion,
    /// `initThreadCNodeSizeBits`
    pub init_thread_cnode_size_bits: u8,
    /// `initThreadDomain`
    pub init_thread_domain: Word,
    /// `archInfo`: TSC frequency (kHz) on x86.
    pub arch_info: Word,
    /// `untyped`: the slots holding the untyped caps.
    pub untyped: SlotRegion,
    /// `untypedList`: one descriptor per untyped cap, in slot order.
    pub untyped_list: [UntypedDesc; sel4_config::MAX_NUM_BOOTINFO_UNTYPED_CAPS],
}

impl BootInfo {
    /// The descriptors of the untypeds the kernel handed over.
    pub fn untyped_descs(&self) -> &[UntypedDesc] {
        let n = self.untyped.len().min(sel4_config::MAX_NUM_BOOTINFO_UNTYPED_CAPS);
        // SAFETY: untyped_list is an array of packed (align 1) descriptors;
        // taking a slice of align-1 elements from a packed struct is sound.
        let list = unsafe { &*core::ptr::addr_of!(self.untyped_list) };
        &list[..n]
    }
}

// The layout above must be libsel4's, byte for byte.
macro_rules! check {
    ($t:ty, $f:ident, $c:ident) => {
        const _: () = assert!(
            offset_of!($t, $f) as u64 == layout::$c,
            concat!(stringify!($t), ".", stringify!($f))
        );
    };
}
check!(BootInfo, extra_len, BootInfo_extraLen);
check!(BootInfo, node_id, BootInfo_nodeID);
check!(BootInfo, num_nodes, BootInfo_numNodes);
check!(BootInfo, num_iopt_levels, BootInfo_numIOPTLevels);
check!(BootInfo, ipc_buffer, BootInfo_ipcBuffer);
check!(BootInfo, empty, BootInfo_empty);
check!(BootInfo, shared_frames, BootInfo_sharedFrames);
check!(BootInfo, user_image_frames, BootInfo_userImageFrames);
check!(BootInfo, user_image_paging, BootInfo_userImagePaging);
check!(BootInfo, io_space_caps, BootInfo_ioSpaceCaps);
check!(BootInfo, extra_bi_pages, BootInfo_extraBIPages);
check!(BootInfo, init_thread_cnode_size_bits, BootInfo_initThreadCNodeSizeBits);
check!(BootInfo, init_thread_domain, BootInfo_initThreadDomain);
check!(BootInfo, arch_info, BootInfo_archInfo);
check!(BootInfo, untyped, BootInfo_untyped);
check!(BootInfo, untyped_list, BootInfo_untypedList);
check!(UntypedDesc, paddr, UntypedDesc_paddr);
check!(UntypedDesc, size_bits, UntypedDesc_sizeBits);
check!(UntypedDesc, is_device, UntypedDesc_isDevice);
const _: () = assert!(size_of::<BootInfo>() as u64 == layout::BootInfo_size);
const _: () = assert!(size_of::<UntypedDesc>() as u64 == layout::UntypedDesc_size);
// The IPC buffer accessors use libsel4's offsets directly; check the shape
// they rely on (message registers are consecutive words after the tag).
const _: () = assert!(layout::IPCBuffer_msg + 8 * layout::MsgMaxLength == layout::IPCBuffer_userData);
