"""Expected wall time, GPU memory and disk of each paper-scale run, derived from the paper's cost tables.

Derived, not measured: the paper's training minutes per epoch (8 V100s, batch 2 per
GPU; Table 6 for the schemes, Table 7 for the hybrid branch against its queries)
times the preset's epochs; the GPU memory per GPU from Table 7 (and Table 6's note
for the epoch / layer schemes); the disk of a run from its parameter count (the
two checkpoints a run keeps, ``checkpoint_last.pth`` and ``checkpoint_best.pth``,
each with the fp32 weights and AdamW's two moments of the trainable ones).
LVIS (Table 2) has no minutes in the paper: its epochs are scaled from COCO's by
the number of training images (LVIS v1 train 100,170 vs COCO train2017 117,266).
"""
from __future__ import annotations

import functools

from hdetr.paper import paper_table

V100S = 8
COCO_TRAIN_IMAGES, LVIS_TRAIN_IMAGES = 117_266, 100_170
# the schemes' GPU memory of Table 6's note (MB per GPU); the baseline's and the branch's come from Table 7
TABLE6_NOTE_MEMORY_MB = {"hybrid_branch": 7728, "hybrid_layer": 7722, "hybrid_epoch": 7711}


@functools.lru_cache(maxsize=None)
def _parameters(preset: str) -> tuple[int, int]:
    """(all, trainable) parameters of a preset's model, built on the meta device (no memory, no time)."""
    import torch

    from hdetr import build_model
    from hdetr.config.presets import get_preset

    with torch.device("meta"):
        model = build_model(get_preset(preset).model)
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad))


def _minutes_and_memory(scheme: str, total_queries: int) -> tuple[float, float | None, str]:
    t6, t7 = paper_table("schemes_table6"), paper_table("cost_table7")
    rows7 = {int(r["total_queries"].number): r for r in t7.records()}
    if scheme == "hybrid_branch" and total_queries in rows7:
        r = rows7[total_queries]
        return r["train_min_R50"].number, r["memory_MB_R50"].number, f"Table 7, {total_queries} queries"
    if scheme == "baseline" and total_queries == 300:
        r = rows7[300]
        return r["train_min_R50"].number, r["memory_MB_R50"].number, "Table 7, 300 queries"
    label = {"baseline": "Deformable-DETR (1800 queries)", "hybrid_epoch": "Hybrid epoch (1800 queries)",
             "hybrid_layer": "Hybrid layer (1800 queries)", "hybrid_branch": "Hybrid branch"}[scheme]
    minutes = t6.find(variant=label)["train_min_per_epoch"].number
    return minutes, TABLE6_NOTE_MEMORY_MB.get(scheme), "Table 6"


def expected_run_cost(preset: str) -> dict:
    """Wall hours on 8 V100s, GPU memory per GPU (MB, None if the paper has none) and disk (GB) of one run."""
    from hdetr.config.presets import get_preset

    cfg = get_preset(preset)
    m = cfg.model
    queries = m.num_queries  # n + T, or G n (Group DETR)
    minutes, memory, source = _minutes_and_memory(m.scheme, queries)
    scale = LVIS_TRAIN_IMAGES / COCO_TRAIN_IMAGES if cfg.data.kind == "lvis" else 1.0
    params, trainable = _parameters(preset)
    checkpoint_gb = (4 * params + 8 * trainable) / 1e9
    return {"preset": preset, "epochs": cfg.train.epochs, "minutes_per_epoch": round(minutes * scale, 1),
            "wall_hours_8xV100": round(minutes * scale * cfg.train.epochs / 60, 1), "gpu_memory_mb": memory,
            "disk_gb": round(2 * checkpoint_gb, 2), "parameters": params, "source": source
            + (f", scaled by LVIS/COCO training images ({scale:.2f})" if scale != 1.0 else "")}


def expected_costs_markdown(presets) -> str:
    """The table of ``expected_run_cost`` for each preset (one line each) and how it is derived."""
    lines = ["| preset | epochs | min/epoch | wall time (8 V100) | GPU memory per GPU | disk per run | from |",
             "|---|---|---|---|---|---|---|"]
    for preset in presets:
        c = expected_run_cost(preset)
        memory = f"{c['gpu_memory_mb']:.0f} MB" if c["gpu_memory_mb"] else "not reported"
        lines.append(f"| {preset} | {c['epochs']} | {c['minutes_per_epoch']:g} | {c['wall_hours_8xV100']:g} h | "
                     f"{memory} | {c['disk_gb']:g} GB | {c['source']} |")
    return "\n".join(lines)


def expected_costs_note(presets) -> str:
    """One report note: the derived cost of each paper-scale run."""
    parts = []
    for preset in presets:
        c = expected_run_cost(preset)
        memory = f"{c['gpu_memory_mb']:.0f} MB/GPU" if c["gpu_memory_mb"] else "memory not reported"
        parts.append(f"{preset}: ~{c['wall_hours_8xV100']:g} h on 8 V100s, {memory}, {c['disk_gb']:g} GB of "
                     f"checkpoints")
    return ("Expected cost per run, derived from the paper's training minutes per epoch and memory (not measured; "
            "see docs/paper_scale.md): " + "; ".join(parts) + ".")
