"""Official checkpoint import/export: inference of the architecture, overrides, strict loading, errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from hdetr.checkpoints.official import (
    from_official_checkpoint,
    infer_config,
    official_flags_to_overrides,
    to_official_state_dict,
)
from hdetr.errors import ConfigError
from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.models import build_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMALL = dict(backbone="resnet18", enc_layers=1, dec_layers=2, dim_feedforward=64, hidden_dim=64, nheads=8,
             num_queries_one2one=6, num_queries_one2many=12, k_one2many=2, num_classes=5, msda_backend="torch")


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 64, 48, generator=g), torch.randn(3, 56, 72, generator=g)]


def _eval_outputs(model):
    model.eval()
    with torch.no_grad():
        return model(_images())


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(**SMALL))


def _manifest_state_dict(name):
    manifest = json.loads((FIXTURES / "official_manifests.json").read_text())[name]["state_dict"]
    return {k: torch.zeros(shape) for k, shape in manifest.items()}


def test_round_trip_through_a_file_with_official_args(small_model, tmp_path):
    state_dict = to_official_state_dict(small_model)
    args = argparse.Namespace(num_queries_one2one=6, num_queries_one2many=12, k_one2many=2, lambda_one2many=1.0,
                              look_forward_twice=True, dropout=0.0, nheads=8, topk=100, lr=2e-4,
                              pretrained_backbone_path="./swin_tiny_patch4_window7_224.pkl")
    path = tmp_path / "checkpoint0011.pth"
    torch.save({"model": state_dict, "optimizer": {}, "lr_scheduler": {}, "epoch": 11, "args": args}, path)
    loaded = from_official_checkpoint(path, msda_backend="torch")
    assert loaded.config == small_model.config
    torch.testing.assert_close(_eval_outputs(loaded)["pred_logits"], _eval_outputs(small_model)["pred_logits"])


def test_every_key_of_the_official_full_size_models_loads():
    for name, one2many in (("r50_hybrid_n300_t1500_k6", 1500), ("r50_baseline_n300", 0)):
        state_dict = _manifest_state_dict(name)
        config = infer_config(state_dict)
        assert (config.num_queries_one2one, config.num_queries_one2many) == (300, one2many)
        assert config.scheme == ("hybrid_branch" if one2many else "baseline")
        assert (config.backbone, config.enc_layers, config.dec_layers, config.dim_feedforward) == ("resnet50", 6, 6, 2048)
        assert config.two_stage and config.mixed_selection and config.with_box_refine
        model = from_official_checkpoint(state_dict)
        assert set(to_official_state_dict(model)) == set(state_dict)


def test_default_query_split_and_overrides(small_model):
    state_dict = to_official_state_dict(small_model)  # 18 queries in all
    assert infer_config(state_dict).num_queries_one2many == 0
    config = infer_config(state_dict, overrides={"num_queries_one2many": 12, "k_one2many": 3, "lambda_one2many": 0.5})
    assert (config.num_queries_one2one, config.num_queries_one2many, config.k_one2many) == (6, 12, 3)
    assert config.lambda_one2many == 0.5 and config.scheme == "hybrid_branch"
    epoch = infer_config(state_dict, overrides={"scheme": "hybrid_epoch", "k_one2many": 4})
    assert (epoch.num_queries_one2one, epoch.num_queries_one2many, epoch.scheme) == (18, 0, "hybrid_epoch")
    with pytest.raises(UserError, match="18 queries.*7 \\+ num_queries_one2many=12"):
        infer_config(state_dict, overrides={"num_queries_one2one": 7, "num_queries_one2many": 12})
    with pytest.raises(ConfigError, match="unknown override.*num_querys.*valid names:.*num_queries_one2one"):
        from_official_checkpoint(state_dict, num_querys=5)


def test_architecture_is_inferred_from_shapes():
    config = ModelConfig(**{**SMALL, "two_stage": False, "mixed_selection": False, "look_forward_twice": False,
                            "num_feature_levels": 3, "dec_n_points": 2, "enc_layers": 2, "hidden_dim": 96})
    state_dict = to_official_state_dict(build_model(config))
    assert not any(k.startswith("transformer.decoder.class_embed") for k in state_dict)
    inferred = infer_config(state_dict, overrides={"num_queries_one2one": 6, "look_forward_twice": False})
    for name in ("two_stage", "mixed_selection", "with_box_refine", "num_feature_levels", "dec_n_points",
                 "enc_layers", "hidden_dim", "num_classes", "backbone", "num_queries_one2many"):
        assert getattr(inferred, name) == getattr(config, name), name


def test_strict_loading_names_the_offending_keys(small_model, tmp_path):
    state_dict = dict(to_official_state_dict(small_model))
    state_dict.pop("class_embed.1.bias")
    state_dict["transformer.level_embed"] = torch.zeros(4, 32)
    state_dict["foo.bar"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"model": state_dict}, path)
    with pytest.raises(UserError) as info:
        from_official_checkpoint(path, hidden_dim=64)
    message = str(info.value)
    assert "broken.pth" in message and "missing keys [class_embed.1.bias]" in message
    assert "unexpected keys [foo.bar]" in message
    assert "transformer.level_embed: checkpoint (4, 32) vs model (4, 64)" in message


def test_files_that_are_not_checkpoints_fail_clearly(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.txt: not a PyTorch checkpoint readable with weights_only=True"):
        from_official_checkpoint(text)
    with pytest.raises(UserError, match="does not exist"):
        from_official_checkpoint(tmp_path / "absent.pth")
    weights = tmp_path / "other.pth"
    torch.save({"model": {"conv.weight": torch.zeros(2)}}, weights)
    with pytest.raises(UserError, match="other.pth has no key 'class_embed.0.weight'"):
        from_official_checkpoint(weights)


def test_official_flags_become_overrides():
    flags = ("--with_box_refine --two_stage --dim_feedforward 2048 --epochs 12 --num_queries_one2one 300 "
             "--num_queries_one2many 1500 --k_one2many 6 --lambda_one2many 1.0 --dropout 0.0 --mixed_selection "
             "--look_forward_twice --no_aux_loss --output_dir exps/x --pretrained_backbone_path a.pkl")
    overrides = official_flags_to_overrides(flags)
    assert overrides["num_queries_one2many"] == "1500" and overrides["look_forward_twice"] is True
    assert overrides["aux_loss"] is False and overrides["pretrained_backbone_path"] == "a.pkl"
    assert "epochs" not in overrides and "output_dir" not in overrides
    with pytest.raises(ConfigError, match="--num_qeuries"):
        official_flags_to_overrides("--num_qeuries 3")


@pytest.mark.slow
def test_swin_backbone_uses_official_key_names():
    config = ModelConfig(**{**SMALL, "backbone": "swin_tiny", "nheads": 4})
    model = build_model(config)
    state_dict = to_official_state_dict(model)
    assert "backbone.0.body.layers.0.downsample.reduction.weight" in state_dict
    assert "backbone.0.body.layers.3.downsample.reduction.weight" not in state_dict
    assert "backbone.0.body.layers.2.blocks.5.attn.relative_position_index" in state_dict
    assert {"backbone.0.body.norm1.weight", "backbone.0.body.norm3.bias"} <= set(state_dict)
    loaded = from_official_checkpoint(state_dict, nheads=4, num_queries_one2one=6, msda_backend="torch")
    assert loaded.config.backbone == "swin_tiny"
    torch.testing.assert_close(_eval_outputs(loaded)["pred_boxes"], _eval_outputs(model)["pred_boxes"])


def test_wrapped_and_renamed_state_dicts_load(small_model):
    state_dict = dict(to_official_state_dict(small_model))
    state_dict["tgt_embed.weight"] = state_dict.pop("query_embed.weight")
    state_dict["backbone.0.body.bn1.num_batches_tracked"] = torch.tensor(5)
    wrapped = {"module." + k: v for k, v in state_dict.items()}
    loaded = from_official_checkpoint(wrapped, num_queries_one2one=6, msda_backend="torch")
    assert loaded.config.num_queries_one2many == 12
    torch.testing.assert_close(loaded.query_embed.weight, small_model.query_embed.weight)
