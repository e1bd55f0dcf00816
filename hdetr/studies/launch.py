"""How a study's runs are launched: one local process each, torchrun, or SLURM jobs; and the table they fill.

Launchers (``LaunchSpec.launcher``, the notebooks' ``LAUNCHER`` parameter):

- ``local``: ``hdetr.studies.runs.execute_runs`` as it is, one process per run.
- ``torchrun``: each run's process is ``torchrun --standalone --nproc_per_node=N -m
  hdetr.studies.runs RUN_DIR`` (``python -m torch.distributed.run``, the same
  interpreter); its ranks use NCCL on GPUs, gloo on CPUs. Several nodes go through SLURM.
- ``slurm``: each run becomes an sbatch script built from ``scripts/slurm_multinode.sh``
  (its ``#SBATCH`` header and its ``srun torchrun`` line, running ``hdetr.studies.runs``
  instead of ``hdetr train``), written into the run folder and submitted. With
  ``submit_only`` the launch returns once every job is submitted; otherwise it polls
  the run folders until each holds its ``result.json`` or its job has ended.

Every launcher keeps the run folders' contract (``hdetr.studies.runs``): a finished
run is not run again, an interrupted one resumes from ``checkpoint_last.pth``, a failed
one is reported with the tail of its log, and a submitted job still in the queue is
waited for, not submitted twice. ``launch_study`` turns the outcomes into the rows of a
report and names the runs that are missing from it (``StudyRuns.notes``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from hdetr.config.experiment import ExperimentConfig
from hdetr.errors import UserError
from hdetr.studies.rows import ComparisonRow
from hdetr.studies.runs import (LOG, RunOutcome, RunRequest, discard_result, execute_runs, log_tail, prepare_run,
                                read_result, run_command)
from hdetr.studies.variants import Variant, study_requests, study_rows

LAUNCHERS = ("local", "torchrun", "slurm")
SLURM_SCRIPT = "job.sbatch"
SLURM_JOB = "slurm_job.json"
SLURM_EXIT = "slurm_exit"
TEMPLATE = Path(__file__).resolve().parents[2] / "scripts" / "slurm_multinode.sh"
SLURM_DEFAULT_GPUS = 8


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """How to start each run of a study.

    launcher: local, torchrun or slurm (see the module docstring).
    nproc_per_node: processes (GPUs) per node of one run (torchrun, slurm).
    nnodes: nodes of one run (slurm; torchrun runs on one node).
    jobs: runs at once on this machine (local, torchrun); SLURM schedules its own.
    submit_only: slurm: return after submitting instead of waiting for the jobs.
    sbatch_args: extra sbatch options, e.g. ``("--partition=gpu", "--time=24:00:00")``.
    poll_seconds: how often a waiting launch looks at the run folders.
    """

    launcher: str = "local"
    nproc_per_node: int = 1
    nnodes: int = 1
    jobs: int = 1
    submit_only: bool = False
    sbatch_args: tuple[str, ...] = ()
    poll_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UserError(f"LAUNCHER={self.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
        for name in ("nproc_per_node", "nnodes", "jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name.upper()}={value!r}: expected an integer >= 1")
        if self.launcher == "torchrun" and self.nnodes > 1:
            raise UserError(f"NNODES={self.nnodes} with LAUNCHER=torchrun: a run on several nodes needs a launcher "
                            f"on every node; use LAUNCHER=slurm (or the torchrun line of "
                            f"scripts/slurm_multinode.sh on each node)")
        if self.launcher == "local" and (self.nproc_per_node > 1 or self.nnodes > 1):
            raise UserError(f"LAUNCHER=local runs one process per run; NPROC_PER_NODE={self.nproc_per_node} "
                            f"NNODES={self.nnodes} need LAUNCHER=torchrun or slurm")
        if self.submit_only and self.launcher != "slurm":
            raise UserError(f"SUBMIT_ONLY applies to LAUNCHER=slurm (LAUNCHER={self.launcher} waits for its runs)")
        if self.poll_seconds <= 0:
            raise UserError(f"poll_seconds={self.poll_seconds}: expected > 0")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def launch_spec(scale: str, launcher: str | None = None, nproc_per_node: int | None = None, nnodes: int | None = None,
                submit_only: bool = False, sbatch_args: Sequence[str] = (), jobs: int | None = None) -> LaunchSpec | None:
    """The notebooks' LAUNCHER / NPROC_PER_NODE / NNODES / SUBMIT_ONLY / SBATCH_ARGS / JOBS parameters.

    None (no launcher asked for at smoke or cpu scale): the study trains as before, in
    the notebook's process. At paper scale the default is torchrun with one process per
    visible GPU; slurm's default is 8 processes (GPUs) per node.
    """
    if launcher is None and scale != "paper":
        if nproc_per_node not in (None, 1) or nnodes not in (None, 1) or submit_only:
            raise UserError("NPROC_PER_NODE / NNODES / SUBMIT_ONLY need a LAUNCHER (torchrun or slurm)")
        return None
    launcher = launcher or "torchrun"
    if nproc_per_node is None:
        import torch

        # slurm: the template's 8 GPUs per node (the submitting login node often has none)
        nproc_per_node = {"local": 1, "slurm": SLURM_DEFAULT_GPUS}.get(launcher, max(1, torch.cuda.device_count()))
    return LaunchSpec(launcher=launcher, nproc_per_node=int(nproc_per_node), nnodes=int(nnodes or 1),
                      jobs=int(jobs or 1), submit_only=bool(submit_only), sbatch_args=tuple(sbatch_args),
                      poll_seconds=2.0 if scale == "smoke" else 30.0)


def torchrun_command(spec: LaunchSpec) -> Callable[[RunRequest, Sequence[str]], list[str]]:
    """``execute_runs``' ``command``: the run's process under torchrun on this node."""

    def command(request: RunRequest, args: Sequence[str]) -> list[str]:
        # --standalone: a rendezvous of its own on a free port, so runs side by side do not collide
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                f"--nproc_per_node={spec.nproc_per_node}", "-m", "hdetr.studies.runs", str(request.run_dir),
                *args]

    return command


# ----------------------------------------------------------------------------------- SLURM
def sbatch_script(request: RunRequest, args: Sequence[str], spec: LaunchSpec, template: Path = TEMPLATE) -> str:
    """The sbatch script of one run, built from ``scripts/slurm_multinode.sh``.

    Kept from the template: its ``#SBATCH`` lines, its node / port / thread variables
    and its ``srun torchrun`` rendezvous options; replaced: the module (``hdetr.studies.runs``
    on the run folder), the job name, the nodes and GPUs, the log file. The job writes its
    exit status to ``slurm_exit`` in the run folder (how a waiting launch tells a failed
    job from a running one); a requeued job removes it again when it starts.
    """
    lines = template.read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#SBATCH") and "--job-name" not in ln]
    try:
        env_start = next(i for i, ln in enumerate(lines) if ln.startswith("GPUS_PER_NODE="))
        srun = next(i for i, ln in enumerate(lines) if ln.startswith("srun "))
        module = next(i for i, ln in enumerate(lines) if ln.strip().startswith("--module "))
    except StopIteration:
        raise UserError(f"{template}: expected the lines GPUS_PER_NODE=..., srun ... torchrun and --module ...; "
                        f"the SLURM launcher builds its job scripts from them") from None
    variables = [ln for ln in lines[env_start:srun] if ln.strip()]
    launch = lines[srun:module]
    if "torchrun" not in launch[0]:
        raise UserError(f"{template}: line {srun + 1} {launch[0]!r} should start torchrun under srun")
    launch[0] = launch[0].replace("torchrun", f"{shlex.quote(sys.executable)} -m torch.distributed.run", 1)
    run_dir = request.run_dir.resolve()
    name = f"hdetr-{request.key.replace('/', '-')}-s{request.seed}"
    body = [
        "#!/usr/bin/env bash",
        f"# {request.key} seed {request.seed}: written by hdetr.studies.launch from scripts/slurm_multinode.sh",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --nodes={spec.nnodes}",
        f"#SBATCH --gpus-per-node={spec.nproc_per_node}",
        f"#SBATCH --output={run_dir / 'slurm-%j.log'}",
        *header,
        *(f"#SBATCH {a}" for a in spec.sbatch_args),
        "set -euo pipefail",
        f"RUN_DIR={shlex.quote(str(run_dir))}",
        'rm -f "$RUN_DIR/slurm_exit"',
        "trap 'echo $? > \"$RUN_DIR/slurm_exit\"' EXIT",
        f"cd {shlex.quote(str(TEMPLATE.parents[1]))}",
        f"GPUS_PER_NODE={spec.nproc_per_node}",
        # one rendezvous port per job: two jobs whose first node is the same host must not collide
        'MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}',
        *[ln for ln in variables if not ln.startswith("GPUS_PER_NODE=")],
        *launch,
        f'  --module hdetr.studies.runs "$RUN_DIR" {" ".join(args)} >> "$RUN_DIR/{LOG}" 2>&1',
        "",
    ]
    return "\n".join(body)


def _queue_state(job_id: str) -> str | None:
    """The job's SLURM state (PENDING, RUNNING ...), "" once it left the queue, None without squeue."""
    if shutil.which("squeue") is None:
        return None
    proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _submitted_job(request: RunRequest) -> str | None:
    """The job id of this request's job when it is still queued or running (same config)."""
    path = request.run_dir / SLURM_JOB
    if not path.is_file() or (request.run_dir / SLURM_EXIT).is_file():
        return None
    job = json.loads(path.read_text())
    if job.get("config_sha") != _config_sha(request.config):
        return None
    state = _queue_state(job["job_id"])
    return job["job_id"] if state is None or state else None


