"""`hdetr demo` end to end, shrunk to seconds: both models over seeds, the same steps, the report files."""
import json

import pytest

from hdetr.cli import main
from hdetr.studies.demo import DEMO_PRESETS, demo_configs, demo_requests


def test_demo_presets_share_the_budget_and_differ_only_in_the_scheme():
    configs = demo_configs()
    base, hybrid = (configs[n] for n in DEMO_PRESETS)
    assert base.train == hybrid.train and base.data == hybrid.data
    changed = {k for k, v in base.model.to_dict().items() if hybrid.model.to_dict()[k] != v}
    assert changed == {"scheme", "num_queries_one2many"}
    assert (base.model.num_queries_one2one, hybrid.model.num_queries_one2many, hybrid.model.k_one2many) == (30, 90, 3)
    assert (base.model.backbone, base.model.freeze_stem, base.model.enc_layers, base.model.dec_layers,
            base.model.dim_feedforward) == ("resnet18", False, 3, 3, 512)
    # equal steps on any machine: no time guard that could stop one model early
    assert base.train.max_iters > 0 and base.train.max_wall_seconds == 0
    assert base.data.synthetic_val_images >= 300 and base.train.eval_max_images == 0


def test_demo_requests_pair_every_seed_and_interleave_the_models(tmp_path):
    requests = demo_requests(tmp_path, seeds=(3, 4, 5))
    assert [(r.key, r.seed) for r in requests[:2]] == [(DEMO_PRESETS[0], 3), (DEMO_PRESETS[1], 3)]
    assert {(r.key, r.seed) for r in requests} == {(n, s) for n in DEMO_PRESETS for s in (3, 4, 5)}
    assert all(r.config.train.seed == r.seed for r in requests)
    assert len({r.run_dir for r in requests}) == 6


@pytest.mark.slow
def test_demo_writes_the_report(tmp_path, capsys):
    from hdetr.data.synthetic import generate

    data = tmp_path / "data"
    generate("coco", data, num_images=8, num_val_images=4, seed=0, image_size=64)
    shrink = ["data.root=" + str(data), "model.hidden_dim=32", "model.nheads=2", "model.enc_layers=1",
              "model.dec_layers=1", "model.dim_feedforward=64", "train.batch_size=2", "train.eval_every_iters=2",
              "train.checkpoint_every_iters=2", "train.tensorboard=false"]
    args = ["demo", "--report-dir", str(tmp_path / "report"), "--work-dir", str(tmp_path / "runs"),
            "--max-iters", "4", "--seeds", "0", "1", *[a for o in shrink for a in ("--set", o)]]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} == {"table.md", "loss_curve.png", "ap_curve.png", "ap_wall_time.png",
                                                  "results.json", "command.txt"}
    table = (report / "table.md").read_text()
    assert "| Deformable-DETR baseline (one-to-one) | 30 | 2 | 4, 4 |" in table
    assert "| H-DETR, hybrid branch | 30 + 90 (K=3) | 2 | 4, 4 |" in table
    assert "## Equal wall time" in table and "95 % interval" in table
    assert "seed-to-seed spread" in table and "Deformable-DETR baseline" in out
    assert "reused" not in table
    results = json.loads((report / "results.json").read_text())
    assert sorted((r["preset"], r["seed"]) for r in results["runs"]) == sorted(
        (n, s) for n in DEMO_PRESETS for s in (0, 1))
    for run in results["runs"]:
        assert run["steps"] == 4
        assert [r["step"] for r in run["rows"] if r["type"] == "eval"] == [2, 4]
    assert (report / "command.txt").read_text().startswith("hdetr demo")
    # a second call keeps the finished runs
    assert main(args) == 0
    assert "4 of 4 runs finished earlier: kept" in capsys.readouterr().out
    assert "4 of the 4 runs had finished in an earlier invocation and were reused" in (report / "table.md").read_text()
