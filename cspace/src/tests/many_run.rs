//! [`CSpace::copy_many`] and [`CSpace::delete_many`] (which handle stretches
//! of consecutive slots as runs and book in bulk): the same answers, kernel
//! calls and books, down to the arena indices and the allocator's hints, as
//! the per-cap implementations they replaced (`copy_many_ref`,
//! `delete_many_ref`), on random states with injected kernel failures (two
//! managers driven alike, one told by each).

use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

use super::{audit, caps, run_of, small};
use crate::layout::{CNodeRef, Slot};
use crate::mock::MockKernel;
use crate::types::{KernelError, ObjectType as T, Rights};
use crate::{CSpace, CapError, DeleteManyError, Placement};

/// `first` and the slots after it that are in `among` (sorted), at most `n`.
fn stretch_in(among: &[Slot], first: Slot, n: u64) -> Vec<Slot> {
    run_of(first, n)
        .into_iter()
        .take_while(|s| among.binary_search(s).is_ok())
        .collect()
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

const ERRORS: [KernelError; 3] = [
    KernelError::NotEnoughMemory,
    KernelError::DeleteFirst,
    KernelError::FailedLookup,
];

/// How a batch's slots are chosen.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `n` consecutive slots from a slot of the pool (may run into slots
    /// outside it, or past the CNode's end).
    Run,
    /// As `Run`, cut to the slots of the pool.
    Stretch,
    /// Two stretches of the pool, one after the other (in either order).
    TwoStretches(usize),
    /// Up to seven stretches of the pool (more than are kept without
    /// allocating).
    Stretches(usize),
    /// `n` slots of the pool, picked at random (repeats possible).
    Picks(u64),
    /// `n` consecutive slots from anywhere (any CNode of the layout, the
    /// level-1 CNode).
    Anywhere,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        3 => Just(Shape::Run),
        4 => Just(Shape::Stretch),
        3 => any::<usize>().prop_map(Shape::TwoStretches),
        2 => any::<usize>().prop_map(Shape::Stretches),
        2 => any::<u64>().prop_map(Shape::Picks),
        1 => Just(Shape::Anywhere),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Frames(u64),
    /// An endpoint, a badged copy of it and two copies of that (the badged
    /// copy has children).
    BadgedTree,
    Untyped,
    Copy(usize),
    CopyTo(usize),
    Reserve(u64),
    Delete(usize),
    Free(usize),
    /// Sources from the managed caps.
    CopyMany(Shape, usize, u64),
    /// Slots from the copies (`false`) or from every managed cap.
    DeleteMany(bool, Shape, usize, u64),
    /// The `k`-th kernel call from now fails.
    Fail(u64, usize),
    /// Poisons the manager when 0.
    Poison(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..40).prop_map(Op::Frames),
        1 => Just(Op::BadgedTree),
        1 => Just(Op::Untyped),
        3 => any::<usize>().prop_map(Op::Copy),
        2 => any::<usize>().prop_map(Op::CopyTo),
        1 => (1u64..6).prop_map(Op::Reserve),
        2 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Free),
        8 => (shape(), any::<usize>(), 0u64..48).prop_map(|(s, i, n)| Op::CopyMany(s, i, n)),
        8 => (any::<u8>().prop_map(|b| b % 4 == 0), shape(), any::<usize>(), 0u64..48)
            .prop_map(|(all, s, i, n)| Op::DeleteMany(all, s, i, n)),
        3 => (1u64..60, 0..ERRORS.len()).prop_map(|(k, e)| Op::Fail(k, e)),
        1 => (0u8..40).prop_map(Op::Poison),
    ]
}

/// The slots of a batch of shape `shape` from `pool` (sorted).
fn choose(pool: &[Slot], shape: Shape, i: usize, n: u64) -> Vec<Slot> {
    let Some(first) = pick(pool, i) else {
        return vec![];
    };
    match shape {
        Shape::Run => run_of(first, n),
        Shape::Stretch => stretch_in(pool, first, n),
        Shape::TwoStretches(j) => {
            let mut v = stretch_in(pool, first, n);
            let second = stretch_in(pool, pool[j % pool.len()], n / 2 + 1);
            if j % 2 == 0 {
                v.extend(second);
            } else {
                v.splice(0..0, second);
            }
            v
        }
        Shape::Stretches(j) => (0..=j % 7)
            .flat_map(|t| {
                stretch_in(
                    pool,
                    pool[j.wrapping_mul(t + 1).wrapping_add(i) % pool.len()],
                    n / 4 + 1,
                )
            })
            .collect(),
        Shape::Picks(seed) => (0..n)
            .map(|k| pool[(seed.wrapping_mul(k + 1).wrapping_add(i as u64) % pool.len() as u64) as usize])
            .collect(),
        Shape::Anywhere => {
            let cnode = match i % 5 {
                0 => CNodeRef::Level1,
                k => CNodeRef::Level2(k as u32 - 1),
            };
            run_of(
                Slot {
                    cnode,
                    index: (i / 5 % 300) as u64,
                },
                n,
            )
        }
    }
}

