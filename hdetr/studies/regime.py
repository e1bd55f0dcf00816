"""The CPU-regime study: where, on the synthetic benchmark, does hybrid matching help?

Every hypothesis changes one thing of a fixed reference (the demo-size detector:
ResNet-18 from scratch, 128 px images, n = 30 one-to-one queries, 400 optimiser
steps) and is measured as a pair: the one-to-one baseline and the hybrid branch
(T = 3n one-to-many queries, K = 3, lambda = 1), each over the same seeds. The
write-up is ``reports/science/cpu_regime.md``; regenerate it with::

    python -m hdetr.studies.regime run runs/regime      # resumable; two single-thread runs at a time
    python -m hdetr.reports.regime runs/regime reports/science

The starved-positives rows (``starved*``, ``equal_queries``) test the paper's premise: n = 100
one-to-one queries against ~4.4 objects, T = 5n, K = 6 (K = 3, lambda = 0.5 and a 1600-step
schedule as one change each; the equal-queries control is a one-to-one baseline with n + T
queries). A row that changes one model only shares the other model's runs with the row it
changes (``Hypothesis.models``). ``scripts/gpu_science.sh`` runs the most informative rows at
10x the steps on a GPU (``StudyScale``, saved beside its runs).

The ``pretrained`` hypothesis needs the synthetic-pretrained backbone: a one-to-one
detector trained on a disjoint synthetic set (``data.synthetic_seed=1``), whose
ResNet-18 weights ``run`` extracts into ``<runs>/backbone_pretrain/resnet18.pth``
before the pretrained pairs start.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Sequence

import torch

from hdetr.config.experiment import ExperimentConfig, apply_overrides
from hdetr.config.presets import get_preset
from hdetr.errors import UserError
from hdetr.studies.runs import RunRequest, execute_runs, read_result

SEEDS = (0, 1, 2)
STEPS = 400
EVAL_EVERY = 100
# Fixed for every run of the study: 300 validation images, logged assignment statistics, one thread.
COMMON = ("train.progress=false", "train.tensorboard=false", f"train.max_iters={STEPS}", "train.max_wall_seconds=0",
          f"train.eval_every_iters={EVAL_EVERY}", "train.eval_max_images=0", "data.synthetic_val_images=300",
          f"train.checkpoint_every_iters={EVAL_EVERY}", "train.assignment_stats_every_iters=50",
          "train.num_threads=1", "data.num_workers=0", "train.lr_drop_iters=null")
SIZE_192 = ("data.scale_preset=synthetic_192", "data.synthetic_image_size=192")
LR_DROP = ("train.lr_drop_iters=[300]",)
ONE_STAGE = ("model.two_stage=false", "model.mixed_selection=false")
LONG_STEPS = 1600
PRETRAIN_DIR = "backbone_pretrain"
PRETRAIN_STEPS = 1200
PRETRAINED_FILE = "resnet18.pth"


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One change to the reference, measured as baseline vs hybrid branch.

    n: one-to-one queries; t: one-to-many queries of the hybrid branch; k: its K.
    changes: overrides of the reference that apply to both models.
    """

    key: str
    question: str
    changes: tuple[str, ...] = ()
    n: int = 30
    t: int = 90
    k: int = 3
    lam: float = 1.0
    against: str = "reference"  # the hypothesis it changes one thing of
    # the models this hypothesis trains; a model it does not train is read from ``against``'s runs
    # (the K and lambda rows share the starved baseline, the equal-queries control the starved hybrid)
    models: tuple[str, ...] = ("baseline", "hybrid_branch")

    def overrides(self, scheme: str) -> tuple[str, ...]:
        queries = (f"model.num_queries_one2one={self.n}",)
        if scheme == "baseline":
            return (*self.changes, *queries)
        return (*self.changes, *queries, "model.scheme=hybrid_branch", f"model.num_queries_one2many={self.t}",
                f"model.k_one2many={self.k}", f"model.lambda_one2many={self.lam}")


