//! One test per operation and per refusal.

use alloc::vec::Vec;
use hashbrown::HashSet;

use super::{audit, boot, boot_with, MACHINE};
use crate::kernel::{KernelOp, KernelOps};
use crate::layout::{CNodeRef, Slot};
use crate::mock::{Cap, MockKernel};
use crate::types::{CPtr, KernelError, ObjectType as T, Rights};
use crate::{AllocError, CSpace, CapError, FreeError, InitError, Placement};

const RETYPE: usize = 0;

#[test]
fn boot_builds_two_levels_and_keeps_old_pointers() {
    let cs = boot();
    let k = cs.kernel();
    let l = *cs.layout();
    assert_eq!(k.counts[RETYPE], 1);
    assert_eq!((k.counts[2], k.counts[6]), (1, 1));
    // Boot-CNode pointers still name the same caps.
    assert_eq!(k.lookup(CPtr(1)).unwrap(), Some(Cap::Other(1)));
    assert!(matches!(
        k.lookup(CPtr(2)).unwrap(),
        Some(Cap::CNode { guard_size: 52, .. })
    ));
    assert!(matches!(k.lookup(CPtr(16)).unwrap(), Some(Cap::Untyped { .. })));
    // The L1 cap sits in the first empty slot; the TCB root is L1 with guard 44.
    assert_eq!(l.l1_slot, 22);
    assert!(matches!(
        k.lookup(CPtr(22)).unwrap(),
        Some(Cap::CNode {
            radix: 8,
            guard_size: 0,
            ..
        })
    ));
    assert_eq!(l.tcb_root_guard_bits(), 44);
    // L1 slot 0 holds the boot CNode with guard 0.
    let c = k
        .cap_at(
            l.path(Slot {
                cnode: CNodeRef::Level1,
                index: 0,
            })
            .unwrap(),
        )
        .unwrap();
    assert!(matches!(
        c,
        Some(Cap::CNode {
            radix: 12,
            guard_size: 0,
            ..
        })
    ));
    let st = cs.stats();
    assert_eq!(st.cnodes, 1);
    assert_eq!(st.cnode_bytes, 1 << 13);
    assert_eq!(st.objects_live, 0);
    assert_eq!(st.ram.total, (1 << 16) + (1 << 18) + (1 << 20) + (1 << 24) + (1 << 13));
    assert_eq!(st.device.total, 1 << 20);
    assert_eq!(st.ram.live, 1 << 13);
    assert_eq!(st.slots_capacity, 4096 - 22);
}

