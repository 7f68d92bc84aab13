//! [`CSpace::adopt_deletes_run`]: the outcome, refusals and books of
//! [`CSpace::adopt_deletes`] of the same consecutive slots, on random states
//! (two managers driven alike, one told by list, one by run).

use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

use super::{audit, caps, run_of, small};
use crate::kernel::KernelOps;
use crate::layout::{CNodeRef, Slot, SlotRange};
use crate::mock::MockKernel;
use crate::types::{KernelError, ObjectType as T, Rights};
use crate::{CSpace, CapError, Placement};

/// Whether the books of `list` (told per cap, no copy runs) and `run` say
/// the same: down to the arena indices if `run` books no copy runs either,
/// else as seen (see [`CSpace::cap_view`]).
fn same(list: &CSpace<MockKernel>, run: &CSpace<MockKernel>) -> bool {
    if run.copy_runs() {
        list.same_books_as_seen(run)
    } else {
        list.same_cap_books(run)
    }
}

/// The "kernel extension" deletes the caps itself.
fn kernel_deletes(cs: &mut CSpace<MockKernel>, slots: &[Slot]) {
    for &s in slots {
        let p = cs.path(s);
        cs.kernel_mut().cnode_delete(p).expect("kernel delete");
    }
}

/// The "kernel extension" copies the caps itself.
fn kernel_copies(cs: &mut CSpace<MockKernel>, srcs: &[Slot], dests: SlotRange) {
    for (i, &s) in srcs.iter().enumerate() {
        let (dp, sp) = (cs.path(dests.slot(i as u64)), cs.path(s));
        cs.kernel_mut()
            .cnode_copy(dp, sp, Rights::ALL_CAP)
            .expect("kernel copy");
    }
}

/// Poisons the manager (if it has the memory for an endpoint): a batch
/// copy of a fresh endpoint fails at its second kernel call, then every try
/// of the undo fails too.
fn poison(cs: &mut CSpace<MockKernel>) {
    let Ok(ep) = cs.alloc(T::Endpoint, 0) else { return };
    let c = cs.kernel().calls();
    for i in 2..40 {
        cs.kernel_mut().fail_call(c + i, KernelError::FailedLookup);
    }
    assert_eq!(
        cs.copy_many(&[ep.slot, ep.slot], Rights::ALL_CAP),
        Err(CapError::Poisoned)
    );
    cs.kernel_mut().clear_failures();
}

/// Tells `list` by [`CSpace::adopt_deletes`] and `run` by
/// [`CSpace::adopt_deletes_run`] of the `n` slots from `first` (deleting them
/// in the kernel first if the list is accepted); checks that both answer
/// the same and keep the same books, and that a refusal changes nothing.
fn both(list: &mut CSpace<MockKernel>, run: &mut CSpace<MockKernel>, first: Slot, n: u64) -> Result<(), CapError> {
    assert!(same(list, run));
    let before = (list.stats(), caps(list));
    let slots = run_of(first, n);
    // Whether the kernel could have deleted them: every slot a managed copy.
    let held = caps(list);
    let deletable = !list.is_poisoned() && slots.iter().all(|&s| held.binary_search(&(s, false)).is_ok());
    if deletable {
        kernel_deletes(list, &slots);
        kernel_deletes(run, &slots);
    }
    let a = list.adopt_deletes(&slots);
    let b = run.adopt_deletes_run(first, n);
    assert_eq!(a, b, "{first:?} + {n}");
    assert_eq!(a.is_ok(), deletable, "{first:?} + {n}: {a:?}");
    assert!(same(list, run), "{first:?} + {n}");
    assert_eq!(list.stats(), run.stats());
    if b.is_err() {
        assert_eq!((run.stats(), caps(run)), before, "a refusal changes nothing");
    }
    a
}

