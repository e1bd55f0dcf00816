"""``hdetr demo``: baseline vs H-DETR (hybrid branch) on the synthetic benchmark, over seeds, on a CPU.

Both presets (``synthetic_demo_baseline``, ``synthetic_demo_hybrid_branch``) train
from scratch for the same number of optimiser steps with each seed, two runs at a
time with one thread each (``hdetr.studies.runs``: finished runs are kept, an
interrupted demo resumes), and are scored with pycocotools on the synthetic
validation images. No time guard stops one model while the other runs on: both
always reach the same step. The report in ``reports/demo/``: ``table.md`` (mean,
spread and 95 % interval over seeds, equal iterations and equal wall time, what it
shows), ``ap_curve.png``, ``loss_curve.png``, ``results.json``, ``command.txt``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hdetr.config.experiment import ExperimentConfig, apply_overrides
from hdetr.config.presets import get_preset
from hdetr.studies.run_records import (RunRecord, ap_at_seconds, compare, compare_at_seconds, equal_wall_seconds,
                                       load_record, mean_of, metric, variant_speed)
from hdetr.studies.runs import RunRequest, execute_runs
from hdetr.studies.statistics import verdict

DEMO_PRESETS = ("synthetic_demo_baseline", "synthetic_demo_hybrid_branch")
LABELS = {"synthetic_demo_baseline": "Deformable-DETR baseline (one-to-one)",
          "synthetic_demo_hybrid_branch": "H-DETR, hybrid branch"}
SHORT = {"synthetic_demo_baseline": "baseline", "synthetic_demo_hybrid_branch": "H-DETR"}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
DEFAULT_SEEDS = (0, 1, 2)


def demo_configs(max_iters: int | None = None, seed: int | None = None,
                 overrides: Sequence[str] = ()) -> dict[str, ExperimentConfig]:
    """The two demo configs with the same budget (``train.max_iters``) and seed."""
    changes = ["train.progress=false", *overrides]  # runs log to files: no progress bars
    if max_iters is not None:
        changes.append(f"train.max_iters={max_iters}")
    if seed is not None:
        changes.append(f"train.seed={seed}")
    configs = {name: apply_overrides(get_preset(name), changes) for name in DEMO_PRESETS}
    budgets = {(c.train.max_iters, c.train.batch_size, c.train.seed, c.train.max_wall_seconds) for c in configs.values()}
    if len(budgets) != 1:
        raise ValueError(f"demo presets disagree on budget (max_iters, batch_size, seed, max_wall_seconds): "
                         f"{sorted(budgets)}")
    return configs


def demo_requests(work_dir: str | Path, seeds: Sequence[int] = DEFAULT_SEEDS, max_iters: int | None = None,
                  overrides: Sequence[str] = ()) -> list[RunRequest]:
    """One run per (preset, seed); seeds interleave the presets so two parallel runs are one of each."""
    configs = {s: demo_configs(max_iters, s, overrides) for s in seeds}
    return [RunRequest(name, s, configs[s][name], Path(work_dir) / name / f"seed{s}")
            for s in seeds for name in DEMO_PRESETS]


def _plot_losses(records: dict[str, list[RunRecord]], report_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hdetr.engine.metrics_log import read_metrics
    from hdetr.studies.run_records import one_to_one_loss

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"synthetic_demo_baseline": "tab:blue", "synthetic_demo_hybrid_branch": "tab:red"}
    for name, runs in records.items():
        for i, r in enumerate(runs):
            rows = [row for row in read_metrics(r.run_dir) if row.get("type") == "train"]
            model = json.loads((r.run_dir / "result.json").read_text())["config"]["model"]
            ax.plot([row["step"] for row in rows], [one_to_one_loss(row, model) for row in rows],
                    color=colors[name], alpha=0.7, linestyle="-" if "baseline" in name else "--",
                    label=f"{LABELS[name]}" if i == 0 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("one-to-one loss, last decoder layer")
    ax.set_title("Training loss (2 CE + 5 L1 + 2 GIoU; one line per seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report_dir / "loss_curve.png", dpi=110)
    plt.close(fig)
    return "loss_curve.png"


def _table(records: dict[str, list[RunRecord]], configs: dict[str, ExperimentConfig]) -> list[str]:
    head = "| model | queries | seeds | steps (each run) | s/step | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, runs in records.items():
        m = configs[name].model
        queries = f"{m.num_queries_one2one}" + (f" + {m.num_queries_one2many} (K={m.k_one2many})"
                                                if m.num_queries_one2many else "")
        steps = ", ".join(str(r.steps) for r in runs)
        sec = variant_speed(runs)
        lines.append(f"| {LABELS[name]} | {queries} | {len(runs)} | {steps} | {sec:.2f} | "
                     + " | ".join(metric(runs, k).text(1) for k in METRICS) + " |")
    return lines


def _paper_gain() -> float:
    """H-Deformable-DETR minus Deformable-DETR, R50 12 epochs, COCO (paper Table 1)."""
    from hdetr.paper import paper_table

    table = paper_table("coco_table1")
    ap = {method: table.find(backbone="R50", epochs=12, method=method)["AP"].number
          for method in ("Deformable-DETR", "H-Deformable-DETR")}
    return ap["H-Deformable-DETR"] - ap["Deformable-DETR"]


def findings(records: dict[str, list[RunRecord]]) -> list[str]:
    """'What it shows', from the numbers: a difference is called one only when its 95 % interval excludes 0."""
    base, hybrid = (records[n] for n in DEMO_PRESETS)
    d = compare(hybrid, base)
    seconds = equal_wall_seconds([base, hybrid])
    dw = compare_at_seconds(hybrid, base, seconds) if seconds else None
    sb, sh = variant_speed(base), variant_speed(hybrid)
    short = [f"{SHORT[n]} seed {r.seed} ({r.steps} steps)" for n, runs in records.items() for r in runs if r.short]
    spread = max((metric(runs, "AP").sd or 0.0) for runs in records.values())
    lb, lh = mean_of(base, "one2one_loss"), mean_of(hybrid, "one2one_loss")
    out = [
        f"- Equal iterations ({base[0].steps if base else 0} steps, {len(base)} + {len(hybrid)} seeds): H-DETR − "
        f"baseline = {d.signed_text(1)} AP (95 % interval): {verdict(d)}.",
    ]
    if dw is not None:
        out.append(f"- Equal wall time ({seconds:.0f} s of training, each model at its measured s/step): "
                   f"{dw.signed_text(1)} AP: {verdict(dw)}.")
    if sb and sh:
        out.append(f"- One H-DETR step cost {sh / sb:.2f}x a baseline step here (its one-to-many "
                   f"queries and their matching).")
    if lb is not None and lh is not None:
        out.append(f"- One-to-one training loss at the end (last decoder layer, mean over seeds): baseline "
                   f"{lb:.3f}, H-DETR {lh:.3f}.")
    from hdetr.findings import science_headline

    study = science_headline()
    out.append(f"- The seed-to-seed spread (sd) of AP is up to {spread:.1f} points at this length: one seed cannot "
               f"separate models. The paper's gain is {_paper_gain():+.1f} AP (R50, 12 epochs on COCO, Table 1). "
               f"`reports/science/cpu_regime.md` tests whether and where hybrid matching helps at CPU scale"
               + (f"; its outcome: {study.rstrip('.')}" if study else "") + ".")
    if short:
        out.append(f"- Runs that did not reach the budget (flagged, their numbers are in the table): "
                   f"{', '.join(short)}.")
    return out


def write_report(records: dict[str, list[RunRecord]], configs: dict[str, ExperimentConfig], report_dir: Path,
                 command: str, dataset_note: str, total_seconds: float, load_average: float,
                 reused: int = 0) -> Path:
    """``reused``: how many of the runs finished in an earlier invocation (kept, not trained again); the
    report says so, because its minutes then count only the runs trained this time."""
    import torch

    from hdetr.reports.figures import ap_band_figure

    report_dir.mkdir(parents=True, exist_ok=True)
    styles = {"synthetic_demo_baseline": ("tab:blue", "-"), "synthetic_demo_hybrid_branch": ("tab:red", "--")}
    ap_band_figure({"by optimiser step (equal iterations)": records}, report_dir / "ap_curve.png", by="step",
                   labels=SHORT, styles=styles)
    ap_band_figure({"by training seconds (equal wall time)": records}, report_dir / "ap_wall_time.png",
                   by="seconds", labels=SHORT, styles=styles)
    loss_png = _plot_losses(records, report_dir)
    cfg = configs[DEMO_PRESETS[0]]
    base, hybrid = (records[n] for n in DEMO_PRESETS)
    seconds = equal_wall_seconds([base, hybrid])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    seeds = sorted({r.seed for runs in records.values() for r in runs})
    text = [
        "# hdetr demo: one-to-one baseline vs H-DETR (hybrid branch), trained on a CPU",
        "",
        f"Made by `{command}` on {stamp}: {os.cpu_count()} CPU cores (load average {load_average:.1f} at the "
        f"start), {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}; "
        f"{total_seconds / 60:.1f} minutes in all, two runs at a time with one thread each"
        + (f"; {reused} of the {sum(len(v) for v in records.values())} runs had finished in an earlier "
           f"invocation and were reused as they were, so the minutes count only the runs trained this time "
           f"(delete the work folder to train all again)." if reused else "."),
        "",
        f"Data: {dataset_note}. Both models: {cfg.model.backbone} from random weights (stem trainable), "
        f"{cfg.model.enc_layers}+{cfg.model.dec_layers} layers, hidden {cfg.model.hidden_dim}, FFN "
        f"{cfg.model.dim_feedforward}, two-stage + box refine + mixed selection + look forward twice; AdamW lr "
        f"{cfg.train.lr:g}" + (f" (x0.1 after step {', '.join(map(str, cfg.train.lr_drop_iters))})"
                               if cfg.train.lr_drop_iters else "")
        + f", batch {cfg.train.batch_size}, seeds {seeds}, {cfg.train.max_iters} optimiser steps per run for both "
        f"models (no time guard). AP: pycocotools COCOeval (bbox), in percent, as mean ± sd [95 % interval of "
        f"the mean] over seeds.",
        "",
        "## Equal iterations",
        "",
        *_table(records, configs),
        "",
        "## Equal wall time",
        "",
        f"After {seconds:.0f} s of training (the shorter model's mean; each model at its measured seconds per step):"
        if seconds else "Not available (no speed measured).",
        "",
        *([f"| model | AP after {seconds:.0f} s |", "|---|---|",
           *[f"| {LABELS[n]} | {ap_at_seconds(records[n], seconds).text(1)} |" for n in DEMO_PRESETS]]
          if seconds else []),
        "",
        "## What it shows",
        "",
        *findings(records),
        "",
        "## Curves",
        "",
        "![AP over iterations](ap_curve.png)", "", "![AP over wall time](ap_wall_time.png)", "",
        f"![one-to-one loss]({loss_png})",
        "",
        "## Runs",
        "",
        "| model | seed | steps | AP | AP50 | AP75 | s/step |", "|---|---|---|---|---|---|---|",
        *[f"| {SHORT[n]} | {r.seed} | {r.steps} | "
          + " | ".join(f"{100 * r.metrics.get(k, -1):.1f}" if r.metrics.get(k, -1) >= 0 else "-"
                       for k in ("AP", "AP50", "AP75")) + f" | {r.sec_per_iter or float('nan'):.3f} |"
          for n in DEMO_PRESETS for r in records[n]],
        "",
        "Presets: `synthetic_demo_baseline`, `synthetic_demo_hybrid_branch` (`hdetr train --preset NAME "
        "--print-config`); per-step metrics of every run: `results.json`.",
        "",
    ]
    path = report_dir / "table.md"
    path.write_text("\n".join(text))
    (report_dir / "command.txt").write_text(command + "\n")
    from hdetr.engine.metrics_log import read_metrics

    results = {"command": command, "runs": [
        {"preset": n, "seed": r.seed, "steps": r.steps, "metrics": r.metrics, "sec_per_iter": r.sec_per_iter,
         "rows": read_metrics(r.run_dir)} for n in DEMO_PRESETS for r in records[n]]}
    (report_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return path


def _dataset_note(cfg: ExperimentConfig) -> str:
    from hdetr.data import build_dataset

    train_set, val_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    scored = min(cfg.train.eval_max_images, len(val_set)) if cfg.train.eval_max_images else len(val_set)
    return (f"the synthetic benchmark ({cfg.data.kind} format, {len(train_set)} train / {scored} val images scored, "
            f"{cfg.data.synthetic_image_size} px, {train_set.num_classes} classes)")


def _warm_up(cfg: ExperimentConfig) -> None:
    """One forward pass before the runs: the first use of the C++ op compiles it (once, not per run)."""
    import torch

    from hdetr import build_model

    model = build_model(cfg.model).eval()
    with torch.no_grad():
        model([torch.zeros(3, cfg.data.synthetic_image_size, cfg.data.synthetic_image_size)])


def run_demo(report_dir: str | Path = "reports/demo", work_dir: str | Path = "runs/demo", *,
             seeds: Sequence[int] = DEFAULT_SEEDS, max_iters: int | None = None, overrides: Sequence[str] = (),
             jobs: int = 2, command: str = "hdetr demo", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and score both demo models over ``seeds``, write the report; returns the records and table path."""
    start = time.perf_counter()
    load_average = os.getloadavg()[0]
    requests = demo_requests(work_dir, seeds, max_iters, overrides)
    first = requests[0].config
    log("hdetr demo: preparing the synthetic dataset (generated once, then cached)")
    dataset_note = _dataset_note(first)
    _warm_up(first)
    log(f"hdetr demo: {len(requests)} runs ({len(seeds)} seeds x 2 models, {first.train.max_iters} steps each), "
        f"{jobs} at a time")
    outcomes = execute_runs(requests, jobs=jobs, log=lambda m: log(f"hdetr demo: {m}"))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError("hdetr demo: " + "; ".join(f"{o.request.key} seed {o.request.seed} failed:\n{o.log_tail}"
                                                      for o in failed))
    records = {n: [load_record(o.request.run_dir, n, o.request.seed, o.request.config.to_dict())
                   for o in outcomes if o.request.key == n] for n in DEMO_PRESETS}
    configs = {n: next(o.request.config for o in outcomes if o.request.key == n) for n in DEMO_PRESETS}
    reused = sum(o.status == "skipped" for o in outcomes)
    table = write_report(records, configs, Path(report_dir), command, dataset_note, time.perf_counter() - start,
                         load_average, reused)
    log("")
    log("\n".join(_table(records, configs)))
    log("")
    log("\n".join(findings(records)))
    log(f"\nreport: {table}")
    return {"records": records, "table": str(table)}
