"""The criterion against the official H-Deformable-DETR loss, every scheme's keys, assignment records."""
from pathlib import Path

import pytest
import torch

from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.losses import build_criterion
from hdetr.matching.records import ROW_FIELDS, records_to_rows

FIXTURE = Path(__file__).parent / "fixtures" / "official_public_fixture.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def fixture_config(fx, **changes) -> ModelConfig:
    c = fx["config"]
    fields = dict(
        backbone=c["backbone"], num_feature_levels=c["num_feature_levels"], hidden_dim=c["hidden_dim"],
        nheads=c["nheads"], enc_layers=c["enc_layers"], dec_layers=c["dec_layers"],
        dim_feedforward=c["dim_feedforward"], dropout=c["dropout"], num_queries_one2one=c["num_queries_one2one"],
        num_queries_one2many=c["num_queries_one2many"], k_one2many=c["k_one2many"],
        lambda_one2many=c["lambda_one2many"], two_stage=c["two_stage"], with_box_refine=c["with_box_refine"],
        mixed_selection=c["mixed_selection"], look_forward_twice=c["look_forward_twice"],
        num_classes=c["num_classes"], set_cost_class=c["cost_class"], set_cost_bbox=c["cost_bbox"],
        set_cost_giou=c["cost_giou"], cls_loss_coef=c["cls_loss_coef"], bbox_loss_coef=c["bbox_loss_coef"],
        giou_loss_coef=c["giou_loss_coef"], focal_alpha=c["focal_alpha"], scheme="hybrid_branch",
    )
    return ModelConfig(**{**fields, **changes})


def assert_official(value, expected, msg=""):
    """Official loss terms are stored as floats; 1e-4 relative, as the reference README asks."""
    assert float(value) == pytest.approx(float(expected), rel=1e-4), msg


def targets_of(fx):
    return [{"labels": t["labels"], "boxes": t["boxes"]} for t in fx["targets"]]


def outputs_with_grad(fx):
    """A copy of the fixture's train outputs whose tensors require grad."""
    def leaf(value):
        if torch.is_tensor(value):
            return value.clone().requires_grad_(True)
        if isinstance(value, dict):
            return {k: leaf(v) for k, v in value.items()}
        return [leaf(v) for v in value]
    return leaf(fx["train_outputs"])


def test_branch_losses_equal_the_official_loss_dict_term_by_term(fixture):
    criterion = build_criterion(fixture_config(fixture))
    losses = criterion(fixture["train_outputs"], targets_of(fixture))
    assert set(losses) == set(fixture["loss_dict"])
    for key, expected in fixture["loss_dict"].items():
        assert_official(losses[key], expected, key)
    assert criterion.weight_dict == fixture["weight_dict"]
    total = criterion.total_loss(losses)
    assert total.item() == pytest.approx(fixture["total_loss"], rel=1e-4)


def test_branch_last_layer_matches_equal_the_official_indices(fixture):
    criterion = build_criterion(fixture_config(fixture))
    criterion(fixture["train_outputs"], targets_of(fixture), record=True)
    last = fixture["config"]["dec_layers"] - 1
    assert_final_matchings_official(criterion, fixture, last)


def test_records_give_k_one2many_positives_and_one_one2one_positive_per_box(fixture):
    config = fixture_config(fixture)
    criterion = build_criterion(config)
    criterion(fixture["train_outputs"], targets_of(fixture), record=True)
    records = criterion.last_assignments
    layers = set(range(config.dec_layers)) | {-1}
    assert {(r.layer, r.group) for r in records} == {(l, "one2one") for l in layers} | {
        (l, "one2many") for l in range(config.dec_layers)}
    for record in records:
        size = len(fixture["targets"][record.image_index]["labels"])
        per_target = torch.bincount(record.target_indices, minlength=size)
        expected = config.k_one2many if record.group == "one2many" else 1
        assert per_target.tolist() == [expected] * size
        if record.group == "one2many":
            # each (target, copy) pair exactly once
            pairs = set(zip(record.target_indices.tolist(), record.copy_indices.tolist()))
            assert len(pairs) == size * config.k_one2many
        else:
            assert record.copy_indices.eq(0).all()
        assert len(set(record.query_indices.tolist())) == len(record)
        assert ((record.iou >= 0) & (record.iou <= 1)).all()
    rows = records_to_rows(records)
    assert len(rows) == sum(len(r) for r in records)
    assert tuple(rows[0]) == ROW_FIELDS


