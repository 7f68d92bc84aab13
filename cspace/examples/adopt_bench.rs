//! Instruction-count benchmark of the bookkeeping for copies and deletes
//! made by a kernel extension in one invocation: [`CSpace::alloc_slots`] +
//! [`CSpace::adopt_copies`] (or [`CSpace::adopt_copies_run`]), and
//! [`CSpace::adopt_deletes`] (or [`CSpace::adopt_deletes_run`]), with a
//! kernel whose every operation succeeds at once.
//!
//! ```text
//! cargo build --release -p cspace --example adopt_bench
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/examples/adopt_bench
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep 'adopt_bench::bench_'
//! ```
//! Each `bench_*` function handles `ROUNDS * N` elements (`N` frame caps
//! per round); divide its inclusive count by that. Round 0 (cold: the
//! CSpace and the books' tables grow) is run before, outside the measured
//! functions. The `_512` runs are the root task's case: a leaf table's 512
//! pages copied (or deleted) in one kernel entry. `bench_adopt_deletes_512`
//! includes building the slot list; `bench_adopt_deletes_list_512` gets it
//! built (the call alone).
//!
//! `adopt_copies_run` of originals books one copy run (see *Copy runs* in
//! `CSpace`), and `adopt_deletes_run` of slots runs hold drops them a run
//! at a time; the `_per_cap` functions are the same calls with copy runs
//! turned off (`CSpace::set_copy_runs(false)`: a record per cap, as before
//! copy runs), and `bench_adopt_deletes_run_halves_512` deletes each run in
//! two calls (cutting it first). Instructions per page (release build):
//!
//! ```text
//!                                   before runs   runs off   runs on
//! alloc_adopt_run_512 (alloc_slots 1.6)    55.4       50.8       3.8
//! adopt_deletes_run_512                    48.8       48.9       2.6
//! adopt_deletes_run_halves_512                -          -       3.7
//! ```
//! ("before runs": the commit before copy runs; "runs off": the `_per_cap`
//! functions.)

use cspace::{BootUntyped, CPtr, CSpace, CapData, CapPath, Config, KernelError, KernelOps, ObjectType, Placement};
use cspace::{RetypeDest, Rights, Slot, SlotRange};
use std::hint::black_box;

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

/// Frame caps (elements per round).
const N: usize = 4096;
/// Measured rounds.
const ROUNDS: usize = 4;

#[inline(never)]
fn bench_slot_of(cs: &CSpace<NullKernel>, cptrs: &[CPtr]) -> Vec<Slot> {
    cptrs
        .iter()
        .map(|&c| cs.layout().slot_of(black_box(c)).expect("slot"))
        .collect()
}

fn alloc_adopt(cs: &mut CSpace<NullKernel>, srcs: &[Slot], chunk: usize) -> Vec<SlotRange> {
    srcs.chunks(chunk)
        .map(|b| {
            let run = cs.alloc_slots(black_box(b.len() as u64)).expect("alloc_slots");
            cs.adopt_copies(black_box(b), run).expect("adopt_copies");
            run
        })
        .collect()
}

fn alloc_adopt_run(cs: &mut CSpace<NullKernel>, srcs: &[Slot], chunk: usize) -> Vec<SlotRange> {
    srcs.chunks(chunk)
        .map(|b| {
            let run = cs.alloc_slots(black_box(b.len() as u64)).expect("alloc_slots");
            // The frames come in runs of 256 consecutive slots.
            for (k, g) in b.chunks(256).enumerate() {
                let dests = SlotRange {
                    cnode: run.cnode,
                    start: run.start + (k * 256) as u64,
                    len: g.len() as u64,
                };
                cs.adopt_copies_run(black_box(g[0]), g.len() as u64, dests)
                    .expect("adopt_copies_run");
            }
            run
        })
        .collect()
}

