//! The batched calls ([`CSpace::copy_many`], [`CSpace::delete_many`]): the
//! outcome of a loop of single calls, all-or-nothing copies, refusals that
//! change nothing, and rollback after every failing kernel call.

use alloc::vec;
use alloc::vec::Vec;
use hashbrown::HashSet;
use proptest::prelude::*;

use super::{audit, boot};
use crate::kernel::KernelOp;
use crate::layout::Slot;
use crate::mock::MockKernel;
use crate::types::{KernelError, ObjectType as T, Rights};
use crate::{Allocation, CSpace, CapError, DeleteManyError, ObjectId, Placement, Stats};

/// Slots the caller holds: managed caps and reserved slots.
fn held(cs: &CSpace<MockKernel>) -> HashSet<Slot> {
    cs.managed_caps().map(|c| c.0).chain(cs.reserved_slots()).collect()
}

/// The managed caps in slot order: slot, object, original?, badge.
fn caps(cs: &CSpace<MockKernel>) -> Vec<(Slot, ObjectId, bool, Option<u64>)> {
    let mut v: Vec<_> = cs
        .managed_caps()
        .map(|(s, o, orig)| (s, o, orig, cs.badge(s)))
        .collect();
    v.sort();
    v
}

/// A small CSpace (as in the random runs): a 128-slot boot CNode, 256-slot
/// level-2 CNodes, at most `2^l1_bits - 1` of them.
fn small(l1_bits: u8) -> CSpace<MockKernel> {
    let machine = [
        (0x1_0000, 16, false),
        (0x4_0000, 18, false),
        (0x10_0000, 20, false),
        (0x2000, 12, false),
    ];
    let (k, mut cfg) = MockKernel::boot(7, &machine);
    cfg.l1_bits = l1_bits;
    cfg.l2_bits = 8;
    cfg.chunk_bits = 16;
    let cs = CSpace::new(k, cfg).map_err(|(e, _)| e).expect("boot");
    audit(&cs);
    cs
}

/// Objects and copies of every kind a copy can start from: frames
/// (originals and a copy, whose copies go under the original), a badged
/// endpoint copy (revocable), an untyped copy (revocable; the kernel copies
/// an untyped only while it has no children, so its original is not a
/// source).
struct Sources {
    ut: Allocation,
    srcs: Vec<Slot>,
}

fn sources(cs: &mut CSpace<MockKernel>) -> Sources {
    let frames = cs.alloc_many(T::Frame4K, 0, 8, Placement::Anywhere).unwrap();
    let ep = cs.alloc(T::Endpoint, 0).unwrap();
    let badged = cs.mint(ep.slot, Rights::ALL_CAP, 5).unwrap();
    let ut = cs.alloc(T::Untyped, 12).unwrap();
    let ut_copy = cs.copy(ut.slot, Rights::ALL_CAP).unwrap();
    let frame_copy = cs.copy(frames[0].slot, Rights::READ).unwrap();
    let mut srcs: Vec<Slot> = frames.iter().map(|a| a.slot).collect();
    srcs.extend([badged, ep.slot, ut_copy, frame_copy, frames[1].slot]);
    audit(cs);
    Sources { ut, srcs }
}

