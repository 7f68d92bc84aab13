//! The region operations (`source_caps`, `caps_run`, `clone_region`, `destroy_region`) against loops of the
//! single operations: the same outcome, and on a refusal the refused page's index, its error, and a database
//! left as it was; `check()` after each step.

use mapping_db::*;
use proptest::prelude::*;

const KIB4: u64 = 1 << 12;
const MIB2: u64 = 1 << 21;
const GIB: u64 = 1 << 30;
const SPACES: u32 = 3;
const SIZES: [PageSize; 3] = [PageSize::Small, PageSize::Large, PageSize::Huge];
const R: Rights = Rights::READ;
const RW: Rights = Rights::READ.union(Rights::WRITE);
const RWX: Rights = RW.union(Rights::EXECUTE);
/// Slots of the random state (`build`).
const SLOTS: u64 = 96;
/// The source frames' originals.
const FRAMES: std::ops::Range<u64> = 200..280;
/// Clone copies.
const CLONES: u64 = 300;
/// Copies that map some source pages instead of the originals.
const SRC_COPIES: u64 = 500;
/// Copies derived from clone copies.
const KIDS: u64 = 600;

/// Every slot the tests use.
fn slots() -> impl Iterator<Item = CapSlot> {
    (0..SLOTS)
        .chain(FRAMES)
        .chain(CLONES..CLONES + 100)
        .chain(SRC_COPIES..SRC_COPIES + 80)
        .chain(KIDS..KIDS + 10)
        .map(CapSlot)
}

/// A slot: its frame, parent, number of children and mapping.
type CapRow = (CapSlot, Option<FrameId>, Option<CapSlot>, usize, Option<Mapping>);

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
    let caps: Vec<CapRow> = slots()
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

/// A database built by random single operations (frames of every size, copies, mappings), then `len`
/// source pages of `src` from `start` mapped through the originals in `FRAMES` (some through a copy instead,
/// some with more rights, the `flaw` page (if any) left out (`(i, 0)`) or with fewer rights (`(i, 1)`)).
fn build(
    seed: &[(u8, u64, u64, u64)],
    src: u32,
    start: u64,
    len: usize,
    picks: &[u64],
    flaw: Option<(usize, u8)>,
) -> MappingDb {
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
    let start = PageSize::Small.align_down(start);
    for (i, s) in FRAMES.enumerate() {
        let f = FrameId::new(CapSlot(s), 0x10_0000_0000 + s * KIB4);
        db.add_frame(f, PageSize::Small).unwrap();
        if i >= len {
            continue;
        }
        let p = picks[i % picks.len()] / (i as u64 + 1);
        let cap = if p % 5 == 1 {
            db.add_copy(f, CapSlot(SRC_COPIES + i as u64), f.slot).unwrap();
            CapSlot(SRC_COPIES + i as u64)
        } else {
            f.slot
        };
        let rights = match (flaw, p % 4) {
            (Some((at, 1)), _) if at == i => R,
            (_, 0) => RWX,
            _ => RW,
        };
        let vaddr = start + i as u64 * KIB4;
        if flaw != Some((i, 0)) {
            let m = Mapping::new(
                f,
                cap,
                AsId(src),
                vaddr,
                PageSize::Small,
                rights,
                table(src, PageSize::Small, vaddr, None),
            );
            let _ = db.insert(m);
        }
    }
    db.check().unwrap();
    db
}

fn seed() -> impl Strategy<Value = Vec<(u8, u64, u64, u64)>> {
    prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()), 0..120)
}

/// The loop `source_caps` replaces: each page must hold a 4 KiB mapping starting exactly there with the rights.
fn source_loop(
    db: &MappingDb,
    asid: AsId,
    vaddr: u64,
    n: usize,
    rights: Rights,
) -> Result<Vec<Mapping>, (usize, SourceError)> {
    (0..n)
        .map(|i| {
            let va = vaddr + i as u64 * KIB4;
            match db.lookup(asid, va) {
                Some(r) if r.vaddr == va && r.size == PageSize::Small => {
                    if r.rights.contains(rights) {
                        Ok(r)
                    } else {
                        Err((i, SourceError::RightsExceed))
                    }
                }
                _ => Err((i, SourceError::NotMapped)),
            }
        })
        .collect()
}

