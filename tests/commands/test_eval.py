"""`hdetr eval` reads hdetr checkpoints and official H-Deformable-DETR ones alike."""
import argparse
import json

import torch

import hdetr
from hdetr.cli import main
from hdetr.config.experiment import apply_overrides
from hdetr.config.presets import get_preset
from hdetr.checkpoints.training import FORMAT, save_atomic


def test_hdetr_and_official_checkpoints_of_the_same_weights_score_the_same(tmp_path, capsys):
    from hdetr.data.synthetic import generate

    data = tmp_path / "data"
    generate("coco", data, num_images=2, num_val_images=4, seed=1, image_size=64)
    cfg = apply_overrides(get_preset("synthetic_tiny"), [f"data.root={data}"])
    torch.manual_seed(0)
    model = hdetr.build_model(cfg.model)
    save_atomic({"format": FORMAT, "model": model.state_dict(), "config": cfg.to_dict()}, tmp_path / "ours.pth")
    official_args = argparse.Namespace(nheads=cfg.model.nheads, num_queries_one2one=cfg.model.num_queries_one2one,
                                       num_queries_one2many=cfg.model.num_queries_one2many,
                                       k_one2many=cfg.model.k_one2many, topk=cfg.model.topk,
                                       backbone=cfg.model.backbone)
    torch.save({"model": hdetr.to_official_state_dict(model), "args": official_args, "epoch": 11},
               tmp_path / "official.pth")

    scores = {}
    for name, extra in (("ours", []), ("official", ["--preset", "synthetic_tiny", "--set", f"data.root={data}",
                                                    "--set", "model.freeze_stem=false"])):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--checkpoint", str(tmp_path / f"{name}.pth"), "--device", "cpu", "--output", str(out),
                     *extra]) == 0, capsys.readouterr().err
        scores[name] = json.loads(out.read_text())
    assert scores["ours"]["format"] == "hdetr" and scores["official"]["format"] == "official"
    for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert scores["ours"][key] == scores["official"][key], key
    assert scores["ours"]["num_images"] == 4
