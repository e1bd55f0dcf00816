"""Swin Transformer backbones (tiny/small/base/large, large with 12x12 windows) as the official H-DETR builds them.

The official H-DETR Swin returns stages 1-3 (strides 8/16/32), each passed through its
own LayerNorm (``norm1..norm3``), as NCHW maps. The stages are
``hdetr.models.swin_transformer``'s, which compute what the official ones compute at any
input size (where that differs from timm's is said there).
"""
from __future__ import annotations

import torch
from torch import nn

from hdetr.checkpoints.state_dict import load_exactly
from hdetr.models import official_swin_keys
from hdetr.checkpoints.pretrained import read_state_dict, strip_wrapper_prefix
from hdetr.models.swin_transformer import PatchEmbed, SwinArchitecture, SwinStage, init_weights

SWIN_VARIANTS = {
    "swin_tiny": SwinArchitecture(96, (2, 2, 6, 2), (3, 6, 12, 24), window_size=7),
    "swin_small": SwinArchitecture(96, (2, 2, 18, 2), (3, 6, 12, 24), window_size=7),
    "swin_base": SwinArchitecture(128, (2, 2, 18, 2), (4, 8, 16, 32), window_size=7),
    "swin_large": SwinArchitecture(192, (2, 2, 18, 2), (6, 12, 24, 48), window_size=7),
    "swin_large_window12": SwinArchitecture(192, (2, 2, 18, 2), (6, 12, 24, 48), window_size=12),
}


class SwinBody(nn.Module):
    """Patch embedding + the four stages + one LayerNorm per returned stage."""

    def __init__(self, arch: SwinArchitecture, out_indices: tuple[int, ...], drop_path_rate: float):
        super().__init__()
        self.patch_embed = PatchEmbed(arch.patch_size, arch.embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(arch.depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(arch.depths, arch.num_heads)):
            start = sum(arch.depths[:i])
            self.layers.append(SwinStage(arch.stage_dim(i), depth, heads, arch.window_size, arch.mlp_ratio,
                                         rates[start:start + depth], downsample=i > 0))
        self.out_indices = out_indices
        for i in out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(arch.stage_dim(i)))
        self.apply(init_weights)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images`` ``[B, 3, H, W]`` -> one ``[B, C_i, H_i, W_i]`` map per returned stage."""
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
        arch = SWIN_VARIANTS[name]
        out_indices = (1, 2, 3) if multi_level else (3,)
        self.body = SwinBody(arch, out_indices, drop_path_rate)
        self.strides = [8, 16, 32][-len(out_indices):]
        self.num_channels = [arch.stage_dim(i) for i in out_indices]
        if pretrained:
            self._load_imagenet(pretrained, name)

    def _load_imagenet(self, path: str, name: str) -> None:
        weights = strip_wrapper_prefix(read_state_dict(path))
        if official_swin_keys.is_official_layout(weights):
            weights = {own: v for k, v in weights.items() if (own := official_swin_keys.local_to_own(k)) is not None}
        # the classification head and final norm have no counterpart in a detector backbone;
        # index tables and masks are constants rebuilt here
        weights = {k: v for k, v in weights.items()
                   if not k.startswith(("head.", "norm.")) and not official_swin_keys.is_constant_buffer(k)}
        own = self.body.state_dict()
        for key, value in own.items():  # the per-stage output norms are new: keep their init
            if key.startswith("norm") and key not in weights:
                weights[key] = value
        load_exactly(self.body, weights, f"pretrained backbone weights {path} ({name})")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.body(images)
