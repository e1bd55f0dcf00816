"""Swin Transformer stages that compute what the official H-Deformable-DETR Swin computes.

The official backbone (Microsoft's detection Swin) and timm's SwinTransformer share their
weights but not their forward at detection sizes. Here, as in the official code:

- every odd block of every stage shifts its windows by ``window // 2``, whatever the size
  of the map (timm fixes each stage's resolution from a 224-pixel input, so a stage whose
  map is no larger than the window neither shifts nor keeps its window size);
- a block pads its map to a multiple of the window first and then shifts it cyclically
  (timm shifts, then pads), and the shifted-window mask is built for that padded map on
  every forward (once per stage); padded tokens are zeros that take part in attention,
  unmasked, exactly as there;
- the mask is -100 between tokens from different regions of the rolled map, the relative
  position bias is ``relative_position_bias_table[relative_position_index]``, and drop path
  grows linearly over all blocks from 0 to ``drop_path_rate``.

Module and key names follow timm (patch merging at the start of stages 1-3, the index
tables as non-persistent buffers) so that this project's checkpoints and timm's ImageNet
files load as they are; ``official_swin_keys`` maps them to the official names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn


@dataclass(frozen=True)
class SwinArchitecture:
    """The shape of one Swin variant."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4
    mlp_ratio: float = 4.0

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2 ** stage


def relative_position_index(window: int) -> torch.Tensor:
    """``[window**2, window**2]`` int64: row of the bias table for each (query, key) pair
    of a window (the official table, stored in official state dicts)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` (H, W multiples of ``window``) -> ``[B * nW, window**2, C]``, windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``window_partition``: ``[B * nW, window**2, C]`` -> ``[B, height, width, C]``."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, c)


def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device,
                        dtype: torch.dtype) -> torch.Tensor:
    """``[nW, window**2, window**2]``: 0 within a region of the padded, rolled map of
    ``height`` x ``width`` (multiples of ``window``), -100 across regions."""
    region = torch.zeros(height, width, device=device)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(bounds):
        for j, cols in enumerate(bounds):
            region[rows, cols] = 3 * i + j
    windows = window_partition(region[None, :, :, None], window).squeeze(-1)  # [nW, N]
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill_(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with the relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """``[heads, N, N]`` with N = window**2."""
        n = self.window * self.window
        return self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``windows`` ``[B * nW, N, C]``; ``mask`` ``[nW, N, N]`` or None -> ``[B * nW, N, C]``."""
        batch_windows, n, c = windows.shape
        q, k, v = self.qkv(windows).view(batch_windows, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.position_bias().unsqueeze(0)  # [1, heads, N, N]
        if mask is not None:
            num_windows = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).repeat(batch_windows // num_windows, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(batch_windows, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and MLP, each pre-norm and residual. ``shift`` 0 or window // 2."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # one module for both residual branches, as the official block (no state: same draws)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``[B, H, W, C]``; ``mask`` the stage's shifted-window mask (used when shifting)."""
        b, h, w, c = x.shape
        window = self.window
        y = F.pad(self.norm1(x), (0, 0, 0, (-w) % window, 0, (-h) % window))
        hp, wp = y.shape[1:3]
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, window), mask if self.shift else None)
        y = window_reverse(y, window, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbours -> one token with twice the channels (odd sizes padded with zeros)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]``; channels ordered as the
        official concatenation of (even, even), (odd, even), (even, odd), (odd, odd) rows/cols."""
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h, w = x.shape[1:3]
        x = x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 drop_paths: list[float], downsample: bool):
        super().__init__()
        self.window, self.shift = window, window // 2
        self.downsample = PatchMerging(dim // 2) if downsample else nn.Identity()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else self.shift, mlp_ratio, drop_paths[i])
            for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C_in]`` -> ``[B, H', W', C]`` (H' = ceil(H/2) after patch merging)."""
        x = self.downsample(x)
        h, w = x.shape[1:3]
        window = self.window
        mask = None
        if len(self.blocks) > 1:
            mask = shifted_window_mask(h + (-h) % window, w + (-w) % window, window, self.shift, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return x


class PatchEmbed(nn.Module):
    """Image -> ``[B, H/4, W/4, C]`` tokens; sizes padded to a multiple of the patch first."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        images = F.pad(images, (0, (-w) % self.patch, 0, (-h) % self.patch))
        return self.norm(self.proj(images).permute(0, 2, 3, 1))


def init_weights(module: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) linear weights, zero biases,
    unit LayerNorms; the patch convolution keeps PyTorch's default."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
