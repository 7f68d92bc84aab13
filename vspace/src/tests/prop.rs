//! Property tests: random sequences of map, unmap and protect, of all three page sizes, near table
//! boundaries and the ends of the user range, with injected kernel failures. After every step the shadow
//! must equal the mock kernel's tree (mappings, tables, mapped caps, live objects) and a simple reference
//! model of the mappings; refusals and complete rollbacks must change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use proptest::prelude::*;
use proptest::sample::Index;

use super::{assert_consistent, assert_lookups_agree, snapshot};
use crate::mock::MockKernel;
use crate::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Region bases: the bottom (null guard), across a 1 GiB boundary, across a 512 GiB boundary, the last
/// GiB below 2^47 (the limit).
const REGIONS: [u64; 4] = [0, GIB - 4 * MIB, (1 << 39) - 2 * MIB, (1 << 47) - GIB];

const FAILURES: [KernelFailure; 5] = [
    KernelFailure::NotEnoughMemory,
    KernelFailure::DeleteFirst,
    KernelFailure::InvalidCapability,
    KernelFailure::FailedLookup,
    KernelFailure::RevokeFirst,
];

const RIGHTS: [Rights; 4] = [Rights::READ_WRITE, Rights::READ, Rights::empty(), Rights::WRITE];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Map,
    Unmap,
    Protect,
}

#[derive(Clone, Debug)]
struct Step {
    kind: Kind,
    size: FrameSize,
    region: usize,
    cluster: u64,
    offset: u64,
    count: u64,
    big: bool,
    rights: usize,
    attr: usize,
    reuse: Option<Index>,
    fail: Option<(u64, usize)>,
    fail2: Option<u64>,
}

impl Step {
    /// The range the step acts on: start and number of pages.
    fn range(&self) -> (u64, u64) {
        let base = self.size.align_down(REGIONS[self.region]);
        let (page, count) = match self.size {
            FrameSize::Small => (
                [0, 500, 1020][self.cluster as usize] + self.offset,
                if self.big && !matches!(self.kind, Kind::Map) {
                    600
                } else {
                    self.count
                },
            ),
            FrameSize::Large => (self.offset % 4, self.count % 3 + 1),
            FrameSize::Huge => (self.offset % 2, self.count % 2 + 1),
        };
        (base + page * self.size.bytes(), count)
    }
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![5 => Just(Kind::Map), 3 => Just(Kind::Unmap), 2 => Just(Kind::Protect)],
        prop_oneof![6 => Just(FrameSize::Small), 3 => Just(FrameSize::Large), 1 => Just(FrameSize::Huge)],
        0..REGIONS.len(),
        0..3u64,
        0..12u64,
        1..8u64,
        prop::bool::weighted(0.2),
        prop_oneof![10 => 0..3usize, 1 => Just(3usize)],
        0..5usize,
        prop::option::weighted(0.05, any::<Index>()),
        prop::option::weighted(0.3, (0..24u64, 0..FAILURES.len())),
        prop::option::weighted(0.2, 0..4u64),
    )
        .prop_map(
            |(kind, size, region, cluster, offset, count, big, rights, attr, reuse, fail, fail2)| Step {
                kind,
                size,
                region,
                cluster,
                offset,
                count,
                big,
                rights,
                attr,
                reuse,
                fail,
                fail2,
            },
        )
}

/// The reference model: page start -> (size, cap, rights, attr).
type Model = BTreeMap<u64, (FrameSize, CapRef, Rights, CacheAttr)>;

fn model_of(s: &AddressSpace) -> Model {
    s.mappings()
        .map(|m| (m.vaddr.as_u64(), (m.size, m.frame, m.rights, m.attr)))
        .collect()
}

/// Mappings of the model that intersect `[start, end)`.
fn intersecting(model: &Model, start: u64, end: u64) -> Vec<(u64, FrameSize)> {
    model
        .range(start.saturating_sub(GIB - 1)..end)
        .filter(|(&v, m)| v + m.0.bytes() > start)
        .map(|(&v, m)| (v, m.0))
        .collect()
}

