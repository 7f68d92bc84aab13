//! Access rights and cache attributes of a mapping, as plain values: the seL4 layer translates them to
//! `seL4_CapRights` words and `seL4_X86_VMAttributes`.

use bitflags::bitflags;

bitflags! {
    /// The access a user thread gets to a mapped page.
    ///
    /// seL4 5.0's rights word has no execute bit on x86 (every user page is executable), so there is none
    /// here. x86 cannot express write-only pages (the kernel would silently make such a page inaccessible),
    /// so operations refuse `WRITE` without `READ`. No right at all is allowed: the page is then mapped
    /// kernel-only, which a user thread sees as a fault.
    ///
    /// The kernel masks the rights asked for with the frame cap's own rights: the caller provides caps that
    /// carry at least the rights it asks for, or the shadow and the hardware disagree.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct Rights: u8 {
        /// User threads may read (and execute).
        const READ = 1 << 0;
        /// User threads may write; needs `READ`.
        const WRITE = 1 << 1;
    }
}

impl Rights {
    /// Read and write.
    pub const READ_WRITE: Rights = Rights::READ.union(Rights::WRITE);

    /// Whether x86 can express these rights (not `WRITE` without `READ`).
    #[inline]
    pub const fn is_valid(self) -> bool {
        !self.contains(Rights::WRITE) || self.contains(Rights::READ)
    }
}

/// The cache attribute of a mapping (`seL4_X86_VMAttributes`; the seL4 layer converts).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum CacheAttr {
    /// Write-back, the default (`seL4_X86_WriteBack`).
    #[default]
    WriteBack,
    /// Write-through (`seL4_X86_WriteThrough`).
    WriteThrough,
    /// Cache disabled, PCD set (`seL4_X86_CacheDisabled`).
    CacheDisabled,
    /// Uncacheable, strong UC (`seL4_X86_Uncacheable`).
    Uncacheable,
    /// Write-combining through the PAT (`seL4_X86_WriteCombining`).
    WriteCombining,
}

impl CacheAttr {
    /// Every attribute.
    pub const ALL: [CacheAttr; 5] = [
        CacheAttr::WriteBack,
        CacheAttr::WriteThrough,
        CacheAttr::CacheDisabled,
        CacheAttr::Uncacheable,
        CacheAttr::WriteCombining,
    ];
}