/// Copies of the `n` slots from `first` into a new run: `list` told by
/// [`CSpace::adopt_copies`], `run` by [`CSpace::adopt_copies_run`]; the
/// kernel makes them if every source holds a managed cap that it can copy.
fn copies_both(
    list: &mut CSpace<MockKernel>,
    run: &mut CSpace<MockKernel>,
    first: Slot,
    n: u64,
) -> Result<(), CapError> {
    let srcs = run_of(first, n);
    // The kernel copies an untyped only while it has no children.
    let copyable = |cs: &CSpace<MockKernel>, s: Slot| {
        cs.object_at(s)
            .and_then(|o| cs.object(o))
            .is_some_and(|o| o.ty != T::Untyped)
    };
    if !srcs.iter().all(|&s| copyable(list, s)) && srcs.iter().all(|&s| list.is_managed(s)) {
        return Ok(());
    }
    let (Ok(dl), Ok(dr)) = (list.alloc_slots(n), run.alloc_slots(n)) else {
        assert!(same(list, run));
        return Err(CapError::OutOfSlots { needed: n });
    };
    assert_eq!(dl, dr);
    let before = (run.stats(), caps(run));
    if srcs.iter().all(|&s| list.is_managed(s)) {
        kernel_copies(list, &srcs, dl);
        kernel_copies(run, &srcs, dr);
    }
    let a = list.adopt_copies(&srcs, dl);
    let b = run.adopt_copies_run(first, n, dr);
    assert_eq!(a, b, "{first:?} + {n}");
    assert!(same(list, run), "{first:?} + {n}");
    if b.is_err() {
        assert_eq!((run.stats(), caps(run)), before, "a refusal changes nothing");
        list.release_slots(dl).unwrap();
        run.release_slots(dr).unwrap();
    }
    a
}

#[test]
fn runs_of_copies_are_deleted_as_lists() {
    let (mut a, mut b) = (small(), small());
    a.set_copy_runs(false);
    b.set_copy_runs(false);
    let mut runs = vec![];
    for cs in [&mut a, &mut b] {
        let frames = cs.alloc_many(T::Frame4K, 0, 8, Placement::Anywhere).unwrap();
        let srcs: Vec<Slot> = frames.iter().map(|f| f.slot).collect();
        let run = cs.alloc_slots(8).unwrap();
        kernel_copies(cs, &srcs, run);
        cs.adopt_copies_run(srcs[0], 8, run).unwrap();
        // Copies of the run's copies (children handed over on delete), and a
        // copy into the caller's slot.
        cs.copy(run.slot(2), Rights::READ).unwrap();
        cs.copy(run.slot(2), Rights::READ).unwrap();
        let mine = cs.alloc_slots(2).unwrap();
        cs.copy_to(run.slot(5), mine.slot(0), Rights::READ).unwrap();
        cs.copy_to(run.slot(6), mine.slot(1), Rights::READ).unwrap();
        runs = vec![run, mine];
        audit(cs);
    }
    let (run, mine) = (runs[0], runs[1]);
    let stats = a.stats();
    // Refusals: an original, a reserved slot, past the CNode's end, outside
    // the layout; the first bad slot of the run is named.
    let orig = a.object(a.object_at(run.slot(0)).unwrap()).unwrap().slot;
    assert_eq!(both(&mut a, &mut b, orig, 3), Err(CapError::IsOriginal(orig)));
    let past = Slot {
        cnode: run.cnode,
        index: run.start + 8,
    };
    let free_next = b.slot_books().is_free(past) || b.reserved_slots().any(|s| s == past);
    if free_next {
        assert_eq!(both(&mut a, &mut b, run.slot(0), 9), Err(CapError::NotManaged(past)));
    }
    let end = Slot {
        cnode: CNodeRef::Level2(1),
        index: 255,
    };
    assert_eq!(
        both(&mut a, &mut b, end, 2),
        Err(CapError::NotManaged(if b.is_managed(end) {
            Slot { index: 256, ..end }
        } else {
            end
        }))
    );
    // A CNode of the layout the books have never reached (no table entries).
    let far = Slot {
        cnode: CNodeRef::Level2(7),
        index: 3,
    };
    assert_eq!(both(&mut a, &mut b, far, 2), Err(CapError::NotManaged(far)));
    let spare = b.alloc_slots(2).unwrap();
    assert_eq!(b.adopt_copies_run(far, 2, spare), Err(CapError::NotManaged(far)));
    b.release_slots(spare).unwrap();
    let l1 = Slot {
        cnode: CNodeRef::Level1,
        index: 0,
    };
    assert_eq!(both(&mut a, &mut b, l1, 1), Err(CapError::NotManaged(l1)));
    assert_eq!(
        both(&mut a, &mut b, mine.slot(0), 2),
        Ok(()),
        "copies in the caller's slots"
    );
    assert_eq!(b.reserved_slots().filter(|s| mine.iter().any(|m| m == *s)).count(), 2);
    assert_eq!(both(&mut a, &mut b, run.slot(0), 0), Ok(()));
    assert_eq!(a.stats().copies_live, stats.copies_live - 2);
    // The whole run, the copies of slot 2 going to the frame's original.
    assert_eq!(both(&mut a, &mut b, run.slot(0), 8), Ok(()));
    assert_eq!(b.stats().copies_live, 2);
    audit(&a);
    audit(&b);
    // The slots went back: the same run is handed out again, as cheaply.
    let again = b.alloc_slots(8).unwrap();
    assert_eq!(again, run);
    b.release_slots(again).unwrap();
    // Poisoned: refused first.
    let srcs: Vec<Slot> = caps(&a).iter().map(|c| c.0).collect();
    poison(&mut a);
    poison(&mut b);
    assert!(a.is_poisoned() && b.is_poisoned());
    assert_eq!(both(&mut a, &mut b, l1, 0), Err(CapError::Poisoned));
    assert_eq!(both(&mut a, &mut b, srcs[0], 1), Err(CapError::Poisoned));
}

