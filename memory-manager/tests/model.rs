//! The manager against the host model of seL4 5.0, with a kernel failure
//! injected at every invocation position of every operation.
//!
//! A run is a random sequence of operations (map, clone, move, destroy,
//! revoke, free, destroy and create address spaces) over three address
//! spaces, on a stock kernel model and on one with the run invocations.
//! For each operation of the sequence:
//! 1. the world (manager, books and kernel model) is forked and the
//!    operation run on the fork without failure; `k` = the invocations it made;
//! 2. for each position `p` in `1..=k` (at most [`MAX_POSITIONS`] of them,
//!    spread over `1..=k`, when `k` is larger), a fresh fork runs the same
//!    operation with invocation `p` failing (with an error that rotates over
//!    seL4's error codes);
//! 3. after every execution the oracle ([`audit`]) asserts that the books
//!    equal the kernel model: cspace's books in full (every slot, object,
//!    copy, untyped watermark), every address space's shadow equals the
//!    model's page tables entry for entry, every mapping is done by the cap
//!    the books record (the cap's own mapping in the model names the
//!    address), every recorded copy is a child of its frame's original in
//!    the model's derivation tree, and `Mm::check` holds; and that a refused
//!    or failed operation whose error leaves nothing (`Left::is_empty`)
//!    left every figure as before (free slots, free untyped bytes, objects,
//!    copies, records, page-table entries, occupied slots);
//! 4. the sequence continues from the fork without failure, or (one time in
//!    four) from one of the failed forks, so that later operations start
//!    from what failures leave; every [`EPOCH`] executions it starts again on
//!    a freshly booted machine (a long run fragments untyped memory until
//!    most requests are refused for want of memory).
//!
//! `MM_MODEL_STEPS` (executions per run, default 50 000 per kernel, so at
//! least 100 000 in `make test`) and `MM_MODEL_SEED` choose the run;
//! `make model-soak` runs 1 000 000. A failure prints the seed and step.

use cspace::mock::MockKernel;
use cspace::{CPtr, KernelError};
use hashbrown::{HashMap, HashSet};
use mapping_db::{AsId, CapSlot, FrameId};
use memory_manager::model::Model;
use memory_manager::{At, Left, Manager, Mm};
use vspace::Rights;

/// Executions on one machine before the run boots a fresh one.
const EPOCH: u64 = 10_000;
/// At most this many failure positions per operation (all of them below).
const MAX_POSITIONS: u64 = 48;
const PAGE: u64 = 4096;
/// The region the operations work in (three leaf tables' worth, so runs
/// cross leaf-table boundaries).
const BASE: u64 = 0x4000_0000 - 64 * PAGE;
const PAGES: u64 = 1100;
const SPACES: usize = 3;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

#[derive(Clone)]
struct World {
    m: Manager<Model>,
    mm: Mm,
    spaces: Vec<AsId>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Map {
        s: usize,
        va: u64,
        n: u64,
        rights: Rights,
    },
    Clone {
        from: (usize, u64),
        to: (usize, u64),
        n: u64,
        rights: Rights,
    },
    Move {
        from: (usize, u64),
        to: (usize, u64),
        n: u64,
        rights: Rights,
    },
    Destroy {
        s: usize,
        va: u64,
        n: u64,
    },
    Revoke {
        cap: u64,
    },
    Free {
        cap: u64,
    },
    DestroySpace {
        s: usize,
    },
    CreateSpace,
    /// `Manager::reclaim`: retry the frees and merges failures left.
    Reclaim,
}

impl Op {
    fn kind(&self) -> usize {
        match self {
            Op::Map { .. } => 0,
            Op::Clone { .. } => 1,
            Op::Move { .. } => 2,
            Op::Destroy { .. } => 3,
            Op::Revoke { .. } => 4,
            Op::Free { .. } => 5,
            Op::DestroySpace { .. } | Op::CreateSpace | Op::Reclaim => 6,
        }
    }

    /// Whether a failure of this operation is undone when its error leaves
    /// nothing (destroy and revoke complete forward instead).
    fn all_or_nothing(&self) -> bool {
        matches!(self, Op::Map { .. } | Op::Clone { .. })
    }
}

