"""The training loop: one process or many (torchrun), exact resume, honest failure.

``train(cfg, output_dir, resume=False)`` writes into ``output_dir``::

    config.yaml            the ExperimentConfig of the run
    metrics.jsonl          train / eval rows (format: hdetr.engine.metrics_log)
    tensorboard/           the same scalars as TensorBoard events
    checkpoint_last.pth    written every ``checkpoint_every_iters`` steps, at epoch ends and at stops
    checkpoint_best.pth    the state with the best validation AP so far

Every step: forward (bf16 autocast on CUDA), the criterion's loss terms averaged over
processes, a stop if any of them is not finite (before the backward, so no bad state
is ever saved), backward, gradient clipping, AdamW, one step of the learning-rate
schedule (``hdetr.engine.optim``: the epoch schedule converted to steps). The loss of
each process is normalised by the number of target boxes over all processes (the
criterion all-reduces it) and DistributedDataParallel averages gradients, so N
processes take the same steps as one process with N times the batch. ``train`` builds
the datasets (``build_datasets``) and hands them to the ``Trainer``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hdetr.checkpoints.state_dict import load_exactly
from hdetr.config.experiment import ExperimentConfig
from hdetr.config.model import without_legacy_fields
from hdetr.checkpoints import training as ckpt_io
from hdetr.engine.data_order import EpochBatchSampler, SeededSamples
from hdetr.distributed import process_group_exists
from hdetr.engine.distributed import (DistInfo, barrier, broadcast_flag, gather_objects, init_distributed,
                                      mean_over_processes, shutdown_distributed)
from hdetr.engine.evaluator import evaluate_model
from hdetr.engine.metrics_log import MetricsLogger
from hdetr.engine.optim import (build_lr_scheduler, build_optimizer, convert_epoch_scheduler_state, lr_by_group,
                               set_lr_milestones)
from hdetr.errors import UserError
from hdetr.outputs import ModelOutput


_ROW_KEYS = ("type", "epoch", "iter", "step", "time")


class TrainingDiverged(UserError):
    """A loss term or the gradient norm became NaN or infinite; the message names the step and terms."""


@dataclasses.dataclass
class Progress:
    epoch: int = 0  # epoch in progress, 0-based
    batches_done: int = 0  # batches of that epoch trained on
    global_step: int = 0
    elapsed: float = 0.0  # seconds of earlier sessions of this run (resumes)
    best: dict | None = None
    window: dict = dataclasses.field(default_factory=dict)  # loss sums since the last train row
    window_steps: int = 0


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def _float32(obj: Any) -> Any:
    """Outputs of a bf16 autocast forward, back in float32 for the losses."""
    if torch.is_tensor(obj):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, ModelOutput):
        return obj.float()
    if isinstance(obj, dict):
        return {k: _float32(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_float32(v) for v in obj)
    return obj


def _check_classes(cfg: ExperimentConfig, dataset) -> None:
    mapping = getattr(dataset, "label_to_category_id", None)
    if mapping is None:
        return
    labels = list(mapping.keys()) if isinstance(mapping, dict) else list(range(len(mapping)))
    if labels and max(labels) >= cfg.model.num_classes:
        raise UserError(
            f"model.num_classes={cfg.model.num_classes} is too small for the dataset, whose labels go up to "
            f"{max(labels)}; set model.num_classes={max(labels) + 1}"
        )


class Trainer:
    """Holds one run's model, optimiser, data order and logs; ``run()`` trains to the end or a stop."""

    def __init__(self, cfg: ExperimentConfig, output_dir: str | Path, dist_info: DistInfo, train_set: Dataset,
                 val_set: Dataset) -> None:
        from hdetr import build_criterion, build_model

        self.cfg, self.tc = cfg, cfg.train
        self.out = Path(output_dir)
        self.dist = dist_info
        self.device = dist_info.device
        if self.tc.num_threads:
            torch.set_num_threads(self.tc.num_threads)
        if self.tc.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.train_set, self.val_set = train_set, val_set
        _check_classes(cfg, self.train_set)
        seed_everything(self.tc.seed + dist_info.rank)
        self.model = build_model(cfg.model).to(self.device)
        self.criterion = build_criterion(cfg.model, num_epochs=cfg.train.epochs)
        if isinstance(self.criterion, nn.Module):
            self.criterion.to(self.device)
        self.optimizer = build_optimizer(self.model, self.tc)
        self.sampler = EpochBatchSampler(len(self.train_set), self.tc.batch_size, world_size=dist_info.world_size,
                                         rank=dist_info.rank, seed=self.tc.seed)
        self.lr_scheduler = build_lr_scheduler(self.optimizer, self.tc, self.sampler.batches_per_epoch)
        self.progress = Progress()
        self.logger = MetricsLogger(self.out, enabled=dist_info.is_main, tensorboard=self.tc.tensorboard)
        self.ddp_model: nn.Module = self.model
        self.last_eval: dict[str, Any] | None = None
        self._session_start = time.perf_counter()
        # throughput of this session's training steps (not evaluation, not a killed session's steps)
        self._timed_steps, self._timed_seconds, self._tick = 0, 0.0, time.perf_counter()

    # ------------------------------------------------------------ state

    @property
    def last_path(self) -> Path:
        return self.out / ckpt_io.LAST

    @property
    def best_path(self) -> Path:
        return self.out / ckpt_io.BEST

    def elapsed(self) -> float:
        return self.progress.elapsed + time.perf_counter() - self._session_start

    def resume(self) -> bool:
        """Load ``checkpoint_last.pth`` of the output folder if there is one; True when resumed."""
        if not self.last_path.is_file():
            return False
        state = ckpt_io.read_training_checkpoint(self.last_path)
        # an older checkpoint's model config may hold num_epochs, which now lives in train.epochs only
        saved_model_cfg = without_legacy_fields(state["config"].get("model", {}))
        if saved_model_cfg != self.cfg.model.to_dict():
            changed = sorted(k for k in set(saved_model_cfg) | set(self.cfg.model.to_dict())
                             if saved_model_cfg.get(k) != self.cfg.model.to_dict().get(k))
            raise UserError(f"{self.last_path}: was trained with a different model config "
                            f"(fields {', '.join(changed)}); resume with the run's own config.yaml")
        load_exactly(self.model, state["model"], str(self.last_path))
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("version", 1) >= 2:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        else:  # a per-epoch schedule's state
            convert_epoch_scheduler_state(self.lr_scheduler, self.optimizer, state["global_step"])
        # the schedule of the config wins over the saved one, so a resumed run can change lr_drop
        set_lr_milestones(self.lr_scheduler, self.tc, self.sampler.batches_per_epoch)
        self.progress = Progress(epoch=state["epoch"], batches_done=state["batches_done"],
                                 global_step=state["global_step"], elapsed=state.get("elapsed", 0.0),
                                 best=state.get("best"), window=dict(state.get("log_window", {})),
                                 window_steps=state.get("log_window_steps", 0))
        self.last_eval = state.get("last_eval")
        by_rank = state.get("rng_by_rank") or []
        ckpt_io.restore_rng_state(by_rank[self.dist.rank] if len(by_rank) == self.dist.world_size else state["rng"])
        self.logger.truncate_after(self.progress.global_step)
        return True

    def save(self) -> None:
        """Write checkpoint_last.pth (main process) from the current, known-good state.

        Every process calls it: each one's random state goes into the file, so a resumed
        process continues its own random stream.
        """
        rng_by_rank = gather_objects(ckpt_io.capture_rng_state())
        if not self.dist.is_main:
            return
        p = self.progress
        state = ckpt_io.training_state(model=self.model, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
                                       epoch=p.epoch, batches_done=p.batches_done, global_step=p.global_step,
                                       config=self.cfg.to_dict(), best=p.best)
        state["elapsed"] = self.elapsed()
        state["last_eval"] = self.last_eval
        state["log_window"], state["log_window_steps"] = dict(p.window), p.window_steps
        state["rng_by_rank"] = rng_by_rank
        ckpt_io.save_atomic(state, self.last_path)

    # ------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, Any] | None:
        """Score the one-to-one predictions on the validation set (all processes share the images),
        log, keep the best."""
        metrics = evaluate_model(self.model, self.val_set, batch_size=self.tc.batch_size, device=self.device,
                                 max_images=self.tc.eval_max_images, amp=self.tc.amp,
                                 progress=self.tc.progress and self.dist.is_main,
                                 nms_iou=self.tc.eval_nms_iou or None)
        p = self.progress
        row = {"type": "eval", "epoch": p.epoch, "iter": p.batches_done, "step": p.global_step,
               **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
               "time": round(self.elapsed(), 3)}
        self.logger.log(row)
        self.last_eval = row
        ap = row.get("AP", float("nan"))
        if math.isfinite(ap) and (p.best is None or ap > p.best["AP"]):
            p.best = {"AP": ap, "epoch": p.epoch, "batches_done": p.batches_done, "global_step": p.global_step}
        return metrics

    def evaluate_and_save(self) -> dict[str, Any] | None:
        """Evaluate, write the last checkpoint, and copy it to the best one if this evaluation set a new best AP."""
        best_before = self.progress.best
        metrics = self.evaluate()
        self.save()
        if self.dist.is_main and self.progress.best is not best_before and self.progress.best is not None:
            ckpt_io.copy_atomic(self.last_path, self.best_path)
        return metrics

    # ------------------------------------------------------------ steps

    def step(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, float]:
        """One optimiser step; returns the loss terms averaged over processes, and the grad norm."""
        p = self.progress
        images = [img.to(self.device, non_blocking=True) for img in images]
        targets = _to_device(targets, self.device)
        with self._autocast():
            outputs = self.ddp_model(images)
        every = self.tc.assignment_stats_every_iters
        record = bool(every) and (p.global_step + 1) % every == 0
        loss_dict = self.criterion(_float32(outputs), targets, epoch=p.epoch, record=record)
        if record:
            self._log_assignment_stats(targets)
        total = self.criterion.total_loss(loss_dict)
        logged = mean_over_processes({**loss_dict, "loss": total})
        bad = {k: v for k, v in logged.items() if not math.isfinite(v)}
        if bad:
            self._diverged(", ".join(f"{k}={v}" for k, v in sorted(bad.items())), "loss")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [q for q in self.model.parameters() if q.requires_grad]
        if self.tc.clip_max_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.tc.clip_max_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))  # the norm only
        if not math.isfinite(float(grad_norm)):
            self._diverged(f"grad_norm={float(grad_norm)} (loss={logged['loss']:.6g})", "gradient")
        self.optimizer.step()
        self.lr_scheduler.step()
        logged["grad_norm"] = float(grad_norm)
        return logged

    def _log_assignment_stats(self, targets: list[dict]) -> None:
        """An ``assignments`` row: this step's positives and matched IoU per group and layer
        (the main process's batch; see hdetr.matching.record_stats)."""
        from hdetr.matching.record_stats import stats_to_row, summarize_records

        p = self.progress
        stats = summarize_records(self.criterion.last_assignments, [len(t["labels"]) for t in targets])
        self.logger.log({"type": "assignments", "epoch": p.epoch, "iter": p.batches_done, "step": p.global_step + 1,
                         **stats_to_row(stats), "time": round(self.elapsed(), 3)})
        self.criterion.last_assignments = []

    def _autocast(self):
        """bf16 autocast on CUDA (no loss scaling needed for bf16); on a CPU only with ``train.cpu_bf16``."""
        if self.tc.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.tc.cpu_bf16 and self.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _diverged(self, terms: str, what: str) -> None:
        p = self.progress
        kept = (f"the last good checkpoint {self.last_path} is kept" if self.last_path.is_file()
                else "no checkpoint was written yet")
        msg = (f"training stopped: non-finite {what} at epoch {p.epoch}, iteration {p.batches_done} "
               f"(step {p.global_step + 1}): {terms}; the bad step was not applied and {kept}")
        self.logger.log({"type": "error", "epoch": p.epoch, "iter": p.batches_done, "step": p.global_step + 1,
                         "message": msg, "time": round(self.elapsed(), 3)})
        raise TrainingDiverged(msg)

    # ------------------------------------------------------------ loop

    def _stop_reason(self) -> str | None:
        if self.tc.max_iters and self.progress.global_step >= self.tc.max_iters:
            return "max_iters"
        if self.tc.max_wall_seconds:
            if broadcast_flag(self.elapsed() >= self.tc.max_wall_seconds, self.device):
                return "max_wall_seconds"
        return None

    def _loader(self) -> DataLoader:
        p = self.progress
        self.sampler.set_epoch(p.epoch, start_batch=p.batches_done)
        from hdetr.data import collate

        # its own generator: creating the iterator must not draw from the global RNG (exact resume)
        generator = torch.Generator().manual_seed(self.tc.seed * 7919 + p.epoch)
        return DataLoader(SeededSamples(self.train_set), batch_sampler=self.sampler, collate_fn=collate,
                          num_workers=self.cfg.data.num_workers, generator=generator,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def run(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        if not resume and self.last_path.is_file():
            if not overwrite:
                raise UserError(f"{self.out} already holds a run ({ckpt_io.LAST}); pass --resume to continue it, "
                                f"--overwrite to start again there, or choose another output folder")
            barrier()  # every rank has seen the old files before the main one removes them
            if self.dist.is_main:
                for stale in (self.last_path, self.best_path):
                    stale.unlink(missing_ok=True)
        resumed = self.resume() if resume else False
        if self.dist.is_main:
            (self.out / "config.yaml").write_text(self.cfg.to_yaml())
            if not resumed:
                self.logger.truncate_after(-1)
        if self.dist.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=self.tc.find_unused_parameters)
        self.model.train()
        p, tc = self.progress, self.tc
        stopped_by = self._stop_reason() or ("epochs" if p.epoch >= tc.epochs else None)
        self._tick = time.perf_counter()
        while stopped_by is None:
            bar = self._progress_bar()
            for images, targets in self._loader():
                logged = self.step(images, targets)
                p.batches_done += 1
                p.global_step += 1
                self._accumulate(logged, bar)
                end_of_epoch = p.batches_done == self.sampler.batches_per_epoch
                stopped_by = self._stop_reason()
                if stopped_by:
                    self._log_window(bar)
                if end_of_epoch:
                    break
                if tc.eval_every_iters and p.global_step % tc.eval_every_iters == 0:
                    self.evaluate_and_save()
                elif stopped_by or (tc.checkpoint_every_iters and p.global_step % tc.checkpoint_every_iters == 0):
                    self.save()
                self._tick = time.perf_counter()
                if stopped_by:
                    break
            if bar is not None:
                bar.close()
            if p.batches_done == self.sampler.batches_per_epoch:
                self._end_epoch()
                self._tick = time.perf_counter()
                if p.epoch >= tc.epochs:
                    stopped_by = stopped_by or "epochs"
        if self.last_eval is None or self.last_eval.get("step") != p.global_step:
            self.evaluate_and_save()
        self.logger.close()
        return self._summary(stopped_by, resumed)

    def _accumulate(self, logged: dict[str, float], bar) -> None:
        """Add a step to the logging window; write a train row every ``log_every_iters`` steps."""
        p, tc = self.progress, self.tc
        for k, v in logged.items():
            p.window[k] = p.window.get(k, 0.0) + v
        p.window_steps += 1
        self._timed_steps += 1
        now = time.perf_counter()
        self._timed_seconds += now - self._tick
        self._tick = now
        lrs = lr_by_group(self.optimizer)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{lrs.get('default', 0):.1e}")
        if p.global_step % tc.log_every_iters == 0 or p.batches_done == self.sampler.batches_per_epoch:
            self._log_window(bar)

    def _log_window(self, bar=None) -> None:
        """The train row of the steps since the previous one (also written when a run stops early)."""
        p, tc = self.progress, self.tc
        if not p.window_steps:
            return
        lrs = lr_by_group(self.optimizer)
        seconds = self._timed_seconds
        row = {"type": "train", "epoch": p.epoch, "iter": p.batches_done - 1, "step": p.global_step,
               **{k: v / p.window_steps for k, v in p.window.items()},
               "lr": lrs.get("default", next(iter(lrs.values()))),
               **{f"lr_{k}": v for k, v in lrs.items() if k != "default"},
               "images_per_s": round(self._timed_steps * tc.batch_size * self.dist.world_size / max(seconds, 1e-9), 3),
               "time": round(self.elapsed(), 3)}
        self.logger.log(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.1e}", img_s=f"{row['images_per_s']:.1f}")
        p.window, p.window_steps = {}, 0
        self._timed_steps, self._timed_seconds = 0, 0.0

    def _end_epoch(self) -> None:
        p, tc = self.progress, self.tc
        p.epoch += 1
        p.batches_done = 0
        due = tc.eval_every_epochs and p.epoch % tc.eval_every_epochs == 0
        # a step-based evaluation that falls on the epoch's last step (the loop leaves before its check)
        due = due or (tc.eval_every_iters and p.global_step % tc.eval_every_iters == 0)
        if due or p.epoch >= tc.epochs:
            self.evaluate_and_save()
        else:
            self.save()

    def _progress_bar(self):
        if not (self.tc.progress and self.dist.is_main):
            return None
        from tqdm import tqdm

        p = self.progress
        return tqdm(total=self.sampler.batches_per_epoch, initial=p.batches_done, desc=f"epoch {p.epoch}",
                    dynamic_ncols=True, leave=False)

    def _summary(self, stopped_by: str, resumed: bool) -> dict[str, Any]:
        p = self.progress
        return {
            "metrics": {k: v for k, v in (self.last_eval or {}).items() if k not in _ROW_KEYS},
            "best": p.best,
            "epoch": p.epoch,
            "batches_done": p.batches_done,
            "global_step": p.global_step,
            "stopped_by": stopped_by,
            "resumed": resumed,
            "rank": self.dist.rank,
            "train_seconds": round(self.elapsed(), 3),
            "output_dir": str(self.out),
            "metrics_path": str(self.logger.path),
            "checkpoint_last": str(self.last_path),
            "checkpoint_best": str(self.best_path) if self.best_path.is_file() else None,
        }


def build_datasets(cfg: ExperimentConfig, dist_info: DistInfo) -> tuple[Dataset, Dataset]:
    """The run's training and validation sets, both before any training (a wrong path fails in seconds).

    The main process builds (or generates) them first, the others then read what it made.
    """
    from hdetr.data import build_dataset

    def build() -> tuple[Dataset, Dataset]:
        return build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")

    datasets = build() if dist_info.is_main else None
    barrier()
    return datasets or build()


def train(cfg: ExperimentConfig, output_dir: str | Path, resume: bool = False, overwrite: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``output_dir`` (one process, or each process of a torchrun launch).

    With ``resume=True`` an existing ``checkpoint_last.pth`` there is continued exactly
    (same data order, random states, optimiser and schedule); without one, training starts.
    Returns the final evaluation (``metrics``), the ``best`` AP, how the run ended
    (``stopped_by``: epochs, max_iters or max_wall_seconds) and the paths of
    ``metrics.jsonl`` and the checkpoints. A folder that already holds a run is
    started afresh when ``overwrite`` (the CLI refuses unless ``--overwrite``).
    """
    owns_group = not process_group_exists()
    # process-wide settings the run changes, restored for whoever called train()
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    dist_info = init_distributed(cfg.train.device)
    try:
        train_set, val_set = build_datasets(cfg, dist_info)
        return Trainer(cfg, output_dir, dist_info, train_set, val_set).run(resume=resume, overwrite=overwrite)
    finally:
        if owns_group:
            shutdown_distributed()
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
