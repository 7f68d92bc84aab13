//! The run operations (`insert_run`, `remove_run`, `add_copies`, `mappings_run`, `clone_run`) against loops of the single operations:
//! the same outcome, the same records, and on a refusal the refused element's index, its error, and a
//! database left as it was.

use mapping_db::*;
use proptest::prelude::*;

const KIB4: u64 = 1 << 12;
const MIB2: u64 = 1 << 21;
const GIB: u64 = 1 << 30;
const SLOTS: u64 = 96;
const SPACES: u32 = 3;
const SIZES: [PageSize; 3] = [PageSize::Small, PageSize::Large, PageSize::Huge];
const RW: Rights = Rights::READ.union(Rights::WRITE);

/// A slot: its frame, parent, number of children and mapping.
type CapRow = (u64, Option<FrameId>, Option<CapSlot>, usize, Option<Mapping>);

/// Everything observable through the public API over the slots, spaces and leaves the tests use, in a
/// canonical order.
#[derive(PartialEq, Eq, Debug)]
struct Snapshot {
    caps: Vec<CapRow>,
    copies: Vec<(FrameId, Vec<CapSlot>, Vec<CapSlot>)>,
    spaces: Vec<Vec<Mapping>>,
    leaves: Vec<(LeafTable, Vec<Mapping>)>,
    counts: (usize, usize, usize),
}

fn snapshot(db: &MappingDb) -> Snapshot {
    let caps: Vec<_> = (0..SLOTS)
        .map(|s| {
            let s = CapSlot(s);
            (
                s.0,
                db.frame_of_cap(s),
                db.parent_of(s),
                db.children_of(s),
                db.mapping_of_cap(s),
            )
        })
        .collect();
    let mut frames: Vec<FrameId> = caps.iter().filter_map(|c| c.1).collect();
    frames.sort();
    frames.dedup();
    let copies = frames
        .into_iter()
        .map(|f| {
            let mut c: Vec<_> = db.copies_of(f).collect();
            c.sort();
            let mut m: Vec<_> = db.mappings_of_frame(f).map(|m| m.cap).collect();
            m.sort();
            (f, c, m)
        })
        .collect();
    let spaces = (0..=SPACES)
        .map(|a| {
            let mut v: Vec<_> = db.mappings_in(AsId(a)).collect();
            v.sort_by_key(|m| m.cap);
            v
        })
        .collect();
    let mut leaves: Vec<_> = db.leaves().map(|l| (l, db.leaf_entries(l).collect())).collect();
    leaves.sort_by_key(|l| l.0);
    Snapshot {
        caps,
        copies,
        spaces,
        leaves,
        counts: (db.len(), db.frame_count(), db.cap_count()),
    }
}

/// The table proper to the region of a page (distinct per space, level and region), or one from a tiny pool.
fn table(asid: u32, size: PageSize, vaddr: u64, pool: Option<u64>) -> CapSlot {
    match pool {
        Some(t) => CapSlot(1000 + t),
        None => {
            let lvl = SIZES.iter().position(|&s| s == size).unwrap() as u64;
            CapSlot(1000 + u64::from(asid) * 10_000 + lvl * 1000 + (vaddr / (size.bytes() * 512)) % 1000)
        }
    }
}

/// A database built by random single operations: frames (mostly 4 KiB), copies, mappings.
fn build(seed: &[(u8, u64, u64, u64)]) -> MappingDb {
    let mut db = MappingDb::new();
    let mut frames: Vec<(FrameId, PageSize)> = Vec::new();
    for &(kind, a, b, c) in seed {
        match kind % 4 {
            0 => {
                let size = SIZES[[0, 0, 0, 0, 1, 1, 2][(a % 7) as usize]];
                let f = FrameId::new(CapSlot(b % SLOTS), (c % 4) * size.bytes() + GIB);
                if db.add_frame(f, size).is_ok() {
                    frames.push((f, size));
                }
            }
            1 | 2 if !frames.is_empty() => {
                let (f, _) = frames[(a as usize) % frames.len()];
                let parent = db.copies_of(f).nth((c % 3) as usize).unwrap_or(f.slot);
                let _ = db.add_copy(f, CapSlot(b % SLOTS), parent);
            }
            3 if !frames.is_empty() => {
                let (f, size) = frames[(a as usize) % frames.len()];
                let asid = (b % u64::from(SPACES)) as u32;
                let vaddr = size.align_down((c % 4) * GIB + (c / 4 % 4) * MIB2 + (c / 16 % 64) * KIB4);
                let free = db.copies_of(f).find(|&s| db.mapping_of_cap(s).is_none());
                if let Some(cap) = free {
                    let m = Mapping::new(f, cap, AsId(asid), vaddr, size, RW, table(asid, size, vaddr, None));
                    let _ = db.insert(m);
                }
            }
            _ => {}
        }
    }
    db.check().unwrap();
    db
}