fn boot(runs: bool) -> World {
    // A small CSpace (a 256-slot boot CNode, 256-slot level-2 CNodes), so
    // that the CSpace grows, runs reach past a CNode's end, and the full
    // audit after every execution stays cheap.
    let (k, mut cfg) = MockKernel::boot(
        8,
        &[
            (0x100_0000, 24, false),
            (0x400_0000, 22, false),
            (0x80_0000, 21, false),
            (0x10_0000, 16, false),
        ],
    );
    cfg.l2_bits = 8;
    // 64 KiB chunks: a long random run frees frames all over; with 2 MiB
    // chunks one live object pins each chunk's bytes as padding, and the
    // machine fills up for good.
    cfg.chunk_bits = 16;
    let m = Manager::new(Model { k, runs }, cfg).expect("boot");
    let mut w = World {
        m,
        mm: Mm::new(),
        spaces: Vec::new(),
    };
    for _ in 0..SPACES {
        let id = w.mm.create_space(&mut w.m).expect("space");
        w.spaces.push(id);
    }
    w
}

/// Mostly read-write (so clones of clones are allowed), some read-only.
const RIGHTS: [Rights; 4] = [Rights::READ_WRITE, Rights::READ, Rights::READ_WRITE, Rights::READ_WRITE];

fn va(rng: &mut Rng) -> u64 {
    BASE + rng.below(PAGES) * PAGE
}

fn count(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => 1 + rng.below(600),
        1..=3 => 1,
        _ => 1 + rng.below(24),
    }
}

/// Whether page `va` of space `s` is recorded.
fn is_mapped(w: &World, s: usize, va: u64) -> bool {
    w.mm.what_backs(w.spaces[s], va).is_some()
}

/// A region of space `s` whose pages are all recorded (a run from a
/// recorded page, of a random length up to where the mapped pages end), or
/// now and then any region, so that most requests are valid and some not.
fn mapped_run(w: &World, rng: &mut Rng, s: usize) -> (u64, u64) {
    let recs: Vec<u64> = w.mm.db().mappings_in(w.spaces[s]).map(|r| r.vaddr).collect();
    if recs.is_empty() || rng.chance(10) {
        return (va(rng), count(rng));
    }
    let start = recs[rng.below(recs.len() as u64) as usize];
    let want = count(rng);
    let mut n = 1;
    while n < want && is_mapped(w, s, start + n * PAGE) {
        n += 1;
    }
    (start, n)
}

/// A region of `n` pages of space `s` that is free, if a few tries find one
/// (otherwise any region: a refusal).
fn free_region(w: &World, rng: &mut Rng, s: usize, n: u64) -> u64 {
    for _ in 0..8 {
        let v = va(rng);
        if (0..n).all(|i| !is_mapped(w, s, v + i * PAGE)) {
            return v;
        }
    }
    va(rng)
}

fn frame_cap(w: &World, rng: &mut Rng) -> u64 {
    let frames: Vec<u64> = w.mm.frames().map(|(c, _)| c).collect();
    if frames.is_empty() || rng.chance(16) {
        return rng.below(1 << 16);
    }
    let f = frames[rng.below(frames.len() as u64) as usize];
    // Sometimes through a copy of the frame's cap.
    let copies: Vec<CapSlot> =
        w.mm.db()
            .frame_of_cap(CapSlot(f))
            .map(|fr| w.mm.db().copies_of(fr).collect())
            .unwrap_or_default();
    if !copies.is_empty() && rng.chance(3) {
        copies[rng.below(copies.len() as u64) as usize].0
    } else {
        f
    }
}

