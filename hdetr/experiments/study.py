"""Train and evaluate a list of variants over seeds: the measured half of every report.

A ``Variant`` is a label plus ``section.field=value`` overrides on a study's base
``ExperimentConfig`` (the same overrides ``hdetr train --set`` takes), and the
paper's numbers for its counterpart. ``run_study`` trains every (variant, seed)
with ``hdetr.engine.train`` into its own folder and returns ``ComparisonRow`` s
for ``hdetr.experiments.report.write_report``; the runs' ``metrics.jsonl`` files
stay in the run folders (``curves`` reads them back for figures).
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hdetr.config.experiment import ExperimentConfig, apply_overrides
from hdetr.experiments.report import ComparisonRow


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration of a study.

    key: folder-safe name (``baseline``, ``hybrid_branch``, ``k1`` ...).
    label: the row label in reports.
    overrides: ``section.field=value`` strings applied to the study's base config.
    paper: metric -> the paper's value for its counterpart (PaperCell or float; percent).
    paper_source: where ``paper`` comes from (table, backbone, schedule).
    """

    key: str
    label: str
    overrides: tuple[str, ...] = ()
    paper: dict[str, Any] = dataclasses.field(default_factory=dict)
    paper_source: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.key):
            raise ValueError(f"Variant key {self.key!r}: use letters, digits, '_', '-', '.' (it names a folder)")


def variant_config(base: ExperimentConfig, variant: Variant, seed: int) -> ExperimentConfig:
    """The validated config of one run (``variant``'s overrides and ``train.seed``)."""
    return apply_overrides(base, [*variant.overrides, f"train.seed={seed}"])


def run_study(base: ExperimentConfig, variants: Sequence[Variant], seeds: Sequence[int], runs_dir: str | Path, *,
              log: Callable[[str], None] = print) -> list[ComparisonRow]:
    """Train every variant with every seed; one ComparisonRow per variant (runs in seed order).

    Every config is built (and validated) before the first run starts, so a bad
    override fails in seconds, not after an hour of training.
    """
    from hdetr.engine import train

    runs_dir = Path(runs_dir)
    configs = {(v.key, s): variant_config(base, v, s) for v in variants for s in seeds}
    rows = []
    for variant in variants:
        measured, details = [], []
        for seed in seeds:
            out = runs_dir / variant.key / f"seed{seed}"
            start = time.perf_counter()
            log(f"[{variant.key} seed {seed}] training into {out}")
            result = train(configs[variant.key, seed], out)
            metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items() if isinstance(v, (int, float))}
            measured.append(metrics)
            details.append({"seed": seed, "steps": result.get("global_step"),
                            "last_loss_giou": _last_train_value(out, "loss_giou"),
                            "train_seconds": result.get("train_seconds"), "stopped_by": result.get("stopped_by"),
                            "wall_seconds": round(time.perf_counter() - start, 1), "run_dir": str(out)})
            log(f"[{variant.key} seed {seed}] AP {100 * metrics.get('AP', float('nan')):.1f} after "
                f"{result.get('global_step')} steps ({details[-1]['wall_seconds']:.0f}s)")
        rows.append(ComparisonRow(label=variant.label, measured=measured, paper=dict(variant.paper),
                                  paper_source=variant.paper_source, details=details))
    return rows


def _last_train_value(run_dir: Path, key: str) -> float | None:
    """``key`` of the last train row of a run's metrics.jsonl (the one-to-one loss at the end), or None."""
    from hdetr.engine import read_metrics

    rows = [r for r in read_metrics(run_dir) if r.get("type") == "train" and key in r]
    return round(float(rows[-1][key]), 4) if rows else None


def curves(row: ComparisonRow, key: str, kind: str = "train") -> list[tuple[list[int], list[float]]]:
    """Per run of ``row``: (steps, values) of ``key`` in the run's metrics.jsonl rows of type ``kind``."""
    from hdetr.engine import read_metrics

    result = []
    for details in row.details:
        rows = [r for r in read_metrics(details["run_dir"]) if r.get("type") == kind and key in r]
        result.append(([int(r["step"]) for r in rows], [float(r[key]) for r in rows]))
    return result


def copy_run_logs(rows: Sequence[ComparisonRow], dest: str | Path) -> list[Path]:
    """Copy each run's metrics.jsonl and config.yaml to ``dest/<run folder>_{metrics.jsonl,config.yaml}``.

    The runs' checkpoints stay behind (they are large); the logs are what a reader
    needs to check a report's numbers and curves.
    """
    dest = Path(dest)
    copied = []
    for row in rows:
        for details in row.details:
            run_dir = Path(details["run_dir"])
            stem = f"{run_dir.parent.name}_{run_dir.name}"
            for name in ("metrics.jsonl", "config.yaml"):
                if (run_dir / name).is_file():
                    dest.mkdir(parents=True, exist_ok=True)
                    copied.append(Path(shutil.copyfile(run_dir / name, dest / f"{stem}_{name}")))
    return copied
