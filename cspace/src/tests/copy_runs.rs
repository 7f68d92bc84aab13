//! Copy runs (see *Copy runs* in [`CSpace`]): a manager that books them
//! against one that books every copy per cap ([`CSpace::set_copy_runs`]
//! off, the reference), driven alike through random sequences of
//! [`CSpace::adopt_copies_run`] and [`CSpace::adopt_deletes_run`] (whole
//! runs, parts of runs, across runs, anywhere) interleaved with the single
//! operations on the caps in runs and on their sources. After each step
//! both answered the same, made the same kernel calls, keep books that say
//! the same ([`CSpace::same_books_as_seen`]) and answer every query the
//! same; both pass the full audit (which checks the books' invariants).

use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

use super::{audit, caps, run_of, small};
use crate::kernel::KernelOps;
use crate::layout::{CNodeRef, Slot, SlotRange};
use crate::mock::MockKernel;
use crate::types::{KernelError, ObjectType as T, Rights};
use crate::{CSpace, CapError, FreeError, Placement};

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

/// The "kernel extension" copies the caps itself.
fn kernel_copies(cs: &mut CSpace<MockKernel>, srcs: &[Slot], dests: SlotRange) {
    // Injected failures are for the manager's calls.
    cs.kernel_mut().clear_failures();
    for (i, &s) in srcs.iter().enumerate() {
        let (dp, sp) = (cs.path(dests.slot(i as u64)), cs.path(s));
        cs.kernel_mut()
            .cnode_copy(dp, sp, Rights::ALL_CAP)
            .expect("kernel copy");
    }
}

/// The "kernel extension" deletes the caps itself.
fn kernel_deletes(cs: &mut CSpace<MockKernel>, slots: &[Slot]) {
    cs.kernel_mut().clear_failures();
    for &s in slots {
        let p = cs.path(s);
        cs.kernel_mut().cnode_delete(p).expect("kernel delete");
    }
}

/// Poisons the manager (if it has the memory for an endpoint).
fn poison(cs: &mut CSpace<MockKernel>) {
    cs.kernel_mut().clear_failures();
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

#[derive(Debug, Clone)]
enum Op {
    Frames(u64),
    Endpoint,
    /// An endpoint, a badged copy of it and two copies of that.
    BadgedTree,
    Untyped,
    /// `adopt_copies_run` from an original (`true`) or any managed cap, of
    /// `n` slots (cut to the originals that follow it when `cut`).
    /// ... into one run of reserved slots, in `pieces` calls (as the root
    /// task does for the leaf tables of a region: adjacent runs).
    AdoptRun(bool, usize, u64, bool, u8),
    /// `adopt_deletes_run`: 0 a whole run, 1 part of a run, 2 from inside a
    /// run across the runs after it, 3 from a copy, 4 from any slot.
    DelRun(u8, usize, u64, u64),
    Copy(usize),
    Mint(usize, u64),
    CopyTo(usize),
    Delete(usize),
    Revoke(usize),
    /// Moves a cap (an original when `true`) to a reserved slot.
    Mv(bool, usize),
    Free(usize),
    CopyMany(usize, u64),
    DeleteMany(usize, u64),
    /// `adopt_deletes` of `n` copies from a copy (one of them named twice
    /// when `dup`).
    AdoptDeletes(usize, u64, bool),
    /// `adopt_copies` of `n` slots from a managed cap.
    AdoptCopies(usize, u64),
    Reserve(u64),
    Release(usize),
    /// The `k`-th kernel call from now fails.
    Fail(u64),
    /// Poisons both managers when 0.
    Poison(u8),
    /// Materialises every run of the manager that books them (nothing
    /// observable changes).
    MaterialiseAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..17).prop_map(Op::Frames),
        1 => Just(Op::Endpoint),
        1 => Just(Op::BadgedTree),
        1 => Just(Op::Untyped),
        8 => (any::<u8>(), any::<usize>(), 1u64..40, any::<bool>(), 1u8..4)
            .prop_map(|(o, i, n, cut, p)| Op::AdoptRun(o % 4 != 0, i, n, cut, p)),
        8 => (0u8..5, any::<usize>(), any::<u64>(), 0u64..40).prop_map(|(m, i, a, n)| Op::DelRun(m, i, a, n)),
        2 => any::<usize>().prop_map(Op::Copy),
        1 => (any::<usize>(), 0u64..3).prop_map(|(i, b)| Op::Mint(i, b)),
        1 => any::<usize>().prop_map(Op::CopyTo),
        2 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Revoke),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(o, i)| Op::Mv(o, i)),
        2 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 1u64..20).prop_map(|(i, n)| Op::CopyMany(i, n)),
        2 => (any::<usize>(), 1u64..20).prop_map(|(i, n)| Op::DeleteMany(i, n)),
        1 => (any::<usize>(), 1u64..10, any::<bool>()).prop_map(|(i, n, d)| Op::AdoptDeletes(i, n, d)),
        1 => (any::<usize>(), 1u64..10).prop_map(|(i, n)| Op::AdoptCopies(i, n)),
        1 => (1u64..6).prop_map(Op::Reserve),
        1 => any::<usize>().prop_map(Op::Release),
        1 => (1u64..30).prop_map(Op::Fail),
        1 => (0u8..40).prop_map(Op::Poison),
        1 => Just(Op::MaterialiseAll),
    ]
}

