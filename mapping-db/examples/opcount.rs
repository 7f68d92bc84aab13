//! Instruction counts of the per-page operations, for `valgrind --tool=callgrind`.
//!
//! Mirrors the memory manager's map, clone and destroy of a run of 4 KiB pages: 4096 frames mapped
//! (originals) at `SRC` in space 0 (8 full page tables), then per round: lookups of the sources, lookups of
//! the (free) destination, a copy of each frame's cap, the copies mapped at `DST` in space 1, lookups there,
//! then removal of the mappings and of the copies. Round 1 starts from tables that never held the copies,
//! round 2 runs in tables already grown. Each phase is its own non-inlined function, so its cost can be cut
//! out of the profile.
//!
//! Modes (first argument): `single` (default) uses one call per page; `run` uses
//! [`MappingDb::add_copies`], [`MappingDb::insert_run`] and [`MappingDb::remove_run`] (one call for the
//! 4096 pages); `batch` uses one [`Batch`] per page table (512 pages) for the inserts and the removals;
//! `clone` looks the sources up with [`MappingDb::mappings_run`], copies and maps with
//! [`MappingDb::clone_run`] and removes with [`MappingDb::remove_run`] (one call each for the 4096 pages);
//! `destroy` is `clone` but removes the mappings and their copies with one [`MappingDb::destroy_run`] (so
//! it has no `remove_copy` phase); `region` is the manager's clone and destroy through the region
//! operations: [`MappingDb::source_caps`], [`MappingDb::clone_region`] (no records built), then
//! [`MappingDb::caps_run`] and [`MappingDb::destroy_region`].
//!
//! The region operations keep a clone as copy runs (the database's default: `clone_region` then costs O(1)
//! per page table plus reading each source page, `caps_run` writes the answer from the run, and
//! `destroy_region` costs O(1) per run); a mode with the suffix `-pages` (`region-pages`,
//! `region16-pages`, ...) uses a database without runs (`MappingDb::with_runs(false)`), every clone kept
//! per page. In the `region` modes the originals are mapped by one [`MappingDb::insert_run`] (as the manager
//! maps fresh frames), kept as original runs (one per page table): the sources of the clones are runs too.
//! Measured (instructions per page, round 2 of `region`, N = 4096): with runs `source_caps` 3.8,
//! `clone_region` 5.8, `caps_run` 5.9, `destroy_region` 4.3 (`insert_run` of the originals 91); before
//! original runs (per-page sources) 32, 32, 6 and 3; per page (`region-pages`) 32, 148, 26 and 129.
//!
//! Modes `region1` and `region16` are the manager's benchmark of small regions in a steady state: the same
//! 1 (or 16) pages cloned from space 0 into the otherwise empty space 1 (same copy slots, far from any
//! other capability) and destroyed again, [`SMALL_ROUNDS`] times. Each round creates and frees the
//! destination's space, leaf table, span counters, address chunk and slot chunk (the worst case: nothing
//! else keeps them alive). Each operation is one non-inlined `op_*` function called once per round: its
//! inclusive cost (`callgrind_annotate --inclusive=yes`) divided by [`SMALL_ROUNDS`] is the cost per call.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.small target/release/examples/opcount region1
//! callgrind_annotate --inclusive=yes cg.small | grep op_
//! ```
//!
//! ```text
//! cargo build --release -p mapping-db --example opcount
//! valgrind --tool=callgrind --dump-before='*phase_*' --callgrind-out-file=cg.out \
//!     target/release/examples/opcount [single|run|batch|clone|destroy|region]
//! ```
//!
//! Each dump `cg.out.K` then holds phase K-1 (`cg.out` the final check, after `phase_end`): its `totals:`
//! (or `summary:`) line divided by
//! `N` is the cost per page, the phase's loop included (about 10 to 30 instructions per page: the phase
//! function's own cost in `callgrind_annotate`). Without valgrind the program prints the heap allocations
//! per phase.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use mapping_db::*;

