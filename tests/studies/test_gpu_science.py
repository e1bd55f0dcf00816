"""scripts/gpu_science.sh, shrunk (--tiny): the GPU variant of the regime study runs end to end on a CPU
and leaves the run folders and the report the CPU study's reader understands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hdetr.studies.regime import TINY, StudyScale, requests

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_science_tiny(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "scripts/gpu_science.sh", str(tmp_path), "--tiny"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "runs rc=0" in summary and "report rc=0" in summary
    runs = tmp_path / "runs"
    assert StudyScale.of(runs) == TINY
    for req in requests(runs, ["starved"], seeds=(0,)):
        result = json.loads((req.run_dir / "result.json").read_text())
        assert result["config"]["train"]["max_iters"] == 4  # 400 steps x 0.01
        evals = [json.loads(line) for line in (req.run_dir / "metrics.jsonl").read_text().splitlines()
                 if '"eval"' in line]
        assert evals and {"AP_nms", "nms_gap", "duplicates_per_object"} <= set(evals[-1])
    report = (tmp_path / "report" / "cpu_regime.md").read_text()
    starved = [line for line in report.splitlines() if line.startswith("| starved |")]
    assert starved and "not run" not in starved[0]


def test_scale_multiplies_every_step_count():
    cfg = requests("unused", ["starved_long"], seeds=(0,), scale=StudyScale(10.0, ("train.device=cpu",)))[0].config
    assert cfg.train.max_iters == 16000 and cfg.train.lr_drop_iters == [12000]
    assert cfg.train.eval_every_iters == 2000 and cfg.train.device == "cpu"
