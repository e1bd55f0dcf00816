"""Views of assignments on hand-made records and outputs (no model needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from hdetr.errors import UserError
from hdetr.matching.records import AssignmentRecord
from hdetr.viz import (AssignmentExplorer, assignment_figure, boxes_to_pixels, draw_assignments,
                       draw_assignments_by_layer, draw_cost_heatmap, draw_detections, draw_models_side_by_side, matched_boxes,
                       predicted_boxes, query_rows, select_records, to_display)

NUM_LAYERS, N_ONE2ONE, T_ONE2MANY, K = 3, 4, 6, 2


def _record(image_index, layer, group, queries, targets, copies):
    n = len(queries)
    base = torch.arange(n, dtype=torch.float32)
    return AssignmentRecord(
        image_index=image_index, layer=layer, group=group,
        query_indices=torch.tensor(queries), target_indices=torch.tensor(targets),
        copy_indices=torch.tensor(copies), cost_class=0.1 * base + layer, cost_bbox=0.2 * base,
        cost_giou=-0.3 * base, iou=0.5 + 0.1 * base)


@pytest.fixture
def scene():
    torch.manual_seed(0)
    images = [torch.randn(3, 40, 60), torch.randn(3, 50, 30)]
    targets = [
        {"boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]]), "labels": torch.tensor([2])},
    ]

    def layer_out(num_queries):
        boxes = torch.rand(2, num_queries, 4) * 0.4 + 0.2
        return {"pred_logits": torch.randn(2, num_queries, 5), "pred_boxes": boxes}

    one2one = [layer_out(N_ONE2ONE) for _ in range(NUM_LAYERS)]
    one2many = [layer_out(T_ONE2MANY) for _ in range(NUM_LAYERS)]
    outputs = {
        "pred_logits": one2one[-1]["pred_logits"], "pred_boxes": one2one[-1]["pred_boxes"],
        "pred_logits_one2many": one2many[-1]["pred_logits"], "pred_boxes_one2many": one2many[-1]["pred_boxes"],
        "aux_outputs": one2one[:-1], "aux_outputs_one2many": one2many[:-1],
        "enc_outputs": layer_out(8),
    }
    records = []
    for layer in range(NUM_LAYERS):
        records.append(_record(0, layer, "one2one", [2, 0], [0, 1], [0, 0]))
        records.append(_record(0, layer, "one2many", [5, 1, 3, 4], [0, 0, 1, 1], [0, 1, 0, 1]))
        records.append(_record(1, layer, "one2one", [1], [0], [0]))
        records.append(_record(1, layer, "one2many", [0, 2], [0, 0], [0, 1]))
    records.append(_record(0, -1, "one2one", [7, 6], [0, 1], [0, 0]))
    return images, targets, records, outputs


def test_image_and_box_conversion():
    image = torch.zeros(3, 4, 6)  # the mean colour
    pixels = to_display(image)
    assert pixels.shape == (4, 6, 3)
    assert pixels[0, 0].tolist() == pytest.approx([0.485, 0.456, 0.406], abs=1e-6)
    xyxy = boxes_to_pixels(torch.tensor([[0.5, 0.5, 0.5, 1.0]]), height=4, width=6)
    assert xyxy.tolist() == [[1.5, 0.0, 4.5, 4.0]]
    with pytest.raises(UserError, match=r"\[3, H, W\]"):
        to_display(torch.zeros(4, 4))


def test_predicted_boxes_follow_the_output_layout(scene):
    _, _, records, outputs = scene
    assert torch.equal(predicted_boxes(outputs, image_index=1, layer=2, group="one2one"), outputs["pred_boxes"][1])
    assert torch.equal(predicted_boxes(outputs, image_index=0, layer=0, group="one2many"),
                       outputs["aux_outputs_one2many"][0]["pred_boxes"][0])
    assert torch.equal(predicted_boxes(outputs, image_index=0, layer=-1, group="one2one"),
                       outputs["enc_outputs"]["pred_boxes"][0])
    # Without a one-to-many branch (epoch/layer schemes) both groups index the same queries.
    single = {k: v for k, v in outputs.items() if "one2many" not in k}
    single["pred_boxes_one2many"] = torch.zeros(2, 0, 4)
    assert torch.equal(predicted_boxes(single, image_index=0, layer=1, group="one2many"),
                       outputs["aux_outputs"][1]["pred_boxes"][0])
    with pytest.raises(UserError, match="layer=3 is out of range"):
        predicted_boxes(outputs, image_index=0, layer=3, group="one2one")
    picked = select_records(records, image_index=0, layer=1, group="one2many")
    (boxes,) = matched_boxes(picked, outputs)
    assert torch.equal(boxes, outputs["aux_outputs_one2many"][1]["pred_boxes"][0][[5, 1, 3, 4]])


def test_query_rows_are_sorted_and_complete(scene):
    _, _, records, _ = scene
    rows = query_rows(select_records(records, image_index=0, layer=2))
    assert [(r["group"], r["query"]) for r in rows] == [
        ("one2one", 0), ("one2one", 2), ("one2many", 1), ("one2many", 3), ("one2many", 4), ("one2many", 5)]
    q3 = next(r for r in rows if r["query"] == 3)
    assert (q3["target"], q3["copy"], q3["layer"]) == (1, 0, 2)
    assert q3["cost_class"] == pytest.approx(2.2) and q3["iou"] == pytest.approx(0.7)
    with pytest.raises(UserError, match="group='both'"):
        select_records(records, group="both")


def test_draw_assignments_draws_gt_and_each_group(scene):
    images, targets, records, outputs = scene
    ax = draw_assignments(images[0], targets[0], records, outputs, image_index=0)
    gids = [p.get_gid() for p in ax.patches]
    assert gids == ["gt:0", "gt:1", "one2one:q2", "one2one:q0", "one2many:q5", "one2many:q1",
                    "one2many:q3", "one2many:q4"]
    # the one-to-one box of query 2 sits where the last layer predicted it, in pixels
    x0, y0, x1, y1 = boxes_to_pixels(outputs["pred_boxes"][0, 2], 40, 60)[0]
    patch = ax.patches[2]
    assert patch.get_xy() == pytest.approx((x0, y0)) and patch.get_width() == pytest.approx(x1 - x0)
    assert len(ax.lines) == 6  # one connector per matched query
    # query 2 was matched to target 0: its connector ends at target 0's centre
    gt_x0, gt_y0, gt_x1, gt_y1 = boxes_to_pixels(targets[0]["boxes"][0], 40, 60)[0]
    assert ax.lines[0].get_xydata()[1].tolist() == pytest.approx([(gt_x0 + gt_x1) / 2, (gt_y0 + gt_y1) / 2])
    only = draw_assignments(images[0], targets[0], records, outputs, layer=-1, groups=("one2one",), connect=False)
    assert len(only.patches) == 2 + 2 and not only.lines
    plt.close("all")


def test_draw_by_layer_and_cost_heatmap(scene):
    images, targets, records, outputs = scene
    fig = draw_assignments_by_layer(images[0], targets[0], records, outputs, image_index=0, ncols=2)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == NUM_LAYERS + 1  # encoder proposals + 3 decoder layers
    assert [len(ax.patches) for ax in panels] == [4, 8, 8, 8]
    # one legend for the figure, none per panel, each label once
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in panels)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ground truth", "one2one", "one2many"]
    # the view is padded beyond the image so boxes on its edge are not cut
    assert panels[0].get_xlim()[0] < 0 and panels[0].get_ylim()[0] > 40
    side = draw_models_side_by_side(images[0], targets[0], {"a": (records, outputs), "b": (records, outputs)})
    assert len(side.legends) == 1 and side.axes[0].get_title().startswith("a: ")
    ax = draw_cost_heatmap(records, image_index=0, layer=1, group="one2many")
    assert len(ax.texts) == 4 * 4
    assert ax.texts[0].get_text() == "1.10"  # query 1 sorts first; it was 2nd in the record: 0.1 * 1 + layer 1
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "q1 -> t0/c1"
    with pytest.raises(UserError, match="no one2many matches"):
        draw_cost_heatmap(records, image_index=0, layer=-1, group="one2many")
    plt.close("all")


def test_draw_detections_respects_threshold(scene):
    images, *_ = scene
    detections = {"scores": torch.tensor([0.9, 0.2, 0.5]), "labels": torch.tensor([1, 2, 3]),
                  "boxes": torch.tensor([[1.0, 2.0, 10.0, 12.0], [0.0, 0.0, 5.0, 5.0], [3.0, 3.0, 9.0, 9.0]])}
    ax = draw_detections(images[0], detections, score_threshold=0.4, class_names=["a", "b", "c", "d"])
    assert len(ax.patches) == 2
    assert ax.texts[0].get_text() == "b 0.90"
    ax = draw_detections(images[0], detections, score_threshold=0.95, topk_if_none=2)
    assert [t.get_text() for t in ax.texts] == ["1 0.90", "3 0.50"]
    assert ax.get_title().startswith("no detection with score >= 0.95: the top 2 drawn")
    plt.close("all")


def test_detections_side_by_side_carry_the_ground_truth_and_one_legend(scene):
    from hdetr.viz import draw_detections_side_by_side

    images, targets, *_ = scene
    found = {"scores": torch.tensor([0.9, 0.2]), "labels": torch.tensor([1, 2]),
             "boxes": torch.tensor([[1.0, 2.0, 10.0, 12.0], [0.0, 0.0, 5.0, 5.0]])}
    fig = draw_detections_side_by_side(images[0], targets[0], {"baseline": found, "hybrid": found},
                                       score_threshold=0.4)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2 and panels[0].get_title().startswith("baseline\n1 detections with score >= 0.4, 2 objects")
    green = [p for p in panels[0].patches if p.get_edgecolor()[:3] == pytest.approx((0x2C / 255, 0xA0 / 255, 0x2C / 255))]
    assert len(green) == 2 and len(panels[0].patches) == 3  # both objects, one detection
    assert all(ax.get_legend() is None for ax in panels)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ground truth", "detection (class score)"]
    plt.close("all")


def test_plotly_figure_traces_and_hover(scene):
    images, targets, records, outputs = scene
    fig = assignment_figure(images[0], targets[0], records, outputs, image_index=0, layer=1)
    assert [t.name for t in fig.data] == ["image", "ground truth", "one2one", "one2many"]
    one2many = fig.data[3]
    assert sum(x is None for x in one2many.x) == 4  # four boxes, each closed by a gap
    assert "query 1 (one2many, layer 1)" in one2many.text[0] and "iou 0.600" in one2many.text[0]
    highlighted = assignment_figure(images[0], targets[0], records, outputs, image_index=0, layer=1,
                                    groups=("one2many",), query=3)
    assert [t.name for t in highlighted.data] == ["image", "ground truth", "one2many", "target 1 of query 3", "query 3"]
    assert highlighted.data[-2].line.dash == "dashdot" and highlighted.data[-1].line.dash is None
    assert [fig.data[i].line.dash for i in (1, 2, 3)] == ["solid", "dot", "dash"]
    assert "target 1, copy 0" in highlighted.data[-1].text[0]


def test_explorer_controls_update_figure_and_table(scene):
    images, targets, records, outputs = scene
    explorer = AssignmentExplorer(images, targets, records, outputs)
    assert explorer.state == {"image_index": 0, "layer": 2, "group": "all", "query": "all"}
    assert len(explorer.rows) == 6 and len(explorer.figure.data) == 4
    first = explorer.figure
    explorer.select(image_index=1)
    assert explorer.figure is not first
    assert explorer.figure.data[0].z.shape == (50, 30, 3)
    assert {r["image"] for r in explorer.rows} == {1} and len(explorer.rows) == 3
    explorer.select(group="one2many")
    assert explorer._query.options == ("all", 0, 2)
    explorer.select(query=2)
    assert [r["query"] for r in explorer.rows] == [2]
    assert explorer.figure.data[-1].name == "query 2"
    assert "font-weight:bold" in explorer._table.value
    explorer.select(layer=-1)  # no one-to-many proposals matched for image 1 at the encoder
    assert explorer.state["query"] == "all" and explorer.rows == []
    with pytest.raises(UserError, match="query=99"):
        explorer.select(query=99)
    assert explorer.widget.children[-1] is explorer._table


@pytest.mark.parametrize("scheme", ["hybrid_branch", "hybrid_layer"])
def test_views_of_a_real_criterion_step(scheme):
    from hdetr import build_criterion, build_model
    from hdetr.config.model import ModelConfig

    torch.manual_seed(0)
    queries = dict(num_queries_one2one=8, num_queries_one2many=12) if scheme == "hybrid_branch" else \
        dict(num_queries_one2one=16, num_queries_one2many=0, one2many_layers=1, one2one_layers=1)
    config = ModelConfig(backbone="resnet18", freeze_stem=False, num_classes=4, hidden_dim=32, nheads=2,
                         enc_layers=1, dec_layers=2, dim_feedforward=32, num_feature_levels=3, enc_n_points=1,
                         dec_n_points=1, scheme=scheme, k_one2many=2, topk=8, **queries)
    model, criterion = build_model(config).train(), build_criterion(config)
    image = torch.randn(3, 64, 80)
    target = {"labels": torch.tensor([1, 2, 3]),
              "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.2], [0.5, 0.2, 0.2, 0.1]])}
    outputs = model([image])
    criterion(outputs, [target], record=True)
    records = criterion.last_assignments
    # the one-to-many layer (branch: every layer; layer scheme: layer 0) shows G targets, G one-to-one, K x G
    ax = draw_assignments(image, target, records, outputs, layer=0)
    groups = [p.get_gid().split(":")[0] for p in ax.patches]
    expected_one2one = 3 if scheme == "hybrid_branch" else 0
    assert groups.count("gt") == 3 and groups.count("one2one") == expected_one2one and groups.count("one2many") == 6
    (boxes,) = matched_boxes(select_records(records, layer=0, group="one2many"), outputs)
    assert boxes.shape == (6, 4)
    fig = assignment_figure(image, target, records, outputs, layer=1)
    assert [t.name for t in fig.data][:3] == ["image", "ground truth", "one2one"]
    plt.close("all")