fn do_map<S: PageSize>(
    k: &mut MockKernel,
    s: &mut AddressSpace,
    start: u64,
    n: u64,
    caps: &[CapRef],
    r: Rights,
    a: CacheAttr,
) -> Result<(), MapError> {
    let range = PageRange::<S>::from_count(Page::from_start_address(start).unwrap(), n).unwrap();
    s.map(k, range, caps, r, a)
}

fn do_unmap<S: PageSize>(
    k: &mut MockKernel,
    s: &mut AddressSpace,
    start: u64,
    n: u64,
) -> Result<Vec<(VirtAddr, CapRef)>, UnmapError> {
    s.unmap(
        k,
        PageRange::<S>::from_count(Page::from_start_address(start).unwrap(), n).unwrap(),
    )
}

fn do_protect<S: PageSize>(
    k: &mut MockKernel,
    s: &mut AddressSpace,
    start: u64,
    n: u64,
    r: Rights,
    a: CacheAttr,
) -> Result<usize, ProtectError> {
    s.protect(
        k,
        PageRange::<S>::from_count(Page::from_start_address(start).unwrap(), n).unwrap(),
        r,
        a,
    )
}

/// The refusal the model predicts for a map, if any.
fn expected_map_refusal(
    model: &Model,
    s: &AddressSpace,
    start: u64,
    n: u64,
    size: FrameSize,
    caps: &[CapRef],
    rights: Rights,
) -> Option<MapError> {
    let end = start + n * size.bytes();
    if !rights.is_valid() {
        return Some(MapError::WriteWithoutRead);
    }
    if start < USER_VADDR_START || end > USER_VADDR_END {
        return Some(MapError::OutsideUserRange { start, end });
    }
    // A table of smaller pages in a large page's entry blocks it, as the kernel would. Without mappings
    // below it, such a table exists only while its reclaim is pending (an unmap of it was refused, or of an
    // empty table below it).
    let tables: BTreeSet<(TableLevel, u64)> = s.tables().map(|t| (t.level, t.base.as_u64())).collect();
    let mapped: BTreeSet<CapRef> = model.values().map(|m| m.1).collect();
    let mut seen = BTreeSet::new();
    for (i, &cap) in caps.iter().enumerate() {
        let v = start + i as u64 * size.bytes();
        let blocked = size.level().child().is_some_and(|c| tables.contains(&(c, v)));
        if !intersecting(model, v, v + size.bytes()).is_empty() || blocked {
            return Some(MapError::Overlap {
                vaddr: VirtAddr::new(v),
            });
        }
        if mapped.contains(&cap) || !seen.insert(cap) {
            return Some(MapError::FrameAlreadyMapped { frame: cap });
        }
    }
    None
}

/// For unmap and protect: the mapping the range splits, if any, and the mappings inside it.
fn inside(model: &Model, start: u64, end: u64) -> (Option<(VirtAddr, FrameSize)>, Vec<u64>) {
    let hits = intersecting(model, start, end);
    let split = hits
        .iter()
        .find(|&&(v, sz)| v < start || v + sz.bytes() > end)
        .map(|&(v, sz)| (VirtAddr::new(v), sz));
    (split, hits.into_iter().map(|(v, _)| v).collect())
}

