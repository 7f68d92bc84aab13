//! Property test: random sequences of operations against a reference model (vectors and linear scans),
//! comparing every result and every query answer, and running `check()` after each step.

use mapping_db::*;
use proptest::prelude::*;

const KIB4: u64 = 1 << 12;
const MIB2: u64 = 1 << 21;
const GIB: u64 = 1 << 30;
const SLOTS: u64 = 48;
const SPACES: u32 = 3;
const SIZES: [PageSize; 3] = [PageSize::Small, PageSize::Large, PageSize::Huge];
const LEVELS: [LeafLevel; 3] = [LeafLevel::Pt, LeafLevel::Pd, LeafLevel::Pdpt];

// ----- the reference model --------------------------------------------------------------------------------

#[derive(Clone, Default, Debug)]
struct Model {
    frames: Vec<(FrameId, PageSize)>,
    /// (slot, frame, parent); `None` for originals.
    caps: Vec<(CapSlot, FrameId, Option<CapSlot>)>,
    maps: Vec<Mapping>,
}

fn bytes(s: PageSize) -> u64 {
    match s {
        PageSize::Small => 4096,
        PageSize::Large => 2 * 1024 * 1024,
        PageSize::Huge => 1024 * 1024 * 1024,
    }
}

fn level_size(l: LeafLevel) -> PageSize {
    SIZES[LEVELS.iter().position(|&x| x == l).unwrap()]
}

fn region(m: &Mapping) -> u64 {
    m.vaddr / (bytes(m.size) * 512)
}

impl Model {
    fn cap(&self, s: CapSlot) -> Option<&(CapSlot, FrameId, Option<CapSlot>)> {
        self.caps.iter().find(|c| c.0 == s)
    }
    fn frame(&self, f: FrameId) -> Option<PageSize> {
        self.frames.iter().find(|x| x.0 == f).map(|x| x.1)
    }

    fn add_frame(&mut self, f: FrameId, size: PageSize) -> Result<(), AddFrameError> {
        if self.cap(f.slot).is_some() {
            return Err(AddFrameError::SlotInUse);
        }
        if !f.paddr.is_multiple_of(bytes(size)) {
            return Err(AddFrameError::Misaligned);
        }
        self.frames.push((f, size));
        self.caps.push((f.slot, f, None));
        Ok(())
    }

    fn add_copy(&mut self, f: FrameId, copy: CapSlot, parent: CapSlot) -> Result<(), AddCopyError> {
        if self.frame(f).is_none() {
            return Err(AddCopyError::UnknownFrame);
        }
        if self.cap(copy).is_some() {
            return Err(AddCopyError::SlotInUse);
        }
        match self.cap(parent) {
            None => return Err(AddCopyError::UnknownParent),
            Some(p) if p.1 != f => return Err(AddCopyError::ParentOfOtherFrame),
            _ => {}
        }
        self.caps.push((copy, f, Some(parent)));
        Ok(())
    }

    fn remove_copy(&mut self, s: CapSlot) -> Result<(), RemoveCopyError> {
        let Some(c) = self.cap(s) else {
            return Err(RemoveCopyError::UnknownCap);
        };
        if c.2.is_none() {
            return Err(RemoveCopyError::IsOriginal);
        }
        if self.maps.iter().any(|m| m.cap == s) {
            return Err(RemoveCopyError::Mapped);
        }
        if self.caps.iter().any(|c| c.2 == Some(s)) {
            return Err(RemoveCopyError::HasChildren);
        }
        self.caps.retain(|c| c.0 != s);
        Ok(())
    }

    fn remove_frame(&mut self, f: FrameId) -> Result<(), RemoveFrameError> {
        if self.frame(f).is_none() {
            return Err(RemoveFrameError::UnknownFrame);
        }
        if self.caps.iter().any(|c| c.1 == f && c.0 != f.slot) {
            return Err(RemoveFrameError::HasCopies);
        }
        if self.maps.iter().any(|m| m.cap == f.slot) {
            return Err(RemoveFrameError::Mapped);
        }
        self.frames.retain(|x| x.0 != f);
        self.caps.retain(|c| c.0 != f.slot);
        Ok(())
    }

