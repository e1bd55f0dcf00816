"""Two-stage selection is checked against the smallest augmented image when the config is built."""
import pytest

from hdetr.errors import ConfigError
from hdetr.config.experiment import apply_overrides
from hdetr.config.presets import get_preset


def test_too_many_queries_for_the_smallest_image_are_refused_in_one_line():
    # the configuration that used to crash after 26 s of training ("200 queries requested but ... 197 positions")
    with pytest.raises(ConfigError) as info:
        apply_overrides(get_preset("synthetic_demo_hybrid_branch"),
                        ["model.num_queries_one2one=100", "model.num_queries_one2many=100"])
    message = str(info.value)
    assert "\n" not in message
    # 80x80 px at strides 8/16/32: 100 + 25 + 9 positions
    assert "100 + 100 = 200" in message and "has only 134" in message and "'synthetic'" in message
    assert "use at most 134 queries" in message


def test_the_limit_itself_is_accepted_and_presets_fit():
    cfg = apply_overrides(get_preset("synthetic_demo_hybrid_branch"), ["model.num_queries_one2many=104"])
    assert cfg.model.num_queries == 134
    assert get_preset("coco_r50_hybrid_branch_12ep").model.num_queries == 1800


def test_encoder_positions_follow_the_feature_strides():
    m = get_preset("synthetic_demo_baseline").model
    assert m.encoder_positions(80, 80) == 10 * 10 + 5 * 5 + 3 * 3
    assert m.replace(num_feature_levels=4).encoder_positions(80, 80) == 134 + 2 * 2
    assert m.replace(num_feature_levels=1).encoder_positions(104, 88) == 4 * 3
