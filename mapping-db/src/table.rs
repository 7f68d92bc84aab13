//! Storage: tables whose entries keep a stable position, and short lists kept inline.
//!
//! The database's indexes name each other's entries by position (`u32`) rather than by key, so following a
//! link costs an array access instead of a hash lookup; only the way in from the caller's keys is hashed.

use alloc::vec::Vec;
use core::hash::Hash;
use core::mem::size_of;

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use crate::chunk::{ChunkMap, Dense};

/// No position: the end of a list of links, or a link that does not apply.
pub(crate) const NONE: u32 = u32::MAX;

/// `p` as a position (positions and list lengths are `u32`).
pub(crate) fn pos32(p: usize) -> u32 {
    u32::try_from(p)
        .ok()
        .filter(|&p| p != NONE)
        .expect("more than u32::MAX - 1 entries")
}

/// Bytes of one hashbrown entry of `T = (K, V)` at the maximum load factor 7/8, rounded up.
pub(crate) const fn bucket_bytes<T>() -> usize {
    ((size_of::<T>() + 1) * 8).div_ceil(7)
}

/// Heap bytes of a hashbrown table with this capacity: buckets, control bytes and the trailing group.
pub(crate) fn map_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let cap = map.capacity();
    let buckets = match cap {
        0 => return 0,
        1..=7 => cap + 1,
        _ => cap / 7 * 8,
    };
    let ctrl_align = core::mem::align_of::<(K, V)>().max(16);
    (buckets * size_of::<(K, V)>()).next_multiple_of(ctrl_align) + buckets + 16
}

/// The index of a [`Table`]: key -> position.
pub(crate) trait PosIndex<K>: Default {
    fn pos(&self, k: &K) -> Option<u32>;
    /// As [`pos`](Self::pos), and the index may remember where it looked (for the next lookup nearby).
    fn pos_mut(&mut self, k: &K) -> Option<u32>;
    /// Adds `k` -> `p` unless `k` is present: then `Err` with its position.
    fn try_insert(&mut self, k: K, p: u32) -> Result<(), u32>;
    fn remove(&mut self, k: &K) -> Option<u32>;
    fn len(&self) -> usize;
    /// Whether the index's own structure is sound.
    fn consistent(&self) -> bool;
    fn heap_bytes(&self) -> usize;
}

impl<K: Copy + Eq + Hash> PosIndex<K> for HashMap<K, u32> {
    #[inline(always)]
    fn pos(&self, k: &K) -> Option<u32> {
        self.get(k).copied()
    }
    #[inline(always)]
    fn pos_mut(&mut self, k: &K) -> Option<u32> {
        self.get(k).copied()
    }
    #[inline(always)]
    fn try_insert(&mut self, k: K, p: u32) -> Result<(), u32> {
        match self.entry(k) {
            Entry::Occupied(e) => Err(*e.get()),
            Entry::Vacant(e) => {
                e.insert(p);
                Ok(())
            }
        }
    }
    fn remove(&mut self, k: &K) -> Option<u32> {
        HashMap::remove(self, k)
    }
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn consistent(&self) -> bool {
        true
    }
    fn heap_bytes(&self) -> usize {
        map_bytes(self)
    }
}

impl<K: Dense + Eq> PosIndex<K> for ChunkMap<K> {
    #[inline(always)]
    fn pos(&self, k: &K) -> Option<u32> {
        self.get(*k)
    }
    #[inline(always)]
    fn pos_mut(&mut self, k: &K) -> Option<u32> {
        self.get_mut(*k)
    }
    #[inline(always)]
    fn try_insert(&mut self, k: K, p: u32) -> Result<(), u32> {
        ChunkMap::try_insert(self, k, p)
    }
    #[inline(always)]
    fn remove(&mut self, k: &K) -> Option<u32> {
        ChunkMap::remove(self, *k)
    }
    fn len(&self) -> usize {
        ChunkMap::len(self)
    }
    fn consistent(&self) -> bool {
        ChunkMap::consistent(self)
    }
    fn heap_bytes(&self) -> usize {
        ChunkMap::heap_bytes(self)
    }
}

