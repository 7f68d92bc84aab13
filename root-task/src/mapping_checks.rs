//! The mapping database on the real kernel: after every operation of a
//! scripted scenario, the database is compared with what probe threads in
//! each address space observe and with the kernel's own answers
//! (`X86Page_GetAddress` on every recorded cap).

use crate::backend::{map_rights, sel4_cptr};
use crate::manager::Manager;
use crate::probe::{Access, ProbeThread};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use cspace::ObjectType;
use hashbrown::HashMap;
use mapping_db::{AsId, FrameId};
use memory_manager::{At, CloneError, DestroyError, Mm, RevokeError};
use sel4_root_task::Verdict;
use vspace::Rights;

const PRIO: u8 = 200;
const RW: Rights = Rights::READ.union(Rights::WRITE);
const N: u64 = 8;
const VA: u64 = 0x1000_0000;
const VB: u64 = 0x2000_0000;
const VC: u64 = 0x3000_0000;
const VA2: u64 = 0x1100_0000;

struct World {
    mm: Mm,
    spaces: Vec<AsId>,
    probes: Vec<ProbeThread>,
    /// The word each frame holds at offset 0 (written through its first mapping).
    tags: HashMap<FrameId, u64>,
    /// Every cap the database ever recorded (the teardown asks the kernel
    /// that each slot is empty again).
    seen_caps: core::cell::RefCell<hashbrown::HashSet<u64>>,
}

impl World {
    fn probe(&self, asid: AsId) -> &ProbeThread {
        &self.probes[self.spaces.iter().position(|a| *a == asid).expect("space")]
    }

    /// Compares the database with the kernel and with the threads: every
    /// record's cap is a frame at the record's physical address, and it is
    /// the cap doing the mapping (unmapped through it, the thread faults at
    /// the record's address; mapped again, it reads the tag); every mapped
    /// address reads its frame's tag, every listed address that is not
    /// recorded faults, and the books' invariants hold ([`Mm::check`]).
    fn consistent(&self, m: &Manager, unmapped: &[(AsId, u64)]) -> Result<usize, String> {
        self.mm.check(m).map_err(|e| format!("books: {e}"))?;
        let mut n = 0;
        for &asid in &self.spaces {
            for r in self.mm.db().mappings_in(asid) {
                let paddr = sel4::cap::Frame::from_bits(r.cap.0).x86_page_get_address();
                if paddr != Ok(r.frame.paddr) {
                    return Err(format!(
                        "cap {:#x}: kernel says {paddr:?}, db {:#x}",
                        r.cap.0, r.frame.paddr
                    ));
                }
                self.seen_caps.borrow_mut().insert(r.cap.0);
                let want = Access::Done(self.tags[&r.frame]);
                let got = self.probe(asid).read(r.vaddr).map_err(|e| format!("{e:?}"))?;
                if got != want {
                    return Err(format!(
                        "{asid:?} {:#x}: thread saw {got:x?}, db says {want:x?}",
                        r.vaddr
                    ));
                }
                // The recorded cap is the one that maps the page: unmapped
                // through it, the thread faults there; mapped back (same
                // address, rights and attributes), the page is as before.
                let frame = sel4::cap::Frame::from_bits(r.cap.0);
                frame
                    .x86_page_unmap()
                    .map_err(|e| format!("unmap through {:#x}: {e:?}", r.cap.0))?;
                let got = self.probe(asid).read(r.vaddr).map_err(|e| format!("{e:?}"))?;
                let root = self.mm.space(asid).ok_or("space")?.root();
                let rights = map_rights(r.rights);
                frame
                    .x86_page_map(sel4_cptr(root), r.vaddr, rights, sel4::VmAttributes::DEFAULT)
                    .map_err(|e| format!("map back through {:#x}: {e:?}", r.cap.0))?;
                if got
                    != (Access::Fault {
                        addr: r.vaddr,
                        write: false,
                    })
                {
                    return Err(format!(
                        "{asid:?} {:#x}: unmapped through the recorded cap {:#x}, the thread saw {got:x?}",
                        r.vaddr, r.cap.0
                    ));
                }
                let got = self.probe(asid).read(r.vaddr).map_err(|e| format!("{e:?}"))?;
                if got != want {
                    return Err(format!("{asid:?} {:#x}: after mapping back, {got:x?}", r.vaddr));
                }
                let who = self.mm.who_maps(r.frame);
                if !who.iter().any(|w| w.asid == asid && w.vaddr == r.vaddr) {
                    return Err(format!("who_maps misses {asid:?} {:#x}", r.vaddr));
                }
                n += 1;
            }
        }
        for &(asid, va) in unmapped {
            if self.mm.what_backs(asid, va).is_some() {
                return Err(format!("{asid:?} {va:#x} expected unmapped in the db"));
            }
            let got = self.probe(asid).read(va).map_err(|e| format!("{e:?}"))?;
            if got != (Access::Fault { addr: va, write: false }) {
                return Err(format!("{asid:?} {va:#x}: thread saw {got:x?}, expected a fault"));
            }
        }
        Ok(n)
    }
}

