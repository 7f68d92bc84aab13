//! Copy runs ("extents"): a database with runs against one without (`MappingDb::with_runs(false)`, the
//! per-page reference). Random operations on both, every result compared, every query compared after each
//! step (sorted where the order is unspecified), `check()` on both; and unit tests of the run path.

use mapping_db::*;
use proptest::prelude::*;

const KIB4: u64 = 1 << 12;
const MIB2: u64 = 1 << 21;
const R: Rights = Rights::READ;
const RW: Rights = Rights::READ.union(Rights::WRITE);
/// Address spaces used.
const SPACES: u32 = 4;
/// Pages of the address window used in every space.
const PAGES: u64 = 160;
/// The window starts 32 pages below a 2 MiB boundary: clones and destroys cross page tables.
const BASE: u64 = 0x4000_0000 - 32 * KIB4;
/// The 4 KiB frames' originals: slots `ORIG..ORIG + FRAMES`.
const ORIG: u64 = 100;
const FRAMES: u64 = 160;
/// Frames `MAPPED..FRAMES` start unmapped.
const MAPPED: u64 = 96;
/// Copy slots used by clones and copies: `COPY..COPY + COPIES`.
const COPY: u64 = 300;
const COPIES: u64 = 400;
/// Two 2 MiB frames.
const LARGE: [u64; 2] = [90, 91];

fn va(page: u64) -> u64 {
    BASE + page * KIB4
}

fn frame(i: u64) -> FrameId {
    let i = i % FRAMES;
    FrameId::new(CapSlot(ORIG + i), 0x1_0000_0000 + i * KIB4)
}

fn large(i: usize) -> FrameId {
    FrameId::new(CapSlot(LARGE[i % 2]), 0x2_0000_0000 + (i % 2) as u64 * MIB2)
}

/// The page table of a space's 2 MiB region (distinct per space and region), or a shared one (`pool`).
fn table(asid: AsId, vaddr: u64, size: PageSize, pool: bool) -> CapSlot {
    if pool {
        return CapSlot(9000 + u64::from(asid.0));
    }
    let lvl = match size {
        PageSize::Small => 0,
        PageSize::Large => 1,
        PageSize::Huge => 2,
    };
    CapSlot(10_000 + u64::from(asid.0) * 1000 + lvl * 100 + (vaddr / (size.bytes() * 512)) % 100)
}

/// Frames, and space 0's window: frames 0..64 at pages 0..64 in order (consecutive originals: with runs,
/// two original runs, across the 2 MiB boundary at page 32), frames 64..96 at pages 100..132 in reverse
/// order (not consecutive), both by `insert_run`; frames 96..160 and the 2 MiB frames known but unmapped.
fn setup(runs: bool) -> MappingDb {
    let mut db = MappingDb::with_runs(runs);
    for i in 0..FRAMES {
        db.add_frame(frame(i), PageSize::Small).unwrap();
    }
    for i in 0..2 {
        db.add_frame(large(i), PageSize::Large).unwrap();
    }
    let a = AsId(0);
    let orig = |i: u64, v: u64| {
        Mapping::new(
            frame(i),
            frame(i).slot,
            a,
            v,
            PageSize::Small,
            RW,
            table(a, v, PageSize::Small, false),
        )
    };
    let first: Vec<_> = (0..64).map(|i| orig(i, va(i))).collect();
    db.insert_run(&first).unwrap();
    let second: Vec<_> = (64..MAPPED).map(|i| orig(i, va(100 + (MAPPED - 1 - i)))).collect();
    db.insert_run(&second).unwrap();
    db.check().unwrap();
    assert_eq!(db.run_count(), if runs { 2 } else { 0 });
    db
}

/// Every slot the tests use.
fn slots() -> impl Iterator<Item = CapSlot> {
    (LARGE[0]..ORIG + FRAMES).chain(COPY..COPY + COPIES + 50).map(CapSlot)
}

type CapRow = (CapSlot, Option<FrameId>, Option<CapSlot>, usize, Option<Mapping>);

/// A leaf table: its entries in use, its records, and the answers of `mapping_at` around them.
type LeafRow = (LeafTable, usize, Vec<Mapping>, Vec<Option<Mapping>>);

