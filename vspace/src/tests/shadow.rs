//! Tests of the shadow's representation: the entry bitmaps, the recycling of table records (with the
//! lookup hint), batches whose ranges come out of address order, and the memory a sparse table takes.

use std::vec::Vec;

use proptest::prelude::*;

use super::{assert_consistent, assert_lookups_agree, frames, range, setup};
use crate::shadow::{Bits, ENTRIES};
use crate::*;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const K4: u64 = 4096;
const RW: Rights = Rights::READ_WRITE;
const WB: CacheAttr = CacheAttr::WriteBack;

fn bits_of(model: &[bool]) -> Bits {
    let mut b = Bits::default();
    for (i, &on) in model.iter().enumerate() {
        if on {
            b.set(i);
        }
    }
    b
}

proptest! {
    /// The word-at-a-time searches and range updates agree with a bit-by-bit model, across word
    /// boundaries.
    #[test]
    fn bits_agree_with_a_model(
        a in prop::collection::vec(prop::bool::weighted(0.1), ENTRIES),
        b in prop::collection::vec(prop::bool::weighted(0.05), ENTRIES),
        lo in 0..=ENTRIES,
        len in prop_oneof![0..3usize, 60..70usize, 0..=ENTRIES],
        on in any::<bool>(),
    ) {
        let hi = (lo + len).min(ENTRIES);
        let (ba, bb) = (bits_of(&a), bits_of(&b));
        let either = (lo..hi).find(|&i| a[i] || b[i]);
        prop_assert_eq!(ba.next_one_either(&bb, lo, hi), either);
        prop_assert_eq!(ba.next_zero(lo, hi), (lo..hi).find(|&i| !a[i]).unwrap_or(hi));
        prop_assert_eq!(ba.count(), a.iter().filter(|&&x| x).count());
        prop_assert_eq!(ba.intersects(&bb), a.iter().zip(&b).any(|(x, y)| *x && *y));
        prop_assert_eq!(ba.ones().collect::<Vec<_>>(), (0..ENTRIES).filter(|&i| a[i]).collect::<Vec<_>>());
        let mut c = ba;
        c.set_range(lo, hi, on);
        for (i, &was) in a.iter().enumerate() {
            let want = if (lo..hi).contains(&i) { on } else { was };
            prop_assert_eq!(c.get(i), want, "bit {}", i);
        }
    }
}

