"""The runs of a study as separate processes: finished ones skipped, interrupted ones resumed, several at a time.

Each run lives in its own folder::

    <runs_dir>/<variant>/seed<seed>/
        requested.yaml   the config asked for (written before the run starts)
        config.yaml, metrics.jsonl, checkpoint_last.pth ...   (hdetr.engine.train)
        result.json      written once the run has finished: its summary and the config it ran
        run.log          the process's output (its tail names a failure)

A run whose ``result.json`` holds the requested config is finished and not run again;
one with a ``checkpoint_last.pth`` of the same config resumes from it (the trainer's
exact resume); a changed config starts again. ``execute_runs`` keeps ``jobs``
processes going (two single-thread runs on a 2-core machine); one process per run
also keeps runs independent of each other's memory and thread state.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from hdetr.config.experiment import ExperimentConfig, experiment_from_dict, load_yaml_mapping

REQUESTED = "requested.yaml"
RESULT = "result.json"
LOG = "run.log"


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One (variant, seed) of a study and the folder it trains into."""

    key: str
    seed: int
    config: ExperimentConfig
    run_dir: Path


@dataclasses.dataclass
class RunOutcome:
    """What became of a request: ``status`` is finished, failed or skipped (finished earlier)."""

    request: RunRequest
    status: str
    result: dict | None = None
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None


def read_result(run_dir: str | Path, config: ExperimentConfig | None = None) -> dict | None:
    """The run's ``result.json``, or None if it has none (or it ran another config than ``config``)."""
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if config is not None and _normalised(result.get("config")) != config.to_dict():
        return None
    return result


def _normalised(saved: dict | None) -> dict | None:
    """A saved config with the fields added since it was written filled in with their defaults."""
    if not isinstance(saved, dict):
        return None
    try:
        return experiment_from_dict(saved, RESULT).to_dict()
    except Exception:  # a config this version cannot read is not the requested one
        return None


def prepare_run(request: RunRequest) -> list[str]:
    """Write requested.yaml; the train arguments (--resume only for a checkpoint of the same config)."""
    out = request.run_dir
    out.mkdir(parents=True, exist_ok=True)
    wanted = request.config.to_yaml()
    previous = (out / REQUESTED).read_text() if (out / REQUESTED).is_file() else None
    (out / REQUESTED).write_text(wanted)
    (out / RESULT).unlink(missing_ok=True)
    if previous == wanted and (out / "checkpoint_last.pth").is_file():
        return ["--resume"]
    return ["--overwrite"]


def discard_result(run_dir: str | Path) -> None:
    """A run whose process failed is not finished, whatever it wrote: its result.json becomes result.failed.json."""
    path = Path(run_dir) / RESULT
    if path.is_file():
        path.replace(path.with_name("result.failed.json"))


def log_tail(run_dir: str | Path, lines: int = 12) -> str:
    path = Path(run_dir) / LOG
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_command(request: RunRequest, args: Sequence[str]) -> list[str]:
    """The default process of a run: this interpreter, one process (``hdetr.studies.launch`` has others)."""
    return [sys.executable, "-m", "hdetr.studies.runs", str(request.run_dir), *args]


def execute_runs(requests: Sequence[RunRequest], *, jobs: int = 2, log: Callable[[str], None] = print,
                 poll_seconds: float = 1.0,
                 command: Callable[[RunRequest, Sequence[str]], list[str]] = run_command) -> list[RunOutcome]:
    """Run every unfinished request, ``jobs`` at a time, each in its own process; outcomes in request order.

    ``command(request, ["--resume"] or ["--overwrite"])`` is the argv of a run's process
    (default: ``run_command``; ``hdetr.studies.launch.torchrun_command`` wraps it in torchrun).
    """
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be >= 1")
    outcomes: dict[int, RunOutcome] = {}
    pending = []
    for i, request in enumerate(requests):
        result = read_result(request.run_dir, request.config)
        if result is not None:
            outcomes[i] = RunOutcome(request, "skipped", result)
        else:
            pending.append(i)
    if outcomes:
        log(f"{len(outcomes)} of {len(requests)} runs finished earlier: kept")
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while pending or running:
        while pending and len(running) < jobs:
            i = pending.pop(0)
            request = requests[i]
            args = prepare_run(request)
            log(f"[{request.key} seed {request.seed}] {'resuming' if args == ['--resume'] else 'training'} "
                f"in {request.run_dir}")
            with open(request.run_dir / LOG, "ab") as sink:
                proc = subprocess.Popen(command(request, args), stdout=sink, stderr=subprocess.STDOUT, env=env)
            running[i] = (proc, time.perf_counter())
        time.sleep(poll_seconds)
        for i, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[i]
            request = requests[i]
            result = read_result(request.run_dir, request.config)
            if proc.returncode == 0 and result is not None:
                outcomes[i] = RunOutcome(request, "finished", result)
                ap = result.get("metrics", {}).get("AP", float("nan"))
                log(f"[{request.key} seed {request.seed}] AP {100 * ap:.1f} after {result.get('global_step')} "
                    f"steps ({time.perf_counter() - start:.0f} s)")
            else:
                discard_result(request.run_dir)
                outcomes[i] = RunOutcome(request, "failed", None, log_tail(request.run_dir))
                log(f"[{request.key} seed {request.seed}] FAILED (exit {proc.returncode}); "
                    f"the end of {request.run_dir / LOG}:\n{outcomes[i].log_tail}")
    return [outcomes[i] for i in range(len(requests))]


def _run_one(run_dir: Path, resume: bool) -> None:
    """The child process (or each process of a torchrun launch): train requested.yaml, then write result.json.

    Under torchrun the process group is joined here, before ``train``, so that every
    rank meets at a barrier once training has returned: only then does rank 0 write
    result.json. A rank that fails never reaches the barrier, torchrun stops the
    others, and the run has no result (its exit status is not 0).
    """
    from hdetr.engine import train
    from hdetr.checkpoints.training import write_text_atomic
    from hdetr.engine.distributed import barrier, init_distributed, shutdown_distributed

    cfg = experiment_from_dict(load_yaml_mapping(run_dir / REQUESTED), str(run_dir / REQUESTED))
    dist_info = init_distributed(cfg.train.device)
    try:
        summary = train(cfg, run_dir, resume=resume, overwrite=True)
        barrier()
        if dist_info.is_main:
            summary = {k: v for k, v in summary.items() if k not in ("output_dir", "metrics_path", "checkpoint_last",
                                                                      "checkpoint_best", "rank")}
            write_text_atomic(run_dir / RESULT, json.dumps({**summary, "world_size": dist_info.world_size,
                                                            "config": cfg.to_dict()}, indent=1, default=str))
    finally:
        shutdown_distributed()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hdetr.studies.runs RUN_DIR [--resume] [--overwrite]``: the process of one run (launchers start
    it; ``prepare_run`` writes the RUN_DIR/requested.yaml it trains)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hdetr.studies.runs",
                                     description="Train one prepared run folder (RUN_DIR/requested.yaml) and "
                                                 "write its result.json; study launchers start this process.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue the folder's checkpoint_last.pth")
    parser.add_argument("--overwrite", action="store_true", help="start afresh (the default without --resume)")
    args = parser.parse_args(argv)
    _run_one(args.run_dir, resume=args.resume)


if __name__ == "__main__":
    main()