HYPOTHESES = (
    Hypothesis("reference", "the demo regime: n=30, T=90, K=3, 128 px, 2-8 objects, 400 steps at constant lr"),
    Hypothesis("lr_drop", "a learning-rate drop (x0.1) after step 300 of 400, as the paper's schedules end",
               LR_DROP),
    Hypothesis("dense", "denser scenes: 8-16 objects of 10 classes per image (2-8 of 6 in the reference)",
               ("data.synthetic_objects=[8,16]", "data.synthetic_classes=10", "model.num_classes=10")),
    Hypothesis("pretrained", "a ResNet-18 pre-trained on disjoint synthetic images (ImageNet's part in the paper)",
               (f"model.pretrained_backbone={PRETRAIN_DIR}/{PRETRAINED_FILE}",)),
    Hypothesis("size192", "192 px images (smallest training side 128 px): the control for more queries",
               SIZE_192),
    Hypothesis("queries100", "n=100 one-to-one queries (22 per object), T=200: the paper's starved-positives "
               "regime, at 192 px so that n + T fits two-stage selection", SIZE_192, n=100, t=200,
               against="size192"),
    # The paper's premise: many one-to-one queries per object (~43 in the paper), T = 5n, K = 6. Two-stage
    # selection takes its n + T queries from the encoder positions, which a 128 px image has too few of
    # (336 at the largest training size, 134 at the smallest); the one-stage variant learns its queries and
    # has no cap, so the images, the objects and the step cost of the reference stay as they are.
    Hypothesis("starved", "the paper's starved-positives regime: n=100 one-to-one queries (23 per object), "
               "T=5n=500, K=6, one-stage with learned queries (no two-stage cap on n + T); with the lr drop",
               (*LR_DROP, *ONE_STAGE), n=100, t=500, k=6, against="lr_drop"),
    Hypothesis("starved_k3", "K=3 instead of 6 in the starved regime (T=500, lambda=1)",
               (*LR_DROP, *ONE_STAGE), n=100, t=500, k=3, against="starved", models=("hybrid_branch",)),
    Hypothesis("equal_queries", "the control: a one-to-one baseline with n + T = 600 queries, against the "
               "starved hybrid (the paper's Table 6 dagger row)", (*LR_DROP, *ONE_STAGE), n=600,
               against="starved", models=("baseline",)),
    Hypothesis("starved_long", "the starved regime 4x longer: 1600 steps, lr x0.1 for the last quarter",
               (*ONE_STAGE, f"train.max_iters={LONG_STEPS}", f"train.lr_drop_iters=[{LONG_STEPS * 3 // 4}]",
                f"train.eval_every_iters={2 * EVAL_EVERY}", f"train.checkpoint_every_iters={2 * EVAL_EVERY}"),
               n=100, t=500, k=6, against="starved"),
    Hypothesis("starved_lambda05", "lambda=0.5 instead of 1 in the starved regime (K=6, T=500)",
               (*LR_DROP, *ONE_STAGE), n=100, t=500, k=6, lam=0.5, against="starved", models=("hybrid_branch",)),
    Hypothesis("starved_unmasked", "the starved hybrid without the group mask (model.mask_groups=false): its "
               "one-to-one queries attend to the one-to-many ones, at training and not at inference",
               (*LR_DROP, *ONE_STAGE, "model.mask_groups=false"), n=100, t=500, k=6, against="starved",
               models=("hybrid_branch",)),
    Hypothesis("one_stage", "the one-stage variant alone (learned queries) at the reference's n=30, T=90, K=3, "
               "with the lr drop: what starved changes besides the queries", (*LR_DROP, *ONE_STAGE),
               against="lr_drop"),
)
BY_KEY = {h.key: h for h in HYPOTHESES}
# The regime the study supports (reports/science/cpu_regime.md): the cpu scale of `hdetr reproduce` and the
# demo presets use it.
REGIME = "lr_drop"
# LVIS at cpu scale: 100 long-tailed categories over 500 images, so that rare (<= 2 training images), common
# and frequent categories all exist (256 categories leave most of them with 1-3 instances).
LVIS_CPU = ("data.kind=lvis", "data.synthetic_images=500", "data.synthetic_classes=100", "model.num_classes=100",
            "train.eval_every_iters=200", "train.checkpoint_every_iters=200")