/// What a sequence went through (to check that random ones reach every
/// path).
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    runs_booked: u64,
    runs_per_cap: u64,
    whole_deleted: u64,
    split: u64,
    across: u64,
    refused_deletes: u64,
    materialised: u64,
    free_refused_by_runs: u64,
    revoked_sources: u64,
    moved_sources: u64,
    ops_on_run_copies: u64,
    poisoned: u64,
}

/// The slot that a `DelRun` starts at and its length, on the runs of `cs`.
fn del_run_target(cs: &CSpace<MockKernel>, mode: u8, i: usize, a: u64, n: u64) -> Option<(Slot, u64)> {
    let runs = cs.copy_run_list();
    let all = caps(cs);
    let copies: Vec<Slot> = all.iter().filter(|c| !c.1).map(|c| c.0).collect();
    match mode {
        0 => pick(&runs, i).map(|(_, d)| (d.slot(0), d.len)),
        1 => pick(&runs, i).map(|(_, d)| {
            let from = a % d.len;
            let len = 1 + (a / d.len) % (d.len - from);
            (d.slot(from), len)
        }),
        2 => (0..runs.len()).map(|k| (i + k) % runs.len()).find_map(|k| {
            // From inside a run to inside or past the end of the next, when
            // it is adjacent.
            let (d, next) = (runs[k].1, runs.get(k + 1)?.1);
            (next.cnode == d.cnode && next.start == d.start + d.len).then(|| {
                let from = a % d.len;
                (d.slot(from), d.len - from + 1 + n % (next.len + 1))
            })
        }),
        3 => pick(&copies, i).map(|s| (s, n)),
        _ => Some((
            Slot {
                cnode: CNodeRef::Level2((i % 3) as u32),
                index: (i / 3 % 300) as u64,
            },
            n,
        )),
    }
}

/// Every query answers the same on both managers.
fn same_answers(on: &CSpace<MockKernel>, off: &CSpace<MockKernel>) {
    assert!(on.same_books_as_seen(off), "books differ");
    assert_eq!(on.stats(), off.stats());
    assert_eq!(on.kernel().calls(), off.kernel().calls());
    let sorted = |cs: &CSpace<MockKernel>| {
        let mut v: Vec<_> = cs.managed_caps().collect();
        v.sort();
        v
    };
    assert_eq!(sorted(on), sorted(off));
    assert!(on.reserved_slots().eq(off.reserved_slots()));
    let objects = |cs: &CSpace<MockKernel>| {
        let mut v: Vec<_> = cs.objects().collect();
        v.sort_by_key(|a| a.id);
        v
    };
    assert_eq!(objects(on), objects(off));
    for k in 0..4u32 {
        for index in 0..260 {
            let s = Slot {
                cnode: CNodeRef::Level2(k),
                index,
            };
            assert_eq!(on.is_managed(s), off.is_managed(s), "{s:?}");
            assert_eq!(on.object_at(s), off.object_at(s), "{s:?}");
            assert_eq!(on.badge(s), off.badge(s), "{s:?}");
            assert_eq!(on.has_derived(s), off.has_derived(s), "{s:?}");
        }
    }
    for t in crate::ObjectType::ALL {
        assert_eq!(on.count(t), off.count(t));
    }
    assert_eq!(on.slots_free(), off.slots_free());
    if !on.is_poisoned() {
        audit(on);
        audit(off);
    } else {
        // The books' own invariants hold even when they no longer match
        // the kernel.
        on.check_books().unwrap();
        off.check_books().unwrap();
    }
}