def test_recorded_costs_are_the_matched_cost_matrix_entries(fixture):
    config = fixture_config(fixture)
    criterion = build_criterion(config)
    criterion(fixture["train_outputs"], targets_of(fixture), record=True)
    record = next(r for r in criterion.last_assignments if r.layer == 0 and r.group == "one2one")
    from hdetr.matching import pad_targets
    padded = pad_targets(targets_of(fixture), config.num_classes, torch.device("cpu"))
    aux = fixture["train_outputs"]["aux_outputs"][0]
    matrix = criterion.matcher.cost_matrices(aux["pred_logits"][None], aux["pred_boxes"][None], padded)[0]
    recorded = (config.set_cost_class * record.cost_class + config.set_cost_bbox * record.cost_bbox
                + config.set_cost_giou * record.cost_giou)
    expected = matrix[record.image_index, record.query_indices, record.target_indices]
    torch.testing.assert_close(recorded, expected, rtol=1e-5, atol=1e-5)


def test_record_off_stores_nothing(fixture):
    criterion = build_criterion(fixture_config(fixture))
    criterion(fixture["train_outputs"], targets_of(fixture), record=True)
    assert criterion.last_assignments
    criterion(fixture["train_outputs"], targets_of(fixture))
    assert criterion.last_assignments == []


def test_eval_outputs_without_one2many_queries_need_no_one2many_outputs(fixture):
    criterion = build_criterion(fixture_config(fixture))
    losses = criterion(fixture["eval_outputs"], targets_of(fixture))
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou", "cardinality_error", "class_error"}
    empty = dict(fixture["train_outputs"])
    empty["pred_logits_one2many"] = empty["pred_logits_one2many"][:, :0]
    empty["pred_boxes_one2many"] = empty["pred_boxes_one2many"][:, :0]
    empty["aux_outputs_one2many"] = [{k: v[:, :0] for k, v in d.items()} for d in empty["aux_outputs_one2many"]]
    assert not any(k.endswith("one2many") for k in criterion(empty, targets_of(fixture)))


def test_baseline_gives_the_official_one_to_one_terms(fixture):
    criterion = build_criterion(fixture_config(fixture, scheme="baseline", num_queries_one2many=0))
    losses = criterion(fixture["train_outputs"], targets_of(fixture))
    expected = {k: v for k, v in fixture["loss_dict"].items() if not k.endswith("one2many")}
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert_official(losses[key], value, key)


def test_epoch_scheme_keys_follow_the_phase(fixture):
    config = fixture_config(fixture, scheme="hybrid_epoch", num_queries_one2many=0, one2many_epoch_fraction=2 / 3)
    criterion = build_criterion(config, num_epochs=3)  # a 3-epoch schedule: one-to-many for epochs 0 and 1
    early = criterion(fixture["train_outputs"], targets_of(fixture), epoch=1)
    late = criterion(fixture["train_outputs"], targets_of(fixture), epoch=2)
    decoder_keys = {"loss_ce", "loss_bbox", "loss_giou", "cardinality_error", "loss_ce_0", "loss_bbox_0",
                    "loss_giou_0", "cardinality_error_0"}
    encoder_keys = {"loss_ce_enc", "loss_bbox_enc", "loss_giou_enc", "cardinality_error_enc"}
    assert set(early) == {k + "_one2many" for k in decoder_keys | {"class_error"}} | encoder_keys
    assert set(late) == decoder_keys | encoder_keys | {"class_error"}
    for key, value in late.items():
        assert_official(value, fixture["loss_dict"][key], key)


def test_layer_scheme_matches_k_copies_on_the_first_layers(fixture):
    config = fixture_config(fixture, scheme="hybrid_layer", num_queries_one2many=0, one2many_layers=1,
                            one2one_layers=1, lambda_one2many=1.0)
    losses = build_criterion(config)(fixture["train_outputs"], targets_of(fixture))
    assert {"loss_ce_0_one2many", "loss_ce", "class_error", "loss_ce_enc"} <= set(losses)
    assert "loss_ce_0" not in losses and "loss_ce_one2many" not in losses
    # layer 0 with K copies is exactly the hybrid branch's one-to-many term computed on the main queries
    main_as_branch = dict(fixture["train_outputs"])
    main_as_branch["pred_logits_one2many"] = main_as_branch["pred_logits"]
    main_as_branch["pred_boxes_one2many"] = main_as_branch["pred_boxes"]
    main_as_branch["aux_outputs_one2many"] = main_as_branch["aux_outputs"]
    branch = build_criterion(fixture_config(fixture, lambda_one2many=1.0))(main_as_branch, targets_of(fixture))
    for name in ("loss_ce_0_one2many", "loss_bbox_0_one2many", "loss_giou_0_one2many"):
        torch.testing.assert_close(losses[name], branch[name])
    assert_official(losses["loss_ce"], fixture["loss_dict"]["loss_ce"])


