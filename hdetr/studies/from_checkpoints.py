"""Tables filled by evaluating given checkpoint files instead of training (the notebooks' ``CHECKPOINTS``).

``CHECKPOINTS`` maps a study's variant keys to checkpoint files (one path, or one per
seed): hdetr checkpoints or official H-Deformable-DETR ones (``{"model", "args"}``),
read with ``hdetr eval``'s loader (``hdetr.checkpoints.build.build_from_checkpoint``) and
scored on the study's validation set (its ``data`` section, e.g. ``DATA_ROOT``).

``official_rows`` puts each file beside the official README's number for it
(``official_checkpoints_readme`` in the paper tables), matched by the README's
checkpoint name inside the file name and the epochs (``12ep`` / ``36eps``) in it;
``hdetr.reports.comparison.write_official_report`` writes them as ``official_checkpoints.md``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from hdetr.config.experiment import ExperimentConfig
from hdetr.errors import UserError
from hdetr.paper import PaperCell, paper_table
from hdetr.studies.rows import ComparisonRow
from hdetr.studies.variants import Variant

OFFICIAL_TABLE = "official_checkpoints_readme"


def _data_overrides(base: ExperimentConfig) -> list[str]:
    return [f"data.{k}={json.dumps(v)}" for k, v in base.data.to_dict().items()]


def evaluate_checkpoint(path: str | Path, base: ExperimentConfig, *, device: str = "auto",
                        batch_size: int = 2) -> dict[str, Any]:
    """COCO / LVIS metrics (in [0, 1]) of one checkpoint file on ``base``'s validation set.

    ``base.train.eval_max_images`` > 0 scores the first N images only (as training runs do).
    The result also names the file and its format (hdetr or official).
    """
    from hdetr.checkpoints.build import build_from_checkpoint
    from hdetr.data import build_dataset
    from hdetr.engine.distributed import resolve_device
    from hdetr.engine.evaluator import evaluate_model

    path = Path(path)
    if not path.is_file():
        raise UserError(f"CHECKPOINTS: {path} is not a file")
    model, cfg, fmt = build_from_checkpoint(path, None, None, _data_overrides(base))
    torch_device = resolve_device(device)
    model.to(torch_device)
    metrics = evaluate_model(model, build_dataset(cfg.data, "val"), batch_size=batch_size, device=torch_device,
                             max_images=base.train.eval_max_images, amp=base.train.amp)
    return {"checkpoint": str(path), "format": fmt, **metrics}


def _paths(checkpoints: Mapping[str, Any], known: Sequence[str]) -> dict[str, list[Path]]:
    out = {}
    for key, value in checkpoints.items():
        if key not in known:
            raise UserError(f"CHECKPOINTS key {key!r}: expected a variant of this study ({', '.join(known)})")
        paths = [value] if isinstance(value, (str, Path)) else list(value)
        if not paths:
            raise UserError(f"CHECKPOINTS[{key!r}]: no file given")
        out[key] = [Path(p) for p in paths]
    return out


def checkpoint_rows(base: ExperimentConfig, variants: Sequence[Variant], checkpoints: Mapping[str, Any], *,
                    device: str = "auto", log=print) -> tuple[list[ComparisonRow], list[str]]:
    """The study's rows, each variant's runs replaced by evaluations of its checkpoint files.

    Returns (rows, notes): a variant without a checkpoint keeps an empty row, and the
    notes say which rows are evaluated checkpoints and which are missing.
    """
    by_key = _paths(checkpoints, [v.key for v in variants])
    rows, evaluated = [], []
    for variant in variants:
        measured, details = [], []
        for path in by_key.get(variant.key, []):
            result = evaluate_checkpoint(path, base, device=device)
            log(f"[{variant.key}] {path.name} ({result['format']}): AP {100 * result['AP']:.1f}")
            measured.append({k: float(v) for k, v in result.items() if isinstance(v, (int, float))})
            # run_dir: an hdetr checkpoint's folder holds its run's metrics.jsonl (curves, copied logs)
            details.append({"checkpoint": path.name, "format": result["format"], "num_images": result.get("num_images"),
                            "status": "evaluated", "run_dir": str(path.parent)})
            evaluated.append(f"{variant.key}: {path.name}")
        rows.append(ComparisonRow(label=variant.label, measured=measured, paper=dict(variant.paper),
                                  paper_source=variant.paper_source, details=details))
    notes = [f"Measured numbers are evaluations of given checkpoint files (CHECKPOINTS), not training runs: "
             f"{'; '.join(evaluated)}."]
    missing = [v.key for v in variants if v.key not in by_key]
    if missing:
        notes.append(f"Missing rows (no checkpoint given): {', '.join(missing)}.")
    return rows, notes


def official_match(path: str | Path) -> tuple[str, int] | None:
    """The official README row (name, epochs) a checkpoint file is, by its file name; None if none."""
    stem = Path(path).stem
    table = paper_table(OFFICIAL_TABLE)
    names = sorted({str(r["checkpoint"]) for r in table.records()}, key=len, reverse=True)
    name = next((n for n in names if n in stem), None)  # longest first: drop_path0.5_swin_large... before swin_large...
    if name is None:
        return None
    rows = [r for r in table.records() if str(r["checkpoint"]) == name]
    epochs = re.search(r"(\d+)_?eps?(?![a-z])", stem.replace(name, ""))
    if epochs:
        rows = [r for r in rows if r["epochs"].number == int(epochs.group(1))]
    return (name, int(rows[0]["epochs"].number)) if len(rows) == 1 else None


def official_rows(rows: Sequence[ComparisonRow]) -> list[ComparisonRow]:
    """One row per evaluated checkpoint file, beside the official README's AP for it (if the name is known)."""
    table = paper_table(OFFICIAL_TABLE)
    out = []
    for row in rows:
        for measured, details in zip(row.measured, row.details):
            match = official_match(details["checkpoint"])
            paper: dict[str, PaperCell] = {}
            source = "not an official checkpoint name"
            if match is not None:
                paper = {"AP": table.find(checkpoint=match[0], epochs=match[1])["AP"]}
                source = f"official README, {match[0]}, {match[1]} epochs"
            out.append(ComparisonRow(label=details["checkpoint"], measured=[measured], paper=paper,
                                     paper_source=source, details=[{**details, "variant": row.label}]))
    return out
