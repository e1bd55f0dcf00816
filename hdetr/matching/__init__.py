"""Hybrid matching: matching costs, the Hungarian matcher, the supervision plan, assignment records.

- ``plan(config, epoch, num_epochs)`` -> list of ``Group`` (which outputs meet which targets, K, weight);
  ``num_epochs`` (``train.epochs``) only for the epoch scheme.
- ``HungarianMatcher`` matches many (layer, group) problems in one batched pass.
- ``AssignmentRecord`` / ``records_to_rows`` describe who matched whom (``record=True`` in the criterion).
"""
from hdetr.matching.costs import CostWeights, class_cost, cost_matrix, giou_cost, l1_cost
from hdetr.matching.hungarian import Assignment, HungarianMatcher, MatchProblem
from hdetr.matching.plan import ENCODER_LAYER, Group, decoder_positives, one2many_epochs, plan
from hdetr.matching.records import AssignmentRecord, records_to_rows
from hdetr.matching.targets import PaddedTargets, pad_targets

__all__ = [
    "Assignment", "AssignmentRecord", "CostWeights", "ENCODER_LAYER", "Group", "HungarianMatcher",
    "MatchProblem", "PaddedTargets", "class_cost", "cost_matrix", "decoder_positives", "giou_cost", "l1_cost", "one2many_epochs",
    "pad_targets", "plan", "records_to_rows",
]
