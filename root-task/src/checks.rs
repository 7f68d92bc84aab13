//! Self-checks on the real kernel, and the primitive-operation benchmark.
//!
//! Each check reports one `check` record; a check that cannot run because an
//! earlier step failed reports failure too (never silently skipped).

use crate::bench::{self, Measurement};
use crate::objects::{slot, Objects, PAGE};
use crate::threads;
use alloc::format;
use alloc::vec::Vec;
use sel4::{cap, init, CPtr, CapData, CapRights, Error, MessageInfo, Word};
use sel4_root_task::Verdict;

/// Where the sharing check maps its frame twice.
const SHARE_VADDR_A: Word = 0x2000_0000;
const SHARE_VADDR_B: Word = 0x2000_1000;

/// The helper threads' priority (the root task runs at the maximum).
const HELPER_PRIO: u8 = 200;
/// The echo server runs at the root task's own priority (the maximum): the
/// kernel's IPC fastpath only switches to a receiver of equal or higher
/// priority, so a lower one would measure the slow path.
const SERVER_PRIO: u8 = sel4::layout::MaxPrio as u8;

/// State the benchmarks reuse.
pub struct Fixture {
    echo_ep: cap::Endpoint,
    frame: cap::Frame,
}

static mut FIXTURE: Option<Fixture> = None;

/// Runs every check.
pub fn run(bi: &sel4::BootInfo, objs: &mut Objects, v: &mut Verdict) {
    v.check(
        "bootinfo.nodes",
        bi.num_nodes as usize == sel4_config::MAX_NUM_NODES,
        &format!(
            "numNodes {} (kernel built for {})",
            { bi.num_nodes },
            sel4_config::MAX_NUM_NODES
        ),
    );
    v.check(
        "bootinfo.layout",
        bi.init_thread_cnode_size_bits as usize == sel4_config::ROOT_CNODE_SIZE_BITS
            && !bi.empty.is_empty()
            && bi.untyped_descs().iter().any(|u| !u.device()),
        &format!(
            "root CNode 2^{} slots, {} empty, {} untypeds",
            bi.init_thread_cnode_size_bits,
            bi.empty.len(),
            bi.untyped_descs().len()
        ),
    );

    // Retype one object of each kind the checks need.
    let retyped = retype_all(objs);
    let Some((ep, ntfn, frame)) = v.check_result("retype.objects", retyped) else {
        return;
    };
    let _ = ntfn;

    // The frame's physical address lies inside the untyped it came from.
    let paddr = frame.x86_page_get_address();
    let inside = matches!(paddr, Ok(p) if p >= objs.untyped_paddr && p + PAGE <= objs.untyped_paddr + objs.untyped_bytes && p % PAGE == 0);
    v.check(
        "frame.get_address",
        inside,
        &format!("{paddr:?} in untyped at {:#x}", objs.untyped_paddr),
    );
    let Ok(paddr) = paddr else { return };

    // CNode_Copy: the copy names the same frame.
    let copy_slot = objs.slot();
    let copied = cnode_copy(copy_slot, frame.cptr().0, CapRights::READ_WRITE);
    let copy: cap::Frame = cap::Frame::from_bits(copy_slot);
    let same = copied.and_then(|_| copy.x86_page_get_address());
    v.check(
        "cnode.copy",
        same == Ok(paddr),
        &format!("copy's address {same:?}, original {paddr:#x}"),
    );

    // Sharing: the frame and its copy mapped at two addresses; a write
    // through one is read through the other.
    let shared = share(objs, frame, copy);
    v.check(
        "map.shared_frame",
        shared == Ok(share_pattern()),
        &format!("{shared:x?}"),
    );

    // CNode_Delete (after unmapping the copy): the slot is empty afterwards.
    let deleted = copy
        .x86_page_unmap()
        .and_then(|_| init::CNODE.cnode_delete(copy_slot, sel4::WORD_BITS));
    let gone = copy.x86_page_get_address();
    v.check(
        "cnode.delete",
        deleted.is_ok() && matches!(gone, Err(Error::InvalidCapability) | Err(Error::FailedLookup)),
        &format!("delete {deleted:?}; then GetAddress on the slot: {gone:?}"),
    );

    // Mint with a badge, Move, Revoke: the badge arrives; revoking the
    // original deletes the moved copy.
    let cap_ops = mint_move_revoke(objs, ep);
    v.check("cnode.mint_move_revoke", cap_ops.is_ok(), &format!("{cap_ops:?}"));

    // An invocation on an empty slot is a typed error, not a crash.
    let empty = objs.slot();
    let err = cap::Frame::from_bits(empty).x86_page_get_address();
    v.check(
        "error.typed",
        matches!(err, Err(Error::InvalidCapability) | Err(Error::FailedLookup)),
        &format!("{err:?}"),
    );

    // A second thread, running code of this image, answers a Call.
    let echo = objs.endpoint().and_then(|ep| {
        threads::spawn(objs, echo_server, ep.bits(), SERVER_PRIO, 0)?;
        Ok(ep)
    });
    let answer = echo.map(|ep| sel4::call(ep.cptr(), MessageInfo::new(0, 0, 0, 1), [41, 0, 0, 0]).1[0]);
    v.check(
        "ipc.call_reply_recv",
        answer == Ok(42),
        &format!("sent 41, got {answer:?}"),
    );

    // One thread per core reports the APIC ID it runs on.
    let cores = per_core(objs);
    if let Ok(ids) = &cores {
        sel4_root_task::Record::new("per_core")
            .num("distinct_apic_ids", ids.len() as u64)
            .emit();
    }
    v.check(
        "threads.per_core",
        matches!(&cores, Ok(ids) if ids.len() == sel4_config::MAX_NUM_NODES),
        &format!("distinct APIC IDs seen: {cores:?}"),
    );

    if let Ok(echo_ep) = echo {
        // SAFETY: single-threaded use by the root task's main thread.
        unsafe { FIXTURE = Some(Fixture { echo_ep, frame }) };
    }
}

