//! The results protocol: every result leaves the root task as one line
//!
//! ```text
//! @@sel4-mm {"kind":"...", ...}
//! ```
//!
//! i.e. [`PREFIX`] followed by one JSON object on one line. `kind` says what
//! the record is:
//! - `bootinfo`: what the kernel handed over (nodes, untypeds, slots);
//! - `check`: one self-check, with `name`, `ok` and optional details;
//! - `bench`: one measurement (`op`, `path`, `config`, `pages`, `iterations`,
//!   `ticks_min`, `ticks_median`);
//! - `panic`: the root task panicked (`message`);
//! - `verdict`: the last line: `pass`, and counts of checks run and failed.
//!
//! The host harness (tests/) parses these lines and ignores everything else
//! on the serial port; human-readable output is rendered from the records.

use alloc::string::String;
use core::fmt::Write;

/// Marks a result line on the serial port.
pub const PREFIX: &str = "@@sel4-mm ";

/// isa-debug-exit value for a passing run (QEMU exits with 2*0+1 = 1).
pub const EXIT_PASS: u8 = 0;
/// isa-debug-exit value for a failing run (QEMU exits with 2*1+1 = 3).
pub const EXIT_FAIL: u8 = 1;

/// One JSON object, built field by field and printed as one result line.
#[must_use = "a record is only reported by emit()"]
pub struct Record {
    buf: String,
}

impl Record {
    /// A record of the given kind.
    pub fn new(kind: &str) -> Self {
        let mut r = Self {
            buf: String::with_capacity(128),
        };
        r.buf.push('{');
        r.key("kind");
        escape(&mut r.buf, kind);
        r
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        escape(&mut self.buf, k);
        self.buf.push(':');
    }

    /// Adds a string field.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        escape(&mut self.buf, v);
        self
    }

    /// Adds an unsigned integer field.
    pub fn num(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Adds a signed integer field.
    pub fn int(mut self, k: &str, v: i64) -> Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Adds a boolean field.
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// Prints the record as one result line.
    pub fn emit(mut self) {
        self.buf.push('}');
        crate::println!("{PREFIX}{}", self.buf);
    }
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Counts self-checks as they are reported; the final verdict comes from it.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Checks reported.
    pub checks: u64,
    /// Checks that failed.
    pub failed: u64,
}

impl Verdict {
    /// An empty verdict (no checks yet).
    pub const fn new() -> Self {
        Self { checks: 0, failed: 0 }
    }

    /// Reports one check: `name`, whether it held, and a detail for the log.
    pub fn check(&mut self, name: &str, ok: bool, detail: &str) -> bool {
        self.checks += 1;
        if !ok {
            self.failed += 1;
        }
        Record::new("check")
            .str("name", name)
            .bool("ok", ok)
            .str("detail", detail)
            .emit();
        ok
    }

    /// Reports a check from a `Result`: `Ok` passes (its value is the detail),
    /// `Err` fails with the error as detail.
    pub fn check_result<T: core::fmt::Debug, E: core::fmt::Debug>(&mut self, name: &str, r: Result<T, E>) -> Option<T> {
        let mut detail = String::new();
        match r {
            Ok(v) => {
                let _ = write!(detail, "{v:?}");
                self.check(name, true, &detail);
                Some(v)
            }
            Err(e) => {
                let _ = write!(detail, "error: {e:?}");
                self.check(name, false, &detail);
                None
            }
        }
    }

    /// Whether every check passed (and at least one ran).
    pub fn passed(&self) -> bool {
        self.failed == 0 && self.checks > 0
    }
}

pub(crate) fn finish(v: Verdict) -> ! {
    let pass = v.passed();
    Record::new("verdict")
        .bool("pass", pass)
        .num("checks", v.checks)
        .num("failed", v.failed)
        .emit();
    crate::exit(if pass { EXIT_PASS } else { EXIT_FAIL })
}
