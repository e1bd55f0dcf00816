"""Import and export of official H-Deformable-DETR checkpoints (hdetr's own training
checkpoints: ``hdetr.checkpoints.training``).

An official checkpoint is ``{"model": state_dict, "optimizer": ..., "args": Namespace, ...}``
(or a bare state dict). ``from_official_checkpoint`` infers the architecture from the
state dict's keys and shapes (classes, hidden size, layers, FFN size, levels, points,
queries, two-stage, mixed selection, box refinement, backbone), takes what shapes cannot
tell from the checkpoint's ``args`` when present, then from keyword overrides that use
the official argument names, and loads strictly. ``to_official_state_dict`` writes the
exact official key set back, including the decoder heads that the official model
registers twice (``class_embed.N`` and ``transformer.decoder.class_embed.N`` are one
tensor there).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections import OrderedDict
from typing import Any

import torch

from hdetr.checkpoints.state_dict import describe_key_mismatch, load_torch_file, shape_mismatch
from hdetr.errors import ConfigError
from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.models import HDeformableDETR, build_model
from hdetr.models import official_swin_keys

# official argument names that differ from ModelConfig's
OFFICIAL_ALIASES = {"pretrained_backbone_path": "pretrained_backbone"}
# official totals: 300 one-to-one queries, the rest one-to-many
OFFICIAL_NUM_QUERIES_ONE2ONE = 300
_DUPLICATED_HEADS = ("transformer.decoder.class_embed.", "transformer.decoder.bbox_embed.")


def valid_override_names() -> list[str]:
    return sorted({f.name for f in dataclasses.fields(ModelConfig)} | set(OFFICIAL_ALIASES))


# --------------------------------------------------------------------------- reading
def read_official_checkpoint(path_or_state_dict: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(state dict, official args as a dict (empty when absent), a name for messages)."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = str(path_or_state_dict)
        data = load_torch_file(source, "official checkpoint",
                               hint="; if you trust the file, load it yourself and pass its 'model' state dict")
    elif isinstance(path_or_state_dict, dict):
        source, data = "the given state dict", path_or_state_dict
    else:
        raise UserError(f"from_official_checkpoint: expected a file path or a state dict, got "
                        f"{type(path_or_state_dict).__name__}")
    args: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        raw_args = data.get("args")
        if isinstance(raw_args, argparse.Namespace):
            args = vars(raw_args)
        elif isinstance(raw_args, dict):
            args = dict(raw_args)
        data = data["model"]
    if not isinstance(data, dict) or not data:
        raise UserError(f"official checkpoint: {source} holds no state dict (expected a dict of tensors, or "
                        f"one under 'model')")
    if all(k.startswith("module.") for k in data):  # saved from a DistributedDataParallel wrapper
        data = {k[len("module."):]: v for k, v in data.items()}
    # FrozenBatchNorm2d ignores these when loading, in the official code as here
    data = {k: v for k, v in data.items() if not k.endswith(".num_batches_tracked")}
    if "tgt_embed.weight" in data and "query_embed.weight" not in data:
        # some H-DETR ports call the learned content queries tgt_embed
        data = {("query_embed.weight" if k == "tgt_embed.weight" else k): v for k, v in data.items()}
    not_tensors = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UserError(f"official checkpoint: {source}: entries that are not tensors: {not_tensors[:5]}")
    return dict(data), args, source


# --------------------------------------------------------------------------- inference
def _indices(state_dict: dict, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pattern.match(k))})


def _shape(state_dict: dict, key: str, source: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise UserError(f"official checkpoint: {source} has no key {key!r}; it does not look like an "
                        f"H-Deformable-DETR state dict")
    return tuple(state_dict[key].shape)


def infer_backbone(state_dict: dict, source: str) -> str:
    if "backbone.0.body.patch_embed.proj.weight" in state_dict:
        embed_dim = state_dict["backbone.0.body.patch_embed.proj.weight"].shape[0]
        depth = len(_indices(state_dict, "backbone.0.body.layers.2.blocks."))
        rows = _shape(state_dict, "backbone.0.body.layers.0.blocks.0.attn.relative_position_bias_table", source)[0]
        window = (round(rows ** 0.5) + 1) // 2  # the table has (2 * window - 1) ** 2 rows
        names = {(96, 6, 7): "swin_tiny", (96, 18, 7): "swin_small", (128, 18, 7): "swin_base",
                 (192, 18, 7): "swin_large", (192, 18, 12): "swin_large_window12"}
        if (embed_dim, depth, window) not in names:
            raise UserError(f"official checkpoint: {source}: Swin backbone with embed dim {embed_dim}, "
                            f"{depth} blocks in stage 3 and {rows}-row relative position tables is not one of "
                            f"{', '.join(names.values())}")
        return names[(embed_dim, depth, window)]
    blocks = len(_indices(state_dict, "backbone.0.body.layer3."))
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in state_dict
    if not bottleneck and blocks == 2:
        return "resnet18"
    if bottleneck and blocks in (6, 23):
        return "resnet50" if blocks == 6 else "resnet101"
    raise UserError(f"official checkpoint: {source}: cannot tell the backbone (layer3 has {blocks} blocks, "
                    f"bottleneck={bottleneck}); expected resnet18/50/101 or a Swin backbone")


def infer_config(state_dict: dict[str, torch.Tensor], args: dict[str, Any] | None = None,
                 overrides: dict[str, Any] | None = None, source: str = "the state dict") -> ModelConfig:
    """The ModelConfig an official state dict was made with. Priority: ``overrides`` (official
    argument names), then what the shapes say, then the checkpoint's ``args``, then defaults."""
    overrides = _normalise_overrides(overrides or {})
    args = {OFFICIAL_ALIASES.get(k, k): v for k, v in (args or {}).items()}
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    # a backbone file named in the args is where training started, not something to read now
    base = {k: v for k, v in args.items() if k in known and v is not None and k != "pretrained_backbone"}
    sd = state_dict

    num_classes, hidden_dim = _shape(sd, "class_embed.0.weight", source)
    dec_layers = len(_indices(sd, "transformer.decoder.layers."))
    enc_layers = len(_indices(sd, "transformer.encoder.layers."))
    if dec_layers == 0:
        raise UserError(f"official checkpoint: {source} has no transformer.decoder.layers.* keys")
    num_levels = _shape(sd, "transformer.level_embed", source)[0]
    ffn = _shape(sd, "transformer.decoder.layers.0.linear1.weight", source)[0]
    two_stage = "transformer.enc_output.weight" in sd
    query_shape = tuple(sd["query_embed.weight"].shape) if "query_embed.weight" in sd else None
    mixed = two_stage and query_shape is not None
    if two_stage or any(k.startswith("transformer.decoder.bbox_embed.") for k in sd):
        refine = True
    else:
        refine = bool(base.get("with_box_refine", False))
    inferred = dict(num_classes=num_classes, hidden_dim=hidden_dim, dec_layers=dec_layers, enc_layers=enc_layers,
                    num_feature_levels=num_levels, dim_feedforward=ffn, two_stage=two_stage, mixed_selection=mixed,
                    with_box_refine=refine, backbone=infer_backbone(sd, source))
    nheads = overrides.get("nheads", base.get("nheads", 8))
    per_head = nheads * num_levels
    rows = _shape(sd, "transformer.decoder.layers.0.cross_attn.attention_weights.weight", source)[0]
    if rows % per_head:
        raise UserError(f"official checkpoint: {source}: cross-attention has {rows} attention weights, not a "
                        f"multiple of nheads*levels={per_head}; pass nheads=...")
    inferred["dec_n_points"] = rows // per_head
    if enc_layers:
        rows = _shape(sd, "transformer.encoder.layers.0.self_attn.attention_weights.weight", source)[0]
        if rows % per_head:
            raise UserError(f"official checkpoint: {source}: encoder attention has {rows} attention weights, "
                            f"not a multiple of nheads*levels={per_head}; pass nheads=...")
        inferred["enc_n_points"] = rows // per_head

    merged = {**base, **inferred, **overrides}
    if not merged.get("with_box_refine", True) and "look_forward_twice" not in overrides:
        merged["look_forward_twice"] = False
    total = query_shape[0] if query_shape is not None else None
    merged.update(_split_queries(total, overrides, base, source))
    if "scheme" not in overrides:
        merged["scheme"] = "hybrid_branch" if merged["num_queries_one2many"] > 0 else "baseline"
    try:
        return ModelConfig.from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(f"official checkpoint {source}: {exc}") from exc