/// `f` on both managers: the same answer.
fn both(
    on: &mut CSpace<MockKernel>,
    off: &mut CSpace<MockKernel>,
    f: impl Fn(&mut CSpace<MockKernel>) -> Result<(), CapError>,
) -> Result<(), CapError> {
    let a = f(on);
    assert_eq!(a, f(off));
    a
}

/// Drives `on` (books copy runs) and `off` (per cap) alike.
fn run(ops: Vec<Op>) -> Coverage {
    let mut cov = Coverage::default();
    let (mut on, mut off) = (small(), small());
    off.set_copy_runs(false);
    assert!(on.copy_runs() && !off.copy_runs());
    for op in ops {
        let all = caps(&off);
        let slots: Vec<Slot> = all.iter().map(|c| c.0).collect();
        let copies: Vec<Slot> = all.iter().filter(|c| !c.1).map(|c| c.0).collect();
        let originals: Vec<Slot> = all.iter().filter(|c| c.1).map(|c| c.0).collect();
        let in_runs: Vec<Slot> = on.copy_run_list().iter().flat_map(|(_, d)| d.iter()).collect();
        let sources: Vec<Slot> = on.copy_run_list().iter().flat_map(|(s, d)| run_of(*s, d.len)).collect();
        let runs_before = on.copy_run_count();
        match op {
            Op::AdoptRun(from_original, i, n, cut, pieces) => {
                let pool = if from_original { &originals } else { &slots };
                let Some(first) = pick(pool, i) else { continue };
                let n = if cut {
                    n.min(run_of(first, n).iter().take_while(|s| originals.contains(s)).count() as u64)
                } else {
                    n
                };
                if n == 0 {
                    continue;
                }
                let srcs = run_of(first, n);
                // The kernel copies an untyped only while it has no children.
                let copyable = |cs: &CSpace<MockKernel>, s: &Slot| {
                    cs.object_at(*s)
                        .and_then(|o| cs.object(o))
                        .is_some_and(|o| o.ty != T::Untyped)
                };
                let managed = srcs.iter().all(|s| off.is_managed(*s));
                if managed && !srcs.iter().all(|s| copyable(&off, s)) {
                    continue;
                }
                let (Ok(d1), Ok(d2)) = (on.alloc_slots(n), off.alloc_slots(n)) else {
                    continue;
                };
                assert_eq!(d1, d2);
                // Cut into pieces at `n / pieces` (the last takes the rest).
                let step = (n / pieces as u64).max(1);
                let mut at = 0;
                while at < n {
                    let len = if at + 2 * step > n { n - at } else { step };
                    let src = Slot {
                        index: first.index + at,
                        ..first
                    };
                    let d = SlotRange {
                        start: d1.start + at,
                        len,
                        ..d1
                    };
                    let piece = run_of(src, len);
                    if piece.iter().all(|s| off.is_managed(*s)) {
                        if !piece.iter().all(|s| copyable(&off, s)) {
                            let _ = both(&mut on, &mut off, |cs| cs.release_slots(d));
                            at += len;
                            continue;
                        }
                        if !on.is_poisoned() {
                            kernel_copies(&mut on, &piece, d);
                            kernel_copies(&mut off, &piece, d);
                        }
                    }
                    let before = on.copy_run_count();
                    let r = both(&mut on, &mut off, |cs| cs.adopt_copies_run(src, len, d));
                    if r.is_err() {
                        let _ = both(&mut on, &mut off, |cs| cs.release_slots(d));
                    } else if on.copy_run_count() > before {
                        cov.runs_booked += 1;
                    } else {
                        cov.runs_per_cap += 1;
                    }
                    at += len;
                }
            }
            Op::DelRun(mode, i, a, n) => {
                let Some((first, n)) = del_run_target(&on, mode, i, a, n) else {
                    continue;
                };
                let run = run_of(first, n);
                let deletable = !on.is_poisoned() && run.iter().all(|s| copies.contains(s));
                if deletable {
                    kernel_deletes(&mut on, &run);
                    kernel_deletes(&mut off, &run);
                }
                let r = both(&mut on, &mut off, |cs| cs.adopt_deletes_run(first, n));
                assert_eq!(r.is_ok(), deletable || (n == 0 && !on.is_poisoned()), "{op:?}: {r:?}");
                match (r, mode) {
                    (Ok(()), 0) => cov.whole_deleted += 1,
                    (Ok(()), 1) if on.copy_run_count() >= runs_before => cov.split += 1,
                    (Ok(()), 2) => cov.across += 1,
                    (Err(_), _) => cov.refused_deletes += 1,
                    _ => {}
                }
            }
            Op::Frames(n) => {
                let a = on.alloc_many(T::Frame4K, 0, n, Placement::Anywhere);
                let b = off.alloc_many(T::Frame4K, 0, n, Placement::Anywhere);
                assert_eq!(a, b);
            }
            Op::Endpoint => assert_eq!(on.alloc(T::Endpoint, 0), off.alloc(T::Endpoint, 0)),
            Op::Untyped => assert_eq!(on.alloc(T::Untyped, 12), off.alloc(T::Untyped, 12)),
            Op::BadgedTree => {
                for cs in [&mut on, &mut off] {
                    if let Ok(ep) = cs.alloc(T::Endpoint, 0) {
                        if let Ok(b) = cs.mint(ep.slot, Rights::ALL_CAP, 7) {
                            let _ = cs.copy(b, Rights::READ);
                            let _ = cs.copy(b, Rights::READ);
                        }
                    }
                }
            }
            Op::Copy(i) => {
                // Mostly the caps in runs and their sources.
                let Some(s) = pick(if i % 3 == 0 { &slots } else { &in_runs }, i / 3) else {
                    continue;
                };
                cov.ops_on_run_copies += u64::from(in_runs.contains(&s));
                let a = on.copy(s, Rights::READ);
                assert_eq!(a, off.copy(s, Rights::READ));
            }
            Op::Mint(i, badge) => {
                let Some(s) = pick(if i % 2 == 0 { &slots } else { &in_runs }, i / 2) else {
                    continue;
                };
                let a = on.mint(s, Rights::READ, badge);
                assert_eq!(a, off.mint(s, Rights::READ, badge));
            }
            Op::CopyTo(i) => {
                let Some(s) = pick(if i % 2 == 0 { &slots } else { &in_runs }, i / 2) else {
                    continue;
                };
                let (Ok(d), Ok(d2)) = (on.alloc_slot(), off.alloc_slot()) else {
                    continue;
                };
                assert_eq!(d, d2);
                if both(&mut on, &mut off, |cs| cs.copy_to(s, d, Rights::READ)).is_err() {
                    both(&mut on, &mut off, |cs| cs.release_slot(d)).unwrap();
                }
            }
            Op::Delete(i) => {
                let Some(s) = pick(if i % 3 == 0 { &slots } else { &in_runs }, i / 3) else {
                    continue;
                };
                cov.ops_on_run_copies += u64::from(in_runs.contains(&s));
                both(&mut on, &mut off, |cs| cs.delete(s)).ok();
            }
            Op::Revoke(i) => {
                // Mostly the sources of runs.
                let Some(s) = pick(if i % 2 == 0 { &slots } else { &sources }, i / 2) else {
                    continue;
                };
                let r = both(&mut on, &mut off, |cs| cs.revoke(s));
                cov.revoked_sources += u64::from(r.is_ok() && sources.contains(&s));
            }
            Op::Mv(original, i) => {
                let pool = match (original, i % 2) {
                    (true, 0) => &originals,
                    (true, _) => &sources,
                    (false, 0) => &copies,
                    (false, _) => &in_runs,
                };
                let Some(s) = pick(pool, i / 2) else { continue };
                let (Ok(d), Ok(d2)) = (on.alloc_slot(), off.alloc_slot()) else {
                    continue;
                };
                assert_eq!(d, d2);
                match both(&mut on, &mut off, |cs| cs.mv(s, d)) {
                    Ok(()) => cov.moved_sources += u64::from(sources.contains(&s)),
                    Err(_) => both(&mut on, &mut off, |cs| cs.release_slot(d)).unwrap(),
                }
            }
            Op::Free(i) => {
                let Some(s) = pick(if i % 2 == 0 { &originals } else { &sources }, i / 2) else {
                    continue;
                };
                let id = off.object_at(s).expect("an original");
                let a = on.free(id);
                assert_eq!(a, off.free(id));
                cov.free_refused_by_runs +=
                    u64::from(matches!(a, Err(FreeError::HasCopies { .. })) && sources.contains(&s));
            }
            Op::CopyMany(i, n) => {
                let Some(first) = pick(if i % 2 == 0 { &slots } else { &in_runs }, i / 2) else {
                    continue;
                };
                let srcs = run_of(first, n);
                let a = on.copy_many(&srcs, Rights::READ);
                assert_eq!(a, off.copy_many(&srcs, Rights::READ));
            }
            Op::DeleteMany(i, n) => {
                let Some(first) = pick(if i % 3 == 0 { &copies } else { &in_runs }, i / 3) else {
                    continue;
                };
                let batch = run_of(first, n);
                let a = on.delete_many(&batch);
                assert_eq!(a, off.delete_many(&batch));
            }
            Op::AdoptDeletes(i, n, dup) => {
                let Some(first) = pick(if i % 2 == 0 { &copies } else { &in_runs }, i / 2) else {
                    continue;
                };
                let mut list: Vec<Slot> = run_of(first, n).into_iter().filter(|s| copies.contains(s)).collect();
                if dup {
                    // One slot named twice (which of several would be named
                    // depends on record numbering).
                    list.push(list[0]);
                }
                let deletable = !on.is_poisoned() && !dup;
                if deletable {
                    kernel_deletes(&mut on, &list);
                    kernel_deletes(&mut off, &list);
                }
                let r = both(&mut on, &mut off, |cs| cs.adopt_deletes(&list));
                assert_eq!(r.is_ok(), deletable, "{op:?}: {r:?}");
            }
            Op::AdoptCopies(i, n) => {
                let Some(first) = pick(if i % 2 == 0 { &slots } else { &in_runs }, i / 2) else {
                    continue;
                };
                let srcs: Vec<Slot> = run_of(first, n)
                    .into_iter()
                    .filter(|s| {
                        off.object_at(*s)
                            .and_then(|o| off.object(o))
                            .is_some_and(|o| o.ty != T::Untyped)
                    })
                    .collect();
                if srcs.is_empty() {
                    continue;
                }
                let (Ok(d), Ok(d2)) = (on.alloc_slots(srcs.len() as u64), off.alloc_slots(srcs.len() as u64)) else {
                    continue;
                };
                assert_eq!(d, d2);
                if !on.is_poisoned() {
                    kernel_copies(&mut on, &srcs, d);
                    kernel_copies(&mut off, &srcs, d2);
                }
                if both(&mut on, &mut off, |cs| cs.adopt_copies(&srcs, d)).is_err() {
                    both(&mut on, &mut off, |cs| cs.release_slots(d)).unwrap();
                }
            }
            Op::Reserve(n) => assert_eq!(on.alloc_slots(n), off.alloc_slots(n)),
            Op::Release(i) => {
                let reserved: Vec<Slot> = off.reserved_slots().collect();
                let Some(s) = pick(&reserved, i) else { continue };
                both(&mut on, &mut off, |cs| cs.release_slot(s)).unwrap();
            }
            Op::Fail(k) => {
                for cs in [&mut on, &mut off] {
                    let c = cs.kernel().calls();
                    cs.kernel_mut().fail_call(c + k, KernelError::NotEnoughMemory);
                }
            }
            Op::Poison(k) => {
                if k == 0 && !on.is_poisoned() {
                    poison(&mut on);
                    poison(&mut off);
                    cov.poisoned += 1;
                }
            }
            Op::MaterialiseAll => on.materialise_all(),
        }
        if !matches!(op, Op::AdoptRun(..) | Op::DelRun(..)) && on.copy_run_count() < runs_before {
            cov.materialised += 1;
        }
        same_answers(&on, &off);
    }
    // Materialised, the books are the same down to the children's order.
    on.materialise_all();
    assert_eq!(on.copy_run_count(), 0);
    same_answers(&on, &off);
    cov
}

