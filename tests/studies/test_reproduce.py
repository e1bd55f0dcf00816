"""``hdetr reproduce``: papermill runs into a temporary folder, finished reports never overwritten."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from hdetr.cli import main
from hdetr.errors import UserError
from hdetr.studies.reproduce import (EXPERIMENTS, notebooks_dir, reproduce_command, run_experiment,
                                     strip_heavy_outputs)


def test_every_experiment_notebook_has_tagged_upper_case_parameters():
    for experiment in EXPERIMENTS.values():
        nb = nbformat.read(notebooks_dir() / experiment.notebook, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, experiment.notebook
        names = [line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line]
        assert {"SCALE", "SEEDS", "OUTPUT_DIR", "COMMAND"} <= set(names)
        assert all(name.isupper() for name in names)
        assert all(not o for c in nb.cells if c.cell_type == "code" for o in c.outputs)  # committed without outputs


def test_reproduce_command_names_scale_out_and_parameters(tmp_path):
    command = reproduce_command("coco", "cpu", tmp_path, {"SEEDS": [0, 1]})
    assert command == f"hdetr reproduce coco --scale cpu --out {tmp_path} -p 'SEEDS=[0, 1]'"
    assert reproduce_command("lvis", "smoke", None, {}) == "hdetr reproduce lvis --scale smoke"


def test_bad_requests_fail_before_running(tmp_path):
    with pytest.raises(UserError, match="DATA_ROOT"):
        run_experiment("coco", "paper", reports_dir=tmp_path)
    with pytest.raises(UserError, match="UPPER_CASE"):
        run_experiment("coco", "smoke", reports_dir=tmp_path, parameters={"seeds": [1]})
    with pytest.raises(UserError, match="DATA_ROOT"):
        run_experiment("ablations", "paper", reports_dir=tmp_path)
    with pytest.raises(UserError, match="unknown experiment 'voc'"):
        run_experiment("voc", "smoke", reports_dir=tmp_path)
    assert main(["reproduce", "coco", "--scale", "paper", "--out", str(tmp_path)]) == 2
    assert main(["reproduce", "coco", "-p", "SEEDS", "--out", str(tmp_path)]) == 2
    assert main(["reproduce", "all", "--scale", "paper", "-p", "DATA_ROOT=/d", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing was started


def test_strip_heavy_outputs_keeps_text(tmp_path):
    nb = new_notebook(cells=[new_code_cell("plot()", outputs=[
        new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}),
        new_output("display_data", data={"application/vnd.plotly.v1+json": {}}),
        new_output("stream", name="stdout", text="AP 0.3\n")])])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert strip_heavy_outputs(path) == 2
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert outputs[0].data == {"text/plain": "<Figure>"}
    assert "stripped" in outputs[1].data["text/plain"] and outputs[2].text == "AP 0.3\n"


@pytest.mark.slow
def test_failed_run_keeps_the_finished_report(tmp_path):
    finished = tmp_path / "ablations" / "smoke"
    finished.mkdir(parents=True)
    (finished / "schemes.md").write_text("finished report")
    with pytest.raises(UserError, match="failed .*untouched"):
        run_experiment("ablations", "smoke", reports_dir=tmp_path, parameters={"SWEEP_POINTS": ["x3"]})
    assert (finished / "schemes.md").read_text() == "finished report"
    failed = tmp_path / "notebooks" / "ablations_smoke.failed.ipynb"
    assert "sweep point 'x3'" in failed.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.slow
def test_reproduce_smoke_writes_report_and_notebook(tmp_path):
    assert main(["reproduce", "coco", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    report = tmp_path / "coco" / "smoke"
    data = json.loads((report / "coco.json").read_text())
    assert data["command"] == f"hdetr reproduce coco --scale smoke --out {tmp_path}"
    assert [row["label"] for row in data["rows"]] == ["Deformable-DETR (one-to-one baseline)",
                                                      "H-Deformable-DETR (hybrid branch)"]
    assert all(len(row["measured"]) == 1 and "AP" in row["measured"][0] for row in data["rows"])
    assert (report / "coco_table.png").stat().st_size > 1000
    assert (report / "runs" / "baseline_seed0_metrics.jsonl").is_file()
    assert "Regenerate with: `hdetr reproduce coco --scale smoke" in (report / "coco.md").read_text()
    executed = (tmp_path / "notebooks" / "coco_table_smoke.ipynb").read_text()
    assert "image/png" not in executed
    nb = nbformat.read(tmp_path / "notebooks" / "coco_table_smoke.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'SCALE = "smoke"' in injected[0].source


def test_unknown_parameters_are_refused_with_the_valid_ones():
    from hdetr.studies.reproduce import refuse_unknown_parameters, run_experiment

    with pytest.raises(UserError, match=r"coco_table.ipynb: unknown parameter SEDS; the valid ones are SCALE, SEEDS, "):
        refuse_unknown_parameters("coco", ["SCALE", "SEDS"])
    with pytest.raises(UserError, match=r"unknown parameters NOPE, SEDS"):
        run_experiment("coco", "smoke", parameters={"SEDS": [0], "NOPE": 1})


def test_the_regenerate_command_records_the_parameters_used():
    from hdetr.studies.reproduce import check_notebook_parameters, notebook_parameters

    defaults = notebook_parameters("coco")
    used = {**defaults, "SCALE": "cpu", "OUTPUT_DIR": "reports/x", "SEEDS": [0, 1]}
    assert check_notebook_parameters("coco", used) == (
        "papermill notebooks/experiments/coco_table.ipynb out.ipynb -p SCALE cpu -y 'SEEDS: [0, 1]' "
        "-p OUTPUT_DIR reports/x")
    given = {**defaults, "COMMAND": "hdetr reproduce coco --scale cpu"}
    assert check_notebook_parameters("coco", given) == "hdetr reproduce coco --scale cpu"
    with pytest.raises(UserError, match="unknown parameter SEDS"):
        check_notebook_parameters("coco", {**defaults, "SEDS": [0]})


def test_papermill_run_with_a_misspelt_parameter_stops_before_training(tmp_path):
    import papermill

    from hdetr.studies.reproduce import notebooks_dir

    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter SEDS"):
        papermill.execute_notebook(str(notebooks_dir() / "coco_table.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"SEDS": [1], "OUTPUT_DIR": str(tmp_path / "new" / "report")},
                                   kernel_name="python3", progress_bar=False)
    assert not (tmp_path / "new").exists()  # refused before anything was created
