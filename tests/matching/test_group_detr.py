"""Group DETR as a supervision plan, and the decoder's group mask made visible and optional."""
from __future__ import annotations

import pytest
import torch

from hdetr import build_criterion
from hdetr.config.model import ModelConfig, baseline, group_detr
from hdetr.errors import ConfigError
from hdetr.models import build_model
from hdetr.models.deformable_decoder import group_attention_mask

SMALL = dict(backbone="resnet18", enc_layers=1, dec_layers=2, dim_feedforward=64, hidden_dim=64, nheads=4,
             num_queries_one2one=6, num_classes=5, msda_backend="torch", freeze_stem=False)
SINGLE_STAGE = dict(two_stage=False, mixed_selection=False)


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 64, 48, generator=g), torch.randn(3, 56, 72, generator=g)]


def _targets():
    return [{"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])},
            {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.4, 0.4, 0.3, 0.2]])}]


def test_group_attention_mask_is_block_diagonal_or_all_true():
    mask = group_attention_mask([2, 3, 1])
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[:2, :2] = expected[2:5, 2:5] = expected[5:, 5:] = True
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    assert group_attention_mask([2, 3, 1], mask_groups=False).all()


def test_config_checks_name_the_field_and_value():
    assert group_detr().num_queries == 11 * 300
    with pytest.raises(ConfigError, match=r"scheme=group_detr needs num_groups \(G\) >= 2, got num_groups=1"):
        group_detr(num_groups=1).validate()
    with pytest.raises(ConfigError, match=r"num_groups=3 \(G\) only exists in the group_detr scheme, not baseline"):
        baseline(num_groups=3).validate()
    for scheme in ("baseline", "hybrid_epoch", "hybrid_layer"):
        with pytest.raises(ConfigError, match=f"mask_groups=False needs several query groups .* scheme={scheme}"):
            ModelConfig(scheme=scheme, num_queries_one2many=0, mask_groups=False).validate()
    ModelConfig(mask_groups=False).validate()  # the hybrid branch: two groups
    group_detr(num_groups=2, mask_groups=False).validate()


def test_group_detr_runs_g_groups_in_training_and_the_first_in_eval():
    torch.manual_seed(0)
    model = build_model(group_detr(num_groups=3, **SMALL, **SINGLE_STAGE)).train()
    assert model.query_groups() == [6, 6, 6]
    images = _images()
    with torch.no_grad():
        before = model(images)
        model.query_embed.weight[12:] += 1.0  # group 2's queries
        after = model(images)
    assert before["pred_logits_one2many"].shape == (2, 12, 5) and before["pred_logits"].shape == (2, 6, 5)
    # self-attention within each group: groups 0 and 1 do not see group 2
    torch.testing.assert_close(after["pred_logits"], before["pred_logits"])
    torch.testing.assert_close(after["pred_logits_one2many"][:, :6], before["pred_logits_one2many"][:, :6])
    assert not torch.allclose(after["pred_logits_one2many"][:, 6:], before["pred_logits_one2many"][:, 6:])
    model.eval()
    assert model.query_groups() == [6]
    with torch.no_grad():
        assert model(images)["pred_logits"].shape == (2, 6, 5)


def test_two_stage_group_detr_selects_g_times_n_proposals():
    model = build_model(group_detr(num_groups=2, **SMALL)).train()
    out = model(_images())
    assert out["pred_boxes"].shape == (2, 6, 4) and out["pred_boxes_one2many"].shape == (2, 6, 4)


def test_each_extra_group_is_lost_as_the_baseline_loses_its_block():
    # Group i's terms equal the baseline criterion's on the i-th block of n queries, under _group{i} keys.
    config = group_detr(num_groups=3, **SMALL)
    g = torch.Generator().manual_seed(3)

    def layer(q):
        return {"pred_logits": torch.randn(2, q, 5, generator=g), "pred_boxes": torch.rand(2, q, 4, generator=g)}

    last, aux, enc = layer(18), layer(18), layer(30)
    outputs = {"pred_logits": last["pred_logits"][:, :6], "pred_boxes": last["pred_boxes"][:, :6],
               "pred_logits_one2many": last["pred_logits"][:, 6:], "pred_boxes_one2many": last["pred_boxes"][:, 6:],
               "aux_outputs": [{k: v[:, :6] for k, v in aux.items()}],
               "aux_outputs_one2many": [{k: v[:, 6:] for k, v in aux.items()}], "enc_outputs": enc}
    criterion = build_criterion(config)
    losses = criterion(outputs, _targets(), record=True)
    reference = build_criterion(baseline(**SMALL))
    for i in (1, 2):
        block = slice(6 * i, 6 * (i + 1))
        alone = reference({"pred_logits": last["pred_logits"][:, block], "pred_boxes": last["pred_boxes"][:, block],
                           "aux_outputs": [{k: v[:, block] for k, v in aux.items()}]}, _targets())
        for key in ("loss_ce", "loss_bbox", "loss_giou", "loss_ce_0", "loss_giou_0", "class_error"):
            torch.testing.assert_close(losses[f"{key}_group{i}"], alone[key])
        assert criterion.weight_dict[f"loss_ce_0_group{i}"] == config.cls_loss_coef
    assert not any(k.endswith("_one2many") for k in losses) and "loss_ce_enc_group1" not in losses
    assert {r.group for r in criterion.last_assignments} == {"one2one", "group1", "group2"}


def _train_two_steps(model, criterion):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(2):
        losses = criterion(model(_images()), _targets())
        optimizer.zero_grad()
        criterion.total_loss(losses).backward()
        optimizer.step()
    assert all(torch.isfinite(v).all() for v in losses.values())


@pytest.mark.parametrize("mask_groups", [True, False])
def test_without_the_mask_one_to_one_outputs_depend_on_the_one_to_many_queries(mask_groups):
    torch.manual_seed(0)
    config = ModelConfig(**SMALL, **SINGLE_STAGE, num_queries_one2many=12, k_one2many=2, mask_groups=mask_groups)
    model, criterion = build_model(config).train(), build_criterion(config)
    assert model.query_groups() == ([6, 12] if mask_groups else [18])
    _train_two_steps(model, criterion)
    with torch.no_grad():
        before = model(_images())
        model.query_embed.weight[6:] += 1.0  # the one-to-many queries
        after = model(_images())
    moved = not torch.allclose(after["pred_logits"], before["pred_logits"])
    assert moved == (not mask_groups)
    # either way the T queries are still supervised one-to-many
    assert "loss_ce_one2many" in criterion(before, _targets())