/// The loop `clone_region` replaces (its documented definition), all or nothing.
fn clone_loop(
    db: &mut MappingDb,
    c: &RegionClone,
    leaf: impl Fn(u64) -> CapSlot,
) -> Result<(), (usize, CloneRegionError)> {
    let srcs = source_loop(db, c.src, c.src_vaddr, c.n, c.rights).map_err(|(i, e)| (i, CloneRegionError::Source(e)))?;
    let before = db.clone();
    for (i, s) in srcs.iter().enumerate() {
        let parent = match c.parent {
            CloneParent::Original => s.frame.slot,
            CloneParent::Source => s.cap,
        };
        let va = c.dst_vaddr + i as u64 * KIB4;
        let m = Mapping::new(
            s.frame,
            c.copy(i),
            c.dst,
            va,
            PageSize::Small,
            c.rights,
            leaf(PageSize::Small.leaf_region(va)),
        );
        let r = db
            .add_copy(s.frame, c.copy(i), parent)
            .map_err(CloneRegionError::Copy)
            .and_then(|()| db.insert(m).map_err(CloneRegionError::Insert));
        if let Err(e) = r {
            *db = before;
            return Err((i, e));
        }
    }
    Ok(())
}

/// The loop `destroy_region` replaces: `destroy_run` (itself `remove_run` then `remove_copy` of the copies),
/// without the records.
fn destroy_loop(db: &mut MappingDb, asid: AsId, vaddr: u64, n: usize) -> Result<(), (usize, RemoveError)> {
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
    Ok(())
}

/// The leaf tables of a clone's destination: proper ones, or (with `pool`) some from a tiny pool.
fn leaf_fn(dst: u32, pool: Option<u64>) -> impl Fn(u64) -> CapSlot {
    move |base| {
        let t = table(dst, PageSize::Small, base, None);
        match pool {
            Some(p) if (base / MIB2 + p).is_multiple_of(3) => table(dst, PageSize::Small, base, Some(p % 2)),
            _ => t,
        }
    }
}

