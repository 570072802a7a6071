"""``gfla data``: synthesise the built-in dataset, check a dataset, draw a contact sheet.

Examples::

    gfla data synth --out data/synthetic --pairs 2000 --test-pairs 64 --size 64 \\
        --sheet synthetic.png
    gfla data check data/fashion --kind deepfashion
    gfla data sheet data/synthetic --out sheet.png --pairs 8
"""

from __future__ import annotations

import logging
import sys

from gfla_tf.cli.main import ArgumentParser

logger = logging.getLogger(__name__)


def _parser(prog):
    parser = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)

    synth = sub.add_parser("synth", help="generate the synthetic person dataset")
    synth.add_argument("--out", required=True, help="dataset folder to create")
    synth.add_argument("--pairs", type=int, default=2000, help="training pairs")
    synth.add_argument("--test-pairs", type=int, default=64, help="test pairs")
    synth.add_argument("--size", type=int, default=64, help="image size in pixels (16-256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    synth.add_argument(
        "--pose-change",
        type=float,
        default=1.0,
        help="how far a target pose is from its source pose, in (0, 1]: the target is "
        "t ~ U(0, this) of the way to an independent pose (default 1: independent poses)",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.add_argument("--sheet", help="also write a contact sheet PNG here")

    check = sub.add_parser("check", help="check a dataset; non-zero exit status on problems")
    check.add_argument("root", help="dataset root")
    check.add_argument(
        "--kind",
        choices=("deepfashion", "market", "synthetic"),
        help="dataset layout (default: detected)",
    )
    check.add_argument("--split", choices=("train", "test", "both"), default="both")
    check.add_argument(
        "--no-images", action="store_true", help="skip the image header and truncation check"
    )

    sheet = sub.add_parser("sheet", help="draw a contact sheet of a dataset's pairs")
    sheet.add_argument("root", help="dataset root")
    sheet.add_argument("--out", required=True, help="output PNG")
    sheet.add_argument("--split", choices=("train", "test"), default="train")
    sheet.add_argument("--pairs", type=int, default=8, help="rows")
    sheet.add_argument("--kind", choices=("deepfashion", "market", "synthetic"))
    return parser


def _detect_kind(root, split):
    from gfla_tf.data import dataset, synthetic

    if synthetic.read_manifest(root) is not None:
        return "synthetic"
    if any(dataset.find_split_files(root, "market", s)[0] for s in ("train", "test")):
        return "market"
    return "deepfashion"


def _synth(args):
    from gfla_tf.data import synthetic, visualize

    try:
        root = synthetic.generate_dataset(
            args.out,
            args.pairs,
            num_test_pairs=args.test_pairs,
            size=args.size,
            seed=args.seed,
            overwrite=args.overwrite,
            pose_change=args.pose_change,
        )
    except (ValueError, FileExistsError) as err:
        print(f"gfla data synth: {err}", file=sys.stderr)
        return 2
    print(f"synthetic dataset: {root} ({args.pairs} train + {args.test_pairs} test pairs)")
    if args.sheet:
        visualize.contact_sheet(root, "train", num_pairs=8, out_path=args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


def _check(args):
    from gfla_tf.data import dataset

    kind = args.kind or _detect_kind(args.root, "train")
    splits = ("train", "test") if args.split == "both" else (args.split,)
    total = 0
    for split in splits:
        report = dataset.scan_dataset(args.root, kind, split, check_images=not args.no_images)
        print(report.summary())
        total += len(report.problems)
    print(f"{total} problem(s) found" if total else "no problems found")
    return 1 if total else 0


def _sheet(args):
    from gfla_tf.data import visualize

    try:
        visualize.contact_sheet(
            args.root, args.split, num_pairs=args.pairs, kind=args.kind, out_path=args.out
        )
    except ValueError as err:
        print(f"gfla data sheet: {err}", file=sys.stderr)
        return 1
    print(f"contact sheet: {args.out}")
    return 0


def main(argv: list[str]) -> int:
    """Runs ``gfla data <action>``; returns the exit status.

    Args:
      argv: ``["gfla data", action, ...]``.

    Returns:
      0 on success; 1 when ``check`` found problems or a sheet could not be drawn; 2 on
      bad arguments.
    """
    args = _parser(argv[0]).parse_args(argv[1:])
    return {"synth": _synth, "check": _check, "sheet": _sheet}[args.action](args)
