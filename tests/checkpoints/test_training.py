"""Checkpoint files: atomic writes (even under SIGKILL), random states, format detection, clear errors."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from hdetr.cli import main
from hdetr.checkpoints.state_dict import load_exactly
from hdetr.checkpoints.training import (capture_rng_state, checkpoint_format, read_checkpoint,
                                     read_training_checkpoint, restore_rng_state, save_atomic)
from hdetr.errors import UserError

SAVER = """
import sys, torch
from hdetr.checkpoints.training import save_atomic
path = sys.argv[1]
for k in range(1, 10_000):
    save_atomic({"format": "hdetr-checkpoint", "k": k, "model": {"w": torch.full((4_000_000,), float(k))}}, path)
    print(k, flush=True)
"""


def test_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_atomic({"model": {"w": torch.ones(3)}, "epoch": 1}, path)
    save_atomic({"model": {"w": torch.zeros(3)}, "epoch": 2}, path)
    assert read_checkpoint(path)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoint_last.pth"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout.readline().strip() == "1"  # one complete checkpoint exists
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".checkpoint_last.pth.tmp-*")):  # a later save is in flight
            assert time.monotonic() < deadline, "never saw a save in progress"
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    ckpt = read_checkpoint(path)
    assert ckpt["k"] >= 1 and torch.equal(ckpt["model"]["w"], torch.full((4_000_000,), float(ckpt["k"])))
    save_atomic({"k": 0}, path)  # the next save sweeps the killed writer's temporary away
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pth"]


def test_random_states_round_trip():
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    state = capture_rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(3).tolist())
    restore_rng_state(state)
    assert torch.equal(torch.rand(3), first[0]) and random.random() == first[1]
    assert np.random.rand(3).tolist() == first[2]


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"notes.pth: not a PyTorch checkpoint"):
        read_checkpoint(text)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(UserError, match=r"list.pth: not a checkpoint: expected a mapping, found list"):
        read_checkpoint(tmp_path / "list.pth")
    torch.save({"epoch": 3, "notes": "x"}, tmp_path / "dict.pth")
    with pytest.raises(UserError, match=r"dict.pth: not a checkpoint: .* found keys epoch, notes"):
        checkpoint_format(read_checkpoint(tmp_path / "dict.pth"), str(tmp_path / "dict.pth"))
    torch.save({"model": {"w": torch.ones(1)}, "args": None}, tmp_path / "official.pth")
    assert checkpoint_format(read_checkpoint(tmp_path / "official.pth")) == "official"
    with pytest.raises(UserError, match="cannot resume training from an official checkpoint"):
        read_training_checkpoint(tmp_path / "official.pth")


def test_another_architecture_names_the_mismatched_keys():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    other = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1), nn.Linear(1, 1)).state_dict()
    del other["0.bias"]
    with pytest.raises(UserError) as info:
        load_exactly(model, other, "other.pth")
    msg = str(info.value)
    assert "other.pth: checkpoint does not match the model (Sequential)" in msg
    assert "missing keys [0.bias]" in msg
    assert "unexpected keys [2.bias, 2.weight]" in msg
    assert "0.weight: checkpoint (4, 2) vs model (3, 2)" in msg


def test_eval_cli_names_the_bad_file_in_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.pth: not a PyTorch checkpoint" in err


def test_eval_cli_names_mismatched_keys_of_another_architecture(tmp_path, capsys):
    from hdetr.config.presets import get_preset
    from hdetr.checkpoints.training import FORMAT

    cfg = get_preset("synthetic_tiny")
    small = nn.Linear(2, 2).state_dict()
    save_atomic({"format": FORMAT, "model": small, "config": cfg.to_dict()}, tmp_path / "ckpt.pth")
    assert main(["eval", "--checkpoint", str(tmp_path / "ckpt.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "checkpoint does not match the model (HDeformableDETR)" in err and "unexpected keys [bias, weight]" in err


class _Pickled:
    """Stands for any object beyond what weights_only=True allows (it could run code when unpickled)."""


def test_a_checkpoint_that_needs_arbitrary_unpickling_is_refused_not_executed(tmp_path):
    from hdetr.checkpoints.training import read_checkpoint
    from hdetr.errors import UserError

    path = tmp_path / "foreign.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Pickled()}, path)
    with pytest.raises(UserError, match=r"foreign\.pth: not a PyTorch checkpoint readable with weights_only=True"):
        read_checkpoint(path)
