//! The x86_64 paging model of [`MockKernel`]: one test per invocation's
//! success and per refusal rule (named for the rule), 5.0's deletion
//! behaviour, the run invocations of patch 0005, and failure injection.

use alloc::vec;
use alloc::vec::Vec;

use crate::kernel::KernelOps;
use crate::layout::{CapPath, RetypeDest};
use crate::mock::paging::mask_vm_rights;
use crate::mock::{
    Cap, CapMapping, CteRef, MockKernel, ObjId, PagingEntry, PagingLevel as L, CALL_ASID_POOL_ASSIGN,
    CALL_COPY_MAP_RUN, CALL_KINDS, CALL_MAP_RUN, CALL_PAGE_MAP, CALL_PAGE_REMAP, CALL_PAGE_UNMAP, CALL_TABLE_MAP,
    CALL_TABLE_UNMAP, CALL_UNMAP_RUN, IT_ASID, PPTR_USER_TOP_SMP, PPTR_USER_TOP_UP,
};
use crate::types::{CPtr, KernelError as E, ObjectType as T, Rights};

/// 16 MiB of RAM at 0x100_0000 (boot slot 16) and 1 GiB at 0x4000_0000
/// (slot 17, for the 1 GiB frame).
const MACHINE: &[(u64, u8, bool)] = &[(0x100_0000, 24, false), (0x4000_0000, 30, false)];
const UT: CPtr = CPtr(16);
const BIG_UT: CPtr = CPtr(17);

/// Slots of the fixture's VSpace.
const PML4: u64 = 100;
const PDPT: u64 = 101;
const PD: u64 = 102;
const PT: u64 = 103;
/// Frames from here; spare slots from 1000.
const FR: u64 = 200;
const SPARE: u64 = 1000;

/// Where the fixture's PT maps: PML4 entry 0, PDPT entry 4, PD entry 0.
const VA: u64 = 0x1_0000_0000;
const RW: Rights = Rights::READ.union(Rights::WRITE);

fn c(slot: u64) -> CPtr {
    CPtr(slot)
}

/// The path of boot-CNode slot `slot` (the boot CNode's own cap resolves 64
/// bits: guard 52, radix 12).
fn p(slot: u64) -> CapPath {
    CapPath {
        root: CPtr(2),
        index: slot,
        depth: 64,
    }
}

fn page(i: u64) -> u64 {
    VA + (i << 12)
}

fn boot() -> MockKernel {
    MockKernel::boot(12, MACHINE).0
}

/// Retypes `count` objects of `ty` into boot-CNode slots from `slot`.
fn make(k: &mut MockKernel, ty: T, slot: u64, count: u64) {
    let ut = if ty == T::Frame1G { BIG_UT } else { UT };
    let dest = RetypeDest {
        root: CPtr(2),
        node_index: 0,
        node_depth: 0,
        offset: slot,
        count,
    };
    k.untyped_retype(ut, ty, 0, dest).unwrap();
}

/// A model with a VSpace: a PML4 with ASID 2 in slot [`PML4`], and a PDPT,
/// PD and PT mapped over [`VA`] in [`PDPT`], [`PD`], [`PT`].
fn with_vspace() -> MockKernel {
    let mut k = boot();
    make(&mut k, T::Pml4, PML4, 1);
    make(&mut k, T::Pdpt, PDPT, 1);
    make(&mut k, T::PageDirectory, PD, 1);
    make(&mut k, T::PageTable, PT, 1);
    k.asid_pool_assign(c(PML4)).unwrap();
    k.table_map(L::Pdpt, c(PDPT), c(PML4), VA).unwrap();
    k.table_map(L::Pd, c(PD), c(PML4), VA).unwrap();
    k.table_map(L::Pt, c(PT), c(PML4), VA).unwrap();
    k
}

/// [`with_vspace`] and `n` 4 KiB frames in slots from [`FR`], frame `i`
/// mapped at `page(i)`.
fn with_pages(n: u64) -> MockKernel {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, n);
    for i in 0..n {
        k.page_map(c(FR + i), c(PML4), page(i), RW).unwrap();
    }
    k
}

fn obj(k: &MockKernel, slot: u64) -> ObjId {
    k.cap_object(c(slot)).unwrap()
}

fn paddr(k: &MockKernel, slot: u64) -> u64 {
    k.object(obj(k, slot)).unwrap().paddr
}

fn table_entry(k: &MockKernel, table_slot: u64) -> PagingEntry {
    PagingEntry::Table {
        obj: obj(k, table_slot),
        paddr: paddr(k, table_slot),
    }
}

fn pt_entries(k: &MockKernel) -> Vec<(u64, PagingEntry)> {
    k.table_entries(obj(k, PT))
}

/// Everything the paging invocations may change: slots with their caps,
/// parents and mappings, live objects and their tables, the ASID pool.
type Snapshot = (
    Vec<(CteRef, Cap, Option<CteRef>, Option<CapMapping>)>,
    Vec<(ObjId, Vec<(u64, PagingEntry)>)>,
    Vec<Option<ObjId>>,
);

fn snapshot(k: &MockKernel) -> Snapshot {
    let slots = k
        .slots()
        .into_iter()
        .map(|(at, cap, parent)| (at, cap, parent, k.mapping_at(at)))
        .collect();
    let mut objs: Vec<_> = k.objects().map(|(id, _)| (id, k.table_entries(id))).collect();
    objs.sort_by_key(|o| o.0);
    let asids = (0..512).map(|a| k.asid_vspace(a)).collect();
    (slots, objs, asids)
}

// ---------------------------------------------------------------- boot

#[test]
fn boot_models_the_initial_vspace_with_its_asid() {
    let k = boot();
    let it = k.cap_object(CPtr(3)).unwrap();
    assert_eq!(k.object(it).unwrap().ty, T::Pml4);
    assert_eq!(k.asid_vspace(IT_ASID), Some(it));
    assert_eq!(k.cap_mapping(CPtr(3)).unwrap().asid, IT_ASID);
    assert!(k.leaf_entries(CPtr(3)).is_empty());
    assert_eq!(k.user_top(), PPTR_USER_TOP_UP);
}

#[test]
fn frames_are_retyped_read_write_and_tables_empty() {
    let mut k = boot();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::PageTable, PT, 1);
    assert!(matches!(k.lookup(c(FR)).unwrap(), Some(Cap::Object { rights, .. }) if rights == RW));
    assert_eq!(k.frame_cap_mapping(c(FR)), None);
    assert_eq!(k.cap_mapping(c(PT)), None);
    assert!(pt_entries(&k).is_empty());
}

// ---------------------------------------------------------------- ASIDs

#[test]
fn asid_assign_hands_out_the_first_free_asid() {
    let mut k = boot();
    make(&mut k, T::Pml4, PML4, 2);
    k.asid_pool_assign(c(PML4)).unwrap();
    k.asid_pool_assign(c(PML4 + 1)).unwrap();
    assert_eq!(k.cap_mapping(c(PML4)).unwrap().asid, 2);
    assert_eq!(k.cap_mapping(c(PML4 + 1)).unwrap().asid, 3);
    assert_eq!(k.asid_vspace(2), Some(obj(&k, PML4)));
    assert_eq!(k.counts[CALL_ASID_POOL_ASSIGN], 2);
}