#[test]
fn copy_many_is_a_loop_of_copies() {
    let (mut a, mut b) = (boot(), boot());
    let (sa, sb) = (sources(&mut a), sources(&mut b));
    assert_eq!(sa.srcs, sb.srcs);
    let (ca, cb) = (a.kernel().calls(), b.kernel().calls());
    let rights = Rights::READ | Rights::WRITE;
    let got = a.copy_many(&sa.srcs, rights).unwrap();
    let want: Vec<Slot> = sb.srcs.iter().map(|&s| b.copy(s, rights).unwrap()).collect();
    // On a fresh CSpace the loop takes consecutive slots too.
    assert_eq!(got, want);
    for w in got.windows(2) {
        assert_eq!((w[1].cnode, w[1].index), (w[0].cnode, w[0].index + 1));
    }
    assert_eq!(a.kernel().calls() - ca, got.len() as u64);
    assert_eq!(a.kernel().calls() - ca, b.kernel().calls() - cb);
    assert_eq!(a.stats(), b.stats());
    assert_eq!(caps(&a), caps(&b));
    audit(&a);
    audit(&b);
    // The derivation links are the loop's: delete the copies that have
    // copies, then revoke every source, comparing books and model each time.
    for cs in [&mut a, &mut b] {
        cs.delete(sa.srcs[11]).unwrap();
        cs.delete(sa.srcs[10]).unwrap();
        audit(cs);
    }
    assert_eq!(caps(&a), caps(&b));
    for &s in &sa.srcs {
        if a.is_managed(s) {
            a.revoke(s).unwrap();
            b.revoke(s).unwrap();
            audit(&a);
            assert_eq!(a.stats(), b.stats());
            assert_eq!(caps(&a), caps(&b));
        }
    }
    // Left: the copy of the deleted untyped copy, now under the untyped.
    assert_eq!(a.stats().copies_live, 1);
    a.revoke(sa.ut.slot).unwrap();
    assert_eq!(a.stats().copies_live, 0);
    audit(&a);
}

#[test]
fn copy_many_refusals_change_nothing() {
    let mut cs = boot();
    let s = sources(&mut cs);
    let reserved = cs.alloc_slot().unwrap();
    let free = cs.slot_books().free_slots().next().unwrap();
    let before = (cs.stats(), caps(&cs), cs.kernel().calls());
    assert_eq!(cs.copy_many(&[], Rights::ALL_CAP), Ok(Vec::new()));
    for bad in [reserved, free, Slot::root(1), Slot::root(99_999)] {
        let mut srcs = s.srcs.clone();
        srcs.insert(3, bad);
        assert_eq!(cs.copy_many(&srcs, Rights::ALL_CAP), Err(CapError::NotManaged(bad)));
        assert_eq!((cs.stats(), caps(&cs), cs.kernel().calls()), before);
    }
    audit(&cs);
}

#[test]
fn copy_many_kernel_failure_rolls_back() {
    let n = 13;
    for k in 1..=n {
        let mut cs = boot();
        let s = sources(&mut cs);
        assert_eq!(s.srcs.len() as u64, n);
        let before = (cs.stats(), caps(&cs), held(&cs));
        let calls = cs.kernel().calls();
        cs.kernel_mut().fail_in(k, KernelError::RevokeFirst);
        assert_eq!(
            cs.copy_many(&s.srcs, Rights::ALL_CAP),
            Err(CapError::Kernel {
                op: KernelOp::Copy,
                error: KernelError::RevokeFirst
            }),
            "copy {k}"
        );
        // k copies tried, the k - 1 made deleted again.
        assert_eq!(cs.kernel().calls() - calls, 2 * k - 1, "copy {k}");
        assert_eq!((cs.stats(), caps(&cs), held(&cs)), before, "copy {k}");
        audit(&cs);
        let got = cs.copy_many(&s.srcs, Rights::ALL_CAP).unwrap();
        assert_eq!(got.len() as u64, n);
        audit(&cs);
    }
}

#[test]
fn copy_many_failed_rollback_poisons() {
    let mut cs = boot();
    let s = sources(&mut cs);
    let c = cs.kernel().calls();
    // The third copy fails, then every try of the first undo delete.
    for i in 3..7 {
        cs.kernel_mut().fail_call(c + i, KernelError::FailedLookup);
    }
    assert_eq!(cs.copy_many(&s.srcs, Rights::ALL_CAP), Err(CapError::Poisoned));
    assert!(cs.is_poisoned());
    assert_eq!(cs.copy_many(&s.srcs, Rights::ALL_CAP), Err(CapError::Poisoned));
    assert_eq!(
        cs.delete_many(&[]),
        Err(DeleteManyError {
            deleted: 0,
            error: CapError::Poisoned
        })
    );
}

