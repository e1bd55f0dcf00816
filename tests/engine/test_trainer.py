"""Training end to end on a tiny synthetic set: exact resume after SIGKILL, torchrun with gloo,
and a non-finite loss that stops with a clear message and keeps the last good checkpoint."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hdetr
from hdetr.config.experiment import apply_overrides
from hdetr.config.presets import get_preset
from hdetr.engine import read_metrics, train
from hdetr.checkpoints.training import read_checkpoint
from hdetr.engine.trainer import TrainingDiverged

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Sleeps before the 4th step, after a mid-epoch checkpoint at step 2 and one more step;
# the test kills it there with SIGKILL.
KILLED_RUN = """
import sys, time
from pathlib import Path
from hdetr.engine.trainer import Trainer
marker = Path(sys.argv[1])
original = Trainer.step
def step(self, images, targets):
    if self.progress.global_step == 3:
        marker.write_text("stopped")
        time.sleep(600)
    return original(self, images, targets)
Trainer.step = step
from hdetr.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from hdetr.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate("coco", root, num_images=8, num_val_images=4, seed=0, image_size=64)
    return root


def _overrides(root, *extra):
    return ["data.root=" + str(root), "train.epochs=2", "train.lr_drop=1",
            "train.eval_max_images=4", "train.deterministic=true", "data.num_workers=0", *extra]


def _train_cli(out, overrides, *, resume=False, runner=None, extra_args=()):
    args = ["train", "--output-dir", str(out)]
    if not resume:
        args += ["--preset", "synthetic_tiny", *[a for o in overrides for a in ("--set", o)]]
    else:
        args += ["--resume"]
    cmd = [sys.executable, "-m", "hdetr.cli", *args] if runner is None else [*runner, *args]
    return subprocess.run([*cmd, *extra_args], env=ENV, capture_output=True, text=True, timeout=600)


def _weights(out):
    return read_checkpoint(Path(out) / "checkpoint_last.pth")["model"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_ends_with_identical_weights(tiny_data, tmp_path):
    # train rows average 3 steps: the row at step 3 spans the checkpoint at step 2
    overrides = _overrides(tiny_data, "train.checkpoint_every_iters=2", "train.log_every_iters=3")
    killed_dir, marker = tmp_path / "killed", tmp_path / "marker"
    args = [a for o in overrides for a in ("--set", o)]
    log = tmp_path / "killed.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(marker), "train", "--preset", "synthetic_tiny",
                                 "--output-dir", str(killed_dir), *args], env=ENV,
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        straight = _train_cli(tmp_path / "straight", overrides)  # meanwhile, the uninterrupted run
        assert straight.returncode == 0, straight.stderr[-2000:]
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    state = read_checkpoint(killed_dir / "checkpoint_last.pth")
    assert (state["epoch"], state["batches_done"], state["global_step"]) == (0, 2, 2)  # mid-epoch
    assert max(r["step"] for r in read_metrics(killed_dir)) == 3  # it had gone past the checkpoint

    resumed = _train_cli(killed_dir, overrides, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "straight"), _weights(killed_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    rows_a = [r for r in read_metrics(tmp_path / "straight") if r["type"] == "train"]
    rows_b = [r for r in read_metrics(killed_dir) if r["type"] == "train"]
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a] == [3, 4, 6, 8]  # and at epoch ends
    assert [r["loss"] for r in rows_b] == [r["loss"] for r in rows_a]
    assert [r["AP"] for r in read_metrics(killed_dir) if r["type"] == "eval"] == [
        r["AP"] for r in read_metrics(tmp_path / "straight") if r["type"] == "eval"]


@pytest.mark.slow
def test_two_gloo_processes_follow_one_process_with_the_same_total_batch(tiny_data, tmp_path):
    """Per-process losses are normalised by the boxes of all processes and DDP averages the
    gradients, so each step's loss terms and gradient norm match one process with twice the batch.

    Why the small learning rate: a batch of 2 and two batches of 1 differ in roundoff (~1e-7), and
    AdamW's element-wise normalisation turns that into lr-sized updates of near-zero gradients (and
    the two-stage top-k can then pick another proposal). At lr 2e-4 the gradient norm of step 2
    differs by 1e-3 - exactly as much as one process accumulating per-image gradients differs from
    its own batch of 2 (measured), so it is the batching, not the distribution. At lr 1e-6 the runs
    agree to ~1e-7 and any error in the normalisation or averaging would show at full size.
    """
    # no augmentation: every image has the same size, so batching adds no padding
    common = _overrides(tiny_data, "data.augment=false", "train.lr=1e-6", "train.lr_backbone=1e-6")
    one = _train_cli(tmp_path / "one", [*common, "train.batch_size=2"])
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "--module", "hdetr.cli"]
    two = _train_cli(tmp_path / "two", [*common, "train.batch_size=1"], runner=torchrun)
    assert two.returncode == 0, two.stderr[-3000:]
    rows_one = [r for r in read_metrics(tmp_path / "one") if r["type"] == "train"]
    rows_two = [r for r in read_metrics(tmp_path / "two") if r["type"] == "train"]
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two] == list(range(1, 9))
    for r1, r2 in zip(rows_one, rows_two):
        for key in ("loss", "loss_ce", "loss_bbox", "loss_giou", "loss_ce_enc", "loss_ce_one2many",
                    "loss_bbox_one2many"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-5), (r1["step"], key)
        # a wrong normalisation would be off by a factor (boxes per process vs all), not 1e-3
        assert r2["grad_norm"] == pytest.approx(r1["grad_norm"], rel=1e-3), r1["step"]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-6