/// Tables freed and created again, at other levels and places, reuse the records (and the lookup hint
/// must never name a recycled one): the shadow stays equal to the kernel throughout.
#[test]
fn recycled_table_records_keep_the_shadow_exact() {
    let (mut k, mut s) = setup();
    let regions = [GIB, 5 * GIB + 7 * MIB2, (3 << 39) + 100 * MIB2, 2 * GIB];
    for round in 0..40u64 {
        let base = regions[(round % 4) as usize];
        match round % 3 {
            0 => {
                let f = frames(&mut k, FrameSize::Small, 3);
                s.map(&mut k, range::<Size4K>(base + round * K4, 3), &f, RW, WB)
                    .unwrap();
            }
            1 => {
                let f = frames(&mut k, FrameSize::Large, 1);
                // Refused as an overlap where small pages (or their table) are.
                let _ = s.map(&mut k, range::<Size2M>(base + MIB2, 1), &f, RW, WB);
            }
            _ => {
                let f = frames(&mut k, FrameSize::Huge, 1);
                let _ = s.map(&mut k, range::<Size1G>((base >> 30 << 30) + GIB, 1), &f, RW, WB);
            }
        }
        assert_consistent(&k, &s, true);
        assert_lookups_agree(&k, &s, regions.iter().flat_map(|&r| [r, r + K4 * 3, r + MIB2, r + GIB]));
        if round % 2 == 1 {
            let r = regions[((round / 2) % 4) as usize];
            let _ = s.unmap(&mut k, range::<Size1G>(r >> 30 << 30, 2)).unwrap();
            assert_consistent(&k, &s, true);
        }
    }
    // Many tables freed at once: only a few records keep their buffers; all can be reused.
    let f = frames(&mut k, FrameSize::Small, 64);
    for (i, &cap) in f.iter().enumerate() {
        s.map(&mut k, range::<Size4K>(40 * GIB + i as u64 * MIB2, 1), &[cap], RW, WB)
            .unwrap();
    }
    let _ = s.unmap(&mut k, range::<Size1G>(40 * GIB, 1)).unwrap();
    s.map(&mut k, range::<Size4K>(40 * GIB, 64), &f, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
    let t = s.destroy(&mut k).unwrap();
    assert_eq!(k.live_tables(), [0, 0, 0]);
    assert!(t.frames.len() >= 64);
}

/// A batch whose ranges come out of address order maps them in address order, one run per leaf table
/// where rights and attributes agree; a dropped batch leaves its caps free to map.
#[test]
fn batch_ranges_out_of_order_merge_into_runs() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 6);
    let mut b = s.map_batch();
    b.add(range::<Size4K>(GIB + 4 * K4, 2), &f[4..], RW, WB).unwrap();
    b.add(range::<Size4K>(GIB, 2), &f[..2], RW, WB).unwrap();
    // The cap of the first add again, and a range overlapping it: refused, the batch unchanged.
    assert_eq!(
        b.add(range::<Size4K>(GIB + 2 * K4, 1), &f[4..5], RW, WB),
        Err(MapError::FrameAlreadyMapped { frame: f[4] })
    );
    assert_eq!(
        b.add(range::<Size4K>(GIB + 3 * K4, 2), &f[2..4], RW, WB),
        Err(MapError::Overlap {
            vaddr: VirtAddr::new(GIB + 4 * K4)
        })
    );
    b.add(range::<Size4K>(GIB + 2 * K4, 2), &f[2..4], RW, WB).unwrap();
    assert_eq!(b.len(), 6);
    let before = k.stats().map_runs;
    b.commit(&mut k).unwrap();
    assert_eq!(
        k.stats().map_runs - before,
        1,
        "six consecutive entries of one table: one run"
    );
    for (i, &cap) in f.iter().enumerate() {
        assert_eq!(s.lookup(VirtAddr::new(GIB + i as u64 * K4)).unwrap().frame, cap);
    }
    assert_consistent(&k, &s, true);
    // A batch dropped (or cancelled) after adds: its caps are not taken.
    let g = frames(&mut k, FrameSize::Small, 2);
    let mut b = s.map_batch();
    b.add(range::<Size4K>(2 * GIB, 2), &g, RW, WB).unwrap();
    drop(b);
    s.map(&mut k, range::<Size4K>(3 * GIB, 2), &g, RW, WB).unwrap();
    assert_eq!(s.mapping_of(g[1]).unwrap().vaddr, VirtAddr::new(3 * GIB + K4));
    assert_consistent(&k, &s, true);
}

