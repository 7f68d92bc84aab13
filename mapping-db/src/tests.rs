//! Unit tests: every operation, every refusal (with the state unchanged after it), and the invariant check
//! catching corrupted state.

use std::vec::Vec;

use crate::*;

const RW: Rights = Rights::READ.union(Rights::WRITE);
const A: AsId = AsId(1);
const B: AsId = AsId(2);
const C: AsId = AsId(3);
const GIB: u64 = 1 << 30;
const MIB2: u64 = 1 << 21;
const KIB4: u64 = 1 << 12;

/// Frame `n`: original in slot `n`, at `n` GiB (aligned for every size).
fn frame(n: u64) -> FrameId {
    FrameId::new(CapSlot(n), n * GIB)
}

/// Page-table-ish slot for table `n`.
fn table(n: u64) -> CapSlot {
    CapSlot(1000 + n)
}

fn leaf_of(asid: AsId, t: u64, size: PageSize) -> LeafTable {
    LeafTable {
        asid,
        table: table(t),
        level: size.level(),
    }
}

/// A database with frames 1 (4 KiB), 2 (2 MiB), 3 (1 GiB), and copies 11, 12, 13 of frame 1 (12 derived from
/// 11), 21, 22 of frame 2, 31 of frame 3.
fn fixture() -> MappingDb {
    let mut db = MappingDb::new();
    db.add_frame(frame(1), PageSize::Small).unwrap();
    db.add_frame(frame(2), PageSize::Large).unwrap();
    db.add_frame(frame(3), PageSize::Huge).unwrap();
    db.add_copy(frame(1), CapSlot(11), CapSlot(1)).unwrap();
    db.add_copy(frame(1), CapSlot(12), CapSlot(11)).unwrap();
    db.add_copy(frame(1), CapSlot(13), CapSlot(1)).unwrap();
    db.add_copy(frame(2), CapSlot(21), CapSlot(2)).unwrap();
    db.add_copy(frame(2), CapSlot(22), CapSlot(2)).unwrap();
    db.add_copy(frame(3), CapSlot(31), CapSlot(3)).unwrap();
    db.check().unwrap();
    db
}

fn m(f: u64, cap: u64, asid: AsId, vaddr: u64, size: PageSize, t: u64) -> Mapping {
    Mapping::new(frame(f), CapSlot(cap), asid, vaddr, size, RW, table(t))
}

type CapRow = (CapSlot, FrameId, Option<CapSlot>, usize, Option<Mapping>);
type FrameRow = (FrameId, Option<PageSize>, Vec<CapSlot>, Vec<CapSlot>);

/// Everything observable, in a canonical order.
#[derive(PartialEq, Eq, Debug)]
struct Snapshot {
    caps: Vec<CapRow>,
    frames: Vec<FrameRow>,
    leaves: Vec<(LeafTable, Vec<Mapping>)>,
    spaces: Vec<(AsId, Vec<CapSlot>)>,
    len: usize,
}

fn snapshot(db: &MappingDb) -> Snapshot {
    let mut caps: Vec<CapRow> = db
        .caps
        .keys()
        .map(|&s| {
            (
                s,
                db.frame_of_cap(s).unwrap(),
                db.parent_of(s),
                db.children_of(s),
                db.mapping_of_cap(s),
            )
        })
        .collect();
    caps.sort_by_key(|r| r.0);
    let mut frames: Vec<_> = db
        .frames
        .keys()
        .map(|&orig| {
            let f = db.frame_id(orig);
            let mut copies: Vec<_> = db.copies_of(f).collect();
            copies.sort();
            let mut maps: Vec<_> = db.mappings_of_frame(f).map(|m| m.cap).collect();
            maps.sort();
            (f, db.frame_size(f), copies, maps)
        })
        .collect();
    frames.sort_by_key(|r| r.0);
    let mut leaves: Vec<_> = db.leaves().map(|l| (l, db.leaf_entries(l).collect())).collect();
    leaves.sort_by_key(|r| r.0);
    let mut spaces: Vec<_> = db
        .spaces
        .keys()
        .map(|&a| {
            let mut v: Vec<_> = db.mappings_in(a).map(|m| m.cap).collect();
            v.sort();
            (a, v)
        })
        .collect();
    spaces.sort_by_key(|r| r.0);
    Snapshot {
        caps,
        frames,
        leaves,
        spaces,
        len: db.len(),
    }
}

