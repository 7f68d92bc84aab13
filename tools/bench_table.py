#!/usr/bin/env python3
"""Renders build/bench/latest.json (written by `make bench`) as the Markdown
tables of README.md: per-page medians in icount ticks (= instructions), every
path next to the stock path measured in the same run, with the ratio."""
import json
import sys
from pathlib import Path

path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "build/bench/latest.json")
recs = json.loads(path.read_text())
by = {(r["op"], r["path"], r["pages"]): r for r in recs}
configs = sorted({r["config"] for r in recs})
print(f"Kernel configuration {', '.join(configs)}; -icount: {all(r.get('icount') for r in recs)}.\n")

print("| primitive | min | median |")
print("|---|---:|---:|")
for op in ["yield", "call_reply_recv", "cnode_copy", "cnode_delete"]:
    r = by.get((op, "stock", 0))
    if r:
        print(f"| {op} | {r['ticks_min']} | {r['ticks_median']} |")

def table(title, ops, paths):
    rows = []
    for op in ops:
        for pages in [1, 16, 512, 4096]:
            s = by.get((op, "stock", pages))
            if not s:
                continue
            cells = [op, str(pages), str(s["ticks_per_page_median"])]
            for p in paths:
                t = by.get((op, p, pages))
                cells += [str(t["ticks_per_page_median"]), f"{t['ticks_per_page_median'] / s['ticks_per_page_median']:.2f}x"] if t else ["", ""]
            rows.append(cells)
    if not rows:
        return
    print(f"\n{title}\n")
    head = ["op", "pages", "stock"] + [h for p in paths for h in (p, f"{p}/stock")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for r in rows:
        print("| " + " | ".join(r) + " |")

table("Map/unmap per page (ticks, median):", ["map", "unmap"], ["vspace"])
table("Clone/Move/Destroy per page (ticks, median):", ["clone", "move", "destroy"], ["tracked", "batched"])
table("The four primitives per page (stock, ticks, median):", ["cnode_copy", "page_map", "page_unmap", "cnode_delete"], [])
