"""The predictions of each branch of a trained model: one-to-one, and one-to-many at inference.

In eval mode the model runs only its n one-to-one queries (the one-to-many branch is a
training aid). ``branch_outputs`` also runs the T one-to-many queries, as in training
(each group attending only within itself), by asking the model for both query groups;
the weights and every other module stay in eval mode.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from hdetr.errors import UserError

BRANCHES = ("one2one", "one2many")


@contextlib.contextmanager
def both_query_groups(model: nn.Module):
    """Within the block an eval-mode ``model`` runs its one-to-one and one-to-many queries."""
    if not getattr(model, "num_queries_one2many", 0):
        raise UserError(f"{type(model).__name__} has no one-to-many queries (scheme "
                        f"{getattr(getattr(model, 'config', None), 'scheme', '?')}); only hybrid_branch models have a "
                        f"separate one-to-many branch")
    sizes = [model.num_queries_one2one, model.num_queries_one2many]
    model.query_groups = lambda: list(sizes)  # instance attribute shadows the method
    try:
        yield model
    finally:
        del model.query_groups


@torch.no_grad()
def branch_outputs(model: nn.Module, images, branch: str) -> dict[str, torch.Tensor]:
    """``pred_logits`` [B, Q, C] and ``pred_boxes`` [B, Q, 4] (normalised cxcywh) of one branch at the
    last decoder layer, in eval mode; Q = n for ``one2one``, T for ``one2many``."""
    if branch not in BRANCHES:
        raise UserError(f"branch={branch!r} is not one of {', '.join(BRANCHES)}")
    was_training = model.training
    model.eval()
    try:
        if branch == "one2one":
            outputs = model(images)
            return {"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}
        with both_query_groups(model):
            outputs = model(images)
        return {"pred_logits": outputs["pred_logits_one2many"], "pred_boxes": outputs["pred_boxes_one2many"]}
    finally:
        model.train(was_training)
