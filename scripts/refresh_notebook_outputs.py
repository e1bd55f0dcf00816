"""Execute the teaching notebooks in place, so that they are committed with their outputs.

    python scripts/refresh_notebook_outputs.py [notebooks/01_one_to_one_vs_one_to_many.ipynb ...]

Each notebook runs in ``notebooks/`` (its relative paths, e.g. ``../reports/analysis``, as in
JupyterLab) with the ``python3`` kernel; what is kept is what a reader on a code host can see
without a kernel: text, tables and figures. Widget state (the walk-through's controls) is
dropped, and so are the execution timestamps, which would change every file on every run. A
notebook larger than ``MAX_BYTES`` afterwards is an error: its figures need a lower resolution.
CI executes the notebooks again (nbval), so committed outputs never stand in for a run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MAX_BYTES = 3 * 1024 * 1024
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def static_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without widget state and execution timestamps."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
    return nb


def refresh(path: Path, timeout: int = 900) -> int:
    """Execute ``path`` in place; returns its size in bytes."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.outputs)]
    if errors:
        raise SystemExit(f"{path}: cells {errors} raised errors; nothing written")
    text = nbformat.writes(static_outputs(nb)) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise SystemExit(f"{path}: {len(text.encode()) / 2**20:.1f} MB with outputs, above the "
                         f"{MAX_BYTES / 2**20:.0f} MB a committed notebook may have; lower its figures' dpi")
    path.write_text(text)
    return len(text.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every teaching notebook (notebooks/0*.ipynb)")
    args = parser.parse_args(argv)
    for path in args.notebooks or sorted(NOTEBOOKS.glob("0*.ipynb")):
        size = refresh(path.resolve())
        print(f"{path.resolve().relative_to(ROOT)}: {size / 2**20:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