fn pick(w: &World, rng: &mut Rng, short: bool) -> Op {
    // Out of memory (`short`): give frames back, mostly.
    let frames = w.mm.frames().count();
    if short && rng.chance(4) {
        return Op::Reclaim;
    }
    if frames > 0 && short && !rng.chance(4) {
        return Op::Free { cap: frame_cap(w, rng) };
    }
    if w.spaces.is_empty() || (w.spaces.len() < SPACES && rng.chance(2)) {
        return Op::CreateSpace;
    }
    let s = rng.below(w.spaces.len() as u64) as usize;
    let d = rng.below(w.spaces.len() as u64) as usize;
    let rights = RIGHTS[rng.below(RIGHTS.len() as u64) as usize];
    // Keep the machine from filling up for good (it does at times: out of
    // memory is a case too).
    if w.mm.frames().count() > 800 && rng.chance(2) {
        return Op::Free { cap: frame_cap(w, rng) };
    }
    match rng.below(20) {
        0..=4 => {
            let n = count(rng);
            Op::Map {
                s,
                va: free_region(w, rng, s, n),
                n,
                rights,
            }
        }
        5..=9 => {
            let (from, n) = mapped_run(w, rng, s);
            Op::Clone {
                from: (s, from),
                to: (d, free_region(w, rng, d, n)),
                n,
                rights,
            }
        }
        10..=11 => {
            let (from, n) = mapped_run(w, rng, s);
            Op::Move {
                from: (s, from),
                to: (d, free_region(w, rng, d, n)),
                n,
                rights,
            }
        }
        12..=15 => {
            let (va, n) = mapped_run(w, rng, s);
            Op::Destroy { s, va, n }
        }
        16 => Op::Revoke { cap: frame_cap(w, rng) },
        17..=18 => Op::Free { cap: frame_cap(w, rng) },
        _ => {
            if rng.chance(4) {
                Op::DestroySpace { s }
            } else {
                Op::Free { cap: frame_cap(w, rng) }
            }
        }
    }
}

/// The outcome of one execution: `Ok`, or the error's debug text and what it left.
type Outcome = Result<(), (String, Option<Left>)>;

fn run(w: &mut World, op: Op) -> Outcome {
    let sp = |i: usize| w.spaces[i];
    let (m, mm) = (&mut w.m, &mut w.mm);
    match op {
        Op::Map { s, va, n, rights } => mm.map_new(m, sp(s), va, n, rights).map(|_| ()).map_err(|e| {
            let left = match &e {
                memory_manager::MapError::Alloc(_, l) | memory_manager::MapError::Map(_, l) => Some(l.clone()),
                _ => None,
            };
            (format!("{e:?}"), left)
        }),
        Op::Clone { from, to, n, rights } => mm
            .clone_region(m, At(sp(from.0), from.1), At(sp(to.0), to.1), n, rights)
            .map_err(|e| {
                let left = match &e {
                    memory_manager::CloneError::Copy(_, l) | memory_manager::CloneError::Map(_, l) => Some(l.clone()),
                    _ => None,
                };
                (format!("{e:?}"), left)
            }),
        Op::Move { from, to, n, rights } => mm
            .move_region(m, At(sp(from.0), from.1), At(sp(to.0), to.1), n, rights)
            .map_err(|e| {
                let left = match &e {
                    memory_manager::MoveError::Destroy(d) => destroy_left(d),
                    _ => None,
                };
                (format!("{e:?}"), left)
            }),
        Op::Destroy { s, va, n } => mm
            .destroy_region(m, sp(s), va, n)
            .map_err(|e| (format!("{e:?}"), destroy_left(&e))),
        Op::Revoke { cap } => mm.revoke_frame(m, cap).map(|_| ()).map_err(|e| {
            let left = match &e {
                memory_manager::RevokeError::Unmap(_, l) | memory_manager::RevokeError::Revoke(_, l) => Some(l.clone()),
                _ => None,
            };
            (format!("{e:?}"), left)
        }),
        Op::Free { cap } => {
            let Some(f) = mm.db().frame_of_cap(CapSlot(cap)) else {
                return Err(("no frame".into(), Some(Left::default())));
            };
            mm.free_frame(m, f).map_err(|e| (format!("{e:?}"), None))
        }
        Op::DestroySpace { s } => {
            let r = mm
                .destroy_space(m, sp(s))
                .map(|_| ())
                .map_err(|e| (format!("{e:?}"), None));
            if r.is_ok() {
                w.spaces.remove(s);
            }
            r
        }
        Op::Reclaim => m.reclaim().map(|_| ()).map_err(|e| (format!("{e:?}"), None)),
        Op::CreateSpace => {
            let id = mm
                .create_space(m)
                .map_err(|e| (format!("{e:?}"), Some(Left::default())))?;
            w.spaces.push(id);
            Ok(())
        }
    }
}

fn destroy_left(e: &memory_manager::DestroyError) -> Option<Left> {
    match e {
        memory_manager::DestroyError::Unmap(_, l) | memory_manager::DestroyError::Delete(_, l) => Some(l.clone()),
        _ => None,
    }
}

