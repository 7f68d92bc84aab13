//! The cspace books compared with the kernel model, in full: for host tests
//! of cspace and of anything built on it (the memory manager's model test).

use alloc::format;
use alloc::string::String;
use hashbrown::HashSet;

use crate::kernel::KernelOps;
use crate::mock::{Cap, MockKernel};
use crate::untyped::NodeState;
use crate::{CSpace, ObjectType, Stats};

/// `assert_eq!` as an error.
macro_rules! ensure_eq {
    ($a:expr, $b:expr $(,)?) => {
        ensure_eq!($a, $b, "{}", stringify!($a))
    };
    ($a:expr, $b:expr, $($fmt:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{}: {:?} != {:?}", format!($($fmt)+), a, b));
        }
    }};
}

/// Checks the books against the model, in full.
pub fn audit<K: KernelOps>(cs: &CSpace<K>, k: &MockKernel) -> Result<(), String> {
    cs.check_books().map_err(|e| format!("cap books: {e}"))?;
    let l = cs.layout();
    let st: Stats = cs.stats();
    // Untyped nodes: same memory, same effective watermark, children iff not
    // fresh.
    let (mut ram_free, mut dev_free) = (0u64, 0u64);
    let mut node_objs = HashSet::new();
    let mut pool_node_slots = 0u64;
    for (id, n) in cs.untypeds().nodes() {
        let path = l.path(n.slot).ok_or_else(|| format!("node {id}: no path"))?;
        let info = k.untyped(path).ok_or_else(|| format!("node {id}: no untyped cap"))?;
        ensure_eq!(
            (info.paddr, info.bits, info.device),
            (n.paddr, n.size_bits, n.device),
            "node {id}"
        );
        ensure_eq!(info.effective_wm, n.watermark(), "node {id} watermark");
        ensure_eq!(info.has_children, n.state != NodeState::Fresh, "node {id} children");
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
    ensure_eq!(st.ram.free, ram_free);
    ensure_eq!(st.device.free, dev_free);
    ensure_eq!(st.ram.total, st.ram.free + st.ram.live + st.ram.padding);
    ensure_eq!(st.device.total, st.device.free + st.device.live + st.device.padding);
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
    ensure_eq!(st.ram.live, ram_live, "RAM live bytes");
    ensure_eq!(st.device.live, dev_live, "device live bytes");
    // Objects: the original cap is where the books say, reached both by its
    // pointer (through the TCB's root at depth 64) and by its path.
    let mut per_type = [0u64; ObjectType::ALL.len()];
    for a in cs.objects() {
        per_type[a.ty.index()] += 1;
        let by_ptr = k.lookup(a.cptr).ok().flatten().ok_or_else(|| format!("{a:?}: empty"))?;
        let path = l.path(a.slot).ok_or_else(|| format!("{a:?}: no path"))?;
        let by_path = k
            .cap_at(path)
            .ok()
            .flatten()
            .ok_or_else(|| format!("{a:?}: empty by path"))?;
        ensure_eq!(by_ptr, by_path);
        let obj = match by_ptr {
            Cap::Object { obj, ty, .. } => {
                ensure_eq!(ty, a.ty);
                obj
            }
            Cap::Untyped { obj, .. } => {
                ensure_eq!(a.ty, ObjectType::Untyped);
                obj
            }
            Cap::CNode { obj, .. } => {
                ensure_eq!(a.ty, ObjectType::CNode);
                obj
            }
            Cap::Other(_) => return Err(format!("{a:?}: boot cap")),
        };
        let o = k.object(obj).ok_or_else(|| format!("{a:?}: no object"))?;
        ensure_eq!((o.paddr, o.bits, o.device), (a.paddr, a.obj_bits, a.device), "{a:?}");
    }
    for t in ObjectType::ALL {
        ensure_eq!(cs.count(t), per_type[t.index()]);
    }
    // Copies name their object.
    let mut copies = 0;
    let mut caps = 0u64;
    for (slot, id, original) in cs.managed_caps() {
        caps += 1;
        let a = cs
            .object(id)
            .ok_or_else(|| format!("{slot:?}: object {id:?} unknown"))?;
        let c = k
            .lookup(cs.cptr(slot))
            .ok()
            .flatten()
            .ok_or_else(|| format!("{slot:?} empty"))?;
        let want = k.lookup(a.cptr).ok().flatten().ok_or_else(|| format!("{a:?} empty"))?;
        let obj = |c: Cap| match c {
            Cap::Object { obj, .. } | Cap::Untyped { obj, .. } | Cap::CNode { obj, .. } => Some(obj),
            Cap::Other(_) => None,
        };
        ensure_eq!(obj(c), obj(want));
        if let (Cap::Object { badge, .. }, Some(b)) = (c, cs.badge(slot)) {
            ensure_eq!(badge, b, "badge at {slot:?}");
        }
        if !original {
            copies += 1;
        }
    }
    ensure_eq!(st.copies_live, copies);
    ensure_eq!(st.objects_live, cs.objects().count() as u64);
    // Slots: free and reserved slots are empty; the rest are accounted for.
    for s in cs.slot_books().free_slots() {
        ensure_eq!(k.lookup(cs.cptr(s)).ok().flatten(), None, "free slot {s:?} occupied");
    }
    for s in cs.reserved_slots() {
        ensure_eq!(
            k.lookup(cs.cptr(s)).ok().flatten(),
            None,
            "reserved slot {s:?} occupied"
        );
    }
    ensure_eq!(
        st.slots_capacity,
        st.slots_free + st.slots_reserved + caps + pool_node_slots + 1,
        "slot identity"
    );
    k.check_memory()
}
