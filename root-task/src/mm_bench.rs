//! The M-M/S-CD talk's table, reproduced: Clone, Destroy and Move of regions
//! of 1, 16, 512 and 4096 pages, on two paths measured in the same run:
//! - `stock`: the raw system-call sequence, no bookkeeping: Clone is
//!   `CNode_Copy` + `X86Page_Map` per page, Destroy is `X86Page_Unmap` +
//!   `CNode_Delete` per page, Move is Clone into the other space then
//!   Destroy of the source;
//! - `tracked`: the same work through the memory manager (`mm`: cspace,
//!   vspace and the mapping database).
//!
//! Also `CNode_Copy`, `CNode_Delete`, `X86Page_Map` and `X86Page_Unmap` on
//! their own (`stock`). Destination page tables exist already on both paths
//! (`TablePolicy::Retain`), so the figures are the per-page work.

// Parallel arrays (slots, paths, cptrs) indexed by page: clearer than zips.
#![allow(clippy::needless_range_loop)]

use crate::backend::sel4_cptr;
use crate::bench::{self, Measurement};
use crate::manager::Manager;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use mapping_db::AsId;
use memory_manager::{At, Mm};
use sel4::{cap, rdtsc, CapRights, VmAttributes};
use sel4_root_task::Verdict;
use vspace::{Rights, TablePolicy};

const SRC: u64 = 0x100_0000_0000;
const DST: u64 = 0x200_0000_0000;
const ALT: u64 = 0x300_0000_0000;
const WARMUP: usize = 2;

/// Runs the benchmark; failures are reported as a failed check.
pub fn run(m: &mut Manager, v: &mut Verdict) {
    match run_inner(m) {
        Ok(()) => v.check("bench.mm_clone_destroy_move", true, "every operation succeeded"),
        Err(e) => v.check("bench.mm_clone_destroy_move", false, &e),
    };
}

/// Slot paths for the stock path's copies.
struct Slots {
    slots: Vec<cspace::Slot>,
    paths: Vec<cspace::CapPath>,
    cptrs: Vec<u64>,
}

fn slots(m: &mut Manager, n: u64) -> Result<Slots, String> {
    let mut s = Slots {
        slots: Vec::new(),
        paths: Vec::new(),
        cptrs: Vec::new(),
    };
    for _ in 0..n {
        let slot = m.cs.alloc_slot().map_err(|e| format!("{e:?}"))?;
        s.paths.push(m.cs.path(slot));
        s.cptrs.push(m.cptr(slot));
        s.slots.push(slot);
    }
    Ok(s)
}

/// Where the manager's instructions go: a few more rounds of the measured
/// sequence (Clone S->D, Move D->E, Destroy E) with the phase clock on
/// (after the measured iterations, so they never include it), one record per
/// operation and phase: op `clone.<phase>`, `move.<phase>` (its clone and its
/// destroy together) or `destroy.<phase>`, ticks summed over the phase's laps
/// (each lap's rdtsc included: a few tens of ticks per operation). `kernel`
/// is the part of the other phases spent in kernel invocations.
fn breakdown(m: &mut Manager, mm: &mut Mm, s: AsId, d: AsId, e: AsId, n: u64) -> Result<(), String> {
    use crate::phases::{self, Phase};
    const ITERS: usize = 5;
    const OPS: [&str; 3] = ["clone", "move", "destroy"];
    let rw = Rights::READ | Rights::WRITE;
    let mut samples = [[[0u64; ITERS]; 7]; 3];
    for it in 0..ITERS {
        phases::enable(true);
        let r = mm
            .clone_region(m, At(s, SRC), At(d, DST), n, rw)
            .map_err(|e| format!("{e:?}"));
        let c = phases::take();
        let r = r.and_then(|()| {
            mm.move_region(m, At(d, DST), At(e, ALT), n, rw)
                .map_err(|e| format!("{e:?}"))
        });
        let mv = phases::take();
        let r = r.and_then(|()| mm.destroy_region(m, e, ALT, n).map_err(|e| format!("{e:?}")));
        let x = phases::take();
        phases::enable(false);
        r.map_err(|e| format!("breakdown {n}: {e}"))?;
        for p in 0..7 {
            samples[0][p][it] = c[p];
            samples[1][p][it] = mv[p];
            samples[2][p][it] = x[p];
        }
    }
    for (k, op) in OPS.into_iter().enumerate() {
        for (p, phase) in Phase::ALL.into_iter().enumerate() {
            if samples[k][p].iter().all(|t| *t == 0) {
                continue;
            }
            let name = format!("{op}.{}", phase.name());
            Measurement {
                op: &name,
                path: if crate::backend::batched_leaf() {
                    "batched"
                } else {
                    "tracked"
                },
                pages: n,
            }
            .report(&mut samples[k][p], 0);
        }
    }
    Ok(())
}

