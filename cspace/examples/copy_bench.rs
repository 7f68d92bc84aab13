//! Instruction-count benchmark of the crate's own overhead for copies and
//! deletes: drives [`CSpace`] with a kernel whose every operation succeeds at
//! once, so only the bookkeeping is measured.
//!
//! ```text
//! cargo build --release -p cspace --example copy_bench
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/examples/copy_bench
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep 'copy_bench::bench_'
//! ```
//! Each `bench_*` function does `N` operations (one per frame cap, `N` frame
//! caps); divide its inclusive count by `N`. The program also prints the heap
//! allocations per operation. Round 1 starts cold (the books' tables and the
//! CSpace grow); round 2 repeats on the warm books, the steady state of a
//! long-running manager; then the batched calls, in batches of 1 (a page
//! fault's; `copy_many_into_1`: into a vector kept for the purpose), of 16,
//! of 64, of 512 (the root task's case: a region's frame caps, consecutive
//! slots), of 512 in an order that makes no run of consecutive slots
//! (`_scattered`), and of `N`. For a batch size `b`, the fixed cost of a
//! call is about `b` times the excess of its per-operation figure over the
//! 512 one.
//! The per-operation figures include the benchmark's own loop (the loop,
//! `black_box`, collecting the results, and freeing the vectors
//! `copy_many` returns), which `bench_loop_only` measures alone (without
//! the freeing).

use cspace::{BootUntyped, CPtr, CSpace, CapData, CapPath, Config, KernelError, KernelOps, ObjectType, Placement};
use cspace::{RetypeDest, Rights, Slot};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts heap allocations.
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

/// Every kernel call succeeds at once.
struct NullKernel;

impl KernelOps for NullKernel {
    fn untyped_retype(&mut self, _: CPtr, _: ObjectType, _: u8, _: RetypeDest) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_copy(&mut self, _: CapPath, _: CapPath, _: Rights) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_mint(&mut self, _: CapPath, _: CapPath, _: Rights, _: CapData) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_move(&mut self, _: CapPath, _: CapPath) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_delete(&mut self, _: CapPath) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_revoke(&mut self, _: CapPath) -> Result<(), KernelError> {
        Ok(())
    }
    fn set_cspace_root(&mut self, _: CPtr, _: u8) -> Result<(), KernelError> {
        Ok(())
    }
}

/// Operations per phase (one per frame cap).
const N: usize = 4096;

/// Copies per batch in the first batched phase.
const BATCH: usize = 64;

const RIGHTS: Rights = Rights::READ.union(Rights::WRITE);

#[inline(always)]
fn copies(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    let mut out = Vec::with_capacity(srcs.len());
    for &s in srcs {
        out.push(cs.copy(black_box(s), RIGHTS).expect("copy"));
    }
    out
}

#[inline(always)]
fn deletes(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    for &s in slots {
        cs.delete(black_box(s)).expect("delete");
    }
}

#[inline(always)]
fn copies_batched(cs: &mut CSpace<NullKernel>, srcs: &[Slot], batch: usize) -> Vec<Slot> {
    let mut out = Vec::with_capacity(srcs.len());
    for b in srcs.chunks(batch) {
        out.extend(cs.copy_many(black_box(b), RIGHTS).expect("copy_many"));
    }
    out
}

#[inline(always)]
fn deletes_batched(cs: &mut CSpace<NullKernel>, slots: &[Slot], batch: usize) {
    for b in slots.chunks(batch) {
        cs.delete_many(black_box(b)).expect("delete_many");
    }
}

// One function per phase, so that callgrind reports each on its own line
// (the `black_box` of a name keeps the linker from folding look-alikes).

