"""Hungarian matcher: official costs, batched matching equal to per-layer matching, bad input."""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from hdetr.boxes import cxcywh_to_xyxy, generalized_box_iou
from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.matching import CostWeights, HungarianMatcher, MatchProblem, class_cost, pad_targets


def _official_style_match(logits, boxes, targets, weights):
    """The official HungarianMatcher's arithmetic: one matrix over the batch, then split per image."""
    batch, queries = logits.shape[:2]
    prob = logits.flatten(0, 1).sigmoid()
    out_bbox = boxes.flatten(0, 1)
    tgt_ids = torch.cat([t["labels"] for t in targets])
    tgt_bbox = torch.cat([t["boxes"] for t in targets])
    a, g = weights.focal_alpha, weights.focal_gamma
    neg = (1 - a) * prob**g * -(1 - prob + 1e-8).log()
    pos = a * (1 - prob) ** g * -(prob + 1e-8).log()
    cost = (
        weights.cost_bbox * torch.cdist(out_bbox, tgt_bbox, p=1)
        + weights.cost_class * (pos[:, tgt_ids] - neg[:, tgt_ids])
        + weights.cost_giou * -generalized_box_iou(cxcywh_to_xyxy(out_bbox), cxcywh_to_xyxy(tgt_bbox))
    ).view(batch, queries, -1)
    sizes = [len(t["boxes"]) for t in targets]
    return [linear_sum_assignment(c[i]) for i, c in enumerate(cost.split(sizes, -1))]


def _random_targets(gen, counts, num_classes):
    targets = []
    for count in counts:
        centre = torch.rand(count, 2, generator=gen) * 0.6 + 0.2
        size = torch.rand(count, 2, generator=gen) * 0.3 + 0.05
        targets.append({"labels": torch.randint(0, num_classes, (count,), generator=gen),
                        "boxes": torch.cat((centre, size), 1)})
    return targets


def _random_predictions(gen, layers, batch, queries, num_classes):
    logits = torch.randn(layers, batch, queries, num_classes, generator=gen) * 2
    centre = torch.rand(layers, batch, queries, 2, generator=gen)
    size = torch.rand(layers, batch, queries, 2, generator=gen) * 0.5
    return logits, torch.cat((centre, size), -1)


@pytest.mark.parametrize("repeat_k", [1, 3])
def test_batched_matching_equals_official_per_layer_matching(repeat_k):
    gen = torch.Generator().manual_seed(0)
    weights = CostWeights()
    targets = _random_targets(gen, [3, 0, 5], num_classes=7)
    logits, boxes = _random_predictions(gen, layers=3, batch=3, queries=20, num_classes=7)
    padded = pad_targets(targets, num_classes=7, device=torch.device("cpu"))
    matcher = HungarianMatcher(weights)
    result = matcher.match([MatchProblem(logits, boxes, padded, repeat_k)])[0]
    repeated = [{"labels": t["labels"].repeat(repeat_k), "boxes": t["boxes"].repeat(repeat_k, 1)} for t in targets]
    for layer in range(3):
        expected = _official_style_match(logits[layer], boxes[layer], repeated, weights)
        for image, (rows, cols) in enumerate(expected):
            assert result[layer][image].query_indices.tolist() == rows.tolist()
            assert result[layer][image].target_indices.tolist() == cols.tolist()
    assert len(result[0][1].query_indices) == 0  # the image without targets


def test_several_problems_share_one_call_and_keep_their_shapes():
    gen = torch.Generator().manual_seed(1)
    targets = pad_targets(_random_targets(gen, [2, 4], 5), 5, torch.device("cpu"))
    small = _random_predictions(gen, 2, 2, 6, 5)
    large = _random_predictions(gen, 1, 2, 30, 5)
    matcher = HungarianMatcher(CostWeights())
    first, second = matcher.match([MatchProblem(*small, targets), MatchProblem(*large, targets, repeat_k=4)])
    assert [len(a.query_indices) for a in first[1]] == [2, 4]
    assert [len(a.query_indices) for a in second[0]] == [8, 16]
    single = matcher.match([MatchProblem(*large, targets, repeat_k=4)])[0]
    assert [a.query_indices.tolist() for a in single[0]] == [a.query_indices.tolist() for a in second[0]]