def _split_queries(total: int | None, overrides: dict, args: dict, source: str) -> dict[str, int]:
    n = overrides.get("num_queries_one2one")
    t = overrides.get("num_queries_one2many")
    if n is None and t is None:
        n, t = args.get("num_queries_one2one"), args.get("num_queries_one2many")
    if total is None:
        return {"num_queries_one2one": int(n if n is not None else OFFICIAL_NUM_QUERIES_ONE2ONE),
                "num_queries_one2many": int(t or 0)}
    if n is not None and t is not None:
        if int(n) + int(t) != total:
            raise UserError(f"official checkpoint: {source} has {total} queries (query_embed.weight), but "
                            f"num_queries_one2one={n} + num_queries_one2many={t} = {int(n) + int(t)}")
        return {"num_queries_one2one": int(n), "num_queries_one2many": int(t)}
    if n is None and t is None:
        single_group = overrides.get("scheme") in ("baseline", "hybrid_epoch", "hybrid_layer")
        n = total if single_group or total <= OFFICIAL_NUM_QUERIES_ONE2ONE else OFFICIAL_NUM_QUERIES_ONE2ONE
    elif n is None:
        n = total - int(t)
    t = total - int(n)
    if int(n) < 1 or t < 0:
        raise UserError(f"official checkpoint: {source} has {total} queries; cannot split them into "
                        f"num_queries_one2one={n} and num_queries_one2many={t}")
    return {"num_queries_one2one": int(n), "num_queries_one2many": int(t)}


