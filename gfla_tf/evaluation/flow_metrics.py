"""Flow accuracy against ground truth: end-point error and warped-source SSIM.

Flows follow the project convention: [B, H, W, 2], channel 0 = x, channel 1 = y, in
pixels of their own resolution, backward (target pixel (x, y) reads the source at
(x + fx, y + fy)). The generator predicts one flow per attention scale at 1/factor of the
image size; the synthetic dataset's ground truth is at full resolution with a visibility
mask (1 where the target pixel is visible in the source).
"""

import logging

import tensorflow as tf

from gfla_tf import ops
from gfla_tf.data.flow import resize_flow
from gfla_tf.evaluation.image_metrics import ssim, to_signed_unit

logger = logging.getLogger(__name__)


def _check_flow(flow, name):
    if flow.shape.rank != 4 or flow.shape[-1] != 2:
        raise ValueError(f"{name} must be a [B, H, W, 2] flow, got shape {flow.shape}")


def endpoint_error_sums(flow, gt_flow, mask=None):
    """Per-image sum of end-point errors and the number of pixels summed.

    Streaming form of ``endpoint_error``: summing both over a data set and dividing gives
    the pixel-weighted mean.

    Args:
      flow: [B, H, W, 2] predicted flow.
      gt_flow: [B, H, W, 2] ground truth at the same resolution and units.
      mask: optional [B, H, W, 1] weights in [0, 1] (e.g. visibility).

    Returns:
      (sums [B], counts [B]) float32 tensors.

    Raises:
      ValueError: bad shapes.
    """
    flow = tf.cast(tf.convert_to_tensor(flow), tf.float32)
    gt_flow = tf.cast(tf.convert_to_tensor(gt_flow), tf.float32)
    _check_flow(flow, "flow")
    _check_flow(gt_flow, "gt_flow")
    if not flow.shape.is_compatible_with(gt_flow.shape):
        raise ValueError(
            f"flow and gt_flow must have the same shape, got {flow.shape} and {gt_flow.shape}"
        )
    error = tf.norm(flow - gt_flow, axis=-1)
    if mask is None:
        mask = tf.ones_like(error)
    else:
        mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
        if mask.shape.rank != 4 or mask.shape[-1] != 1:
            raise ValueError(f"mask must be [B, H, W, 1], got shape {mask.shape}")
        mask = mask[..., 0]
    return tf.reduce_sum(error * mask, axis=[1, 2]), tf.reduce_sum(mask, axis=[1, 2])


def endpoint_error(flow, gt_flow, mask=None):
    """Mean end-point error ``|flow - gt_flow|_2`` over all (or the masked) pixels.

    Args:
      flow: [B, H, W, 2] predicted flow.
      gt_flow: [B, H, W, 2] ground truth at the same resolution and units.
      mask: optional [B, H, W, 1] weights (e.g. visibility); the mean is weighted by it.

    Returns:
      A float32 scalar (NaN if the mask is empty).

    Raises:
      ValueError: bad shapes.

    Example:
      >>> endpoint_error(tf.zeros([1, 4, 4, 2]), tf.ones([1, 4, 4, 2]) * [3.0, 4.0])  # 5.0
    """
    sums, counts = endpoint_error_sums(flow, gt_flow, mask)
    total = tf.reduce_sum(counts)
    return tf.where(total > 0, tf.reduce_sum(sums) / tf.maximum(total, 1e-12), float("nan"))


def warp(image, flow):
    """Backward-warps ``image`` with ``flow`` by bilinear sampling with clamped taps.

    The same sampling as the local-attention op with a 1x1 kernel (border replicate).

    Args:
      image: [B, H, W, C] float image.
      flow: [B, H, W, 2] flow in pixels of ``image``.

    Returns:
      [B, H, W, C] warped image.
    """
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    flow = tf.cast(tf.convert_to_tensor(flow), tf.float32)
    _check_flow(flow, "flow")
    return ops.block_extract(image, flow, 1, impl="reference")[:, :, :, 0, :]


def upsample_flow(flow, size):
    """Resizes a flow to ``size`` (bilinear) and rescales its pixel units.

    Args:
      flow: [B, h, w, 2] flow in pixels of its resolution.
      size: (H, W) target resolution.

    Returns:
      [B, H, W, 2] flow in pixels of the target resolution.
    """
    flow = tf.cast(tf.convert_to_tensor(flow), tf.float32)
    _check_flow(flow, "flow")
    height, width = int(size[0]), int(size[1])
    scale_x = width / tf.cast(tf.shape(flow)[2], tf.float32)
    scale_y = height / tf.cast(tf.shape(flow)[1], tf.float32)
    resized = tf.image.resize(flow, [height, width], method="bilinear")
    return resized * tf.stack([scale_x, scale_y])


def downsample_ground_truth(flow, visibility, factor):
    """Ground truth at 1/``factor`` resolution, in pixels of that resolution.

    The data pipeline's definition, ``gfla_tf.data.resize_flow``.

    Args:
      flow: [B, H, W, 2] full-resolution ground-truth flow.
      visibility: [B, H, W, 1] in {0, 1}.
      factor: integer downsampling factor (1 returns the inputs).

    Returns:
      (flow [B, H/f, W/f, 2], visibility [B, H/f, W/f, 1]).
    """
    flow = tf.cast(tf.convert_to_tensor(flow), tf.float32)
    visibility = tf.cast(tf.convert_to_tensor(visibility), tf.float32)
    factor = int(factor)
    if factor == 1:
        return flow, visibility
    out_flow, out_vis = resize_flow(flow, visibility, factor)
    return tf.cast(out_flow, tf.float32), tf.cast(out_vis, tf.float32)


def warped_ssim(source, target, flow, visibility=None, max_val=2.0):
    """SSIM of the flow-warped source against the target, on visible pixels.

    Args:
      source: [B, H, W, 3] source images (uint8 or [-1, 1] float).
      target: [B, H, W, 3] target images.
      flow: [B, h, w, 2] flow at any resolution (upsampled to H x W first).
      visibility: optional [B, H, W, 1] mask of target pixels visible in the source.
      max_val: SSIM data range on the [-1, 1] scale (see ``image_metrics.ssim``).

    Returns:
      [B] SSIM values.
    """
    source = to_signed_unit(source)
    target = to_signed_unit(target)
    full = upsample_flow(flow, (source.shape[1], source.shape[2]))
    return ssim(warp(source, full), target, max_val=max_val, mask=visibility)