/// Every figure a refused operation must leave as it was.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Figures {
    stats: cspace::Stats,
    records: usize,
    caps: usize,
    frames: usize,
    slots: usize,
    entries: Vec<Vec<(u64, u64, u8)>>,
}

impl Figures {
    /// After a failed all-or-nothing operation: everything as `self`, except
    /// what cspace invests for later and does not give back, each difference
    /// accounted for exactly:
    /// - RAM bytes of objects the operation made and freed again may have
    ///   moved from `free` to `padding` (seL4 resets an untyped's free index
    ///   only when its last child is deleted);
    /// - the CSpace may have grown (a new level-2 CNode: its bytes live, its
    ///   slots free; cspace never gives a CNode back), and untypeds may have
    ///   been split into chunks (each piece's cap in a slot): every slot of
    ///   difference is a new CNode's, free, or a new piece's.
    fn undone(&self, after: &Figures) -> bool {
        let (b, a) = (&self.stats, &after.stats);
        let d = |x: u64, y: u64| y as i128 - x as i128;
        let grown = d(b.cnode_bytes, a.cnode_bytes);
        let pieces = d(b.untyped_nodes, a.untyped_nodes);
        let accounted = a.ram.padding >= b.ram.padding
            && d(b.ram.live, a.ram.live) == grown
            && d(b.ram.free + b.ram.padding, a.ram.free + a.ram.padding) == -grown
            && d(b.slots_free, a.slots_free) == d(b.slots_capacity, a.slots_capacity) - pieces
            && d(self.slots as u64, after.slots as u64) == pieces + d(b.cnodes, a.cnodes);
        let mut same = after.clone();
        same.stats.ram = b.ram;
        same.stats.cnodes = b.cnodes;
        same.stats.cnode_bytes = b.cnode_bytes;
        same.stats.slots_capacity = b.slots_capacity;
        same.stats.slots_free = b.slots_free;
        same.stats.untyped_nodes = b.untyped_nodes;
        same.slots = self.slots;
        accounted && same == *self
    }
}

fn figures(w: &World) -> Figures {
    let k = &w.m.kernel().k;
    let entries = w
        .spaces
        .iter()
        .map(|&id| {
            let root = w.mm.space(id).expect("space").root();
            let mut e: Vec<_> = k
                .leaf_entries(root)
                .into_iter()
                .map(|(va, obj, r)| (va, obj.0, r.bits()))
                .collect();
            e.sort_unstable();
            e
        })
        .collect();
    Figures {
        stats: w.m.cs.stats(),
        records: w.mm.db().len(),
        caps: w.mm.db().cap_count(),
        frames: w.mm.frames().count(),
        slots: k.occupied_slots(),
        entries,
    }
}

/// The oracle: the books equal the kernel model (see the module doc).
fn audit(w: &World) -> Result<(), String> {
    let k = &w.m.kernel().k;
    w.mm.check(&w.m)?;
    cspace::audit::audit(&w.m.cs, k)?;
    let parents: HashMap<_, _> = k.slots().into_iter().map(|(at, _, p)| (at, p)).collect();
    for &id in &w.spaces {
        let space = w.mm.space(id).ok_or("space")?;
        let root = space.root();
        let root_obj = k.cap_object(root).ok_or("root: no object")?;
        let mut model: Vec<(u64, u64, u8)> = k
            .leaf_entries(root)
            .into_iter()
            .map(|(va, obj, r)| (va, obj.0, r.bits()))
            .collect();
        model.sort_unstable();
        let mut shadow = Vec::new();
        for s in space.mappings() {
            let cap = s.frame;
            let obj = k
                .cap_object(cap)
                .ok_or_else(|| format!("{id:?} {:#x}: cap {cap:?} empty", s.vaddr.as_u64()))?;
            shadow.push((s.vaddr.as_u64(), obj.0, s.rights.bits()));
            if k.frame_cap_mapping(cap) != Some((root_obj, s.vaddr.as_u64())) {
                return Err(format!(
                    "{id:?} {:#x}: the cap {cap:?} does not map it (its mapping: {:?})",
                    s.vaddr.as_u64(),
                    k.frame_cap_mapping(cap)
                ));
            }
        }
        shadow.sort_unstable();
        if shadow != model {
            let a: HashSet<_> = shadow.iter().collect();
            let b: HashSet<_> = model.iter().collect();
            return Err(format!(
                "{id:?}: shadow and kernel differ: only in the shadow {:x?}, only in the kernel {:x?}",
                a.difference(&b).take(4).collect::<Vec<_>>(),
                b.difference(&a).take(4).collect::<Vec<_>>()
            ));
        }
        let recs = w.mm.db().mappings_in(id).count();
        if recs != shadow.len() {
            return Err(format!("{id:?}: {recs} records, {} mappings", shadow.len()));
        }
    }
    // Every recorded copy is a child of its frame's original in the kernel.
    for (cap, _) in w.mm.frames() {
        let f: FrameId = w.mm.db().frame_of_cap(CapSlot(cap)).ok_or("frame unrecorded")?;
        let orig = k.lookup_slot(CPtr(cap)).map_err(|e| format!("{e:?}"))?;
        for c in w.mm.db().copies_of(f).filter(|c| c.0 != cap) {
            let at = k.lookup_slot(c).map_err(|e| format!("{e:?}"))?;
            if parents.get(&at).copied().flatten() != Some(orig) {
                return Err(format!("copy {:#x} of {cap:#x}: not its child in the kernel", c.0));
            }
        }
    }
    Ok(())
}