fn seed() -> impl Strategy<Value = Vec<(u8, u64, u64, u64)>> {
    prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()), 0..160)
}

/// A run of `n` records into consecutive pages from `start`, with the unmapped caps of frames of `size`
/// (some picks are mapped caps, unknown caps or wrong fields, so runs also fail, anywhere).
fn run_records(
    db: &MappingDb,
    size: PageSize,
    asid: u32,
    start: u64,
    n: usize,
    picks: &[u64],
    pool: bool,
) -> Vec<Mapping> {
    let caps: Vec<(CapSlot, FrameId)> = (0..SLOTS)
        .map(CapSlot)
        .filter_map(|s| db.frame_of_cap(s).map(|f| (s, f)))
        .filter(|&(_, f)| db.frame_size(f) == Some(size))
        .collect();
    let free: Vec<_> = caps
        .iter()
        .copied()
        .filter(|&(s, _)| db.mapping_of_cap(s).is_none())
        .collect();
    let start = size.align_down(start);
    (0..n)
        .map(|i| {
            let p = picks[i % picks.len()];
            let vaddr = start + i as u64 * size.bytes();
            let (cap, frame) = match p % 16 {
                0 if !caps.is_empty() => caps[(p / 16) as usize % caps.len()],
                1 => (CapSlot(999), FrameId::new(CapSlot(999), 0)),
                _ if !free.is_empty() => free[(i + (p as usize / 16)) % free.len()],
                _ => (CapSlot(998), FrameId::new(CapSlot(998), 0)),
            };
            let mut m = Mapping::new(frame, cap, AsId(asid), vaddr, size, RW, table(asid, size, vaddr, None));
            if pool {
                m.leaf.table = table(asid, size, vaddr, Some(p % 3));
            }
            if p % 97 == 5 {
                m.vaddr += 8;
            }
            m
        })
        .collect()
}

/// The loop of single inserts, all or nothing.
fn insert_loop(db: &mut MappingDb, recs: &[Mapping]) -> Result<(), (usize, InsertError)> {
    let before = db.clone();
    for (i, &m) in recs.iter().enumerate() {
        if let Err(e) = db.insert(m) {
            *db = before;
            return Err((i, e));
        }
    }
    Ok(())
}