fn cnode(p: &cspace::CapPath) -> cap::CNode {
    cap::CNode::from_bits(p.root.0)
}

fn run_inner(m: &mut Manager) -> Result<(), String> {
    let sizes = bench::region_sizes();
    let max = *sizes.last().unwrap();
    let rw = Rights::READ | Rights::WRITE;
    let mut mm = Mm::new();
    let err = |e| format!("{e:?}");
    let s = mm.create_space(m).map_err(err)?;
    let spaces: Vec<AsId> = (0..4)
        .map(|_| mm.create_space(m))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e:?}"))?;
    let (d, e, d0, e0) = (spaces[0], spaces[1], spaces[2], spaces[3]);
    let frames = mm.map_new(m, s, SRC, max, rw).map_err(|e| format!("{e:?}"))?;
    // Page tables: made once in every destination, kept from then on.
    for (x, va) in [(d, DST), (e, ALT), (d0, DST), (e0, ALT)] {
        if !mm.set_table_policy(x, TablePolicy::Retain) {
            return Err("space".into());
        }
        mm.clone_region(m, At(s, SRC), At(x, va), max, rw)
            .map_err(|e| format!("{e:?}"))?;
        mm.destroy_region(m, x, va, max).map_err(|e| format!("{e:?}"))?;
    }
    let root = |x: AsId, mm: &Mm| sel4_cptr(mm.space(x).expect("space").root());
    let (d0_root, e0_root) = (root(d0, &mm), root(e0, &mm));
    let first = slots(m, max)?;
    let second = slots(m, max)?;
    let orig: Vec<cspace::CapPath> = frames
        .iter()
        .map(|f| m.cs.path(m.cs.layout().slot_of(f.slot).expect("slot")))
        .collect();
    let overhead = bench::rdtsc_overhead();
    let rights = CapRights::READ_WRITE;
    let attr = VmAttributes::DEFAULT;
    let mut failed = 0u64;

    for &n in sizes {
        let k = n as usize;
        let iters = bench::iterations_for(n);
        let mut t: [Vec<u64>; 7] = Default::default();
        let mut tracked: Vec<[u64; 3]> = Vec::new();
        for it in 0..iters + WARMUP {
            // --- stock: the four primitives on their own ---
            let t0 = rdtsc();
            for i in 0..k {
                let (dp, sp) = (&first.paths[i], &orig[i]);
                failed += cnode(dp)
                    .cnode_copy(dp.index, dp.depth, cnode(sp), sp.index, sp.depth, rights)
                    .is_err() as u64;
            }
            let t1 = rdtsc();
            for i in 0..k {
                let va = DST + ((i as u64) << 12);
                failed += cap::Frame::from_bits(first.cptrs[i])
                    .x86_page_map(d0_root, va, rights, attr)
                    .is_err() as u64;
            }
            let t2 = rdtsc();
            for i in 0..k {
                failed += cap::Frame::from_bits(first.cptrs[i]).x86_page_unmap().is_err() as u64;
            }
            let t3 = rdtsc();
            for p in &first.paths[..k] {
                failed += cnode(p).cnode_delete(p.index, p.depth).is_err() as u64;
            }
            let t4 = rdtsc();
            // --- stock Clone (copy + map per page), Move (clone into E0, destroy D0), Destroy ---
            for i in 0..k {
                let (dp, sp) = (&first.paths[i], &orig[i]);
                failed += cnode(dp)
                    .cnode_copy(dp.index, dp.depth, cnode(sp), sp.index, sp.depth, rights)
                    .is_err() as u64;
                let va = DST + ((i as u64) << 12);
                failed += cap::Frame::from_bits(first.cptrs[i])
                    .x86_page_map(d0_root, va, rights, attr)
                    .is_err() as u64;
            }
            let t5 = rdtsc();
            for i in 0..k {
                let (dp, sp) = (&second.paths[i], &first.paths[i]);
                failed += cnode(dp)
                    .cnode_copy(dp.index, dp.depth, cnode(sp), sp.index, sp.depth, rights)
                    .is_err() as u64;
                let va = ALT + ((i as u64) << 12);
                failed += cap::Frame::from_bits(second.cptrs[i])
                    .x86_page_map(e0_root, va, rights, attr)
                    .is_err() as u64;
                failed += cap::Frame::from_bits(first.cptrs[i]).x86_page_unmap().is_err() as u64;
                failed += cnode(sp).cnode_delete(sp.index, sp.depth).is_err() as u64;
            }
            let t6 = rdtsc();
            for i in 0..k {
                let p = &second.paths[i];
                failed += cap::Frame::from_bits(second.cptrs[i]).x86_page_unmap().is_err() as u64;
                failed += cnode(p).cnode_delete(p.index, p.depth).is_err() as u64;
            }
            let t7 = rdtsc();
            // --- tracked: the same Clone, Move, Destroy through the manager ---
            mm.clone_region(m, At(s, SRC), At(d, DST), n, rw)
                .map_err(|e| format!("tracked clone {n}: {e:?}"))?;
            let t8 = rdtsc();
            mm.move_region(m, At(d, DST), At(e, ALT), n, rw)
                .map_err(|e| format!("tracked move {n}: {e:?}"))?;
            let t9 = rdtsc();
            mm.destroy_region(m, e, ALT, n)
                .map_err(|e| format!("tracked destroy {n}: {e:?}"))?;
            let t10 = rdtsc();
            if it >= WARMUP {
                t[0].push(t1 - t0);
                t[1].push(t2 - t1);
                t[2].push(t3 - t2);
                t[3].push(t4 - t3);
                t[4].push(t5 - t4);
                t[5].push(t6 - t5);
                t[6].push(t7 - t6);
                tracked.push([t8 - t7, t9 - t8, t10 - t9]);
            }
        }
        if failed != 0 {
            return Err(format!("{failed} stock invocations failed at {n} pages"));
        }
        let names = [
            ("cnode_copy", "stock"),
            ("page_map", "stock"),
            ("page_unmap", "stock"),
            ("cnode_delete", "stock"),
            ("clone", "stock"),
            ("move", "stock"),
            ("destroy", "stock"),
        ];
        for ((op, path), samples) in names.iter().zip(t.iter_mut()) {
            Measurement { op, path, pages: n }.report(samples, overhead);
        }
        for (j, op) in ["clone", "move", "destroy"].iter().enumerate() {
            let mut samples: Vec<u64> = tracked.iter().map(|x| x[j]).collect();
            Measurement {
                op,
                // The manager on a stock kernel is "tracked"; on a kernel with
                // the batched leaf-table invocations, which it uses, "batched".
                path: if crate::backend::batched_leaf() {
                    "batched"
                } else {
                    "tracked"
                },
                pages: n,
            }
            .report(&mut samples, overhead);
        }
        breakdown(m, &mut mm, s, d, e, n)?;
    }
    // Give everything back.
    for set in [first, second] {
        for s in set.slots {
            m.cs.release_slot(s).map_err(|e| format!("{e:?}"))?;
        }
    }
    for f in frames {
        mm.free_frame(m, f).map_err(|e| format!("{e:?}"))?;
    }
    for x in [s, d, e, d0, e0] {
        mm.destroy_space(m, x).map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}
