"""The training loop logs assignment statistics every train.assignment_stats_every_iters steps."""
from __future__ import annotations

import pytest

from hdetr.analysis import assignment_curves
from hdetr.errors import ConfigError
from hdetr.config.experiment import apply_overrides
from hdetr.config.presets import get_preset
from hdetr.engine.metrics_log import read_metrics
from hdetr.engine.trainer import train


def test_rows_every_n_steps_with_k_positives_per_object_in_the_one2many_group(tmp_path):
    from hdetr.data.synthetic import generate

    root = generate("coco", tmp_path / "data", num_images=4, num_val_images=2, seed=0, image_size=64)
    cfg = apply_overrides(get_preset("synthetic_tiny"), [
        f"data.root={root}", "train.max_iters=4", "train.assignment_stats_every_iters=2",
        "train.eval_max_images=2", "data.augment=false"])
    train(cfg, tmp_path / "run")
    rows = [r for r in read_metrics(tmp_path / "run") if r["type"] == "assignments"]
    assert [r["step"] for r in rows] == [2, 4]
    k = cfg.model.k_one2many
    last = cfg.model.dec_layers - 1
    # one-to-one: one query per object; one-to-many: K per object (enough queries here)
    assert all(r[f"one2one/layer{last}/positives"] == 1.0 for r in rows)
    assert all(r[f"one2many/layer{last}/positives"] == float(k) for r in rows)
    assert all(0.0 <= r[f"one2one/layer{last}/matched_iou"] <= 1.0 for r in rows)
    steps, values = assignment_curves(tmp_path / "run")[("one2many", last, "positives")]
    assert steps == [2, 4] and values == [float(k)] * 2


def test_negative_interval_is_refused():
    with pytest.raises(ConfigError, match="assignment_stats_every_iters"):
        apply_overrides(get_preset("synthetic_tiny"), ["train.assignment_stats_every_iters=-1"])
