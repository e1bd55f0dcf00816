"""The matching walk-through on hand-made model outputs (no model, no browser)."""
from __future__ import annotations

import pytest
import torch

from hdetr.errors import UserError
from hdetr.matching.costs import CostWeights
from hdetr.matching.hungarian import HungarianMatcher
from hdetr.matching.targets import pad_targets
from hdetr.outputs import ONE2MANY, ONE2ONE, ModelOutput
from hdetr.viz.cost_terms import cost_terms, query_offset, rematch, runner_ups
from hdetr.viz.walkthrough import MatchingWalkthrough

LAYERS, N, T, CLASSES = 3, 6, 12, 4


def _outputs(num_one2many: int, seed: int) -> ModelOutput:
    generator = torch.Generator().manual_seed(seed)

    def group(q):
        return (torch.randn(LAYERS, 2, q, CLASSES, generator=generator),
                torch.rand(LAYERS, 2, q, 4, generator=generator) * 0.4 + 0.2)

    (l1, b1), (l2, b2) = group(N), group(num_one2many)
    return ModelOutput(logits={ONE2ONE: l1, ONE2MANY: l2}, boxes={ONE2ONE: b1, ONE2MANY: b2})


@pytest.fixture
def walkthrough():
    images = [torch.randn(3, 40, 60), torch.randn(3, 50, 30)]
    targets = [
        {"boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]]), "labels": torch.tensor([2])},
    ]
    outputs = {"baseline": _outputs(0, 1), "hybrid": _outputs(T, 2)}
    weights = {name: CostWeights() for name in outputs}
    return MatchingWalkthrough(images, targets, outputs, weights, k={"baseline": 2, "hybrid": 2}, max_k=5)


def test_cost_terms_add_up_to_the_matchers_cost_matrix():
    outputs, weights = _outputs(T, 0), CostWeights(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)
    target = {"boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]]), "labels": torch.tensor([1, 3])}
    terms = cost_terms(outputs, target, weights, image_index=1, layer=2, group=ONE2MANY)
    layer = outputs.layer(ONE2MANY, 2)
    expected = HungarianMatcher(weights).cost_matrices(
        layer["pred_logits"][None, 1:2], layer["pred_boxes"][None, 1:2], pad_targets([target], CLASSES, "cpu"))
    assert terms.total.shape == (T, 2)
    torch.testing.assert_close(terms.total, expected[0, 0], rtol=1e-5, atol=1e-5)
    assert (terms.cost_giou >= -1).all() and (terms.cost_bbox >= 0).all()
    assert terms.query_ids.tolist() == list(range(N, N + T))
    match = rematch(outputs, target, weights, image_index=1, layer=2, group=ONE2MANY, k=3)
    assert len(match) == 6 and sorted(match.copies.tolist()) == [0, 0, 1, 1, 2, 2]
    # runner-ups are never the object's own matched queries, and come in increasing cost
    for g, rows in enumerate(runner_ups(terms, match, count=2)):
        assert not set(rows) & set(match.rows[match.objects == g].tolist())
        assert terms.total[rows[0], g] <= terms.total[rows[1], g]


def test_query_ids_are_unique_across_groups(walkthrough):
    one2one = walkthrough.select(model="hybrid", matching="one2one").query_ids
    one2many = walkthrough.select(matching="one2many").query_ids
    assert one2one == list(range(N)) and one2many == list(range(N, N + T))
    assert not set(one2one) & set(one2many)
    # a baseline has no separate one-to-many queries: both matchings use its n queries
    assert walkthrough.select(model="baseline").query_ids == list(range(N))
    assert query_offset(walkthrough.outputs["baseline"], ONE2MANY) == 0


def test_k_slider_rematches_to_k_times_g_positives(walkthrough):
    walkthrough.select(model="hybrid", image_index=0, matching="one2one")
    assert walkthrough.state["positives"] == 2 and walkthrough.state["k"] == 1
    assert walkthrough._k.disabled
    for k in (1, 2, 4):
        walkthrough.select(matching="one2many", k=k)
        assert walkthrough.state["positives"] == k * 2
        assert f">{k * 2}</span>" in walkthrough._positives.value
    # the widget itself re-matches, as a user moving the slider
    walkthrough._k.value = 5
    assert walkthrough.state["positives"] == 10
    # more copies than queries: only Q can be matched
    walkthrough.select(model="baseline", k=5)
    assert walkthrough.state["positives"] == N and "capped" in walkthrough._positives.value


def test_next_previous_step_the_query_and_the_layer_keeps_it(walkthrough):
    walkthrough.select(model="hybrid", matching="one2many", query=N + 3)
    walkthrough.next_query()
    assert walkthrough.state["query"] == N + 4
    walkthrough.previous_query().previous_query()
    assert walkthrough.state["query"] == N + 2
    walkthrough.select(query=N)
    walkthrough.previous_query()
    assert walkthrough.state["query"] == N + T - 1  # wraps round
    walkthrough._next.click()
    assert walkthrough.state["query"] == N
    for layer in (0, 1, 2):
        walkthrough.select(layer=layer)
        assert walkthrough.state["query"] == N
        selected = [t for t in walkthrough.figure.data if t.name == f"selected: query {N}"]
        assert len(selected) == 1
    with pytest.raises(UserError, match="query 0 is not in this query set"):
        walkthrough.select(query=0)


def test_model_switch_changes_the_figures(walkthrough):
    walkthrough.select(model="hybrid", matching="one2one", query=1)
    image_before = [list(t.x) for t in walkthrough.figure.data[1:]]
    costs_before = walkthrough.cost_figure.data[0].z
    walkthrough.select(model="baseline")
    assert walkthrough.state["query"] == 1  # same query ids in both models' one-to-one group
    assert [list(t.x) for t in walkthrough.figure.data[1:]] != image_before
    assert walkthrough.cost_figure.data[0].z != costs_before
    assert "baseline" in walkthrough.figure.layout.title.text


def test_cost_figure_shows_every_query_on_one_colour_scale(walkthrough):
    walkthrough.select(model="hybrid", matching="one2many", k=2, image_index=0)
    fig = walkthrough.cost_figure
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert [t.name for t in heatmaps] == ["total", "cost_class", "cost_bbox", "cost_giou"]
    assert all(len(t.x) == T and len(t.z) == 2 for t in heatmaps)  # every query, every object
    assert {t.coloraxis for t in heatmaps} == {"coloraxis"} and fig.layout.coloraxis.colorbar is not None
    solution = next(t for t in fig.data if t.name == "Hungarian solution")
    assert len(solution.x) == 4
    runners = next(t for t in fig.data if t.name.startswith("runner-ups"))
    assert len(runners.x) == 2 * 2
    titles = [a.text for a in fig.layout.annotations]
    assert any("2 × class" in t for t in titles) and any("5 × L1" in t for t in titles)


def test_unmatched_queries_are_drawn_with_scores_on_request(walkthrough):
    walkthrough.select(model="hybrid", matching="one2one", image_index=0, show_unmatched=False)
    assert not any(t.name.startswith("unmatched") for t in walkthrough.figure.data)
    walkthrough.select(show_unmatched=True)
    unmatched = next(t for t in walkthrough.figure.data if t.name.startswith("unmatched"))
    assert sum(x is None for x in unmatched.x) == N - 2
    assert "score" in unmatched.text[0]
    with pytest.raises(UserError, match="model='nope'"):
        walkthrough.select(model="nope")
