"""One inference interface over the three model formats: ``.keras``, SavedModel, ``.tflite``.

``load_predictor(path)`` returns a predictor whose ``predict(source_image, source_keypoints,
target_keypoints)`` takes a uint8 image batch and (x, y) keypoints at the model's image
size and returns numpy ``{"image": uint8, "flows": [...], "masks": [...]}``. All three
run the same serving computation (``gfla_tf.export.signatures``), so their outputs agree
to float rounding.

Every request is checked here, in Python, before any format runs: a ``.tflite`` file has
no run-time checks, and a clear ``ValueError`` beats an error from inside a graph.
:func:`validate_request` is that check; the serving clients use it too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gfla_tf.export import signatures

_log = logging.getLogger(__name__)

# A keypoint this many sigmas outside the image adds at most exp(-4.5) ~ 1% of a peak to
# its heatmap: the model effectively sees it as missing.
FAR_OUTSIDE_SIGMAS = 3.0


def _keypoint_label(index: int) -> str:
    from gfla_tf.data import KEYPOINT_NAMES

    name = KEYPOINT_NAMES[index] if index < len(KEYPOINT_NAMES) else None
    return f"keypoint {index} ({name})" if name else f"keypoint {index}"


def validate_request(
    source_image: Any,
    source_keypoints: Any,
    target_keypoints: Any,
    image_size: Sequence[int] | None = None,
    num_keypoints: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checks and converts the three inputs of ``serving_default``.

    Args:
      source_image: uint8 [B, H, W, 3], B >= 1.
      source_keypoints: [B, K, 2] (x, y) pixels; negative = missing; finite.
      target_keypoints: [B, K, 2] likewise.
      image_size: (H, W) the model takes; None accepts any size.
      num_keypoints: K; None accepts any count (the same for both poses).

    Returns:
      (uint8 image, float32 source keypoints, float32 target keypoints).

    Raises:
      TypeError: if ``source_image`` is not uint8.
      ValueError: on a wrong shape, an empty batch or a NaN/infinite keypoint (the
        message names the input, the batch item and the keypoint).
    """
    image = np.asarray(source_image)
    if image.dtype != np.uint8:
        raise TypeError(f"source_image must be uint8 [B, H, W, 3], got dtype {image.dtype}")
    if image_size is not None:
        height, width = image_size
        if image.ndim != 4 or image.shape[1:] != (height, width, 3):
            raise ValueError(
                f"source_image must have shape [batch, {height}, {width}, 3] (this model takes "
                f"{height}x{width} images), got {list(image.shape)}"
            )
    elif image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"source_image must have shape [B, H, W, 3], got {list(image.shape)}")
    if image.shape[0] == 0:
        raise ValueError("source_image must hold at least one image (batch size 0)")
    result = [image]
    for name, value in (
        ("source_keypoints", source_keypoints),
        ("target_keypoints", target_keypoints),
    ):
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numbers, [B, K, 2] (x, y) pixels ({err})") from None
        k = num_keypoints if num_keypoints is not None else "K"
        if (
            array.ndim != 3
            or array.shape[0] != image.shape[0]
            or array.shape[-1] != 2
            or (num_keypoints is not None and array.shape[1] != num_keypoints)
        ):
            raise ValueError(
                f"{name} must have shape [batch={image.shape[0]}, {k}, 2] as (x, y) pixels, "
                f"got {list(array.shape)}"
            )
        bad = np.argwhere(~np.all(np.isfinite(array), axis=-1))
        if bad.size:
            b, kp = (int(v) for v in bad[0])
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ValueError(
                f"{name}[{b}, {kp}] ({_keypoint_label(kp)}) is {array[b, kp].tolist()}: "
                f"keypoints must be finite (x, y) pixels, negative = missing{more}"
            )
        result.append(array)
    return result[0], result[1], result[2]


def warn_far_keypoints(
    keypoints: np.ndarray, name: str, image_size: Sequence[int], sigma: float
) -> None:
    """Logs a warning for each present keypoint so far outside the image it counts as missing.

    Args:
      keypoints: [B, K, 2] (x, y) pixels of an image of ``image_size``.
      name: the input's name for the message.
      image_size: (height, width).
      sigma: heatmap sigma in pixels.
    """
    height, width = image_size
    margin = FAR_OUTSIDE_SIGMAS * float(sigma)
    present = np.all(keypoints >= 0, axis=-1)
    far = present & (
        (keypoints[..., 0] > width - 1 + margin) | (keypoints[..., 1] > height - 1 + margin)
    )
    for b, k in np.argwhere(far):
        _log.warning(
            "%s[%d, %d] (%s) = %s lies more than %.3g px (%g sigma) outside the %dx%d image: "
            "the model treats it as missing",
            name,
            b,
            k,
            _keypoint_label(int(k)),
            keypoints[b, k].tolist(),
            margin,
            FAR_OUTSIDE_SIGMAS,
            height,
            width,
        )


