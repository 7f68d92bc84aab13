//! Host tests of the manager against [`MockKernel`].

mod adopt_run;
mod batch;
mod copy_runs;
mod many_run;
mod ops;
mod paging;
mod prop;

use crate::layout::Slot;
use crate::mock::MockKernel;
use crate::{CSpace, Config};

/// A small machine: 64 KiB + 256 KiB + 1 MiB + 16 MiB of RAM, an 8 KiB RAM
/// untyped, and 1 MiB of device memory at 0xe000_0000.
pub(crate) const MACHINE: &[(u64, u8, bool)] = &[
    (0x10_0000, 16, false),
    (0x14_0000, 18, false),
    (0x20_0000, 20, false),
    (0x100_0000, 24, false),
    (0x8000, 13, false),
    (0xe000_0000, 20, true),
];

pub(crate) fn boot_with(untypeds: &[(u64, u8, bool)], f: impl FnOnce(&mut Config)) -> CSpace<MockKernel> {
    let (k, mut cfg) = MockKernel::boot(12, untypeds);
    f(&mut cfg);
    let cs = CSpace::new(k, cfg).map_err(|(e, _)| e).expect("boot");
    audit(&cs);
    cs
}

pub(crate) fn boot() -> CSpace<MockKernel> {
    boot_with(MACHINE, |_| {})
}

/// A small CSpace: a 128-slot boot CNode, 256-slot level-2 CNodes, at most
/// 7 of them (so that runs reach past a CNode's end, and the CSpace grows
/// and runs out of slots).
pub(crate) fn small() -> CSpace<MockKernel> {
    let machine = [
        (0x1_0000, 16, false),
        (0x4_0000, 18, false),
        (0x10_0000, 20, false),
        (0x2000, 12, false),
    ];
    let (k, mut cfg) = MockKernel::boot(7, &machine);
    cfg.l1_bits = 3;
    cfg.l2_bits = 8;
    cfg.chunk_bits = 16;
    let cs = CSpace::new(k, cfg).map_err(|(e, _)| e).expect("boot");
    audit(&cs);
    cs
}

/// The managed caps in slot order: slot, original?
pub(crate) fn caps(cs: &CSpace<MockKernel>) -> Vec<(Slot, bool)> {
    let mut v: Vec<_> = cs.managed_caps().map(|(s, _, orig)| (s, orig)).collect();
    v.sort();
    v
}

/// The `n` slots from `first` (one CNode).
pub(crate) fn run_of(first: Slot, n: u64) -> Vec<Slot> {
    (0..n)
        .map(|i| Slot {
            cnode: first.cnode,
            index: first.index + i,
        })
        .collect()
}

/// Checks the books against the model, in full ([`crate::audit::audit`]).
pub(crate) fn audit(cs: &CSpace<MockKernel>) {
    if let Err(e) = crate::audit::audit(cs, cs.kernel()) {
        panic!("{e}");
    }
}
