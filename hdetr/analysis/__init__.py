"""Analyses of trained H-DETR models (the notebooks import these; they re-define nothing).

- ``branch_outputs``: one-to-one and one-to-many predictions at inference.
- ``count_duplicates``, ``nms_detections``, ``branch_table``, ``rows_to_markdown``: duplicates
  and NMS per branch (paper Table 13); ``covering_predictions`` / ``draw_object_duplicates``: one
  object's predictions in each branch.
- ``read_report`` / ``plot_nms_gap``: the report of ``python -m hdetr.analysis.duplicates_report`` (Table 13 at
  this scale, the NMS gap over training); ``plot_over_training``: baseline and hybrid over training in one
  figure (AP without / with NMS, duplicates per object), from that report.
- ``batch_assignment_stats`` / ``dataset_assignment_stats``: positives per object, matched IoU
  and the score rank of matched queries, per group and layer.
- ``assignment_curves`` / ``eval_curve`` / ``plot_assignment_curves``: the assignment
  statistics the training loop logs, as curves.
- ``record_sampling`` / ``draw_query_sampling``: where a decoder query samples (reference point,
  locations per level and head, attention weights), captured from the op's inputs.
"""
from hdetr.lazy_exports import lazy_exports

_LAZY = {
    "hdetr.analysis.branches": ("BRANCHES", "branch_outputs"),
    "hdetr.analysis.duplicates": ("DuplicateCounts", "BranchRow", "count_duplicates", "nms_detections",
                                  "branch_table", "rows_to_markdown", "covering_predictions",
                                  "draw_object_duplicates"),
    "hdetr.analysis.assignment_stats": ("AssignmentStats", "batch_assignment_stats", "dataset_assignment_stats"),
    "hdetr.analysis.dynamics": ("assignment_curves", "eval_curve", "plot_assignment_curves"),
    "hdetr.analysis.sampling": ("LayerSampling", "record_sampling", "draw_query_sampling"),
    "hdetr.analysis.duplicates_report": ("read_report", "plot_nms_gap"),
    "hdetr.analysis.over_training": ("over_training_series", "plot_over_training"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, globals())
