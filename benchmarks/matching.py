"""Matching + loss of the hybrid branch: batched criterion vs the official per-layer path.

The naive path is the official ``train_hybrid``: one SetCriterion call for the
one-to-one queries and one for the one-to-many queries, each calling the
Hungarian matcher once per decoder layer (and the encoder), every call building
a ``[B*Q, sum(G)]`` matrix with the focal cost of all classes and moving it to
the host. It is re-implemented below (same arithmetic) so both paths run side
by side on the same outputs, interleaved, in one process.

Shapes default to the paper's: 300 + 1500 queries, 91 classes, K=6, 6 decoder
layers plus the encoder proposals, batch 2, 7-30 boxes per image.

    python benchmarks/matching.py            # writes reports/bench/matching.json
"""
from __future__ import annotations

import argparse
import copy
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from hdetr.boxes import cxcywh_to_xyxy, generalized_box_iou
from hdetr.config.model import hybrid_branch
from hdetr.losses import build_criterion, sigmoid_focal_loss

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench" / "matching.json"


# -- the official path, re-implemented ---------------------------------------------------------
def naive_match(outputs, targets, config):
    """The official HungarianMatcher: one matrix over the batch, one host copy per call."""
    with torch.no_grad():
        batch, queries = outputs["pred_logits"].shape[:2]
        prob = outputs["pred_logits"].flatten(0, 1).sigmoid()
        out_bbox = outputs["pred_boxes"].flatten(0, 1)
        tgt_ids = torch.cat([t["labels"] for t in targets])
        tgt_bbox = torch.cat([t["boxes"] for t in targets])
        alpha, gamma = config.focal_alpha, config.focal_gamma
        neg = (1 - alpha) * prob**gamma * -(1 - prob + 1e-8).log()
        pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
        cost = (
            config.set_cost_bbox * torch.cdist(out_bbox, tgt_bbox, p=1)
            + config.set_cost_class * (pos[:, tgt_ids] - neg[:, tgt_ids])
            + config.set_cost_giou * -generalized_box_iou(cxcywh_to_xyxy(out_bbox), cxcywh_to_xyxy(tgt_bbox))
        ).view(batch, queries, -1).cpu()
        sizes = [len(t["boxes"]) for t in targets]
        return [
            tuple(torch.as_tensor(x, dtype=torch.int64) for x in linear_sum_assignment(c[i]))
            for i, c in enumerate(cost.split(sizes, -1))
        ]


def naive_layer_losses(outputs, targets, indices, num_boxes, config):
    logits = outputs["pred_logits"]
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
    classes = torch.full(logits.shape[:2], logits.shape[2], dtype=torch.int64)
    classes[batch_idx, src_idx] = labels
    onehot = torch.zeros(*logits.shape[:2], logits.shape[2] + 1, dtype=logits.dtype)
    onehot.scatter_(2, classes.unsqueeze(-1), 1)
    focal = sigmoid_focal_loss(logits, onehot[..., :-1], config.focal_alpha, config.focal_gamma)
    src = outputs["pred_boxes"][batch_idx, src_idx]
    tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
    giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)))
    return {
        "loss_ce": focal.mean(1).sum() / num_boxes * logits.shape[1],
        "loss_bbox": F.l1_loss(src, tgt, reduction="none").sum() / num_boxes,
        "loss_giou": (1 - giou).sum() / num_boxes,
    }


def naive_set_criterion(outputs, targets, config):
    num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
    losses = naive_layer_losses(outputs, targets, naive_match(outputs, targets, config), num_boxes, config)
    for i, aux in enumerate(outputs.get("aux_outputs", [])):
        layer = naive_layer_losses(aux, targets, naive_match(aux, targets, config), num_boxes, config)
        losses.update({f"{k}_{i}": v for k, v in layer.items()})
    if "enc_outputs" in outputs:
        bin_targets = copy.deepcopy(targets)
        for t in bin_targets:
            t["labels"] = torch.zeros_like(t["labels"])
        enc = outputs["enc_outputs"]
        layer = naive_layer_losses(enc, bin_targets, naive_match(enc, bin_targets, config), num_boxes, config)
        losses.update({f"{k}_enc": v for k, v in layer.items()})
    return losses


def naive_train_hybrid(outputs, targets, config):
    losses = naive_set_criterion(
        {k: v for k, v in outputs.items() if "one2many" not in k}, targets, config)
    multi = copy.deepcopy(targets)
    for t in multi:
        t["boxes"] = t["boxes"].repeat(config.k_one2many, 1)
        t["labels"] = t["labels"].repeat(config.k_one2many)
    one2many = {"pred_logits": outputs["pred_logits_one2many"], "pred_boxes": outputs["pred_boxes_one2many"],
                "aux_outputs": outputs["aux_outputs_one2many"]}
    for key, value in naive_set_criterion(one2many, multi, config).items():
        losses[key + "_one2many"] = value * config.lambda_one2many
    return losses


