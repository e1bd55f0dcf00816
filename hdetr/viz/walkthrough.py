"""A matching walk-through: one image, one decoder layer, the whole cost matrix and its Hungarian solution.

``MatchingWalkthrough`` shows, for the chosen model, image, layer and matching
(one-to-one against the G objects, or one-to-many against the objects repeated K
times):

- ``cost_figure``: the full query x object cost matrix (every query of the group, not
  only the matched ones) and its three weighted terms on ONE colour scale, the
  Hungarian solution marked (circles) and each object's runner-up queries (crosses);
- ``figure``: the image with the ground truth, the positives, optionally every
  unmatched query with its score, and the selected query;
- text: the number of positives, each object's matched and runner-up queries, the
  selected query's costs.

Changing K re-runs the library's matcher on the outputs computed once at construction
(no forward pass). Query ids are unique across groups, in the model's order (one-to-one
0..n-1, one-to-many n..n+T-1), so the selected query stays the same query when the
layer changes. ``select(...)``, ``next_query()``, ``previous_query()`` and ``state``
drive it from code (tests, notebooks); ``widget`` is the ipywidgets box for JupyterLab.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from hdetr.errors import UserError
from hdetr.matching.costs import CostWeights
from hdetr.matching.hungarian import HungarianMatcher
from hdetr.outputs import ONE2MANY, ONE2ONE, QUERY_GROUPS, ModelOutput
from hdetr.viz.cost_terms import TERMS, CostTerms, Match, cost_terms, rematch, runner_ups
from hdetr.viz.image import boxes_to_pixels, image_size, padded_extent, to_uint8
from hdetr.viz.interactive import PLOTLY_DASH, _in_ipython, _outline
from hdetr.viz.static import COLORS

TERM_LABELS = {"cost_class": "class (focal)", "cost_bbox": "L1", "cost_giou": "GIoU cost = −GIoU"}
SELECTED = "#ffd700"
UNMATCHED = "#b0b0b0"
FONT = dict(size=14)
NEGATIVE_COSTS_HTML = (
    "<p style='font-size:14px;max-width:70em'><b>Why are some costs negative?</b> The matcher minimises "
    "<i>cost = w<sub>class</sub>·class + w<sub>L1</sub>·L1 + w<sub>GIoU</sub>·(−GIoU)</i>. The focal-style "
    "class cost is α(1−p)<sup>γ</sup>(−log p) − (1−α)p<sup>γ</sup>(−log(1−p)) at the object's class: it "
    "<b>decreases as the probability p grows</b> and turns negative for a confident query. The GIoU cost is "
    "<b>−GIoU</b>, so overlap lowers it (−1 for a perfect box). Only L1 is never negative. Blue = cheap "
    "(a good candidate), red = expensive.</p>")


@dataclass(frozen=True)
class View:
    """Everything drawn for one selection: the cost terms, the matching and the runner-ups."""

    terms: CostTerms
    match: Match
    runner_ups: list[list[int]]
    group: str


class MatchingWalkthrough:
    """Step through the Hungarian matching of one image and layer, model by model, query by query.

    Args:
        images: normalised images (list of [3, H, W]).
        targets: their target dicts (``labels`` [G], ``boxes`` [G, 4] normalised cxcywh).
        outputs: model name -> that model's ``ModelOutput`` on ``images`` with both query
            groups (``model(images, groups=QUERY_GROUPS)``), computed once.
        weights: model name -> its matcher's ``CostWeights`` (``set_cost_*``, focal alpha/gamma).
        k: model name -> its K (``k_one2many``): the slider's start value.
        class_names: label -> name, for the object labels.
        max_k: the K slider's maximum.

    ``MatchingWalkthrough.from_models(models, images, targets)`` runs each model once and
    reads weights and K from its config.
    """

    def __init__(self, images: Sequence[torch.Tensor], targets: Sequence[dict], outputs: Mapping[str, ModelOutput],
                 weights: Mapping[str, CostWeights], *, k: Mapping[str, int] | None = None,
                 class_names: Sequence[str] | None = None, max_k: int = 6, runner_up_count: int = 2):
        import ipywidgets as widgets

        self.images, self.targets = list(images), list(targets)
        if len(self.images) != len(self.targets) or not self.images:
            raise UserError(f"MatchingWalkthrough: {len(self.images)} images but {len(self.targets)} target dicts")
        if not outputs or set(outputs) != set(weights):
            raise UserError(f"MatchingWalkthrough: outputs for {sorted(outputs)} but weights for {sorted(weights)}")
        self.outputs = {name: ModelOutput.from_official_dict(out) for name, out in outputs.items()}
        self.weights = dict(weights)
        self.class_names = class_names
        self.runner_up_count = runner_up_count
        names = list(self.outputs)
        first = self.outputs[names[0]]
        start_k = (k or {}).get(names[-1], 1)
        layers = list(range(first.num_layers(ONE2ONE)))

        self._model = widgets.ToggleButtons(options=names, value=names[-1], description="model")
        self._image = widgets.Dropdown(options=list(range(len(self.images))), value=0, description="image")
        self._layer = widgets.Dropdown(options=[(f"decoder {l}", l) for l in layers], value=layers[-1],
                                       description="layer")
        self._matching = widgets.ToggleButtons(
            options=[("one-to-one: against G", ONE2ONE), ("one-to-many: against K×G", ONE2MANY)], value=ONE2ONE,
            description="matching", style={"button_width": "auto"})
        self._k = widgets.IntSlider(value=max(1, min(start_k, max_k)), min=1, max=max_k, description="K",
                                    continuous_update=False)
        self._unmatched = widgets.Checkbox(value=False, description="draw unmatched queries with their scores",
                                           style={"description_width": "initial"},
                                           layout=widgets.Layout(width="auto"))
        self._previous = widgets.Button(description="◀ previous query")
        self._next = widgets.Button(description="next query ▶")
        self._query_label = widgets.HTML()
        self._query_label.add_class("hdetr-query")
        self._positives = widgets.HTML()
        self._positives.add_class("hdetr-positives")
        self._details = widgets.HTML()
        self._plot = widgets.Output()
        self._matrix = widgets.Output()
        self._query: int | None = None
        self._quiet = False
        for control in (self._model, self._image, self._layer, self._matching, self._k, self._unmatched):
            control.observe(self._on_change, names="value")
        self._previous.on_click(lambda _button: self.previous_query())
        self._next.on_click(lambda _button: self.next_query())
        self.widget = widgets.VBox([
            widgets.HBox([self._model, self._image, self._layer]),
            widgets.HBox([self._matching, self._k]),
            self._positives,
            widgets.HBox([self._previous, self._next, self._query_label, self._unmatched]),
            widgets.HBox([self._plot, self._details]),
            widgets.HTML(NEGATIVE_COSTS_HTML),
            self._matrix,
        ])
        self.figure: go.Figure | None = None
        self.cost_figure: go.Figure | None = None
        self.view: View | None = None
        self._render()

    @classmethod
    def from_models(cls, models: Mapping[str, torch.nn.Module], images, targets, **kwargs) -> "MatchingWalkthrough":
        """Run every model once on ``images`` with both query groups; weights and K from each model's config."""
        outputs, weights, k = {}, {}, {}
        for name, model in models.items():
            # both groups where the model has a one-to-many branch; a baseline has its one-to-one queries only
            groups = QUERY_GROUPS if getattr(model, "num_queries_one2many", 0) > 0 else (ONE2ONE,)
            with torch.no_grad():
                outputs[name] = model(list(images), groups=groups)
            weights[name] = HungarianMatcher.from_config(model.config).weights
            k[name] = int(model.config.k_one2many)
        return cls(images, targets, outputs, weights, k=k, **kwargs)

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The selection: model, image_index, layer, matching ('one2one' | 'one2many'), k (effective:
        1 for one-to-one), query (id unique across groups), show_unmatched, positives (matched pairs)."""
        return {"model": self._model.value, "image_index": self._image.value, "layer": self._layer.value,
                "matching": self._matching.value, "k": self._effective_k(), "query": self._query,
                "show_unmatched": self._unmatched.value, "positives": len(self.view.match)}

    @property
    def query_ids(self) -> list[int]:
        """The ids of the queries the current matching uses (its whole query set)."""
        return self.view.terms.query_ids.tolist()

    def select(self, *, model: str | None = None, image_index: int | None = None, layer: int | None = None,
               matching: str | None = None, k: int | None = None, query: int | None = None,
               show_unmatched: bool | None = None) -> "MatchingWalkthrough":
        """Set controls as a user would (one redraw at the end); values outside the controls raise UserError."""
        self._quiet = True
        try:
            for control, value, name in ((self._model, model, "model"), (self._image, image_index, "image_index"),
                                         (self._layer, layer, "layer"), (self._matching, matching, "matching")):
                if value is None:
                    continue
                allowed = [o[1] if isinstance(o, tuple) else o for o in control.options]
                if value not in allowed:
                    raise UserError(f"MatchingWalkthrough.select: {name}={value!r} is not one of {allowed}")
                control.value = value
            if k is not None:
                if not self._k.min <= k <= self._k.max:
                    raise UserError(f"MatchingWalkthrough.select: k={k} is outside [{self._k.min}, {self._k.max}]")
                self._k.value = k
            if show_unmatched is not None:
                self._unmatched.value = bool(show_unmatched)
        finally:
            self._quiet = False
        self._render(query=query)
        return self

    def next_query(self) -> "MatchingWalkthrough":
        """Select the next query id of the current query set (wrapping round)."""
        return self._step(+1)

    def previous_query(self) -> "MatchingWalkthrough":
        """Select the previous query id of the current query set (wrapping round)."""
        return self._step(-1)

    # -- internals ---------------------------------------------------------------------------
    def _step(self, delta: int) -> "MatchingWalkthrough":
        ids = self.query_ids
        position = ids.index(self._query) if self._query in ids else 0
        self._render(query=ids[(position + delta) % len(ids)])
        return self

    def _effective_k(self) -> int:
        return self._k.value if self._matching.value == ONE2MANY else 1

    def _on_change(self, _change=None) -> None:
        if not self._quiet:
            self._render()

    def _compute(self) -> View:
        name, image_index = self._model.value, self._image.value
        outputs, weights, target = self.outputs[name], self.weights[name], self.targets[image_index]
        group = self._matching.value
        terms = cost_terms(outputs, target, weights, image_index=image_index, layer=self._layer.value, group=group)
        match = rematch(outputs, target, weights, image_index=image_index, layer=self._layer.value, group=group,
                        k=self._effective_k())
        return View(terms, match, runner_ups(terms, match, self.runner_up_count), group)

    def _render(self, query: int | None = None) -> None:
        self._k.disabled = self._matching.value != ONE2MANY
        self.view = self._compute()
        ids = self.query_ids
        if query is not None:
            if query not in ids:
                raise UserError(f"MatchingWalkthrough: query {query} is not in this query set ({ids[0]}..{ids[-1]})")
            self._query = query
        elif self._query not in ids:
            # a new query set (other group): start at the query matched to object 0
            matched = self.view.match.rows[self.view.match.objects == 0]
            self._query = ids[int(matched.min())] if len(matched) else ids[0]
        self.figure = self._image_figure()
        self.cost_figure = self._cost_figure()
        self._positives.value = self._positives_html()
        self._details.value = self._details_html()
        self._query_label.value = f"<b style='font-size:15px'>query {self._query}</b>"
        if _in_ipython():  # outside a kernel (tests, scripts) there is nowhere to render to
            from IPython.display import display

            for output, figure in ((self._plot, self.figure), (self._matrix, self.cost_figure)):
                output.clear_output(wait=True)
                with output:
                    display(figure)

    def _object_name(self, g: int) -> str:
        label = int(self.targets[self._image.value]["labels"][g])
        return f"object {g}: {self.class_names[label]}" if self.class_names else f"object {g}"

    def _positives_html(self) -> str:
        view, k = self.view, self._effective_k()
        num_objects, num_queries = view.terms.num_objects, view.terms.num_queries
        ids = view.terms.query_ids
        shared = self.outputs[self._model.value].logits[ONE2MANY].shape[2] == 0 and view.group == ONE2MANY
        note = (" (this model has no one-to-many queries: its one-to-one queries are matched against the K copies)"
                if shared else "")
        capped = f" — capped by the {num_queries} queries" if k * num_objects > num_queries else ""
        return (f"<p style='font-size:16px'><b>positives: <span class='hdetr-positives-count'>{len(view.match)}"
                f"</span></b> = K × G = {k} × {num_objects}{capped}; queries {int(ids[0])}..{int(ids[-1])}{note}</p>")

    def _details_html(self) -> str:
        view = self.view
        terms, match, ids = view.terms, view.match, view.terms.query_ids
        total = terms.total
        lines = ["<div style='font-size:14px;padding-left:1em'>", "<b>Hungarian solution and runner-ups</b>",
                 "<table><tr><th>object</th><th>matched query (copy): cost</th><th>runner-ups: cost</th></tr>"]
        for g in range(terms.num_objects):
            rows = match.rows[match.objects == g].tolist()
            copies = match.copies[match.objects == g].tolist()
            matched = ", ".join(f"{int(ids[r])} (c{c}): {float(total[r, g]):.2f}" for r, c in zip(rows, copies))
            others = []
            for r in view.runner_ups[g]:
                elsewhere = match.objects[match.rows == r].tolist()
                taken = f" [matched to object {elsewhere[0]}]" if elsewhere else ""
                others.append(f"{int(ids[r])}: {float(total[r, g]):.2f}{taken}")
            lines.append(f"<tr><td>{html.escape(self._object_name(g))}</td><td>{matched}</td>"
                         f"<td>{'; '.join(others)}</td></tr>")
        lines.append("</table>")
        lines.append(self._query_html())
        return "\n".join(lines + ["</div>"])

    def _query_html(self) -> str:
        view = self.view
        terms, match = view.terms, view.match
        row = self.query_ids.index(self._query)
        w = terms.weights
        where = match.objects[match.rows == row].tolist()
        status = (f"matched to {html.escape(self._object_name(where[0]))} (copy {match.copies[match.rows == row][0]})"
                  if where else "unmatched (a negative: trained towards 'no object')")
        g = where[0] if where else int(terms.total[row].argmin())
        return (f"<p><b>query {self._query}</b>, score {float(terms.scores[row]):.2f}: {status}.<br>"
                f"against {html.escape(self._object_name(g))}: {w.cost_class:g}×{float(terms.cost_class[row, g]):.2f} "
                f"+ {w.cost_bbox:g}×{float(terms.cost_bbox[row, g]):.2f} + {w.cost_giou:g}×"
                f"{float(terms.cost_giou[row, g]):.2f} = <b>{float(terms.total[row, g]):.2f}</b></p>")

    def _image_figure(self) -> go.Figure:
        """The image, its ground truth, the positives, (optionally) the unmatched queries, the selected query."""
        image = self.images[self._image.value]
        target = self.targets[self._image.value]
        height, width = image_size(image)
        view = self.view
        ids = view.terms.query_ids.tolist()
        pred = boxes_to_pixels(view.terms.boxes, height, width)  # [Q, 4] xyxy pixels
        gt = boxes_to_pixels(target["boxes"], height, width)  # [G, 4]
        fig = go.Figure()
        fig.add_trace(go.Image(z=to_uint8(image), hoverinfo="skip", name="image"))
        drawn = [gt]
        if self._unmatched.value:
            rows = [r for r in range(len(ids)) if r not in set(view.match.rows.tolist())]
            xs, ys = _outline(pred[rows])
            text = [t for r in rows for t in [f"query {ids[r]} (unmatched), score {float(view.terms.scores[r]):.2f}"] * 5
                    + [None]]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="unmatched queries (hover: score)", text=text,
                                     hoverinfo="text", line=dict(color=UNMATCHED, width=1)))
            # the best-scoring unmatched queries carry their score on the image; the rest on hover
            best = sorted(rows, key=lambda r: -float(view.terms.scores[r]))[:6]
            fig.add_trace(go.Scatter(x=[pred[r][0] for r in best], y=[pred[r][1] for r in best], mode="text",
                                     text=[f"{ids[r]}: {float(view.terms.scores[r]):.2f}" for r in best],
                                     textposition="top right", textfont=dict(color="white", size=12),
                                     name="scores of the top unmatched", hoverinfo="skip"))
            drawn.append(pred[rows])
        xs, ys = _outline(gt)
        gt_text = [t for g in range(len(gt)) for t in [html.escape(self._object_name(g))] * 5 + [None]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="ground truth", text=gt_text, hoverinfo="text",
                                 line=dict(color=COLORS["gt"], width=3, dash=PLOTLY_DASH["gt"])))
        rows = view.match.rows.tolist()
        xs, ys = _outline(pred[rows])
        total = view.terms.total
        text = [t for r, g, c in zip(rows, view.match.objects.tolist(), view.match.copies.tolist())
                for t in [f"query {ids[r]} → object {g} (copy {c}), cost {float(total[r, g]):.2f}, "
                          f"score {float(view.terms.scores[r]):.2f}"] * 5 + [None]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"positives ({view.group})", text=text,
                                 hoverinfo="text", line=dict(color=COLORS[view.group], width=2,
                                                             dash=PLOTLY_DASH[view.group])))
        drawn.append(pred[rows])
        row = ids.index(self._query)
        xs, ys = _outline(pred[[row]])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"selected: query {self._query}",
                                 text=[f"query {self._query}, score {float(view.terms.scores[row]):.2f}"] * 6,
                                 hoverinfo="text", line=dict(color=SELECTED, width=4)))
        drawn.append(pred[[row]])
        (x0, x1), (y0, y1) = padded_extent([box for group in drawn for box in group], height, width)
        model = self._model.value
        fig.update_layout(title=dict(text=f"{model}, image {self._image.value}, decoder layer {self._layer.value}",
                                     font=dict(size=16)),
                          width=560, height=600, font=FONT, margin=dict(l=10, r=10, t=50, b=10),
                          legend=dict(orientation="h", x=0, y=-0.02, yanchor="top", font=dict(size=13)))
        fig.update_xaxes(range=[x0, x1], visible=False)
        fig.update_yaxes(range=[y1, y0], visible=False, scaleanchor="x")
        return fig

    def _cost_figure(self) -> go.Figure:
        """Total cost and its three weighted terms, objects x queries, one colour scale; matches and runner-ups."""
        view = self.view
        terms, match = view.terms, view.match
        ids = terms.query_ids.tolist()
        w = terms.weights
        panels = [("total", terms.total,
                   f"total cost = {w.cost_class:g}·class + {w.cost_bbox:g}·L1 + {w.cost_giou:g}·(−GIoU)")]
        panels += [(term, terms.weighted(term), f"{getattr(w, term):g} × {TERM_LABELS[term]}") for term in TERMS]
        fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                            subplot_titles=[title for _, _, title in panels], row_heights=[0.34, 0.22, 0.22, 0.22])
        names = [self._object_name(g) for g in range(terms.num_objects)]
        span = max(float(v.abs().max()) for _, v, _ in panels) if terms.num_objects else 1.0
        for i, (term, values, _) in enumerate(panels, start=1):
            fig.add_trace(go.Heatmap(z=values.T.tolist(), x=ids, y=names, coloraxis="coloraxis", name=term,
                                     hovertemplate="query %{x}<br>%{y}<br>" + term + " %{z:.2f}<extra></extra>"),
                          row=i, col=1)
        matched_x = [ids[r] for r in match.rows.tolist()]
        matched_y = [names[g] for g in match.objects.tolist()]
        runner_x = [ids[r] for g, rs in enumerate(view.runner_ups) for r in rs]
        runner_y = [names[g] for g, rs in enumerate(view.runner_ups) for _ in rs]
        fig.add_trace(go.Scatter(x=matched_x, y=matched_y, mode="markers", name="Hungarian solution",
                                 marker=dict(symbol="circle-open", size=13, color="black", line=dict(width=3)),
                                 hovertemplate="query %{x} matched to %{y}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=runner_x, y=runner_y, mode="markers", name="runner-ups (next-lowest cost)",
                                 marker=dict(symbol="x-thin-open", size=11, color="black", line=dict(width=2)),
                                 hovertemplate="runner-up query %{x} for %{y}<extra></extra>"), row=1, col=1)
        for i in range(1, len(panels) + 1):
            fig.add_vrect(x0=self._query - 0.5, x1=self._query + 0.5, line=dict(color=SELECTED, width=3),
                          row=i, col=1)
        fig.update_layout(
            height=300 + 70 * max(terms.num_objects, 2) * 2, width=980, font=FONT, margin=dict(l=10, r=10, t=50, b=90),
            title=dict(text=f"every query × every object ({self._model.value}, {view.group}, K = {match.k}); "
                            f"yellow: query {self._query}", font=dict(size=16)),
            coloraxis=dict(colorscale="RdBu_r", cmin=-span, cmax=span, cmid=0,
                           colorbar=dict(title=dict(text="cost", side="top"), len=0.9)),
            # below the query axis, where it covers neither a panel nor a panel title
            legend=dict(orientation="h", x=0, y=-0.08, yanchor="top", xanchor="left", font=dict(size=13)))
        fig.update_xaxes(title_text="query id", row=len(panels), col=1)
        fig.update_yaxes(autorange="reversed")  # object 0 on top, as in the table
        fig.update_annotations(font_size=14)
        return fig