/// Poisons the manager (if it has the memory for an endpoint): a batch
/// copy of a fresh endpoint fails at its second kernel call, then every try
/// of the undo fails too.
fn poison(cs: &mut CSpace<MockKernel>, reference: bool) {
    // Failures injected before (`Op::Fail`) would fail the copy itself.
    cs.kernel_mut().clear_failures();
    let Ok(ep) = cs.alloc(T::Endpoint, 0) else { return };
    let c = cs.kernel().calls();
    for i in 2..40 {
        cs.kernel_mut().fail_call(c + i, KernelError::FailedLookup);
    }
    let r = if reference {
        cs.copy_many_ref(&[ep.slot, ep.slot], Rights::ALL_CAP)
    } else {
        cs.copy_many(&[ep.slot, ep.slot], Rights::ALL_CAP)
    };
    assert_eq!(r, Err(CapError::Poisoned));
    cs.kernel_mut().clear_failures();
}

/// What a run went through (to check that the random runs reach every path).
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    copied: u64,
    copied_in_stretches: u64,
    copy_refused: u64,
    copy_rolled_back: u64,
    /// Batches of one cap (done as `copy` and `delete`): done, refused,
    /// failed in the kernel.
    single_copies: [u64; 3],
    single_deletes: [u64; 3],
    deleted: u64,
    deleted_in_stretches: u64,
    delete_refused: u64,
    delete_stopped: u64,
    poisoned: u64,
}

/// Drives two managers alike: `a` with the batched calls, `b` with the
/// per-cap reference; after each step both answered the same, made the same
/// kernel calls and keep the same books.
fn run(ops: Vec<Op>) -> Coverage {
    let mut cov = Coverage::default();
    let (mut a, mut b) = (small(), small());
    for op in ops {
        let all: Vec<(Slot, bool)> = caps(&a);
        let slots: Vec<Slot> = all.iter().map(|c| c.0).collect();
        let copies: Vec<Slot> = all.iter().filter(|c| !c.1).map(|c| c.0).collect();
        match op {
            Op::CopyMany(shape, i, n) => {
                let srcs = choose(&slots, shape, i, n);
                let ra = a.copy_many(&srcs, Rights::READ);
                let rb = b.copy_many_ref(&srcs, Rights::READ);
                assert_eq!(ra, rb, "{op:?}: {srcs:?}");
                if srcs.len() == 1 {
                    count_single(&mut cov.single_copies, &ra.as_ref().map(|_| ()).map_err(|e| *e));
                }
                match ra {
                    Ok(_) if srcs.len() > 1 => {
                        cov.copied += 1;
                        cov.copied_in_stretches += u64::from(matches!(
                            shape,
                            Shape::Stretch | Shape::TwoStretches(_) | Shape::Stretches(_)
                        ));
                    }
                    Err(CapError::NotManaged(_)) => cov.copy_refused += 1,
                    Err(CapError::Kernel { .. }) => cov.copy_rolled_back += 1,
                    _ => {}
                }
            }
            Op::DeleteMany(from_all, shape, i, n) => {
                let pool = if from_all { &slots } else { &copies };
                let batch = choose(pool, shape, i, n);
                let ra = a.delete_many(&batch);
                let rb = b.delete_many_ref(&batch);
                assert_eq!(ra, rb, "{op:?}: {batch:?}");
                if batch.len() == 1 {
                    count_single(&mut cov.single_deletes, &ra.map_err(|e| e.error));
                }
                match ra {
                    Ok(()) if batch.len() > 1 => {
                        cov.deleted += 1;
                        cov.deleted_in_stretches += u64::from(matches!(
                            shape,
                            Shape::Stretch | Shape::TwoStretches(_) | Shape::Stretches(_)
                        ));
                    }
                    Err(DeleteManyError { deleted: 0, .. }) => cov.delete_refused += 1,
                    Err(_) => cov.delete_stopped += 1,
                    _ => {}
                }
            }
            Op::Poison(k) => {
                if k == 0 && !a.is_poisoned() {
                    poison(&mut a, false);
                    poison(&mut b, true);
                    cov.poisoned += 1;
                }
            }
            _ => {
                for cs in [&mut a, &mut b] {
                    apply(cs, &op, &slots, &copies);
                }
            }
        }
        assert!(a.same_cap_books(&b), "{op:?}");
        assert_eq!(a.stats(), b.stats(), "{op:?}");
        assert_eq!(a.kernel().calls(), b.kernel().calls(), "{op:?}");
        // A poisoned manager's books no longer match the kernel.
        if !a.is_poisoned() {
            audit(&a);
            audit(&b);
        }
    }
    cov
}

