"""Figures of a report: measured beside the paper's, and the runs' training curves."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


def test_comparison_figure_reads_the_runs_logs(tmp_path, two_rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hdetr.reports.figures import comparison_figure

    run = tmp_path / "baseline" / "seed0"
    run.mkdir(parents=True)
    lines = [{"type": "train", "step": s, "loss_giou": 1.0 / s} for s in (1, 2, 3)] + [{"type": "eval", "step": 3}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    rows = two_rows
    # the figure reads the runs' folders through their records (hdetr.studies.run_records.RunRecord)
    rows[0].records = [SimpleNamespace(run_dir=run), SimpleNamespace(run_dir=tmp_path / "missing")]
    rows[1].records = [SimpleNamespace(run_dir=tmp_path / "missing")]
    fig = comparison_figure(rows, metric="AP", title="t", scale="smoke")
    measured, paper, loss = fig.axes
    assert [p.get_height() for p in measured.patches] == pytest.approx([31.0, 29.0])
    assert [p.get_height() for p in paper.patches] == pytest.approx([47.0, 48.7])
    assert len(loss.lines) == 1 and list(loss.lines[0].get_ydata()) == pytest.approx([1.0, 0.5, 1 / 3])
    plt.close(fig)