/// Destroys `count` pages from `vaddr` both ways and compares; returns whether it was refused.
fn destroy_both(db: &mut MappingDb, asid: AsId, vaddr: u64, count: usize) -> Result<bool, TestCaseError> {
    let mut expect = db.clone();
    let want = destroy_loop(&mut expect, asid, vaddr, count);
    let before = snapshot(db);
    let caps = db.caps_run(asid, vaddr, count);
    let recs = db.mappings_run(asid, vaddr, count);
    prop_assert_eq!(
        caps,
        recs.map(|v| v.iter().map(|r| (r.cap, r.cap != r.frame.slot)).collect::<Vec<_>>())
    );
    let got = db.destroy_region(asid, vaddr, count);
    prop_assert_eq!(got, want);
    db.check().unwrap();
    prop_assert_eq!(snapshot(db), snapshot(&expect));
    if got.is_err() {
        prop_assert_eq!(snapshot(db), before);
    }
    Ok(got.is_err())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// `source_caps` and `caps_run` against the loop of lookups.
    #[test]
    fn lookups_are_the_loop(
        seed in seed(),
        src in 0..SPACES,
        start in 0..4 * GIB,
        len in 0..80usize,
        picks in prop::collection::vec(any::<u64>(), 1..8),
        flaw in prop_oneof![1 => Just(None), 1 => (0..80usize, 0..2u8).prop_map(Some)],
        skip in 0..4usize,
        n in prop_oneof![2 => Just(None), 1 => (0..90usize).prop_map(Some)],
        rights in prop_oneof![Just(Rights::empty()), Just(R), Just(RW), Just(RWX)],
    ) {
        let db = build(&seed, src, start, len, &picks, flaw);
        let vaddr = PageSize::Small.align_down(start) + skip as u64 * KIB4 + if skip == 3 { 5 } else { 0 };
        let n = n.unwrap_or(len.saturating_sub(skip));
        let before = snapshot(&db);
        let want = source_loop(&db, AsId(src), vaddr, n, rights).map(|v| v.iter().map(|r| r.cap).collect());
        prop_assert_eq!(db.source_caps(AsId(src), vaddr, n, rights), want);
        let want = db
            .mappings_run(AsId(src), vaddr, n)
            .map(|v| v.iter().map(|r| (r.cap, r.cap != r.frame.slot)).collect::<Vec<_>>());
        prop_assert_eq!(db.caps_run(AsId(src), vaddr, n), want);
        prop_assert_eq!(snapshot(&db), before);
    }

    /// `clone_region` against its loop on random states (sources missing or with fewer rights, destinations
    /// in the way, copy slots in use, larger pages, shared or misplaced tables, unaligned addresses), then
    /// destroys of parts of the clone and of the source against theirs.
    #[test]
    fn clone_region_is_the_loop(
        seed in seed(),
        src in 0..SPACES,
        dst in 0..SPACES,
        start in prop_oneof![3 => 4 * GIB..5 * GIB, 1 => 0..4 * GIB],
        len in 0..80usize,
        picks in prop::collection::vec(any::<u64>(), 1..8),
        flaw in prop_oneof![3 => Just(None), 1 => (0..80usize, 0..2u8).prop_map(Some)],
        skip in 0..3usize,
        n in prop_oneof![3 => Just(None), 1 => (0..90usize).prop_map(Some)],
        to in prop_oneof![3 => 5 * GIB..6 * GIB, 1 => 0..4 * GIB, 1 => (0..4 * GIB).prop_map(|x| x % (8 * MIB2) + GIB), 1 => Just(u64::MAX)],
        odd in 0..16u64,
        first in prop_oneof![6 => Just(CLONES), 1 => 0..SLOTS + 40, 1 => Just(FRAMES.start + 10)],
        parent in prop_oneof![Just(CloneParent::Original), Just(CloneParent::Source)],
        rights in prop_oneof![1 => Just(R), 4 => Just(RW), 1 => Just(RWX)],
        pool in prop_oneof![4 => Just(None), 1 => (0..3u64).prop_map(Some)],
        kids in prop::collection::vec(0..90usize, 0..3),
        steps in prop::collection::vec((0..90usize, prop_oneof![2 => Just(None), 1 => (0..90usize).prop_map(Some)], 0..6u64), 1..4),
    ) {
        let mut db = build(&seed, src, start, len, &picks, flaw);
        let src_vaddr = PageSize::Small.align_down(start) + skip as u64 * KIB4;
        let n = n.unwrap_or(len.saturating_sub(skip));
        // The destination: anywhere (over other pages, large pages), just after the source, or the source.
        let dst_vaddr = match to {
            u64::MAX => src_vaddr + if src == dst { n as u64 * KIB4 } else { 0 },
            x => PageSize::Small.align_down(x),
        } + if odd == 0 { 8 } else { 0 };
        let c = RegionClone {
            src: AsId(src),
            src_vaddr,
            dst: AsId(dst),
            dst_vaddr,
            n,
            first_copy: CapSlot(first),
            parent,
            rights,
        };
        let leaf = leaf_fn(dst, pool);
        let mut expect = db.clone();
        let want = clone_loop(&mut expect, &c, &leaf);
        let before = snapshot(&db);
        let got = db.clone_region(&c, &leaf);
        prop_assert_eq!(got, want);
        db.check().unwrap();
        prop_assert_eq!(snapshot(&db), snapshot(&expect));
        if got.is_err() {
            prop_assert_eq!(snapshot(&db), before);
            return Ok(());
        }
        // Copies derived from some clone copies: those cannot be forgotten while they exist.
        for (k, &at) in kids.iter().enumerate() {
            if at < n {
                let copy = c.copy(at);
                if let Some(f) = db.frame_of_cap(copy) {
                    let _ = db.add_copy(f, CapSlot(KIDS + k as u64), copy);
                }
            }
        }
        db.check().unwrap();
        for &(skip, count, which) in &steps {
            // Part of the clone (or of the source), from a page of it or just before it, maybe unaligned.
            let (asid, base) = if which == 5 { (src, src_vaddr) } else { (dst, dst_vaddr) };
            let vaddr = (base + (skip % (n + 2)) as u64 * KIB4).saturating_sub(if which == 0 { KIB4 } else { 0 })
                + if which == 1 { 5 } else { 0 };
            let count = count.unwrap_or(n.saturating_sub(skip % (n + 2)));
            destroy_both(&mut db, AsId(asid), vaddr, count)?;
        }
    }
}