#[allow(non_snake_case)]
const fn share_pattern() -> u64 {
    0x5e14_0000_c0ff_ee00
}

type Retyped = (cap::Endpoint, cap::Notification, cap::Frame);

fn retype_all(objs: &mut Objects) -> Result<Retyped, Error> {
    #[cfg(feature = "inject-bad-cap")]
    {
        // Deliberate mistake: retype from an empty slot instead of an untyped.
        let bad = sel4::Cap::<sel4::cap_type::Untyped>::from_bits(objs.slot());
        objs.retype_from::<sel4::Endpoint>(bad, sel4::object_type::EndpointObject, 0)?;
    }
    let ep = objs.endpoint()?;
    let ntfn = objs.notification()?;
    let _tcb = objs.tcb()?;
    let frame = objs.frame()?;
    Ok((ep, ntfn, frame))
}

/// CNode_Copy from root slot `src` into root slot `dest`.
fn cnode_copy(dest: Word, src: Word, rights: CapRights) -> Result<(), Error> {
    #[cfg(feature = "inject-wrong-label")]
    {
        // Deliberate mistake: the right message with the wrong label.
        let mrs = [
            dest,
            sel4::WORD_BITS as Word,
            src,
            sel4::WORD_BITS as Word,
            rights.into_word(),
        ];
        return sel4::invoke(
            init::CNODE.cptr(),
            sel4::label::CNodeCopy + 1,
            &mrs,
            &[init::CNODE.cptr()],
            &mut [],
        );
    }
    #[allow(unreachable_code)]
    init::CNODE.cnode_copy(dest, sel4::WORD_BITS, init::CNODE, src, sel4::WORD_BITS, rights)
}

fn share(objs: &mut Objects, a: cap::Frame, b: cap::Frame) -> Result<u64, Error> {
    objs.map_in_root(a, SHARE_VADDR_A)?;
    objs.map_in_root(b, SHARE_VADDR_B)?;
    let pa = SHARE_VADDR_A as *mut u64;
    let pb = SHARE_VADDR_B as *const u64;
    // SAFETY: both addresses were just mapped read-write to the same frame.
    let seen = unsafe {
        core::ptr::write_volatile(pa.add(3), share_pattern());
        core::ptr::read_volatile(pb.add(3))
    };
    a.x86_page_unmap()?;
    Ok(seen)
}

fn mint_move_revoke(objs: &mut Objects, ep: cap::Endpoint) -> Result<(), Error> {
    let minted = objs.slot();
    let badge = CapData::badge(0x1234).ok_or(Error::InvalidArgument)?;
    init::CNODE.cnode_mint(
        minted,
        sel4::WORD_BITS,
        init::CNODE,
        ep.bits(),
        sel4::WORD_BITS,
        CapRights::ALL,
        badge,
    )?;
    let moved = objs.slot();
    init::CNODE.cnode_move(moved, sel4::WORD_BITS, init::CNODE, minted, sel4::WORD_BITS)?;
    // The moved, badged copy delivers its badge: NBSend through it to a
    // receiver would need a thread; instead check the slots: the source of
    // the move is empty, the destination is not.
    let src_empty = init::CNODE.cnode_delete(minted, sel4::WORD_BITS).is_ok()
        && init::CNODE
            .cnode_copy(
                minted,
                sel4::WORD_BITS,
                init::CNODE,
                moved,
                sel4::WORD_BITS,
                CapRights::ALL,
            )
            .is_ok();
    if !src_empty {
        return Err(Error::IllegalOperation);
    }
    // Revoke the original: every derived copy (minted, moved) disappears,
    // so copying from them fails and their slots can be reused.
    init::CNODE.cnode_revoke(ep.bits(), sel4::WORD_BITS)?;
    let probe = objs.slot();
    match init::CNODE.cnode_copy(
        probe,
        sel4::WORD_BITS,
        init::CNODE,
        moved,
        sel4::WORD_BITS,
        CapRights::ALL,
    ) {
        Err(Error::FailedLookup) | Err(Error::InvalidCapability) => Ok(()),
        Ok(()) => Err(Error::RevokeFirst),
        Err(e) => Err(e),
    }
}

