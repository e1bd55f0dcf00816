"""Hybrid matching for transformers' ``DeformableDetrForObjectDetection`` (docs/plug_in.md).

- ``model_config(hf_config, scheme=..., ...)``: the ``hdetr.ModelConfig`` that describes the HF
  model to the criterion (classes, decoder layers, two-stage, matcher costs and loss weights
  read from the HF config; the scheme's numbers from the arguments).
- ``criterion_outputs(hf_output, config, model=None)``: hdetr's ``ModelOutput`` from the HF
  model's output (per-layer predictions stacked into [L, B, Q, C] / [L, B, Q, 4], the
  two-stage encoder proposals), ready for ``hdetr.build_criterion(config)`` (for ``hybrid_epoch``
  ``hdetr.build_criterion(config, num_epochs=...)``, the training schedule's length).
- ``enable_query_groups(model, config)``: hybrid_branch and group_detr run n + T (or G n)
  queries whose decoder self-attention stays within each query group; this registers a
  masking attention function with transformers' ``AttentionInterface`` (the decoder's
  ``DeformableDetrSelfAttention`` dispatches through it, transformers >= 5) and selects it
  for the model. ``inference_outputs(hf_output, config)`` keeps the first n queries.

The HF model scores its ``num_labels`` classes with a sigmoid (focal loss, no background
column, labels 0..num_labels-1) and predicts normalised cxcywh boxes, as hdetr does, so
predictions and targets pass unchanged (HF's own loss reads ``class_labels``; hdetr's
targets have ``labels`` and ``boxes``).

transformers is imported here only, lazily; install it with ``pip install -e ".[hf]"``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.models.deformable_decoder import group_attention_mask
from hdetr.plug_in import criterion_outputs as _criterion_outputs
from hdetr.outputs import ModelOutput

INSTALL_HINT = 'pip install -e ".[hf]"'
# The name the group-masking attention function is registered under in transformers' AttentionInterface.
GROUP_ATTENTION = "hdetr_query_groups"
# HF config attributes written by enable_query_groups (saved with the model's config).
GROUPS_KEY = "hdetr_query_groups"
BASE_ATTENTION_KEY = "hdetr_base_attn_implementation"

_SCHEME_FIELDS = ("num_queries_one2one", "num_queries_one2many", "k_one2many", "lambda_one2many",
                  "one2many_epoch_fraction", "one2many_layers", "one2one_layers", "num_groups",
                  "mask_groups")


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise UserError(f"hdetr.adapters.hf_deformable_detr needs HF transformers: {INSTALL_HINT}") from error
    return transformers


def num_hf_queries(hf_config) -> int:
    """Decoder queries the HF model runs: ``two_stage_num_proposals`` (two-stage) or ``num_queries``."""
    return hf_config.two_stage_num_proposals if hf_config.two_stage else hf_config.num_queries


def model_config(hf_config, scheme: str = "baseline", **changes: Any) -> ModelConfig:
    """The ModelConfig describing the HF model (a ``DeformableDetrConfig``) for the criterion.

    Read from ``hf_config``: num_classes (``num_labels``), dec_layers, aux_loss
    (``auxiliary_loss``), two_stage, with_box_refine, hidden_dim, heads, feature levels, the
    matcher costs (``class_cost``, ``bbox_cost``, ``giou_cost``), the box loss weights
    (``bbox_loss_coefficient``, ``giou_loss_coefficient``) and ``focal_alpha``. The class loss
    weight stays hdetr's (official) ``cls_loss_coef=2`` (HF's own loss weighs ``loss_ce`` by 1
    and has no field for it); pass ``cls_loss_coef=1`` to match HF's loss. ``scheme`` and ``changes`` set the
    scheme's numbers (K, T, lambda, rho, L1/L2, G ...). The query counts must match the HF
    model: for baseline / hybrid_epoch / hybrid_layer ``num_queries_one2one`` defaults to its
    queries; for hybrid_branch (n + T) and group_detr (G n) set ``num_queries`` (or, two-stage,
    ``two_stage_num_proposals``) to the total in the HF config.
    """
    if "num_epochs" in changes:
        raise UserError("model_config: num_epochs is not a ModelConfig field: the epoch scheme's schedule is given "
                        "to the criterion, hdetr.build_criterion(config, num_epochs=...)")
    unknown = sorted(set(changes) - set(_SCHEME_FIELDS) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise UserError(f"model_config: unknown ModelConfig fields {unknown}")
    queries = num_hf_queries(hf_config)
    fields: dict[str, Any] = dict(
        num_classes=hf_config.num_labels, hidden_dim=hf_config.d_model, nheads=hf_config.decoder_attention_heads,
        enc_layers=hf_config.encoder_layers, dec_layers=hf_config.decoder_layers,
        dim_feedforward=hf_config.decoder_ffn_dim, num_feature_levels=hf_config.num_feature_levels,
        enc_n_points=hf_config.encoder_n_points, dec_n_points=hf_config.decoder_n_points,
        with_box_refine=hf_config.with_box_refine, two_stage=hf_config.two_stage, mixed_selection=False,
        look_forward_twice=False, aux_loss=hf_config.auxiliary_loss,
        set_cost_class=hf_config.class_cost, set_cost_bbox=hf_config.bbox_cost, set_cost_giou=hf_config.giou_cost,
        bbox_loss_coef=hf_config.bbox_loss_coefficient,
        giou_loss_coef=hf_config.giou_loss_coefficient, focal_alpha=hf_config.focal_alpha,
        scheme=scheme, num_queries_one2one=queries, num_queries_one2many=0,
    )
    if scheme == "hybrid_layer" and "one2many_layers" not in changes and "one2one_layers" not in changes:
        fields.update(one2one_layers=1, one2many_layers=hf_config.decoder_layers - 1)
    fields.update(changes)
    config = ModelConfig(**fields)
    config.validate()
    if config.num_queries != queries:
        what = "two_stage_num_proposals" if hf_config.two_stage else "num_queries"
        raise UserError(f"model_config: scheme={scheme} trains {config.num_queries} queries "
                        f"({' + '.join(map(str, config.query_group_sizes()))}) but the HF model runs {queries}: "
                        f"set {what}={config.num_queries} in its DeformableDetrConfig")
    return config


def _several_groups(config: ModelConfig) -> bool:
    return len(config.query_group_sizes()) > 1


def decoder_predictions(hf_output, model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every decoder layer's predictions, last layer last: logits [L, B, Q, C], boxes [L, B, Q, 4].

    With ``auxiliary_outputs`` in ``hf_output`` (the HF model returns them when called with
    ``labels`` and ``config.auxiliary_loss=True``) they are stacked with the last layer's
    ``logits`` / ``pred_boxes``. Without (a call without ``labels``), the layers are rebuilt
    from ``intermediate_hidden_states`` and the reference points with ``model``'s class and box
    heads (as ``DeformableDetrForObjectDetection.forward`` computes them); the rebuilt last
    layer must equal the output's ``logits`` and ``pred_boxes``.
    """
    if hf_output.auxiliary_outputs:
        layers = [*hf_output.auxiliary_outputs, {"logits": hf_output.logits, "pred_boxes": hf_output.pred_boxes}]
        return torch.stack([l["logits"] for l in layers]), torch.stack([l["pred_boxes"] for l in layers])
    if model is None:
        raise UserError("decoder_predictions: the HF output has no auxiliary_outputs (the model returns them only when "
                        "called with labels): pass model= to rebuild the layers from intermediate_hidden_states")
    if not model.config.auxiliary_loss:  # the last layer only (L = 1)
        return hf_output.logits[None], hf_output.pred_boxes[None]
    hidden = hf_output.intermediate_hidden_states  # [B, L, Q, D]
    references = [hf_output.init_reference_points] + list(hf_output.intermediate_reference_points.unbind(1))[:-1]
    logits, boxes = [], []
    for level, reference in enumerate(references):
        logits.append(model.class_embed[level](hidden[:, level]))
        delta = model.bbox_embed[level](hidden[:, level])
        reference = _inverse_sigmoid(reference)
        if reference.shape[-1] == 4:
            coords = delta + reference
        else:  # 2: the reference is a point, the head predicts the box around it
            coords = torch.cat([delta[..., :2] + reference, delta[..., 2:]], dim=-1)
        boxes.append(coords.sigmoid())
    logits, boxes = torch.stack(logits), torch.stack(boxes)
    if not (torch.allclose(logits[-1], hf_output.logits, atol=1e-5)
            and torch.allclose(boxes[-1], hf_output.pred_boxes, atol=1e-5)):
        raise UserError("decoder_predictions: the rebuilt last layer differs from the HF output's logits/pred_boxes "
                        "(this transformers version computes its heads differently): call the model with labels "
                        "so that it returns auxiliary_outputs")
    return logits, boxes


