//! Random sequences of operations with injected kernel failures: after every
//! step the books must match the model ([`audit`]), a refused step must leave
//! every figure unchanged, and no slot may be handed out twice.

use alloc::vec::Vec;
use hashbrown::HashSet;
use proptest::prelude::*;

use super::audit;
use crate::layout::Slot;
use crate::mock::MockKernel;
use crate::types::{KernelError, ObjectType as T, Rights};
use crate::{Allocation, CSpace, NodeState, Placement};

/// Small enough that memory, slots and CNodes run out: a 128-slot boot
/// CNode, 256-slot level-2 CNodes, at most 15 of them, 64 KiB chunks.
const MACHINE: &[(u64, u8, bool)] = &[
    (0x1_0000, 16, false),
    (0x4_0000, 18, false),
    (0x10_0000, 20, false),
    (0x2000, 12, false),
    (0xe000_0000, 18, true),
];

fn boot() -> CSpace<MockKernel> {
    let (k, mut cfg) = MockKernel::boot(7, MACHINE);
    cfg.l1_bits = 4;
    cfg.l2_bits = 8;
    cfg.chunk_bits = 16;
    cfg.split_bits = 1;
    let cs = CSpace::new(k, cfg).map_err(|(e, _)| e).expect("boot");
    audit(&cs);
    cs
}

const TYPES: [T; 8] = [
    T::Endpoint,
    T::Notification,
    T::Tcb,
    T::Frame4K,
    T::PageTable,
    T::CNode,
    T::Untyped,
    T::Frame2M,
];
const ERRORS: [KernelError; 4] = [
    KernelError::NotEnoughMemory,
    KernelError::DeleteFirst,
    KernelError::FailedLookup,
    KernelError::RangeError,
];

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        ty: usize,
        size: u8,
        count: u64,
        range: Option<(usize, u64, u64)>,
    },
    Free(usize),
    Copy(usize),
    Mint(usize, u64),
    Delete(usize),
    Revoke(usize),
    Move(usize),
    Slots(u64),
    Release(usize),
    Fail(u64, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..TYPES.len(), 0u8..14, prop_oneof![4 => Just(1u64), 1 => 1u64..6], prop::option::weighted(0.3, (0..MACHINE.len(), 0u64..64, 1u64..40)))
            .prop_map(|(ty, size, count, range)| Op::Alloc { ty, size, count, range }),
        3 => any::<usize>().prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::Copy),
        1 => (any::<usize>(), 0u64..4).prop_map(|(i, b)| Op::Mint(i, b)),
        2 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Revoke),
        1 => any::<usize>().prop_map(Op::Move),
        1 => (1u64..40).prop_map(Op::Slots),
        1 => any::<usize>().prop_map(Op::Release),
        2 => (1u64..5, 0..ERRORS.len()).prop_map(|(k, e)| Op::Fail(k, e)),
    ]
}

/// The size argument for a type from a random number.
fn size_arg(ty: T, n: u8) -> u8 {
    match ty {
        T::CNode => 1 + n % 6,
        T::Untyped => 4 + n,
        _ => 0,
    }
}

/// Slots the caller holds: originals, copies, reserved slots.
fn held(cs: &CSpace<MockKernel>) -> HashSet<Slot> {
    let mut h = HashSet::new();
    for (s, _, _) in cs.managed_caps() {
        assert!(h.insert(s), "{s:?} listed twice");
    }
    for s in cs.reserved_slots() {
        assert!(h.insert(s), "{s:?} both reserved and holding a cap");
    }
    h
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

/// What a run went through (to check that the random runs reach every path).
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    ok: u64,
    refused: u64,
    kernel_refusals: u64,
    growths: u64,
    max_cnodes: u64,
    reclaim_failures: u64,
    range_allocs: u64,
}

