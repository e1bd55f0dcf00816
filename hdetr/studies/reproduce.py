"""Execute the experiment notebooks with papermill (``hdetr reproduce``).

Each experiment is a papermill-parameterised notebook in ``notebooks/experiments/``
whose ``parameters`` cell holds UPPER_CASE constants (SCALE, SEEDS, OUTPUT_DIR,
COMMAND ...). A run executes it into a temporary folder next to the destination;
only when the notebook finishes are the report folder ``<reports>/<name>/<scale>/``
and the executed notebook ``<reports>/notebooks/<notebook>_<scale>.ipynb``
replaced, so a failed or interrupted run never overwrites a finished report.
A failed run leaves its executed notebook (with the traceback) as
``<reports>/notebooks/<notebook>_<scale>.failed.ipynb``.

The kernel is ``python3``, the one ipykernel provides in every environment it is
installed in; Jupyter starts it with the running interpreter, so a fresh venv
needs no ``ipykernel install``.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from hdetr.errors import UserError

SCALES = ("smoke", "cpu", "paper")
KERNEL_NAME = "python3"


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str  # report folder under reports/
    notebook: str  # file in notebooks/experiments/
    description: str
    scales: tuple[str, ...] = SCALES


EXPERIMENTS = {
    "coco": Experiment("coco", "coco_table.ipynb", "Table 1: baseline vs H-Deformable-DETR, COCO-format data"),
    "lvis": Experiment("lvis", "lvis_table.ipynb", "Table 2: baseline vs H-Deformable-DETR, LVIS-format data"),
    "ablations": Experiment("ablations", "ablations.ipynb",
                            "Table 6 schemes (baseline/branch/epoch/layer), Group DETR, the equal-queries control "
                            "and K/lambda sweep points"),
}


def repo_root() -> Path:
    """The source checkout hdetr runs from (the notebooks live there, not in the package)."""
    return Path(__file__).resolve().parents[2]


def notebooks_dir() -> Path:
    path = repo_root() / "notebooks" / "experiments"
    if not path.is_dir():
        raise UserError(f"{path}: the experiment notebooks are not there; `hdetr reproduce` runs from a source "
                        f"checkout of hdetr (pip install -e .)")
    return path


def default_reports_dir() -> Path:
    return repo_root() / "reports"


def reproduce_command(name: str, scale: str, out: Path | None, parameters: dict[str, Any]) -> str:
    """The shell command that regenerates a report (written into it)."""
    parts = ["hdetr", "reproduce", name, "--scale", scale]
    if out is not None and Path(out).resolve() != default_reports_dir().resolve():
        parts += ["--out", str(out)]
    for key, value in sorted(parameters.items()):
        shown = json.dumps(value) if isinstance(value, (list, dict)) else value  # YAML, as -p reads it
        parts += ["-p", f"{key}={shown}"]
    return shlex.join(parts)


def notebook_parameters(name: str) -> dict[str, Any]:
    """name -> default value of the experiment notebook's ``parameters`` cell, in order.

    Read with ``ast`` (papermill's own reader skips lines whose comment holds an ``=``)."""
    import nbformat

    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    source = notebooks_dir() / EXPERIMENTS[name].notebook
    cells = [c for c in nbformat.read(str(source), as_version=4).cells
             if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise UserError(f"{source}: no cell tagged 'parameters'")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                defaults[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                defaults[node.targets[0].id] = ast.unparse(node.value)
    return defaults


def refuse_unknown_parameters(name: str, given: Iterable[str]) -> None:
    """UserError naming the unknown parameters and listing the valid ones (papermill itself only warns)."""
    valid = notebook_parameters(name)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise UserError(f"{EXPERIMENTS[name].notebook}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)}; the valid ones are {', '.join(valid)}")


def _papermill_option(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return ["-p", key, value]
    return ["-y", f"{key}: {json.dumps(value)}"]  # YAML reads JSON: lists, mappings, null, numbers, booleans


def check_notebook_parameters(name: str, namespace: Mapping[str, Any]) -> str:
    """Called by an experiment notebook right after its parameters: refuses UPPER_CASE names that are
    not parameters (a misspelt ``-p``), and returns the command that regenerates its report: the
    ``COMMAND`` it was given (``hdetr reproduce`` passes its own), else the papermill command with
    every parameter that differs from the notebook's default."""
    defaults = notebook_parameters(name)
    refuse_unknown_parameters(name, [k for k in namespace if k.isupper() and not k.startswith("_")])
    if namespace.get("COMMAND") != defaults.get("COMMAND"):
        return str(namespace["COMMAND"])
    parts = ["papermill", f"notebooks/experiments/{EXPERIMENTS[name].notebook}", "out.ipynb"]
    for key, default in defaults.items():
        if key != "COMMAND" and key in namespace and namespace[key] != default:
            parts += _papermill_option(key, namespace[key])
    return shlex.join(parts)


# Figures are saved as PNG files beside the reports; the executed notebooks keep text only.
HEAVY_MIME_PREFIXES = ("image/", "application/vnd.plotly", "application/vnd.jupyter.widget")


def strip_heavy_outputs(path: Path) -> int:
    """Drop image, plotly and widget outputs from a notebook file in place; returns how many were dropped."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    dropped = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            for mime in [m for m in data if m.startswith(HEAVY_MIME_PREFIXES)]:
                del data[mime]
                dropped += 1
            if not data:
                data["text/plain"] = "[figure saved beside the report; image output stripped]"
    nbformat.write(nb, path)
    return dropped


def relative_paths(path: Path, replacements: dict[Path, Path]) -> None:
    """Rewrite absolute paths in a notebook file (papermill's metadata and injected parameters) as the
    given relative ones, so an executed notebook says nothing about the machine that ran it."""
    text = path.read_text()
    for absolute, relative in sorted(replacements.items(), key=lambda kv: -len(str(kv[0]))):
        text = text.replace(str(absolute.resolve()), relative.as_posix()).replace(str(absolute), relative.as_posix())
    path.write_text(text)


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory (or the source checkout) where it lies inside it."""
    path = path.resolve()
    for root in (Path.cwd().resolve(), repo_root().resolve()):
        if path.is_relative_to(root):
            return path.relative_to(root)
    return path


def _replace_dir(new: Path, dest: Path) -> None:
    """Put ``new`` at ``dest``; the old ``dest`` is removed only once ``new`` is in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{int(time.time() * 1000)}")
        dest.rename(old)
    try:
        new.rename(dest)
    except OSError:
        if old is not None:
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old)


def run_experiment(name: str, scale: str, *, reports_dir: str | Path | None = None,
                   parameters: dict[str, Any] | None = None, log_output: bool = False,
                   progress_bar: bool = False, execution_timeout: int | None = None) -> dict[str, Path]:
    """Execute one experiment notebook at ``scale``; returns ``{"report_dir", "notebook"}`` paths.

    ``parameters`` are extra papermill parameters (UPPER_CASE names of the notebook's
    ``parameters`` cell, e.g. ``{"SEEDS": [0, 1], "DATA_ROOT": "/data/coco"}``).
    """
    import papermill

    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise UserError(f"--scale {scale!r}: expected one of {', '.join(SCALES)}")
    if scale not in EXPERIMENTS[name].scales:
        raise UserError(f"{name} runs at scale {' or '.join(EXPERIMENTS[name].scales)}, not {scale}")
    parameters = dict(parameters or {})
    for key in parameters:
        if not key.isupper():
            raise UserError(f"parameter {key!r}: notebook parameters are UPPER_CASE constants (e.g. SEEDS)")
    refuse_unknown_parameters(name, parameters)
    if scale == "paper" and not parameters.get("DATA_ROOT"):
        raise UserError("--scale paper trains the paper's presets on the real dataset: pass -p DATA_ROOT=/path "
                        "to the COCO (or LVIS) folder")
    experiment = EXPERIMENTS[name]
    source = notebooks_dir() / experiment.notebook
    if not source.is_file():
        raise UserError(f"{source}: experiment notebook missing")
    reports = Path(reports_dir) if reports_dir is not None else default_reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    command = reproduce_command(name, scale, reports_dir and Path(reports_dir), parameters)
    stem = Path(experiment.notebook).stem
    notebook_dest = reports / "notebooks" / f"{stem}_{scale}.ipynb"
    report_dest = reports / name / scale
    # The temporary folder sits inside the reports folder so the final moves are renames.
    work = Path(tempfile.mkdtemp(prefix=f".{name}-{scale}-", dir=reports))
    try:
        executed = work / notebook_dest.name
        report_tmp = work / "report"
        report_tmp.mkdir()
        engine_kwargs = {"execution_timeout": execution_timeout} if execution_timeout else {}
        try:
            papermill.execute_notebook(
                str(source), str(executed),
                parameters={**parameters, "SCALE": scale, "OUTPUT_DIR": str(report_tmp), "COMMAND": command},
                kernel_name=KERNEL_NAME, cwd=str(repo_root()), log_output=log_output, progress_bar=progress_bar,
                **engine_kwargs)
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            failed = notebook_dest.with_name(f"{stem}_{scale}.failed.ipynb")
            if executed.exists():
                failed.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(executed), failed)
            summary = str(exc).strip().splitlines()
            raise UserError(
                f"{experiment.notebook} at scale {scale} failed ({type(exc).__name__}: "
                f"{summary[-1] if summary else ''}); the finished report in {report_dest} is untouched; "
                f"the executed notebook is {failed}") from exc
        strip_heavy_outputs(executed)
        relative_paths(executed, {report_tmp: _shown(report_dest), executed: _shown(notebook_dest),
                                  source: _shown(source)})
        _replace_dir(report_tmp, report_dest)
        notebook_dest.parent.mkdir(parents=True, exist_ok=True)
        executed.replace(notebook_dest)
        stale_failure = notebook_dest.with_name(f"{stem}_{scale}.failed.ipynb")
        if stale_failure.exists():
            stale_failure.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"report_dir": report_dest, "notebook": notebook_dest}
