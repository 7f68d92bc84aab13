//! Host tests of the manager against [`MockKernel`].

mod adopt_run;
mod batch;
mod copy_runs;
mod many_run;
mod ops;
mod prop;

use hashbrown::HashSet;

use crate::layout::Slot;
use crate::mock::{Cap, MockKernel};
use crate::untyped::NodeState;
use crate::{CSpace, Config, ObjectType, Stats};

/// A small machine: 64 KiB + 256 KiB + 1 MiB + 16 MiB of RAM, an 8 KiB RAM
/// untyped, and 1 MiB of device memory at 0xe000_0000.
pub(crate) const MACHINE: &[(u64, u8, bool)] = &[
    (0x10_0000, 16, false),
    (0x14_0000, 18, false),
    (0x20_0000, 20, false),
    (0x100_0000, 24, false),
    (0x8000, 13, false),
    (0xe000_0000, 20, true),
];

pub(crate) fn boot_with(untypeds: &[(u64, u8, bool)], f: impl FnOnce(&mut Config)) -> CSpace<MockKernel> {
    let (k, mut cfg) = MockKernel::boot(12, untypeds);
    f(&mut cfg);
    let cs = CSpace::new(k, cfg).map_err(|(e, _)| e).expect("boot");
    audit(&cs);
    cs
}

pub(crate) fn boot() -> CSpace<MockKernel> {
    boot_with(MACHINE, |_| {})
}

/// A small CSpace: a 128-slot boot CNode, 256-slot level-2 CNodes, at most
/// 7 of them (so that runs reach past a CNode's end, and the CSpace grows
/// and runs out of slots).
pub(crate) fn small() -> CSpace<MockKernel> {
    let machine = [
        (0x1_0000, 16, false),
        (0x4_0000, 18, false),
        (0x10_0000, 20, false),
        (0x2000, 12, false),
    ];
    let (k, mut cfg) = MockKernel::boot(7, &machine);
    cfg.l1_bits = 3;
    cfg.l2_bits = 8;
    cfg.chunk_bits = 16;
    let cs = CSpace::new(k, cfg).map_err(|(e, _)| e).expect("boot");
    audit(&cs);
    cs
}

/// The managed caps in slot order: slot, original?
pub(crate) fn caps(cs: &CSpace<MockKernel>) -> Vec<(Slot, bool)> {
    let mut v: Vec<_> = cs.managed_caps().map(|(s, _, orig)| (s, orig)).collect();
    v.sort();
    v
}

/// The `n` slots from `first` (one CNode).
pub(crate) fn run_of(first: Slot, n: u64) -> Vec<Slot> {
    (0..n)
        .map(|i| Slot {
            cnode: first.cnode,
            index: first.index + i,
        })
        .collect()
}