/// A map from `K` to `V` whose entries sit at stable positions of a slab. The index finds an entry by key;
/// an entry stays at its position until it is removed, after which a later insert may reuse the position.
/// [`find`](Self::find) takes a guessed position (a "hint") and looks the key up only if the guess is wrong.
#[derive(Clone, Debug)]
pub(crate) struct Table<K, V, I = HashMap<K, u32>> {
    index: I,
    slots: Vec<Option<(K, V)>>,
    free: Vec<u32>,
}

impl<K, V, I: Default> Default for Table<K, V, I> {
    fn default() -> Self {
        Self {
            index: I::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K: Copy + Eq, V, I: PosIndex<K>> Table<K, V, I> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position of `k`'s entry.
    #[inline(always)]
    pub(crate) fn pos(&self, k: &K) -> Option<u32> {
        self.index.pos(k)
    }

    /// The position of `k`'s entry (the index may remember where it looked).
    #[inline(always)]
    pub(crate) fn pos_mut(&mut self, k: &K) -> Option<u32> {
        self.index.pos_mut(k)
    }

    /// The position of `k`'s entry: `hint` if the entry there is `k`'s, else looked up.
    #[inline(always)]
    pub(crate) fn find(&self, hint: u32, k: &K) -> Option<u32> {
        match self.slots.get(hint as usize) {
            Some(Some((key, _))) if key == k => Some(hint),
            _ => self.pos(k),
        }
    }

    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.pos(k).is_some()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        let p = self.pos(k)?;
        Some(self.at(p))
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let p = self.pos(k)?;
        Some(self.at_mut(p))
    }

    /// The entry at `p`, if there is one.
    pub(crate) fn slot(&self, p: u32) -> Option<(K, &V)> {
        self.slots.get(p as usize)?.as_ref().map(|(k, v)| (*k, v))
    }

    /// The entry at `p`, which must be in use.
    #[inline(always)]
    pub(crate) fn entry_at(&self, p: u32) -> (K, &V) {
        let (k, v) = self.slots[p as usize].as_ref().expect("position in use");
        (*k, v)
    }

    /// The entry at `p`, which must be in use.
    #[inline(always)]
    pub(crate) fn entry_at_mut(&mut self, p: u32) -> (K, &mut V) {
        let (k, v) = self.slots[p as usize].as_mut().expect("position in use");
        (*k, v)
    }

    #[inline(always)]
    pub(crate) fn at(&self, p: u32) -> &V {
        self.entry_at(p).1
    }

    #[inline(always)]
    pub(crate) fn at_mut(&mut self, p: u32) -> &mut V {
        self.entry_at_mut(p).1
    }

    #[inline(always)]
    pub(crate) fn key_at(&self, p: u32) -> K {
        self.entry_at(p).0
    }

    /// The key index.
    #[inline(always)]
    pub(crate) fn index(&self) -> &I {
        &self.index
    }

    /// The key index, to change alongside [`place`](Self::place) and [`take_at`](Self::take_at).
    #[inline(always)]
    pub(crate) fn index_mut(&mut self) -> &mut I {
        &mut self.index
    }

    /// Stores `(k, v)` at a free position and returns it, WITHOUT indexing it: the caller adds `k` -> the
    /// position to the index (before anyone looks `k` up).
    #[inline(always)]
    pub(crate) fn place(&mut self, k: K, v: V) -> u32 {
        match self.free.pop() {
            Some(p) => {
                self.slots[p as usize] = Some((k, v));
                p
            }
            None => {
                let p = pos32(self.slots.len());
                self.slots.push(Some((k, v)));
                p
            }
        }
    }

    /// Takes `n` free positions off the free list (or past the end of the slab) and appends them to `out`,
    /// in the order [`place`](Self::place) would have used them. They stay empty and out of the free list
    /// until [`put_at`](Self::put_at) fills each (before anything else changes the table).
    #[inline(always)]
    pub(crate) fn reserve_positions(&mut self, n: usize, out: &mut impl Extend<u32>) {
        let reused = n.min(self.free.len());
        let at = self.free.len() - reused;
        out.extend(self.free[at..].iter().rev().copied());
        self.free.truncate(at);
        let (start, end) = (self.slots.len(), self.slots.len() + (n - reused));
        pos32(end);
        self.slots.resize_with(end, || None);
        out.extend((start..end).map(|p| p as u32));
    }

    /// Takes one free position as [`reserve_positions`](Self::reserve_positions) with `n == 1` does (the one
    /// [`place`](Self::place) would use), to fill with [`put_at`](Self::put_at).
    #[inline(always)]
    pub(crate) fn reserve_position(&mut self) -> u32 {
        match self.free.pop() {
            Some(p) => p,
            None => {
                let p = pos32(self.slots.len());
                self.slots.push(None);
                p
            }
        }
    }

    /// Stores `(k, v)` at the position `p` [`reserve_positions`](Self::reserve_positions) gave, WITHOUT
    /// indexing it (as [`place`](Self::place)).
    #[inline(always)]
    pub(crate) fn put_at(&mut self, p: u32, k: K, v: V) {
        let slot = &mut self.slots[p as usize];
        debug_assert!(slot.is_none());
        *slot = Some((k, v));
    }

    /// Frees the position `p` (in use) WITHOUT removing its key from the index: the caller does.
    #[inline(always)]
    pub(crate) fn free_at(&mut self, p: u32) {
        self.slots[p as usize] = None;
        self.free.push(p);
    }

    /// Removes the entry at `p` (in use) WITHOUT removing its key from the index: the caller does.
    #[inline(always)]
    pub(crate) fn take_at(&mut self, p: u32) -> (K, V) {
        let e = self.slots[p as usize].take().expect("position in use");
        self.free.push(p);
        e
    }

    /// Inserts `(k, v())` if `k` has no entry and returns its position; `Err` gives the present entry's.
    #[inline(always)]
    pub(crate) fn try_insert(&mut self, k: K, v: impl FnOnce() -> V) -> Result<u32, u32> {
        let p = match self.free.last() {
            Some(&p) => p,
            None => pos32(self.slots.len()),
        };
        self.index.try_insert(k, p)?;
        if self.free.pop().is_some() {
            self.slots[p as usize] = Some((k, v()));
        } else {
            self.slots.push(Some((k, v())));
        }
        Ok(p)
    }

    /// Inserts `(k, v)`; `k` has no entry.
    pub(crate) fn insert_new(&mut self, k: K, v: V) -> u32 {
        self.try_insert(k, || v).expect("key not present")
    }

    /// Inserts or replaces `k`'s entry; returns the value replaced.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.pos(&k) {
            Some(p) => Some(core::mem::replace(self.at_mut(p), v)),
            None => {
                self.insert_new(k, v);
                None
            }
        }
    }

    /// Removes the entry at `p` (in use).
    pub(crate) fn remove_at(&mut self, p: u32) -> V {
        let (k, v) = self.slots[p as usize].take().expect("position in use");
        self.index.remove(&k);
        self.free.push(p);
        v
    }

    /// Removes `k`'s entry.
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let p = self.index.remove(k)?;
        let (_, v) = self.slots[p as usize].take().expect("indexed position in use");
        self.free.push(p);
        Some(v)
    }

    /// The keys, in no particular order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(k, _)| k))
    }

    /// The entries with their positions, by position.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, K, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(p, s)| s.as_ref().map(|(k, v)| (p as u32, *k, v)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(_, v)| v))
    }

    /// Whether the index and the slab agree: the index names exactly the positions in use, under their keys,
    /// and the free list exactly the others, once each.
    pub(crate) fn consistent(&self) -> bool {
        let in_use = self.slots.iter().filter(|s| s.is_some()).count();
        let mut free: Vec<u32> = self.free.clone();
        free.sort_unstable();
        free.dedup();
        self.index.consistent()
            && in_use == self.index.len()
            && free.len() == self.free.len()
            && in_use + free.len() == self.slots.len()
            && free.iter().all(|&p| matches!(self.slots.get(p as usize), Some(None)))
            && self.iter().all(|(p, k, _)| self.index.pos(&k) == Some(p))
    }

    /// Heap bytes of the index, the slab and the free list (not of what the values own).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.index.heap_bytes() + self.slots.capacity() * size_of::<Option<(K, V)>>() + self.free.capacity() * 4
    }
}

