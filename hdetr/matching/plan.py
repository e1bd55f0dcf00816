"""The supervision plan: which predictions are matched to which targets, with what weight.

Every scheme of the paper answers one question per training step: for each
decoder layer, which output set is matched against the ground truth G or the
K-times repeated ground truth, and with what weight? ``plan(config, epoch, num_epochs)``
returns that answer as a list of ``Group`` s; the criterion treats every group
the same way (cost matrix, Hungarian matching, focal + L1 + GIoU, times weight).

``num_epochs`` is the training schedule's length (``train.epochs``): the epoch scheme
matches one-to-many during its first rho = ``one2many_epoch_fraction`` of it. Only that
scheme needs it; the others' plans do not change with the epoch.

Notation of the paper (Sec. 3): one-to-one loss  L_one2one = sum_l L_H(P^l, G),
one-to-many loss  L_one2many = sum_l L_H(P^l, G~) with G~ = {G_1, ..., G_K}
(K copies of G).

Group DETR (Chen et al., 2023): L = sum_g sum_l L_H(P_g^l, G) over G query groups,
each matched one-to-one.

``queries`` names the query set a group is matched on: ``ONE2ONE`` is the main set of the
model's output (``hdetr.outputs``; for the epoch and layer schemes it holds all M or N
queries), ``ONE2MANY`` the extra queries (the hybrid branch's T), ``"group{i}"`` (i >= 1) the
i-th block of n = ``num_queries_one2one`` queries counting the main set as block 0, i.e.
queries [(i-1) n, i n) of the extra set (``query_slice``). Layer ``ENCODER_LAYER`` is the
two-stage encoder's proposals, always matched one-to-one against class-agnostic
targets (as the official code, which never applies one-to-many to them).

``tag`` names the supervision a group gives: "one2one", "one2many" (K copies) or
"group{i}" (one-to-one, Group DETR's i-th extra group). It becomes the loss-key
suffix (none, ``_one2many``, ``_group{i}``: ``loss_suffix``) and the ``group`` of
assignment records, so the extra groups' terms never share a name with the main set's.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from hdetr.errors import UserError
from hdetr.outputs import ENCODER_LAYER, ONE2MANY, ONE2ONE


@dataclass(frozen=True)
class Group:
    """One matching problem of a training step.

    layer: decoder layer index 0..dec_layers-1, or ENCODER_LAYER for the encoder proposals.
    queries: query set, ONE2ONE (main), ONE2MANY (the extra queries) or "group{i}" (block i of n).
    repeat_k: copies of the ground truth matched (1 = one-to-one).
    weight: multiplies every loss term of the group (lambda for the hybrid branch).
    tag: ONE2ONE | ONE2MANY | "group{i}", the supervision (loss-key suffix, record group).
    """

    layer: int
    queries: str
    repeat_k: int
    weight: float
    tag: str


def _one2one(layer: int, queries: str = ONE2ONE) -> Group:
    return Group(layer, queries, 1, 1.0, ONE2ONE)


def _one2many(layer: int, k: int, weight: float, queries: str = ONE2ONE) -> Group:
    return Group(layer, queries, k, weight, ONE2MANY)


def loss_suffix(tag: str) -> str:
    """Loss-key suffix of a group's terms: none for ONE2ONE, ``_{tag}`` otherwise (the official
    ``_one2many``; ``_group{i}`` for Group DETR's extra groups)."""
    return "" if tag == ONE2ONE else f"_{tag}"


def query_slice(queries: str, block: int) -> tuple[str, slice]:
    """Where the query set ``queries`` lives in the model's output (``hdetr.outputs``): (query group,
    slice of its queries).

    block: queries per group (n = ``num_queries_one2one``); "group{i}" is block i of the
    concatenation [main set, extra set], so block i-1 of the ONE2MANY set.
    """
    if queries in (ONE2ONE, ONE2MANY):
        return queries, slice(None)
    if queries.startswith("group") and queries[5:].isdigit() and int(queries[5:]) >= 1:
        i = int(queries[5:])
        return ONE2MANY, slice((i - 1) * block, i * block)
    raise ValueError(f"query set {queries!r}: expected one2one, one2many or group<i> with i >= 1")