/// Everything observable through the queries over the slots, frames, spaces, pages and leaves the tests
/// use, in a canonical order.
#[derive(PartialEq, Eq, Debug)]
struct Snapshot {
    caps: Vec<CapRow>,
    frames: Vec<(FrameId, Vec<CapSlot>, Vec<Mapping>)>,
    spaces: Vec<(usize, Vec<Mapping>)>,
    lookups: Vec<Option<Mapping>>,
    leaves: Vec<LeafRow>,
    counts: (usize, bool, usize, usize),
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn key(m: &Mapping) -> (u32, u64, u64) {
    (m.asid.0, m.vaddr, m.cap.0)
}

fn sorted_maps(mut v: Vec<Mapping>) -> Vec<Mapping> {
    v.sort_by_key(key);
    v
}

fn snapshot(db: &MappingDb) -> Snapshot {
    let caps = slots()
        .map(|s| {
            (
                s,
                db.frame_of_cap(s),
                db.parent_of(s),
                db.children_of(s),
                db.mapping_of_cap(s),
            )
        })
        .collect();
    let frames = (0..FRAMES)
        .map(frame)
        .chain([large(0), large(1)])
        .map(|f| {
            (
                f,
                sorted(db.copies_of(f).collect()),
                sorted_maps(db.mappings_of_frame(f).collect()),
            )
        })
        .collect();
    let spaces = (0..SPACES)
        .map(|a| (db.space_len(AsId(a)), sorted_maps(db.mappings_in(AsId(a)).collect())))
        .collect();
    let lookups = (0..SPACES)
        .flat_map(|a| (0..PAGES).map(move |p| (a, p)))
        .map(|(a, p)| db.lookup(AsId(a), va(p) + (p * 77) % KIB4))
        .collect();
    let leaves = sorted(db.leaves().collect())
        .into_iter()
        .map(|l| {
            let entries: Vec<Mapping> = db.leaf_entries(l).collect();
            // Each entry in use, its neighbours, and entry 0 and 511.
            let mut at: Vec<u16> = entries
                .iter()
                .flat_map(|m| [m.index.saturating_sub(1), m.index, (m.index + 1).min(511)])
                .chain([0, 511])
                .collect();
            at.sort();
            at.dedup();
            let by_index = at.into_iter().map(|i| db.mapping_at(l, i)).collect();
            (l, db.leaf_used(l), entries, by_index)
        })
        .collect();
    Snapshot {
        caps,
        frames,
        spaces,
        lookups,
        leaves,
        counts: (db.len(), db.is_empty(), db.cap_count(), db.frame_count()),
    }
}

/// A slot: an original (a third of the time) or a copy slot.
fn pick_slot(x: u64) -> CapSlot {
    if x.is_multiple_of(3) {
        CapSlot(ORIG + (x / 3) % FRAMES)
    } else {
        CapSlot(COPY + (x / 3) % COPIES)
    }
}

/// One random operation, applied to `db`; its outcome as a comparable string.
fn apply(db: &mut MappingDb, op: (u8, u64, u64, u64, u64), reference: &MappingDb) -> String {
    let (kind, a, b, c, d) = op;
    match kind % 20 {
        0..=4 => {
            // A clone: mostly from the originals in space 0, often from a space cloned into.
            let src = AsId(if a.is_multiple_of(3) {
                ((a / 3) % u64::from(SPACES)) as u32
            } else {
                0
            });
            let dst = AsId(if (a / 12).is_multiple_of(8) {
                0
            } else {
                1 + ((a / 96) % u64::from(SPACES - 1)) as u32
            });
            let n = 1 + (d % 40) as usize;
            let src_page = if b.is_multiple_of(4) {
                b / 4 % PAGES
            } else {
                b / 4 % (65 - n as u64).max(1)
            };
            let cl = RegionClone {
                src,
                src_vaddr: va(src_page),
                dst,
                dst_vaddr: va(c % PAGES),
                n,
                first_copy: CapSlot(COPY + (d / 64) % COPIES),
                parent: if (a / 48).is_multiple_of(5) {
                    CloneParent::Source
                } else {
                    CloneParent::Original
                },
                rights: if (b / 1024).is_multiple_of(6) {
                    RW.union(Rights::EXECUTE)
                } else {
                    [R, RW][(b / 2048 % 2) as usize]
                },
            };
            let pool = (c / 256).is_multiple_of(10);
            format!(
                "{:?}",
                db.clone_region(&cl, |base| table(dst, base, PageSize::Small, pool))
            )
        }
        5..=7 => {
            // Mostly from a page that is mapped, over pages that may be.
            let asid = AsId((a % u64::from(SPACES)) as u32);
            let n = 1 + (c % 40) as usize;
            let mapped = sorted(reference.mappings_in(asid).map(|m| m.vaddr).collect());
            let start = if mapped.is_empty() || b.is_multiple_of(5) {
                va(b % PAGES)
            } else {
                mapped[(b as usize) % mapped.len()]
            };
            let n = if c.is_multiple_of(3) {
                // Exactly as many as are mapped in a row from there.
                (0..n as u64)
                    .take_while(|i| reference.lookup(asid, start + i * KIB4).is_some())
                    .count()
                    .max(1)
            } else {
                n
            };
            format!("{:?}", db.destroy_region(asid, start, n))
        }
        8 => {
            let asid = AsId((a % u64::from(SPACES)) as u32);
            format!("{:?}", db.remove_by_vaddr(asid, va(b % PAGES) + c % KIB4))
        }
        9 => format!("{:?}", db.remove_by_cap(pick_slot(b))),
        10 => {
            // A copy of a cap (often a run's copy), or of an unrelated frame.
            let parent = pick_slot(b);
            let f = reference.frame_of_cap(parent).unwrap_or(frame(a));
            let copy = if c.is_multiple_of(5) {
                pick_slot(c / 5)
            } else {
                CapSlot(COPY + c % COPIES)
            };
            format!("{:?}", db.add_copy(f, copy, parent))
        }
        11 => format!("{:?}", db.remove_copy(pick_slot(b))),
        12 => {
            // An insert through one of the frame's caps (sometimes a large page over run pages).
            let asid = AsId((c % u64::from(SPACES)) as u32);
            if a.is_multiple_of(7) {
                let f = large(b as usize);
                let v = PageSize::Large.align_down(va(d % PAGES));
                let m = Mapping::new(
                    f,
                    f.slot,
                    asid,
                    v,
                    PageSize::Large,
                    RW,
                    table(asid, v, PageSize::Large, false),
                );
                return format!("{:?}", db.insert(m));
            }
            let f = frame(a);
            let caps = sorted(reference.copies_of(f).collect());
            let cap = if caps.is_empty() {
                pick_slot(b)
            } else {
                caps[(b as usize) % caps.len()]
            };
            let v = va(d % PAGES);
            let pool = (d / 256).is_multiple_of(10);
            let m = Mapping::new(
                f,
                cap,
                asid,
                v,
                PageSize::Small,
                RW,
                table(asid, v, PageSize::Small, pool),
            );
            format!("{:?}", db.insert(m))
        }
        13 => {
            if b.is_multiple_of(2) {
                format!("{:?}", db.remove_frame(frame(a)))
            } else {
                format!(
                    "{:?}",
                    db.add_frame(FrameId::new(pick_slot(c), 0x3_0000_0000), PageSize::Small)
                )
            }
        }
        14 => {
            if b.is_multiple_of(8) {
                let asid = AsId((a % u64::from(SPACES)) as u32);
                format!("{:?}", sorted_maps(db.remove_space(asid)))
            } else {
                // remove_at an entry of some leaf.
                let leaves = sorted(reference.leaves().collect());
                if leaves.is_empty() {
                    return String::new();
                }
                let l = leaves[(a as usize) % leaves.len()];
                let used: Vec<u16> = reference.leaf_entries(l).map(|m| m.index).collect();
                let index = if used.is_empty() || c.is_multiple_of(4) {
                    (c % 512) as u16
                } else {
                    used[(c as usize) % used.len()]
                };
                format!("{:?}", db.remove_at(l, index))
            }
        }
        15 => {
            let asid = AsId((a % u64::from(SPACES)) as u32);
            let n = (c % 48) as usize;
            match b % 3 {
                0 => format!("{:?}", db.destroy_run(asid, va(d % PAGES), n)),
                1 => format!("{:?}", db.remove_run(asid, va(d % PAGES), n)),
                _ => {
                    // A batch removing two entries of a leaf.
                    let leaves = sorted(reference.leaves().collect());
                    if leaves.is_empty() {
                        return String::new();
                    }
                    let l = leaves[(d as usize) % leaves.len()];
                    let used: Vec<u16> = reference.leaf_entries(l).map(|m| m.index).collect();
                    let mut batch = Batch::new(l);
                    for k in 0..2 {
                        if !used.is_empty() {
                            batch.remove(used[(c as usize + k * 7) % used.len()]);
                        }
                    }
                    format!("{:?}", db.commit(batch))
                }
            }
        }
        18 | 19 => {
            // An insert_run of originals: consecutive (mostly from the frames mapped nowhere yet), or in
            // reverse order, with gaps, mixed rights, a shared page table (for all, or for one page), a copy
            // among them; one page
            // sometimes; at pages that may cross a 2 MiB boundary or be mapped already.
            let asid = AsId((a % u64::from(SPACES)) as u32);
            let n = if d.is_multiple_of(5) {
                1
            } else {
                1 + (d / 5 % 40) as usize
            };
            let first = if b.is_multiple_of(3) {
                b / 3
            } else {
                MAPPED + b / 3 % (FRAMES - MAPPED)
            };
            let page = if c.is_multiple_of(4) {
                c / 4 % PAGES
            } else {
                32 - (c / 4 % 40).min(32)
            };
            let variant = (a / 4) % 10;
            let recs: Vec<Mapping> = (0..n as u64)
                .map(|i| {
                    let f = frame(match variant {
                        0 => first + (n as u64 - 1 - i),
                        1 => first + 2 * i,
                        _ => first + i,
                    });
                    let cap = if variant == 2 && i == n as u64 / 2 {
                        sorted(reference.copies_of(f).collect())
                            .last()
                            .copied()
                            .unwrap_or(f.slot)
                    } else {
                        f.slot
                    };
                    let rights = if variant == 3 && i % 2 == 1 { R } else { RW };
                    let v = va(page + i);
                    Mapping::new(
                        f,
                        cap,
                        asid,
                        v,
                        PageSize::Small,
                        rights,
                        table(
                            asid,
                            v,
                            PageSize::Small,
                            variant == 4 || (variant == 5 && i == n as u64 / 2),
                        ),
                    )
                })
                .collect();
            format!("{:?}", db.insert_run(&recs))
        }
        _ => {
            // The read-only region lookups.
            let asid = AsId((a % u64::from(SPACES)) as u32);
            let (v, n) = (
                va(b % PAGES) + if d.is_multiple_of(16) { 8 } else { 0 },
                (c % 64) as usize,
            );
            format!(
                "{:?} {:?} {:?}",
                db.source_caps(asid, v, n, [R, RW][(d % 2) as usize]),
                db.caps_run(asid, v, n),
                db.mappings_run(asid, v, n)
            )
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<(u8, u64, u64, u64, u64)>> {
    prop::collection::vec(
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random operations on a database with runs and on one without: the same outcome of every operation
    /// and the same answer to every query after each, and both consistent.
    #[test]
    fn runs_are_invisible(ops in ops()) {
        let mut on = setup(true);
        let mut off = setup(false);
        prop_assert_eq!(snapshot(&on), snapshot(&off));
        for (step, &op) in ops.iter().enumerate() {
            let reference = off.clone();
            let runs_before = on.run_count();
            let got = apply(&mut on, op, &reference);
            let want = apply(&mut off, op, &reference);
            prop_assert_eq!(&got, &want, "step {} op {:?}", step, op);
            on.check().map_err(|e| TestCaseError::fail(format!("runs on, step {step} op {op:?}: {e:?}")))?;
            off.check().map_err(|e| TestCaseError::fail(format!("runs off, step {step} op {op:?}: {e:?}")))?;
            prop_assert_eq!(off.run_count(), 0);
            prop_assert_eq!(snapshot(&on), snapshot(&off), "step {} op {:?}", step, op);
            if std::env::var("EXTENTS_STATS").is_ok() {
                eprintln!("STAT {} {} {} {}", op.0 % 20, runs_before, on.run_count(), got.starts_with("Ok"));
            }
        }
        // Turning runs off materialises them all, and changes nothing observable.
        let before = snapshot(&on);
        on.set_runs(false);
        prop_assert_eq!(on.run_count(), 0);
        on.check().unwrap();
        prop_assert_eq!(snapshot(&on), before);
    }
}

// ----- unit tests of the run path ------------------------------------------------------------------------

/// `n` 4 KiB frames with originals in consecutive slots from 1000, mapped at consecutive pages from `src`
/// in space 0.
fn sources(n: u64, src: u64, runs: bool) -> MappingDb {
    let mut db = MappingDb::with_runs(runs);
    for i in 0..n {
        let f = FrameId::new(CapSlot(1000 + i), 0x1_0000_0000 + i * KIB4);
        db.add_frame(f, PageSize::Small).unwrap();
        let v = src + i * KIB4;
        db.insert(Mapping::new(
            f,
            f.slot,
            AsId(0),
            v,
            PageSize::Small,
            RW,
            table(AsId(0), v, PageSize::Small, false),
        ))
        .unwrap();
    }
    db
}

fn region(n: usize, dst_vaddr: u64, first_copy: u64) -> RegionClone {
    RegionClone {
        src: AsId(0),
        src_vaddr: 0x1000_0000,
        dst: AsId(1),
        dst_vaddr,
        n,
        first_copy: CapSlot(first_copy),
        parent: CloneParent::Original,
        rights: RW,
    }
}

fn leaf1(base: u64) -> CapSlot {
    table(AsId(1), base, PageSize::Small, false)
}

#[test]
fn one_leaf_clone_is_one_run() {
    let mut db = sources(512, 0x1000_0000, true);
    db.clone_region(&region(512, 0x2000_0000, 5000), leaf1).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.run_pages()), (1, 512));
    assert_eq!(db.len(), 1024);
    assert_eq!(db.cap_count(), 1024);
    assert_eq!(db.space_len(AsId(1)), 512);
    let m = db.mapping_of_cap(CapSlot(5007)).unwrap();
    assert_eq!(
        (m.vaddr, m.frame.slot, m.index),
        (0x2000_0000 + 7 * KIB4, CapSlot(1007), 7)
    );
    assert_eq!(db.lookup(AsId(1), 0x2000_0000 + 7 * KIB4 + 5), Some(m));
    assert_eq!(db.parent_of(CapSlot(5007)), Some(CapSlot(1007)));
    assert_eq!(db.children_of(CapSlot(1007)), 1);
    assert_eq!(db.leaf_used(m.leaf), 512);
    assert_eq!(db.mapping_at(m.leaf, 7), Some(m));
    assert_eq!(db.source_caps(AsId(1), 0x2000_0000, 512, RW).unwrap()[7], CapSlot(5007));
    assert!(db
        .caps_run(AsId(1), 0x2000_0000, 512)
        .unwrap()
        .iter()
        .all(|&(_, copy)| copy));
    // Destroyed in one go.
    db.destroy_region(AsId(1), 0x2000_0000, 512).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.len(), db.cap_count()), (0, 512, 512));
    assert_eq!(db.children_of(CapSlot(1007)), 0);
}

#[test]
fn two_leaf_clone_is_two_runs() {
    let mut db = sources(700, 0x1000_0000, true);
    // From 100 pages below a 2 MiB boundary: 100 pages in one table, 600 in the next two... 600 > 512, so
    // three tables; start at the boundary minus 188 pages for exactly two.
    let dst = 0x2000_0000 - 188 * KIB4;
    db.clone_region(&region(700, dst, 5000), leaf1).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.run_pages()), (2, 700));
    let leaves: Vec<_> = db.leaves().filter(|l| l.asid == AsId(1)).collect();
    assert_eq!(leaves.len(), 2);
    let mut used: Vec<_> = leaves.iter().map(|&l| db.leaf_used(l)).collect();
    used.sort();
    assert_eq!(used, [188, 512]);
    // The same outcome per page as without runs.
    let mut off = sources(700, 0x1000_0000, false);
    off.clone_region(&region(700, dst, 5000), leaf1).unwrap();
    assert_eq!(snapshot_of(&db, 700), snapshot_of(&off, 700));
}