/// A batch larger than the free slots: taken one at a time, growing the
/// CSpace; every failing call (splits, the new CNode, each copy) is rolled
/// back, growth included.
#[test]
fn copy_many_grows_and_rolls_back_growth() {
    let setup = || {
        let mut cs = small(4);
        let f = cs.alloc(T::Frame4K, 0).unwrap();
        let n = cs.stats().slots_free as usize;
        (cs, vec![f.slot; n])
    };
    let (mut cs, srcs) = setup();
    let before = cs.stats();
    let c = cs.kernel().calls();
    let got = cs.copy_many(&srcs, Rights::READ).unwrap();
    let calls = cs.kernel().calls() - c;
    assert_eq!(cs.stats().cnodes, before.cnodes + 1, "grew");
    assert!(calls > srcs.len() as u64 + 1, "{calls}");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), srcs.len());
    audit(&cs);
    for k in 1..=calls {
        let (mut cs, srcs) = setup();
        let before = (cs.stats(), caps(&cs), held(&cs));
        cs.kernel_mut().fail_in(k, KernelError::NotEnoughMemory);
        let r = cs.copy_many(&srcs, Rights::READ);
        assert!(
            matches!(
                r,
                Err(CapError::Kernel {
                    op: KernelOp::Retype | KernelOp::Copy,
                    error: KernelError::NotEnoughMemory
                })
            ),
            "call {k}: {r:?}"
        );
        assert_eq!((cs.stats(), caps(&cs), held(&cs)), before, "call {k}");
        audit(&cs);
    }
}

#[test]
fn copy_many_out_of_slots_changes_nothing() {
    // At most three level-2 CNodes besides the boot CNode.
    let mut cs = small(2);
    let f = cs.alloc(T::Frame4K, 0).unwrap();
    let before = (cs.stats(), caps(&cs), held(&cs));
    let srcs = vec![f.slot; 2000];
    assert_eq!(
        cs.copy_many(&srcs, Rights::READ),
        Err(CapError::OutOfSlots { needed: 2000 })
    );
    assert_eq!((cs.stats(), caps(&cs), held(&cs)), before);
    audit(&cs);
    // What fits still works, and growth stays possible.
    let got = cs.copy_many(&srcs[..300], Rights::READ).unwrap();
    assert_eq!(got.len(), 300);
    audit(&cs);
}

/// Copies of every shape, including copies of copies under revocable caps
/// (untyped copies), so that deletes re-attach children.
fn tree(cs: &mut CSpace<MockKernel>) -> Vec<Slot> {
    let ut = cs.alloc(T::Untyped, 12).unwrap();
    let u1 = cs.copy(ut.slot, Rights::ALL_CAP).unwrap();
    let u2 = cs.copy(u1, Rights::ALL_CAP).unwrap();
    let u3 = cs.copy(u2, Rights::ALL_CAP).unwrap();
    let ep = cs.alloc(T::Endpoint, 0).unwrap();
    let b = cs.mint(ep.slot, Rights::ALL_CAP, 3).unwrap();
    let bc = cs.copy(b, Rights::ALL_CAP).unwrap();
    let fr = cs.alloc(T::Frame4K, 0).unwrap();
    let f: Vec<Slot> = (0..5).map(|_| cs.copy(fr.slot, Rights::READ).unwrap()).collect();
    audit(cs);
    vec![u2, f[2], b, f[0], u1, bc, f[4], u3]
}

