"""The Swin backbone alone against an independent reference of the official computation.

The reference below shares no code with hdetr's Swin: instead of rolling, padding and
partitioning maps it gives every token of the padded map its place in the rolled map,
attends densely over all tokens and masks out pairs from different windows (-inf),
adds -100 across the regions of the rolled map, and takes the relative position bias
from the in-window coordinates. Weights are read from the module's state dict by name.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hdetr.errors import ConfigError
from hdetr.config.model import ModelConfig
from hdetr.models.swin_backbone import SwinBody
from hdetr.models.swin_transformer import SwinArchitecture


def _band(pos: torch.Tensor, size: int, window: int, shift: int) -> torch.Tensor:
    return (pos >= size - window).long() + (pos >= size - shift).long()


def _reference_attention(x, p, prefix, heads, window, shift):
    """x [H, W, C] (already normalised) -> [H, W, C]."""
    h, w, c = x.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    padded = x.new_zeros(hp, wp, c)
    padded[:h, :w] = x
    rows = torch.arange(hp)[:, None].expand(hp, wp).reshape(-1)
    cols = torch.arange(wp)[None, :].expand(hp, wp).reshape(-1)
    rolled_r, rolled_c = (rows - shift) % hp, (cols - shift) % wp  # where each token sits after the roll
    window_id = (rolled_r // window) * (wp // window) + rolled_c // window
    tokens = padded.reshape(-1, c)
    qkv = F.linear(tokens, p[prefix + "qkv.weight"], p[prefix + "qkv.bias"]).view(-1, 3, heads, c // heads)
    q, k, v = qkv.unbind(1)
    logits = torch.einsum("nhd,mhd->hnm", q, k) * (c // heads) ** -0.5
    dr = (rolled_r % window)[:, None] - (rolled_r % window)[None, :] + window - 1
    dc = (rolled_c % window)[:, None] - (rolled_c % window)[None, :] + window - 1
    logits = logits + p[prefix + "relative_position_bias_table"][dr * (2 * window - 1) + dc].permute(2, 0, 1)
    if shift:
        region = _band(rolled_r, hp, window, shift) * 3 + _band(rolled_c, wp, window, shift)
        logits = logits - 100.0 * (region[:, None] != region[None, :])
    logits = logits.masked_fill(window_id[:, None] != window_id[None, :], float("-inf"))
    out = torch.einsum("hnm,mhd->nhd", logits.softmax(-1), v).reshape(-1, c)
    out = F.linear(out, p[prefix + "proj.weight"], p[prefix + "proj.bias"])
    return out.view(hp, wp, c)[:h, :w]


def _layer_norm(x, p, prefix):
    return F.layer_norm(x, x.shape[-1:], p[prefix + "weight"], p[prefix + "bias"])


def _reference_features(image, p, arch):
    """One image [3, H, W] -> the official stride 8/16/32 maps [C, H_i, W_i]."""
    patch = arch.patch_size
    image = F.pad(image, (0, (-image.shape[2]) % patch, 0, (-image.shape[1]) % patch))
    x = F.conv2d(image[None], p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=patch)[0]
    x = _layer_norm(x.permute(1, 2, 0), p, "patch_embed.norm.")
    features = []
    for stage, (depth, heads) in enumerate(zip(arch.depths, arch.num_heads)):
        if stage:
            x = F.pad(x, (0, 0, 0, x.shape[1] % 2, 0, x.shape[0] % 2))
            x = torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1)
            x = F.linear(_layer_norm(x, p, f"layers.{stage}.downsample.norm."),
                         p[f"layers.{stage}.downsample.reduction.weight"])
        for i in range(depth):
            pre = f"layers.{stage}.blocks.{i}."
            shift = arch.window_size // 2 if i % 2 else 0
            x = x + _reference_attention(_layer_norm(x, p, pre + "norm1."), p, pre + "attn.", heads,
                                         arch.window_size, shift)
            hidden = F.gelu(F.linear(_layer_norm(x, p, pre + "norm2."), p[pre + "mlp.fc1.weight"], p[pre + "mlp.fc1.bias"]))
            x = x + F.linear(hidden, p[pre + "mlp.fc2.weight"], p[pre + "mlp.fc2.bias"])
        if stage >= 1:
            features.append(_layer_norm(x, p, f"norm{stage}.").permute(2, 0, 1))
    return features


def _random_body(arch, seed):
    torch.manual_seed(seed)
    body = SwinBody(arch, (1, 2, 3), drop_path_rate=0.0).eval()
    with torch.no_grad():
        for name, param in body.named_parameters():  # large enough for bias and mask to matter
            param.normal_(0, 1.0 if name.endswith("relative_position_bias_table") else 0.3)
    return body


SMALL_W7 = SwinArchitecture(16, (2, 2, 2, 2), (1, 2, 2, 4), window_size=7)
SMALL_W12 = SwinArchitecture(16, (2, 2, 2, 2), (1, 1, 2, 2), window_size=12)


@pytest.mark.parametrize("arch, height, width", [
    (SMALL_W7, 224, 224),  # every map a multiple of the window
    (SMALL_W7, 120, 200),  # none is
    (SMALL_W7, 66, 90),  # not even a multiple of the patch; stride-32 map smaller than the window
    (SMALL_W12, 192, 192),  # 12x12 windows, multiples of 12 x 32 at strides 4 and 8
    (SMALL_W12, 200, 136),
])
def test_features_equal_the_official_computation(arch, height, width):
    body = _random_body(arch, seed=height + width)
    images = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = body(images)
        params = dict(body.state_dict())
        for b in range(2):
            expected = _reference_features(images[b], params, arch)
            for level, (got, want) in enumerate(zip(features, expected)):
                assert got[b].shape == want.shape, level
                diff = (got[b] - want).abs().max().item()
                assert diff <= 1e-4, f"stride {8 * 2 ** level}, image {b}: max abs difference {diff}"


def test_drop_path_grows_over_the_blocks_and_is_off_in_eval():
    body = SwinBody(SMALL_W7, (1, 2, 3), drop_path_rate=0.3)
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for stage in body.layers for block in stage.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.3, 8).tolist())
    images = torch.randn(1, 3, 64, 64)
    body.eval()
    with torch.no_grad():
        first, second = body(images)[-1], body(images)[-1]
        assert torch.equal(first, second)
        body.train()
        assert not torch.equal(body(images)[-1], first)
    with pytest.raises(ConfigError, match="drop_path_rate=1.5"):
        ModelConfig(backbone="swin_tiny", drop_path_rate=1.5)