/// Counts heap allocations (and reallocations).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 4096;
const PAGE: u64 = 4096;
const SRC: u64 = 0x100_0000_0000;
const DST: u64 = 0x200_0000_0000;
const RW: Rights = Rights::READ.union(Rights::WRITE);

fn frame(i: u64) -> FrameId {
    FrameId::new(CapSlot(0x1000 + i), 0x1_0000_0000 + i * PAGE)
}

fn copy_slot(round: u64, i: u64) -> CapSlot {
    CapSlot(0x10_0000 * (round + 1) + i)
}

fn rec(f: FrameId, cap: CapSlot, asid: AsId, base: u64, i: u64) -> Mapping {
    let va = base + i * PAGE;
    Mapping::new(
        f,
        cap,
        asid,
        va,
        PageSize::Small,
        RW,
        CapSlot(0x8000 + asid.0 as u64 * 64 + (va >> 21) % 64),
    )
}

#[inline(never)]
fn phase_add_frame(db: &mut MappingDb) {
    for i in 0..N {
        db.add_frame(frame(i), PageSize::Small).unwrap();
    }
}

#[inline(never)]
fn phase_insert_orig(db: &mut MappingDb) {
    for i in 0..N {
        db.insert(rec(frame(i), frame(i).slot, AsId(0), SRC, i)).unwrap();
    }
}

/// The originals mapped as the manager maps fresh frames: one `insert_run` (with runs, kept as original runs,
/// one per page table).
#[inline(never)]
fn phase_insert_run_orig(db: &mut MappingDb) {
    let recs: Vec<Mapping> = (0..N).map(|i| rec(frame(i), frame(i).slot, AsId(0), SRC, i)).collect();
    db.insert_run(&recs).unwrap();
}

#[inline(never)]
fn phase_lookup_hit(db: &MappingDb, asid: AsId, base: u64) {
    for i in 0..N {
        black_box(db.lookup(asid, base + i * PAGE).unwrap());
    }
}

#[inline(never)]
fn phase_lookup_miss(db: &MappingDb, asid: AsId, base: u64) {
    for i in 0..N {
        assert!(db.lookup(asid, base + i * PAGE).is_none());
    }
}

#[inline(never)]
fn phase_add_copy(db: &mut MappingDb, round: u64) {
    for i in 0..N {
        db.add_copy(frame(i), copy_slot(round, i), frame(i).slot).unwrap();
    }
}

#[inline(never)]
fn phase_insert(db: &mut MappingDb, round: u64) {
    for i in 0..N {
        db.insert(rec(frame(i), copy_slot(round, i), AsId(1), DST, i)).unwrap();
    }
}

#[inline(never)]
fn phase_remove_by_vaddr(db: &mut MappingDb) {
    for i in 0..N {
        black_box(db.remove_by_vaddr(AsId(1), DST + i * PAGE).unwrap());
    }
}

#[inline(never)]
fn phase_remove_copy(db: &mut MappingDb, round: u64) {
    for i in 0..N {
        db.remove_copy(copy_slot(round, i)).unwrap();
    }
}

#[inline(never)]
fn phase_add_copies(db: &mut MappingDb, copies: &[(FrameId, CapSlot, CapSlot)]) {
    db.add_copies(copies).unwrap();
}

#[inline(never)]
fn phase_insert_run(db: &mut MappingDb, recs: &[Mapping]) {
    db.insert_run(recs).unwrap();
}

#[inline(never)]
fn phase_remove_run(db: &mut MappingDb) {
    black_box(db.remove_run(AsId(1), DST, N as usize).unwrap());
}

#[inline(never)]
fn phase_mappings_run(db: &MappingDb, asid: AsId, base: u64) {
    black_box(db.mappings_run(asid, base, N as usize).unwrap());
}

#[inline(never)]
fn phase_destroy_run(db: &mut MappingDb) {
    black_box(db.destroy_run(AsId(1), DST, N as usize).unwrap());
}

/// Marks the end of the last phase (the final check is not counted in it).
#[inline(never)]
fn phase_end() {
    black_box(());
}

