"""The regime study's outcome, read from the committed report, so that every place quotes the same words.

``reports/science/findings.md`` opens with the outcome of the CPU regime study in bold, written
from the numbers of ``reports/science/cpu_regime.md``; the demo report and the teaching notebooks
quote it through ``science_headline`` instead of stating a result of their own.
"""
from __future__ import annotations

import re
from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def science_headline(report_dir: str | Path | None = None) -> str | None:
    """The first bold sentence of ``findings.md`` (default: the checkout's ``reports/science/``), or None
    where the file is absent (an installed package without the reports)."""
    path = Path(report_dir or REPORTS / "science") / "findings.md"
    if not path.is_file():
        return None
    match = re.search(r"\*\*(.+?)\*\*", path.read_text(), flags=re.S)
    return " ".join(match.group(1).split()) if match else None


def science_summary(report_dir: str | Path | None = None) -> str:
    """Markdown for a notebook's summary cell: the study's outcome and where its evidence is."""
    headline = science_headline(report_dir)
    if headline is None:
        return "The regime study's report (`reports/science/cpu_regime.md`) is not in this installation."
    return (f"**What the measurements of this project say** (`reports/science/cpu_regime.md`, 3 seeds per model, "
            f"both views, intervals): {headline} The notebooks show the mechanism on one trained reference per "
            f"scheme; a single model cannot show a difference that the seed spread decides.")
