//! CSpace, untyped and VSpace management on the real kernel: each check
//! states what a thread in the target address space observes (probe reads,
//! writes and faults) and what the manager's figures say.

use crate::manager::Manager;
use crate::probe::{Access, Probe};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use cspace::{AllocError, ObjectType, Rights as CsRights};
use sel4_root_task::Verdict;
use vspace::{CacheAttr, CapRef, MapError, Page, PageRange, Rights, Size2M, Size4K, USER_VADDR_END};

const PRIO: u8 = 200;
const RW: Rights = Rights::READ.union(Rights::WRITE);
const VA_A: u64 = 0x1000_0000;
const VA_B: u64 = 0x2000_0000;
const VA_LARGE: u64 = 0x4000_0000;

fn r4k(va: u64, n: u64) -> PageRange<Size4K> {
    PageRange::from_count(Page::from_start_address(va).expect("aligned"), n).expect("range")
}

fn r2m(va: u64, n: u64) -> PageRange<Size2M> {
    PageRange::from_count(Page::from_start_address(va).expect("aligned"), n).expect("range")
}

/// Failure of a check, as text for its record.
type Outcome = Result<String, String>;

fn e<T: core::fmt::Debug>(what: &str) -> impl FnOnce(T) -> String + '_ {
    move |x| format!("{what}: {x:?}")
}

fn expect(what: &str, got: Access, want: Access) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: saw {got:x?}, expected {want:x?}"))
    }
}

fn report(v: &mut Verdict, name: &str, r: Outcome) {
    match r {
        Ok(d) => v.check(name, true, &d),
        Err(d) => v.check(name, false, &d),
    };
}

