"""Launching a study's runs (torchrun, SLURM) from `hdetr reproduce`, and tables filled from checkpoint files."""
from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch

import hdetr
from hdetr.cli import main
from hdetr.errors import UserError
from hdetr.studies.from_checkpoints import official_match
from hdetr.studies.launch import (SLURM_EXIT, SLURM_JOB, SLURM_SCRIPT, LaunchSpec, launch_runs, launch_spec,
                                  sbatch_script, study_requests)
from hdetr.studies.runs import RESULT, read_result
from hdetr.studies.scales import ablation_study, table_study
from hdetr.studies.variants import variant_config


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


def test_table6_rows_at_paper_scale_are_presets():
    spec = ablation_study("paper", data_root="/datasets/coco")
    assert [v.key for v in spec.variants] == ["baseline", "baseline_1800q", "hybrid_branch", "hybrid_epoch",
                                              "hybrid_layer"]
    models = {v.key: variant_config(spec.base, v, 42).model for v in spec.variants}
    assert models["baseline_1800q"].num_queries_one2one == 1800 and models["baseline_1800q"].scheme == "baseline"
    assert (models["hybrid_branch"].num_queries_one2many, models["hybrid_branch"].k_one2many) == (1500, 6)
    assert {models[k].num_queries_one2one for k in ("hybrid_epoch", "hybrid_layer")} == {1800}
    assert all(not m.mixed_selection and not m.look_forward_twice and m.dropout == 0.1 for m in models.values())
    assert [float(v.paper["AP"].number) for v in spec.variants] == [43.7, 44.1, 45.9, 45.5, 45.6]
    assert variant_config(spec.base, spec.variants[0], 42).data.root == "/datasets/coco"


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


OFFICIAL_NAMES = {
    "baseline": "r50_deformable_detr_plus_iterative_bbox_refinement_plus_plus_two_stage_12eps.pth",
    "hybrid_branch": "r50_hybrid_branch_lambda1_group6_t1500_dp0_mqs_lft_deformable_detr_plus_iterative_bbox_"
                     "refinement_plus_plus_two_stage_12eps.pth",
}


def _official_checkpoint(model_cfg, path: Path) -> Path:
    torch.manual_seed(0)
    model = hdetr.build_model(model_cfg)
    args = argparse.Namespace(nheads=model_cfg.nheads, num_queries_one2one=model_cfg.num_queries_one2one,
                              num_queries_one2many=model_cfg.num_queries_one2many, k_one2many=model_cfg.k_one2many,
                              topk=model_cfg.topk, backbone=model_cfg.backbone)
    torch.save({"model": hdetr.to_official_state_dict(model), "args": args, "epoch": 11}, path)
    return path


@pytest.mark.slow
def test_checkpoints_fill_the_table_and_the_official_checkpoints_report(tmp_path):
    spec = table_study("coco", "smoke")
    files = {v.key: _official_checkpoint(variant_config(spec.base, v, 0).model, tmp_path / OFFICIAL_NAMES[v.key])
             for v in spec.variants}
    assert official_match(files["hybrid_branch"]) == (OFFICIAL_NAMES["hybrid_branch"][:-len("_12eps.pth")], 12)
    checkpoints = json.dumps({k: str(p) for k, p in files.items()})
    assert main(["reproduce", "coco", "--scale", "smoke", "--out", str(tmp_path / "reports"),
                 "-p", f"CHECKPOINTS={checkpoints}"]) == 0
    out = tmp_path / "reports" / "coco" / "smoke"
    table = json.loads((out / "coco.json").read_text())
    for row in table["rows"]:
        assert len(row["measured"]) == 1 and row["details"][0]["format"] == "official"
        assert row["measured"][0]["num_images"] == spec.base.train.eval_max_images
    assert any("evaluations of given checkpoint files" in note for note in table["notes"])
    official = json.loads((out / "official_checkpoints.json").read_text())
    assert official["title"] == "Official checkpoints evaluated by hdetr"
    assert [(r["label"], r["paper"]["AP"]) for r in official["rows"]] == [(OFFICIAL_NAMES["baseline"], 43.7),
                                                                          (OFFICIAL_NAMES["hybrid_branch"], 48.7)]
    assert [r["measured"] for r in official["rows"]] == [r["measured"] for r in table["rows"]]
    assert "official_checkpoints_readme" in (out / "official_checkpoints.md").read_text()


@pytest.mark.slow
def test_scheme_costs_measure_every_scheme_against_the_baseline():
    from hdetr.studies.scheme_costs import scheme_costs

    spec = ablation_study("smoke")
    models = {v.key: variant_config(spec.base, v, 0).model.replace(msda_backend="torch")
              for v in spec.variants if v.key in ("baseline", "hybrid_branch")}
    costs = scheme_costs(models, batch_size=2, image_size=64, iterations=2, log=lambda _: None)
    assert [c.key for c in costs] == ["baseline", "hybrid_branch"]
    assert costs[0].train_ratio_to_baseline == 1.0 and costs[1].train_ratio_to_baseline > 0
    assert costs[1].queries_train == costs[1].queries_eval + models["hybrid_branch"].num_queries_one2many
    for cost in costs:
        assert cost.memory_kind == "cpu_peak_rss" and cost.peak_memory_mb > cost.process_floor_mb > 0
        assert cost.inference_images_per_s > 0 and cost.parameters >= cost.trainable_parameters > 0
