//! Map and unmap of 1, 16, 512 and 4096 pages: through the `vspace` manager
//! (`path: "vspace"`) and as the raw stock system-call sequence for the same
//! work (`path: "stock"`: one `X86Page_Map` / `X86Page_Unmap` per page, no
//! bookkeeping), measured in the same run.
//!
//! Both work on address spaces whose page tables already exist (created
//! once, then kept with `TablePolicy::Retain`), so both measure the per-page
//! work. The frames are the same caps for both paths.

use crate::backend::{map_rights, sel4_cptr};
use crate::bench::{self, Measurement};
use crate::manager::Manager;
use alloc::format;
use alloc::vec::Vec;
use cspace::ObjectType;
use sel4::{cap, rdtsc, VmAttributes};
use sel4_root_task::Verdict;
use vspace::{AddressSpace, CacheAttr, Page, PageRange, Rights, Size4K, TablePolicy};

/// Region the benchmark maps (2 MiB aligned: 4096 pages fill 8 leaf tables).
const BASE: u64 = 0x80_0000_0000;

fn range(n: u64) -> PageRange<Size4K> {
    PageRange::from_count(Page::from_start_address(BASE).expect("aligned"), n).expect("range")
}

/// Runs the benchmark; a failure is reported as a failed check.
pub fn run(m: &mut Manager, v: &mut Verdict) {
    if let Err(e) = run_inner(m) {
        v.check("bench.vspace_map_unmap", false, &e);
    } else {
        v.check("bench.vspace_map_unmap", true, "every map and unmap succeeded");
    }
}

fn run_inner(m: &mut Manager) -> Result<(), alloc::string::String> {
    let max = *bench::region_sizes().last().unwrap();
    let mut frames = Vec::with_capacity(max as usize);
    let mut ids = Vec::with_capacity(max as usize);
    for _ in 0..max {
        let a = m.alloc(ObjectType::Frame4K).map_err(|e| format!("alloc: {e:?}"))?;
        frames.push(a.cptr);
        ids.push(a.id);
    }
    let rw = Rights::READ | Rights::WRITE;
    let mut stock = AddressSpace::create(&mut m.vk()).map_err(|e| format!("{e:?}"))?;
    let mut managed = AddressSpace::create(&mut m.vk()).map_err(|e| format!("{e:?}"))?;
    // Create the page tables once and keep them.
    for s in [&mut stock, &mut managed] {
        s.set_table_policy(TablePolicy::Retain);
        s.map(&mut m.vk(), range(max), &frames, rw, CacheAttr::WriteBack)
            .map_err(|e| format!("{e:?}"))?;
        let _ = s.unmap(&mut m.vk(), range(max)).map_err(|e| format!("{e:?}"))?;
    }
    let overhead = bench::rdtsc_overhead();
    let root = sel4_cptr(stock.root());
    let rights = map_rights(rw);
    for &n in bench::region_sizes() {
        let iters = bench::iterations_for(n);
        let caps: Vec<cap::Frame> = frames[..n as usize]
            .iter()
            .map(|c| cap::Frame::from_bits(c.0))
            .collect();
        let (mut maps, mut unmaps) = (Vec::new(), Vec::new());
        let mut failed = 0u64;
        for i in 0..iters + 2 {
            let t0 = rdtsc();
            for (j, f) in caps.iter().enumerate() {
                failed += f
                    .x86_page_map(root, BASE + ((j as u64) << 12), rights, VmAttributes::DEFAULT)
                    .is_err() as u64;
            }
            let t1 = rdtsc();
            for f in &caps {
                failed += f.x86_page_unmap().is_err() as u64;
            }
            let t2 = rdtsc();
            if i >= 2 {
                maps.push(t1 - t0);
                unmaps.push(t2 - t1);
            }
        }
        if failed != 0 {
            return Err(format!("{failed} stock invocations failed at {n} pages"));
        }
        Measurement {
            op: "map",
            path: "stock",
            pages: n,
        }
        .report(&mut maps, overhead);
        Measurement {
            op: "unmap",
            path: "stock",
            pages: n,
        }
        .report(&mut unmaps, overhead);

        let (mut maps, mut unmaps) = (Vec::new(), Vec::new());
        for i in 0..iters + 2 {
            let t0 = rdtsc();
            let r = managed.map(&mut m.vk(), range(n), &frames[..n as usize], rw, CacheAttr::WriteBack);
            let t1 = rdtsc();
            r.map_err(|e| format!("vspace map {n}: {e:?}"))?;
            let t2 = rdtsc();
            let u = managed.unmap(&mut m.vk(), range(n));
            let t3 = rdtsc();
            let released = u.map_err(|e| format!("vspace unmap {n}: {e:?}"))?;
            if released.len() as u64 != n {
                return Err(format!("unmap released {} of {n}", released.len()));
            }
            drop(released);
            if i >= 2 {
                maps.push(t1 - t0);
                unmaps.push(t3 - t2);
            }
        }
        Measurement {
            op: "map",
            path: "vspace",
            pages: n,
        }
        .report(&mut maps, overhead);
        Measurement {
            op: "unmap",
            path: "vspace",
            pages: n,
        }
        .report(&mut unmaps, overhead);
    }
    for s in [stock, managed] {
        let t = s.destroy(&mut m.vk()).map_err(|e| format!("destroy: {e:?}"))?;
        drop(t);
    }
    for id in ids {
        m.cs.free(id).map_err(|e| format!("free: {e:?}"))?;
    }
    Ok(())
}