#[test]
fn delete_many_is_a_loop_of_deletes() {
    let (mut a, mut b) = (boot(), boot());
    let (ta, tb) = (tree(&mut a), tree(&mut b));
    assert_eq!(ta, tb);
    let (ca, cb) = (a.kernel().calls(), b.kernel().calls());
    a.delete_many(&ta).unwrap();
    for &s in &tb {
        b.delete(s).unwrap();
    }
    assert_eq!(a.kernel().calls() - ca, ta.len() as u64);
    assert_eq!(a.kernel().calls() - ca, b.kernel().calls() - cb);
    assert_eq!(a.stats(), b.stats());
    assert_eq!(caps(&a), caps(&b));
    audit(&a);
    assert_eq!(a.stats().copies_live, 2, "two frame copies left");
    // Half first, the rest after: the same.
    let (mut a, mut b) = (boot(), boot());
    let (ta, _) = (tree(&mut a), tree(&mut b));
    a.delete_many(&ta[..4]).unwrap();
    audit(&a);
    a.delete_many(&ta[4..]).unwrap();
    for &s in &ta {
        b.delete(s).unwrap();
    }
    assert_eq!(a.stats(), b.stats());
    assert_eq!(caps(&a), caps(&b));
    audit(&a);
}

#[test]
fn delete_many_refusals_change_nothing() {
    let mut cs = boot();
    let t = tree(&mut cs);
    let original = cs.managed_caps().find(|c| c.2).unwrap().0;
    let reserved = cs.alloc_slot().unwrap();
    let before = (cs.stats(), caps(&cs), cs.kernel().calls());
    assert_eq!(cs.delete_many(&[]), Ok(()));
    let refused = |error| Err(DeleteManyError { deleted: 0, error });
    for (bad, e) in [
        (reserved, CapError::NotManaged(reserved)),
        (Slot::root(99_999), CapError::NotManaged(Slot::root(99_999))),
        (original, CapError::IsOriginal(original)),
        // Named twice: gone by its second turn.
        (t[1], CapError::NotManaged(t[1])),
    ] {
        let mut slots = t.clone();
        slots.insert(5, bad);
        assert_eq!(cs.delete_many(&slots), refused(e));
        assert_eq!((cs.stats(), caps(&cs), cs.kernel().calls()), before);
    }
    audit(&cs);
    cs.delete_many(&t).unwrap();
    audit(&cs);
}

#[test]
fn delete_many_kernel_failure_stops_there() {
    let n = 8;
    for k in 1..=n {
        let mut cs = boot();
        let t = tree(&mut cs);
        assert_eq!(t.len(), n);
        let before = cs.stats();
        cs.kernel_mut().fail_in(k as u64, KernelError::DeleteFirst);
        assert_eq!(
            cs.delete_many(&t),
            Err(DeleteManyError {
                deleted: k - 1,
                error: CapError::Kernel {
                    op: KernelOp::Delete,
                    error: KernelError::DeleteFirst
                }
            })
        );
        assert_eq!(cs.stats().copies_live, before.copies_live - (k as u64 - 1));
        for (i, &s) in t.iter().enumerate() {
            assert_eq!(cs.is_managed(s), i >= k - 1, "delete {k}, slot {i}");
        }
        audit(&cs);
        cs.delete_many(&t[k - 1..]).unwrap();
        audit(&cs);
    }
}

// ------------------------------------------------------------------ random

#[derive(Debug, Clone)]
enum Op {
    Alloc(u64),
    CopyMany(Vec<usize>),
    DeleteMany(Vec<usize>),
    Copy(usize),
    Delete(usize),
    Revoke(usize),
    Free(usize),
    Fail(u64, usize),
}

const ERRORS: [KernelError; 3] = [
    KernelError::NotEnoughMemory,
    KernelError::DeleteFirst,
    KernelError::FailedLookup,
];

fn op() -> impl Strategy<Value = Op> {
    let picks = || prop::collection::vec(any::<usize>(), 0..120);
    prop_oneof![
        3 => (1u64..8).prop_map(Op::Alloc),
        4 => picks().prop_map(Op::CopyMany),
        3 => picks().prop_map(Op::DeleteMany),
        1 => any::<usize>().prop_map(Op::Copy),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Revoke),
        1 => any::<usize>().prop_map(Op::Free),
        2 => (1u64..60, 0..ERRORS.len()).prop_map(|(k, e)| Op::Fail(k, e)),
    ]
}

