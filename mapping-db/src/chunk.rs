//! A map from dense keys to positions: keys are grouped in chunks of [`CHUNK`] neighbours, a hash table finds
//! a chunk and an array inside it the key's position. Neighbouring keys share a chunk, and the chunks used
//! last are tried before hashing, so a run of neighbouring keys costs one hash lookup (or none).
//!
//! A chunk left empty stays indexed for a while (up to [`IDLE`] such chunks per map, the oldest forgotten
//! first): a key that comes back soon (a page mapped, unmapped and mapped again, as a page fault handler
//! does) finds its chunk without a hash insert and removal each time.

use alloc::vec::Vec;
use core::fmt::Debug;
use core::hash::Hash;
use core::mem::size_of;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use hashbrown::HashMap;

use crate::table::{bucket_bytes, map_bytes, pos32, NONE};

/// log2 of the keys per chunk.
pub(crate) const CHUNK_BITS: u32 = 6;
/// Keys per chunk.
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;
/// Empty chunks a map keeps indexed (idle), for keys that come back.
pub(crate) const IDLE: usize = 4;

/// A key of a [`ChunkMap`]: which chunk, and where in it.
pub(crate) trait Dense: Copy {
    /// Names a chunk.
    type Id: Copy + Eq + Hash + Debug;
    /// The chunk and the place in it (`< CHUNK`).
    fn split(self) -> (Self::Id, usize);
}

#[derive(Clone, Debug)]
struct Chunk<Id> {
    id: Id,
    /// Entries in use; 0 for an idle or free chunk (whose entries are all [`NONE`]).
    used: u32,
    /// Whether the index names the chunk (in use or idle), else it is free (on the free list).
    indexed: bool,
    pos: [u32; CHUNK],
}

/// A run's remembered chunk of a [`ChunkMap`]: its id and position. Valid while the chunk is indexed: only
/// [`ChunkMap::take_in`] frees chunks (an idle chunk, when one more becomes idle), and it forgets the chunk
/// it frees; a run must not free chunks otherwise while it holds the cursor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor<Id>(Option<(Id, u32)>);

impl<Id> Default for Cursor<Id> {
    fn default() -> Self {
        Cursor(None)
    }
}

/// A [`ChunkMap`]'s two most recently used chunks (positions, [`NONE`] for none), most recent first: guesses
/// that every use checks, so lookups through `&self` may update them. Relaxed atomics (plain loads and
/// stores) rather than `Cell`s keep the map `Sync`; two racing readers can only leave other valid guesses.
#[derive(Debug)]
struct Hints([AtomicU32; 2]);

impl Default for Hints {
    fn default() -> Self {
        Hints([AtomicU32::new(NONE), AtomicU32::new(NONE)])
    }
}

impl Clone for Hints {
    fn clone(&self) -> Self {
        Hints([AtomicU32::new(self.get(0)), AtomicU32::new(self.get(1))])
    }
}

impl Hints {
    #[inline(always)]
    fn get(&self, i: usize) -> u32 {
        self.0[i].load(Relaxed)
    }

    /// Makes the hints `[h0, h1]`.
    #[inline(always)]
    fn set(&self, h0: u32, h1: u32) {
        self.0[0].store(h0, Relaxed);
        self.0[1].store(h1, Relaxed);
    }
}

/// The map. Positions are `u32` values other than [`NONE`].
#[derive(Clone, Debug)]
pub(crate) struct ChunkMap<K: Dense> {
    index: HashMap<K::Id, u32>,
    chunks: Vec<Chunk<K::Id>>,
    free: Vec<u32>,
    len: usize,
    /// The two chunks used last, most recent first (guesses, checked before use); read-only lookups update
    /// them too (see [`Hints`]).
    hints: Hints,
    /// The idle chunks (indexed, empty), oldest first: `idle[..idle_len]`.
    idle: [u32; IDLE],
    idle_len: u8,
}

impl<K: Dense> Default for ChunkMap<K> {
    fn default() -> Self {
        Self {
            index: HashMap::default(),
            chunks: Vec::new(),
            free: Vec::new(),
            len: 0,
            hints: Hints::default(),
            idle: [NONE; IDLE],
            idle_len: 0,
        }
    }
}