#[test]
fn asid_assign_refuses_a_root_that_has_an_asid() {
    let mut k = with_vspace();
    assert_eq!(k.asid_pool_assign(c(PML4)), Err(E::InvalidCapability));
    assert_eq!(k.asid_pool_assign(CPtr(3)), Err(E::InvalidCapability));
}

#[test]
fn asid_assign_refuses_a_cap_that_is_not_a_pml4() {
    let mut k = with_vspace();
    assert_eq!(k.asid_pool_assign(c(PDPT)), Err(E::InvalidCapability));
    assert_eq!(k.asid_pool_assign(c(SPARE)), Err(E::InvalidCapability));
}

#[test]
fn asid_assign_refuses_when_the_pool_is_full() {
    let mut k = boot();
    make(&mut k, T::Pml4, SPARE, 256);
    make(&mut k, T::Pml4, SPARE + 256, 255);
    // 512 ASIDs less ASID 0 and the initial thread's.
    for i in 0..510 {
        k.asid_pool_assign(c(SPARE + i)).unwrap();
    }
    let before = snapshot(&k);
    assert_eq!(k.asid_pool_assign(c(SPARE + 510)), Err(E::DeleteFirst));
    assert_eq!(snapshot(&k), before);
}

// ---------------------------------------------------------------- table map

#[test]
fn table_map_links_each_level_and_records_it_in_the_cap() {
    let k = with_vspace();
    let root = obj(&k, PML4);
    assert_eq!(k.table_entries(root), vec![(0, table_entry(&k, PDPT))]);
    assert_eq!(k.table_entries(obj(&k, PDPT)), vec![(4, table_entry(&k, PD))]);
    assert_eq!(k.table_entries(obj(&k, PD)), vec![(0, table_entry(&k, PT))]);
    for (slot, vaddr) in [(PDPT, 0), (PD, VA), (PT, VA)] {
        assert_eq!(k.cap_mapping(c(slot)), Some(CapMapping { asid: 2, vaddr, root }));
    }
    assert_eq!(k.counts[CALL_TABLE_MAP], 3);
}

#[test]
fn table_map_clears_the_bits_the_table_spans() {
    let mut k = boot();
    make(&mut k, T::Pml4, PML4, 1);
    make(&mut k, T::Pdpt, PDPT, 1);
    make(&mut k, T::PageDirectory, PD, 1);
    make(&mut k, T::PageTable, PT, 1);
    k.asid_pool_assign(c(PML4)).unwrap();
    k.table_map(L::Pdpt, c(PDPT), c(PML4), VA + 0x1234_5678).unwrap();
    k.table_map(L::Pd, c(PD), c(PML4), VA + 0x1234_5678).unwrap();
    k.table_map(L::Pt, c(PT), c(PML4), VA + 0x1f_ffff).unwrap();
    assert_eq!(k.cap_mapping(c(PDPT)).unwrap().vaddr, 0);
    assert_eq!(k.cap_mapping(c(PD)).unwrap().vaddr, VA);
    assert_eq!(k.cap_mapping(c(PT)).unwrap().vaddr, VA);
}

#[test]
fn table_map_refuses_a_cap_of_another_type_or_an_empty_slot() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    assert_eq!(k.table_map(L::Pt, c(PD), c(PML4), VA), Err(E::IllegalOperation));
    assert_eq!(k.table_map(L::Pd, c(FR), c(PML4), VA), Err(E::IllegalOperation));
    assert_eq!(k.table_map(L::Pdpt, c(PML4), c(PML4), VA), Err(E::IllegalOperation));
    assert_eq!(k.table_map(L::Pt, c(SPARE), c(PML4), VA), Err(E::InvalidCapability));
}

#[test]
fn table_map_refuses_a_table_that_is_mapped() {
    let mut k = with_vspace();
    assert_eq!(
        k.table_map(L::Pt, c(PT), c(PML4), VA + (1 << 21)),
        Err(E::InvalidCapability)
    );
}

#[test]
fn table_map_refuses_a_root_without_an_asid_or_not_a_pml4() {
    let mut k = with_vspace();
    make(&mut k, T::Pml4, SPARE, 1);
    make(&mut k, T::PageTable, SPARE + 1, 1);
    assert_eq!(
        k.table_map(L::Pt, c(SPARE + 1), c(SPARE), VA + (1 << 21)),
        Err(E::InvalidCapability)
    );
    assert_eq!(
        k.table_map(L::Pt, c(SPARE + 1), c(PD), VA + (1 << 21)),
        Err(E::InvalidCapability)
    );
    assert_eq!(
        k.table_map(L::Pt, c(SPARE + 1), c(SPARE + 2), VA + (1 << 21)),
        Err(E::InvalidCapability)
    );
}

#[test]
fn table_map_refuses_an_address_at_the_user_top() {
    let mut k = with_vspace();
    make(&mut k, T::Pdpt, SPARE, 1);
    assert_eq!(
        k.table_map(L::Pdpt, c(SPARE), c(PML4), PPTR_USER_TOP_UP),
        Err(E::InvalidArgument)
    );
    k.set_user_top(PPTR_USER_TOP_SMP);
    assert_eq!(
        k.table_map(L::Pdpt, c(SPARE), c(PML4), PPTR_USER_TOP_SMP),
        Err(E::InvalidArgument)
    );
    // The last PML4 entry below the top is the user's.
    k.table_map(L::Pdpt, c(SPARE), c(PML4), PPTR_USER_TOP_SMP - 1).unwrap();
    assert_eq!(k.cap_mapping(c(SPARE)).unwrap().vaddr, PPTR_USER_TOP_SMP - (1 << 39));
}

#[test]
fn table_map_refuses_an_address_with_no_table_above() {
    let mut k = with_vspace();
    make(&mut k, T::PageDirectory, SPARE, 1);
    make(&mut k, T::PageTable, SPARE + 1, 1);
    make(&mut k, T::Frame1G, SPARE + 2, 1);
    // No PDPT under PML4 entry 1; no PD under PDPT entry 5.
    assert_eq!(k.table_map(L::Pd, c(SPARE), c(PML4), 1 << 39), Err(E::FailedLookup));
    assert_eq!(
        k.table_map(L::Pt, c(SPARE + 1), c(PML4), VA + (1 << 30)),
        Err(E::FailedLookup)
    );
    // A 1 GiB page where the PD would be.
    k.page_map(c(SPARE + 2), c(PML4), VA + (1 << 30), RW).unwrap();
    assert_eq!(
        k.table_map(L::Pt, c(SPARE + 1), c(PML4), VA + (1 << 30)),
        Err(E::FailedLookup)
    );
}

