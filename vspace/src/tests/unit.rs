//! Unit tests: every operation and every refusal, against the mock kernel.

use std::collections::BTreeSet;
use std::vec;
use std::vec::Vec;

use super::{assert_consistent, assert_lookups_agree, frames, range, setup, snapshot};
use crate::mock::MockKernel;
use crate::*;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const K4: u64 = 4096;
const RW: Rights = Rights::READ_WRITE;
const WB: CacheAttr = CacheAttr::WriteBack;

// ----- types -----

#[test]
fn pages_are_built_aligned_only() {
    assert!(Page::<Size4K>::from_start_address(0x1000).is_ok());
    assert_eq!(
        Page::<Size2M>::from_start_address(0x1000),
        Err(AddressNotAligned {
            addr: 0x1000,
            size: FrameSize::Large
        })
    );
    assert!(Page::<Size1G>::from_start_address(GIB + MIB2).is_err());
    assert_eq!(Page::<Size2M>::containing_address(0x40_1234).start_address(), 0x40_0000);
    let r = range::<Size4K>(0x1000, 3);
    assert_eq!(r.len(), 3);
    assert_eq!(r.bounds(), (0x1000, 0x4000));
    assert_eq!(
        r.iter().map(|p| p.start_address()).collect::<Vec<_>>(),
        vec![0x1000, 0x2000, 0x3000]
    );
    let p = Page::<Size4K>::from_start_address(0x5000).unwrap();
    assert!(Page::range(p, p).is_empty());
    assert!(PageRange::from_count(Page::<Size1G>::from_start_address(0).unwrap(), u64::MAX).is_none());
    assert_eq!(format!("{p:?}"), "Page<4KiB>(0x5000)");
}

#[test]
fn virt_addr_constructors() {
    assert_eq!(VirtAddr::try_new(USER_VADDR_END), Err(VirtAddrNotUser(USER_VADDR_END)));
    assert_eq!(VirtAddr::try_new(0).map(VirtAddr::as_u64), Ok(0));
    assert_eq!(VirtAddr::new(USER_VADDR_END - 1).as_u64(), USER_VADDR_END - 1);
    assert_eq!(VirtAddr::new_unchecked(u64::MAX).as_u64(), u64::MAX);
    assert!(std::panic::catch_unwind(|| VirtAddr::new(1 << 47)).is_err());
}

#[test]
fn levels_and_sizes_agree() {
    assert_eq!(Size4K::LEVEL, FrameSize::Small.level());
    assert_eq!(Size2M::LEVEL, FrameSize::Large.level());
    assert_eq!(Size1G::LEVEL, FrameSize::Huge.level());
    for s in FrameSize::ALL {
        assert_eq!(s.level().entry_bits(), s.bits());
    }
    assert_eq!(TableLevel::Pt.index_of(0x20_3000), 3);
    assert_eq!(TableLevel::Pd.base_of(GIB + 5), GIB);
    assert!(!(Rights::WRITE).is_valid());
    assert!(Rights::empty().is_valid() && Rights::READ.is_valid() && RW.is_valid());
}

// ----- create / destroy -----

#[test]
fn create_and_destroy_empty() {
    let (mut k, s) = setup();
    assert_eq!(k.live_roots(), 1);
    let t = s.destroy(&mut k).unwrap();
    assert!(t.frames.is_empty());
    assert_eq!(t.tables_freed, 0);
    assert_eq!(k.live_roots(), 0);
}

#[test]
fn create_failures_leave_nothing() {
    let mut k = MockKernel::new();
    k.fail_call(0, KernelFailure::NotEnoughMemory);
    assert_eq!(
        AddressSpace::create(&mut k).unwrap_err(),
        CreateError {
            op: KernelOp::AllocRoot,
            failure: KernelFailure::NotEnoughMemory
        }
    );
    k.set_asid_limit(1);
    let a = AddressSpace::create(&mut k).unwrap();
    let e = AddressSpace::create(&mut k).unwrap_err();
    assert_eq!(
        e,
        CreateError {
            op: KernelOp::AssignAsid,
            failure: KernelFailure::DeleteFirst
        }
    );
    assert_eq!(k.live_roots(), 1, "the second root was freed");
    let _ = a.destroy(&mut k).unwrap();
    let b = AddressSpace::create(&mut k).unwrap();
    let _ = b.destroy(&mut k).unwrap();
    assert_eq!(k.live_roots(), 0);
}

// ----- map -----

#[test]
fn map_one_small_page() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 1);
    s.map(&mut k, range::<Size4K>(0x40_0000, 1), &f, RW, WB).unwrap();
    assert_eq!(s.stats().tables, [1, 1, 1]);
    assert_eq!(k.stats().tables_allocated, [1, 1, 1]);
    let m = s.lookup(VirtAddr::new(0x40_0abc)).unwrap();
    assert_eq!(
        (m.vaddr.as_u64(), m.size, m.frame, m.rights, m.attr),
        (0x40_0000, FrameSize::Small, f[0], RW, WB)
    );
    assert_eq!(s.mapping_of(f[0]), Some(m));
    assert!(s.lookup(VirtAddr::new(0x40_1000)).is_none());
    assert_consistent(&k, &s, true);
    assert_lookups_agree(&k, &s, [0, 0x3f_ffff, 0x40_0000, 0x40_0fff, 0x40_1000]);
}

#[test]
fn map_groups_runs_per_leaf_table() {
    let (mut k, mut s) = setup();
    // 1024 pages from a 2 MiB boundary: two full PTs, two runs.
    let f = frames(&mut k, FrameSize::Small, 1024);
    let before = k.stats();
    s.map(&mut k, range::<Size4K>(GIB, 1024), &f, RW, WB).unwrap();
    let after = k.stats();
    assert_eq!(after.map_runs - before.map_runs, 2);
    // 3 allocs + 3 maps for PDPT, PD, PT; 1 + 1 for the second PT; then one call per page.
    assert_eq!(after.calls - before.calls, 8 + 1024);
    assert_eq!(s.stats().tables, [1, 1, 2]);
    assert_consistent(&k, &s, true);
    // Six pages straddling a PT boundary: two runs, one new PT.
    let f = frames(&mut k, FrameSize::Small, 6);
    let before = k.stats();
    s.map(
        &mut k,
        range::<Size4K>(GIB + 3 * MIB2 - 3 * K4, 6),
        &f,
        Rights::READ,
        WB,
    )
    .unwrap();
    assert_eq!(k.stats().map_runs - before.map_runs, 2);
    assert_eq!(s.stats().tables, [1, 1, 4]);
    assert_consistent(&k, &s, true);
    // Unmapping all of it: one unmap run per leaf table touched.
    let before = k.stats();
    let out = s.unmap(&mut k, range::<Size4K>(GIB, 2048)).unwrap();
    assert_eq!(out.len(), 1030);
    assert_eq!(k.stats().unmap_runs - before.unmap_runs, 4);
    assert_eq!(s.stats().total_tables(), 0);
    assert_consistent(&k, &s, true);
}