/// The loop of single removals, all or nothing.
fn remove_loop(db: &mut MappingDb, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<Mapping>, (usize, RemoveError)> {
    let before = db.clone();
    let mut out = Vec::new();
    let mut va = vaddr;
    for i in 0..n {
        match db.remove_by_vaddr(asid, va) {
            Ok(m) => {
                va = m.vaddr + m.size.bytes();
                out.push(m);
            }
            Err(e) => {
                *db = before;
                return Err((i, e));
            }
        }
    }
    Ok(out)
}

/// The loop of single copies, all or nothing.
fn copy_loop(db: &mut MappingDb, copies: &[(FrameId, CapSlot, CapSlot)]) -> Result<(), (usize, AddCopyError)> {
    let before = db.clone();
    for (i, &(f, c, p)) in copies.iter().enumerate() {
        if let Err(e) = db.add_copy(f, c, p) {
            *db = before;
            return Err((i, e));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn insert_run_is_the_loop(
        seed in seed(),
        size in prop_oneof![4 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        asid in 0..SPACES,
        start in 0..4 * GIB,
        n in 0..24usize,
        picks in prop::collection::vec(2..u64::MAX, 1..8),
        pool in prop::bool::weighted(0.2),
    ) {
        let mut db = build(&seed);
        let recs = run_records(&db, SIZES[size], asid, start, n, &picks, pool);
        let mut expect = db.clone();
        let want = insert_loop(&mut expect, &recs);
        let before = snapshot(&db);
        let got = db.insert_run(&recs);
        prop_assert_eq!(got, want);
        db.check().unwrap();
        prop_assert_eq!(snapshot(&db), snapshot(&expect));
        if got.is_err() {
            prop_assert_eq!(snapshot(&db), before);
        }
    }

    #[test]
    fn remove_run_is_the_loop(
        seed in seed(),
        fill in prop::collection::vec(2..u64::MAX, 1..8),
        asid in 0..SPACES,
        start in 0..4 * GIB,
        len in 0..24usize,
        skip in 0..4usize,
        n in prop_oneof![2 => Just(None), 1 => (0..28usize).prop_map(Some)],
        over in 0..2usize,
    ) {
        // Some consecutive pages (those the single inserts accept), then a run over (part of) them: by
        // default to the end of the filled pages, or one more.
        let mut db = build(&seed);
        for m in run_records(&db, PageSize::Small, asid, start, len, &fill, false) {
            let _ = db.insert(m);
        }
        let vaddr = PageSize::Small.align_down(start) + skip as u64 * KIB4 + if skip == 3 { 5 } else { 0 };
        let n = n.unwrap_or(len.saturating_sub(skip) + over);
        let mut expect = db.clone();
        let want = remove_loop(&mut expect, AsId(asid), vaddr, n);
        let before = snapshot(&db);
        let got = db.remove_run(AsId(asid), vaddr, n);
        prop_assert_eq!(&got, &want);
        db.check().unwrap();
        prop_assert_eq!(snapshot(&db), snapshot(&expect));
        if got.is_err() {
            prop_assert_eq!(snapshot(&db), before);
        }
    }

    #[test]
    fn add_copies_is_the_loop(
        seed in seed(),
        picks in prop::collection::vec((any::<u64>(), 0..SLOTS + 4, any::<u64>()), 0..16),
    ) {
        let mut db = build(&seed);
        let frames: Vec<FrameId> = (0..SLOTS).filter_map(|s| db.frame_of_cap(CapSlot(s))).collect();
        let copies: Vec<_> = picks
            .iter()
            .enumerate()
            .map(|(i, &(f, slot, p))| {
                let frame = if frames.is_empty() || f % 13 == 0 {
                    FrameId::new(CapSlot(997), 0)
                } else {
                    frames[(f as usize) % frames.len()]
                };
                // Usually the original or an earlier copy of the run as the parent.
                let parent = match p % 4 {
                    0 if i > 0 => CapSlot(picks[i - 1].1),
                    1 => CapSlot(p % SLOTS),
                    _ => frame.slot,
                };
                (frame, CapSlot(slot), parent)
            })
            .collect();
        let mut expect = db.clone();
        let want = copy_loop(&mut expect, &copies);
        let before = snapshot(&db);
        let got = db.add_copies(&copies);
        prop_assert_eq!(got, want);
        db.check().unwrap();
        prop_assert_eq!(snapshot(&db), snapshot(&expect));
        if got.is_err() {
            prop_assert_eq!(snapshot(&db), before);
        }
    }
}

fn frame(n: u64) -> FrameId {
    FrameId::new(CapSlot(n), n * GIB)
}

/// 1024 pages in 2 leaf tables, inserted, looked up and removed by runs.
#[test]
fn runs_over_two_leaves() {
    let mut db = MappingDb::new();
    let mut recs = Vec::new();
    let mut copies = Vec::new();
    for i in 0..1024 {
        let f = FrameId::new(CapSlot(i), i * KIB4);
        db.add_frame(f, PageSize::Small).unwrap();
        copies.push((f, CapSlot(10_000 + i), f.slot));
        let vaddr = 0x4000_0000 + i * KIB4;
        recs.push(Mapping::new(
            f,
            CapSlot(10_000 + i),
            AsId(1),
            vaddr,
            PageSize::Small,
            RW,
            CapSlot(50 + (i >> 9)),
        ));
    }
    db.add_copies(&copies).unwrap();
    db.insert_run(&recs).unwrap();
    db.check().unwrap();
    assert_eq!(db.len(), 1024);
    assert_eq!(db.leaves().count(), 2);
    assert!(recs.iter().all(|m| db.lookup(AsId(1), m.vaddr + 123) == Some(*m)));
    // A run that ends in a gap is refused whole, naming the first missing page.
    db.remove_by_vaddr(AsId(1), recs[700].vaddr).unwrap();
    assert_eq!(
        db.remove_run(AsId(1), recs[600].vaddr, 200),
        Err((100, RemoveError::NotMapped))
    );
    assert_eq!(db.len(), 1023);
    db.check().unwrap();
    let gone = db.remove_run(AsId(1), recs[0].vaddr, 700).unwrap();
    assert_eq!(gone, recs[..700]);
    let gone = db.remove_run(AsId(1), recs[701].vaddr, 323).unwrap();
    assert_eq!(gone, recs[701..]);
    assert!(db.is_empty());
    assert_eq!(db.leaves().count(), 0);
    db.check().unwrap();
}

/// A refused run names the element and leaves nothing of the run behind, wherever it fails.
#[test]
fn refused_runs_change_nothing() {
    let mut db = MappingDb::new();
    for n in 1..=4 {
        db.add_frame(frame(n), PageSize::Small).unwrap();
    }
    db.add_copy(frame(1), CapSlot(11), CapSlot(1)).unwrap();
    let m = |f: u64, cap: u64, va: u64| {
        Mapping::new(frame(f), CapSlot(cap), AsId(1), va, PageSize::Small, RW, CapSlot(100))
    };
    db.insert(m(4, 4, 0x9000)).unwrap();
    let before = snapshot(&db);
    // The third record reuses the first's cap.
    let recs = [m(1, 1, 0x1000), m(2, 2, 0x2000), m(1, 1, 0x3000)];
    assert_eq!(db.insert_run(&recs), Err((2, InsertError::CapMapped)));
    assert_eq!(snapshot(&db), before);
    // The second record claims the entry of a mapping made before the run.
    let recs = [m(1, 1, 0x8000), m(2, 2, 0x9000)];
    assert_eq!(db.insert_run(&recs), Err((1, InsertError::PteClaimed(CapSlot(4)))));
    assert_eq!(snapshot(&db), before);
    // A copy derived from an earlier copy of the run, then one into a slot in use.
    let copies = [
        (frame(2), CapSlot(21), CapSlot(2)),
        (frame(2), CapSlot(22), CapSlot(21)),
        (frame(3), CapSlot(11), CapSlot(3)),
    ];
    assert_eq!(db.add_copies(&copies), Err((2, AddCopyError::SlotInUse)));
    assert_eq!(snapshot(&db), before);
    db.add_copies(&copies[..2]).unwrap();
    assert_eq!(db.parent_of(CapSlot(22)), Some(CapSlot(21)));
    db.check().unwrap();
    // Empty runs.
    assert_eq!(db.insert_run(&[]), Ok(()));
    assert_eq!(db.add_copies(&[]), Ok(()));
    assert_eq!(db.remove_run(AsId(1), 0, 0), Ok(Vec::new()));
}

/// A run of removals follows pages of any size: each starts where the one before ends.
#[test]
fn remove_run_follows_page_sizes() {
    let mut db = MappingDb::new();
    db.add_frame(frame(1), PageSize::Small).unwrap();
    db.add_frame(frame(2), PageSize::Large).unwrap();
    db.add_frame(frame(3), PageSize::Small).unwrap();
    let a = Mapping::new(
        frame(1),
        CapSlot(1),
        AsId(1),
        MIB2 - KIB4,
        PageSize::Small,
        RW,
        CapSlot(100),
    );
    let b = Mapping::new(frame(2), CapSlot(2), AsId(1), MIB2, PageSize::Large, RW, CapSlot(101));
    let c = Mapping::new(
        frame(3),
        CapSlot(3),
        AsId(1),
        2 * MIB2,
        PageSize::Small,
        RW,
        CapSlot(102),
    );
    db.insert_run(&[a, b, c]).unwrap();
    assert_eq!(db.remove_run(AsId(1), MIB2 - 1, 3), Ok(vec![a, b, c]));
    db.check().unwrap();
    assert!(db.is_empty());
}

// ----- mappings_run and clone_run ---------------------------------------------------------------------------

/// Slots of the capabilities `clone_run` creates in the tests (beyond those `build` uses).
const NEW_SLOTS: std::ops::Range<u64> = 100..140;

/// [`snapshot`], with the rows of the slots `clone_run` creates.
fn snapshot_all(db: &MappingDb) -> (Snapshot, Vec<CapRow>) {
    let extra = NEW_SLOTS
        .map(|s| {
            let s = CapSlot(s);
            (
                s.0,
                db.frame_of_cap(s),
                db.parent_of(s),
                db.children_of(s),
                db.mapping_of_cap(s),
            )
        })
        .collect();
    (snapshot(db), extra)
}

/// The loop of lookups `mappings_run` replaces: each page must hold a 4 KiB mapping starting exactly there.
fn lookup_loop(db: &MappingDb, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<Mapping>, (usize, RemoveError)> {
    (0..n)
        .map(|i| {
            let va = vaddr + i as u64 * KIB4;
            match db.lookup(asid, va) {
                Some(r) if r.vaddr == va && r.size == PageSize::Small => Ok(r),
                _ => Err((i, RemoveError::NotMapped)),
            }
        })
        .collect()
}

/// The loop of single copies and inserts `clone_run` replaces, all or nothing.
fn clone_loop(db: &mut MappingDb, recs: &[(Mapping, CapSlot)]) -> Result<(), (usize, CloneError)> {
    let before = db.clone();
    for (i, &(r, p)) in recs.iter().enumerate() {
        let res = db
            .add_copy(r.frame, r.cap, p)
            .map_err(CloneError::Copy)
            .and_then(|()| db.insert(r).map_err(CloneError::Insert));
        if let Err(e) = res {
            *db = before;
            return Err((i, e));
        }
    }
    Ok(())
}

/// A clone run of `n` records into consecutive pages from `start`: new caps (sometimes a slot in use or one of
/// the run's again), derived from the frame's original, an earlier cap of the run or any slot; some picks
/// name a wrong frame, a misaligned address or a table from a tiny pool.
fn clone_records(
    db: &MappingDb,
    size: PageSize,
    asid: u32,
    start: u64,
    n: usize,
    picks: &[u64],
) -> Vec<(Mapping, CapSlot)> {
    let frames: Vec<FrameId> = (0..SLOTS)
        .filter_map(|s| db.frame_of_cap(CapSlot(s)))
        .filter(|&f| db.frame_size(f) == Some(size))
        .collect();
    let start = size.align_down(start);
    let mut out: Vec<(Mapping, CapSlot)> = Vec::new();
    for i in 0..n {
        let p = picks[i % picks.len()];
        let vaddr = start + i as u64 * size.bytes();
        let frame = match p % 29 {
            3 => FrameId::new(CapSlot(997), 0),
            _ if frames.is_empty() => FrameId::new(CapSlot(998), 0),
            _ => frames[(p / 29) as usize % frames.len()],
        };
        let cap = match p % 31 {
            7 => CapSlot(p % SLOTS),
            8 if i > 0 => out[(p as usize / 31) % i].0.cap,
            _ => CapSlot(NEW_SLOTS.start + i as u64),
        };
        let parent = match p % 11 {
            4 if i > 0 => out[(p as usize / 11) % i].0.cap,
            5 => CapSlot(p / 11 % SLOTS),
            _ => frame.slot,
        };
        let mut m = Mapping::new(frame, cap, AsId(asid), vaddr, size, RW, table(asid, size, vaddr, None));
        if p % 37 == 9 {
            m.leaf.table = table(asid, size, vaddr, Some(p % 3));
        }
        if p % 97 == 5 {
            m.vaddr += 8;
        }
        out.push((m, parent));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mappings_run_is_the_loop(
        seed in seed(),
        fill in prop::collection::vec(2..u64::MAX, 1..8),
        asid in 0..SPACES,
        start in 0..4 * GIB,
        len in 0..80usize,
        skip in 0..4usize,
        n in prop_oneof![2 => Just(None), 1 => (0..90usize).prop_map(Some)],
        over in 0..2usize,
    ) {
        let mut db = build(&seed);
        for m in run_records(&db, PageSize::Small, asid, start, len, &fill, false) {
            let _ = db.insert(m);
        }
        let vaddr = PageSize::Small.align_down(start) + skip as u64 * KIB4 + if skip == 3 { 5 } else { 0 };
        let n = n.unwrap_or(len.saturating_sub(skip) + over);
        let before = snapshot(&db);
        prop_assert_eq!(db.mappings_run(AsId(asid), vaddr, n), lookup_loop(&db, AsId(asid), vaddr, n));
        prop_assert_eq!(snapshot(&db), before);
    }

    #[test]
    fn clone_run_is_the_loop(
        seed in seed(),
        fill in prop::collection::vec(2..u64::MAX, 1..8),
        size in prop_oneof![4 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        asid in 0..SPACES,
        start in 0..4 * GIB,
        len in 0..12usize,
        n in 0..40usize,
        picks in prop::collection::vec(any::<u64>(), 1..8),
    ) {
        // Some pages mapped before (in the way of the run, or not), then the run.
        let mut db = build(&seed);
        for m in run_records(&db, SIZES[size], asid, start + (fill[0] % 64) * KIB4, len, &fill, false) {
            let _ = db.insert(m);
        }
        let recs = clone_records(&db, SIZES[size], asid, start, n, &picks);
        let mut expect = db.clone();
        let want = clone_loop(&mut expect, &recs);
        let before = snapshot_all(&db);
        let got = db.clone_run(&recs);
        prop_assert_eq!(got, want);
        db.check().unwrap();
        prop_assert_eq!(snapshot_all(&db), snapshot_all(&expect));
        if got.is_err() {
            prop_assert_eq!(snapshot_all(&db), before);
        } else {
            // The clones are found by address, as a run.
            let small: Vec<Mapping> = recs.iter().map(|r| r.0).collect();
            if SIZES[size] == PageSize::Small && !small.is_empty() {
                prop_assert_eq!(db.mappings_run(AsId(asid), small[0].vaddr, small.len()), Ok(small));
            }
        }
    }
}

/// 1024 pages in 2 leaf tables cloned by one run and found by one run; refusals in the second leaf.
#[test]
fn clone_run_over_two_leaves() {
    let mut db = MappingDb::new();
    let mut originals = Vec::new();
    let mut clones = Vec::new();
    for i in 0..1024 {
        let f = FrameId::new(CapSlot(i), i * KIB4);
        db.add_frame(f, PageSize::Small).unwrap();
        let m = |cap, asid, base: u64| {
            let vaddr = base + i * KIB4;
            Mapping::new(
                f,
                cap,
                AsId(asid),
                vaddr,
                PageSize::Small,
                RW,
                CapSlot(50 + 10 * u64::from(asid) + (i >> 9)),
            )
        };
        originals.push(m(f.slot, 1, 0x4000_0000));
        clones.push((m(CapSlot(10_000 + i), 2, 0x8000_0000), f.slot));
    }
    db.insert_run(&originals).unwrap();
    assert_eq!(db.mappings_run(AsId(1), 0x4000_0000, 1024).unwrap(), originals);
    assert_eq!(
        db.mappings_run(AsId(1), 0x4000_0000, 1025),
        Err((1024, RemoveError::NotMapped))
    );
    assert_eq!(
        db.mappings_run(AsId(1), 0x4000_0001, 1),
        Err((0, RemoveError::NotMapped))
    );
    assert_eq!(db.mappings_run(AsId(1), 0x4000_0001, 0), Ok(Vec::new()));
    let before = db.clone();
    let snap = snapshot(&db);
    // A slot in use, then an entry claimed, in the second leaf: nothing changes.
    let mut bad = clones.clone();
    bad[700].0.cap = CapSlot(3);
    assert_eq!(
        db.clone_run(&bad),
        Err((700, CloneError::Copy(AddCopyError::SlotInUse)))
    );
    assert_eq!(snapshot(&db), snap);
    assert_eq!(db.cap_count(), before.cap_count());
    let mut bad = clones.clone();
    bad[900].0.vaddr = bad[899].0.vaddr;
    bad[900].0.index = bad[899].0.index;
    assert_eq!(
        db.clone_run(&bad),
        Err((900, CloneError::Insert(InsertError::PteClaimed(CapSlot(10_899)))))
    );
    assert_eq!(snapshot(&db), snap);
    assert_eq!((db.cap_count(), db.len()), (before.cap_count(), before.len()));
    db.check().unwrap();
    db.clone_run(&clones).unwrap();
    db.check().unwrap();
    assert_eq!((db.len(), db.cap_count(), db.leaves().count()), (2048, 2048, 4));
    let got = db.mappings_run(AsId(2), 0x8000_0000, 1024).unwrap();
    assert!(got.iter().zip(&clones).all(|(a, b)| *a == b.0));
    assert_eq!(db.parent_of(CapSlot(10_512)), Some(CapSlot(512)));
    assert_eq!(db.children_of(CapSlot(512)), 1);
    // Copies derived from the run's own copies, mapped in a third space.
    let more: Vec<_> = clones[..3]
        .iter()
        .map(|(m, _)| {
            let mut r = *m;
            r.cap = CapSlot(m.cap.0 + 20_000);
            r.asid = AsId(3);
            r.leaf.asid = AsId(3);
            (r, m.cap)
        })
        .collect();
    db.clone_run(&more).unwrap();
    assert_eq!(db.parent_of(CapSlot(30_001)), Some(CapSlot(10_001)));
    db.check().unwrap();
    assert_eq!(db.clone_run(&[]), Ok(()));
}

/// A run of lookups stops at the end of user space.
#[test]
fn mappings_run_stops_at_the_end_of_user_space() {
    let mut db = MappingDb::new();
    let f = frame(1);
    db.add_frame(f, PageSize::Small).unwrap();
    let va = USER_VADDR_END - KIB4;
    let m = Mapping::new(f, f.slot, AsId(1), va, PageSize::Small, RW, CapSlot(100));
    db.insert(m).unwrap();
    assert_eq!(db.mappings_run(AsId(1), va, 1), Ok(vec![m]));
    assert_eq!(db.mappings_run(AsId(1), va, 2), Err((1, RemoveError::NotMapped)));
    assert_eq!(
        db.mappings_run(AsId(1), USER_VADDR_END, 1),
        Err((0, RemoveError::NotMapped))
    );
}

/// The loop `destroy_run` replaces: `remove_run`, then `remove_copy` of each removed record's cap that is a
/// copy, in address order; all or nothing (a refused `remove_copy` is reported at the record's index).
fn destroy_loop(db: &mut MappingDb, asid: AsId, vaddr: u64, n: usize) -> Result<Vec<Mapping>, (usize, RemoveError)> {
    let before = db.clone();
    let recs = db.remove_run(asid, vaddr, n)?;
    for (i, r) in recs.iter().enumerate() {
        if r.cap == r.frame.slot {
            continue;
        }
        match db.remove_copy(r.cap) {
            Ok(()) => {}
            Err(RemoveCopyError::HasChildren) => {
                *db = before;
                return Err((i, RemoveError::HasChildren));
            }
            Err(e) => panic!("copy of a removed record not removable: {e:?}"),
        }
    }
    Ok(recs)
}

/// A clone run that `clone_run` accepts while the pages are free: new caps, each of a frame of `size`
/// derived from its original or (sometimes) from an earlier copy of the run of the same frame.
fn clean_clones(
    db: &MappingDb,
    size: PageSize,
    asid: u32,
    start: u64,
    n: usize,
    picks: &[u64],
) -> Vec<(Mapping, CapSlot)> {
    let frames: Vec<FrameId> = (0..SLOTS)
        .filter_map(|s| db.frame_of_cap(CapSlot(s)))
        .filter(|&f| db.frame_size(f) == Some(size))
        .collect();
    if frames.is_empty() {
        return Vec::new();
    }
    let start = size.align_down(start);
    let mut out: Vec<(Mapping, CapSlot)> = Vec::new();
    for i in 0..n {
        let p = picks[i % picks.len()] / (i as u64 + 1);
        let vaddr = start + i as u64 * size.bytes();
        let (frame, parent) = match p % 4 {
            0 if i > 0 => {
                let (m, _) = out[(p / 4) as usize % i];
                (m.frame, m.cap)
            }
            _ => {
                let f = frames[(p / 4) as usize % frames.len()];
                (f, f.slot)
            }
        };
        let cap = CapSlot(NEW_SLOTS.start + i as u64);
        out.push((
            Mapping::new(frame, cap, AsId(asid), vaddr, size, RW, table(asid, size, vaddr, None)),
            parent,
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random states with copies mapped by a clone run (some derived from the run's own copies, some with
    /// further unmapped copies derived from them), then several destroy runs over (parts of) them, each
    /// against the loop: the same records or refusal, the same state, `check()` after each.
    #[test]
    fn destroy_run_is_the_loop(
        seed in seed(),
        fill in prop::collection::vec(2..u64::MAX, 1..8),
        size in prop_oneof![4 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        asid in 0..SPACES,
        start in 0..4 * GIB,
        len in 0..12usize,
        n in 0..40usize,
        picks in prop::collection::vec(any::<u64>(), 1..8),
        clean in prop::bool::weighted(0.7),
        kids in prop::collection::vec((0..40usize, 0..3u64), 0..3),
        steps in prop::collection::vec((0..44usize, prop_oneof![2 => Just(None), 1 => (0..44usize).prop_map(Some)], 0..8u64), 1..4),
    ) {
        let size = SIZES[size];
        let mut db = build(&seed);
        for m in run_records(&db, size, asid, start + (fill[0] % 64) * KIB4, len, &fill, false) {
            let _ = db.insert(m);
        }
        let mut recs = if clean {
            clean_clones(&db, size, asid, start, n, &picks)
        } else {
            clone_records(&db, size, asid, start, n, &picks)
        };
        if let Err((i, _)) = db.clone_run(&recs) {
            // The part before the refused element, so that there are copies to destroy.
            recs.truncate(i);
            db.clone_run(&recs).unwrap();
        }
        let n = recs.len();
        // Unmapped copies derived from some of the run's copies (so those cannot be forgotten).
        for (k, &(at, extra)) in kids.iter().enumerate() {
            if let Some(&(m, _)) = recs.get(at) {
                if let Some(f) = db.frame_of_cap(m.cap) {
                    let _ = db.add_copy(f, CapSlot(NEW_SLOTS.end - 1 - k as u64 - 3 * extra), m.cap);
                }
            }
        }
        db.check().unwrap();
        let base = size.align_down(start);
        for &(skip, count, odd) in &steps {
            let skip = skip % (n + 2);
            // From a page of the run (or just before it), over `count` pages or to the end of the run.
            let vaddr = (base + skip as u64 * size.bytes()).saturating_sub(if odd == 0 { size.bytes() } else { 0 })
                + if odd == 1 { 5 } else { 0 };
            let count = count.unwrap_or(n.saturating_sub(skip));
            let mut expect = db.clone();
            let want = destroy_loop(&mut expect, AsId(asid), vaddr, count);
            let before = snapshot_all(&db);
            let got = db.destroy_run(AsId(asid), vaddr, count);
            prop_assert_eq!(&got, &want);
            db.check().unwrap();
            prop_assert_eq!(snapshot_all(&db), snapshot_all(&expect));
            if got.is_err() {
                prop_assert_eq!(snapshot_all(&db), before);
            }
        }
    }
}

/// 1024 cloned pages over two leaf tables destroyed by runs: a gap or a copy with children refuses the whole
/// run; otherwise the copies are gone, the originals stay, unmapped or mapped elsewhere.
#[test]
fn destroy_run_over_two_leaves() {
    let mut db = MappingDb::new();
    let mut originals = Vec::new();
    let mut clones = Vec::new();
    for i in 0..1024u64 {
        let f = FrameId::new(CapSlot(i), i * KIB4);
        db.add_frame(f, PageSize::Small).unwrap();
        let m = |cap, asid: u32, base: u64| {
            let vaddr = base + i * KIB4;
            Mapping::new(
                f,
                cap,
                AsId(asid),
                vaddr,
                PageSize::Small,
                RW,
                CapSlot(50 + 10 * u64::from(asid) + (i >> 9)),
            )
        };
        originals.push(m(f.slot, 1, 0x4000_0000));
        clones.push((m(CapSlot(10_000 + i), 2, 0x8000_0000), f.slot));
    }
    db.insert_run(&originals).unwrap();
    db.clone_run(&clones).unwrap();
    // A copy of a copy, unmapped: page 700's copy cannot be forgotten.
    db.add_copy(clones[700].0.frame, CapSlot(50_000), CapSlot(10_700))
        .unwrap();
    let snap = snapshot(&db);
    assert_eq!(
        db.destroy_run(AsId(2), 0x8000_0000, 1024),
        Err((700, RemoveError::HasChildren))
    );
    assert_eq!(
        db.destroy_run(AsId(2), 0x8000_0000, 1025),
        Err((1024, RemoveError::NotMapped))
    );
    assert_eq!(snapshot(&db), snap);
    assert_eq!(db.cap_count(), 2 * 1024 + 1);
    db.check().unwrap();
    // Once the child is gone, the first 700 pages, then the rest.
    db.remove_copy(CapSlot(50_000)).unwrap();
    let got = db.destroy_run(AsId(2), 0x8000_0000, 700).unwrap();
    assert!(got.iter().zip(&clones).all(|(a, b)| *a == b.0));
    db.check().unwrap();
    assert_eq!(db.frame_of_cap(CapSlot(10_000)), None);
    assert_eq!(db.children_of(CapSlot(0)), 0);
    assert_eq!(db.frame_of_cap(CapSlot(10_700)), Some(clones[700].0.frame));
    let got = db.destroy_run(AsId(2), 0x8000_0000 + 700 * KIB4, 324).unwrap();
    assert_eq!(got.len(), 324);
    db.check().unwrap();
    assert_eq!((db.len(), db.cap_count(), db.space_len(AsId(2))), (1024, 1024, 0));
    // Originals stay known, unmapped.
    let got = db.destroy_run(AsId(1), 0x4000_0000, 1024).unwrap();
    assert_eq!(got, originals);
    db.check().unwrap();
    assert_eq!((db.len(), db.cap_count(), db.frame_count()), (0, 1024, 1024));
    assert_eq!(db.destroy_run(AsId(1), 0x4000_0000, 0), Ok(Vec::new()));
}

/// A copy derived from a later copy of the same run is forgotten first (as the loop does it in address
/// order); the reverse order is refused.
#[test]
fn destroy_run_children_in_the_run() {
    let mut db = MappingDb::new();
    let (f, g) = (frame(1), frame(2));
    db.add_frame(f, PageSize::Small).unwrap();
    db.add_frame(g, PageSize::Small).unwrap();
    // Page 0: copy 21 of f, derived from copy 20 (page 1); page 2: copy 30 of g, with copy 31 (page 3) of it.
    let m = |fr: FrameId, cap: u64, i: u64| {
        Mapping::new(
            fr,
            CapSlot(cap),
            AsId(1),
            0x10_0000 + i * KIB4,
            PageSize::Small,
            RW,
            CapSlot(500),
        )
    };
    db.clone_run(&[
        (m(f, 20, 1), f.slot),
        (m(f, 21, 0), CapSlot(20)),
        (m(g, 30, 2), g.slot),
        (m(g, 31, 3), CapSlot(30)),
    ])
    .unwrap();
    let mut expect = db.clone();
    assert_eq!(
        destroy_loop(&mut expect, AsId(1), 0x10_0000, 4),
        Err((2, RemoveError::HasChildren))
    );
    assert_eq!(
        db.destroy_run(AsId(1), 0x10_0000, 4),
        Err((2, RemoveError::HasChildren))
    );
    db.check().unwrap();
    let got = db.destroy_run(AsId(1), 0x10_0000, 2).unwrap();
    assert_eq!(got.iter().map(|r| r.cap.0).collect::<Vec<_>>(), [21, 20]);
    assert_eq!(db.copies_of(f).collect::<Vec<_>>(), [f.slot]);
    db.check().unwrap();
}
