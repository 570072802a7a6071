"""Affine regularisation of GFLA's flow fields.

Inside every k x k window the absolute sampling grid (flow + pixel coordinates) should be
an affine function of the window coordinates: the loss is the squared residual of the
least-squares affine fit. It lets the flow bend smoothly (rotations, scaling) while
penalising local distortions.

Reference: Ren et al., "Deep Image Spatial Transformation for Person Image Generation",
CVPR 2020, section 3.1 ("regularization term").
"""

import numpy as np
import tensorflow as tf


def affine_residual_matrix(kernel_size):
    """``P - I`` where ``P = A (A^T A)^-1 A^T`` projects onto affine functions of a window.

    Args:
      kernel_size: k, the window size (>= 2).

    Returns:
      [k*k, k*k] float64 numpy array; entry order is row-major (n = i*k + j), A = [i, j, 1].

    Raises:
      ValueError: if ``kernel_size`` < 2 (a 1x1 window has no affine residual).
    """
    if not isinstance(kernel_size, int) or kernel_size < 2:
        raise ValueError(f"kernel_size must be an integer >= 2, got {kernel_size!r}")
    i, j = np.meshgrid(np.arange(kernel_size), np.arange(kernel_size), indexing="ij")
    a = np.stack([i.ravel(), j.ravel(), np.ones(kernel_size * kernel_size)], axis=1)
    projection = a @ np.linalg.inv(a.T @ a) @ a.T
    return projection - np.eye(kernel_size * kernel_size)


def affine_regularization_loss(flow, kernel_size):
    """Per-example affine regularisation loss of one flow field.

    For every valid k x k window (no padding) and each coordinate (x, then y) of the
    absolute grid ``g = flow + meshgrid``, the residual ``(P - I) g_window`` of the
    least-squares affine fit is squared and summed over the window; the result is
    averaged over windows and summed over x and y. Any affine flow gives exactly 0.

    Args:
      flow: [B, H, W, 2] flow in pixels; channel 0 is x, channel 1 is y. H, W >= k.
      kernel_size: k, the attention kernel size of that scale (>= 2).

    Returns:
      [B] float32 per-example loss.

    Raises:
      ValueError: if ``flow`` is not [B, H, W, 2] or ``kernel_size`` < 2.
    """
    flow = tf.convert_to_tensor(flow)
    if flow.shape.rank != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape [B, H, W, 2], got {flow.shape}")
    residual = affine_residual_matrix(kernel_size)
    flow = tf.cast(flow, tf.float32)
    shape = tf.shape(flow)
    batch, height, width = shape[0], shape[1], shape[2]
    cols = tf.cast(tf.range(width), tf.float32)
    rows = tf.cast(tf.range(height), tf.float32)
    grid_x = flow[..., 0] + cols[None, None, :]
    grid_y = flow[..., 1] + rows[None, :, None]
    # x and y are fitted independently: stack them along the batch axis.
    grid = tf.concat([grid_x, grid_y], axis=0)[..., None]  # [2B, H, W, 1]
    # One conv with the (P - I) rows as k*k output filters gives every window's residual.
    kernel = tf.constant(
        residual.T.reshape(kernel_size, kernel_size, 1, kernel_size * kernel_size),
        dtype=tf.float32,
    )
    residuals = tf.nn.conv2d(grid, kernel, strides=1, padding="VALID")
    per_window = tf.reduce_sum(tf.square(residuals), axis=-1)  # [2B, H', W']
    per_grid = tf.reduce_mean(per_window, axis=[1, 2])
    return per_grid[:batch] + per_grid[batch:]
