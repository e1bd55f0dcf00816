"""Optimiser parameter groups and the learning-rate schedule of the official recipe."""
import pytest
import torch
from torch import nn

from hdetr.errors import ConfigError
from hdetr.config.presets import get_preset
from hdetr.config.train import TrainConfig
from hdetr.engine.optim import build_lr_scheduler, build_optimizer, build_param_groups, lr_milestones


class StandIn(nn.Module):
    """Parameter names as in H-Deformable-DETR: backbone.0..., ...sampling_offsets, reference_points."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.ModuleList([nn.ModuleDict({"body": nn.Linear(2, 2), "stem": nn.Linear(2, 2)})])
        self.transformer = nn.ModuleDict({
            "sampling_offsets": nn.Linear(2, 2), "reference_points": nn.Linear(2, 2), "value_proj": nn.Linear(2, 2)})
        self.class_embed = nn.Linear(2, 3)
        self.backbone[0]["stem"].requires_grad_(False)  # frozen, as the official stem


def _ids(params):
    return {id(p) for p in params}


def test_official_groups_and_learning_rates():
    model = StandIn()
    groups = {g["name"]: g for g in build_param_groups(model, TrainConfig())}
    assert groups["default"]["lr"] == 2e-4
    assert groups["backbone"]["lr"] == 2e-5
    assert groups["linear_proj"]["lr"] == pytest.approx(2e-5)
    assert _ids(groups["backbone"]["params"]) == _ids(model.backbone[0]["body"].parameters())
    assert _ids(groups["linear_proj"]["params"]) == _ids(
        [*model.transformer["sampling_offsets"].parameters(), *model.transformer["reference_points"].parameters()])
    assert _ids(groups["default"]["params"]) == _ids(
        [*model.transformer["value_proj"].parameters(), *model.class_embed.parameters()])
    frozen = _ids(model.backbone[0]["stem"].parameters())
    assert not frozen & _ids(p for g in groups.values() for p in g["params"])
    opt = build_optimizer(model, TrainConfig())
    assert isinstance(opt, torch.optim.AdamW) and all(g["weight_decay"] == 1e-4 for g in opt.param_groups)


def test_keywords_that_match_nothing_are_an_error():
    with pytest.raises(ConfigError, match=r"lr_backbone_names=\['encoder.body'\] matches no parameter"):
        build_param_groups(StandIn(), TrainConfig(lr_backbone_names=["encoder.body"]))


def test_the_real_model_has_the_official_names():
    import hdetr

    model = hdetr.build_model(get_preset("synthetic_tiny").model)
    groups = {g["name"]: len(g["params"]) for g in build_param_groups(model, TrainConfig())}
    assert groups["backbone"] > 0 and groups["linear_proj"] > 0 and groups["default"] > 0


def _lrs_per_step(cfg, steps_per_epoch, steps):
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(opt, cfg, steps_per_epoch)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("preset, drop_at", [("coco_r50_hybrid_branch_12ep", 11), ("coco_r50_hybrid_branch_36ep", 30)])
def test_the_official_epoch_schedule_drops_once_at_its_epoch_in_steps(preset, drop_at):
    cfg = get_preset(preset).train
    lrs = _lrs_per_step(cfg, 3, 3 * cfg.epochs)
    assert lrs[:3 * drop_at] == [1.0] * 3 * drop_at
    assert lrs[3 * drop_at:] == [pytest.approx(0.1)] * 3 * (cfg.epochs - drop_at)
    assert lr_milestones(cfg, 7329) == [drop_at * 7329]  # COCO's steps per epoch at batch 16


def test_epoch_milestones_and_step_milestones_are_one_schedule():
    cfg = TrainConfig(epochs=6, lr_drop_epochs=[2, 4])
    assert _lrs_per_step(cfg, 1, 6) == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    steps = TrainConfig(epochs=100, lr_drop=100, lr_drop_iters=[3])
    assert _lrs_per_step(steps, 50, 6) == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    both = TrainConfig(epochs=4, lr_drop=2, lr_drop_iters=[1, 4])
    assert lr_milestones(both, 2) == [1, 4, 4, 8]  # a step named twice drops twice, as the two drops did before
    assert _lrs_per_step(both, 2, 6) == pytest.approx([1.0, 0.1, 0.1, 0.1, 0.001, 0.001])
    with pytest.raises(ConfigError, match="steps_per_epoch=0"):
        lr_milestones(both, 0)