/// Every page's record and every copy's parent in space 1 from `0x2000_0000 - 188 pages` (for the unit
/// tests).
fn snapshot_of(db: &MappingDb, n: u64) -> Vec<(Option<Mapping>, Option<CapSlot>)> {
    (0..n)
        .map(|i| {
            (
                db.lookup(AsId(1), 0x2000_0000 - 188 * KIB4 + i * KIB4),
                db.parent_of(CapSlot(5000 + i)),
            )
        })
        .collect()
}

#[test]
fn destroying_part_of_a_run_splits_it() {
    let mut db = sources(512, 0x1000_0000, true);
    db.clone_region(&region(512, 0x2000_0000, 5000), leaf1).unwrap();
    // The middle half: two runs left.
    db.destroy_region(AsId(1), 0x2000_0000 + 128 * KIB4, 256).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.run_pages()), (2, 256));
    assert_eq!(db.mapping_of_cap(CapSlot(5000 + 200)), None);
    assert_eq!(db.frame_of_cap(CapSlot(5000 + 200)), None);
    assert_eq!(
        db.mapping_of_cap(CapSlot(5000 + 400)).unwrap().frame.slot,
        CapSlot(1400)
    );
    // The first half of what is left: one run left.
    db.destroy_region(AsId(1), 0x2000_0000, 128).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.run_pages()), (1, 128));
    // Across the gap: refused, nothing observable changed (the run met may have been materialised).
    let before: Vec<_> = (0..512).map(|i| db.mapping_of_cap(CapSlot(5000 + i))).collect();
    assert_eq!(
        db.destroy_region(AsId(1), 0x2000_0000 + 300 * KIB4, 100),
        Err((0, RemoveError::NotMapped))
    );
    assert_eq!(
        db.destroy_region(AsId(1), 0x2000_0000 + 384 * KIB4, 129),
        Err((128, RemoveError::NotMapped))
    );
    db.check().unwrap();
    let after: Vec<_> = (0..512).map(|i| db.mapping_of_cap(CapSlot(5000 + i))).collect();
    assert_eq!(before, after);
    assert_eq!(db.len(), 512 + 128);
    db.destroy_region(AsId(1), 0x2000_0000 + 384 * KIB4, 128).unwrap();
    db.check().unwrap();
    assert_eq!((db.len(), db.cap_count()), (512, 512));
    assert_eq!(db.leaves().filter(|l| l.asid == AsId(1)).count(), 0);
}

