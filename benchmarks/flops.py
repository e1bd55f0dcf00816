"""GFLOPs of an eval forward of the R50 models of Table 6 / Table 7, beside the paper's.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on one 800 x 1333 image
(the paper's input size; its counter probably averaged validation images, whose
mean size is a little smaller), with two formulas registered for what it does not
count by itself:

- the multi-scale deformable attention (this project's op, wrapped here in a
  ``torch.library`` custom op ``hdetr_bench::msda``): per query, head, level and point,
  4 bilinear corners and 1 attention weight on ``head_dim`` channels;
- ``aten._native_multi_head_attention`` (``nn.MultiheadAttention``'s fast path in eval,
  which ``FlopCounterMode`` counts as 0): its four projections and its two quadratic
  matmuls (Q K^T and A V), recorded separately.

Conventions (all in GFLOPs with one multiply-add = one FLOP, the fvcore / detectron2
habit of detection papers; ``FlopCounterMode`` counts a multiply-add as two):

- ``paper_convention``: convolutions and linear layers (self-attention projections
  included), without the self-attention's quadratic matmuls and without the deformable
  attention op. This is the count that grows linearly with the queries, as Table 7 does
  (2.79 GFLOPs per 300 queries).
- ``full``: everything, the quadratic matmuls and the deformable attention included.
- ``flop_counter_mode_raw``: ``FlopCounterMode``'s own total (2 per multiply-add, the
  fast-path self-attention and the custom op uncounted).

Cost: one full forward (the 300-query baseline, ~40 s on one loaded CPU core); the other
rows reuse its backbone and encoder outputs (they do not depend on the queries) and run
the rest of the model only, adding the backbone and encoder counts of the full forward.

    python benchmarks/flops.py          # prints measured vs paper, writes reports/bench/flops.json
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench" / "flops.json"

# row -> (preset, the paper's GFLOPs, source)
TABLE6 = {
    "baseline_300": ("coco_r50_table6_baseline_12ep", "Deformable-DETR (300 queries)"),
    "baseline_1800": ("coco_r50_table6_baseline_1800q_12ep", "Deformable-DETR (1800 queries)"),
    "hybrid_branch": ("coco_r50_table6_hybrid_branch_12ep", "Hybrid branch"),
    "hybrid_epoch": ("coco_r50_table6_hybrid_epoch_12ep", "Hybrid epoch (1800 queries)"),
    "hybrid_layer": ("coco_r50_table6_hybrid_layer_12ep", "Hybrid layer (1800 queries)"),
}
# Table 7: the hybrid branch's cost against the total number of queries, here a model evaluating
# that many queries (the series the paper's counter produced: it grows with the queries).
TABLE7_QUERIES = (300, 600, 900, 1200, 1500, 1800)
STEM = "HDeformableDETR"


def _register_msda_op():
    """``hdetr_bench::msda``: the deformable attention as one op FlopCounterMode can see."""
    from hdetr.ops.reference import ms_deform_attn_reference

    @torch.library.custom_op("hdetr_bench::msda", mutates_args=())
    def msda(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
             sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)

    @msda.register_fake
    def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        n, lq, m = sampling_locations.shape[:3]
        return value.new_empty(n, lq, m * value.shape[-1])

    return torch.ops.hdetr_bench.msda


def _formulas(parts: dict[str, float]):
    """custom_mapping for FlopCounterMode; ``parts`` collects the multiply-adds of each category."""

    def msda_flops(value_shape, spatial_shapes_shape, lsi_shape, loc_shape, weights_shape, out_shape=None, **_):
        n, lq, heads, levels, points, _ = loc_shape
        macs = n * lq * heads * levels * points * value_shape[-1] * 5  # 4 bilinear corners + the weight
        parts["msda"] += macs
        return 2 * macs

    def mha_flops(query, key, value, embed_dim, num_head, *args, out_shape=None, **_):
        b, lq, e = query
        lk = key[1]
        projections = b * (2 * lq + 2 * lk) * e * e  # q and out on the queries, k and v on the keys
        quadratic = 2 * b * lq * lk * e  # Q K^T and A V
        parts["self_attention_projections"] += projections
        parts["self_attention_quadratic"] += quadratic
        return 2 * (projections + quadratic)

    def sdpa_flops(query, key, value, *args, out_shape=None, **_):
        b, h, lq, d = query
        return 2 * 2 * b * h * lq * key[-2] * d  # Q K^T and A V (counted as quadratic from the op's name)

    return msda_flops, mha_flops, sdpa_flops


def count(model, images, *, msda_op) -> dict[str, float]:
    """Multiply-adds (G) of ``model(images)`` by category, and per top-level module."""
    import hdetr.ops.attention_module as attention_module

    parts: dict[str, float] = defaultdict(float)
    msda_flops, mha_flops, sdpa_flops = _formulas(parts)
    # nn.MultiheadAttention in eval: the fast path (one op) or linears + the CPU sdpa kernel, both uncounted
    mapping = {msda_op: msda_flops, torch.ops.aten._native_multi_head_attention: mha_flops,
               torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flops}
    original = attention_module.multi_scale_deformable_attention
    attention_module.multi_scale_deformable_attention = (
        lambda value, shapes, starts, locations, weights, backend=None: msda_op(value, shapes, starts, locations,
                                                                                  weights))
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(images)
    finally:
        attention_module.multi_scale_deformable_attention = original
    by_op = {str(k): v / 2 for k, v in counter.get_flop_counts()["Global"].items()}
    modules = {name: {str(op): n / 2 for op, n in v.items()} for name, v in counter.get_flop_counts().items()
               if name != "Global"}
    total = counter.get_total_flops() / 2
    quadratic = sum(v for k, v in by_op.items() if k.split(".")[1].startswith(("bmm", "baddbmm", "_scaled_dot")))
    # the prediction heads of the decoder layers before the last (auxiliary outputs; the last layer's and the
    # two-stage encoder head, index dec_layers, are the detector's own)
    aux = [f"{STEM}.{head}.{i}" for head in ("class_embed", "bbox_embed") for i in range(model.config.dec_layers - 1)]
    aux_heads = sum(sum(modules.get(name, {}).values()) for name in aux)
    return {"total": total, "msda": parts["msda"], "quadratic": quadratic + parts["self_attention_quadratic"],
            "self_attention_projections": parts["self_attention_projections"], "aux_heads": aux_heads,
            "by_op": by_op, "modules": modules}


def _conventions(counts: dict[str, float]) -> dict[str, float]:
    g = 1e-9
    return {"gflops_paper_convention": round(g * (counts["total"] - counts["msda"] - counts["quadratic"]), 2),
            "gflops_paper_convention_no_aux_heads": round(g * (counts["total"] - counts["msda"] - counts["quadratic"]
                                                               - counts["aux_heads"]), 2),
            "gflops_full": round(g * counts["total"], 2),
            "gflops_flop_counter_mode_raw": round(g * 2 * (counts["total"] - counts["msda"] - counts["quadratic"]
                                                           - counts["self_attention_projections"]), 2),
            "gflops_msda_op": round(g * counts["msda"], 3),
            "gflops_self_attention_quadratic": round(g * counts["quadratic"], 3)}


def measure(height: int, width: int) -> dict:
    from hdetr import build_model
    from hdetr.config.presets import get_preset

    msda_op = _register_msda_op()
    images = [torch.zeros(3, height, width)]
    torch.manual_seed(0)

    def build(preset: str, **changes):
        cfg = get_preset(preset).model.replace(msda_backend="torch", **changes)
        return build_model(cfg).eval()

    # the full forward of the 300-query baseline, its backbone and encoder outputs kept
    reference = build(TABLE6["baseline_300"][0])
    cached = {}

    def keep(name, module):
        forward = module.forward

        def run(*args, **kwargs):
            out = forward(*args, **kwargs)
            cached[name] = tuple(list(x) for x in out) if isinstance(out, tuple) else out
            return out
        module.forward = run

    keep("backbone", reference.backbone)
    keep("encoder", reference.transformer.encoder)
    start = time.perf_counter()
    full = count(reference, images, msda_op=msda_op)
    full_seconds = time.perf_counter() - start
    shared_names = (f"{STEM}.backbone", f"{STEM}.transformer.encoder")
    shared = {k: v for k, v in full.items() if k in ("total", "msda", "quadratic", "self_attention_projections",
                                                     "aux_heads")}
    missing = [n for n in shared_names if n not in full["modules"]]
    if missing:
        raise RuntimeError(f"FlopCounterMode has no counts for {missing}; modules: {sorted(full['modules'])[:12]}")
    shared_total = sum(sum(full["modules"][n].values()) for n in shared_names)
    # the backbone and encoder's share of the deformable attention (the encoder's; no quadratic matmuls there)
    encoder_msda = sum(full["modules"][n].get(str(msda_op), 0.0) for n in shared_names)
    if not encoder_msda:
        raise RuntimeError(f"no deformable-attention count in the encoder: {full['modules'][shared_names[1]]}")

    def rest(preset: str | None = None, **changes) -> dict[str, float]:
        model = build(preset or TABLE6["baseline_300"][0], **changes)
        # fresh lists: the model appends its extra levels' masks and positions to the backbone's
        model.backbone.forward = lambda *a, **k: tuple(list(x) for x in cached["backbone"])
        model.transformer.encoder.forward = lambda *a, **k: cached["encoder"]
        part = count(model, images, msda_op=msda_op)
        return {"total": part["total"] + shared_total, "msda": part["msda"] + encoder_msda,
                "quadratic": part["quadratic"], "self_attention_projections": part["self_attention_projections"],
                "aux_heads": part["aux_heads"]}

    rows = {}
    for key, (preset, _) in TABLE6.items():
        counts = shared if key == "baseline_300" else rest(preset)
        rows[key] = _conventions(counts)
    table7 = {}
    for queries in TABLE7_QUERIES:
        counts = shared if queries == 300 else rest(num_queries_one2one=queries, num_queries_one2many=0,
                                                    scheme="baseline")
        table7[str(queries)] = _conventions(counts)
    return {"input": {"height": height, "width": width, "batch": 1, "backbone": "resnet50", "mode": "eval"},
            "full_forward_seconds": round(full_seconds, 1), "table6": rows, "table7": table7,
            "backbone_encoder_gflops": round(1e-9 * shared_total, 2),
            "by_op_gflops_baseline_300": {k: round(1e-9 * v, 3) for k, v in full["by_op"].items()}}


def _paper() -> tuple[dict[str, float], dict[str, float]]:
    from hdetr.paper import paper_table

    t6 = paper_table("schemes_table6")
    t7 = paper_table("cost_table7")
    table6 = {key: t6.find(variant=label)["GFLOPs"].number for key, (_, label) in TABLE6.items()}
    table7 = {str(int(r["total_queries"].number)): r["GFLOPs_R50"].number for r in t7.records()}
    return table6, table7


CONVENTIONS = {"": "gflops_paper_convention", "_no_aux_heads": "gflops_paper_convention_no_aux_heads"}


def compare(measured: dict) -> dict:
    """Measured beside the paper: absolute numbers and differences to the first row, for both paper-like counts."""
    paper6, paper7 = _paper()
    out = {}
    for name, rows, paper, first in (("table6", measured["table6"], paper6, "baseline_300"),
                                     ("table7", measured["table7"], paper7, "300")):
        lines = []
        for key, row in rows.items():
            p = paper[key]
            dp = p - paper[first]
            line = {"row": key, "gflops_paper": p, "delta_gflops_paper": round(dp, 2), "gflops_full": row["gflops_full"]}
            for suffix, field in CONVENTIONS.items():
                m = row[field]
                dm = m - rows[first][field]
                line.update({f"gflops_measured{suffix}": m, f"relative_difference{suffix}": round((m - p) / p, 4),
                             f"delta_gflops_measured{suffix}": round(dm, 2),
                             f"delta_relative_difference{suffix}": round((dm - dp) / dp, 4) if dp else None})
            lines.append(line)
        out[name] = lines
    return out


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def print_comparison(comparison: dict, height: int, width: int) -> None:
    for name, lines in comparison.items():
        print(f"\n{name}: GFLOPs (1 multiply-add = 1 FLOP) of an eval forward, one {height}x{width} image. "
              f"A = no self-attention quadratic matmuls, no deformable-attention op; B = A without the auxiliary "
              f"decoder layers' heads; full = everything")
        print(f"  {'row':14s} {'paper':>7s} | {'A':>7s} {'rel':>7s} {'B':>7s} {'rel':>7s} | {'Δpaper':>7s} "
              f"{'ΔA':>6s} {'rel':>7s} {'ΔB':>6s} {'rel':>7s} | {'full':>7s}")
        for ln in lines:
            print(f"  {ln['row']:14s} {ln['gflops_paper']:7.2f} | {ln['gflops_measured']:7.2f} "
                  f"{_pct(ln['relative_difference']):>7s} {ln['gflops_measured_no_aux_heads']:7.2f} "
                  f"{_pct(ln['relative_difference_no_aux_heads']):>7s} | {ln['delta_gflops_paper']:7.2f} "
                  f"{ln['delta_gflops_measured']:6.2f} {_pct(ln['delta_relative_difference']):>7s} "
                  f"{ln['delta_gflops_measured_no_aux_heads']:6.2f} "
                  f"{_pct(ln['delta_relative_difference_no_aux_heads']):>7s} | {ln['gflops_full']:7.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--output", default=str(REPORT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    measured = measure(args.height, args.width)
    comparison = compare(measured)
    print_comparison(comparison, args.height, args.width)
    payload = {"benchmark": "benchmarks/flops.py", "command": "python benchmarks/flops.py",
               "convention": "1 multiply-add = 1 FLOP; gflops_paper_convention leaves out the self-attention's "
                             "quadratic matmuls and the deformable-attention op; gflops_full counts them",
               "torch": torch.__version__, **measured, "comparison": comparison}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