/// Runs `$op`, asserts it returned `$err`, and that nothing changed.
macro_rules! refused {
    ($db:ident . $($op:tt)*) => {{
        let before = snapshot(&$db);
        let r = $db.$($op)*;
        assert_eq!(snapshot(&$db), before, "state changed by a refused operation");
        $db.check().unwrap();
        r.unwrap_err()
    }};
}

#[test]
fn page_sizes() {
    assert_eq!(PageSize::ALL.map(PageSize::bits), [12, 21, 30]);
    assert_eq!(PageSize::ALL.map(PageSize::bytes), [KIB4, MIB2, GIB]);
    assert_eq!(PageSize::Large.align_down(0x5f_ffff), 0x40_0000);
    assert!(PageSize::Small.is_aligned(0x3000) && !PageSize::Small.is_aligned(0x3008));
    assert_eq!(PageSize::Small.entry_index(0x0020_3000), 3);
    assert_eq!(PageSize::Large.entry_index(GIB + 5 * MIB2), 5);
    assert_eq!(PageSize::Huge.entry_index(7 * GIB), 7);
    assert_eq!(PageSize::Small.leaf_region(0x0020_3000), 0x0020_0000);
    assert_eq!(PageSize::Large.leaf_region(GIB + 5 * MIB2), GIB);
    assert_eq!(PageSize::Huge.leaf_region(7 * GIB), 0);
    for s in PageSize::ALL {
        assert_eq!(s.level().frame_size(), s);
    }
    let r = m(1, 11, A, 0x5000, PageSize::Small, 0);
    assert_eq!(r.leaf, leaf_of(A, 0, PageSize::Small));
    assert_eq!(r.index, 5);
    assert!(r.contains(0x5fff) && !r.contains(0x6000) && !r.contains(0x4fff));
    assert_eq!(r.translate(0x5123), Some(GIB + 0x123));
    assert_eq!(r.translate(0x6000), None);
}

#[test]
fn frames_and_copies() {
    let mut db = fixture();
    assert_eq!(db.frame_count(), 3);
    assert_eq!(db.cap_count(), 9);
    let mut copies: Vec<_> = db.copies_of(frame(1)).collect();
    copies.sort();
    assert_eq!(copies, [CapSlot(1), CapSlot(11), CapSlot(12), CapSlot(13)]);
    assert_eq!(db.copies_of(frame(9)).count(), 0);
    assert_eq!(db.frame_of_cap(CapSlot(12)), Some(frame(1)));
    assert_eq!(db.frame_of_cap(CapSlot(99)), None);
    assert_eq!(db.parent_of(CapSlot(12)), Some(CapSlot(11)));
    assert_eq!(db.parent_of(CapSlot(1)), None);
    assert_eq!(db.children_of(CapSlot(1)), 2);
    assert_eq!(db.children_of(CapSlot(11)), 1);
    assert_eq!(db.frame_size(frame(2)), Some(PageSize::Large));

    // Removing a copy in the middle of the list keeps the positions right.
    db.remove_copy(CapSlot(12)).unwrap();
    db.check().unwrap();
    db.remove_copy(CapSlot(11)).unwrap();
    db.check().unwrap();
    assert_eq!(db.children_of(CapSlot(1)), 1);
    let mut copies: Vec<_> = db.copies_of(frame(1)).collect();
    copies.sort();
    assert_eq!(copies, [CapSlot(1), CapSlot(13)]);
    db.remove_copy(CapSlot(13)).unwrap();
    db.remove_frame(frame(1)).unwrap();
    db.check().unwrap();
    assert_eq!(db.frame_count(), 2);
    assert_eq!(db.frame_of_cap(CapSlot(1)), None);
    // The slot can be reused afterwards.
    db.add_frame(FrameId::new(CapSlot(1), 0x7000), PageSize::Small).unwrap();
    db.check().unwrap();
}