fn pick(v: &[Slot], i: usize) -> Option<Slot> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

/// Random batches on a CSpace that grows and runs out of slots, with
/// injected failures: after each step the books match the model; a refused
/// or rolled-back batch changes nothing; a delete batch stopped by the
/// kernel deleted exactly its first `deleted` slots; no slot is handed out
/// twice.
fn run(ops: Vec<Op>) -> Coverage {
    let mut cov = Coverage::default();
    let mut cs = small(2);
    let mut objs: Vec<Allocation> = Vec::new();
    for op in ops {
        let before: Stats = cs.stats();
        let held_before = held(&cs);
        let caps_before = caps(&cs);
        let all: Vec<Slot> = caps_before.iter().map(|c| c.0).collect();
        let copies: Vec<Slot> = caps_before.iter().filter(|c| !c.2).map(|c| c.0).collect();
        match op {
            Op::Alloc(n) => {
                if let Ok(v) = cs.alloc_many(T::Frame4K, 0, n, Placement::Anywhere) {
                    objs.extend(v);
                }
            }
            Op::CopyMany(ref picks) => {
                let srcs: Vec<Slot> = picks.iter().filter_map(|&i| pick(&all, i)).collect();
                let r = cs.copy_many(&srcs, Rights::READ);
                match &r {
                    Ok(_) if srcs.len() > 1 => cov.copied += 1,
                    Err(CapError::Kernel { op: KernelOp::Copy, .. }) => cov.copy_refused += 1,
                    Err(CapError::Kernel {
                        op: KernelOp::Retype, ..
                    }) => cov.growth_refused += 1,
                    Err(CapError::OutOfSlots { .. }) => cov.out_of_slots += 1,
                    _ => {}
                }
                match r {
                    Ok(got) => {
                        assert_eq!(got.len(), srcs.len());
                        assert_eq!(cs.stats().copies_live, before.copies_live + srcs.len() as u64);
                        let fresh: HashSet<Slot> = got.iter().copied().collect();
                        assert_eq!(fresh.len(), got.len());
                        assert!(fresh.is_disjoint(&held_before), "handed out twice");
                        for (&s, &d) in srcs.iter().zip(&got) {
                            assert_eq!(cs.object_at(d), cs.object_at(s));
                        }
                    }
                    Err(_) => {
                        assert_eq!(cs.stats(), before, "{op:?}");
                        assert_eq!(held(&cs), held_before, "{op:?}");
                        assert_eq!(caps(&cs), caps_before, "{op:?}");
                    }
                }
            }
            Op::DeleteMany(ref picks) => {
                let mut seen = HashSet::new();
                let slots: Vec<Slot> = picks
                    .iter()
                    .filter_map(|&i| pick(&copies, i))
                    .filter(|s| seen.insert(*s))
                    .collect();
                match cs.delete_many(&slots) {
                    Ok(()) => {
                        cov.deleted += u64::from(slots.len() > 1);
                        assert!(slots.iter().all(|&s| !cs.is_managed(s)));
                    }
                    Err(DeleteManyError { deleted, error }) => {
                        cov.delete_stopped += u64::from(deleted > 0);
                        assert!(matches!(error, CapError::Kernel { .. }), "{error:?}");
                        for (i, &s) in slots.iter().enumerate() {
                            assert_eq!(cs.is_managed(s), i >= deleted);
                        }
                        assert_eq!(cs.stats().copies_live, before.copies_live - deleted as u64);
                    }
                }
            }
            Op::Copy(i) => {
                if let Some(s) = pick(&all, i) {
                    let _ = cs.copy(s, Rights::READ);
                }
            }
            Op::Delete(i) => {
                if let Some(s) = pick(&copies, i) {
                    let _ = cs.delete(s);
                }
            }
            Op::Revoke(i) => {
                if let Some(s) = pick(&all, i) {
                    let _ = cs.revoke(s);
                }
            }
            Op::Free(i) => {
                if !objs.is_empty() {
                    let a = objs[i % objs.len()];
                    if cs.free(a.id).is_ok() {
                        objs.retain(|o| o.id != a.id);
                    }
                }
            }
            // One pending failure at a time: a newer one replaces the older
            // (several queued close together could defeat a rollback, which
            // this test does not claim to survive).
            Op::Fail(k, e) => {
                cs.kernel_mut().clear_failures();
                cs.kernel_mut().fail_in(k, ERRORS[e]);
            }
        }
        assert!(
            !cs.is_poisoned(),
            "a single injected failure never defeats the rollback"
        );
        audit(&cs);
        cov.growths += u64::from(cs.stats().cnodes > before.cnodes);
    }
    // Everything can be taken down again.
    cs.kernel_mut().clear_failures();
    for a in &objs {
        cs.revoke(a.slot).unwrap();
        cs.free(a.id).unwrap();
    }
    audit(&cs);
    let st = cs.stats();
    assert_eq!((st.objects_live, st.copies_live), (0, 0));
    cov
}