    fn insert(&mut self, m: Mapping) -> Result<(), InsertError> {
        use InsertError::*;
        let b = bytes(m.size);
        if !m.vaddr.is_multiple_of(b) {
            return Err(Misaligned);
        }
        if m.vaddr.checked_add(b).is_none_or(|end| end > 1 << 47) {
            return Err(OutOfRange);
        }
        if m.leaf.asid != m.asid {
            return Err(LeafSpaceMismatch);
        }
        if level_size(m.leaf.level) != m.size {
            return Err(LeafLevelMismatch);
        }
        if u64::from(m.index) != (m.vaddr / b) % 512 {
            return Err(IndexMismatch);
        }
        match self.frame(m.frame) {
            None => return Err(UnknownFrame),
            Some(s) if s != m.size => return Err(SizeMismatch),
            _ => {}
        }
        match self.cap(m.cap) {
            None => return Err(UnknownCap),
            Some(c) if c.1 != m.frame => return Err(NotACopy),
            _ => {}
        }
        if self.maps.iter().any(|r| r.cap == m.cap) {
            return Err(CapMapped);
        }
        if self.maps.iter().any(|r| r.leaf == m.leaf && region(r) != region(&m)) {
            return Err(LeafRegionMismatch);
        }
        if let Some(r) = self.maps.iter().find(|r| r.leaf == m.leaf && r.index == m.index) {
            return Err(PteClaimed(r.cap));
        }
        if self
            .maps
            .iter()
            .any(|r| r.asid == m.asid && r.vaddr < m.vaddr + b && m.vaddr < r.vaddr + bytes(r.size))
        {
            return Err(Overlap);
        }
        self.maps.push(m);
        Ok(())
    }

    fn take(&mut self, i: Option<usize>) -> Result<Mapping, RemoveError> {
        i.map(|i| self.maps.remove(i)).ok_or(RemoveError::NotMapped)
    }

    fn lookup(&self, asid: AsId, va: u64) -> Option<Mapping> {
        self.maps
            .iter()
            .find(|r| r.asid == asid && r.vaddr <= va && va - r.vaddr < bytes(r.size))
            .copied()
    }

    fn remove_by_vaddr(&mut self, asid: AsId, va: u64) -> Result<Mapping, RemoveError> {
        let i = self
            .maps
            .iter()
            .position(|r| r.asid == asid && r.vaddr <= va && va - r.vaddr < bytes(r.size));
        self.take(i)
    }

    fn remove_by_cap(&mut self, s: CapSlot) -> Result<Mapping, RemoveError> {
        if self.cap(s).is_none() {
            return Err(RemoveError::UnknownCap);
        }
        let i = self.maps.iter().position(|r| r.cap == s);
        self.take(i)
    }

    fn remove_at(&mut self, leaf: LeafTable, index: u16) -> Result<Mapping, RemoveError> {
        let i = self.maps.iter().position(|r| r.leaf == leaf && r.index == index);
        self.take(i)
    }

    fn remove_space(&mut self, asid: AsId) -> Vec<Mapping> {
        let (gone, keep) = self.maps.iter().partition(|r| r.asid == asid);
        self.maps = keep;
        gone
    }

    fn commit(&mut self, batch: &Batch) -> Result<Vec<Mapping>, BatchError> {
        let mut next = self.clone();
        let mut removed = Vec::new();
        for (op, o) in batch.ops().iter().enumerate() {
            let err = |kind| BatchError { op, kind };
            match *o {
                BatchOp::Insert(m) if m.leaf != batch.leaf() => return Err(err(BatchErrorKind::WrongLeaf)),
                BatchOp::Insert(m) => next.insert(m).map_err(|e| err(BatchErrorKind::Insert(e)))?,
                BatchOp::Remove(i) => removed.push(
                    next.remove_at(batch.leaf(), i)
                        .map_err(|e| err(BatchErrorKind::Remove(e)))?,
                ),
            }
        }
        *self = next;
        Ok(removed)
    }
}

