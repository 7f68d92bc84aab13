#!/usr/bin/env python3
"""Renders build/bench/latest.json (written by `make bench`) as the Markdown
tables of README.md: per-page medians in icount ticks (= instructions). Every
path is compared with the stock path measured in the same boot (same kernel),
as a ratio; the stock/batched column is the speed-up of the batched manager
over stock copy&map."""
import contextlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
args = sys.argv[1:]
readme = None
if args[:1] == ["--readme"]:
    # Replace the README's tables (between the bench markers) with these.
    readme, args = ROOT / "README.md", args[1:]
path = Path(args[0] if args else ROOT / "build/bench/latest.json")
out = io.StringIO()
_redirect = contextlib.redirect_stdout(out)
_redirect.__enter__()
recs = json.loads(path.read_text())
by = {(r["config"], r["op"], r["path"], r["pages"]): r for r in recs}
configs = sorted({r["config"] for r in recs})
icount = all(r.get("icount") for r in recs)
print(f"Kernels: {', '.join(configs)}; -icount: {icount}; ticks per page, median of the iterations.\n")

def pp(r):
    return r["ticks_per_page_median"]

print("| primitive (release-up) | min | median |")
print("|---|---:|---:|")
for op in ["yield", "call_reply_recv", "cnode_copy", "cnode_delete"]:
    r = by.get(("release-up", op, "stock", 0))
    if r:
        print(f"| {op} | {r['ticks_min']} | {r['ticks_median']} |")

# (label, config, path)
def table(title, ops, columns):
    rows = []
    stock_cfg = columns[0][1]
    for op in ops:
        for pages in [1, 16, 512, 4096]:
            s = by.get((stock_cfg, op, "stock", pages))
            if not s:
                continue
            cells = [op, str(pages), str(pp(s))]
            for label, cfg, p in columns:
                t = by.get((cfg, op, p, pages))
                st = by.get((cfg, op, "stock", pages))
                if t and st:
                    cells += [str(pp(t)), f"{pp(t) / pp(st):.2f}x", f"{pp(st) / pp(t):.1f}x"]
                else:
                    cells += ["", "", ""]
            rows.append(cells)
    if not rows:
        return
    print(f"\n{title}\n")
    head = ["op", "pages", f"stock ({stock_cfg})"] + [h for label, _, _ in columns for h in (label, f"{label}/stock", f"stock/{label}")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for r in rows:
        print("| " + " | ".join(r) + " |")

table("Map/unmap through vspace (ticks per page):", ["map", "unmap"],
      [("vspace", "release-up", "vspace"), ("vspace+runs", "release-up-batched", "vspace")])
table("Clone/Move/Destroy (ticks per page):", ["clone", "move", "destroy"],
      [("tracked", "release-up", "tracked"), ("batched", "release-up-batched", "batched")])
table("The run invocations alone, no manager (release-up-batched, ticks per page):",
      ["leaf_map", "leaf_unmap", "leaf_clone", "leaf_destroy"], [("run", "release-up-batched", "run")])

# The stock invocations cost the same on the kernel with the extension.
rows = []
for (cfg, op, p, pages), r in sorted(by.items()):
    if cfg != "release-up" or p != "stock" or op.startswith("leaf_") or pages not in (0, 512):
        continue
    o = by.get(("release-up-batched", op, "stock", pages))
    if o:
        rows.append((op, pages, pp(r), pp(o)))
if rows:
    print("\nThe stock path on both kernels (ticks per page; the extension leaves stock invocations unchanged):\n")
    print("| op | pages | release-up | release-up-batched |")
    print("|---|---|---:|---:|")
    for op, pages, a, b in sorted(rows, key=lambda x: (x[0], x[1])):
        print(f"| {op} | {pages} | {a} | {b} |")

# Where the manager's per-page ticks go (the phase clock, 512 pages).
PHASES = [("lookup", "find the sources' records (mapping-db)"),
          ("check_free", "destination free? (vspace shadow)"),
          ("slots", "slot run for the copies (cspace)"),
          ("vspace", "shadow update + map/unmap invocations (+ a slot-run clone's CNode_Copy on the stock kernel)"),
          ("cspace", "cap books (+ CNode_Delete, and a one-page clone's CNode_Copy, on the stock kernel)"),
          ("database", "mapping records and copy derivation (mapping-db)")]
cols = [(op, cfg, p) for op in ("clone", "move", "destroy")
        for cfg, p in (("release-up", "tracked"), ("release-up-batched", "batched"))]
def ph(op, cfg, p, name, pages=512):
    r = by.get((cfg, f"{op}.{name}", p, pages))
    return pp(r) if r else None
if any(ph(*c, "kernel") is not None for c in cols):
    print("\nWhere the manager's ticks go, per page, 512 pages (phase clock; `kernel` is the part of the phases"
          " above spent in kernel invocations):\n")
    print("| phase | " + " | ".join(f"{op} {p}" for op, _, p in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, what in PHASES:
        cells = [ph(*c, name) for c in cols]
        print(f"| {name}: {what} | " + " | ".join("" if v is None else str(v) for v in cells) + " |")
    total = [sum(ph(*c, n) or 0 for n, _ in PHASES) for c in cols]
    kern = [ph(*c, "kernel") or 0 for c in cols]
    print("| **sum of the phases** | " + " | ".join(str(t) for t in total) + " |")
    print("| of which in the kernel | " + " | ".join(str(k) for k in kern) + " |")
    print("| of which at user level | " + " | ".join(str(t - k) for t, k in zip(total, kern)) + " |")
    meas = [by.get((cfg, op, p, 512)) for op, cfg, p in cols]
    print("| measured alone (median) | " + " | ".join(str(pp(m)) if m else "" for m in meas) + " |")
    print("\n(The phase rounds repeat the measured sequence: Clone S->D, Move D->E, which is a clone of D's pages"
          " and a destroy of D, then Destroy E.)")

_redirect.__exit__(None, None, None)
if readme is None:
    sys.stdout.write(out.getvalue())
else:
    text = readme.read_text()
    begin, end = "<!-- bench:begin (tools/bench_table.py --readme) -->\n", "<!-- bench:end -->\n"
    if begin not in text or end not in text:
        sys.exit(f"{readme}: no bench markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + out.getvalue() + end + tail)
    print(f"updated {readme}")
