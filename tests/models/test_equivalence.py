"""The model reproduces the official H-Deformable-DETR outputs (tests/fixtures, see recipe.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from hdetr.checkpoints.official import from_official_checkpoint, official_flags_to_overrides, to_official_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _recipe():
    spec = importlib.util.spec_from_file_location("hdetr_test_recipe", FIXTURES / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURES / "official_public_fixture.pt", weights_only=True)


@pytest.fixture(scope="module")
def official_state_dict(fixture):
    config = fixture["config"]
    state_dict = _recipe().recipe_state_dict(fixture["manifest"], salt=fixture["recipe_salt"],
                                             enc_head=f"class_embed.{config['dec_layers']}.weight")
    checksum = sum(v.double().abs().sum().item() for v in state_dict.values())
    assert checksum == pytest.approx(fixture["recipe_checksum"], rel=1e-6)
    return state_dict


@pytest.fixture(scope="module")
def model(fixture, official_state_dict):
    overrides = official_flags_to_overrides(fixture["official_args"])
    # the reference backend keeps this test independent of compiled kernels (tested in test_ops_*)
    return from_official_checkpoint({"model": official_state_dict}, **overrides, msda_backend="torch")


def _assert_close(actual, expected, name, atol=1e-4):
    if isinstance(expected, dict):
        assert set(actual) >= set(expected), name
        for key in expected:
            _assert_close(actual[key], expected[key], f"{name}.{key}", atol)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), name
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{name}[{i}]", atol)
    else:
        assert actual.shape == expected.shape, f"{name}: {tuple(actual.shape)} vs {tuple(expected.shape)}"
        diff = (actual.detach() - expected).abs().max().item()
        assert diff <= atol, f"{name}: max abs difference {diff}"


def assert_detections_match_official(results, official_results, topk):
    """Each image's detections equal the official ones as sets (score 1e-4, box 1e-3 px)."""
    for got, want in zip(results, official_results):
        assert len(got["scores"]) == len(want["scores"]) == topk
        unmatched = list(range(len(want["scores"])))
        for score, label, box in zip(got["scores"], got["labels"], got["boxes"]):
            hit = next((j for j in unmatched if want["labels"][j] == label
                        and abs(want["scores"][j] - score) <= 1e-4
                        and (want["boxes"][j] - box).abs().max() <= 1e-3), None)
            assert hit is not None, f"detection {label.item()} {score.item():.5f} {box.tolist()} not in official"
            unmatched.remove(hit)


def test_config_read_from_official_flags(model, fixture):
    config, expected = model.config, fixture["config"]
    for name in ("enc_layers", "dec_layers", "dim_feedforward", "num_queries_one2one", "num_queries_one2many",
                 "k_one2many", "lambda_one2many", "num_classes", "num_feature_levels", "hidden_dim", "topk"):
        assert getattr(config, name) == expected[name], name
    assert config.scheme == "hybrid_branch"
    assert config.two_stage and config.mixed_selection and config.look_forward_twice and config.with_box_refine


def test_train_outputs_match_official(model, fixture):
    model.train()
    outputs = model(list(fixture["images"]))
    expected = fixture["train_outputs"]
    assert set(outputs) == set(expected)
    _assert_close(outputs, expected, "train")


def test_padded_batch_input_matches_list_input(model, fixture):
    model.train()
    with torch.no_grad():
        from_list = model(list(fixture["images"]))
        from_batch = model(fixture["padded"], fixture["pad_mask"])
    _assert_close(from_batch, from_list, "padded", atol=1e-5)


def test_eval_outputs_and_detections_match_official(model, fixture):
    model.eval()
    with torch.no_grad():
        outputs = model(fixture["padded"], fixture["pad_mask"])
    _assert_close({k: outputs[k] for k in fixture["eval_outputs"]}, fixture["eval_outputs"], "eval")
    assert outputs["pred_logits_one2many"].shape[1] == 0
    sizes = torch.stack([t["orig_size"] for t in fixture["targets"]])
    results = model.postprocess(outputs, sizes)
    assert_detections_match_official(results, fixture["eval_results"], model.config.topk)


def test_predict_uses_eval_mode_and_restores_training(model, fixture):
    model.train()
    sizes = torch.stack([t["orig_size"] for t in fixture["targets"]])
    results = model.predict(fixture["padded"], orig_sizes=sizes, mask=fixture["pad_mask"])
    assert model.training
    expected = fixture["eval_results"]
    for got, want in zip(results, expected):
        torch.testing.assert_close(got["scores"].sort().values, want["scores"].sort().values, atol=1e-4, rtol=0)


def test_export_reproduces_the_official_state_dict(model, official_state_dict):
    exported = to_official_state_dict(model)
    assert list(exported) and set(exported) == set(official_state_dict)
    for key, value in official_state_dict.items():
        assert torch.equal(exported[key], value), key


def test_gradients_match_official_grad_norm(model, fixture):
    # Look-forward-twice and the detached two-stage references decide where gradients flow;
    # the official total loss's gradient norm over all parameters checks those paths.
    from hdetr.losses import build_criterion

    model.train()
    model.zero_grad()
    criterion = build_criterion(model.config)
    targets = [{"labels": t["labels"], "boxes": t["boxes"]} for t in fixture["targets"]]
    losses = criterion(model(list(fixture["images"])), targets)
    total = sum(losses[k] * criterion.weight_dict[k] for k in criterion.weight_dict if k in losses)
    assert total.item() == pytest.approx(fixture["total_loss"], rel=1e-4)
    total.backward()
    grad_norm = torch.sqrt(sum(p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None))
    assert grad_norm.item() == pytest.approx(fixture["grad_norm"], rel=1e-4)
    model.zero_grad()
