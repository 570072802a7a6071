"""Target poses and sample photos for the demo page, from an annotation CSV or a dataset.

``gfla demo --poses PATH`` takes an annotation CSV (``name:keypoints_y:keypoints_x``, as
DeepFashion, Market-1501 and the synthetic dataset ship them), any single pose file
``gfla_tf.data.read_keypoints`` reads, or a dataset root (the test split's annotations
first, then the train split's). Photos named by the annotations and found in the
dataset's ``<split>/`` folder become sample source photos.

Everything is read once at start-up; photos are kept in memory and served by index, so
no request ever names a file.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from gfla_tf.demo import service

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class Gallery:
    """Poses and sample photos.

    Attributes:
      source: the ``--poses`` path.
      poses: list of ``{"name", "keypoints": [[x, y] x 18], "frame": [h, w] or None}``;
        ``frame`` is the image size the coordinates are in (None: the photo's own).
      samples: list of ``{"name", "keypoints", "frame", "media_type"}`` with the photo bytes
        in ``data`` (not sent in the JSON).
    """

    source: str
    poses: list
    samples: list

    def to_json(self) -> dict:
        """The ``GET /api/v1/gallery`` document (sample photos by index, without bytes)."""
        samples = [
            {k: v for k, v in sample.items() if k != "data"} | {"index": i}
            for i, sample in enumerate(self.samples)
        ]
        return {"source": self.source, "poses": self.poses, "samples": samples}


def _spread(items, count):
    """Up to ``count`` items evenly spread over ``items`` (a varied, stable choice)."""
    if len(items) <= count:
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def _image_header(path):
    """(size (h, w), media type) of a PNG/JPEG/WebP within the demo's limits, else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) > service.MAX_IMAGE_BYTES:
            return None
        with Image.open(path, formats=service.IMAGE_FORMATS) as image:
            width, height = image.size
            media_type = Image.MIME.get(image.format)
    except (OSError, UnidentifiedImageError):
        return None
    if max(width, height) > service.MAX_IMAGE_SIDE:
        return None
    return (height, width), media_type


def _csv_frame(csv_path, root):
    """The annotation frame of a CSV whose images are not there to ask, or None."""
    from gfla_tf.data import dataset, synthetic

    manifest = synthetic.read_manifest(root)
    if manifest is not None:
        return [int(manifest["size"])] * 2
    base = os.path.basename(csv_path).lower()
    if base.startswith(("fashion", "fasion")):
        return list(dataset.ANNOTATION_SIZES["deepfashion"])
    if base.startswith("market"):
        return list(dataset.ANNOTATION_SIZES["market"])
    return None


def _annotation_files(root):
    """[(csv path, image folder)] of a dataset root, test split first."""
    from gfla_tf.data import dataset

    found = []
    for split in ("test", "train"):
        for kind in dataset.KINDS:
            annotation, _ = dataset.find_split_files(root, kind, split)
            if annotation and annotation not in [f for f, _ in found]:
                found.append((annotation, os.path.join(root, split)))
    return found


def _split_of(csv_path):
    return "test" if "test" in os.path.basename(csv_path).lower() else "train"


def load_gallery(path: str, max_poses: int = 12, max_samples: int = 6) -> Gallery:
    """Reads the poses and sample photos that ``--poses PATH`` names.

    Args:
      path: an annotation CSV, a single pose file, or a dataset root.
      max_poses: the most target poses to offer (spread over the annotations).
      max_samples: the most sample photos to offer.

    Returns:
      A :class:`Gallery`.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if it holds no poses (the message says what was expected).
    """
    from gfla_tf.data import keypoints as kp

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--poses: not found: {path}")
    if os.path.isdir(path):
        files = _annotation_files(path)
        if not files:
            raise ValueError(
                f"--poses: {path} holds no annotation CSV (expected e.g. "
                "fashion-annotation-test.csv, as DeepFashion and the synthetic dataset have)"
            )
        root = path
    elif path.lower().endswith(".csv"):
        root = os.path.dirname(os.path.abspath(path))
        files = [(path, os.path.join(root, _split_of(path)))]
    else:
        points = kp.read_keypoints(path)
        name = os.path.basename(path)
        pose = {"name": name, "keypoints": points.tolist(), "frame": None}
        return Gallery(source=path, poses=[pose], samples=[])

    entries = []  # (name, keypoints, csv path, image folder)
    for csv_path, image_dir in files:
        rows, problems = kp.read_annotation_csv(csv_path, strict=False)
        if problems:
            _log.warning("%s: skipped %d malformed rows", csv_path, len(problems))
        for name in sorted(rows):
            entries.append((name, rows[name], csv_path, image_dir))
    # Poses to choose from should show a whole person.
    complete = [e for e in entries if np.sum(np.all(e[1] >= 0, axis=-1)) >= 12] or entries
    if not complete:
        raise ValueError(f"--poses: {path} has no annotation rows")

    def described(entry, header=None):
        name, points, csv_path, _ = entry
        frame = list(header[0]) if header else _csv_frame(csv_path, root)
        return {"name": name, "keypoints": np.asarray(points, float).tolist(), "frame": frame}

    headers = {}
    with_photo = []
    for entry in complete:
        image_path = os.path.join(entry[3], entry[0])
        if os.path.isfile(image_path):
            headers[entry[0]] = _image_header(image_path)
            if headers[entry[0]]:
                with_photo.append(entry)
        # A dataset may be large: looking further is not needed once there is a choice.
        if len(with_photo) >= 50 * max_samples:
            break
    poses = [described(e, headers.get(e[0])) for e in _spread(complete, max_poses)]
    samples = []
    for entry in _spread(with_photo, max_samples):
        header = headers[entry[0]]
        with open(os.path.join(entry[3], entry[0]), "rb") as f:
            data = f.read()
        samples.append(described(entry, header) | {"media_type": header[1], "data": data})
    _log.info("gallery from %s: %d poses, %d sample photos", path, len(poses), len(samples))
    return Gallery(source=path, poses=poses, samples=samples)
