"""The H-DETR criterion: focal + L1 + GIoU over the groups of the supervision plan.

``build_criterion(config, num_epochs=None)(outputs, targets, epoch=0, record=False)`` returns
the official loss dict (``num_epochs``: the training schedule's length, ``train.epochs``,
needed by the epoch scheme only); the total loss is
``sum(losses[k] * criterion.weight_dict[k] for k in criterion.weight_dict if k in losses)``.

Loss keys (the official names, so logs compare with the official code)
-------------------------------------------------------------------------
``loss_ce`` (sigmoid focal), ``loss_bbox`` (L1 on cxcywh), ``loss_giou`` (1 - GIoU),
each divided by the number of target boxes (K times it for K-repeated targets),
averaged over processes under DDP. Suffixes name where a term comes from:

- none: the last decoder layer; ``_{i}``: decoder layer i < dec_layers - 1;
  ``_enc``: the two-stage encoder proposals (class-agnostic targets: label 0).
- ``_one2many``: the group was matched against the K-times repeated targets.
- ``_group{i}``: Group DETR's i-th extra query group (one-to-one).

Logged, not weighted (as the official): ``class_error`` (100 - top-1 accuracy of
the matched queries, last layer only) and ``cardinality_error`` (per layer).

Per scheme:

- baseline: the plain keys.
- hybrid_branch: the plain keys for the n one-to-one queries, ``..._one2many``
  for the T extra queries (every layer, no encoder term), each multiplied by
  lambda as the official ``train_hybrid`` does (class_error_one2many included).
- hybrid_epoch: during the first rho of the epochs every decoder key carries
  ``_one2many`` (the only supervision is one-to-many, so there is no plain
  ``loss_ce``/``class_error`` then); afterwards the plain keys.
- hybrid_layer: layers l < L1 give ``loss_*_{l}_one2many``, the last L2 layers
  the plain keys. We chose a suffix over plain keys because the key then says
  which target set a layer was matched against, and a log never mixes the two
  kinds of terms under one name; the weights are the same either way, so the
  total loss does not depend on this choice.
- group_detr: the plain keys for the first group (the one inference keeps),
  ``..._group{i}`` for group i = 1..G-1 (every layer, weight 1, no encoder term).

Speed: all groups of a step are matched in one call (see
``hdetr.matching.hungarian``), and the layers of a group share one stacked focal
loss and one gather of matched boxes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hdetr.distributed import is_distributed
from hdetr.boxes import box_iou, cxcywh_to_xyxy, paired_generalized_box_iou
from hdetr.errors import UserError
from hdetr.matching.costs import class_cost, giou_cost, l1_cost
from hdetr.matching.hungarian import Assignment, HungarianMatcher, MatchProblem
from hdetr.matching.plan import Group, check_schedule, loss_suffix, plan, query_slice
from hdetr.matching.records import AssignmentRecord
from hdetr.matching.targets import PaddedTargets, pad_targets
from hdetr.outputs import ENCODER_LAYER, ONE2ONE, ModelOutput

def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al.), no reduction; logits, targets [...] -> [...]."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def average_num_boxes(count: int, device: torch.device) -> float:
    """Boxes per process: all_reduce of ``count`` over processes divided by the world size (no clamp)."""
    total = torch.as_tensor([float(count)], device=device)
    if is_distributed():
        dist.all_reduce(total)
        total = total / dist.get_world_size()
    return total.item()


def official_weight_dict(config, num_epochs: int | None = None) -> dict[str, float]:
    """Weights in the official layout: every key with and without ``_one2many``.

    As in the official code, the ``_enc`` keys are weighted only when aux_loss is on:
    with aux_loss off (``--no_aux_loss``) the two-stage encoder loss is computed and
    logged but not part of the total. Kept for parity, so totals and gradients
    equal the official ones in every configuration.
    """
    base = {"loss_ce": config.cls_loss_coef, "loss_bbox": config.bbox_loss_coef, "loss_giou": config.giou_loss_coef}
    weights = dict(base)
    if config.aux_loss:
        for i in range(config.dec_layers - 1):
            weights.update({f"{k}_{i}": v for k, v in base.items()})
        if config.two_stage:
            weights.update({f"{k}_enc": v for k, v in base.items()})
    # every key once per supervision the plan can name (the official "" and "_one2many", Group DETR's groups)
    suffixes = dict.fromkeys(["", "_one2many", *(loss_suffix(g.tag) for g in plan(config, 0, num_epochs))])
    return {f"{k}{suffix}": v for k, v in weights.items() for suffix in suffixes}


@dataclass
class _StackedGroups:
    """Plan groups that share an output set, target set, K, weight and tag, stacked over layers.

    logits [L, B, Q, C] and boxes [L, B, Q, 4] keep their autograd history.
    """

    groups: list[Group]
    logits: torch.Tensor
    boxes: torch.Tensor
    targets: PaddedTargets

    @property
    def first(self) -> Group:
        return self.groups[0]

    @property
    def name(self) -> str:
        layers = ", ".join(str(g.layer) for g in self.groups)
        return f"{self.first.tag} group on {self.first.queries} queries, layers {layers}"


class HybridCriterion(nn.Module):
    """Loss of every scheme; see the module docstring for the keys."""

    def __init__(self, config, num_epochs: int | None = None):
        super().__init__()
        check_schedule(config, num_epochs, "build_criterion")
        self.config = config
        self.num_epochs = num_epochs  # the training schedule's length (the epoch scheme's rho refers to it)
        self.matcher = HungarianMatcher.from_config(config)
        self.weight_dict = official_weight_dict(config, num_epochs)
        self.last_assignments: list[AssignmentRecord] = []

    def forward(self, outputs: ModelOutput | dict, targets: list[dict], epoch: int = 0,
                record: bool = False) -> dict:
        """outputs: the model's ``ModelOutput`` (or the official output dict); targets: per image
        ``labels`` [G] and normalised cxcywh ``boxes`` [G, 4]; epoch: 0-based, decides the epoch
        scheme's phase. Returns loss name -> scalar tensor; with ``record`` also fills
        ``last_assignments``."""
        outputs = _as_output(outputs)
        device = outputs.logits[ONE2ONE].device
        if len(targets) != outputs.batch_size:
            raise UserError(f"criterion: {len(targets)} target dicts for a batch of {outputs.batch_size} images")
        padded = pad_targets(targets, self.config.num_classes, device)
        boxes_per_process = average_num_boxes(padded.total, device)
        stacks, matches = self._match(outputs, padded, epoch)
        losses: dict[str, torch.Tensor] = {}
        records: list[AssignmentRecord] = []
        for stack, assignments in zip(stacks, matches):
            num_boxes = max(stack.first.repeat_k * boxes_per_process, 1.0)
            pairs = _matched_pairs(stack, assignments)
            losses.update(self._losses(stack, pairs, num_boxes))
            if record:
                records.extend(self._records(stack, assignments, pairs))
        self.last_assignments = records
        return losses

    @torch.no_grad()
    def match(self, outputs: ModelOutput | dict, targets: list[dict], epoch: int = 0
              ) -> list[tuple[Group, list[Assignment]]]:
        """Only the matching stage of ``forward``: (plan group, per-image Assignments) for every
        group the outputs supply; one batched pass, one device-to-host transfer."""
        outputs = _as_output(outputs)
        padded = pad_targets(targets, self.config.num_classes, outputs.logits[ONE2ONE].device)
        stacks, matches = self._match(outputs, padded, epoch)
        return [(g, per_image) for s, m in zip(stacks, matches) for g, per_image in zip(s.groups, m)]

    def _match(self, outputs: ModelOutput, padded: PaddedTargets, epoch: int):
        stacks = self._stack(plan(self.config, epoch, self.num_epochs), outputs, padded)
        matches = self.matcher.match([
            MatchProblem(s.logits, s.boxes, s.targets, s.first.repeat_k, s.name) for s in stacks
        ])
        return stacks, matches

    def total_loss(self, losses: dict) -> torch.Tensor:
        """The weighted sum of the terms that have a weight."""
        return sum(losses[k] * w for k, w in self.weight_dict.items() if k in losses)

    # -- grouping ---------------------------------------------------------------------------
    def _stack(self, groups: list[Group], outputs: ModelOutput, padded: PaddedTargets) -> list[_StackedGroups]:
        buckets: dict[tuple, list[Group]] = {}
        for group in groups:
            key = (group.queries, group.layer == ENCODER_LAYER, group.repeat_k, group.weight, group.tag)
            buckets.setdefault(key, []).append(group)
        stacks = []
        for members in buckets.values():
            found = [(g, i) for g in members if (i := self._output_index(outputs, g)) is not None]
            if not found:
                continue
            first = found[0][0]
            if first.layer == ENCODER_LAYER:
                logits, boxes = outputs.enc_logits[None], outputs.enc_boxes[None]
            else:
                name, part = query_slice(first.queries, self.config.num_queries_one2one)
                logits, boxes = _layers(outputs.logits[name][:, :, part], outputs.boxes[name][:, :, part],
                                        [i for _, i in found])
            if logits.shape[2] == 0:
                continue  # no queries in this group (eval mode's empty one-to-many set)
            group_targets = padded.class_agnostic() if first.layer == ENCODER_LAYER else padded
            stacks.append(_StackedGroups(groups=[g for g, _ in found], logits=logits, boxes=boxes,
                                         targets=group_targets))
        return stacks

    def _output_index(self, outputs: ModelOutput, group: Group) -> int | None:
        """Where ``group``'s predictions are among the stacked layers of its query group, or None
        when the model did not produce them (no aux outputs, no encoder proposals)."""
        if group.layer == ENCODER_LAYER:
            return None if outputs.enc_logits is None else ENCODER_LAYER
        stored = outputs.num_layers(query_slice(group.queries, self.config.num_queries_one2one)[0])
        dec_layers = self.config.dec_layers
        if stored not in (1, dec_layers):
            raise UserError(f"criterion: the outputs hold {stored} decoder layers of the {group.queries} queries, "
                            f"the config's dec_layers={dec_layers} expects {dec_layers} (or 1, the last)")
        index = group.layer - (dec_layers - stored)  # the stacked layers are the last ones
        return index if index >= 0 else None

    # -- losses -----------------------------------------------------------------------------
    def _losses(self, stack: _StackedGroups, pairs: "_Pairs", num_boxes: float) -> dict:
        logits, boxes = stack.logits, stack.boxes
        num_layers = len(stack.groups)
        labels = stack.targets.labels[pairs.image, pairs.target]
        focal = _focal_loss_per_layer(logits, pairs, labels, self.config.focal_alpha, self.config.focal_gamma)
        per_layer = {"loss_ce": focal / num_boxes}

        src = boxes[pairs.layer, pairs.image, pairs.query]
        tgt = stack.targets.boxes[pairs.image, pairs.target]
        l1 = (src - tgt).abs().sum(-1)
        giou = 1 - paired_generalized_box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt))
        per_layer["loss_bbox"] = l1.new_zeros(num_layers).index_add(0, pairs.layer, l1) / num_boxes
        per_layer["loss_giou"] = giou.new_zeros(num_layers).index_add(0, pairs.layer, giou) / num_boxes

        with torch.no_grad():
            sizes = torch.as_tensor(stack.targets.sizes, device=logits.device) * stack.first.repeat_k
            predicted = (logits.argmax(-1) != logits.shape[-1] - 1).sum(-1)
            per_layer["cardinality_error"] = (predicted - sizes).abs().float().mean(-1)

        weight = stack.first.weight
        suffix = loss_suffix(stack.first.tag)
        losses = {}
        for index, group in enumerate(stack.groups):
            key_suffix = self._layer_suffix(group.layer) + suffix
            for name, values in per_layer.items():
                losses[name + key_suffix] = values[index] * weight
            if group.layer == self.config.dec_layers - 1:
                losses["class_error" + suffix] = _class_error(logits, pairs, labels, index) * weight
        return losses

    def _layer_suffix(self, layer: int) -> str:
        if layer == ENCODER_LAYER:
            return "_enc"
        return "" if layer == self.config.dec_layers - 1 else f"_{layer}"

    # -- records ----------------------------------------------------------------------------
    @torch.no_grad()
    def _records(self, stack: _StackedGroups, assignments: list[list[Assignment]], pairs: "_Pairs") -> list:
        labels = stack.targets.labels[pairs.image, pairs.target]
        pred = stack.boxes.detach()[pairs.layer, pairs.image, pairs.query]
        tgt = stack.targets.boxes[pairs.image, pairs.target]
        prob = stack.logits.detach()[pairs.layer, pairs.image, pairs.query, labels].sigmoid()
        terms = torch.stack((
            class_cost(prob, self.config.focal_alpha, self.config.focal_gamma),
            l1_cost(pred, tgt),
            giou_cost(pred, tgt),
        ), dim=1).cpu()
        pred_xyxy, tgt_xyxy = cxcywh_to_xyxy(pred).cpu(), cxcywh_to_xyxy(tgt).cpu()
        records, start = [], 0
        for index, group in enumerate(stack.groups):
            for image, assignment in enumerate(assignments[index]):
                count = len(assignment.query_indices)
                part = slice(start, start + count)
                start += count
                size = max(stack.targets.sizes[image], 1)
                iou = box_iou(pred_xyxy[part], tgt_xyxy[part])[0].diagonal() if count else torch.zeros(0)
                records.append(AssignmentRecord(
                    image_index=image,
                    layer=group.layer,
                    group=group.tag,
                    query_indices=assignment.query_indices,
                    target_indices=assignment.target_indices % size,
                    copy_indices=assignment.target_indices // size,
                    cost_class=terms[part, 0],
                    cost_bbox=terms[part, 1],
                    cost_giou=terms[part, 2],
                    iou=iou,
                ))
        return records


def _as_output(outputs: ModelOutput | dict) -> ModelOutput:
    if not isinstance(outputs, ModelOutput) and ("pred_logits" not in outputs or "pred_boxes" not in outputs):
        raise UserError(f"criterion: outputs need 'pred_logits' and 'pred_boxes', got keys {sorted(outputs)}")
    return ModelOutput.from_official_dict(outputs)


def _layers(logits: torch.Tensor, boxes: torch.Tensor, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The stacked layers ``indices`` of [L, B, Q, ...] logits and boxes, as new contiguous
    [len(indices), B, Q, ...] tensors (one slice when the layers are consecutive)."""
    if indices == list(range(indices[0], indices[0] + len(indices))):
        part = slice(indices[0], indices[0] + len(indices))
        return logits[part].contiguous(), boxes[part].contiguous()
    index = torch.as_tensor(indices, device=logits.device)
    return logits.index_select(0, index), boxes.index_select(0, index)