// ------------------------------------------------------------------ random

#[derive(Debug, Clone)]
enum Op {
    Frames(u64),
    Endpoint,
    /// An endpoint, a badged copy of it and two copies of that (the badged
    /// copy has children).
    BadgedTree,
    Untyped,
    Copy(usize),
    Mint(usize, u64),
    CopyTo(usize),
    Reserve(u64),
    AdoptRun(usize, u64),
    Delete(usize),
    /// First slot: 0 a managed cap, 1 a copy, 2 a reserved slot, 3 any
    /// slot; 4 a copy, the run cut to the copies that follow it.
    DelRun(u8, usize, u64),
    /// Poisons the manager when 0.
    Poison(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..9).prop_map(Op::Frames),
        1 => Just(Op::Endpoint),
        1 => Just(Op::Untyped),
        1 => Just(Op::BadgedTree),
        4 => any::<usize>().prop_map(Op::Copy),
        1 => (any::<usize>(), 0u64..3).prop_map(|(i, b)| Op::Mint(i, b)),
        2 => any::<usize>().prop_map(Op::CopyTo),
        1 => (1u64..6).prop_map(Op::Reserve),
        4 => (any::<usize>(), 1u64..24).prop_map(|(i, n)| Op::AdoptRun(i, n)),
        2 => any::<usize>().prop_map(Op::Delete),
        10 => (0u8..5, any::<usize>(), 0u64..24).prop_map(|(m, i, n)| Op::DelRun(m, i, n)),
        1 => (0u8..30).prop_map(Op::Poison),
    ]
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

/// What a run went through (to check that the random runs reach every path).
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    copied: u64,
    deleted: u64,
    with_children: u64,
    with_user_slots: u64,
    not_managed: u64,
    past_end: u64,
    original: u64,
    poisoned: u64,
}

