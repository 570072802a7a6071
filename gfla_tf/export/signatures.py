"""Serving functions of an exported GFLA generator: validation, pre- and post-processing.

Two entry points are built around a generator (see ``gfla_tf.models.build_generator``):

* ``serving_default`` (:func:`keypoint_fn`): ``source_image`` uint8 [B, H, W, 3],
  ``source_keypoints`` / ``target_keypoints`` float32 [B, 18, 2] as (x, y) pixels of the
  image (negative = missing) -> ``image`` uint8 [B, H, W, 3], ``flow_<i>`` float32
  [B, h_i, w_i, 2] and ``mask_<i>`` float32 [B, h_i, w_i, 1], i = 0 coarsest. Heatmaps
  are rendered inside the graph.
* ``heatmaps`` (:func:`heatmap_fn`): ``source_image`` float32 in [-1, 1], ``source_pose``
  and ``target_pose`` float32 [B, H, W, 18] heatmaps -> ``image`` float32 in [-1, 1] plus
  the same flows and masks. The TFLite export keeps both signatures; its error against
  the Keras model is measured on this one's float image.

Bad requests (wrong rank, an image size the model does not take, batch mismatch, an
empty batch, a NaN or infinite value) fail inside the graph with ``InvalidArgumentError``
and a message that names the input and what was expected, which TF Serving returns as
INVALID_ARGUMENT. Wrong dtypes are rejected by TensorFlow itself before the graph runs
(also INVALID_ARGUMENT).

The checks are ``Assert`` ops, which the TFLite converter drops. So that no format can
emit NaN, the checked inputs are also sanitised after their check: a non-finite keypoint
becomes missing (-1) and a non-finite image or heatmap value 0. In TensorFlow the check
fires first and the sanitising never changes anything; a ``.tflite`` file's callers are
checked in Python by ``gfla_tf.export.Predictor``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

SERVING_DEFAULT = "serving_default"
HEATMAP_SIGNATURE = "heatmaps"
DEFAULT_SIGMA = 6.0

# Finite float32 values are exactly those with |x| <= this; NaN compares false. TFLite has
# no IsFinite builtin, but Abs and LessEqual are.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def keypoints_to_heatmaps(
    keypoints: tf.Tensor, height: int, width: int, sigma: float = DEFAULT_SIGMA
) -> tf.Tensor:
    """Renders keypoints as Gaussian heatmaps with stock TensorFlow ops.

    Delegates to ``gfla_tf.data.keypoints_to_heatmaps`` (the training pipeline's
    definition) so that serving and training see the same poses.

    Args:
      keypoints: [..., K, 2] float tensor of (x, y) pixels; negative = missing.
      height: heatmap height in pixels.
      width: heatmap width in pixels.
      sigma: Gaussian standard deviation in pixels.

    Returns:
      [..., height, width, K] float32 tensor.
    """
    from gfla_tf import data

    return tf.cast(data.keypoints_to_heatmaps(keypoints, height, width, sigma=sigma), tf.float32)


def _non_empty(ops):
    return [op for op in ops if op is not None]


def is_finite(tensor: tf.Tensor) -> tf.Tensor:
    """Elementwise "not NaN and not infinite", with ops that TFLite has as builtins."""
    return tf.abs(tensor) <= _FLOAT32_MAX


def check_finite(tensor: tf.Tensor, name: str) -> tf.Tensor:
    """Asserts that a float image or heatmap tensor holds no NaN or infinity.

    Returns:
      ``tensor`` after the check, with non-finite values replaced by 0 (a no-op where the
      check runs; it keeps a ``.tflite`` file, which drops the check, free of NaN).
    """
    finite = is_finite(tensor)
    check = tf.debugging.Assert(
        tf.reduce_all(finite),
        [
            f"{name} must hold finite values (no NaN or infinity); first non-finite at",
            tf.where(tf.logical_not(finite))[:1],
        ],
        summarize=8,
    )
    with tf.control_dependencies(_non_empty([check])):
        return tf.where(finite, tensor, tf.zeros_like(tensor))


def check_keypoints(keypoints: tf.Tensor, name: str) -> tf.Tensor:
    """Asserts that [B, K, 2] keypoints are finite; names the offending (batch, keypoint).

    Returns:
      ``keypoints`` after the check, with any non-finite keypoint set to missing (-1): a
      no-op where the check runs, and what a ``.tflite`` file (no checks) computes.
    """
    finite = tf.reduce_all(is_finite(keypoints), axis=-1)  # [B, K]
    check = tf.debugging.Assert(
        tf.reduce_all(finite),
        [
            f"{name} must be finite (x, y) pixels (negative = missing); NaN or infinite at "
            "[batch, keypoint]",
            tf.where(tf.logical_not(finite)),
        ],
        summarize=8,
    )
    with tf.control_dependencies(_non_empty([check])):
        return tf.where(finite[..., None], keypoints, -tf.ones_like(keypoints))


def check_shape(
    tensor: tf.Tensor, name: str, expected: Sequence[int | None], description: str
) -> tf.Tensor:
    """Asserts at run time that ``tensor`` has rank ``len(expected)`` and the given dims.

    One ``Assert`` per input evaluates the rank and every dimension together (on a shape
    padded to the expected rank), so a wrong rank can never index out of bounds first.

    Args:
      tensor: the input tensor (its static shape may be unknown).
      name: the input's name, used in the error message.
      expected: list of ints or None (any size) per axis.
      description: human-readable layout, e.g. "[batch, 256, 256, 3]".

    Returns:
      ``tensor`` with its static shape set to ``expected`` (at most one None), after the
      check ran.
    """
    rank = len(expected)
    shape = tf.shape(tensor, out_type=tf.int32)
    padded = tf.concat([shape, tf.fill([rank], -1)], axis=0)[:rank]
    ok = tf.equal(tf.size(shape), rank)
    for axis, size in enumerate(expected):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], size))
    check = tf.debugging.Assert(
        ok, [f"{name} must have shape {description}; got shape", shape], summarize=8
    )
    with tf.control_dependencies(_non_empty([check])):
        # A reshape (not EnsureShape, which TFLite lacks) gives the static shape; after
        # the check it never changes the data.
        return tf.reshape(tensor, [-1 if size is None else size for size in expected])


def check_same_batch(tensors: Sequence[tf.Tensor], names: Sequence[str]) -> list:
    """Asserts a non-empty batch, the same for every tensor; returns the control deps.

    An empty batch is rejected because the generator's instance normalisation cannot run
    on it (TensorFlow's own error is an internal "Incompatible shapes").
    """
    first = tf.shape(tensors[0])[0]
    checks = [
        tf.debugging.Assert(
            first > 0, [f"{names[0]} must hold at least one image; got batch size", first]
        )
    ]
    for tensor, name in zip(tensors[1:], names[1:]):
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(tensor)[0],
                first,
                message=f"{name} must have the same batch size as {names[0]}",
            )
        )
    return _non_empty(checks)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Maps a float image in [-1, 1] to uint8 [0, 255] with rounding and clipping."""
    scaled = tf.round((tf.cast(image, tf.float32) + 1.0) * 127.5)
    return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)


