"""``gfla evaluate``: SSIM/PSNR/LPIPS/FID (and flow EPE on synthetic data) plus a report.

Example::

    gfla evaluate --model generator.keras --data data/deepfashion --out eval/ \\
        --metrics ssim,lpips,fid --lpips-weights lpips_alex_v0.1.npz

writes ``eval/metrics.json`` (metrics and the protocol they were computed under),
``eval/per_pair.csv`` and ``eval/report.html`` with the best and worst pairs.
"""

import argparse
import logging
import sys

from gfla_tf.evaluation import evaluator
from gfla_tf.evaluation.fid import FID_PROTOCOLS
from gfla_tf.pretrained.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser(prog="gfla evaluate"):
    """The argument parser of ``gfla evaluate``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate every test pair with a model and compute the paper's metrics.",
    )
    parser.add_argument("--model", required=True, help=".keras file, SavedModel dir or .tflite")
    parser.add_argument(
        "--data",
        required=True,
        help="dataset root (DeepFashion or Market layout, or a synthetic dataset)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--metrics",
        default="auto",
        help=f"comma-separated subset of {','.join(evaluator.METRICS)} (psnr comes with ssim); 'auto' (default) = "
        "ssim,psnr,lpips,fid, plus epe on synthetic data and lpips_masked on Market",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--limit", type=_positive_int, default=None, help="first N pairs only")
    parser.add_argument("--dataset", choices=evaluator.DATASET_KINDS, default="auto")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--lpips-weights",
        default="default",
        help="LPIPS weights (.npz / .weights.h5 / .pth); default: $GFLA_LPIPS_WEIGHTS or the "
        "Keras cache; 'random' for smoke tests",
    )
    parser.add_argument(
        "--fid-protocol",
        choices=FID_PROTOCOLS,
        default="gfla",
        help="gfla (default): torchvision's inception_v3 with the GFLA authors' input mapping "
        "and batches of 64, the paper's FID; keras: keras.applications.InceptionV3, not "
        "comparable with published numbers",
    )
    parser.add_argument(
        "--inception-weights",
        default="default",
        help="gfla protocol: torchvision's inception_v3 state dict (.pth or .npz; default "
        "$GFLA_INCEPTION_WEIGHTS or the torch hub cache); keras protocol: 'imagenet' or a "
        "Keras weights file; 'random' for smoke tests",
    )
    parser.add_argument(
        "--fid-reference",
        default=None,
        help="real-image statistics (.npz with mu, sigma) or image folder; default DATA/train",
    )
    parser.add_argument("--fid-input-size", type=_positive_int, default=299)
    parser.add_argument(
        "--ssim-data-range",
        choices=("fixed", "dynamic"),
        default="fixed",
        help="fixed: 255 (default); dynamic: max-min of each generated image, as the "
        "PG2/PATN/GFLA evaluation scripts",
    )
    parser.add_argument("--strategy", choices=evaluator.STRATEGIES, default="default")
    parser.add_argument("--rank-by", choices=("lpips", "ssim", "psnr"), default=None)
    parser.add_argument("--num-examples", type=int, default=4, help="best/worst pairs shown")
    return parser


def main(argv):
    """Runs ``gfla evaluate``; returns the exit status."""
    parser = build_parser(argv[0] if argv else "gfla evaluate")
    args = parser.parse_args(argv[1:])
    from gfla_tf.data.dataset import DataError

    try:
        kind = evaluator.detect_dataset_kind(args.data) if args.dataset == "auto" else args.dataset
        if args.metrics == "auto":
            metrics = ("ssim", "psnr", "lpips", "fid")
            metrics += {"synthetic": ("epe",), "market": ("lpips_masked",)}.get(kind, ())
        else:
            metrics = evaluator.parse_metrics(args.metrics)
        options = evaluator.EvaluationOptions(
            model=args.model,
            data=args.data,
            out=args.out,
            metrics=metrics,
            batch_size=args.batch_size,
            limit=args.limit,
            dataset=kind,
            split=args.split,
            lpips_weights=args.lpips_weights,
            inception_weights=args.inception_weights,
            fid_protocol=args.fid_protocol,
            fid_reference=args.fid_reference,
            fid_input_size=args.fid_input_size,
            ssim_range=args.ssim_data_range,
            strategy=args.strategy,
            rank_by=args.rank_by,
            num_examples=args.num_examples,
        )
        result = evaluator.evaluate(options)
    except (WeightsUnavailableError, DataError, FileNotFoundError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    metrics = result["metrics"]
    print(f"{result['num_pairs']} pairs, {result['protocol']['resolution']} -> {args.out}")
    for name, value in metrics.items():
        if isinstance(value, dict):
            print(f"  {name}:")
            for key, sub in value.items():
                print(f"    {key}: {sub}")
        else:
            print(f"  {name}: {value}")
    return 0
