"""What each hybrid scheme costs: training seconds per iteration, inference images per second, peak memory, parameters.

The cost columns of Table 6 / Table 7 (train minutes per epoch, FPS, GPU memory),
measured on the schemes' models at any scale:

- training: one optimiser-free step (forward, matching + loss, backward) per scheme in
  turn, ``iterations`` rounds after ``warmup`` ones, so that machine load hits every
  scheme alike; the median step and its ratio to the first scheme (the baseline);
- inference: eval forwards under ``torch.no_grad`` (the schemes' one-to-one queries),
  images per second;
- peak memory: on CUDA ``torch.cuda.max_memory_allocated`` of one training step
  (reset per scheme); on the CPU the peak resident set of a fresh process that builds
  the model and runs one training step (a process's peak RSS never goes down, so one
  process cannot measure several models);
- parameters: the model's trainable and total parameter counts.

``scheme_costs(models, ...)`` returns one ``SchemeCost`` per model; ``benchmarks/scheme_costs.py``
writes them to ``reports/bench/``. bf16 runs the forward and loss under ``torch.autocast``.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from typing import Mapping

import torch

from hdetr.config.model import ModelConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass
class SchemeCost:
    key: str
    train_seconds_per_iter: float
    train_ratio_to_baseline: float
    inference_images_per_s: float
    peak_memory_mb: float | None
    memory_kind: str  # cpu_peak_rss (a fresh process) or cuda_max_allocated
    parameters: int
    trainable_parameters: int
    queries_train: int
    queries_eval: int
    process_floor_mb: float | None = None  # cpu: the fresh process's RSS after its imports, before the model


def synthetic_batch(batch_size: int, size: int, num_classes: int, device: torch.device, seed: int = 0):
    """(images [B, 3, size, size], mask [B, size, size] all valid, targets with 12..25 boxes each)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, size, size, generator=gen)
    targets = []
    for i in range(batch_size):
        count = 12 + (13 * i) % 14
        boxes = torch.cat((torch.rand(count, 2, generator=gen) * 0.6 + 0.2,
                           torch.rand(count, 2, generator=gen) * 0.3 + 0.05), 1)
        targets.append({"labels": torch.randint(0, num_classes, (count,), generator=gen).to(device),
                        "boxes": boxes.to(device)})
    return images.to(device), torch.zeros(batch_size, size, size, dtype=torch.bool, device=device), targets


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model, criterion, batch, device: torch.device, dtype: torch.dtype) -> float:
    """Seconds of one training step (forward, matching + loss, backward; no optimiser update)."""
    images, mask, targets = batch
    model.zero_grad(set_to_none=True)
    _sync(device)
    start = time.perf_counter()
    with _autocast(device, dtype):
        outputs = model(images, mask)
        outputs = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}
        total = criterion.total_loss(criterion(outputs, targets, epoch=0))
    total.backward()
    _sync(device)
    return time.perf_counter() - start


def _build(config: ModelConfig, device: torch.device):
    from hdetr.losses import build_criterion
    from hdetr.models import build_model

    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    # the step is timed at epoch 0, where the epoch scheme's one-to-many phase (the first rho of the
    # schedule, rho > 0) is whatever the schedule's length: one epoch stands for any
    criterion = build_criterion(config, num_epochs=1)
    if isinstance(criterion, torch.nn.Module):
        criterion.to(device)
    return model, criterion