fn pages(va: u64) -> impl Iterator<Item = u64> {
    (0..N).map(move |i| va + i * 4096)
}

fn report(v: &mut Verdict, name: &str, r: Result<String, String>) -> bool {
    match r {
        Ok(d) => v.check(name, true, &d),
        Err(d) => v.check(name, false, &d),
    }
}

/// Runs the scenario.
pub fn run(m: &mut Manager, v: &mut Verdict) {
    let base = m.cs.stats();
    let mut w = World {
        mm: Mm::new(),
        spaces: Vec::new(),
        probes: Vec::new(),
        tags: HashMap::new(),
        seen_caps: Default::default(),
    };
    let setup = (|| -> Result<String, String> {
        for _ in 0..3 {
            let id = w.mm.create_space(m).map_err(|e| format!("{e:?}"))?;
            let space = w.mm.space_unbooked(id).ok_or("space")?;
            let p = ProbeThread::start(m, space, PRIO).map_err(|e| format!("{e:?}"))?;
            w.spaces.push(id);
            w.probes.push(p);
        }
        let a = w.spaces[0];
        let frames = w.mm.map_new(m, a, VA, N, RW).map_err(|e| format!("{e:?}"))?;
        for (i, f) in frames.iter().enumerate() {
            let tag = 0x7a90_0000 + i as u64;
            w.probe(a)
                .write(VA + i as u64 * 4096, tag)
                .map_err(|e| format!("{e:?}"))?;
            w.tags.insert(*f, tag);
        }
        let n = w.consistent(m, &[])?;
        Ok(format!("{n} pages mapped in A and tagged; db, kernel and thread agree"))
    })();
    if !report(v, "mapping.setup", setup) {
        return;
    }
    let (a, b, c) = (w.spaces[0], w.spaces[1], w.spaces[2]);
    let unmapped_b: Vec<(AsId, u64)> = pages(VB).map(|va| (b, va)).collect();
    let after_setup = m.cs.stats();

    let r =
        w.mm.clone_region(m, At(a, VA), At(b, VB), N, RW)
            .map_err(|e| format!("{e:?}"))
            .and_then(|_| w.consistent(m, &[]))
            .map(|n| {
                format!(
                    "clone A->B: {n} mappings agree; frame 0 mapped by {} spaces",
                    w.mm.who_maps(first(&w)).len()
                )
            });
    report(v, "mapping.clone", r);

    let r =
        w.mm.clone_region(m, At(b, VB), At(c, VC), N, Rights::READ)
            .map_err(|e| format!("{e:?}"))
            .and_then(|_| w.consistent(m, &[]))
            .map(|n| format!("clone B->C read-only: {n} mappings agree"));
    report(v, "mapping.clone_of_clone", r);
    // The books now hold the two clones as runs (so the steps below check
    // the run books, and their materialising, against the kernel).
    sel4_root_task::Record::new("books")
        .num("db_runs", w.mm.db().run_count() as u64)
        .num("db_run_pages", w.mm.db().run_pages() as u64)
        .num("cap_runs", m.cs.copy_run_count() as u64)
        .emit();

    let r =
        w.mm.move_region(m, At(c, VC), At(a, VA2), N, Rights::READ)
            .map_err(|e| format!("{e:?}"))
            .and_then(|_| w.consistent(m, &pages(VC).map(|va| (c, va)).collect::<Vec<_>>()))
            .map(|n| format!("move C->A: C faults on every page, {n} mappings agree"));
    report(v, "mapping.move", r);

    let r =
        w.mm.destroy_region(m, b, VB, N)
            .map_err(|e| format!("{e:?}"))
            .and_then(|_| w.consistent(m, &unmapped_b))
            .map(|n| format!("destroy B: B faults on every page, copies deleted, {n} mappings agree"));
    report(v, "mapping.destroy", r);

    // Bad requests change nothing.
    let r = bad_requests(m, &mut w);
    report(v, "mapping.bad_requests_change_nothing", r);

    // Revoke every frame: each is unmapped everywhere and its copies go;
    // the figures return to where they were after the frames were made.
    let r = (|| -> Result<String, String> {
        let frames: Vec<FrameId> = w.tags.keys().copied().collect();
        let mut unmapped = Vec::new();
        let mut total = 0;
        for f in &frames {
            let who = w.mm.who_maps(*f);
            total += w.mm.revoke_frame(m, f.slot.0).map_err(|e| format!("{e:?}"))?;
            unmapped.extend(who.iter().map(|r| (r.asid, r.vaddr)));
            if w.mm.db().copies_of(*f).count() != 1 {
                return Err(format!("{f:?}: copies left after revoke"));
            }
        }
        let n = w.consistent(m, &unmapped)?;
        let now = m.cs.stats();
        // Every copy is gone (the originals stay, unmapped; the leaf table of
        // A's original region was reclaimed with its last mapping).
        if n != 0 || now.copies_live != after_setup.copies_live || w.mm.db().cap_count() != frames.len() {
            return Err(format!(
                "after revoke: {n} mappings; figures {now:?} vs {after_setup:?}"
            ));
        }
        Ok(format!(
            "{total} mappings revoked; every thread faults at each; {} caps left (the originals), copies as before",
            w.mm.db().cap_count()
        ))
    })();
    report(v, "mapping.revoke_frame", r);

    // Tear down: probes, spaces, frames; figures as before the scenario.
    let r = (|| -> Result<String, String> {
        for p in &w.probes {
            p.stop();
        }
        let frames: Vec<FrameId> = w.tags.keys().copied().collect();
        for f in frames {
            w.mm.free_frame(m, f).map_err(|e| format!("{e:?}"))?;
        }
        let probes = core::mem::take(&mut w.probes);
        for (id, p) in w.spaces.clone().into_iter().zip(probes) {
            let caps = w.mm.destroy_space(m, id).map_err(|e| format!("{e:?}"))?;
            p.release(m, caps).map_err(|e| format!("{e:?}"))?;
        }
        let now = m.cs.stats();
        if now != base {
            return Err(format!("figures before {base:?} after {now:?}"));
        }
        let (slots, untypeds) = kernel_agrees_torn_down(m, &w)?;
        Ok(format!(
            "everything returned; {} records left in the db; the kernel has the {slots} freed slots empty \
             and retypes the {untypeds} untypeds that held the frames to their full size",
            w.mm.db().len()
        ))
    })();
    report(v, "mapping.teardown_exact", r);
    // Bytes per mapping record, both directions and the cap copy's node
    // included (from the stored entries' sizes at the tables' maximum load),
    // and per page of a run.
    let cost = mapping_db::mapping_cost();
    sel4_root_task::Record::new("mapping_cost")
        .num("own_bytes", cost.own() as u64)
        .num("dense_bytes", cost.dense() as u64)
        .num("dense_without_copy_bytes", cost.dense_without_copy() as u64)
        .num("sparse_bytes", cost.sparse() as u64)
        // A page of a 512-page run (a clone of one page table): its share
        // of the run's entry and of the table's.
        .num("in_run_512_bytes", cost.in_run(512) as u64)
        .emit();
    v.check("mapping.cost", true, &format!("{cost:?}"));
}

