"""Interactive views: a plotly figure of one image's assignments and a query-by-query explorer.

``assignment_figure`` draws the image, the ground truth and the matched predictions
of one layer; hovering a box shows its query id, layer, group, copy, target, the
three matching cost terms and the IoU with its target. ``AssignmentExplorer``
wraps it in ipywidgets (image, layer, group, query) so one can step through the
one-to-one and one-to-many assignments in JupyterLab.
"""
from __future__ import annotations

import html
from typing import Any, Sequence

import plotly.graph_objects as go
import torch

from hdetr.errors import UserError
from hdetr.outputs import ENCODER_LAYER
from hdetr.viz.assignments import (COST_FIELDS, GROUPS, groups_of, last_decoder_layer, layers_of,
                                   matched_boxes, query_rows, select_records)
from hdetr.viz.image import boxes_to_pixels, image_size, to_uint8
from hdetr.viz.static import COLORS

ALL = "all"
# line style as well as colour tells the three apart on any synthetic object colour (static.LINESTYLES)
PLOTLY_DASH = {"gt": "solid", "one2one": "dot", "one2many": "dash"}


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _outline(boxes) -> tuple[list, list]:
    """Closed outlines of xyxy boxes as one polyline, boxes separated by None (5 points + gap each)."""
    xs: list = []
    ys: list = []
    for x0, y0, x1, y1 in boxes:
        xs += [x0, x1, x1, x0, x0, None]
        ys += [y0, y0, y1, y1, y0, None]
    return xs, ys


def _hover(row: dict) -> str:
    return (f"query {row['query']} ({row['group']}, layer {row['layer']})<br>"
            f"target {row['target']}, copy {row['copy']}<br>"
            + "<br>".join(f"{name} {row[name]:.3f}" for name in COST_FIELDS))


