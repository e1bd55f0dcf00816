"""Package finished training runs as the shipped reference files.

    python -m hdetr.checkpoints.make_references RUNS_DIR [--out DIR]

For each reference (``REFERENCE_PRESETS``: name -> the preset it trains) reads
``RUNS_DIR/<name>/checkpoint_last.pth`` and writes ``<out>/<name>.pt`` (weights in fp16,
the ExperimentConfig, the class names, the steps, the training command and the final
evaluation), copies the run's ``metrics.jsonl`` to ``<out>/<name>_metrics.jsonl`` and
writes ``<out>/manifest.json`` (sha256 and size of each file, the commands). A file over
``MAX_BYTES`` is refused: the package ships them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from hdetr.errors import UserError
from hdetr.checkpoints.references import FILES_DIR, MANIFEST, sha256_of

MAX_BYTES = 10_000_000  # 10 MB per file: the wheel carries them
REFERENCE_PRESETS = {
    "synthetic_baseline": "synthetic_reference_baseline",
    "synthetic_hybrid_branch": "synthetic_reference_hybrid_branch",
    "synthetic_hybrid_epoch": "synthetic_reference_hybrid_epoch",
    "synthetic_hybrid_layer": "synthetic_reference_hybrid_layer",
}
TRAIN_SCRIPT = "bash scripts/train_references.sh"
# Eval-row fields that are bookkeeping, not results
_NOT_METRICS = ("type", "epoch", "iter", "time")


def training_command(name: str, preset: str) -> str:
    """The documented command that trains reference ``name`` (the script runs it in 250-step segments)."""
    return f"hdetr train --preset {preset} --output-dir runs/references/{name}"


def final_metrics(run_dir: Path) -> dict[str, Any]:
    """The last eval row of the run's metrics.jsonl (AP values as fractions), ``{}`` if it has none."""
    from hdetr.engine.metrics_log import read_metrics

    rows = [r for r in read_metrics(run_dir) if r.get("type") == "eval"]
    return {k: v for k, v in rows[-1].items() if k not in _NOT_METRICS} if rows else {}


def reference_payload(run_dir: Path, name: str, preset: str) -> dict[str, Any]:
    """The reference file's content from a finished run folder."""
    from hdetr.config.experiment import experiment_from_dict
    from hdetr.data import build_dataset
    from hdetr.checkpoints.training import checkpoint_format, read_checkpoint

    path = run_dir / "checkpoint_last.pth"
    ckpt = read_checkpoint(path)
    if checkpoint_format(ckpt, str(path)) != "hdetr":
        raise UserError(f"{path}: not an hdetr training checkpoint (expected the checkpoint_last.pth of hdetr train)")
    config = experiment_from_dict(ckpt["config"], source=f"{path} (its config)")
    # the names of the labels the model was trained on, from the dataset its config builds
    class_names = list(build_dataset(config.data, "val").class_names)
    return {
        "model": {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()},
        "config": config.to_dict(),
        "class_names": class_names,
        "trained": {"steps": int(ckpt["global_step"]), "command": training_command(name, preset),
                    "script": TRAIN_SCRIPT, "metrics": final_metrics(run_dir)},
    }


def build(runs_dir: str | Path, out_dir: str | Path = FILES_DIR,
          presets: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Write every reference of ``presets`` (default ``REFERENCE_PRESETS``) from ``runs_dir`` into ``out_dir``;
    returns the manifest's entries."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    presets = dict(presets or REFERENCE_PRESETS)
    absent = [name for name in presets if not (runs_dir / name / "checkpoint_last.pth").is_file()]
    if absent:
        raise UserError(f"{runs_dir}: no finished run for {', '.join(absent)} (expected <name>/checkpoint_last.pth); "
                        f"train them with `{TRAIN_SCRIPT} {runs_dir}`")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, preset in presets.items():
        run_dir = runs_dir / name
        target = out_dir / f"{name}.pt"
        torch.save(reference_payload(run_dir, name, preset), target)
        size = target.stat().st_size
        if size > MAX_BYTES:
            target.unlink()
            raise UserError(f"{target}: {size / 1e6:.2f} MB, over the {MAX_BYTES / 1e6:g} MB a shipped reference may "
                            f"take; train a smaller model (e.g. model.backbone=resnet18_half, fewer queries)")
        log = out_dir / f"{name}_metrics.jsonl"
        if (run_dir / "metrics.jsonl").is_file():
            shutil.copyfile(run_dir / "metrics.jsonl", log)
        entries[name] = {"file": target.name, "sha256": sha256_of(target), "bytes": size,
                         "metrics_log": log.name if log.is_file() else None, "preset": preset,
                         "command": training_command(name, preset), "script": TRAIN_SCRIPT}
    # references not rebuilt now keep their entries (``--only``: the others' runs need not be here)
    kept = {}
    if (out_dir / MANIFEST).is_file():
        kept = {name: entry for name, entry in json.loads((out_dir / MANIFEST).read_text())["references"].items()
                if name not in entries}
    merged = {**kept, **entries}
    order = [n for n in REFERENCE_PRESETS if n in merged] + [n for n in merged if n not in REFERENCE_PRESETS]
    manifest = {"about": f"hdetr reference checkpoints; regenerate with `{TRAIN_SCRIPT}`",
                "references": {name: merged[name] for name in order}}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdetr.checkpoints.make_references", description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", help="folder holding <name>/checkpoint_last.pth for each reference")
    parser.add_argument("--out", default=str(FILES_DIR), help="where the files go (default: the package's files)")
    parser.add_argument("--only", nargs="*", choices=list(REFERENCE_PRESETS),
                        help="rebuild these references only; the manifest keeps the others' entries")
    args = parser.parse_args(argv)
    try:
        presets = {name: REFERENCE_PRESETS[name] for name in args.only} if args.only else None
        entries = build(args.runs_dir, args.out, presets)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, entry in entries.items():
        print(f"{name}: {entry['file']} {entry['bytes'] / 1e6:.2f} MB sha256 {entry['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