/// Runs every check; returns nothing, reports through `v`.
pub fn run(m: &mut Manager, v: &mut Verdict) {
    let base = m.cs.stats();
    let probes = (Probe::new(m, PRIO), Probe::new(m, PRIO));
    let (mut a, mut b) = match probes {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            v.check("vspace.probes", false, &format!("{:?} / {:?}", a.err(), b.err()));
            return;
        }
    };
    v.check(
        "vspace.probes",
        true,
        "two probe threads, each in an address space of its own",
    );

    // One frame, mapped in both address spaces through two caps.
    let frame = m.alloc(ObjectType::Frame4K);
    let Ok(frame) = frame else {
        v.check("vspace.shared_frame", false, &format!("{frame:?}"));
        return;
    };
    let copy =
        m.cs.copy(frame.slot, CsRights::READ | CsRights::WRITE)
            .map(|s| CapRef(m.cptr(s)));
    let shared = (|| -> Outcome {
        let copy = copy.map_err(e("copy"))?;
        a.space
            .map(&mut m.vk(), r4k(VA_A, 1), &[frame.cptr], RW, CacheAttr::WriteBack)
            .map_err(e("map A"))?;
        b.space
            .map(&mut m.vk(), r4k(VA_B, 1), &[copy], RW, CacheAttr::WriteBack)
            .map_err(e("map B"))?;
        expect(
            "A writes",
            a.write(VA_A + 8, 0xfeed_f00d).map_err(e("probe"))?,
            Access::Done(0),
        )?;
        expect(
            "B reads",
            b.read(VA_B + 8).map_err(e("probe"))?,
            Access::Done(0xfeed_f00d),
        )?;
        expect(
            "B writes",
            b.write(VA_B + 16, 0xbeef).map_err(e("probe"))?,
            Access::Done(0),
        )?;
        expect("A reads", a.read(VA_A + 16).map_err(e("probe"))?, Access::Done(0xbeef))?;
        Ok(format!("A wrote at {VA_A:#x}+8, B read it at {VA_B:#x}+8, and back"))
    })();
    report(v, "vspace.shared_frame", shared);

    // After unmap, B's access faults at the address and the root task gets the fault.
    let unmapped = (|| -> Outcome {
        let caps = b.space.unmap(&mut m.vk(), r4k(VA_B, 1)).map_err(e("unmap"))?;
        if caps.len() != 1 || b.space.lookup(vspace::VirtAddr::new(VA_B)).is_some() {
            return Err(format!("unmap returned {caps:?}"));
        }
        expect(
            "B reads after unmap",
            b.read(VA_B + 8).map_err(e("probe"))?,
            Access::Fault {
                addr: VA_B + 8,
                write: false,
            },
        )?;
        expect(
            "A still reads",
            a.read(VA_A + 8).map_err(e("probe"))?,
            Access::Done(0xfeed_f00d),
        )?;
        Ok(format!(
            "fault at {:#x} delivered to the root task; A unaffected",
            VA_B + 8
        ))
    })();
    report(v, "vspace.unmap_faults", unmapped);

    // Protect to read-only: a write faults, a read succeeds.
    let protected = (|| -> Outcome {
        let n = a
            .space
            .protect(&mut m.vk(), r4k(VA_A, 1), Rights::READ, CacheAttr::WriteBack)
            .map_err(e("protect"))?;
        expect(
            "A writes read-only",
            a.write(VA_A + 8, 1).map_err(e("probe"))?,
            Access::Fault {
                addr: VA_A + 8,
                write: true,
            },
        )?;
        expect(
            "A reads read-only",
            a.read(VA_A + 8).map_err(e("probe"))?,
            Access::Done(0xfeed_f00d),
        )?;
        a.space
            .protect(&mut m.vk(), r4k(VA_A, 1), RW, CacheAttr::WriteBack)
            .map_err(e("protect back"))?;
        expect(
            "A writes again",
            a.write(VA_A + 8, 2).map_err(e("probe"))?,
            Access::Done(0),
        )?;
        Ok(format!(
            "{n} page remapped read-only: write faulted, read saw the old value; writable again after"
        ))
    })();
    report(v, "vspace.protect_read_only", protected);

    // 2 MiB pages.
    let large = large_pages(m, &mut a);
    report(v, "vspace.large_pages", large);

    // Sparse mappings over the whole 47-bit user range.
    let sparse = sparse(m, &mut b);
    report(v, "vspace.sparse_47bit", sparse);

    // Refusals are typed and change nothing.
    let refusals = refusals(m, &mut a, frame.cptr.0);
    report(v, "vspace.refusals_change_nothing", refusals);

    // Tear everything down: the figures return to exactly where they were.
    let teardown = (|| -> Outcome {
        let mut frames = a.destroy(m).map_err(e("destroy A"))?;
        frames.extend(b.destroy(m).map_err(e("destroy B"))?);
        if let Ok(c) = copy {
            let slot = m.cs.layout().slot_of(c).ok_or("copy slot")?;
            m.cs.delete(slot).map_err(e("delete copy"))?;
        }
        m.cs.free(frame.id).map_err(e("free frame"))?;
        let now = m.cs.stats();
        if now != base {
            return Err(format!(
                "figures differ after teardown:\n before {base:?}\n after  {now:?}"
            ));
        }
        Ok(format!(
            "{} frame caps returned; RAM free {} B, objects {}, slots free {} as before",
            frames.len(),
            now.ram.free,
            now.objects_live,
            now.slots_free
        ))
    })();
    report(v, "vspace.teardown_exact", teardown);

    let placed = physical_placement(m);
    report(v, "cspace.physical_placement", placed);

    let exhaust = exhaustion(m);
    report(v, "cspace.exhaustion", exhaust);
}

