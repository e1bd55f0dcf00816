"""Tables filled by evaluating checkpoint files (official H-Deformable-DETR ones here) instead of training."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

import hdetr
from hdetr.cli import main
from hdetr.studies.from_checkpoints import official_match
from hdetr.studies.scales import table_study
from hdetr.studies.variants import variant_config


OFFICIAL_NAMES = {
    "baseline": "r50_deformable_detr_plus_iterative_bbox_refinement_plus_plus_two_stage_12eps.pth",
    "hybrid_branch": "r50_hybrid_branch_lambda1_group6_t1500_dp0_mqs_lft_deformable_detr_plus_iterative_bbox_"
                     "refinement_plus_plus_two_stage_12eps.pth",
}


def _official_checkpoint(model_cfg, path: Path) -> Path:
    torch.manual_seed(0)
    model = hdetr.build_model(model_cfg)
    args = argparse.Namespace(nheads=model_cfg.nheads, num_queries_one2one=model_cfg.num_queries_one2one,
                              num_queries_one2many=model_cfg.num_queries_one2many, k_one2many=model_cfg.k_one2many,
                              topk=model_cfg.topk, backbone=model_cfg.backbone)
    torch.save({"model": hdetr.to_official_state_dict(model), "args": args, "epoch": 11}, path)
    return path


@pytest.mark.slow
def test_checkpoints_fill_the_table_and_the_official_checkpoints_report(tmp_path):
    spec = table_study("coco", "smoke")
    files = {v.key: _official_checkpoint(variant_config(spec.base, v, 0).model, tmp_path / OFFICIAL_NAMES[v.key])
             for v in spec.variants}
    assert official_match(files["hybrid_branch"]) == (OFFICIAL_NAMES["hybrid_branch"][:-len("_12eps.pth")], 12)
    checkpoints = json.dumps({k: str(p) for k, p in files.items()})
    assert main(["reproduce", "coco", "--scale", "smoke", "--out", str(tmp_path / "reports"),
                 "-p", f"CHECKPOINTS={checkpoints}"]) == 0
    out = tmp_path / "reports" / "coco" / "smoke"
    table = json.loads((out / "coco.json").read_text())
    for row in table["rows"]:
        assert len(row["measured"]) == 1 and row["details"][0]["format"] == "official"
        assert row["measured"][0]["num_images"] == spec.base.train.eval_max_images
    assert any("evaluations of given checkpoint files" in note for note in table["notes"])
    official = json.loads((out / "official_checkpoints.json").read_text())
    assert official["title"] == "Official checkpoints evaluated by hdetr"
    assert [(r["label"], r["paper"]["AP"]) for r in official["rows"]] == [(OFFICIAL_NAMES["baseline"], 43.7),
                                                                          (OFFICIAL_NAMES["hybrid_branch"], 48.7)]
    assert [r["measured"] for r in official["rows"]] == [r["measured"] for r in table["rows"]]
    assert "official_checkpoints_readme" in (out / "official_checkpoints.md").read_text()