#[test]
fn frame_and_copy_refusals() {
    let mut db = fixture();
    assert_eq!(
        refused!(db.add_frame(FrameId::new(CapSlot(11), 0), PageSize::Small)),
        AddFrameError::SlotInUse
    );
    assert_eq!(
        refused!(db.add_frame(frame(1), PageSize::Small)),
        AddFrameError::SlotInUse
    );
    assert_eq!(
        refused!(db.add_frame(FrameId::new(CapSlot(4), KIB4), PageSize::Large)),
        AddFrameError::Misaligned
    );

    assert_eq!(
        refused!(db.add_copy(frame(9), CapSlot(40), CapSlot(1))),
        AddCopyError::UnknownFrame
    );
    assert_eq!(
        refused!(db.add_copy(frame(1), CapSlot(21), CapSlot(1))),
        AddCopyError::SlotInUse
    );
    assert_eq!(
        refused!(db.add_copy(frame(1), CapSlot(40), CapSlot(99))),
        AddCopyError::UnknownParent
    );
    assert_eq!(
        refused!(db.add_copy(frame(1), CapSlot(40), CapSlot(21))),
        AddCopyError::ParentOfOtherFrame
    );

    db.insert(m(1, 13, A, 0, PageSize::Small, 0)).unwrap();
    assert_eq!(refused!(db.remove_copy(CapSlot(99))), RemoveCopyError::UnknownCap);
    assert_eq!(refused!(db.remove_copy(CapSlot(1))), RemoveCopyError::IsOriginal);
    assert_eq!(refused!(db.remove_copy(CapSlot(13))), RemoveCopyError::Mapped);
    assert_eq!(refused!(db.remove_copy(CapSlot(11))), RemoveCopyError::HasChildren);

    assert_eq!(refused!(db.remove_frame(frame(9))), RemoveFrameError::UnknownFrame);
    assert_eq!(refused!(db.remove_frame(frame(1))), RemoveFrameError::HasCopies);
    db.insert(m(3, 3, A, GIB, PageSize::Huge, 1)).unwrap();
    db.remove_copy(CapSlot(31)).unwrap();
    assert_eq!(refused!(db.remove_frame(frame(3))), RemoveFrameError::Mapped);
    db.remove_by_cap(CapSlot(3)).unwrap();
    db.remove_frame(frame(3)).unwrap();
    db.check().unwrap();
}

#[test]
fn copy_and_map_into_three_spaces() {
    let mut db = fixture();
    let ma = m(1, 11, A, 0x40_0000, PageSize::Small, 0);
    let mb = m(1, 12, B, 0x7000, PageSize::Small, 1);
    let mc = m(1, 13, C, 0x7000, PageSize::Small, 2);
    for r in [ma, mb, mc] {
        db.insert(r).unwrap();
        db.check().unwrap();
    }
    assert_eq!(db.len(), 3);
    let mut who: Vec<_> = db.mappings_of_frame(frame(1)).collect();
    who.sort_by_key(|r| r.cap);
    assert_eq!(who, [ma, mb, mc]);
    assert_eq!(db.mappings_of_frame(frame(2)).count(), 0);
    assert_eq!(db.mapping_of_cap(CapSlot(12)), Some(mb));
    assert_eq!(db.mapping_of_cap(CapSlot(1)), None);
    assert_eq!(db.mapping_of_cap(CapSlot(99)), None);
    assert_eq!(db.lookup(A, 0x40_0abc), Some(ma));
    assert_eq!(db.lookup(A, 0x40_1000), None);
    assert_eq!(db.lookup(B, 0x7fff), Some(mb));
    assert_eq!(db.lookup(A, 0x7000), None);
    assert_eq!(db.mappings_in(A).collect::<Vec<_>>(), [ma]);
    assert_eq!(db.space_len(C), 1);
    assert_eq!(db.leaf_used(ma.leaf), 1);
    assert_eq!(db.leaf_entries(mb.leaf).collect::<Vec<_>>(), [mb]);
    assert_eq!(db.mapping_at(mc.leaf, 7), Some(mc));
    assert_eq!(db.mapping_at(mc.leaf, 8), None);
    assert_eq!(db.mapping_at(mc.leaf, 600), None);
}

