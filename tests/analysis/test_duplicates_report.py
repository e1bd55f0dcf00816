"""python -m hdetr.analysis.duplicates_report on tiny reference files: the table, the curve, relative paths only."""
from __future__ import annotations

import json

import pytest

from hdetr.analysis import duplicates_report as report_module
from hdetr.analysis.duplicates import BranchRow
from hdetr.errors import UserError
from hdetr.checkpoints.make_references import build
from checkpoints.test_references import make_tiny_run


def test_nms_gaps_per_branch():
    rows = [BranchRow("one2one", False, 0.30, 0.5, 1.1, 0.1), BranchRow("one2one", True, 0.31, 0.5, 1.0, 0.0),
            BranchRow("one2many", False, 0.10, 0.2, 3.0, 2.0), BranchRow("one2many", True, 0.28, 0.4, 1.0, 0.0)]
    gaps = report_module.nms_gaps(rows)
    assert gaps["one2one"]["gap"] == pytest.approx(1.0)
    assert gaps["one2many"] == pytest.approx({"AP": 10.0, "AP_nms": 28.0, "gap": 18.0, "duplicates_per_object": 2.0})


def test_paper_numbers_are_table_13():
    assert report_module.paper_numbers() == {"one2one": {"no_nms": 48.7},
                                             "one2many": {"no_nms": 13.5, "nms": 48.6}}


def test_report_writes_table_curve_and_figure_with_relative_paths(tmp_path, monkeypatch):
    names = (report_module.HYBRID, report_module.BASELINE)
    for name in names:
        make_tiny_run(tmp_path, name, snapshots=(1, 2))
    build(tmp_path / "runs", tmp_path / "files", presets={n: "synthetic_tiny" for n in names})
    monkeypatch.chdir(tmp_path)
    report = report_module.make_report("out", runs_dir="runs", images=2, curve_images=1, batch_size=2, command="python -m x out",
                                       references_dir=tmp_path / "files")
    assert {(r["reference"], r["step"], r["branch"]) for r in report["over_training"]} == {
        (n, s, b) for n in names for s in (1, 2) for b in ("one2one", "one2many")}
    saved = json.loads((tmp_path / "out" / "duplicates.json").read_text())
    assert saved == report_module.read_report(tmp_path / "out")
    assert str(tmp_path) not in json.dumps(saved)
    text = (tmp_path / "out" / "duplicates.md").read_text()
    assert "Regenerate with `python -m x out`" in text and "| one2many | no |" in text and "13.5 |" in text
    assert "![NMS gap over training](nms_gap_over_training.png)" in text
    assert (tmp_path / "out" / "nms_gap_over_training.png").stat().st_size > 1000
    with pytest.raises(UserError, match=r"no step<N>.pth snapshots; .*train_references.sh"):
        report_module.over_training(tmp_path / "nowhere", None)
