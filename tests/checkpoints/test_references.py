"""hdetr.checkpoints.references: building reference files from runs, loading them by name, refusing bad files."""
from __future__ import annotations

import json

import pytest
import torch

import hdetr
from hdetr.errors import UserError
from hdetr.checkpoints import make_references as build_module
from hdetr.checkpoints.make_references import build
from hdetr.checkpoints.references import FILES_DIR, read_manifest


def make_tiny_run(root, name: str = "tiny", snapshots: tuple[int, ...] = ()):
    """A run folder ``root/runs/<name>`` as hdetr train leaves it: checkpoint_last.pth (hdetr format, a tiny
    hybrid model on a 2-image synthetic set in ``root/data``), metrics.jsonl, and ``snapshots/step<N>.pth``."""
    from hdetr.config.experiment import apply_overrides
    from hdetr.config.presets import get_preset
    from hdetr.data.synthetic import generate
    from hdetr.checkpoints.training import FORMAT

    if not (root / "data").is_dir():
        generate("coco", root / "data", num_images=2, num_val_images=2, seed=1, image_size=64)
    cfg = apply_overrides(get_preset("synthetic_tiny"), [f"data.root={root / 'data'}", "model.backbone=resnet18_half"])
    torch.manual_seed(0)
    model = hdetr.build_model(cfg.model)
    run = root / "runs" / name
    (run / "snapshots").mkdir(parents=True)
    checkpoint = {"format": FORMAT, "version": 1, "model": model.state_dict(), "config": cfg.to_dict(), "global_step": 2}
    torch.save(checkpoint, run / "checkpoint_last.pth")
    for step in snapshots:
        torch.save(checkpoint, run / "snapshots" / f"step{step}.pth")
    rows = [{"type": "train", "step": 1, "loss": 3.0}, {"type": "eval", "step": 2, "epoch": 0, "AP": 0.01, "AP50": 0.05}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model.eval()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    model = make_tiny_run(root)
    files = root / "files"
    build(root / "runs", files, presets={"tiny": "synthetic_tiny"})
    return {"model": model, "files": files, "runs": root / "runs"}


def test_built_file_holds_fp16_weights_config_classes_and_training(tiny_run):
    data = torch.load(tiny_run["files"] / "tiny.pt", weights_only=True)
    assert {v.dtype for v in data["model"].values() if v.is_floating_point()} == {torch.float16}
    assert data["class_names"][:2] == ["red circle", "blue square"]
    assert data["trained"]["steps"] == 2
    assert data["trained"]["command"] == "hdetr train --preset synthetic_tiny --output-dir runs/references/tiny"
    assert data["trained"]["metrics"] == {"step": 2, "AP": 0.01, "AP50": 0.05}
    entry = read_manifest(tiny_run["files"])["tiny"]
    assert entry["bytes"] == (tiny_run["files"] / "tiny.pt").stat().st_size
    assert (tiny_run["files"] / entry["metrics_log"]).read_text() == (tiny_run["runs"] / "tiny" / "metrics.jsonl").read_text()


def test_loaded_reference_is_the_trained_model_in_eval_mode_with_its_config(tiny_run):
    model = hdetr.load_reference("tiny", directory=tiny_run["files"])
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.experiment_config.model == model.config
    assert model.class_names[0] == "red circle" and model.reference_name == "tiny"
    assert hdetr.list_references(tiny_run["files"]) == ["tiny"]
    # the fp16 round trip: the same weights to fp16 precision, so nearly the same predictions
    original = tiny_run["model"]
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.half().float())
    torch.manual_seed(1)
    image = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        assert torch.allclose(model(image)["pred_boxes"], original(image)["pred_boxes"], atol=2e-2)


def test_unknown_missing_and_corrupted_references_are_refused_naming_the_fix(tiny_run, tmp_path):
    with pytest.raises(UserError, match=r"unknown reference 'nope'; the references are: tiny"):
        hdetr.load_reference("nope", directory=tiny_run["files"])
    broken = tmp_path / "files"
    broken.mkdir()
    (broken / "manifest.json").write_text((tiny_run["files"] / "manifest.json").read_text())
    with pytest.raises(UserError, match=r"tiny.pt does not exist; .*bash scripts/train_references.sh"):
        hdetr.load_reference("tiny", directory=broken)
    data = bytearray((tiny_run["files"] / "tiny.pt").read_bytes())
    data[-100] ^= 0xFF
    (broken / "tiny.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"tiny.pt is corrupted or was replaced .*bash scripts/train_references.sh"):
        hdetr.load_reference("tiny", directory=broken)
    with pytest.raises(UserError, match=r"manifest.json: does not exist"):
        hdetr.load_reference("tiny", directory=tmp_path / "empty")
    assert hdetr.list_references(tmp_path / "empty") == []


def test_build_refuses_an_unfinished_run_and_a_file_over_the_limit(tiny_run, tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"no finished run for other .*train_references.sh"):
        build(tiny_run["runs"], tmp_path, presets={"other": "synthetic_tiny"})
    monkeypatch.setattr(build_module, "MAX_BYTES", 1000)
    with pytest.raises(UserError, match=r"tiny.pt: .* MB, over the 0.001 MB"):
        build(tiny_run["runs"], tmp_path, presets={"tiny": "synthetic_tiny"})
    assert not (tmp_path / "tiny.pt").exists()


def test_building_some_references_keeps_the_others_in_the_manifest(tiny_run, tmp_path):
    make_tiny_run(tmp_path, "second")
    files = tmp_path / "files"
    build(tiny_run["runs"], files, presets={"tiny": "synthetic_tiny"})
    build(tmp_path / "runs", files, presets={"second": "synthetic_tiny"})  # tiny's run is not there
    manifest = read_manifest(files)
    assert set(manifest) == {"tiny", "second"}
    assert manifest["tiny"] == read_manifest(tiny_run["files"])["tiny"]


def test_the_shipped_references_load_and_detect():
    if not (FILES_DIR / "manifest.json").is_file():
        pytest.skip("the shipped reference files are absent (make them with `bash scripts/train_references.sh`)")
    names = hdetr.list_references()
    assert set(build_module.REFERENCE_PRESETS) <= set(names), "every scheme has a shipped reference"
    for name in names:
        entry = read_manifest()[name]
        assert entry["bytes"] <= build_module.MAX_BYTES
        model = hdetr.load_reference(name)
        assert model.trained["steps"] == model.experiment_config.train.max_iters
        assert len(model.class_names) == model.config.num_classes
        assert model.trained["metrics"]["AP"] > 0.05, f"{name}: trained reference should detect something"
