"""``gfla export``: write a trained generator as a SavedModel for TF Serving, or as TFLite.

Examples::

    # DIR/<version>/ (TF Serving layout); version = 1 + the highest existing one
    gfla export --model runs/df/generator.keras --output models/gfla
    gfla export --model runs/df/generator.keras --output models/gfla --version 3

    # .tflite from a .keras file or an existing SavedModel export
    gfla export --format tflite --quantize float16 --model models/gfla --output gfla.tflite

The SavedModel has two signatures: ``serving_default`` (uint8 image and keypoints in,
uint8 image, flows and masks out) and ``heatmaps`` (float image and pose heatmaps in).
The heatmap sigma and image size come from the training run's ``config.json`` beside the
model. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from gfla_tf.cli.errors import one_line

logger = logging.getLogger(__name__)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument(
        "--model",
        required=True,
        help=".keras generator file, training work directory holding one, or (for tflite) a "
        "SavedModel export",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="saved_model: the model base directory (versions go inside); tflite: the file",
    )
    parser.add_argument(
        "--format", choices=("saved_model", "tflite"), default="saved_model", help="output format"
    )
    parser.add_argument(
        "--version", type=int, help="SavedModel version number (default: next free one)"
    )
    parser.add_argument(
        "--quantize",
        choices=("none", "float16", "dynamic"),
        default="none",
        help="TFLite weight quantisation",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="keypoint heatmap sigma in pixels, for a model without its training config.json "
        "beside it (default: the config's data.sigma, else 6)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Runs ``gfla export``; returns the exit status."""
    args = _parser(argv[0]).parse_args(argv[1:])
    from gfla_tf import export

    if not os.path.exists(args.model):
        print(f"{argv[0]}: --model {args.model} does not exist", file=sys.stderr)
        return 2
    try:
        if args.format == "saved_model":
            if args.quantize != "none":
                print(f"{argv[0]}: --quantize applies to --format tflite only", file=sys.stderr)
                return 2
            path = export.export_saved_model(
                args.model, args.output, version=args.version, sigma=args.sigma
            )
        elif args.version is not None:
            print(f"{argv[0]}: --version applies to --format saved_model only", file=sys.stderr)
            return 2
        elif export.is_saved_model(args.model):
            path = export.export_tflite(args.model, args.output, quantize=args.quantize)
        else:
            with tempfile.TemporaryDirectory(prefix="gfla-export-") as tmp:
                saved = export.export_saved_model(args.model, tmp, version=1, sigma=args.sigma)
                path = export.export_tflite(saved, args.output, quantize=args.quantize)
    except (OSError, ValueError) as err:
        # OSError covers FileExistsError, FileNotFoundError and an unwritable --output.
        print(f"{argv[0]}: {one_line(err)}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(["gfla export"] + sys.argv[1:]))
