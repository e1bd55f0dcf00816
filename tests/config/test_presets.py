"""Presets, overrides and the one-line errors of bad configs."""
import json
from pathlib import Path

import pytest

from hdetr.cli import main
from hdetr.errors import ConfigError
from hdetr.config.experiment import ExperimentConfig, apply_overrides, parse_override
from hdetr.config.presets import get_preset, list_presets, load_experiment, preset_dict

ROOT = Path(__file__).resolve().parents[2]


def test_every_preset_builds_and_the_paper_grid_is_there():
    names = list_presets()
    for name in names:
        cfg = get_preset(name)
        assert isinstance(cfg, ExperimentConfig) and cfg.name == name
    for bb in ("r50", "swin_t", "swin_l"):
        for sched in ("12ep", "36ep"):
            for scheme in ("baseline", "hybrid_branch", "hybrid_epoch", "hybrid_layer"):
                assert f"coco_{bb}_{scheme}_{sched}" in names
    assert {"lvis_r50_hybrid_branch_24ep", "synthetic_demo_baseline", "synthetic_demo_hybrid_branch",
            "synthetic_tiny"} <= set(names)


def test_paper_recipes():
    hybrid = get_preset("coco_r50_hybrid_branch_12ep")
    m, t = hybrid.model, hybrid.train
    assert (m.scheme, m.num_queries_one2one, m.num_queries_one2many, m.k_one2many, m.lambda_one2many) == (
        "hybrid_branch", 300, 1500, 6, 1.0)
    assert (t.lr, t.lr_backbone, t.lr_linear_proj_mult, t.weight_decay, t.clip_max_norm) == (2e-4, 2e-5, 0.1, 1e-4, 0.1)
    assert (t.epochs, t.lr_drop) == (12, 11)
    assert (get_preset("coco_r50_hybrid_branch_36ep").train.lr_drop) == 30
    base = get_preset("coco_r50_baseline_12ep").model
    assert (base.scheme, base.num_queries_one2many) == ("baseline", 0)
    # a variant differs from its base only in what it names
    diff = {k for k, v in base.to_dict().items() if v != m.to_dict()[k]}
    assert diff == {"scheme", "num_queries_one2many"}
    epoch = get_preset("coco_r50_hybrid_epoch_36ep")
    assert (epoch.model.num_queries_one2one, epoch.model.k_one2many, epoch.train.epochs) == (1800, 10, 36)
    layer = get_preset("coco_swin_t_hybrid_layer_12ep").model
    assert (layer.backbone, layer.one2many_layers, layer.one2one_layers) == ("swin_tiny", 4, 2)
    assert get_preset("coco_swin_l_baseline_36ep").model.drop_path_rate == 0.5
    lvis = get_preset("lvis_r50_hybrid_branch_24ep")
    assert (lvis.data.kind, lvis.model.num_queries_one2one, lvis.model.num_queries_one2many,
            lvis.model.k_one2many) == ("lvis", 300, 900, 5)


def test_sweep_points_follow_the_paper_tables():
    sweeps = json.loads((ROOT / "hdetr" / "paper_tables.json").read_text())["sweeps_12ep"]
    for k in sweeps["K_with_T_300K"]:
        if int(k):
            m = get_preset(f"coco_r50_hybrid_branch_12ep_k{k}").model
            assert (m.k_one2many, m.num_queries_one2many) == (int(k), 300 * int(k))
    for t in sweeps["T_with_K6"]:
        assert get_preset(f"coco_r50_hybrid_branch_12ep_t{t}").model.num_queries_one2many == int(t)
    for lam in sweeps["lambda_with_K6_T1500"]:
        assert get_preset(f"coco_r50_hybrid_branch_12ep_lambda{lam}").model.lambda_one2many == float(lam)