/// Drives two managers alike; `DelRun` tells one by list and one by run.
/// `b` books copy runs if `runs` (`a` never does).
fn run(ops: Vec<Op>, runs: bool) -> Coverage {
    let mut cov = Coverage::default();
    let (mut a, mut b) = (small(), small());
    a.set_copy_runs(false);
    b.set_copy_runs(runs);
    for op in ops {
        let all: Vec<(Slot, bool)> = caps(&a);
        let slots: Vec<Slot> = all.iter().map(|c| c.0).collect();
        let copies: Vec<Slot> = all.iter().filter(|c| !c.1).map(|c| c.0).collect();
        let reserved: Vec<Slot> = a.reserved_slots().collect();
        if let Op::DelRun(mode, i, mut n) = op {
            let first = match mode {
                0 => pick(&slots, i),
                1 => pick(&copies, i),
                2 => pick(&reserved, i),
                4 => pick(&copies, i).inspect(|&c| {
                    let stretch = (0..).take_while(|&j| {
                        copies.contains(&Slot {
                            index: c.index + j,
                            ..c
                        })
                    });
                    n = n.min(stretch.count() as u64);
                }),
                _ => Some(Slot {
                    cnode: CNodeRef::Level2((i % 3) as u32),
                    index: (i / 3 % 300) as u64,
                }),
            };
            let Some(first) = first else { continue };
            let had_children = run_of(first, n).iter().any(|&s| b.has_derived(s));
            let reserved_before = b.stats().slots_reserved;
            match both(&mut a, &mut b, first, n) {
                Ok(()) if n > 1 => {
                    cov.deleted += 1;
                    cov.with_children += u64::from(had_children);
                    cov.with_user_slots += u64::from(b.stats().slots_reserved > reserved_before);
                }
                Err(CapError::NotManaged(s)) => {
                    cov.not_managed += 1;
                    cov.past_end += u64::from(s.index >= 256 && s.cnode != CNodeRef::ROOT);
                }
                Err(CapError::IsOriginal(_)) => cov.original += 1,
                Err(CapError::Poisoned) => cov.poisoned += 1,
                _ => {}
            }
        } else if let Op::AdoptRun(i, n) = op {
            // `a` is told by list, `b` by run.
            if let Some(first) = pick(&slots, i) {
                cov.copied += u64::from(copies_both(&mut a, &mut b, first, n).is_ok());
            }
        } else {
            for cs in [&mut a, &mut b] {
                apply(cs, &op, &slots, &copies);
            }
        }
        assert!(same(&a, &b), "{op:?}");
        // A poisoned manager's books no longer match the kernel.
        if !a.is_poisoned() {
            audit(&a);
            audit(&b);
        }
    }
    cov
}

/// One operation other than `DelRun`, on one manager.
fn apply(cs: &mut CSpace<MockKernel>, op: &Op, slots: &[Slot], copies: &[Slot]) {
    match *op {
        Op::Frames(n) => {
            let _ = cs.alloc_many(T::Frame4K, 0, n, Placement::Anywhere);
        }
        Op::Endpoint => {
            let _ = cs.alloc(T::Endpoint, 0);
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
        Op::Mint(i, badge) => {
            if let Some(s) = pick(slots, i) {
                let _ = cs.mint(s, Rights::READ, badge);
            }
        }
        Op::CopyTo(i) => {
            if let (Some(s), Ok(d)) = (pick(slots, i), cs.alloc_slot()) {
                if cs.copy_to(s, d, Rights::READ).is_err() {
                    cs.release_slot(d).unwrap();
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
        Op::Poison(k) => {
            if k == 0 && !cs.is_poisoned() {
                poison(cs);
            }
        }
        Op::DelRun(..) | Op::AdoptRun(..) => unreachable!(),
    }
}

#[test]
fn random_runs_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 40..120);
    let mut t = Coverage::default();
    for k in 0..40 {
        let c = run(strategy.new_tree(&mut runner).unwrap().current(), k % 2 == 0);
        t.copied += c.copied;
        t.deleted += c.deleted;
        t.with_children += c.with_children;
        t.with_user_slots += c.with_user_slots;
        t.not_managed += c.not_managed;
        t.past_end += c.past_end;
        t.original += c.original;
        t.poisoned += c.poisoned;
    }
    std::eprintln!("{t:?}");
    assert!(
        t.copied > 50 && t.deleted > 50 && t.not_managed > 50 && t.original > 50,
        "{t:?}"
    );
    assert!(
        t.with_children > 5 && t.with_user_slots > 5 && t.past_end > 2 && t.poisoned > 0,
        "{t:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn adopt_deletes_run_is_adopt_deletes_of_the_run(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, false);
    }

    /// The same with copy runs booked by the manager told by run.
    #[test]
    fn adopt_deletes_run_of_copy_runs_is_adopt_deletes(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, true);
    }
}