#[test]
fn table_map_refuses_an_occupied_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Pdpt, SPARE, 1);
    make(&mut k, T::PageTable, SPARE + 1, 1);
    make(&mut k, T::Frame2M, SPARE + 2, 1);
    assert_eq!(k.table_map(L::Pdpt, c(SPARE), c(PML4), VA), Err(E::DeleteFirst));
    assert_eq!(k.table_map(L::Pt, c(SPARE + 1), c(PML4), VA), Err(E::DeleteFirst));
    // A 2 MiB page where the PT would go.
    k.page_map(c(SPARE + 2), c(PML4), VA + (1 << 21), RW).unwrap();
    assert_eq!(
        k.table_map(L::Pt, c(SPARE + 1), c(PML4), VA + (1 << 21)),
        Err(E::DeleteFirst)
    );
}

// ---------------------------------------------------------------- table unmap

#[test]
fn table_unmap_unlinks_and_clears_the_table() {
    let mut k = with_pages(3);
    k.table_unmap(L::Pt, c(PT)).unwrap();
    assert!(k.table_entries(obj(&k, PD)).is_empty());
    assert!(pt_entries(&k).is_empty());
    assert_eq!(k.cap_mapping(c(PT)), None);
    assert!(k.leaf_entries(c(PML4)).is_empty());
    // The frame caps keep their (now stale) records.
    assert_eq!(k.frame_cap_mapping(c(FR)), Some((obj(&k, PML4), page(0))));
    // Mapped again, the table is empty.
    k.table_map(L::Pt, c(PT), c(PML4), VA).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)), None);
    assert_eq!(k.counts[CALL_TABLE_UNMAP], 1);
}

#[test]
fn table_unmap_refuses_a_table_cap_that_is_not_final() {
    let mut k = with_vspace();
    k.cnode_copy(p(SPARE), p(PT), RW).unwrap();
    assert_eq!(k.table_unmap(L::Pt, c(PT)), Err(E::RevokeFirst));
    k.cnode_delete(p(SPARE)).unwrap();
    k.table_unmap(L::Pt, c(PT)).unwrap();
}

#[test]
fn table_unmap_of_an_unmapped_table_succeeds() {
    let mut k = boot();
    make(&mut k, T::PageDirectory, PD, 1);
    k.table_unmap(L::Pd, c(PD)).unwrap();
}

#[test]
fn table_unmap_refuses_a_cap_of_another_type() {
    let mut k = with_vspace();
    assert_eq!(k.table_unmap(L::Pd, c(PT)), Err(E::IllegalOperation));
    assert_eq!(k.table_unmap(L::Pt, c(SPARE)), Err(E::InvalidCapability));
}

#[test]
fn pdpt_and_pd_unmap_clear_their_subtrees() {
    let mut k = with_pages(1);
    k.table_unmap(L::Pd, c(PD)).unwrap();
    assert!(k.table_entries(obj(&k, PD)).is_empty());
    assert!(k.table_entries(obj(&k, PDPT)).is_empty());
    // The PT's record is stale; the PT itself was not touched.
    assert!(k.cap_mapping(c(PT)).is_some());
    assert_eq!(pt_entries(&k).len(), 1);
    k.table_unmap(L::Pdpt, c(PDPT)).unwrap();
    assert!(k.table_entries(obj(&k, PML4)).is_empty());
}

// ---------------------------------------------------------------- derivation

#[test]
fn copying_an_unmapped_table_or_root_cap_is_refused() {
    let mut k = boot();
    make(&mut k, T::PageTable, PT, 1);
    make(&mut k, T::PageDirectory, PD, 1);
    make(&mut k, T::Pml4, PML4, 1);
    for s in [PT, PD, PML4] {
        assert_eq!(k.cnode_copy(p(SPARE), p(s), RW), Err(E::IllegalOperation));
        assert_eq!(
            k.cnode_mint(p(SPARE), p(s), RW, crate::types::CapData::Badge(0)),
            Err(E::IllegalOperation)
        );
    }
    assert_eq!(k.lookup(c(SPARE)).unwrap(), None);
}

#[test]
fn copying_a_mapped_table_or_root_cap_keeps_its_mapping() {
    let mut k = with_vspace();
    for (i, s) in [PT, PD, PML4].into_iter().enumerate() {
        let d = SPARE + i as u64;
        k.cnode_copy(p(d), p(s), RW).unwrap();
        assert_eq!(k.cap_mapping(c(d)), k.cap_mapping(c(s)));
    }
    // A copy of a root works as a root.
    make(&mut k, T::Frame4K, FR, 1);
    k.page_map(c(FR), c(SPARE + 2), page(0), RW).unwrap();
    assert!(k.translate(c(PML4), page(0)).is_some());
}

#[test]
#[should_panic(expected = "seL4 5.0 halts")]
fn copying_a_pdpt_cap_halts_the_kernel() {
    let mut k = with_vspace();
    let _ = k.cnode_copy(p(SPARE), p(PDPT), RW);
}

#[test]
fn a_copy_of_a_mapped_frame_cap_is_unmapped() {
    let mut k = with_pages(1);
    k.cnode_copy(p(SPARE), p(FR), RW).unwrap();
    k.cnode_mint(p(SPARE + 1), p(FR), RW, crate::types::CapData::Badge(5))
        .unwrap();
    assert!(k.frame_cap_mapping(c(FR)).is_some());
    assert_eq!(k.frame_cap_mapping(c(SPARE)), None);
    assert_eq!(k.frame_cap_mapping(c(SPARE + 1)), None);
    // The copy maps on its own (elsewhere).
    k.page_map(c(SPARE), c(PML4), page(1), RW).unwrap();
    assert_eq!(k.translate(c(PML4), page(1)).unwrap().0, obj(&k, FR));
}

#[test]
fn a_copy_masks_frame_rights_as_mask_vm_rights() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    let rights = |k: &MockKernel, s: u64| match k.lookup(c(s)).unwrap() {
        Some(Cap::Object { rights, .. }) => rights,
        c => panic!("{c:?}"),
    };
    k.cnode_copy(p(SPARE), p(FR), Rights::READ).unwrap();
    k.cnode_copy(p(SPARE + 1), p(FR), Rights::WRITE).unwrap();
    k.cnode_copy(p(SPARE + 2), p(FR), Rights::ALL_CAP).unwrap();
    k.cnode_copy(p(SPARE + 3), p(SPARE), RW).unwrap();
    assert_eq!(rights(&k, SPARE), Rights::READ);
    assert_eq!(rights(&k, SPARE + 1), Rights::empty(), "write-only: VMKernelOnly");
    assert_eq!(rights(&k, SPARE + 2), RW);
    assert_eq!(rights(&k, SPARE + 3), Rights::READ, "rights never grow");
}

