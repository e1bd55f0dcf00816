"""The epoch scheme's schedule has one home, train.epochs; configs written with model.num_epochs still read."""
from __future__ import annotations

import json

import pytest
import torch

from hdetr.config.experiment import ExperimentConfig, apply_overrides, experiment_from_dict, parse_override
from hdetr.config.model import ModelConfig, hybrid_epoch
from hdetr.config.presets import get_preset, load_experiment
from hdetr.errors import ConfigError, UserError
from hdetr.losses import build_criterion


def _legacy(preset: str, num_epochs: int) -> dict:
    """A preset's config as written before the move: the schedule copied into the model section."""
    data = get_preset(preset).to_dict()
    data["model"]["num_epochs"] = num_epochs
    return data


def test_no_config_section_holds_the_schedule_but_train():
    assert "num_epochs" not in ModelConfig().to_dict()
    epoch = get_preset("coco_r50_hybrid_epoch_12ep")
    assert "num_epochs" not in epoch.to_dict()["model"] and epoch.train.epochs == 12


def test_a_legacy_num_epochs_equal_to_train_epochs_is_read_and_dropped():
    for preset in ("synthetic_demo_hybrid_epoch", "synthetic_demo_hybrid_branch", "coco_r50_hybrid_epoch_36ep"):
        expected = get_preset(preset)
        data = _legacy(preset, expected.train.epochs)
        assert experiment_from_dict(data, source="config.yaml").to_dict() == expected.to_dict()
        assert ExperimentConfig.from_dict(data) == expected


def test_a_legacy_num_epochs_that_differs_is_dropped_unless_the_scheme_is_the_epoch_scheme():
    # the other schemes never read it: configs were valid with any value, and still are
    baseline = get_preset("synthetic_demo_baseline")
    assert experiment_from_dict(_legacy("synthetic_demo_baseline", 50)).to_dict() == baseline.to_dict()
    epoch = get_preset("synthetic_demo_hybrid_epoch")
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(_legacy("synthetic_demo_hybrid_epoch", epoch.train.epochs + 1),
                             source="old/config.yaml")
    message = str(info.value)
    assert message.startswith("old/config.yaml: ExperimentConfig: ")
    assert f"model.num_epochs={epoch.train.epochs + 1}" in message
    assert f"differs from train.epochs={epoch.train.epochs}" in message
    assert "set train.epochs to the length you mean and remove model.num_epochs" in message


def test_a_yaml_file_with_the_legacy_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: synthetic_demo_hybrid_epoch\nmodel: {num_epochs: 4}\ntrain: {epochs: 4, lr_drop: 3}\n")
    cfg = load_experiment(config_file=path)
    assert cfg.train.epochs == 4 and "num_epochs" not in cfg.to_dict()["model"]
    path.write_text("base: synthetic_demo_hybrid_epoch\nmodel: {num_epochs: 8}\ntrain: {epochs: 4, lr_drop: 3}\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: .*model.num_epochs=8 .* differs from train.epochs=4"):
        load_experiment(config_file=path)


def test_a_model_config_alone_drops_the_legacy_key():
    data = hybrid_epoch().to_dict()
    assert ModelConfig.from_dict({**data, "num_epochs": 36}) == hybrid_epoch()


def test_overriding_model_num_epochs_names_train_epochs():
    cfg = get_preset("synthetic_demo_hybrid_epoch")
    expected = ("override 'model.num_epochs=6': model.num_epochs is no longer a field: the epoch scheme's schedule "
                "is the training schedule, train.epochs; use train.epochs=6 instead")
    with pytest.raises(ConfigError) as info:
        parse_override("model.num_epochs=6")
    assert str(info.value) == expected
    with pytest.raises(ConfigError, match="use train.epochs=6 instead"):
        apply_overrides(cfg, ["model.num_epochs=6"])
    assert apply_overrides(cfg, ["train.epochs=6"]).train.epochs == 6


def test_a_saved_run_result_with_the_legacy_key_is_the_requested_config(tmp_path):
    from hdetr.studies.runs import read_result

    cfg = get_preset("synthetic_demo_hybrid_epoch")
    saved = _legacy("synthetic_demo_hybrid_epoch", cfg.train.epochs)
    (tmp_path / "result.json").write_text(json.dumps({"metrics": {}, "config": saved}))
    assert read_result(tmp_path, cfg) is not None
    assert read_result(tmp_path, apply_overrides(cfg, ["train.epochs=7"])) is None  # another schedule: another run


def test_the_shipped_epoch_reference_was_written_with_the_legacy_key_and_loads():
    import hdetr
    from hdetr.checkpoints.references import FILES_DIR, read_manifest

    entry = read_manifest()["synthetic_hybrid_epoch"]
    stored = torch.load(FILES_DIR / entry["file"], map_location="cpu", weights_only=True)["config"]
    assert stored["model"]["num_epochs"] == stored["train"]["epochs"] == 6
    model = hdetr.load_reference("synthetic_hybrid_epoch")
    assert model.experiment_config.train.epochs == 6 and model.config.scheme == "hybrid_epoch"


def test_the_criterion_takes_the_schedule_for_the_epoch_scheme_only():
    config = hybrid_epoch(dec_layers=2, one2many_epoch_fraction=2 / 3)
    with pytest.raises(UserError, match=r"build_criterion: scheme=hybrid_epoch needs num_epochs, the training "
                                        r"schedule's length \(train.epochs\)"):
        build_criterion(config)
    assert build_criterion(config, num_epochs=12).num_epochs == 12
    branch = ModelConfig(dec_layers=2)
    assert build_criterion(branch).weight_dict == build_criterion(branch, num_epochs=12).weight_dict
