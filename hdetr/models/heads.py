"""Prediction heads (class logits, box deltas), one per decoder layer plus the proposal head.

Initialisation follows the official code so that training from scratch behaves alike:
class bias at the prior -log((1 - 0.01) / 0.01); box head's last layer zero, with its
w/h bias at -2 for the first head (small initial boxes) except in two-stage, where the
proposals already carry a size and every w/h bias is 0.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

PRIOR_PROB = 0.01


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + dims, dims + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def build_heads(hidden_dim: int, num_classes: int, num_heads: int, with_box_refine: bool,
                two_stage: bool) -> tuple[nn.ModuleList, nn.ModuleList]:
    """(class heads, box heads), ``num_heads`` each: independent copies with box refinement,
    one shared head repeated otherwise (as the official code)."""
    class_head = nn.Linear(hidden_dim, num_classes)
    box_head = MLP(hidden_dim, hidden_dim, 4, 3)
    with torch.no_grad():
        class_head.bias.fill_(-math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        box_head.layers[-1].weight.zero_()
        box_head.layers[-1].bias.zero_()
    if with_box_refine:
        class_heads = nn.ModuleList([copy.deepcopy(class_head) for _ in range(num_heads)])
        box_heads = nn.ModuleList([copy.deepcopy(box_head) for _ in range(num_heads)])
    else:
        class_heads = nn.ModuleList([class_head] * num_heads)
        box_heads = nn.ModuleList([box_head] * num_heads)
    with torch.no_grad():
        box_heads[0].layers[-1].bias[2:] = -2.0
        if two_stage:
            for head in box_heads:
                head.layers[-1].bias[2:] = 0.0
    return class_heads, box_heads