/// What a run went through (to check that the random runs reach every path).
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    copied: u64,
    copy_refused: u64,
    growth_refused: u64,
    out_of_slots: u64,
    deleted: u64,
    delete_stopped: u64,
    growths: u64,
}

#[test]
fn random_batches_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 100..200);
    let mut t = Coverage::default();
    for _ in 0..20 {
        let c = run(strategy.new_tree(&mut runner).unwrap().current());
        t.copied += c.copied;
        t.copy_refused += c.copy_refused;
        t.growth_refused += c.growth_refused;
        t.out_of_slots += c.out_of_slots;
        t.deleted += c.deleted;
        t.delete_stopped += c.delete_stopped;
        t.growths += c.growths;
    }
    std::eprintln!("{t:?}");
    assert!(
        t.copied > 100 && t.copy_refused > 10 && t.deleted > 100 && t.delete_stopped > 10,
        "{t:?}"
    );
    assert!(t.growths > 10 && t.growth_refused > 0 && t.out_of_slots > 0, "{t:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_keep_the_books(ops in prop::collection::vec(op(), 1..50)) {
        run(ops);
    }
}

#[test]
fn adopted_copies_are_booked_like_copies() {
    let mut cs = crate::tests::boot();
    let a = cs.alloc(crate::ObjectType::Frame4K, 0).unwrap();
    let b = cs.alloc(crate::ObjectType::Frame4K, 0).unwrap();
    let run = cs.alloc_slots(2).unwrap();
    // The "kernel extension" makes the copies directly in the mock.
    for (i, src) in [a.slot, b.slot].iter().enumerate() {
        let (dp, sp) = (cs.path(run.slot(i as u64)), cs.path(*src));
        crate::KernelOps::cnode_copy(cs.kernel_mut(), dp, sp, crate::Rights::ALL_CAP).unwrap();
    }
    let before = cs.stats();
    cs.adopt_copies(&[a.slot, b.slot], run).unwrap();
    let after = cs.stats();
    assert_eq!(after.copies_live, before.copies_live + 2);
    assert_eq!(after.slots_reserved, before.slots_reserved - 2);
    crate::tests::audit(&cs);
    // Refusals: not reserved any more; a length mismatch.
    assert!(cs.adopt_copies(&[a.slot, b.slot], run).is_err());
    assert!(cs.adopt_copies(&[a.slot], run).is_err());
    cs.delete(run.slot(0)).unwrap();
    cs.delete(run.slot(1)).unwrap();
    cs.free(a.id).unwrap();
    cs.free(b.id).unwrap();
    crate::tests::audit(&cs);
}

