//! A host model of seL4 5.0's x86_64 paging invocations, for tests (this crate's, and others' with the
//! `mock` feature).
//!
//! It keeps real objects: PML4s with ASIDs, PDPTs, PDs and PTs holding 512-entry tables (sparse), and frame
//! caps (several caps may name one frame, as `CNode_Copy` makes them). Each invocation follows the checks of
//! the 5.0 kernel source (`src/arch/x86/kernel/vspace.c`, `src/arch/x86/64/kernel/vspace.c`) in their order:
//!
//! - `Page_Map`: `InvalidCapability` if the cap is mapped already (a frame cap maps once) or the root has no
//!   ASID; `InvalidArgument` past the user top; `AlignmentError`; `FailedLookup` if a table level above the
//!   entry is missing (or is a large page); `DeleteFirst` if the entry is present (a frame, or for a large
//!   page a table).
//! - `Page_Remap`: `IllegalOperation` if the cap is not mapped; `InvalidCapability` if it is mapped in
//!   another VSpace; `FailedLookup`; `DeleteFirst` for a large page whose entry holds a table.
//! - `Page_Unmap`: clears the entry only if it still holds this frame; succeeds if the cap is not mapped.
//! - `PDPT/PageDirectory/PageTable_Map`: `InvalidCapability` if the table is mapped already; the address is
//!   masked to the table's span; `FailedLookup`; `DeleteFirst` if the parent's entry is present.
//! - `*_Unmap` of a table: clears the parent's entry if it still points to the table, then clears the
//!   table, dropping its subtree (the caps of what was below keep their now stale mapping records).
//! - Deleting a frame cap ([`MockKernel::delete_frame_cap`]) that is mapped but not the frame's last cap
//!   leaves the entry in place: the 5.0 behaviour that makes "unmap before delete" mandatory.
//!
//! Checks that seL4 leaves to the cap types (a PD cap passed as a PT, a 4 KiB frame as a 2 MiB one) are
//! refused with `InvalidCapability` / `InvalidArgument`. The user top is `2^47` (the real kernel's is
//! higher). Crate bugs (freeing a mapped table, a run naming the wrong leaf table) panic.
//!
//! Failure injection: [`MockKernel::fail_call`] makes the n-th fallible call from now fail with a given
//! error before it changes anything (run calls count one call per page). [`MockKernel::set_table_budget`]
//! makes table allocation run out of memory.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::addr::{FrameSize, TableLevel, VirtAddr, PML4_ENTRY_BITS};
use crate::attr::{CacheAttr, Rights};
use crate::kernel::{CapRef, KernelFailure, LeafRun, RunFailure, VSpaceKernel};

/// The mock's user top: mappings must end at or below it.
pub const MOCK_USER_TOP: u64 = 1 << 47;

/// An entry of a mock paging structure. Like the hardware's, it holds a physical address, not a cap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Entry {
    Table(CapRef),
    Frame {
        paddr: u64,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    },
}

/// A mapping record in a cap: the ASID and address (seL4's `capFMappedASID`/`capFMappedAddress`).
type MappedAt = Option<(u32, u64)>;

#[derive(Clone, Debug)]
enum Obj {
    Root {
        asid: Option<u32>,
        entries: BTreeMap<u16, Entry>,
    },
    Table {
        level: TableLevel,
        mapped: MappedAt,
        entries: BTreeMap<u16, Entry>,
    },
    Frame {
        paddr: u64,
        size: FrameSize,
        mapped: MappedAt,
    },
}

/// What a thread of a VSpace sees at an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// The physical address the virtual address reaches.
    pub paddr: u64,
    /// The start of the mapped page.
    pub page_vaddr: u64,
    /// The physical address of the frame.
    pub frame_paddr: u64,
    /// The page's size.
    pub size: FrameSize,
    /// The effective rights (the kernel's `maskVMRights`: read-write, read-only, or none).
    pub rights: Rights,
    /// The cache attribute.
    pub attr: CacheAttr,
}