fn run(steps: Vec<Step>) {
    let mut k = MockKernel::new();
    let mut s = AddressSpace::create(&mut k).unwrap();
    let mut model = Model::new();
    for st in steps {
        let (start, n) = st.range();
        let size = st.size;
        let end = start + n * size.bytes();
        let rights = RIGHTS[st.rights];
        let attr = CacheAttr::ALL[st.attr];
        let mut caps: Vec<CapRef> = Vec::new();
        if let Kind::Map = st.kind {
            caps = (0..n).map(|_| k.new_frame(size)).collect();
            if let (Some(ix), false) = (&st.reuse, model.is_empty()) {
                let m: Vec<CapRef> = model.values().map(|m| m.1).collect();
                caps[0] = m[ix.index(m.len())];
            }
        }
        let injected = st.fail.is_some();
        if let Some((at, f)) = st.fail {
            k.fail_call(at, FAILURES[f]);
            if let Some(at2) = st.fail2 {
                k.fail_call(at + 1 + at2, KernelFailure::RevokeFirst);
            }
        }
        let before = snapshot(&k, &s);
        let calls = k.stats().calls;
        let unchanged = |k: &MockKernel, s: &AddressSpace, what: &str| {
            assert_eq!(snapshot(k, s), before, "{what} changed the state: {st:?}");
        };
        match st.kind {
            Kind::Map => {
                let expected = expected_map_refusal(&model, &s, start, n, size, &caps, rights);
                let res = match size {
                    FrameSize::Small => do_map::<Size4K>(&mut k, &mut s, start, n, &caps, rights, attr),
                    FrameSize::Large => do_map::<Size2M>(&mut k, &mut s, start, n, &caps, rights, attr),
                    FrameSize::Huge => do_map::<Size1G>(&mut k, &mut s, start, n, &caps, rights, attr),
                };
                match (res, expected) {
                    (Ok(()), None) => {
                        for (i, &cap) in caps.iter().enumerate() {
                            model.insert(start + i as u64 * size.bytes(), (size, cap, rights, attr));
                        }
                    }
                    (Err(e), Some(x)) => {
                        assert_eq!(e, x, "{st:?}");
                        assert_eq!(k.stats().calls, calls, "a refusal called the kernel");
                        unchanged(&k, &s, "a refused map");
                    }
                    (Err(MapError::Kernel { rollback, .. }), None)
                    | (Err(MapError::OutOfMemory { rollback, .. }), None) => {
                        assert!(injected, "the kernel failed without an injected failure: {st:?}");
                        if rollback.is_complete() {
                            unchanged(&k, &s, "a rolled-back map");
                        } else {
                            model = model_of(&s);
                        }
                    }
                    (res, x) => panic!("map {st:?}: got {res:?}, model expected {x:?}"),
                }
            }
            Kind::Unmap => {
                let res = match size {
                    FrameSize::Small => do_unmap::<Size4K>(&mut k, &mut s, start, n),
                    FrameSize::Large => do_unmap::<Size2M>(&mut k, &mut s, start, n),
                    FrameSize::Huge => do_unmap::<Size1G>(&mut k, &mut s, start, n),
                };
                let (split, hits) = inside(&model, start, end);
                let expected = if end > USER_VADDR_END {
                    Some(UnmapError::OutsideUserRange { start, end })
                } else {
                    split.map(|(vaddr, size)| UnmapError::SplitsMapping { vaddr, size })
                };
                match (res, expected) {
                    (Ok(out), None) => {
                        let want: Vec<(VirtAddr, CapRef)> = hits
                            .iter()
                            .map(|&v| (VirtAddr::new(v), model.remove(&v).unwrap().1))
                            .collect();
                        assert_eq!(out, want, "{st:?}");
                        assert!(
                            out.iter().all(|&(_, c)| !k.is_mapped(c)),
                            "a returned cap is still mapped"
                        );
                    }
                    (Err(e), Some(x)) => {
                        assert_eq!(e, x, "{st:?}");
                        assert_eq!(k.stats().calls, calls, "a refusal called the kernel");
                        unchanged(&k, &s, "a refused unmap");
                    }
                    (
                        Err(UnmapError::Kernel {
                            unmapped, still_mapped, ..
                        }),
                        None,
                    ) => {
                        assert!(injected, "the kernel failed without an injected failure: {st:?}");
                        assert_eq!(unmapped.len() + still_mapped, hits.len());
                        for (v, c) in unmapped {
                            assert_eq!(model.remove(&v.as_u64()).map(|m| m.1), Some(c));
                            assert!(!k.is_mapped(c), "a returned cap is still mapped");
                        }
                    }
                    (res, x) => panic!("unmap {st:?}: got {res:?}, model expected {x:?}"),
                }
            }
            Kind::Protect => {
                let res = match size {
                    FrameSize::Small => do_protect::<Size4K>(&mut k, &mut s, start, n, rights, attr),
                    FrameSize::Large => do_protect::<Size2M>(&mut k, &mut s, start, n, rights, attr),
                    FrameSize::Huge => do_protect::<Size1G>(&mut k, &mut s, start, n, rights, attr),
                };
                let (split, hits) = inside(&model, start, end);
                let expected = if !rights.is_valid() {
                    Some(ProtectError::WriteWithoutRead)
                } else if end > USER_VADDR_END {
                    Some(ProtectError::OutsideUserRange { start, end })
                } else {
                    split.map(|(vaddr, size)| ProtectError::SplitsMapping { vaddr, size })
                };
                match (res, expected) {
                    (Ok(changed), None) => {
                        let mut want = 0;
                        for v in hits {
                            let m = model.get_mut(&v).unwrap();
                            if (m.2, m.3) != (rights, attr) {
                                want += 1;
                                (m.2, m.3) = (rights, attr);
                            }
                        }
                        assert_eq!(changed, want, "{st:?}");
                    }
                    (Err(e), Some(x)) => {
                        assert_eq!(e, x, "{st:?}");
                        assert_eq!(k.stats().calls, calls, "a refusal called the kernel");
                        unchanged(&k, &s, "a refused protect");
                    }
                    (Err(ProtectError::Kernel { rollback, .. }), None) => {
                        assert!(injected, "the kernel failed without an injected failure: {st:?}");
                        if rollback.is_complete() {
                            unchanged(&k, &s, "a rolled-back protect");
                        } else {
                            model = model_of(&s);
                        }
                    }
                    (res, x) => panic!("protect {st:?}: got {res:?}, model expected {x:?}"),
                }
            }
        }
        k.clear_injections();
        assert_consistent(&k, &s, true);
        assert_eq!(model_of(&s), model, "shadow vs model after {st:?}");
        let samples = model
            .iter()
            .flat_map(|(&v, m)| [v, v + m.0.bytes() / 2 + 8, v + m.0.bytes() - 1, v + m.0.bytes()])
            .chain([start.saturating_sub(1), start, end - 1, end]);
        assert_lookups_agree(&k, &s, samples);
    }
    let caps: BTreeSet<CapRef> = model.values().map(|m| m.1).collect();
    let t = s.destroy(&mut k).unwrap();
    assert_eq!(t.frames.iter().map(|x| x.1).collect::<BTreeSet<_>>(), caps);
    assert_eq!((k.live_tables(), k.live_roots()), ([0, 0, 0], 0));
    assert!(k.mapped_frame_caps().is_empty());
    let st = k.stats();
    assert_eq!(st.tables_allocated, st.tables_freed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_shadow_equal_to_kernel(steps in prop::collection::vec(step(), 1..40)) {
        run(steps);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `first_mapped` answers as a loop of `lookup` over the range's pages would, and `table_at` names
    /// the leaf table a lookup of the kernel's tree would find, for random 4 KiB and 2 MiB mappings
    /// around a 1 GiB boundary.
    #[test]
    fn first_mapped_and_table_at_agree_with_lookup(
        small in proptest::collection::vec(0u64..2048, 0..24),
        big in proptest::collection::vec(0u64..4, 0..3),
        queries in proptest::collection::vec((0u64..2048, 1u64..1100), 1..16),
    ) {
        let base = GIB - 4 * MIB;
        let mut k = MockKernel::new();
        let mut s = AddressSpace::create(&mut k).expect("create");
        for b in big {
            let f = k.new_frame(FrameSize::Large);
            let _ = s.map(&mut k, super::range::<Size2M>(base + b * 2 * MIB, 1), &[f], Rights::READ_WRITE,
                CacheAttr::WriteBack);
        }
        for p in small {
            let f = k.new_frame(FrameSize::Small);
            let _ = s.map(&mut k, super::range::<Size4K>(base + p * 4096, 1), &[f], Rights::READ_WRITE,
                CacheAttr::WriteBack);
        }
        for (first, n) in queries {
            let r = super::range::<Size4K>(base + first * 4096, n);
            let expect = (0..n)
                .map(|i| base + (first + i) * 4096)
                .find(|&va| s.lookup(VirtAddr::new(va)).is_some());
            prop_assert_eq!(s.first_mapped(r).map(|v| v.as_u64()), expect);
            let va = base + first * 4096;
            let leaf = s.tables().find(|t| t.level == TableLevel::Pt && t.base.as_u64() == va & !(2 * MIB - 1));
            prop_assert_eq!(s.table_at(TableLevel::Pt, VirtAddr::new(va)), leaf.map(|t| t.cap));
        }
    }
}
