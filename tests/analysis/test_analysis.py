"""hdetr.analysis on hand-made cases: duplicates, NMS, per-object counts, logged statistics."""
from __future__ import annotations

import json

import pytest
import torch

from hdetr.analysis import assignment_curves, count_duplicates, nms_detections, rows_to_markdown
from hdetr.analysis.duplicates import BranchRow
from hdetr.errors import UserError
from hdetr.matching.record_stats import stats_to_row, summarize_records
from hdetr.matching.records import AssignmentRecord


def test_two_identical_boxes_are_one_duplicate():
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    counts = count_duplicates(box.repeat(2, 1), torch.tensor([0.9, 0.8]), box)
    assert counts.hits.tolist() == [2]
    assert counts.duplicates.tolist() == [1]


def test_counts_per_object_respect_score_and_iou_thresholds():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 120.0, 120.0]])
    preds = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],   # object 0, confident
        [0.0, 0.0, 10.0, 9.0],    # object 0, IoU 0.9
        [0.0, 0.0, 10.0, 10.0],   # object 0, below the score threshold
        [0.0, 0.0, 10.0, 4.0],    # object 0, IoU 0.4: not a covering
        [100.0, 100.0, 120.0, 120.0],  # object 1
    ])
    scores = torch.tensor([0.9, 0.5, 0.1, 0.9, 0.7])
    counts = count_duplicates(preds, scores, gt, score_threshold=0.3, iou_threshold=0.6)
    assert counts.hits.tolist() == [2, 1]
    assert counts.duplicates.tolist() == [1, 0]


def test_objects_without_predictions_count_zero_and_bad_thresholds_are_refused():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert count_duplicates(torch.zeros(0, 4), torch.zeros(0), gt).hits.tolist() == [0]
    with pytest.raises(UserError, match="iou_threshold"):
        count_duplicates(gt, torch.ones(1), gt, iou_threshold=1.5)


def _outputs_with_two_identical_queries():
    # two queries on the same box, same class; a third elsewhere; cxcywh normalised
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]])
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, :, 0] = torch.tensor([3.0, 2.0, 1.0])
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_nms_removes_the_duplicate_and_keeps_the_rest():
    outputs = _outputs_with_two_identical_queries()
    sizes = torch.tensor([[100, 100]])
    raw = nms_detections(outputs, sizes, topk=3)[0]
    kept = nms_detections(outputs, sizes, topk=3, nms_iou=0.7)[0]
    assert len(raw["scores"]) == 3
    assert len(kept["scores"]) == 2
    assert kept["scores"][0] == raw["scores"][0]
    gt = torch.tensor([[20.0, 20.0, 40.0, 40.0], [75.0, 75.0, 85.0, 85.0]])
    assert count_duplicates(raw["boxes"], raw["scores"], gt, score_threshold=0.5).duplicates.tolist() == [1, 0]
    assert count_duplicates(kept["boxes"], kept["scores"], gt, score_threshold=0.5).duplicates.tolist() == [0, 0]


def test_nms_iou_is_validated():
    with pytest.raises(UserError, match="nms_iou"):
        nms_detections(_outputs_with_two_identical_queries(), torch.tensor([[10, 10]]), nms_iou=0.0)


def _record(group, layer, queries, iou):
    n = len(queries)
    return AssignmentRecord(image_index=0, layer=layer, group=group, query_indices=torch.tensor(queries),
                            target_indices=torch.zeros(n, dtype=torch.long), copy_indices=torch.zeros(n, dtype=torch.long),
                            cost_class=torch.zeros(n), cost_bbox=torch.zeros(n), cost_giou=torch.zeros(n),
                            iou=torch.tensor(iou))


def test_record_summary_counts_positives_per_object():
    records = [_record("one2one", 0, [1, 2], [0.5, 0.7]), _record("one2many", 0, [0, 1, 2, 3, 4, 5],
                                                                  [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])]
    stats = summarize_records(records, objects_per_image=[2])
    assert [(s.group, s.layer, s.positives) for s in stats] == [("one2one", 0, 1.0), ("one2many", 0, 3.0)]
    assert stats[0].matched_iou == pytest.approx(0.6)
    assert stats_to_row(stats)["one2many/layer0/matched_iou"] == pytest.approx(0.35)