def test_perfect_predictions_match_their_own_targets():
    gen = torch.Generator().manual_seed(2)
    targets = _random_targets(gen, [4], 10)
    logits = torch.full((1, 1, 4, 10), -8.0)
    permutation = torch.tensor([2, 0, 3, 1])  # query q predicts target permutation[q]
    logits[0, 0, torch.arange(4), targets[0]["labels"][permutation]] = 8.0
    boxes = targets[0]["boxes"][permutation][None, None]
    padded = pad_targets(targets, 10, torch.device("cpu"))
    assignment = HungarianMatcher(CostWeights()).match([MatchProblem(logits, boxes, padded)])[0][0][0]
    assert permutation[assignment.query_indices].tolist() == assignment.target_indices.tolist()


def test_class_cost_is_the_focal_difference_with_config_alpha_gamma():
    prob = torch.tensor([0.1, 0.5, 0.9])
    alpha, gamma = 0.4, 1.5
    expected = alpha * (1 - prob) ** gamma * -torch.log(prob + 1e-8) - (1 - alpha) * prob**gamma * -torch.log(
        1 - prob + 1e-8
    )
    torch.testing.assert_close(class_cost(prob, alpha, gamma), expected)
    assert class_cost(prob, alpha, gamma)[2] < class_cost(prob, alpha, gamma)[0]


def test_matcher_weights_come_from_the_model_config():
    config = ModelConfig(set_cost_class=1.0, set_cost_bbox=3.0, set_cost_giou=4.0, focal_alpha=0.3, focal_gamma=1.0)
    weights = HungarianMatcher.from_config(config).weights
    assert weights == CostWeights(1.0, 3.0, 4.0, 0.3, 1.0)
    gen = torch.Generator().manual_seed(3)
    targets = pad_targets(_random_targets(gen, [3], 5), 5, torch.device("cpu"))
    logits, boxes = _random_predictions(gen, 1, 1, 4, 5)
    default = HungarianMatcher(CostWeights()).cost_matrices(logits, boxes, targets)
    custom = HungarianMatcher(weights).cost_matrices(logits, boxes, targets)
    assert not torch.allclose(default, custom)


def test_label_outside_num_classes_names_the_image_and_label():
    targets = [
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        {"labels": torch.tensor([3, 91]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 2)},
    ]
    with pytest.raises(UserError, match=r"targets\[1\]: label 91 is outside \[0, 91\)"):
        pad_targets(targets, 91, torch.device("cpu"))


def test_malformed_targets_are_rejected_clearly():
    with pytest.raises(UserError, match=r"targets\[0\]: expected labels \[G\] and boxes \[G, 4\]"):
        pad_targets([{"labels": torch.tensor([1]), "boxes": torch.zeros(1, 3)}], 5, torch.device("cpu"))
    with pytest.raises(UserError, match=r"targets\[0\]: box .* width, height >= 0"):
        pad_targets([{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, -0.1, 0.2]])}], 5,
                    torch.device("cpu"))


def test_non_finite_predictions_give_a_clear_error():
    targets = pad_targets([{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}], 5,
                          torch.device("cpu"))
    logits = torch.zeros(1, 1, 3, 5)
    logits[0, 0, 1, 1] = float("nan")
    boxes = torch.full((1, 1, 3, 4), 0.3)
    with pytest.raises(UserError, match="NaN or inf"):
        HungarianMatcher(CostWeights()).match([MatchProblem(logits, boxes, targets, name="one2one")])


def test_all_targets_empty():
    targets = pad_targets([{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2, 5,
                          torch.device("cpu"))
    logits, boxes = torch.zeros(2, 2, 3, 5), torch.full((2, 2, 3, 4), 0.3)
    result = HungarianMatcher(CostWeights()).match([MatchProblem(logits, boxes, targets, repeat_k=3)])[0]
    assert all(len(a.query_indices) == 0 for per_image in result for a in per_image)
    assert np.all([a.target_indices.dtype == torch.int64 for a in result[0]])


def test_single_layer_call_takes_official_style_targets_and_unpacks_like_tuples():
    gen = torch.Generator().manual_seed(4)
    targets = _random_targets(gen, [2, 3], 6)
    logits, boxes = _random_predictions(gen, 1, 2, 8, 6)
    matcher = HungarianMatcher(CostWeights())
    result = matcher({"pred_logits": logits[0], "pred_boxes": boxes[0]}, targets)
    expected = _official_style_match(logits[0], boxes[0], targets, CostWeights())
    for (queries, target_indices), (rows, cols) in zip(result, expected):
        assert queries.tolist() == rows.tolist() and target_indices.tolist() == cols.tolist()


def test_all_zero_cost_weights_are_rejected():
    from hdetr.errors import ConfigError
    with pytest.raises(ConfigError, match="cannot all be 0"):
        CostWeights(0.0, 0.0, 0.0)