#[test]
fn lookup_every_size() {
    let mut db = fixture();
    let small = m(1, 11, A, 3 * GIB + 0x3000, PageSize::Small, 0);
    let large = m(2, 21, A, 3 * GIB + 4 * MIB2, PageSize::Large, 1);
    let huge = m(3, 31, A, 5 * GIB, PageSize::Huge, 2);
    for r in [small, large, huge] {
        db.insert(r).unwrap();
    }
    db.check().unwrap();
    for r in [small, large, huge] {
        for off in [0, 1, 0xfff, r.size.bytes() / 2, r.size.bytes() - 1] {
            assert_eq!(db.lookup(A, r.vaddr + off), Some(r), "{r:?} + {off:#x}");
        }
        assert_ne!(db.lookup(A, r.vaddr + r.size.bytes()), Some(r));
        assert_eq!(db.lookup(B, r.vaddr), None);
    }
    assert_eq!(db.lookup(A, 3 * GIB), None);
    assert_eq!(db.lookup(A, u64::MAX), None);
    assert_eq!(db.lookup(A, 0), None);
}

#[test]
fn many_in_one_leaf() {
    let mut db = MappingDb::new();
    let leaf = leaf_of(A, 0, PageSize::Small);
    for i in 0..512u64 {
        db.add_frame(FrameId::new(CapSlot(i), i * KIB4), PageSize::Small)
            .unwrap();
        db.insert(Mapping::new(
            frame_at(i),
            CapSlot(i),
            A,
            0x20_0000 + i * KIB4,
            PageSize::Small,
            RW,
            table(0),
        ))
        .unwrap();
    }
    db.check().unwrap();
    assert_eq!(db.leaf_used(leaf), 512);
    let idx: Vec<u16> = db.leaf_entries(leaf).map(|r| r.index).collect();
    assert_eq!(idx, (0..512).collect::<Vec<_>>());
    for i in (0..512u64).step_by(2) {
        db.remove_at(leaf, i as u16).unwrap();
    }
    db.check().unwrap();
    assert_eq!(db.leaf_used(leaf), 256);
    assert!(db.leaf_entries(leaf).all(|r| r.index % 2 == 1));

    fn frame_at(i: u64) -> FrameId {
        FrameId::new(CapSlot(i), i * KIB4)
    }
}