// ----- operations, generated raw and resolved against the model's state -------------------------------------

/// The raw choices for one mapping; resolved by [`Ctx::mapping`].
#[derive(Clone, Debug)]
struct MapSpec {
    cap_pick: usize,
    asid: u32,
    h: u64,
    l: u64,
    s: u64,
    /// < 8: a specific mistake; otherwise a plausible mapping.
    fault: u8,
    /// < 2: a table slot from a tiny pool (collisions); otherwise the table proper to the region.
    table_mode: u8,
    table: u64,
    rights: u8,
}

#[derive(Clone, Debug)]
enum BatchSpec {
    Insert {
        spec: MapSpec,
        index: u16,
        wrong_leaf: bool,
    },
    Remove {
        pick: usize,
        random: Option<u16>,
    },
}

#[derive(Clone, Debug)]
enum Op {
    AddFrame {
        slot: u64,
        size: usize,
        k: u64,
        misalign: bool,
    },
    AddCopy {
        frame_pick: usize,
        slot: u64,
        parent_pick: usize,
    },
    RemoveCopy {
        pick: usize,
    },
    RemoveFrame {
        pick: usize,
    },
    Insert(MapSpec),
    RemoveByVaddr {
        asid: u32,
        h: u64,
        l: u64,
        s: u64,
        off: u64,
    },
    RemoveByCap {
        pick: usize,
    },
    RemoveAt {
        pick: usize,
        random: Option<(u32, u64, u16)>,
    },
    RemoveSpace {
        asid: u32,
    },
    Batch {
        asid: u32,
        size: usize,
        h: u64,
        l: u64,
        table_mode: u8,
        table: u64,
        ops: Vec<BatchSpec>,
    },
}

fn map_spec() -> impl Strategy<Value = MapSpec> {
    (
        any::<usize>(),
        0..SPACES,
        0..4u64,
        0..4u64,
        0..8u64,
        0..64u8,
        0..10u8,
        0..4u64,
        0..8u8,
    )
        .prop_map(|(cap_pick, asid, h, l, s, fault, table_mode, table, rights)| MapSpec {
            cap_pick,
            asid,
            h,
            l,
            s,
            fault,
            table_mode,
            table,
            rights,
        })
}

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    prop_oneof![
        3 => (map_spec(), 0..8u16, prop::bool::weighted(0.05))
            .prop_map(|(spec, index, wrong_leaf)| BatchSpec::Insert { spec, index, wrong_leaf }),
        2 => (any::<usize>(), prop::option::weighted(0.2, 0..8u16))
            .prop_map(|(pick, random)| BatchSpec::Remove { pick, random }),
    ]
}

/// Frame sizes: mostly 4 KiB, some 2 MiB, few 1 GiB (a 1 GiB page overlaps much of the small space used).
fn frame_size() -> impl Strategy<Value = usize> {
    prop_oneof![6 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SLOTS, frame_size(), 0..4u64, prop::bool::weighted(0.05))
            .prop_map(|(slot, size, k, misalign)| Op::AddFrame { slot, size, k, misalign }),
        6 => (any::<usize>(), 0..SLOTS, any::<usize>())
            .prop_map(|(frame_pick, slot, parent_pick)| Op::AddCopy { frame_pick, slot, parent_pick }),
        2 => any::<usize>().prop_map(|pick| Op::RemoveCopy { pick }),
        1 => any::<usize>().prop_map(|pick| Op::RemoveFrame { pick }),
        16 => map_spec().prop_map(Op::Insert),
        2 => (0..SPACES, 0..4u64, 0..4u64, 0..8u64, 0..KIB4)
            .prop_map(|(asid, h, l, s, off)| Op::RemoveByVaddr { asid, h, l, s, off }),
        2 => any::<usize>().prop_map(|pick| Op::RemoveByCap { pick }),
        1 => (any::<usize>(), prop::option::weighted(0.2, (0..SPACES, 0..6u64, 0..8u16)))
            .prop_map(|(pick, random)| Op::RemoveAt { pick, random }),
        1 => (0..SPACES).prop_map(|asid| Op::RemoveSpace { asid }),
        4 => (0..SPACES, frame_size(), 0..4u64, 0..4u64, 0..10u8, 0..4u64, prop::collection::vec(batch_spec(), 1..7))
            .prop_map(|(asid, size, h, l, table_mode, table, ops)| Op::Batch { asid, size, h, l, table_mode, table, ops }),
    ]
}