/// A refused map leaves no trace in the cap index: the caps it named (before and after the refused page)
/// can be mapped next.
#[test]
fn refusals_leave_the_caps_free() {
    let (mut k, mut s) = setup();
    let taken = frames(&mut k, FrameSize::Small, 1);
    s.map(&mut k, range::<Size4K>(GIB + 5 * K4, 1), &taken, RW, WB).unwrap();
    let f = frames(&mut k, FrameSize::Small, 8);
    // Overlap at page 5: pages 0..5 were checked first.
    assert_eq!(
        s.map(&mut k, range::<Size4K>(GIB, 8), &f, RW, WB),
        Err(MapError::Overlap {
            vaddr: VirtAddr::new(GIB + 5 * K4)
        })
    );
    // A cap twice (pages 2 and 6): refused at page 6.
    let mut twice = f.clone();
    twice[6] = twice[2];
    assert_eq!(
        s.map(&mut k, range::<Size4K>(2 * GIB, 8), &twice, RW, WB),
        Err(MapError::FrameAlreadyMapped { frame: f[2] })
    );
    // A cap mapped already comes before a later overlap.
    let mut dup = f.clone();
    dup[1] = taken[0];
    assert_eq!(
        s.map(&mut k, range::<Size4K>(GIB, 8), &dup, RW, WB),
        Err(MapError::FrameAlreadyMapped { frame: taken[0] })
    );
    assert_eq!(s.stats().total_frames(), 1);
    assert_consistent(&k, &s, true);
    s.map(&mut k, range::<Size4K>(2 * GIB, 8), &f, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
}

/// A page table holding a few low entries keeps small frame records (they grow with the highest entry
/// used), and the records of a full one are exactly one table long.
#[test]
fn sparse_tables_stay_small() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 2);
    s.map(&mut k, range::<Size4K>(GIB, 2), &f, RW, WB).unwrap();
    let pt = s.shadow.table(TableLevel::Pt, GIB).unwrap();
    assert!(pt.slots.caps.capacity() < 16, "{}", pt.slots.caps.capacity());
    let f = frames(&mut k, FrameSize::Small, ENTRIES - 2);
    s.map(&mut k, range::<Size4K>(GIB + 2 * K4, ENTRIES as u64 - 2), &f, RW, WB)
        .unwrap();
    let pt = s.shadow.table(TableLevel::Pt, GIB).unwrap();
    assert_eq!(pt.slots.caps.capacity(), ENTRIES);
    assert_eq!(pt.slots.meta.capacity(), ENTRIES);
    assert_consistent(&k, &s, true);
}

/// Caps for the cap-index model test: runs of consecutive values (some crossing a 64-value block), some
/// repeated or scattered, at pages of one size.
fn cap_runs() -> impl Strategy<Value = Vec<(u64, usize, u32, u64)>> {
    // (first cap, count, page bits, first page index); a count of 0 means one cap far away.
    prop::collection::vec(
        (0..300u64, 0..140usize, prop_oneof![Just(12u32), Just(21)], 0..400u64),
        1..30,
    )
}

proptest! {
    /// The cap index (blocks of consecutive caps plus singles) agrees with a plain map: entering runs
    /// (refused at the first cap entered already, with exactly the caps before it entered), removing runs,
    /// lookups, its size and its iteration.
    #[test]
    fn cap_index_agrees_with_a_model(runs in cap_runs(), removes in prop::collection::vec(any::<prop::sample::Index>(), 0..20)) {
        use std::collections::HashMap as Model;
        use crate::capmap::CapMap;
        let mut idx = CapMap::default();
        let mut model: Model<CapRef, u64> = Model::new();
        let mut entered: Vec<Vec<CapRef>> = Vec::new();
        for (first, count, bits, page) in runs {
            let caps: Vec<CapRef> = if count == 0 {
                vec![CapRef(first * 1_000_003), CapRef(first * 7 + 5), CapRef(first)]
            } else if count % 7 == 0 {
                // Consecutive values, pairwise swapped: off any progression.
                (0..count as u64).map(|i| CapRef(first + (i ^ 1))).collect()
            } else {
                (0..count as u64).map(|i| CapRef(first + i)).collect()
            };
            let start = page << bits;
            let want = caps.iter().enumerate().position(|(i, c)| {
                model.contains_key(c) || caps[..i].contains(c)
            });
            let got = idx.insert_run(&caps, start, bits).err();
            prop_assert_eq!(got, want);
            let done = want.unwrap_or(caps.len());
            for (i, &c) in caps[..done].iter().enumerate() {
                model.insert(c, start + ((i as u64) << bits));
            }
            entered.push(caps[..done].to_vec());
        }
        for r in removes {
            if entered.is_empty() {
                break;
            }
            let caps = entered.swap_remove(r.index(entered.len()));
            idx.remove_run(&caps);
            for c in &caps {
                model.remove(c);
            }
        }
        prop_assert_eq!(idx.len(), model.len());
        for probe in 0..1200u64 {
            let c = CapRef(probe);
            prop_assert_eq!(idx.get(c), model.get(&c).copied(), "cap {}", probe);
            prop_assert_eq!(idx.contains(c), model.contains_key(&c));
        }
        for (c, v) in &model {
            prop_assert_eq!(idx.get(*c), Some(*v));
        }
        let mut all: Vec<(CapRef, u64)> = idx.iter().collect();
        all.sort_unstable();
        let mut want: Vec<(CapRef, u64)> = model.into_iter().collect();
        want.sort_unstable();
        prop_assert_eq!(all, want);
    }
}

