"""Analyses of trained H-DETR models (the notebooks import these; they re-define nothing).

- ``branch_outputs`` / ``both_query_groups``: one-to-one and one-to-many predictions at inference.
- ``count_duplicates``, ``nms_detections``, ``branch_table``, ``rows_to_markdown``: duplicates
  and NMS per branch (paper Table 13); ``covering_predictions`` / ``draw_object_duplicates``: one
  object's predictions in each branch.
- ``read_report`` / ``plot_nms_gap``: the report of ``python -m hdetr.analysis.report`` (Table 13 at
  this scale, the NMS gap over training).
- ``batch_assignment_stats`` / ``dataset_assignment_stats``: positives per object, matched IoU
  and the score rank of matched queries, per group and layer.
- ``assignment_curves`` / ``eval_curve`` / ``plot_assignment_curves``: the assignment
  statistics the training loop logs, as curves.
- ``record_sampling`` / ``draw_query_sampling``: where a decoder query samples (reference point,
  locations per level and head, attention weights), captured from the op's inputs.
"""
from hdetr.lazy_exports import lazy_exports

_LAZY = {
    "BRANCHES": "hdetr.analysis.branches",
    "branch_outputs": "hdetr.analysis.branches",
    "both_query_groups": "hdetr.analysis.branches",
    "DuplicateCounts": "hdetr.analysis.duplicates",
    "BranchRow": "hdetr.analysis.duplicates",
    "count_duplicates": "hdetr.analysis.duplicates",
    "nms_detections": "hdetr.analysis.duplicates",
    "branch_table": "hdetr.analysis.duplicates",
    "rows_to_markdown": "hdetr.analysis.duplicates",
    "covering_predictions": "hdetr.analysis.duplicates",
    "draw_object_duplicates": "hdetr.analysis.duplicates",
    "read_report": "hdetr.analysis.report",
    "plot_nms_gap": "hdetr.analysis.report",
    "AssignmentStats": "hdetr.analysis.assignment_stats",
    "batch_assignment_stats": "hdetr.analysis.assignment_stats",
    "dataset_assignment_stats": "hdetr.analysis.assignment_stats",
    "assignment_curves": "hdetr.analysis.dynamics",
    "eval_curve": "hdetr.analysis.dynamics",
    "plot_assignment_curves": "hdetr.analysis.dynamics",
    "LayerSampling": "hdetr.analysis.sampling",
    "record_sampling": "hdetr.analysis.sampling",
    "draw_query_sampling": "hdetr.analysis.sampling",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
__all__ = list(_LAZY)
