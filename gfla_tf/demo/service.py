"""The model behind ``gfla demo``: request validation, serialised inference, JSON results.

Everything a client sends is checked here before it is used, and refused with a
:class:`RequestError` that names the field and the problem (the app turns it into HTTP 400).
Sizes are checked before anything is decoded:

* a request body over ``MAX_BODY_BYTES`` (16 MiB) is refused from its ``Content-Length``
  header, or as soon as the stream passes the limit, before any JSON is parsed;
* an image whose base64 text would decode to more than ``MAX_IMAGE_BYTES`` (12 MiB) is
  refused before base64 decoding, and one whose header declares a side over
  ``MAX_IMAGE_SIDE`` (4096) or more than ``MAX_IMAGE_PIXELS`` (16 Mpx) before its pixels
  are decoded;
* a pose file over ``MAX_POSE_FILE_BYTES`` (16 MiB: a whole DeepFashion annotation CSV
  fits) is refused before it is read.

Nothing a client sends is used as a file path: an uploaded pose file is written to a
temporary file whose name the server chooses (the extension from the content: annotation
CSV or JSON), and gallery photos are addressed by index.

Photos go through ``gfla generate``'s own path (``gfla_tf.cli.generate.generate``):
resized to the model's size with the keypoints scaled with it, and the result resized
back to the photo's size; flows and masks are drawn with the same panel functions.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import os
import tempfile
import threading
import time

import numpy as np

_log = logging.getLogger(__name__)

QUICKSTART_DIR = os.path.join("runs", "quickstart")
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_IMAGE_BYTES = 12 * 1024 * 1024
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = 16 * 1024 * 1024
MAX_POSE_FILE_BYTES = 16 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
# Flow and mask panels are drawn at the photo's size, capped to this long side: they are
# for looking at (the page shows them 120 pixels wide). PNG encoding is most of the
# server's own time for large photos; this cap (was 512) and zlib level 3 (Pillow's
# default is 6; files about 10% larger, sent over loopback) took a 512x384 request to the
# quickstart model from 596 to 188 ms (benchmarks/RESULTS.md, Demo).
PANEL_MAX_SIDE = 256
PNG_COMPRESS_LEVEL = 3
# Row names listed back when a multi-row annotation CSV needs a choice.
MAX_LISTED_NAMES = 5000
GENERATE_FIELDS = ("image", "source_keypoints", "target_keypoints")
_FORMATS = {
    "KerasPredictor": "keras",
    "SavedModelPredictor": "saved_model",
    "TFLitePredictor": "tflite",
}


class RequestError(ValueError):
    """A client error: ``field`` names the part of the request, ``problem`` what is wrong.

    Attributes:
      field: the request field ("body", "image", "source_keypoints", ...).
      problem: what is wrong with it, one line.
      extra: more JSON-serialisable details for the response (e.g. ``names``).
    """

    def __init__(self, field: str, problem: str, **extra):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.extra = extra

    def to_json(self) -> dict:
        """The HTTP 400 body: ``{"error": "...", "field": ..., "problem": ...}``."""
        return {"error": str(self), "field": self.field, "problem": self.problem, **self.extra}


def default_model_path(workdir: str = QUICKSTART_DIR) -> str | None:
    """The newest model ``gfla quickstart`` left in ``workdir``, or None.

    That is the export folder (``workdir/export``, TF Serving layout: the predictor takes
    its highest version) when it holds a SavedModel version, else the stage-2 ``generator.keras``
    (a quickstart run with ``--no-export``).

    Args:
      workdir: the quickstart's ``--workdir``.

    Returns:
      A path for ``load_predictor``, or None when there is no quickstart model.
    """
    from gfla_tf.export import resolve_saved_model_dir

    export_dir = os.path.join(workdir, "export")
    if os.path.isdir(export_dir):
        try:
            resolve_saved_model_dir(export_dir)
            return export_dir
        except FileNotFoundError:
            pass
    keras_file = os.path.join(workdir, "stage2", "generator.keras")
    if os.path.isfile(keras_file):
        return keras_file
    return None


def _type_name(value):
    return "null" if value is None else type(value).__name__


def _encode_png(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(value: object, field: str = "image") -> np.ndarray:
    """Decodes a base64 PNG/JPEG/WebP (optionally a ``data:`` URL) to uint8 [H, W, 3].

    The size limits are checked before base64 decoding and before the pixels are
    decoded. EXIF orientation is applied, so the pixels are the ones a browser shows
    and the client's keypoints refer to.

    Args:
      value: the JSON value of the field.
      field: the field name for errors.

    Returns:
      A uint8 array [H, W, 3].

    Raises:
      RequestError: if it is not a string, too large, not base64 or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(value, str):
        raise RequestError(field, f"expected a base64 string, got {_type_name(value)}")
    if value.startswith("data:"):
        head, _, value = value.partition(",")
        if not head.endswith(";base64"):
            raise RequestError(field, "a data: URL must be base64-encoded")
    limit = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
    if len(value) > limit:
        raise RequestError(
            field,
            f"too large: {len(value)} base64 characters; the limit is "
            f"{MAX_IMAGE_BYTES} bytes ({limit} characters)",
        )
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, "not valid base64") from None
    if not data:
        raise RequestError(field, "empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise RequestError(field, f"too large (over {MAX_IMAGE_PIXELS} pixels declared)") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise RequestError(field, "not an image (expected PNG, JPEG or WebP)") from None
    width, height = image.size
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise RequestError(
            field,
            f"too large: {width}x{height} pixels; the limits are {MAX_IMAGE_SIDE} "
            f"pixels a side and {MAX_IMAGE_PIXELS} pixels",
        )
    try:
        image = ImageOps.exif_transpose(image)
        rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        raise RequestError(field, "image data is truncated or corrupt") from None
    return rgb


def parse_keypoints(value: object, field: str, count: int = 18) -> np.ndarray:
    """Checks one pose: ``count`` [x, y] pairs of finite numbers (negative = missing).

    Args:
      value: the JSON value of the field.
      field: the field name for errors.
      count: keypoints per pose.

    Returns:
      A float32 array [count, 2].

    Raises:
      RequestError: naming the field and the first problem.
    """
    if not isinstance(value, list):
        raise RequestError(
            field, f"expected a list of {count} [x, y] points, got {_type_name(value)}"
        )
    if len(value) != count:
        raise RequestError(field, f"expected {count} [x, y] points, got {len(value)}")
    for index, point in enumerate(value):
        if not isinstance(point, list) or len(point) != 2:
            raise RequestError(field, f"point {index} is not an [x, y] pair: {point!r:.40}")
        for number in point:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise RequestError(field, f"point {index} has a non-number ({_type_name(number)})")
            if not math.isfinite(number):
                raise RequestError(field, f"point {index} has a NaN or infinite coordinate")
    points = np.asarray(value, np.float64)
    # Negative = missing (the predictor's contract); keep the -1 of the file formats.
    points[np.any(points < 0, axis=-1)] = -1.0
    return points.astype(np.float32)


def parse_json_body(body: bytes) -> dict:
    """Parses a request body as a JSON object.

    Raises:
      RequestError: (field "body") if it is not JSON or not an object.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError("body", f"not valid JSON ({err})") from None
    if not isinstance(payload, dict):
        raise RequestError("body", f"expected a JSON object, got {_type_name(payload)}")
    return payload


def _panel_size(shape):
    """The photo's (height, width), scaled down to at most ``PANEL_MAX_SIDE``."""
    height, width = int(shape[0]), int(shape[1])
    scale = min(1.0, PANEL_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _pose_file_suffix(data):
    """``.csv`` for an annotation CSV (by its header), else ``.json``."""
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return ".csv" if head.startswith(b"name:") else ".json"


class DemoService:
    """One loaded predictor behind the demo's API.

    Inference is serialised with a lock: a TFLite interpreter is not thread-safe, and on
    a CPU one TensorFlow call already uses every core, so running requests one at a time
    costs no throughput. Decoding and encoding happen outside the lock.

    Args:
      predictor: from ``gfla_tf.export.load_predictor``.
      model_path: where it was loaded from (shown by ``/api/v1/info``).
      gallery: an optional ``gfla_tf.demo.Gallery``.
    """

    def __init__(self, predictor, model_path: str | None = None, gallery=None):
        self.predictor = predictor
        self.model_path = os.fspath(model_path) if model_path else predictor.path
        self.gallery = gallery
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: str, gallery=None) -> DemoService:
        """Loads the model at ``model_path`` (anything ``gfla generate --model`` takes)."""
        from gfla_tf.export import load_predictor

        return cls(load_predictor(model_path), model_path, gallery)

    @property
    def model_format(self) -> str:
        """ "keras", "saved_model" or "tflite"."""
        return _FORMATS.get(type(self.predictor).__name__, type(self.predictor).__name__)

    def info(self) -> dict:
        """The ``GET /api/v1/info`` document."""
        import gfla_tf
        from gfla_tf.data import keypoints as kp
        from gfla_tf.data.visualize import limb_colour

        names = list(kp.KEYPOINT_NAMES)
        edge_colours = [list(limb_colour(i)) for i in range(len(kp.LIMBS))]
        joint_colours = []
        for joint in range(kp.NUM_KEYPOINTS):
            # A joint takes the colour of the limb that leads to it (the neck, which only
            # starts limbs, that of the first one).
            ends = [i for i, limb in enumerate(kp.LIMBS) if limb[1] == joint]
            starts = [i for i, limb in enumerate(kp.LIMBS) if limb[0] == joint]
            joint_colours.append(edge_colours[(ends or starts)[0]])
        mirror = []
        for index, name in enumerate(names):
            if name.startswith("R") and "L" + name[1:] in names:
                mirror.append([index, names.index("L" + name[1:])])
        height, width = self.predictor.image_size
        return {
            "version": gfla_tf.__version__,
            "model": {"path": self.model_path, "format": self.model_format},
            "image_size": [height, width],
            "num_keypoints": self.predictor.num_keypoints,
            "keypoint_names": names,
            "edges": [list(limb) for limb in kp.LIMBS],
            "edge_colours": edge_colours,
            "joint_colours": joint_colours,
            "mirror_pairs": mirror,
            "limits": {
                "body_bytes": MAX_BODY_BYTES,
                "image_bytes": MAX_IMAGE_BYTES,
                "image_side": MAX_IMAGE_SIDE,
                "image_pixels": MAX_IMAGE_PIXELS,
                "pose_file_bytes": MAX_POSE_FILE_BYTES,
                "image_formats": [f.lower() for f in IMAGE_FORMATS],
            },
            "gallery": {
                "poses": len(self.gallery.poses) if self.gallery else 0,
                "samples": len(self.gallery.samples) if self.gallery else 0,
            },
        }

    def warm_up(self) -> None:
        """Runs one request so that tracing is not paid by the first user."""
        height, width = self.predictor.image_size
        keypoints = np.full((self.predictor.num_keypoints, 2), -1.0, np.float32)
        self.run(np.zeros((height, width, 3), np.uint8), keypoints, keypoints)

    def parse_generate(self, payload: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validates a ``/api/v1/generate`` payload.

        Args:
          payload: the parsed JSON object.

        Returns:
          (photo uint8 [H, W, 3], source keypoints [K, 2], target keypoints [K, 2]).

        Raises:
          RequestError: for a missing, unknown or malformed field.
        """
        for name in payload:
            if name not in GENERATE_FIELDS:
                raise RequestError(name, f"unknown field (expected {', '.join(GENERATE_FIELDS)})")
        for name in GENERATE_FIELDS:
            if name not in payload:
                raise RequestError(name, "missing")
        count = self.predictor.num_keypoints
        source = parse_keypoints(payload["source_keypoints"], "source_keypoints", count)
        target = parse_keypoints(payload["target_keypoints"], "target_keypoints", count)
        photo = decode_image(payload["image"], "image")
        return photo, source, target

    def run(self, photo, source_keypoints, target_keypoints) -> tuple[dict, float]:
        """Runs the model on one photo, serialised; ``gfla generate``'s resize path.

        Returns:
          (``gfla_tf.cli.generate.generate``'s result dict, milliseconds it took).
        """
        from gfla_tf.cli.generate import generate

        with self._lock:
            start = time.perf_counter()
            result = generate(self.predictor, photo, source_keypoints, target_keypoints)
            ms = 1000.0 * (time.perf_counter() - start)
        return result, ms

    def encode(self, result: dict, ms: float) -> dict:
        """The ``/api/v1/generate`` response for a ``run`` result."""
        from gfla_tf.cli.generate import flow_panels, mask_panels
        from gfla_tf.data.visualize import flow_legend

        photo_size = result["image"].shape[:2]
        size = _panel_size(photo_size)
        height = self.predictor.image_size[0]
        flows, masks = result["flows"], result["masks"]
        scales = [f"1/{height // max(1, f.shape[0])}" for f in flows]
        flow_strip = flow_panels(flows, size)
        mask_strip = mask_panels(masks, size)
        # Full colour in the panels = the largest flow, in pixels of the photo.
        max_flow = max(
            float(
                np.hypot(
                    f[..., 0] * photo_size[1] / f.shape[1], f[..., 1] * photo_size[0] / f.shape[0]
                ).max(initial=0.0)
            )
            for f in flows
        )
        return {
            "image": _encode_png(result["image"]),
            "size": [int(photo_size[0]), int(photo_size[1])],
            "flows": [
                {"scale": scale, "image": _encode_png(panel)}
                for scale, panel in zip(scales, np.split(flow_strip, len(flows), axis=1))
            ],
            "flow_max": max_flow,
            "flow_legend": _encode_png(flow_legend(64)),
            "masks": [
                {"scale": scale, "image": _encode_png(panel)}
                for scale, panel in zip(scales, np.split(mask_strip, len(masks), axis=1))
            ],
            "ms": ms,
        }

    def generate(self, payload: dict) -> dict:
        """Validates, runs and encodes one ``/api/v1/generate`` request (blocking)."""
        photo, source, target = self.parse_generate(payload)
        return self.encode(*self.run(photo, source, target))

    def read_pose_file(self, data: bytes, name: str | None = None) -> dict:
        """Reads the keypoints of an uploaded pose file (any ``read_keypoints`` format).

        Args:
          data: the file's bytes.
          name: the row of a multi-row annotation CSV (a dictionary key only).

        Returns:
          ``{"keypoints": [[x, y] x 18], "name": row name or None, "rows": row count,
          "names": the CSV's row names (sorted; empty for JSON)}``.

        Raises:
          RequestError: (field "file") if it cannot be read as keypoints, or (field
            "name", with ``names`` listed) if a CSV has several rows and none is ``name``.
        """
        from gfla_tf.data import keypoints as kp

        if len(data) > MAX_POSE_FILE_BYTES:
            raise RequestError(
                "file", f"pose file too large: {len(data)} bytes (limit {MAX_POSE_FILE_BYTES})"
            )
        if not data.strip():
            raise RequestError("file", "empty pose file")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("file", "not a UTF-8 text file (JSON or CSV expected)") from None
        suffix = _pose_file_suffix(data)
        with tempfile.TemporaryDirectory(prefix="gfla-demo-") as directory:
            path = os.path.join(directory, "pose" + suffix)
            with open(path, "wb") as f:
                f.write(data)
            try:
                if suffix == ".csv":
                    rows, _ = kp.read_annotation_csv(path, strict=True)
                    if not rows:
                        raise RequestError("file", "the annotation CSV has no rows")
                    if name in rows or len(rows) == 1:
                        name = name if name in rows else next(iter(rows))
                        points, names = rows[name], sorted(rows)[:MAX_LISTED_NAMES]
                    else:
                        problem = (
                            f"the annotation CSV has {len(rows)} rows and none is named {name!r}"
                            if name
                            else f"the annotation CSV has {len(rows)} rows"
                        )
                        raise RequestError(
                            "name",
                            problem + "; choose one",
                            names=sorted(rows)[:MAX_LISTED_NAMES],
                        )
                else:
                    points, name, names = kp.read_keypoints(path), None, []
            except kp.KeypointFormatError as err:
                # The temporary path means nothing to the user.
                message = str(err).replace(path, "pose file")
                raise RequestError("file", message) from None
        return {
            "keypoints": np.asarray(points, float).tolist(),
            "name": name,
            "rows": max(1, len(names)),
            "names": names,
        }