#[test]
fn runs_split_where_rights_differ() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 4);
    let mut b = s.map_batch();
    b.add(range::<Size4K>(0x10_0000, 2), &f[..2], RW, WB).unwrap();
    b.add(range::<Size4K>(0x10_2000, 2), &f[2..], Rights::READ, WB).unwrap();
    assert_eq!((b.len(), b.tables_needed()), (4, 3));
    let before = k.stats().map_runs;
    b.commit(&mut k).unwrap();
    assert_eq!(k.stats().map_runs - before, 2);
    assert_eq!(s.lookup(VirtAddr::new(0x10_3000)).unwrap().rights, Rights::READ);
    assert_consistent(&k, &s, true);
}

#[test]
fn large_and_huge_pages_need_no_lower_tables() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Large, 3);
    s.map(&mut k, range::<Size2M>(4 * GIB, 3), &f, RW, CacheAttr::WriteCombining)
        .unwrap();
    assert_eq!(s.stats().tables, [1, 1, 0]);
    assert_eq!(s.stats().frames, [0, 3, 0]);
    let g = frames(&mut k, FrameSize::Huge, 2);
    s.map(
        &mut k,
        range::<Size1G>(8 * GIB, 2),
        &g,
        Rights::READ,
        CacheAttr::Uncacheable,
    )
    .unwrap();
    assert_eq!(s.stats().tables, [1, 1, 0], "1 GiB pages sit in the PDPT");
    assert_eq!(s.lookup(VirtAddr::new(9 * GIB + 12345)).unwrap().frame, g[1]);
    assert_eq!(s.lookup(VirtAddr::new(4 * GIB + MIB2 + 7)).unwrap().frame, f[1]);
    assert_consistent(&k, &s, true);
    assert_lookups_agree(&k, &s, (0..40).map(|i| 4 * GIB + i * (GIB / 8) + 0x123));
    let t = s.destroy(&mut k).unwrap();
    assert_eq!(t.frames.len(), 5);
    assert_eq!(t.tables_freed, 2);
    assert_eq!(k.live_tables(), [0, 0, 0]);
}

#[test]
fn mixed_sizes_in_one_batch() {
    let (mut k, mut s) = setup();
    let small = frames(&mut k, FrameSize::Small, 3);
    let large = frames(&mut k, FrameSize::Large, 1);
    let huge = frames(&mut k, FrameSize::Huge, 1);
    let mut b = s.map_batch();
    b.add(range::<Size1G>(GIB, 1), &huge, RW, WB).unwrap();
    b.add(range::<Size2M>(2 * GIB, 1), &large, RW, WB).unwrap();
    b.add(range::<Size4K>(2 * GIB + MIB2, 3), &small, RW, WB).unwrap();
    // Refused inside the batch: overlaps a page added before.
    assert_eq!(
        b.add(
            range::<Size4K>(GIB + K4, 1),
            &frames(&mut k, FrameSize::Small, 1),
            RW,
            WB
        ),
        Err(MapError::Overlap {
            vaddr: VirtAddr::new(GIB + K4)
        })
    );
    assert_eq!(
        b.add(
            range::<Size2M>(2 * GIB + MIB2, 1),
            &frames(&mut k, FrameSize::Large, 1),
            RW,
            WB
        ),
        Err(MapError::Overlap {
            vaddr: VirtAddr::new(2 * GIB + MIB2)
        }),
        "a PT planned by the batch is in that entry"
    );
    assert_eq!(
        b.add(range::<Size4K>(3 * GIB, 1), &small[..1], RW, WB),
        Err(MapError::FrameAlreadyMapped { frame: small[0] })
    );
    assert_eq!(b.len(), 5);
    b.commit(&mut k).unwrap();
    assert_eq!(s.stats().frames, [3, 1, 1]);
    assert_eq!(s.stats().tables, [1, 1, 1]);
    assert_consistent(&k, &s, true);
}

#[test]
fn dropped_or_cancelled_batch_maps_nothing() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 2);
    let calls = k.stats().calls;
    let mut b = s.map_batch();
    b.add(range::<Size4K>(0x1000, 2), &f, RW, WB).unwrap();
    b.cancel();
    let b = s.map_batch();
    assert!(b.is_empty());
    b.commit(&mut k).unwrap();
    assert_eq!(k.stats().calls, calls);
    assert_eq!(s.stats(), SpaceStats::default());
}

// ----- refusals -----

/// Runs a refused map and checks it made no kernel call and changed nothing.
fn refused<S: PageSize>(
    k: &mut MockKernel,
    s: &mut AddressSpace,
    r: PageRange<S>,
    f: &[CapRef],
    rights: Rights,
) -> MapError {
    let before = snapshot(k, s);
    let calls = k.stats().calls;
    let e = s.map(k, r, f, rights, WB).unwrap_err();
    assert_eq!(k.stats().calls, calls, "a refusal made a kernel call");
    assert_eq!(snapshot(k, s), before, "a refusal changed the state");
    e
}

