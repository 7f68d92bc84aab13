//! Checks of the batched leaf-table invocations (kernel patch 0005,
//! `X86PageTable_MapRun`, `_CopyMapRun`, `_UnmapRun`) on a kernel built with
//! them; nothing on a stock kernel.
//!
//! Every validation rule is tried with a bad input: the kernel must refuse
//! with the expected error, name the offending entry in the reply's last
//! message register (all ones for a refusal of the run as a whole), and
//! change nothing: a probe thread in the target address space still faults
//! on every entry of the refused run (or reads what was there before), the
//! refused caps can still be used, and destination slots stay empty. Then
//! the positive cases: runs of 512 pages mapped, cloned, unmapped and
//! unmapped-and-deleted, observed by the probe. On SMP kernels, a thread
//! spinning on core 1 in the target address space must fault as soon as an
//! UnmapRun issued from core 0 returns (the shootdown).
//!
//! Refusals are made with raw invocations (the generated wrappers drop the
//! reply's registers on errors); successes go through the generated
//! wrappers. The checks time nothing; on the release UP kernel only, once
//! every check has passed, `bench` measures runs against the stock
//! per-page sequences (`leaf_*` records, paths `stock` and `run`).

use crate::manager::Manager;
use sel4_root_task::Verdict;

/// Runs the checks of the batched invocations (only on kernels that have them).
#[cfg(not(sel4_batched_leaf))]
pub fn run(_m: &mut Manager, _v: &mut Verdict) {}

/// Runs the checks of the batched invocations.
#[cfg(sel4_batched_leaf)]
pub fn run(m: &mut Manager, v: &mut Verdict) {
    // Built for the extension but booted on a kernel without it: nothing to
    // check here (the manager's checks ran on the per-page path).
    if crate::backend::batched_leaf() {
        imp::run(m, v)
    }
}

#[cfg(sel4_batched_leaf)]
mod imp {
    use crate::manager::Manager;
    use crate::probe::{Access, Probe};
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;
    use cspace::{Allocation, ObjectType, Placement, Slot, SlotRange};
    use sel4::{cap, label, CPtr, CapRights, Error, IpcBuffer, MessageInfo, VmAttributes, Word, FAST_MRS};
    use sel4_root_task::Verdict;

    const PRIO: u8 = 200;
    /// Two leaf tables of the probe's address space, in the 1 GiB region
    /// whose page directory the probe's stack (0x7000_0000) already needs.
    const VA_A: Word = 0x5000_0000;
    const VA_B: Word = 0x5020_0000;
    const PAGE: Word = 4096;
    /// Entries of a leaf table.
    const N: u64 = 512;
    /// The entry index of a refusal that concerns the whole run.
    const NO_ENTRY: Word = Word::MAX;
    const RW: CapRights = CapRights::READ_WRITE;

    type Outcome = Result<String, String>;
    type Check = fn(&mut Manager, &Fixture) -> Outcome;

