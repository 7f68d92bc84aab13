//! Host micro-benchmark of the crate's own work on the hot path of the root task's benchmark: map and
//! unmap of `PAGES` 4 KiB pages at a 2 MiB-aligned address, tables already present and kept
//! ([`TablePolicy::Retain`]; `reclaim` as third argument for [`TablePolicy::Reclaim`]), against a kernel
//! whose invocations do nothing, so only the crate is measured. Count instructions (deterministic, like
//! QEMU's `-icount`) with callgrind:
//!
//! ```text
//! cargo build --release -p vspace --example map_bench
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/map_bench PAGES ITERS [reclaim] [perpage] [scatter|shuffle] [mixed]
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'map_bench::do_(un)?map'
//! ```
//!
//! The inclusive cost of `map_bench::do_map` (`do_unmap`) divided by `ITERS` is one map (unmap) of
//! `PAGES` pages (`do_unmap` includes freeing the returned vector). `map_bench::do_first_mapped` is one
//! `first_mapped` of those pages while they are mapped, `map_bench::do_lookup` one `lookup` of the first.
//!
//! By default the kernel implements [`VSpaceKernel::map_frames_run`] and
//! [`VSpaceKernel::unmap_frames_run`] as one call per run, as the batched kernel extension does (the
//! *run path*). With `perpage`, it keeps the trait's defaults: one `map_frame` / `unmap_frame` call per
//! page (the stock kernel's path). The kernel's own calls cost a few instructions each either way.
//!
//! The caps of consecutive pages are consecutive values (as the root task allocates them) unless
//! `scatter` (values far apart) or `shuffle` (a permutation of consecutive values) says otherwise. With
//! `mixed`, 64 other consecutive caps stay mapped elsewhere throughout, so the cap index holds a block of
//! consecutive caps besides the measured ones (the general path, not the one for a space of singles only).

use std::hint::black_box;

use vspace::{
    AddressSpace, CacheAttr, CapRef, FrameSize, KernelFailure, LeafRun, Page, PageRange, Rights, RunFailure, Size4K,
    TableLevel, TablePolicy, VSpaceKernel, VirtAddr,
};

/// A kernel that accepts everything and does nothing: only the crate's work is measured.
struct NopKernel {
    next: u64,
    /// One call per run (the batched extension) rather than the trait's per-page defaults.
    runs: bool,
}

impl NopKernel {
    fn cap(&mut self) -> CapRef {
        self.next += 1;
        CapRef(self.next)
    }
}

impl VSpaceKernel for NopKernel {
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
        Ok(self.cap())
    }
    fn assign_asid(&mut self, _root: CapRef) -> Result<(), KernelFailure> {
        Ok(())
    }
    fn free_root(&mut self, _root: CapRef) {}
    fn alloc_table(&mut self, _level: TableLevel) -> Result<CapRef, KernelFailure> {
        Ok(self.cap())
    }
    fn free_table(&mut self, _level: TableLevel, _table: CapRef) {}
    fn map_table(&mut self, _l: TableLevel, _t: CapRef, _r: CapRef, _v: VirtAddr) -> Result<(), KernelFailure> {
        Ok(())
    }
    fn unmap_table(&mut self, _level: TableLevel, _table: CapRef) -> Result<(), KernelFailure> {
        Ok(())
    }
    #[inline(never)]
    fn map_frame(
        &mut self,
        frame: CapRef,
        _root: CapRef,
        vaddr: VirtAddr,
        _size: FrameSize,
        _rights: Rights,
        _attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        black_box((frame, vaddr));
        Ok(())
    }
    fn remap_frame(&mut self, _f: CapRef, _r: CapRef, _rights: Rights, _attr: CacheAttr) -> Result<(), KernelFailure> {
        Ok(())
    }
    #[inline(never)]
    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
        black_box(frame);
        Ok(())
    }
    #[inline(never)]
    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        if !self.runs {
            for (i, &frame) in frames.iter().enumerate() {
                self.map_frame(frame, root, run.vaddr_of(i), run.size, rights, attr)
                    .map_err(|failure| RunFailure { done: i, failure })?;
            }
            return Ok(());
        }
        black_box((run, frames));
        Ok(())
    }
    #[inline(never)]
    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        if !self.runs {
            for (i, &frame) in frames.iter().enumerate() {
                self.unmap_frame(frame)
                    .map_err(|failure| RunFailure { done: i, failure })?;
            }
            return Ok(());
        }
        black_box((run, frames));
        Ok(())
    }
}