#[test]
fn a_clone_of_a_run_is_a_run_and_single_updates_materialise() {
    let mut db = sources(64, 0x1000_0000, true);
    db.clone_region(&region(64, 0x2000_0000, 5000), leaf1).unwrap();
    // From the run in space 1 into space 2: the originals are consecutive, so a run again.
    let c = RegionClone {
        src: AsId(1),
        src_vaddr: 0x2000_0000 + 8 * KIB4,
        dst: AsId(2),
        dst_vaddr: 0x3000_0000,
        n: 32,
        first_copy: CapSlot(6000),
        parent: CloneParent::Original,
        rights: R,
    };
    db.clone_region(&c, |base| table(AsId(2), base, PageSize::Small, false))
        .unwrap();
    db.check().unwrap();
    assert_eq!(db.run_count(), 2);
    assert_eq!(db.children_of(CapSlot(1010)), 2);
    assert_eq!(
        db.copies_of(FrameId::new(CapSlot(1010), 0x1_0000_0000 + 10 * KIB4))
            .count(),
        3
    );
    // A single removal materialises the run it touches (and only that one).
    let m = db.remove_by_vaddr(AsId(1), 0x2000_0000 + 3 * KIB4).unwrap();
    assert_eq!(m.cap, CapSlot(5003));
    db.check().unwrap();
    assert_eq!((db.run_count(), db.run_pages()), (1, 32));
    assert_eq!(db.mapping_of_cap(CapSlot(5004)).unwrap().vaddr, 0x2000_0000 + 4 * KIB4);
    // A copy derived from a run's copy: that run is materialised first.
    let f = db.frame_of_cap(CapSlot(6001)).unwrap();
    db.add_copy(f, CapSlot(7000), CapSlot(6001)).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.children_of(CapSlot(6001))), (0, 1));
}