    fn e<T: core::fmt::Debug>(what: &str) -> impl FnOnce(T) -> String + '_ {
        move |x| format!("{what}: {x:?}")
    }

    fn value(i: u64) -> Word {
        0xba7c_0000_0000 | i
    }

    /// An invocation with the reply's message registers, also on errors.
    fn invoke_raw(service: Word, label: Word, mrs: &[Word], caps: &[Word]) -> Result<(), (Error, Vec<Word>)> {
        for (i, c) in caps.iter().enumerate() {
            IpcBuffer::set_cap(i, *c);
        }
        for (i, &w) in mrs.iter().enumerate().skip(FAST_MRS) {
            IpcBuffer::set_mr(i, w);
        }
        let mut regs = [0; FAST_MRS];
        for (r, &w) in regs.iter_mut().zip(mrs) {
            *r = w;
        }
        let info = MessageInfo::new(label, 0, caps.len() as Word, mrs.len() as Word);
        let (reply, regs, _) = sel4::call(CPtr(service), info, regs);
        if reply.label() == 0 {
            return Ok(());
        }
        let out = (0..reply.length() as usize)
            .map(|i| if i < FAST_MRS { regs[i] } else { IpcBuffer::mr(i) })
            .collect();
        Err((Error::from_word(reply.label()).unwrap_or(Error::IllegalOperation), out))
    }

    /// A run of slots as the invocations name it: (CNode root, index, depth) of the first.
    #[derive(Clone, Copy, Debug)]
    struct Run {
        root: Word,
        index: Word,
        depth: Word,
    }

    fn run_at(m: &Manager, s: Slot) -> Run {
        let p = m.cs.path(s);
        Run {
            root: p.root.0,
            index: p.index,
            depth: p.depth as Word,
        }
    }

    fn map_raw(
        pt: Word,
        vroot: Word,
        first: u64,
        count: u64,
        rights: CapRights,
        src: Run,
    ) -> Result<(), (Error, Vec<Word>)> {
        invoke_raw(
            pt,
            label::X86PageTableMapRun,
            &[
                first,
                count,
                rights.into_word(),
                VmAttributes::DEFAULT.bits(),
                src.index,
                src.depth,
            ],
            &[vroot, src.root],
        )
    }

    fn copy_map_raw(
        pt: Word,
        vroot: Word,
        first: u64,
        count: u64,
        src: Run,
        dest: Run,
    ) -> Result<(), (Error, Vec<Word>)> {
        invoke_raw(
            pt,
            label::X86PageTableCopyMapRun,
            &[
                first,
                count,
                RW.into_word(),
                VmAttributes::DEFAULT.bits(),
                src.index,
                src.depth,
                dest.index,
                dest.depth,
                RW.into_word(),
            ],
            &[vroot, src.root, dest.root],
        )
    }

    fn unmap_raw(pt: Word, first: u64, count: u64, caps: Run, delete: bool) -> Result<(), (Error, Vec<Word>)> {
        invoke_raw(
            pt,
            label::X86PageTableUnmapRun,
            &[first, count, caps.index, caps.depth, delete as Word],
            &[caps.root],
        )
    }

    /// The refusal expected: error `err`, the error's usual MRs starting
    /// with `head`, and `entry` as the last MR.
    fn refused(what: &str, r: Result<(), (Error, Vec<Word>)>, err: Error, head: &[Word], entry: Word) -> Outcome {
        match r {
            Ok(()) => Err(format!("{what}: accepted, expected {err:?}")),
            Err((got, mrs)) => {
                let ok =
                    got == err && mrs.len() > head.len() && mrs[..head.len()] == *head && mrs.last() == Some(&entry);
                let shown: Vec<String> = mrs
                    .iter()
                    .map(|w| {
                        if *w == NO_ENTRY {
                            String::from("-")
                        } else {
                            format!("{w}")
                        }
                    })
                    .collect();
                let s = format!("{what}: {got:?} [{}]", shown.join(","));
                if ok {
                    Ok(s)
                } else {
                    let want = if entry == NO_ENTRY {
                        String::from("-")
                    } else {
                        format!("{entry}")
                    };
                    Err(format!("{s}; expected {err:?} [{head:?}.., {want}]"))
                }
            }
        }
    }

    fn expect(what: &str, got: Access, want: Access) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: probe saw {got:x?}, expected {want:x?}"))
        }
    }

    fn faults(p: &Probe, table: Word, entry: u64) -> Result<(), String> {
        let va = table + entry * PAGE + 8;
        let got = p.read(va).map_err(e("probe"))?;
        expect(
            &format!("entry {entry} at {va:#x}"),
            got,
            Access::Fault { addr: va, write: false },
        )
    }

    fn reads(p: &Probe, table: Word, entry: u64, want: Word) -> Result<(), String> {
        let va = table + entry * PAGE + 8;
        let got = p.read(va).map_err(e("probe"))?;
        expect(&format!("entry {entry} at {va:#x}"), got, Access::Done(want))
    }

    fn writes(p: &Probe, table: Word, entry: u64, val: Word) -> Result<(), String> {
        let va = table + entry * PAGE + 8;
        let got = p.write(va, val).map_err(e("probe"))?;
        expect(&format!("write entry {entry} at {va:#x}"), got, Access::Done(0))
    }

    /// Whether the slot invoked by `cptr` holds no cap.
    fn slot_empty(cptr: Word) -> bool {
        #[cfg(sel4_debug_build)]
        {
            sel4::debug_cap_identify(CPtr(cptr)) == 0
        }
        #[cfg(not(sel4_debug_build))]
        {
            cap::Frame::from_bits(cptr).x86_page_get_address() == Err(Error::InvalidCapability)
        }
    }

    fn copy_raw(m: &Manager, src: Slot, dest: Slot, rights: CapRights) -> Result<(), Error> {
        let (s, d) = (m.cs.path(src), m.cs.path(dest));
        cap::CNode::from_bits(d.root.0).cnode_copy(
            d.index,
            d.depth,
            cap::CNode::from_bits(s.root.0),
            s.index,
            s.depth,
            rights,
        )
    }

    fn delete_raw(m: &Manager, slot: Slot) -> Result<(), Error> {
        let p = m.cs.path(slot);
        cap::CNode::from_bits(p.root.0).cnode_delete(p.index, p.depth)
    }

    /// Everything the checks use.
    struct Fixture {
        probe: Probe,
        /// 512 frames (original caps, in two runs of 256).
        frames: Vec<Allocation>,
        /// Raw copies of `frames`, in order, in 512 consecutive slots.
        r1: SlotRange,
        /// 512 consecutive empty slots (the copies of the clone).
        r2: SlotRange,
        /// A mixed run: frame, frame, endpoint, frame, empty, 2 MiB frame, read-only frame, empty.
        s: SlotRange,
        /// Four slots, the third occupied (an endpoint copy).
        t: SlotRange,
        pt_a: Allocation,
        pt_b: Allocation,
        /// A page table mapped nowhere.
        pt_u: Allocation,
        ep: Allocation,
        big: Allocation,
        vroot: Word,
    }

    impl Fixture {
        fn r1(&self, m: &Manager, i: u64) -> Run {
            run_at(m, self.r1.slot(i))
        }
        fn r2(&self, m: &Manager, i: u64) -> Run {
            run_at(m, self.r2.slot(i))
        }
        fn s(&self, m: &Manager, i: u64) -> Run {
            run_at(m, self.s.slot(i))
        }
        fn t(&self, m: &Manager, i: u64) -> Run {
            run_at(m, self.t.slot(i))
        }
    }

    fn setup(m: &mut Manager) -> Result<Fixture, String> {
        let probe = Probe::new(m, PRIO).map_err(e("probe"))?;
        let vroot = probe.space.root().0;
        let mut frames =
            m.cs.alloc_many(ObjectType::Frame4K, 0, N / 2, Placement::Anywhere)
                .map_err(e("frames"))?;
        frames.extend(
            m.cs.alloc_many(ObjectType::Frame4K, 0, N / 2, Placement::Anywhere)
                .map_err(e("frames"))?,
        );
        let r1 = m.cs.alloc_slots(N).map_err(e("slots"))?;
        let r2 = m.cs.alloc_slots(N).map_err(e("slots"))?;
        let s = m.cs.alloc_slots(8).map_err(e("slots"))?;
        let t = m.cs.alloc_slots(4).map_err(e("slots"))?;
        for (i, f) in frames.iter().enumerate() {
            copy_raw(m, f.slot, r1.slot(i as u64), CapRights::ALL).map_err(e("copy"))?;
        }
        let pt_a = m.alloc(ObjectType::PageTable).map_err(e("pt"))?;
        let pt_b = m.alloc(ObjectType::PageTable).map_err(e("pt"))?;
        let pt_u = m.alloc(ObjectType::PageTable).map_err(e("pt"))?;
        let ep = m.alloc(ObjectType::Endpoint).map_err(e("endpoint"))?;
        let big = m.alloc(ObjectType::Frame2M).map_err(e("2 MiB frame"))?;
        for (pt, va) in [(&pt_a, VA_A), (&pt_b, VA_B)] {
            cap::PageTable::from_bits(pt.cptr.0)
                .x86_page_table_map(CPtr(vroot), va, VmAttributes::DEFAULT)
                .map_err(e("PageTable_Map"))?;
        }
        let fill = [
            (0, frames[500].slot, CapRights::ALL),
            (1, frames[501].slot, CapRights::ALL),
            (2, ep.slot, CapRights::ALL),
            (3, frames[502].slot, CapRights::ALL),
            (5, big.slot, CapRights::ALL),
            (6, frames[503].slot, CapRights::READ),
        ];
        for (i, src, rights) in fill {
            copy_raw(m, src, s.slot(i), rights).map_err(e("copy"))?;
        }
        copy_raw(m, ep.slot, t.slot(2), CapRights::ALL).map_err(e("copy"))?;
        Ok(Fixture {
            probe,
            frames,
            r1,
            r2,
            s,
            t,
            pt_a,
            pt_b,
            pt_u,
            ep,
            big,
            vroot,
        })
    }

    /// Runs every check; reports through `v`.
    pub fn run(m: &mut Manager, v: &mut Verdict) {
        let base = m.cs.stats();
        let f = match setup(m) {
            Ok(f) => f,
            Err(d) => {
                v.check("batched.setup", false, &d);
                return;
            }
        };
        v.check(
            "batched.setup",
            true,
            &format!(
                "probe VSpace with leaf tables at {VA_A:#x} and {VA_B:#x}; {N} frames, their copies in {N} consecutive slots"
            ),
        );
        let checks: [(&str, Check); 13] = [
            ("batched.refuse_not_a_table", refuse_not_a_table),
            ("batched.refuse_root", refuse_root),
            ("batched.refuse_count", refuse_count),
            ("batched.refuse_run_leaves_cnode", refuse_leaves_cnode),
            ("batched.refuse_not_a_4k_frame", refuse_not_frame),
            ("batched.refuse_already_mapped", refuse_already_mapped),
            ("batched.refuse_present_entry", refuse_present),
            ("batched.rights_masked_as_page_map", rights_masked),
            ("batched.refuse_unmap_wrong_cap", refuse_unmap_wrong_cap),
            ("batched.refuse_copy_dest_occupied", refuse_copy_dest),
            ("batched.map_copy_map_512", map_copy_map_512),
            ("batched.unmap_run", unmap_runs),
            ("batched.unmap_delete_512", unmap_delete_512),
        ];
        for (i, (name, check)) in checks.into_iter().enumerate() {
            // On SMP kernels, before the 512-entry runs (table A still empty):
            // the unmap shootdown reaches a thread on another core.
            #[cfg(sel4_smp)]
            if i == 10 && sel4_root_task::bootinfo().num_nodes > 1 {
                match smp_shootdown(m, &f) {
                    Ok(d) => v.check("batched.smp_shootdown", true, &d),
                    Err(d) => v.check("batched.smp_shootdown", false, &d),
                };
            }
            let _ = i;
            match check(m, &f) {
                Ok(d) => v.check(name, true, &d),
                Err(d) => v.check(name, false, &d),
            };
        }
        let r = teardown(m, f).and_then(|d| {
            let now = m.cs.stats();
            if now == base {
                Ok(d)
            } else {
                Err(format!(
                    "figures differ after teardown:\n before {base:?}\n after  {now:?}"
                ))
            }
        });
        match r {
            Ok(d) => v.check("batched.teardown_exact", true, &d),
            Err(d) => v.check("batched.teardown_exact", false, &d),
        };
        match manager_paths_agree(m) {
            Ok(d) => v.check("batched.manager_paths_agree", true, &d),
            Err(d) => v.check("batched.manager_paths_agree", false, &d),
        };
        // Figures only on the release UP kernel (debug kernels print, SMP is not the reference).
        if v.passed() && !sel4_config::DEBUG_BUILD && !sel4_config::SMP {
            match bench(m) {
                Ok(d) => v.check("batched.bench", true, &d),
                Err(d) => v.check("batched.bench", false, &d),
            };
        }
    }

    /// The manager's clone, move and destroy of a region crossing leaf
    /// tables, once with the run invocations and once on the per-page path
    /// (the extension switched off for the manager), give the same mapping
    /// records (frame, address, size, rights, leaf table; the cap slots may
    /// differ), the same database invariants, and the same figures afterwards.
    fn manager_paths_agree(m: &mut Manager) -> Outcome {
        use memory_manager::{At, Mm};
        const SRC: Word = 0x10_0000_0000;
        const DST: Word = 0x20_0000_0000 + 37 * PAGE;
        const ALT: Word = 0x30_0000_0000 + 500 * PAGE;
        const PAGES: u64 = 700;
        let rw = vspace::Rights::READ | vspace::Rights::WRITE;
        let err = |e: &dyn core::fmt::Debug| format!("{e:?}");
        let mut mm = Mm::new();
        let mut spaces = Vec::new();
        for _ in 0..3 {
            spaces.push(mm.create_space(m).map_err(|e| format!("{e:?}"))?);
        }
        let (s, d, a) = (spaces[0], spaces[1], spaces[2]);
        let frames = mm.map_new(m, s, SRC, PAGES, rw).map_err(|e| err(&e))?;
        // Page tables stay once made (a table freed goes to `padding` until
        // its untyped chunk is free): the first round makes them, the next
        // two compare the paths from the same figures.
        for x in [d, a] {
            if !mm.set_table_policy(x, vspace::TablePolicy::Retain) {
                return Err("space".into());
            }
        }
        let mut base = m.cs.stats();
        let mut seen = Vec::new();
        for (round, batched) in [true, true, false].into_iter().enumerate() {
            crate::backend::use_batched_leaf(batched);
            let calls = crate::backend::run_calls();
            let r = (|| {
                mm.clone_region(m, At(s, SRC), At(d, DST), PAGES, rw)
                    .map_err(|e| err(&e))?;
                mm.move_region(m, At(d, DST), At(a, ALT), PAGES, rw)
                    .map_err(|e| err(&e))?;
                mm.check(m).map_err(|e| format!("books: {e}"))?;
                let recs: Vec<_> = (0..PAGES)
                    .map(|i| {
                        mm.what_backs(a, ALT + i * PAGE)
                            .map(|r| (r.frame, r.vaddr, r.size, r.rights, r.leaf, r.cap != r.frame.slot))
                    })
                    .collect();
                let copies = m.cs.stats();
                mm.destroy_region(m, a, ALT, PAGES).map_err(|e| err(&e))?;
                Ok::<_, String>((recs, copies))
            })();
            crate::backend::use_batched_leaf(true);
            let (recs, copies) = r?;
            // The path that ran: run invocations, or none at all.
            let runs = crate::backend::run_calls() - calls;
            if (runs > 0) != batched {
                return Err(format!("batched={batched}: {runs} run invocations"));
            }
            if recs.iter().any(|r| r.is_none()) {
                return Err(format!("batched={batched}: a moved page has no record"));
            }
            let now = m.cs.stats();
            if round == 0 {
                base = now;
                continue;
            }
            if now != base {
                return Err(format!(
                    "batched={batched}: figures after destroy differ:\n before {base:?}\n after  {now:?}"
                ));
            }
            seen.push((recs, copies));
        }
        if seen[0] != seen[1] {
            return Err("the two paths left different records or figures".into());
        }
        for f in frames {
            mm.free_frame(m, f).map_err(|e| err(&e))?;
        }
        for x in spaces {
            mm.destroy_space(m, x).map_err(|e| err(&e))?;
        }
        Ok(format!(
            "clone+move+destroy of {PAGES} pages across leaf tables: same {PAGES} records and figures on both paths"
        ))
    }

    fn refuse_not_a_table(m: &mut Manager, f: &Fixture) -> Outcome {
        let src = f.r1(m, 0);
        let frame = f.frames[0].cptr.0;
        let mut seen = Vec::new();
        // A frame cap invoked with the run label: the frame decoder does not
        // know it (stock code: no entry MR).
        match map_raw(frame, f.vroot, 0, 1, RW, src) {
            Err((Error::IllegalOperation, mrs)) if mrs.is_empty() => {
                seen.push(String::from("on a frame cap: IllegalOperation []"))
            }
            r => return Err(format!("on a frame cap: {r:?}, expected IllegalOperation []")),
        }
        seen.push(refused(
            "MapRun on an unmapped table",
            map_raw(f.pt_u.cptr.0, f.vroot, 0, 1, RW, src),
            Error::InvalidCapability,
            &[0],
            NO_ENTRY,
        )?);
        seen.push(refused(
            "UnmapRun on an unmapped table",
            unmap_raw(f.pt_u.cptr.0, 0, 1, src, false),
            Error::InvalidCapability,
            &[0],
            NO_ENTRY,
        )?);
        faults(&f.probe, VA_A, 0)?;
        Ok(seen.join("; "))
    }

    fn refuse_root(m: &mut Manager, f: &Fixture) -> Outcome {
        let src = f.r1(m, 0);
        let pt = f.pt_a.cptr.0;
        let seen = [
            refused(
                "root is a CNode",
                map_raw(pt, sel4::init::CNODE.bits(), 0, 1, RW, src),
                Error::InvalidCapability,
                &[1],
                NO_ENTRY,
            )?,
            refused(
                "root of another VSpace",
                map_raw(pt, sel4::init::VSPACE.bits(), 0, 1, RW, src),
                Error::InvalidCapability,
                &[1],
                NO_ENTRY,
            )?,
            refused(
                "CopyMapRun, root of another VSpace",
                copy_map_raw(pt, sel4::init::VSPACE.bits(), 0, 1, src, f.r2(m, 0)),
                Error::InvalidCapability,
                &[1],
                NO_ENTRY,
            )?,
            refused(
                "no CNode cap",
                invoke_raw(
                    pt,
                    label::X86PageTableMapRun,
                    &[0, 1, RW.into_word(), 0, src.index, src.depth],
                    &[f.vroot],
                ),
                Error::TruncatedMessage,
                &[],
                NO_ENTRY,
            )?,
        ];
        faults(&f.probe, VA_A, 0)?;
        if !slot_empty(m.cptr(f.r2.slot(0))) {
            return Err(String::from("a refused CopyMapRun filled its destination slot"));
        }
        Ok(seen.join("; "))
    }

    fn refuse_count(m: &mut Manager, f: &Fixture) -> Outcome {
        let src = f.r1(m, 0);
        let pt = f.pt_a.cptr.0;
        let seen = [
            refused(
                "count 0",
                map_raw(pt, f.vroot, 0, 0, RW, src),
                Error::RangeError,
                &[1, 512],
                NO_ENTRY,
            )?,
            refused(
                "count 513",
                map_raw(pt, f.vroot, 0, 513, RW, src),
                Error::RangeError,
                &[1, 512],
                NO_ENTRY,
            )?,
            refused(
                "entries 500..513 cross the table",
                map_raw(pt, f.vroot, 500, 13, RW, src),
                Error::RangeError,
                &[1, 12],
                NO_ENTRY,
            )?,
            refused(
                "first 512",
                map_raw(pt, f.vroot, 512, 1, RW, src),
                Error::RangeError,
                &[0, 511],
                NO_ENTRY,
            )?,
            refused(
                "UnmapRun count 0",
                unmap_raw(pt, 0, 0, src, false),
                Error::RangeError,
                &[1, 512],
                NO_ENTRY,
            )?,
            refused(
                "CopyMapRun count 513",
                copy_map_raw(pt, f.vroot, 0, 513, src, f.r2(m, 0)),
                Error::RangeError,
                &[1, 512],
                NO_ENTRY,
            )?,
        ];
        for entry in [0, 500, 511] {
            faults(&f.probe, VA_A, entry)?;
        }
        Ok(seen.join("; "))
    }

    fn refuse_leaves_cnode(m: &mut Manager, f: &Fixture) -> Outcome {
        let cap = m.cs.layout().capacity(f.r1.cnode);
        let last = run_at(
            m,
            Slot {
                cnode: f.r1.cnode,
                index: cap - 1,
            },
        );
        let pt = f.pt_a.cptr.0;
        let seen = [
            refused(
                "2 source slots from the CNode's last",
                map_raw(pt, f.vroot, 0, 2, RW, last),
                Error::RangeError,
                &[1, 1],
                NO_ENTRY,
            )?,
            refused(
                "2 destination slots from the CNode's last",
                copy_map_raw(pt, f.vroot, 0, 2, f.r1(m, 0), last),
                Error::RangeError,
                &[1, 1],
                NO_ENTRY,
            )?,
        ];
        faults(&f.probe, VA_A, 0)?;
        Ok(seen.join("; "))
    }

    fn refuse_not_frame(m: &mut Manager, f: &Fixture) -> Outcome {
        let pt = f.pt_a.cptr.0;
        let seen = [
            refused(
                "endpoint at entry 2",
                map_raw(pt, f.vroot, 0, 3, RW, f.s(m, 0)),
                Error::InvalidCapability,
                &[2],
                2,
            )?,
            refused(
                "empty slot at entry 1",
                map_raw(pt, f.vroot, 3, 2, RW, f.s(m, 3)),
                Error::FailedLookup,
                &[1],
                1,
            )?,
            refused(
                "2 MiB frame at entry 0",
                map_raw(pt, f.vroot, 5, 1, RW, f.s(m, 5)),
                Error::InvalidCapability,
                &[2],
                0,
            )?,
            refused(
                "UnmapRun, endpoint at entry 0",
                unmap_raw(pt, 0, 1, f.s(m, 2), false),
                Error::InvalidCapability,
                &[1],
                0,
            )?,
        ];
        // Nothing was mapped: the valid entries before the refused ones fault...
        for entry in [0, 1, 3] {
            faults(&f.probe, VA_A, entry)?;
        }
        // ...and their caps are still unmapped: S[1] maps now (kept for the next checks).
        map_raw(pt, f.vroot, 1, 1, RW, f.s(m, 1)).map_err(e("S[1] at entry 1"))?;
        writes(&f.probe, VA_A, 1, 0x1111)?;
        reads(&f.probe, VA_A, 1, 0x1111)?;
        Ok(format!(
            "{}; entries 0, 1, 3 fault afterwards, and S[1] then maps at entry 1",
            seen.join("; ")
        ))
    }

    fn refuse_already_mapped(m: &mut Manager, f: &Fixture) -> Outcome {
        // S[0] is unmapped, S[1] maps entry 1.
        let seen = refused(
            "S[1] (mapped) at entry 1 of the run",
            map_raw(f.pt_a.cptr.0, f.vroot, 10, 2, RW, f.s(m, 0)),
            Error::InvalidCapability,
            &[2],
            1,
        )?;
        faults(&f.probe, VA_A, 10)?;
        faults(&f.probe, VA_A, 11)?;
        reads(&f.probe, VA_A, 1, 0x1111)?;
        Ok(format!("{seen}; entries 10, 11 fault, entry 1 still reads 0x1111"))
    }

    fn refuse_present(m: &mut Manager, f: &Fixture) -> Outcome {
        let pt = f.pt_a.cptr.0;
        let seen = [
            refused(
                "entries 0..4, entry 1 present",
                map_raw(pt, f.vroot, 0, 4, RW, f.r1(m, 0)),
                Error::DeleteFirst,
                &[],
                1,
            )?,
            refused(
                "CopyMapRun entries 0..2, entry 1 present",
                copy_map_raw(pt, f.vroot, 0, 2, f.r1(m, 0), f.r2(m, 0)),
                Error::DeleteFirst,
                &[],
                1,
            )?,
        ];
        faults(&f.probe, VA_A, 0)?;
        reads(&f.probe, VA_A, 1, 0x1111)?;
        faults(&f.probe, VA_A, 2)?;
        faults(&f.probe, VA_A, 3)?;
        if !slot_empty(m.cptr(f.r2.slot(0))) {
            return Err(String::from("the refused CopyMapRun left a copy"));
        }
        Ok(format!(
            "{}; entries 0, 2, 3 fault, entry 1 reads 0x1111, destination slot empty",
            seen.join("; ")
        ))
    }

    fn rights_masked(m: &mut Manager, f: &Fixture) -> Outcome {
        // As X86Page_Map: the mapping gets the cap's rights masked by the
        // requested ones; asking for more than the cap has is no error.
        let pt = f.pt_a.cptr.0;
        map_raw(pt, f.vroot, 30, 1, RW, f.s(m, 6)).map_err(e("read-only cap asked RW"))?;
        map_raw(pt, f.vroot, 31, 1, CapRights::READ, f.s(m, 3)).map_err(e("RW cap asked R"))?;
        for entry in [30, 31] {
            reads(&f.probe, VA_A, entry, 0)?;
            let va = VA_A + entry * PAGE + 8;
            let got = f.probe.write(va, 1).map_err(e("probe"))?;
            expect("write", got, Access::Fault { addr: va, write: true })?;
        }
        Ok(String::from(
            "read-only cap asked RW, and RW cap asked R: both mapped read-only (reads 0, writes fault), as X86Page_Map masks",
        ))
    }

    fn refuse_unmap_wrong_cap(m: &mut Manager, f: &Fixture) -> Outcome {
        let pt = f.pt_a.cptr.0;
        let seen = [
            refused(
                "S[1] maps entry 1, not 2",
                unmap_raw(pt, 2, 1, f.s(m, 1), false),
                Error::InvalidCapability,
                &[1],
                0,
            )?,
            refused(
                "S[0] maps nothing",
                unmap_raw(pt, 0, 1, f.s(m, 0), false),
                Error::InvalidCapability,
                &[1],
                0,
            )?,
            refused(
                "entries 1..3: S[1] right, then an endpoint",
                unmap_raw(pt, 1, 2, f.s(m, 1), true),
                Error::InvalidCapability,
                &[1],
                1,
            )?,
            refused(
                "entries 30..32: S[6] right, then an empty slot",
                unmap_raw(pt, 30, 2, f.s(m, 6), true),
                Error::FailedLookup,
                &[1],
                1,
            )?,
            refused(
                "S[1] through table B",
                unmap_raw(f.pt_b.cptr.0, 1, 1, f.s(m, 1), false),
                Error::InvalidCapability,
                &[1],
                0,
            )?,
        ];
        // All or nothing: the valid first entries were neither unmapped nor deleted.
        reads(&f.probe, VA_A, 1, 0x1111)?;
        reads(&f.probe, VA_A, 30, 0)?;
        if slot_empty(m.cptr(f.s.slot(1))) || slot_empty(m.cptr(f.s.slot(6))) {
            return Err(String::from("a refused UnmapRun deleted a cap"));
        }
        // The caps still map their entries: unmapping them now works.
        for (entry, slot) in [(1, 1), (30, 6), (31, 3)] {
            unmap_raw(pt, entry, 1, f.s(m, slot), false).map_err(e("unmap"))?;
            faults(&f.probe, VA_A, entry)?;
        }
        Ok(format!(
            "{}; entries 1 and 30 still read, their caps still there; unmapped afterwards",
            seen.join("; ")
        ))
    }

    fn refuse_copy_dest(m: &mut Manager, f: &Fixture) -> Outcome {
        let pt = f.pt_b.cptr.0;
        let seen = [
            refused(
                "destination T[2] occupied",
                copy_map_raw(pt, f.vroot, 0, 4, f.r1(m, 0), f.t(m, 0)),
                Error::DeleteFirst,
                &[],
                2,
            )?,
            refused(
                "source S[4] empty at entry 1",
                copy_map_raw(pt, f.vroot, 0, 2, f.s(m, 3), f.t(m, 0)),
                Error::FailedLookup,
                &[1],
                1,
            )?,
            refused(
                "source is an endpoint at entry 1",
                copy_map_raw(pt, f.vroot, 0, 2, f.s(m, 1), f.r2(m, 0)),
                Error::InvalidCapability,
                &[2],
                1,
            )?,
        ];
        for i in [0, 1, 3] {
            if !slot_empty(m.cptr(f.t.slot(i))) {
                return Err(format!("T[{i}] filled by a refused CopyMapRun"));
            }
        }
        if !slot_empty(m.cptr(f.r2.slot(0))) {
            return Err(String::from("R2[0] filled by a refused CopyMapRun"));
        }
        for entry in [0, 1, 3] {
            faults(&f.probe, VA_B, entry)?;
        }
        Ok(format!(
            "{}; destination slots stay empty, table B's entries fault",
            seen.join("; ")
        ))
    }

    /// A thread of the probe's address space that reads `p` and publishes a
    /// counter at `m` forever, without a system call.
    #[cfg(sel4_smp)]
    extern "C" fn spinner(p: Word, m: Word) -> ! {
        let mut n: Word = 0;
        loop {
            // SAFETY: the spinner exists to touch exactly these two words of
            // its address space; a fault goes to the root task, which stops it.
            unsafe { core::ptr::read_volatile(p as *const Word) };
            n = n.wrapping_add(1);
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(m as *mut Word, n) };
        }
    }

    /// A spinner on core 1 keeps a translation of entry 40 cached while the
    /// root task (core 0, another VSpace) unmaps it with UnmapRun: the
    /// spinner must fault, i.e. core 1's TLB was shot down. For comparison,
    /// the same with stock X86Page_Unmap on entry 43 (5.0 sends no
    /// shootdown for a VSpace that is not the caller's current one; only
    /// reported, not required).
    #[cfg(sel4_smp)]
    fn smp_shootdown(m: &mut Manager, f: &Fixture) -> Outcome {
        use sel4::{fault, CapData, PrioProps, UserContext};
        const BADGE: Word = 0x5b;
        let pt = f.pt_a.cptr.0;
        let va = |entry: u64| VA_A + entry * PAGE;
        map_raw(pt, f.vroot, 40, 4, RW, f.r1(m, 40)).map_err(e("MapRun 40..44"))?;
        let tcb = m.alloc(ObjectType::Tcb).map_err(e("tcb"))?;
        let ep = m.alloc(ObjectType::Endpoint).map_err(e("endpoint"))?;
        let badged = m.cs.mint(ep.slot, cspace::Rights::ALL_CAP, BADGE).map_err(e("mint"))?;
        let (root, guard) = crate::manager::cspace_root(m);
        let t = cap::Tcb::from_bits(tcb.cptr.0);
        t.tcb_configure(
            m.cptr(badged),
            PrioProps { prio: PRIO, mcp: PRIO },
            root,
            guard,
            cap::CNode::from_bits(f.vroot),
            CapData::NONE,
            0,
            CPtr(0),
        )
        .map_err(e("configure"))?;
        t.tcb_set_priority(PRIO).map_err(e("priority"))?;
        t.tcb_set_affinity(1).map_err(e("affinity"))?;
        let start = |p: Word| {
            let regs = UserContext {
                rip: spinner as extern "C" fn(Word, Word) -> ! as usize as Word,
                rsp: va(42) + PAGE - 8,
                rdi: p,
                rsi: va(41),
                ..Default::default()
            };
            t.tcb_write_registers(true, 0, UserContext::WORDS as Word, &regs)
        };
        // The counter moves: the spinner runs on core 1 and has read `p`.
        let counter = |f: &Fixture| match f.probe.read(va(41)) {
            Ok(Access::Done(n)) => Ok(n),
            r => Err(format!("counter: {r:x?}")),
        };
        let running = |f: &Fixture| -> Result<bool, String> {
            let a = counter(f)?;
            for _ in 0..50 {
                sel4::yield_now();
            }
            Ok(counter(f)? != a)
        };
        let mut out = Vec::new();
        let result = (|| -> Outcome {
            start(va(40)).map_err(e("start"))?;
            let mut seen = false;
            for _ in 0..100 {
                if running(f)? {
                    seen = true;
                    break;
                }
            }
            if !seen {
                return Err(String::from("the spinner never ran"));
            }
            unmap_raw(pt, 40, 1, f.r1(m, 40), false).map_err(e("UnmapRun 40"))?;
            let mut fault = None;
            for _ in 0..1000 {
                let (info, mrs, badge) = sel4::nb_recv(crate::backend::sel4_cptr(ep.cptr));
                if badge == BADGE {
                    fault = Some((info.label(), mrs[fault::VM_FAULT_ADDR]));
                    break;
                }
                sel4::yield_now();
            }
            match fault {
                Some((label, addr)) if label == fault::VM_FAULT && addr == va(40) => {
                    out.push(format!("UnmapRun: the spinner on core 1 faulted at {addr:#x}"))
                }
                other => {
                    return Err(format!(
                        "UnmapRun: spinner fault {other:x?}, expected a VM fault at {:#x}",
                        va(40)
                    ))
                }
            }
            // The same with stock Page_Unmap (for comparison only).
            start(va(43)).map_err(e("restart"))?;
            let mut seen = false;
            for _ in 0..100 {
                if running(f)? {
                    seen = true;
                    break;
                }
            }
            if !seen {
                return Err(String::from("the spinner never ran again"));
            }
            cap::Frame::from_bits(m.cptr(f.r1.slot(43)))
                .x86_page_unmap()
                .map_err(e("Page_Unmap 43"))?;
            let (_, _, badge) = sel4::nb_recv(crate::backend::sel4_cptr(ep.cptr));
            let still = badge != BADGE && running(f)?;
            out.push(format!(
                "stock X86Page_Unmap for comparison: the spinner {}",
                if still {
                    "kept reading the unmapped page (5.0 sends no shootdown for a VSpace not current on the caller's core)"
                } else {
                    "stopped"
                }
            ));
            Ok(out.join("; "))
        })();
        let _ = t.tcb_suspend();
        unmap_raw(pt, 41, 2, f.r1(m, 41), false).map_err(e("UnmapRun 41..43"))?;
        m.cs.delete(badged).map_err(e("delete"))?;
        m.cs.free(tcb.id).map_err(e("free"))?;
        m.cs.free(ep.id).map_err(e("free"))?;
        result
    }

    fn map_copy_map_512(m: &mut Manager, f: &Fixture) -> Outcome {
        let src = f.r1(m, 0);
        let dest = f.r2(m, 0);
        cap::PageTable::from_bits(f.pt_a.cptr.0)
            .x86_page_table_map_run(
                CPtr(f.vroot),
                0,
                N,
                RW,
                VmAttributes::DEFAULT,
                cap::CNode::from_bits(src.root),
                src.index,
                src.depth,
            )
            .map_err(e("MapRun 512"))?;
        for i in 0..N {
            writes(&f.probe, VA_A, i, value(i))?;
        }
        for i in 0..N {
            reads(&f.probe, VA_A, i, value(i))?;
        }
        cap::PageTable::from_bits(f.pt_b.cptr.0)
            .x86_page_table_copy_map_run(
                CPtr(f.vroot),
                0,
                N,
                RW,
                VmAttributes::DEFAULT,
                cap::CNode::from_bits(src.root),
                src.index,
                src.depth,
                cap::CNode::from_bits(dest.root),
                dest.index,
                dest.depth,
                RW,
            )
            .map_err(e("CopyMapRun 512"))?;
        for i in 0..N {
            reads(&f.probe, VA_B, i, value(i))?;
        }
        writes(&f.probe, VA_B, 7, 0x7777)?;
        reads(&f.probe, VA_A, 7, 0x7777)?;
        writes(&f.probe, VA_B, 7, value(7))?;
        for i in 0..N {
            let a = cap::Frame::from_bits(m.cptr(f.r1.slot(i))).x86_page_get_address();
            let b = cap::Frame::from_bits(m.cptr(f.r2.slot(i))).x86_page_get_address();
            if a != Ok(f.frames[i as usize].paddr) || b != a {
                return Err(format!("slot {i}: source {a:x?}, copy {b:x?}"));
            }
        }
        Ok(format!(
            "MapRun of {N} caps at {VA_A:#x}: each page read back its own value; CopyMapRun of the same {N} caps into {N} empty slots at {VA_B:#x}: every page reads the value written through A (and a write through B is seen through A); every copy names its source's frame"
        ))
    }

    fn unmap_runs(m: &mut Manager, f: &Fixture) -> Outcome {
        let pt = f.pt_a.cptr.0;
        unmap_raw(pt, 100, 50, f.r1(m, 100), false).map_err(e("UnmapRun 100..150"))?;
        reads(&f.probe, VA_A, 99, value(99))?;
        faults(&f.probe, VA_A, 100)?;
        faults(&f.probe, VA_A, 149)?;
        reads(&f.probe, VA_A, 150, value(150))?;
        reads(&f.probe, VA_B, 100, value(100))?;
        // The caps were marked unmapped: they map again.
        map_raw(pt, f.vroot, 100, 50, RW, f.r1(m, 100)).map_err(e("MapRun 100..150 again"))?;
        reads(&f.probe, VA_A, 120, value(120))?;
        cap::PageTable::from_bits(pt)
            .x86_page_table_unmap_run(
                0,
                N,
                cap::CNode::from_bits(f.r1(m, 0).root),
                f.r1(m, 0).index,
                f.r1(m, 0).depth,
                0,
            )
            .map_err(e("UnmapRun 512"))?;
        for entry in [0, 1, 255, 511] {
            faults(&f.probe, VA_A, entry)?;
        }
        for entry in [0, 511] {
            reads(&f.probe, VA_B, entry, value(entry))?;
        }
        Ok(String::from(
            "UnmapRun 100..150: 99 and 150 read, 100 and 149 fault, the clone unaffected, the caps map again; UnmapRun of all 512: A faults, B still reads",
        ))
    }

    fn unmap_delete_512(m: &mut Manager, f: &Fixture) -> Outcome {
        let caps = f.r2(m, 0);
        cap::PageTable::from_bits(f.pt_b.cptr.0)
            .x86_page_table_unmap_run(0, N, cap::CNode::from_bits(caps.root), caps.index, caps.depth, 1)
            .map_err(e("UnmapRun+delete 512"))?;
        for entry in [0, 1, 255, 511] {
            faults(&f.probe, VA_B, entry)?;
        }
        let full = f.r2.iter().filter(|s| !slot_empty(m.cptr(*s))).count();
        if full != 0 {
            return Err(format!("{full} of the {N} slots still hold a cap"));
        }
        for i in 0..N {
            let a = cap::Frame::from_bits(m.cptr(f.r1.slot(i))).x86_page_get_address();
            if a != Ok(f.frames[i as usize].paddr) {
                return Err(format!("source slot {i}: {a:x?}"));
            }
        }
        Ok(format!(
            "UnmapRun+delete of {N} entries: B faults, all {N} copy slots empty, the {N} sources intact"
        ))
    }

    fn teardown(m: &mut Manager, f: Fixture) -> Outcome {
        for s in f.r1.iter().chain(f.r2.iter()).chain(f.s.iter()).chain(f.t.iter()) {
            delete_raw(m, s).map_err(e("delete"))?;
        }
        for r in [f.r1, f.r2, f.s, f.t] {
            m.cs.release_slots(r).map_err(e("release"))?;
        }
        for a in [f.pt_a, f.pt_b, f.pt_u, f.ep, f.big] {
            m.cs.free(a.id).map_err(e("free"))?;
        }
        for a in &f.frames {
            m.cs.free(a.id).map_err(e("free frame"))?;
        }
        let foreign = f.probe.destroy(m).map_err(e("probe"))?;
        Ok(format!(
            "every slot, table, frame and the probe returned ({} foreign caps); figures as before",
            foreign.len()
        ))
    }
    /// Where the benchmark maps (one leaf table, made once by the vspace crate and kept).
    const BENCH_BASE: Word = 0x90_0000_0000;

    /// Per page: the stock system-call sequence against one run invocation,
    /// in the same run, for runs of 1, 16 and 512 entries of one leaf table:
    /// `leaf_map` (X86Page_Map per page / MapRun), `leaf_unmap`
    /// (X86Page_Unmap / UnmapRun), `leaf_clone` (CNode_Copy + X86Page_Map /
    /// CopyMapRun), `leaf_destroy` (X86Page_Unmap + CNode_Delete /
    /// UnmapRun with delete). Paths `stock` and `run`.
    fn bench(m: &mut Manager) -> Outcome {
        use crate::bench::{iterations_for, rdtsc_overhead, Measurement};
        use sel4::rdtsc;
        use vspace::{AddressSpace, CacheAttr, CapRef, Page, PageRange, Rights, Size4K, TableLevel, TablePolicy};

        let mut space = AddressSpace::create(&mut m.vk()).map_err(e("space"))?;
        space.set_table_policy(TablePolicy::Retain);
        let mut frames =
            m.cs.alloc_many(ObjectType::Frame4K, 0, N / 2, Placement::Anywhere)
                .map_err(e("frames"))?;
        frames.extend(
            m.cs.alloc_many(ObjectType::Frame4K, 0, N / 2, Placement::Anywhere)
                .map_err(e("frames"))?,
        );
        let r1 = m.cs.alloc_slots(N).map_err(e("slots"))?;
        let r2 = m.cs.alloc_slots(N).map_err(e("slots"))?;
        for (i, f) in frames.iter().enumerate() {
            copy_raw(m, f.slot, r1.slot(i as u64), CapRights::ALL).map_err(e("copy"))?;
        }
        let caps: Vec<CapRef> = r1.iter().map(|s| CapRef(m.cptr(s))).collect();
        let range =
            PageRange::<Size4K>::from_count(Page::from_start_address(BENCH_BASE).expect("aligned"), N).expect("range");
        space
            .map(
                &mut m.vk(),
                range,
                &caps,
                Rights::READ | Rights::WRITE,
                CacheAttr::WriteBack,
            )
            .map_err(e("map"))?;
        let _ = space.unmap(&mut m.vk(), range).map_err(e("unmap"))?;
        let pt = space
            .tables()
            .find(|t| t.level == TableLevel::Pt && t.base.as_u64() == BENCH_BASE)
            .ok_or("no leaf table")?
            .cap
            .0;
        let vroot = crate::backend::sel4_cptr(space.root());
        let ptc = cap::PageTable::from_bits(pt);
        let src: Vec<cspace::CapPath> = r1.iter().map(|s| m.cs.path(s)).collect();
        let dst: Vec<cspace::CapPath> = r2.iter().map(|s| m.cs.path(s)).collect();
        let f1: Vec<cap::Frame> = r1.iter().map(|s| cap::Frame::from_bits(m.cptr(s))).collect();
        let f2: Vec<cap::Frame> = r2.iter().map(|s| cap::Frame::from_bits(m.cptr(s))).collect();
        let (s0, d0) = (run_at(m, r1.slot(0)), run_at(m, r2.slot(0)));
        let overhead = rdtsc_overhead();
        let mut failed = 0u64;
        let mut summary = Vec::new();
        for n in [1u64, 16, N] {
            let iters = iterations_for(n);
            let nn = n as usize;
            let mut t = [(); 8].map(|_| Vec::with_capacity(iters));
            for it in 0..iters + 2 {
                let c0 = rdtsc();
                for (j, f) in f1[..nn].iter().enumerate() {
                    failed += f
                        .x86_page_map(vroot, BENCH_BASE + ((j as u64) << 12), RW, VmAttributes::DEFAULT)
                        .is_err() as u64;
                }
                let c1 = rdtsc();
                for f in &f1[..nn] {
                    failed += f.x86_page_unmap().is_err() as u64;
                }
                let c2 = rdtsc();
                failed += ptc
                    .x86_page_table_map_run(
                        vroot,
                        0,
                        n,
                        RW,
                        VmAttributes::DEFAULT,
                        cap::CNode::from_bits(s0.root),
                        s0.index,
                        s0.depth,
                    )
                    .is_err() as u64;
                let c3 = rdtsc();
                failed += ptc
                    .x86_page_table_unmap_run(0, n, cap::CNode::from_bits(s0.root), s0.index, s0.depth, 0)
                    .is_err() as u64;
                let c4 = rdtsc();
                for j in 0..nn {
                    let (s, d) = (&src[j], &dst[j]);
                    failed += cap::CNode::from_bits(d.root.0)
                        .cnode_copy(d.index, d.depth, cap::CNode::from_bits(s.root.0), s.index, s.depth, RW)
                        .is_err() as u64;
                    failed += f2[j]
                        .x86_page_map(vroot, BENCH_BASE + ((j as u64) << 12), RW, VmAttributes::DEFAULT)
                        .is_err() as u64;
                }
                let c5 = rdtsc();
                for j in 0..nn {
                    failed += f2[j].x86_page_unmap().is_err() as u64;
                    let d = &dst[j];
                    failed += cap::CNode::from_bits(d.root.0).cnode_delete(d.index, d.depth).is_err() as u64;
                }
                let c6 = rdtsc();
                failed += ptc
                    .x86_page_table_copy_map_run(
                        vroot,
                        0,
                        n,
                        RW,
                        VmAttributes::DEFAULT,
                        cap::CNode::from_bits(s0.root),
                        s0.index,
                        s0.depth,
                        cap::CNode::from_bits(d0.root),
                        d0.index,
                        d0.depth,
                        RW,
                    )
                    .is_err() as u64;
                let c7 = rdtsc();
                failed += ptc
                    .x86_page_table_unmap_run(0, n, cap::CNode::from_bits(d0.root), d0.index, d0.depth, 1)
                    .is_err() as u64;
                let c8 = rdtsc();
                if it >= 2 {
                    for (k, (a, b)) in [
                        (c0, c1),
                        (c1, c2),
                        (c2, c3),
                        (c3, c4),
                        (c4, c5),
                        (c5, c6),
                        (c6, c7),
                        (c7, c8),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        t[k].push(b - a);
                    }
                }
            }
            let names = [
                ("leaf_map", "stock"),
                ("leaf_unmap", "stock"),
                ("leaf_map", "run"),
                ("leaf_unmap", "run"),
                ("leaf_clone", "stock"),
                ("leaf_destroy", "stock"),
                ("leaf_clone", "run"),
                ("leaf_destroy", "run"),
            ];
            let mut med = [0u64; 8];
            for (k, (op, path)) in names.into_iter().enumerate() {
                Measurement { op, path, pages: n }.report(&mut t[k], overhead);
                med[k] = t[k][t[k].len() / 2] / n;
            }
            if n == N {
                for (k, op) in [(0, "map"), (1, "unmap"), (4, "clone"), (5, "destroy")] {
                    let r = k + 2;
                    summary.push(format!(
                        "{op} {}/{} per page ({:.1}x)",
                        med[k],
                        med[r],
                        med[k] as f64 / med[r].max(1) as f64
                    ));
                }
            }
        }
        // Where the per-page ticks go: the all-or-nothing check alone, from
        // refusals at entry 0 and at entry 511 of a 512-entry run.
        let check = |f: &dyn Fn() -> Result<(), (Error, Vec<Word>)>, want: Error| {
            let mut best = u64::MAX;
            let mut ok = true;
            for _ in 0..5 {
                let a = rdtsc();
                let r = f();
                let b = rdtsc();
                ok &= matches!(r, Err((got, _)) if got == want);
                best = best.min(b - a);
            }
            (best.saturating_sub(overhead), ok)
        };
        let mut split = Vec::new();
        // MapRun / CopyMapRun: entry 0 (or 511) present.
        // The blocker is a frame cap outside the run (an original).
        let blocker = run_at(m, frames[0].slot);
        let one = |first: u64| map_raw(pt, vroot.0, first, 1, RW, blocker);
        let un = |first: u64| unmap_raw(pt, first, 1, blocker, false);
        for (name, is_copy) in [("map", false), ("clone", true)] {
            let mut ends = [0u64; 2];
            for (k, entry) in [0u64, N - 1].into_iter().enumerate() {
                failed += one(entry).is_err() as u64;
                let (t, ok) = if is_copy {
                    check(&|| copy_map_raw(pt, vroot.0, 0, N, s0, d0), Error::DeleteFirst)
                } else {
                    check(&|| map_raw(pt, vroot.0, 0, N, RW, s0), Error::DeleteFirst)
                };
                failed += !ok as u64;
                failed += un(entry).is_err() as u64;
                ends[k] = t;
            }
            split.push((name, (ends[1] - ends[0]) / (N - 1)));
        }
        // UnmapRun: R1's caps map entries 1..512 (or 0..511): entry 0's (or 511's) does not.
        {
            let mut ends = [0u64; 2];
            for (k, first) in [1u64, 0].into_iter().enumerate() {
                failed += map_raw(pt, vroot.0, first, N - 1, RW, run_at(m, r1.slot(first))).is_err() as u64;
                let (t, ok) = check(&|| unmap_raw(pt, 0, N, s0, false), Error::InvalidCapability);
                failed += !ok as u64;
                failed += unmap_raw(pt, first, N - 1, run_at(m, r1.slot(first)), false).is_err() as u64;
                ends[k] = t;
            }
            split.push(("unmap", (ends[1] - ends[0]) / (N - 1)));
        }
        let split: Vec<String> = split.iter().map(|(n, t)| format!("{n} {t}")).collect();
        summary.push(format!("of which the check of an entry: {}", split.join(", ")));
        for s in r1.iter().chain(r2.iter()) {
            delete_raw(m, s).map_err(e("delete"))?;
        }
        m.cs.release_slots(r1).map_err(e("release"))?;
        m.cs.release_slots(r2).map_err(e("release"))?;
        let torn = space.destroy(&mut m.vk()).map_err(e("destroy"))?;
        drop(torn);
        for a in &frames {
            m.cs.free(a.id).map_err(e("free frame"))?;
        }
        if failed != 0 {
            return Err(format!("{failed} invocations failed"));
        }
        Ok(format!("at {N} pages, stock/run ticks: {}", summary.join(", ")))
    }
}