#[test]
fn moving_a_cap_carries_its_mapping() {
    let mut k = with_pages(1);
    let m = k.frame_cap_mapping(c(FR));
    k.cnode_move(p(SPARE), p(FR)).unwrap();
    assert_eq!(k.frame_cap_mapping(c(SPARE)), m);
    assert_eq!(k.lookup(c(FR)).unwrap(), None);
    // Mapped: refused; unmapping through the new slot clears the entry.
    assert_eq!(k.page_map(c(SPARE), c(PML4), page(1), RW), Err(E::InvalidCapability));
    k.page_unmap(c(SPARE)).unwrap();
    assert!(pt_entries(&k).is_empty());
    // A table cap too.
    let m = k.cap_mapping(c(PT));
    k.cnode_move(p(SPARE + 1), p(PT)).unwrap();
    assert_eq!(k.cap_mapping(c(SPARE + 1)), m);
    k.table_unmap(L::Pt, c(SPARE + 1)).unwrap();
    assert!(k.table_entries(obj(&k, PD)).is_empty());
}

// ---------------------------------------------------------------- page map

#[test]
fn page_map_maps_each_page_size_and_records_it() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::Frame2M, FR + 1, 1);
    make(&mut k, T::Frame1G, FR + 2, 1);
    let root = obj(&k, PML4);
    k.page_map(c(FR), c(PML4), page(7), RW).unwrap();
    k.page_map(c(FR + 1), c(PML4), VA + (1 << 21), RW).unwrap();
    k.page_map(c(FR + 2), c(PML4), VA + (1 << 30), RW).unwrap();
    assert_eq!(
        k.translate(c(PML4), page(7) + 0x123),
        Some((obj(&k, FR), paddr(&k, FR), RW, 12))
    );
    assert_eq!(
        k.translate(c(PML4), VA + (1 << 21) + 0x1_2345),
        Some((obj(&k, FR + 1), paddr(&k, FR + 1), RW, 21))
    );
    assert_eq!(
        k.translate(c(PML4), VA + (1 << 30) + 0x123_4567),
        Some((obj(&k, FR + 2), paddr(&k, FR + 2), RW, 30))
    );
    assert_eq!(k.frame_cap_mapping(c(FR)), Some((root, page(7))));
    assert_eq!(
        k.leaf_entries(c(PML4)),
        vec![
            (page(7), obj(&k, FR), RW),
            (VA + (1 << 21), obj(&k, FR + 1), RW),
            (VA + (1 << 30), obj(&k, FR + 2), RW)
        ]
    );
    assert_eq!(k.counts[CALL_PAGE_MAP], 3);
}

#[test]
fn page_map_refuses_a_frame_cap_that_is_mapped() {
    let mut k = with_pages(1);
    let before = snapshot(&k);
    assert_eq!(k.page_map(c(FR), c(PML4), page(1), RW), Err(E::InvalidCapability));
    assert_eq!(snapshot(&k), before);
}

#[test]
fn page_map_refuses_a_cap_that_is_not_a_frame_or_an_empty_slot() {
    let mut k = with_vspace();
    assert_eq!(k.page_map(c(PT), c(PML4), page(0), RW), Err(E::IllegalOperation));
    assert_eq!(k.page_map(CPtr(16), c(PML4), page(0), RW), Err(E::IllegalOperation));
    assert_eq!(k.page_map(c(SPARE), c(PML4), page(0), RW), Err(E::InvalidCapability));
}

#[test]
fn page_map_refuses_a_root_without_an_asid_or_not_a_pml4() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::Pml4, SPARE, 1);
    assert_eq!(k.page_map(c(FR), c(SPARE), page(0), RW), Err(E::InvalidCapability));
    assert_eq!(k.page_map(c(FR), c(PT), page(0), RW), Err(E::InvalidCapability));
    assert_eq!(k.page_map(c(FR), c(SPARE + 1), page(0), RW), Err(E::InvalidCapability));
}

#[test]
fn page_map_refuses_a_page_ending_past_the_user_top() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    assert_eq!(
        k.page_map(c(FR), c(PML4), PPTR_USER_TOP_UP, RW),
        Err(E::InvalidArgument)
    );
    // The last page below the top passes the check (and finds no table).
    assert_eq!(
        k.page_map(c(FR), c(PML4), PPTR_USER_TOP_UP - 0x1000, RW),
        Err(E::FailedLookup)
    );
}

#[test]
fn page_map_refuses_a_misaligned_address() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::Frame2M, FR + 1, 1);
    assert_eq!(k.page_map(c(FR), c(PML4), page(0) + 8, RW), Err(E::AlignmentError));
    assert_eq!(k.page_map(c(FR + 1), c(PML4), VA + 0x1000, RW), Err(E::AlignmentError));
}

#[test]
fn page_map_refuses_an_address_with_no_table_above() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 2);
    make(&mut k, T::Frame2M, FR + 2, 1);
    make(&mut k, T::Frame1G, FR + 3, 1);
    assert_eq!(k.page_map(c(FR), c(PML4), VA + (1 << 21), RW), Err(E::FailedLookup));
    assert_eq!(k.page_map(c(FR + 2), c(PML4), VA + (1 << 30), RW), Err(E::FailedLookup));
    assert_eq!(k.page_map(c(FR + 3), c(PML4), 1 << 39, RW), Err(E::FailedLookup));
    // A 2 MiB page is not a table for a 4 KiB one.
    k.page_map(c(FR + 2), c(PML4), VA + (1 << 21), RW).unwrap();
    assert_eq!(k.page_map(c(FR + 1), c(PML4), VA + (1 << 21), RW), Err(E::FailedLookup));
}

#[test]
fn page_map_refuses_a_present_entry() {
    let mut k = with_pages(1);
    make(&mut k, T::Frame4K, SPARE, 1);
    make(&mut k, T::Frame2M, SPARE + 1, 1);
    make(&mut k, T::Frame1G, SPARE + 2, 1);
    assert_eq!(k.page_map(c(SPARE), c(PML4), page(0), RW), Err(E::DeleteFirst));
    // The PT's and the PD's entries hold tables.
    assert_eq!(k.page_map(c(SPARE + 1), c(PML4), VA, RW), Err(E::DeleteFirst));
    assert_eq!(k.page_map(c(SPARE + 2), c(PML4), VA, RW), Err(E::DeleteFirst));
}

#[test]
fn page_map_masks_the_caps_rights() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 4);
    k.page_map(c(FR), c(PML4), page(0), Rights::READ).unwrap();
    k.page_map(c(FR + 1), c(PML4), page(1), Rights::WRITE).unwrap();
    k.page_map(c(FR + 2), c(PML4), page(2), Rights::ALL_CAP).unwrap();
    k.cnode_copy(p(SPARE), p(FR + 3), Rights::READ).unwrap();
    k.page_map(c(SPARE), c(PML4), page(3), RW).unwrap();
    let rights: Vec<Rights> = k.leaf_entries(c(PML4)).into_iter().map(|e| e.2).collect();
    assert_eq!(rights, vec![Rights::READ, Rights::empty(), RW, Rights::READ]);
    assert_eq!(mask_vm_rights(RW, Rights::WRITE | Rights::GRANT), Rights::empty());
}

