"""Wrappers of the compiled local-attention ops and their gradient registrations.

Importing this module registers the gradients of ``GflaLocalAttention`` and
``GflaBlockExtract``; the wrappers load the library on first use. Shapes that are known
when the op is built are checked here so that eager calls and ``tf.function`` tracing both
raise ``tf.errors.InvalidArgumentError`` with the kernel's own message; shapes only known
at run time are checked by the kernels (OP_REQUIRES) with the same messages.
"""

import tensorflow as tf

from gfla_tf.ops import _loader

_KERNEL_DTYPES = (tf.float16, tf.float32, tf.float64)


def _invalid(message):
    return tf.errors.InvalidArgumentError(None, None, message)


def _shape_str(shape):
    return str(shape.as_list()) if shape.rank is not None else "<unknown>"


def _check(source, flow, kernel_size, attention=None):
    """Raises InvalidArgumentError for statically known bad arguments."""
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1:
        raise _invalid(f"kernel_size must be an integer >= 1, got {kernel_size!r}")
    s, f = source.shape, flow.shape
    if s.rank is not None and s.rank != 4:
        raise _invalid(
            f"source must have rank 4 [batch, height, width, channels], got shape {_shape_str(s)}"
        )
    if f.rank is not None and f.rank != 4:
        raise _invalid(
            f"flow must have rank 4 [batch, height, width, 2], got shape {_shape_str(f)}"
        )
    if f.rank == 4 and f[3] is not None and f[3] != 2:
        raise _invalid(
            f"flow must have 2 channels (x, y) in its last dimension, got shape {_shape_str(f)}"
        )
    if s.rank == 4 and f.rank == 4 and None not in (s[0], f[0]) and s[0] != f[0]:
        raise _invalid(f"batch mismatch: source has batch {s[0]} but flow has batch {f[0]}")
    if attention is None:
        return
    a, kk = attention.shape, kernel_size * kernel_size
    if a.rank is not None and a.rank != 4:
        raise _invalid(
            f"attention must have rank 4 [batch, height, width, {kk}], got shape {_shape_str(a)}"
        )
    if a.rank == 4 and a[3] is not None and a[3] != kk:
        raise _invalid(
            f"attention must have kernel_size**2 = {kk} channels, got shape {_shape_str(a)}"
        )
    if a.rank == 4 and f.rank == 4:
        for axis, name in ((0, "batch"), (1, "height"), (2, "width")):
            if a[axis] is not None and f[axis] is not None and a[axis] != f[axis]:
                raise _invalid(
                    f"{name} mismatch: attention has shape {_shape_str(a)} "
                    f"but flow has shape {_shape_str(f)}"
                )


def _prepare(source, flow, attention=None):
    """Converts inputs; returns (source, flow, attention, output dtype or None)."""
    source = tf.convert_to_tensor(source)
    flow = tf.convert_to_tensor(flow)
    if attention is not None:
        attention = tf.convert_to_tensor(attention)
    out_dtype = None
    if source.dtype == tf.bfloat16:
        # No bfloat16 kernels: compute in float32 (mixed_bfloat16 Keras policies).
        out_dtype = tf.bfloat16
        source = tf.cast(source, tf.float32)
    elif source.dtype not in _KERNEL_DTYPES:
        raise _invalid(
            f"source must be a float16, bfloat16, float32 or float64 tensor, got {source.dtype.name}"
        )
    if not (flow.dtype.is_floating):
        raise _invalid(f"flow must be a floating-point tensor, got {flow.dtype.name}")
    flow = tf.cast(flow, source.dtype)
    if attention is not None:
        if not attention.dtype.is_floating:
            raise _invalid(f"attention must be a floating-point tensor, got {attention.dtype.name}")
        attention = tf.cast(attention, source.dtype)
    return source, flow, attention, out_dtype


def block_extract(source, flow, kernel_size):
    """Compiled ``block_extract``; see ``gfla_tf.ops.block_extract``.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] backward flow in pixels (x, y); cast to the source dtype.
      kernel_size: k, an integer >= 1.

    Returns:
      [B, H, W, k*k, C] tensor of the source dtype.

    Raises:
      tf.errors.InvalidArgumentError: bad shapes, dtypes or kernel_size.
      RuntimeError: the library cannot be loaded.
    """
    source, flow, _, out_dtype = _prepare(source, flow)
    _check(source, flow, kernel_size)
    lib = _loader.load_library()
    block = lib.gfla_block_extract(source=source, flow=flow, kernel_size=kernel_size)
    return block if out_dtype is None else tf.cast(block, out_dtype)


def local_attention(source, flow, attention, kernel_size):
    """Compiled fused ``local_attention``; see ``gfla_tf.ops.local_attention``.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] backward flow in pixels (x, y); cast to the source dtype.
      attention: [B, H, W, k*k] weights; cast to the source dtype.
      kernel_size: k, an integer >= 1.

    Returns:
      [B, H, W, C] tensor of the source dtype.

    Raises:
      tf.errors.InvalidArgumentError: bad shapes, dtypes or kernel_size.
      RuntimeError: the library cannot be loaded.
    """
    source, flow, attention, out_dtype = _prepare(source, flow, attention)
    _check(source, flow, kernel_size, attention)
    lib = _loader.load_library()
    out = lib.gfla_local_attention(
        source=source, flow=flow, attention=attention, kernel_size=kernel_size
    )
    return out if out_dtype is None else tf.cast(out, out_dtype)


@tf.RegisterGradient("GflaLocalAttention")
def _local_attention_grad(op, grad):
    """Gradients w.r.t. source, flow and attention (first order only)."""
    source, flow, attention = op.inputs
    grad_source, grad_flow, grad_attention = _loader.load_library().gfla_local_attention_grad(
        grad=grad,
        source=source,
        flow=flow,
        attention=attention,
        kernel_size=op.get_attr("kernel_size"),
    )
    return grad_source, grad_flow, grad_attention


@tf.RegisterGradient("GflaBlockExtract")
def _block_extract_grad(op, grad):
    """Gradients w.r.t. source and flow (first order only)."""
    source, flow = op.inputs
    grad_source, grad_flow = _loader.load_library().gfla_block_extract_grad(
        grad=grad, source=source, flow=flow, kernel_size=op.get_attr("kernel_size")
    )
    return grad_source, grad_flow