fn frame(i: u64) -> FrameId {
    FrameId::new(CapSlot(i), 0x1_0000_0000 + i * KIB4)
}

/// 1024 pages over two tables: cloned in one call (the clones found by address), refusals at the right page
/// with nothing changed, then destroyed in parts.
#[test]
fn clone_and_destroy_over_two_leaves() {
    let mut db = MappingDb::new();
    let mut originals = Vec::new();
    for i in 0..1024 {
        let f = frame(i);
        db.add_frame(f, PageSize::Small).unwrap();
        let va = 0x4000_0000 + i * KIB4;
        let rights = if i == 900 { R } else { RW };
        originals.push(Mapping::new(
            f,
            f.slot,
            AsId(1),
            va,
            PageSize::Small,
            rights,
            CapSlot(50 + (i >> 9)),
        ));
    }
    db.insert_run(&originals).unwrap();
    let leaf = |base: u64| CapSlot(60 + ((base - 0x8000_0000) >> 21));
    let c = RegionClone {
        src: AsId(1),
        src_vaddr: 0x4000_0000,
        dst: AsId(2),
        dst_vaddr: 0x8000_0000,
        n: 1024,
        first_copy: CapSlot(10_000),
        parent: CloneParent::Original,
        rights: RW,
    };
    let snap = snapshot(&db);
    // Page 900 has read rights only; a page past the source is not mapped.
    assert_eq!(
        db.source_caps(AsId(1), 0x4000_0000, 1024, RW),
        Err((900, SourceError::RightsExceed))
    );
    assert_eq!(
        db.clone_region(&c, leaf),
        Err((900, CloneRegionError::Source(SourceError::RightsExceed)))
    );
    let c = RegionClone { rights: R, ..c };
    assert_eq!(
        db.clone_region(&RegionClone { n: 1025, ..c }, leaf),
        Err((1024, CloneRegionError::Source(SourceError::NotMapped)))
    );
    // A copy slot in use, a destination page in the way.
    db.add_copy(frame(5), CapSlot(10_700), frame(5).slot).unwrap();
    assert_eq!(
        db.clone_region(&c, leaf),
        Err((700, CloneRegionError::Copy(AddCopyError::SlotInUse)))
    );
    db.remove_copy(CapSlot(10_700)).unwrap();
    let extra = Mapping::new(
        frame(5),
        frame(5).slot,
        AsId(2),
        0x8000_0000 + 600 * KIB4,
        PageSize::Small,
        RW,
        CapSlot(61),
    );
    db.remove_by_cap(frame(5).slot).unwrap();
    db.insert(extra).unwrap();
    assert_eq!(
        db.clone_region(
            &RegionClone {
                src_vaddr: 0x4000_0000 + 6 * KIB4,
                n: 1000,
                ..c
            },
            leaf
        ),
        Err((600, CloneRegionError::Insert(InsertError::PteClaimed(frame(5).slot))))
    );
    db.remove_by_cap(frame(5).slot).unwrap();
    db.insert(originals[5]).unwrap();
    db.check().unwrap();
    assert_eq!(snapshot(&db), snap);
    // The clone.
    let srcs = db.source_caps(AsId(1), 0x4000_0000, 1024, R).unwrap();
    assert_eq!(srcs, (0..1024).map(CapSlot).collect::<Vec<_>>());
    db.clone_region(&c, leaf).unwrap();
    db.check().unwrap();
    let got = db.mappings_run(AsId(2), 0x8000_0000, 1024).unwrap();
    for (i, m) in got.iter().enumerate() {
        let i = i as u64;
        let want = Mapping::new(
            frame(i),
            CapSlot(10_000 + i),
            AsId(2),
            0x8000_0000 + i * KIB4,
            PageSize::Small,
            R,
            CapSlot(60 + (i >> 9)),
        );
        assert_eq!(*m, want);
        assert_eq!(db.parent_of(m.cap), Some(frame(i).slot));
    }
    assert_eq!((db.len(), db.cap_count(), db.leaf_used(got[0].leaf)), (2048, 2048, 512));
    // Destroy: the lookup, then the run in two parts; the originals stay.
    let caps = db.caps_run(AsId(2), 0x8000_0000, 1024).unwrap();
    assert!(caps
        .iter()
        .enumerate()
        .all(|(i, &(s, copy))| s == CapSlot(10_000 + i as u64) && copy));
    assert_eq!(
        db.caps_run(AsId(1), 0x4000_0000, 2),
        Ok(vec![(CapSlot(0), false), (CapSlot(1), false)])
    );
    assert_eq!(
        db.destroy_region(AsId(2), 0x8000_0000, 1025),
        Err((1024, RemoveError::NotMapped))
    );
    db.destroy_region(AsId(2), 0x8000_0000 + 100 * KIB4, 700).unwrap();
    db.check().unwrap();
    db.destroy_region(AsId(2), 0x8000_0000, 100).unwrap();
    db.destroy_region(AsId(2), 0x8000_0000 + 800 * KIB4, 224).unwrap();
    db.check().unwrap();
    assert_eq!((db.len(), db.cap_count(), db.space_len(AsId(2))), (1024, 1024, 0));
    db.destroy_region(AsId(1), 0x4000_0000, 1024).unwrap();
    db.check().unwrap();
    assert_eq!((db.len(), db.cap_count(), db.frame_count()), (0, 1024, 1024));
    assert_eq!(db.destroy_region(AsId(1), 0x4000_0000, 0), Ok(()));
}