#[test]
fn non_consecutive_or_source_parents_take_the_per_page_path() {
    let mut db = sources(64, 0x1000_0000, true);
    // Source pages 0..16 and 32..48 mapped: not a run of consecutive originals once page 16 is unmapped
    // and mapped again through another frame... simpler: a CloneParent::Source clone.
    let mut c = region(16, 0x2000_0000, 5000);
    c.parent = CloneParent::Source;
    db.clone_region(&c, leaf1).unwrap();
    assert_eq!(db.run_count(), 0);
    // A destination over mapped pages is refused with the loop's index, on both paths.
    let c2 = region(32, 0x2000_0000 - 8 * KIB4, 6000);
    let got = db.clone_region(&c2, leaf1);
    let mut off = sources(64, 0x1000_0000, false);
    off.clone_region(&c, leaf1).unwrap();
    assert_eq!(got, off.clone_region(&c2, leaf1));
    assert!(got.is_err());
    db.check().unwrap();
}

// ----- original runs ---------------------------------------------------------------------------------------

/// `n` 4 KiB frames with originals in consecutive slots from 1000, mapped by one `insert_run` at
/// consecutive pages from `src` in space 0.
/// The record of frame `f` mapped through its original at `v` in space 0.
fn orig_rec(f: FrameId, v: u64) -> Mapping {
    Mapping::new(
        f,
        f.slot,
        AsId(0),
        v,
        PageSize::Small,
        RW,
        table(AsId(0), v, PageSize::Small, false),
    )
}