fn run(ops: Vec<Op>) -> Coverage {
    let mut cov = Coverage::default();
    let mut cs = boot();
    let start = cs.stats();
    let mut objs: Vec<Allocation> = Vec::new();
    for op in ops {
        let before = cs.stats();
        let before_calls = cs.kernel().calls();
        let held_before = held(&cs);
        let copies: Vec<Slot> = cs.managed_caps().filter(|c| !c.2).map(|c| c.0).collect();
        let all_caps: Vec<Slot> = cs.managed_caps().map(|c| c.0).collect();
        let mut reserved: Vec<Slot> = cs.reserved_slots().collect();
        reserved.sort();
        let mut new_slots: Vec<Slot> = Vec::new();
        // Ok(true): succeeded; Ok(false): nothing to do; Err: refused.
        let r: Result<bool, ()> = match op {
            Op::Alloc { ty, size, count, range } => {
                let ty = TYPES[ty];
                let placement = match range {
                    None => Placement::Anywhere,
                    Some((u, off, len)) => {
                        let lo = MACHINE[u].0 + off * 0x1000;
                        Placement::Range {
                            lo,
                            hi: lo + len * 0x1000,
                        }
                    }
                };
                match cs.alloc_many(ty, size_arg(ty, size), count, placement) {
                    Ok(v) => {
                        for a in &v {
                            new_slots.push(a.slot);
                            if let Placement::Range { lo, hi } = placement {
                                assert!(
                                    a.paddr >= lo && a.paddr + (1 << a.obj_bits) <= hi,
                                    "{a:?} outside range"
                                );
                            } else {
                                assert!(!a.device);
                            }
                        }
                        objs.extend(v);
                        Ok(true)
                    }
                    Err(_) => Err(()),
                }
            }
            Op::Free(i) => match pick(&objs, i) {
                None => Ok(false),
                Some(a) => match cs.free(a.id) {
                    Ok(()) => {
                        objs.retain(|o| o.id != a.id);
                        Ok(true)
                    }
                    Err(_) => Err(()),
                },
            },
            Op::Copy(i) | Op::Mint(i, _) => match pick(&all_caps, i) {
                None => Ok(false),
                Some(src) => {
                    let r = match op {
                        Op::Mint(_, b) => cs.mint(src, Rights::ALL_CAP, b),
                        _ => cs.copy(src, Rights::READ | Rights::WRITE),
                    };
                    match r {
                        Ok(s) => {
                            new_slots.push(s);
                            Ok(true)
                        }
                        Err(_) => Err(()),
                    }
                }
            },
            Op::Delete(i) => match pick(&copies, i) {
                None => Ok(false),
                Some(s) => cs.delete(s).map(|_| true).map_err(|_| ()),
            },
            Op::Revoke(i) => match pick(&all_caps, i) {
                None => Ok(false),
                Some(s) => cs.revoke(s).map(|_| true).map_err(|_| ()),
            },
            Op::Move(i) => match (pick(&all_caps, i), pick(&reserved, i)) {
                (Some(src), Some(dest)) => match cs.mv(src, dest) {
                    Ok(()) => {
                        for o in objs.iter_mut() {
                            if o.slot == src {
                                *o = cs.object(o.id).unwrap();
                            }
                        }
                        Ok(true)
                    }
                    Err(_) => Err(()),
                },
                _ => Ok(false),
            },
            Op::Slots(n) => match cs.alloc_slots(n) {
                Ok(r) => {
                    new_slots.extend(r.iter());
                    Ok(true)
                }
                Err(_) => Err(()),
            },
            Op::Release(i) => match pick(&reserved, i) {
                None => Ok(false),
                Some(s) => cs.release_slot(s).map(|_| true).map_err(|_| ()),
            },
            Op::Fail(k, e) => {
                cs.kernel_mut().fail_in(k, ERRORS[e]);
                Ok(false)
            }
        };
        assert!(
            !cs.is_poisoned(),
            "a single injected failure never defeats the rollback"
        );
        let calls_made = cs.kernel().calls();
        match r {
            Ok(true) => cov.ok += 1,
            Ok(false) => {}
            Err(()) => {
                cov.refused += 1;
                if calls_made > before_calls {
                    cov.kernel_refusals += 1;
                }
            }
        }
        if matches!(op, Op::Alloc { range: Some(_), .. }) && r == Ok(true) {
            cov.range_allocs += 1;
        }
        if cs.stats().cnodes > before.cnodes {
            cov.growths += 1;
        }
        if r.is_err() {
            assert_eq!(cs.stats(), before, "{op:?} refused but changed the figures");
            assert_eq!(held(&cs), held_before, "{op:?} refused but changed the slots");
        }
        for s in &new_slots {
            assert!(!held_before.contains(s), "{s:?} handed out twice");
        }
        audit(&cs);
        let st = cs.stats();
        assert_eq!(st.objects_live, objs.len() as u64);
        cov.max_cnodes = cov.max_cnodes.max(st.cnodes);
        cov.reclaim_failures = st.reclaim_failures;
    }
    // Clean up everything: the books return to the start, less the CNodes
    // that growth added (they stay).
    cs.kernel_mut().clear_failures();
    for a in &objs {
        cs.revoke(cs.object(a.id).unwrap().slot).unwrap();
    }
    for a in objs {
        cs.free(a.id).unwrap();
    }
    let reserved: Vec<Slot> = cs.reserved_slots().collect();
    for s in reserved {
        cs.release_slot(s).unwrap();
    }
    cs.reclaim_idle().unwrap();
    audit(&cs);
    let st = cs.stats();
    assert_eq!((st.objects_live, st.copies_live, st.slots_reserved), (0, 0, 0));
    assert_eq!(st.ram.live, st.cnode_bytes);
    assert_eq!(st.ram.padding, 0);
    assert_eq!(st.device, start.device);
    assert_eq!(st.ram.free, start.ram.free - (st.cnode_bytes - start.cnode_bytes));
    // Only the untypeds that hold CNodes (and their ancestors) stay split.
    for (_, n) in cs.untypeds().nodes() {
        if let NodeState::Leaf { objects, .. } = n.state {
            assert_eq!(objects, 1);
        }
    }
    cov
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn books_match_the_kernel(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

#[test]
fn random_runs_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 100..200);
    let mut total = Coverage::default();
    for _ in 0..40 {
        let c = run(strategy.new_tree(&mut runner).unwrap().current());
        total.ok += c.ok;
        total.refused += c.refused;
        total.kernel_refusals += c.kernel_refusals;
        total.growths += c.growths;
        total.max_cnodes = total.max_cnodes.max(c.max_cnodes);
        total.reclaim_failures += c.reclaim_failures;
        total.range_allocs += c.range_allocs;
    }
    let t = total;
    std::eprintln!("{t:?}");
    assert!(t.ok > 1000 && t.refused > 100 && t.kernel_refusals > 50, "{t:?}");
    assert!(
        t.growths > 10 && t.max_cnodes >= 3 && t.reclaim_failures > 0 && t.range_allocs > 20,
        "{t:?}"
    );
}

#[test]
fn long_sequence_with_growth() {
    // A deterministic long run that fills several level-2 CNodes.
    let mut ops = Vec::new();
    for i in 0..400usize {
        ops.push(Op::Alloc {
            ty: i % 2,
            size: 0,
            count: 1 + (i % 3) as u64,
            range: None,
        });
        if i % 7 == 0 {
            ops.push(Op::Copy(i));
        }
        if i % 11 == 0 {
            ops.push(Op::Fail(1 + (i % 4) as u64, i % ERRORS.len()));
        }
        if i % 5 == 0 {
            ops.push(Op::Free(i * 3));
        }
    }
    let c = run(ops);
    std::eprintln!("{c:?}");
    assert!(c.max_cnodes >= 4, "{c:?}");
}
