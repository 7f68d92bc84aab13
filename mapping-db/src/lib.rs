//! The root task's user-level mapping database.
//!
//! seL4 records in each frame capability the one place it is mapped (cap -> PTE) and nothing in the other
//! direction; to map one frame into several address spaces, user level copies the capability (`CNode_Copy`)
//! and maps the copy ("copy&map"). This crate keeps, for the root task, one record per frame mapping it makes
//! ([`Mapping`]), together with the frames and the derivation tree of their capability copies, and answers in
//! O(1) expected time:
//!
//! - by capability: [`MappingDb::mapping_of_cap`], [`MappingDb::frame_of_cap`], [`MappingDb::remove_by_cap`];
//! - by address: [`MappingDb::lookup`] (any address inside a 4 KiB, 2 MiB or 1 GiB page),
//!   [`MappingDb::remove_by_vaddr`];
//! - by frame: [`MappingDb::mappings_of_frame`] (who can reach this memory), [`MappingDb::copies_of`];
//! - by leaf table: [`MappingDb::leaf_used`], [`MappingDb::leaf_entries`], [`MappingDb::mapping_at`];
//! - by address space: [`MappingDb::mappings_in`], [`MappingDb::remove_space`].
//!
//! Every update is validated first: a refused update returns a typed error (one enum per operation) and
//! changes nothing. A [`Batch`] collects updates to one leaf table and [`MappingDb::commit`] applies them all
//! or none. The runs [`MappingDb::insert_run`], [`MappingDb::remove_run`] and [`MappingDb::add_copies`] do what
//! a loop of the single operation does, all or none, at less cost per element (the bookkeeping shared by
//! consecutive pages of one leaf table is done once); [`MappingDb::clone_run`] does the copy and the insert of
//! each page of a clone in one go, [`MappingDb::destroy_run`] the removal of each page and of its capability
//! copy (the destroy of a region), and [`MappingDb::mappings_run`] reads the records of consecutive 4 KiB pages
//! a chunk of the address index at a time. Removals hand the record back to the caller, who then owns the
//! unmapped capability.
//!
//! For the manager's clone and destroy of a region of 4 KiB pages, [`MappingDb::source_caps`] and
//! [`MappingDb::caps_run`] answer what the kernel needs to know beforehand (the capabilities, and which are
//! copies), and [`MappingDb::clone_region`] and [`MappingDb::destroy_region`] record the outcome, all or
//! none, without building a record per page.
//!
//! # Copy runs
//!
//! A [`MappingDb::clone_region`] of pages whose frames' originals are consecutive slots (frames allocated in
//! a row; or a source that is itself such a clone), with copies derived from the originals, is kept as one
//! *run* per destination page table instead of a capability node and a record per page: `(dst, vaddr, n,
//! leaf, first_copy, first_parent, rights)` says that for `i < n` slot `first_copy + i` is a copy of the
//! frame whose original is slot `first_parent + i`, mapped at `vaddr + i * 4096` in `dst` with `rights`
//! through `leaf`. The frames stay per-page nodes. A run keeps its leaf table's entries in use and counters,
//! its span counters and the number of records up to date; the slot and address indexes, the frames' lists,
//! the space's list and the originals' counts of children do not hold its pages, and every query adds what
//! the runs hold (three ordered indexes: by `(dst, vaddr)`, by first copy slot, by `(first_parent, dst,
//! vaddr)`). So a clone costs O(1) per page table plus reading each source page (nothing for a source page
//! in a run), and [`MappingDb::destroy_region`] of pages in runs costs O(1) per run met (a run cut in the
//! middle leaves two); [`MappingDb::source_caps`], [`MappingDb::caps_run`] and [`MappingDb::mappings_run`]
//! read a run without a per-page lookup.
//!
//! The originals need only be consecutive in *stretches*: frames allocated in a row get consecutive slots
//! except where the allocation crossed a CNode or an untyped split took slots between them. A clone (or an
//! original map, below) is kept as runs when its pages fall into stretches of consecutive originals of at
//! least 8 pages on average: one run per page table and stretch. (A shuffle of slots stays per page,
//! which is cheaper than a run per page.) What a stretch is, the threshold and the smallest run (2 pages)
//! are defined once for every crate, in `mm_types::run`.
//!
//! # Original runs
//!
//! The manager maps fresh frames with one [`MappingDb::insert_run`] of records through each frame's original
//! (`cap == frame.slot`), the originals in consecutive slots (in stretches, as above), at consecutive 4 KiB pages from an aligned
//! address, with one rights and one page table per 2 MiB region. Such a map of 2 pages or more, when the
//! loop of `insert` would accept it, is kept as one *original run* per page table: a run as above with
//! `first_copy == first_parent` (its capabilities are the originals themselves). The frames and their
//! originals' capability nodes stay per page (made by `add_frame`; the nodes say "unmapped"); only the
//! records are compressed: the address index, the frames' lists of mappings and the space's list do not
//! hold the run's pages, and the queries add them (an original run is found by slot in the by-copy index;
//! it is not in the by-parent index, its capabilities being no one's children). So the map costs O(1) per
//! page table plus reading each original's node; [`MappingDb::source_caps`] and [`MappingDb::caps_run`]
//! of its pages cost O(1) per run plus filling the answer; a clone from it is validated in O(1) per run
//! (rights and originals from the run) and kept as copy runs; [`MappingDb::destroy_region`] of its pages
//! cuts the runs (the originals stay known, unmapped). [`MappingDb::remove_by_cap`] and
//! [`MappingDb::remove_by_vaddr`] of one of its pages cut it too (O(1): the original stays known);
//! [`MappingDb::add_copy`], `add_frame` and `remove_copy` naming one of its originals leave it as it is (the
//! node is there); every other update materialises it as below. The runs keep bounds of the pages and slots
//! they hold, so that a page or slot outside them is known to be in no run in O(1).
//!
//! Materialise rule: every other update first *materialises* the runs its arguments could touch (the run
//! holding a slot it names, the runs over the pages it names, the runs with copies of a frame it removes,
//! the runs of a space it removes, the runs of the page table of a batch), turning each into exactly the
//! per-page copies and records the per-page clone would have made; a `clone_region` or `destroy_region` not
//! taken as runs materialises the runs over its source and destination pages and copy slots. A run is
//! materialised at most once, at the per-page price of its pages, so the amortised cost of every update is
//! unchanged; while there are no runs each update pays one emptiness check. [`MappingDb::with_runs`]`(false)`
//! keeps everything per page (the reference the tests compare against).
//!
//! # Layout and cost
//!
//! Each index is a slab of nodes (stable `u32` positions) with a key -> position index; the nodes name each
//! other by position, so only the caller's keys are looked up. Capability slots (dense in a CSpace) and page
//! addresses are looked up through chunked arrays of 64 neighbours (one hash lookup per chunk, none while the
//! chunk is one of the two used last); leaf tables, address spaces and span counters through hashbrown tables
//! (the leaf last inserted into is tried first). A 4 KiB insert, removal or lookup touches a fixed handful of
//! nodes and allocates nothing (short per-frame lists are kept inline), apart from the amortised growth of the
//! tables and per-space lists. `examples/opcount.rs` counts the instructions per operation.
//!
//! The crate knows nothing of seL4 invocations: the caller performs `X86Page_Map`/`Unmap` and `CNode_Copy`/
//! `Delete`, and records them here. It builds with `no_std` + `alloc` and is tested on the host.
//!
//! # Example
//!
//! ```
//! use mapping_db::*;
//!
//! let mut db = MappingDb::new();
//! let frame = FrameId::new(CapSlot(0x40), 0x8000_0000);
//! db.add_frame(frame, PageSize::Small).unwrap();
//! // copy&map into two address spaces: each mapping through its own copy of the cap.
//! db.add_copy(frame, CapSlot(0x41), frame.slot).unwrap();
//! db.add_copy(frame, CapSlot(0x42), frame.slot).unwrap();
//! let rw = Rights::READ | Rights::WRITE;
//! let a = Mapping::new(frame, CapSlot(0x41), AsId(1), 0x40_0000, PageSize::Small, rw, CapSlot(0x100));
//! let b = Mapping::new(frame, CapSlot(0x42), AsId(2), 0x7000, PageSize::Small, Rights::READ, CapSlot(0x200));
//! db.insert(a).unwrap();
//! db.insert(b).unwrap();
//! assert_eq!(db.insert(a), Err(InsertError::CapMapped));
//!
//! assert_eq!(db.lookup(AsId(1), 0x40_0123).map(|m| m.frame), Some(frame));
//! assert_eq!(db.mappings_of_frame(frame).count(), 2);
//! assert_eq!(db.leaf_used(a.leaf), 1);
//!
//! // Unmapping hands the record back; then the copy can go.
//! let gone = db.remove_by_vaddr(AsId(2), 0x7fff).unwrap();
//! assert_eq!(gone, b);
//! db.remove_copy(gone.cap).unwrap();
//! db.check().unwrap();
//! ```
//!
//! # Invariants
//!
//! Writing `caps[s]` for the node of capability slot `s`, `r` for the record `caps[s]` holds, `f` for a frame:
//!
//! Frames and capabilities
//! - **F1** `f` is known => its original slot `f.slot` is known, refers to `f`, and has no parent; `f.paddr`
//!   is aligned to its size. (Frames are keyed by original slot, so no two frames share one.)
//! - **F2** `s` is known => its frame is known and lists `s` among its copies (exactly once: the lists' total
//!   length is the number of capabilities).
//! - **F3** `s` has parent `p` => `p` is known and refers to the same frame; `s` has no parent => `s` is its
//!   frame's original; `children(p)` = the number of slots whose parent is `p`; following parents always
//!   reaches an original (the derivation is a forest, one tree per frame).
//!
//! Records (`caps[s]` holds `r`)
//! - **R1** `r` is well formed: `r.vaddr` is aligned to `r.size`, the page ends at or below
//!   [`USER_VADDR_END`], `r.index == r.size.entry_index(r.vaddr)`, `r.leaf` is of `r.asid` and of the level
//!   mapping `r.size`, and `r.size` is the frame's size. A capability holds at most one record (by
//!   construction: one `Option` per node), so mapped(s) <=> exactly one record names `s`.
//! - **R2** (by address) `(r.asid, r.vaddr)` indexes `s`.
//! - **R3** (by frame) the frame's list of mappings holds `s`.
//! - **R4** (by address space) `r.asid`'s list of mappings holds `s`.
//! - **R5** (by leaf) `r.leaf` marks entry `r.index` in use and covers the region of `r.vaddr`
//!   (`r.size.leaf_region(r.vaddr)`); a leaf table covers one region while it has entries.
//! - **C** (counts) number of records = entries of the address index = sum over frames = sum over address
//!   spaces = sum over leaves of entries in use. A leaf without entries in use is idle: at most 4 are kept
//!   (the oldest dropped first), so that a page table emptied and used again (a page fault handler's clone
//!   and destroy) costs no hash insert and removal; an address space exists <=> a leaf (in use or idle) of
//!   it does; no other empty list or leaf is kept. With R2–R5 each index is in
//!   bijection with the records; in particular two records never claim one entry `(leaf, index)` (they would
//!   share one address key).
//! - **O** (no overlap) two records of one address space never overlap: same-size pages are distinct by R2,
//!   and a record => no larger page of its space starts at the larger-aligned address below it.
//! - **S** (span counters) a counter for (space, size `S`, base) equals the number of records of that space
//!   smaller than `S` inside `[base, base + S)`; it exists <=> a leaf (in use or idle) names it, which one
//!   does while it is nonzero.
//!
//! Runs (a run `u` at `(dst, vaddr)` of `n` pages; an *original run* if `first_copy == first_parent`, else a
//! *copy run*)
//! - **U1** (well formed) `1 <= n <= 512`; `vaddr` is 4 KiB aligned and the `n` pages lie in one 2 MiB
//!   region below [`USER_VADDR_END`]; `u.leaf` is a page table of `dst` covering that region, with the
//!   run's entries marked in use; `first_copy + n` and `first_parent + n` do not wrap.
//! - **U2** (no double claim) no two runs of a space share a page, no per-page record is at a run's page and
//!   no larger page of the space contains one (so O holds for run pages); no two runs share a slot
//!   (`first_copy + i`); no capability node is in a copy run's slot, and each slot of an original run is
//!   the node of that original, holding no record (so an original is mapped at most once, per page or in a
//!   run).
//! - **U3** (parents) every `first_parent + i` is a known frame's original, of a 4 KiB frame. A copy run's
//!   copies have no children; the `children` count of an original leaves out its copies in runs. (So a copy
//!   run's `first_copy` differs from its `first_parent`: which kind a run is follows from its slots.)
//! - **U4** (indexes) the by-copy index names exactly the runs, the by-parent index exactly the copy runs;
//!   the counts of run pages and of original-run pages are theirs, and the cached bounds of pages and slots
//!   are those of the first and last runs. With C: records = per-page records + run pages; capabilities =
//!   nodes + copy-run pages; the leaf tables' entries in use and the span counters count the run pages too,
//!   while the address index, the frames' and the spaces' lists hold the per-page records only.
//!
//! Links (the representation: each is what the indexes above are made of)
//! - **L** every position names an entry in use that names back: a capability's frame, parent and place in
//!   its frame's copy list; a record's leaf and places in its frame's and its space's lists; a leaf's address
//!   space (the one of its key) and span counters (the counters of the larger regions containing its region).
//!   Each table's key index names exactly its entries in use (an index of 64-key chunks also keeps up to 4
//!   idle empty chunks), and each cached count (entries in use per leaf, 2 MiB and 1 GiB records per space and
//!   in all, leaves per space and per span counter, copies (non-originals) with children) equals what it
//!   counts.
//!
//! [`MappingDb::check`] verifies all of them.
//!
//! # Memory
//!
//! [`mapping_cost`] gives the bytes one record costs across every index, and [`MappingDb::approx_heap_bytes`]
//! the heap of a whole database; [`MappingCost`] documents how.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod addr;
mod batch;
mod check;
mod chunk;
mod cost;
mod db;
mod error;
mod region;
mod run;
mod table;
mod types;

#[cfg(test)]
mod tests;

pub use batch::{Batch, BatchOp};
pub use cost::{mapping_cost, MappingCost};
pub use db::MappingDb;
pub use error::{
    AddCopyError, AddFrameError, BatchError, BatchErrorKind, CloneError, CloneRegionError, InsertError,
    InvariantViolation, RemoveCopyError, RemoveError, RemoveFrameError, SourceError,
};
pub use region::{CloneParent, RegionClone};
pub use types::{
    AsId, CapSlot, FrameId, LeafLevel, LeafTable, Mapping, PageSize, Rights, ENTRIES_PER_TABLE, USER_VADDR_END,
};