#[test]
fn page_map_at_the_top_of_memory_wraps_the_top_check() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::Frame1G, FR + 1, 1);
    assert_eq!(
        k.page_map(c(FR), c(PML4), 0u64.wrapping_sub(1 << 12), RW),
        Err(E::FailedLookup)
    );
    assert_eq!(
        k.page_map(c(FR + 1), c(PML4), 0u64.wrapping_sub(1 << 30), RW),
        Err(E::DeleteFirst)
    );
}

#[test]
#[should_panic(expected = "global page directory")]
fn page_map_of_a_2m_page_at_the_top_of_memory_panics() {
    let mut k = with_vspace();
    make(&mut k, T::Frame2M, FR, 1);
    let _ = k.page_map(c(FR), c(PML4), 0u64.wrapping_sub(1 << 21), RW);
}

// ---------------------------------------------------------------- remap

#[test]
fn page_remap_changes_the_entrys_rights() {
    let mut k = with_pages(1);
    k.page_remap(c(FR), c(PML4), Rights::READ).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)).unwrap().2, Rights::READ);
    k.page_remap(c(FR), c(PML4), RW).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)).unwrap().2, RW);
    assert_eq!(k.counts[CALL_PAGE_REMAP], 2);
}

#[test]
fn page_remap_refuses_an_unmapped_cap() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    assert_eq!(k.page_remap(c(FR), c(PML4), RW), Err(E::IllegalOperation));
}

#[test]
fn page_remap_refuses_another_vspace() {
    let mut k = with_pages(1);
    assert_eq!(k.page_remap(c(FR), CPtr(3), RW), Err(E::InvalidCapability));
    assert_eq!(k.page_remap(c(FR), c(PT), RW), Err(E::InvalidCapability));
}

#[test]
fn page_remap_refuses_an_address_with_no_table_above() {
    let mut k = with_pages(1);
    k.table_unmap(L::Pt, c(PT)).unwrap();
    k.table_unmap(L::Pd, c(PD)).unwrap();
    assert_eq!(k.page_remap(c(FR), c(PML4), RW), Err(E::FailedLookup));
}

#[test]
fn page_remap_of_a_large_page_refuses_a_table_in_its_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Frame2M, FR, 1);
    make(&mut k, T::PageTable, SPARE, 1);
    k.page_map(c(FR), c(PML4), VA + (1 << 21), RW).unwrap();
    // The PD is unmapped (cleared) and mapped again; a PT takes the entry.
    k.table_unmap(L::Pd, c(PD)).unwrap();
    k.table_map(L::Pd, c(PD), c(PML4), VA).unwrap();
    k.table_map(L::Pt, c(SPARE), c(PML4), VA + (1 << 21)).unwrap();
    assert_eq!(k.page_remap(c(FR), c(PML4), RW), Err(E::DeleteFirst));
}

#[test]
fn page_remap_writes_the_entry_even_for_a_stale_cap() {
    // 5.0 does not check that the entry still maps the frame.
    let mut k = with_pages(1);
    make(&mut k, T::Frame4K, SPARE, 1);
    k.table_unmap(L::Pt, c(PT)).unwrap();
    k.table_map(L::Pt, c(PT), c(PML4), VA).unwrap();
    k.page_map(c(SPARE), c(PML4), page(0), RW).unwrap();
    k.page_remap(c(FR), c(PML4), Rights::READ).unwrap();
    assert_eq!(
        k.translate(c(PML4), page(0)),
        Some((obj(&k, FR), paddr(&k, FR), Rights::READ, 12))
    );
}

// ---------------------------------------------------------------- unmap

#[test]
fn page_unmap_clears_the_entry_and_the_record() {
    let mut k = with_pages(2);
    k.page_unmap(c(FR)).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)), None);
    assert_eq!(k.frame_cap_mapping(c(FR)), None);
    assert!(k.translate(c(PML4), page(1)).is_some());
    // Unmapped, it maps again.
    k.page_map(c(FR), c(PML4), page(5), RW).unwrap();
    assert_eq!(k.counts[CALL_PAGE_UNMAP], 1);
}

#[test]
fn page_unmap_of_an_unmapped_cap_succeeds() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    let before = snapshot(&k);
    k.page_unmap(c(FR)).unwrap();
    assert_eq!(snapshot(&k), before);
}

#[test]
fn page_unmap_leaves_an_entry_that_maps_another_frame() {
    let mut k = with_pages(1);
    make(&mut k, T::Frame4K, SPARE, 1);
    k.table_unmap(L::Pt, c(PT)).unwrap();
    k.table_map(L::Pt, c(PT), c(PML4), VA).unwrap();
    k.page_map(c(SPARE), c(PML4), page(0), RW).unwrap();
    k.page_unmap(c(FR)).unwrap();
    assert_eq!(k.frame_cap_mapping(c(FR)), None);
    assert_eq!(k.translate(c(PML4), page(0)).unwrap().0, obj(&k, SPARE));
}

#[test]
fn page_unmap_refuses_a_cap_that_is_not_a_frame() {
    let mut k = with_vspace();
    assert_eq!(k.page_unmap(c(PT)), Err(E::IllegalOperation));
    assert_eq!(k.page_unmap(c(SPARE)), Err(E::InvalidCapability));
}

// ---------------------------------------------------------------- deletion

#[test]
fn deleting_a_mapped_frame_cap_that_is_not_final_leaves_its_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    let f = obj(&k, FR);
    k.cnode_copy(p(SPARE), p(FR), RW).unwrap();
    k.page_map(c(SPARE), c(PML4), page(0), RW).unwrap();
    // The copy is not the last cap: its entry stays, with no cap recording it.
    k.cnode_delete(p(SPARE)).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)).unwrap().0, f);
    assert_eq!(k.frame_cap_mapping(c(FR)), None);
    // Another copy cannot be mapped there.
    k.cnode_copy(p(SPARE), p(FR), RW).unwrap();
    assert_eq!(k.page_map(c(SPARE), c(PML4), page(0), RW), Err(E::DeleteFirst));
    // Deleting every cap (none mapped) leaves it too: the entry outlives the frame.
    k.cnode_delete(p(SPARE)).unwrap();
    k.cnode_delete(p(FR)).unwrap();
    assert_eq!(k.object(f), None);
    assert_eq!(k.leaf_entries(c(PML4)), vec![(page(0), f, RW)]);
}

#[test]
fn deleting_the_final_mapped_frame_cap_removes_its_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    k.cnode_copy(p(SPARE), p(FR), RW).unwrap();
    k.page_map(c(SPARE), c(PML4), page(0), RW).unwrap();
    // Deleting the unmapped original first: the mapped copy becomes final.
    k.cnode_delete(p(FR)).unwrap();
    assert!(k.translate(c(PML4), page(0)).is_some());
    k.cnode_delete(p(SPARE)).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)), None);
    assert!(pt_entries(&k).is_empty());
}