/// Counts a one-cap batch's outcome: done, refused, failed in the kernel.
fn count_single(counts: &mut [u64; 3], r: &Result<(), CapError>) {
    match r {
        Ok(()) => counts[0] += 1,
        Err(CapError::Kernel { .. }) => counts[2] += 1,
        Err(_) => counts[1] += 1,
    }
}

/// One operation other than the batches, on one manager.
fn apply(cs: &mut CSpace<MockKernel>, op: &Op, slots: &[Slot], copies: &[Slot]) {
    match *op {
        Op::Frames(n) => {
            let _ = cs.alloc_many(T::Frame4K, 0, n, Placement::Anywhere);
        }
        Op::BadgedTree => {
            if let Ok(ep) = cs.alloc(T::Endpoint, 0) {
                if let Ok(b) = cs.mint(ep.slot, Rights::ALL_CAP, 7) {
                    let _ = cs.copy(b, Rights::READ);
                    let _ = cs.copy(b, Rights::READ);
                }
            }
        }
        Op::Untyped => {
            let _ = cs.alloc(T::Untyped, 12);
        }
        Op::Copy(i) => {
            if let Some(s) = pick(slots, i) {
                let _ = cs.copy(s, Rights::READ);
            }
        }
        Op::CopyTo(i) => {
            if let (Some(s), Ok(d)) = (pick(slots, i), cs.alloc_slot()) {
                if cs.copy_to(s, d, Rights::READ).is_err() {
                    let _ = cs.release_slot(d);
                }
            }
        }
        Op::Reserve(n) => {
            let _ = cs.alloc_slots(n);
        }
        Op::Delete(i) => {
            if let Some(s) = pick(copies, i) {
                let _ = cs.delete(s);
            }
        }
        Op::Free(i) => {
            let mut objs: Vec<_> = cs.objects().map(|o| o.id).collect();
            objs.sort();
            if let Some(id) = pick(&objs, i) {
                let _ = cs.free(id);
            }
        }
        Op::Fail(k, e) => cs.kernel_mut().fail_in(k, ERRORS[e]),
        Op::CopyMany(..) | Op::DeleteMany(..) | Op::Poison(_) => unreachable!(),
    }
}

#[test]
fn random_batches_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 60..160);
    let mut t = Coverage::default();
    for _ in 0..40 {
        let c = run(strategy.new_tree(&mut runner).unwrap().current());
        t.copied += c.copied;
        t.copied_in_stretches += c.copied_in_stretches;
        t.copy_refused += c.copy_refused;
        t.copy_rolled_back += c.copy_rolled_back;
        for j in 0..3 {
            t.single_copies[j] += c.single_copies[j];
            t.single_deletes[j] += c.single_deletes[j];
        }
        t.deleted += c.deleted;
        t.deleted_in_stretches += c.deleted_in_stretches;
        t.delete_refused += c.delete_refused;
        t.delete_stopped += c.delete_stopped;
        t.poisoned += c.poisoned;
    }
    std::eprintln!("{t:?}");
    assert!(
        t.copied_in_stretches > 50 && t.copy_refused > 20 && t.copy_rolled_back > 10,
        "{t:?}"
    );
    assert!(
        t.single_copies.iter().all(|&c| c > 0) && t.single_deletes[..2].iter().all(|&c| c > 0),
        "{t:?}"
    );
    assert!(
        t.deleted_in_stretches > 50 && t.delete_refused > 20 && t.delete_stopped > 10 && t.poisoned > 0,
        "{t:?}"
    );
}

