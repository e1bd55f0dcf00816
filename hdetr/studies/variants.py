"""Train and evaluate a list of variants over seeds: the measured half of every report.

A ``Variant`` is a label plus ``section.field=value`` overrides on a study's base
``ExperimentConfig`` (the same overrides ``hdetr train --set`` takes), and the
paper's numbers for its counterpart. ``run_study`` trains every (variant, seed)
with ``hdetr.engine.train`` into its own folder and returns ``ComparisonRow`` s
(``hdetr.studies.rows``) for the report writers; the runs' ``metrics.jsonl`` files
stay in the run folders (``curves`` reads them back for figures).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from hdetr.config.experiment import ExperimentConfig, apply_overrides
from hdetr.studies.rows import ComparisonRow


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


def study_requests(base: ExperimentConfig, variants: Sequence[Variant], seeds: Sequence[int],
                   runs_dir: str | Path) -> list:
    """One RunRequest per (variant, seed) into ``runs_dir/<variant>/seed<seed>``; every config validated
    now, so a bad override fails in seconds, not after an hour of training."""
    from hdetr.studies.runs import RunRequest

    runs_dir = Path(runs_dir)
    return [RunRequest(v.key, s, variant_config(base, v, s), runs_dir / v.key / f"seed{s}")
            for v in variants for s in seeds]


def study_rows(variants: Sequence[Variant], outcomes: Sequence) -> list[ComparisonRow]:
    """One ComparisonRow per variant from its runs' outcomes (hdetr.studies.runs.RunOutcome); a run that
    did not finish is left out of ``measured`` and named in ``details`` with its log tail."""
    from hdetr.studies.run_records import load_record

    rows = []
    for variant in variants:
        measured, details, records = [], [], []
        for outcome in (o for o in outcomes if o.request.key == variant.key):
            req = outcome.request
            run = {"seed": req.seed, "run": f"{variant.key}/seed{req.seed}", "status": outcome.status}
            if not outcome.ok:
                details.append({**run, "steps": None, "log_tail": outcome.log_tail})
                continue
            record = load_record(req.run_dir, variant.key, req.seed, req.config.to_dict())
            records.append(record)
            measured.append({k: float(v) for k, v in (outcome.result.get("metrics") or {}).items()
                             if isinstance(v, (int, float))})
            details.append({**run, "steps": record.steps, "budget": record.budget, "short": record.short,
                            "world_size": outcome.result.get("world_size", 1),
                            "stopped_by": outcome.result.get("stopped_by"),
                            "train_seconds": outcome.result.get("train_seconds"),
                            "sec_per_iter": None if record.sec_per_iter is None else round(record.sec_per_iter, 4),
                            "last_loss_giou": _last_train_value(req.run_dir, "loss_giou"),
                            "eval_steps": record.eval_steps, "eval_ap": [round(v, 2) for v in record.eval_ap]})
        rows.append(ComparisonRow(label=variant.label, measured=measured, paper=dict(variant.paper),
                                  paper_source=variant.paper_source, details=details, records=records))
    return rows


def run_study(base: ExperimentConfig, variants: Sequence[Variant], seeds: Sequence[int], runs_dir: str | Path, *,
              jobs: int = 1, log: Callable[[str], None] = print) -> list[ComparisonRow]:
    """Train every variant with every seed on this machine, ``jobs`` runs at a time; one row per variant.

    Runs go to ``runs_dir/<variant>/seed<seed>`` (hdetr.studies.runs): a finished run with the
    same config is kept, an interrupted one resumes, a failed one is named with the tail of its log.
    """
    from hdetr.studies.runs import execute_runs

    outcomes = execute_runs(study_requests(base, variants, seeds, runs_dir), jobs=jobs, log=log)
    return study_rows(variants, outcomes)


def _last_train_value(run_dir: Path, key: str) -> float | None:
    """``key`` of the last train row of a run's metrics.jsonl (the one-to-one loss at the end), or None."""
    from hdetr.engine import read_metrics

    rows = [r for r in read_metrics(run_dir) if r.get("type") == "train" and key in r]
    return round(float(rows[-1][key]), 4) if rows else None


def curves(row: ComparisonRow, key: str, kind: str = "train") -> list[tuple[list[int], list[float]]]:
    """Per run of ``row``: (steps, values) of ``key`` in the run's metrics.jsonl rows of type ``kind``."""
    from hdetr.engine import read_metrics

    result = []
    for record in row.records:
        rows = [r for r in read_metrics(record.run_dir) if r.get("type") == kind and key in r]
        result.append(([int(r["step"]) for r in rows], [float(r[key]) for r in rows]))
    return result