@dataclass
class _Pairs:
    """Matched pairs of a stack, flattened over (layer, image): indices [P] on the predictions' device.
    ``target`` indexes the image's original (not repeated) targets."""

    layer: torch.Tensor
    image: torch.Tensor
    query: torch.Tensor
    target: torch.Tensor


def _matched_pairs(stack: _StackedGroups, assignments: list[list[Assignment]]) -> _Pairs:
    columns: list[list[torch.Tensor]] = [[], [], [], []]
    for layer, per_image in enumerate(assignments):
        for image, assignment in enumerate(per_image):
            count = len(assignment.query_indices)
            size = max(stack.targets.sizes[image], 1)
            columns[0].append(torch.full((count,), layer, dtype=torch.int64))
            columns[1].append(torch.full((count,), image, dtype=torch.int64))
            columns[2].append(assignment.query_indices)
            columns[3].append(assignment.target_indices % size)
    # One host-to-device copy for all index columns.
    flat = torch.stack([torch.cat(c) for c in columns]).to(stack.logits.device)
    return _Pairs(*flat.unbind(0))


class _BackgroundFocalSum(torch.autograd.Function):
    """Focal loss of every logit scored as background, summed per leading index:
    [L, ...] -> [L], ``(1 - alpha) * sigmoid(x)^gamma * softplus(x)``.

    Written as one autograd node that keeps only the logits: autograd would keep
    four full-size intermediates and spend twice the passes on the backward.
    d/dx [s^gamma * softplus(x)] = s^gamma * (gamma * (1 - s) * softplus(x) + s), s = sigmoid(x).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
        ctx.save_for_backward(logits)
        ctx.alpha, ctx.gamma = alpha, gamma
        value = logits.sigmoid().pow_(gamma).mul_(F.softplus(logits))
        return value.flatten(1).sum(1) * (1 - alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (logits,) = ctx.saved_tensors
        prob = logits.sigmoid()
        inner = (1 - prob).mul_(F.softplus(logits)).mul_(ctx.gamma).add_(prob)
        scale = grad.mul(1 - ctx.alpha).view(-1, *([1] * (logits.dim() - 1)))
        return prob.pow_(ctx.gamma).mul_(inner).mul_(scale), None, None


def _focal_loss_per_layer(logits: torch.Tensor, pairs: _Pairs, labels: torch.Tensor, alpha: float,
                          gamma: float) -> torch.Tensor:
    """Sum of the sigmoid focal loss over [L, B, Q, C] logits with one-hot targets at the matched
    (layer, image, query, label) entries -> [L].

    The one-hot target is never built: every entry is first scored as background
    (one dense pass), then the few matched entries swap their background term
    for the foreground one. Same value as ``sigmoid_focal_loss`` summed, in a
    third of the dense passes (and of the memory autograd keeps).
    """
    per_layer = _BackgroundFocalSum.apply(logits, alpha, gamma)
    matched = logits[pairs.layer, pairs.image, pairs.query, labels]
    prob = matched.sigmoid()
    foreground = alpha * (1 - prob).pow(gamma) * F.softplus(-matched)
    swap = foreground - (1 - alpha) * prob.pow(gamma) * F.softplus(matched)
    return per_layer.index_add(0, pairs.layer, swap)


def _class_error(logits: torch.Tensor, pairs: _Pairs, labels: torch.Tensor, layer_index: int) -> torch.Tensor:
    """100 - top-1 accuracy (%) of the matched queries of one stacked layer (100 when nothing matched,
    as the official ``accuracy`` returns 0 for no targets)."""
    with torch.no_grad():
        keep = pairs.layer == layer_index
        predicted = logits[layer_index, pairs.image[keep], pairs.query[keep]].argmax(-1)
        matched = keep.sum()
        correct = (predicted == labels[keep]).sum().float()
        accuracy = torch.where(matched > 0, correct * 100.0 / matched.clamp(min=1), torch.zeros_like(correct))
        return 100 - accuracy


def build_criterion(config, num_epochs: int | None = None) -> HybridCriterion:
    """The criterion for ``config`` (a ModelConfig: scheme, K, T, lambda, rho, L1/L2, costs, weights).

    ``num_epochs``: the training schedule's length (``train.epochs``), whose first rho the epoch
    scheme (``hybrid_epoch``) matches one-to-many; required for that scheme, not needed by the others.
    """
    return HybridCriterion(config, num_epochs)