#[test]
fn revoking_copies_deletes_them_as_non_final_caps() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    for i in 0..2 {
        k.cnode_copy(p(SPARE + i), p(FR), RW).unwrap();
        k.page_map(c(SPARE + i), c(PML4), page(i), RW).unwrap();
    }
    k.cnode_revoke(p(FR)).unwrap();
    assert_eq!(k.lookup(c(SPARE)).unwrap(), None);
    // The original remains, so neither copy was final: both entries stay.
    assert_eq!(k.leaf_entries(c(PML4)).len(), 2);
    // Revoking the untyped deletes the original last: final, but unmapped.
    k.cnode_revoke(p(16)).unwrap();
    assert_eq!(k.leaf_entries(c(PML4)).len(), 0, "the tables died too");
}

#[test]
fn deleting_the_final_mapped_table_cap_unlinks_it() {
    let mut k = with_pages(1);
    k.cnode_delete(p(PT)).unwrap();
    assert!(k.table_entries(obj(&k, PD)).is_empty());
    assert_eq!(k.translate(c(PML4), page(0)), None);
    // The frame cap's record is stale; unmapping it is harmless.
    assert!(k.frame_cap_mapping(c(FR)).is_some());
    k.page_unmap(c(FR)).unwrap();
    // A non-final table cap leaves the link.
    k.cnode_copy(p(SPARE), p(PD), RW).unwrap();
    k.cnode_delete(p(PD)).unwrap();
    assert_eq!(k.table_entries(obj(&k, PDPT)).len(), 1);
}

#[test]
fn deleting_the_final_pml4_cap_deletes_its_asid() {
    let mut k = with_pages(1);
    // A copy keeps the ASID alive.
    k.cnode_copy(p(SPARE), p(PML4), RW).unwrap();
    k.cnode_delete(p(PML4)).unwrap();
    assert!(k.asid_vspace(2).is_some());
    k.cnode_delete(p(SPARE)).unwrap();
    assert_eq!(k.asid_vspace(2), None);
    // Records naming the ASID are stale; unmapping through them is harmless.
    assert!(k.frame_cap_mapping(c(FR)).is_some());
    k.page_unmap(c(FR)).unwrap();
    assert_eq!(pt_entries(&k).len(), 1, "the unreachable PT keeps its entry");
    // The ASID is handed out again.
    make(&mut k, T::Pml4, PML4, 1);
    k.asid_pool_assign(c(PML4)).unwrap();
    assert_eq!(k.cap_mapping(c(PML4)).unwrap().asid, 2);
    assert!(k.leaf_entries(c(PML4)).is_empty());
}

#[test]
fn deleting_a_cnode_finalises_the_caps_in_it() {
    let mut k = with_pages(1);
    // A CNode of radix 2 in slot SPARE; the mapped frame cap moves into it.
    let dest = RetypeDest {
        root: CPtr(2),
        node_index: 0,
        node_depth: 0,
        offset: SPARE,
        count: 1,
    };
    k.untyped_retype(UT, T::CNode, 2, dest).unwrap();
    let inside = CapPath {
        root: c(SPARE),
        index: 1,
        depth: 2,
    };
    k.cnode_move(inside, p(FR)).unwrap();
    assert!(k.translate(c(PML4), page(0)).is_some());
    // The CNode goes with its last cap, and the frame cap (final) with it.
    k.cnode_delete(p(SPARE)).unwrap();
    assert_eq!(k.translate(c(PML4), page(0)), None);
}

#[test]
fn tables_retyped_from_the_same_memory_start_empty() {
    let mut k = with_pages(1);
    let (old, at) = (obj(&k, PT), paddr(&k, PT));
    // Everything retyped from the untyped goes; the next retype starts at 0.
    k.cnode_revoke(p(16)).unwrap();
    assert_eq!(k.object(old), None);
    assert_eq!(k.table_entries(old), vec![]);
    make(&mut k, T::Pml4, PML4, 1);
    make(&mut k, T::Pdpt, PDPT, 1);
    make(&mut k, T::PageDirectory, PD, 1);
    make(&mut k, T::PageTable, PT, 1);
    assert_eq!(paddr(&k, PT), at);
    assert_ne!(obj(&k, PT), old);
    for s in [PML4, PDPT, PD, PT] {
        assert!(k.table_entries(obj(&k, s)).is_empty());
    }
}

// ---------------------------------------------------------------- runs

#[test]
fn map_run_maps_every_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 8);
    k.map_run(c(PT), c(PML4), 10, 8, RW, p(FR)).unwrap();
    let root = obj(&k, PML4);
    for i in 0..8 {
        assert_eq!(k.frame_cap_mapping(c(FR + i)), Some((root, page(10 + i))));
        assert_eq!(k.translate(c(PML4), page(10 + i)).unwrap().0, obj(&k, FR + i));
    }
    assert_eq!(k.counts[CALL_MAP_RUN], 1);
}

#[test]
fn map_run_masks_the_caps_rights() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 2);
    k.cnode_copy(p(SPARE), p(FR), Rights::READ).unwrap();
    k.cnode_copy(p(SPARE + 1), p(FR + 1), RW).unwrap();
    k.map_run(c(PT), c(PML4), 0, 2, RW, p(SPARE)).unwrap();
    let rights: Vec<Rights> = k.leaf_entries(c(PML4)).into_iter().map(|e| e.2).collect();
    assert_eq!(rights, vec![Rights::READ, RW]);
}

#[test]
fn runs_refuse_a_range_outside_the_table() {
    let mut k = with_pages(1);
    make(&mut k, T::Frame4K, SPARE, 1);
    for (first, count) in [(512, 1), (0, 0), (0, 513), (500, 13)] {
        assert_eq!(
            k.map_run(c(PT), c(PML4), first, count, RW, p(SPARE)),
            Err((E::RangeError, None))
        );
        assert_eq!(
            k.copy_map_run(c(PT), c(PML4), first, count, RW, p(FR), p(SPARE + 1), RW),
            Err((E::RangeError, None))
        );
        assert_eq!(
            k.unmap_run(c(PT), first, count, p(FR), false),
            Err((E::RangeError, None))
        );
    }
}

#[test]
fn runs_refuse_a_cap_that_is_not_a_page_table() {
    let mut k = with_pages(1);
    assert_eq!(
        k.map_run(c(PD), c(PML4), 0, 1, RW, p(FR)),
        Err((E::IllegalOperation, None))
    );
    assert_eq!(k.unmap_run(c(FR), 0, 1, p(FR), false), Err((E::IllegalOperation, None)));
    assert_eq!(
        k.unmap_run(c(SPARE), 0, 1, p(FR), false),
        Err((E::InvalidCapability, None))
    );
}

#[test]
fn runs_refuse_an_unmapped_page_table() {
    let mut k = with_vspace();
    make(&mut k, T::PageTable, SPARE, 1);
    make(&mut k, T::Frame4K, FR, 1);
    assert_eq!(
        k.map_run(c(SPARE), c(PML4), 0, 1, RW, p(FR)),
        Err((E::InvalidCapability, None))
    );
    assert_eq!(
        k.unmap_run(c(SPARE), 0, 1, p(FR), false),
        Err((E::InvalidCapability, None))
    );
}