#[inline(never)]
fn phase_clone_run(db: &mut MappingDb, recs: &[(Mapping, CapSlot)]) {
    db.clone_run(recs).unwrap();
}

#[inline(never)]
fn phase_source_caps(db: &MappingDb, asid: AsId, base: u64) {
    black_box(db.source_caps(asid, base, N as usize, RW).unwrap());
}

#[inline(never)]
fn phase_clone_region(db: &mut MappingDb, round: u64) {
    let c = RegionClone {
        src: AsId(0),
        src_vaddr: SRC,
        dst: AsId(1),
        dst_vaddr: DST,
        n: N as usize,
        first_copy: copy_slot(round, 0),
        parent: CloneParent::Original,
        rights: RW,
    };
    db.clone_region(&c, |base| rec(frame(0), CapSlot(0), AsId(1), base, 0).leaf.table)
        .unwrap();
}

#[inline(never)]
fn phase_caps_run(db: &MappingDb, asid: AsId, base: u64) {
    black_box(db.caps_run(asid, base, N as usize).unwrap());
}

#[inline(never)]
fn phase_destroy_region(db: &mut MappingDb) {
    db.destroy_region(AsId(1), DST, N as usize).unwrap();
}

/// Rounds of the `region1` and `region16` modes.
const SMALL_ROUNDS: u64 = 10_000;

#[inline(never)]
fn op_source_caps(db: &MappingDb, n: usize) -> Vec<CapSlot> {
    db.source_caps(AsId(0), SRC, n, RW).unwrap()
}

#[inline(never)]
fn op_clone_region(db: &mut MappingDb, n: usize) {
    let c = RegionClone {
        src: AsId(0),
        src_vaddr: SRC,
        dst: AsId(1),
        dst_vaddr: DST,
        n,
        first_copy: copy_slot(0, 0),
        parent: CloneParent::Original,
        rights: RW,
    };
    db.clone_region(&c, |base| rec(frame(0), CapSlot(0), AsId(1), base, 0).leaf.table)
        .unwrap();
}

#[inline(never)]
fn op_caps_run(db: &MappingDb, n: usize) -> Vec<(CapSlot, bool)> {
    db.caps_run(AsId(1), DST, n).unwrap()
}

#[inline(never)]
fn op_destroy_region(db: &mut MappingDb, n: usize) {
    db.destroy_region(AsId(1), DST, n).unwrap();
}