#[test]
fn alloc_then_free_restores_every_figure() {
    let mut cs = boot();
    let before = cs.stats();
    let ep = cs.alloc(T::Endpoint, 0).unwrap();
    audit(&cs);
    assert_eq!(cs.objects_live(), 1);
    assert_eq!(cs.count(T::Endpoint), 1);
    assert_eq!(cs.free_bytes(), before.ram.free - 16);
    assert_eq!(cs.slots_free(), before.slots_free - 1);
    assert!(matches!(
        cs.kernel().lookup(ep.cptr).unwrap(),
        Some(Cap::Object { ty: T::Endpoint, .. })
    ));
    assert!(matches!(
        cs.untypeds().node(ep.untyped).unwrap().state,
        crate::NodeState::Leaf { objects: 1, .. }
    ));
    cs.free(ep.id).unwrap();
    audit(&cs);
    assert_eq!(cs.stats(), before);
    assert_eq!(cs.free(ep.id), Err(FreeError::UnknownObject(ep.id)));
    assert_eq!(cs.stats(), before);
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let mut cs = boot();
    let before = cs.stats();
    let calls = cs.kernel().calls();
    assert_eq!(
        cs.alloc(T::Frame4K, 13),
        Err(AllocError::BadSize {
            ty: T::Frame4K,
            size_bits: 13
        })
    );
    assert_eq!(
        cs.alloc(T::CNode, 0),
        Err(AllocError::BadSize {
            ty: T::CNode,
            size_bits: 0
        })
    );
    assert_eq!(
        cs.alloc(T::Untyped, 3),
        Err(AllocError::BadSize {
            ty: T::Untyped,
            size_bits: 3
        })
    );
    assert_eq!(
        cs.alloc(T::Untyped, 48),
        Err(AllocError::BadSize {
            ty: T::Untyped,
            size_bits: 48
        })
    );
    assert_eq!(
        cs.alloc_many(T::Endpoint, 0, 0, Placement::Anywhere),
        Err(AllocError::BadCount { count: 0 })
    );
    assert_eq!(
        cs.alloc_many(T::Endpoint, 0, 257, Placement::Anywhere),
        Err(AllocError::BadCount { count: 257 })
    );
    assert_eq!(
        cs.alloc_many(T::CNode, 11, 64, Placement::Anywhere),
        Err(AllocError::BatchTooLarge {
            count: 64,
            obj_bits: 16
        })
    );
    assert_eq!(
        cs.alloc_at(T::Frame4K, 0, Placement::Range { lo: 0x5000, hi: 0x5000 }),
        Err(AllocError::BadRange { lo: 0x5000, hi: 0x5000 })
    );
    assert_eq!(
        cs.alloc_at(T::Frame4K, 0, Placement::Range { lo: 0x5000, hi: 0x5800 }),
        Err(AllocError::BadRange { lo: 0x5000, hi: 0x5800 })
    );
    assert_eq!(
        cs.alloc_at(
            T::Tcb,
            0,
            Placement::Range {
                lo: 0xe000_0000,
                hi: 0xe010_0000
            }
        ),
        Err(AllocError::DeviceMemory { ty: T::Tcb })
    );
    assert_eq!(
        cs.alloc_at(
            T::Frame4K,
            0,
            Placement::Range {
                lo: 0x9000_0000,
                hi: 0x9010_0000
            }
        ),
        Err(AllocError::OutOfMemory { bytes: 4096 })
    );
    assert_eq!(cs.alloc(T::Frame1G, 0), Err(AllocError::OutOfMemory { bytes: 1 << 30 }));
    assert_eq!(
        cs.alloc(T::Untyped, 25),
        Err(AllocError::OutOfMemory { bytes: 1 << 25 })
    );
    assert_eq!(cs.stats(), before);
    assert_eq!(
        cs.kernel().calls(),
        calls,
        "no kernel call for a request refused up front"
    );
    audit(&cs);
}

#[test]
fn best_fit_uses_the_smallest_untyped_that_fits() {
    let mut cs = boot();
    // After the L1 CNode (8 KiB) took the 8 KiB untyped, the smallest free one
    // is the 64 KiB untyped.
    let a = cs.alloc(T::Frame4K, 0).unwrap();
    assert_eq!(a.paddr, 0x10_0000);
    let b = cs.alloc(T::Endpoint, 0).unwrap();
    assert_eq!(b.paddr, 0x10_1000);
    // Alignment of the watermark: a TCB (2 KiB) after the endpoint.
    let t = cs.alloc(T::Tcb, 0).unwrap();
    assert_eq!(t.paddr, 0x10_1800);
    let st = cs.stats();
    assert_eq!(st.ram.padding, 0x800 - 16);
    audit(&cs);
    // The 64 KiB untyped fills up with 14 more frames; then the 256 KiB one
    // is the smallest that fits.
    let more: Vec<_> = (0..15).map(|_| cs.alloc(T::Frame4K, 0).unwrap()).collect();
    assert_eq!(more[13].paddr, 0x10_f000);
    assert_eq!(more[14].paddr, 0x14_0000);
    audit(&cs);
    for x in more.iter().chain([&a, &b, &t]) {
        cs.free(x.id).unwrap();
    }
    assert_eq!(cs.stats().ram.padding, 0);
    audit(&cs);
}