#[test]
fn adopted_deletes_are_booked_like_deletes() {
    let mut cs = crate::tests::boot();
    let a = cs.alloc(crate::ObjectType::Frame4K, 0).unwrap();
    let before = cs.stats();
    let c1 = cs.copy(a.slot, crate::Rights::ALL_CAP).unwrap();
    let c2 = cs.copy(a.slot, crate::Rights::ALL_CAP).unwrap();
    // Refused: an original among them; nothing recorded.
    assert!(cs.adopt_deletes(&[c1, a.slot]).is_err());
    // The "kernel extension" deletes them directly in the mock.
    for c in [c1, c2] {
        let p = cs.path(c);
        crate::KernelOps::cnode_delete(cs.kernel_mut(), p).unwrap();
    }
    cs.adopt_deletes(&[c1, c2]).unwrap();
    assert_eq!(cs.stats(), before);
    crate::tests::audit(&cs);
    cs.free(a.id).unwrap();
}

/// Books of two managers that must agree.
fn same_books(x: &CSpace<MockKernel>, y: &CSpace<MockKernel>) {
    assert_eq!(x.stats(), y.stats());
    assert_eq!(caps(x), caps(y));
    assert!(x.reserved_slots().eq(y.reserved_slots()));
}

/// Copies made by the "kernel extension" directly in the mock.
fn kernel_copies(cs: &mut CSpace<MockKernel>, srcs: &[Slot], dests: crate::SlotRange) {
    for (i, src) in srcs.iter().enumerate() {
        let (dp, sp) = (cs.path(dests.slot(i as u64)), cs.path(*src));
        crate::KernelOps::cnode_copy(cs.kernel_mut(), dp, sp, Rights::ALL_CAP).unwrap();
    }
}

#[test]
fn adopted_runs_match_adopted_lists_and_copies() {
    // Three managers: `copy_to` one at a time, `adopt_copies`, `adopt_copies_run`.
    let mut cs: Vec<CSpace<MockKernel>> = (0..3).map(|_| crate::tests::boot()).collect();
    let mut frames = vec![];
    for c in cs.iter_mut() {
        frames = c.alloc_many(T::Frame4K, 0, 40, Placement::Anywhere).unwrap();
    }
    let srcs: Vec<Slot> = frames.iter().map(|a| a.slot).collect();
    // Copies of copies too (sources that are not revocable), and copies into
    // reserved slots (deleting them gives the slot back to the caller).
    let mut extra = vec![];
    for c in cs.iter_mut() {
        extra = (0..8)
            .map(|i| c.copy(srcs[i], Rights::ALL_CAP).unwrap())
            .collect::<Vec<_>>();
        let r = c.alloc_slots(4).unwrap();
        for i in 0..4 {
            c.copy_to(srcs[10 + i as usize], r.slot(i), Rights::ALL_CAP).unwrap();
        }
    }
    for round in 0..3 {
        let mut runs = vec![];
        for (m, c) in cs.iter_mut().enumerate() {
            let run = c.alloc_slots(srcs.len() as u64).unwrap();
            match m {
                0 => {
                    for (i, &s) in srcs.iter().enumerate() {
                        c.copy_to(s, run.slot(i as u64), Rights::ALL_CAP).unwrap();
                    }
                }
                1 => {
                    kernel_copies(c, &srcs, run);
                    c.adopt_copies(&srcs, run).unwrap();
                }
                _ => {
                    kernel_copies(c, &srcs, run);
                    c.adopt_copies_run(srcs[0], srcs.len() as u64, run).unwrap();
                }
            }
            crate::tests::audit(c);
            runs.push(run);
        }
        // Copies adopted from copies (a list).
        for c in cs.iter_mut().skip(1) {
            let run = c.alloc_slots(extra.len() as u64).unwrap();
            kernel_copies(c, &extra, run);
            c.adopt_copies(&extra, run).unwrap();
        }
        {
            let c = &mut cs[0];
            let run = c.alloc_slots(extra.len() as u64).unwrap();
            for (i, &s) in extra.iter().enumerate() {
                c.copy_to(s, run.slot(i as u64), Rights::ALL_CAP).unwrap();
            }
        }
        // `copy_to` books the copies in the caller's slots; adopted ones are
        // the manager's own.
        assert_eq!(caps(&cs[0]), caps(&cs[1]));
        same_books(&cs[1], &cs[2]);
        // Delete every other copy of the run: by loop, and by adopt_deletes.
        let dels: Vec<Slot> = runs[0].iter().step_by(2 + round).collect();
        for (m, c) in cs.iter_mut().enumerate() {
            if m == 0 {
                for &s in &dels {
                    c.delete(s).unwrap();
                }
            } else {
                for &s in &dels {
                    let p = c.path(s);
                    crate::KernelOps::cnode_delete(c.kernel_mut(), p).unwrap();
                }
                c.adopt_deletes(&dels).unwrap();
            }
            crate::tests::audit(c);
        }
        assert_eq!(caps(&cs[0]), caps(&cs[1]));
        same_books(&cs[1], &cs[2]);
    }
}