#[test]
fn insert_refusals() {
    let mut db = fixture();
    let ok = m(1, 11, A, 0x20_3000, PageSize::Small, 0);

    let mut r = ok;
    r.vaddr += 8;
    assert_eq!(refused!(db.insert(r)), InsertError::Misaligned);
    let r = m(1, 11, A, USER_VADDR_END, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::OutOfRange);
    let r = m(3, 31, A, !(GIB - 1), PageSize::Huge, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::OutOfRange);
    let mut r = ok;
    r.leaf.asid = B;
    assert_eq!(refused!(db.insert(r)), InsertError::LeafSpaceMismatch);
    let mut r = ok;
    r.leaf.level = LeafLevel::Pd;
    assert_eq!(refused!(db.insert(r)), InsertError::LeafLevelMismatch);
    let mut r = ok;
    r.index = 4;
    assert_eq!(refused!(db.insert(r)), InsertError::IndexMismatch);
    let r = m(9, 11, A, 0x20_3000, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::UnknownFrame);
    let r = m(2, 21, A, 0x20_3000, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::SizeMismatch);
    let r = m(1, 99, A, 0x20_3000, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::UnknownCap);
    let r = m(1, 21, A, 0x20_3000, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::NotACopy);

    db.insert(ok).unwrap();
    // The same cap again, anywhere.
    let r = m(1, 11, B, 0x9000, PageSize::Small, 5);
    assert_eq!(refused!(db.insert(r)), InsertError::CapMapped);
    // The same table used for another 2 MiB region.
    let r = m(1, 12, A, 0x40_3000, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::LeafRegionMismatch);
    // The same entry.
    let r = m(1, 12, A, 0x20_3000, PageSize::Small, 0);
    assert_eq!(refused!(db.insert(r)), InsertError::PteClaimed(CapSlot(11)));
    // The same address through another table (a broken caller).
    let r = m(1, 12, A, 0x20_3000, PageSize::Small, 7);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    // A 2 MiB page over the 4 KiB one.
    let r = m(2, 21, A, 0x20_0000, PageSize::Large, 1);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    // A 1 GiB page over it.
    let r = m(3, 31, A, 0, PageSize::Huge, 2);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    // Other spaces are unaffected.
    db.insert(m(3, 31, B, 0, PageSize::Huge, 2)).unwrap();
    // A 4 KiB and a 2 MiB page inside a 1 GiB one.
    let r = m(1, 12, B, 0x3f00_0000, PageSize::Small, 3);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    let r = m(2, 21, B, 0x3fe0_0000, PageSize::Large, 3);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    // 4 KiB inside a 2 MiB page, and a 1 GiB over a 2 MiB page.
    db.insert(m(2, 21, C, 3 * GIB + MIB2, PageSize::Large, 4)).unwrap();
    let r = m(1, 12, C, 3 * GIB + MIB2 + 0x1000, PageSize::Small, 5);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    let r = m(1, 12, C, 3 * GIB + MIB2, PageSize::Small, 5);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    let r = m(3, 3, C, 3 * GIB, PageSize::Huge, 6);
    assert_eq!(refused!(db.insert(r)), InsertError::Overlap);
    // Neighbours are fine.
    db.insert(m(1, 12, C, 3 * GIB + 2 * MIB2, PageSize::Small, 5)).unwrap();
    db.insert(m(1, 13, C, 3 * GIB + MIB2 - KIB4, PageSize::Small, 7))
        .unwrap();
    db.insert(m(3, 3, C, 4 * GIB, PageSize::Huge, 6)).unwrap();
    // The top of user space.
    db.remove_by_cap(CapSlot(3)).unwrap();
    db.insert(m(3, 3, C, USER_VADDR_END - GIB, PageSize::Huge, 8)).unwrap();
    db.check().unwrap();
}

#[test]
fn removals() {
    let mut db = fixture();
    let a = m(1, 11, A, 0x20_3000, PageSize::Small, 0);
    let b = m(1, 12, B, 0x20_3000, PageSize::Small, 1);
    let c = m(2, 21, A, 0x40_0000, PageSize::Large, 2);
    for r in [a, b, c] {
        db.insert(r).unwrap();
    }
    assert_eq!(refused!(db.remove_by_vaddr(A, 0x20_4000)), RemoveError::NotMapped);
    assert_eq!(refused!(db.remove_by_vaddr(C, 0x20_3000)), RemoveError::NotMapped);
    assert_eq!(refused!(db.remove_by_cap(CapSlot(99))), RemoveError::UnknownCap);
    assert_eq!(refused!(db.remove_by_cap(CapSlot(13))), RemoveError::NotMapped);
    assert_eq!(refused!(db.remove_at(a.leaf, 4)), RemoveError::NotMapped);
    assert_eq!(
        refused!(db.remove_at(leaf_of(A, 9, PageSize::Small), 3)),
        RemoveError::NotMapped
    );

    assert_eq!(db.remove_by_vaddr(A, 0x5f_ffff), Ok(c));
    db.check().unwrap();
    assert_eq!(db.remove_by_cap(CapSlot(11)), Ok(a));
    db.check().unwrap();
    assert_eq!(db.remove_at(b.leaf, 3), Ok(b));
    db.check().unwrap();
    assert!(db.is_empty());
    assert_eq!(db.leaves().count(), 0);
    // Idle leaf tables keep their spaces and span counters (empty) for a while.
    assert!(db.spans.values().all(|s| s.count == 0) && db.by_vaddr.is_empty());
    assert!(db.spaces.values().all(|s| s.maps.is_empty()));
    // The caps are free to map again, and to delete.
    db.insert(a).unwrap();
    db.remove_copy(CapSlot(12)).unwrap();
    db.check().unwrap();
}