class Predictor:
    """Base class: input validation shared by the formats.

    Attributes:
      image_size: (height, width) of the images the model takes.
      num_keypoints: keypoints per pose (18).
      sigma: heatmap sigma in pixels the model renders poses with.
      path: the file or directory the model was loaded from.
      format: "keras", "saved_model" or "tflite" (the subclass's).
    """

    format = "keras"

    def __init__(
        self,
        image_size: Sequence[int],
        num_keypoints: int = 18,
        path: str | None = None,
        sigma: float = signatures.DEFAULT_SIGMA,
    ) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_keypoints = int(num_keypoints)
        self.path = path
        self.sigma = float(sigma)

    def _validate(
        self, source_image: Any, source_keypoints: Any, target_keypoints: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        inputs = validate_request(
            source_image,
            source_keypoints,
            target_keypoints,
            image_size=self.image_size,
            num_keypoints=self.num_keypoints,
        )
        warn_far_keypoints(inputs[1], "source_keypoints", self.image_size, self.sigma)
        warn_far_keypoints(inputs[2], "target_keypoints", self.image_size, self.sigma)
        return inputs

    def predict(
        self, source_image: Any, source_keypoints: Any, target_keypoints: Any
    ) -> dict[str, Any]:
        """Renders the source person in the target pose.

        Args:
          source_image: uint8 [B, H, W, 3] at ``image_size``, B >= 1.
          source_keypoints: [B, 18, 2] (x, y) pixels of ``source_image``; negative = missing.
            A keypoint far outside the image is treated as missing (a warning is logged).
          target_keypoints: [B, 18, 2] (x, y) pixels of the output frame.

        Returns:
          {"image": uint8 [B, H, W, 3], "flows": [float32 [B, h, w, 2], ...] coarse to fine,
          "masks": [float32 [B, h, w, 1], ...]}.

        Raises:
          TypeError: if ``source_image`` is not uint8.
          ValueError: if a shape does not match the model, the batch is empty or a
            keypoint is NaN or infinite.
        """
        inputs = self._validate(source_image, source_keypoints, target_keypoints)
        return signatures.split_outputs(self._run(*inputs))

    def _run(
        self, source_image: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray
    ) -> Mapping[str, Any]:
        raise NotImplementedError


class KerasPredictor(Predictor):
    """Runs a generator (``keras.Model``) through the serving functions.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width); inferred from the generator when None.
      sigma: heatmap sigma in pixels; None: ``path``'s training config, else 6.
      path: where the model came from; its training ``config.json`` supplies the sigma.
      traced: run as a ``tf.function`` (fast for repeated calls) or eagerly (no tracing
        cost, for a single call).
    """

    def __init__(
        self,
        generator: Any,
        image_size: Sequence[int] | None = None,
        sigma: float | None = None,
        path: str | None = None,
        traced: bool = True,
    ) -> None:
        from gfla_tf.export.saved_model import serving_settings

        settings = serving_settings(generator, path, image_size=image_size, sigma=sigma)
        super().__init__(settings.image_size, settings.num_keypoints, path, settings.sigma)
        self.generator = generator
        functions = signatures.build_functions(
            generator,
            self.image_size,
            sigma=self.sigma,
            num_keypoints=self.num_keypoints,
            traced=traced,
        )
        self._fn = functions[signatures.SERVING_DEFAULT]

    def _run(
        self, source_image: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray
    ) -> Mapping[str, Any]:
        return self._fn(source_image, source_keypoints, target_keypoints)


class SavedModelPredictor(Predictor):
    """Runs the ``serving_default`` signature of an exported SavedModel.

    Raises:
      FileNotFoundError: if ``path`` holds no SavedModel.
      ValueError: if the SavedModel is corrupt or lacks the GFLA signatures.
    """

    format = "saved_model"

    def __init__(self, path: str | os.PathLike) -> None:
        import tensorflow as tf

        from gfla_tf.export.saved_model import read_metadata, resolve_saved_model_dir

        directory = resolve_saved_model_dir(os.fspath(path))
        try:
            self._loaded = tf.saved_model.load(directory)
        except (OSError, ValueError, tf.errors.OpError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"cannot load the SavedModel in {directory}: {reason}") from None
        available = set(self._loaded.signatures)
        for needed in (signatures.SERVING_DEFAULT, signatures.HEATMAP_SIGNATURE):
            if needed not in available:
                raise ValueError(
                    f"{directory} has no {needed!r} signature (found {sorted(available)}); "
                    "export it with 'gfla export'"
                )
        self._fn = self._loaded.signatures[signatures.SERVING_DEFAULT]
        metadata = read_metadata(directory)
        if "image_height" in metadata:
            size = (metadata["image_height"], metadata["image_width"])
            num_keypoints = metadata.get("num_keypoints", 18)
        else:
            heatmaps = self._loaded.signatures[signatures.HEATMAP_SIGNATURE]
            spec = heatmaps.structured_input_signature[1]
            size = tuple(spec["source_image"].shape[1:3])
            num_keypoints = int(spec["source_pose"].shape[-1])
        sigma = metadata.get("sigma", signatures.DEFAULT_SIGMA)
        super().__init__(size, num_keypoints, directory, sigma)

    def _run(
        self, source_image: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray
    ) -> Mapping[str, Any]:
        return self._fn(
            source_image=source_image,
            source_keypoints=source_keypoints,
            target_keypoints=target_keypoints,
        )


class TFLitePredictor(Predictor):
    """Runs the ``serving_default`` signature of a ``.tflite`` file with LiteRT.

    The interpreter is not thread-safe: use one predictor per thread. A ``.tflite`` file
    has no run-time checks; ``predict`` checks every request in Python first.

    Args:
      path: the ``.tflite`` file.
      num_threads: interpreter threads (None: LiteRT's default).
      sigma: the heatmap sigma the file was exported with (a ``.tflite`` file does not
        record it); used only to warn about keypoints far outside the image.

    Raises:
      ValueError: if the file is not a TFLite model with the GFLA signatures.
    """

    format = "tflite"

    def __init__(
        self,
        path: str | os.PathLike,
        num_threads: int | None = None,
        sigma: float = signatures.DEFAULT_SIGMA,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = os.fspath(path)
        try:
            self._interpreter = Interpreter(model_path=path, num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"cannot load {path} as a TFLite model: {reason}") from None
        available = self._interpreter.get_signature_list()
        for needed in (signatures.SERVING_DEFAULT, signatures.HEATMAP_SIGNATURE):
            if needed not in available:
                raise ValueError(
                    f"{path} has no {needed!r} signature (found {sorted(available)}); export it "
                    "with 'gfla export --format tflite'"
                )
        self._runner = self._interpreter.get_signature_runner(signatures.SERVING_DEFAULT)
        details = self._interpreter.get_signature_runner(
            signatures.HEATMAP_SIGNATURE
        ).get_input_details()
        shape = details["source_image"]["shape_signature"]
        super().__init__(
            (shape[1], shape[2]), int(details["source_pose"]["shape"][-1]), path, sigma
        )

    def _run(
        self, source_image: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray
    ) -> Mapping[str, Any]:
        return self._runner(
            source_image=source_image,
            source_keypoints=source_keypoints,
            target_keypoints=target_keypoints,
        )


def load_predictor(path: str | os.PathLike, **kwargs: Any) -> Predictor:
    """Loads a model for inference from a ``.keras`` file, a SavedModel or a ``.tflite`` file.

    Args:
      path: a ``.keras`` file (or a work directory holding one), a SavedModel directory
        (or a TF Serving base directory: its highest version), or a ``.tflite`` file.
      **kwargs: passed to the predictor (``sigma`` and ``traced`` for Keras, ``num_threads``
        and ``sigma`` for TFLite).

    Returns:
      A ``Predictor`` with ``.image_size`` and ``.predict(...)``.

    Raises:
      FileNotFoundError: if ``path`` does not exist or holds no model.
      ValueError: if the model file is corrupt, truncated or not a GFLA model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    if path.endswith(".tflite"):
        return TFLitePredictor(path, **kwargs)
    if os.path.isdir(path):
        from gfla_tf.export.saved_model import is_saved_model

        if is_saved_model(path):
            return SavedModelPredictor(path)
    from gfla_tf.export.loading import load_generator

    return KerasPredictor(load_generator(path), path=path, **kwargs)