/// Counters of a [`MockKernel`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MockStats {
    /// Fallible calls made (the index [`MockKernel::fail_call`] counts in).
    pub calls: u64,
    /// Tables allocated per level.
    pub tables_allocated: [usize; 3],
    /// Tables freed per level.
    pub tables_freed: [usize; 3],
    /// Roots allocated.
    pub roots_allocated: usize,
    /// Roots freed.
    pub roots_freed: usize,
    /// `map_frames_run` calls.
    pub map_runs: usize,
    /// `remap_frames_run` calls.
    pub remap_runs: usize,
    /// `unmap_frames_run` calls.
    pub unmap_runs: usize,
}

/// The model kernel. See the module documentation.
#[derive(Clone, Debug)]
pub struct MockKernel {
    objs: BTreeMap<CapRef, Obj>,
    asids: BTreeMap<u32, CapRef>,
    next_cap: u64,
    next_paddr: u64,
    asid_limit: u32,
    table_budget: Option<usize>,
    inject: BTreeMap<u64, KernelFailure>,
    stats: MockStats,
}

impl Default for MockKernel {
    fn default() -> Self {
        Self::new()
    }
}

/// Index of `vaddr`'s entry in a table of `level` (`None`: the PML4).
fn index_in(level: Option<TableLevel>, vaddr: u64) -> u16 {
    match level {
        None => ((vaddr >> PML4_ENTRY_BITS) & 511) as u16,
        Some(l) => l.index_of(vaddr),
    }
}

/// The kernel's `maskVMRights` with a full-rights cap: read-write, read-only, or kernel-only (none).
fn effective(rights: Rights) -> Rights {
    if rights.contains(Rights::READ_WRITE) {
        Rights::READ_WRITE
    } else if rights.contains(Rights::READ) {
        Rights::READ
    } else {
        Rights::empty()
    }
}