/// How the benchmark's frame caps are numbered.
#[derive(Clone, Copy, Debug)]
enum Caps {
    Consecutive,
    Scatter,
    Shuffle,
}

/// Same region as the root task's benchmark (2 MiB aligned).
const BASE: u64 = 0x80_0000_0000;

fn range(n: u64) -> PageRange<Size4K> {
    PageRange::from_count(Page::from_start_address(BASE).expect("aligned"), n).expect("range")
}

#[inline(never)]
fn do_map(s: &mut AddressSpace, k: &mut NopKernel, n: u64, frames: &[CapRef]) {
    s.map(
        k,
        range(n),
        &frames[..n as usize],
        Rights::READ_WRITE,
        CacheAttr::WriteBack,
    )
    .expect("map");
}

#[inline(never)]
fn do_unmap(s: &mut AddressSpace, k: &mut NopKernel, n: u64) {
    let released = s.unmap(k, range(n)).expect("unmap");
    assert_eq!(released.len() as u64, n);
    drop(black_box(released));
}

/// `first_mapped` of the first `n` pages, and `lookup` of the first page, while they are mapped.
#[inline(never)]
fn do_first_mapped(s: &AddressSpace, n: u64) {
    assert_eq!(black_box(s).first_mapped(range(n)), Some(VirtAddr::new(BASE)));
}

#[inline(never)]
fn do_lookup(s: &AddressSpace) {
    assert!(black_box(s).lookup(VirtAddr::new(BASE)).is_some());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(4096, |a| a.parse().expect("pages"));
    let iters: u64 = args.get(2).map_or(10, |a| a.parse().expect("iterations"));
    let reclaim = args[3.min(args.len())..].iter().any(|a| a == "reclaim");
    let perpage = args[3.min(args.len())..].iter().any(|a| a == "perpage");
    let mixed = args[3.min(args.len())..].iter().any(|a| a == "mixed");
    let caps = if args[3.min(args.len())..].iter().any(|a| a == "scatter") {
        Caps::Scatter
    } else if args[3.min(args.len())..].iter().any(|a| a == "shuffle") {
        Caps::Shuffle
    } else {
        Caps::Consecutive
    };
    let mut k = NopKernel {
        next: 0,
        runs: !perpage,
    };
    let max = 4096u64.max(n);
    // The caps of consecutive pages: consecutive slots (default), slots far apart (`scatter`), or a
    // permutation of consecutive slots (`shuffle`).
    let frames: Vec<CapRef> = (0..max)
        .map(|i| match caps {
            Caps::Consecutive => CapRef(0x10_0000 + i),
            Caps::Scatter => CapRef(0x10_0000 + i * 4099),
            Caps::Shuffle => CapRef(0x10_0000 + i * 97 % max),
        })
        .collect();
    let mut s = AddressSpace::create(&mut k).expect("create");
    s.set_table_policy(TablePolicy::Retain);
    // Create the tables once (and warm the shadow's maps), as the root task's benchmark does.
    s.map(&mut k, range(max), &frames, Rights::READ_WRITE, CacheAttr::WriteBack)
        .expect("map");
    s.unmap(&mut k, range(max)).expect("unmap");
    if mixed {
        let other: Vec<CapRef> = (0..64).map(|i| CapRef(0x1_0000_0000 + i)).collect();
        let at: PageRange<Size4K> =
            PageRange::from_count(Page::from_start_address(BASE + (1 << 30)).expect("aligned"), 64).expect("range");
        s.map(&mut k, at, &other, Rights::READ_WRITE, CacheAttr::WriteBack)
            .expect("map");
    }
    if reclaim {
        s.set_table_policy(TablePolicy::Reclaim);
        s.reclaim(&mut k).expect("reclaim");
    }
    for _ in 0..iters {
        do_map(&mut s, &mut k, n, &frames);
        do_first_mapped(&s, n);
        do_lookup(&s);
        do_unmap(&mut s, &mut k, n);
    }
    s.check().expect("invariants");
    println!(
        "{iters} x map + unmap of {n} pages, {:?}, {}, {caps:?} caps{}",
        if reclaim {
            TablePolicy::Reclaim
        } else {
            TablePolicy::Retain
        },
        if perpage {
            "per-page kernel calls"
        } else {
            "one kernel call per run"
        },
        if mixed { ", 64 other caps mapped" } else { "" }
    );
    let t = s.destroy(&mut k).expect("destroy");
    drop(black_box(t));
}