def test_gradients_reach_every_supervised_output(fixture):
    criterion = build_criterion(fixture_config(fixture))
    outputs = outputs_with_grad(fixture)
    criterion.total_loss(criterion(outputs, targets_of(fixture))).backward()
    for tensor in (outputs["pred_logits"], outputs["pred_boxes_one2many"], outputs["aux_outputs"][0]["pred_boxes"],
                   outputs["enc_outputs"]["pred_logits"]):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_images_without_targets(fixture):
    criterion = build_criterion(fixture_config(fixture))
    targets = targets_of(fixture)
    targets[0] = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    outputs = outputs_with_grad(fixture)
    losses = criterion(outputs, targets, record=True)
    assert all(torch.isfinite(v) for v in losses.values())
    criterion.total_loss(losses).backward()
    assert all(len(r) == 0 for r in criterion.last_assignments if r.image_index == 0)
    none = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    losses = criterion(fixture["train_outputs"], none)
    assert losses["loss_bbox"].item() == 0 and losses["class_error"].item() == 100
    assert losses["loss_ce"].item() > 0  # every query is pushed towards background, normalised by 1


def test_bad_label_is_reported_with_image_and_label(fixture):
    criterion = build_criterion(fixture_config(fixture))
    targets = targets_of(fixture)
    targets[1] = {"labels": torch.tensor([1, 1, 95, 15]), "boxes": targets[1]["boxes"]}
    with pytest.raises(UserError, match=r"targets\[1\]: label 95 is outside \[0, 91\)"):
        criterion(fixture["train_outputs"], targets)


def test_num_boxes_is_averaged_over_processes(fixture, tmp_path):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        losses = build_criterion(fixture_config(fixture))(fixture["train_outputs"], targets_of(fixture))
    finally:
        dist.destroy_process_group()
    assert_official(losses["loss_bbox"], fixture["loss_dict"]["loss_bbox"])


def test_background_focal_gradient_is_exact():
    from hdetr.losses import _BackgroundFocalSum, sigmoid_focal_loss
    logits = (torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: _BackgroundFocalSum.apply(x, 0.25, 2.0), (logits,))
    assert torch.autograd.gradcheck(lambda x: _BackgroundFocalSum.apply(x, 0.4, 1.5), (logits,))
    expected = sigmoid_focal_loss(logits, torch.zeros_like(logits), 0.25, 2.0).flatten(1).sum(1)
    torch.testing.assert_close(_BackgroundFocalSum.apply(logits, 0.25, 2.0), expected)


def test_without_aux_loss_the_encoder_loss_is_logged_but_not_weighted_as_in_the_official_code(fixture):
    # official build(): the "_enc" weights are added inside `if args.aux_loss:`
    criterion = build_criterion(fixture_config(fixture, aux_loss=False))
    outputs = {k: v for k, v in fixture["train_outputs"].items() if not k.startswith("aux_outputs")}
    losses = criterion(outputs, targets_of(fixture))
    assert {"loss_ce_enc", "loss_bbox_enc", "loss_giou_enc"} <= set(losses)
    assert not any(key.endswith("_enc") or key.endswith("_enc_one2many") for key in criterion.weight_dict)
    expected = sum(float(losses[k]) * w for k, w in criterion.weight_dict.items() if k in losses)
    assert float(criterion.total_loss(losses)) == pytest.approx(expected, rel=1e-6)
    for key in ("loss_ce", "loss_bbox", "loss_giou", "loss_ce_one2many"):
        assert_official(losses[key], fixture["loss_dict"][key], key)


def assert_final_matchings_official(criterion, fixture, last):
    """The ``last`` decoder layer's matchings (both groups) of ``criterion``'s recorded call equal the fixture's."""
    for group, expected in (("one2one", fixture["match_one2one_final"]),
                            ("one2many", fixture["match_one2many_final"])):
        records = sorted((r for r in criterion.last_assignments if r.layer == last and r.group == group),
                         key=lambda r: r.image_index)
        assert len(records) == len(expected)
        for record, (queries, targets) in zip(records, expected):
            size = len(fixture["targets"][record.image_index]["labels"])
            assert record.query_indices.tolist() == queries.tolist()
            assert (record.target_indices + size * record.copy_indices).tolist() == targets.tolist()
