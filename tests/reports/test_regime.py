"""The regime report's comparison of a change to the hybrid alone, and the committed report it reads."""
from pathlib import Path

import pytest

from hdetr.errors import UserError
from hdetr.reports.regime import hybrid_change, hybrid_change_markdown, read_regime_report

ROOT = Path(__file__).resolve().parents[2]


def _run(hypothesis, model, seed, ap, dup):
    return {"hypothesis": hypothesis, "model": model, "seed": seed,
            "metrics": {"AP": ap, "AP_nms": ap + 0.02, "nms_gap": 0.02, "duplicates_per_object": dup}}


def test_a_change_to_the_hybrid_is_compared_with_the_hybrid_it_changes_only():
    runs = [_run("starved", "hybrid_branch", s, ap, 0.2) for s, ap in enumerate((0.16, 0.18, 0.17))]
    runs += [_run("starved", "baseline", s, 0.9, 0.0) for s in range(3)]  # never part of the comparison
    runs += [_run("starved_unmasked", "hybrid_branch", s, ap, 0.3) for s, ap in enumerate((0.14, 0.16, 0.15))]
    change = hybrid_change(runs, "starved_unmasked", "starved")
    changed, reference, diff = change["AP"]
    assert (changed.n, reference.n) == (3, 3)
    assert changed.mean == pytest.approx(15.0) and reference.mean == pytest.approx(17.0)  # points
    assert diff.mean == pytest.approx(-2.0) and diff.ci_low < -2.0 < diff.ci_high
    assert change["duplicates_per_object"][2].mean == pytest.approx(0.1)  # not scaled
    table = hybrid_change_markdown(runs, "starved_unmasked", "starved").splitlines()
    assert table[0] == "| last evaluation | starved_unmasked hybrid | starved hybrid | Δ [95 % CI] |"
    assert table[2].startswith("| AP | 15.0 ± 1.0") and "| -2.0 [" in table[2]


def test_the_committed_report_holds_the_unmasked_hybrid(tmp_path):
    report = read_regime_report(ROOT / "reports" / "science")
    change = hybrid_change(report["runs"], "starved_unmasked", "starved")
    assert change["AP"][0].n == 3 and change["AP"][1].n == 3
    with pytest.raises(UserError, match="cpu_regime.json: does not exist"):
        read_regime_report(tmp_path)