/// A sequence: a start that creates frames and copies, then `n` operations of every kind.
fn ops(n: usize) -> impl Strategy<Value = Vec<Op>> {
    let setup = prop_oneof![
        1 => (0..SLOTS, frame_size(), 0..4u64).prop_map(|(slot, size, k)| Op::AddFrame { slot, size, k, misalign: false }),
        2 => (any::<usize>(), 0..SLOTS, any::<usize>())
            .prop_map(|(frame_pick, slot, parent_pick)| Op::AddCopy { frame_pick, slot, parent_pick }),
    ];
    (prop::collection::vec(setup, 24), prop::collection::vec(op(), n)).prop_map(|(mut a, b)| {
        a.extend(b);
        a
    })
}

/// A phantom slot no operation ever creates.
const NOWHERE: CapSlot = CapSlot(999);

fn pick<T: Copy>(v: &[T], p: usize, phantom: T) -> T {
    // One pick in 16 (and every pick from an empty list) is the phantom, so unknown names come up too.
    if p.is_multiple_of(16) || v.is_empty() {
        phantom
    } else {
        v[(p / 16) % v.len()]
    }
}

/// The table slot proper to a region (distinct per address space, level and region) or one from a tiny pool.
fn table_for(asid: u32, size: PageSize, vaddr: u64, table_mode: u8, table: u64) -> CapSlot {
    if table_mode < 2 {
        CapSlot(1000 + table)
    } else {
        let lvl = SIZES.iter().position(|&s| s == size).unwrap() as u64;
        CapSlot(1000 + u64::from(asid) * 10_000 + lvl * 1000 + (vaddr / (bytes(size) * 512)) % 1000)
    }
}

fn resolve_mapping(model: &Model, spec: &MapSpec, forced: Option<(LeafTable, u64)>) -> Mapping {
    // A cap, preferring (for batches) caps of the batch's page size.
    // Three picks in four are among the caps not mapped yet, so most inserts can succeed.
    let unmapped_only = !spec.cap_pick.is_multiple_of(4);
    let caps: Vec<_> = model
        .caps
        .iter()
        .filter(|c| forced.is_none_or(|(leaf, _)| model.frame(c.1) == Some(level_size(leaf.level))))
        .filter(|c| !unmapped_only || !model.maps.iter().any(|m| m.cap == c.0))
        .map(|c| (c.0, c.1))
        .collect();
    let (mut cap, mut frame) = pick(&caps, spec.cap_pick / 4, (NOWHERE, FrameId::new(NOWHERE, 0)));
    let mut size = model.frame(frame).unwrap_or(SIZES[spec.cap_pick % 3]);
    let asid = AsId(forced.map_or(spec.asid, |(leaf, _)| leaf.asid.0));
    let mut vaddr = match forced {
        Some((_, v)) => v,
        None => size.align_down(spec.h * GIB + spec.l * MIB2 + spec.s * KIB4),
    };
    // Bits 0..3 of the spec: read, write, execute.
    let rights = [Rights::READ, Rights::WRITE, Rights::EXECUTE]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| spec.rights >> i & 1 != 0)
        .fold(Rights::empty(), |r, (_, b)| r | b);
    match spec.fault {
        0 => vaddr += 0x800,
        1 => vaddr = USER_VADDR_END,
        2 => vaddr = USER_VADDR_END - bytes(size),
        3 => size = SIZES[(spec.s % 3) as usize],
        4 => frame = pick(&model.frames, spec.cap_pick / 7, (FrameId::new(NOWHERE, 0), size)).0,
        5 => frame = FrameId::new(frame.slot, frame.paddr ^ GIB),
        9 => cap = NOWHERE,
        _ => {}
    }
    let table = table_for(asid.0, size, vaddr, spec.table_mode, spec.table);
    let mut m = Mapping::new(frame, cap, asid, vaddr, size, rights, table);
    if let Some((leaf, _)) = forced {
        m.leaf = leaf;
        m.index = size.entry_index(vaddr);
    }
    match spec.fault {
        6 => m.leaf.asid = AsId(asid.0 + 1),
        7 => m.leaf.level = LEVELS[(spec.s as usize + 1) % 3],
        8 => m.index = (m.index + 1) % 512,
        _ => {}
    }
    m
}

