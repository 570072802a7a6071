"""Wrappers of the compiled local-attention ops and their gradient registrations.

Importing this module registers the gradients of ``GflaLocalAttention`` and
``GflaBlockExtract``; the wrappers load the library (``_loader``) on first use. Arguments
are checked by ``_validation`` exactly as for the reference implementation; the kernels'
own OP_REQUIRES checks (same wording) are the last line of defence.
"""

import tensorflow as tf

from gfla_tf.ops import _loader, _validation


def _prepare(source, flow, attention=None):
    """Casts validated inputs to a kernel dtype; returns them and the output dtype or None."""
    out_dtype = None
    if source.dtype == tf.bfloat16:
        # No bfloat16 kernels: compute in float32 (mixed_bfloat16 Keras policies).
        out_dtype = tf.bfloat16
        source = tf.cast(source, tf.float32)
    flow = tf.cast(flow, source.dtype)
    if attention is not None:
        attention = tf.cast(attention, source.dtype)
    return source, flow, attention, out_dtype


def block_extract(
    source: tf.types.experimental.TensorLike,
    flow: tf.types.experimental.TensorLike,
    kernel_size: int,
) -> tf.Tensor:
    """Compiled ``block_extract``; see ``gfla_tf.ops.block_extract``.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] backward flow in pixels (x, y); cast to the source dtype.
      kernel_size: k, an integer >= 1.

    Returns:
      [B, H, W, k*k, C] tensor of the source dtype.

    Raises:
      ValueError, tf.errors.InvalidArgumentError: bad arguments (``_validation``).
      RuntimeError: the library cannot be loaded.
    """
    source, flow, _ = _validation.validate(source, flow, kernel_size, op="block_extract")
    return _block_extract(source, flow, kernel_size)


def local_attention(
    source: tf.types.experimental.TensorLike,
    flow: tf.types.experimental.TensorLike,
    attention: tf.types.experimental.TensorLike,
    kernel_size: int,
) -> tf.Tensor:
    """Compiled fused ``local_attention``; see ``gfla_tf.ops.local_attention``.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] backward flow in pixels (x, y); cast to the source dtype.
      attention: [B, H, W, k*k] weights; cast to the source dtype.
      kernel_size: k, an integer >= 1.

    Returns:
      [B, H, W, C] tensor of the source dtype.

    Raises:
      ValueError, tf.errors.InvalidArgumentError: bad arguments (``_validation``).
      RuntimeError: the library cannot be loaded.
    """
    source, flow, attention = _validation.validate(
        source, flow, kernel_size, attention, op="local_attention"
    )
    return _local_attention(source, flow, attention, kernel_size)


def _block_extract(source, flow, kernel_size):
    """``block_extract`` on arguments ``_validation.validate`` accepted."""
    source, flow, _, out_dtype = _prepare(source, flow)
    lib = _loader.load_library()
    block = lib.gfla_block_extract(source=source, flow=flow, kernel_size=kernel_size)
    return block if out_dtype is None else tf.cast(block, out_dtype)


def _local_attention(source, flow, attention, kernel_size):
    """``local_attention`` on arguments ``_validation.validate`` accepted."""
    source, flow, attention, out_dtype = _prepare(source, flow, attention)
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