#[test]
fn chunk_reclaim_returns_free_bytes_exactly() {
    // Only the 16 MiB untyped (and an 8 KiB one for L1).
    let mut cs = boot_with(&[(0x8000, 13, false), (0x100_0000, 24, false)], |_| {});
    let before = cs.stats();
    let frames = cs.alloc_many(T::Frame4K, 0, 64, Placement::Anywhere).unwrap();
    let eps: Vec<_> = (0..100).map(|_| cs.alloc(T::Endpoint, 0).unwrap()).collect();
    audit(&cs);
    let st = cs.stats();
    // 16 MiB -> 16 x 1 MiB -> 2 x 2 MiB... chunks of 2 MiB.
    assert!(st.untyped_nodes > before.untyped_nodes);
    assert_eq!(st.ram.live, before.ram.live + 64 * 4096 + 100 * 16);
    // Pieces of 2 MiB serve the small objects.
    assert!(cs
        .untypeds()
        .nodes()
        .any(|(_, n)| n.size_bits == 21 && matches!(n.state, crate::NodeState::Leaf { .. })));
    for e in eps {
        cs.free(e.id).unwrap();
    }
    for f in frames {
        cs.free(f.id).unwrap();
    }
    audit(&cs);
    assert_eq!(cs.stats(), before);
    assert_eq!(cs.free_bytes(), before.ram.free);
}

#[test]
fn big_objects_come_from_a_piece_of_their_size() {
    let mut cs = boot_with(&[(0x8000, 13, false), (0x100_0000, 24, false)], |_| {});
    let before = cs.stats();
    let f = cs.alloc(T::Frame2M, 0).unwrap();
    assert_eq!(f.paddr, 0x100_0000);
    let u = cs.alloc(T::Untyped, 22).unwrap();
    assert_eq!(u.paddr % (1 << 22), 0);
    let small = cs.alloc(T::Frame4K, 0).unwrap();
    audit(&cs);
    // A chunk (2 MiB) of the 16 MiB untyped serves the small frame, not the
    // pieces holding big objects.
    assert!(small.paddr >= 0x100_0000 + (1 << 21) && (small.paddr < u.paddr || small.paddr >= u.paddr + (1 << 22)));
    cs.free(f.id).unwrap();
    cs.free(u.id).unwrap();
    cs.free(small.id).unwrap();
    audit(&cs);
    assert_eq!(cs.stats(), before);
}

#[test]
fn physical_range_allocation() {
    let mut cs = boot();
    let before = cs.stats();
    // A frame at an exact RAM address, inside the 16 MiB untyped.
    let f = cs
        .alloc_at(
            T::Frame4K,
            0,
            Placement::Range {
                lo: 0x123_4000,
                hi: 0x123_5000,
            },
        )
        .unwrap();
    assert_eq!(f.paddr, 0x123_4000);
    assert!(!f.device);
    // A device frame (device memory only when asked for).
    let d = cs
        .alloc_at(
            T::Frame4K,
            0,
            Placement::Range {
                lo: 0xe001_2000,
                hi: 0xe002_0000,
            },
        )
        .unwrap();
    assert_eq!(d.paddr, 0xe001_2000);
    assert!(d.device);
    assert_eq!(cs.stats().device.live, 4096);
    // The next one in the same range lands right after it.
    let d2 = cs
        .alloc_at(
            T::Frame4K,
            0,
            Placement::Range {
                lo: 0xe001_2000,
                hi: 0xe002_0000,
            },
        )
        .unwrap();
    assert_eq!(d2.paddr, 0xe001_3000);
    // Below 1 MiB + 64 KiB: the 64 KiB untyped.
    let low = cs
        .alloc_at(T::PageTable, 0, Placement::Range { lo: 0, hi: 0x11_0000 })
        .unwrap();
    assert!(low.paddr >= 0x10_0000 && low.paddr < 0x11_0000);
    // The rest of the split pieces serve ordinary requests later.
    audit(&cs);
    for x in [f, d, d2, low] {
        cs.free(x.id).unwrap();
    }
    audit(&cs);
    assert_eq!(cs.stats(), before);
}