#[test]
fn refusals_change_nothing() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 4);
    s.map(&mut k, range::<Size4K>(0x20_0000, 2), &f[..2], RW, WB).unwrap();
    let g = frames(&mut k, FrameSize::Small, 2);
    let large = frames(&mut k, FrameSize::Large, 1);
    let huge = frames(&mut k, FrameSize::Huge, 1);
    let p = Page::<Size4K>::from_start_address(0x9000).unwrap();
    assert_eq!(
        refused(&mut k, &mut s, Page::range(p, p), &[], RW),
        MapError::EmptyRange
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(0x9000, 1), &g[..1], Rights::WRITE),
        MapError::WriteWithoutRead
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(0x9000, 2), &g[..1], RW),
        MapError::FrameCountMismatch { pages: 2, frames: 1 }
    );
    // Page 0 is the null guard; the last page below 2^47 is outside the limit; so is anything above.
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(0, 2), &g, RW),
        MapError::OutsideUserRange { start: 0, end: 0x2000 }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size2M>(0, 1), &large, RW),
        MapError::OutsideUserRange { start: 0, end: MIB2 }
    );
    assert!(matches!(
        refused(&mut k, &mut s, range::<Size4K>(USER_VADDR_END, 1), &g[..1], RW),
        MapError::OutsideUserRange { .. }
    ));
    assert!(matches!(
        refused(&mut k, &mut s, range::<Size4K>(USER_VADDR_END - K4, 2), &g, RW),
        MapError::OutsideUserRange { .. }
    ));
    assert!(matches!(
        refused(&mut k, &mut s, range::<Size1G>((1 << 47) - GIB, 1), &huge, RW),
        MapError::OutsideUserRange { .. }
    ));
    assert!(matches!(
        refused(&mut k, &mut s, range::<Size4K>(1 << 63, 1), &g[..1], RW),
        MapError::OutsideUserRange { .. }
    ));
    // Overlaps.
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(0x1f_f000, 2), &g, RW),
        MapError::Overlap {
            vaddr: VirtAddr::new(0x20_0000)
        }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size2M>(0x20_0000, 1), &large, RW),
        MapError::Overlap {
            vaddr: VirtAddr::new(0x20_0000)
        }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size1G>(0, 1), &huge, RW),
        MapError::OutsideUserRange { start: 0, end: GIB }
    );
    // Caps mapped already, or twice in one request.
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(0x9000, 1), &f[..1], RW),
        MapError::FrameAlreadyMapped { frame: f[0] }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(0x9000, 2), &[f[2], f[2]], RW),
        MapError::FrameAlreadyMapped { frame: f[2] }
    );
    assert_consistent(&k, &s, true);
    // The last page below the limit is fine.
    s.map(&mut k, range::<Size4K>(USER_VADDR_END - K4, 1), &g[..1], RW, WB)
        .unwrap();
    assert_consistent(&k, &s, true);
}

#[test]
fn overlaps_between_sizes() {
    let (mut k, mut s) = setup();
    let l = frames(&mut k, FrameSize::Large, 1);
    s.map(&mut k, range::<Size2M>(GIB, 1), &l, RW, WB).unwrap();
    let h = frames(&mut k, FrameSize::Huge, 1);
    s.map(&mut k, range::<Size1G>(3 * GIB, 1), &h, RW, WB).unwrap();
    let f = frames(&mut k, FrameSize::Small, 1);
    let l2 = frames(&mut k, FrameSize::Large, 1);
    // A small page inside a large one, a large page inside a huge one, a huge page over a large one.
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(GIB + 5 * K4, 1), &f, RW),
        MapError::Overlap {
            vaddr: VirtAddr::new(GIB + 5 * K4)
        }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size2M>(3 * GIB + MIB2, 1), &l2, RW),
        MapError::Overlap {
            vaddr: VirtAddr::new(3 * GIB + MIB2)
        }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size4K>(3 * GIB + 77 * K4, 1), &f, RW),
        MapError::Overlap {
            vaddr: VirtAddr::new(3 * GIB + 77 * K4)
        }
    );
    assert_eq!(
        refused(&mut k, &mut s, range::<Size1G>(GIB, 1), &h, RW),
        MapError::Overlap {
            vaddr: VirtAddr::new(GIB)
        }
    );
    assert_consistent(&k, &s, true);
}

#[test]
fn large_page_fits_once_small_pages_are_gone() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 3);
    s.map(&mut k, range::<Size4K>(GIB + 0x1000, 3), &f, RW, WB).unwrap();
    let l = frames(&mut k, FrameSize::Large, 1);
    assert!(matches!(
        s.map(&mut k, range::<Size2M>(GIB, 1), &l, RW, WB),
        Err(MapError::Overlap { .. })
    ));
    let out = s.unmap(&mut k, range::<Size4K>(GIB, 512)).unwrap();
    assert_eq!(out.iter().map(|x| x.1).collect::<Vec<_>>(), f);
    assert_eq!(
        s.stats().tables,
        [0, 0, 0],
        "the PT was reclaimed, and so were the PD and PDPT above it"
    );
    s.map(&mut k, range::<Size2M>(GIB, 1), &l, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
}

#[test]
fn cap_mapped_in_another_space_is_refused_by_the_kernel_and_rolled_back() {
    let mut k = MockKernel::new();
    let mut a = AddressSpace::create(&mut k).unwrap();
    let mut b = AddressSpace::create(&mut k).unwrap();
    let f = frames(&mut k, FrameSize::Small, 1);
    a.map(&mut k, range::<Size4K>(0x10_0000, 1), &f, RW, WB).unwrap();
    let before = snapshot(&k, &b);
    let e = b.map(&mut k, range::<Size4K>(0x10_0000, 1), &f, RW, WB).unwrap_err();
    assert_eq!(
        e,
        MapError::Kernel {
            op: KernelOp::MapFrame,
            vaddr: VirtAddr::new(0x10_0000),
            failure: KernelFailure::InvalidCapability,
            rollback: Rollback::Complete
        }
    );
    assert_eq!(snapshot(&k, &b), before, "b's tables were reclaimed");
    // A copy of the cap maps: the two spaces share the frame.
    let copy = k.copy_cap(f[0]);
    b.map(&mut k, range::<Size4K>(0x10_0000, 1), &[copy], Rights::READ, WB)
        .unwrap();
    let ta = k.translate(a.root(), 0x10_0008).unwrap();
    let tb = k.translate(b.root(), 0x10_0008).unwrap();
    assert_eq!(ta.paddr, tb.paddr);
    assert_eq!((ta.rights, tb.rights), (RW, Rights::READ));
    assert_consistent(&k, &a, false);
    assert_consistent(&k, &b, false);
    let ta = a.destroy(&mut k).unwrap();
    let tb = b.destroy(&mut k).unwrap();
    assert_eq!((ta.frames[0].1, tb.frames[0].1), (f[0], copy));
    assert!(k.mapped_frame_caps().is_empty());
    assert_eq!(k.live_tables(), [0, 0, 0]);
}

// ----- rollback -----

