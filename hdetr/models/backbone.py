"""Image backbones: torchvision ResNets with frozen BatchNorm, and the Joiner that adds positions.

Module names follow the official code (``backbone.0.body.layer2...``) so official
checkpoints load without renaming. The backbone returns C3-C5 (strides 8/16/32) when
the transformer uses several feature levels, C5 alone for a single level.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.models.batching import resize_mask
from hdetr.models.position_encoding import PositionEmbeddingSine
from hdetr.checkpoints.state_dict import load_exactly
from hdetr.checkpoints.pretrained import read_state_dict, strip_wrapper_prefix

RESNET_CHANNELS = {"resnet18": (128, 256, 512), "resnet18_half": (64, 128, 256), "resnet50": (512, 1024, 2048),
                   "resnet101": (512, 1024, 2048)}
_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def resnet18_half(norm_layer=FrozenBatchNorm2d) -> torchvision.models.ResNet:
    """ResNet-18 with every stage at half width (32-64-128-256 channels): a quarter of the parameters, so a
    whole CPU-scale detector stores in a few MB (the shipped reference checkpoints)."""
    from torchvision.models.resnet import BasicBlock

    class HalfWidthResNet18(torchvision.models.ResNet):
        def __init__(self) -> None:
            nn.Module.__init__(self)
            # the attributes torchvision's _make_layer reads
            self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = norm_layer, 32, 1, 1, 64
            self.conv1 = nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = norm_layer(32)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(BasicBlock, 32, 2)
            self.layer2 = self._make_layer(BasicBlock, 64, 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, 128, 2, stride=2)
            self.layer4 = self._make_layer(BasicBlock, 256, 2, stride=2)
            self.fc = nn.Identity()
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    return HalfWidthResNet18()


class ResNetBody(nn.Module):
    """The convolutional part of a torchvision ResNet (no pooling head), returning
    ``layer2..layer4`` (or ``layer4`` only) feature maps in stride order."""

    def __init__(self, resnet: nn.Module, return_layers: tuple[str, ...]):
        super().__init__()
        for name in _RESNET_STAGES:
            self.add_module(name, getattr(resnet, name))
        self.return_layers = return_layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for name in _RESNET_STAGES:
            x = getattr(self, name)(x)
            if name in self.return_layers:
                features.append(x)
        return features


class ResNetBackbone(nn.Module):
    """ResNet-18/50/101 with FrozenBatchNorm2d; the stem and layer1 are frozen unless
    ``freeze_stem`` is False. ``strides`` / ``num_channels`` describe the returned maps."""

    def __init__(self, name: str, multi_level: bool, dilation: bool, freeze_stem: bool,
                 pretrained: str | None = None):
        super().__init__()
        if dilation and name.startswith("resnet18"):
            raise UserError("ModelConfig.dilation=True needs a bottleneck ResNet (resnet50/resnet101); "
                            "resnet18's basic blocks cannot dilate")
        if name == "resnet18_half":
            resnet = resnet18_half()
        else:
            resnet = getattr(torchvision.models, name)(
                weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=FrozenBatchNorm2d)
        if pretrained:
            weights = strip_wrapper_prefix(read_state_dict(pretrained))
            weights = {k: v for k, v in weights.items()
                       if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
            resnet.fc = nn.Identity()
            load_exactly(resnet, weights, f"pretrained backbone weights {pretrained} ({name})")
        channels = RESNET_CHANNELS[name]
        if multi_level:
            self.strides, self.num_channels = [8, 16, 32], list(channels)
            return_layers = ("layer2", "layer3", "layer4")
        else:
            self.strides, self.num_channels = [32], [channels[-1]]
            return_layers = ("layer4",)
        if dilation:
            self.strides[-1] //= 2
        self.body = ResNetBody(resnet, return_layers)
        if freeze_stem:
            for param_name, param in self.body.named_parameters():
                if not param_name.startswith(("layer2", "layer3", "layer4")):
                    param.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B, 3, H, W] -> feature maps [B, C_i, H/s_i, W/s_i], stride order."""
        return self.body(images)


class Joiner(nn.Sequential):
    """``[0]`` the backbone, ``[1]`` the position encoding (the official module layout)."""

    def __init__(self, backbone: nn.Module, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.strides = backbone.strides
        self.num_channels = backbone.num_channels

    # Named views of the two children; the children themselves stay "0" and "1", the
    # official state-dict keys (backbone.0.body..., no parameters in backbone.1).
    @property
    def feature_extractor(self) -> nn.Module:
        """images [B, 3, H, W] -> feature maps [B, C_i, h_i, w_i], in stride order."""
        return self[0]

    @property
    def position_embedding(self) -> PositionEmbeddingSine:
        """padding mask [B, h, w] -> sine position encoding [B, hidden_dim, h, w]."""
        return self[1]

    def forward(self, images: torch.Tensor, mask: torch.Tensor):
        """images [B, 3, H, W], mask [B, H, W] (True = padding) -> (features [B, C_i, h_i, w_i],
        masks [B, h_i, w_i], positions [B, hidden_dim, h_i, w_i]), lists in stride order."""
        features = self.feature_extractor(images)
        masks = [resize_mask(mask, f.shape[-2:]) for f in features]
        positions = [self.position_embedding(m).to(f.dtype) for f, m in zip(features, masks)]
        return features, masks, positions


def build_backbone(config: ModelConfig) -> Joiner:
    multi_level = config.num_feature_levels > 1
    if config.backbone.startswith("resnet"):
        body = ResNetBackbone(config.backbone, multi_level, config.dilation, config.freeze_stem,
                              config.pretrained_backbone)
    elif config.backbone.startswith("swin"):
        from hdetr.models.swin_backbone import SwinBackbone

        body = SwinBackbone(config.backbone, multi_level, config.drop_path_rate, config.pretrained_backbone)
    else:
        raise UserError(f"ModelConfig.backbone={config.backbone!r}: no such backbone")
    return Joiner(body, PositionEmbeddingSine(config.hidden_dim // 2))