#[test]
fn random_sequences_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 40..120);
    let mut t = Coverage::default();
    for _ in 0..40 {
        let c = run(strategy.new_tree(&mut runner).unwrap().current());
        t.runs_booked += c.runs_booked;
        t.runs_per_cap += c.runs_per_cap;
        t.whole_deleted += c.whole_deleted;
        t.split += c.split;
        t.across += c.across;
        t.refused_deletes += c.refused_deletes;
        t.materialised += c.materialised;
        t.free_refused_by_runs += c.free_refused_by_runs;
        t.revoked_sources += c.revoked_sources;
        t.moved_sources += c.moved_sources;
        t.ops_on_run_copies += c.ops_on_run_copies;
        t.poisoned += c.poisoned;
    }
    std::eprintln!("{t:?}");
    assert!(
        t.runs_booked > 50 && t.runs_per_cap > 5 && t.whole_deleted > 10 && t.split > 10 && t.across > 5,
        "{t:?}"
    );
    assert!(
        t.refused_deletes > 20 && t.materialised > 20 && t.free_refused_by_runs > 5,
        "{t:?}"
    );
    assert!(
        t.revoked_sources > 5 && t.moved_sources > 2 && t.ops_on_run_copies > 20 && t.poisoned > 0,
        "{t:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn copy_runs_book_as_per_cap_copies(ops in prop::collection::vec(op(), 1..100)) {
        run(ops);
    }
}