# -- inputs --------------------------------------------------------------------------------------
def make_inputs(config, batch, proposals, min_boxes, max_boxes, seed):
    gen = torch.Generator().manual_seed(seed)

    def prediction(queries):
        logits = torch.randn(batch, queries, config.num_classes, generator=gen) - 2.0
        boxes = torch.cat((torch.rand(batch, queries, 2, generator=gen) * 0.8 + 0.1,
                           torch.rand(batch, queries, 2, generator=gen) * 0.3 + 0.02), -1)
        return {"pred_logits": logits.requires_grad_(True), "pred_boxes": boxes.requires_grad_(True)}

    main = [prediction(config.num_queries_one2one) for _ in range(config.dec_layers)]
    extra = [prediction(config.num_queries_one2many) for _ in range(config.dec_layers)]
    outputs = {
        **main[-1], "aux_outputs": main[:-1],
        "pred_logits_one2many": extra[-1]["pred_logits"], "pred_boxes_one2many": extra[-1]["pred_boxes"],
        "aux_outputs_one2many": extra[:-1], "enc_outputs": prediction(proposals),
    }
    targets = []
    for _ in range(batch):
        count = int(torch.randint(min_boxes, max_boxes + 1, (1,), generator=gen))
        boxes = torch.cat((torch.rand(count, 2, generator=gen) * 0.6 + 0.2,
                           torch.rand(count, 2, generator=gen) * 0.3 + 0.05), 1)
        targets.append({"labels": torch.randint(0, config.num_classes, (count,), generator=gen), "boxes": boxes})
    return outputs, targets


def leaves(outputs):
    found = []
    for value in outputs.values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            found.extend(item.values() if isinstance(item, dict) else [item])
    return found


def timed(step, outputs) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``step``; CPU time ignores waits for a core on a shared machine."""
    for tensor in leaves(outputs):
        tensor.grad = None
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--proposals", type=int, default=4096,
                        help="encoder proposals per image (sum of H*W over levels)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    config = hybrid_branch(num_queries_one2one=300, num_queries_one2many=1500, k_one2many=6, dec_layers=6)
    criterion = build_criterion(config)
    outputs, targets = make_inputs(config, args.batch, args.proposals, 7, 30, seed=0)

    fast = criterion(outputs, targets)
    slow = naive_train_hybrid(outputs, targets, config)
    assert set(fast) >= set(slow), sorted(set(slow) - set(fast))
    worst = max(abs(fast[k].item() - slow[k].item()) / max(abs(slow[k].item()), 1e-9) for k in slow)
    assert worst < 1e-4, f"paths disagree: worst relative difference {worst}"

    paths = {
        "naive_matching": lambda: [naive_match(o, t, config) for o, t in _naive_problems(outputs, targets, config)],
        "batched_matching": lambda: criterion.match(outputs, targets),
        "naive_matching_loss": lambda: naive_train_hybrid(outputs, targets, config),
        "batched_matching_loss": lambda: criterion(outputs, targets),
        "naive_matching_loss_backward": lambda: _backward(naive_train_hybrid(outputs, targets, config),
                                                          criterion.weight_dict),
        "batched_matching_loss_backward": lambda: _backward(criterion(outputs, targets), criterion.weight_dict),
    }
    times = {clock: {name: [] for name in paths} for clock in ("wall", "cpu")}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all paths alike
        for name, step in paths.items():
            wall, cpu = timed(step, outputs)
            times["wall"][name].append(wall)
            times["cpu"][name].append(cpu)
    median = {clock: {name: statistics.median(v) for name, v in per.items()} for clock, per in times.items()}

    def ratios(m):
        return {
            "matching": m["naive_matching"] / m["batched_matching"],
            "matching_loss": m["naive_matching_loss"] / m["batched_matching_loss"],
            "matching_loss_backward": m["naive_matching_loss_backward"] / m["batched_matching_loss_backward"],
        }

    result = {
        "command": " ".join(["python", "benchmarks/matching.py", *map(shlex.quote, argv or sys.argv[1:])]),
        "shapes": {"batch": args.batch, "num_queries_one2one": 300, "num_queries_one2many": 1500, "k_one2many": 6,
                   "dec_layers": 6, "num_classes": 91, "encoder_proposals": args.proposals,
                   "boxes_per_image": [len(t["labels"]) for t in targets]},
        "threads": args.threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "primary_clock": "cpu (process CPU time; the machine is shared, wall time is reported too)",
        "ratios": ratios(median["cpu"]),
        "ratios_wall": ratios(median["wall"]),
        "median_seconds_cpu": median["cpu"],
        "median_seconds_wall": median["wall"],
        "max_relative_loss_difference": worst,
        "target": "every ratio >= 3",
    }
    for name in paths:
        print(f"{name:34s} cpu {median['cpu'][name] * 1000:8.1f} ms   wall {median['wall'][name] * 1000:8.1f} ms")
    for name, value in result["ratios"].items():
        print(f"ratio {name:28s} cpu {value:5.2f}x   wall {result['ratios_wall'][name]:5.2f}x")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _naive_problems(outputs, targets, config):
    multi = [{"labels": t["labels"].repeat(config.k_one2many), "boxes": t["boxes"].repeat(config.k_one2many, 1)}
             for t in targets]
    binary = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
    problems = [(outputs, targets)] + [(a, targets) for a in outputs["aux_outputs"]]
    problems.append((outputs["enc_outputs"], binary))
    one2many = {"pred_logits": outputs["pred_logits_one2many"], "pred_boxes": outputs["pred_boxes_one2many"]}
    problems += [(one2many, multi)] + [(a, multi) for a in outputs["aux_outputs_one2many"]]
    return problems


def _backward(losses, weight_dict):
    sum(losses[k] * w for k, w in weight_dict.items() if k in losses).backward()


if __name__ == "__main__":
    raise SystemExit(main())
