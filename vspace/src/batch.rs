//! [`MapBatch`]: maps collected first, checked against the shadow, then dispatched per leaf-table run.

use alloc::vec::Vec;

use hashbrown::{HashMap, HashSet};

use crate::addr::{FrameSize, PageRange, PageSize, TableLevel, VirtAddr};
use crate::attr::{CacheAttr, Rights};
use crate::error::{MapError, Rollback};
use crate::kernel::{CapRef, KernelFailure, KernelOp, VSpaceKernel};
use crate::shadow::{FrameRec, TableKey};
use crate::space::{in_user_range, AddressSpace};

/// A page a batch will map.
#[derive(Clone, Copy, Debug)]
struct Planned {
    vaddr: u64,
    rec: FrameRec,
}

/// Maps collected by [`MapBatch::add`] and dispatched together by [`MapBatch::commit`] (the flush-token
/// pattern: nothing reaches the kernel until `commit`, and dropping the batch maps nothing).
///
/// Each `add` is checked at once, against the shadow and the pages added before it, so every refusal comes
/// before any kernel call. `commit` then allocates and maps the missing tables (parents first) and maps the
/// pages with one [`VSpaceKernel::map_frames_run`] call per run of consecutive entries in one leaf table
/// with the same rights and attribute. The whole batch is all or nothing.
#[must_use = "a MapBatch maps nothing until `commit`"]
pub struct MapBatch<'a> {
    space: &'a mut AddressSpace,
    pages: Vec<Planned>,
    /// Page start -> size, of `pages`.
    page_index: HashMap<u64, FrameSize>,
    caps: HashSet<CapRef>,
    /// Missing tables, parents before children.
    new_tables: Vec<TableKey>,
    table_index: HashSet<TableKey>,
}

impl<'a> MapBatch<'a> {
    pub(crate) fn new(space: &'a mut AddressSpace) -> Self {
        Self {
            space,
            pages: Vec::new(),
            page_index: HashMap::new(),
            caps: HashSet::new(),
            new_tables: Vec::new(),
            table_index: HashSet::new(),
        }
    }

    /// Pages added so far.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Paging structures `commit` will allocate.
    pub fn tables_needed(&self) -> usize {
        self.new_tables.len()
    }

    /// Adds the map of `frames[i]` at the `i`-th page of `range`. On a refusal the batch is unchanged.
    pub fn add<S: PageSize>(
        &mut self,
        range: PageRange<S>,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), MapError> {
        if range.is_empty() {
            return Err(MapError::EmptyRange);
        }
        if !rights.is_valid() {
            return Err(MapError::WriteWithoutRead);
        }
        if range.len() != frames.len() as u64 {
            return Err(MapError::FrameCountMismatch {
                pages: range.len(),
                frames: frames.len(),
            });
        }
        let (start, end) = range.bounds();
        if !in_user_range(start, end) {
            return Err(MapError::OutsideUserRange { start, end });
        }
        let mut new_caps = HashSet::with_capacity(frames.len());
        let mut new_tables = Vec::new();
        let mut new_table_set = HashSet::new();
        for (page, &cap) in range.iter().zip(frames) {
            let v = page.start_address();
            if self.occupied(v, S::FRAME) {
                return Err(MapError::Overlap {
                    vaddr: VirtAddr::new_unchecked(v),
                });
            }
            if self.space.shadow.by_cap.contains_key(&cap) || self.caps.contains(&cap) || !new_caps.insert(cap) {
                return Err(MapError::FrameAlreadyMapped { frame: cap });
            }
            for level in TableLevel::ALL.into_iter().filter(|&l| l <= S::LEVEL) {
                let key = (level, level.base_of(v));
                if self.space.shadow.table(key.0, key.1).is_none()
                    && !self.table_index.contains(&key)
                    && new_table_set.insert(key)
                {
                    new_tables.push(key);
                }
            }
        }
        for (page, &cap) in range.iter().zip(frames) {
            let v = page.start_address();
            self.pages.push(Planned {
                vaddr: v,
                rec: FrameRec {
                    cap,
                    size: S::FRAME,
                    rights,
                    attr,
                },
            });
            self.page_index.insert(v, S::FRAME);
        }
        self.caps.extend(new_caps);
        self.table_index.extend(new_tables.iter().copied());
        self.new_tables.extend(new_tables);
        Ok(())
    }