/// The loop alone (what the other phases' figures include besides the
/// crate).
#[inline(never)]
fn bench_loop_only(srcs: &[Slot]) -> Vec<Slot> {
    let mut out = Vec::with_capacity(srcs.len());
    for &s in srcs {
        out.push(black_box(black_box(s)));
    }
    out
}
#[inline(never)]
fn bench_copy_cold(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy cold");
    copies(cs, srcs)
}
#[inline(never)]
fn bench_delete_cold(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete cold");
    deletes(cs, slots)
}
#[inline(never)]
fn bench_copy_warm(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy warm");
    copies(cs, srcs)
}
#[inline(never)]
fn bench_delete_warm(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete warm");
    deletes(cs, slots)
}
#[inline(never)]
fn bench_copy_many_1(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many 1");
    copies_batched(cs, srcs, 1)
}
#[inline(never)]
fn bench_delete_many_1(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete many 1");
    deletes_batched(cs, slots, 1)
}
#[inline(never)]
fn bench_copy_many_into_1(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many into 1");
    let mut out = Vec::with_capacity(srcs.len());
    for s in srcs.chunks(1) {
        cs.copy_many_into(black_box(s), RIGHTS, &mut out)
            .expect("copy_many_into");
    }
    out
}
#[inline(never)]
fn bench_copy_many_16(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many 16");
    copies_batched(cs, srcs, 16)
}
#[inline(never)]
fn bench_delete_many_16(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete many 16");
    deletes_batched(cs, slots, 16)
}
#[inline(never)]
fn bench_copy_many_64(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many 64");
    copies_batched(cs, srcs, BATCH)
}
#[inline(never)]
fn bench_delete_many_64(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete many 64");
    deletes_batched(cs, slots, BATCH)
}
#[inline(never)]
fn bench_copy_many_512(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many 512");
    copies_batched(cs, srcs, 512)
}
#[inline(never)]
fn bench_delete_many_512(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete many 512");
    deletes_batched(cs, slots, 512)
}
#[inline(never)]
fn bench_copy_many_512_scattered(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many 512 scattered");
    copies_batched(cs, srcs, 512)
}
#[inline(never)]
fn bench_delete_many_512_scattered(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete many 512 scattered");
    deletes_batched(cs, slots, 512)
}
#[inline(never)]
fn bench_copy_many_all(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<Slot> {
    black_box("copy many all");
    copies_batched(cs, srcs, N)
}
#[inline(never)]
fn bench_delete_many_all(cs: &mut CSpace<NullKernel>, slots: &[Slot]) {
    black_box("delete many all");
    deletes_batched(cs, slots, N)
}

/// Runs a phase and prints its heap allocations per operation.
fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let a = ALLOCS.load(Ordering::Relaxed);
    let r = f();
    let n = ALLOCS.load(Ordering::Relaxed) - a;
    println!("{name:<32} {:>8.3} allocations per operation", n as f64 / N as f64);
    r
}

fn main() {
    let untypeds = vec![
        BootUntyped {
            slot: 20,
            paddr: 0x1000_0000,
            size_bits: 28,
            is_device: false,
        },
        BootUntyped {
            slot: 21,
            paddr: 0x4000_0000,
            size_bits: 28,
            is_device: false,
        },
    ];
    let cfg = Config::new(12, 2, 64..4096, untypeds);
    let mut cs = CSpace::new(NullKernel, cfg).map_err(|(e, _)| e).expect("boot");
    let mut frames = Vec::with_capacity(N);
    while frames.len() < N {
        let v = cs
            .alloc_many(ObjectType::Frame4K, 0, 256, Placement::Anywhere)
            .expect("alloc");
        frames.extend(v.iter().map(|a| a.slot));
    }
    let before = cs.stats();
    let check = |cs: &CSpace<NullKernel>, live: usize| assert_eq!(cs.stats().copies_live, live as u64);
    black_box(bench_loop_only(&frames));
    // Round 1: cold (the books' tables and the CSpace grow).
    let c = phase("bench_copy_cold", || bench_copy_cold(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_cold", || bench_delete_cold(&mut cs, &c));
    check(&cs, 0);
    // Round 2: warm (steady state).
    let c = phase("bench_copy_warm", || bench_copy_warm(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_warm", || bench_delete_warm(&mut cs, &c));
    check(&cs, 0);
    // Batched: one cap per call (a page fault's), 16 per call, then 64.
    let c = phase("bench_copy_many_1", || bench_copy_many_1(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_many_1", || bench_delete_many_1(&mut cs, &c));
    check(&cs, 0);
    // The same into a vector kept for the purpose (no allocation).
    let c = phase("bench_copy_many_into_1", || bench_copy_many_into_1(&mut cs, &frames));
    check(&cs, N);
    deletes_batched(&mut cs, &c, 1);
    check(&cs, 0);
    let c = phase("bench_copy_many_16", || bench_copy_many_16(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_many_16", || bench_delete_many_16(&mut cs, &c));
    check(&cs, 0);
    let c = phase("bench_copy_many_64", || bench_copy_many_64(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_many_64", || bench_delete_many_64(&mut cs, &c));
    check(&cs, 0);
    // The root task's case: a region's 512 frame caps (consecutive slots),
    // then their copies (consecutive slots too).
    let c = phase("bench_copy_many_512", || bench_copy_many_512(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_many_512", || bench_delete_many_512(&mut cs, &c));
    check(&cs, 0);
    // The same caps in an order that makes no run (pairs swapped).
    let mut scattered = frames.clone();
    for p in scattered.chunks_mut(2) {
        p.swap(0, 1);
    }
    let mut c = phase("bench_copy_many_512_scattered", || {
        bench_copy_many_512_scattered(&mut cs, &scattered)
    });
    check(&cs, N);
    for p in c.chunks_mut(2) {
        p.swap(0, 1);
    }
    phase("bench_delete_many_512_scattered", || {
        bench_delete_many_512_scattered(&mut cs, &c)
    });
    check(&cs, 0);
    let c = phase("bench_copy_many_all", || bench_copy_many_all(&mut cs, &frames));
    check(&cs, N);
    phase("bench_delete_many_all", || bench_delete_many_all(&mut cs, &c));
    let after = cs.stats();
    assert_eq!((after.objects_live, after.copies_live), (before.objects_live, 0));
}
