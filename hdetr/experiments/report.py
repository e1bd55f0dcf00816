"""Report writers: measured numbers beside the paper's, as markdown + JSON, with the command.

Every report says at what scale it was measured and carries the command that
regenerates it, so no number in ``reports/`` lacks its provenance. Measured
metrics are COCO/LVIS evaluator values in [0, 1] (``-1`` = undefined, e.g. APs
without small objects); reports show them in percent like the paper.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Sequence

from hdetr.experiments.paper import PaperCell, PaperTable


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

    def values(self, metric: str) -> list[float]:
        """Defined measured values of ``metric`` in percent (undefined ``-1`` entries dropped)."""
        return [100.0 * run[metric] for run in self.measured if metric in run and run[metric] >= 0]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return sum(values) / len(values) if values else None


def mean_and_spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of ``values``; (None, None) if empty, spread None for one value."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_measured(values: Sequence[float]) -> str:
    """``"31.2 ± 1.1"`` (mean ± sd over seeds), ``"31.2"`` for one run, ``"n/a"`` for none."""
    mean, spread = mean_and_spread(values)
    if mean is None:
        return "n/a"
    return f"{mean:.1f}" if spread is None else f"{mean:.1f} ± {spread:.1f}"


def format_paper(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, PaperCell):
        return str(value)
    return f"{float(value):.1f}"


def paper_number(value: Any) -> float | None:
    if isinstance(value, PaperCell):
        return value.number
    return None if value is None else float(value)


def comparison_markdown(rows: Sequence[ComparisonRow], metrics: Sequence[str],
                        reference: str | None = None) -> str:
    """The side-by-side table: per metric a measured column and a paper column.

    With ``reference`` (a row label, usually the baseline), a last column gives each
    row's AP gain over it, measured and in the paper, so the paper's claim (hybrid
    beats the baseline) can be read against what was measured.
    """
    primary = metrics[0]
    head = ["variant", "runs"]
    for metric in metrics:
        head += [f"{metric} measured", f"{metric} paper"]
    ref_row = next((r for r in rows if r.label == reference), None) if reference else None
    if ref_row is not None:
        head.append(f"Δ{primary} vs {reference} (measured / paper)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label, str(len(row.measured))]
        for metric in metrics:
            cells += [format_measured(row.values(metric)), format_paper(row.paper.get(metric))]
        if ref_row is not None:
            cells.append("-" if row is ref_row else _gain(row, ref_row, primary))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gain(row: ComparisonRow, ref: ComparisonRow, metric: str) -> str:
    measured = row.mean(metric), ref.mean(metric)
    paper = paper_number(row.paper.get(metric)), paper_number(ref.paper.get(metric))
    m = "n/a" if None in measured else f"{measured[0] - measured[1]:+.1f}"
    p = "-" if None in paper else f"{paper[0] - paper[1]:+.1f}"
    return f"{m} / {p}"


def per_run_markdown(rows: Sequence[ComparisonRow], metrics: Sequence[str], detail_keys: Sequence[str]) -> str:
    """One line per run: variant, its details (seed, iterations ...), every metric in percent."""
    head = ["variant", *detail_keys, *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for i, run in enumerate(row.measured):
            details = row.details[i] if i < len(row.details) else {}
            cells = [row.label] + [_plain(details.get(k, "")) for k in detail_keys]
            cells += ["n/a" if run.get(m, -1) < 0 else f"{100 * run[m]:.1f}" for m in metrics]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plain(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def environment() -> dict[str, Any]:
    """Where the numbers were measured (so a reader can judge the scale)."""
    import torch

    import hdetr

    return {"hdetr": hdetr.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_report(out_dir: str | Path, *, name: str, title: str, scale: str, command: str,
                 rows: Sequence[ComparisonRow], metrics: Sequence[str], reference: str | None = None,
                 setup: str = "", paper_tables: Sequence[PaperTable] = (), notes: Sequence[str] = (),
                 figures: Sequence[str] = (), detail_keys: Sequence[str] = ("seed",)) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.md`` and ``<out_dir>/<name>.json``; returns their paths.

    Args:
        scale: "smoke", "cpu" or "paper"; printed at the top so no CPU number passes as the paper's.
        command: the shell command that regenerates this report.
        rows: the variants, measured and paper numbers (see ComparisonRow).
        metrics: the metric columns, the first one is the primary (gain column).
        setup: one paragraph: data, model size, budget, seeds.
        paper_tables: the paper's full tables to reproduce below the comparison.
        figures: file names (relative to out_dir) of figures to link.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = environment()
    md = [f"# {title}", "",
          f"**Scale: {scale}.** Measured numbers (mean ± sd over runs, in percent) sit beside the paper's "
          f"published numbers; at smoke/cpu scale they come from tiny models on synthetic data and are "
          f"not comparable in absolute terms, only the direction of the differences is.", "",
          f"Regenerate with: `{command}`", "",
          f"Generated {created}; hdetr {env['hdetr']}, torch {env['torch']}, "
          f"{env['cpu_count']} CPUs{', ' + env['cuda'] if env['cuda'] else ''}.", ""]
    if setup:
        md += ["## Setup", "", setup, ""]
    md += ["## Measured beside the paper", "", comparison_markdown(rows, metrics, reference), ""]
    md += ["## Runs", "", per_run_markdown(rows, metrics, detail_keys), ""]
    for fig in figures:
        md += [f"![{fig}]({fig})", ""]
    for table in paper_tables:
        md += [f"## Paper: {table.name}", "", table.note, "", table.to_markdown(), ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    payload = {
        "name": name, "title": title, "scale": scale, "command": command, "created": created,
        "environment": env, "setup": setup, "metrics": list(metrics), "reference": reference,
        "rows": [{"label": r.label, "paper_source": r.paper_source,
                  "paper": {k: (v.value if isinstance(v, PaperCell) else v) for k, v in r.paper.items()},
                  "measured": r.measured, "details": r.details,
                  "summary": {m: dict(zip(("mean", "sd"), mean_and_spread(r.values(m)))) for m in metrics}}
                 for r in rows],
        "paper_tables": [t.to_json() for t in paper_tables], "notes": list(notes), "figures": list(figures),
    }
    paths = {"markdown": out_dir / f"{name}.md", "json": out_dir / f"{name}.json"}
    paths["markdown"].write_text("\n".join(md))
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return paths