impl MockKernel {
    /// An empty kernel with 1024 ASIDs and unlimited memory.
    pub fn new() -> Self {
        Self {
            objs: BTreeMap::new(),
            asids: BTreeMap::new(),
            next_cap: 0x100,
            next_paddr: 1 << 32,
            asid_limit: 1024,
            table_budget: None,
            inject: BTreeMap::new(),
            stats: MockStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> MockStats {
        self.stats
    }

    /// Makes the fallible call `n` calls from now (0: the next one) fail with `failure`, changing nothing.
    pub fn fail_call(&mut self, n: u64, failure: KernelFailure) {
        self.inject.insert(self.stats.calls + n, failure);
    }

    /// Drops every injected failure not yet reached.
    pub fn clear_injections(&mut self) {
        self.inject.clear();
    }

    /// Injected failures not yet reached.
    pub fn pending_injections(&self) -> usize {
        self.inject.len()
    }

    /// Limits the number of live paging structures (below the roots); `None`: unlimited.
    pub fn set_table_budget(&mut self, budget: Option<usize>) {
        self.table_budget = budget;
    }

    /// Limits the number of ASIDs.
    pub fn set_asid_limit(&mut self, limit: u32) {
        self.asid_limit = limit;
    }

    fn new_cap(&mut self, obj: Obj) -> CapRef {
        let cap = CapRef(self.next_cap);
        self.next_cap += 1;
        self.objs.insert(cap, obj);
        cap
    }

    /// Retypes a new frame of `size` and returns its (original) cap.
    pub fn new_frame(&mut self, size: FrameSize) -> CapRef {
        let paddr = size.align_down(self.next_paddr + size.bytes() - 1);
        self.next_paddr = paddr + size.bytes();
        self.new_cap(Obj::Frame {
            paddr,
            size,
            mapped: None,
        })
    }

    /// `CNode_Copy` of a frame cap: a new, unmapped cap to the same frame.
    ///
    /// # Panics
    /// If `frame` is not a frame cap.
    pub fn copy_cap(&mut self, frame: CapRef) -> CapRef {
        let Some(&Obj::Frame { paddr, size, .. }) = self.objs.get(&frame) else {
            panic!("copy_cap: not a frame")
        };
        self.new_cap(Obj::Frame {
            paddr,
            size,
            mapped: None,
        })
    }

    /// `CNode_Delete` of a frame cap, with seL4 5.0's behaviour: if the cap is mapped and other caps to the
    /// frame remain, the entry stays in place; if it is the frame's last cap, the mapping is removed.
    ///
    /// # Panics
    /// If `frame` is not a frame cap.
    pub fn delete_frame_cap(&mut self, frame: CapRef) {
        let Some(&Obj::Frame { paddr, .. }) = self.objs.get(&frame) else {
            panic!("delete_frame_cap: not a frame")
        };
        let others = self
            .objs
            .iter()
            .any(|(&c, o)| c != frame && matches!(o, Obj::Frame { paddr: p, .. } if *p == paddr));
        if !others {
            self.do_unmap_frame(frame);
        }
        self.objs.remove(&frame);
    }

    /// The physical address of a frame cap's frame.
    pub fn frame_paddr(&self, frame: CapRef) -> Option<u64> {
        match self.objs.get(&frame) {
            Some(Obj::Frame { paddr, .. }) => Some(*paddr),
            _ => None,
        }
    }

    /// Whether the frame cap records a mapping (seL4: `capFMappedASID != asidInvalid`), even a stale one.
    pub fn is_mapped(&self, frame: CapRef) -> bool {
        matches!(self.objs.get(&frame), Some(Obj::Frame { mapped: Some(_), .. }))
    }

    /// Every frame cap that records a mapping, ascending.
    pub fn mapped_frame_caps(&self) -> Vec<CapRef> {
        self.objs
            .iter()
            .filter(|(_, o)| matches!(o, Obj::Frame { mapped: Some(_), .. }))
            .map(|(&c, _)| c)
            .collect()
    }

    /// Live paging structures per level (indexed by [`TableLevel::ordinal`]), mapped or not.
    pub fn live_tables(&self) -> [usize; 3] {
        let mut n = [0; 3];
        for o in self.objs.values() {
            if let Obj::Table { level, .. } = o {
                n[level.ordinal()] += 1;
            }
        }
        n
    }

    /// Live roots.
    pub fn live_roots(&self) -> usize {
        self.objs.values().filter(|o| matches!(o, Obj::Root { .. })).count()
    }

    fn entries(&self, cap: CapRef) -> &BTreeMap<u16, Entry> {
        match self.objs.get(&cap) {
            Some(Obj::Root { entries, .. }) | Some(Obj::Table { entries, .. }) => entries,
            _ => panic!("mock: {cap:?} is not a paging structure"),
        }
    }

    fn entries_mut(&mut self, cap: CapRef) -> &mut BTreeMap<u16, Entry> {
        match self.objs.get_mut(&cap) {
            Some(Obj::Root { entries, .. }) | Some(Obj::Table { entries, .. }) => entries,
            _ => panic!("mock: {cap:?} is not a paging structure"),
        }
    }

    /// The structure holding `vaddr`'s entry at `level` (`None`: the PML4), walking down from `root`.
    fn container(&self, root: CapRef, vaddr: u64, level: Option<TableLevel>) -> Result<CapRef, KernelFailure> {
        let mut cur = root;
        let mut at: Option<TableLevel> = None;
        while at != level {
            match self.entries(cur).get(&index_in(at, vaddr)) {
                Some(Entry::Table(c)) => cur = *c,
                _ => return Err(KernelFailure::FailedLookup),
            }
            at = Some(match at {
                None => TableLevel::Pdpt,
                Some(l) => l.child().expect("walk below a PT"),
            });
        }
        Ok(cur)
    }

    /// Counts a fallible call; fails it if a failure was injected for it.
    fn gate(&mut self) -> Result<(), KernelFailure> {
        let n = self.stats.calls;
        self.stats.calls += 1;
        match self.inject.remove(&n) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// `isValidNativeRoot` plus `findVSpaceForASID`: the root's ASID.
    fn valid_root(&self, root: CapRef) -> Result<u32, KernelFailure> {
        match self.objs.get(&root) {
            Some(Obj::Root { asid: Some(a), .. }) => Ok(*a),
            _ => Err(KernelFailure::InvalidCapability),
        }
    }

    /// What a thread of `root` sees at `vaddr`.
    pub fn translate(&self, root: CapRef, vaddr: u64) -> Option<Translation> {
        let mut cur = root;
        let mut at: Option<TableLevel> = None;
        loop {
            match *self.entries(cur).get(&index_in(at, vaddr))? {
                Entry::Table(c) => {
                    cur = c;
                    at = Some(match at {
                        None => TableLevel::Pdpt,
                        Some(l) => l.child()?,
                    });
                }
                Entry::Frame {
                    paddr,
                    size,
                    rights,
                    attr,
                } => {
                    let page_vaddr = size.align_down(vaddr);
                    return Some(Translation {
                        paddr: paddr + (vaddr - page_vaddr),
                        page_vaddr,
                        frame_paddr: paddr,
                        size,
                        rights,
                        attr,
                    });
                }
            }
        }
    }

    /// Every page mapped in `root`'s tree, ascending by address.
    pub fn mappings_in(&self, root: CapRef) -> Vec<Translation> {
        let mut out = Vec::new();
        self.walk(root, None, 0, &mut |v, e| {
            if let Entry::Frame {
                paddr,
                size,
                rights,
                attr,
            } = e
            {
                out.push(Translation {
                    paddr,
                    page_vaddr: v,
                    frame_paddr: paddr,
                    size,
                    rights,
                    attr,
                });
            }
        });
        out
    }

    /// The table installed in `root`'s tree for the region of `level` at `base`.
    pub fn table_at(&self, root: CapRef, level: TableLevel, base: u64) -> Option<CapRef> {
        let c = self.container(root, base, level.parent()).ok()?;
        match self.entries(c).get(&index_in(level.parent(), base)) {
            Some(Entry::Table(t)) => Some(*t),
            _ => None,
        }
    }

    /// Paging structures reachable from `root`, per level.
    pub fn tables_in(&self, root: CapRef) -> [usize; 3] {
        let mut n = [0; 3];
        self.walk(root, None, 0, &mut |_, e| {
            if let Entry::Table(c) = e {
                if let Some(Obj::Table { level, .. }) = self.objs.get(&c) {
                    n[level.ordinal()] += 1;
                }
            }
        });
        n
    }

    fn walk(&self, table: CapRef, level: Option<TableLevel>, base: u64, f: &mut dyn FnMut(u64, Entry)) {
        let entry_bits = level.map_or(PML4_ENTRY_BITS, |l| l.entry_bits());
        for (&i, &e) in self.entries(table) {
            let v = base + ((i as u64) << entry_bits);
            f(v, e);
            if let Entry::Table(c) = e {
                let child = match level {
                    None => TableLevel::Pdpt,
                    Some(l) => l.child().expect("table below a PT"),
                };
                self.walk(c, Some(child), v, f);
            }
        }
    }

    /// Removes a frame cap's mapping, as `unmapPage` does: only if the entry still holds this frame.
    fn do_unmap_frame(&mut self, frame: CapRef) {
        let Some(&Obj::Frame { paddr, size, mapped }) = self.objs.get(&frame) else {
            return;
        };
        if let Some((asid, vaddr)) = mapped {
            if let Some(&root) = self.asids.get(&asid) {
                if let Ok(c) = self.container(root, vaddr, Some(size.level())) {
                    let idx = size.level().index_of(vaddr);
                    let entries = self.entries_mut(c);
                    if matches!(entries.get(&idx), Some(Entry::Frame { paddr: p, size: s, .. }) if *p == paddr && *s == size)
                    {
                        entries.remove(&idx);
                    }
                }
            }
        }
        if let Some(Obj::Frame { mapped, .. }) = self.objs.get_mut(&frame) {
            *mapped = None;
        }
    }

    /// Removes a table from its parent (if the entry still points to it); `clear` empties it as well.
    fn do_unmap_table(&mut self, table: CapRef, clear: bool) {
        let Some(&Obj::Table { level, mapped, .. }) = self.objs.get(&table) else {
            return;
        };
        if let Some((asid, vaddr)) = mapped {
            if let Some(&root) = self.asids.get(&asid) {
                if let Ok(c) = self.container(root, vaddr, level.parent()) {
                    let idx = index_in(level.parent(), vaddr);
                    let entries = self.entries_mut(c);
                    if entries.get(&idx) == Some(&Entry::Table(table)) {
                        entries.remove(&idx);
                    }
                }
            }
            if clear {
                self.entries_mut(table).clear();
            }
        }
        if let Some(Obj::Table { mapped, .. }) = self.objs.get_mut(&table) {
            *mapped = None;
        }
    }

    /// Checks that `run.table` is the structure holding the entries of the run's pages.
    fn assert_run(&self, root: CapRef, run: &LeafRun, n: usize) {
        for i in 0..n {
            let v = run.vaddr_of(i).as_u64();
            let c = self.container(root, v, Some(run.level));
            assert_eq!(c, Ok(run.table), "run names the wrong leaf table for {v:#x}");
            assert_eq!(
                run.level.index_of(v),
                run.first_index + i as u16,
                "run index wrong for {v:#x}"
            );
            assert_eq!(run.size.level(), run.level, "run level does not match its size");
        }
    }

    /// The root a frame cap is mapped in, if its ASID still resolves.
    fn root_of_frame(&self, frame: CapRef) -> Option<CapRef> {
        match self.objs.get(&frame) {
            Some(Obj::Frame {
                mapped: Some((asid, _)),
                ..
            }) => self.asids.get(asid).copied(),
            _ => None,
        }
    }
}

impl VSpaceKernel for MockKernel {
    fn alloc_root(&mut self) -> Result<CapRef, KernelFailure> {
        self.gate()?;
        self.stats.roots_allocated += 1;
        Ok(self.new_cap(Obj::Root {
            asid: None,
            entries: BTreeMap::new(),
        }))
    }

    fn assign_asid(&mut self, root: CapRef) -> Result<(), KernelFailure> {
        self.gate()?;
        match self.objs.get(&root) {
            Some(Obj::Root { asid: None, .. }) => {}
            _ => return Err(KernelFailure::InvalidCapability),
        }
        let asid = (1..=self.asid_limit)
            .find(|a| !self.asids.contains_key(a))
            .ok_or(KernelFailure::DeleteFirst)?;
        self.asids.insert(asid, root);
        if let Some(Obj::Root { asid: a, .. }) = self.objs.get_mut(&root) {
            *a = Some(asid);
        }
        Ok(())
    }

    fn free_root(&mut self, root: CapRef) {
        let Some(Obj::Root { asid, .. }) = self.objs.remove(&root) else {
            panic!("free_root: not a root")
        };
        if let Some(a) = asid {
            self.asids.remove(&a);
        }
        self.stats.roots_freed += 1;
    }

    fn alloc_table(&mut self, level: TableLevel) -> Result<CapRef, KernelFailure> {
        self.gate()?;
        if self
            .table_budget
            .is_some_and(|b| self.live_tables().iter().sum::<usize>() >= b)
        {
            return Err(KernelFailure::NotEnoughMemory);
        }
        self.stats.tables_allocated[level.ordinal()] += 1;
        Ok(self.new_cap(Obj::Table {
            level,
            mapped: None,
            entries: BTreeMap::new(),
        }))
    }

    fn free_table(&mut self, level: TableLevel, table: CapRef) {
        match self.objs.get(&table) {
            Some(Obj::Table { level: l, mapped, .. }) => {
                assert_eq!(*l, level, "free_table: wrong level");
                assert!(mapped.is_none(), "free_table: {table:?} is still mapped");
            }
            _ => panic!("free_table: {table:?} is not a table"),
        }
        self.objs.remove(&table);
        self.stats.tables_freed[level.ordinal()] += 1;
    }

    fn map_table(
        &mut self,
        level: TableLevel,
        table: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
    ) -> Result<(), KernelFailure> {
        self.gate()?;
        match self.objs.get(&table) {
            Some(Obj::Table {
                level: l, mapped: None, ..
            }) if *l == level => {}
            _ => return Err(KernelFailure::InvalidCapability),
        }
        let asid = self.valid_root(root)?;
        let v = level.base_of(vaddr.as_u64());
        if v >= MOCK_USER_TOP {
            return Err(KernelFailure::InvalidArgument);
        }
        let c = self.container(root, v, level.parent())?;
        let idx = index_in(level.parent(), v);
        if self.entries(c).contains_key(&idx) {
            return Err(KernelFailure::DeleteFirst);
        }
        self.entries_mut(c).insert(idx, Entry::Table(table));
        if let Some(Obj::Table { mapped, .. }) = self.objs.get_mut(&table) {
            *mapped = Some((asid, v));
        }
        Ok(())
    }

    fn unmap_table(&mut self, level: TableLevel, table: CapRef) -> Result<(), KernelFailure> {
        self.gate()?;
        match self.objs.get(&table) {
            Some(Obj::Table { level: l, .. }) if *l == level => {}
            _ => return Err(KernelFailure::InvalidCapability),
        }
        self.do_unmap_table(table, true);
        Ok(())
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        vaddr: VirtAddr,
        size: FrameSize,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.gate()?;
        let Some(&Obj::Frame {
            paddr,
            size: fsize,
            mapped,
        }) = self.objs.get(&frame)
        else {
            return Err(KernelFailure::InvalidCapability);
        };
        if fsize != size {
            return Err(KernelFailure::InvalidArgument);
        }
        if mapped.is_some() {
            return Err(KernelFailure::InvalidCapability);
        }
        let asid = self.valid_root(root)?;
        let v = vaddr.as_u64();
        if v.checked_add(size.bytes()).is_none_or(|e| e > MOCK_USER_TOP) {
            return Err(KernelFailure::InvalidArgument);
        }
        if !size.is_aligned(v) {
            return Err(KernelFailure::AlignmentError);
        }
        let c = self.container(root, v, Some(size.level()))?;
        let idx = size.level().index_of(v);
        if self.entries(c).contains_key(&idx) {
            return Err(KernelFailure::DeleteFirst);
        }
        self.entries_mut(c).insert(
            idx,
            Entry::Frame {
                paddr,
                size,
                rights: effective(rights),
                attr,
            },
        );
        if let Some(Obj::Frame { mapped, .. }) = self.objs.get_mut(&frame) {
            *mapped = Some((asid, v));
        }
        Ok(())
    }

    fn remap_frame(
        &mut self,
        frame: CapRef,
        root: CapRef,
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), KernelFailure> {
        self.gate()?;
        let Some(&Obj::Frame { paddr, size, mapped }) = self.objs.get(&frame) else {
            return Err(KernelFailure::InvalidCapability);
        };
        let Some((fasid, v)) = mapped else {
            return Err(KernelFailure::IllegalOperation);
        };
        let asid = self.valid_root(root)?;
        if fasid != asid {
            return Err(KernelFailure::InvalidCapability);
        }
        let c = self.container(root, v, Some(size.level()))?;
        let idx = size.level().index_of(v);
        if size != FrameSize::Small && matches!(self.entries(c).get(&idx), Some(Entry::Table(_))) {
            return Err(KernelFailure::DeleteFirst);
        }
        self.entries_mut(c).insert(
            idx,
            Entry::Frame {
                paddr,
                size,
                rights: effective(rights),
                attr,
            },
        );
        Ok(())
    }

    fn unmap_frame(&mut self, frame: CapRef) -> Result<(), KernelFailure> {
        self.gate()?;
        if !matches!(self.objs.get(&frame), Some(Obj::Frame { .. })) {
            return Err(KernelFailure::InvalidCapability);
        }
        self.do_unmap_frame(frame);
        Ok(())
    }

    fn map_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        self.stats.map_runs += 1;
        self.assert_run(root, run, frames.len());
        for (i, &frame) in frames.iter().enumerate() {
            self.map_frame(frame, root, run.vaddr_of(i), run.size, rights, attr)
                .map_err(|failure| RunFailure { done: i, failure })?;
        }
        Ok(())
    }

    fn remap_frames_run(
        &mut self,
        root: CapRef,
        run: &LeafRun,
        frames: &[CapRef],
        rights: Rights,
        attr: CacheAttr,
    ) -> Result<(), RunFailure> {
        self.stats.remap_runs += 1;
        self.assert_run(root, run, frames.len());
        for (i, &frame) in frames.iter().enumerate() {
            self.remap_frame(frame, root, rights, attr)
                .map_err(|failure| RunFailure { done: i, failure })?;
        }
        Ok(())
    }

    fn unmap_frames_run(&mut self, run: &LeafRun, frames: &[CapRef]) -> Result<(), RunFailure> {
        self.stats.unmap_runs += 1;
        if let Some(root) = frames.first().and_then(|&f| self.root_of_frame(f)) {
            self.assert_run(root, run, frames.len());
        }
        for (i, &frame) in frames.iter().enumerate() {
            self.unmap_frame(frame)
                .map_err(|failure| RunFailure { done: i, failure })?;
        }
        Ok(())
    }
}