def needs_schedule(config) -> bool:
    """Whether the plans of ``config`` depend on the training schedule's length (the epoch scheme)."""
    return config.scheme == "hybrid_epoch"


def check_schedule(config, num_epochs: int | None, caller: str = "plan", required: bool | None = None) -> None:
    """Refuse a missing schedule length where ``config``'s scheme needs one (or ``required``), and
    an impossible one anywhere."""
    if num_epochs is None:
        if needs_schedule(config) if required is None else required:
            raise UserError(
                f"{caller}: scheme={config.scheme} needs num_epochs, the training schedule's length "
                f"(train.epochs), which one2many_epoch_fraction (rho) refers to; pass num_epochs=...")
        return
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, numbers.Integral) or num_epochs < 1:
        raise UserError(f"{caller}: num_epochs={num_epochs!r} must be an integer >= 1 (the training schedule's "
                        f"length, train.epochs)")


def one2many_epochs(config, num_epochs: int) -> int:
    """Number of leading epochs of the epoch scheme that use one-to-many matching (ceil(rho * E)),
    E = ``num_epochs``, the training schedule's length (``train.epochs``)."""
    check_schedule(config, num_epochs, "one2many_epochs", required=True)
    # Rounded first so that 2/3 * 12 is 8 epochs, not 9, whatever the float error.
    return math.ceil(round(config.one2many_epoch_fraction * num_epochs, 6))


def plan(config, epoch: int = 0, num_epochs: int | None = None) -> list[Group]:
    """The groups of one training step at ``epoch`` (0-based) for ``config`` (a ModelConfig).

    ``num_epochs``: the training schedule's length (``train.epochs``); needed by the epoch
    scheme only (its one-to-many phase is the first rho of it), ignored by the others.
    Decoder layers are all supervised when ``aux_loss`` is on, else only the last.
    """
    check_schedule(config, num_epochs)
    last = config.dec_layers - 1
    layers = range(config.dec_layers) if config.aux_loss else [last]
    encoder = [_one2one(ENCODER_LAYER)] if config.two_stage else []
    k = config.k_one2many

    if config.scheme == "baseline":
        # L = L_H(P, G) on every layer.
        return [_one2one(l) for l in layers] + encoder

    if config.scheme == "hybrid_branch":
        # L = L_H(P_one2one, G) + lambda * L_H(P_one2many, G~): two query sets, every layer.
        return (
            [_one2one(l) for l in layers]
            + encoder
            + [_one2many(l, k, config.lambda_one2many, queries=ONE2MANY) for l in layers]
        )

    if config.scheme == "hybrid_epoch":
        # L = L_H(P, G~) for the first rho * E epochs, L_H(P, G) afterwards; one query set.
        if epoch < one2many_epochs(config, num_epochs):
            return [_one2many(l, k, 1.0) for l in layers] + encoder
        return [_one2one(l) for l in layers] + encoder

    if config.scheme == "hybrid_layer":
        # L = sum_{l < L1} L_H(P^l, G~) + sum_{l >= L1} L_H(P^l, G); one query set.
        return [
            _one2many(l, k, 1.0) if l < config.one2many_layers else _one2one(l) for l in layers
        ] + encoder

    if config.scheme == "group_detr":
        # L = sum_g L_H(P_g, G): G groups of n queries, each one-to-one on every layer, weight 1. The
        # encoder proposals are one set shared by all groups: matched once, as in every scheme.
        extra = [Group(l, f"group{i}", 1, 1.0, f"group{i}") for i in range(1, config.num_groups) for l in layers]
        return [_one2one(l) for l in layers] + encoder + extra

    raise ValueError(f"plan: unknown scheme {config.scheme!r}")


def decoder_positives(config, epoch: int, num_objects: int, num_epochs: int | None = None) -> int:
    """Positive (matched) decoder predictions of one image in a training step at ``epoch``,
    summed over the supervised decoder layers: every group matches ``repeat_k`` copies of the
    ``num_objects`` targets, assuming it has at least that many queries. ``num_epochs``: as for
    ``plan`` (the epoch scheme only)."""
    return sum(g.repeat_k * num_objects for g in plan(config, epoch, num_epochs) if g.layer != ENCODER_LAYER)
