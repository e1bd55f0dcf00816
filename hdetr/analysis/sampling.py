"""Where a query looks: the deformable-attention sampling of the decoder, captured from the op's inputs.

``record_sampling(model)`` is a context manager; every forward inside it records, for each
decoder layer's cross-attention, the inputs the op received: ``locations``
[B, Lq, heads, levels, points, 2] ((x, y) normalised to the padded feature maps), the
softmaxed ``weights`` [B, Lq, heads, levels, points], ``spatial_shapes`` [levels, 2] and
the layer's ``reference_points``. Nothing of the model is copied: a forward pre-hook on
each decoder ``cross_attn`` marks the layer, and the op function the attention module
calls is wrapped for the duration of the block.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

import hdetr.ops.attention_module as attention_module
from hdetr.errors import UserError


@dataclass
class LayerSampling:
    """The op inputs of one decoder layer's cross-attention (see the module docstring for shapes)."""

    layer: int
    reference_points: torch.Tensor
    locations: torch.Tensor
    weights: torch.Tensor
    spatial_shapes: torch.Tensor
    # with record_sampling(keep_value=True): the op's other inputs, so it can be re-run on them
    value: torch.Tensor | None = None
    level_start_index: torch.Tensor | None = None

    def op_inputs(self) -> tuple[torch.Tensor, ...]:
        """(value, spatial_shapes, level_start_index, locations, weights): the op's arguments as it received
        them, for ``hdetr.ops.multi_scale_deformable_attention`` (needs ``keep_value=True``)."""
        if self.value is None:
            raise UserError("this LayerSampling kept no value tensor; record with record_sampling(model, keep_value=True)")
        return self.value, self.spatial_shapes, self.level_start_index, self.locations, self.weights

    def for_query(self, query: int, image_index: int = 0) -> dict[str, torch.Tensor]:
        """``reference`` [levels, 2 or 4], ``locations`` [heads, levels, points, 2], ``weights``
        [heads, levels, points] of one query of one image."""
        if not 0 <= query < self.locations.shape[1]:
            raise UserError(f"query={query} is out of range: layer {self.layer} ran {self.locations.shape[1]} queries")
        return {"reference": self.reference_points[image_index, query],
                "locations": self.locations[image_index, query], "weights": self.weights[image_index, query]}


@contextlib.contextmanager
def record_sampling(model, *, keep_value: bool = False):
    """Yields a list that fills with one LayerSampling per decoder layer per forward run in the block;
    ``keep_value`` also keeps the op's ``value`` [B, S, heads, D] and ``level_start_index``."""
    layers = model.transformer.decoder.layers
    captured: list[LayerSampling] = []
    current: dict = {}
    original = attention_module.multi_scale_deformable_attention

    def wrapped(value, spatial_shapes, level_start_index, locations, weights, **kwargs):
        if current:
            captured.append(LayerSampling(layer=current["layer"], reference_points=current["reference"],
                                          locations=locations.detach().cpu(), weights=weights.detach().cpu(),
                                          spatial_shapes=spatial_shapes.detach().cpu(),
                                          value=value.detach().cpu() if keep_value else None,
                                          level_start_index=level_start_index.detach().cpu() if keep_value else None))
            current.clear()
        return original(value, spatial_shapes, level_start_index, locations, weights, **kwargs)

    def pre_hook(layer_index):
        def hook(module, args):
            current.update(layer=layer_index, reference=args[1].detach().cpu())
        return hook

    handles = [layer.cross_attn.register_forward_pre_hook(pre_hook(i)) for i, layer in enumerate(layers)]
    attention_module.multi_scale_deformable_attention = wrapped
    try:
        yield captured
    finally:
        attention_module.multi_scale_deformable_attention = original
        for handle in handles:
            handle.remove()


def sampling_points_in_pixels(sampling: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Normalised sampling locations [heads, levels, points, 2] -> pixels of an unpadded ``height`` x ``width``
    image (batch of one, so the padded maps cover exactly the image)."""
    scale = torch.tensor([width, height], dtype=torch.float32)
    return sampling["locations"].float() * scale


_LEVEL_COLOURS = ("#ffe119", "#f032e6", "#42d4f4", "#3cb44b", "#ff8c00")  # bright on dark images, level 0 first
_BRIGHT = ("#ffe119", "#f032e6", "#42d4f4", "#3cb44b", "#ff8c00", "#ffffff", "#fabed4", "#bfef45")


def _legend_handles(levels, heads, by_head: bool, markers: str, colours):
    """Every colour and every marker of the figure named once (levels and heads, or heads alone), then the
    reference point and the size code."""
    from matplotlib.lines import Line2D

    def entry(label, marker="o", colour="#bbbbbb", size=8):
        return Line2D([], [], linestyle="none", marker=marker, markersize=size, markerfacecolor=colour,
                      markeredgecolor="black", label=label)

    if by_head:
        handles = [entry(f"head {h}", markers[h % len(markers)], colours[h % len(colours)]) for h in heads]
    else:
        handles = [entry(f"level {l} (colour)", "o", colours[l % len(colours)]) for l in levels]
        handles += [entry(f"head {h} (marker)", markers[h % len(markers)]) for h in heads]
    handles.append(entry("reference point", "X", "white", 10))
    handles.append(entry("size = attention weight", "o", "#bbbbbb", 4))
    return handles


def draw_query_sampling(image: torch.Tensor, sampling: dict[str, torch.Tensor], *, title: str = "",
                        levels=None, heads=None, legend: bool = True, ax=None):
    """The image with one query's sampling points: colour = feature level, size = attention weight,
    marker = head (the reference point as a white cross); ``levels`` / ``heads`` (lists of indices)
    draw only those; ``legend`` False leaves the legend to another panel of the figure. Returns the Axes."""
    import matplotlib.pyplot as plt

    from hdetr.viz.image import image_size, to_display

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    height, width = image_size(image)
    ax.imshow(to_display(image))
    points = sampling_points_in_pixels(sampling, height, width)
    weights = sampling["weights"].float()
    num_heads, num_levels, _, _ = points.shape
    shown_levels = list(range(num_levels) if levels is None else levels)
    shown_heads = list(range(num_heads) if heads is None else heads)
    # one level shown: colour tells the heads apart; several: colour = level, marker = head. Bright colours with a
    # white edge: the synthetic images are dark and textured, a dark marker would vanish on them.
    by_head = len(shown_levels) == 1
    markers = "os^vD<>Pp*"
    colours = _BRIGHT if by_head else _LEVEL_COLOURS
    for h in shown_heads:
        for l in shown_levels:
            ax.scatter(points[h, l, :, 0], points[h, l, :, 1], s=25 + 400 * weights[h, l],
                       marker=markers[h % len(markers)], color=colours[(h if by_head else l) % len(colours)],
                       edgecolors="white", linewidths=0.8, alpha=0.9)
    ref = sampling["reference"][0, :2].float() * torch.tensor([width, height])
    ax.scatter([ref[0]], [ref[1]], marker="X", s=160, color="white", edgecolors="black", linewidths=1.2)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    if legend:
        ax.legend(handles=_legend_handles(shown_levels, shown_heads, by_head, markers, colours), fontsize=9,
                  loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return ax