fn orig_sources(n: u64, src: u64, runs: bool) -> MappingDb {
    gapped_sources(n, n, 0, src, runs).0
}

/// Every query about the originals `1000..1000 + n` and the pages of spaces 0 and 1 from `src` and `dst`.
fn orig_snapshot(db: &MappingDb, n: u64, src: u64, dst: u64) -> Vec<String> {
    let mut out = vec![format!(
        "{} {} {} {}",
        db.len(),
        db.cap_count(),
        db.space_len(AsId(0)),
        db.space_len(AsId(1))
    )];
    for i in 0..n {
        let f = FrameId::new(CapSlot(1000 + i), 0x1_0000_0000 + i * KIB4);
        let mut copies: Vec<_> = db.copies_of(f).collect();
        copies.sort();
        let mut maps: Vec<_> = db.mappings_of_frame(f).collect();
        maps.sort_by_key(key);
        out.push(format!(
            "{:?} {:?} {:?} {} {:?} {:?} {:?} {:?}",
            db.mapping_of_cap(f.slot),
            db.frame_of_cap(f.slot),
            db.parent_of(f.slot),
            db.children_of(f.slot),
            copies,
            maps,
            db.lookup(AsId(0), src + i * KIB4 + 3),
            db.lookup(AsId(1), dst + i * KIB4),
        ));
    }
    let mut leaves: Vec<_> = db.leaves().collect();
    leaves.sort();
    for l in leaves {
        out.push(format!(
            "{:?} {} {:?}",
            l,
            db.leaf_used(l),
            db.leaf_entries(l).collect::<Vec<_>>()
        ));
    }
    out
}

#[test]
fn insert_run_of_512_originals_is_one_run() {
    let mut db = orig_sources(512, 0x1000_0000, true);
    assert_eq!((db.run_count(), db.run_pages()), (1, 512));
    assert_eq!((db.len(), db.cap_count(), db.space_len(AsId(0))), (512, 512, 512));
    let off = orig_sources(512, 0x1000_0000, false);
    assert_eq!(off.run_count(), 0);
    assert_eq!(
        orig_snapshot(&db, 512, 0x1000_0000, 0),
        orig_snapshot(&off, 512, 0x1000_0000, 0)
    );
    let m = db.mapping_of_cap(CapSlot(1007)).unwrap();
    assert_eq!(
        (m.vaddr, m.frame.slot, m.cap, m.index),
        (0x1000_0000 + 7 * KIB4, CapSlot(1007), CapSlot(1007), 7)
    );
    assert_eq!(db.mapping_at(m.leaf, 7), Some(m));
    // The lookups of a region answer from the run: the originals, none a copy.
    let caps = db.source_caps(AsId(0), 0x1000_0000, 512, RW).unwrap();
    assert_eq!(caps, (1000..1512).map(CapSlot).collect::<Vec<_>>());
    assert_eq!(
        db.source_caps(AsId(0), 0x1000_0000, 512, RW | Rights::EXECUTE),
        Err((0, SourceError::RightsExceed))
    );
    let run = db.caps_run(AsId(0), 0x1000_0000 + 10 * KIB4, 100).unwrap();
    assert_eq!(run, (1010..1110).map(|s| (CapSlot(s), false)).collect::<Vec<_>>());
    // Removing one page cuts the run; the original stays known, unmapped.
    let gone = db.remove_by_cap(CapSlot(1100)).unwrap();
    assert_eq!(gone.vaddr, 0x1000_0000 + 100 * KIB4);
    db.check().unwrap();
    assert_eq!(
        (db.run_count(), db.run_pages(), db.len(), db.cap_count()),
        (2, 511, 511, 512)
    );
    assert_eq!(db.mapping_of_cap(CapSlot(1100)), None);
    assert!(db.frame_of_cap(CapSlot(1100)).is_some());
    // Destroying the rest: the originals stay known.
    db.destroy_region(AsId(0), 0x1000_0000 + 101 * KIB4, 411).unwrap();
    db.destroy_region(AsId(0), 0x1000_0000, 100).unwrap();
    db.check().unwrap();
    assert_eq!(
        (db.run_count(), db.len(), db.cap_count(), db.frame_count()),
        (0, 0, 512, 512)
    );
    // Mapped again as a run.
    let recs: Vec<Mapping> = (0..512)
        .map(|i| {
            let f = FrameId::new(CapSlot(1000 + i), 0x1_0000_0000 + i * KIB4);
            let v = 0x1000_0000 + i * KIB4;
            orig_rec(f, v)
        })
        .collect();
    db.insert_run(&recs).unwrap();
    db.check().unwrap();
    assert_eq!(db.run_count(), 1);
    // Again: refused, nothing observable changed (the run met is materialised).
    let before = orig_snapshot(&db, 512, 0x1000_0000, 0);
    assert_eq!(db.insert_run(&recs), Err((0, InsertError::CapMapped)));
    db.check().unwrap();
    assert_eq!(orig_snapshot(&db, 512, 0x1000_0000, 0), before);
}