/// A map that allocates tables in two regions and spans two leaf tables, failed at each of its kernel
/// calls in turn: every failure must leave the space and the kernel exactly as before.
#[test]
fn map_rolls_back_at_every_failure_point() {
    let (mut k, mut s) = setup();
    // Something to keep: a PT that the failing map shares.
    let keep = frames(&mut k, FrameSize::Small, 1);
    s.map(&mut k, range::<Size4K>(GIB + MIB2 - K4, 1), &keep, RW, WB)
        .unwrap();
    let f = frames(&mut k, FrameSize::Small, 6);
    let g = frames(&mut k, FrameSize::Large, 1);
    let total = {
        let mut probe = k.clone();
        let mut s2 = s.clone_for_test();
        let calls = probe.stats().calls;
        let mut b = s2.map_batch();
        b.add(range::<Size4K>(GIB + MIB2 - 4 * K4, 3), &f[..3], RW, WB).unwrap();
        b.add(range::<Size4K>(GIB + MIB2, 3), &f[3..], RW, WB).unwrap();
        b.add(range::<Size2M>(600 * GIB, 1), &g, RW, WB).unwrap();
        b.commit(&mut probe).unwrap();
        probe.stats().calls - calls
    };
    assert_eq!(
        total,
        2 + 2 + 2 + 6 + 1,
        "PT + PDPT + PD allocs and maps, then 7 frames"
    );
    for n in 0..total {
        for failure in [KernelFailure::NotEnoughMemory, KernelFailure::DeleteFirst] {
            let before = snapshot(&k, &s);
            let stats_before = k.stats();
            k.fail_call(n, failure);
            let mut b = s.map_batch();
            b.add(range::<Size4K>(GIB + MIB2 - 4 * K4, 3), &f[..3], RW, WB).unwrap();
            b.add(range::<Size4K>(GIB + MIB2, 3), &f[3..], RW, WB).unwrap();
            b.add(range::<Size2M>(600 * GIB, 1), &g, RW, WB).unwrap();
            let e = b.commit(&mut k).unwrap_err();
            match e {
                MapError::OutOfMemory { rollback, .. } | MapError::Kernel { rollback, .. } => {
                    assert_eq!(rollback, Rollback::Complete, "failure at call {n}")
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(snapshot(&k, &s), before, "failure at call {n} left a change");
            let st = k.stats();
            for l in 0..3 {
                assert_eq!(
                    st.tables_allocated[l] - stats_before.tables_allocated[l],
                    st.tables_freed[l] - stats_before.tables_freed[l],
                    "failure at call {n}: tables allocated by the map were not all freed"
                );
            }
            assert_eq!(k.pending_injections(), 0);
            assert_consistent(&k, &s, true);
        }
    }
    // And without a failure it goes through.
    let mut b = s.map_batch();
    b.add(range::<Size4K>(GIB + MIB2 - 4 * K4, 3), &f[..3], RW, WB).unwrap();
    b.add(range::<Size4K>(GIB + MIB2, 3), &f[3..], RW, WB).unwrap();
    b.add(range::<Size2M>(600 * GIB, 1), &g, RW, WB).unwrap();
    b.commit(&mut k).unwrap();
    assert_consistent(&k, &s, true);
}

#[test]
fn out_of_memory_is_typed_and_rolled_back() {
    let (mut k, mut s) = setup();
    k.set_table_budget(Some(2));
    let f = frames(&mut k, FrameSize::Small, 1);
    let before = snapshot(&k, &s);
    let e = s.map(&mut k, range::<Size4K>(0x1000, 1), &f, RW, WB).unwrap_err();
    assert_eq!(
        e,
        MapError::OutOfMemory {
            level: TableLevel::Pt,
            failure: KernelFailure::NotEnoughMemory,
            rollback: Rollback::Complete
        }
    );
    assert_eq!(snapshot(&k, &s), before);
    // A large page needs only two tables.
    let l = frames(&mut k, FrameSize::Large, 1);
    s.map(&mut k, range::<Size2M>(MIB2, 1), &l, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
}

#[test]
fn failed_undo_leaves_a_recorded_residue() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 3);
    // Calls: 3 allocs + 3 maps of tables, then frames 0, 1, 2. Fail frame 2, then the undo of frame 1
    // (undo unmaps frames 0 and 1 in one run: calls 9 and 10).
    k.fail_call(8, KernelFailure::InvalidArgument);
    k.fail_call(10, KernelFailure::RevokeFirst);
    let e = s.map(&mut k, range::<Size4K>(0x40_0000, 3), &f, RW, WB).unwrap_err();
    let MapError::Kernel {
        op: KernelOp::MapFrame,
        failure: KernelFailure::InvalidArgument,
        rollback,
        vaddr,
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(vaddr, VirtAddr::new(0x40_2000));
    assert_eq!(
        rollback,
        Rollback::Incomplete {
            failure: KernelFailure::RevokeFirst,
            residue: vec![(VirtAddr::new(0x40_1000), f[1])],
            tables_kept: 3
        }
    );
    assert_consistent(&k, &s, true);
    assert_eq!(s.stats().tables, [1, 1, 1], "the residue keeps its tables");
    // The residue is the space's now; unmap hands it back.
    let out = s.unmap(&mut k, range::<Size4K>(0x40_0000, 3)).unwrap();
    assert_eq!(out, vec![(VirtAddr::new(0x40_1000), f[1])]);
    assert_eq!(s.stats().total_tables(), 0);
    assert_consistent(&k, &s, true);
}

#[test]
fn failed_table_undo_stays_pending() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 1);
    // Calls: PDPT alloc+map (0, 1), PD alloc+map (2, 3), PT alloc (4) fails; undo: PD unmap (5) fails,
    // so the PDPT stays too.
    k.fail_call(4, KernelFailure::NotEnoughMemory);
    k.fail_call(5, KernelFailure::RevokeFirst);
    let e = s.map(&mut k, range::<Size4K>(0x1000, 1), &f, RW, WB).unwrap_err();
    assert_eq!(
        e,
        MapError::OutOfMemory {
            level: TableLevel::Pt,
            failure: KernelFailure::NotEnoughMemory,
            rollback: Rollback::Incomplete {
                failure: KernelFailure::RevokeFirst,
                residue: vec![],
                tables_kept: 2
            }
        }
    );
    assert_eq!(s.stats().pending_reclaim, 1);
    assert_consistent(&k, &s, true);
    assert_eq!(s.reclaim(&mut k), Ok(2));
    assert_eq!(s.stats(), SpaceStats::default());
    assert_consistent(&k, &s, true);
}

// ----- unmap -----

