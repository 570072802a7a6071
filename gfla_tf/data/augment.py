"""In-graph random affine augmentation that moves keypoints with the image.

The Market-1501 recipe of the GFLA reference: the source image gets a random rotation
(+-5 degrees), shift (+-5 pixels per axis) and scale (0.95-1.05) about the image centre;
the target gets a fifth of the rotation range and half the shift range (same scale range).
Images are warped with ``ImageProjectiveTransformV3`` (a TensorFlow builtin, so the
pipeline stays in-graph) and the keypoints are moved by the same transform.
"""

from __future__ import annotations

import math

import tensorflow as tf


def sample_affine(
    seed: tf.Tensor, max_angle: float, max_shift: float, scale_range: tuple[float, float]
) -> tf.Tensor:
    """Draws one random similarity transform, stateless.

    Args:
      seed: int32/int64 tensor of shape [2] for ``tf.random.stateless_uniform``.
      max_angle: maximum rotation in degrees (uniform in [-max_angle, max_angle]).
      max_shift: maximum translation in pixels per axis.
      scale_range: (low, high) of the uniform scale factor.

    Returns:
      A float32 tensor [4]: (angle in radians, shift x, shift y, scale).
    """
    u = tf.random.stateless_uniform([4], seed=seed, minval=-1.0, maxval=1.0)
    angle = u[0] * (max_angle * math.pi / 180.0)
    low, high = float(scale_range[0]), float(scale_range[1])
    scale = low + (u[3] + 1.0) * 0.5 * (high - low)
    return tf.stack([angle, u[1] * max_shift, u[2] * max_shift, scale])


def affine_matrix(params: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """The 3x3 forward matrix (input pixel -> output pixel) of ``sample_affine`` params.

    The rotation and scale are about the image centre ((width - 1) / 2, (height - 1) / 2),
    followed by the shift.
    """
    angle, tx, ty, scale = params[0], params[1], params[2], params[3]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    c, s = tf.cos(angle) * scale, tf.sin(angle) * scale
    zero, one = tf.zeros([]), tf.ones([])
    return tf.stack(
        [
            tf.stack([c, -s, cx + tx - c * cx + s * cy]),
            tf.stack([s, c, cy + ty - s * cx - c * cy]),
            tf.stack([zero, zero, one]),
        ]
    )


def transform_image(image: tf.Tensor, matrix: tf.Tensor, fill_mode: str = "NEAREST") -> tf.Tensor:
    """Warps ``image`` [H, W, C] by the forward 3x3 ``matrix``, keeping its size."""
    inverse = tf.linalg.inv(matrix)
    # ImageProjectiveTransformV3 maps each output pixel to the input point it reads.
    transform = tf.reshape(inverse, [9])[:8] / inverse[2, 2]
    shape = tf.shape(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=shape[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode,
    )
    return out[0]


def transform_keypoints(keypoints: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """Moves (x, y) keypoints [K, 2] by the forward ``matrix``; missing ones stay -1."""
    missing = tf.reduce_any(keypoints < 0, axis=-1, keepdims=True)
    moved = tf.linalg.matvec(matrix[:2, :2], keypoints) + matrix[:2, 2]
    return tf.where(missing, tf.constant(-1.0), moved)


def augment_pair(
    source_image: tf.Tensor,
    target_image: tf.Tensor,
    source_keypoints: tf.Tensor,
    target_keypoints: tf.Tensor,
    seed: tf.Tensor,
    max_angle: float = 5.0,
    max_shift: float = 5.0,
    scale_range: tuple[float, float] = (0.95, 1.05),
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Applies the Market-1501 augmentation to a source/target pair.

    Args:
      source_image: [H, W, C] float tensor.
      target_image: [H, W, C] float tensor.
      source_keypoints: [K, 2] (x, y) at the image size; negative = missing.
      target_keypoints: [K, 2].
      seed: int tensor [2] (stateless); the pair's two transforms derive from it.
      max_angle: source rotation range in degrees (the target gets a fifth).
      max_shift: source shift range in pixels (the target gets half).
      scale_range: scale range of both.

    Returns:
      ``(source_image, target_image, source_keypoints, target_keypoints)`` transformed.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    height = tf.cast(tf.shape(source_image)[0], tf.float32)
    width = tf.cast(tf.shape(source_image)[1], tf.float32)
    out = []
    for image, points, s, angle, shift in (
        (source_image, source_keypoints, seeds[0], max_angle, max_shift),
        (target_image, target_keypoints, seeds[1], max_angle / 5.0, max_shift / 2.0),
    ):
        matrix = affine_matrix(sample_affine(s, angle, shift, scale_range), height, width)
        out.append((transform_image(image, matrix), transform_keypoints(points, matrix)))
    return out[0][0], out[1][0], out[0][1], out[1][1]