/// The sources in stretches of consecutive slots, each within one chunk of
/// `chunk`, as (chunk, offset in the chunk, first source, length).
fn stretches(srcs: &[Slot], chunk: usize) -> Vec<(usize, u64, Slot, u64)> {
    let mut out: Vec<(usize, u64, Slot, u64)> = vec![];
    for (j, &s) in srcs.iter().enumerate() {
        let (c, off) = (j / chunk, (j % chunk) as u64);
        match out.last_mut() {
            Some(l) if l.0 == c && l.2.cnode == s.cnode && l.2.index + l.3 == s.index => l.3 += 1,
            _ => out.push((c, off, s, 1)),
        }
    }
    out
}

fn alloc_adopt_runs(
    cs: &mut CSpace<NullKernel>,
    srcs: &[Slot],
    chunk: usize,
    parts: &[(usize, u64, Slot, u64)],
) -> Vec<SlotRange> {
    let mut runs = Vec::with_capacity(srcs.len().div_ceil(chunk));
    let mut parts = parts.iter().peekable();
    for (c, b) in srcs.chunks(chunk).enumerate() {
        let run = cs.alloc_slots(black_box(b.len() as u64)).expect("alloc_slots");
        while let Some(&(_, off, first, len)) = parts.next_if(|p| p.0 == c) {
            let dests = SlotRange {
                cnode: run.cnode,
                start: run.start + off,
                len,
            };
            cs.adopt_copies_run(black_box(first), len, dests)
                .expect("adopt_copies_run");
        }
        runs.push(run);
    }
    runs
}

fn deletes_run(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    for r in runs {
        cs.adopt_deletes_run(black_box(r.slot(0)), r.len)
            .expect("adopt_deletes_run");
    }
}

fn deletes(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    for r in runs {
        let slots: Vec<Slot> = r.iter().collect();
        cs.adopt_deletes(black_box(&slots)).expect("adopt_deletes");
    }
}

