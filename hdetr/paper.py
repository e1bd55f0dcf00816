"""The paper's reference numbers (``paper_tables.json``), as published.

The JSON is a transcription of "DETRs with Hybrid Matching" (CVPR 2023) and the
official README. A few cells were re-aligned from a garbled text extraction; they
read ``"52.3 approx"`` in the JSON and come back here as ``PaperCell(52.3, approx=True)``
so reports can mark them (``52.3~``) rather than present them as exact.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from hdetr.errors import UserError

PAPER_TABLES_PATH = Path(__file__).resolve().parent / "paper_tables.json"
APPROX_SUFFIX = " approx"


@dataclasses.dataclass(frozen=True)
class PaperCell:
    """One published value; ``approx`` marks a cell re-aligned from a garbled extraction."""

    value: float | int | str
    approx: bool = False

    def __str__(self) -> str:
        text = f"{self.value:.1f}" if isinstance(self.value, float) else str(self.value)
        return text + ("~" if self.approx else "")

    @property
    def number(self) -> float | None:
        """The value as a float, or None for text cells (a method name, "80 (85 naive)")."""
        return float(self.value) if isinstance(self.value, (int, float)) else None


def parse_cell(raw: Any) -> PaperCell:
    """A JSON cell -> PaperCell: numbers as they are, ``"47.0 approx"`` -> (47.0, approx)."""
    if isinstance(raw, str) and raw.endswith(APPROX_SUFFIX):
        number = raw[: -len(APPROX_SUFFIX)].strip()
        try:
            return PaperCell(float(number), approx=True)
        except ValueError:
            raise UserError(f"{PAPER_TABLES_PATH.name}: cell {raw!r} is marked approx but is not a number") from None
    return PaperCell(raw)


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """A table of the paper with named columns; rows are lists of PaperCell."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[PaperCell, ...], ...]
    note: str = ""

    def records(self) -> list[dict[str, PaperCell]]:
        """Rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def find(self, **match: Any) -> dict[str, PaperCell]:
        """The one row whose cells equal every ``column=value`` given; UserError if none or several."""
        for column in match:
            if column not in self.columns:
                raise UserError(f"paper table {self.name}: no column {column!r}; columns: {', '.join(self.columns)}")
        hits = [r for r in self.records() if all(r[c].value == v for c, v in match.items())]
        if len(hits) != 1:
            described = ", ".join(f"{c}={v!r}" for c, v in match.items())
            raise UserError(f"paper table {self.name}: {len(hits)} rows match {described} (expected exactly one)")
        return hits[0]

    def to_markdown(self) -> str:
        """The table as published (approx cells marked ``~``)."""
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"name": self.name, "note": self.note, "columns": list(self.columns),
                "rows": [[c.value for c in row] for row in self.rows],
                "approx_cells": [[i, self.columns[j]] for i, row in enumerate(self.rows)
                                 for j, c in enumerate(row) if c.approx]}


@functools.lru_cache(maxsize=1)
def load_paper_tables(path: str | Path = PAPER_TABLES_PATH) -> dict[str, Any]:
    """The raw JSON of the paper's numbers (tables, sweeps, notes)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: the paper's tables are missing (reinstall hdetr)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of table name -> table")
    return data


def table_names() -> list[str]:
    """Names of the tables that have ``columns`` and ``rows``."""
    return [k for k, v in load_paper_tables().items() if isinstance(v, dict) and "columns" in v and "rows" in v]


def paper_table(name: str) -> PaperTable:
    """One table of the paper (``coco_table1``, ``lvis_table2``, ``schemes_table6``, ``cost_table7``)."""
    data = load_paper_tables()
    if name not in table_names():
        raise UserError(f"no paper table {name!r}; tables: {', '.join(table_names())}")
    table = data[name]
    columns = tuple(table["columns"])
    rows = []
    for i, row in enumerate(table["rows"]):
        if len(row) != len(columns):
            raise UserError(f"{PAPER_TABLES_PATH.name}: {name} row {i} has {len(row)} cells, expected {len(columns)}")
        rows.append(tuple(parse_cell(c) for c in row))
    return PaperTable(name=name, columns=columns, rows=tuple(rows), note=table.get("_note", ""))


def paper_sweep(name: str) -> dict[float, float]:
    """A 12-epoch sweep of the paper (``K_with_T_300K``, ``T_with_K6``, ``lambda_with_K6_T1500``): point -> AP."""
    sweeps = load_paper_tables()["sweeps_12ep"]
    if name not in sweeps or name.startswith("_"):
        raise UserError(f"no paper sweep {name!r}; sweeps: {', '.join(k for k in sweeps if not k.startswith('_'))}")
    return {float(k): float(v) for k, v in sweeps[name].items()}