const ERRORS: [KernelError; 5] = [
    KernelError::InvalidArgument,
    KernelError::DeleteFirst,
    KernelError::NotEnoughMemory,
    KernelError::FailedLookup,
    KernelError::IllegalOperation,
];

/// The positions to fail for an operation of `k` invocations.
fn positions(k: u64, rng: &mut Rng) -> Vec<u64> {
    if k <= MAX_POSITIONS {
        return (1..=k).collect();
    }
    let mut v: Vec<u64> = (0..MAX_POSITIONS / 2)
        .map(|i| 1 + i * k / (MAX_POSITIONS / 2))
        .collect();
    v.push(k);
    v.extend((0..MAX_POSITIONS / 2).map(|_| 1 + rng.below(k)));
    v
}

/// What a run covered.
#[derive(Debug, Default)]
struct Coverage {
    executions: u64,
    failed_positions: u64,
    errors: u64,
    left_nonempty: u64,
    max_invocations: u64,
    /// Operations that succeeded without a failure, by kind (map, clone,
    /// move, destroy, revoke, free, destroy space).
    succeeded: [u64; 7],
    /// Invocations the clean executions made, by kind (the model's counts).
    calls: [u64; cspace::mock::CALL_KINDS],
}

/// Runs executions until `budget` have been checked. `break_undo`: the
/// manager's clone undo is deliberately broken (the oracle must catch it).
fn drive(runs: bool, seed: u64, budget: u64, break_undo: bool) -> Result<Coverage, String> {
    let mut rng = Rng(seed);
    let mut w = boot(runs);
    if break_undo {
        w.mm.break_undo_for_tests();
    }
    audit(&w).map_err(|e| format!("after boot: {e}"))?;
    let mut cov = Coverage::default();
    let mut step = 0u64;
    let mut short = false;
    let mut epoch = 0;
    while cov.executions < budget {
        step += 1;
        // A fresh machine every `EPOCH` executions: a long random run frees
        // frames here and there until one live object pins every chunk's
        // freed bytes as padding, and then most requests are refusals.
        if cov.executions / EPOCH > epoch {
            epoch = cov.executions / EPOCH;
            w = boot(runs);
            if break_undo {
                w.mm.break_undo_for_tests();
            }
            short = false;
        }
        let op = pick(&w, &mut rng, short);
        let before = figures(&w);
        let ctx = |p: u64, e: &str| format!("seed {seed:#x} step {step} {op:?} (failure at {p}): {e}");
        // Without failure.
        let mut clean = w.clone();
        let calls0 = clean.m.kernel().k.calls();
        let counts0 = clean.m.kernel().k.counts;
        let r = run(&mut clean, op);
        let k = clean.m.kernel().k.calls() - calls0;
        for (c, (a, b)) in cov.calls.iter_mut().zip(clean.m.kernel().k.counts.iter().zip(counts0)) {
            *c += a - b;
        }
        if r.is_ok() {
            cov.succeeded[op.kind()] += 1;
        }
        short = matches!(&r, Err((t, _)) if t.contains("Memory"));
        cov.max_invocations = cov.max_invocations.max(k);
        cov.executions += 1;
        audit(&clean).map_err(|e| ctx(0, &e))?;
        if let Err((text, left)) = &r {
            if std::env::var("MM_MODEL_DEBUG").is_ok() {
                eprintln!("refused: {op:?} {}", &text[..text.len().min(120)]);
                if matches!(op, Op::CreateSpace) {
                    eprintln!(
                        "  frames {} spaces {} unfreed {} {:?}",
                        w.mm.frames().count(),
                        w.spaces.len(),
                        w.m.unfreed_tables().len(),
                        w.m.cs.stats()
                    );
                }
            }
            cov.errors += 1;
            // Without a failure, every error is a refusal or an allocation
            // that ran out: undone.
            if !before.undone(&figures(&clean)) {
                return Err(ctx(0, &format!("refusal {r:?} changed the figures")));
            }
            if left.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(ctx(0, &format!("refusal {r:?} left something")));
            }
        }
        let mut next = clean;
        for p in positions(k, &mut rng) {
            let mut f = w.clone();
            let e = ERRORS[rng.below(ERRORS.len() as u64) as usize];
            f.m.kernel_mut().k.fail_in(p, e);
            // Sometimes a second failure shortly after, which may hit the undo.
            if rng.chance(4) {
                f.m.kernel_mut()
                    .k
                    .fail_in(p + 1 + rng.below(4), ERRORS[rng.below(ERRORS.len() as u64) as usize]);
            }
            let r = run(&mut f, op);
            f.m.kernel_mut().k.clear_failures();
            cov.executions += 1;
            cov.failed_positions += 1;
            audit(&f).map_err(|err| ctx(p, &format!("{err} (outcome {r:?})")))?;
            if let Err((text, left)) = &r {
                cov.errors += 1;
                match left {
                    Some(l) if !l.is_empty() => cov.left_nonempty += 1,
                    Some(_) if op.all_or_nothing() && !before.undone(&figures(&f)) => {
                        return Err(ctx(
                            p,
                            &format!(
                                "{text}: left nothing, yet the figures changed:\n{before:?}\n{:?}",
                                figures(&f)
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            if rng.chance(4) {
                next = f;
            }
        }
        w = next;
    }
    Ok(cov)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            v.strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(default)
}

fn check(runs: bool, default_seed: u64) {
    let seed = env("MM_MODEL_SEED", default_seed);
    let budget = env("MM_MODEL_STEPS", 50_000);
    match drive(runs, seed, budget, false) {
        Ok(c) => {
            eprintln!("runs={runs} seed {seed:#x}: {c:?}");
            assert!(c.executions >= budget);
            assert!(c.failed_positions > budget / 4, "failures injected: {c:?}");
            assert!(c.left_nonempty > 0, "no failure left anything to book: {c:?}");
            assert!(
                c.succeeded.iter().all(|&n| n > 0),
                "an operation never succeeded: {c:?}"
            );
            use cspace::mock::{CALL_COPY_MAP_RUN, CALL_MAP_RUN, CALL_UNMAP_RUN};
            let run_calls = [CALL_MAP_RUN, CALL_COPY_MAP_RUN, CALL_UNMAP_RUN].map(|i| c.calls[i]);
            if runs {
                assert!(run_calls.iter().all(|&n| n > 0), "a run invocation never made: {c:?}");
            } else {
                assert_eq!(run_calls, [0; 3], "run invocations on a stock kernel");
            }
        }
        Err(e) => panic!("{e}"),
    }
}

/// Every operation, every failure position, on a stock kernel model.
#[test]
fn books_equal_the_kernel_under_failures_stock() {
    check(false, 0x5eed_0001);
}

/// The same on a kernel model with the run invocations (patch 0005).
#[test]
fn books_equal_the_kernel_under_failures_batched() {
    check(true, 0x5eed_0002);
}

/// The oracle can fail: with the clone's undo deliberately broken (the
/// copies of a failed clone are released in the books but left in the
/// kernel), the run must report a difference.
#[test]
fn oracle_catches_a_broken_undo() {
    for runs in [false, true] {
        let r = drive(runs, 0x5eed_0003, 20_000, true);
        let e = r.expect_err("a broken undo went unnoticed");
        eprintln!("runs={runs}: caught: {}", &e[..e.len().min(300)]);
        assert!(
            e.contains("failure at"),
            "caught, but not after an injected failure: {e}"
        );
    }
}
