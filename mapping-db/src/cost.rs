//! Memory cost: per mapping record, and of a whole database.
//!
//! A hashbrown table of `(K, V)` stores each entry in a bucket of `size_of::<(K, V)>()` bytes plus one control
//! byte; it grows when `items > 7/8 buckets` (doubling), so a bucket costs at least `(size + 1) * 8 / 7` bytes per
//! entry (just before growth) and twice that just after. The control array also has `Group::WIDTH` (16 on x86_64
//! with SSE2) trailing bytes per table, negligible here. A `Vec` element costs its size, up to twice after growth.

use core::mem::{align_of, size_of};

use hashbrown::HashMap;

use crate::db::{CapNode, FrameNode, LeafNode, MappingDb, Placed, SpanKey, VKey};
use crate::types::{AsId, CapSlot, LeafTable, ENTRIES_PER_TABLE};

/// Bytes of one hashbrown entry of `T = (K, V)` at the maximum load factor 7/8, rounded up.
const fn bucket_bytes<T>() -> usize {
    ((size_of::<T>() + 1) * 8).div_ceil(7)
}

/// What one mapping record costs, entry by entry, at the tables' maximum load.
///
/// How it is computed: a hashbrown table of `(K, V)` stores each entry in a bucket of `size_of::<(K, V)>()`
/// bytes plus one control byte, and grows (doubling) when more than 7/8 of the buckets are full; so an entry
/// costs at least `(size_of::<(K, V)>() + 1) * 8 / 7` bytes (just before growth) and about twice that just
/// after. A `Vec` element costs its size (up to twice after growth). Each field below is one such entry; the
/// leaf and span entries are shared by the pages of one table or region, hence [`dense`](Self::dense) and
/// [`sparse`](Self::sparse).
///
/// Under copy&map every mapping needs its own capability copy, so the copy's entries are counted too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MappingCost {
    /// The by-cap table bucket: the copy's node, which holds the record.
    pub cap_entry: usize,
    /// Of `cap_entry`, the record's own part (the rest is the copy's node, paid for by an unmapped copy too).
    pub record_part: usize,
    /// The copy's slot in its frame's list of copies.
    pub copy_list: usize,
    /// The (address space, vaddr) -> cap bucket.
    pub vaddr_entry: usize,
    /// The cap's slot in its frame's list of mappings.
    pub frame_list: usize,
    /// The cap's slot in its address space's list of mappings.
    pub space_list: usize,
    /// A leaf table's bucket (region and 512-bit entry bitmap), shared by up to 512 records.
    pub leaf_entry: usize,
    /// A span counter's bucket, shared by the pages of one larger region; a 4 KiB page is counted in 2, a
    /// 2 MiB page in 1, a 1 GiB page in none.
    pub span_entry: usize,
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

    /// Bytes per record when leaf tables are full (512 records share one leaf bucket and one 2 MiB span).
    pub const fn dense(&self) -> usize {
        self.own() + (self.leaf_entry + 2 * self.span_entry).div_ceil(ENTRIES_PER_TABLE as usize)
    }

    /// Bytes per record in the worst case: a lone 4 KiB page with its own leaf bucket and two span counters.
    pub const fn sparse(&self) -> usize {
        self.own() + self.leaf_entry + 2 * self.span_entry
    }
}

/// The cost of one mapping record, from the sizes of the stored entries (see [`MappingCost`]).
pub const fn mapping_cost() -> MappingCost {
    MappingCost {
        cap_entry: bucket_bytes::<(CapSlot, CapNode)>(),
        record_part: (size_of::<Option<Placed>>() * 8).div_ceil(7),
        copy_list: size_of::<CapSlot>(),
        vaddr_entry: bucket_bytes::<(VKey, CapSlot)>(),
        frame_list: size_of::<CapSlot>(),
        space_list: size_of::<CapSlot>(),
        leaf_entry: bucket_bytes::<(LeafTable, LeafNode)>(),
        span_entry: bucket_bytes::<(SpanKey, u32)>(),
    }
}

/// Heap bytes of a hashbrown table with this capacity: buckets, control bytes and the trailing group.
fn table_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let cap = map.capacity();
    let buckets = match cap {
        0 => return 0,
        1..=7 => cap + 1,
        _ => cap / 7 * 8,
    };
    let ctrl_align = align_of::<(K, V)>().max(16);
    (buckets * size_of::<(K, V)>()).next_multiple_of(ctrl_align) + buckets + 16
}

impl MappingDb {
    /// Approximate heap bytes of the whole database, from the tables' and lists' capacities (allocator
    /// overhead not included).
    pub fn approx_heap_bytes(&self) -> usize {
        let lists: usize = self
            .frames
            .values()
            .map(|n| (n.copies.capacity() + n.mapped.capacity()) * size_of::<CapSlot>())
            .sum::<usize>()
            + self
                .spaces
                .values()
                .map(|v| v.capacity() * size_of::<CapSlot>())
                .sum::<usize>();
        table_bytes::<CapSlot, FrameNode>(&self.frames)
            + table_bytes(&self.caps)
            + table_bytes(&self.by_vaddr)
            + table_bytes::<AsId, _>(&self.spaces)
            + table_bytes(&self.leaves)
            + table_bytes(&self.spans)
            + lists
    }
}