#[test]
fn remove_space() {
    let mut db = fixture();
    let rs = [
        m(1, 11, A, 0x1000, PageSize::Small, 0),
        m(1, 12, A, 0x2000, PageSize::Small, 0),
        m(1, 13, B, 0x1000, PageSize::Small, 1),
        m(2, 21, A, MIB2, PageSize::Large, 2),
        m(3, 31, A, GIB, PageSize::Huge, 3),
    ];
    for r in rs {
        db.insert(r).unwrap();
    }
    let mut gone = db.remove_space(A);
    gone.sort_by_key(|r| r.cap);
    assert_eq!(gone, [rs[0], rs[1], rs[3], rs[4]]);
    db.check().unwrap();
    assert_eq!(db.len(), 1);
    assert_eq!(db.mappings_in(A).count(), 0);
    assert_eq!(db.mappings_in(B).collect::<Vec<_>>(), [rs[2]]);
    assert_eq!(db.leaves().collect::<Vec<_>>(), [rs[2].leaf]);
    assert!(db.remove_space(A).is_empty());
    assert!(db.remove_space(C).is_empty());
    db.check().unwrap();
}

#[test]
fn batch_commits_in_order() {
    let mut db = fixture();
    let leaf = leaf_of(A, 0, PageSize::Small);
    let a = m(1, 11, A, 0x20_1000, PageSize::Small, 0);
    let b = m(1, 12, A, 0x20_2000, PageSize::Small, 0);
    let c = m(1, 13, A, 0x20_3000, PageSize::Small, 0);
    db.insert(a).unwrap();

    let mut batch = Batch::new(leaf);
    batch.insert(b).insert(c).remove(1);
    // The cap freed by the removal is mapped again at the same entry, in the same batch.
    batch.insert(m(1, 11, A, 0x20_1000, PageSize::Small, 0));
    // ... and the removed entry's cap elsewhere in the leaf, after removing again.
    batch.remove(1).insert(m(1, 11, A, 0x20_5000, PageSize::Small, 0));
    assert_eq!(batch.len(), 6);
    assert_eq!(db.commit(batch), Ok(vec![a, a]));
    db.check().unwrap();
    assert_eq!(db.leaf_entries(leaf).map(|r| r.index).collect::<Vec<_>>(), [2, 3, 5]);

    // Emptying a leaf and moving it to another region within one batch.
    let mut batch = Batch::new(leaf);
    batch.remove(2).remove(3).remove(5);
    batch.insert(m(1, 11, A, 0x60_0000, PageSize::Small, 0));
    let removed = db.commit(batch).unwrap();
    assert_eq!(removed.len(), 3);
    db.check().unwrap();
    assert_eq!(db.lookup(A, 0x60_0000).map(|r| r.cap), Some(CapSlot(11)));

    // An empty batch changes nothing.
    assert_eq!(db.commit(Batch::new(leaf)), Ok(vec![]));
    db.check().unwrap();
}