// ------------------------------------------------------------------- units

/// A manager with 512 frames in consecutive slots of one CNode (default
/// layout: 4096-slot level-2 CNodes) and 512 reserved slots.
fn frames_512() -> (CSpace<MockKernel>, Slot, SlotRange) {
    let mut cs = super::boot();
    let mut frames = vec![];
    while frames.len() < 512 {
        let v = cs.alloc_many(T::Frame4K, 0, 256, Placement::Anywhere).unwrap();
        frames.extend(v.iter().map(|a| a.slot));
    }
    // Moved to consecutive slots (the splits' pieces took slots between
    // the batches).
    let to = cs.alloc_slots(512).unwrap();
    for (j, &f) in frames.iter().enumerate() {
        cs.mv(f, to.slot(j as u64)).unwrap();
    }
    let frames: Vec<Slot> = to.iter().collect();
    let dests = cs.alloc_slots(512).unwrap();
    kernel_copies(&mut cs, &frames, dests);
    (cs, frames[0], dests)
}

#[test]
fn one_run_of_512_is_one_record_and_splits() {
    let (mut cs, src, dests) = frames_512();
    let copies = cs.stats().copies_live;
    cs.adopt_copies_run(src, 512, dests).unwrap();
    assert_eq!(cs.copy_run_count(), 1);
    assert_eq!(cs.stats().copies_live, copies + 512);
    assert_eq!(cs.copy_run_list(), vec![(src, dests)]);
    audit(&cs);
    // Queries see the copies.
    let s = dests.slot(7);
    assert!(cs.is_managed(s));
    assert_eq!(
        cs.object_at(s),
        cs.object_at(Slot {
            index: src.index + 7,
            ..src
        })
    );
    assert_eq!(cs.badge(s), Some(0));
    assert_eq!(cs.managed_caps().filter(|c| !c.2).count(), 512);
    // A source with a copy in a run cannot be freed.
    let id = cs.object_at(src).unwrap();
    assert_eq!(cs.free(id), Err(FreeError::HasCopies { id, copies: 1 }));
    // A part from the middle: two runs remain.
    let mid = run_of(dests.slot(100), 50);
    kernel_deletes(&mut cs, &mid);
    cs.adopt_deletes_run(dests.slot(100), 50).unwrap();
    assert_eq!(cs.copy_run_count(), 2);
    assert!(!cs.is_managed(dests.slot(120)) && cs.is_managed(dests.slot(99)) && cs.is_managed(dests.slot(150)));
    audit(&cs);
    // Across the gap: refused (a slot holds no managed cap); the run it
    // meets is materialised on the way (nothing observable changes).
    let at = dests.slot(100);
    assert_eq!(cs.adopt_deletes_run(dests.slot(90), 20), Err(CapError::NotManaged(at)));
    audit(&cs);
    // The head of the second run: one run left there.
    let n = cs.copy_run_count();
    kernel_deletes(&mut cs, &run_of(dests.slot(150), 10));
    cs.adopt_deletes_run(dests.slot(150), 10).unwrap();
    assert_eq!(cs.copy_run_count(), n);
    audit(&cs);
    // The rest.
    for (_, d) in cs.copy_run_list() {
        kernel_deletes(&mut cs, &d.iter().collect::<Vec<_>>());
        cs.adopt_deletes_run(d.slot(0), d.len).unwrap();
    }
    let left: Vec<Slot> = cs.managed_caps().filter(|c| !c.2).map(|c| c.0).collect();
    kernel_deletes(&mut cs, &left);
    cs.adopt_deletes(&left).unwrap();
    assert_eq!(cs.copy_run_count(), 0);
    assert_eq!(cs.stats().copies_live, copies);
    audit(&cs);
    assert_eq!(cs.free(id), Ok(()));
    audit(&cs);
}