def _config_sha(config: ExperimentConfig) -> str:
    return hashlib.sha256(config.to_yaml().encode()).hexdigest()[:16]


def submit_run(request: RunRequest, spec: LaunchSpec) -> str:
    """Write the run's sbatch script and submit it; returns the job id."""
    args = prepare_run(request)
    script = request.run_dir / SLURM_SCRIPT
    script.write_text(sbatch_script(request, args, spec))
    (request.run_dir / SLURM_EXIT).unlink(missing_ok=True)
    if shutil.which("sbatch") is None:
        raise UserError("LAUNCHER=slurm: sbatch is not on PATH (run on a SLURM login node)")
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"sbatch {script} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0].split()[-1]
    (request.run_dir / SLURM_JOB).write_text(json.dumps({"job_id": job_id, "config_sha": _config_sha(request.config),
                                                         "args": list(args)}) + "\n")
    return job_id


def _slurm_runs(requests: Sequence[RunRequest], spec: LaunchSpec, log: Callable[[str], None]) -> list[RunOutcome]:
    outcomes: dict[int, RunOutcome] = {}
    waiting: dict[int, str] = {}
    for i, request in enumerate(requests):
        result = read_result(request.run_dir, request.config)
        if result is not None:
            outcomes[i] = RunOutcome(request, "skipped", result)
            continue
        job_id = _submitted_job(request)
        if job_id is not None:
            log(f"[{request.key} seed {request.seed}] job {job_id} already submitted: waiting for it")
        else:
            job_id = submit_run(request, spec)
            log(f"[{request.key} seed {request.seed}] submitted job {job_id} ({spec.nnodes} x {spec.nproc_per_node} "
                f"processes) for {request.run_dir}")
        waiting[i] = job_id
    if spec.submit_only:
        for i, job_id in waiting.items():
            outcomes[i] = RunOutcome(requests[i], "submitted", None, f"job {job_id}")
        return [outcomes[i] for i in range(len(requests))]
    gone: dict[int, int] = {}
    while waiting:
        time.sleep(spec.poll_seconds)
        for i, job_id in list(waiting.items()):
            request = requests[i]
            result = read_result(request.run_dir, request.config)
            exit_file = request.run_dir / SLURM_EXIT
            state = _queue_state(job_id)
            if result is not None and (state is None or not state or exit_file.is_file()):
                outcomes[i] = RunOutcome(request, "finished", result)
                log(f"[{request.key} seed {request.seed}] job {job_id} finished: AP "
                    f"{100 * result.get('metrics', {}).get('AP', float('nan')):.1f}")
            elif state:  # queued, running or requeued: keep waiting
                continue
            elif exit_file.is_file() or gone.get(i, 0) >= 2:
                code = exit_file.read_text().strip() if exit_file.is_file() else "left the queue without an exit status"
                discard_result(request.run_dir)
                outcomes[i] = RunOutcome(request, "failed", None, log_tail(request.run_dir))
                log(f"[{request.key} seed {request.seed}] job {job_id} FAILED (exit {code}); the end of "
                    f"{request.run_dir / LOG}:\n{outcomes[i].log_tail}")
            else:
                if state == "":
                    gone[i] = gone.get(i, 0) + 1
                continue
            del waiting[i]
    return [outcomes[i] for i in range(len(requests))]


