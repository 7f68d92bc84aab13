//! The by-address index: (address space, page size, page start) -> the capability (position in `caps`) whose
//! mapping starts there.
//!
//! A [`ChunkMap`]: 64 consecutive same-size pages of one address space share a chunk (256 KiB of 4 KiB pages,
//! 128 MiB of 2 MiB pages, 64 GiB of 1 GiB pages), which exists while one of its pages is mapped (and for a
//! while after, idle: see the `chunk` module).

use crate::chunk::{chunk_bytes, ChunkMap, Cursor, Dense, CHUNK, CHUNK_BITS};
#[cfg(test)]
use crate::db::VKey;
use crate::types::{AsId, PageSize, USER_VADDR_END};

/// A page below [`USER_VADDR_END`]: its chunk, packed as `asid << 31 | size << 29 | number >> CHUNK_BITS`
/// (the page number `vaddr >> size.bits()` is below 2^35, so the chunk number below 2^29), and its place in
/// the chunk (`number % CHUNK`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Page {
    chunk: u64,
    at: usize,
}

impl Page {
    #[inline(always)]
    fn new(asid: AsId, size: PageSize, vaddr: u64) -> Self {
        debug_assert!(vaddr < USER_VADDR_END);
        let number = (vaddr & (USER_VADDR_END - 1)) >> size.bits();
        Page {
            chunk: u64::from(asid.0) << 31 | (size as u64) << 29 | number >> CHUNK_BITS,
            at: (number as usize) & (CHUNK - 1),
        }
    }
}

