//! Measurement: warm-up, many iterations, min and median of rdtsc deltas with
//! the rdtsc pair's own cost subtracted. Under QEMU `-icount shift=0` a tick
//! is one guest instruction, so the figures are exact and repeatable.

use alloc::vec::Vec;
use sel4::rdtsc;
use sel4_root_task::Record;

/// Region sizes (pages) the map/unmap and clone/move/destroy benchmarks
/// measure. The full set on the release UP kernel, the configuration figures
/// come from; on debug or SMP kernels (slow under TCG, never figures) only
/// the small sizes, to show the code paths work.
pub fn region_sizes() -> &'static [u64] {
    if sel4_config::DEBUG_BUILD || sel4_config::SMP {
        &[1, 16]
    } else {
        &[1, 16, 512, 4096]
    }
}

/// Iterations for an operation on `pages` pages: fewer for larger runs, so
/// that every size costs about the same time (at least 5).
pub fn iterations_for(pages: u64) -> usize {
    (2048 / pages.max(1) as usize).clamp(5, 200)
}

/// Iterations measured (after the warm-up).
pub const ITERATIONS: usize = 10_000;
/// Iterations run first and discarded.
pub const WARMUP: usize = 500;

/// The cost of an empty rdtsc pair (the minimum of many).
pub fn rdtsc_overhead() -> u64 {
    (0..1000)
        .map(|_| {
            let a = rdtsc();
            let b = rdtsc();
            b - a
        })
        .min()
        .unwrap()
}

/// Minimum and median of samples (sorted in place).
pub fn summarize(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    (samples[0], samples[samples.len() / 2])
}

/// Collects `iterations` samples of `f` after `WARMUP` discarded runs.
/// `f` returns the ticks of the part it times (it may do set-up work untimed).
pub fn sample(iterations: usize, mut f: impl FnMut() -> u64) -> Vec<u64> {
    for _ in 0..WARMUP {
        f();
    }
    (0..iterations).map(|_| f()).collect()
}

/// A measurement ready to report.
pub struct Measurement<'a> {
    /// Operation name (`yield`, `call_reply_recv`, `cnode_copy`, ...).
    pub op: &'a str,
    /// `stock` (raw system calls) or a manager path.
    pub path: &'a str,
    /// Pages per operation (0 for operations that are not about pages).
    pub pages: u64,
}

impl Measurement<'_> {
    /// Reports `samples` (raw rdtsc deltas) with `overhead` subtracted.
    pub fn report(&self, samples: &mut [u64], overhead: u64) {
        for s in samples.iter_mut() {
            *s = s.saturating_sub(overhead);
        }
        let (min, median) = summarize(samples);
        let per_page = |t: u64| t.checked_div(self.pages).unwrap_or(t);
        Record::new("bench")
            .str("op", self.op)
            .str("path", self.path)
            .str("config", sel4_config::NAME)
            .num("pages", self.pages)
            .num("iterations", samples.len() as u64)
            .num("ticks_min", min)
            .num("ticks_median", median)
            .num("ticks_per_page_min", per_page(min))
            .num("ticks_per_page_median", per_page(median))
            .num("rdtsc_overhead", overhead)
            .emit();
    }
}
