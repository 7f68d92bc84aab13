//! The single-page / one-leaf-table fast paths of [`AddressSpace::map`] and [`AddressSpace::unmap`]
//! against the general path: from the same state (random mappings of 4 KiB and 2 MiB pages, either table
//! policy), the same request through both must give the same result, the same kernel calls in the same
//! order (with the same injected failures), the same shadow and the same kernel state.

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{assert_consistent, snapshot};
use crate::mock::MockKernel;
use crate::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Across a 1 GiB boundary: four page tables' regions, in two page directories.
const BASE: u64 = GIB - 4 * MIB;

const FAILURES: [KernelFailure; 3] = [
    KernelFailure::NotEnoughMemory,
    KernelFailure::DeleteFirst,
    KernelFailure::RevokeFirst,
];

/// A [`MockKernel`] that records every call the crate makes, with its arguments and answer.
#[derive(Clone)]
struct Recorder {
    k: MockKernel,
    log: Vec<String>,
}

impl VSpaceKernel for Recorder {
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
        let r = self.k.alloc_root();
        self.log.push(format!("alloc_root -> {r:?}"));
        r
    }
    fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure> {
        let r = self.k.assign_asid(root);
        self.log.push(format!("assign_asid {root:?} -> {r:?}"));
        r
    }
    fn free_root(&mut self, root: CapRef) {
        self.k.free_root(root);
        self.log.push(format!("free_root {root:?}"));
    }
    fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure> {
        let r = self.k.alloc_table(level);
        self.log.push(format!("alloc_table {level:?} -> {r:?}"));
        r
    }
    fn free_table(&mut self, level: TableLevel, table: CapRef) {
        self.k.free_table(level, table);
        self.log.push(format!("free_table {level:?} {table:?}"));
    }
    fn map_table(
        &mut self,
        level: TableLevel,
        table: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
    ) -> Result<(), KernelFailure> {
        let r = self.k.map_table(level, table, root, vaddr);
        self.log
            .push(format!("map_table {level:?} {table:?} {root:?} {vaddr:?} -> {r:?}"));
        r
    }
    fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure> {
        let r = self.k.unmap_table(level, table);
        self.log.push(format!("unmap_table {level:?} {table:?} -> {r:?}"));
        r
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
        let r = self.k.map_frame(frame, root, vaddr, size, rights, attr);
        self.log.push(format!(
            "map_frame {frame:?} {root:?} {vaddr:?} {size:?} {rights:?} {attr:?} -> {r:?}"
        ));
        r
    }
    fn remap_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        let r = self.k.remap_frame(frame, root, rights, attr);
        self.log
            .push(format!("remap_frame {frame:?} {root:?} {rights:?} {attr:?} -> {r:?}"));
        r
    }
    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
        let r = self.k.unmap_frame(frame);
        self.log.push(format!("unmap_frame {frame:?} -> {r:?}"));
        r
    }
    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        let r = self.k.map_frames_run(root, run, frames, rights, attr);
        self.log.push(format!(
            "map_frames_run {root:?} {run:?} {frames:?} {rights:?} {attr:?} -> {r:?}"
        ));
        r
    }
    fn remap_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        let r = self.k.remap_frames_run(root, run, frames, rights, attr);
        self.log.push(format!(
            "remap_frames_run {root:?} {run:?} {frames:?} {rights:?} {attr:?} -> {r:?}"
        ));
        r
    }
    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        let r = self.k.unmap_frames_run(run, frames);
        self.log.push(format!("unmap_frames_run {run:?} {frames:?} -> {r:?}"));
        r
    }
}

/// One operation: map or unmap of `n` pages of 4 KiB (or 2 MiB if `large`) from page `page` of [`BASE`].
#[derive(Clone, Debug)]
struct Op {
    map: bool,
    large: bool,
    page: u64,
    n: u64,
    /// Map: the first cap is one mapped already (if any is).
    reuse: bool,
    rights: usize,
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop::bool::weighted(0.6),
        prop::bool::weighted(0.15),
        0u64..2048,
        prop_oneof![6 => Just(1u64), 2 => 2u64..4, 1 => 4u64..40],
        prop::bool::weighted(0.1),
        prop_oneof![8 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
    )
        .prop_map(|(map, large, page, n, reuse, rights)| Op {
            map,
            large,
            page,
            n,
            reuse,
            rights,
        })
}

const RIGHTS: [Rights; 3] = [Rights::READ_WRITE, Rights::READ, Rights::WRITE];

