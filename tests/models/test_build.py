"""Model construction: official parameter counts and key sets, variants, inputs, initialisation."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hdetr.checkpoints.official import to_official_state_dict
from hdetr.errors import ConfigError
from hdetr.config.model import ModelConfig, baseline, hybrid_branch, hybrid_epoch, hybrid_layer
from hdetr.errors import UserError
from hdetr.models import HDeformableDETR, build_model
from hdetr.models.batching import batch_images
from hdetr.outputs import ONE2MANY, ONE2ONE, QUERY_GROUPS, ModelOutput
from hdetr.models.deformable_decoder import group_attention_mask

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMALL = dict(backbone="resnet18", enc_layers=1, dec_layers=2, dim_feedforward=64, hidden_dim=64, nheads=4,
             num_queries_one2one=6, num_queries_one2many=12, k_one2many=2, num_classes=5, msda_backend="torch",
             freeze_stem=False)


def small(**changes) -> ModelConfig:
    return ModelConfig(**{**SMALL, **changes})


def _images(sizes=((3, 64, 48), (3, 56, 72)), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in sizes]


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name, config", [("r50_hybrid_n300_t1500_k6", hybrid_branch()),
                                          ("r50_baseline_n300", baseline())])
def test_full_size_models_match_official_parameters_and_keys(name, config):
    manifest = json.loads((FIXTURES / "official_manifests.json").read_text())[name]
    model = build_model(config)
    assert trainable(model) == manifest["n_parameters"]
    exported = to_official_state_dict(model)
    assert {k: list(v.shape) for k, v in exported.items()} == manifest["state_dict"]


def test_train_outputs_have_official_keys_and_shapes():
    model = build_model(small()).train()
    out = model(_images())
    b, n, t, c = 2, 6, 12, 5
    assert out["pred_logits"].shape == (b, n, c) and out["pred_boxes"].shape == (b, n, 4)
    assert out["pred_logits_one2many"].shape == (b, t, c) and out["pred_boxes_one2many"].shape == (b, t, 4)
    assert len(out["aux_outputs"]) == len(out["aux_outputs_one2many"]) == 1
    assert out["aux_outputs_one2many"][0]["pred_boxes"].shape == (b, t, 4)
    assert out["enc_outputs"]["pred_logits"].shape[:2] == out["enc_outputs"]["pred_boxes"].shape[:2]
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_eval_runs_only_one_to_one_queries():
    model = build_model(small()).eval()
    with torch.no_grad():
        out = model(_images())
    assert out["pred_logits"].shape[1] == 6
    assert out["pred_logits_one2many"].shape == (2, 0, 5)
    assert out["aux_outputs_one2many"][0]["pred_logits"].shape == (2, 0, 5)


def test_groups_runs_the_one_to_many_queries_of_an_eval_mode_model():
    model = build_model(small()).eval()
    with torch.no_grad():
        out = model(_images(), groups=QUERY_GROUPS)
        alone = model(_images(), groups=(ONE2ONE,))
    assert isinstance(out, ModelOutput) and out.num_layers(ONE2MANY) == 2
    assert out.logits[ONE2MANY].shape == (2, 2, 12, 5) and out.boxes[ONE2ONE].shape == (2, 2, 6, 4)
    assert alone["pred_logits_one2many"].shape == (2, 0, 5)
    assert not model.training
    with pytest.raises(UserError, match="groups="):
        model(_images(), groups=(ONE2MANY,))
    with pytest.raises(UserError, match="no one-to-many queries"):
        build_model(small(scheme="baseline", num_queries_one2many=0)).eval()(_images(), groups=QUERY_GROUPS)


def test_without_aux_loss_only_the_last_layer_is_stacked():
    model = build_model(small(aux_loss=False)).train()
    out = model(_images())
    assert out.num_layers(ONE2ONE) == 1 and "aux_outputs" not in out
    assert out.logits[ONE2ONE].shape == (1, 2, 6, 5)


def test_one_to_one_queries_do_not_see_the_one_to_many_group():
    # Group-wise self-attention: changing the one-to-many content must not move one-to-one outputs.
    torch.manual_seed(0)
    model = build_model(small(two_stage=False, mixed_selection=False)).train()
    images = _images()
    with torch.no_grad():
        before = model(images)
        model.query_embed.weight[6:] += 1.0
        after = model(images)
    torch.testing.assert_close(after["pred_logits"], before["pred_logits"])
    assert not torch.allclose(after["pred_logits_one2many"], before["pred_logits_one2many"])


def test_group_attention_equals_official_masked_attention():
    layer = build_model(small()).transformer.decoder.layers[0]
    g = torch.Generator().manual_seed(1)
    tgt, pos = torch.randn(2, 18, 64, generator=g), torch.randn(2, 18, 64, generator=g)
    q = tgt + pos
    for sizes in ([6, 12], [6, 6, 6], [18]):  # hybrid branch, Group DETR (G=3), one group
        grouped = layer.group_self_attention(tgt, pos, sizes)
        blocked = ~group_attention_mask(sizes)  # nn.MultiheadAttention: True = may not attend
        masked = layer.self_attn(q, q, tgt, attn_mask=blocked, need_weights=False)[0]
        torch.testing.assert_close(grouped, masked, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("changes", [
    dict(two_stage=False, mixed_selection=False),
    dict(two_stage=False, mixed_selection=False, with_box_refine=False, look_forward_twice=False),
    dict(mixed_selection=False, look_forward_twice=False),
    dict(num_feature_levels=1, two_stage=False, mixed_selection=False),
    dict(num_feature_levels=3),
    dict(num_feature_levels=5, hidden_dim=96, nheads=3),
    dict(enc_layers=0, dec_n_points=2, enc_n_points=3),
    dict(aux_loss=False),
])
def test_variants_build_and_run(changes):
    config = small(**changes)
    model = build_model(config).train()
    out = model(_images())
    assert out["pred_boxes"].shape == (2, 6, 4)
    assert ("enc_outputs" in out) == config.two_stage
    assert ("aux_outputs" in out) == config.aux_loss
    if config.aux_loss:
        assert len(out["aux_outputs"]) == config.dec_layers - 1
    loss = out["pred_boxes"].sum() + out["pred_logits"].sum() + out["pred_logits_one2many"].sum()
    loss.backward()
    assert model.class_embed[config.dec_layers - 1].weight.grad is not None
    assert model.backbone[0].body.layer4[0].conv1.weight.grad is not None


@pytest.mark.parametrize("config", [hybrid_epoch(**{**SMALL, "num_queries_one2one": 18, "num_queries_one2many": 0}),
                                    hybrid_layer(**{**SMALL, "num_queries_one2one": 18, "num_queries_one2many": 0,
                                                    "one2many_layers": 1, "one2one_layers": 1})])
def test_single_group_schemes_expose_all_queries_as_one_to_one(config):
    model = build_model(config).train()
    out = model(_images())
    assert out["pred_logits"].shape[1] == 18 and out["pred_logits_one2many"].shape[1] == 0


def test_unsupported_architectures_are_rejected():
    with pytest.raises(ConfigError, match="hidden_dim=48"):
        build_model(small(hidden_dim=48, nheads=4))
    with pytest.raises(ConfigError, match="num_feature_levels=2"):
        build_model(small(num_feature_levels=2))


def test_initialisation_follows_official_recipe():
    model = build_model(small())
    prior = -math.log((1 - 0.01) / 0.01)
    for head in model.class_embed:
        torch.testing.assert_close(head.bias, torch.full_like(head.bias, prior))
    for head in model.bbox_embed:  # two-stage: zero last layer, w/h bias 0
        assert torch.count_nonzero(head.layers[-1].weight) == 0 and torch.count_nonzero(head.layers[-1].bias) == 0
    assert model.bbox_embed[0] is not model.bbox_embed[1]  # deep copies with box refinement
    single = build_model(small(two_stage=False, mixed_selection=False))
    assert single.bbox_embed[0].layers[-1].bias[2:].tolist() == [-2.0, -2.0]
    assert single.bbox_embed[1].layers[-1].bias[2:].tolist() == [0.0, 0.0]
    shared = build_model(small(two_stage=False, mixed_selection=False, with_box_refine=False,
                               look_forward_twice=False))
    assert shared.class_embed[0] is shared.class_embed[1]
    attn = model.transformer.encoder.layers[0].self_attn
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0 and torch.count_nonzero(attn.attention_weights.bias) == 0
    # head 0 looks right (+x), at distances 1..n_points
    offsets = attn.sampling_offsets.bias.view(attn.n_heads, attn.n_levels, attn.n_points, 2)
    assert offsets[0, 0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0] and offsets[0, 0, :, 1].abs().max() < 1e-6


def test_backbone_freezing():
    frozen = build_model(small(freeze_stem=True))
    body = frozen.backbone[0].body
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    trained = build_model(small(freeze_stem=False))
    assert trained.backbone[0].body.conv1.weight.requires_grad


def test_pretrained_backbone_from_local_file(tmp_path):
    import torchvision

    weights = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "r18.pth"
    torch.save(weights, path)
    model = build_model(small(pretrained_backbone=str(path)))
    torch.testing.assert_close(model.backbone[0].body.layer3[0].conv1.weight, weights["layer3.0.conv1.weight"])
    wrong = tmp_path / "wrong.pth"
    torch.save({k: v for k, v in weights.items() if not k.startswith("layer4.1.")} | {"extra.w": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match=r"wrong\.pth.*missing keys \[layer4\.1\..*unexpected keys \[extra\.w\]"):
        build_model(small(pretrained_backbone=str(wrong)))
    with pytest.raises(UserError, match="does not exist"):
        build_model(small(pretrained_backbone=str(tmp_path / "absent.pth")))


def test_predict_scales_boxes_to_each_image():
    model = build_model(small(topk=7))
    images = _images()
    results = model.predict(images)
    assert len(results) == 2 and model.training
    for image, result in zip(images, results):
        assert result["scores"].shape == (7,) and result["labels"].dtype == torch.int64
        assert (result["scores"][:-1] >= result["scores"][1:]).all()
        h, w = image.shape[-2:]
        boxes = result["boxes"]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert (centres[:, 0] <= w).all() and (centres[:, 1] <= h).all()
    doubled = model.predict(images, orig_sizes=[[128, 96], [112, 144]])
    torch.testing.assert_close(doubled[0]["boxes"], results[0]["boxes"] * 2)


def test_batching_pads_bottom_right():
    padded, mask = batch_images(_images())
    assert padded.shape == (2, 3, 64, 72) and mask.shape == (2, 64, 72)
    assert not mask[0, :64, :48].any() and mask[0, :, 48:].all()
    assert mask[1, 56:].all() and (padded[1, :, 56:] == 0).all()
    with pytest.raises(UserError, match="image 1"):
        batch_images([torch.zeros(3, 8, 8), torch.zeros(8, 8)])


def test_bad_inputs_get_clear_errors():
    model = build_model(small())
    with pytest.raises(UserError, match="mask must be bool"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, 31, dtype=torch.bool))
    with pytest.raises(UserError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(3, 32, 32))


def test_model_keeps_its_config():
    config = small()
    model = build_model(config)
    assert isinstance(model, HDeformableDETR) and model.config == config