def assignment_figure(image: torch.Tensor, targets: dict, records: Sequence[Any], outputs: dict, *,
                      image_index: int = 0, layer: int | None = None, groups: Sequence[str] = GROUPS,
                      query: int | None = None, highlight_group: str | None = None,
                      class_names: Sequence[str] | None = None) -> go.Figure:
    """Plotly figure of one image at one layer: image, GT boxes, matched predictions per group.

    Traces, in order: the image; the ground truth (one trace, all boxes); one trace per
    requested group that has matches (all its matched boxes, hover per box); and, when
    ``query`` is given, a thick outline of that query's box(es) in ``highlight_group``
    (default: the first group that matched it).
    """
    height, width = image_size(image)
    image_records = select_records(records, image_index=image_index)
    if layer is None:
        layer = last_decoder_layer(image_records)
    fig = go.Figure()
    fig.add_trace(go.Image(z=to_uint8(image), hoverinfo="skip", name="image"))
    gt = boxes_to_pixels(targets["boxes"], height, width).tolist()
    labels = targets.get("labels", torch.zeros(len(gt), dtype=torch.long)).tolist()
    xs, ys = _outline(gt)
    gt_text = []
    for i, label in enumerate(labels):
        name = class_names[label] if class_names else str(label)
        gt_text += [f"target {i}: class {name}"] * 5 + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="ground truth", text=gt_text, hoverinfo="text",
                             line=dict(color=COLORS["gt"], width=3, dash=PLOTLY_DASH["gt"])))
    highlight = None
    for group in groups:
        group_records = select_records(image_records, layer=layer, group=group)
        rows = query_rows(group_records)
        if not rows:
            continue
        by_query = {}
        for record, boxes in zip(group_records, matched_boxes(group_records, outputs)):
            for q, box in zip(record.query_indices.tolist(), boxes_to_pixels(boxes, height, width).tolist()):
                by_query[int(q)] = box
        boxes = [by_query[row["query"]] for row in rows]
        xs, ys = _outline(boxes)
        text = [t for row in rows for t in [_hover(row)] * 5 + [None]]
        dash = PLOTLY_DASH[group]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=group, text=text, hoverinfo="text",
                                 line=dict(color=COLORS[group], width=1.5, dash=dash)))
        if query is not None and query in by_query and highlight is None and highlight_group in (None, group):
            row = next(r for r in rows if r["query"] == query)
            highlight = (group, by_query[query], row)
    if highlight is not None:
        # the selected query and its target in two styles: the query solid, its target dash-dot
        group, box, row = highlight
        txs, tys = _outline([gt[row["target"]]])
        fig.add_trace(go.Scatter(x=txs, y=tys, mode="lines", name=f"target {row['target']} of query {query}",
                                 text=[f"target {row['target']} of query {query}"] * 6, hoverinfo="text",
                                 line=dict(color="#ffd700", width=3, dash="dashdot")))
        xs, ys = _outline([box])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"query {query}", text=[_hover(row)] * 6,
                                 hoverinfo="text", line=dict(color="#ffd700", width=4)))
    where = "encoder proposals" if layer == ENCODER_LAYER else f"decoder layer {layer}"
    # the legend beside the image, so it never covers boxes
    fig.update_layout(title=f"image {image_index}, {where}", width=720, height=520,
                      margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top"))
    fig.update_xaxes(range=[0, width], visible=False)
    fig.update_yaxes(range=[height, 0], visible=False, scaleanchor="x")
    return fig


def rows_to_html(rows: Sequence[dict], highlight_query: int | None = None) -> str:
    """An HTML table of ``query_rows`` output (the highlighted query in bold)."""
    if not rows:
        return "<p>no matches at this layer</p>"
    head = ["group", "query", "target", "copy", *COST_FIELDS]
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = []
        for h in head:
            value = row[h]
            cells.append(f"{value:.3f}" if isinstance(value, float) else html.escape(str(value)))
        style = " style='font-weight:bold;background:#fff3b0'" if row["query"] == highlight_query else ""
        lines.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(lines + ["</table>"])


class AssignmentExplorer:
    """Step through one-to-one and one-to-many assignments image by image, layer by layer, query by query.

    Args:
        images: the batch's normalised images (list of [3, H, W], or one [3, H, W]).
        targets: the batch's target dicts (``boxes`` normalised cxcywh, ``labels``).
        records: ``criterion.last_assignments`` after ``criterion(outputs, targets, record=True)``.
        outputs: the model outputs the criterion saw.

    ``.widget`` is the ipywidgets box (controls, figure, cost table) to display in
    JupyterLab; ``.figure`` is the current plotly figure and ``.rows`` the current
    table rows. Changing a control (or calling ``.select(...)``) rebuilds both.
    """

    def __init__(self, images, targets, records: Sequence[Any], outputs: dict, *,
                 class_names: Sequence[str] | None = None):
        import ipywidgets as widgets

        self.images = [images] if isinstance(images, torch.Tensor) and images.dim() == 3 else list(images)
        self.targets = [targets] if isinstance(targets, dict) else list(targets)
        if len(self.images) != len(self.targets):
            raise UserError(f"AssignmentExplorer: {len(self.images)} images but {len(self.targets)} target dicts")
        self.records = list(records)
        if not self.records:
            raise UserError("AssignmentExplorer: no assignment records; run the criterion with record=True first")
        self.outputs = outputs
        self.class_names = class_names
        layers = layers_of(self.records)
        self._image = widgets.IntSlider(value=0, min=0, max=len(self.images) - 1, description="image")
        self._layer = widgets.Dropdown(
            options=[("encoder" if l == ENCODER_LAYER else f"decoder {l}", l) for l in layers], value=layers[-1],
            description="layer")
        self._group = widgets.Dropdown(options=[ALL, *groups_of(self.records)], value=ALL, description="group")
        self._query = widgets.Dropdown(options=[ALL], value=ALL, description="query")
        self._plot = widgets.Output()
        self._table = widgets.HTML()
        self._updating = False
        for control in (self._image, self._layer, self._group):
            control.observe(self._on_selection, names="value")
        self._query.observe(self._on_query, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self._image, self._layer]), widgets.HBox([self._group, self._query]),
            self._plot, self._table,
        ])
        self.figure: go.Figure | None = None
        self.rows: list[dict] = []
        self._on_selection()

    @property
    def state(self) -> dict:
        """The current selection: image_index, layer, group ('all' or a group), query ('all' or an id)."""
        return {"image_index": self._image.value, "layer": self._layer.value, "group": self._group.value,
                "query": self._query.value}

    def select(self, *, image_index: int | None = None, layer: int | None = None, group: str | None = None,
               query: int | str | None = None) -> "AssignmentExplorer":
        """Set controls programmatically (as a user would); unknown values raise UserError."""
        for control, value, name in ((self._image, image_index, "image_index"), (self._layer, layer, "layer"),
                                     (self._group, group, "group"), (self._query, query, "query")):
            if value is None:
                continue
            allowed = ([*range(control.min, control.max + 1)] if control is self._image
                       else [o[1] if isinstance(o, tuple) else o for o in control.options])
            if value not in allowed:
                raise UserError(f"AssignmentExplorer.select: {name}={value!r} is not one of {allowed}")
            control.value = value
        return self

    def _groups(self) -> Sequence[str]:
        return GROUPS if self._group.value == ALL else (self._group.value,)

    def _on_selection(self, _change=None) -> None:
        records = select_records(self.records, image_index=self._image.value, layer=self._layer.value)
        rows = [r for r in query_rows(records) if r["group"] in self._groups()]
        self._updating = True
        try:
            self._query.options = [ALL, *sorted({r["query"] for r in rows})]
            self._query.value = ALL
        finally:
            self._updating = False
        self._render()

    def _on_query(self, _change=None) -> None:
        if not self._updating:
            self._render()

    def _render(self) -> None:
        image_index = self._image.value
        query = None if self._query.value == ALL else int(self._query.value)
        groups = self._groups()
        self.figure = assignment_figure(
            self.images[image_index], self.targets[image_index], self.records, self.outputs,
            image_index=image_index, layer=self._layer.value, groups=groups, query=query,
            class_names=self.class_names)
        records = select_records(self.records, image_index=image_index, layer=self._layer.value)
        self.rows = [r for r in query_rows(records) if r["group"] in groups
                     and (query is None or r["query"] == query)]
        self._table.value = rows_to_html(self.rows, highlight_query=query)
        if _in_ipython():  # outside a kernel (tests, scripts) there is nowhere to render to
            from IPython.display import display

            self._plot.clear_output(wait=True)
            with self._plot:
                display(self.figure)