#[test]
fn runs_of_slots_and_batches() {
    let mut cs = boot();
    let before = cs.stats();
    let r = cs.alloc_slots(200).unwrap();
    assert_eq!(r.len, 200);
    assert_eq!(cs.stats().slots_reserved, 200);
    let batch = cs.alloc_many(T::Frame4K, 0, 16, Placement::Anywhere).unwrap();
    for w in batch.windows(2) {
        assert_eq!(w[1].slot.index, w[0].slot.index + 1);
        assert_eq!(w[1].slot.cnode, w[0].slot.cnode);
        assert_eq!(w[1].paddr, w[0].paddr + 4096);
    }
    audit(&cs);
    // Copies into the reserved run.
    for (i, b) in batch.iter().enumerate() {
        cs.copy_to(b.slot, r.slot(i as u64), Rights::READ).unwrap();
    }
    audit(&cs);
    assert_eq!(cs.stats().slots_reserved, 200 - 16);
    assert_eq!(cs.release_slots(r), Err(CapError::NotReserved(r.slot(0))));
    for i in 0..16 {
        cs.delete(r.slot(i)).unwrap();
    }
    cs.release_slots(r).unwrap();
    assert_eq!(cs.release_slot(r.slot(0)), Err(CapError::NotReserved(r.slot(0))));
    for b in batch {
        cs.free(b.id).unwrap();
    }
    audit(&cs);
    assert_eq!(cs.stats(), before);
}

#[test]
fn grows_past_twenty_thousand_slots() {
    let mut cs = boot();
    let before = cs.stats();
    let n = 21_000;
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(cs.alloc(T::Endpoint, 0).unwrap());
    }
    let st = cs.stats();
    assert!(st.slots_capacity > 20_000, "{st:?}");
    assert!(st.cnodes >= 6);
    assert_eq!(st.objects_live, n as u64);
    // Every pointer resolves, through two levels, to its own endpoint.
    let mut objs = HashSet::new();
    let mut slots = HashSet::new();
    for a in &all {
        assert!(slots.insert(a.slot));
        match cs.kernel().lookup(a.cptr).unwrap() {
            Some(Cap::Object {
                obj, ty: T::Endpoint, ..
            }) => assert!(objs.insert(obj)),
            c => panic!("{a:?}: {c:?}"),
        }
    }
    assert!(all.iter().any(|a| a.slot.cnode == CNodeRef::Level2(5)));
    audit(&cs);
    for a in all {
        cs.free(a.id).unwrap();
    }
    audit(&cs);
    let st = cs.stats();
    assert_eq!(st.objects_live, 0);
    assert_eq!(st.ram.live, st.cnode_bytes);
    assert_eq!(st.ram.padding, 0);
    assert_eq!(st.ram.free, before.ram.free - (st.cnode_bytes - before.cnode_bytes));
}

#[test]
fn every_failing_call_is_rolled_back() {
    // A request that needs growth and splits: 17 free boot-CNode slots, one
    // for L1, the other 16 enough for growth's splits (7 halvings from 16 MiB
    // to 128 KiB) but less than the reserve (14) plus the request.
    let setup = || {
        boot_with(&[(0x8000, 13, false), (0x100_0000, 24, false)], |c| {
            c.empty = c.empty.start..c.empty.start + 17
        })
    };
    let mut cs = setup();
    let c0 = cs.kernel().calls();
    cs.alloc(T::Frame4K, 0).unwrap();
    let needed = cs.kernel().calls() - c0;
    assert_eq!(cs.stats().cnodes, 2);
    assert_eq!(
        needed,
        7 * 2 + 2,
        "7 halvings (a retype per half), the new CNode, the frame"
    );
    for k in 1..=needed {
        for e in [KernelError::NotEnoughMemory, KernelError::FailedLookup] {
            let mut cs = setup();
            let before = cs.stats();
            cs.kernel_mut().fail_in(k, e);
            let r = cs.alloc(T::Frame4K, 0);
            assert_eq!(
                r,
                Err(AllocError::Kernel {
                    op: KernelOp::Retype,
                    error: e
                }),
                "call {k}"
            );
            assert_eq!(cs.stats(), before, "call {k}");
            audit(&cs);
            let a = cs.alloc(T::Frame4K, 0).unwrap();
            audit(&cs);
            cs.free(a.id).unwrap();
            audit(&cs);
        }
    }
}