/// Consecutive caps mapped a leaf table at a time, across blocks and tables, then unmapped in pieces and
/// mapped again elsewhere: `mapping_of` answers for each, and a cap mapped already is refused.
#[test]
fn consecutive_caps_are_indexed_by_runs() {
    let (mut k, mut s) = setup();
    let f = frames(&mut k, FrameSize::Small, 700);
    let base = GIB + MIB2 - 100 * K4;
    s.map(&mut k, range::<Size4K>(base, 700), &f, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
    for (i, &c) in f.iter().enumerate() {
        assert_eq!(s.mapping_of(c).unwrap().vaddr.as_u64(), base + i as u64 * K4);
    }
    let before = super::snapshot(&k, &s);
    let g = frames(&mut k, FrameSize::Small, 3);
    let caps = [g[0], g[1], f[350], g[2]];
    assert_eq!(
        s.map(&mut k, range::<Size4K>(5 * GIB, 4), &caps, RW, WB),
        Err(MapError::FrameAlreadyMapped { frame: f[350] })
    );
    assert_eq!(super::snapshot(&k, &s), before);
    assert_eq!(s.mapping_of(g[0]), None);
    let released = s.unmap(&mut k, range::<Size4K>(base + 300 * K4, 100)).unwrap();
    assert_eq!(released.len(), 100);
    assert_consistent(&k, &s, true);
    assert_eq!(s.mapping_of(f[300]), None);
    assert_eq!(s.mapping_of(f[299]).unwrap().vaddr.as_u64(), base + 299 * K4);
    // The released caps, in reverse order, elsewhere.
    let rev: Vec<CapRef> = released.iter().rev().map(|&(_, c)| c).collect();
    s.map(&mut k, range::<Size4K>(5 * GIB, 100), &rev, RW, WB).unwrap();
    assert_consistent(&k, &s, true);
    assert_eq!(s.mapping_of(f[399]).unwrap().vaddr.as_u64(), 5 * GIB);
    assert_eq!(s.mapping_of(f[300]).unwrap().vaddr.as_u64(), 5 * GIB + 99 * K4);
}

/// Caps for the singles test: values apart (each alone in its block in a run, so kept one by one), from a
/// small set so that the open-addressing table's probe sequences collide, wrap and get shifted back on
/// removal, plus the largest values (the one that cannot take a slot).
fn single_caps() -> impl Strategy<Value = Vec<(u64, bool)>> {
    let cap = prop_oneof![
        8 => (0..200u64).prop_map(|i| i * 64 + 3),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 2),
    ];
    // (cap, insert or remove)
    prop::collection::vec((cap, any::<bool>()), 1..300)
}

