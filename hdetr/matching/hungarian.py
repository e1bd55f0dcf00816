"""Hungarian matching of predictions to (possibly K-times repeated) ground truth.

The official code calls its matcher once per decoder layer and per group, each
call building a ``[B*Q, sum(K*G)]`` matrix over the whole batch and copying it to
the host. Here one call matches a list of problems (each: a stack of decoder
layers sharing one query set and one target set): every cost matrix is built in
a batched pass on the predictions' device, only over each image's own targets,
and only once per distinct target (the K copies of a repeated target have
identical columns, so they are tiled on the host). All matrices then travel to
the host in a single transfer and scipy's ``linear_sum_assignment`` solves each
(layer, image).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from hdetr.errors import UserError
from hdetr.matching.costs import CostWeights, cost_matrix
from hdetr.matching.targets import PaddedTargets, pad_targets


@dataclass(frozen=True)
class MatchProblem:
    """One query set over several decoder layers against one target set.

    logits: [L, B, Q, C] classification logits; boxes: [L, B, Q, 4] normalised cxcywh.
    targets: the ground truth; repeat_k: how many copies of it are matched (K, or 1).
    name: used in error messages ("one2many, layers 0-5").
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    targets: PaddedTargets
    repeat_k: int = 1
    name: str = "predictions"


class Assignment(NamedTuple):
    """Matches of one image at one layer: query_indices [P] and target_indices [P] (into the
    K-times repeated target list; target j is copy j // G of original target j % G).
    Unpacks like the official matcher's ``(index_i, index_j)`` tuples."""

    query_indices: torch.Tensor
    target_indices: torch.Tensor


class HungarianMatcher:
    """Minimum-cost one-to-one assignment between queries and (repeated) targets."""

    def __init__(self, weights: CostWeights):
        self.weights = weights

    @classmethod
    def from_config(cls, config) -> "HungarianMatcher":
        """Cost weights and focal parameters from a ModelConfig (set_cost_*, focal_alpha/gamma)."""
        return cls(CostWeights.from_config(config))

    @torch.no_grad()
    def cost_matrices(self, logits: torch.Tensor, boxes: torch.Tensor, targets: PaddedTargets) -> torch.Tensor:
        """logits [L, B, Q, C], boxes [L, B, Q, 4] -> costs [L, B, Q, G] against each image's own
        (padded) targets; columns past ``targets.sizes[b]`` are padding."""
        num_layers, batch, num_queries, _ = logits.shape
        if targets.max_size == 0:
            return logits.new_zeros(num_layers, batch, num_queries, 0)
        # Only the probabilities of the target classes are needed: gather before the sigmoid.
        label_index = targets.labels[None, :, None, :].expand(num_layers, batch, num_queries, -1)
        prob = logits.gather(-1, label_index).sigmoid()
        return cost_matrix(self.weights, prob, boxes, targets.boxes[None])

    @torch.no_grad()
    def match(self, problems: list[MatchProblem]) -> list[list[list[Assignment]]]:
        """Solve every problem; result[p][layer][image] is an Assignment.

        Cost matrices of all problems are concatenated and moved to the host at once.
        """
        costs = [self.cost_matrices(p.logits.detach(), p.boxes.detach(), p.targets) for p in problems]
        host = torch.cat([c.reshape(-1) for c in costs]).float().cpu().numpy() if costs else np.zeros(0)
        results, offset = [], 0
        for problem, cost in zip(problems, costs):
            matrices = host[offset : offset + cost.numel()].reshape(cost.shape)
            offset += cost.numel()
            results.append([
                [self._solve(matrices[layer, image], problem, layer, image) for image in range(cost.shape[1])]
                for layer in range(cost.shape[0])
            ])
        return results

    def __call__(self, outputs: dict, targets: list[dict] | PaddedTargets, repeat_k: int = 1) -> list[Assignment]:
        """Match one layer, as the official matcher: outputs has pred_logits [B, Q, C] and pred_boxes
        [B, Q, 4]; targets: per image ``labels`` [G] and ``boxes`` [G, 4] (or already padded)."""
        logits = outputs["pred_logits"]
        if not isinstance(targets, PaddedTargets):
            targets = pad_targets(targets, logits.shape[-1], logits.device)
        problem = MatchProblem(logits[None], outputs["pred_boxes"][None], targets, repeat_k)
        return self.match([problem])[0][0]

    def _solve(self, matrix: np.ndarray, problem: MatchProblem, layer: int, image: int) -> Assignment:
        size = problem.targets.sizes[image]
        cost = matrix[:, :size]
        if problem.repeat_k > 1:
            cost = np.tile(cost, (1, problem.repeat_k))
        if not np.isfinite(cost).all():
            raise UserError(
                f"matching {problem.name}: the cost matrix of image {image}, stacked layer {layer} has NaN or inf "
                f"entries; the model produced non-finite logits or boxes"
            )
        rows, cols = linear_sum_assignment(cost)
        return Assignment(torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
