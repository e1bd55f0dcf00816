"""The supervision plan of every scheme."""
import pytest

from hdetr.config.model import ModelConfig, baseline, group_detr, hybrid_branch, hybrid_epoch, hybrid_layer
from hdetr.errors import ConfigError, UserError
from hdetr.outputs import ONE2MANY, ONE2ONE
from hdetr.matching.plan import (ENCODER_LAYER, Group, decoder_positives, loss_suffix, one2many_epochs, plan,
                                  query_slice)


def _by_tag(groups, tag):
    return [g for g in groups if g.tag == tag]


def test_baseline_is_one_to_one_on_every_layer_and_the_encoder():
    groups = plan(baseline(), epoch=0)
    assert groups == [Group(l, "one2one", 1, 1.0, "one2one") for l in range(6)] + [
        Group(ENCODER_LAYER, "one2one", 1, 1.0, "one2one")
    ]


def test_hybrid_branch_adds_the_one_to_many_queries_on_every_layer():
    groups = plan(hybrid_branch(k_one2many=6, lambda_one2many=0.5), epoch=0)
    assert len(_by_tag(groups, "one2one")) == 7  # six decoder layers + encoder
    assert _by_tag(groups, "one2many") == [Group(l, "one2many", 6, 0.5, "one2many") for l in range(6)]
    assert plan(hybrid_branch(), epoch=11) == plan(hybrid_branch(), epoch=0)


def test_hybrid_epoch_switches_to_one_to_one_after_rho_of_the_epochs():
    config = hybrid_epoch(one2many_epoch_fraction=2 / 3, k_one2many=10)
    assert one2many_epochs(config, 12) == 8  # rho = 2/3 of a 12-epoch schedule: epochs 0-7 one-to-many
    for epoch in range(8):
        decoder = [g for g in plan(config, epoch, num_epochs=12) if g.layer != ENCODER_LAYER]
        assert decoder == [Group(l, "one2one", 10, 1.0, "one2many") for l in range(6)]
    for epoch in (8, 11):
        assert all(g.repeat_k == 1 and g.tag == "one2one" for g in plan(config, epoch, 12))
    # the encoder proposals stay one-to-one in both phases
    assert plan(config, 0, 12)[-1] == Group(ENCODER_LAYER, "one2one", 1, 1.0, "one2one")
    assert one2many_epochs(hybrid_epoch(one2many_epoch_fraction=2 / 3), 36) == 24
    assert one2many_epochs(hybrid_epoch(one2many_epoch_fraction=0.25), 10) == 3  # ceil(2.5)
    # the phase follows the schedule given: the same config over 3 epochs switches after 2
    assert [plan(config, e, 3)[0].tag for e in range(3)] == ["one2many", "one2many", "one2one"]


def test_the_schedule_length_is_an_argument_the_epoch_scheme_requires():
    epoch = hybrid_epoch()
    with pytest.raises(UserError, match=r"plan: scheme=hybrid_epoch needs num_epochs, the training schedule's "
                                        r"length \(train.epochs\)"):
        plan(epoch, 0)
    with pytest.raises(UserError, match="plan: scheme=hybrid_epoch needs num_epochs"):
        decoder_positives(epoch, 0, num_objects=3)
    with pytest.raises(UserError, match="one2many_epochs: scheme=hybrid_epoch needs num_epochs"):
        one2many_epochs(epoch, None)
    with pytest.raises(UserError, match=r"num_epochs=0 must be an integer >= 1"):
        plan(epoch, 0, num_epochs=0)
    # the other schemes do not depend on it: accepted and ignored
    for config in (baseline(), hybrid_branch(), hybrid_layer(), group_detr()):
        assert plan(config, 5) == plan(config, 5, num_epochs=12)
    # the schedule is no model field any more
    with pytest.raises(ConfigError, match="model.num_epochs is no longer a field.*train.epochs"):
        hybrid_epoch(num_epochs=12)
    with pytest.raises(ConfigError, match="model.num_epochs is no longer a field"):
        epoch.replace(num_epochs=12)


def test_hybrid_layer_uses_k_copies_on_the_first_l1_layers_only():
    config = hybrid_layer(k_one2many=10, one2many_layers=4, one2one_layers=2)
    groups = plan(config, epoch=5)
    decoder = [g for g in groups if g.layer != ENCODER_LAYER]
    assert [(g.layer, g.repeat_k, g.tag) for g in decoder] == [
        (0, 10, "one2many"), (1, 10, "one2many"), (2, 10, "one2many"), (3, 10, "one2many"),
        (4, 1, "one2one"), (5, 1, "one2one"),
    ]
    assert all(g.queries == "one2one" for g in groups)


def test_without_aux_loss_or_two_stage_only_the_last_layer_is_supervised():
    config = ModelConfig(aux_loss=False, two_stage=False, mixed_selection=False, look_forward_twice=False,
                         k_one2many=3)
    groups = plan(config)
    assert [(g.layer, g.queries) for g in groups] == [(5, "one2one"), (5, "one2many")]


def test_decoder_positives_count_every_copy_on_every_supervised_decoder_layer():
    assert decoder_positives(baseline(), 0, num_objects=7) == 6 * 7  # the encoder proposals are not counted
    assert decoder_positives(hybrid_branch(k_one2many=6), 0, num_objects=7) == 6 * 7 + 6 * 6 * 7
    epoch = hybrid_epoch(one2many_epoch_fraction=2 / 3, k_one2many=10)
    assert decoder_positives(epoch, 7, num_objects=3, num_epochs=12) == 6 * 10 * 3
    assert decoder_positives(epoch, 8, num_objects=3, num_epochs=12) == 6 * 3
    assert decoder_positives(hybrid_layer(k_one2many=10, one2many_layers=4), 0, num_objects=2) == 4 * 10 * 2 + 2 * 2


def test_group_detr_matches_every_group_one_to_one_on_every_layer():
    config = group_detr(num_groups=4, dec_layers=3, num_queries_one2one=30)
    groups = plan(config, epoch=0)
    assert _by_tag(groups, "one2one") == [Group(l, "one2one", 1, 1.0, "one2one") for l in (0, 1, 2, ENCODER_LAYER)]
    for i in (1, 2, 3):
        assert _by_tag(groups, f"group{i}") == [Group(l, f"group{i}", 1, 1.0, f"group{i}") for l in range(3)]
    assert len(groups) == 4 * 3 + 1 and all(g.repeat_k == 1 and g.weight == 1.0 for g in groups)
    assert plan(config, epoch=11) == groups
    assert decoder_positives(config, 0, num_objects=5) == 4 * 3 * 5  # G groups x layers x objects
    assert config.num_queries == 120 and config.query_group_sizes() == [30] * 4
    # group i is block i of n queries: block i-1 of the extra outputs, under distinct loss keys
    assert query_slice("group2", 30) == (ONE2MANY, slice(30, 60))
    assert query_slice("one2one", 30) == (ONE2ONE, slice(None)) and query_slice("one2many", 30)[0] == ONE2MANY
    assert [loss_suffix(t) for t in ("one2one", "one2many", "group3")] == ["", "_one2many", "_group3"]
