"""The paper's tables (hdetr.paper): cells marked approximate, lookups that match one row."""
from __future__ import annotations

import pytest

from hdetr.errors import UserError
from hdetr.paper import PaperCell, paper_sweep, paper_table, parse_cell, table_names


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