/// Batches of one cap (done as `copy` and `delete`), on every outcome,
/// against the per-cap reference: done, refused, failed in the kernel (and
/// rolled back), poisoned.
#[test]
fn one_cap_batches_as_the_reference() {
    let (mut a, mut b) = (small(), small());
    let mut frames = Vec::new();
    for cs in [&mut a, &mut b] {
        frames = cs
            .alloc_many(T::Frame4K, 0, 4, Placement::Anywhere)
            .unwrap()
            .iter()
            .map(|f| f.slot)
            .collect();
    }
    let same = |a: &CSpace<MockKernel>, b: &CSpace<MockKernel>| {
        assert!(a.same_cap_books(b));
        assert_eq!(a.stats(), b.stats());
        assert_eq!(a.kernel().calls(), b.kernel().calls());
        audit(a);
    };
    let nowhere = Slot {
        cnode: CNodeRef::Level2(3),
        index: 9,
    };
    // Refused: not managed; an original.
    assert_eq!(
        a.copy_many(&[nowhere], Rights::READ),
        b.copy_many_ref(&[nowhere], Rights::READ)
    );
    assert_eq!(a.delete_many(&[frames[0]]), b.delete_many_ref(&[frames[0]]));
    assert_eq!(a.delete_many(&[nowhere]), b.delete_many_ref(&[nowhere]));
    same(&a, &b);
    // Done.
    let ca = a.copy_many(&[frames[1]], Rights::READ).unwrap();
    let cb = b.copy_many_ref(&[frames[1]], Rights::READ).unwrap();
    assert_eq!(ca, cb);
    same(&a, &b);
    // The kernel refuses: copy rolled back, delete not done.
    for e in ERRORS {
        for cs in [&mut a, &mut b] {
            cs.kernel_mut().fail_in(1, e);
        }
        assert_eq!(
            a.copy_many(&[ca[0]], Rights::READ),
            b.copy_many_ref(&[ca[0]], Rights::READ)
        );
        same(&a, &b);
        for cs in [&mut a, &mut b] {
            cs.kernel_mut().fail_in(1, e);
        }
        let r = a.delete_many(&ca);
        assert_eq!(r, b.delete_many_ref(&cb));
        assert!(matches!(
            r,
            Err(DeleteManyError {
                deleted: 0,
                error: CapError::Kernel { .. }
            })
        ));
        same(&a, &b);
    }
    assert_eq!(a.delete_many(&ca), b.delete_many_ref(&cb));
    same(&a, &b);
    // Named twice is not one cap.
    let ca = a.copy_many(&[frames[2]], Rights::READ).unwrap();
    let cb = b.copy_many_ref(&[frames[2]], Rights::READ).unwrap();
    assert_eq!(a.delete_many(&[ca[0], ca[0]]), b.delete_many_ref(&[cb[0], cb[0]]));
    same(&a, &b);
    // Poisoned: refused.
    poison(&mut a, false);
    poison(&mut b, true);
    assert_eq!(a.copy_many(&[frames[3]], Rights::READ), Err(CapError::Poisoned));
    assert_eq!(b.copy_many_ref(&[frames[3]], Rights::READ), Err(CapError::Poisoned));
    assert_eq!(a.delete_many(&ca), b.delete_many_ref(&cb));
    assert_eq!(a.delete_many(&ca).unwrap_err().error, CapError::Poisoned);
}

/// `copy_many_into` appends what `copy_many` returns, and leaves the vector
/// as it was on failure.
#[test]
fn copy_many_into_appends() {
    let (mut a, mut b) = (small(), small());
    let mut frames = Vec::new();
    for cs in [&mut a, &mut b] {
        frames = cs
            .alloc_many(T::Frame4K, 0, 6, Placement::Anywhere)
            .unwrap()
            .iter()
            .map(|f| f.slot)
            .collect();
    }
    let nowhere = Slot {
        cnode: CNodeRef::Level2(3),
        index: 9,
    };
    let mut out = vec![nowhere];
    for batch in [&frames[..1], &frames[1..], &[][..], &frames[2..4]] {
        let want = b.copy_many(batch, Rights::READ).unwrap();
        let mut expect = out.clone();
        expect.extend(want);
        a.copy_many_into(batch, Rights::READ, &mut out).unwrap();
        assert_eq!(out, expect);
        assert!(a.same_cap_books(&b));
    }
    let before = out.clone();
    // Refused, then failed in the kernel (one cap, then several).
    assert_eq!(
        a.copy_many_into(&[frames[0], nowhere], Rights::READ, &mut out),
        Err(CapError::NotManaged(nowhere))
    );
    for batch in [&frames[..1], &frames[..]] {
        a.kernel_mut().fail_in(1, KernelError::FailedLookup);
        b.kernel_mut().fail_in(1, KernelError::FailedLookup);
        let r = a.copy_many_into(batch, Rights::READ, &mut out);
        assert_eq!(r, b.copy_many(batch, Rights::READ).map(|_| ()));
        assert!(r.is_err());
    }
    assert_eq!(out, before);
    assert!(a.same_cap_books(&b));
    audit(&a);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn batches_book_as_the_per_cap_reference(ops in prop::collection::vec(op(), 1..100)) {
        run(ops);
    }
}
