"""Forward time of this project's Swin backbone against timm's SwinTransformer, side by side.

Both run the same Swin-T weights on one detection-sized image in eval mode under
``torch.no_grad``: this project's backbone (the official computation: pad then shift,
shifted windows at every stage) and timm's stages with the per-stage output norms, as
the backbone was built on timm before. Runs alternate between the two so that machine
load hits both alike; the median of the repeats is compared. Process CPU time is the
primary clock (the machine may be shared); wall time is reported too.

    python benchmarks/swin_backbone.py      # writes reports/bench/swin_backbone.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench" / "swin_backbone.json"


class TimmSwinBody(nn.Module):
    """timm's patch embedding and stages + one LayerNorm per returned stage (strides 8/16/32)."""

    def __init__(self, timm_name: str, embed_dim: int):
        super().__init__()
        import timm

        model = timm.create_model(timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
        self.patch_embed, self.layers = model.patch_embed, model.layers
        for i in (1, 2, 3):
            self.add_module(f"norm{i}", nn.LayerNorm(embed_dim * 2 ** i))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        height, width = images.shape[-2:]
        x = self.patch_embed(nn.functional.pad(images, (0, (-width) % 4, 0, (-height) % 4)))
        features = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            if i >= 1:
                features.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
        return features


def measure(runs: dict, images: torch.Tensor, repeats: int) -> dict[str, dict[str, list[float]]]:
    times = {name: {"cpu_s": [], "wall_s": []} for name in runs}
    with torch.no_grad():
        for i in range(repeats + 1):  # the first round warms up allocators and kernels
            for name, module in runs.items():
                cpu, wall = time.process_time(), time.perf_counter()
                module(images)
                if i:
                    times[name]["cpu_s"].append(time.process_time() - cpu)
                    times[name]["wall_s"].append(time.perf_counter() - wall)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=672)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hdetr.models.swin_backbone import SwinBackbone

    torch.manual_seed(0)
    ours = SwinBackbone("swin_tiny", multi_level=True, drop_path_rate=0.0).eval()
    timm_body = TimmSwinBody("swin_tiny_patch4_window7_224", 96).eval()
    timm_body.load_state_dict(ours.body.state_dict())  # the same tensors under the same names
    images = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))
    times = measure({"hdetr": ours, "timm": timm_body}, images, args.repeats)
    medians = {name: {clock: statistics.median(values) for clock, values in t.items()} for name, t in times.items()}
    ratios = {clock: medians["hdetr"][clock] / medians["timm"][clock] for clock in ("cpu_s", "wall_s")}
    # the two run back to back in each round: the median of the per-round ratios damps load bursts
    paired = statistics.median(a / b for a, b in zip(times["hdetr"]["cpu_s"], times["timm"]["cpu_s"]))
    for name, median in medians.items():
        print(f"{name:6s} forward: {median['cpu_s'] * 1000:7.1f} ms CPU, {median['wall_s'] * 1000:7.1f} ms wall")
    print(f"hdetr / timm: {ratios['cpu_s']:.3f} (CPU time), {ratios['wall_s']:.3f} (wall), "
          f"{paired:.3f} (median of per-round CPU-time ratios)")
    report = {
        "command": " ".join(["python", "benchmarks/swin_backbone.py", *map(shlex.quote, argv or sys.argv[1:])]),
        "setup": {"backbone": "swin_tiny, strides 8/16/32, eval, no_grad", "images": [1, 3, args.height, args.width],
                  "threads": torch.get_num_threads(), "repeats": args.repeats, "torch": torch.__version__},
        "primary_clock": "cpu_s (process CPU time; the machine is shared, wall time is reported too)",
        "times": times,
        "median": medians,
        "ratio_hdetr_over_timm": ratios,
        "median_of_per_round_cpu_ratios": paired,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