#[test]
fn failed_rollback_poisons() {
    let machine = [(0x8000, 13, false), (0x100_0000, 24, false)];
    let mut cs = boot_with(&machine, |_| {});
    let c = cs.kernel().calls();
    cs.alloc(T::Frame4K, 0).unwrap();
    let n = cs.kernel().calls() - c;
    // Fail the last call (the frame), then every try of the first undo.
    let mut cs = boot_with(&machine, |_| {});
    let c = cs.kernel().calls();
    for i in 0..4 {
        cs.kernel_mut().fail_call(c + n + i, KernelError::FailedLookup);
    }
    assert_eq!(cs.alloc(T::Frame4K, 0), Err(AllocError::Poisoned));
    assert!(cs.is_poisoned());
    assert_eq!(cs.alloc(T::Endpoint, 0), Err(AllocError::Poisoned));
    assert_eq!(cs.alloc_slot(), Err(AllocError::Poisoned));
}

#[test]
fn free_refusals_and_kernel_failures() {
    let mut cs = boot();
    let ep = cs.alloc(T::Endpoint, 0).unwrap();
    let c = cs.copy(ep.slot, Rights::ALL_CAP).unwrap();
    let before = cs.stats();
    assert_eq!(cs.free(ep.id), Err(FreeError::HasCopies { id: ep.id, copies: 1 }));
    assert_eq!(cs.stats(), before);
    cs.delete(c).unwrap();
    let before = cs.stats();
    cs.kernel_mut().fail_in(1, KernelError::InvalidCapability);
    assert_eq!(
        cs.free(ep.id),
        Err(FreeError::Kernel {
            op: KernelOp::Delete,
            error: KernelError::InvalidCapability
        })
    );
    assert_eq!(cs.stats(), before);
    audit(&cs);
    cs.free(ep.id).unwrap();
    audit(&cs);
}

#[test]
fn copy_mint_move_delete_revoke() {
    let mut cs = boot();
    let ep = cs.alloc(T::Endpoint, 0).unwrap();
    let fr = cs.alloc(T::Frame4K, 0).unwrap();
    let st0 = cs.stats();
    // Mint badged copies; copy a badged one.
    let b1 = cs.mint(ep.slot, Rights::ALL_CAP, 7).unwrap();
    let b2 = cs.mint(ep.slot, Rights::WRITE, 9).unwrap();
    let b1c = cs.copy(b1, Rights::WRITE).unwrap();
    assert_eq!(cs.badge(b1c), Some(7));
    assert!(matches!(
        cs.kernel().lookup(cs.cptr(b1c)).unwrap(),
        Some(Cap::Object { badge: 7, .. })
    ));
    audit(&cs);
    // Refusals.
    let before = cs.stats();
    assert_eq!(cs.mint(b1, Rights::ALL_CAP, 3), Err(CapError::AlreadyBadged(b1)));
    assert_eq!(
        cs.mint(fr.slot, Rights::ALL_CAP, 3),
        Err(CapError::NotBadgeable(fr.slot))
    );
    assert_eq!(cs.delete(ep.slot), Err(CapError::IsOriginal(ep.slot)));
    let nowhere = Slot::root(4000);
    assert_eq!(cs.copy(nowhere, Rights::ALL_CAP), Err(CapError::NotManaged(nowhere)));
    assert_eq!(cs.mv(b1, nowhere), Err(CapError::NotReserved(nowhere)));
    assert_eq!(
        cs.copy_to(b1, nowhere, Rights::ALL_CAP),
        Err(CapError::NotReserved(nowhere))
    );
    assert_eq!(cs.revoke(nowhere), Err(CapError::NotManaged(nowhere)));
    cs.kernel_mut().fail_in(1, KernelError::DeleteFirst);
    assert_eq!(
        cs.copy(ep.slot, Rights::ALL_CAP),
        Err(CapError::Kernel {
            op: KernelOp::Copy,
            error: KernelError::DeleteFirst
        })
    );
    assert_eq!(cs.stats(), before);
    audit(&cs);
    // Move the badged cap; its copy follows it in the derivation tree.
    let dest = cs.alloc_slot().unwrap();
    cs.mv(b1, dest).unwrap();
    assert!(!cs.is_managed(b1));
    audit(&cs);
    // Revoking the moved cap deletes its copy only.
    cs.revoke(dest).unwrap();
    assert!(!cs.is_managed(b1c));
    assert!(cs.is_managed(b2));
    audit(&cs);
    // Deleting the moved cap gives its slot back to the caller.
    cs.delete(dest).unwrap();
    assert!(cs.reserved_slots().any(|s| s == dest));
    cs.release_slot(dest).unwrap();
    // Revoking the original deletes every remaining copy.
    let f1 = cs.copy(fr.slot, Rights::READ).unwrap();
    let _f2 = cs.copy(f1, Rights::READ).unwrap();
    cs.revoke(ep.slot).unwrap();
    cs.revoke(fr.slot).unwrap();
    audit(&cs);
    assert_eq!(cs.stats(), st0);
    // An original can move too; free finds it at its new slot.
    let d = cs.alloc_slot().unwrap();
    cs.mv(fr.slot, d).unwrap();
    assert_eq!(cs.object(fr.id).unwrap().slot, d);
    cs.free(fr.id).unwrap();
    assert!(cs.reserved_slots().any(|s| s == d));
    cs.release_slot(d).unwrap();
    cs.free(ep.id).unwrap();
    audit(&cs);
}

