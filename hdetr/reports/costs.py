"""The cost columns of Table 6 beside the paper's: GFLOPs at 800 x 1333 and the measured step costs.

Reads the benchmark files the README lists (``reports/bench/flops.json`` from
``benchmarks/flops.py``, ``reports/bench/scheme_costs.json`` from
``benchmarks/scheme_costs.py``) and the paper's Table 6 (``hdetr.paper``), and
renders one markdown table per scheme row: the paper's GFLOPs, training minutes per
epoch (as a ratio to the baseline) and FPS beside the measured GFLOPs (the paper's
convention and the full count), the measured training seconds per step and its
ratio, inference images per second, peak memory and parameters.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from hdetr.paper import paper_table

# scheme key -> (Table 6 row, flops.json row)
ROWS = {"baseline": ("Deformable-DETR (300 queries)", "baseline_300"),
        "hybrid_branch": ("Hybrid branch", "hybrid_branch"),
        "hybrid_epoch": ("Hybrid epoch (1800 queries)", "hybrid_epoch"),
        "hybrid_layer": ("Hybrid layer (1800 queries)", "hybrid_layer")}


def _number(cell) -> float | None:
    """The cell's number; for a cell like ``80 (85 naive)`` its leading number."""
    value = getattr(cell, "number", cell)
    if isinstance(value, (int, float)):
        return float(value)
    match = re.match(r"\s*([0-9.]+)", str(getattr(cell, "value", cell)))
    return float(match.group(1)) if match else None


def cost_lines(bench_dir: str | Path) -> list[str]:
    """The markdown lines of the cost table (empty when neither benchmark file exists)."""
    bench_dir = Path(bench_dir)
    flops_path, costs_path = bench_dir / "flops.json", bench_dir / "scheme_costs.json"
    if not (flops_path.is_file() or costs_path.is_file()):
        return []
    flops = {r["row"]: r for r in json.loads(flops_path.read_text())["comparison"]["table6"]} \
        if flops_path.is_file() else {}
    costs_doc = json.loads(costs_path.read_text()) if costs_path.is_file() else {}
    costs = {r["key"]: r for r in costs_doc.get("results", {}).get("fp32", [])}
    table6 = paper_table("schemes_table6")
    base_minutes = _number(table6.find(variant=ROWS["baseline"][0])["train_min_per_epoch"])
    lines = ["| scheme | GFLOPs paper | GFLOPs measured (paper's convention / full) | train min/epoch paper (ratio) | "
             "train s/step measured (ratio) | FPS paper | inference img/s measured | peak memory measured (MB) | "
             "parameters |", "|---|---|---|---|---|---|---|---|---|"]
    for key, (paper_row, flops_row) in ROWS.items():
        p = table6.find(variant=paper_row)
        f, c = flops.get(flops_row, {}), costs.get(key, {})
        minutes = _number(p["train_min_per_epoch"])
        ratio = f" ({minutes / base_minutes:.2f}x)" if minutes and base_minutes else ""
        lines.append(
            f"| {key} | {p['GFLOPs']} | "
            + (f"{f['gflops_measured_no_aux_heads']:.1f} / {f['gflops_full']:.1f}" if f else "-") + " | "
            + f"{p['train_min_per_epoch']}{ratio} | "
            + (f"{c['train_seconds_per_iter']:.3f} ({c['train_ratio_to_baseline']:.2f}x)" if c else "-") + " | "
            + f"{p['FPS']} | " + (f"{c['inference_images_per_s']:.1f}" if c else "-") + " | "
            + (f"{c['peak_memory_mb']:.0f} ({c['memory_kind']})" if c else "-") + " | "
            + (f"{c['parameters'] / 1e6:.2f} M" if c else "-") + " |")
    where: Sequence[str] = []
    if flops:
        where = [*where, "GFLOPs: `python benchmarks/flops.py`, R50 at 800 x 1333, one multiply-add = one FLOP; "
                 "the paper's convention leaves out the self-attention matmuls, the deformable-attention op and the "
                 "auxiliary heads, the full count includes them"]
    if costs:
        where = [*where, f"measured costs: `python benchmarks/scheme_costs.py` ({costs_doc.get('scale', '?')} "
                 f"scale, {costs_doc.get('device', '?')}, batch {costs_doc.get('batch_size', '?')}, "
                 f"{costs_doc.get('image_size', '?')} px; {costs_doc.get('train_step', '')})"]
    return [*lines, "", *[f"- {w}." for w in where]]
