"""Where a report's measured numbers come from: training in this process, launched runs, or checkpoint files.

The experiment notebooks call ``measure_rows`` with their LAUNCHER / CHECKPOINTS
parameters (``hdetr.studies.launch.launch_spec``):

- ``checkpoints`` given: each variant's checkpoint files are evaluated (no training);
- ``launch`` None (smoke / cpu scale without LAUNCHER): ``run_study`` on this machine, ``jobs``
  (default: the scale's) runs at a time;
- otherwise every run is launched (local processes, torchrun, SLURM) into ``runs_dir``
  and the runs still missing are named in the notes.

A launched study's run folders must outlive the notebook (resume, SLURM jobs),
so ``runs_folder`` gives them a fixed default place instead of a temporary folder.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from hdetr.studies.launch import LaunchSpec, launch_study
from hdetr.studies.rows import ComparisonRow

DEFAULT_LAUNCHED_RUNS = Path("runs") / "reproduce"


def runs_folder(runs_dir: str | Path | None, name: str, scale: str, launch: LaunchSpec | None) -> tuple[Path, bool]:
    """(the study's runs folder, whether to keep it after the report is written).

    Without ``runs_dir``: a temporary folder, removed afterwards, for a study trained in
    this process; ``runs/reproduce/<name>_<scale>`` (relative to the working directory,
    kept) for a launched one, so that running the command again resumes it.
    """
    if runs_dir is not None:
        return Path(runs_dir), True
    if launch is None:
        return Path(tempfile.mkdtemp(prefix=f"hdetr-{name}-runs-")), False
    return DEFAULT_LAUNCHED_RUNS / f"{name}_{scale}", True


def measure_rows(spec, runs_dir: str | Path, *, launch: LaunchSpec | None = None,
                 checkpoints: Mapping[str, Any] | None = None, jobs: int | None = None,
                 log: Callable[[str], None] = print) -> tuple[list[ComparisonRow], list[str]]:
    """(rows, notes) of ``spec`` (a ``hdetr.studies.scales.StudySpec``) measured as asked."""
    if checkpoints:
        from hdetr.studies.from_checkpoints import checkpoint_rows

        return checkpoint_rows(spec.base, spec.variants, checkpoints, log=log)
    if launch is None:
        from hdetr.studies.variants import run_study

        rows = run_study(spec.base, spec.variants, spec.seeds, runs_dir, jobs=jobs or spec.jobs, log=log)
        failed = [f"{r.label} seed {d['seed']}" for r in rows for d in r.failed_runs]
        return rows, ([f"Failed runs, not in the table: {', '.join(failed)}."] if failed else [])
    launched = launch_study(spec.base, spec.variants, spec.seeds, runs_dir, launch, log=log)
    return launched.rows, launched.notes()


def with_overrides(spec, overrides):
    """``spec`` with ``section.field=value`` overrides on its base config (every run), validated now, and noted.

    The notebooks' ``SET`` parameter: e.g. the ImageNet backbone of a paper-scale run
    (``["model.pretrained_backbone=/weights/resnet50.pth"]``).
    """
    import dataclasses

    from hdetr.config.experiment import apply_overrides

    overrides = list(overrides or ())
    if not overrides:
        return spec
    base = apply_overrides(spec.base, overrides)
    return dataclasses.replace(spec, base=base,
                               notes=(*spec.notes, f"Every run with: {', '.join(overrides)}."))