def _inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    # transformers' deformable_detr inverse_sigmoid.
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def criterion_outputs(hf_output, config: ModelConfig, model=None) -> ModelOutput:
    """hdetr's ModelOutput (what ``hdetr.build_criterion(config)`` reads) from a
    ``DeformableDetrObjectDetectionOutput``.

    Decoder layers: see ``decoder_predictions`` (``model`` is needed when the output has no
    ``auxiliary_outputs``). The first ``config.num_queries_one2one`` queries are the main set
    when the scheme has several query groups (hybrid_branch, group_detr). Two-stage: the
    encoder proposals are ``enc_outputs_class`` [B, S, C] and ``enc_outputs_coord_logits``
    [B, S, 4] (sigmoid applied here).
    """
    logits, boxes = decoder_predictions(hf_output, model)
    expected = config.num_queries
    if logits.shape[2] != expected:
        raise UserError(f"criterion_outputs: the HF output has {logits.shape[2]} queries, the plan ({config.scheme}) "
                        f"expects {expected}")
    if logits.shape[0] != (config.dec_layers if config.aux_loss else 1):
        raise UserError(f"criterion_outputs: the HF output has {logits.shape[0]} decoder layers, the config "
                        f"{config.dec_layers} (aux_loss={config.aux_loss})")
    enc_logits = enc_boxes = None
    if config.two_stage:
        if hf_output.enc_outputs_class is None:
            raise UserError("criterion_outputs: two_stage=True but the HF output has no enc_outputs_class")
        enc_logits, enc_boxes = hf_output.enc_outputs_class, hf_output.enc_outputs_coord_logits.sigmoid()
    num_one2one = config.num_queries_one2one if _several_groups(config) else None
    return _criterion_outputs(logits, boxes, num_one2one=num_one2one, enc_logits=enc_logits, enc_boxes=enc_boxes)


