"""The training step of this checkout against another commit's, interleaved in one run.

    OMP_NUM_THREADS=1 python benchmarks/train_step.py [--against REF] [--size demo|full] [--rounds 8]
                                                      [--json reports/bench/train_step.json]

``--against REF`` (default: ``START``, the commit the current speed work started from) is checked
out as a ``git worktree`` in a temporary folder. Two worker processes, one importing each tree, build
the same model from the same seed and the same batches, and take turns: every round each side runs
one full step (forward, matching, loss, backward, clipping, optimiser), so both see the same machine
load. Printed and written: each side's min / median seconds per step, and the speed-up as the median
of the per-round ratios, for the baseline and the hybrid branch.

Sizes: ``demo`` is the demo's detector (ResNet-18 from scratch, 128 px synthetic images, batch 4,
3 + 3 layers, hidden 128, one thread); ``full`` the paper's (R50, 6 + 6 layers, FFN 2048, two 512 x 512
images, two threads). ``--profile`` adds the operator table of one current step (where the time goes);
``--bf16`` runs the current side's forward pass under CPU bf16 autocast (the ``train.cpu_bf16`` opt-in).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = "2a7a866"  # main before the demo-step speed work: the reference every ratio is measured against
SIZES = {"demo": {"threads": 1}, "full": {"threads": 2}}

# One side of the comparison; runs in its own process with its own checkout first on sys.path. It only
# uses APIs both sides have (presets, overrides, model, criterion, optimiser), so any two commits compare.
WORKER = r'''
import sys, time, torch
import contextlib
size, scheme, threads, bf16 = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(threads)
import hdetr
from hdetr.config.experiment import apply_overrides
from hdetr.config.presets import get_preset
from hdetr.engine.optim import build_optimizer
if size == "demo":
    from hdetr.data import build_dataset, collate
    cfg = apply_overrides(get_preset(f"synthetic_demo_{scheme}"), ["data.num_workers=0"])
    data = build_dataset(cfg.data, "train")
    torch.manual_seed(0)
    batches = [collate([data[4 * i + j] for j in range(4)]) for i in range(4)]
else:
    cfg = apply_overrides(get_preset(f"coco_r50_{scheme}_12ep"), ["model.enc_layers=6", "model.dec_layers=6"])
    gen = torch.Generator().manual_seed(0)
    batches = []
    for i in range(2):
        images = [torch.randn(3, 512, 512, generator=gen) for _ in range(2)]
        targets = [{"labels": torch.randint(0, 91, (n,), generator=gen),
                    "boxes": torch.cat((torch.rand(n, 2, generator=gen) * 0.6 + 0.2,
                                        torch.rand(n, 2, generator=gen) * 0.3 + 0.05), 1)} for n in (12, 25)]
        batches.append((images, targets))
torch.manual_seed(0)
model = hdetr.build_model(cfg.model).train()
import inspect
# the schedule's length (the epoch scheme's): a build argument since it left ModelConfig, not before
takes_schedule = "num_epochs" in inspect.signature(hdetr.build_criterion).parameters
schedule = {"num_epochs": cfg.train.epochs} if takes_schedule else {}
criterion = hdetr.build_criterion(model.config, **schedule)
optimizer = build_optimizer(model, cfg.train)

def step(batch):
    images, targets = batch
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        outputs = model(images)
    outputs = outputs.float() if bf16 else outputs  # the typed model output (hdetr.outputs)
    loss = criterion.total_loss(criterion(outputs, targets, epoch=0))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_max_norm)
    optimizer.step()

step(batches[0])  # warm-up: the op's first call, the allocator
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "profile":
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(batches[1])
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        print("profile " + ";".join(f"{e.key}={e.self_cpu_time_total / total:.4f}" for e in events[:15]), flush=True)
        continue
    i = int(line)
    start = time.perf_counter()
    step(batches[i % len(batches)])
    print(f"time {time.perf_counter() - start:.6f}", flush=True)
'''


class Side:
    def __init__(self, tree: Path, size: str, scheme: str, threads: int, bf16: bool = False):
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, size, scheme, str(threads),
                                      "1" if bf16 else "0"], cwd=tree,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._expect("ready")

    def _expect(self, word: str) -> str:
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"benchmark worker: expected {word!r}, got {line!r} (exit {self.proc.poll()})")
        return line[len(word):].strip()

    def step(self, i: int) -> float:
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        return float(self._expect("time"))

    def profile(self) -> dict[str, float]:
        self.proc.stdin.write("profile\n")
        self.proc.stdin.flush()
        return {k: float(v) for k, v in (item.rsplit("=", 1) for item in self._expect("profile").split(";"))}

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def checkout(ref: str, where: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(where), ref], cwd=ROOT, check=True,
                   capture_output=True)
    return where


def compare(ref_tree: Path, size: str, scheme: str, rounds: int, with_profile: bool, bf16: bool = False) -> dict:
    threads = SIZES[size]["threads"]
    sides = {"reference": Side(ref_tree, size, scheme, threads),
             "current": Side(ROOT, size, scheme, threads, bf16)}
    times = {name: [] for name in sides}
    try:
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]  # neither side always goes first
            for name in order:
                times[name].append(sides[name].step(r))
        profile = sides["current"].profile() if with_profile else None
    finally:
        for side in sides.values():
            side.close()
    ratios = [a / b for a, b in zip(times["reference"], times["current"])]
    out = {name: {"min_s": min(t), "median_s": statistics.median(t)} for name, t in times.items()}
    out["speedup_median_of_round_ratios"] = statistics.median(ratios)
    if profile:
        out["profile_top_ops"] = profile
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", default=START, help=f"the commit to compare with (default {START})")
    parser.add_argument("--size", choices=list(SIZES), default="demo")
    parser.add_argument("--schemes", nargs="*", default=["baseline", "hybrid_branch"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--bf16", action="store_true",
                        help="the current side's forward pass under CPU bf16 autocast (train.cpu_bf16)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ref = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    here = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="hdetr-bench-"))
    tree = checkout(ref, tmp / "reference")
    try:
        result = {"size": args.size, "current_bf16": args.bf16, "threads": SIZES[args.size]["threads"], "rounds": args.rounds,
                  "reference": ref, "current": f"{here} (+ working tree)", "cpu": _cpu()}
        for scheme in args.schemes:
            result[scheme] = compare(tree, args.size, scheme, args.rounds, args.profile, args.bf16)
            r = result[scheme]
            print(f"{args.size} {scheme}: reference {ref} median {r['reference']['median_s']:.3f} s "
                  f"(min {r['reference']['min_s']:.3f}), current median {r['current']['median_s']:.3f} s "
                  f"(min {r['current']['min_s']:.3f}); speed-up {r['speedup_median_of_round_ratios']:.2f}x",
                  flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.is_file() else {}
        data = data if "demo" in data or "full" in data else {}
        data[args.size + ("_bf16" if args.bf16 else "")] = result
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    import platform
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
