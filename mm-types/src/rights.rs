//! Access rights, of a capability and of a mapping.

use bitflags::bitflags;

bitflags! {
    /// Access rights: one set of bits for a capability's rights and a mapping's; each use honours its own.
    ///
    /// | bit | right | cap operations (cspace) | mappings (vspace) | mapping database |
    /// |---|---|---|---|---|
    /// | 0 | [`READ`](Rights::READ) | `capAllowRead` | read (and execute) | recorded |
    /// | 1 | [`WRITE`](Rights::WRITE) | `capAllowWrite` | write; needs `READ` | recorded |
    /// | 2 | [`GRANT`](Rights::GRANT) | `capAllowGrant` | no effect | recorded |
    /// | 3 | [`EXECUTE`](Rights::EXECUTE) | no effect | no effect | recorded |
    ///
    /// - **Cap operations** (`CNode_Copy`, `CNode_Mint`, the copies of `X86PageTable_CopyMapRun`) take seL4
    ///   5.0's `seL4_CapRights_t`: read, write, grant. seL4 5.0 has no execute right; the seL4-facing layer
    ///   passes `READ`, `WRITE` and `GRANT` and drops `EXECUTE`. [`Rights::ALL_CAP`] is `seL4_AllRights`.
    /// - **Mappings** (`X86Page_Map`, `X86Page_Remap`, the run invocations): the access a user thread gets
    ///   to a mapped page. seL4 5.0's rights word has no execute bit on x86 (every user page is executable)
    ///   and a map ignores grant: the seL4-facing layer passes `READ` and `WRITE` only, and vspace's shadow
    ///   records the rights as given. x86 cannot express write-only pages (the kernel would silently make
    ///   such a page inaccessible), so vspace refuses `WRITE` without `READ` ([`Rights::is_valid`]). No
    ///   right at all is allowed: the page is then mapped kernel-only, which a user thread sees as a fault.
    ///   The kernel masks the rights asked for with the frame cap's own rights: the caller provides caps
    ///   that carry at least the rights it asks for, or the shadow and the hardware disagree.
    /// - **The mapping database** records each mapping's rights as given (seL4's `seL4_CapRights` as used
    ///   by `X86Page_Map`, plus execute) and compares them as sets (a clone may not ask for rights its
    ///   source lacks).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
    pub struct Rights: u8 {
        /// `capAllowRead`; of a mapping: user threads may read (and execute).
        const READ = 1 << 0;
        /// `capAllowWrite`; of a mapping: user threads may write (needs `READ`).
        const WRITE = 1 << 1;
        /// `capAllowGrant`: a capability's right to send caps (no effect on a mapping).
        const GRANT = 1 << 2;
        /// Of a mapping: code on the page can be executed (clear: the NX bit is set). Recorded by the
        /// mapping database; neither seL4 5.0's cap rights nor its x86 mappings have it.
        const EXECUTE = 1 << 3;
    }
}

impl Rights {
    /// Read and write.
    pub const READ_WRITE: Rights = Rights::READ.union(Rights::WRITE);

    /// `seL4_AllRights`: every right a capability can carry (read, write, grant).
    pub const ALL_CAP: Rights = Rights::READ.union(Rights::WRITE).union(Rights::GRANT);

    /// Whether x86 can map these rights (not `WRITE` without `READ`): what vspace validates.
    #[inline]
    pub const fn is_valid(self) -> bool {
        !self.contains(Rights::WRITE) || self.contains(Rights::READ)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_and_constants() {
        assert!(!Rights::WRITE.is_valid());
        assert!(Rights::empty().is_valid() && Rights::READ.is_valid() && Rights::READ_WRITE.is_valid());
        assert!(Rights::ALL_CAP.contains(Rights::GRANT) && !Rights::ALL_CAP.contains(Rights::EXECUTE));
        // Four distinct bits: grant and execute never share one.
        assert_eq!(Rights::all().bits().count_ones(), 4);
    }
}
