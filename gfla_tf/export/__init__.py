"""Deployment: SavedModel for TF Serving, TFLite, and one predictor over every format.

* ``export_saved_model(generator, output_dir, version=None)``: ``output_dir/<version>/``
  with the ``serving_default`` (uint8 image + keypoints) and ``heatmaps`` (float image +
  heatmaps) signatures; stock TensorFlow ops only.
* ``export_tflite(saved_model_dir, output_path, quantize="none"|"float16"|"dynamic")``.
* ``load_predictor(path)``: ``.keras``, SavedModel or ``.tflite`` ->
  ``predictor.predict(source_image_uint8, source_keypoints, target_keypoints)``.

See docs/serving.md for serving the export with the TensorFlow Serving container.
"""

from gfla_tf.export.loading import load_generator
from gfla_tf.export.predictor import (
    KerasPredictor,
    Predictor,
    SavedModelPredictor,
    TFLitePredictor,
    load_predictor,
)
from gfla_tf.export.saved_model import (
    export_saved_model,
    list_versions,
    read_metadata,
    resolve_saved_model_dir,
)
from gfla_tf.export.signatures import HEATMAP_SIGNATURE, SERVING_DEFAULT
from gfla_tf.export.tflite import QUANTIZE_MODES, export_tflite

__all__ = [
    "HEATMAP_SIGNATURE",
    "QUANTIZE_MODES",
    "SERVING_DEFAULT",
    "KerasPredictor",
    "Predictor",
    "SavedModelPredictor",
    "TFLitePredictor",
    "export_saved_model",
    "export_tflite",
    "list_versions",
    "load_generator",
    "load_predictor",
    "read_metadata",
    "resolve_saved_model_dir",
]
