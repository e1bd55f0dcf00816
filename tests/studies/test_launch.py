"""Launching a study's runs (torchrun, SLURM) from `hdetr reproduce`: one submission per run, resumable."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from hdetr.cli import main
from hdetr.errors import UserError
from hdetr.studies.launch import (SLURM_EXIT, SLURM_JOB, SLURM_SCRIPT, LaunchSpec, launch_runs, launch_spec,
                                  sbatch_script, study_requests)
from hdetr.studies.runs import RESULT, read_result
from hdetr.studies.scales import table_study


def test_launch_parameters_are_checked_before_anything_runs():
    assert launch_spec("smoke") is None  # no LAUNCHER: the study trains in the notebook's process
    assert launch_spec("paper").launcher == "torchrun"
    assert launch_spec("paper", "slurm").nproc_per_node == 8  # the template's GPUs per node
    with pytest.raises(UserError, match="LAUNCHER='mpi'"):
        launch_spec("smoke", "mpi")
    with pytest.raises(UserError, match="NPROC_PER_NODE=0"):
        launch_spec("cpu", "torchrun", nproc_per_node=0)
    with pytest.raises(UserError, match="use LAUNCHER=slurm"):
        launch_spec("paper", "torchrun", nproc_per_node=8, nnodes=2)
    with pytest.raises(UserError, match="SUBMIT_ONLY applies to LAUNCHER=slurm"):
        launch_spec("paper", "torchrun", submit_only=True)
    with pytest.raises(UserError, match="need a LAUNCHER"):
        launch_spec("cpu", None, nproc_per_node=2)
    assert LaunchSpec("slurm", nproc_per_node=8, nnodes=2).world_size == 16


def test_sbatch_script_runs_the_run_folder_through_the_templates_srun_torchrun(tmp_path):
    spec = table_study("coco", "smoke")
    request = study_requests(spec.base, spec.variants, spec.seeds, tmp_path)[1]
    script = sbatch_script(request, ["--resume"], LaunchSpec("slurm", nproc_per_node=8, nnodes=2,
                                                             sbatch_args=("--partition=gpu",)))
    assert script.startswith("#!/usr/bin/env bash\n")
    for line in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8", "#SBATCH --requeue", "#SBATCH --partition=gpu",
                 "#SBATCH --job-name=hdetr-hybrid_branch-s0", "GPUS_PER_NODE=8", "--rdzv_backend=c10d",
                 '--nproc_per_node="${GPUS_PER_NODE}"', f"RUN_DIR={request.run_dir.resolve()}"):
        assert line in script, line
    assert '--module hdetr.studies.runs "$RUN_DIR" --resume' in script
    assert "hdetr.cli train" not in script and "PRESET" not in script
    assert script.index("#SBATCH") < script.index("set -euo pipefail")  # sbatch reads options before commands


def test_sbatch_script_runs_under_srun_and_records_its_exit_status(tmp_path):
    """The job script as SLURM would run it, with srun and scontrol replaced by echoes."""
    spec = table_study("coco", "smoke")
    request = study_requests(spec.base, spec.variants, spec.seeds, tmp_path / "runs")[0]
    request.run_dir.mkdir(parents=True)
    script = request.run_dir / SLURM_SCRIPT
    script.write_text(sbatch_script(request, ["--resume"], LaunchSpec("slurm", nproc_per_node=4, nnodes=2)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", 'echo "srun $*"'), ("scontrol", "printf 'node07\\nnode08\\n'")):
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NODELIST": "node[07-08]", "SLURM_NNODES": "2"}
    env.pop("MASTER_PORT", None)
    subprocess.run(["bash", str(script)], env=env, check=True)
    launched = (request.run_dir / "run.log").read_text()
    for part in ("srun --kill-on-bad-exit=1", "-m torch.distributed.run", "--nnodes=2", "--nproc_per_node=4",
                 "--rdzv_endpoint=node07:24242", "--rdzv_id=4242",
                 f"--module hdetr.studies.runs {request.run_dir.resolve()} --resume"):
        assert part in launched, part
    assert (request.run_dir / SLURM_EXIT).read_text().strip() == "0"


def _fake_slurm(bin_dir: Path, queue_state: str, job: str = "") -> Path:
    """sbatch that records the scripts it is given (and runs ``job`` in their folder), squeue that reports
    ``queue_state`` for every job."""
    bin_dir.mkdir()
    submitted = bin_dir / "submitted.txt"
    for name, body in (("sbatch", f'echo "$2" >> {submitted}\n(cd "$(dirname "$2")" && {job or "true"})\n'
                                  f'echo "$(wc -l < {submitted})"\n'),
                       ("squeue", f'echo "{queue_state}"\n')):
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return submitted


def test_slurm_submits_once_waits_for_queued_jobs_and_collects_results(tmp_path, monkeypatch):
    spec = table_study("coco", "smoke")
    requests = study_requests(spec.base, spec.variants, spec.seeds, tmp_path / "runs")
    submitted = _fake_slurm(tmp_path / "bin", "RUNNING")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    slurm = LaunchSpec("slurm", nproc_per_node=8, submit_only=True, poll_seconds=0.01)

    outcomes = launch_runs(requests, slurm, log=lambda _: None)
    assert [o.status for o in outcomes] == ["submitted", "submitted"]
    assert len(submitted.read_text().splitlines()) == 2
    for request in requests:
        assert (request.run_dir / SLURM_SCRIPT).is_file() and (request.run_dir / "requested.yaml").is_file()
        assert json.loads((request.run_dir / SLURM_JOB).read_text())["args"] == ["--overwrite"]
    # the jobs are still in the queue: launching again waits for them instead of submitting twice
    assert [o.status for o in launch_runs(requests, slurm, log=lambda _: None)] == ["submitted", "submitted"]
    assert len(submitted.read_text().splitlines()) == 2

    # the first job finished (rank 0 wrote result.json, the job its exit status) ...
    done, failed = requests
    (done.run_dir / RESULT).write_text(json.dumps({"metrics": {"AP": 0.25}, "world_size": 8,
                                                   "config": done.config.to_dict()}))
    (done.run_dir / SLURM_EXIT).write_text("0\n")
    # ... the second one failed: launching again submits it again, and this time it fails at once
    (failed.run_dir / SLURM_EXIT).write_text("1\n")
    resubmitted = _fake_slurm(tmp_path / "bin2", "", job="echo 'RuntimeError: CUDA out of memory' >> run.log; "
                                                      "echo 1 > slurm_exit")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin2'}{os.pathsep}{os.environ['PATH']}")
    outcomes = launch_runs(requests, LaunchSpec("slurm", poll_seconds=0.01), log=lambda _: None)
    assert resubmitted.read_text().split() == [str(failed.run_dir / SLURM_SCRIPT)]
    assert outcomes[0].status == "skipped" and outcomes[0].result["world_size"] == 8
    assert outcomes[1].status == "failed" and "CUDA out of memory" in outcomes[1].log_tail
    assert read_result(failed.run_dir) is None


@pytest.mark.slow
def test_reproduce_launches_a_two_process_gloo_study_and_keeps_finished_runs(tmp_path):
    runs = tmp_path / "runs"
    args = ["reproduce", "coco", "--scale", "smoke", "--out", str(tmp_path / "reports"), "-p", "LAUNCHER=torchrun",
            "-p", "NPROC_PER_NODE=2", "-p", "JOBS=2", "-p", f"RUNS_DIR={runs}"]
    assert main(args) == 0
    report = json.loads((tmp_path / "reports" / "coco" / "smoke" / "coco.json").read_text())
    assert "LAUNCHER=torchrun" in report["command"] and "NPROC_PER_NODE=2" in report["command"]
    for row in report["rows"]:
        assert len(row["measured"]) == 1 and 0.0 <= row["measured"][0]["AP"] <= 1.0
        assert row["details"][0]["world_size"] == 2 and row["details"][0]["status"] == "finished"
    for variant in ("baseline", "hybrid_branch"):
        result = json.loads((runs / variant / "seed0" / RESULT).read_text())
        assert result["world_size"] == 2 and result["global_step"] > 0
    assert not any("Missing runs" in note for note in report["notes"])

    # launched again, the finished runs are kept (not trained again), with the results the table shows
    spec = table_study("coco", "smoke")
    again = launch_runs(study_requests(spec.base, spec.variants, spec.seeds, runs),
                        LaunchSpec("torchrun", nproc_per_node=2, poll_seconds=0.1), log=lambda _: None)
    assert [o.status for o in again] == ["skipped", "skipped"]
    assert [[o.result["metrics"]] for o in again] == [row["measured"] for row in report["rows"]]
