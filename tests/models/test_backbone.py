"""Backbones: feature strides and channels, Swin through timm, ImageNet weights from local files."""
from __future__ import annotations

import pytest
import torch

from hdetr.errors import UserError
from hdetr.models import official_swin_keys
from hdetr.models.backbone import ResNetBackbone
from hdetr.models.position_encoding import PositionEmbeddingSine
from hdetr.models.swin_backbone import SwinBackbone


def test_resnet_feature_maps_and_dilation():
    images = torch.randn(1, 3, 96, 64)
    plain = ResNetBackbone("resnet18", multi_level=True, dilation=False, freeze_stem=True)
    assert plain.strides == [8, 16, 32] and plain.num_channels == [128, 256, 512]
    assert [tuple(f.shape[-3:]) for f in plain(images)] == [(128, 12, 8), (256, 6, 4), (512, 3, 2)]
    dilated = ResNetBackbone("resnet50", multi_level=False, dilation=True, freeze_stem=True)
    assert dilated.strides == [16] and tuple(dilated(images)[0].shape[-3:]) == (2048, 6, 4)
    with pytest.raises(UserError, match="dilation"):
        ResNetBackbone("resnet18", multi_level=False, dilation=True, freeze_stem=True)


def test_sine_position_encoding_is_normalised_to_the_valid_region():
    mask = torch.zeros(1, 4, 6, dtype=torch.bool)
    mask[:, :, 3:] = True  # right half is padding
    pos = PositionEmbeddingSine(num_pos_feats=8)(mask)
    assert pos.shape == (1, 16, 4, 6)
    # first x channel is sin(2*pi*(x+0.5)/3): symmetric around the valid centre
    x_sin = pos[0, 8, 0, :3]
    torch.testing.assert_close(x_sin, torch.sin(2 * torch.pi * (torch.arange(3.0) + 0.5) / 3), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_swin_tiny_features_and_imagenet_weights_in_both_layouts(tmp_path):
    import timm

    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).state_dict()
    timm_file = tmp_path / "swin_tiny_timm.pth"
    torch.save(reference, timm_file)
    backbone = SwinBackbone("swin_tiny", multi_level=True, drop_path_rate=0.1, pretrained=str(timm_file))
    key = "layers.2.blocks.1.attn.qkv.weight"
    assert torch.equal(backbone.body.state_dict()[key], reference[key])
    assert backbone.strides == [8, 16, 32] and backbone.num_channels == [192, 384, 768]
    features = backbone.eval()(torch.randn(1, 3, 70, 90))  # not a multiple of the patch or window size
    assert [tuple(f.shape[1:]) for f in features] == [(192, 9, 12), (384, 5, 6), (768, 3, 3)]

    # the original Microsoft layout: downsampling at the end of each stage, index tables stored
    body_keys = {"backbone.0.body." + k: v for k, v in reference.items() if not k.startswith(("head.", "norm."))}
    original = {k[len("backbone.0.body."):]: v
                for k, v in official_swin_keys.to_official(body_keys, backbone.body).items()}
    assert "layers.0.downsample.reduction.weight" in original
    original |= {"head.weight": torch.zeros(1000, 768), "head.bias": torch.zeros(1000)}
    original_file = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": original}, original_file)
    loaded = SwinBackbone("swin_tiny", multi_level=True, drop_path_rate=0.1, pretrained=str(original_file))
    key = "layers.3.downsample.reduction.weight"
    assert torch.equal(loaded.body.state_dict()[key], reference[key])

    with pytest.raises(UserError, match=r"swin_tiny_timm\.pth \(swin_small\).*missing keys \[layers\.2\.blocks\.1"):
        SwinBackbone("swin_small", multi_level=True, drop_path_rate=0.1, pretrained=str(timm_file))
