//! Access rights and cache attributes of a mapping, as plain values: the seL4 layer translates them to
//! `seL4_CapRights` words and `seL4_X86_VMAttributes`.
//!
//! [`Rights`] is the rights type every crate of the manager shares (`mm-types`). A mapping honours `READ`
//! and `WRITE` (user threads may read and execute; write, which needs read); `GRANT` and `EXECUTE` have no
//! effect on a mapping (seL4 5.0's rights word has no execute bit on x86: every user page is executable),
//! and the shadow records the rights as given. Operations refuse `WRITE` without `READ`
//! ([`Rights::is_valid`]): x86 cannot express write-only pages (the kernel would silently make such a page
//! inaccessible). No right at all is allowed: the page is then mapped kernel-only, which a user thread
//! sees as a fault. The kernel masks the rights asked for with the frame cap's own rights: the caller
//! provides caps that carry at least the rights it asks for, or the shadow and the hardware disagree.

pub use mm_types::Rights;

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