#[test]
fn unmap_returns_caps_after_unmapping_and_reclaims_exactly() {
    let (mut k, mut s) = setup();
    let a = frames(&mut k, FrameSize::Small, 2);
    let b = frames(&mut k, FrameSize::Small, 2);
    // Two PTs under one PD.
    s.map(&mut k, range::<Size4K>(0x20_0000, 2), &a, RW, WB).unwrap();
    s.map(&mut k, range::<Size4K>(0x40_0000, 2), &b, RW, WB).unwrap();
    assert_eq!(s.stats().tables, [1, 1, 2]);
    let out = s.unmap(&mut k, range::<Size4K>(0x20_0000, 512)).unwrap();
    assert_eq!(
        out,
        vec![(VirtAddr::new(0x20_0000), a[0]), (VirtAddr::new(0x20_1000), a[1])]
    );
    assert!(out.iter().all(|&(_, c)| !k.is_mapped(c)), "returned caps are unmapped");
    assert_eq!(s.stats().tables, [1, 1, 1], "exactly the emptied PT went");
    assert_eq!(k.live_tables(), [1, 1, 1]);
    assert_consistent(&k, &s, true);
    // Unmapping one of two pages keeps the PT.
    let out = s.unmap(&mut k, range::<Size4K>(0x40_1000, 1)).unwrap();
    assert_eq!(out, vec![(VirtAddr::new(0x40_1000), b[1])]);
    assert_eq!(s.stats().tables, [1, 1, 1]);
    let out = s.unmap(&mut k, range::<Size4K>(0x40_0000, 1)).unwrap();
    assert_eq!(out, vec![(VirtAddr::new(0x40_0000), b[0])]);
    assert_eq!(s.stats().tables, [0, 0, 0], "the cascade reached the PDPT");
    let st = k.stats();
    assert_eq!(st.tables_allocated, st.tables_freed);
    assert_eq!(k.live_tables(), [0, 0, 0]);
    assert_consistent(&k, &s, true);
}

#[test]
fn unmap_holes_and_empty_regions() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 2);
    s.map(&mut k, range::<Size4K>(0x10_0000, 1), &f[..1], RW, WB).unwrap();
    s.map(&mut k, range::<Size4K>(0x10_5000, 1), &f[1..], RW, WB).unwrap();
    let calls = k.stats().calls;
    assert_eq!(s.unmap(&mut k, range::<Size1G>(100 * GIB, 3)).unwrap(), vec![]);
    assert_eq!(k.stats().calls, calls, "nothing mapped there: no kernel call");
    let out = s.unmap(&mut k, range::<Size2M>(0x20_0000 - MIB2, 1)).unwrap();
    assert_eq!(out.len(), 2, "smaller pages inside a larger range go too");
    assert_consistent(&k, &s, true);
}

#[test]
fn unmap_refusals_change_nothing() {
    let (mut k, mut s) = setup();
    let l = frames(&mut k, FrameSize::Large, 1);
    s.map(&mut k, range::<Size2M>(MIB2, 1), &l, RW, WB).unwrap();
    let before = snapshot(&k, &s);
    let calls = k.stats().calls;
    let p = Page::<Size4K>::from_start_address(0x9000).unwrap();
    assert_eq!(s.unmap(&mut k, Page::range(p, p)), Err(UnmapError::EmptyRange));
    assert_eq!(
        s.unmap(&mut k, range::<Size4K>(0, 4)),
        Ok(vec![]),
        "the null page may be in the range"
    );
    assert!(matches!(
        s.unmap(&mut k, range::<Size4K>(USER_VADDR_END, 1)),
        Err(UnmapError::OutsideUserRange { .. })
    ));
    assert_eq!(
        s.unmap(&mut k, range::<Size4K>(MIB2 + K4, 1)),
        Err(UnmapError::SplitsMapping {
            vaddr: VirtAddr::new(MIB2),
            size: FrameSize::Large
        })
    );
    assert_eq!(
        s.unmap(&mut k, range::<Size4K>(MIB2 - K4, 2)),
        Err(UnmapError::SplitsMapping {
            vaddr: VirtAddr::new(MIB2),
            size: FrameSize::Large
        })
    );
    assert_eq!(k.stats().calls, calls);
    assert_eq!(snapshot(&k, &s), before);
}

#[test]
fn unmap_failure_unmaps_the_rest_and_reports() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 4);
    s.map(&mut k, range::<Size4K>(0x1000, 4), &f, RW, WB).unwrap();
    k.fail_call(1, KernelFailure::InvalidCapability);
    let e = s.unmap(&mut k, range::<Size4K>(0x1000, 4)).unwrap_err();
    assert_eq!(
        e,
        UnmapError::Kernel {
            vaddr: VirtAddr::new(0x2000),
            failure: KernelFailure::InvalidCapability,
            unmapped: vec![
                (VirtAddr::new(0x1000), f[0]),
                (VirtAddr::new(0x3000), f[2]),
                (VirtAddr::new(0x4000), f[3])
            ],
            still_mapped: 1
        }
    );
    assert_eq!(s.lookup(VirtAddr::new(0x2000)).unwrap().frame, f[1]);
    assert_consistent(&k, &s, true);
    assert_eq!(
        s.unmap(&mut k, range::<Size4K>(0x1000, 4)).unwrap(),
        vec![(VirtAddr::new(0x2000), f[1])]
    );
    assert_eq!(s.stats().total_tables(), 0);
    assert_consistent(&k, &s, true);
}

#[test]
fn refused_table_unmap_is_pending_and_blocks_a_large_page() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 1);
    s.map(&mut k, range::<Size4K>(GIB, 1), &f, RW, WB).unwrap();
    // Calls: frame unmap (0), PT unmap (1) refused.
    k.fail_call(1, KernelFailure::RevokeFirst);
    assert_eq!(
        s.unmap(&mut k, range::<Size4K>(GIB, 1)).unwrap(),
        vec![(VirtAddr::new(GIB), f[0])]
    );
    assert_eq!(s.stats().tables, [1, 1, 1]);
    assert_eq!(s.stats().pending_reclaim, 1);
    assert_consistent(&k, &s, true);
    let l = frames(&mut k, FrameSize::Large, 1);
    assert_eq!(
        s.map(&mut k, range::<Size2M>(GIB, 1), &l, RW, WB),
        Err(MapError::Overlap {
            vaddr: VirtAddr::new(GIB)
        })
    );
    // A small page may reuse the pending table.
    let g = frames(&mut k, FrameSize::Small, 1);
    s.map(&mut k, range::<Size4K>(GIB + K4, 1), &g, RW, WB).unwrap();
    assert_eq!(s.stats().pending_reclaim, 0);
    assert_consistent(&k, &s, true);
    let _ = s.unmap(&mut k, range::<Size4K>(GIB, 2)).unwrap();
    assert_eq!(s.stats().total_tables(), 0);
    k.fail_call(1, KernelFailure::RevokeFirst);
    s.map(&mut k, range::<Size4K>(GIB, 1), &f, RW, WB).unwrap_err();
    assert_eq!(
        s.stats().pending_reclaim,
        0,
        "the PDPT's map failed: nothing was created"
    );
    s.map(&mut k, range::<Size4K>(GIB, 1), &f, RW, WB).unwrap();
    k.fail_call(1, KernelFailure::RevokeFirst);
    let _ = s.unmap(&mut k, range::<Size4K>(GIB, 1)).unwrap();
    k.fail_call(0, KernelFailure::RevokeFirst);
    assert_eq!(
        s.reclaim(&mut k),
        Err(ReclaimError {
            failure: KernelFailure::RevokeFirst,
            freed: 0,
            pending: 1
        })
    );
    assert_eq!(s.reclaim(&mut k), Ok(3));
    s.map(&mut k, range::<Size2M>(GIB, 1), &l, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
}

