"""Draw the README's picture of hybrid matching: one-to-one vs one-to-many positives.

One synthetic validation image, the ``synthetic_demo_hybrid_branch`` model briefly
trained on the CPU (so its boxes are near the objects rather than at random), the
criterion run with ``record=True``, and the last decoder layer's matches drawn side
by side: the one-to-one group (one query per ground-truth box, what inference uses)
and the one-to-many group (K queries per box, training-only extra positives)::

    OMP_NUM_THREADS=1 python scripts/readme_figure.py            # -> docs/assignments.png
    python scripts/readme_figure.py --iters 0                    # untrained model, seconds

Same arguments, same picture (the run is seeded and stops after a fixed number of
iterations, never on a clock).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import shlex
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import hdetr  # noqa: E402
from hdetr.config.presets import get_preset  # noqa: E402
from hdetr.data import build_dataset  # noqa: E402
from hdetr.data.synthetic import ensure_dataset  # noqa: E402
from hdetr.engine import train  # noqa: E402
from hdetr.checkpoints.training import read_checkpoint  # noqa: E402
from hdetr.models import build_model  # noqa: E402
from hdetr.viz import draw_assignments  # noqa: E402

PRESET = "synthetic_demo_hybrid_branch"
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "assignments.png"), help="PNG to write")
    parser.add_argument("--iters", type=int, default=100, help="training iterations before drawing (0: untrained)")
    parser.add_argument("--seed", type=int, default=42, help="training and model-initialisation seed")
    # val image 3: four objects of four sizes, none red (the one-to-one colour), one unlabelled distractor
    parser.add_argument("--image", type=int, default=3, help="index of the synthetic validation image to draw")
    parser.add_argument("--dpi", type=int, default=100)
    return parser.parse_args(argv)


def trained_model(iters: int, seed: int) -> torch.nn.Module:
    """The preset's model after ``iters`` seeded CPU iterations (fresh weights when 0)."""
    cfg = get_preset(PRESET)
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    if iters <= 0:
        return model
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, num_workers=0),
        train=dataclasses.replace(cfg.train, seed=seed, max_iters=iters, max_wall_seconds=0.0, device="cpu",
                                  eval_every_iters=0, eval_every_epochs=0, eval_max_images=4,
                                  checkpoint_every_iters=0, tensorboard=False, progress=False, num_threads=1),
    )
    with tempfile.TemporaryDirectory(prefix="hdetr-readme-figure-") as run_dir:
        result = train(cfg, run_dir)
        ckpt = read_checkpoint(result["checkpoint_last"])
    model.load_state_dict(ckpt["model"])  # strict: the same config built both
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "OMP_NUM_THREADS=1 python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    print(f"command: {command}")
    start = time.perf_counter()
    torch.set_num_threads(1)

    cfg = get_preset(PRESET)
    ensure_dataset(cfg.data.kind)
    dataset = build_dataset(dataclasses.replace(cfg.data, augment=False), "val")
    index = args.image
    if not 0 <= index < len(dataset):
        raise SystemExit(f"--image {index}: the validation set has images 0..{len(dataset) - 1}")
    image, target = dataset[index]
    class_names = [dataset.coco.cats[dataset.label_to_category_id[label]]["name"]
                   for label in range(cfg.model.num_classes) if label in dataset.label_to_category_id]

    model = trained_model(args.iters, args.seed)
    # train mode runs the one-to-many queries too; dropout is 0, so the forward is deterministic
    model.train()
    criterion = hdetr.build_criterion(model.config)
    targets = [{"boxes": target["boxes"], "labels": target["labels"]}]
    with torch.no_grad():
        outputs = model([image])
        criterion(outputs, targets, record=True)
    records = criterion.last_assignments

    k = model.config.k_one2many
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    panels = [("one2one", "one-to-one: 1 query per box"), ("one2many", f"one-to-many: K={k} queries per box")]
    for ax, (group, title) in zip(axes, panels):
        draw_assignments(image, target, records, outputs, groups=(group,), class_names=class_names, ax=ax)
        ax.set_title(title, fontsize=13, pad=12)
        for patch in ax.patches:  # the library's widths suit small panels; thicken for a README banner
            patch.set_linewidth(2.5 if (patch.get_gid() or "").startswith("gt:") else 1.8)
    layer = model.config.dec_layers - 1
    fig.suptitle(f"H-DETR hybrid branch: positives at the last decoder layer ({layer}); "
                 f"green = ground truth, {'trained ' + str(args.iters) + ' CPU iterations' if args.iters else 'untrained'}",
                 fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=args.dpi)
    plt.close(fig)
    # the synthetic images are textured noise: a 128-colour palette keeps the README asset small
    Image.open(buffer).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"val image {index} ({len(target['boxes'])} boxes); wrote {out} "
          f"({out.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
