"""Comparison reports: measured numbers beside the paper's, as markdown + JSON, with the command.

Every report says at what scale it was measured and carries the command that
regenerates it, so no number in ``reports/`` lacks its provenance. Measured
metrics are COCO/LVIS evaluator values in [0, 1] (``-1`` = undefined, e.g. APs
without small objects); reports show them in percent like the paper.

- ``write_report``: any list of ``ComparisonRow`` s (``hdetr.studies.rows``);
- ``write_study_report``: a study's report (``hdetr.studies.scales.StudySpec``: its title, scale,
  metrics, setup and paper tables), with the runs' logs copied beside it (``copy_run_logs``);
- ``write_official_report``: evaluated checkpoint files beside the official README's numbers
  (``hdetr.studies.from_checkpoints``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from hdetr.paper import PaperCell, PaperTable, paper_table
from hdetr.studies.from_checkpoints import OFFICIAL_TABLE, official_rows
from hdetr.studies.rows import ComparisonRow
from hdetr.studies.statistics import difference, summarize, verdict

if TYPE_CHECKING:
    from hdetr.studies.scales import StudySpec

OFFICIAL_REPORT = "official_checkpoints"


def format_measured(values: Sequence[float]) -> str:
    """``"31.2 ± 1.1 [28.4, 34.0]"`` (mean ± sd [95 % interval of the mean] over seeds), ``"31.2 (1 run)"``
    for one run, ``"n/a"`` for none."""
    return summarize(values).text(1)


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
        head.append(f"Δ{primary} vs {reference} (measured [95 % CI], ~0: inside the seed spread / paper)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label, _runs_cell(row)]
        for metric in metrics:
            cells += [format_measured(row.values(metric)), format_paper(row.paper.get(metric))]
        if ref_row is not None:
            cells.append("-" if row is ref_row else _gain(row, ref_row, primary))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gain(row: ComparisonRow, ref: ComparisonRow, metric: str) -> str:
    d = difference(row.values(metric), ref.values(metric))
    paper = paper_number(row.paper.get(metric)), paper_number(ref.paper.get(metric))
    m = d.signed_text(1)
    if d.ci_low is not None and d.ci_low <= 0 <= d.ci_high:
        m += " ~0"
    p = "-" if None in paper else f"{paper[0] - paper[1]:+.1f}"
    return f"{m} / {p}"


def _runs_cell(row: ComparisonRow) -> str:
    """Runs of a row, and how many stopped short of the budget or failed (such a row is flagged)."""
    short, failed = len(row.short_runs), len(row.failed_runs)
    flags = ([f"{short} SHORT"] if short else []) + ([f"{failed} FAILED"] if failed else [])
    return f"{len(row.measured)}" + (f" ({', '.join(flags)})" if flags else "")


# seed-to-seed ratio of seconds per step, within one variant, above which the machine was not quiet
LOADED_SPREAD = 1.25


def load_spread(variants: Sequence[Sequence]) -> float:
    """The largest ratio of slowest to fastest seconds per step among the runs of one variant (1.0: as even as a
    quiet machine gives): runs of one configuration cost the same, so a larger ratio is load, not cost."""
    ratios = [max(speeds) / min(speeds) for records in variants
              if len(speeds := [r.sec_per_iter for r in records if r.sec_per_iter]) > 1]
    return max(ratios, default=1.0)


def wall_time_markdown(rows: Sequence[ComparisonRow], reference: str | None = None) -> list[str]:
    """Equal wall time: each row's AP after the seconds of training the fastest-finishing row needed
    (each variant at its mean measured seconds per step); empty when the runs' records are gone."""
    from hdetr.studies.run_records import ap_values_at_seconds, equal_wall_seconds, variant_speed

    if not rows or not all(r.records for r in rows):
        return []
    seconds = equal_wall_seconds([r.records for r in rows])
    if not seconds:
        return []
    ref = next((r for r in rows if r.label == reference), None)
    values = {r.label: ap_values_at_seconds(r.records, seconds) for r in rows}
    base_speed = variant_speed(ref.records) if ref else None
    lines = [f"After {seconds:.0f} s of training (the fastest variant's mean run; each variant at its measured "
             f"seconds per step, evaluation excluded):", ""]
    spread = load_spread([r.records for r in rows])
    if spread > LOADED_SPREAD:
        lines += [f"**Read with care:** the seeds of one variant ran up to {spread:.1f}x slower than each other "
                  f"(same configuration, same steps): other work shared the machine while they ran, so this view "
                  f"mixes each variant's cost with the load it met. The cost of a step is measured interleaved, "
                  f"every variant under the same load, in `reports/bench/scheme_costs.json` "
                  f"(`python benchmarks/scheme_costs.py`).", ""]
    lines += ["| variant | s/step | cost vs reference | AP at equal time | Δ vs reference [95 % CI] | verdict |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        sec = variant_speed(r.records)
        cost = f"{sec / base_speed:.2f}x" if sec and base_speed else "-"
        if ref is None or r is ref:
            d_text, v_text = "-", "-"
        else:
            d = difference(values[r.label], values[ref.label])
            d_text = d.signed_text(1)
            v_text = verdict(d)
        lines.append(f"| {r.label} | {sec:.3f} | {cost} | {summarize(values[r.label]).text(1)} | {d_text} | "
                     f"{v_text} |")
    return lines


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
                 figures: Sequence[str] = (), detail_keys: Sequence[str] = ("seed",),
                 sections: Sequence[tuple[str, Sequence[str]]] = ()) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.md`` and ``<out_dir>/<name>.json``; returns their paths.

    Args:
        scale: "smoke", "cpu" or "paper"; printed at the top so no CPU number passes as the paper's.
        command: the shell command that regenerates this report.
        rows: the variants, measured and paper numbers (see ComparisonRow).
        metrics: the metric columns, the first one is the primary (gain column).
        setup: one paragraph: data, model size, budget, seeds.
        paper_tables: the paper's full tables to reproduce below the comparison.
        figures: file names (relative to out_dir) of figures to link.
        sections: extra (heading, markdown lines) after the runs, e.g. the cost columns.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = environment()
    md = [f"# {title}", "",
          f"**Scale: {scale}.** Measured numbers (mean ± sd [95 % interval of the mean] over seeds, in percent) sit beside the paper's "
          f"published numbers; at smoke/cpu scale they come from tiny models on synthetic data and are "
          f"not comparable in absolute terms, only the direction of the differences is.", "",
          f"Regenerate with: `{command}`", "",
          f"Generated {created}; hdetr {env['hdetr']}, torch {env['torch']}, "
          f"{env['cpu_count']} CPUs{', ' + env['cuda'] if env['cuda'] else ''}.", ""]
    if setup:
        md += ["## Setup", "", setup, ""]
    md += ["## Measured beside the paper (equal iterations)", "", comparison_markdown(rows, metrics, reference), ""]
    wall = wall_time_markdown(rows, reference)
    if wall:
        md += ["## Equal wall time", "", *wall, ""]
    short = [f"{r.label} seed {d['seed']} ({d.get('steps')} of {d.get('budget')} steps)"
             for r in rows for d in r.short_runs]
    failed = [f"{r.label} seed {d['seed']}" for r in rows for d in r.failed_runs]
    if short or failed:
        md += ["**Flagged:** " + "; ".join(([f"stopped before the budget: {', '.join(short)}"] if short else [])
                                           + ([f"failed (see the runs table): {', '.join(failed)}"] if failed else []))
               + ". Their rows do not compare equal budgets.", ""]
    md += ["## Runs", "", per_run_markdown(rows, metrics, detail_keys), ""]
    for fig in figures:
        md += [f"![{fig}]({fig})", ""]
    for heading, lines in sections:
        if lines:
            md += [f"## {heading}", "", *lines, ""]
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
                  "summary": {m: dataclasses.asdict(summarize(r.values(m))) for m in metrics}}
                 for r in rows],
        "wall_time": wall,
        "paper_tables": [t.to_json() for t in paper_tables], "notes": list(notes), "figures": list(figures),
    }
    paths = {"markdown": out_dir / f"{name}.md", "json": out_dir / f"{name}.json"}
    paths["markdown"].write_text("\n".join(md))
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return paths


