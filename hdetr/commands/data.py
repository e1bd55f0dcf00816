"""``hdetr data``: make the synthetic benchmark, locate it, check a dataset.

    hdetr data synth --kind coco --out DIR [--images N --val-images M --seed S --image-size PX --classes C]
    hdetr data path --kind coco [--ensure]        # the default cache folder (generated with --ensure)
    hdetr data check ANNOTATIONS IMAGE_DIR [--kind lvis] [--verify]
"""
from __future__ import annotations

import argparse
import json
import time


def _synth_params(args: argparse.Namespace) -> dict:
    return dict(num_images=args.images, num_val_images=args.val_images, seed=args.seed,
                image_size=args.image_size, num_classes=args.classes)


def _add_synth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("coco", "lvis"), default="coco", help="annotation flavour (default coco)")
    parser.add_argument("--images", type=int, default=None, help="training images (default: 1000)")
    parser.add_argument("--val-images", type=int, default=None, help="validation images (coco 100, lvis 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128, help="side of the square images in px")
    parser.add_argument("--classes", type=int, default=None, help="classes (coco: 6 of 10, lvis: 256 of 256)")


def _synth(args: argparse.Namespace) -> int:
    from hdetr.data.synthetic import generate  # imported on use: keeps `hdetr --help` fast

    start = time.perf_counter()
    out = generate(args.kind, args.out, **_synth_params(args))
    counts = json.loads((out / "synthetic.json").read_text())["counts"]
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s: {json.dumps(counts, sort_keys=True)}")
    return 0


def _path(args: argparse.Namespace) -> int:
    from hdetr.data.synthetic import default_dataset_dir, ensure_dataset

    params = _synth_params(args)
    print(ensure_dataset(args.kind, **params) if args.ensure else default_dataset_dir(args.kind, **params))
    return 0


def _check(args: argparse.Namespace) -> int:
    from hdetr.data.dataset import CocoDetection

    dataset = CocoDetection(args.annotations, args.images, kind=args.kind, verify_images=args.verify)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(dataset.counts.items())) or "none"
    print(f"{args.annotations}: {len(dataset)} usable images, {len(dataset.coco.anns)} annotations, "
          f"{len(dataset.categories)} categories; rules applied: {counts}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="synthetic benchmark and dataset checks",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="write a synthetic COCO- or LVIS-format dataset")
    synth.add_argument("--out", required=True, help="output folder (created)")
    _add_synth_options(synth)
    synth.set_defaults(func=_synth)

    path = sub.add_parser("path", help="print the default cache folder of a synthetic dataset")
    _add_synth_options(path)
    path.add_argument("--ensure", action="store_true", help="generate it there if absent")
    path.set_defaults(func=_path)

    check = sub.add_parser("check", help="validate a COCO-format dataset and report the rules applied")
    check.add_argument("annotations", help="instances_*.json or lvis_v1_*.json")
    check.add_argument("images", help="image folder")
    check.add_argument("--kind", choices=("coco", "lvis"), default="coco")
    check.add_argument("--verify", action="store_true", help="also open every image header")
    check.set_defaults(func=_check)
