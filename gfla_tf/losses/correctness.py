"""Sampling correctness loss of GFLA and the Gaussian-window resampler it warps with.

The loss asks the flow to move every target position onto the source position whose VGG
feature is most similar to the target's. It is computed per flow scale on the VGG layer
whose resolution equals the flow's, and it is normalised by ``mu_max``, the best cosine
similarity any source position reaches for that target position.

Reference: Ren et al., "Deep Image Spatial Transformation for Person Image Generation",
CVPR 2020, section 3.1 ("sampling correctness loss").
"""

import math

import tensorflow as tf

_EPS = 1e-8
# Beyond these bounds every tap of the 4x4 window is clamped onto the same border pixel,
# so clipping changes neither the value nor the gradient, and it keeps huge or infinite
# flows from overflowing the integer tap indices.
_WINDOW_MARGIN = 3.0


def _tap_weights(frac, sigma):
    """Gaussian weights of the 4 taps floor-1 .. floor+2 for fractional offsets ``frac``."""
    offsets = tf.constant([-1.0, 0.0, 1.0, 2.0], dtype=frac.dtype)
    distance = frac[..., None] - offsets
    return tf.exp(-tf.square(distance) / (2.0 * sigma * sigma))


def gaussian_resample(source, flow, sigma=2.0):
    """Warps ``source`` with ``flow`` using a normalised 4x4 Gaussian window.

    Each target position ``(x, y)`` reads the source around ``(x + flow_x, y + flow_y)``:
    the 4x4 taps ``floor(c) - 1 .. floor(c) + 2`` on each axis, weighted by
    ``exp(-d**2 / (2 sigma**2))`` of their unclamped distance ``d`` to the sampling point
    and normalised to sum 1. Tap indices are clamped into the image (border replicate).
    This is the resampler the GFLA reference uses for the correctness loss (``Resample2d``
    with kernel size 4, sigma 2); it is smoother than bilinear sampling, so its gradient
    with respect to the flow sees a wider neighbourhood.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] backward flow in pixels of ``source``; channel 0 is x, 1 is y.
      sigma: standard deviation of the Gaussian window, in pixels.

    Returns:
      [B, H, W, C] warped source, in the dtype of ``source``.

    Raises:
      ValueError: if ``source`` or ``flow`` has the wrong rank or channel count.
    """
    source = tf.convert_to_tensor(source)
    flow = tf.convert_to_tensor(flow)
    if source.shape.rank != 4:
        raise ValueError(f"source must have shape [B, H, W, C], got {source.shape}")
    if flow.shape.rank != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape [B, H, W, 2], got {flow.shape}")
    flow = tf.cast(flow, source.dtype)
    src_shape = tf.shape(source)
    src_h, src_w, channels = src_shape[1], src_shape[2], src_shape[3]
    shape = tf.shape(flow)
    batch, height, width = shape[0], shape[1], shape[2]

    cols = tf.cast(tf.range(width), source.dtype)[None, None, :]
    rows = tf.cast(tf.range(height), source.dtype)[None, :, None]
    max_x = tf.cast(src_w, source.dtype)
    max_y = tf.cast(src_h, source.dtype)
    x = tf.clip_by_value(cols + flow[..., 0], -_WINDOW_MARGIN, max_x + _WINDOW_MARGIN)
    y = tf.clip_by_value(rows + flow[..., 1], -_WINDOW_MARGIN, max_y + _WINDOW_MARGIN)
    x0f = tf.floor(x)
    y0f = tf.floor(y)
    wx = _tap_weights(x - x0f, sigma)  # [B, H, W, 4]
    wy = _tap_weights(y - y0f, sigma)
    # The 2-D window is separable, so its normaliser is the product of the 1-D sums.
    wx = wx / tf.reduce_sum(wx, axis=-1, keepdims=True)
    wy = wy / tf.reduce_sum(wy, axis=-1, keepdims=True)
    x0 = tf.cast(x0f, tf.int32)
    y0 = tf.cast(y0f, tf.int32)

    flat = tf.reshape(source, [-1, channels])
    batch_offset = (tf.range(batch) * src_h * src_w)[:, None, None]
    output = None
    for i, dy in enumerate((-1, 0, 1, 2)):
        yi = tf.clip_by_value(y0 + dy, 0, src_h - 1)
        row = None
        for j, dx in enumerate((-1, 0, 1, 2)):
            xi = tf.clip_by_value(x0 + dx, 0, src_w - 1)
            tap = tf.gather(flat, batch_offset + yi * src_w + xi) * wx[..., j : j + 1]
            row = tap if row is None else row + tap
        term = row * wy[..., i : i + 1]
        output = term if output is None else output + term
    return output


def _normalize(features):
    norm = tf.sqrt(tf.reduce_sum(tf.square(features), axis=-1, keepdims=True))
    return features / (norm + _EPS)


