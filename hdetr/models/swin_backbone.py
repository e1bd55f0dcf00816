"""Swin Transformer backbones (tiny/small/base/large) from timm, shaped like the official one.

The official H-DETR Swin returns stages 1-3 (strides 8/16/32), each passed through its
own LayerNorm (``norm1..norm3``), as NCHW maps. timm provides the stages; images are
padded to a multiple of the patch size as the official patch embedding does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdetr.checkpoint_files import load_exactly
from hdetr.models.pretrained import read_state_dict, strip_wrapper_prefix

SWIN_VARIANTS = {
    "swin_tiny": ("swin_tiny_patch4_window7_224", 96),
    "swin_small": ("swin_small_patch4_window7_224", 96),
    "swin_base": ("swin_base_patch4_window7_224", 128),
    "swin_large": ("swin_large_patch4_window7_224", 192),
}
_PATCH = 4


class SwinBody(nn.Module):
    """Patch embedding + the four timm stages + one LayerNorm per returned stage."""

    def __init__(self, timm_name: str, embed_dim: int, out_indices: tuple[int, ...], drop_path_rate: float):
        super().__init__()
        import timm

        model = timm.create_model(timm_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                                  drop_path_rate=drop_path_rate)
        self.timm_model_name = timm_name
        self.patch_embed = model.patch_embed
        self.layers = model.layers
        self.out_indices = out_indices
        for i in out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(embed_dim * 2 ** i))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        height, width = images.shape[-2:]
        images = F.pad(images, (0, (-width) % _PATCH, 0, (-height) % _PATCH))
        x = self.patch_embed(images)  # [B, H/4, W/4, C], channels last
        features = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            if i in self.out_indices:
                features.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
        return features


class SwinBackbone(nn.Module):
    """Swin-T/S/B/L; every parameter trains (as the official recipe). ``pretrained`` is a local
    file with ImageNet weights in timm or in the original Microsoft layout."""

    def __init__(self, name: str, multi_level: bool, drop_path_rate: float, pretrained: str | None = None):
        super().__init__()
        timm_name, embed_dim = SWIN_VARIANTS[name]
        out_indices = (1, 2, 3) if multi_level else (3,)
        self.body = SwinBody(timm_name, embed_dim, out_indices, drop_path_rate)
        self.strides = [8, 16, 32][-len(out_indices):]
        self.num_channels = [embed_dim * 2 ** i for i in out_indices]
        if pretrained:
            self._load_imagenet(pretrained, name)

    def _load_imagenet(self, path: str, name: str) -> None:
        from timm.models.swin_transformer import checkpoint_filter_fn

        weights = strip_wrapper_prefix(read_state_dict(path))
        weights = checkpoint_filter_fn(weights, self.body)
        # the classification head and final norm have no counterpart in a detector backbone
        weights = {k: v for k, v in weights.items() if not k.startswith(("head.", "norm."))}
        own = self.body.state_dict()
        for key, value in own.items():  # the per-stage output norms are new: keep their init
            if key.startswith("norm") and key not in weights:
                weights[key] = value
        load_exactly(self.body, weights, f"pretrained backbone weights {path} ({name})")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.body(images)

