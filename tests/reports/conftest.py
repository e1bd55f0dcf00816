"""Rows the report tests share: two variants as a study hands them to a report."""
import pytest

from hdetr.paper import PaperCell
from hdetr.studies.rows import ComparisonRow


@pytest.fixture
def two_rows():
    """A baseline measured twice (both metrics defined) and a hybrid measured once with an undefined AP50."""
    base = ComparisonRow("baseline", [{"AP": 0.30, "AP50": 0.60}, {"AP": 0.32, "AP50": 0.64}],
                         paper={"AP": PaperCell(47.0), "AP50": None}, details=[{"seed": 0}, {"seed": 1}])
    hybrid = ComparisonRow("hybrid branch", [{"AP": 0.29, "AP50": -1.0}],
                           paper={"AP": 48.7}, details=[{"seed": 0, "iterations": 40}])
    return [base, hybrid]