/// Copies derived from the source's caps (`CloneParent::Source`), a copy with children refuses the destroy
/// at its page, and a table that already covers another region refuses the clone at the region's first page.
#[test]
fn parents_children_and_tables() {
    let mut db = MappingDb::new();
    for i in 0..4 {
        db.add_frame(frame(i), PageSize::Small).unwrap();
        db.add_copy(frame(i), CapSlot(20 + i), frame(i).slot).unwrap();
        let m = Mapping::new(
            frame(i),
            CapSlot(20 + i),
            AsId(1),
            0x1000 * (i + 1),
            PageSize::Small,
            RWX,
            CapSlot(500),
        );
        db.insert(m).unwrap();
    }
    let c = RegionClone {
        src: AsId(1),
        src_vaddr: 0x1000,
        dst: AsId(1),
        dst_vaddr: 0x20_0000 - 2 * KIB4,
        n: 4,
        first_copy: CapSlot(30),
        parent: CloneParent::Source,
        rights: RWX,
    };
    // The second region's table is the first region's.
    assert_eq!(
        db.clone_region(&c, |_| CapSlot(501)),
        Err((2, CloneRegionError::Insert(InsertError::LeafRegionMismatch)))
    );
    assert_eq!(
        db.clone_region(
            &RegionClone {
                dst_vaddr: 0x20_0000,
                ..c
            },
            |_| CapSlot(500)
        ),
        Err((0, CloneRegionError::Insert(InsertError::LeafRegionMismatch)))
    );
    assert_eq!(db.cap_count(), 8);
    db.clone_region(&c, |base| CapSlot(501 + (base >> 21))).unwrap();
    db.check().unwrap();
    assert_eq!(db.parent_of(CapSlot(32)), Some(CapSlot(22)));
    assert_eq!(db.children_of(CapSlot(22)), 1);
    // Page 1 of the clone has a child: its destroy is refused there, and the fast path is not taken.
    db.add_copy(frame(1), CapSlot(40), CapSlot(31)).unwrap();
    let snap = snapshot(&db);
    assert_eq!(
        db.destroy_region(AsId(1), c.dst_vaddr, 4),
        Err((1, RemoveError::HasChildren))
    );
    assert_eq!(snapshot(&db), snap);
    db.remove_copy(CapSlot(40)).unwrap();
    db.destroy_region(AsId(1), c.dst_vaddr, 4).unwrap();
    db.check().unwrap();
    assert_eq!(db.children_of(CapSlot(22)), 0);
    assert_eq!(db.cap_count(), 8);
}

