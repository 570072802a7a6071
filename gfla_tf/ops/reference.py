"""Pure-TensorFlow reference implementation of the local-attention op family.

Only stock TensorFlow ops are used (floor, cast, clip, gather, multiply, sum), so this path
is XLA-compilable, converts to TFLite builtin ops and loads in any TensorFlow process. It
is the semantic contract for the compiled kernels and their test oracle. Call it through
``gfla_tf.ops.block_extract`` / ``local_attention`` with ``impl="reference"``: they validate
the arguments (``_validation``) before the private entry points here run.

Sampling semantics (see docs and the GFLA reference): every tap coordinate ``c`` is split
into ``floor(c)`` and ``frac = c - floor(c)``; the two tap indices ``floor(c)`` and
``floor(c) + 1`` are clamped into the image independently, while the bilinear weights use
the unclamped fraction. That is border-replicate sampling. Coordinates are first clipped to
``[-1, size]``: beyond that both taps land on the same border pixel, so the value and the
gradient are unchanged, and huge or infinite flows cannot overflow integer indices. A NaN
flow gives a NaN output (through ``frac``) and still reads in bounds.
"""

import tensorflow as tf


def _sample_offsets(source, flow, kernel_size):
    """Yields (n, sampled) for each of the k*k offsets, sampled with shape [B, H, W, C]."""
    flow = tf.cast(flow, source.dtype)
    shape = tf.shape(flow)
    batch, height, width = shape[0], shape[1], shape[2]
    src_shape = tf.shape(source)
    src_h, src_w, channels = src_shape[1], src_shape[2], src_shape[3]
    flat = tf.reshape(source, [-1, channels])

    rows = tf.cast(tf.range(height), source.dtype)[None, :, None]
    cols = tf.cast(tf.range(width), source.dtype)[None, None, :]
    base_y = rows + flow[..., 1]
    base_x = cols + flow[..., 0]
    batch_offset = (tf.range(batch) * src_h * src_w)[:, None, None]
    max_y = tf.cast(src_h, source.dtype)
    max_x = tf.cast(src_w, source.dtype)

    half = kernel_size // 2
    for i in range(kernel_size):
        y = tf.clip_by_value(base_y + float(i - half), -1.0, max_y)
        y0f = tf.floor(y)
        wy = (y - y0f)[..., None]
        y0 = tf.cast(y0f, tf.int32)
        y_lo = tf.clip_by_value(y0, 0, src_h - 1)
        y_hi = tf.clip_by_value(y0 + 1, 0, src_h - 1)
        for j in range(kernel_size):
            x = tf.clip_by_value(base_x + float(j - half), -1.0, max_x)
            x0f = tf.floor(x)
            wx = (x - x0f)[..., None]
            x0 = tf.cast(x0f, tf.int32)
            x_lo = tf.clip_by_value(x0, 0, src_w - 1)
            x_hi = tf.clip_by_value(x0 + 1, 0, src_w - 1)

            def tap(yy, xx):
                return tf.gather(flat, batch_offset + yy * src_w + xx)

            top = tap(y_lo, x_lo) * (1 - wx) + tap(y_lo, x_hi) * wx
            bottom = tap(y_hi, x_lo) * (1 - wx) + tap(y_hi, x_hi) * wx
            yield i * kernel_size + j, top * (1 - wy) + bottom * wy


def _block_extract(source, flow, kernel_size):
    """``block_extract`` on arguments ``_validation.validate`` accepted."""
    samples = [s for _, s in _sample_offsets(source, flow, kernel_size)]
    return tf.stack(samples, axis=3)


def _local_attention(source, flow, attention, kernel_size):
    """``local_attention`` on arguments ``_validation.validate`` accepted."""
    attention = tf.cast(attention, source.dtype)
    total = None
    for n, sampled in _sample_offsets(source, flow, kernel_size):
        term = sampled * attention[..., n : n + 1]
        total = term if total is None else total + term
    return total / float(kernel_size * kernel_size)
