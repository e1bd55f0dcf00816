"""Gradient of the hybrid loss through the model equals the official one (fixture ``grad_norm``)."""
import sys
from pathlib import Path

import pytest
import torch

from hdetr.losses import build_criterion

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_grad_norm_of_the_total_loss_equals_the_official():
    official_checkpoint = pytest.importorskip("hdetr.checkpoints.official")
    fx = torch.load(FIXTURES / "official_public_fixture.pt", weights_only=True)
    sys.path.insert(0, str(FIXTURES))
    try:
        from recipe import recipe_state_dict
    finally:
        sys.path.remove(str(FIXTURES))
    state_dict = recipe_state_dict(fx["manifest"], salt=fx["recipe_salt"],
                                   enc_head=f"class_embed.{fx['config']['dec_layers']}.weight")
    overrides = official_checkpoint.official_flags_to_overrides(fx["official_args"])
    model = official_checkpoint.from_official_checkpoint(state_dict, **overrides)
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


SMALL = dict(backbone="resnet18", hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64,
             num_feature_levels=3, enc_n_points=2, dec_n_points=2, num_classes=5)


@pytest.mark.parametrize("scheme", ["baseline", "hybrid_branch", "hybrid_epoch", "hybrid_layer"])
def test_every_scheme_trains_a_model_through_its_plan(scheme):
    models = pytest.importorskip("hdetr.models")
    from hdetr.config import model as presets

    changes = {
        "baseline": dict(num_queries_one2one=10),
        "hybrid_branch": dict(num_queries_one2one=10, num_queries_one2many=20, k_one2many=3),
        "hybrid_epoch": dict(num_queries_one2one=30, k_one2many=3),
        "hybrid_layer": dict(num_queries_one2one=30, k_one2many=3, one2many_layers=1, one2one_layers=1),
    }[scheme]
    config = getattr(presets, scheme)(**SMALL, **changes)
    torch.manual_seed(0)
    model = models.build_model(config).train()
    criterion = build_criterion(config, num_epochs=3)  # the epoch scheme's schedule; the others ignore it
    targets = [
        {"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.2, 0.3, 0.1, 0.2]])},
        {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.6, 0.6, 0.2, 0.2]])},
    ]
    outputs = model(torch.randn(2, 3, 128, 128), torch.zeros(2, 128, 128, dtype=torch.bool))
    losses = criterion(outputs, targets, epoch=0, record=True)
    total = criterion.total_loss(losses)
    total.backward()
    assert torch.isfinite(total)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    one2many_layers = {"baseline": set(), "hybrid_branch": {0, 1}, "hybrid_epoch": {0, 1}, "hybrid_layer": {0}}
    assert {r.layer for r in criterion.last_assignments if r.group == "one2many"} == one2many_layers[scheme]
    for record in criterion.last_assignments:
        expected = config.k_one2many if record.group == "one2many" else 1
        counts = torch.bincount(record.target_indices, minlength=len(targets[record.image_index]["labels"]))
        assert counts.tolist() == [expected] * len(targets[record.image_index]["labels"])
