"""Deployment: SavedModel for TF Serving, TFLite, and one predictor over every format.

* ``export_saved_model(generator, output_dir, version=None)``: ``output_dir/<version>/``
  with the ``serving_default`` (uint8 image + keypoints) and ``heatmaps`` (float image +
  heatmaps) signatures; stock TensorFlow ops only.
* ``export_tflite(saved_model_dir, output_path, quantize="none"|"float16"|"dynamic")``.
* ``load_predictor(path)``: ``.keras``, SavedModel or ``.tflite`` ->
  ``predictor.predict(source_image_uint8, source_keypoints, target_keypoints)``; every
  request is checked by ``validate_request`` (shapes, non-empty batch, finite keypoints).
* Image size and heatmap sigma come from the training run's ``config.json`` beside the
  model (``serving_settings``).

See docs/serving.md for serving the export with the TensorFlow Serving container.
"""

from gfla_tf.export.loading import ModelSettings, load_generator, model_settings
from gfla_tf.export.predictor import (
    KerasPredictor,
    Predictor,
    SavedModelPredictor,
    TFLitePredictor,
    load_predictor,
    validate_request,
)
from gfla_tf.export.saved_model import (
    export_saved_model,
    is_saved_model,
    list_versions,
    read_metadata,
    resolve_saved_model_dir,
    serving_settings,
)
from gfla_tf.export.signatures import HEATMAP_SIGNATURE, SERVING_DEFAULT, split_outputs
from gfla_tf.export.tflite import QUANTIZE_MODES, export_tflite

__all__ = [
    "HEATMAP_SIGNATURE",
    "QUANTIZE_MODES",
    "SERVING_DEFAULT",
    "KerasPredictor",
    "ModelSettings",
    "Predictor",
    "SavedModelPredictor",
    "TFLitePredictor",
    "export_saved_model",
    "export_tflite",
    "is_saved_model",
    "list_versions",
    "load_generator",
    "load_predictor",
    "model_settings",
    "read_metadata",
    "resolve_saved_model_dir",
    "serving_settings",
    "split_outputs",
    "validate_request",
]
