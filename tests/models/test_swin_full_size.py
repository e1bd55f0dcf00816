"""Full-size Swin H-DETR models: the official parameter counts, and official state dicts that round-trip."""
from __future__ import annotations

import pytest
import torch

from hdetr.checkpoints.official import from_official_checkpoint, infer_config, to_official_state_dict
from hdetr.config.model import hybrid_branch
from hdetr.models import build_model


@pytest.mark.slow
@pytest.mark.parametrize("backbone, num_queries_one2one, parameters", [
    ("swin_tiny", 300, 48_489_107),
    ("swin_large", 300, 218_079_917),
    ("swin_large", 900, 218_233_517),
])
def test_official_parameter_counts_and_round_trip(backbone, num_queries_one2one, parameters):
    config = hybrid_branch(backbone=backbone, num_queries_one2one=num_queries_one2one, drop_path_rate=0.0,
                           msda_backend="torch")
    model = build_model(config)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == parameters
    state_dict = to_official_state_dict(model)
    assert infer_config(state_dict, overrides={"num_queries_one2one": num_queries_one2one}).backbone == backbone
    loaded = from_official_checkpoint(state_dict, num_queries_one2one=num_queries_one2one, drop_path_rate=0.0,
                                      msda_backend="torch")
    assert loaded.config == config
    for key, value in to_official_state_dict(loaded).items():
        assert torch.equal(value, state_dict[key]), key


@pytest.mark.slow
def test_swin_large_window12_checkpoints_are_recognised_by_their_529_row_tables():
    config = hybrid_branch(backbone="swin_large_window12", drop_path_rate=0.0, msda_backend="torch")
    state_dict = to_official_state_dict(build_model(config))
    assert state_dict["backbone.0.body.layers.0.blocks.0.attn.relative_position_bias_table"].shape == (529, 6)
    assert infer_config(state_dict, overrides={"num_queries_one2one": 300}).backbone == "swin_large_window12"
