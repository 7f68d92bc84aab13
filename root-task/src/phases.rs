//! Where a manager operation's instructions go: rdtsc laps between the
//! phases of one operation, summed into per-phase accumulators.
//!
//! Off by default (then a lap is one relaxed load and a branch); the
//! benchmark switches it on for a few extra iterations after the measured
//! ones, so the reported operation costs never include it. Under `-icount`
//! a lap costs a few tens of ticks, once per operation: under 0.1 tick per
//! page for the 512-page regions the breakdown is reported for.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use sel4::rdtsc;

pub use memory_manager::Phase;

static ON: AtomicBool = AtomicBool::new(false);
static ACC: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Switches the accumulation on or off (and clears the accumulators).
pub fn enable(on: bool) {
    take();
    ON.store(on, Relaxed);
}

/// The accumulated ticks per phase (indexed like [`Phase::ALL`]), cleared.
pub fn take() -> [u64; 7] {
    let mut out = [0; 7];
    for (o, a) in out.iter_mut().zip(&ACC) {
        *o = a.swap(0, Relaxed);
    }
    out
}

/// A stopwatch for one operation: each [`lap`](Self::lap) charges the time
/// since the previous lap (or the start) to a phase.
pub struct Clock(u64);

impl Clock {
    /// Starts timing (does nothing while accumulation is off).
    #[inline(always)]
    pub fn start() -> Self {
        Clock(if ON.load(Relaxed) { rdtsc() } else { 0 })
    }

    /// Charges the time since the last lap to `phase`.
    #[inline(always)]
    pub fn lap(&mut self, phase: Phase) {
        if ON.load(Relaxed) {
            let t = rdtsc();
            ACC[phase as usize].fetch_add(t - self.0, Relaxed);
            self.0 = t;
        }
    }
}

/// Times `f` as a nested part of the current lap (the kernel inside the
/// vspace phase): its ticks go to `phase` as well as to the enclosing lap.
#[inline(always)]
pub fn nested<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    if !ON.load(Relaxed) {
        return f();
    }
    let t0 = rdtsc();
    let r = f();
    ACC[phase as usize].fetch_add(rdtsc() - t0, Relaxed);
    r
}
