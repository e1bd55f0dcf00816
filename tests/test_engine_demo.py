"""`hdetr demo` end to end, shrunk to seconds: both runs, the same budget, the report files."""
import json

import pytest

from hdetr.cli import main
from hdetr.engine.demo import DEMO_PRESETS, demo_configs


def test_demo_presets_share_the_budget_and_differ_only_in_the_scheme():
    configs = demo_configs()
    base, hybrid = (configs[n] for n in DEMO_PRESETS)
    assert base.train == hybrid.train and base.data == hybrid.data
    changed = {k for k, v in base.model.to_dict().items() if hybrid.model.to_dict()[k] != v}
    assert changed == {"scheme", "num_queries_one2many"}
    assert (base.model.num_queries_one2one, hybrid.model.num_queries_one2many, hybrid.model.k_one2many) == (30, 90, 3)
    assert (base.model.backbone, base.model.freeze_stem, base.model.enc_layers, base.model.dec_layers,
            base.model.dim_feedforward) == ("resnet18", False, 3, 3, 512)
    assert base.train.max_iters > 0 and base.train.max_wall_seconds > 0


@pytest.mark.slow
def test_demo_writes_the_report(tmp_path, capsys):
    from hdetr.data.synthetic import generate

    data = tmp_path / "data"
    generate("coco", data, num_images=8, num_val_images=4, seed=0, image_size=64)
    shrink = ["data.root=" + str(data), "model.hidden_dim=32", "model.nheads=2", "model.enc_layers=1",
              "model.dec_layers=1", "model.dim_feedforward=64", "train.batch_size=2", "train.eval_every_iters=2",
              "train.eval_max_images=4", "train.num_threads=1", "train.progress=false", "train.tensorboard=false"]
    args = ["demo", "--report-dir", str(tmp_path / "report"), "--work-dir", str(tmp_path / "runs"),
            "--max-iters", "4", *[a for o in shrink for a in ("--set", o)]]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} == {"table.md", "loss_curve.png", "ap_curve.png", "results.json",
                                                  "command.txt"}
    table = (report / "table.md").read_text()
    assert "| Deformable-DETR baseline (one-to-one) | 30 | 4 | max_iters |" in table
    assert "| H-DETR, hybrid branch | 30 + 90 (K=3) | 4 | max_iters |" in table
    assert any(w in table for w in ("finished ahead", "finished behind", "finished level"))
    assert "seed-to-seed noise" in table and "Deformable-DETR baseline" in out
    results = json.loads((report / "results.json").read_text())
    for name in DEMO_PRESETS:
        run = results["runs"][name]
        assert run["summary"]["global_step"] == 4
        assert [r["step"] for r in run["rows"] if r["type"] == "eval"] == [2, 4]
    assert (report / "command.txt").read_text().startswith("hdetr demo")
