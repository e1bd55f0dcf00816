"""The predictions of each branch of a trained model: one-to-one, and one-to-many at inference.

In eval mode the model runs only its n one-to-one queries (the one-to-many branch is a
training aid). ``branch_outputs`` also runs the T one-to-many queries, as in training
(each group attending only within itself), with ``model(images, groups=QUERY_GROUPS)``;
the weights and every other module stay in eval mode.
"""
from __future__ import annotations

import torch
from torch import nn

from hdetr.errors import UserError
from hdetr.outputs import ONE2MANY, ONE2ONE, QUERY_GROUPS

BRANCHES = QUERY_GROUPS


@torch.no_grad()
def branch_outputs(model: nn.Module, images, branch: str) -> dict[str, torch.Tensor]:
    """``pred_logits`` [B, Q, C] and ``pred_boxes`` [B, Q, 4] (normalised cxcywh) of one branch at the
    last decoder layer, in eval mode; Q = n for ``one2one``, T for ``one2many``."""
    if branch not in BRANCHES:
        raise UserError(f"branch={branch!r} is not one of {', '.join(BRANCHES)}")
    if branch == ONE2MANY and not getattr(model, "num_queries_one2many", 0):
        raise UserError(f"{type(model).__name__} has no one-to-many queries (scheme "
                        f"{getattr(getattr(model, 'config', None), 'scheme', '?')}); only hybrid_branch models have a "
                        f"separate one-to-many branch")
    was_training = model.training
    model.eval()
    try:
        outputs = model(images, groups=QUERY_GROUPS if branch == ONE2MANY else (ONE2ONE,))
        return outputs.last(branch)
    finally:
        model.train(was_training)