#[test]
fn map_runs_refuse_a_root_that_is_not_the_tables() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::Pml4, SPARE, 1);
    // No ASID; another VSpace; not a PML4.
    for root in [c(SPARE), CPtr(3), c(PD)] {
        assert_eq!(
            k.map_run(c(PT), root, 0, 1, RW, p(FR)),
            Err((E::InvalidCapability, None))
        );
        assert_eq!(
            k.copy_map_run(c(PT), root, 0, 1, RW, p(FR), p(SPARE + 1), RW),
            Err((E::InvalidCapability, None))
        );
    }
}

#[test]
fn runs_refuse_a_page_table_the_vspace_no_longer_holds() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 1);
    make(&mut k, T::PageTable, SPARE, 1);
    // The PD is cleared: no table at the PT cap's address.
    k.table_unmap(L::Pd, c(PD)).unwrap();
    k.table_map(L::Pd, c(PD), c(PML4), VA).unwrap();
    assert_eq!(k.map_run(c(PT), c(PML4), 0, 1, RW, p(FR)), Err((E::FailedLookup, None)));
    assert_eq!(k.unmap_run(c(PT), 0, 1, p(FR), false), Err((E::FailedLookup, None)));
    // Another table there.
    k.table_map(L::Pt, c(SPARE), c(PML4), VA).unwrap();
    assert_eq!(
        k.map_run(c(PT), c(PML4), 0, 1, RW, p(FR)),
        Err((E::InvalidCapability, None))
    );
    assert_eq!(
        k.unmap_run(c(PT), 0, 1, p(FR), false),
        Err((E::InvalidCapability, None))
    );
}

#[test]
fn runs_refuse_a_slot_run_leaving_its_cnode() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, 4094, 2);
    assert_eq!(k.map_run(c(PT), c(PML4), 0, 3, RW, p(4094)), Err((E::RangeError, None)));
    assert_eq!(
        k.copy_map_run(c(PT), c(PML4), 0, 3, RW, p(FR), p(4094), RW),
        Err((E::RangeError, None))
    );
    // A bad depth, as CNode operations report it.
    let bad = CapPath { depth: 0, ..p(FR) };
    assert_eq!(k.map_run(c(PT), c(PML4), 0, 1, RW, bad), Err((E::RangeError, None)));
    k.map_run(c(PT), c(PML4), 0, 2, RW, p(4094)).unwrap();
}

#[test]
fn map_run_is_all_or_nothing_and_names_the_bad_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 8);
    make(&mut k, T::Frame4K, SPARE, 1);
    make(&mut k, T::Frame2M, SPARE + 1, 1);
    let check = |k: &mut MockKernel, want: (E, Option<u64>)| {
        let before = snapshot(k);
        assert_eq!(k.map_run(c(PT), c(PML4), 0, 8, RW, p(FR)), Err(want));
        assert_eq!(snapshot(k), before);
    };
    // An empty slot in the middle.
    k.cnode_move(p(SPARE + 2), p(FR + 4)).unwrap();
    check(&mut k, (E::FailedLookup, Some(4)));
    // Not a 4 KiB frame cap.
    k.cnode_move(p(FR + 4), p(SPARE + 1)).unwrap();
    check(&mut k, (E::InvalidCapability, Some(4)));
    k.cnode_move(p(SPARE + 1), p(FR + 4)).unwrap();
    k.cnode_move(p(FR + 4), p(SPARE + 2)).unwrap();
    // A frame cap mapped already.
    k.page_map(c(FR + 3), c(PML4), page(100), RW).unwrap();
    check(&mut k, (E::InvalidCapability, Some(3)));
    k.page_unmap(c(FR + 3)).unwrap();
    // An entry present.
    k.page_map(c(SPARE), c(PML4), page(6), RW).unwrap();
    check(&mut k, (E::DeleteFirst, Some(6)));
    k.page_unmap(c(SPARE)).unwrap();
    k.map_run(c(PT), c(PML4), 0, 8, RW, p(FR)).unwrap();
    assert_eq!(k.leaf_entries(c(PML4)).len(), 8);
}

#[test]
fn copy_map_run_copies_and_maps_the_copies() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 4);
    k.page_map(c(FR), c(PML4), page(100), RW).unwrap();
    k.copy_map_run(c(PT), c(PML4), 0, 4, RW, p(FR), p(SPARE), Rights::READ)
        .unwrap();
    let slots = k.slots();
    let root = obj(&k, PML4);
    for i in 0..4 {
        // The copy is the source's child, mapped; its entry read-only.
        let copy = slots.iter().find(|s| s.0.index == SPARE + i).unwrap();
        let src = slots.iter().find(|s| s.0.index == FR + i).unwrap();
        assert_eq!(copy.2, Some(src.0));
        assert!(matches!(copy.1, Cap::Object { rights, .. } if rights == Rights::READ));
        assert_eq!(k.frame_cap_mapping(c(SPARE + i)), Some((root, page(i))));
        assert_eq!(
            k.translate(c(PML4), page(i)),
            Some((obj(&k, FR + i), paddr(&k, FR + i), Rights::READ, 12))
        );
    }
    // The sources keep their own mappings (or none).
    assert_eq!(k.frame_cap_mapping(c(FR)), Some((root, page(100))));
    assert_eq!(k.frame_cap_mapping(c(FR + 1)), None);
    assert_eq!(k.counts[CALL_COPY_MAP_RUN], 1);
}

#[test]
fn copy_map_run_is_all_or_nothing_and_names_the_bad_entry() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 6);
    make(&mut k, T::Frame4K, SPARE + 100, 1);
    make(&mut k, T::Frame2M, SPARE + 101, 1);
    let check = |k: &mut MockKernel, want: (E, Option<u64>)| {
        let before = snapshot(k);
        assert_eq!(k.copy_map_run(c(PT), c(PML4), 0, 6, RW, p(FR), p(SPARE), RW), Err(want));
        assert_eq!(snapshot(k), before);
    };
    // A destination slot occupied.
    k.cnode_copy(p(SPARE + 2), p(FR), RW).unwrap();
    check(&mut k, (E::DeleteFirst, Some(2)));
    k.cnode_delete(p(SPARE + 2)).unwrap();
    // A source slot empty.
    k.cnode_move(p(SPARE + 102), p(FR + 3)).unwrap();
    check(&mut k, (E::FailedLookup, Some(3)));
    // Not a 4 KiB frame cap.
    k.cnode_move(p(FR + 3), p(SPARE + 101)).unwrap();
    check(&mut k, (E::InvalidCapability, Some(3)));
    k.cnode_move(p(SPARE + 101), p(FR + 3)).unwrap();
    k.cnode_move(p(FR + 3), p(SPARE + 102)).unwrap();
    // An entry present.
    k.page_map(c(SPARE + 100), c(PML4), page(5), RW).unwrap();
    check(&mut k, (E::DeleteFirst, Some(5)));
    // Overlapping runs always fail.
    assert_eq!(
        k.copy_map_run(c(PT), c(PML4), 0, 3, RW, p(FR), p(FR + 1), RW),
        Err((E::DeleteFirst, Some(0)))
    );
}

