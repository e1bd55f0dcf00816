"""HF transformers' DeformableDetrForObjectDetection trained with hdetr's supervision plans
(hdetr.adapters.hf_deformable_detr, docs/plug_in.md): tiny random models, synthetic data."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import hdetr  # noqa: E402
from hdetr.adapters import hf_deformable_detr as hf  # noqa: E402
from hdetr.config.data import DataConfig  # noqa: E402
from hdetr.data.dataset import build_dataset  # noqa: E402
from hdetr.data.loader import collate  # noqa: E402
from hdetr.data.synthetic import generate  # noqa: E402
from hdetr.errors import UserError  # noqa: E402
from hdetr.outputs import ONE2MANY, ONE2ONE, ModelOutput  # noqa: E402

NUM_CLASSES = 6
GROUP_SCHEMES_OK = int(transformers.__version__.split(".")[0]) >= 5


def tiny_model(queries: int = 12, two_stage: bool = False, seed: int = 0):
    """1 encoder + 2 decoder layers, d_model 32, a 4-stage ResNet of 8-16 channels; random weights."""
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, ResNetConfig

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage3", "stage4"])
    config = DeformableDetrConfig(
        use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False, num_labels=NUM_CLASSES,
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_feature_levels=2, encoder_n_points=2, decoder_n_points=2,
        num_queries=queries, two_stage_num_proposals=queries, two_stage=two_stage, with_box_refine=two_stage,
        auxiliary_loss=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    torch.manual_seed(seed)
    return DeformableDetrForObjectDetection(config)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """Two batches of 2 synthetic images (eval resize: 128 px), padded with a pixel mask."""
    root = generate("coco", tmp_path_factory.mktemp("hf_data"), num_images=8, num_val_images=2, image_size=64,
                    num_classes=NUM_CLASSES)
    dataset = build_dataset(DataConfig(root=str(root), synthetic=True, scale_preset="synthetic", augment=False,
                                       num_workers=0), "train")
    assert dataset.num_classes == NUM_CLASSES
    out = []
    for start in (0, 2):
        images, targets = collate([dataset[start], dataset[start + 1]])
        h = max(i.shape[1] for i in images)
        w = max(i.shape[2] for i in images)
        pixels = torch.zeros(len(images), 3, h, w)
        mask = torch.zeros(len(images), h, w, dtype=torch.long)
        for b, image in enumerate(images):
            pixels[b, :, :image.shape[1], :image.shape[2]] = image
            mask[b, :image.shape[1], :image.shape[2]] = 1
        out.append((pixels, mask, [{"labels": t["labels"], "boxes": t["boxes"]} for t in targets]))
    return out


# scheme, ModelConfig changes, HF queries, two-stage
PLANS = [
    ("hybrid_epoch", dict(k_one2many=3, one2many_epoch_fraction=2 / 3), 12, False),
    ("hybrid_layer", dict(k_one2many=3), 12, False),
    ("hybrid_layer", dict(k_one2many=3), 12, True),
    ("hybrid_branch", dict(num_queries_one2one=4, num_queries_one2many=8, k_one2many=2), 12, False),
    ("hybrid_branch", dict(num_queries_one2one=4, num_queries_one2many=8, k_one2many=2), 12, True),
    ("group_detr", dict(num_queries_one2one=4, num_groups=3), 12, False),
]


@pytest.mark.parametrize("scheme,changes,queries,two_stage", PLANS,
                         ids=[f"{p[0]}{'-two_stage' if p[3] else ''}" for p in PLANS])
def test_hf_deformable_detr_trains_under_the_plan(batches, scheme, changes, queries, two_stage):
    if scheme in ("hybrid_branch", "group_detr") and not GROUP_SCHEMES_OK:
        pytest.skip("query groups need transformers >= 5 (AttentionInterface in the decoder self-attention)")
    model = tiny_model(queries, two_stage)
    config = hf.model_config(model.config, scheme, **changes)
    hf.enable_query_groups(model, config)
    criterion = hdetr.build_criterion(config, num_epochs=3)  # a 3-epoch schedule (the epoch scheme's)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    for step, (pixels, mask, targets) in enumerate(batches):
        output = model(pixel_values=pixels, pixel_mask=mask)
        losses = criterion(hf.criterion_outputs(output, config, model), targets, epoch=step)
        loss = criterion.total_loss(losses)
        assert torch.isfinite(loss), (step, losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())]
    assert any(n.startswith("model.decoder.layers") for n in changed)
    assert any("class_embed" in n for n in changed) and any("bbox_embed" in n for n in changed)
    # What each plan supervises shows in the loss keys (hybrid_epoch: epoch 1 < ceil(2/3 * 3), one-to-many).
    expected = {"hybrid_epoch": "loss_ce_one2many", "hybrid_layer": "loss_ce_0_one2many",
                "hybrid_branch": "loss_ce_one2many", "group_detr": "loss_ce_group2"}[scheme]
    assert expected in losses, sorted(losses)
    assert ("loss_ce_enc" in losses) == two_stage
    if len(config.query_group_sizes()) > 1:  # inference keeps the first n queries
        model.eval()
        with torch.no_grad():
            kept = hf.inference_outputs(model(pixel_values=pixels, pixel_mask=mask), config)
        assert kept.logits.shape == (2, config.num_queries_one2one, NUM_CLASSES)


@pytest.mark.parametrize("two_stage", [False, True], ids=["one_stage", "two_stage"])
def test_adapted_loss_equals_the_criterion_on_a_hand_built_output(batches, two_stage):
    pixels, mask, targets = batches[0]
    model = tiny_model(12, two_stage).eval()
    config = hf.model_config(model.config, "hybrid_layer", k_one2many=3)
    criterion = hdetr.build_criterion(config)
    with torch.no_grad():
        plain = model(pixel_values=pixels, pixel_mask=mask)  # no labels: no auxiliary_outputs
        labelled = model(pixel_values=pixels, pixel_mask=mask,
                         labels=[{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets])
    assert plain.auxiliary_outputs is None and len(labelled.auxiliary_outputs) == 1
    layers = [*labelled.auxiliary_outputs, {"logits": labelled.logits, "pred_boxes": labelled.pred_boxes}]
    logits = torch.stack([l["logits"] for l in layers])
    boxes = torch.stack([l["pred_boxes"] for l in layers])
    by_hand = ModelOutput(
        logits={ONE2ONE: logits, ONE2MANY: logits[:, :, :0]}, boxes={ONE2ONE: boxes, ONE2MANY: boxes[:, :, :0]},
        enc_logits=labelled.enc_outputs_class if two_stage else None,
        enc_boxes=labelled.enc_outputs_coord_logits.sigmoid() if two_stage else None)
    expected = criterion(by_hand, targets, epoch=0)
    for output in (labelled, plain):  # stacked auxiliary_outputs, and the layers rebuilt from the model's heads
        adapted = criterion(hf.criterion_outputs(output, config, model), targets, epoch=0)
        assert adapted.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(adapted[key], expected[key], rtol=0, atol=1e-6, msg=key)
        assert abs(criterion.total_loss(adapted).item() - criterion.total_loss(expected).item()) <= 1e-6 * max(
            1.0, abs(criterion.total_loss(expected).item()))
    assert ("loss_ce_enc" in expected) == two_stage


@pytest.mark.skipif(not GROUP_SCHEMES_OK, reason="query groups need transformers >= 5")
def test_query_groups_keep_the_main_queries_apart(batches):
    pixels, mask, _ = batches[0]
    model = tiny_model(12).eval()
    config = hf.model_config(model.config, "hybrid_branch", num_queries_one2one=4, num_queries_one2many=8)
    hf.enable_query_groups(model, config)
    assert model.config.hdetr_query_groups == [4, 8] and model.config._attn_implementation == hf.GROUP_ATTENTION
    with torch.no_grad():
        before = model(pixel_values=pixels, pixel_mask=mask)
        model.model.query_position_embeddings.weight[4:] += 1.0  # move only the one-to-many queries
        after = model(pixel_values=pixels, pixel_mask=mask)
    assert torch.equal(before.logits[:, :4], after.logits[:, :4])  # the first n never see the others
    assert not torch.allclose(before.logits[:, 4:], after.logits[:, 4:])


def test_query_counts_must_match_the_hf_model():
    model = tiny_model(12)
    with pytest.raises(UserError, match="set num_queries=15"):
        hf.model_config(model.config, "hybrid_branch", num_queries_one2one=5, num_queries_one2many=10)
    config = hf.model_config(model.config, "hybrid_layer")
    assert (config.num_queries_one2one, config.one2many_layers, config.one2one_layers) == (12, 1, 1)
    assert config.num_classes == NUM_CLASSES and config.dec_layers == 2 and not config.two_stage
    with pytest.raises(UserError, match=r"num_epochs is not a ModelConfig field.*build_criterion\(config, "):
        hf.model_config(model.config, "hybrid_epoch", num_epochs=3)


def test_importing_hdetr_does_not_import_transformers():
    code = ("import sys, hdetr, hdetr.plug_in, hdetr.adapters.hf_deformable_detr as hf; "
            "assert 'transformers' not in sys.modules, 'transformers imported'; "
            "sys.modules['transformers'] = None\n"
            "try:\n    hf.enable_query_groups(None, None)\nexcept hdetr.errors.UserError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install -e ".[hf]"' in out


def test_doc_example_trains_two_steps(capsys):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "plug_in.md").read_text()
    section = doc.split("## HF transformers' Deformable DETR")[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    torch.manual_seed(0)
    namespace: dict = {"__name__": "plug_in_hf_example"}
    exec(compile(blocks[0], "docs/plug_in.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("0 ") and printed[-1].startswith("1 ")
    assert torch.isfinite(namespace["loss"])
