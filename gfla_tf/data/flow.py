"""Ground-truth flow utilities: file encoding, downsampling to feature scales, warping.

Flows are backward flows in pixels: the target pixel (x, y) corresponds to the source
point (x + flow_x, y + flow_y); channel 0 is x, channel 1 is y. Visibility is 1 where
that source point shows the same surface point (not occluded, inside the image).

On disk a flow is a 16-bit RGB PNG (the KITTI flow encoding): channel c in {0, 1} holds
``round(flow_c * 64) + 32768`` and channel 2 the visibility (0 or 1). It is lossless to
1/64 pixel for flows within +-512 pixels, and TensorFlow decodes it natively
(``tf.io.decode_png(..., dtype=tf.uint16)``), so the input pipeline stays in-graph.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

FLOW_SCALE = 64.0
FLOW_OFFSET = 32768.0


def encode_flow_png(flow: ArrayLike, visibility: ArrayLike) -> np.ndarray:
    """Packs a flow and visibility into the uint16 [H, W, 3] array of a flow PNG.

    Args:
      flow: [H, W, 2] float array in pixels.
      visibility: [H, W] or [H, W, 1] array, nonzero = visible.

    Returns:
      A uint16 array [H, W, 3].

    Raises:
      ValueError: on mismatched shapes or a flow beyond the encodable +-512 pixels.
    """
    flow = np.asarray(flow, np.float64)
    visibility = np.asarray(visibility).reshape(flow.shape[:2])
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape [H, W, 2], got {list(flow.shape)}")
    codes = np.rint(flow * FLOW_SCALE) + FLOW_OFFSET
    if codes.min(initial=FLOW_OFFSET) < 0 or codes.max(initial=FLOW_OFFSET) > 65535:
        raise ValueError("flow exceeds the +-512 pixel range of the PNG encoding")
    out = np.empty(flow.shape[:2] + (3,), np.uint16)
    out[..., :2] = codes.astype(np.uint16)
    out[..., 2] = (visibility != 0).astype(np.uint16)
    return out


def decode_flow_png(array: ArrayLike | tf.Tensor) -> tuple:
    """Unpacks a flow PNG's uint16 array (numpy or tensor) into (flow, visibility).

    Args:
      array: [..., H, W, 3] uint16 array or tensor as decoded from the PNG.

    Returns:
      ``(flow, visibility)``: float32 [..., H, W, 2] in pixels and float32 [..., H, W, 1]
      in {0, 1}; tensors for a tensor input, numpy arrays otherwise.
    """
    if tf.is_tensor(array):
        values = tf.cast(array, tf.float32)
        flow = (values[..., :2] - FLOW_OFFSET) / FLOW_SCALE
        return flow, tf.cast(values[..., 2:3] > 0, tf.float32)
    values = np.asarray(array, np.float32)
    flow = (values[..., :2] - FLOW_OFFSET) / FLOW_SCALE
    return flow, (values[..., 2:3] > 0).astype(np.float32)


def _png_chunk(kind, data):
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png16(array: ArrayLike, compress_level: int = 1) -> bytes:
    """Encodes a uint16 [H, W, 3] array as PNG bytes (PIL cannot write 16-bit RGB).

    Args:
      array: uint16 array [H, W, 3].
      compress_level: zlib level, 0-9.

    Returns:
      The PNG file contents as bytes.
    """
    array = np.asarray(array)
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint16 [H, W, 3] array, got {array.dtype} {array.shape}")
    height, width = array.shape[:2]
    rows = array.astype(">u2").view(np.uint8).reshape(height, width * 6)
    # Each scanline starts with its filter type; 0 = none.
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, compress_level))
        + _png_chunk(b"IEND", b"")
    )


def write_flow_png(path: str | os.PathLike, flow: ArrayLike, visibility: ArrayLike) -> None:
    """Writes a flow and visibility as a 16-bit flow PNG (see the module docstring).

    Args:
      path: output ``.png`` path.
      flow: [H, W, 2] float array in pixels.
      visibility: [H, W] or [H, W, 1] array, nonzero = visible.
    """
    with open(path, "wb") as f:
        f.write(encode_png16(encode_flow_png(flow, visibility)))


def read_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a flow PNG written by ``write_flow_png``.

    Args:
      path: the ``.png`` file.

    Returns:
      ``(flow, visibility)`` numpy float32 arrays [H, W, 2] and [H, W, 1].
    """
    data = tf.io.decode_png(tf.io.read_file(str(path)), channels=3, dtype=tf.uint16)
    flow, visibility = decode_flow_png(data.numpy())
    return flow, visibility