#[test]
fn insert_run_of_700_originals_across_a_boundary_is_two_runs() {
    let src = 0x2000_0000 - 188 * KIB4;
    let mut db = orig_sources(700, src, true);
    assert_eq!((db.run_count(), db.run_pages()), (2, 700));
    let mut used: Vec<_> = db.leaves().map(|l| db.leaf_used(l)).collect();
    used.sort();
    assert_eq!(used, [188, 512]);
    let mut off = orig_sources(700, src, false);
    assert_eq!(orig_snapshot(&db, 700, src, 0), orig_snapshot(&off, 700, src, 0));
    // A clone of all of it is validated from the two runs and kept as two copy runs again (its
    // destination crosses a boundary at another page).
    let c = RegionClone {
        src: AsId(0),
        src_vaddr: src,
        dst: AsId(1),
        dst_vaddr: 0x4000_0000 - 300 * KIB4,
        n: 700,
        first_copy: CapSlot(5000),
        parent: CloneParent::Original,
        rights: R,
    };
    db.clone_region(&c, leaf1).unwrap();
    off.clone_region(&c, leaf1).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.run_pages()), (4, 1400));
    assert_eq!(
        orig_snapshot(&db, 700, src, c.dst_vaddr),
        orig_snapshot(&off, 700, src, c.dst_vaddr)
    );
    assert_eq!(db.children_of(CapSlot(1500)), 1);
    // A single update of an original in a run (a copy derived from it) leaves its run as it is.
    let f = db.frame_of_cap(CapSlot(1500)).unwrap();
    db.add_copy(f, CapSlot(9999), f.slot).unwrap();
    off.add_copy(f, CapSlot(9999), f.slot).unwrap();
    db.check().unwrap();
    assert_eq!(db.run_count(), 4);
    assert_eq!(
        orig_snapshot(&db, 700, src, c.dst_vaddr),
        orig_snapshot(&off, 700, src, c.dst_vaddr)
    );
    // A one-page clone from an original run.
    let one = RegionClone {
        n: 1,
        src_vaddr: src + 5 * KIB4,
        dst_vaddr: 0x6000_0000,
        first_copy: CapSlot(8000),
        ..c
    };
    db.clone_region(&one, leaf1).unwrap();
    off.clone_region(&one, leaf1).unwrap();
    db.check().unwrap();
    assert_eq!(
        orig_snapshot(&db, 700, src, c.dst_vaddr),
        orig_snapshot(&off, 700, src, c.dst_vaddr)
    );
    // The originals cannot go while mapped (through the run) or copied.
    assert_eq!(
        db.remove_frame(FrameId::new(CapSlot(1600), 0x1_0000_0000 + 600 * KIB4)),
        Err(RemoveFrameError::HasCopies)
    );
    db.destroy_region(AsId(1), c.dst_vaddr, 700).unwrap();
    assert_eq!(
        db.remove_frame(FrameId::new(CapSlot(1600), 0x1_0000_0000 + 600 * KIB4)),
        Err(RemoveFrameError::Mapped)
    );
    db.check().unwrap();
}

#[test]
fn non_consecutive_originals_are_per_page() {
    let mut db = MappingDb::new();
    let mut recs = Vec::new();
    for i in 0..64u64 {
        let f = FrameId::new(CapSlot(1000 + i), 0x1_0000_0000 + i * KIB4);
        db.add_frame(f, PageSize::Small).unwrap();
        // Every other frame: slots not consecutive.
        if i % 2 == 0 {
            let v = 0x1000_0000 + (i / 2) * KIB4;
            recs.push(Mapping::new(
                f,
                f.slot,
                AsId(0),
                v,
                PageSize::Small,
                RW,
                table(AsId(0), v, PageSize::Small, false),
            ));
        }
    }
    db.insert_run(&recs).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.len()), (0, 32));
    // One page: per page too.
    let f = FrameId::new(CapSlot(1001), 0x1_0000_0000 + KIB4);
    let v = 0x1100_0000;
    db.insert_run(&[Mapping::new(
        f,
        f.slot,
        AsId(0),
        v,
        PageSize::Small,
        RW,
        table(AsId(0), v, PageSize::Small, false),
    )])
    .unwrap();
    assert_eq!((db.run_count(), db.len()), (0, 33));
}

// ----- stretches of consecutive originals ------------------------------------------------------------------

/// `n` frames whose originals are consecutive slots from 1000 except for a jump of `gap` slots after
/// frame `at` (as frames allocated across a CNode boundary or an untyped split get), mapped by one
/// `insert_run` at consecutive pages from `src` in space 0; and their slots.
fn gapped_sources(n: u64, at: u64, gap: u64, src: u64, runs: bool) -> (MappingDb, Vec<CapSlot>) {
    let mut db = MappingDb::with_runs(runs);
    let slots: Vec<CapSlot> = (0..n)
        .map(|i| CapSlot(1000 + i + if i >= at { gap } else { 0 }))
        .collect();
    let recs: Vec<Mapping> = slots
        .iter()
        .zip(0..)
        .map(|(&s, i)| {
            let f = FrameId::new(s, 0x1_0000_0000 + i * KIB4);
            db.add_frame(f, PageSize::Small).unwrap();
            let v = src + i * KIB4;
            orig_rec(f, v)
        })
        .collect();
    db.insert_run(&recs).unwrap();
    db.check().unwrap();
    (db, slots)
}