/// Echo server: replies to each message with its first word plus one.
extern "C" fn echo_server(ep: Word) -> ! {
    let ep = CPtr(ep);
    let (_, mut mrs, _) = sel4::recv(ep);
    loop {
        mrs = sel4::reply_recv(ep, MessageInfo::new(0, 0, 0, 1), [mrs[0].wrapping_add(1), 0, 0, 0]).1;
    }
}

/// Reports (index, APIC ID) to the endpoint, then idles.
extern "C" fn core_reporter(arg: Word) -> ! {
    let ep = CPtr(arg >> 8);
    let index = arg & 0xff;
    let apic = (core::arch::x86_64::__cpuid(1).ebx >> 24) as Word;
    sel4::send(ep, MessageInfo::new(0, 0, 0, 2), [index, apic, 0, 0]);
    loop {
        sel4::yield_now();
    }
}

fn per_core(objs: &mut Objects) -> Result<Vec<Word>, Error> {
    let ep = objs.endpoint()?;
    let mut tcbs = Vec::new();
    for core in 0..sel4_config::MAX_NUM_NODES {
        let arg = (ep.bits() << 8) | core as Word;
        tcbs.push(threads::spawn(objs, core_reporter, arg, HELPER_PRIO, core)?.tcb);
    }
    let mut ids = Vec::new();
    for _ in 0..tcbs.len() {
        let (_, mrs, _) = sel4::recv(ep.cptr());
        ids.push(mrs[1]);
    }
    for t in tcbs {
        t.tcb_suspend()?;
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The primitive-operation benchmark: Yield, Call+ReplyRecv round trip,
/// CNode_Copy and CNode_Delete, each measured on the raw system calls.
pub fn benchmarks(objs: &mut Objects, v: &mut Verdict) {
    // SAFETY: written once by `run` on this thread.
    let Some(fx) = (unsafe { (*core::ptr::addr_of!(FIXTURE)).as_ref() }) else {
        v.check("bench.fixture", false, "checks did not leave a fixture");
        return;
    };
    let overhead = bench::rdtsc_overhead();
    let n = bench::ITERATIONS;

    let mut s = bench::sample(n, || {
        let t0 = sel4::rdtsc();
        sel4::yield_now();
        sel4::rdtsc() - t0
    });
    Measurement {
        op: "yield",
        path: "stock",
        pages: 0,
    }
    .report(&mut s, overhead);

    let ep = fx.echo_ep.cptr();
    let mut s = bench::sample(n, || {
        let t0 = sel4::rdtsc();
        sel4::call(ep, MessageInfo::new(0, 0, 0, 1), [1, 0, 0, 0]);
        sel4::rdtsc() - t0
    });
    Measurement {
        op: "call_reply_recv",
        path: "stock",
        pages: 0,
    }
    .report(&mut s, overhead);

    let dest = objs.slot();
    let src = fx.frame.bits();
    let mut failures = 0u64;
    let mut copies = Vec::with_capacity(n);
    let mut deletes = Vec::with_capacity(n);
    for i in 0..bench::WARMUP + n {
        let t0 = sel4::rdtsc();
        let c = init::CNODE.cnode_copy(dest, sel4::WORD_BITS, init::CNODE, src, sel4::WORD_BITS, CapRights::ALL);
        let t1 = sel4::rdtsc();
        let d = init::CNODE.cnode_delete(dest, sel4::WORD_BITS);
        let t2 = sel4::rdtsc();
        failures += (c.is_err() || d.is_err()) as u64;
        if i >= bench::WARMUP {
            copies.push(t1 - t0);
            deletes.push(t2 - t1);
        }
    }
    v.check(
        "bench.cnode_ops_succeeded",
        failures == 0,
        &format!("{failures} failed copy/delete pairs"),
    );
    Measurement {
        op: "cnode_copy",
        path: "stock",
        pages: 0,
    }
    .report(&mut copies, overhead);
    Measurement {
        op: "cnode_delete",
        path: "stock",
        pages: 0,
    }
    .report(&mut deletes, overhead);
    let _ = slot(0);
}