#[test]
fn deleting_a_copy_keeps_its_copies_under_the_parent() {
    let mut cs = boot();
    let ep = cs.alloc(T::Endpoint, 0).unwrap();
    let b = cs.mint(ep.slot, Rights::ALL_CAP, 5).unwrap();
    let bc = cs.copy(b, Rights::ALL_CAP).unwrap();
    cs.delete(b).unwrap();
    audit(&cs);
    // The kernel re-attaches the copy to the original: revoking it deletes it.
    cs.revoke(ep.slot).unwrap();
    assert!(!cs.is_managed(bc));
    assert_eq!(cs.kernel().lookup(cs.cptr(bc)).unwrap(), None);
    audit(&cs);
    cs.free(ep.id).unwrap();
}

#[test]
fn freeing_an_untyped_revokes_what_was_made_from_it() {
    let mut cs = boot();
    let before = cs.stats();
    let u = cs.alloc(T::Untyped, 16).unwrap();
    // The caller retypes from it behind the manager's back, into a reserved slot.
    let s = cs.alloc_slot().unwrap();
    let dest = cs
        .layout()
        .retype_dest(crate::SlotRange {
            cnode: s.cnode,
            start: s.index,
            len: 1,
        })
        .unwrap();
    cs.kernel_mut()
        .untyped_retype(u.cptr, T::Notification, 0, dest)
        .unwrap();
    cs.free(u.id).unwrap();
    assert_eq!(cs.kernel().lookup(cs.cptr(s)).unwrap(), None);
    cs.release_slot(s).unwrap();
    audit(&cs);
    assert_eq!(cs.stats(), before);
}

#[test]
fn failed_reclaim_is_counted_and_retried() {
    let mut cs = boot_with(&[(0x8000, 13, false), (0x100_0000, 24, false)], |_| {});
    let before = cs.stats();
    let f = cs.alloc(T::Frame4K, 0).unwrap();
    // free: delete, then revoke of the 2-MiB piece's parent fails.
    cs.kernel_mut().fail_in(2, KernelError::RevokeFirst);
    cs.free(f.id).unwrap();
    audit(&cs);
    let st = cs.stats();
    assert_eq!(st.reclaim_failures, 1);
    assert_eq!(st.ram.free, before.ram.free);
    let splits = cs
        .untypeds()
        .nodes()
        .filter(|(_, n)| matches!(n.state, crate::NodeState::Split { .. }))
        .count() as u64;
    assert!(splits >= 1);
    assert_eq!(cs.reclaim_idle(), Ok(splits));
    audit(&cs);
    assert_eq!(
        cs.stats(),
        crate::Stats {
            reclaim_failures: 1,
            ..before
        }
    );
}