def max_cosine_similarity(source_features, target_features, chunk_size=1024):
    """For every target position, the best cosine similarity over all source positions.

    The full correlation is an N x N matrix per sample (N = H * W positions), 67 MB per
    sample for relu3_1 of a 256x256 image. Target positions are processed in chunks of
    ``chunk_size`` with a sequential ``tf.map_fn``, so the peak is
    ``B x chunk_size x N`` floats. The result carries no gradient: in GFLA both feature
    maps come from real images through a frozen VGG.

    Args:
      source_features: [B, H, W, C] float tensor.
      target_features: [B, H, W, C] float tensor (same H, W, C).
      chunk_size: number of target positions per chunk; ``None`` or ``<= 0`` computes
        the whole correlation at once.

    Returns:
      [B, H * W] float32 tensor.
    """
    source = _normalize(tf.cast(tf.stop_gradient(source_features), tf.float32))
    target = _normalize(tf.cast(tf.stop_gradient(target_features), tf.float32))
    channels = tf.shape(source)[-1]
    batch = tf.shape(source)[0]
    source = tf.reshape(source, [batch, -1, channels])
    target = tf.reshape(target, [batch, -1, channels])
    num_positions = target.shape[1]
    if num_positions is None:
        num_positions_t = tf.shape(target)[1]
    else:
        num_positions_t = num_positions
    if (
        not chunk_size
        or chunk_size <= 0
        or (num_positions is not None and num_positions <= chunk_size)
    ):
        correlation = tf.matmul(target, source, transpose_b=True)  # [B, Nt, Ns]
        return tf.reduce_max(correlation, axis=-1)

    num_chunks = (num_positions_t + chunk_size - 1) // chunk_size
    padded = num_chunks * chunk_size
    target = tf.pad(target, [[0, 0], [0, padded - num_positions_t], [0, 0]])
    chunks = tf.transpose(
        tf.reshape(target, [batch, num_chunks, chunk_size, channels]), [1, 0, 2, 3]
    )

    def chunk_max(chunk):
        return tf.reduce_max(tf.matmul(chunk, source, transpose_b=True), axis=-1)

    maxima = tf.map_fn(
        chunk_max,
        chunks,
        fn_output_signature=tf.TensorSpec([None, chunk_size], tf.float32),
        parallel_iterations=1,
    )  # [num_chunks, B, chunk]
    maxima = tf.reshape(tf.transpose(maxima, [1, 0, 2]), [batch, padded])
    return maxima[:, :num_positions_t]


def _resize_flow_nearest(flow, height, width):
    """Nearest resize without rescaling the values, as the reference does (usually a no-op)."""
    if flow.shape[1] == height and flow.shape[2] == width:
        return flow
    return tf.compat.v1.image.resize_nearest_neighbor(
        flow, [height, width], align_corners=False, half_pixel_centers=False
    )


def sampling_correctness_loss(source_features, target_features, flow, sigma=2.0, chunk_size=1024):
    """Per-example sampling correctness loss for one flow scale.

    ``loss = mean_l exp(-cos(warp(source, flow)_l, target_l) / (mu_max_l + 1e-8)) - exp(-1)``
    where the warp is :func:`gaussian_resample` and ``mu_max`` comes from
    :func:`max_cosine_similarity`. A flow that lands every target position on its best
    matching source position scores 0.

    Args:
      source_features: [B, H, W, C] VGG features of the source image.
      target_features: [B, H, W, C] VGG features of the target image.
      flow: [B, h, w, 2] backward flow in pixels of that scale; resized (nearest, values
        unchanged) to H x W if it differs, as the reference does.
      sigma: Gaussian window of the resampler.
      chunk_size: see :func:`max_cosine_similarity`.

    Returns:
      [B] float32 per-example loss.

    Raises:
      ValueError: if the feature maps differ in shape or a rank is wrong.
    """
    source_features = tf.convert_to_tensor(source_features)
    target_features = tf.convert_to_tensor(target_features)
    if source_features.shape.rank != 4 or target_features.shape.rank != 4:
        raise ValueError(
            "source_features and target_features must have shape [B, H, W, C], got "
            f"{source_features.shape} and {target_features.shape}"
        )
    if not source_features.shape[1:].is_compatible_with(target_features.shape[1:]):
        raise ValueError(
            "source_features and target_features must have the same shape, got "
            f"{source_features.shape} and {target_features.shape}"
        )
    source = tf.cast(source_features, tf.float32)
    target = tf.cast(target_features, tf.float32)
    height, width = target.shape[1], target.shape[2]
    if height is None or width is None:
        height, width = tf.shape(target)[1], tf.shape(target)[2]
    flow = _resize_flow_nearest(tf.cast(flow, tf.float32), height, width)

    mu_max = max_cosine_similarity(source, target, chunk_size=chunk_size)
    warped = gaussian_resample(source, flow, sigma=sigma)
    batch = tf.shape(target)[0]
    warped = tf.reshape(warped, [batch, -1, tf.shape(target)[-1]])
    target = tf.reshape(target, [batch, -1, tf.shape(target)[-1]])
    dot = tf.reduce_sum(warped * target, axis=-1)
    # rsqrt of the clamped product keeps the gradient finite where a ReLU feature vector
    # is all zero (sqrt has an infinite derivative at 0).
    sq = tf.reduce_sum(tf.square(warped), axis=-1) * tf.reduce_sum(tf.square(target), axis=-1)
    cosine = dot * tf.math.rsqrt(tf.maximum(sq, _EPS * _EPS))
    loss_map = tf.exp(-cosine / (mu_max + _EPS))
    return tf.reduce_mean(loss_map, axis=-1) - math.exp(-1.0)


def vgg_layer_for_scale(scale):
    """The VGG19 layer whose resolution is ``1/scale`` of the image: relu{log2(scale)+1}_1.

    Args:
      scale: downsampling factor of the flow (1, 2, 4, 8 or 16).

    Returns:
      A layer name such as "relu4_1".

    Raises:
      ValueError: if ``scale`` is not a power of two between 1 and 16.
    """
    names = {1: "relu1_1", 2: "relu2_1", 4: "relu3_1", 8: "relu4_1", 16: "relu5_1"}
    if scale not in names:
        raise ValueError(f"scale must be one of {sorted(names)}, got {scale!r}")
    return names[scale]