#[test]
fn adopt_refusals_change_nothing() {
    let mut c = crate::tests::boot();
    let frames = c.alloc_many(T::Frame4K, 0, 8, Placement::Anywhere).unwrap();
    let srcs: Vec<Slot> = frames.iter().map(|a| a.slot).collect();
    let run = c.alloc_slots(8).unwrap();
    let st = c.stats();
    let past = Slot {
        cnode: srcs[0].cnode,
        index: srcs[7].index + 1,
    };
    // The run variant names the first source that holds no managed cap.
    assert_eq!(c.adopt_copies_run(srcs[1], 8, run), Err(CapError::NotManaged(past)));
    assert_eq!(
        c.adopt_copies_run(srcs[0], 7, run),
        Err(CapError::OutOfSlots { needed: 7 })
    );
    assert_eq!(c.adopt_copies(&srcs[..7], run), Err(CapError::OutOfSlots { needed: 7 }));
    let mut bad = srcs.clone();
    bad[5] = past;
    assert_eq!(c.adopt_copies(&bad, run), Err(CapError::NotManaged(past)));
    let wider = crate::SlotRange { len: 9, ..run };
    let mut nine = srcs.clone();
    nine.push(srcs[0]);
    assert_eq!(c.adopt_copies(&nine, wider), Err(CapError::NotReserved(wider.slot(8))));
    assert_eq!(c.stats(), st);
    kernel_copies(&mut c, &srcs, run);
    c.adopt_copies_run(srcs[0], 8, run).unwrap();
    let st = c.stats();
    let copies: Vec<Slot> = run.iter().collect();
    // Named twice: the slot is named; an original or an unmanaged slot
    // anywhere is named first.
    assert_eq!(
        c.adopt_deletes(&[copies[3], copies[1], copies[3]]),
        Err(CapError::NotManaged(copies[3]))
    );
    assert_eq!(
        c.adopt_deletes(&[copies[3], copies[3], srcs[0]]),
        Err(CapError::IsOriginal(srcs[0]))
    );
    assert_eq!(
        c.adopt_deletes(&[copies[2], copies[2], Slot::root(99_999)]),
        Err(CapError::NotManaged(Slot::root(99_999)))
    );
    assert_eq!(c.stats(), st);
    crate::tests::audit(&c);
    // The marks were cleared: the same slots once each are accepted.
    for &s in &copies {
        let p = c.path(s);
        crate::KernelOps::cnode_delete(c.kernel_mut(), p).unwrap();
    }
    c.adopt_deletes(&copies).unwrap();
    crate::tests::audit(&c);
}