def from_uint8(image: tf.Tensor) -> tf.Tensor:
    """Maps a uint8 image to float32 in [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def _named_outputs(outputs: Mapping[str, Any], image: tf.Tensor) -> dict[str, tf.Tensor]:
    """The generator's {"image", "flows", "masks"} as flat signature outputs."""
    result = {"image": image}
    for i, flow in enumerate(outputs["flows"]):
        result[f"flow_{i}"] = tf.cast(flow, tf.float32)
    for i, mask in enumerate(outputs["masks"]):
        result[f"mask_{i}"] = tf.cast(mask, tf.float32)
    return result


def split_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Maps flat signature outputs (image, flow_<i>, mask_<i>) to the predictor's dict.

    The inverse of the signatures' output naming, shared by every predictor and the
    serving clients.

    Args:
      outputs: output name -> array-like (tensor, numpy array or nested list).

    Returns:
      {"image": array, "flows": [array, ...], "masks": [array, ...]} as numpy arrays,
      flows and masks ordered by their index (coarse to fine).
    """
    outputs = {name: np.asarray(value) for name, value in outputs.items()}

    def ordered(prefix: str) -> list[np.ndarray]:
        keys = [k for k in outputs if k.startswith(prefix) and k[len(prefix) :].isdigit()]
        return [outputs[k] for k in sorted(keys, key=lambda k: int(k[len(prefix) :]))]

    return {"image": outputs["image"], "flows": ordered("flow_"), "masks": ordered("mask_")}


def heatmap_fn(
    generator: Callable, image_size: Sequence[int], num_keypoints: int = 18
) -> tuple[Callable, list[tf.TensorSpec]]:
    """Returns ``(fn, input_signature)`` of the float ``heatmaps`` signature.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width) the generator takes.
      num_keypoints: number of pose channels.

    Returns:
      A function of (source_image, source_pose, target_pose) returning a dict of outputs,
      and the list of ``tf.TensorSpec`` it is traced with.
    """
    height, width = image_size
    k = num_keypoints
    spec = [
        tf.TensorSpec([None, height, width, 3], tf.float32, name="source_image"),
        tf.TensorSpec([None, height, width, k], tf.float32, name="source_pose"),
        tf.TensorSpec([None, height, width, k], tf.float32, name="target_pose"),
    ]

    def serve_heatmaps(source_image, source_pose, target_pose):
        names = ["source_image", "source_pose", "target_pose"]
        tensors = [source_image, source_pose, target_pose]
        checks = check_same_batch(tensors, names)
        with tf.control_dependencies(checks):
            source_image = check_finite(source_image, "source_image")
            source_pose = check_finite(source_pose, "source_pose")
            target_pose = check_finite(target_pose, "target_pose")
        outputs = generator(
            {"source_image": source_image, "source_pose": source_pose, "target_pose": target_pose},
            training=False,
        )
        return _named_outputs(outputs, tf.cast(outputs["image"], tf.float32))

    return serve_heatmaps, spec


def keypoint_fn(
    heatmaps: Callable,
    image_size: Sequence[int],
    sigma: float = DEFAULT_SIGMA,
    num_keypoints: int = 18,
) -> tuple[Callable, list[tf.TensorSpec]]:
    """Returns ``(fn, input_signature)`` of the uint8 keypoint ``serving_default`` signature.

    The input specs leave every dimension open so that a request of the wrong rank or
    size reaches the graph and is rejected there with a readable INVALID_ARGUMENT.

    Args:
      heatmaps: the (traced) ``heatmaps`` function of :func:`heatmap_fn`; calling it
        rather than the generator keeps one copy of the network in the SavedModel.
      image_size: (height, width) the generator takes.
      sigma: heatmap Gaussian standard deviation in pixels.
      num_keypoints: number of keypoints per pose.

    Returns:
      A function of (source_image, source_keypoints, target_keypoints) returning a dict of
      outputs, and the list of ``tf.TensorSpec`` it is traced with.
    """
    height, width = image_size
    k = num_keypoints
    spec = [
        tf.TensorSpec(None, tf.uint8, name="source_image"),
        tf.TensorSpec(None, tf.float32, name="source_keypoints"),
        tf.TensorSpec(None, tf.float32, name="target_keypoints"),
    ]
    image_desc = f"[batch, {height}, {width}, 3] (this model takes {height}x{width} images)"
    kp_desc = f"[batch, {k}, 2] as (x, y) pixels, negative = missing"

    def serve_keypoints(source_image, source_keypoints, target_keypoints):
        source_image = check_shape(
            source_image, "source_image", [None, height, width, 3], image_desc
        )
        source_keypoints = check_shape(source_keypoints, "source_keypoints", [None, k, 2], kp_desc)
        target_keypoints = check_shape(target_keypoints, "target_keypoints", [None, k, 2], kp_desc)
        checks = check_same_batch(
            [source_image, source_keypoints, target_keypoints],
            ["source_image", "source_keypoints", "target_keypoints"],
        )
        with tf.control_dependencies(checks):
            image = from_uint8(source_image)
            source_keypoints = check_keypoints(source_keypoints, "source_keypoints")
            target_keypoints = check_keypoints(target_keypoints, "target_keypoints")
        outputs = dict(
            heatmaps(
                image,
                keypoints_to_heatmaps(source_keypoints, height, width, sigma),
                keypoints_to_heatmaps(target_keypoints, height, width, sigma),
            )
        )
        outputs["image"] = to_uint8(outputs["image"])
        return outputs

    return serve_keypoints, spec


def build_functions(
    generator: Callable,
    image_size: Sequence[int],
    sigma: float = DEFAULT_SIGMA,
    num_keypoints: int = 18,
    traced: bool = True,
) -> dict[str, Callable]:
    """Returns {signature name: function} for both serving signatures.

    The generator is traced once, inside ``heatmaps``; ``serving_default`` calls it.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width) the generator takes.
      sigma: heatmap Gaussian standard deviation in pixels.
      num_keypoints: number of keypoints per pose.
      traced: wrap in ``tf.function`` with the input signatures fixed; False returns the
        plain functions, which run eagerly (no tracing cost, for one-off calls).

    Returns:
      {"serving_default": function, "heatmaps": function}.
    """

    def wrap(fn, spec):
        return tf.function(fn, input_signature=spec, autograph=False) if traced else fn

    heatmaps = wrap(*heatmap_fn(generator, image_size, num_keypoints))
    keypoints = wrap(*keypoint_fn(heatmaps, image_size, sigma, num_keypoints))
    return {SERVING_DEFAULT: keypoints, HEATMAP_SIGNATURE: heatmaps}