// ----- protect -----

#[test]
fn protect_remaps_and_skips_unchanged() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 4);
    let l = frames(&mut k, FrameSize::Large, 1);
    s.map(&mut k, range::<Size4K>(0x1000, 4), &f, RW, WB).unwrap();
    s.map(&mut k, range::<Size2M>(MIB2, 1), &l, RW, WB).unwrap();
    s.protect(&mut k, range::<Size4K>(0x2000, 1), Rights::READ, WB).unwrap();
    let before = k.stats();
    let n = s
        .protect(&mut k, range::<Size2M>(0, 2), Rights::READ, CacheAttr::WriteThrough)
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(k.stats().remap_runs - before.remap_runs, 2, "one run per leaf table");
    let n = s
        .protect(&mut k, range::<Size2M>(0, 2), Rights::READ, CacheAttr::WriteThrough)
        .unwrap();
    assert_eq!(n, 0, "nothing to change: no kernel call");
    assert_eq!(k.translate(s.root(), MIB2 + 5).unwrap().attr, CacheAttr::WriteThrough);
    s.protect(&mut k, range::<Size4K>(0x3000, 1), Rights::empty(), WB)
        .unwrap();
    assert_eq!(k.translate(s.root(), 0x3000).unwrap().rights, Rights::empty());
    assert_consistent(&k, &s, true);
    assert_lookups_agree(&k, &s, (0..1200).map(|i| i * 0x1800));
}

#[test]
fn protect_refusals_and_rollback() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 4);
    s.map(&mut k, range::<Size4K>(0x1000, 4), &f, RW, WB).unwrap();
    let l = frames(&mut k, FrameSize::Large, 1);
    s.map(&mut k, range::<Size2M>(MIB2, 1), &l, RW, WB).unwrap();
    let before = snapshot(&k, &s);
    let p = Page::<Size4K>::from_start_address(0x9000).unwrap();
    assert_eq!(
        s.protect(&mut k, Page::range(p, p), RW, WB),
        Err(ProtectError::EmptyRange)
    );
    assert_eq!(
        s.protect(&mut k, range::<Size4K>(0x1000, 1), Rights::WRITE, WB),
        Err(ProtectError::WriteWithoutRead)
    );
    assert!(matches!(
        s.protect(&mut k, range::<Size4K>(USER_VADDR_END - K4, 2), RW, WB),
        Err(ProtectError::OutsideUserRange { .. })
    ));
    assert_eq!(s.protect(&mut k, range::<Size4K>(0, 1), RW, WB), Ok(0));
    assert_eq!(
        s.protect(&mut k, range::<Size4K>(MIB2, 3), RW, WB),
        Err(ProtectError::SplitsMapping {
            vaddr: VirtAddr::new(MIB2),
            size: FrameSize::Large
        })
    );
    assert_eq!(snapshot(&k, &s), before);
    for n in 0..4 {
        k.fail_call(n, KernelFailure::FailedLookup);
        let e = s
            .protect(
                &mut k,
                range::<Size4K>(0x1000, 4),
                Rights::READ,
                CacheAttr::CacheDisabled,
            )
            .unwrap_err();
        assert_eq!(
            e,
            ProtectError::Kernel {
                vaddr: VirtAddr::new(0x1000 + n * K4),
                failure: KernelFailure::FailedLookup,
                rollback: Rollback::Complete
            }
        );
        assert_eq!(snapshot(&k, &s), before, "failure at call {n}");
    }
    // Failure then a failed undo: the page keeps the new rights, recorded as such.
    k.fail_call(2, KernelFailure::FailedLookup);
    k.fail_call(3, KernelFailure::FailedLookup);
    let e = s
        .protect(&mut k, range::<Size4K>(0x1000, 4), Rights::READ, WB)
        .unwrap_err();
    let ProtectError::Kernel {
        rollback: Rollback::Incomplete { residue, .. },
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(residue, vec![(VirtAddr::new(0x2000), f[1])]);
    assert_eq!(s.lookup(VirtAddr::new(0x2000)).unwrap().rights, Rights::READ);
    assert_eq!(s.lookup(VirtAddr::new(0x1000)).unwrap().rights, RW);
    assert_consistent(&k, &s, true);
}

// ----- sparse spaces and teardown -----

#[test]
fn sparse_pages_over_the_whole_range_each_need_their_own_tables() {
    let (mut k, mut s) = setup();
    // One 4 KiB page in each of 8 PML4 slots, from the bottom to the last page below the limit.
    let addrs: Vec<u64> = (0..8)
        .map(|i| if i == 0 { 0x1000 } else { i * (32u64 << 39) - K4 })
        .chain([USER_VADDR_END - K4])
        .collect();
    let addrs: Vec<u64> = addrs.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    let mut mapped = Vec::new();
    for &a in &addrs {
        let f = frames(&mut k, FrameSize::Small, 1);
        s.map(&mut k, range::<Size4K>(a, 1), &f, RW, WB).unwrap();
        mapped.push((VirtAddr::new(a), f[0]));
    }
    let n = addrs.len();
    assert_eq!(
        s.stats().tables,
        [n, n, n],
        "each distant page has its own PDPT, PD and PT"
    );
    // 2 MiB pages in distinct 1 GiB regions of one 512 GiB slot share the PDPT only.
    for i in 0..4u64 {
        let f = frames(&mut k, FrameSize::Large, 1);
        s.map(&mut k, range::<Size2M>((100 << 39) + i * 7 * GIB, 1), &f, RW, WB)
            .unwrap();
        mapped.push((VirtAddr::new((100 << 39) + i * 7 * GIB), f[0]));
    }
    assert_eq!(s.stats().tables, [n + 1, n + 4, n]);
    assert_consistent(&k, &s, true);
    assert_lookups_agree(&k, &s, addrs.iter().flat_map(|&a| [a - 1, a, a + K4 - 1, a + K4]));
    // The walk over the whole range is cheap and finds them all.
    let calls = k.stats().calls;
    let found = s.collect(USER_VADDR_START, USER_VADDR_END);
    assert_eq!(found.len(), mapped.len());
    assert_eq!(k.stats().calls, calls);
    let t = s.destroy(&mut k).unwrap();
    mapped.sort();
    assert_eq!(t.frames, mapped);
    assert_eq!(t.tables_freed, 3 * n + 5);
    let st = k.stats();
    assert_eq!(st.tables_allocated, st.tables_freed);
    assert_eq!((k.live_tables(), k.live_roots()), ([0, 0, 0], 0));
    assert!(k.mapped_frame_caps().is_empty());
}