def _normalise_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    valid = valid_override_names()
    unknown = sorted(k for k in overrides if k not in valid)
    if unknown:
        raise ConfigError(f"from_official_checkpoint: unknown override(s) {', '.join(unknown)}; valid names: "
                          f"{', '.join(valid)}")
    return {OFFICIAL_ALIASES.get(k, k): v for k, v in overrides.items()}


# --------------------------------------------------------------------------- key mapping
def official_to_own(state_dict: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Drop the decoder's second spelling of the shared heads (the official model loads the
    top-level ``class_embed.N`` last, so that one wins) and map Swin keys to timm's."""
    own = {k: v for k, v in state_dict.items() if not k.startswith(_DUPLICATED_HEADS)}
    if config.backbone.startswith("swin"):
        own = official_swin_keys.to_timm(own)
    return own


def _expected_duplicates(config: ModelConfig, own_keys) -> list[str]:
    prefixes = []
    if config.two_stage:
        prefixes.append("class_embed.")
    if config.with_box_refine:
        prefixes.append("bbox_embed.")
    return [f"transformer.decoder.{k}" for k in own_keys if k.startswith(tuple(prefixes))]


def to_official_state_dict(model: HDeformableDETR) -> "OrderedDict[str, torch.Tensor]":
    """The state dict the official code builds for ``model.config``: same keys, same shapes,
    the shared decoder heads under both names."""
    own = model.state_dict()
    if model.config.backbone.startswith("swin"):
        own = official_swin_keys.to_official(own, model.backbone.feature_extractor.body)
    duplicates = _expected_duplicates(model.config, own)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    inserted = False
    for key, value in own.items():
        if not inserted and not key.startswith("transformer.") and duplicates:
            for dup in duplicates:
                out[dup] = own[dup[len("transformer.decoder."):]]
            inserted = True
        out[key] = value
    return out