def reference_config() -> ExperimentConfig:
    return apply_overrides(get_preset("synthetic_demo_baseline"), COMMON)


def regime_base() -> ExperimentConfig:
    """The baseline of the supported regime: every run of the regime's baseline row has this config."""
    return apply_overrides(reference_config(), BY_KEY[REGIME].overrides("baseline"))


def regime_hybrid_overrides() -> tuple[str, ...]:
    """What turns ``regime_base()`` into the regime's hybrid branch."""
    return BY_KEY[REGIME].overrides("hybrid_branch")


@dataclasses.dataclass(frozen=True)
class StudyScale:
    """How one execution of the study differs from the CPU study: ``steps_factor`` multiplies every
    step count of a run (its length, evaluation, checkpoint and statistics periods, the lr drop);
    ``overrides`` apply last (the device, a wall-time limit, smaller sets for a smoke run). A run
    folder's configs depend on it, so ``run`` writes it beside the runs (``study_scale.json``) and
    the report reads it back."""

    steps_factor: float = 1.0
    overrides: tuple[str, ...] = ()

    def apply(self, cfg: ExperimentConfig) -> ExperimentConfig:
        if self.steps_factor == 1.0 and not self.overrides:
            return cfg
        t = cfg.train

        def scaled(steps: int) -> int:
            return max(1, round(steps * self.steps_factor)) if steps else 0

        changes = [f"train.{name}={scaled(getattr(t, name))}" for name in
                   ("max_iters", "eval_every_iters", "checkpoint_every_iters", "assignment_stats_every_iters")]
        if t.lr_drop_iters:
            changes.append(f"train.lr_drop_iters=[{','.join(str(scaled(s)) for s in t.lr_drop_iters)}]")
        return apply_overrides(cfg, [*changes, *self.overrides])

    def save(self, runs_dir: Path) -> None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        (runs_dir / SCALE_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @classmethod
    def of(cls, runs_dir: str | Path) -> "StudyScale":
        path = Path(runs_dir) / SCALE_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls(float(data["steps_factor"]), tuple(data["overrides"]))


SCALE_FILE = "study_scale.json"
# The GPU variant (scripts/gpu_science.sh): the most informative rows at 10x the steps, many runs at once
# on one GPU, each stopped by a wall-time limit so that the whole script fits its budget.
GPU_KEYS = ("starved", "equal_queries", "starved_k3")
GPU_STEPS_FACTOR = 10.0
# The smoke version of the GPU variant that the tests run on a CPU: one seed, a few steps, small sets.
TINY = StudyScale(0.01, ("data.synthetic_images=16", "data.synthetic_val_images=8", "train.batch_size=2",
                         "train.device=cpu"))


def _resolve(change: str, runs_dir: Path) -> str:
    """A pretrained-backbone path is relative to the runs folder."""
    field, _, value = change.partition("=")
    if field == "model.pretrained_backbone":
        return f"{field}={runs_dir / value}"
    return change


def requests(runs_dir: str | Path, keys: Sequence[str] | None = None,
             seeds: Sequence[int] = SEEDS, scale: StudyScale | None = None) -> list[RunRequest]:
    """Every (hypothesis, model, seed) run, configs built and validated now; ``scale`` defaults to the
    one saved in ``runs_dir`` (the CPU study's when none is)."""
    runs_dir = Path(runs_dir)
    scale = scale or StudyScale.of(runs_dir)
    base = reference_config()
    out = []
    for h in (BY_KEY[k] for k in (keys or BY_KEY)):
        for scheme in h.models:
            for seed in seeds:
                changes = [_resolve(c, runs_dir) for c in h.overrides(scheme)]
                cfg = scale.apply(apply_overrides(base, [*changes, f"train.seed={seed}"]))
                out.append(RunRequest(f"{h.key}/{scheme}", seed, cfg, runs_dir / h.key / scheme / f"seed{seed}"))
    return out


def pretrain_request(runs_dir: str | Path) -> RunRequest:
    """The backbone's pre-training run: the reference baseline on a disjoint synthetic set, longer."""
    cfg = apply_overrides(reference_config(), ["data.synthetic_seed=1", f"train.max_iters={PRETRAIN_STEPS}",
                                               "train.eval_every_iters=400", "train.checkpoint_every_iters=200",
                                               "train.assignment_stats_every_iters=0", "train.seed=100"])
    return RunRequest(PRETRAIN_DIR, 100, cfg, Path(runs_dir) / PRETRAIN_DIR)


def export_backbone(run_dir: str | Path) -> Path:
    """Write the run's ResNet weights as a torchvision-named state dict (``model.pretrained_backbone``)."""
    from hdetr.checkpoints.training import read_training_checkpoint, save_atomic

    run_dir = Path(run_dir)
    state = read_training_checkpoint(run_dir / "checkpoint_last.pth")["model"]
    prefix = "backbone.0.body."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise RuntimeError(f"{run_dir / 'checkpoint_last.pth'}: no {prefix}* weights")
    return save_atomic(weights, run_dir / PRETRAINED_FILE)


def run(runs_dir: str | Path, keys: Sequence[str] | None = None, jobs: int = 2,
        seeds: Sequence[int] = SEEDS, scale: StudyScale | None = None) -> None:
    """Train the hypotheses' runs in order; the backbone pre-training goes early, its export before
    the ``pretrained`` pairs. A ``scale`` other than the CPU study's is saved beside the runs."""
    runs_dir = Path(runs_dir)
    keys = list(keys or BY_KEY)
    saved = StudyScale.of(runs_dir)
    scale = scale or saved
    if scale != saved and (runs_dir / SCALE_FILE).is_file():
        raise UserError(f"{runs_dir / SCALE_FILE}: these runs were made at {saved}, not {scale}; use another "
                        f"folder")
    if scale != StudyScale():
        scale.save(runs_dir)
    if "pretrained" not in keys:
        execute_runs(requests(runs_dir, keys, seeds, scale), jobs=jobs)
        return
    cut = keys.index("pretrained")
    before = requests(runs_dir, keys[:cut], seeds, scale)
    pre = pretrain_request(runs_dir)
    execute_runs(before[:2] + [pre] + before[2:], jobs=jobs)
    if read_result(pre.run_dir, pre.config) is None:
        raise SystemExit(f"the backbone pre-training run in {pre.run_dir} did not finish; see its run.log")
    if not (pre.run_dir / PRETRAINED_FILE).is_file():
        export_backbone(pre.run_dir)
    execute_runs(requests(runs_dir, keys[cut:], seeds, scale), jobs=jobs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hdetr.studies.regime", description=__doc__.split("\n")[0],
                                     epilog="The report of finished runs: python -m hdetr.reports.regime RUNS_DIR OUT_DIR")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train every run not finished yet (resumes interrupted ones)")
    p_run.add_argument("runs_dir")
    p_run.add_argument("--only", nargs="*", choices=list(BY_KEY), help="hypotheses (default: all)")
    p_run.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one thread)")
    p_run.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    p_run.add_argument("--steps-factor", type=float, default=1.0,
                       help="multiply every run's step counts (the GPU variant: 10)")
    p_run.add_argument("--set", dest="overrides", nargs="*", default=[],
                       help="config overrides applied to every run last (e.g. train.device=cuda)")
    p_run.add_argument("--tiny", action="store_true", help="the smoke scale the tests use (CPU, a few steps)")
    args = parser.parse_args(argv)
    if args.tiny:
        scale = dataclasses.replace(TINY, overrides=TINY.overrides + tuple(args.overrides))
    else:
        scale = StudyScale(args.steps_factor, tuple(args.overrides))
    run(args.runs_dir, args.only, args.jobs, args.seeds, scale)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