/// Every query about `slots` and the pages of spaces 0 and 1 from `src` and `dst`.
fn gapped_snapshot(db: &MappingDb, slots: &[CapSlot], src: u64, dst: u64) -> Vec<String> {
    let mut out = vec![format!(
        "{} {} {} {}",
        db.len(),
        db.cap_count(),
        db.space_len(AsId(0)),
        db.space_len(AsId(1))
    )];
    for (i, &s) in (0u64..).zip(slots) {
        let f = db.frame_of_cap(s).expect("a frame");
        let mut maps: Vec<_> = db.mappings_of_frame(f).collect();
        maps.sort_by_key(key);
        out.push(format!(
            "{:?} {:?} {} {:?} {:?} {:?}",
            db.mapping_of_cap(s),
            sorted(db.copies_of(f).collect()),
            db.children_of(s),
            maps,
            db.lookup(AsId(0), src + i * KIB4),
            db.lookup(AsId(1), dst + i * KIB4 + 5),
        ));
    }
    out
}

#[test]
fn originals_in_two_slot_stretches_are_runs_split_at_the_jump() {
    let (src, dst) = (0x1000_0000, 0x4000_0000);
    let (mut on, slots) = gapped_sources(700, 300, 40, src, true);
    let (mut off, _) = gapped_sources(700, 300, 40, src, false);
    // Pages 0..300 (first stretch, in the first table), 300..512 (second stretch, same table), 512..700.
    assert_eq!((on.run_count(), on.run_pages()), (3, 700));
    assert_eq!(
        gapped_snapshot(&on, &slots, src, dst),
        gapped_snapshot(&off, &slots, src, dst)
    );
    // The sources as the manager asks for them, then a clone of all 700 pages: copy runs split at the
    // leaf boundary and at the jump of the originals.
    let srcs = on.source_caps(AsId(0), src, 700, RW).unwrap();
    assert_eq!(srcs, slots);
    assert_eq!(srcs, off.source_caps(AsId(0), src, 700, RW).unwrap());
    let c = RegionClone {
        src_vaddr: src,
        ..region(700, dst, 5000)
    };
    on.clone_region(&c, leaf1).unwrap();
    off.clone_region(&c, leaf1).unwrap();
    on.check().unwrap();
    assert_eq!(on.run_count(), 6);
    assert_eq!(
        gapped_snapshot(&on, &slots, src, dst),
        gapped_snapshot(&off, &slots, src, dst)
    );
    // The copy of page 300 derives from the original after the jump.
    assert_eq!(on.parent_of(CapSlot(5300)), Some(CapSlot(1340)));
    // One page's source (a page fault's clone), in a copy run and in an original run: the capability that
    // maps it.
    for (a, v, want) in [
        (1, dst + 301 * KIB4, 5301),
        (0, src + 301 * KIB4, 1341),
        (1, dst + 5 * KIB4, 5005),
    ] {
        let got = on.source_caps(AsId(a), v, 1, RW);
        assert_eq!(got, Ok(vec![CapSlot(want)]));
        assert_eq!(got, off.source_caps(AsId(a), v, 1, RW));
        assert_eq!(
            on.source_caps(AsId(a), v + 1, 1, RW),
            off.source_caps(AsId(a), v + 1, 1, RW)
        );
    }
    // Destroyed in two calls across the jump, as the reference.
    for (v, k) in [(dst, 350), (dst + 350 * KIB4, 350)] {
        assert_eq!(on.destroy_region(AsId(1), v, k), off.destroy_region(AsId(1), v, k));
    }
    on.check().unwrap();
    assert_eq!(on.run_count(), 3);
    assert_eq!(
        gapped_snapshot(&on, &slots, src, dst),
        gapped_snapshot(&off, &slots, src, dst)
    );
}

#[test]
fn many_short_stretches_or_a_slot_named_twice_stay_per_page() {
    // A jump every 4 pages: too many stretches for runs.
    let mut db = MappingDb::new();
    let recs: Vec<Mapping> = (0..64u64)
        .map(|i| {
            let f = FrameId::new(CapSlot(1000 + i + (i / 4) * 10), 0x1_0000_0000 + i * KIB4);
            db.add_frame(f, PageSize::Small).unwrap();
            let v = 0x1000_0000 + i * KIB4;
            orig_rec(f, v)
        })
        .collect();
    db.insert_run(&recs).unwrap();
    db.check().unwrap();
    assert_eq!((db.run_count(), db.len()), (0, 64));
    // Two stretches naming the same originals (one cap mapped twice): refused with the loop's index and
    // error, nothing changed.
    for runs in [true, false] {
        let mut db = MappingDb::with_runs(runs);
        let frames: Vec<FrameId> = (0..32u64)
            .map(|i| FrameId::new(CapSlot(1000 + i), 0x1_0000_0000 + i * KIB4))
            .collect();
        for &f in &frames {
            db.add_frame(f, PageSize::Small).unwrap();
        }
        let recs: Vec<Mapping> = (0..64u64)
            .map(|i| {
                let f = frames[(i % 32) as usize];
                let v = 0x1000_0000 + i * KIB4;
                Mapping::new(
                    f,
                    f.slot,
                    AsId(0),
                    v,
                    PageSize::Small,
                    RW,
                    table(AsId(0), v, PageSize::Small, false),
                )
            })
            .collect();
        assert_eq!(db.insert_run(&recs), Err((32, InsertError::CapMapped)), "runs {runs}");
        assert_eq!((db.run_count(), db.len()), (0, 0));
        db.check().unwrap();
    }
}