#[test]
fn destroy_returns_every_frame_and_table() {
    let (mut k, mut s) = setup();
    let mut all = BTreeSet::new();
    for i in 0..5u64 {
        let f = frames(&mut k, FrameSize::Small, 10);
        s.map(&mut k, range::<Size4K>(i * 3 * GIB + 0x7000, 10), &f, RW, WB)
            .unwrap();
        all.extend(f);
    }
    let l = frames(&mut k, FrameSize::Large, 2);
    s.map(&mut k, range::<Size2M>(20 * GIB, 2), &l, RW, WB).unwrap();
    all.extend(l.iter().copied());
    let h = frames(&mut k, FrameSize::Huge, 1);
    s.map(&mut k, range::<Size1G>(30 * GIB, 1), &h, RW, WB).unwrap();
    all.extend(h.iter().copied());
    let tables = s.stats().total_tables();
    assert_consistent(&k, &s, true);
    let t = s.destroy(&mut k).unwrap();
    assert_eq!(t.frames.iter().map(|x| x.1).collect::<BTreeSet<_>>(), all);
    assert_eq!(t.tables_freed, tables);
    assert_eq!(k.live_tables(), [0, 0, 0]);
    assert_eq!(k.live_roots(), 0);
    assert!(k.mapped_frame_caps().is_empty());
    // The caps can be mapped again elsewhere: their unmap was complete.
    let mut s2 = AddressSpace::create(&mut k).unwrap();
    let caps: Vec<CapRef> = t
        .frames
        .iter()
        .filter(|x| x.0.as_u64() < 20 * GIB)
        .map(|x| x.1)
        .collect();
    s2.map(&mut k, range::<Size4K>(0x1000, caps.len() as u64), &caps, RW, WB)
        .unwrap();
    assert_consistent(&k, &s2, true);
}

#[test]
fn destroy_failure_hands_the_space_back() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 3);
    s.map(&mut k, range::<Size4K>(0x1000, 3), &f, RW, WB).unwrap();
    k.fail_call(1, KernelFailure::InvalidCapability);
    let e = s.destroy(&mut k).unwrap_err();
    assert_eq!(
        (e.op, e.failure, e.released.len()),
        (KernelOp::UnmapFrame, KernelFailure::InvalidCapability, 2)
    );
    let s = e.space;
    assert_consistent(&k, &s, true);
    k.fail_call(1, KernelFailure::RevokeFirst);
    let e = s.destroy(&mut k).unwrap_err();
    assert_eq!(
        (e.op, e.released, e.tables_freed),
        (KernelOp::UnmapTable, vec![(VirtAddr::new(0x2000), f[1])], 0)
    );
    let s = e.space;
    assert_consistent(&k, &s, true);
    let t = s.destroy(&mut k).unwrap();
    assert_eq!((t.frames.len(), t.tables_freed), (0, 3));
    assert_eq!((k.live_tables(), k.live_roots()), ([0, 0, 0], 0));
}

// ----- seL4 5.0 behaviour -----

/// Deleting a mapped cap copy that is not the frame's last cap leaves the entry (seL4 5.0): that is why
/// `unmap` returns caps only after their unmap.
#[test]
fn deleting_a_mapped_copy_leaves_the_entry_but_unmap_first_does_not() {
    let (mut k, mut s) = setup();
    let orig = k.new_frame(FrameSize::Small);
    let copy = k.copy_cap(orig);
    s.map(&mut k, range::<Size4K>(0x5000, 1), &[copy], RW, WB).unwrap();
    // The wrong order, done behind the space's back.
    k.delete_frame_cap(copy);
    assert!(
        k.translate(s.root(), 0x5000).is_some(),
        "stale entry: the thread still reaches the frame"
    );
    // The right order.
    let (mut k, mut s) = setup();
    let orig = k.new_frame(FrameSize::Small);
    let copy = k.copy_cap(orig);
    s.map(&mut k, range::<Size4K>(0x5000, 1), &[copy], RW, WB).unwrap();
    let out = s.unmap(&mut k, range::<Size4K>(0x5000, 1)).unwrap();
    k.delete_frame_cap(out[0].1);
    assert!(k.translate(s.root(), 0x5000).is_none());
    assert!(k.frame_paddr(orig).is_some());
}

#[test]
fn mock_refuses_like_sel4() {
    let mut k = MockKernel::new();
    let root = k.alloc_root().unwrap();
    let f = k.new_frame(FrameSize::Small);
    let va = VirtAddr::new(0x1000);
    assert_eq!(
        k.map_frame(f, root, va, FrameSize::Small, RW, WB),
        Err(KernelFailure::InvalidCapability),
        "no ASID"
    );
    k.assign_asid(root).unwrap();
    assert_eq!(
        k.map_frame(f, root, va, FrameSize::Small, RW, WB),
        Err(KernelFailure::FailedLookup)
    );
    let pdpt = k.alloc_table(TableLevel::Pdpt).unwrap();
    let pd = k.alloc_table(TableLevel::Pd).unwrap();
    let pt = k.alloc_table(TableLevel::Pt).unwrap();
    assert_eq!(
        k.map_table(TableLevel::Pd, pd, root, va),
        Err(KernelFailure::FailedLookup)
    );
    k.map_table(TableLevel::Pdpt, pdpt, root, va).unwrap();
    assert_eq!(
        k.map_table(TableLevel::Pdpt, pdpt, root, va),
        Err(KernelFailure::InvalidCapability)
    );
    k.map_table(TableLevel::Pd, pd, root, va).unwrap();
    k.map_table(TableLevel::Pt, pt, root, va).unwrap();
    assert_eq!(
        k.map_frame(f, root, VirtAddr::new(0x1800), FrameSize::Small, RW, WB),
        Err(KernelFailure::AlignmentError)
    );
    assert_eq!(
        k.remap_frame(f, root, RW, WB),
        Err(KernelFailure::IllegalOperation),
        "not mapped"
    );
    k.map_frame(f, root, va, FrameSize::Small, RW, WB).unwrap();
    assert_eq!(
        k.map_frame(f, root, VirtAddr::new(0x2000), FrameSize::Small, RW, WB),
        Err(KernelFailure::InvalidCapability),
        "a cap maps once"
    );
    let g = k.copy_cap(f);
    assert_eq!(
        k.map_frame(g, root, va, FrameSize::Small, RW, WB),
        Err(KernelFailure::DeleteFirst)
    );
    let big = k.new_frame(FrameSize::Large);
    assert_eq!(
        k.map_frame(big, root, VirtAddr::new(0), FrameSize::Large, RW, WB),
        Err(KernelFailure::DeleteFirst),
        "a PT is there"
    );
    assert_eq!(
        k.map_frame(big, root, VirtAddr::new(0), FrameSize::Small, RW, WB),
        Err(KernelFailure::InvalidArgument)
    );
    // Unmapping the PDPT drops the subtree; the frame cap keeps a stale record until Page_Unmap.
    k.unmap_table(TableLevel::Pdpt, pdpt).unwrap();
    assert!(k.translate(root, 0x1000).is_none());
    assert!(k.is_mapped(f));
    assert_eq!(
        k.map_table(TableLevel::Pd, pd, root, va),
        Err(KernelFailure::InvalidCapability),
        "the PD's cap still says mapped"
    );
    k.unmap_frame(f).unwrap();
    assert!(!k.is_mapped(f));
    k.unmap_table(TableLevel::Pd, pd).unwrap();
    k.unmap_table(TableLevel::Pt, pt).unwrap();
    for (l, t) in [(TableLevel::Pdpt, pdpt), (TableLevel::Pd, pd), (TableLevel::Pt, pt)] {
        k.free_table(l, t);
    }
    k.free_root(root);
    assert_eq!((k.live_tables(), k.live_roots()), ([0, 0, 0], 0));
}