#[test]
fn unmap_run_unmaps_and_keeps_the_caps() {
    let mut k = with_pages(4);
    k.unmap_run(c(PT), 0, 4, p(FR), false).unwrap();
    assert!(k.leaf_entries(c(PML4)).is_empty());
    for i in 0..4 {
        assert!(k.lookup(c(FR + i)).unwrap().is_some());
        assert_eq!(k.frame_cap_mapping(c(FR + i)), None);
    }
    assert_eq!(k.counts[CALL_UNMAP_RUN], 1);
}

#[test]
fn unmap_run_with_delete_deletes_the_caps() {
    let mut k = with_vspace();
    make(&mut k, T::Frame4K, FR, 4);
    // Frames 0 and 1 have another cap; 2 and 3 do not.
    k.cnode_copy(p(SPARE), p(FR), RW).unwrap();
    k.cnode_copy(p(SPARE + 1), p(FR + 1), RW).unwrap();
    k.map_run(c(PT), c(PML4), 0, 4, RW, p(FR)).unwrap();
    let objs: Vec<ObjId> = (0..4).map(|i| obj(&k, FR + i)).collect();
    k.unmap_run(c(PT), 0, 4, p(FR), true).unwrap();
    assert!(k.leaf_entries(c(PML4)).is_empty());
    for i in 0..4 {
        assert_eq!(k.lookup(c(FR + i)).unwrap(), None);
    }
    // The frames with another cap live on; the others died with their last cap.
    assert!(k.object(objs[0]).is_some() && k.object(objs[1]).is_some());
    assert!(k.object(objs[2]).is_none() && k.object(objs[3]).is_none());
}

#[test]
fn unmap_run_is_all_or_nothing_and_names_the_bad_entry() {
    let mut k = with_pages(6);
    make(&mut k, T::Frame2M, SPARE, 1);
    let check = |k: &mut MockKernel, want: (E, Option<u64>)| {
        let before = snapshot(k);
        assert_eq!(k.unmap_run(c(PT), 0, 6, p(FR), true), Err(want));
        assert_eq!(snapshot(k), before);
    };
    // An empty slot.
    k.cnode_move(p(SPARE + 1), p(FR + 2)).unwrap();
    check(&mut k, (E::FailedLookup, Some(2)));
    // Not a 4 KiB frame cap.
    k.cnode_move(p(FR + 2), p(SPARE)).unwrap();
    check(&mut k, (E::InvalidCapability, Some(2)));
    k.cnode_move(p(SPARE), p(FR + 2)).unwrap();
    k.cnode_move(p(FR + 2), p(SPARE + 1)).unwrap();
    // A cap that maps another entry, or nothing.
    k.page_unmap(c(FR + 4)).unwrap();
    k.page_map(c(FR + 4), c(PML4), page(40), RW).unwrap();
    check(&mut k, (E::InvalidCapability, Some(4)));
    k.page_unmap(c(FR + 4)).unwrap();
    check(&mut k, (E::InvalidCapability, Some(4)));
}

#[test]
fn unmap_run_leaves_an_entry_that_maps_another_frame() {
    let mut k = with_pages(2);
    make(&mut k, T::Frame4K, SPARE, 1);
    k.table_unmap(L::Pt, c(PT)).unwrap();
    k.table_map(L::Pt, c(PT), c(PML4), VA).unwrap();
    k.page_map(c(SPARE), c(PML4), page(1), RW).unwrap();
    // Both caps record the entries; only the entry of frame 1's slot is
    // someone else's now.
    k.unmap_run(c(PT), 0, 2, p(FR), false).unwrap();
    assert_eq!(k.frame_cap_mapping(c(FR + 1)), None);
    assert_eq!(k.translate(c(PML4), page(1)).unwrap().0, obj(&k, SPARE));
}

// ---------------------------------------------------------------- failures

#[test]
fn injected_failures_apply_to_the_paging_calls() {
    let mut k = with_pages(2);
    make(&mut k, T::Pml4, SPARE, 1);
    make(&mut k, T::PageTable, SPARE + 1, 1);
    make(&mut k, T::Frame4K, SPARE + 2, 2);
    let e = E::NotEnoughMemory;
    type Call = fn(&mut MockKernel) -> Result<(), (E, Option<u64>)>;
    fn plain(r: Result<(), E>) -> Result<(), (E, Option<u64>)> {
        r.map_err(|e| (e, None))
    }
    let calls: [(usize, Call); 9] = [
        (CALL_ASID_POOL_ASSIGN, |k| plain(k.asid_pool_assign(c(SPARE)))),
        (CALL_TABLE_MAP, |k| {
            plain(k.table_map(L::Pt, c(SPARE + 1), c(PML4), VA + (1 << 21)))
        }),
        (CALL_TABLE_UNMAP, |k| plain(k.table_unmap(L::Pt, c(PT)))),
        (CALL_PAGE_MAP, |k| plain(k.page_map(c(SPARE + 2), c(PML4), page(9), RW))),
        (CALL_PAGE_REMAP, |k| plain(k.page_remap(c(FR), c(PML4), Rights::READ))),
        (CALL_PAGE_UNMAP, |k| plain(k.page_unmap(c(FR)))),
        (CALL_MAP_RUN, |k| k.map_run(c(PT), c(PML4), 20, 2, RW, p(SPARE + 2))),
        (CALL_COPY_MAP_RUN, |k| {
            k.copy_map_run(c(PT), c(PML4), 20, 2, RW, p(SPARE + 2), p(SPARE + 10), RW)
        }),
        (CALL_UNMAP_RUN, |k| k.unmap_run(c(PT), 0, 2, p(FR), true)),
    ];
    for (kind, call) in calls {
        let before = snapshot(&k);
        let (n, counts) = (k.calls(), k.counts);
        k.fail_in(1, e);
        assert_eq!(call(&mut k), Err((e, None)), "kind {kind}");
        assert_eq!(snapshot(&k), before, "kind {kind}");
        assert_eq!(k.calls(), n + 1);
        let mut want = counts;
        want[kind] += 1;
        assert_eq!(k.counts, want);
        // Without the failure the same call succeeds.
        let mut k2 = k.clone();
        assert_eq!(call(&mut k2), Ok(()), "kind {kind}");
    }
    // Numbered with the trait calls: the next call is number calls() + 1.
    let n = k.calls();
    k.fail_call(n + 2, e);
    k.page_unmap(c(FR)).unwrap();
    assert_eq!(k.cnode_delete(p(FR)), Err(e));
    assert_eq!(k.counts.len(), CALL_KINDS);
}
