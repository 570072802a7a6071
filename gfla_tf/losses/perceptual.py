"""Image reconstruction losses of GFLA: L1, VGG content (perceptual) and style losses.

All return per-example losses ([B]) so that the trainer can scale them by the global
batch under ``tf.distribute``.

Reference: Ren et al., "Deep Image Spatial Transformation for Person Image Generation",
CVPR 2020, section 3.2; Johnson et al., "Perceptual Losses for Real-Time Style Transfer
and Super-Resolution", ECCV 2016.
"""

import tensorflow as tf

CONTENT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")


def _per_example_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=-1)


def l1_loss(prediction, target):
    """Per-example mean absolute error.

    Args:
      prediction: [B, ...] tensor.
      target: tensor of the same shape.

    Returns:
      [B] float32 tensor.
    """
    prediction = tf.cast(prediction, tf.float32)
    target = tf.cast(target, tf.float32)
    return _per_example_mean(tf.abs(prediction - target))


def gram_matrix(features):
    """Gram matrix ``f^T f / (C H W)`` of a feature map.

    Args:
      features: [B, H, W, C] tensor.

    Returns:
      [B, C, C] float32 tensor.
    """
    features = tf.cast(features, tf.float32)
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], -1, shape[3]])
    size = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.matmul(flat, flat, transpose_a=True) / size


def content_loss(features, target_features, layers=CONTENT_LAYERS, weights=None):
    """Per-example perceptual loss: weighted L1 between VGG features.

    Args:
      features: dict layer name -> [B, H, W, C] features of the generated image.
      target_features: dict with the same keys for the real image.
      layers: layer names to compare (GFLA: relu1_1 .. relu5_1).
      weights: one weight per layer (default 1 each).

    Returns:
      [B] float32 tensor.

    Raises:
      KeyError: if a layer is missing from the feature dicts.
    """
    weights = [1.0] * len(layers) if weights is None else list(weights)
    total = 0.0
    for layer, weight in zip(layers, weights):
        total += weight * l1_loss(features[layer], tf.stop_gradient(target_features[layer]))
    return total


def style_loss(features, target_features, layers=STYLE_LAYERS):
    """Per-example style loss: L1 between Gram matrices of VGG features, summed over layers.

    Args:
      features: dict layer name -> [B, H, W, C] features of the generated image.
      target_features: dict with the same keys for the real image.
      layers: layer names (GFLA: relu2_2, relu3_4, relu4_4, relu5_2).

    Returns:
      [B] float32 tensor.

    Raises:
      KeyError: if a layer is missing from the feature dicts.
    """
    total = 0.0
    for layer in layers:
        gram = gram_matrix(features[layer])
        target_gram = tf.stop_gradient(gram_matrix(target_features[layer]))
        total += _per_example_mean(tf.abs(gram - target_gram))
    return total
