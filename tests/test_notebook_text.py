"""What a reader of the teaching notebooks sees: no test-only markers in the cells, and exercises at the end."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

TEACHING = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_no_nbval_comments_in_cells(path):
    nb = nbformat.read(path, 4)
    marked = [i for i, c in enumerate(nb.cells) if "NBVAL" in c.source]
    assert not marked, f"{path.name}: cells {marked} carry # NBVAL_* comments; use the cell's metadata tags"


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_ends_with_exercises_with_hidden_answers(path):
    nb = nbformat.read(path, 4)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Exercises")
    questions = last.source.count("\n1. ") + last.source.startswith("1. ")
    assert 2 <= questions <= 3 and last.source.count("<details>") == questions


def test_notebook_04_states_numbers_from_the_report():
    """Measured numbers in notebook 04's prose come from reports/analysis (what_to_notice); the only numbers
    typed in its markdown are the paper's and the report's settings, as the report itself holds them."""
    import re

    from hdetr.analysis.duplicates_report import read_report, what_to_notice

    root = Path(__file__).resolve().parents[1]
    report = read_report(root / "reports" / "analysis")
    allowed = {f"{v:.1f}" for branch in report["paper"].values() for v in branch.values()}
    allowed |= {str(v) for v in report["settings"].values()}
    nb = nbformat.read(root / "notebooks" / "04_duplicates_and_nms.ipynb", 4)
    typed = [m for c in nb.cells if c.cell_type == "markdown" and not c.source.startswith("## Exercises")
             for m in re.findall(r"\d+\.\d+", c.source)]
    assert set(typed) <= allowed, f"numbers typed in notebook 04's markdown that the report does not hold: " \
                                  f"{sorted(set(typed) - allowed)}"
    assert any("what_to_notice(read_report(REPORT_DIR))" in c.source for c in nb.cells if c.cell_type == "code")
    text = what_to_notice(report)
    hybrid = {(r["branch"], r["nms"]): r for r in report["hybrid_rows"]}
    assert f"{100 * hybrid[('one2one', False)]['AP']:.1f}" in text
    assert f"{100 * hybrid[('one2many', True)]['AP']:.1f}" in text


@pytest.mark.parametrize("path", TEACHING[:3], ids=lambda p: p.stem)
def test_notebooks_quote_the_study_outcome(path):
    """01-03 state the regime study's outcome from its report, not in words of their own."""
    nb = nbformat.read(path, 4)
    assert any("science_summary()" in c.source for c in nb.cells if c.cell_type == "code")


def test_science_summary_quotes_the_findings(tmp_path):
    from hdetr.findings import science_headline, science_summary

    (tmp_path / "findings.md").write_text("**The hybrid wins here.** Details follow.\n")
    assert science_headline(tmp_path) == "The hybrid wins here."
    assert "The hybrid wins here." in science_summary(tmp_path)
    assert science_headline(tmp_path / "absent") is None


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_numbers_typed_in_the_prose_come_from_a_report_the_paper_or_the_code(path):
    """A decimal number in a notebook's markdown (exercises included) is one a committed report or the paper
    holds, or a setting of the notebook's own code cells; a measured number typed by hand and left behind by a
    re-run report would fail here."""
    import re

    root = Path(__file__).resolve().parents[1]
    number = re.compile(r"(?<![\w.])[-+]?\d+\.\d+")
    published = [p.read_text() for p in (root / "reports").rglob("*") if p.suffix in (".md", ".json")]
    published.append((root / "hdetr" / "paper_tables.json").read_text())
    measured = {m.lstrip("+") for text in published for m in number.findall(text)}
    measured |= {f"{float(m):.1f}" for m in set(measured)}  # prose may round a report's number to one decimal
    nb = nbformat.read(path, 4)
    settings = {m.lstrip("+") for c in nb.cells if c.cell_type == "code" for m in number.findall(c.source)}
    typed = {m.lstrip("+") for c in nb.cells if c.cell_type == "markdown" for m in number.findall(c.source)}
    assert typed <= measured | settings, f"{path.name}: numbers typed in markdown that no report, paper table " \
                                         f"or code cell holds: {sorted(typed - measured - settings)}"


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_committed_with_static_outputs_and_no_widget_state(path):
    """Readable on a code host: figures and tables are in the file (scripts/refresh_notebook_outputs.py), widget
    state and execution timestamps are not, and the file stays small."""
    nb = nbformat.read(path, 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in code) >= len(code) // 2, f"{path.name}: run scripts/refresh_notebook_outputs.py"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), f"{path.name}: no figure"
    assert "widgets" not in nb.metadata and not any("execution" in c.metadata for c in nb.cells)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert path.stat().st_size <= 3 * 1024 * 1024
