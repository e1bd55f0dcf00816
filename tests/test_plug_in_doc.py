"""docs/plug_in.md: its python code runs as written (a toy detector trained with a hybrid plan)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hdetr.errors import UserError
from hdetr.plug_in import criterion_outputs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plug_in.md"
HF_SECTION = "## HF transformers' Deformable DETR"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_plug_in_example_trains_two_steps(capsys):
    blocks = _python_blocks(DOC.read_text().split(HF_SECTION)[0])  # the HF example: tests/adapters/test_hf_deformable_detr.py
    assert blocks, "docs/plug_in.md has no python code block"
    torch.manual_seed(0)
    namespace: dict = {"__name__": "plug_in_example"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("0 ") and printed[-1].startswith("1 ")
    assert torch.isfinite(namespace["loss"])


def test_criterion_outputs_splits_the_main_set_and_checks_shapes():
    logits, boxes = torch.randn(3, 2, 10, 4), torch.rand(3, 2, 10, 4)
    out = criterion_outputs(logits, boxes, num_one2one=4)
    assert out["pred_logits"].shape == (2, 4, 4) and out["pred_boxes_one2many"].shape == (2, 6, 4)
    assert len(out["aux_outputs"]) == 2 and torch.equal(out["aux_outputs"][0]["pred_boxes"], boxes[0, :, :4])
    assert criterion_outputs(logits, boxes)["pred_logits_one2many"].shape == (2, 0, 4)
    with pytest.raises(UserError, match=r"expected logits \[L, B, Q, C\]"):
        criterion_outputs(logits[0], boxes[0])
