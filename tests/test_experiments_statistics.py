"""Seed statistics of studies: spread, intervals, Welch differences, short-run flags, both views."""
import json
import math

import pytest

from hdetr.studies.run_records import (ap_at_seconds, compare, compare_at_seconds, equal_wall_seconds, load_record,
                                       variant_speed)
from hdetr.reports.comparison import comparison_markdown, write_report
from hdetr.studies.rows import ComparisonRow
from hdetr.studies.statistics import difference, short_runs, summarize, t95, value_at, verdict


def test_summary_of_three_seeds_has_sample_sd_and_t_interval():
    s = summarize([14.5, 17.0, 18.3])
    assert s.n == 3 and s.mean == pytest.approx(16.6)
    sd = math.sqrt(((14.5 - 16.6) ** 2 + (17.0 - 16.6) ** 2 + (18.3 - 16.6) ** 2) / 2)
    assert s.sd == pytest.approx(sd)
    assert s.half_width == pytest.approx(4.303 * sd / math.sqrt(3))
    assert s.text() == f"16.6 ± {sd:.1f} [{16.6 - s.half_width:.1f}, {16.6 + s.half_width:.1f}]"


def test_one_or_no_value_has_no_interval():
    assert summarize([3.0]).text() == "3.0 (1 run)" and summarize([3.0]).ci_low is None
    assert summarize([]).text() == "n/a"


def test_t_quantiles():
    assert t95(2) == pytest.approx(4.303) and t95(1) == pytest.approx(12.706)
    assert t95(2.5) == pytest.approx((4.303 + 3.182) / 2)
    assert t95(500) == pytest.approx(1.96)
    with pytest.raises(ValueError):
        t95(0)


def test_difference_inside_the_spread_is_not_a_claim():
    noisy = difference([16.0, 13.0, 19.0], [15.0, 17.0, 18.0])
    assert noisy.ci_low < 0 < noisy.ci_high
    assert verdict(noisy).startswith("no difference beyond the seed spread")
    clear = difference([30.0, 31.0, 30.5], [20.0, 21.0, 20.5])
    assert clear.mean == pytest.approx(10.0) and clear.ci_low > 0
    assert verdict(clear).startswith("higher AP")
    assert verdict(difference([10.0], [12.0])) == "one run per side: no interval, no claim"


def test_welch_interval_uses_the_welch_satterthwaite_degrees_of_freedom():
    a, b = [10.0, 12.0, 14.0], [11.0, 11.5, 12.0]
    d = difference(a, b)
    va, vb = summarize(a).sd ** 2 / 3, summarize(b).sd ** 2 / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert d.sd == pytest.approx(math.sqrt(va + vb))
    assert (d.ci_high - d.ci_low) / 2 == pytest.approx(t95(dof) * math.sqrt(va + vb))


def test_short_runs_and_interpolation():
    assert short_runs([400, 363, None, 400], 400) == [1, 2]
    assert value_at([0, 100, 200], [0.0, 10.0, 14.0], 150) == pytest.approx(12.0)
    assert value_at([0, 100], [0.0, 10.0], 100 * (1 + 1e-12)) == pytest.approx(10.0)
    assert value_at([0, 100], [0.0, 10.0], 101) is None


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


def test_report_flags_short_runs_and_shows_intervals(tmp_path):
    base = ComparisonRow("baseline", [{"AP": 0.15}, {"AP": 0.17}, {"AP": 0.18}],
                         details=[{"seed": s, "steps": 400, "budget": 400, "short": False} for s in range(3)])
    hybrid = ComparisonRow("hybrid", [{"AP": 0.16}, {"AP": 0.13}, {"AP": 0.19}],
                           details=[{"seed": 0, "steps": 363, "budget": 400, "short": True},
                                    *[{"seed": s, "steps": 400, "budget": 400, "short": False} for s in (1, 2)]])
    table = comparison_markdown([base, hybrid], ["AP"], reference="baseline")
    assert "| hybrid | 3 (1 SHORT) |" in table and " ~0 /" in table and "[" in table
    paths = write_report(tmp_path, name="t", title="T", scale="cpu", command="cmd", rows=[base, hybrid],
                         metrics=["AP"], reference="baseline", detail_keys=("seed", "steps"))
    text = paths["markdown"].read_text()
    assert "**Flagged:**" in text and "hybrid seed 0 (363 of 400 steps)" in text
