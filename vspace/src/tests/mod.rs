//! Tests against [`MockKernel`]: unit tests per operation and refusal, and property tests of random
//! operation sequences with failure injection.

mod fast;
mod prop;
mod shadow;
mod unit;

use std::collections::BTreeSet;
use std::vec::Vec;

use crate::mock::MockKernel;
use crate::*;

/// A kernel and one space in it.
pub(crate) fn setup() -> (MockKernel, AddressSpace) {
    let mut k = MockKernel::new();
    let s = AddressSpace::create(&mut k).expect("create");
    (k, s)
}

/// `n` pages of size `S` from `start`.
pub(crate) fn range<S: PageSize>(start: u64, n: u64) -> PageRange<S> {
    PageRange::from_count(Page::from_start_address(start).expect("aligned"), n).expect("range")
}

/// `n` new frames of `size`.
pub(crate) fn frames(k: &mut MockKernel, size: FrameSize, n: usize) -> Vec<CapRef> {
    (0..n).map(|_| k.new_frame(size)).collect()
}

/// Everything observable about a space and the kernel, to check that a refusal or a rollback changed
/// nothing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Snapshot {
    mappings: Vec<Mapping>,
    tables: Vec<TableInfo>,
    stats: SpaceStats,
    kernel_mappings: Vec<mock::Translation>,
    kernel_tables: [usize; 3],
    live_tables: [usize; 3],
    mapped_caps: Vec<CapRef>,
}

pub(crate) fn snapshot(k: &MockKernel, s: &AddressSpace) -> Snapshot {
    let mut mappings: Vec<Mapping> = s.mappings().collect();
    mappings.sort_by_key(|m| m.vaddr);
    let mut tables: Vec<TableInfo> = s.tables().collect();
    tables.sort_by_key(|t| (t.level, t.base));
    Snapshot {
        mappings,
        tables,
        stats: s.stats(),
        kernel_mappings: k.mappings_in(s.root()),
        kernel_tables: k.tables_in(s.root()),
        live_tables: k.live_tables(),
        mapped_caps: k.mapped_frame_caps(),
    }
}

/// The shadow is sound and equals the kernel: the same pages with the same frames, rights and
/// attributes; the same tables; the same mapped caps. `only_space`: the kernel holds no other space, so
/// its live objects must all belong to this one (no leak).
pub(crate) fn assert_consistent(k: &MockKernel, s: &AddressSpace, only_space: bool) {
    s.check().expect("shadow invariants");
    let mut mine: Vec<Mapping> = s.mappings().collect();
    mine.sort_by_key(|m| m.vaddr);
    let theirs = k.mappings_in(s.root());
    assert_eq!(
        mine.len(),
        theirs.len(),
        "number of mappings: shadow {mine:?} kernel {theirs:?}"
    );
    for (m, t) in mine.iter().zip(&theirs) {
        assert_eq!(m.vaddr.as_u64(), t.page_vaddr, "page address");
        assert_eq!(m.size, t.size, "size at {:?}", m.vaddr);
        assert_eq!(k.frame_paddr(m.frame), Some(t.frame_paddr), "frame at {:?}", m.vaddr);
        assert_eq!(m.rights, t.rights, "rights at {:?}", m.vaddr);
        assert_eq!(m.attr, t.attr, "attr at {:?}", m.vaddr);
        assert!(k.is_mapped(m.frame), "cap of {:?} not mapped in the kernel", m.vaddr);
    }
    let stats = s.stats();
    assert_eq!(
        k.tables_in(s.root()),
        stats.tables,
        "tables reachable in the kernel vs shadow"
    );
    for t in s.tables() {
        assert_eq!(
            k.table_at(s.root(), t.level, t.base.as_u64()),
            Some(t.cap),
            "table {t:?} not in the kernel tree"
        );
    }
    if only_space {
        assert_eq!(k.live_tables(), stats.tables, "live table objects vs shadow (leak?)");
        let caps: BTreeSet<CapRef> = s.mappings().map(|m| m.frame).collect();
        let kcaps: BTreeSet<CapRef> = k.mapped_frame_caps().into_iter().collect();
        assert_eq!(caps, kcaps, "mapped caps");
    }
}

/// Compares lookups of sampled addresses with what a thread sees.
pub(crate) fn assert_lookups_agree(k: &MockKernel, s: &AddressSpace, addrs: impl IntoIterator<Item = u64>) {
    for a in addrs {
        let Ok(v) = VirtAddr::try_new(a) else { continue };
        let mine = s.lookup(v);
        let theirs = k.translate(s.root(), a);
        match (mine, theirs) {
            (None, None) => {}
            (Some(m), Some(t)) => {
                assert_eq!(
                    k.frame_paddr(m.frame).map(|p| p + (a - m.vaddr.as_u64())),
                    Some(t.paddr),
                    "at {a:#x}"
                );
                assert_eq!((m.size, m.rights, m.attr), (t.size, t.rights, t.attr), "at {a:#x}");
            }
            (m, t) => panic!("lookup {a:#x}: shadow {m:?} kernel {t:?}"),
        }
    }
}
