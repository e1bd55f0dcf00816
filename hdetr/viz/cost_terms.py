"""The full matching problem of one image at one layer: every query against every object.

The criterion's assignment records keep the costs of the *matched* pairs only. To
show why the Hungarian algorithm picked those pairs one needs the whole
[Q, G] cost matrix, split into its three terms, and the option to solve it again
with the ground truth repeated a different number of times (K). This module
builds exactly that from a model's outputs, with the library's own cost functions
and ``HungarianMatcher`` (so what is shown is what training does).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hdetr.matching.costs import CostWeights, class_cost, giou_cost, l1_cost
from hdetr.matching.hungarian import HungarianMatcher
from hdetr.outputs import ONE2MANY, ONE2ONE, ModelOutput, check_group
from hdetr.viz.assignments import _layer_outputs

TERMS = ("cost_class", "cost_bbox", "cost_giou")


def query_offset(outputs: ModelOutput | dict, group: str) -> int:
    """The id of ``group``'s first query when ids run across groups, as the model orders its queries.

    With a hybrid branch the decoder holds n one-to-one queries followed by T one-to-many ones,
    so one-to-many query i has id n + i; without one (baseline, epoch, layer schemes) both groups
    use the same n queries and ids start at 0.
    """
    outputs = ModelOutput.from_official_dict(outputs)
    check_group(group)
    if group == ONE2MANY and outputs.logits[ONE2MANY].shape[2] > 0:
        return int(outputs.logits[ONE2ONE].shape[2])
    return 0


@dataclass(frozen=True)
class CostTerms:
    """The matching cost of every query against every object of one image at one layer.

    cost_class, cost_bbox, cost_giou: [Q, G] unweighted terms (focal class cost, L1, -GIoU).
    weights: the matcher's weights; ``total`` [Q, G] = sum of weight x term (what is minimised).
    scores: [Q] each query's best class probability; boxes: [Q, 4] its normalised cxcywh box.
    query_ids: [Q] ids unique across groups (see ``query_offset``).
    """

    cost_class: torch.Tensor
    cost_bbox: torch.Tensor
    cost_giou: torch.Tensor
    weights: CostWeights
    scores: torch.Tensor
    boxes: torch.Tensor
    query_ids: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return sum(self.weighted(term) for term in TERMS)

    def weighted(self, term: str) -> torch.Tensor:
        """[Q, G] one term (``TERMS``: named as the ``CostWeights`` field that weighs it) times its weight."""
        return getattr(self.weights, term) * getattr(self, term)

    @property
    def num_queries(self) -> int:
        return int(self.cost_class.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.cost_class.shape[1])


@torch.no_grad()
def cost_terms(outputs: ModelOutput | dict, target: dict, weights: CostWeights, *, image_index: int, layer: int,
               group: str) -> CostTerms:
    """The [Q, G] cost terms of ``group``'s queries at decoder ``layer`` against one image's objects.

    target: that image's dict with ``labels`` [G] and ``boxes`` [G, 4] (normalised cxcywh).
    """
    out = _layer_outputs(outputs, layer, group)
    logits = out["pred_logits"][image_index].detach().float().cpu()  # [Q, C]
    boxes = out["pred_boxes"][image_index].detach().float().cpu()  # [Q, 4]
    labels = target["labels"].long().cpu()
    gt = target["boxes"].float().cpu()
    prob = logits.sigmoid()
    # each query's probability of each object's class, [Q, G]: the class term only looks at that class
    cost_class = class_cost(prob[:, labels], weights.focal_alpha, weights.focal_gamma)
    cost_bbox = l1_cost(boxes[:, None, :], gt[None, :, :])
    cost_giou = giou_cost(boxes[:, None, :], gt[None, :, :])
    ids = torch.arange(boxes.shape[0]) + query_offset(outputs, group)
    return CostTerms(cost_class, cost_bbox, cost_giou, weights, prob.max(dim=-1).values, boxes, ids)


@dataclass(frozen=True)
class Match:
    """A solved matching of one image: positions [P] into the query set, the object [P] and copy [P] each
    matched (the ground truth was repeated ``k`` times; copy c of object g is column c * G + g)."""

    rows: torch.Tensor
    objects: torch.Tensor
    copies: torch.Tensor
    k: int

    def __len__(self) -> int:
        return len(self.rows)


@torch.no_grad()
def rematch(outputs: ModelOutput | dict, target: dict, weights: CostWeights, *, image_index: int, layer: int,
            group: str, k: int) -> Match:
    """Run the library's ``HungarianMatcher`` on already computed outputs against the ground truth repeated k times.

    One image, one layer; no forward pass. When k x G exceeds the Q queries only Q object copies
    can be matched (``linear_sum_assignment`` on a wide matrix), so ``len(match)`` is min(Q, k x G).
    """
    out = _layer_outputs(outputs, layer, group)
    one = {"pred_logits": out["pred_logits"][image_index:image_index + 1].detach(),
           "pred_boxes": out["pred_boxes"][image_index:image_index + 1].detach()}
    (assignment,) = HungarianMatcher(weights)(one, [target], repeat_k=k)
    num_objects = max(len(target["labels"]), 1)
    columns = assignment.target_indices
    order = assignment.query_indices.argsort()  # query order reads best in tables
    return Match(assignment.query_indices[order], (columns % num_objects)[order],
                 (columns // num_objects)[order], k)


def runner_ups(terms: CostTerms, match: Match, count: int = 2) -> list[list[int]]:
    """For each object, the positions [count] of the lowest-cost queries *not* matched to it.

    These are the queries that would have taken the object had its matched queries been
    absent: how close they come (their cost) tells how contested the match was.
    """
    total = terms.total
    result = []
    for g in range(terms.num_objects):
        taken = set(match.rows[match.objects == g].tolist())
        order = [int(q) for q in total[:, g].argsort().tolist() if int(q) not in taken]
        result.append(order[:count])
    return result