#[test]
fn batch_refusals_change_nothing() {
    let mut db = fixture();
    let leaf = leaf_of(A, 0, PageSize::Small);
    db.insert(m(1, 11, A, 0x20_1000, PageSize::Small, 0)).unwrap();
    let err = |op, kind| BatchError { op, kind };

    let mut b = Batch::new(leaf);
    b.insert(m(1, 12, A, 0x20_2000, PageSize::Small, 0))
        .insert(m(1, 13, A, 0x20_3000, PageSize::Small, 1));
    assert_eq!(refused!(db.commit(b)), err(1, BatchErrorKind::WrongLeaf));

    let mut b = Batch::new(leaf);
    b.insert(m(1, 12, A, 0x20_2000, PageSize::Small, 0)).remove(7);
    assert_eq!(
        refused!(db.commit(b)),
        err(1, BatchErrorKind::Remove(RemoveError::NotMapped))
    );

    // The same cap twice.
    let mut b = Batch::new(leaf);
    b.insert(m(1, 12, A, 0x20_2000, PageSize::Small, 0))
        .insert(m(1, 12, A, 0x20_3000, PageSize::Small, 0));
    assert_eq!(
        refused!(db.commit(b)),
        err(1, BatchErrorKind::Insert(InsertError::CapMapped))
    );

    // The same entry twice.
    let mut b = Batch::new(leaf);
    b.insert(m(1, 12, A, 0x20_2000, PageSize::Small, 0))
        .insert(m(1, 13, A, 0x20_2000, PageSize::Small, 0));
    assert_eq!(
        refused!(db.commit(b)),
        err(1, BatchErrorKind::Insert(InsertError::PteClaimed(CapSlot(12))))
    );

    // A removal twice.
    let mut b = Batch::new(leaf);
    b.remove(1).remove(1);
    assert_eq!(
        refused!(db.commit(b)),
        err(1, BatchErrorKind::Remove(RemoveError::NotMapped))
    );

    // Another region while the leaf still has entries; then after emptying it, fine.
    let mut b = Batch::new(leaf);
    b.insert(m(1, 12, A, 0x60_2000, PageSize::Small, 0));
    assert_eq!(
        refused!(db.commit(b)),
        err(0, BatchErrorKind::Insert(InsertError::LeafRegionMismatch))
    );

    // Overlap with a mapping outside the leaf is seen, and a removed one is not.
    db.insert(m(2, 21, A, 0x40_0000, PageSize::Large, 5)).unwrap();
    let mut b = Batch::new(leaf);
    b.remove(1).insert(m(1, 12, A, 0x40_2000, PageSize::Small, 0));
    assert_eq!(
        refused!(db.commit(b)),
        err(1, BatchErrorKind::Insert(InsertError::Overlap))
    );
    let mut b = Batch::new(leaf_of(A, 5, PageSize::Large));
    b.remove(2).insert(m(2, 22, A, 0x40_0000, PageSize::Large, 5));
    assert!(db.commit(b).is_ok());
    db.check().unwrap();

    // A mapping at the same address in another leaf of the same level overlaps even after removals here.
    let mut db = fixture();
    db.insert(m(1, 11, A, 0x20_1000, PageSize::Small, 0)).unwrap();
    db.insert(m(1, 12, A, 0x20_1000 + KIB4, PageSize::Small, 0)).unwrap();
    let mut b = Batch::new(leaf_of(A, 1, PageSize::Small));
    b.insert(m(1, 13, A, 0x20_1000, PageSize::Small, 1));
    assert_eq!(
        refused!(db.commit(b)),
        err(0, BatchErrorKind::Insert(InsertError::Overlap))
    );
}