    /// Whether a page of `size` at `v` would overlap a mapping of the space or of the batch.
    fn occupied(&self, v: u64, size: FrameSize) -> bool {
        let sh = &self.space.shadow;
        if sh.frames.contains_key(&v) || self.page_index.contains_key(&v) {
            return true;
        }
        let larger = FrameSize::ALL.into_iter().filter(|&l| l > size).any(|l| {
            let b = l.align_down(v);
            sh.frame_of_size(b, l).is_some() || self.page_index.get(&b) == Some(&l)
        });
        if larger {
            return true;
        }
        // Smaller pages inside: exactly when a table of the level below has the page's start as base.
        size.level()
            .child()
            .is_some_and(|c| sh.table(c, v).is_some() || self.table_index.contains(&(c, v)))
    }

    /// Maps everything added, all or nothing. On a kernel failure every call made is undone (frames
    /// unmapped, tables unmapped and freed) and the error says whether the undo was complete.
    pub fn commit<K: VSpaceKernel + ?Sized>(self, k: &mut K) -> Result<(), MapError> {
        let MapBatch {
            space,
            mut pages,
            new_tables,
            ..
        } = self;
        let root = space.root();
        let mut created: Vec<TableKey> = Vec::with_capacity(new_tables.len());
        for (level, base) in new_tables {
            let cap = match k.alloc_table(level) {
                Ok(cap) => cap,
                Err(failure) => {
                    let rollback = undo_map(space, k, &[], &created);
                    return Err(MapError::OutOfMemory {
                        level,
                        failure,
                        rollback,
                    });
                }
            };
            if let Err(failure) = k.map_table(level, cap, root, VirtAddr::new_unchecked(base)) {
                k.free_table(level, cap);
                let rollback = undo_map(space, k, &[], &created);
                return Err(MapError::Kernel {
                    op: KernelOp::MapTable,
                    vaddr: VirtAddr::new_unchecked(base),
                    failure,
                    rollback,
                });
            }
            space.shadow.insert_table(level, base, cap);
            created.push((level, base));
        }
        pages.sort_unstable_by_key(|p| p.vaddr);
        let vaddrs: Vec<u64> = pages.iter().map(|p| p.vaddr).collect();
        let runs = {
            let by_vaddr: HashMap<u64, FrameRec> = pages.iter().map(|p| (p.vaddr, p.rec)).collect();
            space.runs_with(
                &vaddrs,
                |v| (by_vaddr[&v].size, by_vaddr[&v].rights, by_vaddr[&v].attr),
                true,
            )
        };
        for (run, s, n) in runs {
            let caps: Vec<CapRef> = pages[s..s + n].iter().map(|p| p.rec.cap).collect();
            let first = pages[s].rec;
            let res = k.map_frames_run(root, &run, &caps, first.rights, first.attr);
            let done = match res {
                Ok(()) => n,
                Err(e) => e.done,
            };
            for p in &pages[s..s + done] {
                space.shadow.insert_frame(p.vaddr, p.rec);
            }
            if let Err(e) = res {
                let rollback = undo_map(space, k, &vaddrs[..s + done], &created);
                return Err(MapError::Kernel {
                    op: KernelOp::MapFrame,
                    vaddr: run.vaddr_of(e.done),
                    failure: e.failure,
                    rollback,
                });
            }
        }
        Ok(())
    }

    /// Drops the batch: nothing was mapped.
    pub fn cancel(self) {}
}

/// Undoes a failed commit: unmaps the frames it mapped (`mapped`, ascending) and reclaims the tables it
/// created, and only those.
fn undo_map<K: VSpaceKernel + ?Sized>(
    space: &mut AddressSpace,
    k: &mut K,
    mapped: &[u64],
    created: &[TableKey],
) -> Rollback {
    let out = space.unmap_pages(k, mapped);
    let only: HashSet<TableKey> = created.iter().copied().collect();
    let (_, table_failure) = space.reclaim_pass(k, created.iter().copied().chain(out.emptied), Some(&only));
    let tables_kept = created
        .iter()
        .filter(|&&(l, b)| space.shadow.table(l, b).is_some())
        .count();
    let failure: Option<KernelFailure> = out.failures.first().map(|&(_, f)| f).or(table_failure);
    match failure {
        None => {
            debug_assert_eq!(tables_kept, 0, "a table stays only if an unmap was refused");
            Rollback::Complete
        }
        Some(failure) => Rollback::Incomplete {
            failure,
            residue: out
                .failures
                .iter()
                .map(|&(v, _)| (VirtAddr::new_unchecked(v), space.shadow.frames[&v].cap))
                .collect(),
            tables_kept,
        },
    }
}