# --------------------------------------------------------------------------- loading
def load_official_state_dict(model: HDeformableDETR, state_dict: dict[str, torch.Tensor],
                             source: str = "the state dict") -> None:
    """Load an official state dict strictly; mismatches raise UserError naming ``source`` and the keys."""
    own_expected = model.state_dict()
    official_keys = set(to_official_state_dict(model))
    allowed_duplicates = set(_expected_duplicates(model.config, own_expected))
    unexpected = sorted(k for k in state_dict if k not in official_keys
                        and not (k.startswith(_DUPLICATED_HEADS) and k in allowed_duplicates))
    mapped = official_to_own({k: v for k, v in state_dict.items() if k not in unexpected}, model.config)
    missing = sorted(k for k in own_expected if k not in mapped)
    mismatched = [m for k, value in mapped.items() if k in own_expected and (m := shape_mismatch(k, value, own_expected[k]))]
    for dup in allowed_duplicates & set(state_dict):
        top = dup[len("transformer.decoder."):]
        if top in own_expected and (m := shape_mismatch(dup, state_dict[dup], own_expected[top])):
            mismatched.append(m)
    if missing or unexpected or mismatched:
        raise UserError(f"official checkpoint: {source} does not fit the model built for it: "
                        + describe_key_mismatch(missing, unexpected, mismatched))
    model.load_state_dict(mapped, strict=True)


def from_official_checkpoint(path_or_state_dict: Any, **overrides: Any) -> HDeformableDETR:
    """A model with the weights of an official H-Deformable-DETR checkpoint.

    ``path_or_state_dict``: a file (``{"model": ...}`` or a bare state dict; read with
    ``weights_only=True``) or a state dict. ``overrides`` use the official argument names
    (``num_queries_one2one``, ``num_queries_one2many``, ``k_one2many``, ``lambda_one2many``,
    ``look_forward_twice``, ``dropout``, ``topk``, ``nheads``, ``dilation`` ...) for what the
    weights cannot tell. With only the total number of queries known, 300 are one-to-one
    and the rest one-to-many (a total of 300 or less is the baseline). The number of
    attention heads cannot be read from the weights: it comes from the checkpoint's args,
    or ``nheads=...``, or the official default 8. Swin checkpoints use the official Swin key
    names (``backbone.0.body.layers.N.blocks...``) and are mapped to this project's (timm's) names.
    """
    state_dict, args, source = read_official_checkpoint(path_or_state_dict)
    config = infer_config(state_dict, args, overrides, source)
    if config.pretrained_backbone is not None:  # every backbone weight comes from the checkpoint
        config = config.replace(pretrained_backbone=None)
    model = build_model(config)
    load_official_state_dict(model, state_dict, source)
    return model


# --------------------------------------------------------------------------- official flags
# Flags of the official main.py that concern training, data or logging, not the model.
_OFFICIAL_TRAINING_FLAGS = {
    "lr", "lr_backbone_names", "lr_backbone", "lr_linear_proj_names", "lr_linear_proj_mult", "batch_size",
    "weight_decay", "epochs", "lr_drop", "lr_drop_epochs", "clip_max_norm", "sgd", "frozen_weights",
    "position_embedding", "position_embedding_scale", "masks", "mask_loss_coef", "dice_loss_coef",
    "dataset_file", "coco_path", "coco_panoptic_path", "remove_difficult", "output_dir", "device", "seed",
    "resume", "start_epoch", "num_workers", "cache_mode", "eval", "eval_in_training_set", "use_fp16",
    "use_checkpoint", "use_wandb",
}
_OFFICIAL_SWITCHES = {"with_box_refine", "two_stage", "dilation", "mixed_selection", "look_forward_twice"}


def official_flags_to_overrides(flags: list[str] | str) -> dict[str, str | bool]:
    """Official command-line flags (``"--num_queries_one2one 300 --two_stage ..."``, as in the
    official config scripts) -> keyword overrides for ``from_official_checkpoint``. Training
    and data flags are skipped; an unknown flag raises ConfigError."""
    tokens = flags.split() if isinstance(flags, str) else list(flags)
    valid = set(valid_override_names())
    overrides: dict[str, str | bool] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ConfigError(f"official flags: expected a --flag, got {token!r}")
        name = token[2:]
        takes_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
        value: str | bool = tokens[i + 1] if takes_value else True
        i += 2 if takes_value else 1
        if name == "no_aux_loss":
            overrides["aux_loss"] = False
        elif name in _OFFICIAL_SWITCHES:
            overrides[name] = True
        elif name in _OFFICIAL_TRAINING_FLAGS:
            continue
        elif name in valid:
            overrides[name] = value
        else:
            raise ConfigError(f"official flags: unknown flag --{name}; model flags: "
                              f"{', '.join('--' + n for n in sorted(valid))}")
    return overrides