impl<K: Dense> ChunkMap<K> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether chunk `c` is in use as chunk `id`.
    #[inline(always)]
    fn is(&self, c: u32, id: &K::Id) -> bool {
        matches!(self.chunks.get(c as usize), Some(ch) if ch.indexed && ch.id == *id)
    }

    /// The position of chunk `id`, trying the remembered ones first; a chunk found through the index becomes
    /// the most recent hint (also from `&self`: see [`Hints`]).
    #[inline(always)]
    fn chunk(&self, id: &K::Id) -> Option<u32> {
        let h0 = self.hints.get(0);
        if self.is(h0, id) {
            return Some(h0);
        }
        let h1 = self.hints.get(1);
        if self.is(h1, id) {
            return Some(h1);
        }
        let c = *self.index.get(id)?;
        self.hints.set(c, h0);
        Some(c)
    }

    /// The position of chunk `id`, remembered as the most recent.
    #[inline(always)]
    fn chunk_mut(&mut self, id: &K::Id) -> Option<u32> {
        let c = self.chunk(id)?;
        self.remember(c);
        Some(c)
    }

    #[inline(always)]
    fn remember(&mut self, c: u32) {
        let h0 = self.hints.get(0);
        if h0 != c {
            self.hints.set(c, h0);
        }
    }

    /// `k`'s value.
    #[inline(always)]
    pub(crate) fn get(&self, k: K) -> Option<u32> {
        let (id, i) = k.split();
        let c = self.chunk(&id)?;
        let v = self.chunks[c as usize].pos[i];
        (v != NONE).then_some(v)
    }

    /// `k`'s value; its chunk is remembered.
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, k: K) -> Option<u32> {
        let (id, i) = k.split();
        let c = self.chunk_mut(&id)?;
        let v = self.chunks[c as usize].pos[i];
        (v != NONE).then_some(v)
    }

    /// The values of `k` and of the keys after it in its chunk (`NONE` where absent), if the chunk exists.
    #[inline(always)]
    pub(crate) fn tail(&self, k: K) -> Option<&[u32]> {
        let (id, i) = k.split();
        let c = self.chunk(&id)?;
        Some(&self.chunks[c as usize].pos[i..])
    }

    /// The values of `k` and of the keys after it in its chunk, if the chunk exists; else `Err` with how many
    /// keys there are from `k` to the end of its chunk (all absent).
    #[inline(always)]
    pub(crate) fn tail_or_len(&self, k: K) -> Result<&[u32], usize> {
        let (id, i) = k.split();
        match self.chunk(&id) {
            Some(c) => Ok(&self.chunks[c as usize].pos[i..]),
            None => Err(CHUNK - i),
        }
    }

    /// Adds `k + j` -> `vals[j]` for the keys from `k` to the end of its chunk or of `vals`, whichever comes
    /// first (the caller knows them all absent, the values not [`NONE`]), and returns how many: a run's
    /// entries written a chunk at a time. The chunk is created if need be and remembered.
    #[inline(always)]
    pub(crate) fn fill(&mut self, k: K, vals: &[u32]) -> usize {
        let (id, i) = k.split();
        let c = match self.chunk(&id) {
            Some(c) => c,
            None => self.new_chunk(id),
        };
        self.remember(c);
        self.wake(c);
        let ch = &mut self.chunks[c as usize];
        let m = (CHUNK - i).min(vals.len());
        let dst = &mut ch.pos[i..i + m];
        debug_assert!(dst.iter().all(|&v| v == NONE) && !vals[..m].contains(&NONE));
        dst.copy_from_slice(&vals[..m]);
        ch.used += m as u32;
        self.len += m;
        m
    }

    /// Removes the keys from `k` to the end of its chunk or the `m`-th key, whichever comes first (the caller
    /// knows them all present), and returns how many; a chunk left empty is freed.
    #[inline(always)]
    pub(crate) fn clear(&mut self, k: K, m: usize) -> usize {
        let (id, i) = k.split();
        let c = self.chunk(&id).expect("chunk of present keys");
        let ch = &mut self.chunks[c as usize];
        let m = (CHUNK - i).min(m);
        let run = &mut ch.pos[i..i + m];
        debug_assert!(!run.contains(&NONE));
        run.fill(NONE);
        ch.used -= m as u32;
        self.len -= m;
        if ch.used == 0 {
            self.retire(c);
        }
        m
    }

    /// Whether `k` can be added: `Ok` with its chunk if that exists, `Err` with the value `k` has.
    #[inline(always)]
    pub(crate) fn vacancy(&self, k: K) -> Result<Option<u32>, u32> {
        let (id, i) = k.split();
        match self.chunk(&id) {
            None => Ok(None),
            Some(c) => match self.chunks[c as usize].pos[i] {
                NONE => Ok(Some(c)),
                v => Err(v),
            },
        }
    }

    /// Adds `k` -> `v` where [`vacancy`](Self::vacancy) said `Ok(chunk)` (nothing changed since).
    #[inline(always)]
    pub(crate) fn insert_at(&mut self, chunk: Option<u32>, k: K, v: u32) {
        let (id, i) = k.split();
        let c = match chunk {
            Some(c) => c,
            None => self.new_chunk(id),
        };
        self.remember(c);
        self.wake(c);
        let ch = &mut self.chunks[c as usize];
        debug_assert!(ch.pos[i] == NONE && v != NONE);
        ch.pos[i] = v;
        ch.used += 1;
        self.len += 1;
    }

    /// Adds `k` -> `v`, unless `k` has a value: then `Err` with it (and nothing changed).
    #[inline(always)]
    pub(crate) fn try_insert(&mut self, k: K, v: u32) -> Result<(), u32> {
        let (id, i) = k.split();
        let c = match self.chunk(&id) {
            Some(c) => c,
            None => self.new_chunk(id),
        };
        self.remember(c);
        let ch = &mut self.chunks[c as usize];
        match ch.pos[i] {
            NONE => {
                if ch.used == 0 {
                    self.wake(c);
                }
                let ch = &mut self.chunks[c as usize];
                ch.pos[i] = v;
                ch.used += 1;
                self.len += 1;
                Ok(())
            }
            old => Err(old),
        }
    }

    // ----- cursors: a run's own memory of the chunk it works in ---------------------------------------------

    /// `k`'s chunk (if it exists) and place in it, trying the cursor's chunk first and remembering the chunk
    /// found in it. No hint is updated: a run keeps its chunks in its cursors (see [`Cursor`]).
    #[inline(always)]
    pub(crate) fn find_in(&self, cur: &mut Cursor<K::Id>, k: K) -> (Option<u32>, usize) {
        let (id, i) = k.split();
        if let Some((cid, c)) = cur.0 {
            if cid == id {
                return (Some(c), i);
            }
        }
        let c = self.chunk(&id);
        if let Some(c) = c {
            cur.0 = Some((id, c));
        }
        (c, i)
    }

    /// The value at place `i` of chunk `c` ([`NONE`] if the chunk does not exist).
    #[inline(always)]
    pub(crate) fn value_in(&self, c: Option<u32>, i: usize) -> u32 {
        match c {
            Some(c) => self.chunks[c as usize].pos[i],
            None => NONE,
        }
    }

    /// Adds `k` -> `v` where [`find_in`](Self::find_in) gave `(c, i)` and [`value_in`](Self::value_in)
    /// [`NONE`] (nothing changed since): creates the chunk if `c` is `None`, remembering it in the cursor.
    #[inline(always)]
    pub(crate) fn put_in(&mut self, cur: &mut Cursor<K::Id>, c: Option<u32>, k: K, v: u32) {
        let (id, i) = k.split();
        let c = match c {
            Some(c) => c,
            None => {
                let c = self.new_chunk(id);
                cur.0 = Some((id, c));
                c
            }
        };
        self.wake(c);
        let ch = &mut self.chunks[c as usize];
        debug_assert!(ch.id == id && ch.pos[i] == NONE && v != NONE);
        ch.pos[i] = v;
        ch.used += 1;
        self.len += 1;
    }

    /// Removes `k` and returns its value ([`NONE`] if it has none), finding its chunk through the cursor;
    /// a chunk left empty is freed (and forgotten by the cursor).
    #[inline(always)]
    pub(crate) fn take_in(&mut self, cur: &mut Cursor<K::Id>, k: K) -> u32 {
        let (Some(c), i) = self.find_in(cur, k) else {
            return NONE;
        };
        let ch = &mut self.chunks[c as usize];
        let v = core::mem::replace(&mut ch.pos[i], NONE);
        if v != NONE {
            ch.used -= 1;
            self.len -= 1;
            if ch.used == 0 {
                cur.0 = None;
                self.retire(c);
            }
        }
        v
    }

    /// Makes the cursor's chunk the most recent hint (for the single operations after a run).
    #[inline(always)]
    pub(crate) fn remember_cursor(&mut self, cur: &Cursor<K::Id>) {
        if let Some((_, c)) = cur.0 {
            self.remember(c);
        }
    }

    #[cold]
    fn new_chunk(&mut self, id: K::Id) -> u32 {
        let c = match self.free.pop() {
            Some(c) => {
                let ch = &mut self.chunks[c as usize];
                ch.id = id;
                ch.indexed = true;
                c
            }
            None => {
                let c = pos32(self.chunks.len());
                self.chunks.push(Chunk {
                    id,
                    used: 0,
                    indexed: true,
                    pos: [NONE; CHUNK],
                });
                c
            }
        };
        self.index.insert(id, c);
        c
    }

    /// Removes `k` and returns its value.
    #[inline(always)]
    pub(crate) fn remove(&mut self, k: K) -> Option<u32> {
        let (id, i) = k.split();
        let c = self.chunk_mut(&id)?;
        let ch = &mut self.chunks[c as usize];
        let v = core::mem::replace(&mut ch.pos[i], NONE);
        if v == NONE {
            return None;
        }
        ch.used -= 1;
        self.len -= 1;
        if ch.used == 0 {
            self.retire(c);
        }
        Some(v)
    }

    /// Chunk `c` (indexed) is about to get an entry: if it is idle, it is no longer.
    #[inline(always)]
    fn wake(&mut self, c: u32) {
        if self.chunks[c as usize].used == 0 {
            self.unidle(c);
        }
    }

    /// Takes the chunk `c` (indexed, empty) off the idle list, if it is there (a new chunk is not).
    #[inline(always)]
    fn unidle(&mut self, c: u32) {
        let n = usize::from(self.idle_len);
        if let Some(at) = self.idle[..n].iter().position(|&x| x == c) {
            self.idle.copy_within(at + 1..n, at);
            self.idle_len -= 1;
        }
    }

    /// Chunk `c` has just been left empty: it becomes idle, and the oldest idle chunk beyond [`IDLE`] is
    /// freed (a chunk no cursor names: a cursor's chunk has entries, or is forgotten when left empty).
    #[inline(always)]
    fn retire(&mut self, c: u32) {
        let n = usize::from(self.idle_len);
        if n == IDLE {
            let old = self.idle[0];
            self.idle.copy_within(1.., 0);
            self.idle[IDLE - 1] = c;
            self.free_chunk(old);
        } else {
            self.idle[n] = c;
            self.idle_len += 1;
        }
    }

    #[cold]
    fn free_chunk(&mut self, c: u32) {
        let ch = &mut self.chunks[c as usize];
        debug_assert!(ch.used == 0 && ch.indexed);
        ch.indexed = false;
        let id = ch.id;
        self.index.remove(&id);
        self.free.push(c);
    }

    /// Whether the chunks agree with the index and the counts: each indexed chunk is under its id in the
    /// index and counts its entries; an empty indexed chunk is idle (on the idle list, at most [`IDLE`], once
    /// each); the free list names the other chunks (empty); the counts add up to [`len`](Self::len).
    pub(crate) fn consistent(&self) -> bool {
        let idle = &self.idle[..usize::from(self.idle_len)];
        let mut total = 0;
        let mut indexed = 0;
        for (c, ch) in self.chunks.iter().enumerate() {
            let used = ch.pos.iter().filter(|&&v| v != NONE).count();
            if used != ch.used as usize {
                return false;
            }
            let is_idle = idle.contains(&(c as u32));
            if ch.indexed {
                indexed += 1;
                total += used;
                if self.index.get(&ch.id) != Some(&(c as u32)) || (used == 0) != is_idle {
                    return false;
                }
            } else if used != 0 || is_idle {
                return false;
            }
        }
        let mut free = self.free.clone();
        free.sort_unstable();
        free.dedup();
        let mut idle_sorted = idle.to_vec();
        idle_sorted.sort_unstable();
        idle_sorted.dedup();
        total == self.len
            && indexed == self.index.len()
            && idle_sorted.len() == idle.len()
            && free.len() == self.free.len()
            && indexed + free.len() == self.chunks.len()
            && free.iter().all(|&c| !self.chunks[c as usize].indexed)
    }

    /// Heap bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        map_bytes(&self.index) + self.chunks.capacity() * size_of::<Chunk<K::Id>>() + self.free.capacity() * 4
    }
}

/// Bytes of one chunk of a map of `K`: its bucket in the hash index and the chunk.
pub(crate) const fn chunk_bytes<K: Dense>() -> usize {
    bucket_bytes::<(K::Id, u32)>() + size_of::<Chunk<K::Id>>()
}
