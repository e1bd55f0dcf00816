"""The model's output: per query group, the predictions of every decoder layer, stacked.

``HDeformableDETR.forward`` returns a ``ModelOutput``:

- ``logits[group]`` [L, B, Q, C] and ``boxes[group]`` [L, B, Q, 4] (normalised cxcywh,
  relative to each image's unpadded size) for the query groups ``ONE2ONE`` (the n main
  queries; in the epoch and layer schemes all of them) and ``ONE2MANY`` (the hybrid
  branch's T extra queries; Q = 0 when there are none, and in eval mode). The L layers are
  the last L decoder layers: all of them when the model has auxiliary outputs
  (``has_aux``), else only the last one (L = 1).
- ``enc_logits`` [B, S, C] and ``enc_boxes`` [B, S, 4]: the S two-stage encoder proposals
  (None for one-stage models). The plan, the assignment records and the views call them
  layer ``ENCODER_LAYER``.

``output.layer(group, i)`` is ``{"pred_logits" [B, Q, C], "pred_boxes" [B, Q, 4]}`` of
decoder layer ``i`` (0 <= i < L) or, for ``ENCODER_LAYER``, of the encoder proposals.

It also reads as the official H-Deformable-DETR output dict (like transformers'
``ModelOutput``), so code written for the official model keeps working:
``output["pred_logits"]`` / ``["pred_boxes"]`` (last layer, one-to-one),
``["pred_logits_one2many"]`` / ``["pred_boxes_one2many"]``, ``["aux_outputs"]`` /
``["aux_outputs_one2many"]`` (lists of per-layer dicts for the layers before the last, only
with auxiliary outputs), ``["enc_outputs"]`` (two-stage only); ``keys()``, ``items()``,
``in`` and ``get`` answer as that dict would. ``to_official_dict()`` builds the dict,
``ModelOutput.from_official_dict(d)`` reads one back.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as _pytree

from hdetr.errors import UserError

# The layer index of the two-stage encoder proposals (decoder layers count from 0).
ENCODER_LAYER = -1
# The query groups: the main one-to-one queries and the hybrid branch's one-to-many queries.
ONE2ONE = "one2one"
ONE2MANY = "one2many"
QUERY_GROUPS = (ONE2ONE, ONE2MANY)

# The official dict's key suffix of each group.
_SUFFIX = {ONE2ONE: "", ONE2MANY: "_one2many"}
_AUX = "aux_outputs"
_ENC = "enc_outputs"


def check_group(group: str) -> str:
    """``group`` when it names a query group, else UserError."""
    if group not in QUERY_GROUPS:
        raise UserError(f"group={group!r} is not one of {', '.join(QUERY_GROUPS)}")
    return group


@dataclass(eq=False, repr=False)
class ModelOutput(dict):
    """Predictions of every query group at the last L decoder layers, and the encoder proposals.

    logits: group -> [L, B, Q, C] class logits (Q = n for ONE2ONE, T for ONE2MANY; T may be 0).
    boxes: group -> [L, B, Q, 4] sigmoid boxes, normalised cxcywh.
    enc_logits: [B, S, C] logits of the S two-stage encoder proposals, or None.
    enc_boxes: [B, S, 4] boxes of those proposals, or None.
    has_aux: whether the layers before the last are auxiliary outputs (the official
        ``aux_outputs``); without them L is 1.
    """

    logits: dict[str, torch.Tensor]
    boxes: dict[str, torch.Tensor]
    enc_logits: torch.Tensor | None = None
    enc_boxes: torch.Tensor | None = None
    has_aux: bool = True

    def __post_init__(self) -> None:
        # The official view is the dict itself (views of the stacked tensors, built once).
        dict.update(self, {key: self._official_value(key) for key in self._official_keys()})

    # -- typed access -----------------------------------------------------------------------
    def num_layers(self, group: str = ONE2ONE) -> int:
        """L: the decoder layers ``group`` holds."""
        return self.logits[check_group(group)].shape[0]

    def layer(self, group: str, i: int) -> dict[str, torch.Tensor]:
        """``{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}`` of ``group`` at decoder layer
        ``i`` (0 <= i < L), or of the encoder proposals [B, S, ...] for ``ENCODER_LAYER``."""
        check_group(group)
        if i == ENCODER_LAYER:
            if self.enc_logits is None:
                raise UserError(f"layer={ENCODER_LAYER} (encoder proposals) needs a two-stage model's outputs")
            return {"pred_logits": self.enc_logits, "pred_boxes": self.enc_boxes}
        num_layers = self.num_layers(group)
        if not 0 <= i < num_layers:
            raise UserError(f"layer={i} is out of range: the outputs hold decoder layers 0..{num_layers - 1} "
                            f"(and {ENCODER_LAYER} for the encoder proposals)")
        return {"pred_logits": self.logits[group][i], "pred_boxes": self.boxes[group][i]}

    def last(self, group: str) -> dict[str, torch.Tensor]:
        """``group``'s predictions at the last decoder layer (what inference uses)."""
        return self.layer(group, self.num_layers(group) - 1)

    @property
    def batch_size(self) -> int:
        return self.logits[ONE2ONE].shape[1]

    # -- tensors ----------------------------------------------------------------------------
    def map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ModelOutput":
        """A new output with ``fn`` applied to every tensor."""
        return ModelOutput(
            logits={g: fn(t) for g, t in self.logits.items()},
            boxes={g: fn(t) for g, t in self.boxes.items()},
            enc_logits=None if self.enc_logits is None else fn(self.enc_logits),
            enc_boxes=None if self.enc_boxes is None else fn(self.enc_boxes),
            has_aux=self.has_aux,
        )

    def float(self) -> "ModelOutput":
        """Floating-point tensors in float32 (e.g. after a bf16 autocast forward)."""
        return self.map_tensors(lambda t: t.float() if t.is_floating_point() else t)

    def to(self, *args: Any, **kwargs: Any) -> "ModelOutput":
        """``Tensor.to`` on every tensor."""
        return self.map_tensors(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "ModelOutput":
        return self.map_tensors(torch.Tensor.detach)

    # -- the official dict ------------------------------------------------------------------
    def to_official_dict(self) -> dict[str, Any]:
        """The official model's output dict, as a plain dict (the same tensors)."""
        return {key: self._official_value(key) for key in self._official_keys()}

    @classmethod
    def from_official_dict(cls, outputs: Mapping[str, Any]) -> "ModelOutput":
        """Read an official output dict (``pred_logits``/``pred_boxes`` at least); a ModelOutput
        is returned as it is. Layers are stacked (a copy); a missing one-to-many group reads as
        Q = 0 queries."""
        if isinstance(outputs, ModelOutput):
            return outputs
        if "pred_logits" not in outputs or "pred_boxes" not in outputs:
            raise UserError(f"outputs need 'pred_logits' and 'pred_boxes', got keys {sorted(outputs)}")
        logits, boxes = {}, {}
        for group in QUERY_GROUPS:
            suffix = _SUFFIX[group]
            if f"pred_logits{suffix}" not in outputs:
                continue
            layers = list(outputs.get(_AUX + suffix) or [])
            layers.append({"pred_logits": outputs[f"pred_logits{suffix}"], "pred_boxes": outputs[f"pred_boxes{suffix}"]})
            logits[group] = torch.stack([layer["pred_logits"] for layer in layers])
            boxes[group] = torch.stack([layer["pred_boxes"] for layer in layers])
        if ONE2MANY not in logits:
            shape = logits[ONE2ONE].shape
            logits[ONE2MANY] = logits[ONE2ONE].new_zeros(shape[0], shape[1], 0, shape[3])
            boxes[ONE2MANY] = boxes[ONE2ONE].new_zeros(shape[0], shape[1], 0, 4)
        encoder = outputs.get(_ENC)
        return cls(
            logits=logits,
            boxes=boxes,
            enc_logits=None if encoder is None else encoder["pred_logits"],
            enc_boxes=None if encoder is None else encoder["pred_boxes"],
            has_aux=_AUX in outputs,
        )

    def _official_keys(self) -> list[str]:
        keys = [f"{name}{_SUFFIX[g]}" for g in QUERY_GROUPS for name in ("pred_logits", "pred_boxes")]
        if self.has_aux:
            keys += [_AUX + _SUFFIX[g] for g in QUERY_GROUPS]
        if self.enc_logits is not None:
            keys.append(_ENC)
        return keys

    def _official_value(self, key: str) -> Any:
        for group, suffix in _SUFFIX.items():
            if key == f"pred_logits{suffix}":
                return self.logits[group][-1]
            if key == f"pred_boxes{suffix}":
                return self.boxes[group][-1]
            if key == _AUX + suffix:
                return [self.layer(group, i) for i in range(self.num_layers(group) - 1)]
        return self.layer(ONE2ONE, ENCODER_LAYER)

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ModelOutput is read-only: build a new one (map_tensors, from_official_dict) or edit "
                        "a copy from to_official_dict()")

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = _read_only

    def __reduce__(self):
        return (type(self), (self.logits, self.boxes, self.enc_logits, self.enc_boxes, self.has_aux))

    def __repr__(self) -> str:
        shapes = {g: tuple(t.shape) for g, t in self.logits.items()}
        encoder = None if self.enc_logits is None else tuple(self.enc_logits.shape)
        return f"ModelOutput(logits {shapes}, encoder logits {encoder}, has_aux={self.has_aux})"


def _flatten(output: ModelOutput) -> tuple[list[Any], Any]:
    tensors = [output.logits[g] for g in QUERY_GROUPS] + [output.boxes[g] for g in QUERY_GROUPS]
    return tensors + [output.enc_logits, output.enc_boxes], output.has_aux


def _unflatten(values: list[Any], has_aux: Any) -> ModelOutput:
    values = list(values)
    return ModelOutput(logits=dict(zip(QUERY_GROUPS, values[0:2])), boxes=dict(zip(QUERY_GROUPS, values[2:4])),
                       enc_logits=values[4], enc_boxes=values[5], has_aux=has_aux)


# torch.utils._pytree sees the tensors inside (DistributedDataParallel walks outputs with it).
_pytree.register_pytree_node(ModelOutput, _flatten, _unflatten, serialized_type_name="hdetr.outputs.ModelOutput")