/// Asks the kernel, not the books, that the scenario left nothing: every
/// slot a recorded cap was in is empty (a `CNode_Copy` from it fails with
/// `FailedLookup`), and every untyped that held the frames (the smallest one
/// the books hold whole) retypes into one untyped of its full size (its
/// children are all gone). Returns how many slots and untypeds were asked.
fn kernel_agrees_torn_down(m: &mut Manager, w: &World) -> Result<(usize, usize), String> {
    let scratch = m.cs.alloc_slot().map_err(|e| format!("{e:?}"))?;
    let sp = m.cs.path(scratch);
    let cnode = |c: cspace::CPtr| sel4::cap::CNode::from_bits(c.0);
    let r = (|| {
        let l = *m.cs.layout();
        let seen = w.seen_caps.borrow();
        let mut slots = 0;
        for &c in seen.iter() {
            let Some(slot) = l.slot_of(cspace::CPtr(c)) else {
                return Err(format!("{c:#x}: not a managed slot"));
            };
            if slot == scratch {
                continue;
            }
            let p = m.cs.path(slot);
            let r = cnode(sp.root).cnode_copy(
                sp.index,
                sp.depth,
                cnode(p.root),
                p.index,
                p.depth,
                sel4::CapRights::ALL,
            );
            if r != Err(sel4::Error::FailedLookup) {
                if r.is_ok() {
                    cnode(sp.root)
                        .cnode_delete(sp.index, sp.depth)
                        .map_err(|e| format!("{e:?}"))?;
                }
                return Err(format!(
                    "slot {c:#x} is not empty in the kernel: copy from it answered {r:?}"
                ));
            }
            slots += 1;
        }
        let mut nodes = Vec::new();
        for f in w.tags.keys() {
            let holder =
                m.cs.untypeds()
                    .nodes()
                    .filter(|(_, n)| matches!(n.state, cspace::NodeState::Fresh))
                    .filter(|(_, n)| n.paddr <= f.paddr && f.paddr < n.paddr + n.size())
                    .min_by_key(|(_, n)| n.size_bits)
                    .map(|(id, n)| (id, n.slot, n.size_bits));
            match holder {
                Some(h) if !nodes.contains(&h) => nodes.push(h),
                Some(_) => {}
                None => return Err(format!("frame {f:?}: no whole untyped holds it")),
            }
        }
        let d = l
            .retype_dest(cspace::SlotRange {
                cnode: scratch.cnode,
                start: scratch.index,
                len: 1,
            })
            .ok_or("scratch slot: no retype destination")?;
        for &(_, slot, bits) in &nodes {
            let ut = sel4::Cap::<sel4::cap_type::Untyped>::from_bits(m.cptr(slot));
            let ty = crate::backend::object_type_number(ObjectType::Untyped);
            ut.untyped_retype(
                ty,
                bits as sel4::Word,
                cnode(d.root),
                d.node_index,
                d.node_depth as sel4::Word,
                d.offset,
                1,
            )
            .map_err(|e| format!("untyped {slot:?} of 2^{bits} bytes does not retype whole: {e:?}"))?;
            cnode(sp.root)
                .cnode_delete(sp.index, sp.depth)
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok((slots, nodes.len()))
    })();
    m.cs.release_slot(scratch).map_err(|e| format!("{e:?}"))?;
    r
}

fn first(w: &World) -> FrameId {
    *w.tags.keys().min_by_key(|f| f.paddr).expect("frames")
}

fn bad_requests(m: &mut Manager, w: &mut World) -> Result<String, String> {
    let (a, b) = (w.spaces[0], w.spaces[1]);
    let ep = m.alloc(ObjectType::Endpoint).map_err(|e| format!("{e:?}"))?;
    let snapshot = |m: &Manager, w: &World| (m.cs.stats(), w.mm.db().len(), w.mm.db().cap_count());
    let before = snapshot(m, w);
    // Clone onto an occupied address (A's own region).
    let occupied = w.mm.clone_region(m, At(a, VA), At(a, VA2), N, RW);
    // Destroy of an unmapped range (B was destroyed).
    let unmapped = w.mm.destroy_region(m, b, VB, N);
    // Revoke of a cap that is not a frame.
    let not_frame = w.mm.revoke_frame(m, ep.cptr.0);
    // Rights beyond the source's (the A2 region is read-only).
    let rights = w.mm.clone_region(m, At(a, VA2), At(b, VB), N, RW);
    let after = snapshot(m, w);
    m.cs.free(ep.id).map_err(|e| format!("{e:?}"))?;
    let ok = matches!(occupied, Err(CloneError::Occupied { .. }))
        && matches!(unmapped, Err(DestroyError::NotMapped { .. }))
        && matches!(not_frame, Err(RevokeError::NotAFrame(_)))
        && matches!(rights, Err(CloneError::RightsExceed))
        && before == after;
    let text = format!(
        "{:?}; {:?}; {:?}; {:?}",
        occupied.err(),
        unmapped.err(),
        not_frame.err(),
        rights.err()
    );
    if ok {
        w.consistent(m, &[]).map(|_| text)
    } else {
        Err(format!("{text}; figures before {before:?} after {after:?}"))
    }
}
