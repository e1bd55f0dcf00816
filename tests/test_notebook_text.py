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
