"""``reports/science/cpu_regime.md``: the regime study's tables, figures and logs from its run folders.

The findings paragraph at the top is written by a person who read the numbers
(``findings.md`` beside the report); everything below it is generated from the
runs, so a re-run of the study re-writes the evidence under the same words, and
a reader can check one against the other.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Sequence

from hdetr.experiments.figures import ap_band_figure
from hdetr.experiments.records import (RunRecord, ap_at_seconds, compare, compare_at_seconds, equal_wall_seconds,
                                       load_record, mean_of, metric, variant_speed)
from hdetr.experiments.regime import HYPOTHESES, SEEDS, STEPS, requests
from hdetr.experiments.report import environment
from hdetr.experiments.runs import read_result
from hdetr.experiments.statistics import Summary, verdict

SCHEMES = ("baseline", "hybrid_branch")
NAMES = {"baseline": "baseline", "hybrid_branch": "hybrid"}
COMMANDS = ("python -m hdetr.experiments.regime run runs/regime",
            "python -m hdetr.experiments.regime report runs/regime reports/science")


def collect(runs_dir: str | Path) -> dict[str, dict[str, list[RunRecord]]]:
    """hypothesis -> scheme -> records of its finished runs (unfinished ones are left out)."""
    out: dict[str, dict[str, list[RunRecord]]] = {}
    for req in requests(runs_dir):
        result = read_result(req.run_dir, req.config)
        if result is None:
            continue
        hyp, scheme = req.key.split("/")
        out.setdefault(hyp, {}).setdefault(scheme, []).append(
            load_record(req.run_dir, req.key, req.seed, req.config.to_dict()))
    return out


def _cell(s: Summary) -> str:
    return s.text(1)


def _diff(s: Summary) -> str:
    return s.signed_text(1)


def _flag(records: Sequence[RunRecord]) -> str:
    short = [f"seed {r.seed} ({r.steps})" for r in records if r.short]
    missing = len(SEEDS) - len(records)
    parts = ([f"short: {', '.join(short)}"] if short else []) + ([f"{missing} missing"] if missing > 0 else [])
    return "; ".join(parts) or "all reached"


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _mech(records: Sequence[RunRecord], key: str) -> float | None:
    values = [r.assignments[key] for r in records if key in r.assignments]
    return sum(values) / len(values) if values else None


def tables(data: dict[str, dict[str, list[RunRecord]]]) -> dict[str, list[str]]:
    iters = ["| hypothesis | baseline AP | hybrid AP | Δ AP hybrid − baseline [95 % CI] | verdict | Δ AP50 | Δ AP75 "
             "| runs |", "|---|---|---|---|---|---|---|---|"]
    wall = ["| hypothesis | s/iter baseline | s/iter hybrid | ratio | equal time (s) | baseline AP | hybrid AP | "
            "Δ AP [95 % CI] | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    mech = ["| hypothesis | model | positives / object, one-to-one (last layer) | positives / object, one-to-many "
            "(last layer) | matched IoU one-to-one, layers 0→last | matched IoU one-to-many, last layer | "
            "one-to-one loss at the last step |", "|---|---|---|---|---|---|---|"]
    effect = ["| hypothesis | against | Δ baseline AP [95 % CI] | Δ hybrid AP [95 % CI] |", "|---|---|---|---|"]
    for h in HYPOTHESES:
        runs = data.get(h.key, {})
        b, y = runs.get("baseline", []), runs.get("hybrid_branch", [])
        if not (b or y):
            iters.append(f"| {h.key} | not run | | | | | | |")
            continue
        d = compare(y, b)
        iters.append(f"| {h.key} | {_cell(metric(b))} | {_cell(metric(y))} | {_diff(d)} | {verdict(d)} | "
                     f"{_diff(compare(y, b, 'AP50'))} | {_diff(compare(y, b, 'AP75'))} | "
                     f"baseline {_flag(b)}; hybrid {_flag(y)} |")
        seconds = equal_wall_seconds([b, y])
        sb, sy = variant_speed(b), variant_speed(y)
        if seconds and sb and sy:
            dw = compare_at_seconds(y, b, seconds)
            wall.append(f"| {h.key} | {sb:.3f} | {sy:.3f} | {sy / sb:.2f} | {seconds:.0f} | "
                        f"{_cell(ap_at_seconds(b, seconds))} | {_cell(ap_at_seconds(y, seconds))} | {_diff(dw)} | "
                        f"{verdict(dw)} |")
        for scheme, records in (("baseline", b), ("hybrid_branch", y)):
            if not records:
                continue
            layers = sorted({k.split("/")[1] for r in records for k in r.assignments if k.startswith("one2one/layer")})
            last = layers[-1] if layers else "layer2"
            ious = " → ".join(_fmt(_mech(records, f"one2one/{layer}/matched_iou")) for layer in layers)
            mech.append(f"| {h.key} | {NAMES[scheme]} | {_fmt(_mech(records, f'one2one/{last}/positives'))} | "
                        f"{_fmt(_mech(records, f'one2many/{last}/positives'))} | {ious or 'n/a'} | "
                        f"{_fmt(_mech(records, f'one2many/{last}/matched_iou'))} | "
                        f"{_fmt(mean_of(records, 'one2one_loss'))} |")
        if h.key != h.against and h.against in data:
            ref = data[h.against]
            effect.append(f"| {h.key} | {h.against} | {_diff(compare(b, ref.get('baseline', [])))} | "
                          f"{_diff(compare(y, ref.get('hybrid_branch', [])))} |")
    return {"iterations": iters, "wall": wall, "mechanism": mech, "effect": effect}


def runs_table(data: dict[str, dict[str, list[RunRecord]]], log_names: dict[Path, str]) -> list[str]:
    lines = ["| hypothesis | model | seed | steps | AP | AP50 | AP75 | s/iter | log |", "|---|---|---|---|---|---|---|---|---|"]
    for h in HYPOTHESES:
        for scheme in SCHEMES:
            for r in data.get(h.key, {}).get(scheme, []):
                ap = [f"{100 * r.metrics[m]:.1f}" if r.metrics.get(m, -1) >= 0 else "n/a" for m in ("AP", "AP50", "AP75")]
                lines.append(f"| {h.key} | {NAMES[scheme]} | {r.seed} | {r.steps} | {' | '.join(ap)} | "
                             f"{_fmt(r.sec_per_iter, 3)} | [metrics](runs/{log_names[r.run_dir]}) |")
    return lines


def write_regime_report(runs_dir: str | Path, out_dir: str | Path) -> Path:
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = collect(runs_dir)
    logs = out_dir / "runs"
    if logs.is_dir():
        shutil.rmtree(logs)
    logs.mkdir()
    log_names = {}
    for runs in data.values():
        for records in runs.values():
            for r in records:
                name = f"{r.key.replace('/', '_')}_seed{r.seed}_metrics.jsonl"
                shutil.copyfile(r.run_dir / "metrics.jsonl", logs / name)
                log_names[r.run_dir] = name
    panels = {h.key: data[h.key] for h in HYPOTHESES if h.key in data}
    styles = {"baseline": ("tab:blue", "-"), "hybrid_branch": ("tab:red", "--")}
    for name, by, what in (("ap_curves.png", "step", "iterations"), ("ap_wall_time.png", "seconds", "wall time")):
        ap_band_figure(panels, out_dir / name, by=by, labels=NAMES, styles=styles,
                       title=f"AP on 300 validation images over {what}")
    t = tables(data)
    findings = out_dir / "findings.md"
    env = environment()
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# The CPU regime of hybrid matching", ""]
    md += [findings.read_text().strip() if findings.is_file() else "(findings.md not written yet)", ""]
    md += ["## How it was measured", "",
           f"Every hypothesis changes one thing of a fixed reference and is measured as a pair, the one-to-one "
           f"baseline and the hybrid branch, each with seeds {list(SEEDS)}, {STEPS} optimiser steps of batch 4, "
           f"evaluated (pycocotools) on the same 300 synthetic validation images every 100 steps. Two runs at a "
           f"time, one thread each, on {env['cpu_count']} CPU cores ({env['machine']}, torch {env['torch']}). "
           f"Intervals are Student-t 95 % intervals of the mean over seeds; a difference's interval is Welch's. "
           f"Equal wall time compares both models after the same seconds of training, each at its mean measured "
           f"seconds per step (evaluation excluded; the machine ran two runs at once, so the absolute speeds are "
           f"those of a loaded machine).", "",
           "Regenerate (the first command skips finished runs and resumes interrupted ones):", "",
           *[f"    {c}" for c in COMMANDS], "",
           f"Generated {created}; hdetr {env['hdetr']}.", "",
           "### The hypotheses", "", "| key | what changes | against |", "|---|---|---|"]
    md += [f"| {h.key} | {h.question} | {h.against if h.key != h.against else '-'} |" for h in HYPOTHESES]
    md += ["", "Hybrid branch everywhere: T one-to-many queries (T = 3n; 2n for n = 100, the most two-stage "
           "selection allows), K = 3, λ = 1, its groups masked from each other; inference uses the n one-to-one "
           "queries only (no NMS).", ""]
    md += ["## Equal iterations", "", *t["iterations"], "", "![AP over iterations](ap_curves.png)", ""]
    md += ["## Equal wall time", "", *t["wall"], "", "![AP over wall time](ap_wall_time.png)", ""]
    md += ["## What each change does to each model", "", *t["effect"], ""]
    md += ["## Mechanism", "",
           "From the `assignments` rows the training loop logs every 50 steps (second half of training, mean over "
           "seeds): positives per ground-truth object, IoU of the matched predictions per decoder layer, and the "
           "one-to-one loss of the last decoder layer (2·CE + 5·L1 + 2·GIoU, mean of the last 50 steps).", "",
           *t["mechanism"], ""]
    md += ["## Runs", "", *runs_table(data, log_names), ""]
    path = out_dir / "cpu_regime.md"
    path.write_text("\n".join(md))
    payload = {"created": created, "environment": env, "commands": list(COMMANDS), "seeds": list(SEEDS),
               "steps": STEPS,
               "runs": [{"hypothesis": h, "model": s, "seed": r.seed, "steps": r.steps, "metrics": r.metrics,
                         "eval_steps": r.eval_steps, "eval_ap": r.eval_ap, "sec_per_iter": r.sec_per_iter,
                         "one2one_loss": r.one2one_loss, "assignments": r.assignments,
                         "log": f"runs/{log_names[r.run_dir]}"}
                        for h, runs in data.items() for s, records in runs.items() for r in records]}
    (out_dir / "cpu_regime.json").write_text(json.dumps(payload, indent=1) + "\n")
    return path


if __name__ == "__main__":
    import sys

    print(write_regime_report(sys.argv[1], sys.argv[2]))
