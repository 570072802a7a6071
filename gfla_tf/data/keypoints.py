"""Body keypoints: the 18-point order, scaling, heatmaps and readers for common formats.

Keypoints are float arrays ``[..., 18, 2]`` holding ``(x, y)`` pixel coordinates with the
pixel centres at integer positions; a missing keypoint has a negative coordinate (the
files use -1).

Index order. ``KEYPOINT_NAMES`` spells the order as the reference code names it. The
community annotations of DeepFashion and Market-1501 were produced by the OpenPose
COCO-18 model, whose indices 14-17 are (right eye, left eye, right ear, left ear); the
reference's limb list joins the right shoulder to index 16 and the left shoulder to index
17, which only makes sense in that order. The readers therefore keep OpenPose's index
order (a COCO-18 OpenPose file maps one to one), so keypoints read from OpenPose, BODY_25
or COCO-17 files line up with the dataset annotations. ``SIDES`` gives each index's body
side in that (OpenPose) sense.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from gfla_tf import io

NUM_KEYPOINTS = 18

KEYPOINT_NAMES = (
    "nose",
    "neck",
    "Rsho",
    "Relb",
    "Rwri",
    "Lsho",
    "Lelb",
    "Lwri",
    "Rhip",
    "Rkne",
    "Rank",
    "Lhip",
    "Lkne",
    "Lank",
    "Leye",
    "Reye",
    "Lear",
    "Rear",
)

# Body side per index in OpenPose COCO-18 order: "R", "L" or "C" (centre).
SIDES = ("C", "C", "R", "R", "R", "L", "L", "L", "R", "R", "R", "L", "L", "L", "R", "L", "R", "L")

# Limbs of the skeleton as index pairs (the reference's list, 0-based).
LIMBS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)

# OpenPose BODY_25 index for each of the 18 indices (BODY_25 adds MidHip at 8 and feet).
BODY25_TO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# COCO-17 index for each of the 18 indices; the neck (None) is derived from the shoulders.
COCO17_TO_18 = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)


class KeypointFormatError(ValueError):
    """A keypoint file or annotation row that cannot be read; the message names it."""


def missing_mask(keypoints: ArrayLike | tf.Tensor) -> tf.Tensor:
    """Returns a boolean array [..., 18], True where a keypoint is missing (negative)."""
    keypoints = np.asarray(keypoints)
    return np.any(keypoints < 0, axis=-1)


def scale_keypoints(
    keypoints: ArrayLike | tf.Tensor, from_size: tuple[int, int], to_size: tuple[int, int]
):
    """Scales keypoints from one image frame to another, keeping missing ones at -1.

    Each axis is scaled by its own ratio, as when an image is resized without keeping the
    aspect ratio (DeepFashion's 256x176 annotations loaded at 256x256).

    Args:
      keypoints: [..., 18, 2] (x, y) array or tensor; negative = missing.
      from_size: (height, width) of the frame the coordinates are in.
      to_size: (height, width) of the frame to scale them to.

    Returns:
      A float32 array (or tensor, for a tensor input) of the same shape.
    """
    sy = float(to_size[0]) / float(from_size[0])
    sx = float(to_size[1]) / float(from_size[1])
    if tf.is_tensor(keypoints):
        keypoints = tf.cast(keypoints, tf.float32)
        missing = tf.reduce_any(keypoints < 0, axis=-1, keepdims=True)
        scaled = keypoints * tf.constant([sx, sy], tf.float32)
        return tf.where(missing, tf.constant(-1.0), scaled)
    keypoints = np.asarray(keypoints, np.float32)
    missing = np.any(keypoints < 0, axis=-1, keepdims=True)
    scaled = keypoints * np.array([sx, sy], np.float32)
    return np.where(missing, np.float32(-1.0), scaled).astype(np.float32)


def keypoints_to_heatmaps(
    keypoints: ArrayLike | tf.Tensor, height: int, width: int, sigma: float = 6.0
) -> tf.Tensor:
    """Draws one Gaussian heatmap per keypoint, in-graph and vectorised.

    Channel n is ``exp(-((yy - y_n)^2 + (xx - x_n)^2) / (2 sigma^2))`` over the pixel grid
    (``xx``, ``yy`` the integer pixel coordinates), or all zeros when keypoint n is missing
    (either coordinate negative). The Gaussian is separable, so it is computed as the
    outer product of a row and a column profile: the same values (to float rounding) for
    a fraction of the work. Only TensorFlow builtin ops are used, so the function runs in
    tf.data, in a SavedModel and in a TFLite graph.

    Args:
      keypoints: [..., K, 2] (x, y) pixel coordinates at the output size; negative =
        missing. Any float or integer dtype; K is usually 18.
      height: output height in pixels (a Python int).
      width: output width in pixels (a Python int).
      sigma: Gaussian standard deviation in pixels.

    Returns:
      A float32 tensor [..., height, width, K].

    Raises:
      ValueError: if the last axis of ``keypoints`` is not 2, or the size or sigma is not
        positive.
    """
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    keypoints = tf.convert_to_tensor(keypoints)
    if keypoints.shape.rank is not None and keypoints.shape[-1] not in (None, 2):
        raise ValueError(
            f"keypoints must have shape [..., K, 2] (x, y), got {keypoints.shape.as_list()}"
        )
    keypoints = tf.cast(keypoints, tf.float32)
    x = keypoints[..., 0]  # [..., K]
    y = keypoints[..., 1]
    present = tf.cast(tf.logical_and(x >= 0.0, y >= 0.0), tf.float32)
    scale = -0.5 / float(sigma) ** 2
    xx = tf.range(int(width), dtype=tf.float32)
    yy = tf.range(int(height), dtype=tf.float32)
    # [..., 1, W, K] and [..., H, 1, K]; the presence mask folds into the column profile.
    gx = tf.exp(scale * tf.square(xx[:, None] - x[..., None, :]))[..., None, :, :]
    gy = tf.exp(scale * tf.square(yy[:, None] - y[..., None, :])) * present[..., None, :]
    return gy[..., :, None, :] * gx


def heatmaps_to_keypoints(heatmaps: tf.Tensor, threshold: float = 0.1) -> tf.Tensor:
    """Recovers keypoints from their Gaussian heatmaps, in-graph (the inverse of
    ``keypoints_to_heatmaps``).

    A heatmap is separable, so its column sums are a sampled Gaussian in x and its row
    sums one in y, whatever sigma is. The log of a Gaussian is a parabola, so the vertex
    of the parabola through the logs of the three samples around the largest one is the
    centre, exactly (to float rounding) and at sub-pixel precision; a keypoint near the
    border is fitted on the three samples nearest to it. Builtin ops only (TFLite too).

    Args:
      heatmaps: [..., H, W, K] with H, W >= 3, as drawn by ``keypoints_to_heatmaps``.
      threshold: a channel whose largest value is below this is a missing keypoint.

    Returns:
      A float32 tensor [..., K, 2] of (x, y) pixel coordinates; -1 for missing keypoints.
    """
    heatmaps = tf.cast(heatmaps, tf.float32)
    peak = tf.reduce_max(heatmaps, axis=[-3, -2])
    x = _gaussian_centre(tf.reduce_sum(heatmaps, axis=-3))
    y = _gaussian_centre(tf.reduce_sum(heatmaps, axis=-2))
    points = tf.stack([x, y], axis=-1)
    return tf.where((peak >= threshold)[..., None], points, -1.0)


def _gaussian_centre(profile):
    """The centre of sampled Gaussians [..., N, K] along axis -2 -> [..., K]."""
    n = profile.shape[-2]
    if n is None or n < 3:
        raise ValueError(f"heatmaps must be at least 3x3 to locate keypoints, got {n} samples")
    centre = tf.clip_by_value(tf.argmax(profile, axis=-2, output_type=tf.int32), 1, n - 2)

    def log_at(offset):
        # one_hot's axis must be non-negative: [..., K, N] -> [..., N, K].
        pick = tf.linalg.matrix_transpose(tf.one_hot(centre + offset, n, dtype=profile.dtype))
        # The floor keeps log finite where a far tail underflowed to 0.
        return tf.math.log(tf.maximum(tf.reduce_sum(profile * pick, axis=-2), 1e-30))

    before, at, after = log_at(-1), log_at(0), log_at(1)
    curvature = before - 2.0 * at + after
    offset = tf.math.divide_no_nan(0.5 * (before - after), curvature)
    return tf.cast(centre, tf.float32) + tf.clip_by_value(offset, -1.0, 1.0)


def _as_points(values, source, what):
    """Converts a flat or nested numeric list to a float array, or raises naming source."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise KeypointFormatError(f"{source}: {what} contains non-numbers ({err})") from None
    if not np.all(np.isfinite(array)):
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        where = f"point {first[0]}" if array.ndim == 2 else f"entry {list(first)}"
        raise KeypointFormatError(
            f"{source}: {what} contains NaN or infinite values (first at {where})"
        )
    return array


def _from_triples(flat, count, source, what, min_confidence=0.0):
    """[x, y, c] * count (flat) or count x (2|3) -> [count, 2] with missing = -1."""
    array = _as_points(flat, source, what)
    if array.ndim == 1:
        if array.size == count * 3:
            array = array.reshape(count, 3)
        elif array.size == count * 2:
            array = array.reshape(count, 2)
        else:
            raise KeypointFormatError(
                f"{source}: {what} has {array.size} numbers; expected {count * 3} "
                f"({count} x [x, y, confidence]) or {count * 2}"
            )
    if array.ndim != 2 or array.shape[0] != count or array.shape[1] not in (2, 3):
        raise KeypointFormatError(
            f"{source}: {what} has shape {list(array.shape)}; expected [{count}, 2 or 3]"
        )
    points = array[:, :2].copy()
    missing = np.any(points < 0, axis=1)
    if array.shape[1] == 3:
        missing |= array[:, 2] <= min_confidence
    # OpenPose writes undetected points as (0, 0, 0).
    missing |= np.all(points == 0, axis=1)
    points[missing] = -1.0
    return points


def _pick(points_list, source):
    if not points_list:
        raise KeypointFormatError(f"{source}: no person found")
    # The most complete person, as the main subject of a person photo.
    counts = [int(np.sum(np.all(p >= 0, axis=1))) for p in points_list]
    best = int(np.argmax(counts))
    if counts[best] == 0:
        raise KeypointFormatError(f"{source}: no person with any detected keypoint")
    return points_list[best]


def _map_indices(points, mapping):
    out = np.full((NUM_KEYPOINTS, 2), -1.0)
    for i, j in enumerate(mapping):
        if j is not None:
            out[i] = points[j]
    return out


def coco17_to_18(points: ArrayLike) -> np.ndarray:
    """Maps COCO-17 keypoints [17, 2] to the 18-point order.

    The neck is the midpoint of the shoulders, missing if either shoulder is missing.

    Args:
      points: [17, 2] (x, y) in COCO order; negative = missing.

    Returns:
      A float32 array [18, 2].
    """
    points = np.asarray(points, np.float64)
    out = _map_indices(points, COCO17_TO_18)
    lsho, rsho = points[5], points[6]
    if np.all(lsho >= 0) and np.all(rsho >= 0):
        out[1] = 0.5 * (lsho + rsho)
    return out.astype(np.float32)


def openpose_to_18(points: ArrayLike) -> np.ndarray:
    """Maps OpenPose COCO-18 [18, 2] or BODY_25 [25, 2] keypoints to the 18-point order."""
    points = np.asarray(points, np.float64)
    if points.shape[0] == 18:
        return points.astype(np.float32)
    if points.shape[0] == 25:
        return _map_indices(points, BODY25_TO_18).astype(np.float32)
    raise KeypointFormatError(f"expected 18 or 25 OpenPose keypoints, got {points.shape[0]}")


def parse_keypoint_list(
    text: str, source: str = "annotation", what: str = "keypoint list"
) -> np.ndarray:
    """Parses one ``[y0, y1, ...]`` list of the annotation CSV into 18 floats.

    Args:
      text: the list as written in the CSV (JSON-like, e.g. ``"[ 25, -1, 31, ...]"``).
      source: file name and row, for the error message.
      what: which column, for the error message.

    Returns:
      A float64 array [18].

    Raises:
      KeypointFormatError: if the text is not a list of 18 numbers.
    """
    try:
        values = json.loads(text)
    except (TypeError, ValueError):
        raise KeypointFormatError(f"{source}: {what} is not a list of numbers: {text!r}") from None
    if not isinstance(values, list):
        raise KeypointFormatError(f"{source}: {what} is not a list: {text!r}")
    if len(values) != NUM_KEYPOINTS:
        raise KeypointFormatError(
            f"{source}: {what} has {len(values)} values; expected {NUM_KEYPOINTS}"
        )
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise KeypointFormatError(f"{source}: {what} contains non-numbers: {text!r}")
    array = np.asarray(values, np.float64)
    if not np.all(np.isfinite(array)):
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        where = f"point {first[0]}" if array.ndim == 2 else f"entry {list(first)}"
        raise KeypointFormatError(
            f"{source}: {what} contains NaN or infinite values (first at {where})"
        )
    return array


def read_annotation_csv(
    path: str | os.PathLike, strict: bool = True, rejected: set[str] | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Reads a community annotation CSV (``name:keypoints_y:keypoints_x``).

    Each line is one row: the format has no quoting, so a stray quote character spoils
    only its own row (a CSV reader would read on to the next quote). A UTF-8 byte-order
    mark, as spreadsheets write it, is accepted.

    Args:
      path: the CSV file (``fashion-annotation-train.csv`` and the like).
      strict: if True, the first malformed row raises; if False, malformed rows are
        collected and returned.
      rejected: if given (and not strict), the image names of malformed rows are added
        to it, so that callers can tell "annotated badly" from "not annotated".

    Returns:
      ``(keypoints, problems)``: a dict name -> float32 [18, 2] (x, y) array in the
      annotation frame (missing = -1), and a list of problem strings (empty when strict).

    Raises:
      KeypointFormatError: on a missing or wrong header, or (strict) a malformed row.
      FileNotFoundError: if the file does not exist.
    """
    keypoints, problems = {}, []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=":", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["name", "keypoints_y", "keypoints_x"]:
            raise KeypointFormatError(
                f"{path}: expected the header 'name:keypoints_y:keypoints_x', got {header!r}"
            )
        for row_number, row in enumerate(reader, start=2):
            source = f"{path}, row {row_number}"
            try:
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != 3:
                    raise KeypointFormatError(
                        f"{source}: expected 3 ':'-separated fields, got {len(row)}"
                    )
                name = row[0].strip()
                if not name:
                    raise KeypointFormatError(f"{source}: empty image name")
                ys = parse_keypoint_list(row[1], source, "keypoints_y")
                xs = parse_keypoint_list(row[2], source, "keypoints_x")
                if name in keypoints:
                    raise KeypointFormatError(f"{source}: duplicate image name {name!r}")
                points = np.stack([xs, ys], axis=-1)
                points[np.any(points < 0, axis=-1)] = -1.0
                keypoints[name] = points.astype(np.float32)
            except KeypointFormatError as err:
                if strict:
                    raise
                problems.append(str(err))
                if rejected is not None and row and row[0].strip():
                    rejected.add(row[0].strip())
    return keypoints, problems


def write_annotation_csv(path: str | os.PathLike, keypoints: dict[str, np.ndarray]) -> None:
    """Writes keypoints as a community annotation CSV (integer coordinates, -1 = missing).

    The file is written atomically (``gfla_tf.io``).

    Args:
      path: output file.
      keypoints: dict name -> [18, 2] (x, y) array.
    """
    lines = ["name:keypoints_y:keypoints_x"]
    for name, points in keypoints.items():
        points = np.asarray(points, np.float64)
        missing = np.any(points < 0, axis=-1)
        ints = np.where(missing[:, None], -1, np.rint(points)).astype(np.int64)
        ys = "[" + ", ".join(str(int(v)) for v in ints[:, 1]) + "]"
        xs = "[" + ", ".join(str(int(v)) for v in ints[:, 0]) + "]"
        lines.append(f"{name}:{ys}:{xs}")
    io.atomic_write_text(path, "\n".join(lines) + "\n")


def read_openpose_json(path: str | os.PathLike, min_confidence: float = 0.0) -> np.ndarray:
    """Reads an OpenPose JSON file (COCO-18 or BODY_25) and returns the main person.

    Args:
      path: a ``*_keypoints.json`` file with ``{"people": [{"pose_keypoints_2d": ...}]}``
        (``pose_keypoints`` in old versions).
      min_confidence: keypoints with confidence <= this are missing.

    Returns:
      A float32 [18, 2] array (x, y); missing = -1.

    Raises:
      KeypointFormatError: if the file is not OpenPose JSON or has no person.
    """
    data = _load_json(path)
    return _openpose_from_data(data, path, min_confidence)


def _openpose_from_data(data, source, min_confidence=0.0):
    if not isinstance(data, dict) or "people" not in data:
        raise KeypointFormatError(f"{source}: not an OpenPose file (no 'people' list)")
    people = data["people"]
    if not isinstance(people, list):
        raise KeypointFormatError(f"{source}: 'people' is not a list")
    persons = []
    for i, person in enumerate(people):
        flat = person.get("pose_keypoints_2d", person.get("pose_keypoints"))
        if flat is None:
            raise KeypointFormatError(f"{source}: person {i} has no pose_keypoints_2d")
        values = _as_points(flat, source, f"person {i} pose_keypoints_2d").reshape(-1)
        if values.size not in (18 * 3, 25 * 3):
            raise KeypointFormatError(
                f"{source}: person {i} has {values.size} numbers; expected 54 (COCO-18) or "
                "75 (BODY_25)"
            )
        count = values.size // 3
        points = _from_triples(values, count, source, f"person {i}", min_confidence)
        persons.append(openpose_to_18(points))
    return _pick(persons, source).astype(np.float32)


def read_coco_json(path: str | os.PathLike, min_visibility: int = 0) -> np.ndarray:
    """Reads COCO-17 keypoints (a COCO annotation, an annotations file, or a 17-point list).

    Args:
      path: JSON with ``{"keypoints": [x, y, v] * 17}``, ``{"annotations": [...]}`` (the
        most complete person is taken) or a list of 17 ``[x, y]`` / ``[x, y, v]``.
      min_visibility: keypoints with visibility flag <= this are missing (COCO: 0 = not
        labelled).

    Returns:
      A float32 [18, 2] array (x, y); missing = -1.

    Raises:
      KeypointFormatError: if the file is not COCO keypoints or has no person.
    """
    return _coco_from_data(_load_json(path), path, min_visibility)


def _coco_from_data(data, source, min_visibility=0):
    if isinstance(data, dict) and "annotations" in data:
        entries = [a for a in data["annotations"] if isinstance(a, dict) and "keypoints" in a]
    elif isinstance(data, dict) and "keypoints" in data:
        entries = [data]
    elif isinstance(data, list):
        entries = [{"keypoints": data}]
    else:
        raise KeypointFormatError(f"{source}: not COCO keypoints (no 'keypoints')")
    persons = [
        coco17_to_18(_from_triples(e["keypoints"], 17, source, "keypoints", min_visibility))
        for e in entries
    ]
    return _pick(persons, source)


def _load_json(path):
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise KeypointFormatError(f"{path}: not valid JSON ({err})") from None


def read_keypoints(path: str | os.PathLike, name: str | None = None) -> np.ndarray:
    """Reads the 18 keypoints of one person from any supported file, detecting the format.

    Supported: OpenPose JSON (COCO-18 or BODY_25), COCO-17 JSON (annotation, annotations
    file or a list of 17 points), a JSON list of 18 ``[x, y]`` (or ``[x, y, confidence]``)
    in the 18-point order, and the community annotation CSV (``name`` selects the row; it
    may be omitted when the file has a single row). In JSON lists a point at exactly
    (0, 0) counts as missing, as OpenPose writes undetected points that way.

    Args:
      path: the keypoint file.
      name: image name of the row to take from an annotation CSV.

    Returns:
      A float32 [18, 2] array of (x, y) pixels in the file's frame; missing = -1.

    Raises:
      KeypointFormatError: if the file cannot be read as keypoints (the message names it).
      FileNotFoundError: if the file does not exist.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"keypoint file not found: {path}")
    if path.lower().endswith(".csv"):
        keypoints, _ = read_annotation_csv(path, strict=True)
        if name is not None:
            if name not in keypoints:
                raise KeypointFormatError(f"{path}: no row for image {name!r}")
            return keypoints[name]
        if len(keypoints) != 1:
            raise KeypointFormatError(
                f"{path}: has {len(keypoints)} rows; pass the image name to choose one"
            )
        return next(iter(keypoints.values()))
    data = _load_json(path)
    if isinstance(data, dict) and "people" in data:
        return _openpose_from_data(data, path)
    if isinstance(data, dict) and ("keypoints" in data or "annotations" in data):
        return _coco_from_data(data, path)
    if isinstance(data, list):
        array = _as_points(data, path, "keypoint list")
        rows = array.shape[0] if array.ndim == 2 else None
        if rows == 17 or (array.ndim == 1 and array.size in (34, 51)):
            return _coco_from_data(data, path)
        if rows == 18 or (array.ndim == 1 and array.size in (36, 54)):
            points = _from_triples(array, 18, path, "keypoint list")
            if not np.any(np.all(points >= 0, axis=1)):
                raise KeypointFormatError(f"{path}: no person (every keypoint is missing)")
            return points.astype(np.float32)
        raise KeypointFormatError(
            f"{path}: a keypoint list must hold 18 [x, y] (or 17 COCO) points, got shape "
            f"{list(array.shape)}"
        )
    raise KeypointFormatError(
        f"{path}: unrecognised keypoint format (expected OpenPose, COCO, a list of 18 [x, y] "
        "or an annotation CSV)"
    )


def heatmaps_numpy(keypoints: ArrayLike, height: int, width: int, sigma: float = 6.0) -> np.ndarray:
    """The heatmap formula written directly in numpy (for tests and offline tools).

    Args:
      keypoints: [..., K, 2] (x, y); negative = missing.
      height: output height.
      width: output width.
      sigma: Gaussian standard deviation in pixels.

    Returns:
      A float32 array [..., height, width, K].
    """
    keypoints = np.asarray(keypoints, np.float64)
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    x = keypoints[..., 0][..., None, None, :]
    y = keypoints[..., 1][..., None, None, :]
    maps = np.exp(-((yy[..., None] - y) ** 2 + (xx[..., None] - x) ** 2) / (2 * sigma**2))
    present = np.all(keypoints >= 0, axis=-1)[..., None, None, :]
    return np.where(present, maps, 0.0).astype(np.float32)