/// Applies `op` with the fast path on or off; returns its result, printed.
fn apply(k: &mut Recorder, s: &mut AddressSpace, op: &Op, fast: bool) -> String {
    let (size, page) = if op.large {
        (FrameSize::Large, op.page % 4)
    } else {
        (FrameSize::Small, op.page)
    };
    let n = if op.large { op.n.min(2) } else { op.n };
    let start = BASE + page * size.bytes();
    if op.map {
        let mut caps: Vec<CapRef> = (0..n).map(|_| k.k.new_frame(size)).collect();
        if op.reuse {
            if let Some(m) = s.mappings().min_by_key(|m| m.vaddr) {
                caps[0] = m.frame;
            }
        }
        let (r, a) = (RIGHTS[op.rights], CacheAttr::WriteBack);
        let res = match size {
            FrameSize::Large => s.map_impl(k, super::range::<Size2M>(start, n), &caps, r, a, fast),
            _ => s.map_impl(k, super::range::<Size4K>(start, n), &caps, r, a, fast),
        };
        format!("{res:?}")
    } else {
        // The fast path counts without a list on every other page (as `unmap_count`), against the
        // general path's list: the same count, or the same error (whose list is rebuilt).
        let list = !fast || page % 2 == 0;
        let res = match size {
            FrameSize::Large => s.unmap_impl(k, super::range::<Size2M>(start, n), fast, list),
            _ => s.unmap_impl(k, super::range::<Size4K>(start, n), fast, list),
        };
        match res {
            Ok((v, count)) if list => {
                assert_eq!(v.len(), count);
                if page % 2 == 0 {
                    format!("{:?}", Ok::<_, ()>(v))
                } else {
                    format!("{:?}", Ok::<_, ()>(count))
                }
            }
            Ok((v, count)) => {
                assert!(v.is_empty());
                format!("{:?}", Ok::<_, ()>(count))
            }
            Err(e) => format!("{:?}", Err::<(), _>(e)),
        }
    }
}

fn run(prefix: Vec<Op>, last: Op, retain: bool, fail: Option<(u64, usize)>, fail2: Option<u64>) {
    let mut k = Recorder {
        k: MockKernel::new(),
        log: Vec::new(),
    };
    let mut s = AddressSpace::create(&mut k).expect("create");
    if retain {
        s.set_table_policy(TablePolicy::Retain);
    }
    for op in &prefix {
        apply(&mut k, &mut s, op, true);
        assert_consistent(&k.k, &s, true);
    }
    if let Some((at, f)) = fail {
        k.k.fail_call(at, FAILURES[f]);
        if let Some(at2) = fail2 {
            k.k.fail_call(at + 1 + at2, KernelFailure::RevokeFirst);
        }
    }
    k.log.clear();
    let (mut k2, mut s2) = (k.clone(), s.clone_for_test());
    let fast = apply(&mut k, &mut s, &last, true);
    let general = apply(&mut k2, &mut s2, &last, false);
    assert_eq!(fast, general, "result of {last:?}");
    assert_eq!(k.log, k2.log, "kernel calls of {last:?}");
    assert_eq!(snapshot(&k.k, &s), snapshot(&k2.k, &s2), "state after {last:?}");
    assert_eq!(
        format!("{:?}", s.shadow),
        format!("{:?}", s2.shadow),
        "shadow after {last:?}"
    );
    k.k.clear_injections();
    k2.k.clear_injections();
    assert_consistent(&k.k, &s, true);
    // The next operations agree too (the hints the two paths left may differ).
    for op in prefix.iter().take(3) {
        let a = apply(&mut k, &mut s, op, true);
        let b = apply(&mut k2, &mut s2, op, false);
        assert_eq!(a, b);
        assert_eq!(format!("{:?}", s.shadow), format!("{:?}", s2.shadow));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_paths_match_the_general_path(
        prefix in prop::collection::vec(op(), 0..30),
        last in op(),
        retain in any::<bool>(),
        fail in prop::option::weighted(0.4, (0u64..3, 0..FAILURES.len())),
        fail2 in prop::option::weighted(0.3, 0u64..3),
    ) {
        run(prefix, last, retain, fail, fail2);
    }
}

/// The cases the fast paths are for, explicitly: a single page mapped into and unmapped from a present
/// page table, with the kernel failing the map, the unmap, or the reclaim after the unmap.
#[test]
fn single_page_cases_match_the_general_path() {
    let m = |page, n| Op {
        map: true,
        large: false,
        page,
        n,
        reuse: false,
        rights: 0,
    };
    let u = |page, n| Op {
        map: false,
        ..m(page, n)
    };
    for retain in [false, true] {
        for fail in [None, Some((0, 0)), Some((1, 1)), Some((0, 2))] {
            // Map next to a page, unmap the page of a table that keeps another, unmap the last page.
            run(vec![m(10, 1)], m(11, 1), retain, fail, None);
            run(vec![m(10, 1), m(11, 1)], u(11, 1), retain, fail, None);
            run(vec![m(10, 1)], u(10, 1), retain, fail, None);
            run(vec![m(10, 1)], u(11, 1), retain, fail, None);
            // Refusals: overlap, a cap mapped already.
            run(vec![m(10, 1)], m(10, 1), retain, fail, None);
            run(
                vec![m(10, 1)],
                Op {
                    reuse: true,
                    ..m(12, 1)
                },
                retain,
                fail,
                None,
            );
            // A run in one table.
            run(vec![m(10, 1)], m(11, 5), retain, fail, None);
            run(vec![m(10, 6)], u(9, 4), retain, fail, None);
        }
    }
}