#[test]
fn init_failures_undo_everything() {
    let err = |k, cfg| CSpace::new(k, cfg).err().map(|(e, _)| e);
    let (k, cfg) = MockKernel::boot(12, &[(0x8000, 12, false)]);
    assert_eq!(err(k, cfg), Some(InitError::OutOfMemory));
    let (k, cfg) = MockKernel::boot(12, &[(0x1000, 13, false)]);
    assert!(matches!(err(k, cfg), Some(InitError::Untyped(_))));
    let (k, mut cfg) = MockKernel::boot(12, MACHINE);
    cfg.root_bits = 13;
    assert!(matches!(err(k, cfg), Some(InitError::Layout(_))));
    let (k, mut cfg) = MockKernel::boot(12, MACHINE);
    cfg.empty = 10..20;
    assert_eq!(err(k, cfg), Some(InitError::Slots));
    // A failure at each start-up call leaves the model as it was booted.
    let machine = [(0x100_0000, 24, false)];
    let (k, cfg) = MockKernel::boot(12, &machine);
    let calls = CSpace::new(k, cfg).map_err(|(e, _)| e).unwrap().kernel().calls();
    assert_eq!(
        calls,
        11 * 2 + 3,
        "11 halvings from 16 MiB to 8 KiB (a retype per half), L1, mint, set space"
    );
    for n in 1..=calls {
        let (mut k, cfg) = MockKernel::boot(12, &machine);
        let (occupied, objects) = (k.occupied_slots(), k.objects().count());
        k.fail_call(n, KernelError::NotEnoughMemory);
        let (e, k) = CSpace::new(k, cfg).err().unwrap();
        assert!(
            matches!(
                e,
                InitError::Kernel {
                    error: KernelError::NotEnoughMemory,
                    ..
                }
            ),
            "call {n}"
        );
        assert_eq!(
            (k.occupied_slots(), k.objects().count()),
            (occupied, objects),
            "call {n}"
        );
        let root = crate::CapPath {
            root: CPtr(2),
            index: 16,
            depth: 64,
        };
        assert!(!k.untyped(root).unwrap().has_children, "call {n}");
        assert!(matches!(
            k.lookup(CPtr(2)).unwrap(),
            Some(Cap::CNode { guard_size: 52, .. })
        ));
    }
}

#[test]
fn full_cspace_refuses_with_out_of_slots() {
    // One level-2 CNode beside the boot CNode (L1 radix 1).
    let mut cs = boot_with(&[(0x8000, 13, false), (0x100_0000, 24, false)], |c| c.l1_bits = 1);
    let mut held = Vec::new();
    let err = loop {
        match cs.alloc_slots(64) {
            Ok(r) => held.push(r),
            Err(e) => break e,
        }
    };
    assert_eq!(err, AllocError::OutOfSlots { needed: 64 });
    assert_eq!(cs.stats().cnodes, 2);
    let before = cs.stats();
    let calls = cs.kernel().calls();
    assert!(matches!(
        cs.alloc_many(T::Endpoint, 0, 64, Placement::Anywhere),
        Err(AllocError::OutOfSlots { .. })
    ));
    assert_eq!(cs.stats(), before);
    assert_eq!(cs.kernel().calls(), calls);
    audit(&cs);
    // Single slots are still there (the growth reserve and the tail).
    while cs.stats().slots_free > 0 {
        let e = cs.alloc(T::Endpoint, 0).unwrap();
        let _ = e;
    }
    let before = cs.stats();
    assert_eq!(cs.alloc(T::Endpoint, 0), Err(AllocError::OutOfSlots { needed: 1 }));
    assert_eq!(
        cs.copy(held[0].slot(0), Rights::ALL_CAP),
        Err(CapError::NotManaged(held[0].slot(0)))
    );
    let ep = cs.objects().next().unwrap();
    assert_eq!(
        cs.copy(ep.slot, Rights::ALL_CAP),
        Err(CapError::OutOfSlots { needed: 1 })
    );
    assert_eq!(cs.stats(), before);
    audit(&cs);
}

#[test]
fn device_refusal_names_device_memory_after_a_device_frame_came_and_went() {
    // A small device untyped at physical address 0, as pc99 hands over.
    let mut cs = boot_with(&[(0, 14, true), (0x100_0000, 24, false)], |_| {});
    let f = cs
        .alloc_at(T::Frame4K, 0, Placement::Range { lo: 0, hi: 0x1000 })
        .unwrap();
    cs.free(f.id).unwrap();
    assert_eq!(
        cs.alloc_at(T::Tcb, 0, Placement::Range { lo: 0, hi: 0x1000 }),
        Err(AllocError::DeviceMemory { ty: T::Tcb })
    );
}