/// A kernel that does not override the run methods: the trait's per-page defaults do the work.
struct PerPage(MockKernel);

impl VSpaceKernel for PerPage {
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
        self.0.alloc_root()
    }
    fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure> {
        self.0.assign_asid(root)
    }
    fn free_root(&mut self, root: CapRef) {
        self.0.free_root(root)
    }
    fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure> {
        self.0.alloc_table(level)
    }
    fn free_table(&mut self, level: TableLevel, table: CapRef) {
        self.0.free_table(level, table)
    }
    fn map_table(
        &mut self,
        level: TableLevel,
        table: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
    ) -> Result<(), KernelFailure> {
        self.0.map_table(level, table, root, vaddr)
    }
    fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure> {
        self.0.unmap_table(level, table)
    }
    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.0.map_frame(frame, root, vaddr, size, rights, attr)
    }
    fn remap_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.0.remap_frame(frame, root, rights, attr)
    }
    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
        self.0.unmap_frame(frame)
    }
}

#[test]
fn default_run_methods_work_per_page() {
    let mut k = PerPage(MockKernel::new());
    let mut s = AddressSpace::create(&mut k).unwrap();
    let f = frames(&mut k.0, FrameSize::Small, 600);
    s.map(&mut k, range::<Size4K>(0x1000, 600), &f, RW, WB).unwrap();
    s.protect(&mut k, range::<Size4K>(0x1000, 600), Rights::READ, WB)
        .unwrap();
    assert_consistent(&k.0, &s, true);
    k.0.fail_call(3, KernelFailure::InvalidArgument);
    let g = frames(&mut k.0, FrameSize::Small, 5);
    let before = snapshot(&k.0, &s);
    assert!(s.map(&mut k, range::<Size4K>(GIB, 5), &g, RW, WB).is_err());
    assert_eq!(snapshot(&k.0, &s), before);
    let out = s.unmap(&mut k, range::<Size4K>(0x1000, 600)).unwrap();
    assert_eq!(out.len(), 600);
    let st = k.0.stats();
    assert_eq!((st.map_runs, st.remap_runs, st.unmap_runs), (0, 0, 0));
    let t = s.destroy(&mut k).unwrap();
    assert_eq!(t.frames.len(), 0);
    assert_eq!((k.0.live_tables(), k.0.live_roots()), ([0, 0, 0], 0));
}

#[test]
fn tables_iterator_and_errors_display() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 1);
    s.map(&mut k, range::<Size4K>(0x1000, 1), &f, RW, WB).unwrap();
    let mut t: Vec<(TableLevel, u64, u16)> = s.tables().map(|t| (t.level, t.base.as_u64(), t.used)).collect();
    t.sort();
    assert_eq!(
        t,
        vec![(TableLevel::Pdpt, 0, 1), (TableLevel::Pd, 0, 1), (TableLevel::Pt, 0, 1)]
    );
    let e = MapError::Overlap {
        vaddr: VirtAddr::new(0x1000),
    };
    assert_eq!(e.to_string(), "page 0x1000 overlaps an existing mapping");
    assert_eq!(KernelFailure::DeleteFirst.to_string(), "seL4_DeleteFirst");
}

// ----- table policy -----

#[test]
fn retain_policy_keeps_emptied_tables_until_reclaim() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 512);
    s.set_table_policy(TablePolicy::Retain);
    assert_eq!(s.table_policy(), TablePolicy::Retain);
    s.map(&mut k, range::<Size4K>(GIB, 512), &f, RW, WB).unwrap();
    let _ = s.unmap(&mut k, range::<Size4K>(GIB, 512)).unwrap();
    // The tables stay; the emptied leaf is pending; the kernel still has them all.
    assert_eq!(s.stats().tables, [1, 1, 1]);
    assert_eq!(s.stats().pending_reclaim, 1);
    assert_eq!(k.live_tables(), [1, 1, 1]);
    assert_consistent(&k, &s, true);
    // Mapping again needs no table operation: one call per page.
    let before = k.stats();
    s.map(&mut k, range::<Size4K>(GIB, 512), &f, RW, WB).unwrap();
    assert_eq!(k.stats().calls - before.calls, 512);
    assert_eq!(s.stats().pending_reclaim, 0);
    // A large page over a retained (empty) table is an overlap until reclaimed.
    let _ = s.unmap(&mut k, range::<Size4K>(GIB, 512)).unwrap();
    let big = frames(&mut k, FrameSize::Large, 1);
    assert!(matches!(
        s.map(&mut k, range::<Size2M>(GIB, 1), &big, RW, WB),
        Err(MapError::Overlap { .. })
    ));
    // Reclaim frees the leaf, then its parents as they become empty.
    assert_eq!(s.reclaim(&mut k).unwrap(), 3);
    assert_eq!(k.live_tables(), [0, 0, 0]);
    s.map(&mut k, range::<Size2M>(GIB, 1), &big, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
    let t = s.destroy(&mut k).unwrap();
    assert_eq!(t.frames.len(), 1);
    assert_eq!(k.live_tables(), [0, 0, 0]);
}