# -- query groups (hybrid_branch, group_detr) ------------------------------------------------------
_MASKS: dict[tuple, torch.Tensor] = {}


def _group_mask(groups: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (groups, device, dtype)
    if key not in _MASKS:
        allowed = group_attention_mask(list(groups), device=device)
        _MASKS[key] = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed,
                                                                                        torch.finfo(dtype).min)
    return _MASKS[key]


def _group_attention(module, query, key, value, attention_mask, **kwargs):
    """AttentionInterface function: the base implementation with the query-group mask added."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.deformable_detr.modeling_deformable_detr import eager_attention_forward

    config = module.config
    groups = tuple(getattr(config, GROUPS_KEY))
    if query.shape[-2] != sum(groups) or key.shape[-2] != sum(groups):
        raise UserError(f"query-group attention: {query.shape[-2]} queries, the groups {list(groups)} hold {sum(groups)}")
    mask = _group_mask(groups, query.device, query.dtype)
    mask = mask if attention_mask is None else attention_mask + mask
    base = getattr(config, BASE_ATTENTION_KEY, "sdpa")
    base_fn = eager_attention_forward if base == "eager" else ALL_ATTENTION_FUNCTIONS.get_interface(
        base, eager_attention_forward)
    return base_fn(module, query, key, value, mask, **kwargs)


def enable_query_groups(model, config: ModelConfig) -> None:
    """Make ``model`` (a ``DeformableDetrForObjectDetection``) run ``config``'s query groups.

    The HF model must already have the queries (``num_queries`` or, two-stage,
    ``two_stage_num_proposals`` = n + T or G n: ``model_config`` checks it). This writes the
    attention groups into ``model.config`` (``hdetr_query_groups``) and selects the
    attention function ``hdetr_query_groups`` (registered with ``transformers.AttentionInterface``),
    which adds the block mask of ``hdetr.models.deformable_decoder.group_attention_mask`` to the
    decoder self-attention and then runs the model's former implementation (sdpa or eager).
    The mask stays on in eval mode, so the first n queries never see the others and
    ``inference_outputs`` may drop them. A one-group scheme needs nothing: this returns.
    """
    transformers = _transformers()
    if not _several_groups(config):
        return
    if int(transformers.__version__.split(".")[0]) < 5:
        raise UserError(f"{config.scheme} with HF Deformable DETR needs transformers >= 5 (its decoder self-attention "
                        f"dispatches through AttentionInterface there); installed: {transformers.__version__}")
    queries = num_hf_queries(model.config)
    if queries != config.num_queries:
        raise UserError(f"enable_query_groups: the HF model runs {queries} queries, {config.scheme} needs "
                        f"{config.num_queries}")
    transformers.AttentionInterface.register(GROUP_ATTENTION, _group_attention)
    current = model.config._attn_implementation
    if current != GROUP_ATTENTION:
        setattr(model.config, BASE_ATTENTION_KEY, current or "eager")
    setattr(model.config, GROUPS_KEY, list(config.attention_groups()))
    model.set_attn_implementation(GROUP_ATTENTION)
    if model.config._attn_implementation != GROUP_ATTENTION:
        raise UserError(f"enable_query_groups: {type(model).__name__} refused the attention implementation "
                        f"{GROUP_ATTENTION!r} (it stays {model.config._attn_implementation!r})")


def inference_outputs(hf_output, config: ModelConfig):
    """The HF output with ``logits`` and ``pred_boxes`` of the first ``num_queries_one2one``
    queries only (what inference keeps with several query groups; the others are dropped), e.g.
    for ``image_processor.post_process_object_detection``. One group: the output unchanged."""
    if not _several_groups(config):
        return hf_output
    n = config.num_queries_one2one
    fields = {k: v for k, v in hf_output.items()}
    fields.update(logits=hf_output.logits[:, :n], pred_boxes=hf_output.pred_boxes[:, :n], auxiliary_outputs=None)
    return type(hf_output)(**fields)
