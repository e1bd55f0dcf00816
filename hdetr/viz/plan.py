"""The supervision plan of a scheme as a layer x epoch grid: what each decoder layer learns from, when.

``hdetr.matching.plan(config, epoch, num_epochs)`` lists the matching problems of one training
step; these helpers lay them out so the four schemes can be compared at a glance:
one-to-one only (the baseline everywhere, the hybrid layer's last L2 layers, the
hybrid epoch's last epochs), one-to-many (K copies) only, both (the hybrid
branch: two query sets, every layer, every epoch), or G one-to-one query groups
(Group DETR: one ground-truth object matched once in each group).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from hdetr.errors import UserError
from hdetr.matching.plan import ENCODER_LAYER, plan

KIND_ONE2ONE, KIND_ONE2MANY, KIND_BOTH, KIND_GROUPS = 0, 1, 2, 3
KIND_COLORS = ("#d62728", "#1f77b4", "#9467bd", "#ff7f0e")


def _is_group(g) -> bool:
    """A Group DETR extra query group (tag "group{i}"): one-to-one on its own block of queries."""
    return g.tag.startswith("group")


def describe_groups(groups) -> str:
    """Short text for the groups of one layer: ``"1:1"``, ``"1:K=6"``, ``"1:1 + 1:K=6 x0.5 (T)"``,
    ``"4 groups x 1:1"`` (Group DETR: the main set and 3 extra groups)."""
    parts = []
    extra = sum(_is_group(g) for g in groups)
    for g in groups:
        if _is_group(g):
            continue
        if g.repeat_k == 1 and g.tag == "one2one":
            parts.append(f"{extra + 1} groups x 1:1" if extra else "1:1")
        else:
            text = f"1:K={g.repeat_k}"
            if g.weight != 1.0:
                text += f" x{g.weight:g}"
            if g.queries == "one2many":
                text += " (T)"
            parts.append(text)
    return " + ".join(parts) if parts else "-"


def plan_grid(config, num_epochs: int | None = None, epochs: Sequence[int] | None = None) -> dict:
    """The plan of ``config`` (a ModelConfig) at each layer and epoch of a ``num_epochs``-epoch
    training schedule (``train.epochs``; the epoch scheme's rho refers to it).

    ``num_epochs`` may be left out when ``epochs`` is given and the scheme is not the epoch scheme.
    Returns a dict with ``layers`` (decoder layers, then -1 for the encoder proposals
    when two-stage), ``epochs`` (0-based; default every epoch of ``num_epochs``),
    ``kind`` [L, E] int array (0 one-to-one, 1 one-to-many, 2 both, 3 several one-to-one query
    groups, -1 unsupervised) and
    ``text`` [L][E] descriptions (see ``describe_groups``).
    """
    if epochs is None:
        if num_epochs is None:
            raise UserError("plan_grid: give num_epochs (the training schedule's length, train.epochs) or the "
                            "epochs to show")
        epochs = range(num_epochs)
    epochs = list(epochs)
    layers = list(range(config.dec_layers)) + ([ENCODER_LAYER] if config.two_stage else [])
    kind = np.full((len(layers), len(epochs)), -1, dtype=np.int64)
    text = [["-"] * len(epochs) for _ in layers]
    for j, epoch in enumerate(epochs):
        groups = plan(config, epoch, num_epochs)
        for i, layer in enumerate(layers):
            at_layer = [g for g in groups if g.layer == layer]
            if not at_layer:
                continue
            many = {g.tag == "one2many" for g in at_layer}
            if many == {True, False}:
                kind[i, j] = KIND_BOTH
            elif many == {True}:
                kind[i, j] = KIND_ONE2MANY
            else:
                kind[i, j] = KIND_GROUPS if any(_is_group(g) for g in at_layer) else KIND_ONE2ONE
            text[i][j] = describe_groups(at_layer)
    return {"layers": layers, "epochs": epochs, "kind": kind, "text": text}


def plan_markdown(config, num_epochs: int | None = None, epochs: Sequence[int] | None = None) -> str:
    """The plan grid as a markdown table (rows = layers, columns = epochs, 1-based as in logs);
    arguments as for ``plan_grid``."""
    grid = plan_grid(config, num_epochs, epochs)
    head = ["layer"] + [f"ep {e + 1}" for e in grid["epochs"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer, row in zip(grid["layers"], grid["text"]):
        name = "encoder" if layer == ENCODER_LAYER else f"decoder {layer}"
        lines.append("| " + " | ".join([name, *row]) + " |")
    return "\n".join(lines)


def _epoch_spans(grid: dict) -> list[tuple[int, int]]:
    """(first, last) column indices of each run of identical columns: twelve equal epochs are one span."""
    spans: list[tuple[int, int]] = []
    for j in range(len(grid["epochs"])):
        same = spans and all(row[j] == row[spans[-1][0]] for row in grid["text"]) and \
            (grid["kind"][:, j] == grid["kind"][:, spans[-1][0]]).all()
        spans[-1:] = [(spans[-1][0], j)] if same else [*spans[-1:], (j, j)]
    return spans


def draw_plan(config, num_epochs: int | None = None, epochs: Sequence[int] | None = None, ax=None,
              title: str | None = None, legend: bool = True):
    """Colour grid of ``plan_grid`` (``num_epochs``, ``epochs``: as there): red one-to-one, blue one-to-many, purple both, orange G one-to-one
    query groups, white none. Epochs with the same plan share one column (labelled with their range), and
    each cell says how it is supervised with the scheme's own K and G (``describe_groups``: "1:K=6",
    "4 groups x 1:1"). ``legend`` False leaves the colour legend to another panel.

    Returns the Axes.
    """
    grid = plan_grid(config, num_epochs, epochs)
    spans = _epoch_spans(grid)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 * len(spans) + 2.5, 0.5 * len(grid["layers"]) + 1.2))
    rgb = np.ones((len(grid["layers"]), len(spans), 3))
    kind = grid["kind"][:, [first for first, _ in spans]]
    for k, color in enumerate(KIND_COLORS):
        rgb[kind == k] = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    ax.imshow(rgb, aspect="auto")
    for i, row in enumerate(grid["text"]):
        for j, (first, _) in enumerate(spans):
            if row[first] != "-":
                ax.text(j, i, row[first], ha="center", va="center", fontsize=9, color="white", fontweight="bold")
    numbers = [grid["epochs"][first] + 1 for first, _ in spans]
    lasts = [grid["epochs"][last] + 1 for _, last in spans]
    ax.set_xticks(range(len(spans)), [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(numbers, lasts)],
                  fontsize=9)
    ax.set_yticks(range(len(grid["layers"])),
                  ["encoder" if l == ENCODER_LAYER else f"decoder {l}" for l in grid["layers"]], fontsize=9)
    ax.set_xlabel("epochs", fontsize=9)
    ax.set_title(title or config.scheme, fontsize=11)
    if legend:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=KIND_COLORS[KIND_ONE2ONE], label="one-to-one only"),
                   Patch(facecolor=KIND_COLORS[KIND_ONE2MANY], label="one-to-many only"),
                   Patch(facecolor=KIND_COLORS[KIND_BOTH], label="both (two query sets)"),
                   Patch(facecolor=KIND_COLORS[KIND_GROUPS], label="one-to-one in each of G query groups"),
                   Patch(facecolor="white", edgecolor="grey", label="not supervised")]
        ax.legend(handles=handles, fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ax


def draw_attention_mask(config, ax=None, title: str | None = None):
    """The decoder's self-attention mask of a training step as the block matrix it is: query i (row) may
    attend to query j (column) where the cell is filled. The hybrid branch's [n, T] and Group DETR's G
    groups of n give diagonal blocks; ``model.mask_groups=false`` (or a one-set scheme) one full block.
    Returns the axes."""
    from hdetr.models.deformable_decoder import group_attention_mask

    sizes = config.query_group_sizes()
    mask = group_attention_mask(sizes, config.mask_groups).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest")
    edges = np.cumsum(sizes)[:-1] - 0.5
    for edge in edges:
        ax.axhline(edge, color="#d62728", linewidth=1.2)
        ax.axvline(edge, color="#d62728", linewidth=1.2)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ticks = [s + n / 2 - 0.5 for s, n in zip(starts, sizes)]
    names = ["one-to-one"] + (["one-to-many"] if config.scheme == "hybrid_branch" else
                              [f"group {i}" for i in range(1, len(sizes))])
    ax.set_xticks(ticks, [f"{name}\n({n})" for name, n in zip(names, sizes)], fontsize=8)
    ax.set_yticks(ticks, [f"{name} ({n})" for name, n in zip(names, sizes)], fontsize=8)
    ax.set_xlabel("key query (attended to)", fontsize=9)
    ax.set_ylabel("query", fontsize=9)
    state = "masked" if config.mask_groups and len(sizes) > 1 else "one group"
    ax.set_title(title or f"{config.scheme}: self-attention, {state} (dark = may attend)", fontsize=9)
    return ax