#[test]
fn deletes_across_adjacent_runs_drop_them_a_run_at_a_time() {
    let (mut cs, src, dests) = frames_512();
    // Four runs of 128 side by side.
    for k in 0..4 {
        let d = SlotRange {
            start: dests.start + k * 128,
            len: 128,
            ..dests
        };
        cs.adopt_copies_run(
            Slot {
                index: src.index + k * 128,
                ..src
            },
            128,
            d,
        )
        .unwrap();
    }
    assert_eq!(cs.copy_run_count(), 4);
    // From inside the first to inside the fourth: the two in the middle go,
    // the ends are cut.
    kernel_deletes(&mut cs, &run_of(dests.slot(64), 320));
    cs.adopt_deletes_run(dests.slot(64), 320).unwrap();
    assert_eq!(cs.copy_run_count(), 2);
    assert_eq!(
        cs.copy_run_list(),
        vec![
            (src, SlotRange { len: 64, ..dests }),
            (
                Slot {
                    index: src.index + 384,
                    ..src
                },
                SlotRange {
                    start: dests.start + 384,
                    len: 128,
                    ..dests
                }
            ),
        ]
    );
    audit(&cs);
    // The freed slots are free again (not reserved).
    assert!(cs.slot_books().is_free(dests.slot(64)) && cs.slot_books().is_free(dests.slot(383)));
}