impl Dense for Page {
    type Id = u64;
    #[inline(always)]
    fn split(self) -> (u64, usize) {
        (self.chunk, self.at)
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AddrIndex {
    map: ChunkMap<Page>,
}

impl AddrIndex {
    /// Number of pages indexed.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capability whose page of `size` contains `vaddr` in `asid`.
    #[inline(always)]
    pub(crate) fn get(&self, asid: AsId, size: PageSize, vaddr: u64) -> Option<u32> {
        if vaddr >= USER_VADDR_END {
            return None;
        }
        self.map.get(Page::new(asid, size, vaddr))
    }

    /// [`get`](Self::get), remembering the chunk for the next lookup nearby.
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, asid: AsId, size: PageSize, vaddr: u64) -> Option<u32> {
        if vaddr >= USER_VADDR_END {
            return None;
        }
        self.map.get_mut(Page::new(asid, size, vaddr))
    }

    /// The capabilities of the pages of `size` from the one containing `vaddr` (below [`USER_VADDR_END`]) to
    /// the end of its chunk, [`NONE`](crate::table::NONE) where none starts, if the chunk exists.
    #[inline(always)]
    pub(crate) fn tail(&self, asid: AsId, size: PageSize, vaddr: u64) -> Option<&[u32]> {
        self.map.tail(Page::new(asid, size, vaddr))
    }

    /// [`tail`](Self::tail), or `Err` with the number of pages from the one containing `vaddr` (below
    /// [`USER_VADDR_END`]) to the end of its chunk if the chunk does not exist (none of them is indexed).
    #[inline(always)]
    pub(crate) fn tail_or_len(&self, asid: AsId, size: PageSize, vaddr: u64) -> Result<&[u32], usize> {
        self.map.tail_or_len(Page::new(asid, size, vaddr))
    }

    /// Adds the pages of `size` from `vaddr` (below [`USER_VADDR_END`], consecutive), page `j` held by
    /// `caps[j]`, to the end of the chunk of the first or of `caps`, whichever comes first (the caller knows
    /// them all free); returns how many (see [`ChunkMap::fill`]).
    #[inline(always)]
    pub(crate) fn fill(&mut self, asid: AsId, size: PageSize, vaddr: u64, caps: &[u32]) -> usize {
        self.map.fill(Page::new(asid, size, vaddr), caps)
    }

    /// Removes the pages of `size` from `vaddr` (below [`USER_VADDR_END`], consecutive, all indexed) to the
    /// end of the chunk of the first or the `m`-th, whichever comes first; returns how many (see
    /// [`ChunkMap::clear`]).
    #[inline(always)]
    pub(crate) fn clear(&mut self, asid: AsId, size: PageSize, vaddr: u64, m: usize) -> usize {
        self.map.clear(Page::new(asid, size, vaddr), m)
    }

    /// Whether a page of `size` at `vaddr` can be added: `Ok` with its chunk's position if that exists, or
    /// `Err` with the capability already there.
    #[inline(always)]
    pub(crate) fn vacancy(&self, asid: AsId, size: PageSize, vaddr: u64) -> Result<Option<u32>, u32> {
        self.map.vacancy(Page::new(asid, size, vaddr))
    }

    /// Adds `cap`'s page of `size` at `vaddr`, where [`vacancy`](Self::vacancy) said `Ok(chunk)`.
    #[inline(always)]
    pub(crate) fn insert(&mut self, chunk: Option<u32>, asid: AsId, size: PageSize, vaddr: u64, cap: u32) {
        self.map.insert_at(chunk, Page::new(asid, size, vaddr), cap);
    }

    /// Adds `cap`'s page of `size` at `vaddr`, unless a page of that size starts there: then `Err` with its
    /// capability (and nothing changed).
    #[inline(always)]
    pub(crate) fn try_insert(&mut self, asid: AsId, size: PageSize, vaddr: u64, cap: u32) -> Result<(), u32> {
        self.map.try_insert(Page::new(asid, size, vaddr), cap)
    }

    /// Removes the page of `size` containing `vaddr` and returns its capability.
    #[cfg(test)]
    pub(crate) fn remove_sized(&mut self, asid: AsId, size: PageSize, vaddr: u64) -> Option<u32> {
        self.map.remove(Page::new(asid, size, vaddr))
    }

    /// The chunk of the page of `size` at `vaddr` (below [`USER_VADDR_END`]), if it exists, and the page's
    /// place in it, through the cursor (see [`ChunkMap::find_in`]).
    #[inline(always)]
    pub(crate) fn find_in(
        &self,
        cur: &mut Cursor<u64>,
        asid: AsId,
        size: PageSize,
        vaddr: u64,
    ) -> (Option<u32>, usize) {
        self.map.find_in(cur, Page::new(asid, size, vaddr))
    }

    /// The capability at the place [`find_in`](Self::find_in) gave ([`NONE`](crate::table::NONE) if none).
    #[inline(always)]
    pub(crate) fn value_in(&self, c: Option<u32>, i: usize) -> u32 {
        self.map.value_in(c, i)
    }

    /// Adds `cap`'s page of `size` at `vaddr` at the place [`find_in`](Self::find_in) gave, which is free.
    #[inline(always)]
    pub(crate) fn put_in(
        &mut self,
        cur: &mut Cursor<u64>,
        c: Option<u32>,
        asid: AsId,
        size: PageSize,
        vaddr: u64,
        cap: u32,
    ) {
        self.map.put_in(cur, c, Page::new(asid, size, vaddr), cap);
    }

    /// Removes the page of `size` containing `vaddr` (below [`USER_VADDR_END`]) through the cursor and returns
    /// its capability ([`NONE`](crate::table::NONE) if none).
    #[inline(always)]
    pub(crate) fn take_in(&mut self, cur: &mut Cursor<u64>, asid: AsId, size: PageSize, vaddr: u64) -> u32 {
        self.map.take_in(cur, Page::new(asid, size, vaddr))
    }

    /// Makes the cursor's chunk the index's most recent hint.
    #[inline(always)]
    pub(crate) fn remember_cursor(&mut self, cur: &Cursor<u64>) {
        self.map.remember_cursor(cur);
    }

    /// Removes the page starting at `k.vaddr`, whatever its size.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, k: &VKey) -> Option<u32> {
        if k.vaddr >= USER_VADDR_END {
            return None;
        }
        PageSize::ALL
            .into_iter()
            .filter(|s| s.is_aligned(k.vaddr))
            .find_map(|s| self.remove_sized(k.asid, s, k.vaddr))
    }

    pub(crate) fn consistent(&self) -> bool {
        self.map.consistent()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.map.heap_bytes()
    }
}

/// Bytes of one address chunk.
pub(crate) const CHUNK_BYTES: usize = chunk_bytes::<Page>();