/// Clones both ways (`clone_region` and its loop) and compares, `check()` included.
fn clone_both(db: &mut MappingDb, c: &RegionClone) -> Result<(), (usize, CloneRegionError)> {
    let leaf = leaf_fn(c.dst.0, None);
    let mut expect = db.clone();
    let want = clone_loop(&mut expect, c, &leaf);
    let got = db.clone_region(c, &leaf);
    assert_eq!(got, want);
    db.check().unwrap();
    assert_eq!(snapshot(db), snapshot(&expect));
    got
}

/// Clones of clones (copies with children elsewhere in the database: each destroy reads the run's nodes),
/// clones that reuse some freed capability positions and take new ones, and destroys over two tables once
/// no copy has children left; each against the loops.
#[test]
fn copies_of_copies_and_reused_positions() {
    let mut db = MappingDb::new();
    let a = 0x20_0000 - 40 * KIB4;
    let originals: Vec<Mapping> = FRAMES
        .enumerate()
        .map(|(i, s)| {
            let f = FrameId::new(CapSlot(s), 0x1_0000_0000 + s * KIB4);
            db.add_frame(f, PageSize::Small).unwrap();
            let va = a + i as u64 * KIB4;
            Mapping::new(
                f,
                f.slot,
                AsId(1),
                va,
                PageSize::Small,
                RWX,
                table(1, PageSize::Small, va, None),
            )
        })
        .collect();
    db.insert_run(&originals).unwrap();
    let b = 0x4000_0000 - 40 * KIB4;
    let c = RegionClone {
        src: AsId(1),
        src_vaddr: a,
        dst: AsId(2),
        dst_vaddr: b,
        n: 80,
        first_copy: CapSlot(CLONES),
        parent: CloneParent::Source,
        rights: RW,
    };
    clone_both(&mut db, &c).unwrap();
    // Copies of 10 of those copies.
    let kids = RegionClone {
        src: AsId(2),
        src_vaddr: b + 5 * KIB4,
        dst: AsId(3),
        dst_vaddr: 0x8000_0000,
        n: 10,
        first_copy: CapSlot(KIDS),
        parent: CloneParent::Source,
        rights: R,
    };
    clone_both(&mut db, &kids).unwrap();
    assert_eq!(db.parent_of(CapSlot(KIDS)), Some(CapSlot(CLONES + 5)));
    // Copies without children, while others have some; then a run with children is refused where they are.
    assert!(!destroy_both(&mut db, AsId(2), b + 30 * KIB4, 20).unwrap());
    assert!(destroy_both(&mut db, AsId(2), b, 30).unwrap());
    assert_eq!(db.destroy_region(AsId(2), b, 30), Err((5, RemoveError::HasChildren)));
    assert!(!destroy_both(&mut db, AsId(3), 0x8000_0000, 10).unwrap());
    // 30 positions free: a clone of 20 reuses 20, the next one of 20 reuses 10 and takes 10 new ones.
    let again = RegionClone {
        src_vaddr: a + 30 * KIB4,
        dst_vaddr: b + 30 * KIB4,
        n: 20,
        first_copy: CapSlot(CLONES + 30),
        ..c
    };
    clone_both(&mut db, &again).unwrap();
    let other = RegionClone {
        dst: AsId(3),
        dst_vaddr: 0x8000_0000 - 10 * KIB4,
        first_copy: CapSlot(40),
        parent: CloneParent::Original,
        ..again
    };
    clone_both(&mut db, &other).unwrap();
    // Everything the clones made, over two tables each.
    assert!(!destroy_both(&mut db, AsId(2), b, 80).unwrap());
    assert!(!destroy_both(&mut db, AsId(3), 0x8000_0000 - 10 * KIB4, 20).unwrap());
    assert_eq!((db.len(), db.cap_count()), (80, 80));
}