def resize_flow(flow: tf.Tensor, visibility: tf.Tensor, factor: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Downsamples a ground-truth flow to a feature resolution (1/factor).

    Feature pixel (i, j) covers the factor x factor block of full-resolution pixels it
    was pooled from; its flow is the mean flow over the visible pixels of the block (the
    plain mean if none is visible) divided by ``factor`` (pixels of that scale), and it
    is visible when at least half the block is. Works on single examples and batches.

    Args:
      flow: [B, H, W, 2] or [H, W, 2] flow in full-resolution pixels.
      visibility: [B, H, W, 1] or [H, W, 1] (or [H, W]) mask in {0, 1}.
      factor: integer downsampling factor (e.g. 8 for 1/8); H and W must be multiples.

    Returns:
      ``(flow, visibility)`` float32 tensors [B, H/f, W/f, 2] and [B, H/f, W/f, 1] (no
      batch axis for unbatched input).

    Raises:
      ValueError: if factor is not a positive integer or does not divide H and W.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    factor = int(factor)
    flow = tf.convert_to_tensor(flow, tf.float32)
    visibility = tf.cast(tf.convert_to_tensor(visibility), tf.float32)
    if flow.shape.rank == 3:
        if visibility.shape.rank == 2:
            visibility = visibility[..., None]
        out_flow, out_vis = resize_flow(flow[None], visibility[None], factor)
        return out_flow[0], out_vis[0]
    if flow.shape.rank != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be [B, H, W, 2] or [H, W, 2], got {flow.shape.as_list()}")
    if visibility.shape.rank == 3:
        visibility = visibility[..., None]
    height, width = flow.shape[1], flow.shape[2]
    if height is not None and width is not None and (height % factor or width % factor):
        raise ValueError(f"factor {factor} does not divide the flow size {height}x{width}")
    if factor == 1:
        return flow, visibility
    pool = lambda t: tf.nn.avg_pool2d(t, factor, factor, "VALID")  # noqa: E731
    vis_mean = pool(visibility)
    weighted = pool(flow * visibility)
    plain = pool(flow)
    mean_flow = tf.where(vis_mean > 0, weighted / tf.maximum(vis_mean, 1e-12), plain)
    return mean_flow / float(factor), tf.cast(vis_mean >= 0.5, tf.float32)


def warp_numpy(image: ArrayLike, flow: ArrayLike) -> np.ndarray:
    """Backward-warps ``image`` by ``flow`` with bilinear sampling (numpy).

    Output pixel (x, y) samples the image at (x + flow_x, y + flow_y); the two taps on
    each axis are clamped into the image, as the local-attention op samples.

    Args:
      image: [H, W, C] (or [H, W]) array.
      flow: [H, W, 2] backward flow in pixels.

    Returns:
      A float64 array with the image's shape.
    """
    image = np.asarray(image, np.float64)
    squeeze = image.ndim == 2
    if squeeze:
        image = image[..., None]
    height, width = image.shape[:2]
    yy, xx = np.meshgrid(np.arange(flow.shape[0]), np.arange(flow.shape[1]), indexing="ij")
    sx = xx + flow[..., 0]
    sy = yy + flow[..., 1]
    x0 = np.floor(sx)
    y0 = np.floor(sy)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
    ya, yb = np.clip(y0, 0, height - 1), np.clip(y0 + 1, 0, height - 1)
    out = (
        image[ya, xa] * (1 - fx) * (1 - fy)
        + image[ya, xb] * fx * (1 - fy)
        + image[yb, xa] * (1 - fx) * fy
        + image[yb, xb] * fx * fy
    )
    return out[..., 0] if squeeze else out
