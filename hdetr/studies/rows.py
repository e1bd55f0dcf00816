"""One row of a report: a variant's measured runs (a metrics dict per seed) beside the paper's numbers.

Studies produce ``ComparisonRow`` s (``hdetr.studies.variants.study_rows``, ``hdetr.studies.launch``,
``hdetr.studies.from_checkpoints``); the writers of ``hdetr.reports`` put them in tables and figures.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ComparisonRow:
    """One variant: its measured runs (one metrics dict per seed) and the paper's numbers for it.

    Attributes:
        label: what the row is, e.g. ``"H-Deformable-DETR (hybrid branch)"``.
        measured: per seed, metric name -> value in [0, 1] as the evaluator returns it.
        paper: metric name -> the paper's value in percent (PaperCell or float), for the
            paper's counterpart of this variant; empty when the paper has none.
        paper_source: where the paper's numbers come from, e.g. ``"Table 1, R50 12 epochs"``.
        details: per-run facts worth keeping (seed, iterations, wall seconds, overrides ...).
    """

    label: str
    measured: list[dict[str, float]]
    paper: dict[str, Any] = dataclasses.field(default_factory=dict)
    paper_source: str = ""
    details: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # the finished runs (hdetr.studies.run_records.RunRecord) while their folders exist: curves, wall time
    records: list[Any] = dataclasses.field(default_factory=list, repr=False)

    @property
    def short_runs(self) -> list[dict[str, Any]]:
        """Details of the runs that stopped before their step budget (their row does not compare equal budgets)."""
        return [d for d in self.details if d.get("short")]

    @property
    def failed_runs(self) -> list[dict[str, Any]]:
        """Details of the runs that did not finish (not in ``measured``)."""
        return [d for d in self.details if d.get("status") == "failed"]

    def values(self, metric: str) -> list[float]:
        """Defined measured values of ``metric`` in percent (undefined ``-1`` entries dropped)."""
        return [100.0 * run[metric] for run in self.measured if metric in run and run[metric] >= 0]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return sum(values) / len(values) if values else None