/// Checks the books against the model, in full.
pub(crate) fn audit(cs: &CSpace<MockKernel>) {
    if let Err(e) = cs.check_books() {
        panic!("cap books: {e}");
    }
    let k = cs.kernel();
    let l = cs.layout();
    let st: Stats = cs.stats();
    // Untyped nodes: same memory, same effective watermark, children iff not
    // fresh.
    let (mut ram_free, mut dev_free) = (0u64, 0u64);
    let mut node_objs = HashSet::new();
    let mut pool_node_slots = 0u64;
    for (id, n) in cs.untypeds().nodes() {
        let info = k
            .untyped(l.path(n.slot).unwrap())
            .unwrap_or_else(|| panic!("node {id}: no untyped cap"));
        assert_eq!(
            (info.paddr, info.bits, info.device),
            (n.paddr, n.size_bits, n.device),
            "node {id}"
        );
        assert_eq!(info.effective_wm, n.watermark(), "node {id} watermark");
        assert_eq!(info.has_children, n.state != NodeState::Fresh, "node {id} children");
        if !matches!(n.state, NodeState::Split { .. }) {
            if n.device {
                dev_free += n.size() - n.watermark();
            } else {
                ram_free += n.size() - n.watermark();
            }
        }
        if n.parent.is_some() {
            pool_node_slots += 1;
        }
        node_objs.insert(info.obj);
    }
    assert_eq!(st.ram.free, ram_free);
    assert_eq!(st.device.free, dev_free);
    assert_eq!(st.ram.total, st.ram.free + st.ram.live + st.ram.padding);
    assert_eq!(st.device.total, st.device.free + st.device.live + st.device.padding);
    // Live bytes: every object made from an untyped that is not a node.
    let (mut ram_live, mut dev_live) = (0u64, 0u64);
    for (id, o) in k.objects() {
        if o.from.is_none() || node_objs.contains(&id) {
            continue;
        }
        if o.device {
            dev_live += 1 << o.bits;
        } else {
            ram_live += 1 << o.bits;
        }
    }
    assert_eq!(st.ram.live, ram_live, "RAM live bytes");
    assert_eq!(st.device.live, dev_live, "device live bytes");
    // Objects: the original cap is where the books say, reached both by its
    // pointer (through the TCB's root at depth 64) and by its path.
    let mut per_type = [0u64; ObjectType::ALL.len()];
    for a in cs.objects() {
        per_type[a.ty.index()] += 1;
        let by_ptr = k.lookup(a.cptr).unwrap().unwrap_or_else(|| panic!("{a:?}: empty"));
        let by_path = k.cap_at(l.path(a.slot).unwrap()).unwrap().unwrap();
        assert_eq!(by_ptr, by_path);
        let obj = match by_ptr {
            Cap::Object { obj, ty, .. } => {
                assert_eq!(ty, a.ty);
                obj
            }
            Cap::Untyped { obj, .. } => {
                assert_eq!(a.ty, ObjectType::Untyped);
                obj
            }
            Cap::CNode { obj, .. } => {
                assert_eq!(a.ty, ObjectType::CNode);
                obj
            }
            Cap::Other(_) => panic!("{a:?}: boot cap"),
        };
        let o = k.object(obj).unwrap();
        assert_eq!((o.paddr, o.bits, o.device), (a.paddr, a.obj_bits, a.device), "{a:?}");
    }
    for t in ObjectType::ALL {
        assert_eq!(cs.count(t), per_type[t.index()]);
    }
    // Copies name their object.
    let mut copies = 0;
    let mut caps = 0u64;
    for (slot, id, original) in cs.managed_caps() {
        caps += 1;
        let a = cs.object(id).unwrap();
        let c = k
            .lookup(cs.cptr(slot))
            .unwrap()
            .unwrap_or_else(|| panic!("{slot:?} empty"));
        let want = k.lookup(a.cptr).unwrap().unwrap();
        let obj = |c: Cap| match c {
            Cap::Object { obj, .. } | Cap::Untyped { obj, .. } | Cap::CNode { obj, .. } => obj,
            Cap::Other(_) => panic!(),
        };
        assert_eq!(obj(c), obj(want));
        if let (Cap::Object { badge, .. }, Some(b)) = (c, cs.badge(slot)) {
            assert_eq!(badge, b, "badge at {slot:?}");
        }
        if !original {
            copies += 1;
        }
    }
    assert_eq!(st.copies_live, copies);
    assert_eq!(st.objects_live, cs.objects().count() as u64);
    // Slots: free and reserved slots are empty; the rest are accounted for.
    for s in cs.slot_books().free_slots() {
        assert_eq!(k.lookup(cs.cptr(s)).unwrap(), None, "free slot {s:?} occupied");
    }
    for s in cs.reserved_slots() {
        assert_eq!(k.lookup(cs.cptr(s)).unwrap(), None, "reserved slot {s:?} occupied");
    }
    assert_eq!(
        st.slots_capacity,
        st.slots_free + st.slots_reserved + caps + pool_node_slots + 1,
        "slot identity"
    );
    k.check_memory().unwrap();
}
