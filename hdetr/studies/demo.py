"""The demo study (``hdetr demo``): baseline vs H-DETR (hybrid branch) on the synthetic benchmark, over seeds, on a CPU.

Both presets (``synthetic_demo_baseline``, ``synthetic_demo_hybrid_branch``) train
from scratch for the same number of optimiser steps with each seed, two runs at a
time with one thread each (``hdetr.studies.runs``: finished runs are kept, an
interrupted demo resumes), and are scored with pycocotools on the synthetic
validation images. No time guard stops one model while the other runs on: both
always reach the same step. ``run_demo_study`` returns the finished runs (``DemoRuns``);
``hdetr.reports.demo`` writes their report in ``reports/demo/``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from hdetr.config.experiment import ExperimentConfig, apply_overrides
from hdetr.config.presets import get_preset
from hdetr.studies.run_records import RunRecord, load_record
from hdetr.studies.runs import RunRequest, execute_runs

DEMO_PRESETS = ("synthetic_demo_baseline", "synthetic_demo_hybrid_branch")
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


@dataclasses.dataclass
class DemoRuns:
    """The demo's finished runs and what its report says about how they were made.

    records / configs: per preset (``DEMO_PRESETS``), its runs over the seeds and its config.
    dataset_note: the data, in words. seconds: wall time of the study, set-up included.
    load_average: the machine's load at the start. reused: runs that had finished in an earlier
    invocation (kept, not trained again).
    """

    records: dict[str, list[RunRecord]]
    configs: dict[str, ExperimentConfig]
    dataset_note: str
    seconds: float
    load_average: float
    reused: int = 0


def run_demo_study(work_dir: str | Path = "runs/demo", *, seeds: Sequence[int] = DEFAULT_SEEDS,
                   max_iters: int | None = None, overrides: Sequence[str] = (), jobs: int = 2,
                   log: Callable[[str], None] = print) -> DemoRuns:
    """Train and score both demo models over ``seeds`` into ``work_dir`` (finished runs kept)."""
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
    return DemoRuns(records, configs, dataset_note, time.perf_counter() - start, load_average, reused)
