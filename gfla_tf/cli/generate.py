"""``gfla generate``: render the person of a photo in a new pose.

Examples::

    gfla generate --model models/gfla --source photo.jpg \\
        --source-pose photo_keypoints.json --target-pose pose.json --out out.png \\
        --flow-out flow.png --mask-out mask.png

``--model`` is a ``.keras`` file, a SavedModel (or TF Serving base directory) or a
``.tflite`` file. Poses are any format ``gfla_tf.data.read_keypoints`` reads (OpenPose
JSON, COCO-17 JSON, a JSON list of 18 [x, y], an annotation CSV row). Their coordinates
are in the source photo's pixels unless ``--pose-frame HxW`` names another frame (e.g.
256x176 for the DeepFashion annotations). A photo of another size than the model's is
resized to it, and the result back to the photo's size; keypoints are scaled with it.
``--flow-out`` and ``--mask-out`` write one panel per attention scale (coarse to fine).
"""

import argparse
import logging
import os
import sys
import tempfile

import numpy as np

from gfla_tf.cli.main import ArgumentParser

logger = logging.getLogger(__name__)


def _size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH, e.g. 256x176, got {text!r}"
        ) from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def _parser(prog):
    parser = ArgumentParser(prog=prog, description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--model", required=True, help=".keras, SavedModel dir or .tflite")
    parser.add_argument("--source", required=True, help="photo of the person (any PIL format)")
    parser.add_argument("--source-pose", required=True, help="keypoints of the photo")
    parser.add_argument("--target-pose", required=True, help="keypoints of the wanted pose")
    parser.add_argument("--out", required=True, help="output image (format from the extension)")
    parser.add_argument("--flow-out", help="also write the flows as colour images here")
    parser.add_argument("--mask-out", help="also write the attention masks here")
    parser.add_argument(
        "--pose-frame",
        type=_size,
        help="HEIGHTxWIDTH of the frame the pose coordinates are in (default: the photo's)",
    )
    parser.add_argument(
        "--pose-name", help="image name of the row to take from an annotation CSV pose file"
    )
    return parser


def save_image(path, array):
    """Writes a uint8 [H, W, C] image atomically (temporary file, then rename)."""
    from PIL import Image

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    ext = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ext, dir=directory)
    os.close(fd)
    try:
        image = Image.fromarray(np.asarray(array, np.uint8).squeeze())
        image.save(tmp, format=Image.registered_extensions().get(ext.lower(), "PNG"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _resize(array, size, resample):
    """Resizes a uint8 [H, W, C] array to size=(height, width)."""
    from PIL import Image

    if array.shape[:2] == tuple(size):
        return array
    image = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    resized = np.asarray(image.resize((size[1], size[0]), resample))
    return resized[..., None] if resized.ndim == 2 else resized


def flow_panels(flows, size):
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


def mask_panels(masks, size):
    """Greyscale masks (white = attention output used) side by side, each at ``size``."""
    from PIL import Image

    panels = []
    for mask in masks:
        grey = np.clip(np.rint(mask[..., 0] * 255.0), 0, 255).astype(np.uint8)
        panels.append(_resize(np.repeat(grey[..., None], 3, axis=-1), size, Image.NEAREST))
    return np.concatenate(panels, axis=1)


def generate(predictor, photo, source_keypoints, target_keypoints, pose_frame=None):
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


def main(argv):
    """Runs ``gfla generate``; returns the exit status."""
    args = _parser(argv[0]).parse_args(argv[1:])
    from PIL import Image, UnidentifiedImageError

    from gfla_tf.data import read_keypoints
    from gfla_tf.export import load_predictor

    try:
        with Image.open(args.source) as img:
            photo = np.asarray(img.convert("RGB"))
        source_kp = read_keypoints(args.source_pose, name=args.pose_name)
        target_kp = read_keypoints(args.target_pose, name=args.pose_name)
        predictor = load_predictor(args.model)
    except (FileNotFoundError, UnidentifiedImageError, ValueError) as err:
        print(f"{argv[0]}: {err}", file=sys.stderr)
        return 1
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
    return 0


if __name__ == "__main__":
    sys.exit(main(["gfla generate"] + sys.argv[1:]))