def copy_run_logs(rows: Sequence[ComparisonRow], dest: str | Path) -> list[Path]:
    """Copy each run's metrics.jsonl and config.yaml to ``dest/<run folder>_{metrics.jsonl,config.yaml}``.

    The runs' checkpoints stay behind (they are large); the logs are what a reader
    needs to check a report's numbers and curves.
    """
    dest = Path(dest)
    copied = []
    for row in rows:
        for record in row.records:
            run_dir = Path(record.run_dir)
            stem = f"{run_dir.parent.name}_{run_dir.name}"
            for name in ("metrics.jsonl", "config.yaml"):
                if (run_dir / name).is_file():
                    dest.mkdir(parents=True, exist_ok=True)
                    copied.append(Path(shutil.copyfile(run_dir / name, dest / f"{stem}_{name}")))
    return copied


def write_study_report(spec: StudySpec, rows: Sequence[ComparisonRow], output_dir: str | Path, command: str, *,
                       name: str | None = None, title: str | None = None, reference: str | None = None,
                       figures: Sequence[str] = (), notes: Sequence[str] = (),
                       sections: Sequence[tuple[str, Sequence[str]]] = ()) -> dict[str, Path]:
    """Write ``<output_dir>/<name>.md|.json`` of ``spec``'s rows (default name: the study's) and copy the
    runs' logs to ``<output_dir>/runs``."""
    copy_run_logs(rows, Path(output_dir) / "runs")
    return write_report(
        output_dir, name=name or spec.name, title=title or spec.title, scale=spec.scale, command=command,
        rows=rows, metrics=spec.metrics, reference=reference or spec.reference, setup=spec.setup,
        paper_tables=[paper_table(t) for t in spec.paper_tables], notes=[*spec.notes, *notes],
        figures=figures, detail_keys=("seed", "steps", "train_seconds", "stopped_by", "last_loss_giou"),
        sections=sections)


def write_official_report(out_dir: str | Path, rows: Sequence[ComparisonRow], command: str, *, scale: str,
                          setup: str = "", metrics: Sequence[str] = ("AP", "AP50", "AP75")) -> dict[str, Path]:
    """``official_checkpoints.md|.json``: the evaluated files beside the official README's numbers."""
    return write_report(
        out_dir, name=OFFICIAL_REPORT, title="Official checkpoints evaluated by hdetr", scale=scale, command=command,
        rows=official_rows(rows), metrics=metrics, setup=setup, paper_tables=[paper_table(OFFICIAL_TABLE)],
        detail_keys=("variant", "format", "num_images"),
        notes=["Each checkpoint file is read with `hdetr eval`'s loader and scored by hdetr's evaluator; the paper "
               "column is the official README's COCO val AP for the checkpoint of that name (matched by file name "
               "and epochs)."])
