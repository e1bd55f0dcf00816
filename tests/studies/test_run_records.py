"""What a finished run's folder says: final metrics, AP curve, s/step, mechanism; both views and short runs."""
import json

import pytest

from hdetr.studies.run_records import (ap_at_seconds, compare, compare_at_seconds, equal_wall_seconds, load_record,
                                       variant_speed)


def _fake_run(tmp_path, name, seed, steps, sec, aps, eval_every=100):
    run = tmp_path / name / f"seed{seed}"
    run.mkdir(parents=True)
    rows = []
    for step in range(10, steps + 1, 10):
        rows.append({"type": "train", "step": step, "loss_ce": 1.0, "loss_bbox": 0.1, "loss_giou": 0.5,
                     "images_per_s": 4 / sec})
        if step % eval_every == 0:
            rows.append({"type": "eval", "step": step, "AP": aps[step // eval_every - 1], "AP50": 0.5})
        if step % 50 == 0:
            rows.append({"type": "assignments", "step": step, "one2one/layer2/positives": 1.0,
                         "one2one/layer2/matched_iou": 0.5 + step / 10000})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = {"train": {"batch_size": 4, "max_iters": 400},
              "model": {"cls_loss_coef": 2.0, "bbox_loss_coef": 5.0, "giou_loss_coef": 2.0}}
    return load_record(run, name, seed, config)


def test_records_give_both_views_and_flag_a_short_run(tmp_path):
    fast = [_fake_run(tmp_path, "base", s, 400, 0.5, [0.05, 0.10, 0.14, 0.16]) for s in range(3)]
    slow = [_fake_run(tmp_path, "hyb", s, 400, 1.0, [0.06, 0.12, 0.17, 0.20 + 0.01 * s]) for s in range(3)]
    assert fast[0].one2one_loss == pytest.approx(2 * 1.0 + 5 * 0.1 + 2 * 0.5)
    assert fast[0].assignments["one2one/layer2/matched_iou"] == pytest.approx(0.5 + 325 / 10000)  # second half
    assert variant_speed(slow) == pytest.approx(1.0) and not fast[0].short
    assert compare(slow, fast).mean == pytest.approx(100 * (0.21 - 0.16))
    seconds = equal_wall_seconds([fast, slow])
    assert seconds == pytest.approx(200.0)  # the faster variant's 400 steps
    # after 200 s the slow one has done 200 steps: AP 12
    assert ap_at_seconds(slow, seconds).mean == pytest.approx(12.0)
    assert compare_at_seconds(slow, fast, seconds).mean == pytest.approx(12.0 - 16.0)
    short = _fake_run(tmp_path, "cut", 0, 300, 0.5, [0.05, 0.10, 0.14])
    assert short.short and short.steps == 300
