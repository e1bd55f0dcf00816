"""With its own Swin-T backbone, the model reproduces the official outputs, losses and matchings
(tests/fixtures/official_public_fixture_swin.pt: feature maps that are not multiples of the window)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hdetr.checkpoints.official import from_official_checkpoint, to_official_state_dict
from hdetr.losses import build_criterion
from test_losses import assert_final_matchings_official, assert_official, targets_of
from .test_equivalence import _assert_close, _recipe, assert_detections_match_official

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official_public_fixture_swin.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def official_state_dict(fixture):
    state_dict = _recipe().recipe_state_dict(fixture["manifest"], salt=fixture["recipe_salt"],
                                             enc_head=fixture["provenance"]["recipe_enc_head"])
    state_dict.update(fixture["constant_buffers"])  # the official index tables, not weights
    checksum = sum(v.double().abs().sum().item() for v in state_dict.values())
    assert checksum == pytest.approx(fixture["recipe_checksum"], rel=1e-6)
    return state_dict


@pytest.fixture(scope="module")
def model(fixture, official_state_dict):
    return from_official_checkpoint({"model": official_state_dict}, **fixture["hdetr_overrides"],
                                    msda_backend="torch")


def test_train_outputs_losses_and_matchings_match_official(model, fixture):
    model.train()
    outputs = model(list(fixture["images"]))
    assert set(outputs) == set(fixture["train_outputs"])
    _assert_close(outputs, fixture["train_outputs"], "train")

    criterion = build_criterion(model.config)
    losses = criterion(outputs, targets_of(fixture), record=True)
    assert set(losses) == set(fixture["loss_dict"])
    for key, expected in fixture["loss_dict"].items():
        assert_official(losses[key].detach(), expected, key)
    assert criterion.total_loss(losses).item() == pytest.approx(fixture["total_loss"], rel=1e-4)
    last = model.config.dec_layers - 1
    assert_final_matchings_official(criterion, fixture, last)


def test_eval_outputs_and_detections_match_official(model, fixture):
    model.eval()
    with torch.no_grad():
        outputs = model(fixture["padded"], fixture["pad_mask"])
    _assert_close({k: outputs[k] for k in fixture["eval_outputs"]}, fixture["eval_outputs"], "eval")
    sizes = torch.stack([t["orig_size"] for t in fixture["targets"]])
    assert_detections_match_official(model.postprocess(outputs, sizes), fixture["eval_results"], model.config.topk)


def test_gradients_match_official_grad_norm(model, fixture):
    model.train()
    model.zero_grad()
    criterion = build_criterion(model.config)
    criterion.total_loss(criterion(model(list(fixture["images"])), targets_of(fixture))).backward()
    grad_norm = torch.sqrt(sum(p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None))
    assert grad_norm.item() == pytest.approx(fixture["grad_norm"], rel=1e-4)
    model.zero_grad()


def test_export_reproduces_the_official_state_dict(model, official_state_dict):
    exported = to_official_state_dict(model)
    assert set(exported) == set(official_state_dict)
    for key, value in official_state_dict.items():
        assert torch.equal(exported[key], value), key
