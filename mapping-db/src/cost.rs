//! Memory cost: per mapping record, and of a whole database.
//!
//! A hashbrown table of `(K, V)` stores each entry in a bucket of `size_of::<(K, V)>()` bytes plus one control
//! byte; it grows when `items > 7/8 buckets` (doubling), so a bucket costs at least `(size + 1) * 8 / 7` bytes per
//! entry (just before growth) and twice that just after. The control array also has `Group::WIDTH` (16 on x86_64
//! with SSE2) trailing bytes per table, negligible here. A `Vec` element (a table's slab slot, a list element)
//! costs its size, up to twice after growth.

use core::mem::size_of;

use crate::addr::CHUNK_BYTES;
use crate::chunk::{chunk_bytes, CHUNK};
use crate::db::{CapNode, LeafNode, MappingDb, Placed, SpanKey};
use crate::table::bucket_bytes;
use crate::types::{CapSlot, LeafTable, ENTRIES_PER_TABLE};

/// Bytes of one entry of a [`Table`](crate::table::Table) of `V` keyed by `K`: its bucket in the hash index
/// (key and position) and its slot in the slab.
const fn table_entry<K, V>() -> usize {
    bucket_bytes::<(K, u32)>() + size_of::<Option<(K, V)>>()
}

/// What one mapping record costs, entry by entry, at the tables' maximum load.
///
/// How it is computed: every table is a hash index from key to position (a hashbrown table of `(K, u32)`: a
/// bucket of `size_of::<(K, u32)>()` bytes plus one control byte, grown (doubling) when more than 7/8 of the
/// buckets are full, so at least `(size_of::<(K, u32)>() + 1) * 8 / 7` bytes per entry just before growth and
/// about twice that just after) and a slab of `Option<(K, V)>` slots (a `Vec`: its size, up to twice after
/// growth). Capability slots and page addresses are indexed instead by chunks of 64 positions, each found
/// through such a hash table: a key costs its share of a full chunk (a lone key pays for the whole chunk).
/// Lists are `Vec`s or kept inline in their owner. Each field below is one such entry; the leaf, its address
/// chunk and the span entries are shared by the pages of one table or region, hence
/// [`dense`](Self::dense) and [`sparse`](Self::sparse).
///
/// Under copy&map every mapping needs its own capability copy, so the copy's entries are counted too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MappingCost {
    /// The by-cap table entry: the copy's node, which holds the record, and its share of a full chunk of the
    /// slot index.
    pub cap_entry: usize,
    /// Of `cap_entry`, the record's own part (the rest is the copy's node, paid for by an unmapped copy too).
    pub record_part: usize,
    /// The copy's slot in its frame's list of copies.
    pub copy_list: usize,
    /// The by-address entry: the page's slot in its address chunk (64 pages of one size and address space),
    /// with its share of the chunk's table entry when the chunk is full.
    pub vaddr_entry: usize,
    /// The cap's slot in its frame's list of mappings.
    pub frame_list: usize,
    /// The cap's slot in its address space's list of mappings.
    pub space_list: usize,
    /// A leaf table's entry (region, 512-bit entry bitmap, links), shared by up to 512 records; plus the rest of
    /// an address chunk, which a lone page pays for alone.
    pub leaf_entry: usize,
    /// A span counter's entry, shared by the pages of one larger region; a 4 KiB page is counted in 2, a
    /// 2 MiB page in 1, a 1 GiB page in none.
    pub span_entry: usize,
    /// A copy run's entries in its three ordered indexes (by address, by first copy, by first parent),
    /// shared by the up to 512 copies and records of one [`clone_region`](MappingDb::clone_region) in one
    /// page table; a page in a run has no entry of its own in the other indexes (see
    /// [`in_run`](Self::in_run)).
    pub run_entry: usize,
}

impl MappingCost {
    /// Bytes per record every mapping pays whatever its neighbours.
    pub const fn own(&self) -> usize {
        self.cap_entry + self.copy_list + self.vaddr_entry + self.frame_list + self.space_list
    }

    /// Bytes per record when leaf tables are full and the capability copy is counted as already paid for.
    pub const fn dense_without_copy(&self) -> usize {
        self.dense() - (self.cap_entry - self.record_part) - self.copy_list
    }

    /// Bytes per record when leaf tables are full (512 records share one leaf entry and one 2 MiB span).
    pub const fn dense(&self) -> usize {
        self.own() + (self.leaf_entry + 2 * self.span_entry).div_ceil(ENTRIES_PER_TABLE as usize)
    }

    /// Bytes per record (with its capability copy) of a page in a run of `pages` pages (`1..=512`) filling
    /// its leaf table: the run's entry and the leaf's and spans' shares; no per-page entry.
    pub const fn in_run(&self, pages: usize) -> usize {
        self.run_entry.div_ceil(pages) + (self.leaf_entry + 2 * self.span_entry).div_ceil(ENTRIES_PER_TABLE as usize)
    }

    /// Bytes per record in the worst case: a lone 4 KiB page with its own leaf entry, address chunk and two
    /// span counters.
    pub const fn sparse(&self) -> usize {
        self.own() + self.leaf_entry + 2 * self.span_entry
    }
}

/// The cost of one mapping record, from the sizes of the stored entries (see [`MappingCost`]).
pub const fn mapping_cost() -> MappingCost {
    let vaddr_entry = CHUNK_BYTES.div_ceil(CHUNK);
    MappingCost {
        cap_entry: size_of::<Option<(CapSlot, CapNode)>>() + chunk_bytes::<CapSlot>().div_ceil(CHUNK),
        record_part: size_of::<Option<Placed>>(),
        copy_list: size_of::<CapSlot>(),
        vaddr_entry,
        frame_list: size_of::<u32>(),
        space_list: size_of::<u32>(),
        leaf_entry: table_entry::<LeafTable, LeafNode>() + CHUNK_BYTES - vaddr_entry,
        span_entry: table_entry::<SpanKey, u32>(),
        run_entry: crate::run::run_entry_bytes(),
    }
}

impl MappingDb {
    /// Approximate heap bytes of the whole database, from the tables' and lists' capacities (allocator
    /// overhead not included).
    pub fn approx_heap_bytes(&self) -> usize {
        let lists: usize = self
            .frames
            .values()
            .map(|n| n.copies.heap_bytes() + n.mapped.heap_bytes())
            .sum::<usize>()
            + self
                .spaces
                .values()
                .map(|v| v.maps.capacity() * size_of::<u32>())
                .sum::<usize>();
        self.frames.heap_bytes()
            + self.caps.heap_bytes()
            + self.by_vaddr.heap_bytes()
            + self.spaces.heap_bytes()
            + self.leaves.heap_bytes()
            + self.spans.heap_bytes()
            + self.runs.heap_bytes()
            + lists
    }
}