#[test]
fn single_operations_materialise_the_run_they_touch() {
    let (mut cs, src, dests) = frames_512();
    let half = SlotRange { len: 256, ..dests };
    let other = SlotRange {
        start: dests.start + 256,
        len: 256,
        ..dests
    };
    cs.adopt_copies_run(src, 256, half).unwrap();
    cs.adopt_copies_run(
        Slot {
            index: src.index + 256,
            ..src
        },
        256,
        other,
    )
    .unwrap();
    assert_eq!(cs.copy_run_count(), 2);
    // A copy of a source (an original) leaves the runs as they are.
    cs.copy(src, Rights::READ).unwrap();
    assert_eq!(cs.copy_run_count(), 2);
    // A copy of a copy in a run materialises that run only.
    cs.copy(other.slot(3), Rights::READ).unwrap();
    assert_eq!(cs.copy_run_count(), 1);
    audit(&cs);
    // Revoking a source materialises the runs copying it, then deletes
    // their copies.
    let before = cs.stats().copies_live;
    cs.revoke(src).unwrap();
    assert_eq!(cs.copy_run_count(), 0);
    assert_eq!(cs.stats().copies_live, before - 2);
    assert!(!cs.is_managed(half.slot(0)) && cs.is_managed(half.slot(1)));
    audit(&cs);
}