def test_assignment_curves_read_logged_rows(tmp_path):
    rows = [{"type": "train", "step": 10, "loss": 1.0},
            {"type": "assignments", "step": 50, "one2one/layer2/positives": 1.0, "one2many/layer2/positives": 2.5},
            {"type": "assignments", "step": 100, "one2one/layer2/positives": 1.0, "one2many/layer2/positives": 3.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = assignment_curves(tmp_path)
    assert curves[("one2many", 2, "positives")] == ([50, 100], [2.5, 3.0])
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(UserError, match="assignment_stats_every_iters"):
        assignment_curves(tmp_path)


def test_markdown_table_sits_beside_the_paper():
    rows = [BranchRow("one2many", False, 0.1, 0.2, 3.0, 2.0), BranchRow("one2many", True, 0.3, 0.5, 1.0, 0.0)]
    text = rows_to_markdown(rows, {"one2many": {"no_nms": 13.5, "nms": 48.6}})
    assert "| one2many | no | 10.0 | 20.0 | 3.00 | 2.00 | 13.5 |" in text
    assert "| one2many | yes | 30.0 | 50.0 | 1.00 | 0.00 | 48.6 |" in text


def test_sampling_hook_captures_every_decoder_layer_and_leaves_the_op_as_it_was():
    import hdetr.ops.attention_module as attention_module
    from hdetr import build_model
    from hdetr.analysis import record_sampling
    from hdetr.config.presets import get_preset

    cfg = get_preset("synthetic_tiny").model
    model = build_model(cfg).eval()
    original = attention_module.multi_scale_deformable_attention
    torch.manual_seed(0)
    images = [torch.randn(3, 64, 64)]
    with torch.no_grad():
        plain = model(images)["pred_boxes"]
        with record_sampling(model) as captured:
            hooked = model(images)["pred_boxes"]
    assert attention_module.multi_scale_deformable_attention is original
    assert torch.equal(plain, hooked)
    assert [s.layer for s in captured] == list(range(cfg.dec_layers))
    one = captured[-1].for_query(3)
    assert one["locations"].shape == (cfg.nheads, cfg.num_feature_levels, cfg.dec_n_points, 2)
    # softmax over levels and points, per head
    assert torch.allclose(one["weights"].sum(dim=(1, 2)), torch.ones(cfg.nheads), atol=1e-5)


def test_covering_predictions_keep_confident_overlapping_boxes_best_first():
    from hdetr.analysis import covering_predictions

    outputs = _outputs_with_two_identical_queries()  # scores sigmoid(3), sigmoid(2), sigmoid(1)
    boxes, scores = covering_predictions(outputs, torch.tensor([0.2, 0.2, 0.4, 0.4]), score_threshold=0.5)
    assert len(scores) == 2 and scores[0] > scores[1]
    assert torch.allclose(boxes, torch.tensor([[0.2, 0.2, 0.4, 0.4]]).repeat(2, 1))


def test_kept_op_inputs_rerun_the_op_and_one_level_is_drawn_per_head():
    import matplotlib.pyplot as plt

    from hdetr import build_model
    from hdetr.analysis import draw_query_sampling, record_sampling
    from hdetr.config.presets import get_preset
    from hdetr.ops import multi_scale_deformable_attention

    cfg = get_preset("synthetic_tiny").model
    model = build_model(cfg).eval()
    torch.manual_seed(0)
    image = torch.randn(3, 64, 64)
    with torch.no_grad(), record_sampling(model, keep_value=True) as captured:
        model([image])
    inputs = captured[0].op_inputs()
    assert inputs[0].shape[:3] == (1, int((inputs[1][:, 0] * inputs[1][:, 1]).sum()), cfg.nheads)
    out = multi_scale_deformable_attention(*inputs, backend="torch")
    assert out.shape == (1, inputs[3].shape[1], cfg.hidden_dim)
    ax = draw_query_sampling(image, captured[0].for_query(0), levels=[1])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"head {h}" for h in range(cfg.nheads)] + ["reference point", "size = attention weight"]
    ax = draw_query_sampling(image, captured[0].for_query(0))  # every level: colour = level, marker = head
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:cfg.num_feature_levels] == [f"level {l} (colour)" for l in range(cfg.num_feature_levels)]
    assert f"head {cfg.nheads - 1} (marker)" in labels
    assert draw_query_sampling(image, captured[0].for_query(0), legend=False).get_legend() is None
    plt.close("all")
    with record_sampling(model) as captured:
        with torch.no_grad():
            model([image])
    with pytest.raises(UserError, match="keep_value=True"):
        captured[0].op_inputs()


def test_one_object_is_drawn_for_both_branches_and_the_baseline():
    import matplotlib.pyplot as plt

    from hdetr import build_model
    from hdetr.analysis import draw_object_duplicates
    from hdetr.config.presets import get_preset

    torch.manual_seed(0)
    cfg = get_preset("synthetic_tiny").model
    hybrid = build_model(cfg.replace(scheme="hybrid_branch", num_queries_one2many=20, k_one2many=2)).eval()
    baseline = build_model(cfg.replace(scheme="baseline", num_queries_one2many=0)).eval()
    target = {"boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]]), "labels": torch.tensor([1])}
    axes, chosen, counts = draw_object_duplicates(hybrid, torch.randn(3, 64, 64), target, score_threshold=0.0,
                                                  iou_threshold=0.0, baseline=baseline)
    assert chosen == 0 and list(counts) == ["one2one", "one2many", "baseline one2one"]
    assert [ax.get_title().split(":")[0] for ax in axes] == list(counts)
    assert [len(ax.patches) - 1 for ax in axes] == list(counts.values())  # the ground truth, then one box each
    x0, x1 = axes[0].get_xlim()
    assert x1 - x0 < 64  # zoomed on the object
    plt.close("all")


def test_both_models_over_training_in_one_figure():
    import matplotlib.pyplot as plt

    from hdetr.analysis import over_training_series, plot_over_training

    rows = [{"reference": ref, "branch": branch, "step": step, "AP": ap + step / 100, "AP_nms": ap + 5,
             "duplicates_per_object": 0.1 * step / 250, "gap": 5.0}
            for ref, ap in (("synthetic_baseline", 10.0), ("synthetic_hybrid_branch", 8.0))
            for branch in ("one2one", "one2many") for step in (500, 250)]
    report = {"over_training": rows, "settings": {"curve_images": 100, "nms_iou": 0.7, "score_threshold": 0.3,
                                                  "dup_iou": 0.6}}
    series = over_training_series(report)
    assert series["synthetic_baseline"]["step"] == [250, 500] and series["synthetic_baseline"]["AP"] == [12.5, 15.0]
    ap_ax, dup_ax = plot_over_training(report, labels={"synthetic_baseline": "baseline"})
    assert len(ap_ax.lines) == 4 and len(dup_ax.lines) == 2  # without / with NMS per model; duplicates per model
    assert "baseline: with NMS" in [t.get_text() for t in ap_ax.get_legend().get_texts()]
    plt.close("all")