/// Frames from a requested physical range: RAM (checked by the kernel's
/// `X86Page_GetAddress`, and by writing and reading it through a mapping) and
/// device memory (its first page), then both freed with figures restored.
fn physical_placement(m: &mut Manager) -> Outcome {
    use cspace::Placement;
    let base = m.cs.stats();
    let bi = sel4_root_task::bootinfo();
    // A RAM range: the upper half of the second-largest RAM untyped.
    let mut ram: Vec<(u64, u8)> = bi
        .untyped_descs()
        .iter()
        .filter(|u| !u.device())
        .map(|u| (u.paddr, u.size_bits))
        .collect();
    ram.sort_by_key(|&(_, b)| core::cmp::Reverse(b));
    let &(paddr, bits) = ram.get(1).ok_or("no second RAM untyped")?;
    let (lo, hi) = (paddr + (1 << (bits - 1)), paddr + (1 << bits));
    let f =
        m.cs.alloc_at(ObjectType::Frame4K, 0, Placement::Range { lo, hi })
            .map_err(e("RAM frame in range"))?;
    let got = sel4::cap::Frame::from_bits(f.cptr.0)
        .x86_page_get_address()
        .map_err(e("GetAddress"))?;
    if got != f.paddr || got < lo || got >= hi {
        return Err(format!(
            "asked [{lo:#x}, {hi:#x}), books say {:#x}, kernel says {got:#x}",
            f.paddr
        ));
    }
    // Device memory: the first page of an aligned device untyped.
    let dev = bi
        .untyped_descs()
        .iter()
        .find(|u| u.device() && u.paddr & ((1u64 << u.size_bits) - 1) == 0 && u.size_bits >= 12)
        .map(|u| u.paddr)
        .ok_or("no device untyped")?;
    let d =
        m.cs.alloc_at(
            ObjectType::Frame4K,
            0,
            Placement::Range {
                lo: dev,
                hi: dev + 4096,
            },
        )
        .map_err(e("device frame"))?;
    let dgot = sel4::cap::Frame::from_bits(d.cptr.0)
        .x86_page_get_address()
        .map_err(e("GetAddress"))?;
    m.cs.free(d.id).map_err(e("free"))?;
    // Once the device page is free again: a TCB cannot be made from device
    // memory, a typed refusal naming it.
    let refused = m.cs.alloc_at(
        ObjectType::Tcb,
        0,
        Placement::Range {
            lo: dev,
            hi: dev + 4096,
        },
    );
    m.cs.free(f.id).map_err(e("free"))?;
    let now = m.cs.stats();
    let device_refusal = matches!(refused, Err(AllocError::DeviceMemory { ty: ObjectType::Tcb }));
    if dgot != dev || !d.device || !device_refusal || now != base {
        return Err(format!(
            "device frame at {dgot:#x} (asked {dev:#x}), TCB: {refused:?}; figures restored: {}",
            now == base
        ));
    }
    Ok(format!(
        "RAM frame at {got:#x} in [{lo:#x}, {hi:#x}); device frame at {dgot:#x}; TCB from device memory refused: {:?}",
        refused.err()
    ))
}

fn large_pages(m: &mut Manager, a: &mut Probe) -> Outcome {
    let big = m.alloc(ObjectType::Frame2M).map_err(e("alloc 2 MiB frame"))?;
    let cap = big.cptr;
    a.space
        .map(&mut m.vk(), r2m(VA_LARGE, 1), &[cap], RW, CacheAttr::WriteBack)
        .map_err(e("map 2 MiB"))?;
    let last = VA_LARGE + (1 << 21) - 8;
    expect(
        "write at the start",
        a.write(VA_LARGE, 0x11).map_err(e("probe"))?,
        Access::Done(0),
    )?;
    expect(
        "write at the end",
        a.write(last, 0x22).map_err(e("probe"))?,
        Access::Done(0),
    )?;
    expect(
        "read at the start",
        a.read(VA_LARGE).map_err(e("probe"))?,
        Access::Done(0x11),
    )?;
    expect("read at the end", a.read(last).map_err(e("probe"))?, Access::Done(0x22))?;
    // A 4 KiB mapping inside the large page is refused by the shadow.
    let small = m.alloc(ObjectType::Frame4K).map_err(e("alloc"))?;
    let before = (m.cs.stats(), a.space.stats());
    let overlap = a.space.map(
        &mut m.vk(),
        r4k(VA_LARGE + 0x1000, 1),
        &[small.cptr],
        RW,
        CacheAttr::WriteBack,
    );
    let after = (m.cs.stats(), a.space.stats());
    let tables = a.space.stats().tables;
    a.space.unmap(&mut m.vk(), r2m(VA_LARGE, 1)).map_err(e("unmap 2 MiB"))?;
    expect(
        "read after unmap",
        a.read(VA_LARGE).map_err(e("probe"))?,
        Access::Fault {
            addr: VA_LARGE,
            write: false,
        },
    )?;
    m.cs.free(small.id).map_err(e("free"))?;
    m.cs.free(big.id).map_err(e("free"))?;
    if !matches!(overlap, Err(MapError::Overlap { .. })) || before != after {
        return Err(format!(
            "4 KiB inside the 2 MiB page: {overlap:?}; figures changed: {}",
            before != after
        ));
    }
    Ok(format!(
        "2 MiB page read/written at both ends (tables PDPT/PD/PT {tables:?}: no PT), 4 KiB inside refused: Overlap"
    ))
}