#[test]
fn sources_that_are_not_all_originals_are_booked_per_cap() {
    let (mut cs, src, dests) = frames_512();
    // (Only the first 4 copies are made now.)
    kernel_deletes(&mut cs, &run_of(dests.slot(4), 508));
    let first = SlotRange { len: 4, ..dests };
    cs.adopt_copies_run(src, 4, first).unwrap();
    assert_eq!(cs.copy_run_count(), 1);
    // Copies of copies in a run: a run of copies of the same originals
    // (children of the originals, as the kernel derives them).
    let second = SlotRange {
        start: dests.start + 4,
        len: 4,
        ..dests
    };
    kernel_copies(&mut cs, &run_of(first.slot(0), 4), second);
    cs.adopt_copies_run(first.slot(0), 4, second).unwrap();
    assert_eq!(cs.copy_run_count(), 2);
    audit(&cs);
    // Copies of a copy that is no longer in a run (materialised by a
    // delete of its neighbour) are booked per cap.
    kernel_deletes(&mut cs, &run_of(first.slot(3), 1));
    cs.adopt_deletes(&[first.slot(3)]).unwrap();
    assert_eq!(cs.copy_run_count(), 1);
    let again = SlotRange {
        start: dests.start + 12,
        len: 2,
        ..dests
    };
    kernel_copies(&mut cs, &run_of(first.slot(1), 2), again);
    cs.adopt_copies_run(first.slot(1), 2, again).unwrap();
    assert_eq!(cs.copy_run_count(), 1);
    audit(&cs);
    // Turning runs off books per cap.
    cs.set_copy_runs(false);
    let third = SlotRange {
        start: dests.start + 8,
        len: 4,
        ..dests
    };
    let third_srcs = run_of(
        Slot {
            index: src.index + 8,
            ..src
        },
        4,
    );
    kernel_copies(&mut cs, &third_srcs, third);
    cs.adopt_copies_run(third_srcs[0], 4, third).unwrap();
    assert_eq!(cs.copy_run_count(), 0);
    audit(&cs);
}

/// Copies of run copies of untypeds are their children (an untyped's copy
/// is revocable): booked per cap, as a manager without runs books them.
#[test]
fn copies_of_untyped_run_copies_are_booked_per_cap() {
    let mut on = super::boot();
    let mut off = super::boot();
    off.set_copy_runs(false);
    for cs in [&mut on, &mut off] {
        let us: Vec<Slot> = (0..4).map(|_| cs.alloc(T::Untyped, 12).unwrap().slot).collect();
        let orig = cs.alloc_slots(4).unwrap();
        for (j, &u) in us.iter().enumerate() {
            cs.mv(u, orig.slot(j as u64)).unwrap();
        }
        let first = cs.alloc_slots(4).unwrap();
        kernel_copies(cs, &run_of(orig.slot(0), 4), first);
        cs.adopt_copies_run(orig.slot(0), 4, first).unwrap();
        let second = cs.alloc_slots(4).unwrap();
        kernel_copies(cs, &run_of(first.slot(0), 4), second);
        cs.adopt_copies_run(first.slot(0), 4, second).unwrap();
        // The first run's copies now have children.
        assert!(cs.has_derived(first.slot(2)));
    }
    assert_eq!(
        on.copy_run_count(),
        0,
        "the first run was materialised, the second booked per cap"
    );
    same_answers(&on, &off);
}
