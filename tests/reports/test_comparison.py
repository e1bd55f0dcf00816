"""Comparison reports: measured numbers (mean, spread, intervals over seeds) beside the paper's, flagged runs."""
from __future__ import annotations

import json

import pytest

from hdetr.paper import paper_table
from hdetr.reports.comparison import comparison_markdown, format_measured, write_report
from hdetr.studies.rows import ComparisonRow


def test_format_and_comparison_table(two_rows):
    # mean ± sd [95 % interval: 31 ± 12.706 x 1.414 / sqrt 2]
    assert format_measured([30.0, 32.0]) == "31.0 ± 1.4 [18.3, 43.7]"
    assert format_measured([29.0]) == "29.0 (1 run)"
    assert format_measured([]) == "n/a"
    table = comparison_markdown(two_rows, ["AP", "AP50"], reference="baseline").splitlines()
    assert table[0].startswith("| variant | runs | AP measured | AP paper | AP50 measured | AP50 paper | ΔAP")
    assert table[2] == "| baseline | 2 | 31.0 ± 1.4 [18.3, 43.7] | 47.0 | 62.0 ± 2.8 [36.6, 87.4] | - | - |"
    # measured gain -2.0 (29.0 vs 31.0, one run: no interval) beside the paper's +1.7; undefined AP50 is n/a
    assert table[3] == "| hybrid branch | 1 | 29.0 (1 run) | 48.7 | n/a | - | -2.0 (no interval) / +1.7 |"


def test_write_report_keeps_command_scale_and_every_run(tmp_path, two_rows):
    paths = write_report(tmp_path / "coco", name="coco_table", title="Table 1", scale="smoke",
                         command="hdetr reproduce coco --scale smoke", rows=two_rows, metrics=["AP", "AP50"],
                         reference="baseline", setup="tiny model", paper_tables=[paper_table("coco_table1")],
                         notes=["measured on synthetic data"], figures=["coco_table.png"],
                         detail_keys=("seed", "iterations"))
    md = paths["markdown"].read_text()
    assert "**Scale: smoke.**" in md and "`hdetr reproduce coco --scale smoke`" in md
    assert "| hybrid branch | 0 | 40 | 29.0 | n/a |" in md
    assert "![coco_table.png](coco_table.png)" in md and "## Paper: coco_table1" in md
    data = json.loads(paths["json"].read_text())
    assert data["command"] == "hdetr reproduce coco --scale smoke" and data["scale"] == "smoke"
    assert data["rows"][0]["summary"]["AP"]["mean"] == pytest.approx(31.0)
    assert data["rows"][0]["paper"]["AP"] == 47.0
    assert data["rows"][1]["measured"] == [{"AP": 0.29, "AP50": -1.0}]
    assert [6, "APm"] in data["paper_tables"][0]["approx_cells"]


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


def test_equal_wall_time_is_flagged_when_one_configuration_ran_at_uneven_speeds():
    from types import SimpleNamespace

    from hdetr.reports.comparison import LOADED_SPREAD, load_spread

    def runs(*speeds):
        return [SimpleNamespace(sec_per_iter=s) for s in speeds]

    assert load_spread([runs(0.40, 0.42, 0.41), runs(0.80, 0.82)]) < LOADED_SPREAD  # variants may differ
    assert load_spread([runs(0.40, 0.42), runs(0.45, 0.80, None)]) == pytest.approx(0.80 / 0.45)
    assert load_spread([runs(0.4), []]) == 1.0