fn sparse(m: &mut Manager, b: &mut Probe) -> Outcome {
    // One page in each of several 512 GiB regions, plus the lowest and highest user pages.
    let mut addrs: Vec<u64> = (1..8u64)
        .map(|i| (i << 39) + (i << 30) + (i << 21) + (i << 12))
        .collect();
    addrs.push(0x1000);
    addrs.push(USER_VADDR_END - 0x1000);
    let before = b.space.stats();
    let mut frames = Vec::new();
    for (i, &va) in addrs.iter().enumerate() {
        let f = m.alloc(ObjectType::Frame4K).map_err(e("alloc"))?;
        frames.push(f.id);
        b.space
            .map(&mut m.vk(), r4k(va, 1), &[f.cptr], RW, CacheAttr::WriteBack)
            .map_err(e("map"))?;
        expect(
            "write",
            b.write(va, 0x100 + i as u64).map_err(e("probe"))?,
            Access::Done(0),
        )?;
    }
    for (i, &va) in addrs.iter().enumerate() {
        expect(
            "read back",
            b.read(va).map_err(e("probe"))?,
            Access::Done(0x100 + i as u64),
        )?;
    }
    let during = b.space.stats();
    for &va in &addrs {
        b.space.unmap(&mut m.vk(), r4k(va, 1)).map_err(e("unmap"))?;
        expect(
            "read after unmap",
            b.read(va).map_err(e("probe"))?,
            Access::Fault { addr: va, write: false },
        )?;
    }
    for id in frames {
        m.cs.free(id).map_err(e("free"))?;
    }
    let after = b.space.stats();
    if after != before {
        return Err(format!("tables not reclaimed: before {before:?} after {after:?}"));
    }
    Ok(format!(
        "{} pages from {:#x} to {:#x}: each read back its own value; tables PDPT/PD/PT {:?} while mapped, {:?} after unmap",
        addrs.len(),
        0x1000,
        USER_VADDR_END - 0x1000,
        during.tables,
        after.tables
    ))
}