/// A short list kept inline (no heap allocation) up to `N` elements, on the heap beyond.
#[derive(Clone, Debug)]
pub(crate) enum List<T, const N: usize> {
    Inline { len: u8, items: [T; N] },
    Heap(Vec<T>),
}

impl<T: Copy, const N: usize> List<T, N> {
    /// An empty list (`fill` only initialises the unused inline space).
    pub(crate) fn empty(fill: T) -> Self {
        List::Inline {
            len: 0,
            items: [fill; N],
        }
    }

    /// The list of `x` alone.
    pub(crate) fn one(x: T) -> Self {
        List::Inline { len: 1, items: [x; N] }
    }

    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            List::Inline { len, items } => &items[..usize::from(*len)],
            List::Heap(v) => v,
        }
    }

    #[cfg(test)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            List::Inline { len, items } => &mut items[..usize::from(*len)],
            List::Heap(v) => v,
        }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        match self {
            List::Inline { len, .. } => usize::from(*len),
            List::Heap(v) => v.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.as_slice().get(i)
    }

    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, x: T) {
        match self {
            List::Inline { len, items } if usize::from(*len) < N => {
                items[usize::from(*len)] = x;
                *len += 1;
            }
            List::Inline { items, .. } => {
                let mut v = Vec::with_capacity(2 * N);
                v.extend_from_slice(items);
                v.push(x);
                *self = List::Heap(v);
            }
            List::Heap(v) => v.push(x),
        }
    }

    /// Appends `x` and returns its position (the length before).
    #[inline(always)]
    pub(crate) fn push_at(&mut self, x: T) -> u32 {
        match self {
            List::Inline { len, items } if usize::from(*len) < N => {
                let at = *len;
                items[usize::from(at)] = x;
                *len = at + 1;
                u32::from(at)
            }
            _ => {
                let at = pos32(self.len());
                self.push(x);
                at
            }
        }
    }

    /// Removes element `i`, moving the last one into its place; returns the element moved, if any.
    #[inline(always)]
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<T> {
        match self {
            List::Inline { len, items } => {
                let last = usize::from(*len) - 1;
                *len -= 1;
                if i < last {
                    items[i] = items[last];
                    Some(items[i])
                } else {
                    None
                }
            }
            List::Heap(v) => swap_remove(v, i),
        }
    }

    #[cfg(test)]
    pub(crate) fn reverse(&mut self) {
        self.as_mut_slice().reverse();
    }

    /// Heap bytes the list owns.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            List::Inline { .. } => 0,
            List::Heap(v) => v.capacity() * size_of::<T>(),
        }
    }
}

/// Removes element `i` of `v`, moving the last one into its place; returns the element moved, if any.
#[inline(always)]
pub(crate) fn swap_remove<T: Copy>(v: &mut Vec<T>, i: usize) -> Option<T> {
    let last = v.pop().expect("element to remove");
    if i < v.len() {
        v[i] = last;
        Some(last)
    } else {
        None
    }
}