/// Runs `op` on both, asserting equal results.
fn step(db: &mut MappingDb, model: &mut Model, op: &Op) {
    match op {
        &Op::AddFrame {
            slot,
            size,
            k,
            misalign,
        } => {
            let size = SIZES[size];
            let f = FrameId::new(CapSlot(slot), k * bytes(size) + if misalign { KIB4 } else { 0 });
            assert_eq!(db.add_frame(f, size), model.add_frame(f, size));
        }
        &Op::AddCopy {
            frame_pick,
            slot,
            parent_pick,
        } => {
            let frame = pick(&model.frames, frame_pick, (FrameId::new(NOWHERE, 0), PageSize::Small)).0;
            // The parent: usually a cap of the same frame, sometimes any cap or none.
            let same: Vec<_> = model.caps.iter().filter(|c| c.1 == frame).map(|c| c.0).collect();
            let all: Vec<_> = model.caps.iter().map(|c| c.0).collect();
            let parent = if parent_pick % 5 == 0 {
                pick(&all, parent_pick / 5, NOWHERE)
            } else {
                pick(&same, parent_pick, NOWHERE)
            };
            let copy = CapSlot(slot);
            assert_eq!(db.add_copy(frame, copy, parent), model.add_copy(frame, copy, parent));
        }
        &Op::RemoveCopy { pick: p } => {
            let all: Vec<_> = model.caps.iter().map(|c| c.0).collect();
            let s = pick(&all, p, NOWHERE);
            assert_eq!(db.remove_copy(s), model.remove_copy(s));
        }
        &Op::RemoveFrame { pick: p } => {
            let f = pick(&model.frames, p, (FrameId::new(NOWHERE, 0), PageSize::Small)).0;
            assert_eq!(db.remove_frame(f), model.remove_frame(f));
        }
        Op::Insert(spec) => {
            let m = resolve_mapping(model, spec, None);
            assert_eq!(db.insert(m), model.insert(m), "{m:?}");
        }
        &Op::RemoveByVaddr { asid, h, l, s, off } => {
            let va = h * GIB + l * MIB2 + s * KIB4 + off;
            assert_eq!(
                db.remove_by_vaddr(AsId(asid), va),
                model.remove_by_vaddr(AsId(asid), va)
            );
        }
        &Op::RemoveByCap { pick: p } => {
            let all: Vec<_> = model.caps.iter().map(|c| c.0).collect();
            let s = pick(&all, p, NOWHERE);
            assert_eq!(db.remove_by_cap(s), model.remove_by_cap(s));
        }
        &Op::RemoveAt { pick: p, random } => {
            let (leaf, index) = match random {
                Some((asid, t, i)) => (
                    LeafTable {
                        asid: AsId(asid),
                        table: CapSlot(1000 + t),
                        level: LEVELS[(t % 3) as usize],
                    },
                    i,
                ),
                None => {
                    let r = pick(
                        &model.maps,
                        p,
                        Mapping::new(
                            FrameId::new(NOWHERE, 0),
                            NOWHERE,
                            AsId(0),
                            0,
                            PageSize::Small,
                            Rights::READ,
                            NOWHERE,
                        ),
                    );
                    (r.leaf, r.index)
                }
            };
            assert_eq!(db.remove_at(leaf, index), model.remove_at(leaf, index));
        }
        &Op::RemoveSpace { asid } => {
            let mut a = db.remove_space(AsId(asid));
            let mut b = model.remove_space(AsId(asid));
            a.sort_by_key(|m| m.cap);
            b.sort_by_key(|m| m.cap);
            assert_eq!(a, b);
        }
        Op::Batch {
            asid,
            size,
            h,
            l,
            table_mode,
            table,
            ops,
        } => {
            let size = SIZES[*size];
            let base = size.leaf_region(h * GIB + l * MIB2);
            let leaf = LeafTable {
                asid: AsId(*asid),
                table: table_for(*asid, size, base, *table_mode, *table),
                level: size.level(),
            };
            let mut batch = Batch::new(leaf);
            // Track the leaf's entries as the batch goes, so removals usually name one in use.
            let mut used: Vec<u16> = model.maps.iter().filter(|r| r.leaf == leaf).map(|r| r.index).collect();
            for o in ops {
                match o {
                    BatchSpec::Insert {
                        spec,
                        index,
                        wrong_leaf,
                    } => {
                        let mut m = resolve_mapping(model, spec, Some((leaf, base + u64::from(*index) * bytes(size))));
                        if *wrong_leaf {
                            m.leaf.table = CapSlot(m.leaf.table.0 + 1);
                        }
                        used.push(m.index);
                        batch.insert(m);
                    }
                    BatchSpec::Remove { pick: p, random } => {
                        let i = random.unwrap_or_else(|| pick(&used, *p, 511));
                        used.retain(|&u| u != i);
                        batch.remove(i);
                    }
                }
            }
            let expect = model.commit(&batch);
            assert_eq!(db.commit(batch), expect);
        }
    }
}

