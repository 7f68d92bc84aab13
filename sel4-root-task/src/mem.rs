//! memcpy, memmove, memset, memcmp, bcmp: the precompiled standard library
//! for x86_64-unknown-linux-gnu expects libc to provide them.
//! Written with `rep movs`/`rep stos` so the compiler cannot turn them into
//! calls to themselves.

/// # Safety
/// As C's memcpy: `n` bytes readable at `src`, writable at `dst`, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Eight bytes a step, then the tail a byte a step: a `rep` string
    // instruction executes (and counts, under `-icount`) once per element.
    // SAFETY: the caller guarantees the ranges (C's contract).
    unsafe {
        core::arch::asm!("rep movsq", "mov rcx, {tail}", "rep movsb",
            tail = in(reg) n & 7,
            inout("rcx") n >> 3 => _, inout("rdi") dst => _, inout("rsi") src => _,
            options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// As C's memmove: `n` bytes readable at `src`, writable at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is safe when dst is below src or past its end.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backward copy with the direction flag, restored afterwards.
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld",
            inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
            options(nostack));
    }
    dst
}

/// # Safety
/// As C's memset: `n` bytes writable at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // Eight bytes a step, then the tail (see `memcpy`).
    let word = (c as u8 as u64) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range.
    unsafe {
        core::arch::asm!("rep stosq", "mov rcx, {tail}", "rep stosb",
            tail = in(reg) n & 7,
            inout("rcx") n >> 3 => _, inout("rdi") dst => _, in("rax") word,
            options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// As C's memcmp: `n` bytes readable at `a` and `b`.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller guarantees n readable bytes.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// As memcmp.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
