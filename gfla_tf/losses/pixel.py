"""Pixel-space losses for data with ground-truth flow (the synthetic quickstart only).

The paper's sampling correctness loss compares ImageNet VGG19 features; the offline
quickstart has no pretrained weights, and random VGG features did not help it (see
benchmarks/RESULTS.md). These losses need no pretrained network:

- ``warp_correctness_loss``: the source image, warped with a predicted flow at that flow's
  resolution, against the target on the target's person pixels where the ground-truth
  flow says the source shows them. It trains the flow where appearance lives (the person
  is a small part of the frame, so a plain per-pixel flow error is dominated by the
  static background).
- ``person_l1_loss``: L1 between generated and target images over the target's person
  pixels only, so that the person's appearance, not the easy background, drives the
  renderer.

The person region comes from the ground-truth flow: the synthetic backgrounds are static
(flow exactly 0), so a pixel whose ground-truth flow is non-zero belongs to the person.
"""

import tensorflow as tf

from gfla_tf import ops

# Ground-truth flows are stored to 1/64 px; anything larger than that is motion.
_MOTION_EPS = 1.0 / 128.0


def person_region(gt_flow):
    """[B, H, W, 1] float mask of the pixels that move (the person) in a synthetic pair.

    Args:
      gt_flow: [B, H, W, 2] ground-truth backward flow in pixels.

    Returns:
      1.0 where the flow is non-zero, else 0.0.
    """
    moving = tf.reduce_max(tf.abs(gt_flow), axis=-1, keepdims=True) > _MOTION_EPS
    return tf.cast(moving, tf.float32)


def _masked_mean(error, mask):
    """Per-example mean of ``error`` over ``mask`` ([B, H, W, C] and [B, H, W, 1])."""
    channels = tf.cast(tf.shape(error)[-1], tf.float32)
    total = tf.reduce_sum(error * mask, axis=[1, 2, 3])
    return total / (tf.reduce_sum(mask, axis=[1, 2, 3]) * channels + 1.0)


def _downsample(image, factor):
    if factor == 1:
        return image
    return tf.nn.avg_pool2d(image, factor, factor, "VALID")


def warp_correctness_loss(source_image, target_image, flow, gt_flow, visibility, scale):
    """Per-example L1 between the flow-warped source and the target on visible person pixels.

    Args:
      source_image: [B, H, W, 3] in [-1, 1].
      target_image: [B, H, W, 3] in [-1, 1].
      flow: [B, H/scale, W/scale, 2] predicted backward flow in pixels of that scale.
      gt_flow: [B, H, W, 2] ground-truth flow (full resolution), for the person region.
      visibility: [B, H, W, 1] ground-truth visibility.
      scale: the flow's down-sampling factor.

    Returns:
      [B] loss per example (mean absolute error over the selected pixels and channels).
    """
    scale = int(scale)
    flow = tf.cast(flow, tf.float32)
    source = _downsample(tf.cast(source_image, tf.float32), scale)
    target = _downsample(tf.cast(target_image, tf.float32), scale)
    weight = _downsample(person_region(gt_flow) * tf.cast(visibility, tf.float32), scale)
    # k = 1 block extraction is a bilinear backward warp with clamped taps, the sampling
    # the local-attention op itself uses, with its flow gradient.
    warped = ops.block_extract(source, flow, 1)[:, :, :, 0, :]
    return _masked_mean(tf.abs(warped - target), tf.cast(weight >= 0.5, tf.float32))


def person_l1_loss(generated, target_image, gt_flow):
    """Per-example L1 over the target's person pixels ([B] tensor).

    Args:
      generated: [B, H, W, 3] generated images.
      target_image: [B, H, W, 3] targets.
      gt_flow: [B, H, W, 2] ground-truth flow (its non-zero pixels are the person).
    """
    error = tf.abs(tf.cast(generated, tf.float32) - tf.cast(target_image, tf.float32))
    return _masked_mean(error, person_region(gt_flow))


def mask_visibility_loss(mask, visibility, scale):
    """Per-example one-sided occlusion-mask loss: -log(mask) where the source shows the target.

    Where the ground-truth flow is visible (the source shows that surface point; the static
    background included) the warped source features are right, so the mask should select
    them (mask -> 1). Occluded pixels get no term: their mask is left to the image losses
    (a two-sided target drove the masks to 0 on thin limbs, whose visibility is sparse;
    see benchmarks/RESULTS.md).

    Args:
      mask: [B, H/scale, W/scale, 1] predicted occlusion mask in (0, 1).
      visibility: [B, H, W, 1] ground-truth visibility (full resolution).
      scale: the mask's down-sampling factor.

    Returns:
      [B] loss per example (mean over that scale's visible pixels).
    """
    visible = _downsample(tf.cast(visibility, tf.float32), int(scale))
    visible = tf.cast(visible >= 0.5, tf.float32)
    log_mask = tf.math.log(tf.clip_by_value(tf.cast(mask, tf.float32), 1e-6, 1.0))
    return -tf.reduce_sum(log_mask * visible, axis=[1, 2, 3]) / (
        tf.reduce_sum(visible, axis=[1, 2, 3]) + 1.0
    )