def test_overrides_are_typed_and_validated():
    cfg = apply_overrides(get_preset("synthetic_tiny"), ["model.k_one2many=6", "train.lr_drop_epochs=[1, 2]",
                                                         "model.pretrained_backbone=null", "train.amp=false"])
    assert cfg.model.k_one2many == 6 and cfg.train.lr_drop_epochs == [1, 2]
    assert cfg.model.pretrained_backbone is None and cfg.train.amp is False
    assert parse_override("data.root=/a=b") == ("data", "root", "/a=b")
    assert parse_override("data.root=2017") == ("data", "root", "2017")  # text fields keep digits as text
    with pytest.raises(ConfigError, match=r"ModelConfig.k_one2many: got 'many', expected an integer"):
        apply_overrides(cfg, ["model.k_one2many=many"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) k_one2mny"):
        apply_overrides(cfg, ["model.k_one2mny=3"])
    with pytest.raises(ConfigError, match="unknown section 'modle'"):
        apply_overrides(cfg, ["modle.k_one2many=3"])
    with pytest.raises(ConfigError, match="expected section.field=value"):
        apply_overrides(cfg, ["model.k_one2many"])
    with pytest.raises(ConfigError, match="only exists in the hybrid_branch"):
        apply_overrides(cfg, ["model.scheme=baseline"])
    # the epoch scheme's schedule is train.epochs alone: nothing else to keep equal
    epoch = apply_overrides(cfg, ["model.scheme=hybrid_epoch", "model.num_queries_one2many=0", "train.epochs=5"])
    assert epoch.train.epochs == 5 and "num_epochs" not in epoch.to_dict()["model"]


def test_yaml_file_names_a_base_and_what_differs(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: synthetic_tiny\nmodel: {k_one2many: 4}\ntrain: {epochs: 3, lr_drop: 2}\n")
    cfg = load_experiment(config_file=path)
    assert (cfg.model.k_one2many, cfg.train.epochs, cfg.model.hidden_dim) == (4, 3, 32)
    path.write_text("model: [1, 2]\n")
    with pytest.raises(ConfigError, match="mine.yaml.*expected a mapping"):
        load_experiment(config_file=path)
    assert preset_dict("synthetic_demo_hybrid_branch")["model"]["num_queries_one2many"] == 90


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["train", "--preset", "no_such_preset"], "unknown preset 'no_such_preset'"),
    (["train", "--preset", "synthetic_tiny", "--set", "model.hiden_dim=3"], "unknown key(s) hiden_dim"),
    (["train", "--preset", "synthetic_tiny", "--set", "train.lr=fast"], "TrainConfig.lr: got 'fast', expected a number"),
    (["train", "--preset", "synthetic_tiny", "--set", "model.two_stage=false"], "mixed_selection=True needs two_stage"),
    (["train", "--preset", "synthetic_tiny", "--set", "train.batch_size=0"], "batch_size=0 must be >= 1"),
    (["train", "--preset", "synthetic_tiny", "--set", "model.num_epochs=3"],
     "model.num_epochs is no longer a field: the epoch scheme's schedule is the training schedule, train.epochs; "
     "use train.epochs=3 instead"),
    (["eval", "--checkpoint", "/no/such.pth"], "checkpoint /no/such.pth: does not exist"),
])
def test_cli_bad_configs_get_one_clear_line(capsys, argv, expected):
    assert expected in _one_line_error(capsys, argv)


def test_cli_prints_presets_and_resolved_config(capsys):
    assert main(["train", "--list-presets"]) == 0
    assert "coco_r50_hybrid_branch_12ep" in capsys.readouterr().out.split()
    assert main(["train", "--preset", "coco_r50_baseline_12ep", "--set", "train.epochs=36",
                 "--set", "train.lr_drop=30", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "scheme: baseline" in out and "epochs: 36" in out and "lr_drop: 30" in out


def test_group_detr_and_equal_queries_presets():
    paper = get_preset("coco_r50_group_detr_12ep").model
    assert (paper.backbone, paper.scheme, paper.num_groups, paper.num_queries_one2one, paper.num_queries) == (
        "resnet50", "group_detr", 11, 300, 3300)
    assert get_preset("coco_r50_group_detr_12ep").train.epochs == 12
    demo, hybrid = get_preset("synthetic_demo_group_detr").model, get_preset("synthetic_demo_hybrid_branch").model
    assert (demo.scheme, demo.num_queries_one2one, demo.num_groups) == ("group_detr", 30, 4)
    assert demo.num_queries == hybrid.num_queries == 120  # G n = the demo hybrid's n + T
    control, base = get_preset("synthetic_demo_baseline_equal_queries").model, get_preset("synthetic_demo_baseline").model
    assert (control.scheme, control.num_queries_one2one, control.num_queries) == ("baseline", 120, 120)
    assert control.topk == base.topk
    with pytest.raises(ConfigError, match="num_groups=4 .* only exists in the group_detr scheme"):
        apply_overrides(get_preset("synthetic_demo_baseline"), ["model.num_groups=4"])