def launch_runs(requests: Sequence[RunRequest], spec: LaunchSpec, *,
                log: Callable[[str], None] = print) -> list[RunOutcome]:
    """Run (or submit) every unfinished request with ``spec``'s launcher; outcomes in request order."""
    if spec.launcher == "slurm":
        return _slurm_runs(requests, spec, log)
    command = torchrun_command(spec) if spec.launcher == "torchrun" else run_command
    return execute_runs(requests, jobs=spec.jobs, log=log, command=command, poll_seconds=min(spec.poll_seconds, 1.0))


# ----------------------------------------------------------------------------------- the study's table
@dataclasses.dataclass
class StudyRuns:
    """The rows of a launched study and what became of each run (missing ones named in ``notes``)."""

    rows: list[ComparisonRow]
    outcomes: list[RunOutcome]

    @property
    def missing(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def notes(self) -> list[str]:
        """One report note naming every run that is not in the table, and why."""
        if not self.missing:
            return []
        parts = []
        for o in self.missing:
            why = o.status if o.status != "failed" else "failed: " + _failure_line(o.request.run_dir)
            parts.append(f"{o.request.key} seed {o.request.seed} ({why}, {o.request.run_dir})")
        return [f"Missing runs ({len(self.missing)} of {len(self.outcomes)}), not in the table: " + "; ".join(parts)
                + ". Run the same command again: finished runs are kept, interrupted ones resume."]


def _failure_line(run_dir: Path) -> str:
    """The first ``...Error: ...`` line of a failed run's log (under torchrun, the failing rank's), else its last line."""
    text = (run_dir / LOG).read_text(errors="replace") if (run_dir / LOG).is_file() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().strip("=")]
    errors = [ln for ln in lines if ("Error:" in ln or "Exception:" in ln) and "ChildFailedError" not in ln]
    return ((errors or lines or ["no log"])[0 if errors else -1])[:200]


def launch_study(base: ExperimentConfig, variants: Sequence[Variant], seeds: Sequence[int], runs_dir: str | Path,
                 spec: LaunchSpec, *, log: Callable[[str], None] = print) -> StudyRuns:
    """Launch every (variant, seed) of a study with ``spec`` and collect the finished runs into rows."""
    requests = study_requests(base, variants, seeds, runs_dir)
    if spec.launcher != "local":
        log(f"{len(requests)} runs, each {spec.nnodes} node(s) x {spec.nproc_per_node} process(es) via "
            f"{spec.launcher}")
    outcomes = launch_runs(requests, spec, log=log)
    return StudyRuns(study_rows(variants, outcomes), outcomes)