proptest! {
    /// Caps entered and removed one at a time (all singles, then with a block present) agree with a plain
    /// map after every step: lone caps next to blocks, repeated and removed caps, the cap `u64::MAX`.
    #[test]
    fn cap_index_singles_agree_with_a_model(ops in single_caps(), with_block in any::<bool>()) {
        use std::collections::HashMap as Model;
        use crate::capmap::CapMap;
        let mut idx = CapMap::default();
        let mut model: Model<CapRef, u64> = Model::new();
        if with_block {
            // A block far from the singles: removals take the path that looks for blocks.
            let run: Vec<CapRef> = (0..10).map(|i| CapRef((1 << 40) + i)).collect();
            prop_assert_eq!(idx.insert_run(&run, 0, 12), Ok(()));
            for (i, &c) in run.iter().enumerate() {
                model.insert(c, (i as u64) << 12);
            }
        }
        for (step, &(c, insert)) in ops.iter().enumerate() {
            let cap = CapRef(c);
            let v = (step as u64 + 100) << 21;
            if insert {
                let want = if model.contains_key(&cap) { Err(0) } else { Ok(()) };
                prop_assert_eq!(idx.insert_run(&[cap], v, 21), want);
                model.entry(cap).or_insert(v);
            } else if model.remove(&cap).is_some() {
                idx.remove_run(&[cap]);
            }
            prop_assert_eq!(idx.len(), model.len());
            for (&c, &v) in &model {
                prop_assert_eq!(idx.get(c), Some(v));
            }
            for &(c, _) in &ops {
                prop_assert_eq!(idx.contains(CapRef(c)), model.contains_key(&CapRef(c)));
            }
        }
        let mut all: Vec<(CapRef, u64)> = idx.iter().collect();
        all.sort_unstable();
        let mut want: Vec<(CapRef, u64)> = model.into_iter().collect();
        want.sort_unstable();
        prop_assert_eq!(all, want);
    }
}

/// A run of consecutive caps entered after singles of its block (whose filter is made only then) is
/// refused at the first single; caps of a block removed one at a time, or in a run with singles, go.
#[test]
fn cap_index_runs_meet_singles_and_single_removals() {
    use crate::capmap::CapMap;
    let mut idx = CapMap::default();
    // Singles first (alone in their runs): no filter yet.
    assert_eq!(idx.insert_run(&[CapRef(70), CapRef(200), CapRef(75)], 0, 12), Ok(()));
    // A run over 64..80 meets 70.
    let run: Vec<CapRef> = (64..80).map(CapRef).collect();
    assert_eq!(idx.insert_run(&run, 1 << 30, 12), Err(6));
    assert_eq!(idx.len(), 3 + 6);
    assert_eq!(idx.get(CapRef(69)), Some((1 << 30) + (5 << 12)));
    assert_eq!(idx.get(CapRef(70)), Some(0));
    // The filter is kept from now on: a single entered now is seen by the next run.
    assert_eq!(idx.insert_run(&[CapRef(77)], 5 << 12, 12), Ok(()));
    let run: Vec<CapRef> = (71..80).map(CapRef).collect();
    assert_eq!(idx.insert_run(&run, 2 << 30, 12), Err(4));
    assert_eq!(idx.get(CapRef(74)), Some((2 << 30) + (3 << 12)));
    // Caps of the block, removed alone (looked for in the singles, then the block).
    idx.remove_run(&[CapRef(66)]);
    idx.remove_run(&[CapRef(64), CapRef(68)]);
    assert_eq!(idx.get(CapRef(66)), None);
    assert_eq!(idx.get(CapRef(65)), Some((1 << 30) + (1 << 12)));
    // A run of the block's last cap (69) and singles (70..76, of both kinds).
    idx.remove_run(&[CapRef(65), CapRef(67)]);
    let run: Vec<CapRef> = (69..76).map(CapRef).collect();
    idx.remove_run(&run);
    assert_eq!(idx.get(CapRef(69)), None);
    assert_eq!(idx.get(CapRef(77)), Some(5 << 12));
    idx.remove_run(&[CapRef(77)]);
    let mut all: Vec<(CapRef, u64)> = idx.iter().collect();
    all.sort_unstable();
    assert_eq!(all, [(CapRef(200), 4096)]);
    idx.remove_run(&[CapRef(200)]);
    assert_eq!(idx.len(), 0);
    assert_eq!(idx.iter().count(), 0);
}