#[test]
fn check_catches_corruption() {
    let base = {
        let mut db = fixture();
        db.insert(m(1, 11, A, 0x20_3000, PageSize::Small, 0)).unwrap();
        db.insert(m(1, 12, A, 0x20_4000, PageSize::Small, 0)).unwrap();
        db.insert(m(2, 21, B, 0x40_0000, PageSize::Large, 1)).unwrap();
        db.check().unwrap();
        db
    };
    type Corrupt = fn(&mut MappingDb);
    let cases: [(Corrupt, InvariantViolation); 12] = [
        (
            |db| {
                _ = db.by_vaddr.remove(&crate::db::VKey {
                    asid: A,
                    vaddr: 0x20_3000,
                })
            },
            InvariantViolation::VaddrIndex(CapSlot(11)),
        ),
        (
            |db| db.frames.get_mut(&CapSlot(1)).unwrap().mapped.reverse(),
            InvariantViolation::FrameIndex(CapSlot(12)),
        ),
        (
            |db| db.spaces.get_mut(&A).unwrap().reverse(),
            InvariantViolation::SpaceIndex(CapSlot(12)),
        ),
        (
            |db| db.leaves.get_mut(&leaf_of(A, 0, PageSize::Small)).unwrap().region = 0,
            InvariantViolation::LeafIndex(CapSlot(11)),
        ),
        (
            |db| db.caps.get_mut(&CapSlot(11)).unwrap().map.as_mut().unwrap().index = 9,
            InvariantViolation::Record(CapSlot(11)),
        ),
        (
            |db| db.caps.get_mut(&CapSlot(12)).unwrap().children = 3,
            InvariantViolation::Derivation(CapSlot(12)),
        ),
        (
            |db| db.caps.get_mut(&CapSlot(1)).unwrap().parent = CapSlot(12),
            InvariantViolation::Original(frame(1)),
        ),
        (|db| db.len += 1, InvariantViolation::Count),
        (|db| db.copy_parents += 1, InvariantViolation::Count),
        (
            |db| {
                _ = db.spans.insert(
                    crate::db::SpanKey {
                        asid: C,
                        size: PageSize::Huge,
                        base: 0,
                    },
                    crate::db::SpanNode { count: 1, leaves: 1 },
                )
            },
            InvariantViolation::SpanCount,
        ),
        (
            |db| db.frames.get_mut(&CapSlot(2)).unwrap().copies.push(CapSlot(77)),
            InvariantViolation::Count,
        ),
        (
            |db| {
                // A 4 KiB record inside B's 2 MiB page, with all its index entries: only the overlap is wrong.
                let r = m(1, 13, B, 0x40_1000, PageSize::Small, 2);
                db.apply_insert(r);
            },
            InvariantViolation::Overlap(CapSlot(13)),
        ),
    ];
    for (corrupt, expect) in cases {
        let mut db = base.clone();
        corrupt(&mut db);
        // Which record is reported first depends on the tables' order: compare the kind.
        let got = db.check().unwrap_err();
        assert_eq!(
            core::mem::discriminant(&got),
            core::mem::discriminant(&expect),
            "{got:?} vs {expect:?}"
        );
    }
}

#[test]
fn memory_cost() {
    let cost = mapping_cost();
    std::println!("{cost:?}");
    std::println!(
        "bytes per mapping: own {}, dense {}, sparse {}, dense without the copy {}",
        cost.own(),
        cost.dense(),
        cost.sparse(),
        cost.dense_without_copy()
    );
    assert!(cost.own() < cost.dense() && cost.dense() < cost.sparse());

    // Measured: copy&map of 4096 frames into 8 spaces, contiguously (8 full page tables per space). The tables
    // are between 7/16 and 7/8 full, so the measure lies between the computed cost and about twice it.
    let mut db = MappingDb::new();
    let empty = db.approx_heap_bytes();
    let mut slot = 0;
    let n_frames = 4096u64;
    for f in 0..n_frames {
        db.add_frame(FrameId::new(CapSlot(f), f * KIB4), PageSize::Small)
            .unwrap();
    }
    slot += n_frames;
    let frames_only = db.approx_heap_bytes();
    for asid in 0..8u32 {
        for f in 0..n_frames {
            let fid = FrameId::new(CapSlot(f), f * KIB4);
            db.add_copy(fid, CapSlot(slot), CapSlot(f)).unwrap();
            let r = Mapping::new(
                fid,
                CapSlot(slot),
                AsId(asid),
                0x4000_0000 + f * KIB4,
                PageSize::Small,
                RW,
                CapSlot(1 << 40 | f >> 9),
            );
            db.insert(r).unwrap();
            slot += 1;
        }
    }
    db.check().unwrap();
    let total = db.approx_heap_bytes();
    let per = (total - frames_only) / db.len();
    std::println!(
        "measured: {} mappings, heap {} B (empty {empty}, frames only {frames_only}), {per} B per mapping",
        db.len(),
        total
    );
    assert!(per >= cost.own() / 2 && per <= 2 * cost.dense(), "{per}");
}
