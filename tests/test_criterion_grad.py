"""Gradient of the hybrid loss through the model equals the official one (fixture ``grad_norm``)."""
import sys
from pathlib import Path

import pytest
import torch

from hdetr.losses import build_criterion

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_grad_norm_of_the_total_loss_equals_the_official():
    checkpoint_io = pytest.importorskip("hdetr.checkpoint_io")
    fx = torch.load(FIXTURES / "official_public_fixture.pt", weights_only=True)
    sys.path.insert(0, str(FIXTURES))
    try:
        from recipe import recipe_state_dict
    finally:
        sys.path.remove(str(FIXTURES))
    state_dict = recipe_state_dict(fx["manifest"], salt=fx["recipe_salt"],
                                   enc_head=f"class_embed.{fx['config']['dec_layers']}.weight")
    overrides = checkpoint_io.official_flags_to_overrides(fx["official_args"])
    model = checkpoint_io.from_official_checkpoint(state_dict, **overrides)
    model.train()
    criterion = build_criterion(model.config)
    assert model.config.k_one2many == fx["config"]["k_one2many"]
    assert model.config.lambda_one2many == fx["config"]["lambda_one2many"]

    outputs = model(fx["padded"], fx["pad_mask"])
    targets = [{"labels": t["labels"], "boxes": t["boxes"]} for t in fx["targets"]]
    losses = criterion(outputs, targets)
    total = criterion.total_loss(losses)
    assert total.item() == pytest.approx(fx["total_loss"], rel=1e-4)
    total.backward()
    grads = [p.grad.detach().double().norm() for p in model.parameters() if p.grad is not None]
    grad_norm = torch.stack(grads).norm().item()
    assert grad_norm == pytest.approx(float(fx["grad_norm"]), rel=1e-4)
