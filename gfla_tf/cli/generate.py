"""``gfla generate``: render the person of a photo in a new pose.

Examples::

    gfla generate --model models/gfla --source photo.jpg \\
        --source-pose photo_keypoints.json --target-pose pose.json --out out.png \\
        --flow-out flow.png --mask-out mask.png

    # Repose a dataset image: both poses from the annotation CSV, each its own row.
    gfla generate --model models/gfla --source df/test/A.jpg --pose-frame 256x176 \\
        --source-pose df/fashion-annotation-test.csv#A.jpg \\
        --target-pose df/fashion-annotation-test.csv#B.jpg --out A_as_B.png

``--model`` is a ``.keras`` file, a SavedModel (or TF Serving base directory) or a
``.tflite`` file. Poses are any format ``gfla_tf.data.read_keypoints`` reads (OpenPose
JSON, COCO-17 JSON, a JSON list of 18 [x, y], an annotation CSV row). A CSV row is chosen
with ``FILE#NAME`` (NAME = the image name in the CSV's first column) or with
``--source-pose-name`` / ``--target-pose-name``; ``--pose-name`` sets both. Coordinates
are in the source photo's pixels unless ``--pose-frame HxW`` names another frame (e.g.
256x176 for the DeepFashion annotations). A photo of another size than the model's is
resized to it, and the result back to the photo's size; keypoints are scaled with it.
A NaN or infinite keypoint is an error; one far outside the image is treated as missing
(with a warning). ``--flow-out`` and ``--mask-out`` write one panel per attention scale
(coarse to fine).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from gfla_tf import io
from gfla_tf.cli.errors import one_line

logger = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH, e.g. 256x176, got {text!r}"
        ) from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.splitlines()[0].replace("``", ""),
        epilog="Repose a dataset image: --source-pose ANNOTATIONS.csv#SOURCE_NAME "
        "--target-pose ANNOTATIONS.csv#TARGET_NAME --pose-frame 256x176 (DeepFashion; "
        "Market-1501: 128x64). NAME is the image name in the CSV's first column.",
    )
    parser.add_argument("--model", required=True, help=".keras, SavedModel dir or .tflite")
    parser.add_argument("--source", required=True, help="photo of the person (any PIL format)")
    parser.add_argument(
        "--source-pose",
        required=True,
        metavar="FILE[#NAME]",
        help="keypoints of the photo; FILE#NAME takes row NAME of an annotation CSV",
    )
    parser.add_argument(
        "--target-pose",
        required=True,
        metavar="FILE[#NAME]",
        help="keypoints of the wanted pose; FILE#NAME takes row NAME of an annotation CSV",
    )
    parser.add_argument("--out", required=True, help="output image (format from the extension)")
    parser.add_argument("--flow-out", help="also write the flows as colour images here")
    parser.add_argument("--mask-out", help="also write the attention masks here")
    parser.add_argument(
        "--pose-frame",
        type=_size,
        help="HEIGHTxWIDTH of the frame the pose coordinates are in (default: the photo's)",
    )
    parser.add_argument(
        "--source-pose-name", help="image name of the --source-pose CSV row (same as FILE#NAME)"
    )
    parser.add_argument(
        "--target-pose-name", help="image name of the --target-pose CSV row (same as FILE#NAME)"
    )
    parser.add_argument(
        "--pose-name",
        help="image name of the CSV row for both poses, where FILE#NAME and the per-pose "
        "names do not say",
    )
    return parser


def pose_reference(
    text: str, name: str | None = None, default_name: str | None = None
) -> tuple[str, str | None]:
    """Splits ``FILE#NAME`` into (file, row name); a plain existing path stays whole.

    Args:
      text: a path, or ``path#name`` to choose a row of an annotation CSV.
      name: a row name given for this pose alone (``--source-pose-name``); it may not
        contradict a ``#NAME`` in ``text``.
      default_name: a row name given for both poses (``--pose-name``), used when neither
        ``#NAME`` nor ``name`` is given.

    Returns:
      (path, row name or None).

    Raises:
      ValueError: if ``#NAME`` and ``name`` differ, or NAME is empty.
    """
    path, row = text, None
    if "#" in text and not os.path.exists(text):
        path, row = text.rsplit("#", 1)
        if not row:
            raise ValueError(f"{text}: empty row name after '#'")
    if row is not None and name is not None and row != name:
        raise ValueError(f"{text}: row {row!r} contradicts the separately given name {name!r}")
    for candidate in (row, name, default_name):
        if candidate is not None:
            return path, candidate
    return path, None


def read_pose(text: str, name: str | None = None, default_name: str | None = None) -> np.ndarray:
    """Reads the [18, 2] keypoints that ``FILE[#NAME]`` refers to (see :func:`pose_reference`).

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if it is a directory or cannot be read as keypoints.
    """
    from gfla_tf.data import read_keypoints

    path, row = pose_reference(text, name, default_name)
    if os.path.isdir(path):
        raise ValueError(f"pose file {path} is a directory; pass a keypoint file")
    return read_keypoints(path, name=row)


def save_image(path: str | os.PathLike, array: Any) -> str:
    """Writes a uint8 [H, W, C] image atomically, with the permissions ``open()`` gives."""
    from PIL import Image

    path = os.fspath(path)
    ext = os.path.splitext(path)[1] or ".png"
    image = Image.fromarray(np.asarray(array, np.uint8).squeeze())
    with io.atomic_path(path) as tmp:
        image.save(tmp, format=Image.registered_extensions().get(ext.lower(), "PNG"))
    return path


def _resize(array: np.ndarray, size: Sequence[int], resample: int) -> np.ndarray:
    """Resizes a uint8 [H, W, C] array to size=(height, width)."""
    from PIL import Image

    if array.shape[:2] == tuple(size):
        return array
    image = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    resized = np.asarray(image.resize((size[1], size[0]), resample))
    return resized[..., None] if resized.ndim == 2 else resized


def flow_panels(flows: Sequence[np.ndarray], size: Sequence[int]) -> np.ndarray:
    """Colours each flow (in output pixels, one shared scale) and puts them side by side.

    Args:
      flows: list of [h, w, 2] flows in pixels of their own scale.
      size: (height, width) of each panel.

    Returns:
      uint8 [height, width * len(flows), 3].
    """
    from PIL import Image

    from gfla_tf.data import flow_to_color

    scaled = [f * np.array([size[1] / f.shape[1], size[0] / f.shape[0]], np.float32) for f in flows]
    max_flow = max(float(np.hypot(f[..., 0], f[..., 1]).max(initial=0.0)) for f in scaled)
    panels = [
        _resize(flow_to_color(f, max_flow=max_flow or 1.0), size, Image.NEAREST) for f in scaled
    ]
    return np.concatenate(panels, axis=1)


def mask_panels(masks: Sequence[np.ndarray], size: Sequence[int]) -> np.ndarray:
    """Greyscale masks (white = attention output used) side by side, each at ``size``."""
    from PIL import Image

    panels = []
    for mask in masks:
        grey = np.clip(np.rint(mask[..., 0] * 255.0), 0, 255).astype(np.uint8)
        panels.append(_resize(np.repeat(grey[..., None], 3, axis=-1), size, Image.NEAREST))
    return np.concatenate(panels, axis=1)


def generate(
    predictor: Any,
    photo: np.ndarray,
    source_keypoints: np.ndarray,
    target_keypoints: np.ndarray,
    pose_frame: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Runs a predictor on one photo of any size.

    Args:
      predictor: from ``gfla_tf.export.load_predictor``.
      photo: uint8 [H, W, 3].
      source_keypoints: [18, 2] (x, y) in ``pose_frame`` pixels; negative = missing.
      target_keypoints: [18, 2] (x, y) in ``pose_frame`` pixels.
      pose_frame: (height, width) of the keypoint frame; default the photo's size.

    Returns:
      {"image": uint8 [H, W, 3] at the photo's size, "flows": [[h, w, 2], ...],
      "masks": [[h, w, 1], ...]} (flows and masks at the model's scales).
    """
    from PIL import Image

    from gfla_tf.data.keypoints import scale_keypoints

    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(f"photo must be uint8 [H, W, 3], got {photo.dtype} {list(photo.shape)}")
    size = predictor.image_size
    frame = tuple(pose_frame) if pose_frame else photo.shape[:2]
    image = _resize(photo, size, Image.BICUBIC)
    source = scale_keypoints(np.asarray(source_keypoints, np.float32), frame, size)
    target = scale_keypoints(np.asarray(target_keypoints, np.float32), frame, size)
    outputs = predictor.predict(image[None], source[None], target[None])
    return {
        "image": _resize(outputs["image"][0], photo.shape[:2], Image.BICUBIC),
        "flows": [f[0] for f in outputs["flows"]],
        "masks": [m[0] for m in outputs["masks"]],
    }


def _read_photo(path: str) -> np.ndarray:
    """Reads an RGB photo; a truncated or unreadable file is a ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    if os.path.isdir(path):
        raise ValueError(f"--source {path} is a directory; pass an image file")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"source photo not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        # Pillow reports a truncated file as OSError and some corrupt headers as SyntaxError.
        raise ValueError(f"cannot read the photo {path}: {err}") from None


def _check_outputs(args: argparse.Namespace) -> None:
    """Rejects output paths that cannot be written before the model runs."""
    for flag, path in (
        ("--out", args.out),
        ("--flow-out", args.flow_out),
        ("--mask-out", args.mask_out),
    ):
        if path is not None and os.path.isdir(path):
            raise ValueError(f"{flag} {path} is a directory; pass an image file name")


def main(argv: Sequence[str]) -> int:
    """Runs ``gfla generate``; returns the exit status."""
    args = _parser(argv[0]).parse_args(argv[1:])
    from gfla_tf.export import load_predictor

    try:
        _check_outputs(args)
        photo = _read_photo(args.source)
        source_kp = read_pose(args.source_pose, args.source_pose_name, args.pose_name)
        target_kp = read_pose(args.target_pose, args.target_pose_name, args.pose_name)
        predictor = load_predictor(args.model)
        result = generate(predictor, photo, source_kp, target_kp, pose_frame=args.pose_frame)
        size = photo.shape[:2]
        save_image(args.out, result["image"])
        print(args.out)
        if args.flow_out:
            save_image(args.flow_out, flow_panels(result["flows"], size))
            print(args.flow_out)
        if args.mask_out:
            save_image(args.mask_out, mask_panels(result["masks"], size))
            print(args.mask_out)
    except (OSError, ValueError) as err:
        print(f"{argv[0]}: {one_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(["gfla generate"] + sys.argv[1:]))