/// Steady-state cycles, as a page fault handler makes them: 1 to 3 pages cloned from a few places near a
/// table's and a chunk's boundaries and destroyed again (whole, or a page at a time), so the destination's
/// leaf tables, spaces, span counters and index chunks are emptied and taken back each round (also by
/// another leaf table or region, or by a 2 MiB page); each step against the loops, `check()` after each.
#[test]
fn steady_state_cycles() {
    let mut db = MappingDb::new();
    let src = 0x20_0000 - 8 * KIB4;
    let originals: Vec<Mapping> = FRAMES
        .take(16)
        .enumerate()
        .map(|(i, s)| {
            let f = FrameId::new(CapSlot(s), 0x1_0000_0000 + s * KIB4);
            db.add_frame(f, PageSize::Small).unwrap();
            let va = src + i as u64 * KIB4;
            Mapping::new(
                f,
                f.slot,
                AsId(1),
                va,
                PageSize::Small,
                RW,
                table(1, PageSize::Small, va, None),
            )
        })
        .collect();
    db.insert_run(&originals).unwrap();
    let big = FrameId::new(CapSlot(0x7000), 0x4000_0000);
    db.add_frame(big, PageSize::Large).unwrap();
    // Destinations: inside a chunk, across a chunk, across a 2 MiB table, and far away.
    let dsts = [0x40_0000, 0x40_0000 - KIB4, 0x3f_f000 - KIB4, 0x8000_0000];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    for round in 0..300 {
        let n = 1 + next(3) as usize;
        let dst = dsts[next(dsts.len() as u64) as usize];
        let asid = AsId(2 + next(2) as u32);
        let c = RegionClone {
            src: AsId(1),
            src_vaddr: src + next(8) * KIB4,
            dst: asid,
            dst_vaddr: dst,
            n,
            first_copy: CapSlot(CLONES + next(4) * 16),
            parent: if next(2) == 0 {
                CloneParent::Original
            } else {
                CloneParent::Source
            },
            rights: RW,
        };
        if next(3) == 0 {
            // One leaf table for every region (an idle table taken back for another region).
            let leaf = |_: u64| CapSlot(0x9000 + u64::from(asid.0));
            let mut expect = db.clone();
            let want = clone_loop(&mut expect, &c, leaf);
            let got = db.clone_region(&c, leaf);
            assert_eq!(got, want);
            db.check().unwrap();
            assert_eq!(snapshot(&db), snapshot(&expect));
            if got.is_err() {
                continue;
            }
        } else {
            clone_both(&mut db, &c).unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        }
        match next(4) {
            // A page at a time, last first.
            0 => {
                for i in (0..n).rev() {
                    assert!(!destroy_both(&mut db, asid, dst + i as u64 * KIB4, 1).unwrap());
                }
            }
            // Through the single operations.
            1 => {
                for i in 0..n {
                    let r = db.remove_by_vaddr(asid, dst + i as u64 * KIB4).unwrap();
                    db.remove_copy(r.cap).unwrap();
                    db.check().unwrap();
                }
            }
            _ => assert!(!destroy_both(&mut db, asid, dst, n).unwrap()),
        }
        assert_eq!(db.space_len(asid), 0);
        assert_eq!(db.leaves().filter(|l| l.asid == asid).count(), 0);
        // Now and then a 2 MiB page where the 4 KiB pages were (their span counters are empty), and gone.
        if next(8) == 0 {
            let va = PageSize::Large.align_down(dst);
            let m = Mapping::new(
                big,
                big.slot,
                asid,
                va,
                PageSize::Large,
                RW,
                table(asid.0, PageSize::Large, va, None),
            );
            db.insert(m).unwrap();
            db.check().unwrap();
            // A clone over it is refused, as by the loop.
            let over = RegionClone { dst_vaddr: va, ..c };
            assert!(clone_both(&mut db, &over).is_err());
            assert_eq!(db.remove_by_cap(big.slot), Ok(m));
            db.check().unwrap();
        }
    }
    assert_eq!(db.len(), 16);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// One-page clones and destroys (the fast paths of `clone_region` and `destroy_region` for `n == 1`)
    /// against their loops, step after step on random states: unmapped sources, rights exceeded, occupied
    /// destinations, copy slots already known, larger pages around, sources that are copies, copies with
    /// children, unaligned addresses, refused leaf tables; `check()` after each step and nothing changed by a
    /// refusal.
    #[test]
    fn one_page_is_the_loop(
        seed in seed(),
        src in 0..SPACES,
        start in prop_oneof![3 => 4 * GIB..5 * GIB, 1 => 0..4 * GIB],
        len in 0..40usize,
        picks in prop::collection::vec(any::<u64>(), 1..8),
        flaw in prop_oneof![1 => Just(None), 1 => (0..40usize, 0..2u8).prop_map(Some)],
        ops in prop::collection::vec((0..8u8, any::<u64>(), any::<u64>(), any::<u64>()), 1..24),
    ) {
        let mut db = build(&seed, src, start, len, &picks, flaw);
        let base = PageSize::Small.align_down(start);
        // Destinations used so far, to destroy them again.
        let mut cloned: Vec<(u32, u64)> = Vec::new();
        for (k, &(kind, a, b, c)) in ops.iter().enumerate() {
            match kind {
                0..=3 => {
                    let src_vaddr = base + (a % (len as u64 + 2)) * KIB4 + if b % 29 == 0 { 8 } else { 0 };
                    let dst = (b % u64::from(SPACES)) as u32;
                    let dst_vaddr = match c % 6 {
                        // Anywhere among the random state's pages (large ones included).
                        0 => PageSize::Small.align_down((c >> 8) % (4 * GIB)),
                        1 => PageSize::Small.align_down((c >> 8) % (8 * MIB2) + GIB),
                        // Over the source pages.
                        2 => base + ((c >> 8) % (len as u64 + 2)) * KIB4,
                        // Near the top of the address space.
                        3 => USER_VADDR_END - KIB4 * (1 + (c >> 8) % 2),
                        _ => 5 * GIB + ((c >> 8) % 1024) * KIB4,
                    };
                    let first = match (c >> 4) % 8 {
                        0 => (c >> 12) % SLOTS,
                        1 => FRAMES.start + (c >> 12) % 80,
                        2 => u64::MAX,
                        _ => CLONES + (c >> 12) % 100,
                    };
                    let cl = RegionClone {
                        src: AsId(src),
                        src_vaddr,
                        dst: AsId(dst),
                        dst_vaddr,
                        n: 1,
                        first_copy: CapSlot(first),
                        parent: if a % 3 == 0 { CloneParent::Source } else { CloneParent::Original },
                        rights: [R, RW, RW, RWX][((a >> 8) % 4) as usize],
                    };
                    let leaf = leaf_fn(dst, if b % 5 == 0 { Some((b >> 8) % 3) } else { None });
                    // The one-page lookup against its loop.
                    prop_assert_eq!(
                        db.source_caps(cl.src, cl.src_vaddr, 1, cl.rights),
                        source_loop(&db, cl.src, cl.src_vaddr, 1, cl.rights)
                            .map(|v| v.iter().map(|r| r.cap).collect::<Vec<_>>())
                    );
                    let mut expect = db.clone();
                    let want = clone_loop(&mut expect, &cl, &leaf);
                    let before = snapshot(&db);
                    let got = db.clone_region(&cl, &leaf);
                    prop_assert_eq!(got, want);
                    db.check().unwrap();
                    prop_assert_eq!(snapshot(&db), snapshot(&expect));
                    if got.is_err() {
                        prop_assert_eq!(snapshot(&db), before);
                    } else {
                        cloned.push((dst, dst_vaddr));
                    }
                }
                4 | 5 => {
                    // A clone's page, a source page or any page (maybe unaligned).
                    let (asid, vaddr) = match (a % 3, cloned.is_empty()) {
                        (0, false) => cloned[(b as usize) % cloned.len()],
                        (1, _) => (src, base + (b % (len as u64 + 2)) * KIB4),
                        _ => ((b % u64::from(SPACES)) as u32, PageSize::Small.align_down(c % (6 * GIB))),
                    };
                    let vaddr = vaddr + if c % 13 == 0 { 5 } else { 0 };
                    destroy_both(&mut db, AsId(asid), vaddr, 1)?;
                }
                _ => {
                    // A copy derived from a clone's copy or from a source capability: a copy with children.
                    if let Some(&(asid, vaddr)) = cloned.get((a as usize) % cloned.len().max(1)) {
                        if let Some(m) = db.lookup(AsId(asid), vaddr) {
                            let _ = db.add_copy(m.frame, CapSlot(KIDS + (k % 10) as u64), m.cap);
                        }
                    }
                    db.check().unwrap();
                }
            }
        }
    }
}
