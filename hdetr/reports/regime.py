"""``reports/science/cpu_regime.md``: the regime study's tables, figures and logs from its run folders.

    python -m hdetr.reports.regime RUNS_DIR OUT_DIR     # e.g. runs/regime reports/science

The runs are those of ``python -m hdetr.studies.regime run RUNS_DIR`` (``hdetr.studies.regime``).
The findings paragraph at the top is written by a person who read the numbers
(``findings.md`` beside the report); everything below it is generated from the
runs, so a re-run of the study re-writes the evidence under the same words, and
a reader can check one against the other.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from hdetr.errors import UserError
from hdetr.reports.comparison import LOADED_SPREAD, environment, load_spread
from hdetr.reports.figures import ap_band_figure
from hdetr.studies.regime import HYPOTHESES, SEEDS, STEPS, Hypothesis, requests
from hdetr.studies.run_records import (RunRecord, ap_at_seconds, compare, compare_at_seconds, equal_wall_seconds,
                                       load_record, mean_of, metric, variant_speed)
from hdetr.studies.runs import read_result
from hdetr.studies.statistics import Summary, difference, summarize, verdict

SCHEMES = ("baseline", "hybrid_branch")
REPORT_JSON = "cpu_regime.json"
# what a change to the hybrid alone does to it (its row of "hybrid against hybrid"), in points but the last
CHANGE_METRICS = (("AP", "AP", 100.0, 1), ("AP_nms", "AP with NMS", 100.0, 1), ("nms_gap", "NMS gap", 100.0, 1),
                  ("duplicates_per_object", "duplicates / object", 1.0, 2))
NAMES = {"baseline": "baseline", "hybrid_branch": "hybrid"}
COMMANDS = ("python -m hdetr.studies.regime run runs/regime",
            "python -m hdetr.reports.regime runs/regime reports/science")


def log_name(key: str, seed: int) -> str:
    """The file name of a run's metrics log kept in the report's ``runs/`` folder."""
    return f"{key.replace('/', '_')}_seed{seed}_metrics.jsonl"


def collect(runs_dir: str | Path, archive: str | Path | None = None,
            scratch: Path | None = None) -> dict[str, dict[str, list[RunRecord]]]:
    """hypothesis -> scheme -> records of its finished runs (unfinished ones are left out).

    A hypothesis none of whose runs are in ``runs_dir`` is read from ``archive`` (the report's
    ``runs/`` folder: the metrics logs of runs measured earlier, kept with the report), so a study
    extended on another machine keeps the rows measured before. Each archived log is read from a run
    folder made for it under ``scratch`` (default: the system's temporary folder), which must outlive
    the records' use."""
    out: dict[str, dict[str, list[RunRecord]]] = {}
    reqs = requests(runs_dir)
    for req in reqs:
        if read_result(req.run_dir, req.config) is None:
            continue
        hyp, scheme = req.key.split("/")
        out.setdefault(hyp, {}).setdefault(scheme, []).append(
            load_record(req.run_dir, req.key, req.seed, req.config.to_dict()))
    if archive is not None:
        live = set(out)
        for req in reqs:
            hyp, scheme = req.key.split("/")
            log = Path(archive) / log_name(req.key, req.seed)
            if hyp in live or not log.is_file():
                continue
            folder = Path(tempfile.mkdtemp(prefix="hdetr-archived-run-", dir=scratch))
            shutil.copyfile(log, folder / "metrics.jsonl")
            out.setdefault(hyp, {}).setdefault(scheme, []).append(
                load_record(folder, req.key, req.seed, req.config.to_dict()))
    return out


def pair(h: Hypothesis, data: dict[str, dict[str, list[RunRecord]]]) -> tuple[list[RunRecord], list[RunRecord], str]:
    """The baseline and hybrid runs a hypothesis compares: its own, or, for a model it does not train,
    those of the hypothesis it changes (``against``); and a note saying which were shared."""
    runs = data.get(h.key, {})
    sides, notes = [], []
    for scheme in SCHEMES:
        if scheme in h.models:
            sides.append(runs.get(scheme, []))
        else:
            sides.append(data.get(h.against, {}).get(scheme, []))
            notes.append(f"{NAMES[scheme]} runs of {h.against}")
    return sides[0], sides[1], "; ".join(notes)


def hybrid_change(runs: Sequence[dict], key: str, against: str) -> dict[str, tuple[Summary, Summary, Summary]]:
    """What hypothesis ``key`` (a change to the hybrid alone, e.g. ``starved_unmasked``) does to the hybrid
    of ``against``: metric -> (summary of ``key``'s hybrid runs, of ``against``'s, Welch difference), from
    the report's per-run rows (``cpu_regime.json``'s ``runs``); AP-like metrics in points."""
    def values(hypothesis: str, name: str, scale: float) -> list[float]:
        return [scale * r["metrics"][name] for r in runs if r["hypothesis"] == hypothesis
                and r["model"] == "hybrid_branch" and name in r["metrics"]]

    out = {}
    for name, _, scale, _ in CHANGE_METRICS:
        changed, reference = values(key, name, scale), values(against, name, scale)
        out[name] = (summarize(changed), summarize(reference), difference(changed, reference))
    return out


def hybrid_change_markdown(runs: Sequence[dict], key: str, against: str) -> str:
    """``hybrid_change`` as a table: one row per metric, both hybrids and the difference."""
    lines = [f"| last evaluation | {key} hybrid | {against} hybrid | Δ [95 % CI] |", "|---|---|---|---|"]
    change = hybrid_change(runs, key, against)
    for name, label, _, digits in CHANGE_METRICS:
        changed, reference, diff = change[name]
        lines.append(f"| {label} | {changed.text(digits)} | {reference.text(digits)} | {diff.signed_text(digits)} |")
    return "\n".join(lines)


def read_regime_report(report_dir: str | Path) -> dict:
    """The report's JSON (``cpu_regime.json`` in ``report_dir``): commands, settings and every run's numbers."""
    path = Path(report_dir) / REPORT_JSON
    if not path.is_file():
        raise UserError(f"{path}: does not exist; write it with `{COMMANDS[1]}`")
    return json.loads(path.read_text())


def _cell(s: Summary) -> str:
    return s.text(1)


def _diff(s: Summary) -> str:
    return s.signed_text(1)


def _flag(records: Sequence[RunRecord]) -> str:
    short = [f"seed {r.seed} ({r.steps})" for r in records if r.short]
    missing = len(SEEDS) - len(records)
    parts = ([f"short: {', '.join(short)}"] if short else []) + ([f"{missing} missing"] if missing > 0 else [])
    steps = sorted({r.steps for r in records})
    return "; ".join(parts) or f"{len(records)} × {'/'.join(map(str, steps))} steps"


def closing_step(baseline: Sequence[RunRecord], hybrid: Sequence[RunRecord]) -> str:
    """The first evaluated step from which the hybrid's mean NMS gap stays at or below the baseline's:
    where its one-to-one branch has become as NMS-free as the one-to-one baseline."""
    def curve(records):
        records = [r for r in records if r.series("nms_gap")]
        if not records:
            return {}
        steps = sorted(set.intersection(*[set(r.eval_steps) for r in records]))
        return {s: sum(r.series("nms_gap")[r.eval_steps.index(s)] for r in records) / len(records) for s in steps}

    b, y = curve(baseline), curve(hybrid)
    steps = sorted(set(b) & set(y))
    if not steps:
        return "not measured"
    closed = [s for s in steps if y[s] <= b[s]]
    for s in steps:
        if all(t in closed for t in steps if t >= s):
            return f"step {s} (gap {y[s]:+.1f} vs {b[s]:+.1f})"
    return f"not by step {steps[-1]} (gap {y[steps[-1]]:+.1f} vs {b[steps[-1]]:+.1f})"


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
    nms = ["| hypothesis | model | AP without NMS | AP with NMS | NMS gap (points) | duplicates / object | "
           "hybrid's gap down to the baseline's |", "|---|---|---|---|---|---|---|"]
    for h in HYPOTHESES:
        b, y, shared = pair(h, data)
        if not data.get(h.key):
            iters.append(f"| {h.key} | not run | | | | | | |")
            continue
        d = compare(y, b)
        iters.append(f"| {h.key} | {_cell(metric(b))} | {_cell(metric(y))} | {_diff(d)} | {verdict(d)} | "
                     f"{_diff(compare(y, b, 'AP50'))} | {_diff(compare(y, b, 'AP75'))} | "
                     f"baseline {_flag(b)}; hybrid {_flag(y)}{'; shared: ' + shared if shared else ''} |")
        if any(r.series("nms_gap") for r in b + y):
            closing = closing_step(b, y)
            for scheme, records in (("baseline", b), ("hybrid_branch", y)):
                nms.append(f"| {h.key} | {NAMES[scheme]} | {_cell(metric(records))} | "
                           f"{_cell(metric(records, 'AP_nms'))} | {_cell(metric(records, 'nms_gap'))} | "
                           f"{metric(records, 'duplicates_per_object').text(2)} | "
                           f"{closing if scheme == 'hybrid_branch' else ''} |")
            nms.append(f"| {h.key} | Δ hybrid − baseline | {_diff(d)} | {_diff(compare(y, b, 'AP_nms'))} | "
                       f"{_diff(compare(y, b, 'nms_gap'))} | {compare(y, b, 'duplicates_per_object').signed_text(2)} | |")
        seconds = equal_wall_seconds([b, y])
        sb, sy = variant_speed(b), variant_speed(y)
        if seconds and sb and sy:
            dw = compare_at_seconds(y, b, seconds)
            spread = load_spread([b, y])
            uneven = (f"; indicative: seeds of one model ran up to {spread:.1f}x apart (a loaded machine)"
                      if spread > LOADED_SPREAD else "")
            wall.append(f"| {h.key} | {sb:.3f} | {sy:.3f} | {sy / sb:.2f} | {seconds:.0f} | "
                        f"{_cell(ap_at_seconds(b, seconds))} | {_cell(ap_at_seconds(y, seconds))} | {_diff(dw)} | "
                        f"{verdict(dw)}{uneven} |")
        for scheme, records in (("baseline", b), ("hybrid_branch", y)):
            if not records or scheme not in h.models:
                continue
            layers = sorted({k.split("/")[1] for r in records for k in r.assignments if k.startswith("one2one/layer")})
            last = layers[-1] if layers else "layer2"
            ious = " → ".join(_fmt(_mech(records, f"one2one/{layer}/matched_iou")) for layer in layers[:-1])
            last_iou = summarize([r.assignments[f"one2one/{last}/matched_iou"] for r in records
                                  if f"one2one/{last}/matched_iou" in r.assignments]).text(3)
            mech.append(f"| {h.key} | {NAMES[scheme]} | {_fmt(_mech(records, f'one2one/{last}/positives'))} | "
                        f"{_fmt(_mech(records, f'one2many/{last}/positives'))} | "
                        f"{(ious + ' → ' if ious else '') + last_iou} | "
                        f"{_fmt(_mech(records, f'one2many/{last}/matched_iou'))} | "
                        f"{_fmt(mean_of(records, 'one2one_loss'))} |")
        if h.key != h.against and h.against in data:
            ref = data[h.against]
            cells = [_diff(compare(side, ref.get(scheme, []))) if scheme in h.models else "shared"
                     for scheme, side in (("baseline", b), ("hybrid_branch", y))]
            effect.append(f"| {h.key} | {h.against} | {cells[0]} | {cells[1]} |")
    return {"iterations": iters, "wall": wall, "mechanism": mech, "effect": effect, "nms": nms}


def runs_table(data: dict[str, dict[str, list[RunRecord]]], log_names: dict[Path, str]) -> list[str]:
    lines = ["| hypothesis | model | seed | steps | AP | AP50 | AP75 | s/iter | log |", "|---|---|---|---|---|---|---|---|---|"]
    for h in HYPOTHESES:
        for scheme in h.models:
            for r in data.get(h.key, {}).get(scheme, []):
                ap = [f"{100 * r.metrics[m]:.1f}" if r.metrics.get(m, -1) >= 0 else "n/a" for m in ("AP", "AP50", "AP75")]
                lines.append(f"| {h.key} | {NAMES[scheme]} | {r.seed} | {r.steps} | {' | '.join(ap)} | "
                             f"{_fmt(r.sec_per_iter, 3)} | [metrics](runs/{log_names[r.run_dir]}) |")
    return lines


def _keep_logs(data: dict[str, dict[str, list[RunRecord]]], logs: Path, scratch: Path) -> dict[Path, str]:
    """Replace the report's ``runs/`` folder with the metrics logs of ``data``'s runs (some of which may be
    read from that folder itself); returns run folder -> log name."""
    kept = scratch / "kept-logs"
    kept.mkdir()
    log_names = {}
    for runs in data.values():
        for records in runs.values():
            for r in records:
                name = log_name(r.key, r.seed)
                shutil.copyfile(r.run_dir / "metrics.jsonl", kept / name)
                log_names[r.run_dir] = name
    if logs.is_dir():
        shutil.rmtree(logs)
    shutil.copytree(kept, logs)
    return log_names


def write_regime_report(runs_dir: str | Path, out_dir: str | Path) -> Path:
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "runs"
    with tempfile.TemporaryDirectory(prefix="hdetr-regime-") as scratch:
        data = collect(runs_dir, archive=logs, scratch=Path(scratch))
        log_names = _keep_logs(data, logs, Path(scratch))
    panels = {}
    for h in HYPOTHESES:
        b, y, _ = pair(h, data)
        if data.get(h.key):
            panels[h.key] = {"baseline": b, "hybrid_branch": y}
    styles = {"baseline": ("tab:blue", "-"), "hybrid_branch": ("tab:red", "--")}
    for name, by, what in (("ap_curves.png", "step", "iterations"), ("ap_wall_time.png", "seconds", "wall time")):
        ap_band_figure(panels, out_dir / name, by=by, labels=NAMES, styles=styles,
                       title=f"AP on 300 validation images over {what}")
    gap_panels = {k: v for k, v in panels.items() if any(r.series("nms_gap") for rs in v.values() for r in rs)}
    if gap_panels:
        ap_band_figure(gap_panels, out_dir / "nms_gap.png", labels=NAMES, styles=styles, value="nms_gap",
                       ylabel="AP with NMS − AP without (points)", zero_line=True,
                       title="The one-to-one branch's NMS gap over training (mean ± sd over seeds)")
    t = tables(data)
    findings = out_dir / "findings.md"
    env = environment()
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    payload = {"created": created, "environment": env, "commands": list(COMMANDS), "seeds": list(SEEDS),
               "steps": STEPS,
               "runs": [{"hypothesis": h, "model": s, "seed": r.seed, "steps": r.steps, "metrics": r.metrics,
                         "eval_steps": r.eval_steps, "eval_ap": r.eval_ap, "sec_per_iter": r.sec_per_iter,
                         "one2one_loss": r.one2one_loss, "assignments": r.assignments,
                         "log": f"runs/{log_names[r.run_dir]}"}
                        for h, runs in data.items() for s, records in runs.items() for r in records]}
    md = ["# The CPU regime of hybrid matching", ""]
    md += [findings.read_text().strip() if findings.is_file() else "(findings.md not written yet)", ""]
    md += ["## How it was measured", "",
           f"Every hypothesis changes one thing of a stated hypothesis and is measured as a pair, the one-to-one "
           f"baseline and the hybrid branch, each with seeds {list(SEEDS)}, {STEPS} optimiser steps of batch 4 "
           f"(the long schedule: 1600, evaluated every 200), "
           f"evaluated (pycocotools) on the same 300 synthetic validation images every 100 steps. A hypothesis "
           f"that changes only one model shares the other model's runs with the hypothesis it changes (the "
           f"K and λ rows use the starved baseline, the equal-queries control the starved hybrid). Two runs at a "
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
    md += ["", "Hybrid branch: T one-to-many queries and K as the hypothesis says (T = 3n, K = 3 unless stated), "
           "λ = 1, its groups masked from each other; inference uses the n one-to-one queries only (no NMS). "
           "The starved rows use the one-stage variant (learned queries, `model.two_stage=false`): two-stage "
           "selection takes n + T proposals from the encoder positions, and a 128 px image has 134–336 of them, "
           "too few for n + T = 600.", ""]
    md += ["## Equal iterations", "", *t["iterations"], "", "![AP over iterations](ap_curves.png)", ""]
    md += ["## Equal wall time", "", *t["wall"], "", "![AP over wall time](ap_wall_time.png)", ""]
    md += ["## What each change does to each model", "", *t["effect"], ""]
    md += ["## Is the one-to-one branch NMS-free?", "",
           "Every evaluation of the newer runs also scores the one-to-one detections after class-wise NMS "
           "(`torchvision.ops.batched_nms`, IoU 0.7) and counts duplicates per object (predictions with score "
           "> 0.3 and IoU > 0.6 with an object, beyond the first; `hdetr.evaluation.duplicates`, the "
           "definitions of `reports/analysis/duplicates.md`). A branch is NMS-free when NMS no longer raises "
           "its AP. Last evaluation, mean ± sd [95 % interval] over seeds; the last column is the first step "
           "from which the hybrid's mean gap stays at or below the baseline's.", "",
           *t["nms"], ""]
    if gap_panels:
        md += ["![NMS gap over training](nms_gap.png)", ""]
    hybrid_only = [h for h in HYPOTHESES if h.models == ("hybrid_branch",) and data.get(h.key)]
    if hybrid_only:
        md += ["## Changes to the hybrid alone", "",
               "A hypothesis that trains only the hybrid (the baseline is shared) against the hybrid of the "
               "hypothesis it changes, on the same seeds: last evaluation, mean ± sd [95 % interval] over seeds, "
               "and the Welch difference.", ""]
        for h in hybrid_only:
            md += [f"**{h.key}** against **{h.against}**: {h.question}.", "",
                   hybrid_change_markdown(payload["runs"], h.key, h.against), ""]
    md += ["## Mechanism", "",
           "From the `assignments` rows the training loop logs every 50 steps (second half of training, mean over "
           "seeds): positives per ground-truth object, IoU of the matched predictions per decoder layer (the "
           "last layer as mean ± sd [95 % interval] over seeds), and the one-to-one loss of the last decoder "
           "layer (2·CE + 5·L1 + 2·GIoU, mean of the last 50 steps). ΔAP50 and ΔAP75 with their intervals are "
           "in the equal-iterations table.", "",
           *t["mechanism"], ""]
    md += ["## Runs", "", *runs_table(data, log_names), ""]
    path = out_dir / "cpu_regime.md"
    path.write_text("\n".join(md))
    (out_dir / REPORT_JSON).write_text(json.dumps(payload, indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hdetr.reports.regime", description=__doc__.split("\n")[0])
    parser.add_argument("runs_dir", help="the study's run folders (python -m hdetr.studies.regime run RUNS_DIR)")
    parser.add_argument("out_dir", help="where cpu_regime.md, its JSON, figures and the runs' logs go")
    args = parser.parse_args(argv)
    print(write_regime_report(args.runs_dir, args.out_dir))


if __name__ == "__main__":
    main()