def test_step_evaluations_include_those_on_an_epochs_last_step(tiny_data, tmp_path):
    """8 images at batch 2 make 4 steps an epoch: evaluating every 2 steps evaluates at 2, 4, 6 and 8."""
    cfg = apply_overrides(get_preset("synthetic_tiny"),
                          _overrides(tiny_data, "train.eval_every_iters=2", "train.eval_every_epochs=0"))
    train(cfg, tmp_path / "run")
    assert [r["step"] for r in read_metrics(tmp_path / "run") if r["type"] == "eval"] == [2, 4, 6, 8]


def test_a_non_finite_loss_stops_with_the_step_and_terms_named_and_keeps_the_last_checkpoint(
        tiny_data, tmp_path, monkeypatch):
    real_build = hdetr.build_criterion

    def build_poisoned(config, num_epochs=None):
        criterion = real_build(config, num_epochs)
        original = criterion.forward
        calls = {"n": 0}

        def forward(outputs, targets, epoch=0, record=False):
            losses = original(outputs, targets, epoch=epoch, record=record)
            calls["n"] += 1
            if calls["n"] == 3:
                losses["loss_giou"] = losses["loss_giou"] * float("nan")
            return losses

        criterion.forward = forward
        return criterion

    monkeypatch.setattr(hdetr, "build_criterion", build_poisoned)
    cfg = apply_overrides(get_preset("synthetic_tiny"), _overrides(tiny_data, "train.checkpoint_every_iters=1"))
    with pytest.raises(TrainingDiverged) as info:
        train(cfg, tmp_path / "run")
    msg = str(info.value)
    assert "non-finite loss at epoch 0, iteration 2 (step 3)" in msg
    assert "loss=nan" in msg and "loss_giou=nan" in msg and "loss_bbox" not in msg
    assert "checkpoint_last.pth is kept" in msg
    state = read_checkpoint(tmp_path / "run" / "checkpoint_last.pth")
    assert state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert read_metrics(tmp_path / "run")[-1]["type"] == "error"


def test_starting_afresh_in_a_used_folder_needs_overwrite(tiny_data, tmp_path, capsys):
    from hdetr.cli import main

    out = tmp_path / "run"
    out.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "fixtures" / "recipe.py", out / "checkpoint_last.pth")
    args = ["train", "--preset", "synthetic_tiny", "--output-dir", str(out)]
    for o in _overrides(tiny_data):
        args += ["--set", o]
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "checkpoint_last.pth: not a PyTorch checkpoint" in capsys.readouterr().err


def test_the_wall_clock_guard_stops_with_a_checkpoint_and_resume_checks_the_model(tiny_data, tmp_path,
                                                                                   monkeypatch):
    from hdetr.engine.trainer import Trainer
    from hdetr.errors import UserError

    # a clock that advances 10 s per step: the 15 s guard stops the run after step 2, mid-epoch
    monkeypatch.setattr(Trainer, "elapsed", lambda self: 10.0 * self.progress.global_step)
    cfg = apply_overrides(get_preset("synthetic_tiny"), _overrides(tiny_data, "train.max_wall_seconds=15",
                                                                   "train.log_every_iters=5"))
    summary = train(cfg, tmp_path / "run")
    assert (summary["stopped_by"], summary["global_step"], summary["epoch"]) == ("max_wall_seconds", 2, 0)
    assert summary["metrics"]["num_images"] == 4 and "AP" in summary["metrics"]  # the final evaluation ran
    state = read_checkpoint(tmp_path / "run" / "checkpoint_last.pth")
    assert (state["epoch"], state["batches_done"], state["global_step"]) == (0, 2, 2)
    rows = read_metrics(tmp_path / "run")
    assert [(r["type"], r["step"]) for r in rows] == [("train", 2), ("eval", 2)]  # the partial window is logged
    other = apply_overrides(cfg, ["model.hidden_dim=64"])
    with pytest.raises(UserError, match="different model config \\(fields hidden_dim\\)"):
        train(other, tmp_path / "run", resume=True)


def test_a_checkpoint_of_the_per_epoch_schedule_resumes_exactly_on_the_step_schedule(tiny_data, tmp_path):
    """Checkpoints written before the schedule counted steps (version 1: a StepLR stepped per epoch) carry
    their learning rates in the optimiser state; resumed on the step schedule they end where a straight
    run ends. The stop falls after the epoch-1 drop (4 steps per epoch), between it and the step-7 drop. Their
    model config also held num_epochs (the schedule, now train.epochs alone), which does not make it another."""
    from hdetr.checkpoints.training import save_atomic

    cfg = apply_overrides(get_preset("synthetic_tiny"), _overrides(tiny_data, "train.lr_drop_iters=[7]"))
    straight = train(cfg, tmp_path / "straight")
    stopped = train(apply_overrides(cfg, ["train.max_iters=6"]), tmp_path / "old")
    assert (straight["global_step"], stopped["global_step"]) == (8, 6)
    state = read_checkpoint(tmp_path / "old" / "checkpoint_last.pth")
    lrs = [group["lr"] for group in state["optimizer"]["param_groups"]]
    state["version"] = 1
    state["lr_scheduler"] = {"step_size": 1, "gamma": 0.1, "base_lrs": [lr * 10 for lr in lrs], "last_epoch": 1,
                             "_step_count": 2, "_last_lr": lrs}
    state["config"]["model"]["num_epochs"] = cfg.train.epochs  # as configs held then: the same model config
    save_atomic(state, tmp_path / "old" / "checkpoint_last.pth")
    resumed = train(cfg, tmp_path / "old", resume=True)
    assert resumed["global_step"] == 8 and resumed["resumed"]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "old")
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    final = [r["lr"] for r in read_metrics(tmp_path / "old") if r["type"] == "train"]
    # lr_drop=1: drops after steps 4 and 8 (epoch ends), and the one after step 7, each once
    assert final[-1] == pytest.approx(cfg.train.lr * 1e-3)