/// Every query, on both.
fn compare(db: &MappingDb, model: &Model) {
    db.check().unwrap();
    assert_eq!(db.len(), model.maps.len());
    assert_eq!(db.is_empty(), model.maps.is_empty());
    assert_eq!(db.frame_count(), model.frames.len());
    assert_eq!(db.cap_count(), model.caps.len());
    let sorted = |mut v: Vec<Mapping>| {
        v.sort_by_key(|m| m.cap);
        v
    };
    for slot in (0..SLOTS).map(CapSlot).chain([NOWHERE]) {
        let c = model.cap(slot);
        assert_eq!(db.frame_of_cap(slot), c.map(|c| c.1));
        assert_eq!(db.parent_of(slot), c.and_then(|c| c.2));
        assert_eq!(
            db.children_of(slot),
            model.caps.iter().filter(|c| c.2 == Some(slot)).count()
        );
        assert_eq!(
            db.mapping_of_cap(slot),
            model.maps.iter().find(|m| m.cap == slot).copied()
        );
    }
    for &(f, size) in &model.frames {
        assert_eq!(db.frame_size(f), Some(size));
        let mut a: Vec<_> = db.copies_of(f).collect();
        let mut b: Vec<_> = model.caps.iter().filter(|c| c.1 == f).map(|c| c.0).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let a = sorted(db.mappings_of_frame(f).collect());
        let b = sorted(model.maps.iter().filter(|m| m.frame == f).copied().collect());
        assert_eq!(a, b);
        assert_eq!(db.frame_size(FrameId::new(f.slot, f.paddr ^ GIB)), None);
    }
    for asid in (0..=SPACES).map(AsId) {
        let a = sorted(db.mappings_in(asid).collect());
        let b = sorted(model.maps.iter().filter(|m| m.asid == asid).copied().collect());
        assert_eq!(db.space_len(asid), b.len());
        assert_eq!(a, b);
        // A grid over the addresses the generator uses, and a few outside.
        for h in 0..4 {
            for l in [0, 1, 3] {
                for s in [0, 5, 7] {
                    let va = h * GIB + l * MIB2 + s * KIB4 + 0x123;
                    assert_eq!(db.lookup(asid, va), model.lookup(asid, va), "{asid:?} {va:#x}");
                }
            }
        }
        for va in [USER_VADDR_END - 1, USER_VADDR_END, u64::MAX] {
            assert_eq!(db.lookup(asid, va), model.lookup(asid, va), "{asid:?} {va:#x}");
        }
    }
    for m in &model.maps {
        for va in [m.vaddr, m.vaddr + bytes(m.size) - 1] {
            assert_eq!(db.lookup(m.asid, va), Some(*m));
        }
        assert_eq!(db.mapping_at(m.leaf, m.index), Some(*m));
    }
    let mut leaves: Vec<_> = model.maps.iter().map(|m| m.leaf).collect();
    leaves.sort();
    leaves.dedup();
    let mut db_leaves: Vec<_> = db.leaves().collect();
    db_leaves.sort();
    assert_eq!(db_leaves, leaves);
    for leaf in leaves {
        let mut b: Vec<_> = model.maps.iter().filter(|m| m.leaf == leaf).copied().collect();
        b.sort_by_key(|m| m.index);
        assert_eq!(db.leaf_used(leaf), b.len());
        assert_eq!(db.leaf_entries(leaf).collect::<Vec<_>>(), b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in ops(128)) {
        let mut db = MappingDb::new();
        let mut model = Model::default();
        for op in &ops {
            step(&mut db, &mut model, op);
            compare(&db, &model);
        }
    }
}

/// The generator reaches every outcome: run the same kind of sequences and count what happened.
#[test]
fn generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;

    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let (mut inserted, mut steps, mut live, mut most) = (0, 0, 0, 0);
    for _ in 0..64 {
        let ops = ops(128).new_tree(&mut runner).unwrap().current();
        let mut db = MappingDb::new();
        let mut model = Model::default();
        for op in &ops {
            let before = model.maps.len();
            if let Op::Insert(spec) = op {
                let m = resolve_mapping(&model, spec, None);
                let o = format!("insert {:?}", model.clone().insert(m));
                *counts.entry(o.chars().take(20).collect()).or_default() += 1;
                seen.insert(o);
            }
            if let Op::Batch { .. } = op {
                let mut probe = model.clone();
                let mut d = db.clone();
                step(&mut d, &mut probe, op);
                seen.insert(format!(
                    "batch {}",
                    if probe.maps.len() != model.maps.len() || d.len() != db.len() {
                        "changed"
                    } else {
                        "same"
                    }
                ));
            }
            step(&mut db, &mut model, op);
            inserted += model.maps.len().saturating_sub(before);
            steps += 1;
            live += model.maps.len();
            most = most.max(model.maps.len());
        }
    }
    let want = [
        "insert Ok(())",
        "insert Err(Misaligned)",
        "insert Err(OutOfRange)",
        "insert Err(LeafSpaceMismatch)",
        "insert Err(LeafLevelMismatch)",
        "insert Err(IndexMismatch)",
        "insert Err(UnknownFrame)",
        "insert Err(SizeMismatch)",
        "insert Err(UnknownCap)",
        "insert Err(NotACopy)",
        "insert Err(CapMapped)",
        "insert Err(LeafRegionMismatch)",
        "insert Err(Overlap)",
        "batch changed",
    ];
    for w in want {
        assert!(seen.contains(w), "never saw {w}; saw {seen:?}");
    }
    assert!(seen.iter().any(|s| s.starts_with("insert Err(PteClaimed")), "{seen:?}");
    println!("{counts:?}");
    println!(
        "{steps} steps, {inserted} records inserted, {:.1} live on average, {most} at most; outcomes: {seen:?}",
        live as f64 / steps as f64
    );
}
