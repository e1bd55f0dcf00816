"""The paper's tables and the reports that put measured numbers beside them."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hdetr.errors import UserError
from hdetr.paper import PaperCell, paper_sweep, paper_table, parse_cell, table_names
from hdetr.reports.comparison import comparison_markdown, format_measured, write_report
from hdetr.studies.rows import ComparisonRow


def test_parse_cell_marks_approximate_values():
    assert parse_cell(47.0) == PaperCell(47.0)
    assert parse_cell("52.3 approx") == PaperCell(52.3, approx=True)
    assert str(parse_cell("52.3 approx")) == "52.3~"
    assert parse_cell("80 (85 naive)").number is None
    with pytest.raises(UserError, match="not a number"):
        parse_cell("n/a approx")


def test_paper_table_lookup_matches_the_paper():
    assert {"coco_table1", "lvis_table2", "schemes_table6", "cost_table7"} <= set(table_names())
    table1 = paper_table("coco_table1")
    hybrid = table1.find(backbone="R50", epochs=12, method="H-Deformable-DETR")
    base = table1.find(backbone="R50", epochs=12, method="Deformable-DETR")
    assert hybrid["AP"].number - base["AP"].number == pytest.approx(1.7)  # 48.7 vs 47.0
    assert table1.find(backbone="R50", epochs=36, method="Deformable-DETR")["APm"].approx
    assert "52.3~" in table1.to_markdown()
    lvis = paper_table("lvis_table2").find(backbone="R50", method="H-Deformable-DETR")
    assert lvis["AP"].number == 33.5
    with pytest.raises(UserError, match="2 rows match"):
        table1.find(backbone="R50", epochs=12)
    with pytest.raises(UserError, match="no column 'APr'"):
        table1.find(APr=1.0)
    with pytest.raises(UserError, match="no paper table 'table99'"):
        paper_table("table99")
    assert paper_sweep("K_with_T_300K")[6.0] == 48.6


def _rows():
    base = ComparisonRow("baseline", [{"AP": 0.30, "AP50": 0.60}, {"AP": 0.32, "AP50": 0.64}],
                         paper={"AP": PaperCell(47.0), "AP50": None}, details=[{"seed": 0}, {"seed": 1}])
    hybrid = ComparisonRow("hybrid branch", [{"AP": 0.29, "AP50": -1.0}],
                           paper={"AP": 48.7}, details=[{"seed": 0, "iterations": 40}])
    return [base, hybrid]


def test_format_and_comparison_table():
    # mean ± sd [95 % interval: 31 ± 12.706 x 1.414 / sqrt 2]
    assert format_measured([30.0, 32.0]) == "31.0 ± 1.4 [18.3, 43.7]"
    assert format_measured([29.0]) == "29.0 (1 run)"
    assert format_measured([]) == "n/a"
    table = comparison_markdown(_rows(), ["AP", "AP50"], reference="baseline").splitlines()
    assert table[0].startswith("| variant | runs | AP measured | AP paper | AP50 measured | AP50 paper | ΔAP")
    assert table[2] == "| baseline | 2 | 31.0 ± 1.4 [18.3, 43.7] | 47.0 | 62.0 ± 2.8 [36.6, 87.4] | - | - |"
    # measured gain -2.0 (29.0 vs 31.0, one run: no interval) beside the paper's +1.7; undefined AP50 is n/a
    assert table[3] == "| hybrid branch | 1 | 29.0 (1 run) | 48.7 | n/a | - | -2.0 (no interval) / +1.7 |"


def test_write_report_keeps_command_scale_and_every_run(tmp_path):
    paths = write_report(tmp_path / "coco", name="coco_table", title="Table 1", scale="smoke",
                         command="hdetr reproduce coco --scale smoke", rows=_rows(), metrics=["AP", "AP50"],
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


def test_comparison_figure_reads_the_runs_logs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hdetr.reports.figures import comparison_figure

    run = tmp_path / "baseline" / "seed0"
    run.mkdir(parents=True)
    lines = [{"type": "train", "step": s, "loss_giou": 1.0 / s} for s in (1, 2, 3)] + [{"type": "eval", "step": 3}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    rows = _rows()
    # the figure reads the runs' folders through their records (hdetr.studies.run_records.RunRecord)
    rows[0].records = [SimpleNamespace(run_dir=run), SimpleNamespace(run_dir=tmp_path / "missing")]
    rows[1].records = [SimpleNamespace(run_dir=tmp_path / "missing")]
    fig = comparison_figure(rows, metric="AP", title="t", scale="smoke")
    measured, paper, loss = fig.axes
    assert [p.get_height() for p in measured.patches] == pytest.approx([31.0, 29.0])
    assert [p.get_height() for p in paper.patches] == pytest.approx([47.0, 48.7])
    assert len(loss.lines) == 1 and list(loss.lines[0].get_ydata()) == pytest.approx([1.0, 0.5, 1 / 3])
    plt.close(fig)