#[inline(never)]
fn bench_alloc_adopt_4096(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<SlotRange> {
    black_box("alloc_adopt 4096");
    alloc_adopt(cs, srcs, 4096)
}
#[inline(never)]
fn bench_adopt_deletes_4096(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    black_box("adopt_deletes 4096");
    deletes(cs, runs)
}
#[inline(never)]
fn bench_alloc_adopt_run_4096(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<SlotRange> {
    black_box("alloc_adopt_run 4096");
    alloc_adopt_run(cs, srcs, 4096)
}
#[inline(never)]
fn bench_alloc_adopt_512(cs: &mut CSpace<NullKernel>, srcs: &[Slot]) -> Vec<SlotRange> {
    black_box("alloc_adopt 512");
    alloc_adopt(cs, srcs, 512)
}
#[inline(never)]
fn bench_adopt_deletes_512(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    black_box("adopt_deletes 512");
    deletes(cs, runs)
}

#[inline(never)]
fn bench_adopt_deletes_list_512(cs: &mut CSpace<NullKernel>, lists: &[Vec<Slot>]) {
    black_box("adopt_deletes list 512");
    for l in lists {
        cs.adopt_deletes(black_box(l)).expect("adopt_deletes");
    }
}
#[inline(never)]
fn bench_alloc_adopt_run_512(
    cs: &mut CSpace<NullKernel>,
    srcs: &[Slot],
    parts: &[(usize, u64, Slot, u64)],
) -> Vec<SlotRange> {
    black_box("alloc_adopt_run 512");
    alloc_adopt_runs(cs, srcs, 512, parts)
}
#[inline(never)]
fn bench_adopt_deletes_run_512(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    black_box("adopt_deletes_run 512");
    deletes_run(cs, runs)
}
#[inline(never)]
fn bench_alloc_adopt_run_512_per_cap(
    cs: &mut CSpace<NullKernel>,
    srcs: &[Slot],
    parts: &[(usize, u64, Slot, u64)],
) -> Vec<SlotRange> {
    black_box("alloc_adopt_run 512 per cap");
    alloc_adopt_runs(cs, srcs, 512, parts)
}
#[inline(never)]
fn bench_adopt_deletes_run_512_per_cap(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    black_box("adopt_deletes_run 512 per cap");
    deletes_run(cs, runs)
}
#[inline(never)]
fn bench_adopt_deletes_run_halves_512(cs: &mut CSpace<NullKernel>, runs: &[SlotRange]) {
    black_box("adopt_deletes_run halves 512");
    for r in runs {
        let half = r.len / 2;
        cs.adopt_deletes_run(black_box(r.slot(0)), half)
            .expect("adopt_deletes_run");
        cs.adopt_deletes_run(black_box(r.slot(half)), r.len - half)
            .expect("adopt_deletes_run");
    }
}
#[inline(never)]
fn bench_alloc_slots_512(cs: &mut CSpace<NullKernel>) -> Vec<SlotRange> {
    black_box("alloc_slots 512");
    (0..N / 512)
        .map(|_| cs.alloc_slots(black_box(512)).expect("alloc_slots"))
        .collect()
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
    let cptrs: Vec<CPtr> = frames.iter().map(|&s| cs.cptr(s)).collect();
    // Round 0: cold (grows the CSpace by a CNode).
    let runs = alloc_adopt(&mut cs, &frames, 4096);
    deletes(&mut cs, &runs);
    let before = cs.stats();
    let mut all = vec![];
    for _ in 0..ROUNDS {
        all.extend(bench_slot_of(&cs, &cptrs));
    }
    assert_eq!(all.len(), ROUNDS * N);
    for _ in 0..ROUNDS {
        let runs = bench_alloc_adopt_4096(&mut cs, &frames);
        assert_eq!(cs.stats().copies_live, N as u64);
        bench_adopt_deletes_4096(&mut cs, &runs);
        assert_eq!(cs.stats(), before);
    }
    for _ in 0..ROUNDS {
        let runs = bench_alloc_adopt_run_4096(&mut cs, &frames);
        assert_eq!(cs.stats().copies_live, N as u64);
        deletes(&mut cs, &runs);
        assert_eq!(cs.stats(), before);
    }
    for _ in 0..ROUNDS {
        let runs = bench_alloc_adopt_512(&mut cs, &frames);
        assert_eq!(cs.stats().copies_live, N as u64);
        bench_adopt_deletes_512(&mut cs, &runs);
        assert_eq!(cs.stats(), before);
    }
    let parts = stretches(&frames, 512);
    println!("sources: {} stretches of consecutive slots", parts.len());
    for _ in 0..ROUNDS {
        let runs = alloc_adopt(&mut cs, &frames, 512);
        let lists: Vec<Vec<Slot>> = runs.iter().map(|r| r.iter().collect()).collect();
        bench_adopt_deletes_list_512(&mut cs, &lists);
        assert_eq!(cs.stats(), before);
    }
    for _ in 0..ROUNDS {
        let runs = bench_alloc_adopt_run_512(&mut cs, &frames, &parts);
        assert_eq!(cs.stats().copies_live, N as u64);
        assert_eq!(cs.copy_run_count(), parts.len(), "one copy run per stretch");
        bench_adopt_deletes_run_512(&mut cs, &runs);
        assert_eq!(cs.stats(), before);
    }
    for _ in 0..ROUNDS {
        let runs = alloc_adopt_runs(&mut cs, &frames, 512, &parts);
        assert_eq!(cs.copy_run_count(), parts.len());
        bench_adopt_deletes_run_halves_512(&mut cs, &runs);
        assert_eq!(cs.stats(), before);
    }
    cs.set_copy_runs(false);
    for _ in 0..ROUNDS {
        let runs = bench_alloc_adopt_run_512_per_cap(&mut cs, &frames, &parts);
        assert_eq!(cs.copy_run_count(), 0);
        bench_adopt_deletes_run_512_per_cap(&mut cs, &runs);
        assert_eq!(cs.stats(), before);
    }
    cs.set_copy_runs(true);
    for _ in 0..ROUNDS {
        let runs = bench_alloc_slots_512(&mut cs);
        for r in runs {
            cs.release_slots(r).expect("release");
        }
        assert_eq!(cs.stats(), before);
    }
    println!("ok: {} elements per bench function", ROUNDS * N);
}
