"""One inference interface over the three model formats: ``.keras``, SavedModel, ``.tflite``.

``load_predictor(path)`` returns a predictor whose ``predict(source_image, source_keypoints,
target_keypoints)`` takes a uint8 image batch and (x, y) keypoints at the model's image
size and returns numpy ``{"image": uint8, "flows": [...], "masks": [...]}``. All three
run the same serving computation (``gfla_tf.export.signatures``), so their outputs agree
to float rounding.
"""

import logging
import os

import numpy as np

from gfla_tf.export import signatures

_log = logging.getLogger(__name__)


def _split_outputs(outputs):
    """Maps named signature outputs (image, flow_i, mask_i) to the predictor's dict."""
    outputs = {name: np.asarray(value) for name, value in outputs.items()}

    def ordered(prefix):
        keys = [k for k in outputs if k.startswith(prefix) and k[len(prefix) :].isdigit()]
        return [outputs[k] for k in sorted(keys, key=lambda k: int(k[len(prefix) :]))]

    return {"image": outputs["image"], "flows": ordered("flow_"), "masks": ordered("mask_")}


class Predictor:
    """Base class: input validation shared by the formats.

    Attributes:
      image_size: (height, width) of the images the model takes.
      num_keypoints: keypoints per pose (18).
      path: the file or directory the model was loaded from.
    """

    def __init__(self, image_size, num_keypoints=18, path=None):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_keypoints = int(num_keypoints)
        self.path = path

    def _validate(self, source_image, source_keypoints, target_keypoints):
        image = np.asarray(source_image)
        if image.dtype != np.uint8:
            raise TypeError(f"source_image must be uint8 [B, H, W, 3], got dtype {image.dtype}")
        height, width = self.image_size
        if image.ndim != 4 or image.shape[1:] != (height, width, 3):
            raise ValueError(
                f"source_image must have shape [batch, {height}, {width}, 3] (this model takes "
                f"{height}x{width} images), got {list(image.shape)}"
            )
        result = [image]
        for name, value in (
            ("source_keypoints", source_keypoints),
            ("target_keypoints", target_keypoints),
        ):
            array = np.asarray(value, dtype=np.float32)
            if array.shape != (image.shape[0], self.num_keypoints, 2):
                raise ValueError(
                    f"{name} must have shape [batch={image.shape[0]}, {self.num_keypoints}, 2] "
                    f"as (x, y) pixels, got {list(array.shape)}"
                )
            result.append(array)
        return result

    def predict(self, source_image, source_keypoints, target_keypoints):
        """Renders the source person in the target pose.

        Args:
          source_image: uint8 [B, H, W, 3] at ``image_size``.
          source_keypoints: [B, 18, 2] (x, y) pixels of ``source_image``; negative = missing.
          target_keypoints: [B, 18, 2] (x, y) pixels of the output frame.

        Returns:
          {"image": uint8 [B, H, W, 3], "flows": [float32 [B, h, w, 2], ...] coarse to fine,
          "masks": [float32 [B, h, w, 1], ...]}.

        Raises:
          TypeError: if ``source_image`` is not uint8.
          ValueError: if a shape does not match the model.
        """
        inputs = self._validate(source_image, source_keypoints, target_keypoints)
        return _split_outputs(self._run(*inputs))

    def _run(self, source_image, source_keypoints, target_keypoints):
        raise NotImplementedError


class KerasPredictor(Predictor):
    """Runs a generator (``keras.Model``) through the serving functions.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width); inferred from the generator when None.
      sigma: heatmap sigma in pixels.
      path: where the model came from (informational).
      traced: run as a ``tf.function`` (fast for repeated calls) or eagerly (no tracing
        cost, for a single call).
    """

    def __init__(
        self, generator, image_size=None, sigma=signatures.DEFAULT_SIGMA, path=None, traced=True
    ):
        from gfla_tf.export.saved_model import _num_keypoints, generator_image_size

        size = image_size or generator_image_size(generator)
        super().__init__(size, _num_keypoints(generator), path)
        self.generator = generator
        functions = signatures.build_functions(
            generator, self.image_size, sigma=sigma, num_keypoints=self.num_keypoints, traced=traced
        )
        self._fn = functions[signatures.SERVING_DEFAULT]

    def _run(self, source_image, source_keypoints, target_keypoints):
        return self._fn(source_image, source_keypoints, target_keypoints)


class SavedModelPredictor(Predictor):
    """Runs the ``serving_default`` signature of an exported SavedModel."""

    def __init__(self, path):
        import tensorflow as tf

        from gfla_tf.export.saved_model import read_metadata, resolve_saved_model_dir

        directory = resolve_saved_model_dir(path)
        self._loaded = tf.saved_model.load(directory)
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
        super().__init__(size, num_keypoints, directory)

    def _run(self, source_image, source_keypoints, target_keypoints):
        return self._fn(
            source_image=source_image,
            source_keypoints=source_keypoints,
            target_keypoints=target_keypoints,
        )


class TFLitePredictor(Predictor):
    """Runs the ``serving_default`` signature of a ``.tflite`` file with LiteRT.

    The interpreter is not thread-safe: use one predictor per thread.
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
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
        super().__init__((shape[1], shape[2]), int(details["source_pose"]["shape"][-1]), path)

    def _run(self, source_image, source_keypoints, target_keypoints):
        return self._runner(
            source_image=source_image,
            source_keypoints=source_keypoints,
            target_keypoints=target_keypoints,
        )


def load_predictor(path, **kwargs):
    """Loads a model for inference from a ``.keras`` file, a SavedModel or a ``.tflite`` file.

    Args:
      path: a ``.keras`` file (or a work directory holding one), a SavedModel directory
        (or a TF Serving base directory: its highest version), or a ``.tflite`` file.
      **kwargs: passed to the predictor (``sigma`` for Keras, ``num_threads`` for TFLite).

    Returns:
      A ``Predictor`` with ``.image_size`` and ``.predict(...)``.

    Raises:
      FileNotFoundError: if ``path`` does not exist or holds no model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    if path.endswith(".tflite"):
        return TFLitePredictor(path, **kwargs)
    if os.path.isdir(path):
        from gfla_tf.export.saved_model import resolve_saved_model_dir

        try:
            resolve_saved_model_dir(path)
        except FileNotFoundError:
            pass
        else:
            return SavedModelPredictor(path)
    from gfla_tf.export.loading import load_generator

    return KerasPredictor(load_generator(path), path=path, **kwargs)
