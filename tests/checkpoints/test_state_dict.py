import argparse

import pytest
import torch

from hdetr.checkpoints.state_dict import load_torch_file
from hdetr.errors import UserError
from hdetr.checkpoints.pretrained import read_state_dict


def test_reads_tensors_and_official_namespace_args(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=2e-4)}, path)
    data = load_torch_file(path, "checkpoint")
    assert data["args"].lr == 2e-4
    torch.testing.assert_close(data["model"]["w"], torch.ones(2))


def test_errors_name_the_file_and_the_reason(tmp_path):
    with pytest.raises(UserError, match=r"^weights .*absent\.pth: does not exist or is not a file$"):
        load_torch_file(tmp_path / "absent.pth", "weights")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError) as info:
        load_torch_file(text, "weights", hint="; a hint")
    message = str(info.value)
    assert message.startswith(f"weights {text}: not a PyTorch checkpoint readable with weights_only=True (")
    assert "UnpicklingError: Weights only load failed" in message and message.endswith("; a hint")
    assert "\n" not in message


def test_an_empty_backbone_weights_file_is_a_user_error(tmp_path):
    # torch raises EOFError with an empty message here; its "first line" must not crash
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"pretrained backbone weights .*empty\.pth: .*\(EOFError\)"):
        read_state_dict(str(empty))
