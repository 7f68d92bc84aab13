//! Generates the seL4 system-call layer for the configured kernel.
//!
//! Inputs, all from the kernel build directory named by `sel4_config`
//! (`$SEL4_KERNEL_BUILD_DIR`, written by kernel/build.py):
//! - `source/libsel4/**/interfaces/*.xml`: every invocation and its parameters;
//! - `gen/invocation_labels.txt`: the label of each invocation under this
//!   configuration (the kernel's own generator + the C preprocessor);
//! - `gen/object_types.txt`, `gen/syscalls.txt`, `gen/layout.txt`: object type
//!   numbers, system call numbers, struct layouts, bitfield positions and
//!   constants, read from libsel4's headers under this configuration.
//!
//! Output: `$OUT_DIR/generated.rs`, `include!`d by `src/lib.rs`. Nothing in it
//! is typed in by hand: a label, type number or offset that moves in the tree
//! moves here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn fail(msg: String) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

fn read(path: &Path) -> String {
    println!("cargo:rerun-if-changed={}", path.display());
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        fail(format!(
            "cannot read {}: {e}; rebuild the kernel (make kernel)",
            path.display()
        ))
    })
}

/// `NAME VALUE` lines, in file order.
fn pairs(path: &Path) -> Vec<(String, i64)> {
    read(path)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// How a parameter of an XML type crosses the ABI.
#[derive(Clone)]
enum Kind {
    /// Packed into message registers: (Rust type, bits, conversion to a word, conversion from a word).
    Data {
        rust: &'static str,
        bits: u32,
        to_word: &'static str,
        from_word: &'static str,
    },
    /// A capability passed as an extra cap: the Rust type.
    Cap(String),
    /// A struct of words, passed by reference (UserContext).
    Struct { rust: String, words: usize },
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = i + 1 < chars.len() && chars[i + 1].is_lowercase();
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `seL4_X86_PageTable` -> `X86PageTable`; `seL4_TCB` -> `Tcb`; `seL4_CNode` -> `CNode`.
fn cap_type_name(iface: &str) -> String {
    let base = iface.trim_start_matches("seL4_").replace('_', "");
    match base.as_str() {
        "TCB" => "Tcb".into(),
        "IRQControl" => "IrqControl".into(),
        "IRQHandler" => "IrqHandler".into(),
        "X86ASIDControl" => "X86AsidControl".into(),
        "X86ASIDPool" => "X86AsidPool".into(),
        "X86IOPort" => "X86IoPort".into(),
        "X86IOPageTable" => "X86IoPageTable".into(),
        "X86IOSpace" => "X86IoSpace".into(),
        "X86PDPT" => "X86Pdpt".into(),
        "X64PML4" => "X64Pml4".into(),
        "X86VCPU" => "X86Vcpu".into(),
        "X86EPTPML4" => "X86EptPml4".into(),
        "X86EPTPDPT" => "X86EptPdpt".into(),
        "X86EPTPD" => "X86EptPd".into(),
        "X86EPTPT" => "X86EptPt".into(),
        _ => base,
    }
}

/// Method name prefix for an interface: `seL4_X86_PageTable` -> `x86_page_table`.
fn method_prefix(iface: &str) -> String {
    snake(&cap_type_name(iface)).replace("c_node", "cnode")
}

fn kind_of(ty: &str, structs: &BTreeMap<String, Vec<String>>) -> Kind {
    let data = |rust, bits, to_word, from_word| Kind::Data {
        rust,
        bits,
        to_word,
        from_word,
    };
    match ty {
        "seL4_Word" | "seL4_Uint64" => data("Word", 64, "{} as Word", "{}"),
        "seL4_Uint32" | "int" => data("u32", 32, "{} as Word", "{} as u32"),
        "seL4_Uint16" => data("u16", 16, "{} as Word", "{} as u16"),
        "seL4_Uint8" => data("u8", 8, "{} as Word", "{} as u8"),
        "seL4_Bool" => data("bool", 1, "{} as Word", "{} != 0"),
        "seL4_CapRights_t" => data("CapRights", 64, "{}.into_word()", "CapRights::from_word({})"),
        "seL4_CapData_t" => data("CapData", 64, "{}.into_word()", "CapData::from_word({})"),
        "seL4_PrioProps_t" => data("PrioProps", 64, "{}.into_word()", "PrioProps::from_word({})"),
        "seL4_X86_VMAttributes" => data("VmAttributes", 64, "{}.bits()", "VmAttributes::from_bits_retain({})"),
        "seL4_CPtr" => Kind::Cap("CPtr".into()),
        t if structs.contains_key(t) => Kind::Struct {
            rust: cap_type_name(t),
            words: structs[t].len(),
        },
        t if t.starts_with("seL4_") => Kind::Cap(format!("Cap<cap_type::{}>", cap_type_name(t))),
        t => fail(format!(
            "interface XML uses type {t}, which this generator does not know"
        )),
    }
}

struct Param {
    name: String,
    kind: Kind,
    out: bool,
    description: Option<String>,
}

fn rust_ident(name: &str) -> String {
    match name {
        "type" => "type_".into(),
        "ref" => "ref_".into(),
        n => snake(n),
    }
}

fn main() {
    let dir = PathBuf::from(sel4_config::KERNEL_BUILD_DIR);
    println!("cargo:rerun-if-env-changed=SEL4_KERNEL_BUILD_DIR");
    let src = dir.join("source");
    let gen = dir.join("gen");
    let mut out = String::new();
    let w = &mut out;

    // Configuration flags for conditional compilation.
    for name in sel4_config::RUST_CFG_NAMES {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    for name in sel4_config::rust_cfgs() {
        println!("cargo:rustc-cfg={name}");
    }

    // ---- labels, object types, syscalls, layout ----
    let labels: BTreeMap<String, i64> = pairs(&gen.join("invocation_labels.txt")).into_iter().collect();
    writeln!(
        w,
        "/// Invocation labels of this kernel configuration (libsel4's `invocation_label` enums)."
    )
    .unwrap();
    writeln!(
        w,
        "#[allow(non_upper_case_globals, missing_docs)]\npub mod label {{\n    use crate::Word;"
    )
    .unwrap();
    for (k, v) in pairs(&gen.join("invocation_labels.txt")) {
        writeln!(w, "    pub const {k}: Word = {v};").unwrap();
    }
    writeln!(w, "}}").unwrap();

    writeln!(
        w,
        "/// Object type numbers of this configuration (libsel4's `seL4_ObjectType`)."
    )
    .unwrap();
    writeln!(
        w,
        "#[allow(non_upper_case_globals, missing_docs)]\npub mod object_type {{\n    use crate::Word;"
    )
    .unwrap();
    for (k, v) in pairs(&gen.join("object_types.txt")) {
        writeln!(w, "    pub const {}: Word = {v};", k.trim_start_matches("seL4_")).unwrap();
    }
    writeln!(w, "}}").unwrap();

    writeln!(
        w,
        "/// System call numbers of this configuration (the kernel's `enum syscall`)."
    )
    .unwrap();
    writeln!(
        w,
        "#[allow(non_upper_case_globals, missing_docs, dead_code)]\npub mod syscall_id {{"
    )
    .unwrap();
    for (k, v) in pairs(&gen.join("syscalls.txt")) {
        writeln!(w, "    pub const {k}: i64 = {v};").unwrap();
    }
    writeln!(w, "}}").unwrap();

    let layout: BTreeMap<String, i64> = pairs(&gen.join("layout.txt")).into_iter().collect();
    writeln!(
        w,
        "/// Sizes, offsets, bit positions and constants from libsel4's headers for this configuration."
    )
    .unwrap();
    writeln!(
        w,
        "#[allow(non_upper_case_globals, missing_docs, dead_code)]\npub mod layout {{"
    )
    .unwrap();
    for (k, v) in &layout {
        writeln!(w, "    pub const {k}: u64 = {v};").unwrap();
    }
    writeln!(w, "}}").unwrap();

    // Error enum from errors.h values.
    let mut errors: Vec<(String, i64)> = layout
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("Error_").map(|n| (n.to_string(), *v)))
        .collect();
    errors.sort_by_key(|(_, v)| *v);
    writeln!(
        w,
        "/// An error an invocation returned (libsel4's `seL4_Error`, without `seL4_NoError`)."
    )
    .unwrap();
    writeln!(
        w,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\n#[repr(u64)]\npub enum Error {{"
    )
    .unwrap();
    for (n, v) in &errors {
        if n != "NoError" {
            writeln!(w, "    /// `seL4_{n}`\n    {n} = {v},").unwrap();
        }
    }
    writeln!(w, "}}").unwrap();
    writeln!(w, "impl Error {{\n    /// The error for a non-zero `seL4_Error` value; `None` for `seL4_NoError` and unknown values.").unwrap();
    writeln!(
        w,
        "    pub const fn from_word(v: Word) -> Option<Self> {{\n        match v {{"
    )
    .unwrap();
    for (n, v) in &errors {
        if n != "NoError" {
            writeln!(w, "            {v} => Some(Self::{n}),").unwrap();
        }
    }
    writeln!(
        w,
        "            _ => None,\n        }}\n    }}\n    /// The variant name, as seL4 spells it."
    )
    .unwrap();
    writeln!(
        w,
        "    pub const fn name(self) -> &'static str {{\n        match self {{"
    )
    .unwrap();
    for (n, _) in &errors {
        if n != "NoError" {
            writeln!(w, "            Self::{n} => {n:?},").unwrap();
        }
    }
    writeln!(w, "        }}\n    }}\n}}").unwrap();
    writeln!(
        w,
        "const _: () = assert!({} + 1 == layout::NumErrors as usize, \"seL4_Error has a value this enum lacks\");",
        errors.len() - 1
    )
    .unwrap();

    // ---- interfaces ----
    let xmls = [
        src.join("libsel4/include/interfaces/sel4.xml"),
        src.join("libsel4/sel4_arch_include/x86_64/interfaces/sel4arch.xml"),
        src.join("libsel4/arch_include/x86/interfaces/sel4arch.xml"),
    ];
    let texts: Vec<String> = xmls.iter().map(|p| read(p)).collect();
    let docs: Vec<roxmltree::Document> = texts
        .iter()
        .zip(&xmls)
        .map(|(t, p)| roxmltree::Document::parse(t).unwrap_or_else(|e| fail(format!("{}: {e}", p.display()))))
        .collect();

    // Structs (seL4_UserContext, seL4_VCPUContext).
    let mut structs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for doc in &docs {
        for s in doc.descendants().filter(|n| n.has_tag_name("struct")) {
            let name = s.attribute("name").unwrap().to_string();
            let members = s
                .children()
                .filter(|n| n.has_tag_name("member"))
                .map(|m| m.attribute("name").unwrap().to_string())
                .collect();
            structs.insert(name, members);
        }
    }
    for (name, members) in &structs {
        let rust = cap_type_name(name);
        writeln!(
            w,
            "/// `{name}` (generated from the interface XML): one word per register."
        )
        .unwrap();
        writeln!(
            w,
            "#[repr(C)]\n#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]\npub struct {rust} {{"
        )
        .unwrap();
        for m in members {
            writeln!(w, "    #[allow(missing_docs)]\n    pub {m}: Word,").unwrap();
        }
        writeln!(w, "}}").unwrap();
        writeln!(
            w,
            "#[allow(dead_code)]\nimpl {rust} {{\n    /// Number of words.\n    pub const WORDS: usize = {};",
            members.len()
        )
        .unwrap();
        writeln!(
            w,
            "    fn to_words(self) -> [Word; {}] {{ [{}] }}",
            members.len(),
            members
                .iter()
                .map(|m| format!("self.{m}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        writeln!(
            w,
            "    fn from_words(v: &[Word]) -> Self {{ Self {{ {} }} }}",
            members
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{m}: v[{i}]"))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        writeln!(w, "}}").unwrap();
    }

    // Cap type markers: one per interface, plus cap types only used as parameters.
    let mut cap_types: BTreeMap<String, String> = BTreeMap::new();
    for doc in &docs {
        for i in doc.descendants().filter(|n| n.has_tag_name("interface")) {
            let name = i.attribute("name").unwrap();
            cap_types.insert(cap_type_name(name), name.to_string());
        }
        for p in doc.descendants().filter(|n| n.has_tag_name("param")) {
            let t = p.attribute("type").unwrap();
            if let Kind::Cap(r) = kind_of(t, &structs) {
                if r != "CPtr" {
                    cap_types.insert(cap_type_name(t), t.to_string());
                }
            }
        }
    }
    writeln!(
        w,
        "/// Zero-sized markers naming what a capability refers to (one per interface of the XML)."
    )
    .unwrap();
    writeln!(w, "pub mod cap_type {{").unwrap();
    for (rust, c) in &cap_types {
        writeln!(w, "    /// Capability to an object invoked through `{c}`.").unwrap();
        writeln!(
            w,
            "    #[derive(Debug, Clone, Copy, PartialEq, Eq)]\n    pub enum {rust} {{}}"
        )
        .unwrap();
        writeln!(
            w,
            "    impl super::CapType for {rust} {{ const NAME: &'static str = {rust:?}; }}"
        )
        .unwrap();
    }
    writeln!(w, "}}").unwrap();

    // Methods.
    let mut used_labels = 0;
    for doc in &docs {
        for iface in doc.descendants().filter(|n| n.has_tag_name("interface")) {
            let iname = iface.attribute("name").unwrap();
            let ty = cap_type_name(iname);
            let prefix = method_prefix(iname);
            let mut body = String::new();
            for m in iface.children().filter(|n| n.has_tag_name("method")) {
                let id = m.attribute("id").unwrap();
                let mname = m.attribute("name").unwrap();
                let Some(&label) = labels.get(id) else {
                    // Conditional method not present in this configuration.
                    continue;
                };
                used_labels += 1;
                let brief = m
                    .children()
                    .find(|n| n.has_tag_name("brief"))
                    .and_then(|b| b.text())
                    .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
                let params: Vec<Param> = m
                    .children()
                    .filter(|n| n.has_tag_name("param"))
                    .map(|p| Param {
                        name: rust_ident(p.attribute("name").unwrap()),
                        kind: kind_of(p.attribute("type").unwrap(), &structs),
                        out: p.attribute("dir") == Some("out"),
                        description: p
                            .attribute("description")
                            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ")),
                    })
                    .collect();
                gen_method(&mut body, &ty, &prefix, iname, mname, id, label, brief, &params);
            }
            if !body.is_empty() {
                // Generated arithmetic keeps its regular shape (`<< 0`, `0 + n`).
                writeln!(w, "#[allow(clippy::identity_op, clippy::useless_conversion)]").unwrap();
                writeln!(w, "impl Cap<cap_type::{ty}> {{\n{body}}}").unwrap();
            }
        }
    }
    if used_labels == 0 {
        fail("no invocation of the XML matched a label; is gen/invocation_labels.txt stale?".into());
    }

    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("generated.rs");
    std::fs::write(dest, out).unwrap();
}

/// Places parameters in message words as libsel4's syscall_stub_gen.py does:
/// each aligned to min(its size, a word), in order.
fn positions(params: &[&Param]) -> (Vec<(usize, u32)>, usize) {
    let mut bits = 0u32;
    let mut pos = Vec::new();
    for p in params {
        let size = match &p.kind {
            Kind::Data { bits, .. } => *bits,
            Kind::Struct { words, .. } => 64 * *words as u32,
            Kind::Cap(_) => unreachable!(),
        };
        let align = size.min(64);
        bits = bits.div_ceil(align) * align;
        pos.push(((bits / 64) as usize, bits % 64));
        bits += size;
    }
    (pos, bits.div_ceil(64) as usize)
}

#[allow(clippy::too_many_arguments)]
fn gen_method(
    w: &mut String,
    _ty: &str,
    prefix: &str,
    iface: &str,
    mname: &str,
    id: &str,
    _label: i64,
    brief: Option<String>,
    params: &[Param],
) {
    let fname = format!("{}_{}", prefix, snake(mname));
    let ins: Vec<&Param> = params
        .iter()
        .filter(|p| !p.out && !matches!(p.kind, Kind::Cap(_)))
        .collect();
    let caps: Vec<&Param> = params
        .iter()
        .filter(|p| !p.out && matches!(p.kind, Kind::Cap(_)))
        .collect();
    let outs: Vec<&Param> = params.iter().filter(|p| p.out).collect();
    let (in_pos, in_words) = positions(&ins);
    let (out_pos, out_words) = positions(&outs);

    writeln!(
        w,
        "    /// `{iface}_{mname}` (generated from the interface XML, label `{id}`)."
    )
    .unwrap();
    if let Some(b) = brief {
        writeln!(w, "    ///\n    /// {b}").unwrap();
    }
    let with_doc: Vec<&Param> = params.iter().filter(|p| p.description.is_some()).collect();
    if !with_doc.is_empty() {
        writeln!(w, "    ///").unwrap();
        for p in with_doc {
            writeln!(
                w,
                "    /// - `{}`: {}",
                p.name,
                p.description.as_ref().unwrap().replace('<', "&lt;")
            )
            .unwrap();
        }
    }
    let mut args = Vec::new();
    for p in params.iter().filter(|p| !p.out) {
        let t = match &p.kind {
            Kind::Data { rust, .. } => rust.to_string(),
            Kind::Cap(r) => r.clone(),
            Kind::Struct { rust, .. } => format!("&{rust}"),
        };
        args.push(format!("{}: {t}", p.name));
    }
    let ret = match outs.len() {
        0 => "()".to_string(),
        1 => out_type(outs[0]),
        _ => format!("({})", outs.iter().map(|p| out_type(p)).collect::<Vec<_>>().join(", ")),
    };
    writeln!(w, "    #[inline]\n    #[allow(clippy::too_many_arguments, unused_mut)]").unwrap();
    writeln!(
        w,
        "    pub fn {fname}(self{}) -> Result<{ret}> {{",
        args.iter().map(|a| format!(", {a}")).collect::<String>()
    )
    .unwrap();
    writeln!(w, "        let mut mrs: [Word; {in_words}] = [0; {in_words}];").unwrap();
    for (p, (word, shift)) in ins.iter().zip(&in_pos) {
        match &p.kind {
            Kind::Data { to_word, bits, .. } => {
                let e = to_word.replace("{}", &p.name);
                if *bits == 64 {
                    writeln!(w, "        mrs[{word}] = {e};").unwrap();
                } else {
                    writeln!(w, "        mrs[{word}] |= (({e}) & ((1 << {bits}) - 1)) << {shift};").unwrap();
                }
            }
            Kind::Struct { words, .. } => {
                writeln!(
                    w,
                    "        mrs[{word}..{word} + {words}].copy_from_slice(&{}.to_words());",
                    p.name
                )
                .unwrap();
            }
            Kind::Cap(_) => unreachable!(),
        }
    }
    writeln!(
        w,
        "        let caps: [CPtr; {}] = [{}];",
        caps.len(),
        caps.iter()
            .map(|c| format!("{}.into()", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    writeln!(w, "        let mut out: [Word; {out_words}] = [0; {out_words}];").unwrap();
    writeln!(
        w,
        "        crate::invoke(self.cptr(), label::{id}, &mrs, &caps, &mut out)?;"
    )
    .unwrap();
    let mut vals = Vec::new();
    for (p, (word, shift)) in outs.iter().zip(&out_pos) {
        match &p.kind {
            Kind::Data { from_word, bits, .. } => {
                let raw = if *bits == 64 {
                    format!("out[{word}]")
                } else {
                    format!("((out[{word}] >> {shift}) & ((1 << {bits}) - 1))")
                };
                vals.push(from_word.replace("{}", &raw));
            }
            Kind::Struct { rust, words } => vals.push(format!("{rust}::from_words(&out[{word}..{word} + {words}])")),
            Kind::Cap(_) => unreachable!(),
        }
    }
    match vals.len() {
        0 => writeln!(w, "        let _ = out;\n        Ok(())").unwrap(),
        1 => writeln!(w, "        Ok({})", vals[0]).unwrap(),
        _ => writeln!(w, "        Ok(({}))", vals.join(", ")).unwrap(),
    }
    writeln!(w, "    }}").unwrap();
}

fn out_type(p: &Param) -> String {
    match &p.kind {
        Kind::Data { rust, .. } => rust.to_string(),
        Kind::Struct { rust, .. } => rust.clone(),
        Kind::Cap(_) => "CPtr".into(),
    }
}
