"""Views of H-DETR's assignments, supervision plans and detections.

Static (matplotlib, renders anywhere, used in CI):
``draw_assignments``, ``draw_assignments_by_layer``, ``draw_models_side_by_side``, ``draw_cost_heatmap``,
``draw_detections``, ``draw_detections_side_by_side``,
``draw_plan``.
Interactive (plotly + ipywidgets, for JupyterLab): ``assignment_figure``, ``AssignmentExplorer``,
``MatchingWalkthrough`` (the full cost matrix of one image and layer, re-matched live for any K).
Matching problems: ``cost_terms`` (every query x every object, term by term), ``rematch``, ``runner_ups``.
Tables: ``query_rows`` (assignments query by query), ``plan_grid`` / ``plan_markdown``.
"""
from hdetr.viz.assignments import (GROUPS, layers_of, matched_boxes, predicted_boxes, predicted_scores,
                                   query_rows, select_records)
from hdetr.viz.cost_terms import CostTerms, cost_terms, query_offset, rematch, runner_ups
from hdetr.viz.image import boxes_to_pixels, to_display
from hdetr.viz.interactive import AssignmentExplorer, assignment_figure, rows_to_html
from hdetr.viz.plan import describe_groups, draw_plan, plan_grid, plan_markdown
from hdetr.viz.static import (draw_assignments, draw_assignments_by_layer, draw_cost_heatmap,
                              draw_detections, draw_detections_side_by_side, draw_models_side_by_side)
from hdetr.viz.walkthrough import MatchingWalkthrough

__all__ = [
    "AssignmentExplorer", "CostTerms", "GROUPS", "MatchingWalkthrough", "assignment_figure", "boxes_to_pixels",
    "cost_terms", "describe_groups", "draw_assignments", "draw_assignments_by_layer", "draw_cost_heatmap",
    "draw_detections", "draw_detections_side_by_side", "draw_models_side_by_side", "draw_plan", "layers_of", "matched_boxes", "plan_grid", "plan_markdown", "predicted_boxes",
    "predicted_scores", "query_offset", "query_rows", "rematch", "rows_to_html", "runner_ups", "select_records",
    "to_display"
]