/// The `region1` / `region16` modes: clone and destroy `n` pages, [`SMALL_ROUNDS`] times.
fn small_regions(db: &mut MappingDb, n: usize) {
    let heap = db.approx_heap_bytes();
    // One round outside the counted functions: the tables' first growth is not the steady state.
    let c = RegionClone {
        src: AsId(0),
        src_vaddr: SRC,
        dst: AsId(1),
        dst_vaddr: DST,
        n,
        first_copy: copy_slot(0, 0),
        parent: CloneParent::Original,
        rights: RW,
    };
    db.clone_region(&c, |base| rec(frame(0), CapSlot(0), AsId(1), base, 0).leaf.table)
        .unwrap();
    db.destroy_region(AsId(1), DST, n).unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..SMALL_ROUNDS {
        black_box(op_source_caps(db, n));
        op_clone_region(db, n);
        black_box(op_caps_run(db, n));
        op_destroy_region(db, n);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    println!(
        "{n} pages: {:.3} allocations per round (2 are the returned Vecs)",
        allocs as f64 / SMALL_ROUNDS as f64
    );
    println!("heap bytes: {heap} before, {} after", db.approx_heap_bytes());
}

#[inline(never)]
fn phase_commit_insert(db: &mut MappingDb, batches: Vec<Batch>) {
    for b in batches {
        db.commit(b).unwrap();
    }
}

#[inline(never)]
fn phase_commit_remove(db: &mut MappingDb, batches: Vec<Batch>) {
    for b in batches {
        black_box(db.commit(b).unwrap());
    }
}

/// Runs `f` and prints the heap allocations it made, per page.
fn counted(name: &str, f: impl FnOnce()) {
    let before = ALLOCS.load(Ordering::Relaxed);
    f();
    let n = ALLOCS.load(Ordering::Relaxed) - before;
    println!("{name:24} {:8.3} allocations per page", n as f64 / N as f64);
}

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "single".into());
    // A `-pages` suffix: the same without copy runs (every clone kept per page).
    let (mode, runs) = match arg.strip_suffix("-pages") {
        Some(m) => (m.to_string(), false),
        None => (arg, true),
    };
    let mut db = MappingDb::with_runs(runs);
    counted("add_frame", || phase_add_frame(&mut db));
    if mode.starts_with("region") {
        counted("insert_run (originals)", || phase_insert_run_orig(&mut db));
    } else {
        counted("insert (originals)", || phase_insert_orig(&mut db));
    }
    if let Some(n) = mode.strip_prefix("region").and_then(|n| n.parse().ok()) {
        small_regions(&mut db, n);
        db.check().unwrap();
        assert_eq!(db.len(), N as usize);
        return;
    }
    for round in 0..2 {
        if mode == "clone" || mode == "destroy" {
            counted("mappings_run (sources)", || phase_mappings_run(&db, AsId(0), SRC));
        } else if mode == "region" {
            counted("source_caps", || phase_source_caps(&db, AsId(0), SRC));
        } else {
            counted("lookup (sources)", || phase_lookup_hit(&db, AsId(0), SRC));
        }
        counted("lookup (destination)", || phase_lookup_miss(&db, AsId(1), DST));
        let recs: Vec<Mapping> = (0..N)
            .map(|i| rec(frame(i), copy_slot(round, i), AsId(1), DST, i))
            .collect();
        match mode.as_str() {
            "single" => {
                counted("add_copy", || phase_add_copy(&mut db, round));
                counted("insert", || phase_insert(&mut db, round));
            }
            "run" => {
                let copies: Vec<_> = (0..N).map(|i| (frame(i), copy_slot(round, i), frame(i).slot)).collect();
                counted("add_copies", || phase_add_copies(&mut db, &copies));
                counted("insert_run", || phase_insert_run(&mut db, &recs));
            }
            "batch" => {
                counted("add_copy", || phase_add_copy(&mut db, round));
                let batches = recs
                    .chunks(512)
                    .map(|c| {
                        let mut b = Batch::new(c[0].leaf);
                        for &m in c {
                            b.insert(m);
                        }
                        b
                    })
                    .collect();
                counted("commit (inserts)", || phase_commit_insert(&mut db, batches));
            }
            "clone" | "destroy" => {
                let clones: Vec<_> = recs.iter().map(|&m| (m, m.frame.slot)).collect();
                counted("clone_run", || phase_clone_run(&mut db, &clones));
            }
            "region" => counted("clone_region", || phase_clone_region(&mut db, round)),
            _ => panic!("mode: single, run, batch, clone, destroy, region, region1 or region16"),
        }
        counted("lookup (copies)", || phase_lookup_hit(&db, AsId(1), DST));
        match mode.as_str() {
            "run" | "clone" => counted("remove_run", || phase_remove_run(&mut db)),
            "destroy" => counted("destroy_run", || phase_destroy_run(&mut db)),
            "region" => {
                counted("caps_run", || phase_caps_run(&db, AsId(1), DST));
                counted("destroy_region", || phase_destroy_region(&mut db));
            }
            "batch" => {
                let batches = recs
                    .chunks(512)
                    .map(|c| {
                        let mut b = Batch::new(c[0].leaf);
                        for m in c {
                            b.remove(m.index);
                        }
                        b
                    })
                    .collect();
                counted("commit (removals)", || phase_commit_remove(&mut db, batches));
            }
            _ => counted("remove_by_vaddr", || phase_remove_by_vaddr(&mut db)),
        }
        if mode != "destroy" && mode != "region" {
            counted("remove_copy", || phase_remove_copy(&mut db, round));
        }
    }
    phase_end();
    db.check().unwrap();
    assert_eq!(db.len(), N as usize);
}
