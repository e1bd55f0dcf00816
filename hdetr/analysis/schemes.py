"""The four schemes side by side on their shipped references: what notebook 02 compares.

    python -m hdetr.analysis.schemes reports/analysis [--images 300]

For each reference of ``SCHEME_REFERENCES`` that is shipped (``hdetr.list_references()``):
the one-to-one queries' COCO AP without and with class-wise NMS and their duplicates per
object on the first ``images`` synthetic val images (``hdetr.analysis.branch_table``; the
epoch and layer schemes have one query set, evaluated whole), and, from the reference's
training log, positives per object and the IoU of the matched predictions per decoder layer
(mean over the second half of training). Writes ``schemes.json`` and ``schemes.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hdetr.analysis.dynamics import assignment_curves
from hdetr.analysis.duplicates import branch_table
from hdetr.evaluation.duplicates import DUPLICATE_IOU, NMS_IOU, SCORE_THRESHOLD
from hdetr.outputs import ONE2MANY, ONE2ONE

SCHEME_REFERENCES = {"baseline": "synthetic_baseline", "hybrid_branch": "synthetic_hybrid_branch",
                     "hybrid_epoch": "synthetic_hybrid_epoch", "hybrid_layer": "synthetic_hybrid_layer"}
REPORT_JSON, REPORT_MD = "schemes.json", "schemes.md"


def training_statistics(log: Path) -> dict[str, dict[str, float]]:
    """``"<group>/layer<i>"`` -> {"positives", "matched_iou"}: means over the second half of training."""
    curves = assignment_curves(log)
    last = max(step for steps, _ in curves.values() for step in steps)
    out: dict[str, dict[str, float]] = {}
    for (group, layer, field), (steps, values) in curves.items():
        if layer < 0:
            continue  # the encoder proposals: the same one-to-one matching in every scheme
        kept = [v for s, v in zip(steps, values) if s > last / 2]
        out.setdefault(f"{group}/layer{layer}", {})[field] = statistics.fmean(kept)
    return out


def scheme_report(images: int = 300, *, references_dir: str | Path | None = None) -> dict[str, Any]:
    from hdetr.checkpoints.references import FILES_DIR, list_references, load_reference, read_manifest
    from hdetr.data import build_dataset

    shipped = set(list_references(references_dir))
    manifest = read_manifest(references_dir)
    rows = []
    dataset = None
    for scheme, name in SCHEME_REFERENCES.items():
        if name not in shipped:
            continue
        model = load_reference(name, references_dir)
        dataset = dataset or build_dataset(model.experiment_config.data, "val")
        table = branch_table(model, dataset, max_images=images, nms_iou=NMS_IOU, score_threshold=SCORE_THRESHOLD,
                             dup_iou=DUPLICATE_IOU, branches=[ONE2ONE])
        cfg = model.config
        rows.append({"scheme": scheme, "reference": name, "steps": model.trained["steps"],
                     "queries_train": cfg.num_queries, "queries_inference": cfg.num_queries_one2one,
                     "k": cfg.k_one2many if scheme != "baseline" else None,
                     "branch": [asdict(r) for r in table],
                     "training": training_statistics(Path(references_dir or FILES_DIR) / manifest[name]["metrics_log"])})
    return {"images": min(images, len(dataset)) if dataset is not None else 0, "nms_iou": NMS_IOU,
            "score_threshold": SCORE_THRESHOLD, "dup_iou": DUPLICATE_IOU, "rows": rows,
            "command": f"python -m hdetr.analysis.schemes reports/analysis --images {images}"}


def schemes_markdown(report: dict[str, Any]) -> str:
    lines = ["| scheme | queries (train / inference) | AP without NMS | AP with NMS | NMS gap | duplicates / object "
             "| positives / object, last layer (one-to-one; one-to-many) | matched IoU one-to-one, layers 0→last |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        raw, nms = (next(b for b in row["branch"] if b["nms"] is flag) for flag in (False, True))
        layers = sorted((k for k in row["training"] if k.startswith(ONE2ONE)), key=lambda k: int(k.split("layer")[1]))
        last = layers[-1].split("/")[1]
        many = row["training"].get(f"{ONE2MANY}/{last}", {}).get("positives")
        positives = f"{row['training'][layers[-1]]['positives']:.2f}" + (f"; {many:.2f}" if many else "")
        ious = " → ".join(f"{row['training'][k]['matched_iou']:.2f}" for k in layers)
        lines.append(f"| {row['scheme']} | {row['queries_train']} / {row['queries_inference']} | "
                     f"{100 * raw['AP']:.1f} | {100 * nms['AP']:.1f} | {100 * (nms['AP'] - raw['AP']):+.1f} | "
                     f"{raw['duplicates_per_object']:.2f} | {positives} | {ious} |")
    return "\n".join(lines)


def write_schemes_report(out_dir: str | Path, images: int = 300) -> Path:
    report = scheme_report(images)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n")
    text = ["# The four schemes on their shipped references", "",
            f"Regenerate with `{report['command']}`.", "",
            f"Each scheme's reference (`hdetr.list_references()`, a half-width ResNet-18 detector trained 1500 steps "
            f"on the synthetic set by `bash scripts/train_references.sh`, one seed each) on the first "
            f"{report['images']} synthetic val images: its one-to-one queries (the epoch and layer schemes: their one "
            f"set) without NMS and after class-wise NMS at IoU {report['nms_iou']}; duplicates per object counted "
            f"as in `duplicates.md` (score > {report['score_threshold']}, IoU > {report['dup_iou']}). Positives and "
            f"matched IoU come from each reference's training log (means over the second half of training). One "
            f"seed per scheme: differences of a few points are within the seed spread that "
            f"`reports/science/cpu_regime.md` measures.", "", schemes_markdown(report), ""]
    path = out / REPORT_MD
    path.write_text("\n".join(text))
    return path


def read_schemes_report(folder: str | Path = "reports/analysis") -> dict[str, Any]:
    return json.loads((Path(folder) / REPORT_JSON).read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hdetr.analysis.schemes", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args(argv)
    print(write_schemes_report(args.out_dir, args.images).read_text())


if __name__ == "__main__":
    main()