def peak_rss_mb(config: ModelConfig, batch_size: int, size: int) -> tuple[float, float]:
    """(peak resident memory, resident memory after imports) in MB of a fresh process that builds
    ``config`` and runs one CPU training step."""
    payload = json.dumps({"config": config.to_dict(), "batch_size": batch_size, "size": size})
    proc = subprocess.run([sys.executable, "-m", "hdetr.studies.scheme_costs", payload], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"peak RSS process failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["peak_rss_mb"]), float(result["after_imports_mb"])


def scheme_costs(models: Mapping[str, ModelConfig], *, batch_size: int, image_size: int, iterations: int = 3,
                 warmup: int = 1, inference_batches: int = 2, device: str = "cpu", dtype: str = "fp32",
                 log=print) -> list[SchemeCost]:
    """The costs of each model of ``models`` (the first is the baseline of the ratios), in ``models``' order."""
    if iterations < 1 or warmup < 0:
        raise ValueError(f"iterations={iterations} must be >= 1 and warmup={warmup} >= 0")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    dev, dt = torch.device(device), DTYPES[dtype]
    built = {key: _build(config, dev) for key, config in models.items()}
    num_classes = min(c.num_classes for c in models.values())
    batch = synthetic_batch(batch_size, image_size, num_classes, dev)
    peaks: dict[str, float | None] = {}
    floors: dict[str, float | None] = {key: None for key in built}
    for key, (model, criterion) in built.items():  # warm-up; on CUDA also the peak of one step
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(max(1, warmup)):
            train_step(model, criterion, batch, dev, dt)
        peaks[key] = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    times: dict[str, list[float]] = {key: [] for key in built}
    for _ in range(iterations):  # interleaved: every round runs every scheme once
        for key, (model, criterion) in built.items():
            times[key].append(train_step(model, criterion, batch, dev, dt))
    out = []
    first = next(iter(built))
    base = statistics.median(times[first])
    for key, (model, criterion) in built.items():
        model.eval()
        with torch.no_grad(), _autocast(dev, dt):
            model(batch[0], batch[1])
            _sync(dev)
            start = time.perf_counter()
            for _ in range(inference_batches):
                model(batch[0], batch[1])
            _sync(dev)
        fps = inference_batches * batch_size / (time.perf_counter() - start)
        if dev.type == "cpu":
            peaks[key], floors[key] = peak_rss_mb(models[key], batch_size, image_size)
        step = statistics.median(times[key])
        cfg = models[key]
        train_queries = cfg.num_queries  # n + T, or G n (Group DETR)
        out.append(SchemeCost(key=key, train_seconds_per_iter=round(step, 4),
                              train_ratio_to_baseline=round(step / base, 3), inference_images_per_s=round(fps, 2),
                              peak_memory_mb=None if peaks[key] is None else round(peaks[key], 1),
                              memory_kind="cuda_max_allocated" if dev.type == "cuda" else "cpu_peak_rss",
                              parameters=sum(p.numel() for p in model.parameters()),
                              trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                              queries_train=train_queries, queries_eval=cfg.num_queries_one2one,
                              process_floor_mb=None if floors[key] is None else round(floors[key], 1)))
        log(f"{key:14s} train {step:.3f} s/iter ({step / base:.2f}x)  inference {fps:.1f} img/s  "
            f"peak {out[-1].peak_memory_mb} MB ({out[-1].memory_kind})  params {out[-1].parameters / 1e6:.2f}M")
    return out


def scheme_models(scale: str) -> tuple[dict[str, ModelConfig], int]:
    """(the Table 6 schemes' models by key, image size) at ``scale``; the first model is the baseline.

    ``cpu`` / ``smoke``: the ablation study's models of that scale (``msda_backend=torch``),
    at its synthetic image size; ``paper``: the ``coco_r50_table6_*_12ep`` presets at 800 px.
    """
    from hdetr.config.presets import TABLE6_PRESETS, get_preset
    from hdetr.studies.scales import TABLE6_ROWS, ablation_study
    from hdetr.studies.variants import variant_config

    if scale == "paper":
        return {key: get_preset(name).model for key, name in TABLE6_PRESETS.items()}, 800
    spec = ablation_study(scale)
    models = {v.key: variant_config(spec.base, v, 0).model.replace(msda_backend="torch")
              for v in spec.variants if v.key in TABLE6_ROWS}
    return models, spec.base.data.synthetic_image_size


def _peak_rss_child(payload: str) -> None:
    def peak() -> float:
        """This process's peak RSS in MB: VmHWM (ru_maxrss would keep the parent's peak across fork + exec)."""
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)

    args = json.loads(payload)
    torch.set_num_threads(1)
    config = ModelConfig(**args["config"])
    before = peak()
    model, criterion = _build(config, torch.device("cpu"))
    batch = synthetic_batch(args["batch_size"], args["size"], config.num_classes, torch.device("cpu"))
    train_step(model, criterion, batch, torch.device("cpu"), torch.float32)
    print(json.dumps({"peak_rss_mb": peak(), "after_imports_mb": before}))


if __name__ == "__main__":
    _peak_rss_child(sys.argv[1])