fn refusals(m: &mut Manager, a: &mut Probe, mapped_frame: u64) -> Outcome {
    let fresh = m.alloc(ObjectType::Frame4K).map_err(e("alloc"))?;
    let tcb = m.alloc(ObjectType::Tcb).map_err(e("alloc"))?;
    let snapshot = |m: &Manager, a: &Probe| (m.cs.stats(), a.space.stats(), a.space.mappings().count());
    let before = snapshot(m, a);
    let mut seen = Vec::new();
    let mut vk = m.vk();
    // Misaligned: cannot even be expressed as a page.
    seen.push(format!("{:?}", Page::<Size4K>::from_start_address(VA_A + 8).err()));
    let misaligned = Page::<Size2M>::from_start_address(VA_A + 0x1000).is_err();
    // Overlap with the existing mapping at VA_A.
    let overlap = a
        .space
        .map(&mut vk, r4k(VA_A, 1), &[fresh.cptr], RW, CacheAttr::WriteBack);
    // Outside the user range.
    let outside = a
        .space
        .map(&mut vk, r4k(USER_VADDR_END, 1), &[fresh.cptr], RW, CacheAttr::WriteBack);
    // A cap that is already mapped elsewhere.
    let mapped = a
        .space
        .map(&mut vk, r4k(VA_B, 1), &[CapRef(mapped_frame)], RW, CacheAttr::WriteBack);
    // The wrong cap type: a TCB where a frame belongs, next to an existing
    // mapping (its leaf table exists): the kernel refuses, nothing to undo.
    let wrong = a
        .space
        .map(&mut vk, r4k(VA_A + 0x1000, 1), &[tcb.cptr], RW, CacheAttr::WriteBack);
    // Wrong number of caps; write without read.
    let count = a
        .space
        .map(&mut vk, r4k(VA_B, 2), &[fresh.cptr], RW, CacheAttr::WriteBack);
    let wo = a.space.map(
        &mut vk,
        r4k(VA_B, 1),
        &[fresh.cptr],
        Rights::WRITE,
        CacheAttr::WriteBack,
    );
    let after = snapshot(m, a);
    for r in [&overlap, &outside, &mapped, &wrong, &count, &wo] {
        seen.push(format!("{:?}", r.as_ref().err()));
    }
    let ok = misaligned
        && matches!(overlap, Err(MapError::Overlap { .. }))
        && matches!(outside, Err(MapError::OutsideUserRange { .. }))
        && mapped.is_err()
        && matches!(wrong, Err(MapError::Kernel { .. }))
        && count.is_err()
        && wo.is_err()
        && before == after;
    // The wrong cap type where no leaf table exists yet: the tables are
    // allocated, the kernel refuses the frame, everything is rolled back. The
    // tables' bytes stay in their untyped chunk until it empties (seL4 reuses
    // untyped memory only then): they move from `free` to `padding`, and
    // every other figure is as before.
    let ram_before = m.cs.stats().ram;
    let fresh_region = a
        .space
        .map(&mut m.vk(), r4k(VA_B, 1), &[tcb.cptr], RW, CacheAttr::WriteBack);
    let mut after_tables = snapshot(m, a);
    let ram_after = after_tables.0.ram;
    seen.push(format!(
        "fresh region: {:?}, {} B of tables now padding (ram before {ram_before:?} after {ram_after:?})",
        fresh_region.as_ref().err(),
        ram_before.free - ram_after.free
    ));
    after_tables.0.ram = ram_before;
    let ok =
        ok && matches!(
            fresh_region,
            Err(MapError::Kernel {
                rollback: vspace::Rollback::Complete,
                ..
            })
        ) && after_tables == before
            && ram_after.free + ram_after.padding == ram_before.free + ram_before.padding
            && ram_after.live == ram_before.live;
    m.cs.free(tcb.id).map_err(e("free"))?;
    m.cs.free(fresh.id).map_err(e("free"))?;
    let text = seen.join("; ");
    if ok {
        Ok(text)
    } else {
        Err(format!(
            "{text}; shadow-refusal figures before {before:?} after {after:?}; after the fresh region {after_tables:?}"
        ))
    }
}

/// Exhausts untyped memory and then slots: each refusal is typed and leaves
/// the figures unchanged; freeing everything restores them.
fn exhaustion(m: &mut Manager) -> Outcome {
    let base = m.cs.stats();
    let mut got = Vec::new();
    // Large frames first, then small ones, until RAM is gone.
    let mut refusal = None;
    for ty in [ObjectType::Frame2M, ObjectType::Frame4K] {
        loop {
            let before = m.cs.stats();
            match m.alloc(ty) {
                Ok(a) => got.push(a.id),
                Err(err) => {
                    if m.cs.stats() != before {
                        return Err(format!("{err:?} changed the figures"));
                    }
                    if ty == ObjectType::Frame4K {
                        refusal = Some(err);
                    }
                    break;
                }
            }
        }
    }
    let oom = matches!(refusal, Some(AllocError::OutOfMemory { .. }));
    let ram_left = m.cs.stats().ram.free;
    // Slots: without RAM the CSpace cannot grow, so the slots run out.
    let mut slots = Vec::new();
    let slot_refusal = loop {
        let before = m.cs.stats();
        match m.cs.alloc_slot() {
            Ok(s) => slots.push(s),
            Err(err) => {
                if m.cs.stats() != before {
                    return Err(format!("{err:?} changed the figures"));
                }
                break err;
            }
        }
    };
    let n_slots = slots.len();
    for s in slots {
        m.cs.release_slot(s).map_err(e("release"))?;
    }
    let n_objects = got.len();
    for id in got.into_iter().rev() {
        m.cs.free(id).map_err(e("free"))?;
    }
    let now = m.cs.stats();
    if !oom || !matches!(slot_refusal, AllocError::OutOfSlots { .. }) || now != base {
        return Err(format!(
            "memory refusal {refusal:?}, slot refusal {slot_refusal:?}; figures before {base:?} after {now:?}"
        ));
    }
    Ok(format!(
        "{n_objects} frames until {refusal:?} ({ram_left} B RAM left in pieces too small), then {n_slots} slots until \
         {slot_refusal:?}; all freed, figures as before"
    ))
}
