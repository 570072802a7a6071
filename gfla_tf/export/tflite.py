"""TFLite conversion of an exported GFLA SavedModel (builtin ops only).

``tf.lite.TFLiteConverter.from_saved_model`` converts the SavedModel's signatures;
``from_keras_model`` is not used because it does not handle the generator's dict of
inputs. The ``.tflite`` file holds two signatures, as the SavedModel does:

* ``heatmaps``: float image in [-1, 1] and heatmaps in, float image out. Its error against
  the Keras model is what the export tests bound (float32 <= 1e-4, float16 <= 1e-2).
* ``serving_default``: uint8 image and keypoints in, uint8 image out (heatmaps rendered
  in the graph), which is what ``load_predictor`` runs.

The run-time checks of the SavedModel (``Assert``) are not builtin ops; the converter
drops them, so a ``.tflite`` file trusts its caller (``gfla_tf.export.TFLitePredictor``
checks every request in Python); the graph still sanitises non-finite inputs, so it never
emits NaN.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import tensorflow as tf

from gfla_tf import io
from gfla_tf.export import signatures

_log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "float16", "dynamic")
DEFAULT_SIGNATURES = (signatures.SERVING_DEFAULT, signatures.HEATMAP_SIGNATURE)


def convert_saved_model(
    saved_model_dir: str | os.PathLike,
    quantize: str = "none",
    signature_keys: Sequence[str] = DEFAULT_SIGNATURES,
) -> bytes:
    """Converts a SavedModel to a TFLite flatbuffer with builtin ops only.

    Args:
      saved_model_dir: a SavedModel directory (or a TF Serving base directory, whose
        highest version is used).
      quantize: "none" (float32), "float16" (float16 weights) or "dynamic" (int8 weights,
        dynamic-range quantisation of activations in supported kernels).
      signature_keys: the signatures to convert.

    Returns:
      The flatbuffer as bytes.

    Raises:
      ValueError: if ``quantize`` is not one of QUANTIZE_MODES.
    """
    from gfla_tf.export.saved_model import resolve_saved_model_dir

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    saved_model_dir = resolve_saved_model_dir(os.fspath(saved_model_dir))
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(signature_keys)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def export_tflite(
    saved_model_dir: str | os.PathLike, output_path: str | os.PathLike, quantize: str = "none"
) -> str:
    """Converts ``saved_model_dir`` to ``output_path`` (written atomically).

    Args:
      saved_model_dir: a SavedModel directory or a TF Serving base directory.
      output_path: the ``.tflite`` file to write; an existing file is replaced only once
        the new one is complete.
      quantize: "none", "float16" or "dynamic".

    Returns:
      ``output_path``.

    Raises:
      ValueError: if ``quantize`` is not one of QUANTIZE_MODES.
      OSError: if ``output_path`` cannot be written.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    output_path = os.fspath(output_path)
    directory = os.path.dirname(os.path.abspath(output_path))
    try:
        # The temporary is created first, so an unwritable destination fails before the
        # (slow) conversion runs.
        with io.atomic_path(output_path) as tmp:
            flatbuffer = convert_saved_model(saved_model_dir, quantize=quantize)
            with open(tmp, "wb") as f:
                f.write(flatbuffer)
    except PermissionError as err:
        where = os.path.dirname(os.path.abspath(err.filename)) if err.filename else None
        if where != directory:
            raise
        raise PermissionError(err.errno, f"cannot write {output_path} ({err.strerror})") from None
    _log.info("wrote %s (%s, %d bytes)", output_path, quantize, len(flatbuffer))
    return output_path
